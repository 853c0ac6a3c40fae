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

	/* sized on the live entries: tombstones are dropped, so churn does not grow it;
	   half full after growing, regrown at three quarters */
	while (cap < 2 * (m->live + 1))
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

/* ---- idset ---------------------------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* upper case too: kept as text, so equality stays strcmp's */
}

/* 8-4-4-4-12 lower-case hex digits and nothing else: 1, with its 16 bytes. */
static int
guid_bytes(const char *id, unsigned char out[16])
{
	size_t k = 0, i = 0;

	while (k < 16) {
		int hi, lo;
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (id[i++] != '-')
				return 0;
			continue;
		}
		/* id[i + 1] is read only when id[i] is a digit, so never past the end */
		if ((hi = hexval(id[i])) < 0 || (lo = hexval(id[i + 1])) < 0)
			return 0;
		out[k++] = (unsigned char)(hi << 4 | lo);
		i += 2;
	}
	return i == 36 && id[36] == '\0';
}

int
idset_add(struct idset *s, const char *id)
{
	unsigned char b[16];

	if (!guid_bytes(id, b))
		return idmap_put(&s->other, id, 0, NULL);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		void *g = realloc(s->g, cap * sizeof(*s->g));
		if (!g)
			return -1;
		s->g = g;
		s->cap = cap;
	}
	memcpy(s->g[s->n++], b, 16);
	s->sorted = 0;
	return 0;
}

static int
cmp16(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

int
idset_has(struct idset *s, const char *id)
{
	unsigned char b[16];

	if (!guid_bytes(id, b))
		return idmap_get(&s->other, id) != NULL;
	if (!s->n)
		return 0;
	if (!s->sorted) {
		qsort(s->g, s->n, sizeof(*s->g), cmp16);
		s->sorted = 1;
	}
	return bsearch(b, s->g, s->n, sizeof(*s->g), cmp16) != NULL;
}

void
idset_clear(struct idset *s)
{
	free(s->g);
	idmap_clear(&s->other);
	memset(s, 0, sizeof(*s));
}
