/* The configuration file (libconfig) as one validated struct: etc/numprovd.conf. */
#ifndef NUMPROV_CONFIG_H
#define NUMPROV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "e164.h"

#define EX_CONFIG_ERROR 78 /* sysexits.h EX_CONFIG */
#define RANGE_NAME_MAX 63

enum sync_mode { SYNC_ENFORCE, SYNC_DRY_RUN, SYNC_OFF };
enum range_type { RT_CALLING_PLAN, RT_OPERATOR_CONNECT, RT_DIRECT_ROUTING };
/* Graph's numberType of a number; decide.c maps range types to it (one table). */
enum teams_number_type { TNT_DIRECT_ROUTING, TNT_CALLING_PLAN, TNT_OPERATOR_CONNECT, TNT_OTHER };

struct config_t; /* libconfig's */
struct rule;

struct cfg_range {
	char *name;
	enum range_type type;
	char *provider;
	struct e164_range span;
	char *match_text; /* NULL: the range is for every user of its type */
	struct rule *match;
	int priority;
	int warn_percent;
	int quarantine_days; /* -1: policy.quarantine_days */
	char *voice_routing_policy;
	char *location_id;
	struct e164 *reserved;
	size_t n_reserved;
	int line;
};

struct config {
	int refs; /* config_ref / config_free: the last reference frees it */
	char *file;
	struct {
		char *id, *client_id;
		char *client_secret_file, *certificate_file, *private_key_file;
		char *login_url, *graph_url, *ca_file, *proxy;
		int assertion_alg; /* enum auth_alg: PS256 (default) or RS256 */
		char *
		    throttle_priority; /* x-ms-throttle-priority: "low", "normal", "high" or NULL */
		int timeout;	       /* seconds for one HTTP request */
	} tenant;
	struct {
		char **teams_phone, **calling_plan; /* extra service plan GUIDs */
		size_t n_teams_phone, n_calling_plan;
	} licensing;
	struct {
		enum sync_mode mode;
		int interval, full_interval, parallel, retry_min, retry_max;
		int operation_timeout; /* seconds a Teams operation is polled; then settled later */
	} sync;
	struct {
		bool release_on_delete, release_on_unlicense, release_on_disable;
		int quarantine_days;
	} policy;
	struct {
		char *path;
		bool durable;
	} database;
	struct {
		char *socket, *group;
	} control;
	struct {
		char *user, *group; /* numprovd started as root runs as these */
	} daemon;
	struct {
		bool enabled, traps;
		char *agentx_socket;
		int ping_interval; /* seconds between AgentX pings and reconnect attempts */
	} snmp;
	struct {
		int facility, level;
	} log;
	struct cfg_range *ranges; /* in config order */
	size_t n_ranges;
};

/*
 * Load and validate a file. On error returns NULL and fills err with one
 * "FILE:LINE: what is wrong" line per problem found (newline-separated).
 */
struct config *config_load(const char *file, char *err, size_t errlen);
/*
 * The one way the configuration file is read, by config_load and by whatever else looks into
 * it (numprovd -t's preflight): into lc (config_init'ed by the caller), from a regular file of
 * at most 4 MiB read once, with no @include and no NUL byte in it; libconfig never opens a
 * file itself, so a FIFO or a device is refused at once. 0, or -1 with one
 * "FILE[:LINE]: what is wrong" line in err.
 */
int config_read_checked(const char *file, struct config_t *lc, char *err, size_t errlen);
/*
 * A config is shared by reference: a reload swaps the daemon's current config,
 * while a sync round or an administrator's change in flight keeps the one it
 * started with until it ends. config_free drops one reference.
 */
struct config *config_ref(struct config *cfg);
void config_free(struct config *cfg);

const char *config_range_type_name(enum range_type t);
const char *config_sync_mode_name(enum sync_mode m);
const struct cfg_range *config_range_find(const struct config *cfg, const char *name);
/* The quarantine of a range in days, policy default applied. */
int config_range_quarantine(const struct config *cfg, const struct cfg_range *r);

#endif
