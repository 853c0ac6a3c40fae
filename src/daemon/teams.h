/*
 * Graph calls about the tenant: the users delta round, subscribed SKUs, Teams
 * telephone numbers (list, assign, unassign with operation polling), user
 * configurations and voice routing policies. All asynchronous, on struct graph.
 */
#ifndef NUMPROV_TEAMS_H
#define NUMPROV_TEAMS_H

#include <stddef.h>

#include "config.h"
#include "directory.h"
#include "e164.h"
#include "graph.h"

struct teams_result;

/* ---- users delta -------------------------------------------------------- */

enum delta_status { DELTA_OK, DELTA_ERROR };

struct delta_done {
	enum delta_status status;
	int full;		/* this round was a full sync (no link, or the link was refused) */
	const char *delta_link; /* to store once the round's changes are recorded */
	size_t pages, users, removed;
	char error[400];
};

/* A page: the callback owns nothing; the page is freed after it returns. */
typedef void (*delta_page_cb)(const struct dir_page *p, int full, void *arg);
typedef void (*delta_done_cb)(const struct delta_done *d, void *arg);

/*
 * One round: from delta_link (NULL or "" for a full sync) following every
 * nextLink. An expired or refused link (410, syncStateNotFound, resyncRequired)
 * starts a full sync by itself, reported with full = 1.
 */
int teams_delta(
    struct graph *g, const char *delta_link, delta_page_cb page, delta_done_cb done, void *arg);

/* ---- numbers ------------------------------------------------------------ */

/* enum teams_number_type (Graph's numberType) is in config.h, beside the range types. */

struct teams_number {
	char number[E164_STRLEN]; /* canonical */
	enum teams_number_type type;
	char target[64];     /* assignmentTargetId, "" when unassigned */
	char activation[32]; /* activated, assignmentPending, ... */
	char status[32];     /* assignmentStatus: unassigned, userAssigned, ... */
	char location_id[64];
};

const char *teams_type_name(enum teams_number_type t); /* Graph's spelling: directRouting */

/* Parse a numberAssignments page; returns the count (entries that fail to parse are skipped), -1 if
 * not a page. */
int teams_parse_numbers(const char *json, size_t len, struct teams_number **out, char **next_link);
/* The same, also saying how many entries the page held (read or not). */
int teams_parse_numbers_ex(
    const char *json, size_t len, struct teams_number **out, char **next_link, size_t *entries);

typedef void (*numbers_page_cb)(const struct teams_number *v, size_t n, void *arg);
typedef void (*numbers_done_cb)(int ok, size_t total, const char *error, void *arg);
/* Every number of the tenant, $top=1000 pages with $skip (or nextLink when given). */
int teams_list_numbers(struct graph *g, numbers_page_cb page, numbers_done_cb done, void *arg);

/* One number as Teams has it ($filter=telephoneNumber eq); found = 0 when Teams has none. */
typedef void (*number_cb)(
    const struct teams_result *r, const struct teams_number *n, int found, void *arg);
int teams_find_number(struct graph *g, const char *number, number_cb cb, void *arg);

/*
 * The numbers Teams shows on a user: numberAssignments?$filter=assignmentTargetId eq
 * '<user_id>' (following nextLink when given). Teams may replace a user's number on
 * assignNumber, so ask this before assigning. user_id is an object id: 1 to 63 of
 * [0-9A-Za-z-], anything else returns -1 without a request or a callback. The callback
 * gets r->ok = 0 on failure (r->status, r->error, r->detail say why; n = 0), otherwise
 * the user's numbers (n = 0: Teams shows none). Only entries whose assignmentTargetId is
 * user_id (compared case-insensitively) are reported; numbers is freed after the call.
 */
typedef void (*user_numbers_cb)(
    const struct teams_result *r, const struct teams_number *numbers, size_t n, void *arg);
int teams_user_numbers(struct graph *g, const char *user_id, user_numbers_cb cb, void *arg);
/* The same with graph flags: GRAPH_LATER for a round's first look at a user. */
int teams_user_numbers_flags(
    struct graph *g, const char *user_id, unsigned gflags, user_numbers_cb cb, void *arg);

/* Operation of an assign/unassign: {"status", "numbers":[{"status","statusDetail"}]}. */
enum teams_op_status { TOP_RUNNING, TOP_SUCCEEDED, TOP_FAILED, TOP_UNKNOWN };
enum teams_op_status teams_parse_operation(
    const char *json, size_t len, char *detail, size_t detaillen);

struct teams_result {
	int ok;
	long status;	  /* HTTP status of the call that decided */
	char error[64];	  /* Graph error code, "failed" for a failed operation */
	char detail[320]; /* statusDetail or the error message */
	char client_request_id[37];
	int resent;  /* how many times the POST was sent again after checking */
	int refused; /* Teams said no (the POST refused, or the operation failed):
			nothing was done. Otherwise a failure leaves it unknown. */
};
typedef void (*teams_cb)(const struct teams_result *r, void *arg);

struct teams_tuning {
	int poll_first_ms; /* first operation poll (500); doubles */
	int poll_cap_ms;   /* longest wait between polls (30000) */
	int poll_max;	   /* polls before giving up (40) */
};
void teams_tune(const struct teams_tuning *t);

/* Assign number to user; location_id may be NULL. Succeeds once Teams reports it done. */
int teams_assign(struct graph *g, const char *user_id, const char *number,
    enum teams_number_type type, const char *location_id, teams_cb cb, void *arg);
int teams_unassign(
    struct graph *g, const char *number, enum teams_number_type type, teams_cb cb, void *arg);

/* ---- users' Teams side, policies, SKUs ---------------------------------- */

struct teams_user_config {
	int enterprise_voice;
	char numbers[4][E164_STRLEN];
	size_t n_numbers;
	char features[160]; /* featureTypes joined with ',' */
};
typedef void (*userconfig_cb)(
    const struct teams_result *r, const struct teams_user_config *c, void *arg);
int teams_user_config(struct graph *g, const char *user_id, userconfig_cb cb, void *arg);

/* getPolicyId(type, name) then userAssignments/assign for the user. */
int teams_assign_policy(struct graph *g, const char *user_id, const char *policy_type,
    const char *policy_name, teams_cb cb, void *arg);

/* GET /subscribedSkus into the licensing table. */
int teams_load_skus(struct graph *g, struct dir_licensing *l, teams_cb cb, void *arg);

#endif
