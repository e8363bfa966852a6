// SPDX-License-Identifier: Apache-2.0
/*
 * sigv4.c — AWS Signature Version 4 for S3: canonical request, string to
 * sign, signing key, the strict Authorization-header and presigned-query
 * parsers, the verifier, the client's signer and presigner, and the
 * signing-key cache (see sigv4.h).
 *
 * The signer and the verifier build the canonical request with the same
 * function from the raw request target, so that what our client signs is
 * exactly what our server checks. The secret access key and every key
 * derived from it stay in struct sealvm_secret or in stack buffers wiped
 * before return; no error message, log line or returned string contains a
 * key or a signature, and signatures are compared with CRYPTO_memcmp.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "sealvm/s3.h"
#include "sealvm/sigv4.h"

#include "s3_internal.h"

#define R_SIG "SignatureDoesNotMatch"
#define R_HDR "AuthorizationHeaderMalformed"
#define R_QRY "AuthorizationQueryParametersError"
#define R_URI "InvalidURI"
#define R_ARG "InvalidArgument"
#define R_SKEW "RequestTimeTooSkewed"
#define R_DENIED "AccessDenied"

/* ---- small pieces ------------------------------------------------------------------- */

static int sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];
	if (!SHA256(data, len, md))
		return -EIO;
	s3_hex(md, 32, out);
	return 0;
}

static int hmac256(const void *key, size_t klen, const void *msg, size_t mlen,
		   unsigned char out[32])
{
	unsigned int outlen = 32;
	if (!HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &outlen) || outlen != 32)
		return -EIO;
	return 0;
}

