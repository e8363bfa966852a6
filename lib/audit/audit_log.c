// SPDX-License-Identifier: Apache-2.0
/*
 * audit_log.c — the append-only event log beside the control-plane database
 * (decision 0024).
 *
 * Events of requests that change nothing (reads, wrap/unwrap, token
 * exchanges: the jobs the HTTP ladder queues with DB_JOB_LOG) are appended
 * here, a group commit at a time: one write and one fdatasync per batch, no
 * table, no index, no page written twice. Events of state changes stay rows
 * of audit_events, in the transaction of the change. One chain runs through
 * both, by seq; every reader (audit_store.c) merges the two in seq order.
 *
 * Layout: DIR/audit-log/<first seq, 20 digits>.log, each a run of records
 *   magic "SVB1" (the first of its batch) or "SVE1" | length u32 | seq u64 |
 *   time_ms i64 | chain [32] | 5 × u16 field lengths (0xffff: NULL) |
 *   event length u32 |
 *   account_id action outcome target_id initiator_id | event text | crc32 u32
 * little endian; length counts the whole record; the CRC (zlib's CRC-32 of
 * everything before it) tells a torn write from a whole record, nothing more:
 * the chain MAC, checked by verify, is what detects tampering.
 *
 * Crash safety: a batch is acknowledged only after its fdatasync, and the
 * next batch is written only after it; so what a crash can leave unwhole is
 * the last batch of the last segment alone — a record cut short, or, after a
 * power loss, any of the batch's pages missing (zeros) while later ones
 * landed. A bad record followed only by whole records of the same batch
 * ("SVE1") is that torn end, and opening the log for writing cuts it off
 * (logged); a bad record followed by the first record of a later batch
 * ("SVB1") is damage. Appends overwrite zeros written ahead (make_room),
 * which readers take for a torn end too; a clean stop cuts them off.
 *
 * The writer holds the database's write lock (an empty BEGIN IMMEDIATE)
 * while it appends, so a row appended by another process never takes a seq
 * the log also uses.
 *
 * Readers in the process that writes read up to the published durable tail;
 * other processes (the offline verify) read every whole record.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "sealvm/audit.h"
#include "sealvm/db.h"
#include "sealvm/file.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "audit_internal.h"

#define LOG_MAGIC 0x31455653u	    /* "SVE1" little endian: a record within its batch */
#define LOG_MAGIC_BATCH 0x31425653u /* "SVB1": the first record of a batch */
#define LOG_DIR AUDIT_LOG_DIR
#define LOG_SEGMENT_BYTES (64u << 20)
static size_t segment_bytes = LOG_SEGMENT_BYTES; /* audit_log_set_segment_bytes: tests */
#define HDR_BYTES (4 + 4 + 8 + 8 + AUDIT_CHAIN_SIZE + 5 * 2 + 4)
#define NULL_FIELD 0xffffu
#define READ_CHUNK (256u << 10)
/*
 * Appends overwrite zeros written ahead, this much at a time: an fdatasync
 * that only overwrites blocks writes no inode (the file's size is unchanged:
 * half the time of one that grows the file here, bench/http_ceiling's log
 * mode), and the file grows, size and all, once per ROOM_BYTES.
 */
#define ROOM_BYTES (1u << 20)
/* A record: header, five fields of at most 64 KiB - 2, the event, the CRC. */
#define RECORD_MAX (HDR_BYTES + 5 * 65534u + AUDIT_EVENT_MAX_BYTES + 4)
_Static_assert(RECORD_MAX == AUDIT_LOG_RECORD_MAX, "the record bound, as audit_internal.h says");

struct audit_log {
	char *dir;
	int dir_fd;    /* holds the flock that makes this process the log's one writer */
	char *db_path; /* sqlite3_db_filename of the database it belongs to */
	int fd;	       /* the current segment, or -1 before the first append */
	int64_t seg_first;
	uint64_t size; /* durable bytes of the current segment */
	uint64_t room; /* the file's length: [size, room) is zeros written ahead */
	bool roomless; /* zeros could not be written ahead (said once) */
	int64_t tail_seq;
	unsigned char tail_chain[AUDIT_CHAIN_SIZE];
	bool broken; /* a failed write could not be undone: every append fails */

	/* The batch being staged (writer thread). */
	char *buf;
	size_t len, cap;
	int64_t stage_seq;
	unsigned char stage_chain[AUDIT_CHAIN_SIZE];
	bool staging;

	/* What readers may read, and the chain value there: guarded by lock. */
	pthread_mutex_t lock;
	struct audit_log_limit pub;
	unsigned char pub_chain[AUDIT_CHAIN_SIZE];
};

