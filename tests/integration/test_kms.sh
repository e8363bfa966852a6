#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The key service (Key Protect v2 API) end to end against a real sealvmd, with the keystore
# named by KEYSTORE=soft (default) or KEYSTORE=pkcs11 (a SoftHSM2 token made by
# tests/softhsm.sh; skipped, 77, when the machine lacks SoftHSM2):
#   - create/import/list/get/metadata/versions, aliases, prefer, media types, list filters;
#   - the roles: Reader wraps but cannot read a key, ReaderPlus reads a standard key's payload;
#   - wrap/unwrap/rewrap: DEK text rules, AAD, a DEK wrapped before three rotations unwraps and
#     comes back rewrapped under the newest version (rewrap gives the same);
#   - every byte class of a ciphertext changed, cut, another key's / instance's / deployment's,
#     wrong or missing AAD, another service's format: 400/422 with Key Protect reasons;
#   - the state machine: every state × action cell (allowed with its state after, or refused
#     with its reason and nothing changed), the timing rules, expiration → Deactivated;
#   - registrations (force, preventKeyDeletion), dual authorization, restore (and its window,
#     after a restart with a shorter one), purge (KeyPurge role, delay);
#   - bad requests (header, instance, body, fields), the Key Protect error envelope;
#   - audit events for every call, never with key material; and no DEK, payload or key in the
#     data dir (outside sealed blobs), the token directory, the log or the audit trail.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need curl python3
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
KEYSTORE=${KEYSTORE:-soft}
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT

# --- the keystore and the config ------------------------------------------------------------
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
mkcfg() { # RESTORE_WINDOW_S
	cat >cfg.json <<EOF
{ $KS_JSON,
  "kms": {"enable_delay_s": 2, "rotate_interval_s": 1, "restore_window_s": $1,
          "dual_auth_window_s": 3, "purge_delay_s": 2, "import_token_min_s": 1} }
EOF
}
mkcfg 600
# start_kms DIR LOG — sealvmd with cfg.json on a free port: PORT, URL, DPID.
start_kms() {
	local i
	"$SEALVMD" --data-dir "$1" --config cfg.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >"$2" 2>&1 &
	DPID=$!
	PORT=
	for i in $(seq 1 150); do
		PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' "$2" 2>/dev/null | tail -1 || true)
		[ -n "$PORT" ] && break
		kill -0 $DPID 2>/dev/null || { cat "$2" >&2; fail "sealvmd exited at start"; }
		sleep 0.1
	done
	[ -n "$PORT" ] || { cat "$2" >&2; fail "sealvmd did not report its port"; }
	URL="http://127.0.0.1:$PORT"
}
"$SEALVMD" init --data-dir data --config cfg.json --owner-key-file owner.key 2>init.log ||
	{ cat init.log >&2; fail "init"; }
pass "init with the $KEYSTORE keystore"

# --- configuration refused, naming the key -------------------------------------------------------
badcfg() { # REASON JSON
	printf '%s\n' "$2" >bad.json
	local rc=0
	"$SEALVMD" --data-dir data --config bad.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >bad.log 2>&1 || rc=$?
	[ $rc -eq 2 ] && grep -q "$1" bad.log || { cat bad.log >&2; fail "config $2: expected $1"; }
}
badcfg CONFIG_INVALID '{"keystore": {"backend": "hsm"}}'
badcfg CONFIG_INVALID '{"keystore": {"backend": "pkcs11"}}'
badcfg CONFIG_INVALID '{"keystore": {"backend": "pkcs11", "pkcs11": {"module": "/x.so", "token_label": "t"}}}'
badcfg CONFIG_PIN_IN_CLEAR '{"keystore": {"backend": "pkcs11", "pkcs11": {"module": "/x.so", "token_label": "t", "pin": "123456"}}}'
grep -q 123456 bad.log && fail "the PIN of a refused config was echoed"
badcfg CONFIG_UNKNOWN_KEY '{"keystore": {"colour": 1}}'
badcfg CONFIG_UNKNOWN_KEY '{"keystore": {"backend": "pkcs11", "pkcs11": {"slot": 1}}}'
badcfg CONFIG_INVALID '{"keystore": []}'
badcfg CONFIG_INVALID '{"kms": {"enable_delay_s": -1}}'
badcfg CONFIG_INVALID '{"kms": {"enable_delay_s": "30"}}'
badcfg CONFIG_INVALID '{"kms": {"import_token_min_s": 0}}'
badcfg CONFIG_UNKNOWN_KEY '{"kms": {"rotate_interval": 1}}'
if [ "$KEYSTORE" = pkcs11 ]; then
	od -An -N8 -tx1 /dev/urandom | tr -d ' \n' >wrong.pin
	sed "s#$SEALVM_TEST_PKCS11_PIN_FILE#$T/wrong.pin#" cfg.json >wrongpin.json
	rc=0
	"$SEALVMD" --data-dir data --config wrongpin.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >wrongpin.log 2>&1 || rc=$?
	[ $rc -ne 0 ] || fail "sealvmd served with a wrong PIN"
	grep -qF "$(cat wrong.pin)" wrongpin.log && fail "the wrong PIN is in the log"
	grep -qF "$(cat "$SEALVM_TEST_PKCS11_PIN_FILE")" wrongpin.log init.log && fail "the PIN is in a log"
fi
pass "bad keystore/kms settings refused naming them (exit 2); a PIN in the config refused, never echoed"

# --- another deployment: a ciphertext of another account -----------------------------------
"$SEALVMD" init --data-dir data2 --config cfg.json --owner-key-file owner2.key 2>init2.log ||
	{ cat init2.log >&2; fail "init 2"; }
start_kms data2 d2.log
python3 - "$URL" owner2.key >foreign.ct <<'PY'
import json, sys, urllib.parse, urllib.request
url, keyfile = sys.argv[1:]
def post(path, data, headers):
    r = urllib.request.Request(url + path, data=data, method="POST", headers=headers)
    return json.load(urllib.request.urlopen(r))
tok = post("/identity/token", urllib.parse.urlencode({"grant_type": "urn:ibm:params:oauth:grant-type:apikey",
           "apikey": open(keyfile).read().strip()}).encode(), {})["access_token"]
h = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
inst = post("/v2/resource_instances", json.dumps({"name": "x", "target": "us-south", "resource_id": "kms"}).encode(), h)["guid"]
h["bluemix-instance"] = inst
k = post("/api/v2/keys", json.dumps({"metadata": {"collectionType": "application/vnd.ibm.kms.key+json", "collectionTotal": 1},
         "resources": [{"name": "foreign"}]}).encode(), h)["resources"][0]
w = post("/api/v2/keys/%s/actions/wrap" % k["id"], b"{}", h)
print(w["ciphertext"])
PY
stop_daemon
[ -s foreign.ct ] || fail "no foreign ciphertext"
pass "a ciphertext from another deployment (another account, instance and key)"

start_kms data d.log
TOK=$(token owner.key)
export URL TOK T

# --- the API, in Python (stdlib only) --------------------------------------------------------
cat >kp.py <<'PY'
"""Helpers of test_kms.sh: calls with status and JSON, principals, secrets to look for."""
import base64, binascii, json, os, time, urllib.error, urllib.parse, urllib.request, uuid

URL = os.environ["URL"]
T = os.environ["T"]
N = [0]
STATE = os.path.join(T, "state.json")

def ok(msg):
    N[0] += 1
    print("ok - %s" % msg, flush=True)

