/* SPDX-License-Identifier: Apache-2.0 */
/*
 * macro.h — ownership helpers shared by every part of sealvm.
 *
 * Scope-bound cleanup (`_cleanup_free_`, `_cleanup_close_`, ...) and the
 * TAKE_PTR/TAKE_FD idiom: a value leaves a scope's ownership only by being
 * taken, so every early return frees what it must and nothing twice.
 */
#ifndef SEALVM_MACRO_H
#define SEALVM_MACRO_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _noreturn_ __attribute__((noreturn))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))
#define ALIGN_UP(n, a) (DIV_ROUND_UP(n, a) * (a))

/* Hand a pointer out of a cleanup scope: returns it and nulls the local. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _tp_ = (p);                                                          \
		(p) = NULL;                                                                        \
		_tp_;                                                                              \
	})

/* Hand a file descriptor out of a cleanup scope: returns it and sets the local to -1. */
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _tf_ = (fd);                                                                   \
		(fd) = -1;                                                                         \
		_tf_;                                                                              \
	})

static inline void freep(void *p)
{
	free(*(void **)p);
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes *fd when it is >= 0, keeping errno as it was. */
static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
#define _cleanup_close_ _cleanup_(closep)

/* A negative errno from errno itself, never 0 (a failing call that forgot errno is -EIO). */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* FNV-1a (64-bit) of @n bytes: for hash tables, never for anything an attacker must not forge. */
static inline uint64_t sealvm_fnv1a(const void *p, size_t n)
{
	const unsigned char *b = p;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

#endif
