/*
 * The control socket: numprovctl's way into the running daemon. A unix stream
 * socket, one JSON object per line each way:
 *   request  {"command":"ranges","args":["..."]}
 *   reply    {"ok":true,"result":...}  or  {"ok":false,"error":"one line"}
 */
#ifndef NUMPROV_CONTROL_H
#define NUMPROV_CONTROL_H

#include <stddef.h>

#define CONTROL_LINE_MAX (64 * 1024) /* longest request line; longer ones close the client */

struct cJSON;
struct config;
struct control;
struct event_base;
struct inventory;
struct prov;

/*
 * Listen on cfg->control.socket: mode 0660, group cfg->control.group (a missing
 * group is a warning). A stale socket file is removed; a socket another live
 * process answers on is refused. NULL with err filled on failure.
 */
struct control *control_new(struct event_base *base, struct config *cfg, struct prov *p,
    struct inventory *inv, char *err, size_t errlen);
/* After SIGHUP: the new config (a changed socket path or group is applied). */
void control_set_config(struct control *c, struct config *cfg);
/* Adds what other components say to `status` (the SNMP agent's connection). */
typedef void (*control_status_fn)(struct cJSON *status, void *arg);
void control_set_status_hook(struct control *c, control_status_fn fn, void *arg);
/* Stopping: questions (status, ranges, ...) are still answered; changes are refused. */
void control_drain(struct control *c);
/* Closes the clients (replies still in flight are dropped) and unlinks the socket. */
void control_free(struct control *c);

/* One request line, parsed: the command and up to CONTROL_MAX_ARGS string arguments. */
#define CONTROL_MAX_ARGS 8
struct control_request {
	struct cJSON *root;
	const char *command;
	const char *argv[CONTROL_MAX_ARGS];
	int argc;
};
/* 0, or -1 with a one-line reason in *err (a constant string). */
int control_parse(const char *line, size_t len, struct control_request *req, const char **err);
void control_request_free(struct control_request *req);

#endif
