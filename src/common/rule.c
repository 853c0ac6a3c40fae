/*
 * The rule language of docs/interfaces.md, rules. A rule is parsed once, when the config is
 * loaded, into a small tree whose literals are already trimmed and case-folded:
 * evaluating it for every user in every sync cycle is then a walk that never
 * allocates.
 */
#ifdef HAVE_CONFIG_H
#include "build-config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* newlocale() and towlower_l() under a strict -std=c11 */
#endif

#include "rule.h"
#include "utf8.h"

#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

/* A rule lives in one config string; anything longer is a mistake, not a rule. */
#define RULE_MAX_LEN 8192
/* Deep enough for any real rule, shallow enough that recursion cannot overflow. */
#define RULE_MAX_DEPTH 64
/* Room for quoting the previous token inside an error message. */
#define CLIP_SHORT 24

/* ------------------------------------------------------------------------ */
/* Attribute names                                                          */
/* ------------------------------------------------------------------------ */

static const char *const attr_names[RA__MAX] = {
	"city",
	"office",
	"usage_location",
	"country",
	"state",
	"department",
	"company",
	"job_title",
	"employee_type",
	"upn",
	"extension_attribute1",
	"extension_attribute2",
	"extension_attribute3",
	"extension_attribute4",
	"extension_attribute5",
	"extension_attribute6",
	"extension_attribute7",
	"extension_attribute8",
	"extension_attribute9",
	"extension_attribute10",
	"extension_attribute11",
	"extension_attribute12",
	"extension_attribute13",
	"extension_attribute14",
	"extension_attribute15",
};

/* Administrators copy names from Graph Explorer or the Entra portal: accept them. */
static const struct {
	const char *name;
	enum rule_attr attr;
} attr_aliases[] = {
	{ "officeLocation", RA_OFFICE },
	{ "office_location", RA_OFFICE },
	{ "usageLocation", RA_USAGE_LOCATION },
	{ "companyName", RA_COMPANY },
	{ "company_name", RA_COMPANY },
	{ "jobTitle", RA_JOB_TITLE },
	{ "employeeType", RA_EMPLOYEE_TYPE },
	{ "userPrincipalName", RA_UPN },
	{ "user_principal_name", RA_UPN },
};

#define N_ALIASES (sizeof attr_aliases / sizeof attr_aliases[0])

static bool
name_is(const char *name, size_t len, const char *candidate)
{
	return strlen(candidate) == len && strncasecmp(name, candidate, len) == 0;
}

/*
 * The number of "extension_attributeN" / "extensionAttributeN" (any case), 0 when
 * the name has that shape but no plain number, -1 when it has another shape.
 */
static int
ext_number(const char *name, size_t len)
{
	static const char *const prefixes[] = { "extension_attribute", "extensionattribute" };
	size_t i, plen;
	int num = 0;

	for (i = 0; i < 2; i++) {
		plen = strlen(prefixes[i]);
		if (len > plen && strncasecmp(name, prefixes[i], plen) == 0)
			break;
	}
	if (i == 2)
		return -1;
	if (name[plen] == '0' || len - plen > 3)
		return 0;
	for (i = plen; i < len; i++) {
		if (name[i] < '0' || name[i] > '9')
			return 0;
		num = num * 10 + (name[i] - '0');
	}
	return num;
}

const char *
rule_attr_name(enum rule_attr a)
{
	if ((int)a < 0 || a >= RA__MAX)
		return NULL;
	return attr_names[a];
}

