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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* No control character, and not ended inside a UTF-8 character. */
static int
one_line(const char *s)
{
	size_t n = strlen(s), k = 0;

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	/* the last character's lead byte announces no more bytes than there are */
	while (k < n && k < 4 && ((unsigned char)s[n - 1 - k] & 0xc0) == 0x80)
		k++;
	if (k < n) {
		unsigned char lead = (unsigned char)s[n - 1 - k];
		size_t want = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
		if (want > k)
			return 0;
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
