/* e164: number parsing and normalisation, canonical form, order, ranges. */
#include <string.h>

#include "e164.h"
#include "testutil.h"

static char err[256];

/* Parses in, which must succeed, and checks its canonical text. */
static void
assert_canon(const char *in, const char *want)
{
	struct e164 n;
	char buf[E164_STRLEN];

	err[0] = '\0';
	ck_assert_msg(e164_parse(in, &n, err, sizeof err) == 0, "\"%s\" refused: %s", in, err);
	e164_format(&n, buf, sizeof buf);
	ck_assert_str_eq(buf, want);
}

/* Parses in, which must fail with an error containing each of the words. */
static void
assert_refused(const char *in, const char *w1, const char *w2)
{
	struct e164 n;

	strcpy(err, "untouched");
	ck_assert_msg(
	    e164_parse(in, &n, err, sizeof err) == -1, "\"%s\" accepted", in ? in : "NULL");
	ck_assert_msg(strstr(err, w1) != NULL, "\"%s\" lacks \"%s\"", err, w1);
	if (w2)
		ck_assert_msg(strstr(err, w2) != NULL, "\"%s\" lacks \"%s\"", err, w2);
	ck_assert_ptr_null(strchr(err, '\n'));
}

static struct e164
num(const char *in)
{
	struct e164 n;

	ck_assert_msg(e164_parse(in, &n, err, sizeof err) == 0, "%s", err);
	return n;
}

static struct e164_range
range(const char *first, const char *last)
{
	struct e164_range r;

	ck_assert_msg(e164_range_init(&r, first, last, err, sizeof err) == 0, "%s", err);
	return r;
}

static void
assert_range_refused(const char *first, const char *last, const char *w1, const char *w2)
{
	struct e164_range r;

	strcpy(err, "untouched");
	ck_assert_int_eq(e164_range_init(&r, first, last, err, sizeof err), -1);
	ck_assert_msg(strstr(err, w1) != NULL, "\"%s\" lacks \"%s\"", err, w1);
	if (w2)
		ck_assert_msg(strstr(err, w2) != NULL, "\"%s\" lacks \"%s\"", err, w2);
}

static void
assert_number_at(const struct e164_range *r, uint64_t off, const char *want)
{
	struct e164 n;
	char buf[E164_STRLEN];

	e164_range_number(r, off, &n);
	e164_format(&n, buf, sizeof buf);
	ck_assert_str_eq(buf, want);
}

/* ---- accepted formats ---- */

START_TEST(test_parse_plus_with_spaces)
{
	assert_canon("+44 1235 000123", "+441235000123");
	assert_canon("+441235000123", "+441235000123");
}
END_TEST

START_TEST(test_parse_without_plus)
{
	assert_canon("441235000123", "+441235000123");
	assert_canon("1 212 555 0100", "+12125550100");
}
END_TEST

START_TEST(test_parse_00_prefix)
{
	assert_canon("0044 1235 000123", "+441235000123");
	assert_canon("00-49-30-1234567", "+49301234567");
}
END_TEST

START_TEST(test_parse_visual_separators)
{
	assert_canon("+44-1235-000.123", "+441235000123");
	assert_canon("+1 (212) 555-0100", "+12125550100");
	assert_canon("+33.1.23.45.67.89", "+33123456789");
}
END_TEST

START_TEST(test_parse_trunk_zero_dropped)
{
	assert_canon("+44 (0)1235 000123", "+441235000123");
	assert_canon("+44(0)1235-000.123", "+441235000123");
	assert_canon("0044 (0)1235 000123", "+441235000123");
	assert_canon("+353 (0)1 234 5678", "+35312345678");
}
END_TEST

START_TEST(test_parse_zero_in_brackets_elsewhere_kept)
{
	/* only right after the country code is "(0)" a trunk prefix */
	assert_canon("+44 1235 (0)00123", "+441235000123");
	assert_canon("+44 (01235) 000123", "+4401235000123");
}
END_TEST

