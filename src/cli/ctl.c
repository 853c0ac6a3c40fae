#include "build-config.h"

#include "ctl.h"
#include "opts.h"
#include "privs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "rangeview.h"
#include "inventory.h"
#include "log.h"
#include "utf8.h"

#define REPLY_TIMEOUT 60       /* seconds; an assign waits for Teams */
#define REPLY_MAX (256u << 20) /* a reply larger than this is not from numprovd */

struct ctl {
	const char *conf_file;
	const char *socket; /* -s, else control.socket of the config */
	int json;
	struct config *cfg;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: numprovctl [-c FILE | -s SOCKET] [--json] COMMAND [ARGS]\n"
	    "  -c, --config FILE    configuration file (default %s)\n"
	    "  -s, --socket SOCKET  the daemon's control socket (default: control.socket of the "
	    "config)\n"
	    "  --json               machine-readable output and errors (anywhere on the line)\n"
	    "  -h, --help           this help;  -V, --version  the version\n"
	    "commands:\n"
	    "  status                         sync state and counters\n"
	    "  ranges                         every range: size, in use, available, reserved\n"
	    "  range NAME                     the numbers of one range that are not available\n"
	    "  users [--pending|--unmatched]  the users numprovd knows\n"
	    "  user UPN|ID                    one user: attributes, licence, matching ranges\n"
	    "  assign UPN NUMBER [--force]    give the user this number (Teams and inventory);\n"
	    "                                 --force: even if it does not suit their licence\n"
	    "  unassign UPN                   take the user's number back and hold them without "
	    "one\n"
	    "  auto UPN                       a held user back to automatic assignment\n"
	    "  reserve NUMBER                 keep a number out of the pool\n"
	    "  unreserve NUMBER               put a reserved number back in the pool\n"
	    "  sync [--full]                  start a sync now\n"
	    "  plan                           what the next sync would do, changing nothing\n",
	    NUMPROV_CONF);
}

static int fail(const char *fmt, ...) NP_PRINTF(1, 2);

static int json_errors; /* --json: errors are JSON too */

/* Errors are one line on stderr (a JSON object with --json) and a non-zero exit. */
static int __attribute__((format(printf, 1, 2))) fail(const char *fmt, ...)
{
	char msg[8192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (json_errors) {
		cJSON *o = cJSON_CreateObject();
		char *text = NULL;
		if (o && cJSON_AddFalseToObject(o, "ok")
		    && cJSON_AddStringToObject(o, "error", msg))
			text = cJSON_PrintUnformatted(o);
		fprintf(stderr, "%s\n", text ? text : "{\"ok\":false,\"error\":\"out of memory\"}");
		free(text);
		cJSON_Delete(o);
	} else
		fprintf(stderr, "numprovctl: %s\n", msg);
	return 1;
}

/* A usage error: what is wrong, in one line, and where to look. */
static int
usage_error(const char *what, const char *arg)
{
	fail("%s%s%s%s (usage: numprovctl [-c FILE | -s SOCKET] [--json] COMMAND [ARGS]); "
	     "see numprovctl --help",
	    what, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
	return 2;
}

/* ---- reading results ------------------------------------------------------ */

static const char *
jstr(const cJSON *o, const char *key)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));

	return s && *s ? s : "-";
}

