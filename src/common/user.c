#include "build-config.h"

#include "user.h"
#include "utf8.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"

static const char *const state_names[US__MAX] = {
	[US_NEW] = "new",
	[US_UNLICENSED] = "unlicensed",
	[US_DISABLED] = "disabled",
	[US_ASSIGNING] = "assigning",
	[US_ASSIGNED] = "assigned",
	[US_WAITING] = "waiting",
	[US_NO_MATCH] = "no-match",
	[US_RANGES_FULL] = "ranges-full",
	[US_HELD] = "held-by-administrator",
	[US_EXTERNAL] = "number-outside-ranges",
	[US_GONE] = "deleted",
};

const char *
user_state_name(enum user_state s)
{
	return (unsigned)s < US__MAX ? state_names[s] : "unknown";
}

void
user_init(struct user *u, const char *id)
{
	memset(u, 0, sizeof(*u));
	u->enabled = 1;
	snprintf(u->id, sizeof(u->id), "%s", id ? id : "");
}

void
user_clear(struct user *u)
{
	for (int i = 0; i < RA__MAX; i++) {
		free(u->attr[i]);
		u->attr[i] = NULL;
	}
}

int
user_copy(struct user *dst, const struct user *src)
{
	*dst = *src;
	for (int i = 0; i < RA__MAX; i++)
		dst->attr[i] = NULL;
	for (int i = 0; i < RA__MAX; i++)
		if (src->attr[i] && !(dst->attr[i] = strdup(src->attr[i]))) {
			user_clear(dst);
			return -1;
		}
	return 0;
}

void
user_attrs(const struct user *u, struct rule_attrs *out)
{
	for (int i = 0; i < RA__MAX; i++)
		out->v[i] = u->attr[i];
}

/* Copy src into dst (cap bytes), cut at a UTF-8 character boundary when too long. */
static void
copy_text(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);

	if (n >= cap) {
		n = utf8_prefix(src, cap - 1); /* src[n] starts what did not fit */
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int
text_differs(const char *a, const char *b)
{
	return !rule_text_equal(a ? a : "", b ? b : "");
}

int
user_from_dir(
    struct user *u, const struct user *old, const struct dir_user *d, const struct dir_licence *l)
{
	static const enum rule_attr where[] = { RA_CITY, RA_OFFICE, RA_USAGE_LOCATION };

	if (old) {
		if (user_copy(u, old) < 0)
			return -1;
		user_clear(u);
	} else {
		user_init(u, d->id);
	}
	snprintf(u->id, sizeof(u->id), "%s", d->id);
	if (d->upn)
		copy_text(u->upn, sizeof(u->upn), d->upn);
	if (d->display_name)
		copy_text(u->name, sizeof(u->name), d->display_name);
	if (d->account_enabled >= 0)
		u->enabled = d->account_enabled ? 1 : 0;
	/* a delta page without assignedPlans leaves the licence class as it was */
	if (d->has_plans || !old) {
		u->teams_phone = l->teams_phone ? 1 : 0;
		u->calling_plan = l->calling_plan ? 1 : 0;
	}
	for (int i = 0; i < RA__MAX; i++)
		if (d->attr[i] && d->attr[i][0] && !(u->attr[i] = strdup(d->attr[i]))) {
			user_clear(u);
			return -1;
		}
	if (old)
		for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
			if (text_differs(old->attr[where[i]], u->attr[where[i]]))
				u->flags |= USER_F_MOVED;
	return 0;
}

/* ---- the stored record ---------------------------------------------------
 * Version 1, little-endian:
 *   u8 version (1), u8 state, u8 flags, u8 enabled, u8 licences (bit 0 Teams
 *   Phone, bit 1 Calling Plan), u32 backoff, i64 retry_at, u8 count of strings,
 *   then that many strings as u16 length + bytes: upn, display name, then the
 *   rule attributes in enum rule_attr order, then the administrator's change
 *   of number in flight (old, new). A reader takes the strings it knows and
 *   skips the rest, so a later version may append strings.
 * Records written before version 1 were JSON objects (first byte '{').
 */
#define REC_FIXED 17

struct wbuf {
	unsigned char *p;
	size_t len, cap;
};

static int
put(struct wbuf *b, const void *v, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 256;
		unsigned char *g;
		while (cap < b->len + n)
			cap *= 2;
		if (!(g = realloc(b->p, cap)))
			return -1;
		b->p = g;
		b->cap = cap;
	}
	memcpy(b->p + b->len, v, n);
	b->len += n;
	return 0;
}

static int
put_uint(struct wbuf *b, uint64_t v, int bytes)
{
	unsigned char t[8];
	for (int i = 0; i < bytes; i++)
		t[i] = (unsigned char)(v >> (8 * i));
	return put(b, t, (size_t)bytes);
}

static int
put_str(struct wbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n > 0xffff)
		n = 0xffff;
	return put_uint(b, n, 2) < 0 || put(b, s ? s : "", n) < 0 ? -1 : 0;
}