def call(method, path, body=None, tok=None, inst=None, ctype="application/json", headers=None,
         raw=None):
    h = {}
    tok = os.environ.get("TOK") if tok is None else tok
    if tok:
        h["Authorization"] = "Bearer " + tok
    if inst is None:
        inst = os.environ.get("INST")
    if inst:
        h["bluemix-instance"] = inst
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None and ctype:
        h["Content-Type"] = ctype
    h.update(headers or {})
    r = urllib.request.Request(URL + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(r) as resp:
            st, b = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        st, b = e.code, e.read()
    return st, (json.loads(b) if b else None)

def reason(j):
    return j["resources"][0]["reasons"][0]["code"]

def target(j):
    return j["resources"][0]["reasons"][0].get("target", {}).get("name")

def expect_err(st, j, status, code, field=None, what=""):
    assert st == status, (what, st, j)
    assert j["metadata"]["collectionType"] == "application/vnd.ibm.kms.error+json", (what, j)
    assert reason(j) == code, (what, code, j)
    assert j["resources"][0]["reasons"][0]["status"] == status, (what, j)
    if field:
        assert target(j) == field, (what, field, j)

def envelope(res, total=None, ctype="application/vnd.ibm.kms.key+json"):
    return {"metadata": {"collectionType": ctype, "collectionTotal": len(res) if total is None else total},
            "resources": res}

def create(name, extractable=False, payload=None, expiration=None, aliases=None, inst=None,
           tok=None, status=201, **extra):
    r = {"type": "application/vnd.ibm.kms.key+json", "name": name, "extractable": extractable}
    if payload is not None:
        r["payload"] = payload
    if expiration is not None:
        r["expirationDate"] = expiration
    if aliases is not None:
        r["aliases"] = aliases
    r.update(extra)
    st, j = call("POST", "/api/v2/keys", envelope([r]), inst=inst, tok=tok,
                 ctype="application/vnd.ibm.kms.key+json")
    assert st == status, (st, j)
    return j["resources"][0] if st == 201 else j

def key(kid, inst=None):
    st, j = call("GET", "/api/v2/keys/%s/metadata" % kid, inst=inst)
    assert st == 200, (st, j)
    return j["resources"][0]

def action(kid, verb, body=None, inst=None, tok=None):
    return call("POST", "/api/v2/keys/%s/actions/%s" % (kid, verb), body, inst=inst, tok=tok,
                ctype="application/vnd.ibm.kms.key_action+json")

def secret(text):
    """Records a secret (base64 text) to look for later, in base64, raw-hex and text forms."""
    with open(os.path.join(T, "secrets.txt"), "a") as f:
        f.write(text + "\n")
        raw = base64.b64decode(text)
        f.write(binascii.hexlify(raw).decode() + "\n")
        if len(raw) >= 16:
            f.write(base64.b64encode(raw[:12]).decode()[:16] + "\n")
    return text

def rand_b64(n):
    return secret(base64.b64encode(os.urandom(n)).decode())

def form_token(apikey):
    data = urllib.parse.urlencode({"grant_type": "urn:ibm:params:oauth:grant-type:apikey",
                                   "apikey": apikey}).encode()
    with urllib.request.urlopen(urllib.request.Request(URL + "/identity/token", data=data)) as r:
        return json.load(r)["access_token"]

def principal(name, account, roles, inst):
    """A service ID with ROLES (service roles) on the kms instance INST; returns (token, iam_id)."""
    st, j = call("POST", "/v1/serviceids", {"name": name}, inst="")
    assert st == 201, (st, j)
    iam_id = j["iam_id"]
    st, j = call("POST", "/v1/apikeys", {"name": name, "iam_id": iam_id}, inst="")
    assert st == 201, (st, j)
    apikey = j["apikey"]
    for role in roles:
        pol = {"type": "access", "subjects": [{"attributes": [{"name": "iam_id", "value": iam_id}]}],
               "roles": [{"role_id": "crn:v1:bluemix:public:iam::::serviceRole:" + role}],
               "resources": [{"attributes": [{"name": "accountId", "value": account},
                                             {"name": "serviceName", "value": "kms"},
                                             {"name": "serviceInstance", "value": inst}]}]}
        st, j = call("POST", "/v1/policies", pol, inst="")
        assert st == 201, (st, j)
    return form_token(apikey), iam_id

def save(**kw):
    s = load()
    s.update(kw)
    json.dump(s, open(STATE, "w"))

def load():
    return json.load(open(STATE)) if os.path.exists(STATE) else {}

def b64(b):
    return base64.b64encode(b).decode()

def unb64(s):
    return base64.b64decode(s)
PY

python3 - <<'PY'
import base64, os, sys, time, urllib.parse, uuid
sys.path.insert(0, os.environ["T"])
from kp import *

# --- instances -------------------------------------------------------------------------------
st, j = call("POST", "/v2/resource_instances", {"name": "kp", "target": "us-south", "resource_id": "kms"}, inst="")
assert st == 201, j
INST, ACCT = j["guid"], j["account_id"]
os.environ["INST"] = INST
st, j = call("POST", "/v2/resource_instances", {"name": "kp2", "target": "us-south", "resource_id": "kms"}, inst="")
INST2 = j["guid"]
st, j = call("POST", "/v2/resource_instances", {"name": "cos", "target": "us-south", "resource_id": "cloud-object-storage"}, inst="")
COS = j["guid"]
save(INST=INST, ACCT=ACCT, INST2=INST2)

# --- bad instance headers --------------------------------------------------------------------
st, j = call("GET", "/api/v2/keys", inst="")
expect_err(st, j, 400, "INVALID_HEADER_ERR", "bluemix-instance", "no header")
assert j["resources"][0]["reasons"][0]["target"]["type"] == "header", j
st, j = call("GET", "/api/v2/keys", inst="not-a-guid")
expect_err(st, j, 400, "INVALID_HEADER_ERR", "bluemix-instance", "bad header")
st, j = call("GET", "/api/v2/keys", inst=str(uuid.uuid4()))
expect_err(st, j, 404, "INSTANCE_NOT_FOUND_ERR", None, "unknown instance")
st, j = call("GET", "/api/v2/keys", inst=COS)
expect_err(st, j, 404, "INSTANCE_NOT_FOUND_ERR", None, "instance of another service")
st, j = call("GET", "/api/v2/keys", tok="")
assert st == 401 and reason(j) == "UNAUTHORIZED_ERR", (st, j)
ok("bluemix-instance: missing/malformed 400, unknown or another service's 404, no token 401 — KP envelope")

# --- create, get, list ------------------------------------------------------------------------
root = create("root-1", description="first", aliases=["root-one"])
assert root["state"] == 1 and root["extractable"] is False and root["imported"] is False, root
assert root["crn"] == "crn:v1:sealvm:local:kms:us-south:a/%s:%s:key:%s" % (ACCT, INST, root["id"]), root
assert root["aliases"] == ["root-one"] and root["keyRingID"] == "default" and root["algorithmBitSize"] == 256, root
assert "payload" not in root and root["keyVersion"]["id"] and root["dualAuthDelete"]["enabled"] is False, root
assert key("root-one")["id"] == root["id"]
st, j = call("GET", "/api/v2/keys/%s" % root["id"])
assert st == 200 and "payload" not in j["resources"][0], j
std_payload = rand_b64(48)
std = create("std-1", extractable=True, payload=std_payload)
assert std["payload"] == std_payload and std["imported"] is True, std
st, j = call("GET", "/api/v2/keys/%s" % std["id"])
assert st == 200 and j["resources"][0]["payload"] == std_payload, j
st, j = call("GET", "/api/v2/keys/%s/metadata" % std["id"])
assert st == 200 and "payload" not in j["resources"][0], j
std_min = create("std-2", extractable=True, payload=None)  # generated material
st, j = call("GET", "/api/v2/keys/%s" % std_min["id"])
secret(j["resources"][0]["payload"])
assert len(unb64(j["resources"][0]["payload"])) == 32, j
st, j = call("POST", "/api/v2/keys", envelope([{"name": "std-3", "extractable": True, "payload": rand_b64(16)}]),
             headers={"prefer": "return=minimal"})
assert st == 201 and "payload" not in j["resources"][0], j
imp_payload = rand_b64(32)
imp = create("imported-1", payload=imp_payload)
assert imp["imported"] is True and "payload" not in imp, imp
for n in (16, 24):
    k = create("imported-%d" % n, payload=rand_b64(n))
    assert k["algorithmBitSize"] == n * 8, k
ok("create: root (generated, imported 16/24/32), standard (payload or generated; shown to its creator, not with prefer minimal, not on /metadata)")

st, j = call("GET", "/api/v2/keys")
assert st == 200 and j["metadata"]["collectionType"] == "application/vnd.ibm.kms.key+json", j
names = [k["name"] for k in j["resources"]]
assert j["metadata"]["collectionTotal"] == len(j["resources"]) == 7, j
assert names[0] == "root-1" and all("payload" not in k for k in j["resources"]), names
st, j = call("GET", "/api/v2/keys?limit=2&offset=1")
assert [k["name"] for k in j["resources"]] == names[1:3], j
st, j = call("GET", "/api/v2/keys?extractable=true")
assert {k["name"] for k in j["resources"]} == {"std-1", "std-2", "std-3"}, j
st, j = call("GET", "/api/v2/keys?state=2,3")
assert st == 200 and j["resources"] == [], j
st, j = call("GET", "/api/v2/keys", inst=INST2)
assert st == 200 and j["resources"] == [], j
for q, f in (("limit=0", "limit"), ("limit=5001", "limit"), ("limit=x", "limit"), ("offset=-1", "offset"),
             ("state=4", "state"), ("state=", "state"), ("state=1,x", "state"), ("extractable=yes", "extractable")):
    st, j = call("GET", "/api/v2/keys?" + q)
    expect_err(st, j, 400, "INVALID_QUERY_PARAM_ERR", f, q)
ok("list: envelope, creation order, limit/offset, extractable and state filters, per instance; bad parameters 400 naming them")

st, j = call("GET", "/api/v2/keys/%s/versions" % root["id"])
assert st == 200 and j["metadata"]["collectionType"] == "application/vnd.ibm.kms.key_version+json", j
assert [v["id"] for v in j["resources"]] == [root["keyVersion"]["id"]], j
st, j = call("GET", "/api/v2/keys/%s" % uuid.uuid4())
expect_err(st, j, 404, "KEY_NOT_FOUND_ERR", None, "unknown key")
st, j = call("GET", "/api/v2/keys/%s" % root["id"], inst=INST2)
expect_err(st, j, 404, "KEY_NOT_FOUND_ERR", None, "key of another instance")
st, j = call("GET", "/api/v2/keys/no-such-alias")
expect_err(st, j, 404, "KEY_NOT_FOUND_ERR", None, "unknown alias")
ok("versions; unknown key, alias or another instance's key: 404 KEY_NOT_FOUND_ERR")

# --- aliases --------------------------------------------------------------------------------------
st, j = call("POST", "/api/v2/keys/%s/aliases/second_alias-2" % root["id"])
assert st == 201 and j["resources"][0]["alias"] == "second_alias-2" and j["resources"][0]["keyId"] == root["id"], j
assert key("second_alias-2")["aliases"] == ["root-one", "second_alias-2"]
for bad in ("a", "x" * 91, "has.dot", "versions", str(uuid.uuid4())):
    st, j = call("POST", "/api/v2/keys/%s/aliases/%s" % (root["id"], bad))
    expect_err(st, j, 400, "INVALID_FIELD_ERR", "alias", bad)
st, j = call("POST", "/api/v2/keys/%s/aliases/root-one" % imp["id"])
expect_err(st, j, 409, "KEY_ALIAS_NOT_UNIQUE_ERR", None, "alias taken")
for i in range(3):
    st, j = call("POST", "/api/v2/keys/%s/aliases/more-%d" % (root["id"], i))
    assert st == 201, j
st, j = call("POST", "/api/v2/keys/%s/aliases/sixth" % root["id"])
expect_err(st, j, 400, "KEY_ALIAS_QUOTA_ERR", None, "sixth alias")
st, j = call("DELETE", "/api/v2/keys/%s/aliases/more-2" % root["id"])
assert st == 204, j
st, j = call("DELETE", "/api/v2/keys/%s/aliases/more-2" % root["id"])
expect_err(st, j, 404, "KEY_ALIAS_NOT_FOUND_ERR", None, "alias gone")
create("dup", aliases=["root-one"], status=409)
create("dup", aliases=["ab", "ab"], status=400)
create("dup", aliases=["a", "b"], status=400)
assert len(key(root["id"])["aliases"]) == 4
ok("aliases: create (body or route), look up by alias, rules (length, characters, UUID, reserved), unique per instance, 5 per key, delete")

# --- bad bodies ----------------------------------------------------------------------------------
def bad_create(body, status, code, field=None, raw=None, ctype="application/json"):
    st, j = call("POST", "/api/v2/keys", body, raw=raw, ctype=ctype)
    expect_err(st, j, status, code, field, body if raw is None else raw)
n_before = len(call("GET", "/api/v2/keys?state=0,1,2,3,5")[1]["resources"])
bad_create(None, 400, "NO_BODY_ERR")
bad_create(None, 400, "BAD_BODY_ERR", raw=b'{"metadata": ')
bad_create(None, 400, "BAD_BODY_ERR", raw=b'{"a":1,"a":2}')
bad_create(None, 400, "BAD_BODY_ERR", raw=b'[]')
bad_create(None, 415, "UNSUPPORTED_MEDIA_TYPE_ERR", raw=b'{}', ctype="text/plain")
bad_create({"resources": [{"name": "x"}]}, 400, "BAD_BODY_ERR")
bad_create({"metadata": {}, "resources": [{"name": "x"}]}, 400, "BAD_BODY_ERR")
bad_create(envelope([{"name": "x"}], total=2), 400, "COLLECTION_TOTAL_MISMATCH_ERR")
bad_create(envelope([{"name": "x"}, {"name": "y"}]), 400, "BAD_BODY_ERR")
bad_create(envelope([]), 400, "BAD_BODY_ERR")
bad_create(envelope([{"name": "x", "colour": "red"}]), 400, "BAD_BODY_ERR")
bad_create(envelope([{"description": "no name"}]), 400, "INVALID_FIELD_ERR", "name")
bad_create(envelope([{"name": ""}]), 400, "INVALID_FIELD_ERR", "name")
bad_create(envelope([{"name": "x" * 91}]), 400, "INVALID_FIELD_ERR", "name")
bad_create(envelope([{"name": "a\nb"}]), 400, "INVALID_FIELD_ERR", "name")
bad_create(envelope([{"name": 7}]), 400, "INVALID_FIELD_ERR", "name")
bad_create(envelope([{"name": "x", "description": "d" * 241}]), 400, "INVALID_FIELD_ERR", "description")
bad_create(envelope([{"name": "x", "type": "text"}]), 400, "INVALID_FIELD_ERR", "type")
bad_create(envelope([{"name": "x", "extractable": "no"}]), 400, "INVALID_FIELD_ERR", "extractable")
bad_create(envelope([{"name": "x", "payload": rand_b64(20)}]), 400, "INVALID_FIELD_ERR", "payload")
bad_create(envelope([{"name": "x", "payload": "not base64!"}]), 400, "INVALID_FIELD_ERR", "payload")
bad_create(envelope([{"name": "x", "extractable": True, "payload": rand_b64(7501)}]), 400, "INVALID_FIELD_ERR", "payload")
bad_create(envelope([{"name": "x", "expirationDate": "2001-01-01T00:00:00Z"}]), 400, "INVALID_FIELD_ERR", "expirationDate")
bad_create(envelope([{"name": "x", "expirationDate": "tomorrow"}]), 400, "INVALID_FIELD_ERR", "expirationDate")
bad_create(envelope([{"name": "x", "expirationDate": "2031-02-31T00:00:00Z"}]), 400, "INVALID_FIELD_ERR", "expirationDate")
bad_create(envelope([{"name": "x", "aliases": "one"}]), 400, "INVALID_FIELD_ERR", "aliases")
bad_create(envelope([{"name": "x", "encryptedNonce": "AAAA"}]), 400, "INVALID_FIELD_ERR", "payload")
st, j = call("POST", "/api/v2/keys", envelope([{"name": "x"}]), headers={"x-kms-key-ring": "other-ring"})
expect_err(st, j, 404, "KEY_RING_NOT_FOUND_ERR", None, "ring")
assert len(call("GET", "/api/v2/keys?state=0,1,2,3,5")[1]["resources"]) == n_before
for ct in ("application/json", "application/vnd.ibm.kms.key+json", "application/vnd.ibm.kms.key_action+json",
           "application/json; charset=utf-8"):
    st, j = call("POST", "/api/v2/keys", envelope([{"name": "media"}]), ctype=ct)
    assert st == 201, (ct, j)
st, j = call("POST", "/api/v2/keys", envelope([{"name": "ring"}]), headers={"x-kms-key-ring": "default"})
assert st == 201 and j["resources"][0]["keyRingID"] == "default", j
big = rand_b64(7500)  # a standard key's largest material (a DEK's is 4096 bytes)
k = create("std-big", extractable=True, payload=big)
st, j = call("GET", "/api/v2/keys/%s" % k["id"])
assert st == 200 and j["resources"][0]["payload"] == big, j
ok("create refuses every bad body with its KP reason and field (nothing created); JSON and KP media types accepted")

# --- wrap / unwrap -----------------------------------------------------------------------------------
K = root["id"]
st, w = action(K, "wrap")
assert st == 200 and set(w) == {"ciphertext", "keyVersion", "plaintext"}, w
assert len(unb64(secret(w["plaintext"]))) == 32 and w["keyVersion"]["id"] == root["keyVersion"]["id"], w
st, u = action(K, "unwrap", {"ciphertext": w["ciphertext"]})
assert st == 200 and u["plaintext"] == w["plaintext"] and "ciphertext" not in u and "rewrappedKeyVersion" not in u, u
st, w0 = call("POST", "/api/v2/keys/%s/actions/wrap" % K, raw=b"", ctype=None)
assert st == 200 and "plaintext" in w0, w0
secret(w0["plaintext"])
dek = rand_b64(32)
aad = ["volume-1", "crn:v1:x", ""]
st, w = action(K, "wrap", {"plaintext": dek, "aad": aad})
assert st == 200 and "plaintext" not in w, w
st, u = action("root-one", "unwrap", {"ciphertext": w["ciphertext"], "aad": aad})
assert st == 200 and u["plaintext"] == dek, u
for small in (1, 16, 384):
    d = rand_b64(small)
    st, x = action(K, "wrap", {"plaintext": d})
    st, u = action(K, "unwrap", {"ciphertext": x["ciphertext"]})
    assert st == 200 and u["plaintext"] == d, (small, u)
ok("wrap (generated 32-byte DEK, given DEK, empty body, AAD) and unwrap return exactly the text wrapped")

def wrap_err(body, status, code, field=None, verb="wrap", kid=K):
    st, j = action(kid, verb, body)
    expect_err(st, j, status, code, field, (verb, body))
for bad in ("YQ", "YR==", "YQ==\n", " YQ==", "YQ=", "Y", "YQ==YQ==", "****", "a" * 5465, ""):
    wrap_err({"plaintext": bad}, 400, "INVALID_FIELD_ERR", "plaintext")
wrap_err({"plaintext": 5}, 400, "INVALID_FIELD_ERR", "plaintext")
wrap_err({"plaintext": dek, "aad": "x"}, 400, "INVALID_FIELD_ERR", "aad")
wrap_err({"plaintext": dek, "aad": [1]}, 400, "INVALID_FIELD_ERR", "aad")
wrap_err({"plaintext": dek, "aad": ["x" * 256]}, 400, "INVALID_FIELD_ERR", "aad")
wrap_err({"plaintext": dek, "aad": ["x"] * 33}, 400, "INVALID_FIELD_ERR", "aad")
wrap_err({"plaintext": dek, "ciphertext": "x"}, 400, "BAD_BODY_ERR")
wrap_err(None, 400, "NO_BODY_ERR", verb="unwrap")
wrap_err({}, 400, "INVALID_FIELD_ERR", "ciphertext", verb="unwrap")
wrap_err({"ciphertext": 3}, 400, "INVALID_FIELD_ERR", "ciphertext", verb="unwrap")
wrap_err({"ciphertext": w["ciphertext"], "plaintext": dek}, 400, "BAD_BODY_ERR", verb="unwrap")
wrap_err({"plaintext": dek}, 400, "KEY_ROOT_REQ_ERR", kid=std["id"])
wrap_err({"ciphertext": w["ciphertext"]}, 400, "KEY_ROOT_REQ_ERR", verb="unwrap", kid=std["id"])
ok("DEK text rules: non-canonical, unpadded, whitespace, too long, empty → 400 INVALID_FIELD_ERR plaintext; aad rules; unknown fields; standard key 400 KEY_ROOT_REQ_ERR")

# every byte class of a ciphertext, cut, foreign, wrong AAD
blob = unb64(w["ciphertext"])
assert blob[:3] == b"SVK" and blob[3] == 1 and len(blob) == 4 + 16 + 12 + 32 + 16, len(blob)
def unwrap_blob(b, a=aad, kid=K, inst=None):
    return action(kid, "unwrap", {"ciphertext": b64(b), "aad": a}, inst=inst)
classes = {"magic": [0, 1, 2], "format": [3], "version id": list(range(4, 20)), "iv": list(range(20, 32)),
           "ciphertext": list(range(32, 64)), "tag": list(range(64, 80))}
for cls, positions in classes.items():
    for pos in positions:
        for flip in (0x01, 0x80):
            b = bytearray(blob)
            b[pos] ^= flip
            st, j = unwrap_blob(bytes(b))
            want = (400, "INVALID_FIELD_ERR") if cls in ("magic", "format") else (422, "UNPROCESSABLE_CIPHERTEXT_ERR")
            expect_err(st, j, want[0], want[1], "ciphertext" if want[0] == 400 else None, (cls, pos, flip))
for cut in (1, 3, 4, 16, 20, 32, 48):  # shorter than the smallest ciphertext: not one of ours
    st, j = unwrap_blob(blob[:cut])
    expect_err(st, j, 400, "INVALID_FIELD_ERR", "ciphertext", ("cut", cut))
for cut in (49, 64, len(blob) - 16, len(blob) - 1):  # still parses: the tag fails
    st, j = unwrap_blob(blob[:cut])
    expect_err(st, j, 422, "UNPROCESSABLE_CIPHERTEXT_ERR", None, ("cut", cut))
st, j = unwrap_blob(blob + b"\0")
expect_err(st, j, 422, "UNPROCESSABLE_CIPHERTEXT_ERR", None, "appended byte")
for a in ([], ["volume-1"], ["volume-1", "crn:v1:x"], ["volume-2", "crn:v1:x", ""], ["volume-1", "crn:v1:x", "", ""],
          ["volume-1crn:v1:x", ""]):
    st, j = unwrap_blob(blob, a)
    expect_err(st, j, 422, "UNPROCESSABLE_CIPHERTEXT_ERR", None, ("aad", a))
other = create("root-2")
st, j = unwrap_blob(blob, kid=other["id"])
expect_err(st, j, 422, "UNPROCESSABLE_CIPHERTEXT_ERR", None, "other key")
inst2_key = create("inst2-root", inst=INST2)
st, j = unwrap_blob(blob, kid=inst2_key["id"], inst=INST2)
expect_err(st, j, 422, "UNPROCESSABLE_CIPHERTEXT_ERR", None, "other instance")
foreign = open(os.path.join(os.environ["T"], "foreign.ct")).read().strip()
st, j = action(K, "unwrap", {"ciphertext": foreign})
expect_err(st, j, 422, "UNPROCESSABLE_CIPHERTEXT_ERR", None, "other deployment")
kp_style = b64(json.dumps({"ciphertext": "abc", "iv": "def", "version": "4.0.0", "handle": str(uuid.uuid4())}).encode())
st, j = action(K, "unwrap", {"ciphertext": kp_style})
expect_err(st, j, 400, "INVALID_FIELD_ERR", "ciphertext", "KP format")
for bad in ("not base64", w["ciphertext"][:-2], w["ciphertext"] + "=", "A" * 9000):
    st, j = action(K, "unwrap", {"ciphertext": bad})
    expect_err(st, j, 400, "INVALID_FIELD_ERR", "ciphertext", bad[:20])
st, u = unwrap_blob(blob)
assert st == 200 and u["plaintext"] == dek, u
ok("ciphertext: every byte class changed (magic/format 400, version/iv/ct/tag 422), cut, extended, wrong/missing AAD, another key/instance/deployment, KP's format, bad base64 — refused with KP reasons; the original still unwraps")

# --- rotation -------------------------------------------------------------------------------------
R = create("rotating")["id"]
dek_r = rand_b64(32)
st, w1 = action(R, "wrap", {"plaintext": dek_r, "aad": ["r"]})
v1 = w1["keyVersion"]["id"]
versions = [v1]
for i in range(3):
    st, j = action(R, "rotate")
    assert st == 204 and j is None, (i, st, j)
    st, j = action(R, "rotate")
    expect_err(st, j, 409, "KEY_ROTATION_NOT_PERMITTED", None, "rotate again at once")
    versions.append(key(R)["keyVersion"]["id"])
    time.sleep(1.1)
assert len(set(versions)) == 4, versions
meta = key(R)
assert meta["lastRotateDate"] and meta["keyVersion"]["id"] == versions[-1], meta
st, j = call("GET", "/api/v2/keys/%s/versions" % R)
assert [v["id"] for v in j["resources"]] == versions[::-1], j
st, u = action(R, "unwrap", {"ciphertext": w1["ciphertext"], "aad": ["r"]})
assert st == 200 and u["plaintext"] == dek_r and u["keyVersion"]["id"] == v1, u
assert u["rewrappedKeyVersion"]["id"] == versions[-1] and u["ciphertext"] != w1["ciphertext"], u
assert unb64(u["ciphertext"])[4:20] == uuid.UUID(versions[-1]).bytes
st, u2 = action(R, "unwrap", {"ciphertext": u["ciphertext"], "aad": ["r"]})
assert st == 200 and u2["plaintext"] == dek_r and u2["keyVersion"]["id"] == versions[-1], u2
assert "ciphertext" not in u2 and "rewrappedKeyVersion" not in u2, u2
st, rw = action(R, "rewrap", {"ciphertext": w1["ciphertext"], "aad": ["r"]})
assert st == 200 and "plaintext" not in rw, rw
assert rw["keyVersion"]["id"] == v1 and rw["rewrappedKeyVersion"]["id"] == versions[-1], rw
st, u3 = action(R, "unwrap", {"ciphertext": rw["ciphertext"], "aad": ["r"]})
assert u3["plaintext"] == dek_r and "ciphertext" not in u3, u3
st, j = action(R, "unwrap", {"ciphertext": w1["ciphertext"], "aad": ["x"]})
expect_err(st, j, 422, "UNPROCESSABLE_CIPHERTEXT_ERR", None, "rotated, wrong aad")
st, w2 = action(R, "wrap", {"plaintext": dek_r})
assert w2["keyVersion"]["id"] == versions[-1], w2
ok("a DEK wrapped before three rotations unwraps, with a ciphertext rewrapped under the newest version (which unwraps without rewrap); rewrap gives the same; rotations 1 s apart (409 KEY_ROTATION_NOT_PERMITTED)")

I = imp["id"]
st, j = action(I, "rotate")
expect_err(st, j, 400, "KEY_PAYLOAD_REQ_ERR", "payload", "imported without payload")
st, j = action(I, "rotate", {"payload": rand_b64(20)})
expect_err(st, j, 400, "INVALID_FIELD_ERR", "payload", "bad size")
st, j = action(I, "rotate", {"payload": "**"})
expect_err(st, j, 400, "INVALID_FIELD_ERR", "payload", "bad base64")
st, j = action(R, "rotate", {"payload": rand_b64(32)})
expect_err(st, j, 400, "BAD_BODY_ERR", "payload", "payload for a generated key")
st, j = action(I, "rotate", {"payload": rand_b64(32), "colour": 1})
expect_err(st, j, 400, "BAD_BODY_ERR", None, "unknown field")
st, wi = action(I, "wrap", {"plaintext": dek})
st, j = action(I, "rotate", {"payload": rand_b64(16)})
assert st == 204, j
st, u = action(I, "unwrap", {"ciphertext": wi["ciphertext"]})
assert st == 200 and u["plaintext"] == dek and u["rewrappedKeyVersion"], u
st, j = action(std["id"], "rotate")
expect_err(st, j, 400, "KEY_ROOT_REQ_ERR", None, "rotate standard")
ok("imported keys rotate only with new material (400 KEY_PAYLOAD_REQ_ERR), generated keys only without; old DEKs still unwrap")

save(K=K, R=R, dek=dek, aad=aad, ct=w["ciphertext"], std=std["id"], imp=I)
PY
pass "keys, wrap/unwrap, ciphertext tampering, rotation"

python3 - <<'PY'
import os, sys, time, urllib.parse, uuid
sys.path.insert(0, os.environ["T"])
from kp import *
S = load()
os.environ["INST"] = S["INST"]
ACCT = S["ACCT"]

# --- the state machine: every state × action cell -----------------------------------------------
ACTIONS = ["read", "metadata", "versions", "wrap", "unwrap", "rewrap", "rotate", "disable", "enable",
           "setKeyForDeletion", "unsetKeyForDeletion", "delete", "restore", "purge", "register", "alias"]
# expected (status, reason or None, state after; None after = the key is gone)
A, SU, DE, DS = 1, 2, 3, 5
BAD = (409, "KEY_ACTION_INVALID_STATE_ERR")
GONE = (410, "KEY_DELETED_ERR")
REG = (422, "KEY_INVALID_STATE_ERR")
EXPECT = {
    A: {"read": 200, "metadata": 200, "versions": 200, "wrap": 200, "unwrap": 200, "rewrap": 200, "rotate": (204, A),
        "disable": (204, SU), "enable": BAD, "setKeyForDeletion": 204, "unsetKeyForDeletion": 204,
        "delete": (204, DS), "restore": BAD, "purge": BAD, "register": 201, "alias": 201},
    SU: {"read": 200, "metadata": 200, "versions": 200, "wrap": BAD, "unwrap": BAD, "rewrap": BAD, "rotate": BAD,
         "disable": BAD, "enable": (204, A), "setKeyForDeletion": BAD, "unsetKeyForDeletion": BAD,
         "delete": (204, DS), "restore": BAD, "purge": BAD, "register": REG, "alias": 201},
    DE: {"read": 200, "metadata": 200, "versions": 200, "wrap": BAD, "unwrap": 200, "rewrap": 200, "rotate": (204, DE),
         "disable": BAD, "enable": BAD, "setKeyForDeletion": BAD, "unsetKeyForDeletion": BAD,
         "delete": (204, DS), "restore": BAD, "purge": BAD, "register": REG, "alias": 201},
    DS: {"read": 200, "metadata": 200, "versions": GONE, "wrap": GONE, "unwrap": GONE, "rewrap": GONE, "rotate": GONE,
         "disable": GONE, "enable": GONE, "setKeyForDeletion": GONE, "unsetKeyForDeletion": GONE,
         "delete": GONE, "restore": (201, A), "purge": (204, None), "register": GONE, "alias": GONE},
}
cells = {}
for s in (A, SU, DS, DE):
    if s == DE:  # made last, to expire soon after
        expire_at = time.time() + 5
        expire = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expire_at))
    for a in ACTIONS:
        k = create("cell-%d-%s" % (s, a), expiration=expire if s == DE else None)
        st, w = action(k["id"], "wrap")
        assert st == 200, w
        secret(w["plaintext"])
        if a in ("setKeyForDeletion", "unsetKeyForDeletion") and s != DS:
            st, j = call("PUT", "/api/v2/keys/%s/policies?policy=dualAuthDelete" % k["id"],
                         envelope([{"type": "application/vnd.ibm.kms.policy+json", "dualAuthDelete": {"enabled": True}}],
                                  ctype="application/vnd.ibm.kms.policy+json"))
            assert st == 200 and j["resources"][0]["dualAuthDelete"]["enabled"] is True, j
        if s == SU:
            assert action(k["id"], "disable")[0] == 204
        if s == DS:
            st, j = call("DELETE", "/api/v2/keys/%s" % k["id"])
            assert st == 204, j
        cells[(s, a)] = (k["id"], w["ciphertext"])
