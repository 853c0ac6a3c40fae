#include "build-config.h"

#include "provision.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "clock.h"
#include "config.h"
#include "decide.h"
#include "directory.h"
#include "events.h"
#include "graph.h"
#include "idmap.h"
#include "inventory.h"
#include "log.h"
#include "loop.h"
#include "rule.h"
#include "teams.h"
#include "user.h"
#include "utf8.h"

#define META_DELTA "delta_link"
#define META_LAST_FULL "last_full"

struct due_item {
	uint64_t seq;
	char *id;
};

/*
 * One sync round. It holds a reference to the configuration it started with,
 * so a reload while it runs changes nothing under it (docs/architecture.md),
 * but for sync.mode: a round still deciding stops when the mode changes.
 */
struct round {
	struct prov *p;
	struct config *cfg;
	int full;
	int failed; /* the round's changes could not all be recorded: the link stays */
	int errors; /* things that went wrong; the round is partial */
	char error[256];
	int outstanding;   /* Graph calls of this round in flight */
	int deciding;	   /* the directory part is done; ends when outstanding reaches 0 */
	struct idset seen; /* full sync: users in the directory */
	struct idmap teams_by_user; /* full sync: user id -> the number Teams shows on them */
	int teams_known;	    /* teams_by_user was read this round */
	unsigned long users, decided, assigned, released;
	struct timespec t0;
	/* the users due when deciding began, decided in turn while few enough of this
	   round's changes are in flight (change_cap): memory stays bounded however many
	   users a round has to number */
	struct due_item *todo;
	size_t n_todo, next_todo;
	int changes;	       /* changes of this round in flight */
	struct idmap planned;  /* dry-run: range -> the last number this round's plan gave */
	struct idmap dry_full; /* dry-run: ranges the plan found full (said once a round) */
};

struct prov {
	struct event_base *base;
	struct config *cfg; /* the current configuration (a reference) */
	struct inventory *inv;
	struct graph *graph;
	struct dir_licensing *lic; /* replaced only between rounds */
	int lic_stale;
	int skus_loaded; /* p->lic has learnt the tenant's plan names (subscribedSkus) */
	struct loop_timer *tick, *kick, *more;
	struct round *round; /* NULL when idle */
	int again, again_full, draining;
	time_t last_full;
	struct idmap due;	 /* users to decide: id -> not before (unix time) */
	struct idmap busy;	 /* users with a Teams change in flight */
	struct idmap inflight;	 /* numbers with a Teams change in flight */
	struct idmap dry_logged; /* dry-run stores no state: unmatched users logged, and how */
	int manual;		 /* administrators' changes in flight */
	unsigned long count[US__MAX];
	struct prov_stats st;
	void (*drained)(void *);
	void *drained_arg;
	int drained_called;
};

/* The drain's callback, once. */
static void
drained_now(struct prov *p)
{
	if (p->drained && !p->drained_called) {
		p->drained_called = 1;
		p->drained(p->drained_arg);
	}
}

static void round_step_done(struct round *r);

/* ---- small helpers ------------------------------------------------------ */

static void round_error(struct round *r, const char *fmt, ...) NP_PRINTF(2, 3);

