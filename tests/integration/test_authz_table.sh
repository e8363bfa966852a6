#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The authorization table: every route of docs/api.md against every kind of principal, the
# exact status asserted for each (route, principal) cell; any wrong cell fails the test, and
# all wrong cells are listed.
#
# Principals (columns):
#   none     no Authorization header                                  -> 401
#   expired  a genuinely signed token whose exp has passed            -> 401
#            (issued by this deployment's own key under a clock set two hours back: a daemon
#            run with a tiny time() shim preloaded; editing exp would only test the signature)
#   other    the owner of account A acting on account B: B's object ids -> 404 (existence
#            does not leak), account_id=B on collections / policies     -> 403.
#            No API creates a second account yet, so B (its account row, owner user, a service
#            ID, an API key, a policy) is planted in the database while the daemon is stopped.
#   nopol    a service ID of A without any policy                     -> 403
#   viewer   Viewer on iam-identity and iam-access, Reader on audit   -> reads only
#   editor   Editor on iam-identity, Viewer on iam-access, Reader on audit
#   admin    Administrator on iam-identity and iam-access, Manager on audit
#   owner    the account owner                                         -> everything
# A route's MIN column names the lowest of viewer < editor < admin that may call it
# (docs/internals/iam-access.md); below it the answer is 403, from it on the route's OK status.
#
# The principal kinds "service without authorization" and "service with authorization" (an
# internal service such as block-storage acting in a customer account) have no HTTP form yet:
# internal service credentials are not served. They are covered by the decision function's unit
# test (tests/unit/test_iam_access.c: the block-storage / images rows).
. "$(dirname "$0")/lib.sh"
need curl python3 sqlite3 cc
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; rm -rf "$T"; exit $rc' EXIT

#  METHOD PATH                     ACTION                          MIN    OK  BODY
ROUTES=$(
	cat <<'EOF'
POST   /v1/users                   iam-identity.user.create        admin  201 user
GET    /v1/users                   iam-identity.user.list          viewer 200 -
GET    /v1/users/{uid}             iam-identity.user.read          viewer 200 -
DELETE /v1/users/{uid}             iam-identity.user.delete        admin  204 -
POST   /v1/serviceids              iam-identity.serviceid.create   editor 201 sid
GET    /v1/serviceids              iam-identity.serviceid.list     viewer 200 -
GET    /v1/serviceids/{sid}        iam-identity.serviceid.read     viewer 200 -
PUT    /v1/serviceids/{sid}        iam-identity.serviceid.update   editor 200 sidput
DELETE /v1/serviceids/{sid}        iam-identity.serviceid.delete   editor 204 -
POST   /v1/serviceids/{sid}/lock   iam-identity.serviceid.lock     editor LOCK -
DELETE /v1/serviceids/{sid}/lock   iam-identity.serviceid.unlock   editor LOCK -
POST   /v1/apikeys                 iam-identity.apikey.create      editor 201 key
GET    /v1/apikeys                 iam-identity.apikey.list        viewer 200 -
GET    /v1/apikeys/{kid}           iam-identity.apikey.read        viewer 200 -
PUT    /v1/apikeys/{kid}           iam-identity.apikey.update      editor 200 keyput
DELETE /v1/apikeys/{kid}           iam-identity.apikey.delete      editor 204 -
POST   /v1/apikeys/{kid}/lock      iam-identity.apikey.lock        editor LOCK -
DELETE /v1/apikeys/{kid}/lock      iam-identity.apikey.unlock      editor LOCK -
POST   /v1/policies                iam.policy.create               admin  201 pol
GET    /v1/policies                iam.policy.list                 viewer 200 -
GET    /v1/policies/{pid}          iam.policy.read                 viewer 200 -
PUT    /v1/policies/{pid}          iam.policy.update               admin  200 pol
DELETE /v1/policies/{pid}          iam.policy.delete               admin  204 -
GET    /v1/events                  audit.events.read               viewer 200 -
GET    /v1/events/verify           audit.events.verify             admin  200 -
POST   /v2/resource_instances      resource-controller.instance.create editor 201 inst
GET    /v2/resource_instances      resource-controller.instance.list   viewer 200 -
GET    /v2/resource_instances/{gid} resource-controller.instance.read  viewer 200 -
DELETE /v2/resource_instances/{gid} resource-controller.instance.delete editor 204 -
POST   /v2/resource_keys           resource-controller.key.create      editor 201 hkey
GET    /v2/resource_keys           resource-controller.key.list        viewer 200 -
GET    /v2/resource_keys/{hid}     resource-controller.key.read        viewer 200 -
DELETE /v2/resource_keys/{hid}     resource-controller.key.delete      editor 204 -
EOF
)
PRINCIPALS="none expired other nopol viewer editor admin owner"
rank() { case $1 in viewer) echo 1 ;; editor) echo 2 ;; admin | owner) echo 3 ;; *) echo 0 ;; esac; }

