#include "build-config.h"

#include "preflight.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <libconfig.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "log.h"
#include "privs.h"

/* What the check carries: the file, where each key is in it, the problems so far. */
struct pf {
	const char *file;
	config_t lc;
	int parsed;
	char *err;
	size_t errlen;
	int n;
	int flags; /* PREFLIGHT_* */
	char user[64];
};

static void pf_error(struct pf *p, const char *key, const char *fmt, ...) NP_PRINTF(3, 4);
static void pf_note(struct pf *p, const char *key, const char *fmt, ...) NP_PRINTF(3, 4);
static void pf_line(struct pf *p, const char *key, const char *tag, const char *fmt, va_list ap)
    NP_PRINTF(4, 0);

/* One "FILE:LINE: what" line for key; "FILE: what" when the key is not in the file. */
static void
pf_line(struct pf *p, const char *key, const char *tag, const char *fmt, va_list ap)
{
	const config_setting_t *s = p->parsed && key ? config_lookup(&p->lc, key) : NULL;
	const char *where
	    = s && config_setting_source_file(s) ? config_setting_source_file(s) : p->file;
	int line = s ? config_setting_source_line(s) : 0;
	size_t used = strlen(p->err);

	if (used + 1 >= p->errlen)
		return;
	if (line > 0)
		used += snprintf(p->err + used, p->errlen - used, "%s%s:%d: %s", used ? "\n" : "",
		    where, line, tag);
	else
		used += snprintf(
		    p->err + used, p->errlen - used, "%s%s: %s", used ? "\n" : "", where, tag);
	if (used >= p->errlen)
		return;
	vsnprintf(p->err + used, p->errlen - used, fmt, ap);
}

static void
pf_error(struct pf *p, const char *key, const char *fmt, ...)
{
	va_list ap;

	p->n++;
	va_start(ap, fmt);
	pf_line(p, key, "", fmt, ap);
	va_end(ap);
}

/* Not a problem, but what the operator should know: not counted. */
static void
pf_note(struct pf *p, const char *key, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pf_line(p, key, "note: ", fmt, ap);
	va_end(ap);
}

/* A problem config_read_checked put in its own words ("FILE[:LINE]: what"). */
static void
pf_read_error(struct pf *p, const char *line)
{
	size_t used = strlen(p->err);

	p->n++;
	if (used + 1 < p->errlen)
		snprintf(p->err + used, p->errlen - used, "%s%s", used ? "\n" : "", line);
}

/* OpenSSL's reason for the last failure, its queue emptied. */
static void
ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "no PEM data");
	ERR_clear_error();
}

/* ---- credentials -------------------------------------------------------- */