static double
jnum(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static unsigned long long
jull(const cJSON *o, const char *key)
{
	double v = jnum(o, key);

	return v > 0 ? (unsigned long long)v : 0;
}

static int
jbool(const cJSON *o, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static int
widest(const cJSON *arr, const char *key, int min)
{
	const cJSON *o;
	int w = min;

	cJSON_ArrayForEach(o, arr)
	{
		int n = (int)strlen(jstr(o, key));
		if (n > w)
			w = n;
	}
	return w;
}

static void kv(const char *key, const char *fmt, ...) NP_PRINTF(2, 3);

/* One "key: value" line of the status and user lists, values aligned. */
static void
kv(const char *key, const char *fmt, ...)
{
	va_list ap;

	printf("%-18s", key);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ---- human output ------------------------------------------------------------ */

static void
print_ranges(const cJSON *arr)
{
	const cJSON *r;
	int w = widest(arr, "name", 5);

	printf("%-*s  %-16s  %-12s  %9s  %9s  %9s  %9s  %9s  %11s  %6s  %s\n", w, "RANGE", "TYPE",
	    "PROVIDER", "SIZE", "ASSIGNED", "PENDING", "AVAILABLE", "RESERVED", "QUARANTINED",
	    "USED", "STATUS");
	cJSON_ArrayForEach(r, arr)
	{
		const char *provider = jstr(r, "provider");
		/* cut at 12 bytes, never inside a character */
		int pw = strlen(provider) > 12 ? (int)utf8_prefix(provider, 12) : 12;

		printf("%-*s  %-16s  %-12.*s  %9llu  %9llu  %9llu  %9llu  %9llu  %11llu  %5.1f%%  "
		       "%s\n",
		    w, jstr(r, "name"), jstr(r, "type"), pw, provider, jull(r, "size"),
		    jull(r, "assigned"), jull(r, "pending"), jull(r, "available"),
		    jull(r, "reserved"), jull(r, "quarantined"), jnum(r, "utilisation"),
		    jstr(r, "status"));
	}
}

static const char *
holder(const cJSON *n)
{
	const char *upn = jstr(n, "user");

	return strcmp(upn, "-") != 0 ? upn : jstr(n, "user_id");
}

static void
print_range(const cJSON *arr)
{
	const cJSON *n;
	int w = 4;

	cJSON_ArrayForEach(n, arr)
	{
		if ((int)strlen(holder(n)) > w)
			w = (int)strlen(holder(n));
	}
	printf("%-24s  %-11s  %-*s  %-20s  %s\n", "NUMBER", "STATE", w, "USER", "SINCE", "UNTIL");
	cJSON_ArrayForEach(n, arr)
	{
		const char *until = jstr(n, "until");

		printf("%-24s  %-11s  %-*s  %-20s  %s\n", jstr(n, "number"), jstr(n, "state"), w,
		    holder(n), jstr(n, "since"), strcmp(until, "-") ? until : "");
	}
}

/* Graph: reachable, or failing since when, with what, and when it is tried next. */
static void
print_graph(const cJSON *g)
{
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(g, "next_try_in");

	if (!cJSON_IsObject(g) || !jbool(g, "failing")) {
		kv("graph:", "%s", cJSON_IsObject(g) ? "ok" : "-");
		return;
	}
	kv("graph:", "failing since %s (%.0f s)", jstr(g, "failing_since"), jnum(g, "failing_for"));
	kv("graph error:", "%s", jstr(g, "last_error"));
	if (cJSON_IsNumber(next))
		kv("graph retry in:", "%.0f s", next->valuedouble);
	else
		kv("graph retry in:", "%s", "at the next sync");
}

/* status: 1 while syncs fail or Graph does not answer (for monitoring scripts). */
static int
status_failing(const cJSON *s)
{
	return strcmp(jstr(s, "last_result"), "failed") == 0
	    || jbool(cJSON_GetObjectItemCaseSensitive(s, "graph"), "failing");
}

/* The SNMP subagent: disabled, or connected to snmpd or not, and its notifications. */
static void
print_snmp(const cJSON *snmp)
{
	if (!cJSON_IsObject(snmp) || !jbool(snmp, "enabled")) {
		const char *e = cJSON_IsObject(snmp) ? jstr(snmp, "error") : "";
		kv("snmp:", "%s", *e && strcmp(e, "-") ? e : "disabled");
		return;
	}
	kv("snmp:", "%s (%s)", jbool(snmp, "connected") ? "connected" : "not connected",
	    jstr(snmp, "agentx_socket"));
	kv("notifications:", "%llu sent%s", jull(snmp, "notifications"),
	    jbool(snmp, "traps") ? "" : " (snmp.traps is off)");
}

static void
print_status(const cJSON *s)
{
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(s, "next_sync_in");
	const char *err = jstr(s, "last_error");
	const char *kind = jbool(s, "last_full") ? " (full)" : " (delta)";

	kv("version:", "%s", jstr(s, "version"));
	kv("pid:", "%.0f", jnum(s, "pid"));
	kv("sync mode:", "%s", jstr(s, "sync_mode"));
	kv("sync:", "%s", jbool(s, "running") ? "running" : "idle");
	kv("last sync:", "%s%s", jstr(s, "last_result"),
	    strcmp(jstr(s, "last_result"), "never") ? kind : "");
	kv("last start:", "%s", jstr(s, "last_start"));
	kv("last end:", "%s", jstr(s, "last_end"));
	kv("last duration:", "%.0f ms", jnum(s, "last_duration_ms"));
	kv("last error:", "%s", err);
	if (cJSON_IsNumber(next))
		kv("next sync in:", "%.0f s", next->valuedouble);
	else
		kv("next sync in:", "%s", jbool(s, "running") ? "(running)" : "-");
	kv("syncs:", "%llu", jull(s, "syncs"));
	kv("sync failures:", "%llu", jull(s, "sync_failures"));
	kv("users tracked:", "%llu", jull(s, "users_tracked"));
	kv("users pending:", "%llu", jull(s, "users_pending"));
	kv("users unmatched:", "%llu", jull(s, "users_unmatched"));
	kv("assignments:", "%llu", jull(s, "assignments"));
	kv("releases:", "%llu", jull(s, "releases"));
	kv("assign failures:", "%llu", jull(s, "assign_failures"));
	kv("drift:", "%llu", jull(s, "drift"));
	print_graph(cJSON_GetObjectItemCaseSensitive(s, "graph"));
	if (jnum(s, "clock_skew") != 0)
		kv("clock:",
		    "the wall clock is %+.0f s from the time elapsed; numprovd keeps to "
		    "the elapsed time until it is restarted",
		    jnum(s, "clock_skew"));
	print_snmp(cJSON_GetObjectItemCaseSensitive(s, "snmp"));
}

static void
print_users(const cJSON *arr)
{
	const cJSON *u;
	int w = widest(arr, "upn", 4);

	int wr = widest(arr, "reason", 6);

	printf("%-*s  %-12s  %-24s  %-*s  %s\n", w, "USER", "STATE", "NUMBER", wr, "REASON", "ID");
	cJSON_ArrayForEach(u, arr)
	{
		printf("%-*s  %-12s  %-24s  %-*s  %s\n", w, jstr(u, "upn"), jstr(u, "state"),
		    jstr(u, "number"), wr, jstr(u, "reason"), jstr(u, "id"));
	}
}

/* A yes/no of the user view (true/false, or 1/0). */
static int
jflag(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsTrue(v) || (cJSON_IsNumber(v) && v->valuedouble != 0);
}

static const char *
licence_class(const cJSON *rec)
{
	if (!jflag(rec, "teams_phone"))
		return "no Teams Phone licence";
	if (jflag(rec, "calling_plan"))
		return "Teams Phone with a Calling Plan (calling-plan ranges)";
	return "Teams Phone without a Calling Plan (direct-routing and operator-connect ranges)";
}

static void
print_user_ranges(const cJSON *ranges)
{
	const cJSON *r;
	int w = widest(ranges, "name", 4);

	cJSON_ArrayForEach(r, ranges)
	{
		const char *verdict = !jbool(r, "type_ok") ? "wrong type"
		    : jbool(r, "match")			   ? "matches"
							   : "no match";
		printf("  %-*s  %-10s  %s\n", w, jstr(r, "name"), verdict, jstr(r, "why"));
	}
}

static void
print_user(const cJSON *u)
{
	const cJSON *rec = cJSON_GetObjectItemCaseSensitive(u, "record");
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(rec, "attributes"), *a;

	kv("user:", "%s", jstr(rec, "upn"));
	kv("id:", "%s", jstr(u, "id"));
	kv("name:", "%s", jstr(rec, "name"));
	kv("enabled:", "%s", jflag(rec, "enabled") ? "yes" : "no");
	kv("licence:", "%s", licence_class(rec));
	kv("state:", "%s", jstr(rec, "state")); /* numprov's; an address state is below */
	if (cJSON_GetObjectItemCaseSensitive(u, "number"))
		kv("number:", "%s (%s)", jstr(u, "number"), jstr(u, "number_state"));
	else if (cJSON_GetObjectItemCaseSensitive(u, "would_get"))
		kv("would get:", "%s from range %s", jstr(u, "would_get"),
		    jstr(u, "would_get_range"));
	else
		kv("would get:", "%s", "nothing: no matching range with a free number");
	/* each field once: the directory's attributes apart, the UPN being shown above */
	printf("attributes:\n");
	cJSON_ArrayForEach(a, attrs)
	{
		int pad;

		if (!cJSON_IsString(a) || !a->string || strcmp(a->string, "upn") == 0)
			continue;
		pad = 21 - (int)strlen(a->string); /* "key:" in 22 columns */
		printf("  %s:%*s%s\n", a->string, pad > 0 ? pad : 0, "", a->valuestring);
	}
	printf("ranges:\n");
	print_user_ranges(cJSON_GetObjectItemCaseSensitive(u, "ranges"));
}

static void
print_plan(const cJSON *arr)
{
	const cJSON *p;
	int w = widest(arr, "user", 4), wr = widest(arr, "range", 5);

	if (cJSON_GetArraySize(arr) == 0) {
		printf("nothing to do\n");
		return;
	}
	printf(
	    "%-9s  %-*s  %-24s  %-*s  %s\n", "ACTION", w, "USER", "NUMBER", wr, "RANGE", "REASON");
	cJSON_ArrayForEach(p, arr)
	{
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(p, "error");
		printf("%-9s  %-*s  %-24s  %-*s  %s%s%s\n", jstr(p, "action"), w, jstr(p, "user"),
		    jstr(p, "number"), wr, jstr(p, "range"), jstr(p, "reason"),
		    cJSON_IsString(e) ? "; the inventory cannot say which number: " : "",
		    cJSON_IsString(e) ? e->valuestring : "");
	}
}

static void
print_assign(const cJSON *r)
{
	printf("assigned %s to %s\n", jstr(r, "number"), jstr(r, "user"));
}

static void
print_unassign(const cJSON *r)
{
	if (*jstr(r, "number"))
		printf("unassigned %s from %s; they are held without a number until "
		       "numprovctl assign or auto\n",
		    jstr(r, "number"), jstr(r, "user"));
	else
		printf("%s holds no number; they are held without one until numprovctl assign or "
		       "auto\n",
		    jstr(r, "user"));
}

static void
print_auto(const cJSON *r)
{
	printf("%s is back to automatic assignment; the next sync decides\n", jstr(r, "user"));
}

static void
print_reserve(const cJSON *r)
{
	printf("reserved %s\n", jstr(r, "number"));
}

static void
print_unreserve(const cJSON *r)
{
	printf("unreserved %s: it is available again\n", jstr(r, "number"));
}

static void
print_sync(const cJSON *r)
{
	const char *what = jbool(r, "full") ? "full sync" : "sync";

	if (jbool(r, "queued"))
		printf("a sync is running; the %s starts when it ends\n", what);
	else
		printf("%s started\n", what);
}

/* ---- commands ------------------------------------------------------------------ */

static const struct command {
	const char *name;
	int min, max;	  /* arguments */
	int fallback;	  /* read-only: the inventory answers when the daemon is not running */
	const char *flag; /* the one flag the command takes, if any */
	void (*print)(const cJSON *result);
} commands[] = {
	{ "status", 0, 0, 0, NULL, print_status },
	{ "ranges", 0, 0, 1, NULL, print_ranges },
	{ "range", 1, 1, 1, NULL, print_range },
	{ "users", 0, 1, 0, "--pending|--unmatched", print_users },
	{ "user", 1, 1, 0, NULL, print_user },
	{ "assign", 2, 3, 0, "--force", print_assign },
	{ "unassign", 1, 1, 0, NULL, print_unassign },
	{ "auto", 1, 1, 0, NULL, print_auto },
	{ "reserve", 1, 1, 0, NULL, print_reserve },
	{ "unreserve", 1, 1, 0, NULL, print_unreserve },
	{ "sync", 0, 1, 0, "--full", print_sync },
	{ "plan", 0, 0, 0, NULL, print_plan },
};

/* "--pending" is one of "--pending|--unmatched". */
static int
flag_ok(const char *flags, const char *arg)
{
	size_t n = strlen(arg);
	const char *p = flags;

	while ((p = strstr(p, arg))) {
		if ((p == flags || p[-1] == '|') && (p[n] == '\0' || p[n] == '|'))
			return 1;
		p += n;
	}
	return 0;
}

/* The command is checked before anything is opened: usage errors cost nothing. */
static const struct command *
find_command(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *c = &commands[i];

		if (strcmp(argv[0], c->name) != 0 || argc - 1 < c->min || argc - 1 > c->max)
			continue;
		if (c->flag && argc - 1 > c->min) {
			/* the arguments beyond the required ones are the command's flags */
			int flags = 0;
			for (int k = 1; k < argc; k++)
				flags += flag_ok(c->flag, argv[k]);
			if (flags != argc - 1 - c->min)
				return NULL;
		}
		return c;
	}
	return NULL;
}

/* ---- the socket ------------------------------------------------------------------ */

/* The connected socket, or -errno. */
static int
dial(const char *path)
{
	struct sockaddr_un sa;
	struct timeval tv = { REPLY_TIMEOUT, 0 };
	int fd, e;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path));
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	/* a daemon too busy to accept must not hang us for ever */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
		e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int
send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One reply line, malloc'd; NULL with *why set (0: closed, ETIMEDOUT, ...). */
static char *
read_line(int fd, int *why)
{
	time_t deadline = time(NULL) + REPLY_TIMEOUT;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *nl;
	ssize_t n;

	while (buf) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		time_t left = deadline - time(NULL);
		int rc = left > 0 ? poll(&pfd, 1, (int)left * 1000) : 0;

		if (rc < 0 && errno == EINTR)
			continue;
		if (rc <= 0) {
			*why = rc == 0 ? ETIMEDOUT : errno;
			break;
		}
		if (len + 1 >= cap) {
			char *g = cap < REPLY_MAX ? realloc(buf, cap * 2) : NULL;
			if (!g) {
				*why = ENOMEM;
				break;
			}
			buf = g;
			cap *= 2;
		}
		if ((n = recv(fd, buf + len, cap - len - 1, 0)) < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*why = n == 0 ? 0 : errno;
			break;
		}
		len += (size_t)n;
		buf[len] = '\0';
		if ((nl = memchr(buf, '\n', len))) {
			*nl = '\0';
			return buf;
		}
	}
	free(buf);
	return NULL;
}

