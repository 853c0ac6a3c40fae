/*
 * Cutting text on a character, and escaping what must not be shown as it is: one rule for
 * every place that clips a string, and one for every place that shows a string someone else
 * wrote (the log, the control socket's replies, numprovctl's text output).
 */
#ifndef NUMPROV_UTF8_H
#define NUMPROV_UTF8_H

#include <stddef.h>
#include <string.h>

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

/*
 * The length of the well-formed UTF-8 character at s (1 to 4 bytes; 1 for an ASCII byte, NUL
 * included), or 0 when the byte at s starts none: a continuation byte, a sequence cut short
 * (by the NUL ending s too), an overlong form, a surrogate, beyond U+10FFFF.
 */
static inline size_t
utf8_char_len(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	unsigned cp;
	size_t n;

	if (*s < 0x80)
		return 1;
	if (*s >= 0xc2 && *s <= 0xdf)
		n = 2, cp = *s & 0x1fu;
	else if (*s >= 0xe0 && *s <= 0xef)
		n = 3, cp = *s & 0x0fu;
	else if (*s >= 0xf0 && *s <= 0xf4)
		n = 4, cp = *s & 0x07u;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
	    || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/*
 * The length of the character at s when it is safe to show as it is, 0 when the byte at s is
 * not. Unsafe: the C0 controls and DEL, the C1 controls (U+0080-U+009F, which some terminals
 * take for escape sequences and some readers for a line break), the Unicode line and
 * paragraph separators (U+2028, U+2029), and any byte that does not start a well-formed UTF-8
 * character. The bytes of an unsafe character are unsafe one at a time.
 */
static inline size_t
utf8_safe_len(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = utf8_char_len(str);

	if ((n == 1 && (*s < 0x20 || *s == 0x7f)) || (n == 2 && s[0] == 0xc2 && s[1] <= 0x9f)
	    || (n == 3 && s[0] == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9)))
		return 0;
	return n;
}

/* The length of s escaped (utf8_escape, uncut): strlen(s) when nothing in it is unsafe. */
static inline size_t
utf8_escaped_len(const char *s)
{
	size_t len = 0, n;

	while (*s) {
		n = utf8_safe_len(s);
		len += n ? n : 4;
		s += n ? n : 1;
	}
	return len;
}

/*
 * s with each unsafe byte (utf8_safe_len) written as the four characters \xNN (lower-case hex
 * digits), in out of len >= 4 bytes: at most len - 4 bytes of it, cut between two characters
 * or escapes, "..." after a cut. out of utf8_escaped_len(s) + 4 bytes (4 * strlen(s) + 4 at
 * most) holds it whole. A backslash is not doubled: the escaping keeps text one line and free
 * of controls rather than reversible. Returns out.
 */
static inline char *
utf8_escape(const char *s, char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t used = 0, n;

	if (len < 4) {
		if (len)
			out[0] = '\0';
		return out;
	}
	while (*s) {
		n = utf8_safe_len(s);
		if (used + (n ? n : 4) > len - 4)
			break;
		if (n) {
			memcpy(out + used, s, n);
			used += n;
			s += n;
			continue;
		}
		out[used++] = '\\';
		out[used++] = 'x';
		out[used++] = hex[(unsigned char)*s >> 4];
		out[used++] = hex[(unsigned char)*s & 0xf];
		s++;
	}
	if (*s) {
		memcpy(out + used, "...", 3);
		used += 3;
	}
	out[used] = '\0';
	return out;
}

#endif
