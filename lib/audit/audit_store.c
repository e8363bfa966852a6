// SPDX-License-Identifier: Apache-2.0
/*
 * audit_store.c — the audit tables and every SQL statement that touches them.
 *
 * SQL only: no CADF, no chain arithmetic (audit.c does both). Every value a
 * client controls reaches SQLite as a bound parameter; the query's SQL text
 * is assembled from constant fragments chosen by which filters are set, never
 * from their values. Statements are prepared with SQLITE_PREPARE_PERSISTENT
 * so SQLite may keep their plans around; a per-connection statement cache
 * can be added here without touching the logic.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sealvm/audit.h"
#include "sealvm/db.h"

#include "audit_internal.h"

/*
 * Version 1. seq is the rowid: audit_append sets it to last + 1, so it is
 * dense and strictly increasing as long as nobody edits the table — and verify
 * says where someone did. time_ms is the event time truncated to hundredths,
 * exactly what eventTime says. The text columns repeat what the chained event
 * says, for filtering; verify checks they agree. No pruning anchor yet: the
 * first event chains from 32 zero bytes (see docs/internals/audit.md for how
 * pruning will add one in a later version).
 */
static const char audit_v1_sql[] =
	"CREATE TABLE audit_events ("
	" seq INTEGER PRIMARY KEY,"
	" time_ms INTEGER NOT NULL,"
	" account_id TEXT,"
	" action TEXT NOT NULL,"
	" outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure', 'pending')),"
	" target_id TEXT,"
	" initiator_id TEXT,"
	" event TEXT NOT NULL,"
	" chain BLOB NOT NULL CHECK (length(chain) = 32)"
	");"
	"CREATE INDEX audit_events_account_seq ON audit_events (account_id, seq);"
	"CREATE INDEX audit_events_account_time ON audit_events (account_id, time_ms);";

/*
 * Version 2: the pruning anchor — the seq and chain value of the last event
 * removed by retention. The first kept event chains from it; without a row,
 * from (0, 32 zero bytes). audit_prune moves it in the transaction that
 * removes the events, after chaining an audit.events.prune event naming it.
 */
static const char audit_v2_sql[] = "CREATE TABLE audit_anchor ("
				   " id INTEGER PRIMARY KEY CHECK (id = 1),"
				   " seq INTEGER NOT NULL CHECK (seq > 0),"
				   " chain BLOB NOT NULL CHECK (length(chain) = 32)"
				   ");";

const struct db_migration audit_migrations[] = {
	{.owner = "audit", .version = 1, .sql = audit_v1_sql},
	{.owner = "audit", .version = 2, .sql = audit_v2_sql},
};
const size_t audit_n_migrations = ELEMENTSOF(audit_migrations);

static int store_error(sqlite3 *conn, int rc, const char *what, struct sealvm_err *err)
{
	int code;
	switch (rc & 0xff) {
	case SQLITE_NOMEM:
		code = -ENOMEM;
		break;
	case SQLITE_FULL:
		code = -ENOSPC;
		break;
	case SQLITE_CONSTRAINT:
		code = -EEXIST;
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		code = -EBUSY;
		break;
	default:
		code = -EIO;
	}
	return sealvm_err_set(err, code, "AUDIT_DB_ERROR", "audit store: %s: %s", what,
			      conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc));
}

static int prepare(sqlite3 *conn, const char *sql, sqlite3_stmt **ret, struct sealvm_err *err)
{
	return db_prepare(conn, sql, ret, err); /* cached per connection */
}

/* Binds @s as text, or NULL. SQLITE_STATIC: the caller keeps @s alive until the step. */
static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* The last row, or the anchor when there is none. */
static int last_row(sqlite3 *conn, int64_t *ret_seq, unsigned char ret_chain[AUDIT_CHAIN_SIZE],
		    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT seq, chain FROM audit_events ORDER BY seq DESC LIMIT 1", &st,
			err);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return audit_store_anchor(conn, ret_seq, ret_chain, err);
	if (rc != SQLITE_ROW)
		return store_error(conn, rc, "read the chain head", err);
	int64_t seq = sqlite3_column_int64(st, 0);
	const void *chain = sqlite3_column_blob(st, 1);
	if (!chain && sqlite3_errcode(conn) == SQLITE_NOMEM)
		return store_error(conn, SQLITE_NOMEM, "read the chain head", err);
	if (!chain || sqlite3_column_bytes(st, 1) != AUDIT_CHAIN_SIZE || seq <= 0)
		return sealvm_err_set(err, -EBADMSG, "AUDIT_CHAIN_CORRUPT",
				      "the last audit event (seq %lld) has a corrupt chain value; "
				      "run audit verification before writing more events",
				      (long long)seq);
	*ret_seq = seq;
	memcpy(ret_chain, chain, AUDIT_CHAIN_SIZE);
	return 0;
}

