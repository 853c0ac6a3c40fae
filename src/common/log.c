#include "build-config.h"

#include "log.h"
#include "utf8.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct {
	int level;
	int dest;
	int opened;
	log_cb cb;
} lg = { LOG_INFO, LOG_DEST_STDERR, 0, NULL };

void
log_init(const char *ident, int facility, int level, int dest)
{
	log_close();
	lg.level = level;
	lg.dest = dest;
	if (dest & LOG_DEST_SYSLOG) {
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
		lg.opened = 1;
	}
}

void
log_set_level(int level)
{
	lg.level = level;
}

void
log_register(log_cb cb)
{
	lg.cb = cb;
}

void
log_close(void)
{
	if (lg.opened)
		closelog();
	lg.opened = 0;
}

static void
log_stderr(int prio, const char *token, const char *msg)
{
	static const char *names[]
	    = { "emerg", "alert", "crit", "error", "warning", "notice", "info", "debug" };
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	if (token)
		fprintf(stderr, "%s.%03ld %s [%s] %s\n", stamp, ts.tv_nsec / 1000000L,
		    names[prio & 7], token, msg);
	else
		fprintf(
		    stderr, "%s.%03ld %s %s\n", stamp, ts.tv_nsec / 1000000L, names[prio & 7], msg);
}

/* Whether s holds a byte that must be escaped (utf8.h, utf8_safe_len). */
static int
has_control(const char *s)
{
	size_t n;

	while (s && *s) {
		if (!(n = utf8_safe_len(s)))
			return 1;
		s += n;
	}
	return 0;
}

/* The one way out: every message and token is escaped here. */
static void
log_emit(int prio, const char *token, const char *msg)
{
	char emsg[4 * LOG_MSG_MAX + 4], tok[64], etok[4 * sizeof(tok) + 4]; /* never cut */

	if (!lg.cb && prio > lg.level)
		return;
	if (has_control(msg))
		msg = utf8_escape(msg, emsg, sizeof(emsg));
	if (has_control(token)) {
		snprintf(tok, sizeof(tok), "%s", token); /* tokens are short words */
		token = utf8_escape(tok, etok, sizeof(etok));
	}
	if (lg.cb) {
		lg.cb(prio, token, msg);
		return;
	}
	if (lg.dest & LOG_DEST_SYSLOG) {
		if (token)
			syslog(prio, "%s: %s", token, msg);
		else
			syslog(prio, "%s", msg);
	}
	if (lg.dest & LOG_DEST_STDERR)
		log_stderr(prio, token, msg);
}

void
log_vmsg(int prio, const char *token, const char *fmt, va_list ap)
{
	char msg[LOG_MSG_MAX];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_emit(prio, token, msg);
}

void
log_msg(int prio, const char *token, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, token, fmt, ap);
	va_end(ap);
}

void
log_warn(const char *token, const char *fmt, ...)
{
	char msg[LOG_MSG_MAX];
	int saved = errno;
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	n = strlen(msg);
	snprintf(msg + n, sizeof(msg) - n, ": %s", strerror(saved));
	log_emit(LOG_WARNING, token, msg);
}

void
log_event(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, NULL, fmt, ap);
	va_end(ap);
}

int
log_facility_lookup(const char *name)
{
	static const struct {
		const char *name;
		int facility;
	} tab[] = { { "daemon", LOG_DAEMON }, { "user", LOG_USER }, { "local0", LOG_LOCAL0 },
		{ "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
		{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
		{ "local7", LOG_LOCAL7 }, { "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV } };

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcasecmp(name, tab[i].name) == 0)
			return tab[i].facility;
	return -1;
}

int
log_level_lookup(const char *name)
{
	static const char *names[]
	    = { "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug" };

	for (int i = 0; i < 8; i++)
		if (strcasecmp(name, names[i]) == 0)
			return i;
	if (strcasecmp(name, "error") == 0)
		return LOG_ERR;
	if (strcasecmp(name, "warn") == 0)
		return LOG_WARNING;
	return -1;
}
