#include "build-config.h"

#include "control.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "e164.h"
#include "events.h"
#include "inventory.h"
#include "log.h"
#include "provision.h"
#include "rangeview.h"

#define MAX_CLIENTS 64	 /* numprovctl runs are short; more than this is a runaway script */
#define IDLE_TIMEOUT 300 /* seconds a client may sit silent with nothing in flight */
/*
 * A client that sends requests and reads no replies must not make the daemon
 * hold its backlog. Once OUTPUT_MAX bytes of replies wait for it, its requests
 * are no longer read (the kernel's socket buffers then hold it back), until it
 * has read them all. One client so costs at most OUTPUT_MAX plus its largest
 * single reply, plus CONTROL_LINE_MAX of input; MAX_CLIENTS of them a bounded
 * multiple of that. A client that reads nothing for STALL_TIMEOUT seconds while
 * replies wait is dropped. numprovctl reads every reply whole as it comes, so
 * only a stuck or hostile client ever stalls that long; a constant, not a key.
 */
#define OUTPUT_MAX (1024 * 1024)
#define STALL_TIMEOUT 15
/*
 * `users` and `plan` read the whole directory in one go, and nothing else runs
 * on the loop meanwhile (other clients, timers, Graph transfers, SNMP). Measured
 * with 100,000 directory records (-O2): another client's `status` waited 0.3 s
 * behind `users` and 0.45 s behind `plan` (about 5 us a record; ASan builds
 * about 4x); the replies are 12 and 15 MB, built whole (one reply is not held
 * to OUTPUT_MAX). The cost grows linearly with the tenant; the engine rewrite
 * is where such scans become incremental.
 */

struct control;
struct client;

/*
 * An assign or unassign in flight in the engine. It outlives its client: a
 * client that goes away only clears cl, and the engine's answer is dropped.
 */
struct waiter {
	struct client *cl;
	char user[INV_UPN_MAX];
};

struct client {
	struct control *ctl;
	struct client *next, *prev;
	struct bufferevent *bev;
	struct waiter *waiting;
	long uid; /* the peer, for the audit trail; -1 if unknown */
	int eof;  /* the client will send no more: answer what is buffered, then close */
	int closing;
	int paused; /* OUTPUT_MAX of replies wait for it: its requests are not read */
};

struct control {
	struct event_base *base;
	struct config *cfg; /* a reference: see config_ref */
	struct prov *prov;
	struct inventory *inv;
	struct evconnlistener *listener;
	struct event *resume;
	char *path;
	struct client *clients;
	int n_clients;
	int draining; /* stopping: questions are answered, changes refused */
	control_status_fn status_hook;
	void *status_arg;
};

static void
add_time(cJSON *o, const char *key, time_t t)
{
	rangeview_add_time(o, key, t);
}

/* ---- replies -------------------------------------------------------------- */

/*
 * cJSON copies the bytes of a string as they are, UTF-8 or not: a request's bytes, or an
 * attribute's as Graph sent them, could make a reply that is not JSON. Outside its strings
 * cJSON writes ASCII only, so such a byte is inside one, and the escape \ufffd (the
 * replacement character) stands for it. Each run of UTF-8 goes out as it is.
 */
static void
add_utf8(struct evbuffer *out, const char *text)
{
	const char *s = text, *from = text;
	size_t n;

	while (*s) {
		if ((unsigned char)*s < 0x80) {
			s++;
			continue;
		}
		if ((n = utf8_char_len(s))) {
			s += n;
			continue;
		}
		evbuffer_add(out, from, (size_t)(s - from));
		evbuffer_add(out, "\\ufffd", 6);
		from = ++s;
	}
	evbuffer_add(out, from, (size_t)(s - from));
}

static void
send_json(struct client *cl, const cJSON *msg)
{
	char *text = cJSON_PrintUnformatted(msg);
	struct evbuffer *out = bufferevent_get_output(cl->bev);

	if (!text) {
		static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}\n";
		evbuffer_add(out, oom, sizeof(oom) - 1);
		return;
	}
	add_utf8(out, text);
	evbuffer_add(out, "\n", 1);
	free(text);
}

/* Takes result. */
static void
reply_ok(struct client *cl, cJSON *result)
{
	cJSON *m = cJSON_CreateObject();

	cJSON_AddBoolToObject(m, "ok", 1);
	cJSON_AddItemToObject(m, "result", result ? result : cJSON_CreateNull());
	send_json(cl, m);
	cJSON_Delete(m);
}

