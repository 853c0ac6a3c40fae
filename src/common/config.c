#include "build-config.h"

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "rule.h"

#define MAX_ERRORS 25
#define CONFIG_MAX ((size_t)4 << 20) /* bytes: a configuration is kilobytes, not megabytes */
/* The nil GUID in the shipped example: no Entra app has it, so a file still holding it is the
 * example. */
#define EXAMPLE_CLIENT_ID "00000000-0000-0000-0000-000000000000"

/* What the loader carries while it walks the file. */
struct loader {
	const char *file;
	char *err;
	size_t errlen;
	int nerr;
};

static void cfg_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
    NP_PRINTF(3, 4);

static void
cfg_error(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
	size_t used = strlen(ld->err);
	int line = s ? config_setting_source_line(s) : 0;
	va_list ap;

	if (++ld->nerr > MAX_ERRORS || used + 1 >= ld->errlen)
		return;
	if (line > 0)
		used += snprintf(ld->err + used, ld->errlen - used, "%s%s:%d: ", used ? "\n" : "",
		    ld->file, line);
	else
		used += snprintf(
		    ld->err + used, ld->errlen - used, "%s%s: ", used ? "\n" : "", ld->file);
	if (used >= ld->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(ld->err + used, ld->errlen - used, fmt, ap);
	va_end(ap);
	/* one line a problem, whatever the values quoted in it hold (a string may span lines) */
	for (char *p = ld->err + used; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* ---- unknown keys ------------------------------------------------------- */

static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1]
			    + (tolower((unsigned char)a[i - 1])
				!= tolower((unsigned char)b[j - 1]));
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, sizeof(prev));
	}
	return prev[lb];
}

/* Report every member of group s whose name is not in known (NULL-terminated). */
static void
check_known(
    struct loader *ld, const config_setting_t *s, const char *where, const char *const *known)
{
	for (int i = 0; i < config_setting_length(s); i++) {
		const config_setting_t *m = config_setting_get_elem(s, i);
		const char *name = config_setting_name(m), *best = NULL;
		size_t bestd = 3;
		int found = 0;

		if (!name)
			continue;
		for (const char *const *k = known; *k; k++) {
			size_t d = edit_distance(name, *k);
			if (d == 0 && strcmp(name, *k) == 0)
				found = 1;
			else if (d < bestd || (d == 0 && !best))
				bestd = d, best = *k;
		}
		if (found)
			continue;
		if (best)
			cfg_error(ld, m, "unknown key '%s%s' (did you mean '%s%s'?)", where, name,
			    where, best);
		else
			cfg_error(ld, m, "unknown key '%s%s'", where, name);
	}
}

/* ---- typed, range-checked getters --------------------------------------- */

static const char *
type_name(int type)
{
	switch (type) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a number with a fraction";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a boolean";
	case CONFIG_TYPE_ARRAY:
		return "an array";
	case CONFIG_TYPE_LIST:
		return "a list";
	case CONFIG_TYPE_GROUP:
		return "a group";
	}
	return "something else";
}

/* The member, or NULL; required members that are missing are reported. */
static const config_setting_t *
member(
    struct loader *ld, const config_setting_t *g, const char *where, const char *key, int required)
{
	const config_setting_t *s = g ? config_setting_get_member(g, key) : NULL;

	if (!s && required)
		cfg_error(ld, g, "%s%s is required", where, key);
	return s;
}

static void
get_str(struct loader *ld, const config_setting_t *g, const char *where, const char *key,
    int required, const char *def, char **out)
{
	const config_setting_t *s = member(ld, g, where, key, required);
	const char *v = def;

	if (s) {
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			cfg_error(ld, s, "%s%s must be a string, not %s", where, key,
			    type_name(config_setting_type(s)));
		else
			v = config_setting_get_string(s);
	}
	/* v may be *out itself (the default is the current value): copy before freeing */
	v = v ? strdup(v) : NULL;
	free(*out);
	*out = (char *)v;
}

