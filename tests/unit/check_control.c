/*
 * The control socket: request parsing, and the commands answered through a real
 * socket on a real event loop, over a real inventory. There is no provisioning
 * engine (prov = NULL): the commands that need it must say it is not running.
 */
#include "build-config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "inventory.h"
#include "log.h"
#include "testutil.h"
#include "utf8.h"

#define T0 1800000000 /* a fixed "now" for what the tests store themselves */
#define WAIT_MS 5000  /* how long a reply may take */

static char dir[64];
static char sock_path[96];
static char err[8192];
static char logged[16384];
static struct config *cfg;
static struct inventory *inv;
static struct event_base *base;
static struct control *ctl;

/* ---- the fixture ---------------------------------------------------------- */

/*
 * Three ranges, one of each type: "a" with a reservation in the config file,
 * "b" that reaches its warning level with two numbers, "c" of four numbers.
 */
static const char ranges_text[]
    = "{ name = \"a\"; type = \"direct-routing\"; provider = \"Gamma\";\n"
      "  first = \"+441235000000\"; last = \"+441235000099\"; warn_percent = 50;\n"
      "  reserved = [ \"+441235000000\" ]; },\n"
      "{ name = \"b\"; type = \"calling-plan\"; provider = \"Microsoft\";\n"
      "  first = \"+442071230000\"; last = \"+442071230009\"; warn_percent = 20; },\n"
      "{ name = \"c\"; type = \"operator-connect\";\n"
      "  first = \"+441612000000\"; last = \"+441612000003\"; }\n";

static void
capture_log(int prio, const char *token, const char *msg)
{
	size_t used = strlen(logged);

	(void)prio;
	snprintf(logged + used, sizeof(logged) - used, "%s: %s\n", token ? token : "", msg);
}

