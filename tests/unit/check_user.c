/*
 * struct user: the stored record (docs/record-format.md) round trip, its byte
 * layout, records from later and earlier versions, damaged records; the user
 * from a delta page over what was known (moves, state kept, licence kept);
 * the view numprovctl shows.
 */
#include "build-config.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"
#include "rule.h"
#include "testutil.h"
#include "user.h"

/* upn, name, the rule attributes, the administrator's change of number (old, new) */
#define N_STRINGS (4 + RA__MAX)
#define FIXED 18 /* version .. count of strings */

static void
set_attr(struct user *u, enum rule_attr a, const char *v)
{
	free(u->attr[a]);
	u->attr[a] = v ? strdup(v) : NULL;
	if (v)
		ck_assert_ptr_nonnull(u->attr[a]);
}

/* A user with every field set to something recognisable. */
static void
full_user(struct user *u)
{
	user_init(u, "5f3e0b2a-1111-2222-3333-444455556666");
	snprintf(u->upn, sizeof(u->upn), "alice.o'brien@contoso.com");
	snprintf(u->name, sizeof(u->name),
	    "Alice O'Brien (Gr\xc3\xbc\xc3\x9f"
	    "e)");
	u->enabled = 0;
	u->teams_phone = 1;
	u->calling_plan = 1;
	u->state = US_WAITING;
	u->flags = USER_F_DUE | USER_F_MOVED;
	u->backoff = 0xfedcba98u;
	u->retry_at = (int64_t)0x0123456789abcdefLL;
	snprintf(u->change_old, sizeof(u->change_old), "+441235000123");
	snprintf(u->change_new, sizeof(u->change_new), "+441235999000;ext=150");
	for (int i = 0; i < RA__MAX; i++) {
		char v[64];
		snprintf(v, sizeof(v), "value %d of %s \xe2\x80\x9c\xc3\xa9\xe2\x80\x9d", i,
		    rule_attr_name((enum rule_attr)i));
		set_attr(u, (enum rule_attr)i, v);
	}
}

static void
assert_same_user(const struct user *a, const struct user *b)
{
	ck_assert_str_eq(a->id, b->id);
	ck_assert_str_eq(a->upn, b->upn);
	ck_assert_str_eq(a->name, b->name);
	ck_assert_int_eq(a->enabled, b->enabled);
	ck_assert_uint_eq(a->teams_phone, b->teams_phone);
	ck_assert_uint_eq(a->calling_plan, b->calling_plan);
	ck_assert_uint_eq(a->state, b->state);
	ck_assert_uint_eq(a->flags, b->flags);
	ck_assert_uint_eq(a->backoff, b->backoff);
	ck_assert_int_eq(a->retry_at, b->retry_at);
	ck_assert_str_eq(a->change_old, b->change_old);
	ck_assert_str_eq(a->change_new, b->change_new);
	for (int i = 0; i < RA__MAX; i++) {
		if (!a->attr[i] || !b->attr[i])
			ck_assert_msg(!a->attr[i] && !b->attr[i], "attribute %s: %s vs %s",
			    rule_attr_name((enum rule_attr)i), a->attr[i] ? a->attr[i] : "(none)",
			    b->attr[i] ? b->attr[i] : "(none)");
		else
			ck_assert_str_eq(a->attr[i], b->attr[i]);
	}
}

static void
encode(const struct user *u, unsigned char **rec, size_t *len)
{
	ck_assert_int_eq(user_encode(u, rec, len), 0);
	ck_assert_ptr_nonnull(*rec);
}

/* Decode from an allocation of exactly len bytes, so ASan sees any read past it. */
static int
decode_exact(const char *id, const void *rec, size_t len, struct user *u)
{
	void *copy = malloc(len ? len : 1);
	int rc;

	ck_assert_ptr_nonnull(copy);
	if (len)
		memcpy(copy, rec, len);
	rc = user_decode(id, copy, len, u);
	free(copy);
	return rc;
}

/* ---- round trip ------------------------------------------------------------ */

START_TEST(round_trip_every_field)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	full_user(&u);
	encode(&u, &rec, &len);
	ck_assert_int_eq(decode_exact(u.id, rec, len, &back), 0);
	assert_same_user(&u, &back);
	/* and again from what was read: the same bytes */
	{
		unsigned char *rec2;
		size_t len2;
		encode(&back, &rec2, &len2);
		ck_assert_uint_eq(len2, len);
		ck_assert_int_eq(memcmp(rec, rec2, len), 0);
		free(rec2);
	}
	free(rec);
	user_clear(&u);
	user_clear(&back);
}
END_TEST

START_TEST(round_trip_each_state_flag_and_licence)
{
	for (int st = 0; st < US__MAX; st++)
		for (int bits = 0; bits < 16; bits++) {
			struct user u, back;
			unsigned char *rec;
			size_t len;

			user_init(&u, "u");
			u.state = (uint8_t)st;
			u.enabled = bits & 1;
			u.teams_phone = (bits >> 1) & 1;
			u.calling_plan = (bits >> 2) & 1;
			u.flags = (uint8_t)(bits & 8 ? USER_F_DUE : 0)
			    | (uint8_t)(st & 1 ? USER_F_MOVED : 0);
			u.retry_at = st & 2 ? -1 : 0;
			encode(&u, &rec, &len);
			ck_assert_int_eq(decode_exact("u", rec, len, &back), 0);
			assert_same_user(&u, &back);
			free(rec);
			user_clear(&back);
		}
}
END_TEST

