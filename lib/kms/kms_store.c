// SPDX-License-Identifier: Apache-2.0
/*
 * kms_store.c — the key service's tables: SQL only.
 *
 * Rows hold metadata, keystore references (soft: sealed blobs; pkcs11: object
 * ids) and sealed standard-key material — never key material in clear. Every
 * statement comes from db_prepare, which keeps it prepared per connection:
 * the unwrap path (key by id or alias, version by id) parses no SQL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms_internal.h"

const struct db_migration kms_migrations[] = {
	{"kms", 1,
	 "CREATE TABLE kms_keys ("
	 " id TEXT PRIMARY KEY,"
	 " account_id TEXT NOT NULL,"
	 " instance TEXT NOT NULL,"
	 " crn TEXT NOT NULL,"
	 " name TEXT NOT NULL,"
	 " description TEXT NOT NULL DEFAULT '',"
	 " key_ring TEXT NOT NULL DEFAULT 'default',"
	 " extractable INTEGER NOT NULL,"
	 " imported INTEGER NOT NULL,"
	 " state INTEGER NOT NULL,"
	 " bits INTEGER NOT NULL,"
	 " created_ms INTEGER NOT NULL,"
	 " created_by TEXT NOT NULL,"
	 " updated_ms INTEGER NOT NULL,"
	 " updated_by TEXT NOT NULL,"
	 " action_ms INTEGER NOT NULL,"
	 " rotated_ms INTEGER NOT NULL DEFAULT 0,"
	 " expiration_ms INTEGER NOT NULL DEFAULT 0,"
	 " version INTEGER NOT NULL,"
	 " dual_auth INTEGER NOT NULL DEFAULT 0,"
	 " deletion_by TEXT NOT NULL DEFAULT '',"
	 " deletion_expires_ms INTEGER NOT NULL DEFAULT 0,"
	 " deleted_ms INTEGER NOT NULL DEFAULT 0,"
	 " deleted_by TEXT NOT NULL DEFAULT '',"
	 " payload BLOB);" /* standard keys: the material sealed under the master key */
	 "CREATE INDEX kms_keys_instance ON kms_keys(instance, created_ms, id);"
	 "CREATE TABLE kms_key_versions ("
	 " key_id TEXT NOT NULL REFERENCES kms_keys(id) ON DELETE CASCADE,"
	 " version INTEGER NOT NULL,"
	 " id TEXT NOT NULL UNIQUE,"
	 " created_ms INTEGER NOT NULL,"
	 " bytes INTEGER NOT NULL,"
	 " ref BLOB NOT NULL," /* the keystore's reference: a sealed blob or an object id */
	 " PRIMARY KEY (key_id, version));"
	 "CREATE TABLE kms_aliases ("
	 " instance TEXT NOT NULL,"
	 " alias TEXT NOT NULL,"
	 " key_id TEXT NOT NULL REFERENCES kms_keys(id) ON DELETE CASCADE,"
	 " created_ms INTEGER NOT NULL,"
	 " created_by TEXT NOT NULL,"
	 " PRIMARY KEY (instance, alias));"
	 "CREATE INDEX kms_aliases_key ON kms_aliases(key_id);"
	 "CREATE TABLE kms_registrations ("
	 " key_id TEXT NOT NULL REFERENCES kms_keys(id) ON DELETE CASCADE,"
	 " resource_crn TEXT NOT NULL,"
	 " instance TEXT NOT NULL,"
	 " service TEXT NOT NULL,"
	 " description TEXT NOT NULL DEFAULT '',"
	 " prevent_deletion INTEGER NOT NULL,"
	 " created_ms INTEGER NOT NULL,"
	 " created_by TEXT NOT NULL,"
	 " updated_ms INTEGER NOT NULL,"
	 " updated_by TEXT NOT NULL,"
	 " version_id TEXT NOT NULL,"
	 " version_ms INTEGER NOT NULL,"
	 " PRIMARY KEY (key_id, resource_crn));"
	 "CREATE INDEX kms_registrations_instance ON kms_registrations(instance, resource_crn);"
	 "CREATE TABLE kms_import_tokens ("
	 " instance TEXT PRIMARY KEY,"
	 " account_id TEXT NOT NULL,"
	 " created_ms INTEGER NOT NULL,"
	 " expires_ms INTEGER NOT NULL,"
	 " max_retrievals INTEGER NOT NULL,"
	 " remaining INTEGER NOT NULL,"
	 " nonce BLOB NOT NULL,"
	 " name TEXT NOT NULL,"
	 " pub BLOB NOT NULL,"
	 " ref BLOB NOT NULL);" /* the private key: sealed PKCS#8, or a token object id */
	 "CREATE TABLE kms_instance_policies ("
	 " instance TEXT PRIMARY KEY,"
	 " dual_auth INTEGER NOT NULL,"
	 " updated_ms INTEGER NOT NULL,"
	 " updated_by TEXT NOT NULL);"},
};
const size_t kms_n_migrations = ELEMENTSOF(kms_migrations);

