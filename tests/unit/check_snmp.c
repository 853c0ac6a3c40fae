/*
 * NUMPROV-MIB's handlers without snmpd: the variables' order, GET and GETNEXT
 * of scalars and of the range table from the monitor's snapshot, the SET
 * checks of numprovSyncTrigger, notification varbinds built from the GET
 * code, and the alarm steps with their hysteresis.
 */
#include "build-config.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_mib.h"
#include "config.h"
#include "events.h"
#include "inventory.h"
#include "log.h"
#include "monitor.h"
#include "provision.h"
#include "testutil.h"
#include "snmp_world.h"

#define T0 1790000000

static char dir[64], err[1024];
static struct config *cfg;
static struct inventory *inv;
static struct event_base *base;
static struct monitor *mon;
static struct agent *agent;
static struct prov_stats fake;
static int triggered, triggered_full;
static char events_seen[4096];

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
	triggered_full += full;
}

static void
note_event(const struct np_event *e, void *arg)
{
	size_t used = strlen(events_seen);

	(void)arg;
	snprintf(events_seen + used, sizeof(events_seen) - used, "%s:%s ", np_event_name(e->kind),
	    e->range ? e->range : "");
}

static void
quiet(int prio, const char *token, const char *msg)
{
	(void)prio;
	(void)token;
	(void)msg;
}

