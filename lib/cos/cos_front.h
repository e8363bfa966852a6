/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cos_front.h — what the S3 front's files share (cos_http.c: listener,
 * routing, responses; cos_auth.c: SigV4 / bearer authentication, bucket
 * resolution, authorization, audit events; cos_put.c: the streaming body
 * pipeline; cos_get.c: object reads). Not an interface of the service.
 *
 * A request lives in one struct cos_req from libmicrohttpd's URI callback
 * to its completion callback. Everything that decides whether the request
 * may proceed — routing, authentication, authorization, opening the writer —
 * runs on the first access callback, before any body byte is read, so a
 * refused request never gets "100 Continue" and never uploads.
 */
#ifndef SEALVM_COS_FRONT_H
#define SEALVM_COS_FRONT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <microhttpd.h>

#include "sealvm/s3.h"
#include "sealvm/sigv4.h"

#include "cos_internal.h"

#define COS_REQUEST_ID_LEN 16	      /* hex characters of x-amz-request-id */
#define COS_MAX_HEADERS 128	      /* request headers kept for SigV4 */
#define COS_SMALL_BODY_MAX (1u << 20) /* CreateBucketConfiguration, batch delete */
#define COS_READ_BLOCK (1u << 20)     /* bytes per cos_reader_pread of a streamed GET */
#define COS_XML_MAX (32u << 20)	      /* bytes of one XML response */
#define COS_DISCARD_MAX (1u << 20)    /* body bytes dropped after an error before closing */

/* What a request asks for, decided from method, path and query. */
enum cos_op {
	COS_OP_NONE = 0,
	COS_OP_LIST_BUCKETS,
	COS_OP_BUCKET_CREATE,
	COS_OP_BUCKET_HEAD,
	COS_OP_BUCKET_DELETE,
	COS_OP_BUCKET_LOCATION,
	COS_OP_LIST_OBJECTS, /* v1 or v2 (list-type=2) */
	COS_OP_LIST_UPLOADS,
	COS_OP_OBJECT_PUT,
	COS_OP_OBJECT_COPY,
	COS_OP_OBJECT_GET,
	COS_OP_OBJECT_HEAD,
	COS_OP_OBJECT_DELETE,
	COS_OP_UPLOAD_CREATE,
	COS_OP_PART_PUT,
	COS_OP_PARTS_LIST,
	COS_OP_UPLOAD_COMPLETE,
	COS_OP_UPLOAD_ABORT,
	COS_OP_DELETE_OBJECTS,
	COS_OP__MAX,
};

/* How an operation takes its body. */
enum cos_body {
	COS_BODY_NONE,	 /* none allowed (a Content-Length of 0 is fine) */
	COS_BODY_SMALL,	 /* buffered, up to the op's limit */
	COS_BODY_STREAM, /* streamed to a writer (PUT object, UploadPart) */
};

struct cos_op_info {
	const char *name;	  /* "PutObject", for logs */
	const char *iam_action;	  /* checked by iam_authorize */
	const char *audit_action; /* the CADF action */
	enum cos_body body;
	size_t max_body; /* COS_BODY_SMALL */
	bool object;	 /* the path names a key */
	bool data_event; /* object reads and writes */
};

/* The operation table (cos_http.c). */
const struct cos_op_info *cos_op_info(enum cos_op op);

/* The body pipeline of a PUT object or UploadPart (cos_put.c). */
struct cos_put;

struct cos_front;

struct cos_req {
	struct cos_front *front;
	struct cos *c;
	struct MHD_Connection *conn;
	const char *method;
	char *path;  /* raw, undecoded, in uri[] */
	char *query; /* raw, after '?'; "" when none */
	char id[COS_REQUEST_ID_LEN + 1];
	char remote[48];
	struct timespec t0;

	struct sigv4_header headers[COS_MAX_HEADERS]; /* libmicrohttpd's strings */
	size_t n_headers;
	bool too_many_headers;
	struct s3_query q;

	enum cos_op op;
	char bucket_name[COS_BUCKET_NAME_MAX + 1];
	char *key; /* decoded; NULL when the path names no key */

	/* authentication */
	bool authenticated;
	struct sealvm_principal principal;
	char instance_guid[40]; /* HMAC: the key's instance; bearer: ibm-service-instance-id */
	struct sigv4_auth auth; /* SigV4 outcome (payload mode, signing key) */
	bool sigv4;