/*
 * A piece of the request echoed in a reply: at most ECHO_MAX bytes, cut between two
 * characters ("..." ends a cut), its control characters and bytes that are not UTF-8 as
 * \xNN. buf holds ECHO_BUF bytes.
 */
#define ECHO_MAX 64
#define ECHO_BUF (ECHO_MAX + 4)

static const char *
echo(const char *s, char *buf)
{
	return utf8_escape(s, buf, ECHO_BUF);
}

static void reply_err(struct client *cl, const char *fmt, ...) NP_PRINTF(2, 3);

/*
 * numprovctl prints the error as its one line on stderr: no line breaks in it, no control
 * characters and no bytes that are not UTF-8, whatever of the request it echoes (or of the
 * engine's words, which echo the request too): those are written as \xNN (utf8_escape).
 */
static void
reply_err(struct client *cl, const char *fmt, ...)
{
	char msg[512], shown[512];
	va_list ap;
	cJSON *m;

	va_start(ap, fmt);
	if (vsnprintf(msg, sizeof(msg), fmt, ap) >= (int)sizeof(msg))
		msg[utf8_prefix(msg, sizeof(msg) - 2)] = '\0'; /* no first bytes of a character */
	va_end(ap);
	m = cJSON_CreateObject();
	cJSON_AddBoolToObject(m, "ok", 0);
	cJSON_AddStringToObject(m, "error", utf8_escape(msg, shown, sizeof(shown)));
	send_json(cl, m);
	cJSON_Delete(m);
}

/* ---- commands --------------------------------------------------------------- */

static const char *
result_name(enum prov_result r)
{
	switch (r) {
	case PR_NEVER:
		return "never";
	case PR_SUCCESS:
		return "success";
	case PR_PARTIAL:
		return "partial";
	case PR_FAILED:
		return "failed";
	}
	return "never";
}

static void
cmd_status(struct client *cl, int argc, const char **argv)
{
	struct control *c = cl->ctl;
	struct prov_stats st;
	cJSON *o = cJSON_CreateObject();
	time_t now = np_time();

	(void)argc;
	(void)argv;
	prov_get_stats(c->prov, &st);
	cJSON_AddStringToObject(o, "version", PACKAGE_VERSION);
	cJSON_AddNumberToObject(o, "pid", (double)getpid());
	cJSON_AddStringToObject(o, "sync_mode", config_sync_mode_name(c->cfg->sync.mode));
	cJSON_AddBoolToObject(o, "running", st.running);
	cJSON_AddStringToObject(o, "last_result", result_name(st.last_result));
	cJSON_AddBoolToObject(o, "last_full", st.last_full);
	add_time(o, "last_start", st.last_start);
	add_time(o, "last_end", st.last_end);
	cJSON_AddNumberToObject(o, "last_duration_ms", (double)st.last_duration_ms);
	cJSON_AddStringToObject(o, "last_error", st.last_error);
	if (st.next_at && !st.running)
		cJSON_AddNumberToObject(
		    o, "next_sync_in", st.next_at > now ? (double)(st.next_at - now) : 0);
	else
		cJSON_AddNullToObject(o, "next_sync_in");
	cJSON_AddNumberToObject(o, "syncs", (double)st.syncs);
	cJSON_AddNumberToObject(o, "sync_failures", (double)st.failures);
	cJSON_AddNumberToObject(o, "users_tracked", (double)st.users_tracked);
	cJSON_AddNumberToObject(o, "users_pending", (double)st.users_pending);
	cJSON_AddNumberToObject(o, "users_unmatched", (double)st.users_unmatched);
	cJSON_AddNumberToObject(o, "assignments", (double)st.assignments);
	cJSON_AddNumberToObject(o, "releases", (double)st.releases);
	cJSON_AddNumberToObject(o, "assign_failures", (double)st.assign_failures);
	cJSON_AddNumberToObject(o, "drift", (double)st.drift);
	if (c->status_hook)
		c->status_hook(o, c->status_arg);
	reply_ok(cl, o);
}

static void
cmd_ranges(struct client *cl, int argc, const char **argv)
{
	char err[256];
	cJSON *r = rangeview_ranges_json(cl->ctl->inv, cl->ctl->cfg, err, sizeof(err));

	(void)argc;
	(void)argv;
	if (r)
		reply_ok(cl, r);
	else
		reply_err(cl, "%s", err);
}

static void
cmd_range(struct client *cl, int argc, const char **argv)
{
	char err[256];
	cJSON *r = rangeview_numbers_json(cl->ctl->inv, argv[0], err, sizeof(err));

	(void)argc;
	if (r)
		reply_ok(cl, r);
	else
		reply_err(cl, "%s", err);
}

