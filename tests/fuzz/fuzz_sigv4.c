// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_sigv4.c — the SigV4 canonicaliser, verifier, signer and presigner.
 *
 * The input is text, one field a line:
 *
 *   MODE            'V' verify the request below, 'S' sign it then verify
 *   METHOD
 *   RAW-PATH
 *   RAW-QUERY       (may be empty)
 *   Name: value     any number of header lines
 *
 * 'V': sigv4_verify (region us-east-1, AWS's example key, at AWS's example
 * time) must either accept, or refuse with a reason and a message that does
 * not contain the secret; a signature that was computed and did not match
 * comes with the canonical request and string to sign. The seeds are AWS's documented requests, so
 * the fuzzer starts past the signature check. 'S': whatever sigv4_sign and sigv4_presign accept,
 * the verifier must accept when sent as they say: signer and verifier share one canonicalisation,
 * and this is where a divergence would show.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/sigv4.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define AK "AKIAIOSFODNN7EXAMPLE"
#define SK "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define NOW 1369353600 /* 20130524T000000Z */
#define MAX_HEADERS 40

static int lookup(void *userdata, const char *akid, struct sealvm_secret **ret,
		  struct sealvm_err *err)
{
	(void)userdata;
	(void)err;
	if (strcmp(akid, AK) != 0)
		return -ENOENT;
	return sealvm_secret_from(SK, strlen(SK), ret);
}

static void check_refusal(int r, const struct sealvm_err *err, const struct sigv4_auth *auth)
{
	if (r == -ENOMEM)
		return;
	if (r >= 0 || !err->reason[0] || !err->message[0])
		abort();
	/* The secret never reaches a message (the input itself never holds it: see below). */
	if (strstr(err->message, SK))
		abort();
	/* A compared signature reports what we computed (a missing signed header does not). */
	if (strstr(err->message, "we calculated does not match") &&
	    (!auth->canonical_request || !auth->string_to_sign))
		abort();
}

static void do_verify(struct sigv4_request *req)
{
	struct sigv4_verifier v = {.region = "us-east-1", .lookup = lookup};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	char *canonical = NULL;

	int r = sigv4_verify(&v, req, NOW, &auth, &err);
	if (getenv("FUZZ_SIGV4_VERBOSE")) /* for corpus upkeep: what each seed reaches */
		fprintf(stderr, "verify: %d %s %s\n", r, err.reason, err.message);
	if (r == 0) {
		if (strcmp(auth.access_key_id, AK) != 0 || strlen(auth.signature) != 64)
			abort();
		if (sigv4_payload_is_streaming(auth.payload) && auth.decoded_length < 0)
			abort();
	} else {
		check_refusal(r, &err, &auth);
	}
	sigv4_auth_done(&auth);
	sealvm_err_clear(&err);
	if (sigv4_canonical_request(req, false, "host", SIGV4_UNSIGNED_PAYLOAD, &canonical, &err) ==
	    0)
		free(canonical);
	(void)sigv4_detect(req);
}

/* Verifies what the signer produced; any refusal is a bug. */
static void must_verify(const char *method, const char *url, const char *host,
			const struct sigv4_header *extra, size_t n_extra, const char *authorization,
			const char *amz_date)
{
	struct sigv4_verifier v = {.region = "us-east-1", .lookup = lookup};
	struct sigv4_header h[MAX_HEADERS + 4];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	size_t n = 0;

	const char *p = strstr(url, "://");
	if (!p)
		abort();
	const char *authority = p + 3;
	p = strchr(authority, '/');
	if (!p)
		abort();
	char *path = strdup(p);
	/* Presigned URLs: the Host a client sends is the URL's authority. */
	char *url_host = strndup(authority, (size_t)(p - authority));
	if (!host)
		host = url_host;
	char *q = strchr(path, '?');
	if (q)
		*q++ = 0;
	h[n++] = (struct sigv4_header){"Host", host};
	for (size_t i = 0; i < n_extra; i++)
		h[n++] = extra[i];
	if (authorization) {
		h[n++] = (struct sigv4_header){"Authorization", authorization};
		h[n++] = (struct sigv4_header){"X-Amz-Date", amz_date};
		h[n++] = (struct sigv4_header){"X-Amz-Content-Sha256", SIGV4_UNSIGNED_PAYLOAD};
	}
	struct sigv4_request req = {method, path, q, h, n};
	int r = sigv4_verify(&v, &req, NOW, &auth, &err);
	if (r != 0 && r != -ENOMEM) {
		fprintf(stderr, "signed request refused: %s: %s\n", err.reason, err.message);
		abort();
	}
	sigv4_auth_done(&auth);
	free(path);
	free(url_host);
}

static void do_sign(const struct sigv4_request *req)
{
	struct sealvm_secret *sk = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_signed s;
	char *url = NULL, *purl = NULL;

	if (sealvm_secret_from(SK, strlen(SK), &sk) < 0)
		return;
	struct sigv4_credentials cred = {AK, sk, "us-east-1", NULL};
	if (asprintf(&url, "http://examplebucket.s3.amazonaws.com%s%s%s", req->raw_path,
		     req->raw_query && *req->raw_query ? "?" : "",
		     req->raw_query ? req->raw_query : "") < 0)
		goto out;
	if (sigv4_sign(req->method, url, req->headers, req->n_headers, SIGV4_UNSIGNED_PAYLOAD,
		       &cred, NOW, &s, &err) == 0) {
		must_verify(req->method, s.url, s.host, req->headers, req->n_headers,
			    s.authorization, s.amz_date);
		sigv4_signed_done(&s);
	}
	sealvm_err_clear(&err);
	if (sigv4_presign(req->method, url, req->headers, req->n_headers, &cred, NOW, 3600, &purl,
			  &err) == 0) {
		must_verify(req->method, purl, NULL, req->headers, req->n_headers, NULL, NULL);
		free(purl);
	}
out:
	free(url);
	sealvm_secret_free(sk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sigv4_header h[MAX_HEADERS];
	char *lines[4 + MAX_HEADERS];
	size_t nl = 0, nh = 0;
	char *text;

	if (size > 64 * 1024 || memchr(data, 0, size) || memmem(data, size, SK, strlen(SK)))
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	for (char *p = text; p && nl < 4 + MAX_HEADERS;) {
		lines[nl++] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = 0;
	}
	if (nl < 4) {
		free(text);
		return 0;
	}
	for (size_t i = 4; i < nl; i++) {
		char *colon = strchr(lines[i], ':');
		if (!colon)
			continue;
		*colon = 0;
		char *v = colon + 1;
		while (*v == ' ')
			v++;
		h[nh++] = (struct sigv4_header){lines[i], v};
	}
	struct sigv4_request req = {lines[1], lines[2], lines[3], h, nh};
	if (lines[0][0] == 'S')
		do_sign(&req);
	else
		do_verify(&req);
	free(text);
	return 0;
}
