/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cos_engine.h — what the object store's engine files share among
 * themselves (never the front): the engine's state, the rows as stored, the
 * SQL of cos_store.c, the data files of cos_fs.c and the SSE-KP segment
 * format of cos_sse.c. docs/internals/cos.md explains the design.
 */
#ifndef SEALVM_COS_ENGINE_H
#define SEALVM_COS_ENGINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "sealvm/secret.h"

#include "cos_internal.h"

/* A data file's name relative to <root>/data: "ab/" + 32 hex. */
#define COS_FILE_MAX 40
#define COS_ID_LEN 32 /* hex characters of object, upload and file ids */

/* Writes reach the disk in pieces of at least this much. */
#define COS_IO_CHUNK (1u << 20)
/* Plaintext buffers of COS_IO_CHUNK a writer fills and its helper absorbs (at least 2). */
#define COS_WRITER_BUFS 2u

/* SSE-KP segment format (cos_sse.c). */
#define COS_SSE_SEG 65536u /* plaintext bytes per segment (the last may be shorter) */
#define COS_SSE_TAG 16u
#define COS_SSE_HDR 32u /* magic, salt, reserved */
#define COS_SSE_SALT 16u
#define COS_DEK_LEN 32u

/* The engine's own state, in c->sweeper from cos_fs_open to cos_fs_close. */
#define COS_PIN_BUCKETS 256u
struct cos_pin;

struct cos_engine {
	int64_t start_ms; /* the service's start: older unnamed files are a crash's leftovers */
	bool tmpfile;	  /* O_TMPFILE works under <root>/tmp */
	int tmp_fd;	  /* <root>/tmp */
	int data_fd;	  /* <root>/data */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running;
	bool stop;
	/*
	 * Data files that open readers will still open (beyond the fds they hold):
	 * an overwrite or delete that drops one marks it doomed instead of
	 * unlinking it, and the last reader to let go unlinks it (pin_lock).
	 */
	pthread_mutex_t pin_lock;
	struct cos_pin *pins[COS_PIN_BUCKETS];
	unsigned reader_eager_fds; /* extents a reader opens at once (64; tests lower it) */
};

static inline struct cos_engine *cos_engine(const struct cos *c)
{
	return c->sweeper;
}

/* ---- rows (cos_store.c) ---------------------------------------------------------------------- */

/* One data file of an object: @size plaintext bytes; @role 0 (single PUT) or the part number. */
struct cos_extent {
	char file[COS_FILE_MAX];
	uint64_t size;
	unsigned role;
};

/* An object as stored. */
struct cos_row {
	struct cos_object o;
	char sse_id[COS_ID_LEN + 1]; /* bound into the DEK's AAD: the object's or upload's id */
	char *wdek;		     /* the wrapped DEK (KMS ciphertext), NULL when in clear */
	char key_version[40];
	struct cos_extent *ext;
	size_t n_ext;
};
void cos_row_done(struct cos_row *r);

/* An upload as stored: the public part and what the object will take from it. */
struct cos_upload_row {
	struct cos_upload u;
	char content_type[256];
	char *meta; /* JSON text or NULL */
	char *wdek; /* NULL when the bucket is in clear */
	char key_version[40];
};
void cos_upload_row_done(struct cos_upload_row *u);

/* Data file names a job collected: unlinked after the commit. */
struct cos_files {
	char (*v)[COS_FILE_MAX];
	size_t n, cap;
};
int cos_files_add(struct cos_files *f, const char *file);
void cos_files_done(struct cos_files *f);

int cos_store_bucket_insert(sqlite3 *conn, const struct cos_bucket *b, struct sealvm_err *err);
int cos_store_bucket_get(sqlite3 *conn, const char *name, struct cos_bucket *ret,
			 struct sealvm_err *err);
int cos_store_bucket_list(sqlite3 *conn, const char *instance_guid, struct cos_bucket **ret,
			  size_t *ret_n, struct sealvm_err *err);
/* 1 when the bucket holds an object, 0 when not. */
int cos_store_bucket_has_objects(sqlite3 *conn, const char *name, struct sealvm_err *err);
int cos_store_bucket_delete(sqlite3 *conn, const char *name, struct sealvm_err *err);

