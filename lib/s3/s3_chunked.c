// SPDX-License-Identifier: Apache-2.0
/*
 * s3_chunked.c — the streaming aws-chunked body decoder (see s3.h).
 *
 * Fed arbitrary slices of the encoded body, it hands the decoded bytes to the
 * caller straight from the slices it was given (no copy, no buffering of chunk
 * data: memory stays at one header line), hashes each chunk and checks its
 * signature against the chain that starts at the request's seed signature,
 * then reads the trailer, checks its signature and the declared checksum of
 * the whole decoded body. The grammar is the one every SDK sends:
 *
 *   chunk   = hex-size [";chunk-signature=" 64HEX] CRLF data CRLF
 *   final   = "0" [";chunk-signature=" 64HEX] CRLF
 *   trailer = *( name ":" value CRLF ) ["x-amz-trailer-signature:" 64HEX CRLF]
 *   body    = *chunk final [trailer] CRLF
 *
 * Anything else is refused, the first error sticks, and nothing here trusts
 * data before s3_chunked_finish has returned 0. The signing key is copied into
 * its own secret and wiped on free.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "sealvm/b64.h"
#include "sealvm/s3.h"
#include "sealvm/sigv4.h"

#include "s3_internal.h"

#define CHUNK_SIG_EXT ";chunk-signature="
#define TRAILER_SIG_NAME "x-amz-trailer-signature"
#define LINE_MAX_ALL                                                                               \
	(S3_TRAILER_LINE_MAX > S3_CHUNK_LINE_MAX ? S3_TRAILER_LINE_MAX : S3_CHUNK_LINE_MAX)

enum state {
	ST_SIZE,    /* reading a chunk header line */
	ST_DATA,    /* inside chunk data */
	ST_DATA_CR, /* expecting the CR after chunk data */
	ST_DATA_LF, /* expecting the LF after chunk data */
	ST_END,	    /* after the final chunk, no trailer: expecting CR */
	ST_END_LF,  /* ... and then LF */
	ST_TRAILER, /* reading trailer lines */
	ST_DONE,    /* the body is complete */
};

struct s3_chunked {
	enum sigv4_payload mode;
	bool sign;
	bool with_trailer;
	enum state st;
	int error;
	struct sealvm_err err;

	struct sealvm_secret *key;
	char amz_date[SIGV4_AMZ_DATE_LEN + 1];
	char scope[SIGV4_SCOPE_MAX + 1];
	char prev_sig[SIGV4_SIG_HEX_LEN + 1];
	char chunk_sig[SIGV4_SIG_HEX_LEN + 1]; /* the signature the current chunk claims */
	EVP_MD_CTX *md;			       /* the current chunk's SHA-256 */

	char line[LINE_MAX_ALL + 1];
	size_t line_len;

	uint64_t remaining; /* of the current chunk */
	uint64_t decoded;
	int64_t declared; /* -1: not declared */
	bool prev_small;  /* the last data chunk was under S3_CHUNK_MIN_SIGNED */
	unsigned trailers_seen;

	enum s3_checksum_alg trailer_alg;
	struct s3_checksum sum; /* of the decoded data, trailer modes */
	char trailer_value[64]; /* the base64 the trailer declared */
	bool have_trailer_value;
	bool have_trailer_sig;
	EVP_MD_CTX *trailer_md; /* SHA-256 of the canonical trailer lines */

	s3_chunked_data_fn data;
	void *userdata;
};

static int fail(struct s3_chunked *d, int code, const char *reason, const char *msg,
		struct sealvm_err *err)
{
	if (!d->error) {
		d->error = code;
		sealvm_err_set(&d->err, code, reason, "%s", msg);
	}
	if (err && !sealvm_err_isset(err))
		*err = d->err;
	return d->error;
}

void s3_chunked_free(struct s3_chunked *d)
{
	if (!d)
		return;
	sealvm_secret_free(d->key);
	EVP_MD_CTX_free(d->md);
	EVP_MD_CTX_free(d->trailer_md);
	s3_checksum_done(&d->sum);
	OPENSSL_cleanse(d, sizeof(*d));
	free(d);
}

