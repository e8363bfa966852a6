// SPDX-License-Identifier: Apache-2.0
/*
 * s3_client.c — the S3 client's requests (see s3client.h): building and
 * signing them, sending them with libcurl (bodies streamed from an fd or
 * memory, answers streamed to an fd), retries, and the single operations
 * (buckets, PUT, GET, HEAD, DELETE, ListObjectsV2, presign).
 *
 * Signing is ours (sigv4_sign / sigv4_presign); curl is told to send the path
 * as given (CURLOPT_PATH_AS_IS) so that what goes out is what was signed.
 * What this file must never do: put the secret access key or a bearer token
 * anywhere but the one Authorization header (built in locked memory, and the
 * header list wiped before it is freed), or into a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sealvm/b64.h"
#include "sealvm/file.h"
#include "sealvm/log.h"
#include "sealvm/s3.h"
#include "sealvm/s3client.h"

#include "s3_client_internal.h"

#define ANSWER_MAX (16u << 20) /* an XML answer (a list page is ~1.5 MB at most) */
#define BACKOFF_CAP_MS 10000
#define TRAILER_NAME "x-amz-checksum-crc32c"

/* ---- client ---------------------------------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc;

static void global_init_once(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

int s3c_global_init(void)
{
	pthread_once(&global_once, global_init_once);
	return global_rc;
}

static bool region_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > SIGV4_REGION_MAX)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

void s3c_free(struct s3c *c)
{
	if (!c)
		return;
	free(c->endpoint);
	free(c->region);
	free(c->access_key_id);
	free(c->instance_id);
	sealvm_secret_free(c->secret);
	sealvm_secret_free(c->token);
	free(c);
}

int s3c_new(const struct s3c_config *cfg, struct s3c **ret, struct sealvm_err *err)
{
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	const char *host;
	size_t n;

	if (!cfg->endpoint || (strncmp(cfg->endpoint, "http://", 7) != 0 &&
			       strncmp(cfg->endpoint, "https://", 8) != 0))
		return sealvm_err_set(err, -EINVAL, "S3C_CONFIG",
				      "the S3 endpoint '%s' is not an http:// or https:// URL",
				      cfg->endpoint ? cfg->endpoint : "");
	host = strstr(cfg->endpoint, "://") + 3;
	n = strlen(cfg->endpoint);
	while (n > (size_t)(host - cfg->endpoint) && cfg->endpoint[n - 1] == '/')
		n--;
	if ((size_t)(host - cfg->endpoint) == n ||
	    memchr(host, '/', n - (size_t)(host - cfg->endpoint)) ||
	    memchr(host, '?', n - (size_t)(host - cfg->endpoint)) ||
	    memchr(host, '@', n - (size_t)(host - cfg->endpoint)))
		return sealvm_err_set(
			err, -EINVAL, "S3C_CONFIG",
			"the S3 endpoint '%s' must be scheme://host[:port], without a "
			"path, query or user",
			cfg->endpoint);
	if (!region_ok(cfg->region))
		return sealvm_err_set(err, -EINVAL, "S3C_CONFIG",
				      "the region '%s' is not a region name ([a-z0-9-], 1-63)",
				      cfg->region ? cfg->region : "");
	if (!!cfg->access_key_id != !!cfg->secret_access_key)
		return sealvm_err_set(err, -EINVAL, "S3C_CONFIG",
				      "HMAC credentials need both an access key id and a secret");
	if (cfg->access_key_id && cfg->bearer_token)
		return sealvm_err_set(err, -EINVAL, "S3C_CONFIG",
				      "give HMAC credentials or a bearer token, not both");
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->endpoint = strndup(cfg->endpoint, n);
	c->region = strdup(cfg->region);
	if (!c->endpoint || !c->region)
		return -ENOMEM;
	if (cfg->access_key_id) {
		if (!(c->access_key_id = strdup(cfg->access_key_id)) ||
		    sealvm_secret_from(cfg->secret_access_key->data, cfg->secret_access_key->len,
				       &c->secret) < 0)
			return -ENOMEM;
	}
	if (cfg->bearer_token &&
	    sealvm_secret_from(cfg->bearer_token->data, cfg->bearer_token->len, &c->token) < 0)
		return -ENOMEM;
	if (cfg->instance_id && !(c->instance_id = strdup(cfg->instance_id)))
		return -ENOMEM;
	c->retries = cfg->retries ? cfg->retries : S3C_DEFAULT_RETRIES;
	c->backoff_ms = cfg->backoff_ms ? cfg->backoff_ms : 200;
	c->connect_timeout_s = cfg->connect_timeout_s ? cfg->connect_timeout_s : 10;
	c->low_speed_timeout_s = cfg->low_speed_timeout_s ? cfg->low_speed_timeout_s : 60;
	c->max_send_rate = cfg->max_send_rate;
	*ret = TAKE_PTR(c);
	return 0;
}

/* ---- building requests ----------------------------------------------------------------- */

int s3c_req_header(struct s3c_req *r, const char *name, const char *value)
{
	if (r->n_hdrs >= S3C_HDRS_MAX)
		return -E2BIG;
	r->hdrs[r->n_hdrs].name = name;
	r->hdrs[r->n_hdrs++].value = value;
	return 0;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

/* Appends @s percent-encoded (keeping '/' when @keep_slash) to @out at *@o. */
static void encode_into(char *out, size_t *o, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (unreserved(ch) || (keep_slash && ch == '/')) {
			out[(*o)++] = (char)ch;
		} else {
			out[(*o)++] = '%';
			out[(*o)++] = hex[ch >> 4];
			out[(*o)++] = hex[ch & 15];
		}
	}
}

int s3c_url(const struct s3c *c, const char *bucket, const char *key, const char *query, char **ret)
{
	size_t cap = strlen(c->endpoint) + 3 * (bucket ? strlen(bucket) : 0) +
		     3 * (key ? strlen(key) : 0) + (query ? strlen(query) : 0) + 8;
	char *u = malloc(cap);
	size_t o;

	if (!u)
		return -ENOMEM;
	o = (size_t)sprintf(u, "%s/", c->endpoint);
	if (bucket) {
		encode_into(u, &o, bucket, false);
		if (key) {
			u[o++] = '/';
			encode_into(u, &o, key, true);
		}
	}
	if (query && *query) {
		u[o++] = '?';
		memcpy(u + o, query, strlen(query));
		o += strlen(query);
	}
	u[o] = 0;
	*ret = u;
	return 0;
}

/* "name=escaped(value)" appended to *q with '&' between; value NULL: "name". */
static int query_add(char **q, const char *name, const char *value)
{
	size_t old = *q ? strlen(*q) : 0;
	size_t cap = old + strlen(name) + (value ? 3 * strlen(value) : 0) + 3;
	char *n = realloc(*q, cap);
	size_t o = old;

	if (!n)
		return -ENOMEM;
	*q = n;
	if (o)
		n[o++] = '&';
	encode_into(n, &o, name, false);
	if (value) {
		n[o++] = '=';
		encode_into(n, &o, value, false);
	}
	n[o] = 0;
	return 0;
}

uint64_t s3c_chunked_length(uint64_t n)
{
	char tmp[24];
	uint64_t full = n / S3C_CHUNK, rem = n % S3C_CHUNK, len;

	len = full * ((uint64_t)snprintf(tmp, sizeof(tmp), "%x", S3C_CHUNK) + 4 + S3C_CHUNK);
	if (rem)
		len += (uint64_t)snprintf(tmp, sizeof(tmp), "%" PRIx64, rem) + 4 + rem;
	/* "0\r\n" TRAILER ":" base64(4 bytes) "\r\n" "\r\n" */
	return len + 3 + strlen(TRAILER_NAME) + 1 + 8 + 2 + 2;
}