/* -ENOENT NoSuchKey. @with_meta: parse the metadata JSON; extents are always loaded. */
int cos_store_object_get(sqlite3 *conn, const char *bucket, const char *key, bool with_meta,
			 struct cos_row *ret, struct sealvm_err *err);
/* Inserts @row (replacing the key's older version, whose files join @old). */
int cos_store_object_put(sqlite3 *conn, const char *bucket, const struct cos_row *row,
			 struct cos_files *old, struct sealvm_err *err);
/* Deletes the key's row (files join @old); 0 also when there was none. */
int cos_store_object_delete(sqlite3 *conn, const char *bucket, const char *key,
			    struct cos_files *old, struct sealvm_err *err);
/* Updates a row's wrapped DEK after a rotation (only if it still holds @old_wdek). */
int cos_store_object_rewrap(sqlite3 *conn, const char *bucket, const char *key,
			    const char *old_wdek, const char *wdek, const char *version,
			    struct sealvm_err *err);
/* 1 when a row (object extent or part) names @file. */
int cos_store_file_referenced(sqlite3 *conn, const char *file, struct sealvm_err *err);
/* Keeps in @f only the files no row names any more (inside the job that removed them). */
int cos_store_files_unreferenced(sqlite3 *conn, struct cos_files *f, struct sealvm_err *err);

int cos_store_list(sqlite3 *conn, const char *bucket, const struct cos_list_query *q,
		   struct cos_list_result *ret, struct sealvm_err *err);

int cos_store_upload_insert(sqlite3 *conn, const struct cos_upload_row *u, struct sealvm_err *err);
/* -ENOENT NoSuchUpload unless @upload_id is an upload of @key in @bucket (NULLs: any). */
int cos_store_upload_get(sqlite3 *conn, const char *bucket, const char *key, const char *upload_id,
			 struct cos_upload_row *ret, struct sealvm_err *err);
/* Deletes the upload and its parts (their files join @old). */
int cos_store_upload_delete(sqlite3 *conn, const char *upload_id, struct cos_files *old,
			    struct sealvm_err *err);
int cos_store_upload_rewrap(sqlite3 *conn, const char *upload_id, const char *old_wdek,
			    const char *wdek, const char *version, struct sealvm_err *err);
int cos_store_upload_list(sqlite3 *conn, const char *bucket, const char *prefix, unsigned max,
			  struct cos_upload **ret, size_t *ret_n, bool *ret_truncated,
			  struct sealvm_err *err);
/* Upload ids (at most @max) initiated before @before_ms, with their buckets. */
int cos_store_upload_expired(sqlite3 *conn, int64_t before_ms, unsigned max,
			     struct cos_upload **ret, size_t *ret_n, struct sealvm_err *err);

/* A part with its file. */
struct cos_part_row {
	struct cos_part p;
	char file[COS_FILE_MAX];
};
/* Inserts or replaces part @r of @upload_id (the replaced file joins @old). */
int cos_store_part_put(sqlite3 *conn, const char *upload_id, const struct cos_part_row *r,
		       struct cos_files *old, struct sealvm_err *err);
/* -ENOENT when the part is absent. */
int cos_store_part_get(sqlite3 *conn, const char *upload_id, unsigned number,
		       struct cos_part_row *ret, struct sealvm_err *err);
int cos_store_parts(sqlite3 *conn, const char *upload_id, unsigned marker, unsigned max,
		    struct cos_part **ret, size_t *ret_n, bool *ret_truncated,
		    struct sealvm_err *err);

/* Appends @rec (may be NULL: nothing) in a job. */
int cos_store_audit(struct cos *c, sqlite3 *conn, const struct audit_record *rec,
		    struct sealvm_err *err);
/* audit_record_new for @ev (NULL: *ret NULL), -EIO AUDIT_UNAVAILABLE on failure. */
int cos_record_new(const struct audit_event *ev, struct audit_record **ret, struct sealvm_err *err);

/* ---- files (cos_fs.c) ------------------------------------------------------------------------ */

/* Milliseconds since the epoch. */
int64_t cos_now_ms(void);
/* COS_ID_LEN random hex characters and a NUL. */
void cos_random_id(char ret[COS_ID_LEN + 1]);

