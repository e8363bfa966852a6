// SPDX-License-Identifier: Apache-2.0
/*
 * rc_hmac_store.c — the rc_hmac_keys table (HMAC resource keys): SQL only.
 *
 * A row holds the key's metadata, who it acts as and its secret sealed under
 * the master key (never in clear). The lookup joins the instance (a key of a
 * deleted instance does not verify) and, for a key that acts as a service ID,
 * reads iam-identity's iam_service_ids table (a deleted service ID's key does
 * not verify either); this is the only SQL of this module on another
 * module's table, and it only reads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/principal.h"

#include "rc_internal.h"

void rc_hmac_aad(const char *access_key_id, char aad[64])
{
	snprintf(aad, 64, "rc/hmac-secret/%s", access_key_id);
}

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	snprintf(dst, n, "%s", v ? (const char *)v : "");
}

#define COLS                                                                                       \
	"guid, crn, account_id, name, instance_guid, instance_crn, access_key_id, principal_kind," \
	" iam_id, principal_name, serviceid_crn, created_by, created_at"

static void row(sqlite3_stmt *st, struct rc_hmac_key *k)
{
	copy_col(k->guid, sizeof(k->guid), st, 0);
	copy_col(k->crn, sizeof(k->crn), st, 1);
	copy_col(k->account_id, sizeof(k->account_id), st, 2);
	copy_col(k->name, sizeof(k->name), st, 3);
	copy_col(k->instance_guid, sizeof(k->instance_guid), st, 4);
	copy_col(k->instance_crn, sizeof(k->instance_crn), st, 5);
	copy_col(k->access_key_id, sizeof(k->access_key_id), st, 6);
	k->principal_kind = sqlite3_column_int(st, 7);
	copy_col(k->iam_id, sizeof(k->iam_id), st, 8);
	copy_col(k->principal_name, sizeof(k->principal_name), st, 9);
	copy_col(k->serviceid_crn, sizeof(k->serviceid_crn), st, 10);
	copy_col(k->created_by, sizeof(k->created_by), st, 11);
	copy_col(k->created_at, sizeof(k->created_at), st, 12);
}

int rc_hmac_store_insert(sqlite3 *conn, const struct rc_hmac_key *k, const unsigned char *sealed,
			 size_t sealed_len, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(conn,
			       "INSERT INTO rc_hmac_keys (" COLS ", sealed_secret)"
			       " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
			       &st, err);
	if (r < 0)
		return r;
	const char *v[] = {k->guid,	     k->crn,	      k->account_id,   k->name,
			   k->instance_guid, k->instance_crn, k->access_key_id};
	for (int i = 0; i < 7; i++)
		sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 8, k->principal_kind);
	const char *w[] = {k->iam_id, k->principal_name, k->serviceid_crn, k->created_by,
			   k->created_at};
	for (int i = 0; i < 5; i++)
		sqlite3_bind_text(st, i + 9, w[i], -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 14, sealed, (int)sealed_len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "hmac key insert", err);
}

int rc_hmac_store_get(sqlite3 *conn, const char *account_id, const char *guid,
		      struct rc_hmac_key *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = rc_store_one(
		conn, "SELECT " COLS " FROM rc_hmac_keys WHERE guid = ?1 AND account_id = ?2",
		account_id, guid, "resource key", &st, err);
	if (r >= 0)
		row(st, ret);
	return r;
}

int rc_hmac_store_list(sqlite3 *conn, const char *account_id, const char *instance_guid,
		       int (*fn)(const struct rc_hmac_key *k, void *arg), void *arg,
		       struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(conn,
			       "SELECT " COLS " FROM rc_hmac_keys WHERE account_id = ?"
			       " AND (?2 IS NULL OR instance_guid = ?2) ORDER BY created_at, guid",
			       &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, account_id, -1, SQLITE_STATIC);
	if (instance_guid)
		sqlite3_bind_text(st, 2, instance_guid, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct rc_hmac_key k;
		row(st, &k);
		r = fn(&k, arg);
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : db_error(conn, rc, "hmac key list", err);
}

/* Runs DELETE @sql (?1 a key's or an instance's guid, ?2 the account); *@ret_n rows. */
static int delete_where(sqlite3 *conn, const char *sql, const char *guid, const char *account_id,
			int *ret_n, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, guid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, account_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "hmac key delete", err);
	*ret_n = sqlite3_changes(conn);
	return 0;
}

int rc_hmac_store_delete_instance(sqlite3 *conn, const char *account_id, const char *instance_guid,
				  int *ret_n, struct sealvm_err *err)
{
	return delete_where(conn,
			    "DELETE FROM rc_hmac_keys WHERE instance_guid = ?1 AND account_id = ?2",
			    instance_guid, account_id, ret_n, err);
}

int rc_hmac_store_delete(sqlite3 *conn, const char *account_id, const char *guid,
			 struct sealvm_err *err)
{
	int n = 0;
	int r = delete_where(conn, "DELETE FROM rc_hmac_keys WHERE guid = ?1 AND account_id = ?2",
			     guid, account_id, &n, err);
	if (r < 0)
		return r;
	return n ? 0 : sealvm_err_set(err, -ENOENT, "NOT_FOUND", "no resource key %s", guid);
}

int rc_hmac_store_lookup(sqlite3 *conn, const char *access_key_id, struct rc_hmac_key *ret,
			 unsigned char **ret_sealed, size_t *ret_len, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char sql[768];
	snprintf(sql, sizeof(sql),
		 "SELECT h.guid, h.crn, h.account_id, h.name, h.instance_guid, h.instance_crn,"
		 " h.access_key_id, h.principal_kind, h.iam_id, h.principal_name, h.serviceid_crn,"
		 " h.created_by, h.created_at, h.sealed_secret"
		 " FROM rc_hmac_keys h JOIN rc_instances i"
		 " ON i.guid = h.instance_guid AND i.account_id = h.account_id"
		 " WHERE h.access_key_id = ?"
		 " AND (h.principal_kind != %d OR EXISTS (SELECT 1 FROM iam_service_ids s"
		 " WHERE s.iam_id = h.iam_id AND s.account_id = h.account_id))",
		 (int)PRINCIPAL_SERVICE_ID);
	int rc, r = db_prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, access_key_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "hmac key lookup", err);
	row(st, ret);
	const void *b = sqlite3_column_blob(st, 13);
	int n = sqlite3_column_bytes(st, 13);
	if (!b || n <= 0)
		return sealvm_err_set(err, -EBADMSG, "SEALED_BLOB_INVALID",
				      "a sealed secret is invalid");
	*ret_sealed = malloc((size_t)n);
	if (!*ret_sealed)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	memcpy(*ret_sealed, b, (size_t)n);
	*ret_len = (size_t)n;
	return 0;
}

int rc_hmac_store_serviceid(sqlite3 *conn, const char *account_id, const char *crn, char id[96],
			    char iam_id[96], char name[128], struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc, r = db_prepare(conn,
			       "SELECT iam_id, name, id FROM iam_service_ids"
			       " WHERE crn = ? AND account_id = ?",
			       &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_text(st, 1, crn, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, account_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return -ENOENT;
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "service id get", err);
	copy_col(iam_id, 96, st, 0);
	copy_col(name, 128, st, 1);
	copy_col(id, 96, st, 2);
	return 0;
}
