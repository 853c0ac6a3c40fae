/*
 * Inventory benchmark (not a test): run with `make bench` or ./bench/inventory [DIR].
 *
 * 1. Raw Berkeley DB: put + commit of a 128-byte record, one transaction each,
 *    in an environment opened like the inventory's: the base of the ratios.
 * 2. inv_allocate (lowest free number + pending record + user record, one
 *    transaction) on a 1,000,000-number range at 0 %, 50 % and 99.9 % full.
 * 3. Database size on disk after 100,000 assignments spread at random over
 *    four 1,000,000-number ranges, and the time inv_open then takes (it builds
 *    the ranges' counts and occupancy trees from the number records).
 *
 * Both commit modes are measured: "nosync" (the log is written to the OS at
 * commit, which survives a process crash) and "durable" (the log is also
 * fsync'd, the default, which survives power loss).
 */
#include "build-config.h"

#include <db.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "inventory.h"
#include "log.h"

#define SAMPLES 1000
#define T0 1800000000L

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static void
rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* Median microseconds of one raw put + commit. */
static double
raw_put_commit(const char *dir, int durable, int n)
{
	DB_ENV *env;
	DB *db;
	double *t = calloc((size_t)n, sizeof(double));
	char rec[128];

	memset(rec, 'x', sizeof(rec));
	mkdir(dir, 0700);
	db_env_create(&env, 0);
	env->set_cachesize(env, 0, 32 * 1024 * 1024, 1);
	if (!durable)
		env->set_flags(env, DB_TXN_WRITE_NOSYNC, 1);
	env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1);
	if (env->open(env, dir,
		DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL | DB_RECOVER,
		0600)
	    != 0) {
		fprintf(stderr, "cannot open %s\n", dir);
		exit(1);
	}
	db_create(&db, env, 0);
	db->open(db, NULL, "raw.db", NULL, DB_BTREE, DB_CREATE | DB_AUTO_COMMIT, 0600);
	for (int i = 0; i < n; i++) {
		char key[32];
		DBT k, d;
		DB_TXN *txn;
		double t0 = now_us();

		snprintf(key, sizeof(key), "+44123%07d", i);
		memset(&k, 0, sizeof(k));
		memset(&d, 0, sizeof(d));
		k.data = key;
		k.size = (u_int32_t)strlen(key);
		d.data = rec;
		d.size = sizeof(rec);
		env->txn_begin(env, NULL, &txn, 0);
		db->put(db, txn, &k, &d, 0);
		txn->commit(txn, 0);
		t[i] = now_us() - t0;
	}
	db->close(db, 0);
	env->close(env, 0);
	double m = median(t, n);
	free(t);
	rm_rf(dir);
	return m;
}

static struct config *
bench_config(const char *dir, const char *ranges)
{
	char path[512], err[4096];
	struct config *c;
	FILE *f;

	snprintf(path, sizeof(path), "%s.conf", dir);
	f = fopen(path, "w");
	fprintf(f,
	    "tenant: { id = \"t\"; client_id = \"11111111-2222-3333-4444-555555555555\";\n"
	    "  client_secret_file = \"/s\"; };\n"
	    "database: { path = \"%s\"; };\nranges = (\n%s\n);\n",
	    dir, ranges);
	fclose(f);
	c = config_load(path, err, sizeof(err));
	unlink(path);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return c;
}

static struct inventory *
bench_open(const char *dir, const char *ranges, int durable)
{
	struct config *c = bench_config(dir, ranges);
	struct inventory *inv;
	char err[4096];

	if (inv_open(dir, durable ? 0 : INV_OPEN_NOSYNC, &inv, err, sizeof(err)) != INV_OK
	    || inv_sync_ranges(inv, c, T0) != INV_OK) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	config_free(c);
	return inv;
}

static long next_user;

/* Allocate n numbers; with t, record each one's microseconds. */
static void
allocate_n(struct inventory *inv, long n, double *t)
{
	for (long i = 0; i < n; i++) {
		char user[24];
		double t0 = now_us();
		int rc;

		snprintf(user, sizeof(user), "user-%08ld", next_user++);
		rc = inv_allocate(inv, "big", user, user, T0, NULL);
		if (t)
			t[i] = now_us() - t0;
		if (rc != INV_OK) {
			fprintf(stderr, "allocate: %s\n", inv_strerror(rc));
			exit(1);
		}
		if (next_user % 50000 == 0)
			inv_checkpoint(inv);
	}
}

static const char big_range[]
    = "{ name = \"big\"; type = \"direct-routing\"; first = \"+441230000000\";"
      " last = \"+441230999999\"; }";