int s3_chunked_new(const struct s3_chunked_config *cfg, struct s3_chunked **ret,
		   struct sealvm_err *err)
{
	struct s3_chunked *d;
	int r;

	if (!cfg || !cfg->data)
		return sealvm_err_set(err, -EINVAL, "InternalError", "no data callback");
	if (cfg->mode != SIGV4_PAYLOAD_STREAMING && cfg->mode != SIGV4_PAYLOAD_STREAMING_TRAILER &&
	    cfg->mode != SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER)
		return sealvm_err_set(err, -EINVAL, "InternalError",
				      "the payload mode is not an aws-chunked one");
	d = calloc(1, sizeof(*d));
	if (!d)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	d->mode = cfg->mode;
	d->sign = cfg->mode != SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
	d->with_trailer = cfg->mode != SIGV4_PAYLOAD_STREAMING;
	d->declared = cfg->decoded_length;
	d->data = cfg->data;
	d->userdata = cfg->userdata;
	if (d->sign) {
		if (!cfg->signing_key || cfg->signing_key->len != 32 || !cfg->amz_date ||
		    strlen(cfg->amz_date) != SIGV4_AMZ_DATE_LEN || !cfg->scope ||
		    strlen(cfg->scope) > SIGV4_SCOPE_MAX || !cfg->seed_signature ||
		    strlen(cfg->seed_signature) != SIGV4_SIG_HEX_LEN) {
			r = sealvm_err_set(err, -EINVAL, "InternalError",
					   "a signed aws-chunked body needs the signing key, date, "
					   "scope and seed signature");
			goto fail;
		}
		r = sealvm_secret_from(cfg->signing_key->data, 32, &d->key);
		if (r < 0) {
			r = sealvm_err_set(err, r, NULL, "cannot allocate secret memory");
			goto fail;
		}
		memcpy(d->amz_date, cfg->amz_date, SIGV4_AMZ_DATE_LEN);
		snprintf(d->scope, sizeof(d->scope), "%s", cfg->scope);
		memcpy(d->prev_sig, cfg->seed_signature, SIGV4_SIG_HEX_LEN);
		d->md = EVP_MD_CTX_new();
		d->trailer_md = EVP_MD_CTX_new();
		if (!d->md || !d->trailer_md || EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1 ||
		    EVP_DigestInit_ex(d->trailer_md, EVP_sha256(), NULL) != 1) {
			r = sealvm_err_set(err, -ENOMEM, NULL, "cannot start SHA-256");
			goto fail;
		}
	}
	if (d->with_trailer) {
		d->trailer_alg = s3_checksum_from_header(cfg->trailer);
		if (d->trailer_alg == S3_CHECKSUM_NONE) {
			r = sealvm_err_set(err, -EINVAL, "InvalidRequest",
					   "a trailer mode needs x-amz-trailer naming an "
					   "x-amz-checksum-* header");
			goto fail;
		}
		r = s3_checksum_init(&d->sum, d->trailer_alg);
		if (r < 0) {
			r = sealvm_err_set(err, r, NULL, "cannot start the checksum");
			goto fail;
		}
	} else if (cfg->trailer) {
		r = sealvm_err_set(err, -EINVAL, "InvalidRequest",
				   SIGV4_STREAMING_PAYLOAD " carries no trailer");
		goto fail;
	}
	*ret = d;
	return 0;
fail:
	s3_chunked_free(d);
	return r;
}

uint64_t s3_chunked_decoded(const struct s3_chunked *d)
{
	return d->decoded;
}

