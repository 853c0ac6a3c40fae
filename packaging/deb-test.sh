#!/bin/bash
# shellcheck disable=SC2016,SC2034  # checks of more than one command are eval'd strings
# packaging/deb-test.sh TARBALL [OUTDIR]: builds the numprov .deb from a
# release tarball (make dist) and proves it on this machine, as root:
#   - the tarball holds packaging/debian, which becomes ./debian of the build;
#   - dpkg-buildpackage -us -uc -b builds numprov_*.deb; lintian shows no
#     error and no warning;
#   - apt-get install: every file, owner, mode, the conffile, the numprov user
#     and group, the service left disabled and not started with the postinst
#     saying why, numprovd -t refusing the example (78, "still the example"),
#     numprovctl --version;
#   - reinstall, remove (configuration and inventory kept), install again,
#     purge (both gone, the numprov user kept).
# One line per check, "ok - ..." or "not ok - ...", then "N passed, N failed";
# the exit status is 0 only when every check passed, 77 (skip) when not root.
# The package is purged at the end whatever happens, so the script can run
# again at once. It refuses to start when numprov is already installed (or
# removed but not purged) or /etc/numprov or /var/lib/numprov exist: their
# owner's configuration and inventory would be purged with it.
#
# OUTDIR, when given, receives numprov_*.deb (kept after the purge).
# DEB_BUILD_OPTIONS is taken from the environment; unset, it is
# "nocheck parallel=$(nproc)": make check runs in tests/run.sh already.
set -uo pipefail

usage() {
	echo "usage: $0 TARBALL [OUTDIR]" >&2
	exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
case "$1" in -h | --help) usage ;; esac

if [ "$(id -u)" != 0 ]; then
	echo "deb-test: skipped: must run as root (it installs, removes and purges the numprov package)" >&2
	exit 77
fi

tarball=$(readlink -f -- "$1")
outdir=${2:-}
[ -f "$tarball" ] || { echo "deb-test: no such tarball: $1" >&2; exit 2; }
if [ -n "$outdir" ]; then
	mkdir -p -- "$outdir" && outdir=$(readlink -f -- "$outdir") ||
		{ echo "deb-test: cannot make $2" >&2; exit 2; }
fi

CONF=/etc/numprov/numprovd.conf
STATEDIR=/var/lib/numprov
EXAMPLE_SAYS="still the example"
export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -y -q -o DPkg::Lock::Timeout=300)
umask 022
t0=$(date +%s)

. "$(cd "$(dirname "$0")" && pwd)/tap.sh" # ok, not_ok, passed, failed
# check DESCRIPTION COMMAND...: one line for the command's success
check() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}
# indent a file's lines as diagnostics
show() { sed 's/^/#   /' "$@"; }
summary() {
	echo "# deb-test took $(($(date +%s) - t0))s"
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}
# bail WHY: a step the rest depends on failed
bail() {
	not_ok "$*"
	summary
	exit 1
}

pkg_status() { dpkg-query -W -f='${db:Status-Abbrev}' numprov 2>/dev/null | tr -d ' '; }

# --- refuse to touch an existing installation --------------------------------
case "$(pkg_status)" in
"" | un | pn) ;;
*)
	echo "deb-test: numprov is installed here (dpkg state $(pkg_status)): this test would purge it." >&2
	echo "deb-test: run it on a machine without numprov, or 'apt-get purge numprov' first." >&2
	exit 1
	;;
esac
for d in /etc/numprov "$STATEDIR"; do
	if [ -e "$d" ]; then
		echo "deb-test: $d exists without the numprov package: this test would delete it at the purge." >&2
		exit 1
	fi
done