/* "--pending" or "pending"; NULL when the word is neither filter. */
static const char *
flag_word(const char *arg, const char *const *words)
{
	const char *w = arg + strspn(arg, "-");

	for (; *words; words++)
		if (strcmp(w, *words) == 0)
			return *words;
	return NULL;
}

static void
cmd_users(struct client *cl, int argc, const char **argv)
{
	static const char *const filters[] = { "pending", "unmatched", NULL };
	const char *filter = NULL;

	if (argc == 1 && !(filter = flag_word(argv[0], filters))) {
		reply_err(cl, "%s", "usage: users [--pending|--unmatched]");
		return;
	}
	reply_ok(cl, prov_users(cl->ctl->prov, filter));
}

static void
cmd_user(struct client *cl, int argc, const char **argv)
{
	cJSON *r = prov_explain_user(cl->ctl->prov, argv[0]);
	char shown[ECHO_BUF];

	(void)argc;
	if (r)
		reply_ok(cl, r);
	else
		reply_err(cl, "unknown user '%s'", echo(argv[0], shown));
}

/* Canonical text of a number, or -1 with the reason it is not one. */
static int
canonical(const char *in, char *out, char *err, size_t errlen)
{
	struct e164 n;
	char why[160], shown[ECHO_BUF];

	if (e164_parse(in, &n, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "'%s' is not a phone number: %s", echo(in, shown), why);
		return -1;
	}
	e164_format(&n, out, E164_STRLEN);
	return 0;
}

/* "+44... is assigned to bob@...": who holds a number, for a refusal. */
static void
holder_error(struct client *cl, const char *number)
{
	struct inventory *inv = cl->ctl->inv;
	struct inv_number n;
	struct inv_user u;
	const char *who = "another user";

	if (inv_get_number(inv, number, &n) != INV_OK) {
		reply_err(cl, "%s is already taken", number);
		return;
	}
	if (n.user_id[0])
		who = inv_get_user(inv, n.user_id, &u) == INV_OK && u.upn[0] ? u.upn : n.user_id;
	if (n.state == INV_PENDING)
		reply_err(cl, "%s is already taken: it is being assigned to %s", number, who);
	else if (n.state == INV_ASSIGNED)
		reply_err(cl, "%s is already taken: it is assigned to %s", number, who);
	else
		reply_err(cl, "%s is already taken (%s)", number, inv_state_name(n.state));
}

static void
forward_reply(struct client *cl, const struct waiter *w, const cJSON *reply)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(reply, "number");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
	const char *number = cJSON_GetStringValue(n), *error = cJSON_GetStringValue(e);
	cJSON *r;

	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok"))) {
		reply_err(cl, "%s", error && *error ? error : "Teams refused the change");
		return;
	}
	r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "user", w->user);
	cJSON_AddStringToObject(r, "number", number ? number : "");
	reply_ok(cl, r);
}

/* The engine's answer to an assign or unassign; may come before the call returns. */
static void
on_engine_reply(cJSON *reply, void *arg)
{
	struct waiter *w = arg;
	struct client *cl = w->cl;

	if (cl) {
		cl->waiting = NULL;
		forward_reply(cl, w, reply);
		/* requests that arrived meanwhile are read now, from the loop */
		bufferevent_trigger(
		    cl->bev, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	} else {
		log_info("control", "the client that changed %s has gone; its answer is dropped",
		    w->user);
	}
	cJSON_Delete(reply);
	free(w);
}

static struct waiter *
wait_for_engine(struct client *cl, const char *user)
{
	struct waiter *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->cl = cl;
	snprintf(w->user, sizeof(w->user), "%s", user);
	cl->waiting = w;
	return w;
}

/* The engine refused before starting: the callback will never come. */
static void
engine_refused(struct client *cl, struct waiter *w)
{
	if (cl->waiting == w) {
		cl->waiting = NULL;
		free(w);
	}
}

static void
cmd_assign(struct client *cl, int argc, const char **argv)
{
	const char *pos[2] = { NULL, NULL };
	struct waiter *w;
	char err[512];
	int force = 0, n = 0, rc;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0)
			force = 1;
		else if (n < 2)
			pos[n++] = argv[i];
		else
			n++;
	}
	if (n != 2) {
		reply_err(cl, "%s", "usage: assign UPN NUMBER [--force]");
		return;
	}
	if (!(w = wait_for_engine(cl, pos[0]))) {
		reply_err(cl, "%s", "out of memory");
		return;
	}
	log_info(
	    "control", "uid %ld: assign %s %s%s", cl->uid, pos[0], pos[1], force ? " --force" : "");
	rc = prov_manual_assign(
	    cl->ctl->prov, pos[0], pos[1], force, on_engine_reply, w, err, sizeof(err));
	if (rc != 0) {
		engine_refused(cl, w);
		if (rc == -4)
			holder_error(cl, pos[1]);
		else
			reply_err(cl, "%s", err[0] ? err : "cannot assign (see the log)");
	}
}

