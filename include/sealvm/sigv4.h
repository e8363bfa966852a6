/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sigv4.h — AWS Signature Version 4 for S3: one implementation shared by the
 * server's verifier and the client's signer.
 *
 * Both sides build the canonical request with the same code, from the raw,
 * undecoded request target: the path's percent-encoding is normalised the way
 * S3 does it (every byte outside the RFC 3986 unreserved set as %XX with
 * upper-case hex, a raw '/' kept, an encoded %2F kept encoded; no double
 * encoding, no dot-segment removal), and the query is decoded ('+' is a
 * space), re-encoded the same way and sorted by encoded name, then value.
 * Header auth (Authorization: AWS4-HMAC-SHA256 ...) and presigned URLs
 * (X-Amz-* query parameters) are parsed strictly; failures carry the S3 error
 * code as the reason (SignatureDoesNotMatch, AuthorizationHeaderMalformed,
 * AuthorizationQueryParametersError, RequestTimeTooSkewed, AccessDenied,
 * InvalidURI, InvalidArgument, InvalidRequest, MissingContentLength,
 * XAmzContentSHA256Mismatch) so that the S3 listener can map it to its XML
 * error, and a message that never contains a secret or a signature.
 *
 * Secrets (the secret access key, derived signing keys) live only in
 * struct sealvm_secret. Signatures are compared in constant time.
 *
 * Client note: what is signed is the normalised URL that sigv4_sign and
 * sigv4_presign return; send exactly that (with libcurl: CURLOPT_PATH_AS_IS,
 * so that curl leaves "." and ".." segments alone).
 */
#ifndef SEALVM_SIGV4_H
#define SEALVM_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sealvm/err.h"
#include "sealvm/macro.h"
#include "sealvm/secret.h"

#define SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
#define SIGV4_TERMINATOR "aws4_request"
#define SIGV4_SERVICE_S3 "s3"

/* The payload hash values that are not a hex SHA-256. */
#define SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define SIGV4_STREAMING_PAYLOAD "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
#define SIGV4_STREAMING_PAYLOAD_TRAILER "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
#define SIGV4_STREAMING_UNSIGNED_TRAILER "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
/* Hex SHA-256 of the empty string. */
#define SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#define SIGV4_MAX_SKEW 900		 /* seconds either side of the server's clock */
#define SIGV4_PRESIGN_MAX_EXPIRES 604800 /* seven days, in seconds */
#define SIGV4_ACCESS_KEY_ID_MAX 128	 /* characters */
#define SIGV4_REGION_MAX 63		 /* characters, [a-z0-9-] */
#define SIGV4_SERVICE_MAX 32		 /* characters, [a-z0-9-] */
#define SIGV4_AUTH_HEADER_MAX 8192	 /* characters of an Authorization header */
#define SIGV4_SIGNED_HEADERS_MAX 64	 /* names in SignedHeaders */
#define SIGV4_QUERY_PARAMS_MAX 128	 /* parameters in a query string (= S3_QUERY_PARAMS_MAX) */
#define SIGV4_CANONICAL_MAX (256 * 1024) /* bytes of a canonical request */
#define SIGV4_TRAILER_NAME_MAX 31	 /* "x-amz-checksum-crc32c" and friends */

/* "YYYYMMDDTHHMMSSZ" plus NUL. */
#define SIGV4_AMZ_DATE_LEN 16
/* Hex signature plus NUL. */
#define SIGV4_SIG_HEX_LEN 64
/* "AK/YYYYMMDD/region/service/aws4_request" without the key id: the scope. */
#define SIGV4_SCOPE_MAX (8 + 1 + SIGV4_REGION_MAX + 1 + SIGV4_SERVICE_MAX + 1 + 12)

/* One request header as received or to be sent; both strings NUL-terminated. */
struct sigv4_header {
	const char *name; /* any case; matched case-insensitively */
	const char *value;
};

/* A request as the server received it. */
struct sigv4_request {
	const char *method;    /* "GET", "PUT", ... (upper case) */
	const char *raw_path;  /* the request target's path as sent, starting with '/' */
	const char *raw_query; /* after '?', as sent; NULL or "" for none */
	const struct sigv4_header *headers; /* every header, repeated names repeated */
	size_t n_headers;
};

/* How a request is authenticated, judged by its form only (sigv4_detect). */
enum sigv4_kind {
	SIGV4_KIND_NONE,   /* no Authorization header, no X-Amz-Signature/-Algorithm/-Credential */
	SIGV4_KIND_HEADER, /* Authorization: AWS4-HMAC-SHA256 ... */
	SIGV4_KIND_QUERY,  /* presigned URL */
	SIGV4_KIND_OTHER,  /* another Authorization scheme (Bearer, SigV2 "AWS ...") */
};

