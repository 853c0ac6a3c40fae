#include "clock.h"

#include <stdlib.h>

#include "log.h"

static time_t anchor_wall;    /* np_time() at anchor_boot */
static long long anchor_boot; /* CLOCK_BOOTTIME, ms */
static long skew;	      /* wall - np_time() at the last reading */

static long long
boot_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0 && clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return -1;
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

time_t
np_time(void)
{
	time_t wall = time(NULL);
	long long boot = boot_ms();
	time_t est;
	long d;

	if (boot < 0)
		return wall;
	if (!anchor_boot) {
		anchor_wall = wall;
		anchor_boot = boot;
		return wall;
	}
	est = anchor_wall + (time_t)((boot - anchor_boot) / 1000);
	d = (long)(wall - est);
	if (labs(d) <= CLOCK_STEP_S) {
		/* the wall clock follows the time elapsed (or comes back to it): follow it */
		long was = skew;
		skew = 0;
		anchor_wall = wall;
		anchor_boot = boot;
		if (was) /* the state is set first: a logger reading the clock sees it */
			log_notice("clock",
			    "the wall clock agrees with the elapsed time again "
			    "(%+ld s from it)",
			    d);
		return wall;
	}
	if (labs(d - skew) > CLOCK_STEP_S) {
		/* a step (once per step): deadlines keep to the time elapsed */
		long step = d - skew;
		skew = d;
		log_warnx("clock",
		    "the wall clock was stepped by %+ld s; numprovd keeps to the time elapsed "
		    "for its deadlines and stamps (quarantines, retries, syncs) until it "
		    "is restarted: restart it if the new time is the right one",
		    step);
	}
	skew = d; /* the anchor stays at the last reading that agreed */
	return est;
}

time_t
np_time_late(void)
{
	time_t np = np_time(), wall = time(NULL);

	return wall > np ? wall : np;
}

long
np_clock_skew(void)
{
	return skew;
}
