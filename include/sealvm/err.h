/* SPDX-License-Identifier: Apache-2.0 */
/*
 * err.h — errors as sealvm reports them.
 *
 * Every fallible function returns 0 (or a count) on success and a negative
 * errno on failure. Where a caller needs to tell a person what went wrong, it
 * also passes a `struct sealvm_err`: the first failure fills it with the
 * errno, a stable reason code (UPPER_SNAKE, part of the API: scripts and the
 * HTTP layer map on it) and a message that names the input and what to do.
 * The error is sticky: later failures on the same path do not overwrite the
 * root cause. Messages must never contain secret material.
 */
#ifndef SEALVM_ERR_H
#define SEALVM_ERR_H

#include <stdbool.h>
#include <stddef.h>

#include "sealvm/macro.h"

#define SEALVM_ERR_REASON_MAX 48
#define SEALVM_ERR_MESSAGE_MAX 512

struct sealvm_err {
	int code;			      /* negative errno, 0 while unset */
	char reason[SEALVM_ERR_REASON_MAX];   /* stable code, e.g. "DEK_NOT_CANONICAL" */
	char message[SEALVM_ERR_MESSAGE_MAX]; /* one line for a person */
};

#define SEALVM_ERR_INIT                                                                            \
	{                                                                                          \
		0                                                                                  \
	}

/*
 * Records the first error on @err (NULL is allowed: the code is still
 * returned). @code must be a negative errno; @reason a stable code.
 * Returns @code, so that `return sealvm_err_set(err, -EINVAL, ...)` reads well.
 */
int sealvm_err_set(struct sealvm_err *err, int code, const char *reason, const char *fmt, ...)
	_printf_(4, 5);

/* Like sealvm_err_set, and appends ": strerror(-code)". */
int sealvm_err_set_errno(struct sealvm_err *err, int code, const char *reason, const char *fmt, ...)
	_printf_(4, 5);

/* True once an error has been recorded. */
static inline bool sealvm_err_isset(const struct sealvm_err *err)
{
	return err && err->code != 0;
}

/* Forgets a recorded error (for retry loops that want a fresh root cause). */
void sealvm_err_clear(struct sealvm_err *err);

/*
 * A generic reason code for a negative errno, for callers that had no
 * better one: "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "DENIED",
 * "BAD_CREDENTIALS", "INTEGRITY", "WRONG_KEY", "TOO_LARGE", "NO_MEMORY",
 * "NO_SPACE", "IO_ERROR", "INTERNAL".
 */
const char *sealvm_err_reason_for(int code);

#endif