/* Unknown flag bits are kept: a later version may define them. */
START_TEST(round_trip_unknown_flags)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	user_init(&u, "u");
	u.flags = 0xff;
	encode(&u, &rec, &len);
	ck_assert_int_eq(decode_exact("u", rec, len, &back), 0);
	ck_assert_uint_eq(back.flags, 0xff);
	free(rec);
	user_clear(&back);
}
END_TEST

START_TEST(empty_and_missing_attributes)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	user_init(&u, "u-empty");
	set_attr(&u, RA_CITY, "");     /* empty: stored as length 0, read back as missing */
	set_attr(&u, RA_OFFICE, NULL); /* missing */
	set_attr(&u, RA_EXT15, "last");
	encode(&u, &rec, &len);
	/* every string is there, each of length 0 but the last attribute */
	ck_assert_uint_eq(len, FIXED + 2 * N_STRINGS + 4);
	ck_assert_int_eq(decode_exact("u-empty", rec, len, &back), 0);
	ck_assert_str_eq(back.upn, "");
	ck_assert_str_eq(back.name, "");
	for (int i = 0; i < RA__MAX; i++)
		if (i != RA_EXT15)
			ck_assert_ptr_null(back.attr[i]);
	ck_assert_str_eq(back.attr[RA_EXT15], "last");
	free(rec);
	user_clear(&u);
	user_clear(&back);
}
END_TEST

START_TEST(longest_upn_and_name)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	user_init(&u, "u");
	memset(u.upn, 'a', INV_UPN_MAX - 1);
	u.upn[INV_UPN_MAX - 1] = '\0';
	memset(u.name, 'n', USER_NAME_MAX - 1);
	u.name[USER_NAME_MAX - 1] = '\0';
	encode(&u, &rec, &len);
	ck_assert_int_eq(decode_exact("u", rec, len, &back), 0);
	ck_assert_uint_eq(strlen(back.upn), INV_UPN_MAX - 1);
	ck_assert_str_eq(back.upn, u.upn);
	ck_assert_str_eq(back.name, u.name);
	free(rec);
	user_clear(&back);
}
END_TEST

/* A long attribute (a page may carry kilobytes) survives whole. */
START_TEST(long_attribute)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;
	char *big = malloc(60000);

	ck_assert_ptr_nonnull(big);
	memset(big, 'x', 59999);
	big[59999] = '\0';
	user_init(&u, "u");
	set_attr(&u, RA_DEPARTMENT, big);
	encode(&u, &rec, &len);
	ck_assert_int_eq(decode_exact("u", rec, len, &back), 0);
	ck_assert_str_eq(back.attr[RA_DEPARTMENT], big);
	free(rec);
	free(big);
	user_clear(&u);
	user_clear(&back);
}
END_TEST

/* ---- the layout, byte by byte (docs/record-format.md) ------------------------ */

START_TEST(layout_byte_by_byte)
{
	static const unsigned char want_head[FIXED] = {
		0x01,						/* version */
		US_ASSIGNED,					/* state */
		USER_F_DUE,					/* flags */
		0x01,						/* enabled */
		0x02,						/* licences: Calling Plan only */
		0x3c, 0x00, 0x00, 0x00,				/* backoff 60 */
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* retry_at */
		N_STRINGS,					/* strings */
	};
	struct user u;
	unsigned char *rec;
	size_t len, off = FIXED;

	ck_assert_int_eq(USER_RECORD_VERSION, 1);
	ck_assert_int_eq(RA__MAX, 25);
	user_init(&u, "u");
	snprintf(u.upn, sizeof(u.upn), "a@b");
	snprintf(u.name, sizeof(u.name), "A");
	u.state = US_ASSIGNED;
	u.flags = USER_F_DUE;
	u.calling_plan = 1;
	u.backoff = 60;
	u.retry_at = 0x0102030405060708LL;
	set_attr(&u, RA_CITY, "Oxford");
	set_attr(&u, RA_EXT15, "z");
	encode(&u, &rec, &len);
	ck_assert_uint_eq(len, FIXED + 2 * N_STRINGS + 3 + 1 + 6 + 1);
	ck_assert_int_eq(memcmp(rec, want_head, FIXED), 0);
	/* upn */
	ck_assert_uint_eq(rec[off], 3);
	ck_assert_uint_eq(rec[off + 1], 0);
	ck_assert_int_eq(memcmp(rec + off + 2, "a@b", 3), 0);
	off += 2 + 3;
	/* display name */
	ck_assert_uint_eq(rec[off], 1);
	ck_assert_int_eq(rec[off + 2], 'A');
	off += 2 + 1;
	/* city (RA_CITY is the first attribute) */
	ck_assert_int_eq(RA_CITY, 0);
	ck_assert_uint_eq(rec[off], 6);
	ck_assert_int_eq(memcmp(rec + off + 2, "Oxford", 6), 0);
	off += 2 + 6;
	/* office .. extension_attribute14: empty */
	for (int i = RA_OFFICE; i < RA_EXT15; i++, off += 2)
		ck_assert_msg(rec[off] == 0 && rec[off + 1] == 0, "attribute %d not empty", i);
	ck_assert_uint_eq(rec[off], 1);
	ck_assert_int_eq(rec[off + 2], 'z');
	off += 2 + 1;
	/* the change of number: none */
	ck_assert_uint_eq(rec[off], 0);
	ck_assert_uint_eq(rec[off + 2], 0);
	ck_assert_uint_eq(off + 4, len);
	free(rec);
	user_clear(&u);
}
END_TEST

