#include "build-config.h"

#include "provision.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "directory.h"
#include "graph.h"
#include "inventory.h"
#include "log.h"
#include "rule.h"
#include "teams.h"

#define META_DELTA "delta_link"

/* One user to look at in this cycle. */
struct work {
	char id[INV_ID_MAX];
	int moved; /* city, office or usage location changed */
	int gone;  /* deleted (@removed, or absent from a full sync) */
	enum dir_removed removed;
};

struct prov {
	struct event_base *base;
	struct config *cfg;
	struct inventory *inv;
	struct graph *graph;
	struct dir_licensing *lic;
	struct event *tick, *kick;
	/* the cycle */
	int running, again, again_full, draining, full;
	time_t last_full;
	struct work *work;
	size_t n_work, cap_work;
	char **seen; /* ids seen in a full sync, sorted at the end */
	size_t n_seen, cap_seen;
	int outstanding; /* Graph operations of this cycle still in flight */
	int errors;
	char error[256];
	unsigned long c_assigned, c_released;
	struct timespec t0;
	/* Teams' numbers by holder, from the last full reconciliation */
	cJSON *teams_by_user;
	void (*drained)(void *);
	void *drained_arg;
	struct prov_stats st;
};

static void cycle_step_done(struct prov *p);

/* ---- syslog event lines ------------------------------------------------- */

/* Append key=value, quoting values with spaces, quotes or '='. */
static void
kv(char *buf, size_t len, const char *key, const char *value)
{
	size_t used = strlen(buf);
	int quote = !value || !*value || strpbrk(value, " \t\"=\\") != NULL;

	if (!value)
		value = "";
	used += (size_t)snprintf(buf + used, len > used ? len - used : 0, "%s%s=%s", used ? " " : "",
	    key, quote ? "\"" : "");
	for (; *value && used + 3 < len; value++) {
		if (*value == '"' || *value == '\\')
			buf[used++] = '\\';
		buf[used++] = (*value == '\n' || *value == '\r') ? ' ' : *value;
	}
	if (quote && used + 1 < len)
		buf[used++] = '"';
	buf[used < len ? used : len - 1] = '\0';
}

static void
event_line(int prio, const char *line)
{
	log_event(prio, "%s", line);
}

/* ---- directory records -------------------------------------------------- */

static cJSON *
dir_record(struct prov *p, const char *id)
{
	char *text = NULL;
	cJSON *r = NULL;

	if (inv_dir_get(p->inv, id, &text) == INV_OK)
		r = cJSON_Parse(text);
	free(text);
	return r;
}

static void
dir_save(struct prov *p, const char *id, cJSON *rec)
{
	char *text = cJSON_PrintUnformatted(rec);

	if (!text || inv_dir_put(p->inv, id, text) != INV_OK)
		log_err("provision", "cannot record user %s", id);
	free(text);
}