void audit_log_set_segment_bytes(size_t n)
{
	segment_bytes = n ? n : LOG_SEGMENT_BYTES;
}

/* ---- the registry: the log this process writes, by database file ---- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct audit_log *registered;

struct audit_log *audit_log_current(void)
{
	pthread_mutex_lock(&registry_lock);
	struct audit_log *log = registered;
	pthread_mutex_unlock(&registry_lock);
	return log;
}

struct audit_log *audit_log_of(sqlite3 *conn)
{
	const char *path = conn ? sqlite3_db_filename(conn, "main") : NULL;
	struct audit_log *log = NULL;
	if (!path || !*path)
		return NULL;
	pthread_mutex_lock(&registry_lock);
	if (registered && strcmp(registered->db_path, path) == 0)
		log = registered;
	pthread_mutex_unlock(&registry_lock);
	return log;
}

/* ---- encoding ---- */

static void put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static uint32_t crc_of(const unsigned char *p, size_t n)
{
	return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

static const char *const *row_fields(const struct audit_row *row, const char *out[5])
{
	out[0] = row->account_id;
	out[1] = row->action;
	out[2] = row->outcome;
	out[3] = row->target_id;
	out[4] = row->initiator_id;
	return out;
}

/* The size of @row encoded, or 0 when a field is too long for the format. */
static size_t encoded_size(const struct audit_row *row)
{
	const char *f[5];
	size_t n = HDR_BYTES + row->event_len + 4;
	row_fields(row, f);
	for (int i = 0; i < 5; i++) {
		size_t l = f[i] ? strlen(f[i]) : 0;
		if (l >= NULL_FIELD)
			return 0;
		n += l;
	}
	return n;
}

static void encode(const struct audit_row *row, bool batch_start, unsigned char *p, size_t n)
{
	const char *f[5];
	row_fields(row, f);
	put32(p, batch_start ? LOG_MAGIC_BATCH : LOG_MAGIC);
	put32(p + 4, (uint32_t)n);
	put64(p + 8, (uint64_t)row->seq);
	put64(p + 16, (uint64_t)row->time_ms);
	memcpy(p + 24, row->chain, AUDIT_CHAIN_SIZE);
	size_t off = HDR_BYTES;
	for (int i = 0; i < 5; i++) {
		size_t l = f[i] ? strlen(f[i]) : 0;
		p[24 + AUDIT_CHAIN_SIZE + 2 * i] = (unsigned char)(f[i] ? l : NULL_FIELD);
		p[24 + AUDIT_CHAIN_SIZE + 2 * i + 1] =
			(unsigned char)((f[i] ? l : NULL_FIELD) >> 8);
		memcpy(p + off, f[i] ? f[i] : "", l);
		off += l;
	}
	put32(p + 24 + AUDIT_CHAIN_SIZE + 10, (uint32_t)row->event_len);
	memcpy(p + off, row->event, row->event_len);
	off += row->event_len;
	put32(p + off, crc_of(p, off));
}

/*
 * Decodes the record at @p (@avail bytes there). Returns its length, 0 when
 * @avail does not hold all of it (or its header), -1 when it is not a whole
 * record (bad magic, length, CRC). Field strings are copied NUL-terminated
 * into @strs (at least RECORD_MAX bytes) and @row points into it and @p.
 */
static bool is_magic(uint32_t m)
{
	return m == LOG_MAGIC || m == LOG_MAGIC_BATCH;
}

static long decode(const unsigned char *p, size_t avail, struct audit_row *row, char *strs)
{
	if (avail < 8)
		return 0;
	uint32_t len = get32(p + 4);
	if (!is_magic(get32(p)) || len < HDR_BYTES + 4 || len > RECORD_MAX)
		return -1;
	if (avail < len)
		return 0;
	if (crc_of(p, len - 4) != get32(p + len - 4))
		return -1;
	uint32_t elen = get32(p + 24 + AUDIT_CHAIN_SIZE + 10);
	size_t off = HDR_BYTES, soff = 0;
	const char *f[5];
	for (int i = 0; i < 5; i++) {
		unsigned l = p[24 + AUDIT_CHAIN_SIZE + 2 * i] |
			     (unsigned)p[24 + AUDIT_CHAIN_SIZE + 2 * i + 1] << 8;
		if (l == NULL_FIELD) {
			f[i] = NULL;
			continue;
		}
		if (off + l > len - 4)
			return -1;
		memcpy(strs + soff, p + off, l);
		strs[soff + l] = 0;
		f[i] = strs + soff;
		soff += l + 1;
		off += l;
	}
	if (off + elen != len - 4)
		return -1;
	*row = (struct audit_row){
		.seq = (int64_t)get64(p + 8),
		.time_ms = (int64_t)get64(p + 16),
		.account_id = f[0],
		.action = f[1],
		.outcome = f[2],
		.target_id = f[3],
		.initiator_id = f[4],
		.chain = p + 24,
		.chain_len = AUDIT_CHAIN_SIZE,
	};
	/* The event text is NUL-terminated in the copy, as SQLite's columns are. */
	memcpy(strs + soff, p + off, elen);
	strs[soff + elen] = 0;
	row->event = strs + soff;
	row->event_len = elen;
	return (long)len;
}

/*
 * Whether the first record of a batch starts, whole, anywhere in @p[1..n).
 * What a crash leaves at the end has none: a record cut short, zeros, and
 * whole records of the same torn batch (pages of one write reach the disk in
 * any order until its fdatasync returns). A damaged or edited record followed
 * by an acknowledged batch has.
 */
static bool later_batch_after(const unsigned char *p, size_t n, char *strs)
{
	for (size_t i = 1; i + 8 <= n; i++) {
		if (get32(p + i) != LOG_MAGIC_BATCH)
			continue;
		struct audit_row row;
		if (decode(p + i, n - i, &row, strs) > 0)
			return true;
	}
	return false;
}

/* ---- segments ---- */

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* The first seqs of the segments in @dir, sorted; *ret_n = 0 (and 0) when there is no dir. */
static int list_segments(const char *dir, int64_t **ret, size_t *ret_n, struct sealvm_err *err)
{
	*ret = NULL;
	*ret_n = 0;
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot list %s: %s", dir,
				      strerror(errno));
	}
	int64_t *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		if (strlen(e->d_name) != 24 || strcmp(e->d_name + 20, ".log") != 0)
			continue;
		long long s = strtoll(e->d_name, &end, 10);
		if (end != e->d_name + 20 || s <= 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			int64_t *nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
			}
			v = nv;
		}
		v[n++] = s;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_i64);
	*ret = v;
	*ret_n = n;
	return 0;
}

