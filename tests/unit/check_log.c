/* log: what reaches stderr (and syslog) is one line without control characters. */
#include "build-config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "testutil.h"

static char path[64];
static int saved_stderr = -1;

/* stderr goes to a scratch file for the test; the first test's output is its own. */
static void
setup(void)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/numprov-log-XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	saved_stderr = dup(2);
	ck_assert_int_ge(saved_stderr, 0);
	ck_assert_int_eq(dup2(fd, 2), 2);
	close(fd);
	log_register(NULL);
	log_init("check_log", LOG_USER, LOG_DEBUG, LOG_DEST_STDERR);
}

static void
teardown(void)
{
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	unlink(path);
	log_close();
}

/* Everything written to stderr so far, NUL-terminated (malloc'd). */
static char *
captured(size_t *len)
{
	FILE *f;
	char *buf;
	long n;

	fflush(stderr);
	f = fopen(path, "rb");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len)
		*len = (size_t)n;
	return buf;
}

/* The one line logged: exactly one newline, at the end; returned without it. */
static char *
one_line(void)
{
	size_t len;
	char *out = captured(&len);

	ck_assert_uint_gt(len, 0);
	ck_assert_msg(out[len - 1] == '\n', "no newline at the end of \"%s\"", out);
	out[len - 1] = '\0';
	ck_assert_msg(!strchr(out, '\n'), "the message was split into lines: \"%s\"", out);
	return out;
}

/* The message part of a stderr line: what follows "] " (or the level, without a token). */
static const char *
message_of(const char *line, const char *after)
{
	const char *m = strstr(line, after);

	ck_assert_msg(m != NULL, "\"%s\" not in \"%s\"", after, line);
	return m + strlen(after);
}

START_TEST(newline_cr_tab_and_controls_are_escaped)
{
	char *line;

	log_info("control", "uid 0: user %s",
	    "a\nb\rc\td\x01"
	    "e\x7f"
	    "f\x1b[31mg");
	line = one_line();
	ck_assert_str_eq(message_of(line, "info [control] "),
	    "uid 0: user a\\x0ab\\x0dc\\x09d\\x01e\\x7ff\\x1b[31mg");
	free(line);
}
END_TEST

START_TEST(a_forged_event_line_stays_inside_its_line)
{
	char *line;

	log_event(LOG_NOTICE, "event=unreserve number=%s uid=%d",
	    "+441235000001\nevent=assign user=mallory number=+441235000002", 0);
	line = one_line();
	ck_assert_str_eq(message_of(line, "notice "),
	    "event=unreserve number=+441235000001\\x0aevent=assign user=mallory "
	    "number=+441235000002 uid=0");
	free(line);
}
END_TEST

START_TEST(every_control_byte_and_only_those)
{
	char in[256], want[1024], *line;
	size_t w = 0;

	/* bytes 1..255 (a NUL would end the string); from 0x80 on, in this order, none
	   starts a well-formed UTF-8 character (each is followed by a byte that cannot
	   continue it): all are escaped */
	for (int c = 1; c < 256; c++)
		in[c - 1] = (char)c;
	in[255] = '\0';
	for (int c = 1; c < 256; c++) {
		if (c < 0x20 || c >= 0x7f)
			w += (size_t)snprintf(want + w, sizeof(want) - w, "\\x%02x", c);
		else
			want[w++] = (char)c;
	}
	want[w] = '\0';
	log_info("t", "%s", in);
	line = one_line();
	ck_assert_str_eq(message_of(line, "info [t] "), want);
	free(line);
}
END_TEST

START_TEST(utf8_passes_unchanged)
{
	static const char text[] = "Z\xc3\xbcrich \xe2\x80\x94 Stra\xc3\x9f"
				   "e \xe2\x98\x8e "
				   "\xf0\x9f\x93\x9e \\x0a stays as typed";
	char *line;

	log_info("directory", "city=\"%s\"", text);
	line = one_line();
	ck_assert_str_eq(message_of(line, "info [directory] "),
	    "city=\"Z\xc3\xbcrich \xe2\x80\x94 Stra\xc3\x9f"
	    "e \xe2\x98\x8e \xf0\x9f\x93\x9e "
	    "\\x0a stays as typed\"");
	free(line);
}
END_TEST

