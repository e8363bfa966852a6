// SPDX-License-Identifier: Apache-2.0
/*
 * cos_upload.c — multipart uploads: create, list, complete, abort, and the
 * sweep of uploads left incomplete too long.
 *
 * A part is a data file of its own (written by the writer of cos_object.c).
 * Complete is one transaction: it checks the client's list against the
 * stored parts, creates the object row whose extents are the named parts'
 * files (no byte is copied), and deletes the upload and its part rows; the
 * files of parts the list did not name are removed after the commit. For
 * SSE the upload's DEK (made at create) becomes the object's, and each part
 * file binds its part number, so parts cannot be swapped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "sealvm/b64.h"
#include "sealvm/iam.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "cos_engine.h"

/* ---- create, get, list -------------------------------------------------------------------------
 */

struct upload_job {
	struct cos *c;
	const struct cos_bucket *b;
	struct cos_upload_row u;
	struct audit_record *rec;
};

static int upload_create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct upload_job *j = userdata;
	struct cos_bucket b;
	int r = cos_store_bucket_get(conn, j->b->name, &b, err);
	if (r >= 0)
		r = cos_store_upload_insert(conn, &j->u, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
	return r;
}

int cos_upload_create(struct cos *c, const struct sealvm_principal *p, const struct cos_bucket *b,
		      const char *key, const char *content_type, json_t *meta,
		      enum s3_checksum_alg checksum_algo, const struct audit_event *ev,
		      struct cos_upload *ret, struct sealvm_err *err)
{
	struct upload_job j = {.c = c, .b = b};
	size_t n = key ? strlen(key) : 0;
	if (n == 0 || n > COS_KEY_MAX)
		return sealvm_err_set(err, -EINVAL, n ? "KeyTooLongError" : "InvalidArgument",
				      "an object key of 1 to %d bytes is required", COS_KEY_MAX);
	if (checksum_algo == S3_CHECKSUM_MD5 || (unsigned)checksum_algo > S3_CHECKSUM_MD5)
		return sealvm_err_set(err, -EINVAL, "InvalidRequest",
				      "x-amz-checksum-algorithm must be CRC32, CRC32C, SHA1 or "
				      "SHA256");
	if (meta) {
		const char *k;
		json_t *v;
		size_t total = 0;
		json_object_foreach(meta, k, v) total +=
			strlen(k) + (json_is_string(v) ? json_string_length(v) : COS_META_MAX);
		if (total > COS_META_MAX)
			return sealvm_err_set(err, -EINVAL, "MetadataTooLarge",
					      "the user metadata has %zu bytes; at most %d are "
					      "allowed",
					      total, COS_META_MAX);
	}
	struct cos_upload *u = &j.u.u;
	cos_random_id(u->upload_id);
	snprintf(u->bucket, sizeof(u->bucket), "%s", b->name);
	snprintf(u->key, sizeof(u->key), "%s", key);
	u->initiated_ms = cos_now_ms();
	snprintf(u->initiator_id, sizeof(u->initiator_id), "%s", p ? p->iam_id : "");
	u->checksum_algo = checksum_algo;
	snprintf(j.u.content_type, sizeof(j.u.content_type), "%s",
		 content_type && content_type[0] ? content_type : "binary/octet-stream");
	if (meta && json_object_size(meta) &&
	    !(j.u.meta = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS)))
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	int r = 0;
	if (b->sse) {
		struct sealvm_secret *dek = NULL;
		r = cos_sse_dek_new(c, b, u->upload_id, &dek, &j.u.wdek, j.u.key_version, err);
		sealvm_secret_free(dek); /* each part unwraps it again */
	}
	if (r >= 0)
		r = cos_record_new(ev, &j.rec, err);
	if (r >= 0)
		r = db_write(c->deps.db, upload_create_run, &j, err);
	audit_record_free(j.rec);
	if (r >= 0 && ret)
		*ret = j.u.u;
	cos_upload_row_done(&j.u);
	return r < 0 ? r : 0;
}

int cos_upload_get(struct cos *c, const struct cos_bucket *b, const char *key,
		   const char *upload_id, struct cos_upload *ret, struct sealvm_err *err)
{
	struct cos_upload_row u;
	sqlite3 *conn = db_read_begin(c->deps.db);
	int r = cos_store_upload_get(conn, b->name, key, upload_id ? upload_id : "", &u, err);
	db_read_end(c->deps.db, conn);
	if (r < 0)
		return r;
	*ret = u.u;
	cos_upload_row_done(&u);
	return 0;
}

