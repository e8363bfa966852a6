// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/s3/sigv4.c: AWS's published SigV4 examples for S3 (GET
 * Object, PUT Object, GET Bucket lifecycle, List Objects, the presigned GET,
 * the seeds of the chunked uploads, the signing-key derivation), copied from
 * the AWS documentation with their documented signatures; canonicalisation
 * rules; every named bad input of the Authorization header and of presigned
 * URLs with its S3 error code; the signer and presigner against the verifier;
 * and the signing-key cache.
 *
 * The expected values are AWS's, not ours: a verifier that drifted from SigV4
 * fails here even if it still agrees with our own signer.
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

#include "sealvm/sigv4.h"

/* AWS's example credentials (documentation only). */
#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define T20130524 1369353600 /* 2013-05-24T00:00:00Z */
#define EMPTY SIGV4_EMPTY_SHA256

struct keyring {
	const char *akid;
	const char *secret;
	int calls;
	int fail; /* a negative errno to return instead */
};

static int lookup(void *userdata, const char *akid, struct sealvm_secret **ret,
		  struct sealvm_err *err)
{
	struct keyring *k = userdata;
	k->calls++;
	if (k->fail)
		return k->fail;
	if (strcmp(akid, k->akid) != 0)
		return -ENOENT;
	return sealvm_secret_from(k->secret, strlen(k->secret), ret);
}

static struct sealvm_secret *secret_of(const char *s)
{
	struct sealvm_secret *x = NULL;
	assert_int_equal(sealvm_secret_from(s, strlen(s), &x), 0);
	return x;
}

/* A request under construction: up to 32 headers. */
struct req {
	struct sigv4_request r;
	struct sigv4_header h[32];
	char path[1024];
	char query[4096];
};

static void req_init(struct req *q, const char *method, const char *path, const char *query)
{
	memset(q, 0, sizeof(*q));
	snprintf(q->path, sizeof(q->path), "%s", path);
	snprintf(q->query, sizeof(q->query), "%s", query ? query : "");
	q->r.method = method;
	q->r.raw_path = q->path;
	q->r.raw_query = q->query;
	q->r.headers = q->h;
}

static void req_add(struct req *q, const char *name, const char *value)
{
	assert_true(q->r.n_headers < 32);
	q->h[q->r.n_headers++] = (struct sigv4_header){name, value};
}

/* Replaces the value of @name (first occurrence). */
static void req_set(struct req *q, const char *name, const char *value)
{
	for (size_t i = 0; i < q->r.n_headers; i++)
		if (strcasecmp(q->h[i].name, name) == 0) {
			q->h[i].value = value;
			return;
		}
	req_add(q, name, value);
}

static int verify_at(struct req *q, const char *region, time_t now, struct keyring *k,
		     struct sigv4_auth *auth, struct sealvm_err *err)
{
	struct sigv4_verifier v = {.region = region, .lookup = lookup, .userdata = k};
	sealvm_err_clear(err);
	return sigv4_verify(&v, &q->r, now, auth, err);
}

/* Verifies and expects @code / @reason; returns nothing, frees the auth. */
static void expect_verify(struct req *q, const char *region, time_t now, int code,
			  const char *reason)
{
	struct keyring k = {AK, SK, 0, 0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	int r = verify_at(q, region, now, &k, &auth, &err);
	if (r != code || (reason && strcmp(err.reason, reason) != 0))
		fail_msg("verify: got %d %s (%s), want %d %s", r, err.reason, err.message, code,
			 reason ? reason : "");
	if (code < 0) {
		assert_true(err.message[0]);
		/* No message ever quotes the signature or the secret. */
		assert_null(strstr(err.message, SK));
		if (auth.signature[0])
			assert_null(strstr(err.message, auth.signature));
	}
	sigv4_auth_done(&auth);
}

/* ---- AWS example: GET Object ----------------------------------------------------------- */

static void get_object_req(struct req *q)
{
	req_init(q, "GET", "/test.txt", NULL);
	req_add(q, "Host", "examplebucket.s3.amazonaws.com");
	req_add(q, "Range", "bytes=0-9");
	req_add(q, "x-amz-content-sha256", EMPTY);
	req_add(q, "x-amz-date", "20130524T000000Z");
	req_add(q, "Authorization",
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
		"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_aws_get_object(void **state)
{
	struct keyring k = {AK, SK, 0, 0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	struct req q;
	char *canonical = NULL;

	get_object_req(&q);
	/* The canonical request the documentation prints. */
	assert_int_equal(sigv4_canonical_request(&q.r, false,
						 "host;range;x-amz-content-sha256;x-amz-date",
						 EMPTY, &canonical, &err),
			 0);
	assert_string_equal(canonical, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
				       "range:bytes=0-9\nx-amz-content-sha256:" EMPTY "\n"
				       "x-amz-date:20130524T000000Z\n\n"
				       "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY);
	free(canonical);

	assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), 0);
	assert_int_equal(auth.kind, SIGV4_KIND_HEADER);
	assert_string_equal(auth.access_key_id, AK);
	assert_string_equal(auth.scope, "20130524/us-east-1/s3/aws4_request");
	assert_string_equal(auth.amz_date, "20130524T000000Z");
	assert_int_equal(auth.request_time, T20130524);
	assert_int_equal(auth.payload, SIGV4_PAYLOAD_SHA256);
	assert_null(auth.signing_key); /* only the streaming modes keep it */
	assert_int_equal(k.calls, 1);
	/* The body must then hash to the declared value. */
	unsigned char empty[32], other[32] = {1};
	for (int i = 0; i < 32; i++)
		sscanf(&EMPTY[2 * i], "%2hhx", &empty[i]);
	assert_int_equal(sigv4_check_payload(&auth, empty, &err), 0);
	assert_int_equal(sigv4_check_payload(&auth, other, &err), -EBADMSG);
	assert_string_equal(err.reason, "XAmzContentSHA256Mismatch");
	sigv4_auth_done(&auth);

	/* The documented string to sign is what a mismatch reports. */
	get_object_req(&q);
	req_set(&q, "Range", "bytes=0-10");
	sealvm_err_clear(&err);
	assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), -EPERM);
	assert_string_equal(err.reason, "SignatureDoesNotMatch");
	assert_non_null(auth.canonical_request);
	assert_non_null(strstr(auth.canonical_request, "range:bytes=0-10"));
	assert_non_null(auth.string_to_sign);
	assert_int_equal(strncmp(auth.string_to_sign, "AWS4-HMAC-SHA256\n20130524T000000Z\n", 34),
			 0);
	sigv4_auth_done(&auth);

	get_object_req(&q);
	sealvm_err_clear(&err);
	req_set(&q, "x-amz-content-sha256", EMPTY);
	/* The published string to sign hashes to 7344ae5b...: re-derive it via a bad signature. */
	q.h[4].value = "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		       "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
		       "Signature=0000000000000000000000000000000000000000000000000000000000000000";
	assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), -EPERM);
	assert_string_equal(
		auth.string_to_sign,
		"AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
		"7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	sigv4_auth_done(&auth);
}

