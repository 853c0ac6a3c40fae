/* E.164 telephone numbers, number ranges and extension ranges. */
#ifndef NUMPROV_E164_H
#define NUMPROV_E164_H

#include <stddef.h>
#include <stdint.h>

#define E164_MIN_DIGITS 8
#define E164_MAX_DIGITS 15
#define E164_MAX_EXT 10
/* "+" 15 digits ";ext=" 10 digits NUL */
#define E164_STRLEN 32

struct e164 {
	char digits[E164_MAX_DIGITS + 1]; /* country code first, no '+', NUL-terminated */
	char ext[E164_MAX_EXT + 1];	  /* extension digits, "" when there is none */
};

/*
 * Parse and normalise a number written by a person or returned by Graph:
 * "+44 1235 000123", "441235000123", "0044 1235 000123", "+44 (0)1235-000.123",
 * "tel:+441235000123", "+441235000000;ext=100", "tel:+44-1235-000000;ext=100".
 * Returns 0, or -1 with a one-line reason in err (no trailing newline).
 */
int e164_parse(const char *in, struct e164 *out, char *err, size_t errlen);

/* Canonical text: "+441235000123" or "+441235000000;ext=100". */
void e164_format(const struct e164 *n, char *buf, size_t len);

/* Total order: same as strcmp on the canonical text of equal-length numbers. */
int e164_cmp(const struct e164 *a, const struct e164 *b);

/* Length of the number's country code (1..3), 0 if none is known. */
int e164_country_code_len(const struct e164 *n);

struct e164_range {
	struct e164 first, last;
	int is_ext;    /* an extension range on one DID: first and last differ only in ext */
	uint64_t base; /* numeric value of first's digits (or of its extension) */
	uint64_t size; /* last - first + 1 */
};

/*
 * Build a range from its first and last numbers. Errors: either number invalid,
 * first > last, different lengths (digits or extension), one with an extension
 * and one without, extension range whose DIDs differ.
 */
int e164_range_init(
    struct e164_range *r, const char *first, const char *last, char *err, size_t errlen);

/* 1 and *offset set when n lies in r, else 0. */
int e164_range_contains(const struct e164_range *r, const struct e164 *n, uint64_t *offset);

/* The number at offset (0 <= offset < r->size). */
void e164_range_number(const struct e164_range *r, uint64_t offset, struct e164 *out);

/* 1 when the two ranges share at least one number. */
int e164_range_overlap(const struct e164_range *a, const struct e164_range *b);

#endif