static bool is_tchar_lower(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token_char(unsigned char c)
{
	return c && (is_tchar_lower(c) || (c >= 'A' && c <= 'Z'));
}

/* [a-z0-9-]{1,max} */
static bool is_scope_word(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static bool is_access_key_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

static bool is_method(const char *m)
{
	if (!m || !*m || strlen(m) > 32)
		return false;
	for (; *m; m++)
		if (*m < 'A' || *m > 'Z')
			return false;
	return true;
}

/* 64 lower-case hex digits, then the end of the string. */
static bool is_sig_hex(const char *s)
{
	return strlen(s) == SIGV4_SIG_HEX_LEN && s3_is_lower_hex(s, SIGV4_SIG_HEX_LEN);
}

/* ---- dates -------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool leap(unsigned y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int digits(const char *s, size_t n, unsigned *ret)
{
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*ret = v;
	return 0;
}

/* Checks "YYYYMMDD" (exactly 8 characters at @s) and returns its day number. */
static int parse_ymd(const char *s, int64_t *ret_days)
{
	static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned y, m, d;
	if (digits(s, 4, &y) < 0 || digits(s + 4, 2, &m) < 0 || digits(s + 6, 2, &d) < 0)
		return -EINVAL;
	if (y < 1970 || m < 1 || m > 12 || d < 1)
		return -EINVAL;
	if (d > mdays[m - 1] + (m == 2 && leap(y)))
		return -EINVAL;
	*ret_days = days_from_civil(y, m, d);
	return 0;
}

int sigv4_parse_amz_date(const char *s, time_t *ret)
{
	unsigned hh, mm, ss;
	int64_t days;
	if (!s || strlen(s) != SIGV4_AMZ_DATE_LEN || s[8] != 'T' || s[15] != 'Z')
		return -EINVAL;
	if (parse_ymd(s, &days) < 0)
		return -EINVAL;
	if (digits(s + 9, 2, &hh) < 0 || digits(s + 11, 2, &mm) < 0 || digits(s + 13, 2, &ss) < 0)
		return -EINVAL;
	if (hh > 23 || mm > 59 || ss > 59)
		return -EINVAL;
	*ret = (time_t)(days * 86400 + hh * 3600 + mm * 60 + ss);
	return 0;
}

int sigv4_format_amz_date(time_t t, char ret[SIGV4_AMZ_DATE_LEN + 1])
{
	struct tm tm;
	char tmp[64];
	if (t < 0 || !gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999)
		return -EINVAL;
	snprintf(tmp, sizeof(tmp), "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	memcpy(ret, tmp, SIGV4_AMZ_DATE_LEN + 1);
	return 0;
}

/* ---- canonical request -------------------------------------------------------------- */

static int put_canonical_uri(struct s3_buf *b, const char *p, struct sealvm_err *err)
{
	if (!p || p[0] != '/')
		return sealvm_err_set(err, -EINVAL, R_URI, "the request path must start with '/'");
	for (size_t i = 0; p[i]; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '%') {
			int hi = s3_hexval((unsigned char)p[i + 1]);
			int lo = hi < 0 ? -1 : s3_hexval((unsigned char)p[i + 2]);
			if (hi < 0 || lo < 0)
				return sealvm_err_set(err, -EINVAL, R_URI,
						      "the request path has a '%%' that is not "
						      "followed by two hex digits");
			s3_buf_put_encoded_byte(b, (unsigned char)(hi << 4 | lo));
			i += 2;
		} else if (c == '/') {
			s3_buf_putc(b, '/');
		} else {
			s3_buf_put_encoded_byte(b, c);
		}
	}
	return b->error;
}

struct qpair {
	char *text; /* "name=value", encoded */
	size_t name_len;
};

static int qpair_cmp(const void *a, const void *b)
{
	const struct qpair *x = a, *y = b;
	size_t n = MIN(x->name_len, y->name_len);
	int c = memcmp(x->text, y->text, n);
	if (c)
		return c;
	if (x->name_len != y->name_len)
		return x->name_len < y->name_len ? -1 : 1;
	return strcmp(x->text + x->name_len + 1, y->text + y->name_len + 1);
}

static int put_canonical_query(struct s3_buf *out, const char *q, bool presigned,
			       struct sealvm_err *err)
{
	struct qpair *pairs = NULL;
	size_t n = 0;
	char *tmp = NULL;
	int r = 0;

	if (!q || !*q)
		return 0;
	size_t qlen = strlen(q);
	tmp = malloc(qlen + 1);
	pairs = calloc(SIGV4_QUERY_PARAMS_MAX, sizeof(*pairs));
	if (!tmp || !pairs) {
		r = -ENOMEM;
		goto out;
	}
	for (const char *seg = q; seg <= q + qlen;) {
		const char *amp = strchr(seg, '&');
		size_t slen = amp ? (size_t)(amp - seg) : strlen(seg);
		if (slen > 0) {
			const char *eq = memchr(seg, '=', slen);
			size_t nlen = eq ? (size_t)(eq - seg) : slen;
			const char *val = eq ? eq + 1 : seg + slen;
			size_t vlen = eq ? slen - nlen - 1 : 0;
			struct s3_buf b;
			long dn, dv;

			if (n == SIGV4_QUERY_PARAMS_MAX) {
				r = sealvm_err_set(err, -E2BIG, R_ARG,
						   "the query has more than %d parameters",
						   SIGV4_QUERY_PARAMS_MAX);
				goto out;
			}
			dn = s3_pct_decode(seg, nlen, true, tmp);
			if (dn < 0) {
				r = sealvm_err_set(err, -EINVAL, R_URI,
						   "a query parameter name has a '%%' that is not "
						   "followed by two hex digits");
				goto out;
			}
			if (presigned && (size_t)dn == strlen("X-Amz-Signature") &&
			    memcmp(tmp, "X-Amz-Signature", (size_t)dn) == 0)
				goto next;
			s3_buf_init(&b, SIGV4_CANONICAL_MAX);
			s3_buf_put_encoded(&b, tmp, (size_t)dn);
			size_t enc_name_len = b.len;
			s3_buf_putc(&b, '=');
			dv = s3_pct_decode(val, vlen, true, tmp);
			if (dv < 0) {
				s3_buf_done(&b);
				r = sealvm_err_set(err, -EINVAL, R_URI,
						   "a query parameter value has a '%%' that is "
						   "not followed by two hex digits");
				goto out;
			}
			s3_buf_put_encoded(&b, tmp, (size_t)dv);
			r = s3_buf_steal(&b, &pairs[n].text, NULL);
			if (r < 0)
				goto out;
			pairs[n].name_len = enc_name_len;
			n++;
		}
	next:
		if (!amp)
			break;
		seg = amp + 1;
	}
	qsort(pairs, n, sizeof(*pairs), qpair_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i)
			s3_buf_putc(out, '&');
		s3_buf_puts(out, pairs[i].text);
	}
	r = out->error;
out:
	if (pairs)
		for (size_t i = 0; i < n; i++)
			free(pairs[i].text);
	free(pairs);
	free(tmp);
	return r;
}

/* Appends the value with leading/trailing blanks dropped and inner runs made one space. */
static void put_trimmed(struct s3_buf *b, const char *v)
{
	bool pending = false, started = false;
	for (; *v; v++) {
		if (*v == ' ' || *v == '\t') {
			pending = started;
			continue;
		}
		if (pending)
			s3_buf_putc(b, ' ');
		pending = false;
		started = true;
		s3_buf_putc(b, *v);
	}
}

static int put_canonical_headers(struct s3_buf *b, const struct sigv4_request *req,
				 const char *signed_headers, struct sealvm_err *err)
{
	const char *p = signed_headers;
	char name[256];

	while (*p) {
		const char *semi = strchr(p, ';');
		size_t n = semi ? (size_t)(semi - p) : strlen(p);
		bool found = false;
		if (n == 0 || n >= sizeof(name))
			return sealvm_err_set(err, -EINVAL, R_HDR,
					      "a signed header name is empty or too long");
		memcpy(name, p, n);
		name[n] = 0;
		s3_buf_puts(b, name);
		s3_buf_putc(b, ':');
		for (size_t i = 0; i < req->n_headers; i++) {
			if (!s3_strcaseeq(req->headers[i].name, name))
				continue;
			if (found)
				s3_buf_putc(b, ',');
			put_trimmed(b, req->headers[i].value ? req->headers[i].value : "");
			found = true;
		}
		if (!found)
			return sealvm_err_set(err, -EPERM, R_SIG,
					      "the signed header '%s' is not in the request", name);
		s3_buf_putc(b, '\n');
		p += n + (semi ? 1 : 0);
	}
	return b->error;
}

static int canonical_error(int r, struct sealvm_err *err)
{
	if (r == -E2BIG)
		return sealvm_err_set(err, r, R_ARG,
				      "the request is too large to sign (over %d bytes)",
				      SIGV4_CANONICAL_MAX);
	return sealvm_err_set(err, r, NULL, "cannot build the canonical request");
}

int sigv4_canonical_uri(const char *raw_path, char **ret, struct sealvm_err *err)
{
	_cleanup_(s3_buf_donep) struct s3_buf b = S3_BUF_INIT(SIGV4_CANONICAL_MAX);
	s3_buf_init(&b, SIGV4_CANONICAL_MAX);
	int r = put_canonical_uri(&b, raw_path, err);
	if (r < 0)
		return sealvm_err_isset(err) ? r : canonical_error(r, err);
	r = s3_buf_steal(&b, ret, NULL);
	return r < 0 ? canonical_error(r, err) : 0;
}

int sigv4_canonical_query(const char *raw_query, bool presigned, char **ret, struct sealvm_err *err)
{
	_cleanup_(s3_buf_donep) struct s3_buf b = S3_BUF_INIT(SIGV4_CANONICAL_MAX);
	s3_buf_init(&b, SIGV4_CANONICAL_MAX);
	int r = put_canonical_query(&b, raw_query, presigned, err);
	if (r < 0)
		return sealvm_err_isset(err) ? r : canonical_error(r, err);
	r = s3_buf_steal(&b, ret, NULL);
	return r < 0 ? canonical_error(r, err) : 0;
}

int sigv4_canonical_request(const struct sigv4_request *req, bool presigned,
			    const char *signed_headers, const char *payload_hash, char **ret,
			    struct sealvm_err *err)
{
	_cleanup_(s3_buf_donep) struct s3_buf b = S3_BUF_INIT(SIGV4_CANONICAL_MAX);
	int r;

	if (!is_method(req->method))
		return sealvm_err_set(err, -EINVAL, R_ARG, "the request method is not a token");
	if (!signed_headers || !payload_hash)
		return sealvm_err_set(err, -EINVAL, R_ARG, "no signed headers or payload hash");
	s3_buf_init(&b, SIGV4_CANONICAL_MAX);
	s3_buf_puts(&b, req->method);
	s3_buf_putc(&b, '\n');
	r = put_canonical_uri(&b, req->raw_path, err);
	if (r < 0)
		goto fail;
	s3_buf_putc(&b, '\n');
	r = put_canonical_query(&b, req->raw_query, presigned, err);
	if (r < 0)
		goto fail;
	s3_buf_putc(&b, '\n');
	r = put_canonical_headers(&b, req, signed_headers, err);
	if (r < 0)
		goto fail;
	s3_buf_putc(&b, '\n');
	s3_buf_puts(&b, signed_headers);
	s3_buf_putc(&b, '\n');
	s3_buf_puts(&b, payload_hash);
	r = s3_buf_steal(&b, ret, NULL);
	if (r < 0)
		goto fail;
	return 0;
fail:
	return sealvm_err_isset(err) ? err->code : canonical_error(r, err);
}

/* ---- keys and signatures ------------------------------------------------------------ */

int sigv4_signing_key(const struct sealvm_secret *secret, const char *date, const char *region,
		      const char *service, struct sealvm_secret **ret)
{
	_cleanup_secret_ struct sealvm_secret *k0 = NULL, *out = NULL;
	unsigned char k1[32], k2[32], k3[32];
	int r;

	if (!secret || !date || !*date || !region || !*region || !service || !*service)
		return -EINVAL;
	r = sealvm_secret_new(secret->len + 4, &k0);
	if (r < 0)
		return r;
	memcpy(k0->data, "AWS4", 4);
	memcpy(k0->data + 4, secret->data, secret->len);
	k0->len = secret->len + 4;
	r = sealvm_secret_new(32, &out);
	if (r < 0)
		return r;
	r = hmac256(k0->data, k0->len, date, strlen(date), k1);
	if (r == 0)
		r = hmac256(k1, 32, region, strlen(region), k2);
	if (r == 0)
		r = hmac256(k2, 32, service, strlen(service), k3);
	if (r == 0)
		r = hmac256(k3, 32, SIGV4_TERMINATOR, strlen(SIGV4_TERMINATOR), out->data);
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	OPENSSL_cleanse(k3, sizeof(k3));
	if (r < 0)
		return r;
	out->len = 32;
	*ret = TAKE_PTR(out);
	return 0;
}

static int signature_raw(const struct sealvm_secret *key, const char *sts, unsigned char out[32])
{
	if (!key || key->len != 32)
		return -EINVAL;
	return hmac256(key->data, key->len, sts, strlen(sts), out);
}

int sigv4_signature(const struct sealvm_secret *signing_key, const char *string_to_sign,
		    char ret[SIGV4_SIG_HEX_LEN + 1])
{
	unsigned char mac[32];
	int r = signature_raw(signing_key, string_to_sign, mac);
	if (r < 0)
		return r;
	s3_hex(mac, 32, ret);
	return 0;
}

static int chain_signature(const char *algo, const struct sealvm_secret *key, const char *amz_date,
			   const char *scope, const char *prev, const char *extra,
			   const unsigned char hash[32], char ret[SIGV4_SIG_HEX_LEN + 1])
{
	char hex[65], sts[512];
	if (!amz_date || !scope || !prev)
		return -EINVAL;
	s3_hex(hash, 32, hex);
	int n = snprintf(sts, sizeof(sts), "%s\n%s\n%s\n%s\n%s%s", algo, amz_date, scope, prev,
			 extra, hex);
	if (n < 0 || (size_t)n >= sizeof(sts))
		return -EINVAL;
	return sigv4_signature(key, sts, ret);
}

int sigv4_chunk_signature(const struct sealvm_secret *signing_key, const char *amz_date,
			  const char *scope, const char *prev_signature,
			  const unsigned char chunk_sha256[32], char ret[SIGV4_SIG_HEX_LEN + 1])
{
	return chain_signature("AWS4-HMAC-SHA256-PAYLOAD", signing_key, amz_date, scope,
			       prev_signature, SIGV4_EMPTY_SHA256 "\n", chunk_sha256, ret);
}

int sigv4_trailer_signature(const struct sealvm_secret *signing_key, const char *amz_date,
			    const char *scope, const char *prev_signature,
			    const unsigned char trailer_sha256[32], char ret[SIGV4_SIG_HEX_LEN + 1])
{
	return chain_signature("AWS4-HMAC-SHA256-TRAILER", signing_key, amz_date, scope,
			       prev_signature, "", trailer_sha256, ret);
}

static int string_to_sign(const char *amz_date, const char *scope, const char *canonical,
			  char **ret)
{
	char hex[65];
	int r = sha256_hex(canonical, strlen(canonical), hex);
	if (r < 0)
		return r;
	if (asprintf(ret, SIGV4_ALGORITHM "\n%s\n%s\n%s", amz_date, scope, hex) < 0)
		return -ENOMEM;
	return 0;
}

/* ---- signing-key cache -------------------------------------------------------------- */

#define CACHE_SLOTS_MAX 1024

struct cache_slot {
	char akid[SIGV4_ACCESS_KEY_ID_MAX + 1];
	char date[9];
	char region[SIGV4_REGION_MAX + 1];
	char service[SIGV4_SERVICE_MAX + 1];
	uint64_t stamp; /* 0: empty */
};

struct sigv4_key_cache {
	pthread_mutex_t lock;
	size_t n;
	struct cache_slot *slots;
	struct sealvm_secret *keys; /* n * 32 bytes, slot i's key at 32 * i */
	uint64_t clock, hits, misses;
};

int sigv4_key_cache_new(size_t slots, struct sigv4_key_cache **ret)
{
	struct sigv4_key_cache *c;
	int r;

	if (slots < 1 || slots > CACHE_SLOTS_MAX)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->n = slots;
	c->slots = calloc(slots, sizeof(*c->slots));
	r = c->slots ? sealvm_secret_new(slots * 32, &c->keys) : -ENOMEM;
	if (r < 0) {
		free(c->slots);
		free(c);
		return r;
	}
	c->keys->len = slots * 32;
	pthread_mutex_init(&c->lock, NULL);
	*ret = c;
	return 0;
}

void sigv4_key_cache_free(struct sigv4_key_cache *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	sealvm_secret_free(c->keys);
	free(c->slots);
	free(c);
}

static void slot_clear(struct sigv4_key_cache *c, size_t i)
{
	memset(&c->slots[i], 0, sizeof(c->slots[i]));
	OPENSSL_cleanse(c->keys->data + 32 * i, 32);
}

void sigv4_key_cache_forget(struct sigv4_key_cache *c, const char *access_key_id)
{
	if (!c || !access_key_id)
		return;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++)
		if (c->slots[i].stamp && strcmp(c->slots[i].akid, access_key_id) == 0)
			slot_clear(c, i);
	pthread_mutex_unlock(&c->lock);
}

