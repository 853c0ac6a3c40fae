#include "build-config.h"

#include "events.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

static const struct {
	const char *name;
	int priority;
} kinds[NPE__MAX] = {
	[NPE_ASSIGN] = { "assign", LOG_NOTICE },
	[NPE_RELEASE] = { "release", LOG_NOTICE },
	[NPE_RETAIN] = { "retain", LOG_INFO },
	[NPE_ADOPT] = { "adopt", LOG_NOTICE },
	[NPE_UNMATCHED] = { "unmatched", LOG_WARNING },
	[NPE_WAITING] = { "waiting", LOG_NOTICE },
	[NPE_EXHAUSTED] = { "exhausted", LOG_ERR },
	[NPE_DRIFT] = { "drift", LOG_WARNING },
	[NPE_SYNC] = { "sync", LOG_INFO },
	[NPE_HOLD] = { "hold", LOG_NOTICE },
	[NPE_AUTO] = { "auto", LOG_NOTICE },
	[NPE_SETTLED] = { "settled", LOG_NOTICE },
	[NPE_RESERVE] = { "reserve", LOG_NOTICE },
	[NPE_UNRESERVE] = { "unreserve", LOG_NOTICE },
	[NPE_RANGE_HIGH] = { "range_high", LOG_WARNING },
	[NPE_RANGE_OK] = { "range_ok", LOG_NOTICE },
	[NPE_RANGE_EXHAUSTED] = { "range_exhausted", LOG_ERR },
	[NPE_SYNC_FAILED] = { "sync_failed", LOG_ERR },
	[NPE_SYNC_RECOVERED] = { "sync_recovered", LOG_NOTICE },
};

const char *
np_event_name(enum np_event_kind k)
{
	return (unsigned)k < NPE__MAX ? kinds[k].name : "unknown";
}

struct line {
	char *buf;
	size_t len, used;
	int full; /* a value was cut: no further key is started, so the line still parses */
};

/*
 * key=value; the value is quoted when empty or when it holds a space, a quote,
 * '=' or a backslash, with '"' and '\' escaped inside. Control bytes are
 * escaped by log.c for every line, this one included.
 */
static void
kv(struct line *l, const char *key, const char *value)
{
	size_t start;
	int quote, cut = 0;

	if (!value || l->full)
		return;
	quote = !*value || strpbrk(value, " \t\"=\\") != NULL;
	/* the key, its quotes and one byte of value must fit, or the key is not started */
	if (l->used + (l->used ? 1 : 0) + strlen(key) + 1 + (quote ? 2 : 0) + 2 > l->len) {
		l->full = 1;
		return;
	}
	l->used += (size_t)snprintf(l->buf + l->used, l->len - l->used, "%s%s=%s",
	    l->used ? " " : "", key, quote ? "\"" : "");
	start = l->used;
	for (; *value; value++) {
		size_t w = (*value == '"' || *value == '\\') ? 2 : 1;
		if (l->used + w + (quote ? 1 : 0) + 1 > l->len) {
			cut = 1;
			break;
		}
		if (w == 2)
			l->buf[l->used++] = '\\';
		l->buf[l->used++] = *value;
	}
	if (cut) {
		l->full = 1;
		/* stopped inside a UTF-8 character: its first bytes go too */
		if (((unsigned char)*value & 0xc0) == 0x80) {
			while (
			    l->used > start && ((unsigned char)l->buf[l->used - 1] & 0xc0) == 0x80)
				l->used--;
			if (l->used > start && ((unsigned char)l->buf[l->used - 1] & 0xc0) == 0xc0)
				l->used--;
		}
	}
	if (quote)
		l->buf[l->used++] = '"';
	l->buf[l->used] = '\0';
}

static void
kv_num(struct line *l, const char *key, long v)
{
	char t[24];
	snprintf(t, sizeof(t), "%ld", v);
	kv(l, key, t);
}

