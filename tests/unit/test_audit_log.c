// SPDX-License-Identifier: Apache-2.0
/*
 * The event log (lib/audit/audit_log.c, decision 0024), on a real database in
 * a temp dir, written through the database's writer as the daemon writes it:
 * reads as DB_JOB_LOG batches, state changes as rows, one chain through both.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "sealvm/audit.h"
#include "sealvm/db.h"

#include "lib/audit/audit_internal.h"

static const unsigned char key[AUDIT_CHAIN_KEY_SIZE] = "0123456789abcdef0123456789abcde";

struct fixture {
	char dir[64];
	struct sealvm_db *db;
	struct audit_log *log;
};

static char *path_in(const struct fixture *f, const char *name)
{
	static char p[256];
	snprintf(p, sizeof(p), "%s/%s", f->dir, name);
	return p;
}

static void open_all(struct fixture *f)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = db_open(path_in(f, "sealvm.db"), audit_migrations, audit_n_migrations, NULL, &f->db,
			&err);
	if (r < 0)
		print_error("db_open: %s\n", err.message);
	assert_int_equal(r, 0);
	r = audit_log_open(f->db, &f->log, &err);
	if (r < 0)
		print_error("audit_log_open: %s\n", err.message);
	assert_int_equal(r, 0);
}

static void close_all(struct fixture *f)
{
	db_close(f->db);
	audit_log_close(f->log);
	f->db = NULL;
	f->log = NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/sealvm-test-audit-log-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	audit_log_set_segment_bytes(0);
	open_all(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close_all(f);
	audit_log_set_segment_bytes(0);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

#define TARGET "crn:v1:bluemix:public:kms:us-south:a/acct:inst:key:k1"

struct ev_job {
	const char *account, *action;
	int64_t seq;
	bool saw_conn;
};

static int ev_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct ev_job *j = userdata;
	j->saw_conn = conn != NULL;
	struct audit_event ev = {
		.action = j->action,
		.outcome = AUDIT_SUCCESS,
		.status = 200,
		.reason_type = "OK",
		.account_id = j->account,
		.target_id = TARGET,
		.correlation_id = "req-1",
	};
	return audit_append(conn, &ev, key, &j->seq, err);
}

/* One event: through the log (a read) or as a row (a state change). */
static int64_t event(struct fixture *f, bool read, const char *account, const char *action)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct ev_job j = {account, action, 0, false};
	int r = read ? db_write_flags(f->db, ev_run, &j, DB_JOB_APPEND_ONLY | DB_JOB_LOG, &err)
		     : db_write(f->db, ev_run, &j, &err);
	if (r < 0)
		print_error("event: %s\n", err.message);
	assert_int_equal(r, 0);
	assert_true(j.saw_conn == !read); /* a log batch runs its jobs without a connection */
	return j.seq;
}

