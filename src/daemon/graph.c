#include "build-config.h"

#include "graph.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <malloc.h>
#include <event2/event.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "utf8.h"

#define BODY_MAX (64u << 20) /* a response larger than this is cut off: no page is that big */
#define LOCATION_MAX 4095    /* bytes of a Location header kept */
#define TOKEN_MARGIN 300     /* renew a token this long before it expires, or at half its life */

struct graph;

struct greq {
	struct graph *g;
	struct greq *next;
	const char *method;
	char *url, *body;
	unsigned flags;
	int is_token;
	int teams; /* a Teams admin request: held by the tenant's throttle */
	graph_cb cb;
	void *arg;
	int attempts, auth_retried;
	unsigned token_gen; /* the token this attempt carried */
	long long sent_ms;  /* CLOCK_MONOTONIC ms when the attempt went out */
	int reached;	    /* the attempt got a connection through (TLS done, or reused) */
	CURL *easy;
	CURLSH *share; /* the share easy was given (g->share then) */
	struct curl_slist *hdrs;
	struct event *retry_timer;
	struct greq *parked_next; /* in the list of requests waiting for a retry */
	int outage_wait;	  /* parked for the outage's step, not for its own retry */
	struct greq *wire_next;	  /* in the list of exchanges on the wire */
	char *resp;
	size_t resp_len, resp_cap;
	char *location; /* the Location header (most answers have none: no room kept) */
	char retry_after[64], request_id[64], crid[37];
	char curl_err[CURL_ERROR_SIZE];
};

/* A name looked up in Graph once per configuration load (a policy's id). */
struct gcache {
	struct gcache *next;
	char *key, *value;
};

struct graph {
	struct event_base *base;
	CURLM *multi;
	CURLSH *share;	      /* TLS sessions, resumed by every request's new easy handle */
	long long trust_ms;   /* CLOCK_MONOTONIC ms of the last trust reload, 0: none */
	struct gcache *cache; /* answers kept until the next configuration load */
	void *lookups;	      /* teams.c's lookups on the wire (graph_lookups) */
	unsigned cache_gen;   /* counts graph_cache_clear: an answer from before is not kept */
	struct loop_curl *lc; /* the multi handle on the event loop */
	char *graph_url, *token_url, *scope, *client_id, *secret, *ca_file, *proxy;
	char *priority;
	struct auth_cert *cert;
	/* the credential files, read again after Entra refused what they held */
	char *secret_file, *cert_file, *key_file;
	int cred_refused, cred_unreadable;
	/* an outage is told once: later failures of the same kind go to debug */
	int outage_told;
	/*
	 * Graph out of reach (no answer at all: refused, no name, TLS refused, timed
	 * out). suspect: the last attempt got none; one request at a time (the probe)
	 * goes then, none before probe_at, the others wait in the queue. down: a probe
	 * used all its attempts; what waited failed, and a request that comes before the
	 * next probe's step fails at once (one that comes while a probe is on the wire
	 * waits for its answer). Any answer ends both. probe_fails counts the attempts
	 * without an answer in a row: the step of the backoff.
	 */
	int suspect, down, probe_fails;
	long long probe_at;   /* CLOCK_MONOTONIC ms */
	long long step_start; /* when the last step was taken */
	int token_told;	      /* a token failure was logged; the next ones are debug */
	struct greq *probe;   /* the probe on the wire, or NULL */
	struct event *probe_timer;
	X509_STORE *trust; /* parsed once; NULL when ca_file cannot be read */
	int alg, timeout, parallel;
	struct graph_tuning tune;
	/* token */
	char *token;
	time_t token_expiry, token_renew;
	int token_fetching, token_attempts;
	unsigned token_gen;
	struct event *token_timer;
	/*
	 * One throttle for the tenant: after a 429 (or a 503 with Retry-After) on a
	 * Teams admin request, no new Teams admin request goes out before this
	 * (CLOCK_MONOTONIC, ms); the ones on the wire finish. Others still go.
	 */
	long long teams_hold_until;
	struct event *hold_timer;
	unsigned queued_other; /* requests in the queue that no throttle holds */
	/* requests waiting for a slot or a token: [0] first, then [1] (GRAPH_LATER) */
	struct greq *queue[2], *queue_tail[2];
	struct greq *parked; /* waiting on their retry timers */
	struct greq *wire;   /* exchanges in libcurl's hands */
	int pending, stopped;
	struct graph_stats stats;
};

static void dispatch(struct graph *g);
static void fetch_token(struct graph *g);
static long long now_ms(void);
static CURLSH *new_share(void);
static void fail_queue(struct graph *g, long status, const char *code, const char *msg);
static int teams_admin(const struct greq *r);
static void hold_teams(struct graph *g, long ms);

/* ---- small helpers ------------------------------------------------------ */

static char *
strip_slash(const char *s)
{
	char *d = strdup(s);
	size_t n = d ? strlen(d) : 0;

	while (n > 0 && d[n - 1] == '/')
		d[--n] = '\0';
	return d;
}

static long
backoff_ms(const struct graph *g, int attempt)
{
	long ms = g->tune.retry_base_ms;

	for (int i = 1; i < attempt && ms < g->tune.retry_cap_ms; i++)
		ms *= 2;
	if (ms > g->tune.retry_cap_ms)
		ms = g->tune.retry_cap_ms;
	/* jitter: 75 % to 125 %, so clients that failed together do not retry together */
	return ms * (75 + (long)(random() % 51)) / 100;
}

long
graph_parse_retry_after(const char *value, long now)
{
	char *end;
	long secs;
	struct tm tm;

	while (*value == ' ')
		value++;
	if (!*value)
		return -1;
	secs = strtol(value, &end, 10);
	if (end != value && (*end == '\0' || *end == '\r' || *end == ' '))
		return secs < 0 ? -1 : secs;
	memset(&tm, 0, sizeof(tm));
	if (strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
		long at = (long)timegm(&tm);
		return at > now ? at - now : 0;
	}
	return -1;
}

/*
 * A server's word, kept as one line of UTF-8 wherever it goes (log, status,
 * SNMP): control characters become spaces, a byte that starts no well-formed
 * UTF-8 character becomes '?', and a cut never splits a character.
 */
static void
one_line(char *dst, size_t len, const char *src)
{
	size_t o = 0;

	if (!len)
		return;
	while (*src) {
		size_t n = utf8_char_len(src);
		if (o + (n ? n : 1) >= len)
			break;
		if (!n) {
			dst[o++] = '?';
			src++;
			continue;
		}
		if (!utf8_safe_len(src)) { /* C0, DEL, C1, U+2028, U+2029 */
			dst[o++] = ' ';
		} else {
			memcpy(dst + o, src, n);
			o += n;
		}
		src += n;
	}
	dst[o] = '\0';
}

int
graph_parse_error(
    const char *body, size_t len, char *code, size_t codelen, char *msg, size_t msglen)
{
	cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error"), *c = NULL, *m = NULL;

	if (cJSON_IsObject(e)) { /* Graph */
		c = cJSON_GetObjectItemCaseSensitive(e, "code");
		m = cJSON_GetObjectItemCaseSensitive(e, "message");
	} else if (cJSON_IsString(e)) { /* the token endpoint (OAuth) */
		c = e;
		m = cJSON_GetObjectItemCaseSensitive(root, "error_description");
	}
	if (!cJSON_IsString(c)) {
		cJSON_Delete(root);
		return -1;
	}
	one_line(code, codelen, c->valuestring);
	one_line(msg, msglen, cJSON_IsString(m) ? m->valuestring : "");
	cJSON_Delete(root);
	return 0;
}

