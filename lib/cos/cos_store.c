// SPDX-License-Identifier: Apache-2.0
/*
 * cos_store.c — the object store's tables: SQL only (migration owner "cos").
 *
 * A row is the commit point of everything the engine writes: an object, a
 * part, an upload exists when its row does, and its data files are named
 * before the row commits and removed after the row goes. Keys compare with
 * SQLite's BINARY collation, which is memcmp: S3's UTF-8 byte order. Nothing
 * here ever sees a DEK in clear: only KMS ciphertexts are stored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/macro.h"
#include "sealvm/rc.h"

#include "cos_engine.h"

const struct db_migration cos_migrations[] = {
	{"cos", 1,
	 "CREATE TABLE cos_buckets ("
	 " name TEXT PRIMARY KEY,"
	 " account_id TEXT NOT NULL,"
	 " instance_guid TEXT NOT NULL,"
	 " instance_crn TEXT NOT NULL,"
	 " crn TEXT NOT NULL,"
	 " location TEXT NOT NULL,"
	 " created_ms INTEGER NOT NULL,"
	 " sse_key_crn TEXT,"
	 " sse_instance TEXT,"
	 " sse_key_id TEXT) WITHOUT ROWID;"
	 "CREATE INDEX cos_buckets_instance ON cos_buckets(instance_guid, name);"
	 "CREATE TABLE cos_objects ("
	 " bucket TEXT NOT NULL,"
	 " key TEXT NOT NULL,"
	 " size INTEGER NOT NULL,"
	 " etag TEXT NOT NULL,"
	 " content_type TEXT NOT NULL,"
	 " meta TEXT,"
	 " checksum_algo INTEGER NOT NULL,"
	 " checksum TEXT NOT NULL,"
	 " parts INTEGER NOT NULL,"
	 " sse_id TEXT NOT NULL,"
	 " sse_wdek TEXT,"
	 " sse_key_version TEXT,"
	 " mtime_ms INTEGER NOT NULL,"
	 " PRIMARY KEY (bucket, key)) WITHOUT ROWID;"
	 "CREATE TABLE cos_extents ("
	 " bucket TEXT NOT NULL,"
	 " key TEXT NOT NULL,"
	 " idx INTEGER NOT NULL,"
	 " file TEXT NOT NULL,"
	 " size INTEGER NOT NULL,"
	 " role INTEGER NOT NULL,"
	 " PRIMARY KEY (bucket, key, idx)) WITHOUT ROWID;"
	 "CREATE INDEX cos_extents_file ON cos_extents(file);"
	 "CREATE TABLE cos_uploads ("
	 " upload_id TEXT PRIMARY KEY,"
	 " bucket TEXT NOT NULL,"
	 " key TEXT NOT NULL,"
	 " initiated_ms INTEGER NOT NULL,"
	 " initiator_id TEXT NOT NULL,"
	 " checksum_algo INTEGER NOT NULL,"
	 " content_type TEXT NOT NULL,"
	 " meta TEXT,"
	 " sse_wdek TEXT,"
	 " sse_key_version TEXT) WITHOUT ROWID;"
	 "CREATE INDEX cos_uploads_bucket ON cos_uploads(bucket, key, initiated_ms);"
	 "CREATE INDEX cos_uploads_age ON cos_uploads(initiated_ms);"
	 "CREATE TABLE cos_parts ("
	 " upload_id TEXT NOT NULL,"
	 " number INTEGER NOT NULL,"
	 " size INTEGER NOT NULL,"
	 " etag TEXT NOT NULL,"
	 " checksum_algo INTEGER NOT NULL,"
	 " checksum TEXT NOT NULL,"
	 " file TEXT NOT NULL,"
	 " mtime_ms INTEGER NOT NULL,"
	 " PRIMARY KEY (upload_id, number)) WITHOUT ROWID;"
	 "CREATE INDEX cos_parts_file ON cos_parts(file);"},
};
const size_t cos_n_migrations = ELEMENTSOF(cos_migrations);

/* ---- helpers -----------------------------------------------------------------------------------
 */

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	snprintf(dst, n, "%s", v ? (const char *)v : "");
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	return v ? strdup((const char *)v) : NULL;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

static int step_done(sqlite3 *conn, sqlite3_stmt *st, const char *what, struct sealvm_err *err)
{
	int rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, what, err);
}