static void
get_int(struct loader *ld, const config_setting_t *g, const char *where, const char *key,
    long long min, long long max, int *out)
{
	const config_setting_t *s = member(ld, g, where, key, 0);
	long long v;

	if (!s)
		return;
	if (config_setting_type(s) != CONFIG_TYPE_INT
	    && config_setting_type(s) != CONFIG_TYPE_INT64) {
		cfg_error(ld, s, "%s%s must be an integer, not %s", where, key,
		    type_name(config_setting_type(s)));
		return;
	}
	v = config_setting_get_int64(s);
	if (v < min || v > max) {
		cfg_error(ld, s, "%s%s is %lld; it must be between %lld and %lld", where, key, v,
		    min, max);
		return;
	}
	*out = (int)v;
}

static void
get_bool(
    struct loader *ld, const config_setting_t *g, const char *where, const char *key, bool *out)
{
	const config_setting_t *s = member(ld, g, where, key, 0);

	if (!s)
		return;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		cfg_error(ld, s, "%s%s must be true or false, not %s", where, key,
		    type_name(config_setting_type(s)));
		return;
	}
	*out = config_setting_get_bool(s);
}

/* A string that must be one of names[]; *out is its index. */
static void
get_enum(struct loader *ld, const config_setting_t *g, const char *where, const char *key,
    int required, const char *const *names, int *out)
{
	const config_setting_t *s = member(ld, g, where, key, required);
	char list[256] = "";
	const char *v;

	if (!s)
		return;
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		cfg_error(ld, s, "%s%s must be a string, not %s", where, key,
		    type_name(config_setting_type(s)));
		return;
	}
	v = config_setting_get_string(s);
	for (int i = 0; names[i]; i++) {
		if (strcasecmp(v, names[i]) == 0) {
			*out = i;
			return;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"",
		    i ? (names[i + 1] ? ", " : " or ") : "", names[i]);
	}
	cfg_error(ld, s, "%s%s is \"%s\"; it must be %s", where, key, v, list);
}

/* A group member; reported when present but not a group. */
static const config_setting_t *
get_group(struct loader *ld, const config_setting_t *root, const char *key)
{
	const config_setting_t *s = config_setting_get_member(root, key);

	if (s && config_setting_type(s) != CONFIG_TYPE_GROUP) {
		cfg_error(ld, s, "%s must be a group { ... }, not %s", key,
		    type_name(config_setting_type(s)));
		return NULL;
	}
	return s;
}

/* ---- sections ----------------------------------------------------------- */

static int
is_guid(const char *s)
{
	static const int groups[] = { 8, 4, 4, 4, 12 };

	for (int g = 0; g < 5; g++) {
		for (int i = 0; i < groups[g]; i++, s++)
			if (!isxdigit((unsigned char)*s))
				return 0;
		if (g < 4 && *s++ != '-')
			return 0;
	}
	return *s == '\0';
}

static void
check_https(struct loader *ld, const config_setting_t *g, const char *key, const char *url)
{
	if (url && strncasecmp(url, "https://", 8) != 0)
		cfg_error(ld, config_setting_get_member(g, key),
		    "tenant.%s must be an https:// URL (got \"%s\")", key, url);
}

