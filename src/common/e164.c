/* E.164 numbers: what people and Graph write, the canonical form, number ranges. */
#include "e164.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * Country codes assigned in ITU-T E.164 (the ITU list of assigned country codes),
 * spare codes left out. Shared and non-geographic codes are kept (800 and 808 freephone
 * and shared cost, 870 Inmarsat, 878 UPT, 881 GMSS, 882/883 international networks,
 * 888 OCHA, 979 premium rate, 991 ITPCS, 388 group of countries) because a wrong
 * rejection stops a real assignment while a wrong acceptance costs nothing.
 * The codes are prefix-free: at most one entry matches the start of a number.
 */
/* country codes grouped by zone, as the ITU lists them */
/* clang-format off */
static const char *const cc_table[] = {
	/* zone 1: NANP */
	"1",
	/* zone 2: Africa, Atlantic islands, Greenland */
	"20", "211", "212", "213", "216", "218",
	"220", "221", "222", "223", "224", "225", "226", "227", "228", "229",
	"230", "231", "232", "233", "234", "235", "236", "237", "238", "239",
	"240", "241", "242", "243", "244", "245", "246", "247", "248", "249",
	"250", "251", "252", "253", "254", "255", "256", "257", "258",
	"260", "261", "262", "263", "264", "265", "266", "267", "268", "269",
	"27", "290", "291", "297", "298", "299",
	/* zone 3: Europe */
	"30", "31", "32", "33", "34",
	"350", "351", "352", "353", "354", "355", "356", "357", "358", "359",
	"36",
	"370", "371", "372", "373", "374", "375", "376", "377", "378", "379",
	"380", "381", "382", "383", "385", "386", "387", "388", "389",
	"39",
	/* zone 4: Europe */
	"40", "41", "420", "421", "423", "43", "44", "45", "46", "47", "48", "49",
	/* zone 5: Central and South America */
	"500", "501", "502", "503", "504", "505", "506", "507", "508", "509",
	"51", "52", "53", "54", "55", "56", "57", "58",
	"590", "591", "592", "593", "594", "595", "596", "597", "598", "599",
	/* zone 6: South-East Asia and Oceania */
	"60", "61", "62", "63", "64", "65", "66",
	"670", "672", "673", "674", "675", "676", "677", "678", "679",
	"680", "681", "682", "683", "685", "686", "687", "688", "689",
	"690", "691", "692",
	/* zone 7: Russia, Kazakhstan */
	"7",
	/* zone 8: East Asia and international services */
	"800", "808", "81", "82", "84",
	"850", "852", "853", "855", "856", "86",
	"870", "878", "880", "881", "882", "883", "886", "888",
	/* zone 9: West, Central and South Asia, Middle East */
	"90", "91", "92", "93", "94", "95",
	"960", "961", "962", "963", "964", "965", "966", "967", "968",
	"970", "971", "972", "973", "974", "975", "976", "977", "979",
	"98",
	"991", "992", "993", "994", "995", "996", "997", "998",
};
/* clang-format on */

static int
cc_len(const char *digits, size_t n)
{
	for (size_t i = 0; i < sizeof cc_table / sizeof cc_table[0]; i++) {
		size_t len = strlen(cc_table[i]);
		if (len <= n && memcmp(cc_table[i], digits, len) == 0)
			return (int)len;
	}
	return 0;
}

static int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/*
 * The input goes into error messages and from there into syslog and SNMP, so
 * control bytes and quotes are escaped (one line, always) and long input is cut.
 */
static void
quote(const char *in, char *buf, size_t len)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;

	/* 9 bytes left always fit one escaped byte plus "..." and the NUL */
	for (; *s && o + 9 <= len && s - (const unsigned char *)in < 40; s++) {
		if (*s >= 0x20 && *s < 0x7f && *s != '"' && *s != '\\')
			buf[o++] = (char)*s;
		else
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", *s);
	}
	buf[o] = '\0';
	if (*s)
		memcpy(buf + o, "...", 4);
}

