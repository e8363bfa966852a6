// SPDX-License-Identifier: Apache-2.0
/*
 * rowcache.c — see rowcache.h. Slots share STRIPES mutexes (slot index
 * modulo STRIPES), so readers of different rows rarely meet.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/macro.h"
#include "sealvm/rowcache.h"

#define STRIPES 64

struct slot {
	bool used;
	uint64_t gen;
	char key[SEALVM_ROWCACHE_KEY_MAX + 1];
};

struct sealvm_rowcache {
	unsigned mask;
	size_t value_size;
	struct slot *slots;
	unsigned char *values;
	pthread_mutex_t locks[STRIPES];
	uint64_t hits, misses; /* atomic */
};

int sealvm_rowcache_new(unsigned slots, size_t value_size, struct sealvm_rowcache **ret)
{
	if (!ret || value_size == 0 || slots > (1u << 20))
		return -EINVAL;
	unsigned n = 16;
	while (n < slots)
		n <<= 1;
	struct sealvm_rowcache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->mask = n - 1;
	c->value_size = value_size;
	c->slots = calloc(n, sizeof(*c->slots));
	c->values = calloc(n, value_size);
	if (!c->slots || !c->values) {
		free(c->slots);
		free(c->values);
		free(c);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < STRIPES; i++)
		pthread_mutex_init(&c->locks[i], NULL);
	*ret = c;
	return 0;
}

void sealvm_rowcache_free(struct sealvm_rowcache *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < STRIPES; i++)
		pthread_mutex_destroy(&c->locks[i]);
	free(c->slots);
	free(c->values);
	free(c);
}

/* The slot of @key, or -1 when the key cannot be cached. */
static long slot_of(const struct sealvm_rowcache *c, const char *key, size_t *ret_len)
{
	if (!c || !key)
		return -1;
	size_t n = strnlen(key, SEALVM_ROWCACHE_KEY_MAX + 1);
	if (n > SEALVM_ROWCACHE_KEY_MAX)
		return -1;
	*ret_len = n;
	return (long)(sealvm_fnv1a(key, n) & c->mask);
}

bool sealvm_rowcache_get(struct sealvm_rowcache *c, uint64_t gen, const char *key, void *out)
{
	size_t n;
	long i = slot_of(c, key, &n);
	if (i < 0)
		return false;
	struct slot *s = &c->slots[i];
	pthread_mutex_t *l = &c->locks[(unsigned long)i % STRIPES];
	bool hit = false;
	pthread_mutex_lock(l);
	if (s->used && s->gen == gen && memcmp(s->key, key, n + 1) == 0) {
		memcpy(out, c->values + (size_t)i * c->value_size, c->value_size);
		hit = true;
	}
	pthread_mutex_unlock(l);
	__atomic_add_fetch(hit ? &c->hits : &c->misses, 1, __ATOMIC_RELAXED);
	return hit;
}

void sealvm_rowcache_put(struct sealvm_rowcache *c, uint64_t gen, const char *key,
			 const void *value)
{
	size_t n;
	long i = slot_of(c, key, &n);
	if (i < 0)
		return;
	struct slot *s = &c->slots[i];
	pthread_mutex_t *l = &c->locks[(unsigned long)i % STRIPES];
	pthread_mutex_lock(l);
	/* An entry of a newer generation stays: this row may be older than it. */
	if (!s->used || s->gen <= gen) {
		s->used = true;
		s->gen = gen;
		memcpy(s->key, key, n + 1);
		memcpy(c->values + (size_t)i * c->value_size, value, c->value_size);
	}
	pthread_mutex_unlock(l);
}

void sealvm_rowcache_stats(struct sealvm_rowcache *c, uint64_t *ret_hits, uint64_t *ret_misses)
{
	if (ret_hits)
		*ret_hits = c ? __atomic_load_n(&c->hits, __ATOMIC_RELAXED) : 0;
	if (ret_misses)
		*ret_misses = c ? __atomic_load_n(&c->misses, __ATOMIC_RELAXED) : 0;
}

int sealvm_rowcache_read(struct sealvm_rowcache *c, struct sealvm_db *db, const char *key,
			 void *row, sealvm_rowcache_read_fn read, void *ctx, struct sealvm_err *err)
{
	uint64_t gen = db_state_generation(db);
	if (sealvm_rowcache_get(c, gen, key, row))
		return 0;
	sqlite3 *conn = db_read_begin(db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	int r = read(conn, ctx, row, err);
	db_read_end(db, conn);
	if (r == 0)
		sealvm_rowcache_put(c, gen, key, row);
	return r;
}