START_TEST(test_parse_tel_uri)
{
	assert_canon("tel:+441235000123", "+441235000123");
	assert_canon("TEL:+44-1235-000123", "+441235000123");
	assert_canon("Tel:+44(1235)000.123", "+441235000123");
}
END_TEST

START_TEST(test_parse_tel_uri_with_ext)
{
	assert_canon("tel:+44-1235-000000;ext=100", "+441235000000;ext=100");
	assert_canon("tel:+441235000000;EXT=1-00", "+441235000000;ext=100");
}
END_TEST

START_TEST(test_parse_tel_uri_other_params_ignored)
{
	assert_canon("tel:+441235000000;isub=12345;ext=7", "+441235000000;ext=7");
	assert_canon("tel:+441235000123;isub=abc", "+441235000123");
	assert_canon("tel:+441235000123;foo-bar=x;baz", "+441235000123");
}
END_TEST

START_TEST(test_parse_ext_outside_tel)
{
	assert_canon("+441235000000;ext=100", "+441235000000;ext=100");
	assert_canon("+44 1235 000000 ; ext=100", "+441235000000;ext=100");
	assert_canon("+441235000000;ext=007", "+441235000000;ext=007");
	assert_canon("+441235000000;ext=1234567890", "+441235000000;ext=1234567890");
}
END_TEST

START_TEST(test_parse_surrounding_blanks_trimmed)
{
	assert_canon("  +441235000123 \t\n", "+441235000123");
}
END_TEST

START_TEST(test_parse_length_limits)
{
	assert_canon("+683 12345", "+68312345");
	assert_canon("+881 234 567 890 123", "+881234567890123");
	assert_refused("+683 1234", "has 7 digits", NULL);
}
END_TEST

START_TEST(test_parse_country_codes)
{
	assert_canon("+7 495 123 4567", "+74951234567");
	assert_canon("+800 1234 5678", "+80012345678");
	assert_canon("+808 1234 5678", "+80812345678");
	assert_canon("+383 44 123 456", "+38344123456");
	assert_canon("+870 7712 34567", "+870771234567");
	assert_canon("+998 71 123 4567", "+998711234567");
	assert_canon("+211 912 345 678", "+211912345678");
	assert_canon("+692 625 1234", "+6926251234");
}
END_TEST

/* ---- refusals ---- */

START_TEST(test_refuse_too_few_digits)
{
	struct e164 n;

	ck_assert_int_eq(e164_parse("+44 1235", &n, err, sizeof err), -1);
	ck_assert_str_eq(err, "\"+44 1235\" has 6 digits; an E.164 number has 8 to 15");
}
END_TEST

START_TEST(test_refuse_too_many_digits)
{
	struct e164 n;

	ck_assert_int_eq(e164_parse("+44 1235 000123 45678", &n, err, sizeof err), -1);
	ck_assert_str_eq(
	    err, "\"+44 1235 000123 45678\" has 17 digits; an E.164 number has 8 to 15");
	assert_refused("+4412345678901234", "16 digits", NULL);
}
END_TEST

START_TEST(test_refuse_national_format)
{
	struct e164 n;

	ck_assert_int_eq(e164_parse("01235 000123", &n, err, sizeof err), -1);
	ck_assert_str_eq(
	    err, "\"01235 000123\" is in national format; write it in international form (+44...)");
	assert_refused("(0)1235 000123", "national format", NULL);
}
END_TEST

START_TEST(test_refuse_leading_zero_after_plus)
{
	assert_refused("+0441235000123", "\"+0441235000123\"", "cannot start with 0");
	assert_refused("000441235000123", "cannot start with 0", NULL);
}
END_TEST

START_TEST(test_refuse_unexpected_character)
{
	struct e164 n;

	ck_assert_int_eq(e164_parse("+44x1235000123", &n, err, sizeof err), -1);
	ck_assert_str_eq(err, "\"+44x1235000123\": unexpected character 'x'");
	assert_refused("+44 1235 +000123", "unexpected character '+'", NULL);
	assert_refused("+441235000123 ext 100", "unexpected character 'e'", NULL);
}
END_TEST

