// SPDX-License-Identifier: Apache-2.0
/*
 * secret.c — locked, wiped-on-free memory for key material (see secret.h).
 *
 * Secrets live in anonymous mappings that are mlock'ed, kept out of core
 * dumps and out of forked children, and wiped with OPENSSL_cleanse when
 * freed. A large secret is its own mapping, unmapped when freed. Small ones
 * (the struct, up to SLOT_MAX bytes with it: DEKs, their base64 texts,
 * passphrases, tokens) come from a pool of slots carved out of 64 KiB
 * mappings with the same protections: mapping, locking and unmapping a page
 * per secret costs several system calls and a TLB shootdown across threads,
 * and the key service takes a few secrets per request. Pool mappings are
 * never returned (their number is bounded by the peak of live secrets); a
 * freed slot is wiped before it goes back on its free list. This file must
 * never print or log a secret's bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "sealvm/log.h"
#include "sealvm/secret.h"

static size_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);
	return p > 0 ? (size_t)p : 4096;
}

static bool warned;

static void protect(void *p, size_t len, bool *ret_locked)
{
	(void)madvise(p, len, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
	(void)madvise(p, len, MADV_WIPEONFORK);
#endif
	*ret_locked = mlock(p, len) == 0;
	if (!*ret_locked && !warned) {
		warned = true;
		log_debug(
			"could not lock secret memory (RLIMIT_MEMLOCK); it is still wiped and not dumped");
	}
}

/* ---- the pool of small secrets ---- */

#define SLOT_CLASSES 2
#define SLOT_MAX 1024u
#define CHUNK_BYTES (64u * 1024)

static const size_t slot_size[SLOT_CLASSES] = {256, SLOT_MAX};

struct slot_free {
	struct slot_free *next;
};

static struct {
	pthread_mutex_t lock;
	struct slot_free *free;
} pool[SLOT_CLASSES] = {
	{PTHREAD_MUTEX_INITIALIZER, NULL},
	{PTHREAD_MUTEX_INITIALIZER, NULL},
};

/*
 * The class for a secret of @cap bytes, or -1 when it gets a mapping of its
 * own. Sanitizer builds give every secret its own mapping: a use after free
 * then faults on the unmapped page instead of reading a wiped, reused slot.
 */
static int slot_class(size_t cap)
{
#if defined(__SANITIZE_ADDRESS__)
	(void)cap;
	return -1;
#endif
	size_t need = sizeof(struct sealvm_secret) + cap + 1;
	for (int c = 0; c < SLOT_CLASSES; c++)
		if (need <= slot_size[c])
			return c;
	return -1;
}

/* A zeroed slot of class @c, and whether its chunk is locked; NULL when out of memory. */
static void *slot_get(int c, bool *ret_locked)
{
	pthread_mutex_lock(&pool[c].lock);
	if (!pool[c].free) {
		void *p = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			pthread_mutex_unlock(&pool[c].lock);
			return NULL;
		}
		bool locked;
		protect(p, CHUNK_BYTES, &locked);
		/* The lock state of a chunk is noted in each slot's struct when handed out. */
		for (size_t off = 0; off + slot_size[c] <= CHUNK_BYTES; off += slot_size[c]) {
			struct slot_free *f = (struct slot_free *)((char *)p + off);
			f->next = pool[c].free;
			pool[c].free = f;
			((struct sealvm_secret *)f)->locked = locked;
		}
	}
	struct slot_free *f = pool[c].free;
	pool[c].free = f->next;
	pthread_mutex_unlock(&pool[c].lock);
	*ret_locked = ((struct sealvm_secret *)f)->locked;
	memset(f, 0, slot_size[c]);
	return f;
}

static void slot_put(int c, void *p)
{
	struct sealvm_secret *s = p;
	bool locked = s->locked;
	OPENSSL_cleanse(p, slot_size[c]);
	s->locked = locked;
	pthread_mutex_lock(&pool[c].lock);
	((struct slot_free *)p)->next = pool[c].free;
	pool[c].free = p;
	pthread_mutex_unlock(&pool[c].lock);
}