struct parser {
	const char *p, *end; /* what is left of the input, without surrounding blanks */
	int tel;	     /* in a tel: URI, where RFC 3966 allows no blanks */
	int intl;	     /* "+" or "00" given, so a leading 0 is no trunk prefix */
	size_t nd;	     /* digits seen, also those past the buffer, for the message */
	struct e164 num;
	char *err;
	size_t errlen;
	char quoted[64];
};

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static int
is_separator(char c, int tel)
{
	return c == '-' || c == '.' || c == '(' || c == ')' || (!tel && c == ' ');
}

static char
lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Case-insensitive match of the whole of [s, s+n) against word. */
static int
word_is(const char *s, size_t n, const char *word)
{
	if (n != strlen(word))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (lower(s[i]) != word[i])
			return 0;
	return 1;
}

static int
fail_char(struct parser *ps, char c)
{
	unsigned char u = (unsigned char)c;

	if (u >= 0x20 && u < 0x7f)
		return errf(
		    ps->err, ps->errlen, "\"%s\": unexpected character '%c'", ps->quoted, c);
	return errf(ps->err, ps->errlen, "\"%s\": unexpected character 0x%02x", ps->quoted, u);
}

static void
trim(struct parser *ps, const char *in)
{
	ps->p = in;
	ps->end = in + strlen(in);
	while (ps->p < ps->end && is_blank(*ps->p))
		ps->p++;
	while (ps->end > ps->p && is_blank(ps->end[-1]))
		ps->end--;
}

static void
scan_prefix(struct parser *ps)
{
	if (ps->end - ps->p >= 4 && word_is(ps->p, 4, "tel:")) {
		ps->tel = 1;
		ps->p += 4;
	}
	if (ps->p < ps->end && *ps->p == '+') {
		ps->intl = 1;
		ps->p++;
	} else if (ps->end - ps->p >= 2 && ps->p[0] == '0' && ps->p[1] == '0') {
		ps->intl = 1;
		ps->p += 2;
	}
}

/*
 * "(0)" written straight after the country code is the national trunk prefix
 * (UK style "+44 (0)1235 ..."); international callers do not dial it.
 */
static int
at_trunk(const struct parser *ps)
{
	return ps->end - ps->p >= 3 && ps->p[1] == '0' && ps->p[2] == ')' && ps->nd >= 1
	    && ps->nd <= 3 && cc_len(ps->num.digits, ps->nd) == (int)ps->nd;
}

static int
scan_char(struct parser *ps)
{
	char c = *ps->p;

	if (is_digit(c)) {
		if (ps->nd < E164_MAX_DIGITS)
			ps->num.digits[ps->nd] = c;
		ps->nd++;
		ps->p++;
	} else if (c == '(' && at_trunk(ps)) {
		ps->p += 3;
	} else if (is_separator(c, ps->tel)) {
		ps->p++;
	} else {
		return fail_char(ps, c);
	}
	return 0;
}

static int
scan_number(struct parser *ps)
{
	while (ps->p < ps->end && *ps->p != ';')
		if (scan_char(ps) < 0)
			return -1;
	return 0;
}

static int
scan_ext(struct parser *ps, const char *p, const char *stop)
{
	size_t n = 0;

	if (ps->num.ext[0])
		return errf(ps->err, ps->errlen, "\"%s\": more than one extension", ps->quoted);
	for (; p < stop; p++) {
		if (is_digit(*p)) {
			if (n < E164_MAX_EXT)
				ps->num.ext[n] = *p;
			n++;
		} else if (!is_separator(*p, ps->tel)) {
			return fail_char(ps, *p);
		}
	}
	if (n < 1 || n > E164_MAX_EXT)
		return errf(ps->err, ps->errlen, "\"%s\": extension must be 1 to %d digits",
		    ps->quoted, E164_MAX_EXT);
	return 0;
}