START_TEST(test_refuse_blank_inside_tel_uri)
{
	assert_refused("tel:+44 1235 000123", "unexpected character ' '", NULL);
}
END_TEST

START_TEST(test_refuse_unknown_country_code)
{
	struct e164 n;

	ck_assert_int_eq(e164_parse("+999 1234 5678", &n, err, sizeof err), -1);
	ck_assert_str_eq(err, "\"+999 1234 5678\": unknown country code");
	assert_refused("+835 1234 5678", "unknown country code", NULL);
	assert_refused("+28 1234 5678", "unknown country code", NULL);
	assert_refused("+422 123 45678", "unknown country code", NULL);
}
END_TEST

START_TEST(test_refuse_empty_and_null)
{
	assert_refused(NULL, "no number", NULL);
	assert_refused("", "empty", NULL);
	assert_refused("   ", "empty", NULL);
	assert_refused("+", "no digits", NULL);
	assert_refused("tel:", "no digits", NULL);
}
END_TEST

START_TEST(test_refuse_phone_context)
{
	assert_refused(
	    "tel:1234;phone-context=+44", "local number", "\"tel:1234;phone-context=+44\"");
	assert_refused("tel:+441235000123;Phone-Context=example.com", "local number", NULL);
}
END_TEST

START_TEST(test_refuse_bad_extension)
{
	struct e164 n;

	ck_assert_int_eq(e164_parse("+441235000000;ext=12345678901", &n, err, sizeof err), -1);
	ck_assert_str_eq(
	    err, "\"+441235000000;ext=12345678901\": extension must be 1 to 10 digits");
	assert_refused("+441235000000;ext=", "extension must be 1 to 10 digits", NULL);
	assert_refused("+441235000000;ext", "extension must be 1 to 10 digits", NULL);
	assert_refused("+441235000000;ext=1a", "unexpected character 'a'", NULL);
	assert_refused("+441235000000;ext=1;ext=2", "more than one extension", NULL);
	assert_refused("+441235000000;", "empty parameter", NULL);
}
END_TEST

START_TEST(test_refuse_control_bytes_one_line)
{
	assert_refused("+44\n1235000123", "unexpected character 0x0a", "\"+44\\x0a1235000123\"");
	assert_refused("+44\xc3\xa9"
		       "1235000123",
	    "unexpected character 0xc3", NULL);
}
END_TEST

START_TEST(test_error_truncated_and_terminated)
{
	struct e164 n;
	char small[12];

	memset(small, 'z', sizeof small);
	ck_assert_int_eq(e164_parse("+44x1235000123", &n, small, sizeof small), -1);
	ck_assert_uint_eq(strlen(small), sizeof small - 1);
	ck_assert_int_eq(e164_parse("+44x1235000123", &n, NULL, 0), -1);
}
END_TEST

START_TEST(test_error_long_input_quoted_short)
{
	char in[300];

	memset(in, '1', sizeof in - 1);
	in[sizeof in - 1] = '\0';
	assert_refused(in, "...\" has 299 digits", NULL);
	ck_assert_uint_lt(strlen(err), 120);
}
END_TEST

/* ---- canonical form, order, country code ---- */

START_TEST(test_format_truncates_safely)
{
	struct e164 n = num("+441235000000;ext=100");
	char buf[8];

	e164_format(&n, buf, sizeof buf);
	ck_assert_str_eq(buf, "+441235");
	e164_format(&n, buf, 0);
}
END_TEST