/* A token goes into an Authorization header: printable ASCII, no space, no line break. */
static int
token_chars_ok(const char *s)
{
	for (; *s; s++)
		if (*s < '!' || *s > '~')
			return 0;
	return 1;
}

int
graph_parse_token(const char *body, size_t len, char **token, long *life)
{
	cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "access_token");
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
	double secs;

	*token = NULL;
	if (cJSON_IsString(tok) && tok->valuestring[0]) {
		if (token_chars_ok(tok->valuestring) && strlen(tok->valuestring) <= GRAPH_TOKEN_MAX)
			*token = strdup(tok->valuestring);
		/* the copy in the tree is wiped before cJSON frees it */
		OPENSSL_cleanse(tok->valuestring, strlen(tok->valuestring));
	}
	if (!*token) {
		cJSON_Delete(root);
		return -1;
	}
	/*
	 * expires_in is a number in v2.0, a string in some older answers. The value is
	 * compared as a double and cast only once within range: a double beyond long's
	 * range (1e300, or what strtol saturates to) must never be cast.
	 */
	if (cJSON_IsNumber(exp))
		secs = exp->valuedouble;
	else if (cJSON_IsString(exp))
		secs = (double)strtol(exp->valuestring, NULL, 10);
	else
		secs = 3599;
	if (!(secs >= 1)) /* zero, negative, below a second, or not a number */
		*life = 60;
	else if (secs > GRAPH_TOKEN_LIFE_MAX)
		*life = GRAPH_TOKEN_LIFE_MAX;
	else
		*life = (long)secs;
	cJSON_Delete(root);
	return 0;
}

/* ---- libcurl on the loop (loop.c) --------------------------------------- */

static void check_done(struct graph *g);

static void
on_progress(void *arg)
{
	check_done(arg);
}

/* ---- one HTTP exchange -------------------------------------------------- */

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	struct greq *r = arg;
	size_t len = size * n;

	if (r->resp_len + len + 1 > BODY_MAX)
		return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
	if (r->resp_len + len + 1 > r->resp_cap) {
		size_t cap = r->resp_cap ? r->resp_cap : 16384;
		char *grown;
		while (cap < r->resp_len + len + 1)
			cap *= 2;
		if (!(grown = realloc(r->resp, cap)))
			return 0;
		r->resp = grown;
		r->resp_cap = cap;
	}
	memcpy(r->resp + r->resp_len, data, len);
	r->resp_len += len;
	r->resp[r->resp_len] = '\0';
	return len;
}

/* The value of header `name` if this line is it (*vlen bytes, not terminated), or NULL. */
static const char *
header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
	size_t n = strlen(name);

	if (len <= n + 1 || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	line += n + 1;
	len -= n + 1;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n' || line[len - 1] == ' '))
		len--;
	*vlen = len;
	return line;
}

/* Keep the value of header `name` if this line is it. */
static void
take_header(const char *line, size_t len, const char *name, char *dst, size_t dstlen)
{
	size_t v;
	const char *val = header_value(line, len, name, &v);

	if (!val)
		return;
	if (v > dstlen - 1)
		v = dstlen - 1;
	memcpy(dst, val, v);
	dst[v] = '\0';
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
	struct greq *r = arg;
	size_t len = size * n;
	const char *loc;
	size_t vlen;

	if ((loc = header_value(data, len, "Location", &vlen))) {
		/* an operation's address, cut as before at LOCATION_MAX (a cut one fails its
		   poll: the change stays unsettled, never taken as done) */
		free(r->location);
		r->location = vlen ? strndup(loc, vlen < LOCATION_MAX ? vlen : LOCATION_MAX) : NULL;
		if (vlen && !r->location)
			return 0; /* out of memory: the exchange fails (a POST's is checked) */
	}
	take_header(data, len, "Retry-After", r->retry_after, sizeof(r->retry_after));
	take_header(data, len, "request-id", r->request_id, sizeof(r->request_id));
	return len;
}

/*
 * The trust anchors are parsed once, when the client starts: the system's
 * bundle (libcurl's default) and ca_file, which adds to them and does not
 * replace them. Every connection's SSL_CTX shares that store. Left to itself,
 * libcurl would parse the system's bundle again for every new connection,
 * about 30 ms of CPU each on the event loop, because an SSL_CTX callback keeps
 * its CA cache out.
 */
static X509_STORE *
trust_store(const char *ca_file)
{
	const curl_version_info_data *ci = curl_version_info(CURLVERSION_NOW);
	X509_STORE *s = X509_STORE_new();

	if (!s)
		return NULL;
	if (ci->cainfo && X509_STORE_load_file(s, ci->cainfo) != 1)
		log_warnx("graph", "cannot load the system's trust anchors in %s", ci->cainfo);
	if (ci->capath && X509_STORE_load_path(s, ci->capath) != 1)
		log_warnx("graph", "cannot use the system's trust anchors in %s", ci->capath);
	/* a libcurl built without a CA bundle leaves it to OpenSSL's defaults, as do we */
	if (!ci->cainfo && !ci->capath && X509_STORE_set_default_paths(s) != 1)
		log_warnx("graph", "cannot use OpenSSL's default trust anchors");
	if (ca_file) {
		/* read through a regular-file check: a FIFO there must not block the daemon */
		char err[256];
		FILE *f = auth_fopen_regular(ca_file, err, sizeof(err));
		STACK_OF(X509_INFO) *info = f ? PEM_X509_INFO_read(f, NULL, NULL, NULL) : NULL;
		int n = 0;
		if (f)
			fclose(f);
		for (int i = 0; info && i < sk_X509_INFO_num(info); i++) {
			X509_INFO *it = sk_X509_INFO_value(info, i);
			if (it->x509 && X509_STORE_add_cert(s, it->x509) == 1)
				n++;
			if (it->crl)
				X509_STORE_add_crl(s, it->crl);
		}
		sk_X509_INFO_pop_free(info, X509_INFO_free);
		if (!n) {
			if (!f)
				log_warnx("graph", "%s", err);
			X509_STORE_free(s);
			return NULL;
		}
	}
	/* as libcurl sets by default: an intermediate in the store is trusted */
	X509_STORE_set_flags(s, X509_V_FLAG_PARTIAL_CHAIN);
	return s;
}

static CURLcode
on_ssl_ctx(CURL *easy, void *sslctx, void *arg)
{
	struct graph *g = arg;

	(void)easy;
	if (!g->trust) {
		log_warnx(
		    "graph", "cannot load the trust anchors in %s", g->ca_file ? g->ca_file : "-");
		return CURLE_SSL_CACERT_BADFILE;
	}
	SSL_CTX_set1_cert_store(sslctx, g->trust); /* a reference: the store outlives no one */
	/* decrypted records (the token endpoint's answers) are wiped from OpenSSL's buffers */
	SSL_CTX_set_options(sslctx, SSL_OP_CLEANSE_PLAINTEXT);
	return CURLE_OK;
}

static void
add_header(struct greq *r, const char *name, const char *value)
{
	char line[8400];

	snprintf(line, sizeof(line), "%s: %s", name, value);
	r->hdrs = curl_slist_append(r->hdrs, line);
	OPENSSL_cleanse(line, sizeof(line)); /* Authorization: the bearer token */
}

/* An access token is wiped before its memory is given back. */
static void
free_secret(char *s)
{
	if (s)
		OPENSSL_cleanse(s, strlen(s));
	free(s);
}