int cos_files_add(struct cos_files *f, const char *file)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		void *v = realloc(f->v, cap * sizeof(*f->v));
		if (!v)
			return -ENOMEM;
		f->v = v;
		f->cap = cap;
	}
	snprintf(f->v[f->n++], COS_FILE_MAX, "%s", file);
	return 0;
}

void cos_files_done(struct cos_files *f)
{
	free(f->v);
	*f = (struct cos_files){0};
}

void cos_row_done(struct cos_row *r)
{
	cos_object_done(&r->o);
	free(r->wdek);
	free(r->ext);
	r->wdek = NULL;
	r->ext = NULL;
	r->n_ext = 0;
}

void cos_upload_row_done(struct cos_upload_row *u)
{
	free(u->meta);
	free(u->wdek);
	u->meta = u->wdek = NULL;
}

void cos_object_done(struct cos_object *o)
{
	if (!o)
		return;
	json_decref(o->meta);
	o->meta = NULL;
}

/* ---- buckets -----------------------------------------------------------------------------------
 */

#define BUCKET_COLS                                                                                \
	"name, account_id, instance_guid, instance_crn, crn, location, created_ms, sse_key_crn, "  \
	"sse_instance, sse_key_id"

static void bucket_row(sqlite3_stmt *st, struct cos_bucket *b)
{
	memset(b, 0, sizeof(*b));
	copy_col(b->name, sizeof(b->name), st, 0);
	copy_col(b->account_id, sizeof(b->account_id), st, 1);
	copy_col(b->instance_guid, sizeof(b->instance_guid), st, 2);
	copy_col(b->instance_crn, sizeof(b->instance_crn), st, 3);
	copy_col(b->crn, sizeof(b->crn), st, 4);
	copy_col(b->location, sizeof(b->location), st, 5);
	b->created_ms = sqlite3_column_int64(st, 6);
	b->sse = sqlite3_column_type(st, 7) != SQLITE_NULL;
	copy_col(b->sse_key_crn, sizeof(b->sse_key_crn), st, 7);
	copy_col(b->sse_instance, sizeof(b->sse_instance), st, 8);
	copy_col(b->sse_key_id, sizeof(b->sse_key_id), st, 9);
}

int cos_store_bucket_insert(sqlite3 *conn, const struct cos_bucket *b, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "INSERT INTO cos_buckets (" BUCKET_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?)"
			   " ON CONFLICT (name) DO NOTHING",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, b->name);
	bind_text(st, 2, b->account_id);
	bind_text(st, 3, b->instance_guid);
	bind_text(st, 4, b->instance_crn);
	bind_text(st, 5, b->crn);
	bind_text(st, 6, b->location);
	sqlite3_bind_int64(st, 7, b->created_ms);
	bind_text(st, 8, b->sse ? b->sse_key_crn : NULL);
	bind_text(st, 9, b->sse ? b->sse_instance : NULL);
	bind_text(st, 10, b->sse ? b->sse_key_id : NULL);
	r = step_done(conn, st, "cos bucket insert", err);
	if (r < 0)
		return r;
	return sqlite3_changes(conn) == 1 ? 0 : -EEXIST;
}

int cos_store_bucket_get(sqlite3 *conn, const char *name, struct cos_bucket *ret,
			 struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn, "SELECT " BUCKET_COLS " FROM cos_buckets WHERE name = ?", &st,
			   err);
	if (r < 0)
		return r;
	bind_text(st, 1, name);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		bucket_row(st, ret);
		return 0;
	}
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "NoSuchBucket",
				      "the specified bucket does not exist: %s", name);
	return db_error(conn, rc, "cos bucket get", err);
}

int cos_store_bucket_list(sqlite3 *conn, const char *instance_guid, struct cos_bucket **ret,
			  size_t *ret_n, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ struct cos_bucket *v = NULL;
	size_t n = 0, cap = 0;
	int rc, r = db_prepare(conn,
			       "SELECT " BUCKET_COLS
			       " FROM cos_buckets WHERE instance_guid = ? ORDER BY name",
			       &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, instance_guid);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct cos_bucket *nv = realloc(v, ncap * sizeof(*v));
			if (!nv)
				return sealvm_err_set(err, -ENOMEM, "InternalError",
						      "out of memory");
			v = nv;
			cap = ncap;
		}
		bucket_row(st, &v[n++]);
	}
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "cos bucket list", err);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

int cos_store_bucket_has_objects(sqlite3 *conn, const char *name, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn, "SELECT 1 FROM cos_objects WHERE bucket = ? LIMIT 1", &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, name);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "cos bucket objects", err);
}

