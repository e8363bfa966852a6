// SPDX-License-Identifier: Apache-2.0
/*
 * cos_object.c — buckets and objects: create/get/list/delete of buckets,
 * the streaming writer (one PUT body or one part), the reader (sendfile for
 * single files in clear, pread across extents otherwise, decrypting only the
 * segments a range covers), copy and ListObjectsV2.
 *
 * Every change commits as one database job holding the row(s) and the
 * audit event; data files are named and fsynced before it and the files it
 * replaced are removed after it, so a crash at any point leaves either the
 * old object or the new one, and at worst an orphan file for the next start.
 * The writer never holds a whole body: the body fills plaintext buffers of
 * COS_IO_CHUNK bytes, and a helper thread absorbs each full one (MD5 of the
 * plaintext, sealing under SSE, the write) while the request thread receives
 * the next, so that the serial MD5 and the copy into the page cache run beside
 * the network and chunk decoding instead of after them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "sealvm/file.h"
#include "sealvm/iam.h"
#include "sealvm/kms.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "cos_engine.h"

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* ---- checks ------------------------------------------------------------------------------------
 */

int cos_bucket_name_check(const char *name, struct sealvm_err *err)
{
	size_t n = name ? strlen(name) : 0;
	const char *why = NULL;
	if (n < 3 || n > COS_BUCKET_NAME_MAX)
		why = "it must have 3 to 63 characters";
	else if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n)
		why = "it may contain only lower-case letters, digits, '.' and '-'";
	else if (name[0] == '.' || name[0] == '-' || name[n - 1] == '.' || name[n - 1] == '-')
		why = "it must start and end with a letter or digit";
	else if (strstr(name, ".."))
		why = "it may not contain \"..\"";
	else if (strncmp(name, "cosv1-", 6) == 0 || strncmp(name, "account-", 8) == 0 ||
		 strncmp(name, "xn--", 4) == 0)
		why = "the prefixes \"cosv1-\", \"account-\" and \"xn--\" are reserved";
	else {
		struct in_addr a;
		if (inet_pton(AF_INET, name, &a) == 1)
			why = "it may not be an IP address";
	}
	if (why)
		return sealvm_err_set(err, -EINVAL, "InvalidBucketName",
				      "the specified bucket name is not valid: %s", why);
	return 0;
}

int cos_location_check(const struct cos *c, const char *location, struct sealvm_err *err)
{
	static const char *const classes[] = {"standard", "vault", "cold", "smart"};
	const char *region = c->deps.region;
	size_t rn = strlen(region);
	if (location && strcmp(location, region) == 0)
		return 0;
	if (location && strncmp(location, region, rn) == 0 && location[rn] == '-')
		for (size_t i = 0; i < ELEMENTSOF(classes); i++)
			if (strcmp(location + rn + 1, classes[i]) == 0)
				return 0;
	return sealvm_err_set(err, -EINVAL, "InvalidLocationConstraint",
			      "the specified location constraint is not valid here: use "
			      "%s-standard, %s-vault, %s-cold, %s-smart or %s",
			      region, region, region, region, region);
}

static int key_check(const char *key, struct sealvm_err *err)
{
	size_t n = key ? strlen(key) : 0;
	if (n == 0)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument", "an object key is required");
	if (n > COS_KEY_MAX)
		return sealvm_err_set(err, -EINVAL, "KeyTooLongError",
				      "the object key has %zu bytes; at most %d are allowed", n,
				      COS_KEY_MAX);
	return 0;
}

static int meta_check(json_t *meta, struct sealvm_err *err)
{
	const char *k;
	json_t *v;
	size_t total = 0;
	if (!meta)
		return 0;
	if (!json_is_object(meta))
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "metadata must be an object");
	json_object_foreach(meta, k, v)
	{
		if (!json_is_string(v))
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "metadata values must be strings");
		total += strlen(k) + json_string_length(v);
	}
	if (total > COS_META_MAX)
		return sealvm_err_set(err, -EINVAL, "MetadataTooLarge",
				      "the user metadata has %zu bytes; at most %d are allowed",
				      total, COS_META_MAX);
	return 0;
}

/* ---- buckets -----------------------------------------------------------------------------------
 */

struct bucket_job {
	struct cos *c;
	struct cos_bucket *b;
	struct audit_record *rec;
	struct cos_files files;
};

static int bucket_create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct bucket_job *j = userdata;
	int r = cos_store_bucket_insert(conn, j->b, err);
	if (r == -EEXIST) {
		struct cos_bucket other;
		if (cos_store_bucket_get(conn, j->b->name, &other, NULL) == 0 &&
		    strcmp(other.account_id, j->b->account_id) == 0)
			return sealvm_err_set(err, -EEXIST, "BucketAlreadyOwnedByYou",
					      "you already own the bucket %s", j->b->name);
		return sealvm_err_set(err, -EEXIST, "BucketAlreadyExists",
				      "the bucket name %s is taken: bucket names are global; "
				      "choose another",
				      j->b->name);
	}
	if (r < 0)
		return r;
	return cos_store_audit(j->c, conn, j->rec, err);
}

/* The scope (a/<account>) and location fields of a key CRN. */
static bool crn_field(const char *crn, int index, char *buf, size_t size)
{
	const char *p = crn;
	for (int i = 0; i < index && p; i++) {
		p = strchr(p, ':');
		if (p)
			p++;
	}
	if (!p)
		return false;
	size_t n = strcspn(p, ":");
	if (n >= size)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

static int sse_prepare(struct cos *c, struct cos_bucket *b, struct sealvm_err *err)
{
	struct sealvm_err kerr = SEALVM_ERR_INIT;
	char scope[64], location[64], want[64];
	if (!c->deps.kms)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "server-side encryption with a root key is not available on "
				      "this server");
	if (kms_key_crn_parse(b->sse_key_crn, b->sse_instance, b->sse_key_id, &kerr) < 0)
		return sealvm_err_set(
			err, -EINVAL, "InvalidArgument",
			"ibm-sse-kp-customer-root-key-crn is not the CRN of a root key "
			"(crn:v1:…:kms:REGION:a/ACCOUNT:INSTANCE:key:KEY)");
	snprintf(want, sizeof(want), "a/%s", b->account_id);
	if (!crn_field(b->sse_key_crn, 6, scope, sizeof(scope)) || strcmp(scope, want) != 0)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "the root key %s belongs to another account: use a key of "
				      "account %s",
				      b->sse_key_crn, b->account_id);
	if (!crn_field(b->sse_key_crn, 5, location, sizeof(location)) ||
	    strcmp(location, c->deps.region) != 0)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "the root key %s is in location %s: a bucket in %s needs a "
				      "key of a KMS instance in the same region",
				      b->sse_key_crn, location, c->deps.region);
	/* The probe proves the customer's authorization (and that the key is an Active root key).
	 */
	struct sealvm_principal sp;
	struct kms_wrap_result w = {0};
	const char *aad[3] = {"cloud-object-storage", b->crn, "probe"};
	iam_service_principal("cloud-object-storage", b->account_id, &sp);
	int r = kms_wrap(c->deps.kms, &sp, b->sse_instance, b->sse_key_id, NULL, aad, 3, &w, &kerr);
	kms_wrap_result_done(&w);
	if (r < 0)
		return cos_sse_kms_error(r, &kerr, b, true, err);
	char desc[128];
	snprintf(desc, sizeof(desc), "cloud-object-storage bucket %s", b->name);
	sealvm_err_clear(&kerr);
	r = kms_registration_create(c->deps.kms, &sp, b->sse_instance, b->sse_key_id, b->crn, desc,
				    false, &kerr);
	if (r < 0)
		return cos_sse_kms_error(r, &kerr, b, true, err);
	return 0;
}

