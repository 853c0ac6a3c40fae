/*
 * The provisioning cycle: directory changes from Graph -> decisions -> number
 * reserved in the inventory (committed) -> assigned in Teams -> confirmed ->
 * syslog. Releases run the same way backwards. One cycle at a time, on the
 * daemon's event loop.
 */
#ifndef NUMPROV_PROVISION_H
#define NUMPROV_PROVISION_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct event_base;
struct graph;
struct inventory;
struct prov;
struct cJSON;

enum prov_result { PR_NEVER, PR_SUCCESS, PR_PARTIAL, PR_FAILED };

struct prov_stats {
	int running;
	enum prov_result last_result;
	time_t last_start, last_end, next_at;
	long last_duration_ms;
	char last_error[256];
	unsigned long syncs, failures, assignments, releases, assign_failures, drift;
	unsigned long users_tracked, users_pending, users_unmatched;
	int last_full;
};

struct prov *prov_new(
    struct event_base *base, struct config *cfg, struct inventory *inv, struct graph *graph);
void prov_free(struct prov *p);
/* A new config after SIGHUP (already tested and applied to the inventory). */
void prov_set_config(struct prov *p, struct config *cfg);
/* Start the timers; the first cycle is a full one. */
void prov_start(struct prov *p);
/* Sync now (SIGUSR1, numprovctl sync, SNMP): starts within a second. */
void prov_trigger(struct prov *p, int full);
/* Stop starting work; done is called once nothing is in flight. */
void prov_drain(struct prov *p, void (*done)(void *arg), void *arg);
void prov_get_stats(struct prov *p, struct prov_stats *out);

/* ---- for the control socket --------------------------------------------- */

typedef void (*prov_reply)(struct cJSON *reply, void *arg); /* takes the reply */

/* The decision for one user, explained (numprovctl user / plan). */
struct cJSON *prov_explain_user(struct prov *p, const char *id_or_upn);
/* What the next cycle would do for every known user, changing nothing. */
struct cJSON *prov_plan(struct prov *p);
/* numprovctl assign / unassign: in Teams and the inventory; reply when done. */
/*
 * They return 0 and reply through cb later, or a negative code with err filled
 * and no reply: -1 unknown user, -2 bad number, -3 in no range, -4 held by
 * someone else, -5 cannot record or send, -6 does not suit the user's licence
 * (assign without force), -7 a change for the user is in flight.
 * assign: the new number first, the old one restored if Teams refuses it.
 * unassign: the user is then held without a number until assign or auto.
 */
int prov_manual_assign(struct prov *p, const char *id_or_upn, const char *number, int force,
    prov_reply cb, void *arg, char *err, size_t errlen);
int prov_manual_unassign(
    struct prov *p, const char *id_or_upn, prov_reply cb, void *arg, char *err, size_t errlen);
/* numprovctl auto: a held user back to automatic assignment (0, or -1/-2/-5 with err). */
int prov_manual_auto(struct prov *p, const char *id_or_upn, char *err, size_t errlen);
/* Users known to the directory, filtered ("pending", "unmatched" or NULL). */
struct cJSON *prov_users(struct prov *p, const char *filter);

#endif
