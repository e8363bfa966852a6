// SPDX-License-Identifier: Apache-2.0
/*
 * s3_client_upload.c — multipart upload of a file: parallel parts, retries,
 * and resume from a state file (see s3client.h).
 *
 * N threads take the next part not yet done and stream it from the file with
 * pread (each part is a PUT of its own, aws-chunked with a CRC32C trailer by
 * default, retried by s3c_perform); memory stays at curl's buffers per thread,
 * whatever the part size. After each part the state file is rewritten
 * (tmp + rename, 0600): the endpoint, bucket, key, the source's size and
 * mtime, the part size, the upload id and the ETag of every part done. It
 * never holds a credential. A later run with the same source and target asks
 * the server which parts it has (ListParts) and sends only the others; the
 * server's list is the truth, the state file only says which upload to ask
 * about and which ETags to expect.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "sealvm/file.h"
#include "sealvm/log.h"
#include "sealvm/s3.h"
#include "sealvm/s3client.h"

#include "s3_client_internal.h"

#define STATE_MAX (4u << 20)
#define STATE_VERSION 1

/* ---- state file ------------------------------------------------------------------------------ */

void s3c_state_done(struct s3c_state *s)
{
	free(s->endpoint);
	free(s->bucket);
	free(s->key);
	free(s->etags);
	memset(s, 0, sizeof(*s));
}

int s3c_state_load(const char *path, struct s3c_state *ret, struct sealvm_err *err)
{
	struct s3c_state s = {0};
	json_error_t je;
	json_t *j, *parts, *v;
	const char *k, *uid;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT
			       ? -ENOENT
			       : sealvm_err_set_errno(err, negative_errno(), "RESUME_STATE_BAD",
						      "cannot open the state file '%s'", path);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)STATE_MAX) {
		close(fd);
		return sealvm_err_set(err, -EINVAL, "RESUME_STATE_BAD",
				      "the state file '%s' is not a small regular file", path);
	}
	j = json_loadfd(fd, 0, &je);
	close(fd);
	if (!j)
		return sealvm_err_set(
			err, -EINVAL, "RESUME_STATE_BAD",
			"the state file '%s' is not JSON (%s); remove it to start over", path,
			je.text);
	uid = json_string_value(json_object_get(j, "upload_id"));
	parts = json_object_get(j, "parts");
	if (json_integer_value(json_object_get(j, "version")) != STATE_VERSION || !uid ||
	    strlen(uid) >= sizeof(s.upload_id) || !json_is_object(parts) ||
	    !json_is_string(json_object_get(j, "bucket")) ||
	    !json_is_string(json_object_get(j, "key")) ||
	    !json_is_string(json_object_get(j, "endpoint")) ||
	    json_integer_value(json_object_get(j, "size")) < 0 ||
	    json_integer_value(json_object_get(j, "part_size")) <= 0) {
		json_decref(j);
		return sealvm_err_set(err, -EINVAL, "RESUME_STATE_BAD",
				      "the state file '%s' is not an upload state of this version; "
				      "remove it to start over",
				      path);
	}
	s.endpoint = strdup(json_string_value(json_object_get(j, "endpoint")));
	s.bucket = strdup(json_string_value(json_object_get(j, "bucket")));
	s.key = strdup(json_string_value(json_object_get(j, "key")));
	snprintf(s.upload_id, sizeof(s.upload_id), "%s", uid);
	s.size = (uint64_t)json_integer_value(json_object_get(j, "size"));
	s.part_size = (uint64_t)json_integer_value(json_object_get(j, "part_size"));
	s.mtime_ns = json_integer_value(json_object_get(j, "mtime_ns"));
	s.n_parts = s.size ? (unsigned)MIN(DIV_ROUND_UP(s.size, s.part_size),
					   (uint64_t)S3C_PARTS_MAX + 1)
			   : 1;
	if (s.n_parts > S3C_PARTS_MAX) {
		json_decref(j);
		s3c_state_done(&s);
		return sealvm_err_set(err, -EINVAL, "RESUME_STATE_BAD",
				      "the state file '%s' names more than %d parts", path,
				      S3C_PARTS_MAX);
	}
	s.etags = calloc(s.n_parts, sizeof(*s.etags));
	if (!s.endpoint || !s.bucket || !s.key || !s.etags) {
		json_decref(j);
		s3c_state_done(&s);
		return -ENOMEM;
	}
	json_object_foreach(parts, k, v)
	{
		char *end;
		unsigned long n = strtoul(k, &end, 10);
		if (*end || n < 1 || n > s.n_parts || !json_is_string(v) ||
		    json_string_length(v) >= sizeof(s.etags[0]))
			continue; /* not ours to trust: that part is sent again */
		snprintf(s.etags[n - 1], sizeof(s.etags[0]), "%s", json_string_value(v));
	}
	json_decref(j);
	*ret = s;
	return 0;
}

