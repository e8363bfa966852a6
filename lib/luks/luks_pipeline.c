// SPDX-License-Identifier: Apache-2.0
/*
 * luks_pipeline.c — the streaming engine shared by encrypt and decrypt.
 *
 * One reader thread fills chunks in stream order, N worker threads run
 * AES-XTS on whichever filled chunk is next, and in order the calling thread
 * writes each finished chunk while one hasher thread feeds the same chunk to
 * SHA-256 (writing and hashing overlap: a chunk is recycled once both are
 * done with it). Chunks live in a ring of a few more slots than workers, so
 * memory stays bounded (at most LUKS_MAX_SLOTS * LUKS_CHUNK_SIZE) whatever
 * the size of the image. One mutex and one condition variable guard the ring:
 * at 4 MiB per chunk that is a few hundred hand-offs a second, far from
 * contention. The first error is sticky: it stops every thread at its next
 * hand-off and is the one reported. The buffers may hold plaintext: they are
 * excluded from core dumps and wiped before they are unmapped, on every path.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "sealvm/file.h"
#include "sealvm/log.h"
#include "sealvm/secret.h"

#include "luks_internal.h"

enum slot_state {
	SLOT_FREE = 0,
	SLOT_READING,
	SLOT_FILLED,
	SLOT_WORKING,
	SLOT_DONE, /* being written and hashed */
};

struct slot {
	unsigned char *buf;
	uint64_t seq;
	size_t len;
	enum slot_state state;
	bool written;
	bool hashed;
};

struct pipe {
	const struct luks_pipeline_params *p;
	pthread_mutex_t lock;
	pthread_cond_t cond;

	unsigned char *mem;
	size_t mem_len;
	struct slot *slots;
	unsigned n_slots;
	uint64_t n_chunks;
	uint64_t next_work; /* next chunk a worker may claim */

	bool failed;
	int rc;
	struct sealvm_err err;
};

static uint64_t chunk_off(uint64_t seq)
{
	return seq * LUKS_CHUNK_SIZE;
}

static size_t chunk_len(const struct pipe *pp, uint64_t seq)
{
	return (size_t)MIN((uint64_t)LUKS_CHUNK_SIZE, pp->p->total - chunk_off(seq));
}

static struct slot *slot_of(struct pipe *pp, uint64_t seq)
{
	return &pp->slots[seq % pp->n_slots];
}

/* Records the first failure and wakes everyone. Called with the lock held. */
static void pipe_fail_locked(struct pipe *pp, int rc, const struct sealvm_err *e)
{
	if (!pp->failed) {
		pp->failed = true;
		pp->rc = rc < 0 ? rc : -EIO;
		if (e && sealvm_err_isset(e))
			pp->err = *e;
		else
			sealvm_err_set(&pp->err, pp->rc, NULL,
				       "%s: internal failure of the LUKS pipeline",
				       pp->p->out_name);
	}
	pthread_cond_broadcast(&pp->cond);
}

static void pipe_fail(struct pipe *pp, int rc, const struct sealvm_err *e)
{
	pthread_mutex_lock(&pp->lock);
	pipe_fail_locked(pp, rc, e);
	pthread_mutex_unlock(&pp->lock);
}

/* A chunk that both the writer and the hasher are done with goes back to the reader. */
static void slot_release_locked(struct pipe *pp, struct slot *s)
{
	if (s->written && s->hashed) {
		s->state = SLOT_FREE;
		s->written = s->hashed = false;
	}
	pthread_cond_broadcast(&pp->cond);
}

/* Waits until chunk @seq is DONE; false when the pipeline failed meanwhile. Lock held. */
static bool wait_done_locked(struct pipe *pp, uint64_t seq)
{
	struct slot *s = slot_of(pp, seq);
	while (!pp->failed && !(s->state == SLOT_DONE && s->seq == seq))
		pthread_cond_wait(&pp->cond, &pp->lock);
	return !pp->failed;
}

static void *reader_main(void *arg)
{
	struct pipe *pp = arg;

	for (uint64_t seq = 0; seq < pp->n_chunks; seq++) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		struct slot *s = slot_of(pp, seq);
		int r;

		pthread_mutex_lock(&pp->lock);
		while (!pp->failed && s->state != SLOT_FREE)
			pthread_cond_wait(&pp->cond, &pp->lock);
		if (pp->failed) {
			pthread_mutex_unlock(&pp->lock);
			break;
		}
		s->state = SLOT_READING;
		s->seq = seq;
		s->len = chunk_len(pp, seq);
		pthread_mutex_unlock(&pp->lock);

		r = pp->p->read(pp->p->read_userdata, chunk_off(seq), s->buf, s->len, &e);

		pthread_mutex_lock(&pp->lock);
		if (r < 0)
			pipe_fail_locked(pp, r, &e);
		else
			s->state = SLOT_FILLED;
		pthread_cond_broadcast(&pp->cond);
		pthread_mutex_unlock(&pp->lock);
		if (r < 0)
			break;
	}
	return NULL;
}

