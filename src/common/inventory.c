#include "build-config.h"

#include "inventory.h"

#include <db.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

#define INV_RETRY (-2) /* internal: deadlock, run the transaction again */
#define INV_TRIES 8

/* A range as the inventory keeps it in memory, with its parsed bounds. */
struct rcache {
	struct inv_range r;
	struct e164_range span;
	int depth; /* levels of the occupancy tree */
};

struct inventory {
	DB_ENV *env;
	DB *numbers; /* canonical number -> struct inv_number; only numbers not available */
	DB *users;   /* user id -> struct inv_user; users holding a number */
	DB *ranges;  /* range name -> struct inv_range */
	DB *occ;     /* (range index, level, node) -> uint64 "not available" bitmap */
	DB *quar;    /* (until, number) -> "": quarantines by end time */
	DB *meta;    /* name -> value */
	DB *dir;     /* user id -> JSON: the directory as last seen */
	int lockfd;
	int joined;  /* a reader beside a running numprovd */
	int nospace; /* the last write failed for lack of space (logged once) */
	int wrote;   /* the transaction running has changed something */
	struct rcache *rc;
	size_t nrc;
};

static const char *const state_names[INV__STATES]
    = { "available", "reserved", "pending", "assigned", "quarantined" };

const char *
inv_state_name(int state)
{
	return state >= 0 && state < INV__STATES ? state_names[state] : "?";
}

const char *
inv_strerror(int e)
{
	switch (e) {
	case INV_OK:
		return "ok";
	case INV_E_NOTFOUND:
		return "not found";
	case INV_E_FULL:
		return "no free number in the range";
	case INV_E_TAKEN:
		return "the number is already taken";
	case INV_E_USER_HAS:
		return "the user already holds a number";
	case INV_E_STATE:
		return "the number is not in a state that allows this";
	case INV_E_NORANGE:
		return "the number is in no configured range";
	case INV_E_LOCKED:
		return "the database is in use by another numprovd";
	case INV_E_CONFIG:
		return "the number is reserved by the config file; change it there";
	case INV_E_DB:
		return "database error (see the log)";
	}
	return "unknown error";
}

/* ---- the environment panicked ------------------------------------------- */

static void
default_panic(const char *what, void *arg)
{
	(void)arg;
	log_msg(LOG_CRIT, "inventory",
	    "Berkeley DB needs recovery (%s): exiting; recovery runs "
	    "at the next start",
	    what);
	exit(INV_EXIT_RECOVER);
}

static struct {
	inv_panic_fn fn;
	void *arg;
} panic_handler = { default_panic, NULL };

void
inv_set_panic_handler(inv_panic_fn fn, void *arg)
{
	panic_handler.fn = fn ? fn : default_panic;
	panic_handler.arg = fn ? arg : NULL;
}

/*
 * DB_RUNRECOVERY: nothing in this environment works again until it is opened
 * with recovery. The owner hands over to the panic handler (by default: exit, and
 * the service manager's restart recovers); a reader beside a running numprovd
 * only reports it, the daemon's own next call will see the same.
 */
static void
panicked(DB_ENV *env, const char *what)
{
	struct inventory *inv = env ? env->app_private : NULL;
	char buf[160];

	if (inv && inv->joined) {
		log_err("inventory",
		    "%s: the database needs recovery; numprovd recovers it at its "
		    "next start",
		    what);
		return;
	}
	snprintf(buf, sizeof(buf), "%s: %s", what, db_strerror(DB_RUNRECOVERY));
	panic_handler.fn(buf, panic_handler.arg);
}

/* ---- small Berkeley DB helpers ------------------------------------------ */

static const char *
env_home(DB_ENV *env)
{
	const char *home = NULL;

	if (!env || env->get_home(env, &home) != 0 || !home)
		return "the database directory";
	return home;
}

/* A failed Berkeley DB call: INV_RETRY for a deadlock, else logged and INV_E_DB. */
static int
db_fail(DB_ENV *env, int ret, const char *what)
{
	struct inventory *inv = env ? env->app_private : NULL;

	if (ret == DB_LOCK_DEADLOCK || ret == DB_LOCK_NOTGRANTED)
		return INV_RETRY;
	if (ret == DB_RUNRECOVERY) {
		panicked(env, what);
		return INV_E_DB;
	}
	if (ret == ENOSPC || ret == EDQUOT) {
		/* once per episode: a full disk fails every write until space returns */
		if (!inv || !inv->nospace)
			log_err("inventory",
			    "no space left on device for the database in %s (%s: %s): "
			    "changes are refused until space is freed",
			    env_home(env), what, db_strerror(ret));
		else
			log_debug("inventory", "%s: %s", what, db_strerror(ret));
		if (inv)
			inv->nospace = 1;
		return INV_E_DB;
	}
	log_err("bdb", "%s: %s", what, db_strerror(ret));
	return INV_E_DB;
}

static void
dbt_init(DBT *d, const void *data, size_t size)
{
	memset(d, 0, sizeof(*d));
	d->data = (void *)data;
	d->size = (u_int32_t)size;
}

/* Read a fixed-size record into buf. INV_E_NOTFOUND when absent. */
static int
db_get_fixed(DB *db, DB_TXN *txn, const void *k, size_t klen, void *buf, size_t len, int rmw)
{
	DBT key, data;
	int ret;

	dbt_init(&key, k, klen);
	memset(&data, 0, sizeof(data));
	data.data = buf;
	data.ulen = (u_int32_t)len;
	data.flags = DB_DBT_USERMEM;
	ret = db->get(db, txn, &key, &data, rmw ? DB_RMW : 0);
	if (ret == DB_NOTFOUND)
		return INV_E_NOTFOUND;
	if (ret != 0)
		return db_fail(db->dbenv, ret, "get");
	if (data.size != len) {
		log_err("bdb", "record of %u bytes where %zu were expected", data.size, len);
		return INV_E_DB;
	}
	return INV_OK;
}

static int
db_put_fixed(DB *db, DB_TXN *txn, const void *k, size_t klen, const void *buf, size_t len)
{
	DBT key, data;
	int ret;

	dbt_init(&key, k, klen);
	dbt_init(&data, buf, len);
	ret = db->put(db, txn, &key, &data, 0);
	if (ret == 0)
		((struct inventory *)db->dbenv->app_private)->wrote = 1;
	return ret ? db_fail(db->dbenv, ret, "put") : INV_OK;
}

static int
db_del(DB *db, DB_TXN *txn, const void *k, size_t klen)
{
	DBT key;
	int ret;

	dbt_init(&key, k, klen);
	ret = db->del(db, txn, &key, 0);
	if (ret == DB_NOTFOUND)
		return INV_OK;
	if (ret == 0)
		((struct inventory *)db->dbenv->app_private)->wrote = 1;
	return ret ? db_fail(db->dbenv, ret, "del") : INV_OK;
}

/* Run body in a transaction, again on deadlock; commit on INV_OK, else abort. */
typedef int (*txn_body)(struct inventory *inv, DB_TXN *txn, void *ctx);

static int
run_txn(struct inventory *inv, txn_body body, void *ctx)
{
	for (int tries = 0; tries < INV_TRIES; tries++) {
		DB_TXN *txn;
		int ret = inv->env->txn_begin(inv->env, NULL, &txn, 0), rc;

		if (ret)
			return db_fail(inv->env, ret, "txn_begin");
		inv->wrote = 0;
		rc = body(inv, txn, ctx);
		if (rc != INV_OK) {
			/* nothing of it stays; an abort that fails has panicked the environment */
			if ((ret = txn->abort(txn)) != 0)
				db_fail(inv->env, ret, "abort");
			if (rc == INV_RETRY)
				continue;
			return rc;
		}
		/* a commit that fails has aborted the transaction */
		ret = txn->commit(txn, 0);
		if (ret == 0) {
			if (inv->nospace && inv->wrote) {
				inv->nospace = 0;
				log_notice("inventory", "the database in %s can be written again",
				    env_home(inv->env));
			}
			return INV_OK;
		}
		rc = db_fail(inv->env, ret, "commit");
		if (rc != INV_RETRY)
			return rc;
	}
	log_err("bdb", "giving up after %d deadlocks", INV_TRIES);
	return INV_E_DB;
}

/* ---- the in-memory range list ------------------------------------------- */

