// SPDX-License-Identifier: Apache-2.0
/*
 * dek.c — DEK text rules, loading and generation (see dek.h).
 *
 * Error messages describe which rule a DEK breaks, never its content.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "sealvm/b64.h"
#include "sealvm/dek.h"

int sealvm_dek_validate(const unsigned char *text, size_t len, const char *what,
			struct sealvm_err *err)
{
	if (len == 0)
		return sealvm_err_set(err, -EINVAL, "DEK_EMPTY",
				      "%s is empty: a DEK is base64 text of %d to %d characters",
				      what, SEALVM_DEK_MIN_CHARS, SEALVM_DEK_MAX_CHARS);
	if (memchr(text, '\n', len) || memchr(text, '\r', len))
		return sealvm_err_set(
			err, -EINVAL, "DEK_NEWLINE",
			"%s contains a line break: a DEK is one line with no newline at the end (write it with printf '%%s' or 'echo -n', or use 'sealvm dek generate')",
			what);
	if (len < SEALVM_DEK_MIN_CHARS)
		return sealvm_err_set(
			err, -EINVAL, "DEK_TOO_SHORT",
			"%s holds %zu characters: a DEK needs at least %d (at least %d random bytes in base64)",
			what, len, SEALVM_DEK_MIN_CHARS, SEALVM_DEK_MIN_BYTES);
	if (len > SEALVM_DEK_MAX_CHARS)
		return sealvm_err_set(err, -EINVAL, "DEK_TOO_LONG",
				      "%s holds %zu characters: a DEK may have at most %d", what,
				      len, SEALVM_DEK_MAX_CHARS);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = text[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
		if (!ok)
			return sealvm_err_set(
				err, -EINVAL, "DEK_NOT_BASE64",
				"%s is not base64: character %zu is outside A-Z a-z 0-9 + / =",
				what, i + 1);
	}
	if (!sealvm_b64_is_canonical((const char *)text, len))
		return sealvm_err_set(
			err, -EINVAL, "DEK_NOT_CANONICAL",
			"%s is not canonical padded base64 (length a multiple of 4, '=' only at the end, unused bits zero)",
			what);
	return 0;
}

int sealvm_dek_read_file(const char *path, struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *s = NULL;
	int r;

	/* Read a little past the limit so that "too long" is reported as such. */
	r = sealvm_secret_read_file(path, SEALVM_DEK_MAX_CHARS + 2, &s, err);
	if (r == -E2BIG) {
		sealvm_err_clear(err);
		return sealvm_err_set(err, -EINVAL, "DEK_TOO_LONG",
				      "DEK file %s is longer than %d characters", path,
				      SEALVM_DEK_MAX_CHARS);
	}
	if (r < 0)
		return r;
	char what[600];
	snprintf(what, sizeof(what), "DEK file %s", path);
	r = sealvm_dek_validate(s->data, s->len, what, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(s);
	return 0;
}

int sealvm_dek_generate(size_t nbytes, struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *raw = NULL, *text = NULL;
	int r;

	if (nbytes < SEALVM_DEK_MIN_BYTES || nbytes > SEALVM_DEK_MAX_BYTES)
		return sealvm_err_set(
			err, -EINVAL, "DEK_SIZE",
			"a DEK of %zu bytes would not give 32 to 512 base64 characters: use %d to %d bytes",
			nbytes, SEALVM_DEK_MIN_BYTES, SEALVM_DEK_MAX_BYTES);
	r = sealvm_secret_random(nbytes, &raw);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot generate random bytes");
	r = sealvm_secret_new(sealvm_b64_encoded_len(nbytes, false), &text);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot allocate secure memory");
	text->len = sealvm_b64_encode(raw->data, raw->len, (char *)text->data, false);
	*ret = TAKE_PTR(text);
	return 0;
}