void sigv4_key_cache_clear(struct sigv4_key_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++)
		slot_clear(c, i);
	pthread_mutex_unlock(&c->lock);
}

void sigv4_key_cache_stats(struct sigv4_key_cache *c, uint64_t *hits, uint64_t *misses)
{
	pthread_mutex_lock(&c->lock);
	if (hits)
		*hits = c->hits;
	if (misses)
		*misses = c->misses;
	pthread_mutex_unlock(&c->lock);
}

static bool slot_matches(const struct cache_slot *s, const char *akid, const char *date,
			 const char *region, const char *service)
{
	return s->stamp && strcmp(s->akid, akid) == 0 && strcmp(s->date, date) == 0 &&
	       strcmp(s->region, region) == 0 && strcmp(s->service, service) == 0;
}

/* A copy of the cached key, or NULL (a miss, counted). */
static int cache_get(struct sigv4_key_cache *c, const char *akid, const char *date,
		     const char *region, const char *service, struct sealvm_secret **ret)
{
	int r = -ENOENT;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++) {
		if (!slot_matches(&c->slots[i], akid, date, region, service))
			continue;
		r = sealvm_secret_from(c->keys->data + 32 * i, 32, ret);
		if (r == 0) {
			c->slots[i].stamp = ++c->clock;
			c->hits++;
		}
		break;
	}
	if (r == -ENOENT)
		c->misses++;
	pthread_mutex_unlock(&c->lock);
	return r;
}

static void cache_put(struct sigv4_key_cache *c, const char *akid, const char *date,
		      const char *region, const char *service, const struct sealvm_secret *key)
{
	size_t victim = 0;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->n; i++) {
		if (slot_matches(&c->slots[i], akid, date, region, service)) {
			victim = i;
			break;
		}
		if (c->slots[i].stamp < c->slots[victim].stamp)
			victim = i;
	}
	struct cache_slot *s = &c->slots[victim];
	snprintf(s->akid, sizeof(s->akid), "%s", akid);
	snprintf(s->date, sizeof(s->date), "%s", date);
	snprintf(s->region, sizeof(s->region), "%s", region);
	snprintf(s->service, sizeof(s->service), "%s", service);
	memcpy(c->keys->data + 32 * victim, key->data, 32);
	s->stamp = ++c->clock;
	pthread_mutex_unlock(&c->lock);
}

/* ---- parsing the credentials -------------------------------------------------------- */

struct credential {
	char akid[SIGV4_ACCESS_KEY_ID_MAX + 1];
	char date[9];
	char region[SIGV4_REGION_MAX + 1];
	char service[SIGV4_SERVICE_MAX + 1];
};

/*
 * "AK/YYYYMMDD/region/service/aws4_request". Returns -EINVAL with a message
 * under @reason; quotes only what passed its character check.
 */
static int parse_credential(const char *s, size_t n, const char *reason, struct credential *c,
			    struct sealvm_err *err)
{
	const char *part[5];
	size_t len[5], k = 0, start = 0;
	int64_t days;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '/')
			continue;
		if (k == 5)
			return sealvm_err_set(
				err, -EINVAL, reason,
				"the Credential has more than five '/'-separated "
				"parts; expected AKID/YYYYMMDD/REGION/s3/aws4_request");
		part[k] = s + start;
		len[k++] = i - start;
		start = i + 1;
	}
	if (k != 5)
		return sealvm_err_set(
			err, -EINVAL, reason,
			"the Credential must be AKID/YYYYMMDD/REGION/s3/aws4_request");
	if (len[0] == 0 || len[0] > SIGV4_ACCESS_KEY_ID_MAX)
		return sealvm_err_set(err, -EINVAL, reason,
				      "the access key id in the Credential is empty or longer "
				      "than %d characters",
				      SIGV4_ACCESS_KEY_ID_MAX);
	for (size_t i = 0; i < len[0]; i++)
		if (!is_access_key_char((unsigned char)part[0][i]))
			return sealvm_err_set(err, -EINVAL, reason,
					      "the access key id in the Credential has a "
					      "character outside [A-Za-z0-9._-]");
	if (len[1] != 8 || parse_ymd(part[1], &days) < 0)
		return sealvm_err_set(err, -EINVAL, reason,
				      "the date in the Credential is not a YYYYMMDD date");
	if (!is_scope_word(part[2], len[2], SIGV4_REGION_MAX))
		return sealvm_err_set(err, -EINVAL, reason,
				      "the region in the Credential is not a region name");
	if (!is_scope_word(part[3], len[3], SIGV4_SERVICE_MAX))
		return sealvm_err_set(err, -EINVAL, reason,
				      "the service in the Credential is not a service name");
	if (len[4] != strlen(SIGV4_TERMINATOR) || memcmp(part[4], SIGV4_TERMINATOR, len[4]) != 0)
		return sealvm_err_set(err, -EINVAL, reason,
				      "the Credential must end in /aws4_request");
	memcpy(c->akid, part[0], len[0]);
	c->akid[len[0]] = 0;
	memcpy(c->date, part[1], 8);
	c->date[8] = 0;
	memcpy(c->region, part[2], len[2]);
	c->region[len[2]] = 0;
	memcpy(c->service, part[3], len[3]);
	c->service[len[3]] = 0;
	return 0;
}

/* Lower-case names joined by ';', strictly ascending, at most SIGV4_SIGNED_HEADERS_MAX. */
static int check_signed_headers(const char *sh, const char *reason, struct sealvm_err *err)
{
	const char *prev = NULL;
	size_t prev_len = 0, count = 0;
	const char *p = sh;

	if (!*sh)
		return sealvm_err_set(err, -EINVAL, reason, "SignedHeaders is empty");
	for (;;) {
		const char *semi = strchr(p, ';');
		size_t n = semi ? (size_t)(semi - p) : strlen(p);
		if (n == 0 || n > 128)
			return sealvm_err_set(err, -EINVAL, reason,
					      "SignedHeaders has an empty or overlong name");
		for (size_t i = 0; i < n; i++)
			if (!is_tchar_lower((unsigned char)p[i]))
				return sealvm_err_set(err, -EINVAL, reason,
						      "SignedHeaders must be lower-case header "
						      "names separated by ';'");
		if (prev) {
			int c = memcmp(prev, p, MIN(prev_len, n));
			if (c > 0 || (c == 0 && prev_len >= n))
				return sealvm_err_set(err, -EINVAL, reason,
						      "SignedHeaders must be sorted and without "
						      "repeats");
		}
		if (++count > SIGV4_SIGNED_HEADERS_MAX)
			return sealvm_err_set(err, -E2BIG, reason,
					      "SignedHeaders names more than %d headers",
					      SIGV4_SIGNED_HEADERS_MAX);
		prev = p;
		prev_len = n;
		if (!semi)
			break;
		p = semi + 1;
	}
	return 0;
}

