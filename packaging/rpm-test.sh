#!/bin/bash
# packaging/rpm-test.sh TARBALL [DEB] [OUTDIR]
#
# Builds the RPM of numprov from the release tarball (make dist) with
# packaging/rpm/numprov.spec (Debian's rpmbuild -bb --nodeps is enough), lints
# it, and checks what an installed package would be:
#   - rpmlint on the spec and the rpm: no error (packaging/rpm/rpmlintrc);
#   - the file list, owners, modes, the conffile and doc flags (rpm -qp --qf);
#   - the scriptlets (rpm -qp --scripts): the user from the sysusers.d file,
#     systemd-tmpfiles, not started on install, try-restart on upgrade; and,
#     run as root, the scriptlets themselves and the payload in a scratch root
#     (rpm --root DIR -i --nodeps --noscripts), erase included;
#   - with DEB (a .deb of packaging/deb-test.sh): the same files as the .deb,
#     and the same owner and mode for numprovd.conf and /var/lib/numprov once
#     the .deb's postinst has run (as far as it can be read; see deb_effective).
# An argument ending in .deb is DEB (a pattern that matched nothing, such as
# build/packages/numprov_*.deb when deb-test.sh was skipped, is noted and
# the comparison left out), another one OUTDIR (default: a fresh
# /tmp/rpm-test.XXXXXX, removed when every check passed). Everything is built
# and installed there (rpmbuild's _topdir and _tmppath, the scratch root).
# Environment: RPM_TEST_CHECK=yes runs the spec's %check (make check); by
# default the build is made --without check, as tests/run.sh runs make check
# itself (deb-test.sh's default is DEB_BUILD_OPTIONS=nocheck likewise).
#
# Prints "ok - ..." / "not ok - ..." lines and "N passed, N failed"; exits 1
# on a failure, 2 on a usage error, 77 when rpmbuild is missing.
set -uo pipefail

usage() {
	echo "usage: $0 TARBALL [DEB] [OUTDIR]" >&2
	exit 2
}

if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage; fi
tarball=$1
shift
deb=""
outdir=""
for a in "$@"; do
	case "$a" in
	*.deb) deb=$a ;;
	*) [ -z "$outdir" ] || usage; outdir=$a ;;
	esac
done

if ! command -v rpmbuild >/dev/null 2>&1; then
	echo "rpm-test: SKIP: rpmbuild not found (Debian: apt-get install rpm)"
	exit 77
fi
[ -r "$tarball" ] || { echo "rpm-test: cannot read $tarball" >&2; exit 2; }
if [ -n "$deb" ] && [ ! -e "$deb" ] && [[ "$deb" == *[*?[]* ]]; then
	echo "# no .deb matches $deb: the comparison with the Debian package is left out"
	deb=""
fi
[ -z "$deb" ] || [ -r "$deb" ] || { echo "rpm-test: cannot read $deb" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
spec=$here/rpm/numprov.spec
rpmlintrc=$here/rpm/rpmlintrc
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
[ -z "$deb" ] || deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

own_outdir=no
if [ -z "$outdir" ]; then
	outdir=$(mktemp -d /tmp/rpm-test.XXXXXX) || exit 1
	own_outdir=yes
else
	mkdir -p "$outdir" || exit 1
fi
outdir=$(cd "$outdir" && pwd)

. "$here/tap.sh" # ok, not_ok, passed, failed
# check DESCRIPTION COMMAND...: ok when the command succeeds; its output is
# shown (as comments) only when it fails.
check() {
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then
		ok "$desc"
	else
		not_ok "$desc"
		[ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/#   /'
	fi
}
note() { echo "# $*"; }
finish() {
	echo "$passed passed, $failed failed"
	if [ "$failed" -eq 0 ] && [ "$own_outdir" = yes ]; then
		rm -rf "$outdir"
	else
		echo "# build directory kept: $outdir"
	fi
	[ "$failed" -eq 0 ] && exit 0
	exit 1
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# "drwxr-x---" -> "0750" (file type dropped; s/t bits counted)
perms_to_octal() {
	awk -v p="$1" 'BEGIN {
		o = 0; n = split("r w x r w x r w x", bit, " ")
		for (i = 1; i <= 9; i++) {
			c = substr(p, i + 1, 1); v = 2 ^ (9 - i)
			if (c == bit[i] || c == "s" || c == "t") o += v
			if (c == "s" || c == "S") o += (i == 3 ? 2048 : 1024)
			if (c == "t" || c == "T") o += 512
		}
		printf "%04o\n", o }'
}

# --- the release tarball -------------------------------------------------------
base=$(basename "$tarball")
case "$base" in
numprov-*.tar.xz) version=${base#numprov-}; version=${version%.tar.xz} ;;
numprov-*.tar.gz) version=${base#numprov-}; version=${version%.tar.gz} ;;
*) echo "rpm-test: $base is not numprov-VERSION.tar.xz (or .tar.gz)" >&2; exit 2 ;;
esac
top=$outdir/top
rm -rf "$top" "$outdir/root" "$outdir/payload" "$outdir/shim"
mkdir -p "$top/SOURCES" "$outdir/payload" || exit 1
# Source0 is numprov-VERSION.tar.xz, what make dist makes (dist-xz); a .tar.gz
# of the same tree is recompressed to that name.
src0=$top/SOURCES/numprov-$version.tar.xz
case "$base" in
*.tar.xz) cp "$tarball" "$src0" ;;
*.tar.gz)
	note "Source0 is numprov-$version.tar.xz: $base recompressed to it"
	gzip -dc "$tarball" | xz -c >"$src0"
	;;
