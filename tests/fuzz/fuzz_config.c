/*
 * libFuzzer: the configuration file (src/common/config.c), libconfig's syntax and the
 * checks numprovd adds. The input is the whole file: written to one temporary file (made
 * once, rewritten for every input) and loaded from there, as numprovd and numprovctl do.
 *
 * A file that is refused gets an error text that ends within its buffer, begins with the
 * file's name and, given a shorter buffer, is only cut. A file that is accepted holds what
 * the checks promise: a tenant with one kind of credential, absolute paths, https URLs,
 * ranges with valid names, disjoint spans and their reserved numbers inside them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libconfig 1.5 (Debian 12) loses a string its parser meets where no string may be ("x"; or
 * a = 1 "";): the parser drops the token's text without freeing it, 64 bytes from
 * strbuf_append (1 byte from its scanner for "") a refused file, whether it reads a file or
 * a string. Nothing of numprovd's is in those frames; a leak of ours (say a missed
 * config_destroy) still shows, in the settings libconfig's parser allocates.
 */
const char *
__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static char path[64];
static int fd = -1;

static void
check(int ok)
{
	if (!ok)
		abort();
}

static void
remove_file(void)
{
	unlink(path);
}

static int
write_file(const uint8_t *data, size_t size)
{
	size_t done = 0;

	if (fd < 0) {
		snprintf(path, sizeof(path), "/tmp/numprov-fuzz-config-XXXXXX");
		if ((fd = mkstemp(path)) < 0) {
			perror("mkstemp");
			exit(1);
		}
		atexit(remove_file);
	}
	if (ftruncate(fd, 0) < 0)
		return -1;
	while (done < size) {
		ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static int
is_guid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (strlen(s) != sizeof(shape) - 1)
		return 0;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == '-' ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]))
			return 0;
	return 1;
}

static void
check_range(const struct config *c, size_t i)
{
	const struct cfg_range *r = &c->ranges[i];
	size_t len = strlen(r->name);
	uint64_t off;

	check(len >= 1 && len <= RANGE_NAME_MAX);
	check(strspn(r->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
	    == len);
	check(r->span.size >= 1 && r->provider != NULL);
	check(!r->match_text == !r->match);
	check(r->priority >= 0 && r->priority <= 65535);
	check(r->warn_percent >= 1 && r->warn_percent <= 100);
	check(r->quarantine_days >= -1 && r->quarantine_days <= 3650);
	check(config_range_quarantine(c, r) >= 0);
	for (size_t k = 0; k < r->n_reserved; k++)
		check(e164_range_contains(&r->span, &r->reserved[k], &off) == 1);
	for (size_t j = 0; j < i; j++) {
		check(strcmp(c->ranges[j].name, r->name) != 0);
		check(!e164_range_overlap(&c->ranges[j].span, &r->span));
	}
	check(config_range_find(c, r->name) == r);
}

static void
check_config(const struct config *c)
{
	const char *files[] = { c->tenant.client_secret_file, c->tenant.certificate_file,
		c->tenant.private_key_file, c->tenant.ca_file };

	check(c->refs == 1 && strcmp(c->file, path) == 0);
	check(c->tenant.id && c->tenant.id[0] && c->tenant.client_id);
	check(is_guid(c->tenant.client_id));
	check(!c->tenant.client_secret_file != !c->tenant.certificate_file);
	check(!c->tenant.certificate_file == !c->tenant.private_key_file);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		check(!files[i] || files[i][0] == '/');
	check(strncasecmp(c->tenant.login_url, "https://", 8) == 0);
	check(strncasecmp(c->tenant.graph_url, "https://", 8) == 0);
	check(c->tenant.timeout >= 1 && c->tenant.timeout <= 600);
	check(c->sync.retry_min >= 1 && c->sync.retry_min <= c->sync.retry_max);
	check(c->sync.parallel >= 1 && c->sync.parallel <= 64);
	check(c->database.path && c->database.path[0] == '/');
	check(c->log.facility >= 0 && c->log.level >= 0);
	for (size_t i = 0; i < c->licensing.n_teams_phone; i++)
		check(is_guid(c->licensing.teams_phone[i]));
	for (size_t i = 0; i < c->licensing.n_calling_plan; i++)
		check(is_guid(c->licensing.calling_plan[i]));
	for (size_t i = 0; i < c->n_ranges; i++)
		check_range(c, i);
}

/* "FILE:LINE: what" or "FILE: what", one line per problem; the last may be cut. */
static void
check_lines(const char *err, int full)
{
	size_t plen = strlen(path);

	for (const char *line = err;;) {
		const char *nl = strchr(line, '\n');

		if (!nl && full)
			return;
		check(strncmp(line, path, plen) == 0 && line[plen] == ':');
		if (!nl)
			return;
		line = nl + 1;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[8192], short_err[40];
	struct config *c;

	if (write_file(data, size) < 0)
		return 0;
	memset(err, 'x', sizeof(err));
	c = config_load(path, err, sizeof(err));
	if (c) {
		check_config(c);
		check(config_ref(c) == c);
		config_free(c);
		config_free(c);
		return 0;
	}
	check(memchr(err, '\0', sizeof(err)) != NULL);
	check_lines(err, strlen(err) == sizeof(err) - 1);
	/* a shorter buffer cuts the same text */
	memset(short_err, 'x', sizeof(short_err));
	check(config_load(path, short_err, sizeof(short_err)) == NULL);
	check(memchr(short_err, '\0', sizeof(short_err)) != NULL);
	check(strncmp(err, short_err, strlen(short_err)) == 0);
	return 0;
}
