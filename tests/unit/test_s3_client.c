// SPDX-License-Identifier: Apache-2.0
/*
 * test_s3_client.c — the S3 client's offline parts: configuration checks,
 * URL encoding, request building and signing (AWS's published GET Object
 * example, and round trips through our own verifier for PUT bodies and
 * presigned URLs), the bearer form, aws-chunked lengths, cos:// URIs, the
 * endpoints table, S3 XML error bodies, the XML reader, and the resume state
 * file (mode 0600, no secret, refusals of files that are not ours).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "sealvm/s3.h"
#include "sealvm/s3client.h"
#include "sealvm/sigv4.h"

#include "../../lib/s3/s3_client_internal.h"

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define T20130524 1369353600 /* 2013-05-24T00:00:00Z */

static struct sealvm_secret *secret_of(const char *s)
{
	struct sealvm_secret *x = NULL;
	assert_int_equal(sealvm_secret_from(s, strlen(s), &x), 0);
	return x;
}

static struct s3c *hmac_client(const char *endpoint, const char *region)
{
	struct sealvm_secret *sk = secret_of(SK);
	struct s3c_config cfg = {.endpoint = endpoint,
				 .region = region,
				 .access_key_id = AK,
				 .secret_access_key = sk};
	struct s3c *c = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;

	assert_int_equal(s3c_new(&cfg, &c, &err), 0);
	sealvm_secret_free(sk);
	return c;
}

/* The line "name: ..." of @lines (case-sensitive name), or NULL. */
static const char *line_of(char **lines, const char *name)
{
	size_t n = strlen(name);
	for (char **l = lines; *l; l++)
		if (!strncmp(*l, name, n) && (*l)[n] == ':')
			return *l + n + 2;
	return NULL;
}

static void test_config_refusals(void **state)
{
	struct sealvm_secret *sk = secret_of(SK), *tok = secret_of("tok");
	struct s3c *c = NULL;
	const struct {
		struct s3c_config cfg;
	} bad[] = {
		{{.endpoint = "ftp://x", .region = "us-south"}},
		{{.endpoint = "http://", .region = "us-south"}},
		{{.endpoint = "http://h/path", .region = "us-south"}},
		{{.endpoint = "http://u@h", .region = "us-south"}},
		{{.endpoint = "http://h", .region = "US_SOUTH"}},
		{{.endpoint = "http://h", .region = ""}},
		{{.endpoint = "http://h", .region = "r", .access_key_id = AK}},
		{{.endpoint = "http://h", .region = "r", .secret_access_key = sk}},
		{{.endpoint = "http://h",
		  .region = "r",
		  .access_key_id = AK,
		  .secret_access_key = sk,
		  .bearer_token = tok}},
	};

	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		assert_int_equal(s3c_new(&bad[i].cfg, &c, &err), -EINVAL);
		assert_string_equal(err.reason, "S3C_CONFIG");
		assert_null(strstr(err.message, SK));
	}
	/* a trailing '/' is dropped */
	struct s3c_config ok = {.endpoint = "http://127.0.0.1:9/",
				.region = "us-south",
				.bearer_token = tok,
				.instance_id = "inst-1"};
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(s3c_new(&ok, &c, &err), 0);
	assert_string_equal(c->endpoint, "http://127.0.0.1:9");
	s3c_free(c);
	sealvm_secret_free(sk);
	sealvm_secret_free(tok);
}

static void test_url_encoding(void **state)
{
	struct s3c *c = hmac_client("http://127.0.0.1:8730", "us-south");
	char *u = NULL;

	assert_int_equal(s3c_url(c, "bkt", "a b/\xc3\xbc+x~y", "list-type=2", &u), 0);
	assert_string_equal(u, "http://127.0.0.1:8730/bkt/a%20b/%C3%BC%2Bx~y?list-type=2");
	free(u);
	assert_int_equal(s3c_url(c, NULL, NULL, NULL, &u), 0);
	assert_string_equal(u, "http://127.0.0.1:8730/");
	free(u);
	assert_int_equal(s3c_url(c, "bkt", "dir/", NULL, &u), 0);
	assert_string_equal(u, "http://127.0.0.1:8730/bkt/dir/");
	free(u);
	s3c_free(c);
}

