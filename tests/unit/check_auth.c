/* The secret file rule and the certificate client assertion (checked with OpenSSL). */
#include "build-config.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "testutil.h"

static char dir[64], err[512], certf[128], keyf[128];
static X509 *cert;

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* A fresh RSA key and a self-signed certificate for it. */
static void
make_cert(const char *cpath, const char *kpath, X509 **out)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	X509 *x = X509_new();
	FILE *f;

	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	    (const unsigned char *)"numprov-test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, key, EVP_sha256());
	f = fopen(cpath, "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(kpath, "w");
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	chmod(kpath, 0600);
	EVP_PKEY_free(key);
	if (out)
		*out = x;
	else
		X509_free(x);
}

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/numprov-auth-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(certf, sizeof(certf), "%s/app.pem", dir);
	snprintf(keyf, sizeof(keyf), "%s/app.key", dir);
	make_cert(certf, keyf, &cert);
}

static void
teardown(void)
{
	char cmd[128];

	X509_free(cert);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(secret_file_rules)
{
	char path[128];
	char *s;

	snprintf(path, sizeof(path), "%s/secret", dir);
	write_file(path, "s3cr3t~value\nsecond line\n", 0600);
	s = auth_secret_line(path, err, sizeof(err));
	ck_assert_str_eq(s, "s3cr3t~value");
	free(s);
	chmod(path, 0640);
	ck_assert_ptr_null(auth_secret_line(path, err, sizeof(err)));
	ck_assert_msg(strstr(err, "may be read by group or others (mode 0640)"), "%s", err);
	chmod(path, 0604);
	ck_assert_ptr_null(auth_secret_line(path, err, sizeof(err)));
	ck_assert_msg(strstr(err, "(mode 0604)"), "%s", err);
	write_file(path, "", 0600);
	ck_assert_ptr_null(auth_secret_line(path, err, sizeof(err)));
	ck_assert_msg(strstr(err, "is empty"), "%s", err);
	ck_assert_ptr_null(auth_secret_line("/nonexistent/secret", err, sizeof(err)));
	ck_assert_msg(strstr(err, "cannot open /nonexistent/secret"), "%s", err);
	ck_assert_ptr_null(auth_secret_line(dir, err, sizeof(err)));
}
END_TEST

static size_t
b64url_decode(const char *in, size_t len, unsigned char *out)
{
	static const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned v = 0;
	int bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		const char *p = strchr(abc, in[i]);
		ck_assert_ptr_nonnull(p);
		v = (v << 6) | (unsigned)(p - abc);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(v >> bits);
		}
	}
	return o;
}

static cJSON *
part_json(const char *b64, size_t len)
{
	unsigned char buf[2048];
	size_t n = b64url_decode(b64, len, buf);

	return cJSON_ParseWithLength((const char *)buf, n);
}

static void
thumb(const EVP_MD *md, char *out)
{
	unsigned char *der = NULL, h[64];
	unsigned hl;
	int n = i2d_X509(cert, &der);

	EVP_Digest(der, (size_t)n, h, &hl, md, NULL);
	auth_b64url(h, hl, out);
	OPENSSL_free(der);
}