static void
setup(void)
{
	char path[128];
	FILE *f;
	struct agent_source src = { NULL, fake_stats, fake_trigger, NULL };

	snprintf(dir, sizeof(dir), "/tmp/numprov-snmp-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/numprovd.conf", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fprintf(f, SNMP_WORLD_CONF, dir);
	fclose(f);
	log_register(quiet);
	cfg = config_load(path, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "%s", err);
	snprintf(path, sizeof(path), "%s/db", dir);
	ck_assert_int_eq(inv_open(path, INV_OPEN_NOSYNC, &inv, err, sizeof(err)), INV_OK);
	ck_assert_int_eq(inv_sync_ranges(inv, cfg, T0), INV_OK);
	ck_assert_ptr_nonnull(base = event_base_new());
	memset(&fake, 0, sizeof(fake));
	triggered = triggered_full = 0;
	events_seen[0] = '\0';
	ck_assert_int_eq(np_event_subscribe(note_event, NULL), 0);
	ck_assert_ptr_nonnull(mon = monitor_new(base, cfg, inv, fake_stats, NULL));
	src.mon = mon;
	ck_assert_ptr_nonnull(agent = agent_new_detached(cfg, &src));
}

static void
teardown(void)
{
	char cmd[128];

	agent_free(agent);
	monitor_free(mon);
	np_event_unsubscribe(note_event, NULL);
	event_base_free(base);
	inv_close(inv);
	config_free(cfg);
	log_register(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* numprovMIB + sub, as a name to look up */
static size_t
name_of(oid *name, const oid *sub, size_t n)
{
	memcpy(name, agent_mib_oid, NUMPROV_MIB_LEN * sizeof(oid));
	if (n)
		memcpy(name + NUMPROV_MIB_LEN, sub, n * sizeof(oid));
	return NUMPROV_MIB_LEN + n;
}

static int
get(const oid *sub, size_t n, struct agent_value *out)
{
	oid name[MAX_OID_LEN];
	size_t len = name_of(name, sub, n);
	WriteMethod *w = NULL;

	return agent_lookup(agent, name, &len, 1, out, &w) != NULL;
}

static long
get_int(const oid *sub, size_t n)
{
	struct agent_value v;

	ck_assert_msg(get(sub, n, &v), "no value");
	return v.type == ASN_INTEGER ? v.v.integer : (long)v.v.gauge;
}

START_TEST(test_variables_strictly_increasing)
{
	for (size_t i = 1; i < agent_nvars; i++) {
		int cmp = snmp_oid_compare(agent_vars[i - 1].name, agent_vars[i - 1].namelen,
		    agent_vars[i].name, agent_vars[i].namelen);
		ck_assert_msg(cmp < 0, "variable %zu is not after %zu", i, i - 1);
	}
	/* the arc: netSnmpPlaypen.6867, as in mibs/NUMPROV-MIB.txt */
	{
		static const oid playpen[] = { 1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 6867 };
		ck_assert_uint_eq(NUMPROV_MIB_LEN, 10);
		ck_assert(memcmp(agent_mib_oid, playpen, sizeof(playpen)) == 0);
	}
	/* 11 sync scalars, 8 statistics, 14 readable columns */
	ck_assert_uint_eq(agent_nvars, 11 + 8 + 14);
}
END_TEST

START_TEST(test_sync_scalars_from_the_statistics)
{
	const oid state[] = { 1, 1, AS_STATE, 0 }, result[] = { 1, 1, AS_LAST_RESULT, 0 },
		  start[] = { 1, 1, AS_LAST_START, 0 }, end[] = { 1, 1, AS_LAST_END, 0 },
		  error[] = { 1, 1, AS_LAST_ERROR, 0 }, count[] = { 1, 1, AS_COUNT, 0 },
		  trigger[] = { 1, 1, AS_TRIGGER, 0 }, next[] = { 1, 1, AS_NEXT_IN, 0 },
		  drift[] = { 1, 2, AT_DRIFT, 0 }, tracked[] = { 1, 2, AT_USERS_TRACKED, 0 };
	struct agent_value v;

	ck_assert_int_eq(get_int(state, 4), 1);	 /* idle */
	ck_assert_int_eq(get_int(result, 4), 1); /* never */
	ck_assert(get(start, 4, &v));
	ck_assert_uint_eq(v.len, 8); /* no sync yet: eight zero octets */
	for (size_t i = 0; i < 8; i++)
		ck_assert_uint_eq(v.v.octets[i], 0);

	fake.running = 1;
	fake.last_result = PR_PARTIAL;
	fake.last_end = 1795000000;  /* 2026-11-18 11:06:40 UTC */
	fake.syncs = 0x100000005ULL; /* Counter32 wraps */
	fake.drift = 3;
	fake.users_tracked = 0x1ffffffffULL; /* Gauge32 stops at the top */
	fake.next_at = time(NULL) + 100;
	snprintf(fake.last_error, sizeof(fake.last_error), "Graph said 503");
	ck_assert_int_eq(get_int(state, 4), 2);	 /* running */
	ck_assert_int_eq(get_int(result, 4), 3); /* partial */
	ck_assert_int_eq(get_int(next, 4), 0);	 /* running: nothing to wait for */
	ck_assert(get(end, 4, &v));
	ck_assert_uint_eq(v.len, 11);
	ck_assert_uint_eq((v.v.octets[0] << 8) | v.v.octets[1], 2026);
	ck_assert_uint_eq(v.v.octets[2], 11);
	ck_assert_uint_eq(v.v.octets[3], 18);
	ck_assert_uint_eq(v.v.octets[4], 11);
	ck_assert_uint_eq(v.v.octets[5], 6);
	ck_assert_uint_eq(v.v.octets[6], 40);
	ck_assert_uint_eq(v.v.octets[8], '+');
	ck_assert(get(error, 4, &v));
	ck_assert_uint_eq(v.len, strlen("Graph said 503"));
	ck_assert(memcmp(v.v.octets, "Graph said 503", v.len) == 0);
	ck_assert(get(count, 4, &v));
	ck_assert_uint_eq(v.type, ASN_COUNTER);
	ck_assert_uint_eq(v.v.gauge, 5);
	ck_assert(get(tracked, 4, &v));
	ck_assert_uint_eq(v.type, ASN_GAUGE);
	ck_assert_uint_eq(v.v.gauge, 0xffffffffUL);
	ck_assert_int_eq(get_int(drift, 4), 3);
	ck_assert_int_eq(get_int(trigger, 4), 0); /* reads back idle */
	{
		const oid full[] = { 1, 1, AS_LAST_FULL, 0 };
		fake.last_result = PR_NEVER; /* the first round, a full one, is running */
		fake.last_full = 1;
		ck_assert_int_eq(get_int(full, 4), 1);
		fake.running = 0;
		ck_assert_int_eq(get_int(full, 4), 2); /* never ran: false */
		fake.last_result = PR_PARTIAL;
		ck_assert_int_eq(get_int(full, 4), 1);
	}
	fake.running = 0;
	ck_assert_int_ge(get_int(next, 4), 98);
	fake.next_at = 0; /* nothing scheduled: the top of Gauge32, not "due now" */
	ck_assert(get(next, 4, &v));
	ck_assert_uint_eq(v.v.gauge, 0xffffffffUL);
	/* a scalar without .0, or with more after it, is no instance */
	ck_assert(!get(state, 3, &v));
	{
		const oid deeper[] = { 1, 1, AS_STATE, 0, 1 };
		ck_assert(!get(deeper, 5, &v));
	}
}
END_TEST

static const struct range_view *
row(const char *name)
{
	const struct range_view *v = monitor_range_named(mon, name);
	ck_assert_ptr_nonnull(v);
	return v;
}

START_TEST(test_range_table_get)
{
	const struct range_view *a = row("a"), *b = row("b"), *c = row("c");
	oid sub[4] = { 1, 3, 1, AR_NAME };
	struct agent_value v;
	oid col[] = { 1, 3, 1, 0, 0 };

	ck_assert_uint_lt(a->r.index, b->r.index);
	col[4] = b->r.index;
	col[3] = AR_NAME;
	ck_assert(get(col, 5, &v));
	ck_assert_uint_eq(v.len, 1);
	ck_assert_int_eq(v.v.octets[0], 'b');
	col[3] = AR_TYPE;
	ck_assert_int_eq(get_int(col, 5), 1); /* callingPlan */
	col[4] = c->r.index;
	ck_assert_int_eq(get_int(col, 5), 2); /* operatorConnect */
	col[4] = a->r.index;
	ck_assert_int_eq(get_int(col, 5), 3); /* directRouting */
	col[3] = AR_SIZE;
	ck_assert_int_eq(get_int(col, 5), 100);
	col[3] = AR_RESERVED;
	ck_assert_int_eq(get_int(col, 5), 1);
	col[3] = AR_AVAILABLE;
	ck_assert_int_eq(get_int(col, 5), 99);
	col[3] = AR_UTILISATION;
	ck_assert_int_eq(get_int(col, 5), 1);
	col[3] = AR_WARN_PERCENT;
	ck_assert_int_eq(get_int(col, 5), 50);
	col[3] = AR_STATUS;
	ck_assert_int_eq(get_int(col, 5), 1); /* ok */
	col[3] = AR_FIRST;
	ck_assert(get(col, 5, &v));
	ck_assert_uint_eq(v.len, strlen("+441235000000"));
	ck_assert(memcmp(v.v.octets, "+441235000000", v.len) == 0);
	/* no such rows: index 0, an index not in use, beyond 32 bits */
	col[4] = 0;
	ck_assert(!get(col, 5, &v));
	col[4] = 999;
	ck_assert(!get(col, 5, &v));
	col[4] = 0x100000000ULL + a->r.index;
	ck_assert(!get(col, 5, &v));
	/* the index column is not readable */
	sub[3] = AR_INDEX;
	ck_assert(!get(sub, 4, &v));
}
END_TEST

/* GETNEXT from the top of the module walks every object once, in order. */
START_TEST(test_walk_visits_every_instance_in_order)
{
	oid name[MAX_OID_LEN], prev[MAX_OID_LEN];
	size_t len = name_of(name, NULL, 0), plen = 0, seen = 0, rows = 0;
	struct agent_value v;
	WriteMethod *w;

	while (agent_lookup(agent, name, &len, 0, &v, &w)) {
		if (plen)
			ck_assert_int_lt(snmp_oid_compare(prev, plen, name, len), 0);
		memcpy(prev, name, len * sizeof(oid));
		plen = len;
		seen++;
		if (len == NUMPROV_MIB_LEN + 5 && name[NUMPROV_MIB_LEN + 1] == 3)
			rows++;
		ck_assert_uint_le(seen, 1000);
	}
	ck_assert_uint_eq(seen, 11 + 8 + 14 * 3);
	ck_assert_uint_eq(rows, 14 * 3);
	/* GETNEXT from inside a column row goes to the next row, then the next column */
	{
		oid sub[] = { 1, 3, 1, AR_NAME, row("c")->r.index, 7 };
		len = name_of(name, sub, 6);
		ck_assert(agent_lookup(agent, name, &len, 0, &v, &w));
		ck_assert_uint_eq(name[NUMPROV_MIB_LEN + 3], AR_TYPE);
		ck_assert_uint_eq(name[NUMPROV_MIB_LEN + 4], row("a")->r.index);
	}
}
END_TEST

START_TEST(test_trigger_set_checks_type_length_value_and_acts_in_commit)
{
	long v = 1;
	oid name[MAX_OID_LEN];
	const oid sub[] = { 1, 1, AS_TRIGGER, 0 };
	size_t len = name_of(name, sub, 4);
	struct agent_value out;
	WriteMethod *w = NULL;

	ck_assert(agent_lookup(agent, name, &len, 1, &out, &w));
	ck_assert_ptr_eq(w, agent_write_trigger);
	ck_assert_int_eq(
	    agent_write_trigger(RESERVE1, (u_char *)"1", ASN_OCTET_STR, 1, NULL, name, len),
	    SNMP_ERR_WRONGTYPE);
	ck_assert_int_eq(
	    agent_write_trigger(RESERVE1, (u_char *)&v, ASN_INTEGER, 2, NULL, name, len),
	    SNMP_ERR_WRONGLENGTH);
	v = 3;
	ck_assert_int_eq(
	    agent_write_trigger(RESERVE1, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_WRONGVALUE);
	v = -1;
	ck_assert_int_eq(
	    agent_write_trigger(RESERVE1, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_WRONGVALUE);
	ck_assert_int_eq(triggered, 0);
	v = 2;
	ck_assert_int_eq(
	    agent_write_trigger(RESERVE1, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_NOERROR);
	ck_assert_int_eq(
	    agent_write_trigger(RESERVE2, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_NOERROR);
	ck_assert_int_eq(
	    agent_write_trigger(ACTION, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_NOERROR);
	ck_assert_int_eq(triggered, 0); /* nothing before COMMIT */
	ck_assert_int_eq(
	    agent_write_trigger(COMMIT, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_NOERROR);
	ck_assert_int_eq(triggered, 1);
	ck_assert_int_eq(triggered_full, 1);
	v = 0; /* idle: what it reads, not an order */
	ck_assert_int_eq(
	    agent_write_trigger(RESERVE1, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_WRONGVALUE);
	ck_assert_int_eq(
	    agent_write_trigger(COMMIT, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, len),
	    SNMP_ERR_WRONGVALUE);
	ck_assert_int_eq(triggered, 1);
	/* the handler answers numprovSyncTrigger.0 alone: no instance below or beside it */
	{
		const oid below[] = { 1, 1, AS_TRIGGER, 0, 5 }, beside[] = { 1, 1, AS_TRIGGER, 1 };
		size_t l;
		v = 1;
		l = name_of(name, below, 5);
		w = agent_write_trigger;
		ck_assert(!agent_lookup(agent, name, &l, 1, &out, &w));
		ck_assert_ptr_null(w); /* net-snmp would call a write method left here */
		ck_assert_int_eq(agent_write_trigger(
				     RESERVE1, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, l),
		    SNMP_ERR_NOCREATION);
		ck_assert_int_eq(agent_write_trigger(
				     COMMIT, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, l),
		    SNMP_ERR_NOCREATION);
		l = name_of(name, beside, 4);
		ck_assert_int_eq(agent_write_trigger(
				     RESERVE1, (u_char *)&v, ASN_INTEGER, sizeof(v), NULL, name, l),
		    SNMP_ERR_NOCREATION);
		ck_assert_int_eq(triggered, 1);
	}
	/* the other objects have no write method */
	{
		const oid st[] = { 1, 1, AS_STATE, 0 };
		len = name_of(name, st, 4);
		w = agent_write_trigger;
		ck_assert(agent_lookup(agent, name, &len, 1, &out, &w));
		ck_assert_ptr_null(w);
	}
}
END_TEST

static struct range_view
view(double util, int warn, uint64_t available)
{
	struct range_view v = { 0 };

	v.r.size = 100;
	v.utilisation = util;
	v.warn_percent = warn;
	v.available = available;
	v.status = RS_OK;
	return v;
}

START_TEST(test_alarm_hysteresis)
{
	struct range_alarm a = { 0 };
	struct range_view v;

	v = view(79.9, 80, 21);
	ck_assert_int_eq(monitor_step(&v, &a), 0);
	v = view(80, 80, 20);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_HIGH);
	ck_assert_int_eq(monitor_step(&v, &a), 0); /* once per change of state */
	v = view(79, 80, 21);
	ck_assert_int_eq(monitor_step(&v, &a), 0); /* at the threshold: no flapping */
	v = view(80, 80, 20);
	ck_assert_int_eq(monitor_step(&v, &a), 0);
	v = view(75, 80, 25);
	ck_assert_int_eq(monitor_step(&v, &a), 0);
	v = view(74.9, 80, 26);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_OK);
	v = view(80, 80, 20);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_HIGH);
	v = view(100, 80, 0);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_EXHAUSTED);
	ck_assert_int_eq(monitor_step(&v, &a), 0);
	v = view(99, 80, 1);
	ck_assert_int_eq(monitor_step(&v, &a), 0);
	v = view(100, 80, 0);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_EXHAUSTED);
	/* a threshold of 5 or less clears below half of it, so it can warn again */
	memset(&a, 0, sizeof(a));
	v = view(5, 5, 95);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_HIGH);
	v = view(3, 5, 97);
	ck_assert_int_eq(monitor_step(&v, &a), 0);
	v = view(2, 5, 98);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_OK);
	v = view(5, 5, 95);
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_HIGH);
	v = view(100, 80, 0);
	/* from nothing to full at once: both */
	memset(&a, 0, sizeof(a));
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_HIGH | ALARM_EXHAUSTED);
	/* a removed range is not watched, and starts clean if it comes back */
	v.status = RS_REMOVED;
	ck_assert_int_eq(monitor_step(&v, &a), 0);
	v.status = RS_EXHAUSTED;
	ck_assert_int_eq(monitor_step(&v, &a), ALARM_HIGH | ALARM_EXHAUSTED);
}
END_TEST

/* Two numbers of "b" (warn_percent 20) reserved: one range_high event, after the refresh. */
START_TEST(test_monitor_events_once_per_change)
{
	ck_assert_int_eq(inv_reserve(inv, "+442071230001", T0), INV_OK);
	ck_assert_int_eq(inv_reserve(inv, "+442071230002", T0), INV_OK);
	ck_assert_ptr_null(strstr(events_seen, "range_high"));
	ck_assert_int_eq(monitor_refresh(mon), 0);
	ck_assert_str_eq(events_seen, "range_high:b ");
	ck_assert_int_eq(monitor_refresh(mon), 0);
	ck_assert_str_eq(events_seen, "range_high:b ");
	ck_assert_uint_eq(row("b")->r.count[INV_RESERVED], 2);
	ck_assert_int_eq(row("b")->status, RS_WARNING);
}
END_TEST

START_TEST(test_notification_varbinds_are_the_get_values)
{
	netsnmp_variable_list *vars, *vb;
	const struct range_view *b = row("b");
	size_t n = 0;
	static const int cols[]
	    = { AR_NAME, AR_UTILISATION, AR_WARN_PERCENT, AR_AVAILABLE, AR_STATUS };

	ck_assert_ptr_null(agent_notification_vars(agent, AN_RANGE_HIGH, "nosuch"));
	ck_assert_ptr_nonnull(vars = agent_notification_vars(agent, AN_RANGE_HIGH, "b"));
	/* snmpTrapOID.0 = numprovRangeUtilisationHigh = numprovMIB.0.1 */
	ck_assert_uint_eq(vars->type, ASN_OBJECT_ID);
	ck_assert_uint_eq(vars->val_len, (NUMPROV_MIB_LEN + 2) * sizeof(oid));
	ck_assert_uint_eq(vars->val.objid[NUMPROV_MIB_LEN], 0);
	ck_assert_uint_eq(vars->val.objid[NUMPROV_MIB_LEN + 1], AN_RANGE_HIGH);
	for (vb = vars->next_variable; vb; vb = vb->next_variable, n++) {
		oid name[MAX_OID_LEN];
		size_t len = vb->name_length;
		struct agent_value v;
		WriteMethod *w;

		ck_assert_uint_lt(n, 5);
		/* the full instance: numprovMIB.1.3.1.column.index */
		ck_assert_uint_eq(vb->name_length, NUMPROV_MIB_LEN + 5);
		ck_assert_uint_eq(vb->name[NUMPROV_MIB_LEN + 3], (oid)cols[n]);
		ck_assert_uint_eq(vb->name[NUMPROV_MIB_LEN + 4], b->r.index);
		memcpy(name, vb->name, len * sizeof(oid));
		ck_assert(agent_lookup(agent, name, &len, 1, &v, &w));
		ck_assert_uint_eq(v.type, vb->type);
		ck_assert_uint_eq(v.len, vb->val_len);
		ck_assert(memcmp(&v.v, vb->val.string, v.len) == 0);
	}
	ck_assert_uint_eq(n, 5);
	snmp_free_varbind(vars);

	fake.last_result = PR_FAILED;
	snprintf(fake.last_error, sizeof(fake.last_error), "token refused");
	ck_assert_ptr_nonnull(vars = agent_notification_vars(agent, AN_SYNC_FAILED, NULL));
	vb = vars->next_variable;
	ck_assert_uint_eq(vb->name_length, NUMPROV_MIB_LEN + 4);
	ck_assert_uint_eq(vb->name[NUMPROV_MIB_LEN + 2], AS_LAST_RESULT);
	ck_assert_uint_eq(vb->name[NUMPROV_MIB_LEN + 3], 0);
	ck_assert_int_eq(*vb->val.integer, 4); /* failed */
	vb = vb->next_variable;
	ck_assert_uint_eq(vb->val_len, strlen("token refused"));
	ck_assert_ptr_nonnull(vb = vb->next_variable);
	ck_assert_ptr_null(vb->next_variable);
	snmp_free_varbind(vars);
}
END_TEST

/* The sync alarm: failed once, not again while failing, recovered once. */
START_TEST(test_sync_alarm_follows_results)
{
	struct np_event e = { .kind = NPE_SYNC, .result = "failed", .error = "x" };

	np_event_emit(&e);
	np_event_emit(&e);
	e.result = "partial";
	np_event_emit(&e);
	e.result = "success";
	np_event_emit(&e);
	ck_assert_str_eq(events_seen, "sync: sync_failed: sync: sync: sync_recovered: sync: ");
}
END_TEST

static Suite *
snmp_suite(void)
{
	Suite *s = suite_create("snmp");
	TCase *tc = tcase_create("handlers");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_variables_strictly_increasing);
	tcase_add_test(tc, test_sync_scalars_from_the_statistics);
	tcase_add_test(tc, test_range_table_get);
	tcase_add_test(tc, test_walk_visits_every_instance_in_order);
	tcase_add_test(tc, test_trigger_set_checks_type_length_value_and_acts_in_commit);
	tcase_add_test(tc, test_alarm_hysteresis);
	tcase_add_test(tc, test_monitor_events_once_per_change);
	tcase_add_test(tc, test_notification_varbinds_are_the_get_values);
	tcase_add_test(tc, test_sync_alarm_follows_results);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(snmp_suite)