static int
occ_depth(uint64_t size)
{
	uint64_t n = (size + 63) / 64;
	int d = 1;

	while (n > 1) {
		n = (n + 63) / 64;
		d++;
	}
	return d;
}

static struct rcache *
rc_by_name(struct inventory *inv, const char *name)
{
	for (size_t i = 0; i < inv->nrc; i++)
		if (strcmp(inv->rc[i].r.name, name) == 0)
			return &inv->rc[i];
	return NULL;
}

/* The live (configured) range holding a number, if any. */
static struct rcache *
rc_containing(struct inventory *inv, const struct e164 *n, uint64_t *off)
{
	for (size_t i = 0; i < inv->nrc; i++)
		if (!inv->rc[i].r.removed && e164_range_contains(&inv->rc[i].span, n, off))
			return &inv->rc[i];
	return NULL;
}

static int
rc_add(struct inventory *inv, const struct inv_range *r)
{
	struct rcache *c, *grown = realloc(inv->rc, (inv->nrc + 1) * sizeof(*inv->rc));
	char err[200];

	if (!grown)
		return INV_E_DB;
	inv->rc = grown;
	c = &inv->rc[inv->nrc];
	memset(c, 0, sizeof(*c));
	c->r = *r;
	if (e164_range_init(&c->span, r->first, r->last, err, sizeof(err)) < 0) {
		log_err("inventory", "stored range %s: %s", r->name, err);
		return INV_E_DB;
	}
	c->depth = occ_depth(c->span.size);
	inv->nrc++;
	return INV_OK;
}

static int
rc_load_cb(const struct inv_range *r, void *arg)
{
	return rc_add(arg, r) != INV_OK;
}

static int
rc_reload(struct inventory *inv)
{
	free(inv->rc);
	inv->rc = NULL;
	inv->nrc = 0;
	return inv_foreach_range(inv, rc_load_cb, inv);
}

/* ---- occupancy tree ----------------------------------------------------- */

struct occ_key {
	unsigned char b[13]; /* range index (4, big endian), level (1), node (8, big endian) */
};

static void
occ_key(struct occ_key *k, uint32_t index, int level, uint64_t node)
{
	for (int i = 0; i < 4; i++)
		k->b[i] = (unsigned char)(index >> (24 - 8 * i));
	k->b[4] = (unsigned char)level;
	for (int i = 0; i < 8; i++)
		k->b[5 + i] = (unsigned char)(node >> (56 - 8 * i));
}

/* Bits of node `node` at `level` that stand for real entries. */
static uint64_t
occ_valid(const struct rcache *c, int level, uint64_t node)
{
	uint64_t entries = c->span.size, left;

	for (int l = 0; l < level; l++)
		entries = (entries + 63) / 64;
	left = entries - node * 64;
	return left >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << left) - 1);
}

static int
occ_get(struct inventory *inv, DB_TXN *txn, const struct rcache *c, int level, uint64_t node,
    uint64_t *mask)
{
	struct occ_key k;
	int rc;

	occ_key(&k, c->r.index, level, node);
	rc = db_get_fixed(inv->occ, txn, k.b, sizeof(k.b), mask, sizeof(*mask), 1);
	if (rc == INV_E_NOTFOUND) {
		*mask = 0;
		return INV_OK;
	}
	return rc;
}

static int
occ_put(struct inventory *inv, DB_TXN *txn, const struct rcache *c, int level, uint64_t node,
    uint64_t mask)
{
	struct occ_key k;

	occ_key(&k, c->r.index, level, node);
	if (mask == 0) /* all free: no record, so storage follows use */
		return db_del(inv->occ, txn, k.b, sizeof(k.b));
	return db_put_fixed(inv->occ, txn, k.b, sizeof(k.b), &mask, sizeof(mask));
}

/* Mark one offset used or free; a node turning full or not full tells its parent. */
static int
occ_mark(struct inventory *inv, DB_TXN *txn, const struct rcache *c, uint64_t off, int used)
{
	uint64_t node = off / 64, bit = (uint64_t)1 << (off % 64);

	for (int level = 0; level < c->depth; level++) {
		uint64_t m, valid = occ_valid(c, level, node);
		int rc, wasfull, isfull;

		if ((rc = occ_get(inv, txn, c, level, node, &m)) != INV_OK)
			return rc;
		wasfull = (m & valid) == valid;
		m = used ? (m | bit) : (m & ~bit);
		if ((rc = occ_put(inv, txn, c, level, node, m)) != INV_OK)
			return rc;
		isfull = (m & valid) == valid;
		if (wasfull == isfull)
			break;
		used = isfull;
		bit = (uint64_t)1 << (node % 64);
		node /= 64;
	}
	return INV_OK;
}

/* Lowest free offset: one node per level, from the root down. */
static int
occ_find(struct inventory *inv, DB_TXN *txn, const struct rcache *c, uint64_t *off)
{
	uint64_t node = 0;

	for (int level = c->depth - 1; level >= 0; level--) {
		uint64_t m, free_bits;
		int rc = occ_get(inv, txn, c, level, node, &m);

		if (rc != INV_OK)
			return rc;
		free_bits = ~m & occ_valid(c, level, node);
		if (!free_bits) {
			if (level != c->depth - 1)
				log_err("inventory",
				    "range %s: occupancy tree inconsistent at level %d", c->r.name,
				    level);
			return INV_E_FULL;
		}
		node = node * 64 + (uint64_t)__builtin_ctzll(free_bits);
	}
	*off = node;
	return INV_OK;
}

/* ---- number records and their transitions ------------------------------- */

struct quar_key {
	unsigned char b[8 + E164_STRLEN];
	size_t len;
};

static void
quar_key(struct quar_key *k, int64_t until, const char *number)
{
	size_t n = strlen(number);

	for (int i = 0; i < 8; i++)
		k->b[i] = (unsigned char)((uint64_t)until >> (56 - 8 * i));
	memcpy(k->b + 8, number, n);
	k->len = 8 + n;
}

static int
num_get(struct inventory *inv, DB_TXN *txn, const char *number, struct inv_number *out)
{
	int rc = db_get_fixed(
	    inv->numbers, txn, number, strlen(number), out, sizeof(*out), txn != NULL);

	if (rc == INV_E_NOTFOUND) {
		memset(out, 0, sizeof(*out));
		snprintf(out->number, sizeof(out->number), "%s", number);
	}
	return rc;
}

static int
count_adjust(struct inventory *inv, DB_TXN *txn, const char *label, int from, int to)
{
	struct inv_range r;
	int rc;

	if (!label[0] || from == to)
		return INV_OK;
	rc = db_get_fixed(inv->ranges, txn, label, strlen(label), &r, sizeof(r), 1);
	if (rc != INV_OK)
		return rc == INV_E_NOTFOUND ? INV_OK : rc;
	if (from != INV_AVAILABLE && r.count[from] > 0)
		r.count[from]--;
	if (to != INV_AVAILABLE)
		r.count[to]++;
	return db_put_fixed(inv->ranges, txn, label, strlen(label), &r, sizeof(r));
}

/*
 * Move a number from *old to *new (state INV_AVAILABLE means no record):
 * counts, occupancy, quarantine index and the record itself, all in txn.
 */
static int
transition(
    struct inventory *inv, DB_TXN *txn, const struct inv_number *old, const struct inv_number *new)
{
	int was = old->state != INV_AVAILABLE, is = new->state != INV_AVAILABLE, rc;
	struct rcache *c = new->range[0] ? rc_by_name(inv, new->range) : NULL;
	struct quar_key qk;

	if ((rc = count_adjust(inv, txn, new->range, old->state, new->state)) != INV_OK)
		return rc;
	if (c && !c->r.removed && was != is) {
		struct e164 n;
		uint64_t off;
		char err[160];

		if (e164_parse(new->number, &n, err, sizeof(err)) < 0
		    || !e164_range_contains(&c->span, &n, &off)) {
			log_err("inventory", "%s is not in range %s", new->number, c->r.name);
			return INV_E_DB;
		}
		if ((rc = occ_mark(inv, txn, c, off, is)) != INV_OK)
			return rc;
	}
	if (old->state == INV_QUARANTINED) {
		quar_key(&qk, old->until, old->number);
		if ((rc = db_del(inv->quar, txn, qk.b, qk.len)) != INV_OK)
			return rc;
	}
	if (new->state == INV_QUARANTINED) {
		quar_key(&qk, new->until, new->number);
		if ((rc = db_put_fixed(inv->quar, txn, qk.b, qk.len, "", 1)) != INV_OK)
			return rc;
	}
	if (!is)
		return db_del(inv->numbers, txn, new->number, strlen(new->number));
	return db_put_fixed(inv->numbers, txn, new->number, strlen(new->number), new, sizeof(*new));
}