static const char *
find(const char *p, const char *stop, char c)
{
	while (p < stop && *p != c)
		p++;
	return p;
}

/* One ";name=value" with ps->p just after the ';'. Unknown names (isub, ...) are
 * ignored as RFC 3966 asks; phone-context marks a number that only works locally. */
static int
scan_param(struct parser *ps)
{
	const char *name, *eq, *stop;
	int rc = 0;

	while (!ps->tel && ps->p < ps->end && *ps->p == ' ')
		ps->p++;
	name = ps->p;
	stop = find(name, ps->end, ';');
	eq = find(name, stop, '=');
	if (eq == name)
		return errf(ps->err, ps->errlen, "\"%s\": empty parameter after ';'", ps->quoted);
	for (const char *q = name; q < eq; q++)
		if (*q != '-' && !is_digit(*q) && !(lower(*q) >= 'a' && lower(*q) <= 'z'))
			return fail_char(ps, *q);
	if (word_is(name, (size_t)(eq - name), "ext"))
		rc = scan_ext(ps, eq < stop ? eq + 1 : stop, stop);
	else if (word_is(name, (size_t)(eq - name), "phone-context"))
		rc = errf(ps->err, ps->errlen,
		    "\"%s\" is a local number (phone-context); write it in international form "
		    "(+44...)",
		    ps->quoted);
	ps->p = stop;
	return rc;
}

static int
scan_params(struct parser *ps)
{
	while (ps->p < ps->end) {
		ps->p++; /* the ';' that stopped scan_number or the previous parameter */
		if (scan_param(ps) < 0)
			return -1;
	}
	return 0;
}

static int
check_number(struct parser *ps)
{
	if (ps->nd == 0)
		return errf(ps->err, ps->errlen, "\"%s\" has no digits", ps->quoted);
	if (ps->num.digits[0] == '0' && ps->intl)
		return errf(
		    ps->err, ps->errlen, "\"%s\": a country code cannot start with 0", ps->quoted);
	if (ps->num.digits[0] == '0')
		return errf(ps->err, ps->errlen,
		    "\"%s\" is in national format; write it in international form (+44...)",
		    ps->quoted);
	if (ps->nd < E164_MIN_DIGITS || ps->nd > E164_MAX_DIGITS)
		return errf(ps->err, ps->errlen,
		    "\"%s\" has %zu digits; an E.164 number has %d to %d", ps->quoted, ps->nd,
		    E164_MIN_DIGITS, E164_MAX_DIGITS);
	if (cc_len(ps->num.digits, ps->nd) == 0)
		return errf(ps->err, ps->errlen, "\"%s\": unknown country code", ps->quoted);
	return 0;
}

int
e164_parse(const char *in, struct e164 *out, char *err, size_t errlen)
{
	struct parser ps;

	memset(&ps, 0, sizeof ps);
	memset(out, 0, sizeof *out);
	ps.err = err;
	ps.errlen = errlen;
	if (!in)
		return errf(err, errlen, "no number given");
	quote(in, ps.quoted, sizeof ps.quoted);
	trim(&ps, in);
	if (ps.p == ps.end)
		return errf(err, errlen, "empty number");
	scan_prefix(&ps);
	if (scan_number(&ps) < 0 || scan_params(&ps) < 0 || check_number(&ps) < 0)
		return -1;
	*out = ps.num;
	return 0;
}

void
e164_format(const struct e164 *n, char *buf, size_t len)
{
	if (len == 0)
		return;
	if (n->ext[0])
		snprintf(buf, len, "+%s;ext=%s", n->digits, n->ext);
	else
		snprintf(buf, len, "+%s", n->digits);
}

/* Digit strings: shorter first, then digit by digit (numeric order at equal length). */
static int
cmp_digits(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	int c;

	if (la != lb)
		return la < lb ? -1 : 1;
	c = strcmp(a, b);
	return (c > 0) - (c < 0);
}

