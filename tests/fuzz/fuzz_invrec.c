/*
 * libFuzzer: a stored inventory record (src/common/inventory.c, record format 2
 * and format 1, the structs numprov stored before), as inv_open and every read
 * decode it from the disk. Input: one byte choosing number, user or range, one
 * byte of key length, the key, then the record. What decodes must be well formed
 * and re-encode to bytes that decode to the same record and encode the same
 * again; what does not decode is an INV_E_DB, never a crash or a read beyond.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inventory.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
quiet(int prio, const char *token, const char *msg)
{
	(void)prio;
	(void)token;
	(void)msg;
}

/* A string field: terminated inside it, no byte after the NUL set. */
static void
field(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	if (n == size)
		abort();
	for (size_t i = n; i < size; i++)
		if (s[i])
			abort();
}

static void
key_is(const char *field_text, const uint8_t *key, size_t klen)
{
	if (strlen(field_text) != klen || memcmp(field_text, key, klen) != 0)
		abort();
}

static void
number(const uint8_t *key, size_t klen, const uint8_t *rec, size_t len)
{
	struct inv_number n, back;
	unsigned char buf[INV_REC_MAX], again[INV_REC_MAX];
	size_t elen, elen2;

	if (inv_decode_number(key, klen, rec, len, &n) != INV_OK)
		return;
	field(n.number, sizeof(n.number));
	field(n.user_id, sizeof(n.user_id));
	field(n.range, sizeof(n.range));
	key_is(n.number, key, klen);
	if (n.state == INV_AVAILABLE || n.state >= INV__STATES || (n.flags & ~INV_NF_CONFIG))
		abort();
	if (!(elen = inv_encode_number(&n, buf, sizeof(buf))))
		abort();
	if (inv_decode_number(key, klen, buf, elen, &back) != INV_OK
	    || memcmp(&n, &back, sizeof(n)) != 0)
		abort();
	elen2 = inv_encode_number(&back, again, sizeof(again));
	if (elen2 != elen || memcmp(buf, again, elen) != 0)
		abort();
}

static void
user(const uint8_t *key, size_t klen, const uint8_t *rec, size_t len)
{
	struct inv_user u, back;
	unsigned char buf[INV_REC_MAX], again[INV_REC_MAX];
	size_t elen, elen2;

	if (inv_decode_user(key, klen, rec, len, &u) != INV_OK)
		return;
	field(u.id, sizeof(u.id));
	field(u.upn, sizeof(u.upn));
	field(u.number, sizeof(u.number));
	key_is(u.id, key, klen);
	if ((u.state != INV_PENDING && u.state != INV_ASSIGNED) || !u.number[0])
		abort();
	if (!(elen = inv_encode_user(&u, buf, sizeof(buf))))
		abort();
	if (inv_decode_user(key, klen, buf, elen, &back) != INV_OK
	    || memcmp(&u, &back, sizeof(u)) != 0)
		abort();
	elen2 = inv_encode_user(&back, again, sizeof(again));
	if (elen2 != elen || memcmp(buf, again, elen) != 0)
		abort();
}

static void
range(const uint8_t *key, size_t klen, const uint8_t *rec, size_t len)
{
	struct inv_range r, back;
	unsigned char buf[INV_REC_MAX], again[INV_REC_MAX];
	size_t elen, elen2;

	if (inv_decode_range(key, klen, rec, len, &r) != INV_OK)
		return;
	field(r.name, sizeof(r.name));
	field(r.provider, sizeof(r.provider));
	field(r.first, sizeof(r.first));
	field(r.last, sizeof(r.last));
	key_is(r.name, key, klen);
	for (int s = 0; s < INV__STATES; s++)
		if (r.count[s]) /* counts are never stored */
			abort();
	if (r.removed > 1)
		abort();
	if (!(elen = inv_encode_range(&r, buf, sizeof(buf))))
		abort();
	if (inv_decode_range(key, klen, buf, elen, &back) != INV_OK
	    || memcmp(&r, &back, sizeof(r)) != 0)
		abort();
	elen2 = inv_encode_range(&back, again, sizeof(again));
	if (elen2 != elen || memcmp(buf, again, elen) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int init;
	uint8_t *key, *rec;
	size_t klen, len;

	if (!init) {
		log_register(quiet);
		init = 1;
	}
	if (size < 2 || (size_t)data[1] > size - 2)
		return 0;
	klen = data[1];
	len = size - 2 - klen;
	/* each in an allocation of its own size: ASan sees a read past either end */
	key = malloc(klen ? klen : 1);
	rec = malloc(len ? len : 1);
	if (!key || !rec) {
		free(key);
		free(rec);
		return 0;
	}
	memcpy(key, data + 2, klen);
	memcpy(rec, data + 2 + klen, len);
	switch (data[0] % 3) {
	case 0:
		number(key, klen, rec, len);
		break;
	case 1:
		user(key, klen, rec, len);
		break;
	default:
		range(key, klen, rec, len);
		break;
	}
	free(key);
	free(rec);
	return 0;
}
