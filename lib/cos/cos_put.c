// SPDX-License-Identifier: Apache-2.0
/*
 * cos_put.c — the streaming body pipeline of PutObject and UploadPart, and
 * CopyObject.
 *
 * Body bytes go to the engine's writer as libmicrohttpd hands them over,
 * never whole in memory. Every integrity value the client declared is
 * checked before cos_writer_commit: the payload hash of SigV4 (a real
 * SHA-256, hashed while streaming), the aws-chunked framing with its chunk
 * and trailer signatures and trailer checksum (s3_chunked), Content-MD5
 * against the writer's MD5, and an x-amz-checksum-* header. On any failure
 * the writer is aborted, so nothing becomes visible.
 *
 * This file must never keep a body or log a header value.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "sealvm/b64.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "cos_front.h"

struct cos_put {
	struct cos_writer *w;
	struct s3_chunked *chunked; /* aws-chunked modes */
	enum sigv4_payload mode;
	bool sha_on; /* SIGV4_PAYLOAD_SHA256: the raw body against the declared hash */
	struct s3_checksum sha;
	enum s3_checksum_alg hdr_alg; /* an x-amz-checksum-* header */
	const char *hdr_value;	      /* libmicrohttpd's string */
	struct s3_checksum hdr;
	const char *content_md5; /* libmicrohttpd's string */
	uint64_t size;		 /* decoded length declared */
	uint64_t received;	 /* decoded bytes so far */
	json_t *meta;
	struct sealvm_err werr; /* the writer's error, from inside the decoder's callback */
};

void cos_put_free(struct cos_req *req)
{
	struct cos_put *p = req->put;
	if (!p)
		return;
	cos_writer_abort(p->w);
	s3_chunked_free(p->chunked);
	s3_checksum_done(&p->sha);
	s3_checksum_done(&p->hdr);
	json_decref(p->meta);
	free(p);
	req->put = NULL;
}

int cos_meta_from_headers(struct cos_req *req, json_t **ret, struct sealvm_err *err)
{
	json_t *m = NULL;
	size_t total = 0;
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *n = req->headers[i].name;
		if (strncasecmp(n, "x-amz-meta-", 11) != 0)
			continue;
		const char *v = req->headers[i].value;
		char name[256];
		size_t nl = strlen(n + 11);
		if (nl == 0 || nl >= sizeof(name)) {
			json_decref(m);
			return sealvm_err_set(
				err, -EINVAL, "InvalidArgument",
				"a metadata header name must have 1 to 255 characters "
				"after x-amz-meta-");
		}
		for (size_t k = 0; k <= nl; k++) {
			char c = n[11 + k];
			name[k] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		if (!cos_utf8_valid(v)) {
			json_decref(m);
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "the value of x-amz-meta-%s is not UTF-8", name);
		}
		total += nl + strlen(v);
		if (total > COS_META_MAX) {
			json_decref(m);
			return sealvm_err_set(err, -EINVAL, "MetadataTooLarge",
					      "user metadata may have at most %d bytes (names and "
					      "values)",
					      COS_META_MAX);
		}
		if (!m && !(m = json_object()))
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
		json_t *old = json_object_get(m, name);
		json_t *nv;
		if (old) {
			/* repeated: joined with ',' as S3 does */
			_cleanup_free_ char *j = NULL;
			if (asprintf(&j, "%s,%s", json_string_value(old), v) < 0) {
				j = NULL;
				nv = NULL;
			} else {
				nv = json_string(j);
			}
		} else {
			nv = json_string(v);
		}
		if (!nv || json_object_set_new(m, name, nv) < 0) {
			json_decref(m);
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
		}
	}
	*ret = m;
	return 0;
}

/* A decimal length header: -EINVAL when not one. */
static int parse_u64(const char *s, uint64_t *ret)
{
	if (!s || !*s || strlen(s) > 19)
		return -EINVAL;
	uint64_t n = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		n = n * 10 + (uint64_t)(*p - '0');
	}
	*ret = n;
	return 0;
}

