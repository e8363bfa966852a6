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

/* ---- statements: prepare, bind, step -------------------------------------------------------- */

/*
 * One value for a statement's next parameter (?1, ?2, … in the order given).
 * A NULL text or blob binds SQL NULL, as a parameter left unbound would.
 */
struct bind {
	enum { BIND_TEXT, BIND_INT, BIND_BLOB } type;
	const char *text;
	int64_t i;
	const void *blob;
	size_t len;
};

static struct bind b_text(const char *s)
{
	return (struct bind){.type = BIND_TEXT, .text = s};
}

static struct bind b_int(int64_t i)
{
	return (struct bind){.type = BIND_INT, .i = i};
}

static struct bind b_blob(const void *p, size_t len)
{
	return (struct bind){.type = BIND_BLOB, .blob = p, .len = len};
}

/* The values of a statement's parameters, as the two arguments (array, count) taken below. */
#define BINDS(...)                                                                                 \
	(const struct bind[]){__VA_ARGS__}, ELEMENTSOF(((const struct bind[]){__VA_ARGS__}))

/* @sql from db_prepare's cache into *@ret, with @binds bound. Errors: db_prepare's. */
static int prepare(sqlite3 *conn, const char *sql, const struct bind *binds, size_t n,
		   sqlite3_stmt **ret, struct sealvm_err *err)
{
	int r = db_prepare(conn, sql, ret, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		int at = (int)i + 1;
		switch (binds[i].type) {
		case BIND_TEXT:
			sqlite3_bind_text(*ret, at, binds[i].text, -1, SQLITE_STATIC);
			break;
		case BIND_INT:
			sqlite3_bind_int64(*ret, at, binds[i].i);
			break;
		case BIND_BLOB:
			sqlite3_bind_blob(*ret, at, binds[i].blob, (int)binds[i].len,
					  SQLITE_STATIC);
			break;
		}
	}
	return 0;
}

/* Steps @st: 1 with a row, 0 at the end, or db_error's errno (@what names the statement). */
static int step(sqlite3 *conn, sqlite3_stmt *st, const char *what, struct sealvm_err *err)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_error(conn, rc, what, err);
}

/* prepare, then step once: 1 with the first row in *@st, 0 when there is none, or an errno. */
static int query(sqlite3 *conn, const char *what, const char *sql, const struct bind *binds,
		 size_t n, sqlite3_stmt **st, struct sealvm_err *err)
{
	int r = prepare(conn, sql, binds, n, st, err);
	return r < 0 ? r : step(conn, *st, what, err);
}

/*
 * Runs a statement that returns no rows (INSERT, UPDATE, DELETE): 0, or an
 * errno. sqlite3_changes(@conn) then tells how many rows it changed.
 */
static int exec(sqlite3 *conn, const char *what, const char *sql, const struct bind *binds,
		size_t n, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, sql, binds, n, &st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, what, err);
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	snprintf(dst, n, "%s", v ? (const char *)v : "");
}

/* A new copy of blob column @col: -EBADMSG when it is empty, -ENOMEM. */
static int blob_copy(sqlite3_stmt *st, int col, unsigned char **ret, size_t *ret_len)
{
	int n = sqlite3_column_bytes(st, col);
	const void *b = sqlite3_column_blob(st, col);
	if (!b || n <= 0)
		return -EBADMSG;
	unsigned char *copy = malloc((size_t)n);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, b, (size_t)n);
	*ret = copy;
	*ret_len = (size_t)n;
	return 0;
}

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

/* The key @which (by id or by alias) names as @id_or_alias in @instance. */
static int key_get(sqlite3 *conn, enum kms_stmt_id which, const char *instance,
		   const char *id_or_alias, struct kms_key *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = query(conn, "kms key get", read_sql[which],
		      BINDS(b_text(id_or_alias), b_text(instance)), &st, err);
	if (r == 0)
		return key_not_found(err, id_or_alias);
	if (r > 0)
		key_row(st, ret);
	return r < 0 ? r : 0;
}

