#include "build-config.h"

#include "agent_mib.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "events.h"
#include "log.h"
#include "monitor.h"
#include "provision.h"
#include "rangeview.h"
#include "utf8.h"

#define AGENT_NAME "numprovd"
#define AGENT_MAX_FDS 64
#define AGENT_HELD_MAX 256 /* notifications held while the master agent is away */

const oid agent_mib_oid[NUMPROV_MIB_LEN] = { NUMPROV_MIB_OID };

struct agent {
	struct event_base *base;
	struct config *cfg; /* a reference: traps, the socket named in messages */
	struct agent_source src;
	struct event *timer;
	struct event *fd_ev[AGENT_MAX_FDS];
	size_t n_fd;
	int running;   /* net-snmp was initialised by this agent */
	int connected; /* to the master agent */
	int told;      /* the operator was told the master is away: quiet until it is back */
	int subscribed;
	unsigned long sent;
	char *socket; /* the one net-snmp was given at start */
	/* raised while disconnected: sent on reconnection if their state still stands */
	struct held {
		enum agent_notification which;
		char range[RANGE_NAME_MAX + 1];
	} held[AGENT_HELD_MAX];
	size_t n_held;
	unsigned long dropped;
	struct event *flush;
};

/* The handlers are net-snmp callbacks without an argument: the one agent. */
static struct agent *current;

/* ---- values: one function per group, for GET and notifications alike ---- */

static void
set_int(struct agent_value *out, u_char type, long v)
{
	out->type = type;
	out->len = sizeof(long);
	out->v.integer = v;
}

/* Gauge32 and Counter32 carry 32 bits: gauges stop at the top, counters wrap. */
static void
set_gauge(struct agent_value *out, unsigned long long v)
{
	out->type = ASN_GAUGE;
	out->len = sizeof(u_long);
	out->v.gauge = v > 0xffffffffULL ? 0xffffffffUL : (u_long)v;
}

static void
set_counter(struct agent_value *out, unsigned long long v)
{
	out->type = ASN_COUNTER;
	out->len = sizeof(u_long);
	out->v.gauge = (u_long)(v & 0xffffffffULL);
}

static void
set_string(struct agent_value *out, const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (s[n] != '\0') /* a cut never leaves the first bytes of a UTF-8 character */
		n = utf8_prefix(s, n);
	out->type = ASN_OCTET_STR;
	out->len = n;
	memcpy(out->v.octets, s, n);
}

/* DateAndTime in UTC (11 octets, "+0:0"); eight zero octets for "never". */
static void
set_time(struct agent_value *out, time_t t)
{
	struct tm tm;
	u_char *o = out->v.octets;

	long long year;

	out->type = ASN_OCTET_STR;
	/* DateAndTime's year is 16 bits: a time it cannot hold is "never" too */
	if (t <= 0 || !gmtime_r(&t, &tm) || (year = (long long)tm.tm_year + 1900) > 65535) {
		memset(o, 0, 8);
		out->len = 8;
		return;
	}
	o[0] = (u_char)(year >> 8);
	o[1] = (u_char)(year & 0xff);
	o[2] = (u_char)(tm.tm_mon + 1);
	o[3] = (u_char)tm.tm_mday;
	o[4] = (u_char)tm.tm_hour;
	o[5] = (u_char)tm.tm_min;
	o[6] = (u_char)(tm.tm_sec > 59 ? 59 : tm.tm_sec);
	o[7] = 0;
	o[8] = '+';
	o[9] = 0;
	o[10] = 0;
	out->len = 11;
}

int
agent_range_value(const struct range_view *v, int column, struct agent_value *out)
{
	const struct inv_range *r = &v->r;

	switch (column) {
	case AR_NAME:
		set_string(out, r->name, 63);
		break;
	case AR_TYPE: /* NumprovRangeType */
		set_int(out, ASN_INTEGER,
		    r->type == RT_CALLING_PLAN		 ? 1
			: r->type == RT_OPERATOR_CONNECT ? 2
							 : 3);
		break;
	case AR_PROVIDER:
		set_string(out, r->provider, 63);
		break;
	case AR_FIRST:
		set_string(out, r->first, E164_STRLEN - 1);
		break;
	case AR_LAST:
		set_string(out, r->last, E164_STRLEN - 1);
		break;
	case AR_SIZE:
		set_gauge(out, r->size);
		break;
	case AR_ASSIGNED:
		set_gauge(out, r->count[INV_ASSIGNED]);
		break;
	case AR_PENDING:
		set_gauge(out, r->count[INV_PENDING]);
		break;
	case AR_AVAILABLE:
		set_gauge(out, v->available);
		break;
	case AR_RESERVED:
		set_gauge(out, r->count[INV_RESERVED]);
		break;
	case AR_QUARANTINED:
		set_gauge(out, r->count[INV_QUARANTINED]);
		break;
	case AR_UTILISATION: /* whole percent, rounded down: 100 only when nothing is left */
		set_gauge(out,
		    v->utilisation <= 0		? 0
			: v->utilisation >= 100 ? 100
						: (unsigned long long)v->utilisation);
		break;
	case AR_WARN_PERCENT:
		set_gauge(out, v->warn_percent < 0 ? 0 : (unsigned long long)v->warn_percent);
		break;
	case AR_STATUS: /* NumprovRangeStatus */
		set_int(out, ASN_INTEGER, (long)v->status + 1);
		break;
	default:
		return -1;
	}
	return 0;
}