int cos_instance_delete_guard(sqlite3 *conn, const char *account_id, const char *instance_guid,
			      struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(
		conn, "SELECT count(*) FROM cos_buckets WHERE instance_guid = ? AND account_id = ?",
		&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, instance_guid);
	bind_text(st, 2, account_id);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "cos instance buckets", err);
	int64_t n = sqlite3_column_int64(st, 0);
	return n > 0 ? rc_refuse_not_empty(err, "the object storage instance", instance_guid, n,
					   "bucket", "buckets")
		     : 0;
}

int cos_store_bucket_delete(sqlite3 *conn, const char *name, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn, "DELETE FROM cos_buckets WHERE name = ?", &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, name);
	r = step_done(conn, st, "cos bucket delete", err);
	if (r < 0)
		return r;
	return sqlite3_changes(conn)
		       ? 0
		       : sealvm_err_set(err, -ENOENT, "NoSuchBucket",
					"the specified bucket does not exist: %s", name);
}

/* ---- objects -----------------------------------------------------------------------------------
 */

static int extents_load(sqlite3 *conn, const char *bucket, const char *key, struct cos_row *row,
			struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(
			conn,
			"SELECT file, size, role FROM cos_extents WHERE bucket = ? AND key = ?"
			" ORDER BY idx",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, bucket);
	bind_text(st, 2, key);
	size_t cap = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (row->n_ext == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			struct cos_extent *v = realloc(row->ext, ncap * sizeof(*v));
			if (!v)
				return sealvm_err_set(err, -ENOMEM, "InternalError",
						      "out of memory");
			row->ext = v;
			cap = ncap;
		}
		struct cos_extent *e = &row->ext[row->n_ext++];
		copy_col(e->file, sizeof(e->file), st, 0);
		e->size = (uint64_t)sqlite3_column_int64(st, 1);
		e->role = (unsigned)sqlite3_column_int(st, 2);
	}
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "cos extents", err);
}

int cos_store_object_get(sqlite3 *conn, const char *bucket, const char *key, bool with_meta,
			 struct cos_row *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "SELECT size, etag, content_type, meta, checksum_algo, checksum, parts,"
			   " sse_id, sse_wdek, sse_key_version, mtime_ms FROM cos_objects"
			   " WHERE bucket = ? AND key = ?",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, bucket);
	bind_text(st, 2, key);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "NoSuchKey",
				      "the specified key does not exist");
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "cos object get", err);
	struct cos_row row = {0};
	snprintf(row.o.key, sizeof(row.o.key), "%s", key);
	row.o.size = (uint64_t)sqlite3_column_int64(st, 0);
	copy_col(row.o.etag, sizeof(row.o.etag), st, 1);
	copy_col(row.o.content_type, sizeof(row.o.content_type), st, 2);
	if (with_meta && sqlite3_column_type(st, 3) != SQLITE_NULL) {
		row.o.meta = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
		if (!row.o.meta)
			return sealvm_err_set(err, -EBADMSG, "InternalError",
					      "stored metadata of the object does not parse");
	}
	row.o.checksum.algo = (enum s3_checksum_alg)sqlite3_column_int(st, 4);
	copy_col(row.o.checksum.value, sizeof(row.o.checksum.value), st, 5);
	row.o.parts = (unsigned)sqlite3_column_int(st, 6);
	copy_col(row.sse_id, sizeof(row.sse_id), st, 7);
	row.wdek = dup_col(st, 8);
	row.o.sse = row.wdek != NULL;
	copy_col(row.key_version, sizeof(row.key_version), st, 9);
	row.o.mtime_ms = sqlite3_column_int64(st, 10);
	if (sqlite3_column_type(st, 8) != SQLITE_NULL && !row.wdek) {
		cos_row_done(&row);
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	}
	r = extents_load(conn, bucket, key, &row, err);
	if (r < 0) {
		cos_row_done(&row);
		return r;
	}
	*ret = row;
	return 0;
}

/* Deletes the extents of (bucket, key), adding their files to @old. */
static int extents_delete(sqlite3 *conn, const char *bucket, const char *key, struct cos_files *old,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *sel = NULL, *del = NULL;
	int rc, r = db_prepare(conn, "SELECT file FROM cos_extents WHERE bucket = ? AND key = ?",
			       &sel, err);
	if (r < 0)
		return r;
	bind_text(sel, 1, bucket);
	bind_text(sel, 2, key);
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW)
		if (cos_files_add(old, (const char *)sqlite3_column_text(sel, 0)) < 0)
			return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "cos extents", err);
	r = db_prepare(conn, "DELETE FROM cos_extents WHERE bucket = ? AND key = ?", &del, err);
	if (r < 0)
		return r;
	bind_text(del, 1, bucket);
	bind_text(del, 2, key);
	return step_done(conn, del, "cos extents delete", err);
}

