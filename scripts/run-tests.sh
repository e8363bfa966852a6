#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run-tests.sh BUILD_DIR — runs the Meson test suite and prints one closing line:
#   "check: N passed, N failed, N skipped"
# Skipped tests are listed with their reason (the last line they printed).
set -uo pipefail
build=${1:-build}
log="$build/meson-logs/testlog.json"
rm -f "$log"
meson test -C "$build" --num-processes "${SEALVM_TEST_JOBS:-2}" --print-errorlogs \
	${SEALVM_TEST_ARGS:-}
rc=$?
if [ ! -s "$log" ]; then
	echo "check: no test ran (no $log)" >&2
	exit 1
fi
python3 - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    r = t.get("result")
    if r in ("OK", "EXPECTEDFAIL"):
        p += 1
    elif r == "SKIP":
        s += 1
        out = (t.get("stdout") or "").strip().splitlines()
        print(f"skipped: {t['name']}: {out[-1] if out else 'no reason given'}")
    else:
        f += 1
print(f"check: {p} passed, {f} failed, {s} skipped")
PY
exit $rc