	/* the resolved bucket (ops on a bucket) */
	bool have_bucket;
	struct cos_bucket bucket;

	/* state across callbacks */
	bool started;
	bool responded;
	bool has_early; /* an error answer waits for the final callback */
	struct sealvm_err early_err;
	bool body_failed; /* an error while the body arrived: answered at its end */
	size_t discarded;
	unsigned char *small; /* COS_BODY_SMALL */
	size_t small_len;
	struct cos_put *put; /* COS_BODY_STREAM */

	int status;
	uint64_t bytes_out;
	char *audit_name;     /* the target's name in the event: the key, or the bucket */
	char user_agent[256]; /* sanitised for audit */
	char audit_failure[SEALVM_ERR_MESSAGE_MAX]; /* sanitised for audit */
	char bucket_crn[320]; /* the target's CRN: the bucket's, or the one it will have */

	char uri[]; /* the raw request target */
};

/* A response being built: status, headers, and one body source. */
struct cos_resp {
	int status;
	char *body; /* owned; XML */
	size_t body_len;
	const char *content_type;
	struct {
		char *name;
		char *value;
	} headers[48];
	unsigned n_headers;
	struct MHD_Response *mhd; /* a ready response (GET object); owned */
};

/* ---- cos_http.c ---------------------------------------------------------------------------- */

/* Adds a header (both copied; silently dropped past the table's size, logged). */
void cos_resp_header(struct cos_resp *resp, const char *name, const char *fmt, ...) _printf_(3, 4);
/* Frees what @resp owns. */
void cos_resp_done(struct cos_resp *resp);
/* Fills @resp with the S3 XML error for @err (status from cos_error_status). */
void cos_resp_error(struct cos_req *req, const struct sealvm_err *err, struct cos_resp *resp);
/* The first request header named @name (case-insensitive), or NULL. */
const char *cos_req_header(const struct cos_req *req, const char *name);
/*
 * Turns a failure into its answer: the failure event first (fail closed: 503
 * when it cannot be written), then the XML error.
 */
void cos_fail_resp(struct cos_req *req, const struct sealvm_err *err, struct cos_resp *resp);
/* A success the engine did not audit (a read): records the event; 503 if it cannot. */
void cos_read_ok(struct cos_req *req, struct cos_resp *resp);
/* "Sun, 06 Nov 1994 08:49:37 GMT" */
void cos_http_date(int64_t ms, char out[40]);
/* "2009-10-12T17:50:30.000Z" */
void cos_iso_date(int64_t ms, char out[40]);

/* ---- cos_parse.c --------------------------------------------------------------------------- */

/*
 * Strict percent-decoding of @n bytes of a raw path part ('+' is itself): a
 * new string in *@ret. A bad escape or an encoded NUL: -EINVAL InvalidURI.
 */
int cos_path_decode(const char *s, size_t n, char **ret, struct sealvm_err *err);
/* True when @s is valid UTF-8 (shortest forms, no surrogates, at most U+10FFFF). */
bool cos_utf8_valid(const char *s);
/*
 * The LocationConstraint of a CreateBucketConfiguration body of @len bytes
 * into @out ("" when the body is empty or names none). Accepts an XML
 * declaration, the root element (with attributes such as xmlns), one
 * LocationConstraint leaf without markup or entities, and whitespace;
 * anything else is -EINVAL MalformedXML.
 */
int cos_parse_location(const unsigned char *body, size_t len, char *out, size_t outsz,
		       struct sealvm_err *err);

/* A byte range [first, last] of an object. */
struct cos_range {
	bool partial; /* false: the whole object */
	uint64_t first, last;
};
/*
 * Parses a Range header (NULL: none) against an object of @size bytes. 0
 * with r->partial when one satisfiable range was asked (last clamped to the
 * end); 0 without it when there is none, it is not a bytes range we read, or
 * it names several ranges (ignored, as S3 does); -ERANGE when it cannot be
 * satisfied (a start at or past the end, a suffix of 0, any range of an
 * empty object).
 */
int cos_parse_range(const char *h, uint64_t size, struct cos_range *r);

