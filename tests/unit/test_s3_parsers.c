// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/s3's parsers: the aws-chunked decoder (AWS's two
 * documented chunked uploads with their chunk and trailer signatures, fed in
 * every kind of slicing; every way of tampering with a body; the unsigned
 * trailer form botocore sends), the checksums (published CRC32/CRC32C/SHA
 * vectors, the SSE4.2 CRC32C against the table one), the query parser, the
 * CompleteMultipartUpload parser (every named bad document, every truncation)
 * and the XML writer.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "lib/s3/s3_internal.h"
#include "sealvm/b64.h"
#include "sealvm/s3.h"
#include "sealvm/sigv4.h"

#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define AMZ_DATE "20130524T000000Z"
#define SCOPE "20130524/us-east-1/s3/aws4_request"

/* ---- a growing byte string ------------------------------------------------------------ */

struct bytes {
	char *p;
	size_t n;
};

static void add(struct bytes *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->n + n + 1);
	assert_non_null(b->p);
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void adds(struct bytes *b, const char *s)
{
	add(b, s, strlen(s));
}

static void addrep(struct bytes *b, char c, size_t n)
{
	char *t = malloc(n ? n : 1);
	memset(t, c, n);
	add(b, t, n);
	free(t);
}

/* Replaces the first @from in @b by @to (same length or not). */
static void replace(struct bytes *b, const char *from, const char *to)
{
	char *at = memmem(b->p, b->n, from, strlen(from));
	assert_non_null(at);
	struct bytes out = {0};
	add(&out, b->p, (size_t)(at - b->p));
	adds(&out, to);
	add(&out, at + strlen(from), b->n - (size_t)(at - b->p) - strlen(from));
	free(b->p);
	*b = out;
}

/* ---- the aws-chunked decoder ---------------------------------------------------------- */

static struct sealvm_secret *signing_key(void)
{
	struct sealvm_secret *sk = NULL, *key = NULL;
	assert_int_equal(sealvm_secret_from(SK, strlen(SK), &sk), 0);
	assert_int_equal(sigv4_signing_key(sk, "20130524", "us-east-1", "s3", &key), 0);
	sealvm_secret_free(sk);
	return key;
}

#define SEED1 "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
#define SEED2 "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"

