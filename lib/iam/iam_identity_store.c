// SPDX-License-Identifier: Apache-2.0
/*
 * iam_identity_store.c — the identity half's tables and SQL, nothing else.
 *
 * Accounts, users, service IDs, API keys and token signing keys, owned by
 * the migration owner "iam-identity". Every function runs its statements on
 * the connection it is given: a read connection, or the writer's inside a
 * db_write job. No logic here (locks, cascades and checks are the caller's),
 * and no secret ever reaches a row: API keys arrive as keyed hashes, signing
 * keys as sealed blobs. Messages name tables, never bound values.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "iam_internal.h"

/*
 * Tables are prefixed "iam_" because every service shares one database.
 * Times are epoch milliseconds, except signing keys (epoch seconds, like
 * the tokens they sign). A service ID's name is not unique (IBM's are not);
 * a user's e-mail is unique within an account; an API key's hash is unique
 * and is how a key is found at login.
 */
static const char identity_v1_sql[] =
	"CREATE TABLE iam_accounts ("
	" id TEXT PRIMARY KEY,"
	" name TEXT NOT NULL,"
	" owner_iam_id TEXT NOT NULL,"
	" created INTEGER NOT NULL"
	");"
	"CREATE TABLE iam_users ("
	" iam_id TEXT PRIMARY KEY,"
	" account_id TEXT NOT NULL REFERENCES iam_accounts (id),"
	" name TEXT NOT NULL,"
	" email TEXT NOT NULL,"
	" state TEXT NOT NULL,"
	" created INTEGER NOT NULL,"
	" UNIQUE (account_id, email)"
	");"
	"CREATE TABLE iam_service_ids ("
	" id TEXT PRIMARY KEY,"
	" iam_id TEXT NOT NULL UNIQUE,"
	" account_id TEXT NOT NULL REFERENCES iam_accounts (id),"
	" name TEXT NOT NULL,"
	" description TEXT NOT NULL,"
	" locked INTEGER NOT NULL CHECK (locked IN (0, 1)),"
	" version INTEGER NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" modified_at INTEGER NOT NULL,"
	" crn TEXT NOT NULL UNIQUE"
	");"
	"CREATE INDEX iam_service_ids_account ON iam_service_ids (account_id);"
	"CREATE TABLE iam_api_keys ("
	" id TEXT PRIMARY KEY,"
	" iam_id TEXT NOT NULL,"
	" account_id TEXT NOT NULL REFERENCES iam_accounts (id),"
	" name TEXT NOT NULL,"
	" description TEXT NOT NULL,"
	" locked INTEGER NOT NULL CHECK (locked IN (0, 1)),"
	" version INTEGER NOT NULL,"
	" created_by TEXT NOT NULL,"
	" created_at INTEGER NOT NULL,"
	" modified_at INTEGER NOT NULL,"
	" crn TEXT NOT NULL UNIQUE,"
	" hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32)"
	");"
	"CREATE INDEX iam_api_keys_owner ON iam_api_keys (iam_id);"
	"CREATE INDEX iam_api_keys_account ON iam_api_keys (account_id);"
	"CREATE TABLE iam_signing_keys ("
	" kid TEXT PRIMARY KEY,"
	" created INTEGER NOT NULL,"
	" sealed_private BLOB NOT NULL,"
	" public_jwk TEXT NOT NULL,"
	" retired_at INTEGER"
	");";

const struct db_migration iam_identity_migrations[] = {
	{.owner = IAM_MIGRATION_OWNER_IDENTITY, .version = 1, .sql = identity_v1_sql},
};
const size_t iam_identity_n_migrations = ELEMENTSOF(iam_identity_migrations);

/* ---- helpers --------------------------------------------------------------------- */

static int prepare(sqlite3 *conn, const char *sql, sqlite3_stmt **ret, struct sealvm_err *err)
{
	return db_prepare(conn, sql, ret, err); /* cached per connection */
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Copies a text column into a fixed buffer; what we wrote always fits, anything else is corrupt. */
static int column_copy(sqlite3_stmt *st, int i, char *dst, size_t cap, struct sealvm_err *err)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	int n = sqlite3_column_bytes(st, i);
	if (!s) {
		dst[0] = '\0';
		return 0;
	}
	if (n < 0 || (size_t)n >= cap)
		return sealvm_err_set(err, -EBADMSG, "IAM_STORE_CORRUPT",
				      "iam-identity store: column %s is longer than it can be",
				      sqlite3_column_name(st, i));
	memcpy(dst, s, (size_t)n);
	dst[n] = '\0';
	return 0;
}

