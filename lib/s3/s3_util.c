// SPDX-License-Identifier: Apache-2.0
/*
 * s3_util.c — the capped buffer, percent-encoding and hex shared by the S3
 * parsers and SigV4 (see s3_internal.h).
 *
 * Every function here is total on attacker bytes: bounded by the caller's
 * lengths and the buffer's cap, and never reads past what it was given.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3_internal.h"

void s3_buf_init(struct s3_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void s3_buf_done(struct s3_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static int buf_reserve(struct s3_buf *b, size_t extra)
{
	if (b->error)
		return b->error;
	if (extra > b->max || b->len > b->max - extra) {
		b->error = -E2BIG;
		return b->error;
	}
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->error = -ENOMEM;
		return b->error;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

int s3_buf_put(struct s3_buf *b, const void *p, size_t n)
{
	int r = buf_reserve(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

int s3_buf_puts(struct s3_buf *b, const char *s)
{
	return s3_buf_put(b, s, strlen(s));
}

int s3_buf_putc(struct s3_buf *b, char c)
{
	return s3_buf_put(b, &c, 1);
}

int s3_buf_printf(struct s3_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;

	if (b->error)
		return b->error;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->error = -EINVAL;
		return b->error;
	}
	if ((size_t)n < sizeof(small))
		return s3_buf_put(b, small, (size_t)n);
	int r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int s3_buf_steal(struct s3_buf *b, char **ret, size_t *ret_len)
{
	int r = b->error;
	if (r == 0)
		r = buf_reserve(b, 0);
	if (r < 0) {
		s3_buf_done(b);
		return r;
	}
	b->data[b->len] = 0;
	*ret = b->data;
	if (ret_len)
		*ret_len = b->len;
	b->data = NULL;
	s3_buf_done(b);
	return 0;
}

int s3_buf_put_encoded_byte(struct s3_buf *b, unsigned char c)
{
	static const char hexu[] = "0123456789ABCDEF";
	if (s3_unreserved(c))
		return s3_buf_putc(b, (char)c);
	char t[3] = {'%', hexu[c >> 4], hexu[c & 15]};
	return s3_buf_put(b, t, 3);
}

int s3_buf_put_encoded(struct s3_buf *b, const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++) {
		int r = s3_buf_put_encoded_byte(b, s[i]);
		if (r < 0)
			return r;
	}
	return b->error;
}

long s3_pct_decode(const char *s, size_t n, bool plus_is_space, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '%') {
			if (n - i < 3)
				return -EINVAL;
			int hi = s3_hexval((unsigned char)s[i + 1]);
			int lo = s3_hexval((unsigned char)s[i + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			out[o++] = ' ';
		} else {
			out[o++] = (char)c;
		}
	}
	return (long)o;
}

void s3_hex(const unsigned char *in, size_t n, char *out)
{
	static const char hexl[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexl[in[i] >> 4];
		out[2 * i + 1] = hexl[in[i] & 15];
	}
	out[2 * n] = 0;
}

bool s3_is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

int s3_unhex(const char *s, unsigned char *out, size_t n)
{
	if (!s3_is_lower_hex(s, 2 * n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int hi = s3_hexval((unsigned char)s[2 * i]),
		    lo = s3_hexval((unsigned char)s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

bool s3_strcaseeq(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return false;
		if (x == 0)
			return true;
	}
}

bool s3_utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;
	while (i < n) {
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t len;
		uint32_t cp, min;
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}
