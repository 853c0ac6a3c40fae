/*
 * The number inventory: one Berkeley DB transactional environment under
 * database.path. Every state change is one transaction.
 *
 * Only numbers that are not available have a record, so storage grows with
 * the numbers in use, not with range size. Records are stored in an explicit
 * encoding (record format 2, inventory.c), not as the structs below. Each
 * range also has an occupancy tree (64-way bitmaps of "not available", absent
 * nodes being all free) that finds the lowest free number in O(log64 n) steps
 * at any fill level; the tree and the per-range counts are built from the
 * number records when the inventory is opened and kept in memory, in step with
 * every committed transaction, so they cannot disagree with the records.
 */
#ifndef NUMPROV_INVENTORY_H
#define NUMPROV_INVENTORY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "e164.h"

/* A state-changing call whose result must be looked at. */
#define NP_MUST_CHECK __attribute__((warn_unused_result))

#define INV_ID_MAX 64 /* Entra object id (GUID) and room to spare */
#define INV_UPN_MAX 256

enum inv_state {
	INV_AVAILABLE = 0, /* no record */
	INV_RESERVED,
	INV_PENDING, /* allocated to a user, assignment in Teams not confirmed yet */
	INV_ASSIGNED,
	INV_QUARANTINED,
	INV__STATES
};

enum inv_err {
	INV_OK = 0,
	INV_E_NOTFOUND, /* no such number record / user / range */
	INV_E_FULL,	/* no free number in the range */
	INV_E_TAKEN,	/* the number is held (assigned, pending, reserved...) */
	INV_E_USER_HAS, /* the user already holds another number */
	INV_E_STATE,	/* the number is not in the state the operation needs */
	INV_E_NORANGE,	/* the number lies in no known range */
	INV_E_LOCKED,	/* another numprovd holds the database */
	INV_E_CONFIG,	/* reserved by the config file: only the config can lift it */
	INV_E_DB,	/* Berkeley DB failed; see the log */
};

#define INV_NF_CONFIG 0x01 /* reserved because the config lists it */

struct inv_number {
	char number[E164_STRLEN];
	uint8_t state;
	uint8_t flags;
	int64_t since; /* when it entered this state */
	int64_t until; /* end of quarantine */
	char user_id[INV_ID_MAX];
	char range[RANGE_NAME_MAX + 1]; /* range it was counted in; "" if none */
};

struct inv_user {
	char id[INV_ID_MAX];
	char upn[INV_UPN_MAX];
	char number[E164_STRLEN];
	uint8_t state; /* INV_PENDING or INV_ASSIGNED */
	int64_t since;
};

struct inv_range {
	char name[RANGE_NAME_MAX + 1];
	uint32_t index;	 /* stable across restarts and reloads: the SNMP table index */
	uint8_t type;	 /* enum range_type */
	uint8_t removed; /* no longer in the config; keeps its numbers */
	char provider[64];
	char first[E164_STRLEN], last[E164_STRLEN];
	uint64_t size;
	uint64_t count[INV__STATES]; /* count[INV_AVAILABLE] is derived: size - the rest */
};

struct inventory;

enum {
	INV_OPEN_READONLY = 1, /* join a running daemon's environment, no lock, no recovery */
	INV_OPEN_NOSYNC = 2
}; /* commits do not wait for the disk (tests, benchmarks) */

/*
 * Region memory is allocated in full when the environment is created, so that a
 * full disk is an error from the write that needs the space (INV_E_DB, logged as
 * "no space left on device"), never a SIGBUS inside Berkeley DB. The fixed sizes:
 * a 4 MB cache, up to 100,000 locks and lock objects, 1,000 lockers, a 256 KB
 * log buffer and a 1 MB log region: about 45 MB of region files (INV_REGION_BYTES
 * bounds them), allocated on the disk by inv_open, which refuses to create the
 * environment with less than that free. Only what is used is in memory.
 */
#define INV_REGION_BYTES (52L * 1024 * 1024)

/* Open (creating if needed) with recovery; refuses a second instance (INV_E_LOCKED). */
int inv_open(const char *path, int flags, struct inventory **out, char *err, size_t errlen);
void inv_close(struct inventory *inv);
/*
 * Write pid into the lock file (a second numprovd is refused naming it). The
 * lock passes to a child across fork(); the child, once the parent has gone,
 * names itself here. INV_E_DB on a read-only inventory or a failed write.
 */
int inv_lock_set_pid(struct inventory *inv, long pid);
const char *inv_strerror(int e);
const char *inv_state_name(int state);

/*
 * Berkeley DB returned DB_RUNRECOVERY: the environment panicked and nothing in it
 * works until it is opened again with recovery. The handler is told what failed.
 * The default logs "inventory: Berkeley DB needs recovery (...): exiting; recovery
 * runs at the next start" at LOG_CRIT and exits with INV_EXIT_RECOVER (EX_SOFTWARE),
 * so that the service manager restarts numprovd and inv_open recovers. A handler
 * that returns makes the failed call return INV_E_DB. NULL restores the default.
 * (A reader beside a running numprovd, INV_OPEN_READONLY, only logs it.)
 */
#define INV_EXIT_RECOVER 70
typedef void (*inv_panic_fn)(const char *what, void *arg);
void inv_set_panic_handler(inv_panic_fn fn, void *arg);

/*
 * Make the stored ranges agree with the config: new ranges get a stable index,
 * changed bounds rebuild the occupancy tree and counts from the records, ranges
 * no longer configured are kept (removed = 1) with their numbers, config
 * reservations are applied (and lifted when no longer listed).
 */
int inv_sync_ranges(struct inventory *inv, const struct config *cfg, time_t now) NP_MUST_CHECK;

