/* Cutting text on a character: one rule for every place that clips a string. */
#ifndef NUMPROV_UTF8_H
#define NUMPROV_UTF8_H

#include <stddef.h>

/*
 * The longest prefix of s of at most n bytes that does not end inside a UTF-8
 * character: s[n] (s is longer than n) must not be a continuation byte.
 */
static inline size_t
utf8_prefix(const char *s, size_t n)
{
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
		n--;
	return n;
}

#endif