/* Steps a statement that changes rows; returns the number of rows changed. */
static int step_done(sqlite3 *conn, sqlite3_stmt *st, const char *what, struct sealvm_err *err)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, what, err);
	return sqlite3_changes(conn);
}

/* ---- accounts -------------------------------------------------------------------- */

int iam_store_account_insert(sqlite3 *conn, const struct iam_account *a, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"INSERT INTO iam_accounts (id, name, owner_iam_id, created)"
			" VALUES (?1, ?2, ?3, ?4)",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, a->id);
	bind_text(st, 2, a->name);
	bind_text(st, 3, a->owner_iam_id);
	sqlite3_bind_int64(st, 4, a->created_ms);
	r = step_done(conn, st, "insert into iam_accounts", err);
	return r < 0 ? r : 0;
}

int iam_store_account_count(sqlite3 *conn, int64_t *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT count(*) FROM iam_accounts", &st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "count iam_accounts", err);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

int iam_store_account_get(sqlite3 *conn, const char *id, struct iam_account *ret,
			  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct iam_account a = {0};
	int r = prepare(conn,
			"SELECT id, name, owner_iam_id, created FROM iam_accounts WHERE id = ?1",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "ACCOUNT_NOT_FOUND",
				      "the account was not found");
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "read iam_accounts", err);
	if ((r = column_copy(st, 0, a.id, sizeof(a.id), err)) < 0 ||
	    (r = column_copy(st, 1, a.name, sizeof(a.name), err)) < 0 ||
	    (r = column_copy(st, 2, a.owner_iam_id, sizeof(a.owner_iam_id), err)) < 0)
		return r;
	a.created_ms = sqlite3_column_int64(st, 3);
	*ret = a;
	return 0;
}

/* ---- users ----------------------------------------------------------------------- */

#define USER_COLUMNS "iam_id, account_id, name, email, state, created"

static int user_from_row(sqlite3_stmt *st, struct iam_user *u, struct sealvm_err *err)
{
	int r;
	memset(u, 0, sizeof(*u));
	if ((r = column_copy(st, 0, u->iam_id, sizeof(u->iam_id), err)) < 0 ||
	    (r = column_copy(st, 1, u->account_id, sizeof(u->account_id), err)) < 0 ||
	    (r = column_copy(st, 2, u->name, sizeof(u->name), err)) < 0 ||
	    (r = column_copy(st, 3, u->email, sizeof(u->email), err)) < 0 ||
	    (r = column_copy(st, 4, u->state, sizeof(u->state), err)) < 0)
		return r;
	u->created_ms = sqlite3_column_int64(st, 5);
	return 0;
}

int iam_store_user_insert(sqlite3 *conn, const struct iam_user *u, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"INSERT INTO iam_users (" USER_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, u->iam_id);
	bind_text(st, 2, u->account_id);
	bind_text(st, 3, u->name);
	bind_text(st, 4, u->email);
	bind_text(st, 5, u->state);
	sqlite3_bind_int64(st, 6, u->created_ms);
	r = step_done(conn, st, "insert into iam_users", err);
	return r < 0 ? r : 0;
}

int iam_store_user_get(sqlite3 *conn, const char *iam_id, struct iam_user *ret,
		       struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT " USER_COLUMNS " FROM iam_users WHERE iam_id = ?1", &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, iam_id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "USER_NOT_FOUND", "the user was not found");
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "read iam_users", err);
	return user_from_row(st, ret, err);
}

int iam_store_user_list(sqlite3 *conn, const char *account_id,
			int (*fn)(const struct iam_user *u, void *arg), void *arg,
			struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(
		conn, "SELECT " USER_COLUMNS " FROM iam_users WHERE account_id = ?1 ORDER BY rowid",
		&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, account_id);
	for (;;) {
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return db_error(conn, rc, "list iam_users", err);
		struct iam_user u;
		if ((r = user_from_row(st, &u, err)) < 0)
			return r;
		if ((r = fn(&u, arg)) != 0)
			return r;
	}
}