static void
stats_of(struct agent *a, struct prov_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (a->src.stats)
		a->src.stats(a->src.arg, st);
}

static int
sync_value(struct agent *a, int which, struct agent_value *out)
{
	struct prov_stats st;
	time_t now = np_time();

	stats_of(a, &st);
	switch (which) {
	case AS_STATE:
		set_int(out, ASN_INTEGER, st.running ? 2 : 1);
		break;
	case AS_LAST_RESULT: /* NumprovSyncResult: never(1) success(2) partial(3) failed(4) */
		set_int(out, ASN_INTEGER, (long)st.last_result + 1);
		break;
	case AS_LAST_START:
		set_time(out, st.last_start);
		break;
	case AS_LAST_END:
		set_time(out, st.last_end);
		break;
	case AS_LAST_DURATION:
		set_gauge(
		    out, st.last_duration_ms < 0 ? 0 : (unsigned long long)st.last_duration_ms);
		break;
	case AS_LAST_ERROR:
		set_string(out, st.last_error, 255);
		break;
	case AS_NEXT_IN:
		if (st.running)
			set_gauge(out, 0);
		else if (st.next_at == 0) /* nothing scheduled (sync.mode off) */
			set_gauge(out, 0xffffffffULL);
		else
			set_gauge(
			    out, st.next_at <= now ? 0 : (unsigned long long)(st.next_at - now));
		break;
	case AS_COUNT:
		set_counter(out, st.syncs);
		break;
	case AS_FAILURES:
		set_counter(out, st.failures);
		break;
	case AS_TRIGGER: /* reads back idle(0) */
		set_int(out, ASN_INTEGER, 0);
		break;
	case AS_LAST_FULL: /* TruthValue */
		set_int(out, ASN_INTEGER,
		    (st.running || st.last_result != PR_NEVER) && st.last_full ? 1 : 2);
		break;
	default:
		return -1;
	}
	return 0;
}

static int
stats_value(struct agent *a, int which, struct agent_value *out)
{
	struct prov_stats st;

	stats_of(a, &st);
	switch (which) {
	case AT_USERS_TRACKED:
		set_gauge(out, st.users_tracked);
		break;
	case AT_USERS_PENDING:
		set_gauge(out, st.users_pending);
		break;
	case AT_USERS_UNMATCHED:
		set_gauge(out, st.users_unmatched);
		break;
	case AT_ASSIGNMENTS:
		set_counter(out, st.assignments);
		break;
	case AT_RELEASES:
		set_counter(out, st.releases);
		break;
	case AT_ASSIGN_FAILURES:
		set_counter(out, st.assign_failures);
		break;
	case AT_DRIFT:
		set_counter(out, st.drift);
		break;
	case AT_START_TIME:
		set_time(out, a->src.mon ? monitor_started(a->src.mon) : 0);
		break;
	default:
		return -1;
	}
	return 0;
}

int
agent_scalar_value(struct agent *a, int group, int which, struct agent_value *out)
{
	return group == 1 ? sync_value(a, which, out)
	    : group == 2  ? stats_value(a, which, out)
			  : -1;
}

/* ---- the handlers (net-snmp's old API: FindVarMethod) ------------------- */

static struct agent_value answer; /* what a handler returns points here */

/* A scalar: the instance is name.0; next is it when name sorts before it. */
static int
scalar_match(struct variable *vp, oid *name, size_t *length, int exact)
{
	oid want[MAX_OID_LEN];
	size_t wl = vp->namelen;
	int cmp;

	if (wl + 1 > MAX_OID_LEN)
		return -1;
	memcpy(want, vp->name, wl * sizeof(oid));
	want[wl++] = 0;
	cmp = snmp_oid_compare(name, *length, want, wl);
	if (exact ? cmp != 0 : cmp >= 0)
		return -1;
	memcpy(name, want, wl * sizeof(oid));
	*length = wl;
	return 0;
}

