// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the resource controller's HMAC keys (lib/rc/rc_hmac*.c) on a
 * real database:
 *   - rc_hmac_lookup: the secret opens and who the key acts as (the creator, or
 *     a service ID), credential type "hmac";
 *   - a secret sealed for one access key id does not open for another (the AAD
 *     names the key id), nor under another master key;
 *   - unknown and malformed key ids, a deleted key, a deleted instance, a deleted
 *     service ID: InvalidAccessKeyId, at once; no master key: HMAC_UNAVAILABLE;
 *   - rc_hmac_sigv4_lookup as the verifier's callback: a URL presigned with the
 *     secret verifies, and not once the key is deleted.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sealvm/db.h"
#include "sealvm/iam.h"
#include "sealvm/rc.h"
#include "sealvm/seal.h"
#include "sealvm/secret.h"
#include "sealvm/sigv4.h"

#include "lib/rc/rc_internal.h"

static char dir[64];
static struct sealvm_db *db;
static struct sealvm_secret *master;
static struct iam *iam;
static struct rc *rc;
static char account[40];
static char cos_inst[40] = "5b1d5c1e-0000-4000-8000-000000000001";
static int seq;

static void reason_is(const struct sealvm_err *err, const char *reason)
{
	if (strcmp(err->reason, reason) != 0)
		fail_msg("reason %s (%s), expected %s", err->reason, err->message, reason);
}

static int run_sql(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	char *msg = NULL;
	int r = sqlite3_exec(conn, userdata, NULL, NULL, &msg);
	if (r != SQLITE_OK)
		sealvm_err_set(err, -EIO, "SQL", "%s", msg ? msg : "?");
	sqlite3_free(msg);
	return r == SQLITE_OK ? 0 : -EIO;
}

static void sql(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sql(const char *fmt, ...)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	assert_true(vasprintf(&s, fmt, ap) > 0);
	va_end(ap);
	if (db_write(db, run_sql, s, &err) < 0)
		fail_msg("%s: %s", s, err.message);
	free(s);
}

struct insert {
	struct rc_hmac_key k;
	unsigned char *blob;
	size_t len;
};

static int insert_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct insert *in = userdata;
	return rc_hmac_store_insert(conn, &in->k, in->blob, in->len, err);
}

/*
 * Stores a key @akid on instance @inst acting as @iam_id (@kind), its secret
 * @secret sealed for @sealed_for (normally @akid itself).
 */
static void store_key(const char *akid, const char *sealed_for, const char *secret,
		      const char *inst, int kind, const char *iam_id)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *s = NULL;
	struct insert in = {0};
	char aad[64];
	assert_int_equal(sealvm_secret_from(secret, strlen(secret), &s), 0);
	rc_hmac_aad(sealed_for, aad);
	assert_int_equal(seal_blob(master, aad, s, &in.blob, &in.len, &err), 0);
	sealvm_secret_free(s);
	snprintf(in.k.guid, sizeof(in.k.guid), "key-%d", ++seq);
	snprintf(in.k.crn, sizeof(in.k.crn), "crn:key:%d", seq);
	snprintf(in.k.account_id, sizeof(in.k.account_id), "%s", account);
	snprintf(in.k.name, sizeof(in.k.name), "k");
	snprintf(in.k.instance_guid, sizeof(in.k.instance_guid), "%s", inst);
	snprintf(in.k.instance_crn, sizeof(in.k.instance_crn), "crn:instance:%s", inst);
	snprintf(in.k.access_key_id, sizeof(in.k.access_key_id), "%s", akid);
	in.k.principal_kind = kind;
	snprintf(in.k.iam_id, sizeof(in.k.iam_id), "%s", iam_id);
	snprintf(in.k.principal_name, sizeof(in.k.principal_name), "who");
	snprintf(in.k.created_by, sizeof(in.k.created_by), "IBMid-creator");
	snprintf(in.k.created_at, sizeof(in.k.created_at), "2030-01-01T00:00:00Z");
	if (db_write(db, insert_run, &in, &err) < 0)
		fail_msg("insert: %s", err.message);
	free(in.blob);
}

static void make_instance(const char *guid, const char *service)
{
	sql("INSERT INTO rc_instances VALUES ('%s', 'crn:instance:%s', '%s', 'n', '%s',"
	    " 'us-south', 'active', '2030-01-01T00:00:00Z')",
	    guid, guid, account, service);
}