static void
cmd_unassign(struct client *cl, int argc, const char **argv)
{
	struct waiter *w = wait_for_engine(cl, argv[0]);
	char err[512];
	int rc;

	(void)argc;
	if (!w) {
		reply_err(cl, "%s", "out of memory");
		return;
	}
	log_info("control", "uid %ld: unassign %s", cl->uid, argv[0]);
	if ((rc = prov_manual_unassign(
		 cl->ctl->prov, argv[0], on_engine_reply, w, err, sizeof(err)))
	    == 0)
		return;
	engine_refused(cl, w);
	reply_err(cl, "%s", err[0] ? err : "cannot unassign (see the log)");
}

static void
cmd_auto(struct client *cl, int argc, const char **argv)
{
	char err[512];
	cJSON *r;

	(void)argc;
	log_info("control", "uid %ld: auto %s", cl->uid, argv[0]);
	if (prov_manual_auto(cl->ctl->prov, argv[0], err, sizeof(err)) != 0) {
		reply_err(cl, "%s", err);
		return;
	}
	r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "user", argv[0]);
	cJSON_AddStringToObject(r, "state", "automatic");
	reply_ok(cl, r);
}

static cJSON *
number_result(const char *number, const char *state)
{
	cJSON *r = cJSON_CreateObject();

	cJSON_AddStringToObject(r, "number", number);
	cJSON_AddStringToObject(r, "state", state);
	return r;
}

/* reserve and unreserve: one number, one inventory call, the same replies. */
static void
reserve_or_not(struct client *cl, const char *arg, int reserve)
{
	char number[E164_STRLEN], err[256];
	int rc;

	if (canonical(arg, number, err, sizeof(err)) < 0) {
		reply_err(cl, "%s", err);
		return;
	}
	rc = reserve ? inv_reserve(cl->ctl->inv, number, np_time())
		     : inv_unreserve(cl->ctl->inv, number);
	if (rc == INV_OK) {
		np_event_emit(&(struct np_event) { .kind = reserve ? NPE_RESERVE : NPE_UNRESERVE,
		    .number = number,
		    .uid = cl->uid });
		reply_ok(cl, number_result(number, reserve ? "reserved" : "available"));
	} else if (reserve && rc == INV_E_TAKEN) {
		holder_error(cl, number);
	} else if (reserve && rc == INV_E_NORANGE) {
		reply_err(cl, "%s is in no configured range", number);
	} else if (!reserve && rc == INV_E_STATE) {
		reply_err(cl, "%s is not reserved", number);
	} else {
		reply_err(cl, "cannot %s %s: %s", reserve ? "reserve" : "unreserve", number,
		    inv_strerror(rc));
	}
}

static void
cmd_reserve(struct client *cl, int argc, const char **argv)
{
	(void)argc;
	reserve_or_not(cl, argv[0], 1);
}

static void
cmd_unreserve(struct client *cl, int argc, const char **argv)
{
	(void)argc;
	reserve_or_not(cl, argv[0], 0);
}

static void
cmd_sync(struct client *cl, int argc, const char **argv)
{
	static const char *const full_words[] = { "full", NULL };
	struct prov_stats st;
	int full = 0;
	cJSON *r;

	if (argc == 1 && !flag_word(argv[0], full_words)) {
		reply_err(cl, "%s", "usage: sync [--full]");
		return;
	}
	full = argc == 1;
	prov_get_stats(cl->ctl->prov, &st);
	log_info("control", "uid %ld: %s sync requested", cl->uid, full ? "full" : "delta");
	prov_trigger(cl->ctl->prov, full);
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "full", full);
	/* a cycle already running is not interrupted: the new one follows it */
	cJSON_AddBoolToObject(r, "queued", st.running);
	reply_ok(cl, r);
}

static void
cmd_plan(struct client *cl, int argc, const char **argv)
{
	(void)argc;
	(void)argv;
	reply_ok(cl, prov_plan(cl->ctl->prov));
}