int kms_store_key_get(struct kms *kms, sqlite3 *conn, const char *instance, const char *id_or_alias,
		      struct kms_key *ret, struct sealvm_err *err)
{
	return key_get(conn, kms_uuid_valid(id_or_alias) ? KMS_ST_KEY_BY_ID : KMS_ST_KEY_BY_ALIAS,
		       instance, id_or_alias, ret, err);
}

int kms_store_key_get_w(sqlite3 *conn, const char *instance, const char *key_id,
			struct kms_key *ret, struct sealvm_err *err)
{
	return key_get(conn, KMS_ST_KEY_BY_ID, instance, key_id, ret, err);
}

int kms_store_key_insert(sqlite3 *conn, const struct kms_key *k, const unsigned char *payload,
			 size_t payload_len, struct sealvm_err *err)
{
	return exec(
		conn, "kms key insert",
		"INSERT INTO kms_keys (id, account_id, instance, crn, name, description, key_ring,"
		" extractable, imported, state, bits, created_ms, created_by, updated_ms,"
		" updated_by, action_ms, rotated_ms, expiration_ms, version, dual_auth, payload)"
		" VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)",
		BINDS(b_text(k->id), b_text(k->account_id), b_text(k->instance), b_text(k->crn),
		      b_text(k->name), b_text(k->description), b_text(k->key_ring),
		      b_int(k->extractable), b_int(k->imported), b_int(k->state), b_int(k->bits),
		      b_int(k->created_ms), b_text(k->created_by), b_int(k->updated_ms),
		      b_text(k->updated_by), b_int(k->action_ms), b_int(k->rotated_ms),
		      b_int(k->expiration_ms), b_int(k->version), b_int(k->dual_auth),
		      b_blob(payload, payload_len)),
		err);
}

int kms_store_key_update(sqlite3 *conn, const struct kms_key *k, struct sealvm_err *err)
{
	int r = exec(
		conn, "kms key update",
		"UPDATE kms_keys SET state = ?2, updated_ms = ?3, updated_by = ?4, action_ms = ?5,"
		" rotated_ms = ?6, version = ?7, dual_auth = ?8, deletion_by = ?9,"
		" deletion_expires_ms = ?10, deleted_ms = ?11, deleted_by = ?12, imported = ?13"
		" WHERE id = ?1",
		BINDS(b_text(k->id), b_int(k->state), b_int(k->updated_ms), b_text(k->updated_by),
		      b_int(k->action_ms), b_int(k->rotated_ms), b_int(k->version),
		      b_int(k->dual_auth), b_text(k->deletion_by), b_int(k->deletion_expires_ms),
		      b_int(k->deleted_ms), b_text(k->deleted_by), b_int(k->imported)),
		err);
	if (r >= 0 && sqlite3_changes(conn) == 0)
		r = key_not_found(err, k->id);
	return r;
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
		int r = exec(conn, "kms purge", sql[i], BINDS(b_text(key_id)), err);
		if (r < 0)
			return r;
	}
	return 0;
}