# --- a token that expired two hours ago, signed by this deployment ------------------------
"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log
cat >shim.c <<'EOF'
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>
/* time() two hours back; nothing else changes */
time_t time(time_t *t)
{
	struct timespec ts;
	syscall(SYS_clock_gettime, CLOCK_REALTIME, &ts);
	time_t v = ts.tv_sec - 7200;
	if (t)
		*t = v;
	return v;
}
EOF
cc -shared -fPIC -o shim.so shim.c
# Under ASan the shim would come before its runtime: tell ASan that is intended.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" LD_PRELOAD=$T/shim.so "$SEALVMD" --data-dir data --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 >shim.log 2>&1 &
DPID=$!
for i in $(seq 1 100); do
	PORT=$(sed -n 's/.*serving on .* (port \([0-9]*\)).*/\1/p' shim.log | head -1)
	[ -n "$PORT" ] && break
	sleep 0.1
done
[ -n "$PORT" ] || { cat shim.log >&2; fail "shimmed sealvmd did not start"; }
URL="http://127.0.0.1:$PORT"
EXPIRED=$(token owner.key)
stop_daemon
python3 - "$EXPIRED" <<'PY'
import base64, json, sys, time
p = sys.argv[1].split(".")[1]
c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
assert c["exp"] < time.time() - 3000, c
PY
pass "an expired token signed by this deployment (issued under a clock two hours back)"

# --- account B, planted (no API creates a second account) ---------------------------------
start_daemon data daemon.log
TOK=$(token owner.key)
OWNER_TOK=$TOK
[ "$(api POST /v1/serviceids '{"name":"b-template"}')" = 201 ] || fail "template: $(cat .body)"
TPL_SID=$(jget 'j["id"]')
TPL_SIAM=$(jget 'j["iam_id"]')
[ "$(api POST /v1/apikeys "{\"name\":\"b-template-key\",\"iam_id\":\"$TPL_SIAM\"}")" = 201 ] || fail "template key"
TPL_KID=$(jget 'j["id"]')
pol_body() { # IAM_ID SERVICE ROLE_CRN [ACCOUNT]
	printf '{"type":"access","subjects":[{"attributes":[{"name":"iam_id","value":"%s"}]}],"roles":[{"role_id":"%s"}],"resources":[{"attributes":[{"name":"accountId","value":"%s"},{"name":"serviceName","value":"%s"}]}]}' \
		"$1" "$3" "${4:-$ACCT}" "$2"
}
[ "$(api GET "/v1/serviceids/$TPL_SID")" = 200 ] || fail "template get"
ACCT=$(jget 'j["account_id"]')
[ "$(api POST /v1/policies "$(pol_body "$TPL_SIAM" kms crn:v1:bluemix:public:iam::::serviceRole:Reader)")" = 201 ] || fail "template policy: $(cat .body)"
TPL_PID=$(jget 'j["id"]')
# an object storage instance of A and an HMAC key on it, to be cloned into B
[ "$(api POST /v2/resource_instances '{"name":"b-cos","target":"us-south","resource_id":"cloud-object-storage"}')" = 201 ] || fail "template instance: $(cat .body)"
TPL_GID=$(jget 'j["guid"]')
[ "$(api POST /v2/resource_keys "{\"name\":\"b-hmac\",\"source\":\"$TPL_GID\",\"parameters\":{\"HMAC\":true}}")" = 201 ] || fail "template HMAC key: $(cat .body)"
TPL_HID=$(jget 'j["guid"]')
TPL_AKID=$(jget 'j["credentials"]["cos_hmac_keys"]["access_key_id"]')
stop_daemon
ACCT_B=$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
# Clones one row of TABLE (KEY = VALUE) with every string column's occurrences of the pairs
# replaced (account A -> B, the object's own id -> a new one); blobs get new random bytes.
python3 - data/sealvm.db "$ACCT" "$ACCT_B" "$TPL_SID" "$TPL_SIAM" "$TPL_KID" "$TPL_PID" \
	"$TPL_GID" "$TPL_HID" "$TPL_AKID" >b.ids <<'PY'
import os, sqlite3, sys, uuid
db, a, b, sid, siam, kid, pid, gid, hid, akid = sys.argv[1:]
c = sqlite3.connect(db)
def clone(table, key, value, subs):
    cur = c.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,))
    cols = [d[0] for d in cur.description]
    row = cur.fetchone()
    assert row, (table, value)
    out = []
    for v in row:
        if isinstance(v, str):
            for old, new in subs:
                v = v.replace(old, new)
        elif isinstance(v, bytes):
            v = os.urandom(len(v))
        out.append(v)
    c.execute(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})", out)
    return dict(zip(cols, out))
