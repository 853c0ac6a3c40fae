#include "build-config.h"

#include "rangeview.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "idmap.h"
#include "inventory.h"
#include "utf8.h"

/* ---- ranges and numbers: the daemon's views and numprovctl's fallback ---- */

static void
iso_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!t || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "%s", "");
}

void
rangeview_add_time(cJSON *o, const char *key, time_t t)
{
	char buf[32];

	iso_time(t, buf, sizeof(buf));
	if (buf[0])
		cJSON_AddStringToObject(o, key, buf);
	else
		cJSON_AddNullToObject(o, key);
}

/* ---- ranges and numbers (also numprovctl's fallback) -------------------- */

struct range_row {
	struct inv_range r;
	size_t pos;
};

struct range_rows {
	const struct config *cfg;
	struct idmap pos; /* configured range name -> its place in the config */
	struct range_row *v;
	size_t n;
};

/* Config order first, then the removed ranges (they keep their numbers) by index. */
static size_t
config_pos(const struct range_rows *l, const struct inv_range *r)
{
	const struct idmap_entry *e = idmap_get(&l->pos, r->name);

	return e ? (size_t)e->v : l->cfg->n_ranges + r->index;
}

static int
collect_range(const struct inv_range *r, void *arg)
{
	struct range_rows *l = arg;
	struct range_row *g = realloc(l->v, (l->n + 1) * sizeof(*g));

	if (!g)
		return 1;
	l->v = g;
	l->v[l->n].r = *r;
	l->v[l->n++].pos = config_pos(l, r);
	return 0;
}

static int
row_order(const void *a, const void *b)
{
	const struct range_row *x = a, *y = b;

	return (x->pos > y->pos) - (x->pos < y->pos);
}

uint64_t
range_available(const struct inv_range *r)
{
	uint64_t used = 0;

	for (int s = INV_RESERVED; s < INV__STATES; s++)
		used += r->count[s];
	return used > r->size ? 0 : r->size - used;
}

double
range_utilisation(const struct inv_range *r)
{
	return r->size ? 100.0 * (double)(r->size - range_available(r)) / (double)r->size : 0.0;
}

/* cr: the range's configuration, NULL when it is no longer configured */
static void
view_of(const struct cfg_range *cr, const struct inv_range *r, struct range_view *v)
{
	memset(v, 0, sizeof(*v));
	v->r = *r;
	v->available = range_available(r);
	v->utilisation = range_utilisation(r);
	v->warn_percent = cr ? cr->warn_percent : 0;
	if (r->removed || !cr)
		v->status = RS_REMOVED;
	else if (v->available == 0)
		v->status = RS_EXHAUSTED;
	else
		v->status = v->utilisation >= cr->warn_percent ? RS_WARNING : RS_OK;
}

void
range_view_of(const struct config *cfg, const struct inv_range *r, struct range_view *v)
{
	view_of(config_range_find(cfg, r->name), r, v);
}

const char *
range_status_name(enum range_status s)
{
	switch (s) {
	case RS_OK:
		return "ok";
	case RS_WARNING:
		return "warning";
	case RS_EXHAUSTED:
		return "exhausted";
	case RS_REMOVED:
		return "removed";
	}
	return "?";
}

cJSON *
range_view_json(const struct range_view *v)
{
	const struct inv_range *r = &v->r;
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "name", r->name);
	cJSON_AddNumberToObject(o, "index", r->index);
	cJSON_AddStringToObject(o, "type", config_range_type_name(r->type));
	cJSON_AddStringToObject(o, "provider", r->provider);
	cJSON_AddStringToObject(o, "first", r->first);
	cJSON_AddStringToObject(o, "last", r->last);
	cJSON_AddNumberToObject(o, "size", (double)r->size);
	cJSON_AddNumberToObject(o, "assigned", (double)r->count[INV_ASSIGNED]);
	cJSON_AddNumberToObject(o, "pending", (double)r->count[INV_PENDING]);
	cJSON_AddNumberToObject(o, "available", (double)v->available);
	cJSON_AddNumberToObject(o, "reserved", (double)r->count[INV_RESERVED]);
	cJSON_AddNumberToObject(o, "quarantined", (double)r->count[INV_QUARANTINED]);
	/* one decimal: 0.1 % of a million-number range is still a thousand numbers */
	cJSON_AddNumberToObject(o, "utilisation", (double)((long)(v->utilisation * 10 + 0.5)) / 10);
	cJSON_AddNumberToObject(o, "warn_percent", v->warn_percent);
	cJSON_AddStringToObject(o, "status", range_status_name(v->status));
	return o;
}

