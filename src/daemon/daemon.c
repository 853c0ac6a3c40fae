#include "build-config.h"

#include "daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "agent.h"
#include "auth.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "graph.h"
#include "inventory.h"
#include "log.h"
#include "loop.h"
#include "monitor.h"
#include "opts.h"
#include "preflight.h"
#include "privs.h"
#include "provision.h"
#include "rangeview.h"
#include "teams.h"

#define EXPIRE_EVERY 60	     /* seconds between quarantine sweeps */
#define CHECKPOINT_EVERY 300 /* seconds between database checkpoints */
#define STOP_GRACE 30	     /* seconds SIGTERM waits for Graph calls in flight */

struct daemon {
	const char *conf_file;
	struct config *cfg;
	struct inventory *inv;
	struct loop *loop;
	struct event_base *base; /* the loop's */
	struct graph *graph;
	struct prov *prov;
	struct control *control;
	struct monitor *mon;
	struct agent *agent; /* NULL when snmp.enabled is false */
	int snmp_failed;     /* enabled, but net-snmp could not start */
	const char *pidfile; /* written once the control socket listens */
	int pidfile_written; /* only then is it ours to remove */
	int ready_fd;	     /* without -f: to the parent waiting on the terminal, or -1 */
	char why[1024];	     /* why start-up failed, for that parent */
	int stopping;
	int allow_root;	  /* --allow-root: started as root, stays root */
	char runs_as[64]; /* daemon.user once root was given up, or "" */
	/*
	 * Started as root and detached: the pid file is root's. The parent, still
	 * root, makes it under a temporary name before the fork and renames it
	 * into place with the child's pid once the child runs. The child holds it
	 * read-only and locked (flock) while it runs: daemon.user cannot write it.
	 */
	int root_pid_fd;
	char root_pid_tmp[4096];
	int root_pidfile;   /* the pid file is root's: the daemon only holds its lock */
	int fail_status;    /* the exit status a start-up failure reports (1, or 78) */
	int pid_lock_errno; /* why the detached child could not lock root's pid file */
};

/* systemd's notification socket, without libsystemd: one datagram per state. */
static void
notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, strlen(path));
	if (path[0] == '@') /* abstract namespace */
		sa.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		log_debug("main", "sd_notify %s: %m", state);
	close(fd);
}

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: numprovd [-f] [-d] [-c FILE] [-p PIDFILE] [--allow-root]\n"
	    "       numprovd -t [-c FILE] [--allow-root]\n"
	    "  -c, --config FILE     configuration file (default %s)\n"
	    "  -t, --test            check the configuration file and exit (0 = good, 78 = "
	    "errors)\n"
	    "  -f, --foreground      stay in the foreground and log to stderr as well\n"
	    "  -d, --debug           log debug messages\n"
	    "  -p, --pidfile PIDFILE write the process id there when running as a daemon\n"
	    "      --allow-root      started as root, stay root instead of becoming daemon.user\n"
	    "  -h, --help            this help\n"
	    "  -V, --version         print the version\n",
	    NUMPROV_CONF);
}

/*
 * numprovd -t: as root (without --allow-root) the files are checked as
 * daemon.user, whom the daemon becomes, and the directories root makes for
 * it at start need only their parents.
 */
static int
config_test(const char *file, int allow_root)
{
	char err[8192];
	struct config *cfg = config_load(file, err, sizeof(err));
	struct privs_target t;
	int flags = 0;

	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return EX_CONFIG_ERROR;
	}
	/* the check reads the secret or the private key too: no core of it either */
	privs_no_core();
	if (geteuid() == 0 && !allow_root) {
		int rc = privs_resolve(cfg->daemon.user, cfg->daemon.group, &t, err, sizeof(err));

		if (rc < 0) {
			char where[4200];

			preflight_where(file,
			    rc == PRIVS_BAD_GROUP ? "daemon.group" : "daemon.user", where,
			    sizeof(where));
			fprintf(stderr, "%s: %s\n", where, err);
			config_free(cfg);
			return EX_CONFIG_ERROR;
		}
		flags |= PREFLIGHT_ROOT_MAKES_DIRS;
		if (privs_switch(&t, err, sizeof(err)) < 0) {
			fprintf(stderr, "numprovd: %s\n", err);
			config_free(cfg);
			return 1;
		}
	}
	/* what the daemon will need that can be checked without the network */
	if (preflight_check(file, cfg, flags, err, sizeof(err)) > 0) {
		fprintf(stderr, "%s\n", err);
		config_free(cfg);
		return EX_CONFIG_ERROR;
	}
	if (err[0]) /* notes only */
		fprintf(stderr, "%s\n", err);
	printf("%s: configuration is valid (%zu range%s, sync mode %s)\n", file, cfg->n_ranges,
	    cfg->n_ranges == 1 ? "" : "s", config_sync_mode_name(cfg->sync.mode));
	config_free(cfg);
	return 0;
}