/* The declared x-amz-checksum-* header (at most one), checked for form. */
static int declared_checksum(struct cos_req *req, struct cos_put *p, struct sealvm_err *err)
{
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *n = req->headers[i].name;
		if (strncasecmp(n, "x-amz-checksum-", 15) != 0 ||
		    strcasecmp(n, "x-amz-checksum-algorithm") == 0 ||
		    strcasecmp(n, "x-amz-checksum-mode") == 0 ||
		    strcasecmp(n, "x-amz-checksum-type") == 0)
			continue;
		enum s3_checksum_alg a = s3_checksum_from_header(n);
		if (a == S3_CHECKSUM_NONE)
			return sealvm_err_set(err, -EINVAL, "InvalidRequest",
					      "%.40s is not a checksum this server knows: use "
					      "crc32, crc32c, sha1 or sha256",
					      n);
		if (p->hdr_alg != S3_CHECKSUM_NONE)
			return sealvm_err_set(
				err, -EINVAL, "InvalidRequest",
				"a request may declare only one x-amz-checksum-* value");
		const char *v = req->headers[i].value;
		size_t vl = strlen(v);
		if (vl != sealvm_b64_encoded_len(s3_checksum_len(a), false) ||
		    !sealvm_b64_is_canonical(v, vl))
			return sealvm_err_set(err, -EINVAL, "InvalidRequest",
					      "the value of %.40s is not the base64 of a %zu-byte "
					      "digest",
					      n, s3_checksum_len(a));
		p->hdr_alg = a;
		p->hdr_value = v;
	}
	return 0;
}

/* Decoded body bytes: checksummed, then written. */
static int sink(void *userdata, const void *data, size_t len)
{
	struct cos_req *req = userdata;
	struct cos_put *p = req->put;
	if (p->received + len > p->size)
		return sealvm_err_set(&p->werr, -EBADMSG, "IncompleteBody",
				      "the body has more bytes than the declared length %llu",
				      (unsigned long long)p->size);
	p->received += len;
	if (p->hdr_alg != S3_CHECKSUM_NONE)
		s3_checksum_update(&p->hdr, data, len);
	return cos_writer_write(p->w, data, len, &p->werr);
}

