// SPDX-License-Identifier: Apache-2.0
/*
 * jsonout.c — compact JSON text of a jansson value (see jsonout.h).
 *
 * Escapes what jansson escapes without JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH:
 * '"', '\\', the short forms \b \f \n \r \t, other bytes below 0x20 as
 * \u00XX (upper-case hex). Objects in insertion order, as jansson keeps and
 * dumps them; reals through jansson itself (rare here; its formatting rules
 * are its own).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/jsonout.h"

#define MAX_DEPTH 256

struct out {
	char *p;
	size_t len, cap;
	int failed;
};

static int reserve(struct out *o, size_t more)
{
	if (o->failed)
		return -1;
	if (o->len + more + 1 <= o->cap)
		return 0;
	size_t cap = o->cap ? o->cap : 256;
	while (cap < o->len + more + 1)
		cap *= 2;
	char *p = realloc(o->p, cap);
	if (!p) {
		o->failed = 1;
		return -1;
	}
	o->p = p;
	o->cap = cap;
	return 0;
}

static void put(struct out *o, const char *s, size_t n)
{
	if (reserve(o, n) == 0) {
		memcpy(o->p + o->len, s, n);
		o->len += n;
	}
}

static void put_char(struct out *o, char c)
{
	if (reserve(o, 1) == 0)
		o->p[o->len++] = c;
}

/* 1 for the bytes a JSON string must escape. */
static const unsigned char must_escape[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,		1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1,
};

static void put_string(struct out *o, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	put_char(o, '"');
	size_t run = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!must_escape[c])
			continue;
		put(o, s + run, i - run);
		run = i + 1;
		char esc[6] = {'\\', 0};
		size_t k = 2;
		switch (c) {
		case '"':
		case '\\':
			esc[1] = (char)c;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			k = 6;
		}
		put(o, esc, k);
	}
	put(o, s + run, n - run);
	put_char(o, '"');
}

static void put_value(struct out *o, const json_t *j, int depth)
{
	char num[32];
	if (depth > MAX_DEPTH) {
		o->failed = 1;
		return;
	}
	switch (json_typeof(j)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *v;
		int first = 1;
		put_char(o, '{');
		json_object_foreach((json_t *)j, key, v)
		{
			if (!first)
				put_char(o, ',');
			first = 0;
			put_string(o, key, strlen(key));
			put_char(o, ':');
			put_value(o, v, depth + 1);
		}
		put_char(o, '}');
		return;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *v;
		put_char(o, '[');
		json_array_foreach(j, i, v)
		{
			if (i)
				put_char(o, ',');
			put_value(o, v, depth + 1);
		}
		put_char(o, ']');
		return;
	}
	case JSON_STRING:
		put_string(o, json_string_value(j), json_string_length(j));
		return;
	case JSON_INTEGER: {
		int n = snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
		put(o, num, (size_t)n);
		return;
	}
	case JSON_REAL: {
		char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!t) {
			o->failed = 1;
			return;
		}
		put(o, t, strlen(t));
		free(t);
		return;
	}
	case JSON_TRUE:
		put(o, "true", 4);
		return;
	case JSON_FALSE:
		put(o, "false", 5);
		return;
	case JSON_NULL:
		put(o, "null", 4);
		return;
	}
	o->failed = 1;
}

char *sealvm_json_compact(const json_t *j, int any, size_t *ret_len)
{
	if (!j || (!any && !json_is_object(j) && !json_is_array(j)))
		return NULL;
	struct out o = {0};
	put_value(&o, j, 0);
	if (o.failed || reserve(&o, 0) < 0) {
		free(o.p);
		return NULL;
	}
	o.p[o.len] = 0;
	if (ret_len)
		*ret_len = o.len;
	return o.p;
}
