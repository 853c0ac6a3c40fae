#include "build-config.h"

#include "decide.h"

#include <string.h>

#include "e164.h"
#include "rule.h"

static const struct {
	enum range_type type;
	enum teams_number_type graph;
	int calling_plan; /* the licence class the range serves */
} range_types[] = {
	{ RT_CALLING_PLAN, TNT_CALLING_PLAN, 1 },
	{ RT_OPERATOR_CONNECT, TNT_OPERATOR_CONNECT, 0 },
	{ RT_DIRECT_ROUTING, TNT_DIRECT_ROUTING, 0 },
};

enum teams_number_type
range_type_graph(enum range_type t)
{
	for (size_t i = 0; i < sizeof(range_types) / sizeof(range_types[0]); i++)
		if (range_types[i].type == t)
			return range_types[i].graph;
	return TNT_DIRECT_ROUTING;
}

int
range_type_suits(enum range_type t, int calling_plan)
{
	for (size_t i = 0; i < sizeof(range_types) / sizeof(range_types[0]); i++)
		if (range_types[i].type == t)
			return range_types[i].calling_plan == (calling_plan != 0);
	return 0;
}

const struct cfg_range *
range_of_number(const struct config *cfg, const char *number)
{
	struct e164 n;
	uint64_t off;
	char err[160];

	if (!number || e164_parse(number, &n, err, sizeof(err)) < 0)
		return NULL;
	for (size_t i = 0; i < cfg->n_ranges; i++)
		if (e164_range_contains(&cfg->ranges[i].span, &n, &off))
			return &cfg->ranges[i];
	return NULL;
}

size_t
decide_candidates(
    const struct config *cfg, const struct user *u, const struct cfg_range **out, size_t max)
{
	struct rule_attrs a;
	size_t n = 0;

	user_attrs(u, &a);
	for (size_t i = 0; i < cfg->n_ranges && max > 0; i++) {
		const struct cfg_range *r = &cfg->ranges[i];
		size_t j;

		if (!range_type_suits(r->type, u->calling_plan))
			continue;
		if (r->match && !rule_eval(r->match, &a))
			continue;
		/* kept sorted by priority, config order among equals; the best max kept */
		if (n == max && out[n - 1]->priority <= r->priority)
			continue;
		if (n < max)
			n++;
		for (j = n - 1; j > 0 && out[j - 1]->priority > r->priority; j--)
			out[j] = out[j - 1];
		out[j] = r;
	}
	return n;
}

static void
set(struct decision *d, enum action a, enum reason r)
{
	d->act = a;
	d->reason = r;
}

void
decide(const struct config *cfg, const struct user *u, const struct inv_user *held,
    const char *teams, time_t now, struct decision *d)
{
	int automatic = cfg->sync.mode != SYNC_OFF;

	memset(d, 0, sizeof(*d));
	d->number = held ? held->number : NULL;
	if (u->change_new[0]) {
		/* written ahead by `numprovctl assign`: Teams says how far it got */
		set(d, ACT_SETTLE, RSN_CHANGE);
		d->number = u->change_new;
	} else if (held && held->state == INV_PENDING) {
		/* unsettled: settled from Teams' numberAssignments before anything else */
		set(d, ACT_NOTHING, RSN_PENDING);
	} else if (u->state == US_GONE) {
		if (!held)
			set(d, ACT_FORGET, RSN_DELETED);
		else if (automatic && cfg->policy.release_on_delete)
			set(d, ACT_RELEASE, RSN_DELETED);
		else
			set(d, ACT_NOTHING, automatic ? RSN_POLICY : RSN_MODE_OFF);
	} else if (u->state == US_HELD && (!held || (u->flags & USER_F_UNASSIGN))) {
		/* the administrator's hold outlasts licence and account changes (B11) */
		if (held)
			set(d, ACT_RELEASE, RSN_ADMIN); /* an unassign cut short: carried out */
		else
			set(d, ACT_NOTHING, RSN_HELD);
		/* held with a number and no unassign pending: an assign that was cut short
		   before the hold was lifted; decided as any user with a number */
	} else if (!u->teams_phone) {
		if (held && automatic && cfg->policy.release_on_unlicense)
			set(d, ACT_RELEASE, RSN_UNLICENSED);
		else
			set(d, ACT_NOTHING, RSN_UNLICENSED);
	} else if (!u->enabled) {
		if (held && automatic && cfg->policy.release_on_disable)
			set(d, ACT_RELEASE, RSN_DISABLED);
		else if (held && u->state != US_DISABLED)
			set(d, ACT_RETAIN, RSN_DISABLED);
		else
			set(d, ACT_NOTHING, RSN_DISABLED);
	} else if (held) {
		if (u->flags & USER_F_MOVED)
			set(d, ACT_RETAIN, RSN_MOVED);
		else
			set(d, ACT_NOTHING, RSN_HAS_NUMBER);
	} else if (!automatic) {
		set(d, ACT_NOTHING, RSN_MODE_OFF);
	} else if (teams && *teams) {
		/* Teams shows a number on them: never a second one (B10) */
		d->number = teams;
		if (range_of_number(cfg, teams))
			set(d, ACT_ADOPT, RSN_HAS_NUMBER);
		else
			set(d, ACT_NOTHING, RSN_EXTERNAL);
	} else if (u->state == US_EXTERNAL && !teams) {
		/* looked at again when Teams is read (full sync, or the check before an assignment)
		 */
		set(d, ACT_CHECK, RSN_EXTERNAL);
	} else if (u->retry_at > now) {
		set(d, ACT_WAIT, RSN_RETRY);
		d->until = (time_t)u->retry_at;
	} else {
		d->n_cand = decide_candidates(cfg, u, d->cand, DECIDE_MAX_CAND);
		if (d->n_cand == 0)
			set(d, ACT_UNMATCHED, RSN_NO_MATCH);
		else
			set(d, teams ? ACT_ASSIGN : ACT_CHECK, RSN_NEW);
	}
	if (d->act == ACT_CHECK && d->n_cand == 0)
		d->n_cand = decide_candidates(cfg, u, d->cand, DECIDE_MAX_CAND);
}

const char *
action_name(enum action a)
{
	switch (a) {
	case ACT_NOTHING:
		return "none";
	case ACT_ASSIGN:
		return "assign";
	case ACT_CHECK:
		return "assign";
	case ACT_ADOPT:
		return "adopt";
	case ACT_RELEASE:
		return "release";
	case ACT_RETAIN:
		return "retain";
	case ACT_WAIT:
		return "wait";
	case ACT_UNMATCHED:
		return "unmatched";
	case ACT_FORGET:
		return "forget";
	case ACT_SETTLE:
		return "settle";
	}
	return "?";
}

const char *
reason_name(enum reason r)
{
	static const char *const names[] = {
		[RSN_NONE] = "",
		[RSN_DELETED] = "deleted",
		[RSN_UNLICENSED] = "unlicensed",
		[RSN_DISABLED] = "disabled",
		[RSN_MOVED] = "moved",
		[RSN_HAS_NUMBER] = "has-number",
		[RSN_PENDING] = "pending",
		[RSN_HELD] = "held-by-administrator",
		[RSN_ADMIN] = "administrator",
		[RSN_CHANGE] = "change-of-number",
		[RSN_MODE_OFF] = "mode-off",
		[RSN_POLICY] = "policy",
		[RSN_RETRY] = "retry",
		[RSN_NO_MATCH] = "no-match",
		[RSN_EXTERNAL] = "number-outside-ranges",
		[RSN_NEW] = "new",
	};
	return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}
