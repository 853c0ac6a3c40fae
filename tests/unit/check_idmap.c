/*
 * idmap: the small hash map the provisioning cycle keeps its due set, busy
 * users and numbers in flight in. Put, get, delete, update, tombstones and
 * their reuse, growth to 100,000 keys, and the insertion order (seq) the
 * cycle decides users in. And idset, the set of ids a full sync saw: GUIDs
 * kept as 16 bytes, anything else as text, membership exactly strcmp's.
 */
#include "build-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idmap.h"
#include "testutil.h"

/* A test in a loop of many: Check records every ck_assert passed, this only failures. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			ck_abort_msg("failed: %s", #cond);                                         \
	} while (0)

static void
put(struct idmap *m, const char *key, int64_t v, const char *s)
{
	CHECK(idmap_put(m, key, v, s) == 0);
}

/* Every live entry once, by iteration. */
static size_t
walk(const struct idmap *m)
{
	struct idmap_entry *e;
	size_t i = 0, n = 0;

	while ((e = idmap_next(m, &i))) {
		CHECK(e->key != NULL && !e->dead);
		n++;
	}
	ck_assert_ptr_null(idmap_next(m, &i)); /* and stays at the end */
	return n;
}

/* The keys in the order they were put (by seq), as the cycle decides the due set. */
static size_t
keys_by_seq(const struct idmap *m, const char **out, size_t max)
{
	struct idmap_entry *e, **all = calloc(idmap_count(m) + 1, sizeof(*all));
	size_t i = 0, n = 0;

	ck_assert_ptr_nonnull(all);
	while ((e = idmap_next(m, &i)))
		all[n++] = e;
	/* insertion sort: small maps only */
	for (size_t a = 1; a < n; a++)
		for (size_t b = a; b > 0 && all[b - 1]->seq > all[b]->seq; b--) {
			struct idmap_entry *t = all[b];
			all[b] = all[b - 1];
			all[b - 1] = t;
		}
	for (size_t k = 0; k < n && k < max; k++)
		out[k] = all[k]->key;
	free(all);
	return n;
}

START_TEST(empty_map)
{
	struct idmap m = { 0 };
	size_t i = 0;

	ck_assert_ptr_null(idmap_get(&m, "x"));
	ck_assert_uint_eq(idmap_count(&m), 0);
	ck_assert_ptr_null(idmap_next(&m, &i));
	idmap_del(&m, "x");
	idmap_clear(&m);
	idmap_clear(&m);
	ck_assert_uint_eq(m.cap, 0);
}
END_TEST

START_TEST(put_and_get)
{
	struct idmap m = { 0 };
	char s[] = "+441235000123";
	struct idmap_entry *e;

	put(&m, "alice", 42, s);
	put(&m, "bob", -7, NULL);
	put(&m, "", 1, "empty key");
	s[0] = 'X'; /* the map holds a copy */
	ck_assert_uint_eq(idmap_count(&m), 3);
	e = idmap_get(&m, "alice");
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->v, 42);
	ck_assert_str_eq(e->s, "+441235000123");
	ck_assert_str_eq(e->key, "alice");
	e = idmap_get(&m, "bob");
	ck_assert_int_eq(e->v, -7);
	ck_assert_ptr_null(e->s);
	ck_assert_str_eq(idmap_get(&m, "")->s, "empty key");
	ck_assert_ptr_null(idmap_get(&m, "carol"));
	ck_assert_ptr_null(idmap_get(&m, "Alice")); /* keys are exact */
	ck_assert_ptr_null(idmap_get(&m, "alic"));
	ck_assert_uint_eq(walk(&m), 3);
	idmap_clear(&m);
}
END_TEST

START_TEST(update_in_place)
{
	struct idmap m = { 0 };
	struct idmap_entry *e;
	uint64_t seq;

	put(&m, "alice", 1, "one");
	put(&m, "bob", 2, NULL);
	seq = idmap_get(&m, "alice")->seq;
	put(&m, "alice", 10, "ten");
	e = idmap_get(&m, "alice");
	ck_assert_int_eq(e->v, 10);
	ck_assert_str_eq(e->s, "ten");
	ck_assert_uint_eq(e->seq, seq); /* an update keeps its place in the order */
	ck_assert_uint_eq(idmap_count(&m), 2);
	/* NULL keeps no string */
	put(&m, "alice", 11, NULL);
	e = idmap_get(&m, "alice");
	ck_assert_int_eq(e->v, 11);
	ck_assert_ptr_null(e->s);
	put(&m, "alice", 12, "back");
	ck_assert_str_eq(idmap_get(&m, "alice")->s, "back");
	ck_assert_uint_eq(walk(&m), 2);
	idmap_clear(&m);
}
END_TEST