static void
setup(void)
{
	char path[128], text[8192];
	FILE *f;

	snprintf(dir, sizeof(dir), "/tmp/numprov-ctl-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/control.sock", dir);
	snprintf(path, sizeof(path), "%s/numprovd.conf", dir);
	snprintf(text, sizeof(text),
	    "tenant: { id = \"t\"; client_id = \"11111111-2222-3333-4444-555555555555\";\n"
	    "  client_secret_file = \"/s\"; };\n"
	    "database: { path = \"%s/db\"; durable = false; };\n"
	    "control: { socket = \"%s\"; group = \"\"; };\n"
	    "ranges = (\n%s);\n",
	    dir, sock_path, ranges_text);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	cfg = config_load(path, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);

	logged[0] = '\0';
	log_register(capture_log);
	snprintf(path, sizeof(path), "%s/db", dir);
	ck_assert_int_eq(inv_open(path, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_OK);
	ck_assert_int_eq(inv_sync_ranges(inv, cfg, T0), INV_OK);
	ck_assert_ptr_nonnull(base = event_base_new());
	ctl = control_new(base, cfg, NULL, inv, err, sizeof(err));
	ck_assert_msg(ctl != NULL, "control_new: %s", err);
}

static void
teardown(void)
{
	char cmd[128];

	control_free(ctl);
	event_base_free(base);
	inv_close(inv);
	config_free(cfg);
	log_register(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* ---- a client --------------------------------------------------------------- */

struct client {
	int fd;
	char buf[256 * 1024]; /* what arrived and has not been taken as a line yet */
	size_t len;
	int eof;     /* the daemon closed the connection */
	int refused; /* ... before it had read all the client sent */
};

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct client *
client_open(void)
{
	struct client *cl = calloc(1, sizeof(*cl));
	struct sockaddr_un sa;

	ck_assert_ptr_nonnull(cl);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	cl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(cl->fd, 0);
	ck_assert_msg(connect(cl->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
	    sock_path, strerror(errno));
	return cl;
}

static void
client_close(struct client *cl)
{
	close(cl->fd);
	free(cl);
}

/* One turn of the daemon's loop, then whatever the socket has for the client. */
static void
pump(struct client *cl)
{
	struct pollfd p = { .fd = cl->fd, .events = POLLIN };
	ssize_t n;

	ck_assert_int_ge(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	if (poll(&p, 1, 5) <= 0 || cl->eof)
		return;
	n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, 0);
	if (n > 0)
		cl->len += (size_t)n;
	else if (n == 0 || (errno != EAGAIN && errno != EINTR))
		cl->eof = 1; /* a closed peer that left our bytes unread resets: also the end */
	ck_assert_msg(cl->len < sizeof(cl->buf), "more than %zu bytes of replies", cl->len);
}

/* Write all of data, running the loop while the socket is full. */
static void
client_send(struct client *cl, const char *data, size_t len)
{
	long until = now_ms() + WAIT_MS;

	while (len > 0) {
		ssize_t n = send(cl->fd, data, len, MSG_NOSIGNAL);

		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
			cl->refused = 1; /* the daemon closed: what it said is still to be read */
			return;
		}
		ck_assert_msg(n < 0 && errno == EAGAIN, "send: %s", strerror(errno));
		ck_assert_msg(now_ms() < until, "the daemon reads nothing");
		pump(cl);
	}
}

static void
client_send_str(struct client *cl, const char *text)
{
	client_send(cl, text, strlen(text));
}

/* The next reply line (without its newline, malloc'd), or NULL when none came. */
static char *
client_line(struct client *cl, int wait_ms)
{
	long until = now_ms() + wait_ms;
	char *nl, *line;
	size_t n;

	while (!(nl = memchr(cl->buf, '\n', cl->len)) && !cl->eof && now_ms() < until)
		pump(cl);
	if (!nl)
		return NULL;
	n = (size_t)(nl - cl->buf);
	ck_assert_ptr_nonnull(line = malloc(n + 1));
	memcpy(line, cl->buf, n);
	line[n] = '\0';
	memmove(cl->buf, nl + 1, cl->len - n - 1);
	cl->len -= n + 1;
	return line;
}

/* Run the loop until the daemon closes the connection. */
static void
client_wait_closed(struct client *cl)
{
	long until = now_ms() + WAIT_MS;

	while (!cl->eof && now_ms() < until)
		pump(cl);
	ck_assert_msg(cl->eof, "the daemon kept the connection open");
}

/*
 * A reply is one line of JSON: {"ok":true,"result":...} or {"ok":false,"error":"..."},
 * nothing before or after the object, and an error with no control characters in it.
 */
static cJSON *
parse_reply(const char *line)
{
	const char *end = NULL;
	cJSON *r, *ok, *e;

	ck_assert_msg(strchr(line, '\n') == NULL && strchr(line, '\r') == NULL, "%s", line);
	r = cJSON_ParseWithOpts(line, &end, 1);
	ck_assert_msg(r != NULL, "not JSON: %s", line);
	ck_assert_msg(cJSON_IsObject(r), "not an object: %s", line);
	ck_assert_msg(cJSON_GetArraySize(r) == 2, "not two members: %s", line);
	ok = cJSON_GetObjectItemCaseSensitive(r, "ok");
	ck_assert_msg(cJSON_IsBool(ok), "no \"ok\": %s", line);
	if (cJSON_IsTrue(ok)) {
		ck_assert_msg(cJSON_GetObjectItemCaseSensitive(r, "result") != NULL, "%s", line);
	} else {
		e = cJSON_GetObjectItemCaseSensitive(r, "error");
		ck_assert_msg(cJSON_IsString(e) && e->valuestring[0], "no error: %s", line);
		for (const char *s = e->valuestring; *s; s++)
			ck_assert_msg((unsigned char)*s >= 0x20, "control byte in: %s", line);
	}
	/* JSON is UTF-8: cJSON would have taken any byte */
	for (const char *s = line; *s; s += utf8_char_len(s))
		ck_assert_msg(utf8_char_len(s) > 0, "a byte that is not UTF-8 in: %s", line);
	return r;
}

static cJSON *
client_reply(struct client *cl)
{
	char *line = client_line(cl, WAIT_MS);
	cJSON *r;

	ck_assert_msg(
	    line != NULL, "no reply (closed: %d, %zu bytes of a partial line)", cl->eof, cl->len);
	r = parse_reply(line);
	free(line);
	return r;
}

/* {"command":cmd,"args":[...]} and its newline: arguments need no escaping by hand. */
static char *
request_text(const char *cmd, int argc, const char *const *argv)
{
	cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "args");
	char *text, *line;

	cJSON_AddStringToObject(o, "command", cmd);
	for (int i = 0; i < argc; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(argv[i]));
	ck_assert_ptr_nonnull(text = cJSON_PrintUnformatted(o));
	ck_assert_ptr_nonnull(line = malloc(strlen(text) + 2));
	sprintf(line, "%s\n", text);
	free(text);
	cJSON_Delete(o);
	return line;
}

static cJSON *
call(struct client *cl, const char *cmd, int argc, const char *const *argv)
{
	char *text = request_text(cmd, argc, argv);

	client_send_str(cl, text);
	free(text);
	ck_assert_int_eq(cl->refused, 0);
	return client_reply(cl);
}

/* One request on a connection of its own. */
static cJSON *
call1(const char *cmd, int argc, const char *const *argv)
{
	struct client *cl = client_open();
	cJSON *r = call(cl, cmd, argc, argv);

	client_close(cl);
	return r;
}

static const cJSON *
result_of(const cJSON *reply)
{
	char *text = cJSON_PrintUnformatted(reply);

	ck_assert_msg(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")), "%s", text);
	free(text);
	return cJSON_GetObjectItemCaseSensitive(reply, "result");
}

static const char *
error_of(const cJSON *reply)
{
	char *text = cJSON_PrintUnformatted(reply);

	ck_assert_msg(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(reply, "ok")), "%s", text);
	free(text);
	return cJSON_GetObjectItemCaseSensitive(reply, "error")->valuestring;
}

static void
assert_error(const cJSON *reply, const char *want)
{
	ck_assert_str_eq(error_of(reply), want);
}

static const char *
str_member(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	ck_assert_msg(cJSON_IsString(v), "no string \"%s\"", key);
	return v->valuestring;
}

static double
num_member(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	ck_assert_msg(cJSON_IsNumber(v), "no number \"%s\"", key);
	return v->valuedouble;
}

/* The state the inventory holds for a number (INV_AVAILABLE when it has no record). */
static int
state_of(const char *number)
{
	struct inv_number n;
	int rc = inv_get_number(inv, number, &n);

	if (rc == INV_E_NOTFOUND)
		return INV_AVAILABLE;
	ck_assert_int_eq(rc, INV_OK);
	return n.state;
}

/*
 * Numbers in every state: in "a" 001 pending for u1, 002 assigned to u2, 003
 * quarantined after u3, 010 and 011 reserved (000 by the config); "b" two
 * reserved; "c" all four reserved.
 */
static void
fill_inventory(void)
{
	static const char *const reserve[]
	    = { "+441235000010", "+441235000011", "+442071230005", "+442071230007", "+441612000000",
		      "+441612000001", "+441612000002", "+441612000003" };
	struct inv_number n;

	ck_assert_int_eq(inv_allocate(inv, "a", "id-u1", "u1@example.com", T0, &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235000001");
	ck_assert_int_eq(inv_allocate(inv, "a", "id-u2", "u2@example.com", T0, &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235000002");
	ck_assert_int_eq(inv_confirm(inv, n.number, "id-u2", T0), INV_OK);
	ck_assert_int_eq(inv_allocate(inv, "a", "id-u3", "u3@example.com", T0, &n), INV_OK);
	ck_assert_str_eq(n.number, "+441235000003");
	ck_assert_int_eq(inv_confirm(inv, n.number, "id-u3", T0), INV_OK);
	ck_assert_int_eq(inv_release(inv, "id-u3", 30, T0, &n), INV_OK);
	for (size_t i = 0; i < sizeof(reserve) / sizeof(reserve[0]); i++)
		ck_assert_int_eq(inv_reserve(inv, reserve[i], T0), INV_OK);
}

/* ---- control_parse ---------------------------------------------------------- */

#define E_NOT_OBJECT "the request is not a JSON object: send {\"command\":...,\"args\":[...]}"
#define E_NO_COMMAND "the request has no \"command\" string"
#define E_ARGS_TYPE "\"args\" must be an array of strings"
#define E_ARGS "\"args\" must be an array of at most 8 strings"

static const struct parse_row {
	const char *line;
	const char *command; /* NULL: the line is refused */
	int argc;
	const char *error;
} parse_rows[] = {
	{ "{\"command\":\"ranges\"}", "ranges", 0, NULL },
	{ "{\"command\":\"ranges\",\"args\":[]}", "ranges", 0, NULL },
	{ "{\"command\":\"ranges\",\"args\":null}", "ranges", 0, NULL },
	{ "{\"args\":[\"1\"],\"command\":\"x\"}", "x", 1, NULL },
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\"]}", "x", 2, NULL },
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\",\"3\"]}", "x", 3, NULL },
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\",\"3\",\"4\"]}", "x", 4, NULL },
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", "x", 5, NULL },
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\"]}", "x", 6, NULL },
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\"]}", "x", 7,
	    NULL },
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\"]}", "x", 8,
	    NULL },
	{ " \t{ \"command\" : \"\" , \"extra\" : {\"a\":[1]} }\t ", "", 0, NULL },
	{ "{\"command\":\"reserve\",\"args\":[\"+44 1235 000123\"]}", "reserve", 1, NULL },
	/* refused */
	{ "{\"command\":\"x\",\"args\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}",
	    NULL, 0, E_ARGS },
	{ "{}", NULL, 0, E_NO_COMMAND }, { "{\"args\":[]}", NULL, 0, E_NO_COMMAND },
	{ "{\"Command\":\"ranges\"}", NULL, 0, E_NO_COMMAND },
	{ "{\"command\":1}", NULL, 0, E_NO_COMMAND },
	{ "{\"command\":null}", NULL, 0, E_NO_COMMAND },
	{ "{\"command\":true}", NULL, 0, E_NO_COMMAND },
	{ "{\"command\":[\"ranges\"]}", NULL, 0, E_NO_COMMAND },
	{ "{\"command\":{\"name\":\"ranges\"}}", NULL, 0, E_NO_COMMAND },
	{ "{\"command\":\"x\",\"args\":{}}", NULL, 0, E_ARGS_TYPE },
	{ "{\"command\":\"x\",\"args\":\"a\"}", NULL, 0, E_ARGS_TYPE },
	{ "{\"command\":\"x\",\"args\":1}", NULL, 0, E_ARGS_TYPE },
	{ "{\"command\":\"x\",\"args\":false}", NULL, 0, E_ARGS_TYPE },
	{ "{\"command\":\"x\",\"args\":[1]}", NULL, 0, E_ARGS },
	{ "{\"command\":\"x\",\"args\":[\"a\",2]}", NULL, 0, E_ARGS },
	{ "{\"command\":\"x\",\"args\":[\"a\",null]}", NULL, 0, E_ARGS },
	{ "{\"command\":\"x\",\"args\":[[\"a\"]]}", NULL, 0, E_ARGS },
	{ "{\"command\":\"x\",\"args\":[{\"a\":\"b\"}]}", NULL, 0, E_ARGS },
	{ "ranges", NULL, 0, E_NOT_OBJECT }, { "", NULL, 0, E_NOT_OBJECT },
	{ "   ", NULL, 0, E_NOT_OBJECT }, { "[\"ranges\"]", NULL, 0, E_NOT_OBJECT },
	{ "\"ranges\"", NULL, 0, E_NOT_OBJECT }, { "42", NULL, 0, E_NOT_OBJECT },
	{ "null", NULL, 0, E_NOT_OBJECT }, { "{\"command\":\"ranges\"", NULL, 0, E_NOT_OBJECT },
	{ "{\"command\":\"ranges\",}", NULL, 0, E_NOT_OBJECT },
	{ "{'command':'ranges'}", NULL, 0, E_NOT_OBJECT },
	/*
	 * Trailing garbage after the object: see control_parse_trailing_garbage, kept
	 * out of this table while control_parse accepts it.
	 */
};
#define N_PARSE (int)(sizeof(parse_rows) / sizeof(parse_rows[0]))

