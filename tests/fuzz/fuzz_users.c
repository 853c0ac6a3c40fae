/* libFuzzer: a users/delta page from Graph, parsed and classified. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "directory.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dir_licensing *lic = dir_licensing_new();
	struct dir_page p;
	char err[200];

	/* the same bytes as a subscribedSkus answer teach the table plan names */
	dir_licensing_load_skus(lic, (const char *)data, size);
	if (dir_parse_page((const char *)data, size, &p, err, sizeof(err)) < 0) {
		if (!err[0])
			abort();
		dir_licensing_free(lic);
		return 0;
	}
	for (size_t i = 0; i < p.n_users; i++) {
		struct dir_licence l;
		struct rule_attrs a;

		if (!p.users[i].id || !p.users[i].id[0])
			abort();
		dir_classify(lic, &p.users[i], &l);
		dir_user_attrs(&p.users[i], &a);
		for (int k = 0; k < RA__MAX; k++)
			if (a.v[k])
				(void)strlen(a.v[k]);
	}
	dir_page_free(&p);
	dir_licensing_free(lic);
	return 0;
}
