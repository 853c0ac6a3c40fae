/*
 * The directory as numprovd sees it: users from Graph's users/delta pages
 * (cJSON -> struct) and their licence class (Teams Phone, Calling Plan).
 */
#ifndef NUMPROV_DIRECTORY_H
#define NUMPROV_DIRECTORY_H

#include <stddef.h>

#include "rule.h"

#define DIR_GUID_LEN 36

enum dir_removed { DIR_PRESENT = 0, DIR_REMOVED_CHANGED, DIR_REMOVED_DELETED };

struct dir_plan {
	char service_plan_id[DIR_GUID_LEN + 1]; /* lower case */
	char capability[16]; /* Enabled, Warning, Suspended, LockedOut, Deleted */
};

/* A page's users and everything they point to belong to the page (dir_page_free). */
struct dir_user {
	char *id;
	char *upn; /* the same string as attr[RA_UPN] */
	char *display_name;
	int account_enabled; /* 1, 0, or -1 when the page did not say */
	enum dir_removed removed;
	char *attr[RA__MAX]; /* the rule attributes; NULL when missing or null */
	int has_plans;	     /* assignedPlans was in the page */
	struct dir_plan *plans;
	size_t n_plans;
};

struct dir_page {
	struct dir_user *users;
	size_t n_users;
	char *next_link;  /* more pages of this round */
	char *delta_link; /* the round is complete */
	size_t skipped;	  /* entries that were not user objects (no id) */
};

/* The $select of the first delta request: every attribute rules and licences use. */
const char *dir_select(void);

/*
 * Parse one users/delta page. Missing fields, nulls and wrong types leave the
 * field unset; an entry without an id is skipped and counted. Returns 0, or -1
 * with a reason in err when the body is not a JSON object with a value array.
 */
int dir_parse_page(const char *json, size_t len, struct dir_page *out, char *err, size_t errlen);
/* Frees the users, their strings and plans, and the links, all at once. */
void dir_page_free(struct dir_page *p);

/* The user's attributes as the rules see them (pointers into u). */
void dir_user_attrs(const struct dir_user *u, struct rule_attrs *out);

/* ---- licences ----------------------------------------------------------- */

enum dir_plan_class { DIR_PLAN_OTHER = 0, DIR_PLAN_TEAMS_PHONE, DIR_PLAN_CALLING_PLAN };

struct dir_licensing;

/* Built-in service plan GUIDs (MCOEV, MCOPSTN1/2/5, ...; credits are no plan). */
struct dir_licensing *dir_licensing_new(void);
void dir_licensing_free(struct dir_licensing *l);
/* Extra GUIDs named in the config. Returns -1 when guid is not a GUID. */
int dir_licensing_add(struct dir_licensing *l, const char *guid, enum dir_plan_class c);
struct config;
/* The built-in table plus the config's licensing.teams_phone and .calling_plan. */
struct dir_licensing *dir_licensing_from_config(const struct config *cfg);
/*
 * Plan names from GET /subscribedSkus: MCOEV* (not the virtual user plan) are
 * Teams Phone, MCOPSTN* calling plans except communication credits. Returns how
 * many plans were learnt, or -1 when the body does not parse.
 */
int dir_licensing_load_skus(struct dir_licensing *l, const char *json, size_t len);
enum dir_plan_class dir_licensing_class(const struct dir_licensing *l, const char *guid);
/* The plan's name when known ("MCOEV"), else NULL. */
const char *dir_licensing_name(const struct dir_licensing *l, const char *guid);

struct dir_licence {
	int teams_phone;  /* a Teams Phone plan Enabled or in Warning (grace) */
	int calling_plan; /* a real Calling Plan Enabled or in Warning */
};

void dir_classify(const struct dir_licensing *l, const struct dir_user *u, struct dir_licence *out);

#endif
