/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dek.h — the rules for a data encryption key (DEK) as text.
 *
 * A DEK travels as canonical, padded base64 text of 32–512 characters, one
 * line, no newline. The text itself (not the bytes it encodes) is the LUKS
 * passphrase of the customer's image, and it is what the key service wraps
 * and returns on unwrap, byte for byte; canonical form guarantees there is
 * exactly one text per key, so the round trip cannot change the passphrase.
 */
#ifndef SEALVM_DEK_H
#define SEALVM_DEK_H

#include <stddef.h>

#include "sealvm/err.h"
#include "sealvm/secret.h"

#define SEALVM_DEK_MIN_CHARS 32
#define SEALVM_DEK_MAX_CHARS 512
/* Raw byte counts whose padded base64 text is 32–512 characters. */
#define SEALVM_DEK_MIN_BYTES 22
#define SEALVM_DEK_MAX_BYTES 384
#define SEALVM_DEK_DEFAULT_BYTES 32

/*
 * Checks @len bytes at @text against the DEK rules. On failure returns
 * -EINVAL with one of the reasons DEK_EMPTY, DEK_NEWLINE, DEK_TOO_SHORT,
 * DEK_TOO_LONG, DEK_NOT_BASE64, DEK_NOT_CANONICAL; @what names the source
 * (a file name, "plaintext") in the message. The message never quotes the text.
 */
int sealvm_dek_validate(const unsigned char *text, size_t len, const char *what,
			struct sealvm_err *err);

/* Reads a DEK file into locked memory and validates it. */
int sealvm_dek_read_file(const char *path, struct sealvm_secret **ret, struct sealvm_err *err);

/* Generates @nbytes random bytes and returns their base64 text (SEALVM_DEK_MIN..MAX_BYTES). */
int sealvm_dek_generate(size_t nbytes, struct sealvm_secret **ret, struct sealvm_err *err);

#endif
