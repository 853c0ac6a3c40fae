/*
 * Credentials for the token endpoint: the client secret file, or a certificate
 * and its private key that sign a JWT client assertion (PS256 + x5t#S256 by
 * default, RS256 + x5t on request).
 */
#ifndef NUMPROV_AUTH_H
#define NUMPROV_AUTH_H

#include <stddef.h>
#include <stdio.h>
#include <time.h>

enum auth_alg { AUTH_PS256, AUTH_RS256 };

/*
 * Read a secret or key file. Refuses one that group or others may read (the
 * secret is the tenant's keys), one that is not a regular file, and an empty
 * one. Returns the whole content (malloc'd) or NULL with the reason in err.
 */
char *auth_read_secret(const char *file, char *err, size_t errlen);
/* fopen(file, "r") of a regular file only (a FIFO or a device is refused at once). */
FILE *auth_fopen_regular(const char *file, char *err, size_t errlen);
/* The same, first line only (the client secret), without its line end. */
char *auth_secret_line(const char *file, char *err, size_t errlen);

struct auth_cert;

struct auth_cert *auth_cert_load(
    const char *cert_file, const char *key_file, char *err, size_t errlen);
void auth_cert_free(struct auth_cert *c);

/*
 * A signed client assertion: aud is the token endpoint URL, iss = sub =
 * client_id, a fresh jti, valid from now for 10 minutes. malloc'd, or NULL.
 */
char *auth_assertion(const struct auth_cert *c, enum auth_alg alg, const char *client_id,
    const char *aud, time_t now, char *err, size_t errlen);

/* base64url without padding; out must hold 4 * ((len + 2) / 3) + 1 bytes. */
void auth_b64url(const unsigned char *in, size_t len, char *out);

/* A random version-4 UUID (37 bytes with the NUL). */
void auth_uuid(char out[37]);

#endif
