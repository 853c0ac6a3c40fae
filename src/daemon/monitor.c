#include "build-config.h"

#include "monitor.h"

#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "clock.h"
#include "config.h"
#include "events.h"
#include "inventory.h"
#include "log.h"
#include "loop.h"
#include "provision.h"

#define TICK_MS 1000	  /* while a round runs, the snapshot follows it this often */
#define IDLE_REFRESH_S 10 /* and otherwise at least this often (quarantines end) */

struct monitor {
	struct config *cfg; /* a reference */
	struct inventory *inv;
	monitor_stats_fn stats;
	void *stats_arg;
	struct loop_timer *soon, *tick;
	struct range_view *v; /* by index */
	size_t n;
	struct range_alarm *alarm; /* by index, one per row of v */
	time_t started, refreshed;
	int failing;
	int armed;	 /* soon is pending */
	int read_failed; /* said once until a read works again */
};

static int
by_index(const void *a, const void *b)
{
	uint32_t x = ((const struct range_view *)a)->r.index;
	uint32_t y = ((const struct range_view *)b)->r.index;

	return x < y ? -1 : x > y;
}

/* Below this a warning clears: 5 points under the threshold, or half of a threshold that low. */
double
monitor_clear_at(int warn_percent)
{
	return warn_percent > MONITOR_HYSTERESIS ? (double)(warn_percent - MONITOR_HYSTERESIS)
						 : warn_percent / 2.0;
}

int
monitor_step(const struct range_view *v, struct range_alarm *a)
{
	int out = 0;

	if (v->status
	    == RS_REMOVED) { /* no longer watched: a new range of that name starts clean */
		a->high = a->exhausted = 0;
		return 0;
	}
	if (!a->high && v->utilisation >= v->warn_percent) {
		a->high = 1;
		out |= ALARM_HIGH;
	} else if (a->high && v->utilisation < monitor_clear_at(v->warn_percent)) {
		a->high = 0;
		out |= ALARM_OK;
	}
	if (!a->exhausted && v->available == 0 && v->r.size > 0) {
		a->exhausted = 1;
		out |= ALARM_EXHAUSTED;
	} else if (a->exhausted && v->available > 0)
		a->exhausted = 0;
	return out;
}

static void
range_event(enum np_event_kind kind, const struct range_view *v)
{
	struct np_event e = { .kind = kind,
		.range = v->r.name,
		.utilisation = v->utilisation,
		.warn_percent = v->warn_percent,
		.available = (unsigned long long)v->available,
		.size = (unsigned long long)v->r.size };

	np_event_emit(&e);
}

static const struct range_alarm *
old_alarm(const struct monitor *m, uint32_t index)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (m->alarm[mid].index == index)
			return &m->alarm[mid];
		if (m->alarm[mid].index < index)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int
monitor_refresh(struct monitor *m)
{
	struct range_view *v;
	struct range_alarm *a;
	int *changes;
	size_t n;

	if (range_views(m->inv, m->cfg, &v, &n) < 0) {
		if (!m->read_failed++)
			log_warnx(
			    "monitor", "cannot read the ranges; the SNMP view keeps the last ones");
		return -1;
	}
	if (m->read_failed) {
		m->read_failed = 0;
		log_info("monitor", "the ranges can be read again");
	}
	if (n)
		qsort(v, n, sizeof(*v), by_index);
	a = n ? calloc(n, sizeof(*a)) : NULL;
	changes = n ? calloc(n, sizeof(*changes)) : NULL;
	if (n && (!a || !changes)) {
		free(v);
		free(a);
		free(changes);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct range_alarm *o = old_alarm(m, v[i].r.index);
		if (o)
			a[i] = *o;
		a[i].index = v[i].r.index;
		changes[i] = monitor_step(&v[i], &a[i]);
	}
	/* the new snapshot is in place before anyone hears of a change */
	free(m->v);
	free(m->alarm);
	m->v = v;
	m->alarm = a;
	m->n = n;
	m->refreshed = np_time();
	for (size_t i = 0; i < n; i++) {
		if (changes[i] & ALARM_HIGH)
			range_event(NPE_RANGE_HIGH, &m->v[i]);
		if (changes[i] & ALARM_EXHAUSTED)
			range_event(NPE_RANGE_EXHAUSTED, &m->v[i]);
		if (changes[i] & ALARM_OK)
			range_event(NPE_RANGE_OK, &m->v[i]);
	}
	free(changes);
	return 0;
}

