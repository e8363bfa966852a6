// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/core/db.c: migrations, the writer thread and group commit,
 * savepoint isolation, the read pool, error translation, a failing COMMIT
 * (through a VFS whose WAL fsync can be made to fail) and a SIGKILL'ed writer.
 *
 * Batches are formed deterministically, never by timing: a "gate" job holds
 * the writer while other threads queue behind it, and the on_queued hook
 * tells the test when they are all queued; then the gate opens and the writer
 * takes them all into one transaction.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sealvm/db.h"
#include "sealvm/rowcache.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/sealvm-test-db-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *p(const char *name)
{
	static char buf[4][128];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

/* --- a VFS whose WAL fsync fails on demand: a real COMMIT failure ------------ */

static atomic_int fail_wal_sync;
static sqlite3_vfs faulty_vfs;
static sqlite3_vfs *real_vfs;
static sqlite3_io_methods faulty_wal_methods;
static const sqlite3_io_methods *real_wal_methods;
static pthread_mutex_t faulty_lock = PTHREAD_MUTEX_INITIALIZER;

/* fail_wal_sync: 0 syncs, 1 fails as an I/O error, 2 as a full disk. */
static int faulty_sync(sqlite3_file *f, int flags)
{
	int how = atomic_load(&fail_wal_sync);
	if (how)
		return how == 2 ? SQLITE_FULL : SQLITE_IOERR_FSYNC;
	return real_wal_methods->xSync(f, flags);
}

/* The real VFS fills the file; only the WAL's method table is swapped for a copy. */
static int faulty_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	int rc = real_vfs->xOpen(real_vfs, name, f, flags, out);
	if (rc != SQLITE_OK || !f->pMethods || !(flags & SQLITE_OPEN_WAL))
		return rc;
	pthread_mutex_lock(&faulty_lock);
	if (!real_wal_methods) {
		real_wal_methods = f->pMethods;
		faulty_wal_methods = *f->pMethods;
		faulty_wal_methods.xSync = faulty_sync;
	}
	pthread_mutex_unlock(&faulty_lock);
	if (f->pMethods == real_wal_methods)
		f->pMethods = &faulty_wal_methods;
	return rc;
}

static void faulty_vfs_install(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	assert_non_null(real_vfs);
	faulty_vfs = *real_vfs;
	faulty_vfs.zName = "sealvm-test-faulty";
	faulty_vfs.xOpen = faulty_open;
	faulty_vfs.pNext = NULL;
	assert_int_equal(sqlite3_vfs_register(&faulty_vfs, 1), SQLITE_OK);
}

/* --- the on_queued hook and the gate job ------------------------------------- */

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static size_t q_count;

static void on_queued(void *arg, size_t waiting)
{
	pthread_mutex_lock(&q_lock);
	q_count++;
	pthread_cond_broadcast(&q_cond);
	pthread_mutex_unlock(&q_lock);
}

static void wait_queued(size_t n)
{
	pthread_mutex_lock(&q_lock);
	while (q_count < n)
		pthread_cond_wait(&q_cond, &q_lock);
	pthread_mutex_unlock(&q_lock);
}

static size_t queued_now(void)
{
	pthread_mutex_lock(&q_lock);
	size_t n = q_count;
	pthread_mutex_unlock(&q_lock);
	return n;
}

struct gate {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool entered, open;
	int job; /* > 0: insert a row of this job before blocking */
};

#define GATE_INIT                                                                                  \
	{                                                                                          \
		PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0               \
	}

static int insert_row(sqlite3 *c, int job, int k, struct sealvm_err *err)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(c, "INSERT INTO t(job, k) VALUES (?1, ?2)", -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 1, job);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(st, 2, k);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	return rc == SQLITE_DONE ? 0 : db_error(c, rc, "insert into t", err);
}

static int job_gate(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	struct gate *g = ud;
	int r = g->job > 0 ? insert_row(c, g->job, 0, err) : 0;

	pthread_mutex_lock(&g->m);
	g->entered = true;
	pthread_cond_broadcast(&g->c);
	while (!g->open)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
	return r;
}

static void gate_wait_entered(struct gate *g)
{
	pthread_mutex_lock(&g->m);
	while (!g->entered)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->m);
	g->open = true;
	pthread_cond_broadcast(&g->c);
	pthread_mutex_unlock(&g->m);
}

/* --- jobs and a thread that runs one ----------------------------------------- */

struct rows_job {
	int job; /* rows (job, 0..nrows-1) */
	int nrows;
	int fail; /* negative: insert, then fail with this */
	int ret;  /* returned on success */
};

static int job_rows(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	const struct rows_job *j = ud;
	for (int k = 0; k < j->nrows; k++) {
		int r = insert_row(c, j->job, k, err);
		if (r < 0)
			return r;
	}
	if (j->fail < 0)
		return sealvm_err_set(err, j->fail, "TEST_FAIL", "job %d failed on purpose",
				      j->job);
	return j->ret;
}

struct writer_thread {
	pthread_t tid;
	struct sealvm_db *db;
	db_job_fn fn;
	void *ud;
	int result;
	struct sealvm_err err;
};

static void *writer_thread_main(void *arg)
{
	struct writer_thread *w = arg;
	w->result = db_write(w->db, w->fn, w->ud, &w->err);
	return NULL;
}

static void writer_start(struct writer_thread *w, struct sealvm_db *db, db_job_fn fn, void *ud)
{
	*w = (struct writer_thread){.db = db, .fn = fn, .ud = ud};
	assert_int_equal(pthread_create(&w->tid, NULL, writer_thread_main, w), 0);
}

static void writer_join(struct writer_thread *w)
{
	assert_int_equal(pthread_join(w->tid, NULL), 0);
}

/* Starts a gate job on its own thread and returns once the writer is inside it. */
static void gate_start(struct writer_thread *w, struct gate *g, struct sealvm_db *db)
{
	size_t before = queued_now();
	writer_start(w, db, job_gate, g);
	gate_wait_entered(g);
	wait_queued(before + 1); /* the gate's own hook call */
}

/* --- schema and helpers ------------------------------------------------------ */

static const struct db_migration test_migrations[] = {
	{"test", 1,
	 "CREATE TABLE t(job INTEGER NOT NULL, k INTEGER NOT NULL, PRIMARY KEY (job, k));"
	 "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
	 "CREATE TABLE child(id INTEGER PRIMARY KEY, parent INTEGER NOT NULL "
	 "  REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"},
};

static struct sealvm_db *open_test_db(const char *name, unsigned readers, unsigned max_batch)
{
	struct sealvm_db *db = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct db_options o = {
		.readers = readers,
		.max_batch = max_batch,
		.on_queued = on_queued,
	};
	int r = db_open(p(name), test_migrations, ELEMENTSOF(test_migrations), &o, &db, &err);
	if (r < 0)
		print_error("db_open: %s (%s)\n", err.message, err.reason);
	assert_int_equal(r, 0);
	return db;
}

