// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the key service (lib/kms):
 *   - the ciphertext format: round trip, every refusal of the parser, the AAD layout
 *     (length-prefixed, so no two different inputs give the same bytes);
 *   - the DEK text rules, the aad limits, RFC 3339 times, aliases, CRNs, UUIDs, the config;
 *   - the state machine: every state × action cell against Key Protect's table, and the
 *     timing rules at their boundaries (to the millisecond);
 *   - the request parsers: each kind of body, good and bad, with the reason and field;
 *   - the service on a real database and soft keystore: the in-process API for another
 *     service (authorization policy required, its own audit events with the service as
 *     initiator, refusals audited too), the binding of account/instance/key into every
 *     ciphertext, rewrap after rotation, registrations and the lifecycle listeners,
 *     kms_unwrap_unaudited writing nothing.
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

#include "sealvm/audit.h"
#include "sealvm/b64.h"
#include "sealvm/db.h"
#include "sealvm/iam.h"
#include "sealvm/keystore.h"
#include "sealvm/kms.h"
#include "sealvm/migrations.h"
#include "sealvm/rc.h"
#include "sealvm/secret.h"

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
static char account[40];
static struct sealvm_principal owner;
static char inst[40], inst2[40], cos_inst[40];

static void reason_is(const struct sealvm_err *err, const char *reason)
{
	if (strcmp(err->reason, reason) != 0)
		fail_msg("reason %s (%s), expected %s", err->reason, err->message, reason);
}

/* ---- the fixture: a real database, soft keystore, identity, resource controller ---------- */

static int insert_instance(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	return rc_store_insert(conn, userdata, err);
}

static void make_instance(const char *acct, const char *service, char out[40])
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct rc_instance i = {0};
	assert_int_equal(kms_uuid_new(out), 0);
	snprintf(i.guid, sizeof(i.guid), "%s", out);
	snprintf(i.account_id, sizeof(i.account_id), "%s", acct);
	snprintf(i.crn, sizeof(i.crn), "crn:v1:sealvm:local:%s:us-south:a/%s:%s::", service, acct,
		 out);
	snprintf(i.name, sizeof(i.name), "test");
	snprintf(i.resource_id, sizeof(i.resource_id), "%s", service);
	snprintf(i.region, sizeof(i.region), "us-south");
	snprintf(i.state, sizeof(i.state), "active");
	snprintf(i.created_at, sizeof(i.created_at), "2030-01-01T00:00:00Z");
	assert_int_equal(db_write(db, insert_instance, &i, &err), 0);
}

static int setup(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	size_t n = 0;
	char path[128];

	strcpy(dir, "/tmp/sealvm-test-kms-XXXXXX");
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
	make_instance(account, "kms", inst);
	make_instance(account, "kms", inst2);
	make_instance(account, "cloud-object-storage", cos_inst);
	struct kms_config cfg;
	kms_config_defaults(&cfg);
	cfg.rotate_interval_s = 0;
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
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];
	kms_free(kms);
	rc_free(rc);
	iam_free(iam);
	db_close(db);
	keystore_close(ks);
	sealvm_secret_free(master);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A call as the owner, in-process (audited by kms_call_finish). */
static void owner_call(struct kms_call *c, const char *instance, const char *action)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	memset(c, 0, sizeof(*c));
	c->kms = kms;
	c->p = &owner;
	c->audit_action = action;
	snprintf(c->correlation_id, sizeof(c->correlation_id), "unit-test");
	assert_int_equal(kms_instance_get(kms, account, instance, &c->inst, &err), 0);
	kms_target(&c->inst, NULL, &c->target);
}

static void create_key(const char *instance, const char *name, bool extractable,
		       const struct sealvm_secret *payload, struct kms_key *ret)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct kms_call c;
	owner_call(&c, instance, "kms.secrets.create");
	struct kms_create_input in = {.name = name, .extractable = extractable, .payload = payload};
	int r = kms_op_create(&c, &in, ret, &err);
	if (r < 0)
		fail_msg("create: %s (%s)", err.message, err.reason);
	kms_call_done(&c);
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

/* The newest event with @action (new reference). */
static json_t *last_event(const char *action)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct audit_query q = {.account_id = account, .action_prefix = action, .limit = 1000};
	json_t *j = NULL;
	sqlite3 *conn = db_read_begin(db);
	assert_int_equal(audit_query(conn, &q, &j, &err), 0);
	db_read_end(db, conn);
	json_t *a = json_object_get(j, "events");
	assert_true(json_array_size(a) > 0);
	json_t *e = json_incref(json_array_get(a, json_array_size(a) - 1));
	json_decref(j);
	return e;
}

/* ---- the ciphertext format ------------------------------------------------------------------ */

static void test_ctext_roundtrip(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	unsigned char header[KMS_CTEXT_HEADER], iv[12], ct[32], tag[16];
	char vid[KMS_ID_MAX], *b64 = NULL;
	unsigned char *blob = NULL;
	size_t len;
	struct kms_ctext p;

	assert_int_equal(kms_uuid_new(vid), 0);
	assert_int_equal(kms_ctext_header(vid, header), 0);
	assert_memory_equal(header, "SVK\x01", 4);
	memset(iv, 1, sizeof(iv));
	memset(ct, 2, sizeof(ct));
	memset(tag, 3, sizeof(tag));
	assert_int_equal(kms_ctext_encode(header, iv, ct, sizeof(ct), tag, &b64), 0);
	assert_true(sealvm_b64_is_canonical(b64, strlen(b64)));
	assert_int_equal(kms_ctext_decode(b64, strlen(b64), &blob, &len, &err), 0);
	assert_int_equal(len, KMS_CTEXT_OVERHEAD + sizeof(ct));
	assert_int_equal(kms_ctext_parse(blob, len, &p, &err), 0);
	assert_string_equal(p.version_id, vid);
	assert_memory_equal(p.iv, iv, 12);
	assert_int_equal(p.ct_len, sizeof(ct));
	assert_memory_equal(p.ct, ct, sizeof(ct));
	assert_memory_equal(p.tag, tag, 16);
	free(blob);
	free(b64);
	assert_int_equal(kms_ctext_header("not-a-uuid", header), -EINVAL);
}

