#include "build-config.h"

#include "teams.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define NUMBERS_PATH "/v1.0/admin/teams/telephoneNumberManagement/numberAssignments"
#define PAGE_TOP 1000 /* the most numberAssignments gives in one page */
#define MAX_RESENDS 3

static struct teams_tuning tuning = { 500, 30000, 40 };

void
teams_tune(const struct teams_tuning *t)
{
	tuning = *t;
}

static void
copy_string(char *dst, size_t len, const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	snprintf(dst, len, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static void
result_from(struct teams_result *t, const struct graph_result *r)
{
	memset(t, 0, sizeof(*t));
	t->status = r->status;
	snprintf(t->error, sizeof(t->error), "%s", r->error_code);
	snprintf(t->detail, sizeof(t->detail), "%s", r->error_message);
	memcpy(t->client_request_id, r->client_request_id, sizeof(t->client_request_id));
}

/* ---- users delta -------------------------------------------------------- */

struct delta_round {
	struct graph *g;
	delta_page_cb page;
	delta_done_cb done;
	void *arg;
	int full, restarted;
	size_t pages, users, removed;
};

static void delta_got(const struct graph_result *r, void *arg);

static int
delta_request(struct delta_round *d, const char *url)
{
	char first[1024];

	if (!url) {
		snprintf(first, sizeof(first), "/v1.0/users/delta?$select=%s", dir_select());
		url = first;
	}
	return graph_get(d->g, url, delta_got, d);
}

static void
delta_finish(struct delta_round *d, enum delta_status st, const char *link, const char *err)
{
	struct delta_done done = { st, d->full, link, d->pages, d->users, d->removed, "" };

	snprintf(done.error, sizeof(done.error), "%s", err ? err : "");
	d->done(&done, d->arg);
	free(d);
}

/* The stored link is no longer good: Graph wants a full sync. */
static int
delta_reset(const struct graph_result *r)
{
	return r->status == 410 || strcasecmp(r->error_code, "syncStateNotFound") == 0
	    || strcasecmp(r->error_code, "resyncRequired") == 0;
}

static void
delta_got(const struct graph_result *r, void *arg)
{
	struct delta_round *d = arg;
	struct dir_page p;
	char err[400];

	if (r->status != 200) {
		if (delta_reset(r) && !d->full && !d->restarted) {
			log_notice("graph", "the delta link was refused (%ld %s): full sync",
			    r->status, r->error_code);
			d->full = d->restarted = 1;
			d->pages = d->users = d->removed = 0;
			if (delta_request(d, NULL) == 0)
				return;
		}
		snprintf(err, sizeof(err), "users/delta: HTTP %ld %s %s", r->status, r->error_code,
		    r->error_message);
		delta_finish(d, DELTA_ERROR, NULL, err);
		return;
	}
	if (dir_parse_page(r->body, r->len, &p, err, sizeof(err)) < 0) {
		delta_finish(d, DELTA_ERROR, NULL, err);
		return;
	}
	d->pages++;
	d->users += p.n_users;
	for (size_t i = 0; i < p.n_users; i++)
		d->removed += p.users[i].removed != DIR_PRESENT;
	d->page(&p, d->full, d->arg);
	if (p.next_link && delta_request(d, p.next_link) == 0)
		;
	else if (p.delta_link)
		delta_finish(d, DELTA_OK, p.delta_link, NULL);
	else
		delta_finish(d, DELTA_ERROR, NULL,
		    p.next_link ? "cannot follow the next link"
				: "a users page with neither nextLink nor deltaLink");
	dir_page_free(&p);
}

int
teams_delta(
    struct graph *g, const char *delta_link, delta_page_cb page, delta_done_cb done, void *arg)
{
	struct delta_round *d = calloc(1, sizeof(*d));

	if (!d)
		return -1;
	*d = (struct delta_round) { g, page, done, arg, !delta_link || !*delta_link, 0, 0, 0, 0 };
	if (delta_request(d, d->full ? NULL : delta_link) < 0) {
		free(d);
		return -1;
	}
	return 0;
}

/* ---- numbers ------------------------------------------------------------ */

static const char *const type_names[]
    = { "directRouting", "callingPlan", "operatorConnect", "unknown" };

const char *
teams_type_name(enum teams_number_type t)
{
	return type_names[t <= TNT_OTHER ? t : TNT_OTHER];
}

static enum teams_number_type
type_of(const char *s)
{
	for (int t = 0; t < TNT_OTHER; t++)
		if (strcasecmp(s, type_names[t]) == 0)
			return (enum teams_number_type)t;
	return TNT_OTHER;
}

static int
parse_number(const cJSON *o, struct teams_number *n)
{
	const cJSON *tn = cJSON_GetObjectItemCaseSensitive(o, "telephoneNumber");
	char type[32], err[160];
	struct e164 num;

	memset(n, 0, sizeof(*n));
	if (!cJSON_IsString(tn) || e164_parse(tn->valuestring, &num, err, sizeof(err)) < 0)
		return -1;
	e164_format(&num, n->number, sizeof(n->number));
	copy_string(type, sizeof(type), o, "numberType");
	n->type = type_of(type);
	copy_string(n->target, sizeof(n->target), o, "assignmentTargetId");
	copy_string(n->activation, sizeof(n->activation), o, "activationState");
	copy_string(n->status, sizeof(n->status), o, "assignmentStatus");
	copy_string(n->location_id, sizeof(n->location_id), o, "locationId");
	return 0;
}

int
teams_parse_numbers_ex(
    const char *json, size_t len, struct teams_number **out, char **next_link, size_t *entries)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(root, "value"), *o;
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(root, "@odata.nextLink");
	int n = 0;

	*out = NULL;
	if (entries)
		*entries = cJSON_IsArray(value) ? (size_t)cJSON_GetArraySize(value)
		    : cJSON_IsObject(value)	? 1
						: 0;
	if (next_link)
		*next_link = cJSON_IsString(next) ? strdup(next->valuestring) : NULL;
	/* the documentation's samples show value as an object: take one number then */
	if (cJSON_IsObject(value)) {
		*out = calloc(1, sizeof(**out));
		n = *out && parse_number(value, *out) == 0 ? 1 : 0;
	} else if (cJSON_IsArray(value)) {
		*out = calloc((size_t)cJSON_GetArraySize(value) + 1, sizeof(**out));
		cJSON_ArrayForEach(o, value) if (*out && parse_number(o, &(*out)[n]) == 0) n++;
	} else {
		n = -1;
	}
	cJSON_Delete(root);
	if (n >= 0 && !*out && entries && *entries)
		n = -1; /* out of memory: not an empty page */
	return n;
}

int
teams_parse_numbers(const char *json, size_t len, struct teams_number **out, char **next_link)
{
	size_t entries;
	return teams_parse_numbers_ex(json, len, out, next_link, &entries);
}

struct list_numbers {
	struct graph *g;
	numbers_page_cb page;
	numbers_done_cb done;
	void *arg;
	size_t skip, total;
};

static void list_got(const struct graph_result *r, void *arg);

static int
list_request(struct list_numbers *l, const char *next)
{
	char url[256];

	if (next)
		return graph_get(l->g, next, list_got, l);
	snprintf(url, sizeof(url), NUMBERS_PATH "?$top=%d&$skip=%zu", PAGE_TOP, l->skip);
	return graph_get(l->g, url, list_got, l);
}

static void
list_got(const struct graph_result *r, void *arg)
{
	struct list_numbers *l = arg;
	struct teams_number *v = NULL;
	char *next = NULL, err[400];
	size_t entries = 0;
	int n
	    = r->status == 200 ? teams_parse_numbers_ex(r->body, r->len, &v, &next, &entries) : -1;

	if (n < 0) {
		snprintf(err, sizeof(err), "numberAssignments: HTTP %ld %s %s", r->status,
		    r->error_code, r->status == 200 ? "not a page of numbers" : r->error_message);
		l->done(0, l->total, err, l->arg);
		free(v);
		free(next);
		free(l);
		return;
	}
	if (entries > (size_t)n)
		log_warnx("teams",
		    "numberAssignments: %zu entries of a page cannot be read; skipped",
		    entries - (size_t)n);
	l->page(v, (size_t)n, l->arg);
	l->total += (size_t)n;
	l->skip += entries; /* paging counts what Graph sent, read or not */
	free(v);
	/* a short page ends the list unless Graph gave a next link */
	if ((next || entries >= PAGE_TOP) && list_request(l, next) == 0) {
		free(next);
		return;
	}
	free(next);
	l->done(1, l->total, NULL, l->arg);
	free(l);
}

int
teams_list_numbers(struct graph *g, numbers_page_cb page, numbers_done_cb done, void *arg)
{
	struct list_numbers *l = calloc(1, sizeof(*l));

	if (!l)
		return -1;
	*l = (struct list_numbers) { g, page, done, arg, 0, 0 };
	if (list_request(l, NULL) < 0) {
		free(l);
		return -1;
	}
	return 0;
}

enum teams_op_status
teams_parse_operation(const char *json, size_t len, char *detail, size_t detaillen)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *op = root, *v, *nums, *n;
	enum teams_op_status st = TOP_UNKNOWN;
	char status[32];

	detail[0] = '\0';
	/* the documentation's sample wraps the operation in "value" */
	if (cJSON_IsObject(v = cJSON_GetObjectItemCaseSensitive(root, "value")))
		op = v;
	copy_string(status, sizeof(status), op, "status");
	if (strcmp(status, "succeeded") == 0)
		st = TOP_SUCCEEDED;
	else if (strcmp(status, "failed") == 0 || strcmp(status, "skipped") == 0)
		st = TOP_FAILED;
	else if (strcmp(status, "running") == 0 || strcmp(status, "notStarted") == 0)
		st = TOP_RUNNING;
	nums = cJSON_GetObjectItemCaseSensitive(op, "numbers");
	cJSON_ArrayForEach(n, (cJSON_IsArray(nums) ? nums : NULL))
	{
		char d[300];
		copy_string(d, sizeof(d), n, "statusDetail");
		if (d[0] && !detail[0])
			snprintf(detail, detaillen, "%s", d);
	}
	for (char *p = detail; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	cJSON_Delete(root);
	return st;
}

/* ---- assign and unassign ------------------------------------------------ */

struct change {
	struct graph *g;
	char *body, *op_url;
	char user[64], number[E164_STRLEN];
	teams_cb cb;
	void *arg;
	int assign, polls, resent, refused;
	int checking; /* the timer checks numberAssignments instead of polling an operation */
	long wait_ms;
	struct event *timer;
	char crid[37];
	struct teams_result *refusal; /* Teams' no, held until numberAssignments confirms it */
};

static void change_sent(const struct graph_result *r, void *arg);
static void change_polled(const struct graph_result *r, void *arg);
static void change_checked(const struct graph_result *r, void *arg);
static int check_number(struct change *c);
static void refusal_check(
    struct change *c, int refused, long status, const char *err, const char *detail);

static void
change_end(struct change *c, int ok, long status, const char *err, const char *detail)
{
	struct teams_result t;

	memset(&t, 0, sizeof(t));
	t.ok = ok;
	t.status = status;
	t.resent = c->resent;
	t.refused = c->refused;
	snprintf(t.error, sizeof(t.error), "%s", err ? err : "");
	snprintf(t.detail, sizeof(t.detail), "%s", detail ? detail : "");
	memcpy(t.client_request_id, c->crid, sizeof(t.client_request_id));
	if (!ok) /* Graph out of reach is said once by graph.c, not by every change */
		log_msg(strcmp(t.error, "transport") == 0 && graph_outage_told(c->g) ? LOG_DEBUG
										     : LOG_WARNING,
		    "teams", "%s %s%s%s failed: %s %s (client-request-id %s)",
		    c->assign ? "assignNumber" : "unassignNumber", c->number,
		    c->assign ? " to " : "", c->assign ? c->user : "", t.error, t.detail, c->crid);
	c->cb(&t, c->arg);
	if (c->timer)
		event_free(c->timer);
	free(c->refusal);
	free(c->body);
	free(c->op_url);
	free(c);
}

static int
change_post(struct change *c)
{
	return graph_post(c->g,
	    c->assign ? NUMBERS_PATH "/assignNumber" : NUMBERS_PATH "/unassignNumber", c->body,
	    GRAPH_POST_ONCE, change_sent, c);
}

static void
on_poll_timer(evutil_socket_t fd, short kind, void *arg)
{
	struct change *c = arg;

	(void)fd;
	(void)kind;
	if (c->checking || c->refusal ? check_number(c) < 0
				      : graph_get(c->g, c->op_url, change_polled, c) < 0)
		change_end(c, 0, 0, graph_stopped(c->g) ? "stopping" : "internal",
		    "cannot poll the operation");
}

/* Poll (or look at numberAssignments) after a growing wait. */
static void
wait_then_poll(struct change *c)
{
	struct timeval tv;

	c->wait_ms = c->wait_ms ? c->wait_ms * 2 : tuning.poll_first_ms;
	if (c->wait_ms > tuning.poll_cap_ms)
		c->wait_ms = tuning.poll_cap_ms;
	tv.tv_sec = c->wait_ms / 1000;
	tv.tv_usec = (c->wait_ms % 1000) * 1000;
	if (!c->timer)
		c->timer = evtimer_new(graph_base(c->g), on_poll_timer, c);
	evtimer_add(c->timer, &tv);
}

/* Poll again after a growing wait: Teams operations take seconds to minutes. */
static void
poll_later(struct change *c)
{
	if (++c->polls > tuning.poll_max) {
		change_end(c, 0, 0, "timeout", "the operation did not finish in time");
		return;
	}
	wait_then_poll(c);
}

static void
change_polled(const struct graph_result *r, void *arg)
{
	struct change *c = arg;
	char detail[320];

	if (r->status != 200) {
		change_end(c, 0, r->status, r->error_code, r->error_message);
		return;
	}
	switch (teams_parse_operation(r->body, r->len, detail, sizeof(detail))) {
	case TOP_SUCCEEDED:
		change_end(c, 1, r->status, NULL, detail);
		break;
	case TOP_FAILED:
		/* a second copy may fail where the first went through */
		refusal_check(c, !c->resent, r->status, "failed",
		    detail[0] ? detail : "the operation failed");
		break;
	case TOP_RUNNING:
	case TOP_UNKNOWN:
		poll_later(c);
		break;
	}
}

/*
 * Teams said no, to the POST or in its operation. The connection the POST went on
 * may have been a kept one that died before the answer, and libcurl then sends
 * the request again by itself: the no may answer that second copy while the
 * first went through. So a refused assignment is believed only when
 * numberAssignments does not show it made (one GET, on refusals only). An
 * unassignment needs no check: the only no a copy can get after the first went
 * through is "is not assigned", which the caller takes for done.
 */
static void
refusal_check(struct change *c, int refused, long status, const char *err, const char *detail)
{
	struct teams_result *t;

	if (!c->assign) {
		c->refused = refused;
		change_end(c, 0, status, err, detail);
		return;
	}
	if (!(t = calloc(1, sizeof(*t)))) {
		change_end(c, 0, status, "memory", "out of memory checking a refusal");
		return;
	}
	t->refused = refused;
	t->status = status;
	snprintf(t->error, sizeof(t->error), "%s", err ? err : "");
	snprintf(t->detail, sizeof(t->detail), "%s", detail ? detail : "");
	free(c->refusal);
	c->refusal = t;
	c->checking = 0;
	/* after a poll's wait, not at once: a first copy Teams accepted a moment ago may
	   not show in numberAssignments yet (not counted as a poll: a refusal seen on the
	   last poll is still checked, not taken for a timeout) */
	wait_then_poll(c);
}

static void
refusal_checked(
    struct change *c, int n, int done, int pending, int other, const struct graph_result *r)
{
	struct teams_result t = *c->refusal;

	if (n < 0) {
		/* unknown whether the first copy went through: unsettled, never refused */
		log_warnx("teams",
		    "assignNumber %s: Teams said no (%s) and numberAssignments "
		    "cannot be read (%ld %s): left unsettled",
		    c->number, t.detail, r->status, r->error_code);
		change_end(c, 0, t.status, t.error, t.detail);
	} else if (done) {
		log_notice("teams",
		    "assignNumber %s: Teams said no (%s) but numberAssignments "
		    "shows %s holding it: a copy went through",
		    c->number, t.detail, c->user);
		change_end(c, 1, r->status, NULL, "confirmed by numberAssignments");
	} else if (pending) {
		/* a copy was accepted and is being carried out: wait for it (as after an
		   ambiguous answer: the refusal is forgotten) */
		free(c->refusal);
		c->refusal = NULL;
		c->checking = 1;
		poll_later(c);
	} else {
		c->refused = t.refused;
		if (other && !strcasestr(t.detail, "assigned to another user"))
			/* said in the words the caller knows: the number stays out of the pool */
			snprintf(t.detail, sizeof(t.detail),
			    "Telephone Number '%s' has already been assigned to another user "
			    "(numberAssignments)",
			    c->number);
		change_end(c, 0, t.status, t.error, t.detail);
	}
}

/* An answer to the check made after an ambiguous POST. */
static void
change_checked(const struct graph_result *r, void *arg)
{
	struct change *c = arg;
	struct teams_number *v = NULL;
	int n = r->status == 200 ? teams_parse_numbers(r->body, r->len, &v, NULL) : -1, i;
	int done = 0, pending = 0, other = 0;

	for (i = 0; i < n; i++) {
		if (strcmp(v[i].number, c->number) != 0)
			continue;
		if (c->assign && strcasecmp(v[i].target, c->user) == 0) {
			done = strcmp(v[i].activation, "activated") == 0;
			/* assignmentFailed, updateFailed: nothing to wait for */
			pending = !done && !strstr(v[i].activation, "Failed");
		} else if (c->assign && v[i].target[0]) {
			other = 1;
		} else if (!c->assign && !v[i].target[0]) {
			done = 1;
		}
	}
	free(v);
	if (c->refusal && !c->checking) {
		refusal_checked(c, n, done, pending, other, r);
		return;
	}
	if (n < 0) {
		change_end(c, 0, r->status, r->error_code[0] ? r->error_code : "check",
		    "cannot check whether the request went through");
	} else if (done) {
		log_info("teams", "%s %s went through although its answer was lost",
		    c->assign ? "assignNumber" : "unassignNumber", c->number);
		change_end(c, 1, r->status, NULL, "confirmed by numberAssignments");
	} else if (pending) {
		/* it arrived and is being processed; its operation is unknown: check again */
		c->checking = 1;
		poll_later(c);
	} else if (c->resent++ < MAX_RESENDS) {
		log_info("teams", "%s %s did not arrive: sending it again",
		    c->assign ? "assignNumber" : "unassignNumber", c->number);
		if (change_post(c) < 0)
			change_end(c, 0, 0, "internal", "cannot send the request");
	} else {
		change_end(c, 0, 0, "unreachable", "the request did not get through");
	}
}

/* Did it go through? numberAssignments tells, before anything is sent again. */
static int
check_number(struct change *c)
{
	char url[512], *quoted = curl_easy_escape(NULL, c->number, 0);
	int rc;

	snprintf(url, sizeof(url), NUMBERS_PATH "?$filter=telephoneNumber%%20eq%%20'%s'",
	    quoted ? quoted : "");
	curl_free(quoted);
	rc = graph_get(c->g, url, change_checked, c);
	return rc;
}

static void
change_sent(const struct graph_result *r, void *arg)
{
	struct change *c = arg;

	if (r->client_request_id[0])
		memcpy(c->crid, r->client_request_id, sizeof(c->crid));
	if (r->ambiguous) {
		if (check_number(c) < 0)
			change_end(c, 0, 0, "internal", "cannot check the request");
		return;
	}
	if (r->status == 202 && r->location) {
		free(c->op_url);
		if (!(c->op_url = strdup(r->location))) {
			/* out of memory: numberAssignments tells how it went */
			c->checking = 1;
			if (check_number(c) < 0)
				change_end(c, 0, 0, "internal", "cannot follow the operation");
			return;
		}
		poll_later(c);
		return;
	}
	if (r->status >= 200 && r->status < 300) {
		/* Teams answers 202 with an operation to follow. Any other success (no
		   Location, a body that is not Teams') proves nothing: numberAssignments
		   tells whether it was done, before anything is believed or sent again */
		if (check_number(c) < 0)
			change_end(c, 0, 0, "internal", "cannot check the request");
		return;
	}
	/* a 4xx answer to the POST (not a timeout or throttling) refuses it, once
	   numberAssignments agrees */
	if (r->status >= 400 && r->status < 500 && r->status != 408 && r->status != 429) {
		refusal_check(c, !c->resent, r->status, r->error_code, r->error_message);
		return;
	}
	change_end(c, 0, r->status, r->error_code, r->error_message);
}

static char *
change_body(int assign, const char *user, const char *number, enum teams_number_type type,
    const char *location)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	cJSON_AddStringToObject(o, "telephoneNumber", number);
	if (assign) {
		cJSON_AddStringToObject(o, "assignmentTargetId", user);
		cJSON_AddStringToObject(o, "assignmentCategory", "primary");
	}
	cJSON_AddStringToObject(o, "numberType", teams_type_name(type));
	if (assign && location && *location)
		cJSON_AddStringToObject(o, "locationId", location);
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static int
change_start(struct graph *g, int assign, const char *user, const char *number,
    enum teams_number_type type, const char *location, teams_cb cb, void *arg)
{
	struct change *c = calloc(1, sizeof(*c));
	struct e164 n;
	char err[160];

	if (!c || e164_parse(number, &n, err, sizeof(err)) < 0) {
		free(c);
		return -1;
	}
	c->g = g;
	c->assign = assign;
	c->cb = cb;
	c->arg = arg;
	e164_format(&n, c->number, sizeof(c->number));
	snprintf(c->user, sizeof(c->user), "%s", user ? user : "");
	c->body = change_body(assign, c->user, c->number, type, location);
	if (!c->body || change_post(c) < 0) {
		free(c->body);
		free(c);
		return -1;
	}
	return 0;
}

int
teams_assign(struct graph *g, const char *user_id, const char *number, enum teams_number_type type,
    const char *location_id, teams_cb cb, void *arg)
{
	return change_start(g, 1, user_id, number, type, location_id, cb, arg);
}

int
teams_unassign(
    struct graph *g, const char *number, enum teams_number_type type, teams_cb cb, void *arg)
{
	return change_start(g, 0, NULL, number, type, NULL, cb, arg);
}

struct find_ctx {
	number_cb cb;
	void *arg;
	char number[E164_STRLEN];
};

static void
found_number(const struct graph_result *r, void *arg)
{
	struct find_ctx *f = arg;
	struct teams_number *v = NULL, none;
	struct teams_result t;
	size_t entries = 0;
	int n = r->status == 200 ? teams_parse_numbers_ex(r->body, r->len, &v, NULL, &entries) : -1;
	int hit = -1;

	result_from(&t, r);
	/* an entry that cannot be read might be this number: no answer rather than "free" */
	t.ok = n >= 0 && entries <= (size_t)n;
	if (n >= 0 && !t.ok)
		snprintf(t.error, sizeof(t.error), "%s", "parse");
	for (int i = 0; i < n && hit < 0; i++)
		if (strcmp(v[i].number, f->number) == 0)
			hit = i;
	memset(&none, 0, sizeof(none));
	f->cb(&t, hit >= 0 ? &v[hit] : &none, hit >= 0, f->arg);
	free(v);
	free(f);
}

int
teams_find_number(struct graph *g, const char *number, number_cb cb, void *arg)
{
	struct find_ctx *f = calloc(1, sizeof(*f));
	char url[512], *quoted;
	struct e164 n;
	char err[160];

	if (!f || e164_parse(number, &n, err, sizeof(err)) < 0) {
		free(f);
		return -1;
	}
	f->cb = cb;
	f->arg = arg;
	e164_format(&n, f->number, sizeof(f->number));
	quoted = curl_easy_escape(NULL, f->number, 0);
	snprintf(url, sizeof(url), NUMBERS_PATH "?$filter=telephoneNumber%%20eq%%20'%s'",
	    quoted ? quoted : "");
	curl_free(quoted);
	if (graph_get(g, url, found_number, f) < 0) {
		free(f);
		return -1;
	}
	return 0;
}

/* ---- a user's numbers ---------------------------------------------------- */

#define USER_NUMBERS_MAX_PAGES 20

struct user_numbers {
	struct graph *g;
	user_numbers_cb cb;
	void *arg;
	char user[64];
	struct teams_number *v;
	size_t n, pages, others;
};

static void user_numbers_got(const struct graph_result *r, void *arg);

static void
user_numbers_end(struct user_numbers *u, const struct graph_result *r, int ok, const char *error,
    const char *detail)
{
	struct teams_result t;

	result_from(&t, r);
	t.ok = ok;
	if (error)
		snprintf(t.error, sizeof(t.error), "%s", error);
	if (detail)
		snprintf(t.detail, sizeof(t.detail), "%s", detail);
	if (!ok)
		log_msg(strcmp(t.error, "transport") == 0 && graph_outage_told(u->g) ? LOG_DEBUG
										     : LOG_WARNING,
		    "teams", "numbers of user %s: HTTP %ld %s %s (client-request-id %s)", u->user,
		    t.status, t.error, t.detail, t.client_request_id);
	else if (u->others)
		log_warnx("teams",
		    "numbers of user %s: Graph also gave %zu numbers of other targets "
		    "(ignored)",
		    u->user, u->others);
	u->cb(&t, ok ? u->v : NULL, ok ? u->n : 0, u->arg);
	free(u->v);
	free(u);
}

static void
user_numbers_got(const struct graph_result *r, void *arg)
{
	struct user_numbers *u = arg;
	struct teams_number *v = NULL, *grown;
	char *next = NULL;
	size_t entries = 0;
	int n
	    = r->status == 200 ? teams_parse_numbers_ex(r->body, r->len, &v, &next, &entries) : -1;

	if (r->status != 200) {
		user_numbers_end(u, r, 0, r->error_code[0] ? NULL : "http", NULL);
		return;
	}
	if (n < 0 || entries > (size_t)n) {
		/* an entry that cannot be read may be a number the user holds: not "none" */
		free(v);
		free(next);
		user_numbers_end(u, r, 0, "parse",
		    n < 0 ? "not a page of numberAssignments"
			  : "an entry of the user's numbers cannot be read");
		return;
	}
	if (n > 0 && !(grown = realloc(u->v, (u->n + (size_t)n) * sizeof(*u->v)))) {
		free(v);
		free(next);
		user_numbers_end(u, r, 0, "internal", "out of memory");
		return;
	}
	if (n > 0)
		u->v = grown;
	for (int i = 0; i < n; i++) {
		if (strcasecmp(v[i].target, u->user) == 0)
			u->v[u->n++] = v[i];
		else
			u->others++;
	}
	free(v);
	u->pages++;
	if (next && u->pages >= USER_NUMBERS_MAX_PAGES) {
		free(next);
		user_numbers_end(
		    u, r, 0, "paging", "too many pages of numberAssignments for one user");
		return;
	}
	if (next) {
		if (graph_get(u->g, next, user_numbers_got, u) < 0) {
			free(next);
			user_numbers_end(u, r, 0, graph_stopped(u->g) ? "stopping" : "internal",
			    "cannot follow the next link");
			return;
		}
		free(next);
		return;
	}
	user_numbers_end(u, r, 1, NULL, NULL);
}

/* An object id as Entra gives it: letters, digits and '-' only, so it is safe in a URL. */
static int
valid_object_id(const char *id, size_t max)
{
	size_t len = id ? strlen(id) : 0;

	if (len == 0 || len >= max)
		return 0;
	return strspn(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") == len;
}

int
teams_user_numbers(struct graph *g, const char *user_id, user_numbers_cb cb, void *arg)
{
	return teams_user_numbers_flags(g, user_id, 0, cb, arg);
}

int
teams_user_numbers_flags(
    struct graph *g, const char *user_id, unsigned gflags, user_numbers_cb cb, void *arg)
{
	struct user_numbers *u;
	char url[256];

	if (!valid_object_id(user_id, sizeof(u->user))) {
		log_warnx("teams", "refusing to look up the numbers of a malformed user id");
		return -1;
	}
	if (!(u = calloc(1, sizeof(*u))))
		return -1;
	u->g = g;
	u->cb = cb;
	u->arg = arg;
	snprintf(u->user, sizeof(u->user), "%s", user_id);
	/* the id holds only unreserved characters: it goes into the URL as it is */
	snprintf(
	    url, sizeof(url), NUMBERS_PATH "?$filter=assignmentTargetId%%20eq%%20'%s'", u->user);
	if (graph_get_flags(g, url, gflags, user_numbers_got, u) < 0) {
		free(u);
		return -1;
	}
	return 0;
}

/* ---- user configuration ------------------------------------------------- */

struct simple_call {
	struct graph *g;
	userconfig_cb ucb;
	teams_cb cb;
	void *arg;
	struct dir_licensing *lic;
	char user[64], policy_type[64], policy_name[256];
	int cached_id;	   /* the policy's id came from the cache: refused, it is looked up again */
	char sent_id[512]; /* the id in the assignment on the wire */
	unsigned gen;	   /* graph_cache_generation when the lookup was sent */
	/* a getPolicyId on the wire (graph_lookups) and the calls waiting for its answer */
	struct simple_call *lookup_next, *wait_next;
};

static void
parse_user_config(const char *json, size_t len, struct teams_user_config *c)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "isEnterpriseVoiceEnabled");
	const cJSON *nums = cJSON_GetObjectItemCaseSensitive(root, "telephoneNumbers"), *n;
	const cJSON *feats = cJSON_GetObjectItemCaseSensitive(root, "featureTypes"), *f;

	memset(c, 0, sizeof(*c));
	c->enterprise_voice = cJSON_IsTrue(ev);
	cJSON_ArrayForEach(n, (cJSON_IsArray(nums) ? nums : NULL))
	{
		const cJSON *tn = cJSON_GetObjectItemCaseSensitive(n, "telephoneNumber");
		struct e164 num;
		char err[160];

		if (c->n_numbers < 4 && cJSON_IsString(tn)
		    && e164_parse(tn->valuestring, &num, err, sizeof(err)) == 0)
			e164_format(&num, c->numbers[c->n_numbers++], E164_STRLEN);
	}
	cJSON_ArrayForEach(f, (cJSON_IsArray(feats) ? feats : NULL))
	{
		size_t used = strlen(c->features);
		if (cJSON_IsString(f))
			snprintf(c->features + used, sizeof(c->features) - used, "%s%s",
			    used ? "," : "", f->valuestring);
	}
	cJSON_Delete(root);
}