esac
spec_version=$(sed -n 's/^Version:[[:space:]]*//p' "$spec")
check "the spec's Version ($spec_version) is the tarball's ($version)" \
	test "$spec_version" = "$version"

# The release tarball carries the packaging files this script tests (EXTRA_DIST).
same_in_tarball() {
	local f rc=0
	for f in packaging/rpm/numprov.spec packaging/rpm/rpmlintrc packaging/rpm-test.sh; do
		if ! tar -xOf "$src0" "numprov-$version/$f" >"$outdir/dist-file" 2>/dev/null; then
			echo "$f is not in $base (EXTRA_DIST)"
			rc=1
		elif ! cmp -s "$outdir/dist-file" "$here/${f#packaging/}"; then
			echo "$f in $base differs from $here/${f#packaging/}"
			rc=1
		fi
	done
	rm -f "$outdir/dist-file"
	return "$rc"
}
check "the tarball ships packaging/rpm/numprov.spec, rpmlintrc and rpm-test.sh as tested here" \
	same_in_tarball

# --- build ----------------------------------------------------------------------
mkdir -p "$outdir/tmp"
rpmbuild_args=(-D "_topdir $top" -D "_tmppath $outdir/tmp" --nodeps)
with_check="without %check"
if [ "${RPM_TEST_CHECK:-no}" = yes ]; then
	with_check="with %check"
fi
# rpm's brp-compress uses bash's `read -d` under #!/bin/sh; on Debian /bin/sh is
# dash and the man pages would stay uncompressed (Fedora's /bin/sh is bash).
brp=$(rpm --eval '%{_rpmconfigdir}')/brp-compress
if [ -r "$brp" ] && grep -q 'read -r -d' "$brp" &&
	[ -n "$(sh -c 'read -r -d "" x' </dev/null 2>&1)" ]; then
	rpmbuild_args+=(-D "__brp_compress bash $brp %{?_prefix}")
	note "/bin/sh cannot run $brp: it is run with bash, as on Fedora"
fi
t0=$(now)
bb_args=("${rpmbuild_args[@]}")
[ "$with_check" = "with %check" ] || bb_args+=(--without check)
if rpmbuild -bb "${bb_args[@]}" "$spec" >"$outdir/rpmbuild.log" 2>&1; then
	ok "rpmbuild -bb $(basename "$spec") from $base, $with_check ($(since "$t0") s)"
else
	not_ok "rpmbuild -bb $(basename "$spec") from $base (log: $outdir/rpmbuild.log)"
	tail -30 "$outdir/rpmbuild.log" | sed 's/^/#   /'
	finish