/* AWS's published GET Object example, signed through the client's request builder. */
static void test_sign_aws_example(void **state)
{
	struct s3c *c = hmac_client("https://examplebucket.s3.amazonaws.com", "us-east-1");
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3c_req r;
	char **lines = NULL, *url = NULL;

	/* the path "/test.txt" is what a bucket-only request for "test.txt" produces */
	s3c_req_init(&r, "GET", "test.txt", NULL);
	assert_int_equal(s3c_req_header(&r, "Range", "bytes=0-9"), 0);
	assert_int_equal(s3c_build(c, &r, T20130524, &lines, &url, &err), 0);
	assert_string_equal(url, "https://examplebucket.s3.amazonaws.com/test.txt");
	assert_string_equal(
		line_of(lines, "Authorization"),
		"AWS4-HMAC-SHA256 Credential=" AK "/20130524/us-east-1/s3/aws4_request, "
		"SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
		"Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	assert_string_equal(line_of(lines, "x-amz-date"), "20130524T000000Z");
	assert_string_equal(line_of(lines, "x-amz-content-sha256"), SIGV4_EMPTY_SHA256);
	assert_string_equal(line_of(lines, "Range"), "bytes=0-9");
	s3c_lines_free(lines);
	free(url);
	s3c_free(c);
}

static int lookup(void *userdata, const char *akid, struct sealvm_secret **ret,
		  struct sealvm_err *err)
{
	if (strcmp(akid, AK) != 0)
		return -ENOENT;
	return sealvm_secret_from(SK, strlen(SK), ret);
}

/* Verifies the built request with the server's verifier; returns sigv4_verify's result. */
static int verify_built(const char *method, const char *url, char **lines, time_t now,
			struct sigv4_auth *auth)
{
	struct sigv4_verifier v = {.region = "us-south", .lookup = lookup};
	struct sigv4_header h[64];
	char names[64][64];
	size_t n = 0;
	const char *host = strstr(url, "://") + 3, *path = strchr(host, '/'), *q = strchr(url, '?');
	char hostbuf[128], pathbuf[1024];
	struct sealvm_err err = SEALVM_ERR_INIT;

	snprintf(hostbuf, sizeof(hostbuf), "%.*s", (int)(path - host), host);
	snprintf(pathbuf, sizeof(pathbuf), "%.*s", (int)(q ? q - path : (long)strlen(path)), path);
	h[n++] = (struct sigv4_header){"host", hostbuf};
	for (char **l = lines; *l && n < 64; l++) {
		const char *colon = strchr(*l, ':');
		snprintf(names[n], sizeof(names[n]), "%.*s", (int)(colon - *l), *l);
		h[n] = (struct sigv4_header){names[n], colon + 2};
		n++;
	}
	struct sigv4_request req = {method, pathbuf, q ? q + 1 : NULL, h, n};
	return sigv4_verify(&v, &req, now, auth, &err);
}

static void test_put_trailer_request_verifies(void **state)
{
	struct s3c *c = hmac_client("http://127.0.0.1:8730", "us-south");
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	struct s3c_req r;
	char **lines = NULL, *url = NULL;
	time_t now = 1795900000;

	s3c_req_init(&r, "PUT", "bkt", "dir/obj 1");
	r.fd = 0;
	r.fd_len = 3 * S3C_CHUNK + 5;
	r.payload = S3C_PAYLOAD_TRAILER;
	assert_int_equal(s3c_req_header(&r, "x-amz-meta-color", "blue"), 0);
	assert_int_equal(s3c_req_header(&r, "content-type", "text/plain"), 0);
	assert_int_equal(s3c_build(c, &r, now, &lines, &url, &err), 0);
	assert_string_equal(line_of(lines, "content-encoding"), "aws-chunked");
	assert_string_equal(line_of(lines, "x-amz-decoded-content-length"), "3145733");
	assert_string_equal(line_of(lines, "x-amz-trailer"), "x-amz-checksum-crc32c");
	assert_string_equal(line_of(lines, "x-amz-content-sha256"),
			    SIGV4_STREAMING_UNSIGNED_TRAILER);
	assert_int_equal(verify_built("PUT", url, lines, now, &auth), 0);
	assert_int_equal(auth.payload, SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER);
	assert_string_equal(auth.trailer, "x-amz-checksum-crc32c");
	assert_int_equal(auth.decoded_length, 3145733);
	sigv4_auth_done(&auth);
	/* a tampered header no longer verifies */
	for (char **l = lines; *l; l++)
		if (!strncmp(*l, "x-amz-meta-color", 16))
			(*l)[strlen(*l) - 1] = 'X';
	assert_int_equal(verify_built("PUT", url, lines, now, &auth), -EPERM);
	sigv4_auth_done(&auth);
	s3c_lines_free(lines);
	free(url);

	/* the SHA-256 mode signs the given hash; unsigned mode says so */
	s3c_req_init(&r, "PUT", "bkt", "k");
	r.fd = 0;
	r.fd_len = 10;
	r.payload = S3C_PAYLOAD_SHA256;
	memset(r.sha256_hex, 'a', 64);
	assert_int_equal(s3c_build(c, &r, now, &lines, &url, &err), 0);
	assert_non_null(line_of(lines, "x-amz-content-sha256"));
	assert_int_equal(strspn(line_of(lines, "x-amz-content-sha256"), "a"), 64);
	assert_null(line_of(lines, "content-encoding"));
	s3c_lines_free(lines);
	free(url);
	r.payload = S3C_PAYLOAD_UNSIGNED;
	assert_int_equal(s3c_build(c, &r, now, &lines, &url, &err), 0);
	assert_string_equal(line_of(lines, "x-amz-content-sha256"), SIGV4_UNSIGNED_PAYLOAD);
	s3c_lines_free(lines);
	free(url);
	s3c_free(c);
}

static void test_query_request_verifies(void **state)
{
	struct s3c *c = hmac_client("http://127.0.0.1:8730", "us-south");
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	struct s3c_req r;
	char **lines = NULL, *url = NULL;
	time_t now = 1795900000;

	/* value-less parameters and unsorted ones: what curl's own signer gets wrong */
	s3c_req_init(&r, "POST", "bkt", "k");
	r.query = "uploads";
	r.body = "";
	assert_int_equal(s3c_build(c, &r, now, &lines, &url, &err), 0);
	assert_string_equal(url, "http://127.0.0.1:8730/bkt/k?uploads=");
	assert_int_equal(verify_built("POST", url, lines, now, &auth), 0);
	sigv4_auth_done(&auth);
	s3c_lines_free(lines);
	free(url);
	s3c_req_init(&r, "GET", "bkt", NULL);
	r.query = "prefix=a%2Fb&list-type=2&delimiter=%2F";
	assert_int_equal(s3c_build(c, &r, now, &lines, &url, &err), 0);
	assert_int_equal(verify_built("GET", url, lines, now, &auth), 0);
	sigv4_auth_done(&auth);
	/* 16 minutes later the server refuses it */
	assert_int_equal(verify_built("GET", url, lines, now + 16 * 60, &auth), -EPERM);
	sigv4_auth_done(&auth);
	s3c_lines_free(lines);
	free(url);
	s3c_free(c);
}

static void test_bearer_request(void **state)
{
	struct sealvm_secret *tok = secret_of("eyJtoken.payload.sig");
	struct s3c_config cfg = {.endpoint = "http://127.0.0.1:8730",
				 .region = "us-south",
				 .bearer_token = tok,
				 .instance_id = "0a1b-2c"};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3c *c = NULL;
	struct s3c_req r;
	char **lines = NULL, *url = NULL;

	assert_int_equal(s3c_new(&cfg, &c, &err), 0);
	sealvm_secret_free(tok);
	s3c_req_init(&r, "PUT", "bkt", "k");
	r.fd = 0;
	r.fd_len = 10;
	r.payload = S3C_PAYLOAD_TRAILER;
	assert_int_equal(s3c_build(c, &r, 0, &lines, &url, &err), 0);
	assert_string_equal(line_of(lines, "Authorization"), "Bearer eyJtoken.payload.sig");
	assert_string_equal(line_of(lines, "ibm-service-instance-id"), "0a1b-2c");
	/* one pass, as with SigV4: aws-chunked, the CRC32C in the trailer, no signature */
	assert_string_equal(line_of(lines, "content-encoding"), "aws-chunked");
	assert_string_equal(line_of(lines, "x-amz-decoded-content-length"), "10");
	assert_string_equal(line_of(lines, "x-amz-trailer"), "x-amz-checksum-crc32c");
	assert_null(line_of(lines, "x-amz-checksum-crc32c"));
	assert_string_equal(line_of(lines, "x-amz-content-sha256"),
			    SIGV4_STREAMING_UNSIGNED_TRAILER);
	assert_null(line_of(lines, "x-amz-date"));
	assert_true(s3c_req_chunked(&r));
	s3c_lines_free(lines);
	free(url);
	/* presigning needs HMAC */
	char *p = NULL;
	assert_int_equal(s3c_presign(c, "GET", "bkt", "k", 60, 0, &p, &err), -EINVAL);
	assert_string_equal(err.reason, "PRESIGN_NEEDS_HMAC");
	s3c_free(c);
}

static void test_presign_verifies(void **state)
{
	struct s3c *c = hmac_client("http://127.0.0.1:8730", "us-south");
	struct sigv4_verifier v = {.region = "us-south", .lookup = lookup};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	char *url = NULL, host[64], path[256];
	time_t now = 1795900000;

	assert_int_equal(s3c_presign(c, "GET", "bkt", "a b.txt", 600, now, &url, &err), 0);
	assert_non_null(strstr(url, "X-Amz-Expires=600"));
	assert_null(strstr(url, SK));
	const char *h = url + 7, *pth = strchr(h, '/'), *q = strchr(url, '?');
	snprintf(host, sizeof(host), "%.*s", (int)(pth - h), h);
	snprintf(path, sizeof(path), "%.*s", (int)(q - pth), pth);
	assert_string_equal(path, "/bkt/a%20b.txt");
	struct sigv4_header hd[] = {{"host", host}};
	struct sigv4_request req = {"GET", path, q + 1, hd, 1};
	assert_int_equal(sigv4_verify(&v, &req, now + 10, &auth, &err), 0);
	assert_int_equal(auth.kind, SIGV4_KIND_QUERY);
	sigv4_auth_done(&auth);
	sealvm_err_clear(&err);
	assert_int_equal(sigv4_verify(&v, &req, now + 601, &auth, &err), -EPERM);
	sigv4_auth_done(&auth);
	free(url);
	sealvm_err_clear(&err);
	assert_int_equal(s3c_presign(c, "DELETE", "bkt", "k", 600, now, &url, &err), -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(s3c_presign(c, "GET", "bkt", "k", 604801, now, &url, &err), -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(s3c_presign(c, "GET", "bkt", "k", 0, now, &url, &err), -EINVAL);
	s3c_free(c);
}

static void test_chunked_length(void **state)
{
	const size_t tail = 3 + strlen("x-amz-checksum-crc32c:") + 8 + 4;

	assert_int_equal(s3c_chunked_length(0), tail);
	assert_int_equal(s3c_chunked_length(1), 1 + 2 + 1 + 2 + tail);
	assert_int_equal(s3c_chunked_length(S3C_CHUNK), 6 + 2 + S3C_CHUNK + 2 + tail);
	assert_int_equal(s3c_chunked_length(S3C_CHUNK + 0x10),
			 6 + 4 + S3C_CHUNK + 2 + 2 + 0x10 + 2 + tail);
}

/* What the client sends for a body decodes with the server's aws-chunked decoder. */
struct sink {
	uint64_t n;
	uint32_t crc;
};
static int on_data(void *userdata, const void *data, size_t len)
{
	struct sink *s = userdata;
	s->n += len;
	s->crc = s3_crc32c(s->crc, data, len);
	return 0;
}

static void test_uri(void **state)
{
	struct s3c_uri u;
	struct sealvm_err err = SEALVM_ERR_INIT;
	static const char *const bad[] = {
		"s3://us-south/b/k",	"cos://",
		"cos:///bkt/k",		"cos://us-south",
		"cos://us-south/",	"cos://us-south/ab",
		"cos://US/bkt/k",	"cos://us-south/Bkt/k",
		"cos://us-south/b_k/x", "cos://us-south/bkt/a\nb",
	};

	assert_int_equal(s3c_uri_parse("cos://us-south/my-bucket/dir/image.vhd", &u, &err), 0);
	assert_string_equal(u.region, "us-south");
	assert_string_equal(u.bucket, "my-bucket");
	assert_string_equal(u.key, "dir/image.vhd");
	s3c_uri_done(&u);
	assert_int_equal(s3c_uri_parse("cos://us-south/my-bucket", &u, &err), 0);
	assert_string_equal(u.key, "");
	s3c_uri_done(&u);
	assert_int_equal(s3c_uri_parse("cos://us-south/my-bucket/", &u, &err), 0);
	assert_string_equal(u.key, "");
	s3c_uri_done(&u);
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(s3c_uri_parse(bad[i], &u, &err), -EINVAL);
		assert_string_equal(err.reason, "BAD_URI");
	}
	char longkey[1100] = "cos://us-south/bkt/";
	memset(longkey + strlen(longkey), 'k', 1030);
	longkey[sizeof(longkey) - 1] = 0;
	sealvm_err_clear(&err);
	assert_int_equal(s3c_uri_parse(longkey, &u, &err), -EINVAL);
}

static void test_endpoints(void **state)
{
	static const char doc[] =
		"{\"service-endpoints\":{\"regional\":{\"us-south\":{\"public\":{\"us-south\":"
		"\"http://127.0.0.1:8730\"}},\"eu-de\":{\"public\":{\"eu-de\":\"https://s3.eu\"}}},"
		"\"cross-region\":{},\"single-site\":{}}}";
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *url = NULL, **regions = NULL;

	assert_int_equal(s3c_endpoints_lookup(doc, strlen(doc), "us-south", &url, &err), 0);
	assert_string_equal(url, "http://127.0.0.1:8730");
	free(url);
	assert_int_equal(s3c_endpoints_lookup(doc, strlen(doc), "eu-de", &url, &err), 0);
	assert_string_equal(url, "https://s3.eu");
	free(url);
	assert_int_equal(s3c_endpoints_lookup(doc, strlen(doc), "jp-tok", &url, &err), -ENOENT);
	assert_string_equal(err.reason, "UNKNOWN_REGION");
	assert_non_null(strstr(err.message, "us-south"));
	assert_non_null(strstr(err.message, "eu-de"));
	assert_int_equal(s3c_endpoints_regions(doc, strlen(doc), &regions, &err), 0);
	size_t n = 0;
	for (; regions[n]; n++)
		free(regions[n]);
	free(regions);
	assert_int_equal(n, 2);
	static const char *const bad[] = {
		"not json",
		"{}",
		"{\"service-endpoints\":{\"regional\":[]}}",
		"{\"service-endpoints\":{\"regional\":{\"us-south\":{\"public\":{\"us-south\":5}}}}}",
		("{\"service-endpoints\":{\"regional\":{\"us-south\":{\"public\":{\"us-south\":"
		 "\"file:///etc\"}}}}}"),
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(
			s3c_endpoints_lookup(bad[i], strlen(bad[i]), "us-south", &url, &err),
			-EINVAL);
		assert_string_equal(err.reason, "BAD_ANSWER");
	}
}

static void test_error_bodies(void **state)
{
	static const char body[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>"
		"<Message>The specified key does not exist &amp; never did.</Message>"
		"<Resource>/bkt/k</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>";
	struct sealvm_err err = SEALVM_ERR_INIT;

	assert_int_equal(s3c_error_from(404, body, strlen(body), "other", NULL, &err), -ENOENT);
	assert_string_equal(err.reason, "NoSuchKey");
	assert_non_null(strstr(err.message, "The specified key does not exist & never did."));
	assert_non_null(strstr(err.message, "4442587FB7D0A2F9"));
	assert_non_null(strstr(err.message, "HTTP 404"));

	static const struct {
		long status;
		const char *code;
		int e;
	} codes[] = {
		{403, "AccessDenied", -EACCES},	       {403, "SignatureDoesNotMatch", -EPERM},
		{409, "BucketNotEmpty", -ENOTEMPTY},   {409, "BucketAlreadyExists", -EEXIST},
		{416, "InvalidRange", -ERANGE},	       {400, "BadDigest", -EBADMSG},
		{400, "EntityTooSmall", -EINVAL},      {503, "ServiceUnavailable", -EIO},
		{403, "KMSKeyDisabled", -EKEYREVOKED}, {404, "NoSuchUpload", -ENOENT},
	};
	for (size_t i = 0; i < ELEMENTSOF(codes); i++) {
		char b[256];
		snprintf(b, sizeof(b), "<Error><Code>%s</Code><Message>m</Message></Error>",
			 codes[i].code);
		sealvm_err_clear(&err);
		assert_int_equal(s3c_error_from(codes[i].status, b, strlen(b), NULL, NULL, &err),
				 codes[i].e);
		assert_string_equal(err.reason, codes[i].code);
	}
	/* HEAD answers have no body: the status names it */
	sealvm_err_clear(&err);
	assert_int_equal(s3c_error_from(404, NULL, 0, "RID1", "NoSuchBucket", &err), -ENOENT);
	assert_string_equal(err.reason, "NoSuchBucket");
	assert_non_null(strstr(err.message, "RID1"));
	sealvm_err_clear(&err);
	assert_int_equal(s3c_error_from(403, "<html>no</html>", 15, NULL, NULL, &err), -EACCES);
	assert_string_equal(err.reason, "AccessDenied");
	sealvm_err_clear(&err);
	assert_int_equal(s3c_error_from(502, NULL, 0, NULL, NULL, &err), -EIO);
	assert_string_equal(err.reason, "InternalError");
}

static void test_xml_reader(void **state)
{
	static const char doc[] =
		"<ListBucketResult><Name>b</Name><Contents><Key>a&lt;&#x41;&#66;&#x20AC;</Key>"
		"<Size>5</Size></Contents><Contents><Key>two</Key><Size/></Contents>"
		"<IsTruncated>false</IsTruncated><KeyCount>2</KeyCount></ListBucketResult>";
	const char *p = doc, *end = doc + strlen(doc), *in, *ie;
	char *t;

	assert_int_equal(s3c_xml_find(&p, end, "Contents", &in, &ie), 1);
	t = s3c_xml_text(in, ie, "Key");
	assert_string_equal(t, "a<AB\xe2\x82\xac");
	free(t);
	assert_int_equal(s3c_xml_find(&p, end, "Contents", &in, &ie), 1);
	t = s3c_xml_text(in, ie, "Size");
	assert_string_equal(t, "");
	free(t);
	assert_int_equal(s3c_xml_find(&p, end, "Contents", &in, &ie), 0);
	/* <Key> does not match <KeyCount> */
	p = strstr(doc, "</Contents><Contents>") + 11;
	p = strstr(p, "</Contents>");
	assert_null(s3c_xml_text(p, end, "Key"));
	/* an unterminated element is not found; bad references stay as text */
	static const char unterminated[] = "<Key>abc";
	assert_null(s3c_xml_text(unterminated, unterminated + 8, "Key"));
	t = s3c_xml_decode("&#0;&#xD800;&bogus;&", 20);
	assert_string_equal(t, "&#0;&#xD800;&bogus;&");
	free(t);
}

static void test_state_file(void **state)
{
	char dir[] = "/tmp/s3c-test.XXXXXX", path[128], etags[3][80] = {"e1", "", "e3"};
	struct s3c_state s = {.endpoint = (char *)"http://h:1",
			      .bucket = (char *)"bkt",
			      .key = (char *)"k/x",
			      .size = 12u << 20,
			      .part_size = 5u << 20,
			      .mtime_ns = 1234567890123,
			      .n_parts = 3,
			      .etags = etags};
	struct s3c_state l = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct stat st;
	char buf[4096];
	int fd;
	ssize_t n;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/f.sealvm-upload", dir);
	snprintf(s.upload_id, sizeof(s.upload_id), "0123abcd");
	assert_int_equal(s3c_state_load(path, &l, &err), -ENOENT);
	assert_int_equal(s3c_state_save(path, &s, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(s3c_state_load(path, &l, &err), 0);
	assert_string_equal(l.bucket, "bkt");
	assert_string_equal(l.key, "k/x");
	assert_string_equal(l.endpoint, "http://h:1");
	assert_string_equal(l.upload_id, "0123abcd");
	assert_int_equal(l.size, 12u << 20);
	assert_int_equal(l.part_size, 5u << 20);
	assert_int_equal(l.mtime_ns, 1234567890123);
	assert_int_equal(l.n_parts, 3);
	assert_string_equal(l.etags[0], "e1");
	assert_string_equal(l.etags[1], "");
	assert_string_equal(l.etags[2], "e3");
	s3c_state_done(&l);
	/* no credential has a place in it */
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = 0;
	assert_null(strstr(buf, "secret"));
	assert_null(strstr(buf, "token"));

	static const char *const bad[] = {
		"not json",
		"{\"version\":2,\"endpoint\":\"e\",\"bucket\":\"b\",\"key\":\"k\",\"upload_id\":\"u\","
		"\"size\":1,\"part_size\":1,\"parts\":{}}",
		"{\"version\":1,\"endpoint\":\"e\",\"bucket\":\"b\",\"key\":\"k\",\"size\":1,"
		"\"part_size\":1,\"parts\":{}}",
		"{\"version\":1,\"endpoint\":\"e\",\"bucket\":\"b\",\"key\":\"k\",\"upload_id\":\"u\","
		"\"size\":1,\"part_size\":0,\"parts\":{}}",
		"{\"version\":1,\"endpoint\":\"e\",\"bucket\":\"b\",\"key\":\"k\",\"upload_id\":\"u\","
		"\"size\":100000,\"part_size\":1,\"parts\":{}}",
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		unlink(path);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
		assert_true(write(fd, bad[i], strlen(bad[i])) == (ssize_t)strlen(bad[i]));
		close(fd);
		sealvm_err_clear(&err);
		assert_int_equal(s3c_state_load(path, &l, &err), -EINVAL);
		assert_string_equal(err.reason, "RESUME_STATE_BAD");
	}
	/* part numbers out of range or bad ETags are ignored, not trusted */
	static const char odd[] =
		"{\"version\":1,\"endpoint\":\"e\",\"bucket\":\"b\",\"key\":\"k\",\"upload_id\":\"u\","
		"\"size\":10,\"part_size\":5,\"parts\":{\"0\":\"x\",\"3\":\"y\",\"2\":5,\"1\":\"ok\"}}";
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(write(fd, odd, strlen(odd)) == (ssize_t)strlen(odd));
	close(fd);
	assert_int_equal(s3c_state_load(path, &l, &err), 0);
	assert_int_equal(l.n_parts, 2);
	assert_string_equal(l.etags[0], "ok");
	assert_string_equal(l.etags[1], "");
	s3c_state_done(&l);
	/* a symlink is not followed */
	unlink(path);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	sealvm_err_clear(&err);
	assert_true(s3c_state_load(path, &l, &err) < 0);
	unlink(path);
	rmdir(dir);
}

/* Bodies the client frames decode with the server's decoder to the same bytes and CRC32C. */
static void test_chunked_framing_decodes(void **state)
{
	static const uint64_t sizes[] = {0, 1, S3C_CHUNK, S3C_CHUNK + 1, 2 * S3C_CHUNK + 777};
	char dir[] = "/tmp/s3c-frame.XXXXXX", path[128];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/data", dir);
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		unsigned char *buf = malloc(sizes[i] + 1), *enc = NULL;
		struct s3_chunked *d = NULL;
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sink sink = {0};
		size_t elen = 0;

		for (uint64_t k = 0; k < sizes[i]; k++)
			buf[k] = (unsigned char)(k * 7 + i);
		assert_true(write(fd, buf, sizes[i]) == (ssize_t)sizes[i]);
		assert_int_equal(s3c_frame_for_test(fd, sizes[i], &enc, &elen), 0);
		assert_int_equal(elen, s3c_chunked_length(sizes[i]));
		struct s3_chunked_config cfg = {
			.mode = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER,
			.trailer = "x-amz-checksum-crc32c",
			.decoded_length = (int64_t)sizes[i],
			.data = on_data,
			.userdata = &sink,
		};
		assert_int_equal(s3_chunked_new(&cfg, &d, &err), 0);
		/* fed in odd slices */
		for (size_t o = 0; o < elen;) {
			size_t n = MIN((size_t)4093, elen - o);
			assert_int_equal(s3_chunked_feed(d, enc + o, n, &err), 0);
			o += n;
		}
		assert_int_equal(s3_chunked_finish(d, &err), 0);
		assert_int_equal(sink.n, sizes[i]);
		assert_int_equal(sink.crc, s3_crc32c(0, buf, sizes[i]));
		s3_chunked_free(d);
		free(enc);
		free(buf);
		close(fd);
	}
	unlink(path);
	rmdir(dir);
}

/* ---- against a scripted local HTTP server: retries, bodies on the wire -------------------- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

struct fake {
	int lfd;
	uint16_t port;
	const char *const *answers; /* one per connection; the last repeats */
	size_t n_answers;
	unsigned requests;
	char last[1 << 16];  /* the last request's head */
	unsigned char *body; /* the last request's body */
	size_t body_len;
	pthread_t th;
};

static void *fake_run(void *arg)
{
	struct fake *f = arg;

	for (;;) {
		int fd = accept(f->lfd, NULL, NULL);
		char buf[1 << 16];
		size_t n = 0;
		char *eoh = NULL;

		if (fd < 0)
			return NULL;
		while (!eoh && n < sizeof(buf) - 1) {
			ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
			if (k <= 0)
				break;
			n += (size_t)k;
			buf[n] = 0;
			eoh = strstr(buf, "\r\n\r\n");
		}
		if (!eoh) {
			close(fd);
			continue;
		}
		size_t head = (size_t)(eoh + 4 - buf);
		memcpy(f->last, buf, head);
		f->last[head] = 0;
		const char *cl = strcasestr(f->last, "\r\ncontent-length:");
		size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
		if (strcasestr(f->last, "\r\nexpect: 100-continue"))
			(void)!write(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
		free(f->body);
		f->body = malloc(want + 1);
		f->body_len = n - head;
		memcpy(f->body, buf + head, f->body_len);
		while (f->body_len < want) {
			ssize_t k = read(fd, f->body + f->body_len, want - f->body_len);
			if (k <= 0)
				break;
			f->body_len += (size_t)k;
		}
		const char *a = f->answers[MIN((size_t)f->requests, f->n_answers - 1)];
		f->requests++;
		(void)!write(fd, a, strlen(a));
		close(fd);
	}
}

static void fake_start(struct fake *f, const char *const *answers, size_t n)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	memset(f, 0, sizeof(*f));
	f->answers = answers;
	f->n_answers = n;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(f->lfd >= 0);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f->lfd, 16), 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
	f->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void fake_stop(struct fake *f)
{
	shutdown(f->lfd, SHUT_RDWR);
	close(f->lfd);
	pthread_join(f->th, NULL);
	free(f->body);
}

static struct s3c *fake_client(const struct fake *f, bool hmac)
{
	char ep[64];
	struct sealvm_secret *sk = secret_of(SK);
	struct s3c_config cfg = {
		.endpoint = ep, .region = "us-south", .retries = 3, .backoff_ms = 1};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3c *c = NULL;

	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", f->port);
	if (hmac) {
		cfg.access_key_id = AK;
		cfg.secret_access_key = sk;
	} else {
		cfg.bearer_token = sk;
		cfg.instance_id = "inst";
	}
	assert_int_equal(s3c_global_init(), 0);
	assert_int_equal(s3c_new(&cfg, &c, &err), 0);
	sealvm_secret_free(sk);
	return c;
}

#define BUSY                                                                                       \
	"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 63\r\nConnection: close\r\n\r\n"      \
	"<Error><Code>SlowDown</Code><Message>busy</Message></Error>    "
#define BUCKETS                                                                                    \
	"HTTP/1.1 200 OK\r\nContent-Length: 133\r\nConnection: close\r\n\r\n"                      \
	"<ListAllMyBucketsResult><Buckets><Bucket><Name>b1</Name><CreationDate>x</CreationDate>"   \
	"</Bucket></Buckets></ListAllMyBucketsResult>   "

/* An answer of @len bytes of the 100-byte object from @first, cut after @send of them. */
static char *answer(int status, uint64_t first, size_t len, size_t send, bool range)
{
	char cr[80] = "";
	if (range)
		snprintf(cr, sizeof(cr), "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/100\r\n",
			 first, first + len - 1);
	char *a = malloc(512 + send + 1);
	int n = snprintf(a, 512,
			 "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nETag: \"abc\"\r\n%s"
			 "Connection: close\r\n\r\n",
			 status, status == 206 ? "Partial Content" : "OK", len, cr);
	for (size_t i = 0; i < send; i++)
		a[n + i] = (char)('a' + (first + i) % 26);
	a[n + send] = 0;
	return a;
}

/* GET into a temp file; its bytes in @got (up to 100), their count as the result. */
static int get_into(struct s3c *c, const struct s3c_range *range, char got[101],
		    struct s3c_object *o, unsigned char sha[32], struct sealvm_err *err)
{
	char path[] = "/tmp/s3c-resume-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	struct s3c_get_opts go = {.range = range, .sha256 = true};
	int r = s3c_get_fd(c, "bkt", "obj", fd, &go, o, sha, err);
	off_t end = lseek(fd, 0, SEEK_END);
	assert_true(end >= 0 && end <= 100);
	assert_int_equal(pread(fd, got, (size_t)end, 0), end);
	got[end] = 0;
	close(fd);
	return r < 0 ? r : (int)end;
}

static void test_get_resumes(void **state)
{
	char want[101], got[101];
	unsigned char sha[32], wsha[32];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3c_object o;
	struct fake f;
	for (int i = 0; i < 100; i++)
		want[i] = (char)('a' + i % 26);
	want[100] = 0;
	SHA256((unsigned char *)want, 100, wsha);

	/* cut after 40 bytes: the retry asks for bytes 40- of the same ETag, and keeps the 40 */
	char *cut = answer(200, 0, 100, 40, false), *rest = answer(206, 40, 60, 60, true);
	const char *const a1[] = {cut, rest};
	fake_start(&f, a1, 2);
	struct s3c *c = fake_client(&f, true);
	assert_int_equal(get_into(c, NULL, got, &o, sha, &err), 100);
	assert_string_equal(got, want);
	assert_memory_equal(sha, wsha, 32);
	assert_int_equal(f.requests, 2);
	assert_non_null(strcasestr(f.last, "\r\nrange: bytes=40-\r\n"));
	assert_non_null(strcasestr(f.last, "\r\nif-match: \"abc\"\r\n"));
	assert_int_equal(o.size, 100);
	assert_string_equal(o.content_range, "");
	s3c_object_done(&o);
	s3c_free(c);
	fake_stop(&f);
	free(rest);

	/* a range cut short resumes inside it, and the answer names the whole range */
	char *rcut = answer(206, 10, 80, 30, true);
	rest = answer(206, 40, 50, 50, true);
	const char *const a2[] = {rcut, rest};
	struct s3c_range rg = {10, 89};
	fake_start(&f, a2, 2);
	c = fake_client(&f, false);
	assert_int_equal(get_into(c, &rg, got, &o, sha, &err), 80);
	assert_memory_equal(got, want + 10, 80);
	assert_non_null(strcasestr(f.last, "\r\nrange: bytes=40-89\r\n"));
	assert_string_equal(o.content_range, "bytes 10-89/100");
	assert_int_equal(o.size, 80);
	s3c_object_done(&o);
	s3c_free(c);
	fake_stop(&f);
	free(rcut);
	free(rest);

	/* the object changed meanwhile (412): an error that says so, and nothing kept */
	const char *const a3[] = {
		cut,
		"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 66\r\nConnection: close\r\n\r\n"
		"<Error><Code>PreconditionFailed</Code><Message>x</Message></Error>"};
	fake_start(&f, a3, 2);
	c = fake_client(&f, true);
	assert_int_equal(get_into(c, NULL, got, &o, sha, &err), -ESTALE);
	assert_string_equal(err.reason, "PreconditionFailed");
	assert_non_null(strstr(err.message, "changed"));
	assert_string_equal(got, "");
	s3c_free(c);
	fake_stop(&f);

	/* a server that ignores the Range sends it all again: the output starts over */
	char *all = answer(200, 0, 100, 100, false);
	const char *const a4[] = {cut, all};
	fake_start(&f, a4, 2);
	c = fake_client(&f, true);
	sealvm_err_clear(&err);
	assert_int_equal(get_into(c, NULL, got, &o, sha, &err), 100);
	assert_string_equal(got, want);
	assert_memory_equal(sha, wsha, 32);
	s3c_object_done(&o);
	s3c_free(c);
	fake_stop(&f);
	free(all);
	free(cut);
}

static void test_retries(void **state)
{
	static const char *const flaky[] = {BUSY, BUSY, BUCKETS};
	static const char *const down[] = {BUSY};
	static const char *const denied[] = {
		"HTTP/1.1 403 Forbidden\r\nContent-Length: 86\r\nConnection: close\r\n\r\n"
		"<Error><Code>AccessDenied</Code><Message>no</Message><RequestId>R9</RequestId></Error>"
		"      "};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3c_bucket *v = NULL;
	struct fake f;
	size_t n = 0;

	fake_start(&f, flaky, ELEMENTSOF(flaky));
	struct s3c *c = fake_client(&f, true);
	assert_int_equal(s3c_bucket_list(c, &v, &n, &err), 0);
	assert_int_equal(f.requests, 3);
	assert_int_equal(n, 1);
	assert_string_equal(v[0].name, "b1");
	free(v);
	s3c_free(c);
	fake_stop(&f);

	/* every attempt busy: 1 + retries requests, then the server's error */
	fake_start(&f, down, 1);
	c = fake_client(&f, true);
	assert_int_equal(s3c_bucket_list(c, &v, &n, &err), -EIO);
	assert_string_equal(err.reason, "SlowDown");
	assert_int_equal(f.requests, 4);
	s3c_free(c);
	fake_stop(&f);

	/* a 4xx is not retried */
	fake_start(&f, denied, 1);
	c = fake_client(&f, false);
	sealvm_err_clear(&err);
	assert_int_equal(s3c_bucket_list(c, &v, &n, &err), -EACCES);
	assert_string_equal(err.reason, "AccessDenied");
	assert_non_null(strstr(err.message, "R9"));
	assert_int_equal(f.requests, 1);
	assert_non_null(strstr(f.last, "Authorization: Bearer " SK));
	assert_non_null(strstr(f.last, "ibm-service-instance-id: inst"));
	s3c_free(c);
	uint16_t closed = f.port;
	fake_stop(&f);

	/* nobody listening: connection errors are retried, then CONNECT_FAILED */
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", closed);
	struct s3c_config cfg = {
		.endpoint = ep, .region = "us-south", .retries = 2, .backoff_ms = 1};
	assert_int_equal(s3c_new(&cfg, &c, &err), 0);
	sealvm_err_clear(&err);
	assert_int_equal(s3c_bucket_list(c, &v, &n, &err), -EIO);
	assert_string_equal(err.reason, "CONNECT_FAILED");
	s3c_free(c);
}

/* A PUT from a file goes out as aws-chunked that the server's decoder accepts, signed. */
static void test_put_on_the_wire(void **state)
{
	static const char *const ok[] = {"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 0\r\n"
					 "Connection: close\r\n\r\n"};
	char dir[] = "/tmp/s3c-wire.XXXXXX", path[128], etag[80] = "";
	struct sealvm_err err = SEALVM_ERR_INIT;
	const size_t size = 2 * S3C_CHUNK + 99;
	unsigned char *data = malloc(size);
	struct s3_chunked *d = NULL;
	struct sink sink = {0};
	struct fake f;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/data", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	for (size_t i = 0; i < size; i++)
		data[i] = (unsigned char)(i * 31);
	assert_true(write(fd, data, size) == (ssize_t)size);
	fake_start(&f, ok, 1);
	struct s3c *c = fake_client(&f, true);
	struct s3c_meta m[] = {{(char *)"Color", (char *)"blue"}};
	struct s3c_put_opts o = {.content_type = "text/x", .meta = m, .n_meta = 1};
	assert_int_equal(s3c_put_fd(c, "bkt", "k/1", fd, 0, size, &o, etag, &err), 0);
	assert_string_equal(etag, "abc");
	assert_non_null(strstr(f.last, "PUT /bkt/k/1 HTTP/1.1"));
	assert_non_null(strstr(f.last, "x-amz-meta-color: blue"));
	assert_non_null(strstr(f.last, "content-type: text/x"));
	assert_non_null(strstr(f.last, "x-amz-trailer: x-amz-checksum-crc32c"));
	assert_null(strstr(f.last, SK));
	assert_int_equal(f.body_len, s3c_chunked_length(size));
	struct s3_chunked_config cfg = {.mode = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER,
					.trailer = "x-amz-checksum-crc32c",
					.decoded_length = (int64_t)size,
					.data = on_data,
					.userdata = &sink};
	assert_int_equal(s3_chunked_new(&cfg, &d, &err), 0);
	assert_int_equal(s3_chunked_feed(d, f.body, f.body_len, &err), 0);
	assert_int_equal(s3_chunked_finish(d, &err), 0);
	assert_int_equal(sink.n, size);
	assert_int_equal(sink.crc, s3_crc32c(0, data, size));
	s3_chunked_free(d);
	/* a file shorter than the size given fails locally, not with a short body */
	sealvm_err_clear(&err);
	assert_true(s3c_put_fd(c, "bkt", "k/2", fd, 0, size + 10, &o, etag, &err) < 0);
	s3c_free(c);
	fake_stop(&f);
	close(fd);
	unlink(path);
	rmdir(dir);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_refusals),
		cmocka_unit_test(test_url_encoding),
		cmocka_unit_test(test_sign_aws_example),
		cmocka_unit_test(test_put_trailer_request_verifies),
		cmocka_unit_test(test_query_request_verifies),
		cmocka_unit_test(test_bearer_request),
		cmocka_unit_test(test_presign_verifies),
		cmocka_unit_test(test_chunked_length),
		cmocka_unit_test(test_chunked_framing_decodes),
		cmocka_unit_test(test_uri),
		cmocka_unit_test(test_endpoints),
		cmocka_unit_test(test_error_bodies),
		cmocka_unit_test(test_xml_reader),
		cmocka_unit_test(test_state_file),
		cmocka_unit_test(test_retries),
		cmocka_unit_test(test_get_resumes),
		cmocka_unit_test(test_put_on_the_wire),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
