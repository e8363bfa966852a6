# SPDX-License-Identifier: Apache-2.0
"""Fill the payload of a LUKS container with AES-XTS ciphertext, independently of sealvm.

Usage: xts_fill.py VOLUME_KEY_HEX PLAIN LUKS PAYLOAD_OFFSET SECTOR_SIZE
The tweak of each sector is its offset from the payload start in 512-byte
units, little-endian (plain64), also for 4096-byte sectors, as dm-crypt does.
Runs under Debian's /usr/bin/python3 with python3-cryptography; the volume
key comes on the command line only because this is a throwaway test fixture.
"""
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

key = bytes.fromhex(sys.argv[1])
plain = open(sys.argv[2], "rb").read()
offset, sector = int(sys.argv[4]), int(sys.argv[5])
assert len(plain) % sector == 0
out = bytearray()
for i in range(0, len(plain), sector):
    tweak = (i // 512).to_bytes(16, "little")
    enc = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor()
    out += enc.update(plain[i:i + sector]) + enc.finalize()
with open(sys.argv[3], "r+b") as f:
    f.seek(offset)
    f.write(out)