fi
rpm=""
for f in "$top"/RPMS/*/numprov-"$version"-*.rpm; do
	[ -f "$f" ] && rpm=$f && break
done
[ -n "$rpm" ] || { not_ok "no numprov-$version rpm in $top/RPMS"; finish; }
note "rpm: $rpm"
if rpmbuild -bs "${rpmbuild_args[@]}" "$spec" >"$outdir/rpmbuild-srpm.log" 2>&1; then
	srpm=$(find "$top/SRPMS" -name "numprov-$version-*.src.rpm" | head -n 1)
	ok "rpmbuild -bs: $(basename "$srpm")"
else
	srpm=""
	not_ok "rpmbuild -bs (log: $outdir/rpmbuild-srpm.log)"
fi

# Build dependencies by their Fedora/RHEL names (from the source rpm).
build_requires() {
	local want have
	want="check-devel cjson-devel gcc libconfig-devel libcurl-devel libdb-devel libevent-devel make net-snmp-devel openssl-devel pkgconfig systemd-rpm-macros"
	have=$(rpm -qp --requires "$srpm" 2>/dev/null | grep -v '^rpmlib(' | awk '{print $1}' | sort -u | tr '\n' ' ')
	[ "${have% }" = "$want" ] || { echo "BuildRequires: $have"; echo "expected:      $want"; return 1; }
}
# (the source rpm is made with %check, as a distribution builds it)
[ -z "$srpm" ] || check "BuildRequires are the Fedora/RHEL package names" build_requires

# --- rpmlint ----------------------------------------------------------------------
# What only linting on Debian produces is filtered here, by a configuration
# given with -c, each with its reason; the package's own choices are in
# packaging/rpm/rpmlintrc.
cat >"$outdir/rpmlint-debian.toml" <<'EOF'
# rpmlint on Debian: upstream defaults, not a distribution's configuration.
# Fedora's (configs/Fedora/fedora.toml in rpmlint) sets gz: rpm compresses
# manual pages with gzip; Debian's rpmlint keeps the upstream default bz2.
CompressExtension = "gz"
Filters = [
    # rpmlint 2.4 records the section ("8"), not the page name, of every
    # manual page (man_base_regex group 'category'; later versions use the
    # 'binary' group), so every binary is reported. rpm-test.sh checks
    # numprovd.8 and numprovctl.8 are in the package instead.
    'numprov\.\S+: W: no-manual-page-for-binary (numprovd|numprovctl)$',
    # Debian's rpm has no debuginfo step (Fedora's redhat-rpm-config adds
    # %debug_package, and find-debuginfo strips the binaries into
    # numprov-debuginfo); brp-strip here only strips -g.
    'numprov\.\S+: W: unstripped-binary-or-object /usr/s?bin/numprov(d|ctl)$',
    # Test builds are not signed; the build system signs releases. Filtered
    # by Fedora's configuration too.
    'numprov\.\S+: E: no-signature$',
    # Fedora's guidelines leave Packager and Group out of spec files (the
    # build system sets Packager, Group is obsolete); both filtered by
    # Fedora's configuration, as is the obsolete BuildRoot tag.
    'numprov\.\S+: E: no-packager-tag$',
    'numprov\.\S+: E: no-group-tag$',
    'numprov\.spec: W: no-buildroot-tag$',
    # The fallbacks of %_sysusersdir and %_tmpfilesdir for an rpm without
    # systemd-rpm-macros: systemd's fixed, architecture-independent
    # directories, not %_libdir. Fedora's configuration filters
    # hardcoded-library-path altogether.
    'numprov\.spec:\d+: E: hardcoded-library-path in /usr/lib/(sysusers|tmpfiles)\.d\}$',
]
EOF
if command -v rpmlint >/dev/null 2>&1; then
	t0=$(now)
	rpmlint "$spec" "$rpm" >"$outdir/rpmlint-raw.out" 2>&1
	note "rpmlint without any filter: $(grep -E 'checked;' "$outdir/rpmlint-raw.out" | sed -e 's/^ *//' -e 's/; has taken.*//')"
	rpmlint -c "$outdir/rpmlint-debian.toml" -r "$rpmlintrc" "$spec" "$rpm" \
		>"$outdir/rpmlint.out" 2>&1
	lint_rc=$?
	summary=$(grep -E 'checked;' "$outdir/rpmlint.out" | sed -e 's/^ *//' -e 's/; has taken.*//')
	grep -E ': [EW]: ' "$outdir/rpmlint.out" | sed 's/^/#   /'
	errors=$(sed -n 's/.* \([0-9][0-9]*\) errors,.*/\1/p' <<<"$summary")
	if [ "$lint_rc" -eq 0 ] && [ "${errors:-x}" = 0 ]; then
		ok "rpmlint: no error ($summary; $(since "$t0") s)"
	else
		not_ok "rpmlint: ${summary:-no summary} (exit $lint_rc; $outdir/rpmlint.out)"
		grep -vE ': [EW]: ' "$outdir/rpmlint.out" | sed 's/^/#   /' | tail -20
	fi
else
	ok "rpmlint # SKIP rpmlint is not installed"
fi