static void segment_path(const char *dir, int64_t first, char *out, size_t size)
{
	snprintf(out, size, "%s/%020" PRId64 ".log", dir, first);
}

static char *log_dir_for(const char *db_path)
{
	const char *slash = strrchr(db_path, '/');
	size_t n = slash ? (size_t)(slash - db_path) : 1;
	char *dir = malloc(n + sizeof(LOG_DIR) + 1);
	if (!dir)
		return NULL;
	if (slash)
		memcpy(dir, db_path, n);
	else
		dir[0] = '.';
	dir[n] = '/';
	memcpy(dir + n + 1, LOG_DIR, sizeof(LOG_DIR));
	return dir;
}

/* ---- reading ---- */

struct audit_log_reader {
	char *dir;
	int64_t *segs;
	size_t n_segs, seg; /* next segment to open */
	int fd;
	uint64_t off; /* file offset of buf[0] */
	uint64_t end; /* readable bytes of the open segment */
	unsigned char *buf;
	size_t blen, bpos; /* valid bytes, next record */
	char *strs;
	struct audit_log_limit limit;
	struct audit_log *log; /* this process writes it: limit is its published durable tail */
};

int audit_log_reader_open(sqlite3 *conn, struct audit_log_reader **ret, struct sealvm_err *err)
{
	*ret = NULL;
	const char *path = conn ? sqlite3_db_filename(conn, "main") : NULL;
	if (!path || !*path)
		return 0; /* in memory: no log */
	struct audit_log_reader *r = calloc(1, sizeof(*r));
	if (!r || !(r->dir = log_dir_for(path))) {
		audit_log_reader_close(r);
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory reading the event log");
	}
	r->fd = -1;
	r->log = audit_log_of(conn);
	audit_log_reader_snapshot(r, &r->limit);
	*ret = r;
	return 0;
}

void audit_log_reader_snapshot(struct audit_log_reader *r, struct audit_log_limit *out)
{
	memset(out, 0, sizeof(*out));
	if (r->log) {
		pthread_mutex_lock(&r->log->lock);
		*out = r->log->pub;
		pthread_mutex_unlock(&r->log->lock);
		return;
	}
	/* Another process writes: the last segment and its size stand for the tail. */
	int64_t *segs = NULL;
	size_t n = 0;
	if (list_segments(r->dir, &segs, &n, NULL) == 0 && n) {
		char p[PATH_MAX];
		struct stat st;
		segment_path(r->dir, segs[n - 1], p, sizeof(p));
		out->seg_first = segs[n - 1];
		if (stat(p, &st) == 0)
			out->size = (uint64_t)st.st_size;
	}
	free(segs);
}

