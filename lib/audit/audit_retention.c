// SPDX-License-Identifier: Apache-2.0
/*
 * audit_retention.c — removes events older than the retention period, in
 * the background, keeping the chain verifiable (see audit_prune in audit.h).
 *
 * A thread wakes every interval, finds the newest prunable seq among the
 * oldest events (in batches, so that one write transaction stays short),
 * optionally exports those events to a file first — each line carries seq,
 * chain value and the event text, which is all an offline verifier needs —
 * and then prunes them in a write job. Export file I/O never runs inside the
 * job: the writer thread must not wait on anything but the database.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sealvm/audit.h"
#include "sealvm/file.h"
#include "sealvm/log.h"

#include "audit_internal.h"

#define RETENTION_BATCH 5000u

struct audit_retention {
	struct sealvm_db *db;
	const unsigned char *chain_key;
	struct audit_retention_config cfg;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	uint64_t pruned; /* under lock */
};

struct export_buf {
	char *buf;
	size_t len, cap;
	int64_t first, last, through;
	int error;
};

static void export_put(struct export_buf *e, const char *s, size_t n)
{
	if (e->error)
		return;
	if (e->len + n + 1 > e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 1 << 16;
		while (cap < e->len + n + 1)
			cap *= 2;
		char *b = realloc(e->buf, cap);
		if (!b) {
			e->error = -ENOMEM;
			return;
		}
		e->buf = b;
		e->cap = cap;
	}
	memcpy(e->buf + e->len, s, n);
	e->len += n;
}

static int export_row(const struct audit_row *row, void *userdata)
{
	struct export_buf *e = userdata;
	static const char hex[] = "0123456789abcdef";
	if (row->seq > e->through)
		return 1;
	if (!e->first)
		e->first = row->seq;
	e->last = row->seq;
	char head[96];
	int n = snprintf(head, sizeof(head), "{\"seq\":%" PRId64 ",\"chain\":\"", row->seq);
	export_put(e, head, (size_t)n);
	char c[2 * AUDIT_CHAIN_SIZE];
	for (size_t i = 0; i < AUDIT_CHAIN_SIZE && i < row->chain_len; i++) {
		c[2 * i] = hex[row->chain[i] >> 4];
		c[2 * i + 1] = hex[row->chain[i] & 15];
	}
	export_put(e, c, 2 * MIN(row->chain_len, (size_t)AUDIT_CHAIN_SIZE));
	export_put(e, "\",\"event\":", 10);
	export_put(e, row->event, row->event_len);
	export_put(e, "}\n", 2);
	return 0;
}

struct export_stream {
	struct export_buf e;
	int (*out)(void *ctx, const char *line, size_t n);
	void *ctx;
};

static int export_stream_row(const struct audit_row *row, void *userdata)
{
	struct export_stream *x = userdata;
	x->e.len = 0;
	int r = export_row(row, &x->e);
	if (r != 0)
		return r;
	if (x->e.error)
		return x->e.error;
	return x->out(x->ctx, x->e.buf, x->e.len);
}

int audit_export(sqlite3 *conn, int (*out)(void *ctx, const char *line, size_t n), void *ctx,
		 struct sealvm_err *err)
{
	struct export_stream x = {.e = {.through = INT64_MAX}, .out = out, .ctx = ctx};
	int r = audit_store_scan_all(conn, export_stream_row, &x, err);
	free(x.e.buf);
	if (r > 0)
		r = 0;
	if (r < 0 && err && !err->code)
		sealvm_err_set(err, r, NULL, "cannot export the audit events: %s", strerror(-r));
	return r;
}

/* Writes events ..@through (at most RETENTION_BATCH) to a new file in the export dir. */
static int export_events(struct audit_retention *r, int64_t through, struct sealvm_err *err)
{
	struct export_buf e = {.through = through};
	sqlite3 *conn = db_read_begin(r->db);
	int k = audit_store_scan_oldest(conn, RETENTION_BATCH, export_row, &e, err);
	db_read_end(r->db, conn);
	if (k >= 0 && e.error)
		k = sealvm_err_set(err, e.error, NULL, "out of memory exporting audit events");
	if (k >= 0 && e.len > 0) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/audit-%020" PRId64 "-%020" PRId64 ".jsonl",
			 r->cfg.export_dir, e.first, e.last);
		k = sealvm_write_file_exclusive(path, e.buf, e.len, 0600, err);
		if (k == -EEXIST) /* a previous run exported them, then stopped before pruning */
			k = 0, sealvm_err_clear(err);
	}
	free(e.buf);
	return k < 0 ? k : 0;
}

