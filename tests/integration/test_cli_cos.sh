#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `sealvm cos ...` against a real sealvmd (API and S3 listeners), with the session's bearer
# token and with HMAC keys: buckets (create, list, show, delete; duplicates and bad names
# refused), put (small, empty, chunk-boundary sizes, metadata, --sha256; a 100 MiB multipart
# upload in 5 MiB parts, 4 at a time), get (full and ranged, compared with cmp; --sha256
# verified; a wrong one leaves no file; a download cut by a proxy resumes with Range and
# If-Match), head, ls with prefix and delimiter, rm, presigned GET
# and PUT used with curl, resume after the CLI is killed mid-upload (kill -9; the state file
# is 0600 and holds no secret; the second run sends only the missing parts), and bad inputs
# (missing file, bad URIs, unknown region, bad and unsatisfiable ranges, missing keys,
# non-empty bucket): exit status, reason, nothing half-made. No secret in the data dir, the
# daemon's log, the state file or the CLI's output.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need curl python3 cmp sha256sum
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
trap 'rc=$?; [ -n "${PUTPID:-}" ] && kill -9 $PUTPID 2>/dev/null; [ -n "${PXPID:-}" ] && kill -9 $PXPID 2>/dev/null; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
export XDG_CONFIG_HOME="$T/config"
unset SEALVM_ENDPOINT SEALVM_TOKEN SEALVM_APIKEY_FILE SEALVM_COS_INSTANCE SEALVM_COS_ENDPOINT \
	AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
S() { "$SEALVM" "$@"; }
jf() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log || { cat init.log >&2; fail "init"; }
start_daemon data daemon.log
S login --endpoint "$URL" --apikey-file owner.key >/dev/null
S resource instance create objects --service cloud-object-storage --json >inst.json
INST=$(jf inst.json 'j["guid"]')
(umask 077; S iam hmac create --instance "$INST" --json >hmac.json 2>/dev/null)
SK=$(jf hmac.json 'j["secret_access_key"]')
[ -n "$SK" ] || fail "no HMAC secret"
B=(--instance "$INST")      # bearer token + instance
H=(--hmac-file "$T/hmac.json") # HMAC keys
R=cos://us-south

# --- usage -------------------------------------------------------------------------------------
for cmd in "cos" "cos bucket"; do
	S $cmd --help | grep -q "^Usage: sealvm $cmd COMMAND" || fail "$cmd --help"
done
for cmd in "bucket create" "bucket list" "bucket show" "bucket delete" put get head ls rm presign; do
	S cos $cmd --help >help.out || fail "cos $cmd --help: exit $?"
	grep -q "^Usage: sealvm cos $cmd" help.out || fail "cos $cmd --help: $(head -1 help.out)"
done
expect_usage S cos
expect_usage S cos put only-one-arg
expect_usage S cos put f s3://us-south/b/k
grep -q BAD_URI .err || grep -q "not a cos:// URI" .err || fail "bad URI not explained: $(cat .err)"
expect_usage S cos get "$R/bkt" out.bin # no key
expect_usage S cos get "$R/bkt/k" out.bin --range 9-2
expect_usage S cos get "$R/bkt/k" out.bin --range abc
expect_usage S cos get "$R/bkt/k" out.bin --sha256 1234
expect_usage S cos put f "$R/bkt/k" --part-size 1M
expect_usage S cos put f "$R/bkt/k" --parallel 0
expect_usage S cos put f "$R/bkt/k" --meta novalue
expect_usage S cos presign "$R/bkt/k" --method DELETE
expect_usage S cos presign "$R/bkt/k" --expires 604801
expect_usage S cos bucket list --instance 'x: y'
nothing_written out.bin
pass "usage: --help everywhere; bad URIs, ranges, sizes and options are usage errors (exit 2)"