int cos_store_object_delete(sqlite3 *conn, const char *bucket, const char *key,
			    struct cos_files *old, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = extents_delete(conn, bucket, key, old, err);
	if (r < 0)
		return r;
	r = db_prepare(conn, "DELETE FROM cos_objects WHERE bucket = ? AND key = ?", &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, bucket);
	bind_text(st, 2, key);
	return step_done(conn, st, "cos object delete", err);
}

int cos_store_object_put(sqlite3 *conn, const char *bucket, const struct cos_row *row,
			 struct cos_files *old, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL, *ext = NULL;
	_cleanup_free_ char *meta = NULL;
	int r = cos_store_object_delete(conn, bucket, row->o.key, old, err);
	if (r < 0)
		return r;
	if (row->o.meta && json_object_size(row->o.meta) > 0) {
		meta = json_dumps(row->o.meta, JSON_COMPACT | JSON_SORT_KEYS);
		if (!meta)
			return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	}
	r = db_prepare(conn,
		       "INSERT INTO cos_objects (bucket, key, size, etag, content_type, meta,"
		       " checksum_algo, checksum, parts, sse_id, sse_wdek, sse_key_version,"
		       " mtime_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
		       &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, bucket);
	bind_text(st, 2, row->o.key);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)row->o.size);
	bind_text(st, 4, row->o.etag);
	bind_text(st, 5, row->o.content_type);
	bind_text(st, 6, meta);
	sqlite3_bind_int(st, 7, (int)row->o.checksum.algo);
	bind_text(st, 8, row->o.checksum.value);
	sqlite3_bind_int(st, 9, (int)row->o.parts);
	bind_text(st, 10, row->sse_id);
	bind_text(st, 11, row->wdek);
	bind_text(st, 12, row->wdek ? row->key_version : NULL);
	sqlite3_bind_int64(st, 13, row->o.mtime_ms);
	r = step_done(conn, st, "cos object insert", err);
	if (r < 0)
		return r;
	r = db_prepare(conn,
		       "INSERT INTO cos_extents (bucket, key, idx, file, size, role)"
		       " VALUES (?,?,?,?,?,?)",
		       &ext, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < row->n_ext; i++) {
		sqlite3_reset(ext);
		bind_text(ext, 1, bucket);
		bind_text(ext, 2, row->o.key);
		sqlite3_bind_int64(ext, 3, (sqlite3_int64)i);
		bind_text(ext, 4, row->ext[i].file);
		sqlite3_bind_int64(ext, 5, (sqlite3_int64)row->ext[i].size);
		sqlite3_bind_int(ext, 6, (int)row->ext[i].role);
		r = step_done(conn, ext, "cos extent insert", err);
		if (r < 0)
			return r;
	}
	return 0;
}

int cos_store_object_rewrap(sqlite3 *conn, const char *bucket, const char *key,
			    const char *old_wdek, const char *wdek, const char *version,
			    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "UPDATE cos_objects SET sse_wdek = ?, sse_key_version = ?"
			   " WHERE bucket = ? AND key = ? AND sse_wdek = ?",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, wdek);
	bind_text(st, 2, version);
	bind_text(st, 3, bucket);
	bind_text(st, 4, key);
	bind_text(st, 5, old_wdek);
	return step_done(conn, st, "cos object rewrap", err);
}

int cos_store_file_referenced(sqlite3 *conn, const char *file, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "SELECT EXISTS (SELECT 1 FROM cos_extents WHERE file = ?1)"
			   " OR EXISTS (SELECT 1 FROM cos_parts WHERE file = ?1)",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, file);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "cos file referenced", err);
	return sqlite3_column_int(st, 0) ? 1 : 0;
}

int cos_store_files_unreferenced(sqlite3 *conn, struct cos_files *f, struct sealvm_err *err)
{
	size_t k = 0;
	for (size_t i = 0; i < f->n; i++) {
		int r = cos_store_file_referenced(conn, f->v[i], err);
		if (r < 0)
			return r;
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = strcmp(f->v[j], f->v[i]) == 0;
		if (r == 0 && !dup) {
			if (k != i)
				memcpy(f->v[k], f->v[i], COS_FILE_MAX);
			k++;
		}
	}
	f->n = k;
	return 0;
}

