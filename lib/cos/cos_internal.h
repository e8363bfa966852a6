/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cos_internal.h — the contract between the object store's engine and its
 * S3 front.
 *
 * Engine (cos_store.c: tables and queries; cos_fs.c: data files, crash
 * recovery, orphan sweep; cos_object.c: writers, readers, copy, list,
 * multipart; cos_sse.c: the SSE-KP segment format and DEK handling): owns the
 * database rows and the files under <data_dir>/cos. It knows nothing of HTTP,
 * SigV4 or XML.
 *
 * Front (cos_http.c: the listener, routing, responses; cos_auth.c: SigV4 /
 * bearer, authorization; cos_put.c: the streaming body pipeline): decides
 * who may do what, verifies every integrity value the client declared, and
 * turns engine errors into S3 XML errors.
 *
 * Errors: the engine fails with a negative errno and a sticky error whose
 * reason is the S3 error code to answer with (NoSuchBucket, NoSuchKey,
 * NoSuchUpload, BucketNotEmpty, BucketAlreadyExists, BucketAlreadyOwnedByYou,
 * InvalidPart, InvalidPartOrder, EntityTooSmall, EntityTooLarge,
 * InvalidBucketName, InvalidLocationConstraint, KMSKeyDisabled, KMSAccessDenied,
 * InternalError, ServiceUnavailable, ...) and a message for the user; the
 * front maps reason → HTTP status with cos_error_status().
 *
 * Audit: every function that changes state takes @ev (NULL: no event): the
 * event describing the success, appended with audit_append inside the same
 * database transaction as the change, so both commit or neither. The front
 * records failure events and read events (cos_audit) itself.
 *
 * Threads: every function is thread-safe; writers and readers belong to one
 * request (one thread at a time).
 */
#ifndef SEALVM_COS_INTERNAL_H
#define SEALVM_COS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "sealvm/audit.h"
#include "sealvm/cos.h"
#include "sealvm/principal.h"
#include "sealvm/s3.h"

#define COS_BUCKET_NAME_MAX 63
#define COS_KEY_MAX 1024	  /* bytes of an object key (UTF-8) */
#define COS_META_MAX 2048	  /* bytes of user metadata (names + values), as S3 */
#define COS_PART_MIN (5ull << 20) /* every part but the last */
#define COS_PART_MAX (5ull << 30) /* one part, and one single PUT */
#define COS_PARTS_MAX 10000
#define COS_LIST_MAX 1000
#define COS_UPLOAD_ID_LEN 32 /* hex */

/* The service (cos.c). Engine and front share it. */
struct cos {
	struct cos_deps deps;
	struct cos_config cfg;
	char *root;    /* <data_dir>/cos */
	int root_fd;   /* O_DIRECTORY */
	void *front;   /* the listener's state (cos_http.c); NULL without a listener */
	void *sweeper; /* the upload sweeper thread's state */
	struct sigv4_key_cache *sigv4_cache;
};

/* ---- buckets ---------------------------------------------------------------------------- */

struct cos_bucket {
	char name[COS_BUCKET_NAME_MAX + 1];
	char account_id[40];
	char instance_guid[40]; /* the cloud-object-storage instance it belongs to */
	char instance_crn[320];
	char crn[320]; /* crn:v1:sealvm:local:cloud-object-storage:global:a/ACCOUNT:INSTANCE:bucket:NAME
			*/
	char location[48]; /* LocationConstraint as given: "us-south-standard" */
	int64_t created_ms;
	bool sse; /* SSE-KP: objects encrypted under sse_key_crn */
	char sse_key_crn[320];
	char sse_instance[40]; /* the KMS instance and key, parsed from the CRN */
	char sse_key_id[40];
};

/*
 * Checks a bucket name (S3's DNS rules: 3–63 of [a-z0-9.-], starting and
 * ending with a letter or digit, no "..", not an IP address, not starting
 * "cosv1-"/"account-"/"xn--"): -EINVAL InvalidBucketName naming the rule.
 */
int cos_bucket_name_check(const char *name, struct sealvm_err *err);

/*
 * Checks a LocationConstraint against the deployment's region: "<region>-<class>"
 * with class standard|vault|cold|smart, or "<region>" (empty/absent: the caller
 * substitutes "<region>-standard"). -EINVAL InvalidLocationConstraint naming
 * the accepted values.
 */