static void
user_config_got(const struct graph_result *r, void *arg)
{
	struct simple_call *s = arg;
	struct teams_user_config c;
	struct teams_result t;

	result_from(&t, r);
	t.ok = r->status == 200;
	memset(&c, 0, sizeof(c));
	if (t.ok)
		parse_user_config(r->body, r->len, &c);
	s->ucb(&t, &c, s->arg);
	free(s);
}

static struct simple_call *
simple_new(struct graph *g, void *arg)
{
	struct simple_call *s = calloc(1, sizeof(*s));

	if (s) {
		s->g = g;
		s->arg = arg;
	}
	return s;
}

int
teams_user_config(struct graph *g, const char *user_id, userconfig_cb cb, void *arg)
{
	struct simple_call *s = simple_new(g, arg);
	char url[256], *id = curl_easy_escape(NULL, user_id, 0);
	int rc = -1;

	if (s && id) {
		s->ucb = cb;
		snprintf(url, sizeof(url), "/v1.0/admin/teams/userConfigurations/%s", id);
		rc = graph_get(g, url, user_config_got, s);
	}
	curl_free(id);
	if (rc < 0)
		free(s);
	return rc;
}

/* ---- policies ----------------------------------------------------------- */

static int policy_resolve(struct simple_call *s);
static int policy_post(struct simple_call *s, const char *id);