/* Checks @claimed against the chain for a chunk hashed by d->md; advances the chain. */
static int check_chunk_sig(struct s3_chunked *d, struct sealvm_err *err)
{
	unsigned char md[32];
	char want[SIGV4_SIG_HEX_LEN + 1];
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(d->md, md, &n) != 1 || n != 32 ||
	    EVP_DigestInit_ex(d->md, EVP_sha256(), NULL) != 1)
		return fail(d, -EIO, "InternalError", "SHA-256 failed", err);
	if (sigv4_chunk_signature(d->key, d->amz_date, d->scope, d->prev_sig, md, want) < 0)
		return fail(d, -EIO, "InternalError", "cannot compute a chunk signature", err);
	bool ok = CRYPTO_memcmp(want, d->chunk_sig, SIGV4_SIG_HEX_LEN) == 0;
	OPENSSL_cleanse(want, sizeof(want));
	if (!ok)
		return fail(d, -EPERM, "SignatureDoesNotMatch",
			    "the chunk signature we calculated does not match the one you "
			    "provided",
			    err);
	memcpy(d->prev_sig, d->chunk_sig, SIGV4_SIG_HEX_LEN);
	return 0;
}

static int parse_size_line(struct s3_chunked *d, struct sealvm_err *err)
{
	const char *l = d->line;
	size_t n = d->line_len, i = 0;
	uint64_t size = 0;

	while (i < n && s3_hexval((unsigned char)l[i]) >= 0) {
		if (i == 16)
			return fail(d, -EBADMSG, "InvalidRequest",
				    "an aws-chunked chunk size has more than 16 hex digits", err);
		size = size << 4 | (uint64_t)s3_hexval((unsigned char)l[i]);
		i++;
	}
	if (i == 0)
		return fail(d, -EBADMSG, "InvalidRequest",
			    "an aws-chunked chunk does not start with a hex size", err);
	if (d->sign) {
		size_t ext = strlen(CHUNK_SIG_EXT);
		if (n - i != ext + SIGV4_SIG_HEX_LEN || memcmp(l + i, CHUNK_SIG_EXT, ext) != 0 ||
		    !s3_is_lower_hex(l + i + ext, SIGV4_SIG_HEX_LEN))
			return fail(d, -EBADMSG, "InvalidRequest",
				    "a signed aws-chunked chunk header must be "
				    "SIZE;chunk-signature=<64 hex digits>",
				    err);
		memcpy(d->chunk_sig, l + i + ext, SIGV4_SIG_HEX_LEN);
	} else if (i != n) {
		return fail(d, -EBADMSG, "InvalidRequest",
			    "an unsigned aws-chunked chunk header must be the hex size alone", err);
	}
	if (size > S3_CHUNK_MAX)
		return fail(d, -EBADMSG, "InvalidChunkSizeError",
			    "an aws-chunked chunk is larger than 64 MiB", err);
	if (size > 0 && d->sign && d->prev_small)
		return fail(d, -EBADMSG, "InvalidChunkSizeError",
			    "only the last chunk is allowed to have a size less than 8192 bytes",
			    err);
	if (size > 0) {
		d->prev_small = size < S3_CHUNK_MIN_SIGNED;
		d->remaining = size;
		d->st = ST_DATA;
		return 0;
	}
	/* The final chunk: its signature covers the empty data. */
	if (d->sign) {
		int r = check_chunk_sig(d, err);
		if (r < 0)
			return r;
	}
	d->st = d->with_trailer ? ST_TRAILER : ST_END;
	return 0;
}

static int finish_trailers(struct s3_chunked *d, struct sealvm_err *err)
{
	if (!d->have_trailer_value)
		return fail(d, -EBADMSG, "MalformedTrailerError",
			    "the trailing checksum declared in x-amz-trailer was not sent", err);
	if (d->sign) {
		unsigned char md[32];
		char want[SIGV4_SIG_HEX_LEN + 1];
		unsigned int n = 0;
		if (!d->have_trailer_sig)
			return fail(d, -EBADMSG, "MalformedTrailerError",
				    "the trailer has no x-amz-trailer-signature", err);
		if (EVP_DigestFinal_ex(d->trailer_md, md, &n) != 1 || n != 32)
			return fail(d, -EIO, "InternalError", "SHA-256 failed", err);
		if (sigv4_trailer_signature(d->key, d->amz_date, d->scope, d->prev_sig, md, want) <
		    0)
			return fail(d, -EIO, "InternalError",
				    "cannot compute the trailer signature", err);
		bool ok = CRYPTO_memcmp(want, d->chunk_sig, SIGV4_SIG_HEX_LEN) == 0;
		OPENSSL_cleanse(want, sizeof(want));
		if (!ok)
			return fail(d, -EPERM, "SignatureDoesNotMatch",
				    "the trailer signature we calculated does not match the one "
				    "you provided",
				    err);
	}
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = s3_checksum_verify_b64(&d->sum, d->trailer_value, &e);
	if (r < 0)
		return fail(d, r, e.reason, e.message, err);
	d->st = ST_DONE;
	return 0;
}