static void test_ctext_refusals(void **state)
{
	unsigned char blob[KMS_CTEXT_OVERHEAD + KMS_PLAINTEXT_MAX + 2] = "SVK\x01";
	struct kms_ctext p;
	struct {
		size_t len;
		unsigned pos, val; /* a byte to set first (pos 0xffff: none) */
	} bad[] = {
		{0, 0xffff, 0},
		{1, 0xffff, 0},
		{KMS_CTEXT_OVERHEAD, 0xffff, 0},			 /* no ciphertext byte */
		{KMS_CTEXT_OVERHEAD + 1, 0, 'X'},			 /* magic */
		{KMS_CTEXT_OVERHEAD + 1, 2, 'k'},			 /* magic */
		{KMS_CTEXT_OVERHEAD + 1, 3, 2},				 /* format */
		{KMS_CTEXT_OVERHEAD + 1, 3, 0},				 /* format */
		{KMS_CTEXT_OVERHEAD + KMS_PLAINTEXT_MAX + 1, 0xffff, 0}, /* too long */
		{KMS_CTEXT_OVERHEAD + 1, 0, '{'},			 /* Key Protect's JSON */
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		memcpy(blob, "SVK\x01", 4);
		if (bad[i].pos != 0xffff)
			blob[bad[i].pos] = (unsigned char)bad[i].val;
		assert_int_equal(kms_ctext_parse(blob, bad[i].len, &p, &err), -EINVAL);
		reason_is(&err, "INVALID_FIELD_ERR:ciphertext");
	}
	struct sealvm_err err = SEALVM_ERR_INIT;
	memcpy(blob, "SVK\x01", 4);
	assert_int_equal(kms_ctext_parse(blob, KMS_CTEXT_OVERHEAD + KMS_PLAINTEXT_MAX, &p, &err),
			 0);
	unsigned char *out;
	size_t n;
	const char *texts[] = {"", "YQ", "YR==", "Y Q==", "YQ==\n", "****"};
	for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		assert_int_equal(kms_ctext_decode(texts[i], strlen(texts[i]), &out, &n, &e),
				 -EINVAL);
		reason_is(&e, "INVALID_FIELD_ERR:ciphertext");
	}
}

static void test_ctext_aad(void **state)
{
	unsigned char header[KMS_CTEXT_HEADER];
	unsigned char *a = NULL, *b = NULL;
	size_t an, bn;
	char vid[KMS_ID_MAX];
	const char *ab_c[] = {"ab", "c"}, *a_bc[] = {"a", "bc"}, *abc[] = {"abc"}, *none[] = {NULL};

	assert_int_equal(kms_uuid_new(vid), 0);
	assert_int_equal(kms_ctext_header(vid, header), 0);
	/* Moving a boundary between fields or items changes the bytes. */
	assert_int_equal(kms_ctext_aad(header, "acct", "inst", "key", 1, ab_c, 2, &a, &an), 0);
	assert_int_equal(kms_ctext_aad(header, "acct", "inst", "key", 1, a_bc, 2, &b, &bn), 0);
	assert_true(an != bn || memcmp(a, b, an) != 0);
	free(b);
	assert_int_equal(kms_ctext_aad(header, "acct", "inst", "key", 1, abc, 1, &b, &bn), 0);
	assert_true(an != bn || memcmp(a, b, an) != 0);
	free(b);
	assert_int_equal(kms_ctext_aad(header, "acctinst", "", "key", 1, ab_c, 2, &b, &bn), 0);
	assert_true(an != bn || memcmp(a, b, an) != 0);
	free(b);
	assert_int_equal(kms_ctext_aad(header, "acct", "inst", "key", 2, ab_c, 2, &b, &bn), 0);
	assert_true(an == bn && memcmp(a, b, an) != 0);
	free(b);
	/* The same inputs, the same bytes: the documented layout. */
	assert_int_equal(kms_ctext_aad(header, "acct", "inst", "key", 1, ab_c, 2, &b, &bn), 0);
	assert_int_equal(an, bn);
	assert_memory_equal(a, b, an);
	const unsigned char want_tail[] = {0, 0, 0, 1, 0, 2, 0, 2, 'a', 'b', 0, 1, 'c'};
	assert_memory_equal(a + an - sizeof(want_tail), want_tail, sizeof(want_tail));
	assert_memory_equal(a, "sealvm-kms-wrap-v1\0SVK\x01", 23);
	free(a);
	free(b);
	assert_int_equal(kms_ctext_aad(header, "a", "i", "k", 0, none, 0, &a, &an), -EINVAL);
	assert_int_equal(
		kms_ctext_aad(header, "a", "i", "k", 1, ab_c, KMS_AAD_MAX_ITEMS + 1, &a, &an),
		-EINVAL);
}

static void test_plaintext_rules(void **state)
{
	const char *good[] = {"YQ==", "YWI=", "YWJj",
			      "jWqyTTgzvJchcHUq1Ax5EdkzeSshrStESrfpXXfQt1U="};
	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sealvm_secret *raw = NULL, *text = NULL;
		assert_int_equal(kms_plaintext_decode(good[i], strlen(good[i]), &raw, &err), 0);
		assert_int_equal(kms_plaintext_encode(raw, &text), 0);
		assert_int_equal(text->len, strlen(good[i]));
		assert_memory_equal(text->data, good[i], text->len);
		sealvm_secret_free(raw);
		sealvm_secret_free(text);
	}
	const char *bad[] = {"",	 "YQ",	  "YR==",   "YQ=",  "Y",
			     "YQ==YQ==", " YQ==", "YQ==\n", "Y-_=", "YW\nI="};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sealvm_secret *raw = NULL;
		assert_int_equal(kms_plaintext_decode(bad[i], strlen(bad[i]), &raw, &err), -EINVAL);
		reason_is(&err, "INVALID_FIELD_ERR:plaintext");
		assert_null(raw);
	}
	/* KMS_PLAINTEXT_MAX bytes pass, one more does not. */
	size_t n = sealvm_b64_encoded_len(KMS_PLAINTEXT_MAX, false);
	char *big = malloc(n + 5), *bigger = malloc(n + 10);
	unsigned char *zeros = calloc(1, KMS_PLAINTEXT_MAX + 1);
	sealvm_b64_encode(zeros, KMS_PLAINTEXT_MAX, big, false);
	sealvm_b64_encode(zeros, KMS_PLAINTEXT_MAX + 1, bigger, false);
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *raw = NULL;
	assert_int_equal(kms_plaintext_decode(big, strlen(big), &raw, &err), 0);
	assert_int_equal(raw->len, KMS_PLAINTEXT_MAX);
	sealvm_secret_free(raw);
	raw = NULL;
	assert_int_equal(kms_plaintext_decode(bigger, strlen(bigger), &raw, &err), -EINVAL);
	free(big);
	free(bigger);
	free(zeros);

	const char *ok_aad[] = {"", "x"};
	assert_int_equal(kms_aad_check(ok_aad, 2, NULL), 0);
	char long_item[KMS_AAD_ITEM_MAX + 2];
	memset(long_item, 'a', sizeof(long_item) - 1);
	long_item[sizeof(long_item) - 1] = '\0';
	const char *long_aad[] = {long_item};
	struct sealvm_err e = SEALVM_ERR_INIT;
	assert_int_equal(kms_aad_check(long_aad, 1, &e), -EINVAL);
	reason_is(&e, "INVALID_FIELD_ERR:aad");
	long_item[KMS_AAD_ITEM_MAX] = '\0';
	assert_int_equal(kms_aad_check(long_aad, 1, NULL), 0);
	assert_int_equal(kms_aad_check(ok_aad, KMS_AAD_MAX_ITEMS + 1, NULL), -EINVAL);
}

