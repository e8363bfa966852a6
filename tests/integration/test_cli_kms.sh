#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `sealvm kms ...` against a real sealvmd: every command, the secure import end to end (its
# wire checked through a recording proxy: the nonce really is sealed under the file's material
# and the material never travels in clear), wrap/unwrap/rewrap round trips across rotations,
# the refusals (an expired import token, one used beyond its retrievals, a wrong nonce, a wrong
# nonce IV, tampered WDEKs, wrong AAD, bad files, existing outputs, states) with exit 1 and
# the reason, usage errors with exit 2, and no DEK or key material in the data dir or the logs.
# KEYSTORE=soft (default) or pkcs11 (a SoftHSM2 token made for the run, tests/softhsm.sh).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need curl python3
PY=/usr/bin/python3
$PY -c 'import cryptography' 2>/dev/null || skip "needs /usr/bin/python3 with cryptography (python3-cryptography)"
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; [ -n "${PPID_PROXY:-}" ] && kill $PPID_PROXY 2>/dev/null; chattr -R -i "$T" 2>/dev/null; rm -rf "$T"; exit $rc' EXIT
export XDG_CONFIG_HOME="$T/config"
unset SEALVM_ENDPOINT SEALVM_TOKEN SEALVM_APIKEY_FILE SEALVM_KMS_INSTANCE
S() { "$SEALVM" "$@"; }
jf() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
# secrets the test used: every one is looked for in the data dir and the logs at the end
SECRETS=()
secret() { SECRETS+=("$T/$1"); }

# Timing rules shortened: enable and rotate may follow each other at once, an import token may
# live 1 s (so that one can expire during the test).
KEYSTORE=${KEYSTORE:-soft}
case $KEYSTORE in
soft) KS_JSON='{"backend": "soft"}' ;;
pkcs11)
	. "$HERE/../softhsm.sh"
	rc=0
	softhsm_setup "$T/hsm" || rc=$?
	[ $rc = 77 ] && skip "KEYSTORE=pkcs11 needs SoftHSM2 (softhsm2, libsofthsm2)"
	[ $rc = 0 ] || fail "softhsm_setup failed ($rc)"
	KS_JSON=$(python3 -c 'import json,os; print(json.dumps({"backend": "pkcs11", "pkcs11": {"module": os.environ["SEALVM_TEST_PKCS11_MODULE"], "token_label": os.environ["SEALVM_TEST_PKCS11_TOKEN"], "pin_file": os.environ["SEALVM_TEST_PKCS11_PIN_FILE"]}}))')
	;;
*) fail "KEYSTORE=$KEYSTORE: soft or pkcs11" ;;
esac
cat >sealvmd.json <<EOF
{ "keystore": $KS_JSON,
  "kms": { "enable_delay_s": 0, "rotate_interval_s": 0, "import_token_min_s": 1 } }
EOF
"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log
NSTART=0
# start_daemon_cfg — sealvmd with sealvmd.json; each start logs to its own daemon.N.log.
start_daemon_cfg() {
	NSTART=$((NSTART + 1))
	local log=daemon.$NSTART.log i
	"$SEALVMD" --data-dir data --config sealvmd.json --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >"$log" 2>&1 &
	DPID=$!
	PORT=
	for i in $(seq 1 100); do
		PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' "$log" 2>/dev/null | head -1 || true)
		[ -n "$PORT" ] && break
		kill -0 $DPID 2>/dev/null || { cat "$log" >&2; fail "sealvmd exited at start"; }
		sleep 0.1
	done
	[ -n "$PORT" ] || { cat "$log" >&2; fail "sealvmd did not report its port"; }
	URL="http://127.0.0.1:$PORT"
}
start_daemon_cfg
S login --endpoint "$URL" --apikey-file owner.key >/dev/null
S resource instance create cli-keys --service kms --json >inst.json
INST=$(jf inst.json 'j["guid"]')

# --- usage: --help everywhere, exit 2 with a message for what is wrong ----------------------------
for cmd in "kms" "kms key" "kms import-token"; do
	S $cmd --help | grep -q "^Usage: sealvm $cmd COMMAND" || fail "$cmd --help"