static void
load_tenant(struct loader *ld, const config_setting_t *root, struct config *c)
{
	static const char *const known[] = { "id", "client_id", "client_secret_file",
		"certificate_file", "private_key_file", "login_url", "graph_url", "ca_file",
		"proxy", "assertion_alg", "throttle_priority", "timeout", NULL };
	static const char *const algs[] = { "PS256", "RS256", NULL };
	static const char *const prios[] = { "low", "normal", "high", NULL };
	int prio = -1;
	const config_setting_t *g = get_group(ld, root, "tenant");
	const char *w = "tenant.";

	if (!g) {
		if (!config_setting_get_member(root, "tenant"))
			cfg_error(ld, root, "the tenant { ... } group is required");
		return;
	}
	check_known(ld, g, w, known);
	get_str(ld, g, w, "id", 1, NULL, &c->tenant.id);
	get_str(ld, g, w, "client_id", 1, NULL, &c->tenant.client_id);
	get_str(ld, g, w, "client_secret_file", 0, NULL, &c->tenant.client_secret_file);
	get_str(ld, g, w, "certificate_file", 0, NULL, &c->tenant.certificate_file);
	get_str(ld, g, w, "private_key_file", 0, NULL, &c->tenant.private_key_file);
	get_str(
	    ld, g, w, "login_url", 0, "https://login.microsoftonline.com", &c->tenant.login_url);
	get_str(ld, g, w, "graph_url", 0, "https://graph.microsoft.com", &c->tenant.graph_url);
	get_str(ld, g, w, "ca_file", 0, NULL, &c->tenant.ca_file);
	get_str(ld, g, w, "proxy", 0, NULL, &c->tenant.proxy);
	get_enum(ld, g, w, "assertion_alg", 0, algs, &c->tenant.assertion_alg);
	get_enum(ld, g, w, "throttle_priority", 0, prios, &prio);
	if (prio >= 0)
		c->tenant.throttle_priority = strdup(prios[prio]);
	get_int(ld, g, w, "timeout", 1, 600, &c->tenant.timeout);

	if (c->tenant.client_id && !is_guid(c->tenant.client_id))
		cfg_error(ld, config_setting_get_member(g, "client_id"),
		    "tenant.client_id \"%s\" is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
		    c->tenant.client_id);
	else if (c->tenant.client_id && strcmp(c->tenant.client_id, EXAMPLE_CLIENT_ID) == 0)
		/* the shipped numprovd.conf: nothing can sign in with it, so say what to do */
		cfg_error(ld, config_setting_get_member(g, "client_id"),
		    "tenant.client_id is still the example's %s: this is the example "
		    "configuration; set the tenant, the application (client) id and the "
		    "credentials of your Entra app (docs/deployment.md), then check it again",
		    EXAMPLE_CLIENT_ID);
	if (c->tenant.id && !*c->tenant.id)
		cfg_error(ld, config_setting_get_member(g, "id"), "tenant.id is empty");
	/* read again at reloads, by a daemon whose working directory is "/" */
	{
		static const char *const files[]
		    = { "client_secret_file", "certificate_file", "private_key_file", "ca_file" };
		const char *v[] = { c->tenant.client_secret_file, c->tenant.certificate_file,
			c->tenant.private_key_file, c->tenant.ca_file };

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
			if (v[i] && v[i][0] != '/')
				cfg_error(ld, config_setting_get_member(g, files[i]),
				    "tenant.%s must be an absolute path (got \"%s\")", files[i],
				    v[i]);
	}
	if (!c->tenant.client_secret_file && !c->tenant.certificate_file)
		cfg_error(ld, g,
		    "tenant needs client_secret_file, or certificate_file and private_key_file");
	if (c->tenant.client_secret_file && c->tenant.certificate_file)
		cfg_error(ld, config_setting_get_member(g, "certificate_file"),
		    "tenant has both client_secret_file and certificate_file; keep one");
	if (!!c->tenant.certificate_file != !!c->tenant.private_key_file)
		cfg_error(ld, g, "tenant.certificate_file and tenant.private_key_file go together");
	check_https(ld, g, "login_url", c->tenant.login_url);
	check_https(ld, g, "graph_url", c->tenant.graph_url);
}

static void
load_sync(struct loader *ld, const config_setting_t *root, struct config *c)
{
	static const char *const known[] = { "mode", "interval", "full_interval", "parallel",
		"retry_min", "retry_max", "operation_timeout", NULL };
	static const char *const modes[] = { "enforce", "dry-run", "off", NULL };
	const config_setting_t *g = get_group(ld, root, "sync");
	const char *w = "sync.";
	int mode = SYNC_ENFORCE;

	if (!g)
		return;
	check_known(ld, g, w, known);
	get_enum(ld, g, w, "mode", 0, modes, &mode);
	c->sync.mode = mode;
	get_int(ld, g, w, "interval", 1, 7 * 86400, &c->sync.interval);
	get_int(ld, g, w, "full_interval", 1, 30 * 86400, &c->sync.full_interval);
	get_int(ld, g, w, "parallel", 1, 64, &c->sync.parallel);
	get_int(ld, g, w, "retry_min", 1, 7 * 86400, &c->sync.retry_min);
	get_int(ld, g, w, "retry_max", 1, 30 * 86400, &c->sync.retry_max);
	get_int(ld, g, w, "operation_timeout", 1, 86400, &c->sync.operation_timeout);
	if (c->sync.retry_max < c->sync.retry_min)
		cfg_error(ld, config_setting_get_member(g, "retry_max"),
		    "sync.retry_max (%d) is shorter than sync.retry_min (%d)", c->sync.retry_max,
		    c->sync.retry_min);
}