static u_char *
agent_h_sync(struct variable *vp, oid *name, size_t *length, int exact, size_t *var_len,
    WriteMethod **write_method)
{
	/* no write method for a name that is not the instance: net-snmp would call it */
	if (write_method)
		*write_method = NULL;
	if (!current || scalar_match(vp, name, length, exact) < 0
	    || sync_value(current, vp->magic, &answer) < 0)
		return NULL;
	if (write_method && vp->magic == AS_TRIGGER)
		*write_method = agent_write_trigger;
	*var_len = answer.len;
	return (u_char *)&answer.v;
}

static u_char *
agent_h_stats(struct variable *vp, oid *name, size_t *length, int exact, size_t *var_len,
    WriteMethod **write_method)
{
	if (write_method)
		*write_method = NULL;
	if (!current || scalar_match(vp, name, length, exact) < 0
	    || stats_value(current, vp->magic, &answer) < 0)
		return NULL;
	*var_len = answer.len;
	return (u_char *)&answer.v;
}

/* A column: the instance is column.index, rows by increasing index. */
static const struct range_view *
row_match(struct variable *vp, oid *name, size_t *length, int exact)
{
	const struct monitor *m = current ? current->src.mon : NULL;
	size_t cl = vp->namelen, common = *length < cl ? *length : cl;
	const struct range_view *v = NULL;
	int cmp;

	if (!m || cl + 1 > MAX_OID_LEN)
		return NULL;
	cmp = snmp_oid_compare(name, common, vp->name, cl);
	if (exact) {
		if (cmp != 0 || *length != cl + 1 || name[cl] == 0 || name[cl] > 0xffffffffUL)
			return NULL;
		return monitor_range(m, (uint32_t)name[cl], 0);
	}
	if (cmp > 0)
		return NULL;
	if (cmp < 0 || *length <= cl)
		v = monitor_range(m, 0, 1);
	else if (name[cl] <= 0xffffffffUL)
		v = monitor_range(m, (uint32_t)name[cl], 1);
	if (!v)
		return NULL;
	memcpy(name, vp->name, cl * sizeof(oid));
	name[cl] = v->r.index;
	*length = cl + 1;
	return v;
}

static u_char *
agent_h_range(struct variable *vp, oid *name, size_t *length, int exact, size_t *var_len,
    WriteMethod **write_method)
{
	const struct range_view *v;

	if (write_method)
		*write_method = NULL;
	if (!(v = row_match(vp, name, length, exact))
	    || agent_range_value(v, vp->magic, &answer) < 0)
		return NULL;
	*var_len = answer.len;
	return (u_char *)&answer.v;
}

/*
 * numprovSyncTrigger: instance, type, length and value are checked in RESERVE1 (an
 * AgentX TestSet) and the round is asked for only in COMMIT (CleanupSet
 * after a successful CommitSet). idle(0) is refused like any other value: it
 * would read as "cancel", which no SET does.
 */
int
agent_write_trigger(int action, u_char *var_val, u_char var_val_type, size_t var_val_len,
    u_char *statP, oid *name, size_t length)
{
	oid want[NUMPROV_MIB_LEN + 4];
	long v;

	(void)statP;
	if (action != RESERVE1 && action != COMMIT)
		return SNMP_ERR_NOERROR;
	/* numprovSyncTrigger.0 and nothing under it or beside it */
	memcpy(want, agent_mib_oid, sizeof(agent_mib_oid));
	want[NUMPROV_MIB_LEN] = 1;
	want[NUMPROV_MIB_LEN + 1] = 1;
	want[NUMPROV_MIB_LEN + 2] = AS_TRIGGER;
	want[NUMPROV_MIB_LEN + 3] = 0;
	if (!name || snmp_oid_compare(name, length, want, NUMPROV_MIB_LEN + 4) != 0)
		return SNMP_ERR_NOCREATION;
	if (var_val_type != ASN_INTEGER)
		return SNMP_ERR_WRONGTYPE;
	if (var_val_len != sizeof(long) || !var_val)
		return SNMP_ERR_WRONGLENGTH;
	memcpy(&v, var_val, sizeof(v));
	if (v != 1 && v != 2) /* idle(0) is what it reads, not an order */
		return SNMP_ERR_WRONGVALUE;
	if (action == COMMIT && current) {
		log_notice(
		    "snmp", "numprovSyncTrigger set to %s: sync now", v == 2 ? "fullSync" : "sync");
		if (current->src.trigger)
			current->src.trigger(current->src.arg, v == 2);
	}
	return SNMP_ERR_NOERROR;
}

#define SYNC_VAR(which, type, acl)                                                                 \
	{                                                                                          \
		(which), (type), (acl), agent_h_sync, 3,                                           \
		{                                                                                  \
			1, 1, (which)                                                              \
		}                                                                                  \
	}
#define STATS_VAR(which, type)                                                                     \
	{                                                                                          \
		(which), (type), NETSNMP_OLDAPI_RONLY, agent_h_stats, 3,                           \
		{                                                                                  \
			1, 2, (which)                                                              \
		}                                                                                  \
	}
