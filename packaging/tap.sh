# packaging/tap.sh, sourced by deb-test.sh and rpm-test.sh: one "ok - ..." or
# "not ok - ..." line per check, and the counts for their closing line.
passed=0
failed=0
ok() {
	echo "ok - $*"
	passed=$((passed + 1))
}
not_ok() {
	echo "not ok - $*"
	failed=$((failed + 1))
}
