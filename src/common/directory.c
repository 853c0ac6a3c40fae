#include "build-config.h"

#include "directory.h"

#include "config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

const char *
dir_select(void)
{
	return "id,userPrincipalName,displayName,accountEnabled,city,officeLocation,usageLocation,"
	       "country,state,department,companyName,jobTitle,employeeType,"
	       "onPremisesExtensionAttributes,assignedPlans";
}

/*
 * Everything a page points to (its users, their strings and plans, the links)
 * lives in one block, filled front to back and released at once by
 * dir_page_free: no malloc and free per string, and the tree is left as cJSON
 * made it. The block's size is known before the walk: the users array, then no
 * more string and plan bytes than the page has text (a string is shorter than
 * its JSON text, quotes included; a plan, 53 bytes, needs an object of at least
 * 56 bytes with a 36-character servicePlanId; no two of them share text).
 *
 * A block of a memory page or more is mapped, not malloc'ed. glibc frees a chunk
 * that joins the top of the heap, or allocates one of 1 KiB or more, by first
 * merging every small free chunk, and cJSON_Delete has just freed thousands: the
 * next page's parse would carve each of its nodes from the top of the heap
 * instead of reusing one (bench/delta_parse: a third more instructions, and
 * slower with 20 users a page than a map and its page faults).
 *
 * Under AddressSanitizer every block is malloc'ed, so that the fuzzer sees a
 * write past one.
 */
struct arena {
	char *b;
	size_t size, used;
	int full; /* a copy did not fit: the page is refused, never read in part */
};

#define ARENA_HEAD 16 /* the block's size, in front; keeps the users malloc-aligned */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_MAP_MIN SIZE_MAX
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_MAP_MIN SIZE_MAX
#endif
#endif
#ifndef ARENA_MAP_MIN
#define ARENA_MAP_MIN 4096
#endif