# past the expiration, the enable delay (2 s) and the purge delay (2 s)
time.sleep(max(0, expire_at - time.time()) + 1.5)

def do(a, kid, ct):
    crn = "crn:v1:sealvm:local:images:us-south:a/%s:%s:image:%s" % (ACCT, S["INST"], uuid.uuid4())
    if a == "read":
        return call("GET", "/api/v2/keys/%s" % kid)
    if a == "metadata":
        return call("GET", "/api/v2/keys/%s/metadata" % kid)
    if a == "versions":
        return call("GET", "/api/v2/keys/%s/versions" % kid)
    if a in ("wrap", "rotate", "disable", "enable", "setKeyForDeletion", "unsetKeyForDeletion"):
        return action(kid, a)
    if a in ("unwrap", "rewrap"):
        return action(kid, a, {"ciphertext": ct})
    if a == "delete":
        return call("DELETE", "/api/v2/keys/%s" % kid)
    if a == "restore":
        return call("POST", "/api/v2/keys/%s/restore" % kid)
    if a == "purge":
        return call("DELETE", "/api/v2/keys/%s/purge" % kid)
    if a == "register":
        return call("POST", "/api/v2/keys/%s/registrations/%s" % (kid, urllib.parse.quote(crn, safe="")))
    if a == "alias":
        return call("POST", "/api/v2/keys/%s/aliases/cell-%s" % (kid, uuid.uuid4().hex[:8]))

