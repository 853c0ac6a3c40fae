#include "build-config.h"

#include "ctl.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "inventory.h"
#include "log.h"

struct ctl {
	const char *conf_file;
	int json;
	struct config *cfg;
	struct inventory *inv;
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: numprovctl [-c FILE] [--json] COMMAND [ARGS]\n"
	    "  -c FILE   configuration file (default %s)\n"
	    "  --json    machine-readable output (anywhere on the line)\n"
	    "commands:\n"
	    "  ranges        every range: size, assigned, available, reserved, quarantined, use\n"
	    "  range NAME    the numbers of one range that are not available, with their state\n",
	    NUMPROV_CONF);
}

static int fail(const char *fmt, ...) NP_PRINTF(1, 2);

/* Errors are one line on stderr and a non-zero exit. */
static int
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "numprovctl: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Stored ranges in config order, then the removed ones (they keep their numbers). */
struct range_list {
	struct inv_range *v;
	size_t n;
};

static int
collect_range(const struct inv_range *r, void *arg)
{
	struct range_list *l = arg;
	struct inv_range *g = realloc(l->v, (l->n + 1) * sizeof(*g));

	if (!g)
		return 1;
	l->v = g;
	l->v[l->n++] = *r;
	return 0;
}

static int
config_pos(const struct config *cfg, const struct inv_range *r)
{
	for (size_t i = 0; i < cfg->n_ranges; i++)
		if (strcmp(cfg->ranges[i].name, r->name) == 0)
			return (int)i;
	return (int)cfg->n_ranges + (int)r->index;
}

static const struct config *sort_cfg;

static int
range_order(const void *a, const void *b)
{
	return config_pos(sort_cfg, a) - config_pos(sort_cfg, b);
}

static uint64_t
available(const struct inv_range *r)
{
	uint64_t used = 0;

	for (int s = INV_RESERVED; s < INV__STATES; s++)
		used += r->count[s];
	return used > r->size ? 0 : r->size - used;
}

static double
utilisation(const struct inv_range *r)
{
	return r->size ? 100.0 * (double)(r->size - available(r)) / (double)r->size : 0.0;
}

static const char *
status(const struct config *cfg, const struct inv_range *r)
{
	const struct cfg_range *cr = config_range_find(cfg, r->name);

	if (r->removed || !cr)
		return "removed";
	if (available(r) == 0)
		return "exhausted";
	return utilisation(r) >= cr->warn_percent ? "warning" : "ok";
}

static void
ranges_json(struct ctl *c, const struct range_list *l)
{
	cJSON *arr = cJSON_CreateArray();
	char *s;

	for (size_t i = 0; i < l->n; i++) {
		const struct inv_range *r = &l->v[i];
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "name", r->name);
		cJSON_AddNumberToObject(o, "index", r->index);
		cJSON_AddStringToObject(o, "type", config_range_type_name(r->type));
		cJSON_AddStringToObject(o, "provider", r->provider);
		cJSON_AddStringToObject(o, "first", r->first);
		cJSON_AddStringToObject(o, "last", r->last);
		cJSON_AddNumberToObject(o, "size", (double)r->size);
		cJSON_AddNumberToObject(o, "assigned", (double)r->count[INV_ASSIGNED]);
		cJSON_AddNumberToObject(o, "pending", (double)r->count[INV_PENDING]);
		cJSON_AddNumberToObject(o, "available", (double)available(r));
		cJSON_AddNumberToObject(o, "reserved", (double)r->count[INV_RESERVED]);
		cJSON_AddNumberToObject(o, "quarantined", (double)r->count[INV_QUARANTINED]);
		cJSON_AddNumberToObject(o, "utilisation", (double)((long)(utilisation(r) * 10 + 0.5)) / 10);
		cJSON_AddStringToObject(o, "status", status(c->cfg, r));
		cJSON_AddItemToArray(arr, o);
	}
	s = cJSON_Print(arr);
	puts(s);
	free(s);
	cJSON_Delete(arr);
}

static void
ranges_table(struct ctl *c, const struct range_list *l)
{
	int w = 5;

	for (size_t i = 0; i < l->n; i++)
		if ((int)strlen(l->v[i].name) > w)
			w = (int)strlen(l->v[i].name);
	printf("%-*s  %-16s  %-12s  %9s  %9s  %9s  %9s  %9s  %11s  %6s  %s\n", w, "RANGE", "TYPE",
	    "PROVIDER", "SIZE", "ASSIGNED", "PENDING", "AVAILABLE", "RESERVED", "QUARANTINED", "USED",
	    "STATUS");
	for (size_t i = 0; i < l->n; i++) {
		const struct inv_range *r = &l->v[i];

		printf("%-*s  %-16s  %-12.12s  %9llu  %9llu  %9llu  %9llu  %9llu  %11llu  %5.1f%%  %s\n",
		    w, r->name, config_range_type_name(r->type), r->provider[0] ? r->provider : "-",
		    (unsigned long long)r->size, (unsigned long long)r->count[INV_ASSIGNED],
		    (unsigned long long)r->count[INV_PENDING], (unsigned long long)available(r),
		    (unsigned long long)r->count[INV_RESERVED],
		    (unsigned long long)r->count[INV_QUARANTINED], utilisation(r), status(c->cfg, r));
	}
}