START_TEST(test_cmp_order)
{
	struct e164 a = num("+441235000123"), b = num("+441235000124");
	struct e164 shorter = num("+4412350001"), ext = num("+441235000123;ext=1");
	struct e164 ext2 = num("+441235000123;ext=2"), ext10 = num("+441235000123;ext=10");

	ck_assert_int_eq(e164_cmp(&a, &b), -1);
	ck_assert_int_eq(e164_cmp(&b, &a), 1);
	ck_assert_int_eq(e164_cmp(&a, &a), 0);
	ck_assert_int_eq(e164_cmp(&shorter, &a), -1);
	ck_assert_int_eq(e164_cmp(&a, &ext), -1);
	ck_assert_int_eq(e164_cmp(&ext, &ext2), -1);
	ck_assert_int_eq(e164_cmp(&ext2, &ext10), -1);
	ck_assert_int_eq(e164_cmp(&ext, &b), -1);
}
END_TEST

START_TEST(test_country_code_len)
{
	struct e164 us = num("+12125550100"), ru = num("+74951234567");
	struct e164 uk = num("+441235000123"), ie = num("+35312345678");
	struct e164 freephone = num("+80012345678");

	ck_assert_int_eq(e164_country_code_len(&us), 1);
	ck_assert_int_eq(e164_country_code_len(&ru), 1);
	ck_assert_int_eq(e164_country_code_len(&uk), 2);
	ck_assert_int_eq(e164_country_code_len(&ie), 3);
	ck_assert_int_eq(e164_country_code_len(&freephone), 3);
}
END_TEST

/* ---- ranges ---- */

START_TEST(test_range_did)
{
	struct e164_range r = range("+44 1235 000000", "+441235000999");

	ck_assert_int_eq(r.is_ext, 0);
	ck_assert_uint_eq(r.base, 441235000000ULL);
	ck_assert_uint_eq(r.size, 1000);
	assert_number_at(&r, 0, "+441235000000");
	assert_number_at(&r, 123, "+441235000123");
	assert_number_at(&r, 999, "+441235000999");
}
END_TEST

START_TEST(test_range_single_number)
{
	struct e164_range r = range("+441235000123", "tel:+44-1235-000123");

	ck_assert_uint_eq(r.size, 1);
	assert_number_at(&r, 0, "+441235000123");
}
END_TEST

START_TEST(test_range_contains)
{
	struct e164_range r = range("+441235000100", "+441235000199");
	struct e164 in = num("+44 1235 000150"), below = num("+441235000099");
	struct e164 above = num("+441235000200"), longer = num("+4412350001500");
	struct e164 with_ext = num("+441235000150;ext=1");
	uint64_t off = 77;

	ck_assert_int_eq(e164_range_contains(&r, &in, &off), 1);
	ck_assert_uint_eq(off, 50);
	ck_assert_int_eq(e164_range_contains(&r, &below, &off), 0);
	ck_assert_int_eq(e164_range_contains(&r, &above, &off), 0);
	ck_assert_int_eq(e164_range_contains(&r, &longer, &off), 0);
	ck_assert_int_eq(e164_range_contains(&r, &with_ext, &off), 0);
	ck_assert_uint_eq(off, 50);
	ck_assert_int_eq(e164_range_contains(&r, &in, NULL), 1);
}
END_TEST

START_TEST(test_range_ext)
{
	struct e164_range r = range("+441235000000;ext=100", "tel:+44-1235-000000;ext=199");
	struct e164 in = num("+441235000000;ext=142"), other_did = num("+441235000001;ext=142");
	struct e164 plain = num("+441235000000");
	uint64_t off;

	ck_assert_int_eq(r.is_ext, 1);
	ck_assert_uint_eq(r.base, 100);
	ck_assert_uint_eq(r.size, 100);
	assert_number_at(&r, 5, "+441235000000;ext=105");
	assert_number_at(&r, 99, "+441235000000;ext=199");
	ck_assert_int_eq(e164_range_contains(&r, &in, &off), 1);
	ck_assert_uint_eq(off, 42);
	ck_assert_int_eq(e164_range_contains(&r, &other_did, &off), 0);
	ck_assert_int_eq(e164_range_contains(&r, &plain, &off), 0);
}
END_TEST

