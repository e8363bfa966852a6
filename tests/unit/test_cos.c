// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the object store's engine (lib/cos, without the S3 front),
 * on a real database, soft keystore, identity and key service in a temp dir:
 *   - bucket rules: names, locations, global uniqueness, delete only when
 *     empty, every change audited;
 *   - objects: put/head/read/overwrite/delete, ETag = MD5, bodies of the
 *     wrong length refused, replaced data files removed after the commit;
 *   - ListObjectsV2 with prefix, delimiter and continuation over 1500 keys;
 *   - multipart: parts, re-upload, complete (ETag of the MD5s, composite
 *     checksum), every refusal of complete, abort, the age sweep;
 *   - copy: shared files in clear, re-encryption into an SSE bucket, the
 *     copy-onto-itself refusal;
 *   - SSE-KP: the authorization needed at bucket create, round trips and
 *     ranged reads across segment and part boundaries, no plaintext in any
 *     file of the data dir, a tampered segment refused, a disabled key
 *     refusing reads and writes;
 *   - crash recovery: temporary files and orphaned data files removed at
 *     start, acknowledged objects kept.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sealvm/audit.h"
#include "sealvm/b64.h"
#include "sealvm/cos.h"
#include "sealvm/db.h"
#include "sealvm/iam.h"
#include "sealvm/keystore.h"
#include "sealvm/kms.h"
#include "sealvm/migrations.h"
#include "sealvm/rc.h"
#include "sealvm/secret.h"

#include "lib/cos/cos_engine.h"
#include "lib/iam/iam_internal.h"
#include "lib/kms/kms_internal.h"
#include "lib/rc/rc_internal.h"

static char dir[64];
static struct sealvm_db *db;
static struct sealvm_secret *master;
static unsigned char chain_key[AUDIT_CHAIN_KEY_SIZE];
static struct keystore *ks;
static struct iam *iam;
static struct rc *rc;
static struct kms *kms;
static struct cos *svc;
static char account[40];
static struct sealvm_principal owner;
static char kms_inst[40], cos_inst[40];
static struct kms_key root;

static void reason_is(const struct sealvm_err *err, const char *reason)
{
	if (strcmp(err->reason, reason) != 0)
		fail_msg("reason %s (%s), expected %s", err->reason, err->message, reason);
}

/* ---- the fixture -------------------------------------------------------------------------------
 */

static int insert_instance(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	return rc_store_insert(conn, userdata, err);
}

static void make_instance(const char *service, char out[40])
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct rc_instance i = {0};
	assert_int_equal(kms_uuid_new(out), 0);
	snprintf(i.guid, sizeof(i.guid), "%s", out);
	snprintf(i.account_id, sizeof(i.account_id), "%s", account);
	snprintf(i.crn, sizeof(i.crn), "crn:v1:sealvm:local:%s:us-south:a/%s:%s::", service,
		 account, out);
	snprintf(i.name, sizeof(i.name), "test");
	snprintf(i.resource_id, sizeof(i.resource_id), "%s", service);
	snprintf(i.region, sizeof(i.region), "us-south");
	snprintf(i.state, sizeof(i.state), "active");
	snprintf(i.created_at, sizeof(i.created_at), "2030-01-01T00:00:00Z");
	assert_int_equal(db_write(db, insert_instance, &i, &err), 0);
}

static void owner_call(struct kms_call *c, const char *action)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	memset(c, 0, sizeof(*c));
	c->kms = kms;
	c->p = &owner;
	c->audit_action = action;
	snprintf(c->correlation_id, sizeof(c->correlation_id), "unit-test");
	assert_int_equal(kms_instance_get(kms, account, kms_inst, &c->inst, &err), 0);
	kms_target(&c->inst, NULL, &c->target);
}

static int start_cos(void)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_config cfg;
	cos_config_defaults(&cfg);
	cfg.upload_sweep_interval_s = 3600;
	struct cos_deps deps = {.db = db,
				.rc = rc,
				.iam = iam,
				.kms = kms,
				.chain_key = chain_key,
				.region = "us-south",
				.data_dir = dir};
	int r = cos_new(&deps, &cfg, &svc, &err);
	if (r < 0)
		fprintf(stderr, "cos_new: %s\n", err.message);
	return r;
}

static int setup(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	size_t n = 0;
	char path[128];

	strcpy(dir, "/tmp/sealvm-test-cos-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	_cleanup_free_ struct db_migration *m = sealvm_migrations(&n);
	if (!m)
		return -1;
	snprintf(path, sizeof(path), "%s/sealvm.db", dir);
	if (db_open(path, m, n, NULL, &db, &err) < 0 || sealvm_secret_random(32, &master) < 0) {
		fprintf(stderr, "setup: %s\n", err.message);
		return -1;
	}
	memset(chain_key, 0x42, sizeof(chain_key));
	struct keystore_config kc = {.backend = "soft", .master = master};
	struct iam_config ic = {.region = "us-south"};
	struct sealvm_secret *apikey = NULL;
	if (keystore_open(&kc, &ks, &err) < 0 || iam_new(db, master, &ic, &iam, &err) < 0 ||
	    iam_bootstrap(iam, "Owner", "owner@example.com", &apikey, account, &err) < 0 ||
	    iam_authenticate_apikey(iam, (const char *)apikey->data, apikey->len, &owner, &err) <
		    0 ||
	    rc_new(db, "us-south", &rc) < 0) {
		fprintf(stderr, "setup: %s\n", err.message);
		return -1;
	}
	sealvm_secret_free(apikey);
	make_instance("kms", kms_inst);
	make_instance("cloud-object-storage", cos_inst);
	struct kms_config cfg;
	kms_config_defaults(&cfg);
	cfg.rotate_interval_s = 0;
	cfg.enable_delay_s = 0;
	struct kms_deps deps = {.db = db,
				.ks = ks,
				.rc = rc,
				.iam = iam,
				.master = master,
				.chain_key = chain_key,
				.region = "us-south"};
	if (kms_new(&deps, &cfg, &kms, &err) < 0) {
		fprintf(stderr, "kms_new: %s\n", err.message);
		return -1;
	}
	struct kms_call c;
	owner_call(&c, "kms.secrets.create");
	struct kms_create_input in = {.name = "cos-root"};
	if (kms_op_create(&c, &in, &root, &err) < 0) {
		fprintf(stderr, "key: %s\n", err.message);
		return -1;
	}
	kms_call_done(&c);
	return start_cos();
}

static int teardown(void **state)
{
	char cmd[128];
	cos_free(svc);
	kms_free(kms);
	rc_free(rc);
	iam_free(iam);
	db_close(db);
	keystore_close(ks);
	sealvm_secret_free(master);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int64_t events(const char *action_prefix)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct audit_query q = {
		.account_id = account, .action_prefix = action_prefix, .limit = 1000};
	json_t *j = NULL;
	sqlite3 *conn = db_read_begin(db);
	assert_int_equal(audit_query(conn, &q, &j, &err), 0);
	db_read_end(db, conn);
	int64_t n = (int64_t)json_array_size(json_object_get(j, "events"));
	json_decref(j);
	return n;
}

/* An event as the front would describe a success. */
static struct audit_event event(const char *action, const struct cos_bucket *b)
{
	return (struct audit_event){.action = action,
				    .outcome = AUDIT_SUCCESS,
				    .status = 200,
				    .reason_type = "OK",
				    .initiator = &owner,
				    .target_id = b ? b->crn : NULL,
				    .target_name = b ? b->name : NULL,
				    .target_type = "cloud-object-storage/bucket",
				    .account_id = account};
}

static void make_bucket(const char *name, const char *key_crn, struct cos_bucket *ret)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b = {0};
	snprintf(b.name, sizeof(b.name), "%s", name);
	snprintf(b.account_id, sizeof(b.account_id), "%s", account);
	snprintf(b.instance_guid, sizeof(b.instance_guid), "%s", cos_inst);
	snprintf(b.location, sizeof(b.location), "us-south-standard");
	if (key_crn) {
		b.sse = true;
		snprintf(b.sse_key_crn, sizeof(b.sse_key_crn), "%s", key_crn);
	}
	struct audit_event ev = event("cloud-object-storage.bucket.create", NULL);
	int r = cos_bucket_create(svc, &owner, &b, &ev, &err);
	if (r < 0)
		fail_msg("bucket %s: %s (%s)", name, err.message, err.reason);
	*ret = b;
}

