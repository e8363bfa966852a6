#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Edits the event log of a data dir the way an attacker holding the files could
(lib/audit/audit_log.c has the format), for the tamper tests.

  audit_log_edit.py DATA_DIR truncate SEQ          removes every log record >= SEQ
  audit_log_edit.py DATA_DIR replace OLD NEW       in the first record whose event text
                                                   holds OLD (same length), with its CRC
                                                   recomputed; prints that record's seq
"""
import os
import struct
import sys
import zlib

HDR = 4 + 4 + 8 + 8 + 32 + 10 + 4


def segments(data_dir):
    d = os.path.join(data_dir, "audit-log")
    return [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".log")]


def records(buf):
    off = 0
    while off + HDR <= len(buf):
        magic, n = struct.unpack_from("<II", buf, off)
        if magic not in (0x31425653, 0x31455653) or off + n > len(buf):  # SVB1, SVE1
            return
        seq = struct.unpack_from("<Q", buf, off + 8)[0]
        yield off, n, seq
        off += n


def main():
    data_dir, cmd = sys.argv[1], sys.argv[2]
    if cmd == "truncate":
        cut = int(sys.argv[3])
        for path in segments(data_dir):
            buf = open(path, "rb").read()
            for off, _, seq in records(buf):
                if seq >= cut:
                    with open(path, "r+b") as f:
                        f.truncate(off)
                    break
        return 0
    if cmd == "replace":
        old, new = sys.argv[3].encode(), sys.argv[4].encode()
        assert len(old) == len(new), "same length, or the record's length changes"
        for path in segments(data_dir):
            buf = bytearray(open(path, "rb").read())
            for off, n, seq in records(buf):
                rec = bytes(buf[off:off + n])
                lens = struct.unpack_from("<5H", rec, 56)
                text = HDR + sum(l for l in lens if l != 0xFFFF)
                i = rec.find(old, text, n - 4)
                if i < 0:
                    continue
                rec = rec[:i] + new + rec[i + len(old):]
                rec = rec[:-4] + struct.pack("<I", zlib.crc32(rec[:-4]) & 0xffffffff)
                buf[off:off + n] = rec
                open(path, "wb").write(buf)
                print(seq)
                return 0
        print("no record holds %r" % old, file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
