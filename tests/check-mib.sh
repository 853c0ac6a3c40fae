#!/bin/sh
# tests/check-mib.sh SRCDIR IETFDIR
#
# Lint mibs/NUMPROV-MIB.txt and check it against the object plan:
#  1. smilint -l 6 prints nothing at all (any error, warning or note fails);
#  2. net-snmp's parser loads it without a message, and snmptranslate -Tp
#     shows every object of the plan under numprovMIB, each at its number;
#  3. numprovMIB's OID is the one numprovd registers (NUMPROV_MIB_OID in
#     src/daemon/agent_mib.h), when that header is there.
# IETFDIR holds SNMPv2-SMI, -TC and -CONF (tests/ietf-mibs.sh fills it).
# NET-SNMP-MIB (for netSnmpPlaypen) is taken from NETSNMP_MIBDIR, by default
# /usr/share/snmp/mibs (Debian package libsnmp-base).
set -eu

prog=check-mib
if [ $# -ne 2 ]; then
	echo "usage: $0 SRCDIR IETFDIR" >&2
	exit 2
fi
srcdir=$1
ietfdir=$2
netsnmpdir=${NETSNMP_MIBDIR:-/usr/share/snmp/mibs}
mib=$srcdir/mibs/NUMPROV-MIB.txt
header=$srcdir/src/daemon/agent_mib.h
path=$ietfdir:$netsnmpdir:$srcdir/mibs

fail() {
	echo "$prog: FAIL: $*" >&2
	exit 1
}

[ -f "$mib" ] || fail "$mib not found"
for m in SNMPv2-SMI SNMPv2-TC SNMPv2-CONF; do
	[ -f "$ietfdir/$m" ] || fail "$ietfdir/$m not found (run tests/ietf-mibs.sh $ietfdir)"
done
[ -f "$netsnmpdir/NET-SNMP-MIB.txt" ] ||
	fail "$netsnmpdir/NET-SNMP-MIB.txt not found (Debian: apt-get install libsnmp-base, or set NETSNMP_MIBDIR)"
command -v smilint >/dev/null 2>&1 || fail "smilint not found (Debian: apt-get install smitools)"
command -v snmptranslate >/dev/null 2>&1 || fail "snmptranslate not found (Debian: apt-get install snmp)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-mib.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# The plan (the contract with src/daemon/agent.c): every node of the module
# and its OID below numprovMIB.
cat >"$tmp/plan" <<'EOF'
numprovMIB -
numprovNotifications 0
numprovRangeUtilisationHigh 0.1
numprovRangeExhausted 0.2
numprovSyncFailed 0.3
numprovSyncRecovered 0.4
numprovObjects 1
numprovSync 1.1
numprovSyncState 1.1.1
numprovSyncLastResult 1.1.2
numprovSyncLastStart 1.1.3
numprovSyncLastEnd 1.1.4
numprovSyncLastDuration 1.1.5
numprovSyncLastError 1.1.6
numprovSyncNextIn 1.1.7
numprovSyncCount 1.1.8
numprovSyncFailures 1.1.9
numprovSyncTrigger 1.1.10
numprovSyncLastFull 1.1.11
numprovStats 1.2
numprovUsersTracked 1.2.1
numprovUsersPending 1.2.2
numprovUsersUnmatched 1.2.3
numprovAssignments 1.2.4
numprovReleases 1.2.5
numprovAssignFailures 1.2.6
numprovDrift 1.2.7
numprovStartTime 1.2.8
numprovRangeTable 1.3
numprovRangeEntry 1.3.1
numprovRangeIndex 1.3.1.1
numprovRangeName 1.3.1.2
numprovRangeType 1.3.1.3
numprovRangeProvider 1.3.1.4
numprovRangeFirst 1.3.1.5
numprovRangeLast 1.3.1.6
numprovRangeSize 1.3.1.7
numprovRangeAssigned 1.3.1.8
numprovRangePending 1.3.1.9
numprovRangeAvailable 1.3.1.10
numprovRangeReserved 1.3.1.11
numprovRangeQuarantined 1.3.1.12
numprovRangeUtilisation 1.3.1.13
numprovRangeWarnPercent 1.3.1.14
numprovRangeStatus 1.3.1.15
numprovConformance 2
numprovCompliances 2.1
numprovCompliance 2.1.1
numprovGroups 2.2
numprovSyncGroup 2.2.1
numprovStatsGroup 2.2.2
numprovRangeGroup 2.2.3
numprovNotificationGroup 2.2.4
EOF

# 1. smilint. -c /dev/null: no site or user configuration, which may preload
# modules or hide messages (Debian's /etc/smi.conf hides namelength-32).
# smilint's exit status stays 0 for most findings: its output decides.
echo "$prog: smilint -l 6 $mib"
set +e
SMIPATH=$path smilint -c /dev/null -l 6 "$mib" >"$tmp/smilint.out" 2>&1
rc=$?
set -e
if [ -s "$tmp/smilint.out" ] || [ $rc -ne 0 ]; then
	cat "$tmp/smilint.out" >&2
	fail "smilint -l 6 is not silent on $mib (exit status $rc)"
fi

# 2. net-snmp. Its own configuration and index directory in $tmp, so that
# /etc/snmp/snmp.conf ("mibs :") and ~/.snmp play no part and nothing is
# written outside $tmp.
translate() {
	env -u MIBS -u MIBDIRS -u MIBFILES SNMPCONFPATH="$tmp" SNMP_PERSISTENT_DIR="$tmp" \
		snmptranslate -M "$path" -m NUMPROV-MIB "$@"
}
# the messages, less the notice that SNMP_PERSISTENT_DIR's subdirectory was made
messages() {
	grep -v '^Created directory: ' "$1" || true
}

echo "$prog: snmptranslate -M <dirs> -m NUMPROV-MIB -Tp -IR numprovMIB"
set +e
translate -Tp -IR numprovMIB >"$tmp/tree" 2>"$tmp/tree.err"
rc=$?
set -e
if [ $rc -ne 0 ] || [ -n "$(messages "$tmp/tree.err")" ]; then
	messages "$tmp/tree.err" >&2
	fail "snmptranslate could not load NUMPROV-MIB cleanly (exit status $rc)"
fi
set +e
translate -Tz >"$tmp/oids" 2>"$tmp/oids.err"
rc=$?
set -e
if [ $rc -ne 0 ] || [ -n "$(messages "$tmp/oids.err")" ]; then
	messages "$tmp/oids.err" >&2
	fail "snmptranslate -Tz failed (exit status $rc)"
fi

# -Tz lines: "name"<tabs>"1.3.6..."
oid_of() {
	sed -n "s/^\"$1\"[[:space:]]*\"\\([0-9.]*\\)\"\$/\\1/p" "$tmp/oids"
}
base=$(oid_of numprovMIB)
[ -n "$base" ] || fail "snmptranslate does not know numprovMIB"

missing=0
count=0
while read -r name rel; do
	count=$((count + 1))
	if [ "$rel" = - ]; then
		want=$base
		last=${base##*.}
	else
		want=$base.$rel
		last=${rel##*.}
	fi
	# -Tp shows each node as "+--name(n)" or "+-- -R-- Type  name(n)"
	if ! grep -Eq "[- ]$name\\($last\\)\$" "$tmp/tree"; then
		echo "$prog: $name($last) is not in the tree under numprovMIB" >&2
		missing=$((missing + 1))
		continue
	fi
	got=$(oid_of "$name")
	if [ "$got" != "$want" ]; then
		echo "$prog: $name is ${got:-nowhere}, the plan has $want" >&2
		missing=$((missing + 1))
	fi
done <"$tmp/plan"
if [ $missing -ne 0 ]; then
	fail "$missing of the $count names of the plan are missing or misplaced" \
		"(see: snmptranslate -M $path -m NUMPROV-MIB -Tp -IR numprovMIB)"
fi

# 3. The arc: one definition in the MIB, one constant in numprovd.
agrees="no src/daemon/agent_mib.h to compare it with"
if [ -f "$header" ]; then
	code=$(sed -n 's/^#[[:space:]]*define[[:space:]][[:space:]]*NUMPROV_MIB_OID[[:space:]]//p' "$header" |
		tr -d ' \t' | tr ',' '.')
	[ -n "$code" ] || fail "$header has no '#define NUMPROV_MIB_OID' to compare numprovMIB with"
	[ "$code" = "$base" ] ||
		fail "numprovMIB is $base in the MIB but NUMPROV_MIB_OID is $code in $header"
	len=$(sed -n 's/^#[[:space:]]*define[[:space:]][[:space:]]*NUMPROV_MIB_LEN[[:space:]]*\([0-9][0-9]*\).*/\1/p' "$header")
	n=$(echo "$base" | tr '.' '\n' | wc -l)
	if [ -n "$len" ] && [ "$len" -ne "$n" ]; then
		fail "NUMPROV_MIB_LEN is $len in $header, but numprovMIB ($base) has $n sub-identifiers"
	fi
	agrees="as in src/daemon/agent_mib.h"
fi

echo "$prog: OK: NUMPROV-MIB is silent under smilint -l 6, and net-snmp finds all $count" \
	"names of the plan under numprovMIB = $base ($agrees)"