void s3c_lines_free(char **lines)
{
	if (!lines)
		return;
	for (char **l = lines; *l; l++) {
		explicit_bzero(*l, strlen(*l));
		free(*l);
	}
	free(lines);
}

static void s3c_lines_freep(char ***l)
{
	s3c_lines_free(*l);
}

static int line_add(char **lines, size_t *n, const char *name, const char *value)
{
	if (asprintf(&lines[*n], "%s: %s", name, value) < 0) {
		lines[*n] = NULL;
		return -ENOMEM;
	}
	(*n)++;
	return 0;
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[32];
	static const char hex[] = "0123456789abcdef";

	EVP_Digest(p, n, md, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = 0;
}

int s3c_build(const struct s3c *c, const struct s3c_req *r, time_t now, char ***ret_lines,
	      char **ret_url, struct sealvm_err *err)
{
	struct sigv4_header h[S3C_HDRS_MAX + 4];
	size_t nh = 0, nl = 0;
	_cleanup_(s3c_lines_freep) char **lines = NULL;
	_cleanup_free_ char *url = NULL;
	char decoded[24], mem_sha[65];
	const char *payload;
	bool has_body = r->body || r->fd >= 0;
	int rc;

	if ((rc = s3c_url(c, r->bucket, r->key, r->query, &url)) < 0)
		return rc;
	for (size_t i = 0; i < r->n_hdrs; i++)
		h[nh++] = r->hdrs[i];
	if (s3c_req_chunked(r)) {
		/* SigV4 or bearer alike: the CRC32C is computed while framing, and trails */
		snprintf(decoded, sizeof(decoded), "%" PRIu64, r->fd_len);
		h[nh++] = (struct sigv4_header){"content-encoding", "aws-chunked"};
		h[nh++] = (struct sigv4_header){"x-amz-decoded-content-length", decoded};
		h[nh++] = (struct sigv4_header){"x-amz-trailer", TRAILER_NAME};
		payload = SIGV4_STREAMING_UNSIGNED_TRAILER;
	} else if (r->fd >= 0 && r->payload == S3C_PAYLOAD_SHA256) {
		payload = r->sha256_hex;
	} else if (r->fd >= 0) {
		payload = SIGV4_UNSIGNED_PAYLOAD;
	} else if (r->body) {
		sha256_hex(r->body, r->body_len, mem_sha);
		payload = mem_sha;
	} else {
		payload = SIGV4_EMPTY_SHA256;
	}
	(void)has_body;
	lines = calloc(nh + 6, sizeof(char *));
	if (!lines)
		return -ENOMEM;
	if (c->secret) {
		struct sigv4_credentials cred = {c->access_key_id, c->secret, c->region, NULL};
		struct sigv4_signed s = {0};

		rc = sigv4_sign(r->method, url, h, nh, payload, &cred, now, &s, err);
		if (rc < 0)
			return rc;
		free(url);
		url = TAKE_PTR(s.url);
		if ((rc = line_add(lines, &nl, "x-amz-date", s.amz_date)) < 0 ||
		    (rc = line_add(lines, &nl, "x-amz-content-sha256", payload)) < 0 ||
		    (rc = line_add(lines, &nl, "Authorization", s.authorization)) < 0) {
			sigv4_signed_done(&s);
			return rc;
		}
		sigv4_signed_done(&s);
	} else {
		if ((rc = line_add(lines, &nl, "x-amz-content-sha256", payload)) < 0)
			return rc;
		if (c->token) {
			static const char pre[] = "Authorization: Bearer ";
			_cleanup_secret_ struct sealvm_secret *a = NULL;
			if (sealvm_secret_new(sizeof(pre) + c->token->len, &a) < 0)
				return -ENOMEM;
			memcpy(a->data, pre, sizeof(pre) - 1);
			memcpy(a->data + sizeof(pre) - 1, c->token->data, c->token->len);
			a->len = sizeof(pre) - 1 + c->token->len;
			a->data[a->len] = 0;
			if (!(lines[nl] = strdup((char *)a->data)))
				return -ENOMEM;
			nl++;
		}
		if (c->instance_id &&
		    (rc = line_add(lines, &nl, "ibm-service-instance-id", c->instance_id)) < 0)
			return rc;
	}
	for (size_t i = 0; i < nh; i++)
		if ((rc = line_add(lines, &nl, h[i].name, h[i].value)) < 0)
			return rc;
	*ret_lines = TAKE_PTR(lines);
	*ret_url = TAKE_PTR(url);
	return 0;
}

/* ---- errors ---------------------------------------------------------------------------- */

static const struct {
	const char *code;
	int err;
} code_errno[] = {
	{"NoSuchKey", -ENOENT},
	{"NoSuchBucket", -ENOENT},
	{"NoSuchUpload", -ENOENT},
	{"AccessDenied", -EACCES},
	{"KMSAccessDenied", -EACCES},
	{"InvalidAccessKeyId", -EPERM},
	{"SignatureDoesNotMatch", -EPERM},
	{"RequestTimeTooSkewed", -EPERM},
	{"BucketAlreadyExists", -EEXIST},
	{"BucketAlreadyOwnedByYou", -EEXIST},
	{"BucketNotEmpty", -ENOTEMPTY},
	{"InvalidRange", -ERANGE},
	{"BadDigest", -EBADMSG},
	{"InvalidDigest", -EBADMSG},
	{"XAmzContentSHA256Mismatch", -EBADMSG},
	{"KMSKeyDisabled", -EKEYREVOKED},
	{"EntityTooLarge", -EFBIG},
};

static const char *status_code(long status, const char *what404)
{
	switch (status) {
	case 301:
	case 307:
		return "PermanentRedirect";
	case 400:
		return "BadRequest";
	case 401:
	case 403:
		return "AccessDenied";
	case 404:
		return what404 ? what404 : "NotFound";
	case 405:
		return "MethodNotAllowed";
	case 409:
		return "Conflict";
	case 412:
		return "PreconditionFailed";
	case 416:
		return "InvalidRange";
	case 429:
		return "SlowDown";
	case 503:
		return "ServiceUnavailable";
	default:
		return status >= 500 ? "InternalError" : "HTTP_ERROR";
	}
}

int s3c_error_from(long status, const char *body, size_t len, const char *request_id,
		   const char *what404, struct sealvm_err *err)
{
	_cleanup_free_ char *code = NULL, *msg = NULL, *rid = NULL;
	const char *cd;
	int e;

	if (body && len) {
		const char *p = body, *in, *ie;
		if (s3c_xml_find(&p, body + len, "Error", &in, &ie)) {
			code = s3c_xml_text(in, ie, "Code");
			msg = s3c_xml_text(in, ie, "Message");
			rid = s3c_xml_text(in, ie, "RequestId");
		}
	}
	cd = code && *code && strlen(code) < SEALVM_ERR_REASON_MAX ? code
								   : status_code(status, what404);
	e = status >= 500 ? -EIO : status == 404 ? -ENOENT : status == 403 ? -EACCES : -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(code_errno); i++)
		if (!strcmp(cd, code_errno[i].code))
			e = code_errno[i].err;
	if (!rid && request_id && *request_id)
		rid = strdup(request_id);
	if (!msg || !*msg) {
		free(msg);
		msg = strdup(!strcmp(cd, "NoSuchKey")	   ? "the object does not exist"
			     : !strcmp(cd, "NoSuchBucket") ? "the bucket does not exist"
			     : !strcmp(cd, "AccessDenied") ? "access denied"
							   : "the server gave no message");
	}
	return sealvm_err_set(err, e, cd, "%s (HTTP %ld, request id %s)",
			      msg && *msg ? msg : "the server gave no message", status,
			      rid && *rid ? rid : "none");
}