/* The socket's group, for the advice after a refusal. */
static void
socket_group(const struct ctl *c, char *buf, size_t len)
{
	struct stat st;
	struct group *gr;

	if (stat(c->socket, &st) == 0 && (gr = getgrgid(st.st_gid)))
		snprintf(buf, len, "%s", gr->gr_name);
	else
		snprintf(buf, len, "%s",
		    c->cfg && c->cfg->control.group ? c->cfg->control.group : "numprov");
}

static int
dial_error(const struct ctl *c, int e)
{
	char group[256];

	if (e == EACCES || e == EPERM) {
		socket_group(c, group, sizeof(group));
		return fail("permission denied on %s: run as root or as a member of group %s",
		    c->socket, group);
	}
	if (e == ENOENT || e == ECONNREFUSED)
		return fail("numprovd is not running (no socket at %s)", c->socket);
	if (e == EAGAIN || e == ETIMEDOUT)
		return fail("numprovd does not answer on %s", c->socket);
	return fail("cannot connect to %s: %s", c->socket, strerror(e));
}

static char *
request_text(int argc, char **argv)
{
	cJSON *req = cJSON_CreateObject(), *args;
	char *text;

	cJSON_AddStringToObject(req, "command", argv[0]);
	args = cJSON_AddArrayToObject(req, "args");
	for (int i = 1; i < argc; i++)
		cJSON_AddItemToArray(args, cJSON_CreateString(argv[i]));
	text = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	return text;
}