static void
load_small_groups(struct loader *ld, const config_setting_t *root, struct config *c)
{
	static const char *const kpolicy[] = { "release_on_delete", "release_on_unlicense",
		"release_on_disable", "quarantine_days", NULL };
	static const char *const kdb[] = { "path", "durable", NULL };
	static const char *const kctl[] = { "socket", "group", NULL };
	static const char *const kdaemon[] = { "user", "group", NULL };
	static const char *const ksnmp[]
	    = { "enabled", "agentx_socket", "traps", "ping_interval", NULL };
	const config_setting_t *g;

	if ((g = get_group(ld, root, "policy"))) {
		check_known(ld, g, "policy.", kpolicy);
		get_bool(ld, g, "policy.", "release_on_delete", &c->policy.release_on_delete);
		get_bool(ld, g, "policy.", "release_on_unlicense", &c->policy.release_on_unlicense);
		get_bool(ld, g, "policy.", "release_on_disable", &c->policy.release_on_disable);
		get_int(ld, g, "policy.", "quarantine_days", 0, 3650, &c->policy.quarantine_days);
	}
	if ((g = get_group(ld, root, "database"))) {
		check_known(ld, g, "database.", kdb);
		get_str(ld, g, "database.", "path", 0, c->database.path, &c->database.path);
		get_bool(ld, g, "database.", "durable", &c->database.durable);
		if (c->database.path && c->database.path[0] != '/')
			cfg_error(ld, config_setting_get_member(g, "path"),
			    "database.path must be an absolute path (got \"%s\")",
			    c->database.path);
	}
	if ((g = get_group(ld, root, "control"))) {
		check_known(ld, g, "control.", kctl);
		get_str(ld, g, "control.", "socket", 0, c->control.socket, &c->control.socket);
		get_str(ld, g, "control.", "group", 0, c->control.group, &c->control.group);
	}
	if ((g = get_group(ld, root, "daemon"))) {
		check_known(ld, g, "daemon.", kdaemon);
		get_str(ld, g, "daemon.", "user", 0, c->daemon.user, &c->daemon.user);
		get_str(ld, g, "daemon.", "group", 0, c->daemon.group, &c->daemon.group);
		if (c->daemon.user && !c->daemon.user[0])
			cfg_error(ld, config_setting_get_member(g, "user"), "daemon.user is empty");
		if (c->daemon.group && !c->daemon.group[0])
			cfg_error(
			    ld, config_setting_get_member(g, "group"), "daemon.group is empty");
	}
	if ((g = get_group(ld, root, "snmp"))) {
		check_known(ld, g, "snmp.", ksnmp);
		get_bool(ld, g, "snmp.", "enabled", &c->snmp.enabled);
		get_bool(ld, g, "snmp.", "traps", &c->snmp.traps);
		get_str(ld, g, "snmp.", "agentx_socket", 0, c->snmp.agentx_socket,
		    &c->snmp.agentx_socket);
		get_int(ld, g, "snmp.", "ping_interval", 1, 3600, &c->snmp.ping_interval);
		if (c->snmp.agentx_socket && !c->snmp.agentx_socket[0])
			cfg_error(ld, config_setting_get_member(g, "agentx_socket"),
			    "snmp.agentx_socket is empty (snmpd's default is /var/agentx/master)");
	}
}

/* A list of service plan GUIDs. */
static void
get_guids(struct loader *ld, const config_setting_t *g, const char *key, char ***out, size_t *n)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	int len;

	if (!s)
		return;
	if (config_setting_type(s) != CONFIG_TYPE_ARRAY
	    && config_setting_type(s) != CONFIG_TYPE_LIST) {
		cfg_error(ld, s, "licensing.%s must be a list of service plan GUIDs", key);
		return;
	}
	len = config_setting_length(s);
	*out = calloc(len ? (size_t)len : 1, sizeof(**out));
	for (int i = 0; i < len; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (!v || !is_guid(v))
			cfg_error(ld, s, "licensing.%s[%d] is not a GUID", key, i);
		else
			(*out)[(*n)++] = strdup(v);
	}
}

