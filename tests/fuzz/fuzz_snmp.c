/*
 * libFuzzer: what an NMS sends the AgentX subagent (src/daemon/agent.c).
 * GET and GETNEXT of arbitrary names (any length, up to MAX_OID_LEN and
 * beyond, sub-identifiers past 2^32 on a 64-bit oid) through agent_lookup(),
 * GETNEXT walks continuing from the answered name, and SETs of
 * numprovSyncTrigger through agent_write_trigger() with arbitrary type, length
 * and value in every action phase. The statistics the agent reads are taken
 * from the input too (negative and huge times, long invalid UTF-8 errors), to
 * reach every value encoder.
 *
 * Set up once: a configuration with three ranges in a mkdtemp directory, the
 * inventory synced from it, a monitor, and a detached agent, as
 * tests/unit/check_snmp.c does. Every answer is checked against an oracle:
 * the sorted list of the MIB's instances (scalars .0, one row per range).
 *
 * Input: a statistics block, then operations until the input ends:
 *   op % 4 == 0  GET      name
 *   op % 4 == 1  GETNEXT  name
 *   op % 4 == 2  walk     name, GETNEXT from it and from each answer
 *   op % 8 == 3  SET      phases, type, length, value
 *   op % 8 == 7  a notification's varbinds, which must be the GET answers
 * A name is a prefix of numprovMIB (0..10 sub-identifiers) then a count and
 * that many encoded sub-identifiers (see read_num).
 */
#include "build-config.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_mib.h"
#include "config.h"
#include "inventory.h"
#include "log.h"
#include "monitor.h"
#include "provision.h"
#include "../unit/snmp_world.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define T0 1790000000
#define MAX_OPS 64
#define MAX_SET_LEN (64 * 1024)
#define NAME_CAP (NUMPROV_MIB_LEN + 256 + 8) /* names past MAX_OID_LEN too */

/* net-snmp's FREE (library/snmp_impl.h), which agent_mib.h undefines */
#define SET_FREE (UNDO - 1)
_Static_assert(RESERVE1 == 0 && COMMIT == 3 && UNDO == 5, "net-snmp's write phases");

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_snmp: invariant failed at line %d: %s\n", __LINE__,  \
			    #cond);                                                                \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static struct agent *agent;
static struct prov_stats fake;
static int triggered, triggered_full;

/* the oracle: every instance the MIB serves, in increasing order */
struct instance {
	oid name[MAX_OID_LEN];
	size_t len;
	size_t var; /* index into agent_vars */
};
static struct instance *inst;
static size_t n_inst;

static void
fake_stats(void *arg, struct prov_stats *out)
{
	(void)arg;
	*out = fake;
}

static void
fake_trigger(void *arg, int full)
{
	(void)arg;
	triggered++;
	triggered_full += full != 0;
}

static void
quiet(int prio, const char *token, const char *msg)
{
	(void)prio;
	(void)token;
	(void)msg;
}

static int
by_name(const void *a, const void *b)
{
	const struct instance *x = a, *y = b;

	return snmp_oid_compare(x->name, x->len, y->name, y->len);
}

static void
die(const char *what, const char *why)
{
	fprintf(stderr, "fuzz_snmp: setup: %s: %s\n", what, why);
	exit(1);
}

static char dir[64];

/* the directory goes when the run ends (not after a crash: /tmp/numprov-fuzz-snmp-*) */
static void
remove_dir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_snmp: cannot remove %s\n", dir);
}

