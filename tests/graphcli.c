/*
 * Drives the Graph client against the simulator for the integration tests:
 * one command, JSON lines on stdout, the client's statistics as the last line.
 *
 * usage: graphcli -c CONF [--fast] [--polls N] [--warm] COMMAND [ARGS]
 *   skus                            load /subscribedSkus, classify the built-in plans
 *   delta [LINK]                    one users/delta round: a line per user, then the link
 *   numbers                         every number of the tenant
 *   assign USER NUMBER TYPE [LOC]   assignNumber and its operation
 *   unassign NUMBER TYPE
 *   userconfig USER
 *   usernumbers USER                the numbers Teams shows on USER
 *   policy USER TYPE NAME
 *   burst N                         N GETs of /subscribedSkus at once
 * --fast shrinks retry and poll waits so tests run quickly; --polls N sets how many
 * times an operation is polled before giving up; --warm sends one GET of
 * /subscribedSkus first and starts COMMAND once it is answered, so COMMAND's
 * first request goes on a kept connection.
 */
#include "build-config.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "directory.h"
#include "graph.h"
#include "log.h"
#include "teams.h"

static struct event_base *base;
static struct graph *graph;
static struct dir_licensing *lic;
static int failed;
static int cmd_argc;
static char **cmd_argv;
static int start(int argc, char **argv);

static void
emit(cJSON *o)
{
	char *s = cJSON_PrintUnformatted(o);

	puts(s);
	fflush(stdout);
	free(s);
	cJSON_Delete(o);
}

static void
emit_result(const struct teams_result *r)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddBoolToObject(o, "ok", r->ok);
	cJSON_AddNumberToObject(o, "status", (double)r->status);
	cJSON_AddStringToObject(o, "error", r->error);
	cJSON_AddStringToObject(o, "detail", r->detail);
	cJSON_AddNumberToObject(o, "resent", r->resent);
	cJSON_AddStringToObject(o, "client_request_id", r->client_request_id);
	failed |= !r->ok;
	emit(o);
}

static void
on_result(const struct teams_result *r, void *arg)
{
	(void)arg;
	emit_result(r);
}

static void
on_page(const struct dir_page *p, int full, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < p->n_users; i++) {
		const struct dir_user *u = &p->users[i];
		struct dir_licence l;
		cJSON *o = cJSON_CreateObject();

		dir_classify(lic, u, &l);
		cJSON_AddStringToObject(o, "id", u->id);
		cJSON_AddStringToObject(o, "removed",
		    u->removed == DIR_PRESENT		    ? ""
			: u->removed == DIR_REMOVED_DELETED ? "deleted"
							    : "changed");
		if (u->upn)
			cJSON_AddStringToObject(o, "upn", u->upn);
		cJSON_AddNumberToObject(o, "enabled", u->account_enabled);
		cJSON_AddBoolToObject(o, "teams_phone", l.teams_phone);
		cJSON_AddBoolToObject(o, "calling_plan", l.calling_plan);
		cJSON_AddBoolToObject(o, "full", full);
		for (int a = 0; a < RA__MAX; a++)
			if (u->attr[a])
				cJSON_AddStringToObject(
				    o, rule_attr_name((enum rule_attr)a), u->attr[a]);
		emit(o);
	}
}

static void
on_delta_done(const struct delta_done *d, void *arg)
{
	cJSON *o = cJSON_CreateObject();

	(void)arg;
	cJSON_AddBoolToObject(o, "ok", d->status == DELTA_OK);
	cJSON_AddBoolToObject(o, "full", d->full);
	cJSON_AddStringToObject(o, "delta_link", d->delta_link ? d->delta_link : "");
	cJSON_AddNumberToObject(o, "pages", (double)d->pages);
	cJSON_AddNumberToObject(o, "users", (double)d->users);
	cJSON_AddNumberToObject(o, "removed", (double)d->removed);
	cJSON_AddStringToObject(o, "error", d->error);
	failed |= d->status != DELTA_OK;
	emit(o);
}

static void
on_numbers(const struct teams_number *v, size_t n, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "number", v[i].number);
		cJSON_AddStringToObject(o, "type", teams_type_name(v[i].type));
		cJSON_AddStringToObject(o, "target", v[i].target);
		cJSON_AddStringToObject(o, "activation", v[i].activation);
		emit(o);
	}
}

