#include "build-config.h"

#include "privs.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdlib.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

int
privs_resolve(const char *user, const char *group, struct privs_target *t, char *err, size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	errno = 0;
	if (!user || !(pw = getpwnam(user))) {
		if (errno && errno != ENOENT && errno != ESRCH)
			snprintf(err, errlen, "daemon.user: cannot look up '%s': %s",
			    user ? user : "", strerror(errno));
		else
			snprintf(err, errlen,
			    "daemon.user: there is no user '%s' on this system (the package makes "
			    "numprov; or set daemon.user to an unprivileged user)",
			    user ? user : "");
		return PRIVS_BAD_USER;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen,
		    "daemon.user '%s' is root: numprovd does not run as root; give it an "
		    "unprivileged user, or start it with --allow-root",
		    user);
		return PRIVS_BAD_USER;
	}
	t->uid = pw->pw_uid;
	snprintf(t->user, sizeof(t->user), "%s", pw->pw_name);
	errno = 0;
	if (!group || !(gr = getgrnam(group))) {
		if (errno && errno != ENOENT && errno != ESRCH)
			snprintf(err, errlen, "daemon.group: cannot look up '%s': %s",
			    group ? group : "", strerror(errno));
		else
			snprintf(err, errlen, "daemon.group: there is no group '%s' on this system",
			    group ? group : "");
		return PRIVS_BAD_GROUP;
	}
	if (gr->gr_gid == 0) {
		snprintf(err, errlen,
		    "daemon.group '%s' is root's group: numprovd would keep access to what only "
		    "root's group may read; give it its own group, or start it with --allow-root",
		    group);
		return PRIVS_BAD_GROUP;
	}
	t->gid = gr->gr_gid;
	snprintf(t->group, sizeof(t->group), "%s", gr->gr_name);
	return 0;
}

/* A directory no user but root can change (or sticky, where others cannot rename root's). */
static int
root_only(const struct stat *st)
{
	return S_ISDIR(st->st_mode) && st->st_uid == 0
	    && (!(st->st_mode & (S_IWGRP | S_IWOTH)) || (st->st_mode & S_ISVTX));
}

int
privs_dir_plan(const char *dir, uid_t uid, char *real, size_t reallen, char *err, size_t errlen)
{
	char parent[PATH_MAX], path[PATH_MAX], name[PATH_MAX];
	const char *base;
	struct stat st;
	size_t n;
	char *p;

	/* "/srv/numprov/" is /srv/numprov */
	if ((size_t)snprintf(name, sizeof(name), "%s", dir) >= sizeof(name)) {
		snprintf(err, errlen, "cannot create %.200s...: the path is too long", dir);
		return -1;
	}
	for (n = strlen(name); n > 1 && name[n - 1] == '/'; n--)
		name[n - 1] = '\0';
	privs_parent_of(name, parent, sizeof(parent));
	base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
	if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		snprintf(err, errlen, "cannot create %s: not a directory name", dir);
		return -1;
	}
	if (!realpath(parent, path) || stat(path, &st) < 0) {
		snprintf(err, errlen, "cannot create %s: %s: %s", dir, parent, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "cannot create %s: %s is not a directory", dir, path);
		return -1;
	}
	if ((size_t)snprintf(real, reallen, "%s/%s", strcmp(path, "/") ? path : "", base)
	    >= reallen) {
		snprintf(err, errlen, "cannot create %s: the path is too long", dir);
		return -1;
	}
	/* the parent is the user's own: the user makes it, after root is given up */
	if (st.st_uid == uid && uid != 0 && !(st.st_mode & (S_IWGRP | S_IWOTH)))
		return PRIVS_USER_MAKES;
	/* root makes it only if every directory on the way is root's alone */
	for (p = path;; p++) {
		if (*p == '/' || !*p) {
			char c = *p;

			*p = '\0';
			if (stat(path[0] ? path : "/", &st) < 0 || !root_only(&st)) {
				snprintf(err, errlen,
				    "will not create %s as root: %s may be changed by users other "
				    "than "
				    "root; create it yourself, owned by the daemon's user",
				    dir, path[0] ? path : "/");
				return -1;
			}
			*p = c;
			if (!c)
				break;
		}
	}
	return PRIVS_ROOT_MAKES;
}

