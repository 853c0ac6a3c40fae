/* The rule language of docs/interfaces.md, rules (B3, B4): parsing, evaluation, errors, explain. */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "rule.h"

/* Parse (must succeed), evaluate, and check that explain reaches the same verdict. */
static int
verdict(const char *text, const struct rule_attrs *a)
{
	struct rule_error err;
	struct rule *r = rule_parse(text, &err);
	char buf[2048];
	int v;

	ck_assert_msg(r != NULL, "'%s' did not parse: %s at %zu ('%s')", text, err.message,
	    err.offset, err.token);
	v = rule_eval(r, a);
	ck_assert_int_eq(rule_explain(r, a, buf, sizeof buf), v);
	rule_free(r);
	return v;
}

/* The rule must be refused at offset with token, and the message must contain part. */
static void
refused(const char *text, size_t offset, const char *token, const char *part)
{
	struct rule_error err;
	struct rule *r = rule_parse(text, &err);

	ck_assert_msg(r == NULL, "'%s' parsed", text);
	ck_assert_msg(strstr(err.message, part) != NULL, "'%s': message '%s' lacks '%s'", text,
	    err.message, part);
	ck_assert_uint_eq(err.offset, offset);
	ck_assert_str_eq(err.token, token);
}

static struct rule_attrs
user(const char *city, const char *office)
{
	struct rule_attrs a;

	memset(&a, 0, sizeof a);
	a.v[RA_CITY] = city;
	a.v[RA_OFFICE] = office;
	return a;
}

/* ---- B4: the seed's own syntax ---------------------------------------- */

START_TEST(test_b4_seed_syntax_ascii_quotes)
{
	const char *rule = "Office = \"Park Lane\" AND City = \"LONDON\"";
	struct rule_attrs in = user("London", "Park Lane"), out = user("Leeds", "Park Lane");

	ck_assert_int_eq(verdict(rule, &in), 1);
	ck_assert_int_eq(verdict(rule, &out), 0);
}
END_TEST

START_TEST(test_b4_seed_syntax_typographic_quotes)
{
	const char *rule = "Office = \xe2\x80\x9cPark Lane\xe2\x80\x9d AND City = "
			   "\xe2\x80\x9cLONDON\xe2\x80\x9d";
	struct rule_attrs in = user("london", "park lane"), out = user("London", "Park Road");

	ck_assert_int_eq(verdict(rule, &in), 1);
	ck_assert_int_eq(verdict(rule, &out), 0);
}
END_TEST

START_TEST(test_single_and_german_quotes)
{
	struct rule_attrs a = user("München", "Zentrale");

	ck_assert_int_eq(verdict("city = 'münchen' AND office = 'Zentrale'", &a), 1);
	ck_assert_int_eq(verdict("city = \xe2\x80\x9eM\xc3\xbcnchen\xe2\x80\x9c", &a), 1);
	ck_assert_int_eq(verdict("city = '\"M\xc3\xbcnchen\"'", &a), 0);
}
END_TEST

START_TEST(test_double_equals_is_equals)
{
	struct rule_attrs a = user("Abingdon", NULL);

	ck_assert_int_eq(verdict("city == \"Abingdon\"", &a), 1);
	ck_assert_int_eq(verdict("city==\"Oxford\"", &a), 0);
}
END_TEST

START_TEST(test_escapes_in_strings)
{
	struct rule_attrs a = user("a \"b\" \\ c", "it's");

	ck_assert_int_eq(verdict("city = \"a \\\"b\\\" \\\\ c\"", &a), 1);
	ck_assert_int_eq(verdict("office = 'it\\'s'", &a), 1);
	/* Any other backslash is an ordinary character. */
	a.v[RA_CITY] = "CONTOSO\\jo";
	ck_assert_int_eq(verdict("city = \"contoso\\jo\"", &a), 1);
}
END_TEST

START_TEST(test_whitespace_between_tokens)
{
	struct rule_attrs a = user("A", "B");

	const char *rule = " \tcity\n=\r\n\"a\"AND(office=\"b\")OR\tcity IN(\"x\",\"y\") ";

	ck_assert_int_eq(verdict(rule, &a), 1);
	/* A no-break space pasted from a web page counts as a space. */
	ck_assert_int_eq(verdict("city\xc2\xa0=\xc2\xa0\"a\"", &a), 1);
}
END_TEST

/* ---- precedence, NOT, parentheses --------------------------------------- */