static void
setup(void)
{
	static char err[1024];
	static struct config *cfg;
	static struct inventory *inv;
	static struct event_base *base;
	static struct monitor *mon;
	struct agent_source src = { NULL, fake_stats, fake_trigger, NULL };
	const struct range_view *rows;
	size_t n_rows;
	char path[128];
	FILE *f;

	log_register(quiet);
	snprintf(dir, sizeof(dir), "/tmp/numprov-fuzz-snmp-XXXXXX");
	if (!mkdtemp(dir))
		die("mkdtemp", dir);
	atexit(remove_dir);
	snprintf(path, sizeof(path), "%s/numprovd.conf", dir);
	if (!(f = fopen(path, "w")))
		die("fopen", path);
	fprintf(f, SNMP_WORLD_CONF, dir);
	fclose(f);
	if (!(cfg = config_load(path, err, sizeof(err))))
		die("config_load", err);
	snprintf(path, sizeof(path), "%s/db", dir);
	if (inv_open(path, INV_OPEN_NOSYNC, &inv, err, sizeof(err)) != INV_OK)
		die("inv_open", err);
	if (inv_sync_ranges(inv, cfg, T0) != INV_OK)
		die("inv_sync_ranges", "failed");
	if (!(base = event_base_new()))
		die("event_base_new", "failed");
	memset(&fake, 0, sizeof(fake));
	if (!(mon = monitor_new(base, cfg, inv, fake_stats, NULL)))
		die("monitor_new", "failed");
	src.mon = mon;
	if (!(agent = agent_new_detached(cfg, &src)))
		die("agent_new_detached", "failed");

	/* the oracle */
	rows = monitor_ranges(mon, &n_rows);
	if (n_rows != 3)
		die("monitor_ranges", "not three rows");
	inst = calloc(agent_nvars * n_rows + agent_nvars, sizeof(*inst));
	if (!inst)
		die("calloc", "out of memory");
	for (size_t i = 0; i < agent_nvars; i++) {
		const struct variable4 *v = &agent_vars[i];
		size_t base_len = NUMPROV_MIB_LEN + v->namelen;
		int column = v->name[1] == 3;

		for (size_t r = 0; r < (column ? n_rows : 1); r++) {
			struct instance *x = &inst[n_inst++];
			memcpy(x->name, agent_mib_oid, sizeof(agent_mib_oid));
			memcpy(x->name + NUMPROV_MIB_LEN, v->name, v->namelen * sizeof(oid));
			x->name[base_len] = column ? rows[r].r.index : 0;
			x->len = base_len + 1;
			x->var = i;
		}
	}
	qsort(inst, n_inst, sizeof(*inst), by_name);
	/* the database, the monitor and the agent live as long as the process */
}