/* ---- listing -----------------------------------------------------------------------------------
 */

/* The smallest byte string greater than every string starting with @s (NULL: none). */
static char *successor(const char *s)
{
	size_t n = strlen(s);
	char *t = strdup(s);
	while (t && n > 0) {
		unsigned char ch = (unsigned char)t[n - 1];
		if (ch != 0xff) {
			t[n - 1] = (char)(ch + 1);
			t[n] = '\0';
			return t;
		}
		n--;
	}
	free(t);
	return NULL;
}

static int push_prefix(struct cos_list_result *res, const char *p, size_t len)
{
	char **v = realloc(res->prefixes, (res->n_prefixes + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	res->prefixes = v;
	v[res->n_prefixes] = strndup(p, len);
	if (!v[res->n_prefixes])
		return -ENOMEM;
	res->n_prefixes++;
	return 0;
}

void cos_list_result_done(struct cos_list_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_objects; i++)
		cos_object_done(&r->objects[i]);
	free(r->objects);
	for (size_t i = 0; i < r->n_prefixes; i++)
		free(r->prefixes[i]);
	free(r->prefixes);
	free(r->next);
	*r = (struct cos_list_result){0};
}

/*
 * ListObjectsV2 as a seek: rows come in key order from a cursor; a key that
 * rolls up into a common prefix moves the cursor past every key of that
 * prefix (its successor), so a prefix holding a million keys costs one seek.
 */
int cos_store_list(sqlite3 *conn, const char *bucket, const struct cos_list_query *q,
		   struct cos_list_result *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ char *cursor = NULL;
	struct cos_list_result res = {0};
	const char *prefix = q->prefix ? q->prefix : "";
	const char *delim = q->delimiter && q->delimiter[0] ? q->delimiter : NULL;
	size_t plen = strlen(prefix);
	bool inclusive = true, full = false;
	unsigned max = MIN(q->max_keys, COS_LIST_MAX);
	int r = -ENOMEM;

	/* Start: after start_after (past its whole common prefix when it is one), at the prefix. */
	if (q->start_after && strcmp(q->start_after, prefix) >= 0) {
		const char *sa = q->start_after;
		const char *d =
			delim && strncmp(sa, prefix, plen) == 0 ? strstr(sa + plen, delim) : NULL;
		if (d && d[strlen(delim)] == '\0') {
			cursor = successor(sa);
			if (!cursor)
				goto done; /* nothing sorts after it */
		} else {
			cursor = strdup(sa);
			inclusive = false;
		}
	} else
		cursor = strdup(prefix);
	if (!cursor)
		goto fail;
	if (max == 0)
		goto done;

	r = db_prepare(
		conn,
		"SELECT key, size, etag, mtime_ms, content_type, checksum_algo, checksum,"
		" parts, sse_wdek IS NOT NULL FROM cos_objects"
		" WHERE bucket = ?1 AND (key > ?2 OR (?3 AND key = ?2)) ORDER BY key LIMIT ?4",
		&st, err);
	if (r < 0)
		goto fail;
	for (;;) {
		sqlite3_reset(st);
		bind_text(st, 1, bucket);
		/* a copy: the cursor moves while the statement still steps */
		sqlite3_bind_text(st, 2, cursor, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 3, inclusive);
		sqlite3_bind_int(st, 4, (int)max + 1);
		int rc;
		bool reseek = false;
		size_t seen = 0;
		while (!reseek && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			const char *key = (const char *)sqlite3_column_text(st, 0);
			seen++;
			if (strncmp(key, prefix, plen) != 0)
				goto done; /* past the prefix: keys are in byte order */
			if (full) {
				res.truncated = true;
				goto done;
			}
			const char *d = delim ? strstr(key + plen, delim) : NULL;
			if (d) {
				size_t len = (size_t)(d - key) + strlen(delim);
				if (push_prefix(&res, key, len) < 0) {
					r = -ENOMEM;
					goto fail;
				}
				free(cursor);
				cursor = successor(res.prefixes[res.n_prefixes - 1]);
				inclusive = true;
				reseek = true;
			} else {
				struct cos_object *v =
					realloc(res.objects, (res.n_objects + 1) * sizeof(*v));
				if (!v) {
					r = -ENOMEM;
					goto fail;
				}
				res.objects = v;
				struct cos_object *o = &v[res.n_objects++];
				memset(o, 0, sizeof(*o));
				snprintf(o->key, sizeof(o->key), "%s", key);
				o->size = (uint64_t)sqlite3_column_int64(st, 1);
				copy_col(o->etag, sizeof(o->etag), st, 2);
				o->mtime_ms = sqlite3_column_int64(st, 3);
				copy_col(o->content_type, sizeof(o->content_type), st, 4);
				o->checksum.algo = (enum s3_checksum_alg)sqlite3_column_int(st, 5);
				copy_col(o->checksum.value, sizeof(o->checksum.value), st, 6);
				o->parts = (unsigned)sqlite3_column_int(st, 7);
				o->sse = sqlite3_column_int(st, 8);
				free(cursor);
				cursor = strdup(key);
				inclusive = false;
			}
			if (res.n_objects + res.n_prefixes >= max)
				full = true;
		}
		if (reseek) {
			if (!cursor) {
				if (full)
					goto done;
				goto done; /* a prefix of 0xff bytes: nothing sorts after it */
			}
			continue;
		}
		if (rc != SQLITE_DONE) {
			r = db_error(conn, rc, "cos list", err);
			goto fail;
		}
		if (!cursor) {
			r = -ENOMEM;
			goto fail;
		}
		if (seen <= max)
			goto done; /* the table has no more rows after the cursor */
	}
done:
	/* A common prefix as the last entry: a later key of the prefix is no truncation. */
	if (res.truncated) {
		const char *last = res.n_objects && (!res.n_prefixes ||
						     strcmp(res.objects[res.n_objects - 1].key,
							    res.prefixes[res.n_prefixes - 1]) > 0)
					   ? res.objects[res.n_objects - 1].key
					   : res.prefixes[res.n_prefixes - 1];
		res.next = strdup(last);
		if (!res.next) {
			r = -ENOMEM;
			goto fail;
		}
	}
	*ret = res;
	return 0;
fail:
	cos_list_result_done(&res);
	if (r == -ENOMEM)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	return r;
}

/* ---- uploads and parts -------------------------------------------------------------------------
 */

#define UPLOAD_COLS                                                                                \
	"upload_id, bucket, key, initiated_ms, initiator_id, checksum_algo, content_type, meta, "  \
	"sse_wdek, sse_key_version"

static void upload_pub(sqlite3_stmt *st, struct cos_upload *u)
{
	memset(u, 0, sizeof(*u));
	copy_col(u->upload_id, sizeof(u->upload_id), st, 0);
	copy_col(u->bucket, sizeof(u->bucket), st, 1);
	copy_col(u->key, sizeof(u->key), st, 2);
	u->initiated_ms = sqlite3_column_int64(st, 3);
	copy_col(u->initiator_id, sizeof(u->initiator_id), st, 4);
	u->checksum_algo = (enum s3_checksum_alg)sqlite3_column_int(st, 5);
}

int cos_store_upload_insert(sqlite3 *conn, const struct cos_upload_row *u, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "INSERT INTO cos_uploads (" UPLOAD_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?)",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, u->u.upload_id);
	bind_text(st, 2, u->u.bucket);
	bind_text(st, 3, u->u.key);
	sqlite3_bind_int64(st, 4, u->u.initiated_ms);
	bind_text(st, 5, u->u.initiator_id);
	sqlite3_bind_int(st, 6, (int)u->u.checksum_algo);
	bind_text(st, 7, u->content_type);
	bind_text(st, 8, u->meta);
	bind_text(st, 9, u->wdek);
	bind_text(st, 10, u->wdek ? u->key_version : NULL);
	return step_done(conn, st, "cos upload insert", err);
}

