/* SPDX-License-Identifier: Apache-2.0 */
/*
 * secret.h — the one type that holds key material.
 *
 * A secret lives in anonymous memory that is mlock'ed (kept out of swap),
 * excluded from core dumps (MADV_DONTDUMP) and not inherited by children
 * (MADV_WIPEONFORK), and is wiped with OPENSSL_cleanse when freed: a large
 * one in a mapping of its own, a small one (up to 1 KiB with its header) in
 * a slot of a pool of such mappings, wiped before reuse.
 * DEKs, volume keys, passphrases and tokens go here and nowhere else. No
 * logging or error function accepts a secret; to print one (the single API
 * field or file that returns it) the caller reads ->data explicitly.
 */
#ifndef SEALVM_SECRET_H
#define SEALVM_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "sealvm/err.h"
#include "sealvm/macro.h"

/* The largest secret we hold: a 512-character DEK text, a 512-bit key, a token. */
#define SEALVM_SECRET_MAX (64 * 1024)

struct sealvm_secret {
	unsigned char *data; /* locked memory; len bytes used, always NUL-terminated after len */
	size_t len;
	size_t cap;
	bool locked; /* false when mlock failed (RLIMIT_MEMLOCK); still wiped and not dumped */
};

/*
 * Allocates a zeroed secret with room for @cap bytes (plus a terminating NUL).
 * ->len starts at 0. Returns -ENOMEM, or -E2BIG past SEALVM_SECRET_MAX.
 */
int sealvm_secret_new(size_t cap, struct sealvm_secret **ret);

/* Allocates a secret of @len random bytes from the OpenSSL DRBG. */
int sealvm_secret_random(size_t len, struct sealvm_secret **ret);

/* Allocates a secret holding a copy of @len bytes at @src. */
int sealvm_secret_from(const void *src, size_t len, struct sealvm_secret **ret);

/*
 * Reads a whole small file (at most @max bytes) into a new secret without
 * any intermediate unlocked buffer. -E2BIG if the file is larger than @max,
 * -ENOENT/-EACCES/... as open(2) says. The file is read exactly: a trailing
 * newline stays part of the data.
 */
int sealvm_secret_read_file(const char *path, size_t max, struct sealvm_secret **ret,
			    struct sealvm_err *err);

/* Constant-time equality of two secrets (lengths are not secret). */
bool sealvm_secret_equal(const struct sealvm_secret *a, const struct sealvm_secret *b);

/* Wipes and unmaps; NULL is fine. */
void sealvm_secret_free(struct sealvm_secret *s);

static inline void sealvm_secret_freep(struct sealvm_secret **s)
{
	sealvm_secret_free(*s);
}
#define _cleanup_secret_ _cleanup_(sealvm_secret_freep)

/*
 * Process-wide hardening for programs that hold secrets: no core dumps
 * (PR_SET_DUMPABLE 0 and RLIMIT_CORE 0). Call once at start.
 */
void sealvm_secret_harden_process(void);

#endif
