#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The S3 listener's refusals against a real sealvmd, each with S3's error code and HTTP
# status, and nothing changed: a wrong signature, an expired presigned URL, a clock 20 minutes
# off (botocore with a patched clock, both ways), an anonymous request (refused before any body
# byte: no 100 Continue, nothing uploaded), a missing bucket and key (HEAD without a body), a
# bad range (416 with Content-Range), a bad or malformed Content-MD5, a bad x-amz-checksum-crc32,
# a payload that does not match x-amz-content-sha256, aws-chunked bodies (signed chunks, one
# changed after signing; an unsigned body with a right or wrong CRC32 trailer, the right one
# kept and returned with x-amz-checksum-mode), a part too small at complete, an unknown
# upload id (part, list, complete, abort), HMAC keys of another instance and of another account
# (planted in the database: no API makes a second account), bearer tokens (the owner's
# works with ibm-service-instance-id; a service ID without a policy is refused), and deleting
# an instance that still has buckets (refused; an empty one goes with its HMAC keys).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need curl python3
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
/usr/bin/python3 -c 'import boto3' 2>/dev/null || skip "needs Debian's python3-boto3 (/usr/bin/python3)"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
# P KEYNAME args... — cos_peer.py with the HMAC key saved as KEYNAME.ak / KEYNAME.sk
P() { local k=$1; shift; /usr/bin/python3 "$HERE/cos_peer.py" "$S3_URL" "$(cat "$T/$k.ak")" "$T/$k.sk" "$@"; }
# expect "STATUS CODE" WHAT -- the output of the last P call in $got
expect() { [ "$got" = "$1" ] || fail "$2: expected '$1', got '$got'"; }

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log || { cat init.log >&2; fail "init"; }
start_daemon data daemon.log
TOK=$(token owner.key)
mkinst() { # NAME -> guid in .body
	[ "$(api POST /v2/resource_instances "{\"name\":\"$1\",\"target\":\"us-south\",\"resource_id\":\"cloud-object-storage\"}")" = 201 ] || fail "instance $1: $(cat .body)"
	jget 'j["guid"]'
}
mkkey() { # NAME INSTANCE
	[ "$(api POST /v2/resource_keys "{\"name\":\"$1\",\"source\":\"$2\",\"parameters\":{\"HMAC\":true}}")" = 201 ] || fail "key $1: $(cat .body)"
	jget 'j["credentials"]["cos_hmac_keys"]["access_key_id"]' | tr -d '\n' >"$1.ak"
	(umask 077; jget 'j["credentials"]["cos_hmac_keys"]["secret_access_key"]' | tr -d '\n' >"$1.sk")
	jget 'j["guid"]' | tr -d '\n' >"$1.guid"
}
I1=$(mkinst one); mkkey k1 "$I1"
I2=$(mkinst two); mkkey k2 "$I2"
I3=$(mkinst three); mkkey k3 "$I3"
ACCT=$(python3 -c "import json; print(json.load(open('$T/.body'))['account_id'])")
cp k1.ak bad.ak; printf '%s' "$(cat k1.sk | tr '0-9a-f' '1-9a-f0')" >bad.sk
head -c 65536 /dev/urandom >obj.bin
printf '0123456789' >ten.bin
got=$(P k1 raw PUT /bkt1); expect "200 -" "create bkt1"
got=$(P k1 raw PUT /bkt1/ten --body ten.bin); expect "200 -" "put ten"
got=$(P k1 raw PUT /bkt1/obj --body obj.bin); expect "200 -" "put obj"
# objects NAME... exist, byte for byte; gone NAME... do not
objects() { for o in "$@"; do got=$(P k1 raw GET "/bkt1/$o" --out got.bin); expect "200 -" "GET $o"; done; }
gone() { for o in "$@"; do got=$(P k1 raw HEAD "/bkt1/$o"); expect "404 -" "HEAD $o (should not exist)"; done; }
pass "setup: three instances with an HMAC key each, bucket bkt1 with two objects"

# --- signatures and clocks -------------------------------------------------------------------
got=$(P bad raw GET /bkt1/ten); expect "403 SignatureDoesNotMatch" "wrong secret"
got=$(P bad raw PUT /bkt1/new --body obj.bin); expect "403 SignatureDoesNotMatch" "wrong secret PUT"
gone new
printf 'nope' >k0.sk; printf 'AKIDNOTAKEY0000000000000000000000' >k0.ak
got=$(P k0 raw GET /bkt1/ten); expect "403 InvalidAccessKeyId" "unknown access key"
got=$(P k1 raw GET /bkt1/ten --skew 1200); expect "403 RequestTimeTooSkewed" "clock 20 min ahead"
got=$(P k1 raw PUT /bkt1/skew --skew -1200 --body obj.bin); expect "403 RequestTimeTooSkewed" "clock 20 min behind"
gone skew
got=$(P k1 raw GET /bkt1/ten --skew 600); expect "200 -" "clock 10 min off is within the window"
url=$(P k1 presign GET bkt1 ten 60 -3600)
st=$(curl -s -o err.xml -w '%{http_code}' --path-as-is "$url")
[ "$st" = 403 ] && grep -q '<Code>AccessDenied</Code>' err.xml || fail "expired presigned URL: $st $(cat err.xml)"
url=$(P k1 presign GET bkt1 ten 300)
[ "$(curl -s --path-as-is "$url")" = 0123456789 ] || fail "a valid presigned URL"
last=${url: -1}; [ "$last" = 0 ] && flip=1 || flip=0
st=$(curl -s -o err.xml -w '%{http_code}' --path-as-is "${url%?}$flip")
[ "$st" = 403 ] && grep -q SignatureDoesNotMatch err.xml || fail "a changed presigned signature: $st"
pass "wrong secret, unknown key, clock ±20 min (10 min passes), expired and altered presigned URLs"

# --- anonymous, and no body before the decision -------------------------------------------------
head -c $((8 * 1024 * 1024)) /dev/urandom >eight.bin
out=$(curl -s -o err.xml -w '%{http_code} %{size_upload}' -T eight.bin -H 'Expect: 100-continue' "$S3_URL/bkt1/anon")
[ "$out" = "403 0" ] && grep -q '<Code>AccessDenied</Code>' err.xml || fail "anonymous PUT: $out $(cat err.xml)"
grep -q '<RequestId>' err.xml || fail "no RequestId in the error"
url=$(P bad presign PUT bkt1 badpre 300)
out=$(curl -s -o err.xml -w '%{http_code} %{size_upload}' -T eight.bin -H 'Expect: 100-continue' --path-as-is "$url")
[ "$out" = "403 0" ] && grep -q SignatureDoesNotMatch err.xml || fail "badly signed presigned PUT: $out"
gone anon badpre
out=$(curl -s -D hdr.txt -o /dev/null -w '%{http_code}' "$S3_URL/")
[ "$out" = 403 ] && grep -qi '^x-amz-request-id: ' hdr.txt || fail "anonymous list: $out"
url=$(P k1 presign PUT bkt1 goodpre 300)
out=$(curl -s -o /dev/null -w '%{http_code} %{size_upload}' -T eight.bin -H 'Expect: 100-continue' --path-as-is "$url")
[ "$out" = "200 8388608" ] || fail "presigned PUT: $out"
P k1 raw GET /bkt1/goodpre --out got.bin >/dev/null; same_bytes got.bin eight.bin
url=$(P k1 presign PUT bkt1 aborted 300)
curl -s -o /dev/null --limit-rate 1M --max-time 1 -T eight.bin --path-as-is "$url" && fail "a PUT at 1 MiB/s finished in 1 s"
gone aborted
seen=0
for i in $(seq 1 50); do
	api GET "/v1/events?limit=1000&outcome=failure&action=cloud-object-storage.object.write" >/dev/null
	grep -q "ended before it was complete" .body && { seen=1; break; }
	sleep 0.1
done
[ $seen = 1 ] || fail "no failure event for a PUT the client abandoned: $(head -c 600 .body)"
pass "anonymous and badly signed PUTs refused before the body (no 100 Continue, 0 bytes sent); a good presigned PUT; an abandoned PUT leaves nothing but its failure event"

# --- missing things, ranges ---------------------------------------------------------------------
got=$(P k1 raw GET /nobucket/x); expect "404 NoSuchBucket" "missing bucket"
got=$(P k1 raw GET /bkt1/nokey); expect "404 NoSuchKey" "missing key"
got=$(P k1 raw HEAD /bkt1/nokey); expect "404 -" "HEAD missing key (no body)"
got=$(P k1 raw DELETE /nobucket); expect "404 NoSuchBucket" "delete missing bucket"
got=$(P k1 raw GET /bkt1/ten --header "Range:bytes=10-"); expect "416 InvalidRange" "range past the end"
got=$(P k1 raw GET /bkt1/ten --header "Range:bytes=-0"); expect "416 InvalidRange" "empty suffix range"
got=$(P k1 raw GET /bkt1/ten --header "Range:bytes=2-4" --out got.bin); expect "206 -" "range"
[ "$(cat got.bin)" = 234 ] || fail "range bytes: $(cat got.bin)"
got=$(P k1 raw GET /bkt1/ten --header "Range:bytes=0-1,4-5" --out got.bin); expect "200 -" "multi-range is ignored"
same_bytes got.bin ten.bin
url=$(P k1 presign GET bkt1 ten 300)
curl -s -D hdr.txt -o /dev/null -H 'Range: bytes=20-30' --path-as-is "$url"
grep -qi '^content-range: bytes \*/10' hdr.txt || fail "416 without Content-Range: $(cat hdr.txt)"
got=$(P k1 raw PUT /BadName); expect "400 InvalidBucketName" "bad bucket name"
got=$(P k1 raw PUT /bkt2 --body ten.bin); expect "400 MalformedXML" "bad CreateBucketConfiguration"
printf '<CreateBucketConfiguration><LocationConstraint>eu-de-standard</LocationConstraint></CreateBucketConfiguration>' >loc.xml
got=$(P k1 raw PUT /bkt2 --body loc.xml); expect "400 InvalidLocationConstraint" "another region"
got=$(P k1 raw HEAD /bkt2); expect "404 -" "a refused bucket exists"
pass "NoSuchBucket, NoSuchKey (HEAD bodiless), 416 with Content-Range, multi-range ignored, bad names and locations"

# --- integrity ------------------------------------------------------------------------------------
md5_of() { openssl dgst -md5 -binary "$1" | base64; }
got=$(P k1 raw PUT /bkt1/ten --body obj.bin --header "Content-MD5:$(md5_of ten.bin)"); expect "400 BadDigest" "bad Content-MD5"
got=$(P k1 raw PUT /bkt1/md5new --body obj.bin --header "Content-MD5:$(md5_of ten.bin)"); expect "400 BadDigest" "bad Content-MD5, new key"
got=$(P k1 raw PUT /bkt1/md5new --body obj.bin --header "Content-MD5:notbase64"); expect "400 InvalidDigest" "malformed Content-MD5"
got=$(P k1 raw PUT /bkt1/md5new --body obj.bin --header "x-amz-checksum-crc32:AAAAAA=="); expect "400 BadDigest" "bad crc32"
got=$(P k1 raw PUT /bkt1/md5new --body ten.bin --send-body obj.bin)
expect "400 XAmzContentSHA256Mismatch" "payload hash mismatch"
got=$(P k1 raw PUT /bkt1/md5new --body obj.bin --header "Content-MD5:$(md5_of obj.bin)"); expect "200 -" "good Content-MD5"
P k1 raw GET /bkt1/ten --out got.bin >/dev/null; same_bytes got.bin ten.bin
got=$(P k1 raw PUT /bkt1/chunks --body obj.bin --bad-chunk); expect "403 SignatureDoesNotMatch" "aws-chunked, a changed chunk"
gone chunks
got=$(P k1 raw PUT /bkt1/chunks --body obj.bin --signed-chunks); expect "200 -" "aws-chunked, signed chunks"
P k1 raw GET /bkt1/chunks --out got.bin >/dev/null; same_bytes got.bin obj.bin
got=$(P k1 raw PUT /bkt1/trailer --body obj.bin --bad-trailer-crc32); expect "400 BadDigest" "aws-chunked, a wrong trailer CRC32"
gone trailer
got=$(P k1 raw PUT /bkt1/trailer --body obj.bin --trailer-crc32 --show-header x-amz-checksum-crc32)
want=$(python3 -c "import base64,sys,zlib; print(base64.b64encode(zlib.crc32(open('obj.bin','rb').read()).to_bytes(4,'big')).decode())")
expect "200 - $want" "aws-chunked with a trailer CRC32"
got=$(P k1 raw GET /bkt1/trailer --out got.bin --header "x-amz-checksum-mode:ENABLED" --show-header x-amz-checksum-crc32)
expect "200 - $want" "the trailer's checksum kept"
same_bytes got.bin obj.bin
[ "$(find data/cos -path '*tmp*' -type f | wc -l)" = 0 ] || fail "temporary files left by refused bodies"
pass "BadDigest (Content-MD5, crc32 header and trailer), InvalidDigest, XAmzContentSHA256Mismatch: the old object stays, no temp files; signed chunks; a trailer checksum kept"

# --- multipart ---------------------------------------------------------------------------------------
got=$(P k1 raw POST "/bkt1/mp?uploads" --out init.xml); expect "200 -" "initiate"
UID_=$(sed -n 's/.*<UploadId>\([^<]*\)<.*/\1/p' init.xml)
[ -n "$UID_" ] || fail "no upload id: $(cat init.xml)"
head -c $((1024 * 1024)) /dev/urandom >p1.bin
head -c $((1024 * 1024)) /dev/urandom >p2.bin
got=$(P k1 raw PUT "/bkt1/mp?partNumber=1&uploadId=$UID_" --body p1.bin); expect "200 -" "part 1"
got=$(P k1 raw PUT "/bkt1/mp?partNumber=2&uploadId=$UID_" --body p2.bin); expect "200 -" "part 2"
e1=$(openssl dgst -md5 -r p1.bin | cut -d' ' -f1); e2=$(openssl dgst -md5 -r p2.bin | cut -d' ' -f1)
printf '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"%s"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>"%s"</ETag></Part></CompleteMultipartUpload>' "$e1" "$e2" >done.xml
got=$(P k1 raw POST "/bkt1/mp?uploadId=$UID_" --body done.xml); expect "400 EntityTooSmall" "a 1 MiB part that is not the last"
gone mp
printf '<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>"%s"</ETag></Part><Part><PartNumber>1</PartNumber><ETag>"%s"</ETag></Part></CompleteMultipartUpload>' "$e2" "$e1" >order.xml
got=$(P k1 raw POST "/bkt1/mp?uploadId=$UID_" --body order.xml); expect "400 InvalidPartOrder" "parts out of order"
printf '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"%s"</ETag></Part></CompleteMultipartUpload>' "$e2" >wrong.xml
got=$(P k1 raw POST "/bkt1/mp?uploadId=$UID_" --body wrong.xml); expect "400 InvalidPart" "a wrong ETag"
printf '<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>' >bad.xml
got=$(P k1 raw POST "/bkt1/mp?uploadId=$UID_" --body bad.xml); expect "400 MalformedXML" "a cut part list"
gone mp
got=$(P k1 raw GET "/bkt1/mp?uploadId=$UID_" --out parts.xml); expect "200 -" "ListParts"
[ "$(grep -o '<PartNumber>' parts.xml | wc -l)" = 2 ] || fail "ListParts: $(cat parts.xml)"
NOUP=0123456789abcdef0123456789abcdef
got=$(P k1 raw PUT "/bkt1/mp?partNumber=3&uploadId=$NOUP" --body p1.bin); expect "404 NoSuchUpload" "part of an unknown upload"
got=$(P k1 raw GET "/bkt1/mp?uploadId=$NOUP"); expect "404 NoSuchUpload" "ListParts of an unknown upload"
got=$(P k1 raw POST "/bkt1/mp?uploadId=$NOUP" --body done.xml); expect "404 NoSuchUpload" "complete an unknown upload"
got=$(P k1 raw DELETE "/bkt1/mp?uploadId=$NOUP"); expect "404 NoSuchUpload" "abort an unknown upload"
got=$(P k1 raw PUT "/bkt1/other?partNumber=1&uploadId=$UID_" --body p1.bin); expect "404 NoSuchUpload" "an upload of another key"
got=$(P k1 raw PUT "/bkt1/mp?partNumber=0&uploadId=$UID_" --body p1.bin); expect "400 InvalidArgument" "part number 0"
got=$(P k1 raw PUT "/bkt1/mp?partNumber=10001&uploadId=$UID_" --body p1.bin); expect "400 InvalidArgument" "part number 10001"
got=$(P k1 raw DELETE "/bkt1/mp?uploadId=$UID_"); expect "204 -" "abort"
got=$(P k1 raw GET "/bkt1/mp?uploadId=$UID_"); expect "404 NoSuchUpload" "an aborted upload"
gone mp
# DeleteObjects: the body's MD5 is required and checked; a malformed list deletes nothing
printf '<Delete><Object><Key>ten</Key></Object><Object><Key>nokey</Key></Object></Delete>' >del.xml
printf '<Delete><Object><Key>ten</Key></Object>' >delbad.xml
got=$(P k1 raw POST "/bkt1?delete" --body del.xml); expect "400 InvalidRequest" "DeleteObjects without Content-MD5"
got=$(P k1 raw POST "/bkt1?delete" --body del.xml --header "Content-MD5:$(md5_of ten.bin)"); expect "400 BadDigest" "DeleteObjects, a wrong MD5"
got=$(P k1 raw POST "/bkt1?delete" --body delbad.xml --header "Content-MD5:$(md5_of delbad.xml)"); expect "400 MalformedXML" "DeleteObjects, a cut list"
got=$(P k2 raw POST "/bkt1?delete" --body del.xml --header "Content-MD5:$(md5_of del.xml)"); expect "403 AccessDenied" "DeleteObjects by another instance's key"
objects ten
pass "EntityTooSmall, InvalidPartOrder, InvalidPart, MalformedXML, NoSuchUpload (part, list, complete, abort, other key), part numbers; DeleteObjects refusals"

# --- instances, accounts, tokens ---------------------------------------------------------------------
got=$(P k2 raw GET /bkt1/ten); expect "403 AccessDenied" "another instance's key reads"
got=$(P k2 raw PUT /bkt1/x2 --body ten.bin); expect "403 AccessDenied" "another instance's key writes"
got=$(P k2 raw DELETE /bkt1/ten); expect "403 AccessDenied" "another instance's key deletes"
got=$(P k2 raw GET / --out l2.xml); expect "200 -" "another instance lists"
grep -q '<Name>bkt1</Name>' l2.xml && fail "another instance's listing shows bkt1"
gone x2; objects ten
stop_daemon
# account B: a copy of the owner's account and user, and instance three with its HMAC key moved
# into it (the sealed secret binds only the access key id, so the key still verifies).
B=$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
python3 - data/sealvm.db "$ACCT" "$B" "$I3" "$(cat k3.guid)" <<'PY' || fail "planting account B"
import sqlite3, sys, uuid
db, a, b, i3, k3 = sys.argv[1:]
c = sqlite3.connect(db)
owner = c.execute("SELECT owner_iam_id FROM iam_accounts WHERE id = ?", (a,)).fetchone()[0]
ub = "IBMid-" + uuid.uuid4().hex[:10].upper()
def clone(table, key, value, subs):
    cur = c.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,))
    cols = [d[0] for d in cur.description]
    row = []
    for v in cur.fetchone():
        if isinstance(v, str):
            for o, n in subs:
                v = v.replace(o, n)
        row.append(v)
    c.execute(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", row)
clone("iam_accounts", "id", a, [(a, b), (owner, ub)])
clone("iam_users", "iam_id", owner, [(a, b), (owner, ub)])
c.execute("UPDATE rc_instances SET account_id = ?, crn = replace(crn, ?, ?) WHERE guid = ?", (b, a, b, i3))
c.execute("UPDATE rc_hmac_keys SET account_id = ?, crn = replace(crn, ?, ?), instance_crn = replace(instance_crn, ?, ?), iam_id = ?, created_by = ? WHERE guid = ?",
          (b, a, b, a, b, ub, ub, k3))
assert c.total_changes == 4, c.total_changes
c.commit()
PY
start_daemon data daemon2.log
got=$(P k3 raw GET / --out l3.xml); expect "200 -" "account B lists its buckets"
grep -q '<Name>bkt1</Name>' l3.xml && fail "account B sees bkt1"
got=$(P k3 raw PUT /bkt3); expect "200 -" "account B creates a bucket"
got=$(P k3 raw GET /bkt1/ten); expect "403 AccessDenied" "account B reads A's object"
got=$(P k3 raw GET /bkt1); expect "403 AccessDenied" "account B lists A's bucket"
got=$(P k3 raw PUT /bkt1/fromb --body ten.bin); expect "403 AccessDenied" "account B writes into A's bucket"
got=$(P k3 raw DELETE /bkt1/ten); expect "403 AccessDenied" "account B deletes A's object"
got=$(P k3 raw DELETE /bkt1); expect "403 AccessDenied" "account B deletes A's bucket"
got=$(P k3 raw PUT /bkt1); expect "409 BucketAlreadyExists" "account B creates A's bucket name"
got=$(P k1 raw PUT /bkt3); expect "409 BucketAlreadyExists" "A creates B's bucket name"
got=$(P k1 raw GET /bkt3); expect "403 AccessDenied" "A lists B's bucket"
gone fromb; objects ten obj
pass "HMAC keys of another instance and another account: AccessDenied, nothing changed; names are global"

TOK=$(token owner.key)
st=$(curl -s -o got.bin -w '%{http_code}' -H "Authorization: Bearer $TOK" "$S3_URL/bkt1/ten")
[ "$st" = 200 ] && same_bytes got.bin ten.bin || fail "bearer GET: $st"
st=$(curl -s -o err.xml -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOK" "$S3_URL/bkt4")
[ "$st" = 400 ] && grep -q InvalidArgument err.xml || fail "bearer create without ibm-service-instance-id: $st $(cat err.xml)"
st=$(curl -s -o err.xml -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOK" -H "ibm-service-instance-id: $I3" "$S3_URL/bkt4")
[ "$st" = 403 ] && grep -q AccessDenied err.xml || fail "bearer create in another account's instance: $st"
st=$(curl -s -o err.xml -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOK" -H "ibm-service-instance-id: $I1" "$S3_URL/bkt4")
[ "$st" = 200 ] || fail "bearer create: $st $(cat err.xml)"
st=$(curl -s -o err.xml -w '%{http_code}' -H "Authorization: Bearer x.y.z" "$S3_URL/bkt1/ten")
[ "$st" = 403 ] && grep -q AccessDenied err.xml || fail "a bad token: $st"
[ "$(api POST /v1/serviceids '{"name":"nopol"}')" = 201 ] || fail "service id"
SIAM=$(jget 'j["iam_id"]')
[ "$(api POST /v1/apikeys "{\"name\":\"nopol\",\"iam_id\":\"$SIAM\"}")" = 201 ] || fail "api key"
jget 'j["apikey"]' | tr -d '\n' >nopol.key
NTOK=$(token nopol.key)
st=$(curl -s -o err.xml -w '%{http_code}' -H "Authorization: Bearer $NTOK" "$S3_URL/bkt1/ten")
[ "$st" = 403 ] && grep -q AccessDenied err.xml || fail "a service ID without a policy reads: $st"
st=$(curl -s -o err.xml -w '%{http_code}' -T ten.bin -H "Authorization: Bearer $NTOK" "$S3_URL/bkt1/np")
[ "$st" = 403 ] || fail "a service ID without a policy writes: $st"
gone np
pass "bearer tokens: the owner reads and creates (with ibm-service-instance-id), bad token and no policy refused"

# aws-chunked with a bearer token: the unsigned-trailer mode is accepted and its trailing
# checksum verified; the signed streaming modes need SigV4 (the token goes by environment)
chunked_put() { # KEY CRC_OK MODE -> "STATUS CODE"
	BEARER=$TOK python3 - "$S3_URL" "$1" "$2" "$3" ten.bin <<'PY'
import base64, http.client, os, re, sys, urllib.parse, zlib
url, key, ok, mode, path = sys.argv[1:6]
data = open(path, "rb").read()
crc = zlib.crc32(data) ^ (0 if ok == "1" else 1)
trailer = base64.b64encode(crc.to_bytes(4, "big")).decode()
body = b"%x\r\n" % len(data) + data + b"\r\n0\r\n" + f"x-amz-checksum-crc32:{trailer}\r\n\r\n".encode()
u = urllib.parse.urlparse(url)
c = http.client.HTTPConnection(u.hostname, u.port)
c.request("PUT", f"/bkt1/{key}", body=body, headers={
    "Authorization": "Bearer " + os.environ["BEARER"], "x-amz-content-sha256": mode,
    "Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
    "x-amz-trailer": "x-amz-checksum-crc32", "Content-Length": str(len(body))})
r = c.getresponse()
m = re.search(r"<Code>([^<]*)</Code>", r.read().decode())
print(r.status, m.group(1) if m else "-")
PY
}
got=$(chunked_put chk 1 STREAMING-UNSIGNED-PAYLOAD-TRAILER); expect "200 -" "bearer, aws-chunked with a CRC32 trailer"
st=$(curl -s -o got.bin -w '%{http_code}' -H "Authorization: Bearer $TOK" "$S3_URL/bkt1/chk")
[ "$st" = 200 ] && same_bytes got.bin ten.bin || fail "bearer GET of the aws-chunked object: $st"
got=$(chunked_put chkbad 0 STREAMING-UNSIGNED-PAYLOAD-TRAILER); expect "400 BadDigest" "bearer, aws-chunked with a wrong CRC32 trailer"
got=$(chunked_put chksig 1 STREAMING-AWS4-HMAC-SHA256-PAYLOAD); expect "400 InvalidArgument" "bearer with a signed streaming mode"
gone chkbad chksig
pass "bearer tokens with aws-chunked bodies: the unsigned-trailer mode verified (wrong CRC refused, nothing made); signed modes need SigV4"

# --- deleting instances -------------------------------------------------------------------------------
# An instance that has buckets is not deleted (its data would be orphaned); one without buckets
# goes, and its HMAC keys with it: they stop verifying at once, even though k2 was just used
# (its signing key is in the listener's cache).
got=$(P k2 raw GET / --out l2.xml); expect "200 -" "k2 works before"
[ "$(api DELETE "/v2/resource_instances/$I1")" = 409 ] && grep -q RESOURCE_INSTANCE_NOT_EMPTY .body ||
	fail "deleting an instance with buckets: $(cat .body)"
grep -q "bucket" .body || fail "the refusal does not say what is left: $(cat .body)"
[ "$(api GET "/v2/resource_instances/$I1")" = 200 ] || fail "the refused instance is gone"
[ "$(api GET "/v2/resource_keys/$(cat k1.guid)")" = 200 ] || fail "the refused instance's key is gone"
objects ten obj
[ "$(api DELETE "/v2/resource_instances/$I2")" = 204 ] || fail "deleting an empty instance: $(cat .body)"
[ "$(api GET "/v2/resource_instances/$I2")" = 404 ] || fail "the deleted instance is still there"
[ "$(api GET "/v2/resource_keys/$(cat k2.guid)")" = 404 ] || fail "the deleted instance's HMAC key is still there"
[ "$(api GET /v2/resource_keys)" = 200 ] || fail "list keys"
grep -qF "$(cat k2.guid)" .body && fail "the deleted instance's HMAC key is still listed"
got=$(P k2 raw GET /); expect "403 InvalidAccessKeyId" "the deleted instance's HMAC key"
[ "$(api GET "/v1/events?action=resource-controller.instance.delete&outcome=success")" = 200 ] || fail "events"
python3 - "$T/.body" "$I2" <<'PY' || fail "the delete event: $(head -c 600 .body)"
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["events"] if sys.argv[2] in e["target"]["id"]]
assert len(ev) == 1 and ev[0]["responseData"]["resource_keys_deleted"] == 1, ev
PY
pass "an instance with buckets is not deleted (409 RESOURCE_INSTANCE_NOT_EMPTY, nothing lost); an empty one goes with its HMAC keys"

# --- failures are audited, without secrets --------------------------------------------------------
[ "$(api GET "/v1/events?limit=1000&outcome=failure&action=cloud-object-storage.object.read")" = 200 ] || fail "events"
python3 - "$T/.body" <<'PY' || fail "failure events: $(head -c 800 .body)"
import json, sys
ev = json.load(open(sys.argv[1]))["events"]
codes = {e["reason"]["reasonCode"] for e in ev}
assert {403, 404, 416} <= codes, codes
assert all(e["reason"].get("reasonForFailure") for e in ev)
PY
for k in k1 k2 k3; do
	grep -rqF "$(cat $k.sk)" data daemon.log daemon2.log && fail "an HMAC secret in the data dir or a log"
done
api GET "/v1/events?limit=1000" >/dev/null
grep -qF "$(cat k1.sk)" .body && fail "an HMAC secret in the events"
pass "failures audited with their status and reason; no HMAC secret in data, logs or events"
stop_daemon