owner = c.execute("SELECT owner_iam_id FROM iam_accounts WHERE id = ?", (a,)).fetchone()[0]
uid_b = "IBMid-" + uuid.uuid4().hex[:10].upper()
clone("iam_accounts", "id", a, [(a, b), (owner, uid_b)])
clone("iam_users", "iam_id", owner, [(a, b), (owner, uid_b)])
u = str(uuid.uuid4())
s = clone("iam_service_ids", "id", sid, [(a, b), (sid.split("ServiceId-")[1], u)])
k = clone("iam_api_keys", "id", kid, [(a, b), (kid.split("ApiKey-")[1], str(uuid.uuid4())), (siam, s["iam_id"])])
p = clone("iam_policies", "id", pid, [(a, b), (pid, uuid.uuid4().hex)])
g = clone("rc_instances", "guid", gid, [(a, b), (gid, str(uuid.uuid4()))])
h = clone("rc_hmac_keys", "guid", hid, [(a, b), (gid, g["guid"]), (hid, str(uuid.uuid4())), (akid, os.urandom(16).hex())])
c.commit()
print(uid_b, s["id"], k["id"], p["id"], g["guid"], h["guid"])
PY
read -r B_UID B_SID B_KID B_PID B_GID B_HID <b.ids
pass "account B planted: user $B_UID, service ID, API key, policy, object storage instance, HMAC key"