static void
load_licensing(struct loader *ld, const config_setting_t *root, struct config *c)
{
	static const char *const known[] = { "teams_phone", "calling_plan", NULL };
	const config_setting_t *g = get_group(ld, root, "licensing");

	if (!g)
		return;
	check_known(ld, g, "licensing.", known);
	get_guids(ld, g, "teams_phone", &c->licensing.teams_phone, &c->licensing.n_teams_phone);
	get_guids(ld, g, "calling_plan", &c->licensing.calling_plan, &c->licensing.n_calling_plan);
}

static void
load_log(struct loader *ld, const config_setting_t *root, struct config *c)
{
	static const char *const known[] = { "facility", "level", NULL };
	const config_setting_t *g = get_group(ld, root, "log"), *s;
	char *v = NULL;

	if (!g)
		return;
	check_known(ld, g, "log.", known);
	if ((s = config_setting_get_member(g, "facility"))) {
		get_str(ld, g, "log.", "facility", 0, NULL, &v);
		if (v && (c->log.facility = log_facility_lookup(v)) < 0)
			cfg_error(ld, s,
			    "log.facility \"%s\" is not a syslog facility "
			    "(daemon, user, auth, authpriv, local0 .. local7)",
			    v);
	}
	if ((s = config_setting_get_member(g, "level"))) {
		get_str(ld, g, "log.", "level", 0, NULL, &v);
		if (v && (c->log.level = log_level_lookup(v)) < 0)
			cfg_error(ld, s,
			    "log.level \"%s\" is not a syslog level "
			    "(err, warning, notice, info, debug)",
			    v);
	}
	free(v);
}

/* ---- ranges ------------------------------------------------------------- */

static int
valid_range_name(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > RANGE_NAME_MAX)
		return 0;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && !strchr("._-", *n))
			return 0;
	return 1;
}

static void
load_match(struct loader *ld, const config_setting_t *rs, struct cfg_range *r)
{
	const config_setting_t *s = config_setting_get_member(rs, "match");
	struct rule_error re;

	get_str(ld, rs, "", "match", 0, NULL, &r->match_text);
	if (!s || !r->match_text)
		return;
	r->match = rule_parse(r->match_text, &re);
	if (!r->match)
		cfg_error(ld, s, "range '%s': match: %s, at character %zu ('%s') of: %s", r->name,
		    re.message, re.offset + 1, re.token, r->match_text);
}

static void
load_reserved(struct loader *ld, const config_setting_t *rs, struct cfg_range *r)
{
	const config_setting_t *s = config_setting_get_member(rs, "reserved");
	char err[160];
	int n;

	if (!s)
		return;
	if (config_setting_type(s) != CONFIG_TYPE_ARRAY
	    && config_setting_type(s) != CONFIG_TYPE_LIST) {
		cfg_error(ld, s, "range '%s': reserved must be a list of numbers [ \"+...\", ... ]",
		    r->name);
		return;
	}
	n = config_setting_length(s);
	r->reserved = calloc(n ? n : 1, sizeof(*r->reserved));
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, i);
		const char *t = config_setting_get_string(e);
		struct e164 num;
		uint64_t off;

		if (!t) {
			cfg_error(ld, s, "range '%s': reserved[%d] must be a string", r->name, i);
			continue;
		}
		if (e164_parse(t, &num, err, sizeof(err)) < 0) {
			cfg_error(ld, s, "range '%s': reserved: %s", r->name, err);
			continue;
		}
		if (r->span.size && !e164_range_contains(&r->span, &num, &off)) {
			cfg_error(ld, s, "range '%s': reserved number %s is not in the range",
			    r->name, t);
			continue;
		}
		r->reserved[r->n_reserved++] = num;
	}
}

static void
load_span(struct loader *ld, const config_setting_t *rs, struct cfg_range *r)
{
	char *first = NULL, *last = NULL, err[200];

	get_str(ld, rs, "", "first", 1, NULL, &first);
	get_str(ld, rs, "", "last", 1, NULL, &last);
	if (first && last && e164_range_init(&r->span, first, last, err, sizeof(err)) < 0) {
		memset(&r->span, 0, sizeof(r->span));
		cfg_error(
		    ld, config_setting_get_member(rs, "first"), "range '%s': %s", r->name, err);
	}
	free(first);
	free(last);
}