/* What the x-amz-content-sha256 value (or a presigned URL) says about the body. */
enum sigv4_payload {
	SIGV4_PAYLOAD_SHA256,		 /* a hex SHA-256 the body must match */
	SIGV4_PAYLOAD_UNSIGNED,		 /* UNSIGNED-PAYLOAD (and every presigned URL without it) */
	SIGV4_PAYLOAD_STREAMING,	 /* aws-chunked, every chunk signed */
	SIGV4_PAYLOAD_STREAMING_TRAILER, /* aws-chunked, chunks and a trailer signed */
	SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER, /* aws-chunked, unsigned, trailer checksum */
};

/* True for the three aws-chunked payload modes. */
static inline bool sigv4_payload_is_streaming(enum sigv4_payload p)
{
	return p == SIGV4_PAYLOAD_STREAMING || p == SIGV4_PAYLOAD_STREAMING_TRAILER ||
	       p == SIGV4_PAYLOAD_STREAMING_UNSIGNED_TRAILER;
}

/*
 * The secret access key of @access_key_id, for the verifier: on success a new
 * secret in *@ret (the verifier frees it). @access_key_id is attacker-chosen
 * text of 1..SIGV4_ACCESS_KEY_ID_MAX characters from [A-Za-z0-9._-]: look it
 * up, never format it into a path or SQL text. An unknown or disabled key is
 * -EPERM with reason "InvalidAccessKeyId" set on @err by the callback (if the
 * callback leaves @err unset, the verifier sets InvalidAccessKeyId for
 * -ENOENT/-EPERM and InternalError otherwise).
 */
typedef int (*sigv4_secret_fn)(void *userdata, const char *access_key_id,
			       struct sealvm_secret **ret, struct sealvm_err *err);

struct sigv4_key_cache;

/* What the server checks requests against. */
struct sigv4_verifier {
	const char *region;	       /* the deployment's signing region, e.g. "us-south" */
	sigv4_secret_fn lookup;	       /* the secret of an access key id */
	void *userdata;		       /* for lookup */
	struct sigv4_key_cache *cache; /* optional: signing keys by (key id, date, region) */
	unsigned max_skew;	       /* seconds; 0 means SIGV4_MAX_SKEW */
};

/* The outcome of sigv4_verify. Always release with sigv4_auth_done. */
struct sigv4_auth {
	enum sigv4_kind kind; /* HEADER or QUERY */
	char access_key_id[SIGV4_ACCESS_KEY_ID_MAX + 1];
	char amz_date[SIGV4_AMZ_DATE_LEN + 1]; /* "20130524T000000Z" */
	char scope[SIGV4_SCOPE_MAX + 1];       /* "20130524/us-south/s3/aws4_request" */
	char signature[SIGV4_SIG_HEX_LEN + 1]; /* the request's; the seed of aws-chunked */
	time_t request_time;		       /* x-amz-date / X-Amz-Date */
	time_t expires_at;		       /* presigned: request_time + X-Amz-Expires */
	enum sigv4_payload payload;
	unsigned char payload_sha256[32]; /* SIGV4_PAYLOAD_SHA256: the declared hash */
	int64_t decoded_length;		  /* streaming: x-amz-decoded-content-length; else -1 */
	char trailer[SIGV4_TRAILER_NAME_MAX + 1]; /* trailer modes: the x-amz-trailer name */
	/* Signed streaming modes: the signing key the chunk signatures chain under. */
	struct sealvm_secret *signing_key;
	/*
	 * After a SignatureDoesNotMatch from comparing signatures (not from a
	 * signed header missing in the request): what the server computed, for
	 * the S3 error body (StringToSign, CanonicalRequest). malloc'ed; no
	 * secret in either.
	 */
	char *canonical_request;
	char *string_to_sign;
};

/* Frees what @auth holds and zeroes it; fine on a zeroed or already done struct. */
void sigv4_auth_done(struct sigv4_auth *auth);

/* The first header named @name (case-insensitive) in @req, or NULL. */
const char *sigv4_request_header(const struct sigv4_request *req, const char *name);

/*
 * Classifies @req by the form of its credentials only (nothing is checked).
 * A request that carries both an Authorization header and presigning query
 * parameters is SIGV4_KIND_HEADER or _OTHER here, and refused by sigv4_verify.
 */
enum sigv4_kind sigv4_detect(const struct sigv4_request *req);

