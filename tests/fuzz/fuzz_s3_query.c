// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_s3_query.c — the query-string parser and the SigV4 canonical query.
 *
 * Whatever s3_query_parse accepts must survive a round trip: every decoded
 * name and value, percent-encoded again, parses back to the same list. The
 * canonical query of any accepted input must be a fixed point (canonicalising
 * it again changes nothing), so the signer's normalised URL and the verifier's
 * view of it cannot disagree. Refusals carry a reason.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/s3/s3_internal.h"
#include "sealvm/s3.h"
#include "sealvm/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void roundtrip(const char *raw)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_query q, q2;
	struct s3_buf b = S3_BUF_INIT(1 << 20);
	char *again = NULL;

	int r = s3_query_parse(raw, &q, &err);
	if (r < 0) {
		if (r != -ENOMEM && (!err.reason[0] || !err.message[0] || q.n || q.params))
			abort();
		return;
	}
	for (size_t i = 0; i < q.n; i++) {
		if (strlen(q.params[i].name) == 0 && !q.params[i].has_value && q.params[i].value[0])
			abort();
		if (i)
			s3_buf_putc(&b, '&');
		s3_buf_put_encoded(&b, q.params[i].name, strlen(q.params[i].name));
		if (q.params[i].has_value) {
			s3_buf_putc(&b, '=');
			s3_buf_put_encoded(&b, q.params[i].value, strlen(q.params[i].value));
		}
	}
	if (s3_buf_steal(&b, &again, NULL) == 0) {
		/* An empty name without a value re-encodes to nothing: skip those inputs. */
		bool lossy = false;
		for (size_t i = 0; i < q.n; i++)
			lossy |= !q.params[i].name[0] && !q.params[i].has_value;
		if (!lossy && strlen(again) <= S3_QUERY_MAX) {
			if (s3_query_parse(again, &q2, &err) != 0 || q2.n != q.n)
				abort();
			for (size_t i = 0; i < q.n; i++)
				if (strcmp(q.params[i].name, q2.params[i].name) != 0 ||
				    strcmp(q.params[i].value, q2.params[i].value) != 0 ||
				    q.params[i].has_value != q2.params[i].has_value)
					abort();
			s3_query_done(&q2);
		}
		free(again);
	}
	s3_query_done(&q);
}

static void fixed_point(const char *raw)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *c1 = NULL, *c2 = NULL;
	for (int presigned = 0; presigned < 2; presigned++) {
		if (sigv4_canonical_query(raw, presigned, &c1, &err) != 0) {
			sealvm_err_clear(&err);
			continue;
		}
		if (sigv4_canonical_query(c1, presigned, &c2, &err) != 0 || strcmp(c1, c2) != 0)
			abort();
		free(c1);
		free(c2);
		c1 = c2 = NULL;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 2 * S3_QUERY_MAX || memchr(data, 0, size))
		return 0;
	char *raw = malloc(size + 1);
	if (!raw)
		return 0;
	memcpy(raw, data, size);
	raw[size] = 0;
	roundtrip(raw);
	fixed_point(raw);
	free(raw);
	return 0;
}
