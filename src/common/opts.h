/* What numprovd and numprovctl share about their command lines. */
#ifndef NUMPROV_OPTS_H
#define NUMPROV_OPTS_H

/*
 * After getopt_long returned '?' or ':': the option it stopped at, as the
 * user wrote it: "-x" for a short one (inside a group such as -xf too), else
 * the word (a long option). The string may be static: use it at once.
 */
const char *opts_bad_option(char **argv, int optind_now);

#endif
