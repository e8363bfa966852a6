# SPDX-License-Identifier: Apache-2.0
# lib.sh — shared helpers of the integration tests (bash, sourced).
#
# Every test runs the real `sealvm` (path in $SEALVM, set by Meson) in its own
# temp dir, drives the real peers (cryptsetup, qemu-img, python3-cryptography)
# and exits 0 (pass), 1 (fail) or 77 (skip: something the machine lacks).
set -euo pipefail

SEALVM=${SEALVM:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/sealvm}
[ -x "$SEALVM" ] || { echo "no sealvm binary at $SEALVM: build first"; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/sealvm-it.XXXXXX")
cleanup() {
	local rc=$?
	# undo chattr +i anywhere below T, then remove
	chattr -R -i "$T" 2>/dev/null || true
	rm -rf "$T"
	exit $rc
}
trap cleanup EXIT
cd "$T"

ntest=0
pass() { ntest=$((ntest + 1)); echo "ok $ntest - $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }
need() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 || skip "needs $c (not installed)"; done; }

# A random raw disk image of $2 MiB with an MBR boot signature, some zero runs.
mkraw() {
	local f=$1 mib=$2
	head -c $((mib * 1024 * 1024)) /dev/urandom >"$f"
	# zero runs so that sparse formats have holes to skip
	if [ "$mib" -ge 4 ]; then
		dd if=/dev/zero of="$f" bs=1M seek=1 count=1 conv=notrunc status=none
		dd if=/dev/zero of="$f" bs=1M seek=$((mib - 2)) count=1 conv=notrunc status=none
	fi
	printf '\x55\xaa' | dd of="$f" bs=1 seek=510 conv=notrunc status=none
}

# A DEK file made by our own CLI (canonical base64, no newline, mode 0600).
mkdek() { "$SEALVM" dek generate --out "$1"; }

# expect_fail REASON CMD... — CMD must exit 1 and print REASON on stderr.
expect_fail() {
	local reason=$1
	shift
	local rc=0
	"$@" >"$T/.out" 2>"$T/.err" || rc=$?
	[ $rc -eq 1 ] || { cat "$T/.err" >&2; fail "expected exit 1, got $rc: $*"; }
	grep -q -- "$reason" "$T/.err" || { cat "$T/.err" >&2; fail "expected '$reason' on stderr: $*"; }
	[ -s "$T/.err" ] || fail "no message on stderr: $*"
}

# expect_usage CMD... — CMD must exit 2 (usage error) with a message.
expect_usage() {
	local rc=0
	"$@" >"$T/.out" 2>"$T/.err" || rc=$?
	[ $rc -eq 2 ] || { cat "$T/.err" >&2; fail "expected exit 2, got $rc: $*"; }
	[ -s "$T/.err" ] || fail "no message on stderr: $*"
}

# nothing_written OUT — neither OUT nor OUT.partial exists.
nothing_written() {
	[ ! -e "$1" ] || fail "$1 exists after a failure"
	[ ! -e "$1.partial" ] || fail "$1.partial left behind"
}

same_bytes() { cmp -s "$1" "$2" || fail "$1 and $2 differ"; }

# Runs a command a few times: for peers that fail now and then (qemu-img's PBKDF benchmark).
retry() {
	local i
	for i in 1 2 3 4 5 6; do
		"$@" && return 0
		sleep 0.2
	done
	return 1
}