static void *worker_main(void *arg)
{
	struct pipe *pp = arg;
	const struct luks_pipeline_params *p = pp->p;
	struct luks_xts x;
	int r;

	r = luks_xts_init(&x, p->key->data, p->key->len, p->encrypt, p->sector_size, p->iv_offset,
			  p->plain64);
	if (r < 0) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		if (r == -EINVAL)
			sealvm_err_set(
				&e, r, "UNSUPPORTED_KEY",
				"%s: OpenSSL refuses this AES-XTS key (its two halves are equal): it cannot be used to %s",
				p->out_name, p->encrypt ? "encrypt" : "decrypt");
		else
			sealvm_err_set(&e, r, NULL, "%s: cannot set up AES-XTS", p->out_name);
		pipe_fail(pp, r, &e);
		return NULL;
	}

	pthread_mutex_lock(&pp->lock);
	for (;;) {
		struct slot *s;

		while (!pp->failed && pp->next_work < pp->n_chunks &&
		       !(slot_of(pp, pp->next_work)->state == SLOT_FILLED &&
			 slot_of(pp, pp->next_work)->seq == pp->next_work))
			pthread_cond_wait(&pp->cond, &pp->lock);
		if (pp->failed || pp->next_work >= pp->n_chunks)
			break;
		s = slot_of(pp, pp->next_work);
		s->state = SLOT_WORKING;
		pp->next_work++;
		pthread_mutex_unlock(&pp->lock);

		r = luks_xts_run(&x, chunk_off(s->seq), s->buf, s->len);

		pthread_mutex_lock(&pp->lock);
		if (r < 0) {
			struct sealvm_err e = SEALVM_ERR_INIT;
			sealvm_err_set(&e, r, "CRYPTO_FAILED",
				       "%s: AES-XTS failed at payload offset %llu", p->out_name,
				       (unsigned long long)chunk_off(s->seq));
			pipe_fail_locked(pp, r, &e);
			break;
		}
		s->state = SLOT_DONE;
		pthread_cond_broadcast(&pp->cond);
	}
	pthread_mutex_unlock(&pp->lock);
	luks_xts_done(&x);
	return NULL;
}