/* AWS's example body: 64 KiB + 1 KiB of 'a', documented signatures. */
static struct bytes aws_body(bool trailer)
{
	struct bytes b = {0};
	adds(&b,
	     trailer ? "10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n"
		     : "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
	addrep(&b, 'a', 65536);
	adds(&b, "\r\n");
	adds(&b,
	     trailer ? "400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n"
		     : "400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
	addrep(&b, 'a', 1024);
	adds(&b, "\r\n");
	adds(&b,
	     trailer ? "0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n"
		     : "0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n");
	if (trailer)
		adds(&b,
		     "x-amz-checksum-crc32c:sOO8/Q==\r\n"
		     "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n");
	adds(&b, "\r\n");
	return b;
}

struct sink {
	struct bytes got;
	int fail_after; /* fail the call that would pass this many bytes; 0: never */
};

static int sink_data(void *userdata, const void *data, size_t len)
{
	struct sink *s = userdata;
	if (s->fail_after && s->got.n + len >= (size_t)s->fail_after)
		return -ENOSPC;
	add(&s->got, data, len);
	return 0;
}

struct dec {
	struct s3_chunked_config cfg;
	struct sealvm_secret *key;
	struct sink sink;
};

static void dec_init(struct dec *d, enum sigv4_payload mode, const char *seed, const char *trailer,
		     int64_t declared)
{
	memset(d, 0, sizeof(*d));
	d->key = signing_key();
	d->cfg.mode = mode;
	d->cfg.signing_key = d->key;
	d->cfg.amz_date = AMZ_DATE;
	d->cfg.scope = SCOPE;
	d->cfg.seed_signature = seed;
	d->cfg.trailer = trailer;
	d->cfg.decoded_length = declared;
	d->cfg.data = sink_data;
	d->cfg.userdata = &d->sink;
}

static void dec_done(struct dec *d)
{
	sealvm_secret_free(d->key);
	free(d->sink.got.p);
	memset(d, 0, sizeof(*d));
}

/*
 * Decodes @body fed in slices of @slice bytes (0: random sizes from @seed).
 * Returns the first error (of feed or finish), with its reason in @err.
 */
static int decode(struct dec *d, const struct bytes *body, size_t slice, unsigned seed,
		  struct sealvm_err *err)
{
	struct s3_chunked *c = NULL;
	int r;

	sealvm_err_clear(err);
	free(d->sink.got.p);
	d->sink.got = (struct bytes){0};
	r = s3_chunked_new(&d->cfg, &c, err);
	if (r < 0)
		return r;
	srand(seed);
	for (size_t off = 0; off < body->n;) {
		size_t n = slice ? slice : (size_t)(rand() % 9000) + 1;
		if (n > body->n - off)
			n = body->n - off;
		r = s3_chunked_feed(c, body->p + off, n, err);
		if (r < 0)
			goto out;
		off += n;
	}
	r = s3_chunked_finish(c, err);
	if (r == 0)
		assert_int_equal(s3_chunked_decoded(c), d->sink.got.n);
out:
	if (r < 0) {
		/* Sticky: the decoder keeps answering the same error. */
		struct sealvm_err again = SEALVM_ERR_INIT;
		assert_int_equal(s3_chunked_feed(c, "x", 1, &again), r);
		assert_string_equal(again.reason, err->reason);
	}
	s3_chunked_free(c);
	return r;
}

static void expect_decode(struct dec *d, const struct bytes *body, int code, const char *reason)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = decode(d, body, 0, 7, &err);
	if (r != code || (reason && strcmp(err.reason, reason) != 0))
		fail_msg("decode: got %d %s (%s), want %d %s", r, err.reason, err.message, code,
			 reason ? reason : "");
}

static void test_chunked_aws_example(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct bytes body = aws_body(false);
	struct dec d;
	const size_t slices[] = {0, 1, 2, 3, 7, 64, 85, 86, 87, 4096, 65536, 65621, 70000, 1 << 20};

	dec_init(&d, SIGV4_PAYLOAD_STREAMING, SEED1, NULL, 66560);
	for (size_t i = 0; i < sizeof(slices) / sizeof(slices[0]); i++) {
		for (unsigned seed = 0; seed < (slices[i] ? 1u : 20u); seed++) {
			int r = decode(&d, &body, slices[i], seed, &err);
			if (r != 0)
				fail_msg("slice %zu seed %u: %s %s", slices[i], seed, err.reason,
					 err.message);
			assert_int_equal(d.sink.got.n, 66560);
			for (size_t k = 0; k < 66560; k++)
				if (d.sink.got.p[k] != 'a')
					fail_msg("decoded byte %zu is wrong", k);
		}
	}
	/* Undeclared length is fine too. */
	d.cfg.decoded_length = -1;
	assert_int_equal(decode(&d, &body, 1000, 0, &err), 0);
	dec_done(&d);
	free(body.p);
}

static void test_chunked_aws_trailer_example(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct bytes body = aws_body(true);
	struct s3_chunked *c = NULL;
	enum s3_checksum_alg alg;
	const char *b64;
	struct dec d;

	dec_init(&d, SIGV4_PAYLOAD_STREAMING_TRAILER, SEED2, "x-amz-checksum-crc32c", 66560);
	for (unsigned seed = 0; seed < 20; seed++)
		assert_int_equal(decode(&d, &body, seed < 10 ? seed + 1 : 0, seed, &err), 0);
	assert_int_equal(d.sink.got.n, 66560);
	/* The trailer's value is what the decoder checked the CRC32C against. */
	assert_int_equal(s3_chunked_new(&d.cfg, &c, &err), 0);
	assert_int_equal(s3_chunked_trailer(c, &alg, &b64), -ENOENT);
	assert_int_equal(s3_chunked_feed(c, body.p, body.n, &err), 0);
	assert_int_equal(s3_chunked_finish(c, &err), 0);
	assert_int_equal(s3_chunked_trailer(c, &alg, &b64), 0);
	assert_int_equal(alg, S3_CHECKSUM_CRC32C);
	assert_string_equal(b64, "sOO8/Q==");
	s3_chunked_free(c);
	dec_done(&d);
	free(body.p);
}

static void test_chunked_tampering(void **state)
{
	struct dec d;
	struct bytes b;
	const char *sdnm = "SignatureDoesNotMatch";

	dec_init(&d, SIGV4_PAYLOAD_STREAMING, SEED1, NULL, 66560);
	/* A data byte changed. */
	b = aws_body(false);
	b.p[100] = 'b';
	expect_decode(&d, &b, -EPERM, sdnm);
	free(b.p);
	/* A chunk signature changed, or another chunk's. */
	b = aws_body(false);
	replace(&b, "0055627c", "0055627d");
	expect_decode(&d, &b, -EPERM, sdnm);
	free(b.p);
	b = aws_body(false);
	replace(&b, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
		"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
	expect_decode(&d, &b, -EPERM, sdnm);
	free(b.p);
	/* Another seed (another request) does not chain. */
	d.cfg.seed_signature = SEED2;
	b = aws_body(false);
	expect_decode(&d, &b, -EPERM, sdnm);
	d.cfg.seed_signature = SEED1;
	free(b.p);
	/* A chunk dropped: the final chunk's signature no longer chains. */
	b = (struct bytes){0};
	adds(&b,
	     "10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
	addrep(&b, 'a', 65536);
	adds(&b,
	     "\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
	d.cfg.decoded_length = -1;
	expect_decode(&d, &b, -EPERM, sdnm);
	free(b.p);
	/* Chunks reordered. */
	b = (struct bytes){0};
	adds(&b,
	     "400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n");
	addrep(&b, 'a', 1024);
	adds(&b,
	     "\r\n10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n");
	addrep(&b, 'a', 65536);
	adds(&b,
	     "\r\n0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n");
	expect_decode(&d, &b, -EPERM, sdnm);
	free(b.p);
	d.cfg.decoded_length = 66560;

	/* Truncations: at every structural point the body is incomplete. */
	struct bytes full = aws_body(false);
	const size_t cuts[] = {0,     5,     87,	 1000,	     65623,	65624,
			       65625, 66600, full.n - 3, full.n - 2, full.n - 1};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		struct bytes t = {0};
		add(&t, full.p, cuts[i]);
		struct sealvm_err err = SEALVM_ERR_INIT;
		int r = decode(&d, &t, 0, 3, &err);
		if (r != -EBADMSG || strcmp(err.reason, "IncompleteBody") != 0)
			fail_msg("cut at %zu: %d %s", cuts[i], r, err.reason);
		free(t.p);
	}
	free(full.p);
	/* Data after the end. */
	b = aws_body(false);
	adds(&b, "\r\n");
	expect_decode(&d, &b, -EBADMSG, "IncompleteBody");
	free(b.p);
	/* The declared length: less or more than sent. */
	b = aws_body(false);
	d.cfg.decoded_length = 66559;
	expect_decode(&d, &b, -EBADMSG, "IncompleteBody");
	d.cfg.decoded_length = 66561;
	expect_decode(&d, &b, -EBADMSG, "IncompleteBody");
	d.cfg.decoded_length = 66560;
	free(b.p);

	/* Framing. */
	const char *framing[][2] = {
		{"10000;chunk-signature=", "10000 ;chunk-signature="},
		{"10000;chunk-signature=", "10000;chunk-signature ="},
		{"10000;chunk-signature=", "10000;Chunk-Signature="},
		{"10000;chunk-signature=", "0x10000;chunk-signature="},
		{"10000;chunk-signature=", ";chunk-signature="},
		{"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
		 "10000"},
		{"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
		 "10000;chunk-signature=AD80C730A21E5B8D04586A2213DD63B9A0E99E0E2307B0ADE35A65485A288648"},
		{"a288648\r\n", "a288648\n"},
		{"a288648\r\n", "a288648\r\r\n"},
		{"a288648\r\n", "a288648;x=1\r\n"},
		{"aaaa\r\n400", "aaaa\n400"},
		{"aaaa\r\n400", "aaaa\r400"},
		{"aaaa\r\n400", "aaaa400"},
		{"9df9\r\n\r\n", "9df9\r\n\n"},
		{"9df9\r\n\r\n", "9df9\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"},
	};
	for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		b = aws_body(false);
		replace(&b, framing[i][0], framing[i][1]);
		int r = decode(&d, &b, 0, (unsigned)i, &err);
		if (r >= 0 || strcmp(err.reason, "InvalidRequest") != 0)
			fail_msg("framing #%zu: got %d %s (%s)", i, r, err.reason, err.message);
		free(b.p);
	}
	/* Sizes: over 16 hex digits, over 64 MiB, a long line. */
	const char *sizes[][2] = {
		{"10000;", "00000000000010000;"},
		{"10000;", "4000001;"},
	};
	b = aws_body(false);
	replace(&b, sizes[0][0], sizes[0][1]);
	expect_decode(&d, &b, -EBADMSG, "InvalidRequest");
	free(b.p);
	b = aws_body(false);
	replace(&b, sizes[1][0], sizes[1][1]);
	expect_decode(&d, &b, -EBADMSG, "InvalidChunkSizeError");
	free(b.p);
	b = (struct bytes){0};
	addrep(&b, '1', 300);
	expect_decode(&d, &b, -EBADMSG, "InvalidRequest");
	free(b.p);
	dec_done(&d);
}

/* Encodes @data as aws-chunked with the given chunk sizes (0-terminated list). */
static struct bytes encode(const char *data, size_t len, const size_t *sizes, bool sign,
			   const char *seed, const char *trailer_line, bool sign_trailer)
{
	struct sealvm_secret *key = signing_key();
	char prev[65], sig[65];
	struct bytes b = {0};
	size_t off = 0;

	snprintf(prev, sizeof(prev), "%s", seed ? seed : "");
	for (size_t i = 0;; i++) {
		size_t n = sizes[i] ? MIN(sizes[i], len - off) : 0;
		char line[128];
		unsigned char md[32];
		if (sizes[i] == 0)
			n = 0;
		SHA256((const unsigned char *)data + off, n, md);
		if (sign) {
			assert_int_equal(sigv4_chunk_signature(key, AMZ_DATE, SCOPE, prev, md, sig),
					 0);
			snprintf(line, sizeof(line), "%zx;chunk-signature=%s\r\n", n, sig);
			memcpy(prev, sig, 65);
		} else {
			snprintf(line, sizeof(line), "%zx\r\n", n);
		}
		adds(&b, line);
		if (n == 0)
			break;
		add(&b, data + off, n);
		adds(&b, "\r\n");
		off += n;
	}
	if (trailer_line) {
		adds(&b, trailer_line);
		adds(&b, "\r\n");
		if (sign_trailer) {
			unsigned char md[32];
			char t[256];
			snprintf(t, sizeof(t), "%s\n", trailer_line);
			SHA256((const unsigned char *)t, strlen(t), md);
			assert_int_equal(
				sigv4_trailer_signature(key, AMZ_DATE, SCOPE, prev, md, sig), 0);
			adds(&b, "x-amz-trailer-signature:");
			adds(&b, sig);
			adds(&b, "\r\n");
		}
	}
	adds(&b, "\r\n");
	sealvm_secret_free(key);
	return b;
}

static char *b64_of(const unsigned char *d, size_t n)
{
	char *s = malloc(sealvm_b64_encoded_len(n, false) + 1);
	sealvm_b64_encode(d, n, s, false);
	return s;
}

static void test_chunked_small_chunks(void **state)
{
	static char data[70000];
	struct dec d;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	dec_init(&d, SIGV4_PAYLOAD_STREAMING, SEED1, NULL, sizeof(data));
	/* Only the last data chunk may be under 8 KiB... */
	const size_t ok[] = {8192, 8192, 50000, 3616, 0};
	struct bytes b = encode(data, sizeof(data), ok, true, SEED1, NULL, false);
	expect_decode(&d, &b, 0, NULL);
	assert_memory_equal(d.sink.got.p, data, sizeof(data));
	free(b.p);
	/* ...a small one before another is refused, although correctly signed. */
	const size_t small[] = {8191, 61809, 0};
	b = encode(data, sizeof(data), small, true, SEED1, NULL, false);
	expect_decode(&d, &b, -EBADMSG, "InvalidChunkSizeError");
	free(b.p);
	/* Unsigned bodies (botocore's trailer form) may use any sizes. */
	dec_done(&d);
	dec_init(&d, SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER, NULL, "x-amz-checksum-crc32",
		 sizeof(data));
	struct s3_checksum c;
	unsigned char dg[S3_CHECKSUM_MAX];
	assert_int_equal(s3_checksum_init(&c, S3_CHECKSUM_CRC32), 0);
	s3_checksum_update(&c, data, sizeof(data));
	assert_int_equal(s3_checksum_final(&c, dg), 4);
	char *v = b64_of(dg, 4), line[128];
	snprintf(line, sizeof(line), "x-amz-checksum-crc32:%s", v);
	b = encode(data, sizeof(data), small, false, NULL, line, false);
	expect_decode(&d, &b, 0, NULL);
	assert_memory_equal(d.sink.got.p, data, sizeof(data));
	free(b.p);
	free(v);
	dec_done(&d);
}

static void test_chunked_trailers(void **state)
{
	static char data[20000];
	const size_t sizes[] = {10000, 10000, 0};
	const enum s3_checksum_alg algs[] = {S3_CHECKSUM_CRC32, S3_CHECKSUM_CRC32C,
					     S3_CHECKSUM_SHA1, S3_CHECKSUM_SHA256};
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 13 + 1);

	for (size_t a = 0; a < 4; a++) {
		for (int signed_mode = 0; signed_mode < 2; signed_mode++) {
			enum sigv4_payload mode =
				signed_mode ? SIGV4_PAYLOAD_STREAMING_TRAILER
					    : SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
			const char *name = s3_checksum_header(algs[a]);
			struct s3_checksum c;
			unsigned char dg[S3_CHECKSUM_MAX];
			char line[256], bad_line[256];
			struct dec d;
			struct bytes b;

			assert_int_equal(s3_checksum_init(&c, algs[a]), 0);
			s3_checksum_update(&c, data, sizeof(data));
			int n = s3_checksum_final(&c, dg);
			assert_int_equal((size_t)n, s3_checksum_len(algs[a]));
			char *v = b64_of(dg, (size_t)n);
			snprintf(line, sizeof(line), "%s:%s", name, v);
			dg[0] ^= 1;
			char *w = b64_of(dg, (size_t)n);
			snprintf(bad_line, sizeof(bad_line), "%s:%s", name, w);

			dec_init(&d, mode, SEED2, name, sizeof(data));
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, line,
				   signed_mode);
			expect_decode(&d, &b, 0, NULL);
			free(b.p);
			/* A wrong checksum, correctly signed: BadDigest. */
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, bad_line,
				   signed_mode);
			expect_decode(&d, &b, -EBADMSG, "BadDigest");
			free(b.p);
			/* The trailer changed after signing: the trailer signature breaks. */
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, line,
				   signed_mode);
			replace(&b, line, bad_line);
			expect_decode(&d, &b, signed_mode ? -EPERM : -EBADMSG,
				      signed_mode ? "SignatureDoesNotMatch" : "BadDigest");
			free(b.p);
			/* No trailer; another trailer than declared; two; an extra line. */
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, NULL, false);
			expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
			free(b.p);
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, line,
				   signed_mode);
			replace(&b, name,
				a == 0 ? "x-amz-checksum-crc32c" : "x-amz-checksum-crc32");
			expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
			free(b.p);
			char two[600];
			snprintf(two, sizeof(two), "%s\r\n%s", line, line);
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, line,
				   signed_mode);
			replace(&b, line, two);
			expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
			free(b.p);
			snprintf(two, sizeof(two), "%s\r\nx-amz-meta-x:1", line);
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, line,
				   signed_mode);
			replace(&b, line, two);
			expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
			free(b.p);
			/* A value that is not base64 of the right size; a space after ':'. */
			snprintf(two, sizeof(two), "%s:%sAAAA", name, v);
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, line,
				   signed_mode);
			replace(&b, line, two);
			expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
			free(b.p);
			snprintf(two, sizeof(two), "%s: %s", name, v);
			b = encode(data, sizeof(data), sizes, signed_mode, SEED2, line,
				   signed_mode);
			replace(&b, line, two);
			expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
			free(b.p);
			if (signed_mode) {
				/* The trailer signature missing, wrong, not last. */
				b = encode(data, sizeof(data), sizes, true, SEED2, line, false);
				expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
				free(b.p);
				b = encode(data, sizeof(data), sizes, true, SEED2, line, true);
				replace(&b,
					"x-amz-trailer-signature:", "x-amz-trailer-signature:0");
				expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
				free(b.p);
				b = encode(data, sizeof(data), sizes, true, SEED2, line, true);
				char *at = memmem(b.p, b.n, "x-amz-trailer-signature:", 24);
				assert_non_null(at);
				at += 24;
				at[0] = at[0] == '0' ? '1' : '0';
				expect_decode(&d, &b, -EPERM, "SignatureDoesNotMatch");
				free(b.p);
			} else {
				/* A signature line where none can be checked. */
				b = encode(data, sizeof(data), sizes, false, NULL, line, false);
				replace(&b, line,
					"x-amz-trailer-signature:"
					"d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435");
				expect_decode(&d, &b, -EBADMSG, "MalformedTrailerError");
				free(b.p);
				/* Chunk signatures in an unsigned body. */
				b = encode(data, sizeof(data), sizes, true, SEED2, line, false);
				expect_decode(&d, &b, -EBADMSG, "InvalidRequest");
				free(b.p);
			}
			free(v);
			free(w);
			dec_done(&d);
		}
	}
}