START_TEST(control_parse_table)
{
	const struct parse_row *row = &parse_rows[_i];
	struct control_request req;
	const char *why = "unset";
	int rc = control_parse(row->line, strlen(row->line), &req, &why);

	if (!row->command) {
		ck_assert_msg(rc == -1, "row %d accepted: %s", _i, row->line);
		ck_assert_ptr_nonnull(why);
		ck_assert_str_eq(why, row->error);
		ck_assert_ptr_null(strchr(why, '\n'));
		ck_assert_ptr_null(req.root); /* nothing left to free */
		ck_assert_ptr_null(req.command);
		ck_assert_int_eq(req.argc, 0);
		return;
	}
	ck_assert_msg(rc == 0, "row %d refused (%s): %s", _i, why, row->line);
	ck_assert_ptr_null(why);
	ck_assert_ptr_nonnull(req.root);
	ck_assert_str_eq(req.command, row->command);
	ck_assert_int_eq(req.argc, row->argc);
	for (int i = 0; i < req.argc; i++) {
		char want[16];

		snprintf(want, sizeof(want), "%d", i + 1);
		if (strcmp(row->command, "x") == 0)
			ck_assert_str_eq(req.argv[i], want);
		else
			ck_assert_ptr_nonnull(req.argv[i]);
	}
	for (int i = req.argc; i < CONTROL_MAX_ARGS; i++)
		ck_assert_ptr_null(req.argv[i]);
	control_request_free(&req);
	ck_assert_ptr_null(req.root);
}
END_TEST

/* Only len bytes are the request: what follows in the buffer is not read. */
START_TEST(control_parse_reads_only_len_bytes)
{
	static const char buf[] = "{\"command\":\"ranges\"}{\"command\":\"plan\"}";
	struct control_request req;
	const char *why = NULL;

	ck_assert_int_eq(control_parse(buf, 20, &req, &why), 0);
	ck_assert_str_eq(req.command, "ranges");
	control_request_free(&req);
	ck_assert_int_eq(control_parse(buf, 19, &req, &why), -1);
	ck_assert_str_eq(why, E_NOT_OBJECT);
}
END_TEST

/* ---- through the socket: ranges and range --------------------------------- */

static const struct range_row {
	const char *name, *type, *provider, *first, *last;
	double size, assigned, pending, available, reserved, quarantined, utilisation;
	int warn_percent;
	const char *status;
} range_rows[] = {
	{ "a", "direct-routing", "Gamma", "+441235000000", "+441235000099", 100, 1, 1, 94, 3, 1,
	    6.0, 50, "ok" },
	{ "b", "calling-plan", "Microsoft", "+442071230000", "+442071230009", 10, 0, 0, 8, 2, 0,
	    20.0, 20, "warning" },
	{ "c", "operator-connect", "", "+441612000000", "+441612000003", 4, 0, 0, 0, 4, 0, 100.0,
	    90, "exhausted" },
};
#define N_RANGES (int)(sizeof(range_rows) / sizeof(range_rows[0]))

