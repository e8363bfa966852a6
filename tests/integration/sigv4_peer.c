// SPDX-License-Identifier: Apache-2.0
/*
 * sigv4_peer.c — checks requests signed by peers (botocore, boto3, curl)
 * against our SigV4 code, for test_s3_sigv4_peers.sh.
 *
 * Usage: sigv4_peer CASES.jsonl ACCESS_KEY_ID SECRET_FILE
 *
 * Each line is a request captured off the wire by s3_sigv4_peer.py: name,
 * method, raw request target, headers as received, base64 body, region. For
 * each, our verifier must accept it (at the time the request says it was
 * signed: no wall clock), its body must match a declared SHA-256, and our
 * signer (or presigner) given the same inputs must produce the same
 * Authorization header (or X-Amz-Signature) byte for byte. Then a dozen
 * tampered forms of it must each be refused with the S3 error a server would
 * answer. Prints one TAP line per request; exits 1 if any check failed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "sealvm/b64.h"
#include "sealvm/s3.h"
#include "sealvm/sigv4.h"

#define MAX_HEADERS 64

static const char *g_ak, *g_sk;
static int g_failed;

struct keyring {
	const char *akid;
	const char *secret;
};

static int lookup(void *userdata, const char *akid, struct sealvm_secret **ret,
		  struct sealvm_err *err)
{
	const struct keyring *k = userdata;
	if (strcmp(akid, k->akid) != 0)
		return -ENOENT;
	return sealvm_secret_from(k->secret, strlen(k->secret), ret);
}

/* A captured request, mutable for the tampering checks. */
struct rq {
	const char *name;
	char method[16];
	char path[4096];
	char query[8192];
	struct sigv4_header h[MAX_HEADERS];
	char *hval[MAX_HEADERS]; /* owned copies, so values can be changed */
	size_t n;
	unsigned char *body;
	size_t body_len;
	char region[64];
};

static void rq_done(struct rq *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free((char *)r->h[i].name);
		free(r->hval[i]);
	}
	free(r->body);
	memset(r, 0, sizeof(*r));
}

static void rq_copy(struct rq *dst, const struct rq *src)
{
	*dst = *src;
	for (size_t i = 0; i < src->n; i++) {
		dst->h[i].name = strdup(src->h[i].name);
		dst->hval[i] = strdup(src->hval[i]);
		dst->h[i].value = dst->hval[i];
	}
	dst->body = malloc(src->body_len + 1);
	memcpy(dst->body, src->body, src->body_len);
}

static void rq_add(struct rq *r, const char *name, const char *value)
{
	if (r->n == MAX_HEADERS)
		return;
	r->h[r->n].name = strdup(name);
	r->hval[r->n] = strdup(value);
	r->h[r->n].value = r->hval[r->n];
	r->n++;
}

static const char *rq_get(const struct rq *r, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcasecmp(r->h[i].name, name) == 0)
			return r->hval[i];
	return NULL;
}

static void rq_set(struct rq *r, const char *name, const char *value)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcasecmp(r->h[i].name, name) == 0) {
			free(r->hval[i]);
			r->hval[i] = strdup(value);
			r->h[i].value = r->hval[i];
			return;
		}
	rq_add(r, name, value);
}

static struct sigv4_request as_request(const struct rq *r)
{
	return (struct sigv4_request){r->method, r->path, r->query, r->h, r->n};
}

static int verify(const struct rq *r, const char *region, const char *ak, const char *sk,
		  time_t now, struct sigv4_auth *auth, struct sealvm_err *err)
{
	struct keyring k = {ak, sk};
	struct sigv4_verifier v = {.region = region, .lookup = lookup, .userdata = &k};
	struct sigv4_request req = as_request(r);
	sealvm_err_clear(err);
	return sigv4_verify(&v, &req, now, auth, err);
}

/* Collects a failure message for the current request. */
static char g_why[4096];

static void why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void why(const char *fmt, ...)
{
	size_t n = strlen(g_why);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_why + n, sizeof(g_why) - n, fmt, ap);
	va_end(ap);
}