static void
load_range(struct loader *ld, const config_setting_t *rs, struct cfg_range *r)
{
	static const char *const known[]
	    = { "name", "type", "provider", "first", "last", "match", "priority", "warn_percent",
		      "quarantine_days", "voice_routing_policy", "location_id", "reserved", NULL };
	static const char *const types[]
	    = { "calling-plan", "operator-connect", "direct-routing", NULL };
	int type = RT_DIRECT_ROUTING;

	r->line = config_setting_source_line(rs);
	r->priority = 100;
	r->warn_percent = 90;
	r->quarantine_days = -1;
	if (config_setting_type(rs) != CONFIG_TYPE_GROUP) {
		cfg_error(ld, rs, "each entry of ranges must be a group { name = ...; ... }");
		return;
	}
	check_known(ld, rs, "", known);
	get_str(ld, rs, "", "name", 1, NULL, &r->name);
	if (!r->name)
		r->name = strdup("?");
	else if (!valid_range_name(r->name))
		cfg_error(ld, config_setting_get_member(rs, "name"),
		    "range name '%s' must be 1 to %d letters, digits, '.', '_' or '-'", r->name,
		    RANGE_NAME_MAX);
	get_enum(ld, rs, "", "type", 1, types, &type);
	r->type = type;
	get_str(ld, rs, "", "provider", 0, "", &r->provider);
	load_span(ld, rs, r);
	load_match(ld, rs, r);
	get_int(ld, rs, "", "priority", 0, 65535, &r->priority);
	get_int(ld, rs, "", "warn_percent", 1, 100, &r->warn_percent);
	get_int(ld, rs, "", "quarantine_days", 0, 3650, &r->quarantine_days);
	get_str(ld, rs, "", "voice_routing_policy", 0, NULL, &r->voice_routing_policy);
	get_str(ld, rs, "", "location_id", 0, NULL, &r->location_id);
	load_reserved(ld, rs, r);
}

static void
fmt_span(const struct e164_range *s, char *buf, size_t len)
{
	char a[E164_STRLEN], b[E164_STRLEN];

	e164_format(&s->first, a, sizeof(a));
	e164_format(&s->last, b, sizeof(b));
	snprintf(buf, len, "%s..%s", a, b);
}

/* Names unique, spans disjoint: each clash names both ranges. */
static void
check_ranges(struct loader *ld, const config_setting_t *list, struct config *c)
{
	for (size_t i = 0; i < c->n_ranges; i++) {
		struct cfg_range *b = &c->ranges[i];
		const config_setting_t *bs = config_setting_get_elem(list, i);

		for (size_t j = 0; j < i; j++) {
			struct cfg_range *a = &c->ranges[j];
			char sa[80], sb[80];

			/* an entry that is not a group has no name (and was reported) */
			if (a->name && b->name && strcmp(a->name, b->name) == 0)
				cfg_error(ld, bs,
				    "range name '%s' is used twice (first at line %d)", b->name,
				    a->line);
			if (!a->span.size || !b->span.size
			    || !e164_range_overlap(&a->span, &b->span))
				continue;
			fmt_span(&a->span, sa, sizeof(sa));
			fmt_span(&b->span, sb, sizeof(sb));
			cfg_error(ld, bs, "range '%s' (%s) overlaps range '%s' (%s, line %d)",
			    b->name, sb, a->name, sa, a->line);
		}
	}
}

static void
load_ranges(struct loader *ld, const config_setting_t *root, struct config *c)
{
	const config_setting_t *list = config_setting_get_member(root, "ranges");
	int n;

	if (!list)
		return;
	if (config_setting_type(list) != CONFIG_TYPE_LIST) {
		cfg_error(ld, list, "ranges must be a list ( { ... }, { ... } )");
		return;
	}
	n = config_setting_length(list);
	c->ranges = calloc(n ? n : 1, sizeof(*c->ranges));
	for (int i = 0; i < n; i++)
		load_range(ld, config_setting_get_elem(list, i), &c->ranges[c->n_ranges++]);
	check_ranges(ld, list, c);
}

/* ---- the file ----------------------------------------------------------- */

