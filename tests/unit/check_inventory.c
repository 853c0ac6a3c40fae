/* The Berkeley DB inventory: states, allocation order, persistence, ranges. */
#include "build-config.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "inventory.h"
#include "log.h"
#include "testutil.h"

#define T0 1800000000 /* a fixed "now" */
#define DAY 86400

static char dir[64];
static char err[8192];
static struct inventory *inv;

static struct config *
config_with(const char *ranges)
{
	char path[128], text[8192];
	FILE *f;
	struct config *c;

	snprintf(path, sizeof(path), "%s.conf", dir);
	snprintf(text, sizeof(text),
	    "tenant: { id = \"t\"; client_id = \"11111111-2222-3333-4444-555555555555\";\n"
	    "  client_secret_file = \"/s\"; };\n"
	    "database: { path = \"%s\"; durable = false; };\nranges = (\n%s\n);\n",
	    dir, ranges);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	c = config_load(path, err, sizeof(err));
	ck_assert_msg(c != NULL, "%s", err);
	unlink(path);
	return c;
}

#define DR(name, first, last, extra)                                                               \
	"{ name = \"" name "\"; type = \"direct-routing\"; first = \"" first "\"; last = \"" last  \
	"\"; " extra " }"

static const char *ranges_abc = DR("a", "+441235000000", "+441235000199",
    "reserved = [ \"+441235000000\" ];") ",\n" DR("b", "+441235001000", "+441235001063",
    "") ",\n" DR("x", "+441235999000;ext=100", "+441235999000;ext=199", "");

static void
open_with(const char *ranges)
{
	struct config *c = config_with(ranges);

	ck_assert_int_eq(inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_OK);
	ck_assert_int_eq(inv_sync_ranges(inv, c, T0), INV_OK);
	config_free(c);
}

static void
resync(const char *ranges)
{
	struct config *c = config_with(ranges);

	ck_assert_int_eq(inv_sync_ranges(inv, c, T0), INV_OK);
	config_free(c);
}

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/numprov-inv-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	inv = NULL;
	open_with(ranges_abc);
}

static void
teardown(void)
{
	char cmd[128];

	inv_close(inv);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void
assert_consistent(void)
{
	char report[4096];

	ck_assert_msg(inv_verify(inv, report, sizeof(report)) == 0, "%s", report);
}

static void
alloc_ok(const char *range, const char *user, const char *want)
{
	struct inv_number n;

	ck_assert_int_eq(inv_allocate(inv, range, user, user, T0, &n), INV_OK);
	ck_assert_str_eq(n.number, want);
	ck_assert_int_eq(n.state, INV_PENDING);
}

static struct inv_range
range(const char *name)
{
	struct inv_range r;

	ck_assert_int_eq(inv_get_range(inv, name, &r), INV_OK);
	return r;
}

START_TEST(allocates_lowest_free_skipping_reserved)
{
	alloc_ok("a", "u1", "+441235000001");
	alloc_ok("a", "u2", "+441235000002");
	ck_assert_int_eq(inv_reserve(inv, "+44 1235 000003", T0), INV_OK);
	alloc_ok("a", "u3", "+441235000004");
	ck_assert_uint_eq(range("a").count[INV_PENDING], 3);
	ck_assert_uint_eq(range("a").count[INV_RESERVED], 2);
	assert_consistent();
}
END_TEST

START_TEST(pending_confirm_assigned)
{
	struct inv_number n;
	struct inv_user u;

	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_get_user(inv, "u1", &u), INV_OK);
	ck_assert_int_eq(u.state, INV_PENDING);
	ck_assert_int_eq(inv_confirm(inv, "+441235000001", "u1", T0 + 5), INV_OK);
	ck_assert_int_eq(inv_get_number(inv, "+441235000001", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_ASSIGNED);
	ck_assert_str_eq(n.user_id, "u1");
	ck_assert_int_eq(n.since, T0 + 5);
	ck_assert_int_eq(inv_get_user(inv, "u1", &u), INV_OK);
	ck_assert_int_eq(u.state, INV_ASSIGNED);
	ck_assert_uint_eq(range("a").count[INV_ASSIGNED], 1);
	ck_assert_uint_eq(range("a").count[INV_PENDING], 0);
	ck_assert_int_eq(inv_confirm(inv, "+441235000001", "u2", T0), INV_E_STATE);
	assert_consistent();
}
END_TEST

START_TEST(user_never_gets_two_numbers)
{
	struct inv_number n;

	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_allocate(inv, "b", "u1", "u1", T0, &n), INV_E_USER_HAS);
	ck_assert_str_eq(n.number, "+441235000001");
	ck_assert_uint_eq(range("b").count[INV_PENDING], 0);
}
END_TEST

START_TEST(fail_gives_number_back)
{
	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_fail(inv, "+441235000001", "u1"), INV_OK);
	alloc_ok("a", "u2", "+441235000001");
	ck_assert_int_eq(inv_fail(inv, "+441235000001", "u1"), INV_E_STATE);
	assert_consistent();
}
END_TEST

/* Teams shows the pending number on someone else: out of the user's hands and the pool at once. */
START_TEST(fail_reserve_keeps_a_number_held_elsewhere_out_of_the_pool)
{
	struct inv_number n;
	struct inv_user u;

	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_fail_reserve(inv, "+441235000001", "u1", T0), INV_OK);
	ck_assert_int_eq(inv_get_number(inv, "+441235000001", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_RESERVED);
	ck_assert_int_eq(inv_get_user(inv, "u1", &u), INV_E_NOTFOUND);
	ck_assert_uint_eq(range("a").count[INV_PENDING], 0);
	ck_assert_uint_eq(range("a").count[INV_RESERVED], 2); /* the config's one, and this */
	alloc_ok("a", "u2", "+441235000002");		      /* skipped: not handed out again */
	ck_assert_int_eq(inv_fail_reserve(inv, "+441235000001", "u1", T0), INV_E_STATE);
	assert_consistent();
}
END_TEST

START_TEST(release_without_quarantine_frees_at_once)
{
	struct inv_number n;

	alloc_ok("b", "u1", "+441235001000");
	alloc_ok("b", "u2", "+441235001001");
	ck_assert_int_eq(inv_confirm(inv, "+441235001000", "u1", T0), INV_OK);
	ck_assert_int_eq(inv_release(inv, "u1", 0, T0, &n), INV_OK);
	ck_assert_int_eq(n.state, INV_AVAILABLE);
	alloc_ok("b", "u3", "+441235001000");
	ck_assert_int_eq(inv_release(inv, "nobody", 0, T0, NULL), INV_E_NOTFOUND);
	assert_consistent();
}
END_TEST

START_TEST(quarantine_holds_then_returns)
{
	struct inv_number n;

	alloc_ok("b", "u1", "+441235001000");
	ck_assert_int_eq(inv_confirm(inv, "+441235001000", "u1", T0), INV_OK);
	ck_assert_int_eq(inv_release(inv, "u1", 30, T0, &n), INV_OK);
	ck_assert_int_eq(n.state, INV_QUARANTINED);
	ck_assert_int_eq(n.until, T0 + 30 * DAY);
	ck_assert_uint_eq(range("b").count[INV_QUARANTINED], 1);
	alloc_ok("b", "u2", "+441235001001"); /* still resting */
	ck_assert_int_eq(inv_expire(inv, T0 + 30 * DAY - 1), 0);
	ck_assert_int_eq(inv_expire(inv, T0 + 30 * DAY), 1);
	ck_assert_uint_eq(range("b").count[INV_QUARANTINED], 0);
	alloc_ok("b", "u3", "+441235001000");
	assert_consistent();
}
END_TEST