/* A tampered request must be refused with @reason. */
static void refuse(const char *what, const struct rq *r, const char *region, const char *ak,
		   const char *sk, time_t now, const char *reason)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	int rc = verify(r, region, ak, sk, now, &auth, &err);
	if (rc == 0 || strcmp(err.reason, reason) != 0)
		why("\n#   %s: got %d %s (%s), want %s", what, rc, err.reason, err.message, reason);
	sigv4_auth_done(&auth);
}

static int query_value(const char *query, const char *name, char *out, size_t cap)
{
	struct s3_query q;
	const char *v;
	if (s3_query_parse(query, &q, NULL) < 0)
		return -EINVAL;
	int r = s3_query_get(&q, name, &v, NULL);
	if (r == 0)
		snprintf(out, cap, "%s", v);
	s3_query_done(&q);
	return r;
}

/* The raw query without the presigning parameters, as the presigner was given it. */
static void strip_presign(const char *query, char *out, size_t cap)
{
	static const char *const names[] = {"X-Amz-Algorithm",	   "X-Amz-Credential",
					    "X-Amz-Date",	   "X-Amz-Expires",
					    "X-Amz-SignedHeaders", "X-Amz-Signature"};
	size_t o = 0;
	out[0] = 0;
	for (const char *seg = query; *seg;) {
		size_t n = strcspn(seg, "&");
		bool drop = false;
		for (size_t i = 0; i < 6; i++)
			drop |= strncmp(seg, names[i], strlen(names[i])) == 0 &&
				seg[strlen(names[i])] == '=';
		if (!drop && n > 0 && o + n + 2 < cap) {
			if (o)
				out[o++] = '&';
			memcpy(out + o, seg, n);
			o += n;
			out[o] = 0;
		}
		seg += n;
		if (*seg == '&')
			seg++;
	}
}

static void resign_header(const struct rq *r, time_t t)
{
	struct sealvm_secret *sk = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_header hs[MAX_HEADERS];
	struct sigv4_signed s;
	char url[16384], names[2048];
	size_t n = 0;

	const char *auth = rq_get(r, "Authorization");
	const char *sh = strstr(auth, "SignedHeaders=");
	snprintf(names, sizeof(names), "%.*s", (int)strcspn(sh + 14, ", "), sh + 14);
	for (char *name = strtok(names, ";"); name; name = strtok(NULL, ";")) {
		if (!strcmp(name, "host") || !strcmp(name, "x-amz-date") ||
		    !strcmp(name, "x-amz-content-sha256"))
			continue;
		hs[n++] = (struct sigv4_header){name, rq_get(r, name)};
	}
	snprintf(url, sizeof(url), "http://%s%s%s%s", rq_get(r, "Host"), r->path,
		 r->query[0] ? "?" : "", r->query);
	sealvm_secret_from(g_sk, strlen(g_sk), &sk);
	struct sigv4_credentials cred = {g_ak, sk, r->region, NULL};
	if (sigv4_sign(r->method, url, hs, n, rq_get(r, "x-amz-content-sha256"), &cred, t, &s,
		       &err) != 0) {
		why("\n#   our signer refused it: %s %s", err.reason, err.message);
	} else {
		if (strcmp(s.authorization, auth) != 0)
			why("\n#   our Authorization differs:\n#     peer: %s\n#     ours: %s",
			    auth, s.authorization);
		sigv4_signed_done(&s);
	}
	sealvm_secret_free(sk);
}

static void resign_presigned(const struct rq *r, time_t t, unsigned expires)
{
	struct sealvm_secret *sk = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	char base[8192], url[16384], want[128], got[128];
	char *purl = NULL;

	strip_presign(r->query, base, sizeof(base));
	snprintf(url, sizeof(url), "http://%s%s%s%s", rq_get(r, "Host"), r->path,
		 base[0] ? "?" : "", base);
	query_value(r->query, "X-Amz-Signature", want, sizeof(want));
	sealvm_secret_from(g_sk, strlen(g_sk), &sk);
	struct sigv4_credentials cred = {g_ak, sk, r->region, NULL};
	if (sigv4_presign(r->method, url, NULL, 0, &cred, t, expires, &purl, &err) != 0) {
		why("\n#   our presigner refused it: %s %s", err.reason, err.message);
	} else {
		const char *q = strchr(strchr(purl, '/') + 2, '?');
		if (!q || query_value(q + 1, "X-Amz-Signature", got, sizeof(got)) != 0 ||
		    strcmp(got, want) != 0)
			why("\n#   our presigned URL differs:\n#     peer: %s?%s\n#     ours: %s",
			    r->path, r->query, purl);
		free(purl);
	}
	sealvm_secret_free(sk);
}

