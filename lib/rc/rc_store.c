// SPDX-License-Identifier: Apache-2.0
/*
 * rc_store.c — the resource controller's tables: SQL only.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rc_internal.h"

const struct db_migration rc_migrations[] = {
	{"resource-controller", 1,
	 "CREATE TABLE rc_instances ("
	 " guid TEXT PRIMARY KEY,"
	 " crn TEXT NOT NULL UNIQUE,"
	 " account_id TEXT NOT NULL,"
	 " name TEXT NOT NULL,"
	 " resource_id TEXT NOT NULL,"
	 " region TEXT NOT NULL,"
	 " state TEXT NOT NULL,"
	 " created_at TEXT NOT NULL);"
	 "CREATE INDEX rc_instances_account ON rc_instances(account_id, created_at);"},
	{"resource-controller", 2, RC_HMAC_MIGRATION_2},
};
const size_t rc_n_migrations = ELEMENTSOF(rc_migrations);

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	snprintf(dst, n, "%s", v ? (const char *)v : "");
}

void rc_row(sqlite3_stmt *st, struct rc_instance *i)
{
	copy_col(i->guid, sizeof(i->guid), st, 0);
	copy_col(i->crn, sizeof(i->crn), st, 1);
	copy_col(i->account_id, sizeof(i->account_id), st, 2);
	copy_col(i->name, sizeof(i->name), st, 3);
	copy_col(i->resource_id, sizeof(i->resource_id), st, 4);
	copy_col(i->region, sizeof(i->region), st, 5);
	copy_col(i->state, sizeof(i->state), st, 6);
	copy_col(i->created_at, sizeof(i->created_at), st, 7);
}

#define COLS "guid, crn, account_id, name, resource_id, region, state, created_at"

int rc_store_insert(sqlite3 *conn, const struct rc_instance *i, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(conn, "INSERT INTO rc_instances (" COLS ") VALUES (?,?,?,?,?,?,?,?)",
			       &st, err);
	if (r < 0)
		return r;
	const char *v[] = {i->guid,	   i->crn,    i->account_id, i->name,
			   i->resource_id, i->region, i->state,	     i->created_at};
	for (int k = 0; k < 8; k++)
		sqlite3_bind_text(st, k + 1, v[k], -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "rc insert", err);
}

int rc_store_one(sqlite3 *conn, const char *sql, const char *account_id, const char *guid,
		 const char *what, sqlite3_stmt **ret_st, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, guid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, account_id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret_st = TAKE_PTR(st);
		return 0;
	}
	if (rc == SQLITE_DONE)
		return sealvm_err_set(err, -ENOENT, "NOT_FOUND", "no %s %s", what, guid);
	return db_error(conn, rc, what, err);
}

int rc_store_get(sqlite3 *conn, const char *account_id, const char *guid, struct rc_instance *ret,
		 struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = rc_store_one(
		conn, "SELECT " COLS " FROM rc_instances WHERE guid = ?1 AND account_id = ?2",
		account_id, guid, "resource instance", &st, err);
	if (r >= 0)
		rc_row(st, ret);
	return r;
}

int rc_store_list(sqlite3 *conn, const char *account_id, const char *resource_id,
		  int (*fn)(const struct rc_instance *i, void *arg), void *arg,
		  struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(conn,
			       "SELECT " COLS " FROM rc_instances WHERE account_id = ?"
			       " AND (?2 IS NULL OR resource_id = ?2) ORDER BY created_at, guid",
			       &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
	if (resource_id)
		sqlite3_bind_text(st, 2, resource_id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct rc_instance i;
		rc_row(st, &i);
		r = fn(&i, arg);
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "rc list", err);
}

int rc_store_delete(sqlite3 *conn, const char *account_id, const char *guid, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(conn, "DELETE FROM rc_instances WHERE guid = ? AND account_id = ?",
			       &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, guid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, account_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "rc delete", err);
	return sqlite3_changes(conn)
		       ? 0
		       : sealvm_err_set(err, -ENOENT, "NOT_FOUND", "no resource instance %s", guid);
}