wrong = 0
for (s, a), (kid, ct) in sorted(cells.items()):
    before = key(kid)
    assert before["state"] == s, (s, a, before)
    want = EXPECT[s][a]
    st, j = do(a, kid, ct)
    if isinstance(want, tuple) and isinstance(want[1], str):
        status, code, after = want[0], want[1], s
    elif isinstance(want, tuple):
        status, code, after = want[0], None, want[1]
    else:
        status, code, after = want, None, s
    good = st == status and (code is None or (j and reason(j) == code))
    if after is None:
        good = good and call("GET", "/api/v2/keys/%s/metadata" % kid)[0] == 404
    else:
        now = key(kid)
        good = good and now["state"] == after
        if code:  # refused: nothing changed
            good = good and now["lastUpdateDate"] == before["lastUpdateDate"] and \
                now["keyVersion"] == before["keyVersion"] and now["aliases"] == before["aliases"]
    if not good:
        wrong += 1
        print("WRONG cell state %d × %s: got %d %s, want %s" % (s, a, st, j, want), file=sys.stderr)
assert wrong == 0, "%d wrong cells" % wrong
ok("state machine: %d cells (4 states × %d actions), each allowed with its state after or refused with its reason and nothing changed" % (len(cells), len(ACTIONS)))

# the standard-key column, the timing rules
sk = S["std"]
for verb in ("wrap", "unwrap", "rewrap", "rotate", "disable", "enable"):
    st, j = action(sk, verb, {"ciphertext": S["ct"]} if verb in ("unwrap", "rewrap") else None)
    expect_err(st, j, 400, "KEY_ROOT_REQ_ERR", None, verb)
