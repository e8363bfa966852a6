// SPDX-License-Identifier: Apache-2.0
/*
 * cos_http.c — the S3 listener: its own libmicrohttpd daemon (limits, TLS
 * and the loopback rule as on the API listener), path-style routing from the
 * raw request target, the operation table, every non-streaming operation
 * (buckets, listings, multipart initiate/list/complete/abort, delete) and
 * every response, errors as S3 XML with x-amz-request-id.
 *
 * The request's fate is decided on libmicrohttpd's first access callback,
 * before any body byte is read: route, authenticate, resolve the bucket,
 * authorize, open the writer. A refused request with a body is answered at
 * once (libmicrohttpd then sends no "100 Continue" and closes after the
 * answer); one without a body is answered on the final callback so that the
 * connection stays open.
 *
 * This file must never log a header value, a query string (presigned URLs
 * carry signatures) or a body: the access log names the path only.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "sealvm/audit.h"
#include "sealvm/b64.h"
#include "sealvm/bound.h"
#include "sealvm/http_listen.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"
#include "sealvm/rc.h"

#include "cos_front.h"

/* Big bodies take longer between bytes than API calls: a longer idle timeout. */
#define COS_DEFAULT_TIMEOUT_S 60u
#define COS_DEFAULT_THREADS 8u
/* Body bytes a connection buffers before handing them over: large, for fewer callbacks. */
#define COS_BODY_BUFFER ((size_t)256 * 1024)

struct cos_front {
	struct cos *c;
	struct http_listener *listener;
	struct audit_unauth unauth; /* the bounded operator trail of unauthenticated failures */
};

/* ---- the operation table --------------------------------------------------------------------- */

#define ACT(x) "cloud-object-storage." x
static const struct cos_op_info op_table[COS_OP__MAX] = {
	[COS_OP_NONE] = {"Unknown", NULL, ACT("request.unknown"), COS_BODY_NONE, 0, false, false},
	[COS_OP_LIST_BUCKETS] = {"ListBuckets", ACT("bucket.list"), ACT("bucket.list"),
				 COS_BODY_NONE, 0, false, false},
	[COS_OP_BUCKET_CREATE] = {"CreateBucket", ACT("bucket.create"), ACT("bucket.create"),
				  COS_BODY_SMALL, 64 * 1024, false, false},
	[COS_OP_BUCKET_HEAD] = {"HeadBucket", ACT("bucket.head"), ACT("bucket.head"), COS_BODY_NONE,
				0, false, false},
	[COS_OP_BUCKET_DELETE] = {"DeleteBucket", ACT("bucket.delete"), ACT("bucket.delete"),
				  COS_BODY_NONE, 0, false, false},
	[COS_OP_BUCKET_LOCATION] = {"GetBucketLocation", ACT("bucket.head"), ACT("bucket.get"),
				    COS_BODY_NONE, 0, false, false},
	[COS_OP_LIST_OBJECTS] = {"ListObjects", ACT("object.list"), ACT("object.list"),
				 COS_BODY_NONE, 0, false, false},
	[COS_OP_LIST_UPLOADS] = {"ListMultipartUploads", ACT("multipart.list"),
				 ACT("multipart.list"), COS_BODY_NONE, 0, false, false},
	[COS_OP_OBJECT_PUT] = {"PutObject", ACT("object.write"), ACT("object.write"),
			       COS_BODY_STREAM, 0, true, true},
	[COS_OP_OBJECT_COPY] = {"CopyObject", ACT("object.write"), ACT("object.copy"),
				COS_BODY_NONE, 0, true, true},
	[COS_OP_OBJECT_GET] = {"GetObject", ACT("object.read"), ACT("object.read"), COS_BODY_NONE,
			       0, true, true},
	[COS_OP_OBJECT_HEAD] = {"HeadObject", ACT("object.head"), ACT("object.head"), COS_BODY_NONE,
				0, true, true},
	[COS_OP_OBJECT_DELETE] = {"DeleteObject", ACT("object.delete"), ACT("object.delete"),
				  COS_BODY_NONE, 0, true, false},
	[COS_OP_UPLOAD_CREATE] = {"CreateMultipartUpload", ACT("multipart.create"),
				  ACT("multipart.create"), COS_BODY_NONE, 0, true, false},
	[COS_OP_PART_PUT] = {"UploadPart", ACT("multipart.upload"), ACT("multipart.upload"),
			     COS_BODY_STREAM, 0, true, true},
	[COS_OP_PARTS_LIST] = {"ListParts", ACT("multipart.read"), ACT("multipart.read"),
			       COS_BODY_NONE, 0, true, false},
	[COS_OP_UPLOAD_COMPLETE] = {"CompleteMultipartUpload", ACT("multipart.complete"),
				    ACT("multipart.complete"), COS_BODY_SMALL, S3_MULTIPART_XML_MAX,
				    true, true},
	[COS_OP_UPLOAD_ABORT] = {"AbortMultipartUpload", ACT("multipart.abort"),
				 ACT("multipart.abort"), COS_BODY_NONE, 0, true, false},
	[COS_OP_DELETE_OBJECTS] = {"DeleteObjects", ACT("object.delete"), ACT("object.delete"),
				   COS_BODY_SMALL, 2u << 20, false, false},
};
#undef ACT

const struct cos_op_info *cos_op_info(enum cos_op op)
{
	return op > COS_OP_NONE && op < COS_OP__MAX ? &op_table[op] : &op_table[COS_OP_NONE];
}

/* ---- errors ---------------------------------------------------------------------------------- */

static const struct {
	const char *reason;
	int status;
} error_table[] = {
	{"AccessDenied", 403},
	{"AccountProblem", 403},
	{"AuthorizationHeaderMalformed", 400},
	{"AuthorizationQueryParametersError", 400},
	{"BadDigest", 400},
	{"BucketAlreadyExists", 409},
	{"BucketAlreadyOwnedByYou", 409},
	{"BucketNotEmpty", 409},
	{"EntityTooLarge", 400},
	{"EntityTooSmall", 400},
	{"ExpiredToken", 400},
	{"IncompleteBody", 400},
	{"InternalError", 500},
	{"InvalidAccessKeyId", 403},
	{"InvalidArgument", 400},
	{"InvalidBucketName", 400},
	{"InvalidChunkSizeError", 403},
	{"InvalidDigest", 400},
	{"InvalidLocationConstraint", 400},
	{"InvalidPart", 400},
	{"InvalidPartOrder", 400},
	{"InvalidRange", 416},
	{"InvalidRequest", 400},
	{"InvalidURI", 400},
	{"KeyTooLongError", 400},
	{"KMSAccessDenied", 403},
	{"KMSKeyDisabled", 403},
	{"KMSNotFound", 400},
	{"MalformedTrailerError", 400},
	{"MalformedXML", 400},
	{"MaxMessageLengthExceeded", 400},
	{"MetadataTooLarge", 400},
	{"MethodNotAllowed", 405},
	{"MissingContentLength", 411},
	{"MissingRequestBodyError", 400},
	{"NoSuchBucket", 404},
	{"NoSuchKey", 404},
	{"NoSuchUpload", 404},
	{"NotImplemented", 501},
	{"PreconditionFailed", 412},
	{"RequestTimeTooSkewed", 403},
	{"RequestTimeout", 400},
	{"ServiceUnavailable", 503},
	{"SignatureDoesNotMatch", 403},
	{"SlowDown", 503},
	{"XAmzContentSHA256Mismatch", 400},
	/* the platform's own reasons that may reach the front */
	{"AUDIT_UNAVAILABLE", 503},
	{"HMAC_UNAVAILABLE", 503},
	{"NO_MEMORY", 503},
	{"TOKEN_EXPIRED", 403},
	{"TOKEN_MALFORMED", 403},
	{"TOKEN_BAD_SIGNATURE", 403},
	{"TOKEN_UNKNOWN_KEY", 403},
	{"TOKEN_MISSING", 403},
	{"ACTION_NOT_ALLOWED", 403},
};

