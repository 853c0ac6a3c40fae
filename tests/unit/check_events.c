/*
 * The event stream: one formatter for every event line (key=value, quoting and
 * escaping), and the subscribers each emitted event reaches (the hook the SNMP
 * notifications and status use).
 */
#include "build-config.h"

#include <string.h>
#include <syslog.h>

#include "events.h"
#include "log.h"
#include "testutil.h"

static char line[2048];

static const char *
fmt(const struct np_event *e)
{
	np_event_format(e, line, sizeof(line));
	return line;
}

START_TEST(assign_line_in_order)
{
	struct np_event e = { .kind = NPE_ASSIGN,
		.user = "alice@contoso.com",
		.id = "5f3e",
		.number = "+441235000123",
		.range = "abingdon-office-1",
		.type = "direct-routing" };

	ck_assert_str_eq(fmt(&e),
	    "event=assign user=alice@contoso.com id=5f3e number=+441235000123 "
	    "range=abingdon-office-1 type=direct-routing");
}
END_TEST

START_TEST(values_are_quoted_when_they_need_it)
{
	struct np_event e = { .kind = NPE_UNMATCHED,
		.user = "bob@contoso.com",
		.city = "Park Lane",
		.office = "",
		.usage_location = "a\"b\\c=d",
		.reason = "no-match" };

	ck_assert_str_eq(fmt(&e),
	    "event=unmatched user=bob@contoso.com city=\"Park Lane\" office=\"\" "
	    "usage_location=\"a\\\"b\\\\c=d\" reason=no-match");
}
END_TEST

START_TEST(release_with_quarantine_and_dry_run)
{
	struct np_event e = { .kind = NPE_RELEASE,
		.user = "u",
		.number = "+1",
		.range = "",
		.reason = "deleted",
		.quarantine_until = 86400 * 2,
		.dry_run = 1 };

	ck_assert_str_eq(fmt(&e),
	    "event=release user=u number=+1 range=- reason=deleted quarantine_until=1970-01-03 "
	    "dry_run=yes");
}
END_TEST

START_TEST(sync_line)
{
	struct np_event e = { .kind = NPE_SYNC,
		.result = "failed",
		.full = 1,
		.users = 3,
		.decided = 2,
		.assigned = 1,
		.released = 0,
		.duration_ms = 42,
		.error = "cannot record a page" };

	ck_assert_str_eq(fmt(&e),
	    "event=sync result=failed full=yes users=3 decided=2 assigned=1 released=0 "
	    "duration_ms=42 error=\"cannot record a page\"");
}
END_TEST

START_TEST(reserve_names_the_uid)
{
	struct np_event e = { .kind = NPE_RESERVE, .number = "+442080000001", .uid = 1000 };

	ck_assert_str_eq(fmt(&e), "event=reserve number=+442080000001 uid=1000");
}
END_TEST

START_TEST(a_long_value_is_cut_not_overrun)
{
	char big[4000], small[64];
	struct np_event e = { .kind = NPE_RETAIN, .user = big, .reason = "moved" };
	size_t n;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = np_event_format(&e, small, sizeof(small));
	ck_assert_uint_lt(n, sizeof(small));
	ck_assert_uint_eq(strlen(small), n);
	ck_assert(strncmp(small, "event=retain user=xxx", 21) == 0);
}
END_TEST

START_TEST(a_cut_value_ends_on_a_character_and_the_line_still_parses)
{
	char city[3000], small[120];
	struct np_event e = { .kind = NPE_UNMATCHED,
		.user = "u@x",
		.city = city,
		.office = "Soho",
		.reason = "no-match" };
	size_t n;

	city[0] = '\0';
	for (int i = 0; i < 900; i++)
		strcat(city, "\xc3\xa9 "); /* é and a space: quoted, two bytes a character */
	n = np_event_format(&e, small, sizeof(small));
	ck_assert_uint_eq(strlen(small), n);
	ck_assert_int_eq(small[n - 1], '"');	      /* the quote is closed */
	ck_assert_ptr_null(strstr(small, "office=")); /* no key started that cannot end */
	/* no broken character: every byte after a lead byte is a continuation */
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)small[i] & 0xe0) == 0xc0)
			ck_assert_int_eq((unsigned char)small[i + 1] & 0xc0, 0x80);
}
END_TEST

static int seen[2];
static char seen_line[256];

static void
on_event(const struct np_event *e, void *arg)
{
	seen[*(int *)arg]++;
	np_event_format(e, seen_line, sizeof(seen_line));
}

static void
quiet(int prio, const char *token, const char *msg)
{
	(void)prio;
	(void)token;
	(void)msg;
}

START_TEST(subscribers_receive_every_event_until_they_leave)
{
	static int a = 0, b = 1;
	struct np_event e = { .kind = NPE_EXHAUSTED, .range = "london" };

	log_register(quiet);
	ck_assert_int_eq(np_event_subscribe(on_event, &a), 0);
	ck_assert_int_eq(np_event_subscribe(on_event, &b), 0);
	np_event_emit(&e);
	ck_assert_int_eq(seen[0], 1);
	ck_assert_int_eq(seen[1], 1);
	ck_assert_str_eq(seen_line, "event=exhausted range=london");
	np_event_unsubscribe(on_event, &a);
	np_event_emit(&e);
	ck_assert_int_eq(seen[0], 1);
	ck_assert_int_eq(seen[1], 2);
	np_event_unsubscribe(on_event, &b);
	np_event_emit(&e);
	ck_assert_int_eq(seen[1], 2);
	/* at most 8 at once */
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(np_event_subscribe(on_event, &a), 0);
	ck_assert_int_eq(np_event_subscribe(on_event, &b), -1);
	for (int i = 0; i < 8; i++)
		np_event_unsubscribe(on_event, &a);
	log_register(NULL);
}
END_TEST

static Suite *
events_suite(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("lines");

	tcase_add_test(tc, assign_line_in_order);
	tcase_add_test(tc, values_are_quoted_when_they_need_it);
	tcase_add_test(tc, release_with_quarantine_and_dry_run);
	tcase_add_test(tc, sync_line);
	tcase_add_test(tc, reserve_names_the_uid);
	tcase_add_test(tc, a_long_value_is_cut_not_overrun);
	tcase_add_test(tc, a_cut_value_ends_on_a_character_and_the_line_still_parses);
	tcase_add_test(tc, subscribers_receive_every_event_until_they_leave);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(events_suite)