static int64_t count_rows(struct fixture *f)
{
	sqlite3 *c = db_read_begin(f->db);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(c, "SELECT count(*) FROM audit_events", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	db_read_end(f->db, c);
	return n;
}

/* Verifies as `sealvm events verify --data-dir` does: a connection of its own, read-only. */
static int verify_offline(struct fixture *f, struct audit_verify_result *res)
{
	sqlite3 *c = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(sqlite3_open_v2(path_in(f, "sealvm.db"), &c, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	int r = audit_verify(c, key, 0, NULL, res, &err);
	sqlite3_close(c);
	return r;
}

static int verify_live(struct fixture *f, struct audit_verify_result *res)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	sqlite3 *c = db_read_begin(f->db);
	int r = audit_verify(c, key, 0, NULL, res, &err);
	db_read_end(f->db, c);
	return r;
}

struct lines {
	int64_t seqs[256];
	size_t n;
};

static int collect_line(void *ctx, const char *line, size_t n)
{
	struct lines *l = ctx;
	json_t *j = json_loadb(line, n, 0, NULL);
	assert_non_null(j);
	assert_true(l->n < 256);
	l->seqs[l->n++] = json_integer_value(json_object_get(j, "seq"));
	assert_non_null(json_object_get(j, "event"));
	json_decref(j);
	return 0;
}

static void test_one_chain_through_rows_and_log(void **state)
{
	struct fixture *f = *state;
	int64_t s[8];
	s[0] = event(f, true, "acctA", "kms.secrets.read");
	s[1] = event(f, true, "acctB", "kms.secrets.read");
	s[2] = event(f, false, "acctA", "kms.secrets.create");
	s[3] = event(f, true, "acctA", "kms.secrets.unwrap");
	s[4] = event(f, true, NULL, "sealvm.unauthenticated-requests.aggregate");
	s[5] = event(f, false, "acctB", "kms.secrets.delete");
	s[6] = event(f, true, "acctA", "iam-identity.serviceid.get");
	s[7] = event(f, true, "acctA", "kms.secrets.wrap");
	for (int i = 0; i < 8; i++)
		assert_int_equal(s[i], i + 1);
	assert_int_equal(count_rows(f), 2); /* only the state changes are rows */

	struct audit_verify_result res;
	assert_int_equal(verify_live(f, &res), 0);
	assert_true(res.ok);
	assert_int_equal(res.events, 8);
	assert_int_equal(res.head_seq, 8);
	assert_int_equal(verify_offline(f, &res), 0);
	assert_int_equal(res.events, 8);

	/* Export: rows and records merged in seq order. */
	struct lines l = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	sqlite3 *c = db_read_begin(f->db);
	assert_int_equal(audit_export(c, collect_line, &l, &err), 0);
	assert_int_equal(l.n, 8);
	for (size_t i = 0; i < l.n; i++)
		assert_int_equal(l.seqs[i], (int64_t)i + 1);

	/* A query merges both, filters both the same way, pages across them. */
	size_t n = 0, pages = 0;
	int64_t after = 0;
	for (; pages < 10 && after >= 0; pages++) {
		struct audit_query q = {.account_id = "acctA", .after_seq = after, .limit = 2};
		json_t *out = NULL;
		assert_int_equal(audit_query(c, &q, &out, &err), 0);
		json_t *evs = json_object_get(out, "events");
		for (size_t i = 0; i < json_array_size(evs); i++) {
			const char *acct = json_string_value(
				json_object_get(json_array_get(evs, i), "accountId"));
			assert_string_equal(acct, "acctA");
			n++;
		}
		json_t *next = json_object_get(out, "next");
		after = json_is_integer(next) ? json_integer_value(next) : -1;
		json_decref(out);
	}
	assert_int_equal(n, 5); /* events 1, 3, 4, 7, 8 */
	assert_int_equal(pages, 3);
	struct audit_query q = {.account_id = "acctA", .action_prefix = "kms.secrets.un"};
	json_t *out = NULL;
	assert_int_equal(audit_query(c, &q, &out, &err), 0);
	assert_int_equal(json_array_size(json_object_get(out, "events")), 1);
	json_decref(out);
	q = (struct audit_query){.account_id = "acctB", .outcome = "success"};
	assert_int_equal(audit_query(c, &q, &out, &err), 0);
	assert_int_equal(json_array_size(json_object_get(out, "events")), 2); /* 2 and 6 */
	json_decref(out);
	db_read_end(f->db, c);

	/*
	 * Another process (no log of its own: the daemon holds it) appends a row:
	 * its seq follows the log's last record, read from the files.
	 */
	close_all(f);
	sqlite3 *other = NULL;
	assert_int_equal(sqlite3_open(path_in(f, "sealvm.db"), &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	struct ev_job j = {"acctA", "kms.secrets.rotate", 0, false};
	assert_int_equal(ev_run(other, &j, &err), 0);
	assert_int_equal(j.seq, 9);
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);

	/* Restart: the chain goes on from the newest of both. */
	open_all(f);
	assert_int_equal(event(f, true, "acctA", "kms.secrets.read"), 10);
	assert_int_equal(event(f, false, "acctA", "kms.secrets.rotate"), 11);
	assert_int_equal(event(f, true, "acctA", "kms.secrets.read"), 12);
	assert_int_equal(verify_live(f, &res), 0);
	assert_int_equal(res.head_seq, 12);
}

/* The only segment's path and its bytes. */
static unsigned char *read_segment(struct fixture *f, char *path, size_t size, size_t *len)
{
	DIR *d = opendir(path_in(f, AUDIT_LOG_DIR));
	assert_non_null(d);
	struct dirent *e;
	path[0] = 0;
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".log"))
			snprintf(path, size, "%s/%s/%s", f->dir, AUDIT_LOG_DIR, e->d_name);
	closedir(d);
	assert_true(path[0]);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	unsigned char *b = malloc(1 << 20);
	assert_non_null(b);
	*len = fread(b, 1, 1 << 20, fp);
	fclose(fp);
	return b;
}

static void write_segment(const char *path, const unsigned char *b, size_t len)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(b, 1, len, fp), len);
	fclose(fp);
}