# --- files, owners, modes, flags --------------------------------------------------
rpm -qp --queryformat '[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags}\n]' \
	"$rpm" >"$outdir/files.txt" 2>/dev/null
rpm -qplv "$rpm" >"$outdir/qplv.txt" 2>/dev/null
(cd "$outdir/payload" && rpm2cpio "$rpm" | cpio -idm --quiet) 2>/dev/null

# PATH PERMS USER GROUP FLAGS ("-": none). A manual page may carry a
# compression suffix. The docs/*.md are those of the tarball.
{
	cat <<'EOF'
/etc/numprov drwxr-xr-x root root -
/etc/numprov/numprovd.conf -rw-r----- root numprov cn
/usr/bin/numprovctl -rwxr-xr-x root root -
/usr/sbin/numprovd -rwxr-xr-x root root -
/usr/lib/systemd/system/numprovd.service -rw-r--r-- root root -
/usr/lib/sysusers.d/numprov.conf -rw-r--r-- root root -
/usr/lib/tmpfiles.d/numprov.conf -rw-r--r-- root root -
/usr/share/snmp/mibs/NUMPROV-MIB.txt -rw-r--r-- root root -
/usr/share/numprov drwxr-xr-x root root -
/usr/share/numprov/numprovd.conf.example -rw-r--r-- root root -
/usr/share/man/man8/numprovd.8 -rw-r--r-- root root d
/usr/share/man/man8/numprovctl.8 -rw-r--r-- root root d
/usr/share/man/man5/numprovd.conf.5 -rw-r--r-- root root d
/usr/share/doc/numprov drwxr-xr-x root root -
/usr/share/doc/numprov/README.md -rw-r--r-- root root d
/usr/share/doc/numprov/snmpd-numprov.conf -rw-r--r-- root root d
/var/lib/numprov drwxr-x--- numprov numprov -
EOF
	tar -tJf "$src0" "numprov-$version/docs" 2>/dev/null | sed -n 's#^numprov-[^/]*/docs/\([^/]*\.md\)$#/usr/share/doc/numprov/\1 -rw-r--r-- root root d#p'
} | sort >"$outdir/expected.txt"

strip_z() { sed -E 's#^(/usr/share/man/[^ ]*)\.(gz|bz2|xz|zst)( |$)#\1\3#'; }
# rpm's build-id links (/usr/lib/.build-id) are its own, not numprov's
grep -v '^/usr/lib/\.build-id' "$outdir/files.txt" | strip_z |
	awk '{print $1, $2, $3, $4, ($5 == "" ? "-" : $5)}' | sort >"$outdir/actual.txt"
if diff -u "$outdir/expected.txt" "$outdir/actual.txt" >"$outdir/files.diff"; then
	ok "file list, modes, owners and flags: $(wc -l <"$outdir/actual.txt") entries as expected"
else
	not_ok "file list, modes, owners and flags (- expected, + rpm)"
	grep -E '^[-+]/' "$outdir/files.diff" | sed 's/^/#   /'
fi
check "numprovd.conf is %config(noreplace) 0640 root:numprov (rpm -qplv)" \
	grep -qE '^-rw-r----- +1 root +numprov .* /etc/numprov/numprovd\.conf$' "$outdir/qplv.txt"
check "/var/lib/numprov is a 0750 numprov:numprov directory (rpm -qplv)" \
	grep -qE '^drwxr-x--- +[0-9]+ numprov +numprov .* /var/lib/numprov$' "$outdir/qplv.txt"
check "numprovd.conf is the only %config file" \
	test "$(awk '$5 ~ /c/ {print $1}' "$outdir/files.txt")" = /etc/numprov/numprovd.conf
check "the manual pages are compressed" \
	test "$(grep -cE '^/usr/share/man/man[58]/numprov[^ ]*\.gz ' "$outdir/files.txt")" = 3
check "no licence file to ship: the tarball has none (LICENSE/COPYING)" \
	test -z "$(tar -tJf "$src0" | grep -iE '^numprov-[^/]*/(licen[cs]e|copying)[^/]*$')"
unit=$outdir/payload/usr/lib/systemd/system/numprovd.service
check "the unit runs /usr/sbin/numprovd with /etc/numprov/numprovd.conf, no @...@ left" \
	sh -c "grep -q '^ExecStart=/usr/sbin/numprovd -f -c /etc/numprov/numprovd.conf\$' '$unit' && ! grep -q '@[a-z_]*@' '$unit'"