static const struct command {
	const char *name;
	int min, max; /* arguments */
	int engine;   /* needs the provisioning engine */
	int changes;  /* changes numbers or starts work: refused while stopping */
	const char *usage;
	void (*run)(struct client *cl, int argc, const char **argv);
} commands[] = {
	{ "status", 0, 0, 1, 0, "status", cmd_status },
	{ "ranges", 0, 0, 0, 0, "ranges", cmd_ranges },
	{ "range", 1, 1, 0, 0, "range NAME", cmd_range },
	{ "users", 0, 1, 1, 0, "users [--pending|--unmatched]", cmd_users },
	{ "user", 1, 1, 1, 0, "user UPN|ID", cmd_user },
	{ "assign", 2, 3, 1, 1, "assign UPN NUMBER [--force]", cmd_assign },
	{ "unassign", 1, 1, 1, 1, "unassign UPN", cmd_unassign },
	{ "auto", 1, 1, 1, 1, "auto UPN", cmd_auto },
	{ "reserve", 1, 1, 0, 1, "reserve NUMBER", cmd_reserve },
	{ "unreserve", 1, 1, 0, 1, "unreserve NUMBER", cmd_unreserve },
	{ "sync", 0, 1, 1, 1, "sync [--full]", cmd_sync },
	{ "plan", 0, 0, 1, 0, "plan", cmd_plan },
};

static void
dispatch(struct client *cl, const char *name, int argc, const char **argv)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *cmd = &commands[i];

		if (strcmp(name, cmd->name) != 0)
			continue;
		if (argc < cmd->min || argc > cmd->max)
			reply_err(cl, "usage: %s", cmd->usage);
		else if (cl->ctl->draining && cmd->changes)
			reply_err(cl, "%s", "numprovd is stopping: no change is started now");
		else if (cmd->engine && !cl->ctl->prov)
			reply_err(cl, "%s", "the provisioning engine is not running");
		else
			cmd->run(cl, argc, argv);
		return;
	}
	{
		char shown[ECHO_BUF];
		reply_err(cl, "unknown command '%s'", echo(name, shown));
	}
}

int
control_parse(const char *line, size_t len, struct control_request *req, const char **err)
{
	const cJSON *cmd, *args, *a;

	const char *end = NULL;

	memset(req, 0, sizeof(*req));
	/* a NUL inside a string would cut the argument short silently: refused */
	if (memmem(line, len, "\\u0000", 6)) {
		*err = "a request must not contain NUL (\\u0000)";
		return -1;
	}
	req->root = cJSON_ParseWithLengthOpts(line, len, &end, 0);
	/* one object a line: anything but white space after it refuses the line */
	while (req->root && end && end < line + len && strchr(" \t\r\n", *end) && *end)
		end++;
	if (req->root && end && end < line + len) {
		cJSON_Delete(req->root);
		req->root = NULL;
	}
	cmd = cJSON_GetObjectItemCaseSensitive(req->root, "command");
	args = cJSON_GetObjectItemCaseSensitive(req->root, "args");
	if (!cJSON_IsObject(req->root))
		*err = "the request is not a JSON object: send {\"command\":...,\"args\":[...]}";
	else if (!cJSON_IsString(cmd))
		*err = "the request has no \"command\" string";
	else if (args && !cJSON_IsArray(args) && !cJSON_IsNull(args))
		*err = "\"args\" must be an array of strings";
	else
		*err = NULL;
	cJSON_ArrayForEach(a, (*err ? NULL : args))
	{
		if (!cJSON_IsString(a) || req->argc == CONTROL_MAX_ARGS) {
			*err = "\"args\" must be an array of at most 8 strings";
			break;
		}
		req->argv[req->argc++] = a->valuestring;
	}
	if (*err) {
		control_request_free(req);
		return -1;
	}
	req->command = cmd->valuestring;
	return 0;
}

void
control_request_free(struct control_request *req)
{
	cJSON_Delete(req->root);
	memset(req, 0, sizeof(*req));
}

static void
handle(struct client *cl, const char *line, size_t len)
{
	struct control_request req;
	const char *err;

	if (control_parse(line, len, &req, &err) < 0) {
		reply_err(cl, "%s", err);
		return;
	}
	log_debug("control", "uid %ld: %s", cl->uid, req.command);
	dispatch(cl, req.command, req.argc, req.argv);
	control_request_free(&req);
}

/* ---- clients ------------------------------------------------------------------ */