work=$(mktemp -d /tmp/deb-test.XXXXXX) || exit 1
# _apt reads the .deb when apt-get installs it from a file
chmod 0755 "$work"
installed_by_us=no
cleanup() {
	local rc=$?
	if [ "$installed_by_us" = yes ] && pkg_status | grep -qvx -e un -e pn; then
		echo "# cleanup: purging numprov"
		"${APT[@]}" purge numprov </dev/null >"$work/cleanup.log" 2>&1 ||
			{ echo "# cleanup: apt-get purge numprov failed:"; show "$work/cleanup.log"; }
	fi
	rm -rf -- "$work"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- build ---------------------------------------------------------------------
mkdir "$work/src"
tar -xf "$tarball" -C "$work/src" || bail "unpack $tarball"
top=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d)
[ "$(printf '%s\n' "$top" | wc -l)" -eq 1 ] && [ -f "$top/configure.ac" ] ||
	bail "the tarball holds one source tree"
[ -f "$top/packaging/debian/control" ] ||
	bail "the tarball holds packaging/debian (EXTRA_DIST += packaging/debian in Makefile.am)"
ok "the tarball holds packaging/debian"
rm -rf "$top/debian"
cp -a "$top/packaging/debian" "$top/debian"

build_options=${DEB_BUILD_OPTIONS-nocheck parallel=$(nproc)}
tb=$(date +%s)
(cd "$top" && DEB_BUILD_OPTIONS=$build_options dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1
rc=$?
echo "# dpkg-buildpackage -us -uc -b took $(($(date +%s) - tb))s (DEB_BUILD_OPTIONS=\"$build_options\")"
if [ $rc -ne 0 ]; then
	tail -40 "$work/build.log" | show
	bail "dpkg-buildpackage -us -uc -b (exit $rc)"
fi
ok "dpkg-buildpackage -us -uc -b"

debs=("$work"/src/numprov_*.deb)
changes=("$work"/src/numprov_*.changes)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] && [ -f "${changes[0]}" ] ||
	bail "the build made one numprov_*.deb and its .changes"
deb=${debs[0]}
ok "built $(basename "$deb")"
if [ -n "$outdir" ]; then
	check "copied $(basename "$deb") to $outdir" cp -- "$deb" "$outdir/"
fi

# the binary package's fields
check "package name is numprov" [ "$(dpkg-deb -f "$deb" Package)" = numprov ]
check "the source package uses debhelper-compat (= 13)" \
	grep -Eq 'debhelper-compat \(= 13\)' "$top/debian/control"

# --- lintian ---------------------------------------------------------------------
# As an unprivileged user: lintian advises against running as root. It checks
# the .changes and what it names: the .deb, the -dbgsym .deb and the .buildinfo.
lintian_as=()
id nobody >/dev/null 2>&1 && lintian_as=(runuser -u nobody --)
(cd /tmp && "${lintian_as[@]}" lintian --fail-on error,warning "${changes[0]}") >"$work/lintian.log" 2>&1
rc=$?
show "$work/lintian.log"
if [ $rc -eq 0 ] && ! grep -Eq '^[EW]: ' "$work/lintian.log"; then
	ok "lintian: no error, no warning"
else
	not_ok "lintian: no error, no warning (exit $rc)"
fi

# --- the postinst's start decision, with systemd stubbed ----------------------------
# Without systemd as PID 1 the start/restart branch cannot run for real: run
# the package's own postinst with its paths moved into a scratch directory
# and the systemd tools (and chown/chmod) replaced by stubs that log.
pi=$work/postinst-stubbed
mkdir -p "$pi/bin" "$pi/run/systemd/system" "$pi/etc" "$pi/state"
dpkg-deb -e "$deb" "$pi/ctl"
for c in systemd-sysusers systemd-tmpfiles deb-systemd-helper deb-systemd-invoke systemctl \
	chown chmod; do
	printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n' "$c" "$pi" >"$pi/bin/$c"
	chmod +x "$pi/bin/$c"
done
cp "$top/etc/numprovd.conf" "$pi/example"
sed -e "s#/run/systemd/system#$pi/run/systemd/system#g" -e "s#^CONF=.*#CONF=$pi/etc/numprovd.conf#" \
	-e "s#^EXAMPLE=.*#EXAMPLE=$pi/example#" -e "s#^STATEDIR=.*#STATEDIR=$pi/state#" \
	"$pi/ctl/postinst" >"$pi/postinst"