#define COS_DELETE_MAX 1000 /* objects in one DeleteObjects request, as S3 */

struct cos_delete_obj {
	char *key;    /* decoded, valid UTF-8, 1..COS_KEY_MAX bytes */
	bool version; /* a VersionId was named (we keep no versions) */
};
struct cos_delete_list {
	bool quiet;
	struct cos_delete_obj *objects;
	size_t n;
};
/*
 * Parses a DeleteObjects body: an optional BOM and XML declaration, <Delete>
 * (an xmlns attribute at most) holding an optional <Quiet>true|false</Quiet>
 * and 1..COS_DELETE_MAX <Object> elements, each with exactly one <Key> and at
 * most one <VersionId>, whitespace between elements; text may use the five
 * predefined entities and character references. Anything else is -EINVAL
 * MalformedXML. Free with cos_delete_list_done.
 */
int cos_parse_delete(const unsigned char *body, size_t len, struct cos_delete_list *ret,
		     struct sealvm_err *err);
void cos_delete_list_done(struct cos_delete_list *l);

/* ---- cos_auth.c ---------------------------------------------------------------------------- */

/*
 * Authenticates @req (SigV4 header or query, or Bearer): fills
 * req->principal, req->instance_guid, req->auth. Anonymous → -EACCES
 * AccessDenied. Errors carry S3 codes.
 */
int cos_authenticate(struct cos_req *req, struct sealvm_err *err);
/*
 * Finds the request's bucket (req->bucket) and checks that the caller may act
 * on it: the HMAC key's instance, the account; then iam_authorize with @action.
 * -ENOENT NoSuchBucket, -EACCES AccessDenied.
 */
int cos_resolve_authorize(struct cos_req *req, const char *action, struct sealvm_err *err);
/* For bucket create and list: the instance the caller acts in, checked. */
int cos_authorize_instance(struct cos_req *req, const char *action, struct sealvm_err *err);
/* Authorizes @action on bucket @b (copy source). */
int cos_authorize_bucket(struct cos_req *req, const struct cos_bucket *b, const char *action,
			 struct sealvm_err *err);
/*
 * The request's audit event (@status, @failure NULL on success); strings are
 * borrowed from @req and @failure.
 */
void cos_event(struct cos_req *req, int status, const struct sealvm_err *failure,
	       struct audit_event *ev);
/*
 * Whether an unauthenticated failure of @req is recorded one by one (1) or only
 * counted (0) — per source address and window, as on the API listener; a count
 * due from an earlier window is recorded first as one aggregate event. Negative
 * errno when that cannot be written.
 */
int cos_front_unauth_admit(struct cos_req *req, struct sealvm_err *err);
/* Records a failure (or read) event now (cos_audit). -EIO when it cannot be written. */
int cos_audit_request(struct cos_req *req, int status, const struct sealvm_err *failure,
		      struct sealvm_err *err);

/* ---- cos_put.c ----------------------------------------------------------------------------- */

/*
 * Prepares the body pipeline of a PutObject/UploadPart once the request is
 * authorized: declared length, payload mode, Content-MD5, x-amz-checksum-*,
 * metadata; opens the engine's writer. On failure nothing is open.
 */
int cos_put_begin(struct cos_req *req, struct sealvm_err *err);
/* Feeds body bytes as libmicrohttpd hands them over. */
int cos_put_feed(struct cos_req *req, const void *data, size_t len, struct sealvm_err *err);
/*
 * Ends the body: verifies every declared integrity value, then commits with
 * the success event; fills @resp (200 + ETag, or the error).
 */
void cos_put_finish(struct cos_req *req, struct cos_resp *resp);
/* Drops the pipeline (writer aborted). NULL-safe on req->put. */
void cos_put_free(struct cos_req *req);
/* Parses x-amz-meta-* headers into a new object (new reference in *ret; NULL for none). */
int cos_meta_from_headers(struct cos_req *req, json_t **ret, struct sealvm_err *err);
/* PUT with x-amz-copy-source. */
void cos_copy(struct cos_req *req, struct cos_resp *resp);

/* ---- cos_get.c ----------------------------------------------------------------------------- */

/* GetObject and HeadObject: fills @resp (an MHD response for the data). */
void cos_get(struct cos_req *req, struct cos_resp *resp);

#endif