static void
log_ranges(struct daemon *d)
{
	for (size_t i = 0; i < d->cfg->n_ranges; i++) {
		const struct cfg_range *cr = &d->cfg->ranges[i];
		struct inv_range r;

		if (inv_get_range(d->inv, cr->name, &r) != INV_OK)
			continue;
		log_info("main",
		    "range %s (%s, %s..%s): %llu numbers, %llu assigned, %llu pending, "
		    "%llu reserved, %llu quarantined",
		    r.name, config_range_type_name(cr->type), r.first, r.last,
		    (unsigned long long)r.size, (unsigned long long)r.count[INV_ASSIGNED],
		    (unsigned long long)r.count[INV_PENDING],
		    (unsigned long long)r.count[INV_RESERVED],
		    (unsigned long long)r.count[INV_QUARANTINED]);
	}
}

/*
 * Teams operations are polled after 0.5 s, then at doubling waits up to 30 s,
 * until sync.operation_timeout has passed; an operation still running then is
 * left pending and settled from Teams' numberAssignments at the next rounds.
 */
static void
tune_operations(const struct config *cfg)
{
	struct teams_tuning t = { 500, 30000, 0 };
	long waited = 0, wait = t.poll_first_ms, limit = (long)cfg->sync.operation_timeout * 1000;

	while (waited < limit) {
		waited += wait;
		t.poll_max++;
		wait = wait * 2 > t.poll_cap_ms ? t.poll_cap_ms : wait * 2;
	}
	teams_tune(&t);
}

/* SIGHUP: the new file is tested first; a bad one leaves the old in force. */
static void
reload(struct daemon *d)
{
	char err[8192];
	struct config *cfg = config_load(d->conf_file, err, sizeof(err));
	int rc, mode_changed;

	notify("RELOADING=1");
	if (!cfg) {
		log_err("main", "reload refused, the running configuration stays: %s", err);
		notify("READY=1");
		return;
	}
	if (strcmp(cfg->database.path, d->cfg->database.path) != 0)
		log_warnx("main", "database.path changed; it takes effect at the next restart");
	if (strcmp(cfg->tenant.id, d->cfg->tenant.id)
	    || strcmp(cfg->tenant.client_id, d->cfg->tenant.client_id))
		log_warnx("main", "tenant settings changed; they take effect at the next restart");
	if ((rc = inv_sync_ranges(d->inv, cfg, np_time())) != INV_OK) {
		log_err("main",
		    "reload refused: cannot apply the ranges: %s (the inventory may hold the new "
		    "ranges already: fix the cause and reload again)",
		    inv_strerror(rc));
		config_free(cfg);
		notify("READY=1");
		return;
	}
	if (cfg->snmp.enabled != d->cfg->snmp.enabled)
		log_warnx("main", "snmp.enabled changed; it takes effect at the next restart");
	if (strcmp(cfg->daemon.user, d->cfg->daemon.user)
	    || strcmp(cfg->daemon.group, d->cfg->daemon.group))
		log_warnx("main",
		    "daemon.user or daemon.group changed; it takes effect at the next "
		    "start as root");
	mode_changed = cfg->sync.mode != d->cfg->sync.mode;
	graph_set_config(d->graph, cfg);
	prov_set_config(d->prov, cfg);
	control_set_config(d->control, cfg);
	/* the agent first: the monitor's refresh may raise alarms under the new snmp.traps */
	if (d->agent)
		agent_set_config(d->agent, cfg);
	monitor_set_config(d->mon, cfg);
	config_free(d->cfg);
	d->cfg = cfg;
	log_set_level(cfg->log.level);
	tune_operations(cfg);
	log_notice(
	    "main", "configuration reloaded from %s (%zu ranges)", d->conf_file, cfg->n_ranges);
	log_ranges(d);
	if (mode_changed) {
		/* dry-run to enforce: what plan showed is done now, not at the next interval.
		   A full one: users decided under off or dry-run (or left by a round the
		   change stopped) are decided again under the new mode, not at the next full
		   sync */
		log_notice("main", "sync.mode is now %s: a full sync starts now",
		    config_sync_mode_name(cfg->sync.mode));
		prov_trigger(d->prov, 1);
	}
	notify("READY=1");
}

