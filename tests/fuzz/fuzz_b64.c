// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_b64.c — base64/base64url decoding: never out of bounds, and every
 * accepted text is canonical (re-encoding gives the same text back).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	for (int url = 0; url <= 1; url++) {
		unsigned char *dec = malloc(sealvm_b64_decoded_max(size));
		long n = sealvm_b64_decode((const char *)data, size, dec, url);
		if (n >= 0) {
			char *enc = malloc(sealvm_b64_encoded_len((size_t)n, url) + 1);
			size_t e = sealvm_b64_encode(dec, (size_t)n, enc, url);
			if (e != size || memcmp(enc, data, size) != 0)
				abort(); /* accepted a non-canonical text */
			free(enc);
		}
		if (!url &&
		    sealvm_b64_is_canonical((const char *)data, size) != (n >= 0 && size > 0))
			abort();
		free(dec);
	}
	return 0;
}