int s3c_state_save(const char *path, const struct s3c_state *s, struct sealvm_err *err)
{
	_cleanup_free_ char *tmp = NULL, *text = NULL;
	json_t *j, *parts;
	int fd, rc;

	j = json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "version", STATE_VERSION,
		      "endpoint", s->endpoint, "bucket", s->bucket, "key", s->key, "upload_id",
		      s->upload_id, "size", (json_int_t)s->size, "part_size",
		      (json_int_t)s->part_size, "mtime_ns", (json_int_t)s->mtime_ns);
	parts = json_object();
	if (!j || !parts || json_object_set_new(j, "parts", parts) < 0) {
		json_decref(j);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < s->n_parts; i++) {
		char num[16];
		if (!s->etags[i][0])
			continue;
		snprintf(num, sizeof(num), "%u", i + 1);
		if (json_object_set_new(parts, num, json_string(s->etags[i])) < 0) {
			json_decref(j);
			return -ENOMEM;
		}
	}
	text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!text || asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		return -ENOMEM;
	}
	/* a leftover of a killed run is ours: the name is derived from the state's own */
	(void)unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return sealvm_err_set_errno(err, negative_errno(), "RESUME_STATE_WRITE",
					    "cannot write the upload state '%s'", tmp);
	rc = sealvm_write_all(fd, text, strlen(text));
	if (rc == 0 && fdatasync(fd) < 0)
		rc = negative_errno();
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = negative_errno();
	if (rc < 0) {
		(void)unlink(tmp);
		return sealvm_err_set_errno(err, rc, "RESUME_STATE_WRITE",
					    "cannot write the upload state '%s'", path);
	}
	return 0;
}

/* ---- the upload ------------------------------------------------------------------------------ */

struct upload {
	struct s3c *c;
	const char *bucket, *key, *state_path;
	int fd;
	uint64_t size, part_size;
	unsigned n_parts;
	const struct s3c_upload_opts *o;
	struct s3c_state st;  /* etags: the parts done */
	char enc_id[3 * 256]; /* the upload id, percent-encoded for a query */

	pthread_mutex_t lock;
	unsigned next;	/* the next part index to look at */
	uint64_t bytes; /* sent, for progress */
	int rc;		/* first failure */
	struct sealvm_err err;
	bool state_ok; /* the state file can be written */
};

struct part_progress {
	struct upload *u;
	uint64_t sent;
};

static void on_part_progress(uint64_t done, uint64_t total, void *userdata)
{
	struct part_progress *pp = userdata;
	struct upload *u = pp->u;

	(void)total;
	pthread_mutex_lock(&u->lock);
	if (done >= pp->sent)
		u->bytes += done - pp->sent;
	else
		u->bytes -= MIN(u->bytes, pp->sent - done); /* a retry started the part over */
	pp->sent = done;
	if (u->o->put.progress)
		u->o->put.progress(u->bytes, u->size, u->o->put.userdata);
	pthread_mutex_unlock(&u->lock);
}

static uint64_t part_len(const struct upload *u, unsigned i)
{
	uint64_t off = (uint64_t)i * u->part_size;
	return MIN(u->part_size, u->size - off);
}

