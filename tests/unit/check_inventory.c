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
	snprintf(path, sizeof(path), "%s/occupancy.db", dir);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_le(st.st_size, 16384);
	snprintf(path, sizeof(path), "%s/numbers.db", dir);
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