int cos_store_upload_get(sqlite3 *conn, const char *bucket, const char *key, const char *upload_id,
			 struct cos_upload_row *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn, "SELECT " UPLOAD_COLS " FROM cos_uploads WHERE upload_id = ?", &st,
			   err);
	if (r < 0)
		return r;
	bind_text(st, 1, upload_id);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return db_error(conn, rc, "cos upload get", err);
	if (rc == SQLITE_DONE ||
	    (bucket && strcmp((const char *)sqlite3_column_text(st, 1), bucket) != 0) ||
	    (key && strcmp((const char *)sqlite3_column_text(st, 2), key) != 0))
		return sealvm_err_set(
			err, -ENOENT, "NoSuchUpload",
			"the specified multipart upload does not exist: the upload ID "
			"may be invalid, or the upload was completed or aborted");
	struct cos_upload_row u = {0};
	upload_pub(st, &u.u);
	copy_col(u.content_type, sizeof(u.content_type), st, 6);
	u.meta = dup_col(st, 7);
	u.wdek = dup_col(st, 8);
	copy_col(u.key_version, sizeof(u.key_version), st, 9);
	if ((sqlite3_column_type(st, 7) != SQLITE_NULL && !u.meta) ||
	    (sqlite3_column_type(st, 8) != SQLITE_NULL && !u.wdek)) {
		cos_upload_row_done(&u);
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	}
	*ret = u;
	return 0;
}