static bool list_has(const char *list, const char *name, size_t n)
{
	const char *p = list;
	for (;;) {
		const char *semi = strchr(p, ';');
		size_t k = semi ? (size_t)(semi - p) : strlen(p);
		if (k == n && strncasecmp(p, name, n) == 0)
			return true;
		if (!semi)
			return false;
		p = semi + 1;
	}
}

struct auth_header {
	struct credential cred;
	char signed_headers[SIGV4_AUTH_HEADER_MAX];
	char signature[SIGV4_SIG_HEX_LEN + 1];
};

/* "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." strictly. */
static int parse_auth_header(const char *h, struct auth_header *a, struct sealvm_err *err)
{
	const size_t alen = strlen(SIGV4_ALGORITHM);
	bool have_cred = false, have_sh = false, have_sig = false;
	size_t n = strlen(h);
	const char *p;

	if (n > SIGV4_AUTH_HEADER_MAX)
		return sealvm_err_set(err, -E2BIG, R_HDR,
				      "the Authorization header is longer than %d characters",
				      SIGV4_AUTH_HEADER_MAX);
	if (n <= alen || memcmp(h, SIGV4_ALGORITHM, alen) != 0 || h[alen] != ' ')
		return sealvm_err_set(err, -EINVAL, R_HDR,
				      "the Authorization header must start with '" SIGV4_ALGORITHM
				      " '");
	p = h + alen;
	while (*p == ' ')
		p++;
	for (;;) {
		const char *eq = strchr(p, '=');
		if (!eq)
			return sealvm_err_set(err, -EINVAL, R_HDR,
					      "the authorization header is malformed; expected "
					      "Credential=..., SignedHeaders=..., Signature=...");
		size_t klen = (size_t)(eq - p);
		const char *v = eq + 1;
		size_t vlen = strcspn(v, ", ");
		if (klen == 10 && memcmp(p, "Credential", 10) == 0 && !have_cred) {
			int r = parse_credential(v, vlen, R_HDR, &a->cred, err);
			if (r < 0)
				return r;
			have_cred = true;
		} else if (klen == 13 && memcmp(p, "SignedHeaders", 13) == 0 && !have_sh) {
			if (vlen >= sizeof(a->signed_headers))
				return sealvm_err_set(err, -E2BIG, R_HDR,
						      "SignedHeaders is too long");
			memcpy(a->signed_headers, v, vlen);
			a->signed_headers[vlen] = 0;
			int r = check_signed_headers(a->signed_headers, R_HDR, err);
			if (r < 0)
				return r;
			have_sh = true;
		} else if (klen == 9 && memcmp(p, "Signature", 9) == 0 && !have_sig) {
			if (vlen != SIGV4_SIG_HEX_LEN || !s3_is_lower_hex(v, vlen))
				return sealvm_err_set(err, -EINVAL, R_HDR,
						      "the Signature must be 64 lower-case hex "
						      "digits");
			memcpy(a->signature, v, vlen);
			a->signature[vlen] = 0;
			have_sig = true;
		} else {
			return sealvm_err_set(err, -EINVAL, R_HDR,
					      "the authorization header is malformed; each of "
					      "Credential, SignedHeaders and Signature must appear "
					      "exactly once, and nothing else");
		}
		p = v + vlen;
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (*p != ',')
			return sealvm_err_set(err, -EINVAL, R_HDR,
					      "the authorization header is malformed; parts must "
					      "be separated by ','");
		p++;
		while (*p == ' ')
			p++;
	}
	if (!have_cred || !have_sh || !have_sig)
		return sealvm_err_set(err, -EINVAL, R_HDR,
				      "the authorization header is malformed; it needs Credential, "
				      "SignedHeaders and Signature");
	return 0;
}

/* ---- the verifier ------------------------------------------------------------------- */

const char *sigv4_request_header(const struct sigv4_request *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (req->headers[i].name && s3_strcaseeq(req->headers[i].name, name))
			return req->headers[i].value ? req->headers[i].value : "";
	return NULL;
}

static size_t header_count(const struct sigv4_request *req, const char *name)
{
	size_t k = 0;
	for (size_t i = 0; i < req->n_headers; i++)
		if (req->headers[i].name && s3_strcaseeq(req->headers[i].name, name))
			k++;
	return k;
}

/* True when the raw query has a parameter whose decoded name is @want. */
static bool query_has_name(const char *q, const char *want)
{
	char name[64];
	size_t wlen = strlen(want);
	if (!q)
		return false;
	for (const char *seg = q;;) {
		size_t slen = strcspn(seg, "&");
		size_t nlen = strcspn(seg, "=&");
		if (nlen < sizeof(name)) {
			long dn = s3_pct_decode(seg, nlen, true, name);
			if (dn == (long)wlen && memcmp(name, want, wlen) == 0)
				return true;
		}
		if (!seg[slen])
			return false;
		seg += slen + 1;
	}
}

enum sigv4_kind sigv4_detect(const struct sigv4_request *req)
{
	const char *a = sigv4_request_header(req, "authorization");
	if (a) {
		size_t alen = strlen(SIGV4_ALGORITHM);
		if (strncmp(a, SIGV4_ALGORITHM, alen) == 0 && (a[alen] == ' ' || a[alen] == 0))
			return SIGV4_KIND_HEADER;
		return SIGV4_KIND_OTHER;
	}
	if (query_has_name(req->raw_query, "X-Amz-Algorithm") ||
	    query_has_name(req->raw_query, "X-Amz-Credential") ||
	    query_has_name(req->raw_query, "X-Amz-Signature"))
		return SIGV4_KIND_QUERY;
	return SIGV4_KIND_NONE;
}

void sigv4_auth_done(struct sigv4_auth *auth)
{
	if (!auth)
		return;
	sealvm_secret_free(auth->signing_key);
	free(auth->canonical_request);
	free(auth->string_to_sign);
	memset(auth, 0, sizeof(*auth));
	auth->decoded_length = -1;
}

/* One header that may appear at most once; -EINVAL when repeated. */
static int single_header(const struct sigv4_request *req, const char *name, const char **ret,
			 struct sealvm_err *err)
{
	size_t k = header_count(req, name);
	if (k > 1)
		return sealvm_err_set(err, -EINVAL, R_ARG, "the header %s appears %zu times", name,
				      k);
	*ret = k ? sigv4_request_header(req, name) : NULL;
	return 0;
}

static int parse_payload(const struct sigv4_request *req, const char *value, const char *reason,
			 struct sigv4_auth *auth, struct sealvm_err *err)
{
	const char *v = NULL;
	int r;

	if (strcmp(value, SIGV4_UNSIGNED_PAYLOAD) == 0)
		auth->payload = SIGV4_PAYLOAD_UNSIGNED;
	else if (strcmp(value, SIGV4_STREAMING_PAYLOAD) == 0)
		auth->payload = SIGV4_PAYLOAD_STREAMING;
	else if (strcmp(value, SIGV4_STREAMING_PAYLOAD_TRAILER) == 0)
		auth->payload = SIGV4_PAYLOAD_STREAMING_TRAILER;
	else if (strcmp(value, SIGV4_STREAMING_UNSIGNED_TRAILER) == 0)
		auth->payload = SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
	else if (strlen(value) == 64 && s3_unhex(value, auth->payload_sha256, 32) == 0)
		auth->payload = SIGV4_PAYLOAD_SHA256;
	else
		return sealvm_err_set(err, -EINVAL, reason,
				      "x-amz-content-sha256 must be a lower-case hex SHA-256, "
				      "UNSIGNED-PAYLOAD, " SIGV4_STREAMING_PAYLOAD
				      ", " SIGV4_STREAMING_PAYLOAD_TRAILER
				      " or " SIGV4_STREAMING_UNSIGNED_TRAILER);
	if (!sigv4_payload_is_streaming(auth->payload))
		return 0;