static const char *
rec_str(const cJSON *rec, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static double
rec_num(const cJSON *rec, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, key);
	return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void
rec_set_str(cJSON *rec, const char *key, const char *v)
{
	cJSON_DeleteItemFromObjectCaseSensitive(rec, key);
	cJSON_AddStringToObject(rec, key, v ? v : "");
}

static void
rec_set_num(cJSON *rec, const char *key, double v)
{
	cJSON_DeleteItemFromObjectCaseSensitive(rec, key);
	cJSON_AddNumberToObject(rec, key, v);
}

/* The user's attributes as the rules see them, from a record. */
static void
rec_attrs(const cJSON *rec, struct rule_attrs *a)
{
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(rec, "attrs");

	memset(a, 0, sizeof(*a));
	for (int i = 0; i < RA__MAX; i++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(attrs, rule_attr_name((enum rule_attr)i));
		if (cJSON_IsString(v))
			a->v[i] = v->valuestring;
	}
}

/* A user from a delta page as a record; the previous record keeps the state. */
static cJSON *
record_from_user(struct prov *p, const struct dir_user *u, cJSON *old)
{
	cJSON *rec = old ? cJSON_Duplicate(old, 1) : cJSON_CreateObject();
	cJSON *attrs = cJSON_CreateObject();
	struct dir_licence l;

	dir_classify(p->lic, u, &l);
	if (u->upn)
		rec_set_str(rec, "upn", u->upn);
	if (u->display_name)
		rec_set_str(rec, "name", u->display_name);
	if (u->account_enabled >= 0)
		rec_set_num(rec, "enabled", u->account_enabled);
	else if (!cJSON_GetObjectItem(rec, "enabled"))
		rec_set_num(rec, "enabled", 1);
	if (u->has_plans || !old) {
		rec_set_num(rec, "teams_phone", l.teams_phone);
		rec_set_num(rec, "calling_plan", l.calling_plan);
	}
	for (int i = 0; i < RA__MAX; i++)
		if (u->attr[i])
			cJSON_AddStringToObject(attrs, rule_attr_name((enum rule_attr)i), u->attr[i]);
	cJSON_DeleteItemFromObjectCaseSensitive(rec, "attrs");
	cJSON_AddItemToObject(rec, "attrs", attrs);
	return rec;
}

static int
moved(const cJSON *old, const cJSON *rec)
{
	static const enum rule_attr where[] = { RA_CITY, RA_OFFICE, RA_USAGE_LOCATION };
	struct rule_attrs a, b;

	if (!old)
		return 0;
	rec_attrs(old, &a);
	rec_attrs(rec, &b);
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
		if (!rule_text_equal(a.v[where[i]] ? a.v[where[i]] : "", b.v[where[i]] ? b.v[where[i]] : ""))
			return 1;
	return 0;
}

/* ---- the work list ------------------------------------------------------ */

static struct work *
add_work(struct prov *p, const char *id)
{
	struct work *w;

	for (size_t i = 0; i < p->n_work; i++)
		if (strcmp(p->work[i].id, id) == 0)
			return &p->work[i];
	if (p->n_work == p->cap_work) {
		size_t cap = p->cap_work ? 2 * p->cap_work : 256;
		struct work *g = realloc(p->work, cap * sizeof(*g));
		if (!g)
			return NULL;
		p->work = g;
		p->cap_work = cap;
	}
	w = &p->work[p->n_work++];
	memset(w, 0, sizeof(*w));
	snprintf(w->id, sizeof(w->id), "%s", id);
	return w;
}

static void
add_seen(struct prov *p, const char *id)
{
	if (p->n_seen == p->cap_seen) {
		size_t cap = p->cap_seen ? 2 * p->cap_seen : 1024;
		char **g = realloc(p->seen, cap * sizeof(*g));
		if (!g)
			return;
		p->seen = g;
		p->cap_seen = cap;
	}
	p->seen[p->n_seen++] = strdup(id);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
clear_round(struct prov *p)
{
	for (size_t i = 0; i < p->n_seen; i++)
		free(p->seen[i]);
	p->n_seen = 0;
	p->n_work = 0;
}

/* ---- releases ----------------------------------------------------------- */

struct change_ctx {
	struct prov *p;
	char id[INV_ID_MAX], upn[INV_UPN_MAX], number[E164_STRLEN], range[RANGE_NAME_MAX + 1];
	char reason[32];
	prov_reply reply;
	void *reply_arg;
};

static const struct cfg_range *
range_of(struct prov *p, const char *name)
{
	return name && *name ? config_range_find(p->cfg, name) : NULL;
}

static enum teams_number_type
number_type(const struct cfg_range *r)
{
	if (!r)
		return TNT_DIRECT_ROUTING;
	switch (r->type) {
	case RT_CALLING_PLAN:
		return TNT_CALLING_PLAN;
	case RT_OPERATOR_CONNECT:
		return TNT_OPERATOR_CONNECT;
	case RT_DIRECT_ROUTING:
		return TNT_DIRECT_ROUTING;
	}
	return TNT_DIRECT_ROUTING;
}

static void
reply_json(struct change_ctx *c, int ok, const char *error, const char *number)
{
	cJSON *r;

	if (!c->reply)
		return;
	r = cJSON_CreateObject();
	cJSON_AddBoolToObject(r, "ok", ok);
	if (error)
		cJSON_AddStringToObject(r, "error", error);
	if (number)
		cJSON_AddStringToObject(r, "number", number);
	c->reply(r, c->reply_arg);
}

static void
released(const struct teams_result *t, void *arg)
{
	struct change_ctx *c = arg;
	struct prov *p = c->p;
	const struct cfg_range *r = range_of(p, c->range);
	int days = r ? config_range_quarantine(p->cfg, r) : 0;
	struct inv_number n;
	char line[1024] = "", until[32] = "";

	/* "is not assigned": Teams has already let it go; the inventory follows */
	if (!t->ok && !strstr(t->detail, "not assigned")) {
		p->errors++;
		snprintf(p->error, sizeof(p->error), "unassign %s: %.200s", c->number, t->detail);
		reply_json(c, 0, t->detail[0] ? t->detail : t->error, NULL);
	} else if (inv_release(p->inv, c->id, days, time(NULL), &n) == INV_OK) {
		if (n.state == INV_QUARANTINED) {
			time_t u = (time_t)n.until;
			struct tm tm;
			strftime(until, sizeof(until), "%Y-%m-%d", gmtime_r(&u, &tm));
		}
		kv(line, sizeof(line), "event", "release");
		kv(line, sizeof(line), "user", c->upn);
		kv(line, sizeof(line), "id", c->id);
		kv(line, sizeof(line), "number", c->number);
		kv(line, sizeof(line), "range", c->range[0] ? c->range : "-");
		kv(line, sizeof(line), "reason", c->reason);
		if (until[0])
			kv(line, sizeof(line), "quarantine_until", until);
		event_line(LOG_NOTICE, line);
		p->c_released++;
		p->st.releases++;
		reply_json(c, 1, NULL, c->number);
	} else {
		log_err("provision", "%s was unassigned in Teams but cannot be released in the "
		    "inventory", c->number);
		reply_json(c, 0, "the inventory could not record the release", NULL);
	}
	free(c);
	p->outstanding--;
	cycle_step_done(p);
}

static int
release_user(struct prov *p, const char *id, const char *upn, const char *reason,
    prov_reply reply, void *reply_arg)
{
	struct inv_user u;
	struct inv_number n;
	struct change_ctx *c;
	char line[1024] = "";

	if (inv_get_user(p->inv, id, &u) != INV_OK)
		return -1;
	inv_get_number(p->inv, u.number, &n);
	if (p->cfg->sync.mode == SYNC_DRY_RUN && !reply) {
		kv(line, sizeof(line), "event", "release");
		kv(line, sizeof(line), "user", upn[0] ? upn : u.upn);
		kv(line, sizeof(line), "id", id);
		kv(line, sizeof(line), "number", u.number);
		kv(line, sizeof(line), "range", n.range[0] ? n.range : "-");
		kv(line, sizeof(line), "reason", reason);
		kv(line, sizeof(line), "dry_run", "yes");
		event_line(LOG_NOTICE, line);
		return 0;
	}
	if (!(c = calloc(1, sizeof(*c))))
		return -1;
	c->p = p;
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->upn, sizeof(c->upn), "%s", upn[0] ? upn : u.upn);
	snprintf(c->number, sizeof(c->number), "%s", u.number);
	snprintf(c->range, sizeof(c->range), "%s", n.range);
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
	c->reply = reply;
	c->reply_arg = reply_arg;
	p->outstanding++;
	if (teams_unassign(p->graph, u.number, number_type(range_of(p, n.range)), released, c) < 0) {
		p->outstanding--;
		free(c);
		return -1;
	}
	return 0;
}

/* ---- assignments -------------------------------------------------------- */

/* Log a state once: a user's state that did not change is not logged again. */
static int
state_changed(cJSON *rec, const char *state)
{
	if (strcmp(rec_str(rec, "state"), state) == 0)
		return 0;
	rec_set_str(rec, "state", state);
	return 1;
}

static void
log_unmatched(struct prov *p, const char *id, cJSON *rec, const char *reason)
{
	struct rule_attrs a;
	char line[1024] = "";

	if (!state_changed(rec, reason))
		return;
	rec_attrs(rec, &a);
	kv(line, sizeof(line), "event", "unmatched");
	kv(line, sizeof(line), "user", rec_str(rec, "upn"));
	kv(line, sizeof(line), "id", id);
	kv(line, sizeof(line), "city", a.v[RA_CITY]);
	kv(line, sizeof(line), "office", a.v[RA_OFFICE]);
	kv(line, sizeof(line), "usage_location", a.v[RA_USAGE_LOCATION]);
	kv(line, sizeof(line), "reason", reason);
	event_line(LOG_WARNING, line);
	(void)p;
}

static void
log_exhausted(struct prov *p, const struct cfg_range *r)
{
	char key[96], line[256] = "", seen[8] = "";

	/* once per state change: the flag lives in the inventory's meta */
	snprintf(key, sizeof(key), "exhausted:%s", r->name);
	if (inv_meta_get(p->inv, key, seen, sizeof(seen)) == INV_OK && seen[0] == '1')
		return;
	inv_meta_put(p->inv, key, "1");
	kv(line, sizeof(line), "event", "exhausted");
	kv(line, sizeof(line), "range", r->name);
	event_line(LOG_ERR, line);
}

static void
clear_exhausted(struct prov *p, const char *range)
{
	char key[96], seen[8] = "";

	snprintf(key, sizeof(key), "exhausted:%s", range);
	if (inv_meta_get(p->inv, key, seen, sizeof(seen)) == INV_OK && seen[0] == '1')
		inv_meta_put(p->inv, key, "0");
}

/* Candidate ranges for a user: by licence, rule, then priority and config order. */
static size_t
candidates(struct prov *p, const cJSON *rec, const struct cfg_range **out, size_t max)
{
	int cp = rec_num(rec, "calling_plan") != 0;
	struct rule_attrs a;
	size_t n = 0;

	rec_attrs(rec, &a);
	for (size_t i = 0; i < p->cfg->n_ranges && n < max; i++) {
		const struct cfg_range *r = &p->cfg->ranges[i];
		if ((r->type == RT_CALLING_PLAN) != cp)
			continue;
		if (r->match && !rule_eval(r->match, &a))
			continue;
		out[n++] = r;
	}
	/* insertion sort keeps config order among equal priorities */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && out[j - 1]->priority > out[j]->priority; j--) {
			const struct cfg_range *t = out[j];
			out[j] = out[j - 1];
			out[j - 1] = t;
		}
	return n;
}

