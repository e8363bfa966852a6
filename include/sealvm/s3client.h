/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3client.h — an S3 client on libcurl, for the CLI and the services that
 * read objects (the image service): our object store, or any S3 endpoint
 * (Ceph RGW, AWS), path-style.
 *
 * libcurl is the transport only: requests are signed with our own SigV4
 * signer (sigv4.h; curl 7.88's CURLOPT_AWS_SIGV4 mis-signs query strings), or
 * carry `Authorization: Bearer TOKEN` and `ibm-service-instance-id`.
 *
 * Bodies stream: a PUT reads its file with pread and sends it as aws-chunked
 * with a CRC32C trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER: one pass, the
 * server verifies the checksum before the object becomes visible), or with a
 * real SHA-256 computed first (S3C_PAYLOAD_SHA256, two passes), or unsigned.
 * A GET writes to an fd as the bytes arrive. Large files go up in parallel
 * parts (threads, one connection each; memory stays at a few buffers per
 * thread), each retried with backoff on 5xx and connection errors, and an
 * interrupted upload resumes from a state file (mode 0600, no secret in it)
 * that names the upload id and the ETags of the parts done.
 *
 * Errors: an S3 XML error body becomes the sealvm_err: reason = the S3 Code
 * ("NoSuchKey"), message = the S3 Message and the request id. Failures of the
 * client itself use S3C_* reasons (CONNECT_FAILED, BAD_ANSWER, BAD_URI, ...).
 * No secret (secret access key, token) is ever in a message or a URL, except
 * the signature of a presigned URL, which is what presigning is for.
 */
#ifndef SEALVM_S3CLIENT_H
#define SEALVM_S3CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sealvm/err.h"
#include "sealvm/macro.h"
#include "sealvm/secret.h"

#define S3C_PART_MIN (5ull << 20) /* S3's smallest part (all but the last) */
#define S3C_PART_MAX (5ull << 30) /* S3's largest part and single PUT */
#define S3C_PARTS_MAX 10000	  /* parts of one upload */
#define S3C_PARALLEL_MAX 64	  /* threads of one multipart upload */
#define S3C_DEFAULT_PART (64ull << 20)
#define S3C_DEFAULT_RETRIES 4	      /* extra attempts of one request */
#define S3C_ERROR_BODY_MAX (1u << 20) /* bytes of an error or XML answer we read */
#define S3C_META_MAX 32		      /* x-amz-meta-* pairs on a PUT */

/* How a client authenticates. */
struct s3c_config {
	const char *endpoint; /* "http://127.0.0.1:8731" (a path prefix is not allowed) */
	const char *region;   /* the SigV4 signing region ("us-south") */
	/* HMAC (SigV4): both set, or neither */
	const char *access_key_id;
	const struct sealvm_secret *secret_access_key; /* copied */
	/* or a bearer token (copied); instance_id goes as ibm-service-instance-id when set */
	const struct sealvm_secret *bearer_token;
	const char *instance_id;
	unsigned retries;    /* extra attempts on 5xx/connection errors; 0: S3C_DEFAULT_RETRIES */
	unsigned backoff_ms; /* first backoff (doubles, with jitter); 0: 200 */
	long connect_timeout_s;	  /* 0: 10 */
	long low_speed_timeout_s; /* a transfer under 1 KB/s this long fails (retried); 0: 60 */
	uint64_t max_send_rate;	  /* bytes/s per connection when uploading; 0: no limit */
};

struct s3c;

/*
 * A client: copies @cfg (and its secrets). -EINVAL (reason S3C_CONFIG) for a
 * bad endpoint or region, HMAC half given, both HMAC and a token; -ENOMEM.
 * One client may be used from several threads (each call takes its own curl
 * handle). Needs curl_global_init to have run (s3c_global_init).
 */
int s3c_new(const struct s3c_config *cfg, struct s3c **ret, struct sealvm_err *err);
void s3c_free(struct s3c *c);
static inline void s3c_freep(struct s3c **c)
{
	s3c_free(*c);
}
/* curl_global_init, once per process (thread-safe after the first call returns). */
int s3c_global_init(void);

/* Progress of a transfer: bytes done of total. Called from any thread, serialised. */
typedef void (*s3c_progress_fn)(uint64_t done, uint64_t total, void *userdata);

/* ---- cos:// URIs and the endpoints table ------------------------------------------------ */

struct s3c_uri {
	char region[64];
	char bucket[64];
	char *key; /* malloc'ed; "" when the URI names the bucket only */
};
void s3c_uri_done(struct s3c_uri *u);