# --- principals ----------------------------------------------------------------------------
start_daemon data daemon2.log
TOK=$OWNER_TOK
ROLE=crn:v1:bluemix:public:iam::::role
SROLE=crn:v1:bluemix:public:iam::::serviceRole
# mkprincipal NAME "SERVICE ROLE_CRN ..." — a service ID with those policies and a token in TOK_NAME
mkprincipal() {
	local name=$1 grants=$2 siam
	TOK=$OWNER_TOK
	[ "$(api POST /v1/serviceids "{\"name\":\"p-$name\"}")" = 201 ] || fail "principal $name: $(cat .body)"
	siam=$(jget 'j["iam_id"]')
	[ "$(api POST /v1/apikeys "{\"name\":\"p-$name\",\"iam_id\":\"$siam\"}")" = 201 ] || fail "key $name"
	jget 'j["apikey"]' | tr -d '\n' >"$name.key"
	set -- $grants
	while [ $# -ge 2 ]; do
		[ "$(api POST /v1/policies "$(pol_body "$siam" "$1" "$2")")" = 201 ] || fail "policy $name $1: $(cat .body)"
		shift 2
	done
	printf -v "TOK_$name" '%s' "$(token "$name.key")"
	printf -v "IAM_$name" '%s' "$siam"
}
mkprincipal nopol ""
mkprincipal viewer "iam-identity $ROLE:Viewer iam-access $ROLE:Viewer audit $SROLE:Reader resource-controller $ROLE:Viewer"
mkprincipal editor "iam-identity $ROLE:Editor iam-access $ROLE:Viewer audit $SROLE:Reader resource-controller $ROLE:Editor"
mkprincipal admin "iam-identity $ROLE:Administrator iam-access $ROLE:Administrator audit $SROLE:Manager resource-controller $ROLE:Administrator"
TOK_owner=$OWNER_TOK
TOK_other=$OWNER_TOK
TOK_expired=$EXPIRED
TOK_none=

# --- fixtures: fresh objects of account A for the cells that change or delete them ------------
n=0
fresh() { # KIND -> prints a new object id of account A
	n=$BASHPID$RANDOM
	local save=$TOK
	TOK=$OWNER_TOK
	case $1 in
	uid)
		[ "$(api POST /v1/users "{\"name\":\"u$n\",\"email\":\"u$n@example.com\"}")" = 201 ] || fail "fixture user: $(cat .body)"
		jget 'j["iam_id"]' ;;
	sid)
		[ "$(api POST /v1/serviceids "{\"name\":\"f$n\"}")" = 201 ] || fail "fixture sid"
		jget 'j["id"]' ;;
	kid)
		[ "$(api POST /v1/apikeys "{\"name\":\"f$n\",\"iam_id\":\"$IAM_nopol\"}")" = 201 ] || fail "fixture key"
		jget 'j["id"]' ;;
	pid)
		[ "$(api POST /v1/policies "$(pol_body "$IAM_nopol" kms $SROLE:Reader)")" = 201 ] || fail "fixture policy"
		jget 'j["id"]' ;;
	gid)
		[ "$(api POST /v2/resource_instances "{\"name\":\"f$n\",\"target\":\"us-south\",\"resource_id\":\"kms\"}")" = 201 ] || fail "fixture instance: $(cat .body)"
		jget 'j["guid"]' ;;
	hid)
		[ "$(api POST /v2/resource_keys "{\"name\":\"f$n\",\"source\":\"$TPL_GID\",\"parameters\":{\"HMAC\":true}}")" = 201 ] || fail "fixture HMAC key: $(cat .body)"
		jget 'j["guid"]' ;;
	esac
	TOK=$save
}
body_for() { # KIND [ACCOUNT]
	n=$BASHPID$RANDOM
	local acct=${2:-}
	case $1 in
	user) echo "{\"name\":\"cell$n\",\"email\":\"cell$n@example.com\"}" ;;
	sid) echo "{\"name\":\"cell$n\"${acct:+,\"account_id\":\"$acct\"}}" ;;
	sidput) echo "{\"name\":\"renamed$n\",\"description\":\"d\"}" ;;
	key) echo "{\"name\":\"cell$n\",\"iam_id\":\"$IAM_nopol\"${acct:+,\"account_id\":\"$acct\"}}" ;;
	keyput) echo "{\"name\":\"renamed$n\",\"description\":\"d\"}" ;;
	pol) pol_body "$IAM_nopol" kms "$SROLE:Reader" "${acct:-$ACCT}" ;;
	inst) echo "{\"name\":\"cell$n\",\"target\":\"us-south\",\"resource_id\":\"kms\"}" ;;
	hkey) echo "{\"name\":\"cell$n\",\"source\":\"$TPL_GID\",\"parameters\":{\"HMAC\":true}}" ;;
	esac
}

# the lock routes' success status, as the owner sees it (200 or 204), checked to be a 2xx
s=$(fresh sid)
TOK=$OWNER_TOK
LOCK_OK=$(api POST "/v1/serviceids/$s/lock")
case $LOCK_OK in 200 | 204) ;; *) fail "owner lock: $LOCK_OK $(cat .body)" ;; esac

