/* numprovd: options, start-up, the event loop and signals. */
#ifndef NUMPROV_DAEMON_H
#define NUMPROV_DAEMON_H

int daemon_main(int argc, char **argv);

#endif