int iam_store_user_delete(sqlite3 *conn, const char *iam_id, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "DELETE FROM iam_users WHERE iam_id = ?1", &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, iam_id);
	return step_done(conn, st, "delete from iam_users", err);
}

/* ---- service IDs ----------------------------------------------------------------- */

#define SERVICEID_COLUMNS                                                                          \
	"id, iam_id, account_id, name, description, locked, version, created_at, modified_at, crn"

static int serviceid_from_row(sqlite3_stmt *st, struct iam_serviceid *s, struct sealvm_err *err)
{
	int r;
	memset(s, 0, sizeof(*s));
	if ((r = column_copy(st, 0, s->id, sizeof(s->id), err)) < 0 ||
	    (r = column_copy(st, 1, s->iam_id, sizeof(s->iam_id), err)) < 0 ||
	    (r = column_copy(st, 2, s->account_id, sizeof(s->account_id), err)) < 0 ||
	    (r = column_copy(st, 3, s->name, sizeof(s->name), err)) < 0 ||
	    (r = column_copy(st, 4, s->description, sizeof(s->description), err)) < 0 ||
	    (r = column_copy(st, 9, s->crn, sizeof(s->crn), err)) < 0)
		return r;
	s->locked = sqlite3_column_int(st, 5) != 0;
	s->version = sqlite3_column_int64(st, 6);
	s->created_ms = sqlite3_column_int64(st, 7);
	s->modified_ms = sqlite3_column_int64(st, 8);
	return 0;
}

int iam_store_serviceid_insert(sqlite3 *conn, const struct iam_serviceid *s, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"INSERT INTO iam_service_ids (" SERVICEID_COLUMNS ")"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, s->id);
	bind_text(st, 2, s->iam_id);
	bind_text(st, 3, s->account_id);
	bind_text(st, 4, s->name);
	bind_text(st, 5, s->description);
	sqlite3_bind_int(st, 6, s->locked ? 1 : 0);
	sqlite3_bind_int64(st, 7, s->version);
	sqlite3_bind_int64(st, 8, s->created_ms);
	sqlite3_bind_int64(st, 9, s->modified_ms);
	bind_text(st, 10, s->crn);
	r = step_done(conn, st, "insert into iam_service_ids", err);
	return r < 0 ? r : 0;
}

static int serviceid_get_by(sqlite3 *conn, const char *sql, const char *key,
			    struct iam_serviceid *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, key);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "SERVICEID_NOT_FOUND",
				      "the service ID was not found");
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "read iam_service_ids", err);
	return serviceid_from_row(st, ret, err);
}

int iam_store_serviceid_get(sqlite3 *conn, const char *id, struct iam_serviceid *ret,
			    struct sealvm_err *err)
{
	return serviceid_get_by(conn,
				"SELECT " SERVICEID_COLUMNS " FROM iam_service_ids WHERE id = ?1",
				id, ret, err);
}

int iam_store_serviceid_get_by_iam_id(sqlite3 *conn, const char *iam_id, struct iam_serviceid *ret,
				      struct sealvm_err *err)
{
	return serviceid_get_by(
		conn, "SELECT " SERVICEID_COLUMNS " FROM iam_service_ids WHERE iam_id = ?1", iam_id,
		ret, err);
}

static int count_where(sqlite3 *conn, const char *sql, const char *a, const char *b, int64_t *ret,
		       struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, a);
	bind_text(st, 2, b);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "count", err);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

int iam_store_serviceid_list(sqlite3 *conn, const char *account_id, const char *name,
			     unsigned offset, unsigned limit,
			     int (*fn)(const struct iam_serviceid *s, void *arg), void *arg,
			     int64_t *ret_total, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = count_where(conn,
			    "SELECT count(*) FROM iam_service_ids WHERE account_id = ?1"
			    " AND (?2 IS NULL OR name = ?2)",
			    account_id, name, ret_total, err);
	if (r < 0)
		return r;
	r = prepare(conn,
		    "SELECT " SERVICEID_COLUMNS " FROM iam_service_ids WHERE account_id = ?1"
		    " AND (?2 IS NULL OR name = ?2) ORDER BY rowid LIMIT ?3 OFFSET ?4",
		    &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, account_id);
	bind_text(st, 2, name);
	sqlite3_bind_int64(st, 3, limit);
	sqlite3_bind_int64(st, 4, offset);
	for (;;) {
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return db_error(conn, rc, "list iam_service_ids", err);
		struct iam_serviceid s;
		if ((r = serviceid_from_row(st, &s, err)) < 0)
			return r;
		if ((r = fn(&s, arg)) != 0)
			return r;
	}
}

