// SPDX-License-Identifier: Apache-2.0
/*
 * db.c — the control-plane database: migrations, the writer thread with group
 * commit, the read pool, and SQLite error translation (see db.h).
 *
 * One connection writes, on one thread. Callers queue jobs; the writer takes
 * every queued job (up to max_batch) into one BEGIN IMMEDIATE transaction,
 * runs each inside its own SAVEPOINT so a failing job rolls back alone, and
 * COMMITs once: with synchronous=FULL that is one WAL fsync for the whole
 * batch. Readers borrow read-only connections from a fixed pool.
 *
 * This file must never log or format SQL parameters (they may be sealed
 * secrets), nor the text of a job's SQL: messages carry SQLite's own error
 * text, which names tables and columns, never values.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "sealvm/db.h"
#include "sealvm/file.h"
#include "sealvm/log.h"

#define DB_DEFAULT_READERS 4u
#define DB_DEFAULT_MAX_BATCH 512u
#define DB_DEFAULT_BUSY_TIMEOUT_MS 5000u
/* Limits against a mistaken option, not tuning knobs. */
#define DB_MAX_READERS 256u
#define DB_MAX_BATCH 65536u

/* The savepoint around each job; jobs may not release or roll back to it. */
#define JOB_SAVEPOINT "sealvm_job"

/*
 * One db_write call. Lives on the caller's stack until done is set: the
 * writer fills result and err, then stores done (release) and wakes the
 * futex on it; the caller waits on that futex word alone, so a finished batch
 * wakes each waiter once and no lock is fought over.
 */
struct db_job {
	db_job_fn fn;
	void *userdata;
	unsigned flags; /* DB_JOB_* */
	int result;
	struct sealvm_err err;
	uint32_t done;	    /* futex word: 0 waiting, 1 done */
	db_done_fn done_fn; /* db_write_async: called instead of waking a waiter */
	void *done_arg;
	struct db_job *next;
};