int
privs_make_dir(const char *dir, mode_t mode, const struct privs_target *t, char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;
	int fd, plan;

	if (stat(dir, &st) == 0)
		return 0;
	if ((plan = privs_dir_plan(dir, t->uid, real, sizeof(real), err, errlen)) < 0)
		return -1;
	if (plan == PRIVS_USER_MAKES)
		return 0; /* numprovd makes it itself once it is t */
	/* by the resolved path: every directory on it is root's alone */
	if (mkdir(real, mode) < 0) {
		if (errno == EEXIST)
			return 0;
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	/* through a descriptor of the directory just made, never by its name again */
	errno = 0;
	if ((fd = open(real, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0
	    || fstat(fd, &st) < 0 || st.st_uid != geteuid() || fchown(fd, t->uid, t->gid) < 0
	    || fchmod(fd, mode) < 0) { /* fchmod: the umask took its part of mode */
		snprintf(err, errlen, "cannot give %s to %s:%s: %s", dir, t->user, t->group,
		    strerror(errno ? errno : EPERM));
		if (fd >= 0)
			close(fd);
		rmdir(real); /* not left behind as root's, empty */
		return -1;
	}
	close(fd);
	return 1;
}

/* 0 when none of the process's groups is root's. */
static int
no_root_group(void)
{
	gid_t groups[1024];
	int n = getgroups(sizeof(groups) / sizeof(groups[0]), groups);

	if (n < 0)
		return -1;
	for (int i = 0; i < n; i++)
		if (groups[i] == 0)
			return -1;
	return 0;
}

int
privs_switch(const struct privs_target *t, char *err, size_t errlen)
{
	if (initgroups(t->user, t->gid) < 0) {
		snprintf(err, errlen, "cannot take the groups of %s: %s", t->user, strerror(errno));
		return -1;
	}
	if (no_root_group() < 0) {
		snprintf(err, errlen,
		    "user %s is a member of root's group: numprovd would keep what only root's "
		    "group may read; take it out of that group",
		    t->user);
		return -1;
	}
	if (setgid(t->gid) < 0 || setuid(t->uid) < 0) {
		snprintf(
		    err, errlen, "cannot become %s:%s: %s", t->user, t->group, strerror(errno));
		return -1;
	}
	/* for good: none of the three IDs may be root, and root must not come back */
	if (getuid() != t->uid || geteuid() != t->uid || getgid() != t->gid || getegid() != t->gid
	    || setuid(0) == 0) {
		snprintf(err, errlen, "root privileges remain after switching to %s", t->user);
		return -1;
	}
	return 0;
}

void
privs_no_core(void)
{
	struct rlimit none = { 0, 0 };

	/* both can be refused by a seccomp filter that already did the same: no harm */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &none);
}

int
privs_become_owner_of(const char *dir, char *err, size_t errlen)
{
	struct passwd *pw;
	struct stat st;
	gid_t gid;

	if (geteuid() != 0 || stat(dir, &st) < 0 || st.st_uid == 0)
		return 0; /* not root, nothing there yet, or root's own inventory */
	/* the owner's own group and groups, never root's group through the directory's */
	pw = getpwuid(st.st_uid);
	gid = pw ? pw->pw_gid : st.st_gid;
	if (gid == 0) {
		snprintf(err, errlen,
		    "%s belongs to uid %u with root's group: numprovctl will not read it as that "
		    "user with root's group (chown it to the daemon's user and group)",
		    dir, (unsigned)st.st_uid);
		return -1;
	}
	if ((pw ? initgroups(pw->pw_name, gid) : setgroups(1, &gid)) < 0 || no_root_group() < 0
	    || setgid(gid) < 0 || setuid(st.st_uid) < 0) {
		snprintf(err, errlen,
		    "cannot act as the owner of %s (uid %u) to read it without leaving root's "
		    "files there: %s",
		    dir, (unsigned)st.st_uid, strerror(errno));
		return -1;
	}
	return 0;
}

void
privs_parent_of(const char *path, char *out, size_t len)
{
	size_t n;
	char *slash;

	snprintf(out, len, "%s", path);
	n = strlen(out);
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	if (!(slash = strrchr(out, '/')))
		snprintf(out, len, ".");
	else if (slash == out)
		out[1] = '\0';
	else
		*slash = '\0';
}