START_TEST(delete)
{
	struct idmap m = { 0 };

	put(&m, "alice", 1, "a string to free");
	put(&m, "bob", 2, NULL);
	idmap_del(&m, "alice");
	ck_assert_ptr_null(idmap_get(&m, "alice"));
	ck_assert_uint_eq(idmap_count(&m), 1);
	idmap_del(&m, "alice"); /* twice: nothing */
	idmap_del(&m, "nobody");
	ck_assert_uint_eq(idmap_count(&m), 1);
	ck_assert_int_eq(idmap_get(&m, "bob")->v, 2);
	ck_assert_uint_eq(walk(&m), 1);
	idmap_del(&m, "bob");
	ck_assert_uint_eq(idmap_count(&m), 0);
	ck_assert_uint_eq(walk(&m), 0);
	idmap_clear(&m);
}
END_TEST

/* ---- tombstones: keys that share a home slot -------------------------------- */

static uint64_t
fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* n keys whose home slot in a table of cap slots is the same. */
static void
colliding_keys(size_t cap, char out[][16], size_t n)
{
	size_t found = 0;
	uint64_t home = fnv1a("k0") & (cap - 1);

	for (int i = 0; found < n; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%d", i);
		if ((fnv1a(k) & (cap - 1)) == home)
			memcpy(out[found++], k, sizeof(k));
	}
}

START_TEST(tombstone_in_a_probe_chain)
{
	struct idmap m = { 0 };
	char k[4][16];
	size_t cap;

	put(&m, "seed", 0, NULL); /* the table exists from the first put */
	cap = m.cap;
	colliding_keys(cap, k, 4);
	put(&m, k[0], 0, "zero");
	put(&m, k[1], 1, "one");
	put(&m, k[2], 2, "two");
	/* a tombstone before k[1] and k[2] in their chain: they are still found */
	idmap_del(&m, k[0]);
	ck_assert_ptr_null(idmap_get(&m, k[0]));
	ck_assert_str_eq(idmap_get(&m, k[1])->s, "one");
	ck_assert_str_eq(idmap_get(&m, k[2])->s, "two");
	/* updating k[2] updates it, it does not land a second k[2] in the tombstone */
	put(&m, k[2], 22, "twenty-two");
	ck_assert_uint_eq(idmap_count(&m), 3);
	ck_assert_uint_eq(walk(&m), 3);
	idmap_del(&m, k[2]);
	ck_assert_ptr_null(idmap_get(&m, k[2]));
	ck_assert_uint_eq(idmap_count(&m), 2);
	/* a new key of the chain takes the first tombstone, nothing grows */
	{
		size_t used = m.used;
		put(&m, k[3], 3, "three");
		ck_assert_uint_eq(m.used, used);
		ck_assert_uint_eq(m.cap, cap);
	}
	ck_assert_str_eq(idmap_get(&m, k[3])->s, "three");
	ck_assert_str_eq(idmap_get(&m, k[1])->s, "one");
	/* and k[0] again takes the remaining one */
	put(&m, k[0], 0, "zero again");
	ck_assert_str_eq(idmap_get(&m, k[0])->s, "zero again");
	ck_assert_uint_eq(idmap_count(&m), 4);
	ck_assert_uint_eq(walk(&m), 4);
	idmap_clear(&m);
}
END_TEST