START_TEST(test_range_ext_zero_padded)
{
	struct e164_range r = range("+441235000000;ext=000", "+441235000000;ext=099");
	struct e164 seven = num("+441235000000;ext=007"), short7 = num("+441235000000;ext=7");
	uint64_t off;

	ck_assert_uint_eq(r.size, 100);
	assert_number_at(&r, 0, "+441235000000;ext=000");
	assert_number_at(&r, 7, "+441235000000;ext=007");
	assert_number_at(&r, 42, "+441235000000;ext=042");
	ck_assert_int_eq(e164_range_contains(&r, &seven, &off), 1);
	ck_assert_uint_eq(off, 7);
	ck_assert_int_eq(e164_range_contains(&r, &short7, &off), 0);
}
END_TEST

START_TEST(test_range_refuse_first_after_last)
{
	assert_range_refused("+441235000999", "+441235000000", "greater",
	    "first \"+441235000999\" is greater than last \"+441235000000\"");
	assert_range_refused("+441235000000;ext=20", "+441235000000;ext=10", "greater", NULL);
}
END_TEST

START_TEST(test_range_refuse_different_lengths)
{
	assert_range_refused("+441235000000", "+4412350009999", "different lengths",
	    "\"+441235000000\" and \"+4412350009999\"");
	assert_range_refused("+441235000000;ext=10", "+441235000000;ext=199", "different lengths",
	    "\"+441235000000;ext=10\" and \"+441235000000;ext=199\"");
}
END_TEST

START_TEST(test_range_refuse_mixed_ext)
{
	assert_range_refused("+441235000000", "+441235000000;ext=199", "extension",
	    "\"+441235000000\" and \"+441235000000;ext=199\"");
	assert_range_refused("+441235000000;ext=100", "+441235000999", "extension", NULL);
}
END_TEST

START_TEST(test_range_refuse_different_dids)
{
	assert_range_refused("+441235000000;ext=100", "+441235000001;ext=199", "one DID",
	    "\"+441235000000;ext=100\" and \"+441235000001;ext=199\"");
}
END_TEST

START_TEST(test_range_refuse_bad_number)
{
	struct e164_range r;

	ck_assert_int_eq(e164_range_init(&r, "+441235000000", "01235 000999", err, sizeof err), -1);
	ck_assert_str_eq(
	    err, "\"01235 000999\" is in national format; write it in international form (+44...)");
	ck_assert_uint_eq(r.size, 0);
	assert_range_refused(NULL, "+441235000999", "no number", NULL);
}
END_TEST

START_TEST(test_range_overlap_did)
{
	struct e164_range a = range("+441235000000", "+441235000999");
	struct e164_range inter = range("+441235000900", "+441235001099");
	struct e164_range inside = range("+441235000500", "+441235000500");
	struct e164_range adjacent = range("+441235001000", "+441235001999");
	struct e164_range longer = range("+4412350000000", "+4412350009999");

	ck_assert_int_eq(e164_range_overlap(&a, &inter), 1);
	ck_assert_int_eq(e164_range_overlap(&inter, &a), 1);
	ck_assert_int_eq(e164_range_overlap(&a, &inside), 1);
	ck_assert_int_eq(e164_range_overlap(&inside, &a), 1);
	ck_assert_int_eq(e164_range_overlap(&a, &a), 1);
	ck_assert_int_eq(e164_range_overlap(&a, &adjacent), 0);
	ck_assert_int_eq(e164_range_overlap(&adjacent, &a), 0);
	ck_assert_int_eq(e164_range_overlap(&a, &longer), 0);
}
END_TEST