tar -xOJf "$src0" "numprov-$version/packaging/systemd/numprov.sysusers" >"$outdir/sysusers.src" 2>/dev/null
tar -xOJf "$src0" "numprov-$version/packaging/systemd/numprov.tmpfiles" >"$outdir/tmpfiles.src" 2>/dev/null
check "sysusers.d/numprov.conf and tmpfiles.d/numprov.conf are the tarball's" \
	sh -c "cmp '$outdir/sysusers.src' '$outdir/payload/usr/lib/sysusers.d/numprov.conf' &&
	       cmp '$outdir/tmpfiles.src' '$outdir/payload/usr/lib/tmpfiles.d/numprov.conf'"

# --- scriptlets, as text ------------------------------------------------------------
rpm -qp --scripts "$rpm" >"$outdir/scripts.txt" 2>/dev/null
for s in PREIN POSTIN PREUN POSTUN; do
	rpm -qp --qf "%{$s}\n" "$rpm" >"$outdir/$s.sh" 2>/dev/null
done
# the text %pre feeds systemd-sysusers: between the here-document markers
pre_sysusers() {
	grep -q '^systemd-sysusers --replace=/usr/lib/sysusers.d/numprov.conf - <<' "$outdir/PREIN.sh" ||
		{ echo "no systemd-sysusers --replace=/usr/lib/sysusers.d/numprov.conf - in %pre"; return 1; }
	sed -n '/^systemd-sysusers/,/^NUMPROV_SYSUSERS_EOF$/p' "$outdir/PREIN.sh" | sed '1d;$d' >"$outdir/pre.sysusers"
	cmp "$outdir/pre.sysusers" "$outdir/payload/usr/lib/sysusers.d/numprov.conf"
}
check "%pre makes the user with systemd-sysusers from the packaged sysusers.d text" pre_sysusers
check "%post runs systemd-tmpfiles --create /usr/lib/tmpfiles.d/numprov.conf" \
	grep -q 'systemd-tmpfiles --create /usr/lib/tmpfiles.d/numprov.conf' "$outdir/POSTIN.sh"
check "%post neither starts nor restarts numprovd" \
	sh -c "! grep -qE 'systemctl.*(start|restart|--now)|invoke-rc|service numprovd' '$outdir/POSTIN.sh'"
check "%postun try-restarts numprovd after an upgrade" \
	grep -q 'systemctl try-restart numprovd.service' "$outdir/POSTUN.sh"
check "no scriptlet removes /var/lib/numprov or the user" \
	sh -c "! grep -qE 'rm .*/var/lib/numprov|userdel|groupdel' '$outdir/scripts.txt'"
check "rpm -q --requires: systemd for the scriptlets" \
	sh -c "rpm -qp --requires '$rpm' 2>/dev/null | grep -qx 'systemd'"

# --- scriptlets and payload in a scratch root (root only) ---------------------------
# The scriptlets run on this host with systemd-sysusers and systemd-tmpfiles
# pointed at the scratch root (--root), systemctl replaced by a recorder, and
# /run/systemd/system replaced by a directory of ours ("systemd is running").
# The payload goes in with rpm --root --noscripts: rpm's chroot would need a
# shell and systemd in the scratch root to run them itself.
root=$outdir/root
run_scriptlet() { # NAME ARG
	: >"$outdir/systemctl.log"
	sed "s#/run/systemd/system#$outdir/shim/run-systemd#g" "$outdir/$1.sh" >"$outdir/$1.run"
	PATH=$outdir/shim:$PATH sh "$outdir/$1.run" "$2" >"$outdir/$1.out" 2>&1 ||
		{ cat "$outdir/$1.out"; return 1; }
}
# the numprov user of the scratch root: group numprov, its home, no login
user_made() {
	local gid
	gid=$(awk -F: '$1 == "numprov" {print $3}' "$root/etc/group")
	[ -n "$gid" ] || { echo "no group numprov"; return 1; }
	awk -F: -v gid="$gid" '$1 == "numprov" && $4 == gid && $6 == "/var/lib/numprov" &&
		$7 ~ /nologin$/ {f = 1} END {exit !f}' "$root/etc/passwd" ||
		{ grep numprov "$root/etc/passwd"; return 1; }
}
upgrade_pre() {
	run_scriptlet PREIN 2 && user_made &&
		[ "$(grep -c '^numprov:' "$root/etc/passwd")" = 1 ]
}
# owner:group:mode of PATH in the scratch root, names from its own passwd/group
stat_root() {
	local u g m
	read -r u g m < <(stat -c '%u %g %a' "$root$1") || return 1
	u=$(awk -F: -v id="$u" '$3 == id {print $1; exit}' "$root/etc/passwd")
	g=$(awk -F: -v id="$g" '$3 == id {print $1; exit}' "$root/etc/group")
	[ "$u" ] || u=$(stat -c %u "$root$1")
	[ "$g" ] || g=$(stat -c %g "$root$1")
	printf '%s:%s:%04o\n' "$u" "$g" "0$m"
}
expect_stat() { # PATH OWNER:GROUP:MODE
	local got
	got=$(stat_root "$1")
	[ "$got" = "$2" ] || { echo "$1 is $got, not $2"; return 1; }
}
if [ "$(id -u)" != 0 ]; then
	ok "scratch-root install and scriptlets # SKIP not root"