int cos_put_begin(struct cos_req *req, struct sealvm_err *err)
{
	bool part = req->op == COS_OP_PART_PUT;
	const char *upload_id = NULL;
	unsigned part_number = 0;
	int r;

	if (part) {
		const char *pn = NULL;
		r = s3_query_get(&req->q, "partNumber", &pn, err);
		uint64_t n = 0;
		if (r == -ENOENT ||
		    (r == 0 && (parse_u64(pn, &n) < 0 || n < 1 || n > COS_PARTS_MAX)))
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "partNumber must be a whole number from 1 to %d",
					      COS_PARTS_MAX);
		if (r < 0)
			return r;
		part_number = (unsigned)n;
		r = s3_query_get(&req->q, "uploadId", &upload_id, err);
		if (r == -ENOENT || (r == 0 && !*upload_id))
			return sealvm_err_set(err, -ENOENT, "NoSuchUpload",
					      "UploadPart needs the uploadId of an upload");
		if (r < 0)
			return r;
	}

	struct cos_put *p = calloc(1, sizeof(*p));
	if (!p)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	req->put = p;

	/* the payload mode: SigV4's, or for a bearer token what x-amz-content-sha256 says */
	if (!req->sigv4) {
		struct sigv4_request sr = {
			.method = req->method,
			.raw_path = req->path,
			.raw_query = req->query,
			.headers = req->headers,
			.n_headers = req->n_headers,
		};
		r = sigv4_payload_declaration(&sr, &req->auth, err);
		if (r < 0)
			return r;
	}
	p->mode = req->auth.payload;

	/* the decoded length */
	if (sigv4_payload_is_streaming(p->mode)) {
		if (req->auth.decoded_length < 0)
			return sealvm_err_set(err, -EINVAL, "MissingContentLength",
					      "an aws-chunked body needs "
					      "x-amz-decoded-content-length");
		p->size = (uint64_t)req->auth.decoded_length;
	} else {
		const char *cl = cos_req_header(req, "content-length");
		if (!cl)
			return sealvm_err_set(err, -EINVAL, "MissingContentLength",
					      "send the body's length in Content-Length");
		if (parse_u64(cl, &p->size) < 0)
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "Content-Length is not a length");
	}
	if (p->size > COS_PART_MAX)
		return sealvm_err_set(err, -EFBIG, "EntityTooLarge",
				      "a single upload may have at most %llu bytes: use a "
				      "multipart upload",
				      (unsigned long long)COS_PART_MAX);

	p->content_md5 = cos_req_header(req, "content-md5");
	if (p->content_md5 &&
	    (strlen(p->content_md5) != 24 || !sealvm_b64_is_canonical(p->content_md5, 24)))
		return sealvm_err_set(err, -EINVAL, "InvalidDigest",
				      "Content-MD5 is not the base64 of a 16-byte MD5");
	r = declared_checksum(req, p, err);
	if (r < 0)
		return r;
	if (p->hdr_alg != S3_CHECKSUM_NONE && s3_checksum_init(&p->hdr, p->hdr_alg) < 0)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	if (p->mode == SIGV4_PAYLOAD_SHA256) {
		if (s3_checksum_init(&p->sha, S3_CHECKSUM_SHA256) < 0)
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
		p->sha_on = true;
	}
	if (!part) {
		r = cos_meta_from_headers(req, &p->meta, err);
		if (r < 0)
			return r;
	}

	struct cos_put_args a = {
		.bucket = &req->bucket,
		.key = req->key,
		.content_type = part ? NULL : cos_req_header(req, "content-type"),
		.meta = p->meta,
		.size = p->size,
		.upload_id = upload_id,
		.part_number = part_number,
	};
	if (p->hdr_alg != S3_CHECKSUM_NONE) {
		a.checksum.algo = p->hdr_alg;
		snprintf(a.checksum.value, sizeof(a.checksum.value), "%s", p->hdr_value);
	} else if (req->auth.trailer[0]) {
		/* the value arrives in the trailer (verified by the decoder before commit) */
		a.checksum.algo = s3_checksum_from_header(req->auth.trailer);
	}
	r = cos_writer_open(req->c, &a, &p->w, err);
	if (r < 0)
		return r;

	if (sigv4_payload_is_streaming(p->mode)) {
		struct s3_chunked_config cc = {
			.mode = p->mode,
			.signing_key = req->auth.signing_key,
			.amz_date = req->auth.amz_date,
			.scope = req->auth.scope,
			.seed_signature = req->auth.signature,
			.trailer = req->auth.trailer[0] ? req->auth.trailer : NULL,
			.decoded_length = req->auth.decoded_length,
			.data = sink,
			.userdata = req,
		};
		r = s3_chunked_new(&cc, &p->chunked, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int cos_put_feed(struct cos_req *req, const void *data, size_t len, struct sealvm_err *err)
{
	struct cos_put *p = req->put;
	int r;
	if (!p)
		return sealvm_err_set(err, -EIO, "InternalError", "no body pipeline");
	if (p->chunked) {
		struct sealvm_err derr = SEALVM_ERR_INIT;
		r = s3_chunked_feed(p->chunked, data, len, &derr);
		if (r < 0) {
			/* the writer's own error first: it is the root cause */
			const struct sealvm_err *e = sealvm_err_isset(&p->werr) ? &p->werr : &derr;
			return sealvm_err_set(err, r, e->reason[0] ? e->reason : "InternalError",
					      "%s", e->message);
		}
		return 0;
	}
	if (p->sha_on)
		s3_checksum_update(&p->sha, data, len);
	r = sink(req, data, len);
	if (r < 0)
		return sealvm_err_set(err, r, p->werr.reason[0] ? p->werr.reason : "InternalError",
				      "%s", p->werr.message);
	return 0;
}

/* Every declared integrity value, after the last body byte and before the commit. */
static int verify_body(struct cos_req *req, unsigned char md5[16], struct sealvm_err *err)
{
	struct cos_put *p = req->put;
	int r;
	if (p->chunked) {
		r = s3_chunked_finish(p->chunked, err);
		if (r < 0)
			return r;
	} else if (p->received != p->size) {
		return sealvm_err_set(err, -EBADMSG, "IncompleteBody",
				      "the body has %llu bytes, fewer than the declared %llu",
				      (unsigned long long)p->received, (unsigned long long)p->size);
	}
	if (p->sha_on) {
		unsigned char d[S3_CHECKSUM_MAX];
		if (s3_checksum_final(&p->sha, d) != 32)
			return sealvm_err_set(err, -EIO, "InternalError", "SHA-256 failed");
		r = sigv4_check_payload(&req->auth, d, err);
		if (r < 0)
			return r;
	}
	r = cos_writer_finish(p->w, md5, err);
	if (r < 0)
		return r;
	if (p->content_md5) {
		unsigned char want[18];
		long n = sealvm_b64_decode(p->content_md5, 24, want, false);
		if (n != 16)
			return sealvm_err_set(err, -EINVAL, "InvalidDigest",
					      "Content-MD5 is not the base64 of a 16-byte MD5");
		if (CRYPTO_memcmp(want, md5, 16) != 0)
			return sealvm_err_set(err, -EBADMSG, "BadDigest",
					      "the Content-MD5 you sent does not match the MD5 of "
					      "the body received");
	}
	if (p->hdr_alg != S3_CHECKSUM_NONE) {
		r = s3_checksum_verify_b64(&p->hdr, p->hdr_value, err);
		if (r < 0)
			return r;
	}
	return 0;
}

void cos_put_finish(struct cos_req *req, struct cos_resp *resp)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_put *p = req->put;
	unsigned char md5[16];
	int r;

	if (!p) {
		sealvm_err_set(&err, -EIO, "InternalError", "no body pipeline");
		cos_fail_resp(req, &err, resp);
		return;
	}
	r = verify_body(req, md5, &err);
	if (r < 0) {
		cos_put_free(req);
		cos_fail_resp(req, &err, resp);
		return;
	}
	const char *trailer_b64 = NULL;
	enum s3_checksum_alg trailer_alg = S3_CHECKSUM_NONE;
	if (p->chunked && s3_chunked_trailer(p->chunked, &trailer_alg, &trailer_b64) < 0)
		trailer_b64 = NULL;

	if (trailer_b64 && trailer_alg != S3_CHECKSUM_NONE) {
		/* the trailer's value, verified by the decoder, is what the object keeps */
		struct cos_checksum ck = {.algo = trailer_alg};
		snprintf(ck.value, sizeof(ck.value), "%s", trailer_b64);
		r = cos_writer_set_checksum(p->w, &ck, &err);
		if (r < 0) {
			cos_put_free(req);
			cos_fail_resp(req, &err, resp);
			return;
		}
	}
	struct audit_event ev;
	cos_event(req, 200, NULL, &ev);
	struct cos_writer *w = TAKE_PTR(p->w);
	r = cos_writer_commit(w, &ev, NULL, &err);
	if (r < 0) {
		cos_put_free(req);
		cos_fail_resp(req, &err, resp);
		return;
	}
	char hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md5[i]);
	resp->status = 200;
	cos_resp_header(resp, "ETag", "\"%s\"", hex);
	if (p->hdr_alg != S3_CHECKSUM_NONE)
		cos_resp_header(resp, s3_checksum_header(p->hdr_alg), "%s", p->hdr_value);
	else if (trailer_b64 && trailer_alg != S3_CHECKSUM_NONE)
		cos_resp_header(resp, s3_checksum_header(trailer_alg), "%s", trailer_b64);
	if (req->bucket.sse) {
		cos_resp_header(resp, "ibm-sse-kp-enabled", "True");
		cos_resp_header(resp, "ibm-sse-kp-customer-root-key-crn", "%s",
				req->bucket.sse_key_crn);
	}
	cos_put_free(req);
}