static void sse_unregister(struct cos *c, const struct cos_bucket *b)
{
	struct sealvm_principal sp;
	struct sealvm_err kerr = SEALVM_ERR_INIT;
	if (!b->sse || !c->deps.kms)
		return;
	iam_service_principal("cloud-object-storage", b->account_id, &sp);
	int r = kms_registration_delete(c->deps.kms, &sp, b->sse_instance, b->sse_key_id, b->crn,
					&kerr);
	if (r < 0 && r != -ENOENT)
		log_warning("cos: cannot remove the key registration of bucket %s: %s", b->name,
			    kerr.message);
}

int cos_bucket_create(struct cos *c, const struct sealvm_principal *p, struct cos_bucket *b,
		      const struct audit_event *ev, struct sealvm_err *err)
{
	struct bucket_job j = {.c = c, .b = b};
	int r = cos_bucket_name_check(b->name, err);
	if (r >= 0)
		r = cos_location_check(c, b->location, err);
	if (r < 0)
		return r;
	if (!b->account_id[0] || !b->instance_guid[0])
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "a bucket needs an account and a service instance");
	snprintf(b->crn, sizeof(b->crn),
		 "crn:v1:sealvm:local:cloud-object-storage:global:a/%s:%s:bucket:%s", b->account_id,
		 b->instance_guid, b->name);
	b->created_ms = cos_now_ms();

	/* Refuse a taken name before asking the KMS anything. */
	struct cos_bucket other;
	sqlite3 *conn = db_read_begin(c->deps.db);
	r = cos_store_bucket_get(conn, b->name, &other, NULL);
	db_read_end(c->deps.db, conn);
	if (r == 0) {
		if (strcmp(other.account_id, b->account_id) == 0)
			return sealvm_err_set(err, -EEXIST, "BucketAlreadyOwnedByYou",
					      "you already own the bucket %s", b->name);
		return sealvm_err_set(err, -EEXIST, "BucketAlreadyExists",
				      "the bucket name %s is taken: bucket names are global; "
				      "choose another",
				      b->name);
	}

	if (b->sse) {
		r = sse_prepare(c, b, err);
		if (r < 0)
			return r;
	} else
		b->sse_key_crn[0] = b->sse_instance[0] = b->sse_key_id[0] = '\0';
	r = cos_record_new(ev, &j.rec, err);
	if (r >= 0)
		r = db_write(c->deps.db, bucket_create_run, &j, err);
	audit_record_free(j.rec);
	if (r < 0 && b->sse)
		sse_unregister(c, b);
	return r < 0 ? r : 0;
}

int cos_bucket_get(struct cos *c, const char *name, struct cos_bucket *ret, struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(c->deps.db);
	int r = cos_store_bucket_get(conn, name, ret, err);
	db_read_end(c->deps.db, conn);
	return r;
}

int cos_bucket_list(struct cos *c, const char *instance_guid, struct cos_bucket **ret,
		    size_t *ret_n, struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(c->deps.db);
	int r = cos_store_bucket_list(conn, instance_guid, ret, ret_n, err);
	db_read_end(c->deps.db, conn);
	return r;
}

static int bucket_delete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct bucket_job *j = userdata;
	struct cos_upload *ups = NULL;
	size_t n = 0;
	int r = cos_store_bucket_get(conn, j->b->name, j->b, err);
	if (r < 0)
		return r;
	r = cos_store_bucket_has_objects(conn, j->b->name, err);
	if (r < 0)
		return r;
	if (r == 1)
		return sealvm_err_set(err, -ENOTEMPTY, "BucketNotEmpty",
				      "the bucket %s is not empty: delete its objects first",
				      j->b->name);
	r = cos_store_upload_list(conn, j->b->name, NULL, COS_PARTS_MAX * 100, &ups, &n, NULL, err);
	for (size_t i = 0; r >= 0 && i < n; i++)
		r = cos_store_upload_delete(conn, ups[i].upload_id, &j->files, err);
	free(ups);
	if (r >= 0)
		r = cos_store_bucket_delete(conn, j->b->name, err);
	if (r >= 0)
		r = cos_store_files_unreferenced(conn, &j->files, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
	return r;
}

int cos_bucket_delete(struct cos *c, const char *name, const struct audit_event *ev,
		      struct sealvm_err *err)
{
	struct cos_bucket b = {0};
	struct bucket_job j = {.c = c, .b = &b};
	snprintf(b.name, sizeof(b.name), "%s", name ? name : "");
	int r = cos_record_new(ev, &j.rec, err);
	if (r >= 0)
		r = db_write(c->deps.db, bucket_delete_run, &j, err);
	audit_record_free(j.rec);
	if (r >= 0) {
		cos_data_unlink(c, &j.files);
		sse_unregister(c, &b);
	}
	cos_files_done(&j.files);
	return r < 0 ? r : 0;
}

/* ---- objects -----------------------------------------------------------------------------------
 */

int cos_object_head(struct cos *c, const struct cos_bucket *b, const char *key,
		    struct cos_object *ret, struct sealvm_err *err)
{
	struct cos_row row;
	sqlite3 *conn = db_read_begin(c->deps.db);
	int r = cos_store_object_get(conn, b->name, key, true, &row, err);
	db_read_end(c->deps.db, conn);
	if (r < 0)
		return r;
	*ret = row.o;
	row.o.meta = NULL;
	cos_row_done(&row);
	return 0;
}

