/* The config loader: what an operator sees for good and bad files. */
#include "build-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "rule.h"
#include "testutil.h"

#define TENANT                                                                                     \
	"tenant: { id = \"contoso.onmicrosoft.com\";\n"                                            \
	"  client_id = \"11111111-2222-3333-4444-555555555555\";\n"                                \
	"  client_secret_file = \"/etc/numprov/client-secret\"; };\n"

static char file[64];
static char err[8192];

/* Write text to a temporary file and load it. */
static struct config *
load(const char *text)
{
	FILE *f;
	int fd;

	snprintf(file, sizeof(file), "/tmp/numprov-conf-XXXXXX");
	fd = mkstemp(file);
	ck_assert_int_ge(fd, 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	struct config *c = config_load(file, err, sizeof(err));
	unlink(file);
	return c;
}

/* The error text must contain "FILE:LINE: " followed by want. */
static void
assert_error_at(int line, const char *want)
{
	char prefix[128];

	snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
	ck_assert_msg(strstr(err, prefix) != NULL, "expected %s in: %s", prefix, err);
	ck_assert_msg(strstr(err, want) != NULL, "expected '%s' in: %s", want, err);
}

START_TEST(example_config_is_valid)
{
	char path[4096];
	const char *top = getenv("top_srcdir");
	struct config *c;

	char copy[] = "/tmp/check_config_XXXXXX";
	FILE *in, *out;
	char line[1024];
	int fd;

	snprintf(path, sizeof(path), "%s/etc/numprovd.conf", top ? top : ".");
	/* as shipped it is refused, with one line saying it is the example */
	ck_assert_ptr_null(config_load(path, err, sizeof(err)));
	ck_assert_msg(strstr(err, "tenant.client_id is still the example's") != NULL, "%s", err);
	ck_assert_msg(strchr(err, '\n') == NULL, "only the placeholder is wrong: %s", err);
	/* with an application id put in, everything else in it is valid */
	ck_assert_int_ge(fd = mkstemp(copy), 0);
	ck_assert_ptr_nonnull(in = fopen(path, "r"));
	ck_assert_ptr_nonnull(out = fdopen(fd, "w"));
	while (fgets(line, sizeof(line), in)) {
		char *p = strstr(line, "00000000-0000-0000-0000-000000000000");
		if (p)
			memcpy(p, "11111111-2222-3333-4444-555555555555", 36);
		fputs(line, out);
	}
	fclose(in);
	fclose(out);
	c = config_load(copy, err, sizeof(err));
	unlink(copy);
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->n_ranges, 5);
	ck_assert_str_eq(c->ranges[0].name, "abingdon-office-1");
	ck_assert_int_eq(c->ranges[0].type, RT_DIRECT_ROUTING);
	ck_assert_int_eq(c->ranges[0].quarantine_days, 30);
	ck_assert_uint_eq(c->ranges[0].span.size, 1000);
	ck_assert_uint_eq(c->ranges[0].n_reserved, 2);
	ck_assert_int_eq(c->ranges[2].type, RT_CALLING_PLAN);
	ck_assert_int_eq(c->ranges[3].span.is_ext, 1);
	ck_assert_int_eq(c->sync.mode, SYNC_ENFORCE);
	config_free(c);
}
END_TEST

START_TEST(defaults_apply)
{
	struct config *c = load(TENANT);

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_int_eq(c->sync.interval, 60);
	ck_assert_int_eq(c->sync.full_interval, 86400);
	ck_assert_int_eq(c->sync.parallel, 8);
	ck_assert_int_eq(c->sync.retry_min, 60);
	ck_assert_int_eq(c->sync.retry_max, 14400);
	ck_assert(c->policy.release_on_delete);
	ck_assert(!c->policy.release_on_disable);
	ck_assert_str_eq(c->database.path, NUMPROV_STATEDIR);
	ck_assert_str_eq(c->tenant.graph_url, "https://graph.microsoft.com");
	ck_assert_uint_eq(c->n_ranges, 0);
	ck_assert(c->snmp.enabled);
	ck_assert(c->snmp.traps);
	ck_assert_str_eq(c->snmp.agentx_socket, "/var/agentx/master");
	ck_assert_int_eq(c->snmp.ping_interval, 30);
	config_free(c);
}
END_TEST