static void
on_numbers_done(int ok, size_t total, const char *error, void *arg)
{
	cJSON *o = cJSON_CreateObject();

	(void)arg;
	cJSON_AddBoolToObject(o, "ok", ok);
	cJSON_AddNumberToObject(o, "total", (double)total);
	cJSON_AddStringToObject(o, "error", error ? error : "");
	failed |= !ok;
	emit(o);
}

static void
on_userconfig(const struct teams_result *r, const struct teams_user_config *c, void *arg)
{
	cJSON *o = cJSON_CreateObject(), *nums = cJSON_AddArrayToObject(o, "numbers");

	(void)arg;
	cJSON_AddBoolToObject(o, "ok", r->ok);
	cJSON_AddNumberToObject(o, "status", (double)r->status);
	cJSON_AddBoolToObject(o, "enterprise_voice", c->enterprise_voice);
	cJSON_AddStringToObject(o, "features", c->features);
	for (size_t i = 0; i < c->n_numbers; i++)
		cJSON_AddItemToArray(nums, cJSON_CreateString(c->numbers[i]));
	failed |= !r->ok;
	emit(o);
}

static void
on_user_numbers(const struct teams_result *r, const struct teams_number *v, size_t n, void *arg)
{
	cJSON *o = cJSON_CreateObject(), *nums = cJSON_AddArrayToObject(o, "numbers");

	(void)arg;
	cJSON_AddBoolToObject(o, "ok", r->ok);
	cJSON_AddNumberToObject(o, "status", (double)r->status);
	cJSON_AddStringToObject(o, "error", r->error);
	cJSON_AddStringToObject(o, "detail", r->detail);
	cJSON_AddStringToObject(o, "client_request_id", r->client_request_id);
	for (size_t i = 0; i < n; i++) {
		cJSON *e = cJSON_CreateObject();

		cJSON_AddStringToObject(e, "number", v[i].number);
		cJSON_AddStringToObject(e, "type", teams_type_name(v[i].type));
		cJSON_AddStringToObject(e, "target", v[i].target);
		cJSON_AddStringToObject(e, "activation", v[i].activation);
		cJSON_AddStringToObject(e, "status", v[i].status);
		cJSON_AddItemToArray(nums, e);
	}
	failed |= !r->ok;
	emit(o);
}

static void
on_skus(const struct teams_result *r, void *arg)
{
	static const char *probe[] = { "4828c8ec-dc2e-4779-b502-87ac9ce28ab7",
		"4ed3ff63-69d7-4fb7-b984-5aec7f605ca8", "505e180f-f7e0-4b65-91d4-00d670bbd18c" };
	cJSON *o = cJSON_CreateObject(), *cls = cJSON_AddObjectToObject(o, "classes");

	(void)arg;
	cJSON_AddBoolToObject(o, "ok", r->ok);
	cJSON_AddNumberToObject(o, "status", (double)r->status);
	cJSON_AddStringToObject(o, "detail", r->detail);
	cJSON_AddStringToObject(o, "error", r->error);
	for (size_t i = 0; i < sizeof(probe) / sizeof(probe[0]); i++)
		cJSON_AddNumberToObject(cls, probe[i], dir_licensing_class(lic, probe[i]));
	failed |= !r->ok;
	emit(o);
}

static void
on_burst(const struct graph_result *r, void *arg)
{
	(void)arg;
	failed |= r->status != 200;
}

static void
on_warm(const struct graph_result *r, void *arg)
{
	(void)arg;
	if (r->status != 200 || start(cmd_argc, cmd_argv) < 0) {
		fprintf(stderr, "graphcli: warm-up failed (%ld) or bad command\n", r->status);
		failed = 2;
	}
}

static enum teams_number_type
parse_type(const char *s)
{
	for (int t = 0; t < TNT_OTHER; t++)
		if (strcmp(s, teams_type_name((enum teams_number_type)t)) == 0)
			return (enum teams_number_type)t;
	return TNT_OTHER;
}