# --- buckets --------------------------------------------------------------------------------------
S cos bucket create bkt1 "${B[@]}" >out.txt || fail "bucket create: $(cat out.txt)"
grep -q "created bucket bkt1 in us-south-standard" out.txt || fail "create output: $(cat out.txt)"
S cos bucket create bkt2 "${H[@]}" --location us-south-standard --json >b2.json || fail "bucket create with HMAC"
[ "$(jf b2.json 'j["location"]')" = us-south-standard ] || fail "create --json: $(cat b2.json)"
expect_fail Bucket S cos bucket create bkt1 "${B[@]}"
grep -Eq "BucketAlreadyOwnedByYou|BucketAlreadyExists" .err || fail "duplicate: $(cat .err)"
expect_fail InvalidBucketName S cos bucket create Bad_Name "${B[@]}"
expect_fail UNKNOWN_REGION S cos bucket create bkt3 "${B[@]}" --location eu-de-standard
grep -q "us-south" .err || fail "the regions served are not named: $(cat .err)"
S cos bucket list "${B[@]}" --json >list.json
[ "$(jf list.json '",".join(sorted(b["name"] for b in j["buckets"]))')" = "bkt1,bkt2" ] || fail "bucket list: $(cat list.json)"
S cos bucket list "${B[@]}" | grep -q "^bkt1 " || fail "bucket list table"
S cos bucket show bkt1 "${H[@]}" --json >show.json
[ "$(jf show.json 'j["sse"]')" = False ] || fail "show: $(cat show.json)"
[ "$(jf show.json 'j["region"]')" = us-south ] || fail "show region: $(cat show.json)"
expect_fail NoSuchBucket S cos bucket show nosuchbucket "${B[@]}"
pass "buckets: create (bearer and HMAC, location), list, show; duplicate, bad name, unknown region refused"

# --- put / get / head: small objects -----------------------------------------------------------------
head -c 1000000 /dev/urandom >small.bin
: >empty.bin
head -c 1048576 /dev/urandom >mib.bin          # exactly one aws-chunked chunk
head -c $((3 * 1048576 + 1)) /dev/urandom >odd.bin # chunk boundary + 1
S cos put small.bin "$R/bkt1/docs/small.bin" "${B[@]}" --meta color=blue --content-type application/x-test >out.txt \
	|| fail "put (bearer): $(cat out.txt)"
S cos head "$R/bkt1/docs/small.bin" "${B[@]}" --json >head.json
python3 - head.json "$(md5sum small.bin | cut -c1-32)" <<'PY' || fail "head: $(cat head.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["size"] == 1000000 and j["etag"] == sys.argv[2], j
assert j["content_type"] == "application/x-test" and j["meta"] == {"color": "blue"}, j
PY
for f in small.bin empty.bin mib.bin odd.bin; do
	S cos put $f "$R/bkt1/sizes/" "${H[@]}" --no-progress >/dev/null || fail "put $f (HMAC, crc32c trailer)"
	S cos get "$R/bkt1/sizes/$f" got.$f "${H[@]}" >/dev/null || fail "get $f"
	same_bytes $f got.$f
	S cos put $f "$R/bkt1/bearer/" "${B[@]}" --no-progress >/dev/null || fail "put $f (bearer, crc32c trailer)"
	S cos get "$R/bkt1/bearer/$f" gotb.$f "${H[@]}" >/dev/null || fail "get $f (bearer put)"
	same_bytes $f gotb.$f
	S cos put $f "$R/bkt1/sha/$f" "${B[@]}" --sha256 >/dev/null || fail "put $f --sha256 (bearer)"
	S cos put $f "$R/bkt1/sha2/$f" "${H[@]}" --sha256 >/dev/null || fail "put $f --sha256 (HMAC)"
	S cos get "$R/bkt1/sha2/$f" got2.$f "${B[@]}" --sha256 "$(sha256sum $f | cut -c1-64)" >/dev/null || fail "get $f --sha256"
	same_bytes $f got2.$f
done
S cos get "$R/bkt1/docs/small.bin" - "${H[@]}" >stdout.bin || fail "get to stdout"
same_bytes small.bin stdout.bin
pass "put/get: bearer and HMAC, empty/1 MiB/3 MiB+1 bodies, --sha256 both ways, metadata, stdout"

# --- 100 MiB multipart ----------------------------------------------------------------------------
head -c $((100 * 1048576 + 12345)) /dev/urandom >big.bin
BIGSHA=$(sha256sum big.bin | cut -c1-64)
S cos put big.bin "$R/bkt1/big.bin" "${H[@]}" --part-size 5M --parallel 4 --sha256 --json >put.json \
	|| fail "multipart put: $(cat put.json)"
