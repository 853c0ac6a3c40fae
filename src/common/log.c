#include "build-config.h"

#include "log.h"

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

/*
 * How many bytes at s must be escaped (0: the character at s is safe as it is).
 * Unsafe: the C0 controls and DEL, the C1 controls (U+0080-U+009F, which some
 * terminals take for escape sequences and some readers for a line break), the
 * Unicode line and paragraph separators (U+2028, U+2029), and any byte that does
 * not start a well-formed UTF-8 character (escaped one at a time).
 */
static size_t
unsafe_len(const unsigned char *s, size_t *safe)
{
	unsigned cp;
	size_t n, i;

	*safe = 1;
	if (*s < 0x80)
		return *s < 0x20 || *s == 0x7f;
	if (*s >= 0xc2 && *s <= 0xdf)
		n = 2, cp = *s & 0x1fu;
	else if (*s >= 0xe0 && *s <= 0xef)
		n = 3, cp = *s & 0x0fu;
	else if (*s >= 0xf0 && *s <= 0xf4)
		n = 4, cp = *s & 0x07u;
	else
		return 1;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 1; /* the NUL ends it too */
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
	    || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 1; /* overlong, a surrogate, beyond Unicode */
	if (cp <= 0x9f || cp == 0x2028 || cp == 0x2029)
		return n;
	*safe = n;
	return 0;
}

static int
has_control(const char *s)
{
	size_t safe;

	while (s && *s) {
		if (unsafe_len((const unsigned char *)s, &safe))
			return 1;
		s += safe;
	}
	return 0;
}

/*
 * in with every unsafe byte (unsafe_len) written as \xNN (log.h). Whatever a
 * caller formats into a message (a request argument, a directory attribute, a
 * Graph error text), it stays one line without control characters: no forged
 * line in syslog, no terminal escape on stderr. out must hold 4 * strlen(in) + 1.
 */
static const char *
log_escape(const char *in, char *out)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)in;
	char *o = out;
	size_t bad, safe;

	while (*s) {
		bad = unsafe_len(s, &safe);
		if (!bad) {
			memcpy(o, s, safe);
			o += safe;
			s += safe;
			continue;
		}
		for (; bad > 0; bad--, s++) {
			*o++ = '\\';
			*o++ = 'x';
			*o++ = hex[*s >> 4];
			*o++ = hex[*s & 0xf];
		}
	}
	*o = '\0';
	return out;
}

/* The one way out: every message and token is escaped here. */
static void
log_emit(int prio, const char *token, const char *msg)
{
	char emsg[4 * LOG_MSG_MAX + 1], tok[64], etok[4 * sizeof(tok) + 1];

	if (!lg.cb && prio > lg.level)
		return;
	if (has_control(msg))
		msg = log_escape(msg, emsg);
	if (has_control(token)) {
		snprintf(tok, sizeof(tok), "%s", token); /* tokens are short words */
		token = log_escape(tok, etok);
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
