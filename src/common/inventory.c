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
#include <time.h>
#include <unistd.h>

#include "log.h"

#ifdef NP_VALGRIND_CHECKS
#include <valgrind/memcheck.h>
/* Under valgrind memcheck: every byte numprovd hands Berkeley DB to store must be
 * defined, checked here at the call. tests/valgrind.supp silences what libdb writes of
 * its own uninitialised stack padding; this check keeps our bytes out of that silence. */
#define CHECK_DEFINED(p, n) ((void)VALGRIND_CHECK_MEM_IS_DEFINED((p), (n)))
#else
#define CHECK_DEFINED(p, n) ((void)0)
#endif

#define INV_RETRY (-2) /* internal: deadlock, run the transaction again */
#define INV_TRIES 8

/*
 * The occupancy tree of a range, in memory: node (level, index) -> 64-bit
 * bitmap of "not available", an absent node being all free. Level 0 has a bit
 * per number; a bit above is set when the node below is full. Built from the
 * number records when the inventory is opened, kept in step by every change
 * (and put back by an aborted transaction's undo list), so it is never stored
 * and can never disagree with the records after a crash.
 */
#define OCC_LEVELS 10 /* 64^9 > 10^15, more than any range of E.164 numbers */

struct occmap {
	uint64_t *key, *val; /* open addressing; key OCC_EMPTY is a free slot */
	size_t cap, n;	     /* cap a power of two (or 0), n keys in use */
	int shift;	     /* 64 - log2(cap) */
};

/* A range as the inventory keeps it in memory: definition, counts, occupancy. */
struct rcache {
	struct inv_range r; /* r.count: from the records, kept in step */
	struct e164_range span;
	int depth;		      /* levels of the occupancy tree */
	uint64_t entries[OCC_LEVELS]; /* nodes' entries at each level */
	struct occmap occ;
};

/* What a transaction changed in memory, undone in reverse when it aborts. */
struct undo {
	uint32_t rc;  /* index into inventory.rc */
	uint8_t kind; /* UNDO_OCC: bit `off` set to `a`; UNDO_COUNT: a state -> b state */
	uint8_t a, b;
	uint8_t dec; /* UNDO_COUNT: count[a] was decremented */
	uint64_t off;
};
enum { UNDO_OCC, UNDO_COUNT };

struct inventory {
	DB_ENV *env;
	DB *numbers; /* canonical number -> number record; only numbers not available */
	DB *users;   /* user id -> user record; users holding a number */
	DB *ranges;  /* range name -> range record (its definition) */
	DB *quar;    /* (until, number) -> "": quarantines by end time */
	DB *meta;    /* name -> value */
	DB *dir;     /* user id -> JSON: the directory as last seen */
	int lockfd;
	int joined;   /* a reader beside a running numprovd */
	int readonly; /* INV_OPEN_READONLY: never writes, not even to relabel */
	int nospace;  /* the last write failed for lack of space (logged once) */
	int wrote;    /* the transaction running has changed something */
	struct rcache *rc;
	size_t nrc;
	struct undo *undo; /* the running transaction's changes to memory */
	size_t nundo, capundo;
	int64_t quar_next;  /* no quarantine ends before this (INT64_MIN: unknown) */
	int64_t quar_saved; /* quar_next when the running transaction began */
	/*
	 * Memory may disagree with the records (an undo ran out of memory, range
	 * definitions were stored but their trees not built, a record was found where
	 * memory said there was none): run_txn builds it all again from the records
	 * before any transaction, and refuses to write (INV_E_DB) while it cannot.
	 * Set before the change that makes memory wrong, cleared only by a derive()
	 * that succeeded.
	 */
	int stale;
	int stale_logged; /* the failed rebuild has been logged (once an episode) */
};

#define FORMAT_KEY "inventory.record-format"
#define FORMAT_NOW "2"
#define CONVERT_BATCH 1000 /* records per transaction of the one-time conversion */
/* a checkpoint every so many batches lets the log files written before it go */
#define CONVERT_CKPT_BATCHES 50

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

/* a DBT of bytes to be stored */
static void
dbt_store(DBT *d, const void *data, size_t size)
{
	CHECK_DEFINED(data, size);
	dbt_init(d, data, size);
}

/*
 * Read a record into buf (cap bytes) and set *len. INV_E_NOTFOUND when absent;
 * a record longer than any this code writes is garbled: logged with its key.
 */
static const char *key_text(const void *k, size_t klen, char *buf, size_t len);

static int
db_get_rec(
    DB *db, DB_TXN *txn, const void *k, size_t klen, void *buf, size_t cap, size_t *len, int rmw)
{
	DBT key, data;
	char kt[96];
	int ret;

	dbt_init(&key, k, klen);
	memset(&data, 0, sizeof(data));
	data.data = buf;
	data.ulen = (u_int32_t)cap;
	data.flags = DB_DBT_USERMEM;
	ret = db->get(db, txn, &key, &data, rmw ? DB_RMW : 0);
	if (ret == DB_NOTFOUND)
		return INV_E_NOTFOUND;
	if (ret == DB_BUFFER_SMALL) {
		log_err("inventory",
		    "record %s in %s cannot be read: %u bytes, longer than any record",
		    key_text(k, klen, kt, sizeof(kt)), db->fname ? db->fname : "?", data.size);
		return INV_E_DB;
	}
	if (ret != 0)
		return db_fail(db->dbenv, ret, "get");
	*len = data.size;
	return INV_OK;
}

/* INV_E_TAKEN (not logged) when flags has DB_NOOVERWRITE and the key is there. */
static int
db_put_flags(
    DB *db, DB_TXN *txn, const void *k, size_t klen, const void *buf, size_t len, u_int32_t flags)
{
	DBT key, data;
	int ret;

	dbt_store(&key, k, klen);
	dbt_store(&data, buf, len);
	ret = db->put(db, txn, &key, &data, flags);
	if (ret == 0)
		((struct inventory *)db->dbenv->app_private)->wrote = 1;
	if (ret == DB_KEYEXIST)
		return INV_E_TAKEN;
	return ret ? db_fail(db->dbenv, ret, "put") : INV_OK;
}

static int
db_put_fixed(DB *db, DB_TXN *txn, const void *k, size_t klen, const void *buf, size_t len)
{
	return db_put_flags(db, txn, k, klen, buf, len, 0);
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

/* ---- stored records ----------------------------------------------------- */

/*
 * Format 2 (now): the key is the number, user id or range name; the value is
 *
 *   0x00, version 2, then fixed fields little-endian, then strings as a length
 *   byte and the bytes (no NUL), in this order:
 *   number  state u8, flags u8, since i64, until i64, user_id, range label
 *   user    state u8, since i64, number, upn
 *   range   index u32, type u8, removed u8, size u64, provider, first, last
 *
 * Range counts and the occupancy tree are not stored: they follow from the
 * number records and are rebuilt from them when the inventory is opened.
 *
 * Format 1 (numprov before this one) stored the C structs themselves, copied
 * below as they were. Their first byte is the first of a non-empty string, never
 * 0x00, so the two cannot be taken one for the other. They are read (a reader
 * beside an old inventory, a conversion cut short) and converted once, at the
 * first writable open (convert_format).
 */
#define REC_MAGIC 0x00
#define REC_VERSION 2

struct inv_number_v1 {
	char number[32];
	uint8_t state;
	uint8_t flags;
	int64_t since;
	int64_t until;
	char user_id[64];
	char range[64];
};

struct inv_user_v1 {
	char id[64];
	char upn[256];
	char number[32];
	uint8_t state;
	int64_t since;
};

struct inv_range_v1 {
	char name[64];
	uint32_t index;
	uint8_t type;
	uint8_t removed;
	char provider[64];
	char first[32], last[32];
	uint64_t size;
	uint64_t count[5];
};

/* A key fit for a log line: printable ASCII, the rest as \xHH, cut short. */
static const char *
key_text(const void *k, size_t klen, char *buf, size_t len)
{
	const unsigned char *p = k;
	size_t o = 0, i;

	if (!klen)
		return "(empty key)";
	for (i = 0; i < klen && o + 6 < len; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			buf[o++] = (char)p[i];
		else
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", p[i]);
	}
	if (i < klen)
		buf[o++] = '~'; /* cut short */
	buf[o] = '\0';
	return buf;
}

struct wr {
	unsigned char *p;
	size_t cap, len; /* len > cap: did not fit */
};

static void
wr_u8(struct wr *w, unsigned v)
{
	if (w->len < w->cap)
		w->p[w->len] = (unsigned char)v;
	w->len++;
}

static void
wr_le(struct wr *w, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		wr_u8(w, (unsigned)(v >> (8 * i)) & 0xff);
}

/* A string of a fixed-size field: at most size - 1 bytes, up to its NUL. */
static void
wr_str(struct wr *w, const char *s, size_t size)
{
	size_t n = strnlen(s, size - 1);

	wr_u8(w, (unsigned)n);
	if (w->len + n <= w->cap)
		memcpy(w->p + w->len, s, n);
	w->len += n;
}

static size_t
wr_end(const struct wr *w)
{
	return w->len <= w->cap ? w->len : 0;
}

struct rd {
	const unsigned char *p;
	size_t len, pos;
	const char *why; /* the first thing wrong */
};

static int
rd_fail(struct rd *r, const char *why)
{
	if (!r->why)
		r->why = why;
	return 0;
}

static unsigned
rd_u8(struct rd *r)
{
	if (r->why || r->pos >= r->len)
		return (unsigned)rd_fail(r, "truncated");
	return r->p[r->pos++];
}

static uint64_t
rd_le(struct rd *r, int bytes)
{
	uint64_t v = 0;

	if (r->why || r->len - r->pos < (size_t)bytes)
		return (uint64_t)rd_fail(r, "truncated");
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)r->p[r->pos + (size_t)i] << (8 * i);
	r->pos += (size_t)bytes;
	return v;
}