/* The block for n users and len bytes of page, its users array zeroed; NULL when out of memory. */
static struct dir_user *
arena_new(struct arena *a, size_t n, size_t len)
{
	if (n > (SIZE_MAX / 2 - ARENA_HEAD) / sizeof(struct dir_user) || len > SIZE_MAX / 2 - 1)
		return NULL;
	a->used = ARENA_HEAD + n * sizeof(struct dir_user);
	a->size = a->used + len + 1;
	if (a->size < ARENA_MAP_MIN) {
		if (!(a->b = malloc(a->size)))
			return NULL;
		memset(a->b, 0, a->used);
	} else if ((a->b = mmap(
			NULL, a->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
	    == MAP_FAILED) {
		return NULL;
	}
	memcpy(a->b, &a->size, sizeof(a->size));
	return (struct dir_user *)(void *)(a->b + ARENA_HEAD);
}

/* The block that starts users[] (from arena_new). */
static void
arena_free(struct dir_user *users)
{
	char *b = (char *)users - ARENA_HEAD;
	size_t size;

	memcpy(&size, b, sizeof(size));
	if (size < ARENA_MAP_MIN)
		free(b);
	else
		munmap(b, size);
}

/* n bytes of the block; NULL when it is full (the size above says it cannot be). */
static void *
arena_get(struct arena *a, size_t n)
{
	void *p;

	if (n > a->size - a->used) {
		a->full = 1;
		return NULL;
	}
	p = a->b + a->used;
	a->used += n;
	return p;
}

/* A copy of a string value in the block; NULL when v is absent, null or no string. */
static char *
arena_string(struct arena *a, const cJSON *v)
{
	size_t n;
	char *s;

	if (!cJSON_IsString(v) || !v->valuestring)
		return NULL;
	n = strlen(v->valuestring) + 1;
	if ((s = arena_get(a, n)))
		memcpy(s, v->valuestring, n);
	return s;
}

/*
 * The members of a user object that a page is read for. Each object is walked
 * once and its first member of each name kept, which is the member
 * cJSON_GetObjectItemCaseSensitive would find: the first duplicate wins.
 */
enum user_member {
	UM_ATTR, /* UM_ATTR + a for the rule attribute a < RA_EXT1 */
	UM_ID = UM_ATTR + RA_EXT1,
	UM_DISPLAY_NAME,
	UM_ENABLED,
	UM_REMOVED,
	UM_EXT,
	UM_PLANS,
	UM__MAX
};

/*
 * Whether k, strlen(k) bytes long, is the name lit. Names compare as C strings
 * (a name with \u0000 in it ends there), as cJSON's strcmp does.
 */
#define NAME_IS(k, n, lit) ((n) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

/* The Graph property of each member we read (extension attributes are nested). */
static int
user_member(const char *k)
{
	size_t n = strlen(k);

	if (NAME_IS(k, n, "id"))
		return UM_ID;
	if (NAME_IS(k, n, "userPrincipalName"))
		return UM_ATTR + RA_UPN;
	if (NAME_IS(k, n, "displayName"))
		return UM_DISPLAY_NAME;
	if (NAME_IS(k, n, "accountEnabled"))
		return UM_ENABLED;
	if (NAME_IS(k, n, "city"))
		return UM_ATTR + RA_CITY;
	if (NAME_IS(k, n, "officeLocation"))
		return UM_ATTR + RA_OFFICE;
	if (NAME_IS(k, n, "usageLocation"))
		return UM_ATTR + RA_USAGE_LOCATION;
	if (NAME_IS(k, n, "country"))
		return UM_ATTR + RA_COUNTRY;
	if (NAME_IS(k, n, "state"))
		return UM_ATTR + RA_STATE;
	if (NAME_IS(k, n, "department"))
		return UM_ATTR + RA_DEPARTMENT;
	if (NAME_IS(k, n, "companyName"))
		return UM_ATTR + RA_COMPANY;
	if (NAME_IS(k, n, "jobTitle"))
		return UM_ATTR + RA_JOB_TITLE;
	if (NAME_IS(k, n, "employeeType"))
		return UM_ATTR + RA_EMPLOYEE_TYPE;
	if (NAME_IS(k, n, "onPremisesExtensionAttributes"))
		return UM_EXT;
	if (NAME_IS(k, n, "assignedPlans"))
		return UM_PLANS;
	if (NAME_IS(k, n, "@removed"))
		return UM_REMOVED;
	return -1;
}

/* extensionAttribute1 .. extensionAttribute15 as 0 .. 14, else -1. */
static int
ext_member(const char *k)
{
	size_t n = strlen(k);

	if (n < 19 || n > 20 || memcmp(k, "extensionAttribute", 18) != 0)
		return -1;
	if (n == 19)
		return k[18] >= '1' && k[18] <= '9' ? k[18] - '1' : -1;
	return k[18] == '1' && k[19] >= '0' && k[19] <= '5' ? 9 + k[19] - '0' : -1;
}

/*
 * The first member of o of each name member() numbers, by that number. Every
 * child of an object has a name; cJSON_GetObjectItemCaseSensitive stops at one
 * without, and so does this.
 */
static void
first_members(const cJSON *o, int (*member)(const char *), const cJSON **first, size_t n)
{
	memset(first, 0, n * sizeof(*first));
	for (const cJSON *c = o->child; c && c->string; c = c->next) {
		int m = member(c->string);
		if (m >= 0 && !first[m])
			first[m] = c;
	}
}

static int
plan_member(const char *k)
{
	size_t n = strlen(k);

	return NAME_IS(k, n, "servicePlanId") ? 0 : NAME_IS(k, n, "capabilityStatus") ? 1 : -1;
}

/* The user's plans, one after another in the block. */
static void
parse_plans(struct arena *a, const cJSON *arr, struct dir_user *u)
{
	const cJSON *p;

	u->has_plans = 1;
	cJSON_ArrayForEach(p, arr)
	{
		const cJSON *m[2] = { NULL, NULL }; /* servicePlanId, capabilityStatus */
		struct dir_plan *dp;
		size_t st;

		if (cJSON_IsObject(p))
			first_members(p, plan_member, m, 2);
		if (!cJSON_IsString(m[0]) || strlen(m[0]->valuestring) != DIR_GUID_LEN)
			continue;
		if (!(dp = arena_get(a, sizeof(*dp))))
			return;
		memset(dp, 0, sizeof(*dp));
		if (!u->plans)
			u->plans = dp;
		for (int i = 0; i < DIR_GUID_LEN; i++)
			dp->service_plan_id[i] = (char)tolower((unsigned char)m[0]->valuestring[i]);
		if (cJSON_IsString(m[1])) {
			/* cut to fit, as snprintf would */
			st = strlen(m[1]->valuestring);
			memcpy(dp->capability, m[1]->valuestring,
			    st < sizeof(dp->capability) ? st : sizeof(dp->capability) - 1);
		}
		u->n_plans++;
	}
}

static void
parse_ext(struct arena *a, const cJSON *ext, struct dir_user *u)
{
	unsigned seen = 0;

	for (const cJSON *c = ext->child; c && c->string; c = c->next) {
		int i = ext_member(c->string);
		if (i < 0 || (seen & 1u << i))
			continue;
		seen |= 1u << i;
		u->attr[RA_EXT1 + i] = arena_string(a, c);
	}
}

/* One entry of value[]; 0 when it is a user (with an id), else -1. */
static int
parse_user(struct arena *a, const cJSON *o, struct dir_user *u)
{
	const cJSON *m[UM__MAX];

	memset(u, 0, sizeof(*u));
	if (!cJSON_IsObject(o))
		return -1;
	first_members(o, user_member, m, UM__MAX);
	if (!cJSON_IsString(m[UM_ID]) || !m[UM_ID]->valuestring || !m[UM_ID]->valuestring[0]
	    || !(u->id = arena_string(a, m[UM_ID])))
		return -1;
	u->account_enabled = cJSON_IsBool(m[UM_ENABLED]) ? cJSON_IsTrue(m[UM_ENABLED]) : -1;
	if (m[UM_REMOVED]) {
		const cJSON *reason = cJSON_GetObjectItemCaseSensitive(m[UM_REMOVED], "reason");
		/* "deleted" is permanent; "changed" (soft delete) and anything else is not */
		u->removed = cJSON_IsString(reason) && strcmp(reason->valuestring, "deleted") == 0
		    ? DIR_REMOVED_DELETED
		    : DIR_REMOVED_CHANGED;
		return 0;
	}
	u->display_name = arena_string(a, m[UM_DISPLAY_NAME]);
	for (int i = 0; i < RA_EXT1; i++)
		u->attr[i] = arena_string(a, m[UM_ATTR + i]);
	u->upn = u->attr[RA_UPN]; /* the same text, freed with the page */
	if (cJSON_IsObject(m[UM_EXT]))
		parse_ext(a, m[UM_EXT], u);
	if (cJSON_IsArray(m[UM_PLANS]))
		parse_plans(a, m[UM_PLANS], u);
	return 0;
}

static int
hex4(const char *p, const char *end, unsigned *out)
{
	unsigned v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/*
 * An unpaired UTF-16 surrogate escape (\uD800-\uDFFF) makes cJSON refuse the whole
 * page, so one odd name would stop every sync. Each becomes \uFFFD (the same six
 * bytes long) in a copy; NULL when there is none (the page is parsed as it is).
 */
static char *
mend_surrogates(const char *json, size_t len)
{
	const char *end = json + len;
	char *copy = NULL;

	for (const char *p = json; p + 1 < end; p++) {
		unsigned v, w;
		/* most pages have few escapes: memchr finds them much faster than a loop */
		if (!(p = memchr(p, '\\', (size_t)(end - 1 - p))))
			break;
		if (p[1] != 'u' || hex4(p + 2, end, &v) < 0) {
			p++; /* an escaped character: skip it */
			continue;
		}
		if (v >= 0xd800 && v <= 0xdbff && end - p >= 12 && p[6] == '\\' && p[7] == 'u'
		    && hex4(p + 8, end, &w) == 0 && w >= 0xdc00 && w <= 0xdfff) {
			p += 11; /* a pair */
			continue;
		}
		if (v >= 0xd800 && v <= 0xdfff) {
			if (!copy) {
				if (!(copy = malloc(len ? len : 1)))
					return NULL;
				memcpy(copy, json, len);
			}
			memcpy(copy + (p - json) + 2, "FFFD", 4);
		}
		p += 5;
	}
	return copy;
}

/* A copy of a string member of the page object, or NULL. */
static char *
page_link(struct arena *a, const cJSON *root, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);

	if (a->b)
		return arena_string(a, v);
	return cJSON_IsString(v) && v->valuestring ? strdup(v->valuestring) : NULL;
}

int
dir_parse_page(const char *json, size_t len, struct dir_page *out, char *err, size_t errlen)
{
	char *mended = mend_surrogates(json, len);
	cJSON *root = cJSON_ParseWithLength(mended ? mended : json, len);
	const cJSON *value, *v;
	struct arena a = { NULL, 0, 0, 0 };
	int n;

	free(mended); /* the tree holds copies */

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(root)) {
		snprintf(err, errlen, "the users page is not a JSON object");
		cJSON_Delete(root);
		return -1;
	}
	value = cJSON_GetObjectItemCaseSensitive(root, "value");
	if (!cJSON_IsArray(value)) {
		snprintf(err, errlen, "the users page has no value array");
		cJSON_Delete(root);
		return -1;
	}
	n = cJSON_GetArraySize(value);
	if (!(out->users = arena_new(&a, n > 0 ? (size_t)n : 1, len))) {
		/* users dropped for want of memory would be users lost to the round */
		snprintf(err, errlen, "out of memory reading a users page of %d entries", n);
		cJSON_Delete(root);
		return -1;
	}
	cJSON_ArrayForEach(v, value)
	{
		if (parse_user(&a, v, &out->users[out->n_users]) == 0)
			out->n_users++;
		else
			out->skipped++;
	}
	out->next_link = page_link(&a, root, "@odata.nextLink");
	out->delta_link = page_link(&a, root, "@odata.deltaLink");
	cJSON_Delete(root);
	if (a.full) {
		snprintf(err, errlen, "a users page of %d entries did not fit its block", n);
		dir_page_free(out);
		return -1;
	}
	return 0;
}

void
dir_page_free(struct dir_page *p)
{
	if (p->users) {
		arena_free(p->users);
	} else { /* there was no block: page_link copied them */
		free(p->next_link);
		free(p->delta_link);
	}
	memset(p, 0, sizeof(*p));
}

void
dir_user_attrs(const struct dir_user *u, struct rule_attrs *out)
{
	for (int a = 0; a < RA__MAX; a++)
		out->v[a] = u->attr[a];
}

/* ---- licences ----------------------------------------------------------- */

struct dir_known_plan {
	char guid[DIR_GUID_LEN + 1];
	char name[48];
	enum dir_plan_class cls;
};

struct dir_licensing {
	struct dir_known_plan *v;
	size_t n, cap;
};

/* Service plan ids (not SKU ids) from Microsoft's licensing reference, graph-api.md 3.2. */
static const struct dir_known_plan builtin[] = {
	{ "4828c8ec-dc2e-4779-b502-87ac9ce28ab7", "MCOEV", DIR_PLAN_TEAMS_PHONE },
	{ "db23fce2-a974-42ef-9002-d78dd42a0f22", "MCOEV_GOV", DIR_PLAN_TEAMS_PHONE },
	{ "4ed3ff63-69d7-4fb7-b984-5aec7f605ca8", "MCOPSTN1", DIR_PLAN_CALLING_PLAN },
	{ "5a10155d-f5c1-411a-a8ec-e99aae125390", "MCOPSTN2", DIR_PLAN_CALLING_PLAN },
	{ "54a152dc-90de-4996-93d2-bc47e670fc06", "MCOPSTN5", DIR_PLAN_CALLING_PLAN },
	{ "3c8a8792-7866-409b-bb61-1b20ace0368b", "MCOPSTN1_GOV", DIR_PLAN_CALLING_PLAN },
	{ "505e180f-f7e0-4b65-91d4-00d670bbd18c", "MCOPSTNC", DIR_PLAN_OTHER },
	{ "f47330e9-c134-43b3-9993-e7f004506889", "MCOEV_VIRTUALUSER", DIR_PLAN_OTHER },
};

static int
is_guid(const char *s)
{
	if (strlen(s) != DIR_GUID_LEN)
		return 0;
	for (int i = 0; i < DIR_GUID_LEN; i++) {
		int dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return 0;
	}
	return 1;
}

static struct dir_known_plan *
find_plan(const struct dir_licensing *l, const char *guid)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->v[i].guid, guid) == 0)
			return &l->v[i];
	return NULL;
}

