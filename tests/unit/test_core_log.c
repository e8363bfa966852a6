// SPDX-License-Identifier: Apache-2.0
/* The log writer (lib/core/log.c): whole lines, in each thread's order, none lost. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sealvm/log.h"

#define THREADS 4
#define LINES 5000

static void *logger(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (int i = 0; i < LINES; i++)
		log_notice("thread %d line %d %s", t, i, "padding to make lines of some length");
	return NULL;
}

/* Runs @fn with stderr sent to a temp file; returns the file's text (caller frees). */
static char *capture(void (*fn)(void))
{
	char path[] = "/tmp/sealvm-test-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	off_t size = lseek(fd, 0, SEEK_END);
	char *text = malloc((size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(pread(fd, text, (size_t)size, 0), size);
	text[size] = 0;
	close(fd);
	return text;
}

static void run_threads(void)
{
	/* A buffer of a few lines: callers wait for the writer over and over. */
	assert_int_equal(sealvm_log_writer_start(4096), 0);
	assert_int_equal(sealvm_log_writer_start(4096), -EALREADY);
	pthread_t th[THREADS];
	for (int t = 0; t < THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, logger, (void *)(intptr_t)t), 0);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	/* Lines still in the buffer when the stop comes are written before it returns. */
	for (int i = 0; i < LINES; i++)
		log_notice("thread %d line %d %s", THREADS, i,
			   "padding to make lines of some length");
	sealvm_log_writer_stop();
	log_notice("after the stop");
	sealvm_log_writer_stop(); /* a second stop is harmless */
}

static void test_writer_keeps_every_line_whole_and_in_order(void **state)
{
	(void)state;
	sealvm_log_set_ident("sealvm");
	sealvm_log_set_timestamps(false);
	char *text = capture(run_threads);
	int next[THREADS + 1] = {0};
	int lines = 0;
	bool after = false;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		int t, i;
		char tail[64];
		if (strcmp(l, "sealvm: notice: after the stop") == 0) {
			after = true;
			continue;
		}
		assert_int_equal(
			sscanf(l, "sealvm: notice: thread %d line %d %63[^\n]", &t, &i, tail), 3);
		assert_string_equal(tail, "padding to make lines of some length");
		assert_true(t >= 0 && t <= THREADS);
		assert_int_equal(i, next[t]); /* each thread's lines in its order */
		next[t]++;
		lines++;
	}
	assert_int_equal(lines, (THREADS + 1) * LINES);
	assert_true(after); /* after the stop, lines are written directly */
	free(text);
}

static void test_writer_start_errors(void **state)
{
	(void)state;
	assert_int_equal(sealvm_log_writer_start(100), -ENOMEM); /* not even one line */
	sealvm_log_writer_stop();				 /* not running: nothing to do */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_keeps_every_line_whole_and_in_order),
		cmocka_unit_test(test_writer_start_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