struct object_job {
	struct cos *c;
	const char *bucket;
	const char *key;
	struct audit_record *rec;
	struct cos_files old;
};

static int object_delete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct object_job *j = userdata;
	int r = cos_store_object_delete(conn, j->bucket, j->key, &j->old, err);
	if (r >= 0)
		r = cos_store_files_unreferenced(conn, &j->old, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
	return r;
}

int cos_object_delete(struct cos *c, const struct cos_bucket *b, const char *key,
		      const struct audit_event *ev, struct sealvm_err *err)
{
	struct object_job j = {.c = c, .bucket = b->name, .key = key};
	int r = key_check(key, err);
	if (r >= 0)
		r = cos_record_new(ev, &j.rec, err);
	if (r >= 0)
		r = db_write(c->deps.db, object_delete_run, &j, err);
	audit_record_free(j.rec);
	if (r >= 0)
		cos_data_unlink(c, &j.old);
	cos_files_done(&j.old);
	return r < 0 ? r : 0;
}

int cos_object_list(struct cos *c, const struct cos_bucket *b, const struct cos_list_query *q,
		    struct cos_list_result *ret, struct sealvm_err *err)
{
	if (q->max_keys > COS_LIST_MAX)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "max-keys must be between 0 and %d", COS_LIST_MAX);
	sqlite3 *conn = db_read_begin(c->deps.db);
	/* one snapshot for the whole page */
	sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL);
	int r = cos_store_list(conn, b->name, q, ret, err);
	sqlite3_exec(conn, "COMMIT", NULL, NULL, NULL);
	db_read_end(c->deps.db, conn);
	return r;
}

/* ---- the writer --------------------------------------------------------------------------------
 */

struct cos_writer {
	struct cos *c;
	struct cos_bucket b;
	char *key;
	char *content_type;
	json_t *meta;
	struct cos_checksum checksum;
	uint64_t size, got;
	char upload_id[COS_UPLOAD_ID_LEN + 1];
	unsigned part;
	struct cos_tmp tmp;
	EVP_MD_CTX *md5;
	unsigned char md5v[16];
	bool finished;
	/*
	 * The body's plaintext, in a ring of COS_WRITER_BUFS buffers: the request
	 * thread fills pbuf[fill]; [head, head + queued) are full and handed to the
	 * helper, which absorbs them in order. A buffer is handed over only when
	 * more of the body follows, so the last one (and under SSE the final
	 * segment) is always absorbed by finish. lock guards head, queued, stop and
	 * helper_rc; the buffers themselves are owned by whoever the indices say.
	 */
	unsigned char *pbuf[COS_WRITER_BUFS];
	size_t plen[COS_WRITER_BUFS];
	unsigned fill, head, queued;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t helper;
	bool helper_started, stop, abandon;
	int helper_rc;
	struct sealvm_err helper_err;
	/* Under SSE: sealed segments (after the header) waiting to be written. */
	unsigned char *buf;
	size_t buf_len, buf_cap;
	uint64_t written; /* bytes in the file */
	uint64_t wb_next; /* writeback has been started for [0, wb_next) */
	/* SSE */
	char sse_id[COS_ID_LEN + 1];
	char *wdek;
	char key_version[40];
	struct sealvm_secret *dek;
	struct cos_sse_file *sf;
	uint64_t seg_idx, n_seg;
};

/*
 * Stops the helper once it has absorbed what it was handed (or, with
 * @abandon, after the buffer it is on); its first failure, if any.
 */
static int helper_join(struct cos_writer *w, bool abandon, struct sealvm_err *err)
{
	if (!w->helper_started)
		return 0;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	w->abandon = abandon;
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->helper, NULL);
	w->helper_started = false;
	if (w->helper_rc < 0 && err)
		*err = w->helper_err;
	return w->helper_rc;
}

void cos_writer_abort(struct cos_writer *w)
{
	if (!w)
		return;
	/* An abandoned body's error does not matter; the helper must be gone before the buffers. */
	helper_join(w, true, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	for (unsigned i = 0; i < COS_WRITER_BUFS; i++) {
		if (w->pbuf[i] && w->dek) /* customer plaintext of an encrypted object */
			OPENSSL_cleanse(w->pbuf[i], COS_IO_CHUNK);
		free(w->pbuf[i]);
	}
	cos_tmp_drop(w->c, &w->tmp);
	free(w->key);
	free(w->content_type);
	json_decref(w->meta);
	EVP_MD_CTX_free(w->md5);
	free(w->buf);
	free(w->wdek);
	sealvm_secret_free(w->dek);
	cos_sse_file_free(w->sf);
	free(w);
}

static inline void writer_freep(struct cos_writer **w)
{
	cos_writer_abort(*w);
}

/*
 * Writeback while the body arrives: each full window of the file is handed to
 * the disk at once (SYNC_FILE_RANGE_WRITE, which does not wait), and the
 * window two behind is waited for, so that the fsync at the end has little
 * left to do and the dirty pages an upload holds stay bounded. Errors are
 * left to that fsync, which reports them.
 */
#define COS_WRITEBACK_WINDOW ((uint64_t)8 << 20)

static void writeback(struct cos_writer *w)
{
	while (w->written - w->wb_next >= COS_WRITEBACK_WINDOW) {
		(void)sync_file_range(w->tmp.fd, (off_t)w->wb_next, (off_t)COS_WRITEBACK_WINDOW,
				      SYNC_FILE_RANGE_WRITE);
		if (w->wb_next >= 2 * COS_WRITEBACK_WINDOW)
			(void)sync_file_range(w->tmp.fd,
					      (off_t)(w->wb_next - 2 * COS_WRITEBACK_WINDOW),
					      (off_t)COS_WRITEBACK_WINDOW,
					      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
						      SYNC_FILE_RANGE_WAIT_AFTER);
		w->wb_next += COS_WRITEBACK_WINDOW;
	}
}

static int write_data(struct cos_writer *w, const void *p, size_t len, struct sealvm_err *err)
{
	int r = sealvm_write_all(w->tmp.fd, p, len);
	if (r < 0)
		return sealvm_err_set_errno(err, r,
					    r == -ENOSPC ? "ServiceUnavailable" : "InternalError",
					    "cannot write object data");
	w->written += len;
	writeback(w);
	return 0;
}

static int flush(struct cos_writer *w, struct sealvm_err *err)
{
	if (!w->buf_len)
		return 0;
	int r = write_data(w, w->buf, w->buf_len, err);
	if (r < 0)
		return r;
	w->buf_len = 0;
	return 0;
}

/*
 * Takes @len bytes of the body's plaintext, in order: MD5, then the file —
 * as they are, or sealed segment by segment under SSE. Every call but the
 * last (from finish) brings whole segments (COS_IO_CHUNK is a multiple of
 * COS_SSE_SEG), so segment @seg_idx is always complete when it is sealed.
 */
static int absorb(struct cos_writer *w, const unsigned char *p, size_t len, struct sealvm_err *err)
{
	int r;
	if (len && EVP_DigestUpdate(w->md5, p, len) != 1)
		return sealvm_err_set(err, -EIO, "InternalError", "MD5 failed");
	if (!w->dek)
		return len ? write_data(w, p, len, err) : 0;
	while (len) {
		size_t n = MIN(len, (size_t)COS_SSE_SEG);
		r = cos_sse_seal(w->sf, w->seg_idx, p, n, w->buf + w->buf_len, err);
		if (r < 0)
			return r;
		w->seg_idx++;
		w->buf_len += n + COS_SSE_TAG;
		/* below COS_IO_CHUNK after a flush: the next segment always fits (buf_cap) */
		if (w->buf_len >= COS_IO_CHUNK && (r = flush(w, err)) < 0)
			return r;
		p += n;
		len -= n;
	}
	return 0;
}

static void *helper_main(void *arg)
{
	struct cos_writer *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->queued && !w->stop)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->queued || w->abandon)
			break;
		unsigned i = w->head;
		bool failed = w->helper_rc < 0;
		pthread_mutex_unlock(&w->lock);

		struct sealvm_err e = SEALVM_ERR_INIT;
		int r = failed ? 0 : absorb(w, w->pbuf[i], w->plen[i], &e);

		pthread_mutex_lock(&w->lock);
		if (r < 0 && w->helper_rc == 0) {
			w->helper_rc = r;
			w->helper_err = e;
		}
		w->head = (w->head + 1) % COS_WRITER_BUFS;
		w->queued--;
		pthread_cond_broadcast(&w->cond);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static bool helper_start(struct cos_writer *w)
{
	pthread_attr_t attr;
	if (pthread_attr_init(&attr) != 0)
		return false;
	pthread_attr_setstacksize(&attr, 256 * 1024);
	w->helper_started = pthread_create(&w->helper, &attr, helper_main, w) == 0;
	pthread_attr_destroy(&attr);
	return w->helper_started;
}

