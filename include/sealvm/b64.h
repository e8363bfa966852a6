/* SPDX-License-Identifier: Apache-2.0 */
/*
 * b64.h — base64 (RFC 4648 §4) and base64url (§5), strict.
 *
 * Decoding accepts only canonical text: the right alphabet, no whitespace,
 * padding exactly where §4 puts it (base64) or none at all (base64url), and
 * zero bits in the unused low bits of the last symbol. So a value has exactly
 * one text, and changing any character of the text changes the value or is
 * refused — what DEK texts (used verbatim as LUKS passphrases) and JWT
 * signatures need. Decoding runs in time independent of the symbols' values.
 */
#ifndef SEALVM_B64_H
#define SEALVM_B64_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the encoding of @n bytes (without NUL). */
size_t sealvm_b64_encoded_len(size_t n, bool url);
/* Upper bound of the decoding of @n characters. */
size_t sealvm_b64_decoded_max(size_t n);

/*
 * Encodes @n bytes of @src into @dst, which has room for
 * sealvm_b64_encoded_len(n, url) + 1 bytes; NUL-terminates. Returns the length.
 */
size_t sealvm_b64_encode(const void *src, size_t n, char *dst, bool url);

/*
 * Decodes @n characters of @src into @dst (room for sealvm_b64_decoded_max(n)).
 * Returns the decoded length, or -EINVAL for any non-canonical input.
 */
long sealvm_b64_decode(const char *src, size_t n, void *dst, bool url);

/* True iff @n characters at @src are canonical padded base64 (no decoding output kept). */
bool sealvm_b64_is_canonical(const char *src, size_t n);

#endif