static void
drained(void *arg)
{
	struct daemon *d = arg;

	loop_stop(d->loop, 0);
}

static void
on_signal(int sig, void *arg)
{
	struct daemon *d = arg;

	if (sig == SIGHUP) {
		reload(d);
		return;
	}
	if (sig == SIGUSR1) {
		log_notice("main", "SIGUSR1: sync now");
		prov_trigger(d->prov, 0); /* as numprovctl sync: a delta round (--full is not) */
		return;
	}
	if (d->stopping++) {
		loop_stop(d->loop, 0);
		return;
	}
	log_notice("main", "signal %d: finishing what is in flight, then stopping", (int)sig);
	notify("STOPPING=1");
	/* what Teams was asked is answered and recorded; a stuck call gets the grace period */
	loop_stop(d->loop, STOP_GRACE);
	control_drain(d->control);
	prov_drain(d->prov, drained, d);
}

static void
on_expire(void *arg)
{
	struct daemon *d = arg;
	int n = inv_expire(d->inv, np_time());

	if (n > 0) {
		log_info("inventory", "%d quarantined number%s returned to the pool", n,
		    n == 1 ? "" : "s");
		monitor_changed(d->mon);
	}
}

static void
on_checkpoint(void *arg)
{
	struct daemon *d = arg;

	if (inv_checkpoint(d->inv) != INV_OK)
		log_warnx("inventory", "checkpoint failed; tried again in %d s", CHECKPOINT_EVERY);
}

static int
write_pidfile(const char *file, char *err, size_t errlen)
{
	FILE *f;

	if (!file)
		return 0;
	if (!(f = fopen(file, "w"))) {
		snprintf(err, errlen, "cannot write the pid file %s: %s", file, strerror(errno));
		return -1;
	}
	fprintf(f, "%ld\n", (long)getpid());
	if (fclose(f) != 0) {
		snprintf(err, errlen, "cannot write the pid file %s: %s", file, strerror(errno));
		unlink(file);
		return -1;
	}
	return 0;
}

static void
prov_stats_of(void *arg, struct prov_stats *out)
{
	prov_get_stats(arg, out);
}

static void
prov_sync_now(void *arg, int full)
{
	prov_trigger(arg, full);
}

/* numprovctl status: Graph's health, which a round in its retries does not show yet. */
static void
status_graph(cJSON *status, const struct daemon *d)
{
	cJSON *o = cJSON_AddObjectToObject(status, "graph");
	struct graph_stats st;
	time_t now = np_time();

	if (!o)
		return;
	graph_get_stats(d->graph, &st);
	cJSON_AddBoolToObject(o, "failing", st.failing_since != 0);
	/* since the start: what an outage costs Graph is the growth of attempts */
	cJSON_AddNumberToObject(o, "requests", (double)st.requests);
	cJSON_AddNumberToObject(o, "attempts", (double)st.attempts);
	cJSON_AddNumberToObject(o, "token_fetches", (double)st.token_fetches);
	if (st.failing_since) {
		rangeview_add_time(o, "failing_since", st.failing_since);
		cJSON_AddNumberToObject(o, "failing_for", (double)(now - st.failing_since));
		cJSON_AddStringToObject(o, "last_error", st.last_error);
		if (st.next_try)
			cJSON_AddNumberToObject(
			    o, "next_try_in", st.next_try > now ? (double)(st.next_try - now) : 0);
		else
			cJSON_AddNullToObject(o, "next_try_in");
	}
}