static int put(const struct cos_bucket *b, const char *key, const void *data, size_t len,
	       char etag[48], struct sealvm_err *err)
{
	struct cos_writer *w = NULL;
	struct cos_put_args a = {.bucket = b, .key = key, .size = len};
	unsigned char md5[16];
	int r = cos_writer_open(svc, &a, &w, err);
	if (r < 0)
		return r;
	/* in uneven pieces, as a network delivers them */
	for (size_t off = 0, step = 1; off < len; off += step, step = step * 3 + 7) {
		step = step > len - off ? len - off : step;
		r = cos_writer_write(w, (const char *)data + off, step, err);
		if (r < 0) {
			cos_writer_abort(w);
			return r;
		}
	}
	r = cos_writer_finish(w, md5, err);
	if (r < 0) {
		cos_writer_abort(w);
		return r;
	}
	struct audit_event ev = event("cloud-object-storage.object.write", b);
	struct cos_object o = {0};
	r = cos_writer_commit(w, &ev, &o, err);
	if (r >= 0 && etag)
		snprintf(etag, 48, "%s", o.etag);
	cos_object_done(&o);
	return r;
}

static void md5_hex(const void *data, size_t len, char out[33])
{
	unsigned char d[16];
	unsigned n;
	EVP_Digest(data, len, d, &n, EVP_md5(), NULL);
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

static unsigned char *read_range(const struct cos_bucket *b, const char *key, uint64_t off,
				 size_t len)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_reader *r = NULL;
	struct cos_object o;
	if (cos_reader_open(svc, b, key, &o, &r, &err) < 0)
		fail_msg("read %s: %s", key, err.message);
	cos_object_done(&o);
	unsigned char *buf = malloc(len ? len : 1);
	ssize_t n = cos_reader_pread(r, buf, len, off, &err);
	if (n != (ssize_t)len)
		fail_msg("pread %s at %llu: %zd (%s)", key, (unsigned long long)off, n,
			 err.message);
	cos_reader_close(r);
	return buf;
}

/* Files under @path (recursively), and whether any holds @needle. */
static unsigned walk(const char *path, const void *needle, size_t nlen, bool *found)
{
	unsigned n = 0;
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		struct stat st;
		if (lstat(p, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			n += walk(p, needle, nlen, found);
			continue;
		}
		n++;
		if (!needle)
			continue;
		FILE *f = fopen(p, "rb");
		if (!f)
			continue;
		unsigned char *buf = malloc((size_t)st.st_size + 1);
		size_t got = fread(buf, 1, (size_t)st.st_size, f);
		fclose(f);
		if (memmem(buf, got, needle, nlen))
			*found = true;
		free(buf);
	}
	closedir(d);
	return n;
}

static unsigned data_files(void)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/cos/data", dir);
	return walk(p, NULL, 0, NULL);
}

static unsigned tmp_files(void)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/cos/tmp", dir);
	return walk(p, NULL, 0, NULL);
}

/*
 * The writer's buffers and its helper thread at every boundary: empty, one
 * byte, a segment, one buffer, one more byte, several buffers (the helper
 * absorbs all but the last), each read back whole and across the boundaries.
 */
static void sizes_roundtrip(const struct cos_bucket *b)
{
	static const size_t sizes[] = {0,
				       1,
				       COS_SSE_SEG,
				       COS_IO_CHUNK - 1,
				       COS_IO_CHUNK,
				       COS_IO_CHUNK + 1,
				       2 * COS_IO_CHUNK,
				       COS_WRITER_BUFS * COS_IO_CHUNK,
				       (COS_WRITER_BUFS + 3) * COS_IO_CHUNK + COS_SSE_SEG + 3};
	struct sealvm_err err = SEALVM_ERR_INIT;
	size_t max = sizes[ELEMENTSOF(sizes) - 1];
	unsigned char *data = malloc(max);
	RAND_bytes(data, (int)max);
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		size_t len = sizes[i];
		char etag[48], want[33];
		assert_int_equal(put(b, "sizes", data, len, etag, &err), 0);
		md5_hex(data, len, want);
		assert_string_equal(etag, want);
		if (!len)
			continue;
		unsigned char *got = read_range(b, "sizes", 0, len);
		assert_memory_equal(got, data, len);
		free(got);
		for (uint64_t at = COS_IO_CHUNK - 10; at < len; at += COS_IO_CHUNK) {
			size_t n = (size_t)MIN((uint64_t)20, len - at);
			got = read_range(b, "sizes", at, n);
			assert_memory_equal(got, data + at, n);
			free(got);
		}
	}
	assert_int_equal(cos_object_delete(svc, b, "sizes", NULL, &err), 0);
	free(data);
}

/* ---- buckets -----------------------------------------------------------------------------------
 */

static void test_bucket_rules(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	static const char *const bad[] = {
		"ab",
		"UPPER",
		"-start",
		"end-",
		"a..b",
		"192.168.1.1",
		"cosv1-bucket",
		"account-x",
		"xn--punny",
		"under_score",
		"a b c",
		"",
		"x234567890123456789012345678901234567890123456789012345678901234"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(cos_bucket_name_check(bad[i], &err), -EINVAL);
		reason_is(&err, "InvalidBucketName");
	}
	assert_int_equal(cos_bucket_name_check("my.bucket-01", &err), 0);
	assert_int_equal(cos_bucket_name_check("abc", &err), 0);

	assert_int_equal(cos_location_check(svc, "us-south-standard", &err), 0);
	assert_int_equal(cos_location_check(svc, "us-south-cold", &err), 0);
	assert_int_equal(cos_location_check(svc, "us-south", &err), 0);
	static const char *const badloc[] = {"eu-de-standard", "us-south-hot", "us-southx", "",
					     "us-standard"};
	for (size_t i = 0; i < ELEMENTSOF(badloc); i++) {
		sealvm_err_clear(&err);
		assert_int_equal(cos_location_check(svc, badloc[i], &err), -EINVAL);
		reason_is(&err, "InvalidLocationConstraint");
	}

	int64_t before = events("cloud-object-storage.bucket.create");
	struct cos_bucket b, got;
	make_bucket("rules-bucket", NULL, &b);
	assert_int_equal(events("cloud-object-storage.bucket.create"), before + 1);
	assert_true(strstr(b.crn, ":cloud-object-storage:") != NULL);
	assert_true(strstr(b.crn, ":bucket:rules-bucket") != NULL);
	assert_int_equal(cos_bucket_get(svc, "rules-bucket", &got, &err), 0);
	assert_string_equal(got.crn, b.crn);
	assert_false(got.sse);

	/* the same name again: ours, or someone else's */
	struct cos_bucket again = b;
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_create(svc, &owner, &again, NULL, &err), -EEXIST);
	reason_is(&err, "BucketAlreadyOwnedByYou");
	snprintf(again.account_id, sizeof(again.account_id), "ffffffffffffffffffffffffffffffff");
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_create(svc, &owner, &again, NULL, &err), -EEXIST);
	reason_is(&err, "BucketAlreadyExists");
	/* refusals change nothing and record no success */
	assert_int_equal(events("cloud-object-storage.bucket.create"), before + 1);
	struct cos_bucket badb = b;
	snprintf(badb.name, sizeof(badb.name), "Bad");
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_create(svc, &owner, &badb, NULL, &err), -EINVAL);
	reason_is(&err, "InvalidBucketName");
	badb = b;
	snprintf(badb.name, sizeof(badb.name), "other-region");
	snprintf(badb.location, sizeof(badb.location), "eu-gb-standard");
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_create(svc, &owner, &badb, NULL, &err), -EINVAL);
	reason_is(&err, "InvalidLocationConstraint");
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_get(svc, "other-region", &got, &err), -ENOENT);
	reason_is(&err, "NoSuchBucket");

	struct cos_bucket *list = NULL;
	size_t n = 0;
	make_bucket("rules-bucket-2", NULL, &got);
	assert_int_equal(cos_bucket_list(svc, cos_inst, &list, &n, &err), 0);
	bool seen1 = false, seen2 = false;
	for (size_t i = 0; i < n; i++) {
		seen1 |= strcmp(list[i].name, "rules-bucket") == 0;
		seen2 |= strcmp(list[i].name, "rules-bucket-2") == 0;
		if (i)
			assert_true(strcmp(list[i - 1].name, list[i].name) < 0);
	}
	assert_true(seen1 && seen2);
	free(list);

	/* not empty: refused; empty: gone; gone: NoSuchBucket */
	assert_int_equal(put(&b, "k", "v", 1, NULL, &err), 0);
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_delete(svc, "rules-bucket", NULL, &err), -ENOTEMPTY);
	reason_is(&err, "BucketNotEmpty");
	assert_int_equal(cos_bucket_get(svc, "rules-bucket", &got, &err), 0);
	assert_int_equal(cos_object_delete(svc, &b, "k", NULL, &err), 0);
	struct audit_event ev = event("cloud-object-storage.bucket.delete", &b);
	int64_t del_before = events("cloud-object-storage.bucket.delete");
	assert_int_equal(cos_bucket_delete(svc, "rules-bucket", &ev, &err), 0);
	assert_int_equal(events("cloud-object-storage.bucket.delete"), del_before + 1);
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_get(svc, "rules-bucket", &got, &err), -ENOENT);
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_delete(svc, "rules-bucket", NULL, &err), -ENOENT);
	reason_is(&err, "NoSuchBucket");
}