START_TEST(test_and_binds_tighter_than_or)
{
	const char *rule = "city=\"a\" OR city=\"b\" AND office=\"x\"";
	/* a OR (b AND x) holds for these two; (a OR b) AND x holds for neither. */
	struct rule_attrs a_y = user("a", "y"), a_missing = user("a", NULL);
	struct rule_attrs b_y = user("b", "y"), b_x = user("b", "x");

	ck_assert_int_eq(verdict(rule, &a_y), 1);
	ck_assert_int_eq(verdict(rule, &a_missing), 1);
	ck_assert_int_eq(verdict(rule, &b_y), 0);
	ck_assert_int_eq(verdict(rule, &b_x), 1);
}
END_TEST

START_TEST(test_parentheses_override_precedence)
{
	const char *rule = "(city=\"a\" OR city=\"b\") AND office=\"x\"";
	struct rule_attrs a_y = user("a", "y"), a_x = user("a", "x"), c_x = user("c", "x");

	ck_assert_int_eq(verdict(rule, &a_y), 0);
	ck_assert_int_eq(verdict(rule, &a_x), 1);
	ck_assert_int_eq(verdict(rule, &c_x), 0);
	ck_assert_int_eq(verdict("((((city = \"c\"))))", &c_x), 1);
}
END_TEST

START_TEST(test_not_binds_to_one_factor)
{
	/* (NOT a) AND x, not NOT (a AND x). */
	const char *rule = "NOT city=\"a\" AND office=\"x\"";
	struct rule_attrs b_y = user("b", "y"), b_x = user("b", "x"), a_x = user("a", "x");

	ck_assert_int_eq(verdict(rule, &b_y), 0);
	ck_assert_int_eq(verdict(rule, &b_x), 1);
	ck_assert_int_eq(verdict(rule, &a_x), 0);
	ck_assert_int_eq(verdict("NOT (city=\"a\" AND office=\"x\")", &b_y), 1);
	ck_assert_int_eq(verdict("NOT NOT city = \"b\"", &b_y), 1);
}
END_TEST

/* ---- operators ----------------------------------------------------------- */

START_TEST(test_not_equal)
{
	struct rule_attrs a = user("London", NULL);

	ck_assert_int_eq(verdict("city != \"london\"", &a), 0);
	ck_assert_int_eq(verdict("city != \"Paris\"", &a), 1);
	ck_assert_int_eq(verdict("office != \"\"", &a), 0);
	ck_assert_int_eq(verdict("office != \"HQ\"", &a), 1);
}
END_TEST

START_TEST(test_in_list)
{
	const char *rule = "city IN (\"London\", \"Paris\", \"Zürich\")";
	struct rule_attrs paris = user(" PARIS ", NULL), zurich = user("ZÜRICH", NULL);
	struct rule_attrs rome = user("Rome", NULL), none = user(NULL, NULL);

	ck_assert_int_eq(verdict(rule, &paris), 1);
	ck_assert_int_eq(verdict(rule, &zurich), 1);
	ck_assert_int_eq(verdict(rule, &rome), 0);
	ck_assert_int_eq(verdict(rule, &none), 0);
	ck_assert_int_eq(verdict("city IN ('x', '')", &none), 1);
	ck_assert_int_eq(verdict("city IN ('Rome')", &rome), 1);
}
END_TEST

START_TEST(test_startswith)
{
	struct rule_attrs a;

	memset(&a, 0, sizeof a);
	a.v[RA_UPN] = "  Admin.jo@contoso.com";
	ck_assert_int_eq(verdict("upn STARTSWITH \"admin.\"", &a), 1);
	ck_assert_int_eq(verdict("upn STARTSWITH \"  ADMIN\"", &a), 1);
	ck_assert_int_eq(verdict("upn STARTSWITH \"jo\"", &a), 0);
	ck_assert_int_eq(verdict("upn STARTSWITH \"admin.jo@contoso.com.uk\"", &a), 0);
	ck_assert_int_eq(verdict("upn STARTSWITH \"\"", &a), 1);
	ck_assert_int_eq(verdict("city STARTSWITH \"\"", &a), 1);
	ck_assert_int_eq(verdict("city STARTSWITH \"x\"", &a), 0);
	/* Trailing spaces of a prefix are part of it. */
	a.v[RA_OFFICE] = "Office1";
	ck_assert_int_eq(verdict("office STARTSWITH \"office \"", &a), 0);
	ck_assert_int_eq(verdict("office STARTSWITH \"office\"", &a), 1);
}
END_TEST