static void test_aws_get_object_signed_by_us(void **state)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct sigv4_credentials cred = {AK, sk, "us-east-1", NULL};
	struct sigv4_header h[] = {{"Range", "bytes=0-9"}};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_signed s;

	assert_int_equal(sigv4_sign("GET", "https://examplebucket.s3.amazonaws.com/test.txt", h, 1,
				    EMPTY, &cred, T20130524, &s, &err),
			 0);
	assert_string_equal(
		s.authorization,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
		"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	assert_string_equal(s.amz_date, "20130524T000000Z");
	assert_string_equal(s.host, "examplebucket.s3.amazonaws.com");
	assert_string_equal(s.url, "https://examplebucket.s3.amazonaws.com/test.txt");
	sigv4_signed_done(&s);
	sealvm_secret_free(sk);
}

/* ---- AWS example: PUT Object (a '$' in the key, a Date header signed) ------------------ */

#define PUT_SHA "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
#define PUT_SIG "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"

static void put_object_req(struct req *q, const char *raw_path)
{
	req_init(q, "PUT", raw_path, NULL);
	req_add(q, "Host", "examplebucket.s3.amazonaws.com");
	req_add(q, "Date", "Fri, 24 May 2013 00:00:00 GMT");
	req_add(q, "x-amz-date", "20130524T000000Z");
	req_add(q, "x-amz-storage-class", "REDUCED_REDUNDANCY");
	req_add(q, "x-amz-content-sha256", PUT_SHA);
	req_add(q, "Authorization",
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		"SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
		"Signature=" PUT_SIG);
}

static void test_aws_put_object(void **state)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct sigv4_credentials cred = {AK, sk, "us-east-1", "s3"};
	struct sigv4_header h[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
				   {"x-amz-storage-class", "REDUCED_REDUNDANCY"}};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_signed s;
	struct req q;

	/* The key is "test$file.text": as sent encoded, raw, or with lower-case hex. */
	put_object_req(&q, "/test%24file.text");
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	put_object_req(&q, "/test$file.text");
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	put_object_req(&q, "/test%24file%2etext");
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	/* Another key is another signature. */
	put_object_req(&q, "/test%24file.texT");
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "SignatureDoesNotMatch");
	/* A changed signed header, a dropped one. */
	put_object_req(&q, "/test$file.text");
	req_set(&q, "x-amz-storage-class", "STANDARD");
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "SignatureDoesNotMatch");
	put_object_req(&q, "/test$file.text");
	q.h[1].name = "X-Date";
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "SignatureDoesNotMatch");
	/* A header value is trimmed and its inner blanks collapsed before signing. */
	put_object_req(&q, "/test$file.text");
	req_set(&q, "Date", "  Fri, 24 May \t 2013   00:00:00 GMT  ");
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);

	assert_int_equal(sigv4_sign("PUT", "https://examplebucket.s3.amazonaws.com/test$file.text",
				    h, 2, PUT_SHA, &cred, T20130524, &s, &err),
			 0);
	assert_non_null(strstr(s.authorization, "Signature=" PUT_SIG));
	assert_non_null(strstr(s.authorization,
			       "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
			       "x-amz-storage-class,"));
	/* What is sent is the normalised path. */
	assert_string_equal(s.url, "https://examplebucket.s3.amazonaws.com/test%24file.text");
	sigv4_signed_done(&s);
	sealvm_secret_free(sk);
}

/* ---- AWS examples: GET Bucket lifecycle (?lifecycle), List Objects -------------------- */

static void bucket_req(struct req *q, const char *query, const char *sig)
{
	static char auth[512];
	snprintf(auth, sizeof(auth),
		 "AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		 "SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=%s",
		 sig);
	req_init(q, "GET", "/", query);
	req_add(q, "Host", "examplebucket.s3.amazonaws.com");
	req_add(q, "x-amz-date", "20130524T000000Z");
	req_add(q, "x-amz-content-sha256", EMPTY);
	req_add(q, "Authorization", auth);
}

#define LIFECYCLE_SIG "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
#define LIST_SIG "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"

static void test_aws_bucket_examples(void **state)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct sigv4_credentials cred = {AK, sk, "us-east-1", NULL};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_signed s;
	struct req q;

	bucket_req(&q, "lifecycle", LIFECYCLE_SIG);
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	bucket_req(&q, "lifecycle=", LIFECYCLE_SIG);
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	bucket_req(&q, "max-keys=2&prefix=J", LIST_SIG);
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	/* Order on the wire does not matter; content does. */
	bucket_req(&q, "prefix=J&max-keys=2", LIST_SIG);
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	bucket_req(&q, "prefix=%4A&max-keys=2&&", LIST_SIG);
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	bucket_req(&q, "prefix=K&max-keys=2", LIST_SIG);
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "SignatureDoesNotMatch");
	bucket_req(&q, "prefix=J&max-keys=2&max-keys=2", LIST_SIG);
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "SignatureDoesNotMatch");

	assert_int_equal(sigv4_sign("GET", "https://examplebucket.s3.amazonaws.com/?lifecycle",
				    NULL, 0, EMPTY, &cred, T20130524, &s, &err),
			 0);
	assert_non_null(strstr(s.authorization, "Signature=" LIFECYCLE_SIG));
	assert_string_equal(s.url, "https://examplebucket.s3.amazonaws.com/?lifecycle=");
	sigv4_signed_done(&s);
	assert_int_equal(sigv4_sign("GET",
				    "https://examplebucket.s3.amazonaws.com/?prefix=J&max-keys=2",
				    NULL, 0, EMPTY, &cred, T20130524, &s, &err),
			 0);
	assert_non_null(strstr(s.authorization, "Signature=" LIST_SIG));
	assert_string_equal(s.url, "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J");
	sigv4_signed_done(&s);
	sealvm_secret_free(sk);
}

/* ---- AWS example: presigned GET ------------------------------------------------------- */

#define PRESIGN_Q                                                                                  \
	"X-Amz-Algorithm=AWS4-HMAC-SHA256"                                                         \
	"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"        \
	"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
#define PRESIGN_SIG "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"

static void presigned_req(struct req *q, const char *query)
{
	req_init(q, "GET", "/test.txt", query);
	req_add(q, "Host", "examplebucket.s3.amazonaws.com");
}