START_TEST(ranges_reports_every_field)
{
	static const char *const fields[] = { "name", "index", "type", "provider", "first", "last",
		"size", "assigned", "pending", "available", "reserved", "quarantined",
		"utilisation", "warn_percent", "status" };
	cJSON *reply;
	const cJSON *arr, *o;
	int i = 0;

	fill_inventory();
	reply = call1("ranges", 0, NULL);
	arr = result_of(reply);
	ck_assert(cJSON_IsArray(arr));
	ck_assert_int_eq(cJSON_GetArraySize(arr), N_RANGES);
	cJSON_ArrayForEach(o, arr)
	{
		const struct range_row *w = &range_rows[i++];
		struct inv_range r;

		ck_assert_int_eq(cJSON_GetArraySize(o), (int)(sizeof(fields) / sizeof(fields[0])));
		for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
			ck_assert_msg(cJSON_GetObjectItemCaseSensitive(o, fields[f]), "%s: no %s",
			    w->name, fields[f]);
		/* what the table expects */
		ck_assert_str_eq(str_member(o, "name"), w->name);
		ck_assert_str_eq(str_member(o, "type"), w->type);
		ck_assert_str_eq(str_member(o, "provider"), w->provider);
		ck_assert_str_eq(str_member(o, "first"), w->first);
		ck_assert_str_eq(str_member(o, "last"), w->last);
		ck_assert_double_eq(num_member(o, "size"), w->size);
		ck_assert_double_eq(num_member(o, "assigned"), w->assigned);
		ck_assert_double_eq(num_member(o, "pending"), w->pending);
		ck_assert_double_eq(num_member(o, "available"), w->available);
		ck_assert_double_eq(num_member(o, "reserved"), w->reserved);
		ck_assert_double_eq(num_member(o, "quarantined"), w->quarantined);
		ck_assert_double_eq_tol(num_member(o, "utilisation"), w->utilisation, 1e-9);
		ck_assert_double_eq(num_member(o, "warn_percent"), w->warn_percent);
		ck_assert_str_eq(str_member(o, "status"), w->status);
		/* and what the inventory holds */
		ck_assert_int_eq(inv_get_range(inv, w->name, &r), INV_OK);
		ck_assert_double_eq(num_member(o, "index"), r.index);
		ck_assert_str_eq(str_member(o, "provider"), r.provider);
		ck_assert_str_eq(str_member(o, "first"), r.first);
		ck_assert_str_eq(str_member(o, "last"), r.last);
		ck_assert_double_eq(num_member(o, "size"), (double)r.size);
		ck_assert_double_eq(num_member(o, "assigned"), (double)r.count[INV_ASSIGNED]);
		ck_assert_double_eq(num_member(o, "pending"), (double)r.count[INV_PENDING]);
		ck_assert_double_eq(num_member(o, "reserved"), (double)r.count[INV_RESERVED]);
		ck_assert_double_eq(num_member(o, "quarantined"), (double)r.count[INV_QUARANTINED]);
		ck_assert_double_eq(num_member(o, "available"),
		    (double)(r.size - r.count[INV_RESERVED] - r.count[INV_PENDING]
			- r.count[INV_ASSIGNED] - r.count[INV_QUARANTINED]));
	}
	/* the indexes are the inventory's stable ones: distinct */
	ck_assert_double_ne(num_member(cJSON_GetArrayItem(arr, 0), "index"),
	    num_member(cJSON_GetArrayItem(arr, 1), "index"));
	ck_assert_double_ne(num_member(cJSON_GetArrayItem(arr, 1), "index"),
	    num_member(cJSON_GetArrayItem(arr, 2), "index"));
	cJSON_Delete(reply);
}
END_TEST

/* Before anything is used: the config's one reservation and nothing else. */
START_TEST(ranges_of_a_fresh_inventory)
{
	cJSON *reply = call1("ranges", 0, NULL);
	const cJSON *arr = result_of(reply), *a = cJSON_GetArrayItem(arr, 0),
		    *c = cJSON_GetArrayItem(arr, 2);

	ck_assert_int_eq(cJSON_GetArraySize(arr), 3);
	ck_assert_double_eq(num_member(a, "reserved"), 1);
	ck_assert_double_eq(num_member(a, "available"), 99);
	ck_assert_double_eq_tol(num_member(a, "utilisation"), 1.0, 1e-9);
	ck_assert_str_eq(str_member(a, "status"), "ok");
	ck_assert_double_eq(num_member(c, "available"), 4);
	ck_assert_double_eq(num_member(c, "utilisation"), 0);
	ck_assert_str_eq(str_member(c, "status"), "ok");
	cJSON_Delete(reply);
}
END_TEST

static const struct number_row {
	const char *range, *number, *state, *user;
	int config, until;
} number_rows[] = {
	{ "a", "+441235000000", "reserved", NULL, 1, 0 },
	{ "a", "+441235000001", "pending", "u1@example.com", 0, 0 },
	{ "a", "+441235000002", "assigned", "u2@example.com", 0, 0 },
	{ "a", "+441235000003", "quarantined", NULL, 0, 1 },
	{ "a", "+441235000010", "reserved", NULL, 0, 0 },
	{ "a", "+441235000011", "reserved", NULL, 0, 0 },
	{ "b", "+442071230005", "reserved", NULL, 0, 0 },
	{ "b", "+442071230007", "reserved", NULL, 0, 0 },
	{ "c", "+441612000000", "reserved", NULL, 0, 0 },
	{ "c", "+441612000001", "reserved", NULL, 0, 0 },
	{ "c", "+441612000002", "reserved", NULL, 0, 0 },
	{ "c", "+441612000003", "reserved", NULL, 0, 0 },
};
#define N_NUMBERS (int)(sizeof(number_rows) / sizeof(number_rows[0]))