/* ---- reading the input -------------------------------------------------- */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t
read_u8(struct in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static uint64_t
read_bytes(struct in *in, size_t k)
{
	uint64_t v = 0;

	for (size_t i = 0; i < k; i++)
		v = v << 8 | read_u8(in);
	return v;
}

/* a tag byte: 0..63 itself (tag >> 2), or 1, 4 or 8 bytes that follow */
static uint64_t
read_num(struct in *in)
{
	uint8_t tag = read_u8(in);

	switch (tag & 3) {
	case 0:
		return tag >> 2;
	case 1:
		return read_bytes(in, 1);
	case 2:
		return read_bytes(in, 4);
	default:
		return read_bytes(in, 8);
	}
}

/* a time: small, raw 64 bits, a year (up to past INT_MAX) and seconds, or now + delta */
static time_t
read_time(struct in *in)
{
	uint8_t tag = read_u8(in);
	int64_t t;

	switch (tag & 3) {
	case 0:
		return (time_t)((int)(tag >> 2) - 32);
	case 1:
		return (time_t)(int64_t)read_bytes(in, 8);
	case 2: {
		int64_t year = (int64_t)(int32_t)(uint32_t)read_bytes(in, 4);
		int64_t sec = (int64_t)(uint32_t)read_bytes(in, 4) % 31622400;
		if (tag & 4)
			year += (int64_t)1 << 31; /* reach tm_year near INT_MAX */
		if (__builtin_mul_overflow(year - 1970, (int64_t)31556952, &t)
		    || __builtin_add_overflow(t, sec, &t))
			t = year < 1970 ? INT64_MIN : INT64_MAX;
		return (time_t)t;
	}
	default:
		return time(NULL) + (time_t)(int32_t)(uint32_t)read_bytes(in, 4);
	}
}

static void
read_stats(struct in *in)
{
	uint8_t flags = read_u8(in);
	size_t n;

	memset(&fake, 0, sizeof(fake));
	fake.running = flags & 1;
	fake.last_full = (flags >> 1) & 1;
	fake.last_result = (enum prov_result)(read_u8(in) % 4);
	fake.last_start = read_time(in);
	fake.last_end = read_time(in);
	fake.next_at = read_time(in);
	fake.last_duration_ms = (long)read_num(in);
	fake.syncs = (unsigned long)read_num(in);
	fake.failures = (unsigned long)read_num(in);
	fake.assignments = (unsigned long)read_num(in);
	fake.releases = (unsigned long)read_num(in);
	fake.assign_failures = (unsigned long)read_num(in);
	fake.drift = (unsigned long)read_num(in);
	fake.users_tracked = (unsigned long)read_num(in);
	fake.users_pending = (unsigned long)read_num(in);
	fake.users_unmatched = (unsigned long)read_num(in);
	/* last_error: n bytes of the input, or one byte repeated to fill the buffer */
	n = read_u8(in);
	if (flags & 4) {
		memset(fake.last_error, read_u8(in), sizeof(fake.last_error) - 1);
		fake.last_error[sizeof(fake.last_error) - 1] = (flags & 8) ? '\0' : (char)0x80;
		/* unterminated when flags & 8 is clear: the agent must stop at 255 bytes */
		return;
	}
	for (size_t i = 0; i < n && i < sizeof(fake.last_error) - 1 && in->n > 0; i++)
		fake.last_error[i] = (char)read_u8(in);
	fake.last_error[sizeof(fake.last_error) - 1] = '\0';
}

static size_t
read_name(struct in *in, oid *name)
{
	size_t len = read_u8(in) % (NUMPROV_MIB_LEN + 1), extra;

	memcpy(name, agent_mib_oid, len * sizeof(oid));
	extra = read_u8(in); /* up to 255 more: past MAX_OID_LEN */
	for (size_t i = 0; i < extra && in->n > 0; i++)
		name[len++] = (oid)read_num(in);
	return len;
}

/* ---- the oracle ---------------------------------------------------------- */

/* the first instance > name (exact: == name); NULL when none */
static const struct instance *
expect(const oid *name, size_t len, int exact)
{
	for (size_t i = 0; i < n_inst; i++) {
		int cmp = snmp_oid_compare(inst[i].name, inst[i].len, name, len);
		if (exact ? cmp == 0 : cmp > 0)
			return &inst[i];
	}
	return NULL;
}

/* valid UTF-8 (no overlong / surrogate checks: the cut only cares about structure) */
static int
utf8_ok(const u_char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k = s[i] < 0x80	    ? 1
		    : (s[i] & 0xe0) == 0xc0 ? 2
		    : (s[i] & 0xf0) == 0xe0 ? 3
		    : (s[i] & 0xf8) == 0xf0 ? 4
					    : 0;
		if (k == 0 || i + k > n)
			return 0;
		for (size_t j = 1; j < k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
		i += k;
	}
	return 1;
}

/* DateAndTime: eight zero octets for "never", else 11 octets of t in UTC */
static void
check_time(const struct agent_value *v, time_t t)
{
	struct tm tm;

	CHECK(v->type == ASN_OCTET_STR);
	/* a year DateAndTime cannot hold (16 bits) is "never" too, never a wrapped one */
	if (t <= 0 || !gmtime_r(&t, &tm) || (long long)tm.tm_year + 1900 > 65535) {
		CHECK(v->len == 8);
		for (size_t i = 0; i < 8; i++)
			CHECK(v->v.octets[i] == 0);
		return;
	}
	CHECK(v->len == 11);
	CHECK(((unsigned)v->v.octets[0] << 8 | v->v.octets[1]) == (unsigned)(tm.tm_year + 1900));
	CHECK(v->v.octets[2] >= 1 && v->v.octets[2] <= 12);
	CHECK(v->v.octets[3] >= 1 && v->v.octets[3] <= 31);
	CHECK(v->v.octets[4] <= 23 && v->v.octets[5] <= 59 && v->v.octets[6] <= 59);
	CHECK(v->v.octets[7] == 0 && v->v.octets[8] == '+' && v->v.octets[9] == 0
	    && v->v.octets[10] == 0);
}

static void
check_value(const struct instance *x, const struct agent_value *v)
{
	const struct variable4 *var = &agent_vars[x->var];
	int group = (int)var->name[1], which = (int)var->name[2];

	CHECK(v->type == var->type);
	switch (v->type) {
	case ASN_INTEGER:
		CHECK(v->len == sizeof(long));
		break;
	case ASN_GAUGE:
	case ASN_COUNTER:
		CHECK(v->len == sizeof(u_long));
		CHECK(v->v.gauge <= 0xffffffffUL); /* 32 bits on the wire */
		break;
	case ASN_OCTET_STR:
		CHECK(v->len <= sizeof(v->v.octets));
		break;
	default:
		CHECK(!"unexpected type");
	}
	if (group == 1) {
		switch (which) {
		case AS_STATE:
			CHECK(v->v.integer == (fake.running ? 2 : 1));
			break;
		case AS_LAST_RESULT:
			CHECK(v->v.integer == (long)fake.last_result + 1);
			break;
		case AS_LAST_START:
			check_time(v, fake.last_start);
			break;
		case AS_LAST_END:
			check_time(v, fake.last_end);
			break;
		case AS_LAST_ERROR: {
			size_t src = strnlen(fake.last_error, 255);
			CHECK(v->len <= 255 && v->len <= src);
			CHECK(memcmp(v->v.octets, fake.last_error, v->len) == 0);
			if (utf8_ok((const u_char *)fake.last_error, src)) {
				/* a cut of valid UTF-8 drops at most a partial character */
				CHECK(utf8_ok(v->v.octets, v->len));
				CHECK(v->len + 3 >= src);
			}
			break;
		}
		case AS_NEXT_IN:
			if (fake.running)
				CHECK(v->v.gauge == 0);
			break;
		case AS_TRIGGER:
			CHECK(v->v.integer == 0);
			break;
		case AS_LAST_FULL:
			CHECK(v->v.integer == 1 || v->v.integer == 2);
			break;
		default:
			break;
		}
	} else if (group == 2) {
		if (which == AT_START_TIME)
			CHECK(v->len == 8 || v->len == 11);
	} else {
		switch (which) {
		case AR_TYPE:
			CHECK(v->v.integer >= 1 && v->v.integer <= 3);
			break;
		case AR_STATUS:
			CHECK(v->v.integer >= 1 && v->v.integer <= 4);
			break;
		case AR_UTILISATION:
			CHECK(v->v.gauge <= 100);
			break;
		case AR_NAME:
		case AR_PROVIDER:
			CHECK(v->len <= 63);
			break;
		default:
			break;
		}
	}
}

/*
 * One lookup, checked: the answer is the oracle's, a GET answers the name
 * asked, a GETNEXT a strictly greater one, inside numprovMIB, with a value
 * that fits. Returns the instance answered, or NULL.
 */
static const struct instance *
lookup(oid *name, size_t *len, int exact)
{
	oid before[NAME_CAP];
	size_t before_len = *len;
	struct agent_value out;
	WriteMethod *w = NULL;
	const u_char *p;
	const struct instance *want = NULL, *got;

	memcpy(before, name, *len * sizeof(oid));
	memset(&out, 0xa5, sizeof(out));
	if (before_len <= MAX_OID_LEN)
		want = expect(name, *len, exact);
	p = agent_lookup(agent, name, len, exact, &out, &w);
	if (!p) {
		CHECK(want == NULL);
		CHECK(*len == before_len); /* a miss leaves the name alone */
		CHECK(memcmp(name, before, before_len * sizeof(oid)) == 0);
		return NULL;
	}
	CHECK(p == (const u_char *)&out.v);
	CHECK(*len > NUMPROV_MIB_LEN && *len <= MAX_OID_LEN);
	CHECK(memcmp(name, agent_mib_oid, sizeof(agent_mib_oid)) == 0);
	got = expect(name, *len, 1);
	CHECK(got != NULL); /* an instance the MIB has */
	if (exact)
		CHECK(*len == before_len && memcmp(name, before, *len * sizeof(oid)) == 0);
	else
		CHECK(snmp_oid_compare(name, *len, before, before_len) > 0);
	if (before_len <= MAX_OID_LEN)
		CHECK(got == want); /* and the first one after the request */
	/* only numprovSyncTrigger.0 is writable */
	CHECK((w == agent_write_trigger)
	    == (agent_vars[got->var].name[1] == 1 && agent_vars[got->var].name[2] == AS_TRIGGER));
	check_value(got, &out);
	return got;
}

/* ---- SET ----------------------------------------------------------------- */

static int
set_phase(int action, u_char *val, u_char type, size_t len)
{
	oid name[MAX_OID_LEN];
	size_t nl = NUMPROV_MIB_LEN;
	int before = triggered, r;

	memcpy(name, agent_mib_oid, sizeof(agent_mib_oid));
	name[nl++] = 1;
	name[nl++] = 1;
	name[nl++] = AS_TRIGGER;
	name[nl++] = 0;
	r = agent_write_trigger(action, val, type, len, NULL, name, nl);
	CHECK(r == SNMP_ERR_NOERROR || r == SNMP_ERR_WRONGTYPE || r == SNMP_ERR_WRONGLENGTH
	    || r == SNMP_ERR_WRONGVALUE);
	if (action != COMMIT)
		CHECK(triggered == before); /* the round is asked for only in COMMIT */
	return r;
}

static void
do_set(struct in *in)
{
	static const int phases[] = { RESERVE1, RESERVE2, ACTION, COMMIT, SET_FREE, UNDO };
	uint8_t how = read_u8(in);
	u_char type = read_u8(in);
	uint64_t want_len = read_num(in);
	size_t len = want_len > MAX_SET_LEN ? MAX_SET_LEN : (size_t)want_len;
	u_char *val = NULL;
	long v = 0;
	int valid, want, committed = 0, before = triggered, before_full = triggered_full, r;

	if (how & 0x80)
		len = sizeof(long); /* the right length, more often than chance */
	if (!(how & 0x40) || len > 0) {
		if (!(val = malloc(len ? len : 1)))
			return;
		if (how & 0x20) { /* a long from the input: small values are the interesting ones */
			v = (long)(int64_t)read_num(in);
			if (how & 0x10)
				v = (long)(0UL - (unsigned long)v);
			memset(val, 0, len);
			memcpy(val, &v, len < sizeof(v) ? len : sizeof(v));
		} else {
			for (size_t i = 0; i < len; i++)
				val[i] = in->n > 0 ? read_u8(in) : (u_char)i;
		}
	}
	if (val && len == sizeof(long))
		memcpy(&v, val, sizeof(v));
	/* the answer RESERVE1 must give: idle(0) is refused like any value but 1 and 2 */
	want = type != ASN_INTEGER	  ? SNMP_ERR_WRONGTYPE
	    : len != sizeof(long) || !val ? SNMP_ERR_WRONGLENGTH
	    : v == 1 || v == 2		  ? SNMP_ERR_NOERROR
					  : SNMP_ERR_WRONGVALUE;
	valid = want == SNMP_ERR_NOERROR;
	if ((how & 7) < 6) { /* one phase */
		int action = phases[how & 7];
		r = set_phase(action, val, type, len);
		if (action == RESERVE1)
			CHECK(want < 0 ? r == SNMP_ERR_NOERROR || r == SNMP_ERR_WRONGVALUE
				       : r == want);
		committed = action == COMMIT && valid;
		if (action == COMMIT && r == SNMP_ERR_NOERROR)
			CHECK(want != SNMP_ERR_WRONGTYPE && want != SNMP_ERR_WRONGLENGTH
			    && want != SNMP_ERR_WRONGVALUE);
	} else { /* a whole SET as net-snmp runs it: RESERVE1, RESERVE2, ACTION, COMMIT or UNDO */
		r = set_phase(RESERVE1, val, type, len);
		CHECK(want < 0 ? r == SNMP_ERR_NOERROR || r == SNMP_ERR_WRONGVALUE : r == want);
		if (r != SNMP_ERR_NOERROR) {
			set_phase(SET_FREE, val, type, len);
		} else {
			CHECK(set_phase(RESERVE2, val, type, len) == SNMP_ERR_NOERROR);
			CHECK(set_phase(ACTION, val, type, len) == SNMP_ERR_NOERROR);
			if (how & 8)
				CHECK(set_phase(UNDO, val, type, len) == SNMP_ERR_NOERROR);
			else
				CHECK(set_phase(COMMIT, val, type, len) == SNMP_ERR_NOERROR);
			committed = !(how & 8) && valid;
		}
	}
	/* one call for sync(1) or fullSync(2) in COMMIT (full for 2), none for anything else */
	CHECK(!committed || triggered != before); /* a committed sync is asked for */
	if (triggered != before) {
		CHECK(triggered == before + 1);
		CHECK(valid); /* sync(1) or fullSync(2) */
		CHECK(triggered_full - before_full == (v == 2));
	} else {
		CHECK(triggered_full == before_full);
	}
	free(val);
}

/* ---- notifications: their varbinds are the GET answers ------------------- */

static void
do_notify(struct in *in)
{
	static const char *const names[] = { "a", "b", "c", "", "zz" };
	static const oid trap_oid[] = { 1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0 }; /* snmpTrapOID.0 */
	uint8_t how = read_u8(in);
	enum agent_notification which = (enum agent_notification)(how % 4 + 1);
	const char *range = (how & 0x80) ? NULL : names[(how >> 2) % 5];
	int is_range = which == AN_RANGE_HIGH || which == AN_RANGE_EXHAUSTED;
	netsnmp_variable_list *vars = agent_notification_vars(agent, which, range), *v;

	if (is_range && (!range || range[0] == '\0' || range[0] == 'z')) {
		CHECK(vars == NULL); /* no such range */
		return;
	}
	CHECK(vars != NULL);
	CHECK(snmp_oid_compare(
		  vars->name, vars->name_length, trap_oid, sizeof(trap_oid) / sizeof(trap_oid[0]))
	    == 0);
	CHECK(vars->type == ASN_OBJECT_ID && vars->val_len == (NUMPROV_MIB_LEN + 2) * sizeof(oid));
	CHECK(memcmp(vars->val.objid, agent_mib_oid, sizeof(agent_mib_oid)) == 0);
	CHECK(vars->val.objid[NUMPROV_MIB_LEN] == 0
	    && vars->val.objid[NUMPROV_MIB_LEN + 1] == (oid)which);
	for (v = vars->next_variable; v; v = v->next_variable) {
		oid name[MAX_OID_LEN];
		size_t len = v->name_length;
		struct agent_value out;
		WriteMethod *w = NULL;

		CHECK(len <= MAX_OID_LEN);
		memcpy(name, v->name, len * sizeof(oid));
		CHECK(expect(name, len, 1) != NULL);
		CHECK(agent_lookup(agent, name, &len, 1, &out, &w) != NULL);
		CHECK(v->type == out.type && v->val_len == out.len);
		CHECK(memcmp(v->val.string, &out.v, out.len) == 0);
	}
	snmp_free_varbind(vars);
}

/* ---- the harness ----------------------------------------------------------- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	struct in in = { data, size };
	oid name[NAME_CAP];
	size_t len;

	if (!ready) {
		setup();
		ready = 1;
	}
	read_stats(&in);
	for (int ops = 0; ops < MAX_OPS && in.n > 0; ops++) {
		uint8_t op = read_u8(&in);

		switch (op & 3) {
		case 0:
		case 1:
			len = read_name(&in, name);
			(void)lookup(name, &len, (op & 3) == 0);
			break;
		case 2: { /* a walk: it ends, strictly increasing, within n_inst + 1 steps */
			size_t steps = 0;
			len = read_name(&in, name);
			while (lookup(name, &len, 0))
				CHECK(++steps <= n_inst);
			break;
		}
		default:
			if (op & 4)
				do_notify(&in);
			else
				do_set(&in);
			break;
		}
	}
	return 0;
}