/* The cache key of a policy: its type and name. */
static void
policy_key(const struct simple_call *s, char *key, size_t len)
{
	snprintf(key, len, "policy\n%s\n%s", s->policy_type, s->policy_name);
}

static void
policy_assigned(const struct graph_result *r, void *arg)
{
	struct simple_call *s = arg;
	struct teams_result t;
	char key[400];

	result_from(&t, r);
	t.ok = r->status >= 200 && r->status < 300;
	if (!t.ok && s->cached_id && (r->status == 400 || r->status == 404)) {
		/* the id kept since the configuration was loaded is refused: the policy may
		 * have been made again under its name; it is looked up once more, unless
		 * another user's lookup has kept a newer id meanwhile */
		const char *now;

		policy_key(s, key, sizeof(key));
		s->cached_id = 0;
		if ((now = graph_cache_get(s->g, key)) && strcmp(now, s->sent_id) != 0) {
			char id[sizeof(s->sent_id)];

			snprintf(id, sizeof(id), "%s", now);
			if (policy_post(s, id) == 0)
				return;
			snprintf(t.error, sizeof(t.error), "internal");
			s->cb(&t, s->arg);
			free(s);
			return;
		}
		graph_cache_drop(s->g, key);
		log_info("teams",
		    "%s policy %s: the kept id was refused (%ld); looking it up again",
		    s->policy_type, s->policy_name, r->status);
		if (policy_resolve(s) == 0)
			return;
		snprintf(t.error, sizeof(t.error), "internal");
	}
	s->cb(&t, s->arg);
	free(s);
}