/* Lengths are little-endian u16: a string of 0x0102 bytes. */
START_TEST(layout_length_little_endian)
{
	struct user u;
	unsigned char *rec;
	size_t len;
	char v[0x0103];

	memset(v, 'q', 0x0102);
	v[0x0102] = '\0';
	user_init(&u, "u");
	set_attr(&u, RA_CITY, v);
	encode(&u, &rec, &len);
	ck_assert_uint_eq(rec[FIXED + 4], 0x02);
	ck_assert_uint_eq(rec[FIXED + 5], 0x01);
	free(rec);
	user_clear(&u);
}
END_TEST

/* ---- other versions ------------------------------------------------------------ */

static unsigned char *
append(unsigned char *rec, size_t *len, const void *s, size_t n)
{
	unsigned char *g = realloc(rec, *len + 2 + n);

	ck_assert_ptr_nonnull(g);
	g[*len] = (unsigned char)(n & 0xff);
	g[*len + 1] = (unsigned char)(n >> 8);
	memcpy(g + *len + 2, s, n);
	*len += 2 + n;
	return g;
}

/* A later version appends strings (count larger than known): they are skipped. */
START_TEST(later_version_extra_strings_skipped)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	full_user(&u);
	encode(&u, &rec, &len);
	ck_assert_uint_eq(rec[FIXED - 1], N_STRINGS);
	rec[FIXED - 1] = N_STRINGS + 3;
	rec = append(rec, &len, "employee_id 42", 14);
	rec = append(rec, &len, "", 0);
	rec = append(rec, &len, "with\0nul", 8); /* an unknown string is not looked into */
	ck_assert_int_eq(decode_exact(u.id, rec, len, &back), 0);
	assert_same_user(&u, &back);
	user_clear(&back);
	/* the most a count can say */
	rec[FIXED - 1] = 0xff;
	for (int i = N_STRINGS + 3; i < 0xff; i++)
		rec = append(rec, &len, "x", 1);
	ck_assert_int_eq(decode_exact(u.id, rec, len, &back), 0);
	assert_same_user(&u, &back);
	free(rec);
	user_clear(&u);
	user_clear(&back);
}
END_TEST

/* An earlier record with fewer strings: the attributes it lacks are missing. */
START_TEST(fewer_strings_than_known)
{
	unsigned char rec[FIXED + 2 + 3 + 2 + 1 + 2 + 6]
	    = { 1, US_ASSIGNED, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 0, 'a', '@', 'b',
		      1, 0, 'A', 6, 0, 'O', 'x', 'f', 'o', 'r', 'd' };
	struct user back;

	ck_assert_int_eq(decode_exact("u", rec, sizeof(rec), &back), 0);
	ck_assert_str_eq(back.upn, "a@b");
	ck_assert_str_eq(back.name, "A");
	ck_assert_str_eq(back.attr[RA_CITY], "Oxford");
	for (int i = RA_OFFICE; i < RA__MAX; i++)
		ck_assert_ptr_null(back.attr[i]);
	ck_assert_uint_eq(back.state, US_ASSIGNED);
	ck_assert_uint_eq(back.teams_phone, 1);
	ck_assert_uint_eq(back.calling_plan, 0);
	user_clear(&back);
	/* no strings at all */
	rec[FIXED - 1] = 0;
	ck_assert_int_eq(decode_exact("u", rec, FIXED, &back), 0);
	ck_assert_str_eq(back.upn, "");
	ck_assert_str_eq(back.id, "u");
	user_clear(&back);
}
END_TEST

START_TEST(other_version_bytes_refused)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	full_user(&u);
	encode(&u, &rec, &len);
	ck_assert_uint_eq(rec[0], USER_RECORD_VERSION);
	for (int v = 0; v < 256; v++) {
		if (v == USER_RECORD_VERSION || v == '{')
			continue;
		rec[0] = (unsigned char)v;
		ck_assert_msg(decode_exact(u.id, rec, len, &back) == -1, "version %d read", v);
		user_clear(&back);
	}
	free(rec);
	user_clear(&u);
}
END_TEST

/* ---- damaged records ------------------------------------------------------------- */

START_TEST(truncated_at_every_length)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	full_user(&u);
	set_attr(&u, RA_OFFICE, NULL); /* an empty string in the middle too */
	encode(&u, &rec, &len);
	for (size_t n = 0; n < len; n++) {
		ck_assert_msg(
		    decode_exact(u.id, rec, n, &back) == -1, "%zu of %zu bytes read", n, len);
		for (int i = 0; i < RA__MAX; i++)
			ck_assert_ptr_null(back.attr[i]); /* nothing left allocated */
	}
	ck_assert_int_eq(decode_exact(u.id, rec, len, &back), 0);
	user_clear(&back);
	free(rec);
	user_clear(&u);
}
END_TEST

START_TEST(trailing_bytes_refused)
{
	struct user u, back;
	unsigned char *rec, *g;
	size_t len;

	full_user(&u);
	encode(&u, &rec, &len);
	g = realloc(rec, len + 1);
	ck_assert_ptr_nonnull(g);
	g[len] = 0;
	ck_assert_int_eq(decode_exact(u.id, g, len + 1, &back), -1);
	free(g);
	user_clear(&u);
}
END_TEST

