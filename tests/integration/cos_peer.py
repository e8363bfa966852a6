# SPDX-License-Identifier: Apache-2.0
"""cos_peer.py — boto3 and botocore (Debian's, through /usr/bin/python3) against the S3 listener.

Usage: /usr/bin/python3 cos_peer.py ENDPOINT ACCESS_KEY SECRET_FILE COMMAND ARGS...

  flow BUCKET BIGFILE [ROOT_KEY_CRN]
      boto3 (signature_version s3v4, path style) end to end: create the bucket with a
      LocationConstraint (and the SSE-KP headers with ROOT_KEY_CRN), HEAD and location,
      a multipart upload of BIGFILE with 8 MiB parts, small objects with metadata, ListObjectsV2
      with prefix/delimiter and paging, ListObjects v1 with a marker, ranged and full downloads
      compared byte for byte, copy (COPY and REPLACE directives), a presigned GET fetched with
      curl, DeleteObjects and deletes, BucketNotEmpty, and the bucket's delete. Prints "ok ..." lines.
  presign METHOD BUCKET KEY EXPIRES [SKEW_S [QUERY]]
      prints a SigV4 presigned URL (signed SKEW_S seconds off the real clock; QUERY, e.g.
      "uploadId=...", kept in it).
  raw METHOD PATH_AND_QUERY [--skew S] [--body FILE] [--send-body FILE] [--header NAME:VALUE]...
      [--trailer-crc32 | --bad-trailer-crc32 | --signed-chunks | --bad-chunk] [--show-header NAME]
      [--out FILE]
      (--trailer-crc32: the body as aws-chunked STREAMING-UNSIGNED-PAYLOAD-TRAILER with its CRC32
      in the trailer, or a wrong one; --signed-chunks: STREAMING-AWS4-HMAC-SHA256-PAYLOAD with
      every chunk signed, --bad-chunk: the second chunk changed after signing; --show-header: that response header after the code)
      signs one request with botocore's S3SigV4Auth (a real payload SHA-256) and sends it;
      prints "STATUS CODE" (CODE = the S3 error code of an XML error body, or "-").

The secret is read from a file so that it is never in argv.
"""
import base64
import datetime as _dt
import hashlib
import http.client
import os
import re
import subprocess
import sys
import urllib.parse
import zlib

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT, AK, SKFILE, CMD = sys.argv[1:5]
ARGS = sys.argv[5:]
with open(SKFILE) as f:
    SK = f.read().strip()
REGION = "us-south"
MiB = 1 << 20


def skew_clock(seconds):
    """Makes botocore sign with a clock @seconds off (its auth module's datetime only)."""

    class Skewed(_dt.datetime):
        @classmethod
        def utcnow(cls):
            return _dt.datetime.utcnow() + _dt.timedelta(seconds=seconds)

    class Mod:
        datetime = Skewed
        timedelta = _dt.timedelta

    botocore.auth.datetime = Mod


def client():
    return boto3.client(
        "s3", endpoint_url=ENDPOINT, aws_access_key_id=AK, aws_secret_access_key=SK,
        region_name=REGION,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}))


def check(cond, what):
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)


def err_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(MiB), b""):
            h.update(b)
    return h.hexdigest()


