# Shared by syslog_ns.sh and diskfull_ns.sh, which source it.
# in_private_ns: true when this shell runs in another mount namespace than some ancestor
# (pid 1 when it can be read; it often cannot): everything the caller mounts stays private.
in_private_ns() {
	local self ns pid=$PPID
	self=$(readlink /proc/self/ns/mnt) || return 1
	while [ -n "$pid" ] && [ "$pid" -gt 1 ]; do
		ns=$(readlink "/proc/$pid/ns/mnt" 2>/dev/null) || ns=""
		if [ -n "$ns" ] && [ "$ns" != "$self" ]; then return 0; fi
		pid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || pid=""
	done
	ns=$(readlink /proc/1/ns/mnt 2>/dev/null) || ns=""
	[ -n "$ns" ] && [ "$ns" != "$self" ]
}