bool audit_log_limit_same(const struct audit_log_limit *a, const struct audit_log_limit *b)
{
	return a->seg_first == b->seg_first && a->size == b->size && a->seq == b->seq;
}

void audit_log_reader_set_limit(struct audit_log_reader *r, const struct audit_log_limit *l)
{
	r->limit = *l;
}

void audit_log_reader_close(struct audit_log_reader *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->segs);
	free(r->buf);
	free(r->strs);
	free(r->dir);
	free(r);
}

/* Opens the next segment at or after the one that may hold @after_seq + 1. */
static int open_next(struct audit_log_reader *r, struct sealvm_err *err)
{
	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	if (r->log && !r->limit.seg_first)
		return 0; /* nothing was durable when the limit was taken */
	while (r->seg < r->n_segs) {
		int64_t first = r->segs[r->seg++];
		/* Nothing past the limit's segment is durable yet. */
		if (r->limit.seg_first && first > r->limit.seg_first)
			return 0;
		char p[PATH_MAX];
		segment_path(r->dir, first, p, sizeof(p));
		r->fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (r->fd < 0) {
			if (errno == ENOENT)
				continue; /* removed by retention meanwhile */
			return sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot open %s: %s",
					      p, strerror(errno));
		}
		struct stat st;
		if (fstat(r->fd, &st) < 0)
			return sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot stat %s: %s",
					      p, strerror(errno));
		r->end = (uint64_t)st.st_size;
		if (r->limit.seg_first && first == r->limit.seg_first && r->limit.size < r->end)
			r->end = r->limit.size;
		r->off = 0;
		r->blen = r->bpos = 0;
		return 1;
	}
	return 0;
}

int audit_log_reader_seek(struct audit_log_reader *r, int64_t after_seq, struct sealvm_err *err)
{
	/* The buffers only for a reader that reads (a snapshot alone needs none). */
	if (!r->buf && !(r->buf = malloc(READ_CHUNK + RECORD_MAX)))
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory reading the event log");
	if (!r->strs && !(r->strs = malloc(RECORD_MAX)))
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory reading the event log");
	free(r->segs);
	r->segs = NULL;
	int e = list_segments(r->dir, &r->segs, &r->n_segs, err);
	if (e < 0)
		return e;
	/* The last segment whose first seq is <= after_seq + 1. */
	r->seg = 0;
	for (size_t i = 0; i < r->n_segs; i++)
		if (r->segs[i] <= after_seq + 1)
			r->seg = i;
	if (r->fd >= 0) {
		close(r->fd);
		r->fd = -1;
	}
	return 0;
}

/*
 * At a record that does not decode, at @r->off + @r->bpos of the open
 * segment: the end a crash left (the last segment, no later batch after it,
 * and not below what the writer published as durable) is the end; anything
 * else is damage, -EBADMSG naming where.
 */
static int torn_or_damaged(struct audit_log_reader *r, struct sealvm_err *err)
{
	uint64_t at = r->off + r->bpos;
	int64_t first = r->segs[r->seg - 1];
	bool last = r->seg == r->n_segs || (r->limit.seg_first && first == r->limit.seg_first);
	bool durable = r->log != NULL; /* read up to what the writer published whole */
	if (last && !durable) {
		size_t n = (size_t)(r->end - at);
		unsigned char *rest = malloc(n ? n : 1);
		if (!rest)
			return sealvm_err_set(err, -ENOMEM, NULL, "out of memory reading the log");
		size_t got = 0;
		while (got < n) {
			ssize_t k = pread(r->fd, rest + got, n - got, (off_t)(at + got));
			if (k <= 0)
				break;
			got += (size_t)k;
		}
		bool more = later_batch_after(rest, got, r->strs);
		free(rest);
		if (!more)
			return 0; /* the end a crash left: the end */
	}
	return sealvm_err_set(err, -EBADMSG, "AUDIT_LOG_DAMAGED",
			      "event log segment %020" PRId64 ".log: the record at byte %" PRIu64
			      " is damaged (changed, or cut) and records follow it",
			      first, at);
}

