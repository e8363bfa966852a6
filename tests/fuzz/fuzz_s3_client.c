// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_s3_client.c — what the S3 client reads from a server or a user: answer
 * XML (the element finder and the text decoder), S3 error bodies, the
 * endpoints table and cos:// URIs.
 *
 * The input's first byte picks the parser; the rest is the text. Invariants:
 * nothing reads past the input (ASan), a found element lies inside it, decoded
 * text is never longer than its source, an error body always yields a reason
 * and a message, and a parsed URI's parts obey the rules they were checked by.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/s3/s3_client_internal.h"
#include "sealvm/s3client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void xml(const char *p, size_t n)
{
	static const char *const names[] = {"Contents", "Key",	    "Error",	      "Code",
					    "Part",	"UploadId", "CommonPrefixes", "Prefix"};
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		const char *cur = p, *end = p + n, *in, *ie;
		unsigned guard = 0;
		while (s3c_xml_find(&cur, end, names[k], &in, &ie)) {
			if (in < p || ie > end || in > ie || cur > end || cur < in)
				abort();
			char *t = s3c_xml_decode(in, (size_t)(ie - in));
			if (t && strlen(t) > (size_t)(ie - in))
				abort();
			free(t);
			if (++guard > n + 1) /* the finder must always move forward */
				abort();
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *s, *url = NULL;

	if (size < 1 || size > 65536)
		return 0;
	s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	switch (data[0] % 4) {
	case 0:
		xml(s, size - 1);
		break;
	case 1: {
		int r = s3c_error_from(400 + data[0] % 200, s, size - 1, "rid", "NoSuchKey", &err);
		if (r >= 0 || !err.reason[0] || !err.message[0])
			abort();
		break;
	}
	case 2:
		if (s3c_endpoints_lookup(s, size - 1, "us-south", &url, &err) == 0 &&
		    strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
			abort();
		free(url);
		break;
	default: {
		struct s3c_uri u;
		if (s3c_uri_parse(s, &u, &err) == 0) {
			size_t bl = strlen(u.bucket);
			if (bl < 3 || bl > 63 || !u.region[0] || strlen(u.key) > 1024)
				abort();
			s3c_uri_done(&u);
		} else if (!err.reason[0]) {
			abort();
		}
		break;
	}
	}
	free(s);
	return 0;
}