crn = "crn:v1:sealvm:local:images:us-south:a/%s:%s:image:x" % (ACCT, S["INST"])
st, j = call("POST", "/api/v2/keys/%s/registrations/%s" % (sk, urllib.parse.quote(crn, safe="")))
expect_err(st, j, 422, "KEY_ROOT_REQ_REG_ERR", None, "register standard")
k = create("timing")["id"]
assert action(k, "disable")[0] == 204
st, j = action(k, "enable")
expect_err(st, j, 409, "REQ_TOO_EARLY_ERR", None, "enable too early")
assert key(k)["state"] == 2
time.sleep(2.2)
assert action(k, "enable")[0] == 204 and key(k)["state"] == 1
st, j = call("DELETE", "/api/v2/keys/%s" % k)
st, j = call("DELETE", "/api/v2/keys/%s/purge" % k)
expect_err(st, j, 409, "REQ_TOO_EARLY_ERR", None, "purge too early")
st, j = call("GET", "/api/v2/keys/%s" % k)
m = j["resources"][0]
assert m["state"] == 5 and m["deleted"] is True and m["deletedBy"] and m["purgeAllowed"] is False and m["restoreAllowed"], m
st, j = call("GET", "/api/v2/keys?state=5")
assert k in [x["id"] for x in j["resources"]], j
st, j = call("GET", "/api/v2/keys")
assert k not in [x["id"] for x in j["resources"]], j
ok("standard keys: 400 KEY_ROOT_REQ_ERR / 422 KEY_ROOT_REQ_REG_ERR; enable and purge wait their delays (409 REQ_TOO_EARLY_ERR); deleted keys only under state=5")

