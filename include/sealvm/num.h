/* SPDX-License-Identifier: Apache-2.0 */
/*
 * num.h — numbers from text that a user or a client typed.
 *
 * Decimal only, no sign, no leading/trailing space, no overflow, range
 * checked. Sizes take an optional binary suffix (K, M, G, T, optionally
 * followed by "iB" or "B"; 1K = 1024).
 */
#ifndef SEALVM_NUM_H
#define SEALVM_NUM_H

#include <stdint.h>

/* Parses @s as a decimal in [@min, @max]. -EINVAL not a number, -ERANGE outside. */
int sealvm_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
int sealvm_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret);
/* Parses a size such as "4096", "64K", "2MiB", "1G"; result in bytes, in [@min, @max]. */
int sealvm_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Formats @bytes for people: "512 B", "1.5 MiB", "2.0 GiB". Returns @buf. */
const char *sealvm_format_size(uint64_t bytes, char *buf, unsigned buflen);

#endif