/* ---- sending --------------------------------------------------------------------------- */

void s3c_resp_done(struct s3c_resp *r)
{
	free(r->body);
	for (size_t i = 0; i < r->n_hdrs; i++) {
		free(r->hdrs[i].name);
		free(r->hdrs[i].value);
	}
	free(r->hdrs);
	memset(r, 0, sizeof(*r));
}

const char *s3c_resp_header(const struct s3c_resp *r, const char *name)
{
	for (size_t i = 0; i < r->n_hdrs; i++)
		if (!strcasecmp(r->hdrs[i].name, name))
			return r->hdrs[i].value;
	return NULL;
}

/* One attempt's state: the body source and the answer sink. */
struct xfer {
	const struct s3c_req *r;
	struct s3c_resp *resp;
	CURL *curl;
	/* body */
	bool chunked;	     /* aws-chunked framing */
	uint64_t sent;	     /* decoded body bytes handed to curl */
	uint64_t chunk_left; /* trailer mode: data bytes left in the current chunk */
	int phase;	     /* trailer mode: 0 header due, 1 data, 2 CRLF due, 3 final, 4 done */
	char pend[96];	     /* framing text not yet handed over */
	size_t pend_len, pend_off;
	uint32_t crc;
	/* answer */
	bool status_known, to_fd;
	int local_error; /* a negative errno of ours (write to out_fd failed) */
	EVP_MD_CTX *md;	 /* of what goes to out_fd, across resumed attempts */
	off_t out_start; /* where out_fd was when the first attempt began */
	uint64_t kept;	 /* out_fd bytes kept from earlier attempts: this one asked for the rest */
};

/* Drops what earlier attempts wrote to out_fd: the answer starts over. 0 or a negative errno. */
static int restart_output(struct xfer *x)
{
	if (x->out_start < 0 || lseek(x->r->out_fd, x->out_start, SEEK_SET) < 0 ||
	    ftruncate(x->r->out_fd, x->out_start) < 0)
		return -ESPIPE;
	if (x->md && EVP_DigestInit_ex(x->md, EVP_sha256(), NULL) != 1)
		return -ENOMEM;
	x->kept = 0;
	return 0;
}

static void progress_report(struct xfer *x, uint64_t done)
{
	if (x->r->progress)
		x->r->progress(x->r->progress_base + done, x->r->progress_total, x->r->userdata);
}

/* Reads up to @n body bytes of the fd source into @buf; 0 at the end; negative errno. */
static ssize_t body_read(struct xfer *x, char *buf, size_t n)
{
	const struct s3c_req *r = x->r;
	uint64_t left = r->fd_len - x->sent;
	ssize_t k;

	if (n > left)
		n = (size_t)left;
	if (n == 0)
		return 0;
	k = sealvm_pread_all(r->fd, buf, n, r->fd_off + x->sent);
	if (k < 0)
		return k;
	if ((size_t)k != n)
		return -EIO; /* the file shrank under us */
	x->sent += (uint64_t)k;
	return k;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct xfer *x = userdata;
	const struct s3c_req *r = x->r;
	size_t cap = size * nitems, o = 0;
	ssize_t k;

	if (r->body) {
		size_t left = r->body_len - (size_t)x->sent, n = MIN(cap, left);
		memcpy(buf, (const char *)r->body + x->sent, n);
		x->sent += n;
		return n;
	}
	if (!x->chunked) {
		k = body_read(x, buf, cap);
		if (k < 0) {
			x->local_error = (int)k;
			return CURL_READFUNC_ABORT;
		}
		progress_report(x, x->sent);
		return (size_t)k;
	}
	/* aws-chunked with a CRC32C trailer, framed as we go */
	while (o < cap && x->phase != 4) {
		if (x->pend_off < x->pend_len) {
			size_t n = MIN(cap - o, x->pend_len - x->pend_off);
			memcpy(buf + o, x->pend + x->pend_off, n);
			x->pend_off += n;
			o += n;
			continue;
		}
		switch (x->phase) {
		case 0: {
			uint64_t left = r->fd_len - x->sent;
			if (left == 0) {
				unsigned char be[4] = {x->crc >> 24, x->crc >> 16, x->crc >> 8,
						       x->crc};
				char b64[16];
				sealvm_b64_encode(be, 4, b64, false);
				x->pend_len =
					(size_t)snprintf(x->pend, sizeof(x->pend),
							 "0\r\n" TRAILER_NAME ":%s\r\n\r\n", b64);
				x->pend_off = 0;
				x->phase = 3;
				break;
			}
			x->chunk_left = MIN(left, (uint64_t)S3C_CHUNK);
			x->pend_len = (size_t)snprintf(x->pend, sizeof(x->pend), "%" PRIx64 "\r\n",
						       x->chunk_left);
			x->pend_off = 0;
			x->phase = 1;
			break;
		}
		case 1: {
			size_t want = (size_t)MIN((uint64_t)(cap - o), x->chunk_left);
			k = body_read(x, buf + o, want);
			if (k <= 0) {
				x->local_error = k < 0 ? (int)k : -EIO;
				return CURL_READFUNC_ABORT;
			}
			x->crc = s3_crc32c(x->crc, buf + o, (size_t)k);
			o += (size_t)k;
			x->chunk_left -= (uint64_t)k;
			if (x->chunk_left == 0) {
				memcpy(x->pend, "\r\n", 2);
				x->pend_len = 2;
				x->pend_off = 0;
				x->phase = 0;
			}
			break;
		}
		case 3:
			x->phase = 4;
			break;
		default:
			x->phase = 4;
			break;
		}
	}
	progress_report(x, x->sent);
	return o;
}