int cos_upload_parts(struct cos *c, const char *upload_id, unsigned marker, unsigned max,
		     struct cos_part **ret, size_t *ret_n, bool *ret_truncated,
		     struct sealvm_err *err)
{
	if (max < 1 || max > COS_LIST_MAX)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "max-parts must be between 1 and %d", COS_LIST_MAX);
	sqlite3 *conn = db_read_begin(c->deps.db);
	int r = cos_store_parts(conn, upload_id, marker, max, ret, ret_n, ret_truncated, err);
	db_read_end(c->deps.db, conn);
	return r;
}

int cos_upload_list(struct cos *c, const struct cos_bucket *b, const char *prefix, unsigned max,
		    struct cos_upload **ret, size_t *ret_n, bool *ret_truncated,
		    struct sealvm_err *err)
{
	if (max > COS_LIST_MAX)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "max-uploads must be between 0 and %d", COS_LIST_MAX);
	sqlite3 *conn = db_read_begin(c->deps.db);
	int r = cos_store_upload_list(conn, b->name, prefix, max, ret, ret_n, ret_truncated, err);
	db_read_end(c->deps.db, conn);
	return r;
}

/* ---- complete ----------------------------------------------------------------------------------
 */

struct complete_job {
	struct cos *c;
	const struct cos_bucket *b;
	const char *key;
	const char *upload_id;
	const struct s3_part *parts;
	size_t n;
	struct audit_record *rec;
	struct cos_row row;
	struct cos_files old;
};

static const char *client_checksum(const struct s3_part *p, enum s3_checksum_alg algo)
{
	switch (algo) {
	case S3_CHECKSUM_CRC32:
		return p->checksum_crc32;
	case S3_CHECKSUM_CRC32C:
		return p->checksum_crc32c;
	case S3_CHECKSUM_SHA1:
		return p->checksum_sha1;
	case S3_CHECKSUM_SHA256:
		return p->checksum_sha256;
	default:
		return "";
	}
}

static int hex_decode(const char *s, unsigned char out[16])
{
	if (strlen(s) != 32)
		return -EINVAL;
	for (int i = 0; i < 16; i++) {
		unsigned v = 0;
		for (int k = 0; k < 2; k++) {
			char ch = s[2 * i + k];
			v <<= 4;
			if (ch >= '0' && ch <= '9')
				v |= (unsigned)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				v |= (unsigned)(ch - 'a' + 10);
			else if (ch >= 'A' && ch <= 'F')
				v |= (unsigned)(ch - 'A' + 10);
			else
				return -EINVAL;
		}
		out[i] = (unsigned char)v;
	}
	return 0;
}

