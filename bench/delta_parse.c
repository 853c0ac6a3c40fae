/*
 * Delta page parsing benchmark (not a test): users per second through
 * dir_parse_page + dir_classify + dir_page_free, against a bare
 * cJSON_ParseWithLength + cJSON_Delete of the same bytes, in the same run.
 *
 * usage: bench/delta_parse [USERS_PER_PAGE] [PAGES] [both|bare|ours]
 *        (default 1000 users, 200 pages, both)
 *
 * Issue 10 sets the goal in instructions, which callgrind counts the same in
 * every run where the clock does not. One run gives both counts, as the
 * inclusive cost of bench_bare and of bench_ours (divide by USERS * PAGES):
 *
 *   valgrind --tool=callgrind --callgrind-out-file=cg.out bench/delta_parse 1000 20
 *   callgrind_annotate --inclusive=yes --auto=no cg.out | grep -E 'bench_(bare|ours)'
 *
 * Each phase first runs one page that neither the clock nor those two counts
 * see, so that both start from a warm heap.
 */
#include "build-config.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "directory.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A page as Graph sends it for the $select numprovd uses. */
static char *
make_page(int users, size_t *len)
{
	static const char *cities[] = { "London", "Abingdon", "Paris", "Z\\u00fcrich", "Leeds" };
	size_t cap = (size_t)users * 1200 + 256, n = 0;
	char *s = malloc(cap);

	n += (size_t)snprintf(s + n, cap - n,
	    "{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#users\",\"value\":[");
	for (int i = 0; i < users; i++)
		n += (size_t)snprintf(s + n, cap - n,
		    "%s{\"id\":\"%08x-6b2f-4e57-9a41-5c2d7e8f9a10\",\"userPrincipalName\":\"user%d@"
		    "contoso.com\","
		    "\"displayName\":\"User Number %d\",\"accountEnabled\":true,\"city\":\"%s\","
		    "\"officeLocation\":\"Office "
		    "%d\",\"usageLocation\":\"GB\",\"country\":\"United Kingdom\","
		    "\"state\":null,\"department\":\"Sales\",\"companyName\":\"Contoso\","
		    "\"jobTitle\":\"Engineer\","
		    "\"employeeType\":\"Employee\",\"onPremisesExtensionAttributes\":{"
		    "\"extensionAttribute1\":\"a\","
		    "\"extensionAttribute2\":null,\"extensionAttribute3\":null},"
		    "\"assignedPlans\":[{\"assignedDateTime\":\"2026-01-01T10:00:00Z\","
		    "\"capabilityStatus\":\"Enabled\","
		    "\"service\":\"MicrosoftCommunicationsOnline\",\"servicePlanId\":\"4828c8ec-"
		    "dc2e-4779-b502-87ac9ce28ab7\"},"
		    "{\"assignedDateTime\":\"2026-01-01T10:00:00Z\",\"capabilityStatus\":"
		    "\"Enabled\","
		    "\"service\":\"TeamspaceAPI\",\"servicePlanId\":\"57ff2da0-773e-42df-b2af-"
		    "ffb7a2317929\"},"
		    "{\"assignedDateTime\":\"2026-01-01T10:00:00Z\",\"capabilityStatus\":"
		    "\"Deleted\","
		    "\"service\":\"exchange\",\"servicePlanId\":\"efb87545-963c-4e0d-99df-"
		    "69c6916d9eb0\"}]}",
		    i ? "," : "", (unsigned)i, i, i, cities[i % 5], i % 3);
	n += (size_t)snprintf(s + n, cap - n,
	    "],\"@odata.nextLink\":\"https://graph.microsoft.com/v1.0/users/"
	    "delta?$skiptoken=abc\"}");
	*len = n;
	return s;
}

/* One page through cJSON alone. */
static int
bare_page(const char *page, size_t len)
{
	cJSON *j = cJSON_ParseWithLength(page, len);

	if (!j)
		return -1;
	cJSON_Delete(j);
	return 0;
}

/* One page into users and licence classes: how many have Teams Phone, or -1. */
static long
our_page(const struct dir_licensing *lic, const char *page, size_t len)
{
	struct dir_page dp;
	long teams_phone = 0;
	char err[200];

	if (dir_parse_page(page, len, &dp, err, sizeof(err)) < 0)
		return -1;
	for (size_t i = 0; i < dp.n_users; i++) {
		struct dir_licence l;
		dir_classify(lic, &dp.users[i], &l);
		teams_phone += l.teams_phone;
	}
	dir_page_free(&dp);
	return teams_phone;
}

/* The measured phases, noinline so that callgrind counts each apart. */
__attribute__((noinline)) static int
bench_bare(const char *page, size_t len, int pages)
{
	for (int p = 0; p < pages; p++)
		if (bare_page(page, len) < 0)
			return -1;
	return 0;
}

__attribute__((noinline)) static long
bench_ours(const struct dir_licensing *lic, const char *page, size_t len, int pages)
{
	long teams_phone = 0, n;

	for (int p = 0; p < pages; p++) {
		if ((n = our_page(lic, page, len)) < 0)
			return -1;
		teams_phone += n;
	}
	return teams_phone;
}

int
main(int argc, char **argv)
{
	int users = argc > 1 ? atoi(argv[1]) : 1000, pages = argc > 2 ? atoi(argv[2]) : 200;
	const char *which = argc > 3 ? argv[3] : "both";
	int bare_on = strcmp(which, "ours") != 0, ours_on = strcmp(which, "bare") != 0;
	struct dir_licensing *lic = dir_licensing_new();
	size_t len;
	char *page;
	double t0, bare = 0, ours = 0;
	long teams_phone = 0;

	if (users < 1 || pages < 1 || (!bare_on && !ours_on) || !lic) {
		fprintf(stderr, "usage: %s [USERS_PER_PAGE] [PAGES] [both|bare|ours]\n", argv[0]);
		return 2;
	}
	page = make_page(users, &len);
	printf("delta page: %d users, %zu bytes (%.0f bytes per user), %d pages\n", users, len,
	    (double)len / users, pages);
	if (bare_on) {
		if (bare_page(page, len) < 0)
			return 1;
		t0 = now_s();
		if (bench_bare(page, len, pages) < 0)
			return 1;
		bare = now_s() - t0;
		printf("  bare cJSON_Parse + cJSON_Delete:       %10.0f users/s  (%.1f MB/s)\n",
		    users * pages / bare, len * pages / bare / 1e6);
	}
	if (ours_on) {
		if (our_page(lic, page, len) < 0)
			return 1;
		t0 = now_s();
		teams_phone = bench_ours(lic, page, len, pages);
		ours = now_s() - t0;
		if (teams_phone < 0)
			return 1;
		printf("  dir_parse_page + dir_classify + free:  %10.0f users/s",
		    users * pages / ours);
		if (bare_on)
			printf("  (%.2f x the bare parse time)", ours / bare);
		printf("\n  (%ld users classified Teams Phone)\n", teams_phone);
	}
	dir_licensing_free(lic);
	free(page);
	return 0;
}