struct assign_ctx {
	struct change_ctx c;
	int manual;
};

static void
retry_later(struct prov *p, cJSON *rec, const char *reason)
{
	double backoff = rec_num(rec, "backoff");

	backoff = backoff ? backoff * 2 : p->cfg->sync.retry_min;
	if (backoff > p->cfg->sync.retry_max)
		backoff = p->cfg->sync.retry_max;
	rec_set_num(rec, "backoff", backoff);
	rec_set_num(rec, "retry_at", (double)(time(NULL) + (time_t)backoff));
	if (state_changed(rec, "waiting")) {
		char line[512] = "", secs[24];
		snprintf(secs, sizeof(secs), "%.0f", backoff);
		kv(line, sizeof(line), "event", "waiting");
		kv(line, sizeof(line), "user", rec_str(rec, "upn"));
		kv(line, sizeof(line), "reason", reason);
		kv(line, sizeof(line), "retry_in", secs);
		event_line(LOG_NOTICE, line);
	}
}

static void policy_done(const struct teams_result *t, void *arg);

static void
assigned_ok(struct prov *p, struct change_ctx *c, cJSON *rec, const struct cfg_range *r)
{
	char line[1024] = "";

	inv_confirm(p->inv, c->number, c->id, time(NULL));
	kv(line, sizeof(line), "event", "assign");
	kv(line, sizeof(line), "user", c->upn);
	kv(line, sizeof(line), "id", c->id);
	kv(line, sizeof(line), "number", c->number);
	kv(line, sizeof(line), "range", c->range);
	kv(line, sizeof(line), "type", r ? config_range_type_name(r->type) : "-");
	event_line(LOG_NOTICE, line);
	p->c_assigned++;
	p->st.assignments++;
	if (rec) {
		state_changed(rec, "assigned");
		rec_set_num(rec, "backoff", 0);
		rec_set_num(rec, "retry_at", 0);
	}
	if (r && r->voice_routing_policy && *r->voice_routing_policy) {
		struct change_ctx *pc = malloc(sizeof(*pc));
		if (pc) {
			*pc = *c;
			pc->reply = NULL;
			p->outstanding++;
			if (teams_assign_policy(p->graph, c->id, "OnlineVoiceRoutingPolicy",
				r->voice_routing_policy, policy_done, pc) < 0) {
				p->outstanding--;
				free(pc);
			}
		}
	}
}

static void
policy_done(const struct teams_result *t, void *arg)
{
	struct change_ctx *c = arg;
	struct prov *p = c->p;

	if (!t->ok)
		log_warnx("provision", "voice routing policy for %s: %s %s", c->upn, t->error, t->detail);
	free(c);
	p->outstanding--;
	cycle_step_done(p);
}

static void
assigned(const struct teams_result *t, void *arg)
{
	struct assign_ctx *a = arg;
	struct change_ctx *c = &a->c;
	struct prov *p = c->p;
	const struct cfg_range *r = range_of(p, c->range);
	cJSON *rec = dir_record(p, c->id);

	if (t->ok) {
		assigned_ok(p, c, rec, r);
		reply_json(c, 1, NULL, c->number);
	} else if (strcmp(t->error, "stopping") == 0) {
		/* Teams may still do it: left pending, settled with Teams at the next start */
		log_notice("provision", "%s for %s left pending: numprovd is stopping", c->number, c->upn);
		reply_json(c, 0, "numprovd is stopping", NULL);
	} else {
		inv_fail(p->inv, c->number, c->id);
		p->st.assign_failures++;
		if (strstr(t->detail, "already been assigned to another user")) {
			/* someone holds it in Teams: keep it out of the pool, never overwrite it */
			char line[512] = "";
			inv_reserve(p->inv, c->number, time(NULL));
			p->st.drift++;
			kv(line, sizeof(line), "event", "drift");
			kv(line, sizeof(line), "number", c->number);
			kv(line, sizeof(line), "range", c->range);
			kv(line, sizeof(line), "reason", "held-in-teams");
			event_line(LOG_WARNING, line);
		} else if (rec) {
			retry_later(p, rec, strstr(t->detail, "not licensed") ? "licence-not-ready"
									  : "assign-failed");
		}
		if (!strstr(t->detail, "not licensed")) {
			p->errors++;
			snprintf(p->error, sizeof(p->error), "assign %s: %.200s", c->number, t->detail);
		}
		reply_json(c, 0, t->detail[0] ? t->detail : t->error, NULL);
	}
	if (rec) {
		dir_save(p, c->id, rec);
		cJSON_Delete(rec);
	}
	free(a);
	p->outstanding--;
	cycle_step_done(p);
}

static int
start_assign(struct prov *p, const char *id, const char *upn, const struct inv_number *n,
    const struct cfg_range *r, prov_reply reply, void *reply_arg)
{
	struct assign_ctx *a = calloc(1, sizeof(*a));

	if (!a)
		return -1;
	a->c.p = p;
	a->c.reply = reply;
	a->c.reply_arg = reply_arg;
	snprintf(a->c.id, sizeof(a->c.id), "%s", id);
	snprintf(a->c.upn, sizeof(a->c.upn), "%s", upn);
	snprintf(a->c.number, sizeof(a->c.number), "%s", n->number);
	snprintf(a->c.range, sizeof(a->c.range), "%s", r ? r->name : "");
	p->outstanding++;
	if (teams_assign(p->graph, id, n->number, number_type(r), r ? r->location_id : NULL, assigned,
		a) < 0) {
		p->outstanding--;
		inv_fail(p->inv, n->number, id);
		free(a);
		return -1;
	}
	return 0;
}

