#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CLI's contract: --help on every level, exit 0/1/2, messages on stderr.
. "$(dirname "$0")/lib.sh"

"$SEALVM" --help | grep -q '^  image' || fail "sealvm --help lists no 'image'"
"$SEALVM" --version | grep -Eq '^sealvm [0-9]+\.[0-9]+' || fail "--version"
for g in dek image; do
	"$SEALVM" $g --help | grep -q 'Usage: sealvm' || fail "sealvm $g --help"
done
for c in "dek generate" "image encrypt" "image decrypt" "image verify" "image inspect"; do
	"$SEALVM" $c --help | grep -q "Usage: sealvm $c" || fail "sealvm $c --help"
done
pass "--help at every level, exit 0"

expect_usage "$SEALVM"
expect_usage "$SEALVM" nosuch
grep -q "unknown command 'nosuch'" .err || fail "unknown command message"
expect_usage "$SEALVM" image
expect_usage "$SEALVM" image nosuch
expect_usage "$SEALVM" --nosuch
expect_usage "$SEALVM" image encrypt --nosuch a b
grep -q "unknown option '--nosuch'" .err || fail "unknown option message"
expect_usage "$SEALVM" image encrypt a b            # no --dek-file
grep -q -- "--dek-file FILE is required" .err || fail "missing --dek-file message"
expect_usage "$SEALVM" image encrypt --dek-file k a # one file only
expect_usage "$SEALVM" image encrypt --dek-file k a b c
expect_usage "$SEALVM" image encrypt --dek-file
grep -q "needs a value" .err || fail "missing value message"
expect_usage "$SEALVM" image encrypt --dek-file k --threads 0 a b
expect_usage "$SEALVM" image encrypt --dek-file k --threads x a b
expect_usage "$SEALVM" image encrypt --dek-file k --in-format vmdk a b
expect_usage "$SEALVM" image encrypt --dek-file k --pbkdf-iterations 10 a b
expect_usage "$SEALVM" image encrypt --dek-file k --pbkdf-iterations 20000001 a b
expect_usage "$SEALVM" image inspect --dek-file k a
expect_usage "$SEALVM" image verify --dek-file k --force a
grep -q "does not apply" .err || fail "inapplicable option message"
expect_usage "$SEALVM" dek generate --bytes 21
expect_usage "$SEALVM" dek generate --bytes 385
expect_usage "$SEALVM" dek generate extra
pass "usage errors exit 2 with a message"

expect_fail "cannot open nosuch.key" "$SEALVM" image verify --dek-file nosuch.key x
expect_fail "NOT_FOUND\|No such file" "$SEALVM" image inspect nosuch.img
pass "missing files exit 1 naming the file"
