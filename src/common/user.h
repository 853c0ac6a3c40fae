/*
 * One user as numprovd knows them: the directory attributes the rules read,
 * the licence class, and where provisioning stands for them. The same struct
 * is built from a Graph page, stored in the inventory (user_encode /
 * user_decode, a versioned binary record: docs/record-format.md), decided on
 * (decide.h) and shown by numprovctl (user_to_json, a view, not the storage).
 */
#ifndef NUMPROV_USER_H
#define NUMPROV_USER_H

#include <stddef.h>
#include <stdint.h>

#include "inventory.h"
#include "rule.h"

struct cJSON;
struct dir_user;
struct dir_licence;

/* Where provisioning stands for a user. Stored: never renumber, only append. */
enum user_state {
	US_NEW = 0,	/* seen, not decided yet */
	US_UNLICENSED,	/* no Teams Phone licence */
	US_DISABLED,	/* account disabled */
	US_ASSIGNING,	/* a number is written ahead and Teams was asked */
	US_ASSIGNED,	/* holds a number of ours */
	US_WAITING,	/* Teams refused for now (licence not visible yet): retried later */
	US_NO_MATCH,	/* no range's rule holds */
	US_RANGES_FULL, /* every matching range is full */
	US_HELD,	/* an administrator unassigned them: no automatic number */
	US_EXTERNAL,	/* holds a number in Teams outside every range of ours */
	US_GONE,	/* deleted from the directory; their number is still to be released */
	US__MAX
};

/* What a round still has to do for the user: stored with the page that brought it. */
#define USER_F_DUE 0x01	  /* a change not acted on yet */
#define USER_F_MOVED 0x02 /* city, office or usage location changed: a retained move to log */
#define USER_F_CHANGE_RESERVED 0x04 /* the change of number reserved change_new itself */
#define USER_F_UNASSIGN 0x08	    /* an administrator's unassign, not carried out in Teams yet */

#define USER_RECORD_VERSION 1
#define USER_NAME_MAX 256

struct user {
	char id[INV_ID_MAX];
	char upn[INV_UPN_MAX];
	char name[USER_NAME_MAX];
	int8_t enabled; /* 1 or 0 */
	uint8_t teams_phone, calling_plan;
	uint8_t state;	     /* enum user_state */
	uint8_t flags;	     /* USER_F_* */
	uint32_t backoff;    /* seconds of the last wait before a retry */
	int64_t retry_at;    /* not before this time (0: now) */
	char *attr[RA__MAX]; /* owned; NULL when empty */
	/* an administrator's change of number in flight (written ahead; "" none) */
	char change_old[E164_STRLEN], change_new[E164_STRLEN];
};

void user_init(struct user *u, const char *id);
void user_clear(struct user *u); /* frees the attributes */
int user_copy(struct user *dst, const struct user *src);
const char *user_state_name(enum user_state s);
/* The attributes as the rules see them (pointers into u). */
void user_attrs(const struct user *u, struct rule_attrs *out);

/*
 * A user from a delta page, over what was known of them (old, or NULL): the
 * page's fields replace the old ones, state and retry schedule stay. Sets
 * USER_F_MOVED when city, office or usage location changed. Returns -1 when
 * out of memory (u is then cleared).
 */
int user_from_dir(
    struct user *u, const struct user *old, const struct dir_user *d, const struct dir_licence *l);

/* The stored record. encode: *out malloc'd. decode: -1 on a record it cannot read. */
int user_encode(const struct user *u, unsigned char **out, size_t *len);
int user_decode(const char *id, const void *rec, size_t len, struct user *u);

/* The view numprovctl shows (attributes, licence class, state). */
struct cJSON *user_to_json(const struct user *u);

#endif
