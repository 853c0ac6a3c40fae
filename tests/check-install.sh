#!/bin/bash
# check-install.sh BUILDDIR: what `make install` does with the paths configure gave.
#   - the programs' built-in configuration path is $(sysconfdir)/numprov/numprovd.conf
#     and their inventory default $(localstatedir)/lib/numprov, as README.md says;
#   - the configuration, the MIB and the man pages land there;
#   - a second `make install` over an edited configuration keeps it and puts the
#     new example next to it; `make uninstall` leaves the edited one alone.
# Installs into a scratch DESTDIR only. Prints "ok - ..." per check.
set -uo pipefail
build=$(cd "${1:?usage: check-install.sh BUILDDIR}" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
dest=$(mktemp -d /tmp/np-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
bad=0
ok() { echo "ok - $*"; }
no() { echo "not ok - $*"; bad=1; }
check() { # description, command...
	local what=$1
	shift
	if "$@"; then ok "$what"; else no "$what"; fi
}

# a variable of the build's Makefile, expanded by make itself
printer=$(mktemp /tmp/np-print.XXXXXX.mk)
printf 'np-print-%%:\n\t@echo $($*)\n' >"$printer"
var() { make -s --no-print-directory -C "$build" -f Makefile -f "$printer" "np-print-$1"; }
prefix=$(var prefix)
sysconfdir=$(var sysconfdir)
localstatedir=$(var localstatedir)
datadir=$(var datadir)
mandir=$(var mandir)
sbindir=$(var sbindir)
bindir=$(var bindir)
rm -f "$printer"
conf=$sysconfdir/numprov/numprovd.conf

make -C "$build" -s install DESTDIR="$dest" >"$dest.log" 2>&1 || { cat "$dest.log"; exit 1; }

check "numprovd --help names $conf as the default configuration" \
	grep -qF "default $conf)" <("$dest$sbindir/numprovd" --help)
check "numprovd's built-in inventory is $localstatedir/lib/numprov" \
	grep -qF "$localstatedir/lib/numprov" <(strings "$dest$sbindir/numprovd")
check "numprovctl's built-in configuration is $conf" \
	grep -qF "$conf" <(strings "$dest$bindir/numprovctl")
check "the configuration is installed as $conf" cmp -s "$top/etc/numprovd.conf" "$dest$conf"
check "the MIB is installed in $datadir/snmp/mibs" test -f "$dest$datadir/snmp/mibs/NUMPROV-MIB.txt"
for page in man8/numprovd.8 man8/numprovctl.8 man5/numprovd.conf.5; do
	check "the manual page $page is installed" test -f "$dest$mandir/$page"
done
if [ "$prefix" = /usr ] && [ "$sysconfdir" = /etc ] && [ "$localstatedir" = /var ]; then
	check "README.md names the same paths" grep -qF "/etc/numprov/numprovd.conf" "$top/README.md"
else
	check "README.md gives the paths of a default configure" \
		grep -qF "$conf" "$top/README.md"
fi

echo "# an operator's line in the configuration, then make install again"
echo '# edited by the operator' >>"$dest$conf"
make -C "$build" -s install DESTDIR="$dest" >"$dest.log" 2>&1 || { cat "$dest.log"; exit 1; }
check "the edited configuration is kept" grep -q "edited by the operator" "$dest$conf"
check "the new example is next to it" cmp -s "$top/etc/numprovd.conf" "$dest$conf.example"
make -C "$build" -s uninstall DESTDIR="$dest" >"$dest.log" 2>&1 || { cat "$dest.log"; exit 1; }
check "make uninstall leaves the edited configuration" grep -q "edited by the operator" "$dest$conf"
check "make uninstall removes the example and the programs" \
	test ! -e "$dest$conf.example" -a ! -e "$dest$sbindir/numprovd"
rm -f "$dest.log"
[ $bad -eq 0 ] && echo "check-install: OK" || echo "check-install: FAILED"
exit $bad