/*
 * Service IDs and API keys share their mutable columns; @table is one of our
 * two literal table names, never request data.
 */
static int entity_update(sqlite3 *conn, const char *table, const char *id, const char *name,
			 const char *description, bool locked, int64_t version, int64_t modified_ms,
			 const char *missing_reason, const char *missing_what,
			 struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char sql[160], what[48];
	snprintf(sql, sizeof(sql),
		 "UPDATE %s SET name = ?2, description = ?3, locked = ?4, version = ?5,"
		 " modified_at = ?6 WHERE id = ?1",
		 table);
	snprintf(what, sizeof(what), "update %s", table);
	int r = prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, id);
	bind_text(st, 2, name);
	bind_text(st, 3, description);
	sqlite3_bind_int(st, 4, locked ? 1 : 0);
	sqlite3_bind_int64(st, 5, version);
	sqlite3_bind_int64(st, 6, modified_ms);
	r = step_done(conn, st, what, err);
	if (r == 0)
		return sealvm_err_set(err, -ENOENT, missing_reason, "the %s was not found",
				      missing_what);
	return r < 0 ? r : 0;
}

static int entity_delete(sqlite3 *conn, const char *table, const char *id, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char sql[96], what[48];
	snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE id = ?1", table);
	snprintf(what, sizeof(what), "delete from %s", table);
	int r = prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, id);
	return step_done(conn, st, what, err);
}

int iam_store_serviceid_update(sqlite3 *conn, const struct iam_serviceid *s, struct sealvm_err *err)
{
	return entity_update(conn, "iam_service_ids", s->id, s->name, s->description, s->locked,
			     s->version, s->modified_ms, "SERVICEID_NOT_FOUND", "service ID", err);
}

int iam_store_serviceid_delete(sqlite3 *conn, const char *id, struct sealvm_err *err)
{
	return entity_delete(conn, "iam_service_ids", id, err);
}

/* ---- API keys -------------------------------------------------------------------- */

#define APIKEY_COLUMNS                                                                             \
	"id, iam_id, account_id, name, description, locked, version, created_by, created_at,"      \
	" modified_at, crn"

static int apikey_from_row(sqlite3_stmt *st, int base, struct iam_apikey *k, struct sealvm_err *err)
{
	int r;
	memset(k, 0, sizeof(*k));
	if ((r = column_copy(st, base + 0, k->id, sizeof(k->id), err)) < 0 ||
	    (r = column_copy(st, base + 1, k->iam_id, sizeof(k->iam_id), err)) < 0 ||
	    (r = column_copy(st, base + 2, k->account_id, sizeof(k->account_id), err)) < 0 ||
	    (r = column_copy(st, base + 3, k->name, sizeof(k->name), err)) < 0 ||
	    (r = column_copy(st, base + 4, k->description, sizeof(k->description), err)) < 0 ||
	    (r = column_copy(st, base + 7, k->created_by, sizeof(k->created_by), err)) < 0 ||
	    (r = column_copy(st, base + 10, k->crn, sizeof(k->crn), err)) < 0)
		return r;
	k->locked = sqlite3_column_int(st, base + 5) != 0;
	k->version = sqlite3_column_int64(st, base + 6);
	k->created_ms = sqlite3_column_int64(st, base + 8);
	k->modified_ms = sqlite3_column_int64(st, base + 9);
	return 0;
}