/* ---- small rules ------------------------------------------------------------------------- */

static void test_time_alias_crn(void **state)
{
	int64_t ms;
	assert_int_equal(kms_time_parse("2030-01-02T03:04:05Z", &ms), 0);
	assert_int_equal(ms, 1893553445000LL);
	assert_int_equal(kms_time_parse("2030-01-02T03:04:05.250Z", &ms), 0);
	assert_int_equal(ms, 1893553445250LL);
	assert_int_equal(kms_time_parse("2030-01-02T05:04:05+02:00", &ms), 0);
	assert_int_equal(ms, 1893553445000LL);
	const char *bad_times[] = {"",
				   "2030-01-02",
				   "2030-01-02T03:04:05",
				   "2030-02-30T00:00:00Z",
				   "2030-13-01T00:00:00Z",
				   "2030-01-02 03:04:05Z",
				   "1969-12-31T23:59:59Z",
				   "2030-01-02T03:04:05Zjunk",
				   "2030-01-02T03:04:05.Z",
				   "2030-01-02T24:00:00Z"};
	for (size_t i = 0; i < ELEMENTSOF(bad_times); i++)
		assert_int_equal(kms_time_parse(bad_times[i], &ms), -EINVAL);
	char buf[32];
	assert_string_equal(kms_time_text(1893553445999LL, buf, sizeof(buf)),
			    "2030-01-02T03:04:05Z");

	assert_int_equal(kms_alias_check("ab", NULL), 0);
	assert_int_equal(kms_alias_check("my_key-1", NULL), 0);
	const char *bad_alias[] = {"a",
				   "has space",
				   "dot.ted",
				   "Versions",
				   "wrap",
				   "key",
				   "12345678-1234-1234-1234-123456789abc"};
	for (size_t i = 0; i < ELEMENTSOF(bad_alias); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		assert_int_equal(kms_alias_check(bad_alias[i], &err), -EINVAL);
		reason_is(&err, "INVALID_FIELD_ERR:alias");
	}

	char i1[KMS_ID_MAX], k1[KMS_ID_MAX], crn[300];
	snprintf(crn, sizeof(crn), "crn:v1:sealvm:local:kms:us-south:a/%s:%s:key:%s", account, inst,
		 "12345678-1234-4234-8234-123456789abc");
	assert_int_equal(kms_key_crn_parse(crn, i1, k1, NULL), 0);
	assert_string_equal(i1, inst);
	assert_string_equal(k1, "12345678-1234-4234-8234-123456789abc");
	const char *bad_crn[] = {"", "crn:v1:x",
				 ("crn:v1:sealvm:local:cloud-object-storage:us-south:a/x:"
				  "12345678-1234-4234-8234-123456789abc:key:"
				  "12345678-1234-4234-8234-123456789abc"),
				 "crn:v1:sealvm:local:kms:us-south:a/x:inst:key:key",
				 ("crn:v1:sealvm:local:kms:us-south:a/x:12345678-1234-4234-8234-"
				  "123456789abc:key:12345678-1234-4234-8234-123456789abc:extra")};
	for (size_t i = 0; i < ELEMENTSOF(bad_crn); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		assert_int_equal(kms_key_crn_parse(bad_crn[i], i1, k1, &err), -EINVAL);
		reason_is(&err, "INVALID_FIELD_ERR:crn");
	}
	char svc[64];
	assert_true(kms_crn_service("crn:v1:sealvm:local:block-storage:us-south:a/x:i:volume:v",
				    svc, sizeof(svc)));
	assert_string_equal(svc, "block-storage");
	assert_false(
		kms_crn_service("crn:v1:sealvm:local:Images:us-south:a/x:i:t:r", svc, sizeof(svc)));
	assert_false(kms_crn_service("crn:v1:sealvm:local:images", svc, sizeof(svc)));
	assert_false(kms_crn_service("urn:v1:a:b:c:d:e:f:g:h", svc, sizeof(svc)));

	unsigned char u[16];
	char back[KMS_ID_MAX];
	assert_int_equal(kms_uuid_parse("0123abcd-4567-89ab-cdef-0123456789ab", u), 0);
	kms_uuid_format(u, back);
	assert_string_equal(back, "0123abcd-4567-89ab-cdef-0123456789ab");
	assert_int_equal(kms_uuid_parse("0123ABCD-4567-89ab-cdef-0123456789ab", u), -EINVAL);
	assert_int_equal(kms_uuid_parse("0123abcd-4567-89ab-cdef-0123456789a", u), -EINVAL);
	assert_int_equal(kms_uuid_parse("0123abcd+4567-89ab-cdef-0123456789ab", u), -EINVAL);

	struct kms_config cfg;
	kms_config_defaults(&cfg);
	assert_int_equal(cfg.enable_delay_s, 30);
	assert_int_equal(cfg.rotate_interval_s, 3600);
	assert_int_equal(cfg.restore_window_s, 2592000);
	assert_int_equal(cfg.dual_auth_window_s, 604800);
	assert_int_equal(cfg.purge_delay_s, 14400);
	assert_int_equal(kms_config_check(&cfg, NULL), 0);
	cfg.purge_delay_s = -1;
	assert_int_equal(kms_config_check(&cfg, NULL), -EINVAL);
	kms_config_defaults(&cfg);
	cfg.import_token_min_s = 0;
	assert_int_equal(kms_config_check(&cfg, NULL), -EINVAL);
}

/* ---- the state machine ------------------------------------------------------------------------
 */

/* Key Protect's table (reference §1.4), written out again independently of kms.c's. */
static const struct {
	int state;
	const char *allowed; /* the actions allowed in it, by name */
} kp_allowed[] = {
	{KMS_ACTIVE, " read versions wrap unwrap rewrap rotate disable setKeyForDeletion "
		     "unsetKeyForDeletion delete register alias policy "},
	{KMS_SUSPENDED, " read versions enable delete alias policy "},
	{KMS_DEACTIVATED, " read versions unwrap rewrap rotate delete alias policy "},
	{KMS_DESTROYED, " read restore purge "},
};

