#!/bin/bash
# Run a command against a real syslog daemon (rsyslogd on /dev/log) without touching the
# host: meant to run inside a private mount namespace, e.g.
#
#   unshare --mount --propagation private --fork -- \
#       /bin/bash tests/integration/syslog_ns.sh WORKDIR SECONDS numprovd -f -c CONF
#
# In the namespace a tmpfs replaces /dev (the real nodes programs need are bind-mounted
# back from a private view of the real /dev), rsyslogd -n listens on the new /dev/log
# with imuxsock only and writes every message to WORKDIR/syslog.log as
#
#   FACILITY.SEVERITY PROGRAMNAME[PROCID]: MESSAGE
#
# Then COMMAND runs until it exits, WORKDIR/stop appears or SECONDS pass; it is stopped
# with SIGTERM (SIGKILL 15 s later), then rsyslogd is stopped the same way.
#
# Files in WORKDIR (visible from the host; nothing outside WORKDIR is written):
#   syslog.log      what rsyslogd received (the probe line from this script included)
#   command.out     the command's stdout and stderr
#   command.pid     its pid, written once it is started
#   command.rc      its exit status (143/137 = it had to be signalled and did not exit cleanly
#                   on its own; a daemon that handles SIGTERM exits 0)
#   rsyslogd.out    rsyslogd's own stdout/stderr
#   stop            create it to end the run early
# Exit status: the command's, or 70 when the syslog side could not be set up.
set -eu
set -o pipefail
PATH=$PATH:/usr/sbin:/sbin

die() { echo "syslog_ns: $*" >&2; exit 70; }

[ $# -ge 3 ] || die "usage: syslog_ns.sh WORKDIR SECONDS COMMAND [ARG...]"
work=$1 secs=$2
shift 2
case $secs in '' | *[!0-9]*) die "SECONDS must be a whole number: $secs" ;; esac
[ -d "$work" ] || die "no directory $work"
work=$(cd "$work" && pwd -P)
[ "$(id -u)" = 0 ] || die "must run as root"
command -v rsyslogd >/dev/null || die "rsyslogd is not installed"

# Refuse to run in the host's mount namespace: everything below must stay private.
. "$(dirname "$0")/ns_lib.sh"
in_private_ns ||
	die "not in a private mount namespace (run me under unshare --mount --propagation private)"
mount --make-rprivate / || die "cannot make the mounts private"

cmd_pid="" rsys_pid="" deadline=$((SECONDS + secs))

# wait_gone PID SECONDS: true once PID has exited (and been reaped) within SECONDS
wait_gone() {
	local pid=$1 n=$(($2 * 10))
	while kill -0 "$pid" 2>/dev/null; do
		[ "$n" -gt 0 ] || return 1
		# a zombie child counts as gone
		case $(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null || echo Z) in Z) return 0 ;; esac
		sleep 0.1
		n=$((n - 1))
	done
}

stop_pid() { # stop_pid PID: SIGTERM, then SIGKILL after 15 s
	local pid=$1
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	if ! wait_gone "$pid" 15; then
		echo "syslog_ns: pid $pid ignored SIGTERM for 15 s, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

# shellcheck disable=SC2317  # reached through the EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [ -n "$cmd_pid" ]; then
		stop_pid "$cmd_pid"
		wait "$cmd_pid" 2>/dev/null || true
	fi
	if [ -n "$rsys_pid" ]; then
		stop_pid "$rsys_pid"
		wait "$rsys_pid" 2>/dev/null || true
	fi
	# the namespace (and every mount in it) goes away with its last process
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# ---- a private /dev -----------------------------------------------------------------
# A tmpfs of our own holds the view of the real /dev, so nothing on the host side (not
# even a recursive delete of WORKDIR) can reach the real device nodes through it.
priv="$work/.ns"
mkdir -p "$priv"
mount -t tmpfs -o mode=0700,size=1m syslog-ns-private "$priv"
mkdir "$priv/realdev"
mount --rbind /dev "$priv/realdev"
mount --make-rprivate "$priv/realdev"
real="$priv/realdev"

mount -t tmpfs -o mode=0755,nosuid,size=1m syslog-ns-dev /dev
for node in null zero full random urandom tty; do
	[ -e "$real/$node" ] || continue
	: >"/dev/$node"
	mount --bind "$real/$node" "/dev/$node"
done
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir /dev/pts /dev/shm
if [ -d "$real/pts" ]; then
	mount --rbind "$real/pts" /dev/pts
	ln -s pts/ptmx /dev/ptmx
fi
mount -t tmpfs -o mode=1777,nosuid,nodev,size=16m syslog-ns-shm /dev/shm
[ ! -e /dev/log ] || die "/dev/log exists on the fresh tmpfs"

# ---- rsyslogd on /dev/log -------------------------------------------------------------
out="$work/syslog.log"
: >"$out"
mkdir "$priv/spool"
cat >"$priv/rsyslog.conf" <<EOF
global(workDirectory="$priv/spool")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.RateLimit.Interval="0"
       SysSock.UsePIDFromSystem="off")
template(name="siem" type="string"
         string="%syslogfacility-text%.%syslogseverity-text% %programname%[%procid%]:%msg:::sp-if-no-1st-sp%%msg:::drop-last-lf%\n")
*.* action(type="omfile" file="$out" template="siem" flushOnTXEnd="on")
EOF
cp "$priv/rsyslog.conf" "$work/rsyslog.conf" # for whoever reads a failure
rsyslogd -N1 -f "$priv/rsyslog.conf" >"$work/rsyslogd.out" 2>&1 ||
	die "rsyslogd rejects its config: $(tail -n 5 "$work/rsyslogd.out")"
rsyslogd -n -f "$priv/rsyslog.conf" -i "$priv/rsyslogd.pid" >>"$work/rsyslogd.out" 2>&1 </dev/null &
rsys_pid=$!

n=100
while [ ! -S /dev/log ]; do
	kill -0 "$rsys_pid" 2>/dev/null || die "rsyslogd exited: $(tail -n 5 "$work/rsyslogd.out")"
	[ "$n" -gt 0 ] || die "rsyslogd did not create /dev/log within 10 s"
	sleep 0.1
	n=$((n - 1))
done

# The socket existing is not enough: wait until a probe goes all the way to the file.
probe="syslog_ns probe $$ $RANDOM"
n=100
until grep -qF "$probe" "$out"; do
	[ "$n" -gt 0 ] || die "rsyslogd did not write a probe message within 10 s"
	if [ $((n % 20)) = 0 ]; then
		logger -u /dev/log -p user.info -t syslog_ns "$probe" 2>/dev/null || true
	fi
	sleep 0.1
	n=$((n - 1))
done

# ---- the command ----------------------------------------------------------------------
rm -f "$work/stop" "$work/command.rc" "$work/command.pid"
"$@" >"$work/command.out" 2>&1 </dev/null &
cmd_pid=$!
echo "$cmd_pid" >"$work/command.pid"

while kill -0 "$cmd_pid" 2>/dev/null && [ ! -e "$work/stop" ] && [ "$SECONDS" -lt "$deadline" ]; do
	case $(cut -d' ' -f3 "/proc/$cmd_pid/stat" 2>/dev/null || echo Z) in Z) break ;; esac
	sleep 0.1
done
stop_pid "$cmd_pid"
rc=0
wait "$cmd_pid" || rc=$?
cmd_pid=""
echo "$rc" >"$work/command.rc"

# let rsyslogd write what is still in the socket, then stop it
sleep 0.3
stop_pid "$rsys_pid"
wait "$rsys_pid" 2>/dev/null || true
rsys_pid=""
exit "$rc"