/* numprovctl status: Graph's health and the subagent's side. */
static void
status_extra(cJSON *status, void *arg)
{
	struct daemon *d = arg;
	cJSON *o;

	status_graph(status, d);
	/* the wall clock stepped while numprovd runs: how far from the time it keeps */
	cJSON_AddNumberToObject(status, "clock_skew", (double)np_clock_skew());
	if (!(o = cJSON_AddObjectToObject(status, "snmp")))
		return;
	/* whether the subagent runs: snmp.enabled takes effect at start */
	cJSON_AddBoolToObject(o, "enabled", d->agent != NULL);
	if (!d->agent && d->snmp_failed)
		cJSON_AddStringToObject(o, "error", "the SNMP agent could not start: see the log");
	cJSON_AddBoolToObject(o, "connected", agent_connected(d->agent));
	cJSON_AddStringToObject(
	    o, "agentx_socket", d->agent ? agent_socket(d->agent) : d->cfg->snmp.agentx_socket);
	cJSON_AddBoolToObject(o, "traps", d->cfg->snmp.traps);
	cJSON_AddNumberToObject(o, "notifications", (double)agent_notifications(d->agent));
}

/*
 * The SNMP agent, when enabled. net-snmp failing to start is logged and
 * numprovd provisions on without it: numbers matter more than the NMS's view.
 */
static void
start_agent(struct daemon *d)
{
	struct agent_source src = { d->mon, prov_stats_of, prov_sync_now, d->prov };
	char err[256];

	if (!d->cfg->snmp.enabled)
		return;
	if (!(d->agent = agent_new(d->base, d->cfg, &src, err, sizeof(err)))) {
		d->snmp_failed = 1;
		log_err("main", "the SNMP agent cannot start, numprovd runs without it: %s", err);
	}
}

/* A start-up failure: logged, and kept for the parent waiting on the terminal. */
static int __attribute__((format(printf, 2, 3))) failed(struct daemon *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
	log_err("main", "%s", d->why);
	return -1;
}

/* Without -f: the parent learns that numprovd runs ("ok"), or why it does not. */
static void
tell_parent(struct daemon *d, const char *why)
{
	char buf[1200];
	const char *m = buf;
	size_t n, done = 0;

	if (d->ready_fd < 0)
		return;
	/* "ok", or the exit status and the reason */
	if (why)
		snprintf(buf, sizeof(buf), "%d %s", d->fail_status ? d->fail_status : 1, why);
	else
		snprintf(buf, sizeof(buf), "ok");
	n = strlen(m);
	while (done < n) {
		ssize_t w = write(d->ready_fd, m + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* the parent is gone: nobody to tell */
		done += (size_t)w;
	}
	/*
	 * After a failure the pipe stays open until this process exits: the
	 * parent, reading to the end, returns only once the inventory is closed
	 * and its lock released, so that a start tried again at once finds it free.
	 */
	if (!why) {
		close(d->ready_fd);
		d->ready_fd = -1;
	}
}

/*
 * Started as root, detached and giving up root: the pid file is made by root
 * before the fork, under a temporary name in its directory, so that only
 * root can have written it; 0 or -1 with err.
 */
static int
root_pidfile_open(struct daemon *d, const char *pidfile, char *err, size_t errlen)
{
	if ((size_t)snprintf(d->root_pid_tmp, sizeof(d->root_pid_tmp), "%s.XXXXXX", pidfile)
	    >= sizeof(d->root_pid_tmp)) {
		snprintf(err, errlen, "the pid file's name is too long: %s", pidfile);
		return -1;
	}
	if ((d->root_pid_fd = mkostemp(d->root_pid_tmp, O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "cannot write the pid file %s: %s", pidfile, strerror(errno));
		return -1;
	}
	return 0;
}

/* The parent, once the child runs: the child's pid, then the file under its name. */
static int
root_pidfile_publish(struct daemon *d, pid_t child, char *err, size_t errlen)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "%ld\n", (long)child);

	if (pwrite(d->root_pid_fd, line, (size_t)n, 0) != n || fchmod(d->root_pid_fd, 0644) < 0
	    || rename(d->root_pid_tmp, d->pidfile) < 0) {
		snprintf(
		    err, errlen, "cannot write the pid file %s: %s", d->pidfile, strerror(errno));
		unlink(d->root_pid_tmp);
		return -1;
	}
	return 0;
}

/* The parent waiting for the child: Ctrl-C or a TERM stops the start, child and all. */
static volatile pid_t starting_child;
static const char *volatile starting_tmp;

static void
on_start_interrupted(int sig)
{
	(void)sig;
	if (starting_tmp)
		unlink(starting_tmp);
	if (starting_child > 0)
		kill(starting_child, SIGTERM);
	_exit(1);
}

