// SPDX-License-Identifier: Apache-2.0
/*
 * iam_access_store.c — the policy tables and every SQL statement that touches them.
 *
 * SQL only: no JSON, no role tables, no HTTP (iam_access.c decides, and
 * iam_access_http.c answers). Every value a client controls reaches SQLite as
 * a bound parameter; SQL text is constant, or assembled from constant
 * fragments chosen by which filters are set, never from their values.
 *
 * A policy is stored twice: as given (normalised JSON texts, which GET returns)
 * and as one projection row per role in iam_policy_rules, which is what the
 * decision reads through one covering index. Both are written in the same job,
 * so they never disagree.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sealvm/db.h"
#include "sealvm/macro.h"

#include "iam_internal.h"

/*
 * Version 1. Empty strings, not NULL, for absent resource attributes: the
 * decision matches "attribute = target value OR attribute = ''" on index
 * columns. subject is the iam_id (access) or the source service name
 * (authorization).
 */
static const char access_v1_sql[] =
	"CREATE TABLE iam_policies ("
	" id TEXT PRIMARY KEY,"
	" account_id TEXT NOT NULL,"
	" type TEXT NOT NULL CHECK (type IN ('access', 'authorization')),"
	" subject TEXT NOT NULL,"
	" description TEXT,"
	" subjects TEXT NOT NULL,"
	" roles TEXT NOT NULL,"
	" resources TEXT NOT NULL,"
	" etag TEXT NOT NULL,"
	" created_at TEXT NOT NULL,"
	" created_by_id TEXT NOT NULL,"
	" last_modified_at TEXT NOT NULL,"
	" last_modified_by_id TEXT NOT NULL"
	");"
	"CREATE INDEX iam_policies_account ON iam_policies (account_id, type, subject);"
	"CREATE TABLE iam_policy_rules ("
	" policy_id TEXT NOT NULL REFERENCES iam_policies (id) ON DELETE CASCADE,"
	" account_id TEXT NOT NULL,"
	" type TEXT NOT NULL,"
	" subject TEXT NOT NULL,"
	" subject_instance TEXT NOT NULL,"
	" role_crn TEXT NOT NULL,"
	" service_name TEXT NOT NULL,"
	" service_instance TEXT NOT NULL,"
	" resource_type TEXT NOT NULL,"
	" resource TEXT NOT NULL,"
	" resource_match INTEGER NOT NULL,"
	" key_ring TEXT NOT NULL,"
	" region TEXT NOT NULL"
	");"
	"CREATE INDEX iam_policy_rules_decide ON iam_policy_rules (account_id, type, subject,"
	" service_name, service_instance, resource_type, resource, resource_match, role_crn,"
	" subject_instance, key_ring, region);"
	"CREATE INDEX iam_policy_rules_policy ON iam_policy_rules (policy_id);";

const struct db_migration iam_access_migrations[] = {
	{.owner = IAM_MIGRATION_OWNER_ACCESS, .version = 1, .sql = access_v1_sql},
};
const size_t iam_access_n_migrations = ELEMENTSOF(iam_access_migrations);

static int prepare(sqlite3 *conn, const char *sql, sqlite3_stmt **ret, struct sealvm_err *err)
{
	return db_prepare(conn, sql, ret, err); /* cached per connection */
}

/* SQLITE_STATIC: the caller keeps @s alive until the statement is reset. NULL binds "". */
static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