int cos_store_upload_delete(sqlite3 *conn, const char *upload_id, struct cos_files *old,
			    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *sel = NULL, *dp = NULL, *du = NULL;
	int rc, r = db_prepare(conn, "SELECT file FROM cos_parts WHERE upload_id = ?", &sel, err);
	if (r < 0)
		return r;
	bind_text(sel, 1, upload_id);
	while ((rc = sqlite3_step(sel)) == SQLITE_ROW)
		if (old && cos_files_add(old, (const char *)sqlite3_column_text(sel, 0)) < 0)
			return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "cos parts", err);
	r = db_prepare(conn, "DELETE FROM cos_parts WHERE upload_id = ?", &dp, err);
	if (r < 0)
		return r;
	bind_text(dp, 1, upload_id);
	r = step_done(conn, dp, "cos parts delete", err);
	if (r < 0)
		return r;
	r = db_prepare(conn, "DELETE FROM cos_uploads WHERE upload_id = ?", &du, err);
	if (r < 0)
		return r;
	bind_text(du, 1, upload_id);
	return step_done(conn, du, "cos upload delete", err);
}

int cos_store_upload_rewrap(sqlite3 *conn, const char *upload_id, const char *old_wdek,
			    const char *wdek, const char *version, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "UPDATE cos_uploads SET sse_wdek = ?, sse_key_version = ?"
			   " WHERE upload_id = ? AND sse_wdek = ?",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, wdek);
	bind_text(st, 2, version);
	bind_text(st, 3, upload_id);
	bind_text(st, 4, old_wdek);
	return step_done(conn, st, "cos upload rewrap", err);
}

static int uploads_collect(sqlite3 *conn, sqlite3_stmt *st, const char *prefix, unsigned max,
			   struct cos_upload **ret, size_t *ret_n, bool *ret_truncated,
			   struct sealvm_err *err)
{
	_cleanup_free_ struct cos_upload *v = NULL;
	size_t n = 0, plen = prefix ? strlen(prefix) : 0;
	bool truncated = false;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 2);
		if (plen && strncmp(key, prefix, plen) != 0)
			break;
		if (n == max) {
			truncated = true;
			break;
		}
		struct cos_upload *nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv)
			return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
		v = nv;
		upload_pub(st, &v[n++]);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_error(conn, rc, "cos uploads", err);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	if (ret_truncated)
		*ret_truncated = truncated;
	return 0;
}

int cos_store_upload_list(sqlite3 *conn, const char *bucket, const char *prefix, unsigned max,
			  struct cos_upload **ret, size_t *ret_n, bool *ret_truncated,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "SELECT " UPLOAD_COLS " FROM cos_uploads WHERE bucket = ? AND key >= ?"
			   " ORDER BY key, initiated_ms, upload_id",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, bucket);
	bind_text(st, 2, prefix ? prefix : "");
	return uploads_collect(conn, st, prefix, max, ret, ret_n, ret_truncated, err);
}

int cos_store_upload_expired(sqlite3 *conn, int64_t before_ms, unsigned max,
			     struct cos_upload **ret, size_t *ret_n, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "SELECT " UPLOAD_COLS " FROM cos_uploads WHERE initiated_ms < ?"
			   " ORDER BY initiated_ms",
			   &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, before_ms);
	return uploads_collect(conn, st, NULL, max, ret, ret_n, NULL, err);
}

#define PART_COLS "number, size, etag, checksum_algo, checksum, mtime_ms, file"

static void part_row(sqlite3_stmt *st, struct cos_part_row *r)
{
	memset(r, 0, sizeof(*r));
	r->p.number = (unsigned)sqlite3_column_int(st, 0);
	r->p.size = (uint64_t)sqlite3_column_int64(st, 1);
	copy_col(r->p.etag, sizeof(r->p.etag), st, 2);
	r->p.checksum.algo = (enum s3_checksum_alg)sqlite3_column_int(st, 3);
	copy_col(r->p.checksum.value, sizeof(r->p.checksum.value), st, 4);
	r->p.mtime_ms = sqlite3_column_int64(st, 5);
	copy_col(r->file, sizeof(r->file), st, 6);
}