/* ---- objects -----------------------------------------------------------------------------------
 */

static void test_put_get_overwrite_delete(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b;
	char etag[48], want[33];
	size_t len = 3 * 1024 * 1024 + 17;
	unsigned char *data = malloc(len);
	RAND_bytes(data, (int)len);
	make_bucket("objects", NULL, &b);

	unsigned files = data_files();
	int64_t writes = events("cloud-object-storage.object.write");
	assert_int_equal(put(&b, "dir/file.bin", data, len, etag, &err), 0);
	md5_hex(data, len, want);
	assert_string_equal(etag, want);
	assert_int_equal(data_files(), files + 1);
	assert_int_equal(events("cloud-object-storage.object.write"), writes + 1);

	struct cos_object o;
	assert_int_equal(cos_object_head(svc, &b, "dir/file.bin", &o, &err), 0);
	assert_int_equal(o.size, len);
	assert_string_equal(o.etag, want);
	assert_string_equal(o.content_type, "binary/octet-stream");
	assert_int_equal(o.parts, 0);
	assert_false(o.sse);
	cos_object_done(&o);

	/* whole, ranged, and through the sendfile path */
	unsigned char *got = read_range(&b, "dir/file.bin", 0, len);
	assert_memory_equal(got, data, len);
	free(got);
	got = read_range(&b, "dir/file.bin", 1048570, 4000);
	assert_memory_equal(got, data + 1048570, 4000);
	free(got);
	struct cos_reader *rd = NULL;
	assert_int_equal(cos_reader_open(svc, &b, "dir/file.bin", &o, &rd, &err), 0);
	cos_object_done(&o);
	int fd;
	off_t foff;
	assert_int_equal(cos_reader_fd(rd, 100, &fd, &foff), 0);
	unsigned char small[64];
	assert_int_equal(pread(fd, small, sizeof(small), foff), (ssize_t)sizeof(small));
	assert_memory_equal(small, data + 100, sizeof(small));
	/* a read past the end is short, not an error */
	assert_int_equal(cos_reader_pread(rd, small, sizeof(small), len - 10, &err), 10);
	assert_int_equal(cos_reader_pread(rd, small, sizeof(small), len + 10, &err), 0);

	/* overwrite: the open reader keeps its snapshot; the old file goes */
	json_t *meta = json_pack("{s:s}", "color", "blue");
	struct cos_writer *w = NULL;
	struct cos_put_args a = {.bucket = &b,
				 .key = "dir/file.bin",
				 .content_type = "text/plain",
				 .meta = meta,
				 .size = 5};
	unsigned char md5[16];
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), 0);
	assert_int_equal(cos_writer_write(w, "hello", 5, &err), 0);
	assert_int_equal(cos_writer_finish(w, md5, &err), 0);
	assert_int_equal(cos_writer_commit(w, NULL, NULL, &err), 0);
	json_decref(meta);
	assert_int_equal(data_files(), files + 1);
	assert_int_equal(cos_reader_pread(rd, small, 16, 0, &err), 16);
	assert_memory_equal(small, data, 16);
	cos_reader_close(rd);
	assert_int_equal(cos_object_head(svc, &b, "dir/file.bin", &o, &err), 0);
	assert_int_equal(o.size, 5);
	assert_string_equal(o.content_type, "text/plain");
	assert_string_equal(json_string_value(json_object_get(o.meta, "color")), "blue");
	cos_object_done(&o);

	/* bodies of the wrong length, too large, bad keys: refused, nothing stored */
	a = (struct cos_put_args){.bucket = &b, .key = "short", .size = 10};
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), 0);
	assert_int_equal(cos_writer_write(w, "12345", 5, &err), 0);
	sealvm_err_clear(&err);
	assert_int_equal(cos_writer_finish(w, md5, &err), -EBADMSG);
	reason_is(&err, "IncompleteBody");
	cos_writer_abort(w);
	a.size = 3;
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), 0);
	sealvm_err_clear(&err);
	assert_int_equal(cos_writer_write(w, "12345", 5, &err), -EBADMSG);
	reason_is(&err, "IncompleteBody");
	cos_writer_abort(w);
	a.size = COS_PART_MAX + 1;
	sealvm_err_clear(&err);
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), -EFBIG);
	reason_is(&err, "EntityTooLarge");
	char longkey[COS_KEY_MAX + 2];
	memset(longkey, 'k', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	a = (struct cos_put_args){.bucket = &b, .key = longkey, .size = 1};
	sealvm_err_clear(&err);
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), -EINVAL);
	reason_is(&err, "KeyTooLongError");
	sealvm_err_clear(&err);
	assert_int_equal(cos_object_head(svc, &b, "short", &o, &err), -ENOENT);
	reason_is(&err, "NoSuchKey");
	char tmp[128];
	snprintf(tmp, sizeof(tmp), "%s/cos/tmp", dir);
	assert_int_equal(walk(tmp, NULL, 0, NULL), 0);
	assert_int_equal(data_files(), files + 1);

	/* an empty object */
	assert_int_equal(put(&b, "empty", "", 0, etag, &err), 0);
	assert_string_equal(etag, "d41d8cd98f00b204e9800998ecf8427e");

	/* delete: idempotent, audited, file removed */
	int64_t dels = events("cloud-object-storage.object.delete");
	struct audit_event ev = event("cloud-object-storage.object.delete", &b);
	assert_int_equal(cos_object_delete(svc, &b, "dir/file.bin", &ev, &err), 0);
	assert_int_equal(cos_object_delete(svc, &b, "dir/file.bin", &ev, &err), 0);
	assert_int_equal(cos_object_delete(svc, &b, "empty", NULL, &err), 0);
	assert_int_equal(events("cloud-object-storage.object.delete"), dels + 2);
	sealvm_err_clear(&err);
	assert_int_equal(cos_reader_open(svc, &b, "dir/file.bin", &o, &rd, &err), -ENOENT);
	reason_is(&err, "NoSuchKey");
	assert_int_equal(data_files(), files);
	free(data);
}

/* ---- listing -----------------------------------------------------------------------------------
 */

