/*
 * libFuzzer harness for e164: numbers come from config files, the control socket and
 * Graph, so the parser sees bytes nobody vetted. The input is parsed whole, then split
 * at its first newline (or not at all) into the first and last number of a range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "e164.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int ok)
{
	if (!ok)
		abort();
}

static int
all_digits(const char *s)
{
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* An error is one NUL-terminated line that fits the buffer. */
static void
check_error(const char *err, size_t errlen)
{
	check(memchr(err, '\0', errlen) != NULL);
	check(strchr(err, '\n') == NULL && err[0] != '\0');
}

static void
check_number(const struct e164 *n)
{
	char text[E164_STRLEN], err[128];
	struct e164 again;
	size_t nd = strlen(n->digits), ne = strlen(n->ext);

	check(nd >= E164_MIN_DIGITS && nd <= E164_MAX_DIGITS && all_digits(n->digits));
	check(n->digits[0] != '0');
	check(ne <= E164_MAX_EXT && all_digits(n->ext));
	check(e164_country_code_len(n) >= 1 && e164_country_code_len(n) <= 3);
	e164_format(n, text, sizeof text);
	check(strlen(text) == 1 + nd + (ne ? strlen(";ext=") + ne : 0));
	check(e164_parse(text, &again, err, sizeof err) == 0);
	check(e164_cmp(n, &again) == 0 && e164_cmp(&again, n) == 0);
}

static void
check_offset(const struct e164_range *r, uint64_t off)
{
	struct e164 n;
	uint64_t back = ~(uint64_t)0;

	e164_range_number(r, off, &n);
	check(e164_range_contains(r, &n, &back) == 1 && back == off);
}

static void
check_range(const struct e164_range *r)
{
	struct e164 n;
	struct e164_range point;
	char text[E164_STRLEN], err[128];

	check(r->size >= 1);
	e164_range_number(r, 0, &n);
	check(e164_cmp(&n, &r->first) == 0);
	e164_range_number(r, r->size - 1, &n);
	check(e164_cmp(&n, &r->last) == 0);
	check_offset(r, 0);
	check_offset(r, r->size / 2);
	check_offset(r, r->size - 1);
	check(e164_range_overlap(r, r) == 1);
	e164_format(&r->last, text, sizeof text);
	check(e164_range_init(&point, text, text, err, sizeof err) == 0);
	check(point.size == 1 && point.is_ext == r->is_ext);
	check(e164_range_overlap(r, &point) == 1 && e164_range_overlap(&point, r) == 1);
}

static void
fuzz_number(const char *s)
{
	struct e164 n;
	char err[128], tiny[5];

	memset(err, 'x', sizeof err);
	if (e164_parse(s, &n, err, sizeof err) == 0)
		check_number(&n);
	else
		check_error(err, sizeof err);
	/* a short buffer only cuts the message */
	check(e164_parse(s, &n, tiny, sizeof tiny) == e164_parse(s, &n, NULL, 0));
}

static void
fuzz_range(const char *first, const char *last)
{
	struct e164_range r, swapped;
	char err[128];

	memset(err, 'x', sizeof err);
	if (e164_range_init(&r, first, last, err, sizeof err) < 0) {
		check_error(err, sizeof err);
		return;
	}
	check_range(&r);
	check(e164_cmp(&r.first, &r.last) <= 0);
	/* the reversed range exists only when it is a single number */
	check((e164_range_init(&swapped, last, first, err, sizeof err) == 0) == (r.size == 1));
	if (r.size > 1)
		check(strstr(err, "greater") != NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	char *nl;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	fuzz_number(buf);
	nl = memchr(buf, '\n', size);
	if (nl) {
		*nl = '\0';
		fuzz_range(buf, nl + 1);
	} else {
		fuzz_range(buf, buf);
	}
	free(buf);
	return 0;
}
