// SPDX-License-Identifier: Apache-2.0
/*
 * log.c — leveled diagnostics on stderr (see log.h).
 *
 * One write(2) per line so that lines from threads and processes do not
 * interleave. Takes no secret type; callers never format key material.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sealvm/log.h"

static const char *log_ident = "sealvm";
static enum sealvm_log_level log_level = SEALVM_LOG_NOTICE;
static bool log_timestamps;

void sealvm_log_set_ident(const char *ident)
{
	log_ident = ident;
}

void sealvm_log_set_level(enum sealvm_log_level level)
{
	log_level = level;
}

enum sealvm_log_level sealvm_log_get_level(void)
{
	return log_level;
}

void sealvm_log_set_timestamps(bool on)
{
	log_timestamps = on;
}

void sealvm_log(enum sealvm_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sealvm_vlog(level, fmt, ap);
	va_end(ap);
}

void sealvm_vlog(enum sealvm_log_level level, const char *fmt, va_list ap)
{
	static const char *const names[] = {"error", "warning", "notice", "info", "debug"};
	char line[2048];
	size_t n = 0;

	if (level > log_level)
		return;
	int saved_errno = errno;
	if (log_timestamps) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ ", ts.tv_nsec / 1000000);
	}
	int r = snprintf(line + n, sizeof(line) - n, "%s: %s: ", log_ident, names[level]);
	if (r > 0)
		n = MIN(n + (size_t)r, sizeof(line) - 1);
	r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (r > 0)
		n = MIN(n + (size_t)r, sizeof(line) - 2);
	/* Control characters from untrusted input must not forge log lines. */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 && line[i] != '\t')
			line[i] = ' ';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
	errno = saved_errno;
}