int cos_store_part_get(sqlite3 *conn, const char *upload_id, unsigned number,
		       struct cos_part_row *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn,
			   "SELECT " PART_COLS " FROM cos_parts WHERE upload_id = ? AND number = ?",
			   &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, upload_id);
	sqlite3_bind_int(st, 2, (int)number);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		part_row(st, ret);
		return 0;
	}
	if (rc == SQLITE_DONE)
		return -ENOENT;
	return db_error(conn, rc, "cos part get", err);
}

int cos_store_part_put(sqlite3 *conn, const char *upload_id, const struct cos_part_row *p,
		       struct cos_files *old, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct cos_part_row prev;
	int r = cos_store_part_get(conn, upload_id, p->p.number, &prev, err);
	if (r < 0 && r != -ENOENT)
		return r;
	if (r == 0 && cos_files_add(old, prev.file) < 0)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	r = db_prepare(conn,
		       "INSERT OR REPLACE INTO cos_parts (upload_id, " PART_COLS
		       ") VALUES (?,?,?,?,?,?,?,?)",
		       &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, upload_id);
	sqlite3_bind_int(st, 2, (int)p->p.number);
	sqlite3_bind_int64(st, 3, (sqlite3_int64)p->p.size);
	bind_text(st, 4, p->p.etag);
	sqlite3_bind_int(st, 5, (int)p->p.checksum.algo);
	bind_text(st, 6, p->p.checksum.value);
	sqlite3_bind_int64(st, 7, p->p.mtime_ms);
	bind_text(st, 8, p->file);
	return step_done(conn, st, "cos part insert", err);
}

int cos_store_parts(sqlite3 *conn, const char *upload_id, unsigned marker, unsigned max,
		    struct cos_part **ret, size_t *ret_n, bool *ret_truncated,
		    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_free_ struct cos_part *v = NULL;
	size_t n = 0;
	bool truncated = false;
	int rc, r = db_prepare(conn,
			       "SELECT " PART_COLS
			       " FROM cos_parts WHERE upload_id = ? AND number > ?"
			       " ORDER BY number LIMIT ?",
			       &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, upload_id);
	sqlite3_bind_int(st, 2, (int)marker);
	sqlite3_bind_int(st, 3, (int)max + 1);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == max) {
			truncated = true;
			break;
		}
		struct cos_part *nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv)
			return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
		v = nv;
		struct cos_part_row pr;
		part_row(st, &pr);
		v[n++] = pr.p;
	}
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return db_error(conn, rc, "cos parts", err);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	*ret_truncated = truncated;
	return 0;
}

/* ---- audit -------------------------------------------------------------------------------------
 */

int cos_record_new(const struct audit_event *ev, struct audit_record **ret, struct sealvm_err *err)
{
	*ret = NULL;
	if (!ev)
		return 0;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = audit_record_new(ev, ret, &e);
	if (r < 0)
		return sealvm_err_set(err, -EIO, "AUDIT_UNAVAILABLE",
				      "the audit event could not be built (%s), so the request was "
				      "refused",
				      e.message);
	return 0;
}

int cos_store_audit(struct cos *c, sqlite3 *conn, const struct audit_record *rec,
		    struct sealvm_err *err)
{
	if (!rec)
		return 0;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = audit_record_append(conn, rec, c->deps.chain_key, NULL, &e);
	if (r < 0)
		return sealvm_err_set(err, -EIO, "AUDIT_UNAVAILABLE",
				      "the audit event could not be written (%s), so the request "
				      "was refused; retry later",
				      e.message);
	return 0;
}

struct audit_job {
	struct cos *c;
	struct audit_record *rec;
};

static int audit_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct audit_job *j = userdata;
	return cos_store_audit(j->c, conn, j->rec, err);
}

int cos_audit(struct cos *c, const struct audit_event *ev, struct sealvm_err *err)
{
	struct audit_job j = {.c = c};
	int r = cos_record_new(ev, &j.rec, err);
	if (r >= 0 && j.rec) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		r = db_write_flags(c->deps.db, audit_run, &j, DB_JOB_APPEND_ONLY, &e);
		if (r < 0)
			r = sealvm_err_set(err, -EIO, "AUDIT_UNAVAILABLE",
					   "the audit event could not be written (%s); retry later",
					   e.message);
	}
	audit_record_free(j.rec);
	return r;
}