static int
start_easy(struct greq *r)
{
	struct graph *g = r->g;
	CURL *e = curl_easy_init();

	if (!e)
		return -1;
	r->easy = e;
	r->resp_len = 0;
	free(r->location);
	r->location = NULL;
	r->retry_after[0] = r->request_id[0] = r->curl_err[0] = '\0';
	auth_uuid(r->crid);
	r->attempts++;
	add_header(r, "client-request-id", r->crid);
	add_header(r, "return-client-request-id", "true");
	add_header(r, "Accept", "application/json");
	if (!r->is_token) {
		char bearer[8192];

		snprintf(bearer, sizeof(bearer), "Bearer %s", g->token);
		add_header(r, "Authorization", bearer);
		OPENSSL_cleanse(bearer, sizeof(bearer));
		r->token_gen = g->token_gen;
		if (g->priority)
			add_header(r, "x-ms-throttle-priority", g->priority);
		if (r->body)
			add_header(r, "Content-Type", "application/json");
	}
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, (long)g->timeout);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 15L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "numprovd/" PACKAGE_VERSION);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	/* the trust anchors come from on_ssl_ctx's shared store: libcurl parses none */
	curl_easy_setopt(e, CURLOPT_CAINFO, NULL);
	curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(e, CURLOPT_PROXY_CAINFO, NULL);
	curl_easy_setopt(e, CURLOPT_PROXY_CAPATH, NULL);
	curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, g);
	/* libcurl's own cache of a store (7.87+) would put the first connection's store,
	 * ours as it was then, in every later SSL_CTX in place of on_ssl_ctx's: trust
	 * anchors read again on a reload would never be used */
	curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	if (g->proxy)
		curl_easy_setopt(e, CURLOPT_PROXY, g->proxy);
	/*
	 * Connections stay open in the multi handle's cache and are reused, and a
	 * new one resumes its TLS session from the share: no handshake per request.
	 * libcurl sends a request again by itself when a reused connection dies
	 * before any byte of the answer, though the server may have acted on the
	 * first copy. For a GRAPH_POST_ONCE (assignNumber, unassignNumber) that is
	 * harmless: the same assignment again changes nothing, and a no Teams may
	 * give such a copy is believed only once numberAssignments agrees (teams.c,
	 * refusal_check). An answer lost otherwise reaches the caller as ambiguous,
	 * which checks Teams before sending it again.
	 */
	curl_easy_setopt(e, CURLOPT_SHARE, g->share);
	r->share = g->share;
	if (g->trust_ms) {
		/* no connection made before the trust anchors were read again is used: it
		 * was verified against the old ones (its TLS sessions are in a retired
		 * share, see reload_trust). An idle one is refused by its age (libcurl
		 * compares whole seconds, lifetime / 1000 > limit, and 0 is no limit: so
		 * a second less, 100 ms of margin for the two clocks' rounding, and a new
		 * connection while that would be 0); a busy one (HTTP/2 takes more
		 * streams on a busy connection, whatever its age) by a new connection for
		 * as long as a request from before is on the wire. trust_ms moves on as
		 * each of those ends (end_easy): a connection it made after the reload,
		 * with a session from before, is older than that. */
		long long age = now_ms() - g->trust_ms;
		int old_busy = 0;
		for (const struct greq *w = g->wire; w && !old_busy; w = w->wire_next)
			old_busy = w->share != g->share;
		if (age < 2100 || old_busy)
			curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		else
			curl_easy_setopt(
			    e, CURLOPT_MAXLIFETIME_CONN, (long)((age - 100) / 1000 - 1));
	}
	if (r->is_token)
		/* HTTP/1.1: over HTTP/2 the body (the secret or the assertion) would be
		 * copied into nghttp2's frame buffers, which libcurl's wiping free
		 * (curl_start) does not reach */
		curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	if (r->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
	}
	r->wire_next = g->wire;
	g->wire = r;
	r->sent_ms = now_ms();
	r->reached = 0;
	g->stats.attempts++;
	g->stats.in_flight++;
	if (g->stats.in_flight > g->stats.max_in_flight)
		g->stats.max_in_flight = g->stats.in_flight;
	return curl_multi_add_handle(g->multi, e) == CURLM_OK ? 0 : -1;
}

static void
end_easy(struct greq *r)
{
	struct greq **pp = &r->g->wire;

	if (!r->easy)
		return;
	while (*pp && *pp != r)
		pp = &(*pp)->wire_next;
	if (*pp)
		*pp = r->wire_next;
	curl_multi_remove_handle(r->g->multi, r->easy);
	curl_easy_cleanup(r->easy);
	/* a share retired by a trust reload goes with the last handle that used it
	 * (curl_share_cleanup refuses while another still does); what connection this
	 * request made since the reload, maybe resuming an old session, is older than
	 * the reload now counts from (start_easy) */
	if (r->share && r->share != r->g->share) {
		curl_share_cleanup(r->share);
		r->g->trust_ms = now_ms();
	}
	r->share = NULL;
	curl_slist_free_all(r->hdrs);
	r->easy = NULL;
	r->hdrs = NULL;
	r->g->stats.in_flight--;
}

static void
req_free(struct greq *r)
{
	if (r->g && r->g->probe == r)
		r->g->probe = NULL;
	end_easy(r);
	if (r->retry_timer)
		event_free(r->retry_timer);
	if (r->body)
		OPENSSL_cleanse(
		    r->body, strlen(r->body)); /* the token request carries the secret */
	if (r->is_token && r->resp)
		OPENSSL_cleanse(r->resp, r->resp_cap); /* and its answer the access token */
	free(r->url);
	free(r->body);
	free(r->resp);
	free(r->location);
	free(r);
}

/* ---- delivering and retrying ------------------------------------------- */

/*
 * A Location to follow (an operation to poll) is one of Graph's own: a path, or an
 * address under graph_url. One elsewhere is not given to the caller, which then
 * checks Teams instead: the token never goes to another host.
 */
static int
same_origin(const struct graph *g, const char *url)
{
	size_t n;

	if (!url)
		return 0;
	if (url[0] == '/')
		return url[1] != '/';
	n = strlen(g->graph_url);
	while (n && g->graph_url[n - 1] == '/')
		n--;
	return strncmp(url, g->graph_url, n) == 0 && (url[n] == '/' || url[n] == '\0');
}

static void
deliver(struct greq *r, long status, CURLcode cc, int ambiguous)
{
	struct graph *g = r->g;
	struct graph_result res;

	memset(&res, 0, sizeof(res));
	res.status = status;
	res.ambiguous = ambiguous;
	res.attempts = r->attempts;
	res.body = r->resp ? r->resp : "";
	res.len = r->resp_len;
	res.location = same_origin(r->g, r->location) ? r->location : NULL;
	memcpy(res.client_request_id, r->crid, sizeof(res.client_request_id));
	snprintf(res.request_id, sizeof(res.request_id), "%s", r->request_id);
	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		snprintf(res.error_code, sizeof(res.error_code), "stopping");
		snprintf(res.error_message, sizeof(res.error_message), "numprovd is stopping");
	} else if (cc != CURLE_OK) {
		snprintf(res.error_code, sizeof(res.error_code), "transport");
		snprintf(res.error_message, sizeof(res.error_message), "%s",
		    r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc));
	} else if (status >= 400) {
		graph_parse_error(res.body, res.len, res.error_code, sizeof(res.error_code),
		    res.error_message, sizeof(res.error_message));
	}
	if (cc != CURLE_ABORTED_BY_CALLBACK && (cc != CURLE_OK || status >= 400)) {
		g->stats.failures++;
		/* Graph out of reach was said once; each request it fails is debug */
		char what[96];
		if (cc != CURLE_OK)
			snprintf(what, sizeof(what), "no response");
		else
			snprintf(what, sizeof(what), "HTTP %ld %s", status, res.error_code);
		log_msg(cc != CURLE_OK && g->outage_told ? LOG_DEBUG : LOG_WARNING, "graph",
		    "%s %s: %s%s%s (client-request-id %s%s%s, %d attempt%s)", r->method, r->url,
		    what, res.error_message[0] ? ": " : "", res.error_message, r->crid,
		    r->request_id[0] ? ", request-id " : "", r->request_id, r->attempts,
		    r->attempts == 1 ? "" : "s");
	}
	g->pending--;
	r->cb(&res, r->arg);
	req_free(r);
}

