#!/bin/sh
# tests/check-man.sh [SRCDIR]
#
# Check the manual pages man/numprovd.8, man/numprovctl.8, man/numprovd.conf.5:
#  1. `mandoc -Tlint -Wall` prints nothing for any of them, apart from one
#     class of message (below);
#  2. each renders with `mandoc -Tutf8` without a message;
#  3. when the sources are there, every long option of numprovd and
#     numprovctl, every numprovctl command and every configuration key the
#     loader knows has an entry in its page.
# One summary line at the end; exit status 0 when all holds, 1 otherwise.
#
# Why -Wall and not -W warning: the STYLE level catches what a reader sees
# (a missing blank before trailing punctuation, trailing spaces, useless
# macros), and these pages are clean at it. Its one check that depends on
# the machine rather than on the page is "referenced manual not found": mandoc
# looks every .Xr up in the manuals installed here, and finds neither these
# pages (not installed while they are being checked) nor snmpd.conf(5) on a
# host without snmpd. Those lines, and mandoc's notes about an outdated
# mandoc.db, are dropped; every other message fails the check.
set -eu

prog=check-man
srcdir=${1:-$(dirname "$0")/..}
pages="man/numprovd.8 man/numprovctl.8 man/numprovd.conf.5"

fail() {
	echo "$prog: FAIL: $*" >&2
	exit 1
}

command -v mandoc >/dev/null 2>&1 || fail "mandoc not found (Debian: apt-get install mandoc)"
for p in $pages; do
	[ -f "$srcdir/$p" ] || fail "$srcdir/$p not found"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-man.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

problems=0

# 1. lint. mandoc's exit status reports the worst level seen, style included,
# so the output decides; a status above 4 (bad arguments, system error) fails.
for p in $pages; do
	set +e
	(cd "$srcdir" && mandoc -Tlint -Wall "$p") >"$tmp/lint" 2>&1
	rc=$?
	set -e
	grep -v -e 'STYLE: referenced manual not found' -e 'mandoc\.db' "$tmp/lint" \
		>"$tmp/lint.kept" || true
	if [ -s "$tmp/lint.kept" ] || [ $rc -gt 4 ]; then
		cat "$tmp/lint.kept" >&2
		echo "$prog: mandoc -Tlint -Wall $p is not silent (exit status $rc)" >&2
		problems=$((problems + 1))
	fi
done

# 2. rendering: no message, exit status 0.
for p in $pages; do
	set +e
	mandoc -Tutf8 "$srcdir/$p" >/dev/null 2>"$tmp/render"
	rc=$?
	set -e
	if [ -s "$tmp/render" ] || [ $rc -ne 0 ]; then
		cat "$tmp/render" >&2
		echo "$prog: mandoc -Tutf8 $p failed (exit status $rc)" >&2
		problems=$((problems + 1))
	fi
done

# 3. completeness against the sources, when they are there.
# has PAGE REGEX WHAT: the page holds a line matching REGEX.
entries=0
has() {
	entries=$((entries + 1))
	if ! grep -Eq "$2" "$srcdir/$1"; then
		echo "$prog: $1 has no entry for $3" >&2
		problems=$((problems + 1))
	fi
}
# lines of file $1 from each line matching the regex $2 to the first line,
# that one included, matching the regex $3
block() {
	awk -v from="$2" -v to="$3" '$0 ~ from { on = 1 } on { print; if ($0 ~ to) on = 0 }' "$1"
}
# the quoted names of the C table that starts at the line matching $2 in $1
names() {
	block "$1" "$2" '};' | grep -o '"[^"]*"' | tr -d '"'
}
daemon_c=$srcdir/src/daemon/daemon.c
ctl_c=$srcdir/src/cli/ctl.c
config_c=$srcdir/src/common/config.c
checked="sources not found: completeness not checked"
if [ -f "$daemon_c" ] && [ -f "$ctl_c" ] && [ -f "$config_c" ]; then
	for o in $(names "$daemon_c" 'struct option long_options'); do
		has man/numprovd.8 "^\\.It .*Fl -$o( |\$)" "numprovd --$o"
	done
	for o in $(names "$ctl_c" 'struct option long_options') json; do
		has man/numprovctl.8 "^\\.It .*Fl -$o( |\$)" "numprovctl --$o"
	done
	# the command table: the first string of each row
	for c in $(block "$ctl_c" '} commands\[\] = {' '};' |
		sed -n 's/^[[:space:]]*{ "\([a-z]*\)",.*/\1/p'); do
		has man/numprovctl.8 "^\\.It Ic $c( |\$)" "the command $c"
	done
	# every list of known keys of the loader (known[], kpolicy[], kdb[], ...)
	for k in $(block "$config_c" 'static const char \*const k[a-z]*\[\]' 'NULL' |
		grep -o '"[^"]*"' | tr -d '"' | sort -u); do
		has man/numprovd.conf.5 "^\\.(It|Ss) (.* )?(Cm )?$k( |\$)" "the key $k"
	done
	checked="$entries options, commands and keys of the sources found in the pages"
fi

if [ $problems -ne 0 ]; then
	fail "$problems problem(s) in $pages"
fi
echo "$prog: OK: $pages are silent under mandoc -Tlint -Wall and render; $checked"