int
range_views(struct inventory *inv, const struct config *cfg, struct range_view **out, size_t *n)
{
	struct range_rows l = { cfg, { 0 }, NULL, 0 };
	struct range_view *v = NULL;

	*out = NULL;
	*n = 0;
	/* one pass over the config: a refresh is linear in the ranges, not quadratic */
	for (size_t i = 0; i < cfg->n_ranges; i++)
		if (idmap_put(&l.pos, cfg->ranges[i].name, (int64_t)i, NULL) < 0) {
			idmap_clear(&l.pos);
			return -1;
		}
	if (inv_foreach_range(inv, collect_range, &l) != INV_OK) {
		idmap_clear(&l.pos);
		free(l.v);
		return -1;
	}
	qsort(l.v, l.n, sizeof(*l.v), row_order);
	if (l.n && !(v = calloc(l.n, sizeof(*v)))) {
		idmap_clear(&l.pos);
		free(l.v);
		return -1;
	}
	for (size_t i = 0; i < l.n; i++)
		view_of(
		    l.v[i].pos < cfg->n_ranges ? &cfg->ranges[l.v[i].pos] : NULL, &l.v[i].r, &v[i]);
	idmap_clear(&l.pos);
	free(l.v);
	*out = l.n ? v : NULL;
	*n = l.n;
	return 0;
}

cJSON *
rangeview_ranges_json(struct inventory *inv, const struct config *cfg, char *err, size_t errlen)
{
	struct range_view *v = NULL;
	size_t n;
	cJSON *arr;

	if (range_views(inv, cfg, &v, &n) < 0) {
		snprintf(err, errlen, "%s", "cannot read the ranges");
		return NULL;
	}
	arr = cJSON_CreateArray();
	for (size_t i = 0; arr && i < n; i++)
		cJSON_AddItemToArray(arr, range_view_json(&v[i]));
	free(v);
	return arr;
}

struct number_rows {
	const char *range;
	cJSON *arr;
};

static int
collect_number(const struct inv_number *n, void *arg)
{
	struct number_rows *rows = arg;
	cJSON *o;

	if (strcmp(n->range, rows->range) != 0)
		return 0;
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "number", n->number);
	cJSON_AddStringToObject(o, "state", inv_state_name(n->state));
	cJSON_AddStringToObject(o, "user_id", n->user_id);
	rangeview_add_time(o, "since", (time_t)n->since);
	if (n->state == INV_QUARANTINED)
		rangeview_add_time(o, "until", (time_t)n->until);
	if (n->flags & INV_NF_CONFIG)
		cJSON_AddBoolToObject(o, "config", 1);
	cJSON_AddItemToArray(rows->arr, o);
	return 0;
}

/* The holder's UPN, looked up after the scan so no two cursors are open at once. */
static void
add_upns(struct inventory *inv, cJSON *arr)
{
	cJSON *o;

	cJSON_ArrayForEach(o, arr)
	{
		const cJSON *idv = cJSON_GetObjectItemCaseSensitive(o, "user_id");
		const char *id = cJSON_GetStringValue(idv);
		struct inv_user u;

		if (id && *id && inv_get_user(inv, id, &u) == INV_OK && u.upn[0])
			cJSON_AddStringToObject(o, "user", u.upn);
	}
}

cJSON *
rangeview_numbers_json(struct inventory *inv, const char *name, char *err, size_t errlen)
{
	struct number_rows rows = { name, NULL };
	struct inv_range r;

	if (inv_get_range(inv, name, &r) != INV_OK) {
		char shown[64 + 4]; /* what the request said: 64 bytes at most, escaped */

		snprintf(
		    err, errlen, "no range named '%s'", utf8_escape(name, shown, sizeof(shown)));
		return NULL;
	}
	rows.arr = cJSON_CreateArray();
	if (inv_foreach_number(inv, collect_number, &rows) != INV_OK) {
		cJSON_Delete(rows.arr);
		snprintf(err, errlen, "cannot read the numbers of range '%s'", name);
		return NULL;
	}
	add_upns(inv, rows.arr);
	return rows.arr;
}