/* Into its queue: at the tail, or (a retry, which keeps its place) at the head. */
static void
enqueue_at(struct graph *g, struct greq *r, int head)
{
	int q = (r->flags & GRAPH_LATER) != 0;

	if (!r->teams)
		g->queued_other++;
	if (head) {
		r->next = g->queue[q];
		g->queue[q] = r;
		if (!g->queue_tail[q])
			g->queue_tail[q] = r;
		return;
	}
	r->next = NULL;
	if (g->queue_tail[q])
		g->queue_tail[q]->next = r;
	else
		g->queue[q] = r;
	g->queue_tail[q] = r;
}

static void
enqueue(struct graph *g, struct greq *r)
{
	enqueue_at(g, r, 0);
}

static void
unpark(struct greq *r)
{
	struct greq **pp = &r->g->parked;

	while (*pp && *pp != r)
		pp = &(*pp)->parked_next;
	if (*pp)
		*pp = r->parked_next;
	r->parked_next = NULL;
}

static void
on_retry_timer(evutil_socket_t fd, short kind, void *arg)
{
	struct greq *r = arg;

	(void)fd;
	(void)kind;
	unpark(r);
	enqueue_at(r->g, r, 1);
	dispatch(r->g);
}

static void
retry_later(struct greq *r, long ms, int outage)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (r->g->stopped) {
		deliver(r, 0, CURLE_ABORTED_BY_CALLBACK, 0);
		return;
	}
	if (r->attempts == 3) {
		/* an outage is said in the log once, not by every request nor on every retry;
		 * the rest is debug until Graph answers again */
		size_t n = strcspn(r->url, "?");
		int told = r->g->suspect && r->g->outage_told;
		if (r->g->suspect)
			r->g->outage_told = 1;
		log_msg(told ? LOG_DEBUG : LOG_WARNING, "graph",
		    "%s %.*s failed %d times (%s); retrying (up to %d attempts)", r->method,
		    (int)(n > 200 ? 200 : n), r->url, r->attempts, r->g->stats.last_error,
		    r->g->tune.max_attempts);
	}
	r->outage_wait = outage;
	r->parked_next = r->g->parked;
	r->g->parked = r;
	r->g->stats.retries++;
	if (r->g->stats.failing_since)
		r->g->stats.next_try = np_time() + (ms + 999) / 1000;
	if (!r->retry_timer)
		r->retry_timer = evtimer_new(r->g->base, on_retry_timer, r);
	evtimer_add(r->retry_timer, &tv);
}

/* Transport errors after the request may have reached the server. */
static int
maybe_sent(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
		return 0;
	default:
		return 1;
	}
}

/*
 * The attempt got no answer at all because Graph is out of reach: the request was
 * never sent (refused, no name, TLS refused, a SYN unanswered until the timeout, a
 * proxy that cannot reach Graph). A reset or a timeout once the request could go
 * is the request's own failure.
 */
static int
no_answer(const struct greq *r, CURLcode cc)
{
	return cc != CURLE_OK && (!maybe_sent(cc) || !r->reached);
}

static long
retry_after_ms(struct greq *r)
{
	long s = r->retry_after[0] ? graph_parse_retry_after(r->retry_after, (long)time(NULL)) : -1;

	if (s < 0)
		return -1;
	if (s > r->g->tune.retry_after_cap_s)
		s = r->g->tune.retry_after_cap_s;
	return s * 1000;
}

/*
 * Graph's health for `numprovctl status`: an attempt that got no answer, a
 * 5xx or a 429 makes it failing (since the first such attempt); any other
 * answer makes it healthy again. The error is kept as one printable line.
 */
static void
health_fail(struct graph *g, const char *what, CURLcode cc, long status, const char *detail)
{
	char line[1024];

	if (!g->stats.failing_since)
		g->stats.failing_since = np_time();
	if (cc != CURLE_OK)
		snprintf(line, sizeof(line), "%s: no response: %s", what, detail);
	else
		snprintf(line, sizeof(line), "%s: HTTP %ld%s%s", what, status, *detail ? " " : "",
		    detail);
	/* shown by status and SNMP: one line, as Graph's words in the log are */
	one_line(g->stats.last_error, sizeof(g->stats.last_error), line);
	g->stats.next_try = 0;
}

static void
health_ok(struct graph *g)
{
	if (g->outage_told)
		log_notice("graph", "Graph answers again");
	g->outage_told = 0;
	g->stats.failing_since = 0;
	g->stats.next_try = 0;
	g->stats.last_error[0] = '\0';
}

/* Graph answered (whatever the status): it is within reach again. */
static void
reachable(struct graph *g)
{
	if (g->outage_told) /* whatever it answers (a 503 too): the outage is over */
		log_notice("graph", "Graph answers again");
	g->outage_told = 0;
	g->suspect = g->down = 0;
	g->probe_fails = 0;
	g->probe_at = 0;
}

/*
 * An attempt got no answer: the next attempt, of whichever request, waits until
 * probe_at (returned: ms from now). A step is taken per attempt sent after the
 * last step ended: the requests that were on the wire together when Graph went
 * away do not push the backoff up each.
 */
static long
unreachable_step(struct graph *g, long long sent_ms)
{
	long long now = now_ms();

	if (!g->suspect || sent_ms >= g->step_start) {
		g->step_start = now;
		g->probe_at = now + backoff_ms(g, ++g->probe_fails);
	}
	g->suspect = 1;
	return g->probe_at > now ? (long)(g->probe_at - now) : 0;
}

/* Every request that waits for Graph (queued or parked) fails with the outage's error:
 * what (Graph or the sign-in endpoint) out of reach, and why. */
static void
fail_waiting(struct graph *g, const char *what, const char *why)
{
	char msg[CURL_ERROR_SIZE];

	snprintf(msg, sizeof(msg), "%s out of reach: %.200s", what, why);
	fail_queue(g, 0, "transport", msg);
	while (g->parked) { /* one at a time: a callback may submit */
		struct greq *r = g->parked;
		g->parked = r->parked_next;
		r->parked_next = NULL;
		evtimer_del(r->retry_timer);
		memcpy(r->curl_err, msg, sizeof(r->curl_err));
		deliver(r, 0, CURLE_COULDNT_CONNECT, 0);
	}
}

/* A probe used all its attempts without an answer: Graph (or the sign-in endpoint,
 * what) is down, for why. */
static void
go_down(struct graph *g, const char *what, const char *why)
{
	if (!g->down)
		log_warnx("graph",
		    "no answer from %s for %lds (%s): what waits for Graph fails now, and one "
		    "request tries again at most every %ds until it answers",
		    what, g->stats.failing_since ? (long)(np_time() - g->stats.failing_since) : 0L,
		    why, g->tune.retry_cap_ms / 1000);
	g->down = 1;
	g->outage_told = 1;
	fail_waiting(g, what, why);
}