int cos_error_status(const char *reason)
{
	if (!reason)
		return 500;
	for (size_t i = 0; i < ELEMENTSOF(error_table); i++)
		if (strcmp(error_table[i].reason, reason) == 0)
			return error_table[i].status;
	return 500;
}

/*
 * The S3 code to show for a reason: ours are S3 codes already, except the
 * platform's few, which map onto the nearest S3 code (the message keeps the
 * detail).
 */
static const char *s3_code(const char *reason, int status)
{
	if (reason && reason[0] && cos_error_status(reason) != 500) {
		if (strncmp(reason, "TOKEN_", 6) == 0 || strcmp(reason, "ACTION_NOT_ALLOWED") == 0)
			return "AccessDenied";
		if (strcmp(reason, "AUDIT_UNAVAILABLE") == 0 ||
		    strcmp(reason, "HMAC_UNAVAILABLE") == 0 || strcmp(reason, "NO_MEMORY") == 0)
			return "ServiceUnavailable";
		return reason;
	}
	return status == 503 ? "ServiceUnavailable" : "InternalError";
}

/* ---- small helpers --------------------------------------------------------------------------- */

const char *cos_req_header(const struct cos_req *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

void cos_http_date(int64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

void cos_iso_date(int64_t ms, char out[40])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char b[32];
	strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, 40, "%s.%03dZ", b, (int)(ms % 1000));
}

void cos_resp_header(struct cos_resp *resp, const char *name, const char *fmt, ...)
{
	if (resp->n_headers >= ELEMENTSOF(resp->headers)) {
		log_warning("cos: response header %s dropped (too many)", name);
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	char *v = NULL;
	int n = vasprintf(&v, fmt, ap);
	va_end(ap);
	char *k = strdup(name);
	if (n < 0 || !k) {
		free(k);
		if (n >= 0)
			free(v);
		return;
	}
	resp->headers[resp->n_headers].name = k;
	resp->headers[resp->n_headers].value = v;
	resp->n_headers++;
}

void cos_resp_done(struct cos_resp *resp)
{
	free(resp->body);
	for (unsigned i = 0; i < resp->n_headers; i++) {
		free(resp->headers[i].name);
		free(resp->headers[i].value);
	}
	if (resp->mhd)
		MHD_destroy_response(resp->mhd);
	memset(resp, 0, sizeof(*resp));
}

static bool is_head(const struct cos_req *req)
{
	return strcmp(req->method, "HEAD") == 0;
}

/* The resource an error names: the raw path. */
void cos_resp_error(struct cos_req *req, const struct sealvm_err *err, struct cos_resp *resp)
{
	cos_resp_done(resp);
	const char *reason = err && err->reason[0] ? err->reason : NULL;
	int status = cos_error_status(reason);
	if (!reason && err && err->code == -ENOMEM)
		status = 503;
	const char *code = s3_code(reason, status);
	const char *msg = err && err->message[0] ? err->message : "the request failed";
	resp->status = status;
	if (is_head(req))
		return; /* HEAD errors carry no body */
	if (s3_xml_error(code, msg, req->path, req->id, &resp->body, &resp->body_len) < 0 &&
	    s3_xml_error(code, "the request failed", NULL, req->id, &resp->body, &resp->body_len) <
		    0) {
		resp->body = NULL;
		resp->body_len = 0;
	}
	resp->content_type = "application/xml";
}

static void request_id_make(char out[COS_REQUEST_ID_LEN + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	static _Atomic uint64_t counter;
	unsigned char b[COS_REQUEST_ID_LEN / 2];
	if (RAND_bytes(b, sizeof(b)) != 1) {
		uint64_t n = atomic_fetch_add(&counter, 1) ^ (uint64_t)time(NULL) << 20;
		memcpy(b, &n, sizeof(b));
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[COS_REQUEST_ID_LEN] = 0;
}

/* ---- sending --------------------------------------------------------------------------------- */

static enum MHD_Result send_resp(struct cos_req *req, struct cos_resp *resp)
{
	struct MHD_Response *r = resp->mhd;
	int status = resp->status ? resp->status : 500;
	uint64_t len = 0;

	resp->mhd = NULL;
	if (!r) {
		len = resp->body ? resp->body_len : 0;
		if (resp->body) {
			r = MHD_create_response_from_buffer(resp->body_len, resp->body,
							    MHD_RESPMEM_MUST_FREE);
			if (r)
				resp->body = NULL;
		} else {
			r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		}
		if (!r) {
			cos_resp_done(resp);
			return MHD_NO;
		}
		if (resp->body_len > 0 || resp->content_type)
			MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
						resp->content_type ? resp->content_type
								   : "application/xml");
	} else {
		len = req->bytes_out; /* set by cos_get */
	}
	MHD_add_response_header(r, "x-amz-request-id", req->id);
	MHD_add_response_header(r, "x-amz-id-2", req->id);
	for (unsigned i = 0; i < resp->n_headers; i++)
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	if (http_listener_stopping(req->front->listener))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");

	enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)status, r);
	MHD_destroy_response(r);
	if (ret == MHD_YES) {
		req->responded = true;
		req->status = status;
		req->bytes_out = is_head(req) ? 0 : len;
	}
	cos_resp_done(resp);
	return ret;
}

/*
 * Turns a failure into its answer: the failure event first (fail closed: 503
 * when it cannot be written), then the XML error.
 */
void cos_fail_resp(struct cos_req *req, const struct sealvm_err *err, struct cos_resp *resp)
{
	struct sealvm_err aerr = SEALVM_ERR_INIT;
	int status = cos_error_status(err->reason[0] ? err->reason : NULL);
	if (cos_audit_request(req, status, err, &aerr) < 0) {
		log_error("cos: request %s: the failure event could not be written: %s", req->id,
			  aerr.message);
		cos_resp_error(req, &aerr, resp);
		return;
	}
	cos_resp_error(req, err, resp);
}

/* A success that the engine did not audit (a read): the event, then the answer. */
void cos_read_ok(struct cos_req *req, struct cos_resp *resp)
{
	struct sealvm_err aerr = SEALVM_ERR_INIT;
	if (cos_audit_request(req, resp->status ? resp->status : 200, NULL, &aerr) < 0) {
		log_error("cos: request %s: the read event could not be written: %s", req->id,
			  aerr.message);
		cos_resp_error(req, &aerr, resp);
	}
}

/* ---- XML answers ----------------------------------------------------------------------------- */

