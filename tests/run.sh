#!/bin/bash
# Every test of numprov, from a clean tree or an existing one:
#   1. gcc build with ASan + UBSan and -Werror, `make check` (Check unit tests and
#      the SIGKILL crash test of the inventory);
#   2. clang build with -Werror (the code must be warning-free with both), the CLI's
#      link check (nm) and the source format (clang-format);
#   3. integration tests (pytest) against the sanitized binaries;
#   4. a short run of every libFuzzer harness;
#   5. packaging: make check-install, make distcheck, the .deb and the .rpm built from
#      the release tarball and checked (lintian, rpmlint, install, remove, purge).
# Closes with one line: "N passed, N failed".
# Options: --fuzz-seconds N (default 20 per harness).
#          --valgrind [PYTEST ARGS]: instead of all the above, the integration tests
#          against a build without sanitizers (build/vg, --enable-valgrind-checks), every
#          numprovd they start and the Graph client's driver tests/graphcli under valgrind
#          memcheck (tests/valgrind.supp); a report with an error or a definite leak fails
#          the run (reports in build/vg-reports). About an hour: not part of CI.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
fuzz_seconds=20
[ "${1:-}" = "--fuzz-seconds" ] && fuzz_seconds=${2:-20}

if [ "${1:-}" = "--valgrind" ]; then
	shift
	command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }
	autoreconf -fi >/dev/null 2>&1 || { echo "autoreconf failed"; exit 1; }
	mkdir -p build/vg
	(cd build/vg && "$top/configure" -q CC=gcc CFLAGS="-O1 -g" --enable-valgrind-checks && make -s -j"$(nproc)" &&
		make -s -j"$(nproc)" tests/graphcli tests/invcheck) >build/vg.build.log 2>&1 ||
		{ tail -30 build/vg.build.log; echo "0 passed, 1 failed"; exit 1; }
	rm -rf build/vg-reports
	NUMPROV_BUILD="$top/build/vg" NUMPROV_VALGRIND="$top/build/vg-reports" \
		/usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml=build/vg-pytest.xml \
		"${@:-tests/integration}" >build/vg-pytest.log 2>&1
	rc=$?
	tail -40 build/vg-pytest.log
	read -r t f e s < <(/usr/bin/python3 - <<'PY'
import xml.etree.ElementTree as ET
r = ET.parse("build/vg-pytest.xml").getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
print(s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped"))
PY
	)
	bad=$(find build/vg-reports -name '*.vg' -size +0 2>/dev/null | wc -l)
	echo "valgrind reports with errors or definite leaks: $bad"
	echo "$((t - f - e - s)) passed, $((f + e + (bad > 0 ? 1 : 0))) failed"
	[ "$rc" -eq 0 ] && [ "$bad" -eq 0 ]
	exit
fi

passed=0
failed=0
failures=()
pass() { passed=$((passed + $1)); }
fail() { failed=$((failed + $1)); failures+=("$2"); }

# one-test step: name, command...
step() {
	local name=$1
	shift
	echo "== $name"
	if "$@"; then pass 1; else fail 1 "$name"; fi
}

configure_build() {
	local dir=$1
	shift
	mkdir -p "$dir"
	(cd "$dir" && "$top/configure" -q "$@" && make -s -j"$(nproc)") >"$dir.build.log" 2>&1
	local rc=$?
	[ $rc -eq 0 ] || tail -40 "$dir.build.log"
	return $rc
}

echo "== autoreconf"
autoreconf -fi >/dev/null 2>&1 || { echo "autoreconf failed"; exit 1; }

# 1. gcc, sanitizers, unit tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
# what LeakSanitizer may not report, each with its reason (tests/lsan.supp)
export LSAN_OPTIONS="suppressions=$top/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
step "gcc build (-Wall -Wextra -Werror, ASan+UBSan)" \
	configure_build build/test CC=gcc --enable-sanitizers --enable-werror
echo "== make check"
make -C build/test -s -j"$(nproc)" check >build/test.check.log 2>&1
for log in build/test/tests/unit/*.log build/test/tests/*.log; do
	[ -f "$log" ] || continue
	case "$log" in */test-suite.log) continue ;; esac
	line=$(grep -E '^[0-9]+%: Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+' "$log" | tail -1)
	if [ -n "$line" ]; then
		n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
		f=$(sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/' <<<"$line")
		f=$((f))
		echo "$(basename "$log" .log): $((n - f)) passed, $f failed"
		pass $((n - f))
		[ "$f" -eq 0 ] || { fail "$f" "$(basename "$log" .log)"; grep -E ':[FE]:' "$log"; }
	else
		ok=$(grep -cE '^ok ' "$log")
		nok=$(grep -cE '^not ok ' "$log")
		rc=$(grep -E '^(PASS|FAIL|ERROR)' "${log%.log}.trs" 2>/dev/null | head -1)
		[ "$ok" -gt 0 ] || [ "$nok" -gt 0 ] || nok=1
		grep -q ':test-result: PASS' "${log%.log}.trs" 2>/dev/null || [ "$nok" -gt 0 ] || nok=1
		echo "$(basename "$log" .log): $ok passed, $nok failed"
		pass "$ok"
		[ "$nok" -eq 0 ] || { fail "$nok" "$(basename "$log" .log)"; grep -E '^not ok' "$log"; tail -20 "$log"; }
	fi
done
if ! ls build/test/tests/unit/*.log >/dev/null 2>&1; then
	fail 1 "make check ran no unit test"
	tail -40 build/test.check.log
fi

# the CLI carries neither the Graph client nor the provisioning cycle (src/ layout)
cli_is_lean() {
	local bad
	[ -x build/test/numprovctl ] || { echo "build/test/numprovctl was not built"; return 1; }
	bad=$(nm build/test/numprovctl | grep -E ' [TtUu] (graph_|teams_|prov_|control_new|loop_|curl_)')
	[ -z "$bad" ] || { echo "numprovctl links daemon code:"; echo "$bad" | head; return 1; }
}
step "numprovctl links only src/common (nm)" cli_is_lean

# every C source as .clang-format has it
formatted() {
	local f bad=0
	for f in src/*/*.[ch] tests/*.c tests/unit/*.[ch] tests/fuzz/*.c bench/*.c; do
		clang-format --dry-run --Werror "$f" >/dev/null 2>&1 ||
			{ echo "not formatted: $f (clang-format -i $f)"; bad=1; }
	done
	return $bad
}
step "clang-format" formatted

# NUMPROV-MIB: smilint -l 6 silent, snmptranslate resolves the tree, the arc matches the code
step "make check-mib" make -C build/test -s check-mib

# the manual pages: mandoc -Tlint -Wall silent, every option, command and key in them
step "make check-man" make -C build/test -s check-man

# the systemd unit: verify clean, systemd-analyze security rating <= 2.0
step "make check-unit" make -C build/test -s check-unit

# 2. clang must be clean too
step "clang build (-Wall -Wextra -Werror)" configure_build build/clang CC=clang --enable-werror

# 3. integration tests
echo "== integration tests (pytest)"
NUMPROV_BUILD="$top/build/test" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
	--junitxml=build/pytest.xml tests/integration tests/graphsim >build/pytest.log 2>&1
cat build/pytest.log | tail -30
if [ -f build/pytest.xml ]; then
	read -r t f e s < <(/usr/bin/python3 - <<'PY'
import xml.etree.ElementTree as ET
r = ET.parse("build/pytest.xml").getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
print(s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped"))
PY
	)
	pass $((t - f - e - s))
	[ $((f + e)) -eq 0 ] || fail $((f + e)) "pytest"
	[ "$s" -eq 0 ] || echo "($s skipped)"
else
	fail 1 "pytest did not run"
fi

run_fuzz() {
	"$1" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$2" "$3" >"$4" 2>&1 ||
		{ tail -30 "$4"; return 1; }
	grep -E 'stat::number_of_executed_units' "$4"
}

# 4. fuzz harnesses, briefly (long runs: see tests/fuzz/README.md)
if make -C build/test -s fuzz >build/fuzz.build.log 2>&1; then
	for fz in build/test/tests/fuzz/fuzz_*; do
		[ -x "$fz" ] || continue
		name=$(basename "$fz")
		corpus=build/corpus/${name#fuzz_}
		mkdir -p "$corpus"
		step "$name for ${fuzz_seconds}s" run_fuzz "$fz" "$corpus" \
			"tests/fuzz/corpus/${name#fuzz_}" "build/$name.log"
	done
else
	fail 1 "fuzz harness build"
	tail -20 build/fuzz.build.log
fi

# 5. packaging, from the release tarball: install paths, distcheck, the .deb (built,
#    lintian, installed, removed, purged on this machine) and the .rpm (built, rpmlint,
#    compared with the .deb). Both package scripts need root (77 = skipped).
step "make check-install" make -C build/clang -s check-install
rm -f build/clang/numprov-*.tar.* # a failed distcheck must not leave an old tarball in use
step "make distcheck" eval 'make -C build/clang -s distcheck >build/distcheck.log 2>&1 ||
	{ tail -30 build/distcheck.log; false; }'
tarball=$(ls build/clang/numprov-*.tar.xz 2>/dev/null | head -1)
# a package test: name, log name, command... (77 = skipped, counted neither way)
package_step() {
	local name=$1 log=build/$2.log
	shift 2
	echo "== $name"
	"$@" >"$log" 2>&1
	local rc=$?
	# its own "N passed, N failed" is shown as "checks: N ok, N not ok": the run's
	# closing line must stay the only one of that form
	grep -E '^(not ok|# |[0-9]+ passed)' "$log" | tail -15 |
		sed -E 's/^([0-9]+) passed, ([0-9]+) failed$/checks: \1 ok, \2 not ok/'
	case $rc in
	0) pass 1 ;;
	77) echo "(skipped: $(tail -1 "$log"))" ;;
	*) fail 1 "$name" ;;
	esac
}
rm -rf build/packages
package_step "Debian package (packaging/deb-test.sh)" deb-test \
	packaging/deb-test.sh "$tarball" build/packages
package_step "RPM package (packaging/rpm-test.sh)" rpm-test \
	packaging/rpm-test.sh "$tarball" build/packages/numprov_*.deb

echo
if [ ${#failures[@]} -gt 0 ]; then
	echo "failed: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