static void test_state_table(void **state)
{
	struct kms_config cfg;
	kms_config_defaults(&cfg);
	cfg.enable_delay_s = cfg.rotate_interval_s = cfg.purge_delay_s = 0;
	int64_t now = 2000000000000LL;
	unsigned cells = 0;

	for (size_t s = 0; s < ELEMENTSOF(kp_allowed); s++) {
		for (int a = 0; a < KMS__A_MAX; a++) {
			struct kms_key k = {.id = "k",
					    .state = kp_allowed[s].state,
					    .action_ms = now - 1,
					    .deleted_ms = now - 1};
			if (kp_allowed[s].state == KMS_DEACTIVATED) {
				k.state = KMS_ACTIVE;
				k.expiration_ms = now - 1; /* past its expiration: Deactivated */
			}
			struct sealvm_err err = SEALVM_ERR_INIT;
			char needle[40];
			snprintf(needle, sizeof(needle), " %s ",
				 kms_action_name((enum kms_action)a));
			bool allowed = strstr(kp_allowed[s].allowed, needle) != NULL;
			int r = kms_check_action(&cfg, &k, (enum kms_action)a, now, &err);
			if (allowed && r != 0)
				fail_msg("state %d: %s refused (%s)", kp_allowed[s].state, needle,
					 err.reason);
			if (!allowed) {
				const char *want =
					kp_allowed[s].state == KMS_DESTROYED ? "KEY_DELETED_ERR"
					: a == KMS_A_REGISTER ? "KEY_INVALID_STATE_ERR"
							      : "KEY_ACTION_INVALID_STATE_ERR";
				if (r >= 0)
					fail_msg("state %d: %s allowed", kp_allowed[s].state,
						 needle);
				reason_is(&err, want);
				assert_int_equal(r, kp_allowed[s].state == KMS_DESTROYED
							    ? -ESTALE
							    : -EALREADY);
			}
			cells++;
		}
	}
	assert_int_equal(cells, 4 * KMS__A_MAX);

	/* A standard key cannot do the root-key actions, whatever its state. */
	enum kms_action root_only[] = {KMS_A_WRAP,   KMS_A_UNWRAP,  KMS_A_REWRAP,
				       KMS_A_ROTATE, KMS_A_DISABLE, KMS_A_ENABLE};
	for (size_t i = 0; i < ELEMENTSOF(root_only); i++) {
		struct kms_key k = {.id = "s", .state = KMS_ACTIVE, .extractable = true};
		struct sealvm_err err = SEALVM_ERR_INIT;
		assert_int_equal(kms_check_action(&cfg, &k, root_only[i], now, &err), -EINVAL);
		reason_is(&err, "KEY_ROOT_REQ_ERR");
	}
	struct kms_key sk = {.id = "s", .state = KMS_ACTIVE, .extractable = true};
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(kms_check_action(&cfg, &sk, KMS_A_REGISTER, now, &err), -EINVAL);
	reason_is(&err, "KEY_ROOT_REQ_REG_ERR");
	assert_int_equal(kms_check_action(&cfg, &sk, KMS_A_DELETE, now, NULL), 0);
	sk.state = KMS_DESTROYED;
	sk.deleted_ms = now - 1;
	assert_int_equal(kms_check_action(&cfg, &sk, KMS_A_RESTORE, now, NULL), 0);
}

static void test_timing_rules(void **state)
{
	struct kms_config cfg;
	kms_config_defaults(&cfg);
	int64_t now = 2000000000000LL;
	struct sealvm_err err = SEALVM_ERR_INIT;

	/* enable: from enable_delay_s after the last action on, not a millisecond before */
	struct kms_key k = {.id = "k", .state = KMS_SUSPENDED, .action_ms = now - 30000};
	assert_int_equal(kms_check_action(&cfg, &k, KMS_A_ENABLE, now, NULL), 0);
	k.action_ms = now - 29999;
	assert_int_equal(kms_check_action(&cfg, &k, KMS_A_ENABLE, now, &err), -EAGAIN);
	reason_is(&err, "REQ_TOO_EARLY_ERR");

	/* rotate: a new key at once; then rotate_interval_s apart */
	struct kms_key r = {.id = "r", .state = KMS_ACTIVE};
	assert_int_equal(kms_check_action(&cfg, &r, KMS_A_ROTATE, now, NULL), 0);
	r.rotated_ms = now - 3600000;
	assert_int_equal(kms_check_action(&cfg, &r, KMS_A_ROTATE, now, NULL), 0);
	r.rotated_ms = now - 3599999;
	sealvm_err_clear(&err);
	assert_int_equal(kms_check_action(&cfg, &r, KMS_A_ROTATE, now, &err), -EAGAIN);
	reason_is(&err, "KEY_ROTATION_NOT_PERMITTED");

	/* restore: within restore_window_s of the deletion, and not once expired */
	struct kms_key d = {.id = "d", .state = KMS_DESTROYED, .deleted_ms = now - 2592000000LL};
	assert_int_equal(kms_check_action(&cfg, &d, KMS_A_RESTORE, now, NULL), 0);
	d.deleted_ms--;
	sealvm_err_clear(&err);
	assert_int_equal(kms_check_action(&cfg, &d, KMS_A_RESTORE, now, &err), -EINVAL);
	reason_is(&err, "KEY_RESTORE_EXPIRED");
	d.deleted_ms = now - 1000;
	d.expiration_ms = now;
	sealvm_err_clear(&err);
	assert_int_equal(kms_check_action(&cfg, &d, KMS_A_RESTORE, now, &err), -EINVAL);
	reason_is(&err, "KEY_EXPIRED_ERR");
	d.expiration_ms = now + 1;
	assert_int_equal(kms_check_action(&cfg, &d, KMS_A_RESTORE, now, NULL), 0);

	/* purge: purge_delay_s after the deletion */
	d.deleted_ms = now - 14400000;
	assert_int_equal(kms_check_action(&cfg, &d, KMS_A_PURGE, now, NULL), 0);
	d.deleted_ms++;
	sealvm_err_clear(&err);
	assert_int_equal(kms_check_action(&cfg, &d, KMS_A_PURGE, now, &err), -EAGAIN);
	reason_is(&err, "REQ_TOO_EARLY_ERR");

	/* expiration: Active and Suspended become Deactivated at the instant, Destroyed stays */
	struct kms_key e = {.id = "e", .state = KMS_ACTIVE, .expiration_ms = now};
	assert_int_equal(kms_effective_state(&e, now - 1), KMS_ACTIVE);
	assert_int_equal(kms_effective_state(&e, now), KMS_DEACTIVATED);
	e.state = KMS_SUSPENDED;
	assert_int_equal(kms_effective_state(&e, now), KMS_DEACTIVATED);
	e.state = KMS_DESTROYED;
	assert_int_equal(kms_effective_state(&e, now), KMS_DESTROYED);
	e.state = KMS_ACTIVE;
	e.expiration_ms = 0;
	assert_int_equal(kms_effective_state(&e, now), KMS_ACTIVE);
}