/* ---- the statements of the read path (db_prepare caches them per connection) -------- */

#define KEY_COLS                                                                                   \
	"k.id, k.account_id, k.instance, k.crn, k.name, k.description, k.key_ring, "               \
	"k.extractable, k.imported, k.state, k.bits, k.created_ms, k.created_by, k.updated_ms, "   \
	"k.updated_by, k.action_ms, k.rotated_ms, k.expiration_ms, k.version, k.dual_auth, "       \
	"k.deletion_by, k.deletion_expires_ms, k.deleted_ms, k.deleted_by, v.id, v.created_ms"
#define KEY_FROM                                                                                   \
	" FROM kms_keys k JOIN kms_key_versions v ON v.key_id = k.id AND v.version = k.version"
#define VERSION_COLS "key_id, version, id, created_ms, bytes, ref"

static const char *const read_sql[KMS__ST_MAX] = {
	[KMS_ST_KEY_BY_ID] = "SELECT " KEY_COLS KEY_FROM " WHERE k.id = ?1 AND k.instance = ?2",
	[KMS_ST_KEY_BY_ALIAS] = "SELECT " KEY_COLS KEY_FROM " JOIN kms_aliases a ON a.key_id = k.id"
				" WHERE a.alias = ?1 AND a.instance = ?2 AND k.instance = ?2",
	[KMS_ST_VERSION_BY_ID] =
		"SELECT " VERSION_COLS " FROM kms_key_versions WHERE key_id = ?1 AND id = ?2",
	[KMS_ST_VERSION_BY_NUMBER] =
		"SELECT " VERSION_COLS " FROM kms_key_versions WHERE key_id = ?1 AND version = ?2",
};

/* ---- keys ----------------------------------------------------------------------------------- */

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	snprintf(dst, n, "%s", v ? (const char *)v : "");
}

static void key_row(sqlite3_stmt *st, struct kms_key *k)
{
	memset(k, 0, sizeof(*k));
	copy_col(k->id, sizeof(k->id), st, 0);
	copy_col(k->account_id, sizeof(k->account_id), st, 1);
	copy_col(k->instance, sizeof(k->instance), st, 2);
	copy_col(k->crn, sizeof(k->crn), st, 3);
	copy_col(k->name, sizeof(k->name), st, 4);
	copy_col(k->description, sizeof(k->description), st, 5);
	copy_col(k->key_ring, sizeof(k->key_ring), st, 6);
	k->extractable = sqlite3_column_int(st, 7) != 0;
	k->imported = sqlite3_column_int(st, 8) != 0;
	k->state = sqlite3_column_int(st, 9);
	k->bits = sqlite3_column_int(st, 10);
	k->created_ms = sqlite3_column_int64(st, 11);
	copy_col(k->created_by, sizeof(k->created_by), st, 12);
	k->updated_ms = sqlite3_column_int64(st, 13);
	copy_col(k->updated_by, sizeof(k->updated_by), st, 14);
	k->action_ms = sqlite3_column_int64(st, 15);
	k->rotated_ms = sqlite3_column_int64(st, 16);
	k->expiration_ms = sqlite3_column_int64(st, 17);
	k->version = sqlite3_column_int(st, 18);
	k->dual_auth = sqlite3_column_int(st, 19) != 0;
	copy_col(k->deletion_by, sizeof(k->deletion_by), st, 20);
	k->deletion_expires_ms = sqlite3_column_int64(st, 21);
	k->deleted_ms = sqlite3_column_int64(st, 22);
	copy_col(k->deleted_by, sizeof(k->deleted_by), st, 23);
	copy_col(k->version_id, sizeof(k->version_id), st, 24);
	k->version_ms = sqlite3_column_int64(st, 25);
}

