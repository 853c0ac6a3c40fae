/*
 * libFuzzer harness for the rule language (src/rule.c). Input: the rule text, then
 * optionally a NUL byte and attribute values separated by NUL bytes (city, office,
 * usage_location, ... in enum order). Checks that parsing never crashes, that every
 * error is well-formed, and that explain always agrees with eval.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_error(const char *text, const struct rule_error *err)
{
	if (err->offset > strlen(text))
		abort();
	if (err->message[0] == '\0' || !memchr(err->message, '\0', sizeof err->message))
		abort();
	if (!memchr(err->token, '\0', sizeof err->token))
		abort();
}

static void
check_explain(const struct rule *r, const struct rule_attrs *a, int verdict, size_t len)
{
	static char buf[1 << 16];

	memset(buf, 'Z', len + 1);
	if (rule_explain(r, a, buf, len) != verdict)
		abort();
	if (strlen(buf) >= len || buf[len] != 'Z')
		abort();
}

static void
check_rule(const struct rule *r, const struct rule_attrs *a)
{
	static const size_t lens[] = { 1, 2, 7, 64, 300, 1 << 15 };
	int verdict = rule_eval(r, a);
	size_t i;

	if (verdict != 0 && verdict != 1)
		abort();
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++)
		check_explain(r, a, verdict, lens[i]);
	if (rule_explain(r, a, NULL, 0) != verdict)
		abort();
}

/* The comparison helper is an equivalence: reflexive and symmetric. */
static void
check_text_equal(const struct rule_attrs *a)
{
	const char *x = a->v[0], *y = a->v[1];

	if (x && !rule_text_equal(x, x))
		abort();
	if (rule_text_equal(x, y) != rule_text_equal(y, x))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rule_attrs a;
	struct rule_error err;
	struct rule *r;
	char *copy = malloc(size + 1), *p, *end;
	size_t k;

	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	memset(&a, 0, sizeof a);
	/* Values follow the rule, one per attribute, NUL-separated. */
	end = copy + size;
	p = copy + strlen(copy);
	for (k = 0; p < end; k++) {
		p++;
		a.v[k % RA__MAX] = p;
		p += strlen(p);
	}
	check_text_equal(&a);
	r = rule_parse(copy, &err);
	if (r) {
		check_rule(r, &a);
		rule_free(r);
	} else {
		check_error(copy, &err);
	}
	free(copy);
	return 0;
}
