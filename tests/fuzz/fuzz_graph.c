/*
 * libFuzzer: the Graph answers numprovd reads besides users: error bodies,
 * Retry-After values, long-running operations and numberAssignments pages.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph.h"
#include "teams.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Well-formed UTF-8 throughout, without a control character (C0, DEL, C1) or a
   Unicode line or paragraph separator. */
static int
one_line(const char *s)
{
	while (*s) {
		size_t n = utf8_safe_len(s);
		if (!n)
			return 0;
		s += n;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char code[64], msg[256], detail[320], *text = malloc(size + 1), *next = NULL;
	struct teams_number *v = NULL;
	int n;

	memcpy(text, data, size);
	text[size] = '\0';
	if (graph_parse_error(text, size, code, sizeof(code), msg, sizeof(msg)) == 0
	    && (!one_line(code) || !one_line(msg) || strlen(code) >= sizeof(code)))
		abort();
	(void)graph_parse_retry_after(text, (long)time(NULL));
	if (teams_parse_operation(text, size, detail, sizeof(detail)) > TOP_UNKNOWN
	    || strchr(detail, '\n'))
		abort();
	n = teams_parse_numbers(text, size, &v, &next);
	for (int i = 0; i < n; i++)
		if (v[i].number[0] != '+')
			abort();
	free(v);
	free(next);
	free(text);
	return 0;
}