static int complete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct complete_job *j = userdata;
	struct cos_upload_row u;
	struct s3_checksum composite = {0};
	EVP_MD_CTX *md5 = NULL;
	int r = cos_store_upload_get(conn, j->b->name, j->key, j->upload_id, &u, err);
	if (r < 0)
		return r;
	enum s3_checksum_alg algo = u.u.checksum_algo;

	cos_row_done(&j->row);
	memset(&j->row, 0, sizeof(j->row));
	j->row.ext = calloc(j->n, sizeof(*j->row.ext));
	md5 = EVP_MD_CTX_new();
	if (!j->row.ext || !md5 || EVP_DigestInit_ex2(md5, EVP_md5(), NULL) != 1 ||
	    (algo != S3_CHECKSUM_NONE && s3_checksum_init(&composite, algo) < 0)) {
		r = sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
		goto out;
	}
	uint64_t size = 0;
	for (size_t i = 0; i < j->n; i++) {
		const struct s3_part *cp = &j->parts[i];
		struct cos_part_row pr;
		unsigned char bin[16];
		if (i > 0 && cp->number <= j->parts[i - 1].number) {
			r = sealvm_err_set(err, -EINVAL, "InvalidPartOrder",
					   "the list of parts was not in ascending order: part %u "
					   "follows part %u",
					   cp->number, j->parts[i - 1].number);
			goto out;
		}
		r = cos_store_part_get(conn, j->upload_id, cp->number, &pr, err);
		if (r == -ENOENT || (r >= 0 && strcasecmp(pr.p.etag, cp->etag) != 0)) {
			r = sealvm_err_set(
				err, -EINVAL, "InvalidPart",
				"part %u was not uploaded, or its ETag does not match the "
				"one given",
				cp->number);
			goto out;
		}
		if (r < 0)
			goto out;
		const char *given = client_checksum(cp, pr.p.checksum.algo);
		if ((given[0] && strcmp(given, pr.p.checksum.value) != 0) ||
		    (algo != S3_CHECKSUM_NONE && pr.p.checksum.algo != algo)) {
			r = sealvm_err_set(
				err, -EINVAL, "InvalidPart",
				"the checksum of part %u does not match the uploaded one",
				cp->number);
			goto out;
		}
		if (i + 1 < j->n && pr.p.size < COS_PART_MIN) {
			r = sealvm_err_set(err, -EINVAL, "EntityTooSmall",
					   "part %u has %llu bytes: every part but the last must "
					   "have at least 5 MiB",
					   cp->number, (unsigned long long)pr.p.size);
			goto out;
		}
		if (hex_decode(pr.p.etag, bin) < 0) {
			r = sealvm_err_set(err, -EBADMSG, "InternalError",
					   "the stored ETag of part %u is damaged", cp->number);
			goto out;
		}
		EVP_DigestUpdate(md5, bin, sizeof(bin));
		if (algo != S3_CHECKSUM_NONE) {
			unsigned char raw[S3_CHECKSUM_MAX + 4];
			const char *v = pr.p.checksum.value;
			long n = sealvm_b64_decode(v, strlen(v), raw, false);
			if (n != (long)s3_checksum_len(algo)) {
				r = sealvm_err_set(err, -EBADMSG, "InternalError",
						   "the stored checksum of part %u is damaged",
						   cp->number);
				goto out;
			}
			s3_checksum_update(&composite, raw, (size_t)n);
		}
		struct cos_extent *e = &j->row.ext[i];
		snprintf(e->file, sizeof(e->file), "%s", pr.file);
		e->size = pr.p.size;
		e->role = pr.p.number;
		size += pr.p.size;
	}
	j->row.n_ext = j->n;

	struct cos_object *o = &j->row.o;
	unsigned char digest[S3_CHECKSUM_MAX];
	unsigned int dn = 0;
	if (EVP_DigestFinal_ex(md5, digest, &dn) != 1) {
		r = sealvm_err_set(err, -EIO, "InternalError", "MD5 failed");
		goto out;
	}
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < 16; i++) {
		o->etag[2 * i] = digits[digest[i] >> 4];
		o->etag[2 * i + 1] = digits[digest[i] & 15];
	}
	snprintf(o->etag + 32, sizeof(o->etag) - 32, "-%zu", j->n);
	if (algo != S3_CHECKSUM_NONE) {
		int n = s3_checksum_final(&composite, digest);
		if (n < 0) {
			r = sealvm_err_set(err, -EIO, "InternalError", "checksum failed");
			goto out;
		}
		char b64[64];
		sealvm_b64_encode(digest, (size_t)n, b64, false);
		o->checksum.algo = algo;
		snprintf(o->checksum.value, sizeof(o->checksum.value), "%s-%zu", b64, j->n);
	}
	snprintf(o->key, sizeof(o->key), "%s", j->key);
	o->size = size;
	o->mtime_ms = cos_now_ms();
	snprintf(o->content_type, sizeof(o->content_type), "%s", u.content_type);
	if (u.meta && !(o->meta = json_loads(u.meta, 0, NULL))) {
		r = sealvm_err_set(err, -EBADMSG, "InternalError",
				   "stored metadata does not parse");
		goto out;
	}
	o->parts = (unsigned)j->n;
	o->sse = u.wdek != NULL;
	snprintf(j->row.sse_id, sizeof(j->row.sse_id), "%s", j->upload_id);
	j->row.wdek = TAKE_PTR(u.wdek);
	snprintf(j->row.key_version, sizeof(j->row.key_version), "%s", u.key_version);

	/* The parts' files move to the object; the other parts' files go. */
	r = cos_store_upload_delete(conn, j->upload_id, &j->old, err);
	if (r >= 0)
		r = cos_store_object_put(conn, j->b->name, &j->row, &j->old, err);
	if (r >= 0)
		r = cos_store_files_unreferenced(conn, &j->old, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
out:
	s3_checksum_done(&composite);
	EVP_MD_CTX_free(md5);
	cos_upload_row_done(&u);
	return r;
}