/* What to do with a Graph request's answer. */
static void
settle(struct greq *r, CURLcode cc, long status)
{
	struct graph *g = r->g;
	int once = r->flags & GRAPH_POST_ONCE, more = r->attempts < g->tune.max_attempts;
	long wait;

	if (g->probe == r)
		g->probe = NULL;
	if (cc == CURLE_OK)
		reachable(g);

	if (cc != CURLE_OK || status >= 500 || status == 429) {
		char what[96], detail[CURL_ERROR_SIZE + 200], code[64] = "", msg[128] = "";
		size_t n = strcspn(r->url, "?");
		const char *path = strstr(r->url, "://");
		path = path ? strchr(path + 3, '/') : NULL;
		snprintf(what, sizeof(what), "%s %.*s", r->method,
		    (int)(path ? (size_t)(r->url + n - path) : n), path ? path : r->url);
		if (cc != CURLE_OK)
			snprintf(detail, sizeof(detail), "%s",
			    r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc));
		else {
			graph_parse_error(r->resp ? r->resp : "", r->resp_len, code, sizeof(code),
			    msg, sizeof(msg));
			snprintf(detail, sizeof(detail), "%s%s%s", code, *msg ? ": " : "", msg);
		}
		health_fail(g, what, cc, status, detail);
	} else
		health_ok(g);

	if (no_answer(r, cc)) {
		/* Graph out of reach: one request at a time goes until it answers, each
		 * attempt a step of one backoff later; after max_attempts steps without
		 * an answer what waits fails, and the daemon's rounds carry the probing
		 * (the first request after each step) */
		int down;
		wait = unreachable_step(g, r->sent_ms);
		down = g->down || g->probe_fails >= g->tune.max_attempts;
		/* (never sent, or sent on no connection: a POST_ONCE is not ambiguous) */
		if (more && !down)
			retry_later(r, wait, 1);
		else
			deliver(r, 0, cc, 0);
		if (down)
			go_down(g, "Graph", g->stats.last_error);
		return;
	}
	if (cc != CURLE_OK) {
		/* the connection got through, then failed (maybe_sent): this request's own
		 * retries; a POST_ONCE may have been done: the caller checks Teams */
		if (once)
			deliver(r, 0, cc, 1);
		else if (more)
			retry_later(r, backoff_ms(g, r->attempts), 0);
		else
			deliver(r, 0, cc, 0);
		return;
	}
	if (status == 401 && !r->auth_retried) {
		r->auth_retried = 1;
		if (r->token_gen == g->token_gen) { /* that token is refused: drop it */
			free_secret(g->token);
			g->token = NULL;
		}
		retry_later(r, 0, 0);
		return;
	}
	if (teams_admin(r)
	    && (status == 429 || (status == 503 && (wait = retry_after_ms(r)) >= 0))) {
		wait = retry_after_ms(r);
		hold_teams(g, wait >= 0 ? wait : backoff_ms(g, r->attempts));
	}
	if (status == 429 && more) {
		g->stats.throttled++;
		wait = retry_after_ms(r);
		retry_later(r, wait >= 0 ? wait : backoff_ms(g, r->attempts), 0);
		return;
	}
	if (status >= 500 && once) {
		deliver(r, status, cc, 1);
		return;
	}
	if (status >= 500 && more) {
		wait = retry_after_ms(r);
		retry_later(r, wait >= 0 ? wait : backoff_ms(g, r->attempts), 0);
		return;
	}
	deliver(r, status, cc, 0);
}

/* ---- tokens ------------------------------------------------------------- */

static void
fail_queue(struct graph *g, long status, const char *code, const char *msg)
{
	struct greq *q = g->queue[0];

	/* both queues, in their order */
	if (g->queue_tail[0])
		g->queue_tail[0]->next = g->queue[1];
	else
		q = g->queue[1];
	g->queue[0] = g->queue_tail[0] = g->queue[1] = g->queue_tail[1] = NULL;
	g->queued_other = 0;
	while (q) {
		struct greq *next = q->next;
		snprintf(q->curl_err, sizeof(q->curl_err), "%s", msg);
		free(q->resp);
		q->resp = NULL;
		q->resp_len = 0;
		{
			struct graph_result res;
			memset(&res, 0, sizeof(res));
			res.status = status;
			res.body = "";
			res.attempts = q->attempts;
			snprintf(res.error_code, sizeof(res.error_code), "%s", code);
			snprintf(res.error_message, sizeof(res.error_message), "%s", msg);
			g->pending--;
			g->stats.failures++;
			q->cb(&res, q->arg);
		}
		req_free(q);
		q = next;
	}
}

static int
token_accept(struct graph *g, const struct greq *r)
{
	char *token;
	long life;

	if (graph_parse_token(r->resp ? r->resp : "", r->resp_len, &token, &life) < 0)
		return -1;
	free_secret(g->token);
	g->token = token;
	g->token_expiry = np_time() + life;
	/* a short-lived token is renewed at half its life, not refetched for every request */
	g->token_renew = g->token_expiry - (life > 2 * TOKEN_MARGIN ? TOKEN_MARGIN : life / 2);
	g->token_gen++;
	return 0;
}

static void
on_token_timer(evutil_socket_t fd, short kind, void *arg)
{
	(void)fd;
	(void)kind;
	fetch_token(arg);
}

static void
token_done(struct greq *r, CURLcode cc, long status)
{
	struct graph *g = r->g;
	char code[64] = "token", msg[256] = "";
	long ms = 0;
	int unreadable;
	/* read before r is freed below */
	int na = no_answer(r, cc);
	long long sent_ms = r->sent_ms;

	g->token_fetching = 0;
	/* the sign-in endpoint answering says nothing of Graph: while Graph is out of
	 * reach, the next probe (now the token is there) goes to it at its step */
	if (cc == CURLE_OK && status == 200 && token_accept(g, r) == 0) {
		g->token_attempts = 0;
		g->cred_refused = 0;
		g->token_told = 0;
		if (!g->suspect && !g->down)
			health_ok(g);
		log_debug(
		    "graph", "token acquired, valid for %lds", (long)(g->token_expiry - np_time()));
		req_free(r);
		dispatch(g);
		return;
	}
	/* a success that carries no usable token (cut short, not JSON, no access_token)
	 * is a failure of its own: said as such, tried again, never passed on as a 200 */
	unreadable = cc == CURLE_OK && status >= 200 && status < 300;
	if (cc != CURLE_OK)
		snprintf(
		    msg, sizeof(msg), "%s", r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc));
	else if (unreadable)
		snprintf(msg, sizeof(msg),
		    "the answer holds no usable access token (%zu bytes; cut short or not JSON)",
		    r->resp_len);
	else
		graph_parse_error(r->resp, r->resp_len, code, sizeof(code), msg, sizeof(msg));
	{
		/* told once until a token is had again (an outage, Entra's refusal of the
		 * credentials with its AADSTS code and text, a run of 5xx) */
		int told = g->token_told || (na && g->outage_told);
		char what[96];
		g->token_told = 1;
		if (na)
			g->outage_told = 1;
		if (cc != CURLE_OK)
			snprintf(what, sizeof(what), "no response");
		else
			snprintf(what, sizeof(what), "HTTP %ld %s", status, code);
		log_msg(told ? LOG_DEBUG : LOG_WARNING, "graph",
		    "token request to %s failed: %s%s%s (client-request-id %s)", g->token_url, what,
		    *msg ? ": " : "", msg, r->crid);
	}
	/* credentials refused: the files are read again before the next request */
	if (cc == CURLE_OK && (status == 400 || status == 401))
		g->cred_refused = 1;
	{
		char detail[400];
		snprintf(detail, sizeof(detail), "%s%s%s", cc == CURLE_OK ? code : "",
		    cc == CURLE_OK && *msg ? ": " : "", msg);
		health_fail(g, "token", cc, status, detail);
	}
	req_free(r);
	/* transient: try again; refused credentials: tell every waiting request */
	if (na)
		ms = unreachable_step(g, sent_ms); /* the steps are Graph's and Entra's together */
	if ((cc != CURLE_OK || status == 429 || status >= 500 || unreadable)
	    && ++g->token_attempts < g->tune.max_attempts
	    && !(na && (g->down || g->probe_fails >= g->tune.max_attempts))) {
		struct timeval tv;
		if (!na)
			ms = backoff_ms(g, g->token_attempts);
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		g->token_fetching = 1;
		evtimer_add(g->token_timer, &tv);
		g->stats.next_try = np_time() + (ms + 999) / 1000;
		return;
	}
	g->token_attempts = 0;
	if (na) {
		/* Entra out of reach: the same as Graph (one probe at a time from now on);
		 * what waited fails as transport, as it does when Graph is out of reach */
		char why[CURL_ERROR_SIZE];
		snprintf(why, sizeof(why), "%.200s", msg);
		go_down(g, "the sign-in endpoint", why);
		return;
	}
	fail_queue(g, unreadable ? 0 : status, code, msg[0] ? msg : "cannot get a token");
}