START_TEST(bad_state_refused)
{
	struct user u, back;
	unsigned char *rec;
	size_t len;

	user_init(&u, "u");
	encode(&u, &rec, &len);
	rec[1] = US__MAX;
	ck_assert_int_eq(decode_exact("u", rec, len, &back), -1);
	rec[1] = 0xff;
	ck_assert_int_eq(decode_exact("u", rec, len, &back), -1);
	rec[1] = US__MAX - 1;
	ck_assert_int_eq(decode_exact("u", rec, len, &back), 0);
	ck_assert_uint_eq(back.state, US__MAX - 1);
	user_clear(&back);
	free(rec);
}
END_TEST

/* A NUL inside a known string: refused (it would cut the string short). */
START_TEST(nul_inside_a_string_refused)
{
	static const int which[]
	    = { 0, 1, 2, 2 + RA_OFFICE, 2 + RA_EXT15, 2 + RA__MAX, 3 + RA__MAX };

	for (size_t k = 0; k < sizeof(which) / sizeof(which[0]); k++) {
		struct user u, back;
		unsigned char *rec;
		size_t len, off = FIXED;

		user_init(&u, "u");
		snprintf(u.upn, sizeof(u.upn), "abc");
		snprintf(u.name, sizeof(u.name), "abc");
		for (int i = 0; i < RA__MAX; i++)
			set_attr(&u, (enum rule_attr)i, "abc");
		snprintf(u.change_old, sizeof(u.change_old), "abc");
		snprintf(u.change_new, sizeof(u.change_new), "abc");
		encode(&u, &rec, &len);
		off += (size_t)which[k] * 5;
		ck_assert_uint_eq(rec[off], 3);
		rec[off + 3] = '\0';
		ck_assert_msg(decode_exact("u", rec, len, &back) == -1, "string %d with a NUL read",
		    which[k]);
		for (int i = 0; i < RA__MAX; i++)
			ck_assert_ptr_null(back.attr[i]);
		free(rec);
		user_clear(&u);
	}
}
END_TEST

/* A UPN or name longer than the struct holds: refused, not cut. */
START_TEST(overlong_upn_refused)
{
	unsigned char *rec = NULL;
	size_t len = FIXED;
	char big[INV_UPN_MAX];
	struct user back;

	rec = calloc(1, FIXED);
	ck_assert_ptr_nonnull(rec);
	rec[0] = 1;
	rec[FIXED - 1] = 1;
	memset(big, 'u', sizeof(big));
	rec = append(rec, &len, big, INV_UPN_MAX); /* one more than fits with its NUL */
	ck_assert_int_eq(decode_exact("u", rec, len, &back), -1);
	/* one less fits */
	len = FIXED;
	rec = append(rec, &len, big, INV_UPN_MAX - 1);
	ck_assert_int_eq(decode_exact("u", rec, len, &back), 0);
	ck_assert_uint_eq(strlen(back.upn), INV_UPN_MAX - 1);
	user_clear(&back);
	/* the name: USER_NAME_MAX */
	rec[FIXED - 1] = 2;
	len = FIXED;
	rec = append(rec, &len, "a", 1);
	{
		char name[USER_NAME_MAX];
		memset(name, 'n', sizeof(name));
		rec = append(rec, &len, name, USER_NAME_MAX);
		ck_assert_int_eq(decode_exact("u", rec, len, &back), -1);
	}
	free(rec);
}
END_TEST

/* The change of number: at most E164_STRLEN - 1 bytes each. */
START_TEST(overlong_change_refused)
{
	char big[E164_STRLEN];
	struct user u, back;
	unsigned char *rec;
	size_t len;

	memset(big, '9', sizeof(big));
	for (int which = 0; which < 2; which++)
		for (size_t n = E164_STRLEN - 1; n <= E164_STRLEN; n++) {
			user_init(&u, "u");
			encode(&u, &rec, &len);
			len -= 4; /* drop the two empty change strings */
			rec = append(rec, &len, which ? "" : big, which ? 0 : n);
			rec = append(rec, &len, which ? big : "", which ? n : 0);
			ck_assert_int_eq(
			    decode_exact("u", rec, len, &back), n < E164_STRLEN ? 0 : -1);
			if (n < E164_STRLEN)
				ck_assert_uint_eq(
				    strlen(which ? back.change_new : back.change_old), n);
			user_clear(&back);
			free(rec);
		}
}
END_TEST

START_TEST(length_past_the_end_refused)
{
	unsigned char rec[FIXED + 2 + 2] = { 1, 0, 0, 1, 0 };
	struct user back;

	rec[FIXED - 1] = 1;
	rec[FIXED] = 0xff; /* 0xffff bytes announced, 2 there */
	rec[FIXED + 1] = 0xff;
	ck_assert_int_eq(decode_exact("u", rec, sizeof(rec), &back), -1);
	rec[FIXED] = 3; /* 3 announced, 2 there */
	rec[FIXED + 1] = 0;
	ck_assert_int_eq(decode_exact("u", rec, sizeof(rec), &back), -1);
	rec[FIXED] = 2;
	rec[FIXED + 2] = 'o';
	rec[FIXED + 3] = 'k';
	ck_assert_int_eq(decode_exact("u", rec, sizeof(rec), &back), 0);
	ck_assert_str_eq(back.upn, "ok");
	user_clear(&back);
}
END_TEST

/* ---- the JSON record of earlier releases (version 0) ---------------------------- */

static int
decode_text(const char *id, const char *json, struct user *u)
{
	return decode_exact(id, json, strlen(json), u); /* no NUL after it */
}