static void
round_error(struct round *r, const char *fmt, ...)
{
	va_list ap;

	r->errors++;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

static enum teams_number_type
number_type_of(struct prov *p, const char *range)
{
	struct inv_range ir;

	if (range && *range && inv_get_range(p->inv, range, &ir) == INV_OK)
		return range_type_graph((enum range_type)ir.type);
	return TNT_DIRECT_ROUTING;
}

static int
quarantine_of(const struct config *cfg, const char *range)
{
	const struct cfg_range *cr = range && *range ? config_range_find(cfg, range) : NULL;
	return cr ? config_range_quarantine(cfg, cr) : cfg->policy.quarantine_days;
}

/* ---- the user store: records, and the counts by state ------------------- */

static int
user_load(struct prov *p, const char *id, struct user *u)
{
	void *rec = NULL;
	size_t len = 0;
	int rc = inv_dir_get(p->inv, id, &rec, &len);

	if (rc != INV_OK) {
		user_init(u, id);
		return rc == INV_E_NOTFOUND ? 1 : -1;
	}
	rc = user_decode(id, rec, len, u);
	free(rec);
	if (rc < 0) {
		log_warnx(
		    "provision", "the stored record of user %s cannot be read: decided afresh", id);
		user_init(u, id);
		return 1;
	}
	return 0;
}

/* Store u; old_state is what the counts hold for them (-1: not counted yet). */
static int
user_store(struct prov *p, struct user *u, int old_state)
{
	unsigned char *rec;
	size_t len;
	int rc;

	if (user_encode(u, &rec, &len) < 0)
		return INV_E_DB;
	rc = inv_dir_put(p->inv, u->id, rec, len);
	free(rec);
	if (rc != INV_OK)
		return rc;
	if (old_state >= 0 && old_state < US__MAX && p->count[old_state])
		p->count[old_state]--;
	p->count[u->state]++;
	return INV_OK;
}

static int
user_forget(struct prov *p, const struct user *u)
{
	int rc = inv_dir_del(p->inv, u->id);

	if (rc == INV_OK || rc == INV_E_NOTFOUND) {
		if (p->count[u->state])
			p->count[u->state]--;
		return INV_OK;
	}
	return rc;
}

static void
due_now(struct prov *p, const char *id, time_t when)
{
	if (idmap_put(&p->due, id, (int64_t)when, NULL) < 0)
		log_err("provision", "out of memory: user %s is decided at the next start", id);
}

/* ---- events ------------------------------------------------------------- */

static void
ev_user(enum np_event_kind k, const struct user *u, const char *number, const char *range,
    const char *reason)
{
	struct np_event e = { .kind = k,
		.user = u->upn,
		.id = u->id,
		.number = number,
		.range = range,
		.reason = reason };
	np_event_emit(&e);
}

static void
ev_unmatched(const struct user *u, const char *reason)
{
	struct np_event e = { .kind = NPE_UNMATCHED,
		.user = u->upn,
		.id = u->id,
		.city = u->attr[RA_CITY] ? u->attr[RA_CITY] : "",
		.office = u->attr[RA_OFFICE] ? u->attr[RA_OFFICE] : "",
		.usage_location = u->attr[RA_USAGE_LOCATION] ? u->attr[RA_USAGE_LOCATION] : "",
		.reason = reason };
	np_event_emit(&e);
}

/* Once per change of state (B5). Dry-run stores no state, so it remembers in memory. */
static void
unmatched_once(struct round *r, struct user *u, int state, const char *reason)
{
	struct prov *p = r->p;

	if (r->cfg->sync.mode == SYNC_DRY_RUN) {
		struct idmap_entry *e = idmap_get(&p->dry_logged, u->id);
		if (e && e->v == state)
			return;
		if (idmap_put(&p->dry_logged, u->id, state, NULL) < 0)
			log_warnx("provision", "out of memory");
	} else if (u->state == state) {
		return;
	}
	ev_unmatched(u, reason);
}

static void
ev_drift(struct prov *p, const char *number, const char *range, const char *inv_user,
    const char *teams_user, const char *reason)
{
	struct np_event e = { .kind = NPE_DRIFT,
		.number = number,
		.range = range,
		.inventory_user = inv_user,
		.teams_user = teams_user,
		.reason = reason };
	np_event_emit(&e);
	p->st.drift++;
}

/* event=release, counted (a dry run is logged, not counted); after: the number as released */
static void
ev_release(struct prov *p, struct round *r, const char *upn, const char *id, const char *number,
    const char *range, const char *reason, const char *by, const struct inv_number *after)
{
	struct np_event e = { .kind = NPE_RELEASE,
		.user = upn,
		.id = id,
		.number = number,
		.range = range,
		.reason = reason,
		.by = by,
		.dry_run = !after,
		.quarantine_until
		= after && after->state == INV_QUARANTINED ? (time_t)after->until : 0 };

	np_event_emit(&e);
	if (!after)
		return;
	p->st.releases++;
	if (r)
		r->released++;
}

/* event=assign with the range's type, counted (a dry run is logged, not counted) */
static void
ev_assign(struct prov *p, struct round *r, const struct config *cfg, const char *upn,
    const char *id, const char *number, const char *range, const char *reason, const char *by,
    int dry)
{
	const struct cfg_range *cr = range && *range ? config_range_find(cfg, range) : NULL;
	struct np_event e = { .kind = NPE_ASSIGN,
		.user = upn,
		.id = id,
		.number = number,
		.range = range,
		.type = cr ? config_range_type_name(cr->type) : "-",
		.reason = reason,
		.by = by,
		.dry_run = dry };

	np_event_emit(&e);
	if (dry)
		return;
	p->st.assignments++;
	if (r)
		r->assigned++;
}

/* Exhaustion is logged once per change of state; the flag lives in the inventory. */
static void
exhausted(struct prov *p, struct round *round, const struct cfg_range *r, int full)
{
	char key[96], seen[8] = "";
	int was;

	snprintf(key, sizeof(key), "exhausted:%s", r->name);
	was = inv_meta_get(p->inv, key, seen, sizeof(seen)) == INV_OK && seen[0] == '1';
	if (was == full)
		return;
	/* the round's own mode: a reload meanwhile changes the next round, not this one */
	if ((round ? round->cfg : p->cfg)->sync.mode == SYNC_DRY_RUN) {
		struct idmap *said = round ? &round->dry_full : NULL;
		if (full && !(said && idmap_get(said, r->name))) {
			struct np_event e
			    = { .kind = NPE_EXHAUSTED, .range = r->name, .dry_run = 1 };
			np_event_emit(&e);
			if (said && idmap_put(said, r->name, 0, NULL) < 0)
				log_warnx("provision", "out of memory");
		}
		return;
	}
	if (inv_meta_put(p->inv, key, full ? "1" : "0") != INV_OK)
		log_warnx("provision", "cannot record the exhaustion of range %s", r->name);
	if (full) {
		struct np_event e = { .kind = NPE_EXHAUSTED, .range = r->name };
		np_event_emit(&e);
	}
}

/* ---- Teams changes of the cycle ----------------------------------------- */

struct change {
	struct prov *p;
	struct round *r;    /* the round it belongs to; NULL for an administrator's change */
	struct config *cfg; /* the configuration it started with */
	char id[INV_ID_MAX], upn[INV_UPN_MAX], number[E164_STRLEN], range[RANGE_NAME_MAX + 1];
	char old_number[E164_STRLEN], old_range[RANGE_NAME_MAX + 1];
	enum reason reason;
	int policy_only;
	uint8_t old_flags; /* an unassign: the user's flags before the hold, restored on refusal */
	/* an administrator's change */
	prov_reply reply;
	void *reply_arg;
	int step;
	char *why; /* an administrator's change: why it failed (why_set), or NULL */
};

/* Users with Teams changes in flight, counted: the cycle leaves them alone meanwhile. */
static void
busy_add(struct prov *p, const char *id, int d)
{
	struct idmap_entry *e = idmap_get(&p->busy, id);

	if (e) {
		e->v += d;
		if (e->v <= 0)
			idmap_del(&p->busy, id);
	} else if (d > 0 && idmap_put(&p->busy, id, d, NULL) < 0) {
		log_warnx("provision", "out of memory marking %s busy", id);
	}
}

static struct change *
change_new(struct prov *p, struct round *r, const char *id)
{
	struct change *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->p = p;
	c->r = r;
	c->cfg = config_ref(r ? r->cfg : p->cfg);
	snprintf(c->id, sizeof(c->id), "%s", id);
	if (r) {
		r->outstanding++;
		r->changes++;
	} else
		p->manual++;
	busy_add(p, id, 1);
	return c;
}

/* c->why, formatted (kept with c: most changes never need one). */
static const char *why_set(struct change *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *
why_set(struct change *c, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	free(c->why);
	c->why = s;
	return s ? s : "out of memory";
}

static void
change_done(struct change *c)
{
	struct prov *p = c->p;
	struct round *r = c->r;

	busy_add(p, c->id, -1);
	config_free(c->cfg);
	free(c->why);
	free(c);
	if (r) {
		r->changes--;
		if (r->todo)
			loop_timer_start(p->more, 0); /* room for more: decided from the loop */
		r->outstanding--;
		round_step_done(r);
	} else {
		p->manual--;
		if (p->draining && !p->round && p->manual == 0)
			drained_now(p);
	}
}

static void
reply(struct change *c, int ok, const char *error, const char *number)
{
	cJSON *o;

	if (!c->reply)
		return;
	o = cJSON_CreateObject();
	cJSON_AddBoolToObject(o, "ok", ok);
	if (error)
		cJSON_AddStringToObject(o, "error", error);
	if (number)
		cJSON_AddStringToObject(o, "number", number);
	c->reply(o, c->reply_arg);
	c->reply = NULL;
}

/* A failure that leaves it open whether Teams did it. */
static int
unsettled(const struct teams_result *t)
{
	return !t->ok && !t->refused;
}

static int
not_assigned(const struct teams_result *t)
{
	/* "is not assigned", or the number is gone from the tenant ("... not found") */
	return !t->ok && t->refused
	    && (strcasestr(t->detail, "not assigned")
		|| (strcasestr(t->detail, "not found") && strcasestr(t->detail, "number")));
}

/* ---- release ------------------------------------------------------------ */

static void
released(const struct teams_result *t, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;
	struct round *r = c->r;
	struct inv_number n;
	struct user u;
	int rc, had;

	idmap_del(&p->inflight, c->number);
	if (!t->ok && !not_assigned(t)) {
		if (r)
			round_error(r, "unassign %s: %.200s", c->number,
			    t->detail[0] ? t->detail : t->error);
		if (t->refused && c->reason == RSN_ADMIN && user_load(p, c->id, &u) == 0) {
			/* Teams keeps the number on the user: the administrator's unassign is
			   given up (logged), not tried every round; the user keeps the number */
			log_warnx("provision",
			    "Teams refused to unassign %s from %s (%s): the "
			    "administrator's unassign is given up",
			    c->number, c->upn, t->detail);
			u.flags &= (uint8_t)~USER_F_UNASSIGN;
			u.flags |= USER_F_DUE;
			if (user_store(p, &u, u.state) != INV_OK)
				log_err("provision", "cannot record it for %s", c->upn);
			user_clear(&u);
		}
		due_now(p, c->id, np_time()); /* tried again next round */
		change_done(c);
		return;
	}
	rc = inv_release(p->inv, c->id, quarantine_of(c->cfg, c->range), np_time_late(), &n);
	if (rc != INV_OK) {
		/* Teams let it go; the inventory follows at the next round (unassign is idempotent)
		 */
		log_err("provision",
		    "%s was unassigned in Teams but the inventory cannot record it: %s", c->number,
		    inv_strerror(rc));
		if (r)
			round_error(r, "release %s: %s", c->number, inv_strerror(rc));
		due_now(p, c->id, np_time());
		change_done(c);
		return;
	}
	ev_release(p, r, c->upn, c->id, c->number, c->range, reason_name(c->reason), NULL, &n);
	had = user_load(p, c->id, &u);
	if (had >= 0) {
		int old = had == 0 ? u.state : -1;
		u.flags &= (uint8_t) ~(USER_F_DUE | USER_F_MOVED);
		if (u.state == US_GONE) {
			rc = had == 0 ? user_forget(p, &u) : INV_OK;
		} else if (u.state == US_HELD) {
			u.flags &= (uint8_t)~USER_F_UNASSIGN; /* carried out; the hold stays */
			rc = user_store(p, &u, old);
		} else if (c->reason == RSN_DELETED) {
			/* restored from the deleted items meanwhile: decided again */
			u.state = US_NEW;
			u.flags |= USER_F_DUE;
			rc = user_store(p, &u, old);
			due_now(p, c->id, 0);
		} else if (u.teams_phone && u.enabled) {
			/* licensed and enabled again meanwhile: decided again */
			u.state = US_NEW;
			u.flags |= USER_F_DUE;
			rc = user_store(p, &u, old);
			due_now(p, c->id, 0);
		} else {
			u.state = c->reason == RSN_DISABLED ? US_DISABLED : US_UNLICENSED;
			rc = user_store(p, &u, old);
		}
		if (rc != INV_OK) {
			if (r)
				round_error(r, "record of %s: %s", c->id, inv_strerror(rc));
			due_now(p, c->id, 0);
		} else if (u.state != US_NEW) {
			idmap_del(&p->due, c->id);
		}
		user_clear(&u);
	}
	change_done(c);
}

static int
start_release(struct round *r, const struct user *u, const struct inv_user *held, enum reason why)
{
	struct prov *p = r->p;
	struct inv_number n;
	struct change *c;

	if (inv_get_number(p->inv, held->number, &n) != INV_OK)
		memset(&n, 0, sizeof(n));
	if (r->cfg->sync.mode == SYNC_DRY_RUN) {
		ev_release(p, r, u->upn[0] ? u->upn : held->upn, u->id, held->number, n.range,
		    reason_name(why), NULL, NULL);
		return 0;
	}
	if (!(c = change_new(p, r, u->id)))
		return -1;
	snprintf(c->upn, sizeof(c->upn), "%s", u->upn[0] ? u->upn : held->upn);
	snprintf(c->number, sizeof(c->number), "%s", held->number);
	snprintf(c->range, sizeof(c->range), "%s", n.range);
	c->reason = why;
	if (idmap_put(&p->inflight, c->number, 0, NULL) < 0)
		log_warnx("provision", "out of memory marking %s in flight", c->number);
	if (teams_unassign(p->graph, c->number, number_type_of(p, n.range), released, c) < 0) {
		idmap_del(&p->inflight, c->number);
		round_error(r, "cannot send the unassignment of %s", c->number);
		change_done(c);
		return -1;
	}
	return 0;
}

/* ---- assignment --------------------------------------------------------- */

static void policy_done(const struct teams_result *t, void *arg);

static void
apply_policy(struct change *c)
{
	const struct cfg_range *cr = config_range_find(c->cfg, c->range);
	struct change *pc;

	if (!cr || !cr->voice_routing_policy || !*cr->voice_routing_policy)
		return;
	if (!(pc = change_new(c->p, c->r, c->id)))
		return;
	snprintf(pc->upn, sizeof(pc->upn), "%s", c->upn);
	pc->policy_only = 1;
	if (teams_assign_policy(c->p->graph, c->id, "OnlineVoiceRoutingPolicy",
		cr->voice_routing_policy, policy_done, pc)
	    < 0) {
		log_warnx("provision", "cannot send the voice routing policy for %s", c->upn);
		change_done(pc);
	}
}

static void
policy_done(const struct teams_result *t, void *arg)
{
	struct change *c = arg;

	if (!t->ok) {
		log_warnx(
		    "provision", "voice routing policy for %s: %s %s", c->upn, t->error, t->detail);
		if (c->r)
			round_error(c->r, "voice routing policy for %s: %.200s", c->upn, t->detail);
	}
	change_done(c);
}

/* The user's record after the assignment: assigned, no retry pending. */
static void
user_assigned(struct prov *p, struct round *r, const char *id)
{
	struct user u;
	int had = user_load(p, id, &u), rc;

	if (had < 0)
		return;
	{
		int old = had == 0 ? u.state : -1;
		/* deleted, unlicensed or disabled meanwhile: decided again (released if due) */
		int again = u.state == US_GONE || !u.teams_phone || !u.enabled;
		struct inv_user h;
		if ((u.flags & USER_F_MOVED) && inv_get_user(p->inv, id, &h) == INV_OK)
			ev_user(NPE_RETAIN, &u, h.number, NULL, "moved"); /* moved while pending */
		if (u.state != US_GONE)
			u.state = US_ASSIGNED;
		u.flags &= (uint8_t) ~(USER_F_DUE | USER_F_MOVED | USER_F_UNASSIGN);
		if (again)
			u.flags |= USER_F_DUE;
		u.backoff = 0;
		u.retry_at = 0;
		if ((rc = user_store(p, &u, old)) != INV_OK && r)
			round_error(r, "record of %s: %s", id, inv_strerror(rc));
		if (again)
			due_now(p, id, 0);
		else
			idmap_del(&p->due, id);
	}
	user_clear(&u);
}

/* Refused for now (licence not visible in Teams yet...): retried with a growing wait. */
static void
user_retry_later(
    struct prov *p, struct round *r, const char *id, const char *why, const struct config *cfg)
{
	struct user u;
	int had = user_load(p, id, &u), rc;
	time_t now = np_time();

	if (had < 0)
		return;
	{
		int old = had == 0 ? u.state : -1;
		uint32_t b = u.backoff ? u.backoff * 2 : (uint32_t)cfg->sync.retry_min;
		if (b > (uint32_t)cfg->sync.retry_max)
			b = (uint32_t)cfg->sync.retry_max;
		u.backoff = b;
		u.retry_at = now + b;
		u.flags &= (uint8_t)~USER_F_DUE;
		if (u.state != US_WAITING) {
			struct np_event e = { .kind = NPE_WAITING,
				.user = u.upn,
				.id = u.id,
				.reason = why,
				.retry_in = (long)b };
			np_event_emit(&e);
		}
		u.state = US_WAITING;
		if ((rc = user_store(p, &u, old)) != INV_OK && r)
			round_error(r, "record of %s: %s", id, inv_strerror(rc));
		due_now(p, id, (time_t)u.retry_at);
	}
	user_clear(&u);
}

static void
assigned(const struct teams_result *t, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;
	struct round *r = c->r;
	int rc, taken;

	idmap_del(&p->inflight, c->number);
	if (t->ok) {
		if ((rc = inv_confirm(p->inv, c->number, c->id, np_time())) != INV_OK) {
			/* Teams has it; the number stays pending and is settled from Teams next
			 * round */
			log_err("provision",
			    "%s was assigned to %s in Teams but the inventory cannot "
			    "record it: %s",
			    c->number, c->upn, inv_strerror(rc));
			if (r)
				round_error(r, "confirm %s: %s", c->number, inv_strerror(rc));
			reply(
			    c, 0, "Teams assigned it, the inventory could not record it yet", NULL);
			change_done(c);
			return;
		}
		ev_assign(p, r, c->cfg, c->upn, c->id, c->number, c->range, NULL,
		    c->reply ? "administrator" : NULL, 0);
		user_assigned(p, r, c->id);
		apply_policy(c);
		reply(c, 1, NULL, c->number);
		change_done(c);
		return;
	}
	if (unsettled(t)) {
		/* Teams may still do it: the number stays pending, settled from Teams each round */
		log_notice("provision",
		    "%s for %s is unsettled (%s %s): it stays pending and is "
		    "settled from Teams",
		    c->number, c->upn, t->error, t->detail);
		if (r && strcmp(t->error, "stopping") != 0)
			round_error(r, "assign %s: unsettled: %.200s", c->number, t->detail);
		reply(c, 0, t->detail[0] ? t->detail : t->error, NULL);
		change_done(c);
		return;
	}
	/* Teams refused: nothing was done */
	p->st.assign_failures++;
	taken = strcasestr(t->detail, "assigned to another user") != NULL;
	/* back to the pool, or kept out of it (someone holds it; it was reserved before):
	   one transaction either way */
	rc = taken || c->step == INV_RESERVED
	    ? inv_fail_reserve(p->inv, c->number, c->id, np_time())
	    : inv_fail(p->inv, c->number, c->id);
	if (rc != INV_OK) {
		log_err("provision", "%s: cannot return it to the pool: %s", c->number,
		    inv_strerror(rc));
		if (r)
			round_error(r, "fail %s: %s", c->number, inv_strerror(rc));
	} else if (taken) {
		/* someone holds it in Teams: kept out of the pool, never overwritten */
		ev_drift(p, c->number, c->range, NULL, NULL, "held-in-teams");
		due_now(p, c->id, np_time());
	} else if (!c->reply) {
		int licence = strcasestr(t->detail, "not licensed") != NULL
		    || strcasestr(t->detail, "licen") != NULL;
		user_retry_later(
		    p, r, c->id, licence ? "licence-not-ready" : "assign-failed", c->cfg);
		if (!licence && r)
			round_error(r, "assign %s: %.200s", c->number, t->detail);
	}
	reply(c, 0, t->detail[0] ? t->detail : t->error, NULL);
	change_done(c);
}

static int
send_assign(struct change *c)
{
	const struct cfg_range *cr = config_range_find(c->cfg, c->range);

	if (idmap_put(&c->p->inflight, c->number, 0, NULL) < 0)
		log_warnx("provision", "out of memory marking %s in flight", c->number);
	if (teams_assign(c->p->graph, c->id, c->number,
		cr ? range_type_graph(cr->type) : number_type_of(c->p, c->range),
		cr ? cr->location_id : NULL, assigned, c)
	    < 0) {
		idmap_del(&c->p->inflight, c->number);
		return -1;
	}
	return 0;
}

/* Every matching range is full: logged once, retried each round, written only on change. */
static void
ranges_full(struct round *r, struct user *u, int old)
{
	struct prov *p = r->p;

	unmatched_once(r, u, US_RANGES_FULL, "ranges-full");
	if (r->cfg->sync.mode != SYNC_DRY_RUN
	    && (u->state != US_RANGES_FULL || (u->flags & USER_F_DUE) || old != US_RANGES_FULL)) {
		int rc;
		u->state = US_RANGES_FULL;
		u->flags &= (uint8_t)~USER_F_DUE;
		if ((rc = user_store(p, u, old)) != INV_OK)
			round_error(r, "record of %s: %s", u->id, inv_strerror(rc));
	}
	due_now(p, u->id, 0); /* retried next round */
}

/*
 * A preview's number (dry-run rounds, numprovctl plan): the lowest free number of
 * the range above the last one this preview gave (planned: range -> that number),
 * as allocations one after another would give them; take records it. Without
 * planned, the lowest free number.
 */
static int
peek_planned(struct prov *p, struct idmap *planned, const char *range, time_t now,
    struct inv_number *out, int take)
{
	struct idmap_entry *e = planned ? idmap_get(planned, range) : NULL;
	int rc = inv_peek_after(p->inv, range, now, e ? e->s : NULL, out);

	if (rc == INV_OK && take && planned && idmap_put(planned, range, 0, out->number) < 0) {
		log_warnx("provision", "out of memory planning range %s", range);
		return INV_E_DB;
	}
	return rc;
}

/* True when no candidate range has a free number (nothing is taken). */
static int
all_full(struct round *r, const struct decision *d)
{
	struct inv_number num;
	struct idmap *planned = r->cfg->sync.mode == SYNC_DRY_RUN ? &r->planned : NULL;

	for (size_t i = 0; i < d->n_cand; i++)
		if (peek_planned(r->p, planned, d->cand[i]->name, np_time(), &num, 0) != INV_E_FULL)
			return 0;
	return d->n_cand > 0;
}

/* Allocate from the first candidate range with room (written ahead), then ask Teams. */
static void
start_assign(struct round *r, struct user *u, const struct decision *d)
{
	struct prov *p = r->p;
	time_t now = np_time();
	int old = u->state;

	for (size_t i = 0; i < d->n_cand; i++) {
		struct inv_number num;
		int rc = r->cfg->sync.mode == SYNC_DRY_RUN
		    ? peek_planned(p, &r->planned, d->cand[i]->name, now, &num, 1)
		    : inv_allocate(p->inv, d->cand[i]->name, u->id, u->upn, now, &num);
		struct change *c;

		if (rc == INV_E_FULL) {
			exhausted(p, r, d->cand[i], 1);
			continue;
		}
		if (rc != INV_OK) {
			round_error(r, "range %s: cannot allocate for %s: %s", d->cand[i]->name,
			    u->upn, inv_strerror(rc));
			due_now(p, u->id, now);
			return;
		}
		exhausted(p, r, d->cand[i], 0);
		if (r->cfg->sync.mode == SYNC_DRY_RUN) {
			ev_assign(p, r, r->cfg, u->upn, u->id, num.number, d->cand[i]->name, NULL,
			    NULL, 1);
			idmap_del(&p->due, u->id);
			return;
		}
		u->state = US_ASSIGNING;
		u->flags &= (uint8_t)~USER_F_DUE;
		if ((rc = user_store(p, u, old)) != INV_OK)
			/* the number is pending: settled from Teams; the user is decided again */
			round_error(r, "record of %s: %s", u->id, inv_strerror(rc));
		idmap_del(&p->due, u->id);
		if (!(c = change_new(p, r, u->id))) {
			round_error(r, "out of memory");
			return;
		}
		snprintf(c->upn, sizeof(c->upn), "%s", u->upn);
		snprintf(c->number, sizeof(c->number), "%s", num.number);
		snprintf(c->range, sizeof(c->range), "%s", d->cand[i]->name);
		if (send_assign(c) < 0) {
			round_error(r, "cannot send the assignment of %s", num.number);
			change_done(c);
		}
		return;
	}
	ranges_full(r, u, old);
}

static void act_on(struct round *r, struct user *u, const char *teams);
static void start_settle_change(struct round *r, struct user *u);

/* Before any assignNumber: what does Teams show on the user now? (B10) */
static void
checked_user(const struct teams_result *t, const struct teams_number *v, size_t n, void *arg)
{
	struct change *c = arg;
	struct round *r = c->r;
	struct prov *p = c->p;
	struct user u;

	if (!t->ok) {
		round_error(
		    r, "numbers of %s: %.200s", c->upn, t->detail[0] ? t->detail : t->error);
		due_now(p, c->id, np_time());
	} else if (p->draining) {
		/* stopping: nothing new is started; the user is decided after the restart */
	} else if (p->cfg->sync.mode != r->cfg->sync.mode) {
		/* sync.mode changed while the check was queued or on the wire (off is the
		   operator's brake): nothing is done; the user stays due for the round under
		   the new mode, which the reload asked for */
	} else if (user_load(p, c->id, &u) == 0) {
		/* any number Teams shows on them (the filter is theirs) counts as held */
		const char *held = n > 0 ? v[0].number : "";
		act_on(r, &u, held);
		user_clear(&u);
	}
	change_done(c);
}

/* A round asks Teams what the user holds; cb decides on the answer. */
static void
ask_user_numbers(struct round *r, struct user *u, user_numbers_cb cb)
{
	struct change *c = change_new(r->p, r, u->id);

	if (!c) {
		round_error(r, "out of memory");
		return;
	}
	snprintf(c->upn, sizeof(c->upn), "%s", u->upn);
	snprintf(c->number, sizeof(c->number), "%s", u->change_new);
	snprintf(c->old_number, sizeof(c->old_number), "%s", u->change_old);
	/* new work: it waits for the work begun (assignments, polls) to go out first */
	if (teams_user_numbers_flags(r->p->graph, u->id, GRAPH_LATER, cb, c) < 0) {
		round_error(r, "cannot ask Teams for the numbers of %s", u->upn);
		due_now(r->p, u->id, np_time());
		change_done(c);
	}
}

static void
start_check(struct round *r, struct user *u)
{
	ask_user_numbers(r, u, checked_user);
}

static void
adopt(struct round *r, struct user *u, const char *number)
{
	struct prov *p = r->p;
	int old = u->state, rc;
	struct inv_number n;

	if (r->cfg->sync.mode == SYNC_DRY_RUN)
		return;
	rc = inv_adopt(p->inv, number, u->id, u->upn, np_time());
	if (rc == INV_E_TAKEN || rc == INV_E_USER_HAS || rc == INV_E_STATE) {
		ev_drift(p, number, NULL, NULL, u->id, "held-in-teams");
		idmap_del(&p->due, u->id);
		return;
	}
	if (rc != INV_OK) {
		round_error(r, "adopt %s for %s: %s", number, u->upn, inv_strerror(rc));
		due_now(p, u->id, np_time());
		return;
	}
	if (inv_get_number(p->inv, number, &n) != INV_OK)
		n.range[0] = '\0';
	ev_user(NPE_ADOPT, u, number, n.range, NULL);
	u->state = US_ASSIGNED;
	u->flags &= (uint8_t) ~(USER_F_DUE | USER_F_MOVED);
	u->backoff = 0;
	u->retry_at = 0;
	if ((rc = user_store(p, u, old)) != INV_OK) {
		round_error(r, "record of %s: %s", u->id, inv_strerror(rc));
		due_now(p, u->id, np_time());
		return;
	}
	idmap_del(&p->due, u->id);
}

/* Store the user's new state (no Teams call needed); false when the write failed. */
static void
settle_state_from(struct round *r, struct user *u, int state, int old)
{
	struct prov *p = r->p;
	int rc;

	if (r->cfg->sync.mode == SYNC_DRY_RUN)
		return;
	if (u->state == US_HELD && state != US_GONE)
		state = US_HELD; /* only the administrator lifts a hold */
	if (u->state == state && !(u->flags & (USER_F_DUE | USER_F_MOVED)))
		return; /* nothing changed: nothing written */
	u->state = (uint8_t)state;
	u->flags &= (uint8_t) ~(USER_F_DUE | USER_F_MOVED);
	if ((rc = user_store(p, u, old)) != INV_OK) {
		round_error(r, "record of %s: %s", u->id, inv_strerror(rc));
		due_now(p, u->id, np_time());
	}
}

static void
settle_state(struct round *r, struct user *u, int state)
{
	settle_state_from(r, u, state, u->state);
}

/* One user: the decision, then its side effects. */
static void
act_on(struct round *r, struct user *u, const char *teams)
{
	struct prov *p = r->p;
	struct inv_user held;
	int holds = inv_get_user(p->inv, u->id, &held) == INV_OK;
	struct decision d;
	time_t now = np_time();

	decide(r->cfg, u, holds ? &held : NULL, teams, now, &d);
	switch (d.act) {
	case ACT_NOTHING:
		idmap_del(&p->due, u->id);
		switch (d.reason) {
		case RSN_HAS_NUMBER:
			if (u->state == US_HELD) {
				/* holds a number and no unassign is pending: the hold is lifted */
				int old = u->state;
				u->state = US_NEW;
				u->flags |= USER_F_DUE; /* forces the write */
				settle_state_from(r, u,
				    held.state == INV_ASSIGNED ? US_ASSIGNED : US_ASSIGNING, old);
			} else {
				settle_state(
				    r, u, held.state == INV_ASSIGNED ? US_ASSIGNED : US_ASSIGNING);
			}
			break;
		case RSN_HELD:
			if (u->flags & USER_F_UNASSIGN) /* no number left: nothing to unassign */
				u->flags = (uint8_t)((u->flags & ~USER_F_UNASSIGN) | USER_F_DUE);
			if (u->flags & (USER_F_DUE | USER_F_MOVED))
				settle_state(r, u, u->state);
			break;
		case RSN_UNLICENSED:
			settle_state(r, u, US_UNLICENSED);
			break;
		case RSN_DISABLED:
			settle_state(r, u, US_DISABLED);
			break;
		case RSN_EXTERNAL:
			if (u->state != US_EXTERNAL)
				ev_drift(p, d.number, NULL, NULL, u->id, "number-outside-ranges");
			settle_state(r, u, US_EXTERNAL);
			break;
		case RSN_PENDING:
			/* settled from Teams first; a move meanwhile is logged once it is */
			break;
		default: /* held, mode off, policy: the state stays */
			if (u->flags & (USER_F_DUE | USER_F_MOVED))
				settle_state(r, u, u->state);
			break;
		}
		break;
	case ACT_FORGET:
		idmap_del(&p->due, u->id);
		if (r->cfg->sync.mode != SYNC_DRY_RUN) {
			int rc = user_forget(p, u);
			if (rc != INV_OK) {
				round_error(r, "forget %s: %s", u->id, inv_strerror(rc));
				due_now(p, u->id, now);
			}
		}
		break;
	case ACT_RETAIN:
		ev_user(NPE_RETAIN, u, held.number, NULL, reason_name(d.reason));
		settle_state(r, u, d.reason == RSN_DISABLED ? US_DISABLED : US_ASSIGNED);
		idmap_del(&p->due, u->id);
		break;
	case ACT_RELEASE:
		if (start_release(r, u, &held, d.reason) < 0)
			due_now(p, u->id, now);
		else if (r->cfg->sync.mode == SYNC_DRY_RUN)
			idmap_del(&p->due, u->id);
		break;
	case ACT_WAIT:
		due_now(p, u->id, d.until);
		if (u->flags & USER_F_DUE)
			settle_state(r, u, u->state);
		break;
	case ACT_UNMATCHED:
		unmatched_once(r, u, US_NO_MATCH, "no-match");
		settle_state(r, u, US_NO_MATCH);
		due_now(p, u->id, 0); /* retried next round */
		break;
	case ACT_CHECK:
		/* no room anywhere: no need to ask Teams yet (no Graph call for a waiting user) */
		if (d.reason == RSN_NEW && all_full(r, &d)) {
			for (size_t i = 0; i < d.n_cand; i++)
				exhausted(p, r, d.cand[i], 1);
			ranges_full(r, u, u->state);
		} else {
			start_check(r, u);
		}
		break;
	case ACT_ASSIGN:
		start_assign(r, u, &d);
		break;
	case ACT_ADOPT:
		adopt(r, u, d.number);
		break;
	case ACT_SETTLE:
		if (r->cfg->sync.mode != SYNC_DRY_RUN)
			start_settle_change(r, u);
		break;
	}
}

/* ---- settling unsettled assignments (pending numbers) ------------------- */

struct settle {
	struct round *r;
	char number[E164_STRLEN], user[INV_ID_MAX], range[RANGE_NAME_MAX + 1];
};

static void
settled(const struct teams_result *t, const struct teams_number *n, int found, void *arg)
{
	struct settle *s = arg;
	struct round *r = s->r;
	struct prov *p = r->p;
	struct inv_number cur;
	int rc = INV_OK;

	idmap_del(&p->inflight, s->number);
	if (!t->ok) {
		round_error(r, "cannot settle pending %s: %.200s", s->number,
		    t->detail[0] ? t->detail : t->error);
	} else if (inv_get_number(p->inv, s->number, &cur) != INV_OK || cur.state != INV_PENDING
	    || strcmp(cur.user_id, s->user) != 0) {
		/* settled meanwhile */
	} else if (found && strcasecmp(n->target, s->user) == 0
	    && !strcasestr(n->activation, "assignmentFailed")) {
		/* on our user (activated, or still being activated): confirmed */
		if ((rc = inv_confirm(p->inv, s->number, s->user, np_time())) == INV_OK) {
			struct user u;
			user_load(p, s->user, &u); /* for the UPN; initialises u on every path */
			ev_assign(
			    p, r, r->cfg, u.upn, s->user, s->number, s->range, "settled", NULL, 0);
			user_clear(&u);
			user_assigned(p, r, s->user);
		}
	} else if (found && n->target[0] && strcasecmp(n->target, s->user) != 0) {
		/* someone else holds it in Teams: out of the pool, never overwritten */
		if ((rc = inv_fail_reserve(p->inv, s->number, s->user, np_time())) == INV_OK)
			ev_drift(p, s->number, s->range, s->user, n->target, "held-in-teams");
		due_now(p, s->user, np_time());
	} else {
		/* free in Teams (or its activation failed there): Teams' answer, not a guess */
		if ((rc = inv_fail(p->inv, s->number, s->user)) == INV_OK)
			log_notice("provision", "%s is not assigned in Teams%s%s: back in the pool",
			    s->number, found && n->activation[0] ? ", activation " : "",
			    found && n->activation[0] ? n->activation : "");
		due_now(p, s->user, np_time());
	}
	if (rc != INV_OK)
		round_error(r, "settle %s: %s", s->number, inv_strerror(rc));
	free(s);
	r->outstanding--;
	round_step_done(r);
}

struct settle_list {
	struct round *r;
	struct settle **v;
	size_t n, cap;
};

/* Collected under the cursor; Teams is asked once it is closed (a write may follow). */
static int
settle_cb(const struct inv_number *n, void *arg)
{
	struct settle_list *l = arg;
	struct prov *p = l->r->p;
	struct settle *s;

	if (n->state != INV_PENDING || idmap_get(&p->inflight, n->number)
	    || idmap_get(&p->busy, n->user_id))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct settle **g = realloc(l->v, cap * sizeof(*g));
		if (!g)
			return 1;
		l->v = g;
		l->cap = cap;
	}
	if (!(s = calloc(1, sizeof(*s))))
		return 1;
	s->r = l->r;
	snprintf(s->number, sizeof(s->number), "%s", n->number);
	snprintf(s->user, sizeof(s->user), "%s", n->user_id);
	snprintf(s->range, sizeof(s->range), "%s", n->range);
	l->v[l->n++] = s;
	return 0;
}

static int
sum_pending(const struct inv_range *ir, void *arg)
{
	*(uint64_t *)arg += ir->count[INV_PENDING];
	return 0;
}

/* Every round, every pending number nobody is working on is settled from Teams. */
static void
settle_pending(struct round *r)
{
	struct prov *p = r->p;
	struct settle_list l = { r, NULL, 0, 0 };
	uint64_t pending = 0;

	if (r->cfg->sync.mode == SYNC_DRY_RUN)
		return;
	if (inv_foreach_range(p->inv, sum_pending, &pending) != INV_OK)
		round_error(r, "cannot read the ranges");
	if (pending && inv_foreach_number(p->inv, settle_cb, &l) != INV_OK)
		round_error(r, "cannot read the pending numbers");
	for (size_t i = 0; i < l.n; i++) {
		struct settle *s = l.v[i];

		if (idmap_put(&p->inflight, s->number, 0, NULL) < 0) {
			round_error(r, "out of memory");
			free(s);
			continue;
		}
		r->outstanding++;
		if (teams_find_number(p->graph, s->number, settled, s) < 0) {
			idmap_del(&p->inflight, s->number);
			r->outstanding--;
			round_error(r, "cannot ask Teams about pending %s", s->number);
			free(s);
		}
	}
	free(l.v);
}

/* ---- the round ---------------------------------------------------------- */

static long
ms_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void
schedule(struct prov *p, int seconds)
{
	p->st.next_at = np_time() + seconds;
	loop_timer_start(p->tick, (long)seconds * 1000);
}

static void
stats_counts(struct prov *p)
{
	unsigned long all = 0;

	for (int i = 0; i < US__MAX; i++)
		all += p->count[i];
	p->st.users_tracked = all - p->count[US_GONE];
	p->st.users_pending = p->count[US_WAITING] + p->count[US_ASSIGNING];
	p->st.users_unmatched = p->count[US_NO_MATCH] + p->count[US_RANGES_FULL];
}

static void
round_end(struct round *r)
{
	struct prov *p = r->p;
	struct np_event e = { .kind = NPE_SYNC };
	enum prov_result res = r->failed ? PR_FAILED : r->errors ? PR_PARTIAL : PR_SUCCESS;
	/* the first failed round is a warning (and event=sync_failed follows once); the
	 * rounds that fail after it while Graph (or sign-in) is still failing, the same
	 * outage going on, are recorded at info; another cause is a warning again */
	struct graph_stats gs;
	int again = 0;

	if (res == PR_FAILED && p->st.last_result == PR_FAILED) {
		graph_get_stats(p->graph, &gs);
		again = gs.failing_since != 0;
	}

	stats_counts(p);
	p->st.running = 0;
	p->st.last_end = np_time();
	p->st.last_duration_ms = ms_since(&r->t0);
	p->st.syncs++;
	p->st.last_result = res;
	if (res != PR_SUCCESS)
		p->st.failures++;
	snprintf(
	    p->st.last_error, sizeof(p->st.last_error), "%s", res != PR_SUCCESS ? r->error : "");
	e.result = res == PR_SUCCESS ? "success" : res == PR_PARTIAL ? "partial" : "failed";
	e.priority = res == PR_SUCCESS || again ? LOG_INFO : LOG_WARNING;
	e.full = r->full;
	e.users = r->users;
	e.decided = r->decided;
	e.assigned = r->assigned;
	e.released = r->released;
	e.duration_ms = p->st.last_duration_ms;
	e.error = res != PR_SUCCESS ? r->error : NULL;
	np_event_emit(&e);
	p->round = NULL;
	for (size_t i = r->next_todo; i < r->n_todo; i++)
		free(r->todo[i].id);
	free(r->todo);
	idset_clear(&r->seen);
	idmap_clear(&r->teams_by_user);
	idmap_clear(&r->planned);
	idmap_clear(&r->dry_full);
	config_free(r->cfg);
	free(r);
	if (p->draining) {
		if (p->manual == 0)
			drained_now(p);
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
round_step_done(struct round *r)
{
	if (r->deciding && r->outstanding == 0)
		round_end(r);
}

/* Full sync: a teams lookup for one user ("" when Teams shows none on them). */
static const char *
teams_of(struct round *r, const char *id)
{
	struct idmap_entry *e;

	if (!r->teams_known)
		return NULL;
	e = idmap_get(&r->teams_by_user, id);
	/* absent from the list: asked one by one before any assignment (never assumed free) */
	return e && e->s ? e->s : NULL;
}

static int
by_seq(const void *a, const void *b)
{
	const struct due_item *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Changes of one round in flight at most: enough to keep sync.parallel requests
 * on the wire while most of them wait for their operation's first poll (half a
 * second, against tens of milliseconds per request: 16 per request slot left
 * the slots idle a tenth of the time in bench/provision.py), few enough that a
 * round deciding 100,000 users holds a bounded number of them, each about a
 * kilobyte while it waits (no room is kept for answers it has not had).
 */
static int
change_cap(const struct round *r)
{
	int cap = 48 * r->cfg->sync.parallel;
	return cap < 64 ? 64 : cap;
}

/* Decide the next users of the list while there is room; the round's deciding
   part ends with the list. */
static void
decide_more(struct round *r)
{
	struct prov *p = r->p;

	if (r->next_todo < r->n_todo && p->cfg->sync.mode != r->cfg->sync.mode && !p->draining) {
		/* sync.mode changed while the round was deciding (off is the operator's
		   brake): the rest is decided by the round under the new mode that the reload
		   asked for, which starts when this one ends; they are still due. Any other
		   change waits for the next round, as for a round that is not deciding. */
		log_info("provision",
		    "sync.mode changed: %zu users left to decide go to the round under the new "
		    "mode, which starts when this one's changes finish",
		    r->n_todo - r->next_todo);
		for (; r->next_todo < r->n_todo; r->next_todo++)
			free(r->todo[r->next_todo].id);
		p->again = 1;
	}
	while (r->next_todo < r->n_todo && r->changes < change_cap(r)) {
		struct due_item *it = &r->todo[r->next_todo++];
		struct user u;
		int rc;
		/* a manual change may have taken the user meanwhile: due next round */
		if (!idmap_get(&p->due, it->id) || idmap_get(&p->busy, it->id) || p->draining) {
			free(it->id);
			continue;
		}
		rc = user_load(p, it->id, &u);
		if (rc == 0) {
			r->decided++;
			act_on(r, &u, teams_of(r, it->id));
		} else if (rc > 0) {
			idmap_del(&p->due, it->id); /* no record: nothing to decide */
		}
		user_clear(&u);
		free(it->id);
	}
	if (r->next_todo < r->n_todo)
		return; /* on when changes finish (change_done) */
	free(r->todo);
	r->todo = NULL;
	r->n_todo = r->next_todo = 0;
	r->outstanding--;
	round_step_done(r);
}

static void
on_more(void *arg)
{
	struct prov *p = arg;

	if (p->round && p->round->todo)
		decide_more(p->round);
}

/* Decide every user that is due now, in the order they became due. */
static void
decide_all(struct round *r)
{
	struct prov *p = r->p;
	time_t now = np_time();
	struct idmap_entry *e;
	struct due_item *ids;
	size_t n = 0, i = 0, cap = idmap_count(&p->due);

	r->deciding = 1;
	r->outstanding++; /* until the list is worked off (decide_more) */
	ids = cap ? calloc(cap, sizeof(*ids)) : NULL;
	if (cap && !ids)
		round_error(r, "out of memory");
	while (ids && n < cap && (e = idmap_next(&p->due, &i))) {
		if (e->v > now || idmap_get(&p->busy, e->key))
			continue;
		if (!(ids[n].id = strdup(e->key))) {
			round_error(r, "out of memory");
			break;
		}
		ids[n++].seq = e->seq;
	}
	if (n) {
		qsort(ids, n, sizeof(*ids), by_seq);
		r->todo = ids;
		r->n_todo = n;
		r->next_todo = 0;
	} else {
		free(ids);
	}
	decide_more(r);
}

struct batch {
	const char **ids;
	unsigned char **recs;
	size_t *lens;
	int *old, *state;
	size_t n;
};

static void
batch_free(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->recs[i]);
	free(b->ids);
	free(b->recs);
	free(b->lens);
	free(b->old);
	free(b->state);
	memset(b, 0, sizeof(*b));
}

static int
batch_alloc(struct batch *b, size_t n)
{
	memset(b, 0, sizeof(*b));
	b->ids = calloc(n + 1, sizeof(*b->ids));
	b->recs = calloc(n + 1, sizeof(*b->recs));
	b->lens = calloc(n + 1, sizeof(*b->lens));
	b->old = calloc(n + 1, sizeof(*b->old));
	b->state = calloc(n + 1, sizeof(*b->state));
	return b->ids && b->recs && b->lens && b->old && b->state ? 0 : -1;
}

static int
batch_add(struct batch *b, const struct user *u, int old)
{
	if (user_encode(u, &b->recs[b->n], &b->lens[b->n]) < 0)
		return -1;
	b->ids[b->n] = u->id; /* the caller keeps u alive until the batch is written */
	b->old[b->n] = old;
	b->state[b->n] = u->state;
	b->n++;
	return 0;
}

/* One transaction; the counts follow only once it is committed. */
static int
batch_write(struct prov *p, struct batch *b)
{
	int rc = inv_dir_put_batch(p->inv, b->n, b->ids, (const void *const *)b->recs, b->lens);

	if (rc != INV_OK)
		return rc;
	for (size_t i = 0; i < b->n; i++) {
		if (b->old[i] >= 0 && p->count[b->old[i]])
			p->count[b->old[i]]--;
		p->count[b->state[i]]++;
	}
	return INV_OK;
}

/*
 * A page of users: each recorded with what the round still has to do for them
 * (USER_F_DUE), all in one transaction, before anything is acted on.
 */
static void
on_page(const struct dir_page *pg, int full, void *arg)
{
	struct round *r = arg;
	struct prov *p = r->p;
	struct user *users = calloc(pg->n_users + 1, sizeof(*users));
	struct batch b;
	time_t now = np_time();
	int rc;

	memset(&b, 0, sizeof(b));
	if (full && !r->full) /* the link was refused: this became a full sync */
		r->full = 1;
	if (!users || batch_alloc(&b, pg->n_users) < 0) {
		r->failed = 1;
		round_error(r, "out of memory recording a page of %zu users", pg->n_users);
		free(users);
		batch_free(&b);
		return;
	}
	for (size_t i = 0; i < pg->n_users; i++) {
		const struct dir_user *du = &pg->users[i];
		struct user old, *u = &users[i];
		struct inv_user held;
		struct decision d;
		struct dir_licence lic;
		int had = user_load(p, du->id, &old), holds;

		r->users++;
		if (had < 0) {
			r->failed = 1;
			round_error(r, "cannot read the record of %s", du->id);
			user_init(u, du->id);
			continue;
		}
		if (r->full && idset_add(&r->seen, du->id) < 0) {
			r->failed = 1;
			round_error(r, "out of memory");
		}
		holds = inv_get_user(p->inv, du->id, &held) == INV_OK;
		if (du->removed != DIR_PRESENT) {
			user_clear(&old);
			if (had > 0
			    && !holds) { /* never seen, holds nothing: nothing to remember */
				user_init(u, du->id);
				continue;
			}
			user_init(u, du->id);
			if (had == 0 && user_load(p, du->id, u) != 0)
				user_init(u, du->id);
			if (!u->upn[0] && holds)
				snprintf(u->upn, sizeof(u->upn), "%s", held.upn);
			u->state = US_GONE;
			u->flags |= USER_F_DUE;
		} else {
			dir_classify(p->lic, du, &lic);
			if (user_from_dir(u, had == 0 ? &old : NULL, du, &lic) < 0) {
				r->failed = 1;
				round_error(r, "out of memory recording %s", du->id);
				user_clear(&old);
				user_init(u, du->id);
				continue;
			}
			if (u->state == US_GONE) /* restored from the deleted items */
				u->state = US_NEW;
			if (!holds) /* a move matters only to a number held through it (B9) */
				u->flags &= (uint8_t)~USER_F_MOVED;
			user_clear(&old);
			/* what is left to do is recorded with the page; pure state changes at once
			 */
			decide(r->cfg, u, holds ? &held : NULL, teams_of(r, du->id), now, &d);
			if (d.act != ACT_NOTHING && d.act != ACT_WAIT)
				u->flags |= USER_F_DUE;
			else if (d.reason == RSN_HAS_NUMBER && u->state == US_HELD)
				u->flags |= USER_F_DUE; /* a stale hold: lifted when acted on */
			else if (d.act == ACT_WAIT && d.until > now)
				due_now(p, u->id, d.until);
			if (d.act == ACT_NOTHING && u->state != US_HELD) {
				if (d.reason == RSN_UNLICENSED)
					u->state = US_UNLICENSED;
				else if (d.reason == RSN_DISABLED)
					u->state = US_DISABLED;
				else if (d.reason == RSN_HAS_NUMBER && held.state == INV_ASSIGNED)
					u->state = US_ASSIGNED;
			}
		}
		if (batch_add(&b, u, had == 0 ? (int)old.state : -1) < 0) {
			r->failed = 1;
			round_error(r, "out of memory recording %s", du->id);
		}
		/* old.state above is still valid: user_clear frees only the attributes */
	}
	if (!r->failed && (rc = batch_write(p, &b)) != INV_OK) {
		r->failed = 1;
		round_error(r, "cannot record a page of %zu users: %s", b.n, inv_strerror(rc));
	}
	if (!r->failed)
		for (size_t i = 0; i < pg->n_users; i++) /* skipped entries carry no flags */
			if (users[i].flags & USER_F_DUE)
				due_now(p, users[i].id, 0);
	for (size_t i = 0; i < pg->n_users; i++)
		user_clear(&users[i]);
	batch_free(&b);
	free(users);
}

/* Full sync: users the directory no longer has are gone (recorded before the link). */
struct absent_ctx {
	struct round *r;
	struct idmap gone;
};

static int
absent_dir(const char *id, const void *rec, size_t len, void *arg)
{
	struct absent_ctx *a = arg;

	(void)rec;
	(void)len;
	if (!idset_has(&a->r->seen, id) && idmap_put(&a->gone, id, 0, NULL) < 0)
		return 1;
	return 0;
}

static int
absent_holder(const struct inv_user *u, void *arg)
{
	struct absent_ctx *a = arg;

	if (!idset_has(&a->r->seen, u->id) && idmap_put(&a->gone, u->id, 0, u->upn) < 0)
		return 1;
	return 0;
}

static int
mark_absent(struct round *r)
{
	struct prov *p = r->p;
	struct absent_ctx a = { r, { 0 } };
	struct idmap_entry *e;
	struct user *users;
	struct batch b;
	size_t i = 0, n = 0;
	int rc = INV_OK;

	if (inv_dir_foreach(p->inv, absent_dir, &a) != INV_OK
	    || inv_foreach_user(p->inv, absent_holder, &a) != INV_OK) {
		idmap_clear(&a.gone);
		return INV_E_DB;
	}
	if (!idmap_count(&a.gone)) {
		idmap_clear(&a.gone);
		return INV_OK;
	}
	users = calloc(idmap_count(&a.gone), sizeof(*users));
	memset(&b, 0, sizeof(b));
	if (!users || batch_alloc(&b, idmap_count(&a.gone)) < 0) {
		batch_free(&b);
		free(users);
		idmap_clear(&a.gone);
		return INV_E_DB;
	}
	while ((e = idmap_next(&a.gone, &i))) {
		struct user *u = &users[n];
		int had = user_load(p, e->key, u);
		if (had < 0) {
			rc = INV_E_DB;
			break;
		}
		if (!u->upn[0] && e->s)
			snprintf(u->upn, sizeof(u->upn), "%s", e->s);
		if (had == 0 && u->state == US_GONE && (u->flags & USER_F_DUE)) {
			user_clear(u);
			continue; /* already recorded as gone */
		}
		{
			int old = had == 0 ? u->state : -1;
			u->state = US_GONE;
			u->flags |= USER_F_DUE;
			if (batch_add(&b, u, old) < 0) {
				rc = INV_E_DB;
				break;
			}
		}
		n++;
	}
	if (rc == INV_OK && (rc = batch_write(p, &b)) == INV_OK)
		for (size_t k = 0; k < b.n; k++)
			due_now(p, b.ids[k], 0);
	for (size_t k = 0; k < idmap_count(&a.gone); k++)
		user_clear(&users[k]);
	batch_free(&b);
	free(users);
	idmap_clear(&a.gone);
	return rc;
}

static void
on_delta_done(const struct delta_done *d, void *arg)
{
	struct round *r = arg;
	struct prov *p = r->p;
	int rc;

	r->outstanding--;
	if (d->status != DELTA_OK) {
		r->failed = 1;
		round_error(r, "%.250s", d->error);
	}
	r->full |= d->full;
	/* dry-run keeps no link: switched to enforce, it must see every user again */
	if (!r->failed && r->cfg->sync.mode != SYNC_DRY_RUN) {
		if (r->full && (rc = mark_absent(r)) != INV_OK) {
			r->failed = 1;
			round_error(r, "cannot record the users who left: %s", inv_strerror(rc));
		} else if ((rc = inv_meta_put(p->inv, META_DELTA, d->delta_link)) != INV_OK) {
			r->failed = 1;
			round_error(r, "cannot record the delta link: %s", inv_strerror(rc));
		} else if (r->full) {
			char when[32];
			time_t now = np_time();
			snprintf(when, sizeof(when), "%lld", (long long)now);
			if ((rc = inv_meta_put(p->inv, META_LAST_FULL, when)) != INV_OK) {
				r->failed = 1;
				round_error(
				    r, "cannot record the full sync's time: %s", inv_strerror(rc));
			} else {
				p->last_full = now;
			}
		}
	}
	decide_all(r);
}

static void
start_delta(struct round *r)
{
	struct prov *p = r->p;
	char link[8192] = "";

	if (!r->full && inv_meta_get(p->inv, META_DELTA, link, sizeof(link)) != INV_OK)
		link[0] = '\0';
	if (!link[0])
		r->full = 1;
	r->outstanding++;
	if (teams_delta(p->graph, link[0] ? link : NULL, on_page, on_delta_done, r) < 0) {
		r->outstanding--;
		r->failed = 1;
		round_error(r, "cannot start the users delta");
		r->deciding = 1;
		round_step_done(r);
	}
}

/* ---- full reconciliation: Teams' numbers against the inventory ---------- */

static void
on_numbers(const struct teams_number *v, size_t n, void *arg)
{
	struct round *r = arg;

	for (size_t i = 0; i < n; i++)
		if (v[i].target[0] && !idmap_get(&r->teams_by_user, v[i].target)
		    && idmap_put(&r->teams_by_user, v[i].target, 0, v[i].number) < 0)
			r->failed = 1;
}

struct drift_ctx {
	struct round *r;
	struct idmap by_number;
};

static int
drift_cb(const struct inv_number *n, void *arg)
{
	struct drift_ctx *d = arg;
	struct idmap_entry *t;

	if (n->state != INV_ASSIGNED)
		return 0;
	t = idmap_get(&d->by_number, n->number);
	if (!t || strcmp(t->s ? t->s : "", n->user_id) != 0)
		ev_drift(d->r->p, n->number, NULL, n->user_id, t && t->s ? t->s : "", NULL);
	return 0;
}

/* A number of ours that someone holds in Teams is never handed out again. */
static void
keep_held_numbers(struct round *r)
{
	struct prov *p = r->p;
	struct idmap_entry *e;
	size_t i = 0;

	while ((e = idmap_next(&r->teams_by_user, &i))) {
		struct inv_number n;
		struct user u;
		int rc;

		if (!range_of_number(r->cfg, e->s) || inv_get_number(p->inv, e->s, &n) != INV_OK
		    || n.state != INV_AVAILABLE)
			continue;
		/* a user we provision gets it recorded when their page is decided (adopt) */
		if (user_load(p, e->key, &u) == 0 && u.teams_phone && u.enabled
		    && u.state != US_GONE) {
			user_clear(&u);
			continue;
		}
		user_clear(&u);
		if ((rc = inv_reserve(p->inv, e->s, np_time())) != INV_OK)
			round_error(
			    r, "cannot keep %s out of the pool: %s", e->s, inv_strerror(rc));
		else
			log_notice("provision",
			    "%s is held in Teams by %s, who numprov does not "
			    "provision: kept out of the pool",
			    e->s, e->key);
	}
}

static void
on_numbers_done(int ok, size_t total, const char *error, void *arg)
{
	struct round *r = arg;
	struct prov *p = r->p;
	struct drift_ctx d = { r, { 0 } };
	struct idmap_entry *e;
	size_t i = 0;

	r->outstanding--;
	if (!ok || r->failed) {
		r->failed = 1;
		round_error(r, "%s", error ? error : "numberAssignments");
		r->deciding = 1;
		round_step_done(r);
		return;
	}
	r->teams_known = 1;
	while ((e = idmap_next(&r->teams_by_user, &i)))
		if (idmap_put(&d.by_number, e->s, 0, e->key) < 0)
			break;
	/* an inventory assignment Teams does not show: logged and counted, never rewritten */
	inv_foreach_number(p->inv, drift_cb, &d);
	idmap_clear(&d.by_number);
	if (r->cfg->sync.mode != SYNC_DRY_RUN)
		keep_held_numbers(r);
	log_debug("provision", "reconciled with %zu numbers in Teams", total);
	start_delta(r);
}

static void
on_skus(const struct teams_result *t, void *arg)
{
	struct round *r = arg;

	r->outstanding--;
	if (!t->ok)
		log_warnx("provision", "subscribedSkus: %s %s; the built-in plan list is used",
		    t->error, t->detail);
	else
		r->p->skus_loaded = 1;
	if (r->p->draining) {
		r->deciding = 1;
		round_step_done(r);
		return;
	}
	if (!r->full) {
		start_delta(r);
		return;
	}
	r->outstanding++;
	if (teams_list_numbers(r->p->graph, on_numbers, on_numbers_done, r) < 0) {
		r->outstanding--;
		start_delta(r);
	}
}

static void
cycle_start(struct prov *p, int full)
{
	struct round *r;
	int rc;

	if (p->round || p->draining)
		return;
	if (!(r = calloc(1, sizeof(*r)))) {
		log_err("provision", "out of memory: sync postponed");
		schedule(p, p->cfg->sync.interval);
		return;
	}
	if (p->lic_stale) {
		struct dir_licensing *l = dir_licensing_from_config(p->cfg);
		if (l) {
			dir_licensing_free(p->lic);
			p->lic = l;
			p->lic_stale = 0;
			p->skus_loaded = 0;
		}
	}
	r->p = p;
	r->cfg = config_ref(p->cfg);
	p->round = r;
	p->st.running = 1;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	p->st.last_start = np_time();
	loop_timer_stop(p->tick);
	if ((rc = inv_expire(p->inv, np_time())) < 0)
		round_error(r, "cannot end quarantines");
	r->full = full || !p->last_full || np_time() - p->last_full >= r->cfg->sync.full_interval
	    || np_time() < p->last_full; /* the clock went back: reconcile */
	p->st.last_full = r->full;
	settle_pending(r);
	/* plan names are learnt before any page is classified: every full sync, and the
	   first round after a start or a reload */
	if (r->full || !p->skus_loaded) {
		r->outstanding++;
		if (teams_load_skus(p->graph, p->lic, on_skus, r) < 0)
			on_skus(&(struct teams_result) { 0 }, r);
	} else {
		start_delta(r);
	}
}

static void
on_tick(void *arg)
{
	cycle_start(arg, 0);
}

static void
on_kick(void *arg)
{
	struct prov *p = arg;
	int full = p->again_full;

	p->again_full = 0;
	cycle_start(p, full);
}

void
prov_trigger(struct prov *p, int full)
{
	if (p->round) {
		p->again = 1;
		p->again_full |= full;
		return;
	}
	p->again_full |= full;
	loop_timer_start(p->kick, 0);
}

/* ---- life cycle --------------------------------------------------------- */

struct prov *
prov_new(struct event_base *base, struct config *cfg, struct inventory *inv, struct graph *graph)
{
	struct prov *p = calloc(1, sizeof(*p));
	char when[32];

	if (!p)
		return NULL;
	p->base = base;
	p->cfg = config_ref(cfg);
	p->inv = inv;
	p->graph = graph;
	p->lic = dir_licensing_from_config(cfg);
	p->tick = loop_timer_new(base, on_tick, p);
	p->kick = loop_timer_new(base, on_kick, p);
	p->more = loop_timer_new(base, on_more, p);
	if (!p->lic || !p->tick || !p->kick || !p->more) {
		prov_free(p);
		return NULL;
	}
	if (inv_meta_get(inv, META_LAST_FULL, when, sizeof(when)) == INV_OK)
		p->last_full = (time_t)atoll(when);
	return p;
}

void
prov_set_config(struct prov *p, struct config *cfg)
{
	/* a round in flight keeps its own reference; the next one takes this */
	config_free(p->cfg);
	p->cfg = config_ref(cfg);
	p->lic_stale = 1;
}

/* At start: the counts by state, and every user a round left something to do for. */
static int
startup_scan(const char *id, const void *rec, size_t len, void *arg)
{
	struct prov *p = arg;
	struct user u;

	if (user_decode(id, rec, len, &u) < 0) {
		log_warnx(
		    "provision", "the stored record of user %s cannot be read: decided again", id);
		due_now(p, id, 0);
		return 0;
	}
	p->count[u.state]++;
	/* assigning: settled from Teams first, then decided (a crash may have cut it short) */
	if ((u.flags & USER_F_DUE) || u.state == US_NEW || u.state == US_NO_MATCH
	    || u.state == US_RANGES_FULL || u.state == US_GONE || u.state == US_ASSIGNING
	    || u.change_new[0])
		due_now(p, id, 0);
	else if (u.state == US_WAITING)
		due_now(p, id, (time_t)u.retry_at);
	user_clear(&u);
	return 0;
}

void
prov_start(struct prov *p)
{
	if (p->cfg->sync.mode == SYNC_OFF)
		log_notice("provision", "sync.mode is off: no automatic provisioning");
	if (inv_dir_foreach(p->inv, startup_scan, p) != INV_OK)
		log_err("provision",
		    "cannot read the stored users; they are decided at the next full sync");
	if (idmap_count(&p->due))
		log_info("provision", "%zu users have something left to do from before the start",
		    idmap_count(&p->due));
	stats_counts(p);
	prov_trigger(p, 0);
}

void
prov_drain(struct prov *p, void (*done)(void *arg), void *arg)
{
	p->draining = 1;
	p->drained = done;
	p->drained_arg = arg;
	loop_timer_stop(p->tick);
	loop_timer_stop(p->kick);
	/* what waits for a retry is given up; what is on the wire is answered */
	graph_stop(p->graph);
	if (!p->round && p->manual == 0)
		drained_now(p);
}

void
prov_get_stats(struct prov *p, struct prov_stats *out)
{
	*out = p->st;
	out->running = p->round != NULL;
}

void
prov_free(struct prov *p)
{
	if (!p)
		return;
	loop_timer_free(p->tick);
	loop_timer_free(p->kick);
	loop_timer_free(p->more);
	idmap_clear(&p->due);
	idmap_clear(&p->busy);
	idmap_clear(&p->inflight);
	idmap_clear(&p->dry_logged);
	dir_licensing_free(p->lic);
	config_free(p->cfg);
	free(p);
}

/* ---- for the control socket --------------------------------------------- */

struct find_ctx {
	const char *key;
	char id[INV_ID_MAX];
};

static int
find_upn(const char *id, const void *rec, size_t len, void *arg)
{
	struct find_ctx *f = arg;
	struct user u;
	int hit;

	if (user_decode(id, rec, len, &u) < 0)
		return 0;
	hit = strcasecmp(u.upn, f->key) == 0;
	if (hit)
		snprintf(f->id, sizeof(f->id), "%s", id);
	user_clear(&u);
	return hit;
}

/*
 * A user from an id or a UPN: 0 with the user loaded, -1 when unknown. A UPN
 * is found by a scan of the stored users (about 50 ms at 100,000 users).
 */
static int
resolve_user(struct prov *p, const char *key, struct user *u)
{
	struct find_ctx f = { key, "" };

	user_init(u, "");
	if (strlen(key) < INV_ID_MAX && user_load(p, key, u) == 0)
		return 0;
	if (inv_dir_foreach(p->inv, find_upn, &f) < 0 || !f.id[0]) /* 1: found, stopped early */
		return -1;
	return user_load(p, f.id, u) == 0 ? 0 : -1;
}

#define PLAN_CANDIDATES "candidate_ranges" /* numprovctl plan: numbered once sorted */

/* plan: the candidate ranges are listed, numbered later (plan_numbers); else the
   number the user would get now */
static cJSON *
decision_json(const struct decision *d, struct prov *p, int plan)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "action", action_name(d->act));
	cJSON_AddStringToObject(o, "reason", reason_name(d->reason));
	if (d->act == ACT_CHECK)
		cJSON_AddBoolToObject(o, "checks_teams_first", 1);
	if (d->number)
		cJSON_AddStringToObject(o, "number", d->number);
	if (d->act == ACT_WAIT)
		cJSON_AddNumberToObject(o, "until", (double)d->until);
	if ((d->act == ACT_ASSIGN || d->act == ACT_CHECK) && plan) {
		cJSON *c = cJSON_AddArrayToObject(o, PLAN_CANDIDATES);
		for (size_t i = 0; c && i < d->n_cand; i++)
			cJSON_AddItemToArray(c, cJSON_CreateString(d->cand[i]->name));
	} else if (d->act == ACT_ASSIGN || d->act == ACT_CHECK)
		for (size_t i = 0; i < d->n_cand; i++) {
			struct inv_number num;
			if (inv_peek(p->inv, d->cand[i]->name, np_time(), &num) == INV_OK) {
				cJSON_AddStringToObject(o, "would_get", num.number);
				cJSON_AddStringToObject(o, "range", d->cand[i]->name);
				break;
			}
		}
	return o;
}