elif ! command -v systemd-sysusers >/dev/null 2>&1 || ! command -v systemd-tmpfiles >/dev/null 2>&1; then
	ok "scratch-root install and scriptlets # SKIP no systemd-sysusers/systemd-tmpfiles here"
else
	mkdir -p "$root/etc" "$outdir/shim/run-systemd"
	# a system's first lines: root, which owns most of the payload
	echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
	echo 'root:x:0:' >"$root/etc/group"
	cat >"$outdir/shim/systemd-sysusers" <<EOF
#!/bin/sh
exec $(command -v systemd-sysusers) --root='$root' "\$@"
EOF
	cat >"$outdir/shim/systemd-tmpfiles" <<EOF
#!/bin/sh
# paths of configuration files are the scratch root's
for a; do
	case "\$a" in /*) set -- "\$@" '$root'"\$a" ;; *) set -- "\$@" "\$a" ;; esac
	shift
done
exec $(command -v systemd-tmpfiles) --root='$root' "\$@"
EOF
	cat >"$outdir/shim/systemctl" <<EOF
#!/bin/sh
echo "systemctl \$*" >>'$outdir/systemctl.log'
EOF
	chmod 755 "$outdir/shim/"*

	# fresh install: %pre, payload, %post
	check "%pre 1 (install) succeeds" run_scriptlet PREIN 1
	check "%pre made numprov: group numprov, home /var/lib/numprov, nologin shell" user_made
	if rpm --root "$root" -i --nodeps --noscripts "$rpm" >"$outdir/rpm-root.log" 2>&1; then
		ok "rpm --root $root -i --nodeps --noscripts"
		check "installed: /etc/numprov root:root 0755" expect_stat /etc/numprov root:root:0755
		check "installed: numprovd.conf root:numprov 0640" expect_stat /etc/numprov/numprovd.conf root:numprov:0640
		check "installed: /var/lib/numprov numprov:numprov 0750" expect_stat /var/lib/numprov numprov:numprov:0750
		check "installed: numprovd and numprovctl root:root 0755" \
			sh -c "[ \"\$(stat -c '%u:%g:%a' '$root/usr/sbin/numprovd' '$root/usr/bin/numprovctl' | sort -u)\" = 0:0:755 ]"
		# tmpfiles must repair the directory: spoil it first
		chown 0:0 "$root/var/lib/numprov" && chmod 0755 "$root/var/lib/numprov"
		check "%post 1 (install) succeeds" run_scriptlet POSTIN 1
		check "%post 1: systemctl only presets numprovd (not started)" \
			test "$(cat "$outdir/systemctl.log")" = "systemctl --no-reload preset numprovd.service"
		check "%post 1: systemd-tmpfiles made /var/lib/numprov numprov:numprov 0750" \
			expect_stat /var/lib/numprov numprov:numprov:0750

		# upgrade: new %pre 2 and %post 2, then the old package's %preun 1, %postun 1
		check "%pre 2 (upgrade) succeeds, numprov kept as it was" upgrade_pre
		run_scriptlet POSTIN 2
		check "%post 2 (upgrade): no systemctl call" test ! -s "$outdir/systemctl.log"
		run_scriptlet PREUN 1
		check "%preun 1 (upgrade): no systemctl call" test ! -s "$outdir/systemctl.log"
		run_scriptlet POSTUN 1
		check "%postun 1 (upgrade): daemon-reload, try-restart numprovd" \
			test "$(tr '\n' ';' <"$outdir/systemctl.log")" = "systemctl daemon-reload;systemctl try-restart numprovd.service;"
		rm -rf "$outdir/shim/run-systemd"
		run_scriptlet POSTUN 1
		check "%postun 1 without a running systemd: no systemctl call" test ! -s "$outdir/systemctl.log"
		mkdir -p "$outdir/shim/run-systemd"

		# erase: %preun 0, payload removed, %postun 0
		run_scriptlet PREUN 0
		check "%preun 0 (erase): disable and stop numprovd" \
			test "$(tr '\n' ';' <"$outdir/systemctl.log")" = "systemctl --no-reload disable numprovd.service;systemctl stop numprovd.service;"
		echo inventory >"$root/var/lib/numprov/numprov.db"
		echo '# edited' >>"$root/etc/numprov/numprovd.conf"
		if rpm --root "$root" -e --nodeps --noscripts numprov >>"$outdir/rpm-root.log" 2>&1; then
			ok "rpm --root $root -e --noscripts numprov"
		else
			not_ok "rpm --root $root -e --noscripts numprov ($outdir/rpm-root.log)"
		fi
		run_scriptlet POSTUN 0
		check "%postun 0 (erase): daemon-reload only" \
			test "$(cat "$outdir/systemctl.log")" = "systemctl daemon-reload"
		check "erase keeps /var/lib/numprov and what numprovd wrote there" \
			test -f "$root/var/lib/numprov/numprov.db"
		check "erase keeps an edited numprovd.conf (as numprovd.conf.rpmsave)" \
			test -f "$root/etc/numprov/numprovd.conf.rpmsave"
		check "erase keeps the numprov user, removes the programs" \
			sh -c "grep -q '^numprov:' '$root/etc/passwd' && [ ! -e '$root/usr/sbin/numprovd' ]"
	else
		not_ok "rpm --root $root -i --nodeps --noscripts ($outdir/rpm-root.log)"
		sed 's/^/#   /' "$outdir/rpm-root.log"
	fi
fi

# --- the .deb beside it ---------------------------------------------------------------
# Paths compared modulo /lib vs /usr/lib (merged /usr), compression suffixes
# of manual pages and docs, and the doc directory's layout (by file name);
# /usr/share/doc/numprov/{copyright,changelog*} are Debian's own.
norm_paths() {
	sed -E -e 's#^/lib/#/usr/lib/#' \
		-e 's#^/usr/share/doc/numprov[^/]*/(.*/)?([^/]+)$#doc:\2#' \
		-e 's#\.(gz|bz2|xz|zst)$##' |
		grep -vE '^doc:(copyright|changelog(\.Debian)?)$|^/usr/lib/\.build-id/|^/usr/share/lintian/' | sort -u
}
# OWNER GROUP MODE of PATH once the .deb is installed: the archive's entry,
# then what its postinst does to the path, in order: the package's tmpfiles.d
# line when the postinst runs systemd-tmpfiles --create, then each command
# line naming the path (after the postinst's own NAME=/literal assignments
# are substituted): dpkg-statoverride --add USER GROUP MODE, install -m/-o/-g,
# chgrp GROUP, and otherwise an octal MODE and a USER:GROUP among its words
# (chmod 0640, chown root:numprov, or a helper such as
# "set_perms 0640 root:numprov $CONF"). Lines that only test the path change
# nothing. A path reached in another way is not seen: the result then shows
# the archive's values, and the check says what it found.
deb_effective() { # PATH
	local p=$1 a_perm a_og u g m line
	read -r a_perm a_og < <(awk -v p=".$1" '{q = $6; sub(/\/$/, "", q)} q == p {print $1, $2; exit}' "$outdir/deb-contents.txt")
	if [ -n "${a_perm:-}" ]; then
		u=${a_og%%/*}; g=${a_og#*/}; m=$(perms_to_octal "$a_perm")
	else
		u=-; g=-; m=-
	fi
	if grep -qE 'systemd-tmpfiles.*--create' "$outdir/deb-ctrl/postinst" 2>/dev/null &&
		line=$(awk -v p="$p" '$1 ~ /^[dDvqQ]$/ && $2 == p {print $3, $4, $5; exit}' "$outdir/deb-tmpfiles.conf" 2>/dev/null) &&
		[ -n "$line" ]; then
		read -r m u g <<<"$line"
		case "$m" in [0-7]*) m=$(printf '%04o' "$((8#$m))") ;; esac
	fi
	[ -f "$outdir/deb-ctrl/postinst" ] || { echo "$u $g $m"; return; }
	awk -v p="$p" -v u="$u" -v g="$g" -v m="$m" '
		function mode(x) { return sprintf("%04d", x) }  # octal digits kept as they are
		/^[A-Za-z_][A-Za-z0-9_]*=[^ $`;]+$/ {   # NAME=/literal
			n = index($0, "="); v = substr($0, n + 1); gsub(/["\047]/, "", v)
			var[substr($0, 1, n - 1)] = v; next
		}
		{
			sub(/^[ \t]*#.*/, "")
			for (k in var) { gsub("\\$\\{" k "\\}", var[k]); gsub("\\$" k "([^A-Za-z0-9_]|$)", var[k] " ") }
			gsub(/["\047;]/, " "); gsub(/\|\||&&/, " ")
			hit = 0
			for (i = 1; i <= NF; i++) if ($i == p) hit = i
			if (!hit) next
			statov = 0; inst = 0
			for (i = 1; i < hit; i++) {
				if ($i == "dpkg-statoverride") statov = i
				if ($i == "install") inst = i
				if ($i == "--list" || $i == "cmp" || $i == "test" || $i == "[" || $i == "[[") { hit = 0; break }
			}
			if (!hit) next
			if (statov) {
				for (j = statov; j < hit; j++) if ($j == "--add") { u = $(j+1); g = $(j+2); m = mode($(j+3)) }
				next
			}
			if (inst) {
				for (j = inst + 1; j < hit; j++) {
					if ($j == "-m") m = mode($(j+1))
					if ($j == "-o") u = $(j+1)
					if ($j == "-g") g = $(j+1)
				}
				next
			}
			for (i = 1; i < hit; i++) {
				if ($i == "chgrp" && i + 1 < hit) { g = $(i+1); next }
				if ($i ~ /^[0-7][0-7][0-7][0-7]?$/) m = mode($i)
				if ($i ~ /^[a-z_][a-z0-9_-]*[:.][a-z_][a-z0-9_-]*$/) { split($i, a, /[:.]/); u = a[1]; g = a[2] }
			}
		}
		END { print u, g, m }' "$outdir/deb-ctrl/postinst"
}
if [ -z "$deb" ]; then
	note "no .deb given: the comparison with the Debian package is not made"
elif ! command -v dpkg-deb >/dev/null 2>&1; then
	ok "comparison with $(basename "$deb") # SKIP no dpkg-deb"
else
	dpkg-deb -c "$deb" >"$outdir/deb-contents.txt" 2>/dev/null
	rm -rf "$outdir/deb-ctrl" && mkdir -p "$outdir/deb-ctrl"
	dpkg-deb -e "$deb" "$outdir/deb-ctrl" 2>/dev/null
	dpkg-deb --fsys-tarfile "$deb" | tar -xO --wildcards '*/tmpfiles.d/numprov.conf' \
		>"$outdir/deb-tmpfiles.conf" 2>/dev/null
	# regular files and symlinks (directories are compared for the two below)
	awk '$1 !~ /^d/ {q = $6; sub(/^\./, "", q); print q}' "$outdir/deb-contents.txt" | norm_paths >"$outdir/deb-files.txt"
	awk '$2 !~ /^d/ {print $1}' "$outdir/files.txt" | norm_paths >"$outdir/rpm-files.txt"
	if diff -u "$outdir/deb-files.txt" "$outdir/rpm-files.txt" >"$outdir/deb-rpm.diff"; then
		ok "the .deb and the rpm ship the same $(wc -l <"$outdir/rpm-files.txt") files ($(basename "$deb"))"
	else
		not_ok "the .deb and the rpm ship different files (- .deb only, + rpm only)"
		grep -E '^[-+][^-+]' "$outdir/deb-rpm.diff" | sed 's/^/#   /'
	fi
	for p in /etc/numprov/numprovd.conf /var/lib/numprov /etc/numprov; do
		want=$(awk -v p="$p" '$1 == p {print $3, $4, $2}' "$outdir/files.txt")
		read -r wu wg wp <<<"$want"
		want="$wu $wg $(perms_to_octal "$wp")"
		got=$(deb_effective "$p")
		check "$p: owner, group, mode $want in the rpm, $got once the .deb's postinst has run" \
			test "$got" = "$want"
	done
	check "the .deb's conffiles hold /etc/numprov/numprovd.conf" \
		grep -qx /etc/numprov/numprovd.conf "$outdir/deb-ctrl/conffiles"
	check "the .deb's tmpfiles.d/numprov.conf is the rpm's" \
		cmp "$outdir/deb-tmpfiles.conf" "$outdir/payload/usr/lib/tmpfiles.d/numprov.conf"
fi

finish