/* Into a field of size bytes: shorter than it, no NUL inside. */
static void
rd_str(struct rd *r, char *dst, size_t size)
{
	size_t n = rd_u8(r);

	dst[0] = '\0';
	if (r->why)
		return;
	if (n >= size) {
		rd_fail(r, "a string longer than its field");
		return;
	}
	if (r->len - r->pos < n) {
		rd_fail(r, "truncated");
		return;
	}
	if (memchr(r->p + r->pos, '\0', n)) {
		rd_fail(r, "a NUL byte inside a string");
		return;
	}
	memcpy(dst, r->p + r->pos, n);
	dst[n] = '\0';
	r->pos += n;
}

static void
rd_head(struct rd *r)
{
	unsigned magic = rd_u8(r), version = rd_u8(r);

	if (!r->why && magic != REC_MAGIC)
		rd_fail(r, "not a record of any known format");
	else if (!r->why && version != REC_VERSION)
		rd_fail(r, "record format version unknown to this numprov");
}

static const char *
rd_end(struct rd *r)
{
	if (!r->why && r->pos != r->len)
		rd_fail(r, "bytes after the end of the record");
	return r->why;
}

/* The key into dst (size bytes): not empty, shorter than the field, no NUL. */
static const char *
dec_key(const void *k, size_t klen, char *dst, size_t size)
{
	dst[0] = '\0';
	if (klen == 0 || klen >= size)
		return klen ? "key longer than its field" : "empty key";
	if (memchr(k, '\0', klen))
		return "a NUL byte inside the key";
	memcpy(dst, k, klen);
	dst[klen] = '\0';
	return NULL;
}

/* A format 1 string field: NUL-terminated within the field. */
static int
v1_str(const char *field, size_t size, char *dst, size_t dstsize)
{
	size_t n = strnlen(field, size);

	if (n == size || n >= dstsize)
		return -1;
	memcpy(dst, field, n);
	dst[n] = '\0';
	return 0;
}

static int
is_v1(const unsigned char *d, size_t len, size_t v1size)
{
	return len == v1size && d[0] != REC_MAGIC;
}

size_t
inv_encode_number(const struct inv_number *n, unsigned char *buf, size_t len)
{
	struct wr w = { buf, len, 0 };

	wr_u8(&w, REC_MAGIC);
	wr_u8(&w, REC_VERSION);
	wr_u8(&w, n->state);
	wr_u8(&w, n->flags);
	wr_le(&w, (uint64_t)n->since, 8);
	wr_le(&w, (uint64_t)n->until, 8);
	wr_str(&w, n->user_id, sizeof(n->user_id));
	wr_str(&w, n->range, sizeof(n->range));
	return wr_end(&w);
}

static const char *
dec_number_v1(const unsigned char *d, struct inv_number *out)
{
	struct inv_number_v1 v;
	char key[sizeof(v.number)];

	memcpy(&v, d, sizeof(v));
	if (v1_str(v.number, sizeof(v.number), key, sizeof(key)) < 0
	    || strcmp(key, out->number) != 0)
		return "format 1 record for another number";
	if (v1_str(v.user_id, sizeof(v.user_id), out->user_id, sizeof(out->user_id)) < 0
	    || v1_str(v.range, sizeof(v.range), out->range, sizeof(out->range)) < 0)
		return "format 1 record with an unterminated string";
	out->state = v.state;
	out->flags = v.flags;
	out->since = v.since;
	out->until = v.until;
	return NULL;
}

static const char *
dec_number(const void *key, size_t klen, const void *data, size_t len, struct inv_number *out)
{
	struct rd r = { data, len, 0, NULL };
	const char *why;

	memset(out, 0, sizeof(*out));
	if ((why = dec_key(key, klen, out->number, sizeof(out->number))))
		return why;
	if (is_v1(data, len, sizeof(struct inv_number_v1)))
		why = dec_number_v1(data, out);
	else {
		rd_head(&r);
		out->state = (uint8_t)rd_u8(&r);
		out->flags = (uint8_t)rd_u8(&r);
		out->since = (int64_t)rd_le(&r, 8);
		out->until = (int64_t)rd_le(&r, 8);
		rd_str(&r, out->user_id, sizeof(out->user_id));
		rd_str(&r, out->range, sizeof(out->range));
		why = rd_end(&r);
	}
	if (!why && (out->state == INV_AVAILABLE || out->state >= INV__STATES))
		why = "no such state";
	else if (!why && (out->flags & ~INV_NF_CONFIG))
		why = "unknown flags";
	return why;
}

int
inv_decode_number(
    const void *key, size_t klen, const void *data, size_t len, struct inv_number *out)
{
	const char *why = dec_number(key, klen, data, len, out);
	char kt[96];

	if (!why)
		return INV_OK;
	log_err("inventory", "number record %s cannot be read: %s (%zu bytes)",
	    key_text(key, klen, kt, sizeof(kt)), why, len);
	return INV_E_DB;
}

size_t
inv_encode_user(const struct inv_user *u, unsigned char *buf, size_t len)
{
	struct wr w = { buf, len, 0 };

	wr_u8(&w, REC_MAGIC);
	wr_u8(&w, REC_VERSION);
	wr_u8(&w, u->state);
	wr_le(&w, (uint64_t)u->since, 8);
	wr_str(&w, u->number, sizeof(u->number));
	wr_str(&w, u->upn, sizeof(u->upn));
	return wr_end(&w);
}

static const char *
dec_user_v1(const unsigned char *d, struct inv_user *out)
{
	struct inv_user_v1 v;
	char key[sizeof(v.id)];

	memcpy(&v, d, sizeof(v));
	if (v1_str(v.id, sizeof(v.id), key, sizeof(key)) < 0 || strcmp(key, out->id) != 0)
		return "format 1 record for another user";
	if (v1_str(v.upn, sizeof(v.upn), out->upn, sizeof(out->upn)) < 0
	    || v1_str(v.number, sizeof(v.number), out->number, sizeof(out->number)) < 0)
		return "format 1 record with an unterminated string";
	out->state = v.state;
	out->since = v.since;
	return NULL;
}

static const char *
dec_user(const void *key, size_t klen, const void *data, size_t len, struct inv_user *out)
{
	struct rd r = { data, len, 0, NULL };
	const char *why;

	memset(out, 0, sizeof(*out));
	if ((why = dec_key(key, klen, out->id, sizeof(out->id))))
		return why;
	if (is_v1(data, len, sizeof(struct inv_user_v1)))
		why = dec_user_v1(data, out);
	else {
		rd_head(&r);
		out->state = (uint8_t)rd_u8(&r);
		out->since = (int64_t)rd_le(&r, 8);
		rd_str(&r, out->number, sizeof(out->number));
		rd_str(&r, out->upn, sizeof(out->upn));
		why = rd_end(&r);
	}
	if (!why && out->state != INV_PENDING && out->state != INV_ASSIGNED)
		why = "a user's number is pending or assigned, nothing else";
	else if (!why && !out->number[0])
		why = "no number";
	return why;
}

int
inv_decode_user(const void *key, size_t klen, const void *data, size_t len, struct inv_user *out)
{
	const char *why = dec_user(key, klen, data, len, out);
	char kt[96];

	if (!why)
		return INV_OK;
	log_err("inventory", "user record %s cannot be read: %s (%zu bytes)",
	    key_text(key, klen, kt, sizeof(kt)), why, len);
	return INV_E_DB;
}

size_t
inv_encode_range(const struct inv_range *r, unsigned char *buf, size_t len)
{
	struct wr w = { buf, len, 0 };

	wr_u8(&w, REC_MAGIC);
	wr_u8(&w, REC_VERSION);
	wr_le(&w, r->index, 4);
	wr_u8(&w, r->type);
	wr_u8(&w, r->removed);
	wr_le(&w, r->size, 8);
	wr_str(&w, r->provider, sizeof(r->provider));
	wr_str(&w, r->first, sizeof(r->first));
	wr_str(&w, r->last, sizeof(r->last));
	return wr_end(&w);
}

static const char *
dec_range_v1(const unsigned char *d, struct inv_range *out)
{
	struct inv_range_v1 v;
	char key[sizeof(v.name)];

	memcpy(&v, d, sizeof(v));
	if (v1_str(v.name, sizeof(v.name), key, sizeof(key)) < 0 || strcmp(key, out->name) != 0)
		return "format 1 record for another range";
	if (v1_str(v.provider, sizeof(v.provider), out->provider, sizeof(out->provider)) < 0
	    || v1_str(v.first, sizeof(v.first), out->first, sizeof(out->first)) < 0
	    || v1_str(v.last, sizeof(v.last), out->last, sizeof(out->last)) < 0)
		return "format 1 record with an unterminated string";
	out->index = v.index;
	out->type = v.type;
	out->removed = v.removed;
	out->size = v.size;
	return NULL; /* its counts are not taken: they are rebuilt from the numbers */
}

static const char *
dec_range(const void *key, size_t klen, const void *data, size_t len, struct inv_range *out)
{
	struct rd r = { data, len, 0, NULL };
	const char *why;

	memset(out, 0, sizeof(*out));
	if ((why = dec_key(key, klen, out->name, sizeof(out->name))))
		return why;
	if (is_v1(data, len, sizeof(struct inv_range_v1)))
		why = dec_range_v1(data, out);
	else {
		rd_head(&r);
		out->index = (uint32_t)rd_le(&r, 4);
		out->type = (uint8_t)rd_u8(&r);
		out->removed = (uint8_t)rd_u8(&r);
		out->size = rd_le(&r, 8);
		rd_str(&r, out->provider, sizeof(out->provider));
		rd_str(&r, out->first, sizeof(out->first));
		rd_str(&r, out->last, sizeof(out->last));
		why = rd_end(&r);
	}
	if (!why && out->removed > 1)
		why = "removed is neither 0 nor 1";
	return why;
}

