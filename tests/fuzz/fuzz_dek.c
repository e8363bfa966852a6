// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_dek.c — the DEK text rules: any input either validates (and then is
 * canonical base64 of 32-512 characters) or is refused with a reason; the
 * message never contains the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/b64.h"
#include "sealvm/dek.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = sealvm_dek_validate(data, size, "fuzz", &err);
	if (r == 0) {
		if (size < SEALVM_DEK_MIN_CHARS || size > SEALVM_DEK_MAX_CHARS)
			abort();
		if (!sealvm_b64_is_canonical((const char *)data, size))
			abort();
	} else {
		if (!err.reason[0] || !err.message[0])
			abort();
		if (size >= 8 && memmem(err.message, strlen(err.message), data, size))
			abort();
	}
	return 0;
}