static int
exchange_error(const struct ctl *c, int why, const char *cmd)
{
	if (why == ETIMEDOUT)
		return fail("no reply from numprovd within %d s%s", REPLY_TIMEOUT,
		    strcmp(cmd, "assign") == 0 || strcmp(cmd, "unassign") == 0
			? "; Teams may still make the change: check with numprovctl user"
			: "");
	if (why == 0)
		return fail("numprovd closed %s without replying", c->socket);
	return fail("cannot read the reply on %s: %s", c->socket, strerror(why));
}

/* Send the request, wait for the reply: *reply is the parsed object, or the exit code. */
static int
exchange(const struct ctl *c, int fd, int argc, char **argv, cJSON **reply)
{
	char *text = request_text(argc, argv), *line;
	int ok, why = 0;

	ok = text && send_all(fd, text, strlen(text)) == 0 && send_all(fd, "\n", 1) == 0;
	free(text);
	if (!ok)
		return fail("cannot send the request on %s: %s", c->socket, strerror(errno));
	if (!(line = read_line(fd, &why)))
		return exchange_error(c, why, argv[0]);
	*reply = cJSON_Parse(line);
	free(line);
	if (!cJSON_IsObject(*reply)) {
		cJSON_Delete(*reply);
		*reply = NULL;
		return fail("the reply on %s is not numprovd's", c->socket);
	}
	return 0;
}