static void
client_free(struct client *cl)
{
	struct control *c = cl->ctl;

	if (cl->waiting)
		cl->waiting->cl = NULL;
	if (cl->prev)
		cl->prev->next = cl->next;
	else
		c->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	c->n_clients--;
	bufferevent_free(cl->bev);
	free(cl);
}

/* Stop reading; the client goes once what is queued for it has been written. */
static void
client_close(struct client *cl)
{
	cl->closing = 1;
	bufferevent_disable(cl->bev, EV_READ);
}

/*
 * The next request line, NUL-terminated, or NULL. A line longer than the limit
 * closes the client: resynchronising inside a runaway line is guesswork.
 */
static char *
next_line(struct client *cl, size_t *len)
{
	struct evbuffer *in = bufferevent_get_input(cl->bev);
	char *line = evbuffer_readln(in, len, EVBUFFER_EOL_CRLF);
	size_t left = evbuffer_get_length(in);

	if (line && *len <= CONTROL_LINE_MAX)
		return line;
	free(line);
	if (line || left > CONTROL_LINE_MAX) {
		reply_err(cl, "request line longer than %d bytes", CONTROL_LINE_MAX);
		client_close(cl);
		return NULL;
	}
	/* a last request without its newline still counts when the client has finished */
	if (!cl->eof || left == 0 || !(line = malloc(left + 1)))
		return NULL;
	*len = (size_t)evbuffer_remove(in, line, left);
	line[*len] = '\0';
	return line;
}

static int
output_full(struct client *cl)
{
	return evbuffer_get_length(bufferevent_get_output(cl->bev)) >= OUTPUT_MAX;
}

/*
 * Answer buffered requests in order; one in flight in the engine holds the rest
 * back, and so do OUTPUT_MAX bytes of replies the client has not read yet.
 */
static void
client_pump(struct client *cl)
{
	char *line;
	size_t len;

	while (!cl->waiting && !cl->closing && !output_full(cl) && (line = next_line(cl, &len))) {
		if (len > 0)
			handle(cl, line, len);
		free(line);
	}
	if (!cl->closing && output_full(cl)) {
		/* on_written takes up its requests again once it has read its replies */
		cl->paused = 1;
		bufferevent_disable(cl->bev, EV_READ);
		return;
	}
	if (!cl->waiting && cl->eof)
		client_close(cl);
	if (cl->closing && evbuffer_get_length(bufferevent_get_output(cl->bev)) == 0)
		client_free(cl);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	client_pump(arg);
}

/* Everything queued has been written (the write low watermark is 0). */
static void
on_written(struct bufferevent *bev, void *arg)
{
	struct client *cl = arg;

	(void)bev;
	if (cl->closing) {
		client_free(cl);
	} else if (cl->paused) {
		cl->paused = 0;
		bufferevent_enable(cl->bev, EV_READ);
		client_pump(cl); /* what is buffered already would wait for the next byte */
	}
}

static void
on_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *cl = arg;

	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING)) {
		log_warnx("control",
		    "uid %ld: dropped a client that read nothing for %d s with %zu "
		    "bytes of replies waiting",
		    cl->uid, STALL_TIMEOUT, evbuffer_get_length(bufferevent_get_output(bev)));
		client_free(cl);
	} else if (what & BEV_EVENT_TIMEOUT) {
		if (cl->waiting) {
			/* Teams is slow, not the client: keep waiting for it */
			bufferevent_enable(bev, EV_READ);
			return;
		}
		client_free(cl);
	} else if (what & BEV_EVENT_ERROR) {
		client_free(cl);
	} else if (what & BEV_EVENT_EOF) {
		cl->eof = 1;
		client_pump(cl);
	}
}

/*
 * Who may use the socket: root, numprovd's own user, and the members of
 * control.group (their primary group or a supplementary one). The socket's mode
 * (0660, that group) keeps others out already; this holds when the mode was
 * loosened, and says who was refused.
 */
static int
peer_allowed(const struct control *c, const struct ucred *cr)
{
	const char *group = c->cfg ? c->cfg->control.group : NULL;
	struct group *gr;
	struct passwd *pw;
	gid_t want, *groups = NULL;
	int n = 64, ok = 0;

	if (cr->uid == 0 || cr->uid == geteuid())
		return 1;
	if (!group || !*group || !(gr = getgrnam(group)))
		return 0;
	want = gr->gr_gid; /* before another lookup reuses the static entry */
	if (cr->gid == want)
		return 1;
	if (!(pw = getpwuid(cr->uid)))
		return 0;
	for (int tries = 0; tries < 2 && !ok; tries++) {
		gid_t *grown = realloc(groups, (size_t)n * sizeof(*groups));
		if (!grown)
			break;
		groups = grown;
		if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
			continue; /* n is now the count needed: once more with room for it */
		for (int i = 0; i < n; i++)
			if (groups[i] == want)
				ok = 1;
		break;
	}
	free(groups);
	return ok;
}