static void test_list(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b;
	make_bucket("listing", NULL, &b);
	/* 1200 keys under a/ (in 12 "directories"), 300 flat keys under b, and "c" */
	char key[64];
	for (int i = 0; i < 1200; i++) {
		snprintf(key, sizeof(key), "a/d%02d/k%04d", i % 12, i);
		assert_int_equal(put(&b, key, "x", 1, NULL, &err), 0);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "b%04d", i);
		assert_int_equal(put(&b, key, "yy", 2, NULL, &err), 0);
	}
	assert_int_equal(put(&b, "c", "z", 1, NULL, &err), 0);

	/* everything, 1000 at a time, in byte order */
	struct cos_list_result r;
	struct cos_list_query q = {.max_keys = 1000};
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_objects, 1000);
	assert_true(r.truncated);
	assert_non_null(r.next);
	for (size_t i = 1; i < r.n_objects; i++)
		assert_true(strcmp(r.objects[i - 1].key, r.objects[i].key) < 0);
	char next[64];
	snprintf(next, sizeof(next), "%s", r.next);
	assert_string_equal(next, r.objects[999].key);
	cos_list_result_done(&r);
	q.start_after = next;
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_objects, 501);
	assert_false(r.truncated);
	assert_null(r.next);
	assert_string_equal(r.objects[500].key, "c");
	assert_int_equal(r.objects[499].size, 2);
	cos_list_result_done(&r);

	/* delimiter at the top: prefixes "a/" then keys b… and c */
	q = (struct cos_list_query){.delimiter = "/", .max_keys = 1000};
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_prefixes, 1);
	assert_string_equal(r.prefixes[0], "a/");
	assert_int_equal(r.n_objects, 301);
	assert_false(r.truncated);
	cos_list_result_done(&r);

	/* prefix + delimiter: 12 common prefixes, paged by 5, continuing after a prefix */
	q = (struct cos_list_query){.prefix = "a/", .delimiter = "/", .max_keys = 5};
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_objects, 0);
	assert_int_equal(r.n_prefixes, 5);
	assert_string_equal(r.prefixes[0], "a/d00/");
	assert_string_equal(r.prefixes[4], "a/d04/");
	assert_true(r.truncated);
	assert_string_equal(r.next, "a/d04/");
	snprintf(next, sizeof(next), "%s", r.next);
	cos_list_result_done(&r);
	q.start_after = next;
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_prefixes, 5);
	assert_string_equal(r.prefixes[0], "a/d05/");
	assert_true(r.truncated);
	snprintf(next, sizeof(next), "%s", r.next);
	cos_list_result_done(&r);
	q.start_after = next;
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_prefixes, 2);
	assert_string_equal(r.prefixes[1], "a/d11/");
	assert_false(r.truncated);
	cos_list_result_done(&r);

	/* a prefix alone: its 100 keys */
	q = (struct cos_list_query){.prefix = "a/d03/", .max_keys = 1000};
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_objects, 100);
	for (size_t i = 0; i < r.n_objects; i++)
		assert_memory_equal(r.objects[i].key, "a/d03/", 6);
	cos_list_result_done(&r);

	/* max_keys 0, a prefix nothing has, max_keys over the limit */
	q = (struct cos_list_query){.max_keys = 0};
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_objects + r.n_prefixes, 0);
	cos_list_result_done(&r);
	q = (struct cos_list_query){.prefix = "zz", .max_keys = 10};
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), 0);
	assert_int_equal(r.n_objects + r.n_prefixes, 0);
	assert_false(r.truncated);
	cos_list_result_done(&r);
	q.max_keys = 1001;
	sealvm_err_clear(&err);
	assert_int_equal(cos_object_list(svc, &b, &q, &r, &err), -EINVAL);
	reason_is(&err, "InvalidArgument");
}

/* ---- multipart ---------------------------------------------------------------------------------
 */

static int put_part(const struct cos_bucket *b, const char *key, const char *upload_id,
		    unsigned number, const void *data, size_t len, const struct cos_checksum *ck,
		    char etag[48], struct sealvm_err *err)
{
	struct cos_writer *w = NULL;
	struct cos_put_args a = {.bucket = b,
				 .key = key,
				 .size = len,
				 .upload_id = upload_id,
				 .part_number = number};
	unsigned char md5[16];
	int r = cos_writer_open(svc, &a, &w, err);
	if (r < 0)
		return r;
	r = cos_writer_write(w, data, len, err);
	if (r >= 0)
		r = cos_writer_finish(w, md5, err);
	/* the checksum as a trailer gives it: known only after the body */
	if (r >= 0 && ck)
		r = cos_writer_set_checksum(w, ck, err);
	if (r < 0) {
		cos_writer_abort(w);
		return r;
	}
	struct cos_object o = {0};
	r = cos_writer_commit(w, NULL, &o, err);
	if (r >= 0)
		snprintf(etag, 48, "%s", o.etag);
	cos_object_done(&o);
	return r;
}

static void multipart_etag(char parts[][48], size_t n, char out[48])
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	EVP_DigestInit_ex(m, EVP_md5(), NULL);
	for (size_t i = 0; i < n; i++) {
		unsigned char bin[16];
		for (int k = 0; k < 16; k++) {
			unsigned v;
			sscanf(parts[i] + 2 * k, "%2x", &v);
			bin[k] = (unsigned char)v;
		}
		EVP_DigestUpdate(m, bin, 16);
	}
	unsigned char d[16];
	unsigned dn;
	EVP_DigestFinal_ex(m, d, &dn);
	EVP_MD_CTX_free(m);
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
	sprintf(out + 32, "-%zu", n);
}

static void crc32c_b64(const void *data, size_t len, char out[16])
{
	uint32_t c = s3_crc32c(0, data, len);
	unsigned char be[4] = {(unsigned char)(c >> 24), (unsigned char)(c >> 16),
			       (unsigned char)(c >> 8), (unsigned char)c};
	sealvm_b64_encode(be, 4, out, false);
}