static int
user_get(struct inventory *inv, DB_TXN *txn, const char *id, struct inv_user *out)
{
	return db_get_fixed(inv->users, txn, id, strlen(id), out, sizeof(*out), txn != NULL);
}

static int
user_put(struct inventory *inv, DB_TXN *txn, const struct inv_user *u)
{
	return db_put_fixed(inv->users, txn, u->id, strlen(u->id), u, sizeof(*u));
}

static int
user_del(struct inventory *inv, DB_TXN *txn, const char *id)
{
	return db_del(inv->users, txn, id, strlen(id));
}

/* Canonical text of a number given by a caller; INV_E_NOTFOUND if it is not a number. */
static int
canon(const char *in, char *out, struct e164 *parsed)
{
	struct e164 n;
	char err[160];

	if (e164_parse(in, &n, err, sizeof(err)) < 0)
		return INV_E_NOTFOUND;
	e164_format(&n, out, E164_STRLEN);
	if (parsed)
		*parsed = n;
	return INV_OK;
}

/* ---- quarantine --------------------------------------------------------- */

static int
expire_in(struct inventory *inv, DB_TXN *txn, time_t now, int *count)
{
	DBC *cur;
	DBT key, data;
	int ret, rc = INV_OK;

	if ((ret = inv->quar->cursor(inv->quar, txn, &cur, 0)) != 0)
		return db_fail(inv->env, ret, "cursor");
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	while ((ret = cur->get(cur, &key, &data, DB_NEXT | DB_RMW)) == 0) {
		const unsigned char *b = key.data;
		int64_t until = 0;
		char number[E164_STRLEN];
		struct inv_number old, new;

		for (int i = 0; i < 8; i++)
			until = (int64_t)(((uint64_t)until << 8) | b[i]);
		if (until > (int64_t)now || key.size <= 8 || key.size - 8 >= E164_STRLEN)
			break;
		memcpy(number, b + 8, key.size - 8);
		number[key.size - 8] = '\0';
		if ((rc = num_get(inv, txn, number, &old)) == INV_E_NOTFOUND
		    || old.state != INV_QUARANTINED || old.until != until) {
			/* a stale index entry: drop it alone */
			if ((ret = cur->del(cur, 0)) != 0)
				break;
			rc = INV_OK;
			continue;
		}
		if (rc != INV_OK)
			break;
		new = old;
		new.state = INV_AVAILABLE;
		if ((rc = transition(inv, txn, &old, &new)) != INV_OK)
			break;
		(*count)++;
	}
	cur->close(cur);
	if (rc != INV_OK)
		return rc;
	return (ret == 0 || ret == DB_NOTFOUND) ? INV_OK
						: db_fail(inv->env, ret, "quarantine cursor");
}

struct expire_ctx {
	time_t now;
	int count;
};

static int
expire_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct expire_ctx *x = arg;

	x->count = 0;
	return expire_in(inv, txn, x->now, &x->count);
}

int
inv_expire(struct inventory *inv, time_t now)
{
	struct expire_ctx x = { now, 0 };

	return run_txn(inv, expire_body, &x) == INV_OK ? x.count : -1;
}

/* ---- allocate, confirm, fail, release ----------------------------------- */

struct op {
	const char *range, *user_id, *upn;
	int state; /* adopt: INV_ASSIGNED; claim: INV_PENDING */
	char number[E164_STRLEN];
	struct e164 parsed;
	time_t now;
	int days;
	struct inv_number out;
};

static void
copy_str(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

static int
allocate_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct rcache *c = rc_by_name(inv, op->range);
	struct inv_number old, new;
	struct inv_user u;
	struct e164 n;
	uint64_t off;
	int rc, expired = 0;

	if (!c || c->r.removed)
		return INV_E_NOTFOUND;
	if ((rc = user_get(inv, txn, op->user_id, &u)) == INV_OK) {
		copy_str(op->out.number, sizeof(op->out.number), u.number);
		return INV_E_USER_HAS;
	}
	if (rc != INV_E_NOTFOUND)
		return rc;
	if ((rc = expire_in(inv, txn, op->now, &expired)) != INV_OK)
		return rc;
	if ((rc = occ_find(inv, txn, c, &off)) != INV_OK)
		return rc;
	e164_range_number(&c->span, off, &n);
	e164_format(&n, new.number, sizeof(new.number));
	if ((rc = num_get(inv, txn, new.number, &old)) != INV_E_NOTFOUND) {
		if (rc == INV_OK)
			log_err("inventory", "range %s: %s marked free but recorded %s", c->r.name,
			    old.number, inv_state_name(old.state));
		return rc == INV_OK ? INV_E_DB : rc;
	}
	memset(&new.state, 0, sizeof(new) - sizeof(new.number));
	new.state = INV_PENDING;
	new.since = op->now;
	copy_str(new.user_id, sizeof(new.user_id), op->user_id);
	copy_str(new.range, sizeof(new.range), c->r.name);
	if ((rc = transition(inv, txn, &old, &new)) != INV_OK)
		return rc;
	memset(&u, 0, sizeof(u));
	copy_str(u.id, sizeof(u.id), op->user_id);
	copy_str(u.upn, sizeof(u.upn), op->upn);
	copy_str(u.number, sizeof(u.number), new.number);
	u.state = INV_PENDING;
	u.since = op->now;
	op->out = new;
	return user_put(inv, txn, &u);
}

int
inv_allocate(struct inventory *inv, const char *range, const char *user_id, const char *upn,
    time_t now, struct inv_number *out)
{
	struct op op = { .range = range, .user_id = user_id, .upn = upn, .now = now };
	int rc;

	if (!user_id || !*user_id || strlen(user_id) >= INV_ID_MAX)
		return INV_E_NOTFOUND;
	rc = run_txn(inv, allocate_body, &op);
	if (out && (rc == INV_OK || rc == INV_E_USER_HAS))
		*out = op.out;
	return rc;
}

/* The number's record, which must be held (pending or assigned) by op->user_id. */
static int
held_by(struct inventory *inv, DB_TXN *txn, struct op *op, struct inv_number *rec, int state)
{
	int rc = num_get(inv, txn, op->number, rec);

	if (rc != INV_OK)
		return rc;
	if ((rec->state != INV_PENDING && rec->state != INV_ASSIGNED)
	    || strcmp(rec->user_id, op->user_id) != 0)
		return INV_E_STATE;
	return state < 0 || rec->state == state ? INV_OK : INV_E_STATE;
}

static int
confirm_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct inv_number old, new;
	struct inv_user u;
	int rc;

	if ((rc = held_by(inv, txn, op, &old, -1)) != INV_OK)
		return rc;
	if (old.state == INV_ASSIGNED)
		return INV_OK; /* confirmed twice: nothing to do */
	new = old;
	new.state = INV_ASSIGNED;
	new.since = op->now;
	if ((rc = transition(inv, txn, &old, &new)) != INV_OK)
		return rc;
	if ((rc = user_get(inv, txn, op->user_id, &u)) != INV_OK)
		return rc == INV_E_NOTFOUND ? INV_E_DB : rc;
	u.state = INV_ASSIGNED;
	u.since = op->now;
	return user_put(inv, txn, &u);
}

int
inv_confirm(struct inventory *inv, const char *number, const char *user_id, time_t now)
{
	struct op op = { .user_id = user_id, .now = now };

	if (canon(number, op.number, NULL) != INV_OK)
		return INV_E_NOTFOUND;
	return run_txn(inv, confirm_body, &op);
}

static int
fail_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct inv_number old, new;
	int rc;

	if ((rc = held_by(inv, txn, op, &old, INV_PENDING)) != INV_OK)
		return rc;
	new = old;
	new.state = INV_AVAILABLE;
	if ((rc = transition(inv, txn, &old, &new)) != INV_OK)
		return rc;
	return user_del(inv, txn, op->user_id);
}

int
inv_fail(struct inventory *inv, const char *number, const char *user_id)
{
	struct op op = { .user_id = user_id };

	if (canon(number, op.number, NULL) != INV_OK)
		return INV_E_NOTFOUND;
	return run_txn(inv, fail_body, &op);
}