/* `range NAME` lists exactly the range's numbers that are not available. */
START_TEST(range_lists_numbers_with_state)
{
	static const char *const names[] = { "a", "b", "c" };
	struct client *cl;

	fill_inventory();
	cl = client_open();
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		cJSON *reply = call(cl, "range", 1, &names[k]);
		const cJSON *arr = result_of(reply), *o;
		int want = 0, seen = 0;

		ck_assert(cJSON_IsArray(arr));
		for (int i = 0; i < N_NUMBERS; i++)
			want += strcmp(number_rows[i].range, names[k]) == 0;
		ck_assert_int_eq(cJSON_GetArraySize(arr), want);
		cJSON_ArrayForEach(o, arr)
		{
			const char *number = str_member(o, "number");
			const struct number_row *w = NULL;
			const cJSON *user = cJSON_GetObjectItemCaseSensitive(o, "user");
			struct inv_number n;

			for (int i = 0; i < N_NUMBERS && !w; i++)
				if (strcmp(number_rows[i].number, number) == 0)
					w = &number_rows[i];
			ck_assert_msg(w != NULL, "range %s lists %s", names[k], number);
			ck_assert_str_eq(w->range, names[k]);
			ck_assert_str_eq(str_member(o, "state"), w->state);
			ck_assert_int_eq(inv_get_number(inv, number, &n), INV_OK);
			ck_assert_str_eq(str_member(o, "state"), inv_state_name(n.state));
			ck_assert_str_eq(str_member(o, "user_id"), n.user_id);
			ck_assert(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "since")));
			if (w->user)
				ck_assert_str_eq(cJSON_GetStringValue(user), w->user);
			else
				ck_assert_ptr_null(user);
			ck_assert_int_eq(
			    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "config")), w->config);
			ck_assert_int_eq(
			    cJSON_GetObjectItemCaseSensitive(o, "until") != NULL, w->until);
			seen++;
		}
		ck_assert_int_eq(seen, want);
		cJSON_Delete(reply);
	}
	client_close(cl);
}
END_TEST

START_TEST(range_of_an_unused_range_is_empty)
{
	const char *name = "b";
	cJSON *reply = call1("range", 1, &name);

	ck_assert_int_eq(cJSON_GetArraySize(result_of(reply)), 0);
	ck_assert(cJSON_IsArray(result_of(reply)));
	cJSON_Delete(reply);
}
END_TEST

START_TEST(range_unknown_is_an_error)
{
	static const char *const names[] = { "nosuch", "A", "", "a\nb" };
	static const char *const want[] = { "no range named 'nosuch'", "no range named 'A'",
		"no range named ''", "no range named 'a\\x0ab'" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		cJSON *reply = call1("range", 1, &names[i]);

		assert_error(reply, want[i]);
		cJSON_Delete(reply);
	}
}
END_TEST

/* ---- reserve and unreserve ---------------------------------------------------- */

static const struct reserve_row {
	const char *cmd, *arg;
	const char *number;   /* the canonical number of an ok reply */
	const char *error;    /* the whole error; NULL when ok */
	const char *prefix;   /* or only its beginning */
	const char *check;    /* the number whose state is checked after, NULL none */
	enum inv_state state; /* ... and the state it must be in */
} reserve_rows[] = {
	/* reserving */
	{ "reserve", "+441235000050", "+441235000050", NULL, NULL, "+441235000050", INV_RESERVED },
	{ "reserve", "+44 1235 000051", "+441235000051", NULL, NULL, "+441235000051",
	    INV_RESERVED },
	{ "reserve", "tel:+44-1235-000052", "+441235000052", NULL, NULL, "+441235000052",
	    INV_RESERVED },
	{ "reserve", "+441235000010", "+441235000010", NULL, NULL, "+441235000010", INV_RESERVED },
	{ "reserve", "+441235000000", "+441235000000", NULL, NULL, "+441235000000", INV_RESERVED },
	{ "reserve", "+441235000003", "+441235000003", NULL, NULL, "+441235000003", INV_RESERVED },
	{ "reserve", "+442071230009", "+442071230009", NULL, NULL, "+442071230009", INV_RESERVED },
	{ "reserve", "+441235000001", NULL,
	    "+441235000001 is already taken: it is being assigned to u1@example.com", NULL,
	    "+441235000001", INV_PENDING },
	{ "reserve", "+441235000002", NULL,
	    "+441235000002 is already taken: it is assigned to u2@example.com", NULL,
	    "+441235000002", INV_ASSIGNED },
	{ "reserve", "+441235000100", NULL, "+441235000100 is in no configured range", NULL,
	    "+441235000100", INV_AVAILABLE },
	{ "reserve", "+33123456789", NULL, "+33123456789 is in no configured range", NULL,
	    "+33123456789", INV_AVAILABLE },
	{ "reserve", "+441235000000;ext=5", NULL, "+441235000000;ext=5 is in no configured range",
	    NULL, NULL, INV_AVAILABLE },
	{ "reserve", "not-a-number", NULL, NULL, "'not-a-number' is not a phone number: ", NULL,
	    INV_AVAILABLE },
	{ "reserve", "+44", NULL, NULL, "'+44' is not a phone number: ", NULL, INV_AVAILABLE },
	{ "reserve", "", NULL, NULL, "'' is not a phone number: ", NULL, INV_AVAILABLE },
	{ "reserve", "+4412350000\n51", NULL, NULL,
	    "'+4412350000\\x0a51' is not a phone number: ", NULL, INV_AVAILABLE },
	/* unreserving */
	{ "unreserve", "+441235000010", "+441235000010", NULL, NULL, "+441235000010",
	    INV_AVAILABLE },
	{ "unreserve", "+44 1235 000011", "+441235000011", NULL, NULL, "+441235000011",
	    INV_AVAILABLE },
	{ "unreserve", "+441235000050", NULL, "+441235000050 is not reserved", NULL,
	    "+441235000050", INV_AVAILABLE },
	{ "unreserve", "+441235000001", NULL, "+441235000001 is not reserved", NULL,
	    "+441235000001", INV_PENDING },
	{ "unreserve", "+441235000002", NULL, "+441235000002 is not reserved", NULL,
	    "+441235000002", INV_ASSIGNED },
	{ "unreserve", "+441235000003", NULL, "+441235000003 is not reserved", NULL,
	    "+441235000003", INV_QUARANTINED },
	{ "unreserve", "+441235000100", NULL, "+441235000100 is not reserved", NULL, NULL,
	    INV_AVAILABLE },
	{ "unreserve", "+441235000000", NULL,
	    "cannot unreserve +441235000000: the number is reserved by the config file; change "
	    "it there",
	    NULL, "+441235000000", INV_RESERVED },
	{ "unreserve", "junk", NULL, NULL, "'junk' is not a phone number: ", NULL, INV_AVAILABLE },
};
#define N_RESERVE (int)(sizeof(reserve_rows) / sizeof(reserve_rows[0]))