static int on_seek(void *userdata, curl_off_t offset, int origin)
{
	struct xfer *x = userdata;

	if (origin != SEEK_SET || offset != 0)
		return CURL_SEEKFUNC_CANTSEEK;
	x->sent = 0;
	x->phase = 0;
	x->pend_len = x->pend_off = 0;
	x->crc = 0;
	x->chunk_left = 0;
	return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *p, size_t size, size_t n, void *userdata)
{
	struct xfer *x = userdata;
	size_t len = size * n;
	struct s3c_resp *rs = x->resp;

	if (!x->status_known) {
		curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &rs->status);
		x->status_known = true;
		x->to_fd = x->r->out_fd >= 0 && rs->status >= 200 && rs->status <= 299;
		/* asked for the rest, got it all: a server that ignores Range starts over */
		if (x->to_fd && x->kept && rs->status != 206 &&
		    (x->local_error = restart_output(x)))
			return 0;
	}
	if (x->to_fd) {
		int r = sealvm_write_all(x->r->out_fd, p, len);
		if (r < 0) {
			x->local_error = r;
			return 0;
		}
		if (x->md)
			EVP_DigestUpdate(x->md, p, len);
		rs->written += len;
		progress_report(x, x->kept + rs->written);
		return len;
	}
	if (len > ANSWER_MAX - rs->len) {
		x->local_error = -E2BIG;
		return 0;
	}
	char *nb = realloc(rs->body, rs->len + len + 1);
	if (!nb) {
		x->local_error = -ENOMEM;
		return 0;
	}
	memcpy(nb + rs->len, p, len);
	rs->len += len;
	nb[rs->len] = 0;
	rs->body = nb;
	return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
	struct xfer *x = userdata;
	struct s3c_resp *rs = x->resp;
	size_t len = size * n, nl, vs, ve;
	const char *colon;

	if (len >= 5 && !strncmp(p, "HTTP/", 5)) {
		/* a new answer (after 100 Continue, or a retry): forget the earlier headers */
		for (size_t i = 0; i < rs->n_hdrs; i++) {
			free(rs->hdrs[i].name);
			free(rs->hdrs[i].value);
		}
		rs->n_hdrs = 0;
		return len;
	}
	colon = memchr(p, ':', len);
	if (!colon || rs->n_hdrs >= 256)
		return len;
	nl = (size_t)(colon - p);
	vs = nl + 1;
	while (vs < len && (p[vs] == ' ' || p[vs] == '\t'))
		vs++;
	ve = len;
	while (ve > vs && (p[ve - 1] == '\r' || p[ve - 1] == '\n' || p[ve - 1] == ' '))
		ve--;
	struct s3c_hdr *nh = realloc(rs->hdrs, (rs->n_hdrs + 1) * sizeof(*nh));
	if (!nh)
		return 0;
	rs->hdrs = nh;
	nh[rs->n_hdrs].name = strndup(p, nl);
	nh[rs->n_hdrs].value = strndup(p + vs, ve - vs);
	if (!nh[rs->n_hdrs].name || !nh[rs->n_hdrs].value) {
		free(nh[rs->n_hdrs].name);
		free(nh[rs->n_hdrs].value);
		return 0;
	}
	if ((!strcasecmp(nh[rs->n_hdrs].name, "x-amz-request-id") ||
	     (!rs->request_id[0] && !strcasecmp(nh[rs->n_hdrs].name, "x-request-id"))))
		snprintf(rs->request_id, sizeof(rs->request_id), "%s", nh[rs->n_hdrs].value);
	rs->n_hdrs++;
	return len;
}

static bool retryable_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

static bool retryable_status(long st)
{
	return st == 500 || st == 502 || st == 503 || st == 504 || st == 429;
}

static void backoff(const struct s3c *c, unsigned attempt)
{
	uint64_t ms = (uint64_t)c->backoff_ms << MIN(attempt, 10u);
	unsigned char rnd[2] = {0};

	if (ms > BACKOFF_CAP_MS)
		ms = BACKOFF_CAP_MS;
	(void)RAND_bytes(rnd, 2);
	ms = ms / 2 + (ms / 2) * (uint64_t)(rnd[0] | rnd[1] << 8) / 65535; /* jitter: 50-100% */
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * One attempt. 0 when an answer arrived (any status); else a negative errno
 * and @err. @md hashes what goes to out_fd; @kept bytes of it are there from
 * earlier attempts (@r then asks for the rest); @out_start is where it began.
 */
static int attempt_once(struct s3c *c, CURL *curl, const struct s3c_req *r, struct s3c_resp *resp,
			EVP_MD_CTX *md, uint64_t kept, off_t out_start, bool *ret_retry,
			struct sealvm_err *err)
{
	_cleanup_(s3c_lines_freep) char **lines = NULL;
	_cleanup_free_ char *url = NULL;
	struct curl_slist *hl = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	struct xfer x = {.r = r,
			 .resp = resp,
			 .curl = curl,
			 .chunked = s3c_req_chunked(r),
			 .md = md,
			 .out_start = out_start,
			 .kept = kept};
	bool upload = !strcmp(r->method, "PUT") || !strcmp(r->method, "POST");
	uint64_t body_len = 0;
	CURLcode cc;
	int rc;

	*ret_retry = false;
	if ((rc = s3c_build(c, r, time(NULL), &lines, &url, err)) < 0)
		return rc;
	for (char **l = lines; *l; l++) {
		struct curl_slist *n = curl_slist_append(hl, *l);
		if (!n) {
			curl_slist_free_all(hl);
			return -ENOMEM;
		}
		hl = n;
	}
	/* curl would add its own; S3 wants none of them */
	struct curl_slist *n2 = curl_slist_append(hl, "Content-Type:");
	if (n2)
		hl = n2;
	if (r->body)
		body_len = r->body_len;
	else if (r->fd >= 0)
		body_len = s3c_req_chunked(r) ? s3c_chunked_length(r->fd_len) : r->fd_len;

	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "sealvm-s3");
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, c->connect_timeout_s);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, c->low_speed_timeout_s);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
	curl_easy_setopt(curl, CURLOPT_EXPECT_100_TIMEOUT_MS, 1000L);
	if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	} else if (upload) {
		curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
		curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(curl, CURLOPT_READDATA, &x);
		curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(curl, CURLOPT_SEEKDATA, &x);
		curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_len);
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r->method);
		if (c->max_send_rate)
			curl_easy_setopt(curl, CURLOPT_MAX_SEND_SPEED_LARGE,
					 (curl_off_t)c->max_send_rate);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, r->method);
	}
	log_debug("s3: %s %s", r->method, url);
	cc = curl_easy_perform(curl);
	resp->resumed = x.kept;
	if (x.local_error) {
		rc = x.local_error;
		sealvm_err_set_errno(err, rc, "S3C_LOCAL_IO", "%s %s: cannot %s local data",
				     r->method, url, x.to_fd ? "write the" : "read or hold the");
		goto out;
	}
	if (cc != CURLE_OK) {
		*ret_retry = retryable_curl(cc);
		rc = sealvm_err_set(err, -EIO, "CONNECT_FAILED", "%s %s: %s", r->method, url,
				    errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
	/* an empty body never reaches on_write: the digest is that of nothing */
	if (x.md && r->out_fd >= 0 && resp->status >= 200 && resp->status <= 299)
		EVP_DigestFinal_ex(x.md, resp->sha256, NULL);
	*ret_retry = retryable_status(resp->status);
	rc = 0;
out:
	curl_slist_free_all(hl);
	return rc;
}

/*
 * @r as a resumed GET sends it: Range from the end of the @kept bytes, If-Match
 * @etag (the first answer's), in @rr (@range holds the header's value).
 */
static int resume_request(const struct s3c_req *r, uint64_t kept, const char *etag,
			  struct s3c_req *rr, char range[64])
{
	uint64_t first = (r->has_range ? r->range_first : 0) + kept;
	bool found = false;

	*rr = *r;
	if (r->has_range && r->range_last != UINT64_MAX)
		snprintf(range, 64, "bytes=%" PRIu64 "-%" PRIu64, first, r->range_last);
	else
		snprintf(range, 64, "bytes=%" PRIu64 "-", first);
	for (size_t i = 0; i < rr->n_hdrs; i++)
		if (!strcasecmp(rr->hdrs[i].name, "range")) {
			rr->hdrs[i].value = range;
			found = true;
		}
	if (!found && s3c_req_header(rr, "range", range) < 0)
		return -E2BIG;
	return s3c_req_header(rr, "if-match", etag);
}

int s3c_perform(struct s3c *c, const struct s3c_req *r, struct s3c_resp *resp,
		struct sealvm_err *err)
{
	CURL *curl;
	off_t start = -1;
	int rc = -EIO;
	EVP_MD_CTX *md = NULL;
	struct s3c_req rr;
	const struct s3c_req *send = r; /* @r, or @r asking for the rest */
	char range[64], etag[160] = "";
	uint64_t kept = 0; /* bytes of out_fd that earlier attempts wrote and we keep */

	if (s3c_global_init() < 0)
		return sealvm_err_set(err, -EIO, "CONNECT_FAILED", "cannot start libcurl");
	curl = curl_easy_init();
	if (!curl)
		return -ENOMEM;
	if (r->out_fd >= 0)
		start = lseek(r->out_fd, 0, SEEK_CUR);
	bool resumable = !strcmp(r->method, "GET") && start >= 0;
	memset(resp, 0, sizeof(*resp));
	if (r->want_sha256 && r->out_fd >= 0 &&
	    (!(md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)) {
		rc = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
		goto out;
	}
	for (unsigned attempt = 0;; attempt++) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		bool retry = false;

		s3c_resp_done(resp);
		rc = attempt_once(c, curl, send, resp, md, kept, start, &retry, &e);
		if (rc == 0 && resp->status >= 200 && resp->status <= 299) {
			resp->written += resp->resumed;
			break;
		}
		if (rc == 0 && resp->status == 412 && send == &rr) {
			rc = sealvm_err_set(&e, -ESTALE, "PreconditionFailed",
					    "the object changed while it was being downloaded (its "
					    "ETag is no longer %s): download it again",
					    etag);
		} else if (rc == 0) {
			rc = s3c_error_from(resp->status, resp->body, resp->len, resp->request_id,
					    NULL, &e);
		}
		/*
		 * Part of a 2xx answer went to the output: ask for the rest of the same
		 * object, or (without its ETag, or where the output cannot be sought)
		 * start over or give up.
		 */
		uint64_t have = resp->resumed + resp->written;
		const char *tag = s3c_resp_header(resp, "ETag");
		if (have > 0 && !etag[0] && tag)
			snprintf(etag, sizeof(etag), "%s", tag);
		if (have > 0 && retry && resumable && etag[0] &&
		    resume_request(r, have, etag, &rr, range) == 0) {
			kept = have;
			send = &rr;
			log_debug("s3: GET resumes at byte %" PRIu64 " of the answer", kept);
		} else if (have > 0) {
			if (start < 0 || lseek(r->out_fd, start, SEEK_SET) < 0 ||
			    ftruncate(r->out_fd, start) < 0 ||
			    (md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1))
				retry = false;
			kept = 0;
			send = r;
		}
		if (!retry || attempt >= c->retries) {
			if (err && !sealvm_err_isset(err))
				*err = e;
			break;
		}
		log_debug("s3: %s failed (%s: %s); retry %u of %u", r->method, e.reason, e.message,
			  attempt + 1, c->retries);
		backoff(c, attempt);
	}
out:
	EVP_MD_CTX_free(md);
	curl_easy_cleanup(curl);
	if (rc < 0) {
		/* the caller keeps the status and request id, not the bodies */
		long st = resp->status;
		char rid[sizeof(resp->request_id)];
		memcpy(rid, resp->request_id, sizeof(rid));
		s3c_resp_done(resp);
		resp->status = st;
		memcpy(resp->request_id, rid, sizeof(rid));
	}
	return rc;
}

/* ---- buckets --------------------------------------------------------------------------- */

/*
 * A HEAD: its error answers have no body, so a 404 is named @what404. On failure @resp is
 * released.
 */
static int head_request(struct s3c *c, const struct s3c_req *r, struct s3c_resp *resp,
			const char *what404, struct sealvm_err *err)
{
	struct sealvm_err e = SEALVM_ERR_INIT;
	int rc = s3c_perform(c, r, resp, &e);

	if (rc < 0) {
		if (resp->status != 0)
			rc = s3c_error_from(resp->status, NULL, 0, resp->request_id, what404, err);
		else if (err && !sealvm_err_isset(err))
			*err = e;
		s3c_resp_done(resp);
	}
	return rc;
}

static int check_bucket(const char *bucket, struct sealvm_err *err)
{
	size_t n = bucket ? strlen(bucket) : 0;

	if (n < 3 || n > 63)
		return sealvm_err_set(err, -EINVAL, "InvalidBucketName",
				      "a bucket name has 3 to 63 characters");
	for (const char *p = bucket; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
		      *p == '-'))
			return sealvm_err_set(
				err, -EINVAL, "InvalidBucketName",
				"the bucket name '%s' may hold only a-z, 0-9, '.' and "
				"'-'",
				bucket);
	return 0;
}