/*
 * libconfig is given the file's text, never its path. Left to read files itself, it waits for
 * ever on a FIFO or a terminal, reads whatever size it is given, and follows @include
 * directives to any file: a FIFO again, or a directory, on which its scanner ends the process
 * (exit(2), "input in flex scanner failed"). So the file must be a regular one of at most
 * CONFIG_MAX bytes, read once here, with no @include in it (check_text).
 */
static char *
read_text(const char *file, size_t *lenp, char *err, size_t errlen)
{
	int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block */
	struct stat st;
	char *text = NULL, *grown;
	size_t len = 0, cap = 0;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: cannot read the file: %s", file, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: cannot read the file: not a regular file", file);
		goto fail;
	}
	do {
		if (len > CONFIG_MAX || (size_t)st.st_size > CONFIG_MAX) {
			snprintf(err, errlen, "%s: cannot read the file: larger than %zu MiB", file,
			    CONFIG_MAX >> 20);
			goto fail;
		}
		/* room for its size now and a byte more, to see the end (or that it grew) */
		if (len + 1 >= cap) {
			cap = cap ? 2 * cap : (size_t)st.st_size + 2;
			if (cap > CONFIG_MAX + 2)
				cap = CONFIG_MAX + 2;
			if (!(grown = realloc(text, cap))) {
				snprintf(err, errlen, "%s: out of memory", file);
				goto fail;
			}
			text = grown;
		}
		n = read(fd, text + len, cap - 1 - len);
		if (n > 0)
			len += (size_t)n;
	} while (n > 0 || (n < 0 && errno == EINTR));
	if (n < 0) {
		snprintf(err, errlen, "%s: cannot read the file: %s", file, strerror(errno));
		goto fail;
	}
	close(fd);
	text[len] = '\0';
	*lenp = len;
	return text;
fail:
	if (fd >= 0)
		close(fd);
	free(text);
	return NULL;
}

/*
 * libconfig takes "@include" first on a line, after blanks, as an include directive: such a
 * line is refused wherever it is (in a comment or a string too). So is a NUL byte, where the
 * text libconfig is given would end.
 */
static int
check_text(const char *file, const char *text, size_t len, char *err, size_t errlen)
{
	const char *p = text, *end = text + len;

	for (int line = 1;; line++) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *q = p;

		if (!eol)
			eol = end;
		if (memchr(p, '\0', (size_t)(eol - p))) {
			snprintf(
			    err, errlen, "%s:%d: a NUL byte: this is not a text file", file, line);
			return -1;
		}
		while (q < eol && (*q == ' ' || *q == '\t'))
			q++;
		if ((size_t)(eol - q) >= 8 && memcmp(q, "@include", 8) == 0) {
			snprintf(err, errlen,
			    "%s:%d: @include is not supported: keep the configuration in one file",
			    file, line);
			return -1;
		}
		if (eol == end)
			return 0;
		p = eol + 1;
	}
}

int
config_read_checked(const char *file, struct config_t *lc, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int parsed;

	if (!(text = read_text(file, &len, err, errlen)))
		return -1;
	if (check_text(file, text, len, err, errlen) < 0) {
		free(text);
		return -1;
	}
	parsed = config_read_string(lc, text);
	free(text);
	if (!parsed) {
		snprintf(
		    err, errlen, "%s:%d: %s", file, config_error_line(lc), config_error_text(lc));
		return -1;
	}
	return 0;
}

/* ---- entry points ------------------------------------------------------- */

static void
set_defaults(struct config *c)
{
	c->sync.mode = SYNC_ENFORCE;
	c->sync.interval = 60; /* bench/README.md, bench/latency.py: why a minute */
	c->sync.full_interval = 86400;
	c->sync.parallel = 8;
	c->sync.retry_min = 60;
	c->sync.retry_max = 14400;
	c->sync.operation_timeout = 600;
	c->policy.release_on_delete = true;
	c->policy.release_on_unlicense = true;
	c->policy.release_on_disable = false;
	c->database.path = strdup(NUMPROV_STATEDIR);
	c->database.durable = true;
	c->control.socket = strdup("/run/numprov/control.sock");
	c->control.group = strdup("numprov");
	c->daemon.user = strdup("numprov");
	c->daemon.group = strdup("numprov");
	c->snmp.enabled = true;
	c->snmp.traps = true;
	c->snmp.agentx_socket = strdup("/var/agentx/master");
	c->snmp.ping_interval = 30;
	c->tenant.timeout = 60;
	c->log.facility = LOG_DAEMON;
	c->log.level = LOG_INFO;
}