static int parse_trailer_line(struct s3_chunked *d, struct sealvm_err *err)
{
	const char *l = d->line;
	size_t n = d->line_len;

	if (n == 0)
		return finish_trailers(d, err);
	if (d->have_trailer_sig)
		return fail(d, -EBADMSG, "MalformedTrailerError",
			    "x-amz-trailer-signature must be the last trailer line", err);
	if (++d->trailers_seen > S3_TRAILERS_MAX)
		return fail(d, -EBADMSG, "MalformedTrailerError", "too many trailer lines", err);
	const char *colon = memchr(l, ':', n);
	if (!colon)
		return fail(d, -EBADMSG, "MalformedTrailerError",
			    "a trailer line is not name:value", err);
	size_t nl = (size_t)(colon - l);
	const char *v = colon + 1;
	size_t vl = n - nl - 1;
	const char *want = s3_checksum_header(d->trailer_alg);

	if (d->sign && nl == strlen(TRAILER_SIG_NAME) && memcmp(l, TRAILER_SIG_NAME, nl) == 0) {
		if (vl != SIGV4_SIG_HEX_LEN || !s3_is_lower_hex(v, vl))
			return fail(d, -EBADMSG, "MalformedTrailerError",
				    "x-amz-trailer-signature must be 64 lower-case hex digits",
				    err);
		memcpy(d->chunk_sig, v, SIGV4_SIG_HEX_LEN);
		d->have_trailer_sig = true;
		return 0;
	}
	if (nl != strlen(want) || memcmp(l, want, nl) != 0)
		return fail(d, -EBADMSG, "MalformedTrailerError",
			    "the trailer carries a header other than the one declared in "
			    "x-amz-trailer",
			    err);
	if (d->have_trailer_value)
		return fail(d, -EBADMSG, "MalformedTrailerError",
			    "the trailing checksum is sent twice", err);
	size_t blen = sealvm_b64_encoded_len(s3_checksum_len(d->trailer_alg), false);
	unsigned char tmp[S3_CHECKSUM_MAX + 3];
	if (vl != blen || sealvm_b64_decode(v, vl, tmp, false) < 0)
		return fail(d, -EBADMSG, "MalformedTrailerError",
			    "the trailing checksum is not the base64 of a digest of the right "
			    "size",
			    err);
	memcpy(d->trailer_value, v, vl);
	d->trailer_value[vl] = 0;
	d->have_trailer_value = true;
	if (d->sign && (EVP_DigestUpdate(d->trailer_md, l, n) != 1 ||
			EVP_DigestUpdate(d->trailer_md, "\n", 1) != 1))
		return fail(d, -EIO, "InternalError", "SHA-256 failed", err);
	return 0;
}

/* Consumes line bytes from @p; sets *@used. A complete line is parsed in place. */
static int feed_line(struct s3_chunked *d, const char *p, size_t n, size_t *used,
		     struct sealvm_err *err)
{
	size_t cap = d->st == ST_SIZE ? S3_CHUNK_LINE_MAX : S3_TRAILER_LINE_MAX;
	size_t i = 0;

	*used = 0;
	while (i < n) {
		char c = p[i++];
		if (c == '\n') {
			if (d->line_len == 0 || d->line[d->line_len - 1] != '\r')
				return fail(d, -EBADMSG, "InvalidRequest",
					    "an aws-chunked line does not end in CRLF", err);
			d->line_len--;
			d->line[d->line_len] = 0;
			*used = i;
			int r = d->st == ST_SIZE ? parse_size_line(d, err)
						 : parse_trailer_line(d, err);
			d->line_len = 0;
			return r;
		}
		if (c == 0 || (d->line_len > 0 && d->line[d->line_len - 1] == '\r'))
			return fail(d, -EBADMSG, "InvalidRequest",
				    "an aws-chunked line has a NUL or a bare CR", err);
		if (d->line_len + 1 >= cap)
			return fail(d, -EBADMSG, "InvalidRequest",
				    "an aws-chunked header or trailer line is too long", err);
		d->line[d->line_len++] = c;
	}
	*used = i;
	return 0;
}

