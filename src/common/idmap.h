/* A small hash map from an id (a string) to a time and an optional string. */
#ifndef NUMPROV_IDMAP_H
#define NUMPROV_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap_entry {
	char *key; /* NULL: empty slot */
	int64_t v;
	char *s;      /* owned, may be NULL */
	int dead;     /* removed (a tombstone) */
	uint64_t seq; /* order of insertion */
};

struct idmap {
	struct idmap_entry *e;
	size_t cap, used, live;
	uint64_t seq;
};

/* Adds or updates; s is copied (NULL keeps none). -1 when out of memory. */
int idmap_put(struct idmap *m, const char *key, int64_t v, const char *s);
struct idmap_entry *idmap_get(const struct idmap *m, const char *key);
void idmap_del(struct idmap *m, const char *key);
void idmap_clear(struct idmap *m);
static inline size_t
idmap_count(const struct idmap *m)
{
	return m->live;
}
/* Iterate: for (i = 0; (e = idmap_next(m, &i)); ) */
struct idmap_entry *idmap_next(const struct idmap *m, size_t *i);

/*
 * A set of ids, compact for the common case: a directory object id in its usual
 * form (a GUID in lower-case hex) is kept as its 16 bytes in a vector, sorted when
 * first looked up; any other id goes into an idmap. Exactly the membership an
 * idmap of the same strings gives (strcmp equality), at 16 bytes a GUID instead of
 * about 200 (a full sync of a 100,000-user tenant keeps every id it saw).
 */
struct idset {
	unsigned char (*g)[16];
	size_t n, cap;
	int sorted;
	struct idmap other;
};

int idset_add(struct idset *s, const char *id); /* -1 when out of memory */
int idset_has(struct idset *s, const char *id); /* may sort: not const */
void idset_clear(struct idset *s);

#endif