int iam_store_apikey_insert(sqlite3 *conn, const struct iam_apikey *k, const unsigned char hash[32],
			    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"INSERT INTO iam_api_keys (" APIKEY_COLUMNS ", hash)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, k->id);
	bind_text(st, 2, k->iam_id);
	bind_text(st, 3, k->account_id);
	bind_text(st, 4, k->name);
	bind_text(st, 5, k->description);
	sqlite3_bind_int(st, 6, k->locked ? 1 : 0);
	sqlite3_bind_int64(st, 7, k->version);
	bind_text(st, 8, k->created_by);
	sqlite3_bind_int64(st, 9, k->created_ms);
	sqlite3_bind_int64(st, 10, k->modified_ms);
	bind_text(st, 11, k->crn);
	sqlite3_bind_blob(st, 12, hash, 32, SQLITE_STATIC);
	r = step_done(conn, st, "insert into iam_api_keys", err);
	return r < 0 ? r : 0;
}

int iam_store_apikey_get(sqlite3 *conn, const char *id, struct iam_apikey *ret,
			 struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT " APIKEY_COLUMNS " FROM iam_api_keys WHERE id = ?1", &st,
			err);
	if (r < 0)
		return r;
	bind_text(st, 1, id);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "APIKEY_NOT_FOUND",
				      "the API key was not found");
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "read iam_api_keys", err);
	return apikey_from_row(st, 0, ret, err);
}

int iam_store_apikey_list(sqlite3 *conn, const char *account_id, const char *owner_iam_id,
			  unsigned offset, unsigned limit,
			  int (*fn)(const struct iam_apikey *k, void *arg), void *arg,
			  int64_t *ret_total, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = count_where(conn,
			    "SELECT count(*) FROM iam_api_keys WHERE account_id = ?1"
			    " AND (?2 IS NULL OR iam_id = ?2)",
			    account_id, owner_iam_id, ret_total, err);
	if (r < 0)
		return r;
	r = prepare(conn,
		    "SELECT " APIKEY_COLUMNS " FROM iam_api_keys WHERE account_id = ?1"
		    " AND (?2 IS NULL OR iam_id = ?2) ORDER BY rowid LIMIT ?3 OFFSET ?4",
		    &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, account_id);
	bind_text(st, 2, owner_iam_id);
	sqlite3_bind_int64(st, 3, limit);
	sqlite3_bind_int64(st, 4, offset);
	for (;;) {
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return db_error(conn, rc, "list iam_api_keys", err);
		struct iam_apikey k;
		if ((r = apikey_from_row(st, 0, &k, err)) < 0)
			return r;
		if ((r = fn(&k, arg)) != 0)
			return r;
	}
}

int iam_store_apikey_update(sqlite3 *conn, const struct iam_apikey *k, struct sealvm_err *err)
{
	return entity_update(conn, "iam_api_keys", k->id, k->name, k->description, k->locked,
			     k->version, k->modified_ms, "APIKEY_NOT_FOUND", "API key", err);
}

int iam_store_apikey_delete(sqlite3 *conn, const char *id, struct sealvm_err *err)
{
	return entity_delete(conn, "iam_api_keys", id, err);
}

int iam_store_apikey_delete_by_owner(sqlite3 *conn, const char *owner_iam_id,
				     struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "DELETE FROM iam_api_keys WHERE iam_id = ?1", &st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, owner_iam_id);
	return step_done(conn, st, "delete from iam_api_keys", err);
}

