/* numprovctl: the administrator's command-line tool. */
#ifndef NUMPROV_CTL_H
#define NUMPROV_CTL_H

int ctl_main(int argc, char **argv);

#endif