/* The offset of the record @seq in a segment. */
static size_t record_at(const unsigned char *b, size_t len, int64_t seq)
{
	size_t off = 0;
	while (off + 16 <= len) {
		uint32_t n = b[off + 4] | b[off + 5] << 8 | b[off + 6] << 16 |
			     (uint32_t)b[off + 7] << 24;
		int64_t s = 0;
		for (int i = 7; i >= 0; i--)
			s = s << 8 | b[off + 8 + i];
		if (s == seq)
			return off;
		off += n;
	}
	fail_msg("no record %lld", (long long)seq);
	return 0;
}

static void fix_crc(unsigned char *b, size_t off)
{
	uint32_t n = b[off + 4] | b[off + 5] << 8 | b[off + 6] << 16 | (uint32_t)b[off + 7] << 24;
	uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b + off, n - 4);
	for (int i = 0; i < 4; i++)
		b[off + n - 4 + i] = (unsigned char)(c >> (8 * i));
}

/* The log refuses to open for writing on damage (the daemon does not start); the db closed. */
static void assert_log_damaged(struct fixture *f)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(db_open(path_in(f, "sealvm.db"), audit_migrations, audit_n_migrations,
				 NULL, &f->db, &err),
			 0);
	assert_int_equal(audit_log_open(f->db, &f->log, &err), -EBADMSG);
	assert_string_equal(err.reason, "AUDIT_LOG_DAMAGED");
	assert_null(f->log);
	db_close(f->db);
	f->db = NULL;
}

/* @n read events through the log, the log closed: its one segment, read (path in @path). */
static unsigned char *events_then_segment(struct fixture *f, int n, char *path, size_t size,
					  size_t *len)
{
	for (int i = 0; i < n; i++)
		event(f, true, "acctA", "kms.secrets.read");
	close_all(f);
	return read_segment(f, path, size, len);
}

static void test_tampered_record_is_found(void **state)
{
	struct fixture *f = *state;
	char path[512];
	size_t len;
	unsigned char *orig = events_then_segment(f, 6, path, sizeof(path), &len);
	unsigned char *b = malloc(len);
	assert_non_null(b);
	struct audit_verify_result res;

	/* One byte of event 3's text, its CRC recomputed: the chain MAC catches it. */
	memcpy(b, orig, len);
	size_t off = record_at(b, len, 3);
	size_t text = off + 70 + strlen("acctA") + strlen("kms.secrets.read") + strlen("success") +
		      strlen(TARGET);
	b[text + 20] ^= 1; /* inside the event text */
	fix_crc(b, off);
	write_segment(path, b, len);
	assert_int_equal(verify_offline(f, &res), -EBADMSG);
	assert_false(res.ok);
	assert_int_equal(res.first_bad_seq, 3);

	/* The same byte without the CRC: a damaged record, with records after it. */
	memcpy(b, orig, len);
	b[text + 20] ^= 1;
	write_segment(path, b, len);
	assert_int_equal(verify_offline(f, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 3);
	assert_non_null(strstr(res.why, "damaged"));
	/* Nor does the daemon start appending behind it. */
	assert_log_damaged(f);

	/* A record removed from the middle: the gap is named. */
	size_t off5 = record_at(orig, len, 5);
	size_t off4 = record_at(orig, len, 4);
	memcpy(b, orig, off4);
	memcpy(b + off4, orig + off5, len - off5);
	write_segment(path, b, len - (off5 - off4));
	assert_int_equal(verify_offline(f, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 5);

	write_segment(path, orig, len);
	assert_int_equal(verify_offline(f, &res), 0);
	assert_int_equal(res.head_seq, 6);
	open_all(f);
	free(b);
	free(orig);
}

static void test_torn_tail_is_cut_off(void **state)
{
	struct fixture *f = *state;
	char path[512];
	size_t len;
	unsigned char *orig = events_then_segment(f, 4, path, sizeof(path), &len);
	/* A crash in the middle of an append: half of a record copied at the end, then zeros. */
	unsigned char *b = calloc(1, len + 200);
	assert_non_null(b);
	memcpy(b, orig, len);
	memcpy(b + len, orig, 60);
	write_segment(path, b, len + 200);

	struct audit_verify_result res;
	assert_int_equal(verify_offline(f, &res), 0); /* what was acknowledged is all there */
	assert_int_equal(res.head_seq, 4);

	open_all(f); /* cuts the torn end off */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, len);
	assert_int_equal(event(f, true, "acctA", "kms.secrets.read"), 5);
	assert_int_equal(verify_live(f, &res), 0);
	assert_int_equal(res.head_seq, 5);
	/* Appends overwrite zeros written ahead; a clean stop gives them back. */
	assert_int_equal(stat(path, &st), 0);
	assert_true((size_t)st.st_size > len + 4096);
	close_all(f);
	size_t len5;
	unsigned char *b5 = read_segment(f, path, sizeof(path), &len5);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, len5);
	size_t off5 = record_at(b5, len5, 5);
	assert_int_equal(off5, len);
	assert_int_equal(off5 + (b5[off5 + 4] | b5[off5 + 5] << 8), len5);
	open_all(f);
	free(b5);
	free(b);
	free(orig);
}