/*
 * Verifies a SigV4 request (header or presigned) at time @now: parses the
 * credentials strictly, checks scope (service "s3", the verifier's region, the
 * date of x-amz-date), the clock skew (|now - x-amz-date| <= max_skew; for a
 * presigned URL, not more than max_skew in the future and not past its
 * expiry), that host and every x-amz-* header present are signed, the
 * x-amz-content-sha256 value, then asks for the secret (or the cache for the
 * signing key) and compares the signature in constant time.
 *
 * @auth is always initialised (zeroed, then filled); release it with
 * sigv4_auth_done whatever the result. On success it says who signed, and
 * what the body must satisfy (payload mode, declared hash, signing key for
 * aws-chunked). Returns 0, or: -EINVAL (malformed: AuthorizationHeaderMalformed,
 * AuthorizationQueryParametersError, InvalidURI, InvalidArgument,
 * InvalidRequest, MissingContentLength), -EPERM (SignatureDoesNotMatch,
 * RequestTimeTooSkewed, AccessDenied, or the lookup's InvalidAccessKeyId),
 * -E2BIG (too many parameters/headers; reason InvalidArgument or
 * AuthorizationHeaderMalformed), -ENOMEM, -EIO. Thread-safe when the lookup is.
 */
int sigv4_verify(const struct sigv4_verifier *v, const struct sigv4_request *req, time_t now,
		 struct sigv4_auth *auth, struct sealvm_err *err) _warn_unused_result_;

/*
 * For a request authenticated otherwise (an identity bearer token): what its
 * x-amz-content-sha256 declares about the body, into auth->payload,
 * payload_sha256, decoded_length and trailer — absent: UNSIGNED; a SHA-256 to
 * check with sigv4_check_payload; STREAMING-UNSIGNED-PAYLOAD-TRAILER with its
 * x-amz-decoded-content-length and x-amz-trailer, as the SigV4 verifier reads
 * them. The signed streaming modes need a signing key: -EINVAL
 * InvalidArgument. Other errors as sigv4_verify's for these headers.
 */
int sigv4_payload_declaration(const struct sigv4_request *req, struct sigv4_auth *auth,
			      struct sealvm_err *err);

/*
 * For SIGV4_PAYLOAD_SHA256: compares the SHA-256 of the body the server
 * received with the declared one (constant time). -EBADMSG with reason
 * XAmzContentSHA256Mismatch when they differ; 0 otherwise, and for the other
 * payload modes.
 */
int sigv4_check_payload(const struct sigv4_auth *auth, const unsigned char sha256[32],
			struct sealvm_err *err) _warn_unused_result_;

/* ---- building blocks (the verifier and the signer use these; tests pin them) ---------- */

/*
 * The canonical request of @req for the given signed headers (";"-joined,
 * lower case, sorted) and payload hash, as a new malloc'ed string in *@ret.
 * @presigned drops X-Amz-Signature from the query. Errors: -EINVAL
 * InvalidURI (a bad path or query encoding), -EPERM SignatureDoesNotMatch
 * (a signed header is not in the request), -E2BIG, -ENOMEM.
 */
int sigv4_canonical_request(const struct sigv4_request *req, bool presigned,
			    const char *signed_headers, const char *payload_hash, char **ret,
			    struct sealvm_err *err);

/* Canonical URI of a raw path (see the file comment). -EINVAL InvalidURI. */
int sigv4_canonical_uri(const char *raw_path, char **ret, struct sealvm_err *err);

/* Canonical query string of a raw query. -EINVAL InvalidURI, -E2BIG InvalidArgument. */
int sigv4_canonical_query(const char *raw_query, bool presigned, char **ret,
			  struct sealvm_err *err);

/*
 * The signing key HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
 * service), "aws4_request") as a new 32-byte secret. @date is YYYYMMDD.
 * -EINVAL for an empty part, -ENOMEM.
 */
int sigv4_signing_key(const struct sealvm_secret *secret, const char *date, const char *region,
		      const char *service, struct sealvm_secret **ret);

/* Hex HMAC-SHA256 of @string_to_sign under @signing_key into @ret (65 bytes). */
int sigv4_signature(const struct sealvm_secret *signing_key, const char *string_to_sign,
		    char ret[SIGV4_SIG_HEX_LEN + 1]);

/*
 * aws-chunked: the signature of one chunk whose data hashes to @chunk_sha256,
 * chained on @prev_signature (the seed signature for the first chunk).
 * String to sign: "AWS4-HMAC-SHA256-PAYLOAD\n" amz_date "\n" scope "\n" prev
 * "\n" SHA256("") "\n" hex(chunk_sha256).
 */
int sigv4_chunk_signature(const struct sealvm_secret *signing_key, const char *amz_date,
			  const char *scope, const char *prev_signature,
			  const unsigned char chunk_sha256[32], char ret[SIGV4_SIG_HEX_LEN + 1]);

/*
 * aws-chunked: the signature of the trailer, chained on the final (empty)
 * chunk's signature. @trailer_sha256 is the SHA-256 of the trailer lines as
 * "name:value\n" each (the x-amz-trailer-signature line excluded).
 * String to sign: "AWS4-HMAC-SHA256-TRAILER\n" amz_date "\n" scope "\n" prev
 * "\n" hex(trailer_sha256).
 */