/* Add or overwrite one plan. */
static int
set_plan(struct dir_licensing *l, const char *guid, const char *name, enum dir_plan_class c)
{
	struct dir_known_plan *p = find_plan(l, guid);

	if (!is_guid(guid))
		return -1;
	if (!p) {
		if (l->n == l->cap) {
			size_t cap = l->cap ? 2 * l->cap : 16;
			struct dir_known_plan *g = realloc(l->v, cap * sizeof(*g));
			if (!g)
				return -1;
			l->v = g;
			l->cap = cap;
		}
		p = &l->v[l->n++];
		memset(p, 0, sizeof(*p));
		for (int i = 0; i < DIR_GUID_LEN; i++)
			p->guid[i] = (char)tolower((unsigned char)guid[i]);
	}
	if (name)
		snprintf(p->name, sizeof(p->name), "%s", name);
	p->cls = c;
	return 0;
}

struct dir_licensing *
dir_licensing_new(void)
{
	struct dir_licensing *l = calloc(1, sizeof(*l));

	for (size_t i = 0; l && i < sizeof(builtin) / sizeof(builtin[0]); i++)
		set_plan(l, builtin[i].guid, builtin[i].name, builtin[i].cls);
	return l;
}

void
dir_licensing_free(struct dir_licensing *l)
{
	if (l)
		free(l->v);
	free(l);
}