static char *
token_form(struct graph *g, char *err, size_t errlen)
{
	char *cid = curl_easy_escape(NULL, g->client_id, 0),
	     *scope = curl_easy_escape(NULL, g->scope, 0);
	char *cred = NULL, *form = NULL, *assertion = NULL;
	size_t len;

	if (g->secret) {
		cred = curl_easy_escape(NULL, g->secret, 0);
	} else if ((assertion = auth_assertion(
			g->cert, g->alg, g->client_id, g->token_url, time(NULL), err, errlen))) {
		cred = curl_easy_escape(NULL, assertion, 0);
		OPENSSL_cleanse(assertion, strlen(assertion)); /* a bearer credential for minutes */
		free(assertion);
	}
	if (cid && scope && cred) {
		len = strlen(cid) + strlen(scope) + strlen(cred) + 256;
		if ((form = malloc(len)))
			snprintf(form, len,
			    "client_id=%s&scope=%s&grant_type=client_credentials&%s%s", cid, scope,
			    g->secret ? "client_secret="
				      : "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
					"client-assertion-type%3Ajwt-bearer&client_assertion=",
			    cred);
	}
	if (cred)
		OPENSSL_cleanse(cred, strlen(cred));
	curl_free(cid);
	curl_free(scope);
	curl_free(cred);
	return form;
}

/*
 * Entra refused the credentials: the secret (or the certificate and key) is
 * read again from its file before the next token request, so that a secret
 * the administrator rotated is used without a restart. Nothing of the secret
 * is logged; an unreadable file is said once until it reads again.
 */
static void
reread_credentials(struct graph *g)
{
	char err[256];

	if (g->secret_file) {
		char *s = auth_secret_line(g->secret_file, err, sizeof(err));
		if (!s)
			goto unreadable;
		g->cred_unreadable = 0;
		if (g->secret && strcmp(s, g->secret) == 0) {
			free_secret(s);
			return;
		}
		free_secret(g->secret);
		g->secret = s;
		log_notice("graph", "%s has changed: its new client secret is used from now on",
		    g->secret_file);
		return;
	}
	if (g->cert_file && g->key_file) {
		struct auth_cert *c = auth_cert_load(g->cert_file, g->key_file, err, sizeof(err));
		if (!c)
			goto unreadable;
		g->cred_unreadable = 0;
		auth_cert_free(g->cert);
		g->cert = c;
		log_debug("graph", "%s and %s read again", g->cert_file, g->key_file);
	}
	return;
unreadable:
	if (!g->cred_unreadable)
		log_warnx("graph",
		    "cannot read the credentials again (the ones from the start "
		    "are kept): %s",
		    err);
	g->cred_unreadable = 1;
}

static void
fetch_token(struct graph *g)
{
	struct greq *r = calloc(1, sizeof(*r));
	char err[256] = "cannot build the token request";

	g->token_fetching = 1;
	if (g->cred_refused)
		reread_credentials(g);
	if (!r || !(r->body = token_form(g, err, sizeof(err)))
	    || !(r->url = strdup(g->token_url))) {
		g->token_fetching = 0;
		if (r)
			req_free(r);
		log_err("graph", "%s", err);
		fail_queue(g, 0, "token", err);
		return;
	}
	r->g = g;
	r->method = "POST";
	r->is_token = 1;
	g->stats.token_fetches++;
	if (start_easy(r) < 0) {
		g->token_fetching = 0;
		req_free(r);
		fail_queue(g, 0, "token", "cannot start the token request");
	}
}

static int
token_fresh(const struct graph *g)
{
	return g->token && np_time() < g->token_renew;
}

/* ---- the queue ---------------------------------------------------------- */

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The Teams administration API, which throttles per tenant (not users/delta, not SKUs). */
static int
teams_admin(const struct greq *r)
{
	return r->teams;
}

/* Start what the queues hold while there are free slots: the first queue, then
   GRAPH_LATER's (new work waits until the work begun has gone out). */
static void
dispatch(struct graph *g)
{
	struct greq *failed = NULL;
	int held = g->teams_hold_until && now_ms() < g->teams_hold_until;
	int gated = (g->suspect || g->down) && !g->stopped;

	if (gated) {
		/* Graph out of reach: one request at a time, none before its step */
		long long wait = g->probe_at - now_ms();
		if (g->probe || g->token_fetching || (!g->queue[0] && !g->queue[1]))
			return;
		if (wait > 0) {
			/* down: what comes meanwhile fails (soon, not inside its submit) */
			struct timeval tv = { g->down ? 0 : (long)(wait / 1000),
				g->down ? 0 : (long)(wait % 1000) * 1000 };
			evtimer_add(g->probe_timer, &tv);
			return;
		}
	}
	for (int q = 0; q < 2; q++) {
		struct greq **pp = &g->queue[q], *prev = NULL;

		while (*pp && g->stats.in_flight < g->parallel) {
			struct greq *r = *pp;

			if (!token_fresh(g)) {
				if (g->stopped)
					fail_queue(g, 0, "stopping", "numprovd is stopping");
				else if (!g->token_fetching)
					fetch_token(g);
				goto walked;
			}
			if (held && r->teams) { /* waits in its place for the hold to end */
				/* only held ones left: no need to walk them all */
				if (!g->queued_other)
					goto walked;
				prev = r;
				pp = &r->next;
				continue;
			}
			*pp = r->next;
			if (g->queue_tail[q] == r)
				g->queue_tail[q] = prev;
			if (!r->teams)
				g->queued_other--;
			if (start_easy(r) < 0) {
				/* answered after the walk: a callback may submit (dispatch) */
				end_easy(r);
				r->next = failed;
				failed = r;
			} else if (gated) {
				g->probe = r; /* the only one until it is answered */
				goto walked;
			}
		}
	}
walked:
	while (failed) {
		struct greq *r = failed;
		failed = r->next;
		deliver(r, 0, CURLE_FAILED_INIT, 0);
	}
}

static void
on_probe_timer(evutil_socket_t fd, short kind, void *arg)
{
	struct graph *g = arg;

	(void)fd;
	(void)kind;
	if (g->down && !g->stopped && now_ms() < g->probe_at) {
		char msg[CURL_ERROR_SIZE];
		/* what came while Graph is down and before the next probe's step (only the
		 * queue: a request parked for a Retry-After keeps its own time) */
		snprintf(msg, sizeof(msg), "Graph out of reach: %.200s", g->stats.last_error);
		fail_queue(g, 0, "transport", msg);
		return;
	}
	dispatch(g);
}