cJSON *
prov_explain_user(struct prov *p, const char *key)
{
	char why[1024];
	cJSON *out, *ranges, *dj;
	struct rule_attrs a;
	struct inv_user held;
	struct decision d;
	struct user u;
	int holds;

	if (resolve_user(p, key, &u) < 0) {
		user_clear(&u);
		return NULL;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "id", u.id);
	cJSON_AddItemToObject(out, "record", user_to_json(&u));
	holds = inv_get_user(p->inv, u.id, &held) == INV_OK;
	if (holds) {
		cJSON_AddStringToObject(out, "number", held.number);
		cJSON_AddStringToObject(out, "number_state", inv_state_name(held.state));
	}
	cJSON_AddStringToObject(out, "state", user_state_name((enum user_state)u.state));
	user_attrs(&u, &a);
	ranges = cJSON_AddArrayToObject(out, "ranges");
	for (size_t i = 0; i < p->cfg->n_ranges; i++) {
		const struct cfg_range *r = &p->cfg->ranges[i];
		int type_ok = range_type_suits(r->type, u.calling_plan);
		int match = r->match ? rule_explain(r->match, &a, why, sizeof(why)) : 1;
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "name", r->name);
		cJSON_AddBoolToObject(o, "type_ok", type_ok);
		cJSON_AddBoolToObject(o, "match", match);
		cJSON_AddStringToObject(
		    o, "why", r->match ? why : "no rule: every user of its type");
		cJSON_AddItemToArray(ranges, o);
	}
	decide(p->cfg, &u, holds ? &held : NULL, NULL, np_time(), &d);
	dj = decision_json(&d, p, 0);
	cJSON_AddItemToObject(out, "decision", dj);
	if (cJSON_GetObjectItem(dj, "would_get")) {
		cJSON_AddStringToObject(
		    out, "would_get", cJSON_GetObjectItem(dj, "would_get")->valuestring);
		cJSON_AddStringToObject(
		    out, "would_get_range", cJSON_GetObjectItem(dj, "range")->valuestring);
	}
	user_clear(&u);
	return out;
}