static void test_aws_presigned(void **state)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct sigv4_credentials cred = {AK, sk, "us-east-1", NULL};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct keyring k = {AK, SK, 0, 0};
	struct sigv4_auth auth;
	struct req q;
	char *url = NULL;

	presigned_req(&q, PRESIGN_Q "&X-Amz-Signature=" PRESIGN_SIG);
	assert_int_equal(sigv4_detect(&q.r), SIGV4_KIND_QUERY);
	assert_int_equal(verify_at(&q, "us-east-1", T20130524 + 3600, &k, &auth, &err), 0);
	assert_int_equal(auth.kind, SIGV4_KIND_QUERY);
	assert_int_equal(auth.payload, SIGV4_PAYLOAD_UNSIGNED);
	assert_int_equal(auth.expires_at, T20130524 + 86400);
	sigv4_auth_done(&auth);
	/* Valid to the last second, expired after. */
	expect_verify(&q, "us-east-1", T20130524 + 86400, 0, NULL);
	expect_verify(&q, "us-east-1", T20130524 + 86401, -EPERM, "AccessDenied");
	/* Not usable before its time (beyond the skew). */
	expect_verify(&q, "us-east-1", T20130524 - 900, 0, NULL);
	expect_verify(&q, "us-east-1", T20130524 - 901, -EPERM, "RequestTimeTooSkewed");
	/* The signature is excluded from what is signed; the other parameters are not. */
	presigned_req(&q, "X-Amz-Signature=" PRESIGN_SIG "&" PRESIGN_Q);
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	presigned_req(&q, PRESIGN_Q "&x-id=GetObject&X-Amz-Signature=" PRESIGN_SIG);
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "SignatureDoesNotMatch");

	assert_int_equal(sigv4_presign("GET", "https://examplebucket.s3.amazonaws.com/test.txt",
				       NULL, 0, &cred, T20130524, 86400, &url, &err),
			 0);
	assert_string_equal(url, "https://examplebucket.s3.amazonaws.com/test.txt?" PRESIGN_Q
				 "&X-Amz-Signature=" PRESIGN_SIG);
	free(url);
	sealvm_secret_free(sk);
}

/* ---- AWS examples: chunked upload seeds ----------------------------------------------- */

static void test_aws_chunked_seeds(void **state)
{
	struct keyring k = {AK, SK, 0, 0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	struct req q;

	req_init(&q, "PUT", "/examplebucket/chunkObject.txt", NULL);
	req_add(&q, "Host", "s3.amazonaws.com");
	req_add(&q, "x-amz-date", "20130524T000000Z");
	req_add(&q, "x-amz-storage-class", "REDUCED_REDUNDANCY");
	req_add(&q, "x-amz-content-sha256", SIGV4_STREAMING_PAYLOAD);
	req_add(&q, "Content-Encoding", "aws-chunked");
	req_add(&q, "x-amz-decoded-content-length", "66560");
	req_add(&q, "Content-Length", "66824");
	req_add(&q, "Authorization",
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		"SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
		"x-amz-decoded-content-length;x-amz-storage-class,"
		"Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
	assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), 0);
	assert_int_equal(auth.payload, SIGV4_PAYLOAD_STREAMING);
	assert_int_equal(auth.decoded_length, 66560);
	assert_non_null(auth.signing_key);
	assert_string_equal(auth.signature,
			    "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
	sigv4_auth_done(&auth);
	assert_null(auth.signing_key);

	/* Without the decoded length an aws-chunked body cannot be checked. */
	assert_string_equal(q.h[5].name, "x-amz-decoded-content-length");
	q.h[5].name = "x-amz-decoded-content-lengthx";
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "AccessDenied"); /* unsigned x-amz-* */
	q.h[5].name = "X-Decoded";
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "MissingContentLength");

	/* The trailer example: seed 106e2a8a..., canonical request hash 44d48b8c... */
	req_init(&q, "PUT", "/examplebucket/chunkObject.txt", NULL);
	req_add(&q, "Host", "s3.amazonaws.com");
	req_add(&q, "x-amz-date", "20130524T000000Z");
	req_add(&q, "x-amz-storage-class", "REDUCED_REDUNDANCY");
	req_add(&q, "x-amz-content-sha256", SIGV4_STREAMING_PAYLOAD_TRAILER);
	req_add(&q, "Content-Encoding", "aws-chunked");
	req_add(&q, "x-amz-decoded-content-length", "66560");
	req_add(&q, "x-amz-trailer", "x-amz-checksum-crc32c");
	req_add(&q, "Content-Length", "66824");
	req_add(&q, "Authorization",
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		"SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;"
		"x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,"
		"Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e");
	assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), 0);
	assert_int_equal(auth.payload, SIGV4_PAYLOAD_STREAMING_TRAILER);
	assert_string_equal(auth.trailer, "x-amz-checksum-crc32c");
	sigv4_auth_done(&auth);
	req_set(&q, "Authorization",
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request,"
		"SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;"
		"x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,"
		"Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8f");
	assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), -EPERM);
	assert_string_equal(
		auth.string_to_sign,
		"AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
		"44d48b8c2f70eae815a0198cc73d7a546a73a93359c070abbaa5e6c7de112559");
	sigv4_auth_done(&auth);
	/* A trailer mode must name its trailer, and only a checksum. */
	assert_string_equal(q.h[6].name, "x-amz-trailer");
	q.h[6].value = "x-amz-meta-foo";
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidRequest");
	q.h[6].name = "x-trailer";
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidRequest");
}

static void test_aws_signing_key(void **state)
{
	struct sealvm_secret *sk = secret_of("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
	struct sealvm_secret *key = NULL;
	char hex[65];
	assert_int_equal(sigv4_signing_key(sk, "20150830", "us-east-1", "iam", &key), 0);
	assert_int_equal(key->len, 32);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", key->data[i]);
	assert_string_equal(hex,
			    "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
	sealvm_secret_free(key);
	assert_int_equal(sigv4_signing_key(sk, "", "us-east-1", "iam", &key), -EINVAL);
	assert_int_equal(sigv4_signing_key(sk, "20150830", NULL, "iam", &key), -EINVAL);
	sealvm_secret_free(sk);
}

/* ---- canonicalisation ----------------------------------------------------------------- */

static void uri_is(const char *raw, const char *want)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *got = NULL;
	assert_int_equal(sigv4_canonical_uri(raw, &got, &err), 0);
	if (strcmp(got, want) != 0)
		fail_msg("canonical uri of '%s': got '%s', want '%s'", raw, got, want);
	free(got);
}

static void uri_bad(const char *raw)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *got = NULL;
	assert_int_equal(sigv4_canonical_uri(raw, &got, &err), -EINVAL);
	assert_string_equal(err.reason, "InvalidURI");
	assert_null(got);
}