/* ---- request bodies ------------------------------------------------------------------------- */

static int parse_text(enum kms_req_kind kind, const char *ct, const char *body,
		      struct kms_request *q, struct sealvm_err *err)
{
	return kms_request_parse(kind, ct, (const unsigned char *)body, strlen(body), q, err);
}

#define ENV(res)                                                                                   \
	"{\"metadata\":{\"collectionType\":\"t\",\"collectionTotal\":1},\"resources\":[" res "]}"

static void test_request_parse(void **state)
{
	static const struct {
		enum kms_req_kind kind;
		const char *content_type;
		const char *body;
		const char *reason; /* NULL: accepted */
	} cases[] = {
		{KMS_REQ_CREATE, "application/vnd.ibm.kms.key+json", ENV("{\"name\":\"k\"}"), NULL},
		{KMS_REQ_CREATE, "Application/JSON; charset=utf-8", ENV("{\"name\":\"k\"}"), NULL},
		{KMS_REQ_CREATE, "text/plain", ENV("{\"name\":\"k\"}"),
		 "UNSUPPORTED_MEDIA_TYPE_ERR"},
		{KMS_REQ_CREATE, "application/vnd.ibm.kms.+json", ENV("{\"name\":\"k\"}"),
		 "UNSUPPORTED_MEDIA_TYPE_ERR"},
		{KMS_REQ_CREATE, NULL, "", "NO_BODY_ERR"},
		{KMS_REQ_CREATE, NULL, "{", "BAD_BODY_ERR"},
		{KMS_REQ_CREATE, NULL, "[1]", "BAD_BODY_ERR"},
		{KMS_REQ_CREATE, NULL, "{\"metadata\":{},\"resources\":[]}", "BAD_BODY_ERR"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\"},{\"name\":\"j\"}"),
		 "COLLECTION_TOTAL_MISMATCH_ERR"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\",\"name\":\"j\"}"), "BAD_BODY_ERR"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\",\"x\":1}"), "BAD_BODY_ERR"},
		{KMS_REQ_CREATE, NULL, ENV("{}"), "INVALID_FIELD_ERR:name"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\\u0000x\"}"),
		 "BAD_BODY_ERR"}, /* no NUL */
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\",\"extractable\":1}"),
		 "INVALID_FIELD_ERR:extractable"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\",\"aliases\":[1]}"),
		 "INVALID_FIELD_ERR:aliases"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\",\"expirationDate\":\"soon\"}"),
		 "INVALID_FIELD_ERR:expirationDate"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\",\"iv\":\"AAAA\"}"),
		 "INVALID_FIELD_ERR:payload"},
		{KMS_REQ_CREATE, NULL, ENV("{\"name\":\"k\",\"type\":\"x\"}"),
		 "INVALID_FIELD_ERR:type"},
		{KMS_REQ_WRAP, NULL, "", NULL},
		{KMS_REQ_WRAP, NULL, "{}", NULL},
		{KMS_REQ_WRAP, NULL, "{\"plaintext\":\"YQ==\",\"aad\":[\"a\",\"\"]}", NULL},
		{KMS_REQ_WRAP, NULL, "{\"plaintext\":1}", "INVALID_FIELD_ERR:plaintext"},
		{KMS_REQ_WRAP, NULL, "{\"aad\":[\"a\\u0000b\"]}", "BAD_BODY_ERR"},
		{KMS_REQ_WRAP, NULL, "{\"aad\":{}}", "INVALID_FIELD_ERR:aad"},
		{KMS_REQ_WRAP, NULL, "{\"ciphertext\":\"x\"}", "BAD_BODY_ERR"},
		{KMS_REQ_UNWRAP, NULL, "", "NO_BODY_ERR"},
		{KMS_REQ_UNWRAP, NULL, "{\"aad\":[]}", "INVALID_FIELD_ERR:ciphertext"},
		{KMS_REQ_UNWRAP, NULL, "{\"ciphertext\":\"x\"}", NULL},
		{KMS_REQ_ROTATE, NULL, "", NULL},
		{KMS_REQ_ROTATE, NULL, "{\"payload\":\"YQ==\"}", NULL},
		{KMS_REQ_ROTATE, NULL, "{\"iv\":\"YQ==\"}", "INVALID_FIELD_ERR:payload"},
		{KMS_REQ_EMPTY, NULL, "", NULL},
		{KMS_REQ_EMPTY, NULL, "{}", NULL},
		{KMS_REQ_EMPTY, NULL, "{\"x\":1}", "BAD_BODY_ERR"},
		{KMS_REQ_RESTORE, NULL, ENV("{\"payload\":\"YQ==\"}"), NULL},
		{KMS_REQ_KEY_POLICY, NULL, ENV("{\"dualAuthDelete\":{\"enabled\":true}}"), NULL},
		{KMS_REQ_KEY_POLICY, NULL, ENV("{\"dualAuthDelete\":{\"enabled\":\"y\"}}"),
		 "INVALID_FIELD_ERR:dualAuthDelete"},
		{KMS_REQ_INSTANCE_POLICY, NULL,
		 ENV("{\"policy_type\":\"dualAuthDelete\",\"policy_data\":{\"enabled\":false}}"),
		 NULL},
		{KMS_REQ_INSTANCE_POLICY, NULL,
		 ENV("{\"policy_type\":\"rotation\",\"policy_data\":{\"enabled\":false}}"),
		 "BODY_QUERY_PARAM_MISMATCH_ERR"},
		{KMS_REQ_REGISTRATION, NULL, "", NULL},
		{KMS_REQ_REGISTRATION, NULL, ENV("{\"preventKeyDeletion\":true}"), NULL},
		{KMS_REQ_REGISTRATION, NULL, ENV("{\"preventKeyDeletion\":1}"),
		 "INVALID_FIELD_ERR:preventKeyDeletion"},
		{KMS_REQ_IMPORT_TOKEN, NULL, "", NULL},
		{KMS_REQ_IMPORT_TOKEN, NULL, "{\"expiration\":86401}",
		 "INVALID_FIELD_ERR:expiration"},
		{KMS_REQ_IMPORT_TOKEN, NULL, "{\"maxAllowedRetrievals\":0}",
		 "INVALID_FIELD_ERR:maxAllowedRetrievals"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct kms_request q;
		int r = parse_text(cases[i].kind, cases[i].content_type, cases[i].body, &q, &err);
		if (!cases[i].reason) {
			if (r < 0)
				fail_msg("case %zu refused: %s (%s)", i, err.reason, err.message);
			kms_request_done(&q);
		} else {
			if (r >= 0)
				fail_msg("case %zu accepted, expected %s", i, cases[i].reason);
			if (strcmp(err.reason, cases[i].reason) != 0)
				fail_msg("case %zu: %s, expected %s", i, err.reason,
					 cases[i].reason);
			assert_null(q.body);
		}
	}

	/* The values, and the material moved into secret memory (its JSON text wiped). */
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct kms_request q;
	assert_int_equal(
		parse_text(
			KMS_REQ_CREATE, NULL,
			ENV("{\"name\":\"n\",\"extractable\":true,\"payload\":\"c2VjcmV0\","
			    "\"aliases\":[\"a1\",\"a2\"],\"expirationDate\":\"2030-01-02T03:04:05Z\"}"),
			&q, &err),
		0);
	assert_string_equal(q.name, "n");
	assert_true(q.extractable);
	assert_int_equal(q.n_aliases, 2);
	assert_string_equal(q.aliases[1], "a2");
	assert_int_equal(q.expiration_ms, 1893553445000LL);
	assert_int_equal(q.payload->len, 8);
	assert_memory_equal(q.payload->data, "c2VjcmV0", 8);
	json_t *res = json_array_get(json_object_get(q.body, "resources"), 0);
	const char *left = json_string_value(json_object_get(res, "payload"));
	for (size_t i = 0; i < 8; i++)
		assert_int_equal(left[i], 0);
	kms_request_done(&q);
	assert_int_equal(parse_text(KMS_REQ_IMPORT_TOKEN, NULL, "{}", &q, &err), 0);
	assert_int_equal(q.expiration_s, 600);
	assert_int_equal(q.max_retrievals, 1);
	kms_request_done(&q);
}