/* ---- CopyObject ------------------------------------------------------------------------------ */

static int copy_run(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	const char *src = cos_req_header(req, "x-amz-copy-source");
	if (!src || !*src)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "x-amz-copy-source must name /bucket/key");
	if (strchr(src, '?'))
		return sealvm_err_set(err, -ENOTSUP, "NotImplemented",
				      "copying a version (x-amz-copy-source with ?versionId) is "
				      "not implemented");
	if (*src == '/')
		src++;
	const char *slash = strchr(src, '/');
	if (!slash || slash == src || !slash[1])
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "x-amz-copy-source must name /bucket/key");
	_cleanup_free_ char *sb = NULL, *sk = NULL;
	int r = cos_path_decode(src, (size_t)(slash - src), &sb, err);
	if (r < 0)
		return r;
	r = cos_path_decode(slash + 1, strlen(slash + 1), &sk, err);
	if (r < 0)
		return r;
	if (strlen(sk) > COS_KEY_MAX || !cos_utf8_valid(sk) || strlen(sb) > COS_BUCKET_NAME_MAX)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "x-amz-copy-source does not name a bucket and key");
	struct cos_bucket srcb;
	r = cos_bucket_get(req->c, sb, &srcb, err);
	if (r < 0)
		return r;
	r = cos_authorize_bucket(req, &srcb, "cloud-object-storage.object.read", err);
	if (r < 0)
		return r;

	const char *dir = cos_req_header(req, "x-amz-metadata-directive");
	bool replace = false;
	if (dir) {
		if (strcmp(dir, "REPLACE") == 0)
			replace = true;
		else if (strcmp(dir, "COPY") != 0)
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "x-amz-metadata-directive must be COPY or REPLACE");
	}
	_cleanup_(json_decrefp) json_t *meta = NULL;
	const char *ctype = NULL;
	if (replace) {
		r = cos_meta_from_headers(req, &meta, err);
		if (r < 0)
			return r;
		if (!meta && !(meta = json_object()))
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
		ctype = cos_req_header(req, "content-type");
		if (!ctype)
			ctype = "binary/octet-stream";
	}
	struct cos_object o = {0};
	struct audit_event ev;
	cos_event(req, 200, NULL, &ev);
	r = cos_object_copy(req->c, &srcb, sk, &req->bucket, req->key, ctype, meta, &ev, &o, err);
	if (r < 0)
		return r;
	struct s3_xml *w;
	if (s3_xml_new(COS_XML_MAX, &w) < 0) {
		cos_object_done(&o);
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	}
	char d[40];
	cos_iso_date(o.mtime_ms, d);
	s3_xml_open(w, "CopyObjectResult", true);
	s3_xml_elem(w, "LastModified", d);
	s3_xml_elemf(w, "ETag", "\"%s\"", o.etag);
	cos_object_done(&o);
	r = s3_xml_finish(w, &resp->body, &resp->body_len);
	s3_xml_free(w);
	if (r < 0)
		return sealvm_err_set(err, r, "InternalError", "the response could not be built");
	resp->content_type = "application/xml";
	resp->status = 200;
	if (req->bucket.sse) {
		cos_resp_header(resp, "ibm-sse-kp-enabled", "True");
		cos_resp_header(resp, "ibm-sse-kp-customer-root-key-crn", "%s",
				req->bucket.sse_key_crn);
	}
	return 0;
}

void cos_copy(struct cos_req *req, struct cos_resp *resp)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	if (copy_run(req, resp, &err) < 0)
		cos_fail_resp(req, &err, resp);
}
