// SPDX-License-Identifier: Apache-2.0
/*
 * kms_ctext.c — the wrapped-DEK format, its additional data, and the rules
 * for the texts the wrap actions take (plaintext, aad).
 *
 * A ciphertext is base64 (canonical, padded) of
 *
 *   "SVK" | 0x01 | version uuid (16) | iv (12) | ct (n) | tag (16)
 *
 * where ct||tag is AES-GCM (in the keystore) of the DEK's bytes under the
 * root key version the uuid names, and the GCM additional data is
 *
 *   "sealvm-kms-wrap-v1" 0x00 | header (20) | lp(account) | lp(instance) |
 *   lp(key id) | version number (4, big endian) | count (2) | lp(aad[i])...
 *
 * with lp(s) = 2-byte big-endian length, then the bytes. The header is in
 * the AAD and the IV is GCM's own input, so every byte of a ciphertext is
 * authenticated; binding the account, instance and key id means a ciphertext
 * opens only under the key that made it (Key Protect lets any key holding
 * the same material open it: docs/internals/kms.md says why we differ).
 *
 * This file parses untrusted input (the fuzz target fuzz_kms_ctext drives
 * it): every length is checked before use, and no message quotes a
 * plaintext or says which part of a ciphertext failed authentication.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/b64.h"

#include "kms_internal.h"

#define AAD_LABEL "sealvm-kms-wrap-v1"

int kms_ctext_decode(const char *b64, size_t len, unsigned char **ret, size_t *ret_len,
		     struct sealvm_err *err)
{
	if (len == 0 || len > KMS_CIPHERTEXT_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' must be: the original base64 encoded "
				      "ciphertext from the wrap operation (%s)",
				      len ? "it is too long" : "it is empty");
	unsigned char *blob = malloc(sealvm_b64_decoded_max(len) + 1);
	if (!blob)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	long n = sealvm_b64_decode(b64, len, blob, false);
	if (n < 0) {
		free(blob);
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' must be: the original base64 encoded "
				      "ciphertext from the wrap operation (it is not canonical "
				      "padded base64)");
	}
	*ret = blob;
	*ret_len = (size_t)n;
	return 0;
}

int kms_ctext_parse(const unsigned char *blob, size_t len, struct kms_ctext *ret,
		    struct sealvm_err *err)
{
	if (len >= 1 && blob[0] == '{')
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' must be: the original base64 encoded "
				      "ciphertext from the wrap operation (this one is in another "
				      "key service's format; only this service's ciphertexts open "
				      "here)");
	if (len < KMS_CTEXT_OVERHEAD + 1)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' must be: the original base64 encoded "
				      "ciphertext from the wrap operation (it is too short: %zu "
				      "bytes, at least %d expected)",
				      len, KMS_CTEXT_OVERHEAD + 1);
	if (memcmp(blob, KMS_CTEXT_MAGIC, 3) != 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' must be: the original base64 encoded "
				      "ciphertext from the wrap operation (it does not start like "
				      "one)");
	if (blob[3] != KMS_CTEXT_FORMAT)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' must be: the original base64 encoded "
				      "ciphertext from the wrap operation (format %u is unknown "
				      "here; this service writes format %d)",
				      blob[3], KMS_CTEXT_FORMAT);
	if (len - KMS_CTEXT_OVERHEAD > KMS_PLAINTEXT_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' must be: the original base64 encoded "
				      "ciphertext from the wrap operation (it is too long)");
	ret->header = blob;
	kms_uuid_format(blob + 4, ret->version_id);
	ret->iv = blob + KMS_CTEXT_HEADER;
	ret->ct = ret->iv + KEYSTORE_IV_BYTES;
	ret->ct_len = len - KMS_CTEXT_OVERHEAD;
	ret->tag = ret->ct + ret->ct_len;
	return 0;
}

int kms_ctext_header(const char *version_id, unsigned char out[KMS_CTEXT_HEADER])
{
	memcpy(out, KMS_CTEXT_MAGIC, 3);
	out[3] = KMS_CTEXT_FORMAT;
	return kms_uuid_parse(version_id, out + 4);
}

static unsigned char *put_lp(unsigned char *p, const char *s, size_t n)
{
	p[0] = (unsigned char)(n >> 8);
	p[1] = (unsigned char)n;
	memcpy(p + 2, s, n);
	return p + 2 + n;
}

int kms_ctext_aad(const unsigned char header[KMS_CTEXT_HEADER], const char *account_id,
		  const char *instance, const char *key_id, int version, const char *const *aad,
		  size_t n_aad, unsigned char **ret, size_t *ret_len)
{
	const char *fixed[] = {account_id, instance, key_id};
	size_t total = sizeof(AAD_LABEL) + KMS_CTEXT_HEADER + 4 + 2;

	if (n_aad > KMS_AAD_MAX_ITEMS || version < 1)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(fixed); i++) {
		size_t n = strlen(fixed[i]);
		if (n > 0xffff)
			return -EINVAL;
		total += 2 + n;
	}
	for (size_t i = 0; i < n_aad; i++) {
		size_t n = strlen(aad[i]);
		if (n > 0xffff)
			return -EINVAL;
		total += 2 + n;
	}
	unsigned char *buf = malloc(total), *p = buf;
	if (!buf)
		return -ENOMEM;
	memcpy(p, AAD_LABEL, sizeof(AAD_LABEL)); /* with its NUL */
	p += sizeof(AAD_LABEL);
	memcpy(p, header, KMS_CTEXT_HEADER);
	p += KMS_CTEXT_HEADER;
	for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
		p = put_lp(p, fixed[i], strlen(fixed[i]));
	uint32_t v = (uint32_t)version;
	*p++ = (unsigned char)(v >> 24);
	*p++ = (unsigned char)(v >> 16);
	*p++ = (unsigned char)(v >> 8);
	*p++ = (unsigned char)v;
	*p++ = (unsigned char)(n_aad >> 8);
	*p++ = (unsigned char)n_aad;
	for (size_t i = 0; i < n_aad; i++)
		p = put_lp(p, aad[i], strlen(aad[i]));
	*ret = buf;
	*ret_len = (size_t)(p - buf);
	return 0;
}

