// SPDX-License-Identifier: Apache-2.0
/*
 * secret.c — locked, wiped-on-free memory for key material (see secret.h).
 *
 * Each secret is its own anonymous mapping so that it can be mlock'ed,
 * kept out of core dumps and out of forked children, and unmapped after
 * OPENSSL_cleanse. This file must never print or log a secret's bytes.
 */
#include <errno.h>
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

int sealvm_secret_new(size_t cap, struct sealvm_secret **ret)
{
	static bool warned;
	struct sealvm_secret *s;
	size_t maplen;

	if (cap > SEALVM_SECRET_MAX)
		return -E2BIG;
	/* The struct sits at the start of the mapping: the length is locked too. */
	maplen = ALIGN_UP(sizeof(*s) + cap + 1, page_size());
	void *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	(void)madvise(p, maplen, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
	(void)madvise(p, maplen, MADV_WIPEONFORK);
#endif
	s = p;
	s->locked = mlock(p, maplen) == 0;
	if (!s->locked && !warned) {
		warned = true;
		log_debug(
			"could not lock secret memory (RLIMIT_MEMLOCK); it is still wiped and not dumped");
	}
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
