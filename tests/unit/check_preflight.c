/* numprovd -t's preflight: credentials, CA file, database and socket directories, with lines. */
#include "build-config.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "preflight.h"
#include "testutil.h"

static char dir[64], conf[128], secret[128], certf[128], keyf[128], ca[128], db[128], sock[128];
static char err[8192];

static void
write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* A fresh RSA key (mode 0600) and a self-signed certificate for it. */
static void
make_cert(const char *cpath, const char *kpath)
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
	if (cpath) {
		ck_assert_ptr_nonnull(f = fopen(cpath, "w"));
		PEM_write_X509(f, x);
		fclose(f);
	}
	ck_assert_ptr_nonnull(f = fopen(kpath, "w"));
	PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	ck_assert_int_eq(chmod(kpath, 0600), 0);
	EVP_PKEY_free(key);
	X509_free(x);
}

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/numprov-preflight-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/numprovd.conf", dir);
	snprintf(secret, sizeof(secret), "%s/client-secret", dir);
	snprintf(certf, sizeof(certf), "%s/app.pem", dir);
	snprintf(keyf, sizeof(keyf), "%s/app.key", dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	snprintf(db, sizeof(db), "%s/db", dir);
	snprintf(sock, sizeof(sock), "%s/control.sock", dir);
	write_file(secret, "s3cr3t\n", 0600);
	err[0] = '\0';
}

static void
teardown(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s; rm -rf %s", dir, dir);
	ck_assert_int_eq(system(cmd), 0);
}

/*
 * The config the tests check, one key a line:
 *   1 tenant: { id = ...;
 *   2   client_id = ...;
 *   3   client_secret_file = SECRET;      (or certificate_file = CERT;)
 *   4   ca_file = CA;                     (or private_key_file = KEY;)
 *   5 };
 *   6 database: { path = DB; };
 *   7 control: { socket = SOCK; };
 *   8 snmp: { enabled = false; };
 * A NULL ca leaves line 4 a comment; NULL db or sock leaves the key to its default.
 */
static int
check_with(const char *line3, const char *line4, const char *dbpath, const char *sockpath)
{
	struct config *cfg;
	FILE *f = fopen(conf, "w");
	int n;

	ck_assert_ptr_nonnull(f);
	fprintf(f,
	    "tenant: { id = \"contoso.onmicrosoft.com\";\n"
	    "  client_id = \"11111111-2222-3333-4444-555555555555\";\n"
	    "  %s\n  %s\n};\n",
	    line3, line4 ? line4 : "# no ca_file");
	if (dbpath)
		fprintf(f, "database: { path = \"%s\"; };\n", dbpath);
	else
		fprintf(f, "# database.path left to its default\n");
	if (sockpath)
		fprintf(f, "control: { socket = \"%s\"; };\n", sockpath);
	else
		fprintf(f, "# control.socket left to its default\n");
	fprintf(f, "snmp: { enabled = false; };\n");
	fclose(f);
	cfg = config_load(conf, err, sizeof(err));
	ck_assert_msg(cfg != NULL, "config_load: %s", err);
	n = preflight_check(conf, cfg, 0, err, sizeof(err));
	config_free(cfg);
	return n;
}

static int
check_secret_conf(const char *ca_file, const char *dbpath, const char *sockpath)
{
	char l3[256], l4[256];

	snprintf(l3, sizeof(l3), "client_secret_file = \"%s\";", secret);
	if (ca_file)
		snprintf(l4, sizeof(l4), "ca_file = \"%s\";", ca_file);
	return check_with(l3, ca_file ? l4 : NULL, dbpath, sockpath);
}

static int
check_cert_conf(void)
{
	char l3[256], l4[256];

	snprintf(l3, sizeof(l3), "certificate_file = \"%s\";", certf);
	snprintf(l4, sizeof(l4), "private_key_file = \"%s\";", keyf);
	return check_with(l3, l4, db, sock);
}

/* err holds a line that starts "conf:LINE: " followed by what. */
static void
assert_line(int line, const char *what)
{
	char want[512];

	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", conf, line, what);
	else
		snprintf(want, sizeof(want), "%s: %s", conf, what);
	ck_assert_msg(strstr(err, want) != NULL, "want \"%s\" in:\n%s", want, err);
	ck_assert_msg(strstr(err, want) == err || strstr(err, want)[-1] == '\n',
	    "\"%s\" does not start a line in:\n%s", want, err);
}