int
dir_licensing_add(struct dir_licensing *l, const char *guid, enum dir_plan_class c)
{
	return set_plan(l, guid, NULL, c);
}

struct dir_licensing *
dir_licensing_from_config(const struct config *cfg)
{
	struct dir_licensing *l = dir_licensing_new();

	for (size_t i = 0; l && i < cfg->licensing.n_teams_phone; i++)
		dir_licensing_add(l, cfg->licensing.teams_phone[i], DIR_PLAN_TEAMS_PHONE);
	for (size_t i = 0; l && i < cfg->licensing.n_calling_plan; i++)
		dir_licensing_add(l, cfg->licensing.calling_plan[i], DIR_PLAN_CALLING_PLAN);
	return l;
}

/* What a plan name says: Teams Phone, a Calling Plan, or neither. */
static enum dir_plan_class
class_of_name(const char *name)
{
	/* communication credits (MCOPSTNC, MCOPSTNPP) pay for calls; they are no plan */
	if (strcmp(name, "MCOPSTNC") == 0 || strcmp(name, "MCOPSTNPP") == 0)
		return DIR_PLAN_OTHER;
	if (strncmp(name, "MCOPSTN", 7) == 0)
		return DIR_PLAN_CALLING_PLAN;
	/* resource accounts' Phone System plan is not a user's Teams Phone */
	if (strncmp(name, "MCOEV", 5) == 0 && strstr(name, "VIRTUALUSER") == NULL)
		return DIR_PLAN_TEAMS_PHONE;
	return DIR_PLAN_OTHER;
}