int audit_log_reader_next(struct audit_log_reader *r, struct audit_row *row, struct sealvm_err *err)
{
	for (;;) {
		if (r->fd < 0) {
			int e = open_next(r, err);
			if (e <= 0)
				return e;
		}
		long n = decode(r->buf + r->bpos, r->blen - r->bpos, row, r->strs);
		if (n > 0) {
			r->bpos += (size_t)n;
			if (r->limit.seq && row->seq > r->limit.seq)
				return 0; /* past the durable tail */
			return 1;
		}
		uint64_t have = r->off + r->blen;
		if (n == 0 && have < r->end) {
			/* Keep the partial record, read more after it. */
			memmove(r->buf, r->buf + r->bpos, r->blen - r->bpos);
			r->off += r->bpos;
			r->blen -= r->bpos;
			r->bpos = 0;
			size_t want = READ_CHUNK + RECORD_MAX - r->blen;
			if (want > r->end - have)
				want = (size_t)(r->end - have);
			ssize_t got = pread(r->fd, r->buf + r->blen, want, (off_t)have);
			if (got < 0)
				return sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR",
						      "cannot read the event log: %s",
						      strerror(errno));
			if (got == 0)
				r->end = have;
			r->blen += (size_t)got;
			continue;
		}
		/* The end of this segment, or what is left is not a whole record. */
		if (r->bpos < r->blen || have < r->end) {
			int e = torn_or_damaged(r, err);
			if (e < 0)
				return e;
		}
		close(r->fd);
		r->fd = -1;
	}
}

/* ---- writing ---- */

/* Publishes the durable tail for readers. */
static void publish(struct audit_log *log)
{
	pthread_mutex_lock(&log->lock);
	log->pub.seg_first = log->seg_first;
	log->pub.size = log->size;
	log->pub.seq = log->tail_seq;
	memcpy(log->pub_chain, log->tail_chain, AUDIT_CHAIN_SIZE);
	pthread_mutex_unlock(&log->lock);
}

size_t audit_log_walk(const unsigned char *buf, size_t n, char *strs, audit_row_fn fn,
		      void *userdata, bool *ret_damaged)
{
	size_t pos = 0;
	for (;;) {
		struct audit_row row;
		long k = decode(buf + pos, n - pos, &row, strs);
		if (k <= 0)
			break;
		pos += (size_t)k;
		if (fn && fn(&row, userdata) != 0)
			break;
	}
	*ret_damaged = pos < n && later_batch_after(buf + pos, n - pos, strs);
	return pos;
}

struct walk_tail {
	struct audit_log *log;
	bool found;
};

static int take_tail(const struct audit_row *row, void *userdata)
{
	struct walk_tail *t = userdata;
	t->log->tail_seq = row->seq;
	memcpy(t->log->tail_chain, row->chain, AUDIT_CHAIN_SIZE);
	t->found = true;
	return 0;
}

/*
 * Scans the segment @first for its last whole record; cuts a torn end off
 * (when @repair). Sets *ret_size, and the log's tail when a record was found.
 */
static int scan_segment(struct audit_log *log, int64_t first, bool repair, uint64_t *ret_size,
			bool *ret_found, struct sealvm_err *err)
{
	char p[PATH_MAX];
	segment_path(log->dir, first, p, sizeof(p));
	int fd = open(p, (repair ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot open %s: %s", p,
				      strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return sealvm_err_set(err, e, "AUDIT_LOG_ERROR", "cannot stat %s", p);
	}
	unsigned char *buf = malloc((size_t)st.st_size + 1);
	char *strs = malloc(RECORD_MAX);
	if (!buf || !strs) {
		free(buf);
		free(strs);
		close(fd);
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory reading %s", p);
	}
	size_t have = 0;
	while (have < (size_t)st.st_size) {
		ssize_t got = pread(fd, buf + have, (size_t)st.st_size - have, (off_t)have);
		if (got <= 0)
			break;
		have += (size_t)got;
	}
	struct walk_tail t = {.log = log};
	bool damaged = false;
	size_t pos = audit_log_walk(buf, have, strs, take_tail, &t, &damaged);
	*ret_found = t.found;
	int r = 0;
	if (damaged) {
		/* Not what a crash leaves: an append never lands in the middle. */
		r = sealvm_err_set(
			err, -EBADMSG, "AUDIT_LOG_DAMAGED",
			"event log %s: the record at byte %zu is damaged (changed, or cut) "
			"and records follow it; run 'sealvm events verify --data-dir' and "
			"keep the data dir for investigation",
			p, pos);
	} else if (pos < have) {
		if (repair) {
			size_t torn = have - pos; /* up to the last byte that is not zero */
			while (torn > 0 && buf[pos + torn - 1] == 0)
				torn--;
			if (torn)
				log_warning("audit log %s: cut off %zu bytes after the last whole "
					    "record (an append that a crash cut short; %zu of them "
					    "zeros)",
					    p, have - pos, have - pos - torn);
			else
				log_info("audit log %s: cut off %zu zeros written ahead (the "
					 "server did not stop cleanly)",
					 p, have - pos);
			if (ftruncate(fd, (off_t)pos) < 0 || fsync(fd) < 0)
				r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR",
						   "cannot repair %s: %s", p, strerror(errno));
		}
	}
	*ret_size = pos;
	free(buf);
	free(strs);
	close(fd);
	return r;
}