static void query_is(const char *raw, bool presigned, const char *want)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *got = NULL;
	assert_int_equal(sigv4_canonical_query(raw, presigned, &got, &err), 0);
	if (strcmp(got, want) != 0)
		fail_msg("canonical query of '%s': got '%s', want '%s'", raw, got, want);
	free(got);
}

static void test_canonical_uri(void **state)
{
	uri_is("/", "/");
	uri_is("/test.txt", "/test.txt");
	/* Unreserved escapes decoded, others upper-cased, %2F kept, '/' kept. */
	uri_is("/%7e%41%2f%2F/x", "/~A%2F%2F/x");
	uri_is("/a+b", "/a%2Bb");
	uri_is("/a%20b", "/a%20b");
	uri_is("/a%2520b", "/a%2520b"); /* no double decoding */
	uri_is("/%C3%BC", "/%C3%BC");
	uri_is("/\xc3\xbc", "/%C3%BC");
	uri_is("/a=b;c,d!e*f'g(h)i@j:k$l", "/a%3Db%3Bc%2Cd%21e%2Af%27g%28h%29i%40j%3Ak%24l");
	/* No dot-segment removal, no slash merging. */
	uri_is("/./a/../b//c/", "/./a/../b//c/");
	uri_is("/bucket/a/b//c", "/bucket/a/b//c");
	uri_bad("/a%zz");
	uri_bad("/a%4");
	uri_bad("/a%");
	uri_bad("/a%%41");
	uri_bad("");
	uri_bad("a/b");
}

static void test_canonical_query(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *got = NULL;

	query_is("", false, "");
	query_is(NULL, false, "");
	query_is("b=2&a=1", false, "a=1&b=2");
	query_is("a=2&a=1&a=10", false, "a=1&a=10&a=2");
	query_is("uploads", false, "uploads=");
	query_is("uploads=&partNumber=1", false, "partNumber=1&uploads=");
	query_is("&&a=1&", false, "a=1");
	/* '+' is a space; spaces are %20; '=' in a value is encoded. */
	query_is("a=%20+%2B", false, "a=%20%20%2B");
	query_is("x=a=b", false, "x=a%3Db");
	query_is("k%3D=v", false, "k%3D=v");
	query_is("p=%7e%2f~/", false, "p=~%2F~%2F");
	query_is("p=%c3%bc", false, "p=%C3%BC");
	query_is("empty=&e2", false, "e2=&empty=");
	/* Sorted by name first: "a" before "a-" although "a-=" < "a=" bytewise. */
	query_is("a-=1&a=2", false, "a=2&a-=1");
	query_is("aB=1&a_b=2&a~b=3&a.b=4&a-b=5&ab=6", false, "a-b=5&a.b=4&aB=1&a_b=2&ab=6&a~b=3");
	/* Presigned: X-Amz-Signature (exact name) is left out. */
	query_is("X-Amz-Signature=abc&b=1", true, "b=1");
	query_is("X-Amz-Signature=abc&b=1", false, "X-Amz-Signature=abc&b=1");
	query_is("X%2DAmz-Signature=abc&b=1", true, "b=1");
	query_is("x-amz-signature=abc&b=1", true, "b=1&x-amz-signature=abc");

	assert_int_equal(sigv4_canonical_query("a=%zz", false, &got, &err), -EINVAL);
	assert_string_equal(err.reason, "InvalidURI");
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_canonical_query("a%=1", false, &got, &err), -EINVAL);
	sealvm_err_clear(&err);
	/* Too many parameters. */
	char big[4096] = "";
	for (int i = 0; i < SIGV4_QUERY_PARAMS_MAX + 1; i++)
		strcat(big, "a&");
	assert_int_equal(sigv4_canonical_query(big, false, &got, &err), -E2BIG);
	assert_string_equal(err.reason, "InvalidArgument");
	assert_null(got);
}

static void test_amz_date(void **state)
{
	time_t t;
	char s[SIGV4_AMZ_DATE_LEN + 1];
	assert_int_equal(sigv4_parse_amz_date("20130524T000000Z", &t), 0);
	assert_int_equal(t, T20130524);
	assert_int_equal(sigv4_parse_amz_date("20000229T235959Z", &t), 0);
	assert_int_equal(t, 951868799);
	assert_int_equal(sigv4_format_amz_date(951868799, s), 0);
	assert_string_equal(s, "20000229T235959Z");
	const char *bad[] = {"20130524T000000",
			     "20130524T000000z",
			     "20130524 000000Z",
			     "2013-05-24T00:00Z",
			     "20130532T000000Z",
			     "20130229T000000Z",
			     "21000229T000000Z",
			     "20130524T240000Z",
			     "20130524T006000Z",
			     "20130524T000060Z",
			     "1969123T235959Z",
			     "+0130524T000000Z",
			     "",
			     "20130524T000000Z "};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (sigv4_parse_amz_date(bad[i], &t) != -EINVAL)
			fail_msg("accepted the date '%s'", bad[i]);
	assert_int_equal(sigv4_format_amz_date(-1, s), -EINVAL);
}

/* ---- the Authorization header: every named bad input ---------------------------------- */

/* The GET Object example with its Authorization header replaced by @auth. */
static void get_with_auth(struct req *q, const char *auth)
{
	get_object_req(q);
	q->h[4].value = auth;
}

#define CRED "Credential=" AK "/20130524/us-east-1/s3/aws4_request"
#define SH "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date"
#define SIG "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"

