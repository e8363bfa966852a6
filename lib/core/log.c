// SPDX-License-Identifier: Apache-2.0
/*
 * log.c — leveled diagnostics on stderr (see log.h).
 *
 * One write(2) per line so that lines from threads and processes do not
 * interleave. Takes no secret type; callers never format key material.
 *
 * A server turns on the log writer (sealvm_log_writer_start): lines then go
 * into a bounded buffer and one thread writes them, whole lines in order, a
 * batch per write(2). A write to a file on a busy disk can stall for hundreds
 * of milliseconds (the file system's journal commits behind other fsyncs); it
 * then stalls that thread, not the request threads that log an access line
 * each. A full buffer makes callers wait: no line is ever dropped.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
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

/* ---- the log writer ---- */

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake, space;
	char *buf; /* lines waiting, whole */
	size_t len, cap;
	bool on, stopping;
	pthread_t thread;
} writer = {.lock = PTHREAD_MUTEX_INITIALIZER,
	    .wake = PTHREAD_COND_INITIALIZER,
	    .space = PTHREAD_COND_INITIALIZER};

static void write_all(const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* nowhere to report it */
		p += w;
		n -= (size_t)w;
	}
}

static void *writer_main(void *arg)
{
	char *out = arg; /* the second buffer: the two swap */
	pthread_mutex_lock(&writer.lock);
	for (;;) {
		while (!writer.len && !writer.stopping)
			pthread_cond_wait(&writer.wake, &writer.lock);
		if (!writer.len)
			break;
		char *full = writer.buf;
		size_t n = writer.len;
		writer.buf = out;
		writer.len = 0;
		pthread_cond_broadcast(&writer.space);
		pthread_mutex_unlock(&writer.lock);
		write_all(full, n);
		out = full;
		pthread_mutex_lock(&writer.lock);
	}
	pthread_mutex_unlock(&writer.lock);
	free(out);
	return NULL;
}

int sealvm_log_writer_start(size_t buffer_bytes)
{
	char *a = malloc(buffer_bytes), *b = malloc(buffer_bytes);
	pthread_mutex_lock(&writer.lock);
	int r = writer.on ? -EALREADY : (!a || !b || buffer_bytes < 4096) ? -ENOMEM : 0;
	if (r == 0) {
		writer.buf = a;
		writer.cap = buffer_bytes;
		writer.len = 0;
		writer.stopping = false;
		r = -pthread_create(&writer.thread, NULL, writer_main, b);
		if (r == 0) {
			writer.on = true;
			a = b = NULL;
		} else {
			writer.buf = NULL;
		}
	}
	pthread_mutex_unlock(&writer.lock);
	free(a);
	free(b);
	return r;
}

void sealvm_log_writer_stop(void)
{
	pthread_mutex_lock(&writer.lock);
	if (!writer.on) {
		pthread_mutex_unlock(&writer.lock);
		return;
	}
	writer.stopping = true;
	pthread_cond_signal(&writer.wake);
	pthread_mutex_unlock(&writer.lock);
	pthread_join(writer.thread, NULL); /* it writes what is left first */
	pthread_mutex_lock(&writer.lock);
	writer.on = false;
	free(writer.buf);
	writer.buf = NULL;
	writer.len = writer.cap = 0;
	pthread_cond_broadcast(&writer.space);
	pthread_mutex_unlock(&writer.lock);
}

/* One whole line: to the writer's buffer when it runs, else straight out. */
static void emit(const char *line, size_t n)
{
	pthread_mutex_lock(&writer.lock);
	while (writer.on && !writer.stopping && writer.len + n > writer.cap)
		pthread_cond_wait(&writer.space, &writer.lock);
	if (!writer.on || writer.stopping) {
		pthread_mutex_unlock(&writer.lock);
		write_all(line, n);
		return;
	}
	/* Only the first line wakes the writer: it looks again before it sleeps. */
	if (writer.len == 0)
		pthread_cond_signal(&writer.wake);
	memcpy(writer.buf + writer.len, line, n);
	writer.len += n;
	pthread_mutex_unlock(&writer.lock);
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
	emit(line, n);
	errno = saved_errno;
}