[ "$(jf put.json 'j["parts"]')" = 21 ] || fail "parts: $(cat put.json)"
jf put.json 'j["etag"]' | grep -q -- '-21$' || fail "multipart ETag: $(cat put.json)"
[ ! -e big.bin.sealvm-upload ] || fail "the state file stays after a complete upload"
S cos get "$R/bkt1/big.bin" big.out "${B[@]}" --sha256 "$BIGSHA" >/dev/null || fail "get big"
same_bytes big.bin big.out
S cos get "$R/bkt1/big.bin" range.out "${H[@]}" --range 5242870-10485779 >/dev/null || fail "ranged get"
cmp -s range.out <(tail -c +5242871 big.bin | head -c 5242910) || fail "ranged get differs"
S cos get "$R/bkt1/big.bin" tail.out "${H[@]}" --range 104857000- --json >rg.json || fail "open range"
cmp -s tail.out <(tail -c +104857001 big.bin) || fail "open range differs"
grep -q "bytes 104857000-" rg.json || fail "content range: $(cat rg.json)"
# bearer multipart (each part aws-chunked with its CRC32C trailer, as with HMAC)
head -c $((12 * 1048576)) /dev/urandom >mid.bin
S cos put mid.bin "$R/bkt1/mid.bin" "${B[@]}" --part-size 5M --multipart-threshold 5M >/dev/null || fail "bearer multipart"
S cos get "$R/bkt1/mid.bin" mid.out "${B[@]}" >/dev/null && same_bytes mid.bin mid.out
pass "multipart: 100 MiB in 21 parts of 5 MiB, 4 in flight, --sha256; full and ranged gets match"

# --- a broken download resumes where it stopped ------------------------------------------------------
# A proxy cuts the first GET's answer after 30 MiB: the CLI asks for the rest of the same object
# (Range from the byte it has, If-Match its ETag) and keeps what it has; the SHA-256 covers both.
/usr/bin/python3 "$HERE/cut_proxy.py" "$S3_PORT" $((30 * 1048576)) proxy.log >proxy.port 2>proxy.err &
PXPID=$!
for _ in $(seq 1 50); do [ -s proxy.port ] && break; sleep 0.1; done
PX="http://127.0.0.1:$(head -1 proxy.port)"
S cos get "$R/bkt1/big.bin" cut.out "${H[@]}" --s3-endpoint "$PX" --sha256 "$BIGSHA" >/dev/null ||
	fail "a cut download: $(cat proxy.log)"
same_bytes big.bin cut.out
grep -q '^GET /bkt1/big.bin HTTP/1.1 range=- ' proxy.log || fail "no first GET: $(cat proxy.log)"
grep -Eq '^GET /bkt1/big.bin HTTP/1.1 range=bytes=[1-9][0-9]*- if-match="[0-9a-f]+-21"$' proxy.log ||
	fail "the retry did not ask for the rest: $(cat proxy.log)"
[ "$(grep -c '^GET /bkt1/big.bin' proxy.log)" = 2 ] || fail "not one resumed GET: $(cat proxy.log)"
kill $PXPID 2>/dev/null; wait $PXPID 2>/dev/null || true; PXPID=
pass "a download cut after 30 MiB resumes from where it stopped (Range + If-Match), whole and verified"

# --- ls ---------------------------------------------------------------------------------------------
for k in a/1 a/2 a/b/3 b/4 c; do S cos put small.bin "$R/bkt2/$k" "${H[@]}" >/dev/null || fail "put $k"; done
S cos ls "$R/bkt2/a/" "${H[@]}" --json >ls.json
[ "$(jf ls.json '",".join(o["key"] for o in j["objects"])')" = "a/1,a/2,a/b/3" ] || fail "ls prefix: $(cat ls.json)"
S cos ls "$R/bkt2" "${B[@]}" --delimiter / --json >ls2.json
[ "$(jf ls2.json '",".join(o["key"] for o in j["objects"])')" = c ] || fail "ls delimiter objects: $(cat ls2.json)"
[ "$(jf ls2.json '",".join(j["prefixes"])')" = "a/,b/" ] || fail "ls delimiter prefixes: $(cat ls2.json)"
S cos ls "$R/bkt2/a/" "${H[@]}" --delimiter / --json >ls3.json
[ "$(jf ls3.json '",".join(j["prefixes"])')" = "a/b/" ] || fail "ls prefix+delimiter: $(cat ls3.json)"
S cos ls "$R/bkt2" "${H[@]}" | grep -q " c$" || fail "ls table"
# the S3 endpoint named directly: no endpoints table needed (any S3 service works this way)
SEALVM_ENDPOINT=http://127.0.0.1:1 S cos ls "$R/bkt2/b/" "${H[@]}" --s3-endpoint "$S3_URL" --json >ls4.json
[ "$(jf ls4.json '",".join(o["key"] for o in j["objects"])')" = "b/4" ] || fail "ls --s3-endpoint: $(cat ls4.json)"
pass "ls: prefix, delimiter, both; --s3-endpoint names the S3 service directly"