static int
cmd_ranges(struct ctl *c)
{
	struct range_list l = { NULL, 0 };

	if (inv_foreach_range(c->inv, collect_range, &l) != INV_OK) {
		free(l.v);
		return fail("%s", "cannot read the ranges");
	}
	sort_cfg = c->cfg;
	qsort(l.v, l.n, sizeof(*l.v), range_order);
	if (c->json)
		ranges_json(c, &l);
	else
		ranges_table(c, &l);
	free(l.v);
	return 0;
}

struct range_numbers {
	const char *name;
	cJSON *arr;
	int json;
};

static int
print_number(const struct inv_number *n, void *arg)
{
	struct range_numbers *rn = arg;
	char since[32] = "-", until[32] = "";
	time_t t = (time_t)n->since;
	struct tm tm;

	if (strcmp(n->range, rn->name) != 0)
		return 0;
	if (n->since && gmtime_r(&t, &tm))
		strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
	t = (time_t)n->until;
	if (n->state == INV_QUARANTINED && gmtime_r(&t, &tm))
		strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (rn->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "number", n->number);
		cJSON_AddStringToObject(o, "state", inv_state_name(n->state));
		cJSON_AddStringToObject(o, "user_id", n->user_id);
		cJSON_AddStringToObject(o, "since", since);
		if (until[0])
			cJSON_AddStringToObject(o, "until", until);
		cJSON_AddItemToArray(rn->arr, o);
	} else {
		printf("%-24s  %-11s  %-36s  %-20s  %s\n", n->number, inv_state_name(n->state),
		    n->user_id[0] ? n->user_id : "-", since, until);
	}
	return 0;
}

static int
cmd_range(struct ctl *c, const char *name)
{
	struct range_numbers rn = { name, NULL, c->json };
	struct inv_range r;
	char *s;

	if (inv_get_range(c->inv, name, &r) != INV_OK)
		return fail("no range named '%s'", name);
	if (c->json)
		rn.arr = cJSON_CreateArray();
	else
		printf("%-24s  %-11s  %-36s  %-20s  %s\n", "NUMBER", "STATE", "USER", "SINCE", "UNTIL");
	inv_foreach_number(c->inv, print_number, &rn);
	if (c->json) {
		s = cJSON_Print(rn.arr);
		puts(s);
		free(s);
		cJSON_Delete(rn.arr);
	}
	return 0;
}

/* --json may stand anywhere; it is taken out before the options are read. */
static int
strip_json(int argc, char **argv, int *json)
{
	int n = 0;

	for (int i = 0; i < argc; i++) {
		if (i > 0 && (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0))
			*json = 1;
		else
			argv[n++] = argv[i];
	}
	argv[n] = NULL;
	return n;
}

static void
quiet_log(int prio, const char *token, const char *msg)
{
	if (prio <= LOG_WARNING)
		fprintf(stderr, "numprovctl: %s: %s\n", token ? token : "", msg);
}

static int
run_ranges(struct ctl *c, char **argv)
{
	(void)argv;
	return cmd_ranges(c);
}

static int
run_range(struct ctl *c, char **argv)
{
	return cmd_range(c, argv[1]);
}

static const struct command {
	const char *name;
	int argc; /* words, the command's own included */
	int (*run)(struct ctl *c, char **argv);
} commands[] = {
	{ "ranges", 1, run_ranges },
	{ "range", 2, run_range },
};

/* The command is checked before anything is opened: usage errors cost nothing. */
static const struct command *
find_command(int argc, char **argv)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[0], commands[i].name) == 0 && argc == commands[i].argc)
			return &commands[i];
	return NULL;
}

int
ctl_main(int argc, char **argv)
{
	struct ctl c = { .conf_file = NUMPROV_CONF };
	const struct command *cmd;
	char err[8192];
	int opt, rc;

	argc = strip_json(argc, argv, &c.json);
	while ((opt = getopt(argc, argv, "+c:h")) != -1) {
		if (opt == 'c') {
			c.conf_file = optarg;
		} else {
			usage(opt == 'h' ? stdout : stderr);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (optind >= argc || !(cmd = find_command(argc - optind, argv + optind))) {
		usage(stderr);
		return 2;
	}
	log_register(quiet_log);
	if (!(c.cfg = config_load(c.conf_file, err, sizeof(err)))) {
		fprintf(stderr, "%s\n", err);
		return EX_CONFIG_ERROR;
	}
	if ((rc = inv_open(c.cfg->database.path, INV_OPEN_READONLY, &c.inv, err, sizeof(err)))) {
		config_free(c.cfg);
		return fail("%s", err);
	}
	rc = cmd->run(&c, argv + optind);
	inv_close(c.inv);
	config_free(c.cfg);
	return rc;
}