#define RANGE_VAR(column, type)                                                                    \
	{                                                                                          \
		(column), (type), NETSNMP_OLDAPI_RONLY, agent_h_range, 4,                          \
		{                                                                                  \
			1, 3, 1, (column)                                                          \
		}                                                                                  \
	}

struct variable4 agent_vars[] = {
	SYNC_VAR(AS_STATE, ASN_INTEGER, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_LAST_RESULT, ASN_INTEGER, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_LAST_START, ASN_OCTET_STR, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_LAST_END, ASN_OCTET_STR, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_LAST_DURATION, ASN_GAUGE, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_LAST_ERROR, ASN_OCTET_STR, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_NEXT_IN, ASN_GAUGE, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_COUNT, ASN_COUNTER, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_FAILURES, ASN_COUNTER, NETSNMP_OLDAPI_RONLY),
	SYNC_VAR(AS_TRIGGER, ASN_INTEGER, NETSNMP_OLDAPI_RWRITE),
	SYNC_VAR(AS_LAST_FULL, ASN_INTEGER, NETSNMP_OLDAPI_RONLY),
	STATS_VAR(AT_USERS_TRACKED, ASN_GAUGE),
	STATS_VAR(AT_USERS_PENDING, ASN_GAUGE),
	STATS_VAR(AT_USERS_UNMATCHED, ASN_GAUGE),
	STATS_VAR(AT_ASSIGNMENTS, ASN_COUNTER),
	STATS_VAR(AT_RELEASES, ASN_COUNTER),
	STATS_VAR(AT_ASSIGN_FAILURES, ASN_COUNTER),
	STATS_VAR(AT_DRIFT, ASN_COUNTER),
	STATS_VAR(AT_START_TIME, ASN_OCTET_STR),
	RANGE_VAR(AR_NAME, ASN_OCTET_STR),
	RANGE_VAR(AR_TYPE, ASN_INTEGER),
	RANGE_VAR(AR_PROVIDER, ASN_OCTET_STR),
	RANGE_VAR(AR_FIRST, ASN_OCTET_STR),
	RANGE_VAR(AR_LAST, ASN_OCTET_STR),
	RANGE_VAR(AR_SIZE, ASN_GAUGE),
	RANGE_VAR(AR_ASSIGNED, ASN_GAUGE),
	RANGE_VAR(AR_PENDING, ASN_GAUGE),
	RANGE_VAR(AR_AVAILABLE, ASN_GAUGE),
	RANGE_VAR(AR_RESERVED, ASN_GAUGE),
	RANGE_VAR(AR_QUARANTINED, ASN_GAUGE),
	RANGE_VAR(AR_UTILISATION, ASN_GAUGE),
	RANGE_VAR(AR_WARN_PERCENT, ASN_GAUGE),
	RANGE_VAR(AR_STATUS, ASN_INTEGER),
};
const size_t agent_nvars = sizeof(agent_vars) / sizeof(agent_vars[0]);

/* The variable as net-snmp hands it to a handler: its full name. */
static void
full_var(size_t i, struct variable *out)
{
	memset(out, 0, sizeof(*out));
	out->magic = agent_vars[i].magic;
	out->type = (char)agent_vars[i].type;
	out->acl = agent_vars[i].acl;
	out->findVar = agent_vars[i].findVar;
	memcpy(out->name, agent_mib_oid, sizeof(agent_mib_oid));
	memcpy(
	    out->name + NUMPROV_MIB_LEN, agent_vars[i].name, agent_vars[i].namelen * sizeof(oid));
	out->namelen = (u_char)(NUMPROV_MIB_LEN + agent_vars[i].namelen);
}

const u_char *
agent_lookup(struct agent *a, oid *name, size_t *len, int exact, struct agent_value *out,
    WriteMethod **write)
{
	struct agent *was = current;
	const u_char *found = NULL;

	current = a;
	for (size_t i = 0; i < agent_nvars && !found; i++) {
		struct variable vp;
		oid try[MAX_OID_LEN];
		size_t tl = *len, vl = 0;
		u_char *p;

		if (tl > MAX_OID_LEN)
			break;
		full_var(i, &vp);
		memcpy(try, name, tl * sizeof(oid));
		if (!(p = vp.findVar(&vp, try, &tl, exact, &vl, write)))
			continue;
		memcpy(name, try, tl * sizeof(oid));
		*len = tl;
		*out = answer;
		out->type = (u_char)vp.type;
		found = (const u_char *)&out->v;
	}
	current = was;
	return found;
}

/* ---- notifications ------------------------------------------------------ */

static const oid trap_oid_oid[] = { 1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0 }; /* snmpTrapOID.0 */

