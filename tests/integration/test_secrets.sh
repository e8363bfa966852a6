#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Key material stays where it belongs: the DEK text and the volume key appear
# in no output, message or file we write (the DEK only in the DEK file the
# user asked for), and never on a command line.
. "$(dirname "$0")/lib.sh"
need cryptsetup python3

mkraw disk.raw 5
mkdir keys work
"$SEALVM" dek generate --out keys/k.dek
"$SEALVM" dek generate --out keys/wrong.dek
cd work
"$SEALVM" --verbose image encrypt --dek-file ../keys/k.dek --progress ../disk.raw a.luks >log.out 2>log.err
"$SEALVM" --verbose image verify --dek-file ../keys/k.dek a.luks >>log.out 2>>log.err
"$SEALVM" --verbose image verify --json --dek-file ../keys/wrong.dek a.luks >>log.out 2>>log.err || true
"$SEALVM" --verbose image decrypt --dek-file ../keys/k.dek --progress a.luks a.raw >>log.out 2>>log.err
"$SEALVM" --verbose image inspect --json a.luks >>log.out 2>>log.err
# watch argv of a running encrypt
"$SEALVM" image encrypt --dek-file ../keys/k.dek --threads 1 ../disk.raw b.luks >/dev/null &
pid=$!
cat /proc/$pid/cmdline 2>/dev/null | tr '\0' ' ' >argv.txt || true
wait $pid
cd ..

vk=$(cryptsetup luksDump --dump-volume-key --batch-mode --key-file keys/k.dek work/a.luks |
	sed -n '/^MK dump:/,$p' | sed 's/^MK dump://' |
	grep -E '^[[:space:]]+([0-9a-f]{2}[[:space:]]*)+$' | tr -d ' \t\n')
[ ${#vk} = 128 ] || fail "could not read the volume key"

python3 - work "$vk" keys/k.dek keys/wrong.dek <<'PY'
import os, sys, base64
root, vk_hex = sys.argv[1], sys.argv[2]
vk = bytes.fromhex(vk_hex)
needles = {"volume key (binary)": vk, "volume key (hex)": vk_hex.encode(),
           "volume key half": vk[:32]}
for p in sys.argv[3:]:
    t = open(p, "rb").read()
    needles[f"DEK text {p}"] = t
    needles[f"DEK bytes {p}"] = base64.b64decode(t)
    needles[f"DEK text prefix {p}"] = t[:16]
bad = []
for d, _, files in os.walk(root):
    for f in files:
        data = open(os.path.join(d, f), "rb").read()
        for name, n in needles.items():
            if n in data:
                bad.append(f"{name} found in {os.path.join(d, f)}")
if bad:
    sys.exit("\n".join(bad))
print(f"searched {sum(len(f) for _, _, f in os.walk(root))} files for {len(needles)} secrets")
PY
pass "no DEK text, DEK bytes or volume key in outputs, logs or argv"