static int key_not_found(struct sealvm_err *err, const char *what)
{
	return sealvm_err_set(err, -ENOENT, "KEY_NOT_FOUND_ERR",
			      "Key does not exist: no key '%s' in this instance", what);
}

int kms_store_key_get(struct kms *kms, sqlite3 *conn, const char *instance, const char *id_or_alias,
		      struct kms_key *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	enum kms_stmt_id which =
		kms_uuid_valid(id_or_alias) ? KMS_ST_KEY_BY_ID : KMS_ST_KEY_BY_ALIAS;
	int pr = db_prepare(conn, read_sql[which], &st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, id_or_alias, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, instance, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st), r = 0;
	if (rc == SQLITE_ROW)
		key_row(st, ret);
	else if (rc == SQLITE_DONE)
		r = key_not_found(err, id_or_alias);
	else
		r = db_error(conn, rc, "kms key get", err);
	return r;
}

int kms_store_key_get_w(sqlite3 *conn, const char *instance, const char *key_id,
			struct kms_key *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn, read_sql[KMS_ST_KEY_BY_ID], &st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, instance, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		key_row(st, ret);
		return 0;
	}
	if (rc == SQLITE_DONE)
		return key_not_found(err, key_id);
	return db_error(conn, rc, "kms key get", err);
}

int kms_store_key_insert(sqlite3 *conn, const struct kms_key *k, const unsigned char *payload,
			 size_t payload_len, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(
			conn,
			"INSERT INTO kms_keys (id, account_id, instance, crn, name, description, key_ring,"
			" extractable, imported, state, bits, created_ms, created_by, updated_ms,"
			" updated_by, action_ms, rotated_ms, expiration_ms, version, dual_auth, payload)"
			" VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
			&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, k->account_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, k->instance, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, k->crn, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, k->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, k->description, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, k->key_ring, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 8, k->extractable);
	sqlite3_bind_int(st, 9, k->imported);
	sqlite3_bind_int(st, 10, k->state);
	sqlite3_bind_int(st, 11, k->bits);
	sqlite3_bind_int64(st, 12, k->created_ms);
	sqlite3_bind_text(st, 13, k->created_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 14, k->updated_ms);
	sqlite3_bind_text(st, 15, k->updated_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 16, k->action_ms);
	sqlite3_bind_int64(st, 17, k->rotated_ms);
	sqlite3_bind_int64(st, 18, k->expiration_ms);
	sqlite3_bind_int(st, 19, k->version);
	sqlite3_bind_int(st, 20, k->dual_auth);
	if (payload)
		sqlite3_bind_blob(st, 21, payload, (int)payload_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms key insert", err);
}

int kms_store_key_update(sqlite3 *conn, const struct kms_key *k, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(
			conn,
			"UPDATE kms_keys SET state = ?2, updated_ms = ?3, updated_by = ?4, action_ms = ?5,"
			" rotated_ms = ?6, version = ?7, dual_auth = ?8, deletion_by = ?9,"
			" deletion_expires_ms = ?10, deleted_ms = ?11, deleted_by = ?12, imported = ?13"
			" WHERE id = ?1",
			&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, k->id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, k->state);
	sqlite3_bind_int64(st, 3, k->updated_ms);
	sqlite3_bind_text(st, 4, k->updated_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, k->action_ms);
	sqlite3_bind_int64(st, 6, k->rotated_ms);
	sqlite3_bind_int(st, 7, k->version);
	sqlite3_bind_int(st, 8, k->dual_auth);
	sqlite3_bind_text(st, 9, k->deletion_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 10, k->deletion_expires_ms);
	sqlite3_bind_int64(st, 11, k->deleted_ms);
	sqlite3_bind_text(st, 12, k->deleted_by, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 13, k->imported);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "kms key update", err);
	return sqlite3_changes(conn) ? 0 : key_not_found(err, k->id);
}