static void test_auth_header_forms(void **state)
{
	struct req q;
	/* Accepted spellings: with or without spaces after the commas, any order. */
	const char *good[] = {
		"AWS4-HMAC-SHA256 " CRED "," SH "," SIG,
		"AWS4-HMAC-SHA256 " CRED ", " SH ", " SIG,
		"AWS4-HMAC-SHA256  " CRED " , " SH " ,  " SIG "  ",
		"AWS4-HMAC-SHA256 " SIG "," CRED "," SH,
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		get_with_auth(&q, good[i]);
		expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	}
	const char *malformed[] = {
		"AWS4-HMAC-SHA256",
		"AWS4-HMAC-SHA256 ",
		"AWS4-HMAC-SHA256 " CRED "," SH,
		"AWS4-HMAC-SHA256 " CRED "," SIG,
		"AWS4-HMAC-SHA256 " SH "," SIG,
		"AWS4-HMAC-SHA256 " CRED "," SH "," SIG "," SIG,
		"AWS4-HMAC-SHA256 " CRED "," SH "," SIG ",Extra=1",
		"AWS4-HMAC-SHA256 " CRED ";" SH "," SIG,
		"AWS4-HMAC-SHA256 " CRED " " SH "," SIG,
		"AWS4-HMAC-SHA256 credential=" AK "/20130524/us-east-1/s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential =" AK "/20130524/us-east-1/s3/aws4_request," SH
		"," SIG,
		/* The credential's five parts. */
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request/x," SH
		"," SIG,
		"AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=AK!D/20130524/us-east-1/s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/2013052/us-east-1/s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130532/us-east-1/s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524//s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/US-EAST-1/s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_requesT," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/ec2/aws4_request," SH
		"," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130525/us-east-1/s3/aws4_request," SH "," SIG,
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-west-2/s3/aws4_request," SH "," SIG,
		/* SignedHeaders: sorted, unique, lower case, with host. */
		"AWS4-HMAC-SHA256 " CRED
		",SignedHeaders=range;host;x-amz-content-sha256;x-amz-date," SIG,
		"AWS4-HMAC-SHA256 " CRED
		",SignedHeaders=Host;range;x-amz-content-sha256;x-amz-date," SIG,
		"AWS4-HMAC-SHA256 " CRED
		",SignedHeaders=host;host;range;x-amz-content-sha256;x-amz-date," SIG,
		"AWS4-HMAC-SHA256 " CRED
		",SignedHeaders=host;;range;x-amz-content-sha256;x-amz-date," SIG,
		"AWS4-HMAC-SHA256 " CRED ",SignedHeaders=," SIG,
		"AWS4-HMAC-SHA256 " CRED
		",SignedHeaders=range;x-amz-content-sha256;x-amz-date," SIG,
		/* Signature: 64 lower-case hex digits. */
		"AWS4-HMAC-SHA256 " CRED "," SH
		",Signature=F0E8BDB87C964420E857BD35B5D6ED310BD44F0170ABA48DD91039C6036BDB41",
		"AWS4-HMAC-SHA256 " CRED "," SH
		",Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb4",
		"AWS4-HMAC-SHA256 " CRED "," SH
		",Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb411",
		"AWS4-HMAC-SHA256 " CRED "," SH
		",Signature=g0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
	};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		struct keyring k = {AK, SK, 0, 0};
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sigv4_auth auth;
		get_with_auth(&q, malformed[i]);
		int r = verify_at(&q, "us-east-1", T20130524, &k, &auth, &err);
		if (r != -EINVAL || strcmp(err.reason, "AuthorizationHeaderMalformed") != 0)
			fail_msg("#%zu '%s': got %d %s (%s)", i, malformed[i], r, err.reason,
				 err.message);
		/* Refused before any secret was looked up. */
		assert_int_equal(k.calls, 0);
		sigv4_auth_done(&auth);
	}
	/* The wrong region names the right one. */
	{
		struct keyring k = {AK, SK, 0, 0};
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sigv4_auth auth;
		get_object_req(&q);
		assert_int_equal(verify_at(&q, "us-south", T20130524, &k, &auth, &err), -EINVAL);
		assert_string_equal(err.reason, "AuthorizationHeaderMalformed");
		assert_non_null(strstr(err.message, "'us-east-1' is wrong; expecting 'us-south'"));
		sigv4_auth_done(&auth);
	}
	/* Other algorithms and schemes. */
	get_with_auth(&q, "AWS4-HMAC-SHA512 " CRED "," SH "," SIG);
	assert_int_equal(sigv4_detect(&q.r), SIGV4_KIND_OTHER);
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidArgument");
	get_with_auth(&q, "Bearer eyJhbGciOi");
	assert_int_equal(sigv4_detect(&q.r), SIGV4_KIND_OTHER);
	get_with_auth(&q, "AWS " AK ":frJIUN8DYpKDtOLCwo//yllqDzg=");
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidArgument");
	/* Too long. */
	{
		char *big = malloc(SIGV4_AUTH_HEADER_MAX + 256);
		snprintf(big, SIGV4_AUTH_HEADER_MAX + 256, "AWS4-HMAC-SHA256 " CRED "," SIG ",%*s",
			 SIGV4_AUTH_HEADER_MAX, "x");
		get_with_auth(&q, big);
		expect_verify(&q, "us-east-1", T20130524, -E2BIG, "AuthorizationHeaderMalformed");
		free(big);
	}
	/* Two Authorization headers. */
	get_object_req(&q);
	req_add(&q, "authorization", "AWS4-HMAC-SHA256 " CRED "," SH "," SIG);
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "AuthorizationHeaderMalformed");
}

static void test_header_auth_rules(void **state)
{
	struct req q;

	/* No credentials at all. */
	req_init(&q, "GET", "/x", NULL);
	req_add(&q, "Host", "h");
	assert_int_equal(sigv4_detect(&q.r), SIGV4_KIND_NONE);
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "AccessDenied");

	/* x-amz-date: missing, malformed, repeated. */
	get_object_req(&q);
	q.h[3].name = "x-date";
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "AccessDenied");
	get_object_req(&q);
	q.h[3].value = "2013-05-24T00:00:00Z";
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "AccessDenied");
	get_object_req(&q);
	req_add(&q, "X-Amz-Date", "20130524T000000Z");
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidArgument");

	/* The clock: 15 minutes either way, not a second more. */
	get_object_req(&q);
	expect_verify(&q, "us-east-1", T20130524 + 900, 0, NULL);
	expect_verify(&q, "us-east-1", T20130524 - 900, 0, NULL);
	expect_verify(&q, "us-east-1", T20130524 + 901, -EPERM, "RequestTimeTooSkewed");
	expect_verify(&q, "us-east-1", T20130524 - 901, -EPERM, "RequestTimeTooSkewed");
	{
		struct keyring k = {AK, SK, 0, 0};
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sigv4_auth auth;
		struct sigv4_verifier v = {"us-east-1", lookup, &k, NULL, 60};
		assert_int_equal(sigv4_verify(&v, &q.r, T20130524 + 61, &auth, &err), -EPERM);
		assert_string_equal(err.reason, "RequestTimeTooSkewed");
		sigv4_auth_done(&auth);
	}

	/* x-amz-content-sha256: required, one of the known forms. */
	get_object_req(&q);
	q.h[2].name = "x-content-sha256";
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidRequest");
	const char *bad_hash[] = {
		"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
		"STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
		"unsigned-payload",
		"",
	};
	for (size_t i = 0; i < sizeof(bad_hash) / sizeof(bad_hash[0]); i++) {
		get_object_req(&q);
		q.h[2].value = bad_hash[i];
		expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidArgument");
	}

	/* An x-amz-* header that was not signed. */
	get_object_req(&q);
	req_add(&q, "x-amz-meta-owner", "mallory");
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "AccessDenied");
	/* Other unsigned headers are fine (user-agent, expect...). */
	get_object_req(&q);
	req_add(&q, "User-Agent", "curl/7.88");
	req_add(&q, "Expect", "100-continue");
	expect_verify(&q, "us-east-1", T20130524, 0, NULL);
	/* A signed header sent twice is signed as the comma-joined list. */
	get_object_req(&q);
	req_add(&q, "Range", "bytes=0-9");
	expect_verify(&q, "us-east-1", T20130524, -EPERM, "SignatureDoesNotMatch");

	/* Header and query credentials together. */
	get_object_req(&q);
	snprintf(q.query, sizeof(q.query), "X-Amz-Signature=%064d", 0);
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidArgument");

	/* A path or a query that is not valid percent-encoding. */
	get_object_req(&q);
	snprintf(q.path, sizeof(q.path), "/test%%zz.txt");
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidURI");
	get_object_req(&q);
	snprintf(q.query, sizeof(q.query), "a=%%g0");
	expect_verify(&q, "us-east-1", T20130524, -EINVAL, "InvalidURI");

	/* An unknown key, a failing lookup. */
	{
		struct keyring k = {"AKIDOTHER", SK, 0, 0};
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sigv4_auth auth;
		get_object_req(&q);
		assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), -EPERM);
		assert_string_equal(err.reason, "InvalidAccessKeyId");
		sigv4_auth_done(&auth);
		k.fail = -EIO;
		assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), -EIO);
		assert_string_equal(err.reason, "InternalError");
		sigv4_auth_done(&auth);
	}
	/* The wrong secret. */
	{
		struct keyring k = {AK, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEz", 0, 0};
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sigv4_auth auth;
		get_object_req(&q);
		assert_int_equal(verify_at(&q, "us-east-1", T20130524, &k, &auth, &err), -EPERM);
		assert_string_equal(err.reason, "SignatureDoesNotMatch");
		sigv4_auth_done(&auth);
	}
}

