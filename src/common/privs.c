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

/*
 * Root makes a directory only where no other user can move things around:
 * every directory on the way to it is root's and writable by root alone, or
 * sticky (like /tmp, where others cannot rename root's entries). Otherwise
 * the path could be pointed elsewhere between the check and the mkdir.
 */
static int
root_only_parents(const char *dir, char *err, size_t errlen)
{
	char parent[PATH_MAX], real[PATH_MAX];
	struct stat st;
	char *p;

	privs_parent_of(dir, parent, sizeof(parent));
	if (!realpath(parent, real)) {
		snprintf(err, errlen, "cannot create %s: %s: %s", dir, parent, strerror(errno));
		return -1;
	}
	for (p = real;; p++) {
		if (*p == '/' || !*p) {
			char c = *p;

			*p = '\0';
			if (stat(real[0] ? real : "/", &st) < 0 || st.st_uid != 0
			    || ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX))) {
				snprintf(err, errlen,
				    "will not create %s as root: %s may be changed by users other "
				    "than "
				    "root; create it yourself, owned by the daemon's user",
				    dir, real[0] ? real : "/");
				return -1;
			}
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

int
privs_make_dir(const char *dir, mode_t mode, const struct privs_target *t, char *err, size_t errlen)
{
	struct stat st;
	int fd;

	if (stat(dir, &st) == 0)
		return 0;
	if (root_only_parents(dir, err, errlen) < 0)
		return -1;
	if (mkdir(dir, mode) < 0) {
		if (errno == EEXIST)
			return 0;
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	/*
	 * Through a descriptor of the directory just made, never by its name: in
	 * a parent others may write, the name could be swapped for a symbolic
	 * link between mkdir and chown, and root would give away its target.
	 */
	errno = 0;
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0
	    || fstat(fd, &st) < 0 || st.st_uid != geteuid() || fchown(fd, t->uid, t->gid) < 0
	    || fchmod(fd, mode) < 0) { /* fchmod: the umask took its part of mode */
		snprintf(err, errlen, "cannot give %s to %s:%s: %s", dir, t->user, t->group,
		    strerror(errno ? errno : EPERM));
		if (fd >= 0)
			close(fd);
		rmdir(dir); /* not left behind as root's, empty */
		return -1;
	}
	close(fd);
	return 1;
}

int
privs_switch(const struct privs_target *t, char *err, size_t errlen)
{
	if (initgroups(t->user, t->gid) < 0) {
		snprintf(err, errlen, "cannot take the groups of %s: %s", t->user, strerror(errno));
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
	if ((pw ? initgroups(pw->pw_name, gid) : setgroups(1, &gid)) < 0 || setgid(gid) < 0
	    || setuid(st.st_uid) < 0) {
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