/*
 * Without -f: fork, and the parent stays until the child runs or says why it
 * cannot, so that a start-up failure reaches the terminal with exit status 1
 * (and systemd's Type=forking or an init script sees it). The child leaves
 * the terminal as daemon(3) would.
 */
static int
detach(struct daemon *d)
{
	int p[2], fd;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		char msg[1300], *why = msg;
		size_t n = 0;
		ssize_t r;
		int status = 1;

		close(p[1]);
		starting_child = pid;
		if (d->root_pid_fd >= 0)
			starting_tmp = d->root_pid_tmp;
		signal(SIGHUP, SIG_IGN); /* the terminal closing does not orphan the start */
		signal(SIGINT, on_start_interrupted);
		signal(SIGTERM, on_start_interrupted);
		while (n < sizeof(msg) - 1
		    && ((r = read(p[0], msg + n, sizeof(msg) - 1 - n)) > 0
			|| (r < 0 && errno == EINTR)))
			if (r > 0)
				n += (size_t)r;
		msg[n] = '\0';
		if (strcmp(msg, "ok") == 0) {
			/* it runs: nothing may stop it from here but its own signals */
			signal(SIGINT, SIG_IGN);
			signal(SIGTERM, SIG_IGN);
			if (d->root_pid_fd >= 0
			    && root_pidfile_publish(d, pid, msg, sizeof(msg)) < 0) {
				/* a daemon nobody can find is no start */
				kill(pid, SIGTERM);
				waitpid(pid, NULL, 0);
				fprintf(stderr, "numprovd: %s\n", msg);
				_exit(1);
			}
			_exit(0);
		}
		if (d->root_pid_fd >= 0)
			unlink(d->root_pid_tmp);
		if (n && sscanf(msg, "%d ", &status) == 1 && (why = strchr(msg, ' ')))
			why++;
		else
			why = msg, status = 1;
		fprintf(stderr, "numprovd: %s\n",
		    n ? why : "stopped before it was running (see the log)");
		_exit(status > 0 && status < 256 ? status : 1);
	}
	signal(SIGPIPE, SIG_IGN); /* telling a parent that is gone must not kill the daemon */
	/*
	 * The pid file is the parent's to write. The daemon keeps a read-only
	 * descriptor of it, locked while it runs, so that `pkill -L -F` (or a
	 * script checking the lock) never trusts the file once it has stopped.
	 */
	if (d->root_pid_fd >= 0) {
		char self[64];
		struct stat a, b;
		int ro;

		/* the very file made before the fork, reopened read-only, not found by name */
		snprintf(self, sizeof(self), "/proc/self/fd/%d", d->root_pid_fd);
		ro = open(self, O_RDONLY | O_CLOEXEC);
		if (ro < 0 || fstat(ro, &a) < 0 || fstat(d->root_pid_fd, &b) < 0
		    || a.st_dev != b.st_dev || a.st_ino != b.st_ino
		    || flock(ro, LOCK_EX | LOCK_NB) < 0)
			d->pid_lock_errno = errno ? errno : EIO;
		if (d->pid_lock_errno && ro >= 0) {
			close(ro);
			ro = -1;
		}
		close(d->root_pid_fd);
		d->root_pid_fd = ro; /* held until exit; the lock goes with the process */
		d->root_pidfile = 1;
	}
	close(p[0]);
	d->ready_fd = p[1];
	if (setsid() < 0)
		log_warn("main", "setsid");
	if (chdir("/") < 0)
		log_warn("main", "chdir /");
	if ((fd = open("/dev/null", O_RDWR | O_CLOEXEC)) >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return 0;
}

/* Graph client, provisioning engine, monitor, control socket and SNMP agent, on the loop. */
static int
start_engine(struct daemon *d)
{
	char err[1024];

	tune_operations(d->cfg);
	if (!(d->graph = graph_new(d->base, d->cfg, err, sizeof(err))))
		return failed(d, "cannot start the Graph client: %s", err);
	if (!(d->prov = prov_new(d->base, d->cfg, d->inv, d->graph)))
		return failed(d, "%s", "cannot start provisioning");
	if (!(d->mon = monitor_new(d->base, d->cfg, d->inv, prov_stats_of, d->prov)))
		return failed(d, "%s", "cannot start the range monitor");
	if (!(d->control = control_new(d->base, d->cfg, d->prov, d->inv, err, sizeof(err))))
		return failed(d, "cannot open the control socket: %s", err);
	control_set_status_hook(d->control, status_extra, d);
	start_agent(d);
	return 0;
}