/* pbuf[fill] is full and more of the body follows: hands it to the helper, takes the next. */
static int hand_off(struct cos_writer *w, struct sealvm_err *err)
{
	int r;
	bool alone = false;
	for (unsigned i = 0; i < COS_WRITER_BUFS && !alone; i++)
		alone = !w->pbuf[i] && !(w->pbuf[i] = malloc(COS_IO_CHUNK));
	if (alone || (!w->helper_started && !helper_start(w))) {
		/* no memory or no thread for a helper: absorb here, as the body comes */
		r = absorb(w, w->pbuf[w->fill], w->plen[w->fill], err);
		w->plen[w->fill] = 0;
		return r;
	}
	pthread_mutex_lock(&w->lock);
	w->queued++;
	pthread_cond_broadcast(&w->cond);
	while (w->queued == COS_WRITER_BUFS && w->helper_rc == 0)
		pthread_cond_wait(&w->cond, &w->lock);
	r = w->helper_rc;
	if (r < 0) {
		*err = w->helper_err; /* the request fails: nothing more is written */
		pthread_mutex_unlock(&w->lock);
		return r;
	}
	w->fill = (w->head + w->queued) % COS_WRITER_BUFS;
	pthread_mutex_unlock(&w->lock);
	w->plen[w->fill] = 0;
	return 0;
}

/* A DEK rewrapped under the newest key version replaces the stored one. */
struct rewrap_job {
	const char *bucket, *key, *old, *new, *version;
};

static int rewrap_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct rewrap_job *j = userdata;
	if (!j->bucket) /* an upload's */
		return cos_store_upload_rewrap(conn, j->key, j->old, j->new, j->version, err);
	return cos_store_object_rewrap(conn, j->bucket, j->key, j->old, j->new, j->version, err);
}

/* A part's writer: the upload must exist (for this key) and gives the DEK. */
static int writer_upload(struct cos_writer *w, struct sealvm_err *err)
{
	struct cos *c = w->c;
	struct cos_upload_row u;
	sqlite3 *conn = db_read_begin(c->deps.db);
	int r = cos_store_upload_get(conn, w->b.name, w->key, w->upload_id, &u, err);
	db_read_end(c->deps.db, conn);
	if (r < 0)
		return r;
	if (u.wdek) {
		char *rewrapped = NULL;
		char version[40] = "";
		snprintf(w->sse_id, sizeof(w->sse_id), "%s", w->upload_id);
		r = cos_sse_dek_open(c, &w->b, w->sse_id, u.wdek, &w->dek, &rewrapped, version,
				     err);
		if (r >= 0 && rewrapped) {
			/* best effort: the old ciphertext keeps opening */
			struct sealvm_err e = SEALVM_ERR_INIT;
			struct rewrap_job j = {NULL, w->upload_id, u.wdek, rewrapped, version};
			if (db_write(c->deps.db, rewrap_run, &j, &e) < 0)
				log_warning("cos: cannot store the rewrapped key of upload %s: %s",
					    w->upload_id, e.message);
		}
		free(rewrapped);
	}
	cos_upload_row_done(&u);
	return r;
}

