// SPDX-License-Identifier: Apache-2.0
/*
 * b64.c — strict base64 and base64url (see b64.h).
 *
 * The symbol-to-value mapping is computed with arithmetic masks instead of a
 * table lookup, so that decoding key material does not leak it through the
 * cache; only the validity of the whole text decides the result. Structural
 * checks (length, padding position) depend on lengths only, which are public.
 */
#include <errno.h>
#include <stdint.h>

#include "sealvm/b64.h"
#include "sealvm/macro.h"

static inline unsigned ct_ge(unsigned x, unsigned y)
{
	return ((x - y) >> 31) ^ 1u; /* valid for x, y < 2^31 */
}

static inline unsigned ct_mask_range(unsigned x, unsigned a, unsigned b)
{
	/* 0xff iff a <= x <= b */
	return (unsigned)(-(int)(ct_ge(x, a) & ct_ge(b, x))) & 0xff;
}

static inline unsigned ct_eq(unsigned x, unsigned y)
{
	return (unsigned)(-(int)(((x ^ y) - 1u) >> 31)) & 0xff;
}

/* Value of a symbol, or 0x100 | garbage when it is not in the alphabet. */
static unsigned sym_value(unsigned c, bool url)
{
	unsigned v = 0, valid = 0;
	unsigned m;

	m = ct_mask_range(c, 'A', 'Z');
	v |= m & (c - 'A');
	valid |= m;
	m = ct_mask_range(c, 'a', 'z');
	v |= m & (c - 'a' + 26);
	valid |= m;
	m = ct_mask_range(c, '0', '9');
	v |= m & (c - '0' + 52);
	valid |= m;
	m = ct_eq(c, url ? '-' : '+');
	v |= m & 62;
	valid |= m;
	m = ct_eq(c, url ? '_' : '/');
	v |= m & 63;
	valid |= m;
	return v | ((~valid & 0xff) << 1 & 0x100);
}

static char sym_char(unsigned v, bool url)
{
	/* Encoding output is as public as its input's length, but keep it branch-free anyway. */
	unsigned c = v + 'A';
	c ^= (c ^ (v - 26 + 'a')) & -(unsigned)ct_ge(v, 26);
	c ^= (c ^ (v - 52 + '0')) & -(unsigned)ct_ge(v, 52);
	c ^= (c ^ (unsigned)(url ? '-' : '+')) & -(unsigned)(ct_eq(v, 62) & 1);
	c ^= (c ^ (unsigned)(url ? '_' : '/')) & -(unsigned)(ct_eq(v, 63) & 1);
	return (char)c;
}

size_t sealvm_b64_encoded_len(size_t n, bool url)
{
	if (url)
		return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
	return DIV_ROUND_UP(n, 3) * 4;
}

size_t sealvm_b64_decoded_max(size_t n)
{
	return n / 4 * 3 + 3;
}

size_t sealvm_b64_encode(const void *src, size_t n, char *dst, bool url)
{
	const unsigned char *s = src;
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t w = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		dst[o++] = sym_char(w >> 18 & 63, url);
		dst[o++] = sym_char(w >> 12 & 63, url);
		dst[o++] = sym_char(w >> 6 & 63, url);
		dst[o++] = sym_char(w & 63, url);
	}
	if (n - i == 1) {
		uint32_t w = (uint32_t)s[i] << 16;
		dst[o++] = sym_char(w >> 18 & 63, url);
		dst[o++] = sym_char(w >> 12 & 63, url);
		if (!url) {
			dst[o++] = '=';
			dst[o++] = '=';
		}
	} else if (n - i == 2) {
		uint32_t w = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		dst[o++] = sym_char(w >> 18 & 63, url);
		dst[o++] = sym_char(w >> 12 & 63, url);
		dst[o++] = sym_char(w >> 6 & 63, url);
		if (!url)
			dst[o++] = '=';
	}
	dst[o] = 0;
	return o;
}

long sealvm_b64_decode(const char *src, size_t n, void *dst, bool url)
{
	unsigned char *d = dst;
	size_t data_syms = n, o = 0;
	unsigned bad = 0;
	uint32_t acc = 0;
	unsigned nacc = 0;

	if (!url) {
		if (n % 4 != 0)
			return -EINVAL;
		if (n >= 1 && src[n - 1] == '=')
			data_syms--;
		if (n >= 2 && src[n - 2] == '=')
			data_syms--;
	} else if (n % 4 == 1) {
		return -EINVAL;
	}
	for (size_t i = 0; i < data_syms; i++) {
		unsigned v = sym_value((unsigned char)src[i], url);
		bad |= v >> 8;
		acc = acc << 6 | (v & 63);
		if (++nacc == 4) {
			d[o++] = (unsigned char)(acc >> 16);
			d[o++] = (unsigned char)(acc >> 8);
			d[o++] = (unsigned char)acc;
			acc = 0;
			nacc = 0;
		}
	}
	if (nacc == 2) {
		bad |= acc & 0xf; /* the 4 unused low bits must be zero */
		d[o++] = (unsigned char)(acc >> 4);
	} else if (nacc == 3) {
		bad |= acc & 0x3;
		d[o++] = (unsigned char)(acc >> 10);
		d[o++] = (unsigned char)(acc >> 2);
	} else if (nacc == 1) {
		bad = 1;
	}
	acc = 0;
	if (bad)
		return -EINVAL;
	return (long)o;
}

bool sealvm_b64_is_canonical(const char *src, size_t n)
{
	unsigned char buf[96];
	size_t done = 0;

	if (n == 0 || n % 4 != 0)
		return false;
	/* Decode in blocks so that no big buffer is needed; only the last block may hold '='. */
	while (done < n) {
		size_t take = MIN(n - done, (size_t)64);
		for (size_t i = done; i < done + take; i++)
			if (src[i] == '=' && i < n - 2)
				return false;
		long r = sealvm_b64_decode(src + done, take, buf, false);
		volatile unsigned char *vb = buf;
		for (size_t i = 0; i < sizeof(buf); i++)
			vb[i] = 0;
		if (r < 0)
			return false;
		done += take;
	}
	return true;
}