/* name = numprovMIB.1.group.which[.index]; 0 for a scalar's instance */
static int
add_var(netsnmp_variable_list **vars, const oid *sub, size_t subn, uint32_t index,
    const struct agent_value *val)
{
	oid name[NUMPROV_MIB_LEN + 6];
	size_t n = NUMPROV_MIB_LEN;

	memcpy(name, agent_mib_oid, sizeof(agent_mib_oid));
	memcpy(name + n, sub, subn * sizeof(oid));
	n += subn;
	name[n++] = index;
	return snmp_varlist_add_variable(vars, name, n, val->type, &val->v, val->len) ? 0 : -1;
}

static int
add_range_var(netsnmp_variable_list **vars, const struct range_view *v, int column)
{
	const oid sub[] = { 1, 3, 1, (oid)column };
	struct agent_value val;

	return agent_range_value(v, column, &val) < 0 ? -1
						      : add_var(vars, sub, 4, v->r.index, &val);
}

static int
add_scalar_var(netsnmp_variable_list **vars, struct agent *a, int group, int which)
{
	const oid sub[] = { 1, (oid)group, (oid)which };
	struct agent_value val;

	return agent_scalar_value(a, group, which, &val) < 0 ? -1 : add_var(vars, sub, 3, 0, &val);
}

netsnmp_variable_list *
agent_notification_vars(struct agent *a, enum agent_notification which, const char *range)
{
	static const int high[]
	    = { AR_NAME, AR_UTILISATION, AR_WARN_PERCENT, AR_AVAILABLE, AR_STATUS };
	static const int full[] = { AR_NAME, AR_SIZE, AR_STATUS };
	oid trap[NUMPROV_MIB_LEN + 2];
	netsnmp_variable_list *vars = NULL;
	const struct range_view *v = NULL;
	const int *cols = NULL;
	size_t ncols = 0;
	int bad = 0;

	memcpy(trap, agent_mib_oid, sizeof(agent_mib_oid));
	trap[NUMPROV_MIB_LEN] = 0;
	trap[NUMPROV_MIB_LEN + 1] = (oid)which;
	if (which == AN_RANGE_HIGH || which == AN_RANGE_EXHAUSTED) {
		if (!range || !a->src.mon || !(v = monitor_range_named(a->src.mon, range)))
			return NULL;
		cols = which == AN_RANGE_HIGH ? high : full;
		ncols = which == AN_RANGE_HIGH ? sizeof(high) / sizeof(high[0])
					       : sizeof(full) / sizeof(full[0]);
	}
	if (!snmp_varlist_add_variable(&vars, trap_oid_oid,
		sizeof(trap_oid_oid) / sizeof(trap_oid_oid[0]), ASN_OBJECT_ID, trap, sizeof(trap)))
		return NULL;
	for (size_t i = 0; i < ncols; i++)
		bad |= add_range_var(&vars, v, cols[i]);
	if (which == AN_SYNC_FAILED) {
		bad |= add_scalar_var(&vars, a, 1, AS_LAST_RESULT);
		bad |= add_scalar_var(&vars, a, 1, AS_LAST_ERROR);
		bad |= add_scalar_var(&vars, a, 1, AS_FAILURES);
	} else if (which == AN_SYNC_RECOVERED) {
		bad |= add_scalar_var(&vars, a, 1, AS_LAST_RESULT);
		bad |= add_scalar_var(&vars, a, 1, AS_LAST_END);
	}
	if (bad) {
		snmp_free_varbind(vars);
		return NULL;
	}
	return vars;
}

static void agent_sync(struct agent *a, int rebuild);

static void
send_notification(struct agent *a, enum agent_notification which, const char *range)
{
	netsnmp_variable_list *vars;

	if (!(vars = agent_notification_vars(a, which, range))) {
		log_warnx("snmp", "cannot build notification %d%s%s", (int)which,
		    range ? " of " : "", range ? range : "");
		return;
	}
	send_v2trap(vars);
	snmp_free_varbind(vars);
	a->sent++;
}

static void
hold(struct agent *a, enum agent_notification which, const char *range)
{
	for (size_t i = 0; i < a->n_held; i++)
		if (a->held[i].which == which && strcmp(a->held[i].range, range ? range : "") == 0)
			return;
	if (a->n_held == AGENT_HELD_MAX) {
		if (!a->dropped++)
			log_warnx("snmp",
			    "more than %d notifications held for the master agent: "
			    "the later ones are dropped",
			    AGENT_HELD_MAX);
		return;
	}
	a->held[a->n_held].which = which;
	snprintf(a->held[a->n_held].range, sizeof(a->held[0].range), "%s", range ? range : "");
	a->n_held++;
}