	r = single_header(req, "x-amz-decoded-content-length", &v, err);
	if (r < 0)
		return r;
	if (!v)
		return sealvm_err_set(err, -EINVAL, "MissingContentLength",
				      "an aws-chunked body (%s) needs x-amz-decoded-content-length",
				      value);
	size_t vl = strlen(v);
	if (vl == 0 || vl > 15 || (vl > 1 && v[0] == '0') || strspn(v, "0123456789") != vl)
		return sealvm_err_set(err, -EINVAL, R_ARG,
				      "x-amz-decoded-content-length is not a decimal byte count");
	auth->decoded_length = strtoll(v, NULL, 10);

	if (auth->payload == SIGV4_PAYLOAD_STREAMING)
		return 0;
	r = single_header(req, "x-amz-trailer", &v, err);
	if (r < 0)
		return r;
	if (!v)
		return sealvm_err_set(err, -EINVAL, "InvalidRequest",
				      "%s needs an x-amz-trailer header naming the trailing "
				      "checksum",
				      value);
	enum s3_checksum_alg alg = s3_checksum_from_header(v);
	if (alg == S3_CHECKSUM_NONE || alg == S3_CHECKSUM_MD5)
		return sealvm_err_set(err, -EINVAL, "InvalidRequest",
				      "x-amz-trailer must be one of x-amz-checksum-crc32, "
				      "-crc32c, -sha1, -sha256");
	snprintf(auth->trailer, sizeof(auth->trailer), "%s", s3_checksum_header(alg));
	return 0;
}

int sigv4_payload_declaration(const struct sigv4_request *req, struct sigv4_auth *auth,
			      struct sealvm_err *err)
{
	const char *v = NULL;
	auth->decoded_length = -1;
	int r = single_header(req, "x-amz-content-sha256", &v, err);
	if (r < 0)
		return r;
	if (!v) {
		auth->payload = SIGV4_PAYLOAD_UNSIGNED;
		return 0;
	}
	r = parse_payload(req, v, R_ARG, auth, err);
	if (r < 0)
		return r;
	if (auth->payload == SIGV4_PAYLOAD_STREAMING ||
	    auth->payload == SIGV4_PAYLOAD_STREAMING_TRAILER)
		return sealvm_err_set(err, -EINVAL, R_ARG,
				      "%s needs SigV4 (its chunks are signed): send %s or sign "
				      "the request",
				      v, SIGV4_STREAMING_UNSIGNED_TRAILER);
	return 0;
}

/* Every x-amz-* header present must be signed, and host must be. */
static int check_coverage(const struct sigv4_request *req, const char *signed_headers,
			  const char *reason, struct sealvm_err *err)
{
	if (!list_has(signed_headers, "host", 4))
		return sealvm_err_set(err, -EINVAL, reason, "the host header must be signed");
	for (size_t i = 0; i < req->n_headers; i++) {
		const char *n = req->headers[i].name;
		if (!n || strncasecmp(n, "x-amz-", 6) != 0)
			continue;
		if (!list_has(signed_headers, n, strlen(n))) {
			bool printable = strlen(n) <= 64;
			for (const char *c = n; printable && *c; c++)
				printable = is_token_char((unsigned char)*c);
			return sealvm_err_set(
				err, -EPERM, R_DENIED,
				"there were headers present in the request which were "
				"not signed: %s",
				printable ? n : "(an x-amz-* header)");
		}
	}
	return 0;
}

static int get_signing_key(const struct sigv4_verifier *v, const struct credential *c,
			   struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *secret = NULL;
	int r;

	if (v->cache && cache_get(v->cache, c->akid, c->date, c->region, c->service, ret) == 0)
		return 0;
	if (!v->lookup)
		return sealvm_err_set(err, -EPERM, "InvalidAccessKeyId",
				      "the access key id does not exist in our records");
	r = v->lookup(v->userdata, c->akid, &secret, err);
	if (r < 0) {
		if (!sealvm_err_isset(err)) {
			if (r == -ENOENT || r == -EPERM)
				return sealvm_err_set(err, -EPERM, "InvalidAccessKeyId",
						      "the access key id does not exist in our "
						      "records");
			return sealvm_err_set(err, r, "InternalError",
					      "cannot look up the access key");
		}
		return r;
	}
	if (!secret)
		return sealvm_err_set(err, -EIO, "InternalError",
				      "the key lookup returned no secret");
	r = sigv4_signing_key(secret, c->date, c->region, c->service, ret);
	if (r < 0)
		return sealvm_err_set(err, r, "InternalError", "cannot derive the signing key");
	if (v->cache)
		cache_put(v->cache, c->akid, c->date, c->region, c->service, *ret);
	return 0;
}