int iam_store_apikey_login(sqlite3 *conn, const unsigned char hash[32],
			   struct iam_apikey_login *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct iam_apikey_login l;
	int r = prepare(conn,
			"SELECT k.id, k.iam_id, k.account_id, k.name, k.description, k.locked,"
			" k.version, k.created_by, k.created_at, k.modified_at, k.crn, k.hash,"
			" s.id, s.name, s.locked, u.iam_id, u.name, u.email, u.state"
			" FROM iam_api_keys k"
			" LEFT JOIN iam_service_ids s ON s.iam_id = k.iam_id"
			" LEFT JOIN iam_users u ON u.iam_id = k.iam_id"
			" WHERE k.hash = ?1",
			&st, err);
	if (r < 0)
		return r;
	sqlite3_bind_blob(st, 1, hash, 32, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "APIKEY_NOT_FOUND",
				      "the API key was not found");
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "read iam_api_keys", err);
	memset(&l, 0, sizeof(l));
	if ((r = apikey_from_row(st, 0, &l.key, err)) < 0)
		return r;
	const void *h = sqlite3_column_blob(st, 11);
	if (!h || sqlite3_column_bytes(st, 11) != 32)
		return sealvm_err_set(err, -EBADMSG, "IAM_STORE_CORRUPT",
				      "iam-identity store: an API key hash is corrupt");
	memcpy(l.hash, h, 32);
	if (sqlite3_column_type(st, 12) != SQLITE_NULL) {
		l.owner_kind = IAM_OWNER_SERVICE_ID;
		l.owner_found = true;
		if ((r = column_copy(st, 12, l.owner_id, sizeof(l.owner_id), err)) < 0 ||
		    (r = column_copy(st, 13, l.owner_name, sizeof(l.owner_name), err)) < 0)
			return r;
		l.owner_locked = sqlite3_column_int(st, 14) != 0;
	} else if (sqlite3_column_type(st, 15) != SQLITE_NULL) {
		l.owner_kind = IAM_OWNER_USER;
		l.owner_found = true;
		char state[16];
		if ((r = column_copy(st, 15, l.owner_id, sizeof(l.owner_id), err)) < 0 ||
		    (r = column_copy(st, 16, l.owner_name, sizeof(l.owner_name), err)) < 0 ||
		    (r = column_copy(st, 17, l.owner_email, sizeof(l.owner_email), err)) < 0 ||
		    (r = column_copy(st, 18, state, sizeof(state), err)) < 0)
			return r;
		l.owner_locked = strcmp(state, "ACTIVE") != 0;
	}
	*ret = l;
	return 0;
}

/* ---- signing keys ---------------------------------------------------------------- */

int iam_store_signing_key_insert(sqlite3 *conn, const char *kid, int64_t created,
				 const unsigned char *sealed, size_t sealed_len,
				 const char *public_jwk, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"INSERT INTO iam_signing_keys (kid, created, sealed_private, public_jwk,"
			" retired_at) VALUES (?1, ?2, ?3, ?4, NULL)",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, kid);
	sqlite3_bind_int64(st, 2, created);
	sqlite3_bind_blob(st, 3, sealed, (int)sealed_len, SQLITE_STATIC);
	bind_text(st, 4, public_jwk);
	r = step_done(conn, st, "insert into iam_signing_keys", err);
	return r < 0 ? r : 0;
}

int iam_store_signing_key_retire_others(sqlite3 *conn, const char *kid, int64_t when,
					struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"UPDATE iam_signing_keys SET retired_at = ?2"
			" WHERE retired_at IS NULL AND kid != ?1",
			&st, err);
	if (r < 0)
		return r;
	bind_text(st, 1, kid);
	sqlite3_bind_int64(st, 2, when);
	return step_done(conn, st, "update iam_signing_keys", err);
}

int iam_store_signing_key_list(sqlite3 *conn, int64_t retired_after,
			       int (*fn)(const struct iam_signing_key_row *k, void *arg), void *arg,
			       struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"SELECT kid, created, sealed_private, public_jwk, retired_at"
			" FROM iam_signing_keys WHERE retired_at IS NULL OR retired_at > ?1"
			" ORDER BY created DESC, rowid DESC",
			&st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, retired_after);
	for (;;) {
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			return 0;
		if (rc != SQLITE_ROW)
			return db_error(conn, rc, "list iam_signing_keys", err);
		struct iam_signing_key_row k = {0};
		if ((r = column_copy(st, 0, k.kid, sizeof(k.kid), err)) < 0)
			return r;
		k.created = sqlite3_column_int64(st, 1);
		k.sealed = sqlite3_column_blob(st, 2);
		k.sealed_len = (size_t)sqlite3_column_bytes(st, 2);
		k.public_jwk = (const char *)sqlite3_column_text(st, 3);
		k.retired_at = sqlite3_column_int64(st, 4);
		if (!k.sealed || !k.public_jwk)
			return sealvm_err_set(
				err, -EBADMSG, "IAM_STORE_CORRUPT",
				"iam-identity store: a signing key row is incomplete");
		if ((r = fn(&k, arg)) != 0)
			return r;
	}
}

int iam_store_signing_key_count(sqlite3 *conn, int64_t *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT count(*) FROM iam_signing_keys", &st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "count iam_signing_keys", err);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}
