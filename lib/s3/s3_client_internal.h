/* SPDX-License-Identifier: Apache-2.0 */
/*
 * s3_client_internal.h — what the S3 client's files share (s3_client.c:
 * requests and single operations; s3_client_parse.c: URIs, the endpoints
 * table, the small XML reader for answers, S3 error bodies;
 * s3_client_upload.c: multipart upload and its resume state). Unit tests
 * include it to pin request building, signing and the parsers.
 */
#ifndef SEALVM_S3_CLIENT_INTERNAL_H
#define SEALVM_S3_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sealvm/s3client.h"
#include "sealvm/sigv4.h"

#define S3C_HDRS_MAX (S3C_META_MAX + 16)
#define S3C_CHUNK (1u << 20) /* aws-chunked: decoded bytes per chunk */

struct s3c {
	char *endpoint; /* scheme://host[:port], no trailing '/' */
	char *region;
	char *access_key_id;
	struct sealvm_secret *secret;
	struct sealvm_secret *token;
	char *instance_id;
	unsigned retries;
	unsigned backoff_ms;
	long connect_timeout_s;
	long low_speed_timeout_s;
	uint64_t max_send_rate;
};

/* One request to send. */
struct s3c_req {
	const char *method;
	const char *bucket;			/* NULL: the service (GET /) */
	const char *key;			/* NULL: the bucket itself */
	const char *query;			/* encoded, without '?'; NULL: none */
	struct sigv4_header hdrs[S3C_HDRS_MAX]; /* extra headers, all signed */
	size_t n_hdrs;
	/* body: in memory, or @len bytes of fd from @fd_off (fd >= 0) */
	const void *body;
	size_t body_len;
	int fd;
	uint64_t fd_off;
	uint64_t fd_len;
	enum s3c_payload payload;
	char sha256_hex[65]; /* S3C_PAYLOAD_SHA256: the body's */
	/* answer body: to out_fd when 2xx (out_fd >= 0), else kept in memory */
	int out_fd;
	bool want_sha256; /* hash what goes to out_fd */
	/*
	 * A GET asked for bytes [range_first, range_last] (has_range; range_last
	 * UINT64_MAX: to the end). When out_fd can be sought, a retry after part of
	 * a 2xx answer went to it asks for the rest (Range from where it stopped,
	 * If-Match the first answer's ETag) instead of starting over.
	 */
	bool has_range;
	uint64_t range_first, range_last;
	s3c_progress_fn progress;
	void *userdata;
	uint64_t progress_base, progress_total;
};

static inline void s3c_req_init(struct s3c_req *r, const char *method, const char *bucket,
				const char *key)
{
	*r = (struct s3c_req){
		.method = method, .bucket = bucket, .key = key, .fd = -1, .out_fd = -1};
}
/*
 * Whether @r's body goes aws-chunked: a file body in S3C_PAYLOAD_TRAILER mode, signed with
 * SigV4 or sent with a bearer token (STREAMING-UNSIGNED-PAYLOAD-TRAILER either way: the
 * CRC32C is computed while the frames are built and sent in the trailer, one pass).
 */
static inline bool s3c_req_chunked(const struct s3c_req *r)
{
	return r->fd >= 0 && r->payload == S3C_PAYLOAD_TRAILER;
}

/* Adds a header (borrowed strings). -E2BIG past S3C_HDRS_MAX. */
int s3c_req_header(struct s3c_req *r, const char *name, const char *value);

struct s3c_resp {
	long status;
	char *body; /* NUL-terminated (error answers, XML; not what went to out_fd) */
	size_t len;
	char request_id[129];
	struct s3c_hdr {
		char *name, *value;
	} * hdrs; /* the answer's headers (of the final answer) */
	size_t n_hdrs;
	uint64_t written; /* bytes that went to out_fd (with those of earlier attempts kept) */
	uint64_t resumed; /* of which kept from earlier attempts: the answer is the rest (206) */
	unsigned char sha256[32];
};
void s3c_resp_done(struct s3c_resp *r);
/* The first answer header named @name (case-insensitive), or NULL. */
const char *s3c_resp_header(const struct s3c_resp *r, const char *name);