static int bind_opt(sqlite3_stmt *st, int i, const char *s)
{
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static const char *col(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

static int insert_rules(sqlite3 *conn, const struct iam_policy_row *row,
			const struct iam_policy_rule *rules, size_t n, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(
		conn,
		"INSERT INTO iam_policy_rules (policy_id, account_id, type, subject,"
		" subject_instance, role_crn, service_name, service_instance, resource_type,"
		" resource, resource_match, key_ring, region)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
		&st, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		const struct iam_policy_rule *u = &rules[i];
		int rc = bind_text(st, 1, row->id);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 2, row->account_id);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 3, row->type);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 4, row->subject);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 5, u->subject_instance);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 6, u->role_crn);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 7, u->service_name);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 8, u->service_instance);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 9, u->resource_type);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 10, u->resource);
		if (rc == SQLITE_OK)
			rc = sqlite3_bind_int(st, 11, u->resource_match ? 1 : 0);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 12, u->key_ring);
		if (rc == SQLITE_OK)
			rc = bind_text(st, 13, u->region);
		if (rc == SQLITE_OK) {
			rc = sqlite3_step(st);
			if (rc == SQLITE_DONE)
				rc = SQLITE_OK;
		}
		sqlite3_reset(st);
		if (rc != SQLITE_OK)
			return db_error(conn, rc, "policy store: insert a rule", err);
	}
	return 0;
}

static int delete_rules(sqlite3 *conn, const char *policy_id, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "DELETE FROM iam_policy_rules WHERE policy_id = ?1", &st, err);
	if (r < 0)
		return r;
	int rc = bind_text(st, 1, policy_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "policy store: delete rules", err);
	return 0;
}

int iam_access_store_insert(sqlite3 *conn, const struct iam_policy_row *row,
			    const struct iam_policy_rule *rules, size_t n_rules,
			    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"INSERT INTO iam_policies (id, account_id, type, subject, description,"
			" subjects, roles, resources, etag, created_at, created_by_id,"
			" last_modified_at, last_modified_by_id)"
			" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
			&st, err);
	if (r < 0)
		return r;
	int rc = bind_text(st, 1, row->id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 2, row->account_id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 3, row->type);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 4, row->subject);
	if (rc == SQLITE_OK)
		rc = bind_opt(st, 5, row->description);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 6, row->subjects);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 7, row->roles);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 8, row->resources);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 9, row->etag);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 10, row->created_at);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 11, row->created_by_id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 12, row->last_modified_at);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 13, row->last_modified_by_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "policy store: insert a policy", err);
	return insert_rules(conn, row, rules, n_rules, err);
}

int iam_access_store_update(sqlite3 *conn, const struct iam_policy_row *row,
			    const struct iam_policy_rule *rules, size_t n_rules,
			    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"UPDATE iam_policies SET subject = ?3, description = ?4, subjects = ?5,"
			" roles = ?6, resources = ?7, etag = ?8, last_modified_at = ?9,"
			" last_modified_by_id = ?10 WHERE id = ?1 AND account_id = ?2",
			&st, err);
	if (r < 0)
		return r;
	int rc = bind_text(st, 1, row->id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 2, row->account_id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 3, row->subject);
	if (rc == SQLITE_OK)
		rc = bind_opt(st, 4, row->description);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 5, row->subjects);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 6, row->roles);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 7, row->resources);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 8, row->etag);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 9, row->last_modified_at);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 10, row->last_modified_by_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "policy store: update a policy", err);
	if (sqlite3_changes(conn) == 0)
		return sealvm_err_set(err, -ENOENT, "POLICY_NOT_FOUND", "policy %s not found",
				      row->id);
	r = delete_rules(conn, row->id, err);
	if (r < 0)
		return r;
	return insert_rules(conn, row, rules, n_rules, err);
}

int iam_access_store_delete(sqlite3 *conn, const char *account_id, const char *id,
			    struct sealvm_err *err)
{
	int r = delete_rules(conn, id, err);
	if (r < 0)
		return r;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	r = prepare(conn, "DELETE FROM iam_policies WHERE id = ?1 AND account_id = ?2", &st, err);
	if (r < 0)
		return r;
	int rc = bind_text(st, 1, id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 2, account_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "policy store: delete a policy", err);
	if (sqlite3_changes(conn) == 0)
		return sealvm_err_set(err, -ENOENT, "POLICY_NOT_FOUND", "policy %s not found", id);
	return 0;
}