static int
start(int argc, char **argv)
{
	const char *cmd = argv[0];

	if (strcmp(cmd, "skus") == 0)
		return teams_load_skus(graph, lic, on_skus, NULL);
	if (strcmp(cmd, "delta") == 0)
		return teams_delta(graph, argc > 1 ? argv[1] : NULL, on_page, on_delta_done, NULL);
	if (strcmp(cmd, "numbers") == 0)
		return teams_list_numbers(graph, on_numbers, on_numbers_done, NULL);
	if (strcmp(cmd, "assign") == 0 && argc >= 4)
		return teams_assign(graph, argv[1], argv[2], parse_type(argv[3]),
		    argc > 4 ? argv[4] : NULL, on_result, NULL);
	if (strcmp(cmd, "unassign") == 0 && argc == 3)
		return teams_unassign(graph, argv[1], parse_type(argv[2]), on_result, NULL);
	if (strcmp(cmd, "userconfig") == 0 && argc == 2)
		return teams_user_config(graph, argv[1], on_userconfig, NULL);
	if (strcmp(cmd, "usernumbers") == 0 && argc == 2)
		return teams_user_numbers(graph, argv[1], on_user_numbers, NULL);
	if (strcmp(cmd, "policy") == 0 && argc == 4)
		return teams_assign_policy(graph, argv[1], argv[2], argv[3], on_result, NULL);
	if (strcmp(cmd, "burst") == 0 && argc == 2) {
		for (int i = 0; i < atoi(argv[1]); i++)
			if (graph_get(graph, "/v1.0/subscribedSkus", on_burst, NULL) < 0)
				return -1;
		return 0;
	}
	return -1;
}

static void
print_stats(void)
{
	struct graph_stats st;
	cJSON *o = cJSON_CreateObject(), *s = cJSON_AddObjectToObject(o, "stats");

	graph_get_stats(graph, &st);
	cJSON_AddNumberToObject(s, "requests", (double)st.requests);
	cJSON_AddNumberToObject(s, "attempts", (double)st.attempts);
	cJSON_AddNumberToObject(s, "retries", (double)st.retries);
	cJSON_AddNumberToObject(s, "throttled", (double)st.throttled);
	cJSON_AddNumberToObject(s, "token_fetches", (double)st.token_fetches);
	cJSON_AddNumberToObject(s, "max_in_flight", st.max_in_flight);
	emit(o);
}

int
main(int argc, char **argv)
{
	const char *conf = NULL;
	struct config *cfg;
	char err[8192];
	int i = 1, fast = 0, polls = 0, warm = 0, rc;
	struct teams_tuning tt = { 500, 30000, 40 };

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			conf = argv[++i];
		else if (strcmp(argv[i], "--fast") == 0)
			fast = 1;
		else if (strcmp(argv[i], "--polls") == 0 && i + 1 < argc)
			polls = atoi(argv[++i]);
		else if (strcmp(argv[i], "--warm") == 0)
			warm = 1;
	}
	if (!conf || i >= argc) {
		fprintf(stderr,
		    "usage: graphcli -c CONF [--fast] [--polls N] [--warm] COMMAND [ARGS]\n");
		return 2;
	}
	log_init("graphcli", LOG_USER, LOG_DEBUG, LOG_DEST_STDERR);
	if (!(cfg = config_load(conf, err, sizeof(err)))) {
		fprintf(stderr, "%s\n", err);
		return 78;
	}
	base = event_base_new();
	lic = dir_licensing_from_config(cfg);
	if (!(graph = graph_new(base, cfg, err, sizeof(err)))) {
		fprintf(stderr, "graphcli: %s\n", err);
		dir_licensing_free(lic);
		event_base_free(base);
		config_free(cfg);
		return 1;
	}
	if (fast) {
		graph_tune(graph, &(struct graph_tuning) { 50, 400, 6, 3 });
		tt = (struct teams_tuning) { 20, 200, 60 };
	}
	if (polls > 0)
		tt.poll_max = polls;
	teams_tune(&tt);
	cmd_argc = argc - i;
	cmd_argv = argv + i;
	rc = warm ? graph_get(graph, "/v1.0/subscribedSkus", on_warm, NULL)
		  : start(cmd_argc, cmd_argv);
	if (rc < 0) {
		fprintf(stderr, "graphcli: bad command\n");
		failed = 2;
	} else {
		event_base_dispatch(base);
		print_stats();
	}
	graph_free(graph);
	dir_licensing_free(lic);
	event_base_free(base);
	config_free(cfg);
	return failed;
}