int kms_store_key_delete_all(sqlite3 *conn, const char *key_id, struct sealvm_err *err)
{
	static const char *const sql[] = {
		"DELETE FROM kms_registrations WHERE key_id = ?1",
		"DELETE FROM kms_aliases WHERE key_id = ?1",
		"DELETE FROM kms_key_versions WHERE key_id = ?1",
		"DELETE FROM kms_keys WHERE id = ?1",
	};
	for (size_t i = 0; i < ELEMENTSOF(sql); i++) {
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		int rc, pr = db_prepare(conn, sql[i], &st, err);
		if (pr < 0)
			return pr;
		sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc != SQLITE_DONE)
			return db_error(conn, rc, "kms purge", err);
	}
	return 0;
}

int kms_store_key_payload(sqlite3 *conn, const char *key_id, unsigned char **ret, size_t *ret_len,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn, "SELECT payload FROM kms_keys WHERE id = ?1", &st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return key_not_found(err, key_id);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "kms payload", err);
	int n = sqlite3_column_bytes(st, 0);
	const void *b = sqlite3_column_blob(st, 0);
	if (!b || n <= 0)
		return sealvm_err_set(err, -EIO, "INCOMPLETE_METADATA_ERR",
				      "Key metadata became corrupted: key %s has no material",
				      key_id);
	unsigned char *copy = malloc((size_t)n);
	if (!copy)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	memcpy(copy, b, (size_t)n);
	*ret = copy;
	*ret_len = (size_t)n;
	return 0;
}

/* The state as the API shows it, in SQL (see kms_effective_state). */
#define EFFECTIVE_STATE                                                                            \
	"(CASE WHEN k.state IN (1, 2) AND k.expiration_ms > 0 AND k.expiration_ms <= ?6"           \
	" THEN 3 ELSE k.state END)"

int kms_store_key_list(sqlite3 *conn, const struct kms_list_query *q,
		       int (*fn)(const struct kms_key *k, void *arg), void *arg,
		       struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT " KEY_COLS KEY_FROM " WHERE k.instance = ?1"
				" AND (?2 IS NULL OR k.key_ring = ?2)"
				" AND ((?3 >> " EFFECTIVE_STATE ") & 1) = 1"
				" AND (?7 < 0 OR k.extractable = ?7)"
				" ORDER BY k.created_ms, k.id LIMIT ?4 OFFSET ?5",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, q->instance, -1, SQLITE_STATIC);
	if (q->key_ring)
		sqlite3_bind_text(st, 2, q->key_ring, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, q->state_mask);
	sqlite3_bind_int64(st, 4, q->limit);
	sqlite3_bind_int64(st, 5, q->offset);
	sqlite3_bind_int64(st, 6, q->now_ms);
	sqlite3_bind_int(st, 7, q->extractable);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct kms_key k;
		key_row(st, &k);
		int r = fn(&k, arg);
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms key list", err);
}

/* ---- versions ---------------------------------------------------------------------------------
 */

static int version_row(sqlite3_stmt *st, struct kms_version *v, struct sealvm_err *err)
{
	memset(v, 0, sizeof(*v));
	copy_col(v->key_id, sizeof(v->key_id), st, 0);
	v->version = sqlite3_column_int(st, 1);
	copy_col(v->id, sizeof(v->id), st, 2);
	v->created_ms = sqlite3_column_int64(st, 3);
	v->bytes = sqlite3_column_int(st, 4);
	int n = sqlite3_column_bytes(st, 5);
	const void *b = sqlite3_column_blob(st, 5);
	if (!b || n <= 0 || (size_t)n > sizeof(v->ref))
		return sealvm_err_set(err, -EIO, "INCOMPLETE_METADATA_ERR",
				      "Key metadata became corrupted: version %s has no usable "
				      "keystore reference",
				      v->id);
	memcpy(v->ref, b, (size_t)n);
	v->ref_len = (size_t)n;
	return 0;
}

