/*
 * The decision for one user, without side effects: given what the directory
 * says of them (struct user), what the inventory holds for them and the
 * configuration, what is to be done. The cycle, `numprovctl plan` and
 * `numprovctl user` all call decide(), so they cannot disagree. The table of
 * behaviours it implements is docs/decisions.md.
 */
#ifndef NUMPROV_DECIDE_H
#define NUMPROV_DECIDE_H

#include <stddef.h>
#include <time.h>

#include "config.h"
#include "inventory.h"
#include "user.h"

#define DECIDE_MAX_CAND 64

enum action {
	ACT_NOTHING,   /* nothing to do (reason says why) */
	ACT_ASSIGN,    /* allocate from the candidate ranges, in order, and assign in Teams */
	ACT_CHECK,     /* would assign: first ask Teams whether the user holds a number */
	ACT_ADOPT,     /* Teams shows a number of ours on the user: record it as theirs */
	ACT_RELEASE,   /* unassign in Teams and give the number back */
	ACT_RETAIN,    /* keeps the number; logged once (disabled, moved) */
	ACT_WAIT,      /* not before `until` */
	ACT_UNMATCHED, /* no range's rule holds */
	ACT_FORGET,    /* a deleted user without a number: drop the record */
	ACT_SETTLE,    /* an administrator's change of number was cut short: settled from Teams */
};

enum reason {
	RSN_NONE,
	RSN_DELETED,
	RSN_UNLICENSED,
	RSN_DISABLED,
	RSN_MOVED,
	RSN_HAS_NUMBER, /* holds a number of ours */
	RSN_PENDING,	/* an assignment is unsettled: settled from Teams first */
	RSN_HELD,	/* an administrator unassigned them */
	RSN_ADMIN,	/* an administrator's unassign, still to be carried out */
	RSN_CHANGE,	/* an administrator's change of number, in flight */
	RSN_MODE_OFF,	/* sync.mode off */
	RSN_POLICY,	/* the policy keeps the number (release_on_* = false) */
	RSN_RETRY,	/* waiting for a retry after a refusal */
	RSN_NO_MATCH,
	RSN_EXTERNAL, /* holds a number in Teams outside every range */
	RSN_NEW,      /* a licensed user without a number */
};

struct decision {
	enum action act;
	enum reason reason;
	time_t until;	    /* ACT_WAIT */
	const char *number; /* ACT_ADOPT, ACT_RELEASE, ACT_RETAIN */
	size_t n_cand;	    /* ACT_ASSIGN, ACT_CHECK: ranges to try, in order */
	const struct cfg_range *cand[DECIDE_MAX_CAND];
};

/*
 * held: the user's number in the inventory, or NULL. teams: what Teams shows
 * on the user when it was read this cycle (NULL: not read; "" none; else the
 * number). automatic: 0 for sync.mode off.
 */
void decide(const struct config *cfg, const struct user *u, const struct inv_user *held,
    const char *teams, time_t now, struct decision *out);

const char *action_name(enum action a);
const char *reason_name(enum reason r);

/* ---- range types: one table ---------------------------------------------- */

/* Graph's numberType for a range type. */
enum teams_number_type range_type_graph(enum range_type t);
/* Whether a number of this range type suits a user of this licence class. */
int range_type_suits(enum range_type t, int calling_plan);
/* The range of the config holding number (NULL: none). */
const struct cfg_range *range_of_number(const struct config *cfg, const char *number);
/* Candidate ranges for the user: licence class, rule, then priority and config order. */
size_t decide_candidates(
    const struct config *cfg, const struct user *u, const struct cfg_range **out, size_t max);

#endif