static void
log_dry_assign(const char *id, const char *upn, const char *number, const struct cfg_range *r)
{
	char line[1024] = "";

	kv(line, sizeof(line), "event", "assign");
	kv(line, sizeof(line), "user", upn);
	kv(line, sizeof(line), "id", id);
	kv(line, sizeof(line), "number", number);
	kv(line, sizeof(line), "range", r->name);
	kv(line, sizeof(line), "type", config_range_type_name(r->type));
	kv(line, sizeof(line), "dry_run", "yes");
	event_line(LOG_NOTICE, line);
}

/* A licensed, enabled user without a number: the first matching range with room. */
static void
assign_new(struct prov *p, const char *id, cJSON *rec)
{
	const struct cfg_range *cand[64];
	size_t n = candidates(p, rec, cand, 64);
	const char *upn = rec_str(rec, "upn");
	time_t now = time(NULL);

	if (n == 0) {
		log_unmatched(p, id, rec, "no-match");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct inv_number num;
		int rc = p->cfg->sync.mode == SYNC_DRY_RUN ? inv_peek(p->inv, cand[i]->name, now, &num)
							    : inv_allocate(p->inv, cand[i]->name, id, upn, now, &num);
		if (rc == INV_E_FULL) {
			log_exhausted(p, cand[i]);
			continue;
		}
		if (rc != INV_OK) {
			log_err("provision", "range %s: cannot allocate for %s: %s", cand[i]->name, upn,
			    inv_strerror(rc));
			return;
		}
		clear_exhausted(p, cand[i]->name);
		if (p->cfg->sync.mode == SYNC_DRY_RUN)
			log_dry_assign(id, upn, num.number, cand[i]);
		else
			start_assign(p, id, upn, &num, cand[i], NULL, NULL);
		state_changed(rec, "assigning");
		return;
	}
	log_unmatched(p, id, rec, "ranges-full");
}

/* ---- one user's decision ------------------------------------------------ */

static const char *
teams_number_of(struct prov *p, const char *id)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->teams_by_user, id);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void
adopt(struct prov *p, const char *id, cJSON *rec, const char *number)
{
	char line[1024] = "";
	struct inv_number n;
	int rc;

	if (p->cfg->sync.mode == SYNC_DRY_RUN)
		return;
	rc = inv_adopt(p->inv, number, id, rec_str(rec, "upn"), time(NULL));
	if (rc != INV_OK) {
		log_warnx("provision", "%s holds %s in Teams; cannot record it: %s", rec_str(rec, "upn"),
		    number, inv_strerror(rc));
		p->st.drift += rc == INV_E_TAKEN;
		return;
	}
	inv_get_number(p->inv, number, &n);
	kv(line, sizeof(line), "event", "adopt");
	kv(line, sizeof(line), "user", rec_str(rec, "upn"));
	kv(line, sizeof(line), "id", id);
	kv(line, sizeof(line), "number", number);
	kv(line, sizeof(line), "range", n.range[0] ? n.range : "-");
	event_line(LOG_NOTICE, line);
	state_changed(rec, "assigned");
}

static void
retain(const char *id, cJSON *rec, const struct inv_user *u, const char *reason)
{
	char line[1024] = "";

	kv(line, sizeof(line), "event", "retain");
	kv(line, sizeof(line), "user", rec_str(rec, "upn"));
	kv(line, sizeof(line), "id", id);
	kv(line, sizeof(line), "number", u->number);
	kv(line, sizeof(line), "reason", reason);
	event_line(LOG_INFO, line);
}

static void
decide(struct prov *p, const struct work *w)
{
	cJSON *rec = dir_record(p, w->id);
	struct inv_user u;
	int holds = inv_get_user(p->inv, w->id, &u) == INV_OK;
	const char *upn = rec ? rec_str(rec, "upn") : (holds ? u.upn : "");
	int automatic = p->cfg->sync.mode != SYNC_OFF;

	if (w->gone) {
		if (holds && automatic && p->cfg->policy.release_on_delete)
			release_user(p, w->id, upn, "deleted", NULL, NULL);
		inv_dir_del(p->inv, w->id);
	} else if (!rec) {
		/* nothing known */
	} else if (!rec_num(rec, "teams_phone")) {
		if (holds && automatic && p->cfg->policy.release_on_unlicense)
			release_user(p, w->id, upn, "unlicensed", NULL, NULL);
		state_changed(rec, "unlicensed");
	} else if (!rec_num(rec, "enabled")) {
		if (holds && automatic && p->cfg->policy.release_on_disable)
			release_user(p, w->id, upn, "disabled", NULL, NULL);
		else if (holds && state_changed(rec, "disabled"))
			retain(w->id, rec, &u, "disabled");
	} else if (holds) {
		if (w->moved)
			retain(w->id, rec, &u, "moved");
		if (u.state == INV_ASSIGNED)
			state_changed(rec, "assigned");
	} else if (!automatic) {
		/* off: nothing is given automatically */
	} else if (teams_number_of(p, w->id)) {
		adopt(p, w->id, rec, teams_number_of(p, w->id));
	} else if (rec_num(rec, "retry_at") <= (double)time(NULL)) {
		assign_new(p, w->id, rec);
	}
	if (rec && !w->gone)
		dir_save(p, w->id, rec);
	cJSON_Delete(rec);
}

/* ---- the cycle ---------------------------------------------------------- */

static long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

struct counter_ctx {
	unsigned long users, pending, unmatched;
};

static int
count_dir(const char *id, const char *text, void *arg)
{
	struct counter_ctx *c = arg;

	(void)id;
	c->users++;
	c->unmatched += strstr(text, "\"state\":\"no-match\"") || strstr(text, "\"state\":\"ranges-full\"");
	c->pending += strstr(text, "\"state\":\"waiting\"") != NULL;
	return 0;
}

static void
schedule(struct prov *p, int seconds)
{
	struct timeval tv = { seconds, 0 };

	p->st.next_at = time(NULL) + seconds;
	evtimer_add(p->tick, &tv);
}