static void
stop_engine(struct daemon *d)
{
	agent_free(d->agent);
	d->agent = NULL;
	control_free(d->control);
	monitor_free(d->mon);
	d->mon = NULL;
	prov_free(d->prov);
	graph_free(d->graph);
}

static int
run_loop(struct daemon *d)
{
	static const int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGUSR1 };
	int ok = 1;

	signal(SIGPIPE, SIG_IGN);
	if (!(d->loop = loop_new())) {
		failed(d, "%s", "cannot create the event loop");
		tell_parent(d, d->why);
		return 1;
	}
	d->base = loop_base(d->loop);
	if (start_engine(d) < 0) {
		tell_parent(d, d->why);
		stop_engine(d);
		loop_free(d->loop);
		return 1;
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		ok &= loop_signal(d->loop, sigs[i], on_signal, d) == 0;
	ok &= loop_every(d->loop, EXPIRE_EVERY, on_expire, d) == 0;
	ok &= loop_every(d->loop, CHECKPOINT_EVERY, on_checkpoint, d) == 0;
	if (!ok) {
		failed(d, "%s", "cannot set up signals and timers");
		tell_parent(d, d->why);
		stop_engine(d);
		loop_free(d->loop);
		return 1;
	}
	log_notice("main", "numprovd %s running: inventory %s, %zu ranges, sync %s every %ds",
	    PACKAGE_VERSION, d->cfg->database.path, d->cfg->n_ranges,
	    config_sync_mode_name(d->cfg->sync.mode), d->cfg->sync.interval);
	/* the pid file says numprovd is there: numprovctl can talk to it from now on */
	{
		char err[512];
		if (!d->root_pidfile && write_pidfile(d->pidfile, err, sizeof(err)) < 0) {
			failed(d, "%s", err);
			tell_parent(d, d->why);
			stop_engine(d);
			loop_free(d->loop);
			return 1;
		}
		/* as root's, the parent renames it into place once told "ok" below */
		d->pidfile_written = d->pidfile != NULL;
	}
	tell_parent(d, NULL);
	prov_start(d->prov);
	notify("READY=1");
	loop_run(d->loop);
	stop_engine(d);
	loop_free(d->loop);
	return 0;
}

/*
 * Under systemd, stderr is the journal, which syslog reaches already: -f then
 * writes each line once (systemd names its stream in JOURNAL_STREAM=dev:inode).
 */
