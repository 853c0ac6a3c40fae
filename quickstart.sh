#!/bin/bash
# numprov quick start, on a fresh Debian 12 machine as root:
#   ./quickstart.sh demo   install what is needed, build, run numprovd on the demo tenant
#   ./quickstart.sh test   install what is needed, build, run every test
# Options: demo --for SECONDS (stop by itself), test --fuzz-seconds N (default 20).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

# Debian 12 packages: build tools, the seven libraries, the test tools.
PACKAGES="autoconf automake pkg-config make gcc clang libclang-rt-14-dev
  libsnmp-dev libcurl4-openssl-dev libcjson-dev libdb5.3-dev libconfig-dev
  libevent-dev libssl-dev check python3 python3-pytest openssl ca-certificates"

install_packages() {
	local missing=""
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		echo "quickstart: these Debian packages are missing:$missing" >&2
		echo "quickstart: run as root, or install them with apt-get first" >&2
		exit 1
	fi
	echo "quickstart: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# build DIR [configure options]: an out-of-tree build under build/.
build() {
	local dir=$1
	shift
	[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] ||
		autoreconf -fi >/dev/null 2>&1
	mkdir -p "$dir"
	(cd "$dir" && { [ -f Makefile ] || "$top/configure" -q "$@"; } && make -s -j"$(nproc)")
}

demo() {
	local seconds=0
	[ "${1:-}" = "--for" ] && seconds=${2:-0}
	build build/demo
	local demo_dir="$top/build/demo-tenant"
	mkdir -p "$demo_dir"
	sed "s#@DEMODIR@#$demo_dir#g" etc/demo/numprovd.conf >"$demo_dir/numprovd.conf"
	printf 'demo-secret\n' >"$demo_dir/client-secret"
	chmod 600 "$demo_dir/client-secret"
	local conf="$demo_dir/numprovd.conf"
	echo "== numprovd -t: checking the demo configuration"
	build/demo/numprovd -t -c "$conf"
	echo "== starting numprovd on the demo tenant (inventory in $demo_dir/db)"
	build/demo/numprovd -f -c "$conf" &
	daemon_pid=$! # global: the EXIT trap runs after this function has returned
	trap 'kill $daemon_pid 2>/dev/null; wait $daemon_pid 2>/dev/null || true' EXIT INT TERM
	for _ in $(seq 50); do
		[ -e "$demo_dir/db/numbers.db" ] && break
		sleep 0.1
	done
	sleep 0.5
	echo "== numprovctl ranges"
	build/demo/numprovctl -c "$conf" ranges
	echo "== the provisioning cycle (Graph client and simulator) is not built yet:"
	echo "   numprovd holds the inventory and serves it; stop it with Ctrl-C"
	if [ "$seconds" -gt 0 ]; then
		sleep "$seconds"
	else
		wait $daemon_pid
	fi
}

case "${1:-}" in
demo)
	shift
	install_packages
	demo "$@"
	;;
test)
	shift
	install_packages
	exec tests/run.sh "$@"
	;;
*)
	echo "usage: $0 demo [--for SECONDS] | test [--fuzz-seconds N]" >&2
	exit 2
	;;
esac