static int check_key(const char *key, struct sealvm_err *err)
{
	size_t n = key ? strlen(key) : 0;

	if (n == 0 || n > 1024)
		return sealvm_err_set(err, -EINVAL, "InvalidKey",
				      "an object key has 1 to 1024 bytes");
	return 0;
}

int s3c_bucket_create(struct s3c *c, const char *bucket, const char *location,
		      const char *kms_key_crn, struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	_cleanup_free_ char *body = NULL;
	size_t blen = 0;
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0)
		return rc;
	s3c_req_init(&r, "PUT", bucket, NULL);
	if (location && *location) {
		struct s3_xml *w = NULL;
		if ((rc = s3_xml_new(4096, &w)) < 0)
			return rc;
		s3_xml_open(w, "CreateBucketConfiguration", true);
		s3_xml_elem(w, "LocationConstraint", location);
		rc = s3_xml_finish(w, &body, &blen);
		s3_xml_free(w);
		if (rc < 0)
			return sealvm_err_set(err, rc, "InvalidLocationConstraint",
					      "the location '%s' cannot be sent", location);
		r.body = body;
		r.body_len = blen;
	} else {
		r.body = "";
		r.body_len = 0;
	}
	if (kms_key_crn) {
		s3c_req_header(&r, "ibm-sse-kp-encryption-algorithm", "AES256");
		s3c_req_header(&r, "ibm-sse-kp-customer-root-key-crn", kms_key_crn);
	}
	rc = s3c_perform(c, &r, &resp, err);
	s3c_resp_done(&resp);
	return rc;
}

int s3c_bucket_list(struct s3c *c, struct s3c_bucket **ret, size_t *ret_n, struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	_cleanup_free_ struct s3c_bucket *v = NULL;
	size_t n = 0;
	const char *p, *end, *in, *ie;
	int rc;

	s3c_req_init(&r, "GET", NULL, NULL);
	if ((rc = s3c_perform(c, &r, &resp, err)) < 0)
		return rc;
	p = resp.body ? resp.body : "";
	end = p + resp.len;
	while (s3c_xml_find(&p, end, "Bucket", &in, &ie)) {
		_cleanup_free_ char *name = s3c_xml_text(in, ie, "Name");
		_cleanup_free_ char *cd = s3c_xml_text(in, ie, "CreationDate");
		struct s3c_bucket *nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv) {
			s3c_resp_done(&resp);
			return -ENOMEM;
		}
		v = nv;
		snprintf(v[n].name, sizeof(v[n].name), "%s", name ? name : "");
		snprintf(v[n].created, sizeof(v[n].created), "%s", cd ? cd : "");
		n++;
	}
	if (n == 0 && !strstr(resp.body ? resp.body : "", "ListAllMyBucketsResult")) {
		s3c_resp_done(&resp);
		return sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
				      "the bucket list answer is not a ListAllMyBucketsResult");
	}
	s3c_resp_done(&resp);
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