static void *hasher_main(void *arg)
{
	struct pipe *pp = arg;

	for (uint64_t seq = 0; seq < pp->n_chunks; seq++) {
		struct slot *s = slot_of(pp, seq);
		bool ok;

		pthread_mutex_lock(&pp->lock);
		ok = wait_done_locked(pp, seq);
		pthread_mutex_unlock(&pp->lock);
		if (!ok)
			break;

		ok = EVP_DigestUpdate(pp->p->sha, s->buf, s->len) == 1;

		pthread_mutex_lock(&pp->lock);
		if (!ok)
			pipe_fail_locked(pp, -EIO, NULL);
		s->hashed = true;
		slot_release_locked(pp, s);
		pthread_mutex_unlock(&pp->lock);
		if (!ok)
			break;
	}
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The calling thread: writes chunks in order and reports progress. */
static void writer_run(struct pipe *pp)
{
	const struct luks_pipeline_params *p = pp->p;
	uint64_t last_progress = 0;

	for (uint64_t seq = 0; seq < pp->n_chunks; seq++) {
		struct slot *s = slot_of(pp, seq);
		uint64_t off = p->out_offset + chunk_off(seq);
		bool ok;
		int r;

		pthread_mutex_lock(&pp->lock);
		ok = wait_done_locked(pp, seq);
		pthread_mutex_unlock(&pp->lock);
		if (!ok)
			return;

		r = sealvm_pwrite_all(p->out_fd, s->buf, s->len, off);
		if (r >= 0)
			/*
			 * Start the disk write now instead of leaving it all to
			 * the final fsync: the device works while we compute.
			 */
			(void)sync_file_range(p->out_fd, (off64_t)off, (off64_t)s->len,
					      SYNC_FILE_RANGE_WRITE);

		pthread_mutex_lock(&pp->lock);
		if (r < 0) {
			struct sealvm_err e = SEALVM_ERR_INIT;
			luks_write_error(&e, r, p->out_name);
			pipe_fail_locked(pp, r, &e);
		}
		s->written = true;
		slot_release_locked(pp, s);
		pthread_mutex_unlock(&pp->lock);
		if (r < 0)
			return;

		if (p->progress && seq + 1 < pp->n_chunks) {
			uint64_t t = now_ms();
			if (t - last_progress >= 200) {
				last_progress = t;
				p->progress(chunk_off(seq) + s->len, p->total,
					    p->progress_userdata);
			}
		}
	}
	if (p->progress)
		p->progress(p->total, p->total, p->progress_userdata);
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static int thread_start(pthread_t *t, void *(*fn)(void *), struct pipe *pp)
{
	sigset_t all, old;
	int r;

	/* Signals belong to the calling thread (the CLI's handlers, SIGXFSZ on the writer). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(t, NULL, fn, pp);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -r;
}

int luks_pipeline_run(const struct luks_pipeline_params *p, struct sealvm_err *err)
{
	struct pipe pp = {
		.p = p,
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	pthread_t reader, hasher, workers[LUKS_MAX_THREADS];
	bool reader_started = false, hasher_started = false;
	unsigned n_workers, n_started = 0;
	int r;

	if (p->total % p->sector_size)
		return sealvm_err_set(err, -EINVAL, NULL, "%s: payload is not whole sectors",
				      p->out_name);
	pp.n_chunks = DIV_ROUND_UP(p->total, (uint64_t)LUKS_CHUNK_SIZE);
	if (pp.n_chunks == 0) {
		if (p->progress)
			p->progress(0, 0, p->progress_userdata);
		return 0;
	}

	/* By default leave one CPU to the reader, writer and hasher, which have work too. */
	n_workers = p->threads ? p->threads : MAX(online_cpus(), 2u) - 1;
	n_workers = MIN(n_workers, LUKS_MAX_THREADS);
	/* Reader, writer and hasher each hold a chunk, plus one spare to keep the reader ahead. */
	pp.n_slots = MIN(n_workers + 4, LUKS_MAX_SLOTS);
	if ((uint64_t)pp.n_slots > pp.n_chunks + 1)
		pp.n_slots = (unsigned)pp.n_chunks + 1;
	if (pp.n_slots < 2)
		pp.n_slots = 2;

	pp.mem_len = (size_t)pp.n_slots * LUKS_CHUNK_SIZE;
	pp.mem = mmap(NULL, pp.mem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (pp.mem == MAP_FAILED)
		return sealvm_err_set(err, -ENOMEM, NULL, "%s: cannot allocate %zu MiB of buffers",
				      p->out_name, pp.mem_len >> 20);
	(void)madvise(pp.mem, pp.mem_len, MADV_DONTDUMP);
	pp.slots = calloc(pp.n_slots, sizeof(*pp.slots));
	if (!pp.slots) {
		munmap(pp.mem, pp.mem_len);
		return sealvm_err_set(err, -ENOMEM, NULL, "%s: out of memory", p->out_name);
	}
	for (unsigned i = 0; i < pp.n_slots; i++)
		pp.slots[i].buf = pp.mem + (size_t)i * LUKS_CHUNK_SIZE;

	log_debug("%s: %llu bytes in %llu chunks, %u workers, %u slots", p->out_name,
		  (unsigned long long)p->total, (unsigned long long)pp.n_chunks, n_workers,
		  pp.n_slots);

	r = thread_start(&reader, reader_main, &pp);
	reader_started = r == 0;
	if (r == 0) {
		r = thread_start(&hasher, hasher_main, &pp);
		hasher_started = r == 0;
	}
	for (unsigned i = 0; r == 0 && i < n_workers; i++) {
		r = thread_start(&workers[i], worker_main, &pp);
		if (r == 0)
			n_started++;
	}
	if (r < 0) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		sealvm_err_set_errno(&e, r, NULL, "%s: cannot start threads", p->out_name);
		pipe_fail(&pp, r, &e);
	} else {
		writer_run(&pp);
	}

	if (reader_started)
		pthread_join(reader, NULL);
	if (hasher_started)
		pthread_join(hasher, NULL);
	for (unsigned i = 0; i < n_started; i++)
		pthread_join(workers[i], NULL);

	/* Plaintext was here (the input of encrypt, the output of decrypt). */
	OPENSSL_cleanse(pp.mem, pp.mem_len);
	munmap(pp.mem, pp.mem_len);
	free(pp.slots);
	pthread_mutex_destroy(&pp.lock);
	pthread_cond_destroy(&pp.cond);

	if (pp.failed) {
		if (err && !sealvm_err_isset(err))
			*err = pp.err;
		return pp.rc;
	}
	return 0;
}

int luks_write_error(struct sealvm_err *err, int r, const char *path)
{
	if (r == -ENOSPC || r == -EDQUOT)
		return sealvm_err_set(
			err, -ENOSPC, "NO_SPACE",
			"no space left to write %s: free some space or write it elsewhere", path);
	if (r == -EFBIG)
		return sealvm_err_set(
			err, -EFBIG, "FILE_TOO_LARGE",
			"%s would exceed the file size limit (ulimit -f) or the file system's maximum file size",
			path);
	return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot write %s", path);
}