static void
cycle_end(struct prov *p)
{
	struct counter_ctx cc = { 0, 0, 0 };
	char line[512] = "", v[32];
	const char *result;

	p->running = 0;
	p->st.running = 0;
	p->st.last_end = time(NULL);
	p->st.last_duration_ms = ms_since(&p->t0);
	p->st.syncs++;
	p->st.last_result = p->errors ? PR_PARTIAL : PR_SUCCESS;
	if (p->error[0] && p->errors && p->n_work == 0)
		p->st.last_result = PR_FAILED;
	if (p->st.last_result != PR_SUCCESS)
		p->st.failures++;
	snprintf(p->st.last_error, sizeof(p->st.last_error), "%s", p->errors ? p->error : "");
	inv_dir_foreach(p->inv, count_dir, &cc);
	p->st.users_tracked = cc.users;
	p->st.users_pending = cc.pending;
	p->st.users_unmatched = cc.unmatched;
	result = p->st.last_result == PR_SUCCESS ? "success" : p->st.last_result == PR_PARTIAL ? "partial" : "failed";
	kv(line, sizeof(line), "event", "sync");
	kv(line, sizeof(line), "result", result);
	kv(line, sizeof(line), "full", p->full ? "yes" : "no");
	snprintf(v, sizeof(v), "%zu", p->n_work);
	kv(line, sizeof(line), "users", v);
	snprintf(v, sizeof(v), "%lu", p->c_assigned);
	kv(line, sizeof(line), "assigned", v);
	snprintf(v, sizeof(v), "%lu", p->c_released);
	kv(line, sizeof(line), "released", v);
	snprintf(v, sizeof(v), "%ld", p->st.last_duration_ms);
	kv(line, sizeof(line), "duration_ms", v);
	if (p->errors)
		kv(line, sizeof(line), "error", p->error);
	event_line(p->errors ? LOG_WARNING : LOG_INFO, line);
	clear_round(p);
	if (p->draining) {
		if (p->drained)
			p->drained(p->drained_arg);
		return;
	}
	if (p->again) {
		p->again = 0;
		prov_trigger(p, p->again_full);
		return;
	}
	schedule(p, p->cfg->sync.interval);
}

static void
cycle_step_done(struct prov *p)
{
	if (p->running == 2 && p->outstanding == 0)
		cycle_end(p);
	else if (!p->running && p->draining && p->outstanding == 0 && p->drained)
		p->drained(p->drained_arg);
}

/* Users held back earlier (licence not visible yet, no room) whose time has come. */
static int
due_cb(const char *id, const char *text, void *arg)
{
	struct prov *p = arg;
	cJSON *rec;

	if (!strstr(text, "\"state\":\"waiting\"") && !strstr(text, "\"state\":\"no-match\"") &&
	    !strstr(text, "\"state\":\"ranges-full\"") && !strstr(text, "\"state\":\"assigning\""))
		return 0;
	rec = cJSON_Parse(text);
	if (rec && rec_num(rec, "retry_at") <= (double)time(NULL))
		add_work(p, id);
	cJSON_Delete(rec);
	return 0;
}

/* Number holders that a full sync did not see are gone from the directory. */
static int
gone_cb(const struct inv_user *u, void *arg)
{
	struct prov *p = arg;
	const char *key = u->id;
	struct work *w;

	if (bsearch(&key, p->seen, p->n_seen, sizeof(*p->seen), cmp_str))
		return 0;
	if ((w = add_work(p, u->id)))
		w->gone = 1;
	return 0;
}

static void adopt_held(struct prov *p, const char *number, const char *holder);

static void
decide_all(struct prov *p)
{
	const cJSON *t;

	/* a number of ours that someone holds in Teams is never handed out again */
	if (p->full && p->cfg->sync.mode != SYNC_DRY_RUN)
		cJSON_ArrayForEach(t, p->teams_by_user)
			adopt_held(p, t->valuestring, t->string);
	if (p->full) {
		qsort(p->seen, p->n_seen, sizeof(*p->seen), cmp_str);
		inv_foreach_user(p->inv, gone_cb, p);
	}
	inv_dir_foreach(p->inv, due_cb, p);
	p->running = 2; /* deciding: the cycle ends when the last Graph call returns */
	p->outstanding++;
	for (size_t i = 0; i < p->n_work; i++)
		decide(p, &p->work[i]);
	p->outstanding--;
	cycle_step_done(p);
}

static void
on_page(const struct dir_page *pg, int full, void *arg)
{
	struct prov *p = arg;
	const char **ids = calloc(pg->n_users + 1, sizeof(*ids));
	char **texts = calloc(pg->n_users + 1, sizeof(*texts));
	size_t n = 0;

	if (full && !p->full) { /* the link was refused: this became a full sync */
		p->full = 1;
		clear_round(p);
	}
	for (size_t i = 0; ids && texts && i < pg->n_users; i++) {
		const struct dir_user *u = &pg->users[i];
		struct work *w = add_work(p, u->id);
		cJSON *old, *rec;

		if (!w)
			continue;
		if (u->removed != DIR_PRESENT) {
			w->gone = 1;
			w->removed = u->removed;
			continue;
		}
		if (p->full)
			add_seen(p, u->id);
		old = dir_record(p, u->id);
		rec = record_from_user(p, u, old);
		w->moved |= moved(old, rec);
		ids[n] = u->id;
		texts[n++] = cJSON_PrintUnformatted(rec);
		cJSON_Delete(old);
		cJSON_Delete(rec);
	}
	/*
	 * One transaction per page: the round's changes are recorded before its link.
	 * dry-run records the directory too (plan and user need it), never numbers.
	 */
	if (inv_dir_put_batch(p->inv, n, ids, (const char *const *)texts) != INV_OK)
		p->errors++;
	for (size_t i = 0; i < n; i++)
		free(texts[i]);
	free(ids);
	free(texts);
}

static void
on_delta_done(const struct delta_done *d, void *arg)
{
	struct prov *p = arg;

	if (d->status != DELTA_OK) {
		p->errors++;
		snprintf(p->error, sizeof(p->error), "%.250s", d->error);
		p->n_work = 0; /* decide nothing on half a round */
		p->running = 2;
		cycle_step_done(p);
		return;
	}
	/* dry-run keeps no link: switched to enforce, it must see every user again */
	if (p->cfg->sync.mode != SYNC_DRY_RUN)
		inv_meta_put(p->inv, META_DELTA, d->delta_link);
	if (d->full && p->cfg->sync.mode != SYNC_DRY_RUN) {
		char when[32];
		p->last_full = time(NULL);
		/* a restart continues from the link; the full sync stays on its own schedule */
		snprintf(when, sizeof(when), "%lld", (long long)p->last_full);
		inv_meta_put(p->inv, "last_full", when);
	}
	decide_all(p);
}

static void
start_delta(struct prov *p)
{
	char link[8192] = "";

	if (!p->full)
		inv_meta_get(p->inv, META_DELTA, link, sizeof(link));
	if (!link[0])
		p->full = 1;
	if (teams_delta(p->graph, link[0] ? link : NULL, on_page, on_delta_done, p) < 0) {
		p->errors++;
		snprintf(p->error, sizeof(p->error), "cannot start the users delta");
		p->running = 2;
		cycle_step_done(p);
	}
}