# --- presign ------------------------------------------------------------------------------------------
U=$(S cos presign "$R/bkt1/docs/small.bin" "${H[@]}" --expires 300)
curl -sf "$U" -o presigned.bin || fail "curl presigned GET"
same_bytes small.bin presigned.bin
U=$(S cos presign "$R/bkt1/docs/uploaded.bin" "${H[@]}" --method PUT)
curl -sf -T odd.bin "$U" >/dev/null || fail "curl presigned PUT"
S cos get "$R/bkt1/docs/uploaded.bin" uploaded.out "${B[@]}" >/dev/null && same_bytes odd.bin uploaded.out
expect_fail PRESIGN_NEEDS_HMAC S cos presign "$R/bkt1/docs/small.bin" "${B[@]}"
# a URL for GET does not allow PUT
st=$(curl -s -o /dev/null -w '%{http_code}' -T small.bin "$(S cos presign "$R/bkt1/docs/x" "${H[@]}")")
[ "$st" = 403 ] || fail "a GET URL used for PUT: HTTP $st"
pass "presign: GET and PUT used with curl; bearer refused; method bound"

# --- resume after kill -9 -----------------------------------------------------------------------------
S cos put big.bin "$R/bkt1/resumed.bin" "${H[@]}" --part-size 5M --parallel 2 --max-rate 20M >put1.out 2>put1.err &
PUTPID=$!
for i in $(seq 1 600); do
	[ -f big.bin.sealvm-upload ] && python3 -c 'import json,sys; sys.exit(0 if len(json.load(open("big.bin.sealvm-upload"))["parts"]) >= 3 else 1)' 2>/dev/null && break
	kill -0 $PUTPID 2>/dev/null || break
	sleep 0.05
done
kill -9 $PUTPID 2>/dev/null || fail "the upload finished before it could be interrupted"
wait $PUTPID 2>/dev/null || true
PUTPID=
[ -f big.bin.sealvm-upload ] || fail "no state file after the interruption"
[ "$(stat -c %a big.bin.sealvm-upload)" = 600 ] || fail "state file mode $(stat -c %a big.bin.sealvm-upload)"
grep -qF "$SK" big.bin.sealvm-upload && fail "the state file holds the secret"
DONE=$(jf big.bin.sealvm-upload 'len(j["parts"])')
expect_fail NoSuchKey S cos head "$R/bkt1/resumed.bin" "${H[@]}"
S cos put big.bin "$R/bkt1/resumed.bin" "${H[@]}" --part-size 5M --parallel 2 --json >put2.json || fail "resume: $(cat put2.json)"
[ "$(jf put2.json 'j["parts_resumed"]')" -ge "$DONE" ] || fail "resumed $(jf put2.json 'j["parts_resumed"]') parts, $DONE were done"
[ "$(jf put2.json 'j["parts"]')" = 21 ] || fail "resume parts: $(cat put2.json)"
[ ! -e big.bin.sealvm-upload ] || fail "the state file stays after the resumed upload"
S cos get "$R/bkt1/resumed.bin" resumed.out "${H[@]}" >/dev/null && same_bytes big.bin resumed.out
pass "resume: killed after $DONE parts; the re-run sent only the rest; the object matches"

