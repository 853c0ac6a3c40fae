/* libFuzzer: a request line on the control socket, as numprovd parses it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_request req;
	const char *err = NULL;

	if (control_parse((const char *)data, size, &req, &err) < 0) {
		if (!err || !*err || req.root)
			abort();
		return 0;
	}
	if (!req.command || req.argc < 0 || req.argc > CONTROL_MAX_ARGS)
		abort();
	for (int i = 0; i < req.argc; i++)
		if (!req.argv[i])
			abort();
	control_request_free(&req);
	return 0;
}