/* ---- presigned URLs: every named bad input -------------------------------------------- */

static void presigned_bad(const char *query, time_t now, int code, const char *reason)
{
	struct req q;
	presigned_req(&q, query);
	expect_verify(&q, "us-east-1", now, code, reason);
}

#define P_ALG "X-Amz-Algorithm=AWS4-HMAC-SHA256"
#define P_CRED "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
#define P_DATE "X-Amz-Date=20130524T000000Z"
#define P_EXP "X-Amz-Expires=86400"
#define P_SH "X-Amz-SignedHeaders=host"
#define P_SIG "X-Amz-Signature=" PRESIGN_SIG

static void test_presigned_rules(void **state)
{
	const char *qe = "AuthorizationQueryParametersError";
	time_t t = T20130524;

	/* Each parameter missing. */
	presigned_bad(P_CRED "&" P_DATE "&" P_EXP "&" P_SH "&" P_SIG, t, -EINVAL, qe);
	presigned_bad(P_ALG "&" P_DATE "&" P_EXP "&" P_SH "&" P_SIG, t, -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&" P_EXP "&" P_SH "&" P_SIG, t, -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&" P_DATE "&" P_SH "&" P_SIG, t, -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&" P_DATE "&" P_EXP "&" P_SIG, t, -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&" P_DATE "&" P_EXP "&" P_SH, t, -EINVAL, qe);
	/* Each parameter twice. */
	presigned_bad(P_ALG "&" P_ALG "&" P_CRED "&" P_DATE "&" P_EXP "&" P_SH "&" P_SIG, t,
		      -EINVAL, qe);
	presigned_bad(PRESIGN_Q "&" P_SIG "&" P_SIG, t, -EINVAL, qe);
	presigned_bad(PRESIGN_Q "&" P_EXP "&" P_SIG, t, -EINVAL, qe);
	/* Bad values. */
	presigned_bad("X-Amz-Algorithm=AWS4-HMAC-SHA512&" P_CRED "&" P_DATE "&" P_EXP "&" P_SH
		      "&" P_SIG,
		      t, -EINVAL, qe);
	presigned_bad(P_ALG
		      "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3&" P_DATE
		      "&" P_EXP "&" P_SH "&" P_SIG,
		      t, -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&X-Amz-Date=20130524T000000&" P_EXP "&" P_SH "&" P_SIG, t,
		      -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&X-Amz-Date=20130525T000000Z&" P_EXP "&" P_SH "&" P_SIG, t,
		      -EINVAL, qe);
	const char *bad_expires[] = {"0",  "604801", "abc", "%2B5",   "086400",
				     "-1", "",	     "1e3", "9999999"};
	for (size_t i = 0; i < sizeof(bad_expires) / sizeof(bad_expires[0]); i++) {
		char qs[1024];
		snprintf(qs, sizeof(qs), "%s&X-Amz-Expires=%s&%s", P_ALG "&" P_CRED "&" P_DATE,
			 bad_expires[i], P_SH "&" P_SIG);
		presigned_bad(qs, t, -EINVAL, qe);
	}
	presigned_bad(P_ALG "&" P_CRED "&" P_DATE "&" P_EXP "&X-Amz-SignedHeaders=range&" P_SIG, t,
		      -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&" P_DATE "&" P_EXP "&X-Amz-SignedHeaders=Host&" P_SIG, t,
		      -EINVAL, qe);
	presigned_bad(
		PRESIGN_Q
		"&X-Amz-Signature=AEEED9BBCCD4D02EE5C0109B86D86835F995330DA4C265957D157751F604D404",
		t, -EINVAL, qe);
	presigned_bad(PRESIGN_Q "&X-Amz-Signature=aeeed9bb", t, -EINVAL, qe);
	/* A wrong signature; a wrong region (named); a changed parameter. */
	presigned_bad(
		PRESIGN_Q
		"&X-Amz-Signature=beeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
		t, -EPERM, "SignatureDoesNotMatch");
	presigned_bad(
		P_ALG
		"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-south%2Fs3%2Faws4_request&" P_DATE
		"&" P_EXP "&" P_SH "&" P_SIG,
		t, -EINVAL, qe);
	presigned_bad(P_ALG "&" P_CRED "&" P_DATE "&X-Amz-Expires=86401&" P_SH "&" P_SIG, t, -EPERM,
		      "SignatureDoesNotMatch");
	/* An x-amz-* header sent with a presigned URL must be one it signed. */
	{
		struct req q;
		presigned_req(&q, PRESIGN_Q "&" P_SIG);
		req_add(&q, "x-amz-meta-a", "1");
		expect_verify(&q, "us-east-1", t, -EPERM, "AccessDenied");
	}
}

/* ---- the signer and presigner against the verifier ------------------------------------ */