static int
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0
	    && (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* One directory made as root for daemon.user, if it is missing; 0 or -1 with err. */
static int
make_dir_for(const char *path, int parent, mode_t mode, const struct privs_target *t, char *err,
    size_t errlen)
{
	char dir[4096];
	int made;

	if (parent)
		privs_parent_of(path, dir, sizeof(dir));
	else
		snprintf(dir, sizeof(dir), "%s", path);
	if ((made = privs_make_dir(dir, mode, t, err, errlen)) < 0)
		return -1;
	if (made)
		log_info("main", "created %s for %s", dir, t->user);
	return 0;
}

/*
 * Started as root (without --allow-root): what only root can make for
 * daemon.user is made now (the inventory's directory and the control
 * socket's, when missing), and the pid file is begun as root's. Root itself
 * is given up by become_user, in the process that stays. 1: root is to be
 * given up (t filled); 0: nothing to do; or minus an exit status, with the
 * reason in d->why.
 */
static int
prepare_root(struct daemon *d, const char *pidfile, struct privs_target *t)
{
	char err[1024];
	int rc;

	if (geteuid() != 0)
		return 0;
	if (d->allow_root) {
		log_warnx("main",
		    "running as root (--allow-root): daemon.user is not used, and a flaw in "
		    "numprovd or a library it uses would be root's");
		return 0;
	}
	if ((rc = privs_resolve(d->cfg->daemon.user, d->cfg->daemon.group, t, err, sizeof(err)))
	    < 0) {
		char where[4200];

		preflight_where(d->conf_file,
		    rc == PRIVS_BAD_GROUP ? "daemon.group" : "daemon.user", where, sizeof(where));
		failed(d, "%s: %s", where, err);
		return -EX_CONFIG_ERROR;
	}
	if (make_dir_for(d->cfg->database.path, 0, 0750, t, err, sizeof(err)) < 0
	    || make_dir_for(d->cfg->control.socket, 1, 0755, t, err, sizeof(err)) < 0
	    || (pidfile && root_pidfile_open(d, pidfile, err, sizeof(err)) < 0)) {
		failed(d, "%s", err);
		return -1;
	}
	return 1;
}

/* Root given up for good, before the inventory and any network traffic; 0 or an exit status. */
static int
become_user(struct daemon *d, const struct privs_target *t)
{
	char err[1024];

	if (privs_switch(t, err, sizeof(err)) < 0) {
		failed(d, "%s", err);
		return 1;
	}
	if (access(d->conf_file, R_OK) < 0) {
		d->fail_status = EX_CONFIG_ERROR;
		failed(d,
		    "%s: not readable by user %s: %s (numprovd reads it again at every reload: "
		    "give it to root:%s with mode 0640)",
		    d->conf_file, t->user, strerror(errno), t->group);
		return EX_CONFIG_ERROR;
	}
	snprintf(d->runs_as, sizeof(d->runs_as), "%s", t->user);
	log_info("main", "running as %s:%s", t->user, t->group);
	return 0;
}

/*
 * The credentials, read as the user numprovd runs as, before the inventory is
 * opened: a file numprovd refuses (readable by others, not a regular file, no key
 * in it) is a configuration error, said and reported (78) as numprovd -t does.
 */
/* Whether an error names the key file rather than the certificate (either path may
 * hold the other: the longer one is looked for first). */
static int
names_file(const char *err, const char *cert, const char *key)
{
	if (strlen(cert) >= strlen(key))
		return !strstr(err, cert) && strstr(err, key);
	return strstr(err, key) != NULL;
}

static int
check_credentials(struct daemon *d)
{
	const struct config *c = d->cfg;
	char err[1024], where[4200];
	const char *key;

	if (c->tenant.client_secret_file) {
		char *s = auth_secret_line(c->tenant.client_secret_file, err, sizeof(err));
		if (s) {
			OPENSSL_cleanse(s, strlen(s));
			free(s);
			return 0;
		}
		key = "tenant.client_secret_file";
	} else {
		struct auth_cert *a = auth_cert_load(
		    c->tenant.certificate_file, c->tenant.private_key_file, err, sizeof(err));
		if (a) {
			auth_cert_free(a);
			return 0;
		}
		key = names_file(err, c->tenant.certificate_file, c->tenant.private_key_file)
		    ? "tenant.private_key_file"
		    : "tenant.certificate_file";
	}
	preflight_where(d->conf_file, key, where, sizeof(where));
	d->fail_status = EX_CONFIG_ERROR;
	return failed(d, "%s: %s: %s", where, key, err);
}

/* The inventory, opened as the user numprovd runs as; 0 or -1 with the reason in d->why. */
static int
open_inventory(struct daemon *d)
{
	char err[8192];
	int rc;

	if (inv_open(d->cfg->database.path, d->cfg->database.durable ? 0 : INV_OPEN_NOSYNC, &d->inv,
		err, sizeof(err))
	    != INV_OK) {
		if (*d->runs_as && strstr(err, "Permission denied"))
			return failed(d,
			    "%s (numprovd runs as %s: files an earlier numprovd run as root left "
			    "there are root's; chown -R %s %s)",
			    err, d->runs_as, d->runs_as, d->cfg->database.path);
		return failed(d, "%s", err);
	}
	if ((rc = inv_sync_ranges(d->inv, d->cfg, np_time())) != INV_OK) {
		inv_close(d->inv);
		d->inv = NULL;
		return failed(d, "cannot record the configured ranges: %s", inv_strerror(rc));
	}
	log_ranges(d);
	return 0;
}

/* At stop: the pid file goes, if it is this daemon's and not root's. */
static void
remove_pidfile(struct daemon *d)
{
	/* never another instance's; root's is left as it is (the next start replaces it) */
	if (!d->pidfile_written || d->root_pidfile)
		return;
	unlink(d->pidfile);
}

static int
run(struct daemon *d, int foreground, int debug, const char *pidfile)
{
	static char conf[PATH_MAX];
	struct privs_target t;
	char err[8192];
	int rc, drop;

	/* a daemon leaves its directory: the path it reloads from must not depend on it
	 * (made absolute, not resolved: a symbolic link swapped later is followed then) */
	if (d->conf_file[0] != '/') {
		if (!getcwd(conf, sizeof(conf))
		    || strlen(conf) + strlen(d->conf_file) + 2 > sizeof(conf)) {
			fprintf(stderr, "numprovd: cannot make %s an absolute path: %s\n",
			    d->conf_file, strerror(errno ? errno : ENAMETOOLONG));
			return 1;
		}
		strcat(conf, "/");
		strcat(conf, d->conf_file);
		d->conf_file = conf;
	}

	if (!(d->cfg = config_load(d->conf_file, err, sizeof(err)))) {
		fprintf(stderr, "%s\n", err);
		return EX_CONFIG_ERROR;
	}
	log_init("numprovd", d->cfg->log.facility, debug ? LOG_DEBUG : d->cfg->log.level,
	    LOG_DEST_SYSLOG | (foreground && !stderr_is_journal() ? LOG_DEST_STDERR : 0));
	if ((drop = prepare_root(d, foreground ? NULL : pidfile, &t)) < 0) {
		if (!foreground)
			fprintf(stderr, "numprovd: %s\n", d->why);
		config_free(d->cfg);
		log_close();
		return -drop;
	}
	if (!foreground) {
		d->pidfile = pidfile;
		/* the parent waits here until the child runs, or says why it does not */
		if (detach(d) < 0) {
			log_warn("main", "cannot become a daemon");
			fprintf(stderr, "numprovd: cannot become a daemon: %s\n", strerror(errno));
			if (d->root_pid_fd >= 0)
				unlink(d->root_pid_tmp);
			config_free(d->cfg);
			log_close();
			return 1;
		}
	}
	if (d->pid_lock_errno) {
		/* `pkill -L -F` would refuse the pid file of a daemon that holds no lock on it */
		failed(d, "cannot lock the pid file %s: %s", pidfile, strerror(d->pid_lock_errno));
		tell_parent(d, d->why);
		rc = 1;
	} else if (drop && (rc = become_user(d, &t)) != 0) {
		tell_parent(d, d->why);
	} else {
		/* from here on no core file: the secret, the private key and tokens are in memory
		 */
		privs_no_core();
		if (check_credentials(d) < 0) {
			tell_parent(d, d->why);
			rc = EX_CONFIG_ERROR;
		} else if (open_inventory(d) < 0) {
			tell_parent(d, d->why);
			rc = 1;
		} else {
			rc = run_loop(d);
			inv_close(d->inv);
		}
	}
	config_free(d->cfg);
	remove_pidfile(d);
	log_notice("main", "stopped");
	log_close();
	return rc;
}

static const struct option long_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "test", no_argument, NULL, 't' },
	{ "foreground", no_argument, NULL, 'f' },
	{ "debug", no_argument, NULL, 'd' },
	{ "pidfile", required_argument, NULL, 'p' },
	{ "version", no_argument, NULL, 'V' },
	{ "help", no_argument, NULL, 'h' },
	{ "allow-root", no_argument, NULL, 'R' },
	{ NULL, 0, NULL, 0 },
};

/* A usage error: what is wrong, in one line, and where to look (exit 2). */
static int
usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "numprovd: %s '%s'; see numprovd --help\n", what, arg);
	return 2;
}

int
daemon_main(int argc, char **argv)
{
	struct daemon d = { .conf_file = NUMPROV_CONF, .ready_fd = -1, .root_pid_fd = -1 };
	const char *pidfile = NULL;
	int test = 0, foreground = 0, debug = 0, c;

	opterr = 0; /* our own one-line messages */
	while ((c = getopt_long(argc, argv, ":c:tfdp:Vh", long_options, NULL)) != -1) {
		switch (c) {
		case 'c':
			d.conf_file = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'd':
			debug = 1;
			break;
		case 'p':
			pidfile = optarg;
			break;
		case 'R':
			d.allow_root = 1;
			break;
		case 'V':
			printf("numprovd %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return usage_error(
			    "an option needs a value:", opts_bad_option(argv, optind));
		default:
			return usage_error("unknown option", opts_bad_option(argv, optind));
		}
	}
	if (optind != argc)
		return usage_error("unexpected argument", argv[optind]);
	if (test)
		return config_test(d.conf_file, d.allow_root);
	return run(&d, foreground, debug, pidfile);
}