static void multipart_roundtrip(const struct cos_bucket *b)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_upload up;
	size_t p1 = COS_PART_MIN, p2 = COS_PART_MIN + 100000, p3 = 77777;
	size_t total = p1 + p2 + p3;
	unsigned char *data = malloc(total);
	RAND_bytes(data, (int)total);
	char etags[3][48], old2[48];

	unsigned files = data_files();
	assert_int_equal(cos_upload_create(svc, &owner, b, "big/object", "video/mp4", NULL,
					   S3_CHECKSUM_NONE, NULL, &up, &err),
			 0);
	assert_int_equal(strlen(up.upload_id), COS_UPLOAD_ID_LEN);
	struct cos_upload g;
	assert_int_equal(cos_upload_get(svc, b, "big/object", up.upload_id, &g, &err), 0);
	sealvm_err_clear(&err);
	assert_int_equal(cos_upload_get(svc, b, "other", up.upload_id, &g, &err), -ENOENT);
	reason_is(&err, "NoSuchUpload");

	/* part 2 first with wrong bytes, then again: the re-upload replaces it */
	assert_int_equal(put_part(b, "big/object", up.upload_id, 2, data, p2, NULL, old2, &err), 0);
	assert_int_equal(put_part(b, "big/object", up.upload_id, 1, data, p1, NULL, etags[0], &err),
			 0);
	assert_int_equal(
		put_part(b, "big/object", up.upload_id, 2, data + p1, p2, NULL, etags[1], &err), 0);
	assert_string_not_equal(old2, etags[1]);
	assert_int_equal(put_part(b, "big/object", up.upload_id, 3, data + p1 + p2, p3, NULL,
				  etags[2], &err),
			 0);
	assert_int_equal(put_part(b, "big/object", up.upload_id, 9, "unnamed", 7, NULL, old2, &err),
			 0);
	assert_int_equal(data_files(), files + 4);

	/* part numbers out of range, unknown upload */
	char e[48];
	sealvm_err_clear(&err);
	assert_int_equal(put_part(b, "big/object", up.upload_id, 10001, "x", 1, NULL, e, &err),
			 -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(put_part(b, "big/object", "00000000000000000000000000000000", 1, "x", 1,
				  NULL, e, &err),
			 -ENOENT);
	reason_is(&err, "NoSuchUpload");

	struct cos_part *parts = NULL;
	size_t n = 0;
	bool trunc = true;
	assert_int_equal(cos_upload_parts(svc, up.upload_id, 0, 2, &parts, &n, &trunc, &err), 0);
	assert_int_equal(n, 2);
	assert_true(trunc);
	assert_int_equal(parts[1].number, 2);
	assert_string_equal(parts[1].etag, etags[1]);
	free(parts);
	assert_int_equal(cos_upload_parts(svc, up.upload_id, 2, 10, &parts, &n, &trunc, &err), 0);
	assert_int_equal(n, 2);
	assert_false(trunc);
	assert_int_equal(parts[0].number, 3);
	assert_int_equal(parts[0].size, p3);
	free(parts);

	struct cos_upload *ups = NULL;
	assert_int_equal(cos_upload_list(svc, b, "big/", 10, &ups, &n, &trunc, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ups[0].upload_id, up.upload_id);
	free(ups);

	/* complete's refusals: each leaves the upload as it was */
	struct s3_part list[3] = {0};
	for (int i = 0; i < 3; i++) {
		list[i].number = (unsigned)i + 1;
		snprintf(list[i].etag, sizeof(list[i].etag), "%.47s", etags[i]);
	}
	struct s3_part badl[3];
	memcpy(badl, list, sizeof(list));
	badl[1].etag[0] = badl[1].etag[0] == 'a' ? 'b' : 'a';
	sealvm_err_clear(&err);
	assert_int_equal(
		cos_upload_complete(svc, b, "big/object", up.upload_id, badl, 3, NULL, NULL, &err),
		-EINVAL);
	reason_is(&err, "InvalidPart");
	memcpy(badl, list, sizeof(list));
	badl[2].number = 4;
	sealvm_err_clear(&err);
	assert_int_equal(
		cos_upload_complete(svc, b, "big/object", up.upload_id, badl, 3, NULL, NULL, &err),
		-EINVAL);
	reason_is(&err, "InvalidPart");
	memcpy(badl, list, sizeof(list));
	badl[0] = list[1];
	badl[1] = list[0];
	sealvm_err_clear(&err);
	assert_int_equal(
		cos_upload_complete(svc, b, "big/object", up.upload_id, badl, 3, NULL, NULL, &err),
		-EINVAL);
	reason_is(&err, "InvalidPartOrder");
	/* part 3 (77777 bytes) before part 9: too small */
	struct s3_part small[2] = {list[2], {.number = 9}};
	snprintf(small[1].etag, sizeof(small[1].etag), "%s", old2);
	sealvm_err_clear(&err);
	assert_int_equal(
		cos_upload_complete(svc, b, "big/object", up.upload_id, small, 2, NULL, NULL, &err),
		-EINVAL);
	reason_is(&err, "EntityTooSmall");
	sealvm_err_clear(&err);
	assert_int_equal(cos_upload_complete(svc, b, "big/object",
					     "ffffffffffffffffffffffffffffffff", list, 3, NULL,
					     NULL, &err),
			 -ENOENT);
	reason_is(&err, "NoSuchUpload");
	assert_int_equal(cos_upload_get(svc, b, "big/object", up.upload_id, &g, &err), 0);

	/* complete: one object from the parts' files, part 9's file removed */
	int64_t before = events("cloud-object-storage.multipart.complete");
	struct audit_event ev = event("cloud-object-storage.multipart.complete", b);
	struct cos_object o;
	assert_int_equal(
		cos_upload_complete(svc, b, "big/object", up.upload_id, list, 3, &ev, &o, &err), 0);
	assert_int_equal(events("cloud-object-storage.multipart.complete"), before + 1);
	char want[48];
	multipart_etag(etags, 3, want);
	assert_string_equal(o.etag, want);
	assert_int_equal(o.size, total);
	assert_int_equal(o.parts, 3);
	assert_int_equal(o.sse, b->sse);
	cos_object_done(&o);
	assert_int_equal(data_files(), files + 3);
	sealvm_err_clear(&err);
	assert_int_equal(cos_upload_get(svc, b, "big/object", up.upload_id, &g, &err), -ENOENT);
	assert_int_equal(cos_object_head(svc, b, "big/object", &o, &err), 0);
	assert_string_equal(o.content_type, "video/mp4");
	cos_object_done(&o);

	/* reads across part boundaries (and segment boundaries when encrypted) */
	unsigned char *got = read_range(b, "big/object", 0, total);
	assert_memory_equal(got, data, total);
	free(got);
	uint64_t offs[] = {p1 - 5, p1 + p2 - 70000, 65536 - 3, p1 + 65530, total - 9};
	size_t lens[] = {10, 70100, 7, 20, 9};
	for (size_t i = 0; i < ELEMENTSOF(offs); i++) {
		got = read_range(b, "big/object", offs[i], lens[i]);
		assert_memory_equal(got, data + offs[i], lens[i]);
		free(got);
	}
	struct cos_reader *rd = NULL;
	int fd;
	off_t fo;
	assert_int_equal(cos_reader_open(svc, b, "big/object", &o, &rd, &err), 0);
	assert_int_equal(cos_reader_fd(rd, 0, &fd, &fo), -ENOTSUP);
	cos_reader_close(rd);
	cos_object_done(&o);
	struct audit_event dev = event("cloud-object-storage.object.delete", b);
	assert_int_equal(cos_object_delete(svc, b, "big/object", &dev, &err), 0);
	assert_int_equal(data_files(), files);
	free(data);
}

static void test_multipart(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b;
	make_bucket("multipart", NULL, &b);
	multipart_roundtrip(&b);

	/* abort: rows and files go; twice: NoSuchUpload */
	struct cos_upload up;
	char e[48];
	unsigned files = data_files();
	assert_int_equal(cos_upload_create(svc, &owner, &b, "aborted", NULL, NULL, S3_CHECKSUM_NONE,
					   NULL, &up, &err),
			 0);
	assert_int_equal(put_part(&b, "aborted", up.upload_id, 1, "abc", 3, NULL, e, &err), 0);
	assert_int_equal(data_files(), files + 1);
	struct audit_event ev = event("cloud-object-storage.multipart.abort", &b);
	assert_int_equal(cos_upload_abort(svc, &b, "aborted", up.upload_id, &ev, &err), 0);
	assert_int_equal(data_files(), files);
	sealvm_err_clear(&err);
	assert_int_equal(cos_upload_abort(svc, &b, "aborted", up.upload_id, &ev, &err), -ENOENT);
	reason_is(&err, "NoSuchUpload");

	/* composite checksum: CRC32C of the parts' CRC32Cs, "-N"; parts must carry it */
	assert_int_equal(cos_upload_create(svc, &owner, &b, "summed", NULL, NULL,
					   S3_CHECKSUM_CRC32C, NULL, &up, &err),
			 0);
	size_t p1 = COS_PART_MIN;
	unsigned char *d1 = calloc(1, p1);
	memset(d1, 'q', p1);
	struct cos_checksum c1 = {.algo = S3_CHECKSUM_CRC32C}, c2 = c1;
	crc32c_b64(d1, p1, c1.value);
	crc32c_b64("tail", 4, c2.value);
	char et[2][48];
	sealvm_err_clear(&err);
	assert_int_equal(put_part(&b, "summed", up.upload_id, 1, d1, p1, NULL, et[0], &err),
			 -EINVAL);
	reason_is(&err, "InvalidRequest");
	assert_int_equal(put_part(&b, "summed", up.upload_id, 1, d1, p1, &c1, et[0], &err), 0);
	assert_int_equal(put_part(&b, "summed", up.upload_id, 2, "tail", 4, &c2, et[1], &err), 0);
	struct s3_part list[2] = {{.number = 1}, {.number = 2}};
	snprintf(list[0].etag, sizeof(list[0].etag), "%s", et[0]);
	snprintf(list[1].etag, sizeof(list[1].etag), "%s", et[1]);
	snprintf(list[1].checksum_crc32c, sizeof(list[1].checksum_crc32c), "AAAAAA==");
	sealvm_err_clear(&err);
	assert_int_equal(
		cos_upload_complete(svc, &b, "summed", up.upload_id, list, 2, NULL, NULL, &err),
		-EINVAL);
	reason_is(&err, "InvalidPart");
	snprintf(list[1].checksum_crc32c, sizeof(list[1].checksum_crc32c), "%.15s", c2.value);
	struct cos_object o;
	assert_int_equal(
		cos_upload_complete(svc, &b, "summed", up.upload_id, list, 2, NULL, &o, &err), 0);
	unsigned char raw[8];
	sealvm_b64_decode(c1.value, strlen(c1.value), raw, false);
	sealvm_b64_decode(c2.value, strlen(c2.value), raw + 4, false);
	char want[32];
	crc32c_b64(raw, 8, want);
	strcat(want, "-2");
	assert_int_equal(o.checksum.algo, S3_CHECKSUM_CRC32C);
	assert_string_equal(o.checksum.value, want);
	cos_object_done(&o);
	free(d1);

	/* the sweep: uploads older than the maximum age are aborted, audited by the service */
	assert_int_equal(cos_upload_create(svc, &owner, &b, "stale", NULL, NULL, S3_CHECKSUM_NONE,
					   NULL, &up, &err),
			 0);
	assert_int_equal(put_part(&b, "stale", up.upload_id, 1, "abc", 3, NULL, e, &err), 0);
	unsigned n = 99;
	int64_t now = cos_now_ms();
	assert_int_equal(cos_sweep_uploads(svc, now, &n, &err), 0);
	assert_int_equal(n, 0);
	int64_t before = events("cloud-object-storage.multipart.abort");
	assert_int_equal(cos_sweep_uploads(svc, now + 8 * 86400 * 1000LL, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(events("cloud-object-storage.multipart.abort"), before + 1);
	sealvm_err_clear(&err);
	assert_int_equal(cos_upload_get(svc, &b, "stale", up.upload_id, &up, &err), -ENOENT);
}

/* ---- copy --------------------------------------------------------------------------------------
 */

static void test_copy(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket a, b;
	make_bucket("copy-src", NULL, &a);
	make_bucket("copy-dst", NULL, &b);
	char etag[48];
	assert_int_equal(put(&a, "orig", "copy me please", 14, etag, &err), 0);
	unsigned files = data_files();
	struct cos_object o;
	assert_int_equal(cos_object_copy(svc, &a, "orig", &b, "copied", NULL, NULL, NULL, &o, &err),
			 0);
	assert_string_equal(o.etag, etag);
	cos_object_done(&o);
	assert_int_equal(data_files(), files); /* shared */
	unsigned char *got = read_range(&b, "copied", 0, 14);
	assert_memory_equal(got, "copy me please", 14);
	free(got);
	/* deleting the source keeps the shared file for the copy */
	assert_int_equal(cos_object_delete(svc, &a, "orig", NULL, &err), 0);
	assert_int_equal(data_files(), files);
	got = read_range(&b, "copied", 5, 2);
	assert_memory_equal(got, "me", 2);
	free(got);

	sealvm_err_clear(&err);
	assert_int_equal(
		cos_object_copy(svc, &b, "copied", &b, "copied", NULL, NULL, NULL, &o, &err),
		-EINVAL);
	reason_is(&err, "InvalidRequest");
	sealvm_err_clear(&err);
	assert_int_equal(cos_object_copy(svc, &a, "orig", &b, "x", NULL, NULL, NULL, &o, &err),
			 -ENOENT);
	reason_is(&err, "NoSuchKey");
	json_t *meta = json_pack("{s:s}", "k", "v");
	assert_int_equal(
		cos_object_copy(svc, &b, "copied", &b, "copied", "text/x", meta, NULL, &o, &err),
		0);
	cos_object_done(&o);
	json_decref(meta);
	assert_int_equal(cos_object_head(svc, &b, "copied", &o, &err), 0);
	assert_string_equal(o.content_type, "text/x");
	assert_string_equal(json_string_value(json_object_get(o.meta, "k")), "v");
	cos_object_done(&o);
	assert_int_equal(data_files(), files);
	assert_int_equal(cos_object_delete(svc, &b, "copied", NULL, &err), 0);
	assert_int_equal(data_files(), files - 1);
}

/* ---- SSE-KP ------------------------------------------------------------------------------------
 */

static int add_authorization(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	const struct iam_policy_spec *spec = userdata;
	char id[37], etag[40], now[32], by[] = "unit-test";
	iam_policy_new_id(id);
	iam_policy_new_etag(etag);
	iam_policy_time(now);
	struct iam_policy_row row = {.id = id,
				     .account_id = account,
				     .type = "authorization",
				     .subject = spec->subject,
				     .subjects = spec->subjects_json,
				     .roles = spec->roles_json,
				     .resources = spec->resources_json,
				     .etag = etag,
				     .created_at = now,
				     .created_by_id = by,
				     .last_modified_at = now,
				     .last_modified_by_id = by};
	return iam_access_store_insert(conn, &row, spec->rules, spec->n_rules, err);
}

static void authorize_cos(void)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char text[1024];
	snprintf(text, sizeof(text),
		 "{\"type\":\"authorization\",\"subjects\":[{\"attributes\":[{\"name\":"
		 "\"accountId\",\"value\":\"%s\"},{\"name\":\"serviceName\",\"value\":"
		 "\"cloud-object-storage\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:"
		 "iam::::serviceRole:Reader\"}],\"resources\":[{\"attributes\":[{\"name\":"
		 "\"accountId\",\"value\":\"%s\"},{\"name\":\"serviceName\",\"value\":\"kms\"},"
		 "{\"name\":\"serviceInstance\",\"value\":\"%s\"}]}]}",
		 account, account, kms_inst);
	json_t *body = json_loads(text, 0, NULL);
	struct iam_policy_spec spec;
	assert_int_equal(iam_policy_parse(body, account, &spec, &err), 0);
	assert_int_equal(db_write(db, add_authorization, &spec, &err), 0);
	iam_policy_spec_done(&spec);
	json_decref(body);
}

static void set_key_state(enum kms_action a)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct kms_call c;
	owner_call(&c, a == KMS_A_DISABLE ? "kms.secrets.disable" : "kms.secrets.enable");
	int r = kms_op_set_state(&c, root.id, a, NULL, &err);
	if (r < 0)
		fail_msg("key state: %s", err.message);
	kms_call_done(&c);
}

static void test_sse(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b = {0}, plain;

	/* without the customer's authorization: refused, no bucket */
	snprintf(b.name, sizeof(b.name), "secret");
	snprintf(b.account_id, sizeof(b.account_id), "%s", account);
	snprintf(b.instance_guid, sizeof(b.instance_guid), "%s", cos_inst);
	snprintf(b.location, sizeof(b.location), "us-south-standard");
	b.sse = true;
	snprintf(b.sse_key_crn, sizeof(b.sse_key_crn), "%s", root.crn);
	assert_int_equal(cos_bucket_create(svc, &owner, &b, NULL, &err), -EACCES);
	reason_is(&err, "KMSAccessDenied");
	assert_non_null(strstr(err.message, "cloud-object-storage → kms (Reader)"));
	sealvm_err_clear(&err);
	assert_int_equal(cos_bucket_get(svc, "secret", &plain, &err), -ENOENT);
	/* a CRN that is no key, another account's, another region's */
	for (int i = 0; i < 3; i++) {
		char crn[320];
		if (i == 0)
			snprintf(crn, sizeof(crn), "crn:v1:nope");
		else
			snprintf(crn, sizeof(crn), "crn:v1:sealvm:local:kms:%s:a/%s:%s:key:%s",
				 i == 2 ? "eu-de" : "us-south",
				 i == 1 ? "ffffffffffffffffffffffffffffffff" : account, kms_inst,
				 root.id);
		snprintf(b.sse_key_crn, sizeof(b.sse_key_crn), "%s", crn);
		sealvm_err_clear(&err);
		assert_int_equal(cos_bucket_create(svc, &owner, &b, NULL, &err), -EINVAL);
		reason_is(&err, "InvalidArgument");
	}

	authorize_cos();
	make_bucket("secret", root.crn, &b);
	assert_true(b.sse);
	assert_string_equal(b.sse_key_id, root.id);
	assert_string_equal(b.sse_instance, kms_inst);
	make_bucket("plain-for-sse", NULL, &plain);

	/* 200 KiB + a bit: several segments; marker bytes that must never reach the disk */
	size_t len = 200 * 1024 + 123;
	unsigned char *data = malloc(len);
	RAND_bytes(data, (int)len);
	char etag[48], want[33];
	int64_t unwraps = events("kms.secrets.unwrap");
	assert_int_equal(put(&b, "doc", data, len, etag, &err), 0);
	md5_hex(data, len, want);
	assert_string_equal(etag, want);
	struct cos_object o;
	assert_int_equal(cos_object_head(svc, &b, "doc", &o, &err), 0);
	assert_true(o.sse);
	cos_object_done(&o);
	unsigned char *got = read_range(&b, "doc", 0, len);
	assert_memory_equal(got, data, len);
	free(got);
	assert_int_equal(events("kms.secrets.unwrap"), unwraps + 1);
	uint64_t offs[] = {65535, 65536, 131000, len - 1, 0, 70000};
	size_t lens[] = {2, 65536, 2000, 1, 65537, 100};
	for (size_t i = 0; i < ELEMENTSOF(offs); i++) {
		got = read_range(&b, "doc", offs[i], lens[i]);
		assert_memory_equal(got, data + offs[i], lens[i]);
		free(got);
	}
	struct cos_reader *rd = NULL;
	int fd;
	off_t fo;
	assert_int_equal(cos_reader_open(svc, &b, "doc", &o, &rd, &err), 0);
	cos_object_done(&o);
	assert_int_equal(cos_reader_fd(rd, 0, &fd, &fo), -ENOTSUP);
	/* small reads one after another: served from the segment last opened */
	for (uint64_t off = 65000; off < 67000; off += 100) {
		unsigned char s[100];
		assert_int_equal(cos_reader_pread(rd, s, 100, off, &err), 100);
		assert_memory_equal(s, data + off, 100);
	}
	cos_reader_close(rd);

	/* multipart under SSE: ranges across parts and segments */
	multipart_roundtrip(&b);

	/* copies between clear and encrypted buckets re-encrypt / decrypt */
	assert_int_equal(
		cos_object_copy(svc, &b, "doc", &plain, "doc-clear", NULL, NULL, NULL, &o, &err),
		0);
	assert_false(o.sse);
	assert_string_equal(o.etag, want);
	cos_object_done(&o);
	got = read_range(&plain, "doc-clear", 0, len);
	assert_memory_equal(got, data, len);
	free(got);
	assert_int_equal(cos_object_copy(svc, &plain, "doc-clear", &b, "doc-again", NULL, NULL,
					 NULL, &o, &err),
			 0);
	assert_true(o.sse);
	cos_object_done(&o);
	got = read_range(&b, "doc-again", 1000, 1000);
	assert_memory_equal(got, data + 1000, 1000);
	free(got);
	assert_int_equal(cos_object_delete(svc, &plain, "doc-clear", NULL, &err), 0);

	/* no 32-byte window of the plaintext anywhere under the data dir */
	bool found = false;
	walk(dir, data + 5000, 32, &found);
	assert_false(found);
	walk(dir, data + len - 40, 32, &found);
	assert_false(found);

	/* a flipped bit in the second segment: that range fails, the first still reads */
	char path[256];
	struct cos_row row;
	sqlite3 *conn = db_read_begin(db);
	assert_int_equal(cos_store_object_get(conn, "secret", "doc", false, &row, &err), 0);
	db_read_end(db, conn);
	assert_null(strstr(row.wdek, "\n"));
	snprintf(path, sizeof(path), "%s/cos/data/%s", dir, row.ext[0].file);
	cos_row_done(&row);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal((uint64_t)st.st_size, cos_sse_disk_size(len));
	int wfd = open(path, O_RDWR);
	assert_true(wfd >= 0);
	unsigned char byte;
	off_t where = COS_SSE_HDR + COS_SSE_SEG + COS_SSE_TAG + 10;
	assert_int_equal(pread(wfd, &byte, 1, where), 1);
	byte ^= 1;
	assert_int_equal(pwrite(wfd, &byte, 1, where), 1);
	assert_int_equal(cos_reader_open(svc, &b, "doc", &o, &rd, &err), 0);
	cos_object_done(&o);
	unsigned char *buf = malloc(len);
	sealvm_err_clear(&err);
	assert_int_equal(cos_reader_pread(rd, buf, 100, COS_SSE_SEG + 5, &err), -EBADMSG);
	reason_is(&err, "InternalError");
	assert_int_equal(cos_reader_pread(rd, buf, 100, 5, &err), 100);
	assert_memory_equal(buf, data + 5, 100);
	cos_reader_close(rd);
	/* truncated: the final segment is gone, so the (now last) one fails too */
	byte ^= 1;
	assert_int_equal(pwrite(wfd, &byte, 1, where), 1);
	assert_int_equal(ftruncate(wfd, COS_SSE_HDR + 2 * (COS_SSE_SEG + COS_SSE_TAG)), 0);
	close(wfd);
	assert_int_equal(cos_reader_open(svc, &b, "doc", &o, &rd, &err), 0);
	cos_object_done(&o);
	sealvm_err_clear(&err);
	assert_int_equal(cos_reader_pread(rd, buf, len, 0, &err), -EBADMSG);
	cos_reader_close(rd);
	free(buf);

	/* key disabled: no reads, no writes; enabled again: both work */
	set_key_state(KMS_A_DISABLE);
	sealvm_err_clear(&err);
	assert_int_equal(cos_reader_open(svc, &b, "doc-again", &o, &rd, &err), -EKEYREVOKED);
	reason_is(&err, "KMSKeyDisabled");
	struct cos_writer *w = NULL;
	struct cos_put_args a = {.bucket = &b, .key = "new", .size = 1};
	sealvm_err_clear(&err);
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), -EKEYREVOKED);
	reason_is(&err, "KMSKeyDisabled");
	set_key_state(KMS_A_ENABLE);
	got = read_range(&b, "doc-again", 0, 10);
	assert_memory_equal(got, data, 10);
	free(got);

	/* rotation: the stored wrapped DEK is replaced at the next read */
	struct kms_call c;
	owner_call(&c, "kms.secrets.rotate");
	assert_int_equal(kms_op_rotate(&c, root.id, NULL, &err), 0);
	kms_call_done(&c);
	conn = db_read_begin(db);
	assert_int_equal(cos_store_object_get(conn, "secret", "doc-again", false, &row, &err), 0);
	db_read_end(db, conn);
	char old_version[40];
	snprintf(old_version, sizeof(old_version), "%s", row.key_version);
	cos_row_done(&row);
	got = read_range(&b, "doc-again", 0, 10);
	free(got);
	conn = db_read_begin(db);
	assert_int_equal(cos_store_object_get(conn, "secret", "doc-again", false, &row, &err), 0);
	db_read_end(db, conn);
	assert_string_not_equal(row.key_version, old_version);
	cos_row_done(&row);
	got = read_range(&b, "doc-again", 0, 10);
	assert_memory_equal(got, data, 10);
	free(got);

	sizes_roundtrip(&b);

	/* bucket delete removes the key registration */
	assert_int_equal(cos_object_delete(svc, &b, "doc", NULL, &err), 0);
	assert_int_equal(cos_object_delete(svc, &b, "doc-again", NULL, &err), 0);
	int64_t regs = events("kms.registrations.delete");
	assert_int_equal(cos_bucket_delete(svc, "secret", NULL, &err), 0);
	assert_int_equal(events("kms.registrations.delete"), regs + 1);
	free(data);
}