static int xml_done(struct s3_xml *w, struct cos_resp *resp, struct sealvm_err *err)
{
	int r = s3_xml_finish(w, &resp->body, &resp->body_len);
	s3_xml_free(w);
	if (r < 0)
		return sealvm_err_set(err, r, "InternalError",
				      "the response could not be built (%s)",
				      r == -E2BIG ? "too large" : "bad text");
	resp->content_type = "application/xml";
	if (!resp->status)
		resp->status = 200;
	return 0;
}

static int xml_new(struct s3_xml **w, struct sealvm_err *err)
{
	if (s3_xml_new(COS_XML_MAX, w) < 0)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	return 0;
}

/* Percent-encodes @s as S3 does for encoding-type=url (unreserved and '/' kept). */
static char *url_encode(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc(3 * n + 1);
	if (!o)
		return NULL;
	char *p = o;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		    (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.' || *c == '~' ||
		    *c == '/')
			*p++ = (char)*c;
		else
			p += sprintf(p, "%%%02X", *c);
	}
	*p = 0;
	return o;
}

/* <name>text</name>, url-encoded when @enc. */
static void elem_key(struct s3_xml *w, const char *name, const char *text, bool enc)
{
	if (!enc) {
		s3_xml_elem(w, name, text);
		return;
	}
	_cleanup_free_ char *e = url_encode(text);
	s3_xml_elem(w, name, e ? e : "");
}

static const char *q_get(const struct cos_req *req, const char *name)
{
	const char *v = NULL;
	if (s3_query_get(&req->q, name, &v, NULL) < 0)
		return NULL;
	return v;
}

/* A decimal 0..@max parameter; -EINVAL InvalidArgument. */
static int q_uint(const struct cos_req *req, const char *name, unsigned dflt, unsigned max,
		  unsigned *ret, struct sealvm_err *err)
{
	const char *v = q_get(req, name);
	*ret = dflt;
	if (!v)
		return 0;
	char *end = NULL;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (!*v || *end || errno || v[0] == '-' || v[0] == '+' || v[0] == ' ')
		return sealvm_err_set(err, -EINVAL, "InvalidArgument", "%s must be a whole number",
				      name);
	*ret = (unsigned)MIN(n, (unsigned long)max);
	return 0;
}

/* ---- buckets --------------------------------------------------------------------------------- */

static int op_list_buckets(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	struct cos_bucket *bs = NULL;
	size_t n = 0;
	int r = cos_bucket_list(req->c, req->instance_guid, &bs, &n, err);
	if (r < 0)
		return r;
	struct s3_xml *w;
	r = xml_new(&w, err);
	if (r < 0) {
		free(bs);
		return r;
	}
	s3_xml_open(w, "ListAllMyBucketsResult", true);
	s3_xml_open(w, "Owner", false);
	s3_xml_elem(w, "ID", req->principal.iam_id);
	s3_xml_elem(w, "DisplayName", req->principal.iam_id);
	s3_xml_close(w);
	s3_xml_open(w, "Buckets", false);
	for (size_t i = 0; i < n; i++) {
		char d[40];
		cos_iso_date(bs[i].created_ms, d);
		s3_xml_open(w, "Bucket", false);
		s3_xml_elem(w, "Name", bs[i].name);
		s3_xml_elem(w, "CreationDate", d);
		s3_xml_close(w);
	}
	s3_xml_close(w);
	free(bs);
	r = xml_done(w, resp, err);
	return r < 0 ? r : 1;
}

/* A small body, or "" when none came (parsers get a pointer, never NULL). */
static const unsigned char *small_body(const struct cos_req *req)
{
	return req->small ? req->small : (const unsigned char *)"";
}

static int op_bucket_create(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	struct cos_bucket b = {0};
	char loc[sizeof(b.location)];
	int r = cos_parse_location(small_body(req), req->small_len, loc, sizeof(loc), err);
	if (r < 0)
		return r;
	if (!loc[0])
		snprintf(loc, sizeof(loc), "%s-standard", req->c->deps.region);
	r = cos_location_check(req->c, loc, err);
	if (r < 0)
		return r;
	snprintf(b.name, sizeof(b.name), "%s", req->bucket_name);
	snprintf(b.account_id, sizeof(b.account_id), "%s", req->principal.account_id);
	snprintf(b.instance_guid, sizeof(b.instance_guid), "%s", req->instance_guid);
	snprintf(b.location, sizeof(b.location), "%s", loc);

	struct rc_instance inst;
	r = rc_instance_get(req->c->deps.rc, req->principal.account_id, req->instance_guid, &inst,
			    NULL);
	if (r < 0)
		return sealvm_err_set(err, -EACCES, "AccessDenied",
				      "the object storage instance %s is not one of your account's",
				      req->instance_guid);
	snprintf(b.instance_crn, sizeof(b.instance_crn), "%s", inst.crn);

	const char *alg = cos_req_header(req, "ibm-sse-kp-encryption-algorithm");
	const char *crk = cos_req_header(req, "ibm-sse-kp-customer-root-key-crn");
	if (alg || crk) {
		if (!alg || !crk)
			return sealvm_err_set(
				err, -EINVAL, "InvalidArgument",
				"SSE-KP needs both ibm-sse-kp-encryption-algorithm: AES256 and "
				"ibm-sse-kp-customer-root-key-crn");
		if (strcmp(alg, "AES256") != 0)
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "ibm-sse-kp-encryption-algorithm must be AES256");
		if (strlen(crk) >= sizeof(b.sse_key_crn))
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "ibm-sse-kp-customer-root-key-crn is too long");
		b.sse = true;
		snprintf(b.sse_key_crn, sizeof(b.sse_key_crn), "%s", crk);
	}
	struct audit_event ev;
	cos_event(req, 200, NULL, &ev);
	r = cos_bucket_create(req->c, &req->principal, &b, &ev, err);
	if (r < 0)
		return r;
	resp->status = 200;
	cos_resp_header(resp, "Location", "/%s", b.name);
	return 0;
}

static int op_bucket_head(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	resp->status = 200;
	cos_resp_header(resp, "x-amz-bucket-region", "%s", req->c->deps.region);
	if (req->bucket.sse) {
		cos_resp_header(resp, "ibm-sse-kp-enabled", "True");
		cos_resp_header(resp, "ibm-sse-kp-crk-id", "%s", req->bucket.sse_key_crn);
	}
	return 1;
}

static int op_bucket_location(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	char *body = NULL;
	int n = asprintf(&body,
			 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint "
			 "xmlns=\"" S3_XML_NS "\">%s</LocationConstraint>",
			 req->bucket.location);
	if (n < 0)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	resp->body = body;
	resp->body_len = (size_t)n;
	resp->content_type = "application/xml";
	resp->status = 200;
	return 1;
}