int cos_writer_open(struct cos *c, const struct cos_put_args *a, struct cos_writer **ret,
		    struct sealvm_err *err)
{
	_cleanup_(writer_freep) struct cos_writer *w = NULL;
	int r = key_check(a->key, err);
	if (r < 0)
		return r;
	r = meta_check(a->meta, err);
	if (r < 0)
		return r;
	if (a->size > COS_PART_MAX)
		return sealvm_err_set(err, -EFBIG, "EntityTooLarge",
				      "the body has %llu bytes; one PUT or part may have at most "
				      "5 GiB: use a multipart upload",
				      (unsigned long long)a->size);
	if (a->upload_id && (a->part_number < 1 || a->part_number > COS_PARTS_MAX))
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "part number must be an integer between 1 and %d",
				      COS_PARTS_MAX);
	w = calloc(1, sizeof(*w));
	if (!w)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	w->c = c;
	w->tmp.fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	w->b = *a->bucket;
	w->key = strdup(a->key);
	w->content_type = strdup(a->content_type && a->content_type[0] ? a->content_type
								       : "binary/octet-stream");
	w->meta = json_incref(a->meta);
	w->checksum = a->checksum;
	w->size = a->size;
	w->md5 = EVP_MD_CTX_new();
	if (!w->key || !w->content_type || !w->md5 ||
	    EVP_DigestInit_ex2(w->md5, EVP_md5(), NULL) != 1)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	if (a->upload_id) {
		snprintf(w->upload_id, sizeof(w->upload_id), "%s", a->upload_id);
		w->part = a->part_number;
		r = writer_upload(w, err);
		if (r < 0)
			return r;
	} else if (w->b.sse) {
		cos_random_id(w->sse_id);
		r = cos_sse_dek_new(c, &w->b, w->sse_id, &w->dek, &w->wdek, w->key_version, err);
		if (r < 0)
			return r;
	} else
		cos_random_id(w->sse_id);

	/* the other plaintext buffers come with the first hand-off: small bodies need one */
	w->pbuf[0] = malloc(COS_IO_CHUNK);
	if (!w->pbuf[0])
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	r = cos_tmp_open(c, &w->tmp, err);
	if (r < 0)
		return r;
	if (w->dek) {
		unsigned char salt[COS_SSE_SALT];
		w->buf_cap = COS_IO_CHUNK + COS_SSE_SEG + COS_SSE_TAG;
		w->buf = malloc(w->buf_cap);
		if (!w->buf)
			return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
		if (cos_sse_header_new(w->buf, salt) < 0)
			return sealvm_err_set(err, -EIO, "InternalError",
					      "no random bytes for the file's salt");
		w->buf_len = COS_SSE_HDR;
		w->n_seg = cos_sse_segments(w->size);
		r = cos_sse_file_new(w->dek, salt, w->part, w->size, true, &w->sf, err);
		if (r < 0)
			return r;
	}
	*ret = TAKE_PTR(w);
	return 0;
}

