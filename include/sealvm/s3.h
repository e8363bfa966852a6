/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3.h — the S3 wire formats the object store and its clients need besides
 * SigV4 (sigv4.h): running checksums (CRC32, CRC32C, SHA-1, SHA-256, MD5),
 * the streaming aws-chunked body decoder with chunk and trailer signature
 * checks, the query-string parser, the CompleteMultipartUpload XML parser and
 * an XML writer for responses.
 *
 * Every parser takes attacker-controlled bytes: sizes are bounded, encodings
 * are decoded strictly, and each failure carries the S3 error code as its
 * reason (MalformedXML, InvalidPartOrder, InvalidArgument, InvalidURI,
 * IncompleteBody, InvalidChunkSizeError, MalformedTrailerError, BadDigest,
 * SignatureDoesNotMatch, MaxMessageLengthExceeded) for the S3 listener to map.
 */
#ifndef SEALVM_S3_H
#define SEALVM_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sealvm/err.h"
#include "sealvm/macro.h"
#include "sealvm/sigv4.h"

/* ---- checksums ---------------------------------------------------------------------- */

enum s3_checksum_alg {
	S3_CHECKSUM_NONE = 0,
	S3_CHECKSUM_CRC32,  /* zlib's CRC-32 (ISO-HDLC), 4 bytes big-endian */
	S3_CHECKSUM_CRC32C, /* Castagnoli, 4 bytes big-endian */
	S3_CHECKSUM_SHA1,
	S3_CHECKSUM_SHA256,
	S3_CHECKSUM_MD5, /* Content-MD5 and ETags */
};

#define S3_CHECKSUM_MAX 32 /* bytes of the largest digest */

/* A running checksum. Zero-initialise, then s3_checksum_init. */
struct s3_checksum {
	enum s3_checksum_alg alg;
	uint32_t crc;
	void *md; /* EVP_MD_CTX for the digests */
};

/* Starts @alg. -EINVAL for S3_CHECKSUM_NONE or an unknown value, -ENOMEM. */
int s3_checksum_init(struct s3_checksum *c, enum s3_checksum_alg alg);
/* Adds @len bytes. */
void s3_checksum_update(struct s3_checksum *c, const void *data, size_t len);
/*
 * Finishes into @out (S3_CHECKSUM_MAX bytes of room); returns the digest
 * length (4, 20, 32 or 16), or -EIO. The checksum cannot be updated after.
 */
int s3_checksum_final(struct s3_checksum *c, unsigned char out[S3_CHECKSUM_MAX]);
/* Releases; fine on a zeroed or finished struct. */
void s3_checksum_done(struct s3_checksum *c);
/* Digest length of @alg in bytes (0 for NONE). */
size_t s3_checksum_len(enum s3_checksum_alg alg);
/*
 * The algorithm of a header or trailer name: "x-amz-checksum-crc32",
 * "-crc32c", "-sha1", "-sha256" (case-insensitive). S3_CHECKSUM_NONE if none.
 */
enum s3_checksum_alg s3_checksum_from_header(const char *name);
/* The algorithm of an x-amz-sdk-checksum-algorithm value ("CRC32", ...). NONE if none. */
enum s3_checksum_alg s3_checksum_from_algorithm(const char *value);
/* The header name of @alg ("x-amz-checksum-crc32c"), "content-md5" for MD5, NULL for NONE. */
const char *s3_checksum_header(enum s3_checksum_alg alg);

/*
 * Finishes @c and compares with @b64 (canonical padded base64 of the digest,
 * as S3 clients send it). 0 on a match; -EBADMSG reason BadDigest when it
 * differs; -EINVAL reason InvalidDigest when @b64 is not a canonical encoding
 * of the right length. Constant time in the digest.
 */
int s3_checksum_verify_b64(struct s3_checksum *c, const char *b64, struct sealvm_err *err);

/* One-shot CRC32C (Castagnoli) continuing from @crc (0 to start). */
uint32_t s3_crc32c(uint32_t crc, const void *data, size_t len);

/* ---- aws-chunked decoder ------------------------------------------------------------ */

#define S3_CHUNK_LINE_MAX 256	   /* a chunk header line, CRLF included */
#define S3_TRAILER_LINE_MAX 1024   /* one trailer line, CRLF included */
#define S3_TRAILERS_MAX 8	   /* trailer lines, the signature line included */
#define S3_CHUNK_MIN_SIGNED 8192   /* every signed chunk but the last has at least this */
#define S3_CHUNK_MAX (64ull << 20) /* the largest chunk accepted */

