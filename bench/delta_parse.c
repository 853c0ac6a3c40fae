/*
 * Delta page parsing benchmark (not a test): users per second through
 * dir_parse_page (cJSON parse + struct copy + licence classification) against a
 * bare cJSON_Parse + cJSON_Delete of the same bytes, in the same run.
 *
 * usage: bench/delta_parse [USERS_PER_PAGE] [PAGES]   (default 1000 users, 200 pages)
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

int
main(int argc, char **argv)
{
	int users = argc > 1 ? atoi(argv[1]) : 1000, pages = argc > 2 ? atoi(argv[2]) : 200;
	struct dir_licensing *lic = dir_licensing_new();
	size_t len, classified = 0;
	char *page = make_page(users, &len), err[200];
	double t0, bare, ours;

	t0 = now_s();
	for (int p = 0; p < pages; p++) {
		cJSON *j = cJSON_ParseWithLength(page, len);
		if (!j)
			return 1;
		cJSON_Delete(j);
	}
	bare = now_s() - t0;
	t0 = now_s();
	for (int p = 0; p < pages; p++) {
		struct dir_page dp;
		if (dir_parse_page(page, len, &dp, err, sizeof(err)) < 0)
			return 1;
		for (size_t i = 0; i < dp.n_users; i++) {
			struct dir_licence l;
			dir_classify(lic, &dp.users[i], &l);
			classified += (size_t)l.teams_phone;
		}
		dir_page_free(&dp);
	}
	ours = now_s() - t0;
	printf("delta page: %d users, %zu bytes (%.0f bytes per user), %d pages\n", users, len,
	    (double)len / users, pages);
	printf("  bare cJSON_Parse + cJSON_Delete:       %10.0f users/s  (%.1f MB/s)\n",
	    users * pages / bare, len * pages / bare / 1e6);
	printf("  dir_parse_page + dir_classify + free:  %10.0f users/s  (%.2f x the bare parse "
	       "time)\n",
	    users * pages / ours, ours / bare);
	printf("  (%zu users classified Teams Phone)\n", classified);
	dir_licensing_free(lic);
	free(page);
	return 0;
}
