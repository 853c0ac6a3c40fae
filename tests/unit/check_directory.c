/* users/delta pages into structs, and licence classification. */
#include "build-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "directory.h"
#include "testutil.h"

#define MCOEV "4828c8ec-dc2e-4779-b502-87ac9ce28ab7"
#define MCOPSTN1 "4ed3ff63-69d7-4fb7-b984-5aec7f605ca8"
#define MCOPSTNC "505e180f-f7e0-4b65-91d4-00d670bbd18c"
#define UNKNOWN_PLAN "11111111-aaaa-bbbb-cccc-222222222222"

static char err[400];

static struct dir_page
parse(const char *json)
{
	struct dir_page p;

	ck_assert_msg(dir_parse_page(json, strlen(json), &p, err, sizeof(err)) == 0, "%s", err);
	return p;
}

START_TEST(parses_a_page_of_users)
{
	struct dir_page p = parse(
	    "{\"@odata.context\":\"x\",\"value\":[{\"id\":\"u1\",\"userPrincipalName\":\"alice@"
	    "contoso.com\","
	    "\"accountEnabled\":true,\"city\":\"Abingdon\",\"officeLocation\":\"Office 1\","
	    "\"usageLocation\":\"GB\",\"companyName\":\"Contoso\","
	    "\"onPremisesExtensionAttributes\":"
	    "{\"extensionAttribute3\":\"x3\",\"extensionAttribute15\":\"x15\"},"
	    "\"assignedPlans\":[{\"servicePlanId\":\"4828C8EC-DC2E-4779-B502-87AC9CE28AB7\","
	    "\"capabilityStatus\":\"Enabled\",\"service\":\"MicrosoftCommunicationsOnline\"}]}],"
	    "\"@odata.nextLink\":\"https://graph/next\"}");
	const struct dir_user *u = &p.users[0];

	ck_assert_uint_eq(p.n_users, 1);
	ck_assert_str_eq(u->id, "u1");
	ck_assert_str_eq(u->upn, "alice@contoso.com");
	ck_assert_int_eq(u->account_enabled, 1);
	ck_assert_str_eq(u->attr[RA_CITY], "Abingdon");
	ck_assert_str_eq(u->attr[RA_OFFICE], "Office 1");
	ck_assert_str_eq(u->attr[RA_USAGE_LOCATION], "GB");
	ck_assert_str_eq(u->attr[RA_COMPANY], "Contoso");
	ck_assert_str_eq(u->attr[RA_UPN], "alice@contoso.com");
	ck_assert_str_eq(u->attr[RA_EXT1 + 2], "x3");
	ck_assert_str_eq(u->attr[RA_EXT15], "x15");
	ck_assert_ptr_null(u->attr[RA_DEPARTMENT]);
	ck_assert_int_eq(u->has_plans, 1);
	ck_assert_uint_eq(u->n_plans, 1);
	ck_assert_str_eq(u->plans[0].service_plan_id, MCOEV); /* lower-cased */
	ck_assert_str_eq(p.next_link, "https://graph/next");
	ck_assert_ptr_null(p.delta_link);
	dir_page_free(&p);
}
END_TEST

START_TEST(survives_nulls_and_wrong_types)
{
	struct dir_page p = parse(
	    "{\"value\":[{\"id\":\"u1\",\"city\":null,\"officeLocation\":42,\"accountEnabled\":"
	    "\"yes\","
	    "\"assignedPlans\":{\"not\":\"an array\"},\"onPremisesExtensionAttributes\":[1,2]},"
	    "{\"id\":7},{\"noid\":true},\"a string\",null,{\"id\":\"\"},"
	    "{\"id\":\"u2\",\"assignedPlans\":[{\"servicePlanId\":123},{\"servicePlanId\":"
	    "\"short\"},"
	    "null,{\"servicePlanId\":\"" MCOEV
	    "\"}]}],\"@odata.deltaLink\":\"https://graph/delta\"}");

	ck_assert_uint_eq(p.n_users, 2);
	ck_assert_uint_eq(p.skipped, 5);
	ck_assert_ptr_null(p.users[0].attr[RA_CITY]);
	ck_assert_ptr_null(p.users[0].attr[RA_OFFICE]);
	ck_assert_int_eq(p.users[0].account_enabled, -1);
	ck_assert_int_eq(p.users[0].has_plans, 0);
	ck_assert_uint_eq(p.users[1].n_plans, 1);
	ck_assert_str_eq(p.users[1].plans[0].capability, "");
	ck_assert_str_eq(p.delta_link, "https://graph/delta");
	dir_page_free(&p);
}
END_TEST