/* ---- the writer's buffers and helper thread
 * ------------------------------------------------------
 */

static void test_writer_pipeline(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b;
	make_bucket("pipeline", NULL, &b);
	sizes_roundtrip(&b);

	/*
	 * The helper's write fails (a file-size limit, SIGXFSZ ignored) while the
	 * body is still arriving: a later write already fails with the reason (the
	 * request thread learns it at the next hand-off, before the body ends), and
	 * the PUT leaves no object, no data file and no temp file.
	 */
	size_t len = 8 * COS_IO_CHUNK, at = 0;
	unsigned char *data = calloc(1, len);
	unsigned files = data_files(), tmps = tmp_files();
	struct rlimit old, lim = {.rlim_cur = COS_IO_CHUNK + COS_IO_CHUNK / 2};
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	struct cos_writer *w = NULL;
	struct cos_put_args a = {.bucket = &b, .key = "too-big", .size = len};
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), 0);
	int r = 0;
	for (; at < len && r == 0; at += COS_SSE_SEG)
		r = cos_writer_write(w, data + at, COS_SSE_SEG, &err);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_int_equal(r, -EFBIG);
	assert_true(at < len);
	reason_is(&err, "InternalError");
	assert_non_null(strstr(err.message, "cannot write object data"));
	cos_writer_abort(w);
	struct cos_object o;
	sealvm_err_clear(&err);
	assert_int_equal(cos_object_head(svc, &b, "too-big", &o, &err), -ENOENT);
	assert_int_equal(data_files(), files);
	assert_int_equal(tmp_files(), tmps);

	/* An abandoned body (the client went away) with buffers in the helper's hands. */
	a.key = "abandoned";
	assert_int_equal(cos_writer_open(svc, &a, &w, &err), 0);
	assert_int_equal(cos_writer_write(w, data, 5 * COS_IO_CHUNK + 7, &err), 0);
	cos_writer_abort(w);
	assert_int_equal(tmp_files(), tmps);
	assert_int_equal(cos_bucket_delete(svc, "pipeline", NULL, &err), 0);
	free(data);
}