/*
 * The text output shows what the directory, Graph and the daemon say: a string there may
 * carry a terminal's escape sequence, another control character or bytes that are not UTF-8.
 * Each such byte of every string and key in v is shown as \xNN (utf8_escape) before anything
 * is printed; --json prints the exact strings, escaped as JSON. -1 when out of memory.
 */
static int
escape_text(char **s)
{
	size_t n;
	char *e;

	if (!*s || (n = utf8_escaped_len(*s)) == strlen(*s))
		return 0;
	if (!(e = cJSON_malloc(n + 4)))
		return -1;
	utf8_escape(*s, e, n + 4);
	cJSON_free(*s);
	*s = e;
	return 0;
}

static int
escape_strings(cJSON *v)
{
	cJSON *c;

	if (!v)
		return 0;
	if (escape_text(&v->string) < 0 || (cJSON_IsString(v) && escape_text(&v->valuestring) < 0))
		return -1;
	cJSON_ArrayForEach(c, v)
	{
		if (escape_strings(c) < 0)
			return -1;
	}
	return 0;
}

static void
print_json(const cJSON *v)
{
	char *s = cJSON_Print(v);

	if (s)
		puts(s);
	free(s);
}

static int
show(const struct ctl *c, const struct command *cmd, cJSON *result)
{
	if (c->json)
		print_json(result);
	else if (escape_strings(result) < 0)
		return fail("out of memory");
	else
		cmd->print(result);
	if (fflush(stdout) != 0)
		return fail("cannot write the output: %s", strerror(errno));
	return cmd->print == print_status && status_failing(result) ? 1 : 0;
}