int cos_location_check(const struct cos *c, const char *location, struct sealvm_err *err);

/*
 * Creates @b (all fields but crn and created_ms filled by the caller; the
 * engine sets those). For SSE (b->sse with b->sse_key_crn): the key must be a
 * root key of a KMS instance of the same account, in the deployment's
 * region, Active, and the customer must have authorized
 * cloud-object-storage → kms (Reader): the engine proves it by wrapping a
 * probe DEK as the service (kms_wrap with iam_service_principal) and
 * registers the bucket's CRN against the key; each failure is -EACCES
 * KMSAccessDenied / -EINVAL InvalidArgument / KMSKeyDisabled with KMS's
 * reason in the message. -EEXIST BucketAlreadyOwnedByYou (same account) or
 * BucketAlreadyExists (another). On success *b is the stored bucket.
 */
int cos_bucket_create(struct cos *c, const struct sealvm_principal *p, struct cos_bucket *b,
		      const struct audit_event *ev, struct sealvm_err *err);
/* -ENOENT NoSuchBucket. */
int cos_bucket_get(struct cos *c, const char *name, struct cos_bucket *ret, struct sealvm_err *err);
/* The buckets of an instance, by name. Free *ret with free(). */
int cos_bucket_list(struct cos *c, const char *instance_guid, struct cos_bucket **ret,
		    size_t *ret_n, struct sealvm_err *err);
/*
 * Deletes an empty bucket: -ENOTEMPTY BucketNotEmpty when it holds an object.
 * Incomplete multipart uploads are aborted with it. Removes the SSE
 * registration (best effort, logged).
 */
int cos_bucket_delete(struct cos *c, const char *name, const struct audit_event *ev,
		      struct sealvm_err *err);

/* ---- objects ------------------------------------------------------------------------------ */

/* A checksum a client declared (and the engine stores and returns): x-amz-checksum-*. */
struct cos_checksum {
	enum s3_checksum_alg algo; /* S3_CHECKSUM_NONE: none */
	char value[72];		   /* base64, as S3 returns it; composite: "...-N" */
};

struct cos_object {
	char key[COS_KEY_MAX + 1];
	uint64_t size;
	char etag[48]; /* without quotes: 32 hex, or 32 hex "-N" for multipart */
	int64_t mtime_ms;
	char content_type[256];
	json_t *meta; /* {"name": "value"} of x-amz-meta-* (names lower-case, without prefix); owned
		       */
	struct cos_checksum checksum;
	unsigned parts; /* 0: single PUT; N: completed from N parts */
	bool sse;
};
/* Frees what @o holds. */
void cos_object_done(struct cos_object *o);

/* -ENOENT NoSuchKey. */
int cos_object_head(struct cos *c, const struct cos_bucket *b, const char *key,
		    struct cos_object *ret, struct sealvm_err *err);
/* Deletes (idempotent: an absent key is success). Data files go after the commit. */
int cos_object_delete(struct cos *c, const struct cos_bucket *b, const char *key,
		      const struct audit_event *ev, struct sealvm_err *err);

/*
 * Copies @src_key of @src to @dst_key of @dst (PUT with x-amz-copy-source):
 * @meta/@content_type NULL keep the source's (COPY directive), else replace
 * them (REPLACE). Data files are shared when neither bucket encrypts (they
 * are immutable), re-encrypted otherwise. Source and destination the same
 * object with COPY directive: -EINVAL InvalidRequest, as S3.
 */
int cos_object_copy(struct cos *c, const struct cos_bucket *src, const char *src_key,
		    const struct cos_bucket *dst, const char *dst_key, const char *content_type,
		    json_t *meta, const struct audit_event *ev, struct cos_object *ret,
		    struct sealvm_err *err);

