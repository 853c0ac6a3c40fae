/*
 * Crash safety of the inventory, with real process kills.
 *
 * A worker process runs an endless loop of allocations, confirmations,
 * failures, releases (with and without quarantine) and reservations. Before
 * each operation it appends "B ..." to a journal, after the commit "D ...".
 * The driver kills it with SIGKILL at a random moment, reopens the database
 * with recovery and checks: every invariant (inv_verify: no number on two
 * users, no user with two numbers, per-range counts equal a full scan,
 * occupancy bits equal the records), and that every operation the journal
 * saw committed is in the database (the one in flight may or may not be).
 *
 * Odd iterations run the worker with durable commits (the default), even ones
 * with commits that do not wait for the disk: both must survive a process kill.
 * One kill in eight comes at once, possibly during recovery itself.
 *
 * usage: crash_inventory [ITERATIONS]            (driver, default 60)
 *        crash_inventory --worker DIR durable|nosync  (what the driver kills)
 */
#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "inventory.h"
#include "log.h"

#define USERS 300
#define T0 1800000000L

static const char conf_text[]
    = "tenant: { id = \"t\"; client_id = \"11111111-2222-3333-4444-555555555555\";\n"
      "  client_secret_file = \"/s\"; };\n"
      "database: { path = \"%s/db\"; };\n"
      "ranges = (\n"
      "  { name = \"small\"; type = \"direct-routing\"; first = \"+441235000000\";\n"
      "    last = \"+441235000199\"; reserved = [ \"+441235000000\" ]; },\n"
      "  { name = \"ext\"; type = \"direct-routing\"; first = \"+441235999000;ext=100\";\n"
      "    last = \"+441235999000;ext=164\"; }\n"
      ");\n";

static struct config *
load_config(const char *dir)
{
	char path[512], err[4096];
	struct config *c;
	FILE *f;

	snprintf(path, sizeof(path), "%s/numprovd.conf", dir);
	if (access(path, F_OK) != 0) {
		f = fopen(path, "w");
		if (!f)
			return NULL;
		fprintf(f, conf_text, dir);
		fclose(f);
	}
	c = config_load(path, err, sizeof(err));
	if (!c)
		fprintf(stderr, "%s\n", err);
	return c;
}

static void journal(int fd, const char *fmt, ...) NP_PRINTF(2, 3);

static void
journal(int fd, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (write(fd, line, (size_t)n) != n)
		_exit(3);
}

/* Operations so far, and the user of an operation cut off by the kill (-1: none). */
static long
count_ops(const char *path, int *dangling)
{
	FILE *f = fopen(path, "r");
	char line[256];
	long n = 0;

	*dangling = -1;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == 'B' && sscanf(line, "B %*s u%d", dangling) == 1)
			n++;
		else if (line[0] == 'D')
			*dangling = -1;
	}
	fclose(f);
	return n;
}

/* The database, now recovered, says how the cut-off operation ended. */
static void
resolve(struct inventory *inv, int fd, int dangling)
{
	char user[16];
	struct inv_user u;

	if (dangling < 0)
		return;
	snprintf(user, sizeof(user), "u%d", dangling);
	if (inv_get_user(inv, user, &u) == INV_OK)
		journal(fd, "D %s %s %d\n", user, u.number, u.state);
	else
		journal(fd, "D %s - 0\n", user);
}

