/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rowcache.h — a small cache of rows a request path reads again and again
 * (the service ID a GET names, the key an unwrap uses), kept true by the
 * database's state generation (db_state_generation): an entry counts only
 * while the generation it was read at is still current, so any write since
 * makes every entry a miss, and the next read fills it again.
 *
 * Direct-mapped: a key has one slot (FNV-1a of the key); a newer row for
 * another key in the same slot replaces it. Values are copied in and out
 * under the slot's stripe lock, never handed out by reference. Rows with
 * secrets in clear must not be cached (sealed blobs are fine).
 */
#ifndef SEALVM_ROWCACHE_H
#define SEALVM_ROWCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Keys longer than this are never cached (get misses, put does nothing). */
#define SEALVM_ROWCACHE_KEY_MAX 127

struct sealvm_rowcache;

/* @slots (rounded up to a power of two, at least 16) values of @value_size bytes. -ENOMEM, -EINVAL.
 */
int sealvm_rowcache_new(unsigned slots, size_t value_size, struct sealvm_rowcache **ret);
void sealvm_rowcache_free(struct sealvm_rowcache *c); /* NULL is fine */

/*
 * Copies the value cached for @key into @out and returns true when it was
 * put at generation @gen (the caller reads the current one first); false
 * otherwise, @out untouched. A NULL cache always misses.
 */
bool sealvm_rowcache_get(struct sealvm_rowcache *c, uint64_t gen, const char *key, void *out);

/* Caches @value for @key as read at @gen (the generation read before the row). */
void sealvm_rowcache_put(struct sealvm_rowcache *c, uint64_t gen, const char *key,
			 const void *value);

struct sealvm_db;
struct sealvm_err;
struct sqlite3;
/*
 * A row through @c: the copy cached for @key at the current state generation
 * of @db if there is one, else what @read (given @ctx, which names the row)
 * finds on a borrowed reader, kept for the next caller. @read returns 0 for a
 * row, a negative errno (with @err) for none; only rows are cached. @key must
 * name exactly the row @ctx does; NULL (a key that cannot be made) reads
 * without the cache. Checks that depend on the caller (the account a row must
 * belong to) stay with the caller.
 */
typedef int (*sealvm_rowcache_read_fn)(struct sqlite3 *conn, void *ctx, void *row,
				       struct sealvm_err *err);
int sealvm_rowcache_read(struct sealvm_rowcache *c, struct sealvm_db *db, const char *key,
			 void *row, sealvm_rowcache_read_fn read, void *ctx,
			 struct sealvm_err *err);

/* Hits and misses so far (tests, benchmarks). */
void sealvm_rowcache_stats(struct sealvm_rowcache *c, uint64_t *ret_hits, uint64_t *ret_misses);

#endif
