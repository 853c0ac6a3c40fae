#include "build-config.h"

#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_MAX 65536

struct auth_cert {
	EVP_PKEY *key;
	char x5t_s256[64]; /* base64url SHA-256 of the DER certificate */
	char x5t[40];	   /* base64url SHA-1 of the DER certificate */
};

static const char b64url_chars[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void
auth_b64url(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;

		if (n > 1)
			v |= (unsigned)in[i + 1] << 8;
		if (n > 2)
			v |= in[i + 2];
		for (size_t k = 0; k <= n; k++)
			out[o++] = b64url_chars[(v >> (18 - 6 * k)) & 63];
	}
	out[o] = '\0';
}

void
auth_uuid(char out[37])
{
	unsigned char b[16];

	(void)RAND_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
	    b[14], b[15]);
}

/*
 * Open a file numprovd reads its trust or credentials from: a regular file only.
 * O_NONBLOCK: a FIFO (or a device) put in its place makes open() return at once
 * instead of waiting for a writer, and is then refused.
 */
static int
open_regular(const char *file, int flags, struct stat *st, char *err, size_t errlen)
{
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);

	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", file, strerror(errno));
		return -1;
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "%s is not a regular file", file);
		close(fd);
		return -1;
	}
	/* a regular file never blocks; the flag is cleared for the readers after us */
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

FILE *
auth_fopen_regular(const char *file, char *err, size_t errlen)
{
	struct stat st;
	int fd = open_regular(file, 0, &st, err, errlen);
	FILE *f;

	if (fd < 0)
		return NULL;
	if (!(f = fdopen(fd, "r"))) {
		snprintf(err, errlen, "cannot read %s: %s", file, strerror(errno));
		close(fd);
	}
	return f;
}

char *
auth_read_secret(const char *file, char *err, size_t errlen)
{
	struct stat st;
	char *buf;
	ssize_t n;
	int fd;

	if ((fd = open_regular(file, O_NOFOLLOW, &st, err, errlen)) < 0)
		return NULL;
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
		    "%s may be read by group or others (mode %04o); it holds the tenant's "
		    "credentials: chmod 600 it",
		    file, (unsigned)(st.st_mode & 07777));
		close(fd);
		return NULL;
	}
	buf = malloc(SECRET_MAX + 1);
	n = buf ? read(fd, buf, SECRET_MAX) : -1;
	close(fd);
	if (n <= 0) {
		snprintf(err, errlen, "%s is empty or unreadable", file);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static int
thumbprints(struct auth_cert *c, X509 *x, char *err, size_t errlen)
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
	unsigned mdlen;
	int len = i2d_X509(x, &der);

	if (len <= 0) {
		snprintf(err, errlen, "cannot encode the certificate");
		return -1;
	}
	EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL);
	auth_b64url(md, mdlen, c->x5t_s256);
	EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha1(), NULL);
	auth_b64url(md, mdlen, c->x5t);
	OPENSSL_free(der);
	return 0;
}

static void
ssl_error(char *err, size_t errlen, const char *what, const char *file)
{
	char e[256];

	ERR_error_string_n(ERR_get_error(), e, sizeof(e));
	snprintf(err, errlen, "%s %s: %s", what, file, e);
	ERR_clear_error();
}

/* OpenSSL's passphrase callback: no passphrase, so an encrypted key fails at once. */
static int
refuse_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