struct users_ctx {
	struct prov *p;
	const char *filter;
	cJSON *arr;
	int plan;
};

static int
users_cb(const char *id, const void *rec, size_t len, void *arg)
{
	struct users_ctx *c = arg;
	struct inv_user held;
	struct user u;
	int holds;
	cJSON *o;

	if (user_decode(id, rec, len, &u) < 0)
		return 0;
	holds = inv_get_user(c->p->inv, id, &held) == INV_OK;
	if (c->plan) {
		struct decision d;
		decide(c->p->cfg, &u, holds ? &held : NULL, NULL, np_time(), &d);
		if (d.act != ACT_NOTHING && d.act != ACT_WAIT) {
			o = decision_json(&d, c->p, 1);
			cJSON_AddStringToObject(o, "user", u.upn);
			cJSON_AddStringToObject(o, "id", id);
			cJSON_AddItemToArray(c->arr, o);
		}
		user_clear(&u);
		return 0;
	}
	if (c->filter && strcmp(c->filter, "pending") == 0 && u.state != US_WAITING
	    && u.state != US_ASSIGNING && !(holds && held.state == INV_PENDING)) {
		user_clear(&u);
		return 0;
	}
	if (c->filter && strcmp(c->filter, "unmatched") == 0 && u.state != US_NO_MATCH
	    && u.state != US_RANGES_FULL) {
		user_clear(&u);
		return 0;
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "id", id);
	cJSON_AddStringToObject(o, "upn", u.upn);
	cJSON_AddStringToObject(o, "state", user_state_name((enum user_state)u.state));
	if (holds)
		cJSON_AddStringToObject(o, "number", held.number);
	{ /* why the user stands where they do: the decision's reason, as plan and user say */
		struct decision d;
		decide(c->p->cfg, &u, holds ? &held : NULL, NULL, np_time(), &d);
		cJSON_AddStringToObject(o, "reason", reason_name(d.reason));
	}
	cJSON_AddItemToArray(c->arr, o);
	user_clear(&u);
	return 0;
}