# --- expiration ------------------------------------------------------------------------------------------
k = create("expiring", expiration=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2)))
st, w = action(k["id"], "wrap")
secret(w["plaintext"])
time.sleep(3.1)
m = key(k["id"])
assert m["state"] == 3 and m["expirationDate"], m
st, j = call("GET", "/api/v2/keys?state=3")
assert k["id"] in [x["id"] for x in j["resources"]], j
st, j = action(k["id"], "wrap")
expect_err(st, j, 409, "KEY_ACTION_INVALID_STATE_ERR", None, "wrap expired")
st, u = action(k["id"], "unwrap", {"ciphertext": w["ciphertext"]})
assert st == 200 and u["plaintext"] == w["plaintext"], u
assert call("DELETE", "/api/v2/keys/%s" % k["id"])[0] == 204
st, j = call("POST", "/api/v2/keys/%s/restore" % k["id"])
expect_err(st, j, 400, "KEY_EXPIRED_ERR", None, "restore expired")
ok("expirationDate: the key becomes Deactivated (3): no wrap, unwrap still works; a deleted expired key is not restored (400 KEY_EXPIRED_ERR)")
PY
pass "state machine and timing rules"

python3 - <<'PY'
import os, sys, time, urllib.parse, uuid
sys.path.insert(0, os.environ["T"])
from kp import *
S = load()
os.environ["INST"] = INST = S["INST"]
ACCT = S["ACCT"]
q = lambda c: urllib.parse.quote(c, safe="")

# --- registrations ----------------------------------------------------------------------------------
k = create("registered")["id"]
c1 = "crn:v1:sealvm:local:images:us-south:a/%s:%s:image:one" % (ACCT, INST)
c2 = "crn:v1:sealvm:local:block-storage:us-south:a/%s:%s:volume:two" % (ACCT, INST)
st, j = call("POST", "/api/v2/keys/%s/registrations/%s" % (k, q(c1)),
             envelope([{"description": "an image", "preventKeyDeletion": False}], ctype="application/vnd.ibm.kms.registration_input+json"))