/* ---- a reader of a many-part object outlives its overwrite
 * ---------------------------------------
 */

static void test_reader_pins(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b;
	struct cos_upload up;
	make_bucket("pins", NULL, &b);
	/* readers open 2 extents at once; the other 2 of this 4-part object open on demand */
	cos_engine(svc)->reader_eager_fds = 2;
	size_t part = COS_PART_MIN, total = 3 * part + 1000;
	unsigned char *data = malloc(total);
	RAND_bytes(data, (int)total);
	unsigned files = data_files();
	assert_int_equal(cos_upload_create(svc, &owner, &b, "many", NULL, NULL, S3_CHECKSUM_NONE,
					   NULL, &up, &err),
			 0);
	struct s3_part list[4] = {0};
	for (unsigned i = 0; i < 4; i++) {
		size_t off = i * part, len = i < 3 ? part : 1000;
		list[i].number = i + 1;
		assert_int_equal(put_part(&b, "many", up.upload_id, i + 1, data + off, len, NULL,
					  list[i].etag, &err),
				 0);
	}
	assert_int_equal(
		cos_upload_complete(svc, &b, "many", up.upload_id, list, 4, NULL, NULL, &err), 0);
	assert_int_equal(data_files(), files + 4);

	/* a reader, then the object overwritten and the orphan sweep run (files of any age) */
	struct cos_object o;
	struct cos_reader *rd = NULL;
	assert_int_equal(cos_reader_open(svc, &b, "many", &o, &rd, &err), 0);
	cos_object_done(&o);
	assert_int_equal(put(&b, "many", "new", 3, NULL, &err), 0);
	unsigned n = 0;
	assert_int_equal(cos_orphan_sweep(svc, INT64_MAX, &n, &err), 0);
	/* the two pinned files stay (one new file besides): the reader reads the old object whole
	 */
	assert_int_equal(data_files(), files + 3);
	unsigned char *got = malloc(total);
	assert_int_equal(cos_reader_pread(rd, got, total, 0, &err), (ssize_t)total);
	assert_memory_equal(got, data, total);
	/* its last read: the pinned files go with it */
	cos_reader_close(rd);
	assert_int_equal(data_files(), files + 1);
	unsigned char *now = read_range(&b, "many", 0, 3);
	assert_memory_equal(now, "new", 3);
	free(now);

	/* deleted while read: the same */
	assert_int_equal(cos_object_delete(svc, &b, "many", NULL, &err), 0);
	cos_engine(svc)->reader_eager_fds = 64;
	assert_int_equal(data_files(), files);
	assert_int_equal(cos_bucket_delete(svc, "pins", NULL, &err), 0);
	free(got);
	free(data);
}