int sigv4_trailer_signature(const struct sealvm_secret *signing_key, const char *amz_date,
			    const char *scope, const char *prev_signature,
			    const unsigned char trailer_sha256[32],
			    char ret[SIGV4_SIG_HEX_LEN + 1]);

/* Parses "YYYYMMDDTHHMMSSZ" (exactly; a real UTC date and time). -EINVAL otherwise. */
int sigv4_parse_amz_date(const char *s, time_t *ret);

/* Formats @t as "YYYYMMDDTHHMMSSZ" into @ret (17 bytes). -EINVAL outside years 1970..9999. */
int sigv4_format_amz_date(time_t t, char ret[SIGV4_AMZ_DATE_LEN + 1]);

/* ---- the client's signer ------------------------------------------------------------ */

struct sigv4_credentials {
	const char *access_key_id;
	const struct sealvm_secret *secret_access_key;
	const char *region;  /* "us-south" */
	const char *service; /* NULL means "s3" */
};

/* What sigv4_sign produced; release with sigv4_signed_done. */
struct sigv4_signed {
	char *url;	     /* the normalised URL to send (path and query canonical) */
	char *host;	     /* the Host header value that was signed (curl sends the same) */
	char *authorization; /* the Authorization header value */
	char amz_date[SIGV4_AMZ_DATE_LEN + 1]; /* send as x-amz-date */
	char signature[SIGV4_SIG_HEX_LEN + 1]; /* the seed for aws-chunked bodies */
	char scope[SIGV4_SCOPE_MAX + 1];
};

void sigv4_signed_done(struct sigv4_signed *s);

/*
 * Signs a request for header auth. @url is "http[s]://host[:port]/path[?query]"
 * with the path and query percent-encoded (any valid encoding; what is sent
 * is its normalised form, *@ret->url). @headers are the headers to sign
 * besides host, x-amz-date and x-amz-content-sha256, which are always signed
 * (x-amz-content-sha256 = @payload_hash: a lower-case hex SHA-256 or one of
 * the SIGV4_*PAYLOAD* constants); the caller sends all of them, with the
 * values given. No header may be given twice, nor be host, x-amz-date,
 * x-amz-content-sha256 or authorization, and the URL's query may not carry
 * presigning parameters (X-Amz-Algorithm/-Credential/-Signature). The query
 * that is sent must be one s3_query_parse reads (at most S3_QUERY_MAX
 * characters and S3_QUERY_PARAMS_MAX parameters once normalised, no %00).
 * Errors: -EINVAL (bad URL, header or payload hash), -E2BIG, -ENOMEM, -EIO.
 */
int sigv4_sign(const char *method, const char *url, const struct sigv4_header *headers,
	       size_t n_headers, const char *payload_hash, const struct sigv4_credentials *cred,
	       time_t now, struct sigv4_signed *ret, struct sealvm_err *err);

/*
 * A presigned URL for @method on @url, valid @expires seconds
 * (1..SIGV4_PRESIGN_MAX_EXPIRES) from @now, signing host and @headers (which
 * the user of the URL must then send as given). The payload is
 * UNSIGNED-PAYLOAD, so x-amz-content-sha256 and x-amz-date cannot be among
 * @headers. @url's own query parameters are kept (none may be an
 * X-Amz-Algorithm/-Credential/-Date/-Expires/-SignedHeaders/-Signature).
 * The new malloc'ed URL (path and query normalised, X-Amz-Signature last) is
 * in *@ret. Errors as sigv4_sign.
 */
int sigv4_presign(const char *method, const char *url, const struct sigv4_header *headers,
		  size_t n_headers, const struct sigv4_credentials *cred, time_t now,
		  unsigned expires, char **ret, struct sealvm_err *err);

/* ---- signing-key cache -------------------------------------------------------------- */

/*
 * A small thread-safe cache of derived signing keys, keyed by (access key id,
 * date, region, service), held in locked secret memory, least recently used
 * replaced. It saves the secret lookup (an unseal) and the HMAC chain on every
 * request. A key that is deleted or disabled must be forgotten
 * (sigv4_key_cache_forget) in the same place that stops it being returned by
 * the lookup, or it keeps working until its cached day ends.
 * @slots: 1..4096. -EINVAL, -ENOMEM.
 */
int sigv4_key_cache_new(size_t slots, struct sigv4_key_cache **ret);
void sigv4_key_cache_free(struct sigv4_key_cache *c);
/* Drops every cached key of @access_key_id. */
void sigv4_key_cache_forget(struct sigv4_key_cache *c, const char *access_key_id);
/* Drops everything. */
void sigv4_key_cache_clear(struct sigv4_key_cache *c);
/* Hits and misses so far (for tests and metrics). */
void sigv4_key_cache_stats(struct sigv4_key_cache *c, uint64_t *hits, uint64_t *misses);

#endif