START_TEST(allocation_reclaims_ended_quarantine)
{
	struct inv_number n;

	alloc_ok("b", "u1", "+441235001000");
	ck_assert_int_eq(inv_release(inv, "u1", 1, T0, NULL), INV_OK);
	ck_assert_int_eq(inv_allocate(inv, "b", "u2", "u2", T0 + 2 * DAY, &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235001000");
	assert_consistent();
}
END_TEST

START_TEST(lowest_gap_is_found)
{
	char user[16], want[32];

	for (int i = 0; i < 64; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		snprintf(want, sizeof(want), "+4412350010%02d", i);
		alloc_ok("b", user, want);
	}
	ck_assert_int_eq(inv_allocate(inv, "b", "late", "late", T0, NULL), INV_E_FULL);
	ck_assert_int_eq(inv_release(inv, "u57", 0, T0, NULL), INV_OK);
	ck_assert_int_eq(inv_release(inv, "u9", 0, T0, NULL), INV_OK);
	alloc_ok("b", "late", "+441235001009");
	alloc_ok("b", "later", "+441235001057");
	ck_assert_int_eq(inv_allocate(inv, "b", "last", "last", T0, NULL), INV_E_FULL);
	assert_consistent();
}
END_TEST

START_TEST(extension_range_numbers)
{
	alloc_ok("x", "u1", "+441235999000;ext=100");
	alloc_ok("x", "u2", "+441235999000;ext=101");
	ck_assert_uint_eq(range("x").size, 100);
	assert_consistent();
}
END_TEST

START_TEST(reserve_rules)
{
	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_reserve(inv, "+441235000001", T0), INV_E_TAKEN);
	ck_assert_int_eq(inv_reserve(inv, "+449999000001", T0), INV_E_NORANGE);
	ck_assert_int_eq(inv_reserve(inv, "not a number", T0), INV_E_NOTFOUND);
	ck_assert_int_eq(inv_reserve(inv, "+441235000050", T0), INV_OK);
	ck_assert_int_eq(inv_reserve(inv, "+441235000050", T0), INV_OK); /* idempotent */
	ck_assert_uint_eq(range("a").count[INV_RESERVED], 2);
	ck_assert_int_eq(inv_unreserve(inv, "+441235000050"), INV_OK);
	ck_assert_int_eq(inv_unreserve(inv, "+441235000050"), INV_E_STATE);
	/* the config's own reservation can only be lifted in the config */
	ck_assert_int_eq(inv_unreserve(inv, "+441235000000"), INV_E_CONFIG);
	ck_assert_uint_eq(range("a").count[INV_RESERVED], 1);
	assert_consistent();
}
END_TEST

START_TEST(config_reservations_follow_the_file)
{
	struct inv_number n;

	ck_assert_int_eq(inv_get_number(inv, "+441235000000", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_RESERVED);
	resync(DR("a", "+441235000000", "+441235000199",
	    "reserved = [ \"+441235000199\" ];") ",\n" DR("b", "+441235001000", "+441235001063",
	    "") ",\n" DR("x", "+441235999000;ext=100", "+441235999000;ext=199", ""));
	ck_assert_int_eq(inv_get_number(inv, "+441235000000", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_AVAILABLE);
	ck_assert_int_eq(inv_get_number(inv, "+441235000199", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_RESERVED);
	alloc_ok("a", "u1", "+441235000000");
	assert_consistent();
}
END_TEST

START_TEST(adopt_number_already_in_teams)
{
	struct inv_number n;
	struct inv_user u;

	ck_assert_int_eq(inv_adopt(inv, "+441235000005", "u1", "u1@x", T0), INV_OK);
	ck_assert_int_eq(inv_get_number(inv, "+441235000005", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_ASSIGNED);
	ck_assert_str_eq(n.range, "a");
	ck_assert_uint_eq(range("a").count[INV_ASSIGNED], 1);
	/* held by someone else: refused, nothing changes */
	ck_assert_int_eq(inv_adopt(inv, "+441235000005", "u2", "u2@x", T0), INV_E_TAKEN);
	/* the same user again: nothing to do */
	ck_assert_int_eq(inv_adopt(inv, "+441235000005", "u1", "u1@x", T0), INV_OK);
	/* a user who holds one number cannot adopt a second */
	ck_assert_int_eq(inv_adopt(inv, "+441235000006", "u1", "u1@x", T0), INV_E_USER_HAS);
	/* outside every range: recorded, counted nowhere */
	ck_assert_int_eq(inv_adopt(inv, "+3312345678", "u3", "u3@x", T0), INV_OK);
	ck_assert_int_eq(inv_get_user(inv, "u3", &u), INV_OK);
	ck_assert_str_eq(u.number, "+3312345678");
	/* allocation skips the adopted number */
	for (int i = 1; i <= 4; i++)
		ck_assert_int_eq(
		    inv_allocate(inv, "a", (char[]) { 'n', (char)('0' + i), 0 }, "n", T0, NULL),
		    INV_OK);
	alloc_ok("a", "n5", "+441235000006");
	/* a pending number confirmed by adoption */
	ck_assert_int_eq(inv_adopt(inv, "+441235000006", "n5", "n5", T0), INV_OK);
	ck_assert_int_eq(inv_get_number(inv, "+441235000006", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_ASSIGNED);
	assert_consistent();
}
END_TEST

START_TEST(state_survives_reopen)
{
	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_confirm(inv, "+441235000001", "u1", T0), INV_OK);
	alloc_ok("a", "u2", "+441235000002");
	ck_assert_int_eq(inv_meta_put(inv, "delta_link", "https://graph/x?token=1"), INV_OK);
	inv_close(inv);
	open_with(ranges_abc);
	ck_assert_uint_eq(range("a").count[INV_ASSIGNED], 1);
	ck_assert_uint_eq(range("a").count[INV_PENDING], 1);
	ck_assert_uint_eq(range("a").count[INV_RESERVED], 1);
	alloc_ok("a", "u3", "+441235000003");
	{
		char buf[256];
		ck_assert_int_eq(inv_meta_get(inv, "delta_link", buf, sizeof(buf)), INV_OK);
		ck_assert_str_eq(buf, "https://graph/x?token=1");
	}
	assert_consistent();
}
END_TEST

START_TEST(second_instance_refused)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		struct inventory *other;
		int rc = inv_open(dir, 0, &other, err, sizeof(err));
		char want[64];
		snprintf(
		    want, sizeof(want), "in use by another numprovd (pid %ld)", (long)getppid());
		_exit(rc == INV_E_LOCKED && strstr(err, want) ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

START_TEST(range_indexes_are_stable)
{
	uint32_t a = range("a").index, b = range("b").index, x = range("x").index;

	ck_assert(a != b && b != x && a != x);
	/* reordered, one removed, one added: old indexes stay, the new one is fresh */
	resync(
	    DR("new", "+441235002000", "+441235002099", "") ",\n" DR("x", "+441235999000;ext=100",
		"+441235999000;ext=199", "") ",\n" DR("a", "+441235000000", "+441235000199", ""));
	ck_assert_uint_eq(range("a").index, a);
	ck_assert_uint_eq(range("x").index, x);
	ck_assert(range("new").index != a && range("new").index != b && range("new").index != x);
	ck_assert_uint_eq(range("b").removed, 1);
	resync(ranges_abc);
	ck_assert_uint_eq(range("b").index, b);
	ck_assert_uint_eq(range("b").removed, 0);
}
END_TEST

START_TEST(reload_keeps_counts)
{
	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_confirm(inv, "+441235000001", "u1", T0), INV_OK);
	alloc_ok("b", "u2", "+441235001000");
	/* the same config again (SIGHUP), then a changed one */
	resync(ranges_abc);
	ck_assert_uint_eq(range("a").count[INV_ASSIGNED], 1);
	ck_assert_uint_eq(range("a").count[INV_RESERVED], 1);
	ck_assert_uint_eq(range("b").count[INV_PENDING], 1);
	resync(DR("a", "+441235000000", "+441235000199", "") ",\n" DR(
	    "b", "+441235001000", "+441235001063", ""));
	ck_assert_uint_eq(range("a").count[INV_ASSIGNED], 1);
	ck_assert_uint_eq(range("b").count[INV_PENDING], 1);
	ck_assert_uint_eq(range("x").removed, 1);
	assert_consistent();
}
END_TEST

START_TEST(removed_range_keeps_numbers)
{
	struct inv_number n;

	alloc_ok("b", "u1", "+441235001000");
	ck_assert_int_eq(inv_confirm(inv, "+441235001000", "u1", T0), INV_OK);
	resync(DR("a", "+441235000000", "+441235000199", ""));
	ck_assert_uint_eq(range("b").removed, 1);
	ck_assert_uint_eq(range("b").count[INV_ASSIGNED], 1);
	ck_assert_int_eq(inv_get_number(inv, "+441235001000", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_ASSIGNED);
	ck_assert_str_eq(n.user_id, "u1");
	ck_assert_int_eq(inv_allocate(inv, "b", "u2", "u2", T0, NULL), INV_E_NOTFOUND);
	assert_consistent();
	/* back in the config: the number is still taken */
	resync(ranges_abc);
	alloc_ok("b", "u2", "+441235001001");
	assert_consistent();
}
END_TEST

START_TEST(changed_bounds_recount)
{
	alloc_ok("b", "u1", "+441235001000");
	alloc_ok("b", "u2", "+441235001001");
	/* b shrinks to start after u1's number; a new range takes it over */
	resync(DR("a", "+441235000000", "+441235000199", "") ",\n" DR("b", "+441235001001",
	    "+441235001063", "") ",\n" DR("c", "+441235000900", "+441235001000", ""));
	ck_assert_uint_eq(range("b").count[INV_PENDING], 1);
	ck_assert_uint_eq(range("c").count[INV_PENDING], 1);
	alloc_ok("b", "u3", "+441235001002");
	alloc_ok("c", "u4", "+441235000900");
	assert_consistent();
}
END_TEST

START_TEST(big_range_stores_only_what_is_used)
{
	struct stat st;
	char path[128];
	struct inv_number n;

	resync(DR("big", "+441230000000", "+441230999999", ""));
	ck_assert_uint_eq(range("big").size, 1000000);
	for (int i = 0; i < 10; i++) {
		char user[8];
		snprintf(user, sizeof(user), "u%d", i);
		ck_assert_int_eq(inv_allocate(inv, "big", user, user, T0, &n), INV_OK);
	}
	ck_assert_str_eq(n.number, "+441230000009");
	ck_assert_int_eq(inv_checkpoint(inv), INV_OK);
	/* the occupancy tree is built in memory from the records, never stored */
	snprintf(path, sizeof(path), "%s/occupancy.db", dir);
	ck_assert_int_ne(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/numbers.db", dir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_le(st.st_size, 16384);
	snprintf(path, sizeof(path), "%s/users.db", dir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_le(st.st_size, 16384);
	assert_consistent();
}
END_TEST

/* Fill ranges whose sizes straddle the 64-way tree's node boundaries. */
START_TEST(fills_every_size_exactly)
{
	static const int sizes[] = { 1, 63, 64, 65, 4095, 4096, 4097 };
	int sz = sizes[_i];
	char last[32], def[256], user[16];
	struct inv_number n;

	snprintf(last, sizeof(last), "+4412300%05d", sz - 1);
	snprintf(def, sizeof(def), DR("f", "+441230000000", "%s", ""), last);
	resync(def);
	for (int i = 0; i < sz; i++) {
		char want[32];
		snprintf(user, sizeof(user), "u%d", i);
		snprintf(want, sizeof(want), "+4412300%05d", i);
		ck_assert_int_eq(inv_allocate(inv, "f", user, user, T0, &n), INV_OK);
		ck_assert_str_eq(n.number, want);
	}
	ck_assert_int_eq(inv_allocate(inv, "f", "extra", "extra", T0, NULL), INV_E_FULL);
	ck_assert_int_eq(inv_release(inv, "u0", 0, T0, NULL), INV_OK);
	alloc_ok("f", "extra", "+441230000000");
	assert_consistent();
}
END_TEST

/* A plan of several users: the numbers allocations one after another would give. */
START_TEST(peek_after_gives_the_next_free_numbers)
{
	static const int after[] = { -1, 0, 62, 63, 64, 126, 127, 199, 200, 254, 255, 256, 300, 319,
		320, 4030, 4031, 4032, 4095, 4096 };
	static char taken[4097];
	struct inv_number n;
	char number[32];

	alloc_ok("a", "u1", "+441235000001");
	ck_assert_int_eq(inv_peek_after(inv, "a", T0, NULL, &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235000002");
	ck_assert_int_eq(inv_peek_after(inv, "a", T0, "+441235000002", &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235000003");
	ck_assert_int_eq(inv_reserve(inv, "+441235000004", T0), INV_OK);
	ck_assert_int_eq(inv_peek_after(inv, "a", T0, "+441235000003", &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235000005");
	ck_assert_int_eq(inv_peek_after(inv, "a", T0, "+441235000199", &n), INV_E_FULL);
	ck_assert_int_eq(inv_peek_after(inv, "a", T0, "+441235001000", &n), INV_E_NOTFOUND);
	alloc_ok("a", "u2", "+441235000002"); /* nothing was taken */

	/* three levels: whole leaves and a whole level-1 entry taken, compared with a scan */
	resync(DR("f", "+441230000000", "+441230004096", ""));
	memset(taken, 0, sizeof(taken));
	for (int i = 0; i <= 4096; i++) {
		if (!(i <= 200 || (i >= 256 && i < 320) || i >= 4032))
			continue;
		snprintf(number, sizeof(number), "+4412300%05d", i);
		ck_assert_int_eq(inv_reserve(inv, number, T0), INV_OK);
		taken[i] = 1;
	}
	for (size_t k = 0; k < sizeof(after) / sizeof(after[0]); k++) {
		int want = after[k] + 1, rc;

		while (want <= 4096 && taken[want])
			want++;
		snprintf(number, sizeof(number), "+4412300%05d", after[k]);
		rc = inv_peek_after(inv, "f", T0, after[k] < 0 ? NULL : number, &n);
		if (want > 4096) {
			ck_assert_msg(rc == INV_E_FULL, "after %d: %d", after[k], rc);
			continue;
		}
		snprintf(number, sizeof(number), "+4412300%05d", want);
		ck_assert_msg(rc == INV_OK && strcmp(n.number, number) == 0,
		    "after %d: %s, want %s", after[k], rc == INV_OK ? n.number : inv_strerror(rc),
		    number);
	}
	assert_consistent();
}
END_TEST

/* ---- region memory, a full disk, a panicked environment ------------------ */

/* Every region file has a block behind each byte: no hole a store could fault on. */
START_TEST(region_files_are_allocated)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int files = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		struct stat st;
		char path[512];

		if (strncmp(e->d_name, "__db.", 5) != 0 || strlen(e->d_name) != 8)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_msg((long long)st.st_blocks * 512 >= (long long)st.st_size,
		    "%s: %lld bytes, %lld allocated", path, (long long)st.st_size,
		    (long long)st.st_blocks * 512);
		files++;
	}
	closedir(d);
	ck_assert_int_ge(files, 3);
}
END_TEST

static char logged[8192];

static void
capture_log(int prio, const char *token, const char *msg)
{
	size_t used = strlen(logged);

	if (prio <= LOG_NOTICE && used + strlen(msg) + 32 < sizeof(logged))
		snprintf(logged + used, sizeof(logged) - used, "%d %s: %s\n", prio,
		    token ? token : "", msg);
}

/* A tmpfs of `mb` MB on mnt, seen only by this (forked) test; 0 when it cannot be had. */
static int
private_tmpfs(const char *mnt, int mb)
{
	char opts[32];

	if (geteuid() != 0) {
		fprintf(stderr,
		    "SKIP disk_full_is_an_error_not_a_crash: needs root "
		    "(a mount namespace and a tmpfs)\n");
		return 0;
	}
	if (unshare(CLONE_NEWNS) != 0) {
		fprintf(stderr,
		    "SKIP disk_full_is_an_error_not_a_crash: unshare(CLONE_NEWNS): %s\n",
		    strerror(errno));
		return 0;
	}
	ck_assert_msg(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "private mounts: %s",
	    strerror(errno));
	snprintf(opts, sizeof(opts), "size=%dm,mode=0700", mb);
	ck_assert_msg(mount("numprov-check", mnt, "tmpfs", 0, opts) == 0, "mount tmpfs on %s: %s",
	    mnt, strerror(errno));
	return 1;
}

/* Write to path until the filesystem is full, to the last byte. */
static void
fill_disk(const char *path)
{
	static char zeros[1 << 16];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	ck_assert_int_ge(fd, 0);
	for (size_t chunk = sizeof(zeros); chunk >= 1; chunk /= 16)
		while (write(fd, zeros, chunk) == (ssize_t)chunk)
			;
	ck_assert_int_eq(errno, ENOSPC);
	close(fd);
}

#define FULL_USERS 150

START_TEST(disk_full_is_an_error_not_a_crash)
{
	char mnt[] = "/tmp/numprov-full-XXXXXX", filler[128], user[16];
	int rc, ok = 0, refused = 0, got[FULL_USERS];
	struct inv_user u;
	struct inv_range r;

	ck_assert_ptr_nonnull(mkdtemp(mnt));
	if (!private_tmpfs(mnt, 128)) {
		rmdir(mnt);
		return;
	}
	snprintf(dir, sizeof(dir), "%s/db", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	logged[0] = '\0';
	log_register(capture_log);
	open_with(ranges_abc);
	alloc_ok("a", "before", "+441235000001");

	fill_disk(filler);
	for (int i = 0; i < FULL_USERS; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		rc = inv_allocate(inv, "a", user, user, T0, NULL);
		ck_assert_msg(rc == INV_OK || rc == INV_E_DB, "u%d: %s", i, inv_strerror(rc));
		got[i] = rc == INV_OK;
		ok += got[i];
		refused += !got[i];
	}
	ck_assert_msg(refused > 0, "%d allocations on a full disk, none refused", ok);
	ck_assert_msg(strstr(logged, "no space left on device") && strstr(logged, dir),
	    "no clear line about the full disk in:\n%s", logged);
	/* what was refused left nothing behind; reading works on a full disk */
	for (int i = 0; i < FULL_USERS; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		ck_assert_int_eq(inv_get_user(inv, user, &u), got[i] ? INV_OK : INV_E_NOTFOUND);
	}
	assert_consistent();

	/* space comes back: the same calls succeed */
	ck_assert_int_eq(unlink(filler), 0);
	for (int i = 0; i < FULL_USERS; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		if (!got[i])
			ck_assert_int_eq(inv_allocate(inv, "a", user, user, T0, NULL), INV_OK);
	}
	ck_assert_int_eq(inv_checkpoint(inv), INV_OK);
	ck_assert_msg(strstr(logged, "can be written again"), "%s", logged);
	assert_consistent();

	/* and it all survives a reopen with recovery */
	inv_close(inv);
	ck_assert_int_eq(inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_OK);
	assert_consistent();
	ck_assert_int_eq(inv_get_range(inv, "a", &r), INV_OK);
	ck_assert_uint_eq(r.count[INV_PENDING], FULL_USERS + 1);
	inv_close(inv);
	inv = NULL;
	log_register(NULL);
	ck_assert_int_eq(umount2(mnt, MNT_DETACH), 0);
	rmdir(mnt);
}
END_TEST

/*
 * Another handle on the environment declares it dead, as Berkeley DB does on a
 * fatal error. (The handle stays open: a panicked environment frees nothing.)
 */
static DB_ENV *panicker;

static void
panic_environment(void)
{
	ck_assert_int_eq(db_env_create(&panicker, 0), 0);
	ck_assert_int_eq(panicker->open(panicker, dir,
			     DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL, 0),
	    0);
	ck_assert_int_eq(panicker->set_flags(panicker, DB_PANIC_ENVIRONMENT, 1), 0);
}

static char panic_what[256];
static int panics;

static void
note_panic(const char *what, void *arg)
{
	ck_assert_ptr_eq(arg, &panics);
	snprintf(panic_what, sizeof(panic_what), "%s", what);
	panics++;
}

/*
 * A handler that returns: the call fails with INV_E_DB. (An exit test: a panicked
 * environment cannot be closed cleanly, so the process ends here, as numprovd's does.)
 */
START_TEST(panic_goes_to_the_handler)
{
	char cmd[128];

	alloc_ok("a", "u1", "+441235000001");
	inv_set_panic_handler(note_panic, &panics);
	log_register(capture_log);
	panic_environment();
	ck_assert_int_eq(inv_allocate(inv, "a", "u2", "u2", T0, NULL), INV_E_DB);
	ck_assert_int_ge(panics, 1);
	ck_assert_msg(strstr(panic_what, "DB_RUNRECOVERY"), "%s", panic_what);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	_exit(0);
}
END_TEST

static int crit_seen;

static void
crit_log(int prio, const char *token, const char *msg)
{
	if (prio == LOG_CRIT && token && strcmp(token, "inventory") == 0
	    && strncmp(msg, "Berkeley DB needs recovery (", 28) == 0
	    && strstr(msg, "): exiting; recovery runs at the next start"))
		crit_seen = 1;
}

static void
crit_check(void)
{
	if (!crit_seen)
		_exit(71); /* exited without saying why */
}

/* The default: say so at LOG_CRIT, exit with EX_SOFTWARE; the next open recovers. */
START_TEST(panic_exits_and_the_next_start_recovers)
{
	struct inv_user u;
	pid_t pid;
	int status;

	inv_close(inv);
	inv = NULL;
	if ((pid = fork()) == 0) {
		if (inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)) != INV_OK
		    || inv_allocate(inv, "a", "u1", "u1", T0, NULL) != INV_OK)
			_exit(72);
		log_register(crit_log);
		atexit(crit_check);
		panic_environment();
		if (inv_allocate(inv, "a", "u2", "u2", T0, NULL) == INV_OK)
			_exit(74);
		_exit(73); /* went on after the panic */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(
	    WIFEXITED(status) && WEXITSTATUS(status) == INV_EXIT_RECOVER, "status %#x", status);
	ck_assert_int_eq(inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_OK);
	assert_consistent();
	ck_assert_int_eq(inv_get_user(inv, "u1", &u), INV_OK);
	ck_assert_int_eq(inv_get_user(inv, "u2", &u), INV_E_NOTFOUND);
	alloc_ok("a", "u2", "+441235000002");
}
END_TEST

/* ---- stored records: format 1 (the structs themselves) and format 2 ------ */

/*
 * The records as numprov before record format 2 wrote them: the C structs of
 * inventory.h at the time, byte for byte (x86-64 layout, padding zeroed).
 */
struct old_number {
	char number[32];
	uint8_t state;
	uint8_t flags;
	int64_t since;
	int64_t until;
	char user_id[64];
	char range[64];
};

struct old_user {
	char id[64];
	char upn[256];
	char number[32];
	uint8_t state;
	int64_t since;
};

struct old_range {
	char name[64];
	uint32_t index;
	uint8_t type;
	uint8_t removed;
	char provider[64];
	char first[32], last[32];
	uint64_t size;
	uint64_t count[5];
};

static DB_ENV *raw_env;

/* The database files as a plain Berkeley DB environment, the inventory closed. */
static void
raw_open(void)
{
	ck_assert_int_eq(db_env_create(&raw_env, 0), 0);
	ck_assert_int_eq(
	    raw_env->open(raw_env, dir,
		DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER,
		0600),
	    0);
}

static void
raw_put(const char *file, const void *k, size_t klen, const void *d, size_t dlen)
{
	DB *db;
	DBT key, data;

	ck_assert_int_eq(db_create(&db, raw_env, 0), 0);
	ck_assert_int_eq(
	    db->open(db, NULL, file, NULL, DB_BTREE, DB_CREATE | DB_AUTO_COMMIT, 0600), 0);
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	key.data = (void *)k;
	key.size = (u_int32_t)klen;
	data.data = (void *)d;
	data.size = (u_int32_t)dlen;
	ck_assert_int_eq(db->put(db, NULL, &key, &data, 0), 0);
	db->close(db, 0);
}

static void
raw_close(void)
{
	raw_env->close(raw_env, 0);
	raw_env = NULL;
}

struct old_holding {
	const char *number, *user, *range;
	int state, flags;
	int64_t since, until;
};

static char long_upn[256];

/* What the old inventory below holds. */
static const struct old_holding old_holdings[] = {
	{ "+441235000000", "", "a", INV_RESERVED, INV_NF_CONFIG, T0 - 9 * DAY, 0 },
	{ "+441235000001", "u1", "a", INV_ASSIGNED, 0, T0 - 8 * DAY, 0 },
	{ "+441235000002", "u2", "a", INV_PENDING, 0, T0 - 7 * DAY, 0 },
	{ "+441235000003", "u3", "a", INV_QUARANTINED, 0, T0 - 6 * DAY, T0 + 10 * DAY },
	{ "+441235000007", "", "a", INV_RESERVED, 0, T0 - 5 * DAY, 0 },
	{ "+441235001000", "u4", "b", INV_ASSIGNED, 0, T0 - 4 * DAY, 0 },
	{ "+441235999000;ext=100", "u5", "x", INV_PENDING, 0, T0 - 3 * DAY, 0 },
	{ "+441236000050", "u6", "gone", INV_ASSIGNED, 0, T0 - 2 * DAY, 0 },
	{ "+3312345678", "u7", "", INV_ASSIGNED, 0, T0 - 1 * DAY, 0 },
};
#define N_OLD (sizeof(old_holdings) / sizeof(old_holdings[0]))

static const char *
old_upn(const char *user)
{
	static char upn[64];

	if (strcmp(user, "u1") == 0)
		return long_upn; /* the longest a format 1 record could hold */
	snprintf(upn, sizeof(upn), "%s@contoso.example", user);
	return upn;
}

static void
put_old_range(const char *name, uint32_t index, int removed, const char *first, const char *last,
    uint64_t size)
{
	struct old_range r;

	memset(&r, 0, sizeof(r));
	snprintf(r.name, sizeof(r.name), "%s", name);
	r.index = index;
	r.type = RT_DIRECT_ROUTING;
	r.removed = (uint8_t)removed;
	snprintf(r.provider, sizeof(r.provider), "Gamma");
	snprintf(r.first, sizeof(r.first), "%s", first);
	snprintf(r.last, sizeof(r.last), "%s", last);
	r.size = size;
	for (size_t i = 0; i < N_OLD; i++)
		if (strcmp(old_holdings[i].range, name) == 0)
			r.count[old_holdings[i].state]++;
	raw_put("ranges.db", r.name, strlen(r.name), &r, sizeof(r));
}

/* An old occupancy leaf, as the old code keyed it: (index, level, node) big endian. */
static void
put_old_leaf(uint32_t index, uint64_t mask)
{
	unsigned char k[13] = { 0 };

	k[0] = (unsigned char)(index >> 24);
	k[1] = (unsigned char)(index >> 16);
	k[2] = (unsigned char)(index >> 8);
	k[3] = (unsigned char)index;
	raw_put("occupancy.db", k, sizeof(k), &mask, sizeof(mask));
}

/*
 * An inventory as numprov before record format 2 left it; with `mixed`, as a
 * conversion cut short left it: every other record already in format 2.
 */
static void
build_old_inventory(int mixed)
{
	char cmd[128];

	inv_close(inv);
	inv = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf %s/*", dir);
	ck_assert_int_eq(system(cmd), 0);
	memset(long_upn, 'p', sizeof(long_upn) - 1);
	memcpy(long_upn + sizeof(long_upn) - 13, "@contoso.uk", 11);
	raw_open();
	put_old_range("a", 1, 0, "+441235000000", "+441235000199", 200);
	put_old_range("b", 2, 0, "+441235001000", "+441235001063", 64);
	put_old_range("x", 3, 0, "+441235999000;ext=100", "+441235999000;ext=199", 100);
	put_old_range("gone", 4, 1, "+441236000000", "+441236000099", 100);
	put_old_leaf(1, 0x8f);
	put_old_leaf(2, 0x1);
	put_old_leaf(3, 0x1);
	for (size_t i = 0; i < N_OLD; i++) {
		const struct old_holding *h = &old_holdings[i];
		struct old_number n;
		struct old_user u;
		unsigned char buf[INV_REC_MAX];
		size_t len;

		memset(&n, 0, sizeof(n));
		snprintf(n.number, sizeof(n.number), "%s", h->number);
		n.state = (uint8_t)h->state;
		n.flags = (uint8_t)h->flags;
		n.since = h->since;
		n.until = h->until;
		snprintf(n.user_id, sizeof(n.user_id), "%s", h->user);
		snprintf(n.range, sizeof(n.range), "%s", h->range);
		if (mixed && i % 2) {
			struct inv_number nn;

			memset(&nn, 0, sizeof(nn));
			memcpy(nn.number, n.number, sizeof(nn.number));
			nn.state = n.state;
			nn.flags = n.flags;
			nn.since = n.since;
			nn.until = n.until;
			memcpy(nn.user_id, n.user_id, sizeof(n.user_id));
			memcpy(nn.range, n.range, sizeof(n.range));
			len = inv_encode_number(&nn, buf, sizeof(buf));
			ck_assert_uint_gt(len, 0);
			raw_put("numbers.db", h->number, strlen(h->number), buf, len);
		} else {
			raw_put("numbers.db", h->number, strlen(h->number), &n, sizeof(n));
		}
		if (h->state == INV_QUARANTINED) {
			unsigned char qk[8 + 32];
			size_t nl = strlen(h->number);

			for (int b = 0; b < 8; b++)
				qk[b] = (unsigned char)((uint64_t)h->until >> (56 - 8 * b));
			memcpy(qk + 8, h->number, nl);
			raw_put("quarantine.db", qk, 8 + nl, "", 1);
		}
		if (h->state != INV_PENDING && h->state != INV_ASSIGNED)
			continue;
		memset(&u, 0, sizeof(u));
		snprintf(u.id, sizeof(u.id), "%s", h->user);
		snprintf(u.upn, sizeof(u.upn), "%s", old_upn(h->user));
		snprintf(u.number, sizeof(u.number), "%s", h->number);
		u.state = (uint8_t)h->state;
		u.since = h->since;
		if (mixed && !(i % 2)) {
			struct inv_user nu;

			memset(&nu, 0, sizeof(nu));
			memcpy(nu.id, u.id, sizeof(u.id));
			memcpy(nu.upn, u.upn, sizeof(u.upn));
			memcpy(nu.number, u.number, sizeof(u.number));
			nu.state = u.state;
			nu.since = u.since;
			len = inv_encode_user(&nu, buf, sizeof(buf));
			raw_put("users.db", h->user, strlen(h->user), buf, len);
		} else {
			raw_put("users.db", h->user, strlen(h->user), &u, sizeof(u));
		}
	}
	raw_put("meta.db", "delta_link", 10, "https://graph/x?token=7", 23);
	raw_put("directory.db", "u1", 2, "{\"v\":1}", 7);
	raw_close();
}

static int
count_in(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Every number, user, range and count of the old inventory, as it was. */
static void
assert_old_inventory_survived(void)
{
	struct inv_range r;
	char buf[256];
	void *rec;
	size_t len;

	for (size_t i = 0; i < N_OLD; i++) {
		const struct old_holding *h = &old_holdings[i];
		struct inv_number n;
		struct inv_user u;

		ck_assert_int_eq(inv_get_number(inv, h->number, &n), INV_OK);
		ck_assert_str_eq(n.number, h->number);
		ck_assert_int_eq(n.state, h->state);
		ck_assert_int_eq(n.flags, h->flags);
		ck_assert_int_eq(n.since, h->since);
		ck_assert_int_eq(n.until, h->until);
		ck_assert_str_eq(n.user_id, h->user);
		ck_assert_str_eq(n.range, h->range);
		if (h->state != INV_PENDING && h->state != INV_ASSIGNED)
			continue;
		ck_assert_int_eq(inv_get_user(inv, h->user, &u), INV_OK);
		ck_assert_str_eq(u.number, h->number);
		ck_assert_int_eq(u.state, h->state);
		ck_assert_int_eq(u.since, h->since);
		ck_assert_str_eq(u.upn, old_upn(h->user));
	}
	r = range("a");
	ck_assert_uint_eq(r.index, 1);
	ck_assert_uint_eq(r.size, 200);
	ck_assert_uint_eq(r.count[INV_RESERVED], 2);
	ck_assert_uint_eq(r.count[INV_ASSIGNED], 1);
	ck_assert_uint_eq(r.count[INV_PENDING], 1);
	ck_assert_uint_eq(r.count[INV_QUARANTINED], 1);
	ck_assert_uint_eq(range("b").index, 2);
	ck_assert_uint_eq(range("b").count[INV_ASSIGNED], 1);
	ck_assert_uint_eq(range("x").index, 3);
	ck_assert_uint_eq(range("x").count[INV_PENDING], 1);
	r = range("gone");
	ck_assert_uint_eq(r.index, 4);
	ck_assert_str_eq(r.provider, "Gamma");
	ck_assert_str_eq(r.first, "+441236000000");
	ck_assert_uint_eq(r.removed, 1);
	ck_assert_uint_eq(r.count[INV_ASSIGNED], 1);
	ck_assert_int_eq(inv_meta_get(inv, "delta_link", buf, sizeof(buf)), INV_OK);
	ck_assert_str_eq(buf, "https://graph/x?token=7");
	ck_assert_int_eq(inv_dir_get(inv, "u1", &rec, &len), INV_OK);
	ck_assert_uint_eq(len, 7);
	free(rec);
	assert_consistent();
}

/* Converted: format 1's stored occupancy tree is gone. */
static void
assert_converted(void)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/occupancy.db", dir);
	ck_assert_int_ne(stat(path, &st), 0);
}

START_TEST(format1_inventory_is_converted_once)
{
	struct inv_number n;

	build_old_inventory(0);
	logged[0] = '\0';
	log_register(capture_log);
	open_with(ranges_abc);
	ck_assert_msg(count_in(logged, "converted the inventory in") == 1, "%s", logged);
	ck_assert_msg(strstr(logged, "9 numbers, 6 users, 4 ranges"), "%s", logged);
	assert_old_inventory_survived();
	assert_converted();
	/* the lowest free number after 0-3 and 7 */
	alloc_ok("a", "n1", "+441235000004");
	alloc_ok("b", "n2", "+441235001001");
	ck_assert_int_eq(inv_allocate(inv, "a", "u1", "u1", T0, &n), INV_E_USER_HAS);
	ck_assert_str_eq(n.number, "+441235000001");
	/* once: the next start finds format 2 */
	inv_close(inv);
	logged[0] = '\0';
	open_with(ranges_abc);
	ck_assert_msg(count_in(logged, "converted") == 0, "%s", logged);
	ck_assert_int_eq(inv_fail(inv, "+441235000004", "n1"), INV_OK);
	ck_assert_int_eq(inv_fail(inv, "+441235001001", "n2"), INV_OK);
	assert_old_inventory_survived();
	/* the quarantine carried over ends when it should */
	ck_assert_int_eq(inv_expire(inv, T0 + 10 * DAY - 1), 0);
	ck_assert_int_eq(inv_expire(inv, T0 + 10 * DAY), 1);
	ck_assert_uint_eq(range("a").count[INV_QUARANTINED], 0);
	alloc_ok("a", "n3", "+441235000003");
	assert_consistent();
	log_register(NULL);
}
END_TEST

/* Killed half way through the conversion: both formats are read, the next start goes on. */
START_TEST(format1_conversion_cut_short_goes_on)
{
	struct inventory *reader;

	build_old_inventory(1);
	/* a reader (numprovctl with numprovd stopped) reads the mix and converts nothing */
	ck_assert_int_eq(inv_open(dir, INV_OPEN_READONLY, &reader, err, sizeof(err)), INV_OK);
	inv = reader;
	assert_old_inventory_survived();
	inv_close(reader);
	inv = NULL;
	logged[0] = '\0';
	log_register(capture_log);
	open_with(ranges_abc);
	ck_assert_msg(count_in(logged, "converted the inventory in") == 1, "%s", logged);
	assert_old_inventory_survived();
	assert_converted();
	log_register(NULL);
}
END_TEST

START_TEST(later_record_format_is_refused)
{
	inv_close(inv);
	inv = NULL;
	raw_open();
	raw_put("meta.db", "inventory.record-format", 23, "3", 1);
	raw_close();
	ck_assert_int_eq(inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_E_DB);
	ck_assert_msg(strstr(err, "record format"), "%s", err);
	inv = NULL;
	ck_assert_int_eq(inv_open(dir, INV_OPEN_READONLY, &inv, err, sizeof(err)), INV_E_DB);
	inv = NULL;
}
END_TEST

/* Bytes on the disk are outside input: refused with the key named, never a crash. */
START_TEST(garbled_records_are_refused_by_key)
{
	static const unsigned char truncated[] = { 0x00, 0x02, INV_PENDING, 0 };
	static const unsigned char junk[] = { 'A', 'B', 'C', 'D', 'E' };
	static const unsigned char badversion[]
	    = { 0x00, 0x09, INV_ASSIGNED, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, '+', '1' };
	struct inv_number n;
	struct inv_user u;
	char report[4096];

	alloc_ok("a", "u1", "+441235000001");
	inv_close(inv);
	inv = NULL;
	raw_open();
	raw_put("numbers.db", "+441235000002", 13, truncated, sizeof(truncated));
	raw_put("numbers.db", "+441235000003", 13, junk, sizeof(junk));
	raw_put("users.db", "u9", 2, badversion, sizeof(badversion));
	raw_put("users.db", "u\x01x", 3, truncated, sizeof(truncated));
	raw_close();
	logged[0] = '\0';
	log_register(capture_log);
	open_with(ranges_abc);
	ck_assert_msg(
	    strstr(logged, "number record +441235000002 cannot be read: truncated"), "%s", logged);
	ck_assert_msg(strstr(logged, "number record +441235000003 cannot be read"), "%s", logged);
	ck_assert_int_eq(inv_get_number(inv, "+441235000002", &n), INV_E_DB);
	ck_assert_int_eq(inv_get_number(inv, "+441235000003", &n), INV_E_DB);
	ck_assert_int_eq(inv_get_user(inv, "u9", &u), INV_E_DB);
	ck_assert_msg(
	    strstr(logged, "user record u9 cannot be read: record format version"), "%s", logged);
	ck_assert_int_eq(inv_get_user(inv, "u\x01x", &u), INV_E_DB);
	ck_assert_msg(strstr(logged, "user record u\\x01x cannot be read"), "%s", logged);
	ck_assert_int_eq(inv_get_user(inv, "u1", &u), INV_OK);
	/* what cannot be read stays out of the pool, and inv_verify names it */
	alloc_ok("a", "u2", "+441235000004");
	ck_assert_int_ge(inv_verify(inv, report, sizeof(report)), 4);
	ck_assert_msg(strstr(report, "number record +441235000002"), "%s", report);
	ck_assert_msg(strstr(report, "user record u9"), "%s", report);
	log_register(NULL);
}
END_TEST

START_TEST(record_codec_round_trip_and_truncation)
{
	struct inv_number n, back;
	struct inv_user u, uback;
	struct inv_range r, rback;
	unsigned char buf[INV_REC_MAX];
	size_t len;

	log_register(capture_log); /* the refusals below are logged, not printed */
	memset(&n, 0, sizeof(n));
	strcpy(n.number, "+441235000042");
	n.state = INV_QUARANTINED;
	n.flags = INV_NF_CONFIG;
	n.since = -5;
	n.until = INT64_MAX;
	memset(n.user_id, 'i', sizeof(n.user_id) - 1);
	memset(n.range, 'r', sizeof(n.range) - 1);
	len = inv_encode_number(&n, buf, sizeof(buf));
	ck_assert_uint_gt(len, 0);
	ck_assert_uint_eq(inv_encode_number(&n, buf, len - 1), 0);
	len = inv_encode_number(&n, buf, sizeof(buf));
	ck_assert_int_eq(inv_decode_number(n.number, strlen(n.number), buf, len, &back), INV_OK);
	ck_assert_int_eq(memcmp(&n, &back, sizeof(n)), 0);
	for (size_t cut = 0; cut < len; cut++)
		ck_assert_int_eq(
		    inv_decode_number(n.number, strlen(n.number), buf, cut, &back), INV_E_DB);
	buf[len] = 0;
	ck_assert_int_eq(
	    inv_decode_number(n.number, strlen(n.number), buf, len + 1, &back), INV_E_DB);
	ck_assert_int_eq(inv_decode_number(n.number, 0, buf, len, &back), INV_E_DB);
	ck_assert_int_eq(inv_decode_number("+1\0002", 4, buf, len, &back), INV_E_DB);

	memset(&u, 0, sizeof(u));
	strcpy(u.id, "5f3e0000-1111-2222-3333-444455556666");
	memset(u.upn, 'p', sizeof(u.upn) - 1);
	strcpy(u.number, "+441235999000;ext=100");
	u.state = INV_ASSIGNED;
	u.since = T0;
	len = inv_encode_user(&u, buf, sizeof(buf));
	ck_assert_int_eq(inv_decode_user(u.id, strlen(u.id), buf, len, &uback), INV_OK);
	ck_assert_int_eq(memcmp(&u, &uback, sizeof(u)), 0);
	for (size_t cut = 0; cut < len; cut++)
		ck_assert_int_eq(inv_decode_user(u.id, strlen(u.id), buf, cut, &uback), INV_E_DB);
	buf[2] = INV_RESERVED; /* a user holds a pending or assigned number, nothing else */
	ck_assert_int_eq(inv_decode_user(u.id, strlen(u.id), buf, len, &uback), INV_E_DB);

	memset(&r, 0, sizeof(r));
	strcpy(r.name, "abingdon-office-1");
	r.index = 7;
	r.type = RT_OPERATOR_CONNECT;
	r.removed = 1;
	strcpy(r.provider, "Gamma");
	strcpy(r.first, "+441235000000");
	strcpy(r.last, "+441235000999");
	r.size = 1000;
	len = inv_encode_range(&r, buf, sizeof(buf));
	ck_assert_int_eq(inv_decode_range(r.name, strlen(r.name), buf, len, &rback), INV_OK);
	ck_assert_int_eq(memcmp(&r, &rback, sizeof(r)), 0);
	for (size_t cut = 0; cut < len; cut++)
		ck_assert_int_eq(
		    inv_decode_range(r.name, strlen(r.name), buf, cut, &rback), INV_E_DB);
	log_register(NULL);
}
END_TEST

/* Counts and the tree live in memory: an aborted transaction leaves them as the records. */
START_TEST(aborted_transactions_leave_memory_as_the_records)
{
	struct inv_number n;

	alloc_ok("b", "u1", "+441235001000");
	alloc_ok("b", "u2", "+441235001001");
	ck_assert_int_eq(inv_release(inv, "u1", 1, T0, NULL), INV_OK);
	/* the quarantine has ended: allocation would take it back, but the user has a number */
	ck_assert_int_eq(inv_allocate(inv, "b", "u2", "u2", T0 + 2 * DAY, &n), INV_E_USER_HAS);
	ck_assert_uint_eq(range("b").count[INV_QUARANTINED], 1);
	assert_consistent();
	/* a peek takes it back too, and throws it all away */
	ck_assert_int_eq(inv_peek(inv, "b", T0 + 2 * DAY, &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235001000");
	ck_assert_uint_eq(range("b").count[INV_QUARANTINED], 1);
	assert_consistent();
	alloc_ok("b", "u3", "+441235001002");
	ck_assert_int_eq(inv_allocate(inv, "b", "u4", "u4", T0 + 2 * DAY, &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235001000");
	ck_assert_uint_eq(range("b").count[INV_QUARANTINED], 0);
	ck_assert_uint_eq(range("b").count[INV_PENDING], 3);
	assert_consistent();
}
END_TEST

/* ---- memory and records must never disagree unnoticed -------------------- */

/*
 * A change made behind the inventory's back, through another handle on the
 * running environment (as a second process would): put (len > 0) or delete.
 */
static void
joined_write(const char *file, const char *k, const void *d, size_t len)
{
	DB_ENV *env;
	DB *db;
	DBT key, data;

	ck_assert_int_eq(db_env_create(&env, 0), 0);
	ck_assert_int_eq(
	    env->open(env, dir, DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL, 0), 0);
	ck_assert_int_eq(db_create(&db, env, 0), 0);
	ck_assert_int_eq(db->open(db, NULL, file, NULL, DB_BTREE, DB_AUTO_COMMIT, 0), 0);
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	key.data = (void *)k;
	key.size = (u_int32_t)strlen(k);
	data.data = (void *)d;
	data.size = (u_int32_t)len;
	ck_assert_int_eq(len ? db->put(db, NULL, &key, &data, 0) : db->del(db, NULL, &key, 0), 0);
	db->close(db, 0);
	env->close(env, 0);
}

/* A stored range whose bounds are no numbers: the range list cannot be loaded. */
static void
put_unloadable_range(void)
{
	struct inv_range r;
	unsigned char buf[INV_REC_MAX];
	size_t len;

	memset(&r, 0, sizeof(r));
	strcpy(r.name, "zz-unloadable");
	r.index = 99;
	strcpy(r.first, "not-a-number");
	strcpy(r.last, "not-a-number");
	r.size = 1;
	len = inv_encode_range(&r, buf, sizeof(buf));
	ck_assert_uint_gt(len, 0);
	joined_write("ranges.db", r.name, buf, len);
}

static int breaks_reload;

/* Once the new bounds are stored: memory cannot be rebuilt from the records. */
static void
break_reload(int prio, const char *token, const char *msg)
{
	capture_log(prio, token, msg);
	if (breaks_reload && strstr(msg, "recounting numbers in use")) {
		breaks_reload = 0;
		put_unloadable_range();
	}
}

/*
 * New range bounds are stored but the trees cannot be built (in numprovd: out of
 * memory, the SIGHUP reload refused, the daemon running on): no change may act
 * on trees of the old bounds or of none, where every number looks free and
 * another user's would be handed out. Every change is refused until memory can
 * be built again; then all is as the records say.
 */
START_TEST(failed_reload_refuses_changes_until_rebuilt)
{
	struct config *c;
	struct inv_number n;
	struct inv_user u;

	alloc_ok("a", "u0", "+441235000001");
	alloc_ok("a", "u1", "+441235000002");
	ck_assert_int_eq(inv_release(inv, "u1", 30, T0, NULL), INV_OK);
	alloc_ok("b", "u2", "+441235001000");
	logged[0] = '\0';
	log_register(break_reload);
	breaks_reload = 1;
	c = config_with(DR("a", "+441235000000", "+441235000198",
	    "reserved = [ \"+441235000000\" ];") ",\n" DR("b", "+441235001000", "+441235001063",
	    "") ",\n" DR("x", "+441235999000;ext=100", "+441235999000;ext=199", ""));
	ck_assert_int_eq(inv_sync_ranges(inv, c, T0), INV_E_DB);
	/* every change is refused, in every range; nothing is written */
	ck_assert_int_eq(inv_allocate(inv, "a", "newcomer", "newcomer", T0, &n), INV_E_DB);
	ck_assert_msg(strstr(logged, "changes are refused"), "%s", logged);
	ck_assert_int_eq(inv_allocate(inv, "b", "newcomer", "newcomer", T0, &n), INV_E_DB);
	ck_assert_int_eq(inv_claim(inv, "+441235000005", "newcomer", "n", T0), INV_E_DB);
	ck_assert_int_eq(inv_reserve(inv, "+441235000006", T0), INV_E_DB);
	ck_assert_int_eq(inv_release(inv, "u0", 0, T0, NULL), INV_E_DB);
	ck_assert_int_eq(inv_expire(inv, T0 + 31 * DAY), -1);
	ck_assert_int_eq(inv_get_user(inv, "newcomer", &u), INV_E_NOTFOUND);
	ck_assert_int_eq(inv_get_number(inv, "+441235000001", &n), INV_OK);
	ck_assert_str_eq(n.user_id, "u0");
	ck_assert_int_eq(inv_get_number(inv, "+441235000006", &n), INV_OK);
	ck_assert_int_eq(n.state, INV_AVAILABLE);
	/* said once, not at every refusal */
	ck_assert_int_eq(count_in(logged, "cannot be rebuilt"), 1);
	/* what stopped it goes: memory is built again, the reload goes through */
	joined_write("ranges.db", "zz-unloadable", NULL, 0);
	alloc_ok("a", "newcomer", "+441235000003");
	ck_assert_msg(strstr(logged, "changes are accepted again"), "%s", logged);
	ck_assert_int_eq(inv_sync_ranges(inv, c, T0), INV_OK);
	config_free(c);
	ck_assert_uint_eq(range("a").size, 199);
	ck_assert_uint_eq(range("a").count[INV_PENDING], 2);
	ck_assert_uint_eq(range("a").count[INV_QUARANTINED], 1);
	ck_assert_uint_eq(range("b").count[INV_PENDING], 1);
	alloc_ok("a", "u3", "+441235000004");
	assert_consistent();
	log_register(NULL);
}
END_TEST

/*
 * A number memory has as available but which has a record (memory wrong, however
 * that came about) is never written over: the change is refused and memory is
 * built again from the records, after which the next free number is given.
 */
START_TEST(a_record_is_never_written_over_as_new)
{
	struct inv_number n, ghost;
	struct inv_user gu;
	unsigned char buf[INV_REC_MAX];
	size_t len;

	alloc_ok("a", "u1", "+441235000001");
	memset(&ghost, 0, sizeof(ghost));
	strcpy(ghost.number, "+441235000002");
	ghost.state = INV_PENDING;
	ghost.since = T0;
	strcpy(ghost.user_id, "ghost");
	strcpy(ghost.range, "a");
	len = inv_encode_number(&ghost, buf, sizeof(buf));
	joined_write("numbers.db", ghost.number, buf, len);
	memset(&gu, 0, sizeof(gu));
	strcpy(gu.id, "ghost");
	strcpy(gu.upn, "ghost");
	strcpy(gu.number, ghost.number);
	gu.state = INV_PENDING;
	gu.since = T0;
	len = inv_encode_user(&gu, buf, sizeof(buf));
	joined_write("users.db", gu.id, buf, len);

	logged[0] = '\0';
	log_register(capture_log);
	ck_assert_int_eq(inv_allocate(inv, "a", "u2", "u2", T0, &n), INV_E_DB);
	ck_assert_msg(strstr(logged, "+441235000002 already has a record"), "%s", logged);
	ck_assert_int_eq(inv_get_number(inv, "+441235000002", &n), INV_OK);
	ck_assert_str_eq(n.user_id, "ghost");
	ck_assert_int_eq(inv_get_user(inv, "u2", &gu), INV_E_NOTFOUND);
	/* memory is built again: the record is seen, the next number given */
	alloc_ok("a", "u2", "+441235000003");
	ck_assert_uint_eq(range("a").count[INV_PENDING], 3);
	assert_consistent();
	log_register(NULL);
}
END_TEST

#define SPLIT_BEFORE DR("big", "+441236000000", "+441236000099", "")
#define SPLIT_AFTER                                                                                \
	DR("big", "+441236000000", "+441236000049", "")                                            \
	",\n" DR("big2", "+441236000050", "+441236000099", "")

static void
die_at_recount(int prio, const char *token, const char *msg)
{
	(void)prio;
	(void)token;
	if (strstr(msg, "recounting numbers in use"))
		_exit(42); /* the new bounds are stored, the records not relabelled */
}

/*
 * Killed between inv_sync_ranges' two transactions (new bounds stored, the
 * records still labelled by the old ones): the next start relabels them, though
 * the stored bounds now equal the config's. Counts are right, inv_verify finds
 * nothing, and the numbers can be failed and released.
 */
START_TEST(crash_between_bounds_and_relabel_is_mended)
{
	struct config *c;
	struct inv_number n;
	struct inventory *reader;
	char user[16];
	pid_t pid;
	int status;

	inv_close(inv);
	inv = NULL;
	open_with(SPLIT_BEFORE);
	for (int i = 0; i < 70; i++) {
		snprintf(user, sizeof(user), "u%02d", i);
		ck_assert_int_eq(inv_allocate(inv, "big", user, user, T0, &n), INV_OK);
	}
	inv_close(inv);
	inv = NULL;
	c = config_with(SPLIT_AFTER);
	if ((pid = fork()) == 0) {
		if (inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)) != INV_OK)
			_exit(2);
		log_register(die_at_recount);
		(void)!inv_sync_ranges(inv, c, T0);
		_exit(3); /* never got to the relabelling */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42, "status %#x", status);

	/* a reader with numprovd stopped counts what is stored, and changes nothing */
	ck_assert_int_eq(inv_open(dir, INV_OPEN_READONLY, &reader, err, sizeof(err)), INV_OK);
	inv_close(reader);

	logged[0] = '\0';
	log_register(capture_log);
	ck_assert_int_eq(inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_OK);
	assert_consistent();
	ck_assert_msg(strstr(logged, "20 number records relabelled"), "%s", logged);
	ck_assert_int_eq(inv_sync_ranges(inv, c, T0), INV_OK);
	config_free(c);
	ck_assert_uint_eq(range("big").count[INV_PENDING], 50);
	ck_assert_uint_eq(range("big2").count[INV_PENDING], 20);
	ck_assert_int_eq(inv_get_number(inv, "+441236000060", &n), INV_OK);
	ck_assert_str_eq(n.range, "big2");
	ck_assert_int_eq(inv_fail(inv, "+441236000060", "u60"), INV_OK);
	ck_assert_int_eq(inv_release(inv, "u61", 0, T0, NULL), INV_OK);
	ck_assert_int_eq(inv_release(inv, "u62", 3, T0, NULL), INV_OK);
	ck_assert_uint_eq(range("big2").count[INV_PENDING], 17);
	ck_assert_uint_eq(range("big2").count[INV_QUARANTINED], 1);
	alloc_ok("big2", "v1", "+441236000060");
	assert_consistent();
	/* and once only */
	inv_close(inv);
	logged[0] = '\0';
	ck_assert_int_eq(inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_OK);
	ck_assert_msg(!strstr(logged, "relabelled"), "%s", logged);
	assert_consistent();
	log_register(NULL);
}
END_TEST

/* A reader beside numprovd (joined) counts in one read transaction: as the owner does. */
START_TEST(joined_reader_counts_as_the_owner)
{
	struct inventory *reader;
	struct inv_range r;
	char report[4096];

	alloc_ok("a", "u1", "+441235000001");
	alloc_ok("a", "u2", "+441235000002");
	ck_assert_int_eq(inv_confirm(inv, "+441235000001", "u1", T0), INV_OK);
	ck_assert_int_eq(inv_release(inv, "u2", 5, T0, NULL), INV_OK);
	ck_assert_int_eq(inv_open(dir, INV_OPEN_READONLY, &reader, err, sizeof(err)), INV_OK);
	ck_assert_int_eq(inv_get_range(reader, "a", &r), INV_OK);
	ck_assert_uint_eq(r.count[INV_ASSIGNED], 1);
	ck_assert_uint_eq(r.count[INV_QUARANTINED], 1);
	ck_assert_uint_eq(r.count[INV_RESERVED], 1);
	ck_assert_int_eq(inv_verify(reader, report, sizeof(report)), 0);
	inv_close(reader);
	/* the owner goes on writing: the reader's locks are gone with its transaction */
	alloc_ok("a", "u3", "+441235000003");
	assert_consistent();
}
END_TEST

static Suite *
inventory_suite(void)
{
	Suite *s = suite_create("inventory");
	TCase *tc = tcase_create("inventory");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, allocates_lowest_free_skipping_reserved);
	tcase_add_test(tc, pending_confirm_assigned);
	tcase_add_test(tc, user_never_gets_two_numbers);
	tcase_add_test(tc, fail_gives_number_back);
	tcase_add_test(tc, fail_reserve_keeps_a_number_held_elsewhere_out_of_the_pool);
	tcase_add_test(tc, release_without_quarantine_frees_at_once);
	tcase_add_test(tc, quarantine_holds_then_returns);
	tcase_add_test(tc, allocation_reclaims_ended_quarantine);
	tcase_add_test(tc, lowest_gap_is_found);
	tcase_add_test(tc, extension_range_numbers);
	tcase_add_test(tc, reserve_rules);
	tcase_add_test(tc, config_reservations_follow_the_file);
	tcase_add_test(tc, adopt_number_already_in_teams);
	tcase_add_test(tc, state_survives_reopen);
	tcase_add_test(tc, second_instance_refused);
	tcase_add_test(tc, range_indexes_are_stable);
	tcase_add_test(tc, reload_keeps_counts);
	tcase_add_test(tc, removed_range_keeps_numbers);
	tcase_add_test(tc, changed_bounds_recount);
	tcase_add_test(tc, big_range_stores_only_what_is_used);
	tcase_add_loop_test(tc, fills_every_size_exactly, 0, 7);
	tcase_add_test(tc, peek_after_gives_the_next_free_numbers);
	tcase_add_test(tc, format1_inventory_is_converted_once);
	tcase_add_test(tc, format1_conversion_cut_short_goes_on);
	tcase_add_test(tc, later_record_format_is_refused);
	tcase_add_test(tc, garbled_records_are_refused_by_key);
	tcase_add_test(tc, record_codec_round_trip_and_truncation);
	tcase_add_test(tc, aborted_transactions_leave_memory_as_the_records);
	tcase_add_test(tc, failed_reload_refuses_changes_until_rebuilt);
	tcase_add_test(tc, a_record_is_never_written_over_as_new);
	tcase_add_test(tc, crash_between_bounds_and_relabel_is_mended);
	tcase_add_test(tc, joined_reader_counts_as_the_owner);
	tcase_add_test(tc, region_files_are_allocated);
	tcase_add_exit_test(tc, panic_goes_to_the_handler, 0);
	tcase_add_test(tc, panic_exits_and_the_next_start_recovers);
	suite_add_tcase(s, tc);

	/* its own namespace and tmpfs: no fixture */
	tc = tcase_create("disk-full");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, disk_full_is_an_error_not_a_crash);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(inventory_suite)