static int open_tail(struct audit_log *log, struct sealvm_err *err)
{
	int64_t *segs = NULL;
	size_t n = 0;
	int r = list_segments(log->dir, &segs, &n, err);
	if (r < 0)
		return r;
	while (n > 0) {
		uint64_t size = 0;
		bool found = false;
		r = scan_segment(log, segs[n - 1], true, &size, &found, err);
		if (r < 0)
			break;
		if (found) {
			char p[PATH_MAX];
			segment_path(log->dir, segs[n - 1], p, sizeof(p));
			log->fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
			if (log->fd < 0) {
				r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR",
						   "cannot open %s: %s", p, strerror(errno));
				break;
			}
			log->seg_first = segs[n - 1];
			log->size = log->room = size;
			break;
		}
		/* An empty segment (created, then a crash): it never held anything. */
		char p[PATH_MAX];
		segment_path(log->dir, segs[n - 1], p, sizeof(p));
		if (unlink(p) < 0) {
			r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot remove %s: %s",
					   p, strerror(errno));
			break;
		}
		n--;
	}
	free(segs);
	return r;
}

int audit_log_files_tail(sqlite3 *conn, int64_t *ret_seq, unsigned char ret_chain[AUDIT_CHAIN_SIZE],
			 struct sealvm_err *err)
{
	*ret_seq = 0;
	struct audit_log *log = audit_log_of(conn);
	if (log) {
		pthread_mutex_lock(&log->lock);
		*ret_seq = log->pub.seq;
		memcpy(ret_chain, log->pub_chain, AUDIT_CHAIN_SIZE);
		pthread_mutex_unlock(&log->lock);
		return 0;
	}
	const char *path = conn ? sqlite3_db_filename(conn, "main") : NULL;
	if (!path || !*path)
		return 0;
	struct audit_log tmp = {.fd = -1};
	tmp.dir = log_dir_for(path);
	if (!tmp.dir)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	int64_t *segs = NULL;
	size_t n = 0;
	int r = list_segments(tmp.dir, &segs, &n, err);
	while (r >= 0 && n > 0) {
		uint64_t size;
		bool found;
		r = scan_segment(&tmp, segs[--n], false, &size, &found, err);
		if (r >= 0 && found) {
			*ret_seq = tmp.tail_seq;
			memcpy(ret_chain, tmp.tail_chain, AUDIT_CHAIN_SIZE);
			break;
		}
	}
	free(segs);
	free(tmp.dir);
	return r;
}

static int log_begin(void *ctx, sqlite3 *conn, struct sealvm_err *err)
{
	struct audit_log *log = ctx;
	if (log->broken)
		return sealvm_err_set(err, -EIO, "AUDIT_LOG_BROKEN",
				      "the event log could not be repaired after a failed write; "
				      "restart the server");
	int64_t seq;
	unsigned char chain[AUDIT_CHAIN_SIZE];
	int r = audit_store_last(conn, &seq, chain, err); /* rows and log: the higher */
	if (r < 0)
		return r;
	log->stage_seq = seq;
	memcpy(log->stage_chain, chain, AUDIT_CHAIN_SIZE);
	log->len = 0;
	log->staging = true;
	return 0;
}

int audit_log_stage(struct audit_log *log, const struct audit_row *row, struct sealvm_err *err)
{
	if (!log->staging)
		return sealvm_err_set(err, -EINVAL, "AUDIT_NO_TRANSACTION",
				      "events go to the log only inside a log batch");
	size_t n = encoded_size(row);
	if (n == 0)
		return sealvm_err_set(err, -E2BIG, "AUDIT_EVENT_INVALID",
				      "an audit event field is too long for the log");
	if (log->len + n > log->cap) {
		size_t cap = MAX(log->cap * 2, log->len + n);
		char *b = realloc(log->buf, cap);
		if (!b)
			return sealvm_err_set(err, -ENOMEM, NULL,
					      "out of memory for the event log");
		log->buf = b;
		log->cap = cap;
	}
	encode(row, log->len == 0, (unsigned char *)log->buf + log->len, n);
	log->len += n;
	log->stage_seq = row->seq;
	memcpy(log->stage_chain, row->chain, AUDIT_CHAIN_SIZE);
	return 0;
}