# --- SSE-KP bucket -------------------------------------------------------------------------------------
S resource instance create keys --service kms --json >kp.json
KP=$(jf kp.json 'j["guid"]')
S kms key create root1 --instance "$KP" --json >key.json
CRN=$(jf key.json 'j["resources"][0]["crn"]')
expect_fail KMSAccessDenied S cos bucket create ssebkt "${H[@]}" --kms-key-crn "$CRN"
expect_fail NoSuchBucket S cos bucket show ssebkt "${H[@]}"
S iam authorization create --source cloud-object-storage --target kms --role Reader >/dev/null
S cos bucket create ssebkt "${B[@]}" --kms-key-crn "$CRN" --json >sse.json || fail "SSE bucket create"
S cos bucket show ssebkt "${H[@]}" --json >sshow.json
[ "$(jf sshow.json 'j["sse"]')" = True ] || fail "SSE show: $(cat sshow.json)"
grep -q "${CRN##*:}" sshow.json || fail "SSE show names no key: $(cat sshow.json)"
S cos put mid.bin "$R/ssebkt/mid.bin" "${H[@]}" --part-size 5M --multipart-threshold 5M >/dev/null || fail "SSE multipart put"
S cos get "$R/ssebkt/mid.bin" ssemid.out "${B[@]}" >/dev/null && same_bytes mid.bin ssemid.out
S cos get "$R/ssebkt/mid.bin" sserange.out "${H[@]}" --range 5242000-5243999 >/dev/null || fail "SSE ranged get"
cmp -s sserange.out <(tail -c +5242001 mid.bin | head -c 2000) || fail "SSE ranged get differs"
S cos rm "$R/ssebkt/mid.bin" "${H[@]}" >/dev/null && S cos bucket delete ssebkt "${H[@]}" >/dev/null || fail "SSE cleanup"
pass "SSE-KP: refused without the authorization (nothing made), then created, shown, multipart put, full and ranged get"

# --- bad inputs: status, reason, nothing half-made ----------------------------------------------------------
expect_fail FILE_UNREADABLE S cos put no-such-file "$R/bkt1/x" "${H[@]}"
expect_fail NoSuchKey S cos head "$R/bkt1/x" "${H[@]}"
expect_fail UNKNOWN_REGION S cos put small.bin cos://eu-de/bkt1/x "${H[@]}"
expect_fail NoSuchKey S cos get "$R/bkt1/no/such/key" miss.out "${H[@]}"
nothing_written miss.out
expect_fail InvalidRange S cos get "$R/bkt1/docs/small.bin" range2.out "${H[@]}" --range 2000000-2000010
nothing_written range2.out
expect_fail SHA256_MISMATCH S cos get "$R/bkt1/docs/small.bin" bad.out "${H[@]}" --sha256 "$BIGSHA"
nothing_written bad.out
expect_fail NoSuchBucket S cos put small.bin "$R/nosuchbucket/x" "${H[@]}"
expect_fail NoSuchBucket S cos ls "$R/nosuchbucket" "${H[@]}"
echo '{"access_key_id": "x"}' >badhmac.json
expect_fail HMAC_FILE_MALFORMED S cos ls "$R/bkt1" --hmac-file badhmac.json
python3 -c 'import json; j=json.load(open("hmac.json")); j["secret_access_key"]="0"*48; json.dump(j, open("wrong.json","w"))'
expect_fail SignatureDoesNotMatch S cos ls "$R/bkt1" --hmac-file wrong.json
expect_fail OUTPUT_EXISTS S cos get "$R/bkt1/docs/small.bin" got.small.bin "${H[@]}"
S cos get "$R/bkt1/docs/small.bin" got.small.bin "${H[@]}" --force >/dev/null || fail "--force"
S cos ls "$R/bkt1/x" "${H[@]}" --json >lsx.json
[ "$(jf lsx.json 'len(j["objects"])')" = 0 ] || fail "a failed put left an object: $(cat lsx.json)"
expect_fail BucketNotEmpty S cos bucket delete bkt2 "${H[@]}"
for k in a/1 a/2 a/b/3 b/4 c; do S cos rm "$R/bkt2/$k" "${H[@]}" >/dev/null || fail "rm $k"; done
expect_fail NoSuchKey S cos head "$R/bkt2/c" "${H[@]}"
S cos bucket delete bkt2 "${B[@]}" >/dev/null || fail "delete the emptied bucket"
expect_fail NoSuchBucket S cos bucket show bkt2 "${B[@]}"
pass "bad inputs: missing file, unknown region, missing key/bucket, bad range, wrong sha256, bad HMAC files: exit 1 with the reason, no output file, no object"

# --- secrets -------------------------------------------------------------------------------------------
TOKV=$(jf config/sealvm/login.json 'j["token"]')
for f in put1.out put1.err put.json put2.json out.txt; do
	[ -f "$f" ] || continue
	grep -qF "$SK" "$f" && fail "the HMAC secret is in $f"
done
grep -rqF "$SK" data daemon.log && fail "the HMAC secret is in clear in the data dir or the log"
grep -qF "${TOKV:0:40}" daemon.log && fail "a token is in the daemon's log"
stop_daemon
pass "no HMAC secret or token in the data dir, the log, the state file or the CLI's output"