int kms_store_version_get(struct kms *kms, sqlite3 *conn, const char *key_id,
			  const char *version_id, int number, struct kms_version *ret,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int pr = db_prepare(conn,
			    read_sql[version_id ? KMS_ST_VERSION_BY_ID : KMS_ST_VERSION_BY_NUMBER],
			    &st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	if (version_id)
		sqlite3_bind_text(st, 2, version_id, -1, SQLITE_STATIC);
	else
		sqlite3_bind_int(st, 2, number);
	int rc = sqlite3_step(st), r;
	if (rc == SQLITE_ROW)
		r = version_row(st, ret, err);
	else if (rc == SQLITE_DONE)
		r = sealvm_err_set(err, -ENOENT, "KEY_VERSION_NOT_FOUND",
				   "key %s has no such version", key_id);
	else
		r = db_error(conn, rc, "kms version get", err);
	return r;
}

int kms_store_version_insert(sqlite3 *conn, const struct kms_version *v, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"INSERT INTO kms_key_versions (" VERSION_COLS
				") VALUES (?1,?2,?3,?4,?5,?6)",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, v->key_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, v->version);
	sqlite3_bind_text(st, 3, v->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, v->created_ms);
	sqlite3_bind_int(st, 5, v->bytes);
	sqlite3_bind_blob(st, 6, v->ref, (int)v->ref_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms version insert", err);
}

int kms_store_version_list(sqlite3 *conn, const char *key_id,
			   int (*fn)(const struct kms_version *v, void *arg), void *arg,
			   struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT " VERSION_COLS " FROM kms_key_versions WHERE key_id = ?1"
				" ORDER BY version DESC",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct kms_version v;
		int r = version_row(st, &v, err);
		if (r >= 0)
			r = fn(&v, arg);
		explicit_bzero(&v, sizeof(v));
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms version list", err);
}

/* ---- aliases ------------------------------------------------------------------------------------
 */

int kms_store_alias_insert(sqlite3 *conn, const char *instance, const char *alias,
			   const char *key_id, int64_t now_ms, const char *by,
			   struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"INSERT INTO kms_aliases (instance, alias, key_id, created_ms,"
				" created_by) VALUES (?1,?2,?3,?4,?5)",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, now_ms);
	sqlite3_bind_text(st, 5, by, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return sealvm_err_set(err, -EEXIST, "KEY_ALIAS_NOT_UNIQUE_ERR",
				      "the alias '%s' already names a key in this instance", alias);
	return db_error(conn, rc, "kms alias insert", err);
}

int kms_store_alias_delete(sqlite3 *conn, const char *instance, const char *alias,
			   const char *key_id, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(
			conn,
			"DELETE FROM kms_aliases WHERE instance = ?1 AND alias = ?2 AND key_id = ?3",
			&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, alias, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, key_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "kms alias delete", err);
	return sqlite3_changes(conn) ? 0
				     : sealvm_err_set(err, -ENOENT, "KEY_ALIAS_NOT_FOUND_ERR",
						      "the key has no alias '%s'", alias);
}

int kms_store_alias_count(sqlite3 *conn, const char *instance, const char *key_id, int *ret_count,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(
			conn,
			"SELECT count(*) FROM kms_aliases WHERE instance = ?1 AND (?2 IS NULL OR key_id = ?2)",
			&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	if (key_id)
		sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "kms alias count", err);
	*ret_count = sqlite3_column_int(st, 0);
	return 0;
}

int kms_store_alias_list(sqlite3 *conn, const char *key_id,
			 int (*fn)(const char *alias, int64_t created_ms, const char *by,
				   void *arg),
			 void *arg, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT alias, created_ms, created_by FROM kms_aliases"
				" WHERE key_id = ?1 ORDER BY created_ms, alias",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int r = fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
			   (const char *)sqlite3_column_text(st, 2), arg);
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms alias list", err);
}

/* ---- instance policies
 * ---------------------------------------------------------------------------- */

int kms_store_policy_get(sqlite3 *conn, const char *instance, bool *ret_dual,
			 int64_t *ret_updated_ms, char *ret_updated_by, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT dual_auth, updated_ms, updated_by FROM"
				" kms_instance_policies WHERE instance = ?1",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	*ret_dual = false;
	if (ret_updated_ms)
		*ret_updated_ms = 0;
	if (ret_updated_by)
		ret_updated_by[0] = '\0';
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "kms policy get", err);
	*ret_dual = sqlite3_column_int(st, 0) != 0;
	if (ret_updated_ms)
		*ret_updated_ms = sqlite3_column_int64(st, 1);
	if (ret_updated_by)
		copy_col(ret_updated_by, KMS_IAM_ID_MAX, st, 2);
	return 1;
}