/* The same keys due, done, due again, for ever: the table does not grow. */
START_TEST(tombstone_reuse_same_keys)
{
	struct idmap m = { 0 };
	size_t cap;

	for (int i = 0; i < 20; i++) {
		char k[16];
		snprintf(k, sizeof(k), "user-%d", i);
		put(&m, k, i, NULL);
	}
	cap = m.cap;
	for (int round = 0; round < 5000; round++)
		for (int i = 0; i < 20; i += 3) {
			char k[16];
			snprintf(k, sizeof(k), "user-%d", i);
			idmap_del(&m, k);
			CHECK(idmap_get(&m, k) == NULL);
			put(&m, k, round, "x");
		}
	ck_assert_uint_eq(m.cap, cap);
	ck_assert_uint_eq(idmap_count(&m), 20);
	ck_assert_uint_eq(walk(&m), 20);
	ck_assert_int_eq(idmap_get(&m, "user-18")->v, 4999);
	ck_assert_int_eq(idmap_get(&m, "user-19")->v, 19);
	idmap_clear(&m);
}
END_TEST

/* Many different keys coming and going: always right, and the table stays small. */
START_TEST(churn_of_distinct_keys)
{
	struct idmap m = { 0 };
	char k[32];

	for (int i = 0; i < 200000; i++) {
		snprintf(k, sizeof(k), "churn-%d", i);
		put(&m, k, i, i % 3 ? NULL : k);
		if (i >= 10) {
			snprintf(k, sizeof(k), "churn-%d", i - 10);
			idmap_del(&m, k);
		}
		CHECK(m.used * 4 <= m.cap * 3);
		CHECK(m.cap <= 256); /* sized on the live entries, not on the keys ever seen */
	}
	ck_assert_uint_eq(idmap_count(&m), 10);
	ck_assert_uint_eq(walk(&m), 10);
	for (int i = 199990; i < 200000; i++) {
		snprintf(k, sizeof(k), "churn-%d", i);
		ck_assert_ptr_nonnull(idmap_get(&m, k));
		ck_assert_int_eq(idmap_get(&m, k)->v, i);
	}
	snprintf(k, sizeof(k), "churn-%d", 199989);
	ck_assert_ptr_null(idmap_get(&m, k));
	idmap_clear(&m);
}
END_TEST

/* ---- growth ------------------------------------------------------------------ */

#define MANY 100000

START_TEST(growth_to_100000_keys)
{
	struct idmap m = { 0 };
	unsigned char *seen = calloc(MANY, 1);
	struct idmap_entry *e;
	uint64_t last_seq = 0;
	char k[32];
	size_t i = 0, n = 0;

	ck_assert_ptr_nonnull(seen);
	for (int j = 0; j < MANY; j++) {
		snprintf(k, sizeof(k), "0b1f%04x-user-%d", j & 0xffff, j);
		put(&m, k, j, j % 7 ? NULL : k);
		CHECK(idmap_get(&m, k)->seq > last_seq); /* seq grows with each new key */
		last_seq = idmap_get(&m, k)->seq;
	}
	ck_assert_uint_eq(idmap_count(&m), MANY);
	ck_assert_uint_eq(m.cap & (m.cap - 1), 0); /* a power of two */
	ck_assert_uint_lt(m.used * 4, m.cap * 3);  /* room left */
	for (int j = 0; j < MANY; j++) {
		snprintf(k, sizeof(k), "0b1f%04x-user-%d", j & 0xffff, j);
		e = idmap_get(&m, k);
		CHECK(e != NULL);
		CHECK(e->v == j);
		CHECK(j % 7 ? e->s == NULL : e->s && strcmp(e->s, k) == 0);
	}
	/* every other one goes */
	for (int j = 0; j < MANY; j += 2) {
		snprintf(k, sizeof(k), "0b1f%04x-user-%d", j & 0xffff, j);
		idmap_del(&m, k);
	}
	ck_assert_uint_eq(idmap_count(&m), MANY / 2);
	/* iteration visits each live entry exactly once */
	while ((e = idmap_next(&m, &i))) {
		int j = atoi(strstr(e->key, "-user-") + 6);
		CHECK(j % 2 == 1 && !seen[j]);
		seen[j] = 1;
		n++;
	}
	ck_assert_uint_eq(n, MANY / 2);
	/* they come back */
	for (int j = 0; j < MANY; j += 2) {
		snprintf(k, sizeof(k), "0b1f%04x-user-%d", j & 0xffff, j);
		put(&m, k, -j, NULL);
	}
	ck_assert_uint_eq(idmap_count(&m), MANY);
	ck_assert_uint_eq(walk(&m), MANY);
	snprintf(k, sizeof(k), "0b1f%04x-user-%d", 4 & 0xffff, 4);
	ck_assert_int_eq(idmap_get(&m, k)->v, -4);
	free(seen);
	idmap_clear(&m);
	ck_assert_uint_eq(idmap_count(&m), 0);
}
END_TEST