/* ---- full reconciliation: Teams' numbers against the inventory ---------- */

static void
on_numbers(const struct teams_number *v, size_t n, void *arg)
{
	struct prov *p = arg;

	for (size_t i = 0; i < n; i++)
		if (v[i].target[0] && !cJSON_GetObjectItemCaseSensitive(p->teams_by_user, v[i].target))
			cJSON_AddStringToObject(p->teams_by_user, v[i].target, v[i].number);
}

struct drift_ctx {
	struct prov *p;
	cJSON *by_number;
};

static void
log_drift(struct prov *p, const char *number, const char *inv_user, const char *teams_user)
{
	char line[512] = "";

	kv(line, sizeof(line), "event", "drift");
	kv(line, sizeof(line), "number", number);
	kv(line, sizeof(line), "inventory_user", inv_user);
	kv(line, sizeof(line), "teams_user", teams_user[0] ? teams_user : "-");
	event_line(LOG_WARNING, line);
	p->st.drift++;
}

static int
drift_cb(const struct inv_number *n, void *arg)
{
	struct drift_ctx *d = arg;
	const cJSON *t;

	if (n->state != INV_ASSIGNED)
		return 0;
	t = cJSON_GetObjectItemCaseSensitive(d->by_number, n->number);
	if (!cJSON_IsString(t) || strcmp(t->valuestring, n->user_id) != 0)
		log_drift(d->p, n->number, n->user_id, cJSON_IsString(t) ? t->valuestring : "");
	return 0;
}

static int
in_our_ranges(struct prov *p, const char *number)
{
	struct e164 n;
	uint64_t off;
	char err[160];

	if (e164_parse(number, &n, err, sizeof(err)) < 0)
		return 0;
	for (size_t i = 0; i < p->cfg->n_ranges; i++)
		if (e164_range_contains(&p->cfg->ranges[i].span, &n, &off))
			return 1;
	return 0;
}

static void
adopt_held(struct prov *p, const char *number, const char *holder)
{
	struct inv_number n;
	cJSON *rec;

	if (!in_our_ranges(p, number) || inv_get_number(p->inv, number, &n) != INV_OK ||
	    n.state != INV_AVAILABLE)
		return;
	rec = dir_record(p, holder);
	/*
	 * Ours and free in the inventory. On a user we provision it is recorded as
	 * theirs; on anyone else (a resource account, an unlicensed user) a person put
	 * it there: it is kept out of the pool and left alone.
	 */
	if (rec && rec_num(rec, "teams_phone") && rec_num(rec, "enabled"))
		adopt(p, holder, rec, number);
	if (inv_get_number(p->inv, number, &n) == INV_OK && n.state == INV_AVAILABLE) {
		inv_reserve(p->inv, number, time(NULL));
		log_notice("provision", "%s is held in Teams by %s, who numprov does not provision: "
		    "kept out of the pool", number, holder);
	}
	if (rec) {
		dir_save(p, holder, rec);
		cJSON_Delete(rec);
	}
}

static void
on_numbers_done(int ok, size_t total, const char *error, void *arg)
{
	struct prov *p = arg;
	struct drift_ctx d = { p, cJSON_CreateObject() };
	cJSON *u;

	if (!ok) {
		p->errors++;
		snprintf(p->error, sizeof(p->error), "%s", error ? error : "numberAssignments");
		p->running = 2;
		cycle_step_done(p);
		cJSON_Delete(d.by_number);
		return;
	}
	cJSON_ArrayForEach(u, p->teams_by_user)
		cJSON_AddStringToObject(d.by_number, u->valuestring, u->string);
	/* an inventory assignment Teams does not show: logged and counted, never rewritten */
	inv_foreach_number(p->inv, drift_cb, &d);
	cJSON_Delete(d.by_number);
	log_debug("provision", "reconciled with %zu numbers in Teams", total);
	start_delta(p);
}

static void
on_skus(const struct teams_result *t, void *arg)
{
	struct prov *p = arg;

	if (!t->ok)
		log_warnx("provision", "subscribedSkus: %s %s; the built-in plan list is used", t->error,
		    t->detail);
	cJSON_Delete(p->teams_by_user);
	p->teams_by_user = cJSON_CreateObject();
	if (teams_list_numbers(p->graph, on_numbers, on_numbers_done, p) < 0)
		start_delta(p);
}

static void
cycle_start(struct prov *p, int full)
{
	if (p->running || p->draining)
		return;
	p->running = 1;
	p->st.running = 1;
	p->errors = 0;
	p->error[0] = '\0';
	p->c_assigned = p->c_released = 0;
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
	p->st.last_start = time(NULL);
	clear_round(p);
	evtimer_del(p->tick);
	inv_expire(p->inv, time(NULL));
	p->full = full || !p->last_full || time(NULL) - p->last_full >= p->cfg->sync.full_interval;
	p->st.last_full = p->full;
	if (p->full) {
		if (teams_load_skus(p->graph, p->lic, on_skus, p) < 0)
			on_skus(&(struct teams_result){ 0 }, p);
	} else {
		start_delta(p);
	}
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	cycle_start(arg, 0);
}

static void
on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct prov *p = arg;

	(void)fd;
	(void)what;
	cycle_start(p, p->again_full);
	p->again_full = 0;
}

void
prov_trigger(struct prov *p, int full)
{
	struct timeval now = { 0, 0 };

	if (p->running) {
		p->again = 1;
		p->again_full |= full;
		return;
	}
	p->again_full = full;
	evtimer_add(p->kick, &now);
}

/* ---- life cycle --------------------------------------------------------- */

struct prov *
prov_new(struct event_base *base, struct config *cfg, struct inventory *inv, struct graph *graph)
{
	struct prov *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->base = base;
	p->cfg = cfg;
	p->inv = inv;
	p->graph = graph;
	p->lic = dir_licensing_from_config(cfg);
	p->tick = evtimer_new(base, on_tick, p);
	p->kick = evtimer_new(base, on_kick, p);
	p->teams_by_user = cJSON_CreateObject();
	{
		char when[32];
		if (inv_meta_get(inv, "last_full", when, sizeof(when)) == INV_OK)
			p->last_full = (time_t)atoll(when);
	}
	return p;
}

void
prov_set_config(struct prov *p, struct config *cfg)
{
	dir_licensing_free(p->lic);
	p->cfg = cfg;
	p->lic = dir_licensing_from_config(cfg);
}

