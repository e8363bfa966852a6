#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `sealvm dek generate`: canonical base64, sizes, exclusive 0600 files.
. "$(dirname "$0")/lib.sh"
need python3

check_dek() { # FILE EXPECTED_CHARS EXPECTED_BYTES
	python3 - "$@" <<'PY'
import base64, sys
data = open(sys.argv[1], "rb").read()
assert len(data) == int(sys.argv[2]), f"length {len(data)}"
assert b"\n" not in data and b"\r" not in data, "newline"
raw = base64.b64decode(data, validate=True)
assert len(raw) == int(sys.argv[3]), f"bytes {len(raw)}"
assert base64.b64encode(raw) == data, "not canonical"
PY
}

"$SEALVM" dek generate >a.dek
check_dek a.dek 44 32
"$SEALVM" dek generate >b.dek
cmp -s a.dek b.dek && fail "two DEKs are equal"
pass "default: 32 random bytes, 44 characters, no newline, canonical"

"$SEALVM" dek generate --bytes 22 >s.dek && check_dek s.dek 32 22
"$SEALVM" dek generate --bytes 384 >l.dek && check_dek l.dek 512 384
"$SEALVM" dek generate --bytes 64 >m.dek && check_dek m.dek 88 64
pass "--bytes 22..384 give 32..512 characters"

umask 022
"$SEALVM" dek generate --out k.dek
[ "$(stat -c %a k.dek)" = 600 ] || fail "mode $(stat -c %a k.dek)"
check_dek k.dek 44 32
cp k.dek k.orig
expect_fail "OUTPUT_EXISTS" "$SEALVM" dek generate --out k.dek
same_bytes k.dek k.orig
ln -s target.dek link.dek
expect_fail "OUTPUT_EXISTS" "$SEALVM" dek generate --out link.dek
[ ! -e target.dek ] || fail "followed a symlink"
expect_fail "OUTPUT_DIR_MISSING" "$SEALVM" dek generate --out nodir/k.dek
pass "--out: mode 0600, never overwrites, never follows a symlink"
