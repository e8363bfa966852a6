#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Secure import (Key Protect import tokens), server side, against a real sealvmd with the
# keystore named by KEYSTORE=soft|pkcs11; the client side is /usr/bin/python3 with
# python3-cryptography, written from the Key Protect documentation, not from our code:
#   - POST/GET /import_token shapes, retrievals counted down, then 409 IMPORT_TOKEN_EXPIRED_ERR;
#   - an import with RSAES-OAEP-SHA-256 + the AES-GCM-encrypted nonce makes a working root key,
#     whose ciphertexts the client can open itself with the material and the AAD layout of
#     docs/internals/kms.md (so the documented format is the real one);
#   - wrong nonce (INCORRECT_NONCE_ERR), wrong IV or another material (INCORRECT_NONCE_IV_ERR),
#     an expired token (IMPORT_TOKEN_EXPIRED_ERR), a replaced token's key, no token, bad
#     algorithm/sizes/base64 — each refused with its reason and nothing created;
#   - rotation of an imported key under a token; the material appears nowhere.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need curl
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import cryptography' 2>/dev/null ||
	skip "needs /usr/bin/python3 with python3-cryptography (the import client)"
KEYSTORE=${KEYSTORE:-soft}
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT

KS_JSON='"keystore": {"backend": "soft"}'
if [ "$KEYSTORE" = pkcs11 ]; then
	. "$HERE/../softhsm.sh"
	rc=0
	softhsm_setup "$T/hsm" || rc=$?
	[ $rc -eq 77 ] && skip "the pkcs11 keystore test needs SoftHSM2"
	[ $rc -eq 0 ] || fail "softhsm_setup failed"
	KS_JSON="\"keystore\": {\"backend\": \"pkcs11\", \"pkcs11\": {\"module\": \"$SEALVM_TEST_PKCS11_MODULE\", \"token_label\": \"$SEALVM_TEST_PKCS11_TOKEN\", \"pin_file\": \"$SEALVM_TEST_PKCS11_PIN_FILE\"}}"
elif [ "$KEYSTORE" != soft ]; then
	fail "KEYSTORE must be soft or pkcs11, not $KEYSTORE"
fi
cat >cfg.json <<EOF
{ $KS_JSON, "kms": {"rotate_interval_s": 0, "import_token_min_s": 1} }
EOF
"$SEALVMD" init --data-dir data --config cfg.json --owner-key-file owner.key 2>init.log ||
	{ cat init.log >&2; fail "init"; }
"$SEALVMD" --data-dir data --config cfg.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >d.log 2>&1 &
DPID=$!
for i in $(seq 1 150); do
	PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' d.log 2>/dev/null || true)
	[ -n "$PORT" ] && break
	kill -0 $DPID 2>/dev/null || { cat d.log >&2; fail "sealvmd exited at start"; }
	sleep 0.1
done
[ -n "$PORT" ] || fail "sealvmd did not report its port"
URL="http://127.0.0.1:$PORT"
TOK=$(token owner.key)
export URL TOK T
pass "sealvmd with the $KEYSTORE keystore"

/usr/bin/python3 - <<'PY'
import base64, binascii, json, os, struct, time, urllib.error, urllib.parse, urllib.request, uuid
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

URL, TOK, T = os.environ["URL"], os.environ["TOK"], os.environ["T"]
INST = None

def call(method, path, body=None, inst=None, tok=None):
    h = {"Authorization": "Bearer " + (tok or TOK)}
    if (inst or INST):
        h["bluemix-instance"] = inst or INST
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        h["Content-Type"] = "application/json"
    r = urllib.request.Request(URL + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r) as resp:
            st, b = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        st, b = e.code, e.read()
    return st, (json.loads(b) if b else None)

def expect(st, j, status, code, field=None, what=""):
    assert st == status, (what, st, j)
    rs = j["resources"][0]["reasons"][0]
    assert rs["code"] == code and rs["status"] == status, (what, j)
    if field:
        assert rs.get("target", {}).get("name") == field, (what, field, j)