START_TEST(test_range_overlap_ext)
{
	struct e164_range a = range("+441235000000;ext=100", "+441235000000;ext=199");
	struct e164_range inter = range("+441235000000;ext=150", "+441235000000;ext=250");
	struct e164_range after = range("+441235000000;ext=200", "+441235000000;ext=299");
	struct e164_range other_did = range("+441235000001;ext=100", "+441235000001;ext=199");
	struct e164_range wider = range("+441235000000;ext=1000", "+441235000000;ext=1999");
	struct e164_range did = range("+441235000000", "+441235000999");

	ck_assert_int_eq(e164_range_overlap(&a, &inter), 1);
	ck_assert_int_eq(e164_range_overlap(&inter, &a), 1);
	ck_assert_int_eq(e164_range_overlap(&a, &after), 0);
	ck_assert_int_eq(e164_range_overlap(&a, &other_did), 0);
	ck_assert_int_eq(e164_range_overlap(&a, &wider), 0);
	ck_assert_int_eq(e164_range_overlap(&a, &did), 0);
	ck_assert_int_eq(e164_range_overlap(&did, &a), 0);
}
END_TEST

static Suite *
e164_suite(void)
{
	Suite *s = suite_create("e164");
	TCase *parse = tcase_create("parse");
	TCase *refuse = tcase_create("refuse");
	TCase *order = tcase_create("order");
	TCase *ranges = tcase_create("range");

	tcase_add_test(parse, test_parse_plus_with_spaces);
	tcase_add_test(parse, test_parse_without_plus);
	tcase_add_test(parse, test_parse_00_prefix);
	tcase_add_test(parse, test_parse_visual_separators);
	tcase_add_test(parse, test_parse_trunk_zero_dropped);
	tcase_add_test(parse, test_parse_zero_in_brackets_elsewhere_kept);
	tcase_add_test(parse, test_parse_tel_uri);
	tcase_add_test(parse, test_parse_tel_uri_with_ext);
	tcase_add_test(parse, test_parse_tel_uri_other_params_ignored);
	tcase_add_test(parse, test_parse_ext_outside_tel);
	tcase_add_test(parse, test_parse_surrounding_blanks_trimmed);
	tcase_add_test(parse, test_parse_length_limits);
	tcase_add_test(parse, test_parse_country_codes);
	tcase_add_test(refuse, test_refuse_too_few_digits);
	tcase_add_test(refuse, test_refuse_too_many_digits);
	tcase_add_test(refuse, test_refuse_national_format);
	tcase_add_test(refuse, test_refuse_leading_zero_after_plus);
	tcase_add_test(refuse, test_refuse_unexpected_character);
	tcase_add_test(refuse, test_refuse_blank_inside_tel_uri);
	tcase_add_test(refuse, test_refuse_unknown_country_code);
	tcase_add_test(refuse, test_refuse_empty_and_null);
	tcase_add_test(refuse, test_refuse_phone_context);
	tcase_add_test(refuse, test_refuse_bad_extension);
	tcase_add_test(refuse, test_refuse_control_bytes_one_line);
	tcase_add_test(refuse, test_error_truncated_and_terminated);
	tcase_add_test(refuse, test_error_long_input_quoted_short);
	tcase_add_test(order, test_format_truncates_safely);
	tcase_add_test(order, test_cmp_order);
	tcase_add_test(order, test_country_code_len);
	tcase_add_test(ranges, test_range_did);
	tcase_add_test(ranges, test_range_single_number);
	tcase_add_test(ranges, test_range_contains);
	tcase_add_test(ranges, test_range_ext);
	tcase_add_test(ranges, test_range_ext_zero_padded);
	tcase_add_test(ranges, test_range_refuse_first_after_last);
	tcase_add_test(ranges, test_range_refuse_different_lengths);
	tcase_add_test(ranges, test_range_refuse_mixed_ext);
	tcase_add_test(ranges, test_range_refuse_different_dids);
	tcase_add_test(ranges, test_range_refuse_bad_number);
	tcase_add_test(ranges, test_range_overlap_did);
	tcase_add_test(ranges, test_range_overlap_ext);
	suite_add_tcase(s, parse);
	suite_add_tcase(s, refuse);
	suite_add_tcase(s, order);
	suite_add_tcase(s, ranges);
	return s;
}

NP_CHECK_MAIN(e164_suite)