/* By digits, then by extension, where "no extension" comes before any extension. */
int
e164_cmp(const struct e164 *a, const struct e164 *b)
{
	int c = cmp_digits(a->digits, b->digits);

	return c ? c : cmp_digits(a->ext, b->ext);
}

int
e164_country_code_len(const struct e164 *n)
{
	return cc_len(n->digits, strlen(n->digits));
}

/* The part of a number that counts up along a range. */
static const char *
counter(const struct e164 *n)
{
	return n->ext[0] ? n->ext : n->digits;
}

static uint64_t
to_u64(const char *s)
{
	uint64_t v = 0;

	for (; is_digit(*s); s++)
		v = v * 10 + (uint64_t)(*s - '0');
	return v;
}

/* n could be a member of r: same kind, same DID for extensions, same width. */
static int
same_shape(const struct e164_range *r, const struct e164 *n)
{
	if (r->is_ext)
		return n->ext[0] && strcmp(n->digits, r->first.digits) == 0
		    && strlen(n->ext) == strlen(r->first.ext);
	return !n->ext[0] && strlen(n->digits) == strlen(r->first.digits);
}

static int
range_check(const struct e164 *f, const struct e164 *l, char *err, size_t errlen)
{
	char fs[E164_STRLEN], ls[E164_STRLEN];

	e164_format(f, fs, sizeof fs);
	e164_format(l, ls, sizeof ls);
	if (!f->ext[0] != !l->ext[0])
		return errf(err, errlen,
		    "\"%s\" and \"%s\": a range needs an extension on both numbers or on neither",
		    fs, ls);
	if (f->ext[0] && strcmp(f->digits, l->digits) != 0)
		return errf(err, errlen,
		    "\"%s\" and \"%s\": an extension range must stay on one DID", fs, ls);
	if (strlen(counter(f)) != strlen(counter(l)))
		return errf(err, errlen,
		    "\"%s\" and \"%s\" have different lengths; first and last of a range need the "
		    "same",
		    fs, ls);
	if (e164_cmp(f, l) > 0)
		return errf(err, errlen, "first \"%s\" is greater than last \"%s\"", fs, ls);
	return 0;
}

int
e164_range_init(struct e164_range *r, const char *first, const char *last, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	if (e164_parse(first, &r->first, err, errlen) < 0
	    || e164_parse(last, &r->last, err, errlen) < 0
	    || range_check(&r->first, &r->last, err, errlen) < 0) {
		memset(r, 0, sizeof *r);
		return -1;
	}
	r->is_ext = r->first.ext[0] != '\0';
	r->base = to_u64(counter(&r->first));
	r->size = to_u64(counter(&r->last)) - r->base + 1;
	return 0;
}

int
e164_range_contains(const struct e164_range *r, const struct e164 *n, uint64_t *offset)
{
	uint64_t v;

	if (r->size == 0 || !same_shape(r, n))
		return 0;
	v = to_u64(counter(n));
	if (v < r->base || v - r->base >= r->size)
		return 0;
	if (offset)
		*offset = v - r->base;
	return 1;
}

/* Keeps the width of first, so in an extension range "000".."099" offset 7 is "007". */
void
e164_range_number(const struct e164_range *r, uint64_t offset, struct e164 *out)
{
	uint64_t v = r->base + offset;
	char *c;

	*out = r->first;
	c = r->is_ext ? out->ext : out->digits;
	for (size_t i = strlen(c); i-- > 0; v /= 10)
		c[i] = (char)('0' + v % 10);
}

int
e164_range_overlap(const struct e164_range *a, const struct e164_range *b)
{
	if (a->size == 0 || b->size == 0 || a->is_ext != b->is_ext || !same_shape(a, &b->first))
		return 0;
	return a->base <= b->base + (b->size - 1) && b->base <= a->base + (a->size - 1);
}