int kms_store_policy_put(sqlite3 *conn, const char *instance, bool dual, int64_t now_ms,
			 const char *by, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"INSERT INTO kms_instance_policies (instance, dual_auth,"
				" updated_ms, updated_by) VALUES (?1,?2,?3,?4)"
				" ON CONFLICT(instance) DO UPDATE SET dual_auth = ?2,"
				" updated_ms = ?3, updated_by = ?4",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, dual);
	sqlite3_bind_int64(st, 3, now_ms);
	sqlite3_bind_text(st, 4, by, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms policy put", err);
}

/* ---- registrations -----------------------------------------------------------------------------
 */

#define REG_COLS                                                                                   \
	"key_id, resource_crn, instance, service, description, prevent_deletion, created_ms,"      \
	" created_by, updated_ms, updated_by, version_id, version_ms"

static void reg_row(sqlite3_stmt *st, struct kms_registration *r)
{
	memset(r, 0, sizeof(*r));
	copy_col(r->key_id, sizeof(r->key_id), st, 0);
	copy_col(r->resource_crn, sizeof(r->resource_crn), st, 1);
	copy_col(r->instance, sizeof(r->instance), st, 2);
	copy_col(r->service, sizeof(r->service), st, 3);
	copy_col(r->description, sizeof(r->description), st, 4);
	r->prevent_deletion = sqlite3_column_int(st, 5) != 0;
	r->created_ms = sqlite3_column_int64(st, 6);
	copy_col(r->created_by, sizeof(r->created_by), st, 7);
	r->updated_ms = sqlite3_column_int64(st, 8);
	copy_col(r->updated_by, sizeof(r->updated_by), st, 9);
	copy_col(r->version_id, sizeof(r->version_id), st, 10);
	r->version_ms = sqlite3_column_int64(st, 11);
}

int kms_store_reg_get(sqlite3 *conn, const char *key_id, const char *crn,
		      struct kms_registration *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT " REG_COLS " FROM kms_registrations"
				" WHERE key_id = ?1 AND resource_crn = ?2",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, crn, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		reg_row(st, ret);
		return 0;
	}
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "REGISTRATION_NOT_FOUND_ERR",
				      "the key has no registration for that resource");
	return db_error(conn, rc, "kms registration get", err);
}

int kms_store_reg_put(sqlite3 *conn, const struct kms_registration *r, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(
			conn,
			"INSERT INTO kms_registrations (" REG_COLS
			") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,"
			"?10,?11,?12) ON CONFLICT(key_id, resource_crn) DO UPDATE SET description = ?5,"
			" prevent_deletion = ?6, updated_ms = ?9, updated_by = ?10",
			&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, r->key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->resource_crn, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, r->instance, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, r->service, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, r->description, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 6, r->prevent_deletion);
	sqlite3_bind_int64(st, 7, r->created_ms);
	sqlite3_bind_text(st, 8, r->created_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 9, r->updated_ms);
	sqlite3_bind_text(st, 10, r->updated_by, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, r->version_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 12, r->version_ms);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms registration put", err);
}

int kms_store_reg_delete(sqlite3 *conn, const char *key_id, const char *crn, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(
			conn,
			"DELETE FROM kms_registrations WHERE key_id = ?1 AND resource_crn = ?2",
			&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, crn, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "kms registration delete", err);
	return sqlite3_changes(conn)
		       ? 0
		       : sealvm_err_set(err, -ENOENT, "REGISTRATION_NOT_FOUND_ERR",
					"the key has no registration for that resource");
}

int kms_store_reg_count(sqlite3 *conn, const char *key_id, int *ret_all, int *ret_prevent,
			struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT count(*), coalesce(sum(prevent_deletion), 0)"
				" FROM kms_registrations WHERE key_id = ?1",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "kms registration count", err);
	*ret_all = sqlite3_column_int(st, 0);
	*ret_prevent = sqlite3_column_int(st, 1);
	return 0;
}