int kms_store_key_payload(sqlite3 *conn, const char *key_id, unsigned char **ret, size_t *ret_len,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = query(conn, "kms payload", "SELECT payload FROM kms_keys WHERE id = ?1",
		      BINDS(b_text(key_id)), &st, err);
	if (r == 0)
		return key_not_found(err, key_id);
	if (r < 0)
		return r;
	r = blob_copy(st, 0, ret, ret_len);
	if (r == -EBADMSG)
		return sealvm_err_set(err, -EIO, "INCOMPLETE_METADATA_ERR",
				      "Key metadata became corrupted: key %s has no material",
				      key_id);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "out of memory");
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
	int r = prepare(conn,
			"SELECT " KEY_COLS KEY_FROM " WHERE k.instance = ?1"
			" AND (?2 IS NULL OR k.key_ring = ?2)"
			" AND ((?3 >> " EFFECTIVE_STATE ") & 1) = 1"
			" AND (?7 < 0 OR k.extractable = ?7)"
			" ORDER BY k.created_ms, k.id LIMIT ?4 OFFSET ?5",
			BINDS(b_text(q->instance), b_text(q->key_ring), b_int(q->state_mask),
			      b_int(q->limit), b_int(q->offset), b_int(q->now_ms),
			      b_int(q->extractable)),
			&st, err);
	while (r >= 0 && (r = step(conn, st, "kms key list", err)) > 0) {
		struct kms_key k;
		key_row(st, &k);
		r = fn(&k, arg);
	}
	return r;
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
	int r = query(conn, "kms version get",
		      read_sql[version_id ? KMS_ST_VERSION_BY_ID : KMS_ST_VERSION_BY_NUMBER],
		      BINDS(b_text(key_id), version_id ? b_text(version_id) : b_int(number)), &st,
		      err);
	if (r == 0)
		return sealvm_err_set(err, -ENOENT, "KEY_VERSION_NOT_FOUND",
				      "key %s has no such version", key_id);
	return r < 0 ? r : version_row(st, ret, err);
}

int kms_store_version_insert(sqlite3 *conn, const struct kms_version *v, struct sealvm_err *err)
{
	return exec(conn, "kms version insert",
		    "INSERT INTO kms_key_versions (" VERSION_COLS ") VALUES (?1,?2,?3,?4,?5,?6)",
		    BINDS(b_text(v->key_id), b_int(v->version), b_text(v->id), b_int(v->created_ms),
			  b_int(v->bytes), b_blob(v->ref, v->ref_len)),
		    err);
}

int kms_store_version_list(sqlite3 *conn, const char *key_id,
			   int (*fn)(const struct kms_version *v, void *arg), void *arg,
			   struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"SELECT " VERSION_COLS " FROM kms_key_versions WHERE key_id = ?1"
			" ORDER BY version DESC",
			BINDS(b_text(key_id)), &st, err);
	while (r >= 0 && (r = step(conn, st, "kms version list", err)) > 0) {
		struct kms_version v;
		r = version_row(st, &v, err);
		if (r >= 0)
			r = fn(&v, arg);
		explicit_bzero(&v, sizeof(v));
	}
	return r;
}

/* ---- aliases ------------------------------------------------------------------------------------
 */

int kms_store_alias_insert(sqlite3 *conn, const char *instance, const char *alias,
			   const char *key_id, int64_t now_ms, const char *by,
			   struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(
		conn,
		"INSERT INTO kms_aliases (instance, alias, key_id, created_ms,"
		" created_by) VALUES (?1,?2,?3,?4,?5)",
		BINDS(b_text(instance), b_text(alias), b_text(key_id), b_int(now_ms), b_text(by)),
		&st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
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
	int r = exec(conn, "kms alias delete",
		     "DELETE FROM kms_aliases WHERE instance = ?1 AND alias = ?2 AND key_id = ?3",
		     BINDS(b_text(instance), b_text(alias), b_text(key_id)), err);
	if (r >= 0 && sqlite3_changes(conn) == 0)
		r = sealvm_err_set(err, -ENOENT, "KEY_ALIAS_NOT_FOUND_ERR",
				   "the key has no alias '%s'", alias);
	return r;
}

int kms_store_alias_count(sqlite3 *conn, const char *instance, const char *key_id, int *ret_count,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = query(
		conn, "kms alias count",
		"SELECT count(*) FROM kms_aliases WHERE instance = ?1 AND (?2 IS NULL OR key_id = ?2)",
		BINDS(b_text(instance), b_text(key_id)), &st, err);
	if (r == 0) /* an aggregate always has its row */
		r = db_error(conn, SQLITE_DONE, "kms alias count", err);
	if (r < 0)
		return r;
	*ret_count = sqlite3_column_int(st, 0);
	return 0;
}

int kms_instance_delete_guard(sqlite3 *conn, const char *account_id, const char *instance_guid,
			      struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = query(conn, "kms instance keys",
		      "SELECT count(*) FROM kms_keys WHERE instance = ?1 AND account_id = ?2"
		      " AND state != ?3",
		      BINDS(b_text(instance_guid), b_text(account_id), b_int(KMS_DESTROYED)), &st,
		      err);
	if (r == 0) /* an aggregate always has its row */
		r = db_error(conn, SQLITE_DONE, "kms instance keys", err);
	if (r < 0)
		return r;
	int64_t n = sqlite3_column_int64(st, 0);
	return n > 0 ? rc_refuse_not_empty(err, "the key management instance", instance_guid, n,
					   "key that is not deleted", "keys that are not deleted")
		     : 0;
}

int kms_store_alias_list(sqlite3 *conn, const char *key_id,
			 int (*fn)(const char *alias, int64_t created_ms, const char *by,
				   void *arg),
			 void *arg, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"SELECT alias, created_ms, created_by FROM kms_aliases"
			" WHERE key_id = ?1 ORDER BY created_ms, alias",
			BINDS(b_text(key_id)), &st, err);
	while (r >= 0 && (r = step(conn, st, "kms alias list", err)) > 0)
		r = fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1),
		       (const char *)sqlite3_column_text(st, 2), arg);
	return r;
}