static int
show_reply(const struct ctl *c, const struct command *cmd, cJSON *reply)
{
	cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
	const char *err;

	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
		if (!c->json && escape_strings(e) < 0)
			return fail("out of memory");
		err = cJSON_GetStringValue(e);
		return fail("%s", err && *err ? err : "numprovd refused the request");
	}
	return show(c, cmd, cJSON_GetObjectItemCaseSensitive(reply, "result"));
}

/* ---- without the daemon: ranges and range NAME read the inventory ----------------- */

static void
quiet_log(int prio, const char *token, const char *msg)
{
	if (prio <= LOG_WARNING)
		fprintf(stderr, "numprovctl: %s: %s\n", token ? token : "", msg);
}

static int
run_local(const struct ctl *c, const struct command *cmd, char **argv)
{
	struct inventory *inv;
	char err[8192];
	cJSON *result;
	int rc;

	log_register(quiet_log);
	/* as root, Berkeley DB's region files would be root's and numprovd could not open them */
	if (privs_become_owner_of(c->cfg->database.path, err, sizeof(err)) < 0)
		return fail("%s", err);
	if (inv_open(c->cfg->database.path, INV_OPEN_READONLY, &inv, err, sizeof(err)) != INV_OK)
		return fail("%s", err);
	if (strcmp(cmd->name, "ranges") == 0)
		result = rangeview_ranges_json(inv, c->cfg, err, sizeof(err));
	else
		result = rangeview_numbers_json(inv, argv[1], err, sizeof(err));
	inv_close(inv);
	if (!result)
		return fail("%s", err);
	rc = show(c, cmd, result);
	cJSON_Delete(result);
	return rc;
}