/* ---- the service ------------------------------------------------------------------------------
 */

static void test_owner_wrap_unwrap(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct kms_key k;
	struct kms_wrap_result w;
	struct kms_unwrap_result u;
	const char *aad[] = {"volume-7"};

	create_key(inst, "owner-root", false, NULL, &k);
	int64_t before = events("kms.secrets.");
	assert_int_equal(kms_wrap(kms, &owner, inst, k.id, NULL, aad, 1, &w, &err), 0);
	assert_non_null(w.plaintext);
	assert_int_equal(w.plaintext->len, 44);
	assert_string_equal(w.key_version, k.version_id);
	assert_int_equal(kms_unwrap(kms, &owner, inst, k.id, w.ciphertext, aad, 1, &u, &err), 0);
	assert_int_equal(u.plaintext->len, w.plaintext->len);
	assert_memory_equal(u.plaintext->data, w.plaintext->data, u.plaintext->len);
	assert_null(u.rewrapped);
	kms_unwrap_result_done(&u);
	assert_int_equal(events("kms.secrets."), before + 2);
	json_t *e = last_event("kms.secrets.unwrap");
	assert_string_equal(json_string_value(json_object_get(e, "outcome")), "success");
	assert_string_equal(json_string_value(json_object_get(json_object_get(e, "target"), "id")),
			    k.crn);
	char *text = json_dumps(e, 0);
	assert_null(strstr(text, (const char *)w.plaintext->data));
	assert_null(strstr(text, w.ciphertext));
	free(text);
	json_decref(e);

	/* wrong AAD, and by alias-less name: refused, and the refusal is audited */
	const char *wrong[] = {"volume-8"};
	sealvm_err_clear(&err);
	assert_int_equal(kms_unwrap(kms, &owner, inst, k.id, w.ciphertext, wrong, 1, &u, &err),
			 -EBADMSG);
	reason_is(&err, "UNPROCESSABLE_CIPHERTEXT_ERR");
	assert_null(u.plaintext);
	e = last_event("kms.secrets.unwrap");
	assert_string_equal(json_string_value(json_object_get(e, "outcome")), "failure");
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(e, "reason"), "reasonCode")),
		422);
	json_decref(e);

	/* the unaudited core writes no event */
	before = events("kms.");
	assert_int_equal(
		kms_unwrap_unaudited(kms, account, inst, k.id, w.ciphertext, aad, 1, &u, &err), 0);
	assert_memory_equal(u.plaintext->data, w.plaintext->data, u.plaintext->len);
	kms_unwrap_result_done(&u);
	assert_int_equal(events("kms."), before);

	/* a given DEK comes back as exactly its text */
	struct sealvm_secret *dek = NULL;
	assert_int_equal(sealvm_secret_from("c2VjcmV0IGRlaw==", 16, &dek), 0);
	struct kms_wrap_result w2;
	assert_int_equal(kms_wrap(kms, &owner, inst, k.id, dek, NULL, 0, &w2, &err), 0);
	assert_null(w2.plaintext);
	assert_int_equal(kms_unwrap(kms, &owner, inst, k.id, w2.ciphertext, NULL, 0, &u, &err), 0);
	assert_int_equal(u.plaintext->len, 16);
	assert_memory_equal(u.plaintext->data, "c2VjcmV0IGRlaw==", 16);
	kms_unwrap_result_done(&u);
	kms_wrap_result_done(&w2);
	sealvm_secret_free(dek);
	kms_wrap_result_done(&w);

	/* unknown instance, another service's instance, unknown key */
	sealvm_err_clear(&err);
	assert_int_equal(kms_wrap(kms, &owner, cos_inst, k.id, NULL, NULL, 0, &w, &err), -ENOENT);
	reason_is(&err, "INSTANCE_NOT_FOUND_ERR");
	sealvm_err_clear(&err);
	assert_int_equal(kms_wrap(kms, &owner, inst2, k.id, NULL, NULL, 0, &w, &err), -ENOENT);
	reason_is(&err, "KEY_NOT_FOUND_ERR");
}