/* ---- instance policies
 * ---------------------------------------------------------------------------- */

int kms_store_policy_get(sqlite3 *conn, const char *instance, bool *ret_dual,
			 int64_t *ret_updated_ms, char *ret_updated_by, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"SELECT dual_auth, updated_ms, updated_by FROM"
			" kms_instance_policies WHERE instance = ?1",
			BINDS(b_text(instance)), &st, err);
	if (r < 0)
		return r;
	r = step(conn, st, "kms policy get", err);
	*ret_dual = false;
	if (ret_updated_ms)
		*ret_updated_ms = 0;
	if (ret_updated_by)
		ret_updated_by[0] = '\0';
	if (r <= 0)
		return r;
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
	return exec(conn, "kms policy put",
		    "INSERT INTO kms_instance_policies (instance, dual_auth,"
		    " updated_ms, updated_by) VALUES (?1,?2,?3,?4)"
		    " ON CONFLICT(instance) DO UPDATE SET dual_auth = ?2,"
		    " updated_ms = ?3, updated_by = ?4",
		    BINDS(b_text(instance), b_int(dual), b_int(now_ms), b_text(by)), err);
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

static int reg_not_found(struct sealvm_err *err)
{
	return sealvm_err_set(err, -ENOENT, "REGISTRATION_NOT_FOUND_ERR",
			      "the key has no registration for that resource");
}

int kms_store_reg_get(sqlite3 *conn, const char *key_id, const char *crn,
		      struct kms_registration *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = query(conn, "kms registration get",
		      "SELECT " REG_COLS " FROM kms_registrations"
		      " WHERE key_id = ?1 AND resource_crn = ?2",
		      BINDS(b_text(key_id), b_text(crn)), &st, err);
	if (r == 0)
		return reg_not_found(err);
	if (r > 0)
		reg_row(st, ret);
	return r < 0 ? r : 0;
}

int kms_store_reg_put(sqlite3 *conn, const struct kms_registration *r, struct sealvm_err *err)
{
	return exec(conn, "kms registration put",
		    "INSERT INTO kms_registrations (" REG_COLS
		    ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,"
		    "?10,?11,?12) ON CONFLICT(key_id, resource_crn) DO UPDATE SET description = ?5,"
		    " prevent_deletion = ?6, updated_ms = ?9, updated_by = ?10",
		    BINDS(b_text(r->key_id), b_text(r->resource_crn), b_text(r->instance),
			  b_text(r->service), b_text(r->description), b_int(r->prevent_deletion),
			  b_int(r->created_ms), b_text(r->created_by), b_int(r->updated_ms),
			  b_text(r->updated_by), b_text(r->version_id), b_int(r->version_ms)),
		    err);
}

