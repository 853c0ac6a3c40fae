/*
 * The one event loop: libevent underneath, and in this module everything that
 * ties other libraries and the process to it — libcurl's multi interface
 * (sockets and timer), signals, timers. numprovd's components (Graph client,
 * provisioning, control socket, and next the SNMP agent) take its event base.
 */
#ifndef NUMPROV_LOOP_H
#define NUMPROV_LOOP_H

#include <curl/curl.h>

struct event_base;
struct loop;
struct loop_timer;
struct loop_curl;

typedef void (*loop_cb)(void *arg);
typedef void (*loop_signal_cb)(int sig, void *arg);

struct loop *loop_new(void);
/* Frees the signal and periodic events; components are freed by their owners first. */
void loop_free(struct loop *l);
struct event_base *loop_base(const struct loop *l);
/* Runs until loop_stop. */
int loop_run(struct loop *l);
/* Stop after grace_s seconds (0: at the end of this turn). */
void loop_stop(struct loop *l, int grace_s);

/* Up to 8 signals and 8 periodic callbacks, for the life of the loop. */
int loop_signal(struct loop *l, int sig, loop_signal_cb cb, void *arg);
int loop_every(struct loop *l, int seconds, loop_cb cb, void *arg);

/* A one-shot timer, started again as needed. */
struct loop_timer *loop_timer_new(struct event_base *base, loop_cb cb, void *arg);
void loop_timer_start(struct loop_timer *t, long ms); /* restarts a pending one */
void loop_timer_stop(struct loop_timer *t);
void loop_timer_free(struct loop_timer *t);

/*
 * libcurl's multi handle on the loop: its sockets and its timer drive
 * curl_multi_socket_action; progress(arg) runs after each action so the owner
 * can read finished transfers (curl_multi_info_read).
 */
struct loop_curl *loop_curl_new(struct event_base *base, CURLM *multi, loop_cb progress, void *arg);
void loop_curl_free(struct loop_curl *c);

#endif
