/*
 * libFuzzer: a stored user record (docs/record-format.md), as numprovd reads
 * it from the inventory at start-up and before every decision. What decodes
 * must re-encode to a record that decodes to the same user, and encode the
 * same bytes again; what does not decode must leave nothing allocated.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "user.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STR_MAX 0xffff /* a stored string's longest length (u16) */

static void
same_text(const char *a, const char *b)
{
	if (strcmp(a, b) != 0)
		abort();
}

/* b was read back from the encoding of a: equal, long attributes cut at STR_MAX. */
static void
same_user(const struct user *a, const struct user *b)
{
	same_text(a->id, b->id);
	same_text(a->upn, b->upn);
	same_text(a->name, b->name);
	same_text(a->change_old, b->change_old);
	same_text(a->change_new, b->change_new);
	if (a->enabled != b->enabled || a->teams_phone != b->teams_phone
	    || a->calling_plan != b->calling_plan || a->state != b->state || a->flags != b->flags
	    || a->backoff != b->backoff || a->retry_at != b->retry_at)
		abort();
	for (int i = 0; i < RA__MAX; i++) {
		size_t n;

		if (!a->attr[i] || !b->attr[i]) {
			if (a->attr[i] || b->attr[i])
				abort();
			continue;
		}
		n = strlen(a->attr[i]);
		if (n > STR_MAX)
			n = STR_MAX;
		if (strlen(b->attr[i]) != n || memcmp(a->attr[i], b->attr[i], n) != 0)
			abort();
	}
}

/* What any decoded user must look like. */
static void
well_formed(const struct user *u)
{
	if (u->state >= US__MAX || (u->enabled != 0 && u->enabled != 1) || u->teams_phone > 1
	    || u->calling_plan > 1)
		abort();
	if (strlen(u->upn) >= sizeof(u->upn) || strlen(u->name) >= sizeof(u->name)
	    || strlen(u->change_old) >= sizeof(u->change_old)
	    || strlen(u->change_new) >= sizeof(u->change_new))
		abort();
	for (int i = 0; i < RA__MAX; i++)
		if (u->attr[i] && !u->attr[i][0]) /* empty is stored as missing */
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct user u, back, again;
	unsigned char *rec, *rec2;
	size_t len, len2;
	cJSON *view;

	if (user_decode("fuzz-id", data, size, &u) < 0) {
		for (int i = 0; i < RA__MAX; i++)
			if (u.attr[i])
				abort();
		return 0;
	}
	well_formed(&u);
	/* a version 1 record reads back whole; a JSON (version 0) one is due */
	if (size && data[0] == '{' && !(u.flags & USER_F_DUE))
		abort();
	if (user_encode(&u, &rec, &len) < 0)
		abort();
	if (len < 18 || rec[0] != USER_RECORD_VERSION)
		abort();
	if (user_decode("fuzz-id", rec, len, &back) < 0)
		abort();
	well_formed(&back);
	same_user(&u, &back);
	/* a record written by this version is read back to the byte */
	if (user_encode(&back, &rec2, &len2) < 0)
		abort();
	if (len2 != len || memcmp(rec, rec2, len) != 0)
		abort();
	if (user_decode("fuzz-id", rec2, len2, &again) < 0)
		abort();
	same_user(&back, &again);
	/* the view and a copy take whatever decodes */
	if ((view = user_to_json(&back)))
		cJSON_Delete(view);
	user_clear(&again);
	if (user_copy(&again, &back) == 0) {
		same_user(&back, &again);
		user_clear(&again);
	}
	free(rec);
	free(rec2);
	user_clear(&u);
	user_clear(&back);
	return 0;
}