int
inv_decode_range(const void *key, size_t klen, const void *data, size_t len, struct inv_range *out)
{
	const char *why = dec_range(key, klen, data, len, out);
	char kt[96];

	if (!why)
		return INV_OK;
	log_err("inventory", "range record %s cannot be read: %s (%zu bytes)",
	    key_text(key, klen, kt, sizeof(kt)), why, len);
	return INV_E_DB;
}

/* ---- the occupancy tree in memory --------------------------------------- */

#define OCC_EMPTY UINT64_MAX

static uint64_t
occ_node_key(int level, uint64_t node)
{
	return ((uint64_t)level << 56) | node;
}

static size_t
occmap_slot(const struct occmap *m, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> m->shift);
}

static uint64_t
occmap_get(const struct occmap *m, uint64_t key)
{
	if (!m->cap)
		return 0;
	for (size_t i = occmap_slot(m, key);; i = (i + 1) & (m->cap - 1)) {
		if (m->key[i] == key)
			return m->val[i];
		if (m->key[i] == OCC_EMPTY)
			return 0;
	}
}

/* Set in a map with room (occmap_room); a key once in stays (all free when 0). */
static void
occmap_put(struct occmap *m, uint64_t key, uint64_t val)
{
	size_t i = occmap_slot(m, key);

	while (m->key[i] != key && m->key[i] != OCC_EMPTY)
		i = (i + 1) & (m->cap - 1);
	if (m->key[i] == OCC_EMPTY) {
		if (!val)
			return;
		m->key[i] = key;
		m->n++;
	}
	m->val[i] = val;
}

static void
occmap_free(struct occmap *m)
{
	free(m->key);
	free(m->val);
	memset(m, 0, sizeof(*m));
}

/* Room for `more` new keys at a load of at most one half. -1 when out of memory. */
static int
occmap_room(struct occmap *m, size_t more)
{
	struct occmap g = { NULL, NULL, m->cap ? m->cap : 64, 0, 0 };

	if ((m->n + more) * 2 <= m->cap)
		return 0;
	while ((m->n + more) * 2 > g.cap)
		g.cap *= 2;
	g.shift = 64 - __builtin_ctzll(g.cap);
	g.key = malloc(g.cap * sizeof(*g.key));
	g.val = malloc(g.cap * sizeof(*g.val));
	if (!g.key || !g.val) {
		free(g.key);
		free(g.val);
		log_err("inventory", "out of memory for an occupancy tree");
		return -1;
	}
	memset(g.key, 0xff, g.cap * sizeof(*g.key));
	for (size_t i = 0; i < m->cap; i++)
		if (m->key[i] != OCC_EMPTY && m->val[i])
			occmap_put(&g, m->key[i], m->val[i]);
	occmap_free(m);
	*m = g;
	return 0;
}

/* Bits of node `node` at `level` that stand for real entries. */
static uint64_t
occ_valid(const struct rcache *c, int level, uint64_t node)
{
	uint64_t left = c->entries[level] - node * 64;

	return left >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << left) - 1);
}

static int
occ_used(const struct rcache *c, uint64_t off)
{
	return (int)(occmap_get(&c->occ, occ_node_key(0, off / 64)) >> (off % 64)) & 1;
}

/*
 * Mark one offset used or free; a node turning full or not full tells its parent.
 * The map must have room for c->depth new keys.
 */
static void
occ_mark(struct rcache *c, uint64_t off, int used)
{
	uint64_t node = off / 64, bit = (uint64_t)1 << (off % 64);

	for (int level = 0; level < c->depth; level++) {
		uint64_t key = occ_node_key(level, node), m = occmap_get(&c->occ, key);
		uint64_t valid = occ_valid(c, level, node);
		int wasfull = (m & valid) == valid, isfull;

		m = used ? (m | bit) : (m & ~bit);
		occmap_put(&c->occ, key, m);
		isfull = (m & valid) == valid;
		if (wasfull == isfull)
			break;
		used = isfull;
		bit = (uint64_t)1 << (node % 64);
		node /= 64;
	}
}