static void *worker(void *arg)
{
	struct upload *u = arg;

	for (;;) {
		unsigned i;
		char etag[80] = "", query[3 * 256 + 32];
		struct sealvm_err e = SEALVM_ERR_INIT;
		struct part_progress pp = {u, 0};
		struct s3c_put_opts po;
		int rc;

		pthread_mutex_lock(&u->lock);
		while (u->next < u->n_parts && u->st.etags[u->next][0])
			u->next++;
		if (u->rc < 0 || u->next >= u->n_parts) {
			pthread_mutex_unlock(&u->lock);
			return NULL;
		}
		i = u->next++;
		pthread_mutex_unlock(&u->lock);

		snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s", i + 1, u->enc_id);
		po = u->o->put;
		po.progress = on_part_progress;
		po.userdata = &pp;
		rc = s3c_put_part_internal(u->c, u->bucket, u->key, query, u->fd,
					   (uint64_t)i * u->part_size, part_len(u, i), &po, 0,
					   part_len(u, i), etag, &e);
		if (rc == 0 && !etag[0])
			rc = sealvm_err_set(&e, -EINVAL, "BAD_ANSWER",
					    "the answer to part %u carries no ETag", i + 1);
		if (rc < 0)
			goto failed;
		pthread_mutex_lock(&u->lock);
		snprintf(u->st.etags[i], sizeof(u->st.etags[i]), "%s", etag);
		if (u->state_ok) {
			struct sealvm_err se = SEALVM_ERR_INIT;
			if (s3c_state_save(u->state_path, &u->st, &se) < 0) {
				log_warning("%s: the upload goes on, but cannot be resumed",
					    se.message);
				u->state_ok = false;
			}
		}
		pthread_mutex_unlock(&u->lock);
		continue;
	failed:
		pthread_mutex_lock(&u->lock);
		if (u->rc == 0) {
			u->rc = rc;
			u->err = e;
			if (!sealvm_err_isset(&u->err))
				sealvm_err_set(&u->err, rc, sealvm_err_reason_for(rc),
					       "part %u failed", i + 1);
		}
		pthread_mutex_unlock(&u->lock);
		return NULL;
	}
}

/* @id percent-encoded (every byte outside RFC 3986's unreserved set) into @out. */
static void encode_id(const char *id, char out[3 * 256])
{
	size_t o = 0;

	for (const char *p = id; *p && o + 4 < 3 * 256; p++) {
		unsigned char ch = (unsigned char)*p;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == '~')
			out[o++] = (char)ch;
		else
			o += (size_t)sprintf(out + o, "%%%02X", ch);
	}
	out[o] = 0;
}

/* CompleteMultipartUpload with every part; the object's ETag to @ret_etag. */
static int complete(struct upload *u, char ret_etag[80], struct sealvm_err *err)
{
	struct s3_xml *w = NULL;
	_cleanup_free_ char *body = NULL, *q = NULL, *etag = NULL;
	size_t blen = 0;
	struct s3c_req r;
	struct s3c_resp resp = {0};
	int rc;

	if ((rc = s3_xml_new(S3_MULTIPART_XML_MAX, &w)) < 0)
		return rc;
	s3_xml_open(w, "CompleteMultipartUpload", true);
	for (unsigned i = 0; i < u->n_parts; i++) {
		s3_xml_open(w, "Part", false);
		s3_xml_elemf(w, "PartNumber", "%u", i + 1);
		s3_xml_elemf(w, "ETag", "\"%s\"", u->st.etags[i]);
		s3_xml_close(w);
	}
	rc = s3_xml_finish(w, &body, &blen);
	s3_xml_free(w);
	if (rc < 0)
		return sealvm_err_set(err, rc, "S3C_INTERNAL", "cannot write the part list");
	if (asprintf(&q, "uploadId=%s", u->enc_id) < 0) {
		q = NULL;
		return -ENOMEM;
	}
	s3c_req_init(&r, "POST", u->bucket, u->key);
	r.query = q;
	r.body = body;
	r.body_len = blen;
	rc = s3c_perform(u->c, &r, &resp, err);
	if (rc == 0) {
		const char *end = (resp.body ? resp.body : "") + resp.len;
		const char *p = resp.body ? resp.body : "", *in, *ie;
		/* S3 may answer 200 and put the error in the body */
		if (s3c_xml_find(&p, end, "Error", &in, &ie)) {
			rc = s3c_error_from(500, resp.body, resp.len, resp.request_id, NULL, err);
		} else {
			etag = s3c_xml_text(resp.body ? resp.body : "", end, "ETag");
			const char *e = etag ? etag : "";
			size_t n = strlen(e);
			if (n >= 2 && e[0] == '"' && e[n - 1] == '"')
				snprintf(ret_etag, 80, "%.*s", (int)n - 2, e + 1);
			else
				snprintf(ret_etag, 80, "%s", e);
		}
	}
	s3c_resp_done(&resp);
	return rc;
}