int
rule_attr_lookup(const char *name, size_t len)
{
	size_t i;
	int num;

	if (!name)
		return -1;
	for (i = 0; i < RA_EXT1; i++)
		if (name_is(name, len, attr_names[i]))
			return (int)i;
	for (i = 0; i < N_ALIASES; i++)
		if (name_is(name, len, attr_aliases[i].name))
			return (int)attr_aliases[i].attr;
	num = ext_number(name, len);
	if (num >= 1 && num <= 15)
		return RA_EXT1 + num - 1;
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Text: UTF-8 decoding, case folding, trimming                             */
/* ------------------------------------------------------------------------ */

/* Invalid UTF-8 bytes decode to RAW_BYTE + byte: never equal to a character. */
#define RAW_BYTE 0x110000u

/* Length of the well-formed UTF-8 sequence at s (0 if there is none), *cp its value. */
static size_t
utf8_seq(const unsigned char *s, const unsigned char *end, uint32_t *cp)
{
	uint32_t c = s[0], min;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 2, c &= 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3, c &= 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4, c &= 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if ((size_t)(end - s) < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	/* Overlong forms and surrogates would let two spellings of one text differ. */
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

/* The next character at *p (a code point, or RAW_BYTE + byte), advancing *p. */
static uint32_t
utf8_next(const unsigned char **p, const unsigned char *end)
{
	const unsigned char *s = *p;
	uint32_t cp;
	size_t n;

	if (s[0] < 0x80) {
		*p = s + 1;
		return s[0];
	}
	n = utf8_seq(s, end, &cp);
	if (n == 0) {
		*p = s + 1;
		return RAW_BYTE + s[0];
	}
	*p = s + n;
	return cp;
}

static pthread_once_t fold_once = PTHREAD_ONCE_INIT;
static locale_t fold_locale = (locale_t)0;

static void
fold_init(void)
{
	/* Our own locale object: setlocale() would change every thread of the process. */
	fold_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/*
 * Simple case folding, close to Unicode's: lower(upper(c)) also unifies the
 * variant lower-case forms (final sigma, long s, micro sign) with their letters.
 * The Turkish dotless i is the one letter that trick would wrongly merge.
 */
static uint32_t
fold(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
	if (c >= RAW_BYTE || c == 0x131)
		return c;
	pthread_once(&fold_once, fold_init);
	if (fold_locale == (locale_t)0)
		return c;
	return (uint32_t)towlower_l(towupper_l((wint_t)c, fold_locale), fold_locale);
}

struct span {
	const unsigned char *s, *e;
};

/* Spaces pasted around a value are noise; NBSP comes with text copied from the web. */
static size_t
space_at(const unsigned char *p, const unsigned char *e)
{
	if (p >= e)
		return 0;
	if (*p == ' ' || (*p >= '\t' && *p <= '\r'))
		return 1;
	return e - p >= 2 && p[0] == 0xc2 && p[1] == 0xa0 ? 2 : 0;
}

static size_t
space_before(const unsigned char *b, const unsigned char *e)
{
	if (e <= b)
		return 0;
	if (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r'))
		return 1;
	return e - b >= 2 && e[-2] == 0xc2 && e[-1] == 0xa0 ? 2 : 0;
}

/* A missing value is "" (docs/interfaces.md, rules). */
static struct span
trim(const char *v, bool trailing)
{
	struct span sp;
	size_t w;

	if (!v)
		v = "";
	sp.s = (const unsigned char *)v;
	sp.e = sp.s + strlen(v);
	while ((w = space_at(sp.s, sp.e)) > 0)
		sp.s += w;
	while (trailing && (w = space_before(sp.s, sp.e)) > 0)
		sp.e -= w;
	return sp;
}

int
rule_text_equal(const char *a, const char *b)
{
	struct span x = trim(a, true), y = trim(b, true);

	while (x.s < x.e && y.s < y.e) {
		uint32_t cx = fold(utf8_next(&x.s, x.e));

		if (cx != fold(utf8_next(&y.s, y.e)))
			return 0;
	}
	return x.s == x.e && y.s == y.e;
}

/* ------------------------------------------------------------------------ */
/* The tree                                                                 */
/* ------------------------------------------------------------------------ */

struct lit {
	char *text;	 /* as written, escapes resolved: explain shows this */
	uint32_t *units; /* trimmed and folded: comparisons use this */
	size_t n;
};

enum node_kind { N_OR, N_AND, N_NOT, N_EQ, N_NE, N_IN, N_PREFIX };

struct node {
	enum node_kind kind;
	bool paren;	     /* written in parentheses: explain shows them again */
	enum rule_attr attr; /* tests */
	size_t n;	     /* children (OR, AND, NOT) or literals (tests) */
	union {
		struct node **kids;
		struct lit *lits;
	};
};

struct rule {
	struct node *root;
};

static bool
is_test(const struct node *n)
{
	return n->kind >= N_EQ;
}

static void
node_free(struct node *n)
{
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n->n; i++) {
		if (is_test(n)) {
			free(n->lits[i].text);
			free(n->lits[i].units);
		} else {
			node_free(n->kids[i]);
		}
	}
	if (is_test(n))
		free(n->lits);
	else
		free(n->kids);
	free(n);
}

void
rule_free(struct rule *r)
{
	if (!r)
		return;
	node_free(r->root);
	free(r);
}

/* ------------------------------------------------------------------------ */
/* Lexer                                                                    */
/* ------------------------------------------------------------------------ */

enum tok {
	T_START,
	T_END,
	T_WORD,
	T_STRING,
	T_LPAREN,
	T_RPAREN,
	T_COMMA,
	T_EQ,
	T_NE,
	T_AND,
	T_OR,
	T_NOT,
	T_IN,
	T_STARTSWITH,
	T_BAD,
	T_UNTERMINATED
};

struct token {
	enum tok kind;
	size_t off, len; /* the token as written */
};

/*
 * Word processors turn "..." into typographic quotes, and the product page's own
 * example uses them; German autocorrect writes „...“.
 */
static const struct quote {
	const char *open;
	const char *close[2];
} quotes[] = {
	{ "\"", { "\"", NULL } }, { "'", { "'", NULL } },
	{ "\xe2\x80\x9c", { "\xe2\x80\x9d", NULL } },		/* “ ” */
	{ "\xe2\x80\x9d", { "\xe2\x80\x9d", NULL } },		/* ” ” */
	{ "\xe2\x80\x9e", { "\xe2\x80\x9c", "\xe2\x80\x9d" } }, /* „ “ or „ ” */
	{ "\xe2\x80\x98", { "\xe2\x80\x99", NULL } },		/* ‘ ’ */
};

static bool
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const struct quote *
quote_at(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof quotes / sizeof quotes[0]; i++)
		if (starts_with(s, quotes[i].open))
			return &quotes[i];
	return NULL;
}

static size_t
closer_at(const struct quote *q, const char *s)
{
	size_t i;

	for (i = 0; i < 2 && q->close[i]; i++)
		if (starts_with(s, q->close[i]))
			return strlen(q->close[i]);
	return 0;
}

/* A backslash escapes itself and the closing quote; any other backslash is literal. */
static size_t
escaped_len(const struct quote *q, const char *s)
{
	return *s == '\\' ? 1 : closer_at(q, s);
}

struct parser {
	const char *text;
	size_t len;
	struct token tok;  /* the lookahead */
	struct token prev; /* the token before it, for "after 'X'" in messages */
	struct rule_error *err;
	int depth;
	bool failed;
};

static struct token
make_token(enum tok kind, size_t off, size_t len)
{
	struct token t = { kind, off, len };

	return t;
}

static struct token
lex_string(const struct parser *p, size_t i)
{
	const struct quote *q = quote_at(p->text + i);
	size_t j = i + strlen(q->open);

	while (j < p->len) {
		size_t w;

		if (p->text[j] == '\\' && (w = escaped_len(q, p->text + j + 1)) > 0)
			j += 1 + w;
		else if ((w = closer_at(q, p->text + j)) > 0)
			return make_token(T_STRING, i, j + w - i);
		else
			j++;
	}
	return make_token(T_UNTERMINATED, i, p->len - i);
}

static bool
is_word_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
	    || c == '_' || c >= 0x80;
}

static struct token
lex_word(const struct parser *p, size_t i)
{
	static const struct {
		const char *word;
		enum tok kind;
	} keywords[] = {
		{ "AND", T_AND },
		{ "OR", T_OR },
		{ "NOT", T_NOT },
		{ "IN", T_IN },
		{ "STARTSWITH", T_STARTSWITH },
	};
	const unsigned char *s = (const unsigned char *)p->text;
	size_t j = i, k;

	/* Non-ASCII bytes belong to words, so that 'Städte' is reported whole. */
	while (j < p->len && is_word_byte(s[j]) && !quote_at(p->text + j)
	    && !space_at(s + j, s + p->len))
		j++;
	for (k = 0; k < sizeof keywords / sizeof keywords[0]; k++)
		if (name_is(p->text + i, j - i, keywords[k].word))
			return make_token(keywords[k].kind, i, j - i);
	return make_token(T_WORD, i, j - i);
}

static struct token
lex_punct(const struct parser *p, size_t i)
{
	const char *s = p->text + i;

	switch (s[0]) {
	case '(':
		return make_token(T_LPAREN, i, 1);
	case ')':
		return make_token(T_RPAREN, i, 1);
	case ',':
		return make_token(T_COMMA, i, 1);
	case '=':
		return make_token(T_EQ, i, s[1] == '=' ? 2 : 1);
	case '!':
		if (s[1] == '=')
			return make_token(T_NE, i, 2);
		break;
	default:
		break;
	}
	/* Operators of other languages: keep them whole so the message can name them. */
	if (starts_with(s, "&&") || starts_with(s, "||") || starts_with(s, "<>"))
		return make_token(T_BAD, i, 2);
	return make_token(T_BAD, i, 1);
}

static struct token
lex(const struct parser *p, size_t i)
{
	const unsigned char *s = (const unsigned char *)p->text;
	size_t w;

	while ((w = space_at(s + i, s + p->len)) > 0)
		i += w;
	if (i >= p->len)
		return make_token(T_END, p->len, 0);
	if (quote_at(p->text + i))
		return lex_string(p, i);
	if (is_word_byte(s[i]))
		return lex_word(p, i);
	return lex_punct(p, i);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Copy n bytes of s, or as much as fits ending in "..." without splitting a character. */
static void
copy_clipped(char *buf, size_t size, const char *s, size_t n)
{
	if (n < size) {
		memcpy(buf, s, n);
		buf[n] = '\0';
		return;
	}
	n = utf8_prefix(s, size - 4);
	memcpy(buf, s, n);
	memcpy(buf + n, "...", 4);
}

static void
token_text(const struct parser *p, const struct token *t, char *buf, size_t size)
{
	if (t->kind == T_END || t->kind == T_START)
		copy_clipped(buf, size, "end of rule", strlen("end of rule"));
	else
		copy_clipped(buf, size, p->text + t->off, t->len);
}

__attribute__((format(printf, 3, 4))) static void
fail(struct parser *p, const struct token *t, const char *fmt, ...)
{
	va_list ap;

	if (p->failed)
		return;
	p->failed = true;
	p->err->offset = t->off;
	token_text(p, t, p->err->token, sizeof p->err->token);
	va_start(ap, fmt);
	vsnprintf(p->err->message, sizeof p->err->message, fmt, ap);
	va_end(ap);
}

static void
fail_oom(struct parser *p)
{
	fail(p, &p->tok, "out of memory");
}

static void
fail_bad_char(struct parser *p)
{
	static const struct {
		const char *text, *hint;
	} hints[] = {
		{ "&&", " (write AND)" },
		{ "&", " (write AND)" },
		{ "||", " (write OR)" },
		{ "|", " (write OR)" },
		{ "<>", " (write != for 'not equal')" },
		{ "!", " (write NOT, or != for 'not equal')" },
		{ "<", " (only =, !=, IN and STARTSWITH compare)" },
		{ ">", " (only =, !=, IN and STARTSWITH compare)" },
	};
	char tok[CLIP_SHORT];
	const char *hint = "";
	size_t i;

	token_text(p, &p->tok, tok, sizeof tok);
	for (i = 0; i < sizeof hints / sizeof hints[0]; i++)
		if (strcmp(tok, hints[i].text) == 0) {
			hint = hints[i].hint;
			break;
		}
	fail(p, &p->tok, "unexpected character '%s'%s", tok, hint);
}

static void
advance(struct parser *p)
{
	const struct quote *q;

	if (p->failed)
		return;
	p->prev = p->tok;
	p->tok = lex(p, p->tok.off + p->tok.len);
	if (p->tok.kind == T_BAD) {
		fail_bad_char(p);
	} else if (p->tok.kind == T_UNTERMINATED) {
		q = quote_at(p->text + p->tok.off);
		fail(p, &p->tok, "unterminated string (no closing %s)", q->close[0]);
	}
}

/* Optimal string alignment distance (a swap counts once), case-insensitive. */
static size_t
edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
	size_t d[3][33], i, j, best;
	size_t *cur, *up, *up2; /* rows i, i - 1 and i - 2, rotating */

	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++) {
		cur = d[i % 3], up = d[(i + 2) % 3], up2 = d[(i + 1) % 3];
		cur[0] = i;
		for (j = 1; j <= lb; j++) {
			uint32_t ca = fold((unsigned char)a[i - 1]);
			uint32_t cb = fold((unsigned char)b[j - 1]);

			best = up[j - 1] + (ca != cb);
			if (up[j] + 1 < best)
				best = up[j] + 1;
			if (cur[j - 1] + 1 < best)
				best = cur[j - 1] + 1;
			if (i > 1 && j > 1 && ca == fold((unsigned char)b[j - 2])
			    && cb == fold((unsigned char)a[i - 2]) && up2[j - 2] + 1 < best)
				best = up2[j - 2] + 1;
			cur[j] = best;
		}
	}
	return d[la % 3][lb];
}

/* The accepted spelling closest to name, if it is close enough to be a typo. */
static const char *
closest_name(const char *name, size_t len)
{
	const char *best = NULL, *cand;
	size_t i, d, best_d = (size_t)-1, limit = len <= 4 ? 1 : len <= 8 ? 2 : 3;

	if (len > 32)
		return NULL;
	for (i = 0; i < RA__MAX + N_ALIASES; i++) {
		cand = i < RA__MAX ? attr_names[i] : attr_aliases[i - RA__MAX].name;
		if (strlen(cand) > 32)
			continue;
		d = edit_distance(name, len, cand, strlen(cand));
		if (d < best_d) {
			best_d = d;
			best = cand;
		}
	}
	return best_d <= limit ? best : NULL;
}

static void
fail_unknown_attr(struct parser *p, const struct token *t)
{
	char name[CLIP_SHORT + 8];
	const char *near = closest_name(p->text + t->off, t->len);

	token_text(p, t, name, sizeof name);
	if (ext_number(p->text + t->off, t->len) >= 0)
		fail(p, t, "unknown attribute '%s' (extension attributes are numbered 1 to 15)",
		    name);
	else if (near)
		fail(p, t, "unknown attribute '%s' (did you mean '%s'?)", name, near);
	else
		fail(p, t, "unknown attribute '%s'", name);
}

/* "after 'AND'" for messages, or "" at the very start of the rule. */
static const char *
after_prev(const struct parser *p, char *buf, size_t size)
{
	char tok[CLIP_SHORT];

	if (p->prev.kind == T_START)
		return "";
	token_text(p, &p->prev, tok, sizeof tok);
	snprintf(buf, size, " after '%s'", tok);
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Parser                                                                   */
/* ------------------------------------------------------------------------ */

static struct node *
node_new(struct parser *p, enum node_kind kind)
{
	struct node *n = calloc(1, sizeof *n);

	if (!n)
		fail_oom(p);
	else
		n->kind = kind;
	return n;
}

/* Children and literals grow by doubling; n->n is the count in use. */
static bool
node_reserve(struct parser *p, struct node *n, size_t elem)
{
	void *old = is_test(n) ? (void *)n->lits : (void *)n->kids, *arr;

	if (n->n & (n->n - 1))
		return true; /* not a power of two: the last doubling left room */
	/* On failure the old array stays in the node, and node_free() releases it. */
	arr = realloc(old, (n->n ? 2 * n->n : 1) * elem);
	if (!arr) {
		fail_oom(p);
		return false;
	}
	if (is_test(n))
		n->lits = arr;
	else
		n->kids = arr;
	return true;
}

static bool
node_add(struct parser *p, struct node *n, struct node *child)
{
	if (!node_reserve(p, n, sizeof *n->kids))
		return false;
	n->kids[n->n++] = child;
	return true;
}

/* The string token's content with escapes resolved, NUL-terminated. */
static char *
unescape(const struct parser *p, const struct token *t)
{
	const struct quote *q = quote_at(p->text + t->off);
	const char *s = p->text + t->off + strlen(q->open);
	char *out = malloc(t->len + 1), *o = out;

	if (!out)
		return NULL;
	/* The lexer found the closing quote with the same scan. */
	for (;;) {
		size_t w;

		if (*s == '\\' && (w = escaped_len(q, s + 1)) > 0) {
			memcpy(o, s + 1, w);
			o += w, s += 1 + w;
		} else if (closer_at(q, s) > 0) {
			break;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
	return out;
}

static bool
lit_init(struct lit *l, char *text, bool prefix)
{
	/* A prefix keeps its trailing spaces: "Office " is not "Office1"'s prefix. */
	struct span sp = trim(text, !prefix);

	l->units = malloc(((size_t)(sp.e - sp.s) + 1) * sizeof *l->units);
	if (!l->units)
		return false;
	l->text = text;
	l->n = 0;
	while (sp.s < sp.e)
		l->units[l->n++] = fold(utf8_next(&sp.s, sp.e));
	return true;
}

static void
expect_string(struct parser *p, struct node *n)
{
	char *text;

	if (p->failed)
		return;
	if (p->tok.kind != T_STRING) {
		char buf[CLIP_SHORT + 16];
		const char *after = after_prev(p, buf, sizeof buf);

		/* A bare word is most likely a value someone forgot to quote. */
		if (p->tok.kind == T_WORD)
			fail(p, &p->tok, "expected a string in quotes%s", after);
		else
			fail(p, &p->tok, "expected a string%s", after);
		return;
	}
	if (!node_reserve(p, n, sizeof *n->lits))
		return;
	text = unescape(p, &p->tok);
	if (!text || !lit_init(&n->lits[n->n], text, n->kind == N_PREFIX)) {
		free(text);
		fail_oom(p);
		return;
	}
	n->n++;
	advance(p);
}

static void
parse_in_list(struct parser *p, struct node *n)
{
	struct token open;

	advance(p);
	if (p->failed)
		return;
	if (p->tok.kind != T_LPAREN) {
		fail(p, &p->tok, "expected '(' after IN");
		return;
	}
	open = p->tok;
	advance(p);
	if (p->tok.kind == T_RPAREN)
		fail(p, &p->tok, "empty IN list");
	while (!p->failed) {
		expect_string(p, n);
		if (p->failed)
			return;
		if (p->tok.kind == T_RPAREN) {
			advance(p);
			return;
		}
		if (p->tok.kind == T_END)
			fail(p, &p->tok, "missing ')' to close the IN list at character %zu",
			    open.off + 1);
		else if (p->tok.kind != T_COMMA)
			fail(p, &p->tok, "expected ',' or ')' in the IN list");
		advance(p);
	}
}

static struct node *
parse_test(struct parser *p)
{
	struct token name = p->tok;
	char tok[CLIP_SHORT];
	struct node *n;
	int attr = rule_attr_lookup(p->text + name.off, name.len);

	if (attr < 0) {
		fail_unknown_attr(p, &name);
		return NULL;
	}
	advance(p);
	n = node_new(p, N_EQ);
	if (!n || p->failed) {
		free(n);
		return NULL;
	}
	n->attr = (enum rule_attr)attr;
	switch (p->tok.kind) {
	case T_EQ:
	case T_NE:
	case T_STARTSWITH:
		n->kind = p->tok.kind == T_EQ ? N_EQ : p->tok.kind == T_NE ? N_NE : N_PREFIX;
		advance(p);
		expect_string(p, n);
		break;
	case T_IN:
		n->kind = N_IN;
		parse_in_list(p, n);
		break;
	default:
		token_text(p, &name, tok, sizeof tok);
		fail(p, &p->tok, "expected an operator (=, !=, IN or STARTSWITH) after '%s'", tok);
		break;
	}
	if (p->failed) {
		node_free(n);
		return NULL;
	}
	return n;
}

static struct node *parse_list(struct parser *p, enum node_kind kind);
static struct node *parse_factor(struct parser *p);

static bool
enter(struct parser *p)
{
	if (++p->depth <= RULE_MAX_DEPTH)
		return true;
	fail(p, &p->tok, "nested too deeply (more than %d levels of '(' and NOT)", RULE_MAX_DEPTH);
	return false;
}

static struct node *
parse_not(struct parser *p)
{
	struct node *n, *child = NULL;

	if (enter(p)) {
		advance(p);
		child = parse_factor(p);
	}
	p->depth--;
	if (!child)
		return NULL;
	n = node_new(p, N_NOT);
	if (!n || !node_add(p, n, child)) {
		node_free(child);
		node_free(n);
		return NULL;
	}
	return n;
}

static struct node *
parse_group(struct parser *p)
{
	struct token open = p->tok;
	struct node *inner = NULL;

	if (enter(p)) {
		advance(p);
		inner = parse_list(p, N_OR);
	}
	p->depth--;
	if (!inner)
		return NULL;
	if (p->tok.kind == T_END)
		fail(p, &p->tok, "missing ')' to close the '(' at character %zu", open.off + 1);
	else if (p->tok.kind != T_RPAREN)
		fail(p, &p->tok, "expected AND, OR or ')' to close the '(' at character %zu",
		    open.off + 1);
	inner->paren = true;
	advance(p);
	if (p->failed) {
		node_free(inner);
		return NULL;
	}
	return inner;
}

static struct node *
parse_factor(struct parser *p)
{
	char after[CLIP_SHORT + 16];

	if (p->failed)
		return NULL;
	switch (p->tok.kind) {
	case T_NOT:
		return parse_not(p);
	case T_LPAREN:
		return parse_group(p);
	case T_WORD:
		return parse_test(p);
	default:
		fail(p, &p->tok, "expected an attribute name, '(' or NOT%s",
		    after_prev(p, after, sizeof after));
		return NULL;
	}
}

static struct node *
parse_operand(struct parser *p, enum node_kind kind)
{
	return kind == N_OR ? parse_list(p, N_AND) : parse_factor(p);
}

/* expr (kind N_OR) and term (kind N_AND): flat lists, so long chains stay shallow. */
static struct node *
parse_list(struct parser *p, enum node_kind kind)
{
	enum tok sep = kind == N_OR ? T_OR : T_AND;
	struct node *n, *child = parse_operand(p, kind);

	if (!child || p->tok.kind != sep)
		return child;
	n = node_new(p, kind);
	if (!n || !node_add(p, n, child)) {
		node_free(child);
		node_free(n);
		return NULL;
	}
	while (p->tok.kind == sep && !p->failed) {
		advance(p);
		child = parse_operand(p, kind);
		if (!child || !node_add(p, n, child)) {
			node_free(child);
			node_free(n);
			return NULL;
		}
	}
	return n;
}

static void
fail_trailing(struct parser *p)
{
	char tok[CLIP_SHORT];

	token_text(p, &p->tok, tok, sizeof tok);
	switch (p->tok.kind) {
	case T_RPAREN:
		fail(p, &p->tok, "unexpected ')' without a matching '('");
		break;
	case T_WORD:
	case T_STRING:
	case T_LPAREN:
	case T_NOT:
		fail(p, &p->tok, "unexpected '%s' after the end of the rule (missing AND or OR?)",
		    tok);
		break;
	default:
		fail(p, &p->tok, "unexpected '%s' after the end of the rule", tok);
		break;
	}
}

struct rule *
rule_parse(const char *text, struct rule_error *err)
{
	struct rule_error scratch = { 0 };
	struct parser p;
	struct node *root;
	struct rule *r;

	memset(&p, 0, sizeof p);
	p.err = err ? err : &scratch;
	memset(p.err, 0, sizeof *p.err);
	p.text = text ? text : "";
	p.len = strnlen(p.text, RULE_MAX_LEN + 1);
	p.tok = make_token(T_START, 0, 0);
	if (p.len > RULE_MAX_LEN) {
		p.len = strnlen(p.text, RULE_MAX_LEN + sizeof p.err->token);
		fail(&p, &(struct token) { T_WORD, RULE_MAX_LEN, p.len - RULE_MAX_LEN },
		    "rule too long (more than %d bytes)", RULE_MAX_LEN);
		return NULL;
	}
	advance(&p);
	if (p.tok.kind == T_END) {
		fail(&p, &p.tok, "empty rule");
		return NULL;
	}
	root = parse_list(&p, N_OR);
	if (root && p.tok.kind != T_END)
		fail_trailing(&p);
	r = p.failed ? NULL : malloc(sizeof *r);
	if (!r) {
		fail_oom(&p);
		node_free(root);
		return NULL;
	}
	r->root = root;
	return r;
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                               */
/* ------------------------------------------------------------------------ */

static bool
lit_match(const struct lit *l, struct span v, bool prefix)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (v.s >= v.e || fold(utf8_next(&v.s, v.e)) != l->units[i])
			return false;
	return prefix || v.s == v.e;
}

static bool
test_holds(const struct node *n, const struct rule_attrs *a)
{
	bool prefix = n->kind == N_PREFIX;
	struct span v = trim(a->v[n->attr], !prefix);
	size_t i;

	for (i = 0; i < n->n; i++)
		if (lit_match(&n->lits[i], v, prefix))
			return n->kind != N_NE;
	return n->kind == N_NE;
}

static bool
eval_node(const struct node *n, const struct rule_attrs *a)
{
	size_t i;

	switch (n->kind) {
	case N_OR:
		for (i = 0; i < n->n; i++)
			if (eval_node(n->kids[i], a))
				return true;
		return false;
	case N_AND:
		for (i = 0; i < n->n; i++)
			if (!eval_node(n->kids[i], a))
				return false;
		return true;
	case N_NOT:
		return !eval_node(n->kids[0], a);
	default:
		return test_holds(n, a);
	}
}

static const struct rule_attrs no_attrs;

int
rule_eval(const struct rule *r, const struct rule_attrs *a)
{
	if (!r)
		return 0;
	return eval_node(r->root, a ? a : &no_attrs);
}

/* ------------------------------------------------------------------------ */
/* Explanation                                                              */
/* ------------------------------------------------------------------------ */

struct out {
	char *buf;
	size_t len, pos; /* len >= 1: there is always room for the NUL */
	bool clipped;
};

static void
out_mem(struct out *o, const char *s, size_t n)
{
	size_t room = o->len - 1 - o->pos;

	if (n > room) {
		n = room;
		o->clipped = true;
	}
	memcpy(o->buf + o->pos, s, n);
	o->pos += n;
}

static void
out_str(struct out *o, const char *s)
{
	out_mem(o, s, strlen(s));
}

/* Quoted so that an operator sees spaces and empty values; control bytes shown as \xNN. */
static void
out_quoted(struct out *o, const char *s)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
	char esc[8];

	out_str(o, "\"");
	while (p < end) {
		const unsigned char *start = p;
		uint32_t c = utf8_next(&p, end);

		if (c == '"' || c == '\\') {
			esc[0] = '\\', esc[1] = (char)c;
			out_mem(o, esc, 2);
		} else if (c < 0x20 || c == 0x7f || c >= RAW_BYTE) {
			snprintf(esc, sizeof esc, "\\x%02x", (unsigned)*start);
			out_str(o, esc);
		} else {
			out_mem(o, (const char *)start, (size_t)(p - start));
		}
	}
	out_str(o, "\"");
}

static void
out_finish(struct out *o)
{
	/* Mark a cut explanation, without leaving half a UTF-8 character before the mark. */
	if (o->clipped && o->len >= 4) {
		o->pos = o->len - 4;
		while (o->pos > 0 && ((unsigned char)o->buf[o->pos] & 0xc0) == 0x80)
			o->pos--;
		memcpy(o->buf + o->pos, "...", 3);
		o->pos += 3;
	}
	o->buf[o->pos] = '\0';
}

static const char *
yes_no(bool v)
{
	return v ? "yes" : "no";
}

static bool
explain_test(const struct node *n, const struct rule_attrs *a, struct out *o)
{
	static const char *const ops[]
	    = { [N_EQ] = " = ", [N_NE] = " != ", [N_IN] = " IN (", [N_PREFIX] = " STARTSWITH " };
	const char *name = attr_names[n->attr], *v = a->v[n->attr];
	bool holds = test_holds(n, a);
	size_t i;

	out_str(o, name);
	out_str(o, ops[n->kind]);
	for (i = 0; i < n->n; i++) {
		if (i > 0)
			out_str(o, ", ");
		out_quoted(o, n->lits[i].text);
	}
	out_str(o, n->kind == N_IN ? ") [" : " [");
	out_str(o, name);
	if (v) {
		out_str(o, " is ");
		out_quoted(o, v);
	} else {
		out_str(o, " is not set");
	}
	out_str(o, ": ");
	out_str(o, yes_no(holds));
	out_str(o, "]");
	return holds;
}

static bool explain_node(
    const struct node *n, const struct rule_attrs *a, struct out *o, bool under_not);

static bool
explain_list(const struct node *n, const struct rule_attrs *a, struct out *o)
{
	bool any = false, all = true;
	size_t i;

	/* No short cut: the operator wants every test's verdict. */
	for (i = 0; i < n->n; i++) {
		bool v;

		if (i > 0)
			out_str(o, n->kind == N_OR ? " OR " : " AND ");
		v = explain_node(n->kids[i], a, o, false);
		any = any || v;
		all = all && v;
	}
	return n->kind == N_OR ? any : all;
}

/*
 * Tests carry their own verdict; a parenthesised AND/OR group gets one after its
 * ')', and NOT states the inverted verdict (a group under NOT needs no second one).
 */
static bool
explain_node(const struct node *n, const struct rule_attrs *a, struct out *o, bool under_not)
{
	bool v;

	if (n->paren)
		out_str(o, "(");
	if (n->kind == N_OR || n->kind == N_AND) {
		v = explain_list(n, a, o);
	} else if (n->kind == N_NOT) {
		out_str(o, "NOT ");
		v = !explain_node(n->kids[0], a, o, true);
		out_str(o, v ? " [NOT: yes]" : " [NOT: no]");
	} else {
		v = explain_test(n, a, o);
	}
	if (n->paren)
		out_str(o, ")");
	if (n->paren && !under_not && (n->kind == N_OR || n->kind == N_AND))
		out_str(o, v ? " [yes]" : " [no]");
	return v;
}

int
rule_explain(const struct rule *r, const struct rule_attrs *a, char *buf, size_t len)
{
	struct out o = { buf, len, 0, false };
	bool v;

	if (!buf || len == 0)
		return rule_eval(r, a);
	if (!r) {
		buf[0] = '\0';
		return 0;
	}
	v = explain_node(r->root, a ? a : &no_attrs, &o, false);
	out_str(&o, v ? " => match" : " => no match");
	out_finish(&o);
	return v;
}