/* Lowest free offset: one node per level, from the root down. */
static int
occ_find(const struct rcache *c, uint64_t *off)
{
	uint64_t node = 0;

	for (int level = c->depth - 1; level >= 0; level--) {
		uint64_t m = occmap_get(&c->occ, occ_node_key(level, node));
		uint64_t free_bits = ~m & occ_valid(c, level, node);

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

/* Lowest free offset at or above `from`: up while nodes have nothing free, then down. */
static int
occ_find_from(const struct rcache *c, uint64_t from, uint64_t *off)
{
	uint64_t pos = from; /* an entry of `level`: a number, or a node of the level below */
	int level = 0;

	if (from >= c->span.size)
		return INV_E_FULL;
	for (;;) {
		uint64_t node = pos / 64, m = occmap_get(&c->occ, occ_node_key(level, node));
		uint64_t free_bits = ~m & occ_valid(c, level, node) & (~(uint64_t)0 << (pos % 64));

		if (free_bits) {
			pos = node * 64 + (uint64_t)__builtin_ctzll(free_bits);
			break;
		}
		if (++level >= c->depth || (pos = node + 1) >= c->entries[level])
			return INV_E_FULL;
	}
	while (level-- > 0) {
		uint64_t m = occmap_get(&c->occ, occ_node_key(level, pos));
		uint64_t free_bits = ~m & occ_valid(c, level, pos);

		if (!free_bits) {
			log_err("inventory", "range %s: occupancy tree inconsistent at level %d",
			    c->r.name, level);
			return INV_E_FULL;
		}
		pos = pos * 64 + (uint64_t)__builtin_ctzll(free_bits);
	}
	*off = pos;
	return INV_OK;
}

/* ---- changes to memory, undone when their transaction aborts ------------ */

static struct rcache *rc_by_name(struct inventory *inv, const char *name);

static int
undo_push(struct inventory *inv, const struct undo *u)
{
	if (inv->nundo == inv->capundo) {
		size_t cap = inv->capundo ? 2 * inv->capundo : 64;
		struct undo *g = realloc(inv->undo, cap * sizeof(*g));

		if (!g) {
			log_err("inventory", "out of memory for a transaction's undo list");
			return INV_E_DB;
		}
		inv->undo = g;
		inv->capundo = cap;
	}
	inv->undo[inv->nundo++] = *u;
	return INV_OK;
}

/* Number `off` of range c used or free, in memory, for the running transaction. */
static int
mem_mark(struct inventory *inv, struct rcache *c, uint64_t off, int used)
{
	struct undo u = { (uint32_t)(c - inv->rc), UNDO_OCC, (uint8_t) !!used, 0, 0, off };

	if (occ_used(c, off) == !!used)
		return INV_OK;
	if (occmap_room(&c->occ, (size_t)c->depth) < 0 || undo_push(inv, &u) != INV_OK)
		return INV_E_DB;
	occ_mark(c, off, used);
	return INV_OK;
}

static void
count_move(struct rcache *c, int from, int to, int *dec)
{
	*dec = from != INV_AVAILABLE && c->r.count[from] > 0;
	if (*dec)
		c->r.count[from]--;
	if (to != INV_AVAILABLE)
		c->r.count[to]++;
}

/* A number labelled `label` moves from state `from` to `to`: the range's counts. */
static int
mem_count(struct inventory *inv, const char *label, int from, int to)
{
	struct rcache *c = NULL;
	struct undo u = { 0, UNDO_COUNT, (uint8_t)from, (uint8_t)to, 0, 0 };
	int dec;

	if (!label[0] || from == to)
		return INV_OK;
	if (!(c = rc_by_name(inv, label)))
		return INV_OK; /* a label no range has: counted nowhere */
	u.rc = (uint32_t)(c - inv->rc);
	if (undo_push(inv, &u) != INV_OK)
		return INV_E_DB;
	count_move(c, from, to, &dec);
	inv->undo[inv->nundo - 1].dec = (uint8_t)dec;
	return INV_OK;
}

/* The transaction aborted: memory goes back to how the records are. */
static void
undo_all(struct inventory *inv)
{
	while (inv->nundo > 0) {
		const struct undo *u = &inv->undo[--inv->nundo];
		struct rcache *c = &inv->rc[u->rc];

		if (u->kind == UNDO_OCC) {
			if (occmap_room(&c->occ, (size_t)c->depth) == 0)
				occ_mark(c, u->off, !u->a);
			else
				inv->stale = 1; /* out of memory: run_txn builds it all again */
			continue;
		}
		if (u->b != INV_AVAILABLE && c->r.count[u->b] > 0)
			c->r.count[u->b]--;
		if (u->dec)
			c->r.count[u->a]++;
	}
	inv->quar_next = inv->quar_saved;
}

/* ---- transactions ------------------------------------------------------- */

/* Run body in a transaction, again on deadlock; commit on INV_OK, else abort. */
typedef int (*txn_body)(struct inventory *inv, DB_TXN *txn, void *ctx);

static int refresh(struct inventory *inv);

/*
 * run_txn, and with fresh == 0 the transactions of a rebuild itself: those touch
 * no memory and must not start another rebuild.
 */
static int
txn_loop(struct inventory *inv, txn_body body, void *ctx, int fresh)
{
	for (int tries = 0; tries < INV_TRIES; tries++) {
		DB_TXN *txn;
		int ret, rc;

		/* every attempt: an abort whose undo ran out of memory leaves memory stale */
		if (fresh && inv->stale && refresh(inv) != INV_OK)
			return INV_E_DB;
		if ((ret = inv->env->txn_begin(inv->env, NULL, &txn, 0)) != 0)
			return db_fail(inv->env, ret, "txn_begin");
		inv->wrote = 0;
		inv->nundo = 0;
		inv->quar_saved = inv->quar_next;
		rc = body(inv, txn, ctx);
		if (rc != INV_OK) {
			/* nothing of it stays; an abort that fails has panicked the environment */
			if ((ret = txn->abort(txn)) != 0)
				db_fail(inv->env, ret, "abort");
			undo_all(inv);
			if (rc == INV_RETRY)
				continue;
			return rc;
		}
		/* a commit that fails has aborted the transaction */
		ret = txn->commit(txn, 0);
		if (ret == 0) {
			inv->nundo = 0;
			if (inv->nospace && inv->wrote) {
				inv->nospace = 0;
				log_notice("inventory", "the database in %s can be written again",
				    env_home(inv->env));
			}
			return INV_OK;
		}
		undo_all(inv);
		rc = db_fail(inv->env, ret, "commit");
		if (rc != INV_RETRY)
			return rc;
	}
	log_err("bdb", "giving up after %d deadlocks", INV_TRIES);
	return INV_E_DB;
}

static int
run_txn(struct inventory *inv, txn_body body, void *ctx)
{
	return txn_loop(inv, body, ctx, 1);
}

/* ---- the in-memory range list ------------------------------------------- */

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

static void
rc_free(struct rcache *rc, size_t n)
{
	for (size_t i = 0; i < n; i++)
		occmap_free(&rc[i].occ);
	free(rc);
}

/* A stored definition into c: its span and tree shape; no counts, an empty tree. */
static int
rc_init(struct rcache *c, const struct inv_range *r)
{
	char err[200];
	uint64_t n;

	memset(c, 0, sizeof(*c));
	c->r = *r;
	memset(c->r.count, 0, sizeof(c->r.count));
	if (e164_range_init(&c->span, r->first, r->last, err, sizeof(err)) < 0) {
		log_err("inventory", "stored range %s: %s", r->name, err);
		return INV_E_DB;
	}
	n = c->span.size;
	c->depth = 0;
	do {
		c->entries[c->depth++] = n;
		n = (n + 63) / 64;
	} while (c->entries[c->depth - 1] > 64 && c->depth < OCC_LEVELS);
	return INV_OK;
}

/* ---- number and user records, and their transitions --------------------- */

#define REC_BUF INV_REC_MAX    /* room for any record of either format */
#define OFF_UNKNOWN UINT64_MAX /* transition(): the offset is not known yet */

static void
copy_str(char *dst, size_t len, const char *src)
{
	size_t n = src ? strnlen(src, len - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

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
	unsigned char buf[REC_BUF];
	size_t len, klen = strlen(number);
	int rc = db_get_rec(inv->numbers, txn, number, klen, buf, sizeof(buf), &len, txn != NULL);

	if (rc == INV_E_NOTFOUND) {
		memset(out, 0, sizeof(*out));
		copy_str(out->number, sizeof(out->number), number);
	}
	return rc == INV_OK ? inv_decode_number(number, klen, buf, len, out) : rc;
}

static int
num_put(struct inventory *inv, DB_TXN *txn, const struct inv_number *n, u_int32_t flags)
{
	unsigned char buf[REC_BUF];
	size_t len = inv_encode_number(n, buf, sizeof(buf));

	return db_put_flags(inv->numbers, txn, n->number, strlen(n->number), buf, len, flags);
}

static int
user_get(struct inventory *inv, DB_TXN *txn, const char *id, struct inv_user *out)
{
	unsigned char buf[REC_BUF];
	size_t len, klen = strlen(id);
	int rc = db_get_rec(inv->users, txn, id, klen, buf, sizeof(buf), &len, txn != NULL);

	return rc == INV_OK ? inv_decode_user(id, klen, buf, len, out) : rc;
}

/* INV_E_TAKEN when flags has DB_NOOVERWRITE and the user has a record. */
static int
user_put(struct inventory *inv, DB_TXN *txn, const struct inv_user *u, u_int32_t flags)
{
	unsigned char buf[REC_BUF];
	size_t len = inv_encode_user(u, buf, sizeof(buf));

	return db_put_flags(inv->users, txn, u->id, strlen(u->id), buf, len, flags);
}

static int
user_del(struct inventory *inv, DB_TXN *txn, const char *id)
{
	return db_del(inv->users, txn, id, strlen(id));
}

/*
 * Move a number from *old to *new (state INV_AVAILABLE means no record): counts
 * and occupancy in memory, the quarantine index and the record itself in txn.
 * off is the number's offset in its range when the caller knows it.
 */
static int
transition(struct inventory *inv, DB_TXN *txn, const struct inv_number *old,
    const struct inv_number *new, uint64_t off)
{
	int was = old->state != INV_AVAILABLE, is = new->state != INV_AVAILABLE, rc;
	struct rcache *c = new->range[0] ? rc_by_name(inv, new->range) : NULL;
	struct quar_key qk;

	if ((rc = mem_count(inv, new->range, old->state, new->state)) != INV_OK)
		return rc;
	if (c && !c->r.removed && was != is) {
		struct e164 n;
		char err[160];

		if (off == OFF_UNKNOWN
		    && (e164_parse(new->number, &n, err, sizeof(err)) < 0
			|| !e164_range_contains(&c->span, &n, &off))) {
			log_err("inventory", "%s is not in range %s", new->number, c->r.name);
			return INV_E_DB;
		}
		if ((rc = mem_mark(inv, c, off, is)) != INV_OK)
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
		if (new->until < inv->quar_next)
			inv->quar_next = new->until;
	}
	if (!is)
		return db_del(inv->numbers, txn, new->number, strlen(new->number));
	if (was)
		return num_put(inv, txn, new, 0); /* a change: the read before is the check */
	/*
	 * A new record, for a number memory says is available (the tree, or a read
	 * that found nothing): one already there means memory disagrees with the
	 * records. Nothing is written (the transaction aborts) and memory is built
	 * again from the records before the next transaction.
	 */
	if ((rc = num_put(inv, txn, new, DB_NOOVERWRITE)) == INV_E_TAKEN) {
		log_err("inventory",
		    "%s already has a record, though the inventory in memory has it "
		    "available: refused; memory is rebuilt from the records",
		    new->number);
		inv->stale = 1;
		return INV_E_DB;
	}
	return rc;
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

/*
 * Quarantines that have ended go back to the pool. inv->quar_next (the earliest
 * end, as far as is known) spares the look into the index when none can have.
 */
static int
expire_in(struct inventory *inv, DB_TXN *txn, time_t now, int *count)
{
	DBC *cur;
	DBT key, data;
	int ret, rc = INV_OK, known = 1;
	int64_t next = INT64_MAX;

	if (inv->quar_next > (int64_t)now)
		return INV_OK;
	if ((ret = inv->quar->cursor(inv->quar, txn, &cur, 0)) != 0)
		return db_fail(inv->env, ret, "cursor");
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	while ((ret = cur->get(cur, &key, &data, DB_NEXT | DB_RMW)) == 0) {
		const unsigned char *b = key.data;
		int64_t until = 0;
		char number[E164_STRLEN];
		struct inv_number old, new;

		if (key.size <= 8 || key.size - 8 >= E164_STRLEN) {
			known = 0; /* a garbled key: stop here, as before */
			break;
		}
		for (int i = 0; i < 8; i++)
			until = (int64_t)(((uint64_t)until << 8) | b[i]);
		if (until > (int64_t)now) {
			next = until;
			break;
		}
		memcpy(number, b + 8, key.size - 8);
		number[key.size - 8] = '\0';
		memset(&old, 0, sizeof(old));
		if ((rc = num_get(inv, txn, number, &old)) == INV_RETRY)
			break; /* a deadlock: the transaction runs again */
		if (rc == INV_E_NOTFOUND || old.state != INV_QUARANTINED || old.until != until) {
			/* a stale index entry: drop it alone */
			if ((ret = cur->del(cur, 0)) != 0) {
				rc = db_fail(inv->env, ret, "quarantine index del");
				ret = 0;
				break;
			}
			rc = INV_OK;
			continue;
		}
		if (rc != INV_OK)
			break;
		new = old;
		new.state = INV_AVAILABLE;
		if ((rc = transition(inv, txn, &old, &new, OFF_UNKNOWN)) != INV_OK)
			break;
		(*count)++;
	}
	cur->close(cur);
	if (rc != INV_OK)
		return rc;
	if (ret != 0 && ret != DB_NOTFOUND)
		return db_fail(inv->env, ret, "quarantine cursor");
	if (known)
		inv->quar_next = next;
	return INV_OK;
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
	uint64_t from; /* peek: the lowest offset it may give */
	struct inv_number out;
};

/* The user already holds a number: which (INV_E_USER_HAS), or why that cannot be told. */
static int
user_has(struct inventory *inv, DB_TXN *txn, struct op *op)
{
	struct inv_user u;
	int rc = user_get(inv, txn, op->user_id, &u);

	if (rc != INV_OK)
		return rc;
	copy_str(op->out.number, sizeof(op->out.number), u.number);
	return INV_E_USER_HAS;
}

/*
 * The number comes from the tree in memory, which marks every number with a
 * record. The user's record is written with DB_NOOVERWRITE: that is the check
 * that the user holds no number, and their record is read only when they do.
 */
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
	if ((rc = expire_in(inv, txn, op->now, &expired)) != INV_OK)
		return rc;
	if ((rc = occ_find(c, &off)) != INV_OK) {
		/* the user's own number first, as when the range has room */
		rc = rc == INV_E_FULL ? user_has(inv, txn, op) : rc;
		return rc == INV_E_NOTFOUND ? INV_E_FULL : rc;
	}
	memset(&new, 0, sizeof(new));
	e164_range_number(&c->span, off, &n);
	e164_format(&n, new.number, sizeof(new.number));
	new.state = INV_PENDING;
	new.since = op->now;
	copy_str(new.user_id, sizeof(new.user_id), op->user_id);
	copy_str(new.range, sizeof(new.range), c->r.name);
	memset(&old, 0, sizeof(old));
	memcpy(old.number, new.number, sizeof(old.number));
	if ((rc = transition(inv, txn, &old, &new, off)) != INV_OK)
		return rc;
	memset(&u, 0, sizeof(u));
	copy_str(u.id, sizeof(u.id), op->user_id);
	copy_str(u.upn, sizeof(u.upn), op->upn);
	memcpy(u.number, new.number, sizeof(u.number));
	u.state = INV_PENDING;
	u.since = op->now;
	if ((rc = user_put(inv, txn, &u, DB_NOOVERWRITE)) == INV_E_TAKEN)
		return (rc = user_has(inv, txn, op)) == INV_E_NOTFOUND ? INV_E_DB : rc;
	op->out = new;
	return rc;
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
	if ((rc = transition(inv, txn, &old, &new, OFF_UNKNOWN)) != INV_OK)
		return rc;
	if ((rc = user_get(inv, txn, op->user_id, &u)) != INV_OK)
		return rc == INV_E_NOTFOUND ? INV_E_DB : rc;
	u.state = INV_ASSIGNED;
	u.since = op->now;
	return user_put(inv, txn, &u, 0);
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
	if ((rc = transition(inv, txn, &old, &new, OFF_UNKNOWN)) != INV_OK)
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
	if ((rc = transition(inv, txn, &old, &new, OFF_UNKNOWN)) != INV_OK)
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
		return transition(inv, txn, &old, &new, OFF_UNKNOWN);
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
	return transition(inv, txn, &old, &new, OFF_UNKNOWN);
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
	return transition(inv, txn, &old, &new, OFF_UNKNOWN);
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
	if ((rc = transition(inv, txn, &old, &new, OFF_UNKNOWN)) != INV_OK)
		return rc;
	memset(&u, 0, sizeof(u));
	copy_str(u.id, sizeof(u.id), op->user_id);
	copy_str(u.upn, sizeof(u.upn), op->upn);
	copy_str(u.number, sizeof(u.number), op->number);
	u.state = (uint8_t)op->state;
	u.since = new.since;
	op->out = new;
	return user_put(inv, txn, &u, 0);
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
	return user_get(inv, NULL, user_id, out);
}

/* From memory: the counts are kept there, not in the range's record. */
int
inv_get_range(struct inventory *inv, const char *name, struct inv_range *out)
{
	struct rcache *c = rc_by_name(inv, name);

	if (!c)
		return INV_E_NOTFOUND;
	*out = c->r;
	return INV_OK;
}

/*
 * Walk a database in key order. A record that cannot be decoded is logged with
 * its key and passed to bad (when given), then left out; cb stops the walk by
 * returning non-zero.
 */
typedef int (*rec_decode)(const void *k, size_t kl, const void *d, size_t l, void *out);
typedef int (*rec_cb)(const void *rec, void *arg);
typedef void (*rec_bad)(const void *k, size_t kl, const void *d, size_t l, void *arg);

static int
walk(DB *db, DB_TXN *txn, void *rec, rec_decode dec, rec_cb cb, rec_bad bad, void *arg)
{
	DBC *cur;
	DBT key, data;
	int ret, stop = 0;

	if ((ret = db->cursor(db, txn, &cur, 0)) != 0)
		return db_fail(db->dbenv, ret, "cursor");
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	while (!stop && (ret = cur->get(cur, &key, &data, DB_NEXT)) == 0) {
		if (dec(key.data, key.size, data.data, data.size, rec) == INV_OK)
			stop = cb(rec, arg);
		else if (bad)
			bad(key.data, key.size, data.data, data.size, arg);
	}
	cur->close(cur);
	if (ret != 0 && ret != DB_NOTFOUND)
		return db_fail(db->dbenv, ret, "cursor");
	return stop ? 1 : INV_OK;
}

static int
dec_number_any(const void *k, size_t kl, const void *d, size_t l, void *out)
{
	return inv_decode_number(k, kl, d, l, out);
}

static int
dec_user_any(const void *k, size_t kl, const void *d, size_t l, void *out)
{
	return inv_decode_user(k, kl, d, l, out);
}

static int
dec_range_any(const void *k, size_t kl, const void *d, size_t l, void *out)
{
	return inv_decode_range(k, kl, d, l, out);
}

struct cb_wrap {
	void *cb;
	void *arg;
};

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
	for (size_t i = 0; i < inv->nrc; i++) {
		struct inv_range r = inv->rc[i].r;

		if (cb(&r, arg))
			return 1;
	}
	return INV_OK;
}

int
inv_foreach_number(struct inventory *inv, inv_number_cb cb, void *arg)
{
	struct cb_wrap w = { (void *)cb, arg };
	struct inv_number n;

	return walk(inv->numbers, NULL, &n, dec_number_any, number_tramp, NULL, &w);
}

int
inv_foreach_user(struct inventory *inv, inv_user_cb cb, void *arg)
{
	struct cb_wrap w = { (void *)cb, arg };
	struct inv_user u;

	return walk(inv->users, NULL, &u, dec_user_any, user_tramp, NULL, &w);
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
	if (op->number[0]) { /* after this number */
		struct e164 a;
		char err[160];

		if (e164_parse(op->number, &a, err, sizeof(err)) < 0
		    || !e164_range_contains(&c->span, &a, &op->from))
			return INV_E_NOTFOUND;
		op->from++;
	}
	if ((rc = expire_in(inv, txn, op->now, &expired)) != INV_OK
	    || (rc = occ_find_from(c, op->from, &off)) != INV_OK)
		return rc;
	e164_range_number(&c->span, off, &n);
	memset(&op->out, 0, sizeof(op->out));
	e164_format(&n, op->out.number, sizeof(op->out.number));
	copy_str(op->out.range, sizeof(op->out.range), c->r.name);
	return INV_RETRY - 1; /* not INV_OK: run_txn aborts, nothing is written */
}

int
inv_peek_after(
    struct inventory *inv, const char *range, time_t now, const char *after, struct inv_number *out)
{
	struct op op = { .range = range, .now = now };
	int rc;

	copy_str(op.number, sizeof(op.number), after);
	rc = run_txn(inv, peek_body, &op);

	if (rc == INV_RETRY - 1) {
		*out = op.out;
		return INV_OK;
	}
	return rc;
}

int
inv_peek(struct inventory *inv, const char *range, time_t now, struct inv_number *out)
{
	return inv_peek_after(inv, range, now, NULL, out);
}

/* ---- counts and occupancy from the records ------------------------------ */

static const char *label_for(struct inventory *inv, const struct inv_number *rec);
static int rebuild_body(struct inventory *inv, DB_TXN *txn, void *arg);

struct derive_ctx {
	struct inventory *inv;
	int rc;
	int stop;	  /* stop at the first record labelled other than where it lies */
	long mislabelled; /* records whose label is not the range holding them */
};

static int
derive_number(const void *rec, void *arg)
{
	const struct inv_number *n = rec;
	struct derive_ctx *d = arg;
	struct rcache *c = n->range[0] ? rc_by_name(d->inv, n->range) : NULL;
	struct e164 num;
	uint64_t off;
	char err[160];

	/* what inv_sync_ranges' relabelling would change: it has not run (a crash) */
	if (strcmp(n->range, label_for(d->inv, n)) != 0) {
		d->mislabelled++;
		if (d->stop)
			return 1;
	}
	if (c)
		c->r.count[n->state]++;
	/* by where the number lies, whatever its label says (inv_verify tells) */
	if (e164_parse(n->number, &num, err, sizeof(err)) < 0
	    || !(c = rc_containing(d->inv, &num, &off)))
		return 0;
	if (occmap_room(&c->occ, (size_t)c->depth) < 0) {
		d->rc = INV_E_DB;
		return 1;
	}
	occ_mark(c, off, 1);
	return 0;
}

/* A record that cannot be read (logged) is kept out of the pool all the same. */
static void
derive_bad(const void *k, size_t kl, const void *data, size_t len, void *arg)
{
	struct derive_ctx *d = arg;
	char text[E164_STRLEN], err[160];
	struct rcache *c;
	struct e164 num;
	uint64_t off;

	(void)data;
	(void)len;
	if (dec_key(k, kl, text, sizeof(text)) || e164_parse(text, &num, err, sizeof(err)) < 0
	    || !(c = rc_containing(d->inv, &num, &off)))
		return;
	if (occmap_room(&c->occ, (size_t)c->depth) == 0)
		occ_mark(c, off, 1);
}

/* One scan of the number records into counts and trees (stop: see derive_ctx). */
static int
derive_scan(struct inventory *inv, DB_TXN *txn, int stop, long *mislabelled)
{
	struct derive_ctx d = { inv, INV_OK, stop, 0 };
	struct inv_number n;
	int rc;

	for (size_t i = 0; i < inv->nrc; i++) {
		occmap_free(&inv->rc[i].occ);
		memset(inv->rc[i].r.count, 0, sizeof(inv->rc[i].r.count));
	}
	inv->quar_next = INT64_MIN; /* the first allocation looks */
	rc = walk(inv->numbers, txn, &n, dec_number_any, derive_number, derive_bad, &d);
	if (rc == 1)
		rc = d.rc; /* INV_OK when it stopped at a record to relabel */
	*mislabelled = d.mislabelled;
	return rc;
}

/*
 * Counts and trees of every range from a scan of the number records. Records
 * labelled with a range other than the one holding them now are relabelled
 * first, in one transaction (by the owner; a reader counts them as they are):
 * inv_sync_ranges stores new bounds in one transaction and relabels in the
 * next, so a crash in between leaves such records, found here at the next open.
 */
static int
derive(struct inventory *inv, DB_TXN *txn)
{
	int writer = !inv->readonly && !inv->joined && !txn, rc;
	long mislabelled = 0, relabelled = 0;

	inv->stale = 1; /* half built until a scan is through */
	rc = derive_scan(inv, txn, writer, &mislabelled);
	if (rc == INV_OK && mislabelled && writer) {
		if ((rc = txn_loop(inv, rebuild_body, &relabelled, 0)) == INV_OK) {
			log_notice("inventory",
			    "%ld number records relabelled by the ranges now defined", relabelled);
			rc = derive_scan(inv, NULL, 0, &mislabelled);
		}
	}
	if (rc != INV_OK)
		return rc; /* stale: every transaction tries again first */
	inv->stale = 0;
	if (inv->stale_logged) {
		inv->stale_logged = 0;
		log_notice("inventory",
		    "the inventory in memory is rebuilt from the records: "
		    "changes are accepted again");
	}
	return INV_OK;
}

struct load_ctx {
	struct rcache *rc;
	size_t n;
	int rc_err;
};

static int
load_range(const void *rec, void *arg)
{
	struct load_ctx *l = arg;
	struct rcache *g = realloc(l->rc, (l->n + 1) * sizeof(*l->rc));

	if (!g) {
		log_err("inventory", "out of memory for the list of ranges");
		l->rc_err = INV_E_DB;
		return 1;
	}
	l->rc = g;
	if ((l->rc_err = rc_init(&l->rc[l->n], rec)) != INV_OK)
		return 1;
	l->n++;
	return 0;
}

enum {
	RC_KEEP,  /* ranges whose bounds and state are as they were keep counts and tree */
	RC_DERIVE /* counts and trees from the records */
};

/* The stored range definitions into memory (and their counts and trees: derive). */
static int
rc_reload_in(struct inventory *inv, int mode, DB_TXN *txn)
{
	struct load_ctx l = { NULL, 0, INV_OK };
	struct inv_range r;
	int rc = walk(inv->ranges, txn, &r, dec_range_any, load_range, NULL, &l), fresh = 0;

	if (rc == 1)
		rc = l.rc_err;
	if (rc != INV_OK) {
		rc_free(l.rc, l.n);
		return rc; /* memory as it was */
	}
	for (size_t i = 0; i < l.n; i++) {
		struct rcache *now = &l.rc[i], *was = rc_by_name(inv, now->r.name);

		if (mode == RC_KEEP && was && strcmp(was->r.first, now->r.first) == 0
		    && strcmp(was->r.last, now->r.last) == 0 && was->r.removed == now->r.removed) {
			memcpy(now->r.count, was->r.count, sizeof(now->r.count));
			now->occ = was->occ;
			memset(&was->occ, 0, sizeof(was->occ));
		} else {
			fresh = 1;
		}
	}
	rc_free(inv->rc, inv->nrc);
	inv->rc = l.rc;
	inv->nrc = l.n;
	if (mode == RC_DERIVE || fresh)
		return derive(inv, txn);
	return INV_OK;
}

/*
 * A reader beside numprovd (joined) reads the ranges and every number record in
 * one transaction, under read locks held to its end: a snapshot, never a
 * transaction of numprovd's half done. A deadlock with numprovd: again, a few
 * times, as run_txn does. The owner reads without a transaction (it is the one
 * writer).
 */
static int
rc_reload(struct inventory *inv, int mode)
{
	for (int tries = 0; tries < INV_TRIES; tries++) {
		DB_TXN *txn = NULL;
		int ret, rc;

		if (inv->joined && (ret = inv->env->txn_begin(inv->env, NULL, &txn, 0)) != 0)
			return db_fail(inv->env, ret, "txn_begin");
		rc = rc_reload_in(inv, mode, txn);
		/* nothing written: the end of a read, whatever came of it */
		if (txn && (ret = txn->commit(txn, 0)) != 0 && rc == INV_OK)
			rc = db_fail(inv->env, ret, "commit");
		if (rc != INV_RETRY)
			return rc;
	}
	log_err("bdb", "reading the ranges: giving up after %d deadlocks", INV_TRIES);
	return INV_E_DB;
}

/*
 * Memory built again from the records: definitions, labels, counts, trees. While
 * this fails the inventory stays stale and every change is refused (INV_E_DB).
 */
static int
refresh(struct inventory *inv)
{
	int rc = rc_reload(inv, RC_DERIVE);

	if (rc == INV_OK)
		return INV_OK;
	inv->stale = 1; /* also when the definitions could not even be read */
	if (!inv->stale_logged) {
		inv->stale_logged = 1;
		log_err("inventory",
		    "the inventory in memory cannot be rebuilt from the records: changes are "
		    "refused until it can be");
	}
	return rc == INV_RETRY ? INV_E_DB : rc;
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

static int
range_put(struct inventory *inv, DB_TXN *txn, const struct inv_range *r)
{
	unsigned char buf[REC_BUF];
	size_t len = inv_encode_range(r, buf, sizeof(buf));

	return db_put_fixed(inv->ranges, txn, r->name, strlen(r->name), buf, len);
}

/* Write the configured ranges' definitions; report whether any bounds changed. */
static int
sync_defs(struct inventory *inv, DB_TXN *txn, struct sync_ctx *x)
{
	int rc;

	for (size_t i = 0; i < inv->nrc; i++) {
		struct inv_range r = inv->rc[i].r;
		int live = config_range_find(x->cfg, r.name) != NULL;

		if (r.removed == !live)
			continue;
		r.removed = (uint8_t)!live;
		x->changed = 1;
		if ((rc = range_put(inv, txn, &r)) != INV_OK)
			return rc;
	}
	uint32_t next = next_index(inv);

	for (size_t i = 0; i < x->cfg->n_ranges; i++) {
		const struct cfg_range *cr = &x->cfg->ranges[i];
		struct rcache *c = rc_by_name(inv, cr->name);
		struct inv_range r;

		memset(&r, 0, sizeof(r));
		if (c)
			r.index = c->r.index;
		else
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
		if ((rc = range_put(inv, txn, &r)) != INV_OK)
			return rc;
	}
	return INV_OK;
}

/* The range a record belongs to now: the live one holding it, or a removed one keeping it. */
static const char *
label_for(struct inventory *inv, const struct inv_number *rec)
{
	struct rcache *c, *old = rec->range[0] ? rc_by_name(inv, rec->range) : NULL;
	struct e164 num;
	uint64_t off;
	char err[160];

	if (e164_parse(rec->number, &num, err, sizeof(err)) < 0)
		return rec->range; /* not a number: left as it is */
	if ((c = rc_containing(inv, &num, &off)))
		return c->r.name;
	if (old && old->r.removed)
		return old->r.name; /* a removed range keeps its numbers */
	return "";		    /* not in any range, live or kept */
}

/* Relabel every record by the ranges now defined; *count: how many (derive() follows). */
static int
rebuild(struct inventory *inv, DB_TXN *txn, long *count)
{
	DBC *cur;
	DBT key, data;
	int ret, rc = INV_OK;

	*count = 0;
	if ((ret = inv->numbers->cursor(inv->numbers, txn, &cur, 0)) != 0)
		return db_fail(inv->env, ret, "cursor");
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	while ((ret = cur->get(cur, &key, &data, DB_NEXT | DB_RMW)) == 0) {
		unsigned char buf[REC_BUF];
		struct inv_number rec;
		const char *label;
		size_t len;

		if (inv_decode_number(key.data, key.size, data.data, data.size, &rec) != INV_OK)
			continue;
		label = label_for(inv, &rec);
		if (strcmp(rec.range, label) == 0)
			continue;
		copy_str(rec.range, sizeof(rec.range), label);
		len = inv_encode_number(&rec, buf, sizeof(buf));
		dbt_store(&data, buf, len);
		if ((ret = cur->put(cur, &key, &data, DB_CURRENT)) != 0)
			break;
		inv->wrote = 1;
		(*count)++;
	}
	cur->close(cur);
	if (rc != INV_OK)
		return rc;
	if (ret != 0 && ret != DB_NOTFOUND)
		return db_fail(inv->env, ret, "rebuild");
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
	return rebuild(inv, txn, arg);
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

	if (rc == INV_OK && x.changed) {
		/*
		 * The stored bounds have changed, memory's not yet: stale until derive()
		 * has built it again from the records, relabelled by the new bounds
		 * (derive relabels whatever record is labelled other than where it lies,
		 * so a crash before that is mended at the next open). While that fails
		 * every transaction tries it first and fails too: none runs on trees of
		 * the old bounds, or of none.
		 */
		inv->stale = 1;
		log_info("inventory", "range definitions changed: recounting numbers in use");
		rc = refresh(inv);
	} else if (rc == INV_OK) {
		rc = rc_reload(inv, RC_KEEP);
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
 *   cache       4 MB, never grown beyond (mapped: 5 MB with its hash tables);
 *               pages beyond it are read from the files (the OS's page cache):
 *               a resident set of a few tens of MB is what a gateway can spare
 *   locks       up to 100,000 locks and lock objects, 1,000 lockers (about 37 MB
 *               of file with the log and transaction regions): a range rebuild,
 *               the largest transaction, takes about 8 page locks per 100 numbers
 *               in use. Only 2,000 of each are made at the start, with 8,192 hash
 *               buckets: the rest of the region is touched (and resident) only
 *               when a transaction needs it
 *   log         256 KB buffer, 1 MB region (file names); log files stay at
 *               Berkeley DB's 10 MB and are written with write(2)
 *
 * About 45 MB in all (INV_REGION_BYTES is the bound checked before creation).
 */
#define INV_CACHE_BYTES (4u * 1024 * 1024)
#define INV_LOCKS 100000
#define INV_LOCKERS 1000
#define INV_LOCKS_INIT 2000
#define INV_LOCK_BUCKETS 8192
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
		/* what is made (and so in memory) at the start; more as transactions need */
		inv->env->set_memory_init(inv->env, DB_MEM_LOCK, INV_LOCKS_INIT);
		inv->env->set_memory_init(inv->env, DB_MEM_LOCKOBJECT, INV_LOCKS_INIT);
		inv->env->set_lk_tablesize(inv->env, INV_LOCK_BUCKETS);
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

/* ---- record format 1 to 2, once ----------------------------------------- */

/* One database's records converted in batches: where the next batch starts. */
struct conv {
	DB *db;
	int (*dec)(const void *k, size_t kl, const void *d, size_t l, void *out);
	size_t (*enc)(const void *rec, unsigned char *buf, size_t len);
	unsigned char *from; /* the last key done (NULL: from the start) */
	size_t fromlen;
	int done;
	long converted, bad;
	/* the running batch's, taken when it commits */
	unsigned char *next;
	size_t nextlen;
	int batch_done;
	long batch_converted, batch_bad;
};

static size_t
enc_number_any(const void *rec, unsigned char *buf, size_t len)
{
	return inv_encode_number(rec, buf, len);
}

static size_t
enc_user_any(const void *rec, unsigned char *buf, size_t len)
{
	return inv_encode_user(rec, buf, len);
}

static size_t
enc_range_any(const void *rec, unsigned char *buf, size_t len)
{
	return inv_encode_range(rec, buf, len);
}

/* A format 1 record at the cursor rewritten in format 2; others are left alone. */
static int
convert_one(struct inventory *inv, struct conv *cv, DBC *cur, const DBT *key, const DBT *data)
{
	union {
		struct inv_number n;
		struct inv_user u;
		struct inv_range r;
	} rec;
	unsigned char buf[REC_BUF];
	DBT d;
	size_t len;
	int ret;

	if (data->size && ((const unsigned char *)data->data)[0] == REC_MAGIC)
		return INV_OK; /* format 2 already (a conversion cut short) */
	if (cv->dec(key->data, key->size, data->data, data->size, &rec) != INV_OK) {
		cv->batch_bad++; /* logged; left as it is for inv_verify to report */
		return INV_OK;
	}
	len = cv->enc(&rec, buf, sizeof(buf));
	dbt_store(&d, buf, len);
	if ((ret = cur->put(cur, (DBT *)key, &d, DB_CURRENT)) != 0)
		return db_fail(inv->env, ret, "conversion put");
	inv->wrote = 1;
	cv->batch_converted++;
	return INV_OK;
}

static int
convert_batch(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct conv *cv = arg;
	DBC *cur;
	DBT key, data;
	int ret, rc = INV_OK, n = 0;
	u_int32_t how = DB_FIRST;

	free(cv->next);
	cv->next = NULL;
	cv->nextlen = 0;
	cv->batch_done = 0;
	cv->batch_converted = cv->batch_bad = 0;
	if ((ret = cv->db->cursor(cv->db, txn, &cur, 0)) != 0)
		return db_fail(inv->env, ret, "cursor");
	memset(&key, 0, sizeof(key));
	memset(&data, 0, sizeof(data));
	if (cv->from) {
		dbt_init(&key, cv->from, cv->fromlen);
		how = DB_SET_RANGE;
	}
	for (ret = cur->get(cur, &key, &data, how | DB_RMW); ret == 0 && n < CONVERT_BATCH;
	     ret = cur->get(cur, &key, &data, DB_NEXT | DB_RMW)) {
		if (cv->from && key.size == cv->fromlen
		    && memcmp(key.data, cv->from, key.size) == 0)
			continue; /* done by the batch before */
		n++;
		free(cv->next);
		if (!(cv->next = malloc(key.size ? key.size : 1))) {
			rc = INV_E_DB;
			break;
		}
		memcpy(cv->next, key.data, key.size);
		cv->nextlen = key.size;
		if ((rc = convert_one(inv, cv, cur, &key, &data)) != INV_OK)
			break;
	}
	cur->close(cur);
	if (rc != INV_OK)
		return rc;
	if (ret == DB_NOTFOUND)
		cv->batch_done = 1;
	else if (ret != 0)
		return db_fail(inv->env, ret, "conversion cursor");
	return INV_OK;
}

/* Every record of one database, a batch per transaction. */
static int
convert_db(struct inventory *inv, struct conv *cv)
{
	int rc = INV_OK;
	long batches = 0;

	while (rc == INV_OK && !cv->done) {
		if ((rc = run_txn(inv, convert_batch, cv)) != INV_OK)
			break;
		/* every record is written again: without checkpoints, the log keeps it all */
		if (++batches % CONVERT_CKPT_BATCHES == 0 && (rc = inv_checkpoint(inv)) != INV_OK)
			break;
		free(cv->from);
		cv->from = cv->next;
		cv->fromlen = cv->nextlen;
		cv->next = NULL;
		cv->done = cv->batch_done || !cv->from;
		cv->converted += cv->batch_converted;
		cv->bad += cv->batch_bad;
	}
	free(cv->from);
	free(cv->next);
	cv->from = cv->next = NULL;
	return rc;
}

/* The last step, in one transaction: range records, the stored tree goes, the mark. */
static int
convert_finish(struct inventory *inv, DB_TXN *txn, void *arg)
{
	struct conv *cv = arg;
	int ret, rc;

	free(cv->from); /* from the start, also when run again after a deadlock */
	cv->from = NULL;
	cv->converted = cv->bad = 0;
	do {
		if ((rc = convert_batch(inv, txn, cv)) != INV_OK)
			return rc;
		free(cv->from);
		cv->from = cv->next;
		cv->fromlen = cv->nextlen;
		cv->next = NULL;
		cv->converted += cv->batch_converted;
		cv->bad += cv->batch_bad;
	} while (!cv->batch_done && cv->from);
	/* format 1 kept the occupancy tree on disk; format 2 builds it in memory */
	ret = inv->env->dbremove(inv->env, txn, "occupancy.db", NULL, 0);
	if (ret != 0 && ret != ENOENT)
		return db_fail(inv->env, ret, "remove occupancy.db");
	return db_put_fixed(
	    inv->meta, txn, FORMAT_KEY, strlen(FORMAT_KEY), FORMAT_NOW, strlen(FORMAT_NOW));
}

static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long
file_bytes(const char *path, const char *file)
{
	char p[4096];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", path, file);
	return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

/*
 * What the conversion will write to the log, said before it starts. Every record
 * is logged as it was and as it becomes: about 1.25 x the database files (measured:
 * 100 MB of log for 82 MB of format 1 files). A checkpoint every
 * CONVERT_CKPT_BATCHES batches lets the files before it go, so the log holds at
 * most that many batches (records of at most 600 bytes) and the file being
 * written and the one before (10 MB each).
 */
static void
convert_estimate(const char *path)
{
	long long data = file_bytes(path, "numbers.db") + file_bytes(path, "users.db");
	long long all = data + data / 4,
		  peak = (long long)CONVERT_CKPT_BATCHES * CONVERT_BATCH * 600;
	struct statvfs vfs;

	if (data < (1 << 20))
		return; /* new, or small: nothing worth saying */
	peak = (all < peak ? all : peak) + 20 * (1 << 20);
	log_notice("inventory",
	    "converting the inventory in %s to record format %s: %lld MB of records; the log "
	    "needs up to about %lld MB of disk while it runs (%lld MB written in all)",
	    path, FORMAT_NOW, data >> 20, peak >> 20, all >> 20);
	if (statvfs(path, &vfs) == 0 && (long long)vfs.f_bavail * (long long)vfs.f_frsize < peak)
		log_warnx("inventory",
		    "only %lld MB are free in %s: the conversion may stop for lack of space "
		    "(it goes on at the next start)",
		    ((long long)vfs.f_bavail * (long long)vfs.f_frsize) >> 20, path);
}

/*
 * An inventory without the format mark is new, or was written by numprov before
 * record format 2: its records are rewritten, in batches (a crash in between is
 * safe: both formats are read, and the next start goes on), then the mark.
 */
static int
convert_format(struct inventory *inv, const char *path, char *err, size_t errlen)
{
	struct conv numbers = { .db = inv->numbers, .dec = dec_number_any, .enc = enc_number_any };
	struct conv users = { .db = inv->users, .dec = dec_user_any, .enc = enc_user_any };
	struct conv ranges = { .db = inv->ranges, .dec = dec_range_any, .enc = enc_range_any };
	double t0 = seconds_now();
	int rc;

	convert_estimate(path);
	rc = convert_db(inv, &numbers);
	if (rc == INV_OK)
		rc = convert_db(inv, &users);
	if (rc == INV_OK)
		rc = run_txn(inv, convert_finish, &ranges);
	free(ranges.from);
	free(ranges.next);
	if (rc != INV_OK) {
		snprintf(err, errlen,
		    "cannot convert the inventory in %s to record format %s (see the log)", path,
		    FORMAT_NOW);
		return rc;
	}
	if (numbers.converted + users.converted + ranges.converted > 0)
		log_notice("inventory",
		    "converted the inventory in %s to record format %s: %ld numbers, %ld users, "
		    "%ld ranges in %.1f s%s; numprov before this version cannot read it",
		    path, FORMAT_NOW, numbers.converted, users.converted, ranges.converted,
		    seconds_now() - t0,
		    numbers.bad + users.bad + ranges.bad ? " (records that could not be read "
							   "are left as they were)"
							 : "");
	return INV_OK;
}

/* The mark of record format 2, or the conversion that writes it. */
static int
check_format(struct inventory *inv, const char *path, int ro, char *err, size_t errlen)
{
	char fmt[16];
	int rc = inv_meta_get(inv, FORMAT_KEY, fmt, sizeof(fmt));

	if (rc == INV_OK && strcmp(fmt, FORMAT_NOW) == 0)
		return INV_OK;
	if (rc == INV_OK || rc == INV_E_DB) {
		snprintf(err, errlen,
		    "the inventory in %s is in a record format this numprov does not know "
		    "(written by a later version?)",
		    path);
		return INV_E_DB;
	}
	if (rc != INV_E_NOTFOUND || ro)
		return rc == INV_E_NOTFOUND ? INV_OK : rc; /* a reader reads format 1 as it is */
	return convert_format(inv, path, err, errlen);
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
	inv->readonly = ro;
	if ((rc = open_env(inv, path, flags, joined, err, errlen)) != INV_OK)
		return rc;
	if ((rc = open_db(inv, &inv->numbers, "numbers.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->users, "users.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->ranges, "ranges.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->quar, "quarantine.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->meta, "meta.db", !ro, err, errlen))
	    || (rc = open_db(inv, &inv->dir, "directory.db", !ro, err, errlen)))
		return rc;
	if ((rc = check_format(inv, path, ro, err, errlen)) != INV_OK)
		return rc;
	if ((rc = rc_reload(inv, RC_DERIVE)) != INV_OK)
		snprintf(err, errlen, "cannot read the inventory in %s (see the log)", path);
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
	inv->quar_next = INT64_MIN;
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
	if (!inv)
		return;
	DB **dbs[]
	    = { &inv->numbers, &inv->users, &inv->ranges, &inv->quar, &inv->meta, &inv->dir };

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
	rc_free(inv->rc, inv->nrc);
	free(inv->undo);
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

static void
verify_bad(const void *k, size_t kl, const void *data, size_t len, void *arg, const char *what)
{
	struct verify_ctx *v = arg;
	char kt[96];

	(void)data;
	verify_note(v, "%s record %s (%zu bytes) cannot be read", what,
	    key_text(k, kl, kt, sizeof(kt)), len);
}

static void
verify_bad_number(const void *k, size_t kl, const void *data, size_t len, void *arg)
{
	verify_bad(k, kl, data, len, arg, "number");
}

static void
verify_bad_user(const void *k, size_t kl, const void *data, size_t len, void *arg)
{
	verify_bad(k, kl, data, len, arg, "user");
}

/* A quarantined number has its entry in the index by end time. */
static int
quar_indexed(struct inventory *inv, const struct inv_number *n)
{
	struct quar_key qk;
	DBT key, data;

	quar_key(&qk, n->until, n->number);
	dbt_init(&key, qk.b, qk.len);
	memset(&data, 0, sizeof(data));
	data.flags = DB_DBT_PARTIAL; /* presence only */
	return inv->quar->get(inv->quar, NULL, &key, &data, 0) == 0;
}

static int
verify_number(const void *rec, void *arg)
{
	const struct inv_number *n = rec;
	struct verify_ctx *v = arg;
	struct rcache *c = n->range[0] ? rc_by_name(v->inv, n->range) : NULL, *in;
	struct inv_user u;
	struct e164 num;
	uint64_t off;
	char err[160];

	if (n->range[0] && !c)
		verify_note(v, "%s: labelled with unknown range %s", n->number, n->range);
	if (c)
		v->count[c - v->inv->rc][n->state]++;
	if (e164_parse(n->number, &num, err, sizeof(err)) < 0) {
		verify_note(v, "%s: not a number", n->number);
	} else if ((in = rc_containing(v->inv, &num, &off))) {
		if (in != c)
			verify_note(v, "%s: in range %s but labelled '%s'", n->number, in->r.name,
			    n->range);
		if (!occ_used(in, off))
			verify_note(
			    v, "%s: %s but marked free", n->number, inv_state_name(n->state));
		else
			v->bits[in - v->inv->rc]++;
	} else if (c && !c->r.removed) {
		verify_note(v, "%s: labelled %s but outside it", n->number, c->r.name);
	}
	if (n->state == INV_QUARANTINED && !quar_indexed(v->inv, n))
		verify_note(v, "%s: quarantined, missing from the quarantine index", n->number);
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
verify_user(const void *rec, void *arg)
{
	const struct inv_user *u = rec;
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

/*
 * The tree's own shape: no bit beyond the range, every bit above level 0 set
 * exactly when the node below is full. Returns the bits set at level 0.
 */
static uint64_t
verify_tree(struct verify_ctx *v, const struct rcache *c)
{
	const struct occmap *m = &c->occ;
	uint64_t leaf_bits = 0;

	for (size_t i = 0; i < m->cap; i++) {
		int level;
		uint64_t node, valid, mask;

		if (m->key[i] == OCC_EMPTY || !(mask = m->val[i]))
			continue;
		level = (int)(m->key[i] >> 56);
		node = m->key[i] & (((uint64_t)1 << 56) - 1);
		if (level >= c->depth || node >= (c->entries[level] + 63) / 64) {
			verify_note(v, "range %s: occupancy node %d/%llu out of the tree",
			    c->r.name, level, (unsigned long long)node);
			continue;
		}
		valid = occ_valid(c, level, node);
		if (mask & ~valid)
			verify_note(v,
			    "range %s: occupancy node %d/%llu marks numbers beyond the "
			    "range",
			    c->r.name, level, (unsigned long long)node);
		if (level == 0)
			leaf_bits += (uint64_t)__builtin_popcountll(mask & valid);
		if (level + 1 < c->depth) {
			uint64_t up = occmap_get(m, occ_node_key(level + 1, node / 64));
			int full = (mask & valid) == valid, marked = (int)(up >> (node % 64)) & 1;

			if (full != marked)
				verify_note(v,
				    "range %s: occupancy node %d/%llu is %s, its parent "
				    "says %s",
				    c->r.name, level, (unsigned long long)node,
				    full ? "full" : "not full", marked ? "full" : "not full");
		}
		for (uint64_t b = mask & valid; level > 0 && b; b &= b - 1) {
			uint64_t child = node * 64 + (uint64_t)__builtin_ctzll(b);
			uint64_t cm = occmap_get(m, occ_node_key(level - 1, child));
			uint64_t cv = occ_valid(c, level - 1, child);

			if ((cm & cv) != cv)
				verify_note(v,
				    "range %s: occupancy node %d/%llu marked full, "
				    "it is not",
				    c->r.name, level - 1, (unsigned long long)child);
		}
	}
	return leaf_bits;
}

static void
verify_ranges(struct verify_ctx *v)
{
	for (size_t i = 0; i < v->inv->nrc; i++) {
		struct rcache *c = &v->inv->rc[i];
		unsigned char buf[REC_BUF];
		struct inv_range stored;
		size_t len;
		uint64_t bits;

		if (db_get_rec(v->inv->ranges, NULL, c->r.name, strlen(c->r.name), buf, sizeof(buf),
			&len, 0)
			!= INV_OK
		    || inv_decode_range(c->r.name, strlen(c->r.name), buf, len, &stored)
			!= INV_OK) {
			verify_note(v, "range %s: no record", c->r.name);
			continue;
		}
		if (strcmp(stored.first, c->r.first) || strcmp(stored.last, c->r.last)
		    || stored.removed != c->r.removed || stored.index != c->r.index)
			verify_note(v, "range %s: record and memory differ", c->r.name);
		for (int s = INV_RESERVED; s < INV__STATES; s++)
			if (c->r.count[s] != v->count[i][s])
				verify_note(v, "range %s: %s count %llu, scan finds %llu",
				    c->r.name, inv_state_name(s), (unsigned long long)c->r.count[s],
				    (unsigned long long)v->count[i][s]);
		bits = verify_tree(v, c);
		if (c->r.removed)
			continue;
		if (bits != v->bits[i])
			verify_note(v, "range %s: %llu numbers marked in use, %llu records",
			    c->r.name, (unsigned long long)bits, (unsigned long long)v->bits[i]);
	}
}

int
inv_verify(struct inventory *inv, char *report, size_t len)
{
	struct verify_ctx v = { inv, report, len, 0, NULL, NULL };
	struct inv_number n;
	struct inv_user u;
	int rc;

	report[0] = '\0';
	v.count = calloc(inv->nrc + 1, sizeof(*v.count));
	v.bits = calloc(inv->nrc + 1, sizeof(*v.bits));
	if (!v.count || !v.bits) {
		free(v.count);
		free(v.bits);
		return -1;
	}
	rc = walk(inv->numbers, NULL, &n, dec_number_any, verify_number, verify_bad_number, &v);
	if (rc == INV_OK)
		rc = walk(inv->users, NULL, &u, dec_user_any, verify_user, verify_bad_user, &v);
	if (rc == INV_OK)
		verify_ranges(&v);
	free(v.count);
	free(v.bits);
	return rc == INV_OK ? v.problems : -1;
}
