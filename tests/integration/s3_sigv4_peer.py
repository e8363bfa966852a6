# SPDX-License-Identifier: Apache-2.0
"""s3_sigv4_peer.py — requests signed by peers we did not write, captured off the wire.

Run with Debian's /usr/bin/python3 (botocore, boto3). Starts a small HTTP
listener on 127.0.0.1 that answers every request 200 and records it exactly as
it arrived (request target, headers in order, body), then makes requests to it:

  * boto3 (signature_version s3v4, path style) for real S3 operations with odd
    keys, prefixes, tokens and metadata;
  * botocore's S3SigV4Auth on raw URLs whose queries have repeated keys, empty
    and missing values, '=' and '~' in values, encoded unicode;
  * presigned URLs from boto3, fetched with curl --path-as-is;
  * curl 7.88's own --aws-sigv4 on query-less requests (the only ones it signs
    right).

Writes one JSON object per captured request to the file named by argv[1]; the
C program sigv4_peer then verifies each with our verifier and re-signs it with
our signer. argv[2] is the access key id, argv[3] a file holding the secret.
"""
import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
from botocore.config import Config

OUT, AK = sys.argv[1], sys.argv[2]
with open(sys.argv[3]) as f:
    SK = f.read()
REGION = "us-south"

ODD_KEYS = [
    "plain.txt",
    "a b+c~d=e&f",
    "dir/sub dir//double//slash",
    "%2F literal percent",
    "uni/\u00fcml\u00e4ut/\u2713\u20ac",
    "dots/./and/../segments",
    "sym!$'()*,;:@[]",
    "q?mark#hash",
    "tilde~under_score-dash.dot",
]


class Capture:
    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.records = []
        self.label = "?"
        self.lock = threading.Lock()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            c, _ = self.srv.accept()
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for l in lines[1:]:
                    n, v = l.split(":", 1)
                    headers.append([n, v.strip(" \t")])
                hmap = {n.lower(): v for n, v in headers}
                if hmap.get("expect", "").lower() == "100-continue":
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                n = int(hmap.get("content-length", "0"))
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.records.append({
                        "name": self.label, "method": method, "target": target,
                        "headers": headers, "body_b64": base64.b64encode(body).decode(),
                    })
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: \"00\"\r\n\r\n")
        finally:
            c.close()


cap = Capture()
endpoint = f"http://127.0.0.1:{cap.port}"
s3 = boto3.client(
    "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=AK,
    aws_secret_access_key=SK,
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                  retries={"max_attempts": 1}))


def call(label, fn, **kw):
    cap.label = label
    try:
        fn(**kw)
    except Exception as e:  # the stub's empty answers do not always parse; the request is what counts
        if "Could not connect" in str(e):
            raise


# ---- boto3: real operations -------------------------------------------------------------
call("create_bucket", s3.create_bucket, Bucket="bucket",
     CreateBucketConfiguration={"LocationConstraint": "us-south-standard"})
for k in ODD_KEYS:
    call(f"put_object {k!r}", s3.put_object, Bucket="bucket", Key=k, Body=b"hello " + k.encode(),
         ContentType="text/plain; charset=utf-8", Metadata={"note": "two  spaced  words"})
    call(f"get_object {k!r}", s3.get_object, Bucket="bucket", Key=k, Range="bytes=0-9")
    call(f"head_object {k!r}", s3.head_object, Bucket="bucket", Key=k)
call("list_objects_v2 odd", s3.list_objects_v2, Bucket="bucket", Prefix="a b+c=d/\u00fc",
     Delimiter="/", ContinuationToken="1+2/3==", StartAfter="~x", MaxKeys=5,
     EncodingType="url")
call("list_objects_v2 empty prefix", s3.list_objects_v2, Bucket="bucket", Prefix="")
call("create_multipart_upload", s3.create_multipart_upload, Bucket="bucket", Key="big file.bin")
call("upload_part", s3.upload_part, Bucket="bucket", Key="big file.bin", PartNumber=7,
     UploadId="2~abc+def/==", Body=b"x" * 1000)