int audit_store_last(sqlite3 *conn, int64_t *ret_seq, unsigned char ret_chain[AUDIT_CHAIN_SIZE],
		     struct sealvm_err *err)
{
	int r = last_row(conn, ret_seq, ret_chain, err);
	if (r < 0)
		return r;
	/* The log's last record, when it is newer: one chain runs through both. */
	int64_t lseq = 0;
	unsigned char lchain[AUDIT_CHAIN_SIZE];
	r = audit_log_files_tail(conn, &lseq, lchain, err);
	if (r < 0)
		return r;
	if (lseq > *ret_seq) {
		*ret_seq = lseq;
		memcpy(ret_chain, lchain, AUDIT_CHAIN_SIZE);
	}
	return 0;
}

int audit_store_anchor(sqlite3 *conn, int64_t *ret_seq, unsigned char ret_chain[AUDIT_CHAIN_SIZE],
		       struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "SELECT seq, chain FROM audit_anchor WHERE id = 1", &st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		*ret_seq = 0;
		memset(ret_chain, 0, AUDIT_CHAIN_SIZE);
		return 0;
	}
	if (rc != SQLITE_ROW)
		return store_error(conn, rc, "read the pruning anchor", err);
	int64_t seq = sqlite3_column_int64(st, 0);
	const void *chain = sqlite3_column_blob(st, 1);
	if (!chain || sqlite3_column_bytes(st, 1) != AUDIT_CHAIN_SIZE || seq <= 0)
		return sealvm_err_set(err, -EBADMSG, "AUDIT_CHAIN_CORRUPT",
				      "the audit pruning anchor is corrupt");
	*ret_seq = seq;
	memcpy(ret_chain, chain, AUDIT_CHAIN_SIZE);
	return 0;
}

int audit_store_set_anchor(sqlite3 *conn, int64_t seq, const unsigned char chain[AUDIT_CHAIN_SIZE],
			   struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn,
			"INSERT OR REPLACE INTO audit_anchor (id, seq, chain) VALUES (1, ?, ?)",
			&st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_bind_int64(st, 1, seq);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(st, 2, chain, AUDIT_CHAIN_SIZE, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : store_error(conn, rc, "move the pruning anchor", err);
}

int audit_store_delete_through(sqlite3 *conn, int64_t seq, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, "DELETE FROM audit_events WHERE seq <= ?", &st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_bind_int64(st, 1, seq);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return store_error(conn, rc, "remove pruned events", err);
	return sqlite3_changes(conn);
}

int audit_store_insert(sqlite3 *conn, const struct audit_row *row, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(
		conn,
		"INSERT INTO audit_events (seq, time_ms, account_id, action, outcome,"
		" target_id, initiator_id, event, chain) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
		" ?8, ?9)",
		&st, err);
	if (r < 0)
		return r;
	if (row->chain_len != AUDIT_CHAIN_SIZE || row->event_len > (size_t)INT32_MAX)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit store: bad row for seq %lld", (long long)row->seq);
	int rc = sqlite3_bind_int64(st, 1, row->seq);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, row->time_ms);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 3, row->account_id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 4, row->action);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 5, row->outcome);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 6, row->target_id);
	if (rc == SQLITE_OK)
		rc = bind_text(st, 7, row->initiator_id);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 8, row->event, (int)row->event_len, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_blob(st, 9, row->chain, AUDIT_CHAIN_SIZE, SQLITE_STATIC);
	if (rc != SQLITE_OK)
		return store_error(conn, rc, "bind", err);
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return store_error(conn, rc, "insert an event", err);
	return 0;
}

static const char *column_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* Column order shared by both scans. */
#define ROW_COLUMNS                                                                                \
	"seq, time_ms, account_id, action, outcome, target_id, initiator_id, event, chain"

/* The current row of @st (after a step that gave SQLITE_ROW). */
static int sql_row(sqlite3 *conn, sqlite3_stmt *st, struct audit_row *ret, struct sealvm_err *err)
{
	struct audit_row row = {
		.seq = sqlite3_column_int64(st, 0),
		.time_ms = sqlite3_column_int64(st, 1),
		.account_id = column_text(st, 2),
		.action = column_text(st, 3),
		.outcome = column_text(st, 4),
		.target_id = column_text(st, 5),
		.initiator_id = column_text(st, 6),
		.event = column_text(st, 7),
		.chain = sqlite3_column_blob(st, 8),
	};
	row.event_len = (size_t)sqlite3_column_bytes(st, 7);
	row.chain_len = (size_t)sqlite3_column_bytes(st, 8);
	/* A column read that ran out of memory returns NULL and says so here. */
	if (sqlite3_errcode(conn) == SQLITE_NOMEM)
		return store_error(conn, SQLITE_NOMEM, "read events", err);
	if (!row.event)
		row.event = "";
	*ret = row;
	return 0;
}