def flow(bucket, big, crn=None):
    c = client()
    if crn:
        def add_sse(params, **kw):
            params["headers"]["ibm-sse-kp-encryption-algorithm"] = "AES256"
            params["headers"]["ibm-sse-kp-customer-root-key-crn"] = crn
        c.meta.events.register("before-call.s3.CreateBucket", add_sse)
    c.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-south-standard"})
    h = c.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
    check(h.get("x-amz-bucket-region") == REGION, "x-amz-bucket-region: %r" % h)
    if crn:
        check(h.get("ibm-sse-kp-enabled") == "True" and h.get("ibm-sse-kp-crk-id") == crn,
              "SSE headers of HEAD bucket: %r" % h)
    else:
        check("ibm-sse-kp-enabled" not in h, "SSE header on a plain bucket")
    check(c.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "us-south-standard", "location")
    code, st = err_code(lambda: c.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-south-standard"}))
    check(code == "BucketAlreadyOwnedByYou" and st == 409, "create twice: %s %s" % (code, st))
    names = [b["Name"] for b in c.list_buckets()["Buckets"]]
    check(bucket in names, "list buckets: %r" % names)
    print("ok boto3: create bucket with location, HEAD (region%s), location, twice 409, list" %
          (", SSE-KP" if crn else ""))

    size = os.path.getsize(big)
    c.upload_file(big, bucket, "dir/big.bin",
                  Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                                        max_concurrency=4))
    ho = c.head_object(Bucket=bucket, Key="dir/big.bin")
    nparts = (size + 8 * MiB - 1) // (8 * MiB)
    check(ho["ContentLength"] == size and ho["ETag"].endswith('-%d"' % nparts),
          "multipart object: %r %r" % (ho["ContentLength"], ho["ETag"]))
    print("ok boto3: multipart upload of %d MiB in %d parts, ETag -%d" % (size // MiB, nparts, nparts))

    c.put_object(Bucket=bucket, Key="dir/sub/a.txt", Body=b"hello, object store\n",
                 Metadata={"colour": "blue"}, ContentType="text/plain")
    c.put_object(Bucket=bucket, Key="dir/sub/b.txt", Body=b"b")
    c.put_object(Bucket=bucket, Key="top.txt", Body=b"")
    c.put_object(Bucket=bucket, Key="odd key +%/ü.txt", Body=b"odd")
    g = c.get_object(Bucket=bucket, Key="dir/sub/a.txt")
    check(g["Body"].read() == b"hello, object store\n" and g["Metadata"] == {"colour": "blue"}
          and g["ContentType"] == "text/plain", "metadata/content type: %r" % g["Metadata"])
    check(c.get_object(Bucket=bucket, Key="odd key +%/ü.txt")["Body"].read() == b"odd", "odd key")
    check(c.get_object(Bucket=bucket, Key="top.txt")["Body"].read() == b"", "empty object")
    print("ok boto3: small objects with metadata and content type, an odd key, an empty object")

    l = c.list_objects_v2(Bucket=bucket, Prefix="dir/", Delimiter="/")
    check([o["Key"] for o in l.get("Contents", [])] == ["dir/big.bin"], "v2 contents: %r" % l.get("Contents"))
    check([p["Prefix"] for p in l.get("CommonPrefixes", [])] == ["dir/sub/"], "v2 prefixes")
    check(l["KeyCount"] == 2 and not l["IsTruncated"], "v2 KeyCount")
    keys, tok, pages = [], None, 0
    while True:
        kw = {"Bucket": bucket, "MaxKeys": 2}
        if tok:
            kw["ContinuationToken"] = tok
        p = c.list_objects_v2(**kw)
        pages += 1
        keys += [o["Key"] for o in p.get("Contents", [])]
        if not p["IsTruncated"]:
            break
        tok = p["NextContinuationToken"]
    want = sorted(["dir/big.bin", "dir/sub/a.txt", "dir/sub/b.txt", "top.txt", "odd key +%/ü.txt"],
                  key=lambda k: k.encode())
    check(keys == want and pages == 3, "v2 paging: %r in %d pages" % (keys, pages))
    sa = c.list_objects_v2(Bucket=bucket, StartAfter="dir/sub/a.txt")
    check([o["Key"] for o in sa["Contents"]] == want[want.index("dir/sub/a.txt") + 1:], "start-after")
    v1 = c.list_objects(Bucket=bucket, Marker="dir/sub/b.txt")
    check([o["Key"] for o in v1["Contents"]] == want[want.index("dir/sub/b.txt") + 1:], "v1 marker")
    enc = c.list_objects_v2(Bucket=bucket, Prefix="odd")  # boto3 asks encoding-type=url and decodes
    check([o["Key"] for o in enc["Contents"]] == ["odd key +%/ü.txt"], "url encoding: %r" % enc.get("Contents"))
    print("ok boto3: ListObjectsV2 prefix/delimiter/paging/start-after, ListObjects marker, url encoding")

    with open(big, "rb") as f:
        f.seek(3 * MiB + 17)
        want = f.read(MiB)
        f.seek(size - 1000)
        tail = f.read()
    r = c.get_object(Bucket=bucket, Key="dir/big.bin", Range="bytes=%d-%d" % (3 * MiB + 17, 4 * MiB + 16))
    check(r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == want
          and r["ContentRange"] == "bytes %d-%d/%d" % (3 * MiB + 17, 4 * MiB + 16, size), "ranged get")
    r = c.get_object(Bucket=bucket, Key="dir/big.bin", Range="bytes=-1000")
    check(r["Body"].read() == tail, "suffix range")
    code, st = err_code(lambda: c.get_object(Bucket=bucket, Key="dir/big.bin", Range="bytes=%d-" % size))
    check(code == "InvalidRange" and st == 416, "unsatisfiable range: %s %s" % (code, st))
    out = big + ".boto3"
    c.download_file(bucket, "dir/big.bin", out)
    check(sha256_file(out) == sha256_file(big), "full download differs")
    os.unlink(out)
    print("ok boto3: ranged GET (206, Content-Range), suffix range, 416, full download byte for byte")

    c.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "dir/sub/a.txt"})
    g = c.get_object(Bucket=bucket, Key="copy.txt")
    check(g["Body"].read() == b"hello, object store\n" and g["Metadata"] == {"colour": "blue"}, "copy")
    c.copy_object(Bucket=bucket, Key="copy2.txt", CopySource={"Bucket": bucket, "Key": "dir/sub/a.txt"},
                  MetadataDirective="REPLACE", Metadata={"shape": "round"}, ContentType="text/x")
    g = c.get_object(Bucket=bucket, Key="copy2.txt")
    check(g["Metadata"] == {"shape": "round"} and g["ContentType"] == "text/x", "copy REPLACE: %r" % g["Metadata"])
    print("ok boto3: copy with COPY and REPLACE metadata directives")

    url = c.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/sub/a.txt"}, ExpiresIn=300)
    check("X-Amz-Signature=" in url, "presigned URL is not SigV4: " + url)
    body = subprocess.run(["curl", "-sf", "--path-as-is", url], capture_output=True).stdout
    check(body == b"hello, object store\n", "presigned GET with curl: %r" % body)
    print("ok boto3: presigned GET fetched with curl")

    code, st = err_code(lambda: c.delete_bucket(Bucket=bucket))
    check(code == "BucketNotEmpty" and st == 409, "delete non-empty bucket: %s %s" % (code, st))
    keys = want_all(c, bucket)
    d = c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[:3]]})
    check(sorted(x["Key"] for x in d.get("Deleted", [])) == sorted(keys[:3]) and not d.get("Errors"),
          "DeleteObjects: %r" % d)
    d = c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": keys[3]}], "Quiet": True})
    check(not d.get("Deleted") and not d.get("Errors"), "DeleteObjects quiet: %r" % d)
    for k in want_all(c, bucket):
        c.delete_object(Bucket=bucket, Key=k)
    check(c.list_objects_v2(Bucket=bucket)["KeyCount"] == 0, "objects left")
    code, st = err_code(lambda: c.head_object(Bucket=bucket, Key="top.txt"))
    check(st == 404, "deleted object HEAD: %s" % st)
    c.delete_bucket(Bucket=bucket)
    code, st = err_code(lambda: c.head_bucket(Bucket=bucket))
    check(st == 404, "deleted bucket HEAD: %s" % st)
    print("ok boto3: BucketNotEmpty, DeleteObjects (and quiet), delete objects, delete bucket")