int kms_ctext_encode(const unsigned char header[KMS_CTEXT_HEADER],
		     const unsigned char iv[KEYSTORE_IV_BYTES], const unsigned char *ct,
		     size_t ct_len, const unsigned char tag[KEYSTORE_TAG_BYTES], char **ret)
{
	size_t n = KMS_CTEXT_OVERHEAD + ct_len;
	_cleanup_free_ unsigned char *blob = malloc(n);
	if (!blob)
		return -ENOMEM;
	memcpy(blob, header, KMS_CTEXT_HEADER);
	memcpy(blob + KMS_CTEXT_HEADER, iv, KEYSTORE_IV_BYTES);
	memcpy(blob + KMS_CTEXT_HEADER + KEYSTORE_IV_BYTES, ct, ct_len);
	memcpy(blob + KMS_CTEXT_HEADER + KEYSTORE_IV_BYTES + ct_len, tag, KEYSTORE_TAG_BYTES);
	char *s = malloc(sealvm_b64_encoded_len(n, false) + 1);
	if (!s)
		return -ENOMEM; // cppcheck-suppress memleak ; blob is freed by its cleanup
				// attribute
	sealvm_b64_encode(blob, n, s, false);
	*ret = s;
	return 0;
}

void kms_version_name(const char *instance, const char *key_id, int version, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s/%d", instance, key_id, version);
}

int kms_b64_secret_decode(const char *text, size_t len, size_t max, const char *field,
			  struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *s = NULL;
	char reason[SEALVM_ERR_REASON_MAX];

	snprintf(reason, sizeof(reason), "INVALID_FIELD_ERR:%s", field);
	if (len == 0)
		return sealvm_err_set(err, -EINVAL, reason,
				      "The field '%s' must be: base64 encoded key material (it is "
				      "empty)",
				      field);
	if (len > sealvm_b64_encoded_len(max, false))
		return sealvm_err_set(err, -EINVAL, reason,
				      "The field '%s' must be: base64 encoded key material of at "
				      "most %zu bytes",
				      field, max);
	int r = sealvm_secret_new(sealvm_b64_decoded_max(len), &s);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "no memory for the %s", field);
	long n = sealvm_b64_decode(text, len, s->data, false);
	if (n > (long)max)
		return sealvm_err_set(err, -EINVAL, reason,
				      "The field '%s' must be: base64 encoded key material of at "
				      "most %zu bytes",
				      field, max);
	if (n <= 0)
		return sealvm_err_set(err, -EINVAL, reason,
				      "The field '%s' must be: base64 encoded key material "
				      "(canonical, padded base64 with no whitespace, so that it "
				      "comes back as exactly this text)",
				      field);
	s->len = (size_t)n;
	*ret = TAKE_PTR(s);
	return 0;
}

int kms_plaintext_decode(const char *text, size_t len, struct sealvm_secret **ret,
			 struct sealvm_err *err)
{
	if (len == 0)
		return sealvm_err_set(
			err, -EINVAL, "INVALID_FIELD_ERR:plaintext",
			"The field 'plaintext' must be: a base64 encoded key material "
			"(it is empty; omit it to have a new DEK made)");
	return kms_b64_secret_decode(text, len, KMS_PLAINTEXT_MAX, "plaintext", ret, err);
}

int kms_plaintext_encode(const struct sealvm_secret *raw, struct sealvm_secret **ret)
{
	struct sealvm_secret *s = NULL;
	int r = sealvm_secret_new(sealvm_b64_encoded_len(raw->len, false) + 1, &s);
	if (r < 0)
		return r;
	s->len = sealvm_b64_encode(raw->data, raw->len, (char *)s->data, false);
	*ret = s;
	return 0;
}

int kms_aad_check(const char *const *aad, size_t n, struct sealvm_err *err)
{
	if (n > KMS_AAD_MAX_ITEMS)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:aad",
				      "The field 'aad' must be: a list of at most %d strings",
				      KMS_AAD_MAX_ITEMS);
	for (size_t i = 0; i < n; i++)
		if (!aad[i] || strlen(aad[i]) > KMS_AAD_ITEM_MAX)
			return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:aad",
					      "The field 'aad' must be: strings of at most %d "
					      "bytes (item %zu is not)",
					      KMS_AAD_ITEM_MAX, i + 1);
	return 0;
}