static bool same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Whether a log row passes @q's filters (the rows' SQL applies the same ones). */
static bool row_matches(const struct audit_row *row, const struct audit_query *q)
{
	if (!q)
		return true;
	if (!same(row->account_id, q->account_id))
		return false;
	if (q->from_ms > 0 && row->time_ms < q->from_ms)
		return false;
	if (q->to_ms > 0 && row->time_ms >= q->to_ms)
		return false;
	if (q->action_prefix &&
	    (!row->action || strncmp(row->action, q->action_prefix, strlen(q->action_prefix)) != 0))
		return false;
	if (q->target && !same(row->target_id, q->target))
		return false;
	if (q->initiator && !same(row->initiator_id, q->initiator))
		return false;
	if (q->outcome && !same(row->outcome, q->outcome))
		return false;
	return true;
}

/* The next log row after @after_seq that passes @q: 1, 0 at the end, or an error. */
static int log_next(struct audit_log_reader *lr, int64_t after_seq, const struct audit_query *q,
		    struct audit_row *row, struct sealvm_err *err)
{
	for (;;) {
		int r = audit_log_reader_next(lr, row, err);
		if (r <= 0)
			return r;
		if (row->seq > after_seq && row_matches(row, q))
			return 1;
	}
}

/*
 * Streams the rows of @st (already bound; seq order) and the log's records
 * (seq > @after_seq, passing @q) merged in seq order, at most @max_rows.
 *
 * Both must be one consistent view: a log batch appended between the
 * snapshot of the rows and the reading of the log would look like a gap
 * before it. So the log's limit is read before and after the rows' snapshot
 * is fixed (their first step), until it did not move in between: then every
 * event up to it is in one or the other, and rows after it were committed
 * after it.
 */
#define SNAPSHOT_TRIES 20

static int scan_merged(sqlite3 *conn, sqlite3_stmt *st, int64_t after_seq,
		       const struct audit_query *q, const struct audit_log_limit *fixed,
		       unsigned max_rows, audit_row_fn fn, void *userdata, struct sealvm_err *err)
{
	struct audit_log_reader *lr = NULL;
	int r = audit_log_reader_open(conn, &lr, err);
	if (r < 0)
		return r;
	int rc = SQLITE_DONE;
	struct audit_log_limit l1 = {0}, l2 = {0};
	for (int tries = 0;; tries++) {
		if (lr)
			audit_log_reader_snapshot(lr, &l1);
		if (fixed)
			l1 = *fixed; /* the caller's transaction fixed the rows' snapshot after it
				      */
		rc = sqlite3_step(st);
		if (!lr || fixed)
			break;
		audit_log_reader_snapshot(lr, &l2);
		if (audit_log_limit_same(&l1, &l2) || tries == SNAPSHOT_TRIES ||
		    (rc != SQLITE_ROW && rc != SQLITE_DONE))
			break;
		sqlite3_reset(st);
	}
	struct audit_row srow, lrow;
	bool shave = false, lhave = false;
	if (rc == SQLITE_ROW) {
		r = sql_row(conn, st, &srow, err);
		shave = r == 0;
	} else if (rc != SQLITE_DONE) {
		r = store_error(conn, rc, "read events", err);
	}
	if (r == 0 && lr) {
		audit_log_reader_set_limit(lr, &l1);
		r = audit_log_reader_seek(lr, after_seq, err);
		if (r == 0) {
			r = log_next(lr, after_seq, q, &lrow, err);
			lhave = r == 1;
			r = r < 0 ? r : 0;
		}
	}
	for (unsigned n = 0; r == 0 && n < max_rows && (shave || lhave); n++) {
		bool take_sql = shave && (!lhave || srow.seq <= lrow.seq);
		r = fn(take_sql ? &srow : &lrow, userdata);
		if (r != 0)
			break;
		if (take_sql) {
			rc = sqlite3_step(st);
			shave = rc == SQLITE_ROW;
			if (shave)
				r = sql_row(conn, st, &srow, err);
			else if (rc != SQLITE_DONE)
				r = store_error(conn, rc, "read events", err);
		} else {
			r = log_next(lr, after_seq, q, &lrow, err);
			lhave = r == 1;
			r = r < 0 ? r : 0;
		}
	}
	audit_log_reader_close(lr);
	return r;
}