/* ---- order ---------------------------------------------------------------------- */

START_TEST(order_by_seq)
{
	static const char *const first[] = { "u5", "u3", "u9", "u1", "u7", "u2" };
	struct idmap m = { 0 };
	const char *got[16];

	for (size_t i = 0; i < 6; i++)
		put(&m, first[i], 0, NULL);
	ck_assert_uint_eq(keys_by_seq(&m, got, 16), 6);
	for (size_t i = 0; i < 6; i++)
		ck_assert_str_eq(got[i], first[i]);
	/* an update keeps the place; a key removed and put again goes last */
	put(&m, "u3", 99, "updated");
	idmap_del(&m, "u9");
	put(&m, "u9", 1, NULL);
	ck_assert_uint_eq(keys_by_seq(&m, got, 16), 6);
	ck_assert_str_eq(got[0], "u5");
	ck_assert_str_eq(got[1], "u3");
	ck_assert_str_eq(got[2], "u1");
	ck_assert_str_eq(got[5], "u9");
	idmap_clear(&m);
}
END_TEST

/* Growth rehashes the table; the order (seq) survives it. */
START_TEST(order_survives_growth)
{
	struct idmap m = { 0 };
	const char **got = calloc(5000, sizeof(*got));
	char k[32];
	size_t cap0;

	ck_assert_ptr_nonnull(got);
	put(&m, "first", 0, NULL);
	cap0 = m.cap;
	for (int i = 4998; i >= 0; i--) { /* keys in an order unrelated to their hash or name */
		snprintf(k, sizeof(k), "key-%d", (i * 7919) % 4999);
		put(&m, k, i, NULL);
	}
	ck_assert_uint_gt(m.cap, cap0);
	ck_assert_uint_eq(keys_by_seq(&m, got, 5000), 5000);
	ck_assert_str_eq(got[0], "first");
	for (int n = 1; n < 5000; n++) {
		int i = 4999 - n;
		snprintf(k, sizeof(k), "key-%d", (i * 7919) % 4999);
		CHECK(strcmp(got[n], k) == 0);
	}
	free(got);
	idmap_clear(&m);
}
END_TEST

START_TEST(clear_and_reuse)
{
	struct idmap m = { 0 };

	put(&m, "a", 1, "x");
	idmap_del(&m, "a");
	put(&m, "b", 2, "y");
	idmap_clear(&m);
	ck_assert_ptr_null(idmap_get(&m, "b"));
	ck_assert_uint_eq(idmap_count(&m), 0);
	put(&m, "b", 3, NULL);
	ck_assert_int_eq(idmap_get(&m, "b")->v, 3);
	ck_assert_uint_eq(idmap_get(&m, "b")->seq, 1); /* a cleared map starts over */
	idmap_clear(&m);
}
END_TEST

static void
guid_of(unsigned i, char out[37])
{
	snprintf(out, 37, "%08x-%04x-4%03x-8%03x-%012x", i * 2654435761u, i & 0xffff,
	    (i >> 4) & 0xfff, (i >> 8) & 0xfff, i);
}