int cos_writer_write(struct cos_writer *w, const void *buf, size_t len, struct sealvm_err *err)
{
	const unsigned char *p = buf;
	if (w->finished)
		return sealvm_err_set(err, -EINVAL, "InternalError", "write after finish");
	if (len > w->size - w->got)
		return sealvm_err_set(err, -EBADMSG, "IncompleteBody",
				      "the body is longer than the declared %llu bytes",
				      (unsigned long long)w->size);
	while (len) {
		unsigned f = w->fill;
		size_t n = MIN(len, COS_IO_CHUNK - w->plen[f]);
		memcpy(w->pbuf[f] + w->plen[f], p, n);
		w->plen[f] += n;
		w->got += n;
		p += n;
		len -= n;
		if (w->plen[f] == COS_IO_CHUNK && w->got < w->size) {
			int r = hand_off(w, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int cos_writer_finish(struct cos_writer *w, unsigned char ret_md5[16], struct sealvm_err *err)
{
	int r;
	if (w->finished) {
		memcpy(ret_md5, w->md5v, 16);
		return 0;
	}
	if (w->got != w->size)
		return sealvm_err_set(err, -EBADMSG, "IncompleteBody",
				      "the body ended after %llu of the declared %llu bytes",
				      (unsigned long long)w->got, (unsigned long long)w->size);
	if ((r = helper_join(w, false, err)) < 0 ||
	    (r = absorb(w, w->pbuf[w->fill], w->plen[w->fill], err)) < 0)
		return r;
	w->plen[w->fill] = 0;
	/* An empty object still has its one (empty, final) segment. */
	if (w->dek && w->seg_idx < w->n_seg) {
		r = cos_sse_seal(w->sf, w->seg_idx, "", 0, w->buf + w->buf_len, err);
		if (r < 0)
			return r;
		w->seg_idx++;
		w->buf_len += COS_SSE_TAG;
	}
	r = flush(w, err);
	if (r < 0)
		return r;
	if (fsync(w->tmp.fd) < 0)
		return sealvm_err_set_errno(err, negative_errno(), "InternalError",
					    "cannot fsync object data");
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(w->md5, w->md5v, &n) != 1 || n != 16)
		return sealvm_err_set(err, -EIO, "InternalError", "MD5 failed");
	w->finished = true;
	memcpy(ret_md5, w->md5v, 16);
	return 0;
}

int cos_writer_set_checksum(struct cos_writer *w, const struct cos_checksum *checksum,
			    struct sealvm_err *err)
{
	if (!checksum ||
	    strnlen(checksum->value, sizeof(checksum->value)) >= sizeof(checksum->value))
		return sealvm_err_set(err, -EINVAL, "InvalidArgument", "checksum value too long");
	w->checksum = *checksum;
	return 0;
}

struct commit_job {
	struct cos *c;
	struct cos_writer *w;
	struct cos_row row;
	struct cos_part_row part;
	struct audit_record *rec;
	struct cos_files old;
};

static int commit_object_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct commit_job *j = userdata;
	struct cos_bucket b;
	int r = cos_store_bucket_get(conn, j->w->b.name, &b, err);
	if (r >= 0)
		r = cos_store_object_put(conn, j->w->b.name, &j->row, &j->old, err);
	if (r >= 0)
		r = cos_store_files_unreferenced(conn, &j->old, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
	return r;
}

static int commit_part_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct commit_job *j = userdata;
	struct cos_upload_row u;
	int r = cos_store_upload_get(conn, j->w->b.name, j->w->key, j->w->upload_id, &u, err);
	if (r < 0)
		return r;
	enum s3_checksum_alg algo = u.u.checksum_algo;
	cos_upload_row_done(&u);
	if (algo != S3_CHECKSUM_NONE && j->part.p.checksum.algo != algo)
		return sealvm_err_set(
			err, -EINVAL, "InvalidRequest",
			"this upload was created with a checksum algorithm: each part "
			"must carry %s",
			s3_checksum_header(algo));
	r = cos_store_part_put(conn, j->w->upload_id, &j->part, &j->old, err);
	if (r >= 0)
		r = cos_store_files_unreferenced(conn, &j->old, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
	return r;
}

int cos_writer_commit(struct cos_writer *writer, const struct audit_event *ev,
		      struct cos_object *ret, struct sealvm_err *err)
{
	/* freed whatever the outcome */
	_cleanup_(writer_freep) struct cos_writer *w = writer;
	struct cos *c = w->c;
	struct commit_job j = {.c = c, .w = w};
	char file[COS_FILE_MAX];
	if (!w->finished)
		return sealvm_err_set(err, -EINVAL, "InternalError", "commit before finish");
	int r = cos_record_new(ev, &j.rec, err);
	if (r < 0)
		return r;
	r = cos_tmp_name(c, &w->tmp, file, err);
	if (r < 0) {
		audit_record_free(j.rec);
		return r;
	}
	int64_t now = cos_now_ms();
	char etag[33];
	hex(w->md5v, 16, etag);
	struct cos_extent ext = {.size = w->size, .role = w->part};
	snprintf(ext.file, sizeof(ext.file), "%s", file);
	if (w->upload_id[0]) {
		j.part.p.number = w->part;
		j.part.p.size = w->size;
		snprintf(j.part.p.etag, sizeof(j.part.p.etag), "%s", etag);
		j.part.p.checksum = w->checksum;
		j.part.p.mtime_ms = now;
		snprintf(j.part.file, sizeof(j.part.file), "%s", file);
		r = db_write(c->deps.db, commit_part_run, &j, err);
	} else {
		struct cos_object *o = &j.row.o;
		snprintf(o->key, sizeof(o->key), "%s", w->key);
		o->size = w->size;
		snprintf(o->etag, sizeof(o->etag), "%s", etag);
		o->mtime_ms = now;
		snprintf(o->content_type, sizeof(o->content_type), "%s", w->content_type);
		o->meta = w->meta;
		o->checksum = w->checksum;
		o->sse = w->dek != NULL;
		snprintf(j.row.sse_id, sizeof(j.row.sse_id), "%s", w->sse_id);
		j.row.wdek = w->wdek;
		snprintf(j.row.key_version, sizeof(j.row.key_version), "%s", w->key_version);
		j.row.ext = &ext;
		j.row.n_ext = 1;
		r = db_write(c->deps.db, commit_object_run, &j, err);
	}
	audit_record_free(j.rec);
	if (r < 0) {
		struct cos_files mine = {0};
		if (cos_files_add(&mine, file) >= 0)
			cos_data_unlink(c, &mine);
		cos_files_done(&mine);
		cos_files_done(&j.old);
		return r;
	}
	cos_data_unlink(c, &j.old);
	cos_files_done(&j.old);
	if (ret) {
		memset(ret, 0, sizeof(*ret));
		if (w->upload_id[0]) {
			snprintf(ret->key, sizeof(ret->key), "%s", w->key);
			ret->size = w->size;
			snprintf(ret->etag, sizeof(ret->etag), "%s", etag);
			ret->mtime_ms = now;
			ret->checksum = w->checksum;
			ret->sse = w->dek != NULL;
		} else {
			*ret = j.row.o;
			ret->meta = json_incref(w->meta);
		}
	}
	return 0;
}

/* ---- the reader --------------------------------------------------------------------------------
 */

struct cos_reader {
	struct cos *c;
	struct cos_bucket b;
	struct cos_row row;
	uint64_t *start; /* plaintext offset of each extent */
	int *fds;	 /* the first reader_eager_fds extents (open: readable whatever happens) */
	bool pinned;	 /* the others are pinned (cos_data_pin) until the reader lets go */
	size_t n_fds;
	size_t lazy_ext; /* the one later extent open now */
	int lazy_fd;
	struct sealvm_secret *dek;
	struct cos_sse_file **sf;
	unsigned char *ct; /* one sealed segment */
	unsigned char *pt; /* the last segment opened, for small sequential reads */
	size_t pt_ext, pt_len;
	uint64_t pt_idx;
	bool pt_ok;
};

void cos_reader_close(struct cos_reader *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_fds; i++)
		if (r->fds[i] >= 0)
			close(r->fds[i]);
	if (r->lazy_fd >= 0)
		close(r->lazy_fd);
	if (r->pinned)
		cos_data_unpin(r->c, r->row.ext + r->n_fds, r->row.n_ext - r->n_fds);
	if (r->sf)
		for (size_t i = 0; i < r->row.n_ext; i++)
			cos_sse_file_free(r->sf[i]);
	free(r->sf);
	free(r->fds);
	free(r->start);
	sealvm_secret_free(r->dek);
	free(r->ct);
	if (r->pt)
		OPENSSL_cleanse(r->pt, COS_SSE_SEG);
	free(r->pt);
	cos_row_done(&r->row);
	free(r);
}

static inline void reader_closep(struct cos_reader **r)
{
	cos_reader_close(*r);
}

/* Reads the row and opens its first files; -EAGAIN when a file went meanwhile. */
static int reader_load(struct cos_reader *rd, const char *key, struct sealvm_err *err)
{
	struct cos *c = rd->c;
	sqlite3 *conn = db_read_begin(c->deps.db);
	sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL);
	int r = cos_store_object_get(conn, rd->b.name, key, true, &rd->row, err);
	sqlite3_exec(conn, "COMMIT", NULL, NULL, NULL);
	db_read_end(c->deps.db, conn);
	if (r < 0)
		return r;
	rd->n_fds = MIN(rd->row.n_ext, (size_t)cos_engine(c)->reader_eager_fds);
	rd->fds = malloc(MAX(rd->n_fds, (size_t)1) * sizeof(int));
	rd->start = malloc(MAX(rd->row.n_ext, (size_t)1) * sizeof(uint64_t));
	if (!rd->fds || !rd->start)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	uint64_t off = 0;
	for (size_t i = 0; i < rd->row.n_ext; i++) {
		rd->start[i] = off;
		off += rd->row.ext[i].size;
	}
	if (off != rd->row.o.size)
		return sealvm_err_set(err, -EBADMSG, "InternalError",
				      "the stored object's extents do not add up to its size");
	for (size_t i = 0; i < rd->n_fds; i++)
		rd->fds[i] = -1;
	for (size_t i = 0; i < rd->n_fds; i++) {
		r = cos_data_open(c, rd->row.ext[i].file, &rd->fds[i]);
		if (r == -ENOENT)
			return -EAGAIN;
		if (r < 0)
			return sealvm_err_set_errno(err, r, "InternalError",
						    "cannot open object data");
	}
	/*
	 * The rest open on demand: pinned, so that an overwrite or a delete
	 * committed meanwhile leaves them in place until this reader is done.
	 */
	if (rd->row.n_ext > rd->n_fds) {
		r = cos_data_pin(c, rd->row.ext + rd->n_fds, rd->row.n_ext - rd->n_fds, err);
		if (r < 0)
			return r;
		rd->pinned = true;
	}
	return 0;
}

static void reader_unload(struct cos_reader *rd)
{
	if (rd->pinned)
		cos_data_unpin(rd->c, rd->row.ext + rd->n_fds, rd->row.n_ext - rd->n_fds);
	rd->pinned = false;
	for (size_t i = 0; i < rd->n_fds; i++)
		if (rd->fds[i] >= 0)
			close(rd->fds[i]);
	free(rd->fds);
	free(rd->start);
	rd->fds = NULL;
	rd->start = NULL;
	rd->n_fds = 0;
	cos_row_done(&rd->row);
}

int cos_reader_open(struct cos *c, const struct cos_bucket *b, const char *key,
		    struct cos_object *ret_obj, struct cos_reader **ret, struct sealvm_err *err)
{
	_cleanup_(reader_closep) struct cos_reader *rd = calloc(1, sizeof(*rd));
	int r = key_check(key, err);
	if (r < 0)
		return r;
	if (!rd)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	rd->c = c;
	rd->b = *b;
	rd->lazy_fd = -1;
	/* A delete between reading the row and opening its files: read the row again. */
	for (int attempt = 0;; attempt++) {
		r = reader_load(rd, key, err);
		if (r != -EAGAIN)
			break;
		reader_unload(rd);
		if (attempt == 8)
			return sealvm_err_set(err, -EIO, "InternalError",
					      "the object's data file is missing");
	}
	if (r < 0)
		return r;
	if (rd->row.wdek) {
		char *rewrapped = NULL;
		char version[40] = "";
		r = cos_sse_dek_open(c, b, rd->row.sse_id, rd->row.wdek, &rd->dek, &rewrapped,
				     version, err);
		if (r < 0)
			return r;
		if (rewrapped) {
			struct sealvm_err e = SEALVM_ERR_INIT;
			struct rewrap_job j = {b->name, key, rd->row.wdek, rewrapped, version};
			if (db_write(c->deps.db, rewrap_run, &j, &e) < 0)
				log_warning(
					"cos: cannot store the rewrapped key of an object in %s: "
					"%s",
					b->name, e.message);
			free(rewrapped);
		}
		rd->sf = calloc(rd->row.n_ext ? rd->row.n_ext : 1, sizeof(*rd->sf));
		rd->ct = malloc(COS_SSE_SEG + COS_SSE_TAG);
		rd->pt = malloc(COS_SSE_SEG);
		if (!rd->sf || !rd->ct || !rd->pt)
			return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	}
	if (ret_obj) {
		*ret_obj = rd->row.o;
		ret_obj->meta = json_incref(rd->row.o.meta);
	}
	*ret = TAKE_PTR(rd);
	return 0;
}

int cos_reader_fd(struct cos_reader *r, uint64_t off, int *ret_fd, off_t *ret_file_off)
{
	if (r->dek || r->row.n_ext != 1)
		return -ENOTSUP;
	*ret_fd = r->fds[0];
	*ret_file_off = (off_t)off;
	return 0;
}

/* The fd of extent @i (opening a later one on demand). */
static int extent_fd(struct cos_reader *rd, size_t i, int *ret_fd, struct sealvm_err *err)
{
	if (i < rd->n_fds) {
		*ret_fd = rd->fds[i];
		return 0;
	}
	if (rd->lazy_fd < 0 || rd->lazy_ext != i) {
		if (rd->lazy_fd >= 0)
			close(rd->lazy_fd);
		rd->lazy_fd = -1;
		int r = cos_data_open(rd->c, rd->row.ext[i].file, &rd->lazy_fd);
		if (r == -ENOENT)
			return sealvm_err_set(
				err, -EIO, "InternalError",
				"the object was replaced or deleted while being read; "
				"read it again");
		if (r < 0)
			return sealvm_err_set_errno(err, r, "InternalError",
						    "cannot open object data");
		rd->lazy_ext = i;
	}
	*ret_fd = rd->lazy_fd;
	return 0;
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off, struct sealvm_err *err)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sealvm_err_set_errno(err, negative_errno(), "InternalError",
						    "cannot read object data");
		if (n == 0)
			return sealvm_err_set(err, -EBADMSG, "InternalError",
					      "stored object data is truncated");
		done += (size_t)n;
	}
	return 0;
}

