// SPDX-License-Identifier: Apache-2.0
/* sealvm_json_compact gives json_dumps(JSON_COMPACT)'s bytes, for edge cases and a generated
 * corpus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sealvm/jsonout.h"

static void same_as_jansson(const json_t *j)
{
	size_t len = 0;
	char *ours = sealvm_json_compact(j, 1, &len);
	char *theirs = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	assert_non_null(ours);
	assert_non_null(theirs);
	assert_string_equal(ours, theirs);
	assert_int_equal(len, strlen(theirs));
	free(ours);
	free(theirs);
}

static void test_edge_cases(void **state)
{
	(void)state;
	static const char nul_inside[] = "a\0b";
	json_t *cases[] = {
		json_object(),
		json_array(),
		json_pack("{s:s, s:i, s:b, s:n, s:f}", "id", "ServiceId-1", "n", -42, "locked", 0,
			  "none", "real", 0.1),
		json_pack("{s:I, s:I}", "min", (json_int_t)INT64_MIN, "max", (json_int_t)INT64_MAX),
		json_pack("[f, f, f, f, f]", 1.0, -0.0, 1e300, 123456789.0, 2.5e-8),
		json_pack("{s:s}", "ctl", "\"quote\" back\\slash / \b\f\n\r\t \x01\x1f\x7f end"),
		json_pack("{s:s}", "utf8", "é €  \xf0\x9f\x94\x91 key"),
		json_pack("{s:s%}", "nul", nul_inside, (size_t)3),
		json_pack("{s:{s:[{s:[]}, {}, [[[i]]]]}}", "a", "b", "c", 1),
		json_pack("{s:s, s:s, s:s}", "z", "1", "a", "2", "m", "3"), /* insertion order */
		json_string("a bare string"),
		json_integer(7),
		json_true(),
		json_null(),
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_non_null(cases[i]);
		same_as_jansson(cases[i]);
		json_decref(cases[i]);
	}
	/* Only containers, unless any value is asked for; NULL is refused. */
	json_t *s = json_string("x");
	assert_null(sealvm_json_compact(s, 0, NULL));
	json_decref(s);
	assert_null(sealvm_json_compact(NULL, 1, NULL));
}

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static json_t *gen_string(void)
{
	static const char *const pieces[] = {
		"a",  "Z",    " ",    "\"",   "\\", "/", "\n",
		"\t", "\x01", "\x1e", "\x7f", "é",  "€", "\xf0\x9f\x94\x91",
		"0",  "{",    "}",    ":"};
	char buf[128];
	size_t n = 0, k = rnd(12);
	for (size_t i = 0; i < k; i++) {
		const char *p = pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))];
		memcpy(buf + n, p, strlen(p));
		n += strlen(p);
	}
	return json_stringn(buf, n);
}

static json_t *gen(int depth)
{
	switch (depth > 4 ? rnd(5) : rnd(7)) {
	case 0:
		return gen_string();
	case 1:
		return json_integer((json_int_t)rnd(UINT32_MAX) -
				    (json_int_t)rnd(UINT32_MAX) * 4096);
	case 2:
		return json_real((double)rnd(1000000) / (double)(1 + rnd(1000)));
	case 3:
		return rnd(2) ? json_true() : json_false();
	case 4:
		return json_null();
	case 5: {
		json_t *o = json_object();
		for (uint32_t i = rnd(6); i > 0; i--) {
			json_t *k = gen_string();
			json_object_set_new(o, json_string_value(k), gen(depth + 1));
			json_decref(k);
		}
		return o;
	}
	default: {
		json_t *a = json_array();
		for (uint32_t i = rnd(6); i > 0; i--)
			json_array_append_new(a, gen(depth + 1));
		return a;
	}
	}
}

static void test_generated_corpus(void **state)
{
	(void)state;
	for (int i = 0; i < 20000; i++) {
		json_t *j = gen(0);
		assert_non_null(j);
		same_as_jansson(j);
		json_decref(j);
	}
}

static void test_too_deep(void **state)
{
	(void)state;
	json_t *root = json_array(), *cur = root;
	for (int i = 0; i < 300; i++) {
		json_t *next = json_array();
		json_array_append_new(cur, next);
		cur = next;
	}
	assert_null(sealvm_json_compact(root, 0, NULL));
	json_decref(root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edge_cases),
		cmocka_unit_test(test_generated_corpus),
		cmocka_unit_test(test_too_deep),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