/* One step for user u, chosen from the user's state in the database. */
static void
step(struct inventory *inv, int fd, unsigned *seed, time_t now)
{
	char user[16], number[E164_STRLEN] = "";
	struct inv_user u;
	struct inv_number n;
	int r = rand_r(seed) % 100, rc;

	snprintf(user, sizeof(user), "u%d", rand_r(seed) % USERS);
	if (inv_get_user(inv, user, &u) != INV_OK) {
		const char *range = r < 80 ? "small" : "ext";
		journal(fd, "B alloc %s\n", user);
		rc = inv_allocate(inv, range, user, user, now, &n);
		journal(fd, "D %s %s %d\n", user, rc == INV_OK ? n.number : "-",
		    rc == INV_OK ? INV_PENDING : 0);
	} else if (u.state == INV_PENDING && r < 70) {
		journal(fd, "B confirm %s\n", user);
		rc = inv_confirm(inv, u.number, user, now);
		journal(
		    fd, "D %s %s %d\n", user, u.number, rc == INV_OK ? INV_ASSIGNED : INV_PENDING);
	} else if (u.state == INV_PENDING) {
		journal(fd, "B fail %s\n", user);
		rc = inv_fail(inv, u.number, user);
		journal(fd, "D %s %s %d\n", user, rc == INV_OK ? "-" : u.number,
		    rc == INV_OK ? 0 : INV_PENDING);
	} else {
		journal(fd, "B release %s\n", user);
		rc = inv_release(inv, user, r < 50 ? 0 : 1, now, NULL);
		journal(fd, "D %s %s %d\n", user, rc == INV_OK ? "-" : u.number,
		    rc == INV_OK ? 0 : INV_ASSIGNED);
	}
	if (rand_r(seed) % 20 == 0) { /* an administrator at work */
		snprintf(number, sizeof(number), "+441235000%03d", 100 + rand_r(seed) % 100);
		/* refused when the number is taken or not reserved: both are fine here */
		if (rand_r(seed) % 2)
			rc = inv_reserve(inv, number, now);
		else
			rc = inv_unreserve(inv, number);
		if (rc != INV_OK && rc != INV_E_TAKEN && rc != INV_E_STATE && rc != INV_E_CONFIG)
			journal(fd, "E reserve %s %d\n", number, rc);
	}
}

static int
worker(const char *dir, int flags)
{
	char path[512], err[4096];
	struct config *cfg = load_config(dir);
	struct inventory *inv;
	unsigned seed = (unsigned)getpid();
	long ops;
	int fd, dangling;

	if (!cfg)
		return 2;
	snprintf(path, sizeof(path), "%s/journal", dir);
	ops = count_ops(path, &dangling);
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600)) < 0)
		return 2;
	if (inv_open(cfg->database.path, flags, &inv, err, sizeof(err)) != INV_OK
	    || inv_sync_ranges(inv, cfg, T0) != INV_OK) {
		fprintf(stderr, "worker: %s\n", err);
		return 2;
	}
	resolve(inv, fd, dangling);
	journal(fd, "R\n"); /* ready: recovery is over, operations follow */
	for (;;)
		step(inv, fd, &seed, (time_t)(T0 + 1800 * ops++));
}

/* ---- the driver --------------------------------------------------------- */

struct model {
	char number[USERS][E164_STRLEN];
	int state[USERS];
};

/* Replay the journal: the committed state of every user, and the one in flight. */
static long
replay(const char *path, struct model *m, int *inflight)
{
	FILE *f = fopen(path, "r");
	char line[256], user[32], number[E164_STRLEN];
	long ops = 0;
	int state;

	memset(m, 0, sizeof(*m));
	*inflight = -1;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (line[0] == 'B' && sscanf(line, "B %*s u%d", inflight) == 1)
			ops++;
		else if (line[0] == 'D'
		    && sscanf(line, "D %31s %31s %d", user, number, &state) == 3) {
			int u = atoi(user + 1);
			snprintf(m->number[u], E164_STRLEN, "%s", number[0] == '-' ? "" : number);
			m->state[u] = state;
			*inflight = -1;
		}
	}
	fclose(f);
	return ops;
}

