/* SPDX-License-Identifier: Apache-2.0 */
/*
 * log.h — diagnostics on stderr.
 *
 * Lines carry a level and, in the daemon, a timestamp and request id. The
 * interface takes only format strings and plain values: there is no way to
 * pass a struct sealvm_secret, and callers never format key material.
 */
#ifndef SEALVM_LOG_H
#define SEALVM_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "sealvm/macro.h"

enum sealvm_log_level {
	SEALVM_LOG_ERROR = 0,
	SEALVM_LOG_WARNING,
	SEALVM_LOG_NOTICE,
	SEALVM_LOG_INFO,
	SEALVM_LOG_DEBUG,
};

/* Program name used as the line prefix ("sealvm", "sealvmd"). */
void sealvm_log_set_ident(const char *ident);
void sealvm_log_set_level(enum sealvm_log_level level);
enum sealvm_log_level sealvm_log_get_level(void);
/* With timestamps (ISO 8601 UTC) at the start of each line: the daemon's format. */
void sealvm_log_set_timestamps(bool on);

/*
 * The log writer, for servers: from start to stop, lines go to a buffer of
 * @buffer_bytes (at least 4096) and one thread writes them to stderr, in
 * order, whole, so that a stalled write(2) (a busy disk) holds that thread
 * and not the callers; a full buffer makes callers wait (no line is dropped).
 * stop writes what is left and returns to writing each line directly.
 * Errors: -EALREADY (running), -ENOMEM, or pthread_create's.
 */
int sealvm_log_writer_start(size_t buffer_bytes);
void sealvm_log_writer_stop(void);

void sealvm_log(enum sealvm_log_level level, const char *fmt, ...) _printf_(2, 3);
void sealvm_vlog(enum sealvm_log_level level, const char *fmt, va_list ap) _printf_(2, 0);

#define log_error(...) sealvm_log(SEALVM_LOG_ERROR, __VA_ARGS__)
#define log_warning(...) sealvm_log(SEALVM_LOG_WARNING, __VA_ARGS__)
#define log_notice(...) sealvm_log(SEALVM_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) sealvm_log(SEALVM_LOG_INFO, __VA_ARGS__)
#define log_debug(...) sealvm_log(SEALVM_LOG_DEBUG, __VA_ARGS__)

#endif