static int parse_expires(const char *s, unsigned *ret)
{
	size_t n = strlen(s);
	if (n == 0 || n > 6 || s[0] == '0' || strspn(s, "0123456789") != n)
		return -EINVAL;
	unsigned v = (unsigned)strtoul(s, NULL, 10);
	if (v < 1 || v > SIGV4_PRESIGN_MAX_EXPIRES)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int query_param(const struct s3_query *q, const char *name, const char **ret,
		       struct sealvm_err *err)
{
	int r = s3_query_get(q, name, ret, NULL);
	if (r == -ENOENT)
		return sealvm_err_set(err, -EINVAL, R_QRY,
				      "the presigned URL lacks the %s parameter", name);
	if (r < 0)
		return sealvm_err_set(err, -EINVAL, R_QRY,
				      "the presigned URL has the %s parameter more than once",
				      name);
	return 0;
}

int sigv4_verify(const struct sigv4_verifier *v, const struct sigv4_request *req, time_t now,
		 struct sigv4_auth *auth, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *key = NULL;
	_cleanup_free_ struct auth_header *ah = NULL;
	_cleanup_free_ char *canonical = NULL, *sts = NULL;
	struct s3_query q = {0};
	const char *reason = R_HDR, *content_sha = NULL, *payload_hash, *signed_headers;
	unsigned char want[32], given[32];
	unsigned skew = v->max_skew ? v->max_skew : SIGV4_MAX_SKEW;
	int r;

	memset(auth, 0, sizeof(*auth));
	auth->decoded_length = -1;
	if (!v->region || !is_scope_word(v->region, strlen(v->region), SIGV4_REGION_MAX))
		return sealvm_err_set(err, -EINVAL, "InternalError",
				      "the server's signing region is not configured");
	ah = calloc(1, sizeof(*ah));
	if (!ah)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");

	auth->kind = sigv4_detect(req);
	switch (auth->kind) {
	case SIGV4_KIND_NONE:
		return sealvm_err_set(err, -EPERM, R_DENIED, "the request is not signed");
	case SIGV4_KIND_OTHER:
		return sealvm_err_set(err, -EINVAL, R_ARG,
				      "the Authorization header is not " SIGV4_ALGORITHM);
	case SIGV4_KIND_HEADER: {
		const char *h = NULL;
		reason = R_HDR;
		if (header_count(req, "authorization") != 1)
			return sealvm_err_set(err, -EINVAL, R_HDR,
					      "the request has more than one Authorization header");
		if (query_has_name(req->raw_query, "X-Amz-Algorithm") ||
		    query_has_name(req->raw_query, "X-Amz-Credential") ||
		    query_has_name(req->raw_query, "X-Amz-Signature"))
			return sealvm_err_set(
				err, -EINVAL, R_ARG,
				"only one auth mechanism allowed: the request has both "
				"an Authorization header and presigning parameters");
		r = parse_auth_header(sigv4_request_header(req, "authorization"), ah, err);
		if (r < 0)
			return r;
		r = single_header(req, "x-amz-date", &h, err);
		if (r < 0)
			return r;
		if (!h)
			return sealvm_err_set(err, -EPERM, R_DENIED,
					      "requests signed with " SIGV4_ALGORITHM
					      " must carry an x-amz-date header");
		if (sigv4_parse_amz_date(h, &auth->request_time) < 0)
			return sealvm_err_set(err, -EPERM, R_DENIED,
					      "x-amz-date is not a YYYYMMDDTHHMMSSZ time");
		memcpy(auth->amz_date, h, SIGV4_AMZ_DATE_LEN);
		r = single_header(req, "x-amz-content-sha256", &content_sha, err);
		if (r < 0)
			return r;
		if (!content_sha)
			return sealvm_err_set(err, -EINVAL, "InvalidRequest",
					      "missing required header for this request: "
					      "x-amz-content-sha256");
		break;
	}
	case SIGV4_KIND_QUERY: {
		const char *alg = NULL, *cred = NULL, *date = NULL, *exp = NULL, *sh = NULL,
			   *sig = NULL;
		unsigned expires;
		reason = R_QRY;
		r = s3_query_parse(req->raw_query, &q, err);
		if (r < 0)
			return r;
		r = query_param(&q, "X-Amz-Algorithm", &alg, err);
		if (r == 0)
			r = query_param(&q, "X-Amz-Credential", &cred, err);
		if (r == 0)
			r = query_param(&q, "X-Amz-Date", &date, err);
		if (r == 0)
			r = query_param(&q, "X-Amz-Expires", &exp, err);
		if (r == 0)
			r = query_param(&q, "X-Amz-SignedHeaders", &sh, err);
		if (r == 0)
			r = query_param(&q, "X-Amz-Signature", &sig, err);
		if (r < 0)
			goto out;
		if (strcmp(alg, SIGV4_ALGORITHM) != 0) {
			r = sealvm_err_set(err, -EINVAL, R_QRY,
					   "X-Amz-Algorithm only supports " SIGV4_ALGORITHM);
			goto out;
		}
		r = parse_credential(cred, strlen(cred), R_QRY, &ah->cred, err);
		if (r < 0)
			goto out;
		if (sigv4_parse_amz_date(date, &auth->request_time) < 0) {
			r = sealvm_err_set(err, -EINVAL, R_QRY,
					   "X-Amz-Date must be a YYYYMMDDTHHMMSSZ time");
			goto out;
		}
		memcpy(auth->amz_date, date, SIGV4_AMZ_DATE_LEN);
		if (parse_expires(exp, &expires) < 0) {
			r = sealvm_err_set(err, -EINVAL, R_QRY,
					   "X-Amz-Expires must be a number of seconds from 1 to "
					   "604800 (seven days)");
			goto out;
		}
		auth->expires_at = auth->request_time + (time_t)expires;
		if (strlen(sh) >= sizeof(ah->signed_headers)) {
			r = sealvm_err_set(err, -E2BIG, R_QRY, "X-Amz-SignedHeaders is too long");
			goto out;
		}
		snprintf(ah->signed_headers, sizeof(ah->signed_headers), "%s", sh);
		r = check_signed_headers(ah->signed_headers, R_QRY, err);
		if (r < 0)
			goto out;
		if (!is_sig_hex(sig)) {
			r = sealvm_err_set(err, -EINVAL, R_QRY,
					   "X-Amz-Signature must be 64 lower-case hex digits");
			goto out;
		}
		memcpy(ah->signature, sig, SIGV4_SIG_HEX_LEN + 1);
		r = single_header(req, "x-amz-content-sha256", &content_sha, err);
		if (r < 0)
			goto out;
		break;
	}
	}
	signed_headers = ah->signed_headers;

	/* The scope: the date of the request, our region, S3. */
	if (memcmp(ah->cred.date, auth->amz_date, 8) != 0) {
		r = sealvm_err_set(err, -EINVAL, reason,
				   "the date in the Credential (%s) is not the date of the request "
				   "(%.8s)",
				   ah->cred.date, auth->amz_date);
		goto out;
	}
	if (strcmp(ah->cred.region, v->region) != 0) {
		r = sealvm_err_set(err, -EINVAL, reason, "the region '%s' is wrong; expecting '%s'",
				   ah->cred.region, v->region);
		goto out;
	}
	if (strcmp(ah->cred.service, SIGV4_SERVICE_S3) != 0) {
		r = sealvm_err_set(err, -EINVAL, reason,
				   "the service '%s' in the Credential is wrong; expecting 's3'",
				   ah->cred.service);
		goto out;
	}
	r = check_coverage(req, signed_headers, reason, err);
	if (r < 0)
		goto out;

	/* The clock. */
	if (auth->kind == SIGV4_KIND_HEADER) {
		if (auth->request_time > now + (time_t)skew ||
		    auth->request_time < now - (time_t)skew) {
			r = sealvm_err_set(err, -EPERM, R_SKEW,
					   "the difference between the request time and the "
					   "server's time is too large (more than %u seconds)",
					   skew);
			goto out;
		}
	} else {
		if (auth->request_time > now + (time_t)skew) {
			r = sealvm_err_set(err, -EPERM, R_SKEW,
					   "the presigned URL's X-Amz-Date is more than %u seconds "
					   "in the future",
					   skew);
			goto out;
		}
		if (now > auth->expires_at) {
			r = sealvm_err_set(err, -EPERM, R_DENIED, "Request has expired");
			goto out;
		}
	}

	/* The body. */
	if (content_sha) {
		r = parse_payload(req, content_sha, auth->kind == SIGV4_KIND_HEADER ? R_ARG : R_QRY,
				  auth, err);
		if (r < 0)
			goto out;
		payload_hash = content_sha;
	} else {
		auth->payload = SIGV4_PAYLOAD_UNSIGNED;
		payload_hash = SIGV4_UNSIGNED_PAYLOAD;
	}

	snprintf(auth->access_key_id, sizeof(auth->access_key_id), "%s", ah->cred.akid);
	snprintf(auth->scope, sizeof(auth->scope), "%s/%s/%s/" SIGV4_TERMINATOR, ah->cred.date,
		 ah->cred.region, ah->cred.service);
	memcpy(auth->signature, ah->signature, sizeof(auth->signature));

	r = sigv4_canonical_request(req, auth->kind == SIGV4_KIND_QUERY, signed_headers,
				    payload_hash, &canonical, err);
	if (r < 0)
		goto out;
	r = string_to_sign(auth->amz_date, auth->scope, canonical, &sts);
	if (r < 0) {
		r = sealvm_err_set(err, r, "InternalError", "cannot hash the canonical request");
		goto out;
	}
	r = get_signing_key(v, &ah->cred, &key, err);
	if (r < 0)
		goto out;
	r = signature_raw(key, sts, want);
	if (r < 0) {
		r = sealvm_err_set(err, r, "InternalError", "cannot compute the signature");
		goto out;
	}
	(void)s3_unhex(ah->signature, given, 32); /* checked to be 64 lower-case hex above */
	if (CRYPTO_memcmp(want, given, 32) != 0) {
		auth->canonical_request = TAKE_PTR(canonical);
		auth->string_to_sign = TAKE_PTR(sts);
		r = sealvm_err_set(err, -EPERM, R_SIG,
				   "the request signature we calculated does not match the "
				   "signature you provided; check your key and signing method");
		goto out;
	}
	if (auth->payload == SIGV4_PAYLOAD_STREAMING ||
	    auth->payload == SIGV4_PAYLOAD_STREAMING_TRAILER)
		auth->signing_key = TAKE_PTR(key);
	r = 0;
out:
	OPENSSL_cleanse(want, sizeof(want));
	s3_query_done(&q);
	return r;
}

int sigv4_check_payload(const struct sigv4_auth *auth, const unsigned char sha256[32],
			struct sealvm_err *err)
{
	if (auth->payload != SIGV4_PAYLOAD_SHA256)
		return 0;
	if (CRYPTO_memcmp(auth->payload_sha256, sha256, 32) != 0)
		return sealvm_err_set(err, -EBADMSG, "XAmzContentSHA256Mismatch",
				      "the provided x-amz-content-sha256 header does not match "
				      "what was computed");
	return 0;
}

/* ---- the signer --------------------------------------------------------------------- */

struct url {
	char *scheme; /* "http" / "https" */
	char *host;   /* authority without a default port */
	char *path;   /* raw, "/" when absent */
	char *query;  /* raw, NULL when absent */
};

static void url_done(struct url *u)
{
	free(u->scheme);
	free(u->host);
	free(u->path);
	free(u->query);
	memset(u, 0, sizeof(*u));
}

static int url_parse(const char *s, struct url *u, struct sealvm_err *err)
{
	const char *p, *auth_end;
	size_t slen;

	memset(u, 0, sizeof(*u));
	if (!s)
		return sealvm_err_set(err, -EINVAL, "BAD_URL", "no URL to sign");
	for (const char *c = s; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '#')
			return sealvm_err_set(err, -EINVAL, "BAD_URL",
					      "the URL to sign has a space, a control character "
					      "or a fragment");
	if (strncasecmp(s, "http://", 7) == 0)
		slen = 4;
	else if (strncasecmp(s, "https://", 8) == 0)
		slen = 5;
	else
		return sealvm_err_set(err, -EINVAL, "BAD_URL",
				      "the URL to sign must start with http:// or https://");
	p = s + slen + 3;
	auth_end = p + strcspn(p, "/?");
	if (auth_end == p || memchr(p, '@', (size_t)(auth_end - p)))
		return sealvm_err_set(err, -EINVAL, "BAD_URL",
				      "the URL to sign needs a host, without user information");
	u->scheme = strndup(s, slen);
	if (!u->scheme)
		goto nomem;
	for (char *c = u->scheme; *c; c++)
		*c = (char)(*c | 0x20);
	size_t hlen = (size_t)(auth_end - p);
	const char *dflt = slen == 4 ? ":80" : ":443";
	const char *bracket = memchr(p, ']', hlen);
	size_t dlen = strlen(dflt);
	if (hlen > dlen && memcmp(auth_end - dlen, dflt, dlen) == 0 &&
	    (!bracket || bracket < auth_end - dlen))
		hlen -= dlen;
	u->host = strndup(p, hlen);
	if (!u->host)
		goto nomem;
	if (*auth_end == '/') {
		size_t plen = strcspn(auth_end, "?");
		u->path = strndup(auth_end, plen);
		p = auth_end + plen;
	} else {
		u->path = strdup("/");
		p = auth_end;
	}
	if (!u->path)
		goto nomem;
	if (*p == '?') {
		u->query = strdup(p + 1);
		if (!u->query)
			goto nomem;
	}
	return 0;
nomem:
	url_done(u);
	return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
}

/*
 * What we send must be readable by the verifier and the server's query
 * parser: refuse a final query that s3_query_parse would refuse.
 */
static int check_wire_query(const char *query, struct sealvm_err *err)
{
	struct s3_query q;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = s3_query_parse(query, &q, &e);
	if (r < 0)
		return sealvm_err_set(err, r, "BAD_URL", "the query to sign cannot be sent: %s",
				      e.message);
	s3_query_done(&q);
	return 0;
}

static bool payload_hash_ok(const char *h)
{
	if (!h)
		return false;
	if (strcmp(h, SIGV4_UNSIGNED_PAYLOAD) == 0 || strcmp(h, SIGV4_STREAMING_PAYLOAD) == 0 ||
	    strcmp(h, SIGV4_STREAMING_PAYLOAD_TRAILER) == 0 ||
	    strcmp(h, SIGV4_STREAMING_UNSIGNED_TRAILER) == 0)
		return true;
	return strlen(h) == 64 && s3_is_lower_hex(h, 64);
}

struct hdr {
	char *name; /* lower case */
	const char *value;
};

static int hdr_cmp(const void *a, const void *b)
{
	return strcmp(((const struct hdr *)a)->name, ((const struct hdr *)b)->name);
}

/*
 * The headers to sign: @fixed (already lower case) plus the caller's, lower
 * cased, checked and sorted; their ';'-joined names in *@ret_signed.
 */
static int collect_headers(const struct hdr *fixed, size_t n_fixed,
			   const struct sigv4_header *headers, size_t n_headers, struct hdr **ret,
			   size_t *ret_n, char **ret_signed, struct sealvm_err *err)
{
	_cleanup_(s3_buf_donep) struct s3_buf b = S3_BUF_INIT(SIGV4_CANONICAL_MAX);
	struct hdr *all;
	size_t n = 0;
	int r;

	if (n_headers > SIGV4_SIGNED_HEADERS_MAX - n_fixed)
		return sealvm_err_set(err, -E2BIG, "BAD_HEADER", "too many headers to sign");
	all = calloc(n_fixed + n_headers, sizeof(*all));
	if (!all)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n_fixed; i++) {
		all[n].name = strdup(fixed[i].name);
		all[n].value = fixed[i].value;
		if (!all[n++].name)
			goto nomem;
	}
	for (size_t i = 0; i < n_headers; i++) {
		const char *name = headers[i].name, *value = headers[i].value;
		size_t nl = name ? strlen(name) : 0;
		if (nl == 0 || nl > 128 || !value) {
			r = sealvm_err_set(err, -EINVAL, "BAD_HEADER",
					   "a header to sign has no name, a name over 128 "
					   "characters, or no value");
			goto fail;
		}
		for (size_t k = 0; k < nl; k++)
			if (!is_token_char((unsigned char)name[k])) {
				r = sealvm_err_set(err, -EINVAL, "BAD_HEADER",
						   "a header name to sign is not an HTTP token");
				goto fail;
			}
		for (const char *c = value; *c; c++)
			if (*c == '\r' || *c == '\n') {
				r = sealvm_err_set(err, -EINVAL, "BAD_HEADER",
						   "the value of header %s has a line break", name);
				goto fail;
			}
		all[n].name = strdup(name);
		all[n].value = value;
		if (!all[n].name)
			goto nomem;
		for (char *c = all[n].name; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c + 32);
		n++;
	}
	qsort(all, n, sizeof(*all), hdr_cmp);
	s3_buf_init(&b, SIGV4_AUTH_HEADER_MAX);
	for (size_t i = 0; i < n; i++) {
		if (i && strcmp(all[i - 1].name, all[i].name) == 0) {
			r = sealvm_err_set(
				err, -EINVAL, "BAD_HEADER",
				"the header %s is given twice, or is one the signer adds "
				"itself (host, x-amz-date, x-amz-content-sha256)",
				all[i].name);
			goto fail;
		}
		if (strcmp(all[i].name, "authorization") == 0) {
			r = sealvm_err_set(err, -EINVAL, "BAD_HEADER",
					   "the Authorization header cannot be signed");
			goto fail;
		}
		if (i)
			s3_buf_putc(&b, ';');
		s3_buf_puts(&b, all[i].name);
	}
	r = s3_buf_steal(&b, ret_signed, NULL);
	if (r < 0) {
		r = sealvm_err_set(err, r, "BAD_HEADER", "the signed header list is too long");
		goto fail;
	}
	*ret = all;
	*ret_n = n;
	return 0;
nomem:
	r = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
fail:
	for (size_t i = 0; i < n_fixed + n_headers; i++)
		free(all[i].name);
	free(all);
	return r;
}