/* Median microseconds per allocation at 0, 50 and 99.9 % of a 1,000,000-number range. */
static void
allocation_by_fill(const char *dir, int durable, int samples, double out[3])
{
	static const long fill_to[3] = { 0, 500000, 998500 };
	struct inventory *inv = bench_open(dir, big_range, durable);
	double *t = calloc((size_t)samples, sizeof(double));
	long used = 0;

	next_user = 0;
	for (int i = 0; i < 3; i++) {
		allocate_n(inv, fill_to[i] - used, NULL);
		allocate_n(inv, samples, t);
		used = fill_to[i] + samples;
		out[i] = median(t, samples);
	}
	free(t);
	inv_close(inv);
	rm_rf(dir);
}

static long long
db_files_size(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long long total = 0;

	while (d && (e = readdir(d))) {
		char path[1024];
		struct stat st;
		size_t len = strlen(e->d_name);

		if (len < 3 || strcmp(e->d_name + len - 3, ".db") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) == 0)
			total += (long long)st.st_blocks * 512;
	}
	if (d)
		closedir(d);
	return total;
}

/* 100,000 assignments at random places in four 1,000,000-number ranges. */
static void
size_after_assignments(const char *dir)
{
	static const char ranges[] = "{ name = \"r0\"; type = \"direct-routing\"; first = "
				     "\"+441230000000\"; last = \"+441230999999\"; },\n"
				     "{ name = \"r1\"; type = \"direct-routing\"; first = "
				     "\"+441231000000\"; last = \"+441231999999\"; },\n"
				     "{ name = \"r2\"; type = \"direct-routing\"; first = "
				     "\"+441232000000\"; last = \"+441232999999\"; },\n"
				     "{ name = \"r3\"; type = \"direct-routing\"; first = "
				     "\"+441233000000\"; last = \"+441233999999\"; }";
	struct inventory *inv = bench_open(dir, ranges, 0);
	unsigned seed = 42;
	long long empty;
	int done = 0;

	inv_checkpoint(inv);
	empty = db_files_size(dir);
	while (done < 100000) {
		char number[32], user[24];
		long r = (long)(rand_r(&seed) % 4000000);

		snprintf(number, sizeof(number), "+44123%07ld", r);
		snprintf(user, sizeof(user), "user-%08d", done);
		if (inv_adopt(inv, number, user, user, T0) == INV_OK)
			done++;
		if (done % 50000 == 0)
			inv_checkpoint(inv);
	}
	inv_checkpoint(inv);
	long long full = db_files_size(dir);
	char report[256], err[4096];
	int problems = inv_verify(inv, report, sizeof(report));
	inv_close(inv);
	/* what a start costs: counts and occupancy trees are built from the records */
	double t0 = now_us();
	if (inv_open(dir, INV_OPEN_NOSYNC, &inv, err, sizeof(err)) != INV_OK) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	double open_ms = (now_us() - t0) / 1000.0;
	inv_close(inv);
	rm_rf(dir);
	printf("database files (*.db) with 4 empty 1,000,000-number ranges: %lld bytes\n", empty);
	printf("database files after 100,000 assignments at random:        %lld bytes "
	       "(%.0f bytes per assignment; %s)\n",
	    full, (double)(full - empty) / 100000.0,
	    problems == 0 ? "verified consistent" : report);
	printf(
	    "inv_open of those 100,000 assignments (recovery, counts, trees): %.0f ms\n", open_ms);
}

int
main(int argc, char **argv)
{
	char dir[512];
	double alloc[3], raw;
	int durable_samples = 200;

	snprintf(
	    dir, sizeof(dir), "%s/numprov-bench-%ld", argc > 1 ? argv[1] : "/tmp", (long)getpid());
	log_init("bench", LOG_USER, LOG_WARNING, LOG_DEST_STDERR);
	printf("numprov inventory benchmark (median of %d samples each)\n\n", SAMPLES);

	raw = raw_put_commit(dir, 0, SAMPLES * 10);
	allocation_by_fill(dir, 0, SAMPLES, alloc);
	printf("commit mode nosync (log written at commit, not fsync'd):\n");
	printf("  raw Berkeley DB put+commit:            %8.1f us\n", raw);
	for (int i = 0; i < 3; i++)
		printf("  inv_allocate at %5s full:            %8.1f us  (%.1f x raw)\n",
		    i == 0	 ? "0 %"
			: i == 1 ? "50 %"
				 : "99.9 %",
		    alloc[i], alloc[i] / raw);

	raw = raw_put_commit(dir, 1, durable_samples);
	printf(
	    "\ncommit mode durable (fsync at commit, the default), %d samples:\n", durable_samples);
	printf("  raw Berkeley DB put+commit:            %8.1f us\n", raw);
	{
		struct inventory *inv = bench_open(dir, big_range, 1);
		double *t = calloc((size_t)durable_samples, sizeof(double));
		next_user = 0;
		allocate_n(inv, durable_samples, t);
		double m = median(t, durable_samples);
		printf("  inv_allocate at   0 %% full:            %8.1f us  (%.1f x raw)\n", m,
		    m / raw);
		free(t);
		inv_close(inv);
		rm_rf(dir);
	}
	printf("\n");
	size_after_assignments(dir);
	return 0;
}
