#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test_s3_sigv4_peers.sh — our SigV4 against signers we did not write.
#
# boto3/botocore (Debian's, through /usr/bin/python3) and curl sign real S3
# requests — odd keys (spaces, unicode, '+', '~', '=', '&', "a/b//c", "%2F",
# dot segments), odd queries (repeated keys, empty and missing values, encoded
# '=' and '+'), presigned URLs fetched with curl — against a capture listener;
# sigv4_peer (ours, C) then verifies each captured request, re-signs it and
# compares byte for byte with the peer's signature, and checks that tampered
# forms are refused with the right S3 error.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SIGV4_PEER=${SIGV4_PEER:-$(dirname "$SEALVM")/tests/integration/sigv4_peer}
[ -x "$SIGV4_PEER" ] || fail "no sigv4_peer binary at $SIGV4_PEER: build first"
[ -x /usr/bin/python3 ] || skip "needs Debian's /usr/bin/python3"
/usr/bin/python3 -c 'import boto3, botocore' 2>/dev/null ||
	skip "needs Debian's python3-boto3 and python3-botocore (apt-get install python3-boto3)"
need curl

AK=AKIDPEERTEST0123
# A secret with the characters that trip naive signers ('/', '+', '=').
SK="pe3r/Secret+Key=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

(umask 077 && printf '%s' "$SK" >"$T/sk" && printf '%s' "${SK}x" >"$T/sk-wrong")
/usr/bin/python3 "$HERE/s3_sigv4_peer.py" "$T/cases.jsonl" "$AK" "$T/sk" 2>"$T/peer.err" ||
	{ cat "$T/peer.err" >&2; fail "the peer script failed"; }
n=$(wc -l <"$T/cases.jsonl")
[ "$n" -ge 50 ] || fail "only $n requests captured"
# Every kind of signer is in there.
grep -q '"presigned GET ' "$T/cases.jsonl" || fail "no presigned URL captured"
grep -q '"curl --aws-sigv4' "$T/cases.jsonl" || fail "no curl-signed request captured"
grep -q '"botocore raw' "$T/cases.jsonl" || fail "no raw botocore request captured"
pass "captured $n requests signed by boto3, botocore and curl"

rc=0
"$SIGV4_PEER" "$T/cases.jsonl" "$AK" "$T/sk" >"$T/out.tap" 2>"$T/out.err" || rc=$?
cat "$T/out.tap"
[ $rc -eq 0 ] || fail "sigv4_peer found differences (see above)"
[ "$(grep -c '^ok ' "$T/out.tap")" -eq "$n" ] || fail "not every captured request was checked"
pass "every peer request verified, re-signed identically and its tampered forms refused"

# The checker can fail: a capture whose secret is not the one used is refused throughout.
rc=0
"$SIGV4_PEER" "$T/cases.jsonl" "$AK" "$T/sk-wrong" >"$T/neg.tap" 2>"$T/neg.err" || rc=$?
[ $rc -eq 1 ] || fail "sigv4_peer accepted requests under the wrong secret"
[ "$(grep -c '^not ok ' "$T/neg.tap")" -eq "$n" ] || fail "some request verified under the wrong secret"
pass "the checker refuses every request under another secret"

# The secret went by file only: it is in no capture, output or message.
for f in cases.jsonl peer.err out.tap out.err neg.tap neg.err; do
	if grep -qF -- "$SK" "$T/$f"; then fail "the secret access key appears in $f"; fi
done
pass "the secret access key appears in no capture, output or message"