done
for cmd in "key create" "key import" "key list" "key show" "key delete" "key restore" "key disable" \
	"key enable" "key rotate" "key versions" "wrap" "unwrap" "rewrap" "import-token create" "import-token show"; do
	S kms $cmd --help >help.out || fail "kms $cmd --help: exit $?"
	grep -q "^Usage: sealvm kms $cmd" help.out || fail "kms $cmd --help: $(head -1 help.out)"
done
expect_usage S kms
expect_usage S kms nosuch
expect_usage S kms key list # no instance
grep -q "SEALVM_KMS_INSTANCE" .err || fail "the missing instance is not explained"
expect_usage S kms key list --instance 'x: y'
expect_usage S kms key list --instance "$INST" --nosuch
expect_usage S kms key create --instance "$INST"
expect_usage S kms key create a b --instance "$INST"
expect_usage S kms key list --instance "$INST" --state sideways
expect_usage S kms key list --instance "$INST" --limit 0
expect_usage S kms key import k --instance "$INST" # no --key-file
expect_usage S kms key import k --instance "$INST" --key-file x --secure --standard
expect_usage S kms wrap k --instance "$INST"                                   # neither DEK option
expect_usage S kms wrap k --instance "$INST" --dek-file a --dek-out b          # both
expect_usage S kms wrap k --instance "$INST" --dek-out -                       # DEK and WDEK on stdout
expect_usage S kms unwrap k --instance "$INST" --wdek-file a                   # no --dek-out
expect_usage S kms wrap k --instance "$INST" --dek-out - --out w --json         # DEK and JSON on stdout
expect_usage S kms unwrap k --instance "$INST" --wdek-file a --dek-out - --json
expect_usage S kms wrap k --instance "$INST" --dek-file a --aad "$(head -c 256 /dev/zero | tr '\0' a)"
expect_usage S kms import-token create --instance "$INST" --max-retrievals 0
pass "--help at every level; usage errors exit 2 with a message"

export SEALVM_KMS_INSTANCE=$INST
# no request may change anything after a refused command: count the instance's keys
nkeys() { S kms key list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["resources"]))'; }

# --- keys: create, show, list, versions, aliases ---------------------------------------------------
S kms key create root-1 --description "the demo root" --json >k1.json
K1=$(jf k1.json 'j["resources"][0]["id"]')
[ "$(jf k1.json 'j["resources"][0]["state"]')" = 1 ] || fail "new key state: $(cat k1.json)"
[ "$(jf k1.json 'j["resources"][0]["extractable"]')" = False ] || fail "a root key is not extractable"
S kms key show "$K1" >show.out
grep -q "^stateName: *Active$" show.out && grep -q "^kind: *root$" show.out || fail "show: $(cat show.out)"
grep -q "^crn: *crn:v1:.*:kms:.*:key:$K1$" show.out || fail "show: no key CRN: $(cat show.out)"
S kms key create std-1 --standard --alias std-alias --json >s1.json
SK1=$(jf s1.json 'j["resources"][0]["id"]')
S kms key show std-alias --json >s1show.json
[ "$(jf s1show.json 'j["resources"][0]["id"]')" = "$SK1" ] || fail "show by alias"
[ "$(jf s1show.json '"payload" in j["resources"][0]')" = False ] || fail "show gave a payload without --payload-out"
S kms key list >list.out
head -1 list.out | grep -q "^ID  *NAME  *KIND  *STATE  *CREATED" || fail "list header: $(head -1 list.out)"
grep -q "$K1 *root-1 *root *Active" list.out && grep -q "$SK1 *std-1 *standard *Active" list.out || fail "list: $(cat list.out)"
[ "$(S kms key list --limit 1 --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["resources"]))')" = 1 ] || fail "list --limit 1"
S kms key versions "$K1" >versions.out
[ "$(grep -c . versions.out)" = 2 ] || fail "versions of a new key: $(cat versions.out)"
expect_fail KEY_NOT_FOUND_ERR S kms key show 00000000-0000-0000-0000-000000000000
grep -q "HTTP 404" .err || fail "404 not reported: $(cat .err)"
pass "key create (root, standard with alias), show (by id and alias, no payload), list (columns, --limit), versions; 404 names KEY_NOT_FOUND_ERR"