int s3c_bucket_head(struct s3c *c, const char *bucket, struct s3c_bucket_info *ret,
		    struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	struct s3c_bucket_info bi = {0};
	const char *v;
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0)
		return rc;
	s3c_req_init(&r, "HEAD", bucket, NULL);
	rc = head_request(c, &r, &resp, "NoSuchBucket", err);
	if (rc < 0)
		return rc;
	v = s3c_resp_header(&resp, "ibm-sse-kp-enabled");
	bi.sse = v && !strcasecmp(v, "true");
	v = s3c_resp_header(&resp, "ibm-sse-kp-crk-id");
	if (!v)
		v = s3c_resp_header(&resp, "ibm-sse-kp-customer-root-key-crn");
	snprintf(bi.crk_id, sizeof(bi.crk_id), "%s", v ? v : "");
	s3c_resp_done(&resp);

	s3c_req_init(&r, "GET", bucket, NULL);
	r.query = "location";
	if (s3c_perform(c, &r, &resp, NULL) == 0) {
		_cleanup_free_ char *loc =
			s3c_xml_text(resp.body ? resp.body : "",
				     (resp.body ? resp.body : "") + resp.len, "LocationConstraint");
		snprintf(bi.location, sizeof(bi.location), "%s", loc ? loc : "");
	}
	s3c_resp_done(&resp);
	*ret = bi;
	return 0;
}

int s3c_bucket_delete(struct s3c *c, const char *bucket, struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0)
		return rc;
	s3c_req_init(&r, "DELETE", bucket, NULL);
	rc = s3c_perform(c, &r, &resp, err);
	s3c_resp_done(&resp);
	return rc;
}

/* ---- objects --------------------------------------------------------------------------- */

void s3c_object_done(struct s3c_object *o)
{
	free(o->key);
	for (size_t i = 0; i < o->n_meta; i++) {
		free(o->meta[i].name);
		free(o->meta[i].value);
	}
	free(o->meta);
	memset(o, 0, sizeof(*o));
}

static void strip_quotes(char *dst, size_t cap, const char *src)
{
	size_t n;

	if (!src)
		src = "";
	n = strlen(src);
	if (n >= 2 && src[0] == '"' && src[n - 1] == '"') {
		src++;
		n -= 2;
	}
	snprintf(dst, cap, "%.*s", (int)n, src);
}

/* Fills @o from the answer headers of a GET or HEAD. */
static int object_from_headers(const struct s3c_resp *rs, const char *key, struct s3c_object *o)
{
	const char *v;

	memset(o, 0, sizeof(*o));
	if (!(o->key = strdup(key)))
		return -ENOMEM;
	v = s3c_resp_header(rs, "Content-Length");
	o->size = v ? strtoull(v, NULL, 10) : 0;
	o->total_size = o->size;
	strip_quotes(o->etag, sizeof(o->etag), s3c_resp_header(rs, "ETag"));
	snprintf(o->last_modified, sizeof(o->last_modified), "%s",
		 s3c_resp_header(rs, "Last-Modified") ?: "");
	snprintf(o->content_type, sizeof(o->content_type), "%s",
		 s3c_resp_header(rs, "Content-Type") ?: "");
	v = s3c_resp_header(rs, "Content-Range");
	if (v) {
		const char *slash = strrchr(v, '/');
		snprintf(o->content_range, sizeof(o->content_range), "%s", v);
		if (slash && slash[1] != '*')
			o->total_size = strtoull(slash + 1, NULL, 10);
	}
	v = s3c_resp_header(rs, "x-amz-server-side-encryption");
	o->sse = v != NULL || (s3c_resp_header(rs, "ibm-sse-kp-enabled") &&
			       !strcasecmp(s3c_resp_header(rs, "ibm-sse-kp-enabled"), "true"));
	for (size_t i = 0; i < rs->n_hdrs; i++) {
		if (strncasecmp(rs->hdrs[i].name, "x-amz-meta-", 11) != 0)
			continue;
		struct s3c_meta *nm = realloc(o->meta, (o->n_meta + 1) * sizeof(*nm));
		if (!nm)
			return -ENOMEM;
		o->meta = nm;
		nm[o->n_meta].name = strdup(rs->hdrs[i].name + 11);
		nm[o->n_meta].value = strdup(rs->hdrs[i].value);
		if (!nm[o->n_meta].name || !nm[o->n_meta].value) {
			free(nm[o->n_meta].name);
			free(nm[o->n_meta].value);
			return -ENOMEM;
		}
		for (char *q = nm[o->n_meta].name; *q; q++)
			if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
		o->n_meta++;
	}
	return 0;
}