# postinst_case CONFIG OLD-VERSION WANT: CONFIG example|real; WANT the
# deb-systemd-invoke call, or "example" for the notice and no call
postinst_case() {
	local conf=$1 old=$2 want=$3 calls
	cp "$pi/example" "$pi/etc/numprovd.conf"
	[ "$conf" = example ] || sed -i 's/^\([[:space:]]*client_id[[:space:]]*=[[:space:]]*\)"[^"]*"/\1"3f2a6c1e-8d4b-4e0a-9c7f-5b1d2e3a4f60"/' \
		"$pi/etc/numprovd.conf"
	rm -f "$pi/calls"
	PATH=$pi/bin:$PATH sh "$pi/postinst" configure "$old" >"$pi/out" 2>&1 || return 1
	calls=$(grep '^deb-systemd-invoke' "$pi/calls")
	if [ "$want" = example ]; then
		grep -q "is $EXAMPLE_SAYS" "$pi/out" && [ -z "$calls" ]
	else
		! grep -q "$EXAMPLE_SAYS" "$pi/out" && [ "$calls" = "deb-systemd-invoke $want numprovd.service" ]
	fi
}
check "postinst (systemd stubbed) moved every path it uses into the sandbox" \
	eval '[ "$(grep -c "$pi" "$pi/postinst")" -ge 4 ]'
check "postinst (systemd stubbed): install with the example: notice, nothing started" \
	postinst_case example "" example
check "postinst (systemd stubbed): upgrade with the example: notice, nothing restarted" \
	postinst_case example 0.0.1-1 example
check "postinst (systemd stubbed): install with a real configuration: deb-systemd-invoke start" \
	postinst_case real "" start
check "postinst (systemd stubbed): upgrade with a real configuration: deb-systemd-invoke restart" \
	postinst_case real 0.0.1-1 restart

# --- install -----------------------------------------------------------------------
user_existed=no
getent passwd numprov >/dev/null && user_existed=yes
installed_by_us=yes
"${APT[@]}" install "$deb" </dev/null >"$work/install.log" 2>&1
rc=$?
grep -i -E 'numprovd|numprov:|^(E|W):' "$work/install.log" | show
[ $rc -eq 0 ] || { tail -30 "$work/install.log" | show; bail "apt-get install ./$(basename "$deb") (exit $rc)"; }
check "apt-get install ./$(basename "$deb")" [ "$(pkg_status)" = ii ]
check "the postinst says numprovd is not started: the configuration is still the example" \
	grep -q "numprovd is not started: $CONF is $EXAMPLE_SAYS" "$work/install.log"