static int sse_file(struct cos_reader *rd, size_t i, int fd, struct sealvm_err *err)
{
	if (rd->sf[i])
		return 0;
	unsigned char hdr[COS_SSE_HDR], salt[COS_SSE_SALT];
	int r = pread_full(fd, hdr, sizeof(hdr), 0, err);
	if (r < 0)
		return r;
	if (cos_sse_header_parse(hdr, salt) < 0)
		return sealvm_err_set(err, -EBADMSG, "InternalError",
				      "stored object data has a damaged header");
	return cos_sse_file_new(rd->dek, salt, rd->row.ext[i].role, rd->row.ext[i].size, false,
				&rd->sf[i], err);
}

/* Plaintext of extent @i at @eoff, up to @len bytes (within the extent). */
static ssize_t sse_read(struct cos_reader *rd, size_t i, int fd, unsigned char *out, size_t len,
			uint64_t eoff, struct sealvm_err *err)
{
	int r = sse_file(rd, i, fd, err);
	if (r < 0)
		return r;
	uint64_t esize = rd->row.ext[i].size;
	size_t done = 0;
	while (done < len) {
		uint64_t pos = eoff + done;
		uint64_t idx = pos / COS_SSE_SEG;
		size_t in = (size_t)(pos % COS_SSE_SEG);
		size_t seg_len = (size_t)MIN((uint64_t)COS_SSE_SEG, esize - idx * COS_SSE_SEG);
		size_t want = MIN(len - done, seg_len - in);
		if (rd->pt_ok && rd->pt_ext == i && rd->pt_idx == idx) {
			memcpy(out + done, rd->pt + in, want);
			done += want;
			continue;
		}
		r = pread_full(fd, rd->ct, seg_len + COS_SSE_TAG,
			       COS_SSE_HDR + idx * (COS_SSE_SEG + COS_SSE_TAG), err);
		if (r < 0)
			return r;
		bool whole = in == 0 && want == seg_len;
		unsigned char *dst = whole ? out + done : rd->pt;
		rd->pt_ok = false;
		r = cos_sse_open(rd->sf[i], idx, rd->ct, seg_len + COS_SSE_TAG, dst, err);
		if (r < 0)
			return r;
		if (!whole) {
			rd->pt_ok = true;
			rd->pt_ext = i;
			rd->pt_idx = idx;
			rd->pt_len = seg_len;
			memcpy(out + done, rd->pt + in, want);
		}
		done += want;
	}
	return (ssize_t)done;
}