/* Receives decoded body bytes, in order; a negative return stops decoding with it. */
typedef int (*s3_chunked_data_fn)(void *userdata, const void *data, size_t len);

struct s3_chunked_config {
	/*
	 * The payload mode: one of SIGV4_PAYLOAD_STREAMING (chunk signatures, no
	 * trailer), _STREAMING_TRAILER (chunk and trailer signatures, a trailer)
	 * or _STREAMING_UNSIGNED_TRAILER (no signatures, a trailer).
	 */
	enum sigv4_payload mode;
	/* Signed modes: from sigv4_verify (key copied; the strings are copied). */
	const struct sealvm_secret *signing_key;
	const char *amz_date;
	const char *scope;
	const char *seed_signature;
	/*
	 * Trailer modes: the declared x-amz-trailer (one x-amz-checksum-*
	 * name). The trailer must carry exactly it, and the decoder checks the
	 * decoded data against it (BadDigest).
	 */
	const char *trailer;
	/* x-amz-decoded-content-length, or -1 when not declared. */
	int64_t decoded_length;
	s3_chunked_data_fn data;
	void *userdata;
};

struct s3_chunked;

/*
 * A decoder for one body. -EINVAL when the config does not fit its mode
 * (missing key/date/scope/seed for a signed mode, a trailer name that is no
 * checksum, a trailer declared for SIGV4_PAYLOAD_STREAMING), -ENOMEM.
 */
int s3_chunked_new(const struct s3_chunked_config *cfg, struct s3_chunked **ret,
		   struct sealvm_err *err);
void s3_chunked_free(struct s3_chunked *d);

/*
 * Feeds the next @len bytes of the encoded body (any split points). Decoded
 * data reaches the callback as it arrives, before the chunk's signature is
 * checked at its end: treat all of it as tentative until s3_chunked_finish
 * returns 0. After the first error every call returns it again. Errors
 * (-EBADMSG unless said): InvalidRequest (framing), InvalidChunkSizeError,
 * SignatureDoesNotMatch (-EPERM), MalformedTrailerError, BadDigest,
 * IncompleteBody (more data than declared), or the callback's error.
 */
int s3_chunked_feed(struct s3_chunked *d, const void *buf, size_t len, struct sealvm_err *err);

/*
 * Ends the body: 0 when the final chunk, trailer and closing line were all
 * received and verified and the decoded length matches; otherwise
 * -EBADMSG IncompleteBody (or the earlier error).
 */
int s3_chunked_finish(struct s3_chunked *d, struct sealvm_err *err) _warn_unused_result_;

/* Decoded bytes so far. */
uint64_t s3_chunked_decoded(const struct s3_chunked *d);

/*
 * After a successful finish in a trailer mode: the trailer's checksum
 * algorithm and its base64 value (borrowed, valid until free). -ENOENT when
 * the body had no trailer.
 */
int s3_chunked_trailer(const struct s3_chunked *d, enum s3_checksum_alg *ret_alg,
		       const char **ret_b64);

/* ---- query string ------------------------------------------------------------------- */

#define S3_QUERY_MAX 16384	/* characters of a raw query */
#define S3_QUERY_PARAMS_MAX 128 /* parameters */

struct s3_query_param {
	char *name;	/* decoded, NUL-free */
	char *value;	/* decoded, NUL-free; "" when absent */
	bool has_value; /* "a=" and "a=x" true; "a" false */
};

struct s3_query {
	struct s3_query_param *params; /* in the order sent */
	size_t n;
};

/*
 * Parses a raw query string (after '?', NULL or "" for none): '&'-separated
 * (empty segments skipped), split at the first '=', percent-decoded strictly
 * (%XX with two hex digits; '+' is a space). Refused: a bad escape or a
 * decoded NUL (-EINVAL InvalidURI), more than S3_QUERY_MAX characters or
 * S3_QUERY_PARAMS_MAX parameters (-E2BIG InvalidArgument). Duplicates are
 * kept; s3_query_get refuses to choose between them. -ENOMEM.
 */
int s3_query_parse(const char *raw, struct s3_query *ret, struct sealvm_err *err);
void s3_query_done(struct s3_query *q);