/* Is the state a held notification told of still the state now? */
static int
standing(struct agent *a, const struct held *h)
{
	struct range_alarm al;

	if (!a->src.mon)
		return 0;
	switch (h->which) {
	case AN_RANGE_HIGH:
		return monitor_range_alarm(a->src.mon, h->range, &al) == 0 && al.high;
	case AN_RANGE_EXHAUSTED:
		return monitor_range_alarm(a->src.mon, h->range, &al) == 0 && al.exhausted;
	case AN_SYNC_FAILED:
		return monitor_sync_failing(a->src.mon);
	case AN_SYNC_RECOVERED:
		return !monitor_sync_failing(a->src.mon);
	}
	return 0;
}

/* Back in touch with the master: what still stands of what was raised meanwhile. */
static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	unsigned long sent = a->sent;

	(void)fd;
	(void)what;
	if (!a->connected)
		return;
	for (size_t i = 0; i < a->n_held; i++)
		if (a->cfg->snmp.traps && standing(a, &a->held[i]))
			send_notification(a, a->held[i].which, a->held[i].range);
	if (a->sent > sent)
		log_info("snmp", "sent %lu notification%s raised while the master agent was away",
		    a->sent - sent, a->sent - sent == 1 ? "" : "s");
	a->n_held = 0;
	a->dropped = 0;
	agent_sync(a, 0);
}

static void
on_event(const struct np_event *e, void *arg)
{
	struct agent *a = arg;
	enum agent_notification which;

	switch (e->kind) {
	case NPE_RANGE_HIGH:
		which = AN_RANGE_HIGH;
		break;
	case NPE_RANGE_EXHAUSTED:
		which = AN_RANGE_EXHAUSTED;
		break;
	case NPE_SYNC_FAILED:
		which = AN_SYNC_FAILED;
		break;
	case NPE_SYNC_RECOVERED:
		which = AN_SYNC_RECOVERED;
		break;
	default:
		return;
	}
	if (!a->cfg->snmp.traps || !a->running)
		return;
	if (!a->connected) {
		log_debug("snmp", "no master agent: the %s notification is held until it is back",
		    np_event_name(e->kind));
		hold(a, which, e->range);
		return;
	}
	send_notification(a, which, e->range);
	agent_sync(a, 0);
}

/* ---- net-snmp on the event loop ----------------------------------------- */

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;
	netsnmp_large_fd_set fds;

	(void)what;
	netsnmp_large_fd_set_init(&fds, FD_SETSIZE);
	NETSNMP_LARGE_FD_SET(fd, &fds);
	snmp_read2(&fds);
	netsnmp_check_outstanding_agent_requests();
	netsnmp_large_fd_set_cleanup(&fds);
	agent_sync(a, 0);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct agent *a = arg;

	(void)fd;
	(void)what;
	snmp_timeout();
	run_alarms(); /* pings and reconnections: net-snmp never gets SIGALRM */
	netsnmp_check_outstanding_agent_requests();
	agent_sync(a, 1); /* alarms may have closed and reopened a session */
}

/*
 * After every turn of net-snmp its descriptors and its next timeout are read
 * again (snmp_select_info2) and the loop's events follow: a descriptor closed
 * when the master went away loses its event before any other code runs.
 * block = 1 on return means net-snmp has nothing timed (no alarm either).
 */
static void
agent_sync(struct agent *a, int rebuild)
{
	netsnmp_large_fd_set fds;
	struct timeval tv = { 0, 0 };
	int maxfd = 0, block = 1, same;
	size_t n = 0;

	netsnmp_large_fd_set_init(&fds, FD_SETSIZE);
	snmp_select_info2(&maxfd, &fds, &tv, &block);
	/*
	 * A request changes no descriptor: the events stay (no epoll calls per
	 * request). This holds because net-snmp opens sessions only from its alarms
	 * (reconnection, a failed ping), which run in on_timeout, which rebuilds; a
	 * read that loses the master closes its session, so the set changes here.
	 */
	same = !rebuild;
	for (int fd = 0; fd < maxfd && same; fd++)
		if (NETSNMP_LARGE_FD_ISSET(fd, &fds))
			same = n < a->n_fd && event_get_fd(a->fd_ev[n++]) == fd;
	same = same && n == a->n_fd;
	while (!same && a->n_fd > 0)
		event_free(a->fd_ev[--a->n_fd]);
	for (int fd = 0; fd < maxfd && !same; fd++) {
		struct event *ev;
		if (!NETSNMP_LARGE_FD_ISSET(fd, &fds))
			continue;
		if (a->n_fd == AGENT_MAX_FDS) {
			log_warnx(
			    "snmp", "net-snmp has more than %d descriptors open", AGENT_MAX_FDS);
			break;
		}
		/* numprovd runs nothing, but a descriptor must never outlive an exec */
		(void)fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
		if (!(ev = event_new(a->base, fd, EV_READ | EV_PERSIST, on_read, a))
		    || event_add(ev, NULL) < 0) {
			if (ev)
				event_free(ev);
			log_warnx("snmp", "cannot watch net-snmp's descriptor %d", fd);
			continue;
		}
		a->fd_ev[a->n_fd++] = ev;
	}
	netsnmp_large_fd_set_cleanup(&fds);
	if (block)
		evtimer_del(a->timer);
	else if (evtimer_add(a->timer, &tv) < 0)
		log_warnx("snmp", "cannot arm net-snmp's timer: pings and reconnections stop");
}

