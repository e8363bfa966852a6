#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The object store's S3 listener driven by clients we did not write, against a real sealvmd:
#   - both aws clis — `aws` on PATH (1.45) and Debian's /usr/bin/aws (2.9; that half skipped
#     with a message when absent): bucket with a LocationConstraint, multipart upload of a
#     100 MiB file in 8 MiB parts (AWS_CONFIG_FILE in the temp dir), list with prefix and
#     delimiter, ranged and full download compared byte for byte, presigned GET with curl,
#     BucketNotEmpty, delete-objects, delete;
#   - boto3 (Debian's, /usr/bin/python3, signature_version s3v4; cos_peer.py) the same and more
#     (metadata, odd keys, paging, v1 marker, copy, 416);
#   - the same against an SSE-KP bucket (a KMS instance, a root key and the authorization
#     cloud-object-storage → kms Reader; without it the create fails with KMSAccessDenied),
#     and the files under the data dir never hold the plaintext (the same scan finds it for a
#     plain bucket, so it can fail);
#   - audit events (object writes and reads as data events, hmac initiator) and no HMAC
#     secret in the data dir, the log or the events.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need curl python3 aws
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
/usr/bin/python3 -c 'import boto3' 2>/dev/null || skip "needs Debian's python3-boto3 (/usr/bin/python3)"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
PEER() { /usr/bin/python3 "$HERE/cos_peer.py" "$S3_URL" "$AK" "$T/sk.txt" "$@"; }
jf() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log || { cat init.log >&2; fail "init"; }
start_daemon data daemon.log
TOK=$(token owner.key)
[ "$(api POST /v2/resource_instances '{"name":"cos","target":"us-south","resource_id":"cloud-object-storage"}')" = 201 ] || fail "cos instance: $(cat .body)"
COS=$(jget 'j["guid"]')
ACCT=$(jget 'j["account_id"]')
[ "$(api POST /v2/resource_keys "{\"name\":\"s3\",\"source\":\"$COS\",\"parameters\":{\"HMAC\":true}}")" = 201 ] || fail "hmac key: $(cat .body)"
AK=$(jget 'j["credentials"]["cos_hmac_keys"]["access_key_id"]')
(umask 077; jget 'j["credentials"]["cos_hmac_keys"]["secret_access_key"]' | tr -d '\n' >sk.txt)
SK=$(cat sk.txt)

# the aws clis' configuration, in the temp dir only
export AWS_CONFIG_FILE="$T/aws.cfg" AWS_SHARED_CREDENTIALS_FILE="$T/aws.creds"
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$AK" "$SK" >aws.creds
printf '[default]\nregion = us-south\n' >aws.cfg
aws configure set default.s3.multipart_chunksize 8MB
aws configure set default.s3.multipart_threshold 8MB
aws configure set default.s3.addressing_style path
aws configure set default.s3.signature_version s3v4
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_DEFAULT_REGION
head -c $((100 * 1024 * 1024)) /dev/urandom >big.bin
printf 'a small object\n' >small.txt
pass "setup: instance, HMAC key, aws config (8 MiB parts), a 100 MiB file"

# awsflow AWS BUCKET EXISTS — one aws cli end to end; EXISTS=1: the bucket was made already.
awsflow() {
	local AWS=$1 b=$2 exists=$3
	local A=("$AWS" --endpoint-url "$S3_URL")
	if [ "$exists" = 0 ]; then
		"${A[@]}" s3api create-bucket --bucket "$b" \
			--create-bucket-configuration LocationConstraint=us-south-standard >/dev/null 2>err.txt ||
			{ cat err.txt >&2; fail "$AWS: create-bucket"; }
	fi
	"${A[@]}" s3api head-bucket --bucket "$b" >/dev/null 2>err.txt || { cat err.txt >&2; fail "$AWS: head-bucket"; }
	"${A[@]}" s3api get-bucket-location --bucket "$b" >loc.json || fail "$AWS: location"
	[ "$(jf loc.json 'j["LocationConstraint"]')" = us-south-standard ] || fail "$AWS: location $(cat loc.json)"
	"${A[@]}" s3 cp --only-show-errors big.bin "s3://$b/dir/big.bin" 2>err.txt || { cat err.txt >&2; fail "$AWS: multipart cp"; }
	"${A[@]}" s3api head-object --bucket "$b" --key dir/big.bin >ho.json || fail "$AWS: head-object"
	[ "$(jf ho.json 'j["ContentLength"]')" = $((100 * 1024 * 1024)) ] || fail "$AWS: size $(cat ho.json)"
	jf ho.json 'j["ETag"]' | grep -q -- '-13"$' || fail "$AWS: not 13 parts of 8 MiB: $(cat ho.json)"
	"${A[@]}" s3 cp --only-show-errors small.txt "s3://$b/dir/sub/small.txt" || fail "$AWS: small cp"
	"${A[@]}" s3 cp --only-show-errors small.txt "s3://$b/top.txt" || fail "$AWS: small cp 2"
	"${A[@]}" s3api list-objects-v2 --bucket "$b" --prefix dir/ --delimiter / >l.json || fail "$AWS: list"
	[ "$(jf l.json '[o["Key"] for o in j["Contents"]]')" = "['dir/big.bin']" ] || fail "$AWS: list contents $(cat l.json)"
	[ "$(jf l.json '[p["Prefix"] for p in j["CommonPrefixes"]]')" = "['dir/sub/']" ] || fail "$AWS: list prefixes $(cat l.json)"
	"${A[@]}" s3api get-object --bucket "$b" --key dir/big.bin --range bytes=1048576-3145738 part.out >go.json ||
		fail "$AWS: ranged get"
	dd if=big.bin of=part.want bs=1M iflag=skip_bytes,count_bytes skip=1048576 count=2097163 status=none
	same_bytes part.out part.want
	[ "$(jf go.json 'j["ContentRange"]')" = "bytes 1048576-3145738/104857600" ] || fail "$AWS: Content-Range $(cat go.json)"
	"${A[@]}" s3 cp --only-show-errors "s3://$b/dir/big.bin" got.bin || fail "$AWS: download"
	same_bytes got.bin big.bin
	rm -f got.bin part.out part.want
	local url
	url=$("${A[@]}" s3 presign "s3://$b/dir/sub/small.txt" --expires-in 300)
	case "$url" in *X-Amz-Signature=*) ;; *) fail "$AWS: presign is not SigV4: $url" ;; esac
	curl -sf --path-as-is -o pre.out "$url" || fail "$AWS: presigned GET with curl"
	same_bytes pre.out small.txt
	local rc=0
	"${A[@]}" s3api delete-bucket --bucket "$b" 2>err.txt || rc=$?
	[ $rc -ne 0 ] && grep -q BucketNotEmpty err.txt || fail "$AWS: delete of a non-empty bucket: $(cat err.txt)"
	"${A[@]}" s3api delete-objects --bucket "$b" --delete 'Objects=[{Key=top.txt},{Key=dir/sub/small.txt}]' >del.json ||
		fail "$AWS: delete-objects"
	[ "$(jf del.json 'sorted(d["Key"] for d in j["Deleted"])')" = "['dir/sub/small.txt', 'top.txt']" ] || fail "$AWS: delete-objects: $(cat del.json)"
	rc=0
	"${A[@]}" s3api head-object --bucket "$b" --key top.txt >/dev/null 2>&1 || rc=$?
	[ $rc -ne 0 ] || fail "$AWS: delete-objects left top.txt"
	"${A[@]}" s3 rm --only-show-errors --recursive "s3://$b" || fail "$AWS: rm"
	"${A[@]}" s3api delete-bucket --bucket "$b" || fail "$AWS: delete-bucket"
	rc=0
	"${A[@]}" s3api head-bucket --bucket "$b" 2>err.txt || rc=$?
	[ $rc -ne 0 ] || fail "$AWS: the bucket is still there"
}