/* ---- case and spaces ------------------------------------------------------ */

START_TEST(test_keywords_case_insensitive)
{
	struct rule_attrs a = user("a", "b");

	ck_assert_int_eq(verdict("city = \"a\" and not office = \"x\"", &a), 1);
	ck_assert_int_eq(verdict("city = \"z\" Or office In (\"b\")", &a), 1);
	ck_assert_int_eq(verdict("city startsWith \"A\" aNd NoT city = \"b\"", &a), 1);
}
END_TEST

START_TEST(test_attribute_names_case_insensitive)
{
	struct rule_attrs a = user("Leeds", NULL);

	a.v[RA_USAGE_LOCATION] = "GB";
	ck_assert_int_eq(verdict("CITY = \"leeds\"", &a), 1);
	ck_assert_int_eq(verdict("City = \"leeds\" AND Usage_Location = \"gb\"", &a), 1);
	ck_assert_int_eq(verdict("USAGELOCATION = \"GB\"", &a), 1);
}
END_TEST

START_TEST(test_values_case_insensitive_ascii)
{
	struct rule_attrs a = user("LoNdOn", "Park Lane");

	ck_assert_int_eq(verdict("city = \"london\"", &a), 1);
	ck_assert_int_eq(verdict("city = \"LONDON\"", &a), 1);
	ck_assert_int_eq(verdict("office = \"PARK LANE\"", &a), 1);
	/* Spaces inside the value still count. */
	ck_assert_int_eq(verdict("office = \"ParkLane\"", &a), 0);
}
END_TEST

START_TEST(test_values_case_insensitive_utf8)
{
	struct rule_attrs a = user("Zürich", NULL);

	ck_assert_int_eq(verdict("city = \"ZÜRICH\"", &a), 1);
	ck_assert_int_eq(verdict("city = \"Zurich\"", &a), 0);
	ck_assert(rule_text_equal("MÜNCHEN", "münchen"));
	ck_assert(rule_text_equal("Île-de-France", "ÎLE-DE-FRANCE"));
	ck_assert(rule_text_equal("ΑΘΗΝΑ", "αθηνα"));
	ck_assert(rule_text_equal("Οδός", "ΟΔΌΣ")); /* final sigma */
	ck_assert(rule_text_equal("МОСКВА", "москва"));
	ck_assert(rule_text_equal("ŁÓDŹ", "łódź"));
	ck_assert(!rule_text_equal("Łódź", "Lodz"));
	ck_assert(!rule_text_equal("ΑΘΗΝΑ", "ΑΘΗΝΑΙ"));
}
END_TEST

START_TEST(test_invalid_utf8_compares_bytes)
{
	ck_assert(rule_text_equal("\xff", "\xff"));
	ck_assert(!rule_text_equal("\xff", "\xfe"));
	ck_assert(rule_text_equal("a\xff"
				  "B",
	    "A\xff"
	    "b"));
	/* A lone lead byte is not the start of the character it would have begun. */
	ck_assert(!rule_text_equal("\xc3", "\xc3\xa9"));
	/* Overlong '/' is not '/'. */
	ck_assert(!rule_text_equal("\xc0\xaf", "/"));
}
END_TEST

START_TEST(test_surrounding_spaces_ignored)
{
	struct rule_attrs a = user("\t London  ", "  ");

	ck_assert_int_eq(verdict("city = \" london \"", &a), 1);
	ck_assert_int_eq(verdict("city = \"London\"", &a), 1);
	ck_assert_int_eq(verdict("office = \"\"", &a), 1);
	ck_assert(rule_text_equal("\xc2\xa0Leeds\xc2\xa0", "leeds"));
	ck_assert(rule_text_equal(" ", ""));
}
END_TEST

START_TEST(test_missing_attribute_equals_empty)
{
	struct rule_attrs none;
	struct rule *r = rule_parse("department = \"\"", NULL);

	memset(&none, 0, sizeof none);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(rule_eval(r, &none), 1);
	ck_assert_int_eq(rule_eval(r, NULL), 1);
	rule_free(r);
	ck_assert_int_eq(verdict("department = \"Sales\"", &none), 0);
	ck_assert_int_eq(verdict("department != \"Sales\"", &none), 1);
	ck_assert(rule_text_equal(NULL, ""));
	ck_assert(rule_text_equal(NULL, "  "));
	ck_assert(!rule_text_equal(NULL, "x"));
}
END_TEST