def secret(raw):
    with open(os.path.join(T, "secrets.txt"), "a") as f:
        f.write(base64.b64encode(raw).decode() + "\n" + binascii.hexlify(raw).decode() + "\n")
    return raw

b64 = lambda b: base64.b64encode(b).decode()
N = [0]
def ok(m):
    N[0] += 1
    print("ok - " + m, flush=True)

def env(res):
    return {"metadata": {"collectionType": "application/vnd.ibm.kms.key+json", "collectionTotal": 1}, "resources": [res]}

st, j = call("POST", "/v2/resource_instances", {"name": "kp", "target": "us-south", "resource_id": "kms"})
INST, ACCT = j["guid"], j["account_id"]
st, j = call("POST", "/v2/resource_instances", {"name": "kp2", "target": "us-south", "resource_id": "kms"})
INST2 = j["guid"]

# --- the token -----------------------------------------------------------------------------------
st, j = call("GET", "/api/v2/import_token")
expect(st, j, 404, "IMPORT_TOKEN_NOT_FOUND_ERR", None, "no token yet")
for body, field in (({"expiration": 0}, "expiration"), ({"expiration": 86401}, "expiration"),
                    ({"expiration": "600"}, "expiration"), ({"maxAllowedRetrievals": 0}, "maxAllowedRetrievals"),
                    ({"maxAllowedRetrievals": 501}, "maxAllowedRetrievals"), ({"maxAllowedRetrievals": 1.5}, "maxAllowedRetrievals")):
    st, j = call("POST", "/api/v2/import_token", body)
    expect(st, j, 400, "INVALID_FIELD_ERR", field, body)
st, j = call("POST", "/api/v2/import_token", {"expiration": 600, "maxAllowedRetrievals": 3, "extra": 1})
expect(st, j, 400, "BAD_BODY_ERR", None, "unknown field")
st, j = call("GET", "/api/v2/import_token")
expect(st, j, 404, "IMPORT_TOKEN_NOT_FOUND_ERR", None, "still no token")
st, tok = call("POST", "/api/v2/import_token", {"expiration": 600, "maxAllowedRetrievals": 3})
assert st == 200 and set(tok) == {"creationDate", "expirationDate", "maxAllowedRetrievals", "remainingRetrievals"}, tok
assert tok["maxAllowedRetrievals"] == 3 and tok["remainingRetrievals"] == 3, tok
st, g = call("GET", "/api/v2/import_token")
assert st == 200 and g["remainingRetrievals"] == 2 and g["creationDate"] == tok["creationDate"], g
pem = base64.b64decode(g["payload"])
assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n"), pem[:40]
pub = serialization.load_pem_public_key(pem)
assert pub.key_size == 4096, pub.key_size
nonce = base64.b64decode(g["nonce"])
assert len(nonce) == 12, g["nonce"]
ok("import token: bad expiration/retrievals 400 (no token made), POST shape, GET gives an RSA-4096 PEM key and a 12-byte nonce and counts a retrieval")

