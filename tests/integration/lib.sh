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

# ---- sealvmd -------------------------------------------------------------------------------
SEALVMD=${SEALVMD:-$(dirname "$SEALVM")/sealvmd}

# start_daemon DATA_DIR LOG [ARGS...] — starts sealvmd on free loopback ports; sets PORT, URL,
# S3_PORT, S3_URL (the S3 listener) and DPID.
start_daemon() {
	local dir=$1 log=$2 i
	shift 2
	"$SEALVMD" --data-dir "$dir" --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
	DPID=$!
	for i in $(seq 1 100); do
		PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' "$log" 2>/dev/null | head -1 || true)
		[ -n "$PORT" ] && break
		kill -0 $DPID 2>/dev/null || { cat "$log" >&2; fail "sealvmd exited at start"; }
		sleep 0.1
	done
	[ -n "$PORT" ] || { cat "$log" >&2; fail "sealvmd did not report its port"; }
	URL="http://127.0.0.1:$PORT"
	S3_PORT=$(sed -n 's/.*S3 on .* (port \([0-9]*\)).*/\1/p' "$log" 2>/dev/null | head -1 || true)
	[ -n "$S3_PORT" ] || { cat "$log" >&2; fail "sealvmd did not report its S3 port"; }
	S3_URL="http://127.0.0.1:$S3_PORT"
}

# stop_daemon — SIGTERM, and it must exit 0.
stop_daemon() {
	kill -TERM "$DPID"
	local rc=0
	wait "$DPID" || rc=$?
	[ $rc -eq 0 ] || fail "sealvmd exited $rc on SIGTERM"
	DPID=
}

# token APIKEY_FILE — prints an access token for the key in the file.
token() {
	curl -sf -X POST "$URL/identity/token" \
		--data-urlencode "grant_type=urn:ibm:params:oauth:grant-type:apikey" \
		--data-urlencode "apikey@$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# api METHOD PATH [JSON] — curl with the bearer token in $TOK; body to .body, status echoed.
api() {
	local m=$1 p=$2 d=${3:-}
	if [ -n "$d" ]; then
		curl -s -o "$T/.body" -w '%{http_code}' -X "$m" "$URL$p" -H "Authorization: Bearer $TOK" \
			-H 'Content-Type: application/json' --data "$d"
	else
		curl -s -o "$T/.body" -w '%{http_code}' -X "$m" "$URL$p" -H "Authorization: Bearer $TOK"
	fi
}
# jq-like: jget EXPR — evaluates a Python expression over the JSON in .body (as j)
jget() { python3 -c "import json,sys; j=json.load(open('$T/.body')); print($1)"; }
