/*
 * One event stream: every provisioning event is one struct, formatted into
 * its syslog line by one function (docs/interfaces.md, event lines). Subscribers (syslog, and
 * next the SNMP notifications and status) receive each event as it happens.
 */
#ifndef NUMPROV_EVENTS_H
#define NUMPROV_EVENTS_H

#include <stddef.h>
#include <time.h>

enum np_event_kind {
	NPE_ASSIGN,
	NPE_RELEASE,
	NPE_RETAIN,
	NPE_ADOPT,
	NPE_UNMATCHED,
	NPE_WAITING,
	NPE_EXHAUSTED,
	NPE_DRIFT,
	NPE_SYNC,
	NPE_HOLD,      /* an administrator took a user out of automatic assignment */
	NPE_AUTO,      /* ... and gave them back to it */
	NPE_SETTLED,   /* an unsettled assignment found settled in Teams */
	NPE_RESERVE,   /* an administrator kept a number out of the pool */
	NPE_UNRESERVE, /* ... and put it back */
	/* alarms (monitor.c): once per change of state; SNMP notifications are made of them */
	NPE_RANGE_HIGH,	     /* utilisation reached warn_percent */
	NPE_RANGE_OK,	     /* ... and fell below warn_percent minus the hysteresis */
	NPE_RANGE_EXHAUSTED, /* no number of the range is available */
	NPE_SYNC_FAILED,     /* a round failed after one that did not */
	NPE_SYNC_RECOVERED,  /* the first round that did not fail after one that did */
	NPE__MAX
};

struct np_event {
	enum np_event_kind kind;
	int priority; /* syslog priority; 0 = the kind's default */
	const char *user, *id, *number, *range, *type, *reason, *by;
	const char *city, *office, *usage_location; /* unmatched */
	const char *inventory_user, *teams_user;    /* drift */
	const char *error;			    /* sync */
	time_t quarantine_until;		    /* release: 0 none */
	long retry_in;				    /* waiting */
	int dry_run;
	long uid; /* reserve, unreserve: the administrator's uid (-1: none) */
	/* sync */
	const char *result;
	int full;
	unsigned long users, decided, assigned,
	    released; /* users: in the pages; decided: acted on */
	long duration_ms;
	/* range alarms */
	double utilisation;
	int warn_percent;
	unsigned long long available, size;
	/* sync_failed */
	unsigned long failures;
};

const char *np_event_name(enum np_event_kind k);
/* The line: event=KIND first, then key=value, values quoted when they need it. */
size_t np_event_format(const struct np_event *e, char *buf, size_t len);

typedef void (*np_event_cb)(const struct np_event *e, void *arg);
/* Up to 8 subscribers; returns -1 when full. */
int np_event_subscribe(np_event_cb cb, void *arg);
void np_event_unsubscribe(np_event_cb cb, void *arg);
/* To syslog (through log.h), then to every subscriber. */
void np_event_emit(const struct np_event *e);

#endif