static void
kv_ull(struct line *l, const char *key, unsigned long long v)
{
	char t[24];
	snprintf(t, sizeof(t), "%llu", v);
	kv(l, key, t);
}

size_t
np_event_format(const struct np_event *e, char *buf, size_t len)
{
	struct line l = { buf, len, 0, 0 };
	char until[32];

	if (!len)
		return 0;
	buf[0] = '\0';
	kv(&l, "event", np_event_name(e->kind));
	if (e->kind == NPE_SYNC) {
		kv(&l, "result", e->result ? e->result : "success");
		kv(&l, "full", e->full ? "yes" : "no");
		kv_num(&l, "users", (long)e->users);
		kv_num(&l, "decided", (long)e->decided);
		kv_num(&l, "assigned", (long)e->assigned);
		kv_num(&l, "released", (long)e->released);
		kv_num(&l, "duration_ms", e->duration_ms);
		if (e->error && *e->error)
			kv(&l, "error", e->error);
		return l.used < len ? l.used : len - 1;
	}
	if (e->kind == NPE_RANGE_HIGH || e->kind == NPE_RANGE_OK
	    || e->kind == NPE_RANGE_EXHAUSTED) {
		char u[32];
		snprintf(u, sizeof(u), "%.1f", e->utilisation);
		kv(&l, "range", e->range);
		kv(&l, "utilisation", u);
		kv_num(&l, "warn_percent", e->warn_percent);
		kv_ull(&l, "available", e->available);
		kv_ull(&l, "size", e->size);
		return l.used < len ? l.used : len - 1;
	}
	if (e->kind == NPE_SYNC_FAILED || e->kind == NPE_SYNC_RECOVERED) {
		kv(&l, "result", e->result);
		kv_ull(&l, "failures", e->failures);
		if (e->error && *e->error)
			kv(&l, "error", e->error);
		return l.used < len ? l.used : len - 1;
	}
	kv(&l, "user", e->user);
	kv(&l, "id", e->id);
	kv(&l, "number", e->number);
	if (e->range)
		kv(&l, "range", *e->range ? e->range : "-");
	kv(&l, "type", e->type);
	kv(&l, "city", e->city);
	kv(&l, "office", e->office);
	kv(&l, "usage_location", e->usage_location);
	kv(&l, "inventory_user", e->inventory_user);
	if (e->teams_user)
		kv(&l, "teams_user", *e->teams_user ? e->teams_user : "-");
	kv(&l, "reason", e->reason);
	if (e->quarantine_until) {
		struct tm tm;
		strftime(until, sizeof(until), "%Y-%m-%d", gmtime_r(&e->quarantine_until, &tm));
		kv(&l, "quarantine_until", until);
	}
	if (e->kind == NPE_WAITING)
		kv_num(&l, "retry_in", e->retry_in);
	kv(&l, "by", e->by);
	if (e->kind == NPE_RESERVE || e->kind == NPE_UNRESERVE)
		kv_num(&l, "uid", e->uid);
	if (e->dry_run)
		kv(&l, "dry_run", "yes");
	return l.used < len ? l.used : len - 1;
}

static struct {
	np_event_cb cb;
	void *arg;
} subs[8];

int
np_event_subscribe(np_event_cb cb, void *arg)
{
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (!subs[i].cb) {
			subs[i].cb = cb;
			subs[i].arg = arg;
			return 0;
		}
	return -1;
}

void
np_event_unsubscribe(np_event_cb cb, void *arg)
{
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (subs[i].cb == cb && subs[i].arg == arg)
			subs[i].cb = NULL;
}

void
np_event_emit(const struct np_event *e)
{
	char line[1536];
	int prio = e->priority		   ? e->priority
	    : (unsigned)e->kind < NPE__MAX ? kinds[e->kind].priority
					   : LOG_INFO;

	np_event_format(e, line, sizeof(line));
	log_event(prio, "%s", line);
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (subs[i].cb)
			subs[i].cb(e, subs[i].arg);
}