# path TYPE MODE OWNER GROUP PATH: what stat says about PATH
path() {
	local want="$1 $2 $3 $4" got
	got=$(stat -c '%F %a %U %G' -- "$5" 2>/dev/null | sed 's/^regular empty file/regular file/;
		s/^regular file/f/; s/^directory/d/')
	if [ "$got" = "$want" ]; then
		ok "$5 ($1 $2 $3:$4)"
	else
		not_ok "$5: want $1 $2 $3:$4, got ${got:-nothing}"
	fi
}
# doc NAME: a document under /usr/share/doc/numprov, compressed or not
doc() {
	local p=/usr/share/doc/numprov/$1
	[ -e "$p" ] || [ ! -e "$p.gz" ] || p=$p.gz
	path f 644 root root "$p"
}

files_present() {
	path f 755 root root /usr/sbin/numprovd
	path f 755 root root /usr/bin/numprovctl
	path f 644 root root /lib/systemd/system/numprovd.service
	path f 644 root root /usr/lib/sysusers.d/numprov.conf
	path f 644 root root /usr/lib/tmpfiles.d/numprov.conf
	path f 644 root root /usr/share/snmp/mibs/NUMPROV-MIB.txt
	path f 644 root root /usr/share/man/man8/numprovd.8.gz
	path f 644 root root /usr/share/man/man8/numprovctl.8.gz
	path f 644 root root /usr/share/man/man5/numprovd.conf.5.gz
	path f 644 root root /usr/share/numprov/numprovd.conf.example
	path d 755 root root /etc/numprov
	path f 640 root numprov "$CONF"
	path d 750 numprov numprov "$STATEDIR"
	doc README.md
	local md
	for md in "$top"/docs/*.md; do doc "docs/$(basename "$md")"; done
	doc examples/snmpd-numprov.conf
	doc copyright
	doc changelog.Debian
}
files_present
check "the unit runs /usr/sbin/numprovd -f -c $CONF" \
	grep -q "^ExecStart=/usr/sbin/numprovd -f -c $CONF\$" /lib/systemd/system/numprovd.service
check "$CONF is the tarball's etc/numprovd.conf" cmp -s "$top/etc/numprovd.conf" "$CONF"
check "/usr/share/numprov/numprovd.conf.example is the tarball's etc/numprovd.conf" \
	cmp -s "$top/etc/numprovd.conf" /usr/share/numprov/numprovd.conf.example
check "sysusers.d and tmpfiles.d files are the tarball's" \
	eval 'cmp -s "$top/packaging/systemd/numprov.sysusers" /usr/lib/sysusers.d/numprov.conf &&
		cmp -s "$top/packaging/systemd/numprov.tmpfiles" /usr/lib/tmpfiles.d/numprov.conf'
check "numprovd's built-in configuration is $CONF" \
	eval '/usr/sbin/numprovd -h 2>&1 | grep -q "default $CONF)"'
check "numprovd's built-in state directory is $STATEDIR" grep -aq "$STATEDIR" /usr/sbin/numprovd

conffiles() { dpkg-query -W -f='${Conffiles}\n' numprov | awk 'NF { print $1, ($3 == "" ? "" : $3) }'; }
check "dpkg lists $CONF as the package's only conffile" [ "$(conffiles)" = "$CONF " ]

# the numprov system user and group, from the shipped sysusers.d file
sys_uid_max=$(awk '$1 == "SYS_UID_MAX" { print $2 }' /etc/login.defs 2>/dev/null)
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd numprov)
IFS=: read -r _ _ group_gid _ < <(getent group numprov)
check "group numprov exists" [ -n "${group_gid:-}" ]
check "user numprov exists, a system user (uid ${uid:-none} <= ${sys_uid_max:-999})" \
	eval '[ -n "${uid:-}" ] && [ "$uid" -gt 0 ] && [ "$uid" -le "${sys_uid_max:-999}" ]'
check "user numprov's primary group is numprov" eval '[ -n "${gid:-}" ] && [ "$gid" = "${group_gid:-x}" ]'
check "user numprov's home is $STATEDIR, shell ${shell:-none} refuses logins" \
	eval '[ "${home:-}" = "$STATEDIR" ] && case "${shell:-}" in */nologin | /bin/false) true ;; *) false ;; esac'
[ "$user_existed" = no ] || echo "# the numprov user existed before this run"

# not enabled (debian/rules says why), not started
check "numprovd.service is not enabled" \
	eval '[ "$(systemctl is-enabled numprovd.service 2>/dev/null)" = disabled ]'
if [ -d /run/systemd/system ]; then
	check "numprovd.service is not running" eval '! systemctl --quiet is-active numprovd.service'
else
	echo "# no systemd as PID 1: the maintainer scripts start and stop nothing"
fi

# numprovd -t as the service runs it: numprov reads the file through its group
runuser -u numprov -- /usr/sbin/numprovd -t -c "$CONF" >"$work/t.out" 2>&1
rc=$?
show "$work/t.out"
check "numprovd -t as numprov on the example exits 78 (got $rc)" [ $rc -eq 78 ]
check "numprovd -t says the configuration is $EXAMPLE_SAYS" grep -q "$EXAMPLE_SAYS" "$work/t.out"
check "numprov can read $CONF (through its group)" runuser -u numprov -- test -r "$CONF"
check "other users cannot read $CONF" eval '! runuser -u nobody -- test -r "$CONF"'