/* The assignment itself; 0, or -1 when it could not be sent (s is then the caller's). */
static int
policy_post(struct simple_call *s, const char *id)
{
	cJSON *body = cJSON_CreateObject(), *arr, *item;
	char *json = NULL;

	if (body && (arr = cJSON_AddArrayToObject(body, "value"))
	    && (item = cJSON_CreateObject())) {
		cJSON_AddStringToObject(item, "@odata.type",
		    "#microsoft.graph.teamsAdministration.teamsPolicyUserAssignment");
		cJSON_AddStringToObject(item, "userId", s->user);
		cJSON_AddStringToObject(item, "policyType", s->policy_type);
		cJSON_AddStringToObject(item, "policyId", id);
		snprintf(s->sent_id, sizeof(s->sent_id), "%s", id);
		cJSON_AddItemToArray(arr, item);
		json = cJSON_PrintUnformatted(body);
	}
	cJSON_Delete(body);
	/* assigning a policy twice is harmless: a plain retried POST */
	int rc = json ? graph_post(s->g, "/v1.0/admin/teams/policy/userAssignments/assign", json, 0,
		     policy_assigned, s)
		      : -1;

	free(json);
	return rc < 0 ? -1 : 0;
}

/* From a Graph answer: the call ends with an internal error. */
static void
policy_internal_error(struct simple_call *s)
{
	struct teams_result t;

	memset(&t, 0, sizeof(t));
	snprintf(t.error, sizeof(t.error), "internal");
	s->cb(&t, s->arg);
	free(s);
}