/* Lists are sorted by UPN (case aside), then id: what an administrator scans. */
static const char *
sort_key(const cJSON *o, const char *key)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
	return s ? s : "";
}

static int
by_upn(const void *a, const void *b)
{
	const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
	const char *kx = sort_key(x, "upn")[0] ? sort_key(x, "upn") : sort_key(x, "user");
	const char *ky = sort_key(y, "upn")[0] ? sort_key(y, "upn") : sort_key(y, "user");
	int c = strcasecmp(kx, ky);

	return c ? c : strcmp(sort_key(x, "id"), sort_key(y, "id"));
}

static cJSON *
sorted(cJSON *arr)
{
	int n = arr ? cJSON_GetArraySize(arr) : 0;
	cJSON **v = n > 0 ? calloc((size_t)n, sizeof(*v)) : NULL;
	cJSON *out;

	if (!v || !(out = cJSON_CreateArray())) {
		free(v);
		return arr; /* out of memory: unsorted is still the answer */
	}
	for (int i = 0; i < n; i++)
		v[i] = cJSON_DetachItemFromArray(arr, 0);
	qsort(v, (size_t)n, sizeof(*v), by_upn);
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(out, v[i]);
	free(v);
	cJSON_Delete(arr);
	return out;
}

cJSON *
prov_users(struct prov *p, const char *filter)
{
	struct users_ctx c = { p, filter, cJSON_CreateArray(), 0 };

	inv_dir_foreach(p->inv, users_cb, &c);
	return sorted(c.arr);
}