int
user_encode(const struct user *u, unsigned char **out, size_t *len)
{
	struct wbuf b = { NULL, 0, 0 };
	int rc = 0;

	rc |= put_uint(&b, USER_RECORD_VERSION, 1);
	rc |= put_uint(&b, u->state, 1);
	rc |= put_uint(&b, u->flags, 1);
	rc |= put_uint(&b, u->enabled ? 1 : 0, 1);
	rc |= put_uint(&b, (u->teams_phone ? 1u : 0u) | (u->calling_plan ? 2u : 0u), 1);
	rc |= put_uint(&b, u->backoff, 4);
	rc |= put_uint(&b, (uint64_t)u->retry_at, 8);
	rc |= put_uint(&b, 4 + RA__MAX, 1);
	rc |= put_str(&b, u->upn);
	rc |= put_str(&b, u->name);
	for (int i = 0; i < RA__MAX; i++)
		rc |= put_str(&b, u->attr[i]);
	rc |= put_str(&b, u->change_old);
	rc |= put_str(&b, u->change_new);
	if (rc) {
		free(b.p);
		return -1;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

static uint64_t
get_uint(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* A record from before version 1: the JSON object earlier releases stored. */
static int
decode_json(const void *rec, size_t len, struct user *u)
{
	static const struct {
		const char *name;
		enum user_state s;
	} states[] = { { "assigned", US_ASSIGNED }, { "assigning", US_ASSIGNING },
		{ "waiting", US_WAITING }, { "no-match", US_NO_MATCH },
		{ "ranges-full", US_RANGES_FULL }, { "unlicensed", US_UNLICENSED },
		{ "disabled", US_DISABLED } };
	cJSON *o = cJSON_ParseWithLength(rec, len), *v, *attrs;

	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return -1;
	}
	if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(o, "upn")))
		copy_text(u->upn, sizeof(u->upn), v->valuestring);
	if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(o, "name")))
		copy_text(u->name, sizeof(u->name), v->valuestring);
	if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "enabled")))
		u->enabled = v->valuedouble != 0;
	if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "teams_phone")))
		u->teams_phone = v->valuedouble != 0;
	if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "calling_plan")))
		u->calling_plan = v->valuedouble != 0;
	if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "retry_at"))
	    && v->valuedouble > 0 && v->valuedouble < 1e15)
		u->retry_at = (int64_t)v->valuedouble;
	if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "backoff")) && v->valuedouble > 0
	    && v->valuedouble < 4e9)
		u->backoff = (uint32_t)v->valuedouble;
	if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(o, "state")))
		for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
			if (strcmp(v->valuestring, states[i].name) == 0)
				u->state = states[i].s;
	attrs = cJSON_GetObjectItemCaseSensitive(o, "attrs");
	for (int i = 0; i < RA__MAX; i++) {
		v = cJSON_GetObjectItemCaseSensitive(attrs, rule_attr_name((enum rule_attr)i));
		if (cJSON_IsString(v) && v->valuestring[0]
		    && !(u->attr[i] = strdup(v->valuestring))) {
			cJSON_Delete(o);
			return -1;
		}
	}
	cJSON_Delete(o);
	u->flags |= USER_F_DUE; /* decided again under this version */
	return 0;
}

int
user_decode(const char *id, const void *rec, size_t len, struct user *u)
{
	const unsigned char *p = rec;
	size_t off = REC_FIXED + 1, nstr;

	user_init(u, id);
	if (len > 0 && p[0] == '{')
		return decode_json(rec, len, u) < 0 ? (user_clear(u), -1) : 0;
	if (len < REC_FIXED + 1 || p[0] != USER_RECORD_VERSION || p[1] >= US__MAX)
		return -1;
	u->state = p[1];
	u->flags = p[2];
	u->enabled = p[3] ? 1 : 0;
	u->teams_phone = (p[4] & 1) != 0;
	u->calling_plan = (p[4] & 2) != 0;
	u->backoff = (uint32_t)get_uint(p + 5, 4);
	u->retry_at = (int64_t)get_uint(p + 9, 8);
	nstr = p[REC_FIXED];
	for (size_t i = 0; i < nstr; i++) {
		size_t n;
		char *dst = NULL;
		size_t cap = 0;

		if (off + 2 > len)
			goto bad;
		n = (size_t)get_uint(p + off, 2);
		off += 2;
		if (n > len - off)
			goto bad;
		if (i == 0) {
			dst = u->upn;
			cap = sizeof(u->upn);
		} else if (i == 1) {
			dst = u->name;
			cap = sizeof(u->name);
		} else if (i == 2 + RA__MAX) {
			dst = u->change_old;
			cap = sizeof(u->change_old);
		} else if (i == 3 + RA__MAX) {
			dst = u->change_new;
			cap = sizeof(u->change_new);
		} else if (i - 2 < RA__MAX && n > 0) {
			if (memchr(p + off, '\0', n) || !(u->attr[i - 2] = malloc(n + 1)))
				goto bad;
			memcpy(u->attr[i - 2], p + off, n);
			u->attr[i - 2][n] = '\0';
		}
		if (dst) {
			if (n >= cap || memchr(p + off, '\0', n))
				goto bad;
			memcpy(dst, p + off, n);
			dst[n] = '\0';
		}
		off += n;
	}
	if (off != len)
		goto bad;
	return 0;
bad:
	user_clear(u);
	return -1;
}

struct cJSON *
user_to_json(const struct user *u)
{
	cJSON *o = cJSON_CreateObject(), *a;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "id", u->id);
	cJSON_AddStringToObject(o, "upn", u->upn);
	cJSON_AddStringToObject(o, "name", u->name);
	cJSON_AddBoolToObject(o, "enabled", u->enabled);
	cJSON_AddBoolToObject(o, "teams_phone", u->teams_phone);
	cJSON_AddBoolToObject(o, "calling_plan", u->calling_plan);
	cJSON_AddStringToObject(o, "state", user_state_name((enum user_state)u->state));
	if (u->retry_at)
		cJSON_AddNumberToObject(o, "retry_at", (double)u->retry_at);
	if (u->change_new[0]) {
		cJSON_AddStringToObject(o, "changing_from", u->change_old);
		cJSON_AddStringToObject(o, "changing_to", u->change_new);
	}
	a = cJSON_AddObjectToObject(o, "attributes");
	for (int i = 0; a && i < RA__MAX; i++)
		if (u->attr[i])
			cJSON_AddStringToObject(a, rule_attr_name((enum rule_attr)i), u->attr[i]);
	return o;
}
