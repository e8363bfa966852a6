#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The object store under `kill -9` of a real sealvmd:
#   - during a PUT (a slow streamed body: curl --limit-rate on a presigned PUT URL), of a new
#     key and over an acknowledged older version: after the restart the new key is absent and
#     the older version is intact, byte for byte;
#   - during CompleteMultipartUpload, several times at different moments: after the restart
#     either the object is there and correct and the upload gone, or the object is absent and
#     the upload still holds its parts — never a half object;
#   - after every restart: nothing under <data>/cos/tmp, and the data files on disk are exactly
#     the files that the object and part rows name (no orphans, none missing).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need curl python3
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
/usr/bin/python3 -c 'import boto3' 2>/dev/null || skip "needs Debian's python3-boto3 (/usr/bin/python3)"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; jobs -p | xargs -r kill 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
P() { /usr/bin/python3 "$HERE/cos_peer.py" "$S3_URL" "$(cat "$T/k.ak")" "$T/k.sk" "$@"; }
expect() { [ "$got" = "$1" ] || fail "$2: expected '$1', got '$got'"; }

# consistent — no temporary files; data files on disk == files named by object and part rows
consistent() {
	local tmpn
	tmpn=$(find data/cos/tmp -type f 2>/dev/null | wc -l)
	[ "$tmpn" = 0 ] || fail "$1: $tmpn file(s) left under data/cos/tmp"
	python3 - data "$1" <<'PY' || fail "$1: data files and rows differ"
import os, sqlite3, sys
data, what = sys.argv[1:]
root = os.path.join(data, "cos", "data")
disk = set()
for d, _, fs in os.walk(root):
    for f in fs:
        disk.add(os.path.relpath(os.path.join(d, f), root))
c = sqlite3.connect(os.path.join(data, "sealvm.db"))
rows = {r[0] for r in c.execute("SELECT file FROM cos_extents UNION SELECT file FROM cos_parts")}
if disk != rows:
    print("%s: on disk only %s; in rows only %s" % (what, sorted(disk - rows)[:5], sorted(rows - disk)[:5]),
          file=sys.stderr)
    sys.exit(1)
print("%s: %d data files, all named by rows" % (what, len(disk)), file=sys.stderr)
PY
}
crash() { kill -9 "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=; }

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log || { cat init.log >&2; fail "init"; }
start_daemon data daemon.log
TOK=$(token owner.key)
[ "$(api POST /v2/resource_instances '{"name":"cos","target":"us-south","resource_id":"cloud-object-storage"}')" = 201 ] || fail "instance"
COS=$(jget 'j["guid"]')
[ "$(api POST /v2/resource_keys "{\"name\":\"k\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true}}")" = 201 ] || fail "key"
jget 'j["credentials"]["cos_hmac_keys"]["access_key_id"]' | tr -d '\n' >k.ak
(umask 077; jget 'j["credentials"]["cos_hmac_keys"]["secret_access_key"]' | tr -d '\n' >k.sk)
got=$(P raw PUT /crashes); expect "200 -" "bucket"
head -c $((48 * 1024 * 1024)) /dev/urandom >v2.bin
head -c $((3 * 1024 * 1024)) /dev/urandom >v1.bin
got=$(P raw PUT /crashes/over --body v1.bin); expect "200 -" "v1"
consistent "before"

# --- kill -9 during PUTs ------------------------------------------------------------------------
for key in fresh over; do
	url=$(P presign PUT crashes "$key" 300)
	curl -s -o /dev/null --limit-rate 4M -T v2.bin --path-as-is "$url" 2>/dev/null &
	CPID=$!
	# 2 s of a 12 s body (at 4 MiB/s): the daemon holds part of it when it dies
	sleep 2
	crash
	wait $CPID 2>/dev/null || true
	start_daemon data "daemon-$key.log"
	consistent "after kill -9 during a PUT of $key"
done
got=$(P raw HEAD /crashes/fresh); expect "404 -" "a PUT cut by the crash is visible"
got=$(P raw GET /crashes/over --out got.bin); expect "200 -" "the acknowledged older version"
same_bytes got.bin v1.bin
pass "kill -9 during streamed PUTs: the new key absent, the acknowledged version intact, no temp or orphan files"

# --- kill -9 during CompleteMultipartUpload ---------------------------------------------------------
head -c $((5 * 1024 * 1024)) /dev/urandom >p1.bin
head -c $((1024 * 1024 + 7)) /dev/urandom >p2.bin
cat p1.bin p2.bin >whole.bin
present=0 absent=0
for delay in 0 0.002 0.005 0.01 0.02 0.05 0.1 0.3; do
	key="mp-$delay"
	got=$(P raw POST "/crashes/$key?uploads" --out init.xml); expect "200 -" "initiate"
	uid=$(sed -n 's/.*<UploadId>\([^<]*\)<.*/\1/p' init.xml)
	got=$(P raw PUT "/crashes/$key?partNumber=1&uploadId=$uid" --body p1.bin); expect "200 -" "part 1"
	got=$(P raw PUT "/crashes/$key?partNumber=2&uploadId=$uid" --body p2.bin); expect "200 -" "part 2"
	printf '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"%s"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>"%s"</ETag></Part></CompleteMultipartUpload>' \
		"$(openssl dgst -md5 -r p1.bin | cut -d' ' -f1)" "$(openssl dgst -md5 -r p2.bin | cut -d' ' -f1)" >done.xml
	url=$(P presign POST crashes "$key" 300 0 "uploadId=$uid")
	curl -s -o /dev/null -X POST --data-binary @done.xml --path-as-is "$url" 2>/dev/null &
	CPID=$!
	sleep "$delay"
	crash
	wait $CPID 2>/dev/null || true
	start_daemon data "daemon-$key.log"
	consistent "after kill -9 during complete ($delay s)"
	got=$(P raw GET "/crashes/$key" --out got.bin)
	if [ "$got" = "200 -" ]; then
		same_bytes got.bin whole.bin
		got=$(P raw GET "/crashes/$key?uploadId=$uid"); expect "404 NoSuchUpload" "a completed upload still listed"
		present=$((present + 1))
	else
		expect "404 NoSuchKey" "complete cut by the crash"
		got=$(P raw GET "/crashes/$key?uploadId=$uid" --out parts.xml); expect "200 -" "the upload after a cut complete"
		[ "$(grep -o '<PartNumber>' parts.xml | wc -l)" = 2 ] || fail "the upload lost parts: $(cat parts.xml)"
		got=$(P raw POST "/crashes/$key?uploadId=$uid" --body done.xml); expect "200 -" "complete again"
		got=$(P raw GET "/crashes/$key" --out got.bin); expect "200 -" "the object"
		same_bytes got.bin whole.bin
		absent=$((absent + 1))
	fi
done
consistent "at the end"
pass "kill -9 during CompleteMultipartUpload ($present complete, $absent not yet): whole or absent, upload intact, files match rows"
stop_daemon