void audit_log_staged_head(struct audit_log *log, int64_t *seq,
			   unsigned char chain[AUDIT_CHAIN_SIZE])
{
	*seq = log->stage_seq;
	memcpy(chain, log->stage_chain, AUDIT_CHAIN_SIZE);
}

/* A new segment whose first record is @first: created, synced, its directory synced. */
static int new_segment(struct audit_log *log, int64_t first, struct sealvm_err *err)
{
	char p[PATH_MAX];
	segment_path(log->dir, first, p, sizeof(p));
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot create %s: %s", p,
				      strerror(errno));
	if (fsync(log->dir_fd) < 0) {
		int e = -errno;
		close(fd);
		unlink(p);
		return sealvm_err_set(err, e, "AUDIT_LOG_ERROR", "cannot sync %s: %s", log->dir,
				      strerror(-e));
	}
	if (log->fd >= 0)
		close(log->fd);
	log->fd = fd;
	log->seg_first = first;
	log->size = log->room = 0;
	return 0;
}

/* Gives back the zeros written ahead of the current segment's end (before it is left). */
static int drop_room(struct audit_log *log, struct sealvm_err *err)
{
	if (log->fd < 0 || log->room <= log->size)
		return 0;
	if (ftruncate(log->fd, (off_t)log->size) < 0 || fsync(log->fd) < 0)
		return sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR",
				      "cannot end the event log segment %020" PRId64 ".log: %s",
				      log->seg_first, strerror(errno));
	log->room = log->size;
	return 0;
}

/*
 * Writes zeros ahead so that the next @need bytes overwrite blocks (synced
 * with the batch). Only a speed-up: when the disk cannot take them (full),
 * the batch grows the file itself, and fails only if it does not fit either.
 */
static void make_room(struct audit_log *log, uint64_t need)
{
	static const char zeros[64u << 10];
	uint64_t want = log->size + need;
	if (want <= log->room)
		return;
	uint64_t from = MAX(log->room, want); /* the batch itself overwrites [room, want) */
	uint64_t to = MIN(want + ROOM_BYTES, MAX((uint64_t)segment_bytes, want));
	while (from < to) {
		size_t n = (size_t)MIN((uint64_t)sizeof(zeros), to - from);
		ssize_t w = pwrite(log->fd, zeros, n, (off_t)from);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!log->roomless)
				log_warning("audit log: cannot write zeros ahead (%s); appending "
					    "without them",
					    w < 0 ? strerror(errno) : "short write");
			log->roomless = true;
			break;
		}
		from += (uint64_t)w;
	}
	if (from >= to)
		log->roomless = false;
	log->room = from;
}

static int log_commit(void *ctx, struct sealvm_err *err)
{
	struct audit_log *log = ctx;
	log->staging = false;
	if (log->len == 0)
		return 0;
	int64_t first = (int64_t)get64((unsigned char *)log->buf + 8);
	int r = 0;
	if (log->fd < 0 || (log->size > 0 && log->size + log->len > segment_bytes)) {
		r = drop_room(log, err);
		if (r == 0)
			r = new_segment(log, first, err);
	}
	if (r == 0)
		make_room(log, log->len);
	size_t done = 0;
	while (r == 0 && done < log->len) {
		ssize_t w = pwrite(log->fd, log->buf + done, log->len - done,
				   (off_t)(log->size + done));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR",
					   "cannot write the event log: %s", strerror(errno));
		}
		done += w > 0 ? (size_t)w : 0;
	}
	if (r == 0 && fdatasync(log->fd) < 0)
		r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot sync the event log: %s",
				   strerror(errno));
	if (r < 0) {
		/* Nothing of the batch was acknowledged: take back whatever reached the file. */
		if (log->fd >= 0 &&
		    (ftruncate(log->fd, (off_t)log->size) < 0 || fsync(log->fd) < 0)) {
			log_error("audit log: cannot undo a failed append (%s); refusing further "
				  "appends until a restart",
				  strerror(errno));
			log->broken = true;
		}
		log->room = log->size;
		log->len = 0;
		return r;
	}
	log->size += log->len;
	log->tail_seq = log->stage_seq;
	memcpy(log->tail_chain, log->stage_chain, AUDIT_CHAIN_SIZE);
	log->len = 0;
	publish(log);
	if (log->cap > (4u << 20)) { /* one huge batch does not pin its buffer */
		free(log->buf);
		log->buf = NULL;
		log->cap = 0;
	}
	return 0;
}