/* A new temporary file in <root>/tmp (O_TMPFILE when possible). */
struct cos_tmp {
	int fd;
	char name[COS_ID_LEN + 8]; /* "" for O_TMPFILE */
};
int cos_tmp_open(struct cos *c, struct cos_tmp *ret, struct sealvm_err *err);
/* Gives the file its data name (a new random one, in ret_file), fsyncing the directory. */
int cos_tmp_name(struct cos *c, struct cos_tmp *t, char ret_file[COS_FILE_MAX],
		 struct sealvm_err *err);
/* Closes and removes a temporary file. */
void cos_tmp_drop(struct cos *c, struct cos_tmp *t);
/* Opens a data file read-only. */
int cos_data_open(struct cos *c, const char *file, int *ret_fd);
/*
 * Removes data files (failures are logged: the orphan sweep retries). A file
 * an open reader has pinned is only marked: its last unpin removes it.
 */
void cos_data_unlink(struct cos *c, const struct cos_files *f);
struct cos_extent;
/*
 * Pins the files of @ext[0, @n) for a reader that will open them later, then
 * checks they still exist: -EAGAIN (nothing pinned) when one went meanwhile
 * (the object was replaced between the row's read and the pin: read it again).
 */
int cos_data_pin(struct cos *c, const struct cos_extent *ext, size_t n, struct sealvm_err *err);
void cos_data_unpin(struct cos *c, const struct cos_extent *ext, size_t n);
/* Removes the data files no row names whose mtime is before @before_ms. */
int cos_orphan_sweep(struct cos *c, int64_t before_ms, unsigned *ret_n, struct sealvm_err *err);

/* ---- SSE-KP (cos_sse.c) ---------------------------------------------------------------------- */

/* A fresh DEK for object/upload @sse_id of @b, wrapped by the bucket's root key. */
int cos_sse_dek_new(struct cos *c, const struct cos_bucket *b, const char *sse_id,
		    struct sealvm_secret **ret_dek, char **ret_wdek, char ret_version[40],
		    struct sealvm_err *err);
/*
 * Unwraps @wdek. *ret_rewrapped (may be NULL) gets the DEK under the newest
 * key version when the key was rotated (the caller stores it).
 */
int cos_sse_dek_open(struct cos *c, const struct cos_bucket *b, const char *sse_id,
		     const char *wdek, struct sealvm_secret **ret_dek, char **ret_rewrapped,
		     char ret_version[40], struct sealvm_err *err);
/* Maps a KMS failure to the object store's reasons. @creating: a bucket create's probe. */
int cos_sse_kms_error(int r, const struct sealvm_err *kerr, const struct cos_bucket *b,
		      bool creating, struct sealvm_err *err);

/* One data file's cipher state (per-file subkey). */
struct cos_sse_file;
/* @salt: COS_SSE_SALT bytes (from the header); @plain_size: the file's plaintext length. */
int cos_sse_file_new(const struct sealvm_secret *dek, const unsigned char *salt, unsigned role,
		     uint64_t plain_size, bool encrypt, struct cos_sse_file **ret,
		     struct sealvm_err *err);
void cos_sse_file_free(struct cos_sse_file *f);
/* Writes a fresh header (random salt) into @hdr and the salt into @ret_salt; -EIO. */
int cos_sse_header_new(unsigned char hdr[COS_SSE_HDR], unsigned char ret_salt[COS_SSE_SALT]);
/* Checks a header and gives its salt; -EBADMSG when it is not one. */
int cos_sse_header_parse(const unsigned char hdr[COS_SSE_HDR],
			 unsigned char ret_salt[COS_SSE_SALT]);
/* Segments of a file of @plain_size bytes (at least 1), and the file's size on disk. */
uint64_t cos_sse_segments(uint64_t plain_size);
uint64_t cos_sse_disk_size(uint64_t plain_size);
/* Encrypts segment @idx (@len bytes) into @out (@len + COS_SSE_TAG bytes). */
int cos_sse_seal(struct cos_sse_file *f, uint64_t idx, const void *in, size_t len, void *out,
		 struct sealvm_err *err);
/* Decrypts segment @idx (@len bytes with the tag) into @out: -EBADMSG when it does not open. */
int cos_sse_open(struct cos_sse_file *f, uint64_t idx, const void *in, size_t len, void *out,
		 struct sealvm_err *err);

/* ---- upload sweep (cos_upload.c) ---------------------------------------------------------------
 */

/* The sweeper thread's work: expired uploads, then orphans. */
void cos_sweep_once(struct cos *c);

#endif