struct plan_item {
	cJSON *o;
	uint64_t seq;
	size_t pos;
};

static int
by_due_order(const void *a, const void *b)
{
	const struct plan_item *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

cJSON *
prov_plan(struct prov *p)
{
	struct users_ctx c = { p, NULL, cJSON_CreateArray(), 1 };
	struct idmap planned = { 0 };
	time_t now = np_time();
	struct plan_item *order;
	cJSON *out, *o;
	int n, i;

	inv_dir_foreach(p->inv, users_cb, &c);
	out = sorted(c.arr);
	n = cJSON_GetArraySize(out);
	order = n > 0 ? calloc((size_t)n, sizeof(*order)) : NULL;
	i = 0;
	cJSON_ArrayForEach(o, out)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id");
		struct idmap_entry *e
		    = cJSON_IsString(id) ? idmap_get(&p->due, id->valuestring) : NULL;
		if (!order)
			break;
		order[i].o = o;
		order[i].seq = e ? e->seq : UINT64_MAX; /* not due: after those that are */
		order[i].pos = (size_t)i;
		i++;
	}
	/* numbered in the order a round decides users (the order they became due), each
	   range's next free number to its next user, as assignments one after another
	   would number them; an estimate: who gets which depends on Teams' answers */
	if (order)
		qsort(order, (size_t)i, sizeof(*order), by_due_order);
	for (int k = 0; order && k < i; k++) {
		cJSON *cand = cJSON_DetachItemFromObjectCaseSensitive(order[k].o, PLAN_CANDIDATES);
		cJSON *r;
		o = order[k].o;
		cJSON_ArrayForEach(r, cand)
		{
			struct inv_number num;
			int rc = cJSON_IsString(r)
			    ? peek_planned(p, &planned, r->valuestring, now, &num, 1)
			    : INV_E_NOTFOUND;
			if (rc == INV_E_FULL)
				continue;
			if (rc != INV_OK) {
				cJSON_AddStringToObject(o, "error", inv_strerror(rc));
				break;
			}
			cJSON_AddStringToObject(o, "would_get", num.number);
			cJSON_AddStringToObject(o, "range", r->valuestring);
			if (!cJSON_GetObjectItem(o, "number"))
				cJSON_AddStringToObject(o, "number", num.number);
			break;
		}
		cJSON_Delete(cand);
	}
	if (!order && n > 0) { /* out of memory: no numbers rather than wrong ones */
		cJSON_ArrayForEach(o, out)
		    cJSON_DeleteItemFromObjectCaseSensitive(o, PLAN_CANDIDATES);
	}
	free(order);
	idmap_clear(&planned);
	return out;
}

/* ---- administrators' changes -------------------------------------------- */

static void
manual_fail(struct change *c, const char *why)
{
	reply(c, 0, why, NULL);
	change_done(c);
}