/*
 * Parses "cos://REGION/BUCKET[/KEY]": region [a-z0-9-]{1,63}, bucket 3..63 of
 * [a-z0-9.-], key up to 1024 bytes, no NUL or control characters. A trailing
 * '/' after the bucket gives the key "". -EINVAL reason BAD_URI naming what
 * is wrong.
 */
int s3c_uri_parse(const char *uri, struct s3c_uri *ret, struct sealvm_err *err);

/*
 * From the text of an endpoints document (IBM's shape:
 * service-endpoints.regional.REGION.public.REGION = URL), the URL of
 * @region (new string). -ENOENT UNKNOWN_REGION (the message lists the regions
 * served), -EINVAL BAD_ANSWER.
 */
int s3c_endpoints_lookup(const char *json, size_t len, const char *region, char **ret,
			 struct sealvm_err *err);
/* The regions of an endpoints document, as a new NULL-terminated array of strings. */
int s3c_endpoints_regions(const char *json, size_t len, char ***ret, struct sealvm_err *err);
/*
 * GET @api_url/v2/endpoints (no credentials: it is public), then
 * s3c_endpoints_lookup. If @region is NULL, the only region served (-EINVAL
 * REGION_NEEDED when there are several). -EIO CONNECT_FAILED.
 */
int s3c_endpoint_resolve(const char *api_url, const char *region, char **ret_url, char **ret_region,
			 struct sealvm_err *err);

/* ---- buckets ------------------------------------------------------------------------------ */

struct s3c_bucket {
	char name[64];
	char created[40]; /* ISO 8601 as the server gave it */
};

/*
 * PUT /BUCKET with a CreateBucketConfiguration naming @location (NULL: no
 * body), and SSE-KP headers when @kms_key_crn is given.
 */
int s3c_bucket_create(struct s3c *c, const char *bucket, const char *location,
		      const char *kms_key_crn, struct sealvm_err *err);
/* GET / (the instance's buckets, or the HMAC key's). Free *ret with free(). */
int s3c_bucket_list(struct s3c *c, struct s3c_bucket **ret, size_t *ret_n, struct sealvm_err *err);

struct s3c_bucket_info {
	bool sse;	   /* ibm-sse-kp-enabled: True */
	char crk_id[320];  /* ibm-sse-kp-crk-id (or the root key CRN) */
	char location[64]; /* GET ?location, "" if the server does not say */
};
/* HEAD /BUCKET (and GET ?location). -ENOENT NoSuchBucket. */
int s3c_bucket_head(struct s3c *c, const char *bucket, struct s3c_bucket_info *ret,
		    struct sealvm_err *err);
int s3c_bucket_delete(struct s3c *c, const char *bucket, struct sealvm_err *err);

/* ---- objects ----------------------------------------------------------------------------- */

struct s3c_meta {
	char *name; /* without "x-amz-meta-", lower case */
	char *value;
};

struct s3c_object {
	char *key;
	uint64_t size;
	char etag[80]; /* without quotes */
	char last_modified[40];
	char content_type[128];
	char content_range[96]; /* a ranged GET's Content-Range */
	uint64_t total_size;	/* the whole object's (from Content-Range, or size) */
	bool sse;
	struct s3c_meta *meta; /* HEAD/GET: the user metadata */
	size_t n_meta;
};
void s3c_object_done(struct s3c_object *o);

enum s3c_payload {
	S3C_PAYLOAD_TRAILER = 0, /* aws-chunked, CRC32C trailer (default: one pass) */
	S3C_PAYLOAD_SHA256,	 /* the real SHA-256 in x-amz-content-sha256 (two passes) */
	S3C_PAYLOAD_UNSIGNED,	 /* UNSIGNED-PAYLOAD, nothing for the server to check */
};

struct s3c_put_opts {
	const char *content_type;    /* NULL: none sent */
	const struct s3c_meta *meta; /* n_meta pairs */
	size_t n_meta;
	enum s3c_payload payload;
	s3c_progress_fn progress;
	void *userdata;
};

/*
 * PUT @size bytes of @fd from offset @off as one object (at most
 * S3C_PART_MAX). The ETag goes to @ret_etag (80 bytes, may be NULL).
 */
int s3c_put_fd(struct s3c *c, const char *bucket, const char *key, int fd, uint64_t off,
	       uint64_t size, const struct s3c_put_opts *o, char *ret_etag, struct sealvm_err *err);

struct s3c_upload_opts {
	struct s3c_put_opts put;
	uint64_t part_size;	/* 0: S3C_DEFAULT_PART, grown to fit S3C_PARTS_MAX */
	unsigned parallel;	/* 1..S3C_PARALLEL_MAX; 0: 4 */
	const char *state_path; /* resume state (NULL: not resumable) */
	/* identity of the source for the state file: size and mtime are checked on resume */
	int64_t source_mtime_ns;
};