START_TEST(keeps_unicode)
{
	struct dir_page p = parse(
	    "{\"value\":[{\"id\":\"u1\",\"city\":\"Z\\u00fcrich\","
	    "\"department\":\"\xd0\x9f\xd1\x80\xd0\xbe\xd0\xb4\xd0\xb0\xd0\xb6\xd0\xb8\"}]}");

	ck_assert_str_eq(p.users[0].attr[RA_CITY], "Z\xc3\xbcrich");
	ck_assert_str_eq(p.users[0].attr[RA_DEPARTMENT],
	    "\xd0\x9f\xd1\x80\xd0\xbe\xd0\xb4\xd0\xb0\xd0\xb6\xd0\xb8");
	dir_page_free(&p);
}
END_TEST

START_TEST(removed_users_with_reason)
{
	struct dir_page p
	    = parse("{\"value\":[{\"id\":\"a\",\"@removed\":{\"reason\":\"changed\"}},"
		    "{\"id\":\"b\",\"@removed\":{\"reason\":\"deleted\"}},"
		    "{\"id\":\"c\",\"@removed\":{}}]}");

	ck_assert_uint_eq(p.n_users, 3);
	ck_assert_int_eq(p.users[0].removed, DIR_REMOVED_CHANGED);
	ck_assert_int_eq(p.users[1].removed, DIR_REMOVED_DELETED);
	ck_assert_int_eq(p.users[2].removed, DIR_REMOVED_CHANGED);
	dir_page_free(&p);
}
END_TEST