/* ---- attribute names ------------------------------------------------------ */

START_TEST(test_attr_lookup_canonical_names)
{
	char name[32];
	int i;

	for (i = 0; i < RA__MAX; i++) {
		const char *n = rule_attr_name((enum rule_attr)i);

		ck_assert_ptr_nonnull(n);
		ck_assert_int_eq(rule_attr_lookup(n, strlen(n)), i);
	}
	ck_assert_str_eq(rule_attr_name(RA_USAGE_LOCATION), "usage_location");
	ck_assert_str_eq(rule_attr_name(RA_EXT1 + 6), "extension_attribute7");
	ck_assert_str_eq(rule_attr_name(RA_EXT15), "extension_attribute15");
	for (i = 1; i <= 15; i++) {
		snprintf(name, sizeof name, "extensionAttribute%d", i);
		ck_assert_int_eq(rule_attr_lookup(name, strlen(name)), RA_EXT1 + i - 1);
	}
	ck_assert_ptr_null(rule_attr_name(RA__MAX));
}
END_TEST

START_TEST(test_attr_lookup_graph_aliases)
{
	static const struct {
		const char *name;
		int attr;
	} cases[] = {
		{ "officeLocation", RA_OFFICE },
		{ "office_location", RA_OFFICE },
		{ "OFFICELOCATION", RA_OFFICE },
		{ "usageLocation", RA_USAGE_LOCATION },
		{ "companyName", RA_COMPANY },
		{ "company_name", RA_COMPANY },
		{ "jobTitle", RA_JOB_TITLE },
		{ "employeeType", RA_EMPLOYEE_TYPE },
		{ "userPrincipalName", RA_UPN },
		{ "user_principal_name", RA_UPN },
		{ "UPN", RA_UPN },
		{ "Extension_Attribute3", RA_EXT1 + 2 },
		{ "extension_attribute0", -1 },
		{ "extension_attribute16", -1 },
		{ "extension_attribute01", -1 },
		{ "extension_attribute", -1 },
		{ "mail", -1 },
		{ "", -1 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *n = cases[i].name;

		ck_assert_msg(rule_attr_lookup(n, strlen(n)) == cases[i].attr, "%s", n);
	}
	/* Only len bytes count: the name need not end there. */
	ck_assert_int_eq(rule_attr_lookup("city = \"x\"", 4), RA_CITY);
	ck_assert_int_eq(rule_attr_lookup(NULL, 0), -1);
}
END_TEST

START_TEST(test_aliases_in_rules)
{
	struct rule_attrs a = user(NULL, "Park Lane");

	a.v[RA_COMPANY] = "Contoso";
	a.v[RA_EXT1 + 4] = "voice";
	ck_assert_int_eq(
	    verdict("officeLocation = \"park lane\" AND companyName = \"CONTOSO\"", &a), 1);
	ck_assert_int_eq(verdict("extensionAttribute5 = \"Voice\"", &a), 1);
	ck_assert_int_eq(verdict("extension_attribute4 = \"Voice\"", &a), 0);
}
END_TEST

/* ---- errors ----------------------------------------------------------------- */

START_TEST(test_error_unknown_attribute_suggests)
{
	refused("ctiy = \"x\"", 0, "ctiy", "unknown attribute 'ctiy' (did you mean 'city'?)");
	refused("city = \"x\" AND ofice = \"y\"", 15, "ofice", "(did you mean 'office'?)");
	refused("usage_locaton = \"GB\"", 0, "usage_locaton", "did you mean 'usage_location'?");
	refused("Städte = \"x\"", 0, "Städte", "unknown attribute 'Städte'");
}
END_TEST

START_TEST(test_error_unknown_attribute_without_suggestion)
{
	struct rule_error err;

	ck_assert_ptr_null(rule_parse("colour = \"red\"", &err));
	ck_assert_str_eq(err.message, "unknown attribute 'colour'");
	refused("extension_attribute16 = \"x\"", 0, "extension_attribute16", "numbered 1 to 15");
}
END_TEST

START_TEST(test_error_expected_operator)
{
	refused("city \"London\"", 5, "\"London\"", "expected an operator");
	refused("city", 4, "end of rule", "after 'city'");
	refused("city LIKE \"x\"", 5, "LIKE", "(=, !=, IN or STARTSWITH)");
}
END_TEST

START_TEST(test_error_expected_string)
{
	refused("city = London", 7, "London", "expected a string in quotes after '='");
	refused("city =", 6, "end of rule", "expected a string after '='");
	refused("city STARTSWITH (\"a\")", 16, "(", "expected a string after 'STARTSWITH'");
}
END_TEST

START_TEST(test_error_unterminated_string)
{
	refused("city = \"Lon", 7, "\"Lon", "unterminated string");
	refused("city = \"Lon\\\"", 7, "\"Lon\\\"", "unterminated string");
	refused("Office = \xe2\x80\x9cPark Lane", 9, "\xe2\x80\x9cPark Lane",
	    "unterminated string (no closing \xe2\x80\x9d)");
}
END_TEST

START_TEST(test_error_missing_paren)
{
	refused("(city = \"a\"", 11, "end of rule", "missing ')' to close the '(' at character 1");
	refused("(city = \"a\" office = \"b\")", 12, "office", "expected AND, OR or ')'");
	refused("city = \"a\")", 10, ")", "without a matching '('");
}
END_TEST

START_TEST(test_error_trailing_tokens)
{
	refused("city = \"a\" office = \"b\"", 11, "office",
	    "after the end of the rule (missing AND or OR?)");
	refused("city = \"a\" = \"b\"", 11, "=", "unexpected '=' after the end of the rule");
}
END_TEST

START_TEST(test_error_empty_rule)
{
	struct rule_error err;

	refused("", 0, "end of rule", "empty rule");
	refused(" \t\n", 3, "end of rule", "empty rule");
	ck_assert_ptr_null(rule_parse(NULL, &err));
	ck_assert_str_eq(err.message, "empty rule");
	ck_assert_ptr_null(rule_parse("", NULL)); /* no error wanted: no crash either */
}
END_TEST

START_TEST(test_error_in_list)
{
	refused("city IN ()", 9, ")", "empty IN list");
	refused("city IN \"a\"", 8, "\"a\"", "expected '(' after IN");
	refused("city IN (\"a\",)", 13, ")", "expected a string after ','");
	refused("city IN (\"a\" \"b\")", 13, "\"b\"", "expected ',' or ')'");
	refused("city IN (\"a\"", 12, "end of rule", "missing ')' to close the IN list");
}
END_TEST

START_TEST(test_error_dangling_operators)
{
	refused("city = \"a\" AND", 14, "end of rule",
	    "expected an attribute name, '(' or NOT after 'AND'");
	refused("NOT", 3, "end of rule", "after 'NOT'");
	refused("AND city = \"a\"", 0, "AND", "expected an attribute name, '(' or NOT");
	refused("city = \"a\" OR OR city = \"b\"", 14, "OR", "after 'OR'");
}
END_TEST

START_TEST(test_error_foreign_operators)
{
	refused("city = \"a\" && office = \"b\"", 11, "&&", "(write AND)");
	refused("city = \"a\" || office = \"b\"", 11, "||", "(write OR)");
	refused("city <> \"a\"", 5, "<>", "write != for 'not equal'");
	refused("!city = \"a\"", 0, "!", "write NOT");
}
END_TEST

START_TEST(test_error_nesting_limit)
{
	static char text[40000];
	struct rule_error err;
	struct rule *r;
	int i, n;

	/* 64 levels are allowed. */
	n = 0;
	for (i = 0; i < 64; i++)
		text[n++] = '(';
	n += sprintf(text + n, "city = \"a\"");
	for (i = 0; i < 64; i++)
		text[n++] = ')';
	text[n] = '\0';
	r = rule_parse(text, &err);
	ck_assert_msg(r != NULL, "%s", err.message);
	rule_free(r);
	/* 65 are not, and nothing overflows when the rule goes on much deeper. */
	refused("((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("
		"city = \"a\")))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))",
	    64, "(", "nested too deeply");
	memset(text, '(', 8000);
	text[8000] = '\0';
	refused(text, 64, "(", "nested too deeply");
	for (i = 0; i < 2000; i++)
		memcpy(text + 4 * i, "NOT ", 4);
	strcpy(text + 8000, "city = \"a\"");
	ck_assert_ptr_null(rule_parse(text, &err));
	ck_assert_uint_eq(err.offset, 256);
	ck_assert_str_eq(err.token, "NOT");
}
END_TEST

START_TEST(test_error_length_limit)
{
	static char text[9000];
	struct rule_error err;
	struct rule *r;
	size_t n = strlen("city = \"");

	/* Exactly 8192 bytes are fine, one more is not. */
	memcpy(text, "city = \"", n);
	memset(text + n, 'x', 8192 - n - 1);
	text[8191] = '"';
	text[8192] = '\0';
	r = rule_parse(text, &err);
	ck_assert_msg(r != NULL, "%s", err.message);
	rule_free(r);
	text[8191] = 'x';
	text[8192] = '"';
	text[8193] = '\0';
	ck_assert_ptr_null(rule_parse(text, &err));
	ck_assert_ptr_nonnull(strstr(err.message, "too long"));
	ck_assert_uint_eq(err.offset, 8192);
}
END_TEST

START_TEST(test_error_token_truncated)
{
	char text[200];
	struct rule_error err;

	memset(text, 'q', 100);
	strcpy(text + 100, " = \"x\"");
	ck_assert_ptr_null(rule_parse(text, &err));
	ck_assert_uint_lt(strlen(err.token), sizeof err.token);
	ck_assert_ptr_nonnull(strstr(err.token, "..."));
	ck_assert_uint_gt(strlen(err.message), 0);
	/* A cut never splits a UTF-8 character: 'é' is two bytes. */
	memset(text, 0, sizeof text);
	strcpy(text, "city = \"");
	for (int i = 0; i < 40; i++)
		strcat(text, "\xc3\xa9");
	ck_assert_ptr_null(rule_parse(text, &err));
	ck_assert_int_eq(strlen(err.token) % 2, 0); /* '"' + n * 2 bytes + "..." is even */
}
END_TEST

/* ---- explain ------------------------------------------------------------------ */

START_TEST(test_explain_shows_each_verdict)
{
	struct rule *r = rule_parse("city = \"Abingdon\" AND office = \"Office 1\"", NULL);
	struct rule_attrs a = user("abingdon", NULL);
	char buf[512];

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(rule_explain(r, &a, buf, sizeof buf), 0);
	ck_assert_str_eq(buf,
	    "city = \"Abingdon\" [city is \"abingdon\": yes] AND "
	    "office = \"Office 1\" [office is not set: no] => no match");
	a.v[RA_OFFICE] = " office 1";
	ck_assert_int_eq(rule_explain(r, &a, buf, sizeof buf), 1);
	ck_assert_ptr_nonnull(strstr(buf, "[office is \" office 1\": yes] => match"));
	rule_free(r);
}
END_TEST

START_TEST(test_explain_groups_not_and_lists)
{
	struct rule *r = rule_parse("NOT (city IN ('a', 'b') OR upn startswith 'x') AND "
				    "(officeLocation != 'y' or city = 'c')",
	    NULL);
	struct rule_attrs a = user("b", "y");
	char buf[1024];

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(rule_explain(r, &a, buf, sizeof buf), 0);
	ck_assert_str_eq(buf,
	    "NOT (city IN (\"a\", \"b\") [city is \"b\": yes] OR upn STARTSWITH \"x\" "
	    "[upn is not set: no]) [NOT: no] AND (office != \"y\" [office is \"y\": no] OR "
	    "city = \"c\" [city is \"b\": no]) [no] => no match");
	rule_free(r);
}
END_TEST

START_TEST(test_explain_escapes_values)
{
	struct rule *r = rule_parse("city = 'say \"hi\"'", NULL);
	struct rule_attrs a = user("a\tb\\\xff", NULL);
	char buf[256];

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(rule_explain(r, &a, buf, sizeof buf), 0);
	ck_assert_str_eq(
	    buf, "city = \"say \\\"hi\\\"\" [city is \"a\\x09b\\\\\\xff\": no] => no match");
	rule_free(r);
}
END_TEST

START_TEST(test_explain_small_buffers)
{
	struct rule *r = rule_parse("city = \"Zürich\" OR office IN (\"a\", \"b\", \"c\")", NULL);
	struct rule_attrs a = user("ZÜRICH", "b");
	char full[512], buf[512];
	size_t len, n;

	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(rule_explain(r, &a, full, sizeof full), 1);
	n = strlen(full);
	for (len = 1; len <= n + 1; len++) {
		memset(buf, 'Z', sizeof buf);
		ck_assert_int_eq(rule_explain(r, &a, buf, len), 1);
		ck_assert_uint_lt(strlen(buf), len);
		ck_assert_int_eq(buf[len], 'Z'); /* nothing written past len */
		if (len > n)
			ck_assert_str_eq(buf, full);
		else if (len >= 4)
			ck_assert_str_eq(buf + strlen(buf) - 3, "...");
	}
	ck_assert_int_eq(rule_explain(r, &a, NULL, 0), 1);
	rule_free(r);
}
END_TEST

/* ---- robustness ---------------------------------------------------------------- */

START_TEST(test_long_or_chain)
{
	static char text[8192];
	struct rule_attrs a = user("c500", NULL);
	struct rule *r;
	size_t n = 0;
	int i;

	/* 500 alternatives: flat lists, so neither parsing nor freeing recurses 500 deep. */
	for (i = 0; i < 500; i++)
		n += (size_t)snprintf(
		    text + n, sizeof text - n, "%scity='c%d'", i ? " OR " : "", i + 1);
	r = rule_parse(text, NULL);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(rule_eval(r, &a), 1);
	a.v[RA_CITY] = "c501";
	ck_assert_int_eq(rule_eval(r, &a), 0);
	rule_free(r);
	rule_free(NULL);
}
END_TEST

static Suite *
rule_suite(void)
{
	Suite *s = suite_create("rule");
	TCase *syntax = tcase_create("syntax");
	TCase *compare = tcase_create("compare");
	TCase *errors = tcase_create("errors");
	TCase *explain = tcase_create("explain");

	tcase_add_test(syntax, test_b4_seed_syntax_ascii_quotes);
	tcase_add_test(syntax, test_b4_seed_syntax_typographic_quotes);
	tcase_add_test(syntax, test_single_and_german_quotes);
	tcase_add_test(syntax, test_double_equals_is_equals);
	tcase_add_test(syntax, test_escapes_in_strings);
	tcase_add_test(syntax, test_whitespace_between_tokens);
	tcase_add_test(syntax, test_and_binds_tighter_than_or);
	tcase_add_test(syntax, test_parentheses_override_precedence);
	tcase_add_test(syntax, test_not_binds_to_one_factor);
	tcase_add_test(syntax, test_keywords_case_insensitive);
	tcase_add_test(syntax, test_attribute_names_case_insensitive);
	tcase_add_test(syntax, test_attr_lookup_canonical_names);
	tcase_add_test(syntax, test_attr_lookup_graph_aliases);
	tcase_add_test(syntax, test_aliases_in_rules);
	tcase_add_test(syntax, test_long_or_chain);
	suite_add_tcase(s, syntax);

	tcase_add_test(compare, test_not_equal);
	tcase_add_test(compare, test_in_list);
	tcase_add_test(compare, test_startswith);
	tcase_add_test(compare, test_values_case_insensitive_ascii);
	tcase_add_test(compare, test_values_case_insensitive_utf8);
	tcase_add_test(compare, test_invalid_utf8_compares_bytes);
	tcase_add_test(compare, test_surrounding_spaces_ignored);
	tcase_add_test(compare, test_missing_attribute_equals_empty);
	suite_add_tcase(s, compare);

	tcase_add_test(errors, test_error_unknown_attribute_suggests);
	tcase_add_test(errors, test_error_unknown_attribute_without_suggestion);
	tcase_add_test(errors, test_error_expected_operator);
	tcase_add_test(errors, test_error_expected_string);
	tcase_add_test(errors, test_error_unterminated_string);
	tcase_add_test(errors, test_error_missing_paren);
	tcase_add_test(errors, test_error_trailing_tokens);
	tcase_add_test(errors, test_error_empty_rule);
	tcase_add_test(errors, test_error_in_list);
	tcase_add_test(errors, test_error_dangling_operators);
	tcase_add_test(errors, test_error_foreign_operators);
	tcase_add_test(errors, test_error_nesting_limit);
	tcase_add_test(errors, test_error_length_limit);
	tcase_add_test(errors, test_error_token_truncated);
	suite_add_tcase(s, errors);

	tcase_add_test(explain, test_explain_shows_each_verdict);
	tcase_add_test(explain, test_explain_groups_not_and_lists);
	tcase_add_test(explain, test_explain_escapes_values);
	tcase_add_test(explain, test_explain_small_buffers);
	suite_add_tcase(s, explain);
	return s;
}

NP_CHECK_MAIN(rule_suite)
