// SPDX-License-Identifier: Apache-2.0
/*
 * bound.c — per source and window bounds (see bound.h): a fixed table of
 * slots hashed by source (FNV-1a) under one mutex; a colliding source takes
 * the slot over after its pending count is handed back.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sealvm/bound.h"
#include "sealvm/macro.h"

#define BOUND_SLOTS 1024u

struct slot {
	char source[48];
	int64_t window; /* window number: time / window_s */
	unsigned admitted, suppressed;
};

struct sealvm_bound {
	pthread_mutex_t lock;
	unsigned max, window_s;
	struct slot slots[BOUND_SLOTS];
};

int sealvm_bound_new(unsigned max, unsigned window_s, struct sealvm_bound **ret)
{
	struct sealvm_bound *b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->max = max ? max : 100;
	b->window_s = window_s ? window_s : 60;
	*ret = b;
	return 0;
}

void sealvm_bound_free(struct sealvm_bound *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	free(b);
}

unsigned sealvm_bound_max(const struct sealvm_bound *b)
{
	return b->max;
}

static void count_of(const struct sealvm_bound *b, const struct slot *s,
		     struct sealvm_bound_count *due)
{
	snprintf(due->source, sizeof(due->source), "%s", s->source);
	due->window_start = s->window * b->window_s;
	due->window_s = b->window_s;
	due->suppressed = s->suppressed;
}

bool sealvm_bound_admit(struct sealvm_bound *b, const char *source,
			struct sealvm_bound_count *ret_due)
{
	int64_t w = (int64_t)time(NULL) / b->window_s;
	uint64_t h = sealvm_fnv1a(source, strlen(source));

	memset(ret_due, 0, sizeof(*ret_due));
	pthread_mutex_lock(&b->lock);
	struct slot *s = &b->slots[h % BOUND_SLOTS];
	if (s->window != w || strcmp(s->source, source) != 0) {
		if (s->suppressed)
			count_of(b, s, ret_due);
		snprintf(s->source, sizeof(s->source), "%s", source);
		s->window = w;
		s->admitted = s->suppressed = 0;
	}
	bool admit = s->admitted < b->max;
	if (admit)
		s->admitted++;
	else
		s->suppressed++;
	pthread_mutex_unlock(&b->lock);
	return admit;
}

void sealvm_bound_drain(struct sealvm_bound *b,
			void (*fn)(const struct sealvm_bound_count *due, void *arg), void *arg)
{
	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < BOUND_SLOTS; i++) {
		struct slot *s = &b->slots[i];
		if (!s->suppressed)
			continue;
		struct sealvm_bound_count due;
		count_of(b, s, &due);
		s->suppressed = 0;
		fn(&due, arg);
	}
	pthread_mutex_unlock(&b->lock);
}