static void check(const struct rq *orig, int idx)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sigv4_auth auth;
	struct rq r;
	time_t t = 0, now;
	char date[64] = "", exp[32] = "";
	bool presigned = rq_get(orig, "Authorization") == NULL;
	unsigned expires = 0;

	g_why[0] = 0;
	if (presigned) {
		query_value(orig->query, "X-Amz-Date", date, sizeof(date));
		query_value(orig->query, "X-Amz-Expires", exp, sizeof(exp));
		expires = (unsigned)strtoul(exp, NULL, 10);
	} else {
		snprintf(date, sizeof(date), "%s", rq_get(orig, "x-amz-date") ?: "");
	}
	if (sigv4_parse_amz_date(date, &t) < 0) {
		why("\n#   no request time in the captured request");
		goto report;
	}
	now = t + 3;

	/* Accepted as sent. */
	if (verify(orig, orig->region, g_ak, g_sk, now, &auth, &err) != 0) {
		why("\n#   refused: %s: %s", err.reason, err.message);
		if (auth.canonical_request)
			why("\n#   our canonical request:\n%s", auth.canonical_request);
		sigv4_auth_done(&auth);
		goto report;
	}
	if (auth.payload == SIGV4_PAYLOAD_SHA256) {
		unsigned char md[32];
		SHA256(orig->body, orig->body_len, md);
		if (sigv4_check_payload(&auth, md, &err) != 0)
			why("\n#   the body does not match x-amz-content-sha256");
		md[0] ^= 1;
		if (sigv4_check_payload(&auth, md, &err) != -EBADMSG)
			why("\n#   another body matched x-amz-content-sha256");
	}
	sigv4_auth_done(&auth);

	/* Signed the same by us. */
	if (presigned)
		resign_presigned(orig, t, expires);
	else
		resign_header(orig, t);

	/* Tampered forms. */
	const char *malformed =
		presigned ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed";
	refuse("another secret", orig, orig->region, g_ak, "not-the-secret", now,
	       "SignatureDoesNotMatch");
	refuse("an unknown key", orig, orig->region, "AKIDUNKNOWN", g_sk, now,
	       "InvalidAccessKeyId");
	refuse("another region", orig, "eu-de", g_ak, g_sk, now, malformed);
	if (presigned) {
		refuse("past its expiry", orig, orig->region, g_ak, g_sk, t + expires + 1,
		       "AccessDenied");
		refuse("before its time", orig, orig->region, g_ak, g_sk, t - 901,
		       "RequestTimeTooSkewed");
	} else {
		refuse("16 minutes later", orig, orig->region, g_ak, g_sk, t + 901,
		       "RequestTimeTooSkewed");
		refuse("16 minutes earlier", orig, orig->region, g_ak, g_sk, t - 901,
		       "RequestTimeTooSkewed");
	}

	rq_copy(&r, orig);
	strcat(r.path, "x");
	refuse("another path", &r, r.region, g_ak, g_sk, now, "SignatureDoesNotMatch");
	rq_done(&r);

	rq_copy(&r, orig);
	strcat(r.query, r.query[0] ? "&injected=1" : "injected=1");
	refuse("another query", &r, r.region, g_ak, g_sk, now, "SignatureDoesNotMatch");
	rq_done(&r);

	rq_copy(&r, orig);
	snprintf(r.method, sizeof(r.method), "%s",
		 strcmp(orig->method, "DELETE") ? "DELETE" : "GET");
	refuse("another method", &r, r.region, g_ak, g_sk, now, "SignatureDoesNotMatch");
	rq_done(&r);

	rq_copy(&r, orig);
	rq_set(&r, "Host", "evil.example");
	refuse("another host", &r, r.region, g_ak, g_sk, now, "SignatureDoesNotMatch");
	rq_done(&r);

	rq_copy(&r, orig);
	rq_add(&r, "x-amz-meta-injected", "1");
	refuse("an unsigned x-amz header", &r, r.region, g_ak, g_sk, now, "AccessDenied");
	rq_done(&r);

	/* One signature digit changed. */
	rq_copy(&r, orig);
	if (presigned) {
		char *p = strstr(r.query, "X-Amz-Signature=") + 16;
		*p = *p == '0' ? '1' : '0';
	} else {
		for (size_t i = 0; i < r.n; i++)
			if (!strcasecmp(r.h[i].name, "Authorization")) {
				char *p = strstr(r.hval[i], "Signature=") + 10;
				*p = *p == '0' ? '1' : '0';
			}
	}
	refuse("a changed signature", &r, r.region, g_ak, g_sk, now, "SignatureDoesNotMatch");
	rq_done(&r);

	/* A signed header other than host, the date and the payload hash, changed. */
	if (!presigned) {
		char names[2048], *pick = NULL;
		const char *sh = strstr(rq_get(orig, "Authorization"), "SignedHeaders=");
		snprintf(names, sizeof(names), "%.*s", (int)strcspn(sh + 14, ", "), sh + 14);
		for (char *name = strtok(names, ";"); name && !pick; name = strtok(NULL, ";"))
			if (strcmp(name, "host") && strcmp(name, "x-amz-date") &&
			    strcmp(name, "x-amz-content-sha256"))
				pick = name;
		if (pick) {
			char v[4096];
			rq_copy(&r, orig);
			snprintf(v, sizeof(v), "%s-changed", rq_get(&r, pick));
			rq_set(&r, pick, v);
			refuse("a signed header changed", &r, r.region, g_ak, g_sk, now,
			       "SignatureDoesNotMatch");
			rq_done(&r);
		}
	}