static void
on_hold_end(evutil_socket_t fd, short kind, void *arg)
{
	struct graph *g = arg;

	(void)fd;
	(void)kind;
	g->teams_hold_until = 0;
	log_debug("graph", "Teams throttle over: Teams requests go again");
	dispatch(g);
}

/* Teams said to wait ms: every Teams admin request not yet on the wire waits too. */
static void
hold_teams(struct graph *g, long ms)
{
	long long until = now_ms() + ms;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (ms <= 0 || until <= g->teams_hold_until)
		return;
	if (!g->teams_hold_until)
		log_info("graph", "Teams throttles the tenant: no Teams request for %ld ms", ms);
	g->teams_hold_until = until;
	evtimer_add(g->hold_timer, &tv);
}

static void
check_done(struct graph *g)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(g->multi, &left))) {
		struct greq *r;
		long status = 0;
		CURLcode cc;

		if (m->msg != CURLMSG_DONE)
			continue;
		cc = m->data.result;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		{
			/* whether the request got as far as being sent: pretransfer is
			   reached once a connection (new or kept) is ready for it; 0 when
			   the connect, the TLS handshake or a proxy's CONNECT failed */
			curl_off_t pre = 0;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRETRANSFER_TIME_T, &pre);
			r->reached = pre > 0 || status > 0;
		}
		end_easy(r);
		if (r->is_token)
			token_done(r, cc, status);
		else
			settle(r, cc, status);
	}
	dispatch(g);
}

static int
submit(struct graph *g, const char *method, const char *url, const char *body, unsigned flags,
    graph_cb cb, void *arg)
{
	struct greq *r;
	size_t len;

	if (g->stopped || !(r = calloc(1, sizeof(*r))))
		return -1;
	r->g = g;
	r->method = method;
	r->flags = flags;
	r->cb = cb;
	r->arg = arg;
	if (url[0] == '/') {
		len = strlen(g->graph_url) + strlen(url) + 1;
		if ((r->url = malloc(len)))
			snprintf(r->url, len, "%s%s", g->graph_url, url);
	} else {
		r->url = strdup(url);
	}
	if (!r->url || (body && !(r->body = strdup(body)))) {
		req_free(r);
		return -1;
	}
	r->teams = strstr(r->url, "/admin/teams/") != NULL;
	g->pending++;
	g->stats.requests++;
	enqueue(g, r);
	dispatch(g);
	return 0;
}

int
graph_get(struct graph *g, const char *url, graph_cb cb, void *arg)
{
	return submit(g, "GET", url, NULL, 0, cb, arg);
}

int
graph_get_flags(struct graph *g, const char *url, unsigned flags, graph_cb cb, void *arg)
{
	return submit(g, "GET", url, NULL, flags, cb, arg);
}

int
graph_post(
    struct graph *g, const char *url, const char *json, unsigned flags, graph_cb cb, void *arg)
{
	return submit(g, "POST", url, json ? json : "", flags, cb, arg);
}

void
graph_stop(struct graph *g)
{
	g->stopped = 1;
	evtimer_del(g->token_timer);
	evtimer_del(g->hold_timer);
	if (g->probe_timer)
		evtimer_del(g->probe_timer);
	g->token_fetching = 0;
	fail_queue(g, 0, "stopping", "numprovd is stopping");
	while (g->parked) {
		struct greq *r = g->parked;
		g->parked = r->parked_next;
		r->parked_next = NULL;
		evtimer_del(r->retry_timer);
		deliver(r, 0, CURLE_ABORTED_BY_CALLBACK, 0);
	}
}

int
graph_stopped(const struct graph *g)
{
	return g->stopped;
}

int
graph_pending(const struct graph *g)
{
	return g->pending;
}

int
graph_outage_told(const struct graph *g)
{
	return g && g->outage_told && g->stats.failing_since;
}

void
graph_get_stats(const struct graph *g, struct graph_stats *out)
{
	*out = g->stats;
}

struct event_base *
graph_base(const struct graph *g)
{
	return g->base;
}

void
graph_tune(struct graph *g, const struct graph_tuning *t)
{
	g->tune = *t;
}

/* ---- life cycle --------------------------------------------------------- */

static int
load_credentials(struct graph *g, const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->tenant.client_secret_file) {
		if (!(g->secret_file = strdup(cfg->tenant.client_secret_file))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		g->secret = auth_secret_line(cfg->tenant.client_secret_file, err, errlen);
		return g->secret ? 0 : -1;
	}
	if (!(g->cert_file = strdup(cfg->tenant.certificate_file))
	    || !(g->key_file = strdup(cfg->tenant.private_key_file))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	g->cert = auth_cert_load(
	    cfg->tenant.certificate_file, cfg->tenant.private_key_file, err, errlen);
	return g->cert ? 0 : -1;
}

/*
 * libcurl's memory is wiped when libcurl frees it: the token request's body
 * (the client secret or the signed assertion) is copied into libcurl's request
 * buffer, and bearer tokens into every request's headers, which would
 * otherwise stay readable in freed heap until reused.
 */
static void
wiping_free(void *p)
{
	if (p)
		OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

static void *
wiping_realloc(void *p, size_t n)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q;

	if (!p)
		return malloc(n);
	if (n == 0) {
		wiping_free(p);
		return NULL;
	}
	if (n <= old) /* shrinking in place would leave the tail: keep the block */
		return p;
	if (!(q = malloc(n)))
		return NULL;
	memcpy(q, p, old);
	wiping_free(p);
	return q;
}

static void
curl_start(void)
{
	if (curl_global_init_mem(
		CURL_GLOBAL_DEFAULT, malloc, wiping_free, wiping_realloc, strdup, calloc)
	    != CURLE_OK)
		curl_global_init(CURL_GLOBAL_DEFAULT);
}

/*
 * At most sync.parallel connections to Graph, and as many kept open between
 * requests: libcurl's default cache (four per easy handle in the multi) would
 * close connections whenever few requests are running and open them again.
 * The sign-in endpoint is another host, with its own connection.
 */
static void
set_connection_limits(struct graph *g)
{
	curl_multi_setopt(g->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)g->parallel);
	curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long)g->parallel + 2);
}