int kms_store_reg_list(sqlite3 *conn, const char *instance, const char *key_id,
		       const char *crn_filter, unsigned limit, unsigned offset,
		       int (*fn)(const struct kms_registration *r, void *arg), void *arg,
		       struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT " REG_COLS " FROM kms_registrations WHERE instance = ?1"
				" AND (?2 IS NULL OR key_id = ?2)"
				" AND (?3 IS NULL OR resource_crn = ?3)"
				" ORDER BY created_ms, key_id, resource_crn LIMIT ?4 OFFSET ?5",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	if (key_id)
		sqlite3_bind_text(st, 2, key_id, -1, SQLITE_STATIC);
	if (crn_filter)
		sqlite3_bind_text(st, 3, crn_filter, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, limit);
	sqlite3_bind_int64(st, 5, offset);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct kms_registration r;
		reg_row(st, &r);
		int x = fn(&r, arg);
		if (x < 0)
			return x;
	}
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms registration list", err);
}

/* ---- import tokens
 * ------------------------------------------------------------------------------- */

static int blob_copy(sqlite3_stmt *st, int col, unsigned char **ret, size_t *ret_len)
{
	int n = sqlite3_column_bytes(st, col);
	const void *b = sqlite3_column_blob(st, col);
	if (!b || n <= 0)
		return -EBADMSG;
	*ret = malloc((size_t)n);
	if (!*ret)
		return -ENOMEM;
	memcpy(*ret, b, (size_t)n);
	*ret_len = (size_t)n;
	return 0;
}

int kms_store_token_get(sqlite3 *conn, const char *instance, struct kms_import_token *ret,
			struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"SELECT instance, account_id, created_ms, expires_ms,"
				" max_retrievals, remaining, nonce, name, pub, ref"
				" FROM kms_import_tokens WHERE instance = ?1",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "IMPORT_TOKEN_NOT_FOUND_ERR",
				      "this instance has no import token: create one with POST "
				      "/api/v2/import_token");
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "kms import token get", err);
	memset(ret, 0, sizeof(*ret));
	copy_col(ret->instance, sizeof(ret->instance), st, 0);
	copy_col(ret->account_id, sizeof(ret->account_id), st, 1);
	ret->created_ms = sqlite3_column_int64(st, 2);
	ret->expires_ms = sqlite3_column_int64(st, 3);
	ret->max_retrievals = sqlite3_column_int(st, 4);
	ret->remaining = sqlite3_column_int(st, 5);
	if (sqlite3_column_bytes(st, 6) == (int)sizeof(ret->nonce))
		memcpy(ret->nonce, sqlite3_column_blob(st, 6), sizeof(ret->nonce));
	copy_col(ret->name, sizeof(ret->name), st, 7);
	int r = blob_copy(st, 8, &ret->pub, &ret->pub_len);
	if (r >= 0)
		r = blob_copy(st, 9, &ret->ref, &ret->ref_len);
	if (r < 0) {
		kms_import_token_done(ret);
		return sealvm_err_set(err, r, "INCOMPLETE_METADATA_ERR",
				      "the import token's record is damaged: create a new one");
	}
	return 0;
}

int kms_store_token_put(sqlite3 *conn, const struct kms_import_token *t, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"INSERT OR REPLACE INTO kms_import_tokens (instance, account_id,"
				" created_ms, expires_ms, max_retrievals, remaining, nonce, name,"
				" pub, ref) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, t->instance, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t->account_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, t->created_ms);
	sqlite3_bind_int64(st, 4, t->expires_ms);
	sqlite3_bind_int(st, 5, t->max_retrievals);
	sqlite3_bind_int(st, 6, t->remaining);
	sqlite3_bind_blob(st, 7, t->nonce, sizeof(t->nonce), SQLITE_STATIC);
	sqlite3_bind_text(st, 8, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 9, t->pub, (int)t->pub_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 10, t->ref, (int)t->ref_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "kms import token put", err);
}

int kms_store_token_retrieve(sqlite3 *conn, const char *instance, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, pr = db_prepare(conn,
				"UPDATE kms_import_tokens SET remaining = remaining - 1"
				" WHERE instance = ?1 AND remaining > 0",
				&st, err);
	if (pr < 0)
		return pr;
	sqlite3_bind_text(st, 1, instance, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "kms import token retrieve", err);
	return sqlite3_changes(conn) ? 0
				     : sealvm_err_set(err, -EAGAIN, "IMPORT_TOKEN_EXPIRED_ERR",
						      "The import token has expired: it has been "
						      "retrieved as many times as it allows "
						      "(maxAllowedRetrievals); create a new one");
}