/*
 * The URL of a request: endpoint "/" bucket "/" key (every byte outside
 * RFC 3986's unreserved set and '/' percent-encoded) "?" query. New string.
 */
int s3c_url(const struct s3c *c, const char *bucket, const char *key, const char *query,
	    char **ret);

/*
 * The header lines to send for @r at @now: "Name: value" strings in a new
 * NULL-terminated array (free with s3c_lines_free, which wipes), and the URL
 * to send (normalised when signed). The authorization line is built in
 * locked memory and copied into the array, which is wiped before it is freed.
 */
int s3c_build(const struct s3c *c, const struct s3c_req *r, time_t now, char ***ret_lines,
	      char **ret_url, struct sealvm_err *err);
void s3c_lines_free(char **lines);

/*
 * Sends @r (retrying on connection errors and 5xx with backoff) and fills
 * @resp. Returns 0 when a 2xx answer arrived; otherwise the answer's error
 * as the sealvm_err (s3c_error_from) and its errno, with only the status
 * (0: no answer) and request id left in @resp. Release @resp with
 * s3c_resp_done either way.
 */
int s3c_perform(struct s3c *c, const struct s3c_req *r, struct s3c_resp *resp,
		struct sealvm_err *err);

/*
 * PUT of @size bytes of @fd at @off: a whole object (@query NULL: with @o's content type and
 * metadata) or one part (@query "partNumber=N&uploadId=ID"). Progress is reported as
 * @progress_base + bytes sent, of @progress_total. The ETag (no quotes) to @ret_etag (80).
 */
int s3c_put_part_internal(struct s3c *c, const char *bucket, const char *key, const char *query,
			  int fd, uint64_t off, uint64_t size, const struct s3c_put_opts *o,
			  uint64_t progress_base, uint64_t progress_total, char *ret_etag,
			  struct sealvm_err *err);

/*
 * For tests: the aws-chunked body (CRC32C trailer) the client sends for @size bytes of @fd,
 * framed by the same code, as a new buffer.
 */
int s3c_frame_for_test(int fd, uint64_t size, unsigned char **ret, size_t *ret_len);

/* aws-chunked: the encoded length of @n decoded bytes with a CRC32C trailer. */
uint64_t s3c_chunked_length(uint64_t n);

/*
 * The error of a non-2xx answer: reason = <Code>, message = <Message> and the
 * request id; a body-less answer (HEAD) gets a code from the status and
 * @what404 for 404. Returns the errno for the status/code (-ENOENT,
 * -EACCES, -EPERM, -EEXIST, -ENOTEMPTY, -ERANGE, -EBADMSG, -EINVAL, -EIO).
 */
int s3c_error_from(long status, const char *body, size_t len, const char *request_id,
		   const char *what404, struct sealvm_err *err);

/* ---- the small XML reader (answers from an S3 server) ---------------------------------- */

/*
 * Finds the next element <@name> (or <@name .../> or <@name/>) in [*@p, @end),
 * and gives its inner text's bounds; *@p moves past its end. 1 found, 0 not.
 */
int s3c_xml_find(const char **p, const char *end, const char *name, const char **ret_in,
		 const char **ret_in_end);
/* The decoded text of the first <@name> in [@p, @end) as a new string; NULL if none. */
char *s3c_xml_text(const char *p, const char *end, const char *name);
/* Decodes XML text (the five entities and character references). New string or NULL. */
char *s3c_xml_decode(const char *p, size_t n);

/* ---- resume state ------------------------------------------------------------------------ */

struct s3c_state {
	char *endpoint, *bucket, *key;
	char upload_id[256];
	uint64_t size, part_size;
	int64_t mtime_ns;
	unsigned n_parts;
	char (*etags)[80]; /* n_parts entries, "" for parts not done (index = number - 1) */
};
void s3c_state_done(struct s3c_state *s);
/* Reads a state file. -ENOENT none; -EINVAL RESUME_STATE_BAD when it is not ours. */
int s3c_state_load(const char *path, struct s3c_state *ret, struct sealvm_err *err);
/* Writes it atomically (tmp + rename), mode 0600. */
int s3c_state_save(const char *path, const struct s3c_state *s, struct sealvm_err *err);

#endif
