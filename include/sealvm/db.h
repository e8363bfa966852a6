/* SPDX-License-Identifier: Apache-2.0 */
/*
 * db.h — the control-plane database: one SQLite file, many owners, group commit.
 *
 * Every service owns its tables and registers its schema migrations here; a
 * `schema_versions` table records, per owner, the version applied. The file
 * runs in WAL mode with synchronous=FULL: an acknowledged write is on disk.
 *
 * Writes go through one writer thread. A caller hands it a job (a function
 * that does reads and writes through the connection it is given); the writer
 * runs as many queued jobs as it finds inside ONE transaction, each within its
 * own SAVEPOINT so that a failing job rolls back alone, then COMMITs once and
 * wakes every waiter with its own result. Concurrent requests so share one
 * fsync: durability does not cap throughput. A job must not block on anything
 * but the database (no network, no key derivation) — it holds up the batch.
 *
 * Reads use a small pool of read-only connections (WAL: readers never block
 * the writer nor each other). Nothing here formats secrets; callers bind them
 * as blobs only when they are sealed.
 */
#ifndef SEALVM_DB_H
#define SEALVM_DB_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "sealvm/err.h"

struct sealvm_db;

/* One migration step of one owner: version N is applied when the owner's version is N-1. */
struct db_migration {
	const char *owner; /* "iam", "audit", "kms", ... */
	int version;	   /* 1, 2, 3 ... in order per owner */
	const char *sql;   /* one or more statements, run in the migration's transaction */
};

struct db_options {
	unsigned readers;	  /* read connections; 0 = 4, at most 256 */
	unsigned max_batch;	  /* jobs per commit at most; 0 = 512, at most 65536 */
	unsigned busy_timeout_ms; /* 0 = 5000 */
	/*
	 * Called by db_write on the caller's thread, no lock held, once its job is
	 * queued, with the number of jobs then waiting for the writer (this one
	 * included): for queue-depth metrics, and for tests that must know a batch
	 * has formed. NULL: not called. Must not call into the database.
	 */
	void (*on_queued)(void *arg, size_t waiting);
	void *on_queued_arg;
};

/*
 * Opens (creating with mode 0600) the database at @path, applies every pending
 * migration of @migrations (in order, each in its own transaction, all before
 * returning), and starts the writer thread. Per owner the list must count
 * 1, 2, 3... (owners may interleave; the list's order is the order applied).
 * Owners recorded in the file but absent from the list are left alone.
 * @opts may be NULL (defaults). On success *@ret is the new handle (db_close it).
 * Errors: -EIO (DB_ERROR) with the SQLite message, -EBADMSG (DB_CORRUPT) for a
 * file that is not a database, -EINVAL for a migration list out of order or
 * with gaps (nothing is created then), -EPROTO (reason SCHEMA_TOO_NEW) when
 * the file was written by a newer sealvm (nothing is changed then).
 */
int db_open(const char *path, const struct db_migration *migrations, size_t n_migrations,
	    const struct db_options *opts, struct sealvm_db **ret, struct sealvm_err *err);

/*
 * Runs the jobs already queued, stops the writer, closes every connection.
 * Every borrowed reader must have been given back. NULL is fine.
 */
void db_close(struct sealvm_db *db);

/*
 * A write job: runs on the writer thread inside a SAVEPOINT of the current
 * batch. Returns 0 (or a positive count, handed back as is) to keep its
 * changes, or a negative errno (with @err set) to roll them back. @conn is
 * valid only during the call. A job may not BEGIN, COMMIT, ROLLBACK, ATTACH,
 * nor touch the batch's savepoint (the statement fails to prepare), nor call
 * db_write (-EDEADLK); its own nested SAVEPOINTs are fine. A write that would
 * leave a deferred foreign key unresolved fails alone (-EEXIST, DB_CONSTRAINT).
 */
typedef int (*db_job_fn)(sqlite3 *conn, void *userdata, struct sealvm_err *err);

/*
 * Queues @fn and waits until its batch has committed (or failed). Returns the
 * job's own result (and its own error in @err), or -EIO (reason
 * DB_COMMIT_FAILED) for a job that succeeded when the batch's COMMIT failed —
 * then no job of that batch took effect; a job that failed by itself keeps its
 * own error. -ESHUTDOWN (DB_CLOSED) once db_close has begun. Safe from any
 * thread but the writer's.
 */
int db_write(struct sealvm_db *db, db_job_fn fn, void *userdata, struct sealvm_err *err);

/*
 * db_write for a job that only appends rows no cache ever holds (audit
 * events of requests that change nothing): @flags DB_JOB_APPEND_ONLY. Such a
 * job leaves db_state_generation alone.
 */
#define DB_JOB_APPEND_ONLY 1u
int db_write_flags(struct sealvm_db *db, db_job_fn fn, void *userdata, unsigned flags,
		   struct sealvm_err *err);