/* A refusal said to the client (when it still listens) and closed. */
static void
refuse(evutil_socket_t fd, const char *reply)
{
	if (send(fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
		/* the client has gone already: nothing to tell it */
	}
	evutil_closesocket(fd);
}

/* At most one line a second for refusals: a local loop of connections floods nothing. */
static int
refusal_log_ok(void)
{
	static time_t last;
	time_t now = np_time();

	if (now == last)
		return 0;
	last = now;
	return 1;
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct control *c = arg;
	struct timeval idle = { IDLE_TIMEOUT, 0 }, stall = { STALL_TIMEOUT, 0 };
	struct client *cl;

	struct ucred cred;
	socklen_t len = sizeof(cred);

	(void)l;
	(void)sa;
	(void)salen;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("control", "refused a connection whose peer cannot be known");
		evutil_closesocket(fd);
		return;
	}
	if (!peer_allowed(c, &cred)) {
		if (refusal_log_ok())
			log_warnx("control",
			    "refused a numprovctl connection from uid %ld: not root and not in "
			    "group %s",
			    (long)cred.uid,
			    c->cfg && c->cfg->control.group ? c->cfg->control.group : "-");
		refuse(fd,
		    "{\"ok\":false,\"error\":\"permission denied: not in the control "
		    "group\"}\n");
		return;
	}
	if (c->n_clients >= MAX_CLIENTS || !(cl = calloc(1, sizeof(*cl)))) {
		if (refusal_log_ok())
			log_warnx("control",
			    "refused a numprovctl connection from uid %ld: too many clients at "
			    "once "
			    "(%d)",
			    (long)cred.uid, c->n_clients);
		refuse(fd,
		    "{\"ok\":false,\"error\":\"too many numprovctl clients at once; try "
		    "again\"}\n");
		return;
	}
	if (!(cl->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE))) {
		evutil_closesocket(fd);
		free(cl);
		return;
	}
	cl->ctl = c;
	cl->uid = (long)cred.uid;
	bufferevent_setcb(cl->bev, on_read, on_written, on_client_event, cl);
	/* reading pauses at the limit, so a runaway line never costs more than that */
	bufferevent_setwatermark(cl->bev, EV_READ, 0, CONTROL_LINE_MAX + 1);
	/* the write timeout runs only while replies wait: a client that reads none */
	bufferevent_set_timeouts(cl->bev, &idle, &stall);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
	cl->next = c->clients;
	if (c->clients)
		c->clients->prev = cl;
	c->clients = cl;
	c->n_clients++;
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	struct control *c = arg;
	struct timeval pause = { 1, 0 };

	log_warn("control", "cannot accept a connection on %s", c->path);
	/* out of descriptors: a ready listener would spin the loop; wait a moment */
	evconnlistener_disable(l);
	evtimer_add(c->resume, &pause);
}

static void
on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(c->listener);
}

/* ---- the socket ------------------------------------------------------------ */

static int
sock_addr(const char *path, struct sockaddr_un *sa, char *err, size_t errlen)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!path || !*path || strlen(path) >= sizeof(sa->sun_path)) {
		snprintf(err, errlen, "control.socket '%s' is empty or longer than %zu bytes",
		    path ? path : "", sizeof(sa->sun_path) - 1);
		return -1;
	}
	memcpy(sa->sun_path, path, strlen(path));
	return 0;
}

/* A socket left by a numprovd that died goes; one a live process answers on stays. */
static int
clear_stale(const char *path, const struct sockaddr_un *sa, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc, e;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "cannot check %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
		    "%s exists and is not a socket; remove it or change "
		    "control.socket",
		    path);
		return -1;
	}
	/* non-blocking: a live listener with a full backlog answers EAGAIN, not a hang */
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
		return -1;
	}
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	e = errno;
	close(fd);
	if (rc == 0 || e == EAGAIN || e == EINPROGRESS) {
		snprintf(err, errlen,
		    "another process is answering on %s (is numprovd already "
		    "running?)",
		    path);
		return -1;
	}
	if (e != ECONNREFUSED) {
		snprintf(err, errlen, "cannot check %s: %s", path, strerror(e));
		return -1;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		snprintf(
		    err, errlen, "cannot remove the stale socket %s: %s", path, strerror(errno));
		return -1;
	}
	log_info("control", "removed the stale socket %s", path);
	return 0;
}