START_TEST(rejects_what_is_not_a_page)
{
	struct dir_page p;

	ck_assert_int_eq(dir_parse_page("[1,2]", 5, &p, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "the users page is not a JSON object");
	ck_assert_int_eq(dir_parse_page("{\"value\":{}}", 12, &p, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "the users page has no value array");
	ck_assert_int_eq(dir_parse_page("{\"value\":[", 10, &p, err, sizeof(err)), -1);
}
END_TEST

START_TEST(thousands_of_users)
{
	size_t cap = 6000 * 200, len = 0;
	char *json = malloc(cap);
	struct dir_page p;

	len += (size_t)snprintf(json + len, cap - len, "{\"value\":[");
	for (int i = 0; i < 5000; i++)
		len += (size_t)snprintf(json + len, cap - len,
		    "%s{\"id\":\"user-%d\",\"city\":\"City "
		    "%d\",\"assignedPlans\":[{\"servicePlanId\":\"%s\","
		    "\"capabilityStatus\":\"Enabled\"}]}",
		    i ? "," : "", i, i % 7, MCOEV);
	len += (size_t)snprintf(
	    json + len, cap - len, "],\"@odata.nextLink\":\"https://graph/next\"}");
	ck_assert_int_eq(dir_parse_page(json, len, &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.n_users, 5000);
	ck_assert_str_eq(p.users[4999].id, "user-4999");
	ck_assert_str_eq(p.users[4999].attr[RA_CITY], "City 1");
	ck_assert_str_eq(p.next_link, "https://graph/next");
	dir_page_free(&p);
	free(json);
}
END_TEST

/* A member named twice: the first one counts, whatever it holds, as cJSON_GetObjectItem finds it.
 */
START_TEST(first_duplicate_member_wins)
{
	struct dir_page p = parse(
	    "{\"value\":[{\"id\":\"u1\",\"id\":\"u2\",\"city\":null,\"city\":\"Paris\","
	    "\"officeLocation\":\"A\",\"officeLocation\":\"B\",\"accountEnabled\":\"yes\","
	    "\"accountEnabled\":true,\"userPrincipalName\":\"a@b.c\",\"userPrincipalName\":\"x@y."
	    "z\","
	    "\"onPremisesExtensionAttributes\":{\"extensionAttribute1\":null,"
	    "\"extensionAttribute1\":\"late\",\"extensionAttribute2\":\"first\","
	    "\"extensionAttribute2\":\"second\"},"
	    "\"onPremisesExtensionAttributes\":{\"extensionAttribute3\":\"other object\"},"
	    "\"assignedPlans\":[{\"servicePlanId\":\"" MCOEV "\",\"servicePlanId\":\"" MCOPSTN1
	    "\","
	    "\"capabilityStatus\":\"Enabled\",\"capabilityStatus\":\"Deleted\"}],"
	    "\"assignedPlans\":[]},"
	    "{\"id\":\"\",\"id\":\"u3\"},{\"id\":\"u4\",\"@removed\":null,\"@removed\":{\"reason\":"
	    "\"deleted\"}},{\"id\":\"u5\",\"@removed\":{\"reason\":\"deleted\",\"reason\":"
	    "\"changed\"}},"
	    "{\"id\":\"u6\",\"assignedPlans\":\"none\",\"assignedPlans\":[{\"servicePlanId\":"
	    "\"" MCOEV "\"}]}],\"@odata.nextLink\":null,\"@odata.nextLink\":\"https://g/n\"}");
	const struct dir_user *u = &p.users[0];

	ck_assert_uint_eq(p.n_users, 4);
	ck_assert_uint_eq(p.skipped, 1); /* the first id is empty */
	ck_assert_str_eq(u->id, "u1");
	ck_assert_ptr_null(u->attr[RA_CITY]);
	ck_assert_str_eq(u->attr[RA_OFFICE], "A");
	ck_assert_int_eq(u->account_enabled, -1);
	ck_assert_str_eq(u->upn, "a@b.c");
	ck_assert_str_eq(u->attr[RA_UPN], "a@b.c");
	ck_assert_ptr_null(u->attr[RA_EXT1]);
	ck_assert_str_eq(u->attr[RA_EXT1 + 1], "first");
	ck_assert_ptr_null(u->attr[RA_EXT1 + 2]);
	ck_assert_int_eq(u->has_plans, 1);
	ck_assert_uint_eq(u->n_plans, 1);
	ck_assert_str_eq(u->plans[0].service_plan_id, MCOEV);
	ck_assert_str_eq(u->plans[0].capability, "Enabled");
	/* @removed: null is there all the same, and the first reason decides */
	ck_assert_str_eq(p.users[1].id, "u4");
	ck_assert_int_eq(p.users[1].removed, DIR_REMOVED_CHANGED);
	ck_assert_int_eq(p.users[2].removed, DIR_REMOVED_DELETED);
	ck_assert_int_eq(p.users[3].has_plans, 0);
	ck_assert_ptr_null(p.next_link);
	dir_page_free(&p);
}
END_TEST

START_TEST(extension_attribute_names)
{
	struct dir_page p = parse("{\"value\":[{\"id\":\"u1\",\"onPremisesExtensionAttributes\":{"
				  "\"extensionAttribute9\":\"9\",\"extensionAttribute10\":\"10\","
				  "\"extensionAttribute14\":\"14\",\"extensionAttribute16\":\"16\","
				  "\"extensionAttribute0\":\"0\",\"extensionAttribute01\":\"01\","
				  "\"ExtensionAttribute1\":\"E1\",\"extensionattribute2\":\"e2\","
				  "\"extensionAttribute3 \":\"3 \",\"extensionAttribute\":\"none\","
				  "\"extensionAttribute4\":{\"v\":\"4\"}},"
				  "\"extensionAttribute5\":\"not nested\"}]}");
	const struct dir_user *u = &p.users[0];

	for (int i = 0; i < 15; i++) {
		if (i == 8 || i == 9 || i == 13)
			continue;
		ck_assert_msg(u->attr[RA_EXT1 + i] == NULL, "extensionAttribute%d", i + 1);
	}
	ck_assert_str_eq(u->attr[RA_EXT1 + 8], "9");
	ck_assert_str_eq(u->attr[RA_EXT1 + 9], "10");
	ck_assert_str_eq(u->attr[RA_EXT15 - 1], "14");
	dir_page_free(&p);
}
END_TEST

/* Names compare as cJSON compares them: as C strings, so "city\u0000x" is city. */
START_TEST(names_end_at_nul)
{
	struct dir_page p
	    = parse("{\"value\":[{\"id\":\"u1\",\"city\\u0000x\":\"Paris\",\"state\":\"\\u0000x\"},"
		    "{\"id\":\"\\u0000u2\"},{\"id\\u0000\":\"u3\"}]}");

	ck_assert_uint_eq(p.n_users, 2);
	ck_assert_uint_eq(p.skipped, 1);
	ck_assert_str_eq(p.users[0].attr[RA_CITY], "Paris");
	ck_assert_str_eq(p.users[0].attr[RA_STATE], "");
	ck_assert_str_eq(p.users[1].id, "u3");
	dir_page_free(&p);
}
END_TEST

START_TEST(plan_fields)
{
	struct dir_page p
	    = parse("{\"value\":[{\"id\":\"u1\",\"assignedPlans\":["
		    "{\"capabilityStatus\":\"AVeryLongCapabilityStatus\",\"servicePlanId\":"
		    "\"" MCOEV "\"},"
		    "{\"servicePlanId\":\"" MCOEV "x\",\"capabilityStatus\":\"Enabled\"},"
		    "{\"servicePlanId\":\"" MCOPSTN1 "\",\"capabilityStatus\":7},"
		    "[{\"servicePlanId\":\"" MCOEV "\"}],\"" MCOEV "\"]},"
		    "{\"id\":\"u2\",\"assignedPlans\":[]},"
		    "{\"id\":\"u3\",\"assignedPlans\":[1,null]}]}");

	ck_assert_uint_eq(p.users[0].n_plans, 2);
	ck_assert_str_eq(p.users[0].plans[0].capability, "AVeryLongCapabi"); /* cut to 15 */
	ck_assert_str_eq(p.users[0].plans[1].service_plan_id, MCOPSTN1);
	ck_assert_str_eq(p.users[0].plans[1].capability, "");
	ck_assert_int_eq(p.users[1].has_plans, 1);
	ck_assert_uint_eq(p.users[1].n_plans, 0);
	ck_assert_int_eq(p.users[2].has_plans, 1);
	ck_assert_uint_eq(p.users[2].n_plans, 0);
	dir_page_free(&p);
}
END_TEST

/* One odd name must not stop the sync: cJSON refuses unpaired surrogates. */
START_TEST(mends_unpaired_surrogates)
{
	struct dir_page p = parse(
	    "{\"value\":[{\"id\":\"u1\",\"displayName\":\"A\\ud800B\\udc00C\\ud83d\\ude00D\","
	    "\"city\":\"\\\\ud800\"}],\"@odata.deltaLink\":\"https://g/d\\udbff\"}");

	ck_assert_str_eq(p.users[0].display_name,
	    "A\xef\xbf\xbd"
	    "B\xef\xbf\xbd"
	    "C\xf0\x9f\x98\x80"
	    "D");
	ck_assert_str_eq(p.users[0].attr[RA_CITY], "\\ud800"); /* an escaped backslash */
	ck_assert_str_eq(p.delta_link, "https://g/d\xef\xbf\xbd");
	dir_page_free(&p);
}
END_TEST

/* A page that is nearly all strings and plans still fits what it reads. */
START_TEST(dense_pages)
{
	size_t cap = 400000, len = 0;
	char *json = malloc(cap);
	struct dir_page p;

	len += (size_t)snprintf(json + len, cap - len, "{\"value\":[");
	for (int i = 0; i < 2000; i++)
		len += (size_t)snprintf(json + len, cap - len,
		    "%s{\"id\":\"%d\",\"city\":\"\\u00e9\",\"assignedPlans\":[{\"servicePlanId\":"
		    "\"%s\"},"
		    "{\"servicePlanId\":\"%s\"}]}",
		    i ? "," : "", i, MCOEV, MCOPSTN1);
	len += (size_t)snprintf(json + len, cap - len, "],\"@odata.deltaLink\":\"d\"}");
	ck_assert_int_eq(dir_parse_page(json, len, &p, err, sizeof(err)), 0);
	ck_assert_uint_eq(p.n_users, 2000);
	for (size_t i = 0; i < p.n_users; i++) {
		ck_assert_uint_eq(p.users[i].n_plans, 2);
		ck_assert_str_eq(p.users[i].plans[1].service_plan_id, MCOPSTN1);
		ck_assert_str_eq(p.users[i].attr[RA_CITY], "\xc3\xa9");
	}
	ck_assert_str_eq(p.delta_link, "d");
	dir_page_free(&p);
	/* the smallest: no users, and a page of plans only */
	p = parse("{\"value\":[]}");
	ck_assert_uint_eq(p.n_users, 0);
	dir_page_free(&p);
	p = parse("{\"value\":[{\"id\":\"u\",\"assignedPlans\":[{\"servicePlanId\":\"" MCOEV
		  "\"},{\"servicePlanId\":\"" MCOEV "\"}]}]}");
	ck_assert_uint_eq(p.users[0].n_plans, 2);
	dir_page_free(&p);
	free(json);
}
END_TEST

static struct dir_licence
classify(struct dir_licensing *l, const char *plans)
{
	char json[1024];
	struct dir_page p;
	struct dir_licence lic;

	snprintf(json, sizeof(json), "{\"value\":[{\"id\":\"u\",\"assignedPlans\":[%s]}]}", plans);
	p = parse(json);
	dir_classify(l, &p.users[0], &lic);
	dir_page_free(&p);
	return lic;
}

#define PLAN(id, st) "{\"servicePlanId\":\"" id "\",\"capabilityStatus\":\"" st "\"}"

START_TEST(licence_classes)
{
	struct dir_licensing *l = dir_licensing_new();
	struct dir_licence c;

	c = classify(l, PLAN(MCOEV, "Enabled"));
	ck_assert(c.teams_phone && !c.calling_plan);
	c = classify(l, PLAN(MCOEV, "Warning"));
	ck_assert(c.teams_phone);
	c = classify(l, PLAN(MCOEV, "Suspended") "," PLAN(MCOEV, "Deleted"));
	ck_assert(!c.teams_phone);
	/* several entries for the same plan: any one enabled is enough */
	c = classify(l, PLAN(MCOEV, "Deleted") "," PLAN(MCOEV, "Enabled"));
	ck_assert(c.teams_phone);
	c = classify(l, PLAN(MCOEV, "Enabled") "," PLAN(MCOPSTN1, "Enabled"));
	ck_assert(c.teams_phone && c.calling_plan);
	/* communication credits are not a calling plan */
	c = classify(l, PLAN(MCOEV, "Enabled") "," PLAN(MCOPSTNC, "Enabled"));
	ck_assert(c.teams_phone && !c.calling_plan);
	c = classify(l, PLAN(UNKNOWN_PLAN, "Enabled"));
	ck_assert(!c.teams_phone && !c.calling_plan);
	dir_licensing_free(l);
}
END_TEST

START_TEST(plan_names_from_subscribed_skus)
{
	struct dir_licensing *l = dir_licensing_new();
	const char *skus
	    = "{\"value\":[{\"skuId\":\"s\",\"skuPartNumber\":\"MCOPSTN8\",\"servicePlans\":["
	      "{\"servicePlanId\":\"" UNKNOWN_PLAN "\",\"servicePlanName\":\"MCOPSTN8\"},"
	      "{\"servicePlanId\":\"22222222-aaaa-bbbb-cccc-222222222222\",\"servicePlanName\":"
	      "\"MCOPSTNPP\"},"
	      "{\"servicePlanId\":\"33333333-aaaa-bbbb-cccc-222222222222\",\"servicePlanName\":"
	      "\"MCOEV_VIRTUALUSER\"},"
	      "{\"servicePlanId\":\"44444444-aaaa-bbbb-cccc-222222222222\",\"servicePlanName\":"
	      "\"MCOEV_DOD\"},"
	      "{\"servicePlanId\":\"bad\",\"servicePlanName\":\"MCOEV\"}]}]}";

	ck_assert_int_eq(dir_licensing_load_skus(l, skus, strlen(skus)), 4);
	ck_assert_int_eq(dir_licensing_class(l, UNKNOWN_PLAN), DIR_PLAN_CALLING_PLAN);
	ck_assert_str_eq(dir_licensing_name(l, UNKNOWN_PLAN), "MCOPSTN8");
	ck_assert_int_eq(
	    dir_licensing_class(l, "22222222-aaaa-bbbb-cccc-222222222222"), DIR_PLAN_OTHER);
	ck_assert_int_eq(
	    dir_licensing_class(l, "33333333-aaaa-bbbb-cccc-222222222222"), DIR_PLAN_OTHER);
	ck_assert_int_eq(
	    dir_licensing_class(l, "44444444-AAAA-bbbb-cccc-222222222222"), DIR_PLAN_TEAMS_PHONE);
	ck_assert_int_eq(dir_licensing_load_skus(l, "nope", 4), -1);
	dir_licensing_free(l);
}
END_TEST

START_TEST(config_names_extra_plans)
{
	struct dir_licensing *l = dir_licensing_new();
	struct dir_licence c;
	const char *skus = "{\"value\":[{\"servicePlans\":[{\"servicePlanId\":\"" UNKNOWN_PLAN
			   "\",\"servicePlanName\":\"SOMETHING\"}]}]}";

	ck_assert_int_eq(dir_licensing_add(l, UNKNOWN_PLAN, DIR_PLAN_CALLING_PLAN), 0);
	ck_assert_int_eq(dir_licensing_add(l, "not-a-guid", DIR_PLAN_CALLING_PLAN), -1);
	/* the tenant's name for it does not override the config */
	dir_licensing_load_skus(l, skus, strlen(skus));
	c = classify(l, PLAN(MCOEV, "Enabled") "," PLAN(UNKNOWN_PLAN, "Enabled"));
	ck_assert(c.teams_phone && c.calling_plan);
	dir_licensing_free(l);
}
END_TEST

START_TEST(licensing_from_config)
{
	char *cp[] = { UNKNOWN_PLAN }, *tp[] = { "99999999-aaaa-bbbb-cccc-222222222222" };
	struct config cfg;
	struct dir_licensing *l;
	struct dir_licence c;

	memset(&cfg, 0, sizeof(cfg));
	cfg.licensing.calling_plan = cp;
	cfg.licensing.n_calling_plan = 1;
	cfg.licensing.teams_phone = tp;
	cfg.licensing.n_teams_phone = 1;
	l = dir_licensing_from_config(&cfg);
	c = classify(l,
	    PLAN("99999999-aaaa-bbbb-cccc-222222222222", "Enabled") "," PLAN(
		UNKNOWN_PLAN, "Warning"));
	ck_assert(c.teams_phone && c.calling_plan);
	dir_licensing_free(l);
}
END_TEST

static Suite *
directory_suite(void)
{
	Suite *s = suite_create("directory");
	TCase *tc = tcase_create("directory");

	tcase_add_test(tc, parses_a_page_of_users);
	tcase_add_test(tc, survives_nulls_and_wrong_types);
	tcase_add_test(tc, keeps_unicode);
	tcase_add_test(tc, removed_users_with_reason);
	tcase_add_test(tc, rejects_what_is_not_a_page);
	tcase_add_test(tc, thousands_of_users);
	tcase_add_test(tc, first_duplicate_member_wins);
	tcase_add_test(tc, extension_attribute_names);
	tcase_add_test(tc, names_end_at_nul);
	tcase_add_test(tc, plan_fields);
	tcase_add_test(tc, mends_unpaired_surrogates);
	tcase_add_test(tc, dense_pages);
	tcase_add_test(tc, licence_classes);
	tcase_add_test(tc, plan_names_from_subscribed_skus);
	tcase_add_test(tc, config_names_extra_plans);
	tcase_add_test(tc, licensing_from_config);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(directory_suite)
