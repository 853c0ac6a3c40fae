#include "build-config.h"

#include "idmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static struct idmap_entry *
slot(const struct idmap *m, const char *key, int for_insert)
{
	size_t i, mask = m->cap - 1;
	struct idmap_entry *tomb = NULL;

	if (!m->cap)
		return NULL;
	for (i = hash(key) & mask;; i = (i + 1) & mask) {
		struct idmap_entry *e = &m->e[i];
		if (!e->key)
			return for_insert && tomb ? tomb : e;
		if (e->dead) {
			if (!tomb)
				tomb = e;
		} else if (strcmp(e->key, key) == 0) {
			return e;
		}
	}
}

static int
grow(struct idmap *m)
{
	struct idmap old = *m;
	size_t cap = 64;

	/* sized on the live entries: tombstones are dropped, so churn does not grow it */
	while (cap < 4 * (m->live + 1))
		cap *= 2;
	if (!(m->e = calloc(cap, sizeof(*m->e)))) {
		*m = old;
		return -1;
	}
	m->cap = cap;
	m->used = m->live = 0;
	m->seq = old.seq;
	for (size_t i = 0; i < old.cap; i++) {
		struct idmap_entry *e = &old.e[i];
		if (!e->key)
			continue;
		if (e->dead) {
			free(e->key);
			continue;
		}
		*slot(m, e->key, 1) = *e;
		m->used++;
		m->live++;
	}
	free(old.e);
	return 0;
}

int
idmap_put(struct idmap *m, const char *key, int64_t v, const char *s)
{
	struct idmap_entry *e;
	char *copy = NULL;

	if ((m->used + 1) * 4 >= m->cap * 3 && grow(m) < 0)
		return -1;
	if (s && !(copy = strdup(s)))
		return -1;
	e = slot(m, key, 0);
	if (e->key && !e->dead) {
		e->v = v;
		if (copy || !s) {
			free(e->s);
			e->s = copy;
		}
		return 0;
	}
	e = slot(m, key, 1);
	if (!e->key) {
		if (!(e->key = strdup(key))) {
			free(copy);
			return -1;
		}
		m->used++;
	} else {
		/* reuse a tombstone: same slot, new key */
		char *k = strdup(key);
		if (!k) {
			free(copy);
			return -1;
		}
		free(e->key);
		e->key = k;
		e->dead = 0;
	}
	e->v = v;
	e->seq = ++m->seq;
	free(e->s);
	e->s = copy;
	m->live++;
	return 0;
}

struct idmap_entry *
idmap_get(const struct idmap *m, const char *key)
{
	struct idmap_entry *e = slot(m, key, 0);
	return e && e->key && !e->dead ? e : NULL;
}

void
idmap_del(struct idmap *m, const char *key)
{
	struct idmap_entry *e = idmap_get(m, key);

	if (!e)
		return;
	e->dead = 1;
	free(e->s);
	e->s = NULL;
	m->live--;
}

void
idmap_clear(struct idmap *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		free(m->e[i].key);
		free(m->e[i].s);
	}
	free(m->e);
	memset(m, 0, sizeof(*m));
}

struct idmap_entry *
idmap_next(const struct idmap *m, size_t *i)
{
	for (; *i < m->cap; (*i)++)
		if (m->e[*i].key && !m->e[*i].dead)
			return &m->e[(*i)++];
	return NULL;
}