/* The administrator's change of number as written ahead in the user's record. */
static int
journal(struct prov *p, const char *id, const char *old, const char *new_number, int reserved)
{
	struct user u;
	int had = user_load(p, id, &u), rc;

	if (had < 0)
		return INV_E_DB;
	snprintf(u.change_old, sizeof(u.change_old), "%s", old ? old : "");
	snprintf(u.change_new, sizeof(u.change_new), "%s", new_number ? new_number : "");
	if (reserved)
		u.flags |= USER_F_CHANGE_RESERVED;
	else
		u.flags &= (uint8_t)~USER_F_CHANGE_RESERVED;
	rc = user_store(p, &u, had == 0 ? u.state : -1);
	user_clear(&u);
	return rc;
}

/* The change did not happen (or was undone): the journal goes, the reservation too. */
static int
journal_drop(struct prov *p, const char *id)
{
	struct user u;
	int rc = INV_OK;

	if (user_load(p, id, &u) != 0) {
		user_clear(&u);
		return INV_OK;
	}
	if ((u.flags & USER_F_CHANGE_RESERVED) && u.change_new[0]) {
		struct inv_number n;
		if (inv_get_number(p->inv, u.change_new, &n) == INV_OK && n.state == INV_RESERVED
		    && !(n.flags & INV_NF_CONFIG))
			rc = inv_unreserve(p->inv, u.change_new);
	}
	if (rc == INV_OK) {
		u.change_old[0] = u.change_new[0] = '\0';
		u.flags &= (uint8_t)~USER_F_CHANGE_RESERVED;
		rc = user_store(p, &u, u.state);
	}
	user_clear(&u);
	return rc;
}

/*
 * Teams holds the new number: the inventory follows (old released, new assigned)
 * and the journal goes. Each step is idempotent, so a retry after a crash or a
 * failed write finishes it.
 */
static int
change_complete(struct prov *p, const struct config *cfg, const char *id, const char *upn,
    const char *old, const char *new_number)
{
	struct inv_user held;
	struct inv_number n, on;
	const struct cfg_range *cr = range_of_number(cfg, new_number);
	time_t now = np_time();
	int rc = INV_OK, released = 0;

	memset(&on, 0, sizeof(on));
	if (inv_get_user(p->inv, id, &held) == INV_OK && strcmp(held.number, new_number) != 0) {
		struct inv_number was;
		if (inv_get_number(p->inv, held.number, &was) != INV_OK)
			memset(&was, 0, sizeof(was));
		if ((rc = inv_release(
			 p->inv, id, quarantine_of(cfg, was.range), np_time_late(), &on))
		    != INV_OK)
			return rc;
		snprintf(on.range, sizeof(on.range), "%s", was.range);
		released = 1;
	}
	if (inv_get_number(p->inv, new_number, &n) != INV_OK || n.state != INV_ASSIGNED
	    || strcmp(n.user_id, id) != 0) {
		if ((rc = inv_claim(p->inv, new_number, id, upn, now)) != INV_OK
		    && rc != INV_E_USER_HAS)
			return rc;
		if ((rc = inv_confirm(p->inv, new_number, id, now)) != INV_OK)
			return rc;
	}
	if (released)
		ev_release(p, NULL, upn, id, old, on.range, "changed", "administrator", &on);
	ev_assign(p, NULL, cfg, upn, id, new_number, cr ? cr->name : "", NULL, "administrator", 0);
	if ((rc = journal_drop(p, id)) != INV_OK)
		return rc;
	user_assigned(p, NULL, id);
	return INV_OK;
}

static void manual_restored(const struct teams_result *t, void *arg);
static void manual_restore_checked(
    const struct teams_result *t, const struct teams_number *v, size_t n, void *arg);

/* Step 2 of a change of number: the new number in Teams. */
static void
manual_new_assigned(const struct teams_result *t, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;
	int rc;

	idmap_del(&p->inflight, c->number);
	if (t->ok) {
		if ((rc = change_complete(p, c->cfg, c->id, c->upn, c->old_number, c->number))
		    != INV_OK) {
			log_err("provision",
			    "%s holds %s in Teams but the inventory cannot record it "
			    "yet (%s): finished at the next sync",
			    c->upn, c->number, inv_strerror(rc));
			due_now(p, c->id, 0);
			manual_fail(
			    c, "Teams made the change; the inventory records it at the next sync");
			return;
		}
		apply_policy(c);
		reply(c, 1, NULL, c->number);
		change_done(c);
		return;
	}
	if (!t->refused) {
		/* unknown whether Teams did it: the journal stays, the next round settles it */
		due_now(p, c->id, 0);
		manual_fail(c,
		    why_set(c,
			"Teams did not confirm %s in time (%s); the next "
			"sync settles it",
			c->number, t->detail[0] ? t->detail : t->error));
		return;
	}
	/* refused: the old number goes back on the user, once Teams shows they hold none */
	log_warnx("provision", "assign %s to %s refused by Teams (%s): restoring %s", c->number,
	    c->upn, why_set(c, "%s", t->detail[0] ? t->detail : t->error), c->old_number);
	if (teams_user_numbers(p->graph, c->id, manual_restore_checked, c) < 0)
		manual_restore_checked(&(struct teams_result) { .error = "internal" }, NULL, 0, c);
}

/* Before the old number is sent back: what does Teams show on the user now? (B10) */
static void
manual_restore_checked(
    const struct teams_result *t, const struct teams_number *v, size_t n, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;
	const struct cfg_range * or = range_of_number(c->cfg, c->old_number);

	(void)v;
	if (!t->ok || n > 0) {
		/* unknown, or the user holds a number again: the journal stays and the next
		   round settles it from Teams (adopts what they hold, or decides afresh) */
		struct teams_result why = { .ok = 0 };
		snprintf(why.error, sizeof(why.error), "%s", t->ok ? "holds-number" : "unread");
		snprintf(why.detail, sizeof(why.detail), "%s",
		    "the user's numbers in Teams changed or cannot be read");
		manual_restored(&why, c);
		return;
	}
	if (idmap_put(&p->inflight, c->old_number, 0, NULL) < 0)
		log_warnx("provision", "out of memory");
	if (teams_assign(p->graph, c->id, c->old_number, number_type_of(p, c->old_range),
		or ? or->location_id : NULL, manual_restored, c)
	    < 0)
		manual_restored(&(struct teams_result) { .error = "internal" }, c);
}

static void
manual_restored(const struct teams_result *t, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;
	char msg[1536];

	idmap_del(&p->inflight, c->old_number);
	if (t->ok && journal_drop(p, c->id) == INV_OK) {
		snprintf(msg, sizeof(msg), "Teams refused %s: %s (the user keeps %s)", c->number,
		    c->why ? c->why : "?", c->old_number);
	} else {
		/* the journal stays: the next round settles it from Teams */
		log_err("provision",
		    "%s could not be given back %s in Teams (%s %s): settled at the "
		    "next sync",
		    c->upn, c->old_number, t->error, t->detail);
		due_now(p, c->id, 0);
		snprintf(msg, sizeof(msg),
		    "Teams refused %s: %s; restoring %s did not complete (%s): "
		    "the next sync settles it",
		    c->number, c->why ? c->why : "?", c->old_number,
		    t->detail[0] ? t->detail : t->error);
	}
	manual_fail(c, msg);
}

/* Step 1 of a change of number: the old one is taken off in Teams. */
static void
manual_old_unassigned(const struct teams_result *t, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;

	idmap_del(&p->inflight, c->old_number);
	if (!t->ok && !not_assigned(t)) {
		if (t->refused) {
			if (journal_drop(p, c->id) != INV_OK)
				due_now(p, c->id, 0);
		} else {
			due_now(p, c->id, 0); /* unknown: settled next round */
		}
		manual_fail(c, t->detail[0] ? t->detail : t->error);
		return;
	}
	if (idmap_put(&p->inflight, c->number, 0, NULL) < 0)
		log_warnx("provision", "out of memory");
	{
		const struct cfg_range *cr = config_range_find(c->cfg, c->range);
		if (teams_assign(p->graph, c->id, c->number,
			cr ? range_type_graph(cr->type) : TNT_DIRECT_ROUTING,
			cr ? cr->location_id : NULL, manual_new_assigned, c)
		    < 0)
			manual_new_assigned(&(struct teams_result) { .refused = 1,
						.error = "internal",
						.detail = "cannot send the assignment" },
			    c);
	}
}

/* After Teams was read: the change of number, or a first number, written ahead. */
static void
manual_go(struct change *c)
{
	struct prov *p = c->p;
	struct inv_number n;
	int rc, reserved = 0;

	if (c->old_number[0]) {
		/*
		 * The new number is kept out of the pool while Teams works. A quarantined one
		 * too (its quarantine may end meanwhile); if the change does not happen it stays
		 * reserved rather than cutting its quarantine short (numprovctl unreserve).
		 */
		if (inv_get_number(p->inv, c->number, &n) == INV_OK
		    && (n.state == INV_AVAILABLE || n.state == INV_QUARANTINED)) {
			if ((rc = inv_reserve(p->inv, c->number, np_time())) != INV_OK) {
				manual_fail(c, inv_strerror(rc));
				return;
			}
			reserved = n.state == INV_AVAILABLE;
			if (!reserved)
				log_notice("provision",
				    "%s was quarantined: reserved for the change of "
				    "%s; it stays reserved if the change does not happen",
				    c->number, c->upn);
		}
		if ((rc = journal(p, c->id, c->old_number, c->number, reserved)) != INV_OK) {
			if (reserved && inv_unreserve(p->inv, c->number) != INV_OK)
				log_warnx("provision", "%s stays reserved", c->number);
			manual_fail(c, "cannot record the change; nothing was sent to Teams");
			return;
		}
		if (idmap_put(&p->inflight, c->old_number, 0, NULL) < 0)
			log_warnx("provision", "out of memory");
		if (teams_unassign(p->graph, c->old_number, number_type_of(p, c->old_range),
			manual_old_unassigned, c)
		    < 0)
			manual_old_unassigned(&(struct teams_result) { .refused = 1,
						  .error = "internal",
						  .detail = "cannot send the change to Teams" },
			    c);
		return;
	}
	/* no number yet: written ahead (pending), then Teams, as in the cycle */
	if (inv_get_number(p->inv, c->number, &n) == INV_OK && n.state == INV_RESERVED)
		c->step = INV_RESERVED; /* a refusal gives the reservation back */
	rc = inv_claim(p->inv, c->number, c->id, c->upn, np_time());
	if (rc != INV_OK) {
		manual_fail(c, inv_strerror(rc));
		return;
	}
	if (send_assign(c) < 0)
		assigned(&(struct teams_result) { .refused = 1,
			     .error = "internal",
			     .detail = "cannot send the assignment to Teams" },
		    c);
}

/* Before any assignNumber: what Teams shows on the user (B10). */
static void
manual_checked(const struct teams_result *t, const struct teams_number *v, size_t n, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;
	const char *other = NULL;
	int has_new = 0, rc;

	if (!t->ok) {
		manual_fail(
		    c, t->detail[0] ? t->detail : "cannot read the user's numbers in Teams");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].number, c->number) == 0)
			has_new = 1;
		else if (!c->old_number[0] || strcmp(v[i].number, c->old_number) != 0)
			other = v[i].number;
	}
	if (has_new && !other) {
		/* already theirs in Teams: the inventory follows */
		if ((rc = change_complete(p, c->cfg, c->id, c->upn, c->old_number, c->number))
		    != INV_OK) {
			manual_fail(c, inv_strerror(rc));
			return;
		}
		reply(c, 1, NULL, c->number);
		change_done(c);
		return;
	}
	if (other && !c->policy_only) { /* policy_only carries --force here */
		manual_fail(c,
		    why_set(c,
			"%s holds %s in Teams, which numprov has not "
			"recorded; an assignment could replace it: refused (--force to replace it)",
			c->upn, other));
		return;
	}
	manual_go(c);
}

/* A user key as an error echoes it: at most 64 bytes of it, escaped (utf8.h), cut on a
 * character: whatever an administrator's request carried. */
#define KEY_ECHO (64 + 4)

static const char *
echo_key(const char *key, char *buf)
{
	return utf8_escape(key, buf, KEY_ECHO);
}