static void
on_soon(void *arg)
{
	struct monitor *m = arg;

	m->armed = 0;
	monitor_refresh(m);
}

static void
on_tick(void *arg)
{
	struct monitor *m = arg;
	struct prov_stats st = { 0 };

	if (m->stats)
		m->stats(m->stats_arg, &st);
	if (st.running || np_time() - m->refreshed >= IDLE_REFRESH_S)
		monitor_refresh(m);
	loop_timer_start(m->tick, TICK_MS);
}

/* Not postponed by further changes: a busy round is followed at this pace. */
void
monitor_changed(struct monitor *m)
{
	if (!m || m->armed)
		return;
	m->armed = 1;
	loop_timer_start(m->soon, MONITOR_DELAY_MS);
}

/* The sync alarm follows the rounds' results; the ranges follow their changes. */
static void
on_event(const struct np_event *e, void *arg)
{
	struct monitor *m = arg;

	switch (e->kind) {
	case NPE_SYNC: {
		int failed = e->result && strcmp(e->result, "failed") == 0;
		struct prov_stats st = { 0 };
		m->armed = 1; /* the round's last changes, now */
		loop_timer_start(m->soon, 0);
		if (failed == m->failing)
			break;
		m->failing = failed;
		if (m->stats)
			m->stats(m->stats_arg, &st);
		np_event_emit(
		    &(struct np_event) { .kind = failed ? NPE_SYNC_FAILED : NPE_SYNC_RECOVERED,
			.result = e->result,
			.failures = st.failures,
			.error = e->error });
		break;
	}
	case NPE_ASSIGN:
	case NPE_RELEASE:
	case NPE_ADOPT:
	case NPE_SETTLED:
	case NPE_RESERVE:
	case NPE_UNRESERVE:
	case NPE_EXHAUSTED:
	case NPE_DRIFT:
	case NPE_HOLD:
	case NPE_AUTO:
		if (!e->dry_run)
			monitor_changed(m);
		break;
	default:
		break;
	}
}

struct monitor *
monitor_new(struct event_base *base, struct config *cfg, struct inventory *inv,
    monitor_stats_fn stats, void *stats_arg)
{
	struct monitor *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->cfg = config_ref(cfg);
	m->inv = inv;
	m->stats = stats;
	m->stats_arg = stats_arg;
	m->started = np_time();
	m->soon = loop_timer_new(base, on_soon, m);
	m->tick = loop_timer_new(base, on_tick, m);
	if (!m->soon || !m->tick || np_event_subscribe(on_event, m) < 0) {
		monitor_free(m);
		return NULL;
	}
	monitor_refresh(m);
	loop_timer_start(m->tick, TICK_MS);
	return m;
}

void
monitor_free(struct monitor *m)
{
	if (!m)
		return;
	np_event_unsubscribe(on_event, m);
	loop_timer_free(m->soon);
	loop_timer_free(m->tick);
	config_free(m->cfg);
	free(m->v);
	free(m->alarm);
	free(m);
}

void
monitor_set_config(struct monitor *m, struct config *cfg)
{
	config_free(m->cfg);
	m->cfg = config_ref(cfg);
	monitor_refresh(m);
}

const struct range_view *
monitor_ranges(const struct monitor *m, size_t *n)
{
	*n = m->n;
	return m->v;
}

const struct range_view *
monitor_range(const struct monitor *m, uint32_t index, int next)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) { /* the first row whose index is >= index (> when next) */
		size_t mid = (lo + hi) / 2;
		if (m->v[mid].r.index < index || (next && m->v[mid].r.index == index))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == m->n || (!next && m->v[lo].r.index != index))
		return NULL;
	return &m->v[lo];
}

const struct range_view *
monitor_range_named(const struct monitor *m, const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->v[i].r.name, name) == 0)
			return &m->v[i];
	return NULL;
}

int
monitor_range_alarm(const struct monitor *m, const char *name, struct range_alarm *out)
{
	const struct range_view *v = monitor_range_named(m, name);

	if (!v)
		return -1;
	*out = m->alarm[v - m->v]; /* the flags sit beside the rows, in the same order */
	return 0;
}

time_t
monitor_started(const struct monitor *m)
{
	return m->started;
}

int
monitor_sync_failing(const struct monitor *m)
{
	return m->failing;
}
