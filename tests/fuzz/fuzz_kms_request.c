// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_kms_request.c — the Key Protect request-body parsers (kms_request.c).
 *
 * The first byte picks the kind of body (create, wrap, unwrap, rotate, empty,
 * restore, key policy, instance policy, registration, import token), the
 * second the Content-Type among a few, the rest is the body. Checked: a
 * refusal has a reason (one of Key Protect's, or ours) and a message, and
 * holds nothing; an accepted body has its required parts (a create has a
 * name, an unwrap a ciphertext), its lists within their limits, and the
 * material it carried (plaintext, payload) copied to secret memory with its
 * text in the parsed document wiped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/kms/kms_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void wiped(json_t *obj, const char *name, const struct sealvm_secret *s)
{
	json_t *v = json_object_get(obj, name);
	if (!s)
		return;
	if (!json_is_string(v) || json_string_length(v) != s->len)
		abort();
	for (size_t i = 0; i < s->len; i++)
		if (json_string_value(v)[i] != 0)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = {
		NULL,
		"application/json",
		"application/vnd.ibm.kms.key+json",
		"application/vnd.ibm.kms.key_action+json; charset=utf-8",
		"text/plain",
	};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct kms_request q;
	if (size < 2)
		return 0;
	enum kms_req_kind kind = (enum kms_req_kind)(data[0] % KMS__REQ_MAX);
	const char *ct = types[data[1] % (sizeof(types) / sizeof(types[0]))];
	int r = kms_request_parse(kind, ct, data + 2, size - 2, &q, &err);
	if (r < 0) {
		if (!err.reason[0] || !err.message[0] || q.body || q.payload || q.plaintext ||
		    q.aliases || q.aad)
			abort();
		return 0;
	}
	switch (kind) {
	case KMS_REQ_CREATE: {
		if (!q.name || !q.body || q.n_aliases > KMS_ALIASES_PER_KEY)
			abort();
		json_t *res = json_array_get(json_object_get(q.body, "resources"), 0);
		wiped(res, "payload", q.payload);
		if ((q.encrypted_nonce || q.iv || q.algorithm) && (!q.payload || q.extractable))
			abort();
		break;
	}
	case KMS_REQ_WRAP:
		if (q.n_aad > KMS_AAD_MAX_ITEMS || (q.plaintext && !q.body))
			abort();
		wiped(q.body, "plaintext", q.plaintext);
		for (size_t i = 0; i < q.n_aad; i++)
			if (strlen(q.aad[i]) > KMS_AAD_ITEM_MAX)
				abort();
		break;
	case KMS_REQ_UNWRAP:
		if (!q.ciphertext || strlen(q.ciphertext) > KMS_CIPHERTEXT_MAX ||
		    q.n_aad > KMS_AAD_MAX_ITEMS)
			abort();
		break;
	case KMS_REQ_ROTATE:
		wiped(q.body, "payload", q.payload);
		if ((q.encrypted_nonce || q.iv || q.algorithm) && !q.payload)
			abort();
		break;
	case KMS_REQ_IMPORT_TOKEN:
		if (q.expiration_s < 1 || q.expiration_s > 86400 || q.max_retrievals < 1 ||
		    q.max_retrievals > 500)
			abort();
		break;
	default:
		break;
	}
	kms_request_done(&q);
	return 0;
}