/* ---- connection state and net-snmp's messages --------------------------- */

static int
on_index(int major, int minor, void *server, void *client)
{
	struct agent *a = client;

	(void)major;
	(void)server;
	if (minor == SNMPD_CALLBACK_INDEX_START && !a->connected) {
		struct timeval now = { 0, 0 };
		a->connected = 1;
		a->told = 0;
		/* after net-snmp has registered the MIB again, not inside its callback */
		if (a->n_held && a->flush)
			event_add(a->flush, &now);
		log_notice(
		    "snmp", "connected to the SNMP master agent at %s", a->cfg->snmp.agentx_socket);
	} else if (minor == SNMPD_CALLBACK_INDEX_STOP && a->connected) {
		a->connected = 0;
		a->told = 1;
		log_warnx("snmp", "lost the SNMP master agent at %s; trying again every %d s",
		    a->cfg->snmp.agentx_socket, a->cfg->snmp.ping_interval);
	}
	return 0;
}

/*
 * net-snmp's own messages go to our log under "libsnmp". While the master is
 * away every reconnection attempt fails with a warning: the first is logged,
 * the rest are debug, until the master is back.
 */
static int
on_log(int major, int minor, void *server, void *client)
{
	struct agent *a = client;
	const struct snmp_log_message *m = server;
	char msg[512];
	size_t n;
	int prio;

	(void)major;
	(void)minor;
	if (!m || !m->msg)
		return 0;
	snprintf(msg, sizeof(msg), "%s", m->msg);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	if (n == 0)
		return 0;
	prio = m->priority;
	if (strstr(msg, "Failed to connect to the agentx master agent")) {
		if (a->told || a->connected)
			prio = LOG_DEBUG;
		else {
			a->told = 1;
			log_warnx("snmp",
			    "cannot reach the SNMP master agent at %s; numprovd runs on and "
			    "tries again every %d s",
			    a->cfg->snmp.agentx_socket, a->cfg->snmp.ping_interval);
			return 0;
		}
	} else if (strstr(msg, "AgentX subagent connected")
	    || strstr(msg, "master disconnected us"))
		prio = LOG_DEBUG; /* on_index says it once, in our words */
	if (prio <= LOG_WARNING)
		log_warnx("libsnmp", "%s", msg);
	else if (prio <= LOG_INFO)
		log_info("libsnmp", "%s", msg);
	else
		log_debug("libsnmp", "%s", msg);
	return 0;
}

/* ---- life cycle ---------------------------------------------------------- */

struct agent *
agent_new_detached(struct config *cfg, const struct agent_source *src)
{
	struct agent *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->cfg = config_ref(cfg);
	a->src = *src;
	current = a;
	return a;
}