struct auth_cert *
auth_cert_load(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	struct auth_cert *c = calloc(1, sizeof(*c));
	char *pem = NULL;
	BIO *bio = NULL;
	X509 *x = NULL;
	FILE *f;

	if (!c)
		return NULL;
	if (!(f = auth_fopen_regular(cert_file, err, errlen)))
		goto fail;
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		ssl_error(err, errlen, "no PEM certificate in", cert_file);
		goto fail;
	}
	if (thumbprints(c, x, err, errlen) < 0 || !(pem = auth_read_secret(key_file, err, errlen)))
		goto fail;
	bio = BIO_new_mem_buf(pem, -1);
	/* never a prompt on the terminal: a daemon has nobody to type a passphrase */
	c->key = PEM_read_bio_PrivateKey(bio, NULL, refuse_passphrase, NULL);
	if (!c->key) {
		if (strstr(pem, "ENCRYPTED"))
			snprintf(err, errlen,
			    "%s: the private key is encrypted, and numprovd cannot ask for a "
			    "passphrase: store it unencrypted (mode 0600)",
			    key_file);
		else
			ssl_error(err, errlen, "no PEM private key in", key_file);
		goto fail;
	}
	if (EVP_PKEY_base_id(c->key) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "%s: the key must be RSA", key_file);
		goto fail;
	}
	if (X509_check_private_key(x, c->key) != 1) {
		ssl_error(err, errlen, "the private key does not belong to", cert_file);
		goto fail;
	}
	BIO_free(bio);
	OPENSSL_cleanse(pem, strlen(pem));
	free(pem);
	X509_free(x);
	return c;
fail:
	BIO_free(bio);
	if (pem)
		OPENSSL_cleanse(pem, strlen(pem));
	free(pem);
	X509_free(x);
	auth_cert_free(c);
	return NULL;
}

void
auth_cert_free(struct auth_cert *c)
{
	if (!c)
		return;
	EVP_PKEY_free(c->key);
	free(c);
}

static int
sign(const struct auth_cert *c, enum auth_alg alg, const char *input, unsigned char *sig,
    size_t *siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	int ok = md && EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, c->key) == 1;

	if (ok && alg == AUTH_PS256)
		ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1
		    && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
	ok = ok
	    && EVP_DigestSign(md, sig, siglen, (const unsigned char *)input, strlen(input)) == 1;
	EVP_MD_CTX_free(md);
	return ok ? 0 : -1;
}

char *
auth_assertion(const struct auth_cert *c, enum auth_alg alg, const char *client_id, const char *aud,
    time_t now, char *err, size_t errlen)
{
	char header[160], payload[1024], jti[37], *input, *out;
	char hb[256], pb[1400], sb[700];
	unsigned char sig[512];
	size_t siglen = sizeof(sig), len;

	if (alg == AUTH_PS256)
		snprintf(header, sizeof(header),
		    "{\"alg\":\"PS256\",\"typ\":\"JWT\",\"x5t#S256\":\"%s\"}", c->x5t_s256);
	else
		snprintf(header, sizeof(header),
		    "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5t\":\"%s\"}", c->x5t);
	auth_uuid(jti);
	snprintf(payload, sizeof(payload),
	    "{\"aud\":\"%s\",\"iss\":\"%s\",\"sub\":\"%s\",\"jti\":\"%s\",\"nbf\":%lld,"
	    "\"iat\":%lld,\"exp\":%lld}",
	    aud, client_id, client_id, jti, (long long)now, (long long)now, (long long)now + 600);
	auth_b64url((const unsigned char *)header, strlen(header), hb);
	auth_b64url((const unsigned char *)payload, strlen(payload), pb);
	len = strlen(hb) + strlen(pb) + 2;
	if (!(input = malloc(len)))
		return NULL;
	snprintf(input, len, "%s.%s", hb, pb);
	if (EVP_PKEY_get_size(c->key) > (int)sizeof(sig) || sign(c, alg, input, sig, &siglen) < 0) {
		ssl_error(err, errlen, "cannot sign the client assertion", "");
		free(input);
		return NULL;
	}
	auth_b64url(sig, siglen, sb);
	len += strlen(sb) + 1;
	if ((out = malloc(len)))
		snprintf(out, len, "%s.%s", input, sb);
	free(input);
	return out;
}

char *
auth_secret_line(const char *file, char *err, size_t errlen)
{
	char *s = auth_read_secret(file, err, errlen);

	if (s) {
		char *rest = s + strcspn(s, "\r\n");

		/* whatever follows the first line is not kept in memory either */
		OPENSSL_cleanse(rest, strlen(rest));
		if (!*s) {
			snprintf(err, errlen, "%s: the first line is empty", file);
			free(s);
			return NULL;
		}
	}
	return s;
}