def wrap_material(material, n=nonce, iv=None, key_for_nonce=None):
    iv = iv or os.urandom(12)
    enc = AESGCM(key_for_nonce or material).encrypt(iv, n, None)
    ct = pub.encrypt(material, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    return {"payload": b64(ct), "encryptedNonce": b64(enc), "iv": b64(iv), "encryptionAlgorithm": "RSAES_OAEP_SHA_256"}

def n_keys():
    return len(call("GET", "/api/v2/keys?state=0,1,2,3,5")[1]["resources"])

material = secret(os.urandom(32))
fields = wrap_material(material)
st, j = call("POST", "/api/v2/keys", env(dict(name="secure-1", extractable=False, **fields)))
assert st == 201, j
k = j["resources"][0]
assert k["imported"] is True and k["state"] == 1 and k["algorithmBitSize"] == 256 and "payload" not in k, k
ok("secure import: RSAES-OAEP-SHA-256 payload + AES-GCM nonce → an imported root key (201)")

# The ciphertext opens on the client with the material and the documented layout.
dek = secret(os.urandom(32))
aad = ["img-1", "crn:v1:sealvm:local:images:us-south:a/%s:x:image:y" % ACCT]
st, w = call("POST", "/api/v2/keys/%s/actions/wrap" % k["id"], {"plaintext": b64(dek), "aad": aad})
assert st == 200, w
blob = base64.b64decode(w["ciphertext"])
assert blob[:3] == b"SVK" and blob[3] == 1, blob[:4]
vid = uuid.UUID(bytes=blob[4:20])
assert str(vid) == w["keyVersion"]["id"] == k["keyVersion"]["id"], (vid, w)
header, iv, body = blob[:20], blob[20:32], blob[32:]
lp = lambda s: struct.pack(">H", len(s)) + s
ad = b"sealvm-kms-wrap-v1\0" + header + lp(ACCT.encode()) + lp(INST.encode()) + lp(k["id"].encode()) + \
    struct.pack(">I", 1) + struct.pack(">H", len(aad)) + b"".join(lp(a.encode()) for a in aad)
assert AESGCM(material).decrypt(iv, body, ad) == dek
try:
    AESGCM(material).decrypt(iv, body, ad.replace(ACCT.encode(), b"0" * len(ACCT)))
    raise AssertionError("opened with another account in the AAD")
except Exception as e:
    assert type(e).__name__ == "InvalidTag", e
# and the other way: a ciphertext made by the client opens on the server
dek2 = secret(os.urandom(24))
iv2 = os.urandom(12)
mine = header + iv2 + AESGCM(material).encrypt(iv2, dek2, ad)
st, u = call("POST", "/api/v2/keys/%s/actions/unwrap" % k["id"], {"ciphertext": b64(mine), "aad": aad})
assert st == 200 and u["plaintext"] == b64(dek2), u
ok("the documented ciphertext layout and AAD are the real ones: the client opens the service's ciphertext with the material, and the service opens the client's")

# --- refusals ---------------------------------------------------------------------------------------
before = n_keys()
def refuse(fields, status, code, field=None, what="", name="bad"):
    st, j = call("POST", "/api/v2/keys", env(dict(name=name, extractable=False, **fields)))
    expect(st, j, status, code, field, what)
m2 = secret(os.urandom(32))
refuse(wrap_material(m2, n=os.urandom(12)), 400, "INCORRECT_NONCE_ERR", None, "another nonce")
refuse(dict(wrap_material(m2), iv=b64(os.urandom(12))), 400, "INCORRECT_NONCE_IV_ERR", None, "another iv")
refuse(wrap_material(m2, key_for_nonce=secret(os.urandom(32))), 400, "INCORRECT_NONCE_IV_ERR", None, "nonce under another material")
f = wrap_material(m2)
enc = bytearray(base64.b64decode(f["encryptedNonce"])); enc[-1] ^= 1
refuse(dict(f, encryptedNonce=b64(bytes(enc))), 400, "INCORRECT_NONCE_IV_ERR", None, "tag changed")
refuse(dict(f, encryptionAlgorithm="RSAES_OAEP_SHA_1"), 400, "INVALID_FIELD_ERR", "encryptionAlgorithm", "sha1")
refuse({k2: v for k2, v in f.items() if k2 != "encryptionAlgorithm"}, 400, "INVALID_FIELD_ERR", "encryptionAlgorithm", "no algorithm")
refuse(dict(f, payload=b64(os.urandom(512))), 400, "INVALID_FIELD_ERR", "payload", "payload garbage")
refuse(dict(f, payload=b64(os.urandom(100))), 400, "INVALID_FIELD_ERR", "payload", "payload short")
refuse(dict(f, payload="not base64"), 400, "INVALID_FIELD_ERR", "payload", "payload not base64")
refuse(dict(f, iv=b64(os.urandom(16))), 400, "INVALID_FIELD_ERR", "iv", "iv 16 bytes")
refuse(dict(f, iv="**"), 400, "INVALID_FIELD_ERR", "iv", "iv not base64")
refuse(dict(f, encryptedNonce=b64(os.urandom(12))), 400, "INVALID_FIELD_ERR", "encryptedNonce", "no tag")
refuse(wrap_material(secret(os.urandom(20)), key_for_nonce=os.urandom(32)), 400, "INVALID_FIELD_ERR", "payload", "20-byte material")
refuse({k2: v for k2, v in f.items() if k2 != "payload"}, 400, "INVALID_FIELD_ERR", "payload", "no payload")
st, j = call("POST", "/api/v2/keys", env(dict(name="std", extractable=True, **f)))
expect(st, j, 400, "INVALID_FIELD_ERR", "encryptedNonce", "secure standard key")
st, j = call("POST", "/api/v2/keys", env(dict(name="other-inst", extractable=False, **f)), inst=INST2)
expect(st, j, 404, "IMPORT_TOKEN_NOT_FOUND_ERR", None, "instance without a token")
assert n_keys() == before
ok("refused, nothing created: another nonce (INCORRECT_NONCE_ERR), another IV / material / changed tag (INCORRECT_NONCE_IV_ERR), SHA-1, no algorithm, bad payload/iv/nonce sizes and base64, 20-byte material, standard key, no token")

# --- rotation of an imported key under the token ------------------------------------------------------
m3 = secret(os.urandom(32))
st, j = call("POST", "/api/v2/keys/%s/actions/rotate" % k["id"], wrap_material(m3, n=os.urandom(12)))
expect(st, j, 400, "INCORRECT_NONCE_ERR", None, "rotate with a wrong nonce")
st, j = call("POST", "/api/v2/keys/%s/actions/rotate" % k["id"], wrap_material(m3))
assert st == 204, j
st, u = call("POST", "/api/v2/keys/%s/actions/unwrap" % k["id"], {"ciphertext": w["ciphertext"], "aad": aad})
assert st == 200 and u["plaintext"] == b64(dek) and u["rewrappedKeyVersion"]["id"] != k["keyVersion"]["id"], u
nb = base64.b64decode(u["ciphertext"])
ad2 = b"sealvm-kms-wrap-v1\0" + nb[:20] + lp(ACCT.encode()) + lp(INST.encode()) + lp(k["id"].encode()) + \
    struct.pack(">I", 2) + struct.pack(">H", len(aad)) + b"".join(lp(a.encode()) for a in aad)
assert AESGCM(m3).decrypt(nb[20:32], nb[32:], ad2) == dek
ok("rotate an imported key under the token (a wrong nonce refused first); the old DEK comes back rewrapped under the new material (checked on the client)")

# --- retrievals, expiry, replacement -----------------------------------------------------------------
st, g = call("GET", "/api/v2/import_token")
assert st == 200 and g["remainingRetrievals"] == 1, g
st, g = call("GET", "/api/v2/import_token")
assert st == 200 and g["remainingRetrievals"] == 0, g
st, j = call("GET", "/api/v2/import_token")
expect(st, j, 409, "IMPORT_TOKEN_EXPIRED_ERR", None, "beyond maxAllowedRetrievals")
st, j = call("GET", "/api/v2/import_token")
expect(st, j, 409, "IMPORT_TOKEN_EXPIRED_ERR", None, "still beyond")
ok("retrievals counted down to 0, then 409 IMPORT_TOKEN_EXPIRED_ERR")

st, short = call("POST", "/api/v2/import_token", {"expiration": 3, "maxAllowedRetrievals": 5})
assert st == 200, short
st, g2 = call("GET", "/api/v2/import_token")
assert st == 200 and g2["nonce"] != g["nonce"], g2
pub = serialization.load_pem_public_key(base64.b64decode(g2["payload"]))
nonce = base64.b64decode(g2["nonce"])
m4 = secret(os.urandom(32))
stale = wrap_material(m4)           # under the token that is about to expire
time.sleep(max(0, time.mktime(time.strptime(short["expirationDate"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())) + 1.2)
st, j = call("GET", "/api/v2/import_token")
expect(st, j, 409, "IMPORT_TOKEN_EXPIRED_ERR", None, "expired token")
refuse(stale, 409, "IMPORT_TOKEN_EXPIRED_ERR", None, "import with an expired token")
st, j = call("POST", "/api/v2/import_token", {"maxAllowedRetrievals": 1})
assert st == 200 and j["remainingRetrievals"] == 1, j
refuse(stale, 400, "INVALID_FIELD_ERR", "payload", "a replaced token's key")
assert n_keys() == before + 0
ok("an expired token: GET and import 409 IMPORT_TOKEN_EXPIRED_ERR; a new token replaces the old one, whose key no longer opens payloads")

# --- roles ---------------------------------------------------------------------------------------------
st, j = call("POST", "/v1/serviceids", {"name": "reader"})
sid = j["iam_id"]
st, j = call("POST", "/v1/apikeys", {"name": "reader", "iam_id": sid})
apikey = j["apikey"]
pol = {"type": "access", "subjects": [{"attributes": [{"name": "iam_id", "value": sid}]}],
       "roles": [{"role_id": "crn:v1:bluemix:public:iam::::serviceRole:Reader"}],
       "resources": [{"attributes": [{"name": "accountId", "value": ACCT}, {"name": "serviceName", "value": "kms"}]}]}
assert call("POST", "/v1/policies", pol)[0] == 201
data = urllib.parse.urlencode({"grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": apikey}).encode()
rt = json.load(urllib.request.urlopen(urllib.request.Request(URL + "/identity/token", data=data)))["access_token"]
assert call("POST", "/api/v2/import_token", {}, tok=rt)[0] == 403
assert call("GET", "/api/v2/import_token", tok=rt)[0] == 403
ok("import tokens need Writer: a Reader gets 403 on POST and GET")
PY
pass "secure import, server side"

curl -sf "$URL/v1/events?action=kms.import-token&limit=1000" -H "Authorization: Bearer $TOK" >events.json
/usr/bin/python3 - events.json <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["events"]
acts = {(e["action"], e["outcome"]) for e in ev}
assert ("kms.import-token.create", "success") in acts and ("kms.import-token.read", "success") in acts, acts
assert ("kms.import-token.read", "failure") in acts, acts
for e in ev:
    s = json.dumps(e)
    assert '"payload"' not in s and '"nonce"' not in s and '"encryptedNonce"' not in s, e
PY
curl -sf "$URL/v1/events?action=kms.secrets.create&limit=1000" -H "Authorization: Bearer $TOK" >>events.json
pass "audit: token creations and retrievals (and the refused ones) recorded, without the key or the nonce"

kill -TERM $DPID
wait $DPID || fail "sealvmd exit status"
DPID=
awk 'length($0) >= 16' secrets.txt | sort -u >patterns.txt
[ "$(wc -l <patterns.txt)" -ge 16 ] || fail "too few secret forms"
files=(data/* d.log init.log events.json)
[ "$KEYSTORE" = pkcs11 ] && files+=(hsm/tokens/*/*)
leaks=$(grep -aFl -f patterns.txt "${files[@]}" 2>/dev/null || true)
[ -z "$leaks" ] || fail "imported material found in: $leaks"
pass "no imported material or DEK in the data dir, the $KEYSTORE keystore, the log or the audit trail"
