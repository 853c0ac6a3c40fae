/*
 * The monitor: the range views held in memory for readers that must not touch
 * the database per request (the SNMP agent), refreshed soon after anything
 * that changes them, and the alarm states derived from them and from the
 * cycle's results. Each change of alarm state is one event on the event stream
 * (events.h): syslog logs it, the SNMP agent turns it into a notification.
 */
#ifndef NUMPROV_MONITOR_H
#define NUMPROV_MONITOR_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "rangeview.h"

struct config;
struct event_base;
struct inventory;
struct monitor;
struct prov_stats;

/* One range's alarm flags, and the step that updates them (pure, for tests). */
struct range_alarm {
	uint32_t index;
	unsigned high : 1, exhausted : 1;
};

/* Points below warn_percent a range must fall before it can warn again. */
#define MONITOR_HYSTERESIS 5
/* The utilisation below which a warning clears (half a threshold of 5 or less). */
double monitor_clear_at(int warn_percent);

/* Where the monitor learns whether a round is running (prov_get_stats). */
typedef void (*monitor_stats_fn)(void *arg, struct prov_stats *out);

struct monitor *monitor_new(struct event_base *base, struct config *cfg, struct inventory *inv,
    monitor_stats_fn stats, void *stats_arg);
void monitor_free(struct monitor *m);
void monitor_set_config(struct monitor *m, struct config *cfg);
/* Something changed the inventory: refresh within MONITOR_DELAY_MS. */
#define MONITOR_DELAY_MS 100
void monitor_changed(struct monitor *m);
/* Refresh now: read the ranges, evaluate the alarms (0, or -1 when unreadable). */
int monitor_refresh(struct monitor *m);

/* The snapshot, by index; valid until the next refresh. */
const struct range_view *monitor_ranges(const struct monitor *m, size_t *n);
/* The row of index, or (next) the first row after it; NULL when none. */
const struct range_view *monitor_range(const struct monitor *m, uint32_t index, int next);
const struct range_view *monitor_range_named(const struct monitor *m, const char *name);
time_t monitor_started(const struct monitor *m);
/* The alarm flags of a range by name (0), or -1 when there is no such row. */
int monitor_range_alarm(const struct monitor *m, const char *name, struct range_alarm *out);
/* Whether the last rounds are failing (a numprovSyncFailed is standing). */
int monitor_sync_failing(const struct monitor *m);

enum { ALARM_HIGH = 1, ALARM_OK = 2, ALARM_EXHAUSTED = 4 };
/* Returns the ALARM_* changes to report, updating a. */
int monitor_step(const struct range_view *v, struct range_alarm *a);

#endif
