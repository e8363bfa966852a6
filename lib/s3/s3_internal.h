/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_internal.h — helpers shared inside lib/s3: a capped growing buffer with
 * a sticky error, RFC 3986 percent-encoding and strict decoding, hex.
 *
 * These see request bytes only, never secrets: nothing here wipes memory.
 */
#ifndef SEALVM_S3_INTERNAL_H
#define SEALVM_S3_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sealvm/macro.h"

/* A NUL-terminated byte buffer that refuses to grow past max (-E2BIG, sticky). */
struct s3_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
	int error; /* first error, 0 while fine */
};

#define S3_BUF_INIT(m)                                                                             \
	{                                                                                          \
		NULL, 0, 0, (m), 0                                                                 \
	}

void s3_buf_init(struct s3_buf *b, size_t max);
void s3_buf_done(struct s3_buf *b);
/* Appends @n bytes; returns the sticky error (0 while fine). */
int s3_buf_put(struct s3_buf *b, const void *p, size_t n);
int s3_buf_puts(struct s3_buf *b, const char *s);
int s3_buf_putc(struct s3_buf *b, char c);
int s3_buf_printf(struct s3_buf *b, const char *fmt, ...) _printf_(2, 3);
/* Hands out the data (never NULL on success) or returns the error; the buffer is reset. */
int s3_buf_steal(struct s3_buf *b, char **ret, size_t *ret_len);

static inline void s3_buf_donep(struct s3_buf *b)
{
	s3_buf_done(b);
}

/* RFC 3986 unreserved: A-Z a-z 0-9 - . _ ~ */
static inline bool s3_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* Value of a hex digit (either case), -1 otherwise. */
static inline int s3_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Appends @c percent-encoded unless unreserved (upper-case hex). */
int s3_buf_put_encoded_byte(struct s3_buf *b, unsigned char c);
/* Appends @n bytes, each through s3_buf_put_encoded_byte. */
int s3_buf_put_encoded(struct s3_buf *b, const void *p, size_t n);

/*
 * Decodes @n raw characters at @s into @out (room for @n bytes): %XX with two
 * hex digits of either case; '+' becomes a space when @plus_is_space. Returns
 * the decoded length, or -EINVAL for a bad escape.
 */
long s3_pct_decode(const char *s, size_t n, bool plus_is_space, char *out);

/* Lower-case hex of @n bytes into @out (2n + 1 bytes, NUL-terminated). */
void s3_hex(const unsigned char *in, size_t n, char *out);

/* True when the first @n characters of @s are lower-case hex digits. */
bool s3_is_lower_hex(const char *s, size_t n);

/* Decodes 2n lower-case hex digits into @n bytes; -EINVAL otherwise. */
int s3_unhex(const char *s, unsigned char *out, size_t n);

/* ASCII case-insensitive equality of NUL-terminated strings. */
bool s3_strcaseeq(const char *a, const char *b);

/* True when @n bytes at @s are valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool s3_utf8_valid(const char *s, size_t n);

/*
 * CRC32C on the pre-inverted register @c (s3_crc32c inverts around these):
 * the table version, the SSE4.2 version (x86-64 only; call it only when
 * s3_crc32c_has_hw()), and whether the CPU has the instruction. Exposed so
 * that the tests can compare the two.
 */
uint32_t s3_crc32c_sw(uint32_t c, const unsigned char *p, size_t n);
uint32_t s3_crc32c_hw(uint32_t c, const unsigned char *p, size_t n);
bool s3_crc32c_has_hw(void);

#endif
