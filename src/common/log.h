/*
 * Logging: syslog and/or stderr, one subsystem token per message.
 *
 * Every message is one line. On its way out (syslog, stderr and a registered
 * callback alike) each unsafe byte in the message and in the token (utf8.h: the
 * C0 and C1 controls, DEL, U+2028, U+2029 and bytes that are not UTF-8) is
 * written as the four characters \xNN (two lower-case hex digits): a newline in
 * a request argument becomes \x0a and cannot start a forged "event=..." line.
 * Other bytes, UTF-8 included, pass unchanged; a backslash is not doubled (the
 * event lines quote with \"), so the escaping keeps lines whole rather than
 * being reversible. A message is cut at LOG_MSG_MAX - 1 bytes before it is
 * escaped.
 */
#ifndef NUMPROV_LOG_H
#define NUMPROV_LOG_H

#include <stdarg.h>
#include <syslog.h>

#define NP_PRINTF(f, a) __attribute__((format(printf, f, a)))

enum { LOG_DEST_SYSLOG = 1, LOG_DEST_STDERR = 2 };

#define LOG_MSG_MAX 2048 /* bytes of one formatted message, its NUL included */

/* Where messages go; a callback (tests, fuzzers) replaces both. */
typedef void (*log_cb)(int prio, const char *token, const char *msg);

void log_init(const char *ident, int facility, int level, int dest);
void log_set_level(int level);
void log_register(log_cb cb);
void log_close(void);

void log_msg(int prio, const char *token, const char *fmt, ...) NP_PRINTF(3, 4);
void log_vmsg(int prio, const char *token, const char *fmt, va_list ap) NP_PRINTF(3, 0);
/* Like log_msg at LOG_WARNING, with strerror(errno) appended. */
void log_warn(const char *token, const char *fmt, ...) NP_PRINTF(2, 3);
/* An event line of docs/interfaces.md, event lines ("event=assign user=..."): no token prefix. */
void log_event(int prio, const char *fmt, ...) NP_PRINTF(2, 3);

#define log_err(tok, ...) log_msg(LOG_ERR, tok, __VA_ARGS__)
#define log_warnx(tok, ...) log_msg(LOG_WARNING, tok, __VA_ARGS__)
#define log_notice(tok, ...) log_msg(LOG_NOTICE, tok, __VA_ARGS__)
#define log_info(tok, ...) log_msg(LOG_INFO, tok, __VA_ARGS__)
#define log_debug(tok, ...) log_msg(LOG_DEBUG, tok, __VA_ARGS__)

/* Names used in the config file: "daemon", "local0".."local7", "user". -1 if unknown. */
int log_facility_lookup(const char *name);
/* "emerg".."debug"; -1 if unknown. */
int log_level_lookup(const char *name);

#endif
