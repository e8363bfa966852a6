// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_s3_chunked.c — the streaming aws-chunked decoder.
 *
 * Byte 0 picks the mode: signed chunks chained on AWS's documented seed
 * (no trailer), signed chunks and trailer on the documented trailer seed
 * (x-amz-checksum-crc32c), or the unsigned trailer form (x-amz-checksum-crc32).
 * Byte 1 seeds the slicing. The rest is the body. The decoder must give the
 * same verdict, reason and decoded bytes whether the body arrives in one piece
 * or in slices: a split point must never change what is accepted.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/s3.h"
#include "sealvm/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

struct out {
	unsigned char *p;
	size_t n, cap;
};

static int sink(void *userdata, const void *d, size_t n)
{
	struct out *o = userdata;
	if (o->n + n > o->cap) {
		size_t cap = (o->n + n) * 2;
		unsigned char *p = realloc(o->p, cap);
		if (!p)
			return -ENOMEM;
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->n, d, n);
	o->n += n;
	return 0;
}

static int run(struct s3_chunked_config *cfg, const uint8_t *body, size_t n, unsigned seed,
	       struct out *o, struct sealvm_err *err)
{
	struct s3_chunked *d = NULL;
	int r;

	cfg->data = sink;
	cfg->userdata = o;
	r = s3_chunked_new(cfg, &d, err);
	if (r < 0)
		abort();
	for (size_t off = 0; off < n;) {
		size_t k = seed ? (size_t)(rand_r(&seed) % 97) + 1 : n;
		if (k > n - off)
			k = n - off;
		r = s3_chunked_feed(d, body + off, k, err);
		if (r < 0)
			break;
		off += k;
	}
	if (r >= 0)
		r = s3_chunked_finish(d, err);
	s3_chunked_free(d);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sealvm_secret *key;
	struct sealvm_err e1 = SEALVM_ERR_INIT, e2 = SEALVM_ERR_INIT;
	struct out o1 = {0}, o2 = {0};
	struct s3_chunked_config cfg = {0};

	if (size < 2 || size > 256 * 1024)
		return 0;
	if (!key) {
		struct sealvm_secret *sk = NULL;
		if (sealvm_secret_from(SK, strlen(SK), &sk) < 0 ||
		    sigv4_signing_key(sk, "20130524", "us-east-1", "s3", &key) < 0)
			abort();
		sealvm_secret_free(sk);
	}
	cfg.signing_key = key;
	cfg.amz_date = "20130524T000000Z";
	cfg.scope = "20130524/us-east-1/s3/aws4_request";
	cfg.decoded_length = -1;
	switch (data[0] % 3) {
	case 0:
		cfg.mode = SIGV4_PAYLOAD_STREAMING;
		cfg.seed_signature =
			"4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
		break;
	case 1:
		cfg.mode = SIGV4_PAYLOAD_STREAMING_TRAILER;
		cfg.seed_signature =
			"106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";
		cfg.trailer = "x-amz-checksum-crc32c";
		break;
	default:
		cfg.mode = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
		cfg.trailer = "x-amz-checksum-crc32";
		break;
	}
	int r1 = run(&cfg, data + 2, size - 2, 0, &o1, &e1);
	int r2 = run(&cfg, data + 2, size - 2, (unsigned)data[1] + 1, &o2, &e2);
	if (r1 == -ENOMEM || r2 == -ENOMEM)
		goto out;
	if (r1 != r2 || strcmp(e1.reason, e2.reason) != 0)
		abort();
	if (r1 == 0 && (o1.n != o2.n || (o1.n && memcmp(o1.p, o2.p, o1.n) != 0)))
		abort();
	if (r1 < 0 && (!e1.reason[0] || !e1.message[0]))
		abort();
out:
	free(o1.p);
	free(o2.p);
	return 0;
}