/* ---- a batch of several records, torn by a power loss ---- */

struct gate {
	pthread_mutex_t m;
	pthread_cond_t c;
	bool open, running;
	int done;
};

static int gated_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct gate *g = userdata;
	pthread_mutex_lock(&g->m);
	g->running = true; /* its batch is formed: jobs queued from now on make the next */
	pthread_cond_broadcast(&g->c);
	while (!g->open)
		pthread_cond_wait(&g->c, &g->m);
	pthread_mutex_unlock(&g->m);
	struct ev_job j = {"acctA", "kms.secrets.read", 0, false};
	return ev_run(conn, &j, err);
}

static int async_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	return ev_run(conn, userdata, err);
}

static void async_done(void *arg, int result, const struct sealvm_err *err)
{
	struct gate *g = arg;
	assert_int_equal(result, 0);
	pthread_mutex_lock(&g->m);
	g->done++;
	pthread_cond_broadcast(&g->c);
	pthread_mutex_unlock(&g->m);
}

static uint32_t magic_at(const unsigned char *b, size_t off)
{
	return b[off] | b[off + 1] << 8 | b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
}

#define SVB1 0x31425653u
#define SVE1 0x31455653u

/*
 * Events 1-2 one batch each, 3 alone (the writer held in it), 4-6 queued
 * meanwhile: one batch of three. Returns the segment, records 4-6 checked to
 * be one batch.
 */
static unsigned char *write_batches(struct fixture *f, char *path, size_t size, size_t *len)
{
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0};
	struct ev_job later[3] = {{"acctA", "kms.secrets.read", 0, false},
				  {"acctA", "kms.secrets.read", 0, false},
				  {"acctA", "kms.secrets.read", 0, false}};
	struct sealvm_err err = SEALVM_ERR_INIT;
	event(f, true, "acctA", "kms.secrets.read");
	event(f, true, "acctA", "kms.secrets.read");
	assert_int_equal(db_write_async(f->db, gated_run, &g, DB_JOB_APPEND_ONLY | DB_JOB_LOG,
					async_done, &g, &err),
			 0);
	pthread_mutex_lock(&g.m);
	while (!g.running)
		pthread_cond_wait(&g.c, &g.m);
	pthread_mutex_unlock(&g.m);
	for (int i = 0; i < 3; i++)
		assert_int_equal(db_write_async(f->db, async_run, &later[i],
						DB_JOB_APPEND_ONLY | DB_JOB_LOG, async_done, &g,
						&err),
				 0);
	pthread_mutex_lock(&g.m);
	g.open = true;
	pthread_cond_broadcast(&g.c);
	while (g.done < 4)
		pthread_cond_wait(&g.c, &g.m);
	pthread_mutex_unlock(&g.m);
	close_all(f);

	unsigned char *b = read_segment(f, path, size, len);
	assert_int_equal(magic_at(b, record_at(b, *len, 1)), SVB1);
	assert_int_equal(magic_at(b, record_at(b, *len, 2)), SVB1);
	assert_int_equal(magic_at(b, record_at(b, *len, 4)), SVB1);
	assert_int_equal(magic_at(b, record_at(b, *len, 5)), SVE1);
	assert_int_equal(magic_at(b, record_at(b, *len, 6)), SVE1);
	return b;
}

