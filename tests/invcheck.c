/*
 * Check an inventory the way numprovd's next start finds it: open it with
 * recovery (numprovd must be stopped) and print inv_verify's report.
 *
 * usage: invcheck [-u] DATABASE-PATH
 *   -u  also list the number holders, one "user ID NUMBER STATE" line each
 * exit: 0 consistent, 1 problems found, 2 cannot open or read the inventory
 */
#include "build-config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "inventory.h"
#include "log.h"

static int
print_user(const struct inv_user *u, void *arg)
{
	(void)arg;
	printf("user %s %s %s\n", u->id, u->number, inv_state_name(u->state));
	return 0;
}

int
main(int argc, char **argv)
{
	char err[4096], report[16384], probe[4096];
	struct inventory *inv;
	int users = 0, problems;

	if (argc == 3 && strcmp(argv[1], "-u") == 0) {
		users = 1;
		argv++;
		argc--;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: invcheck [-u] DATABASE-PATH\n");
		return 2;
	}
	log_init("invcheck", LOG_USER, LOG_WARNING, LOG_DEST_STDERR);
	snprintf(probe, sizeof(probe), "%s/numbers.db", argv[1]);
	if (access(probe, F_OK) != 0) {
		fprintf(stderr, "invcheck: no inventory in %s\n", argv[1]);
		return 2;
	}
	if (inv_open(argv[1], 0, &inv, err, sizeof(err)) != INV_OK) {
		fprintf(stderr, "invcheck: %s\n", err);
		return 2;
	}
	problems = inv_verify(inv, report, sizeof(report));
	if (problems > 0)
		printf("%d problem%s\n%s\n", problems, problems == 1 ? "" : "s", report);
	else if (problems == 0)
		printf("consistent\n");
	if (problems == 0 && users && inv_foreach_user(inv, print_user, NULL) != INV_OK)
		problems = -1;
	inv_close(inv);
	if (problems < 0) {
		fprintf(stderr, "invcheck: cannot read the inventory in %s\n", argv[1]);
		return 2;
	}
	return problems > 0 ? 1 : 0;
}