static void
policy_found(const struct graph_result *r, void *arg)
{
	struct simple_call *s = arg, *w, *next;
	struct simple_call **pp = (struct simple_call **)graph_lookups(s->g);
	cJSON *root = r->status == 200 ? cJSON_ParseWithLength(r->body, r->len) : NULL;
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "value"), *first, *id;
	struct teams_result t;
	char key[400];

	/* off the list of lookups on the wire, with the calls that waited for it */
	while (*pp && *pp != s)
		pp = &(*pp)->lookup_next;
	if (*pp)
		*pp = s->lookup_next;
	first = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, 0) : v;
	id = cJSON_GetObjectItemCaseSensitive(first, "policyId");
	if (cJSON_IsString(id) && id->valuestring[0] && s->gen == graph_cache_generation(s->g)) {
		/* kept for the other users of this configuration: one lookup, not one per user
		 * (an answer to a lookup sent before a reload is used, not kept) */
		policy_key(s, key, sizeof(key));
		graph_cache_put(s->g, key, id->valuestring);
	}
	for (w = s; w; w = next) {
		next = w->wait_next;
		w->wait_next = NULL;
		if (cJSON_IsString(id) && id->valuestring[0]) {
			if (policy_post(w, id->valuestring) < 0)
				policy_internal_error(w);
			continue;
		}
		result_from(&t, r);
		if (r->status == 200)
			snprintf(t.error, sizeof(t.error), "policy");
		w->cb(&t, w->arg);
		free(w);
	}
	cJSON_Delete(root);
}