/*
 * After a crash a number may be pending: written ahead, its assignNumber sent or
 * not. Teams says which: on the user (confirm) or not (give it back).
 */
struct pending_ctx {
	struct prov *p;
	char number[E164_STRLEN], user[INV_ID_MAX];
};

static void
pending_checked(const struct teams_result *t, const struct teams_number *n, int found, void *arg)
{
	struct pending_ctx *c = arg;
	struct prov *p = c->p;

	if (!t->ok) {
		log_warnx("provision", "cannot check pending %s: %s", c->number, t->error);
	} else if (found && strcmp(n->target, c->user) == 0) {
		inv_confirm(p->inv, c->number, c->user, time(NULL));
		log_notice("provision", "%s was assigned to %s before the restart: recorded", c->number,
		    c->user);
	} else {
		inv_fail(p->inv, c->number, c->user);
		log_notice("provision", "%s was not assigned in Teams before the restart: back in the pool",
		    c->number);
	}
	free(c);
	if (--p->outstanding == 0)
		prov_trigger(p, 0);
}

static int
pending_cb(const struct inv_number *n, void *arg)
{
	struct prov *p = arg;
	struct pending_ctx *c;

	if (n->state != INV_PENDING || !(c = calloc(1, sizeof(*c))))
		return 0;
	c->p = p;
	snprintf(c->number, sizeof(c->number), "%s", n->number);
	snprintf(c->user, sizeof(c->user), "%s", n->user_id);
	p->outstanding++;
	if (teams_find_number(p->graph, n->number, pending_checked, c) < 0) {
		p->outstanding--;
		free(c);
	}
	return 0;
}

void
prov_start(struct prov *p)
{
	if (p->cfg->sync.mode == SYNC_OFF)
		log_notice("provision", "sync.mode is off: no automatic provisioning");
	p->outstanding++;
	inv_foreach_number(p->inv, pending_cb, p);
	if (--p->outstanding == 0)
		prov_trigger(p, 0);
}

void
prov_drain(struct prov *p, void (*done)(void *arg), void *arg)
{
	p->draining = 1;
	p->drained = done;
	p->drained_arg = arg;
	evtimer_del(p->tick);
	evtimer_del(p->kick);
	/* what waits for a retry is given up; what is on the wire is answered */
	graph_stop(p->graph);
	if (!p->running && p->outstanding == 0)
		done(arg);
}

void
prov_get_stats(struct prov *p, struct prov_stats *out)
{
	*out = p->st;
}

void
prov_free(struct prov *p)
{
	if (!p)
		return;
	clear_round(p);
	free(p->seen);
	free(p->work);
	event_free(p->tick);
	event_free(p->kick);
	cJSON_Delete(p->teams_by_user);
	dir_licensing_free(p->lic);
	free(p);
}

/* ---- for the control socket --------------------------------------------- */

struct find_ctx {
	const char *key;
	char id[INV_ID_MAX];
};

static int
find_upn(const char *id, const char *text, void *arg)
{
	struct find_ctx *f = arg;
	cJSON *rec = cJSON_Parse(text);
	int hit = rec && strcasecmp(rec_str(rec, "upn"), f->key) == 0;

	if (hit)
		snprintf(f->id, sizeof(f->id), "%s", id);
	cJSON_Delete(rec);
	return hit;
}

/* A user id from an id or a UPN; "" when unknown. */
static void
resolve_user(struct prov *p, const char *key, char *id, size_t len)
{
	struct find_ctx f = { key, "" };
	char *text = NULL;

	if (inv_dir_get(p->inv, key, &text) == INV_OK) {
		snprintf(id, len, "%s", key);
		free(text);
		return;
	}
	inv_dir_foreach(p->inv, find_upn, &f);
	snprintf(id, len, "%s", f.id);
}

cJSON *
prov_explain_user(struct prov *p, const char *key)
{
	char id[INV_ID_MAX], why[1024];
	cJSON *rec, *out, *ranges;
	struct rule_attrs a;
	struct inv_user u;
	const struct cfg_range *cand[64];
	size_t n;

	resolve_user(p, key, id, sizeof(id));
	if (!id[0] || !(rec = dir_record(p, id)))
		return NULL;
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "id", id);
	cJSON_AddItemToObject(out, "record", cJSON_Duplicate(rec, 1));
	if (inv_get_user(p->inv, id, &u) == INV_OK) {
		cJSON_AddStringToObject(out, "number", u.number);
		cJSON_AddStringToObject(out, "number_state", inv_state_name(u.state));
	}
	rec_attrs(rec, &a);
	ranges = cJSON_AddArrayToObject(out, "ranges");
	for (size_t i = 0; i < p->cfg->n_ranges; i++) {
		const struct cfg_range *r = &p->cfg->ranges[i];
		int type_ok = (r->type == RT_CALLING_PLAN) == (rec_num(rec, "calling_plan") != 0);
		int match = r->match ? rule_explain(r->match, &a, why, sizeof(why)) : 1;
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "name", r->name);
		cJSON_AddBoolToObject(o, "type_ok", type_ok);
		cJSON_AddBoolToObject(o, "match", match);
		cJSON_AddStringToObject(o, "why", r->match ? why : "no rule: every user of its type");
		cJSON_AddItemToArray(ranges, o);
	}
	n = candidates(p, rec, cand, 64);
	for (size_t i = 0; i < n; i++) {
		struct inv_number num;
		if (inv_peek(p->inv, cand[i]->name, time(NULL), &num) == INV_OK) {
			cJSON_AddStringToObject(out, "would_get", num.number);
			cJSON_AddStringToObject(out, "would_get_range", cand[i]->name);
			break;
		}
	}
	cJSON_Delete(rec);
	return out;
}

struct users_ctx {
	struct prov *p;
	const char *filter;
	cJSON *arr;
};

static int
users_cb(const char *id, const char *text, void *arg)
{
	struct users_ctx *c = arg;
	cJSON *rec = cJSON_Parse(text), *o;
	const char *state = rec ? rec_str(rec, "state") : "";
	struct inv_user u;

	if (!rec)
		return 0;
	if (c->filter && strcmp(c->filter, "pending") == 0 && strcmp(state, "waiting") != 0 &&
	    strcmp(state, "assigning") != 0) {
		cJSON_Delete(rec);
		return 0;
	}
	if (c->filter && strcmp(c->filter, "unmatched") == 0 && strcmp(state, "no-match") != 0 &&
	    strcmp(state, "ranges-full") != 0) {
		cJSON_Delete(rec);
		return 0;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "upn", rec_str(rec, "upn"));
	cJSON_AddStringToObject(o, "state", state);
	if (inv_get_user(c->p->inv, id, &u) == INV_OK)
		cJSON_AddStringToObject(o, "number", u.number);
	cJSON_AddItemToArray(c->arr, o);
	cJSON_Delete(rec);
	return 0;
}