static void test_chunked_config_and_sink(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_chunked *c = NULL;
	struct bytes b = aws_body(false);
	struct dec d;

	dec_init(&d, SIGV4_PAYLOAD_STREAMING, SEED1, NULL, 66560);
	/* The sink's error stops decoding and is returned as is. */
	d.sink.fail_after = 70000 - 9000;
	assert_int_equal(decode(&d, &b, 4096, 0, &err), -ENOSPC);
	d.sink.fail_after = 0;
	/* Configurations that do not fit their mode. */
	struct s3_chunked_config bad = d.cfg;
	bad.mode = SIGV4_PAYLOAD_SHA256;
	assert_int_equal(s3_chunked_new(&bad, &c, &err), -EINVAL);
	bad = d.cfg;
	bad.signing_key = NULL;
	assert_int_equal(s3_chunked_new(&bad, &c, &err), -EINVAL);
	bad = d.cfg;
	bad.seed_signature = "abc";
	assert_int_equal(s3_chunked_new(&bad, &c, &err), -EINVAL);
	bad = d.cfg;
	bad.trailer = "x-amz-checksum-crc32";
	assert_int_equal(s3_chunked_new(&bad, &c, &err), -EINVAL);
	bad = d.cfg;
	bad.mode = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
	bad.trailer = "content-md5";
	assert_int_equal(s3_chunked_new(&bad, &c, &err), -EINVAL);
	bad.trailer = NULL;
	assert_int_equal(s3_chunked_new(&bad, &c, &err), -EINVAL);
	bad = d.cfg;
	bad.data = NULL;
	assert_int_equal(s3_chunked_new(&bad, &c, &err), -EINVAL);
	assert_null(c);
	s3_chunked_free(NULL);
	dec_done(&d);
	free(b.p);
}