static int
policy_lookup(struct simple_call *s)
{
	char url[512], *type = curl_easy_escape(NULL, s->policy_type, 0);
	char *name = curl_easy_escape(NULL, s->policy_name, 0);
	int rc = -1;

	if (type && name) {
		snprintf(url, sizeof(url),
		    "/v1.0/admin/teams/policy/getPolicyId(type='%s',name='%s')", type, name);
		rc = graph_get(s->g, url, policy_found, s);
	}
	curl_free(type);
	curl_free(name);
	return rc;
}

/*
 * The policy's id from Graph: a lookup already on the wire for the same
 * policy is waited for rather than sent again. 0, or -1 (s is the caller's).
 */
static int
policy_resolve(struct simple_call *s)
{
	struct simple_call **head = (struct simple_call **)graph_lookups(s->g), *l;

	for (l = *head; l; l = l->lookup_next)
		if (strcmp(l->policy_type, s->policy_type) == 0
		    && strcmp(l->policy_name, s->policy_name) == 0) {
			s->wait_next = l->wait_next;
			l->wait_next = s;
			return 0;
		}
	/* listed before it is sent: an answer given at once finds it there */
	s->gen = graph_cache_generation(s->g);
	s->lookup_next = *head;
	*head = s;
	if (policy_lookup(s) < 0) {
		struct simple_call **pp = head;

		while (*pp && *pp != s)
			pp = &(*pp)->lookup_next;
		if (*pp)
			*pp = s->lookup_next;
		return -1;
	}
	return 0;
}

