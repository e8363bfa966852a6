/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jsonout.h — a jansson value as compact JSON text, fast.
 *
 * The same bytes as json_dumps(@j, JSON_COMPACT) (a unit test compares the two
 * over a generated corpus), written in runs instead of one callback per token
 * and without validating UTF-8 again (jansson did when the strings were made).
 * Every API response body goes through it.
 */
#ifndef SEALVM_JSONOUT_H
#define SEALVM_JSONOUT_H

#include <stddef.h>

#include <jansson.h>

/*
 * The text of @j (an object or an array; any value with @any), NUL-terminated,
 * in a new buffer; *ret_len its length. NULL: out of memory, nesting deeper
 * than 256, or a value jansson would not dump either.
 */
char *sealvm_json_compact(const json_t *j, int any, size_t *ret_len);

#endif
