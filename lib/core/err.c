// SPDX-License-Identifier: Apache-2.0
/*
 * err.c — the sticky error record (see err.h).
 *
 * Formats a person-readable message once, at the place that knows the input.
 * Must never be handed secret material: callers format names and sizes only.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sealvm/err.h"

static _printf_(5, 0) void err_vset(struct sealvm_err *err, int code, const char *reason,
				    bool with_errno, const char *fmt, va_list ap)
{
	if (!err || err->code != 0)
		return;
	err->code = code < 0 ? code : -EIO;
	snprintf(err->reason, sizeof(err->reason), "%s",
		 reason ? reason : sealvm_err_reason_for(code));
	int n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
	if (with_errno && n >= 0 && (size_t)n < sizeof(err->message))
		snprintf(err->message + n, sizeof(err->message) - (size_t)n, ": %s",
			 strerror(-err->code));
}

int sealvm_err_set(struct sealvm_err *err, int code, const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(err, code, reason, false, fmt, ap);
	va_end(ap);
	return code;
}

int sealvm_err_set_errno(struct sealvm_err *err, int code, const char *reason, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_vset(err, code, reason, true, fmt, ap);
	va_end(ap);
	return code;
}

void sealvm_err_clear(struct sealvm_err *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

const char *sealvm_err_reason_for(int code)
{
	switch (-code) {
	case EINVAL:
		return "INVALID_ARGUMENT";
	case ENOENT:
		return "NOT_FOUND";
	case EEXIST:
		return "ALREADY_EXISTS";
	case EACCES:
		return "DENIED";
	case EPERM:
		return "BAD_CREDENTIALS";
	case EBADMSG:
		return "INTEGRITY";
	case EKEYREJECTED:
		return "WRONG_KEY";
	case E2BIG:
		return "TOO_LARGE";
	case ENOMEM:
		return "NO_MEMORY";
	case ENOSPC:
		return "NO_SPACE";
	case EFBIG:
		return "FILE_TOO_LARGE";
	case EROFS:
		return "READ_ONLY";
	case ENOTSUP:
		return "NOT_SUPPORTED";
	case EIO:
		return "IO_ERROR";
	default:
		return "INTERNAL";
	}
}