START_TEST(c1_controls_and_unicode_line_separators_are_escaped)
{
	char *line;

	/* U+0085 NEL, U+009B CSI, U+2028, U+2029, a lone surrogate, an overlong '/', a
	   character cut short at the end; U+00A0 and U+2027 next to them stay */
	log_info("t",
	    "a\xc2\x85"
	    "b\xc2\x9b"
	    "c\xe2\x80\xa8"
	    "d\xe2\x80\xa9"
	    "e\xed\xa0\x80"
	    "f\xc0\xaf"
	    "g\xc2\xa0"
	    "h\xe2\x80\xa7"
	    "i\xe2\x80");
	line = one_line();
	ck_assert_str_eq(message_of(line, "info [t] "),
	    "a\\xc2\\x85b\\xc2\\x9bc\\xe2\\x80\\xa8d\\xe2\\x80\\xa9e\\xed\\xa0\\x80f\\xc0\\xaf"
	    "g\xc2\xa0h\xe2\x80\xa7i\\xe2\\x80");
	free(line);
}
END_TEST

START_TEST(the_token_and_log_warn_are_escaped_too)
{
	char *out;
	int lines = 0;

	log_msg(LOG_WARNING, "to\nken", "%s", "x");
	errno = ENOENT;
	log_warn("file", "cannot open %s", "/tmp/a\nb");
	out = captured(NULL);
	ck_assert_ptr_nonnull(strstr(out, "warning [to\\x0aken] x\n"));
	ck_assert_ptr_nonnull(strstr(out, "warning [file] cannot open /tmp/a\\x0ab: "));
	for (const char *c = out; *c; c++)
		lines += *c == '\n';
	ck_assert_int_eq(lines, 2);
	free(out);
}
END_TEST

START_TEST(a_long_message_keeps_whole_escapes)
{
	char in[2000], *line;
	const char *m;
	size_t n;

	memset(in, '\n', sizeof(in) - 1);
	in[sizeof(in) - 1] = '\0';
	log_info("t", "%s", in);
	line = one_line();
	m = message_of(line, "info [t] ");
	n = strlen(m);
	ck_assert_uint_eq(n, 4 * (sizeof(in) - 1));
	for (size_t i = 0; i < n; i += 4)
		ck_assert_msg(strncmp(m + i, "\\x0a", 4) == 0, "at %zu: %.8s", i, m + i);
	free(line);
}
END_TEST

static int got_prio = -1;
static char got_token[64], got_msg[256];

static void
hook(int prio, const char *token, const char *msg)
{
	got_prio = prio;
	snprintf(got_token, sizeof(got_token), "%s", token ? token : "(null)");
	snprintf(got_msg, sizeof(got_msg), "%s", msg);
}

START_TEST(a_registered_callback_gets_the_escaped_text)
{
	char *out;

	log_register(hook);
	log_notice("control", "assign %s", "bob\r\nevent=assign");
	log_register(NULL);
	ck_assert_int_eq(got_prio, LOG_NOTICE);
	ck_assert_str_eq(got_token, "control");
	ck_assert_str_eq(got_msg, "assign bob\\x0d\\x0aevent=assign");
	out = captured(NULL);
	ck_assert_str_eq(out, ""); /* the callback replaces stderr */
	free(out);
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("escape");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, newline_cr_tab_and_controls_are_escaped);
	tcase_add_test(tc, a_forged_event_line_stays_inside_its_line);
	tcase_add_test(tc, every_control_byte_and_only_those);
	tcase_add_test(tc, utf8_passes_unchanged);
	tcase_add_test(tc, c1_controls_and_unicode_line_separators_are_escaped);
	tcase_add_test(tc, the_token_and_log_warn_are_escaped_too);
	tcase_add_test(tc, a_long_message_keeps_whole_escapes);
	tcase_add_test(tc, a_registered_callback_gets_the_escaped_text);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(log_suite)
