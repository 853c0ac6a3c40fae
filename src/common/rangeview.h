/*
 * Range views: what a range looks like to an operator (size, assigned,
 * pending, reserved, quarantined, available, utilisation, status), computed in
 * one place from the inventory's counts and the configuration. The control
 * socket, numprovctl's offline view and the SNMP table all use them.
 */
#ifndef NUMPROV_RANGEVIEW_H
#define NUMPROV_RANGEVIEW_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "inventory.h"

struct cJSON;
struct config;

enum range_status { RS_OK, RS_WARNING, RS_EXHAUSTED, RS_REMOVED };

struct range_view {
	struct inv_range r; /* name, index, type, bounds, counts by state */
	uint64_t available;
	double utilisation; /* percent of the range not available */
	int warn_percent;   /* 0 when the range is no longer configured */
	enum range_status status;
};

uint64_t range_available(const struct inv_range *r);
double range_utilisation(const struct inv_range *r);
void range_view_of(const struct config *cfg, const struct inv_range *r, struct range_view *v);
const char *range_status_name(enum range_status s);
/* Every stored range: configured ones in config order, then removed ones by index. */
int range_views(
    struct inventory *inv, const struct config *cfg, struct range_view **out, size_t *n);

struct cJSON *range_view_json(const struct range_view *v);
/* `ranges` and `range NAME`: NULL with err filled on failure. */
struct cJSON *rangeview_ranges_json(
    struct inventory *inv, const struct config *cfg, char *err, size_t errlen);
struct cJSON *rangeview_numbers_json(
    struct inventory *inv, const char *name, char *err, size_t errlen);
void rangeview_add_time(struct cJSON *o, const char *key, time_t t);

#endif