static void test_torn_last_batch(void **state)
{
	struct fixture *f = *state;
	char path[512];
	size_t len;
	unsigned char *orig = write_batches(f, path, sizeof(path), &len);
	unsigned char *b = malloc(len);
	assert_non_null(b);
	struct audit_verify_result res;
	size_t off4 = record_at(orig, len, 4), off5 = record_at(orig, len, 5);

	/*
	 * A power loss during the last batch's fdatasync: its first page never
	 * reached the disk (zeros), later ones did. Never acknowledged: the end.
	 */
	memcpy(b, orig, len);
	memset(b + off4, 0, off5 + 10 - off4);
	write_segment(path, b, len);
	assert_int_equal(verify_offline(f, &res), 0);
	assert_int_equal(res.head_seq, 3);
	open_all(f); /* cuts the batch off */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, off4);
	assert_int_equal(event(f, true, "acctA", "kms.secrets.read"), 4);
	assert_int_equal(verify_live(f, &res), 0);
	close_all(f);

	/* The hole inside the batch, after its first record: cut there. */
	memcpy(b, orig, len);
	memset(b + off5 + 8, 0, 100);
	write_segment(path, b, len);
	assert_int_equal(verify_offline(f, &res), 0);
	assert_int_equal(res.head_seq, 4);
	open_all(f);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal((size_t)st.st_size, off5);
	close_all(f);

	/* The same hole in batch 3, which batch 4-6 follows: damage, not a crash. */
	memcpy(b, orig, len);
	size_t off3 = record_at(orig, len, 3);
	memset(b + off3 + 8, 0, 100);
	write_segment(path, b, len);
	assert_int_equal(verify_offline(f, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 3);
	assert_log_damaged(f);

	write_segment(path, orig, len);
	open_all(f);
	assert_int_equal(verify_live(f, &res), 0);
	assert_int_equal(res.head_seq, 6);
	free(b);
	free(orig);
}

static int count_segments(struct fixture *f)
{
	DIR *d = opendir(path_in(f, AUDIT_LOG_DIR));
	assert_non_null(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		n += strstr(e->d_name, ".log") != NULL;
	closedir(d);
	return n;
}

static int prune_job(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	return audit_prune(conn, key, *(int64_t *)userdata, "req-prune", err);
}

static void test_segments_and_pruning(void **state)
{
	struct fixture *f = *state;
	audit_log_set_segment_bytes(4096); /* a few events a segment */
	for (int i = 0; i < 30; i++)
		event(f, i % 7 != 3, "acctA", "kms.secrets.read");
	int segs = count_segments(f);
	assert_true(segs >= 4);

	struct audit_verify_result res;
	assert_int_equal(verify_live(f, &res), 0);
	assert_int_equal(res.events, 30);

	/* Retention through event 20: the anchor moves, whole segments below it go. */
	int64_t through = 20;
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = db_write(f->db, prune_job, &through, &err);
	assert_int_equal(r, 20);
	sqlite3 *c = db_read_begin(f->db);
	int dropped = audit_log_drop_through(c, through, &err);
	db_read_end(f->db, c);
	assert_true(dropped >= 2);
	assert_int_equal(count_segments(f), segs - dropped);

	assert_int_equal(verify_live(f, &res), 0);
	assert_int_equal(res.pruned_through, 20);
	assert_int_equal(res.head_seq, 31); /* the prune event */
	assert_int_equal(verify_offline(f, &res), 0);

	/* Export starts after the anchor; the chain goes on after a restart. */
	struct lines l = {0};
	c = db_read_begin(f->db);
	assert_int_equal(audit_export(c, collect_line, &l, &err), 0);
	db_read_end(f->db, c);
	assert_int_equal(l.n, 11);
	assert_int_equal(l.seqs[0], 21);
	close_all(f);
	open_all(f);
	assert_int_equal(event(f, true, "acctA", "kms.secrets.read"), 32);
	assert_int_equal(verify_live(f, &res), 0);
}

static void test_log_batch_errors(void **state)
{
	struct fixture *f = *state;
	struct sealvm_err err = SEALVM_ERR_INIT;
	/* A bad event fails its job alone; the batch's others still commit. */
	struct ev_job bad = {"acctA", "", 0, false};
	assert_int_equal(db_write_flags(f->db, ev_run, &bad, DB_JOB_APPEND_ONLY | DB_JOB_LOG, &err),
			 -EINVAL);
	assert_int_equal(event(f, true, "acctA", "kms.secrets.read"), 1);
	/* One process, one log. */
	struct audit_log *second = NULL;
	assert_int_equal(audit_log_open(f->db, &second, &err), -EBUSY);
	assert_null(second);
	/* Without a log, a DB_JOB_LOG job runs as any other: with a connection, as a row. */
	db_set_log(f->db, NULL);
	struct ev_job j = {"acctA", "kms.secrets.read", 0, false};
	assert_int_equal(db_write_flags(f->db, ev_run, &j, DB_JOB_APPEND_ONLY | DB_JOB_LOG, &err),
			 0);
	assert_true(j.saw_conn);
	assert_int_equal(j.seq, 2);
	assert_int_equal(count_rows(f), 1);
	struct audit_verify_result res;
	assert_int_equal(verify_live(f, &res), 0);
	assert_int_equal(res.head_seq, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_one_chain_through_rows_and_log, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tampered_record_is_found, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_is_cut_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_last_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segments_and_pruning, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_batch_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