assert st == 201 and j["metadata"]["collectionType"] == "application/vnd.ibm.kms.registration+json", j
r = j["resources"][0]
assert r["keyId"] == k and r["resourceCrn"] == c1 and r["description"] == "an image" and r["preventKeyDeletion"] is False, r
assert r["keyVersion"]["id"] == key(k)["keyVersion"]["id"] and r["createdBy"] and r["creationDate"], r
st, j = call("POST", "/api/v2/keys/%s/registrations/%s" % (k, q(c1)), envelope([{"description": "updated"}]))
assert st == 200 and j["resources"][0]["description"] == "updated", j
st, j = call("GET", "/api/v2/keys/%s/registrations" % k)
assert st == 200 and [x["resourceCrn"] for x in j["resources"]] == [c1], j
st, j = call("DELETE", "/api/v2/keys/%s" % k)
expect_err(st, j, 409, "PROTECTED_RESOURCE_ERR", None, "delete registered")
assert key(k)["state"] == 1
st, j = call("POST", "/api/v2/keys/%s/registrations/%s" % (k, q(c2)), envelope([{"preventKeyDeletion": True}]))
assert st == 201 and j["resources"][0]["preventKeyDeletion"] is True, j
st, j = call("GET", "/api/v2/keys/registrations")
assert {x["resourceCrn"] for x in j["resources"]} >= {c1, c2}, j
st, j = call("GET", "/api/v2/keys/registrations?urlEncodedResourceCRNQuery=" + q(c2))
assert [x["resourceCrn"] for x in j["resources"]] == [c2], j
st, j = call("DELETE", "/api/v2/keys/%s?force=true" % k)
expect_err(st, j, 409, "PREV_KEY_DEL_ERR", None, "force with preventKeyDeletion")
assert key(k)["state"] == 1
st, j = call("DELETE", "/api/v2/keys/%s/registrations/%s" % (k, q(c2)))
assert st == 204, j
st, j = call("DELETE", "/api/v2/keys/%s/registrations/%s" % (k, q(c2)))
expect_err(st, j, 404, "REGISTRATION_NOT_FOUND_ERR", None, "registration gone")
st, j = call("DELETE", "/api/v2/keys/%s?force=maybe" % k)
expect_err(st, j, 400, "INVALID_QUERY_PARAM_ERR", "force", "force=maybe")
st, j = call("DELETE", "/api/v2/keys/%s?force=true" % k, headers={"prefer": "return=representation"})
assert st == 200 and j["resources"][0]["state"] == 5 and j["resources"][0]["deleted"] is True, j
for bad in ("not-a-crn", "crn:v1:x", "crn:v1:sealvm:local:images:us-south:a/otheraccount:%s:image:x" % INST,
            "crn:v1:sealvm:local:IMAGES:us-south:a/%s:x:image:y" % ACCT):
    k2 = create("reg-bad")["id"]
    st, j = call("POST", "/api/v2/keys/%s/registrations/%s" % (k2, q(bad)))
    expect_err(st, j, 400, "INVALID_FIELD_ERR", "resourceCrn", bad)
st, j = call("POST", "/api/v2/keys/%s/registrations/%s" % (k2, q(c1)), envelope([{"preventKeyDeletion": "yes"}]))
expect_err(st, j, 400, "INVALID_FIELD_ERR", "preventKeyDeletion", "bad prevent")
st, j = call("POST", "/api/v2/keys/%s/registrations/%s" % (k2, q(c1)), envelope([{"owner": "x"}]))
expect_err(st, j, 400, "BAD_BODY_ERR", None, "unknown registration field")
ok("registrations: create/update/list (per key, per instance, by CRN), delete refused (409 PROTECTED_RESOURCE_ERR) unless force, force refused with preventKeyDeletion (409 PREV_KEY_DEL_ERR); bad CRNs 400")

# --- roles: Reader, ReaderPlus, Manager, KeyPurge -----------------------------------------------------
reader, _ = principal("reader", ACCT, ["Reader"], INST)
rplus, _ = principal("readerplus", ACCT, ["ReaderPlus"], INST)
manager, manager_id = principal("manager", ACCT, ["Manager"], INST)
purger, _ = principal("purger", ACCT, ["KeyPurge"], INST)
std = S["std"]
st, j = call("GET", "/api/v2/keys/%s" % std, tok=reader)
assert st == 403 and "kms.secrets.read" in j["resources"][0]["errorMsg"], j
st, j = call("GET", "/api/v2/keys/%s/metadata" % std, tok=reader)
assert st == 200 and "payload" not in j["resources"][0], j
st, j = call("GET", "/api/v2/keys/%s" % std, tok=rplus)
assert st == 200 and j["resources"][0]["payload"], j
st, j = call("GET", "/api/v2/keys/%s" % S["K"], tok=rplus)
assert st == 200 and "payload" not in j["resources"][0], j
st, j = action(S["K"], "unwrap", {"ciphertext": S["ct"], "aad": S["aad"]}, tok=reader)
assert st == 200 and j["plaintext"] == S["dek"], j
st, j = call("POST", "/api/v2/keys", envelope([{"name": "by-reader"}]), tok=reader)
assert st == 403, j
st, j = action(S["K"], "disable", tok=rplus)
assert st == 403, j
st, j = call("GET", "/api/v2/keys/%s" % S["K"], tok=reader, inst=S["INST2"])
assert st in (403, 404), j
ok("roles: Reader lists, reads metadata and unwraps but cannot read a key (403 naming kms.secrets.read) nor create; ReaderPlus reads a standard key's payload; disable needs Manager")