START_TEST(reserve_unreserve_table)
{
	const struct reserve_row *row = &reserve_rows[_i];
	cJSON *reply;
	char want_event[128];

	fill_inventory();
	logged[0] = '\0';
	reply = call1(row->cmd, 1, &row->arg);
	if (row->number) {
		const cJSON *r = result_of(reply);
		const char *state = strcmp(row->cmd, "reserve") == 0 ? "reserved" : "available";

		ck_assert_int_eq(cJSON_GetArraySize(r), 2);
		ck_assert_str_eq(str_member(r, "number"), row->number);
		ck_assert_str_eq(str_member(r, "state"), state);
		snprintf(want_event, sizeof(want_event), "event=%s", row->cmd);
		ck_assert_msg(strstr(logged, want_event) && strstr(logged, row->number),
		    "no %s event for %s in:\n%s", row->cmd, row->number, logged);
	} else if (row->error) {
		assert_error(reply, row->error);
		ck_assert_ptr_null(strstr(logged, "event="));
	} else {
		const char *e = error_of(reply);

		ck_assert_msg(strncmp(e, row->prefix, strlen(row->prefix)) == 0
			&& strlen(e) > strlen(row->prefix),
		    "row %d: '%s' does not start with '%s'", _i, e, row->prefix);
		ck_assert_ptr_null(strstr(logged, "event="));
	}
	if (row->check)
		ck_assert_int_eq(state_of(row->check), row->state);
	cJSON_Delete(reply);
}
END_TEST

/* One number there and back on one connection; the range's counts follow. */
START_TEST(reserve_then_unreserve)
{
	static const char *const num = "+442071230003", *const b = "b";
	struct client *cl = client_open();
	struct inv_number n;
	struct inv_range r;
	cJSON *reply;
	time_t before = time(NULL);

	ck_assert_int_eq(state_of(num), INV_AVAILABLE);
	reply = call(cl, "reserve", 1, &num);
	ck_assert_str_eq(str_member(result_of(reply), "state"), "reserved");
	cJSON_Delete(reply);
	ck_assert_int_eq(inv_get_number(inv, num, &n), INV_OK);
	ck_assert_int_eq(n.state, INV_RESERVED);
	ck_assert_str_eq(n.range, "b");
	ck_assert_int_eq(n.flags & INV_NF_CONFIG, 0);
	ck_assert_int_ge(n.since, before);
	ck_assert_int_eq(inv_get_range(inv, "b", &r), INV_OK);
	ck_assert_uint_eq(r.count[INV_RESERVED], 1);

	/* reserving again changes nothing and says so the same way */
	reply = call(cl, "reserve", 1, &num);
	ck_assert_str_eq(str_member(result_of(reply), "state"), "reserved");
	cJSON_Delete(reply);
	ck_assert_int_eq(inv_get_range(inv, "b", &r), INV_OK);
	ck_assert_uint_eq(r.count[INV_RESERVED], 1);

	reply = call(cl, "range", 1, &b);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(reply)), 1);
	ck_assert_str_eq(str_member(cJSON_GetArrayItem(result_of(reply), 0), "number"), num);
	ck_assert_str_eq(str_member(cJSON_GetArrayItem(result_of(reply), 0), "state"), "reserved");
	cJSON_Delete(reply);

	reply = call(cl, "unreserve", 1, &num);
	ck_assert_str_eq(str_member(result_of(reply), "state"), "available");
	cJSON_Delete(reply);
	ck_assert_int_eq(state_of(num), INV_AVAILABLE);
	ck_assert_int_eq(inv_get_range(inv, "b", &r), INV_OK);
	ck_assert_uint_eq(r.count[INV_RESERVED], 0);

	reply = call(cl, "unreserve", 1, &num);
	assert_error(reply, "+442071230003 is not reserved");
	cJSON_Delete(reply);
	client_close(cl);
}
END_TEST

/* ---- commands, arguments, the engine ------------------------------------------- */

#define E_ENGINE "the provisioning engine is not running"
#define EURO "\xe2\x82\xac" /* three bytes a character */
#define EURO7 EURO EURO EURO EURO EURO EURO EURO

static const struct command_row {
	const char *cmd;
	int argc;
	const char *argv[CONTROL_MAX_ARGS];
	const char *error;
} command_rows[] = {
	/* unknown commands */
	{ "frobnicate", 0, { NULL }, "unknown command 'frobnicate'" },
	{ "", 0, { NULL }, "unknown command ''" },
	{ "Ranges", 0, { NULL }, "unknown command 'Ranges'" },
	{ "ranges ", 0, { NULL }, "unknown command 'ranges '" },
	{ "reserve\n+441235000050", 0, { NULL }, "unknown command 'reserve\\x0a+441235000050'" },
	{ "0123456789012345678901234567890123456789012345678901234567890123456789", 0, { NULL },
	    "unknown command "
	    "'0123456789012345678901234567890123456789012345678901234567890123...'" },
	/* bytes that are not UTF-8 and controls (C0, DEL, C1) echoed as \xNN; cut on a character */
	{ "\xff\xfe\x1b[2J\x7f\xc2\x9b\xc3", 0, { NULL },
	    "unknown command '\\xff\\xfe\\x1b[2J\\x7f\\xc2\\x9b\\xc3'" },
	{ EURO7 EURO7 EURO7 EURO, 0, { NULL }, "unknown command '" EURO7 EURO7 EURO7 "...'" },
	/* wrong argument counts: the usage, before anything else */
	{ "ranges", 1, { "a" }, "usage: ranges" },
	{ "range", 0, { NULL }, "usage: range NAME" },
	{ "range", 2, { "a", "b" }, "usage: range NAME" },
	{ "reserve", 0, { NULL }, "usage: reserve NUMBER" },
	{ "reserve", 2, { "+441235000050", "+441235000051" }, "usage: reserve NUMBER" },
	{ "unreserve", 0, { NULL }, "usage: unreserve NUMBER" },
	{ "unreserve", 8, { "1", "2", "3", "4", "5", "6", "7", "8" }, "usage: unreserve NUMBER" },
	{ "status", 1, { "x" }, "usage: status" },
	{ "users", 2, { "--pending", "--unmatched" }, "usage: users [--pending|--unmatched]" },
	{ "user", 0, { NULL }, "usage: user UPN|ID" },
	{ "user", 2, { "a", "b" }, "usage: user UPN|ID" },
	{ "assign", 0, { NULL }, "usage: assign UPN NUMBER [--force]" },
	{ "assign", 1, { "u1@example.com" }, "usage: assign UPN NUMBER [--force]" },
	{ "assign", 4, { "u", "+441235000050", "--force", "x" },
	    "usage: assign UPN NUMBER [--force]" },
	{ "unassign", 0, { NULL }, "usage: unassign UPN" },
	{ "unassign", 2, { "a", "b" }, "usage: unassign UPN" },
	{ "auto", 0, { NULL }, "usage: auto UPN" },
	{ "sync", 2, { "--full", "--full" }, "usage: sync [--full]" },
	{ "plan", 1, { "x" }, "usage: plan" },
	/* the engine's commands without an engine */
	{ "status", 0, { NULL }, E_ENGINE },
	{ "users", 0, { NULL }, E_ENGINE },
	{ "users", 1, { "--pending" }, E_ENGINE },
	{ "users", 1, { "--bogus" }, E_ENGINE },
	{ "user", 1, { "u1@example.com" }, E_ENGINE },
	{ "assign", 2, { "u1@example.com", "+441235000050" }, E_ENGINE },
	{ "assign", 3, { "u1@example.com", "+441235000050", "--force" }, E_ENGINE },
	{ "unassign", 1, { "u1@example.com" }, E_ENGINE },
	{ "auto", 1, { "u1@example.com" }, E_ENGINE },
	{ "sync", 0, { NULL }, E_ENGINE },
	{ "sync", 1, { "--full" }, E_ENGINE },
	{ "plan", 0, { NULL }, E_ENGINE },
};
#define N_COMMANDS (int)(sizeof(command_rows) / sizeof(command_rows[0]))

