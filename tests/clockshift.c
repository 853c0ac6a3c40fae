/*
 * clockshift.so: the wall clock of a process moved by an offset that a file holds,
 * for the clock-step tests (tests/integration/test_clock.py). LD_PRELOAD it and set
 * NUMPROV_CLOCKSHIFT to a file holding a number of seconds (may be negative): time(),
 * gettimeofday() and clock_gettime(CLOCK_REALTIME*) are the real wall clock plus that
 * offset, read again every 100 ms; the other clocks (CLOCK_MONOTONIC, CLOCK_BOOTTIME)
 * are left alone, as a step of the system clock leaves them.
 *
 *   cc -shared -fPIC -O2 -o clockshift.so tests/clockshift.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long offset;
static long long read_at = -1000; /* CLOCK_MONOTONIC ms of the last read */

static int
real_clock(clockid_t id, struct timespec *ts)
{
	return (int)syscall(SYS_clock_gettime, id, ts);
}

static long
shift(void)
{
	struct timespec m;
	long long now;
	const char *file = getenv("NUMPROV_CLOCKSHIFT");

	if (!file || real_clock(CLOCK_MONOTONIC, &m) != 0)
		return offset;
	now = (long long)m.tv_sec * 1000 + m.tv_nsec / 1000000;
	if (now - read_at >= 100) {
		char buf[32];
		int fd = open(file, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		if (n > 0) {
			buf[n] = '\0';
			offset = strtol(buf, NULL, 10);
		}
		read_at = now;
	}
	return offset;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
	int rc = real_clock(id, ts);

	if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
		ts->tv_sec += shift();
	return rc;
}

int
gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
	struct timespec ts;

	(void)tz;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return -1;
	tv->tv_sec = ts.tv_sec; /* glibc declares it non-null */
	tv->tv_usec = ts.tv_nsec / 1000;
	return 0;
}

time_t
time(time_t *t)
{
	struct timespec ts;
	time_t now = clock_gettime(CLOCK_REALTIME, &ts) == 0 ? ts.tv_sec : (time_t)-1;

	if (t)
		*t = now;
	return now;
}
