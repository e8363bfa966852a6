#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Crash safety: kill -9 while creates and reads are in flight, three times at different moments,
# on one data dir. After each restart:
#   - every acknowledged (201) service ID, API key and policy is there, whole;
#   - every object that is there (acknowledged or not) is whole: its fields are set, an API
#     key's service ID and a policy's subject exist;
#   - objects and success audit events match one to one: each object has exactly one success
#     create event naming it, and each success create event names an object that is there
#     (state and event commit in one transaction, so neither may survive without the other);
#   - every acknowledged (200) read has its event (reads' events go to the event log, whose torn
#     end a restart cuts off: nothing acknowledged may go with it);
#   - the audit chain verifies, through the API and offline.
# Then a clean SIGTERM restart keeps everything (the full listings are equal).
. "$(dirname "$0")/lib.sh"
need curl python3
[ -x "$SEALVMD" ] || fail "no sealvmd at $SEALVMD"
trap 'rc=$?; [ -n "${DPID:-}" ] && kill -9 $DPID 2>/dev/null; kill $(jobs -p) 2>/dev/null || true; rm -rf "$T"; exit $rc' EXIT

"$SEALVMD" init --data-dir data --owner-key-file owner.key 2>init.log
start_daemon data daemon0.log
TOK=$(token owner.key)
[ "$(api POST /v1/serviceids '{"name":"crash-base"}')" = 201 ] || fail "base service ID: $(cat .body)"
BASE_IAM=$(jget 'j["iam_id"]')
BASE_SID=$(jget 'j["id"]')
[ "$(api GET "/v1/serviceids/$BASE_SID")" = 200 ] || fail "base get"
ACCT=$(jget 'j["account_id"]')
stop_daemon

# worker ROUND KIND W — creates KIND until the daemon stops answering; one line per 201:
# "KIND ID NAME" in acked.ROUND.KIND.W (written only after the whole answer arrived).
worker() {
	local round=$1 kind=$2 w=$3 i=0 code path body name id
	local out=acked.$round.$kind.$w
	: >"$out"
	while :; do
		i=$((i + 1))
		name=c$round-$kind-$w-$i
		case $kind in
		sid) path=/v1/serviceids body="{\"name\":\"$name\",\"description\":\"crash $name\"}" ;;
		key) path=/v1/apikeys body="{\"name\":\"$name\",\"description\":\"crash $name\",\"iam_id\":\"$BASE_IAM\"}" ;;
		pol) path=/v1/policies
		     body="{\"type\":\"access\",\"description\":\"$name\",\"subjects\":[{\"attributes\":[{\"name\":\"iam_id\",\"value\":\"$BASE_IAM\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::serviceRole:Reader\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"$ACCT\"},{\"name\":\"serviceName\",\"value\":\"kms\"},{\"name\":\"resource\",\"value\":\"$name\"}]}]}" ;;
		esac
		code=$(curl -s -o "w.$kind.$w.body" -w '%{http_code}' -X POST "$URL$path" \
			-H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' --data "$body") || true
		case $code in
		201)
			id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "w.$kind.$w.body" | head -1)
			echo "$kind $id $name" >>"$out" ;;
		000) return 0 ;; # the daemon is gone
		*) echo "$code $(cat "w.$kind.$w.body")" >>"errors.$round" ;;
		esac
	done
}

# reader ROUND W — reads the base service ID until the daemon stops answering; one line per 200
reader() {
	local out=reads.$1.$2 code
	: >"$out"
	while :; do
		code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/serviceids/$BASE_SID" \
			-H "Authorization: Bearer $TOK") || true
		case $code in
		200) echo r >>"$out" ;;
		000) return 0 ;;
		*) echo "read $code" >>"errors.$1" ;;
		esac
	done
}

check() { # ROUND — the checks listed at the top, against the running daemon
	cat acked.* >all.acked 2>/dev/null || : >all.acked
	reads=$(cat reads.* 2>/dev/null | wc -l)
	python3 - "$URL" "$TOK" "$BASE_IAM" "$1" all.acked "$reads" <<'PY'
import json, sys, urllib.request, urllib.parse
url, tok, base, rnd, acked_file, reads = sys.argv[1:]
def get(path):
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + tok})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None
bad = []
def paged(path, member):
    out, tokq = [], ""
    while True:
        st, j = get(path + "?pagesize=100" + tokq)
        assert st == 200, (path, st)
        out += j[member]
        if not j.get("next"):
            return out
        tokq = "&pagetoken=" + j["next"]
sids = {s["id"]: s for s in paged("/v1/serviceids", "serviceids")}
keys = {k["id"]: k for k in paged("/v1/apikeys", "apikeys")}
st, j = get("/v1/policies")
pols = {p["id"]: p for p in j["policies"]}
sid_iams = {s["iam_id"] for s in sids.values()}
# every listed object is whole
for s in sids.values():
    if not (s.get("iam_id") and s.get("crn") and s.get("name") and "locked" in s):
        bad.append(f"service ID not whole: {s}")
for k in keys.values():
    if not (k.get("iam_id") and k.get("crn") and k.get("name")):
        bad.append(f"API key not whole: {k}")
    elif k["iam_id"].startswith("iam-ServiceId-") and k["iam_id"] not in sid_iams:
        bad.append(f"API key {k['id']} of a missing service ID {k['iam_id']}")
