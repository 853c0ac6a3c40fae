/*
 * The daemon's clock: the wall clock, except that a step of it while numprovd
 * runs is not followed. Deadlines numprovd keeps in wall-clock seconds (the end
 * of a quarantine, a user's next retry, the next full sync) then neither come a
 * day early when the clock is set a day ahead, nor an hour late when it is set
 * an hour back. A slow correction (NTP slewing) is followed; a step of more than
 * CLOCK_STEP_S seconds is logged once and numprovd goes on with the time that
 * has elapsed (CLOCK_BOOTTIME, which counts a suspend) until it is restarted or
 * the wall clock comes back to it.
 */
#ifndef NUMPROV_CLOCK_H
#define NUMPROV_CLOCK_H

#include <time.h>

#define CLOCK_STEP_S 120

/* Now, in wall-clock seconds, steps left out. */
time_t np_time(void);
/*
 * The later of the wall clock and np_time(): what a deadline that is stored (the end
 * of a quarantine) is counted from, so that it comes neither early while numprovd
 * runs (compared with np_time()) nor after a restart (compared with the wall clock),
 * whichever of the two was right when the clock stepped.
 */
time_t np_time_late(void);
/* How far the wall clock is from np_time() (seconds; 0 when it follows). */
long np_clock_skew(void);

#endif