struct agent *
agent_new(struct event_base *base, struct config *cfg, const struct agent_source *src, char *err,
    size_t errlen)
{
	struct agent *a;
	oid mib[NUMPROV_MIB_LEN];

	if (current) {
		snprintf(err, errlen, "the SNMP agent is already running");
		return NULL;
	}
	if (!(a = agent_new_detached(cfg, src))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->base = base;
	if (!(a->socket = strdup(cfg->snmp.agentx_socket))) {
		snprintf(err, errlen, "out of memory");
		agent_free(a);
		return NULL;
	}
	if (!(a->timer = evtimer_new(base, on_timeout, a))
	    || !(a->flush = evtimer_new(base, on_flush, a))) {
		snprintf(err, errlen, "cannot create the SNMP timer");
		agent_free(a);
		return NULL;
	}
	netsnmp_enable_subagent();
	snmp_disable_log();
	snmp_enable_calllog();
	snmp_register_callback(SNMP_CALLBACK_LIBRARY, SNMP_CALLBACK_LOGGING, on_log, a);
	/*
	 * No configuration files (the agent is configured here, from numprovd.conf)
	 * and no MIB files: a subagent answers by OID, and parsing the system's
	 * MIBs would only fill the log with their import errors.
	 */
	netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_READ_CONFIGS, 1);
	setenv("MIBS", "", 1);
	/* nothing persistent: numprovd keeps no net-snmp state on disk */
	netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DONT_PERSIST_STATE, 1);
	netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_LOAD, 1);
	netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_SAVE, 1);
	/* timers come from our loop (run_alarms in on_timeout), never from SIGALRM */
	netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_ALARM_DONT_USE_SIG, 1);
	snmp_register_callback(SNMP_CALLBACK_APPLICATION, SNMPD_CALLBACK_INDEX_START, on_index, a);
	snmp_register_callback(SNMP_CALLBACK_APPLICATION, SNMPD_CALLBACK_INDEX_STOP, on_index, a);
	/* the library's defaults are set once, here, so that ours below stay */
	{
		netsnmp_session defaults;
		snmp_sess_init(&defaults);
	}
	if (init_agent(AGENT_NAME) != 0) {
		snprintf(err, errlen, "net-snmp's agent library cannot start");
		agent_free(a);
		return NULL;
	}
	/* a ping is synchronous: a hung master costs one second, not six */
	netsnmp_ds_set_int(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_TIMEOUT, 1);
	netsnmp_ds_set_int(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_RETRIES, 0);
	/* also the wait between reconnection attempts */
	netsnmp_ds_set_int(NETSNMP_DS_APPLICATION_ID, NETSNMP_DS_AGENT_AGENTX_PING_INTERVAL,
	    cfg->snmp.ping_interval);
	netsnmp_ds_set_string(
	    NETSNMP_DS_APPLICATION_ID, NETSNMP_DS_AGENT_X_SOCKET, cfg->snmp.agentx_socket);
	a->running = 1;
	memcpy(mib, agent_mib_oid, sizeof(mib));
	if (register_mib("numprov", (struct variable *)agent_vars, sizeof(struct variable4),
		agent_nvars, mib, NUMPROV_MIB_LEN)
	    != MIB_REGISTERED_OK) {
		snprintf(err, errlen, "cannot register NUMPROV-MIB with net-snmp");
		agent_free(a);
		return NULL;
	}
	init_snmp(AGENT_NAME); /* connects, or arms the reconnection alarm */
	register_sysORTable(mib, NUMPROV_MIB_LEN, "NUMPROV-MIB: Teams number provisioning");
	if (np_event_subscribe(on_event, a) == 0)
		a->subscribed = 1;
	else
		log_warnx("snmp", "too many event subscribers: no SNMP notifications will be sent");
	if (!a->connected && !a->told) {
		a->told = 1;
		log_warnx("snmp", "no SNMP master agent at %s yet; trying again every %d s",
		    cfg->snmp.agentx_socket, cfg->snmp.ping_interval);
	}
	agent_sync(a, 1);
	return a;
}

void
agent_free(struct agent *a)
{
	if (!a)
		return;
	if (a->subscribed)
		np_event_unsubscribe(on_event, a);
	/*
	 * Our callbacks go first: snmp_shutdown frees every callback registration
	 * (clear_callback), so unregistering after it would walk freed memory.
	 */
	if (a->base) { /* agent_new registered these before anything could fail */
		snmp_unregister_callback(
		    SNMP_CALLBACK_APPLICATION, SNMPD_CALLBACK_INDEX_START, on_index, a, 1);
		snmp_unregister_callback(
		    SNMP_CALLBACK_APPLICATION, SNMPD_CALLBACK_INDEX_STOP, on_index, a, 1);
		snmp_unregister_callback(
		    SNMP_CALLBACK_LIBRARY, SNMP_CALLBACK_LOGGING, on_log, a, 1);
	}
	if (a->running) {
		oid mib[NUMPROV_MIB_LEN];
		memcpy(mib, agent_mib_oid, sizeof(mib));
		unregister_sysORTable(mib, NUMPROV_MIB_LEN);
		snmp_shutdown(AGENT_NAME);
		shutdown_agent();
	}
	while (a->n_fd > 0)
		event_free(a->fd_ev[--a->n_fd]);
	if (a->timer)
		event_free(a->timer);
	if (a->flush)
		event_free(a->flush);
	config_free(a->cfg);
	if (current == a)
		current = NULL;
	free(a->socket);
	free(a);
}

void
agent_set_config(struct agent *a, struct config *cfg)
{
	if (strcmp(cfg->snmp.agentx_socket, a->cfg->snmp.agentx_socket) != 0
	    || cfg->snmp.ping_interval != a->cfg->snmp.ping_interval)
		log_warnx("snmp",
		    "snmp.agentx_socket and snmp.ping_interval take effect at the next "
		    "restart");
	config_free(a->cfg);
	a->cfg = config_ref(cfg);
}

const char *
agent_socket(const struct agent *a)
{
	return a && a->socket ? a->socket : "";
}

int
agent_connected(const struct agent *a)
{
	return a && a->connected;
}

unsigned long
agent_notifications(const struct agent *a)
{
	return a ? a->sent : 0;
}