struct prune_job {
	struct audit_retention *r;
	int64_t through;
};

static int prune_job_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct prune_job *j = userdata;
	return audit_prune(conn, j->r->chain_key, j->through, NULL, err);
}

int audit_retention_run_once(struct audit_retention *r, int64_t now_ms, uint64_t *ret_pruned,
			     struct sealvm_err *err)
{
	int64_t cutoff = now_ms - (int64_t)r->cfg.retention_s * 1000;
	uint64_t total = 0;
	for (;;) {
		int64_t through = 0, last = 0, anchor = 0;
		unsigned char chain[AUDIT_CHAIN_SIZE];
		sqlite3 *conn = db_read_begin(r->db);
		int k = audit_prune_point(conn, cutoff, RETENTION_BATCH, &through, err);
		if (k >= 0)
			k = audit_store_last(conn, &last, chain, err);
		if (k >= 0)
			k = audit_store_anchor(conn, &anchor, chain, err);
		db_read_end(r->db, conn);
		if (k < 0)
			return k;
		/*
		 * The newest event stays: pruning it would only chain a prune event
		 * in its place, once per interval, on a deployment with no traffic.
		 */
		if (through >= last)
			through = last - 1;
		if (through <= anchor)
			break;
		if (r->cfg.export_dir && (k = export_events(r, through, err)) < 0)
			return k;
		struct prune_job j = {.r = r, .through = through};
		k = db_write(r->db, prune_job_run, &j, err);
		if (k < 0)
			return k;
		if (k == 0)
			break;
		/* Committed: the log's segments below the anchor are unreachable now. */
		struct sealvm_err derr = SEALVM_ERR_INIT;
		conn = db_read_begin(r->db);
		if (audit_log_drop_through(conn, through, &derr) < 0)
			log_warning("audit retention: %s (retried at the next pass)", derr.message);
		db_read_end(r->db, conn);
		total += (uint64_t)k;
		pthread_mutex_lock(&r->lock);
		r->pruned += (uint64_t)k;
		bool stop = r->stopping;
		pthread_mutex_unlock(&r->lock);
		if (stop)
			break;
	}
	if (ret_pruned)
		*ret_pruned = total;
	return 0;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *retention_main(void *arg)
{
	struct audit_retention *r = arg;
	pthread_mutex_lock(&r->lock);
	while (!r->stopping) {
		pthread_mutex_unlock(&r->lock);
		struct sealvm_err err = SEALVM_ERR_INIT;
		uint64_t n = 0;
		if (audit_retention_run_once(r, wall_ms(), &n, &err) < 0)
			log_error("audit retention: %s [%s]", err.message, err.reason);
		else if (n > 0)
			log_notice("audit retention: removed %" PRIu64
				   " events older than %u s (the chain stays verifiable)",
				   n, r->cfg.retention_s);
		pthread_mutex_lock(&r->lock);
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += r->cfg.interval_s;
		while (!r->stopping &&
		       pthread_cond_timedwait(&r->wake, &r->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int audit_retention_new(struct sealvm_db *db, const unsigned char *chain_key,
			const struct audit_retention_config *cfg, struct audit_retention **ret,
			struct sealvm_err *err)
{
	if (!db || !chain_key || !cfg || cfg->retention_s == 0 || cfg->interval_s == 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "audit retention needs a database, the chain key, a "
				      "retention period and an interval");
	struct audit_retention *r = calloc(1, sizeof(*r));
	if (!r)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	r->db = db;
	r->chain_key = chain_key;
	r->cfg = *cfg;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->wake, &ca);
	pthread_condattr_destroy(&ca);
	*ret = r;
	return 0;
}

int audit_retention_start(struct audit_retention *r, struct sealvm_err *err)
{
	int e = pthread_create(&r->thread, NULL, retention_main, r);
	if (e != 0)
		return sealvm_err_set(err, -e, "NO_THREAD",
				      "cannot start the audit retention thread");
	r->started = true;
	return 0;
}

void audit_retention_free(struct audit_retention *r)
{
	if (!r)
		return;
	if (r->started) {
		pthread_mutex_lock(&r->lock);
		r->stopping = true;
		pthread_cond_signal(&r->wake);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->thread, NULL);
	}
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