START_TEST(snmp_ping_interval)
{
	struct config *c
	    = load(TENANT "snmp: { agentx_socket = \"unix:/tmp/x\"; ping_interval = 2; };\n");

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->snmp.agentx_socket, "unix:/tmp/x");
	ck_assert_int_eq(c->snmp.ping_interval, 2);
	config_free(c);
	ck_assert_ptr_null(load(TENANT "snmp: { ping_interval = 0; };\n"));
	assert_error_at(4, "snmp.ping_interval");
	ck_assert_ptr_null(load(TENANT "snmp: { ping_interval = \"30\"; };\n"));
	assert_error_at(4, "snmp.ping_interval");
	ck_assert_ptr_null(load(TENANT "snmp: { agentx_socket = \"\"; };\n"));
	assert_error_at(4, "snmp.agentx_socket is empty");
}
END_TEST

START_TEST(daemon_user_and_group)
{
	struct config *c = load(TENANT "ranges = ();\n");

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->daemon.user, "numprov");
	ck_assert_str_eq(c->daemon.group, "numprov");
	config_free(c);
	c = load(TENANT "daemon: { user = \"voice\"; group = \"telecom\"; };\n");
	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->daemon.user, "voice");
	ck_assert_str_eq(c->daemon.group, "telecom");
	config_free(c);
	ck_assert_ptr_null(load(TENANT "daemon: { user = \"\"; };\n"));
	assert_error_at(4, "daemon.user is empty");
	ck_assert_ptr_null(load(TENANT "daemon: { group = 7; };\n"));
	assert_error_at(4, "daemon.group must be a string");
	ck_assert_ptr_null(load(TENANT "daemon: { uid = \"numprov\"; };\n"));
	assert_error_at(4, "daemon.uid");
}
END_TEST

START_TEST(credential_paths_are_absolute)
{
	ck_assert_ptr_null(load("tenant: { id = \"contoso.onmicrosoft.com\";\n"
				"  client_id = \"11111111-2222-3333-4444-555555555555\";\n"
				"  client_secret_file = \"secret\"; ca_file = \"ca.pem\"; };\n"));
	assert_error_at(3, "tenant.client_secret_file must be an absolute path (got \"secret\")");
	assert_error_at(3, "tenant.ca_file must be an absolute path (got \"ca.pem\")");
}
END_TEST

START_TEST(syntax_error_has_line)
{
	ck_assert_ptr_null(load(TENANT "sync: { interval = = 30; };\n"));
	assert_error_at(4, "syntax error");
}
END_TEST

START_TEST(unknown_key_suggests_closest)
{
	ck_assert_ptr_null(load(TENANT "sync: {\n  intervall = 30;\n};\n"));
	assert_error_at(5, "unknown key 'sync.intervall' (did you mean 'sync.interval'?)");
}
END_TEST

START_TEST(unknown_group_reported)
{
	ck_assert_ptr_null(load(TENANT "snmpd: { enabled = true; };\n"));
	assert_error_at(4, "unknown key 'snmpd' (did you mean 'snmp'?)");
}
END_TEST

START_TEST(unknown_key_far_from_all)
{
	ck_assert_ptr_null(load(TENANT "sync: { zzzzzzzz = 1; };\n"));
	assert_error_at(4, "unknown key 'sync.zzzzzzzz'");
	ck_assert_ptr_null(strstr(err, "did you mean"));
}
END_TEST

START_TEST(wrong_type)
{
	ck_assert_ptr_null(
	    load(TENANT "sync: {\n  mode = \"enforce\";\n  interval = \"300\";\n};\n"));
	assert_error_at(6, "sync.interval must be an integer, not a string");
}
END_TEST

START_TEST(out_of_range)
{
	ck_assert_ptr_null(load(TENANT "sync: { parallel = 0; };\n"));
	assert_error_at(4, "sync.parallel is 0; it must be between 1 and 64");
}
END_TEST

START_TEST(bad_enum)
{
	ck_assert_ptr_null(load(TENANT "sync: { mode = \"dryrun\"; };\n"));
	assert_error_at(
	    4, "sync.mode is \"dryrun\"; it must be \"enforce\", \"dry-run\" or \"off\"");
}
END_TEST

START_TEST(retry_max_below_min)
{
	ck_assert_ptr_null(load(TENANT "sync: { retry_min = 600; retry_max = 60; };\n"));
	assert_error_at(4, "sync.retry_max (60) is shorter than sync.retry_min (600)");
}
END_TEST