int sealvm_secret_new(size_t cap, struct sealvm_secret **ret)
{
	struct sealvm_secret *s;
	size_t maplen;

	if (cap > SEALVM_SECRET_MAX)
		return -E2BIG;
	int c = slot_class(cap);
	if (c >= 0) {
		bool locked;
		s = slot_get(c, &locked);
		if (!s)
			return -ENOMEM;
		s->locked = locked;
		s->data = (unsigned char *)s + sizeof(*s);
		s->len = 0;
		s->cap = cap;
		*ret = s;
		return 0;
	}
	/* The struct sits at the start of the mapping: the length is locked too. */
	maplen = ALIGN_UP(sizeof(*s) + cap + 1, page_size());
	void *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	s = p;
	protect(p, maplen, &s->locked);
	s->data = (unsigned char *)p + sizeof(*s);
	s->len = 0;
	s->cap = cap;
	*ret = s;
	return 0;
}

int sealvm_secret_random(size_t len, struct sealvm_secret **ret)
{
	struct sealvm_secret *s;
	int r = sealvm_secret_new(len, &s);
	if (r < 0)
		return r;
	if (RAND_priv_bytes(s->data, (int)len) != 1) {
		sealvm_secret_free(s);
		return -EIO;
	}
	s->len = len;
	*ret = s;
	return 0;
}

int sealvm_secret_from(const void *src, size_t len, struct sealvm_secret **ret)
{
	struct sealvm_secret *s;
	int r = sealvm_secret_new(len, &s);
	if (r < 0)
		return r;
	memcpy(s->data, src, len);
	s->len = len;
	*ret = s;
	return 0;
}

int sealvm_secret_read_file(const char *path, size_t max, struct sealvm_secret **ret,
			    struct sealvm_err *err)
{
	_cleanup_close_ int fd = -1;
	struct sealvm_secret *s = NULL;
	struct stat st;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return sealvm_err_set_errno(err, negative_errno(), NULL, "cannot open %s", path);
	if (fstat(fd, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), NULL, "cannot stat %s", path);
	if (S_ISDIR(st.st_mode))
		return sealvm_err_set(err, -EISDIR, "NOT_A_FILE",
				      "%s is a directory, not a key file", path);
	if (max > SEALVM_SECRET_MAX)
		max = SEALVM_SECRET_MAX;
	/* One byte more than allowed, to tell "too long" from "exactly max". */
	r = sealvm_secret_new(max + 1, &s);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot allocate secure memory for %s", path);
	for (;;) {
		ssize_t n = read(fd, s->data + s->len, s->cap - s->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = sealvm_err_set_errno(err, negative_errno(), NULL, "cannot read %s",
						 path);
			sealvm_secret_free(s);
			return r;
		}
		if (n == 0)
			break;
		s->len += (size_t)n;
		if (s->len > max) {
			sealvm_secret_free(s);
			return sealvm_err_set(err, -E2BIG, "KEY_FILE_TOO_LARGE",
					      "%s is larger than %zu bytes", path, max);
		}
	}
	s->data[s->len] = 0;
	*ret = s;
	return 0;
}

bool sealvm_secret_equal(const struct sealvm_secret *a, const struct sealvm_secret *b)
{
	if (!a || !b || a->len != b->len)
		return false;
	return CRYPTO_memcmp(a->data, b->data, a->len) == 0;
}

void sealvm_secret_free(struct sealvm_secret *s)
{
	if (!s)
		return;
	int c = slot_class(s->cap);
	if (c >= 0) {
		slot_put(c, s);
		return;
	}
	size_t maplen = ALIGN_UP(sizeof(*s) + s->cap + 1, page_size());
	OPENSSL_cleanse(s, maplen);
	munlock(s, maplen);
	munmap(s, maplen);
}

void sealvm_secret_harden_process(void)
{
	struct rlimit rl = {0, 0};
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	(void)setrlimit(RLIMIT_CORE, &rl);
}