static void log_abort(void *ctx)
{
	struct audit_log *log = ctx;
	log->staging = false;
	log->len = 0;
}

int audit_log_open(struct sealvm_db *db, struct audit_log **ret, struct sealvm_err *err)
{
	*ret = NULL;
	sqlite3 *probe = db_read_begin(db);
	const char *path = probe ? sqlite3_db_filename(probe, "main") : NULL;
	char *db_path = path && *path ? strdup(path) : NULL;
	db_read_end(db, probe);
	if (!path || !*path)
		return sealvm_err_set(err, -EINVAL, "AUDIT_LOG_ERROR",
				      "the event log needs a database file");
	struct audit_log *log = calloc(1, sizeof(*log));
	if (!log) {
		free(db_path);
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	}
	log->fd = -1;
	log->dir_fd = -1;
	pthread_mutex_init(&log->lock, NULL);
	log->db_path = db_path;
	log->dir = log_dir_for(path);
	int r = 0;
	if (!log->db_path || !log->dir)
		r = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	if (r == 0 && mkdir(log->dir, 0700) < 0 && errno != EEXIST)
		r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot create %s: %s", log->dir,
				   strerror(errno));
	if (r == 0) {
		r = sealvm_fsync_parent_dir(log->dir);
		if (r < 0)
			sealvm_err_set(err, r, "AUDIT_LOG_ERROR", "cannot sync the parent of %s",
				       log->dir);
	}
	if (r == 0) {
		log->dir_fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (log->dir_fd < 0)
			r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot open %s: %s",
					   log->dir, strerror(errno));
		else if (flock(log->dir_fd, LOCK_EX | LOCK_NB) < 0)
			r = sealvm_err_set(err, errno == EWOULDBLOCK ? -EBUSY : -errno,
					   "AUDIT_LOG_BUSY",
					   "another process writes the event log in %s", log->dir);
	}
	if (r == 0)
		r = open_tail(log, err);
	if (r == 0) {
		pthread_mutex_lock(&registry_lock);
		if (registered)
			r = sealvm_err_set(err, -EBUSY, "AUDIT_LOG_ERROR",
					   "this process already writes an event log");
		else
			registered = log;
		pthread_mutex_unlock(&registry_lock);
	}
	if (r < 0) {
		audit_log_close(log);
		return r;
	}
	publish(log);
	struct db_log_ops ops = {
		.begin = log_begin,
		.commit = log_commit,
		.abort = log_abort,
		.ctx = log,
	};
	db_set_log(db, &ops);
	*ret = log;
	return 0;
}

void audit_log_close(struct audit_log *log)
{
	if (!log)
		return;
	pthread_mutex_lock(&registry_lock);
	if (registered == log)
		registered = NULL;
	pthread_mutex_unlock(&registry_lock);
	struct sealvm_err err = SEALVM_ERR_INIT;
	if (drop_room(log, &err) < 0)
		log_warning("%s (the zeros left are cut off at the next start)", err.message);
	if (log->fd >= 0)
		close(log->fd);
	if (log->dir_fd >= 0)
		close(log->dir_fd); /* and with it the lock */
	pthread_mutex_destroy(&log->lock);
	free(log->buf);
	free(log->dir);
	free(log->db_path);
	free(log);
}

int audit_log_drop_through(sqlite3 *conn, int64_t through_seq, struct sealvm_err *err)
{
	const char *path = conn ? sqlite3_db_filename(conn, "main") : NULL;
	if (!path || !*path)
		return 0;
	_cleanup_free_ char *dir = log_dir_for(path);
	if (!dir)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	int64_t *segs = NULL;
	size_t n = 0;
	int r = list_segments(dir, &segs, &n, err);
	int dropped = 0;
	/* A segment ends where the next begins; the last one is never dropped. */
	for (size_t i = 0; r >= 0 && i + 1 < n; i++) {
		if (segs[i + 1] - 1 > through_seq)
			break;
		char p[PATH_MAX];
		segment_path(dir, segs[i], p, sizeof(p));
		if (unlink(p) < 0 && errno != ENOENT)
			r = sealvm_err_set(err, -errno, "AUDIT_LOG_ERROR", "cannot remove %s: %s",
					   p, strerror(errno));
		else
			dropped++;
	}
	free(segs);
	if (r >= 0 && dropped) {
		char p[PATH_MAX];
		segment_path(dir, 0, p, sizeof(p)); /* any name in it: the directory is synced */
		(void)sealvm_fsync_parent_dir(p);
	}
	return r < 0 ? r : dropped;
}