int
dir_licensing_load_skus(struct dir_licensing *l, const char *json, size_t len)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *skus = cJSON_GetObjectItemCaseSensitive(root, "value"), *sku, *sp;
	int learnt = 0;

	if (!cJSON_IsArray(skus)) {
		cJSON_Delete(root);
		return -1;
	}
	cJSON_ArrayForEach(sku, skus)
	{
		const cJSON *plans = cJSON_GetObjectItemCaseSensitive(sku, "servicePlans");
		cJSON_ArrayForEach(sp, (cJSON_IsArray(plans) ? plans : NULL))
		{
			const cJSON *id = cJSON_GetObjectItemCaseSensitive(sp, "servicePlanId");
			const cJSON *nm = cJSON_GetObjectItemCaseSensitive(sp, "servicePlanName");
			struct dir_known_plan *known;

			if (!cJSON_IsString(id) || !cJSON_IsString(nm) || !is_guid(id->valuestring))
				continue;
			known = find_plan(l, id->valuestring);
			/* a GUID the config names keeps the config's class */
			if (known && known->name[0] == '\0')
				snprintf(known->name, sizeof(known->name), "%s", nm->valuestring);
			else if (set_plan(l, id->valuestring, nm->valuestring,
				     class_of_name(nm->valuestring))
			    == 0)
				learnt++;
		}
	}
	cJSON_Delete(root);
	return learnt;
}

enum dir_plan_class
dir_licensing_class(const struct dir_licensing *l, const char *guid)
{
	const struct dir_known_plan *p = find_plan(l, guid);
	return p ? p->cls : DIR_PLAN_OTHER;
}

const char *
dir_licensing_name(const struct dir_licensing *l, const char *guid)
{
	const struct dir_known_plan *p = find_plan(l, guid);
	return p && p->name[0] ? p->name : NULL;
}

void
dir_classify(const struct dir_licensing *l, const struct dir_user *u, struct dir_licence *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < u->n_plans; i++) {
		const struct dir_plan *p = &u->plans[i];

		/* Warning is the grace period: the plan still works */
		if (strcmp(p->capability, "Enabled") != 0 && strcmp(p->capability, "Warning") != 0)
			continue;
		switch (dir_licensing_class(l, p->service_plan_id)) {
		case DIR_PLAN_TEAMS_PHONE:
			out->teams_phone = 1;
			break;
		case DIR_PLAN_CALLING_PLAN:
			out->calling_plan = 1;
			break;
		case DIR_PLAN_OTHER:
			break;
		}
	}
}