/* Every row on one connection, in turn: each answered, none closing it. */
START_TEST(command_errors_table)
{
	struct client *cl;

	fill_inventory();
	cl = client_open();
	for (int i = 0; i < N_COMMANDS; i++) {
		const struct command_row *row = &command_rows[i];
		cJSON *reply = call(cl, row->cmd, row->argc, row->argv);
		const char *e = error_of(reply);

		ck_assert_msg(strcmp(e, row->error) == 0, "row %d (%s): '%s', want '%s'", i,
		    row->cmd, e, row->error);
		cJSON_Delete(reply);
	}
	ck_assert_int_eq(cl->eof, 0);
	client_close(cl);
	/* nothing was changed by any of them */
	ck_assert_int_eq(state_of("+441235000050"), INV_AVAILABLE);
	ck_assert_int_eq(state_of("+441235000051"), INV_AVAILABLE);
	ck_assert_int_eq(state_of("+441235000001"), INV_PENDING);
}
END_TEST

/* What control_parse refuses, each on the socket, answered with its one line. */
START_TEST(bad_requests_answered)
{
	struct client *cl = client_open();

	for (int i = 0; i < N_PARSE; i++) {
		const struct parse_row *row = &parse_rows[i];
		cJSON *reply;

		if (row->command || !row->line[0])
			continue; /* accepted, or empty (an empty line has no reply) */
		client_send_str(cl, row->line);
		client_send_str(cl, "\n");
		reply = client_reply(cl);
		ck_assert_msg(
		    strcmp(error_of(reply), row->error) == 0, "row %d: %s", i, error_of(reply));
		cJSON_Delete(reply);
	}
	ck_assert_int_eq(cl->eof, 0);
	client_close(cl);
}
END_TEST

/* ---- framing -------------------------------------------------------------------- */

START_TEST(pipelined_requests_answered_in_order)
{
	static const char lines[] = "{\"command\":\"ranges\"}\n"
				    "{\"command\":\"reserve\",\"args\":[\"+441235000050\"]}\n"
				    "{\"command\":\"range\",\"args\":[\"a\"]}\n"
				    "{\"command\":\"bogus\"}\n"
				    "not json\n"
				    "{\"command\":\"status\"}\n"
				    "{\"command\":\"unreserve\",\"args\":[\"+441235000050\"]}\n"
				    "{\"command\":\"unreserve\",\"args\":[\"+441235000050\"]}\n"
				    "{\"command\":\"range\",\"args\":[\"a\"]}\n";
	struct client *cl = client_open();
	cJSON *r[9];

	client_send_str(cl, lines); /* one write: all of them at once */
	for (int i = 0; i < 9; i++)
		r[i] = client_reply(cl);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r[0])), 3);
	ck_assert_str_eq(str_member(result_of(r[1]), "number"), "+441235000050");
	ck_assert_str_eq(str_member(result_of(r[1]), "state"), "reserved");
	/* the reservation before it is seen: 000 from the config, then 050 */
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r[2])), 2);
	ck_assert_str_eq(
	    str_member(cJSON_GetArrayItem(result_of(r[2]), 1), "number"), "+441235000050");
	assert_error(r[3], "unknown command 'bogus'");
	assert_error(r[4], E_NOT_OBJECT);
	assert_error(r[5], E_ENGINE);
	ck_assert_str_eq(str_member(result_of(r[6]), "state"), "available");
	assert_error(r[7], "+441235000050 is not reserved");
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r[8])), 1);
	for (int i = 0; i < 9; i++)
		cJSON_Delete(r[i]);
	/* nothing more than one reply a request */
	ck_assert_ptr_null(client_line(cl, 200));
	ck_assert_uint_eq(cl->len, 0);
	ck_assert_int_eq(state_of("+441235000050"), INV_AVAILABLE);
	client_close(cl);
}
END_TEST

/* A request split across writes is answered once whole; CRLF and blank lines are fine. */
START_TEST(partial_lines_crlf_and_blank_lines)
{
	struct client *cl = client_open();
	cJSON *reply;

	client_send_str(cl, "{\"command\":\"ran");
	ck_assert_ptr_null(client_line(cl, 200));
	client_send_str(cl, "ges\"}");
	ck_assert_ptr_null(client_line(cl, 200));
	client_send_str(cl, "\n");
	reply = client_reply(cl);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(reply)), 3);
	cJSON_Delete(reply);

	client_send_str(cl, "\n\r\n\n{\"command\":\"range\",\"args\":[\"c\"]}\r\n\n");
	reply = client_reply(cl);
	ck_assert(cJSON_IsArray(result_of(reply)));
	cJSON_Delete(reply);
	ck_assert_ptr_null(client_line(cl, 200));
	ck_assert_int_eq(cl->eof, 0);
	client_close(cl);
}
END_TEST

/* The client's last request without its newline is answered once it shuts its side. */
START_TEST(last_request_without_newline)
{
	struct client *cl = client_open();
	cJSON *r1, *r2;

	client_send_str(cl, "{\"command\":\"plan\"}\n{\"command\":\"range\",\"args\":[\"a\"]}");
	ck_assert_int_eq(shutdown(cl->fd, SHUT_WR), 0);
	r1 = client_reply(cl);
	r2 = client_reply(cl);
	assert_error(r1, E_ENGINE);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r2)), 1);
	client_wait_closed(cl);
	ck_assert_uint_eq(cl->len, 0);
	cJSON_Delete(r1);
	cJSON_Delete(r2);
	client_close(cl);
}
END_TEST

