#!/bin/sh
# Check numprovd.service.in the way the build installs it:
#   1. fill in @sbindir@ and @sysconfdir@ as the Makefile's sed rule does;
#   2. systemd-analyze verify: unknown or misspelt directives, bad values,
#      commands that do not exist (skipped when systemd-analyze cannot run it);
#   3. systemd-analyze security --offline=true: the exposure figure must be
#      2.0 or lower and equal to the one in the unit's header comment.
# Prints one summary line; exit 0 = good, 1 = a check failed, 77 = cannot check
# (no systemd-analyze, or one too old for --offline: automake's "skipped").
#
# usage: check-unit.sh [UNIT.in [NUMPROVD]]
#   UNIT.in   default: numprovd.service.in next to this script
#   NUMPROVD  a numprovd binary for the verify step (default: a stand-in script;
#             verify only checks that the commands exist and are executable)
set -u

here=$(cd "$(dirname "$0")" && pwd)
unit_in=${1:-$here/numprovd.service.in}
numprovd=${2:-}
limit=2.0
name=numprovd.service

fail() {
	echo "check-unit: FAIL: $*"
	exit 1
}

command -v systemd-analyze >/dev/null 2>&1 || {
	echo "check-unit: SKIP: no systemd-analyze"
	exit 77
}
[ -r "$unit_in" ] || fail "cannot read $unit_in"

tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/installed" "$tmp/verify" "$tmp/sbin"

# The installed unit: the same substitution as the Makefile's rule.
sed -e 's#@sbindir@#/usr/sbin#g' -e 's#@sysconfdir@#/etc#g' "$unit_in" \
	>"$tmp/installed/$name" || fail "sed"
if grep -n '@[a-z_]*@' "$tmp/installed/$name" >"$tmp/left"; then
	fail "placeholders left after substitution: $(tr '\n' ' ' <"$tmp/left")"
fi

# --- verify, with ExecStart= pointing at something executable ---------------
if [ -n "$numprovd" ]; then
	[ -x "$numprovd" ] || fail "$numprovd is not executable"
	ln -s "$(cd "$(dirname "$numprovd")" && pwd)/$(basename "$numprovd")" "$tmp/sbin/numprovd"
else
	printf '#!/bin/sh\nexit 0\n' >"$tmp/sbin/numprovd"
	chmod 755 "$tmp/sbin/numprovd"
fi
sed -e "s#@sbindir@#$tmp/sbin#g" -e 's#@sysconfdir@#/etc#g' "$unit_in" >"$tmp/verify/$name"
# --man=no: the man pages are checked by the build, not installed here yet.
if systemd-analyze verify --man=no "$tmp/verify/$name" >"$tmp/verify.out" 2>&1; then
	verify_rc=0
else
	verify_rc=$?
fi
# Parse warnings ("FILE:LINE: Unknown key ...") do not change the exit status.
if grep -q "^$tmp/verify/$name:" "$tmp/verify.out"; then
	sed "s#$tmp/verify/##" "$tmp/verify.out" >&2
	fail "systemd-analyze verify warns about $name (above)"
fi
if [ "$verify_rc" -ne 0 ]; then
	if grep -q "$name" "$tmp/verify.out"; then
		sed "s#$tmp/verify/##" "$tmp/verify.out" >&2
		fail "systemd-analyze verify rejects $name (above)"
	fi
	# nothing about our unit: the environment cannot run verify (no manager)
	verify="verify not possible here ($(head -n 1 "$tmp/verify.out"))"
else
	verify="verify clean"
fi

# --- security ----------------------------------------------------------------
if ! systemd-analyze security --offline=true "$tmp/installed/$name" >"$tmp/security.out" 2>&1; then
	if grep -q 'unrecognized option\|Unknown option' "$tmp/security.out"; then
		echo "check-unit: SKIP: systemd-analyze has no --offline (systemd < 250)"
		exit 77
	fi
	cat "$tmp/security.out" >&2
	fail "systemd-analyze security --offline=true failed"
fi
figure=$(sed -n "s/.*Overall exposure level for $name: \([0-9][0-9.]*\).*/\1/p" "$tmp/security.out")
[ -n "$figure" ] || fail "no exposure figure in systemd-analyze security's output"
# The header says: ... rates this unit N.N (systemd V).
claimed=$(sed -n 's/^#.*rates this unit \([0-9][0-9.]*\).*/\1/p' "$unit_in" | head -n 1)
version=$(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')

if awk -v f="$figure" -v l="$limit" 'BEGIN { exit !(f + 0 > l + 0) }'; then
	grep '✗' "$tmp/security.out" >&2
	fail "exposure $figure is above $limit (systemd $version; exposed settings above)"
fi
[ -n "$claimed" ] || fail "the header comment of $unit_in gives no figure ('rates this unit N.N')"
[ "$claimed" = "$figure" ] ||
	fail "exposure is $figure (systemd $version) but the header comment says $claimed: update it"
echo "check-unit: OK: $name exposure $figure (<= $limit, as in its header; systemd $version), $verify"