/* ---- checksums ------------------------------------------------------------------------ */

static uint32_t crc32c_of(const void *p, size_t n)
{
	return s3_crc32c(0, p, n);
}

static void test_crc32c(void **state)
{
	unsigned char buf[32];
	assert_int_equal(crc32c_of("123456789", 9), 0xe3069283);
	memset(buf, 0, 32);
	assert_int_equal(crc32c_of(buf, 32), 0x8a9136aa);
	memset(buf, 0xff, 32);
	assert_int_equal(crc32c_of(buf, 32), 0x62a8ab43);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	assert_int_equal(crc32c_of(buf, 32), 0x46dd794e);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)(31 - i);
	assert_int_equal(crc32c_of(buf, 32), 0x113fdb5c);
	assert_int_equal(crc32c_of("", 0), 0);
	/* Continuation: in pieces as in one go. */
	assert_int_equal(s3_crc32c(s3_crc32c(0, "1234", 4), "56789", 5), 0xe3069283);

	/* The SSE4.2 and table versions agree on every length and alignment. */
	unsigned char *big = malloc(5000);
	for (int i = 0; i < 5000; i++)
		big[i] = (unsigned char)(rand() & 0xff);
	for (size_t off = 0; off < 9; off++)
		for (size_t n = 0; n < 300; n += 1 + n / 17)
			assert_int_equal(s3_crc32c_sw(~0u, big + off, n),
					 s3_crc32c_hw(~0u, big + off, n));
	assert_int_equal(s3_crc32c_sw(~0u, big, 5000), s3_crc32c_hw(~0u, big, 5000));
	print_message("CRC32C: %s\n", s3_crc32c_has_hw() ? "SSE4.2" : "table only");
	free(big);
}