static int
release_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct inv_number old, new;
	struct inv_user u;
	struct rcache *c;
	int rc;

	if ((rc = user_get(inv, txn, op->user_id, &u)) != INV_OK)
		return rc;
	copy_str(op->number, sizeof(op->number), u.number);
	if ((rc = held_by(inv, txn, op, &old, -1)) != INV_OK)
		return rc == INV_E_NOTFOUND || rc == INV_E_STATE ? INV_E_DB : rc;
	new = old;
	c = old.range[0] ? rc_by_name(inv, old.range) : NULL;
	/* numbers outside our live ranges are not ours to keep in quarantine */
	if (op->days > 0 && c && !c->r.removed) {
		new.state = INV_QUARANTINED;
		new.until = (int64_t)op->now + (int64_t)op->days * 86400;
	} else {
		new.state = INV_AVAILABLE;
	}
	new.since = op->now;
	if ((rc = transition(inv, txn, &old, &new)) != INV_OK)
		return rc;
	op->out = new;
	return user_del(inv, txn, op->user_id);
}

int
inv_release(struct inventory *inv, const char *user_id, int quarantine_days, time_t now,
    struct inv_number *out)
{
	struct op op = { .user_id = user_id, .days = quarantine_days, .now = now };
	int rc = run_txn(inv, release_body, &op);

	if (rc == INV_OK && out)
		*out = op.out;
	return rc;
}

/* ---- reserve, unreserve, adopt ------------------------------------------ */

static int
reserve_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct inv_number old, new;
	struct rcache *c;
	uint64_t off;
	int rc = num_get(inv, txn, op->number, &old);

	if (rc != INV_OK && rc != INV_E_NOTFOUND)
		return rc;
	if (old.state == INV_RESERVED) {
		if (!op->days || (old.flags & INV_NF_CONFIG))
			return INV_OK;
		new = old; /* the config now lists an admin's reservation: config owns it */
		new.flags |= INV_NF_CONFIG;
		return transition(inv, txn, &old, &new);
	}
	if (old.state == INV_PENDING || old.state == INV_ASSIGNED)
		return INV_E_TAKEN;
	if (!(c = rc_containing(inv, &op->parsed, &off)))
		return INV_E_NORANGE;
	new = old;
	new.state = INV_RESERVED;
	new.flags = op->days ? INV_NF_CONFIG : 0; /* days doubles as "from the config" */
	new.since = op->now;
	new.until = 0;
	copy_str(new.range, sizeof(new.range), c->r.name);
	if (old.state != INV_AVAILABLE && strcmp(old.range, new.range) != 0)
		return INV_E_DB; /* labels are kept right by inv_sync_ranges */
	return transition(inv, txn, &old, &new);
}

/* Teams gave it to someone else: pending -> reserved, one transaction. */
static int
fail_reserve_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	int rc = fail_body(inv, txn, arg);

	return rc == INV_OK ? reserve_body(inv, txn, arg) : rc;
}

int
inv_fail_reserve(struct inventory *inv, const char *number, const char *user_id, time_t now)
{
	struct op op = { .user_id = user_id, .now = now, .days = 0 };

	if (canon(number, op.number, &op.parsed) != INV_OK)
		return INV_E_NOTFOUND;
	return run_txn(inv, fail_reserve_body, &op);
}

int
inv_reserve(struct inventory *inv, const char *number, time_t now)
{
	struct op op = { .now = now, .days = 0 };

	if (canon(number, op.number, &op.parsed) != INV_OK)
		return INV_E_NOTFOUND;
	return run_txn(inv, reserve_body, &op);
}

static int
unreserve_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct inv_number old, new;
	int rc = num_get(inv, txn, op->number, &old);

	if (rc != INV_OK)
		return rc == INV_E_NOTFOUND ? INV_E_STATE : rc;
	if (old.state != INV_RESERVED)
		return INV_E_STATE;
	if ((old.flags & INV_NF_CONFIG) && !op->days)
		return INV_E_CONFIG;
	new = old;
	new.state = INV_AVAILABLE;
	return transition(inv, txn, &old, &new);
}

int
inv_unreserve(struct inventory *inv, const char *number)
{
	struct op op = { .days = 0 };

	if (canon(number, op.number, NULL) != INV_OK)
		return INV_E_NOTFOUND;
	return run_txn(inv, unreserve_body, &op);
}

static int
adopt_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct inv_number old, new;
	struct inv_user u;
	struct rcache *c;
	uint64_t off;
	int rc = user_get(inv, txn, op->user_id, &u);

	if (rc == INV_OK && strcmp(u.number, op->number) != 0) {
		copy_str(op->out.number, sizeof(op->out.number), u.number);
		return INV_E_USER_HAS;
	}
	if (rc != INV_OK && rc != INV_E_NOTFOUND)
		return rc;
	if ((rc = num_get(inv, txn, op->number, &old)) != INV_OK && rc != INV_E_NOTFOUND)
		return rc;
	if ((old.state == INV_PENDING || old.state == INV_ASSIGNED)
	    && strcmp(old.user_id, op->user_id) != 0) {
		op->out = old;
		return INV_E_TAKEN;
	}
	new = old;
	if (old.state == INV_AVAILABLE) {
		c = rc_containing(inv, &op->parsed, &off);
		copy_str(new.range, sizeof(new.range), c ? c->r.name : "");
	}
	new.state = (uint8_t)op->state;
	new.flags = 0;
	new.until = 0;
	if (old.state != new.state)
		new.since = op->now;
	copy_str(new.user_id, sizeof(new.user_id), op->user_id);
	if ((rc = transition(inv, txn, &old, &new)) != INV_OK)
		return rc;
	memset(&u, 0, sizeof(u));
	copy_str(u.id, sizeof(u.id), op->user_id);
	copy_str(u.upn, sizeof(u.upn), op->upn);
	copy_str(u.number, sizeof(u.number), op->number);
	u.state = (uint8_t)op->state;
	u.since = new.since;
	op->out = new;
	return user_put(inv, txn, &u);
}

/* A given number on a user, in the given state (adopt: assigned; claim: pending). */
static int
hold_number(struct inventory *inv, const char *number, const char *user_id, const char *upn,
    time_t now, int state)
{
	struct op op = { .user_id = user_id, .upn = upn, .now = now, .state = state };

	if (!user_id || !*user_id || strlen(user_id) >= INV_ID_MAX)
		return INV_E_NOTFOUND;
	if (canon(number, op.number, &op.parsed) != INV_OK)
		return INV_E_NOTFOUND;
	return run_txn(inv, adopt_body, &op);
}

int
inv_adopt(
    struct inventory *inv, const char *number, const char *user_id, const char *upn, time_t now)
{
	return hold_number(inv, number, user_id, upn, now, INV_ASSIGNED);
}

int
inv_claim(
    struct inventory *inv, const char *number, const char *user_id, const char *upn, time_t now)
{
	return hold_number(inv, number, user_id, upn, now, INV_PENDING);
}

/* ---- reads -------------------------------------------------------------- */

int
inv_get_number(struct inventory *inv, const char *number, struct inv_number *out)
{
	char c[E164_STRLEN];
	int rc;

	if (canon(number, c, NULL) != INV_OK)
		return INV_E_NOTFOUND;
	rc = num_get(inv, NULL, c, out);
	/* no record: available (out->state == INV_AVAILABLE) */
	return rc == INV_E_NOTFOUND ? INV_OK : rc;
}

int
inv_get_user(struct inventory *inv, const char *user_id, struct inv_user *out)
{
	return db_get_fixed(inv->users, NULL, user_id, strlen(user_id), out, sizeof(*out), 0);
}

int
inv_get_range(struct inventory *inv, const char *name, struct inv_range *out)
{
	return db_get_fixed(inv->ranges, NULL, name, strlen(name), out, sizeof(*out), 0);
}

/* Walk a database of fixed-size records in key order. */
static int
foreach_fixed(DB *db, size_t size, int (*cb)(const void *rec, void *arg), void *arg)
{
	DBC *cur;
	DBT key, data;
	int ret, stop = 0;
	void *buf = malloc(size);

	if (!buf)
		return INV_E_DB;
	if ((ret = db->cursor(db, NULL, &cur, 0)) != 0) {
		free(buf);
		return db_fail(db->dbenv, ret, "cursor");
	}
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	while (!stop && (ret = cur->get(cur, &key, &data, DB_NEXT)) == 0) {
		if (data.size != size)
			continue;
		memcpy(buf, data.data, size); /* records are not aligned in the page */
		stop = cb(buf, arg);
	}
	cur->close(cur);
	free(buf);
	if (ret != 0 && ret != DB_NOTFOUND)
		return db_fail(db->dbenv, ret, "cursor");
	return stop ? 1 : INV_OK;
}