struct graph *
graph_new(struct event_base *base, const struct config *cfg, char *err, size_t errlen)
{
	static int curl_ready;
	struct graph *g = calloc(1, sizeof(*g));
	char *login = NULL;
	size_t len;

	if (!g)
		return NULL;
	if (!curl_ready++)
		curl_start();
	g->base = base;
	g->alg = cfg->tenant.assertion_alg;
	g->timeout = cfg->tenant.timeout;
	g->parallel = cfg->sync.parallel;
	g->tune = (struct graph_tuning) { 1000, 60000, 8, 600 };
	g->graph_url = strip_slash(cfg->tenant.graph_url);
	g->client_id = strdup(cfg->tenant.client_id);
	g->ca_file = cfg->tenant.ca_file ? strdup(cfg->tenant.ca_file) : NULL;
	g->proxy = cfg->tenant.proxy ? strdup(cfg->tenant.proxy) : NULL;
	g->priority = cfg->tenant.throttle_priority ? strdup(cfg->tenant.throttle_priority) : NULL;
	login = strip_slash(cfg->tenant.login_url);
	len = strlen(login) + strlen(cfg->tenant.id) + 64;
	g->token_url = malloc(len);
	snprintf(g->token_url, len, "%s/%s/oauth2/v2.0/token", login, cfg->tenant.id);
	free(login);
	/* the real service wants its own resource; a simulator answers on graph_url */
	len = strlen(g->graph_url) + 16;
	g->scope = malloc(len);
	snprintf(g->scope, len, "%s/.default", g->graph_url);
	if (load_credentials(g, cfg, err, errlen) < 0) {
		graph_free(g);
		return NULL;
	}
	/* a ca_file that cannot be read fails each connection, with its name, as before */
	if (!(g->trust = trust_store(g->ca_file)))
		log_warnx("graph",
		    "cannot load the trust anchors in %s: no Graph connection until "
		    "it is readable and numprovd reloads (SIGHUP)",
		    g->ca_file ? g->ca_file : "-");
	g->multi = curl_multi_init();
	g->token_timer = evtimer_new(base, on_token_timer, g);
	g->hold_timer = evtimer_new(base, on_hold_end, g);
	g->probe_timer = evtimer_new(base, on_probe_timer, g);
	g->share = new_share();
	if (!g->multi || !g->token_timer || !g->hold_timer || !g->probe_timer || !g->share
	    || !(g->lc = loop_curl_new(base, g->multi, on_progress, g))) {
		snprintf(err, errlen, "out of memory");
		graph_free(g);
		return NULL;
	}
	set_connection_limits(g);
	return g;
}

/* TLS sessions shared by every request's easy handle (NULL: out of memory) */
static CURLSH *
new_share(void)
{
	CURLSH *sh = curl_share_init(); /* one thread: no lock callbacks */

	if (sh
	    && curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
		curl_share_cleanup(sh);
		sh = NULL;
	}
	return sh;
}

/*
 * SIGHUP reads the trust anchors again (a rotated ca_file, an updated system
 * bundle); a new store that cannot be made leaves the old one in place. A
 * connection or TLS session from before was verified against the old ones (a
 * resumed session is not verified again): from now on, new requests take neither
 * (start_easy), so a CA taken out of ca_file is no longer trusted by anything
 * numprovd sends. Requests on the wire finish on the connections they have.
 */
static void
reload_trust(struct graph *g)
{
	X509_STORE *s = trust_store(g->ca_file);
	CURLSH *sh;

	if (!s) {
		log_warnx("graph", "cannot load the trust anchors in %s; %s",
		    g->ca_file ? g->ca_file : "-",
		    g->trust ? "the ones loaded before stay" : "still no Graph connection");
		return;
	}
	if (!(sh = new_share())) {
		X509_STORE_free(s);
		log_warnx("graph", "out of memory: the trust anchors loaded before stay");
		return;
	}
	X509_STORE_free(g->trust);
	g->trust = s;
	/* the old share goes now, or with the last request on the wire that uses it */
	curl_share_cleanup(g->share);
	g->share = sh;
	g->trust_ms = now_ms();
}

void
graph_set_config(struct graph *g, const struct config *cfg)
{
	char *priority
	    = cfg->tenant.throttle_priority ? strdup(cfg->tenant.throttle_priority) : NULL;

	if (cfg->tenant.throttle_priority && !priority) {
		log_warnx("graph", "out of memory: the throttle priority stays as it was");
	} else {
		free(g->priority);
		g->priority = priority;
	}
	g->timeout = cfg->tenant.timeout;
	g->parallel = cfg->sync.parallel;
	if (!cfg->tenant.ca_file != !g->ca_file
	    || (cfg->tenant.ca_file && strcmp(cfg->tenant.ca_file, g->ca_file) != 0)) {
		char *ca = cfg->tenant.ca_file ? strdup(cfg->tenant.ca_file) : NULL;
		if (cfg->tenant.ca_file && !ca) {
			log_warnx("graph", "out of memory: tenant.ca_file stays %s", g->ca_file);
		} else {
			free(g->ca_file);
			g->ca_file = ca;
		}
	}
	reload_trust(g);
	set_connection_limits(g);
	graph_cache_clear(g); /* looked up again under the new configuration */
	if (g->suspect || g->down) {
		g->probe_at = now_ms(); /* fixed trust or limits: one probe goes now */
		/* requests parked for the outage's step go back to the queue now (one of
		 * them is the probe); one parked for its own Retry-After keeps its time */
		struct timeval now = { 0, 0 };
		int own = 0; /* a request parked for its own Retry-After */
		for (struct greq *r = g->parked; r; r = r->parked_next)
			if (r->outage_wait)
				evtimer_add(r->retry_timer, &now);
			else
				own = 1;
		if (!own)
			g->stats.next_try = 0; /* status: no step is waited for now */
		if (g->token_fetching && evtimer_pending(g->token_timer, NULL)) {
			/* a token request waiting for its step goes now too */
			evtimer_del(g->token_timer);
			g->token_fetching = 0;
		}
	}
	dispatch(g); /* a larger parallel lets waiting requests go now */
}

const char *
graph_cache_get(const struct graph *g, const char *key)
{
	for (const struct gcache *c = g->cache; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c->value;
	return NULL;
}

void
graph_cache_drop(struct graph *g, const char *key)
{
	for (struct gcache **pp = &g->cache; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0) {
			struct gcache *c = *pp;
			*pp = c->next;
			free(c->key);
			free(c->value);
			free(c);
			return;
		}
}

void
graph_cache_put(struct graph *g, const char *key, const char *value)
{
	struct gcache *c;

	graph_cache_drop(g, key);
	if (!(c = calloc(1, sizeof(*c))) || !(c->key = strdup(key))
	    || !(c->value = strdup(value))) {
		if (c)
			free(c->key);
		free(c); /* not kept: looked up again next time */
		return;
	}
	c->next = g->cache;
	g->cache = c;
}

void **
graph_lookups(struct graph *g)
{
	return &g->lookups;
}

unsigned
graph_cache_generation(const struct graph *g)
{
	return g->cache_gen;
}

void
graph_cache_clear(struct graph *g)
{
	g->cache_gen++;
	while (g->cache)
		graph_cache_drop(g, g->cache->key);
}

void
graph_free(struct graph *g)
{
	if (!g)
		return;
	/* at exit: what is still queued, parked or on the wire is dropped unanswered */
	for (int q = 0; q < 2; q++)
		while (g->queue[q]) {
			struct greq *next = g->queue[q]->next;
			req_free(g->queue[q]);
			g->queue[q] = next;
		}
	while (g->parked) {
		struct greq *next = g->parked->parked_next;
		req_free(g->parked);
		g->parked = next;
	}
	while (g->wire)
		req_free(g->wire); /* end_easy takes it off the list */
	if (g->multi)
		curl_multi_cleanup(g->multi); /* may still tell lc to drop its sockets */
	if (g->share)
		curl_share_cleanup(g->share); /* after every easy handle that used it */
	loop_curl_free(g->lc);
	if (g->token_timer)
		event_free(g->token_timer);
	if (g->hold_timer)
		event_free(g->hold_timer);
	if (g->probe_timer)
		event_free(g->probe_timer);
	if (g->secret)
		OPENSSL_cleanse(g->secret, strlen(g->secret));
	if (g->token)
		OPENSSL_cleanse(g->token, strlen(g->token));
	free(g->secret);
	free(g->token);
	graph_cache_clear(g);
	auth_cert_free(g->cert);
	X509_STORE_free(g->trust);
	free(g->graph_url);
	free(g->token_url);
	free(g->scope);
	free(g->client_id);
	free(g->ca_file);
	free(g->proxy);
	free(g->priority);
	free(g->secret_file);
	free(g->cert_file);
	free(g->key_file);
	free(g);
}
