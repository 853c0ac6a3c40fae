/* Shared scaffolding for the Check unit tests. */
#ifndef NUMPROV_TESTUTIL_H
#define NUMPROV_TESTUTIL_H

#include <check.h>
#include <stdlib.h>

/* One suite per test program; the exit status tells automake's harness. */
#define NP_CHECK_MAIN(suite_fn)                                                                    \
	int main(void)                                                                             \
	{                                                                                          \
		SRunner *sr = srunner_create(suite_fn());                                          \
		srunner_run_all(sr, CK_NORMAL);                                                    \
		int failed = srunner_ntests_failed(sr);                                            \
		srunner_free(sr);                                                                  \
		return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                                  \
	}

#endif