/* /run/numprov is made by the service manager; a daemon started by hand makes it itself. */
static void
make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	if (!(slash = strrchr(dir, '/')) || slash == dir)
		return;
	*slash = '\0';
	if (mkdir(dir, 0755) == 0)
		log_info("control", "created %s", dir);
}

static void
set_group(const char *path, const char *group)
{
	struct group *gr;

	if (!group || !*group)
		return;
	if (!(gr = getgrnam(group))) {
		log_warnx(
		    "control", "group '%s' does not exist: only root can use %s", group, path);
		return;
	}
	if (chown(path, (uid_t)-1, gr->gr_gid) < 0)
		log_warn("control", "cannot give %s to group %s", path, group);
}

static int
open_socket(const char *path, const char *group, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	mode_t old;
	int fd, rc;

	if (sock_addr(path, &sa, err, errlen) < 0 || clear_stale(path, &sa, err, errlen) < 0)
		return -1;
	make_parent(path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
		return -1;
	}
	/* born 0660: there is no moment in which others could connect */
	old = umask(0117);
	rc = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0) {
		snprintf(err, errlen, "cannot bind %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	set_group(path, group);
	if (listen(fd, 16) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

static struct evconnlistener *
listen_on(struct control *c, const char *path, const char *group, char *err, size_t errlen)
{
	struct evconnlistener *l;
	int fd = open_socket(path, group, err, errlen);

	if (fd < 0)
		return NULL;
	/* backlog 0: the socket listens already */
	l = evconnlistener_new(
	    c->base, on_accept, c, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (!l) {
		snprintf(err, errlen, "cannot watch %s", path);
		unlink(path);
		close(fd);
		return NULL;
	}
	evconnlistener_set_error_cb(l, on_accept_error);
	log_info("control", "listening on %s", path);
	return l;
}

struct control *
control_new(struct event_base *base, struct config *cfg, struct prov *p, struct inventory *inv,
    char *err, size_t errlen)
{
	struct control *c = calloc(1, sizeof(*c));

	if (!c || !(c->path = strdup(cfg->control.socket ? cfg->control.socket : ""))
	    || !(c->resume = evtimer_new(base, on_resume, c))) {
		snprintf(err, errlen, "%s", "out of memory");
		goto fail;
	}
	c->base = base;
	c->cfg = config_ref(cfg);
	c->prov = p;
	c->inv = inv;
	if (!(c->listener = listen_on(c, c->path, cfg->control.group, err, errlen)))
		goto fail;
	return c;
fail:
	if (c) {
		config_free(c->cfg);
		if (c->resume)
			event_free(c->resume);
		free(c->path);
		free(c);
	}
	return NULL;
}

/* A new path is opened before the old one closes; if it cannot be, the old one stays. */
static void
move_socket(struct control *c, const char *path, const char *group)
{
	char err[512], *copy = strdup(path);
	struct evconnlistener *l;

	if (!copy || !(l = listen_on(c, path, group, err, sizeof(err)))) {
		log_err("control", "control socket stays at %s: %s", c->path,
		    copy ? err : "out of memory");
		free(copy);
		return;
	}
	event_del(c->resume);
	evconnlistener_free(c->listener);
	unlink(c->path);
	free(c->path);
	c->listener = l;
	c->path = copy;
}

void
control_set_status_hook(struct control *c, control_status_fn fn, void *arg)
{
	c->status_hook = fn;
	c->status_arg = arg;
}

void
control_set_config(struct control *c, struct config *cfg)
{
	if (!c)
		return;
	config_free(c->cfg); /* the daemon still holds it: this only drops our reference */
	c->cfg = config_ref(cfg);
	if (cfg->control.socket && strcmp(cfg->control.socket, c->path) != 0)
		move_socket(c, cfg->control.socket, cfg->control.group);
	else
		set_group(c->path, cfg->control.group);
}

void
control_drain(struct control *c)
{
	if (c)
		c->draining = 1;
}

void
control_free(struct control *c)
{
	if (!c)
		return;
	while (c->clients) {
		struct client *cl = c->clients;

		/* an answer the engine gave while the daemon stopped is still worth sending */
		evbuffer_write(bufferevent_get_output(cl->bev), bufferevent_getfd(cl->bev));
		client_free(cl);
	}
	evconnlistener_free(c->listener);
	unlink(c->path);
	event_free(c->resume);
	config_free(c->cfg);
	free(c->path);
	free(c);
}
