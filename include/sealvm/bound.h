/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bound.h — a bound per source address and time window, for what a flood of
 * bad requests would otherwise multiply: audit events and access-log lines of
 * requests that fail without credentials. Per source and window the first
 * @max are admitted; the rest are counted, and the count is handed back (to be
 * recorded as one aggregate) when that source next shows up in a later window,
 * when another source takes its slot, or when the bound is drained at a stop.
 * Nothing is lost from the tally; memory is a fixed table of slots.
 */
#ifndef SEALVM_BOUND_H
#define SEALVM_BOUND_H

#include <stdbool.h>
#include <stdint.h>

struct sealvm_bound;

/* What a source had suppressed in one window. */
struct sealvm_bound_count {
	char source[48];
	int64_t window_start; /* seconds since the epoch */
	unsigned window_s;
	unsigned suppressed;
};

/* @max per source and @window_s (0: 100 and 60). -ENOMEM. */
int sealvm_bound_new(unsigned max, unsigned window_s, struct sealvm_bound **ret);
void sealvm_bound_free(struct sealvm_bound *b);
unsigned sealvm_bound_max(const struct sealvm_bound *b);

/*
 * One request from @source: true to record it one by one, false to count it.
 * When a count is due (@ret_due->suppressed > 0), the caller records it as one
 * aggregate. Thread-safe.
 */
bool sealvm_bound_admit(struct sealvm_bound *b, const char *source,
			struct sealvm_bound_count *ret_due);

/* Hands every pending count to @fn (and clears it): at a stop. */
void sealvm_bound_drain(struct sealvm_bound *b,
			void (*fn)(const struct sealvm_bound_count *due, void *arg), void *arg);

#endif