/* The same material, version and bytes: but another account, instance or key id in the AAD. */
static void test_binding(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct kms_key k;
	struct kms_wrap_result w;
	struct kms_unwrap_result u;

	create_key(inst, "bound", false, NULL, &k);
	assert_int_equal(kms_wrap(kms, &owner, inst, k.id, NULL, NULL, 0, &w, &err), 0);
	for (int which = 0; which < 3; which++) {
		struct kms_key forged = k;
		char *field = which == 0   ? forged.account_id
			      : which == 1 ? forged.instance
					   : forged.id;
		field[0] = field[0] == 'a' ? 'b' : 'a';
		/* (the account is in the AAD only: its case proves the binding by itself) */
		sealvm_err_clear(&err);
		assert_int_equal(
			kms_op_unwrap(kms, &forged, w.ciphertext, NULL, 0, false, &u, &err),
			-EBADMSG);
		reason_is(&err, "UNPROCESSABLE_CIPHERTEXT_ERR");
	}
	assert_int_equal(kms_op_unwrap(kms, &k, w.ciphertext, NULL, 0, false, &u, &err), 0);
	kms_unwrap_result_done(&u);
	kms_wrap_result_done(&w);
}

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

static void test_service_principal(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal bs;
	struct kms_key k;
	struct kms_wrap_result w;
	struct kms_unwrap_result u;

	create_key(inst, "for-block-storage", false, NULL, &k);
	assert_int_equal(kms_wrap(kms, &owner, inst, k.id, NULL, NULL, 0, &w, &err), 0);
	iam_service_principal("block-storage", account, &bs);

	/* no authorization policy: refused (403), and the refusal is this service's event */
	assert_int_equal(kms_unwrap(kms, &bs, inst, k.id, w.ciphertext, NULL, 0, &u, &err),
			 -EACCES);
	reason_is(&err, "AUTHORIZATION_MISSING");
	assert_null(u.plaintext);
	json_t *e = last_event("kms.secrets.unwrap");
	assert_string_equal(json_string_value(json_object_get(e, "outcome")), "failure");
	json_t *ini = json_object_get(e, "initiator");
	assert_string_equal(json_string_value(json_object_get(ini, "name")), "block-storage");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(ini, "credential"), "type")),
		"s2s-authorization");
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(e, "reason"), "reasonCode")),
		403);
	json_decref(e);

	/* the customer authorizes block-storage → kms (Reader) on this instance */
	char text[1024];
	snprintf(
		text, sizeof(text),
		"{\"type\":\"authorization\",\"subjects\":[{\"attributes\":[{\"name\":\"accountId\","
		"\"value\":\"%s\"},{\"name\":\"serviceName\",\"value\":\"block-storage\"}]}],"
		"\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::serviceRole:Reader\"}],"
		"\"resources\":[{\"attributes\":[{\"name\":\"accountId\",\"value\":\"%s\"},"
		"{\"name\":\"serviceName\",\"value\":\"kms\"},{\"name\":\"serviceInstance\","
		"\"value\":\"%s\"}]}]}",
		account, account, inst);
	json_t *body = json_loads(text, 0, NULL);
	struct iam_policy_spec spec;
	assert_int_equal(iam_policy_parse(body, account, &spec, &err), 0);
	assert_int_equal(db_write(db, add_authorization, &spec, &err), 0);
	iam_policy_spec_done(&spec);
	json_decref(body);

	sealvm_err_clear(&err);
	assert_int_equal(kms_unwrap(kms, &bs, inst, k.id, w.ciphertext, NULL, 0, &u, &err), 0);
	assert_memory_equal(u.plaintext->data, w.plaintext->data, u.plaintext->len);
	kms_unwrap_result_done(&u);
	e = last_event("kms.secrets.unwrap");
	assert_string_equal(json_string_value(json_object_get(e, "outcome")), "success");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(e, "initiator"), "name")),
		"block-storage");
	json_decref(e);
	struct kms_wrap_result w2;
	assert_int_equal(kms_wrap(kms, &bs, inst, k.id, NULL, NULL, 0, &w2, &err), 0);
	kms_wrap_result_done(&w2);

	/* Reader does not reach another instance, nor key management */
	create_key(inst2, "elsewhere", false, NULL, &k);
	assert_int_equal(kms_wrap(kms, &bs, inst2, k.id, NULL, NULL, 0, &w2, &err), -EACCES);
	/* a principal acting in another account does not find the instance */
	struct sealvm_principal other;
	iam_service_principal("block-storage", "ffffffffffffffffffffffffffffffff", &other);
	sealvm_err_clear(&err);
	assert_int_equal(kms_unwrap(kms, &other, inst, k.id, w.ciphertext, NULL, 0, &u, &err),
			 -ENOENT);
	reason_is(&err, "INSTANCE_NOT_FOUND_ERR");
	struct sealvm_principal nobody = {0};
	assert_int_equal(kms_unwrap(kms, &nobody, inst, k.id, w.ciphertext, NULL, 0, &u, NULL),
			 -EPERM);
	kms_wrap_result_done(&w);
}

/* ---- rotation, registrations and listeners
 * ------------------------------------------------------- */

struct seen {
	int n;
	enum kms_event_type types[16];
	char crn[16][128];
	char old_version[16][KMS_ID_MAX];
};

static void on_event(void *ctx, const struct kms_key_event *ev)
{
	struct seen *s = ctx;
	if (s->n >= 16)
		return;
	s->types[s->n] = ev->type;
	snprintf(s->crn[s->n], sizeof(s->crn[0]), "%s", ev->resource_crn);
	snprintf(s->old_version[s->n], sizeof(s->old_version[0]), "%s",
		 ev->old_version ? ev->old_version : "");
	s->n++;
}