report:
	if (g_why[0]) {
		printf("not ok %d - %s %s%s\n", idx, orig->method, orig->name, g_why);
		g_failed = 1;
	} else {
		printf("ok %d - %s %s: verified, %s identically, tampered forms refused\n", idx,
		       orig->method, orig->name, presigned ? "presigned" : "re-signed");
	}
}

static int load(json_t *j, struct rq *r)
{
	json_t *h;
	size_t i;
	const char *target = json_string_value(json_object_get(j, "target"));
	const char *b64 = json_string_value(json_object_get(j, "body_b64"));
	if (!target || !b64)
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	r->name = json_string_value(json_object_get(j, "name"));
	snprintf(r->method, sizeof(r->method), "%s",
		 json_string_value(json_object_get(j, "method")));
	snprintf(r->region, sizeof(r->region), "%s",
		 json_string_value(json_object_get(j, "region")));
	const char *q = strchr(target, '?');
	snprintf(r->path, sizeof(r->path), "%.*s", (int)(q ? q - target : (long)strlen(target)),
		 target);
	snprintf(r->query, sizeof(r->query), "%s", q ? q + 1 : "");
	json_array_foreach(json_object_get(j, "headers"), i, h)
		rq_add(r, json_string_value(json_array_get(h, 0)),
		       json_string_value(json_array_get(h, 1)));
	r->body = malloc(sealvm_b64_decoded_max(strlen(b64)) + 1);
	long n = sealvm_b64_decode(b64, strlen(b64), r->body, false);
	if (n < 0)
		return -EINVAL;
	r->body_len = (size_t)n;
	return 0;
}

int main(int argc, char **argv)
{
	static char line[256 * 1024];
	struct sealvm_secret *secret = NULL;
	int idx = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: sigv4_peer CASES.jsonl ACCESS_KEY_ID SECRET_FILE\n");
		return 2;
	}
	g_ak = argv[2];
	if (sealvm_secret_read_file(argv[3], 256, &secret, NULL) < 0) {
		fprintf(stderr, "cannot read the secret file\n");
		return 2;
	}
	g_sk = (const char *)secret->data; /* NUL-terminated after len */
	FILE *f = fopen(argv[1], "r");
	if (!f) {
		perror(argv[1]);
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		json_t *j = json_loads(line, 0, NULL);
		struct rq r;
		if (!j || load(j, &r) < 0) {
			printf("not ok %d - unreadable case\n", ++idx);
			g_failed = 1;
			json_decref(j);
			continue;
		}
		check(&r, ++idx);
		rq_done(&r);
		json_decref(j);
	}
	fclose(f);
	sealvm_secret_free(secret);
	printf("1..%d\n", idx);
	return g_failed || idx == 0;
}