START_TEST(tenant_required_fields)
{
	ck_assert_ptr_null(load("tenant: { id = \"x\"; client_id = \"not-a-guid\"; };\n"));
	assert_error_at(1, "tenant.client_id \"not-a-guid\" is not a GUID");
	assert_error_at(
	    1, "tenant needs client_secret_file, or certificate_file and private_key_file");
	ck_assert_ptr_null(load("sync: { interval = 5; };\n"));
	ck_assert_msg(strstr(err, "the tenant { ... } group is required") != NULL, "%s", err);
}
END_TEST

START_TEST(tenant_urls_must_be_https)
{
	ck_assert_ptr_null(load("tenant: { id = \"x\";\n"
				"  client_id = \"11111111-2222-3333-4444-555555555555\";\n"
				"  client_secret_file = \"/s\";\n"
				"  graph_url = \"http://graph.example\"; };\n"));
	assert_error_at(4, "tenant.graph_url must be an https:// URL");
}
END_TEST

START_TEST(several_errors_at_once)
{
	ck_assert_ptr_null(load(TENANT "sync: {\n  parallel = 100;\n  intrval = 5;\n};\n"));
	assert_error_at(5, "sync.parallel is 100");
	assert_error_at(6, "unknown key 'sync.intrval'");
}
END_TEST

#define RANGE(name, first, last, extra)                                                            \
	"  { name = \"" name "\"; type = \"direct-routing\"; first = \"" first "\";\n"             \
	"    last = \"" last "\"; " extra " }"

START_TEST(range_parsed)
{
	struct config *c = load(TENANT "ranges = (\n" RANGE("a", "+44 1235 000000", "+441235000999",
	    "match = \"Office = \\\"Park Lane\\\" AND City = \\\"LONDON\\\"\"; priority = 5;\n"
	    "    reserved = [ \"+441235000000\" ];") "\n);\n");
	struct rule_attrs at = { 0 };

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->ranges[0].span.size, 1000);
	ck_assert_int_eq(c->ranges[0].priority, 5);
	ck_assert_int_eq(c->ranges[0].warn_percent, 90);
	ck_assert_int_eq(c->ranges[0].line, 5);
	at.v[RA_OFFICE] = "park lane";
	at.v[RA_CITY] = " London ";
	ck_assert_int_eq(rule_eval(c->ranges[0].match, &at), 1);
	at.v[RA_CITY] = "Leeds";
	ck_assert_int_eq(rule_eval(c->ranges[0].match, &at), 0);
	ck_assert_int_eq(config_range_quarantine(c, &c->ranges[0]), 0);
	config_free(c);
}
END_TEST

START_TEST(rule_error_points_at_token)
{
	ck_assert_ptr_null(load(TENANT "ranges = (\n" RANGE("a", "+441235000000", "+441235000999",
	    "\n    match = \"city = \\\"Abingdon\\\" AND ofice = \\\"x\\\"\";") "\n);\n"));
	assert_error_at(7, "range 'a': match: ");
	ck_assert_msg(strstr(err, "'ofice'") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "at character 23") != NULL, "%s", err);
}
END_TEST

START_TEST(overlap_names_both)
{
	ck_assert_ptr_null(
	    load(TENANT "ranges = (\n" RANGE("first", "+441235000000", "+441235000999",
		"") ",\n" RANGE("second", "+441235000500", "+441235001499", "") "\n);\n"));
	assert_error_at(7,
	    "range 'second' (+441235000500..+441235001499) overlaps range 'first' "
	    "(+441235000000..+441235000999, line 5)");
}
END_TEST

START_TEST(first_after_last)
{
	ck_assert_ptr_null(
	    load(TENANT "ranges = (\n" RANGE("a", "+441235000999", "+441235000000", "") "\n);\n"));
	assert_error_at(5, "range 'a': ");
	ck_assert_msg(strstr(err, "+441235000999") && strstr(err, "+441235000000"), "%s", err);
}
END_TEST

START_TEST(different_lengths)
{
	ck_assert_ptr_null(
	    load(TENANT "ranges = (\n" RANGE("a", "+441235000000", "+4412350009999", "") "\n);\n"));
	assert_error_at(5, "range 'a': ");
	ck_assert_msg(strstr(err, "+441235000000") && strstr(err, "+4412350009999"), "%s", err);
}
END_TEST

START_TEST(reserved_outside_range)
{
	ck_assert_ptr_null(load(TENANT "ranges = (\n" RANGE(
	    "a", "+441235000000", "+441235000999", "reserved = [ \"+441235001000\" ];") "\n);\n"));
	assert_error_at(6, "range 'a': reserved number +441235001000 is not in the range");
}
END_TEST