# --- imports: plain (base64 and --raw), standard with payload read-back ------------------------------
S dek generate --out imp32.key && secret imp32.key # 32 random bytes as base64: root key material
S kms key import imp-1 --key-file imp32.key --json >i1.json
I1=$(jf i1.json 'j["resources"][0]["id"]')
[ "$(jf i1.json 'j["resources"][0]["imported"]')" = True ] || fail "imported flag: $(cat i1.json)"
head -c 16 /dev/urandom >imp16.raw && secret imp16.raw
S kms key import imp-raw16 --key-file imp16.raw --raw >/dev/null || fail "import --raw 16 bytes"
head -c 100 /dev/urandom | base64 -w0 >std.key && secret std.key
S kms key import std-imp --standard --key-file std.key --json >si.json
SI=$(jf si.json 'j["resources"][0]["id"]')
S kms key show "$SI" --payload-out std.payload >/dev/null
[ "$(stat -c %a std.payload)" = 600 ] || fail "payload file mode"
same_bytes std.key std.payload
secret std.payload
S kms key show "$SI" --payload-out - >std.stdout
same_bytes std.key std.stdout
secret std.stdout
expect_fail OUTPUT_EXISTS S kms key show "$SI" --payload-out std.payload
expect_fail NO_PAYLOAD S kms key show "$K1" --payload-out root.payload
nothing_written root.payload
before=$(nkeys)
head -c 20 /dev/urandom | base64 -w0 >bad20.key
expect_fail KEY_MATERIAL_SIZE S kms key import bad --key-file bad20.key
printf 'not base64!' >nonb64.key
expect_fail KEY_MATERIAL_NOT_BASE64 S kms key import bad --key-file nonb64.key
expect_fail KEY_MATERIAL_NOT_BASE64 S kms key import bad --key-file /dev/null
expect_fail "cannot read key file" S kms key import bad --key-file nonexistent.key
head -c 7501 /dev/urandom >big.raw
expect_fail KEY_MATERIAL_SIZE S kms key import bad --standard --raw --key-file big.raw
[ "$(nkeys)" = "$before" ] || fail "a refused import created a key"
pass "key import: base64 and --raw root material, standard key read back with --payload-out (0600); bad material refused before any request"

# --- wrap / unwrap / rewrap --------------------------------------------------------------------------
mkdek dek1 && secret dek1
S kms wrap "$K1" --dek-file dek1 >w1.wdek 2>w1.err
grep -q "wrapped under key $K1 version" w1.err || fail "wrap report: $(cat w1.err)"
[ "$(wc -l <w1.wdek)" = 1 ] || fail "wrap: the WDEK alone on stdout"
S kms unwrap "$K1" --wdek-file w1.wdek --dek-out dek1.back >unwrap.out
same_bytes dek1 dek1.back
[ "$(stat -c %a dek1.back)" = 600 ] || fail "unwrapped DEK mode"
secret dek1.back
grep -q "unwrapped with key $K1" unwrap.out || fail "unwrap report"
# generated: the DEK to a new 0600 file, the WDEK to another; the DEK follows the dek rules
S kms wrap "$K1" --dek-out gen.dek --out gen.wdek --json >gen.json
secret gen.dek
[ "$(stat -c %a gen.dek)" = 600 ] || fail "generated DEK mode"
[ "$(wc -c <gen.dek)" = 44 ] && [ "$(wc -l <gen.dek)" = 0 ] || fail "generated DEK: not 44 characters without newline"
[ "$(jf gen.json '"plaintext" in j')" = False ] || fail "--json printed the plaintext"
grep -qF "$(cat gen.dek)" gen.json && fail "the DEK is in the JSON output"
S kms unwrap "$K1" --wdek-file gen.wdek --dek-out - >gen.back 2>/dev/null
secret gen.back
same_bytes gen.dek gen.back
# a DEK wrapped with curl (another client) unwraps through the CLI, and the other way round
TOK=$(token owner.key)
kp() { curl -s -o "$T/.body" -w '%{http_code}' -X "$1" "$URL/api/v2$2" -H "Authorization: Bearer $TOK" \
	-H "bluemix-instance: $INST" -H 'Content-Type: application/json' ${3:+--data-binary "$3"}; }
