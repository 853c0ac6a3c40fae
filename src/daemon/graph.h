/*
 * The Microsoft Graph HTTP client: libcurl's multi interface on the libevent
 * loop, at most sync.parallel requests in flight, OAuth client-credentials
 * tokens (secret or certificate assertion) cached and renewed before expiry,
 * 429/5xx/transport retries with backoff, a timeout on every request, TLS
 * verification always on. Connections are kept and reused, TLS sessions
 * resumed; a 429 (or a 503 with Retry-After) on a Teams admin request holds
 * every Teams admin request not yet sent until Retry-After has passed.
 */
#ifndef NUMPROV_GRAPH_H
#define NUMPROV_GRAPH_H

#include <time.h>

#include <stddef.h>

struct config;
struct event_base;
struct graph;

/*
 * A POST whose answer, once lost after it may have arrived, must not be
 * retried here (assignNumber): the caller checks Teams before sending it
 * again. libcurl's own resend on a reused connection found dead before any
 * answer is harmless: the same assignment of the same number twice is one,
 * and a no to the copy is checked against numberAssignments (teams.c).
 */
#define GRAPH_POST_ONCE 0x1
/*
 * New work (the first request of deciding a user): waits until every request
 * queued without it has gone out, so the work begun (an assignment, its
 * operation's polls) finishes before more is begun.
 */
#define GRAPH_LATER 0x2

struct graph_result {
	long status;   /* HTTP status of the last attempt; 0 when no response came */
	int ambiguous; /* a GRAPH_POST_ONCE whose fate is unknown: check before sending again */
	int attempts;
	const char *body; /* NUL-terminated */
	size_t len;
	const char *location; /* the Location header, or NULL */
	char client_request_id[37];
	char request_id[64];
	char error_code[64]; /* Graph's error.code, the token endpoint's error, or "transport" */
	char error_message[256]; /* Graph's error.message, or curl's error text */
};

typedef void (*graph_cb)(const struct graph_result *r, void *arg);

struct graph_stats {
	unsigned long requests, attempts, retries, throttled, token_fetches, failures;
	int in_flight, max_in_flight;
	/* Graph's health: since when no attempt got an answer (0: the last one did), the
	 * last failure in one line, and when the next attempt goes (0: none scheduled) */
	time_t failing_since, next_try;
	char last_error[256];
};

/* Tunables that tests shrink; the defaults are the product's. */
struct graph_tuning {
	int retry_base_ms;     /* first backoff after a 5xx or transport error (1000) */
	int retry_cap_ms;      /* longest backoff (60000) */
	int max_attempts;      /* attempts of one request, 429s included (8) */
	int retry_after_cap_s; /* a Retry-After above this is cut to it (600) */
};

struct graph *graph_new(
    struct event_base *base, const struct config *cfg, char *err, size_t errlen);
/*
 * After a reload: sync.parallel, tenant.timeout and tenant.throttle_priority take
 * effect for the next requests. The tenant, its credentials and the URLs do not
 * (the daemon says a restart is needed).
 */
void graph_set_config(struct graph *g, const struct config *cfg);
void graph_free(struct graph *g);
void graph_tune(struct graph *g, const struct graph_tuning *t);
struct event_base *graph_base(const struct graph *g);

/* url: absolute (nextLink, deltaLink, Location) or a path under graph_url ("/v1.0/..."). */
int graph_get(struct graph *g, const char *url, graph_cb cb, void *arg);
int graph_get_flags(struct graph *g, const char *url, unsigned flags, graph_cb cb, void *arg);
int graph_post(
    struct graph *g, const char *url, const char *json, unsigned flags, graph_cb cb, void *arg);

/*
 * Stopping: requests waiting for a slot, a token or a retry are answered now
 * with error_code "stopping"; exchanges on the wire finish (or time out).
 * Nothing new is accepted afterwards.
 */
void graph_stop(struct graph *g);
int graph_stopped(const struct graph *g);

/* Requests accepted and not yet answered through their callback. */
int graph_pending(const struct graph *g);
/* Whether an outage (Graph not answering) is going on and has been logged once. */
int graph_outage_told(const struct graph *g);
void graph_get_stats(const struct graph *g, struct graph_stats *out);

/* Graph's error body {"error":{"code","message"}} or the token endpoint's; 0 when found. */
int graph_parse_error(
    const char *body, size_t len, char *code, size_t codelen, char *msg, size_t msglen);

/*
 * The token endpoint's answer: 0 with *token, the access token (malloc'd; wipe it before
 * freeing it), and *life, its lifetime in seconds from expires_in (a number or a string):
 * 3599 when missing, 60 when not above zero, never above GRAPH_TOKEN_LIFE_MAX. -1 and
 * *token NULL when there is no access token fit for an Authorization header (missing,
 * empty, longer than GRAPH_TOKEN_MAX, or with a space, a control character or a byte
 * beyond ASCII in it).
 */
#define GRAPH_TOKEN_LIFE_MAX 86400
#define GRAPH_TOKEN_MAX 8000 /* bytes: a longer one would not fit the Authorization header */
int graph_parse_token(const char *body, size_t len, char **token, long *life);

/* Retry-After: delta-seconds or an HTTP date; seconds from now, or -1. */
long graph_parse_retry_after(const char *value, long now);

/*
 * Names resolved in Graph and kept until the next configuration load
 * (graph_set_config empties it): a voice routing policy's id, say.
 */
const char *graph_cache_get(const struct graph *g, const char *key);
void graph_cache_put(struct graph *g, const char *key, const char *value);
void graph_cache_drop(struct graph *g, const char *key);
void graph_cache_clear(struct graph *g);
/* Changes whenever the cache is emptied: a lookup begun before is not stored. */
unsigned graph_cache_generation(const struct graph *g);
/* Where a caller keeps the lookups it has on the wire for this graph (teams.c). */
void **graph_lookups(struct graph *g);

#endif
