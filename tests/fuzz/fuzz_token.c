/*
 * libFuzzer: the token endpoint's answer (src/daemon/graph.c). An access token and its
 * lifetime come out of it, or an error code and message; the token goes into every
 * Authorization header and the lifetime decides when it is renewed, so whatever the
 * endpoint (or whoever answers in its place) sends, the token is one header-safe word and
 * the lifetime a sane number of seconds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int ok)
{
	if (!ok)
		abort();
}

static void
fuzz_token(const char *text, size_t size)
{
	char *token = (char *)text; /* must be reset to NULL on failure */
	long life = -12345;

	if (graph_parse_token(text, size, &token, &life) < 0) {
		check(token == NULL);
		return;
	}
	check(token != NULL && token[0] != '\0');
	for (const char *p = token; *p; p++)
		check(*p >= '!' && *p <= '~');
	check(life >= 1 && life <= GRAPH_TOKEN_LIFE_MAX);
	free(token);
}

/* Both outputs end within their buffers; the message is one line. */
static void
fuzz_error(const char *text, size_t size, size_t codelen, size_t msglen)
{
	char code[64], msg[256];

	memset(code, 'x', sizeof(code));
	memset(msg, 'x', sizeof(msg));
	if (graph_parse_error(text, size, code, codelen, msg, msglen) < 0)
		return;
	check(memchr(code, '\0', codelen) != NULL && memchr(msg, '\0', msglen) != NULL);
	check(strchr(msg, '\n') == NULL && strchr(msg, '\r') == NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the daemon's answer buffer is NUL-terminated; the parsers get its length too */
	char *text = malloc(size + 1);

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	fuzz_token(text, size);
	fuzz_error(text, size, 64, 256);
	fuzz_error(text, size, 1, 2); /* the shortest buffers only cut the text */
	free(text);
	return 0;
}