static void digest_is(enum s3_checksum_alg alg, const char *in, const char *hex)
{
	struct s3_checksum c;
	unsigned char d[S3_CHECKSUM_MAX];
	char got[2 * S3_CHECKSUM_MAX + 1];
	assert_int_equal(s3_checksum_init(&c, alg), 0);
	/* Fed in two pieces. */
	size_t n = strlen(in);
	s3_checksum_update(&c, in, n / 2);
	s3_checksum_update(&c, in + n / 2, n - n / 2);
	int len = s3_checksum_final(&c, d);
	assert_int_equal((size_t)len, s3_checksum_len(alg));
	s3_hex(d, (size_t)len, got);
	assert_string_equal(got, hex);
	s3_checksum_done(&c);
}

static void test_checksums(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_checksum c;

	digest_is(S3_CHECKSUM_CRC32, "123456789", "cbf43926");
	digest_is(S3_CHECKSUM_CRC32C, "123456789", "e3069283");
	digest_is(S3_CHECKSUM_SHA1, "abc", "a9993e364706816aba3e25717850c26c9cd0d89d");
	digest_is(S3_CHECKSUM_SHA256, "abc",
		  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	digest_is(S3_CHECKSUM_MD5, "", "d41d8cd98f00b204e9800998ecf8427e");
	assert_int_equal(s3_checksum_init(&c, S3_CHECKSUM_NONE), -EINVAL);
	assert_int_equal(s3_checksum_init(&c, (enum s3_checksum_alg)99), -EINVAL);

	/* Declared values: right, wrong, malformed. */
	const struct {
		enum s3_checksum_alg alg;
		const char *b64;
		int code;
		const char *reason;
	} cases[] = {
		{S3_CHECKSUM_CRC32, "y/Q5Jg==", 0, NULL},
		{S3_CHECKSUM_CRC32, "y/Q5Jw==", -EBADMSG, "BadDigest"},
		{S3_CHECKSUM_CRC32, "y/Q5Jh==", -EINVAL, "InvalidDigest"}, /* non-canonical */
		{S3_CHECKSUM_CRC32, "y/Q5Jg", -EINVAL, "InvalidDigest"},
		{S3_CHECKSUM_CRC32, "y/Q5JgAA", -EINVAL, "InvalidDigest"},
		{S3_CHECKSUM_CRC32, "", -EINVAL, "InvalidDigest"},
		{S3_CHECKSUM_CRC32C, "4waSgw==", 0, NULL},
		{S3_CHECKSUM_SHA256, "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=", 0, NULL},
		{S3_CHECKSUM_SHA256, "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiV=", -EINVAL,
		 "InvalidDigest"},
		{S3_CHECKSUM_MD5, "JfnnlDI7RTiF9RgfG2JNCw==", 0, NULL},
		{S3_CHECKSUM_MD5, "JfnnlDI7RTiF9RgfG2JNCx==", -EINVAL, "InvalidDigest"},
		{S3_CHECKSUM_MD5, "AfnnlDI7RTiF9RgfG2JNCw==", -EBADMSG, "BadDigest"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(s3_checksum_init(&c, cases[i].alg), 0);
		s3_checksum_update(&c, "123456789", 9);
		int r = s3_checksum_verify_b64(&c, cases[i].b64, &err);
		if (r != cases[i].code || (cases[i].reason && strcmp(err.reason, cases[i].reason)))
			fail_msg("case %zu: %d %s", i, r, err.reason);
		s3_checksum_done(&c);
	}
	/* Names. */
	assert_int_equal(s3_checksum_from_header("X-Amz-Checksum-CRC32C"), S3_CHECKSUM_CRC32C);
	assert_int_equal(s3_checksum_from_header("x-amz-checksum-sha256"), S3_CHECKSUM_SHA256);
	assert_int_equal(s3_checksum_from_header("x-amz-checksum-crc64nvme"), S3_CHECKSUM_NONE);
	assert_int_equal(s3_checksum_from_header("content-md5"), S3_CHECKSUM_NONE);
	assert_int_equal(s3_checksum_from_header(NULL), S3_CHECKSUM_NONE);
	assert_int_equal(s3_checksum_from_algorithm("CRC32"), S3_CHECKSUM_CRC32);
	assert_int_equal(s3_checksum_from_algorithm("SHA1"), S3_CHECKSUM_SHA1);
	assert_int_equal(s3_checksum_from_algorithm("crc32"), S3_CHECKSUM_NONE);
	assert_string_equal(s3_checksum_header(S3_CHECKSUM_SHA1), "x-amz-checksum-sha1");
	assert_null(s3_checksum_header(S3_CHECKSUM_NONE));
}

/* ---- the query parser ----------------------------------------------------------------- */

static void test_query(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_query q;
	const char *v;

	assert_int_equal(s3_query_parse("list-type=2&prefix=a%20b+c%2Bd&delimiter=%2F&fetch-owner"
					"&&start-after=&x=%E2%82%AC=",
					&q, &err),
			 0);
	assert_int_equal(q.n, 6);
	assert_int_equal(s3_query_get(&q, "prefix", &v, &err), 0);
	assert_string_equal(v, "a b c+d");
	assert_int_equal(s3_query_get(&q, "delimiter", &v, &err), 0);
	assert_string_equal(v, "/");
	assert_int_equal(s3_query_get(&q, "fetch-owner", &v, &err), 0);
	assert_string_equal(v, "");
	assert_false(q.params[3].has_value);
	assert_true(q.params[4].has_value);
	assert_int_equal(s3_query_get(&q, "x", &v, &err), 0);
	assert_string_equal(v, "\xe2\x82\xac=");
	assert_int_equal(s3_query_get(&q, "Prefix", &v, &err), -ENOENT);
	assert_true(s3_query_has(&q, "list-type"));
	assert_false(s3_query_has(&q, "uploads"));
	s3_query_done(&q);

	/* A parameter given twice is not chosen between. */
	assert_int_equal(s3_query_parse("uploadId=a&partNumber=1&uploadId=b", &q, &err), 0);
	assert_int_equal(s3_query_get(&q, "uploadId", &v, &err), -ENOTUNIQ);
	assert_string_equal(err.reason, "InvalidArgument");
	assert_true(s3_query_has(&q, "uploadId"));
	s3_query_done(&q);

	assert_int_equal(s3_query_parse("", &q, &err), 0);
	assert_int_equal(q.n, 0);
	assert_int_equal(s3_query_parse(NULL, &q, &err), 0);
	assert_int_equal(s3_query_parse("&&&", &q, &err), 0);
	assert_int_equal(q.n, 0);

	const char *bad[] = {"a=%zz", "a=%4", "a%=1", "a=%00", "%00=1", "a=1&b=%"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(s3_query_parse(bad[i], &q, &err), -EINVAL);
		assert_string_equal(err.reason, "InvalidURI");
		assert_int_equal(q.n, 0);
	}
	char *big = malloc(S3_QUERY_MAX + 2);
	memset(big, 'a', S3_QUERY_MAX + 1);
	big[S3_QUERY_MAX + 1] = 0;
	sealvm_err_clear(&err);
	assert_int_equal(s3_query_parse(big, &q, &err), -E2BIG);
	big[S3_QUERY_MAX] = 0;
	assert_int_equal(s3_query_parse(big, &q, &err), 0);
	s3_query_done(&q);
	big[0] = 0;
	for (int i = 0; i < S3_QUERY_PARAMS_MAX + 1; i++)
		strcat(big, "k=v&");
	sealvm_err_clear(&err);
	assert_int_equal(s3_query_parse(big, &q, &err), -E2BIG);
	assert_string_equal(err.reason, "InvalidArgument");
	free(big);
}

/* ---- CompleteMultipartUpload ---------------------------------------------------------- */

static int parse_doc(const char *doc, struct s3_part_list *l, struct sealvm_err *err)
{
	sealvm_err_clear(err);
	return s3_multipart_parse(doc, strlen(doc), l, err);
}

#define BOTO_DOC                                                                                   \
	"<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"              \
	"<Part><ETag>\"7ac66c0f148de9519b8bd264312c4d64\"</ETag><PartNumber>1</PartNumber></Part>" \
	"<Part><ETag>\"d5a0b3a0bd2f4ce1a1a3ac3e6b3f6b5e\"</ETag><PartNumber>2</PartNumber>"        \
	"<ChecksumCRC32>y/Q5Jg==</ChecksumCRC32></Part>"                                           \
	"</CompleteMultipartUpload>"

static void test_multipart_good(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_part_list l;

	assert_int_equal(parse_doc(BOTO_DOC, &l, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.parts[0].number, 1);
	assert_string_equal(l.parts[0].etag, "7ac66c0f148de9519b8bd264312c4d64");
	assert_string_equal(l.parts[0].checksum_crc32, "");
	assert_int_equal(l.parts[1].number, 2);
	assert_string_equal(l.parts[1].checksum_crc32, "y/Q5Jg==");
	s3_part_list_done(&l);

	/* Declaration, BOM, comments, whitespace, entities, all checksums, gaps in numbers. */
	const char *java =
		"\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n"
		"<!-- parts -->\n<CompleteMultipartUpload>\n"
		"  <Part>\n    <PartNumber>3</PartNumber>\n"
		"    <ETag>&quot;abc&#x2D;&#50;&quot;</ETag>\n"
		"    <ChecksumCRC32C>4waSgw==</ChecksumCRC32C>\n"
		"    <ChecksumSHA1>98O8HYCOBHMq32eZZczDTKeuNEE=</ChecksumSHA1>\n"
		"    <ChecksumSHA256>FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=</ChecksumSHA256>\n"
		"  </Part>\n  <!-- two -->\n"
		"  <Part ><ETag>e</ETag><PartNumber>10000</PartNumber></Part >\n"
		"</CompleteMultipartUpload >\n\n";
	assert_int_equal(parse_doc(java, &l, &err), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.parts[0].number, 3);
	assert_string_equal(l.parts[0].etag, "abc-2");
	assert_string_equal(l.parts[0].checksum_crc32c, "4waSgw==");
	assert_string_equal(l.parts[0].checksum_sha1, "98O8HYCOBHMq32eZZczDTKeuNEE=");
	assert_string_equal(l.parts[0].checksum_sha256,
			    "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=");
	assert_int_equal(l.parts[1].number, 10000);
	assert_string_equal(l.parts[1].etag, "e");
	s3_part_list_done(&l);

	/* 10000 parts is the limit, not beyond. */
	struct bytes b = {0};
	adds(&b, "<CompleteMultipartUpload>");
	for (int i = 1; i <= 10000; i++) {
		char p[128];
		snprintf(p, sizeof(p),
			 "<Part><PartNumber>%d</PartNumber><ETag>\"e%d\"</ETag></Part>", i, i);
		adds(&b, p);
	}
	adds(&b, "</CompleteMultipartUpload>");
	assert_int_equal(parse_doc(b.p, &l, &err), 0);
	assert_int_equal(l.n, 10000);
	assert_string_equal(l.parts[9999].etag, "e10000");
	s3_part_list_done(&l);
	replace(&b, "</CompleteMultipartUpload>",
		"<Part><PartNumber>10001</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>");
	assert_int_equal(parse_doc(b.p, &l, &err), -EINVAL);
	assert_string_equal(err.reason, "MalformedXML");
	free(b.p);
}

static void test_multipart_bad(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_part_list l;
	const struct {
		const char *doc;
		const char *reason;
	} cases[] = {
		{"", "MalformedXML"},
		{"   ", "MalformedXML"},
		{"<CompleteMultipartUpload></CompleteMultipartUpload>", "MalformedXML"},
		{"<CompleteMultipartUpload/>", "MalformedXML"},
		{"<CompleteMultipartUpload>", "MalformedXML"},
		{"<Other><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part></Other>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUploadX>",
		 "MalformedXML"},
		/* Order and numbers. */
		{"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part>"
		 "<Part><PartNumber>1</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>",
		 "InvalidPartOrder"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "<Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>",
		 "InvalidPartOrder"},
		{"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>01</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber> 1</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>99999999999</PartNumber><ETag>a</ETag>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		/* Required, repeated, unknown elements. */
		{"<CompleteMultipartUpload><Part><ETag>a</ETag></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>1</PartNumber>"
		 "<ETag>a</ETag></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag><ETag>b</ETag>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag><Size>1</Size>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "<Other/></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag><X>a</X></ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		/* Text where none belongs, content after the root, two roots. */
		{"<CompleteMultipartUpload>x<Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part>x<PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload>x",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "</CompleteMultipartUpload><CompleteMultipartUpload/>",
		 "MalformedXML"},
		/* DTDs, CDATA, processing instructions, attributes, namespaces. */
		{"<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><CompleteMultipartUpload>"
		 "<Part><PartNumber>1</PartNumber><ETag>&e;</ETag></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag><![CDATA[a]]></ETag>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><?pi x?><Part><PartNumber>1</PartNumber><ETag>a</ETag>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part id=\"1\"><PartNumber>1</PartNumber><ETag>a</ETag>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload xmlns=\"urn:other\"><Part><PartNumber>1</PartNumber>"
		 "<ETag>a</ETag></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload foo=\"1\"><Part><PartNumber>1</PartNumber><ETag>a</ETag>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<s3:CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part>"
		 "</s3:CompleteMultipartUpload>",
		 "MalformedXML"},
		/* Entities and characters. */
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&foo;</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a&b</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#0;</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#xD800;</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#x110000;</ETag>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#x;</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\x01</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\xc3\x28</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><!-- a -- b --><Part><PartNumber>1</PartNumber><ETag>a"
		 "</ETag></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		/* ETags and checksums. */
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag></ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"\"</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a\"b</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a b</ETag></Part>"
		 "</CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag>"
		 "<ChecksumCRC32>y/Q5Jg=</ChecksumCRC32></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag>"
		 "<ChecksumCRC32>y/Q5Jh==</ChecksumCRC32></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag>"
		 "<ChecksumSHA256>y/Q5Jg==</ChecksumSHA256></Part></CompleteMultipartUpload>",
		 "MalformedXML"},
		{"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag>"
		 "<ChecksumCRC32>y/Q5Jg==</ChecksumCRC32><ChecksumCRC32>y/Q5Jg==</ChecksumCRC32>"
		 "</Part></CompleteMultipartUpload>",
		 "MalformedXML"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = parse_doc(cases[i].doc, &l, &err);
		if (r != -EINVAL || strcmp(err.reason, cases[i].reason) != 0)
			fail_msg("case %zu: got %d %s (%s)", i, r, err.reason, err.message);
		assert_null(l.parts);
		assert_int_equal(l.n, 0);
	}
	/* A long ETag. */
	{
		char doc[1024], etag[S3_ETAG_MAX + 2];
		memset(etag, 'e', sizeof(etag) - 1);
		etag[sizeof(etag) - 1] = 0;
		snprintf(doc, sizeof(doc),
			 "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag>"
			 "</Part></CompleteMultipartUpload>",
			 etag);
		assert_int_equal(parse_doc(doc, &l, &err), -EINVAL);
		etag[S3_ETAG_MAX] = 0;
		snprintf(doc, sizeof(doc),
			 "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>%s</ETag>"
			 "</Part></CompleteMultipartUpload>",
			 etag);
		assert_int_equal(parse_doc(doc, &l, &err), 0);
		s3_part_list_done(&l);
	}
	/* Too large. */
	{
		size_t n = S3_MULTIPART_XML_MAX + 1;
		char *big = malloc(n);
		memset(big, ' ', n);
		sealvm_err_clear(&err);
		assert_int_equal(s3_multipart_parse(big, n, &l, &err), -E2BIG);
		assert_string_equal(err.reason, "MaxMessageLengthExceeded");
		free(big);
	}
	/* An embedded NUL. */
	sealvm_err_clear(&err);
	assert_int_equal(s3_multipart_parse(BOTO_DOC "\0", sizeof(BOTO_DOC), &l, &err), -EINVAL);
	/* Every proper prefix of a valid document is refused. */
	for (size_t n = 0; n < strlen(BOTO_DOC); n++) {
		sealvm_err_clear(&err);
		if (s3_multipart_parse(BOTO_DOC, n, &l, &err) != -EINVAL)
			fail_msg("the first %zu bytes were accepted", n);
	}
}

/* ---- the XML writer ------------------------------------------------------------------- */

static void test_xml_writer(void **state)
{
	struct s3_xml *w = NULL;
	char *doc = NULL;
	size_t len = 0;

	assert_int_equal(s3_xml_new(4096, &w), 0);
	s3_xml_open(w, "ListBucketResult", true);
	s3_xml_elem(w, "Name", "bucket");
	s3_xml_open(w, "Contents", false);
	s3_xml_elem(w, "Key", "a&b<c>d\"e'f\x01g\th\xc3\xbc");
	s3_xml_elemf(w, "Size", "%d", 42);
	s3_xml_close(w);
	s3_xml_elem(w, "IsTruncated", "false");
	assert_int_equal(s3_xml_finish(w, &doc, &len), 0);
	assert_string_equal(doc,
			    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
			    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
			    "<Name>bucket</Name><Contents>"
			    "<Key>a&amp;b&lt;c&gt;d&quot;e&apos;f&#x1;g&#x9;h\xc3\xbc</Key>"
			    "<Size>42</Size></Contents><IsTruncated>false</IsTruncated>"
			    "</ListBucketResult>");
	assert_int_equal(len, strlen(doc));
	free(doc);
	s3_xml_free(w);

	/* Sticky errors. */
	struct {
		int code;
		int which;
	} bad[] = {{-EILSEQ, 0}, {-E2BIG, 1},  {-EINVAL, 2},
		   {-EINVAL, 3}, {-EINVAL, 4}, {-EINVAL, 5}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(s3_xml_new(i == 1 ? 60 : 4096, &w), 0);
		s3_xml_open(w, "Error", false);
		switch (bad[i].which) {
		case 0:
			s3_xml_elem(w, "Key", "\xff");
			break;
		case 1:
			s3_xml_elem(w, "Message",
				    "a long message that does not fit in sixty bytes");
			break;
		case 2:
			s3_xml_elem(w, "Bad Name", "x");
			break;
		case 3:
			s3_xml_close(w);
			s3_xml_close(w);
			break;
		case 4:
			s3_xml_close(w);
			s3_xml_open(w, "Second", false);
			break;
		case 5:
			s3_xml_elem(w, "Code", NULL);
			break;
		}
		s3_xml_elem(w, "Code", "ok");
		doc = NULL;
		assert_int_equal(s3_xml_finish(w, &doc, &len), bad[i].code);
		assert_null(doc);
		s3_xml_free(w);
	}
	/* Depth is bounded. */
	assert_int_equal(s3_xml_new(4096, &w), 0);
	for (int i = 0; i <= S3_XML_DEPTH_MAX; i++)
		s3_xml_open(w, "A", false);
	assert_int_equal(s3_xml_finish(w, &doc, &len), -EINVAL);
	s3_xml_free(w);

	assert_int_equal(s3_xml_error("NoSuchKey", "The specified key does not exist.",
				      "/bucket/a&b", "req-1", &doc, &len),
			 0);
	assert_string_equal(doc, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
				 "<Code>NoSuchKey</Code><Message>The specified key does not exist."
				 "</Message><Resource>/bucket/a&amp;b</Resource>"
				 "<RequestId>req-1</RequestId></Error>");
	free(doc);
}

/* What the writer writes, the parser reads back (ETags with every escaped character). */
static void test_xml_roundtrip(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_part_list l;
	struct s3_xml *w = NULL;
	char *doc = NULL;
	size_t len;

	assert_int_equal(s3_xml_new(1 << 20, &w), 0);
	s3_xml_open(w, "CompleteMultipartUpload", true);
	for (int i = 1; i <= 50; i++) {
		s3_xml_open(w, "Part", false);
		s3_xml_elemf(w, "PartNumber", "%d", i * 3);
		s3_xml_elemf(w, "ETag", "\"&<>'%d\"", i);
		s3_xml_close(w);
	}
	assert_int_equal(s3_xml_finish(w, &doc, &len), 0);
	s3_xml_free(w);
	assert_int_equal(s3_multipart_parse(doc, len, &l, &err), 0);
	assert_int_equal(l.n, 50);
	for (int i = 1; i <= 50; i++) {
		char want[32];
		snprintf(want, sizeof(want), "&<>'%d", i);
		assert_int_equal(l.parts[i - 1].number, (unsigned)i * 3);
		assert_string_equal(l.parts[i - 1].etag, want);
	}
	s3_part_list_done(&l);
	free(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunked_aws_example),
		cmocka_unit_test(test_chunked_aws_trailer_example),
		cmocka_unit_test(test_chunked_tampering),
		cmocka_unit_test(test_chunked_small_chunks),
		cmocka_unit_test(test_chunked_trailers),
		cmocka_unit_test(test_chunked_config_and_sink),
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_checksums),
		cmocka_unit_test(test_query),
		cmocka_unit_test(test_multipart_good),
		cmocka_unit_test(test_multipart_bad),
		cmocka_unit_test(test_xml_writer),
		cmocka_unit_test(test_xml_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
