#!/bin/bash
# A small filesystem that can be filled up without touching the host: meant to run
# inside a private mount namespace, e.g.
#
#   unshare --mount --propagation private --fork -- \
#       /bin/bash tests/integration/diskfull_ns.sh WORKDIR SIZE SECONDS
#
# In the namespace a tmpfs of SIZE (tmpfs syntax: 128m) is mounted on WORKDIR/mnt, seen
# by nothing outside. This shell's pid goes to WORKDIR/ns.pid once the tmpfs is there;
# commands join the namespace with
#
#   nsenter --target "$(cat WORKDIR/ns.pid)" --mount -- COMMAND
#
# (numprovd with its database on the tmpfs, dd to fill it, invcheck to read it). The
# script then waits until WORKDIR/stop appears or SECONDS pass. The tmpfs, and whatever
# is on it, goes away with the last process in the namespace; nothing outside WORKDIR/mnt
# is mounted or written but WORKDIR/ns.pid.
# Exit status: 0, or 70 when the namespace or the tmpfs could not be set up.
set -eu
PATH=$PATH:/usr/sbin:/sbin

die() { echo "diskfull_ns: $*" >&2; exit 70; }

[ $# -eq 3 ] || die "usage: diskfull_ns.sh WORKDIR SIZE SECONDS"
work=$1 size=$2 secs=$3
case $secs in '' | *[!0-9]*) die "SECONDS must be a whole number: $secs" ;; esac
case $size in '' | *[!0-9kmgKMG]*) die "SIZE must be a tmpfs size such as 128m: $size" ;; esac
[ -d "$work" ] || die "no directory $work"
work=$(cd "$work" && pwd -P)
[ "$(id -u)" = 0 ] || die "must run as root"

# Refuse to run in the host's mount namespace: everything below must stay private.
. "$(dirname "$0")/ns_lib.sh"
in_private_ns ||
	die "not in a private mount namespace (run me under unshare --mount --propagation private)"
mount --make-rprivate / || die "cannot make the mounts private"

mkdir -p "$work/mnt"
mount -t tmpfs -o "size=$size,mode=0755" numprov-diskfull "$work/mnt" ||
	die "cannot mount a tmpfs on $work/mnt"
echo $$ >"$work/ns.pid"

deadline=$((SECONDS + secs))
while [ ! -e "$work/stop" ] && [ "$SECONDS" -lt "$deadline" ]; do
	sleep 0.2
done
exit 0