struct s3c_upload_result {
	char etag[80];
	unsigned parts;
	unsigned parts_resumed; /* parts found done on the server from an earlier run */
	char upload_id[256];
};

/*
 * Multipart upload of @size bytes of @fd (from offset 0), @parallel parts at a
 * time. With a state path: an earlier run's upload of the same bucket, key,
 * size, mtime and part size is resumed (its parts are listed on the server
 * and those whose ETags the state records are skipped); the state is
 * rewritten after every part and removed when the upload completes. On
 * failure the upload is left for a later run to resume (not aborted) when a
 * state file records it, and aborted otherwise. -EEXIST RESUME_CONFLICT when
 * the state file names another bucket or key.
 */
int s3c_upload_file(struct s3c *c, const char *bucket, const char *key, int fd, uint64_t size,
		    const struct s3c_upload_opts *o, struct s3c_upload_result *ret,
		    struct sealvm_err *err);

/* An optional single byte range: first..last inclusive; last UINT64_MAX means "to the end". */
struct s3c_range {
	uint64_t first;
	uint64_t last;
};

struct s3c_get_opts {
	const struct s3c_range *range; /* NULL: the whole object */
	bool sha256;		       /* compute the SHA-256 of what was written */
	s3c_progress_fn progress;
	void *userdata;
};

/*
 * GET into @fd, written from its current position. When @fd can be sought, a
 * transfer broken after part of the answer arrived resumes: the retry asks for
 * the rest (Range from where it stopped, If-Match the answer's ETag) and keeps
 * what was written (a server that ignores the Range starts over; an object
 * changed meanwhile: -ESTALE PreconditionFailed, @fd back where it was). On a
 * pipe a broken transfer fails. *@ret gets the headers (size and range of the
 * whole answer, resumed or not); @ret_sha256 the digest of everything written
 * when asked. -ENOENT NoSuchKey/NoSuchBucket, -ERANGE InvalidRange.
 */
int s3c_get_fd(struct s3c *c, const char *bucket, const char *key, int fd,
	       const struct s3c_get_opts *o, struct s3c_object *ret, unsigned char ret_sha256[32],
	       struct sealvm_err *err);
/* HEAD /BUCKET/KEY. -ENOENT NoSuchKey. */
int s3c_head(struct s3c *c, const char *bucket, const char *key, struct s3c_object *ret,
	     struct sealvm_err *err);
/* DELETE /BUCKET/KEY (S3: deleting an absent key succeeds). */
int s3c_delete(struct s3c *c, const char *bucket, const char *key, struct sealvm_err *err);

struct s3c_list_opts {
	const char *prefix;
	const char *delimiter;
	const char *continuation; /* a NextContinuationToken */
	unsigned max_keys;	  /* 0: the server's default (1000) */
};
struct s3c_list {
	struct s3c_object *objects; /* key, size, etag, last_modified */
	size_t n_objects;
	char **prefixes; /* CommonPrefixes */
	size_t n_prefixes;
	bool truncated;
	char *next; /* NextContinuationToken when truncated */
};
void s3c_list_done(struct s3c_list *l);
/* One page of ListObjectsV2. */
int s3c_list(struct s3c *c, const char *bucket, const struct s3c_list_opts *o, struct s3c_list *ret,
	     struct sealvm_err *err);

/*
 * A presigned URL for GET or PUT of BUCKET/KEY valid @expires seconds
 * (1..604800), at @now (0: the clock). Needs HMAC credentials (-EINVAL
 * PRESIGN_NEEDS_HMAC otherwise). New string in *@ret.
 */
int s3c_presign(struct s3c *c, const char *method, const char *bucket, const char *key,
		unsigned expires, int64_t now, char **ret, struct sealvm_err *err);

/* ---- low-level multipart (s3c_upload_file uses these) -------------------------------------- */

int s3c_upload_create(struct s3c *c, const char *bucket, const char *key,
		      const struct s3c_put_opts *o, char ret_upload_id[256],
		      struct sealvm_err *err);
int s3c_upload_abort(struct s3c *c, const char *bucket, const char *key, const char *upload_id,
		     struct sealvm_err *err);

struct s3c_part_info {
	unsigned number;
	uint64_t size;
	char etag[80];
};
/* ListParts, every page. Free *ret with free(). -ENOENT NoSuchUpload. */
int s3c_upload_parts(struct s3c *c, const char *bucket, const char *key, const char *upload_id,
		     struct s3c_part_info **ret, size_t *ret_n, struct sealvm_err *err);

#endif