ssize_t cos_reader_pread(struct cos_reader *rd, void *buf, size_t len, uint64_t off,
			 struct sealvm_err *err)
{
	uint64_t size = rd->row.o.size;
	if (off >= size || !len)
		return 0;
	len = (size_t)MIN((uint64_t)len, size - off);
	/* The extent holding @off: the last one starting at or before it. */
	size_t lo = 0, hi = rd->row.n_ext;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (rd->start[mid] <= off)
			lo = mid;
		else
			hi = mid;
	}
	size_t done = 0;
	for (size_t i = lo; i < rd->row.n_ext && done < len; i++) {
		uint64_t eoff = off + done - rd->start[i];
		uint64_t esize = rd->row.ext[i].size;
		if (eoff >= esize)
			continue; /* an empty extent */
		size_t want = (size_t)MIN((uint64_t)(len - done), esize - eoff);
		int fd = -1, r = extent_fd(rd, i, &fd, err);
		if (r < 0)
			return r;
		if (rd->dek) {
			ssize_t n =
				sse_read(rd, i, fd, (unsigned char *)buf + done, want, eoff, err);
			if (n < 0)
				return n;
		} else {
			r = pread_full(fd, (char *)buf + done, want, eoff, err);
			if (r < 0)
				return r;
		}
		done += want;
	}
	return (ssize_t)done;
}

/* ---- copy --------------------------------------------------------------------------------------
 */

struct copy_job {
	struct cos *c;
	const struct cos_bucket *src, *dst;
	const char *src_key, *dst_key;
	const char *content_type;
	json_t *meta;
	struct audit_record *rec;
	struct cos_files old;
	struct cos_row row;
};

/* Both buckets in clear: the destination names the source's (immutable) files. */
static int copy_share_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct copy_job *j = userdata;
	struct cos_bucket b;
	cos_row_done(&j->row);
	int r = cos_store_object_get(conn, j->src->name, j->src_key, true, &j->row, err);
	if (r < 0)
		return r;
	if (j->row.wdek)
		return sealvm_err_set(err, -EAGAIN, "InternalError", "the source is encrypted");
	r = cos_store_bucket_get(conn, j->dst->name, &b, err);
	if (r < 0)
		return r;
	snprintf(j->row.o.key, sizeof(j->row.o.key), "%s", j->dst_key);
	if (j->content_type)
		snprintf(j->row.o.content_type, sizeof(j->row.o.content_type), "%s",
			 j->content_type);
	if (j->meta) {
		json_decref(j->row.o.meta);
		j->row.o.meta = json_incref(j->meta);
	}
	j->row.o.mtime_ms = cos_now_ms();
	cos_random_id(j->row.sse_id);
	r = cos_store_object_put(conn, j->dst->name, &j->row, &j->old, err);
	if (r >= 0)
		r = cos_store_files_unreferenced(conn, &j->old, err);
	if (r >= 0)
		r = cos_store_audit(j->c, conn, j->rec, err);
	return r;
}

static int copy_stream(struct cos *c, const struct cos_bucket *src, const char *src_key,
		       const struct cos_bucket *dst, const char *dst_key, const char *content_type,
		       json_t *meta, const struct audit_event *ev, struct cos_object *ret,
		       struct sealvm_err *err)
{
	_cleanup_(reader_closep) struct cos_reader *rd = NULL;
	_cleanup_(writer_freep) struct cos_writer *w = NULL;
	_cleanup_free_ unsigned char *buf = NULL;
	struct cos_object so = {0};
	int r = cos_reader_open(c, src, src_key, &so, &rd, err);
	if (r < 0)
		return r;
	struct cos_put_args a = {
		.bucket = dst,
		.key = dst_key,
		.content_type = content_type ? content_type : so.content_type,
		.meta = meta ? meta : so.meta,
		.size = so.size,
	};
	/* A whole-object checksum holds for the copy; a composite one describes parts it lacks. */
	if (so.parts == 0)
		a.checksum = so.checksum;
	r = cos_writer_open(c, &a, &w, err);
	if (r >= 0 && !(buf = malloc(COS_IO_CHUNK)))
		r = sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	for (uint64_t off = 0; r >= 0 && off < so.size;) {
		ssize_t n = cos_reader_pread(rd, buf, COS_IO_CHUNK, off, err);
		if (n <= 0) {
			r = n < 0 ? (int)n
				  : sealvm_err_set(err, -EIO, "InternalError", "short read");
			break;
		}
		r = cos_writer_write(w, buf, (size_t)n, err);
		off += (uint64_t)n;
	}
	unsigned char md5[16];
	if (r >= 0)
		r = cos_writer_finish(w, md5, err);
	if (r >= 0)
		r = cos_writer_commit(TAKE_PTR(w), ev, ret, err);
	if (buf)
		OPENSSL_cleanse(buf, COS_IO_CHUNK);
	cos_object_done(&so);
	return r < 0 ? r : 0;
}

int cos_object_copy(struct cos *c, const struct cos_bucket *src, const char *src_key,
		    const struct cos_bucket *dst, const char *dst_key, const char *content_type,
		    json_t *meta, const struct audit_event *ev, struct cos_object *ret,
		    struct sealvm_err *err)
{
	int r = key_check(src_key, err);
	if (r >= 0)
		r = key_check(dst_key, err);
	if (r >= 0)
		r = meta_check(meta, err);
	if (r < 0)
		return r;
	if (!content_type && !meta && strcmp(src->name, dst->name) == 0 &&
	    strcmp(src_key, dst_key) == 0)
		return sealvm_err_set(
			err, -EINVAL, "InvalidRequest",
			"this copy request is illegal because it is trying to copy an "
			"object to itself without changing the object's metadata");
	if (!src->sse && !dst->sse) {
		struct copy_job j = {.c = c,
				     .src = src,
				     .dst = dst,
				     .src_key = src_key,
				     .dst_key = dst_key,
				     .content_type = content_type,
				     .meta = meta};
		struct sealvm_err e = SEALVM_ERR_INIT;
		r = cos_record_new(ev, &j.rec, err);
		if (r >= 0)
			r = db_write(c->deps.db, copy_share_run, &j, &e);
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
		if (r != -EAGAIN) {
			if (r < 0)
				sealvm_err_set(err, e.code, e.reason, "%s", e.message);
			return r < 0 ? r : 0;
		}
		/* the source row turned out encrypted: copy by streaming */
	}
	return copy_stream(c, src, src_key, dst, dst_key, content_type, meta, ev, ret, err);
}