START_TEST(idset_guids_are_compact)
{
	struct idset s = { 0 };
	char id[40];

	ck_assert_int_eq(idset_has(&s, "6e5c0b1a-0000-4000-8000-00000000b0b0"), 0);
	ck_assert_int_eq(idset_add(&s, "6e5c0b1a-0000-4000-8000-00000000b0b0"), 0);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_uint_eq(idmap_count(&s.other), 0);
	ck_assert_int_eq(idset_has(&s, "6e5c0b1a-0000-4000-8000-00000000b0b0"), 1);
	ck_assert_int_eq(idset_has(&s, "6e5c0b1a-0000-4000-8000-00000000b0b1"), 0);
	/* the same GUID in upper case is another string, as strcmp says */
	ck_assert_int_eq(idset_has(&s, "6E5C0B1A-0000-4000-8000-00000000B0B0"), 0);
	ck_assert_int_eq(idset_add(&s, "6E5C0B1A-0000-4000-8000-00000000B0B0"), 0);
	ck_assert_uint_eq(idmap_count(&s.other), 1);
	ck_assert_int_eq(idset_has(&s, "6E5C0B1A-0000-4000-8000-00000000B0B0"), 1);
	/* adding after a look-up (which sorted) is seen by the next look-up */
	guid_of(7, id);
	ck_assert_int_eq(idset_has(&s, id), 0);
	ck_assert_int_eq(idset_add(&s, id), 0);
	ck_assert_int_eq(idset_has(&s, id), 1);
	idset_clear(&s);
	ck_assert_int_eq(idset_has(&s, id), 0);
	idset_clear(&s);
}
END_TEST

START_TEST(idset_other_ids_are_text)
{
	struct idset s = { 0 };
	static const char *const odd[] = {
		"",
		"u1",
		"6e5c0b1a-0000-4000-8000-00000000b0b",	 /* 35 characters */
		"6e5c0b1a-0000-4000-8000-00000000b0b0a", /* 37 */
		"6e5c0b1a00000-4000-8000-00000000b0b0",	 /* a digit for a dash */
		"6e5c0b1a-0000-4000-8000-00000000b0g0",	 /* not hex */
		"6e5c0b1-a0000-4000-8000-00000000b0b0",	 /* a dash moved */
		"{6e5c0b1a-0000-4000-8000-00000000b0b0}",
	};

	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		ck_assert_int_eq(idset_has(&s, odd[i]), 0);
		ck_assert_int_eq(idset_add(&s, odd[i]), 0);
	}
	ck_assert_uint_eq(s.n, 0);
	ck_assert_uint_eq(idmap_count(&s.other), sizeof(odd) / sizeof(odd[0]));
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
		ck_assert_int_eq(idset_has(&s, odd[i]), 1);
	/* the GUID the malformed ones resemble was never added */
	ck_assert_int_eq(idset_has(&s, "6e5c0b1a-0000-4000-8000-00000000b0b0"), 0);
	idset_clear(&s);
}
END_TEST

START_TEST(idset_100000_guids)
{
	struct idset s = { 0 };
	char id[40];

	for (unsigned i = 0; i < 100000; i++) {
		guid_of(i * 2, id);
		CHECK(idset_add(&s, id) == 0);
	}
	guid_of(0, id);
	CHECK(idset_add(&s, id) == 0); /* a user seen twice */
	ck_assert_uint_eq(s.n, 100001);
	ck_assert_uint_eq(idmap_count(&s.other), 0);
	for (unsigned i = 0; i < 200000; i++) {
		guid_of(i, id);
		CHECK(idset_has(&s, id) == (i % 2 == 0));
	}
	idset_clear(&s);
}
END_TEST

static Suite *
idmap_suite(void)
{
	Suite *s = suite_create("idmap");
	TCase *basic = tcase_create("basic");
	TCase *tomb = tcase_create("tombstones");
	TCase *big = tcase_create("growth");

	tcase_add_test(basic, empty_map);
	tcase_add_test(basic, put_and_get);
	tcase_add_test(basic, update_in_place);
	tcase_add_test(basic, delete);
	tcase_add_test(basic, order_by_seq);
	tcase_add_test(basic, clear_and_reuse);
	suite_add_tcase(s, basic);

	tcase_add_test(tomb, tombstone_in_a_probe_chain);
	tcase_add_test(tomb, tombstone_reuse_same_keys);
	tcase_add_test(tomb, churn_of_distinct_keys);
	tcase_set_timeout(tomb, 60);
	suite_add_tcase(s, tomb);

	tcase_add_test(big, growth_to_100000_keys);
	tcase_add_test(big, order_survives_growth);
	tcase_add_test(big, idset_guids_are_compact);
	tcase_add_test(big, idset_other_ids_are_text);
	tcase_add_test(big, idset_100000_guids);
	tcase_set_timeout(big, 60);
	suite_add_tcase(s, big);
	return s;
}

NP_CHECK_MAIN(idmap_suite)