/* Where a scan of everything starts: after the pruning anchor. */
static int scan_start(sqlite3 *conn, int64_t *ret, struct sealvm_err *err)
{
	unsigned char chain[AUDIT_CHAIN_SIZE];
	return audit_store_anchor(conn, ret, chain, err);
}

int audit_store_scan_all_at(sqlite3 *conn, const struct audit_log_limit *limit, audit_row_fn fn,
			    void *userdata, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int64_t start;
	int r = scan_start(conn, &start, err);
	if (r < 0)
		return r;
	r = prepare(conn, "SELECT " ROW_COLUMNS " FROM audit_events ORDER BY seq", &st, err);
	if (r < 0)
		return r;
	return scan_merged(conn, st, start, NULL, limit, UINT32_MAX, fn, userdata, err);
}

int audit_store_log_limit(sqlite3 *conn, struct audit_log_limit *ret, struct sealvm_err *err)
{
	struct audit_log_reader *lr = NULL;
	memset(ret, 0, sizeof(*ret));
	int r = audit_log_reader_open(conn, &lr, err);
	if (r < 0 || !lr)
		return r;
	audit_log_reader_snapshot(lr, ret);
	audit_log_reader_close(lr);
	return 0;
}

int audit_store_scan_all(sqlite3 *conn, audit_row_fn fn, void *userdata, struct sealvm_err *err)
{
	return audit_store_scan_all_at(conn, NULL, fn, userdata, err);
}

int audit_store_scan_oldest(sqlite3 *conn, unsigned max_rows, audit_row_fn fn, void *userdata,
			    struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int64_t start;
	int r = scan_start(conn, &start, err);
	if (r < 0)
		return r;
	r = prepare(conn, "SELECT " ROW_COLUMNS " FROM audit_events ORDER BY seq LIMIT ?", &st,
		    err);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, max_rows);
	return scan_merged(conn, st, start, NULL, NULL, max_rows, fn, userdata, err);
}

int audit_store_scan_query(sqlite3 *conn, const struct audit_query *q, unsigned max_rows,
			   audit_row_fn fn, void *userdata, struct sealvm_err *err)
{
	/* Fixed parameter numbers, whichever fragments are present. */
	char sql[512];
	int n = snprintf(sql, sizeof(sql),
			 "SELECT " ROW_COLUMNS " FROM audit_events"
			 " WHERE account_id = ?1 AND seq > ?2%s%s%s%s%s%s"
			 " ORDER BY seq LIMIT ?9",
			 q->from_ms > 0 ? " AND time_ms >= ?3" : "",
			 q->to_ms > 0 ? " AND time_ms < ?4" : "",
			 /* substr/length count characters on both sides: a literal prefix. */
			 q->action_prefix ? " AND substr(action, 1, length(?5)) = ?5" : "",
			 q->target ? " AND target_id = ?6" : "",
			 q->initiator ? " AND initiator_id = ?7" : "",
			 q->outcome ? " AND outcome = ?8" : "");
	if (n < 0 || (size_t)n >= sizeof(sql))
		return sealvm_err_set(err, -EIO, "AUDIT_DB_ERROR", "audit store: query too long");

	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(conn, sql, &st, err);
	if (r < 0)
		return r;
	int rc = sqlite3_bind_text(st, 1, q->account_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 2, q->after_seq);
	if (rc == SQLITE_OK && q->from_ms > 0)
		rc = sqlite3_bind_int64(st, 3, q->from_ms);
	if (rc == SQLITE_OK && q->to_ms > 0)
		rc = sqlite3_bind_int64(st, 4, q->to_ms);
	if (rc == SQLITE_OK && q->action_prefix)
		rc = sqlite3_bind_text(st, 5, q->action_prefix, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && q->target)
		rc = sqlite3_bind_text(st, 6, q->target, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && q->initiator)
		rc = sqlite3_bind_text(st, 7, q->initiator, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK && q->outcome)
		rc = sqlite3_bind_text(st, 8, q->outcome, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(st, 9, (sqlite3_int64)max_rows);
	if (rc != SQLITE_OK)
		return store_error(conn, rc, "bind", err);
	int64_t start;
	r = scan_start(conn, &start, err);
	if (r < 0)
		return r;
	return scan_merged(conn, st, MAX(start, q->after_seq), q, NULL, max_rows, fn, userdata,
			   err);
}