START_TEST(good_secret_config_passes)
{
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 0);
	ck_assert_str_eq(err, "");
	/* an existing, writable database directory is as good as one to be made */
	ck_assert_int_eq(mkdir(db, 0750), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 0);
	/* a stale socket is the daemon's to clear; it does not stop the check */
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		ck_assert_int_ge(fd, 0);
		ck_assert_uint_lt(strlen(sock), sizeof(sa.sun_path));
		memcpy(sa.sun_path, sock, strlen(sock) + 1);
		ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(fd);
	}
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 0);
}
END_TEST

START_TEST(secret_modes)
{
	char want[256];

	ck_assert_int_eq(chmod(secret, 0600), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 0);
	ck_assert_int_eq(chmod(secret, 0400), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 0);

	ck_assert_int_eq(chmod(secret, 0644), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(want, sizeof(want),
	    "tenant.client_secret_file: %s may be read by group or others (mode 0644)", secret);
	assert_line(3, want);
	ck_assert_ptr_nonnull(strstr(err, "chmod 600 it"));

	/* group-writable */
	ck_assert_int_eq(chmod(secret, 0620), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(want, sizeof(want),
	    "tenant.client_secret_file: %s may be read by group or others (mode 0620)", secret);
	assert_line(3, want);

	/* group-readable: the daemon refuses it at start, so -t does too */
	ck_assert_int_eq(chmod(secret, 0640), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	assert_line(3, "tenant.client_secret_file: ");
}
END_TEST

START_TEST(secret_missing_or_empty)
{
	char want[256];

	ck_assert_int_eq(unlink(secret), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(want, sizeof(want),
	    "tenant.client_secret_file: cannot open %s: No such file or directory", secret);
	assert_line(3, want);

	write_file(secret, "\n", 0600);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(
	    want, sizeof(want), "tenant.client_secret_file: %s: the first line is empty", secret);
	assert_line(3, want);

	write_file(secret, "", 0600);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(
	    want, sizeof(want), "tenant.client_secret_file: %s is empty or unreadable", secret);
	assert_line(3, want);

	/* a directory is not a secret */
	ck_assert_int_eq(unlink(secret), 0);
	ck_assert_int_eq(mkdir(secret, 0700), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(want, sizeof(want), "tenant.client_secret_file: %s is not a regular file", secret);
	assert_line(3, want);
}
END_TEST

START_TEST(secret_unreadable_by_the_user)
{
	if (geteuid() == 0)
		return; /* root reads it anyway; the mode checks above still hold for root */
	ck_assert_int_eq(chmod(secret, 0200), 0);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	assert_line(3, "tenant.client_secret_file: cannot open ");
	ck_assert_ptr_nonnull(strstr(err, "Permission denied"));
}
END_TEST

START_TEST(database_parent_missing)
{
	char path[256], want[512];

	snprintf(path, sizeof(path), "%s/no-such-dir/db", dir);
	ck_assert_int_eq(check_secret_conf(NULL, path, sock), 1);
	snprintf(
	    want, sizeof(want), "database.path: the directory %s/no-such-dir does not exist", dir);
	assert_line(6, want);
}
END_TEST

START_TEST(database_not_a_directory)
{
	char want[256];

	write_file(db, "x", 0600);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(want, sizeof(want), "database.path %s exists and is not a directory", db);
	assert_line(6, want);

	/* the parent is a file */
	{
		char path[256];
		snprintf(path, sizeof(path), "%s/inner", db);
		ck_assert_int_eq(check_secret_conf(NULL, path, sock), 1);
		snprintf(want, sizeof(want), "database.path: %s is not a directory", db);
		assert_line(6, want);
	}
}
END_TEST

START_TEST(database_parent_not_writable)
{
	char parent[256], path[256];

	if (geteuid() == 0)
		return; /* root may write anywhere */
	snprintf(parent, sizeof(parent), "%s/ro", dir);
	snprintf(path, sizeof(path), "%s/ro/db", dir);
	ck_assert_int_eq(mkdir(parent, 0500), 0);
	ck_assert_int_eq(check_secret_conf(NULL, path, sock), 1);
	assert_line(6, "database.path: cannot create ");
	ck_assert_ptr_nonnull(strstr(err, "is not writable by user"));
	/* an existing database directory the user cannot write */
	ck_assert_int_eq(chmod(parent, 0700), 0);
	ck_assert_int_eq(mkdir(path, 0500), 0);
	ck_assert_int_eq(check_secret_conf(NULL, path, sock), 1);
	assert_line(6, "database.path ");
}
END_TEST

START_TEST(socket_directory_missing)
{
	char path[256], want[512];

	/* one missing level is numprovd's to make at start, as it does */
	snprintf(path, sizeof(path), "%s/run/control.sock", dir);
	ck_assert_int_eq(check_secret_conf(NULL, db, path), 0);
	/* two are not */
	snprintf(path, sizeof(path), "%s/var/run/control.sock", dir);
	ck_assert_int_eq(check_secret_conf(NULL, db, path), 1);
	snprintf(want, sizeof(want),
	    "control.socket: the directory %s/var/run does not exist, nor %s/var", dir, dir);
	assert_line(7, want);

	/* a path that is there and is not a socket: the daemon refuses to remove it */
	write_file(sock, "x", 0600);
	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 1);
	snprintf(want, sizeof(want),
	    "%s exists and is not a socket; remove it or change control.socket", sock);
	assert_line(7, want);
}
END_TEST

START_TEST(socket_path_too_long)
{
	char path[200];

	memset(path, 'x', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	ck_assert_int_eq(check_secret_conf(NULL, db, path), 1);
	assert_line(7, "control.socket '/xxx");
	ck_assert_ptr_nonnull(strstr(err, "is empty or longer than"));
}
END_TEST

START_TEST(defaulted_keys_have_no_line)
{
	char parent[256], want[512], *slash;
	struct stat st;

	/* database.path left to its default (NUMPROV_STATEDIR): its problem has no line */
	snprintf(parent, sizeof(parent), "%s", NUMPROV_STATEDIR);
	ck_assert_ptr_nonnull(slash = strrchr(parent, '/'));
	*slash = '\0';
	if (stat(parent, &st) == 0)
		return; /* the default's parent exists on this machine: nothing to report */
	ck_assert_int_eq(check_secret_conf(NULL, NULL, sock), 1);
	snprintf(want, sizeof(want), "database.path: the directory %s does not exist", parent);
	assert_line(0, want);
	ck_assert_ptr_null(strstr(err, ":0:"));
}
END_TEST

START_TEST(ca_file_rules)
{
	char want[256];

	/* good: a PEM certificate (several are fine too) */
	make_cert(ca, keyf);
	ck_assert_int_eq(check_secret_conf(ca, db, sock), 0);

	write_file(ca, "this is not PEM\n", 0644);
	ck_assert_int_eq(check_secret_conf(ca, db, sock), 1);
	snprintf(want, sizeof(want), "tenant.ca_file: no PEM certificate in %s", ca);
	assert_line(4, want);

	/* a private key is PEM, but no certificate */
	make_cert(NULL, ca);
	ck_assert_int_eq(check_secret_conf(ca, db, sock), 1);
	assert_line(4, want);

	ck_assert_int_eq(unlink(ca), 0);
	ck_assert_int_eq(check_secret_conf(ca, db, sock), 1);
	snprintf(
	    want, sizeof(want), "tenant.ca_file: cannot open %s: No such file or directory", ca);
	assert_line(4, want);
}
END_TEST

START_TEST(certificate_and_key)
{
	char want[256], other[128];

	make_cert(certf, keyf);
	ck_assert_int_eq(check_cert_conf(), 0);
	ck_assert_str_eq(err, "");

	/* the key's mode: as the secret's */
	ck_assert_int_eq(chmod(keyf, 0644), 0);
	ck_assert_int_eq(check_cert_conf(), 1);
	snprintf(want, sizeof(want),
	    "tenant.private_key_file: %s may be read by group or others (mode 0644)", keyf);
	assert_line(4, want);
	ck_assert_int_eq(chmod(keyf, 0660), 0);
	ck_assert_int_eq(check_cert_conf(), 1);
	assert_line(4, "tenant.private_key_file: ");
	ck_assert_int_eq(chmod(keyf, 0600), 0);

	/* a certificate file that does not parse */
	write_file(certf,
	    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
	    "-----END CERTIFICATE-----\n",
	    0644);
	ck_assert_int_eq(check_cert_conf(), 1);
	snprintf(want, sizeof(want), "tenant.certificate_file: no PEM certificate in %s", certf);
	assert_line(3, want);

	/* a certificate that does not parse and a key that does not either: both said */
	write_file(keyf, "not a key\n", 0600);
	ck_assert_int_eq(check_cert_conf(), 2);
	assert_line(3, want);
	snprintf(want, sizeof(want), "tenant.private_key_file: no PEM private key in %s", keyf);
	assert_line(4, want);
	make_cert(NULL, keyf);

	/* a missing one */
	ck_assert_int_eq(unlink(certf), 0);
	ck_assert_int_eq(check_cert_conf(), 1);
	snprintf(want, sizeof(want),
	    "tenant.certificate_file: cannot open %s: No such file or directory", certf);
	assert_line(3, want);

	/* a key that does not belong to the certificate */
	snprintf(other, sizeof(other), "%s/other.key", dir);
	make_cert(certf, other);
	ck_assert_int_eq(check_cert_conf(), 1);
	snprintf(want, sizeof(want),
	    "tenant.private_key_file: the private key does not belong to %s", certf);
	assert_line(4, want);

	/* a key file that is not a key */
	write_file(keyf, "not a key\n", 0600);
	ck_assert_int_eq(check_cert_conf(), 1);
	snprintf(want, sizeof(want), "tenant.private_key_file: no PEM private key in %s", keyf);
	assert_line(4, want);
}
END_TEST

START_TEST(every_problem_with_its_line)
{
	char path[256], sockpath[256];
	const char *nl;
	int lines = 1;

	snprintf(path, sizeof(path), "%s/gone/db", dir);
	snprintf(sockpath, sizeof(sockpath), "%s/gone/run/control.sock", dir);
	write_file(ca, "garbage\n", 0644);
	ck_assert_int_eq(chmod(secret, 0644), 0);
	ck_assert_int_eq(check_secret_conf(ca, path, sockpath), 4);
	assert_line(3, "tenant.client_secret_file: ");
	assert_line(4, "tenant.ca_file: no PEM certificate in ");
	assert_line(6, "database.path: the directory ");
	assert_line(7, "control.socket: the directory ");
	for (nl = err; (nl = strchr(nl, '\n')); nl++)
		lines++;
	ck_assert_int_eq(lines, 4);
}
END_TEST

/*
 * The file changed after config_load read it (replaced while numprovd -t runs): the preflight
 * and preflight_where read it as config_load does, so a FIFO is refused at once rather than
 * waited on for a writer, and an @include is refused rather than followed.
 */
START_TEST(a_file_replaced_after_config_load_is_read_as_config_load_reads_it)
{
	char fifo[160], inc[160], text[256], want[512], where[256];
	struct config *cfg;

	ck_assert_int_eq(check_secret_conf(NULL, db, sock), 0);
	ck_assert_ptr_nonnull(cfg = config_load(conf, err, sizeof(err)));
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	ck_assert_int_eq(preflight_check(fifo, cfg, 0, err, sizeof(err)), 1);
	snprintf(want, sizeof(want), "%s: cannot read the file: not a regular file", fifo);
	ck_assert_str_eq(err, want);
	preflight_where(fifo, "database.path", where, sizeof(where));
	ck_assert_str_eq(where, fifo);

	snprintf(inc, sizeof(inc), "%s/include.conf", dir);
	snprintf(text, sizeof(text), "# the rest is elsewhere\n  @include \"%s\"\n", fifo);
	write_file(inc, text, 0644);
	ck_assert_int_eq(preflight_check(inc, cfg, 0, err, sizeof(err)), 1);
	snprintf(want, sizeof(want),
	    "%s:2: @include is not supported: keep the configuration in one file", inc);
	ck_assert_str_eq(err, want);
	preflight_where(inc, "database.path", where, sizeof(where));
	ck_assert_str_eq(where, inc);
	config_free(cfg);
}
END_TEST

static Suite *
preflight_suite(void)
{
	Suite *s = suite_create("preflight");
	TCase *tc = tcase_create("preflight");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, good_secret_config_passes);
	tcase_add_test(tc, secret_modes);
	tcase_add_test(tc, secret_missing_or_empty);
	tcase_add_test(tc, secret_unreadable_by_the_user);
	tcase_add_test(tc, database_parent_missing);
	tcase_add_test(tc, database_not_a_directory);
	tcase_add_test(tc, database_parent_not_writable);
	tcase_add_test(tc, socket_directory_missing);
	tcase_add_test(tc, socket_path_too_long);
	tcase_add_test(tc, defaulted_keys_have_no_line);
	tcase_add_test(tc, ca_file_rules);
	tcase_add_test(tc, certificate_and_key);
	tcase_add_test(tc, every_problem_with_its_line);
	suite_add_tcase(s, tc);
	/* a FIFO waited on would hold the check for ever: a short timeout says so */
	tc = tcase_create("replaced");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, a_file_replaced_after_config_load_is_read_as_config_load_reads_it);
	suite_add_tcase(s, tc);
	return s;
}

NP_CHECK_MAIN(preflight_suite)