static int
run(const struct ctl *c, const struct command *cmd, int argc, char **argv)
{
	cJSON *reply = NULL;
	int fd = dial(c->socket), rc;

	if (fd < 0) {
		/* the daemon is down: what the inventory can tell still helps (not with -s) */
		if (cmd->fallback && c->cfg && (fd == -ENOENT || fd == -ECONNREFUSED))
			return run_local(c, cmd, argv);
		return dial_error(c, -fd);
	}
	rc = exchange(c, fd, argc, argv, &reply);
	close(fd);
	if (rc == 0)
		rc = show_reply(c, cmd, reply);
	cJSON_Delete(reply);
	return rc;
}

/* --json may stand anywhere; it is taken out before the options are read. */
static int
strip_json(int argc, char **argv, int *json)
{
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (i > 0 && (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0))
			*json = 1;
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

static const struct option long_options[] = {
	{ "config", required_argument, NULL, 'c' },
	{ "socket", required_argument, NULL, 's' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int
known_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(name, commands[i].name) == 0)
			return 1;
	return 0;
}

int
ctl_main(int argc, char **argv)
{
	struct ctl c = { .conf_file = NUMPROV_CONF };
	const struct command *cmd;
	char err[8192];
	int opt, rc;

	argc = strip_json(argc, argv, &c.json);
	json_errors = c.json;
	opterr = 0; /* our own one-line messages */
	while ((opt = getopt_long(argc, argv, "+:c:s:hV", long_options, NULL)) != -1) {
		if (opt == 'c') {
			c.conf_file = optarg;
		} else if (opt == 's') {
			c.socket = optarg;
		} else if (opt == 'h') {
			usage(stdout);
			return 0;
		} else if (opt == 'V') {
			printf("numprovctl %s\n", PACKAGE_VERSION);
			return 0;
		} else if (opt == ':') {
			return usage_error(
			    "an option needs a value:", opts_bad_option(argv, optind));
		} else {
			return usage_error("unknown option", opts_bad_option(argv, optind));
		}
	}
	if (optind >= argc)
		return usage_error("no command", NULL);
	if (!(cmd = find_command(argc - optind, argv + optind)))
		return usage_error(
		    known_command(argv[optind]) ? "wrong arguments for" : "unknown command",
		    argv[optind]);
	/* with -s the config is not needed, and not read */
	if (!c.socket) {
		log_register(quiet_log);
		if (!(c.cfg = config_load(c.conf_file, err, sizeof(err)))) {
			if (json_errors)
				fail("%s", err);
			else
				fprintf(stderr, "%s\n", err);
			return EX_CONFIG_ERROR;
		}
		c.socket = c.cfg->control.socket;
	}
	rc = run(&c, cmd, argc - optind, argv + optind);
	config_free(c.cfg);
	return rc;
}