static void futex_wait(uint32_t *word, uint32_t expected)
{
	(void)syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake(uint32_t *word)
{
	(void)syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

struct sealvm_db {
	char *path;
	unsigned max_batch;
	void (*on_queued)(void *arg, size_t waiting);
	void *on_queued_arg;

	/* Writer: the connection and its statements belong to the writer thread once it runs. */
	sqlite3 *wconn;
	sqlite3_stmt *st_begin, *st_commit, *st_rollback;
	sqlite3_stmt *st_savepoint, *st_release, *st_rollback_to;
	struct db_log_ops log_ops; /* db_set_log; log_ops.commit NULL: none */
	bool guard; /* while caller SQL runs: the authorizer refuses transaction control */
	struct db_job **batch;
	pthread_t writer;
	bool writer_started;

	/* Queue and counters, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t work;
	pthread_cond_t drained; /* db_close waits on it for callers to leave db_write */
	struct db_job *head, *tail;
	size_t queued;
	bool writer_idle; /* waiting on work: only then does a new job signal it */
	size_t callers;	  /* inside db_write (atomic): the handle must outlive them */
	bool stopping;	  /* set under lock, read atomically */
	uint64_t commits, jobs;
	uint64_t state_gen; /* db_state_generation; atomic */

	/*
	 * Checkpoints run on a thread and connection of their own, never inside
	 * a commit: the writer's WAL hook tells it how long the WAL has grown.
	 */
	sqlite3 *cconn;
	pthread_t checkpointer;
	bool checkpointer_started;
	pthread_mutex_t clock;
	pthread_cond_t cwake;
	bool cstop;	      /* under clock */
	int wal_pages;	      /* under clock: frames in the WAL after the last commit */
	int wal_copied;	      /* under clock: of those, copied by the last checkpoint */
	uint64_t checkpoints; /* under clock */

	/*
	 * Read pool: a connection is lent by claiming its flag with one atomic
	 * exchange, starting from the slot this thread used last, so that
	 * borrowers do not queue on a lock. Only when every connection is lent
	 * does a borrower sleep (rlock, rfree), counted in waiters so that a
	 * returning connection wakes it.
	 */
	pthread_mutex_t rlock;
	pthread_cond_t rfree;
	sqlite3 **readers;   /* all of them */
	unsigned char *lent; /* atomic flags, one per reader */
	unsigned n_readers;
	unsigned waiters; /* atomic: borrowers asleep or about to be */
};

/* --- errors ------------------------------------------------------------------ */

static int map_rc(int rc, const char **ret_reason)
{
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
		*ret_reason = "DB_CONSTRAINT";
		return -EEXIST;
	case SQLITE_FULL:
		*ret_reason = "NO_SPACE";
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		*ret_reason = "DB_BUSY";
		return -EBUSY;
	case SQLITE_NOTFOUND:
		*ret_reason = "NOT_FOUND";
		return -ENOENT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		*ret_reason = "DB_CORRUPT";
		return -EBADMSG;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		*ret_reason = "READ_ONLY";
		return -EROFS;
	case SQLITE_NOMEM:
		*ret_reason = "NO_MEMORY";
		return -ENOMEM;
	case SQLITE_TOOBIG:
		*ret_reason = "TOO_LARGE";
		return -E2BIG;
	default:
		*ret_reason = "DB_ERROR";
		return -EIO;
	}
}

static _printf_(4, 0) int db_verror(sqlite3 *conn, int rc, struct sealvm_err *err, const char *fmt,
				    va_list ap)
{
	const char *reason;
	const char *msg;
	char what[256];
	int code = map_rc(rc, &reason);

	if (!err || err->code != 0)
		return code;
	vsnprintf(what, sizeof(what), fmt, ap);
	/* The connection's message only while it still describes @rc (a later call resets it). */
	if (conn && (sqlite3_errcode(conn) & 0xff) == (rc & 0xff))
		msg = sqlite3_errmsg(conn);
	else
		msg = sqlite3_errstr(rc);
	return sealvm_err_set(err, code, reason, "%s: %s", what, msg);
}

static _printf_(4, 5) int db_errorf(sqlite3 *conn, int rc, struct sealvm_err *err, const char *fmt,
				    ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = db_verror(conn, rc, err, fmt, ap);
	va_end(ap);
	return r;
}

int db_error(sqlite3 *conn, int rc, const char *what, struct sealvm_err *err)
{
	return db_errorf(conn, rc, err, "%s", what ? what : "database");
}

/* --- connections ------------------------------------------------------------- */

/*
 * Caller SQL (migrations, jobs) runs with the guard up: it may not end or
 * restart the batch's transaction, touch the job savepoint, or attach files.
 * The authorizer is consulted when a statement is prepared.
 */
static int writer_authorizer(void *ud, int action, const char *a1, const char *a2, const char *a3,
			     const char *a4)
{
	const struct sealvm_db *db = ud;

	if (!db->guard)
		return SQLITE_OK;
	switch (action) {
	case SQLITE_TRANSACTION:
	case SQLITE_ATTACH:
	case SQLITE_DETACH:
		return SQLITE_DENY;
	case SQLITE_SAVEPOINT:
		return a2 && strcasecmp(a2, JOB_SAVEPOINT) == 0 ? SQLITE_DENY : SQLITE_OK;
	default:
		return SQLITE_OK;
	}
}

static int conn_harden(sqlite3 *conn, unsigned busy_timeout_ms)
{
	int rc = sqlite3_busy_timeout(conn, (int)MIN(busy_timeout_ms, (unsigned)INT32_MAX));
	if (rc == SQLITE_OK)
		rc = sqlite3_db_config(conn, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_db_config(conn, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	if (rc == SQLITE_OK)
		sqlite3_extended_result_codes(conn, 1);
	return rc;
}

/* --- the statement cache ------------------------------------------------------ */

/*
 * Preparing a statement (parsing and planning its SQL) costs far more than
 * running a cheap one; every connection this file opens keeps its prepared
 * statements, keyed by their SQL text. A connection is used by one thread at
 * a time (the writer's, or a borrowed reader's), so its cache needs no lock;
 * the registry that finds a connection's cache is written only when a
 * connection opens or closes, and read without a lock.
 */
#define STMT_CACHE_SLOTS 128u
#define STMT_REGISTRY_SLOTS 4096u
#define STMT_REGISTRY_TOMB ((sqlite3 *)(uintptr_t)1)

struct stmt_slot {
	uint64_t hash;
	char *sql;
	sqlite3_stmt *st;
	bool busy; /* handed out and not yet released */
};

struct stmt_cache {
	unsigned n;
	struct stmt_slot slots[STMT_CACHE_SLOTS];
};

static struct {
	sqlite3 *conn; /* NULL: never used; STMT_REGISTRY_TOMB: freed */
	struct stmt_cache *cache;
} stmt_registry[STMT_REGISTRY_SLOTS];
static pthread_mutex_t stmt_registry_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned registry_home(const sqlite3 *conn)
{
	uintptr_t v = (uintptr_t)conn;
	return (unsigned)(sealvm_fnv1a(&v, sizeof(v)) % STMT_REGISTRY_SLOTS);
}

static struct stmt_cache *stmt_cache_of(const sqlite3 *conn)
{
	unsigned h = registry_home(conn);
	for (unsigned i = 0; i < STMT_REGISTRY_SLOTS; i++) {
		unsigned k = (h + i) % STMT_REGISTRY_SLOTS;
		sqlite3 *c = __atomic_load_n(&stmt_registry[k].conn, __ATOMIC_ACQUIRE);
		if (!c)
			return NULL;
		if (c == conn)
			return stmt_registry[k].cache;
	}
	return NULL;
}

/* Gives @conn a cache; without one (no memory, registry full) it prepares every time. */
static void stmt_cache_attach(sqlite3 *conn)
{
	struct stmt_cache *cache = calloc(1, sizeof(*cache));
	if (!cache)
		return;
	unsigned h = registry_home(conn);
	pthread_mutex_lock(&stmt_registry_lock);
	for (unsigned i = 0; i < STMT_REGISTRY_SLOTS; i++) {
		unsigned k = (h + i) % STMT_REGISTRY_SLOTS;
		sqlite3 *c = stmt_registry[k].conn;
		if (!c || c == STMT_REGISTRY_TOMB) {
			stmt_registry[k].cache = cache;
			__atomic_store_n(&stmt_registry[k].conn, conn, __ATOMIC_RELEASE);
			cache = NULL;
			break;
		}
	}
	pthread_mutex_unlock(&stmt_registry_lock);
	free(cache);
}

/* Finalizes @conn's cached statements and forgets its cache; before closing it. */
static void stmt_cache_detach(sqlite3 *conn)
{
	struct stmt_cache *cache = NULL;
	unsigned h = registry_home(conn);
	pthread_mutex_lock(&stmt_registry_lock);
	for (unsigned i = 0; i < STMT_REGISTRY_SLOTS; i++) {
		unsigned k = (h + i) % STMT_REGISTRY_SLOTS;
		sqlite3 *c = stmt_registry[k].conn;
		if (!c)
			break;
		if (c == conn) {
			cache = stmt_registry[k].cache;
			stmt_registry[k].cache = NULL;
			__atomic_store_n(&stmt_registry[k].conn, STMT_REGISTRY_TOMB,
					 __ATOMIC_RELEASE);
			break;
		}
	}
	pthread_mutex_unlock(&stmt_registry_lock);
	if (!cache)
		return;
	for (unsigned i = 0; i < cache->n; i++) {
		sqlite3_finalize(cache->slots[i].st);
		free(cache->slots[i].sql);
	}
	free(cache);
}

static void conn_close(sqlite3 *conn)
{
	if (!conn)
		return;
	stmt_cache_detach(conn);
	sqlite3_close_v2(conn);
}

int db_prepare(sqlite3 *conn, const char *sql, sqlite3_stmt **ret, struct sealvm_err *err)
{
	struct stmt_cache *cache = conn ? stmt_cache_of(conn) : NULL;
	size_t len = sql ? strlen(sql) : 0;
	uint64_t h = sealvm_fnv1a(sql ? sql : "", len);
	struct stmt_slot *free_slot = NULL;
	sqlite3_stmt *st = NULL;
	int rc;

	if (!conn || !sql || !ret)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT", "db_prepare without SQL");
	if (cache) {
		for (unsigned i = 0; i < cache->n; i++) {
			struct stmt_slot *s = &cache->slots[i];
			if (s->hash != h || strcmp(s->sql, sql) != 0)
				continue;
			if (s->busy)
				break; /* in use further up this thread's stack: a private one */
			s->busy = true;
			*ret = s->st;
			return 0;
		}
		if (cache->n < STMT_CACHE_SLOTS)
			free_slot = &cache->slots[cache->n];
	}
	rc = sqlite3_prepare_v3(conn, sql, -1, free_slot ? SQLITE_PREPARE_PERSISTENT : 0, &st,
				NULL);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(st);
		return db_error(conn, rc, "prepare", err);
	}
	if (free_slot) {
		char *copy = strdup(sql);
		if (copy) {
			*free_slot =
				(struct stmt_slot){.hash = h, .sql = copy, .st = st, .busy = true};
			cache->n++;
		}
	}
	*ret = st;
	return 0;
}

void db_stmt_release(sqlite3_stmt *st)
{
	if (!st)
		return;
	struct stmt_cache *cache = stmt_cache_of(sqlite3_db_handle(st));
	if (cache)
		for (unsigned i = 0; i < cache->n; i++)
			if (cache->slots[i].st == st) {
				sqlite3_reset(st);
				sqlite3_clear_bindings(st);
				cache->slots[i].busy = false;
				return;
			}
	sqlite3_finalize(st);
}

static int conn_open(const char *path, int flags, unsigned busy_timeout_ms, sqlite3 **ret,
		     struct sealvm_err *err)
{
	sqlite3 *conn = NULL;
	int rc = sqlite3_open_v2(path, &conn, flags | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
				 NULL);
	if (rc == SQLITE_OK)
		rc = conn_harden(conn, busy_timeout_ms);
	if (rc != SQLITE_OK) {
		int r = db_errorf(conn, rc, err, "cannot open the database %s", path);
		sqlite3_close_v2(conn);
		return r;
	}
	stmt_cache_attach(conn);
	*ret = conn;
	return 0;
}

/* Runs a single-row PRAGMA and checks its text result (journal_mode answers with the mode). */
static int pragma_expect(sqlite3 *conn, const char *path, const char *sql, const char *want,
			 struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(conn, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW || rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		return db_errorf(conn, rc, err, "%s: %s", path, sql);
	if (want) {
		const unsigned char *got = sqlite3_column_text(st, 0);
		if (!got || strcasecmp((const char *)got, want) != 0)
			return sealvm_err_set(err, -EIO, "DB_ERROR",
					      "%s: %s answered \"%s\", expected \"%s\"", path, sql,
					      got ? (const char *)got : "", want);
	}
	return 0;
}

static int exec_sql(sqlite3 *conn, const char *sql)
{
	return sqlite3_exec(conn, sql, NULL, NULL, NULL);
}

/* Steps a cached statement that returns no rows and resets it; SQLITE_OK or the error. */
static int step_once(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/*
 * Creates the file with mode 0600 when it does not exist, so that SQLite never
 * creates it under the umask; the WAL and shm files inherit the mode from it.
 */
static int create_file(const char *path, struct sealvm_err *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (fchmod(fd, 0600) < 0 || fsync(fd) < 0)
			return sealvm_err_set_errno(err, negative_errno(), "IO_ERROR",
						    "cannot create the database %s", path);
		r = sealvm_fsync_parent_dir(path);
		if (r < 0)
			return sealvm_err_set_errno(err, r, "IO_ERROR",
						    "cannot fsync the directory of %s", path);
		return 0;
	}
	r = negative_errno();
	if (r != -EEXIST) {
		if (r == -ENOENT)
			return sealvm_err_set(
				err, r, "DB_DIR_MISSING",
				"cannot create the database %s: its directory does not exist",
				path);
		return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot create the database %s",
					    path);
	}
	if (lstat(path, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), "IO_ERROR", "cannot stat %s",
					    path);
	if (!S_ISREG(st.st_mode))
		return sealvm_err_set(
			err, -EINVAL, "DB_NOT_A_FILE",
			"%s is not a regular file (a symbolic link or a directory?): give the database file itself",
			path);
	if (st.st_mode & 0077)
		log_warning("database %s is accessible to other users (mode %04o); chmod 600 it",
			    path, (unsigned)(st.st_mode & 07777));
	return 0;
}

/* --- migrations -------------------------------------------------------------- */

/* Per owner, versions must come as 1, 2, 3, ... in the order of the list. */
static int migrations_check(const struct db_migration *m, size_t n, struct sealvm_err *err)
{
	for (size_t i = 0; i < n; i++) {
		int prev = 0;

		if (!m[i].owner || !m[i].owner[0] || !m[i].sql)
			return sealvm_err_set(err, -EINVAL, "MIGRATION_INVALID",
					      "migration %zu has no owner or no SQL", i);
		for (size_t j = i; j-- > 0;)
			if (strcmp(m[j].owner, m[i].owner) == 0) {
				prev = m[j].version;
				break;
			}
		if (m[i].version != prev + 1)
			return sealvm_err_set(
				err, -EINVAL, "MIGRATION_ORDER",
				"migrations of \"%s\": version %d follows version %d; they must count 1, 2, 3... in order",
				m[i].owner, m[i].version, prev);
	}
	return 0;
}

static int recorded_version(sqlite3 *conn, const char *owner, int64_t *ret, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(conn, "SELECT version FROM schema_versions WHERE owner = ?1",
				    -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*ret = sqlite3_column_int64(st, 0);
		return 0;
	}
	if (rc == SQLITE_DONE) {
		*ret = 0;
		return 0;
	}
	return db_errorf(conn, rc, err, "cannot read the schema version of \"%s\"", owner);
}

static int record_version(sqlite3 *conn, const char *owner, int version, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(conn,
				    "INSERT INTO schema_versions(owner, version) VALUES (?1, ?2) "
				    "ON CONFLICT(owner) DO UPDATE SET version = excluded.version",
				    -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(st, 1, owner, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 2, version);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		return db_errorf(conn, rc, err, "cannot record schema version %d of \"%s\"",
				 version, owner);
	return 0;
}

/* The highest version the list knows for @owner (the last one: the list is checked). */
static int known_version(const struct db_migration *m, size_t n, const char *owner)
{
	for (size_t i = n; i-- > 0;)
		if (strcmp(m[i].owner, owner) == 0)
			return m[i].version;
	return 0;
}

static int apply_one(struct sealvm_db *db, const struct db_migration *m, struct sealvm_err *err)
{
	int64_t v;
	int rc, r;

	rc = exec_sql(db->wconn, "BEGIN IMMEDIATE");
	if (rc != SQLITE_OK)
		return db_errorf(db->wconn, rc, err, "%s: cannot begin migration %d of \"%s\"",
				 db->path, m->version, m->owner);
	/* Read again inside the write lock: another process may have migrated meanwhile. */
	r = recorded_version(db->wconn, m->owner, &v, err);
	if (r < 0)
		goto rollback;
	if (v >= m->version) {
		exec_sql(db->wconn, "ROLLBACK");
		return 0;
	}
	if (v != m->version - 1) {
		r = sealvm_err_set(err, -EPROTO, "SCHEMA_GAP",
				   "%s: \"%s\" is at version %" PRId64 ", cannot apply version %d",
				   db->path, m->owner, v, m->version);
		goto rollback;
	}
	db->guard = true;
	rc = exec_sql(db->wconn, m->sql);
	db->guard = false;
	if (rc != SQLITE_OK) {
		r = db_errorf(db->wconn, rc, err, "%s: migration %d of \"%s\" failed", db->path,
			      m->version, m->owner);
		goto rollback;
	}
	r = record_version(db->wconn, m->owner, m->version, err);
	if (r < 0)
		goto rollback;
	rc = exec_sql(db->wconn, "COMMIT");
	if (rc != SQLITE_OK) {
		r = db_errorf(db->wconn, rc, err, "%s: cannot commit migration %d of \"%s\"",
			      db->path, m->version, m->owner);
		goto rollback;
	}
	log_info("database %s: applied migration %d of \"%s\"", db->path, m->version, m->owner);
	return 0;
rollback:
	if (!sqlite3_get_autocommit(db->wconn))
		exec_sql(db->wconn, "ROLLBACK");
	return r;
}

static int migrate(struct sealvm_db *db, const struct db_migration *m, size_t n,
		   struct sealvm_err *err)
{
	int rc, r;

	rc = exec_sql(db->wconn, "CREATE TABLE IF NOT EXISTS schema_versions("
				 "owner TEXT PRIMARY KEY, version INTEGER NOT NULL)");
	if (rc != SQLITE_OK)
		return db_errorf(db->wconn, rc, err, "%s: cannot create schema_versions", db->path);

	/* Refuse a newer file before changing anything in it. */
	for (size_t i = 0; i < n; i++) {
		int64_t v;
		int known = known_version(m, n, m[i].owner);

		if (m[i].version != known)
			continue; /* check each owner once, at its last entry */
		r = recorded_version(db->wconn, m[i].owner, &v, err);
		if (r < 0)
			return r;
		if (v > known)
			return sealvm_err_set(
				err, -EPROTO, "SCHEMA_TOO_NEW",
				"%s: the tables of \"%s\" are at schema version %" PRId64
				" but this sealvm knows versions up to %d; run a newer sealvm",
				db->path, m[i].owner, v, known);
	}

	for (size_t i = 0; i < n; i++) {
		r = apply_one(db, &m[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* --- the writer -------------------------------------------------------------- */

static int writer_prepare(struct sealvm_db *db, struct sealvm_err *err)
{
	static const struct {
		size_t offset;
		const char *sql;
	} stmts[] = {
		{offsetof(struct sealvm_db, st_begin), "BEGIN IMMEDIATE"},
		{offsetof(struct sealvm_db, st_commit), "COMMIT"},
		{offsetof(struct sealvm_db, st_rollback), "ROLLBACK"},
		{offsetof(struct sealvm_db, st_savepoint), "SAVEPOINT " JOB_SAVEPOINT},
		{offsetof(struct sealvm_db, st_release), "RELEASE " JOB_SAVEPOINT},
		{offsetof(struct sealvm_db, st_rollback_to), "ROLLBACK TO " JOB_SAVEPOINT},
	};

	for (size_t i = 0; i < ELEMENTSOF(stmts); i++) {
		sqlite3_stmt **st = (sqlite3_stmt **)((char *)db + stmts[i].offset);
		int rc = sqlite3_prepare_v3(db->wconn, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
					    st, NULL);
		if (rc != SQLITE_OK)
			return db_errorf(db->wconn, rc, err, "%s: cannot prepare %s", db->path,
					 stmts[i].sql);
	}
	return 0;
}

/* Marks every job of @jobs[from, to) that had succeeded as not committed, because of @cause. */
static void fail_committed(struct db_job **jobs, size_t from, size_t to,
			   const struct sealvm_err *cause)
{
	for (size_t i = from; i < to; i++) {
		if (jobs[i]->result < 0)
			continue; /* its own error says more, and it took no effect either way */
		/* A full disk stays what it is (503: retry later); else an I/O error. */
		int code = cause->code == -ENOSPC || cause->code == -EDQUOT ? cause->code : -EIO;
		sealvm_err_clear(&jobs[i]->err);
		jobs[i]->result = sealvm_err_set(&jobs[i]->err, code, "DB_COMMIT_FAILED",
						 "the write was not committed: %s", cause->message);
	}
}

/* Fails each of @jobs[0, n) with @cause, whatever it did. */
static void fail_jobs(struct db_job **jobs, size_t n, const struct sealvm_err *cause)
{
	for (size_t i = 0; i < n; i++) {
		jobs[i]->err = *cause;
		jobs[i]->result = cause->code;
	}
}

/*
 * A job may leave a statement stepping (it forgot a reset or a finalize); a
 * running write statement would make RELEASE and COMMIT fail. Reset them.
 */
static void reset_stray_statements(struct sealvm_db *db)
{
	for (sqlite3_stmt *st = sqlite3_next_stmt(db->wconn, NULL); st;
	     st = sqlite3_next_stmt(db->wconn, st))
		if (sqlite3_stmt_busy(st)) {
			log_debug("database %s: a write job left a statement running; reset it",
				  db->path);
			sqlite3_reset(st);
		}
}

/*
 * Runs one job inside the current transaction. Returns false when the
 * transaction is gone (SQLite rolled it back on an I/O error, or the job's
 * savepoint could not be undone and we rolled back): the caller then fails
 * the jobs before this one, and @cause says why.
 */
static bool run_job(struct sealvm_db *db, struct db_job *job, struct sealvm_err *cause)
{
	sqlite3 *c = db->wconn;
	int r, rc, deferred = 0, hw = 0;

	rc = step_once(db->st_savepoint);
	if (rc != SQLITE_OK) {
		job->result = db_errorf(c, rc, &job->err, "cannot start a savepoint for the write");
		*cause = job->err;
		return !sqlite3_get_autocommit(c);
	}

	db->guard = true;
	r = job->fn(c, job->userdata, &job->err);
	db->guard = false;
	reset_stray_statements(db);

	/* A deferred foreign key would only fail at COMMIT, and take the whole batch with it. */
	if (r >= 0 &&
	    sqlite3_db_status(c, SQLITE_DBSTATUS_DEFERRED_FKS, &deferred, &hw, 0) == SQLITE_OK &&
	    deferred > 0)
		r = sealvm_err_set(&job->err, -EEXIST, "DB_CONSTRAINT",
				   "the write leaves a FOREIGN KEY constraint unresolved");
	if (r < 0 && job->err.code == 0)
		sealvm_err_set_errno(&job->err, r, NULL, "the write job failed");
	job->result = r;

	if (sqlite3_get_autocommit(c)) {
		/* SQLite rolled the transaction back (I/O error, out of memory, full disk). */
		sealvm_err_set(cause, -EIO, "DB_COMMIT_FAILED",
			       "the transaction was rolled back by a failing write (%s)",
			       sqlite3_errstr(sqlite3_extended_errcode(c)));
		if (job->result >= 0) {
			sealvm_err_clear(&job->err);
			job->result =
				sealvm_err_set(&job->err, -EIO, "DB_COMMIT_FAILED",
					       "the write was not committed: %s", cause->message);
		}
		return false;
	}

	if (r >= 0) {
		rc = step_once(db->st_release);
		if (rc == SQLITE_OK)
			return true;
		sealvm_err_clear(&job->err);
		job->result = db_errorf(c, rc, &job->err, "cannot release the write's savepoint");
	}
	rc = step_once(db->st_rollback_to);
	if (rc == SQLITE_OK)
		rc = step_once(db->st_release);
	if (rc == SQLITE_OK)
		return true;
	db_errorf(c, rc, cause, "cannot undo a failed write");
	if (!sqlite3_get_autocommit(c))
		step_once(db->st_rollback);
	return false;
}

/* Runs @n jobs in as few transactions as possible (one, unless one was lost); returns commits. */
static unsigned run_batch(struct sealvm_db *db, struct db_job **jobs, size_t n)
{
	sqlite3 *c = db->wconn;
	unsigned commits = 0;
	size_t start = 0;
	bool in_txn = false;
	int rc;

	for (size_t i = 0; i < n; i++) {
		struct sealvm_err cause = SEALVM_ERR_INIT;

		if (!in_txn) {
			rc = step_once(db->st_begin);
			if (rc != SQLITE_OK) {
				db_errorf(c, rc, &cause, "cannot begin a write transaction on %s",
					  db->path);
				log_error("%s", cause.message);
				/* Retrying per job would wait busy_timeout each: fail the rest. */
				fail_jobs(jobs + i, n - i, &cause);
				return commits;
			}
			in_txn = true;
			start = i;
		}
		if (!run_job(db, jobs[i], &cause)) {
			log_error("database %s: %s", db->path, cause.message);
			fail_committed(jobs, start, i, &cause);
			in_txn = false;
		}
	}
	if (!in_txn)
		return commits;

	rc = step_once(db->st_commit);
	if (rc == SQLITE_OK)
		return commits + 1;

	struct sealvm_err cause = SEALVM_ERR_INIT;
	db_errorf(c, rc, &cause, "COMMIT of %zu writes failed", n - start);
	log_error("database %s: %s", db->path, cause.message);
	if (!sqlite3_get_autocommit(c))
		step_once(db->st_rollback);
	fail_committed(jobs, start, n, &cause);
	return commits;
}

/*
 * A batch of DB_JOB_LOG jobs only: the write lock (an empty transaction), the
 * log's begin, each job with conn NULL, the log's commit, the end of the
 * empty transaction. Returns the commits (1, or 0 when the append failed), or
 * -1 when the batch is not one for the log (it runs as rows).
 */
static int run_log_batch(struct sealvm_db *db, struct db_job **jobs, size_t n)
{
	const struct db_log_ops *ops = &db->log_ops;
	struct sealvm_err cause = SEALVM_ERR_INIT;
	int rc, r;

	if (!ops->commit)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!(jobs[i]->flags & DB_JOB_LOG))
			return -1;

	rc = step_once(db->st_begin);
	if (rc != SQLITE_OK) {
		db_errorf(db->wconn, rc, &cause, "cannot begin a write transaction on %s",
			  db->path);
		log_error("%s", cause.message);
		fail_jobs(jobs, n, &cause);
		return 0;
	}
	r = ops->begin(ops->ctx, db->wconn, &cause);
	if (r < 0) {
		fail_jobs(jobs, n, &cause);
		ops->abort(ops->ctx);
		step_once(db->st_rollback);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		r = jobs[i]->fn(NULL, jobs[i]->userdata, &jobs[i]->err);
		if (r < 0 && jobs[i]->err.code == 0)
			sealvm_err_set_errno(&jobs[i]->err, r, NULL, "the write job failed");
		jobs[i]->result = r;
	}
	r = ops->commit(ops->ctx, &cause);
	if (r < 0) {
		log_error("database %s: the log append of %zu jobs failed: %s", db->path, n,
			  cause.message);
		fail_committed(jobs, 0, n, &cause);
	}
	/* Nothing was written in the transaction: this only lets go of the lock. */
	rc = step_once(db->st_commit);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(db->wconn))
		step_once(db->st_rollback);
	return r < 0 ? 0 : 1;
}

/*
 * A passive checkpoint runs each time this many new frames are in the WAL
 * (SQLite's own auto-checkpoint interval). Under a steady stream of commits
 * the writer never finds the WAL fully copied when it begins, so the WAL
 * would only grow: past CHECKPOINT_RESTART_PAGES (16 MiB) the writer itself,
 * between two batches, runs one more passive checkpoint — by then the
 * checkpointer has copied nearly everything, so it copies little — and its
 * next transaction starts the WAL over. (A RESTART checkpoint from the other
 * thread would do the same by locking the writer out, and SQLite's busy
 * handler then sleeps in steps of up to 100 ms: it was the p99.)
 */
#define CHECKPOINT_PAGES 1000
#define CHECKPOINT_RESTART_PAGES 4096

static int on_wal_commit(void *arg, sqlite3 *conn, const char *schema, int pages)
{
	struct sealvm_db *db = arg;
	pthread_mutex_lock(&db->clock);
	if (pages < db->wal_copied)
		db->wal_copied = 0; /* the WAL started over */
	db->wal_pages = pages;
	if (pages - db->wal_copied >= CHECKPOINT_PAGES)
		pthread_cond_signal(&db->cwake);
	pthread_mutex_unlock(&db->clock);
	return SQLITE_OK;
}

static void *checkpointer_main(void *arg)
{
	struct sealvm_db *db = arg;
	pthread_mutex_lock(&db->clock);
	while (!db->cstop) {
		if (db->wal_pages - db->wal_copied < CHECKPOINT_PAGES) {
			pthread_cond_wait(&db->cwake, &db->clock);
			continue;
		}
		pthread_mutex_unlock(&db->clock);
		/* PASSIVE copies what it can without waiting for the writer. */
		int nlog = -1, nck = -1;
		int rc = sqlite3_wal_checkpoint_v2(db->cconn, NULL, SQLITE_CHECKPOINT_PASSIVE,
						   &nlog, &nck);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			log_warning("database %s: checkpoint failed: %s", db->path,
				    sqlite3_errmsg(db->cconn));
		pthread_mutex_lock(&db->clock);
		db->checkpoints++;
		if (rc == SQLITE_OK)
			db->wal_copied = MAX(db->wal_copied, nck);
	}
	pthread_mutex_unlock(&db->clock);
	return NULL;
}

/* Between two batches: when the WAL is long, copy its rest so that it starts over. */
static void writer_catch_up(struct sealvm_db *db)
{
	pthread_mutex_lock(&db->clock);
	bool due = db->wal_pages >= CHECKPOINT_RESTART_PAGES;
	pthread_mutex_unlock(&db->clock);
	if (!due || !sqlite3_get_autocommit(db->wconn))
		return;
	int nlog = 0, nck = 0;
	int rc = sqlite3_wal_checkpoint_v2(db->wconn, NULL, SQLITE_CHECKPOINT_PASSIVE, &nlog, &nck);
	pthread_mutex_lock(&db->clock);
	if (rc == SQLITE_OK) {
		db->checkpoints++;
		db->wal_copied = MAX(db->wal_copied, nck);
	}
	pthread_mutex_unlock(&db->clock);
}

/* A caller's job is done with: the last one out while closing lets db_close go on. */
static void caller_left(struct sealvm_db *db)
{
	if (__atomic_sub_fetch(&db->callers, 1, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&db->stopping, __ATOMIC_SEQ_CST)) {
		pthread_mutex_lock(&db->lock);
		pthread_cond_signal(&db->drained);
		pthread_mutex_unlock(&db->lock);
	}
}

/* Queues @job for the writer; the number of jobs then waiting, or 0 when closing (@err set). */
static size_t enqueue(struct sealvm_db *db, struct db_job *job, struct sealvm_err *err)
{
	size_t waiting;
	pthread_mutex_lock(&db->lock);
	if (db->stopping) {
		/* Format while the handle is certainly alive. */
		sealvm_err_set(err, -ESHUTDOWN, "DB_CLOSED",
			       "the database %s is closing: the write was not run", db->path);
		pthread_mutex_unlock(&db->lock);
		return 0;
	}
	__atomic_add_fetch(&db->callers, 1, __ATOMIC_SEQ_CST);
	if (db->tail)
		db->tail->next = job;
	else
		db->head = job;
	db->tail = job;
	waiting = ++db->queued;
	if (db->writer_idle)
		pthread_cond_signal(&db->work);
	pthread_mutex_unlock(&db->lock);
	if (db->on_queued)
		db->on_queued(db->on_queued_arg, waiting);
	return waiting;
}

static void *writer_main(void *arg)
{
	struct sealvm_db *db = arg;

	pthread_mutex_lock(&db->lock);
	for (;;) {
		size_t n = 0;
		unsigned commits;

		while (!db->head && !db->stopping) {
			db->writer_idle = true;
			pthread_cond_wait(&db->work, &db->lock);
			db->writer_idle = false;
		}
		if (!db->head)
			break; /* stopping, and the queue is drained */
		while (db->head && n < db->max_batch) {
			db->batch[n++] = db->head;
			db->head = db->head->next;
		}
		if (!db->head)
			db->tail = NULL;
		db->queued -= n;
		pthread_mutex_unlock(&db->lock);

		int logged = run_log_batch(db, db->batch, n);
		commits = logged >= 0 ? (unsigned)logged : run_batch(db, db->batch, n);
		writer_catch_up(db);
		/*
		 * After the batch is committed (or not): a cache entry stamped
		 * with the generation read before its rows cannot outlive them.
		 */
		for (size_t i = 0; i < n; i++)
			if (!(db->batch[i]->flags & DB_JOB_APPEND_ONLY)) {
				__atomic_add_fetch(&db->state_gen, 1, __ATOMIC_RELEASE);
				break;
			}

		pthread_mutex_lock(&db->lock);
		db->commits += commits;
		db->jobs += n;
		pthread_mutex_unlock(&db->lock);
		for (size_t i = 0; i < n; i++) {
			/*
			 * After the store the waiter may return and its job leave the
			 * stack: only the word's address is used after it. A wake that
			 * lands on reused stack is spurious, and every futex waiter loops.
			 * The counters are current before anyone wakes.
			 */
			struct db_job *job = db->batch[i];
			if (job->done_fn) {
				job->done_fn(job->done_arg, job->result, &job->err);
				free(job);
				caller_left(db);
				continue;
			}
			uint32_t *word = &job->done;
			__atomic_store_n(word, 1, __ATOMIC_RELEASE);
			futex_wake(word);
		}
		pthread_mutex_lock(&db->lock);
	}
	pthread_mutex_unlock(&db->lock);
	return NULL;
}

void db_set_log(struct sealvm_db *db, const struct db_log_ops *ops)
{
	if (ops)
		db->log_ops = *ops;
	else
		memset(&db->log_ops, 0, sizeof(db->log_ops));
}

uint64_t db_state_generation(struct sealvm_db *db)
{
	return __atomic_load_n(&db->state_gen, __ATOMIC_ACQUIRE);
}

int db_write(struct sealvm_db *db, db_job_fn fn, void *userdata, struct sealvm_err *err)
{
	return db_write_flags(db, fn, userdata, 0, err);
}

int db_write_flags(struct sealvm_db *db, db_job_fn fn, void *userdata, unsigned flags,
		   struct sealvm_err *err)
{
	struct db_job job = {
		.fn = fn,
		.userdata = userdata,
		.flags = flags,
	};

	if (!db || !fn)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT", "db_write without a job");
	if (pthread_equal(pthread_self(), db->writer))
		return sealvm_err_set(
			err, -EDEADLK, "DB_WRITE_IN_JOB",
			"db_write called from inside a write job: it would wait for itself");
	if (enqueue(db, &job, err) == 0)
		return err && err->code ? err->code : -ESHUTDOWN;

	while (!__atomic_load_n(&job.done, __ATOMIC_ACQUIRE))
		futex_wait(&job.done, 0);
	caller_left(db);

	if (job.result < 0 && err && err->code == 0)
		*err = job.err;
	return job.result;
}

int db_write_async(struct sealvm_db *db, db_job_fn fn, void *userdata, unsigned flags,
		   db_done_fn done, void *done_arg, struct sealvm_err *err)
{
	if (!db || !fn || !done)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "db_write_async without a job or a completion");
	struct db_job *job = calloc(1, sizeof(*job));
	if (!job)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory for a write job");
	*job = (struct db_job){
		.fn = fn,
		.userdata = userdata,
		.flags = flags,
		.done_fn = done,
		.done_arg = done_arg,
	};
	if (enqueue(db, job, err) == 0) {
		free(job);
		return err && err->code ? err->code : -ESHUTDOWN;
	}
	return 0;
}

/* --- readers ----------------------------------------------------------------- */

/* Claims an idle reader, trying slot @hint first; -1 when every one is lent. */
static int reader_claim(struct sealvm_db *db, unsigned hint)
{
	for (unsigned i = 0; i < db->n_readers; i++) {
		unsigned k = (hint + i) % db->n_readers;
		if (!__atomic_load_n(&db->lent[k], __ATOMIC_RELAXED) &&
		    !__atomic_exchange_n(&db->lent[k], 1, __ATOMIC_SEQ_CST))
			return (int)k;
	}
	return -1;
}

static _Thread_local unsigned reader_hint;

sqlite3 *db_read_begin(struct sealvm_db *db)
{
	int k;

	if (!db)
		return NULL;
	k = reader_claim(db, reader_hint);
	if (k < 0) {
		pthread_mutex_lock(&db->rlock);
		__atomic_add_fetch(&db->waiters, 1, __ATOMIC_SEQ_CST);
		/* A reader returned after our count was visible signals under rlock: not lost. */
		while ((k = reader_claim(db, reader_hint)) < 0)
			pthread_cond_wait(&db->rfree, &db->rlock);
		__atomic_sub_fetch(&db->waiters, 1, __ATOMIC_SEQ_CST);
		pthread_mutex_unlock(&db->rlock);
	}
	reader_hint = (unsigned)k;
	return db->readers[k];
}

void db_read_end(struct sealvm_db *db, sqlite3 *conn)
{
	unsigned k;

	if (!db || !conn)
		return;
	/*
	 * A statement left stepping or a transaction left open would pin its
	 * snapshot: the WAL could then never be checkpointed past it.
	 */
	for (sqlite3_stmt *st = sqlite3_next_stmt(conn, NULL); st; st = sqlite3_next_stmt(conn, st))
		if (sqlite3_stmt_busy(st))
			sqlite3_reset(st);
	if (!sqlite3_get_autocommit(conn))
		exec_sql(conn, "ROLLBACK");

	k = reader_hint < db->n_readers && db->readers[reader_hint] == conn ? reader_hint : 0;
	while (k < db->n_readers && db->readers[k] != conn)
		k++;
	assert(k < db->n_readers && __atomic_load_n(&db->lent[k], __ATOMIC_RELAXED));
	__atomic_store_n(&db->lent[k], 0, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&db->waiters, __ATOMIC_SEQ_CST) > 0) {
		pthread_mutex_lock(&db->rlock);
		pthread_cond_signal(&db->rfree);
		pthread_mutex_unlock(&db->rlock);
	}
}

/* --- open, close, stats ------------------------------------------------------ */

static int readers_open(struct sealvm_db *db, unsigned n, unsigned busy_timeout_ms,
			struct sealvm_err *err)
{
	db->readers = calloc(n, sizeof(*db->readers));
	db->lent = calloc(n, sizeof(*db->lent));
	if (!db->readers || !db->lent)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "cannot allocate the read pool");
	for (unsigned i = 0; i < n; i++) {
		int r = conn_open(db->path, SQLITE_OPEN_READONLY, busy_timeout_ms, &db->readers[i],
				  err);
		if (r < 0)
			return r;
		db->n_readers++;
	}
	return 0;
}

/*
 * SQLite counts every allocation under one process-wide mutex unless told not
 * to; with many threads each running cheap statements that mutex is the
 * hottest lock of the process. We read no memory statistics. Only possible
 * before the library initializes (the first connection); later it is a no-op.
 */
static void sqlite_configure(void)
{
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int db_open(const char *path, const struct db_migration *migrations, size_t n_migrations,
	    const struct db_options *opts, struct sealvm_db **ret, struct sealvm_err *err)
{
	static pthread_once_t configured = PTHREAD_ONCE_INIT;
	const struct db_options none = {0};
	struct sealvm_db *db = NULL;
	unsigned readers, busy_timeout_ms;
	sigset_t all, old;
	int r;

	if (!path || !ret || (n_migrations > 0 && !migrations))
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT", "db_open without a path");
	if (!opts)
		opts = &none;
	readers = opts->readers ? opts->readers : DB_DEFAULT_READERS;
	busy_timeout_ms =
		opts->busy_timeout_ms ? opts->busy_timeout_ms : DB_DEFAULT_BUSY_TIMEOUT_MS;
	if (readers > DB_MAX_READERS || opts->max_batch > DB_MAX_BATCH)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "%s: at most %u readers and batches of %u writes", path,
				      DB_MAX_READERS, DB_MAX_BATCH);
	r = migrations_check(migrations, n_migrations, err);
	if (r < 0)
		return r;
	/* Connections are confined to one thread at a time, but the library must be thread-safe. */
	if (!sqlite3_threadsafe())
		return sealvm_err_set(err, -ENOTSUP, "NOT_SUPPORTED",
				      "the SQLite library was built without thread support");

	pthread_once(&configured, sqlite_configure);
	db = calloc(1, sizeof(*db));
	if (!db)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "cannot open %s", path);
	pthread_mutex_init(&db->lock, NULL);
	pthread_mutex_init(&db->clock, NULL);
	pthread_cond_init(&db->cwake, NULL);
	pthread_cond_init(&db->work, NULL);
	pthread_cond_init(&db->drained, NULL);
	pthread_mutex_init(&db->rlock, NULL);
	pthread_cond_init(&db->rfree, NULL);
	db->max_batch = opts->max_batch ? opts->max_batch : DB_DEFAULT_MAX_BATCH;
	db->on_queued = opts->on_queued;
	db->on_queued_arg = opts->on_queued_arg;
	db->path = strdup(path);
	db->batch = calloc(db->max_batch, sizeof(*db->batch));
	if (!db->path || !db->batch) {
		r = sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "cannot open %s", path);
		goto fail;
	}

	r = create_file(path, err);
	if (r < 0)
		goto fail;
	r = conn_open(path, SQLITE_OPEN_READWRITE, busy_timeout_ms, &db->wconn, err);
	if (r < 0)
		goto fail;
	/* SQLite quietly falls back to read-only on a file it may not write: say so now. */
	if (sqlite3_db_readonly(db->wconn, "main") == 1) {
		r = sealvm_err_set(err, -EROFS, "READ_ONLY",
				   "the database %s is not writable by this user", path);
		goto fail;
	}
	sqlite3_set_authorizer(db->wconn, writer_authorizer, db);
	r = pragma_expect(db->wconn, path, "PRAGMA journal_mode=WAL", "wal", err);
	if (r >= 0)
		r = pragma_expect(db->wconn, path, "PRAGMA synchronous=FULL", NULL, err);
	if (r >= 0)
		r = pragma_expect(db->wconn, path, "PRAGMA foreign_keys=ON", NULL, err);
	if (r < 0)
		goto fail;
	r = migrate(db, migrations, n_migrations, err);
	if (r < 0)
		goto fail;
	r = writer_prepare(db, err);
	if (r < 0)
		goto fail;
	/* After migrations: the readers' first look at the schema is the final one. */
	r = readers_open(db, readers, busy_timeout_ms, err);
	if (r < 0)
		goto fail;
	r = conn_open(path, SQLITE_OPEN_READWRITE, busy_timeout_ms, &db->cconn, err);
	/* Reading the mode makes the connection open the WAL: a checkpoint before that is a no-op.
	 */
	if (r >= 0)
		r = pragma_expect(db->cconn, path, "PRAGMA journal_mode", "wal", err);
	if (r < 0)
		goto fail;
	sqlite3_wal_hook(db->wconn, on_wal_commit, db); /* replaces the auto-checkpoint */

	/* The writer takes no signals: they belong to the threads that handle them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&db->checkpointer, NULL, checkpointer_main, db);
	if (r == 0) {
		db->checkpointer_started = true;
		r = -pthread_create(&db->writer, NULL, writer_main, db);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		r = sealvm_err_set_errno(err, r, "IO_ERROR", "cannot start the writer of %s", path);
		goto fail;
	}
	db->writer_started = true;
	*ret = db;
	return 0;
fail:
	db_close(db);
	return r;
}

void db_close(struct sealvm_db *db)
{
	if (!db)
		return;
	if (db->writer_started) {
		pthread_mutex_lock(&db->lock);
		__atomic_store_n(&db->stopping, true, __ATOMIC_SEQ_CST);
		pthread_cond_signal(&db->work);
		pthread_mutex_unlock(&db->lock);
		pthread_join(db->writer, NULL);
		/* Every job is done, but its caller may still be on its way out of db_write. */
		pthread_mutex_lock(&db->lock);
		while (__atomic_load_n(&db->callers, __ATOMIC_SEQ_CST) > 0)
			pthread_cond_wait(&db->drained, &db->lock);
		pthread_mutex_unlock(&db->lock);
	}

	if (db->checkpointer_started) {
		pthread_mutex_lock(&db->clock);
		db->cstop = true;
		pthread_cond_signal(&db->cwake);
		pthread_mutex_unlock(&db->clock);
		pthread_join(db->checkpointer, NULL);
	}
	conn_close(db->cconn);

	/* Every reader must be back; closing one that is lent would pull it from under a caller. */
	for (unsigned i = 0; i < db->n_readers; i++) {
		assert(!db->lent[i]);
		conn_close(db->readers[i]);
	}
	sqlite3_finalize(db->st_begin);
	sqlite3_finalize(db->st_commit);
	sqlite3_finalize(db->st_rollback);
	sqlite3_finalize(db->st_savepoint);
	sqlite3_finalize(db->st_release);
	sqlite3_finalize(db->st_rollback_to);
	/* Last, so that this connection checkpoints the WAL and removes it. */
	conn_close(db->wconn);

	pthread_cond_destroy(&db->cwake);
	pthread_mutex_destroy(&db->clock);
	pthread_cond_destroy(&db->rfree);
	pthread_mutex_destroy(&db->rlock);
	pthread_cond_destroy(&db->drained);
	pthread_cond_destroy(&db->work);
	pthread_mutex_destroy(&db->lock);
	free(db->readers);
	free(db->lent);
	free(db->batch);
	free(db->path);
	free(db);
}

uint64_t db_checkpoints(struct sealvm_db *db)
{
	uint64_t n = 0;
	if (db) {
		pthread_mutex_lock(&db->clock);
		n = db->checkpoints;
		pthread_mutex_unlock(&db->clock);
	}
	return n;
}

void db_stats(struct sealvm_db *db, uint64_t *ret_commits, uint64_t *ret_jobs)
{
	uint64_t commits = 0, jobs = 0;

	if (db) {
		pthread_mutex_lock(&db->lock);
		commits = db->commits;
		jobs = db->jobs;
		pthread_mutex_unlock(&db->lock);
	}
	if (ret_commits)
		*ret_commits = commits;
	if (ret_jobs)
		*ret_jobs = jobs;
}
