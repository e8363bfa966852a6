/* SPDX-License-Identifier: Apache-2.0 */
/* rc_internal.h — what the resource controller's files share. Not a public interface. */
#ifndef SEALVM_RC_INTERNAL_H
#define SEALVM_RC_INTERNAL_H

#include <sqlite3.h>

#include "sealvm/rc.h"

struct rc {
	struct sealvm_db *db;
	const char *region;
	const struct sealvm_secret *master;  /* borrowed; NULL until rc_set_master */
	struct sigv4_key_cache *sigv4_cache; /* borrowed; optional */
	struct iam *iam;		     /* borrowed; NULL until rc_set_iam */
	struct http_service http;
	struct {
		const char *resource_id;
		rc_delete_guard_fn fn;
	} guards[RC_MAX_DELETE_GUARDS];
	unsigned n_guards;
	struct sealvm_rowcache *instance_rows; /* "account/guid" → rc_instance (rowcache.h) */
};

/* ---- HMAC resource keys (rc_hmac_store.c: SQL only) ---- */

/* The migration that adds rc_hmac_keys (version 2 of "resource-controller"). */
#define RC_HMAC_MIGRATION_2                                                                        \
	"CREATE TABLE rc_hmac_keys ("                                                              \
	" guid TEXT PRIMARY KEY,"                                                                  \
	" crn TEXT NOT NULL UNIQUE,"                                                               \
	" account_id TEXT NOT NULL,"                                                               \
	" name TEXT NOT NULL,"                                                                     \
	" instance_guid TEXT NOT NULL,"                                                            \
	" instance_crn TEXT NOT NULL,"                                                             \
	" access_key_id TEXT NOT NULL UNIQUE,"                                                     \
	" sealed_secret BLOB NOT NULL,"                                                            \
	" principal_kind INTEGER NOT NULL,"                                                        \
	" iam_id TEXT NOT NULL,"                                                                   \
	" principal_name TEXT NOT NULL,"                                                           \
	" serviceid_crn TEXT NOT NULL,"                                                            \
	" created_by TEXT NOT NULL,"                                                               \
	" created_at TEXT NOT NULL);"                                                              \
	"CREATE INDEX rc_hmac_keys_account ON rc_hmac_keys(account_id, created_at);"

/* A resource key row without its sealed secret. */
struct rc_hmac_key {
	char guid[40];
	char crn[320];
	char account_id[40];
	char name[128];
	char instance_guid[40];
	char instance_crn[320];
	char access_key_id[RC_HMAC_ACCESS_KEY_ID_LEN + 1];
	int principal_kind; /* enum principal_kind: USER or SERVICE_ID */
	char iam_id[96];
	char principal_name[128];
	char serviceid_crn[320]; /* "" when the key acts as its creator */
	char created_by[96];
	char created_at[32];
};

/* The AAD a secret is sealed under: "rc/hmac-secret/<access_key_id>". */
void rc_hmac_aad(const char *access_key_id, char aad[64]);

int rc_hmac_store_insert(sqlite3 *conn, const struct rc_hmac_key *k, const unsigned char *sealed,
			 size_t sealed_len, struct sealvm_err *err);
/* -ENOENT NOT_FOUND for a key of another account or none. */
int rc_hmac_store_get(sqlite3 *conn, const char *account_id, const char *guid,
		      struct rc_hmac_key *ret, struct sealvm_err *err);
/* Keys of @account_id, of one instance when @instance_guid is not NULL, oldest first. */
int rc_hmac_store_list(sqlite3 *conn, const char *account_id, const char *instance_guid,
		       int (*fn)(const struct rc_hmac_key *k, void *arg), void *arg,
		       struct sealvm_err *err);
/* Deletes every key of an instance; *@ret_n how many. */
int rc_hmac_store_delete_instance(sqlite3 *conn, const char *account_id, const char *instance_guid,
				  int *ret_n, struct sealvm_err *err);
int rc_hmac_store_delete(sqlite3 *conn, const char *account_id, const char *guid,
			 struct sealvm_err *err);
/*
 * The live key @access_key_id: its instance must exist, and a service ID it
 * acts as must still exist in its account. *@ret_sealed is malloc'ed.
 * -ENOENT (no error set) when there is none.
 */
int rc_hmac_store_lookup(sqlite3 *conn, const char *access_key_id, struct rc_hmac_key *ret,
			 unsigned char **ret_sealed, size_t *ret_len, struct sealvm_err *err);
/*
 * A service ID of @account_id by CRN: its id, iam_id and name; -ENOENT (no
 * error set) if none.
 */
int rc_hmac_store_serviceid(sqlite3 *conn, const char *account_id, const char *crn, char id[96],
			    char iam_id[96], char name[128], struct sealvm_err *err);

void rc_row(sqlite3_stmt *st, struct rc_instance *i);
/*
 * Runs @sql (a SELECT whose parameters are ?1 = a GUID, ?2 = an account id)
 * for @guid in @account_id: 0 with *@ret_st on the row (the caller reads it,
 * then releases the statement), -ENOENT NOT_FOUND "no @what @guid", or the
 * database's error.
 */
int rc_store_one(sqlite3 *conn, const char *sql, const char *account_id, const char *guid,
		 const char *what, sqlite3_stmt **ret_st, struct sealvm_err *err);

int rc_store_insert(sqlite3 *conn, const struct rc_instance *i, struct sealvm_err *err);
int rc_store_get(sqlite3 *conn, const char *account_id, const char *guid, struct rc_instance *ret,
		 struct sealvm_err *err);
int rc_store_list(sqlite3 *conn, const char *account_id, const char *resource_id,
		  int (*fn)(const struct rc_instance *i, void *arg), void *arg,
		  struct sealvm_err *err);
int rc_store_delete(sqlite3 *conn, const char *account_id, const char *guid,
		    struct sealvm_err *err);

/* ---- HMAC resource keys: handlers and resolver (rc_hmac.c), routed by rc_http.c ---- */
int rc_hmac_resolve(struct http_request *req, struct http_target *t, void *ctx,
		    struct sealvm_err *err);
int rc_hmac_h_create(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err);
int rc_hmac_h_list(struct http_request *req, struct http_response *resp, void *ctx,
		   struct sealvm_err *err);
int rc_hmac_h_get(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err);
int rc_hmac_h_delete(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err);

#endif