/* ListObjectsV2. Keys in UTF-8 byte order. */
struct cos_list_query {
	const char *prefix;	 /* "" or NULL: all */
	const char *delimiter;	 /* NULL: none */
	const char *start_after; /* the continuation token's key, or start-after; NULL: start */
	unsigned max_keys;	 /* 0..1000 */
};
struct cos_list_result {
	struct cos_object *objects; /* n_objects; meta not loaded */
	size_t n_objects;
	char **prefixes; /* n_prefixes CommonPrefixes */
	size_t n_prefixes;
	bool truncated;
	char *next; /* when truncated: the last key or common prefix returned (token) */
};
int cos_object_list(struct cos *c, const struct cos_bucket *b, const struct cos_list_query *q,
		    struct cos_list_result *ret, struct sealvm_err *err);
void cos_list_result_done(struct cos_list_result *r);

/* ---- writing: one PUT body, or one part --------------------------------------------------- */

struct cos_writer;

struct cos_put_args {
	const struct cos_bucket *bucket;
	const char *key;
	const char *content_type;     /* NULL: binary/octet-stream */
	json_t *meta;		      /* borrowed; NULL: none */
	struct cos_checksum checksum; /* declared, already verified by the front at commit */
	uint64_t size; /* the body's (decoded) length, known up front (S3 requires it) */
	/* a part: the upload and its number (1..10000); NULL/0 for a plain PUT */
	const char *upload_id;
	unsigned part_number;
};

/*
 * Starts writing: a temporary file under <root>/tmp (O_TMPFILE where the file
 * system has it). SSE buckets: a fresh DEK (plain PUT) or the upload's
 * (part), unwrapped through the KMS as the service: -EACCES KMSAccessDenied,
 * -EKEYREVOKED KMSKeyDisabled (the key is disabled, deleted or not Active).
 * Parts: -ENOENT NoSuchUpload. -EFBIG EntityTooLarge over COS_PART_MAX.
 */
int cos_writer_open(struct cos *c, const struct cos_put_args *a, struct cos_writer **ret,
		    struct sealvm_err *err);
/* Appends body bytes (encrypting for SSE). Buffers internally; large writes are cheap. */
int cos_writer_write(struct cos_writer *w, const void *buf, size_t len, struct sealvm_err *err);
/*
 * Ends the data: flushes, fsyncs, and gives the MD5 of the bytes written (the
 * ETag of a single PUT/part; Content-MD5 is checked against it by the front).
 * -EBADMSG IncompleteBody when fewer or more bytes than a->size arrived.
 */
int cos_writer_finish(struct cos_writer *w, unsigned char ret_md5[16], struct sealvm_err *err);
/*
 * added by engine: sets the checksum to store when its value is known only
 * after the body (an aws-chunked trailer), before cos_writer_commit; it
 * replaces a->checksum. -EINVAL InvalidArgument for a value too long.
 */
int cos_writer_set_checksum(struct cos_writer *w, const struct cos_checksum *checksum,
			    struct sealvm_err *err);
/*
 * Makes it visible, after cos_writer_finish and the front's checks: names
 * the file, fsyncs the directory, then commits the object row (replacing an
 * older version, whose data goes after the commit) or the part row, with @ev.
 * Fills *ret (may be NULL). The writer is freed whatever the outcome.
 */
int cos_writer_commit(struct cos_writer *w, const struct audit_event *ev, struct cos_object *ret,
		      struct sealvm_err *err);
/* Drops it (temporary file removed). NULL is fine. */
void cos_writer_abort(struct cos_writer *w);

/* ---- reading ------------------------------------------------------------------------------- */

struct cos_reader;

/*
 * Opens the object for reading (a snapshot: an overwrite or delete after
 * this does not disturb it). *ret_obj is its metadata. SSE: the DEK is
 * unwrapped through the KMS as the service (one kms.secrets.unwrap event);
 * -EKEYREVOKED KMSKeyDisabled when the root key is disabled or deleted,
 * -EACCES KMSAccessDenied when the authorization was removed.
 */
int cos_reader_open(struct cos *c, const struct cos_bucket *b, const char *key,
		    struct cos_object *ret_obj, struct cos_reader **ret, struct sealvm_err *err);
/*
 * For a single-file object stored in clear: the fd and the offset of byte
 * @off in it, so that the front can sendfile (the fd stays the reader's).
 * -ENOTSUP for encrypted or multi-file objects: use cos_reader_pread.
 */