def want_all(c, bucket):
    return [o["Key"] for o in c.list_objects_v2(Bucket=bucket).get("Contents", [])]


def presign(method, bucket, key, expires, skew=0, query=""):
    """botocore's S3SigV4QueryAuth itself (boto3 may pick another signer, e.g. awscrt's)."""
    if int(skew):
        skew_clock(int(skew))
    creds = botocore.credentials.Credentials(AK, SK)
    url = "%s/%s/%s" % (ENDPOINT, bucket, urllib.parse.quote(key)) + ("?" + query if query else "")
    req = botocore.awsrequest.AWSRequest(method=method, url=url)
    botocore.auth.S3SigV4QueryAuth(creds, "s3", REGION, expires=int(expires)).add_auth(req)
    print(req.prepare().url)


def raw(method, path, args):
    body, headers, out, send, trailer, show, signed = b"", {}, None, None, None, None, None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--skew":
            skew_clock(int(args[i + 1]))
            i += 2
        elif a == "--body":
            body = open(args[i + 1], "rb").read()
            i += 2
        elif a == "--header":
            k, v = args[i + 1].split(":", 1)
            headers[k] = v
            i += 2
        elif a == "--send-body":  # sent instead of the signed body: a payload hash mismatch
            send = open(args[i + 1], "rb").read()
            i += 2
        elif a in ("--signed-chunks", "--bad-chunk"):  # aws-chunked, every chunk signed
            signed = a
            i += 1
        elif a in ("--trailer-crc32", "--bad-trailer-crc32"):  # aws-chunked, unsigned, trailer
            trailer = a
            i += 1
        elif a == "--show-header":  # printed after the code ("-" when absent)
            show = args[i + 1]
            i += 2
        elif a == "--out":
            out = args[i + 1]
            i += 2
        else:
            raise SystemExit("raw: unknown argument " + a)
    creds = botocore.credentials.Credentials(AK, SK)
    if trailer:
        crc = zlib.crc32(body) ^ (1 if trailer.startswith("--bad") else 0)
        b64 = base64.b64encode(crc.to_bytes(4, "big")).decode()
        enc = b"".join(b"%x\r\n%s\r\n" % (len(body[o:o + 65536]), body[o:o + 65536])
                       for o in range(0, len(body), 65536))
        enc += b"0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % b64.encode()
        headers.update({"Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                        "x-amz-decoded-content-length": str(len(body))})
        body = enc
    req = botocore.awsrequest.AWSRequest(method=method, url=ENDPOINT + path, data=body, headers=headers)
    if trailer:
        req.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32",
                                                         "name": "x-amz-checksum-crc32"}}
    if signed:
        class Streaming(botocore.auth.S3SigV4Auth):
            def payload(self, request):
                return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        data = body
        req.headers["Content-Encoding"] = "aws-chunked"
        req.headers["x-amz-decoded-content-length"] = str(len(data))
        auth = Streaming(creds, "s3", REGION)
        auth.add_auth(req)
        ts = req.context["timestamp"]
        scope = "%s/%s/s3/aws4_request" % (ts[:8], REGION)
        prev = req.headers["Authorization"].rsplit("Signature=", 1)[1]
        key = auth._sign(("AWS4" + SK).encode(), ts[:8])
        for part in (REGION, "s3", "aws4_request"):
            key = auth._sign(key, part)
        empty = hashlib.sha256(b"").hexdigest()
        enc = b""
        chunks = [data[o:o + 16384] for o in range(0, len(data), 16384)] + [b""]
        for n, c in enumerate(chunks):
            sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", ts, scope, prev, empty, hashlib.sha256(c).hexdigest()])
            prev = auth._sign(key, sts, hex=True)
            if signed == "--bad-chunk" and n == 1:
                c = bytes([c[0] ^ 1]) + c[1:]
            enc += b"%x;chunk-signature=%s\r\n%s\r\n" % (len(c), prev.encode(), c)
        req.data = enc
        body = enc
    else:
        botocore.auth.S3SigV4Auth(creds, "s3", REGION).add_auth(req)
    p = req.prepare()
    u = urllib.parse.urlsplit(ENDPOINT)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    hdrs = dict(p.headers)
    if send is not None:
        body = send
        hdrs = {k: v for k, v in hdrs.items() if k.lower() != "content-length"}
    conn.request(method, p.url[len(ENDPOINT):], body=body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    if out:
        with open(out, "wb") as f:
            f.write(data)
    m = re.search(rb"<Code>([^<]*)</Code>", data)
    if show:
        print(r.status, m.group(1).decode() if m else "-", r.getheader(show) or "-")
    else:
        print(r.status, m.group(1).decode() if m else "-")


if CMD == "flow":
    flow(*ARGS)
elif CMD == "presign":
    presign(*ARGS)
elif CMD == "raw":
    raw(ARGS[0], ARGS[1], ARGS[2:])
else:
    raise SystemExit("unknown command " + CMD)