static int setup(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct db_migration m[64];
	struct sealvm_secret *apikey = NULL;
	size_t n = 0;
	char path[128];

	(void)state;
	strcpy(dir, "/tmp/sealvm-test-rc-hmac-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	for (size_t i = 0; i < iam_identity_n_migrations; i++)
		m[n++] = iam_identity_migrations[i];
	for (size_t i = 0; i < iam_access_n_migrations; i++)
		m[n++] = iam_access_migrations[i];
	for (size_t i = 0; i < rc_n_migrations; i++)
		m[n++] = rc_migrations[i];
	snprintf(path, sizeof(path), "%s/sealvm.db", dir);
	struct iam_config ic = {.region = "us-south"};
	if (db_open(path, m, n, NULL, &db, &err) < 0 || sealvm_secret_random(32, &master) < 0 ||
	    iam_new(db, master, &ic, &iam, &err) < 0 ||
	    iam_bootstrap(iam, "Owner", "owner@example.com", &apikey, account, &err) < 0 ||
	    rc_new(db, "us-south", &rc) < 0) {
		fprintf(stderr, "setup: %s\n", err.message);
		return -1;
	}
	sealvm_secret_free(apikey);
	rc_set_master(rc, master);
	make_instance(cos_inst, "cloud-object-storage");
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	(void)state;
	rc_free(rc);
	iam_free(iam);
	db_close(db);
	sealvm_secret_free(master);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#define AK1 "0123456789abcdef0123456789abcdef"
#define SK1 "00112233445566778899aabbccddeeff0011223344556677"

static void lookup_fails(const char *akid, const char *reason)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct rc_hmac_identity id;
	struct sealvm_secret *s = NULL;
	int r = rc_hmac_lookup(rc, akid, &id, &s, &err);
	if (r >= 0)
		fail_msg("lookup of '%s' succeeded", akid);
	assert_null(s);
	reason_is(&err, reason);
}

static void test_lookup_caller(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct rc_hmac_identity id;
	struct sealvm_secret *s = NULL;
	(void)state;
	store_key(AK1, AK1, SK1, cos_inst, PRINCIPAL_USER, "IBMid-owner");
	assert_int_equal(rc_hmac_lookup(rc, AK1, &id, &s, &err), 0);
	assert_int_equal(s->len, RC_HMAC_SECRET_LEN);
	assert_memory_equal(s->data, SK1, RC_HMAC_SECRET_LEN);
	assert_int_equal(id.principal.kind, PRINCIPAL_USER);
	assert_string_equal(id.principal.iam_id, "IBMid-owner");
	assert_string_equal(id.principal.account_id, account);
	assert_string_equal(id.principal.credential_type, "hmac");
	assert_string_equal(id.instance_guid, cos_inst);
	assert_string_equal(id.instance_crn, "crn:instance:"
					     "5b1d5c1e-0000-4000-8000-000000000001");
	sealvm_secret_free(s);
	s = NULL;
	/* the callback form gives the same secret */
	assert_int_equal(rc_hmac_sigv4_lookup(rc, AK1, &s, &err), 0);
	assert_memory_equal(s->data, SK1, RC_HMAC_SECRET_LEN);
	sealvm_secret_free(s);
}

static void test_sealed_for_another_key(void **state)
{
	(void)state;
	/* a blob sealed for AK1 stored (or moved) into the row of another key id */
	store_key("1111111111111111111111111111111a", AK1, SK1, cos_inst, PRINCIPAL_USER,
		  "IBMid-x");
	lookup_fails("1111111111111111111111111111111a", "SEALED_BLOB_INVALID");
	/* and under another master key nothing opens */
	struct sealvm_secret *other = NULL;
	assert_int_equal(sealvm_secret_random(32, &other), 0);
	store_key("2222222222222222222222222222222b", "2222222222222222222222222222222b", SK1,
		  cos_inst, PRINCIPAL_USER, "IBMid-x");
	rc_set_master(rc, other);
	lookup_fails("2222222222222222222222222222222b", "SEALED_BLOB_INVALID");
	rc_set_master(rc, master);
	sealvm_secret_free(other);
}

static void test_unknown_and_malformed(void **state)
{
	(void)state;
	lookup_fails("ffffffffffffffffffffffffffffffff", "InvalidAccessKeyId");
	lookup_fails("", "InvalidAccessKeyId");
	lookup_fails("0123456789ABCDEF0123456789ABCDEF", "InvalidAccessKeyId");	 /* upper case */
	lookup_fails("0123456789abcdef0123456789abcde", "InvalidAccessKeyId");	 /* 31 */
	lookup_fails("0123456789abcdef0123456789abcdef0", "InvalidAccessKeyId"); /* 33 */
	lookup_fails("' OR 1=1 --", "InvalidAccessKeyId");
	lookup_fails("AKIAIOSFODNN7EXAMPLE", "InvalidAccessKeyId");
}

static void test_deleted_key_and_instance(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct rc_hmac_identity id;
	struct sealvm_secret *s = NULL;
	(void)state;
	store_key("3333333333333333333333333333333c", "3333333333333333333333333333333c", SK1,
		  cos_inst, PRINCIPAL_USER, "IBMid-x");
	assert_int_equal(rc_hmac_lookup(rc, "3333333333333333333333333333333c", &id, &s, &err), 0);
	sealvm_secret_free(s);
	sql("DELETE FROM rc_hmac_keys WHERE access_key_id = '3333333333333333333333333333333c'");
	lookup_fails("3333333333333333333333333333333c", "InvalidAccessKeyId");

	make_instance("5b1d5c1e-0000-4000-8000-000000000002", "cloud-object-storage");
	store_key("4444444444444444444444444444444d", "4444444444444444444444444444444d", SK1,
		  "5b1d5c1e-0000-4000-8000-000000000002", PRINCIPAL_USER, "IBMid-x");
	s = NULL;
	assert_int_equal(rc_hmac_lookup(rc, "4444444444444444444444444444444d", &id, &s, &err), 0);
	sealvm_secret_free(s);
	sql("DELETE FROM rc_instances WHERE guid = '5b1d5c1e-0000-4000-8000-000000000002'");
	lookup_fails("4444444444444444444444444444444d", "InvalidAccessKeyId");
}

static void test_service_id(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct rc_hmac_identity id;
	struct sealvm_secret *s = NULL;
	char sid_id[96], iam_id[96], name[128];
	(void)state;
	sql("INSERT INTO iam_service_ids (id, iam_id, account_id, name, description, locked, version,"
	    " created_at, modified_at, crn) VALUES ('ServiceId-t1', 'iam-ServiceId-t1', '%s', 's3w',"
	    " '', 0, 1, 0, 0, 'crn:sid:t1')",
	    account);
	/* the service ID by CRN, in its account only */
	sqlite3 *conn = db_read_begin(db);
	assert_int_equal(
		rc_hmac_store_serviceid(conn, account, "crn:sid:t1", sid_id, iam_id, name, &err),
		0);
	assert_string_equal(sid_id, "ServiceId-t1");
	assert_string_equal(iam_id, "iam-ServiceId-t1");
	assert_string_equal(name, "s3w");
	assert_int_equal(rc_hmac_store_serviceid(conn, "another-account", "crn:sid:t1", sid_id,
						 iam_id, name, &err),
			 -ENOENT);
	db_read_end(db, conn);

	store_key("5555555555555555555555555555555e", "5555555555555555555555555555555e", SK1,
		  cos_inst, PRINCIPAL_SERVICE_ID, "iam-ServiceId-t1");
	assert_int_equal(rc_hmac_lookup(rc, "5555555555555555555555555555555e", &id, &s, &err), 0);
	assert_int_equal(id.principal.kind, PRINCIPAL_SERVICE_ID);
	assert_string_equal(id.principal.iam_id, "iam-ServiceId-t1");
	sealvm_secret_free(s);
	sql("DELETE FROM iam_service_ids WHERE id = 'ServiceId-t1'");
	lookup_fails("5555555555555555555555555555555e", "InvalidAccessKeyId");
}

static void test_no_master(void **state)
{
	(void)state;
	rc_set_master(rc, NULL);
	lookup_fails(AK1, "HMAC_UNAVAILABLE");
	rc_set_master(rc, master);
}

/* A URL presigned with the secret verifies through the callback; not once the key is gone. */
static void test_sigv4_verify(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *secret = NULL;
	char *url = NULL;
	const char *ak = "6666666666666666666666666666666f";
	const time_t now = 1900000000;
	(void)state;
	store_key(ak, ak, SK1, cos_inst, PRINCIPAL_USER, "IBMid-owner");
	assert_int_equal(sealvm_secret_from(SK1, strlen(SK1), &secret), 0);
	struct sigv4_credentials cred = {ak, secret, "us-south", NULL};
	assert_int_equal(sigv4_presign("GET", "http://127.0.0.1:9000/bucket/obj", NULL, 0, &cred,
				       now, 300, &url, &err),
			 0);
	sealvm_secret_free(secret);
	char *path = strstr(url + strlen("http://"), "/");
	char *q = strchr(path, '?');
	assert_non_null(q);
	*q++ = '\0';
	struct sigv4_header h[] = {{"Host", "127.0.0.1:9000"}};
	struct sigv4_request req = {"GET", path, q, h, 1};
	struct sigv4_verifier v = {
		.region = "us-south", .lookup = rc_hmac_sigv4_lookup, .userdata = rc};
	struct sigv4_auth auth = {0};
	if (sigv4_verify(&v, &req, now + 10, &auth, &err) < 0)
		fail_msg("verify: %s %s", err.reason, err.message);
	assert_string_equal(auth.access_key_id, ak);
	sigv4_auth_done(&auth);
	sql("DELETE FROM rc_hmac_keys WHERE access_key_id = '%s'", ak);
	sealvm_err_clear(&err);
	assert_true(sigv4_verify(&v, &req, now + 10, &auth, &err) < 0);
	reason_is(&err, "InvalidAccessKeyId");
	sigv4_auth_done(&auth);
	free(url);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookup_caller),
		cmocka_unit_test(test_sealed_for_another_key),
		cmocka_unit_test(test_unknown_and_malformed),
		cmocka_unit_test(test_deleted_key_and_instance),
		cmocka_unit_test(test_service_id),
		cmocka_unit_test(test_no_master),
		cmocka_unit_test(test_sigv4_verify),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