int cos_reader_fd(struct cos_reader *r, uint64_t off, int *ret_fd, off_t *ret_file_off);
/*
 * Up to @len plaintext bytes at object offset @off (fewer only at the end):
 * decrypts (and authenticates) only the segments it returns. -EBADMSG
 * InternalError when stored data fails authentication (never returned as
 * data); -EIO.
 */
ssize_t cos_reader_pread(struct cos_reader *r, void *buf, size_t len, uint64_t off,
			 struct sealvm_err *err);
void cos_reader_close(struct cos_reader *r);

/* ---- multipart ----------------------------------------------------------------------------- */

struct cos_upload {
	char upload_id[COS_UPLOAD_ID_LEN + 1];
	char bucket[COS_BUCKET_NAME_MAX + 1];
	char key[COS_KEY_MAX + 1];
	int64_t initiated_ms;
	char initiator_id[128];		    /* principal id */
	enum s3_checksum_alg checksum_algo; /* x-amz-checksum-algorithm at create */
};

struct cos_part {
	unsigned number;
	uint64_t size;
	char etag[48]; /* 32 hex, no quotes */
	struct cos_checksum checksum;
	int64_t mtime_ms;
};

/* Initiates: *ret gets the new upload. SSE: the upload's DEK is made and wrapped now. */
int cos_upload_create(struct cos *c, const struct sealvm_principal *p, const struct cos_bucket *b,
		      const char *key, const char *content_type, json_t *meta,
		      enum s3_checksum_alg checksum_algo, const struct audit_event *ev,
		      struct cos_upload *ret, struct sealvm_err *err);
/* -ENOENT NoSuchUpload unless @upload_id is an upload of @key in @b. */
int cos_upload_get(struct cos *c, const struct cos_bucket *b, const char *key,
		   const char *upload_id, struct cos_upload *ret, struct sealvm_err *err);
/* Parts with number > @marker, at most @max (1..1000); *ret_truncated when more follow. */
int cos_upload_parts(struct cos *c, const char *upload_id, unsigned marker, unsigned max,
		     struct cos_part **ret, size_t *ret_n, bool *ret_truncated,
		     struct sealvm_err *err);
/* ListMultipartUploads of a bucket (key order, then initiation). */
int cos_upload_list(struct cos *c, const struct cos_bucket *b, const char *prefix, unsigned max,
		    struct cos_upload **ret, size_t *ret_n, bool *ret_truncated,
		    struct sealvm_err *err);
/*
 * Completes with the client's part list (s3_multipart_parse): ascending
 * numbers (-EINVAL InvalidPartOrder), each uploaded with that ETag (and
 * checksum when given) (-EINVAL InvalidPart), each but the last at least
 * COS_PART_MIN (-EINVAL EntityTooSmall). The object's ETag is the MD5 of the
 * parts' binary MD5s, "-N". One transaction makes the object visible and
 * ends the upload; parts not named are removed after it.
 */
int cos_upload_complete(struct cos *c, const struct cos_bucket *b, const char *key,
			const char *upload_id, const struct s3_part *parts, size_t n,
			const struct audit_event *ev, struct cos_object *ret,
			struct sealvm_err *err);
/* Aborts: rows go, then files. -ENOENT NoSuchUpload. */
int cos_upload_abort(struct cos *c, const struct cos_bucket *b, const char *key,
		     const char *upload_id, const struct audit_event *ev, struct sealvm_err *err);

/* ---- shared -------------------------------------------------------------------------------- */

/* The HTTP status for an engine or front reason (S3's table); 500 for unknown ones. */
int cos_error_status(const char *reason);

/*
 * Records an event on its own (reads, failures), in a write job: -EIO
 * AUDIT_UNAVAILABLE when it cannot be written (the front answers 503).
 */
int cos_audit(struct cos *c, const struct audit_event *ev, struct sealvm_err *err);

/* Engine lifetime (cos.c calls them): recovery at start, the sweeper thread. */
int cos_fs_open(struct cos *c, struct sealvm_err *err);
void cos_fs_close(struct cos *c);
int cos_sweeper_start(struct cos *c, struct sealvm_err *err);
void cos_sweeper_stop(struct cos *c);

/* Front lifetime. */
int cos_front_start(struct cos *c, struct sealvm_err *err);
void cos_front_stop(struct cos *c);
uint16_t cos_front_port(const struct cos *c);

#endif