/* Splits a signed URL into a request and verifies it with the given headers. */
static void verify_signed_url(const char *method, const char *url, const char *host_header,
			      struct sigv4_header *extra, size_t n_extra, const char *authorization,
			      const char *amz_date, const char *payload, const char *region,
			      time_t now, int want)
{
	struct req q;
	const char *p = strstr(url, "://");
	assert_non_null(p);
	p = strchr(p + 3, '/');
	assert_non_null(p);
	const char *qm = strchr(p, '?');
	char path[1024], host[256];
	size_t hl = (size_t)(p - strstr(url, "://") - 3);
	snprintf(host, sizeof(host), "%.*s", (int)hl, strstr(url, "://") + 3);
	snprintf(path, sizeof(path), "%.*s", (int)(qm ? qm - p : (long)strlen(p)), p);
	req_init(&q, method, path, qm ? qm + 1 : NULL);
	req_add(&q, "Host", host_header ? host_header : host);
	for (size_t i = 0; i < n_extra; i++)
		req_add(&q, extra[i].name, extra[i].value);
	if (authorization) {
		req_add(&q, "Authorization", authorization);
		req_add(&q, "X-Amz-Date", amz_date);
		req_add(&q, "X-Amz-Content-Sha256", payload);
	}
	expect_verify(&q, region, now, want, NULL);
}

static void test_sign_roundtrip(void **state)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct sigv4_credentials cred = {AK, sk, "us-south", NULL};
	struct sealvm_err err = SEALVM_ERR_INIT;
	const time_t now = 1700000000;
	const char *urls[] = {
		"http://127.0.0.1:8721/bucket/a%20b%2Bc~d",
		"http://127.0.0.1:8721/bucket/%C3%BC%C3%B1/%E2%9C%93",
		"http://127.0.0.1:8721/bucket/a/b//c",
		"http://127.0.0.1:8721/bucket/%252F",
		"http://127.0.0.1:8721/bucket/.././x",
		"http://127.0.0.1:8721/bucket?list-type=2&prefix=a%20b%2Bc&delimiter=%2F",
		"http://127.0.0.1:8721/bucket?uploads",
		"http://127.0.0.1:8721/bucket/key?partNumber=1&uploadId=abc%3D%3D",
		"http://127.0.0.1:8721/bucket?a=1&a=0&b=&c",
		"http://[::1]:8721/bucket/x?y=%E2%82%AC",
		"https://s3.us-south.example:443/bucket/x",
		"http://s3.us-south.example/",
	};
	struct sigv4_header h[] = {{"Range", "bytes=0-9"}, {"X-Amz-Meta-Note", "  two  words "}};

	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		struct sigv4_signed s;
		char *purl = NULL;
		assert_int_equal(sigv4_sign("GET", urls[i], h, 2, SIGV4_UNSIGNED_PAYLOAD, &cred,
					    now, &s, &err),
				 0);
		verify_signed_url("GET", s.url, NULL, h, 2, s.authorization, s.amz_date,
				  SIGV4_UNSIGNED_PAYLOAD, "us-south", now, 0);
		/* The raw URL verifies too: the verifier normalises it the same way. */
		verify_signed_url("GET", urls[i], s.host, h, 2, s.authorization, s.amz_date,
				  SIGV4_UNSIGNED_PAYLOAD, "us-south", now, 0);
		/* Another method, another region, a dropped header: refused. */
		verify_signed_url("PUT", s.url, NULL, h, 2, s.authorization, s.amz_date,
				  SIGV4_UNSIGNED_PAYLOAD, "us-south", now, -EPERM);
		verify_signed_url("GET", s.url, NULL, h, 2, s.authorization, s.amz_date,
				  SIGV4_UNSIGNED_PAYLOAD, "us-east", now, -EINVAL);
		verify_signed_url("GET", s.url, NULL, h, 1, s.authorization, s.amz_date,
				  SIGV4_UNSIGNED_PAYLOAD, "us-south", now, -EPERM);
		sigv4_signed_done(&s);

		assert_int_equal(
			sigv4_presign("GET", urls[i], NULL, 0, &cred, now, 300, &purl, &err), 0);
		verify_signed_url("GET", purl, NULL, NULL, 0, NULL, NULL, NULL, "us-south",
				  now + 300, 0);
		verify_signed_url("GET", purl, NULL, NULL, 0, NULL, NULL, NULL, "us-south",
				  now + 301, -EPERM);
		verify_signed_url("HEAD", purl, NULL, NULL, 0, NULL, NULL, NULL, "us-south", now,
				  -EPERM);
		free(purl);
		/* A presigned URL with a signed extra header needs it sent. */
		assert_int_equal(
			sigv4_presign("PUT", urls[i], h, 1, &cred, now, 604800, &purl, &err), 0);
		verify_signed_url("PUT", purl, NULL, h, 1, NULL, NULL, NULL, "us-south",
				  now + 604800, 0);
		verify_signed_url("PUT", purl, NULL, NULL, 0, NULL, NULL, NULL, "us-south", now,
				  -EPERM);
		free(purl);
	}
	sealvm_secret_free(sk);
}