int kms_store_reg_delete(sqlite3 *conn, const char *key_id, const char *crn, struct sealvm_err *err)
{
	int r = exec(conn, "kms registration delete",
		     "DELETE FROM kms_registrations WHERE key_id = ?1 AND resource_crn = ?2",
		     BINDS(b_text(key_id), b_text(crn)), err);
	if (r >= 0 && sqlite3_changes(conn) == 0)
		r = reg_not_found(err);
	return r;
}

int kms_store_reg_count(sqlite3 *conn, const char *key_id, int *ret_all, int *ret_prevent,
			struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = query(conn, "kms registration count",
		      "SELECT count(*), coalesce(sum(prevent_deletion), 0)"
		      " FROM kms_registrations WHERE key_id = ?1",
		      BINDS(b_text(key_id)), &st, err);
	if (r == 0) /* an aggregate always has its row */
		r = db_error(conn, SQLITE_DONE, "kms registration count", err);
	if (r < 0)
		return r;
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
	int r = prepare(conn,
			"SELECT " REG_COLS " FROM kms_registrations WHERE instance = ?1"
			" AND (?2 IS NULL OR key_id = ?2)"
			" AND (?3 IS NULL OR resource_crn = ?3)"
			" ORDER BY created_ms, key_id, resource_crn LIMIT ?4 OFFSET ?5",
			BINDS(b_text(instance), b_text(key_id), b_text(crn_filter), b_int(limit),
			      b_int(offset)),
			&st, err);
	while (r >= 0 && (r = step(conn, st, "kms registration list", err)) > 0) {
		struct kms_registration g;
		reg_row(st, &g);
		r = fn(&g, arg);
	}
	return r;
}

/* ---- import tokens
 * ------------------------------------------------------------------------------- */

int kms_store_token_get(sqlite3 *conn, const char *instance, struct kms_import_token *ret,
			struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = query(conn, "kms import token get",
		      "SELECT instance, account_id, created_ms, expires_ms,"
		      " max_retrievals, remaining, nonce, name, pub, ref"
		      " FROM kms_import_tokens WHERE instance = ?1",
		      BINDS(b_text(instance)), &st, err);
	if (r == 0)
		return sealvm_err_set(err, -ENOENT, "IMPORT_TOKEN_NOT_FOUND_ERR",
				      "this instance has no import token: create one with POST "
				      "/api/v2/import_token");
	if (r < 0)
		return r;
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
	r = blob_copy(st, 8, &ret->pub, &ret->pub_len);
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
	return exec(conn, "kms import token put",
		    "INSERT OR REPLACE INTO kms_import_tokens (instance, account_id,"
		    " created_ms, expires_ms, max_retrievals, remaining, nonce, name,"
		    " pub, ref) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
		    BINDS(b_text(t->instance), b_text(t->account_id), b_int(t->created_ms),
			  b_int(t->expires_ms), b_int(t->max_retrievals), b_int(t->remaining),
			  b_blob(t->nonce, sizeof(t->nonce)), b_text(t->name),
			  b_blob(t->pub, t->pub_len), b_blob(t->ref, t->ref_len)),
		    err);
}

int kms_store_token_retrieve(sqlite3 *conn, const char *instance, struct sealvm_err *err)
{
	int r = exec(conn, "kms import token retrieve",
		     "UPDATE kms_import_tokens SET remaining = remaining - 1"
		     " WHERE instance = ?1 AND remaining > 0",
		     BINDS(b_text(instance)), err);
	if (r >= 0 && sqlite3_changes(conn) == 0)
		r = sealvm_err_set(err, -EAGAIN, "IMPORT_TOKEN_EXPIRED_ERR",
				   "The import token has expired: it has been "
				   "retrieved as many times as it allows "
				   "(maxAllowedRetrievals); create a new one");
	return r;
}