/* ---- crash recovery ----------------------------------------------------------------------------
 */

static void test_recovery(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_bucket b;
	make_bucket("survivor", NULL, &b);
	assert_int_equal(put(&b, "kept", "acknowledged", 12, NULL, &err), 0);
	struct cos_upload up;
	char e[48];
	assert_int_equal(cos_upload_create(svc, &owner, &b, "mp", NULL, NULL, S3_CHECKSUM_NONE,
					   NULL, &up, &err),
			 0);
	assert_int_equal(put_part(&b, "mp", up.upload_id, 1, "part", 4, NULL, e, &err), 0);
	unsigned files = data_files();
	cos_free(svc);
	svc = NULL;

	/* what a crash leaves: a body being written, a named file whose row never committed */
	char p[256];
	snprintf(p, sizeof(p), "%s/cos/tmp/0123456789abcdef0123456789abcdef", dir);
	FILE *f = fopen(p, "w");
	fputs("half a body", f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/cos/data/ab/ab23456789abcdef0123456789abcdef", dir);
	f = fopen(p, "w");
	fputs("never committed", f);
	fclose(f);
	struct timespec old[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
	assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
	assert_int_equal(data_files(), files + 1);

	assert_int_equal(start_cos(), 0);
	snprintf(p, sizeof(p), "%s/cos/tmp", dir);
	assert_int_equal(walk(p, NULL, 0, NULL), 0);
	assert_int_equal(data_files(), files);
	unsigned char *got = read_range(&b, "kept", 0, 12);
	assert_memory_equal(got, "acknowledged", 12);
	free(got);
	struct cos_part *parts = NULL;
	size_t n = 0;
	bool t;
	assert_int_equal(cos_upload_parts(svc, up.upload_id, 0, 10, &parts, &n, &t, &err), 0);
	assert_int_equal(n, 1);
	free(parts);

	/* directories 0700, files 0600 */
	struct stat st;
	snprintf(p, sizeof(p), "%s/cos", dir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(p, sizeof(p), "%s/cos/data/00", dir);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_audit_helper(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int64_t before = events("cloud-object-storage.object.read");
	struct audit_event ev = event("cloud-object-storage.object.read", NULL);
	ev.data_event = true;
	assert_int_equal(cos_audit(svc, &ev, &err), 0);
	assert_int_equal(events("cloud-object-storage.object.read"), before + 1);
	struct audit_event bad = {.action = NULL, .status = 200};
	sealvm_err_clear(&err);
	assert_int_equal(cos_audit(svc, &bad, &err), -EIO);
	reason_is(&err, "AUDIT_UNAVAILABLE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_rules),
		cmocka_unit_test(test_put_get_overwrite_delete),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_multipart),
		cmocka_unit_test(test_copy),
		cmocka_unit_test(test_sse),
		cmocka_unit_test(test_writer_pipeline),
		cmocka_unit_test(test_reader_pins),
		cmocka_unit_test(test_recovery),
		cmocka_unit_test(test_audit_helper),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