struct cb_wrap {
	void *cb;
	void *arg;
};

static int
range_tramp(const void *rec, void *arg)
{
	struct cb_wrap *w = arg;
	return ((inv_range_cb)w->cb)(rec, w->arg);
}

static int
number_tramp(const void *rec, void *arg)
{
	struct cb_wrap *w = arg;
	return ((inv_number_cb)w->cb)(rec, w->arg);
}

static int
user_tramp(const void *rec, void *arg)
{
	struct cb_wrap *w = arg;
	return ((inv_user_cb)w->cb)(rec, w->arg);
}

int
inv_foreach_range(struct inventory *inv, inv_range_cb cb, void *arg)
{
	struct cb_wrap w = { (void *)cb, arg };
	return foreach_fixed(inv->ranges, sizeof(struct inv_range), range_tramp, &w);
}

int
inv_foreach_number(struct inventory *inv, inv_number_cb cb, void *arg)
{
	struct cb_wrap w = { (void *)cb, arg };
	return foreach_fixed(inv->numbers, sizeof(struct inv_number), number_tramp, &w);
}

int
inv_foreach_user(struct inventory *inv, inv_user_cb cb, void *arg)
{
	struct cb_wrap w = { (void *)cb, arg };
	return foreach_fixed(inv->users, sizeof(struct inv_user), user_tramp, &w);
}

/* ---- meta --------------------------------------------------------------- */

int
inv_meta_get(struct inventory *inv, const char *key, char *buf, size_t len)
{
	DBT k, d;
	int ret;

	dbt_init(&k, key, strlen(key));
	memset(&d, 0, sizeof(d));
	d.data = buf;
	d.ulen = (u_int32_t)(len ? len - 1 : 0);
	d.flags = DB_DBT_USERMEM;
	ret = inv->meta->get(inv->meta, NULL, &k, &d, 0);
	if (ret == DB_NOTFOUND)
		return INV_E_NOTFOUND;
	if (ret == DB_BUFFER_SMALL)
		return INV_E_DB;
	if (ret)
		return db_fail(inv->env, ret, "meta get");
	buf[d.size] = '\0';
	return INV_OK;
}

struct meta_ctx {
	const char *key, *value;
};

static int
meta_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct meta_ctx *m = arg;
	return db_put_fixed(inv->meta, txn, m->key, strlen(m->key), m->value, strlen(m->value));
}

int
inv_meta_put(struct inventory *inv, const char *key, const char *value)
{
	struct meta_ctx m = { key, value };
	return run_txn(inv, meta_body, &m);
}

/* ---- the directory as last seen ----------------------------------------- */

struct dir_batch {
	size_t n;
	const char *const *ids;
	const void *const *records;
	const size_t *lens;
};

static int
dir_batch_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct dir_batch *b = arg;
	int rc = INV_OK;

	for (size_t i = 0; rc == INV_OK && i < b->n; i++)
		rc = db_put_fixed(
		    inv->dir, txn, b->ids[i], strlen(b->ids[i]), b->records[i], b->lens[i]);
	return rc;
}

int
inv_dir_put_batch(struct inventory *inv, size_t n, const char *const *ids,
    const void *const *records, const size_t *lens)
{
	struct dir_batch b = { n, ids, records, lens };
	return n ? run_txn(inv, dir_batch_body, &b) : INV_OK;
}

int
inv_dir_put(struct inventory *inv, const char *id, const void *record, size_t len)
{
	return inv_dir_put_batch(inv, 1, &id, &record, &len);
}

static int
dir_del_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	return db_del(inv->dir, txn, arg, strlen(arg));
}

int
inv_dir_del(struct inventory *inv, const char *id)
{
	return run_txn(inv, dir_del_body, (void *)id);
}

int
inv_dir_get(struct inventory *inv, const char *id, void **out, size_t *len)
{
	DBT key, data;
	int ret;

	dbt_init(&key, id, strlen(id));
	memset(&data, 0, sizeof(data));
	data.flags = DB_DBT_MALLOC;
	*out = NULL;
	ret = inv->dir->get(inv->dir, NULL, &key, &data, 0);
	if (ret == DB_NOTFOUND)
		return INV_E_NOTFOUND;
	if (ret)
		return db_fail(inv->env, ret, "directory get");
	*out = data.data;
	*len = data.size;
	return INV_OK;
}

int
inv_dir_foreach(struct inventory *inv, inv_dir_cb cb, void *arg)
{
	DBC *cur;
	DBT key, data;
	int ret, stop = 0;
	char id[INV_ID_MAX];

	if ((ret = inv->dir->cursor(inv->dir, NULL, &cur, 0)) != 0)
		return db_fail(inv->env, ret, "cursor");
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	while (!stop && (ret = cur->get(cur, &key, &data, DB_NEXT)) == 0) {
		if (key.size >= sizeof(id))
			continue;
		memcpy(id, key.data, key.size);
		id[key.size] = '\0';
		stop = cb(id, data.data, data.size, arg);
	}
	cur->close(cur);
	if (ret != 0 && ret != DB_NOTFOUND)
		return db_fail(inv->env, ret, "cursor");
	return stop ? 1 : INV_OK;
}

/* Everything inv_allocate does but the writes: the transaction is thrown away. */
static int
peek_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct op *op = arg;
	struct rcache *c = rc_by_name(inv, op->range);
	int rc, expired = 0;
	uint64_t off;
	struct e164 n;

	if (!c || c->r.removed)
		return INV_E_NOTFOUND;
	if ((rc = expire_in(inv, txn, op->now, &expired)) != INV_OK
	    || (rc = occ_find(inv, txn, c, &off)) != INV_OK)
		return rc;
	e164_range_number(&c->span, off, &n);
	memset(&op->out, 0, sizeof(op->out));
	e164_format(&n, op->out.number, sizeof(op->out.number));
	copy_str(op->out.range, sizeof(op->out.range), c->r.name);
	return INV_RETRY - 1; /* not INV_OK: run_txn aborts, nothing is written */
}

int
inv_peek(struct inventory *inv, const char *range, time_t now, struct inv_number *out)
{
	struct op op = { .range = range, .now = now };
	int rc = run_txn(inv, peek_body, &op);

	if (rc == INV_RETRY - 1) {
		*out = op.out;
		return INV_OK;
	}
	return rc;
}

/* ---- ranges from the config --------------------------------------------- */

struct sync_ctx {
	const struct config *cfg;
	time_t now;
	int changed;
};

static uint32_t
next_index(struct inventory *inv)
{
	uint32_t max = 0;

	for (size_t i = 0; i < inv->nrc; i++)
		if (inv->rc[i].r.index > max)
			max = inv->rc[i].r.index;
	return max + 1;
}

/* Write the configured ranges' definitions; report whether any bounds changed. */
static int
sync_defs(struct inventory *inv, DB_TXN *txn, struct sync_ctx *x)
{
	int rc;

	for (size_t i = 0; i < inv->nrc; i++) {
		struct inv_range r;
		int live = config_range_find(x->cfg, inv->rc[i].r.name) != NULL;

		/* the stored record, not the cached copy: its counts move with every change */
		if ((rc = db_get_fixed(inv->ranges, txn, inv->rc[i].r.name,
			 strlen(inv->rc[i].r.name), &r, sizeof(r), 1))
		    != INV_OK)
			return rc;
		if (r.removed == !live)
			continue;
		r.removed = (uint8_t)!live;
		x->changed = 1;
		if ((rc = db_put_fixed(inv->ranges, txn, r.name, strlen(r.name), &r, sizeof(r))))
			return rc;
	}
	uint32_t next = next_index(inv);

	for (size_t i = 0; i < x->cfg->n_ranges; i++) {
		const struct cfg_range *cr = &x->cfg->ranges[i];
		struct rcache *c = rc_by_name(inv, cr->name);
		struct inv_range r;

		memset(&r, 0, sizeof(r));
		if (c
		    && (rc = db_get_fixed(
			    inv->ranges, txn, cr->name, strlen(cr->name), &r, sizeof(r), 1))
			!= INV_OK)
			return rc;
		if (!c)
			r.index = next++;
		copy_str(r.name, sizeof(r.name), cr->name);
		copy_str(r.provider, sizeof(r.provider), cr->provider);
		r.type = (uint8_t)cr->type;
		r.removed = 0;
		e164_format(&cr->span.first, r.first, sizeof(r.first));
		e164_format(&cr->span.last, r.last, sizeof(r.last));
		r.size = cr->span.size;
		if (!c || strcmp(c->r.first, r.first) || strcmp(c->r.last, r.last))
			x->changed = 1;
		if ((rc = db_put_fixed(inv->ranges, txn, r.name, strlen(r.name), &r, sizeof(r))))
			return rc;
	}
	return INV_OK;
}