static void test_sign_bad_input(void **state)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct sigv4_credentials cred = {AK, sk, "us-south", NULL};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_signed s;
	char *url = NULL;
	const time_t now = 1700000000;

	const char *bad_urls[] = {"ftp://h/x",	     "http:///x", "http://user@h/x", "http://h/a b",
				  "http://h/x#frag", "h/x",	  "http://h/x\n"};
	for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(
			sigv4_sign("GET", bad_urls[i], NULL, 0, EMPTY, &cred, now, &s, &err),
			-EINVAL);
	}
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_sign("GET", "http://h/%zz", NULL, 0, EMPTY, &cred, now, &s, &err),
			 -EINVAL);
	assert_string_equal(err.reason, "InvalidURI");
	struct sigv4_header bad_h[][2] = {
		{{"Host", "h"}, {NULL, NULL}},
		{{"x-amz-date", "x"}, {NULL, NULL}},
		{{"X-Amz-Content-Sha256", "x"}, {NULL, NULL}},
		{{"Authorization", "x"}, {NULL, NULL}},
		{{"Range", "a"}, {"range", "b"}},
		{{"Bad Name", "x"}, {NULL, NULL}},
		{{"", "x"}, {NULL, NULL}},
		{{"x-a", "a\r\nx-b: c"}, {NULL, NULL}},
	};
	for (size_t i = 0; i < sizeof(bad_h) / sizeof(bad_h[0]); i++) {
		size_t n = bad_h[i][1].name ? 2 : 1;
		sealvm_err_clear(&err);
		if (sigv4_sign("GET", "http://h/x", bad_h[i], n, EMPTY, &cred, now, &s, &err) !=
		    -EINVAL)
			fail_msg("header set #%zu accepted", i);
	}
	const char *bad_hash[] = {
		"", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "unsigned",
		NULL};
	for (size_t i = 0; i < sizeof(bad_hash) / sizeof(bad_hash[0]); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(
			sigv4_sign("GET", "http://h/x", NULL, 0, bad_hash[i], &cred, now, &s, &err),
			-EINVAL);
	}
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_sign("get", "http://h/x", NULL, 0, EMPTY, &cred, now, &s, &err),
			 -EINVAL);
	struct sigv4_credentials bad_cred[] = {
		{NULL, sk, "us-south", NULL}, {"AK/x", sk, "us-south", NULL},
		{AK, NULL, "us-south", NULL}, {AK, sk, "US-SOUTH", NULL},
		{AK, sk, NULL, NULL},	      {AK, sk, "us-south", "S3"},
	};
	for (size_t i = 0; i < sizeof(bad_cred) / sizeof(bad_cred[0]); i++) {
		sealvm_err_clear(&err);
		if (sigv4_sign("GET", "http://h/x", NULL, 0, EMPTY, &bad_cred[i], now, &s, &err) !=
		    -EINVAL)
			fail_msg("credentials #%zu accepted", i);
	}
	/* Presign: bounds of the expiry, no auth parameters in the URL. */
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_presign("GET", "http://h/x", NULL, 0, &cred, now, 0, &url, &err),
			 -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(
		sigv4_presign("GET", "http://h/x", NULL, 0, &cred, now, 604801, &url, &err),
		-EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_presign("GET", "http://h/x?X-Amz-Signature=1", NULL, 0, &cred, now,
				       60, &url, &err),
			 -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_presign("GET", "http://h/x?X-Amz-Expires=1", NULL, 0, &cred, now, 60,
				       &url, &err),
			 -EINVAL);
	assert_null(url);
	/*
	 * Nothing is signed that the verifier could not read back: a query the
	 * presigning parameters push over the parameter limit, an encoded NUL.
	 */
	{
		char big[2048] = "http://h/x?";
		for (int i = 0; i < SIGV4_QUERY_PARAMS_MAX - 3; i++)
			strcat(big, "p=1&");
		sealvm_err_clear(&err);
		assert_int_equal(sigv4_presign("GET", big, NULL, 0, &cred, now, 60, &url, &err),
				 -E2BIG);
		assert_null(url);
		sealvm_err_clear(&err);
		assert_int_equal(sigv4_sign("GET", big, NULL, 0, EMPTY, &cred, now, &s, &err), 0);
		sigv4_signed_done(&s);
		sealvm_err_clear(&err);
		assert_int_equal(
			sigv4_sign("GET", "http://h/x?a=%00", NULL, 0, EMPTY, &cred, now, &s, &err),
			-EINVAL);
	}
	sealvm_secret_free(sk);
}

static void test_default_ports(void **state)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct sigv4_credentials cred = {AK, sk, "us-south", NULL};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_signed s;
	const char *cases[][2] = {
		{"http://h:80/x", "h"},	       {"https://h:443/x", "h"},
		{"http://h:443/x", "h:443"},   {"https://h:80/x", "h:80"},
		{"http://h:8080/x", "h:8080"}, {"http://[::1]:80/x", "[::1]"},
		{"HTTP://H/x", "H"},	       {"http://h?x=1", "h"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
			sigv4_sign("GET", cases[i][0], NULL, 0, EMPTY, &cred, 1700000000, &s, &err),
			0);
		assert_string_equal(s.host, cases[i][1]);
		sigv4_signed_done(&s);
	}
	sealvm_secret_free(sk);
}

/* ---- the signing-key cache ------------------------------------------------------------ */

static void test_key_cache(void **state)
{
	struct keyring k = {AK, SK, 0, 0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_key_cache *c = NULL;
	struct sigv4_auth auth;
	struct req q;
	uint64_t hits, misses;

	assert_int_equal(sigv4_key_cache_new(0, &c), -EINVAL);
	assert_int_equal(sigv4_key_cache_new(100000, &c), -EINVAL);
	assert_int_equal(sigv4_key_cache_new(2, &c), 0);
	struct sigv4_verifier v = {"us-east-1", lookup, &k, c, 0};

	get_object_req(&q);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(sigv4_verify(&v, &q.r, T20130524, &auth, &err), 0);
		sigv4_auth_done(&auth);
	}
	assert_int_equal(k.calls, 1);
	sigv4_key_cache_stats(c, &hits, &misses);
	assert_int_equal(hits, 2);
	assert_int_equal(misses, 1);
	/* A cached key still fails a bad signature. */
	get_with_auth(
		&q, "AWS4-HMAC-SHA256 " CRED "," SH
		    ",Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb42");
	assert_int_equal(sigv4_verify(&v, &q.r, T20130524, &auth, &err), -EPERM);
	sigv4_auth_done(&auth);
	assert_int_equal(k.calls, 1);
	/* Forgotten: looked up again, and a deleted key is then refused. */
	sigv4_key_cache_forget(c, AK);
	get_object_req(&q);
	k.akid = "AKIDGONE";
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_verify(&v, &q.r, T20130524, &auth, &err), -EPERM);
	assert_string_equal(err.reason, "InvalidAccessKeyId");
	sigv4_auth_done(&auth);
	assert_int_equal(k.calls, 2);
	k.akid = AK;
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_verify(&v, &q.r, T20130524, &auth, &err), 0);
	sigv4_auth_done(&auth);
	assert_int_equal(k.calls, 3);
	sigv4_key_cache_clear(c);
	assert_int_equal(sigv4_verify(&v, &q.r, T20130524, &auth, &err), 0);
	sigv4_auth_done(&auth);
	assert_int_equal(k.calls, 4);
	sigv4_key_cache_free(c);
	sigv4_key_cache_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aws_get_object),
		cmocka_unit_test(test_aws_get_object_signed_by_us),
		cmocka_unit_test(test_aws_put_object),
		cmocka_unit_test(test_aws_bucket_examples),
		cmocka_unit_test(test_aws_presigned),
		cmocka_unit_test(test_aws_chunked_seeds),
		cmocka_unit_test(test_aws_signing_key),
		cmocka_unit_test(test_canonical_uri),
		cmocka_unit_test(test_canonical_query),
		cmocka_unit_test(test_amz_date),
		cmocka_unit_test(test_auth_header_forms),
		cmocka_unit_test(test_header_auth_rules),
		cmocka_unit_test(test_presigned_rules),
		cmocka_unit_test(test_sign_roundtrip),
		cmocka_unit_test(test_sign_bad_input),
		cmocka_unit_test(test_default_ports),
		cmocka_unit_test(test_key_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