call("complete_multipart_upload", s3.complete_multipart_upload, Bucket="bucket",
     Key="big file.bin", UploadId="2~abc+def/==",
     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"aa"'}, {"PartNumber": 7, "ETag": '"bb"'}]})
call("abort_multipart_upload", s3.abort_multipart_upload, Bucket="bucket", Key="big file.bin",
     UploadId="2~abc+def/==")
call("copy_object", s3.copy_object, Bucket="bucket", Key="copy of a b",
     CopySource={"Bucket": "bucket", "Key": "a b+c~d=e&f"})
call("delete_objects", s3.delete_objects, Bucket="bucket",
     Delete={"Objects": [{"Key": "a b"}, {"Key": "c&d"}]})
call("put_object sha256 checksum", s3.put_object, Bucket="bucket", Key="sum", Body=b"data",
     ChecksumAlgorithm="SHA256")
call("delete_object", s3.delete_object, Bucket="bucket", Key="a b+c~d=e&f")
call("head_bucket", s3.head_bucket, Bucket="bucket")

# ---- botocore's signer on raw URLs with hand-made queries ------------------------------------
creds = botocore.credentials.Credentials(AK, SK)
RAW = [
    "/bucket?a=1&a=0&b=&c",
    "/bucket?uploads",
    "/bucket?list-type=2&prefix=x%3Dy%26z&delimiter=%2F",
    "/bucket?k=%E2%82%AC&k2=~tilde&k3=a%2Bb&k4=a%20b",
    "/bucket/a/b//c?partNumber=2&uploadId=x",
    "/bucket/%252F?versionId=",
    "/bucket?z=1&y=2&x=3&x=2&x=10",
]
for raw in RAW:
    req = botocore.awsrequest.AWSRequest(
        method="GET", url=endpoint + raw,
        headers={"x-amz-content-sha256": botocore.auth.UNSIGNED_PAYLOAD})
    botocore.auth.S3SigV4Auth(creds, "s3", REGION).add_auth(req)
    prepared = req.prepare()
    cap.label = f"botocore raw {raw}"
    hc = http.client.HTTPConnection("127.0.0.1", cap.port)
    hc.putrequest("GET", raw, skip_host=True, skip_accept_encoding=True)
    hc.putheader("Host", f"127.0.0.1:{cap.port}")
    for n, v in prepared.headers.items():
        hc.putheader(n, v)
    hc.endheaders()
    hc.getresponse().read()
    hc.close()

# ---- presigned URLs from boto3, fetched by curl --------------------------------------------
presigned = []
for k in ODD_KEYS:
    presigned.append(("GET", s3.generate_presigned_url(
        "get_object", Params={"Bucket": "bucket", "Key": k}, ExpiresIn=600)))
presigned.append(("GET", s3.generate_presigned_url(
    "get_object", Params={"Bucket": "bucket", "Key": "report.pdf",
                          "ResponseContentDisposition": 'attachment; filename="a b.pdf"',
                          "ResponseContentType": "application/pdf"}, ExpiresIn=604800)))
presigned.append(("PUT", s3.generate_presigned_url(
    "put_object", Params={"Bucket": "bucket", "Key": "up load+1"}, ExpiresIn=60)))
presigned.append(("GET", s3.generate_presigned_url(
    "list_objects_v2", Params={"Bucket": "bucket", "Prefix": "a b/", "Delimiter": "/"},
    ExpiresIn=900)))
for method, url in presigned:
    cap.label = f"presigned {method} {url.split('?')[0].split('/', 3)[3]} (curl)"
    args = ["curl", "-sS", "--path-as-is", "-o", "/dev/null", "-X", method, url]
    if method == "PUT":
        args += ["--data-binary", "payload"]
    subprocess.run(args, check=True)

# ---- curl's own signer (query-less requests) ----------------------------------------------
# The credentials go in a config file (0600), never on curl's command line.
curl_cfg = os.path.join(os.path.dirname(os.path.abspath(OUT)), "curl-sigv4.cfg")
fd = os.open(curl_cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    quoted = (AK + ":" + SK).replace("\\", "\\\\").replace('"', '\\"')
    f.write(f'user = "{quoted}"\n')
for path, extra in [("/bucket/plain.txt", []),
                    ("/bucket/a%20b%2Bc~d", []),
                    ("/bucket/dir/x.bin", ["-X", "PUT", "--data-binary", "curl body"])]:
    cap.label = f"curl --aws-sigv4 {path}"
    subprocess.run(["curl", "-sS", "--path-as-is", "-o", "/dev/null", "--aws-sigv4",
                    f"aws:amz:{REGION}:s3", "-K", curl_cfg,
                    "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", endpoint + path] + extra,
                   check=True)

# ---- the aws clis, when present (the one on PATH, Debian's at /usr/bin/aws) ----------------
env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_DEFAULT_REGION=REGION,
           AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
           AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard")
clis = [c for c in (shutil.which("aws"), "/usr/bin/aws") if c and os.access(c, os.X_OK)]
body_file = os.path.join(os.path.dirname(OUT), "aws-body.bin")
with open(body_file, "wb") as f:
    f.write(b"aws cli body\n" * 100)
for cli in dict.fromkeys(clis):
    for args in (["put-object", "--bucket", "bucket", "--key", "cli dir/a+b=c \u00fc", "--body", body_file],
                 ["list-objects-v2", "--bucket", "bucket", "--prefix", "cli dir/", "--delimiter", "/"],
                 ["create-multipart-upload", "--bucket", "bucket", "--key", "cli big"],
                 ["get-object", "--bucket", "bucket", "--key", "cli dir/x", "--range", "bytes=0-1",
                  os.devnull]):
        cap.label = f"{cli} s3api {args[0]}"
        subprocess.run([cli, "--endpoint-url", endpoint, "s3api"] + args, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

with open(OUT, "w") as f:
    for r in cap.records:
        r["region"] = REGION
        f.write(json.dumps(r) + "\n")
print(f"captured {len(cap.records)} requests", file=sys.stderr)