int iam_access_store_delete_subject(sqlite3 *conn, const char *account_id, const char *subject,
				    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *rules = NULL;
	_cleanup_stmt_ sqlite3_stmt *pol = NULL;
	int r = prepare(conn,
			"DELETE FROM iam_policy_rules WHERE policy_id IN (SELECT id FROM"
			" iam_policies WHERE account_id = ?1 AND type = 'access' AND subject = ?2)",
			&rules, err);
	if (r < 0)
		return r;
	r = prepare(conn,
		    "DELETE FROM iam_policies WHERE account_id = ?1 AND type = 'access'"
		    " AND subject = ?2",
		    &pol, err);
	if (r < 0)
		return r;
	int rc = bind_text(rules, 1, account_id);
	if (rc == SQLITE_OK)
		rc = bind_text(rules, 2, subject);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(rules);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "policy store: delete a subject's rules", err);
	rc = bind_text(pol, 1, account_id);
	if (rc == SQLITE_OK)
		rc = bind_text(pol, 2, subject);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(pol);
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "policy store: delete a subject's policies", err);
	return sqlite3_changes(conn);
}

int iam_access_store_count(sqlite3 *conn, const char *account_id, int64_t *ret,
			   struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT count(*) FROM iam_policies WHERE account_id = ?1", &st, err);
	if (r < 0)
		return r;
	int rc = bind_text(st, 1, account_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return db_error(conn, rc, "policy store: count policies", err);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

#define POLICY_COLUMNS                                                                             \
	"id, account_id, type, subject, description, subjects, roles, resources, etag,"            \
	" created_at, created_by_id, last_modified_at, last_modified_by_id"

static int scan_policies(sqlite3 *conn, sqlite3_stmt *st, iam_policy_row_fn fn, void *userdata,
			 struct sealvm_err *err)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct iam_policy_row row = {
			.id = col(st, 0),
			.account_id = col(st, 1),
			.type = col(st, 2),
			.subject = col(st, 3),
			.description = col(st, 4),
			.subjects = col(st, 5),
			.roles = col(st, 6),
			.resources = col(st, 7),
			.etag = col(st, 8),
			.created_at = col(st, 9),
			.created_by_id = col(st, 10),
			.last_modified_at = col(st, 11),
			.last_modified_by_id = col(st, 12),
		};
		if (!row.id || !row.account_id || !row.type || !row.subject || !row.subjects ||
		    !row.roles || !row.resources || !row.etag || !row.created_at ||
		    !row.created_by_id || !row.last_modified_at || !row.last_modified_by_id)
			return db_error(conn, SQLITE_NOMEM, "policy store: read a policy", err);
		int r = fn(&row, userdata, err);
		if (r != 0)
			return r;
	}
	if (rc != SQLITE_DONE)
		return db_error(conn, rc, "policy store: read policies", err);
	return 0;
}

int iam_access_store_get(sqlite3 *conn, const char *id, iam_policy_row_fn fn, void *userdata,
			 struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT " POLICY_COLUMNS " FROM iam_policies WHERE id = ?1", &st,
			err);
	if (r < 0)
		return r;
	int rc = bind_text(st, 1, id);
	if (rc != SQLITE_OK)
		return db_error(conn, rc, "policy store: bind", err);
	return scan_policies(conn, st, fn, userdata, err);
}