/* Relabel every record by the ranges now configured; rebuild counts and occupancy. */
static int
rebuild(struct inventory *inv, DB_TXN *txn)
{
	u_int32_t n;
	DBC *cur;
	DBT key, data;
	int ret, rc = INV_OK;

	if ((ret = inv->occ->truncate(inv->occ, txn, &n, 0)) != 0)
		return db_fail(inv->env, ret, "truncate");
	for (size_t i = 0; i < inv->nrc; i++) {
		struct inv_range *r = &inv->rc[i].r;
		memset(r->count, 0, sizeof(r->count));
	}
	if ((ret = inv->numbers->cursor(inv->numbers, txn, &cur, 0)) != 0)
		return db_fail(inv->env, ret, "cursor");
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	while ((ret = cur->get(cur, &key, &data, DB_NEXT | DB_RMW)) == 0) {
		struct inv_number rec;
		struct rcache *c, *old;
		struct e164 num;
		uint64_t off;
		char err[160];

		if (data.size != sizeof(rec))
			continue;
		memcpy(&rec, data.data, sizeof(rec));
		if (e164_parse(rec.number, &num, err, sizeof(err)) < 0)
			continue;
		old = rec.range[0] ? rc_by_name(inv, rec.range) : NULL;
		if ((c = rc_containing(inv, &num, &off))) {
			if ((rc = occ_mark(inv, txn, c, off, 1)) != INV_OK)
				break;
		} else if (!old || !old->r.removed) {
			c = NULL; /* not in any range, live or kept */
		} else {
			c = old; /* a removed range keeps its numbers */
		}
		copy_str(rec.range, sizeof(rec.range), c ? c->r.name : "");
		if (c)
			c->r.count[rec.state]++;
		dbt_init(&data, &rec, sizeof(rec));
		if ((ret = cur->put(cur, &key, &data, DB_CURRENT)) != 0)
			break;
	}
	cur->close(cur);
	if (rc != INV_OK)
		return rc;
	if (ret != 0 && ret != DB_NOTFOUND)
		return db_fail(inv->env, ret, "rebuild");
	for (size_t i = 0; i < inv->nrc; i++) {
		struct inv_range *r = &inv->rc[i].r;
		if ((rc = db_put_fixed(inv->ranges, txn, r->name, strlen(r->name), r, sizeof(*r))))
			return rc;
	}
	return INV_OK;
}

static int
sync_defs_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	return sync_defs(inv, txn, arg);
}

static int
rebuild_body(struct inventory *inv, DB_TXN *txn, void *arg)
{
	(void)arg;
	return rebuild(inv, txn);
}

/* Reservations the config no longer lists are lifted. */
struct lift_ctx {
	const struct config *cfg;
	char (*lift)[E164_STRLEN];
	size_t n, cap;
};

static int
config_lists(const struct config *cfg, const char *number)
{
	for (size_t i = 0; i < cfg->n_ranges; i++)
		for (size_t j = 0; j < cfg->ranges[i].n_reserved; j++) {
			char t[E164_STRLEN];
			e164_format(&cfg->ranges[i].reserved[j], t, sizeof(t));
			if (strcmp(t, number) == 0)
				return 1;
		}
	return 0;
}

static int
lift_cb(const struct inv_number *n, void *arg)
{
	struct lift_ctx *l = arg;

	if (n->state != INV_RESERVED || !(n->flags & INV_NF_CONFIG)
	    || config_lists(l->cfg, n->number))
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		void *g = realloc(l->lift, cap * sizeof(*l->lift));
		if (!g)
			return 1;
		l->lift = g;
		l->cap = cap;
	}
	copy_str(l->lift[l->n++], E164_STRLEN, n->number);
	return 0;
}

static int
sync_reservations(struct inventory *inv, const struct config *cfg, time_t now)
{
	struct lift_ctx l = { cfg, NULL, 0, 0 };
	int rc = inv_foreach_number(inv, lift_cb, &l);

	for (size_t i = 0; rc == INV_OK && i < l.n; i++) {
		struct op op = { .days = 1 };
		copy_str(op.number, sizeof(op.number), l.lift[i]);
		rc = run_txn(inv, unreserve_body, &op);
	}
	free(l.lift);
	for (size_t i = 0; rc == INV_OK && i < cfg->n_ranges; i++)
		for (size_t j = 0; rc == INV_OK && j < cfg->ranges[i].n_reserved; j++) {
			struct op op
			    = { .now = now, .days = 1, .parsed = cfg->ranges[i].reserved[j] };
			e164_format(&op.parsed, op.number, sizeof(op.number));
			rc = run_txn(inv, reserve_body, &op);
			if (rc == INV_E_TAKEN) {
				log_warnx("inventory",
				    "range %s: %s is listed as reserved but is "
				    "held by a user; left as it is",
				    cfg->ranges[i].name, op.number);
				rc = INV_OK;
			}
		}
	return rc;
}

int
inv_sync_ranges(struct inventory *inv, const struct config *cfg, time_t now)
{
	struct sync_ctx x = { cfg, now, 0 };
	int rc = run_txn(inv, sync_defs_body, &x);

	if (rc == INV_OK)
		rc = rc_reload(inv);
	if (rc == INV_OK && x.changed) {
		log_info("inventory", "range definitions changed: recounting numbers in use");
		rc = run_txn(inv, rebuild_body, NULL);
		if (rc == INV_OK)
			rc = rc_reload(inv);
	}
	if (rc == INV_OK)
		rc = sync_reservations(inv, cfg, now);
	return rc;
}

/* ---- open and close ----------------------------------------------------- */

static void
bdb_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	const struct inventory *inv = env ? env->app_private : NULL;

	(void)pfx;
	/* a full disk fails every write until space returns: said once, by db_fail */
	if (inv && inv->nospace && strstr(msg, strerror(ENOSPC)))
		log_debug("bdb", "%s", msg);
	else
		log_err("bdb", "%s", msg);
}

/* One numprovd per database: an exclusive lock that dies with the process. */
static int
take_lock(const char *path, int *fd_out, char *err, size_t errlen)
{
	char file[4096], pid[32] = "";
	int fd;
	ssize_t n;

	snprintf(file, sizeof(file), "%s/numprovd.lock", path);
	if ((fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0640)) < 0) {
		snprintf(err, errlen, "cannot open %s: %s", file, strerror(errno));
		return INV_E_DB;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(fd, pid, sizeof(pid) - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen, "the database %s is in use by another numprovd (pid %s)",
		    path, pid[0] ? pid : "unknown");
		close(fd);
		return INV_E_LOCKED;
	}
	if (ftruncate(fd, 0) == 0) {
		n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
		if (pwrite(fd, pid, (size_t)n, 0) < 0)
			log_warn("inventory", "cannot write %s", file);
	}
	*fd_out = fd;
	return INV_OK;
}

int
inv_lock_set_pid(struct inventory *inv, long pid)
{
	char text[32];
	int n = snprintf(text, sizeof(text), "%ld\n", pid);

	if (inv->lockfd < 0)
		return INV_E_DB; /* read-only: the lock is the running daemon's */
	if (ftruncate(inv->lockfd, 0) < 0 || pwrite(inv->lockfd, text, (size_t)n, 0) != n) {
		log_warn("inventory", "cannot write pid %ld to the lock file", pid);
		return INV_E_DB;
	}
	return INV_OK;
}