/* A line of exactly CONTROL_LINE_MAX bytes is a request. */
START_TEST(line_of_the_limit_is_read)
{
	static const char req[] = "{\"command\":\"ranges\"}";
	size_t n = CONTROL_LINE_MAX + 1;
	char *line = malloc(n);
	struct client *cl = client_open();
	cJSON *reply;

	ck_assert_ptr_nonnull(line);
	memset(line, ' ', n);
	memcpy(line, req, strlen(req));
	line[n - 1] = '\n';
	client_send(cl, line, n);
	ck_assert_int_eq(cl->refused, 0);
	reply = client_reply(cl);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(reply)), 3);
	cJSON_Delete(reply);
	/* and the connection goes on */
	client_send_str(cl, "{\"command\":\"range\",\"args\":[\"nosuch\"]}\n");
	reply = client_reply(cl);
	assert_error(reply, "no range named 'nosuch'");
	cJSON_Delete(reply);
	free(line);
	client_close(cl);
}
END_TEST

/*
 * Longer than CONTROL_LINE_MAX: one error, then the connection closes; what
 * followed the long line is not answered. Loop index: 0 a line one byte over the
 * limit, 1 far over it, 2 over it with no newline at all.
 */
START_TEST(line_over_the_limit_closes)
{
	static const char next[] = "{\"command\":\"reserve\",\"args\":[\"+441235000050\"]}\n";
	size_t over[] = { 1, 3 * CONTROL_LINE_MAX, 100 };
	size_t n = CONTROL_LINE_MAX + over[_i];
	char *data = malloc(n + 1 + sizeof(next));
	struct client *cl = client_open();
	char want[64];
	cJSON *reply;
	size_t len = n;

	ck_assert_ptr_nonnull(data);
	memset(data, 'x', n);
	if (_i != 2) {
		data[len++] = '\n';
		memcpy(data + len, next, strlen(next));
		len += strlen(next);
	}
	client_send(cl, data, len);
	reply = client_reply(cl);
	snprintf(want, sizeof(want), "request line longer than %d bytes", CONTROL_LINE_MAX);
	assert_error(reply, want);
	cJSON_Delete(reply);
	client_wait_closed(cl);
	ck_assert_uint_eq(cl->len, 0);
	ck_assert_int_eq(state_of("+441235000050"), INV_AVAILABLE);
	free(data);
	client_close(cl);

	/* the daemon still answers others */
	reply = call1("ranges", 0, NULL);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(reply)), 3);
	cJSON_Delete(reply);
}
END_TEST

/* Several clients at once, each answered on its own connection. */
START_TEST(clients_are_independent)
{
	static const char *const a = "a", *const c = "c";
	struct client *c1 = client_open(), *c2 = client_open();
	cJSON *r1, *r2;

	client_send_str(c1, "{\"command\":\"range\",\"args\":[\"a\"]}\n");
	client_send_str(c2, "{\"command\":\"range\",\"args\":[\"c\"]}\n");
	r2 = client_reply(c2);
	r1 = client_reply(c1);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r1)), 1); /* the config's reservation */
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r2)), 0);
	cJSON_Delete(r1);
	cJSON_Delete(r2);
	client_close(c1);
	r2 = call(c2, "range", 1, &c);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r2)), 0);
	cJSON_Delete(r2);
	r1 = call1("range", 1, &a);
	ck_assert_int_eq(cJSON_GetArraySize(result_of(r1)), 1);
	cJSON_Delete(r1);
	client_close(c2);
}
END_TEST

/* ---- one object a line ----------------------------------------------------------- */

/*
 * A line with something after the object is not a request: anything but white
 * space after it refuses the line (a second request on it would otherwise be
 * dropped silently).
 */
static const char *const garbage_rows[] = {
	"{\"command\":\"ranges\"} x",
	"{\"command\":\"ranges\"}{\"command\":\"plan\"}",
	"{\"command\":\"reserve\",\"args\":[\"+441235000050\"]}}",
	"{\"command\":\"ranges\"},",
};

/* A NUL inside an argument would cut it short ("alice@x\0junk" acting on alice@x). */
START_TEST(control_parse_refuses_nul)
{
	const char *line = "{\"command\":\"unassign\",\"args\":[\"alice@x\\u0000junk\"]}";
	struct control_request req;
	const char *why = NULL;

	ck_assert_int_eq(control_parse(line, strlen(line), &req, &why), -1);
	ck_assert_ptr_nonnull(why);
	ck_assert_ptr_nonnull(strstr(why, "NUL"));
}
END_TEST

START_TEST(control_parse_trailing_garbage)
{
	const char *line = garbage_rows[_i];
	struct control_request req;
	const char *why = NULL;
	int rc = control_parse(line, strlen(line), &req, &why);

	if (rc == 0)
		control_request_free(&req);
	ck_assert_msg(rc == -1, "accepted: %s", line);
	ck_assert_str_eq(why, E_NOT_OBJECT);
}
END_TEST

static Suite *
control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, control_parse_table, 0, N_PARSE);
	tcase_add_test(tc, control_parse_reads_only_len_bytes);
	tcase_add_test(tc, control_parse_refuses_nul);
	tcase_add_loop_test(tc, control_parse_trailing_garbage, 0,
	    (int)(sizeof(garbage_rows) / sizeof(garbage_rows[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("socket");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, ranges_reports_every_field);
	tcase_add_test(tc, ranges_of_a_fresh_inventory);
	tcase_add_test(tc, range_lists_numbers_with_state);
	tcase_add_test(tc, range_of_an_unused_range_is_empty);
	tcase_add_test(tc, range_unknown_is_an_error);
	tcase_add_loop_test(tc, reserve_unreserve_table, 0, N_RESERVE);
	tcase_add_test(tc, reserve_then_unreserve);
	tcase_add_test(tc, command_errors_table);
	tcase_add_test(tc, bad_requests_answered);
	tcase_add_test(tc, pipelined_requests_answered_in_order);
	tcase_add_test(tc, partial_lines_crlf_and_blank_lines);
	tcase_add_test(tc, last_request_without_newline);
	tcase_add_test(tc, line_of_the_limit_is_read);
	tcase_add_loop_test(tc, line_over_the_limit_closes, 0, 3);
	tcase_add_test(tc, clients_are_independent);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(control_suite)
