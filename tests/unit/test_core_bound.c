// SPDX-License-Identifier: Apache-2.0
/*
 * test_core_bound.c — per source and window bounds: the first N admitted, the
 * rest counted; the count handed back in a later window, when another source
 * takes the slot, and by drain; every request in the tally.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "sealvm/bound.h"

struct tally {
	unsigned calls, suppressed;
	char source[48];
};

static void add(const struct sealvm_bound_count *due, void *arg)
{
	struct tally *t = arg;
	t->calls++;
	t->suppressed += due->suppressed;
	snprintf(t->source, sizeof(t->source), "%s", due->source);
}

static void test_admit_count_drain(void **state)
{
	struct sealvm_bound *b = NULL;
	struct sealvm_bound_count due;
	assert_int_equal(sealvm_bound_new(3, 3600, &b), 0);
	assert_int_equal(sealvm_bound_max(b), 3);
	unsigned admitted = 0;
	for (int i = 0; i < 10; i++) {
		admitted += sealvm_bound_admit(b, "10.0.0.1", &due);
		assert_int_equal(due.suppressed, 0);
	}
	assert_int_equal(admitted, 3);
	/* another source has its own count */
	assert_true(sealvm_bound_admit(b, "10.0.0.2", &due));
	/* at the stop: the 7 counted, once */
	struct tally t = {0};
	sealvm_bound_drain(b, add, &t);
	assert_int_equal(t.calls, 1);
	assert_int_equal(t.suppressed, 7);
	assert_string_equal(t.source, "10.0.0.1");
	memset(&t, 0, sizeof(t));
	sealvm_bound_drain(b, add, &t);
	assert_int_equal(t.calls, 0);
	sealvm_bound_free(b);
}

static void test_later_window_hands_back(void **state)
{
	struct sealvm_bound *b = NULL;
	struct sealvm_bound_count due;
	assert_int_equal(sealvm_bound_new(2, 1, &b), 0);
	/* start at the beginning of a second, so the five fall in one window */
	time_t t0 = time(NULL);
	while (time(NULL) == t0)
		usleep(1000);
	int64_t w0 = (int64_t)time(NULL);
	for (int i = 0; i < 5; i++)
		sealvm_bound_admit(b, "src", &due);
	while (time(NULL) == (time_t)w0)
		usleep(1000);
	assert_true(sealvm_bound_admit(b, "src", &due));
	assert_int_equal(due.suppressed, 3);
	assert_string_equal(due.source, "src");
	assert_int_equal(due.window_start, w0);
	assert_int_equal(due.window_s, 1);
	sealvm_bound_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admit_count_drain),
		cmocka_unit_test(test_later_window_hands_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
