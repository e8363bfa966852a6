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

#endif