int
teams_assign_policy(struct graph *g, const char *user_id, const char *policy_type,
    const char *policy_name, teams_cb cb, void *arg)
{
	struct simple_call *s;
	const char *id;
	char key[400];

	if (strchr(policy_name, '\'') || strchr(policy_type, '\'')
	    || strlen(policy_name) >= sizeof(s->policy_name)
	    || strlen(policy_type) >= sizeof(s->policy_type) || !(s = simple_new(g, arg)))
		return -1;
	s->cb = cb;
	snprintf(s->user, sizeof(s->user), "%s", user_id);
	snprintf(s->policy_type, sizeof(s->policy_type), "%s", policy_type);
	snprintf(s->policy_name, sizeof(s->policy_name), "%s", policy_name);
	policy_key(s, key, sizeof(key));
	if ((id = graph_cache_get(g, key))) {
		s->cached_id = 1;
		if (policy_post(s, id) < 0) {
			free(s);
			return -1;
		}
		return 0;
	}
	if (policy_resolve(s) < 0) {
		free(s);
		return -1;
	}
	return 0;
}

/* ---- subscribed SKUs ---------------------------------------------------- */

static void
skus_got(const struct graph_result *r, void *arg)
{
	struct simple_call *s = arg;
	struct teams_result t;
	int n = -1;

	result_from(&t, r);
	if (r->status == 200)
		n = dir_licensing_load_skus(s->lic, r->body, r->len);
	t.ok = n >= 0;
	if (r->status == 200 && n < 0)
		snprintf(t.error, sizeof(t.error), "parse");
	else if (n >= 0)
		snprintf(t.detail, sizeof(t.detail), "%d service plans", n);
	s->cb(&t, s->arg);
	free(s);
}

int
teams_load_skus(struct graph *g, struct dir_licensing *l, teams_cb cb, void *arg)
{
	struct simple_call *s = simple_new(g, arg);

	if (!s)
		return -1;
	s->cb = cb;
	s->lic = l;
	if (graph_get(g, "/v1.0/subscribedSkus", skus_got, s) < 0) {
		free(s);
		return -1;
	}
	return 0;
}
