/*
 * libFuzzer: a users/delta page from Graph, parsed and classified.
 *
 * dir_parse_page walks each user object once; what it finds is checked against
 * a reference that reads the page the plain way, one cJSON lookup per field (how
 * it was first written), so that the two never differ: first duplicate wins,
 * nulls and wrong types, @removed, extension attributes, plans.
 */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the reference -------------------------------------------------------- */

static const char *const ref_property[RA_EXT1] = {
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

/* The string member name of obj as it stands in the tree, or NULL. */
static const char *
ref_string(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static int
ref_hex4(const char *p, const char *end, unsigned *out)
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

/* Unpaired surrogate escapes become \uFFFD, one byte at a time. */
static char *
ref_mend(const char *json, size_t len)
{
	const char *end = json + len;
	char *copy = malloc(len ? len : 1);

	if (!copy)
		abort();
	memcpy(copy, json, len);
	for (const char *p = json; p + 1 < end; p++) {
		unsigned v, w;
		if (*p != '\\')
			continue;
		if (p[1] != 'u' || ref_hex4(p + 2, end, &v) < 0) {
			p++;
			continue;
		}
		if (v >= 0xd800 && v <= 0xdbff && end - p >= 12 && p[6] == '\\' && p[7] == 'u'
		    && ref_hex4(p + 8, end, &w) == 0 && w >= 0xdc00 && w <= 0xdfff) {
			p += 11;
			continue;
		}
		if (v >= 0xd800 && v <= 0xdfff)
			memcpy(copy + (p - json) + 2, "FFFD", 4);
		p += 5;
	}
	return copy;
}

static void
same_string(const char *want, const char *got)
{
	if (!want != !got || (want && strcmp(want, got) != 0))
		abort();
}

static void
check_plans(const cJSON *arr, const struct dir_user *u)
{
	const cJSON *p;
	size_t n = 0;

	if (!u->has_plans)
		abort();
	cJSON_ArrayForEach(p, arr)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(p, "servicePlanId");
		const char *st = ref_string(p, "capabilityStatus");
		char guid[DIR_GUID_LEN + 1], cap[16];

		if (!cJSON_IsString(id) || strlen(id->valuestring) != DIR_GUID_LEN)
			continue;
		for (int i = 0; i <= DIR_GUID_LEN; i++)
			guid[i] = (char)tolower((unsigned char)id->valuestring[i]);
		snprintf(cap, sizeof(cap), "%s", st ? st : "");
		if (n >= u->n_plans || strcmp(u->plans[n].service_plan_id, guid) != 0
		    || strcmp(u->plans[n].capability, cap) != 0)
			abort();
		n++;
	}
	if (n != u->n_plans)
		abort();
}

static enum dir_removed
ref_removed(const cJSON *removed)
{
	const char *reason = ref_string(removed, "reason");

	if (!removed)
		return DIR_PRESENT;
	return reason && strcmp(reason, "deleted") == 0 ? DIR_REMOVED_DELETED : DIR_REMOVED_CHANGED;
}

/* The user o, as dir_parse_page must have read it into u (NULL: none left); 0 when o is a user. */
static int
check_user(const cJSON *o, const struct dir_user *u)
{
	const cJSON *removed = cJSON_GetObjectItemCaseSensitive(o, "@removed");
	const cJSON *enabled = cJSON_GetObjectItemCaseSensitive(o, "accountEnabled");
	const cJSON *plans = cJSON_GetObjectItemCaseSensitive(o, "assignedPlans");
	const cJSON *ext = cJSON_GetObjectItemCaseSensitive(o, "onPremisesExtensionAttributes");
	const char *id = cJSON_IsObject(o) ? ref_string(o, "id") : NULL;
	int present = !removed;

	if (!id || !id[0])
		return -1;
	if (!u)
		abort();
	same_string(id, u->id);
	if (u->account_enabled != (cJSON_IsBool(enabled) ? cJSON_IsTrue(enabled) : -1))
		abort();
	if (u->removed != ref_removed(removed))
		abort();
	same_string(present ? ref_string(o, "userPrincipalName") : NULL, u->upn);
	same_string(present ? ref_string(o, "displayName") : NULL, u->display_name);
	for (int a = 0; a < RA_EXT1; a++)
		same_string(present ? ref_string(o, ref_property[a]) : NULL, u->attr[a]);
	for (int i = 0; i < 15; i++) {
		char name[32];
		snprintf(name, sizeof(name), "extensionAttribute%d", i + 1);
		same_string(present && cJSON_IsObject(ext) ? ref_string(ext, name) : NULL,
		    u->attr[RA_EXT1 + i]);
	}
	if (present && cJSON_IsArray(plans))
		check_plans(plans, u);
	else if (u->has_plans || u->n_plans)
		abort();
	return 0;
}

static void
check_page(const uint8_t *data, size_t size, const struct dir_page *p)
{
	char *mended = ref_mend((const char *)data, size);
	cJSON *root = cJSON_ParseWithLength(mended, size);
	const cJSON *value = cJSON_GetObjectItemCaseSensitive(root, "value"), *v;
	size_t n = 0, skipped = 0;

	if (!cJSON_IsObject(root) || !cJSON_IsArray(value))
		abort(); /* dir_parse_page took it */
	cJSON_ArrayForEach(v, value)
	{
		if (check_user(v, n < p->n_users ? &p->users[n] : NULL) == 0)
			n++;
		else
			skipped++;
	}
	if (n != p->n_users || skipped != p->skipped)
		abort();
	same_string(ref_string(root, "@odata.nextLink"), p->next_link);
	same_string(ref_string(root, "@odata.deltaLink"), p->delta_link);
	cJSON_Delete(root);
	free(mended);
}

/* ---- the harness ---------------------------------------------------------- */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dir_licensing *lic = dir_licensing_new();
	struct dir_page p;
	char err[200];

	/* the same bytes as a subscribedSkus answer teach the table plan names */
	dir_licensing_load_skus(lic, (const char *)data, size);
	if (dir_parse_page((const char *)data, size, &p, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		dir_licensing_free(lic);
		return 0;
	}
	check_page(data, size, &p);
	for (size_t i = 0; i < p.n_users; i++) {
		struct dir_licence l;
		struct rule_attrs a;

		if (!p.users[i].id || !p.users[i].id[0])
			abort();
		dir_classify(lic, &p.users[i], &l);
		dir_user_attrs(&p.users[i], &a);
		for (int k = 0; k < RA__MAX; k++)
			if (a.v[k])
				(void)strlen(a.v[k]);
	}
	dir_page_free(&p);
	dir_licensing_free(lic);
	return 0;
}