/*
 * The value of parameter @name (exact, case-sensitive): 0 and *@ret_value
 * (borrowed) when it appears once; -ENOENT when absent; -ENOTUNIQ reason
 * InvalidArgument when it appears more than once.
 */
int s3_query_get(const struct s3_query *q, const char *name, const char **ret_value,
		 struct sealvm_err *err);
/* True when @name appears (any number of times). */
bool s3_query_has(const struct s3_query *q, const char *name);

/* ---- CompleteMultipartUpload -------------------------------------------------------- */

#define S3_MULTIPART_XML_MAX (8u << 20) /* bytes of the request body */
#define S3_MULTIPART_PARTS_MAX 10000
#define S3_ETAG_MAX 128 /* characters, quotes removed */

struct s3_part {
	unsigned number;	    /* 1..10000, strictly ascending in the list */
	char etag[S3_ETAG_MAX + 1]; /* without the surrounding quotes */
	char checksum_crc32[16];    /* base64 as sent, "" when absent */
	char checksum_crc32c[16];
	char checksum_sha1[32];
	char checksum_sha256[48];
};

struct s3_part_list {
	struct s3_part *parts;
	size_t n;
};

/*
 * Parses a CompleteMultipartUpload body: an optional UTF-8 BOM and XML declaration,
 * whitespace and comments between elements, the root
 * <CompleteMultipartUpload> (optionally with the S3 xmlns) holding 1..10000
 * <Part> elements, each with exactly one <PartNumber> (decimal 1..10000) and
 * one <ETag>, and at most one each of <ChecksumCRC32>, <ChecksumCRC32C>,
 * <ChecksumSHA1>, <ChecksumSHA256> (canonical base64 of the right length),
 * in any order. Text may use the five predefined entities and character
 * references. Anything else (DOCTYPE, CDATA, processing instructions after
 * the declaration, unknown elements or attributes, text outside leaves) is
 * refused. Errors: -EINVAL MalformedXML; -EINVAL InvalidPartOrder (part
 * numbers not strictly ascending); -E2BIG MaxMessageLengthExceeded (body
 * over S3_MULTIPART_XML_MAX); -ENOMEM.
 */
int s3_multipart_parse(const void *body, size_t len, struct s3_part_list *ret,
		       struct sealvm_err *err);
void s3_part_list_done(struct s3_part_list *l);

/* ---- XML writer --------------------------------------------------------------------- */

#define S3_XML_NS "http://s3.amazonaws.com/doc/2006-03-01/"
#define S3_XML_DEPTH_MAX 16

struct s3_xml;

/*
 * A writer that produces at most @max bytes (a response body): starts with
 * the XML declaration. The first error (over @max, bad UTF-8 in text, a
 * wrong close) sticks and is returned by s3_xml_finish.
 */
int s3_xml_new(size_t max, struct s3_xml **ret);
void s3_xml_free(struct s3_xml *w);
/* <name> (the first element gets xmlns=S3_XML_NS when @with_ns). */
void s3_xml_open(struct s3_xml *w, const char *name, bool with_ns);
/* </name> of the innermost open element. */
void s3_xml_close(struct s3_xml *w);
/*
 * <name>text</name>, the text escaped: & < > " ' as entities, TAB CR LF and
 * the other C0 controls as character references (&#x1; as S3 does). @text
 * must be valid UTF-8 (else -EILSEQ).
 */
void s3_xml_elem(struct s3_xml *w, const char *name, const char *text);
/* <name>formatted</name>, escaped like s3_xml_elem. */
void s3_xml_elemf(struct s3_xml *w, const char *name, const char *fmt, ...) _printf_(3, 4);
/*
 * Closes what is open and hands out the document (malloc'ed, NUL-terminated)
 * and its length. Returns the sticky error instead (-E2BIG, -EILSEQ,
 * -EINVAL, -ENOMEM), with nothing handed out.
 */
int s3_xml_finish(struct s3_xml *w, char **ret, size_t *ret_len);

/*
 * A whole S3 error document: <Error><Code/><Message/>[<Resource/>]
 * [<RequestId/>]</Error>. -EILSEQ for text that is not UTF-8, -ENOMEM.
 */
int s3_xml_error(const char *code, const char *message, const char *resource,
		 const char *request_id, char **ret, size_t *ret_len);

#endif
