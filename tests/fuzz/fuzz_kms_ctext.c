// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_kms_ctext.c — the wrapped-DEK parser and the unwrap decryption path.
 *
 * The first byte picks what the rest is: 0 a base64 ciphertext (decoded,
 * then parsed), 1 a raw ciphertext blob, 2 a DEK text (the wrap plaintext
 * rules). A parsed ciphertext goes through the real decryption: its AAD is
 * built as the service builds it (fixed account, instance, key, version 1)
 * and the soft keystore decrypts it under a fixed root key; a seed made with
 * that key opens, anything else must fail with -EBADMSG. Checked: parsed
 * pieces tile the blob exactly and re-encode to the same text; refusals carry
 * a reason and never quote the input; accepted DEK texts are canonical and
 * re-encode to themselves.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/b64.h"
#include "sealvm/keystore.h"
#include "sealvm/secret.h"

#include "lib/kms/kms_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ACCOUNT "fuzzaccount0000000000000000000000"
#define INSTANCE "11111111-2222-4333-8444-555555555555"
#define KEY "66666666-7777-4888-8999-aaaaaaaaaaaa"

static struct keystore *ks;
static unsigned char ref[KEYSTORE_REF_MAX];
static size_t ref_len;

static void init(void)
{
	static struct sealvm_secret *master, *material;
	struct sealvm_err err = SEALVM_ERR_INIT;
	char name[KS_NAME_BUF];
	if (ks)
		return;
	/* Fixed keys, so that seeds made with them open (tests/fuzz/corpus/kms_ctext/README). */
	if (sealvm_secret_new(32, &master) < 0 || sealvm_secret_new(32, &material) < 0)
		abort();
	memset(master->data, 0x11, 32);
	master->len = 32;
	memset(material->data, 0x22, 32);
	material->len = 32;
	struct keystore_config kc = {.backend = "soft", .master = master};
	if (keystore_open(&kc, &ks, &err) < 0)
		abort();
	kms_version_name(INSTANCE, KEY, 1, name, sizeof(name));
	ref_len = sizeof(ref);
	if (keystore_key_create(ks, name, 32, material, ref, &ref_len, &err) < 0)
		abort();
}

static void no_echo(const struct sealvm_err *err, const uint8_t *data, size_t size)
{
	if (!err->reason[0] || !err->message[0])
		abort();
	if (size >= 8 && memmem(err->message, strlen(err->message), data, size))
		abort();
}

static void blob_case(const unsigned char *blob, size_t len)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct kms_ctext c;
	if (kms_ctext_parse(blob, len, &c, &err) < 0) {
		no_echo(&err, blob, len);
		if (strcmp(err.reason, "INVALID_FIELD_ERR:ciphertext") != 0)
			abort();
		return;
	}
	if (len < KMS_CTEXT_OVERHEAD + 1 || len > KMS_CTEXT_OVERHEAD + KMS_PLAINTEXT_MAX ||
	    memcmp(blob, KMS_CTEXT_MAGIC, 3) != 0 || blob[3] != KMS_CTEXT_FORMAT)
		abort();
	if (c.header != blob || c.iv != blob + KMS_CTEXT_HEADER ||
	    c.ct != c.iv + KEYSTORE_IV_BYTES || c.tag != c.ct + c.ct_len ||
	    c.tag + KEYSTORE_TAG_BYTES != blob + len || !kms_uuid_valid(c.version_id))
		abort();
	char *text = NULL;
	if (kms_ctext_encode(c.header, c.iv, c.ct, c.ct_len, c.tag, &text) < 0)
		abort();
	size_t n = strlen(text);
	unsigned char *back = NULL;
	size_t back_len;
	if (kms_ctext_decode(text, n, &back, &back_len, &err) < 0 || back_len != len ||
	    memcmp(back, blob, len) != 0)
		abort();
	free(back);
	free(text);

	/* The service's decryption path, as unwrap runs it. */
	unsigned char *aad = NULL;
	size_t aad_len;
	char name[KS_NAME_BUF];
	struct sealvm_secret *plain = NULL;
	if (kms_ctext_aad(c.header, ACCOUNT, INSTANCE, KEY, 1, NULL, 0, &aad, &aad_len) < 0)
		abort();
	kms_version_name(INSTANCE, KEY, 1, name, sizeof(name));
	sealvm_err_clear(&err);
	int r = keystore_decrypt(ks, name, ref, ref_len, aad, aad_len, c.iv, c.ct, c.ct_len, c.tag,
				 &plain, &err);
	if (r == 0) {
		if (!plain || plain->len != c.ct_len)
			abort();
		sealvm_secret_free(plain);
	} else if (r != -EBADMSG || plain) {
		abort();
	}
	free(aad);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	if (size < 1)
		return 0;
	init();
	const uint8_t *in = data + 1;
	size_t n = size - 1;
	switch (data[0] % 3) {
	case 0: {
		unsigned char *blob = NULL;
		size_t len;
		if (kms_ctext_decode((const char *)in, n, &blob, &len, &err) < 0) {
			no_echo(&err, in, n);
			return 0;
		}
		if (!sealvm_b64_is_canonical((const char *)in, n))
			abort();
		blob_case(blob, len);
		free(blob);
		break;
	}
	case 1:
		blob_case(in, n);
		break;
	default: {
		struct sealvm_secret *raw = NULL, *text = NULL;
		if (kms_plaintext_decode((const char *)in, n, &raw, &err) < 0) {
			no_echo(&err, in, n);
			if (raw)
				abort();
			return 0;
		}
		if (raw->len < 1 || raw->len > KMS_PLAINTEXT_MAX ||
		    !sealvm_b64_is_canonical((const char *)in, n) ||
		    kms_plaintext_encode(raw, &text) < 0 || text->len != n ||
		    memcmp(text->data, in, n) != 0)
			abort();
		sealvm_secret_free(raw);
		sealvm_secret_free(text);
	}
	}
	return 0;
}
