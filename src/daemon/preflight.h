/*
 * numprovd -t beyond the syntax: what the daemon will need at start that can be
 * checked without the network. The credentials (the client secret, or the
 * certificate and its private key) are read as the daemon reads them, by the
 * same loader, so -t accepts nothing the daemon refuses; the CA file must hold
 * a PEM certificate; the database's parent (or the database directory itself)
 * must be a writable directory; the control socket's directory must exist.
 * "The service user" is the user running the check (access(2), open(2)):
 * numprovd -t run as root becomes daemon.user first.
 */
#ifndef NUMPROV_PREFLIGHT_H
#define NUMPROV_PREFLIGHT_H

#include <stddef.h>

struct config;

/*
 * Check cfg, loaded from file. Appends one "FILE:LINE: what is wrong" line per
 * problem to err (newline-separated, like config_load; "FILE: what" for a key
 * left to its default) and returns the number of problems, 0 when all is well.
 */
/*
 * PREFLIGHT_ROOT_MAKES_DIRS: the daemon will start as root and make the
 * database directory and the control socket's directory itself before it
 * gives up root; a missing one then needs only an existing parent.
 */
#define PREFLIGHT_ROOT_MAKES_DIRS 0x1
int preflight_check(
    const char *file, const struct config *cfg, int flags, char *err, size_t errlen);

/* "FILE:LINE" of key in file, or "FILE" when the key is not in it (its default applies). */
void preflight_where(const char *file, const char *key, char *out, size_t len);

#endif