int cos_upload_complete(struct cos *c, const struct cos_bucket *b, const char *key,
			const char *upload_id, const struct s3_part *parts, size_t n,
			const struct audit_event *ev, struct cos_object *ret,
			struct sealvm_err *err)
{
	struct complete_job j = {
		.c = c, .b = b, .key = key, .upload_id = upload_id, .parts = parts, .n = n};
	if (n == 0 || n > COS_PARTS_MAX)
		return sealvm_err_set(err, -EINVAL, "MalformedXML",
				      "the request must name 1 to %d parts", COS_PARTS_MAX);
	int r = cos_record_new(ev, &j.rec, err);
	if (r >= 0)
		r = db_write(c->deps.db, complete_run, &j, err);
	audit_record_free(j.rec);
	if (r >= 0) {
		cos_data_unlink(c, &j.old);
		if (ret) {
			*ret = j.row.o;
			j.row.o.meta = NULL;
		}
	}
	cos_files_done(&j.old);
	cos_row_done(&j.row);
	return r < 0 ? r : 0;
}

/* ---- abort and sweep ---------------------------------------------------------------------------
 */

struct abort_job {
	struct cos *c;
	const char *bucket, *key, *upload_id;
	struct audit_record *rec;
	struct cos_files old;
};

static int abort_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct abort_job *j = userdata;
	struct cos_upload_row u;
	int r = cos_store_upload_get(conn, j->bucket, j->key, j->upload_id, &u, err);
	if (r < 0)
		return r;
	cos_upload_row_done(&u);
	r = cos_store_upload_delete(conn, j->upload_id, &j->old, err);
	if (r >= 0)
		r = cos_store_files_unreferenced(conn, &j->old, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
	return r;
}

static int upload_abort(struct cos *c, const char *bucket, const char *key, const char *upload_id,
			const struct audit_event *ev, struct sealvm_err *err)
{
	struct abort_job j = {.c = c, .bucket = bucket, .key = key, .upload_id = upload_id};
	int r = cos_record_new(ev, &j.rec, err);
	if (r >= 0)
		r = db_write(c->deps.db, abort_run, &j, err);
	audit_record_free(j.rec);
	if (r >= 0)
		cos_data_unlink(c, &j.old);
	cos_files_done(&j.old);
	return r < 0 ? r : 0;
}

int cos_upload_abort(struct cos *c, const struct cos_bucket *b, const char *key,
		     const char *upload_id, const struct audit_event *ev, struct sealvm_err *err)
{
	return upload_abort(c, b->name, key ? key : "", upload_id ? upload_id : "", ev, err);
}

int cos_sweep_uploads(struct cos *c, int64_t now_ms, unsigned *ret_n, struct sealvm_err *err)
{
	unsigned done = 0;
	int64_t before = now_ms - c->cfg.upload_max_age_s * 1000;
	for (;;) {
		struct cos_upload *v = NULL;
		size_t n = 0;
		sqlite3 *conn = db_read_begin(c->deps.db);
		int r = cos_store_upload_expired(conn, before, 100, &v, &n, err);
		db_read_end(c->deps.db, conn);
		if (r < 0)
			return r;
		unsigned round = 0;
		for (size_t i = 0; i < n; i++) {
			struct cos_bucket b;
			struct sealvm_principal sp;
			struct sealvm_err e = SEALVM_ERR_INIT;
			if (cos_bucket_get(c, v[i].bucket, &b, &e) < 0)
				continue;
			iam_service_principal("cloud-object-storage", b.account_id, &sp);
			json_t *rd = json_pack("{s:s, s:s, s:s}", "bucket", b.name, "key", v[i].key,
					       "uploadId", v[i].upload_id);
			struct audit_event ev = {
				.action = "cloud-object-storage.multipart.abort",
				.outcome = AUDIT_SUCCESS,
				.status = 204,
				.reason_type = "Expired",
				.initiator = &sp,
				.host_address = "local",
				.user_agent = "sealvm cos upload sweeper",
				.target_id = b.crn,
				.target_name = b.name,
				.target_type = "cloud-object-storage/bucket",
				.account_id = b.account_id,
				.request_data = rd,
			};
			r = upload_abort(c, b.name, v[i].key, v[i].upload_id, &ev, &e);
			json_decref(rd);
			if (r >= 0) {
				round++;
				done++;
			} else if (r != -ENOENT) {
				log_warning("cos: cannot abort expired upload %s: %s",
					    v[i].upload_id, e.message);
			}
		}
		free(v);
		if (n < 100 || round == 0)
			break;
	}
	*ret_n = done;
	return 0;
}