/* Lowest free number of a range, pending for the user (one transaction). */
int inv_allocate(struct inventory *inv, const char *range, const char *user_id, const char *upn,
    time_t now, struct inv_number *out) NP_MUST_CHECK;
/* Teams confirmed: pending -> assigned. */
int inv_confirm(
    struct inventory *inv, const char *number, const char *user_id, time_t now) NP_MUST_CHECK;
/* Teams refused: pending -> available. */
int inv_fail(struct inventory *inv, const char *number, const char *user_id) NP_MUST_CHECK;
/* The user's number goes back: quarantined until now + days, or available. */
int inv_release(struct inventory *inv, const char *user_id, int quarantine_days, time_t now,
    struct inv_number *out) NP_MUST_CHECK;
/* Teams shows the pending number on someone else: pending -> reserved in one transaction. */
int inv_fail_reserve(
    struct inventory *inv, const char *number, const char *user_id, time_t now) NP_MUST_CHECK;
int inv_reserve(struct inventory *inv, const char *number, time_t now) NP_MUST_CHECK;
int inv_unreserve(struct inventory *inv, const char *number) NP_MUST_CHECK;
/* A number Teams already shows on the user: recorded as assigned to them. */
int inv_adopt(struct inventory *inv, const char *number, const char *user_id, const char *upn,
    time_t now) NP_MUST_CHECK;
/* An administrator's pick: a given number pending for the user (available, reserved or
 * quarantined). */
int inv_claim(struct inventory *inv, const char *number, const char *user_id, const char *upn,
    time_t now) NP_MUST_CHECK;
/* Quarantines that have ended go back to the pool; returns how many, or -1. */
int inv_expire(struct inventory *inv, time_t now);

int inv_get_number(struct inventory *inv, const char *number, struct inv_number *out);
int inv_get_user(struct inventory *inv, const char *user_id, struct inv_user *out);
int inv_get_range(struct inventory *inv, const char *name, struct inv_range *out);

/* Iterators stop early when the callback returns non-zero. */
typedef int (*inv_range_cb)(const struct inv_range *r, void *arg);
typedef int (*inv_number_cb)(const struct inv_number *n, void *arg);
typedef int (*inv_user_cb)(const struct inv_user *u, void *arg);
int inv_foreach_range(struct inventory *inv, inv_range_cb cb, void *arg);
int inv_foreach_number(struct inventory *inv, inv_number_cb cb, void *arg);
int inv_foreach_user(struct inventory *inv, inv_user_cb cb, void *arg);

/*
 * The directory as last seen: user id -> the user's stored record (user.h,
 * docs/record-format.md). A batch is one transaction.
 */
int inv_dir_put_batch(struct inventory *inv, size_t n, const char *const *ids,
    const void *const *records, const size_t *lens) NP_MUST_CHECK;
int inv_dir_put(
    struct inventory *inv, const char *id, const void *record, size_t len) NP_MUST_CHECK;
int inv_dir_del(struct inventory *inv, const char *id) NP_MUST_CHECK;
/* *out is malloc'd; INV_E_NOTFOUND when the user was never seen. */
int inv_dir_get(struct inventory *inv, const char *id, void **out, size_t *len);
typedef int (*inv_dir_cb)(const char *id, const void *record, size_t len, void *arg);
int inv_dir_foreach(struct inventory *inv, inv_dir_cb cb, void *arg);

/* The number inv_allocate would hand out now, without taking it (dry-run, plan). */
int inv_peek(struct inventory *inv, const char *range, time_t now, struct inv_number *out);
/*
 * The same, above `after` (a number of the range; NULL or "": from its start):
 * the numbers allocations one after another would give, for a plan of several
 * users. INV_E_FULL when none is free above it, INV_E_NOTFOUND when `after` is
 * not a number of the range.
 */
int inv_peek_after(struct inventory *inv, const char *range, time_t now, const char *after,
    struct inv_number *out);

/* Small named values: the delta link, counters. */
int inv_meta_get(struct inventory *inv, const char *key, char *buf, size_t len);
int inv_meta_put(struct inventory *inv, const char *key, const char *value) NP_MUST_CHECK;

/*
 * Check every invariant by a full scan: per-range counts, occupancy bits, the
 * users <-> numbers pairing (no number on two users, no user with two numbers).
 * Returns the number of problems found (0 when consistent), each described in
 * report (newline-separated, truncated to len); -1 when the scan itself failed.
 */
int inv_verify(struct inventory *inv, char *report, size_t len);

/* Write a checkpoint and drop log files no longer needed. */
int inv_checkpoint(struct inventory *inv);

/*
 * Stored records (record format 2, and format 1 of numprov before it, which was
 * the structs themselves). The key (number, user id, range name) is not part of
 * the encoding. Encoders return the length written, 0 when len is too small
 * (INV_REC_MAX always suffices). Decoders take the bytes as found on the disk:
 * INV_E_DB, with a log line naming the key, for anything truncated, garbled or
 * out of range; a range's counts are not stored and decode as 0.
 */
#define INV_REC_MAX 512
size_t inv_encode_number(const struct inv_number *n, unsigned char *buf, size_t len);
size_t inv_encode_user(const struct inv_user *u, unsigned char *buf, size_t len);
size_t inv_encode_range(const struct inv_range *r, unsigned char *buf, size_t len);
int inv_decode_number(
    const void *key, size_t klen, const void *data, size_t len, struct inv_number *out);
int inv_decode_user(
    const void *key, size_t klen, const void *data, size_t len, struct inv_user *out);
int inv_decode_range(
    const void *key, size_t klen, const void *data, size_t len, struct inv_range *out);

#endif