for p in pols.values():
    subj = p["subjects"][0]["attributes"][0]["value"]
    if not (p.get("roles") and p.get("resources") and p.get("etag", True)):
        bad.append(f"policy not whole: {p}")
    if subj.startswith("iam-ServiceId-") and subj not in sid_iams:
        bad.append(f"policy {p['id']} of a missing subject {subj}")
# every acknowledged object is there, whole, by id
acked = [l.split() for l in open(acked_file) if l.strip()]
for kind, oid, name in acked:
    path = {"sid": "/v1/serviceids/", "key": "/v1/apikeys/", "pol": "/v1/policies/"}[kind] + oid
    st, o = get(path)
    if st != 200:
        bad.append(f"acknowledged {kind} {oid} ({name}): GET {st}")
        continue
    if kind == "sid" and (o["name"] != name or o["description"] != "crash " + name):
        bad.append(f"service ID {oid} fields: {o}")
    if kind == "key" and (o["name"] != name or o["iam_id"] != base or "apikey" in o):
        bad.append(f"API key {oid} fields: {o}")
    if kind == "pol" and (o.get("description") != name or o["subjects"][0]["attributes"][0]["value"] != base):
        bad.append(f"policy {oid} fields: {o}")
# objects and success create events, one to one
def events(action):
    out, nxt = [], ""
    while True:
        st, j = get("/v1/events?limit=1000&outcome=success&action=" + action + nxt)
        assert st == 200, st
        out += j["events"]
        if not j.get("next"):
            return out
        nxt = "&next=" + urllib.parse.quote(str(j["next"]))
def named(e, ids):
    rd = e.get("responseData") or {}
    hits = {i for i in ids if i == rd.get("id") or i in (e.get("target") or {}).get("id", "")}
    return hits
for action, objs, kind in (("iam-identity.account-serviceid.create", sids, "service ID"),
                           # the owner's key comes from init, not from a request: not audited
                           ("iam-identity.apikey.create", {i: k for i, k in keys.items() if k["iam_id"] == base}, "API key"),
                           ("iam-am.policy.create", pols, "policy")):
    count = {i: 0 for i in objs}
    for e in events(action):
        h = named(e, objs)
        if len(h) != 1:
            bad.append(f"{action} success event names no present {kind} (or several): {e.get('target')} {e.get('responseData')}")
        for i in h:
            count[i] += 1
    for i, c in count.items():
        if c != 1:
            bad.append(f"{kind} {i}: {c} success create events")
read_events = len(events("iam-identity.account-serviceid.read"))
if read_events < int(reads):
    bad.append(f"{reads} reads were acknowledged but only {read_events} read events are kept")
st, v = get("/v1/events/verify")
if st != 200 or not v.get("ok"):
    bad.append(f"verify: {st} {v}")
print(f"round {rnd}: {len(acked)} creates and {reads} reads acknowledged so far; present: {len(sids)} service IDs, "
      f"{len(keys)} API keys, {len(pols)} policies; chain of {v and v.get('events')} events verifies")
if bad:
    print("\n".join(bad[:50]), file=sys.stderr)
    sys.exit(1)
PY
}

# Three rounds, the kill at a different moment of each: early, middle, late in a burst.
for round in 1 2 3; do
	delay=$(echo "0.3 1.2 2.5" | cut -d' ' -f$round)
	start_daemon data daemon$round.log
	TOK=$(token owner.key)
	pids=()
	for kind in sid key pol; do
		for w in 1 2; do
			worker $round $kind $w &
			pids+=($!)
		done
	done
	for w in 1 2; do
		reader $round $w &
		pids+=($!)
	done
	sleep "$delay"
	kill -9 "$DPID"
	wait "$DPID" 2>/dev/null || true
	DPID=
	for p in "${pids[@]}"; do wait "$p" || fail "worker failed"; done
	[ ! -s errors.$round ] || { head -5 errors.$round >&2; fail "a create failed with a status other than 201"; }
	n=$(cat acked.$round.* | wc -l)
	[ "$n" -gt 0 ] || fail "round $round: nothing was acknowledged before the kill (after ${delay}s)"
	start_daemon data daemon$round.restart.log
	TOK=$(token owner.key)
	check $round || fail "round $round: state after kill -9 is not whole"
	stop_daemon
	"$SEALVM" events verify --data-dir data >offline.$round 2>&1 || fail "round $round: offline verify: $(cat offline.$round)"
	pass "kill -9 after ${delay}s with 6 writers and 2 readers ($n acknowledged creates): all there, whole, one success event each; every acknowledged read's event kept; chain verifies"
done

# A clean restart keeps everything.
start_daemon data daemon4.log
TOK=$(token owner.key)
snap() { for p in /v1/serviceids?pagesize=100 /v1/apikeys?pagesize=100 /v1/policies /v1/users; do
	api GET "$p" >/dev/null; python3 -c "import json; print(json.dumps(json.load(open('$T/.body')), sort_keys=True))"; done; }
snap >before.json
n_ev=$(api GET /v1/events/verify >/dev/null; jget 'j["events"]')
stop_daemon
start_daemon data daemon5.log
TOK=$(token owner.key)
snap >after.json
cmp -s before.json after.json || fail "a clean restart changed the listings"
check final || fail "after a clean restart"
stop_daemon
pass "SIGTERM restart keeps all state ($n_ev audit events before it)"