static int feed_data(struct s3_chunked *d, const char *p, size_t n, struct sealvm_err *err)
{
	if (d->declared >= 0 && d->decoded + n > (uint64_t)d->declared)
		return fail(d, -EBADMSG, "IncompleteBody",
			    "the body has more data than x-amz-decoded-content-length declares",
			    err);
	if (d->sign && EVP_DigestUpdate(d->md, p, n) != 1)
		return fail(d, -EIO, "InternalError", "SHA-256 failed", err);
	if (d->with_trailer)
		s3_checksum_update(&d->sum, p, n);
	d->decoded += n;
	int r = d->data(d->userdata, p, n);
	if (r < 0)
		return fail(d, r, sealvm_err_reason_for(r), "the decoded body could not be stored",
			    err);
	return 0;
}

int s3_chunked_feed(struct s3_chunked *d, const void *buf, size_t len, struct sealvm_err *err)
{
	const char *p = buf;
	int r;

	if (d->error)
		return fail(d, d->error, NULL, NULL, err);
	while (len > 0) {
		size_t used = 0;
		switch (d->st) {
		case ST_SIZE:
		case ST_TRAILER:
			r = feed_line(d, p, len, &used, err);
			if (r < 0)
				return r;
			break;
		case ST_DATA:
			used = (size_t)MIN((uint64_t)len, d->remaining);
			r = feed_data(d, p, used, err);
			if (r < 0)
				return r;
			d->remaining -= used;
			if (d->remaining == 0) {
				if (d->sign) {
					r = check_chunk_sig(d, err);
					if (r < 0)
						return r;
				}
				d->st = ST_DATA_CR;
			}
			break;
		case ST_DATA_CR:
			if (*p != '\r')
				return fail(d, -EBADMSG, "InvalidRequest",
					    "aws-chunked chunk data is not followed by CRLF", err);
			d->st = ST_DATA_LF;
			used = 1;
			break;
		case ST_DATA_LF:
			if (*p != '\n')
				return fail(d, -EBADMSG, "InvalidRequest",
					    "aws-chunked chunk data is not followed by CRLF", err);
			d->st = ST_SIZE;
			used = 1;
			break;
		case ST_END:
		case ST_END_LF:
			if (*p != (d->st == ST_END ? '\r' : '\n'))
				return fail(d, -EBADMSG, "InvalidRequest",
					    "the aws-chunked body does not end in CRLF after the "
					    "final chunk",
					    err);
			d->st = d->st == ST_END ? ST_END_LF : ST_DONE;
			used = 1;
			break;
		case ST_DONE:
			return fail(d, -EBADMSG, "IncompleteBody",
				    "there is data after the end of the aws-chunked body", err);
		}
		p += used;
		len -= used;
	}
	return 0;
}

int s3_chunked_finish(struct s3_chunked *d, struct sealvm_err *err)
{
	if (d->error)
		return fail(d, d->error, NULL, NULL, err);
	if (d->st != ST_DONE)
		return fail(d, -EBADMSG, "IncompleteBody",
			    "the aws-chunked body ends before its final chunk and closing line",
			    err);
	if (d->declared >= 0 && d->decoded != (uint64_t)d->declared)
		return fail(d, -EBADMSG, "IncompleteBody",
			    "the body has less data than x-amz-decoded-content-length declares",
			    err);
	return 0;
}

int s3_chunked_trailer(const struct s3_chunked *d, enum s3_checksum_alg *ret_alg,
		       const char **ret_b64)
{
	if (d->error || d->st != ST_DONE || !d->have_trailer_value)
		return -ENOENT;
	*ret_alg = d->trailer_alg;
	*ret_b64 = d->trailer_value;
	return 0;
}