static int op_bucket_delete(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	struct audit_event ev;
	cos_event(req, 204, NULL, &ev);
	int r = cos_bucket_delete(req->c, req->bucket.name, &ev, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

/* ---- listing --------------------------------------------------------------------------------- */

static int op_list_objects(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	const char *lt = q_get(req, "list-type");
	bool v2 = lt && strcmp(lt, "2") == 0;
	if (lt && !v2)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument", "list-type must be 2");
	const char *enc = q_get(req, "encoding-type");
	if (enc && strcmp(enc, "url") != 0)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument", "encoding-type must be url");
	bool url = enc != NULL;
	unsigned max;
	int r = q_uint(req, "max-keys", COS_LIST_MAX, COS_LIST_MAX, &max, err);
	if (r < 0)
		return r;
	const char *prefix = q_get(req, "prefix");
	const char *delim = q_get(req, "delimiter");
	if (delim && !*delim)
		delim = NULL;
	const char *token = v2 ? q_get(req, "continuation-token") : NULL;
	const char *start_after = v2 ? q_get(req, "start-after") : q_get(req, "marker");
	_cleanup_free_ char *tok_key = NULL;
	if (token) {
		size_t tl = strlen(token);
		tok_key = malloc(sealvm_b64_decoded_max(tl) + 1);
		if (!tok_key)
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
		long n = tl ? sealvm_b64_decode(token, tl, tok_key, false) : -EINVAL;
		if (n <= 0 || (size_t)n > COS_KEY_MAX || memchr(tok_key, 0, (size_t)n))
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "the continuation token is not one this server gave");
		tok_key[n] = 0;
	}
	struct cos_list_query lq = {
		.prefix = prefix,
		.delimiter = delim,
		.start_after = tok_key ? tok_key : start_after,
		.max_keys = max,
	};
	struct cos_list_result lr = {0};
	r = cos_object_list(req->c, &req->bucket, &lq, &lr, err);
	if (r < 0)
		return r;
	struct s3_xml *w;
	r = xml_new(&w, err);
	if (r < 0) {
		cos_list_result_done(&lr);
		return r;
	}
	s3_xml_open(w, "ListBucketResult", true);
	s3_xml_elem(w, "Name", req->bucket.name);
	elem_key(w, "Prefix", prefix ? prefix : "", url);
	if (v2) {
		if (token)
			s3_xml_elem(w, "ContinuationToken", token);
		if (start_after)
			elem_key(w, "StartAfter", start_after, url);
		s3_xml_elemf(w, "KeyCount", "%zu", lr.n_objects + lr.n_prefixes);
	} else {
		elem_key(w, "Marker", start_after ? start_after : "", url);
	}
	s3_xml_elemf(w, "MaxKeys", "%u", max);
	if (delim)
		elem_key(w, "Delimiter", delim, url);
	if (url)
		s3_xml_elem(w, "EncodingType", "url");
	s3_xml_elem(w, "IsTruncated", lr.truncated ? "true" : "false");
	if (lr.truncated && lr.next) {
		if (v2) {
			size_t kl = strlen(lr.next);
			_cleanup_free_ char *t = malloc(sealvm_b64_encoded_len(kl, false) + 1);
			if (t) {
				sealvm_b64_encode(lr.next, kl, t, false);
				s3_xml_elem(w, "NextContinuationToken", t);
			}
		} else if (delim) {
			elem_key(w, "NextMarker", lr.next, url);
		}
	}
	for (size_t i = 0; i < lr.n_objects; i++) {
		const struct cos_object *o = &lr.objects[i];
		char d[40];
		cos_iso_date(o->mtime_ms, d);
		s3_xml_open(w, "Contents", false);
		elem_key(w, "Key", o->key, url);
		s3_xml_elem(w, "LastModified", d);
		s3_xml_elemf(w, "ETag", "\"%s\"", o->etag);
		s3_xml_elemf(w, "Size", "%llu", (unsigned long long)o->size);
		s3_xml_elem(w, "StorageClass", "STANDARD");
		s3_xml_close(w);
	}
	for (size_t i = 0; i < lr.n_prefixes; i++) {
		s3_xml_open(w, "CommonPrefixes", false);
		elem_key(w, "Prefix", lr.prefixes[i], url);
		s3_xml_close(w);
	}
	cos_list_result_done(&lr);
	r = xml_done(w, resp, err);
	return r < 0 ? r : 1;
}

static int op_list_uploads(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	unsigned max;
	int r = q_uint(req, "max-uploads", COS_LIST_MAX, COS_LIST_MAX, &max, err);
	if (r < 0)
		return r;
	const char *prefix = q_get(req, "prefix");
	struct cos_upload *u = NULL;
	size_t n = 0;
	bool trunc = false;
	r = cos_upload_list(req->c, &req->bucket, prefix, max ? max : 1, &u, &n, &trunc, err);
	if (r < 0)
		return r;
	struct s3_xml *w;
	r = xml_new(&w, err);
	if (r < 0) {
		free(u);
		return r;
	}
	s3_xml_open(w, "ListMultipartUploadsResult", true);
	s3_xml_elem(w, "Bucket", req->bucket.name);
	s3_xml_elem(w, "KeyMarker", "");
	s3_xml_elem(w, "UploadIdMarker", "");
	if (trunc && n > 0) {
		s3_xml_elem(w, "NextKeyMarker", u[n - 1].key);
		s3_xml_elem(w, "NextUploadIdMarker", u[n - 1].upload_id);
	}
	if (prefix)
		s3_xml_elem(w, "Prefix", prefix);
	s3_xml_elemf(w, "MaxUploads", "%u", max);
	s3_xml_elem(w, "IsTruncated", trunc ? "true" : "false");
	for (size_t i = 0; i < n; i++) {
		char d[40];
		cos_iso_date(u[i].initiated_ms, d);
		s3_xml_open(w, "Upload", false);
		s3_xml_elem(w, "Key", u[i].key);
		s3_xml_elem(w, "UploadId", u[i].upload_id);
		s3_xml_open(w, "Initiator", false);
		s3_xml_elem(w, "ID", u[i].initiator_id);
		s3_xml_elem(w, "DisplayName", u[i].initiator_id);
		s3_xml_close(w);
		s3_xml_elem(w, "StorageClass", "STANDARD");
		s3_xml_elem(w, "Initiated", d);
		s3_xml_close(w);
	}
	free(u);
	r = xml_done(w, resp, err);
	return r < 0 ? r : 1;
}

/* ---- objects and multipart ------------------------------------------------------------------- */

static int op_object_delete(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	struct audit_event ev;
	cos_event(req, 204, NULL, &ev);
	int r = cos_object_delete(req->c, &req->bucket, req->key, &ev, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

static int op_upload_create(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	_cleanup_(json_decrefp) json_t *meta = NULL;
	int r = cos_meta_from_headers(req, &meta, err);
	if (r < 0)
		return r;
	enum s3_checksum_alg alg = S3_CHECKSUM_NONE;
	const char *a = cos_req_header(req, "x-amz-checksum-algorithm");
	if (a) {
		alg = s3_checksum_from_algorithm(a);
		if (alg == S3_CHECKSUM_NONE || alg == S3_CHECKSUM_MD5)
			return sealvm_err_set(err, -EINVAL, "InvalidRequest",
					      "x-amz-checksum-algorithm must be CRC32, CRC32C, "
					      "SHA1 or SHA256");
	}
	struct cos_upload u;
	struct audit_event ev;
	cos_event(req, 200, NULL, &ev);
	r = cos_upload_create(req->c, &req->principal, &req->bucket, req->key,
			      cos_req_header(req, "content-type"), meta, alg, &ev, &u, err);
	if (r < 0)
		return r;
	struct s3_xml *w;
	r = xml_new(&w, err);
	if (r < 0)
		return r;
	s3_xml_open(w, "InitiateMultipartUploadResult", true);
	s3_xml_elem(w, "Bucket", req->bucket.name);
	s3_xml_elem(w, "Key", req->key);
	s3_xml_elem(w, "UploadId", u.upload_id);
	if (alg != S3_CHECKSUM_NONE)
		cos_resp_header(resp, "x-amz-checksum-algorithm", "%s", a);
	if (req->bucket.sse) {
		cos_resp_header(resp, "ibm-sse-kp-enabled", "True");
		cos_resp_header(resp, "ibm-sse-kp-customer-root-key-crn", "%s",
				req->bucket.sse_key_crn);
	}
	return xml_done(w, resp, err);
}

static int upload_id_arg(struct cos_req *req, const char **ret, struct sealvm_err *err)
{
	int r = s3_query_get(&req->q, "uploadId", ret, err);
	if (r == -ENOENT || (r == 0 && !**ret))
		return sealvm_err_set(err, -ENOENT, "NoSuchUpload",
				      "the upload id is empty; it does not name an upload");
	return r;
}

static int op_parts_list(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	const char *uid;
	int r = upload_id_arg(req, &uid, err);
	if (r < 0)
		return r;
	unsigned max, marker;
	r = q_uint(req, "max-parts", COS_LIST_MAX, COS_LIST_MAX, &max, err);
	if (r < 0)
		return r;
	r = q_uint(req, "part-number-marker", 0, COS_PARTS_MAX, &marker, err);
	if (r < 0)
		return r;
	struct cos_upload u;
	r = cos_upload_get(req->c, &req->bucket, req->key, uid, &u, err);
	if (r < 0)
		return r;
	struct cos_part *parts = NULL;
	size_t n = 0;
	bool trunc = false;
	r = cos_upload_parts(req->c, uid, marker, max ? max : 1, &parts, &n, &trunc, err);
	if (r < 0)
		return r;
	struct s3_xml *w;
	r = xml_new(&w, err);
	if (r < 0) {
		free(parts);
		return r;
	}
	s3_xml_open(w, "ListPartsResult", true);
	s3_xml_elem(w, "Bucket", req->bucket.name);
	s3_xml_elem(w, "Key", req->key);
	s3_xml_elem(w, "UploadId", uid);
	s3_xml_open(w, "Initiator", false);
	s3_xml_elem(w, "ID", u.initiator_id);
	s3_xml_elem(w, "DisplayName", u.initiator_id);
	s3_xml_close(w);
	s3_xml_open(w, "Owner", false);
	s3_xml_elem(w, "ID", u.initiator_id);
	s3_xml_elem(w, "DisplayName", u.initiator_id);
	s3_xml_close(w);
	s3_xml_elem(w, "StorageClass", "STANDARD");
	s3_xml_elemf(w, "PartNumberMarker", "%u", marker);
	if (n > 0)
		s3_xml_elemf(w, "NextPartNumberMarker", "%u", parts[n - 1].number);
	s3_xml_elemf(w, "MaxParts", "%u", max);
	s3_xml_elem(w, "IsTruncated", trunc ? "true" : "false");
	if (u.checksum_algo != S3_CHECKSUM_NONE) {
		static const char *const names[] = {[S3_CHECKSUM_CRC32] = "CRC32",
						    [S3_CHECKSUM_CRC32C] = "CRC32C",
						    [S3_CHECKSUM_SHA1] = "SHA1",
						    [S3_CHECKSUM_SHA256] = "SHA256"};
		if ((size_t)u.checksum_algo < ELEMENTSOF(names) && names[u.checksum_algo])
			s3_xml_elem(w, "ChecksumAlgorithm", names[u.checksum_algo]);
	}
	for (size_t i = 0; i < n; i++) {
		char d[40];
		cos_iso_date(parts[i].mtime_ms, d);
		s3_xml_open(w, "Part", false);
		s3_xml_elemf(w, "PartNumber", "%u", parts[i].number);
		s3_xml_elem(w, "LastModified", d);
		s3_xml_elemf(w, "ETag", "\"%s\"", parts[i].etag);
		s3_xml_elemf(w, "Size", "%llu", (unsigned long long)parts[i].size);
		static const char *const cnames[] = {[S3_CHECKSUM_CRC32] = "ChecksumCRC32",
						     [S3_CHECKSUM_CRC32C] = "ChecksumCRC32C",
						     [S3_CHECKSUM_SHA1] = "ChecksumSHA1",
						     [S3_CHECKSUM_SHA256] = "ChecksumSHA256"};
		enum s3_checksum_alg ca = parts[i].checksum.algo;
		if ((size_t)ca < ELEMENTSOF(cnames) && cnames[ca] && parts[i].checksum.value[0])
			s3_xml_elem(w, cnames[ca], parts[i].checksum.value);
		s3_xml_close(w);
	}
	free(parts);
	r = xml_done(w, resp, err);
	return r < 0 ? r : 1;
}

static int op_upload_complete(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	const char *uid;
	int r = upload_id_arg(req, &uid, err);
	if (r < 0)
		return r;
	if (!req->small_len)
		return sealvm_err_set(err, -EINVAL, "MalformedXML",
				      "CompleteMultipartUpload needs the part list in its body");
	struct s3_part_list pl = {0};
	r = s3_multipart_parse(small_body(req), req->small_len, &pl, err);
	if (r < 0)
		return r;
	struct cos_object o = {0};
	struct audit_event ev;
	cos_event(req, 200, NULL, &ev);
	r = cos_upload_complete(req->c, &req->bucket, req->key, uid, pl.parts, pl.n, &ev, &o, err);
	s3_part_list_done(&pl);
	if (r < 0)
		return r;
	struct s3_xml *w;
	r = xml_new(&w, err);
	if (r < 0) {
		cos_object_done(&o);
		return r;
	}
	const char *host = cos_req_header(req, "host");
	s3_xml_open(w, "CompleteMultipartUploadResult", true);
	s3_xml_elemf(w, "Location", "http://%s%s", host ? host : "localhost", req->path);
	s3_xml_elem(w, "Bucket", req->bucket.name);
	s3_xml_elem(w, "Key", req->key);
	s3_xml_elemf(w, "ETag", "\"%s\"", o.etag);
	if (req->bucket.sse) {
		cos_resp_header(resp, "ibm-sse-kp-enabled", "True");
		cos_resp_header(resp, "ibm-sse-kp-customer-root-key-crn", "%s",
				req->bucket.sse_key_crn);
	}
	cos_object_done(&o);
	return xml_done(w, resp, err);
}

static int op_upload_abort(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	const char *uid;
	int r = upload_id_arg(req, &uid, err);
	if (r < 0)
		return r;
	struct audit_event ev;
	cos_event(req, 204, NULL, &ev);
	r = cos_upload_abort(req->c, &req->bucket, req->key, uid, &ev, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

/*
 * DeleteObjects: the body's integrity (Content-MD5 or an x-amz-checksum-*
 * header, one of them required, as S3), then each key deleted with its own
 * event (object.delete naming the key, the request id as correlation id).
 */
static int body_integrity(struct cos_req *req, struct sealvm_err *err)
{
	const char *md5 = cos_req_header(req, "content-md5");
	enum s3_checksum_alg alg = S3_CHECKSUM_NONE;
	const char *val = NULL;
	if (md5) {
		alg = S3_CHECKSUM_MD5;
		val = md5;
	} else {
		for (size_t i = 0; i < req->n_headers && !val; i++) {
			enum s3_checksum_alg a = s3_checksum_from_header(req->headers[i].name);
			if (a != S3_CHECKSUM_NONE) {
				alg = a;
				val = req->headers[i].value;
			}
		}
	}
	if (!val)
		return sealvm_err_set(
			err, -EINVAL, "InvalidRequest",
			"DeleteObjects needs Content-MD5 or an x-amz-checksum-* header");
	struct s3_checksum ck = {0};
	if (s3_checksum_init(&ck, alg) < 0)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	s3_checksum_update(&ck, req->small ? req->small : (const unsigned char *)"",
			   req->small_len);
	int r = s3_checksum_verify_b64(&ck, val, err);
	s3_checksum_done(&ck);
	return r;
}

static int op_delete_objects(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	int r = body_integrity(req, err);
	if (r < 0)
		return r;
	struct cos_delete_list l = {0};
	r = cos_parse_delete(small_body(req), req->small_len, &l, err);
	if (r < 0)
		return r;
	struct s3_xml *w;
	r = xml_new(&w, err);
	if (r < 0) {
		cos_delete_list_done(&l);
		return r;
	}
	s3_xml_open(w, "DeleteResult", true);
	for (size_t i = 0; i < l.n; i++) {
		const char *key = l.objects[i].key;
		struct sealvm_err kerr = SEALVM_ERR_INIT;
		struct audit_event ev;
		cos_event(req, 204, NULL, &ev);
		ev.target_name = key;
		ev.target_type = "cloud-object-storage/object";
		ev.data_event = false;
		if (l.objects[i].version)
			r = sealvm_err_set(&kerr, -ENOTSUP, "NotImplemented",
					   "this store keeps no versions: name the key only");
		else
			r = cos_object_delete(req->c, &req->bucket, key, &ev, &kerr);
		if (r < 0) {
			struct sealvm_err aerr = SEALVM_ERR_INIT;
			cos_event(req, cos_error_status(kerr.reason), &kerr, &ev);
			ev.target_name = key;
			ev.target_type = "cloud-object-storage/object";
			if (cos_audit(req->c, &ev, &aerr) < 0)
				log_error(
					"s3: request %s: a failure event could not be written: %s",
					req->id, aerr.message);
			s3_xml_open(w, "Error", false);
			s3_xml_elem(w, "Key", key);
			s3_xml_elem(w, "Code", s3_code(kerr.reason, cos_error_status(kerr.reason)));
			s3_xml_elem(w, "Message", kerr.message);
			s3_xml_close(w);
		} else if (!l.quiet) {
			s3_xml_open(w, "Deleted", false);
			s3_xml_elem(w, "Key", key);
			s3_xml_close(w);
		}
	}
	cos_delete_list_done(&l);
	return xml_done(w, resp, err);
}

/* Runs a non-streaming operation: 0 done and audited by the engine, 1 a read to audit. */
static int dispatch(struct cos_req *req, struct cos_resp *resp, struct sealvm_err *err)
{
	switch (req->op) {
	case COS_OP_LIST_BUCKETS:
		return op_list_buckets(req, resp, err);
	case COS_OP_BUCKET_CREATE:
		return op_bucket_create(req, resp, err);
	case COS_OP_BUCKET_HEAD:
		return op_bucket_head(req, resp, err);
	case COS_OP_BUCKET_DELETE:
		return op_bucket_delete(req, resp, err);
	case COS_OP_BUCKET_LOCATION:
		return op_bucket_location(req, resp, err);
	case COS_OP_LIST_OBJECTS:
		return op_list_objects(req, resp, err);
	case COS_OP_LIST_UPLOADS:
		return op_list_uploads(req, resp, err);
	case COS_OP_OBJECT_DELETE:
		return op_object_delete(req, resp, err);
	case COS_OP_UPLOAD_CREATE:
		return op_upload_create(req, resp, err);
	case COS_OP_PARTS_LIST:
		return op_parts_list(req, resp, err);
	case COS_OP_UPLOAD_COMPLETE:
		return op_upload_complete(req, resp, err);
	case COS_OP_UPLOAD_ABORT:
		return op_upload_abort(req, resp, err);
	case COS_OP_DELETE_OBJECTS:
		return op_delete_objects(req, resp, err);
	default:
		return sealvm_err_set(err, -ENOTSUP, "NotImplemented",
				      "this operation is not implemented");
	}
}

/* ---- routing --------------------------------------------------------------------------------- */

/* Subresources we do not implement: a clear 501 instead of a wrong answer. */
static bool unsupported_subresource(const struct cos_req *req)
{
	static const char *const names[] = {
		"acl",
		"cors",
		"lifecycle",
		"versioning",
		"tagging",
		"policy",
		"website",
		"logging",
		"replication",
		"encryption",
		"object-lock",
		"versions",
		"retention",
		"legal-hold",
		"restore",
		"select",
		"torrent",
		"notification",
		"accelerate",
		"analytics",
		"inventory",
		"metrics",
		"ownershipControls",
		"publicAccessBlock",
		"intelligent-tiering",
		"requestPayment",
		"attributes",
		"protection",
	};
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (s3_query_has(&req->q, names[i]))
			return true;
	return false;
}

static int route(struct cos_req *req, struct sealvm_err *err)
{
	const char *m = req->method;
	const char *p = req->path;
	if (p[0] != '/')
		return sealvm_err_set(err, -EINVAL, "InvalidURI",
				      "the request target must be a path starting with '/'");
	int r = s3_query_parse(req->query, &req->q, err);
	if (r < 0)
		return r;
	p++;
	const char *slash = strchr(p, '/');
	size_t blen = slash ? (size_t)(slash - p) : strlen(p);
	const char *rawkey = slash ? slash + 1 : "";

	if (blen == 0) {
		if (*rawkey)
			return sealvm_err_set(err, -EINVAL, "InvalidURI",
					      "the path names an object without a bucket");
		if (strcmp(m, "GET") != 0)
			return sealvm_err_set(err, -EINVAL, "MethodNotAllowed",
					      "%s is not allowed on /: only GET (list buckets)", m);
		req->op = COS_OP_LIST_BUCKETS;
		return 0;
	}
	_cleanup_free_ char *bname = NULL;
	r = cos_path_decode(p, blen, &bname, err);
	if (r < 0)
		return r;
	if (strlen(bname) > COS_BUCKET_NAME_MAX || strlen(bname) < 1)
		return sealvm_err_set(err, -EINVAL, "InvalidBucketName",
				      "a bucket name has 3 to 63 characters");
	snprintf(req->bucket_name, sizeof(req->bucket_name), "%s", bname);

	bool uploads = s3_query_has(&req->q, "uploads");
	bool upload_id = s3_query_has(&req->q, "uploadId");
	if (!*rawkey) {
		if (unsupported_subresource(req))
			return sealvm_err_set(err, -ENOTSUP, "NotImplemented",
					      "this bucket subresource is not implemented");
		if (strcmp(m, "PUT") == 0)
			req->op = COS_OP_BUCKET_CREATE;
		else if (strcmp(m, "HEAD") == 0)
			req->op = COS_OP_BUCKET_HEAD;
		else if (strcmp(m, "DELETE") == 0)
			req->op = COS_OP_BUCKET_DELETE;
		else if (strcmp(m, "POST") == 0 && s3_query_has(&req->q, "delete"))
			req->op = COS_OP_DELETE_OBJECTS;
		else if (strcmp(m, "GET") == 0)
			req->op = s3_query_has(&req->q, "location") ? COS_OP_BUCKET_LOCATION
				  : uploads			    ? COS_OP_LIST_UPLOADS
								    : COS_OP_LIST_OBJECTS;
		else
			return sealvm_err_set(err, -EINVAL, "MethodNotAllowed",
					      "%s is not allowed on a bucket", m);
		return 0;
	}

	size_t klen = strlen(rawkey);
	r = cos_path_decode(rawkey, klen, &req->key, err);
	if (r < 0)
		return r;
	if (strlen(req->key) > COS_KEY_MAX)
		return sealvm_err_set(err, -EINVAL, "KeyTooLongError",
				      "an object key has at most %d bytes", COS_KEY_MAX);
	if (!cos_utf8_valid(req->key))
		return sealvm_err_set(err, -EINVAL, "InvalidURI", "an object key must be UTF-8");
	if (unsupported_subresource(req))
		return sealvm_err_set(err, -ENOTSUP, "NotImplemented",
				      "this object subresource is not implemented");
	if (strcmp(m, "PUT") == 0) {
		bool copy = cos_req_header(req, "x-amz-copy-source") != NULL;
		if (upload_id || s3_query_has(&req->q, "partNumber")) {
			if (copy)
				return sealvm_err_set(err, -ENOTSUP, "NotImplemented",
						      "UploadPartCopy is not implemented");
			req->op = COS_OP_PART_PUT;
		} else {
			req->op = copy ? COS_OP_OBJECT_COPY : COS_OP_OBJECT_PUT;
		}
	} else if (strcmp(m, "GET") == 0) {
		req->op = upload_id ? COS_OP_PARTS_LIST : COS_OP_OBJECT_GET;
	} else if (strcmp(m, "HEAD") == 0) {
		req->op = COS_OP_OBJECT_HEAD;
	} else if (strcmp(m, "DELETE") == 0) {
		req->op = upload_id ? COS_OP_UPLOAD_ABORT : COS_OP_OBJECT_DELETE;
	} else if (strcmp(m, "POST") == 0) {
		if (uploads)
			req->op = COS_OP_UPLOAD_CREATE;
		else if (upload_id)
			req->op = COS_OP_UPLOAD_COMPLETE;
		else
			return sealvm_err_set(err, -EINVAL, "MethodNotAllowed",
					      "POST on an object needs ?uploads or ?uploadId");
	} else {
		return sealvm_err_set(err, -EINVAL, "MethodNotAllowed",
				      "%s is not allowed on an object", m);
	}
	return 0;
}

/* ---- the request's first callback ------------------------------------------------------------ */

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
				      const char *value)
{
	struct cos_req *req = cls;
	if (req->n_headers >= COS_MAX_HEADERS) {
		req->too_many_headers = true;
		return MHD_NO;
	}
	req->headers[req->n_headers].name = key;
	req->headers[req->n_headers].value = value ? value : "";
	req->n_headers++;
	return MHD_YES;
}

static bool request_has_body(const struct cos_req *req)
{
	const char *cl = cos_req_header(req, "content-length");
	if (cl && strcmp(cl, "0") != 0)
		return true;
	return cos_req_header(req, "transfer-encoding") != NULL;
}

/* Declared Content-Length of a small body: -E2BIG over the op's limit. */
static int small_body_check(struct cos_req *req, struct sealvm_err *err)
{
	const struct cos_op_info *oi = cos_op_info(req->op);
	const char *cl = cos_req_header(req, "content-length");
	if (oi->body == COS_BODY_NONE) {
		if (req->op == COS_OP_OBJECT_COPY && request_has_body(req))
			return sealvm_err_set(err, -EINVAL, "InvalidRequest",
					      "a copy request must not carry a body");
		if (request_has_body(req))
			return sealvm_err_set(err, -EINVAL, "InvalidRequest",
					      "%s takes no request body", oi->name);
		return 0;
	}
	if (oi->body == COS_BODY_SMALL && cl) {
		char *end = NULL;
		unsigned long long n = strtoull(cl, &end, 10);
		if (*end || n > oi->max_body)
			return sealvm_err_set(err, -E2BIG, "MaxMessageLengthExceeded",
					      "the %s body may have at most %zu bytes", oi->name,
					      oi->max_body);
	}
	return 0;
}

static int begin(struct cos_req *req, struct sealvm_err *err)
{
	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_header, req);
	if (req->too_many_headers)
		return sealvm_err_set(err, -E2BIG, "InvalidArgument",
				      "the request has more than %d headers", COS_MAX_HEADERS);
	int r = route(req, err);
	if (r < 0)
		return r;
	const struct cos_op_info *oi = cos_op_info(req->op);
	r = cos_authenticate(req, err);
	if (r < 0)
		return r;
	r = small_body_check(req, err);
	if (r < 0)
		return r;
	if (req->op == COS_OP_LIST_BUCKETS || req->op == COS_OP_BUCKET_CREATE) {
		if (req->op == COS_OP_BUCKET_CREATE) {
			r = cos_bucket_name_check(req->bucket_name, err);
			if (r < 0)
				return r;
		}
		r = cos_authorize_instance(req, oi->iam_action, err);
	} else {
		r = cos_resolve_authorize(req, oi->iam_action, err);
	}
	if (r < 0)
		return r;
	if (oi->body == COS_BODY_STREAM)
		return cos_put_begin(req, err);
	return 0;
}

/* ---- libmicrohttpd callbacks ----------------------------------------------------------------- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct cos_front *f = cls;
	size_t n = strlen(uri);
	struct cos_req *req = calloc(1, sizeof(*req) + n + 1);
	if (!req)
		return NULL;
	req->front = f;
	req->c = f->c;
	req->conn = conn;
	memcpy(req->uri, uri, n + 1);
	req->path = req->uri;
	char *q = memchr(req->uri, '?', n);
	if (q) {
		*q = 0;
		req->query = q + 1;
	} else {
		req->query = req->uri + n;
	}
	request_id_make(req->id);
	clock_gettime(CLOCK_MONOTONIC, &req->t0);
	return req;
}

static void remote_init(struct cos_req *req)
{
	http_remote_address(req->conn, req->remote, sizeof(req->remote));
}

static void req_free(struct cos_req *req)
{
	cos_put_free(req);
	s3_query_done(&req->q);
	sigv4_auth_done(&req->auth);
	free(req->small);
	free(req->key);
	free(req->audit_name);
	free(req);
}

/* The final callback of a request that passed the first one: run it and answer. */
static enum MHD_Result finish(struct cos_req *req)
{
	struct cos_resp resp = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;

	if (req->op == COS_OP_OBJECT_PUT || req->op == COS_OP_PART_PUT) {
		cos_put_finish(req, &resp);
		return send_resp(req, &resp);
	}
	if (req->op == COS_OP_OBJECT_GET || req->op == COS_OP_OBJECT_HEAD) {
		cos_get(req, &resp);
		return send_resp(req, &resp);
	}
	if (req->op == COS_OP_OBJECT_COPY) {
		cos_copy(req, &resp);
		return send_resp(req, &resp);
	}
	int r = dispatch(req, &resp, &err);
	if (r < 0)
		cos_fail_resp(req, &err, &resp);
	else if (r == 1)
		cos_read_ok(req, &resp);
	return send_resp(req, &resp);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct cos_req *req = *con_cls;
	struct cos_resp resp = {0};

	if (!req)
		return MHD_NO;

	if (!req->started) {
		req->started = true;
		req->method = method;
		remote_init(req);
		if (begin(req, &req->early_err) < 0) {
			if (request_has_body(req)) {
				/* answered before any body byte: no 100 Continue, no upload */
				cos_fail_resp(req, &req->early_err, &resp);
				return send_resp(req, &resp);
			}
			req->has_early = true;
		}
		return MHD_YES;
	}

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->responded || req->has_early)
			return MHD_YES;
		if (req->body_failed) {
			req->discarded += n;
			return req->discarded > COS_DISCARD_MAX ? MHD_NO : MHD_YES;
		}
		const struct cos_op_info *oi = cos_op_info(req->op);
		if (oi->body == COS_BODY_STREAM) {
			if (cos_put_feed(req, upload_data, n, &req->early_err) < 0) {
				/* answered at the body's end (libmicrohttpd cannot earlier) */
				req->body_failed = true;
				cos_put_free(req);
			}
			return MHD_YES;
		}
		if (req->small_len + n > oi->max_body) {
			sealvm_err_set(&req->early_err, -E2BIG, "MaxMessageLengthExceeded",
				       "the %s body may have at most %zu bytes", oi->name,
				       oi->max_body);
			req->body_failed = true;
			return MHD_YES;
		}
		unsigned char *b = realloc(req->small, req->small_len + n + 1);
		if (!b) {
			sealvm_err_set(&req->early_err, -ENOMEM, "NO_MEMORY", "out of memory");
			req->body_failed = true;
			return MHD_YES;
		}
		req->small = b;
		memcpy(b + req->small_len, upload_data, n);
		req->small_len += n;
		b[req->small_len] = 0;
		return MHD_YES;
	}

	if (req->responded)
		return MHD_YES;
	if (req->has_early || req->body_failed) {
		req->has_early = false;
		cos_put_free(req);
		cos_fail_resp(req, &req->early_err, &resp);
		return send_resp(req, &resp);
	}
	return finish(req);
}

static void access_log(const struct cos_req *req, enum MHD_RequestTerminationCode toe)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long us = (long long)(t1.tv_sec - req->t0.tv_sec) * 1000000 +
		       (t1.tv_nsec - req->t0.tv_nsec) / 1000;
	char status[16];
	if (req->responded)
		snprintf(status, sizeof(status), "%d", req->status);
	else
		snprintf(status, sizeof(status), "-");
	/* The path only: the query may carry a presigned signature. */
	bool unauth_failure = !req->authenticated && (!req->responded || req->status >= 400);
	http_access_log(
		req->front->listener, req->remote[0] ? req->remote : "-", unauth_failure,
		"s3 access id=%s remote=%s method=%s path=%.512s op=%s status=%s bytes=%llu "
		"ms=%lld.%03lld principal=%s%s%s",
		req->id, req->remote[0] ? req->remote : "-", req->method ? req->method : "-",
		req->path, cos_op_info(req->op)->name, status, (unsigned long long)req->bytes_out,
		us / 1000, us % 1000, req->authenticated ? req->principal.iam_id : "-",
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " end=",
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : http_termination_name(toe));
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct cos_front *f = cls;
	struct cos_req *req = *con_cls;
	if (!req)
		return;
	*con_cls = NULL;
	if (req->started && !req->responded) {
		/*
		 * Ended without an answer: the client went away, the connection
		 * timed out, or we closed it after a failed body. Its event still
		 * goes in (the writer, if any, is aborted below: nothing is visible).
		 */
		struct sealvm_err why = SEALVM_ERR_INIT, aerr = SEALVM_ERR_INIT;
		if (sealvm_err_isset(&req->early_err))
			why = req->early_err;
		else
			sealvm_err_set(&why, -ECONNABORTED, "RequestTimeout",
				       "the request ended before it was complete (%s)",
				       http_termination_name(toe));
		if (cos_audit_request(req, cos_error_status(why.reason), &why, &aerr) < 0)
			log_error("s3: request %s: the event of an unanswered request could not be "
				  "written: %s",
				  req->id, aerr.message);
	}
	if (f->c->cfg.access_log)
		access_log(req, toe);
	req_free(req);
}

