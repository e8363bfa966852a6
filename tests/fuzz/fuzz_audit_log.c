// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_audit_log.c — the event log's record walk (lib/audit/audit_log.c) on
 * arbitrary segment bytes: never out of bounds, every field it hands out is
 * NUL-terminated within its copy, and what it calls whole stays whole: walking
 * just those bytes again gives the same records, and no damage.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/audit/audit_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tally {
	size_t rows;
	uint64_t sum;
};

static int touch(const struct audit_row *row, void *userdata)
{
	struct tally *t = userdata;
	const char *f[] = {row->account_id, row->action, row->outcome, row->target_id,
			   row->initiator_id};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (f[i])
			t->sum += strlen(f[i]);
	if (row->event[row->event_len] != 0 || row->chain_len != AUDIT_CHAIN_SIZE)
		abort();
	for (size_t i = 0; i < row->event_len; i++)
		t->sum += (unsigned char)row->event[i];
	for (size_t i = 0; i < AUDIT_CHAIN_SIZE; i++)
		t->sum += row->chain[i];
	t->sum += (uint64_t)row->seq ^ (uint64_t)row->time_ms;
	t->rows++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > (1u << 20))
		return 0;
	char *strs = malloc(AUDIT_LOG_RECORD_MAX);
	unsigned char *copy = malloc(size ? size : 1);
	if (!strs || !copy)
		abort();
	memcpy(copy, data, size); /* exactly @size bytes: reading past them is caught */
	struct tally a = {0}, b = {0};
	bool damaged = false, again = true;
	size_t end = audit_log_walk(copy, size, strs, touch, &a, &damaged);
	if (end > size)
		abort();
	size_t end2 = audit_log_walk(copy, end, strs, touch, &b, &again);
	if (end2 != end || again || a.rows != b.rows || a.sum != b.sum)
		abort();
	free(copy);
	free(strs);
	return 0;
}
