#include "build-config.h"

#include "loop.h"

#include <event2/event.h>
#include <stdlib.h>

#define LOOP_MAX_EVENTS 16

struct loop {
	struct event_base *base;
	struct event *ev[LOOP_MAX_EVENTS];
	size_t n;
	struct sig {
		loop_signal_cb cb;
		void *arg;
	} sigs[LOOP_MAX_EVENTS];
	struct every {
		loop_cb cb;
		void *arg;
	} every[LOOP_MAX_EVENTS];
};

struct loop *
loop_new(void)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (l && !(l->base = event_base_new())) {
		free(l);
		return NULL;
	}
	return l;
}

void
loop_free(struct loop *l)
{
	if (!l)
		return;
	while (l->n > 0)
		event_free(l->ev[--l->n]);
	event_base_free(l->base);
	free(l);
}

struct event_base *
loop_base(const struct loop *l)
{
	return l->base;
}

int
loop_run(struct loop *l)
{
	return event_base_dispatch(l->base);
}

void
loop_stop(struct loop *l, int grace_s)
{
	struct timeval tv = { grace_s, 0 };

	event_base_loopexit(l->base, grace_s > 0 ? &tv : NULL);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sig *s = arg;

	(void)what;
	s->cb((int)sig, s->arg);
}

int
loop_signal(struct loop *l, int sig, loop_signal_cb cb, void *arg)
{
	struct event *ev;

	if (l->n == LOOP_MAX_EVENTS)
		return -1;
	l->sigs[l->n] = (struct sig) { cb, arg };
	if (!(ev = evsignal_new(l->base, sig, on_signal, &l->sigs[l->n]))
	    || event_add(ev, NULL) < 0) {
		if (ev)
			event_free(ev);
		return -1;
	}
	l->ev[l->n++] = ev;
	return 0;
}

static void
on_every(evutil_socket_t fd, short what, void *arg)
{
	struct every *e = arg;

	(void)fd;
	(void)what;
	e->cb(e->arg);
}

int
loop_every(struct loop *l, int seconds, loop_cb cb, void *arg)
{
	struct timeval tv = { seconds, 0 };
	struct event *ev;

	if (l->n == LOOP_MAX_EVENTS)
		return -1;
	l->every[l->n] = (struct every) { cb, arg };
	if (!(ev = event_new(l->base, -1, EV_PERSIST, on_every, &l->every[l->n]))
	    || event_add(ev, &tv) < 0) {
		if (ev)
			event_free(ev);
		return -1;
	}
	l->ev[l->n++] = ev;
	return 0;
}

/* ---- one-shot timers ---------------------------------------------------- */

struct loop_timer {
	struct event *ev;
	loop_cb cb;
	void *arg;
};

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct loop_timer *t = arg;

	(void)fd;
	(void)what;
	t->cb(t->arg);
}

struct loop_timer *
loop_timer_new(struct event_base *base, loop_cb cb, void *arg)
{
	struct loop_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->cb = cb;
	t->arg = arg;
	if (!(t->ev = evtimer_new(base, on_timer, t))) {
		free(t);
		return NULL;
	}
	return t;
}

void
loop_timer_start(struct loop_timer *t, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(t->ev, &tv);
}

void
loop_timer_stop(struct loop_timer *t)
{
	evtimer_del(t->ev);
}

void
loop_timer_free(struct loop_timer *t)
{
	if (!t)
		return;
	event_free(t->ev);
	free(t);
}

/* ---- libcurl's multi interface ----------------------------------------- */

struct loop_curl {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	loop_cb progress;
	void *arg;
};

static void
on_curl_socket(evutil_socket_t fd, short kind, void *arg)
{
	struct loop_curl *c = arg;
	int running,
	    action
	    = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);

	curl_multi_socket_action(c->multi, fd, action, &running);
	c->progress(c->arg);
}

static int
curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct loop_curl *c = userp;
	struct event *ev = socketp;
	short kind;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (ev) {
			event_free(ev);
			curl_multi_assign(c->multi, s, NULL);
		}
		return 0;
	}
	kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0)
	    | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	if (ev) {
		event_del(ev);
		event_assign(ev, c->base, s, kind, on_curl_socket, c);
	} else {
		if (!(ev = event_new(c->base, s, kind, on_curl_socket, c)))
			return -1;
		curl_multi_assign(c->multi, s, ev);
	}
	return event_add(ev, NULL) < 0 ? -1 : 0;
}

static void
on_curl_timer(evutil_socket_t fd, short kind, void *arg)
{
	struct loop_curl *c = arg;
	int running;

	(void)fd;
	(void)kind;
	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	c->progress(c->arg);
}

static int
curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct loop_curl *c = userp;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

	(void)multi;
	if (timeout_ms < 0)
		evtimer_del(c->timer);
	else
		evtimer_add(c->timer, &tv);
	return 0;
}

struct loop_curl *
loop_curl_new(struct event_base *base, CURLM *multi, loop_cb progress, void *arg)
{
	struct loop_curl *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	*c = (struct loop_curl) { base, multi, NULL, progress, arg };
	if (!(c->timer = evtimer_new(base, on_curl_timer, c))) {
		free(c);
		return NULL;
	}
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
	curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERDATA, c);
	return c;
}

void
loop_curl_free(struct loop_curl *c)
{
	if (!c)
		return;
	evtimer_del(c->timer);
	event_free(c->timer);
	free(c);
}