/* x-amz-meta-NAME header names for @o's pairs, into @names (freed by the caller). */
static int put_headers(struct s3c_req *r, const struct s3c_put_opts *o, char **names,
		       struct sealvm_err *err)
{
	if (!o)
		return 0;
	if (o->content_type && *o->content_type)
		s3c_req_header(r, "content-type", o->content_type);
	if (o->n_meta > S3C_META_MAX)
		return sealvm_err_set(err, -E2BIG, "MetadataTooLarge", "at most %d metadata pairs",
				      S3C_META_MAX);
	for (size_t i = 0; i < o->n_meta; i++) {
		for (const char *p = o->meta[i].name; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
				return sealvm_err_set(
					err, -EINVAL, "InvalidArgument",
					"the metadata name '%s' may hold only letters, "
					"digits, '-' and '_'",
					o->meta[i].name);
		for (const char *p = o->meta[i].value; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return sealvm_err_set(err, -EINVAL, "InvalidArgument",
						      "the value of metadata '%s' holds a control "
						      "character",
						      o->meta[i].name);
		if (!*o->meta[i].name ||
		    asprintf(&names[i], "x-amz-meta-%s", o->meta[i].name) < 0) {
			names[i] = NULL;
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "a metadata name is empty");
		}
		for (char *q = names[i]; *q; q++)
			if (*q >= 'A' && *q <= 'Z')
				*q = (char)(*q - 'A' + 'a');
		s3c_req_header(r, names[i], o->meta[i].value);
	}
	return 0;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
}

/* The hex SHA-256 of @len bytes of @fd at @off (a first pass over the data). */
static int fd_sha256(int fd, uint64_t off, uint64_t len, char out[65], struct sealvm_err *err)
{
	static const char hex[] = "0123456789abcdef";
	const size_t bs = 1u << 20;
	_cleanup_free_ unsigned char *buf = malloc(bs);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char d[32];
	int rc = 0;

	if (!buf || !md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	for (uint64_t done = 0; done < len;) {
		size_t n = (size_t)MIN((uint64_t)bs, len - done);
		ssize_t k = sealvm_pread_all(fd, buf, n, off + done);
		if (k != (ssize_t)n) {
			rc = sealvm_err_set_errno(err, k < 0 ? (int)k : -EIO, "S3C_LOCAL_IO",
						  "cannot read the data to hash");
			goto out;
		}
		EVP_DigestUpdate(md, buf, n);
		done += n;
	}
	EVP_DigestFinal_ex(md, d, NULL);
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[64] = 0;
out:
	EVP_MD_CTX_free(md);
	return rc;
}

int s3c_put_part_internal(struct s3c *c, const char *bucket, const char *key, const char *query,
			  int fd, uint64_t off, uint64_t size, const struct s3c_put_opts *o,
			  uint64_t progress_base, uint64_t progress_total, char *ret_etag,
			  struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	char *names[S3C_META_MAX] = {0};
	int rc;

	s3c_req_init(&r, "PUT", bucket, key);
	r.query = query;
	r.fd = fd;
	r.fd_off = off;
	r.fd_len = size;
	r.payload = o ? o->payload : S3C_PAYLOAD_TRAILER;
	r.progress = o ? o->progress : NULL;
	r.userdata = o ? o->userdata : NULL;
	r.progress_base = progress_base;
	r.progress_total = progress_total;
	if (!query && (rc = put_headers(&r, o, names, err)) < 0)
		goto out;
	if (r.payload == S3C_PAYLOAD_SHA256 &&
	    (rc = fd_sha256(fd, off, size, r.sha256_hex, err)) < 0)
		goto out;
	rc = s3c_perform(c, &r, &resp, err);
	if (rc == 0 && ret_etag)
		strip_quotes(ret_etag, 80, s3c_resp_header(&resp, "ETag"));
out:
	s3c_resp_done(&resp);
	free_names(names, ELEMENTSOF(names));
	return rc;
}

int s3c_put_fd(struct s3c *c, const char *bucket, const char *key, int fd, uint64_t off,
	       uint64_t size, const struct s3c_put_opts *o, char *ret_etag, struct sealvm_err *err)
{
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0 || (rc = check_key(key, err)) < 0)
		return rc;
	if (size > S3C_PART_MAX)
		return sealvm_err_set(err, -EFBIG, "EntityTooLarge",
				      "a single PUT carries at most 5 GiB; use a multipart upload");
	return s3c_put_part_internal(c, bucket, key, NULL, fd, off, size, o, 0, size, ret_etag,
				     err);
}

int s3c_get_fd(struct s3c *c, const char *bucket, const char *key, int fd,
	       const struct s3c_get_opts *o, struct s3c_object *ret, unsigned char ret_sha256[32],
	       struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	struct s3c_object obj;
	char range[64];
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0 || (rc = check_key(key, err)) < 0)
		return rc;
	s3c_req_init(&r, "GET", bucket, key);
	r.out_fd = fd;
	if (o && o->range) {
		if (o->range->last != UINT64_MAX && o->range->last < o->range->first)
			return sealvm_err_set(err, -EINVAL, "InvalidRange",
					      "the range's last byte is before its first");
		if (o->range->last == UINT64_MAX)
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", o->range->first);
		else
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64,
				 o->range->first, o->range->last);
		s3c_req_header(&r, "range", range);
		r.has_range = true;
		r.range_first = o->range->first;
		r.range_last = o->range->last;
	}
	r.want_sha256 = o && o->sha256;
	r.progress = o ? o->progress : NULL;
	r.userdata = o ? o->userdata : NULL;
	if ((rc = s3c_perform(c, &r, &resp, err)) < 0)
		goto out;
	if ((rc = object_from_headers(&resp, key, &obj)) < 0)
		goto out;
	r.progress_total = obj.size;
	if (r.progress)
		r.progress(resp.written, resp.written, r.userdata);
	/* a resumed answer carried the rest: its length and range say so, ours say the whole */
	if (resp.written != obj.size + resp.resumed && s3c_resp_header(&resp, "Content-Length")) {
		s3c_object_done(&obj);
		rc = sealvm_err_set(err, -EIO, "IncompleteBody",
				    "the answer carried %" PRIu64 " bytes of %" PRIu64,
				    resp.written, obj.size + resp.resumed);
		goto out;
	}
	obj.size = resp.written;
	if (resp.resumed && !r.has_range)
		obj.content_range[0] = 0;
	else if (resp.resumed && resp.written)
		snprintf(obj.content_range, sizeof(obj.content_range),
			 "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, r.range_first,
			 r.range_first + resp.written - 1, obj.total_size);
	if (ret_sha256 && r.want_sha256)
		memcpy(ret_sha256, resp.sha256, 32);
	if (ret)
		*ret = obj;
	else
		s3c_object_done(&obj);
out:
	s3c_resp_done(&resp);
	return rc;
}

int s3c_head(struct s3c *c, const char *bucket, const char *key, struct s3c_object *ret,
	     struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0 || (rc = check_key(key, err)) < 0)
		return rc;
	s3c_req_init(&r, "HEAD", bucket, key);
	rc = head_request(c, &r, &resp, "NoSuchKey", err);
	if (rc < 0)
		return rc;
	rc = object_from_headers(&resp, key, ret);
	s3c_resp_done(&resp);
	return rc;
}

int s3c_delete(struct s3c *c, const char *bucket, const char *key, struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0 || (rc = check_key(key, err)) < 0)
		return rc;
	s3c_req_init(&r, "DELETE", bucket, key);
	rc = s3c_perform(c, &r, &resp, err);
	s3c_resp_done(&resp);
	return rc;
}

void s3c_list_done(struct s3c_list *l)
{
	for (size_t i = 0; i < l->n_objects; i++)
		s3c_object_done(&l->objects[i]);
	free(l->objects);
	for (size_t i = 0; i < l->n_prefixes; i++)
		free(l->prefixes[i]);
	free(l->prefixes);
	free(l->next);
	memset(l, 0, sizeof(*l));
}

int s3c_list(struct s3c *c, const char *bucket, const struct s3c_list_opts *o, struct s3c_list *ret,
	     struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	struct s3c_list l = {0};
	_cleanup_free_ char *q = NULL;
	const char *p, *end, *in, *ie;
	char mk[16];
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0)
		return rc;
	if ((rc = query_add(&q, "list-type", "2")) < 0)
		return rc;
	if (o && o->prefix && *o->prefix && (rc = query_add(&q, "prefix", o->prefix)) < 0)
		return rc;
	if (o && o->delimiter && *o->delimiter &&
	    (rc = query_add(&q, "delimiter", o->delimiter)) < 0)
		return rc;
	if (o && o->continuation && (rc = query_add(&q, "continuation-token", o->continuation)) < 0)
		return rc;
	if (o && o->max_keys) {
		snprintf(mk, sizeof(mk), "%u", o->max_keys);
		if ((rc = query_add(&q, "max-keys", mk)) < 0)
			return rc;
	}
	s3c_req_init(&r, "GET", bucket, NULL);
	r.query = q;
	if ((rc = s3c_perform(c, &r, &resp, err)) < 0)
		return rc;
	p = resp.body ? resp.body : "";
	end = p + resp.len;
	if (!strstr(p, "ListBucketResult")) {
		s3c_resp_done(&resp);
		return sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
				      "the list answer is not a ListBucketResult");
	}
	rc = -ENOMEM;
	while (s3c_xml_find(&p, end, "Contents", &in, &ie)) {
		struct s3c_object *no = realloc(l.objects, (l.n_objects + 1) * sizeof(*no));
		if (!no)
			goto fail;
		l.objects = no;
		struct s3c_object *ob = &no[l.n_objects];
		memset(ob, 0, sizeof(*ob));
		_cleanup_free_ char *size = s3c_xml_text(in, ie, "Size");
		_cleanup_free_ char *etag = s3c_xml_text(in, ie, "ETag");
		_cleanup_free_ char *lm = s3c_xml_text(in, ie, "LastModified");
		ob->key = s3c_xml_text(in, ie, "Key");
		if (!ob->key)
			goto fail;
		l.n_objects++;
		ob->size = size ? strtoull(size, NULL, 10) : 0;
		ob->total_size = ob->size;
		strip_quotes(ob->etag, sizeof(ob->etag), etag);
		snprintf(ob->last_modified, sizeof(ob->last_modified), "%s", lm ? lm : "");
	}
	p = resp.body;
	while (s3c_xml_find(&p, end, "CommonPrefixes", &in, &ie)) {
		char **np = realloc(l.prefixes, (l.n_prefixes + 1) * sizeof(*np));
		if (!np)
			goto fail;
		l.prefixes = np;
		if (!(np[l.n_prefixes] = s3c_xml_text(in, ie, "Prefix")))
			goto fail;
		l.n_prefixes++;
	}
	{
		_cleanup_free_ char *tr = s3c_xml_text(resp.body, end, "IsTruncated");
		l.truncated = tr && !strcmp(tr, "true");
	}
	if (l.truncated) {
		l.next = s3c_xml_text(resp.body, end, "NextContinuationToken");
		if (!l.next) {
			rc = sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
					    "a truncated list answer has no NextContinuationToken");
			goto fail;
		}
	}
	s3c_resp_done(&resp);
	*ret = l;
	return 0;