static void hdrs_free(struct hdr *h, size_t n)
{
	if (!h)
		return;
	for (size_t i = 0; i < n; i++)
		free(h[i].name);
	free(h);
}

static bool cred_ok(const struct sigv4_credentials *c, const char **service)
{
	*service = c && c->service ? c->service : SIGV4_SERVICE_S3;
	if (!c || !c->access_key_id || !c->secret_access_key || !c->region)
		return false;
	size_t n = strlen(c->access_key_id);
	if (n == 0 || n > SIGV4_ACCESS_KEY_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_access_key_char((unsigned char)c->access_key_id[i]))
			return false;
	return is_scope_word(c->region, strlen(c->region), SIGV4_REGION_MAX) &&
	       is_scope_word(*service, strlen(*service), SIGV4_SERVICE_MAX);
}

/*
 * The signature over the canonical request of (@method, @path, @query, @h):
 * shared by sign and presign, and the same code the verifier runs.
 */
static int sign_canonical(const char *method, const char *path, const char *query, bool presigned,
			  const struct hdr *h, size_t n, const char *signed_headers,
			  const char *payload_hash, const char *amz_date, const char *scope,
			  const struct sigv4_credentials *cred, const char *service,
			  char sig[SIGV4_SIG_HEX_LEN + 1], struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *key = NULL;
	_cleanup_free_ struct sigv4_header *rh = NULL;
	_cleanup_free_ char *canonical = NULL, *sts = NULL;
	char date[9];
	int r;

	rh = calloc(n ? n : 1, sizeof(*rh));
	if (!rh)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n; i++)
		rh[i] = (struct sigv4_header){h[i].name, h[i].value};
	struct sigv4_request req = {method, path, query, rh, n};
	r = sigv4_canonical_request(&req, presigned, signed_headers, payload_hash, &canonical, err);
	if (r < 0)
		return r;
	r = string_to_sign(amz_date, scope, canonical, &sts);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot hash the canonical request");
	memcpy(date, amz_date, 8);
	date[8] = 0;
	r = sigv4_signing_key(cred->secret_access_key, date, cred->region, service, &key);
	if (r == 0)
		r = sigv4_signature(key, sts, sig);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot compute the signature");
	return 0;
}