START_TEST(duplicate_range_names)
{
	ck_assert_ptr_null(load(TENANT "ranges = (\n" RANGE("a", "+441235000000", "+441235000999",
	    "") ",\n" RANGE("a", "+441235001000", "+441235001999", "") "\n);\n"));
	assert_error_at(7, "range name 'a' is used twice (first at line 5)");
}
END_TEST

START_TEST(range_needs_type_and_bounds)
{
	ck_assert_ptr_null(load(TENANT "ranges = (\n  { name = \"a\"; type = \"sip\"; }\n);\n"));
	assert_error_at(5,
	    "type is \"sip\"; it must be \"calling-plan\", \"operator-connect\" or "
	    "\"direct-routing\"");
	assert_error_at(5, "first is required");
	assert_error_at(5, "last is required");
}
END_TEST

START_TEST(licensing_guids)
{
	struct config *c = load(
	    TENANT "licensing: {\n  calling_plan = [ \"4ed3ff63-69d7-4fb7-b984-5aec7f605ca8\" ];\n"
		   "  teams_phone = [ ];\n};\n");

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_uint_eq(c->licensing.n_calling_plan, 1);
	ck_assert_str_eq(c->licensing.calling_plan[0], "4ed3ff63-69d7-4fb7-b984-5aec7f605ca8");
	ck_assert_uint_eq(c->licensing.n_teams_phone, 0);
	config_free(c);
	ck_assert_ptr_null(load(TENANT "licensing: {\n  teams_phone = [ \"MCOEV\" ];\n};\n"));
	assert_error_at(5, "licensing.teams_phone[0] is not a GUID");
}
END_TEST

START_TEST(tenant_graph_options)
{
	struct config *c
	    = load("tenant: { id = \"t\"; client_id = \"11111111-2222-3333-4444-555555555555\";\n"
		   "  certificate_file = \"/c\"; private_key_file = \"/k\";\n"
		   "  assertion_alg = \"RS256\"; throttle_priority = \"low\"; timeout = 20; };\n");

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_int_eq(c->tenant.assertion_alg, 1);
	ck_assert_str_eq(c->tenant.throttle_priority, "low");
	ck_assert_int_eq(c->tenant.timeout, 20);
	config_free(c);
	ck_assert_ptr_null(load(TENANT "tenant2: { };\n"));
	ck_assert_ptr_null(
	    load("tenant: { id = \"t\"; client_id = \"11111111-2222-3333-4444-555555555555\";\n"
		 "  client_secret_file = \"/s\"; assertion_alg = \"HS256\"; };\n"));
	assert_error_at(2, "tenant.assertion_alg is \"HS256\"; it must be \"PS256\" or \"RS256\"");
}
END_TEST

START_TEST(missing_file)
{
	ck_assert_ptr_null(config_load("/nonexistent/numprovd.conf", err, sizeof(err)));
	ck_assert_msg(
	    strstr(err, "/nonexistent/numprovd.conf: cannot read the file") != NULL, "%s", err);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("load");

	tcase_add_test(tc, example_config_is_valid);
	tcase_add_test(tc, defaults_apply);
	tcase_add_test(tc, syntax_error_has_line);
	tcase_add_test(tc, unknown_key_suggests_closest);
	tcase_add_test(tc, unknown_group_reported);
	tcase_add_test(tc, unknown_key_far_from_all);
	tcase_add_test(tc, wrong_type);
	tcase_add_test(tc, out_of_range);
	tcase_add_test(tc, bad_enum);
	tcase_add_test(tc, retry_max_below_min);
	tcase_add_test(tc, tenant_required_fields);
	tcase_add_test(tc, tenant_urls_must_be_https);
	tcase_add_test(tc, several_errors_at_once);
	tcase_add_test(tc, range_parsed);
	tcase_add_test(tc, rule_error_points_at_token);
	tcase_add_test(tc, overlap_names_both);
	tcase_add_test(tc, first_after_last);
	tcase_add_test(tc, different_lengths);
	tcase_add_test(tc, reserved_outside_range);
	tcase_add_test(tc, duplicate_range_names);
	tcase_add_test(tc, range_needs_type_and_bounds);
	tcase_add_test(tc, missing_file);
	tcase_add_test(tc, snmp_ping_interval);
	tcase_add_test(tc, daemon_user_and_group);
	tcase_add_test(tc, credential_paths_are_absolute);
	tcase_add_test(tc, licensing_guids);
	tcase_add_test(tc, tenant_graph_options);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(config_suite)