awsflow aws cli-plain 0
pass "aws $(aws --version 2>&1 | cut -d' ' -f1): bucket with location, 100 MiB multipart (13 parts), list prefix/delimiter, ranged and full GET byte for byte, presign + curl, BucketNotEmpty, delete-objects, delete"
if [ -x /usr/bin/aws ] && /usr/bin/aws --version >/dev/null 2>&1; then
	awsflow /usr/bin/aws deb-plain 0
	pass "/usr/bin/aws $(/usr/bin/aws --version 2>&1 | cut -d' ' -f1): the same"
else
	echo "# SKIP half: Debian's aws cli (/usr/bin/aws) is not installed"
fi
PEER flow boto3-plain big.bin || fail "boto3 flow"
pass "boto3: the same and more"

# --- the plaintext scan: it finds the data of a plain bucket ---------------------------------
cat >scan.py <<'PY'
"""scan.py DATA_DIR FILE — prints how many of 8 samples of FILE occur in files under DATA_DIR."""
import os, sys
data, src = sys.argv[1:]
size = os.path.getsize(src)
samples = []
with open(src, "rb") as f:
    for i in range(8):
        f.seek((size // 8) * i + 4099)
        samples.append(f.read(48))
found = set()
for root, _, files in os.walk(data):
    for n in files:
        p = os.path.join(root, n)
        with open(p, "rb") as f:
            prev = b""
            while True:
                b = f.read(1 << 22)
                if not b:
                    break
                buf = prev + b
                for i, s in enumerate(samples):
                    if s in buf:
                        found.add(i)
                prev = buf[-64:]
print(len(found))
PY
PLAIN=(--endpoint-url "$S3_URL")
aws "${PLAIN[@]}" s3api create-bucket --bucket scan-plain >/dev/null || fail "scan bucket"
aws "${PLAIN[@]}" s3 cp --only-show-errors big.bin s3://scan-plain/big.bin || fail "scan upload"
[ "$(python3 scan.py data big.bin)" = 8 ] || fail "the scan does not find a plain object's data"
aws "${PLAIN[@]}" s3 rm --only-show-errors s3://scan-plain/big.bin
aws "${PLAIN[@]}" s3api delete-bucket --bucket scan-plain
[ "$(python3 scan.py data big.bin)" = 0 ] || fail "deleted objects left their data behind"
pass "the plaintext scan finds a plain object's bytes, and none once it is deleted"

# --- SSE-KP -----------------------------------------------------------------------------------
[ "$(api POST /v2/resource_instances '{"name":"kp","target":"us-south","resource_id":"kms"}')" = 201 ] || fail "kms instance"
KP=$(jget 'j["guid"]')
curl -s -o .body -w '%{http_code}' -X POST "$URL/api/v2/keys" -H "Authorization: Bearer $TOK" \
	-H "bluemix-instance: $KP" -H 'Content-Type: application/vnd.ibm.kms.key+json' \
	--data '{"metadata":{"collectionType":"application/vnd.ibm.kms.key+json","collectionTotal":1},"resources":[{"type":"application/vnd.ibm.kms.key+json","name":"cos-root","extractable":false}]}' >st.txt
[ "$(cat st.txt)" = 201 ] || fail "root key: $(cat .body)"
CRK=$(jget 'j["resources"][0]["crn"]')
CRK_ID=$(jget 'j["resources"][0]["id"]')
rc=$(PEER raw PUT /sse-denied --header "ibm-sse-kp-encryption-algorithm:AES256" --header "ibm-sse-kp-customer-root-key-crn:$CRK")
[ "$rc" = "403 KMSAccessDenied" ] || fail "SSE bucket without the authorization: $rc"
[ "$(PEER raw HEAD /sse-denied)" = "404 -" ] || fail "a refused SSE bucket exists"
[ "$(api POST /v1/policies "{\"type\":\"authorization\",\"subjects\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$ACCT\"},{\"name\":\"serviceName\",\"value\":\"cloud-object-storage\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::serviceRole:Reader\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$ACCT\"},{\"name\":\"serviceName\",\"value\":\"kms\"}]}]}")" = 201 ] ||
	fail "authorization: $(cat .body)"
pass "SSE-KP refused with KMSAccessDenied before the authorization cloud-object-storage → kms"

rc=$(PEER raw PUT /cli-sse --header "ibm-sse-kp-encryption-algorithm:AES256" --header "ibm-sse-kp-customer-root-key-crn:$CRK")
[ "$rc" = "200 -" ] || fail "SSE bucket: $rc"
awsflow aws cli-sse 1
pass "aws against an SSE-KP bucket: the same flow"
PEER flow boto3-sse big.bin "$CRK" || fail "boto3 SSE flow"
pass "boto3 against an SSE-KP bucket (HEAD says ibm-sse-kp-enabled and the key)"
rc=$(PEER raw PUT /keep-sse --header "ibm-sse-kp-encryption-algorithm:AES256" --header "ibm-sse-kp-customer-root-key-crn:$CRK")
[ "$rc" = "200 -" ] || fail "SSE bucket 2: $rc"
aws "${PLAIN[@]}" s3 cp --only-show-errors big.bin s3://keep-sse/big.bin || fail "SSE upload"
aws "${PLAIN[@]}" s3api put-object --bucket keep-sse --key small.txt --body big.bin >/dev/null || fail "SSE single PUT"
aws "${PLAIN[@]}" s3 cp --only-show-errors s3://keep-sse/small.txt got.bin && same_bytes got.bin big.bin
[ "$(python3 scan.py data big.bin)" = 0 ] || fail "the data dir holds plaintext of an SSE object"
pass "SSE objects (multipart and single PUT) read back; the data dir never holds their plaintext"
st=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/api/v2/keys/$CRK_ID/actions/disable" \
	-H "Authorization: Bearer $TOK" -H "bluemix-instance: $KP")
[ "$st" = 204 ] || fail "disable the root key: $st"
got=$(PEER raw GET /keep-sse/small.txt); [ "$got" = "403 KMSKeyDisabled" ] || fail "GET under a disabled root key: $got"
got=$(PEER raw PUT /keep-sse/new.txt --body small.txt); [ "$got" = "403 KMSKeyDisabled" ] || fail "PUT under a disabled root key: $got"
[ "$(PEER raw HEAD /keep-sse/new.txt)" = "404 -" ] || fail "a PUT under a disabled key made an object"
aws "${PLAIN[@]}" s3 cp --only-show-errors small.txt s3://keep-sse/plainok.txt 2>err.txt && fail "aws PUT under a disabled key"
grep -q KMSKeyDisabled err.txt || fail "aws does not see KMSKeyDisabled: $(cat err.txt)"
pass "a disabled root key: GET and PUT refused with 403 KMSKeyDisabled, nothing written"

# --- audit and secrets ------------------------------------------------------------------------
for act in object.write object.read multipart.complete bucket.create bucket.delete; do
	[ "$(api GET "/v1/events?limit=1000&action=cloud-object-storage.$act")" = 200 ] || fail "events $act"
	python3 - "$T/.body" "$act" "$AK" <<'PY' || fail "events of $act: $(head -c 600 .body)"
import json, sys
j = json.load(open(sys.argv[1])); act = sys.argv[2]
ev = [e for e in j["events"] if e["outcome"] == "success"]
assert ev, "no success event"
for e in ev:
    assert e["initiator"]["credential"]["type"] == "hmac", e["initiator"]
    assert e["initiator"]["host"]["address"] == "127.0.0.1"
    assert e["target"]["id"].startswith("crn:"), e["target"]
    assert e["correlationId"], e
    assert e["dataEvent"] == (act.startswith("object.") or act == "multipart.complete"), e
PY
done
grep -rqF "$SK" data daemon.log && fail "the HMAC secret is in the data dir or the log"
api GET "/v1/events?limit=1000" >/dev/null
grep -qF "$SK" .body && fail "the HMAC secret is in the audit trail"
grep -q "s3 access id=" daemon.log || fail "no S3 access log lines"
grep "s3 access" daemon.log | grep -q "X-Amz-Signature" && fail "a presigned signature reached the access log"
pass "audit: writes/reads as data events with the hmac initiator; no secret in data, log or events"
stop_daemon