mkdek dek2 && secret dek2
[ "$(kp POST "/keys/$K1/actions/wrap" "{\"plaintext\":\"$(cat dek2)\"}")" = 200 ] || fail "curl wrap: $(cat .body)"
jget 'j["ciphertext"]' >curl.wdek
S kms unwrap "$K1" --wdek-file curl.wdek --dek-out dek2.back >/dev/null
same_bytes dek2 dek2.back && secret dek2.back
[ "$(kp POST "/keys/$K1/actions/unwrap" "{\"ciphertext\":\"$(cat w1.wdek)\"}")" = 200 ] || fail "curl unwrap: $(cat .body)"
[ "$(jget 'j["plaintext"]')" = "$(cat dek1)" ] || fail "curl unwrap of a CLI WDEK"
rm -f .body
# AAD binds: the same list unwraps, another is refused and nothing is written
S kms wrap "$K1" --dek-file dek1 --aad vm-1 --aad disk-0 --out aad.wdek >/dev/null
S kms unwrap "$K1" --wdek-file aad.wdek --aad vm-1 --aad disk-0 --dek-out aad.back >/dev/null
same_bytes dek1 aad.back && secret aad.back
expect_fail "ERR" S kms unwrap "$K1" --wdek-file aad.wdek --aad vm-2 --aad disk-0 --dek-out aad2.back
grep -Eq "UNPROCESSABLE_CIPHERTEXT_ERR|INVALID_FIELD_ERR" .err && grep -Eq "HTTP (400|422)" .err || fail "wrong AAD: $(cat .err)"
nothing_written aad2.back
expect_fail "ERR" S kms unwrap "$K1" --wdek-file aad.wdek --dek-out aad3.back
nothing_written aad3.back
# tampered and cut WDEKs are refused with the Key Protect reasons
python3 - w1.wdek <<'PY'
import sys
t = open(sys.argv[1]).read().strip()
i = len(t) // 2
c = "A" if t[i] != "A" else "B"
open("tampered.wdek", "w").write(t[:i] + c + t[i + 1:] + "\n")
open("cut.wdek", "w").write(t[: len(t) - 8] + "\n")
PY
for w in tampered cut; do
	expect_fail "ERR" S kms unwrap "$K1" --wdek-file $w.wdek --dek-out $w.back
	grep -Eq "\[(UNPROCESSABLE_CIPHERTEXT_ERR|INVALID_FIELD_ERR)\]" .err || fail "$w WDEK: $(cat .err)"
	nothing_written $w.back
done
# a WDEK of another key is refused (ours binds the key id)
S kms key create root-2 --json >k2.json
K2=$(jf k2.json 'j["resources"][0]["id"]')
expect_fail "ERR" S kms unwrap "$K2" --wdek-file w1.wdek --dek-out other.back
nothing_written other.back
pass "wrap (--dek-file; generated with --dek-out 0600; --out), unwrap (file and stdout), interop with curl, AAD bound, tampered/cut/foreign WDEKs refused"

# --- bad files and existing outputs: exit 1, the reason, nothing sent or written ------------------
wraps() { S events list --action kms.secrets.wrap --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))'; }
w0=$(wraps)
printf '%s\n' "$(cat dek1)" >dek.nl
expect_fail DEK_NEWLINE S kms wrap "$K1" --dek-file dek.nl
printf 'c2hvcnQ=' >dek.short
expect_fail DEK_TOO_SHORT S kms wrap "$K1" --dek-file dek.short
expect_fail "cannot open" S kms wrap "$K1" --dek-file nonexistent.dek
touch exists.out
expect_fail OUTPUT_EXISTS S kms wrap "$K1" --dek-file dek1 --out exists.out
expect_fail OUTPUT_EXISTS S kms wrap "$K1" --dek-out exists.out --out new.wdek
nothing_written new.wdek
[ ! -s exists.out ] || fail "exists.out was written"
[ "$(wraps)" = "$w0" ] || fail "a refused wrap reached the server"
expect_fail OUTPUT_EXISTS S kms unwrap "$K1" --wdek-file w1.wdek --dek-out exists.out
[ ! -s exists.out ] || fail "unwrap overwrote a file"
printf '' >empty.wdek
expect_fail WDEK_MALFORMED S kms unwrap "$K1" --wdek-file empty.wdek --dek-out x.back
printf 'a b\n' >space.wdek
expect_fail WDEK_MALFORMED S kms unwrap "$K1" --wdek-file space.wdek --dek-out x.back
nothing_written x.back
expect_fail KEY_ROOT_REQ_ERR S kms wrap "$SK1" --dek-file dek1
pass "DEK files follow the dek rules, outputs are never overwritten, bad WDEK files refused, all before any request; a standard key cannot wrap (KEY_ROOT_REQ_ERR)"

# --- rotation: old WDEKs unwrap and come back rewrapped; rewrap ------------------------------------------
S kms key rotate "$K1" >rot.out
grep -q "rotated key $K1; new version" rot.out || fail "rotate: $(cat rot.out)"
S kms key rotate "$K1" >/dev/null
S kms key versions "$K1" --json >vers.json
[ "$(jf vers.json 'len(j["resources"])')" = 3 ] || fail "versions after two rotations: $(cat vers.json)"
NEWEST=$(S kms key show "$K1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["resources"][0]["keyVersion"]["id"])')
S kms unwrap "$K1" --wdek-file w1.wdek --dek-out rot.back --rewrapped-out rot.wdek >unwrap2.out
same_bytes dek1 rot.back && secret rot.back
grep -q "rotated since" unwrap2.out && grep -q "$NEWEST" unwrap2.out || fail "unwrap after rotation: $(cat unwrap2.out)"
[ -s rot.wdek ] || fail "no rewrapped WDEK written"
S kms unwrap "$K1" --wdek-file rot.wdek --dek-out rot2.back --rewrapped-out rot2.wdek >unwrap3.out
same_bytes dek1 rot2.back && secret rot2.back
grep -q "rotated since" unwrap3.out && fail "a WDEK under the newest version was offered rewrapped"
nothing_written rot2.wdek
S kms rewrap "$K1" --wdek-file w1.wdek --out re.wdek >rewrap.out
grep -q "rewrapped under key $K1 version $NEWEST" rewrap.out || fail "rewrap: $(cat rewrap.out)"
S kms unwrap "$K1" --wdek-file re.wdek --dek-out re.back >/dev/null
same_bytes dek1 re.back && secret re.back
S kms rewrap "$K1" --wdek-file - <w1.wdek >re-stdin.wdek 2>/dev/null
S kms unwrap "$K1" --wdek-file re-stdin.wdek --dek-out re2.back >/dev/null
same_bytes dek1 re2.back && secret re2.back
# an imported key rotates with new material only
expect_fail KEY_PAYLOAD_REQ_ERR S kms key rotate "$I1"
S dek generate --out imp32b.key && secret imp32b.key
S kms key rotate "$I1" --key-file imp32b.key >/dev/null
pass "rotate (twice; versions), unwrap of an old WDEK gives a rewrapped one (--rewrapped-out) that unwraps; rewrap (file and stdin); imported keys rotate with --key-file only"

# --- states: disable, enable, delete, restore ---------------------------------------------------------
S kms key disable "$K1" | grep -q "disabled key $K1" || fail "disable"
[ "$(S kms key show "$K1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["resources"][0]["state"])')" = 2 ] || fail "state after disable"
expect_fail KEY_ACTION_INVALID_STATE_ERR S kms wrap "$K1" --dek-file dek1
expect_fail KEY_ACTION_INVALID_STATE_ERR S kms unwrap "$K1" --wdek-file re.wdek --dek-out dis.back
nothing_written dis.back
S kms key enable "$K1" | grep -q "enabled key $K1" || fail "enable"
S kms wrap "$K1" --dek-file dek1 >/dev/null 2>&1 || fail "wrap after enable"
S kms key delete "$K2" >del.out
grep -q "deleted key $K2" del.out || fail "delete: $(cat del.out)"
[ "$(S kms key show "$K2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["resources"][0]["state"])')" = 5 ] || fail "state after delete"
S kms key list --state destroyed | grep -q "$K2" || fail "list --state destroyed"
S kms key list --state active | grep -q "$K2" && fail "list --state active shows a deleted key"
S kms key restore "$K2" >restore.out
grep -q "^stateName: *Active$" restore.out || fail "restore: $(cat restore.out)"
S kms key delete "$K2" --force --json >delf.json
[ "$(jf delf.json 'j["resources"][0]["state"]')" = 5 ] || fail "delete --force --json: $(cat delf.json)"
pass "disable (wrap and unwrap refused: KEY_ACTION_INVALID_STATE_ERR), enable, delete, list --state, restore, delete --force --json"

# --- import tokens ------------------------------------------------------------------------------------
S kms import-token create --expiration 600 --max-retrievals 2 >tok.out
grep -q "^maxAllowedRetrievals: *2$" tok.out || fail "import-token create: $(cat tok.out)"
S kms import-token show >tokshow.out
grep -q "^remainingRetrievals: *1$" tokshow.out && grep -q "^payload: *(RSA public key" tokshow.out || fail "import-token show: $(cat tokshow.out)"
S kms import-token show --json >tok.json
[ "$(jf tok.json 'j["remainingRetrievals"]')" = 0 ] || fail "remaining after two shows"
$PY - tok.json <<'PY' || fail "the import token's public key is not RSA-4096"
import base64, json, sys
from cryptography.hazmat.primitives import serialization
raw = base64.b64decode(json.load(open(sys.argv[1]))["payload"])
k = serialization.load_pem_public_key(raw) if raw.startswith(b"-----") else serialization.load_der_public_key(raw)
assert k.key_size == 4096, k.key_size
PY
pass "import-token create (expiration, retrievals), show (human and --json; RSA-4096 public key)"

# --- secure import, end to end, through a recording proxy ---------------------------------------------
cat >proxy.py <<'PY'
# A recording HTTP proxy in front of sealvmd: every request and answer, as JSON lines.
import http.client, http.server, json, sys
target_port, log_path, port_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def handle_one(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        c = http.client.HTTPConnection("127.0.0.1", target_port)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        c.request(self.command, self.path, body=body or None, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        with open(log_path, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body.decode("latin-1"), "status": r.status,
                                "answer": data.decode("latin-1")}) + "\n")
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = handle_one
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(port_file, "w").write(str(s.server_address[1]))
s.serve_forever()
PY
python3 proxy.py "$PORT" wire.log proxy.port &
PPID_PROXY=$!
for _ in $(seq 1 50); do [ -s proxy.port ] && break; sleep 0.1; done
PURL="http://127.0.0.1:$(cat proxy.port)"
head -c 32 /dev/urandom | base64 -w0 >secure.key && secret secure.key
S kms import-token create --max-retrievals 1 >/dev/null
S --endpoint "$PURL" --apikey-file owner.key kms key import sec-1 --secure --key-file secure.key --json >sec.json
kill $PPID_PROXY; wait $PPID_PROXY 2>/dev/null || true; PPID_PROXY=
SEC=$(jf sec.json 'j["resources"][0]["id"]')
[ "$(jf sec.json 'j["resources"][0]["imported"]')" = True ] || fail "secure import: not imported: $(cat sec.json)"
$PY - wire.log secure.key "$INST" <<'PY' || fail "the secure import's wire"
# Independent check of what the CLI sent: the nonce the server gave, sealed with AES-GCM under
# the file's material with the iv sent; the payload is an RSA-4096 ciphertext; the algorithm
# named; the instance header on every request; the material nowhere on the wire.
import base64, json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
recs = [json.loads(l) for l in open(sys.argv[1])]
material = base64.b64decode(open(sys.argv[2]).read())
inst = sys.argv[3]
get = [r for r in recs if r["method"] == "GET" and r["path"] == "/api/v2/import_token"]
post = [r for r in recs if r["method"] == "POST" and r["path"] == "/api/v2/keys"]
assert len(get) == 1 and get[0]["status"] == 200, get
assert len(post) == 1 and post[0]["status"] == 201, [(r["status"], r["answer"]) for r in post]
for r in recs:
    if r["path"].startswith("/api/v2/"):
        assert r["headers"].get("bluemix-instance") == inst, r["headers"]
assert post[0]["headers"]["content-type"] == "application/vnd.ibm.kms.key+json", post[0]["headers"]
tok = json.loads(get[0]["answer"])
body = json.loads(post[0]["body"])
assert body["metadata"] == {"collectionType": "application/vnd.ibm.kms.key+json", "collectionTotal": 1}, body["metadata"]
res = body["resources"][0]
assert res["encryptionAlgorithm"] == "RSAES_OAEP_SHA_256" and res["extractable"] is False, res
iv = base64.b64decode(res["iv"])
assert len(iv) == 12, len(iv)
nonce = AESGCM(material).decrypt(iv, base64.b64decode(res["encryptedNonce"]), None)
assert nonce == base64.b64decode(tok["nonce"]), "the nonce sealed is not the token's"
assert len(base64.b64decode(res["payload"])) == 512, "payload is not an RSA-4096 ciphertext"
wire = open(sys.argv[1], "rb").read()
for form in (material, base64.b64encode(material), material.hex().encode()):
    assert form not in wire, "key material on the wire"
PY
S kms wrap "$SEC" --dek-out sec.dek --out sec.wdek >/dev/null && secret sec.dek
S kms unwrap "$SEC" --wdek-file sec.wdek --dek-out sec.back >/dev/null
same_bytes sec.dek sec.back && secret sec.back
# the token allowed one retrieval, and the import used it
before=$(nkeys)
head -c 32 /dev/urandom | base64 -w0 >secure2.key && secret secure2.key
expect_fail IMPORT_TOKEN_EXPIRED_ERR S kms key import sec-2 --secure --key-file secure2.key
grep -q "GET .*/api/v2/import_token: HTTP 409: .*maxAllowedRetrievals" .err || fail "the refusal does not name the token request and its retrievals: $(cat .err)"
[ "$(nkeys)" = "$before" ] || fail "an import beyond the token's retrievals created a key"
# --new-token makes a fresh one
S kms key import sec-2 --secure --new-token --key-file secure2.key --json >sec2.json
SEC2=$(jf sec2.json 'j["resources"][0]["id"]')
S kms wrap "$SEC2" --dek-file dek1 --out sec2.wdek >/dev/null
S kms unwrap "$SEC2" --wdek-file sec2.wdek --dek-out sec2.back >/dev/null
same_bytes dek1 sec2.back && secret sec2.back
# secure rotation of the imported key
S dek generate --out secure3.key && secret secure3.key
S kms key rotate "$SEC" --secure --new-token --key-file secure3.key >/dev/null
S kms unwrap "$SEC" --wdek-file sec.wdek --dek-out sec3.back --rewrapped-out sec3.wdek >/dev/null
same_bytes sec.dek sec3.back && secret sec3.back
pass "secure import end to end (wire checked independently: nonce sealed under the file's material, RSA-4096 payload, no material on the wire), wrap/unwrap with the key; retrievals enforced; --new-token; secure rotate"

# --- refusals the CLI never produces: wrong nonce, wrong nonce IV (python + curl) -------------------
cat >badimport.py <<'PY'
# Does the import-token exchange like the CLI, with one thing wrong; prints the HTTP status and body.
import base64, json, os, subprocess, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
url, inst, tokfile, keyfile, what = sys.argv[1:6]
auth = "Authorization: Bearer " + open(tokfile).read().strip()
def call(method, path, body=None):
    cmd = ["curl", "-s", "-w", "\n%{http_code}", "-X", method, url + "/api/v2" + path,
           "-H", "@-", "-H", "bluemix-instance: " + inst, "-H", "Content-Type: application/json"]
    if body is not None:
        cmd += ["--data-binary", json.dumps(body)]
    out = subprocess.run(cmd, input=auth.encode(), capture_output=True, check=True).stdout.decode()
    text, _, code = out.rpartition("\n")
    return int(code), text
code, text = call("POST", "/import_token", {"expiration": 600, "maxAllowedRetrievals": 1})
assert code in (200, 201), (code, text)
code, text = call("GET", "/import_token")
assert code == 200, (code, text)
tok = json.loads(text)
raw = base64.b64decode(tok["payload"])
pub = serialization.load_pem_public_key(raw) if raw.startswith(b"-----") else serialization.load_der_public_key(raw)
material = base64.b64decode(open(keyfile).read())
nonce = base64.b64decode(tok["nonce"])
iv = os.urandom(12)
if what == "nonce":
    nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
enc = AESGCM(material).encrypt(iv, nonce, None)
if what == "iv":
    iv = bytes([iv[0] ^ 1]) + iv[1:]
payload = pub.encrypt(material, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
res = {"type": "application/vnd.ibm.kms.key+json", "name": "bad-" + what, "extractable": False,
       "payload": base64.b64encode(payload).decode(), "encryptedNonce": base64.b64encode(enc).decode(),
       "iv": base64.b64encode(iv).decode(), "encryptionAlgorithm": "RSAES_OAEP_SHA_256"}
code, text = call("POST", "/keys", {"metadata": {"collectionType": "application/vnd.ibm.kms.key+json",
                                                 "collectionTotal": 1}, "resources": [res]})
print(code)
print(text)
PY
token owner.key | tr -d '\n' >owner.tok
head -c 32 /dev/urandom | base64 -w0 >bad.key && secret bad.key
before=$(nkeys)
$PY badimport.py "$URL" "$INST" owner.tok bad.key nonce >bn.out || fail "badimport nonce: $(cat bn.out)"
[ "$(head -1 bn.out)" = 400 ] && grep -q INCORRECT_NONCE_ERR bn.out || fail "wrong nonce: $(cat bn.out)"
$PY badimport.py "$URL" "$INST" owner.tok bad.key iv >bi.out || fail "badimport iv: $(cat bi.out)"
[ "$(head -1 bi.out)" = 400 ] && grep -q INCORRECT_NONCE_IV_ERR bi.out || fail "wrong nonce IV: $(cat bi.out)"
$PY badimport.py "$URL" "$INST" owner.tok bad.key none >ok.out || fail "badimport control: $(cat ok.out)"
[ "$(head -1 ok.out)" = 201 ] || fail "the control import (nothing wrong) failed: $(cat ok.out)"
[ "$(nkeys)" = "$((before + 1))" ] || fail "a refused import created a key"
pass "wrong nonce (INCORRECT_NONCE_ERR) and wrong nonce IV (INCORRECT_NONCE_IV_ERR) refused with 400, nothing created; the same exchange done right is accepted"

# --- an expired import token (the config lets a token live 1 s) --------------------------------------
S kms import-token create --expiration 1 --max-retrievals 5 >/dev/null
sleep 2.2
before=$(nkeys)
head -c 32 /dev/urandom | base64 -w0 >late.key && secret late.key
expect_fail IMPORT_TOKEN_EXPIRED_ERR S kms key import late --secure --key-file late.key
grep -q "HTTP 409" .err || fail "expired token: $(cat .err)"
[ "$(nkeys)" = "$before" ] || fail "an import under an expired token created a key"
pass "an import token that expired is refused (IMPORT_TOKEN_EXPIRED_ERR), nothing created"

# --- no secret in the data dir, the daemon's log, the CLI's state, or the audit trail -----------------
stop_daemon
$PY - "${SECRETS[@]}" <<'PY' || fail "a secret was found"
# Every DEK and key material file the test used, in its raw, base64 and hex forms, searched in
# every file of the data dir (database, WAL, keystore), the daemon's log and the login state.
import base64, binascii, os, sys
needles = []
for path in sys.argv[1:]:
    b = open(path, "rb").read()
    forms = [b]
    try:
        raw = base64.b64decode(b, validate=True)
        forms += [raw, raw.hex().encode(), raw.hex().upper().encode()]
    except binascii.Error:
        forms += [base64.b64encode(b), b.hex().encode(), b.hex().upper().encode()]
    needles += [(path, f) for f in forms if len(f) >= 16]
places = [f for f in os.listdir(".") if f.startswith("daemon.") and f.endswith(".log")] + ["init.log"]
for root in ("data", "config", "hsm"):
    for d, _, files in os.walk(root):
        places += [os.path.join(d, f) for f in files]
bad = 0
for p in places:
    data = open(p, "rb").read()
    for path, n in needles:
        if n in data:
            print("secret of %s found in %s" % (path, p))
            bad += 1
print("%d secrets (%d forms) searched in %d files" % (len(sys.argv) - 1, len(needles), len(places)))
sys.exit(1 if bad else 0)
PY
pass "no DEK or key material (raw, base64, hex) in the data dir, the daemon's log, the CLI's state or the token ($KEYSTORE keystore)"