static void test_rotation_registrations_listeners(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct seen images = {0}, volumes = {0};
	struct kms_listener li = {"images", on_event, &images},
			    lv = {"block-storage", on_event, &volumes};
	struct kms_key k;
	struct kms_call c;
	char crn_img[200], crn_vol[200];

	assert_int_equal(kms_listener_add(kms, &li), 0);
	assert_int_equal(kms_listener_add(kms, &lv), 0);
	create_key(inst, "lifecycle", false, NULL, &k);
	snprintf(crn_img, sizeof(crn_img), "crn:v1:sealvm:local:images:us-south:a/%s:%s:image:1",
		 account, inst);
	snprintf(crn_vol, sizeof(crn_vol),
		 "crn:v1:sealvm:local:block-storage:us-south:a/%s:%s:volume:2", account, inst);
	assert_int_equal(
		kms_registration_create(kms, &owner, inst, k.id, crn_img, "img", false, &err), 0);
	assert_int_equal(
		kms_registration_create(kms, &owner, inst, k.id, crn_vol, "vol", true, &err), 0);
	json_t *e = last_event("kms.registrations.create");
	assert_string_equal(json_string_value(json_object_get(e, "outcome")), "success");
	json_decref(e);
	char foreign_crn[200];
	snprintf(foreign_crn, sizeof(foreign_crn),
		 "crn:v1:sealvm:local:images:us-south:a/ffff:%s:image:1", inst);
	assert_int_equal(
		kms_registration_create(kms, &owner, inst, k.id, foreign_crn, NULL, false, &err),
		-EINVAL);
	reason_is(&err, "INVALID_FIELD_ERR:resourceCrn");

	struct kms_wrap_result w;
	struct kms_unwrap_result u;
	assert_int_equal(kms_wrap(kms, &owner, inst, k.id, NULL, NULL, 0, &w, &err), 0);
	char v1[KMS_ID_MAX];
	snprintf(v1, sizeof(v1), "%s", k.version_id);
	for (int i = 0; i < 3; i++) {
		owner_call(&c, inst, "kms.secrets.rotate");
		assert_int_equal(kms_op_rotate(&c, k.id, NULL, &err), 0);
		assert_int_equal(kms_call_finish(&c, 0, NULL, &err), 0);
		kms_call_done(&c);
	}
	assert_int_equal(images.n, 3);
	assert_int_equal(volumes.n, 3);
	assert_int_equal(images.types[0], KMS_EVENT_ROTATE);
	assert_string_equal(images.crn[0], crn_img);
	assert_string_equal(volumes.crn[2], crn_vol);
	assert_string_equal(images.old_version[0], v1);
	assert_string_not_equal(images.old_version[1], v1);
	assert_int_equal(kms_unwrap(kms, &owner, inst, k.id, w.ciphertext, NULL, 0, &u, &err), 0);
	assert_string_equal(u.key_version, v1);
	assert_non_null(u.rewrapped);
	assert_string_not_equal(u.rewrapped_version, v1);
	struct kms_unwrap_result u2;
	assert_int_equal(kms_unwrap(kms, &owner, inst, k.id, u.rewrapped, NULL, 0, &u2, &err), 0);
	assert_null(u2.rewrapped);
	assert_memory_equal(u2.plaintext->data, w.plaintext->data, u2.plaintext->len);
	assert_string_equal(u2.key_version, u.rewrapped_version);
	kms_unwrap_result_done(&u2);
	kms_unwrap_result_done(&u);
	kms_wrap_result_done(&w);

	/* disable and enable tell both; a delete is refused while registered, even forced here */
	owner_call(&c, inst, "kms.secrets.disable");
	assert_int_equal(kms_op_set_state(&c, k.id, KMS_A_DISABLE, NULL, &err), 0);
	kms_call_done(&c);
	assert_int_equal(images.types[3], KMS_EVENT_DISABLE);
	assert_int_equal(volumes.types[3], KMS_EVENT_DISABLE);
	owner_call(&c, inst, "kms.secrets.delete");
	sealvm_err_clear(&err);
	assert_int_equal(kms_op_delete(&c, k.id, false, NULL, &err), -EALREADY);
	reason_is(&err, "PROTECTED_RESOURCE_ERR");
	sealvm_err_clear(&err);
	assert_int_equal(kms_op_delete(&c, k.id, true, NULL, &err), -EALREADY);
	reason_is(&err, "PREV_KEY_DEL_ERR");
	kms_call_done(&c);
	assert_int_equal(images.n, 4);
	assert_int_equal(kms_registration_delete(kms, &owner, inst, k.id, crn_vol, &err), 0);
	sealvm_err_clear(&err);
	assert_int_equal(kms_registration_delete(kms, &owner, inst, k.id, crn_vol, &err), -ENOENT);
	reason_is(&err, "REGISTRATION_NOT_FOUND_ERR");
	owner_call(&c, inst, "kms.secrets.delete");
	assert_int_equal(kms_op_delete(&c, k.id, true, NULL, &err), 0);
	kms_call_done(&c);
	assert_int_equal(images.types[4], KMS_EVENT_DELETE);
	assert_int_equal(volumes.n, 4); /* no longer registered */
	owner_call(&c, inst, "kms.secrets.restore");
	assert_int_equal(kms_op_set_state(&c, k.id, KMS_A_RESTORE, NULL, &err), 0);
	kms_call_done(&c);
	assert_int_equal(images.types[5], KMS_EVENT_RESTORE);
	assert_int_equal(images.n, 6);

	/* a registration needs an Active root key */
	struct kms_key s;
	create_key(inst, "standard", true, NULL, &s);
	sealvm_err_clear(&err);
	assert_int_equal(
		kms_registration_create(kms, &owner, inst, s.id, crn_img, NULL, false, &err),
		-EINVAL);
	reason_is(&err, "KEY_ROOT_REQ_REG_ERR");
	owner_call(&c, inst, "kms.secrets.disable");
	assert_int_equal(kms_op_set_state(&c, k.id, KMS_A_DISABLE, NULL, &err), 0);
	kms_call_done(&c);
	sealvm_err_clear(&err);
	assert_int_equal(
		kms_registration_create(kms, &owner, inst, k.id, crn_vol, NULL, false, &err),
		-EALREADY);
	reason_is(&err, "KEY_INVALID_STATE_ERR");
}

static void test_standard_key_payload(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *material = NULL, *back = NULL;
	struct kms_key k;
	assert_int_equal(sealvm_secret_from("standard material", 17, &material), 0);
	create_key(inst, "std", true, material, &k);
	assert_true(k.extractable);
	assert_true(k.imported);
	assert_int_equal(kms_op_payload(kms, &k, &back, &err), 0);
	assert_int_equal(back->len, 17);
	assert_memory_equal(back->data, "standard material", 17);
	sealvm_secret_free(back);
	/* the row holds the material sealed, not in clear */
	sqlite3 *conn = db_read_begin(db);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(conn, "SELECT payload FROM kms_keys WHERE id = ?", -1,
					    &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, k.id, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_bytes(st, 0), 17 + 32);
	assert_null(memmem(sqlite3_column_blob(st, 0), 49, "standard", 8));
	sqlite3_finalize(st);
	db_read_end(db, conn);
	sealvm_secret_free(material);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ctext_roundtrip),
		cmocka_unit_test(test_ctext_refusals),
		cmocka_unit_test(test_ctext_aad),
		cmocka_unit_test(test_plaintext_rules),
		cmocka_unit_test(test_time_alias_crn),
		cmocka_unit_test(test_state_table),
		cmocka_unit_test(test_timing_rules),
		cmocka_unit_test(test_request_parse),
		cmocka_unit_test(test_owner_wrap_unwrap),
		cmocka_unit_test(test_binding),
		cmocka_unit_test(test_service_principal),
		cmocka_unit_test(test_rotation_registrations_listeners),
		cmocka_unit_test(test_standard_key_payload),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