# --- dual authorization -------------------------------------------------------------------------------
st, j = call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete",
             envelope([{"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}}], ctype="application/vnd.ibm.kms.policy+json"))
assert st == 204, j
st, j = call("GET", "/api/v2/instance/policies?policy=dualAuthDelete")
assert st == 200 and j["resources"][0]["policy_data"]["enabled"] is True, j
d = create("dual")["id"]
assert key(d)["dualAuthDelete"]["enabled"] is True
st, j = call("DELETE", "/api/v2/keys/%s" % d)
expect_err(st, j, 409, "AUTHORIZATIONS_NOT_MET", None, "no prior authorization")
assert action(d, "setKeyForDeletion")[0] == 204
m = key(d)
assert m["dualAuthDelete"]["keySetForDeletion"] is True and m["dualAuthDelete"]["authExpiration"] and m["state"] == 1, m
st, j = call("DELETE", "/api/v2/keys/%s" % d)
expect_err(st, j, 409, "AUTHORIZATIONS_NOT_MET", None, "same user")
assert action(d, "unsetKeyForDeletion")[0] == 204
st, j = call("DELETE", "/api/v2/keys/%s" % d, tok=manager)
expect_err(st, j, 409, "AUTHORIZATIONS_NOT_MET", None, "after unset")
assert action(d, "setKeyForDeletion")[0] == 204
time.sleep(3.2)  # past kms.dual_auth_window_s
st, j = call("DELETE", "/api/v2/keys/%s" % d, tok=manager)
expect_err(st, j, 409, "AUTHORIZATIONS_NOT_MET", None, "authorization expired")
assert action(d, "setKeyForDeletion")[0] == 204
st, j = call("DELETE", "/api/v2/keys/%s" % d, tok=manager)
assert st == 204, j
assert key(d)["state"] == 5
st, j = call("PUT", "/api/v2/instance/policies?policy=dualAuthDelete",
             envelope([{"policy_type": "dualAuthDelete", "policy_data": {"enabled": False}}]))
assert st == 204, j
nd = create("no-dual")["id"]
st, j = action(nd, "setKeyForDeletion")
expect_err(st, j, 409, "NOT_DUAL_AUTH_ERR", None, "not dual auth")
st, j = call("GET", "/api/v2/keys/%s/policies" % nd)
assert st == 200 and j["resources"][0]["dualAuthDelete"]["enabled"] is False, j
for path, body, code, field in (
        ("/api/v2/instance/policies", envelope([{"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}}]), "INVALID_QUERY_PARAM_ERR", "policy"),
        ("/api/v2/instance/policies?policy=rotation", envelope([{"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}}]), "INVALID_QUERY_PARAM_ERR", "policy"),
        ("/api/v2/instance/policies?policy=dualAuthDelete", envelope([{"policy_type": "allowedIP", "policy_data": {"enabled": True}}]), "BODY_QUERY_PARAM_MISMATCH_ERR", None),
        ("/api/v2/instance/policies?policy=dualAuthDelete", envelope([{"policy_type": "dualAuthDelete", "policy_data": {"enabled": 1}}]), "INVALID_FIELD_ERR", "policy_data"),
        ("/api/v2/instance/policies?policy=dualAuthDelete", envelope([{"policy_type": "dualAuthDelete", "policy_data": {"enabled": True}}], total=3), "COLLECTION_TOTAL_MISMATCH_ERR", None),
        ("/api/v2/keys/%s/policies?policy=dualAuthDelete" % nd, envelope([{"dualAuthDelete": {"enabled": True, "x": 1}}]), "BAD_BODY_ERR", None),
        ("/api/v2/keys/%s/policies?policy=dualAuthDelete" % nd, envelope([{"dualAuthDelete": True}]), "INVALID_FIELD_ERR", "dualAuthDelete")):
    st, j = call("PUT", path, body)
    expect_err(st, j, 400, code, field, (path, body))
st, j = call("GET", "/api/v2/instance/policies")
assert j["resources"][0]["policy_data"]["enabled"] is False, j
ok("dual authorization: instance policy reaches new keys; delete needs setKeyForDeletion by another user within the window (409 AUTHORIZATIONS_NOT_MET otherwise), unset cancels; NOT_DUAL_AUTH_ERR without the policy; bad policy bodies 400")

# --- restore and purge ------------------------------------------------------------------------------------
k = create("restorable")
st, w = action(k["id"], "wrap")
secret(w["plaintext"])
assert call("DELETE", "/api/v2/keys/%s" % k["id"])[0] == 204
st, j = action(k["id"], "unwrap", {"ciphertext": w["ciphertext"]})
expect_err(st, j, 410, "KEY_DELETED_ERR", None, "unwrap deleted")
st, j = call("POST", "/api/v2/keys/%s/restore" % k["id"], envelope([{"payload": rand_b64(32)}]))
assert st == 201 and j["resources"][0]["state"] == 1 and j["resources"][0]["deleted"] is False, j
st, u = action(k["id"], "unwrap", {"ciphertext": w["ciphertext"]})
assert st == 200 and u["plaintext"] == w["plaintext"], u
p = create("purgeable")["id"]
assert call("DELETE", "/api/v2/keys/%s" % p)[0] == 204
time.sleep(2.1)
st, j = call("DELETE", "/api/v2/keys/%s/purge" % p, tok=manager)
assert st == 403 and "kms.secrets.purge" in j["resources"][0]["errorMsg"], j
st, j = call("DELETE", "/api/v2/keys/%s/purge" % p, tok=purger, headers={"prefer": "return=representation"})
assert st == 200 and j["resources"][0]["id"] == p, j
st, j = call("GET", "/api/v2/keys/%s/metadata" % p)
expect_err(st, j, 404, "KEY_NOT_FOUND_ERR", None, "purged")
late = create("restore-late")["id"]
assert call("DELETE", "/api/v2/keys/%s" % late)[0] == 204
save(late=late)
ok("restore (within the window; the old DEK unwraps again), purge: KeyPurge only (Manager 403), after its delay; a purged key is gone (404)")
PY
pass "registrations, roles, dual authorization, restore, purge"

# --- a restart with a 1-second restore window --------------------------------------------------
stop_daemon
mkcfg 1
sleep 1.2
start_kms data d3.log
TOK=$(token owner.key)
export URL TOK
python3 - <<'PY'
import os, sys
sys.path.insert(0, os.environ["T"])
from kp import *
S = load()
os.environ["INST"] = S["INST"]
st, j = call("POST", "/api/v2/keys/%s/restore" % S["late"])
expect_err(st, j, 400, "KEY_RESTORE_EXPIRED", None, "window passed")
assert key(S["late"])["state"] == 5
st, u = action(S["R"], "unwrap", {"ciphertext": S["ct"], "aad": S["aad"]})  # wrong key for ct: 422
assert st == 422, u
st, u = action(S["K"], "unwrap", {"ciphertext": S["ct"], "aad": S["aad"]})
assert st == 200 and u["plaintext"] == S["dek"], u
ok("after a restart: keys still unwrap; a restore after the (shorter) window is refused: 400 KEY_RESTORE_EXPIRED")
PY
pass "restart: restore window"

# --- deleting a kms instance -------------------------------------------------------------------
python3 - <<'PY' || fail "deleting a kms instance"
import json, os, sys
sys.path.insert(0, os.environ["T"])
from kp import call, create
st, j = call("POST", "/v2/resource_instances",
             {"name": "short-lived", "target": "us-south", "resource_id": "kms"}, inst="")
assert st == 201, (st, j)
g = j["guid"]
kid = create("the-last-key", inst=g)["id"]
# While it holds a key that is not deleted, the instance stays (and so does the key).
st, j = call("DELETE", "/v2/resource_instances/" + g, inst="")
assert st == 409 and "RESOURCE_INSTANCE_NOT_EMPTY" in json.dumps(j) and "1 key" in json.dumps(j), (st, j)
assert call("GET", "/v2/resource_instances/" + g, inst="")[0] == 200
assert call("GET", "/api/v2/keys/%s/metadata" % kid, inst=g)[0] == 200
# Deleted keys (restorable for a while) go with the instance.
assert call("DELETE", "/api/v2/keys/%s" % kid, inst=g)[0] == 204
assert call("DELETE", "/v2/resource_instances/" + g, inst="")[0] == 204
assert call("GET", "/v2/resource_instances/" + g, inst="")[0] == 404
PY
pass "a kms instance with a key that is not deleted is not deleted (409 RESOURCE_INSTANCE_NOT_EMPTY); once its keys are deleted it goes"

# --- audit --------------------------------------------------------------------------------------------
python3 - events.json <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["T"])
from kp import call
ev, nxt = [], None
while True:
    st, j = call("GET", "/v1/events?action=kms.&limit=1000" + ("&next=%d" % nxt if nxt else ""), inst="")
    assert st == 200, (st, j)
    ev += j["events"]
    nxt = j["next"]
    if not nxt:
        break
json.dump(ev, open(sys.argv[1], "w"))
acts = {e["action"] for e in ev}
for a in ("kms.secrets.create", "kms.secrets.wrap", "kms.secrets.unwrap", "kms.secrets.rewrap", "kms.secrets.rotate",
          "kms.secrets.disable", "kms.secrets.enable", "kms.secrets.delete", "kms.secrets.restore", "kms.secrets.purge",
          "kms.secrets.read", "kms.secrets.list", "kms.secrets-metadata.read", "kms.secrets-key-versions.list",
          "kms.secrets.setkeyfordeletion", "kms.secrets.unsetkeyfordeletion", "kms.secrets-alias.create",
          "kms.registrations.create", "kms.registrations.list", "kms.registrations.delete",
          "kms.instance-policies.write", "kms.policies.write"):
    assert a in acts, (a, sorted(acts))
fails = [e for e in ev if e["outcome"] == "failure"]
assert any(e["reason"]["reasonCode"] == 422 for e in fails) and any(e["reason"]["reasonCode"] == 410 for e in fails), "failures audited"
unwraps = [e for e in ev if e["action"] == "kms.secrets.unwrap" and e["outcome"] == "success"]
assert unwraps and all(e["target"]["id"].startswith("crn:v1:sealvm:local:kms:") for e in unwraps), unwraps[:1]
assert any("rewrappedKeyVersionId" in e.get("responseData", {}) for e in unwraps), "rewrap noted"
for e in ev:
    blob = json.dumps(e)
    for word in ('"plaintext"', '"ciphertext"', '"payload"', '"encryptedNonce"'):
        assert word not in blob, (word, e)
PY
curl -sf "$URL/v1/events/verify" -H "Authorization: Bearer $TOK" | python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["ok"], j'
pass "audit: every kind of call recorded (failures with their status), no plaintext/ciphertext/payload field; the chain verifies"

stop_daemon
# --- no key material anywhere -----------------------------------------------------------------
[ -s secrets.txt ] || fail "no secrets recorded"
awk 'length($0) >= 16' secrets.txt | sort -u >patterns.txt
n=$(wc -l <patterns.txt)
[ "$n" -ge 100 ] || fail "only $n secret forms to look for"
files=(data/* data2/* d.log d2.log d3.log init.log init2.log events.json)
[ "$KEYSTORE" = pkcs11 ] && files+=(hsm/tokens/*/*)
leaks=$(grep -aFl -f patterns.txt "${files[@]}" 2>/dev/null || true)
[ -z "$leaks" ] || fail "key material found in: $leaks"
# the search itself can find: a planted copy is found
head -1 patterns.txt >>d3.log
[ -n "$(grep -aFl -f patterns.txt d3.log)" ] || fail "the leak search finds nothing it should"
pass "no DEK, payload or generated key ($n forms: base64, hex, prefixes) in the data dir, the $KEYSTORE keystore, the logs or the audit trail"