static int
open_db(struct inventory *inv, DB **db, const char *file, int create, char *err, size_t errlen)
{
	int ret = db_create(db, inv->env, 0);

	if (ret == 0)
		ret = (*db)->open(*db, NULL, file, NULL, DB_BTREE,
		    DB_AUTO_COMMIT | (create ? DB_CREATE : 0), 0640);
	if (ret != 0) {
		snprintf(err, errlen, "cannot open %s: %s", file, db_strerror(ret));
		if (*db)
			(*db)->close(*db, 0);
		*db = NULL;
		return INV_E_DB;
	}
	return INV_OK;
}

/*
 * ---- region memory and its room on the disk -----------------------------
 *
 * Berkeley DB keeps its regions (__db.001 ...) in files mapped into memory and
 * makes them sparse: created with a seek and one byte, grown the same way. A
 * store into a hole of such a file when the filesystem is full is a SIGBUS, not
 * an error. So the sizes are fixed here, DB_REGION_INIT makes Berkeley DB write
 * out every region it creates, and reserve_regions() allocates the rest of each
 * mapping (where a region grows: the cache fills, locks are taken) as soon as the
 * environment is open. What is left to fail on a full disk are the writes of log
 * records and database pages: ordinary write(2) calls, whose ENOSPC comes back as
 * an error from the call that needed the space.
 *
 *   cache       32 MB, never grown beyond (mapped: 40 MB with its hash tables)
 *   locks       100,000 locks and lock objects, 1,000 lockers (about 49 MB with
 *               the log and transaction regions): a range rebuild, the largest
 *               transaction, takes about 8 page locks per 100 numbers in use
 *   log         256 KB buffer, 1 MB region (file names); log files stay at
 *               Berkeley DB's 10 MB and are written with write(2)
 *
 * About 92 MB in all (INV_REGION_BYTES is the bound checked before creation).
 */
#define INV_CACHE_BYTES (32u * 1024 * 1024)
#define INV_LOCKS 100000
#define INV_LOCKERS 1000
#define INV_LOG_BUFFER (256u * 1024)
#define INV_LOG_REGION (1024u * 1024)

static int
region_file(const char *name)
{
	return strncmp(name, "__db.", 5) == 0 && strlen(name) == 8
	    && strspn(name + 5, "0123456789") == 3;
}

/*
 * How far this process maps the file: the bytes its region may ever use. -1 when
 * /proc/self/maps cannot be read. The device is compared too, or the file name
 * where stat(2) and the maps disagree on it (overlay and btrfs devices).
 */
static off_t
mapped_bytes(const struct stat *st, const char *name)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[4096 + 256];
	off_t len = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long start, end, off, ino;
		unsigned maj, min;
		const char *base = strrchr(line, '/');

		if (sscanf(
			line, "%llx-%llx %*s %llx %x:%x %llu", &start, &end, &off, &maj, &min, &ino)
			!= 6
		    || ino != (unsigned long long)st->st_ino)
			continue;
		if (makedev(maj, min) != st->st_dev
		    && !(base && strncmp(base + 1, name, strlen(name)) == 0))
			continue;
		if ((off_t)(off + (end - start)) > len)
			len = (off_t)(off + (end - start));
	}
	fclose(f);
	return len;
}

/* Allocate every block the region files are mapped over. */
static int
reserve_regions(const char *path, char *err, size_t errlen)
{
	DIR *d = opendir(path);
	struct dirent *e;
	long long total = 0;
	int rc = INV_OK, warned = 0;

	if (!d) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return INV_E_DB;
	}
	while (rc == INV_OK && (e = readdir(d))) {
		struct stat st;
		off_t len;
		int fd, r;

		if (!region_file(e->d_name))
			continue;
		if ((fd = openat(dirfd(d), e->d_name, O_RDWR | O_CLOEXEC)) < 0)
			continue;
		if (fstat(fd, &st) != 0 || (len = mapped_bytes(&st, e->d_name)) == 0) {
			close(fd);
			continue;
		}
		if (len < 0) {
			if (!warned++)
				log_warnx("inventory",
				    "cannot read /proc/self/maps: the region files in "
				    "%s are allocated only as far as Berkeley DB wrote them",
				    path);
			close(fd);
			continue;
		}
		if ((r = posix_fallocate(fd, 0, len)) == ENOSPC || r == EDQUOT) {
			snprintf(err, errlen,
			    "no space left on device: cannot allocate %lld MB for "
			    "the region file %s/%s",
			    (long long)len >> 20, path, e->d_name);
			rc = INV_E_DB;
		} else if (r != 0) {
			snprintf(err, errlen, "cannot allocate the region file %s/%s: %s", path,
			    e->d_name, strerror(r));
			rc = INV_E_DB;
		}
		total += len;
		close(fd);
	}
	closedir(d);
	if (rc == INV_OK)
		log_debug("inventory", "region files in %s: %lld MB allocated", path, total >> 20);
	return rc;
}

/*
 * Before recovery recreates the environment: room for its regions, or a clear
 * refusal. (Recovery reads pages into the cache, which grows while Berkeley DB
 * has it, before reserve_regions can run.) The old region files go away first.
 */
static int
room_for_regions(const char *path, char *err, size_t errlen)
{
	struct statvfs vfs;
	long long have, old = 0;
	DIR *d;
	struct dirent *e;

	if (statvfs(path, &vfs) != 0)
		return INV_OK; /* cannot tell: Berkeley DB will say */
	if ((d = opendir(path))) {
		while ((e = readdir(d))) {
			struct stat st;
			if (region_file(e->d_name) && fstatat(dirfd(d), e->d_name, &st, 0) == 0)
				old += (long long)st.st_blocks * 512;
		}
		closedir(d);
	}
	have = (long long)vfs.f_bavail * (long long)vfs.f_frsize + old;
	if (have >= INV_REGION_BYTES)
		return INV_OK;
	snprintf(err, errlen,
	    "no space left on device: the database in %s needs %ld MB for "
	    "its region files, %lld MB are free",
	    path, INV_REGION_BYTES >> 20, have >> 20);
	return INV_E_DB;
}

static int
open_env(struct inventory *inv, const char *path, int flags, int joined, char *err, size_t errlen)
{
	u_int32_t oflags = DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG | DB_INIT_MPOOL;
	int ret, rc;

	if (!joined && (rc = room_for_regions(path, err, errlen)) != INV_OK)
		return rc;
	ret = db_env_create(&inv->env, 0);
	if (ret == 0) {
		inv->env->app_private = inv;
		inv->env->set_errcall(inv->env, bdb_errcall);
		inv->env->set_lk_detect(inv->env, DB_LOCK_DEFAULT);
		/* a range rebuild touches every record in one transaction */
		inv->env->set_lk_max_locks(inv->env, INV_LOCKS);
		inv->env->set_lk_max_objects(inv->env, INV_LOCKS);
		inv->env->set_lk_max_lockers(inv->env, INV_LOCKERS);
		inv->env->set_cachesize(inv->env, 0, INV_CACHE_BYTES, 1);
		inv->env->set_cache_max(inv->env, 0, INV_CACHE_BYTES);
		inv->env->set_lg_bsize(inv->env, INV_LOG_BUFFER);
		inv->env->set_lg_regionmax(inv->env, INV_LOG_REGION);
		inv->env->log_set_config(inv->env, DB_LOG_AUTO_REMOVE, 1);
		if (flags & INV_OPEN_NOSYNC)
			inv->env->set_flags(inv->env, DB_TXN_WRITE_NOSYNC, 1);
		if (!joined) {
			/* regions are written out as they are created, not left sparse */
			inv->env->set_flags(inv->env, DB_REGION_INIT, 1);
			oflags |= DB_CREATE | DB_RECOVER;
		}
		ret = inv->env->open(inv->env, path, oflags, 0640);
	}
	if (ret != 0) {
		snprintf(err, errlen, "cannot open the database environment %s: %s", path,
		    db_strerror(ret));
		return INV_E_DB;
	}
	return joined ? INV_OK : reserve_regions(path, err, errlen);
}