/* After a failed complete: is the object there, made of our parts (a lost answer)? */
static bool completed_anyway(struct upload *u, char ret_etag[80])
{
	struct s3c_object o = {0};
	char suffix[16];
	size_t n, sl;
	bool yes;

	if (s3c_head(u->c, u->bucket, u->key, &o, NULL) < 0)
		return false;
	snprintf(suffix, sizeof(suffix), "-%u", u->n_parts);
	n = strlen(o.etag);
	sl = strlen(suffix);
	yes = o.size == u->size && n > sl && !strcmp(o.etag + n - sl, suffix);
	if (yes)
		snprintf(ret_etag, 80, "%s", o.etag);
	s3c_object_done(&o);
	return yes;
}

/* Marks the parts the server has with the ETags the state expects; the others are cleared. */
static int adopt_server_parts(struct upload *u, unsigned *ret_n, struct sealvm_err *err)
{
	_cleanup_free_ struct s3c_part_info *parts = NULL;
	_cleanup_free_ char(*keep)[80] = calloc(u->n_parts, sizeof(*keep));
	size_t n = 0;
	unsigned done = 0;
	int rc;

	if (!keep)
		return -ENOMEM;
	if ((rc = s3c_upload_parts(u->c, u->bucket, u->key, u->st.upload_id, &parts, &n, err)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		unsigned k = parts[i].number;
		if (k < 1 || k > u->n_parts)
			continue;
		if (u->st.etags[k - 1][0] && !strcmp(u->st.etags[k - 1], parts[i].etag) &&
		    parts[i].size == part_len(u, k - 1)) {
			memcpy(keep[k - 1], u->st.etags[k - 1], sizeof(keep[0]));
			done++;
		}
	}
	memcpy(u->st.etags, keep, u->n_parts * sizeof(keep[0]));
	*ret_n = done;
	return 0;
}

int s3c_upload_file(struct s3c *c, const char *bucket, const char *key, int fd, uint64_t size,
		    const struct s3c_upload_opts *o, struct s3c_upload_result *ret,
		    struct sealvm_err *err)
{
	struct upload u = {.c = c,
			   .bucket = bucket,
			   .key = key,
			   .fd = fd,
			   .size = size,
			   .o = o,
			   .state_path = o->state_path,
			   .lock = PTHREAD_MUTEX_INITIALIZER};
	struct s3c_upload_result res = {0};
	unsigned parallel = o->parallel ? o->parallel : 4, resumed = 0;
	pthread_t th[S3C_PARALLEL_MAX];
	unsigned started = 0;
	bool fresh = true;
	int rc;

	u.part_size = o->part_size ? o->part_size : S3C_DEFAULT_PART;
	if (u.part_size < S3C_PART_MIN || u.part_size > S3C_PART_MAX)
		return sealvm_err_set(err, -EINVAL, "InvalidArgument", "a part has 5 MiB to 5 GiB");
	while (DIV_ROUND_UP(size, u.part_size) > S3C_PARTS_MAX)
		u.part_size *= 2;
	if (u.part_size > S3C_PART_MAX)
		return sealvm_err_set(err, -EFBIG, "EntityTooLarge",
				      "the file is larger than 10000 parts of 5 GiB");
	u.n_parts = size ? (unsigned)DIV_ROUND_UP(size, u.part_size) : 1;
	if (parallel > S3C_PARALLEL_MAX)
		parallel = S3C_PARALLEL_MAX;
	if (parallel > u.n_parts)
		parallel = u.n_parts;

	/* an earlier run's upload of the same source and target */
	if (u.state_path) {
		struct s3c_state old = {0};
		rc = s3c_state_load(u.state_path, &old, err);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (rc == 0) {
			if (strcmp(old.bucket, bucket) != 0 || strcmp(old.key, key) != 0 ||
			    strcmp(old.endpoint, c->endpoint) != 0) {
				rc = sealvm_err_set(err, -EEXIST, "RESUME_CONFLICT",
						    "the state file '%s' records an upload of this "
						    "file to %s/%s/%s: finish that one, or remove "
						    "the state file to start over",
						    u.state_path, old.endpoint, old.bucket,
						    old.key);
				s3c_state_done(&old);
				return rc;
			}
			if (old.size != size || old.part_size != u.part_size ||
			    old.mtime_ns != o->source_mtime_ns) {
				log_info("the file or the part size changed since upload %s began: "
					 "starting over",
					 old.upload_id);
				(void)s3c_upload_abort(c, bucket, key, old.upload_id, NULL);
				s3c_state_done(&old);
			} else {
				struct sealvm_err le = SEALVM_ERR_INIT;
				u.st = old;
				rc = adopt_server_parts(&u, &resumed, &le);
				if (rc == -ENOENT) {
					log_info("upload %s is gone from the server: starting over",
						 u.st.upload_id);
					s3c_state_done(&u.st);
				} else if (rc < 0) {
					if (err && !sealvm_err_isset(err))
						*err = le;
					s3c_state_done(&u.st);
					return rc;
				} else {
					fresh = false;
				}
			}
		}
	}
	if (fresh) {
		memset(&u.st, 0, sizeof(u.st));
		u.st.endpoint = strdup(c->endpoint);
		u.st.bucket = strdup(bucket);
		u.st.key = strdup(key);
		u.st.etags = calloc(u.n_parts, sizeof(*u.st.etags));
		u.st.size = size;
		u.st.part_size = u.part_size;
		u.st.mtime_ns = o->source_mtime_ns;
		u.st.n_parts = u.n_parts;
		if (!u.st.endpoint || !u.st.bucket || !u.st.key || !u.st.etags) {
			s3c_state_done(&u.st);
			return -ENOMEM;
		}
		if ((rc = s3c_upload_create(c, bucket, key, &o->put, u.st.upload_id, err)) < 0) {
			s3c_state_done(&u.st);
			return rc;
		}
	}
	encode_id(u.st.upload_id, u.enc_id);
	if (u.state_path) {
		struct sealvm_err se = SEALVM_ERR_INIT;
		u.state_ok = s3c_state_save(u.state_path, &u.st, &se) == 0;
		if (!u.state_ok)
			log_warning("%s: the upload goes on, but cannot be resumed", se.message);
	}
	for (unsigned i = 0; i < u.n_parts; i++)
		if (u.st.etags[i][0])
			u.bytes += part_len(&u, i);
	if (o->put.progress)
		o->put.progress(u.bytes, size, o->put.userdata);

	for (; started < parallel; started++)
		if (pthread_create(&th[started], NULL, worker, &u) != 0)
			break;
	if (started == 0)
		worker(&u);
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	rc = u.rc;
	if (rc == 0) {
		struct sealvm_err ce = SEALVM_ERR_INIT;
		rc = complete(&u, res.etag, &ce);
		if (rc == -ENOENT && completed_anyway(&u, res.etag))
			rc = 0;
		else if (rc < 0)
			u.err = ce;
	}
	if (rc < 0) {
		if (err && !sealvm_err_isset(err))
			*err = u.err;
		if (!u.state_ok)
			(void)s3c_upload_abort(c, bucket, key, u.st.upload_id, NULL);
		s3c_state_done(&u.st);
		pthread_mutex_destroy(&u.lock);
		return rc;
	}
	if (u.state_path) {
		char tmp[4096];
		(void)unlink(u.state_path);
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", u.state_path) < sizeof(tmp))
			(void)unlink(tmp);
	}
	res.parts = u.n_parts;
	res.parts_resumed = resumed;
	snprintf(res.upload_id, sizeof(res.upload_id), "%s", u.st.upload_id);
	if (ret)
		*ret = res;
	s3c_state_done(&u.st);
	pthread_mutex_destroy(&u.lock);
	return 0;
}