/* Check header, claims and signature of an assertion as Entra ID would. */
static void
verify(const char *jwt, enum auth_alg alg)
{
	const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	cJSON *h, *p;
	unsigned char sig[1024];
	size_t siglen;
	char want[128];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx;

	ck_assert(d1 && d2);
	h = part_json(jwt, (size_t)(d1 - jwt));
	p = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
	ck_assert_str_eq(cJSON_GetObjectItem(h, "typ")->valuestring, "JWT");
	ck_assert_str_eq(
	    cJSON_GetObjectItem(h, "alg")->valuestring, alg == AUTH_PS256 ? "PS256" : "RS256");
	thumb(alg == AUTH_PS256 ? EVP_sha256() : EVP_sha1(), want);
	ck_assert_str_eq(
	    cJSON_GetObjectItem(h, alg == AUTH_PS256 ? "x5t#S256" : "x5t")->valuestring, want);
	ck_assert_str_eq(cJSON_GetObjectItem(p, "aud")->valuestring,
	    "https://login.example/contoso/oauth2/v2.0/token");
	ck_assert_str_eq(
	    cJSON_GetObjectItem(p, "iss")->valuestring, "11111111-2222-3333-4444-555555555555");
	ck_assert_str_eq(
	    cJSON_GetObjectItem(p, "sub")->valuestring, "11111111-2222-3333-4444-555555555555");
	ck_assert_uint_eq(strlen(cJSON_GetObjectItem(p, "jti")->valuestring), 36);
	ck_assert_int_eq((long)cJSON_GetObjectItem(p, "nbf")->valuedouble, 1800000000L);
	ck_assert_int_eq((long)cJSON_GetObjectItem(p, "exp")->valuedouble, 1800000600L);
	siglen = b64url_decode(d2 + 1, strlen(d2 + 1), sig);
	ck_assert_int_eq(
	    EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, X509_get0_pubkey(cert)), 1);
	if (alg == AUTH_PS256) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO);
	}
	ck_assert_int_eq(
	    EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
	/* and a changed claim no longer verifies */
	ck_assert_int_ne(
	    EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, X509_get0_pubkey(cert)), 0);
	if (alg == AUTH_PS256)
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
	ck_assert_int_ne(
	    EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(d2 - jwt) - 1),
	    1);
	EVP_MD_CTX_free(md);
	cJSON_Delete(h);
	cJSON_Delete(p);
}

START_TEST(assertion_ps256_and_rs256)
{
	char err2[256];
	struct auth_cert *c = auth_cert_load(certf, keyf, err2, sizeof(err2));
	char *a, *b;

	ck_assert_msg(c != NULL, "%s", err2);
	a = auth_assertion(c, AUTH_PS256, "11111111-2222-3333-4444-555555555555",
	    "https://login.example/contoso/oauth2/v2.0/token", 1800000000, err2, sizeof(err2));
	ck_assert_ptr_nonnull(a);
	verify(a, AUTH_PS256);
	b = auth_assertion(c, AUTH_RS256, "11111111-2222-3333-4444-555555555555",
	    "https://login.example/contoso/oauth2/v2.0/token", 1800000000, err2, sizeof(err2));
	verify(b, AUTH_RS256);
	ck_assert_str_ne(a, b);
	free(a);
	free(b);
	auth_cert_free(c);
}
END_TEST

START_TEST(key_must_match_and_be_private)
{
	char other_cert[160], other_key[160];

	snprintf(other_cert, sizeof(other_cert), "%s/other.pem", dir);
	snprintf(other_key, sizeof(other_key), "%s/other.key", dir);
	make_cert(other_cert, other_key, NULL);
	ck_assert_ptr_null(auth_cert_load(certf, other_key, err, sizeof(err)));
	ck_assert_msg(strstr(err, "the private key does not belong to"), "%s", err);
	chmod(keyf, 0644);
	ck_assert_ptr_null(auth_cert_load(certf, keyf, err, sizeof(err)));
	ck_assert_msg(strstr(err, "may be read by group or others"), "%s", err);
	ck_assert_ptr_null(auth_cert_load(keyf, keyf, err, sizeof(err)));
	ck_assert_msg(strstr(err, "no PEM certificate in"), "%s", err);
}
END_TEST

START_TEST(b64url_and_uuid)
{
	char out[16], u[37];

	auth_b64url((const unsigned char *)"\xfb\xff", 2, out);
	ck_assert_str_eq(out, "-_8");
	auth_b64url((const unsigned char *)"abc", 3, out);
	ck_assert_str_eq(out, "YWJj");
	auth_uuid(u);
	ck_assert_uint_eq(strlen(u), 36);
	ck_assert_int_eq(u[14], '4');
}
END_TEST

static Suite *
auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("auth");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, secret_file_rules);
	tcase_add_test(tc, assertion_ps256_and_rs256);
	tcase_add_test(tc, key_must_match_and_be_private);
	tcase_add_test(tc, b64url_and_uuid);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(auth_suite)