# --- the table ----------------------------------------------------------------------------------
cells=0
wrong=()
while read -r method path action min ok bodykind; do
	[ -n "$method" ] || continue
	[ "$ok" = LOCK ] && ok=$LOCK_OK
	[ "$method" = DELETE ] && [[ $path == */lock ]] && unlock=1 || unlock=
	for p in $PRINCIPALS; do
		tokvar=TOK_$p
		TOK=${!tokvar}
		q=$path acct= extra=()
		if [ "$p" = other ]; then
			# account B: its objects by id, or account_id=B on a collection
			case $path in
			*'{uid}'*) q=${q/\{uid\}/$B_UID} ;;
			*'{sid}'*) q=${q/\{sid\}/$B_SID} ;;
			*'{kid}'*) q=${q/\{kid\}/$B_KID} ;;
			*'{pid}'*) q=${q/\{pid\}/$B_PID} ;;
			*'{gid}'*) q=${q/\{gid\}/$B_GID} ;;
			*'{hid}'*) q=${q/\{hid\}/$B_HID} ;;
			/v1/events* | /v2/*)
				# no account parameter exists here: the scope is the caller's account by
				# construction; nothing of B can be named, so this cell is not asked
				continue ;;
			*) [ "$method" = GET ] || [ "$path" = /v1/users ] && q="$q?account_id=$ACCT_B"
			   [ "$method" = POST ] && [ "$path" != /v1/users ] && acct=$ACCT_B ;;
			esac
		else
			for k in uid sid kid pid gid hid; do
				if [[ $q == *"{$k}"* ]]; then
					id=$(fresh $k)
					if [ -n "$unlock" ]; then
						s2=$TOK; TOK=$OWNER_TOK
						[ "$(api POST "${path/\{$k\}/$id}")" = "$LOCK_OK" ] || fail "fixture lock"
						TOK=$s2
					fi
					q=${q/\{$k\}/$id}
				fi
			done
		fi
		case $p in
		none | expired) want=401 ;;
		other) if [[ $path == *'{'* ]]; then want=404; else want=403; fi ;;
		*) if [ "$(rank "$p")" -ge "$(rank "$min")" ]; then want=$ok; else want=403; fi ;;
		esac
		body=
		[ "$bodykind" != - ] && body=$(body_for "$bodykind" "$acct")
		if [ "$method" = PUT ] && [[ $path == /v1/policies/* ]]; then
			extra=(-H 'If-Match: *')
		fi
		args=(-s -o "$T/.body" -w '%{http_code}' -X "$method" "$URL$q" "${extra[@]}")
		[ -n "$TOK" ] && args+=(-H "Authorization: Bearer $TOK")
		[ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data "$body")
		got=$(curl "${args[@]}")
		cells=$((cells + 1))
		if [ "$got" != "$want" ]; then
			wrong+=("$method $path as $p: want $want, got $got $(head -c 200 "$T/.body")")
		elif [ "$want" = 403 ] && [ "$p" != other ] && ! grep -qF "$action" "$T/.body"; then
			wrong+=("$method $path as $p: 403 does not name $action: $(head -c 200 "$T/.body")")
		fi
	done
done <<<"$ROUTES"

# --- the public routes: the same answer whoever calls -------------------------------------------
for p in $PRINCIPALS; do
	tokvar=TOK_$p
	hdr=()
	[ -n "${!tokvar}" ] && hdr=(-H "Authorization: Bearer ${!tokvar}")
	got=$(curl -s -o "$T/.body" -w '%{http_code}' -X POST "$URL/identity/token" "${hdr[@]}" \
		--data-urlencode "grant_type=urn:ibm:params:oauth:grant-type:apikey" --data-urlencode "apikey@owner.key")
	cells=$((cells + 1))
	[ "$got" = 200 ] || wrong+=("POST /identity/token as $p: want 200, got $got $(head -c 200 "$T/.body")")
	got=$(curl -s -o "$T/.body" -w '%{http_code}' "$URL/identity/keys" "${hdr[@]}")
	cells=$((cells + 1))
	[ "$got" = 200 ] || wrong+=("GET /identity/keys as $p: want 200, got $got $(head -c 200 "$T/.body")")
done

# account B is untouched by everything account A did above
TOK=$OWNER_TOK
for t in "iam_service_ids WHERE id='$B_SID' AND locked=0 AND name='b-template'" \
	"iam_api_keys WHERE id='$B_KID' AND locked=0 AND name='b-template-key'" \
	"iam_policies WHERE id='$B_PID'" "iam_users WHERE iam_id='$B_UID'" \
	"rc_instances WHERE guid='$B_GID'" "rc_hmac_keys WHERE guid='$B_HID'"; do
	[ "$(sqlite3 data/sealvm.db "SELECT count(*) FROM $t")" = 1 ] || wrong+=("account B changed: $t")
done
[ "$(api GET /v1/events/verify)" = 200 ] && [ "$(jget 'j["ok"]')" = True ] || wrong+=("audit chain: $(cat .body)")
stop_daemon

echo "authz table: $cells cells, ${#wrong[@]} wrong"
if [ ${#wrong[@]} -gt 0 ]; then
	printf '  %s\n' "${wrong[@]}" >&2
	fail "${#wrong[@]} wrong cells"
fi
pass "authz table: every route x none, expired, other account, no policy, viewer, editor, admin, owner"