START_TEST(legacy_json_record)
{
	const char *json
	    = "{\"upn\":\"bob@contoso.com\",\"name\":\"Bob Smith\",\"enabled\":0,\"teams_phone\":1,"
	      "\"calling_plan\":1,\"state\":\"waiting\",\"backoff\":240,\"retry_at\":1800000000,"
	      "\"attrs\":{\"city\":\"Abingdon\",\"office\":\"Office 1\",\"usage_location\":\"GB\","
	      "\"department\":\"\",\"extension_attribute15\":\"x15\",\"unknown\":\"skip\"}}";
	struct user u;

	ck_assert_int_eq(decode_text("id-bob", json, &u), 0);
	ck_assert_str_eq(u.id, "id-bob");
	ck_assert_str_eq(u.upn, "bob@contoso.com");
	ck_assert_str_eq(u.name, "Bob Smith");
	ck_assert_int_eq(u.enabled, 0);
	ck_assert_uint_eq(u.teams_phone, 1);
	ck_assert_uint_eq(u.calling_plan, 1);
	ck_assert_uint_eq(u.state, US_WAITING);
	ck_assert_uint_eq(u.backoff, 240);
	ck_assert_int_eq(u.retry_at, 1800000000);
	ck_assert_str_eq(u.attr[RA_CITY], "Abingdon");
	ck_assert_str_eq(u.attr[RA_OFFICE], "Office 1");
	ck_assert_str_eq(u.attr[RA_USAGE_LOCATION], "GB");
	ck_assert_ptr_null(u.attr[RA_DEPARTMENT]); /* empty is missing */
	ck_assert_str_eq(u.attr[RA_EXT15], "x15");
	ck_assert_ptr_null(u.attr[RA_COMPANY]);
	/* decided again under this version */
	ck_assert_uint_eq(u.flags, USER_F_DUE);
	user_clear(&u);
}
END_TEST

START_TEST(legacy_json_states)
{
	static const struct {
		const char *name;
		enum user_state s;
	} states[] = { { "assigned", US_ASSIGNED }, { "assigning", US_ASSIGNING },
		{ "waiting", US_WAITING }, { "no-match", US_NO_MATCH },
		{ "ranges-full", US_RANGES_FULL }, { "unlicensed", US_UNLICENSED },
		{ "disabled", US_DISABLED }, { "something-else", US_NEW }, { "", US_NEW } };

	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		char json[128];
		struct user u;

		snprintf(json, sizeof(json), "{\"state\":\"%s\"}", states[i].name);
		ck_assert_int_eq(decode_text("u", json, &u), 0);
		ck_assert_msg(u.state == states[i].s, "%s: %d", states[i].name, u.state);
		ck_assert_uint_eq(u.flags, USER_F_DUE);
		user_clear(&u);
	}
}
END_TEST

START_TEST(legacy_json_defaults_and_odd_values)
{
	struct user u;

	/* nothing but braces: the defaults of a new user, due */
	ck_assert_int_eq(decode_text("u", "{}", &u), 0);
	ck_assert_int_eq(u.enabled, 1);
	ck_assert_uint_eq(u.teams_phone, 0);
	ck_assert_uint_eq(u.state, US_NEW);
	ck_assert_uint_eq(u.flags, USER_F_DUE);
	user_clear(&u);
	/* wrong types and out-of-range numbers are ignored */
	ck_assert_int_eq(
	    decode_text("u",
		"{\"upn\":5,\"name\":null,\"enabled\":\"no\",\"state\":3,\"retry_at\":-5,"
		"\"backoff\":1e12,\"attrs\":[\"city\",\"x\"]}",
		&u),
	    0);
	ck_assert_str_eq(u.upn, "");
	ck_assert_int_eq(u.enabled, 1);
	ck_assert_int_eq(u.retry_at, 0);
	ck_assert_uint_eq(u.backoff, 0);
	ck_assert_ptr_null(u.attr[RA_CITY]);
	user_clear(&u);
	ck_assert_int_eq(decode_text("u", "{\"retry_at\":1e300,\"backoff\":-1}", &u), 0);
	ck_assert_int_eq(u.retry_at, 0);
	ck_assert_uint_eq(u.backoff, 0);
	user_clear(&u);
	/* a UPN longer than the struct holds is cut */
	{
		char json[1024];
		struct user v;
		snprintf(json, sizeof(json), "{\"upn\":\"%0400d\"}", 7);
		ck_assert_int_eq(decode_text("u", json, &v), 0);
		ck_assert_uint_eq(strlen(v.upn), INV_UPN_MAX - 1);
		user_clear(&v);
	}
}
END_TEST

START_TEST(legacy_json_broken_refused)
{
	static const char *const bad[] = { "{", "{\"upn\":", "{\"upn\":\"a\"", "{]", "{\"a\" 1}" };
	struct user u;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(decode_text("u", bad[i], &u) == -1, "'%s' read", bad[i]);
		for (int k = 0; k < RA__MAX; k++)
			ck_assert_ptr_null(u.attr[k]);
	}
	/* what follows a whole object is not looked at (cJSON stops there) */
	ck_assert_int_eq(decode_text("u", "{\"upn\":\"a@b\"}}junk", &u), 0);
	ck_assert_str_eq(u.upn, "a@b");
	user_clear(&u);
}
END_TEST

/* Once decoded, a legacy record is written as version 1 and reads back the same. */
START_TEST(legacy_json_rewritten_as_v1)
{
	const char *json = "{\"upn\":\"c@d\",\"state\":\"assigned\",\"teams_phone\":1,"
			   "\"attrs\":{\"office\":\"Park Lane\"}}";
	struct user u, back;
	unsigned char *rec;
	size_t len;

	ck_assert_int_eq(decode_text("u", json, &u), 0);
	encode(&u, &rec, &len);
	ck_assert_uint_eq(rec[0], USER_RECORD_VERSION);
	ck_assert_int_eq(decode_exact("u", rec, len, &back), 0);
	assert_same_user(&u, &back);
	ck_assert_uint_eq(back.flags, USER_F_DUE);
	free(rec);
	user_clear(&u);
	user_clear(&back);
}
END_TEST