static void
load_root(struct loader *ld, const config_setting_t *root, struct config *c)
{
	static const char *const known[] = { "tenant", "sync", "policy", "database", "control",
		"daemon", "snmp", "log", "licensing", "ranges", NULL };

	check_known(ld, root, "", known);
	load_tenant(ld, root, c);
	load_sync(ld, root, c);
	load_small_groups(ld, root, c);
	load_log(ld, root, c);
	load_licensing(ld, root, c);
	load_ranges(ld, root, c);
}

struct config *
config_load(const char *file, char *err, size_t errlen)
{
	struct loader ld = { file, err, errlen, 0 };
	struct config *c;
	config_t lc;

	err[0] = '\0';
	config_init(&lc);
	if (config_read_checked(file, &lc, err, errlen) < 0) {
		config_destroy(&lc);
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "%s: out of memory", file);
		config_destroy(&lc);
		return NULL;
	}
	c->refs = 1;
	c->file = strdup(file);
	set_defaults(c);
	load_root(&ld, config_root_setting(&lc), c);
	config_destroy(&lc);
	if (ld.nerr > MAX_ERRORS) {
		size_t used = strlen(err);
		snprintf(err + used, errlen - used, "\n%s: %d more errors not shown", file,
		    ld.nerr - MAX_ERRORS);
	}
	if (ld.nerr) {
		config_free(c);
		return NULL;
	}
	return c;
}

static void
range_free(struct cfg_range *r)
{
	free(r->name);
	free(r->provider);
	free(r->match_text);
	rule_free(r->match);
	free(r->voice_routing_policy);
	free(r->location_id);
	free(r->reserved);
}

struct config *
config_ref(struct config *c)
{
	if (c)
		c->refs++;
	return c;
}

void
config_free(struct config *c)
{
	if (!c || --c->refs > 0)
		return;
	free(c->file);
	free(c->tenant.id);
	free(c->tenant.client_id);
	free(c->tenant.client_secret_file);
	free(c->tenant.certificate_file);
	free(c->tenant.private_key_file);
	free(c->tenant.login_url);
	free(c->tenant.graph_url);
	free(c->tenant.ca_file);
	free(c->tenant.proxy);
	free(c->tenant.throttle_priority);
	for (size_t i = 0; i < c->licensing.n_teams_phone; i++)
		free(c->licensing.teams_phone[i]);
	for (size_t i = 0; i < c->licensing.n_calling_plan; i++)
		free(c->licensing.calling_plan[i]);
	free(c->licensing.teams_phone);
	free(c->licensing.calling_plan);
	free(c->database.path);
	free(c->control.socket);
	free(c->control.group);
	free(c->daemon.user);
	free(c->daemon.group);
	free(c->snmp.agentx_socket);
	for (size_t i = 0; i < c->n_ranges; i++)
		range_free(&c->ranges[i]);
	free(c->ranges);
	free(c);
}

const char *
config_range_type_name(enum range_type t)
{
	switch (t) {
	case RT_CALLING_PLAN:
		return "calling-plan";
	case RT_OPERATOR_CONNECT:
		return "operator-connect";
	case RT_DIRECT_ROUTING:
		return "direct-routing";
	}
	return "?";
}

const char *
config_sync_mode_name(enum sync_mode m)
{
	switch (m) {
	case SYNC_ENFORCE:
		return "enforce";
	case SYNC_DRY_RUN:
		return "dry-run";
	case SYNC_OFF:
		return "off";
	}
	return "?";
}

const struct cfg_range *
config_range_find(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->n_ranges; i++)
		if (strcmp(cfg->ranges[i].name, name) == 0)
			return &cfg->ranges[i];
	return NULL;
}

int
config_range_quarantine(const struct config *cfg, const struct cfg_range *r)
{
	return r->quarantine_days >= 0 ? r->quarantine_days : cfg->policy.quarantine_days;
}