version=$(dpkg-deb -f "$deb" Version)
out=$(numprovctl --version 2>&1)
rc=$?
check "numprovctl --version works ($out)" \
	eval '[ $rc -eq 0 ] && [ "$out" = "numprovctl ${version%-*}" ]'

# --- reinstall: the upgrade path of the postinst, still with the example -----------
"${APT[@]}" install --reinstall "$deb" </dev/null >"$work/reinstall.log" 2>&1
rc=$?
check "apt-get install --reinstall (exit $rc)" eval '[ $rc -eq 0 ] && [ "$(pkg_status)" = ii ]'
check "the postinst says again that the configuration is still the example" \
	grep -q "numprovd is not started: $CONF is $EXAMPLE_SAYS" "$work/reinstall.log"
path f 640 root numprov "$CONF"

# --- an administrator's configuration and inventory, then remove ------------------
sed -i 's/^\([[:space:]]*client_id[[:space:]]*=[[:space:]]*\)"[^"]*"/\1"3f2a6c1e-8d4b-4e0a-9c7f-5b1d2e3a4f60"/' "$CONF"
check "an edited configuration differs from the example" \
	eval '! cmp -s "$CONF" /usr/share/numprov/numprovd.conf.example'
conf_sum=$(sha256sum <"$CONF")
check "numprov can write to $STATEDIR" \
	runuser -u numprov -- sh -c "echo inventory >'$STATEDIR/deb-test.probe'"

"${APT[@]}" remove numprov </dev/null >"$work/remove.log" 2>&1
rc=$?
check "apt-get remove numprov (exit $rc): dpkg state rc (got $(pkg_status))" \
	eval '[ $rc -eq 0 ] && [ "$(pkg_status)" = rc ]'
check "after remove: /usr/sbin/numprovd is gone" [ ! -e /usr/sbin/numprovd ]
check "after remove: numprovd.service is gone" [ ! -e /lib/systemd/system/numprovd.service ]
check "after remove: $CONF is kept as edited" \
	eval '[ -f "$CONF" ] && [ "$(sha256sum <"$CONF")" = "$conf_sum" ]'
path f 640 root numprov "$CONF"
path d 750 numprov numprov "$STATEDIR"
check "after remove: $STATEDIR keeps its contents" \
	eval '[ "$(cat "$STATEDIR/deb-test.probe" 2>/dev/null)" = inventory ]'

# --- install again: the edited configuration is taken as a real one ----------------
"${APT[@]}" install "$deb" </dev/null >"$work/install2.log" 2>&1
rc=$?
grep -i -E 'numprovd|numprov:|^(E|W):' "$work/install2.log" | show
check "apt-get install again (exit $rc)" eval '[ $rc -eq 0 ] && [ "$(pkg_status)" = ii ]'
check "the postinst says nothing about the example for an edited configuration" \
	eval '! grep -q "$EXAMPLE_SAYS" "$work/install2.log"'
check "after install again: $CONF is still the edited one" \
	eval '[ "$(sha256sum <"$CONF")" = "$conf_sum" ]'
path f 640 root numprov "$CONF"
check "after install again: $STATEDIR keeps its contents" \
	eval '[ "$(cat "$STATEDIR/deb-test.probe" 2>/dev/null)" = inventory ]'
check "dpkg still lists $CONF as a conffile" [ "$(conffiles)" = "$CONF " ]

# --- purge --------------------------------------------------------------------------
"${APT[@]}" purge numprov </dev/null >"$work/purge.log" 2>&1
rc=$?
s=$(pkg_status)
check "apt-get purge numprov (exit $rc): dpkg no longer knows numprov (state ${s:-none})" \
	eval '[ $rc -eq 0 ] && case "$s" in "" | un | pn) true ;; *) false ;; esac'
check "after purge: /etc/numprov is gone" [ ! -e /etc/numprov ]
check "after purge: $STATEDIR is gone" [ ! -e "$STATEDIR" ]
check "after purge: /run/numprov is gone" [ ! -e /run/numprov ]
check "after purge: the numprov user and group stay (Debian leaves system users)" \
	eval 'getent passwd numprov >/dev/null && getent group numprov >/dev/null'

summary