/* ---- user_from_dir ------------------------------------------------------------------ */

struct page_user {
	struct dir_user d;
	struct dir_licence l;
};

static void
page_user(struct page_user *p, const char *city, const char *office, const char *usage)
{
	memset(p, 0, sizeof(*p));
	p->d.id = "id-1";
	p->d.upn = "alice@contoso.com";
	p->d.display_name = "Alice";
	p->d.account_enabled = 1;
	p->d.attr[RA_CITY] = (char *)city;
	p->d.attr[RA_OFFICE] = (char *)office;
	p->d.attr[RA_USAGE_LOCATION] = (char *)usage;
	p->d.has_plans = 1;
	p->l.teams_phone = 1;
}

static void
from_dir(struct user *u, const struct user *old, const struct page_user *p)
{
	ck_assert_int_eq(user_from_dir(u, old, &p->d, &p->l), 0);
}

START_TEST(from_dir_new_user)
{
	struct page_user p;
	struct user u;

	page_user(&p, "Abingdon", "Office 1", "GB");
	p.d.account_enabled = -1; /* the page did not say: enabled */
	p.d.has_plans = 0;	  /* a new user takes the licence class as classified */
	p.l.calling_plan = 1;
	p.d.attr[RA_DEPARTMENT] = ""; /* empty is missing */
	from_dir(&u, NULL, &p);
	ck_assert_str_eq(u.id, "id-1");
	ck_assert_str_eq(u.upn, "alice@contoso.com");
	ck_assert_str_eq(u.name, "Alice");
	ck_assert_int_eq(u.enabled, 1);
	ck_assert_uint_eq(u.teams_phone, 1);
	ck_assert_uint_eq(u.calling_plan, 1);
	ck_assert_uint_eq(u.state, US_NEW);
	ck_assert_uint_eq(u.flags, 0);
	ck_assert_int_eq(u.retry_at, 0);
	ck_assert_str_eq(u.attr[RA_CITY], "Abingdon");
	ck_assert_ptr_null(u.attr[RA_DEPARTMENT]);
	ck_assert_ptr_ne(u.attr[RA_CITY], p.d.attr[RA_CITY]); /* a copy */
	user_clear(&u);
}
END_TEST

static struct user
old_user(const char *city, const char *office, const char *usage)
{
	struct user o;

	user_init(&o, "id-1");
	snprintf(o.upn, sizeof(o.upn), "old@contoso.com");
	snprintf(o.name, sizeof(o.name), "Old Name");
	o.enabled = 0;
	o.teams_phone = 1;
	o.calling_plan = 1;
	o.state = US_WAITING;
	o.flags = USER_F_DUE;
	o.backoff = 240;
	o.retry_at = 1800000240;
	set_attr(&o, RA_CITY, city);
	set_attr(&o, RA_OFFICE, office);
	set_attr(&o, RA_USAGE_LOCATION, usage);
	set_attr(&o, RA_DEPARTMENT, "Sales");
	return o;
}

START_TEST(from_dir_keeps_state_and_retry)
{
	struct user o = old_user("Abingdon", "Office 1", "GB"), u;
	struct page_user p;

	o.flags |= USER_F_CHANGE_RESERVED;
	snprintf(o.change_old, sizeof(o.change_old), "+441235000123");
	snprintf(o.change_new, sizeof(o.change_new), "+441235000124");
	page_user(&p, "Abingdon", "Office 1", "GB");
	from_dir(&u, &o, &p);
	ck_assert_uint_eq(u.state, US_WAITING);
	ck_assert_uint_eq(u.backoff, 240);
	ck_assert_int_eq(u.retry_at, 1800000240);
	ck_assert_uint_eq(u.flags, USER_F_DUE | USER_F_CHANGE_RESERVED); /* kept; no move */
	/* an administrator's change of number in flight is not the directory's to drop */
	ck_assert_str_eq(u.change_old, "+441235000123");
	ck_assert_str_eq(u.change_new, "+441235000124");
	/* the page's fields replace the old ones */
	ck_assert_str_eq(u.upn, "alice@contoso.com");
	ck_assert_str_eq(u.name, "Alice");
	ck_assert_int_eq(u.enabled, 1);
	ck_assert_ptr_null(u.attr[RA_DEPARTMENT]); /* the page has none now */
	/* old is untouched */
	ck_assert_str_eq(o.attr[RA_DEPARTMENT], "Sales");
	ck_assert_str_eq(o.upn, "old@contoso.com");
	ck_assert_ptr_ne(u.attr[RA_CITY], o.attr[RA_CITY]);
	user_clear(&u);
	user_clear(&o);
}
END_TEST

