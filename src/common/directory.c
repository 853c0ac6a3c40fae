#include "build-config.h"

#include "directory.h"

#include "config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Graph property of each rule attribute (extension attributes are nested). */
static const char *const attr_property[RA_EXT1] = {
	[RA_CITY] = "city",
	[RA_OFFICE] = "officeLocation",
	[RA_USAGE_LOCATION] = "usageLocation",
	[RA_COUNTRY] = "country",
	[RA_STATE] = "state",
	[RA_DEPARTMENT] = "department",
	[RA_COMPANY] = "companyName",
	[RA_JOB_TITLE] = "jobTitle",
	[RA_EMPLOYEE_TYPE] = "employeeType",
	[RA_UPN] = "userPrincipalName",
};

const char *
dir_select(void)
{
	return "id,userPrincipalName,displayName,accountEnabled,city,officeLocation,usageLocation,"
	       "country,state,department,companyName,jobTitle,employeeType,"
	       "onPremisesExtensionAttributes,assignedPlans";
}

/* A string member, copied; NULL when absent, null or not a string. */
static char *
dup_string(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(v) && v->valuestring ? strdup(v->valuestring) : NULL;
}

static void
parse_plans(const cJSON *arr, struct dir_user *u)
{
	const cJSON *p;
	int n = cJSON_GetArraySize(arr);

	u->has_plans = 1;
	if (n <= 0 || !(u->plans = calloc((size_t)n, sizeof(*u->plans))))
		return;
	cJSON_ArrayForEach(p, arr)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(p, "servicePlanId");
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(p, "capabilityStatus");
		struct dir_plan *dp = &u->plans[u->n_plans];

		if (!cJSON_IsString(id) || strlen(id->valuestring) != DIR_GUID_LEN)
			continue;
		for (int i = 0; i < DIR_GUID_LEN; i++)
			dp->service_plan_id[i] = (char)tolower((unsigned char)id->valuestring[i]);
		if (cJSON_IsString(st))
			snprintf(dp->capability, sizeof(dp->capability), "%s", st->valuestring);
		u->n_plans++;
	}
}

static void
parse_attrs(const cJSON *o, struct dir_user *u)
{
	const cJSON *ext = cJSON_GetObjectItemCaseSensitive(o, "onPremisesExtensionAttributes");

	for (int a = 0; a < RA_EXT1; a++)
		u->attr[a] = dup_string(o, attr_property[a]);
	if (!cJSON_IsObject(ext))
		return;
	for (int i = 0; i < 15; i++) {
		char name[32];
		snprintf(name, sizeof(name), "extensionAttribute%d", i + 1);
		u->attr[RA_EXT1 + i] = dup_string(ext, name);
	}
}

/* One entry of value[]; 0 when it is a user (with an id), else -1. */
static int
parse_user(const cJSON *o, struct dir_user *u)
{
	const cJSON *removed = cJSON_GetObjectItemCaseSensitive(o, "@removed");
	const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(o, "accountEnabled");
	const cJSON *plans = cJSON_GetObjectItemCaseSensitive(o, "assignedPlans");

	memset(u, 0, sizeof(*u));
	if (!cJSON_IsObject(o) || !(u->id = dup_string(o, "id")) || !u->id[0]) {
		free(u->id);
		u->id = NULL;
		return -1;
	}
	u->account_enabled = cJSON_IsBool(enabled) ? cJSON_IsTrue(enabled) : -1;
	if (removed) {
		const cJSON *reason = cJSON_GetObjectItemCaseSensitive(removed, "reason");
		/* "deleted" is permanent; "changed" (soft delete) and anything else is not */
		u->removed = cJSON_IsString(reason) && strcmp(reason->valuestring, "deleted") == 0
		    ? DIR_REMOVED_DELETED
		    : DIR_REMOVED_CHANGED;
		return 0;
	}
	u->upn = dup_string(o, "userPrincipalName");
	u->display_name = dup_string(o, "displayName");
	parse_attrs(o, u);
	if (cJSON_IsArray(plans))
		parse_plans(plans, u);
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
		if (*p != '\\')
			continue;
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

int
dir_parse_page(const char *json, size_t len, struct dir_page *out, char *err, size_t errlen)
{
	char *mended = mend_surrogates(json, len);
	cJSON *root = cJSON_ParseWithLength(mended ? mended : json, len), *v;
	const cJSON *value;
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
	out->users = calloc(n > 0 ? (size_t)n : 1, sizeof(*out->users));
	cJSON_ArrayForEach(v, value)
	{
		if (out->users && parse_user(v, &out->users[out->n_users]) == 0)
			out->n_users++;
		else
			out->skipped++;
	}
	out->next_link = dup_string(root, "@odata.nextLink");
	out->delta_link = dup_string(root, "@odata.deltaLink");
	cJSON_Delete(root);
	return 0;
}

void
dir_user_free(struct dir_user *u)
{
	free(u->id);
	free(u->upn);
	free(u->display_name);
	for (int a = 0; a < RA__MAX; a++)
		free(u->attr[a]);
	free(u->plans);
	memset(u, 0, sizeof(*u));
}

void
dir_page_free(struct dir_page *p)
{
	for (size_t i = 0; i < p->n_users; i++)
		dir_user_free(&p->users[i]);
	free(p->users);
	free(p->next_link);
	free(p->delta_link);
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
