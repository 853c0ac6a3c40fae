/*
 * Privileges: who numprovd runs as when started as root, and what numprovd
 * and numprovctl do so that no secret ends up in a core file and no file of
 * the inventory ends up owned by root.
 */
#ifndef NUMPROV_PRIVS_H
#define NUMPROV_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct privs_target {
	uid_t uid;
	gid_t gid;
	char user[64], group[64];
};

/*
 * Looks up daemon.user and daemon.group. 0, or PRIVS_BAD_USER or
 * PRIVS_BAD_GROUP with a sentence in err (no such user or group, or root:
 * numprovd would not give anything up).
 */
#define PRIVS_BAD_USER (-1)
#define PRIVS_BAD_GROUP (-2)
int privs_resolve(
    const char *user, const char *group, struct privs_target *t, char *err, size_t errlen);

/*
 * Who makes the missing directory dir for the user uid: PRIVS_ROOT_MAKES
 * when every directory above it is root's alone (real: the path resolved),
 * PRIVS_USER_MAKES when its parent is uid's own (numprovd makes it once it
 * is that user), or -1 with err when another user could change the way to it.
 */
#define PRIVS_ROOT_MAKES 1
#define PRIVS_USER_MAKES 2
int privs_dir_plan(
    const char *dir, uid_t uid, char *real, size_t reallen, char *err, size_t errlen);

/*
 * Makes dir (one level, with mode) for t when it is missing, as root, so that
 * t can work in it once root is given up. An existing directory is left as it
 * is: its owner is the administrator's choice (numprovd -t says when t cannot
 * write there). 1 made, 0 there already or left for the user to make
 * (PRIVS_USER_MAKES), -1 with err.
 */
int privs_make_dir(
    const char *dir, mode_t mode, const struct privs_target *t, char *err, size_t errlen);

/*
 * Gives up root for good: the groups of t's user (initgroups) with t's group
 * as the primary one, then the user. Checked afterwards: root cannot be
 * regained. 0, or -1 with err.
 */
int privs_switch(const struct privs_target *t, char *err, size_t errlen);

/*
 * No core files and no ptrace by the same user: the process holds the
 * tenant's secret or private key and its access tokens (PR_SET_DUMPABLE 0,
 * RLIMIT_CORE 0). Call after privs_switch, which resets the dumpable flag.
 */
void privs_no_core(void);

/*
 * numprovctl as root reading the inventory while numprovd is stopped: it
 * becomes the owner of the database directory first, so that the files
 * Berkeley DB makes there (regions, logs) stay numprovd's. 0 (nothing to do
 * or done), -1 with err.
 */
int privs_become_owner_of(const char *dir, char *err, size_t errlen);

/* The directory a path is in ("/" for "/x", "." for "x"). */
void privs_parent_of(const char *path, char *out, size_t len);

#endif
