// SPDX-License-Identifier: Apache-2.0
/*
 * cos_get.c — GetObject and HeadObject: the object's headers, a single
 * Range (bytes=a-b, a-, -n → 206 with Content-Range; unsatisfiable → 416
 * InvalidRange; several ranges → ignored, 200 with everything, as S3 does),
 * and the data: a plain single-file object goes out with sendfile
 * (libmicrohttpd's fd response, on a duplicate of the reader's fd, so the
 * snapshot survives an overwrite or delete); any other object through a
 * callback that reads large blocks with cos_reader_pread, decrypting only
 * what it returns.
 *
 * The read event is written before the response goes (fail closed).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "cos_front.h"

/* ---- the callback response (encrypted or multi-file objects) --------------------------------- */

struct stream {
	struct cos_reader *rd;
	uint64_t start; /* object offset of response byte 0 */
	uint64_t len;
	unsigned char *buf;
	uint64_t buf_pos; /* response offset of buf[0] */
	size_t buf_len;
	char id[COS_REQUEST_ID_LEN + 1];
};

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct stream *s = cls;
	if (pos >= s->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (pos < s->buf_pos || pos >= s->buf_pos + s->buf_len) {
		size_t want = (size_t)MIN((uint64_t)COS_READ_BLOCK, s->len - pos);
		struct sealvm_err err = SEALVM_ERR_INIT;
		ssize_t n = cos_reader_pread(s->rd, s->buf, want, s->start + pos, &err);
		if (n <= 0) {
			log_error("s3: request %s: reading the object failed at offset %llu: %s",
				  s->id, (unsigned long long)(s->start + pos),
				  n < 0 ? err.message : "it ended early");
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		s->buf_pos = pos;
		s->buf_len = (size_t)n;
	}
	size_t off = (size_t)(pos - s->buf_pos);
	size_t n = MIN(max, s->buf_len - off);
	memcpy(out, s->buf + off, n);
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	if (!s)
		return;
	cos_reader_close(s->rd);
	free(s->buf);
	free(s);
}

/* HEAD: the length is the object's (or the range's), and no body is read. */
static ssize_t head_read(void *cls, uint64_t pos, char *out, size_t max)
{
	return MHD_CONTENT_READER_END_WITH_ERROR;
}

/* ---- headers --------------------------------------------------------------------------------- */

static void object_headers(struct cos_req *req, const struct cos_object *o, bool full,
			   struct cos_resp *resp)
{
	char d[40];
	cos_http_date(o->mtime_ms, d);
	cos_resp_header(resp, "ETag", "\"%s\"", o->etag);
	cos_resp_header(resp, "Last-Modified", "%s", d);
	cos_resp_header(resp, "Content-Type", "%s",
			o->content_type[0] ? o->content_type : "binary/octet-stream");
	cos_resp_header(resp, "Accept-Ranges", "bytes");
	if (o->meta) {
		const char *k;
		json_t *v;
		json_object_foreach(o->meta, k, v)
		{
			char name[300];
			if (json_is_string(v) && strlen(k) < 256) {
				snprintf(name, sizeof(name), "x-amz-meta-%s", k);
				cos_resp_header(resp, name, "%s", json_string_value(v));
			}
		}
	}
	const char *mode = cos_req_header(req, "x-amz-checksum-mode");
	if (full && mode && strcasecmp(mode, "ENABLED") == 0 &&
	    o->checksum.algo != S3_CHECKSUM_NONE && o->checksum.value[0])
		cos_resp_header(resp, s3_checksum_header(o->checksum.algo), "%s",
				o->checksum.value);
	if (o->parts)
		cos_resp_header(resp, "x-amz-mp-parts-count", "%u", o->parts);
	if (o->sse || req->bucket.sse) {
		cos_resp_header(resp, "ibm-sse-kp-enabled", "True");
		cos_resp_header(resp, "ibm-sse-kp-customer-root-key-crn", "%s",
				req->bucket.sse_key_crn);
	}
}

/* Conditional requests: 0 to go on, or the status to answer with (304, 412). */
static int preconditions(struct cos_req *req, const struct cos_object *o)
{
	char quoted[64];
	snprintf(quoted, sizeof(quoted), "\"%s\"", o->etag);
	const char *im = cos_req_header(req, "if-match");
	if (im && strcmp(im, "*") != 0 && strcmp(im, quoted) != 0 && strcmp(im, o->etag) != 0)
		return 412;
	const char *inm = cos_req_header(req, "if-none-match");
	if (inm && (strcmp(inm, "*") == 0 || strcmp(inm, quoted) == 0 || strcmp(inm, o->etag) == 0))
		return 304;
	return 0;
}

void cos_get(struct cos_req *req, struct cos_resp *resp)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_object o = {0};
	struct cos_reader *rd = NULL;
	bool head = req->op == COS_OP_OBJECT_HEAD;
	int r;

	r = cos_reader_open(req->c, &req->bucket, req->key, &o, &rd, &err);
	if (r < 0) {
		cos_fail_resp(req, &err, resp);
		return;
	}
	int pre = preconditions(req, &o);
	if (pre == 412) {
		sealvm_err_set(&err, -EINVAL, "PreconditionFailed",
			       "If-Match does not match the object's ETag");
		cos_reader_close(rd);
		cos_object_done(&o);
		cos_fail_resp(req, &err, resp);
		return;
	}
	struct cos_range rg;
	if (cos_parse_range(cos_req_header(req, "range"), o.size, &rg) < 0) {
		sealvm_err_set(&err, -ERANGE, "InvalidRange",
			       "the requested range is not satisfiable: the object has %llu "
			       "bytes",
			       (unsigned long long)o.size);
		cos_reader_close(rd);
		cos_object_done(&o);
		cos_fail_resp(req, &err, resp);
		cos_resp_header(resp, "Content-Range", "bytes */%llu", (unsigned long long)o.size);
		return;
	}
	uint64_t first = rg.partial ? rg.first : 0;
	uint64_t len = rg.partial ? rg.last - rg.first + 1 : o.size;

	object_headers(req, &o, !rg.partial, resp);
	if (pre == 304) {
		cos_reader_close(rd);
		cos_object_done(&o);
		resp->status = 304;
		cos_read_ok(req, resp);
		return;
	}
	resp->status = rg.partial ? 206 : 200;
	if (rg.partial)
		cos_resp_header(resp, "Content-Range", "bytes %llu-%llu/%llu",
				(unsigned long long)rg.first, (unsigned long long)rg.last,
				(unsigned long long)o.size);
	cos_object_done(&o);

	struct MHD_Response *m = NULL;
	if (head) {
		m = MHD_create_response_from_callback(len, 4096, head_read, NULL, NULL);
		cos_reader_close(rd);
		rd = NULL;
	} else if (len == 0) {
		m = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		cos_reader_close(rd);
		rd = NULL;
	} else {
		int fd = -1;
		off_t foff = 0;
		if (cos_reader_fd(rd, first, &fd, &foff) == 0) {
			int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
			if (dfd >= 0) {
				m = MHD_create_response_from_fd_at_offset64(len, dfd,
									    (uint64_t)foff);
				if (!m)
					close(dfd);
			}
			cos_reader_close(rd);
			rd = NULL;
		} else {
			struct stream *s = calloc(1, sizeof(*s));
			unsigned char *buf = malloc(COS_READ_BLOCK);
			if (s && buf) {
				s->rd = rd;
				s->start = first;
				s->len = len;
				s->buf = buf;
				snprintf(s->id, sizeof(s->id), "%s", req->id);
				/* libmicrohttpd's own block: up to 256 KiB per send */
				m = MHD_create_response_from_callback(len, 256 * 1024, stream_read,
								      s, stream_free);
				if (m)
					rd = NULL;
				else
					s->rd = NULL, stream_free(s);
			} else {
				free(s);
				free(buf);
			}
			cos_reader_close(rd);
			rd = NULL;
		}
	}
	if (!m) {
		sealvm_err_set(&err, -ENOMEM, "NO_MEMORY", "out of memory");
		cos_fail_resp(req, &err, resp);
		return;
	}
	resp->mhd = m;
	req->bytes_out = len;
	cos_read_ok(req, resp);
}