int iam_access_store_list(sqlite3 *conn, const struct iam_policy_filter *f, iam_policy_row_fn fn,
			  void *userdata, struct sealvm_err *err)
{
	char sql[512];
	_cleanup_stmt_ sqlite3_stmt *st = NULL;

	snprintf(sql, sizeof(sql),
		 "SELECT " POLICY_COLUMNS " FROM iam_policies WHERE account_id = ?1%s%s%s"
		 " ORDER BY created_at, id",
		 f->type ? " AND type = ?2" : "", f->subject ? " AND subject = ?3" : "",
		 f->service_name ? " AND id IN (SELECT policy_id FROM iam_policy_rules"
				   " WHERE account_id = ?1 AND service_name = ?4)"
				 : "");
	int r = prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	int rc = bind_text(st, 1, f->account_id);
	if (rc == SQLITE_OK && f->type)
		rc = bind_text(st, 2, f->type);
	if (rc == SQLITE_OK && f->subject)
		rc = bind_text(st, 3, f->subject);
	if (rc == SQLITE_OK && f->service_name)
		rc = bind_text(st, 4, f->service_name);
	if (rc != SQLITE_OK)
		return db_error(conn, rc, "policy store: bind", err);
	return scan_policies(conn, st, fn, userdata, err);
}

/*
 * The decision's one query. Absent attributes are '' and match anything; a
 * resource that is a stringMatch pattern comes back to be matched in C; roles
 * and the attributes the index cannot compare (region, key ring, source
 * instance) are checked by the caller.
 *
 * Three index seeks, UNION ALL: rules on the target's instance, rules on
 * every instance of the service (skipped when the target has no instance:
 * the first seek found those), and rules on every service (whose other
 * attributes validation keeps empty). A subject with hundreds of rules on
 * other instances costs nothing. resource_type and resource are filtered
 * from the covering index entries; the unary '+' keeps SQLite from turning
 * "col IN (?, '')" into index lookups through an ephemeral table, which
 * allocates and frees a page cache on every decision.
 */
#define DECIDE_COLUMNS                                                                             \
	"role_crn, service_name, subject_instance, resource, resource_match, key_ring, region"
#define DECIDE_REST "+resource_type IN (?6, '') AND (+resource IN (?7, '') OR resource_match = 1)"

int iam_access_store_decide_prepare(sqlite3 *conn, sqlite3_stmt **ret, struct sealvm_err *err)
{
	return prepare(
		conn,
		"SELECT " DECIDE_COLUMNS " FROM iam_policy_rules"
		" WHERE account_id = ?1 AND type = ?2 AND subject = ?3 AND service_name = ?4"
		" AND service_instance = ?5 AND " DECIDE_REST " UNION ALL SELECT " DECIDE_COLUMNS
		" FROM iam_policy_rules"
		" WHERE ?5 <> '' AND account_id = ?1 AND type = ?2 AND subject = ?3"
		" AND service_name = ?4 AND service_instance = '' AND " DECIDE_REST
		" UNION ALL SELECT " DECIDE_COLUMNS " FROM iam_policy_rules"
		" WHERE account_id = ?1 AND type = ?2 AND subject = ?3 AND service_name = ''",
		ret, err);
}

int iam_access_store_decide(sqlite3 *conn, sqlite3_stmt *st, const struct iam_decide_query *q,
			    iam_rule_fn fn, void *userdata, struct sealvm_err *err)
{
	int rc = bind_text(st, 1, q->account_id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 2, q->type);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 3, q->subject);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 4, q->service_name);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 5, q->service_instance);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 6, q->resource_type);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 7, q->resource);
	if (rc != SQLITE_OK) {
		sqlite3_reset(st);
		return db_error(conn, rc, "policy store: bind", err);
	}
	int r = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct iam_rule_row row = {
			.role_crn = col(st, 0),
			.service_name = col(st, 1),
			.subject_instance = col(st, 2),
			.resource = col(st, 3),
			.resource_match = sqlite3_column_int(st, 4) != 0,
			.key_ring = col(st, 5),
			.region = col(st, 6),
		};
		if (!row.role_crn || !row.service_name || !row.subject_instance || !row.resource ||
		    !row.key_ring || !row.region) {
			r = db_error(conn, SQLITE_NOMEM, "policy store: read a rule", err);
			break;
		}
		r = fn(&row, userdata);
		if (r != 0)
			break;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = db_error(conn, rc, "policy store: decide", err);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return r;
}