cJSON *
prov_users(struct prov *p, const char *filter)
{
	struct users_ctx c = { p, filter, cJSON_CreateArray() };

	inv_dir_foreach(p->inv, users_cb, &c);
	return c.arr;
}

struct plan_ctx {
	struct prov *p;
	cJSON *arr;
};

static int
plan_cb(const char *id, const char *text, void *arg)
{
	struct plan_ctx *c = arg;
	cJSON *rec = cJSON_Parse(text), *o;
	const struct cfg_range *cand[64];
	struct inv_user u;
	size_t n;

	if (!rec)
		return 0;
	if (inv_get_user(c->p->inv, id, &u) == INV_OK || !rec_num(rec, "teams_phone") ||
	    !rec_num(rec, "enabled")) {
		int release = inv_get_user(c->p->inv, id, &u) == INV_OK && !rec_num(rec, "teams_phone") &&
		    c->p->cfg->policy.release_on_unlicense;
		if (release) {
			o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "action", "release");
			cJSON_AddStringToObject(o, "user", rec_str(rec, "upn"));
			cJSON_AddStringToObject(o, "number", u.number);
			cJSON_AddItemToArray(c->arr, o);
		}
		cJSON_Delete(rec);
		return 0;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "user", rec_str(rec, "upn"));
	cJSON_AddStringToObject(o, "id", id);
	n = candidates(c->p, rec, cand, 64);
	cJSON_AddStringToObject(o, "action", n ? "assign" : "unmatched");
	for (size_t i = 0; i < n; i++) {
		struct inv_number num;
		if (inv_peek(c->p->inv, cand[i]->name, time(NULL), &num) == INV_OK) {
			cJSON_AddStringToObject(o, "number", num.number);
			cJSON_AddStringToObject(o, "range", cand[i]->name);
			break;
		}
	}
	cJSON_AddItemToArray(c->arr, o);
	cJSON_Delete(rec);
	return 0;
}

cJSON *
prov_plan(struct prov *p)
{
	struct plan_ctx c = { p, cJSON_CreateArray() };

	inv_dir_foreach(p->inv, plan_cb, &c);
	return c.arr;
}

struct manual {
	struct prov *p;
	char id[INV_ID_MAX], upn[INV_UPN_MAX], number[E164_STRLEN];
	const struct cfg_range *r;
	prov_reply reply;
	void *arg;
};

static void
manual_fail(struct manual *m, const char *error)
{
	cJSON *r = cJSON_CreateObject();

	cJSON_AddBoolToObject(r, "ok", 0);
	cJSON_AddStringToObject(r, "error", error);
	m->reply(r, m->arg);
	free(m);
}

/* The number is written ahead (pending) before Teams is asked, as in the cycle. */
static void
manual_claim(struct manual *m)
{
	struct inv_number n;
	int rc = inv_claim(m->p->inv, m->number, m->id, m->upn, time(NULL));

	if (rc != INV_OK) {
		manual_fail(m, inv_strerror(rc));
		return;
	}
	inv_get_number(m->p->inv, m->number, &n);
	if (start_assign(m->p, m->id, m->upn, &n, m->r, m->reply, m->arg) < 0)
		manual_fail(m, "cannot send the assignment to Teams");
	else
		free(m);
}

static void
manual_released(cJSON *reply, void *arg)
{
	struct manual *m = arg;
	const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");

	if (cJSON_IsTrue(ok)) {
		cJSON_Delete(reply);
		manual_claim(m);
		return;
	}
	m->reply(reply, m->arg);
	free(m);
}

int
prov_manual_assign(struct prov *p, const char *key, const char *number, prov_reply cb, void *arg)
{
	char id[INV_ID_MAX], err[160];
	const struct cfg_range *r = NULL;
	struct inv_user u;
	struct inv_number n;
	struct manual *m;
	struct e164 num;
	uint64_t off;
	cJSON *rec;

	resolve_user(p, key, id, sizeof(id));
	if (!id[0])
		return -1;
	if (e164_parse(number, &num, err, sizeof(err)) < 0)
		return -2;
	for (size_t i = 0; i < p->cfg->n_ranges && !r; i++)
		if (e164_range_contains(&p->cfg->ranges[i].span, &num, &off))
			r = &p->cfg->ranges[i];
	if (!r)
		return -3;
	if (!(m = calloc(1, sizeof(*m))))
		return -5;
	*m = (struct manual){ p, "", "", "", r, cb, arg };
	snprintf(m->id, sizeof(m->id), "%s", id);
	e164_format(&num, m->number, sizeof(m->number));
	rec = dir_record(p, id);
	snprintf(m->upn, sizeof(m->upn), "%s", rec ? rec_str(rec, "upn") : key);
	cJSON_Delete(rec);
	if (inv_get_number(p->inv, m->number, &n) == INV_OK &&
	    (n.state == INV_PENDING || n.state == INV_ASSIGNED) && strcmp(n.user_id, id) != 0) {
		free(m);
		return -4;
	}
	/* the administrator's change replaces the user's number: the old one goes back first */
	if (inv_get_user(p->inv, id, &u) == INV_OK && strcmp(u.number, m->number) != 0) {
		if (release_user(p, id, m->upn, "changed", manual_released, m) < 0) {
			free(m);
			return -5;
		}
	} else {
		manual_claim(m);
	}
	return 0;
}

int
prov_manual_unassign(struct prov *p, const char *key, prov_reply cb, void *arg)
{
	char id[INV_ID_MAX];
	struct inv_user u;
	struct inv_number n;
	struct change_ctx *c;

	resolve_user(p, key, id, sizeof(id));
	if (!id[0] && inv_get_user(p->inv, key, &u) == INV_OK)
		snprintf(id, sizeof(id), "%s", key);
	if (!id[0] || inv_get_user(p->inv, id, &u) != INV_OK)
		return -1;
	inv_get_number(p->inv, u.number, &n);
	if (!(c = calloc(1, sizeof(*c))))
		return -5;
	c->p = p;
	c->reply = cb;
	c->reply_arg = arg;
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->upn, sizeof(c->upn), "%s", u.upn);
	snprintf(c->number, sizeof(c->number), "%s", u.number);
	snprintf(c->range, sizeof(c->range), "%s", n.range);
	snprintf(c->reason, sizeof(c->reason), "administrator");
	p->outstanding++;
	if (teams_unassign(p->graph, u.number, number_type(range_of(p, n.range)), released, c) < 0) {
		p->outstanding--;
		free(c);
		return -5;
	}
	return 0;
}
