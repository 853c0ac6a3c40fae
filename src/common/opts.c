#include "build-config.h"

#include "opts.h"

#include <getopt.h>

const char *
opts_bad_option(char **argv, int optind_now)
{
	static char shortopt[3] = "-?";

	if (optopt) {
		shortopt[1] = (char)optopt;
		return shortopt;
	}
	return argv[optind_now - 1];
}
