#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Memory stays bounded whatever the image size: the peak RSS of encrypting a
# 2 GiB (sparse) image stays under 256 MiB, and decrypting it too.
. "$(dirname "$0")/lib.sh"
[ -x /usr/bin/time ] || skip "needs /usr/bin/time (package time)"
avail=$(df -k --output=avail . | tail -1)
[ "$avail" -gt $((5 * 1024 * 1024)) ] || skip "needs 5 GiB free in $T"

truncate -s 2G big.raw
printf '\x55\xaa' | dd of=big.raw bs=1 seek=510 conv=notrunc status=none
head -c 1M /dev/urandom | dd of=big.raw bs=1M seek=100 conv=notrunc status=none
mkdek k.dek
/usr/bin/time -f %M -o enc.rss "$SEALVM" image encrypt --dek-file k.dek big.raw big.luks >/dev/null
rss=$(cat enc.rss)
echo "encrypt 2 GiB: peak RSS ${rss} KiB"
[ "$rss" -lt $((256 * 1024)) ] || fail "encrypt peak RSS ${rss} KiB >= 256 MiB"
rm -f big.raw
/usr/bin/time -f %M -o dec.rss "$SEALVM" image decrypt --dek-file k.dek big.luks big.raw >/dev/null
rss=$(cat dec.rss)
echo "decrypt 2 GiB: peak RSS ${rss} KiB"
[ "$rss" -lt $((256 * 1024)) ] || fail "decrypt peak RSS ${rss} KiB >= 256 MiB"
cmp -s <(head -c 1M big.raw | tail -c +511 | head -c 2) <(printf '\x55\xaa') || fail "decrypted bytes"
pass "peak RSS of encrypt and decrypt on 2 GiB under 256 MiB"