void sigv4_signed_done(struct sigv4_signed *s)
{
	if (!s)
		return;
	free(s->url);
	free(s->host);
	free(s->authorization);
	memset(s, 0, sizeof(*s));
}

int sigv4_sign(const char *method, const char *url, const struct sigv4_header *headers,
	       size_t n_headers, const char *payload_hash, const struct sigv4_credentials *cred,
	       time_t now, struct sigv4_signed *ret, struct sealvm_err *err)
{
	_cleanup_free_ char *cpath = NULL, *cquery = NULL, *signed_headers = NULL;
	struct sigv4_signed out = {0};
	struct hdr *h = NULL;
	struct url u;
	const char *service;
	size_t n = 0;
	int r;

	if (!is_method(method))
		return sealvm_err_set(err, -EINVAL, "BAD_METHOD",
				      "the method is not an upper-case token");
	if (!payload_hash_ok(payload_hash))
		return sealvm_err_set(err, -EINVAL, "BAD_PAYLOAD_HASH",
				      "the payload hash must be a lower-case hex SHA-256 or one "
				      "of the UNSIGNED/STREAMING constants");
	if (!cred_ok(cred, &service))
		return sealvm_err_set(
			err, -EINVAL, "BAD_CREDENTIALS",
			"the access key id, region or service is missing or malformed");
	if (sigv4_format_amz_date(now, out.amz_date) < 0)
		return sealvm_err_set(err, -EINVAL, "BAD_TIME", "the signing time is out of range");
	r = url_parse(url, &u, err);
	if (r < 0)
		return r;
	if (query_has_name(u.query, "X-Amz-Algorithm") ||
	    query_has_name(u.query, "X-Amz-Credential") ||
	    query_has_name(u.query, "X-Amz-Signature")) {
		r = sealvm_err_set(
			err, -EINVAL, "BAD_URL",
			"a URL signed in the Authorization header cannot carry presigning "
			"parameters");
		goto out;
	}
	r = sigv4_canonical_uri(u.path, &cpath, err);
	if (r == 0)
		r = sigv4_canonical_query(u.query, false, &cquery, err);
	if (r < 0)
		goto out;
	snprintf(out.scope, sizeof(out.scope), "%.8s/%s/%s/" SIGV4_TERMINATOR, out.amz_date,
		 cred->region, service);
	const struct hdr fixed[] = {
		{(char *)"host", u.host},
		{(char *)"x-amz-content-sha256", payload_hash},
		{(char *)"x-amz-date", out.amz_date},
	};
	r = collect_headers(fixed, ELEMENTSOF(fixed), headers, n_headers, &h, &n, &signed_headers,
			    err);
	if (r < 0)
		goto out;
	r = check_wire_query(cquery, err);
	if (r < 0)
		goto out;
	r = sign_canonical(method, cpath, cquery, false, h, n, signed_headers, payload_hash,
			   out.amz_date, out.scope, cred, service, out.signature, err);
	if (r < 0)
		goto out;
	if (asprintf(&out.authorization,
		     SIGV4_ALGORITHM " Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		     cred->access_key_id, out.scope, signed_headers, out.signature) < 0 ||
	    asprintf(&out.url, "%s://%s%s%s%s", u.scheme, u.host, cpath, *cquery ? "?" : "",
		     cquery) < 0 ||
	    !(out.host = strdup(u.host))) {
		r = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
		goto out;
	}
	*ret = out;
	memset(&out, 0, sizeof(out));
	r = 0;
out:
	sigv4_signed_done(&out);
	hdrs_free(h, n);
	url_done(&u);
	return r;
}

static const char *const presign_params[] = {
	"X-Amz-Algorithm", "X-Amz-Credential",	  "X-Amz-Date",
	"X-Amz-Expires",   "X-Amz-SignedHeaders", "X-Amz-Signature",
};

int sigv4_presign(const char *method, const char *url, const struct sigv4_header *headers,
		  size_t n_headers, const struct sigv4_credentials *cred, time_t now,
		  unsigned expires, char **ret, struct sealvm_err *err)
{
	_cleanup_free_ char *cpath = NULL, *cquery = NULL, *signed_headers = NULL, *out = NULL;
	_cleanup_(s3_buf_donep) struct s3_buf raw = S3_BUF_INIT(SIGV4_CANONICAL_MAX);
	struct s3_query existing = {0};
	char amz_date[SIGV4_AMZ_DATE_LEN + 1], scope[SIGV4_SCOPE_MAX + 1],
		sig[SIGV4_SIG_HEX_LEN + 1];
	struct hdr *h = NULL;
	struct url u;
	const char *service;
	size_t n = 0;
	int r;

	s3_buf_init(&raw, SIGV4_CANONICAL_MAX);
	if (!is_method(method))
		return sealvm_err_set(err, -EINVAL, "BAD_METHOD",
				      "the method is not an upper-case token");
	if (expires < 1 || expires > SIGV4_PRESIGN_MAX_EXPIRES)
		return sealvm_err_set(err, -EINVAL, "BAD_EXPIRES",
				      "a presigned URL expires after 1 to 604800 seconds");
	if (!cred_ok(cred, &service))
		return sealvm_err_set(
			err, -EINVAL, "BAD_CREDENTIALS",
			"the access key id, region or service is missing or malformed");
	if (sigv4_format_amz_date(now, amz_date) < 0)
		return sealvm_err_set(err, -EINVAL, "BAD_TIME", "the signing time is out of range");
	r = url_parse(url, &u, err);
	if (r < 0)
		return r;
	r = s3_query_parse(u.query, &existing, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < ELEMENTSOF(presign_params); i++)
		if (s3_query_has(&existing, presign_params[i])) {
			r = sealvm_err_set(err, -EINVAL, "BAD_URL",
					   "the URL to presign already has %s", presign_params[i]);
			goto out;
		}
	for (size_t i = 0; i < n_headers; i++)
		if (headers[i].name && (s3_strcaseeq(headers[i].name, "x-amz-content-sha256") ||
					s3_strcaseeq(headers[i].name, "x-amz-date"))) {
			r = sealvm_err_set(
				err, -EINVAL, "BAD_HEADER",
				"a presigned URL carries its date in the query and signs "
				"no payload: x-amz-date and x-amz-content-sha256 cannot be "
				"signed headers");
			goto out;
		}
	snprintf(scope, sizeof(scope), "%.8s/%s/%s/" SIGV4_TERMINATOR, amz_date, cred->region,
		 service);
	const struct hdr fixed[] = {{(char *)"host", u.host}};
	r = collect_headers(fixed, ELEMENTSOF(fixed), headers, n_headers, &h, &n, &signed_headers,
			    err);
	if (r < 0)
		goto out;
	if (u.query && *u.query) {
		s3_buf_puts(&raw, u.query);
		s3_buf_putc(&raw, '&');
	}
	s3_buf_puts(&raw, "X-Amz-Algorithm=" SIGV4_ALGORITHM "&X-Amz-Credential=");
	s3_buf_put_encoded(&raw, cred->access_key_id, strlen(cred->access_key_id));
	s3_buf_puts(&raw, "%2F");
	s3_buf_put_encoded(&raw, scope, strlen(scope));
	s3_buf_printf(&raw, "&X-Amz-Date=%s&X-Amz-Expires=%u&X-Amz-SignedHeaders=", amz_date,
		      expires);
	s3_buf_put_encoded(&raw, signed_headers, strlen(signed_headers));
	if (raw.error) {
		r = sealvm_err_set(err, raw.error, "BAD_URL", "the URL to presign is too long");
		goto out;
	}
	r = sigv4_canonical_uri(u.path, &cpath, err);
	if (r == 0)
		r = sigv4_canonical_query(raw.data, true, &cquery, err);
	if (r < 0)
		goto out;
	r = sign_canonical(method, cpath, cquery, true, h, n, signed_headers,
			   SIGV4_UNSIGNED_PAYLOAD, amz_date, scope, cred, service, sig, err);
	if (r < 0)
		goto out;
	if (asprintf(&out, "%s://%s%s?%s&X-Amz-Signature=%s", u.scheme, u.host, cpath, cquery,
		     sig) < 0) {
		r = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
		goto out;
	}
	r = check_wire_query(strchr(out + strlen(u.scheme) + 3, '?') + 1, err);
	if (r < 0)
		goto out;
	*ret = TAKE_PTR(out);
	r = 0;
out:
	s3_query_done(&existing);
	hdrs_free(h, n);
	url_done(&u);
	return r;
}