START_TEST(from_dir_page_silent_keeps_old)
{
	struct user o = old_user("Abingdon", "Office 1", "GB"), u;
	struct page_user p;

	page_user(&p, "Abingdon", "Office 1", "GB");
	p.d.upn = NULL;
	p.d.display_name = NULL;
	p.d.account_enabled = -1;
	p.d.has_plans = 0; /* no assignedPlans in the page: the licence class stays */
	p.l.teams_phone = 0;
	p.l.calling_plan = 0;
	from_dir(&u, &o, &p);
	ck_assert_str_eq(u.upn, "old@contoso.com");
	ck_assert_str_eq(u.name, "Old Name");
	ck_assert_int_eq(u.enabled, 0);
	ck_assert_uint_eq(u.teams_phone, 1);
	ck_assert_uint_eq(u.calling_plan, 1);
	user_clear(&u);
	/* with assignedPlans the class follows the page */
	p.d.has_plans = 1;
	from_dir(&u, &o, &p);
	ck_assert_uint_eq(u.teams_phone, 0);
	ck_assert_uint_eq(u.calling_plan, 0);
	user_clear(&u);
	user_clear(&o);
}
END_TEST

static const struct {
	const char *what;
	const char *old_city, *old_office, *old_usage;
	const char *city, *office, *usage;
	int moved;
} moves[] = {
	{ "the same", "Abingdon", "Office 1", "GB", "Abingdon", "Office 1", "GB", 0 },
	{ "case only", "Abingdon", "Office 1", "GB", "ABINGDON", "office 1", "gb", 0 },
	{ "surrounding spaces only", "Abingdon", "Office 1", "GB", " Abingdon\t", "Office 1 ",
	    " GB", 0 },
	{ "non-ASCII case only", "M\xc3\xbcnchen", "Zentrale", "DE", "M\xc3\x9cNCHEN", "zentrale",
	    "de", 0 },
	{ "missing stays missing", NULL, NULL, NULL, NULL, NULL, NULL, 0 },
	{ "missing and empty are equal", NULL, NULL, "GB", "", "", "GB", 0 },
	{ "city changes", "Abingdon", "Office 1", "GB", "Oxford", "Office 1", "GB", 1 },
	{ "office changes", "Abingdon", "Office 1", "GB", "Abingdon", "Office 2", "GB", 1 },
	{ "usage location changes", "Abingdon", "Office 1", "GB", "Abingdon", "Office 1", "IE", 1 },
	{ "city goes", "Abingdon", "Office 1", "GB", NULL, "Office 1", "GB", 1 },
	{ "office appears", "Abingdon", NULL, "GB", "Abingdon", "Office 1", "GB", 1 },
	{ "inner space differs", "Park Lane", NULL, NULL, "ParkLane", NULL, NULL, 1 },
};

START_TEST(from_dir_moved_flag)
{
	struct user o = old_user(moves[_i].old_city, moves[_i].old_office, moves[_i].old_usage), u;
	struct page_user p;

	o.flags = 0;
	page_user(&p, moves[_i].city, moves[_i].office, moves[_i].usage);
	p.d.attr[RA_DEPARTMENT] = "Support"; /* another attribute changing is no move */
	from_dir(&u, &o, &p);
	ck_assert_msg(((u.flags & USER_F_MOVED) != 0) == moves[_i].moved, "%s: moved %d",
	    moves[_i].what, (u.flags & USER_F_MOVED) != 0);
	ck_assert_uint_eq(u.flags & USER_F_DUE, 0);
	user_clear(&u);
	user_clear(&o);
}
END_TEST

/* A move not logged yet stays flagged over the next page. */
START_TEST(from_dir_moved_flag_carried)
{
	struct user o = old_user("Abingdon", "Office 1", "GB"), u;
	struct page_user p;

	o.flags = USER_F_MOVED;
	page_user(&p, "Abingdon", "Office 1", "GB");
	from_dir(&u, &o, &p);
	ck_assert_uint_eq(u.flags, USER_F_MOVED);
	user_clear(&u);
	user_clear(&o);
}
END_TEST

START_TEST(from_dir_long_fields_cut)
{
	char upn[1000], name[1000];
	struct page_user p;
	struct user u;

	memset(upn, 'u', sizeof(upn) - 1);
	upn[sizeof(upn) - 1] = '\0';
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	page_user(&p, "Abingdon", NULL, NULL);
	p.d.upn = upn;
	p.d.display_name = name;
	from_dir(&u, NULL, &p);
	ck_assert_uint_eq(strlen(u.upn), INV_UPN_MAX - 1);
	ck_assert_uint_eq(strlen(u.name), USER_NAME_MAX - 1);
	user_clear(&u);
}
END_TEST

/* ---- small helpers ---------------------------------------------------------------- */

START_TEST(copy_is_deep)
{
	struct user u, c;

	full_user(&u);
	ck_assert_int_eq(user_copy(&c, &u), 0);
	assert_same_user(&u, &c);
	for (int i = 0; i < RA__MAX; i++)
		ck_assert_ptr_ne(c.attr[i], u.attr[i]);
	user_clear(&u);
	ck_assert_ptr_nonnull(strstr(c.attr[RA_EXT15], "extension_attribute15"));
	user_clear(&c);
	user_clear(&c); /* twice is harmless */
}
END_TEST