fail:
	s3c_resp_done(&resp);
	s3c_list_done(&l);
	return rc;
}

int s3c_presign(struct s3c *c, const char *method, const char *bucket, const char *key,
		unsigned expires, int64_t now, char **ret, struct sealvm_err *err)
{
	_cleanup_free_ char *url = NULL;
	struct sigv4_credentials cred;
	int rc;

	if (!c->secret)
		return sealvm_err_set(
			err, -EINVAL, "PRESIGN_NEEDS_HMAC",
			"a presigned URL needs HMAC credentials (an access key id and "
			"a secret access key)");
	if (strcmp(method, "GET") != 0 && strcmp(method, "PUT") != 0)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "presign GET or PUT, not '%s'", method);
	if (expires < 1 || expires > SIGV4_PRESIGN_MAX_EXPIRES)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "a presigned URL lives 1 to %d seconds",
				      SIGV4_PRESIGN_MAX_EXPIRES);
	if ((rc = check_bucket(bucket, err)) < 0 || (rc = check_key(key, err)) < 0)
		return rc;
	if ((rc = s3c_url(c, bucket, key, NULL, &url)) < 0)
		return rc;
	cred = (struct sigv4_credentials){c->access_key_id, c->secret, c->region, NULL};
	return sigv4_presign(method, url, NULL, 0, &cred, now ? (time_t)now : time(NULL), expires,
			     ret, err);
}

/* ---- low-level multipart ----------------------------------------------------------------- */

int s3c_upload_create(struct s3c *c, const char *bucket, const char *key,
		      const struct s3c_put_opts *o, char ret_upload_id[256], struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	char *names[S3C_META_MAX] = {0};
	_cleanup_free_ char *id = NULL;
	int rc;

	if ((rc = check_bucket(bucket, err)) < 0 || (rc = check_key(key, err)) < 0)
		return rc;
	s3c_req_init(&r, "POST", bucket, key);
	r.query = "uploads";
	r.body = "";
	r.body_len = 0;
	if ((rc = put_headers(&r, o, names, err)) < 0)
		goto out;
	if ((rc = s3c_perform(c, &r, &resp, err)) < 0)
		goto out;
	id = s3c_xml_text(resp.body ? resp.body : "", (resp.body ? resp.body : "") + resp.len,
			  "UploadId");
	if (!id || !*id || strlen(id) >= 256) {
		rc = sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
				    "the answer to CreateMultipartUpload has no UploadId");
		goto out;
	}
	snprintf(ret_upload_id, 256, "%s", id);
out:
	free_names(names, ELEMENTSOF(names));
	s3c_resp_done(&resp);
	return rc;
}

int s3c_upload_abort(struct s3c *c, const char *bucket, const char *key, const char *upload_id,
		     struct sealvm_err *err)
{
	struct s3c_req r;
	struct s3c_resp resp = {0};
	_cleanup_free_ char *q = NULL;
	int rc;

	if ((rc = query_add(&q, "uploadId", upload_id)) < 0)
		return rc;
	s3c_req_init(&r, "DELETE", bucket, key);
	r.query = q;
	rc = s3c_perform(c, &r, &resp, err);
	s3c_resp_done(&resp);
	return rc;
}

int s3c_upload_parts(struct s3c *c, const char *bucket, const char *key, const char *upload_id,
		     struct s3c_part_info **ret, size_t *ret_n, struct sealvm_err *err)
{
	_cleanup_free_ struct s3c_part_info *v = NULL;
	size_t n = 0;
	unsigned marker = 0;

	for (;;) {
		struct s3c_req r;
		struct s3c_resp resp = {0};
		_cleanup_free_ char *q = NULL, *tr = NULL, *next = NULL;
		const char *p, *end, *in, *ie;
		char m[16];
		int rc;

		snprintf(m, sizeof(m), "%u", marker);
		if ((rc = query_add(&q, "uploadId", upload_id)) < 0 ||
		    (marker && (rc = query_add(&q, "part-number-marker", m)) < 0))
			return rc;
		s3c_req_init(&r, "GET", bucket, key);
		r.query = q;
		if ((rc = s3c_perform(c, &r, &resp, err)) < 0)
			return rc;
		p = resp.body ? resp.body : "";
		end = p + resp.len;
		while (s3c_xml_find(&p, end, "Part", &in, &ie)) {
			_cleanup_free_ char *num = s3c_xml_text(in, ie, "PartNumber");
			_cleanup_free_ char *sz = s3c_xml_text(in, ie, "Size");
			_cleanup_free_ char *et = s3c_xml_text(in, ie, "ETag");
			struct s3c_part_info *nv = realloc(v, (n + 1) * sizeof(*v));
			if (!nv) {
				s3c_resp_done(&resp);
				return -ENOMEM;
			}
			v = nv;
			v[n].number = num ? (unsigned)strtoul(num, NULL, 10) : 0;
			v[n].size = sz ? strtoull(sz, NULL, 10) : 0;
			strip_quotes(v[n].etag, sizeof(v[n].etag), et);
			n++;
		}
		tr = s3c_xml_text(resp.body ? resp.body : "", end, "IsTruncated");
		next = s3c_xml_text(resp.body ? resp.body : "", end, "NextPartNumberMarker");
		s3c_resp_done(&resp);
		if (!tr || strcmp(tr, "true") != 0)
			break;
		unsigned nm = next ? (unsigned)strtoul(next, NULL, 10) : 0;
		if (nm <= marker)
			return sealvm_err_set(
				err, -EINVAL, "BAD_ANSWER",
				"ListParts is truncated but its marker does not move");
		marker = nm;
	}
	*ret = TAKE_PTR(v);
	*ret_n = n;
	return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

int s3c_frame_for_test(int fd, uint64_t size, unsigned char **ret, size_t *ret_len)
{
	struct s3c_req r;
	struct xfer x = {.r = &r, .chunked = true};
	size_t cap = (size_t)s3c_chunked_length(size) + 1, o = 0;
	unsigned char *buf = malloc(cap);

	if (!buf)
		return -ENOMEM;
	s3c_req_init(&r, "PUT", "b", "k");
	r.fd = fd;
	r.fd_len = size;
	r.payload = S3C_PAYLOAD_TRAILER;
	for (;;) {
		/* odd slices, as curl's buffer might be */
		size_t n = on_read((char *)buf + o, 1, MIN(cap - o, (size_t)1000), &x);
		if (n == CURL_READFUNC_ABORT) {
			free(buf);
			return x.local_error ? x.local_error : -EIO;
		}
		if (n == 0)
			break;
		o += n;
	}
	*ret = buf;
	*ret_len = o;
	return 0;
}
