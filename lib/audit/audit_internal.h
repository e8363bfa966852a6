/* SPDX-License-Identifier: Apache-2.0 */
/*
 * audit_internal.h — between the audit logic (audit.c) and its SQL (audit_store.c).
 *
 * The store knows tables and statements and nothing of CADF or of the chain
 * construction; the logic never writes SQL. Rows handed to callbacks are
 * borrowed from a live statement: valid only during the call.
 */
#ifndef SEALVM_AUDIT_INTERNAL_H
#define SEALVM_AUDIT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "sealvm/audit.h"
#include "sealvm/err.h"

static inline void audit_json_decrefp(json_t **j)
{
	json_decref(*j); /* NULL is a no-op */
}
#define _cleanup_json_ _cleanup_(audit_json_decrefp)

/* One stored event. Strings are NUL-terminated; NULL where the column is NULL. */
struct audit_row {
	int64_t seq;
	int64_t time_ms;
	const char *account_id;
	const char *action;
	const char *outcome;
	const char *target_id;
	const char *initiator_id;
	const char *event; /* the canonical JSON text, as hashed */
	size_t event_len;
	const unsigned char *chain;
	size_t chain_len; /* AUDIT_CHAIN_SIZE unless the row was tampered with */
};

/* Called once per row; a non-zero return stops the scan and is returned by it. */
typedef int (*audit_row_fn)(const struct audit_row *row, void *userdata);

/*
 * The last event's seq and chain value: *ret_seq = 0 and ret_chain zeroed when
 * there is none. -EBADMSG (AUDIT_CHAIN_CORRUPT) when the stored chain value is
 * not AUDIT_CHAIN_SIZE bytes; -EIO on a database error.
 */
int audit_store_last(sqlite3 *conn, int64_t *ret_seq, unsigned char ret_chain[AUDIT_CHAIN_SIZE],
		     struct sealvm_err *err);

/*
 * The pruning anchor: the seq and chain value of the last event retention
 * removed (*ret_seq = 0 and zeros when nothing was ever pruned). When the
 * table is empty audit_store_last returns it. -EBADMSG when corrupt.
 */
int audit_store_anchor(sqlite3 *conn, int64_t *ret_seq, unsigned char ret_chain[AUDIT_CHAIN_SIZE],
		       struct sealvm_err *err);
int audit_store_set_anchor(sqlite3 *conn, int64_t seq, const unsigned char chain[AUDIT_CHAIN_SIZE],
			   struct sealvm_err *err);

/* Removes every event with seq <= @seq; returns how many. */
int audit_store_delete_through(sqlite3 *conn, int64_t seq, struct sealvm_err *err);

/* The oldest @max_rows events, in seq order. */
int audit_store_scan_oldest(sqlite3 *conn, unsigned max_rows, audit_row_fn fn, void *userdata,
			    struct sealvm_err *err);

/* Inserts @row (chain_len must be AUDIT_CHAIN_SIZE). -EEXIST when the seq is taken, -EIO. */
int audit_store_insert(sqlite3 *conn, const struct audit_row *row, struct sealvm_err *err);

/* Every event, in seq order, streamed from one statement (one consistent snapshot). */
int audit_store_scan_all(sqlite3 *conn, audit_row_fn fn, void *userdata, struct sealvm_err *err);

/*
 * Events of @q (already validated: account_id set, outcome one of the three,
 * from/to sane), seq > q->after_seq, oldest first, at most @max_rows.
 */
int audit_store_scan_query(sqlite3 *conn, const struct audit_query *q, unsigned max_rows,
			   audit_row_fn fn, void *userdata, struct sealvm_err *err);

/* ---- the event log (audit_log.c) ---- */

/* How far readers may read: the last segment's first seq, its size, the last seq (0: any). */
struct audit_log_limit {
	int64_t seg_first;
	uint64_t size;
	int64_t seq;
};

/*
 * audit_store_scan_all reading the log only up to @limit (taken with
 * audit_store_log_limit before the caller's read transaction fixed the rows'
 * snapshot): verify, which reads the anchor and the rows in one transaction.
 * NULL: the limit is read around the rows' own snapshot.
 */
int audit_store_log_limit(sqlite3 *conn, struct audit_log_limit *ret, struct sealvm_err *err);
int audit_store_scan_all_at(sqlite3 *conn, const struct audit_log_limit *limit, audit_row_fn fn,
			    void *userdata, struct sealvm_err *err);

/*
 * Walks the records of a segment's bytes @buf[0..n), calling @fn (may be
 * NULL) for each whole one until it returns non-zero; returns where the whole
 * records end. *ret_damaged: what follows is not what a crash leaves (a whole
 * record comes after a bad one). @strs holds AUDIT_LOG_RECORD_MAX bytes.
 */
#define AUDIT_LOG_RECORD_MAX (70 + 5 * 65534 + AUDIT_EVENT_MAX_BYTES + 4)
size_t audit_log_walk(const unsigned char *buf, size_t n, char *strs, audit_row_fn fn,
		      void *userdata, bool *ret_damaged);

/* Segments end past @n bytes (0: the default, 64 MiB): tests. */
void audit_log_set_segment_bytes(size_t n);

/* The log this process writes, or NULL. */
struct audit_log *audit_log_current(void);
/* The log this process writes for @conn's database file, or NULL. */
struct audit_log *audit_log_of(sqlite3 *conn);

/*
 * The last record of the log beside @conn's database: the published durable
 * tail when this process writes it, else read from the files. *ret_seq = 0
 * when there is none.
 */
int audit_log_files_tail(sqlite3 *conn, int64_t *ret_seq, unsigned char ret_chain[AUDIT_CHAIN_SIZE],
			 struct sealvm_err *err);

/* Inside a log batch (a DB_JOB_LOG job): the head so far, and staging one chained row. */
void audit_log_staged_head(struct audit_log *log, int64_t *seq,
			   unsigned char chain[AUDIT_CHAIN_SIZE]);
int audit_log_stage(struct audit_log *log, const struct audit_row *row, struct sealvm_err *err);

/*
 * Reading the log beside @conn's database in seq order. *ret = NULL for an
 * in-memory database. Rows are valid until the next call. The reader stops
 * at its limit (the snapshot taken when it was opened; set_limit moves it).
 */
struct audit_log_reader;
int audit_log_reader_open(sqlite3 *conn, struct audit_log_reader **ret, struct sealvm_err *err);
void audit_log_reader_snapshot(struct audit_log_reader *r, struct audit_log_limit *out);
void audit_log_reader_set_limit(struct audit_log_reader *r, const struct audit_log_limit *l);
bool audit_log_limit_same(const struct audit_log_limit *a, const struct audit_log_limit *b);
int audit_log_reader_seek(struct audit_log_reader *r, int64_t after_seq, struct sealvm_err *err);
/* 1: a row; 0: the end; a negative errno. */
int audit_log_reader_next(struct audit_log_reader *r, struct audit_row *row,
			  struct sealvm_err *err);
void audit_log_reader_close(struct audit_log_reader *r);

#endif