int
prov_manual_assign(struct prov *p, const char *key, const char *number, int force, prov_reply cb,
    void *arg, char *err, size_t errlen)
{
	char kbuf[KEY_ECHO];
	const struct cfg_range *r;
	struct inv_user held;
	struct inv_number n;
	struct change *c;
	struct e164 num;
	char canon[E164_STRLEN], why[160];
	struct user u;
	int holds;

	err[0] = '\0';
	if (resolve_user(p, key, &u) < 0) {
		user_clear(&u);
		snprintf(err, errlen, "unknown user '%s'", echo_key(key, kbuf));
		return -1;
	}
	if (e164_parse(number, &num, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "'%s' is not a phone number: %s", number, why);
		user_clear(&u);
		return -2;
	}
	e164_format(&num, canon, sizeof(canon));
	if (!(r = range_of_number(p->cfg, canon))) {
		snprintf(err, errlen, "%s is in no configured range", canon);
		user_clear(&u);
		return -3;
	}
	if (!force && !range_type_suits(r->type, u.calling_plan)) {
		snprintf(err, errlen,
		    "%s is a %s number and %s %s a Calling Plan: refused (--force "
		    "to assign it anyway)",
		    canon, config_range_type_name(r->type), u.upn,
		    u.calling_plan ? "has" : "has no");
		user_clear(&u);
		return -6;
	}
	if (inv_get_number(p->inv, canon, &n) == INV_OK
	    && (n.state == INV_PENDING || n.state == INV_ASSIGNED)
	    && strcmp(n.user_id, u.id) != 0) {
		snprintf(err, errlen, "%s is held by %s", canon, n.user_id);
		user_clear(&u);
		return -4;
	}
	if (idmap_get(&p->busy, u.id) || idmap_get(&p->inflight, canon) || u.change_new[0]
	    || ((u.flags & USER_F_UNASSIGN) && inv_get_user(p->inv, u.id, &held) == INV_OK)) {
		snprintf(err, errlen, "a change for %s is in flight; try again after the next sync",
		    u.upn);
		user_clear(&u);
		return -7;
	}
	holds = inv_get_user(p->inv, u.id, &held) == INV_OK;
	if (holds && held.state != INV_ASSIGNED) {
		snprintf(err, errlen,
		    "%s has an unsettled assignment of %s; try again after the next "
		    "sync",
		    u.upn, held.number);
		user_clear(&u);
		return -7;
	}
	if (holds && strcmp(held.number, canon) == 0 && u.state != US_HELD) {
		cJSON *o = cJSON_CreateObject();
		user_clear(&u);
		cJSON_AddBoolToObject(o, "ok", 1);
		cJSON_AddStringToObject(o, "number", canon);
		cb(o, arg); /* already theirs: nothing to do */
		return 0;
	}
	if (!(c = change_new(p, NULL, u.id))) {
		user_clear(&u);
		snprintf(err, errlen, "out of memory");
		return -5;
	}
	c->reply = cb;
	c->reply_arg = arg;
	c->policy_only = force; /* --force: an unrecorded number in Teams may be replaced */
	snprintf(c->upn, sizeof(c->upn), "%s", u.upn[0] ? u.upn : key);
	snprintf(c->number, sizeof(c->number), "%s", canon);
	snprintf(c->range, sizeof(c->range), "%s", r->name);
	user_clear(&u);
	if (holds && strcmp(held.number, canon) != 0) {
		snprintf(c->old_number, sizeof(c->old_number), "%s", held.number);
		if (inv_get_number(p->inv, held.number, &n) == INV_OK)
			snprintf(c->old_range, sizeof(c->old_range), "%s", n.range);
	}
	if (teams_user_numbers(p->graph, c->id, manual_checked, c) < 0) {
		snprintf(err, errlen, "cannot ask Teams for the user's numbers");
		c->reply = NULL;
		change_done(c);
		return -5;
	}
	return 0;
}

/* ---- a change of number cut short (crash, unsettled answer): settled from Teams ---- */

static void
change_settled(const struct teams_result *t, const struct teams_number *v, size_t n, void *arg)
{
	struct change *c = arg;
	struct round *r = c->r;
	struct prov *p = c->p;
	int has_new = 0, has_old = 0, rc = INV_OK;

	if (!t->ok) {
		round_error(
		    r, "numbers of %s: %.200s", c->upn, t->detail[0] ? t->detail : t->error);
		due_now(p, c->id, np_time());
		change_done(c);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		has_new |= strcmp(v[i].number, c->number) == 0;
		has_old |= c->old_number[0] && strcmp(v[i].number, c->old_number) == 0;
	}
	if (has_new) {
		rc = change_complete(p, c->cfg, c->id, c->upn, c->old_number, c->number);
	} else if (has_old) {
		log_notice("provision",
		    "the change of %s from %s to %s did not happen in Teams: "
		    "%s keeps %s",
		    c->upn, c->old_number, c->number, c->upn, c->old_number);
		rc = journal_drop(p, c->id);
	} else {
		/* neither: the old number is off, the new one never arrived. The old one goes
		   back to the pool and the user is decided afresh (checked with Teams first). */
		struct inv_number on;
		struct inv_user held;
		log_warnx("provision",
		    "the change of %s from %s to %s was cut short: %s holds %s "
		    "in Teams; decided again",
		    c->upn, c->old_number, c->number, c->upn, n ? v[0].number : "no number");
		if (inv_get_user(p->inv, c->id, &held) == INV_OK) {
			struct inv_number was;
			if (inv_get_number(p->inv, held.number, &was) != INV_OK)
				was.range[0] = '\0';
			rc = inv_release(
			    p->inv, c->id, quarantine_of(c->cfg, was.range), np_time_late(), &on);
		}
		if (rc == INV_OK)
			rc = journal_drop(p, c->id);
	}
	if (rc != INV_OK) {
		round_error(r, "change of number of %s: %s", c->upn, inv_strerror(rc));
		due_now(p, c->id, np_time());
	} else if (!has_new && !has_old && !p->draining && p->cfg->sync.mode != r->cfg->sync.mode) {
		due_now(p, c->id, np_time()); /* the round under the new mode decides them */
	} else if (!has_new && !has_old && !p->draining) {
		/* decided now, on what Teams just said */
		struct user u;
		if (user_load(p, c->id, &u) == 0)
			act_on(r, &u, n ? v[0].number : "");
		user_clear(&u);
	}
	change_done(c);
}

static void
start_settle_change(struct round *r, struct user *u)
{
	idmap_del(&r->p->due, u->id);
	ask_user_numbers(r, u, change_settled);
}

/* numprovctl unassign: released, and the user held out of automatic assignment. */
static void
manual_unassigned(const struct teams_result *t, void *arg)
{
	struct change *c = arg;
	struct prov *p = c->p;
	struct inv_number n;
	struct user u;
	int rc, had;

	idmap_del(&p->inflight, c->number);
	if (!t->ok && !not_assigned(t)) {
		if (!t->refused) {
			due_now(p, c->id, 0); /* unknown: the next round carries the unassign out */
		} else if ((had = user_load(p, c->id, &u)) == 0 && u.state == US_HELD) {
			/* Teams kept it: the user is as before (a later change, e.g. a deletion
			   recorded meanwhile, is not overwritten) */
			u.state = (uint8_t)c->step;
			u.flags = (uint8_t)(c->old_flags | (u.flags & USER_F_DUE));
			if (user_store(p, &u, US_HELD) != INV_OK)
				log_err("provision", "cannot lift the hold of %s", c->upn);
			user_clear(&u);
		} else {
			user_clear(&u); /* user_load initialises u on every path */
		}
		manual_fail(c, t->detail[0] ? t->detail : t->error);
		return;
	}
	if ((rc = inv_release(p->inv, c->id, quarantine_of(c->cfg, c->range), np_time_late(), &n))
	    != INV_OK) {
		log_err("provision",
		    "%s was unassigned in Teams but the inventory cannot record it: %s", c->number,
		    inv_strerror(rc));
		due_now(p, c->id, 0); /* the next round finishes it (unassign is idempotent) */
		manual_fail(c, "Teams made the change; the inventory could not record it yet");
		return;
	}
	ev_release(
	    p, NULL, c->upn, c->id, c->number, c->range, "administrator", "administrator", &n);
	if ((had = user_load(p, c->id, &u)) >= 0) {
		ev_user(NPE_HOLD, &u, NULL, NULL, "administrator");
		if (had == 0 && (u.flags & (USER_F_UNASSIGN | USER_F_DUE))) {
			u.flags &= (uint8_t) ~(USER_F_UNASSIGN | USER_F_DUE);
			if (user_store(p, &u, u.state) != INV_OK)
				log_warnx("provision",
				    "cannot record that the unassign of %s is done; "
				    "the next round sees it done",
				    c->upn);
		}
		user_clear(&u);
	}
	idmap_del(&p->due, c->id);
	reply(c, 1, NULL, c->number);
	change_done(c);
}

int
prov_manual_unassign(
    struct prov *p, const char *key, prov_reply cb, void *arg, char *err, size_t errlen)
{
	char kbuf[KEY_ECHO];
	struct inv_user held;
	struct inv_number n;
	struct change *c;
	struct user u;
	int known = resolve_user(p, key, &u) == 0;

	err[0] = '\0';
	if (!known) {
		user_clear(&u);
		if (inv_get_user(p->inv, key, &held) != INV_OK) {
			snprintf(err, errlen, "unknown user '%s'", echo_key(key, kbuf));
			return -1;
		}
		user_init(&u, key);
		snprintf(u.upn, sizeof(u.upn), "%s", held.upn);
	}
	if (idmap_get(&p->busy, u.id) || u.change_new[0]) {
		snprintf(err, errlen, "a change for %s is in flight; try again after the next sync",
		    u.upn);
		user_clear(&u);
		return -7;
	}
	if (inv_get_user(p->inv, u.id, &held) != INV_OK && u.state == US_HELD) {
		snprintf(err, errlen, "%s holds no number", u.upn[0] ? u.upn : key);
		user_clear(&u);
		return -1;
	}
	if (inv_get_user(p->inv, u.id, &held) != INV_OK) {
		/* no number: held from now on, so the cycle gives them none */
		int old = u.state, rc;
		u.state = US_HELD;
		u.flags &= (uint8_t) ~(USER_F_DUE | USER_F_UNASSIGN);
		rc = user_store(p, &u, known ? old : -1);
		if (rc != INV_OK) {
			snprintf(err, errlen, "cannot record the hold: %s", inv_strerror(rc));
			user_clear(&u);
			return -5;
		}
		ev_user(NPE_HOLD, &u, NULL, NULL, "administrator");
		idmap_del(&p->due, u.id);
		user_clear(&u);
		{
			cJSON *o = cJSON_CreateObject();
			cJSON_AddBoolToObject(o, "ok", 1);
			cJSON_AddStringToObject(o, "state", user_state_name(US_HELD));
			cb(o, arg);
		}
		return 0;
	}
	if (held.state != INV_ASSIGNED) {
		snprintf(err, errlen,
		    "%s has an unsettled assignment of %s; try again after the next "
		    "sync",
		    u.upn, held.number);
		user_clear(&u);
		return -7;
	}
	/*
	 * The hold is recorded first: a crash before Teams answers leaves a held user
	 * with a number, whose unassign the next round carries out (decide.c).
	 */
	{
		int old = u.state, rc;
		if (known) {
			/* held, with the unassign still to do: a restart carries it out */
			u.state = US_HELD;
			u.flags |= USER_F_UNASSIGN | USER_F_DUE;
			if ((rc = user_store(p, &u, old)) != INV_OK) {
				snprintf(
				    err, errlen, "cannot record the hold: %s", inv_strerror(rc));
				user_clear(&u);
				return -5;
			}
		}
		if (!(c = change_new(p, NULL, u.id))) {
			user_clear(&u);
			snprintf(err, errlen, "out of memory");
			return -5;
		}
		c->step = old == US_HELD ? US_ASSIGNED : old;
		c->old_flags = (uint8_t)(u.flags & ~(USER_F_UNASSIGN | USER_F_DUE));
	}
	c->reply = cb;
	c->reply_arg = arg;
	snprintf(c->upn, sizeof(c->upn), "%s", u.upn);
	snprintf(c->number, sizeof(c->number), "%s", held.number);
	if (inv_get_number(p->inv, held.number, &n) == INV_OK)
		snprintf(c->range, sizeof(c->range), "%s", n.range);
	user_clear(&u);
	if (idmap_put(&p->inflight, c->number, 0, NULL) < 0)
		log_warnx("provision", "out of memory");
	if (teams_unassign(p->graph, c->number, number_type_of(p, c->range), manual_unassigned, c)
	    < 0) {
		idmap_del(&p->inflight, c->number);
		manual_unassigned(&(struct teams_result) { .refused = 1,
				      .error = "internal",
				      .detail = "cannot send the change to Teams" },
		    c);
	}
	return 0;
}

int
prov_manual_auto(struct prov *p, const char *key, char *err, size_t errlen)
{
	char kbuf[KEY_ECHO];
	struct inv_user held;
	struct user u;
	int old, rc;

	err[0] = '\0';
	if (resolve_user(p, key, &u) < 0) {
		user_clear(&u);
		snprintf(err, errlen, "unknown user '%s'", echo_key(key, kbuf));
		return -1;
	}
	if (idmap_get(&p->busy, u.id)
	    || ((u.flags & USER_F_UNASSIGN) && inv_get_user(p->inv, u.id, &held) == INV_OK)) {
		snprintf(err, errlen,
		    "the unassign of %s is still in flight; try again after the next "
		    "sync",
		    u.upn);
		user_clear(&u);
		return -2;
	}
	if (u.state != US_HELD) {
		snprintf(err, errlen, "%s is not held (state %s): nothing to do", u.upn,
		    user_state_name((enum user_state)u.state));
		user_clear(&u);
		return -2;
	}
	old = u.state;
	u.state = US_NEW;
	u.flags = (uint8_t)((u.flags & ~USER_F_UNASSIGN) | USER_F_DUE);
	u.retry_at = 0;
	u.backoff = 0;
	if ((rc = user_store(p, &u, old)) != INV_OK) {
		snprintf(err, errlen, "cannot record it: %s", inv_strerror(rc));
		user_clear(&u);
		return -5;
	}
	ev_user(NPE_AUTO, &u, NULL, NULL, "administrator");
	due_now(p, u.id, 0); /* the next round decides, as for any user */
	user_clear(&u);
	return 0;
}