/* The daemon's own reader: the same refusals (mode, not a regular file, empty), in its words. */
static void
check_secret(struct pf *p, const char *file)
{
	char e[512];
	char *s = auth_secret_line(file, e, sizeof(e));

	if (!s) {
		pf_error(p, "tenant.client_secret_file", "tenant.client_secret_file: %s", e);
		return;
	}
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

/* 0 when cert_file holds a PEM certificate (as auth_cert_load reads it). */
static int
check_certificate(struct pf *p, const char *cert_file)
{
	char e[256];
	X509 *x;
	FILE *f;

	if (!(f = auth_fopen_regular(cert_file, e, sizeof(e)))) { /* a FIFO never blocks */
		pf_error(p, "tenant.certificate_file", "tenant.certificate_file: %s", e);
		return -1;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!x) {
		ssl_reason(e, sizeof(e));
		pf_error(p, "tenant.certificate_file",
		    "tenant.certificate_file: no PEM certificate in %s: %s", cert_file, e);
		return -1;
	}
	X509_free(x);
	return 0;
}

/* The daemon asks for no passphrase: an encrypted key cannot be used unattended. */
static int
no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

static void
check_cert_and_key(struct pf *p, const char *cert_file, const char *key_file)
{
	int cert_ok = check_certificate(p, cert_file) == 0;
	char e[512];
	char *pem = auth_read_secret(key_file, e, sizeof(e));
	struct auth_cert *c;

	if (!pem) {
		pf_error(p, "tenant.private_key_file", "tenant.private_key_file: %s", e);
		return;
	}
	if (!cert_ok) {
		/* no certificate to load it with: at least the key must parse */
		BIO *bio = BIO_new_mem_buf(pem, -1);
		EVP_PKEY *key
		    = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;

		if (!key) {
			ssl_reason(e, sizeof(e));
			pf_error(p, "tenant.private_key_file",
			    "tenant.private_key_file: no PEM private key in %s: %s", key_file, e);
		}
		EVP_PKEY_free(key);
		BIO_free(bio);
	}
	OPENSSL_cleanse(pem, strlen(pem));
	free(pem);
	if (!cert_ok)
		return;
	/* both files are there: what the daemon does at start decides the rest */
	if (!(c = auth_cert_load(cert_file, key_file, e, sizeof(e))))
		pf_error(p, "tenant.private_key_file", "tenant.private_key_file: %s", e);
	auth_cert_free(c);
}

/* At least one PEM certificate, and a file the daemon's trust store takes. */
static void
check_ca_file(struct pf *p, const char *ca_file)
{
	STACK_OF(X509_INFO) *infos = NULL;
	X509_STORE *store;
	int certs = 0, added = 0;
	char e[256];
	FILE *f;

	/* as the daemon reads it (graph.c, trust_store): a regular file, read once */
	if (!(f = auth_fopen_regular(ca_file, e, sizeof(e)))) {
		pf_error(p, "tenant.ca_file", "tenant.ca_file: %s", e);
		return;
	}
	infos = PEM_X509_INFO_read(f, NULL, NULL, NULL);
	fclose(f);
	if (!(store = X509_STORE_new())) {
		sk_X509_INFO_pop_free(infos, X509_INFO_free);
		return;
	}
	for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
		X509 *x = sk_X509_INFO_value(infos, i)->x509;
		if (x) {
			certs++;
			added += X509_STORE_add_cert(store, x) == 1;
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	X509_STORE_free(store);
	if (!certs) {
		ssl_reason(e, sizeof(e));
		pf_error(p, "tenant.ca_file", "tenant.ca_file: no PEM certificate in %s: %s",
		    ca_file, e);
	} else if (!added) {
		ssl_reason(e, sizeof(e));
		pf_error(p, "tenant.ca_file",
		    "tenant.ca_file: cannot load the trust anchors in %s: %s", ca_file, e);
	}
}

/* ---- directories -------------------------------------------------------- */

/*
 * numprovd -t as root, for a directory that does not exist: the daemon
 * started as root makes it for the user when every directory above it is
 * root's alone (a note, since the systemd unit makes only its own), the
 * user makes it when the parent is the user's, and neither otherwise.
 */
static void
root_makes(struct pf *p, const char *key, const char *dir, const char *units, const char *how)
{
	char real[4096], err[1024], parent[4096];

	switch (privs_dir_plan(dir, geteuid(), real, sizeof(real), err, sizeof(err))) {
	case PRIVS_ROOT_MAKES:
		if (strcmp(dir, units) != 0)
			pf_note(p, key,
			    "%s does not exist: numprovd started as root makes it for user %s; the "
			    "systemd unit makes only %s (%s)",
			    dir, p->user, units, how);
		break;
	case PRIVS_USER_MAKES:
		privs_parent_of(dir, parent, sizeof(parent));
		if (access(parent, W_OK | X_OK) < 0)
			pf_error(p, key, "%s: cannot create %s: %s is not writable by user %s: %s",
			    key, dir, parent, p->user, strerror(errno));
		break;
	default:
		pf_error(p, key, "%s: %s", key, err);
	}
}

/* numprovd makes the database directory (one level, mode 0750) and writes in it. */
/*
 * The inventory's files must be the user's to write too: a numprovd once run
 * as root leaves root's files (lock, regions, databases, logs) behind.
 */
static void
check_database_files(struct pf *p, const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *e;
	int bad = 0;

	if (!dir)
		return;
	while ((e = readdir(dir)) && bad < 3) {
		char file[4096];
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(file, sizeof(file), "%s/%s", path, e->d_name) >= sizeof(file)
		    || lstat(file, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (access(file, R_OK | W_OK) < 0) {
			pf_error(p, "database.path",
			    "database.path: %s is not writable by user %s: %s (a numprovd run as "
			    "another user left it: chown the directory's files)",
			    file, p->user, strerror(errno));
			bad++;
		}
	}
	closedir(dir);
}

static void
check_database(struct pf *p, const char *path)
{
	const char *key = "database.path";
	char parent[4096];
	struct stat st;

	if (stat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			pf_error(p, key, "database.path %s exists and is not a directory", path);
		else if (access(path, R_OK | W_OK | X_OK) < 0)
			pf_error(p, key, "database.path %s is not writable by user %s: %s", path,
			    p->user, strerror(errno));
		else
			check_database_files(p, path);
		return;
	}
	if (errno != ENOENT && errno != ENOTDIR) {
		pf_error(p, key, "database.path: cannot check %s: %s", path, strerror(errno));
		return;
	}
	privs_parent_of(path, parent, sizeof(parent));
	if (stat(parent, &st) < 0) {
		if (errno == ENOENT)
			pf_error(p, key,
			    "database.path: the directory %s does not exist (numprovd creates %s, "
			    "not its parents)",
			    parent, path);
		else
			pf_error(
			    p, key, "database.path: cannot check %s: %s", parent, strerror(errno));
	} else if (!S_ISDIR(st.st_mode)) {
		pf_error(p, key, "database.path: %s is not a directory", parent);
	} else if (p->flags & PREFLIGHT_ROOT_MAKES_DIRS) {
		root_makes(p, key, path, "/var/lib/numprov", "StateDirectory=");
	} else if (access(parent, W_OK | X_OK) < 0) {
		pf_error(p, key,
		    "database.path: cannot create %s: %s is not writable by user %s: %s", path,
		    parent, p->user, strerror(errno));
	}
}

/* The daemon binds control.socket in its directory, which it makes (one level) if missing. */
static void
check_control(struct pf *p, const char *path)
{
	const char *key = "control.socket";
	char dir[4096];
	struct stat st;

	if (!path || !*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		pf_error(p, key, "control.socket '%s' is empty or longer than %zu bytes",
		    path ? path : "", sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		return;
	}
	privs_parent_of(path, dir, sizeof(dir));
	if (stat(dir, &st) < 0) {
		char up[4096];
		if (errno != ENOENT) {
			pf_error(
			    p, key, "control.socket: cannot check %s: %s", dir, strerror(errno));
			return;
		}
		/* numprovd creates the directory at start, as systemd's RuntimeDirectory= would */
		privs_parent_of(dir, up, sizeof(up));
		if (stat(up, &st) < 0 || !S_ISDIR(st.st_mode))
			pf_error(p, key, "control.socket: the directory %s does not exist, nor %s",
			    dir, up);
		else if (p->flags & PREFLIGHT_ROOT_MAKES_DIRS) {
			root_makes(p, key, dir, "/run/numprov", "RuntimeDirectory=");
		} else if (access(up, W_OK | X_OK) < 0)
			pf_error(p, key,
			    "control.socket: cannot create the directory %s: %s is not writable by "
			    "user %s: %s",
			    dir, up, p->user, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		pf_error(p, key, "control.socket: %s is not a directory", dir);
		return;
	}
	if (access(dir, W_OK | X_OK) < 0) {
		pf_error(p, key,
		    "control.socket: cannot create %s: %s is not writable by user %s: %s", path,
		    dir, p->user, strerror(errno));
		return;
	}
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		pf_error(p, key,
		    "%s exists and is not a socket; remove it or change control.socket", path);
}

/*
 * numprovd gives control.sock to control.group with chown(2), which a user
 * other than root may do only for a group of its own.
 */
static void
check_control_group(struct pf *p, const char *group)
{
	struct group *gr;
	gid_t *groups;
	int n, in = 0;

	if (!group || !*group || geteuid() == 0)
		return;
	if (!(gr = getgrnam(group))) {
		/* as the daemon does: said, not refused */
		pf_note(p, "control.group",
		    "there is no group '%s' on this system: only root will be able to use the "
		    "socket",
		    group);
		return;
	}
	if (gr->gr_gid == getegid())
		return;
	if ((n = getgroups(0, NULL)) > 0 && (groups = calloc((size_t)n, sizeof(*groups)))) {
		n = getgroups(n, groups);
		for (int i = 0; i < n; i++)
			in |= groups[i] == gr->gr_gid;
		free(groups);
	}
	if (in)
		return;
	pf_error(p, "control.group",
	    "control.group '%s': user %s is not a member, so numprovd cannot give the socket "
	    "to it (add the user to the group, or choose one of its groups)",
	    group, p->user);
}

/* ---- entry points ------------------------------------------------------- */

void
preflight_where(const char *file, const char *key, char *out, size_t len)
{
	const config_setting_t *s;
	char err[1024];
	config_t lc;

	config_init(&lc);
	if (config_read_checked(file, &lc, err, sizeof(err)) == 0 && (s = config_lookup(&lc, key))
	    && config_setting_source_line(s) > 0)
		snprintf(out, len, "%s:%d",
		    config_setting_source_file(s) ? config_setting_source_file(s) : file,
		    config_setting_source_line(s));
	else
		snprintf(out, len, "%s", file);
	config_destroy(&lc);
}

int
preflight_check(const char *file, const struct config *cfg, int flags, char *err, size_t errlen)
{
	struct pf p = { .file = file, .err = err, .errlen = errlen, .flags = flags };
	struct passwd *pw = getpwuid(geteuid());
	char e[1024];

	if (errlen)
		err[0] = '\0';
	if (pw)
		snprintf(p.user, sizeof(p.user), "%s", pw->pw_name);
	else
		snprintf(p.user, sizeof(p.user), "%u", (unsigned)geteuid());
	/*
	 * The daemon reads it again at every SIGHUP, as the user it runs as. Read here for the
	 * lines of the keys, as config_load read it already: refused now, it has been replaced
	 * since (by a FIFO, a file with an @include), and the daemon would refuse it too.
	 */
	config_init(&p.lc);
	if (access(file, R_OK) < 0)
		pf_error(&p, NULL,
		    "not readable by user %s: %s (numprovd reads it again at every reload: "
		    "give it to root:%s with mode 0640)",
		    p.user, strerror(errno), cfg->daemon.group ? cfg->daemon.group : "numprov");
	else if (config_read_checked(file, &p.lc, e, sizeof(e)) == 0)
		p.parsed = 1;
	else
		pf_read_error(&p, e);
	if (cfg->tenant.client_secret_file)
		check_secret(&p, cfg->tenant.client_secret_file);
	if (cfg->tenant.certificate_file && cfg->tenant.private_key_file)
		check_cert_and_key(&p, cfg->tenant.certificate_file, cfg->tenant.private_key_file);
	if (cfg->tenant.ca_file)
		check_ca_file(&p, cfg->tenant.ca_file);
	if (cfg->database.path)
		check_database(&p, cfg->database.path);
	check_control(&p, cfg->control.socket);
	check_control_group(&p, cfg->control.group);

	config_destroy(&p.lc);
	return p.n;
}