static int64_t query_int(sqlite3 *c, const char *sql)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(c, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	return sqlite3_column_int64(st, 0);
}

static int64_t read_int(struct sealvm_db *db, const char *sql)
{
	sqlite3 *c = db_read_begin(db);
	assert_non_null(c);
	int64_t v = query_int(c, sql);
	db_read_end(db, c);
	return v;
}

static int64_t rows_of(struct sealvm_db *db, int job)
{
	char sql[96];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE job = %d", job);
	return read_int(db, sql);
}

/* A plain connection on the file, outside db.c, to inspect or tamper with it. */
static sqlite3 *raw_open(const char *path)
{
	sqlite3 *c = NULL;
	assert_int_equal(sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	return c;
}

static int64_t raw_version(const char *path, const char *owner)
{
	char sql[128];
	sqlite3 *c = raw_open(path);
	snprintf(sql, sizeof(sql),
		 "SELECT coalesce((SELECT version FROM schema_versions WHERE owner = '%s'), 0)",
		 owner);
	int64_t v = query_int(c, sql);
	sqlite3_close(c);
	return v;
}

/* --- migrations -------------------------------------------------------------- */

static const struct db_migration m_a1 = {
	"a", 1, "CREATE TABLE a_log(v INTEGER); INSERT INTO a_log VALUES (1)"};
static const struct db_migration m_a2 = {"a", 2, "INSERT INTO a_log VALUES (2)"};
static const struct db_migration m_a3 = {"a", 3, "INSERT INTO a_log VALUES (3)"};
static const struct db_migration m_b1 = {
	"b", 1, "CREATE TABLE b_log(v INTEGER); INSERT INTO b_log VALUES (1)"};
static const struct db_migration m_b2 = {"b", 2, "INSERT INTO b_log VALUES (2)"};

static int open_with(const char *name, const struct db_migration *m, size_t n,
		     struct sealvm_err *err)
{
	struct sealvm_db *db = NULL;
	int r = db_open(p(name), m, n, NULL, &db, err);
	if (r == 0)
		db_close(db);
	else
		assert_null(db);
	return r;
}

static void test_migrations_apply(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct stat st;

	umask(022);
	const struct db_migration v1[] = {m_a1};
	assert_int_equal(open_with("m.db", v1, 1, &err), 0);
	assert_int_equal(stat(p("m.db"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(raw_version(p("m.db"), "a"), 1);

	/* Reopening applies nothing again (a_log would get a second row). */
	assert_int_equal(open_with("m.db", v1, 1, &err), 0);
	sqlite3 *c = raw_open(p("m.db"));
	assert_int_equal(query_int(c, "SELECT count(*) FROM a_log"), 1);
	sqlite3_close(c);

	/* A later binary with version 2 applies only version 2. */
	const struct db_migration v2[] = {m_a1, m_a2};
	assert_int_equal(open_with("m.db", v2, 2, &err), 0);
	c = raw_open(p("m.db"));
	assert_int_equal(query_int(c, "SELECT count(*) FROM a_log"), 2);
	assert_int_equal(query_int(c, "SELECT max(v) FROM a_log"), 2);
	assert_int_equal(query_int(c, "SELECT count(*) FROM schema_versions"), 1);
	sqlite3_close(c);
	assert_int_equal(raw_version(p("m.db"), "a"), 2);
	assert_false(sealvm_err_isset(&err));
}

static void test_migrations_bad_lists(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct stat st;

	const struct db_migration out_of_order[] = {m_a2, m_a1};
	assert_int_equal(open_with("x.db", out_of_order, 2, &err), -EINVAL);
	assert_string_equal(err.reason, "MIGRATION_ORDER");
	assert_non_null(strstr(err.message, "\"a\""));
	sealvm_err_clear(&err);

	const struct db_migration gap[] = {m_a1, m_a3};
	assert_int_equal(open_with("x.db", gap, 2, &err), -EINVAL);
	assert_string_equal(err.reason, "MIGRATION_ORDER");
	sealvm_err_clear(&err);

	const struct db_migration dup[] = {m_a1, m_b1, m_a1};
	assert_int_equal(open_with("x.db", dup, 3, &err), -EINVAL);
	sealvm_err_clear(&err);

	const struct db_migration no_sql[] = {{"a", 1, NULL}};
	assert_int_equal(open_with("x.db", no_sql, 1, &err), -EINVAL);
	sealvm_err_clear(&err);

	/* A refused list creates nothing. */
	assert_int_equal(stat(p("x.db"), &st), -1);

	/* Owners may interleave as long as each counts up. */
	const struct db_migration interleaved[] = {m_a1, m_b1, m_a2, m_b2};
	assert_int_equal(open_with("x.db", interleaved, 4, &err), 0);
	assert_int_equal(raw_version(p("x.db"), "a"), 2);
	assert_int_equal(raw_version(p("x.db"), "b"), 2);
}

static void test_migrations_too_new(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;

	const struct db_migration newer[] = {m_a1, m_a2, m_a3};
	assert_int_equal(open_with("n.db", newer, 3, &err), 0);

	/* An older binary knows "a" up to 1, and has a pending "b": nothing is changed. */
	const struct db_migration older[] = {m_a1, m_b1};
	assert_int_equal(open_with("n.db", older, 2, &err), -EPROTO);
	assert_string_equal(err.reason, "SCHEMA_TOO_NEW");
	assert_non_null(strstr(err.message, "\"a\""));
	assert_non_null(strstr(err.message, "version 3"));
	assert_non_null(strstr(err.message, "up to 1"));
	assert_int_equal(raw_version(p("n.db"), "b"), 0);
	sealvm_err_clear(&err);

	/* Someone else's newer version does not bother an owner that is up to date. */
	sqlite3 *c = raw_open(p("n.db"));
	assert_int_equal(
		sqlite3_exec(c, "INSERT INTO schema_versions VALUES ('zz', 99)", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(c);
	assert_int_equal(open_with("n.db", newer, 3, &err), 0);
	assert_int_equal(raw_version(p("n.db"), "zz"), 99);
}

static void test_migrations_owners_independent(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;

	const struct db_migration both[] = {m_a1, m_b1};
	assert_int_equal(open_with("o.db", both, 2, &err), 0);

	/* "a" moves on; "b" is untouched. */
	const struct db_migration a_more[] = {m_a1, m_b1, m_a2};
	assert_int_equal(open_with("o.db", a_more, 3, &err), 0);
	assert_int_equal(raw_version(p("o.db"), "a"), 2);
	assert_int_equal(raw_version(p("o.db"), "b"), 1);

	/* A binary that knows only "b" leaves "a" alone. */
	const struct db_migration only_b[] = {m_b1, m_b2};
	assert_int_equal(open_with("o.db", only_b, 2, &err), 0);
	assert_int_equal(raw_version(p("o.db"), "a"), 2);
	assert_int_equal(raw_version(p("o.db"), "b"), 2);

	sqlite3 *c = raw_open(p("o.db"));
	assert_int_equal(query_int(c, "SELECT count(*) FROM a_log"), 2);
	assert_int_equal(query_int(c, "SELECT count(*) FROM b_log"), 2);
	sqlite3_close(c);
}

static void test_migration_failure_rolls_back(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;

	const struct db_migration bad[] = {
		m_a1,
		{"a", 2, "CREATE TABLE half(x); INSERT INTO no_such_table VALUES (1)"},
	};
	assert_int_equal(open_with("f.db", bad, 2, &err), -EIO);
	assert_string_equal(err.reason, "DB_ERROR");
	assert_non_null(strstr(err.message, "migration 2 of \"a\""));
	assert_non_null(strstr(err.message, "no_such_table"));
	assert_int_equal(raw_version(p("f.db"), "a"), 1);
	sqlite3 *c = raw_open(p("f.db"));
	assert_int_equal(query_int(c, "SELECT count(*) FROM sqlite_schema WHERE name = 'half'"), 0);
	sqlite3_close(c);
	sealvm_err_clear(&err);

	/* A migration cannot commit or roll back the transaction it runs in. */
	const struct db_migration sneaky[] = {m_a1, {"a", 2, "COMMIT; CREATE TABLE y(x)"}};
	assert_int_equal(open_with("f.db", sneaky, 2, &err), -EIO);
	assert_int_equal(raw_version(p("f.db"), "a"), 1);
}

static void test_open_errors(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = NULL;

	/* Not a database. */
	int fd = open(p("junk.db"), O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	char junk[4096];
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(db_open(p("junk.db"), NULL, 0, NULL, &db, &err), -EBADMSG);
	assert_string_equal(err.reason, "DB_CORRUPT");
	assert_non_null(strstr(err.message, "junk.db"));
	assert_null(db);
	sealvm_err_clear(&err);

	/* A symbolic link is refused, not followed. */
	assert_int_equal(symlink(p("junk.db"), p("link.db")), 0);
	assert_int_equal(db_open(p("link.db"), NULL, 0, NULL, &db, &err), -EINVAL);
	assert_string_equal(err.reason, "DB_NOT_A_FILE");
	sealvm_err_clear(&err);

	/* Missing directory. */
	assert_int_equal(db_open(p("nodir/x.db"), NULL, 0, NULL, &db, &err), -ENOENT);
	assert_string_equal(err.reason, "DB_DIR_MISSING");
}

static void test_file_modes(void **state)
{
	struct stat st;

	umask(0);
	struct sealvm_db *db = open_test_db("mode.db", 1, 0);
	umask(022);
	assert_int_equal(stat(p("mode.db"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* SQLite gives the WAL and the shared-memory index the database's mode. */
	assert_int_equal(stat(p("mode.db-wal"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(p("mode.db-shm"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);

	sqlite3 *c = db_read_begin(db);
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(TAKE_PTR(s));
	db_read_end(db, c);
	db_close(db);
}

/* --- writes ------------------------------------------------------------------ */

static void test_write_visible(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("w.db", 2, 0);
	struct rows_job j = {.job = 1, .nrows = 3, .ret = 7};
	uint64_t commits, jobs;

	assert_int_equal(db_write(db, job_rows, &j, &err), 7);
	assert_false(sealvm_err_isset(&err));
	assert_int_equal(rows_of(db, 1), 3);
	db_stats(db, &commits, &jobs);
	assert_int_equal(commits, 1);
	assert_int_equal(jobs, 1);
	db_close(db);
}

static void test_failing_job_in_shared_batch(void **state)
{
	struct sealvm_db *db = open_test_db("b.db", 2, 0);
	struct gate g = GATE_INIT;
	struct writer_thread wg, w[3];
	struct rows_job ok1 = {.job = 10, .nrows = 3};
	struct rows_job bad = {.job = 11, .nrows = 3, .fail = -EEXIST};
	struct rows_job ok2 = {.job = 12, .nrows = 2};
	uint64_t c0, j0, c1, j1;

	gate_start(&wg, &g, db);
	size_t base = queued_now();
	writer_start(&w[0], db, job_rows, &ok1);
	writer_start(&w[1], db, job_rows, &bad);
	writer_start(&w[2], db, job_rows, &ok2);
	wait_queued(base + 3);
	db_stats(db, &c0, &j0);
	gate_open(&g);
	writer_join(&wg);
	for (int i = 0; i < 3; i++)
		writer_join(&w[i]);
	db_stats(db, &c1, &j1);

	assert_int_equal(wg.result, 0);
	assert_int_equal(w[0].result, 0);
	assert_int_equal(w[1].result, -EEXIST);
	assert_string_equal(w[1].err.reason, "TEST_FAIL");
	assert_string_equal(w[1].err.message, "job 11 failed on purpose");
	assert_int_equal(w[2].result, 0);
	assert_false(sealvm_err_isset(&w[0].err));
	assert_false(sealvm_err_isset(&w[2].err));

	/* The gate's batch, then the three jobs together in one. */
	assert_int_equal(j1 - j0, 4);
	assert_int_equal(c1 - c0, 2);
	assert_int_equal(rows_of(db, 10), 3);
	assert_int_equal(rows_of(db, 11), 0);
	assert_int_equal(rows_of(db, 12), 2);
	db_close(db);
}

/* A job that fails on a real constraint, a deferred foreign key, and one misusing the connection.
 */
static int job_dup(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	int r = insert_row(c, 20, 0, err);
	return r < 0 ? r : insert_row(c, 20, 0, err);
}

static int job_orphan(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	int rc = sqlite3_exec(c, "INSERT INTO child(id, parent) VALUES (1, 999)", NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_error(c, rc, "insert child", err);
}

static int job_exec(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	int rc = sqlite3_exec(c, ud, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_error(c, rc, "exec", err);
}

static int job_nested_savepoint(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	int rc = sqlite3_exec(c,
			      "SAVEPOINT mine; INSERT INTO t VALUES (30, 0); ROLLBACK TO mine;"
			      "INSERT INTO t VALUES (30, 1); RELEASE mine",
			      NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_error(c, rc, "nested", err);
}

static int job_reenter(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	struct sealvm_db *db = ud;
	struct rows_job j = {.job = 31, .nrows = 1};
	return db_write(db, job_rows, &j, err);
}

static void test_job_errors(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("e.db", 1, 0);

	assert_int_equal(db_write(db, job_dup, NULL, &err), -EEXIST);
	assert_string_equal(err.reason, "DB_CONSTRAINT");
	assert_non_null(strstr(err.message, "insert into t: UNIQUE constraint failed: t.job, t.k"));
	assert_int_equal(rows_of(db, 20), 0);
	sealvm_err_clear(&err);

	/* A deferred foreign key fails its own job, not the batch's COMMIT. */
	struct gate g = GATE_INIT;
	struct writer_thread wg, w[3];
	struct rows_job a = {.job = 21, .nrows = 2}, b = {.job = 22, .nrows = 2};
	gate_start(&wg, &g, db);
	size_t base = queued_now();
	writer_start(&w[0], db, job_rows, &a);
	writer_start(&w[1], db, job_orphan, NULL);
	writer_start(&w[2], db, job_rows, &b);
	wait_queued(base + 3);
	gate_open(&g);
	writer_join(&wg);
	for (int i = 0; i < 3; i++)
		writer_join(&w[i]);
	assert_int_equal(w[0].result, 0);
	assert_int_equal(w[1].result, -EEXIST);
	assert_string_equal(w[1].err.reason, "DB_CONSTRAINT");
	assert_non_null(strstr(w[1].err.message, "FOREIGN KEY"));
	assert_int_equal(w[2].result, 0);
	assert_int_equal(rows_of(db, 21), 2);
	assert_int_equal(rows_of(db, 22), 2);
	assert_int_equal(read_int(db, "SELECT count(*) FROM child"), 0);

	/* Transaction control belongs to the writer. */
	static const char *const forbidden[] = {
		"COMMIT",
		"ROLLBACK",
		"BEGIN",
		"RELEASE sealvm_job",
		"ROLLBACK TO SEALVM_JOB",
		"ATTACH DATABASE ':memory:' AS other",
	};
	for (size_t i = 0; i < ELEMENTSOF(forbidden); i++) {
		assert_int_equal(db_write(db, job_exec, (void *)forbidden[i], &err), -EIO);
		assert_string_equal(err.reason, "DB_ERROR");
		assert_non_null(strstr(err.message, "not authorized"));
		sealvm_err_clear(&err);
	}

	/* The job's own savepoints are fine. */
	assert_int_equal(db_write(db, job_nested_savepoint, NULL, &err), 0);
	assert_int_equal(read_int(db, "SELECT count(*) FROM t WHERE job = 30 AND k = 1"), 1);
	assert_int_equal(rows_of(db, 30), 1);

	/* Writing from inside a job would wait for itself. */
	assert_int_equal(db_write(db, job_reenter, db, &err), -EDEADLK);
	assert_string_equal(err.reason, "DB_WRITE_IN_JOB");
	assert_int_equal(rows_of(db, 31), 0);
	sealvm_err_clear(&err);

	/* A failing job that forgot its error still reports one. */
	struct rows_job silent = {.job = 32, .nrows = 1, .fail = -ENOENT};
	assert_int_equal(db_write(db, job_rows, &silent, NULL), -ENOENT);
	assert_int_equal(rows_of(db, 32), 0);

	/* The connection still works after all that. */
	struct rows_job last = {.job = 33, .nrows = 1};
	assert_int_equal(db_write(db, job_rows, &last, &err), 0);
	assert_int_equal(rows_of(db, 33), 1);
	db_close(db);
}

/* --- group commit ------------------------------------------------------------ */

#define GC_THREADS 8
#define GC_JOBS 300

struct gc_thread {
	pthread_t tid;
	struct sealvm_db *db;
	int index;
	int wrong; /* results or errors that were not this job's own */
	int failed;
};

static void *gc_main(void *arg)
{
	struct gc_thread *t = arg;

	for (int i = 0; i < GC_JOBS; i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		char want[64];
		int id = t->index * 1000 + i;
		struct rows_job j = {
			.job = id,
			.nrows = 1,
			.fail = i % 7 == 3 ? -(100 + t->index) : 0,
			.ret = id % 1000 + 1,
		};
		int r = db_write(t->db, job_rows, &j, &err);
		if (j.fail) {
			t->failed++;
			snprintf(want, sizeof(want), "job %d failed on purpose", id);
			if (r != j.fail || strcmp(err.message, want) != 0 ||
			    strcmp(err.reason, "TEST_FAIL") != 0)
				t->wrong++;
		} else if (r != j.ret || sealvm_err_isset(&err)) {
			t->wrong++;
		}
	}
	return NULL;
}

static void test_group_commit(void **state)
{
	struct sealvm_db *db = open_test_db("gc.db", 2, 0);
	struct gate g = GATE_INIT;
	struct writer_thread wg;
	struct gc_thread t[GC_THREADS];
	uint64_t commits, jobs;
	int failed = 0;

	/* Hold the writer until every thread's first job is queued: one batch of 8 at least. */
	gate_start(&wg, &g, db);
	size_t base = queued_now();
	for (int i = 0; i < GC_THREADS; i++) {
		t[i] = (struct gc_thread){.db = db, .index = i + 1};
		assert_int_equal(pthread_create(&t[i].tid, NULL, gc_main, &t[i]), 0);
	}
	wait_queued(base + GC_THREADS);
	gate_open(&g);
	writer_join(&wg);
	for (int i = 0; i < GC_THREADS; i++) {
		assert_int_equal(pthread_join(t[i].tid, NULL), 0);
		assert_int_equal(t[i].wrong, 0);
		failed += t[i].failed;
	}

	db_stats(db, &commits, &jobs);
	print_message("group commit: %" PRIu64 " commits for %" PRIu64 " jobs\n", commits, jobs);
	assert_int_equal(jobs, GC_THREADS * GC_JOBS + 1);
	assert_true(commits < jobs);
	assert_true(commits <= jobs - (GC_THREADS - 1));
	assert_int_equal(read_int(db, "SELECT count(*) FROM t"), GC_THREADS * GC_JOBS - failed);
	db_close(db);
}

/* --- a failing COMMIT -------------------------------------------------------- */

static int job_rows_then_break_sync(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	int r = job_rows(c, ud, err);
	atomic_store(&fail_wal_sync, 1); /* this batch's COMMIT will fail its fsync */
	return r;
}

static int job_big(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	int rc = sqlite3_exec(c, "CREATE TABLE IF NOT EXISTS big(b BLOB)", NULL, NULL, NULL);
	for (int i = 0; i < 20 && rc == SQLITE_OK; i++) {
		sqlite3_stmt *st = NULL;
		rc = sqlite3_prepare_v2(c, "INSERT INTO big VALUES (randomblob(262144))", -1, &st,
					NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	return rc == SQLITE_OK ? 0 : db_error(c, rc, "insert a blob", err);
}

/* The WAL is copied into the database by the checkpointer, outside any commit. */
static void test_checkpoints_outside_commits(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("ck.db", 1, 0);
	struct stat before, after;
	assert_int_equal(db_checkpoints(db), 0);
	assert_int_equal(stat(p("ck.db"), &before), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(db_write(db, job_big, NULL, &err), 0);
	for (int i = 0; i < 200 && db_checkpoints(db) == 0; i++)
		usleep(50 * 1000);
	assert_true(db_checkpoints(db) > 0);
	/* what was copied is in the database file itself now */
	assert_int_equal(stat(p("ck.db"), &after), 0);
	assert_true(after.st_size > before.st_size + 4 * 1024 * 1024);
	db_close(db);
}

static void test_commit_failure(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("cf.db", 1, 0);
	struct gate g = GATE_INIT;
	struct writer_thread wg, w[3];
	struct rows_job a = {.job = 40, .nrows = 2}, b = {.job = 41, .nrows = 2};
	struct rows_job bad = {.job = 42, .nrows = 1, .fail = -EINVAL};
	uint64_t c0, j0, c1, j1;

	gate_start(&wg, &g, db);
	size_t base = queued_now();
	writer_start(&w[0], db, job_rows, &a);
	writer_start(&w[1], db, job_rows_then_break_sync, &b);
	writer_start(&w[2], db, job_rows, &bad);
	wait_queued(base + 3);
	db_stats(db, &c0, &j0);
	gate_open(&g);
	writer_join(&wg);
	for (int i = 0; i < 3; i++)
		writer_join(&w[i]);
	atomic_store(&fail_wal_sync, 0);
	db_stats(db, &c1, &j1);

	assert_int_equal(wg.result, 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(w[i].result, -EIO);
		assert_string_equal(w[i].err.reason, "DB_COMMIT_FAILED");
		assert_non_null(strstr(w[i].err.message, "not committed"));
	}
	/* A job that failed by itself keeps its own error. */
	assert_int_equal(w[2].result, -EINVAL);
	assert_string_equal(w[2].err.reason, "TEST_FAIL");
	assert_int_equal(j1 - j0, 4);
	assert_int_equal(c1 - c0, 1); /* the gate's batch only */
	assert_int_equal(rows_of(db, 40), 0);
	assert_int_equal(rows_of(db, 41), 0);

	/* The writer recovers. */
	struct rows_job after = {.job = 43, .nrows = 2};
	assert_int_equal(db_write(db, job_rows, &after, &err), 0);
	assert_int_equal(rows_of(db, 43), 2);
	db_close(db);

	db = open_test_db("cf.db", 1, 0);
	assert_int_equal(rows_of(db, 40), 0);
	assert_int_equal(rows_of(db, 41), 0);
	assert_int_equal(rows_of(db, 43), 2);
	sqlite3 *c = db_read_begin(db);
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(TAKE_PTR(s));
	db_read_end(db, c);
	db_close(db);
}

static int job_rows_then_fill_disk(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	int r = job_rows(c, ud, err);
	atomic_store(&fail_wal_sync, 2); /* this batch's COMMIT finds the disk full */
	return r;
}

/* A COMMIT that fails on a full disk says so (-ENOSPC: the API answers 503, retry later). */
static void test_commit_on_full_disk(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("full.db", 1, 0);
	struct rows_job a = {.job = 50, .nrows = 2}, b = {.job = 51, .nrows = 2};
	int r = db_write(db, job_rows_then_fill_disk, &a, &err);
	atomic_store(&fail_wal_sync, 0);
	assert_int_equal(r, -ENOSPC);
	assert_string_equal(err.reason, "DB_COMMIT_FAILED");
	assert_int_equal(rows_of(db, 50), 0);
	sealvm_err_clear(&err);
	assert_int_equal(db_write(db, job_rows, &b, &err), 0); /* space is back */
	assert_int_equal(rows_of(db, 51), 2);
	db_close(db);
}

/* --- readers ----------------------------------------------------------------- */

static void test_readers_see_committed_only(void **state)
{
	struct sealvm_db *db = open_test_db("r.db", 2, 0);
	struct gate g = GATE_INIT;
	struct writer_thread wg;

	g.job = 50; /* inserts (50, 0), then blocks before its batch commits */
	writer_start(&wg, db, job_gate, &g);
	gate_wait_entered(&g);
	assert_int_equal(rows_of(db, 50), 0);
	gate_open(&g);
	writer_join(&wg);
	assert_int_equal(wg.result, 0);
	assert_int_equal(rows_of(db, 50), 1);

	/* Readers cannot write. */
	struct sealvm_err err = SEALVM_ERR_INIT;
	sqlite3 *c = db_read_begin(db);
	int rc = sqlite3_exec(c, "INSERT INTO t VALUES (51, 0)", NULL, NULL, NULL);
	assert_int_equal(db_error(c, rc, "insert via a reader", &err), -EROFS);
	assert_string_equal(err.reason, "READ_ONLY");
	assert_non_null(
		strstr(err.message, "insert via a reader: attempt to write a readonly database"));

	/* A transaction left open is ended on return, so no snapshot stays pinned. */
	assert_int_equal(sqlite3_exec(c, "BEGIN; SELECT count(*) FROM t", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_false(sqlite3_get_autocommit(c));
	db_read_end(db, c);
	assert_true(sqlite3_get_autocommit(c));
	db_close(db);
}

struct reader_thread {
	pthread_t tid;
	struct sealvm_db *db;
	sqlite3 *got;
	atomic_bool done;
};

static void *reader_main(void *arg)
{
	struct reader_thread *r = arg;
	r->got = db_read_begin(r->db);
	atomic_store(&r->done, true);
	return NULL;
}

static void test_read_pool_blocks(void **state)
{
	struct sealvm_db *db = open_test_db("rp.db", 1, 0);
	struct reader_thread r = {.db = db};

	sqlite3 *c = db_read_begin(db);
	assert_non_null(c);
	assert_int_equal(pthread_create(&r.tid, NULL, reader_main, &r), 0);
	usleep(50 * 1000); /* it cannot have got one: the only one is lent */
	assert_false(atomic_load(&r.done));
	db_read_end(db, c);
	assert_int_equal(pthread_join(r.tid, NULL), 0);
	assert_ptr_equal(r.got, c);
	db_read_end(db, r.got);
	db_close(db);
}

/*
 * Many borrowers, few connections: a connection is never lent to two threads at
 * once, every borrow returns one, and nobody sleeps forever (a lost wake-up
 * would hang the test).
 */
#define RS_THREADS 16
#define RS_BORROWS 3000
struct rs_shared {
	struct sealvm_db *db;
	sqlite3 *conns[2];
	atomic_int holders[2];
	atomic_int wrong;
};

static void *rs_main(void *arg)
{
	struct rs_shared *sh = arg;
	for (int i = 0; i < RS_BORROWS; i++) {
		sqlite3 *c = db_read_begin(sh->db);
		int k = c == sh->conns[0] ? 0 : c == sh->conns[1] ? 1 : -1;
		if (k < 0) {
			atomic_fetch_add(&sh->wrong, 1);
			continue;
		}
		if (atomic_fetch_add(&sh->holders[k], 1) != 0)
			atomic_fetch_add(&sh->wrong, 1);
		if (i % 64 == 0)
			sched_yield(); /* hold it across a reschedule now and then */
		atomic_fetch_sub(&sh->holders[k], 1);
		db_read_end(sh->db, c);
	}
	return NULL;
}

static void test_read_pool_stress(void **state)
{
	struct rs_shared sh = {.db = open_test_db("rs.db", 2, 0)};
	pthread_t t[RS_THREADS];

	/* learn the two connections: borrow both at once */
	sh.conns[0] = db_read_begin(sh.db);
	sh.conns[1] = db_read_begin(sh.db);
	assert_non_null(sh.conns[0]);
	assert_non_null(sh.conns[1]);
	assert_ptr_not_equal(sh.conns[0], sh.conns[1]);
	db_read_end(sh.db, sh.conns[1]);
	db_read_end(sh.db, sh.conns[0]);
	for (int i = 0; i < RS_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, rs_main, &sh), 0);
	for (int i = 0; i < RS_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	assert_int_equal(atomic_load(&sh.wrong), 0);
	db_close(sh.db); /* asserts every connection came back */
}

/* --- close, concurrency ------------------------------------------------------ */

struct closer {
	pthread_t tid;
	struct sealvm_db *db;
};

static void *closer_main(void *arg)
{
	struct closer *cl = arg;
	db_close(cl->db);
	return NULL;
}

static void test_close_drains(void **state)
{
	struct sealvm_db *db = open_test_db("c.db", 1, 2); /* batches of 2: several left to drain */
	struct gate g = GATE_INIT;
	struct writer_thread wg, w[5];
	struct rows_job j[5];
	struct closer cl = {.db = db};

	gate_start(&wg, &g, db);
	size_t base = queued_now();
	for (int i = 0; i < 5; i++) {
		j[i] = (struct rows_job){.job = 60 + i, .nrows = 2};
		writer_start(&w[i], db, job_rows, &j[i]);
	}
	wait_queued(base + 5);
	assert_int_equal(pthread_create(&cl.tid, NULL, closer_main, &cl), 0);
	usleep(20 * 1000); /* lets db_close begin first; the outcome does not depend on it */
	gate_open(&g);
	assert_int_equal(pthread_join(cl.tid, NULL), 0);
	writer_join(&wg);
	for (int i = 0; i < 5; i++) {
		writer_join(&w[i]);
		assert_int_equal(w[i].result, 0);
	}

	db = open_test_db("c.db", 1, 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(rows_of(db, 60 + i), 2);
	db_close(db);
}

#define CW_THREADS 16
#define CW_JOBS 100

struct cw_thread {
	pthread_t tid;
	struct sealvm_db *db;
	int index;
	int wrong;
};

static void *cw_main(void *arg)
{
	struct cw_thread *t = arg;

	for (int i = 0; i < CW_JOBS; i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct rows_job j = {.job = t->index * 1000 + i, .nrows = 2};
		if (db_write(t->db, job_rows, &j, &err) != 0)
			t->wrong++;
		if (i % 10 == 9) {
			char sql[128];
			snprintf(sql, sizeof(sql),
				 "SELECT count(*) FROM t WHERE job BETWEEN %d AND %d",
				 t->index * 1000, t->index * 1000 + 999);
			sqlite3 *c = db_read_begin(t->db);
			_cleanup_stmt_ sqlite3_stmt *s = NULL;
			if (sqlite3_prepare_v2(c, sql, -1, &s, NULL) != SQLITE_OK ||
			    sqlite3_step(s) != SQLITE_ROW ||
			    sqlite3_column_int(s, 0) != 2 * (i + 1))
				t->wrong++;
			sqlite3_finalize(TAKE_PTR(s));
			db_read_end(t->db, c);
		}
	}
	return NULL;
}

static void test_concurrent_writers(void **state)
{
	struct sealvm_db *db = open_test_db("cw.db", 3, 0);
	struct cw_thread t[CW_THREADS];
	uint64_t commits, jobs;

	for (int i = 0; i < CW_THREADS; i++) {
		t[i] = (struct cw_thread){.db = db, .index = i + 1};
		assert_int_equal(pthread_create(&t[i].tid, NULL, cw_main, &t[i]), 0);
	}
	for (int i = 0; i < CW_THREADS; i++) {
		assert_int_equal(pthread_join(t[i].tid, NULL), 0);
		assert_int_equal(t[i].wrong, 0);
	}
	db_stats(db, &commits, &jobs);
	assert_int_equal(jobs, CW_THREADS * CW_JOBS);
	assert_true(commits >= 1 && commits <= jobs);
	assert_int_equal(read_int(db, "SELECT count(*) FROM t"), 2 * CW_THREADS * CW_JOBS);
	db_close(db);
}

/* --- crash: SIGKILL a writing process ---------------------------------------- */

#define CRASH_THREADS 4
#define CRASH_ROWS 3
#define CRASH_ACKS 200

static int crash_pipe = -1;
static struct sealvm_db *crash_db;

static void *crash_child_main(void *arg)
{
	int index = (int)(intptr_t)arg;

	for (int i = 0; i < 1000000; i++) {
		struct rows_job j = {.job = index * 1000000 + i, .nrows = CRASH_ROWS};
		if (db_write(crash_db, job_rows, &j, NULL) != 0)
			_exit(3);
		/* Acknowledged: the write has committed. */
		if (write(crash_pipe, &j.job, sizeof(j.job)) != (ssize_t)sizeof(j.job))
			_exit(4);
	}
	return NULL;
}

static void test_crash_keeps_acknowledged(void **state)
{
	int fds[2];
	int *acked = NULL;
	size_t n_acked = 0;
	pid_t pid;
	int status, id;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_t tid[CRASH_THREADS];
		struct sealvm_err err = SEALVM_ERR_INIT;
		close(fds[0]);
		crash_pipe = fds[1];
		if (db_open(p("crash.db"), test_migrations, ELEMENTSOF(test_migrations), NULL,
			    &crash_db, &err) < 0)
			_exit(2);
		for (int i = 0; i < CRASH_THREADS; i++)
			if (pthread_create(&tid[i], NULL, crash_child_main,
					   (void *)(intptr_t)(i + 1)))
				_exit(5);
		for (int i = 0; i < CRASH_THREADS; i++)
			pthread_join(tid[i], NULL);
		_exit(6); /* never reached in time: the parent kills us */
	}
	close(fds[1]);

	acked = calloc(1u << 20, sizeof(*acked));
	assert_non_null(acked);
	while (read(fds[0], &id, sizeof(id)) == (ssize_t)sizeof(id)) {
		acked[n_acked++] = id;
		if (n_acked == CRASH_ACKS)
			assert_int_equal(kill(pid, SIGKILL), 0);
		assert_true(n_acked < (1u << 20));
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
	assert_true(n_acked >= CRASH_ACKS);

	struct sealvm_db *db = open_test_db("crash.db", 1, 0);
	sqlite3 *c = db_read_begin(db);
	_cleanup_stmt_ sqlite3_stmt *s = NULL;
	assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA integrity_check", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "ok");
	sqlite3_finalize(TAKE_PTR(s));
	/* No job is half there. */
	assert_int_equal(query_int(c, "SELECT count(*) FROM (SELECT job FROM t GROUP BY job "
				      "HAVING count(*) != 3)"),
			 0);
	/* Every acknowledged job is all there. */
	assert_int_equal(
		sqlite3_prepare_v2(c, "SELECT count(*) FROM t WHERE job = ?1", -1, &s, NULL),
		SQLITE_OK);
	for (size_t i = 0; i < n_acked; i++) {
		sqlite3_bind_int(s, 1, acked[i]);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		assert_int_equal(sqlite3_column_int(s, 0), CRASH_ROWS);
		sqlite3_reset(s);
	}
	print_message("crash: %zu acknowledged jobs, %" PRId64 " jobs on disk\n", n_acked,
		      query_int(c, "SELECT count(DISTINCT job) FROM t"));
	sqlite3_finalize(TAKE_PTR(s));
	db_read_end(db, c);
	db_close(db);
	free(acked);
}

/* --- error translation ------------------------------------------------------- */

/* --- writes without waiting ------------------------------------------------------ */

struct async_done {
	atomic_int calls;
	atomic_int result;
	char reason[64];
	pthread_t thread;
};

static void on_async_done(void *arg, int result, const struct sealvm_err *err)
{
	struct async_done *d = arg;
	d->result = result;
	snprintf(d->reason, sizeof(d->reason), "%s", result < 0 && err ? err->reason : "");
	d->thread = pthread_self();
	d->calls++;
}

static void test_write_async(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("a.db", 2, 0);
	struct rows_job ok = {.job = 1, .nrows = 2, .ret = 5};
	struct rows_job bad = {.job = 2, .nrows = 1, .fail = -EINVAL};
	struct async_done d_ok = {0}, d_bad = {0};
	struct writer_thread gate_w;
	struct gate g = GATE_INIT;

	/* Both queue behind a gate, so all three share one batch; the failing one alone rolls back.
	 */
	gate_start(&gate_w, &g, db);
	size_t before = queued_now();
	assert_int_equal(db_write_async(db, job_rows, &ok, 0, on_async_done, &d_ok, &err), 0);
	assert_int_equal(db_write_async(db, job_rows, &bad, 0, on_async_done, &d_bad, &err), 0);
	wait_queued(before + 2);
	assert_int_equal(d_ok.calls + d_bad.calls, 0); /* nothing runs before the writer does */
	gate_open(&g);
	writer_join(&gate_w);
	/* Completions may still run after the gate returns; db_close waits for them. */
	db_close(db);
	assert_int_equal(d_ok.calls, 1);
	assert_int_equal(d_ok.result, 5);
	assert_int_equal(d_bad.calls, 1);
	assert_int_equal(d_bad.result, -EINVAL);
	assert_string_equal(d_bad.reason, "TEST_FAIL");
	assert_false(pthread_equal(d_ok.thread, pthread_self()));

	db = open_test_db("a.db", 2, 0);
	assert_int_equal(rows_of(db, 1), 2);
	assert_int_equal(rows_of(db, 2), 0);
	assert_int_equal(db_write_async(db, NULL, NULL, 0, on_async_done, &d_ok, &err), -EINVAL);
	db_close(db);
}

/* --- the state generation and the row cache ------------------------------------ */

static void test_state_generation(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("g.db", 2, 0);
	struct rows_job append = {.job = 1, .nrows = 1};
	struct rows_job change = {.job = 2, .nrows = 1};
	struct rows_job failing = {.job = 3, .nrows = 1, .fail = -EINVAL};

	uint64_t g0 = db_state_generation(db);
	/* A job that only appends leaves it: the caches of everyone else stay good. */
	assert_int_equal(db_write_flags(db, job_rows, &append, DB_JOB_APPEND_ONLY, &err), 0);
	assert_true(db_state_generation(db) == g0);
	/* Any other job moves it, and before its caller is woken. */
	assert_int_equal(db_write(db, job_rows, &change, &err), 0);
	uint64_t g1 = db_state_generation(db);
	assert_true(g1 != g0);
	/* So does one that failed: a cache cannot tell a rolled-back write from another. */
	assert_int_equal(db_write(db, job_rows, &failing, &err), -EINVAL);
	assert_true(db_state_generation(db) != g1);
	assert_int_equal(rows_of(db, 3), 0);
	db_close(db);
}

/* A "row" for the cache: how many rows job @ctx->job has (none: -ENOENT). */
struct count_ref {
	int job;
	int reads;
};

static int count_read(sqlite3 *conn, void *ctx, void *row, struct sealvm_err *err)
{
	struct count_ref *ref = ctx;
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = db_prepare(conn, "SELECT count(*) FROM t WHERE job = ?", &st, err);
	if (r < 0)
		return r;
	sqlite3_bind_int(st, 1, ref->job);
	ref->reads++;
	if (sqlite3_step(st) != SQLITE_ROW)
		return db_error(conn, sqlite3_errcode(conn), "count", err);
	int64_t n = sqlite3_column_int64(st, 0);
	if (n == 0)
		return sealvm_err_set(err, -ENOENT, "NOT_FOUND", "no rows of job %d", ref->job);
	memcpy(row, &n, sizeof(n));
	return 0;
}

/* Replaces the rows of @ud's job by @ud's. */
static int job_replace_rows(sqlite3 *c, void *ud, struct sealvm_err *err)
{
	const struct rows_job *j = ud;
	char sql[64];
	snprintf(sql, sizeof(sql), "DELETE FROM t WHERE job = %d", j->job);
	if (sqlite3_exec(c, sql, NULL, NULL, NULL) != SQLITE_OK)
		return db_error(c, sqlite3_errcode(c), "delete", err);
	return job_rows(c, ud, err);
}

static void test_rowcache_follows_writes(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_db *db = open_test_db("c.db", 2, 0);
	struct sealvm_rowcache *c = NULL;
	struct count_ref ref = {.job = 5};
	int64_t n = 0;

	assert_int_equal(sealvm_rowcache_new(64, sizeof(int64_t), &c), 0);
	/* A miss is not cached: no row, no entry; the next read asks again. */
	assert_int_equal(sealvm_rowcache_read(c, db, "job5", &n, count_read, &ref, &err), -ENOENT);
	assert_int_equal(sealvm_rowcache_read(c, db, "job5", &n, count_read, &ref, &err), -ENOENT);
	assert_int_equal(ref.reads, 2);

	struct rows_job two = {.job = 5, .nrows = 2};
	assert_int_equal(db_write(db, job_rows, &two, &err), 0);
	sealvm_err_clear(&err);
	assert_int_equal(sealvm_rowcache_read(c, db, "job5", &n, count_read, &ref, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ref.reads, 3);
	/* Read again: from the cache. */
	n = 0;
	assert_int_equal(sealvm_rowcache_read(c, db, "job5", &n, count_read, &ref, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ref.reads, 3);
	/* An append-only write keeps it... */
	struct rows_job other = {.job = 6, .nrows = 1};
	assert_int_equal(db_write_flags(db, job_rows, &other, DB_JOB_APPEND_ONLY, &err), 0);
	assert_int_equal(sealvm_rowcache_read(c, db, "job5", &n, count_read, &ref, &err), 0);
	assert_int_equal(ref.reads, 3);
	/* ...any other write, even of other rows, makes the next read fresh... */
	struct rows_job seven = {.job = 7, .nrows = 1};
	assert_int_equal(db_write(db, job_rows, &seven, &err), 0);
	assert_int_equal(sealvm_rowcache_read(c, db, "job5", &n, count_read, &ref, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(ref.reads, 4);
	/* ...and a write of the row itself is seen at once. */
	struct rows_job more = {.job = 5, .nrows = 3};
	assert_int_equal(db_write(db, job_replace_rows, &more, &err), 0);
	assert_int_equal(sealvm_rowcache_read(c, db, "job5", &n, count_read, &ref, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(ref.reads, 5);
	/* No key: read, never cached. */
	assert_int_equal(sealvm_rowcache_read(c, db, NULL, &n, count_read, &ref, &err), 0);
	assert_int_equal(sealvm_rowcache_read(c, db, NULL, &n, count_read, &ref, &err), 0);
	assert_int_equal(ref.reads, 7);
	uint64_t hits, misses;
	sealvm_rowcache_stats(c, &hits, &misses);
	assert_true(hits == 2 && misses == 5);
	sealvm_rowcache_free(c);
	db_close(db);
}

static void test_rowcache_slots(void **state)
{
	struct sealvm_rowcache *c = NULL;
	char key[SEALVM_ROWCACHE_KEY_MAX + 2];
	int v = 0;

	assert_int_equal(sealvm_rowcache_new(0, 0, &c), -EINVAL);
	assert_int_equal(sealvm_rowcache_new(16, sizeof(int), &c), 0);
	assert_false(sealvm_rowcache_get(c, 1, "a", &v));
	sealvm_rowcache_put(c, 1, "a", &(int){10});
	assert_true(sealvm_rowcache_get(c, 1, "a", &v));
	assert_int_equal(v, 10);
	/* Another generation: a miss that leaves @out alone. */
	v = -1;
	assert_false(sealvm_rowcache_get(c, 2, "a", &v));
	assert_int_equal(v, -1);
	/* A row read at an older generation never replaces a newer one. */
	sealvm_rowcache_put(c, 3, "a", &(int){30});
	sealvm_rowcache_put(c, 2, "a", &(int){20});
	assert_true(sealvm_rowcache_get(c, 3, "a", &v));
	assert_int_equal(v, 30);
	/* Keys are compared whole, not by prefix nor by slot. */
	assert_false(sealvm_rowcache_get(c, 3, "ab", &v));
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		sealvm_rowcache_put(c, 3, key, &i);
	}
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		if (sealvm_rowcache_get(c, 3, key, &v))
			assert_int_equal(v, i); /* a slot holds the last key put there, whole */
	}
	/* A key too long is never cached. */
	memset(key, 'x', sizeof(key) - 1);
	key[sizeof(key) - 1] = 0;
	sealvm_rowcache_put(c, 3, key, &(int){1});
	assert_false(sealvm_rowcache_get(c, 3, key, &v));
	/* A NULL cache misses and keeps nothing. */
	sealvm_rowcache_put(NULL, 1, "a", &v);
	assert_false(sealvm_rowcache_get(NULL, 1, "a", &v));
	sealvm_rowcache_free(c);
	sealvm_rowcache_free(NULL);
}

static void test_db_error_mapping(void **state)
{
	static const struct {
		int rc, code;
		const char *reason;
	} cases[] = {
		{SQLITE_CONSTRAINT, -EEXIST, "DB_CONSTRAINT"},
		{SQLITE_CONSTRAINT_UNIQUE, -EEXIST, "DB_CONSTRAINT"},
		{SQLITE_CONSTRAINT_FOREIGNKEY, -EEXIST, "DB_CONSTRAINT"},
		{SQLITE_FULL, -ENOSPC, "NO_SPACE"},
		{SQLITE_BUSY, -EBUSY, "DB_BUSY"},
		{SQLITE_BUSY_SNAPSHOT, -EBUSY, "DB_BUSY"},
		{SQLITE_LOCKED, -EBUSY, "DB_BUSY"},
		{SQLITE_NOTFOUND, -ENOENT, "NOT_FOUND"},
		{SQLITE_CORRUPT, -EBADMSG, "DB_CORRUPT"},
		{SQLITE_NOTADB, -EBADMSG, "DB_CORRUPT"},
		{SQLITE_READONLY, -EROFS, "READ_ONLY"},
		{SQLITE_READONLY_DBMOVED, -EROFS, "READ_ONLY"},
		{SQLITE_PERM, -EROFS, "READ_ONLY"},
		{SQLITE_NOMEM, -ENOMEM, "NO_MEMORY"},
		{SQLITE_TOOBIG, -E2BIG, "TOO_LARGE"},
		{SQLITE_IOERR, -EIO, "DB_ERROR"},
		{SQLITE_IOERR_FSYNC, -EIO, "DB_ERROR"},
		{SQLITE_ERROR, -EIO, "DB_ERROR"},
		{SQLITE_CANTOPEN, -EIO, "DB_ERROR"},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		assert_int_equal(db_error(NULL, cases[i].rc, "doing it", &err), cases[i].code);
		assert_int_equal(err.code, cases[i].code);
		assert_string_equal(err.reason, cases[i].reason);
		char want[128];
		snprintf(want, sizeof(want), "doing it: %s", sqlite3_errstr(cases[i].rc));
		assert_string_equal(err.message, want);
		/* NULL err: the code alone. */
		assert_int_equal(db_error(NULL, cases[i].rc, "doing it", NULL), cases[i].code);
	}

	/* Sticky: the first error stays. */
	struct sealvm_err err = SEALVM_ERR_INIT;
	sealvm_err_set(&err, -EPERM, "FIRST", "first");
	assert_int_equal(db_error(NULL, SQLITE_FULL, "second", &err), -ENOSPC);
	assert_string_equal(err.reason, "FIRST");
}

int main(void)
{
	faulty_vfs_install();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrations_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrations_bad_lists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrations_too_new, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migrations_owners_independent, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_migration_failure_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_visible, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_job_in_shared_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_on_full_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_checkpoints_outside_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readers_see_committed_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_pool_stress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_pool_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_keeps_acknowledged, setup, teardown),
		cmocka_unit_test(test_db_error_mapping),
		cmocka_unit_test_setup_teardown(test_write_async, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_generation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rowcache_follows_writes, setup, teardown),
		cmocka_unit_test(test_rowcache_slots),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