static int
check_committed(struct inventory *inv, const struct model *m, int inflight, char *why, size_t len)
{
	for (int i = 0; i < USERS; i++) {
		char user[16];
		struct inv_user u;
		int has;

		if (i == inflight)
			continue;
		snprintf(user, sizeof(user), "u%d", i);
		has = inv_get_user(inv, user, &u) == INV_OK;
		if (!has && !m->number[i][0])
			continue;
		if (has != !!m->number[i][0] || strcmp(u.number, m->number[i]) != 0
		    || u.state != m->state[i]) {
			snprintf(why, len, "%s: journal says %s/%s, database %s/%s", user,
			    m->number[i][0] ? m->number[i] : "none", inv_state_name(m->state[i]),
			    has ? u.number : "none", has ? inv_state_name(u.state) : "-");
			return 1;
		}
	}
	return 0;
}

static off_t
file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : 0;
}

/* Start a worker, let it commit for a random while, kill it. */
static int
crash_once(const char *self, const char *dir, unsigned *seed, int durable)
{
	char jpath[512];
	off_t start;
	pid_t pid;
	int status;
	struct timespec ts = { 0, 0 };

	snprintf(jpath, sizeof(jpath), "%s/journal", dir);
	start = file_size(jpath);
	if ((pid = fork()) == 0) {
		execl(self, self, "--worker", dir, durable ? "durable" : "nosync", (char *)NULL);
		_exit(127);
	}
	/* mostly: wait until it is past recovery and working, then a random moment more */
	int settle = rand_r(seed) % 8 != 0;

	for (int i = 0; settle && i < 2000 && file_size(jpath) < start + 64; i++) {
		struct timespec tick = { 0, 5000000 };
		nanosleep(&tick, NULL);
	}
	ts.tv_nsec = (long)(rand_r(seed) % 150) * 1000000L;
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : -1;
}

static int
check_after_crash(const char *dir, int iter, long *ops_out)
{
	char jpath[512], err[4096], report[4096], why[512] = "";
	struct config *cfg = load_config(dir);
	struct inventory *inv;
	struct model m;
	int inflight, problems, lost;
	long ops;

	snprintf(jpath, sizeof(jpath), "%s/journal", dir);
	ops = replay(jpath, &m, &inflight);
	if (!cfg || inv_open(cfg->database.path, 0, &inv, err, sizeof(err)) != INV_OK) {
		printf("not ok %d - reopen with recovery: %s\n", iter, err);
		config_free(cfg);
		return 1;
	}
	problems = inv_verify(inv, report, sizeof(report));
	lost = check_committed(inv, &m, inflight, why, sizeof(why));
	inv_close(inv);
	config_free(cfg);
	*ops_out = ops;
	if (problems || lost) {
		printf("not ok %d - after %ld operations: %s%s\n", iter, ops, report, why);
		return 1;
	}
	printf("ok %d - killed after %ld operations in all; recovered, consistent, nothing lost\n",
	    iter, ops);
	return 0;
}

int
main(int argc, char **argv)
{
	char dir[] = "/tmp/numprov-crash-XXXXXX", cmd[128];
	int iters = 60, failed = 0;
	unsigned seed = (unsigned)time(NULL);
	long ops = 0;

	if (argc == 4 && strcmp(argv[1], "--worker") == 0)
		return worker(argv[2], strcmp(argv[3], "nosync") == 0 ? INV_OPEN_NOSYNC : 0);
	if (argc == 2)
		iters = atoi(argv[1]);
	if (!mkdtemp(dir))
		return 2;
	log_init("crash_inventory", LOG_USER, LOG_WARNING, LOG_DEST_STDERR);
	printf("1..%d\n# seed %u, directory %s\n", iters, seed, dir);
	for (int i = 1; i <= iters; i++) {
		if (crash_once(argv[0], dir, &seed, i % 2) < 0) {
			printf("not ok %d - the worker did not die by SIGKILL\n", i);
			failed++;
			continue;
		}
		failed += check_after_crash(dir, i, &ops);
	}
	printf("# %d kills, %ld operations, %d failed\n", iters, ops, failed);
	if (failed == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd) != 0)
			return 1;
	}
	return failed ? 1 : 0;
}