START_TEST(init_and_attrs)
{
	struct rule_attrs a;
	struct user u;
	char longid[200];

	memset(longid, 'i', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	user_init(&u, longid);
	ck_assert_uint_eq(strlen(u.id), INV_ID_MAX - 1);
	ck_assert_int_eq(u.enabled, 1);
	ck_assert_uint_eq(u.state, US_NEW);
	user_init(&u, NULL);
	ck_assert_str_eq(u.id, "");
	set_attr(&u, RA_OFFICE, "x");
	user_attrs(&u, &a);
	ck_assert_ptr_eq(a.v[RA_OFFICE], u.attr[RA_OFFICE]);
	ck_assert_ptr_null(a.v[RA_CITY]);
	user_clear(&u);
}
END_TEST

START_TEST(state_names)
{
	static const char *const want[US__MAX]
	    = { "new", "unlicensed", "disabled", "assigning", "assigned", "waiting", "no-match",
		      "ranges-full", "held-by-administrator", "number-outside-ranges", "deleted" };

	for (int i = 0; i < US__MAX; i++)
		ck_assert_str_eq(user_state_name((enum user_state)i), want[i]);
	ck_assert_str_eq(user_state_name(US__MAX), "unknown");
	ck_assert_str_eq(user_state_name((enum user_state) - 1), "unknown");
	/* stored values: never renumbered */
	ck_assert_int_eq(US_NEW, 0);
	ck_assert_int_eq(US_ASSIGNED, 4);
	ck_assert_int_eq(US_GONE, 10);
}
END_TEST

/* ---- user_to_json -------------------------------------------------------------------- */

START_TEST(json_view)
{
	struct user u;
	cJSON *o, *a, *v;
	int n = 0;

	full_user(&u);
	set_attr(&u, RA_COMPANY, NULL);
	o = user_to_json(&u);
	ck_assert_ptr_nonnull(o);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "id")->valuestring, u.id);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "upn")->valuestring, u.upn);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring, u.name);
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "enabled")));
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "teams_phone")));
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "calling_plan")));
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "state")->valuestring, "waiting");
	v = cJSON_GetObjectItemCaseSensitive(o, "retry_at");
	ck_assert(cJSON_IsNumber(v));
	ck_assert(v->valuedouble == (double)u.retry_at);
	ck_assert_str_eq(
	    cJSON_GetObjectItemCaseSensitive(o, "changing_from")->valuestring, "+441235000123");
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "changing_to")->valuestring,
	    "+441235999000;ext=150");
	/* the view, not the storage: no flags, no backoff */
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(o, "flags"));
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(o, "backoff"));
	a = cJSON_GetObjectItemCaseSensitive(o, "attributes");
	ck_assert(cJSON_IsObject(a));
	cJSON_ArrayForEach(v, a) n++;
	ck_assert_int_eq(n, RA__MAX - 1); /* company is missing */
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(a, "company"));
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(a, "extension_attribute15")->valuestring,
	    u.attr[RA_EXT15]);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(a, "usage_location")->valuestring,
	    u.attr[RA_USAGE_LOCATION]);
	cJSON_Delete(o);
	user_clear(&u);
	/* a user with nothing: no retry_at, empty attributes */
	user_init(&u, "bare");
	o = user_to_json(&u);
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(o, "retry_at"));
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(o, "changing_to"));
	ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "enabled")));
	ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "teams_phone")));
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "state")->valuestring, "new");
	ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(o, "attributes")->child);
	cJSON_Delete(o);
	/* a state the view does not know */
	u.state = 200;
	o = user_to_json(&u);
	ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "state")->valuestring, "unknown");
	cJSON_Delete(o);
}
END_TEST

static Suite *
user_suite(void)
{
	Suite *s = suite_create("user");
	TCase *rec = tcase_create("record");
	TCase *damaged = tcase_create("damaged");
	TCase *legacy = tcase_create("legacy");
	TCase *dir = tcase_create("from_dir");
	TCase *misc = tcase_create("misc");

	tcase_add_test(rec, round_trip_every_field);
	tcase_add_test(rec, round_trip_each_state_flag_and_licence);
	tcase_add_test(rec, round_trip_unknown_flags);
	tcase_add_test(rec, empty_and_missing_attributes);
	tcase_add_test(rec, longest_upn_and_name);
	tcase_add_test(rec, long_attribute);
	tcase_add_test(rec, layout_byte_by_byte);
	tcase_add_test(rec, layout_length_little_endian);
	tcase_add_test(rec, later_version_extra_strings_skipped);
	tcase_add_test(rec, fewer_strings_than_known);
	suite_add_tcase(s, rec);

	tcase_add_test(damaged, other_version_bytes_refused);
	tcase_add_test(damaged, truncated_at_every_length);
	tcase_add_test(damaged, trailing_bytes_refused);
	tcase_add_test(damaged, bad_state_refused);
	tcase_add_test(damaged, nul_inside_a_string_refused);
	tcase_add_test(damaged, overlong_upn_refused);
	tcase_add_test(damaged, overlong_change_refused);
	tcase_add_test(damaged, length_past_the_end_refused);
	suite_add_tcase(s, damaged);

	tcase_add_test(legacy, legacy_json_record);
	tcase_add_test(legacy, legacy_json_states);
	tcase_add_test(legacy, legacy_json_defaults_and_odd_values);
	tcase_add_test(legacy, legacy_json_broken_refused);
	tcase_add_test(legacy, legacy_json_rewritten_as_v1);
	suite_add_tcase(s, legacy);

	tcase_add_test(dir, from_dir_new_user);
	tcase_add_test(dir, from_dir_keeps_state_and_retry);
	tcase_add_test(dir, from_dir_page_silent_keeps_old);
	tcase_add_loop_test(dir, from_dir_moved_flag, 0, (int)(sizeof(moves) / sizeof(moves[0])));
	tcase_add_test(dir, from_dir_moved_flag_carried);
	tcase_add_test(dir, from_dir_long_fields_cut);
	suite_add_tcase(s, dir);

	tcase_add_test(misc, copy_is_deep);
	tcase_add_test(misc, init_and_attrs);
	tcase_add_test(misc, state_names);
	tcase_add_test(misc, json_view);
	suite_add_tcase(s, misc);
	return s;
}

NP_CHECK_MAIN(user_suite)