/* ---- set-up ---------------------------------------------------------------------------------- */

/* The S3 operator trail's write. */
static int write_event(void *ctx, const struct audit_event *ev, struct sealvm_err *err)
{
	return cos_audit(ctx, ev, err);
}

int cos_front_start(struct cos *c, struct sealvm_err *err)
{
	const struct cos_config *cfg = &c->cfg;
	struct cos_front *f = calloc(1, sizeof(*f));
	if (!f)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	f->c = c;

	struct http_limits lim = cfg->limits;
	if (!lim.connection_timeout_s)
		lim.connection_timeout_s = COS_DEFAULT_TIMEOUT_S;
	/* Workers block on disk writes and fsyncs: more of them than cores. */
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	http_limits_defaults(&lim,
			     MAX(COS_DEFAULT_THREADS, n > 0 ? (unsigned)MIN(n * 2, 256) : 1u));
	struct http_listener_config lc = {
		.what = "s3",
		.listen = cfg->listen,
		.tls_cert = cfg->tls_cert,
		.tls_key = cfg->tls_key,
		.insecure_listen = cfg->insecure_listen,
		.limits = lim,
		.memory_limit = lim.max_header_bytes + COS_BODY_BUFFER,
		.memory_increment = 64 * 1024,
		.access = on_access,
		.completed = on_completed,
		.uri = on_uri,
		.cls = f,
	};
	f->unauth = (struct audit_unauth){
		.status = 403, .listener = "s3", .write = write_event, .ctx = c};
	int r = sealvm_bound_new(lim.unauth_max, lim.unauth_window_s, &f->unauth.bound);
	if (r < 0) {
		free(f);
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	}
	r = http_listener_start(&lc, &f->listener, err);
	if (r < 0) {
		sealvm_bound_free(f->unauth.bound);
		free(f);
		return r;
	}
	c->front = f;
	return 0;
}

int cos_front_unauth_admit(struct cos_req *req, struct sealvm_err *err)
{
	return audit_unauth_admit(&req->front->unauth, req->remote[0] ? req->remote : "-", req->id,
				  err);
}

void cos_front_stop(struct cos *c)
{
	struct cos_front *f = c ? c->front : NULL;
	if (!f)
		return;
	http_listener_stop(f->listener);
	audit_unauth_drain(&f->unauth);
	sealvm_bound_free(f->unauth.bound);
	c->front = NULL;
	free(f);
}

uint16_t cos_front_port(const struct cos *c)
{
	const struct cos_front *f = c ? c->front : NULL;
	return f ? http_listener_port(f->listener) : 0;
}