/*
 * db_write without waiting: queues @fn (as db_write_flags) and returns 0 at
 * once; the writer, after the job's batch has committed (or failed), calls
 * @done(@done_arg, the job's result, its error) on the writer thread — where
 * @done must not block nor call db_write — instead of waking a waiter. So a
 * request can give up its thread while its event commits. Errors (and then
 * @done is never called): -EINVAL, -ENOMEM, -ESHUTDOWN (DB_CLOSED). db_close
 * runs every queued job, completions included, before it returns.
 */
typedef void (*db_done_fn)(void *arg, int result, const struct sealvm_err *err);

/*
 * A job that writes no table (DB_JOB_LOG, with DB_JOB_APPEND_ONLY): it stages
 * records in the database's log (db_set_log). A batch made only of such jobs
 * runs no savepoints and changes no page: the writer takes the write lock
 * (an empty BEGIN IMMEDIATE, so another process cannot append meanwhile),
 * calls log.begin, runs each job with @conn NULL, then log.commit — one
 * durable append for the batch — and ends the empty transaction. Without a
 * log set, or in a batch with other jobs, the job runs as any other, with
 * @conn; it then writes its records as rows.
 */
#define DB_JOB_LOG 2u
struct db_log_ops {
	int (*begin)(void *ctx, sqlite3 *conn, struct sealvm_err *err);
	/* Makes what the batch's jobs staged durable; a failure fails every job of it. */
	int (*commit)(void *ctx, struct sealvm_err *err);
	/* The batch will not commit (begin or a lock failed): drop what was staged. */
	void (*abort)(void *ctx);
	void *ctx;
};
/* Sets the log for DB_JOB_LOG batches (before any such job is queued); NULL ops: none. */
void db_set_log(struct sealvm_db *db, const struct db_log_ops *ops);
int db_write_async(struct sealvm_db *db, db_job_fn fn, void *userdata, unsigned flags,
		   db_done_fn done, void *done_arg, struct sealvm_err *err);

/*
 * A number that changes after every batch that ran a job without
 * DB_JOB_APPEND_ONLY — once that batch has committed or rolled back. A cache
 * of rows stamps each entry with the generation it read BEFORE reading the
 * rows, and trusts the entry only while the generation is still that: a
 * write that may have changed the rows always moves it on. (Conservative: any
 * write invalidates every cache; reads between writes hit.)
 */
uint64_t db_state_generation(struct sealvm_db *db);

/*
 * Borrows a read-only connection (blocks while all are lent), and gives it
 * back. Each statement sees the last committed state; wrap several in
 * BEGIN ... COMMIT for one snapshot. db_read_end resets statements left
 * stepping and ends a transaction left open, so no snapshot stays pinned.
 */
sqlite3 *db_read_begin(struct sealvm_db *db);
void db_read_end(struct sealvm_db *db, sqlite3 *conn);

/* Statistics for tests and benchmarks: commits done and jobs run in total. */
void db_stats(struct sealvm_db *db, uint64_t *ret_commits, uint64_t *ret_jobs);

/*
 * Checkpoints run so far. They never run inside a commit: a thread of their
 * own copies the WAL into the database (PASSIVE: without waiting for the
 * writer) each 1000 new frames; past 4096 frames the writer copies the rest
 * itself between two batches, so that its next transaction starts the WAL over.
 */
uint64_t db_checkpoints(struct sealvm_db *db);

/*
 * Translates a SQLite result code at a call site into a negative errno + err,
 * message "@what: <SQLite's message>": CONSTRAINT -EEXIST (DB_CONSTRAINT),
 * FULL -ENOSPC (NO_SPACE), BUSY/LOCKED -EBUSY (DB_BUSY), NOTFOUND -ENOENT
 * (NOT_FOUND), CORRUPT/NOTADB -EBADMSG (DB_CORRUPT), READONLY/PERM -EROFS
 * (READ_ONLY), NOMEM -ENOMEM (NO_MEMORY), TOOBIG -E2BIG (TOO_LARGE), anything
 * else -EIO (DB_ERROR). @conn may be NULL. SQLite's messages name tables and
 * columns, never bound values.
 */
int db_error(sqlite3 *conn, int rc, const char *what, struct sealvm_err *err);

/*
 * A prepared statement for @sql on @conn (a connection of this module: the
 * writer's inside a job, or a borrowed reader), from the connection's cache
 * of prepared statements, keyed by the SQL text: parsing and planning happen
 * once per connection, not once per call. Give it back with db_stmt_release
 * (the _cleanup_stmt_ attribute does), which resets it and clears its
 * bindings; never finalize it. A statement of the same text still held
 * further up the stack, or a full cache, gets a private statement, which
 * release finalizes. Errors as db_error for the SQLite result.
 */
int db_prepare(sqlite3 *conn, const char *sql, sqlite3_stmt **ret, struct sealvm_err *err);

/* Returns a statement of db_prepare to its cache (or finalizes any other). NULL is fine. */
void db_stmt_release(sqlite3_stmt *st);

static inline void db_stmt_releasep(sqlite3_stmt **s)
{
	db_stmt_release(*s);
}
#define _cleanup_stmt_ _cleanup_(db_stmt_releasep)

#endif