static int
open_all(struct inventory *inv, const char *path, int flags, char *err, size_t errlen)
{
	int ro = flags & INV_OPEN_READONLY, joined = 0, rc;
	char probe[4096];

	if (ro) {
		snprintf(probe, sizeof(probe), "%s/numbers.db", path);
		if (access(probe, F_OK) != 0) {
			snprintf(err, errlen,
			    "no inventory in %s (has numprovd run with this config?)", path);
			return INV_E_NOTFOUND;
		}
	} else if (mkdir(path, 0750) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return INV_E_DB;
	}
	rc = take_lock(path, &inv->lockfd, err, errlen);
	if (rc == INV_E_LOCKED && ro)
		joined = 1; /* numprovd is running: read beside it, without recovery */
	else if (rc != INV_OK)
		return rc;
	inv->joined = joined;
	if ((rc = open_env(inv, path, flags, joined, err, errlen)) != INV_OK)
		return rc;
	if ((rc = open_db(inv, &inv->numbers, "numbers.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->users, "users.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->ranges, "ranges.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->occ, "occupancy.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->quar, "quarantine.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->meta, "meta.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->dir, "directory.db", !ro, err, errlen)))
		return rc;
	if ((rc = rc_reload(inv)) != INV_OK)
		snprintf(err, errlen, "cannot read the ranges in %s", path);
	return rc;
}

int
inv_open(const char *path, int flags, struct inventory **out, char *err, size_t errlen)
{
	struct inventory *inv = calloc(1, sizeof(*inv));
	int rc;

	if (!inv) {
		snprintf(err, errlen, "out of memory");
		return INV_E_DB;
	}
	inv->lockfd = -1;
	rc = open_all(inv, path, flags, err, errlen);
	if (rc != INV_OK) {
		inv_close(inv);
		return rc;
	}
	*out = inv;
	return INV_OK;
}

int
inv_checkpoint(struct inventory *inv)
{
	int ret = inv->env->txn_checkpoint(inv->env, 0, 0, 0);

	if (ret == 0)
		ret = inv->env->log_archive(inv->env, NULL, DB_ARCH_REMOVE);
	return ret ? db_fail(inv->env, ret, "checkpoint") : INV_OK;
}

void
inv_close(struct inventory *inv)
{
	DB **dbs[] = { &inv->numbers, &inv->users, &inv->ranges, &inv->occ, &inv->quar, &inv->meta,
		&inv->dir };

	if (!inv)
		return;
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++)
		if (*dbs[i])
			(*dbs[i])->close(*dbs[i], 0);
	if (inv->env) {
		if (inv->lockfd >= 0) /* only the owner checkpoints */
			inv->env->txn_checkpoint(inv->env, 0, 0, 0);
		inv->env->close(inv->env, 0);
	}
	if (inv->lockfd >= 0)
		close(inv->lockfd);
	free(inv->rc);
	free(inv);
}

/* ---- verification ------------------------------------------------------- */

struct verify_ctx {
	struct inventory *inv;
	char *report;
	size_t len;
	int problems;
	uint64_t (*count)[INV__STATES]; /* per cached range, from the scan */
	uint64_t *bits;			/* per cached range: records inside its span */
};

static void verify_note(struct verify_ctx *v, const char *fmt, ...) NP_PRINTF(2, 3);

static void
verify_note(struct verify_ctx *v, const char *fmt, ...)
{
	size_t used = strlen(v->report);
	va_list ap;

	v->problems++;
	if (used + 2 >= v->len)
		return;
	if (used)
		v->report[used++] = '\n';
	va_start(ap, fmt);
	vsnprintf(v->report + used, v->len - used, fmt, ap);
	va_end(ap);
}

static int
verify_number(const struct inv_number *n, void *arg)
{
	struct verify_ctx *v = arg;
	struct rcache *c = n->range[0] ? rc_by_name(v->inv, n->range) : NULL;
	struct inv_user u;
	struct e164 num;
	uint64_t off;
	char err[160];

	if (n->state == INV_AVAILABLE || n->state >= INV__STATES)
		verify_note(v, "%s: bad state %d", n->number, n->state);
	if (n->range[0] && !c)
		verify_note(v, "%s: labelled with unknown range %s", n->number, n->range);
	if (c && n->state < INV__STATES)
		v->count[c - v->inv->rc][n->state]++;
	if (c && !c->r.removed) {
		if (e164_parse(n->number, &num, err, sizeof(err)) < 0
		    || !e164_range_contains(&c->span, &num, &off))
			verify_note(v, "%s: labelled %s but outside it", n->number, c->r.name);
		else
			v->bits[c - v->inv->rc]++;
	}
	if (n->state != INV_PENDING && n->state != INV_ASSIGNED)
		return 0;
	if (inv_get_user(v->inv, n->user_id, &u) != INV_OK)
		verify_note(v, "%s: %s for user %s, who has no record", n->number,
		    inv_state_name(n->state), n->user_id);
	else if (strcmp(u.number, n->number) != 0)
		verify_note(v, "%s: %s for user %s, whose number is %s", n->number,
		    inv_state_name(n->state), n->user_id, u.number);
	else if (u.state != n->state)
		verify_note(v, "%s: %s but user %s says %s", n->number, inv_state_name(n->state),
		    n->user_id, inv_state_name(u.state));
	return 0;
}

static int
verify_user(const struct inv_user *u, void *arg)
{
	struct verify_ctx *v = arg;
	struct inv_number n;

	if (num_get(v->inv, NULL, u->number, &n) != INV_OK)
		verify_note(v, "user %s holds %s, which has no record", u->id, u->number);
	else if (strcmp(n.user_id, u->id) != 0
	    || (n.state != INV_PENDING && n.state != INV_ASSIGNED))
		verify_note(v, "user %s holds %s, which is %s for '%s'", u->id, u->number,
		    inv_state_name(n.state), n.user_id);
	return 0;
}

/* Leaf bits set in a range's occupancy tree. */
static int
occ_leaf_bits(struct inventory *inv, const struct rcache *c, uint64_t *total)
{
	struct occ_key k;
	DBC *cur;
	DBT key, data;
	int ret;

	*total = 0;
	occ_key(&k, c->r.index, 0, 0);
	if ((ret = inv->occ->cursor(inv->occ, NULL, &cur, 0)) != 0)
		return db_fail(inv->env, ret, "cursor");
	dbt_init(&key, k.b, sizeof(k.b));
	memset(&data, 0, sizeof(data));
	for (ret = cur->get(cur, &key, &data, DB_SET_RANGE); ret == 0;
	     ret = cur->get(cur, &key, &data, DB_NEXT)) {
		uint64_t m;

		if (key.size != sizeof(k.b) || memcmp(key.data, k.b, 5) != 0)
			break;
		memcpy(&m, data.data, sizeof(m));
		*total += (uint64_t)__builtin_popcountll(m);
	}
	cur->close(cur);
	return (ret == 0 || ret == DB_NOTFOUND) ? INV_OK : db_fail(inv->env, ret, "cursor");
}

static void
verify_ranges(struct verify_ctx *v)
{
	for (size_t i = 0; i < v->inv->nrc; i++) {
		struct rcache *c = &v->inv->rc[i];
		struct inv_range stored;
		uint64_t bits;

		if (inv_get_range(v->inv, c->r.name, &stored) != INV_OK) {
			verify_note(v, "range %s: no record", c->r.name);
			continue;
		}
		for (int s = INV_RESERVED; s < INV__STATES; s++)
			if (stored.count[s] != v->count[i][s])
				verify_note(v, "range %s: %s count %llu, scan finds %llu",
				    c->r.name, inv_state_name(s),
				    (unsigned long long)stored.count[s],
				    (unsigned long long)v->count[i][s]);
		if (c->r.removed)
			continue;
		if (occ_leaf_bits(v->inv, c, &bits) != INV_OK)
			verify_note(v, "range %s: cannot read occupancy", c->r.name);
		else if (bits != v->bits[i])
			verify_note(v, "range %s: %llu numbers marked in use, %llu records",
			    c->r.name, (unsigned long long)bits, (unsigned long long)v->bits[i]);
	}
}

int
inv_verify(struct inventory *inv, char *report, size_t len)
{
	struct verify_ctx v = { inv, report, len, 0, NULL, NULL };
	int rc;

	report[0] = '\0';
	v.count = calloc(inv->nrc + 1, sizeof(*v.count));
	v.bits = calloc(inv->nrc + 1, sizeof(*v.bits));
	if (!v.count || !v.bits) {
		free(v.count);
		free(v.bits);
		return -1;
	}
	rc = inv_foreach_number(inv, verify_number, &v);
	if (rc == INV_OK)
		rc = inv_foreach_user(inv, verify_user, &v);
	if (rc == INV_OK)
		verify_ranges(&v);
	free(v.count);
	free(v.bits);
	return rc == INV_OK ? v.problems : -1;
}
