// SPDX-License-Identifier: Apache-2.0
/*
 * kms.c — the key service: its object, the key state machine, and the
 * operations on keys (create, wrap, unwrap, rotate, disable, enable, dual
 * authorization, delete, restore, purge, aliases, policies), shared by the
 * HTTP handlers and the in-process API of kms.h.
 *
 * Every state change is one database write job that re-reads the key,
 * checks the state machine inside the transaction, writes, and appends the
 * request's audit event on the same connection — so a change and its event
 * commit together and two racing requests cannot both pass a check. Work
 * that is not database work (the keystore, sealing, RSA) happens before or
 * after the job, never inside it; a keystore object made for a job that then
 * fails is destroyed again. Wrap and unwrap write nothing but their audit
 * event (the ladder's, or kms_call_finish's for in-process callers).
 *
 * Material lives only in struct sealvm_secret and is wiped on every path;
 * no message, log line or audit record here carries it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "sealvm/audit.h"
#include "sealvm/iam.h"
#include "sealvm/log.h"
#include "sealvm/rowcache.h"
#include "sealvm/seal.h"

#include "kms_internal.h"

/* ---- small helpers ------------------------------------------------------------------------- */

int64_t kms_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *kms_time_text(int64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "1970-01-01T00:00:00Z");
	return buf;
}

static int digits(const char **s, int n, int *ret)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if ((*s)[i] < '0' || (*s)[i] > '9')
			return -EINVAL;
		v = v * 10 + ((*s)[i] - '0');
	}
	*s += n;
	*ret = v;
	return 0;
}

int kms_time_parse(const char *s, int64_t *ret_ms)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec, ms = 0;

	if (!s || digits(&s, 4, &y) < 0 || *s++ != '-' || digits(&s, 2, &mo) < 0 || *s++ != '-' ||
	    digits(&s, 2, &d) < 0 || (*s != 'T' && *s != 't') || !*s++ || digits(&s, 2, &h) < 0 ||
	    *s++ != ':' || digits(&s, 2, &mi) < 0 || *s++ != ':' || digits(&s, 2, &sec) < 0)
		return -EINVAL;
	if (*s == '.') {
		s++;
		int n = 0, scale = 100;
		while (*s >= '0' && *s <= '9') {
			if (n < 3) {
				ms += (*s - '0') * scale;
				scale /= 10;
			}
			s++;
			n++;
		}
		if (n == 0)
			return -EINVAL;
	}
	int off = 0;
	if (*s == 'Z' || *s == 'z') {
		s++;
	} else if (*s == '+' || *s == '-') {
		int sign = *s++ == '-' ? -1 : 1, oh, om;
		if (digits(&s, 2, &oh) < 0 || *s++ != ':' || digits(&s, 2, &om) < 0 || oh > 23 ||
		    om > 59)
			return -EINVAL;
		off = sign * (oh * 60 + om);
	} else {
		return -EINVAL;
	}
	if (*s || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	/* timegm normalises 31 February into March: refuse dates that do not exist. */
	struct tm back;
	if (!gmtime_r(&t, &back) || back.tm_mday != d || back.tm_mon != mo - 1)
		return -EINVAL;
	*ret_ms = ((int64_t)t - (int64_t)off * 60) * 1000 + ms;
	return 0;
}

void kms_uuid_format(const unsigned char u[16], char out[KMS_ID_MAX])
{
	snprintf(out, KMS_ID_MAX,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
		 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		 u[15]);
}

int kms_uuid_new(char out[KMS_ID_MAX])
{
	unsigned char u[16];
	if (RAND_bytes(u, sizeof(u)) != 1)
		return -EIO;
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	kms_uuid_format(u, out);
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int kms_uuid_parse(const char *s, unsigned char out[16])
{
	if (!kms_uuid_valid(s))
		return -EINVAL;
	for (int i = 0, k = 0; i < 16; i++) {
		if (s[k] == '-')
			k++;
		out[i] = (unsigned char)(hexval(s[k]) << 4 | hexval(s[k + 1]));
		k += 2;
	}
	return 0;
}

bool kms_uuid_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (hexval(s[i]) < 0) {
			return false;
		}
	}
	return true;
}

void *kms_grow(void *v, size_t n, size_t *cap, size_t size)
{
	if (n < *cap)
		return v;
	size_t more = *cap ? *cap * 2 : 8;
	void *p = realloc(v, more * size);
	if (p)
		*cap = more;
	return p;
}

/* ---- the state machine ------------------------------------------------------------------------
 */

static const char *const action_names[KMS__A_MAX] = {
	[KMS_A_READ] = "read",
	[KMS_A_VERSIONS] = "versions",
	[KMS_A_WRAP] = "wrap",
	[KMS_A_UNWRAP] = "unwrap",
	[KMS_A_REWRAP] = "rewrap",
	[KMS_A_ROTATE] = "rotate",
	[KMS_A_DISABLE] = "disable",
	[KMS_A_ENABLE] = "enable",
	[KMS_A_SET_DELETION] = "setKeyForDeletion",
	[KMS_A_UNSET_DELETION] = "unsetKeyForDeletion",
	[KMS_A_DELETE] = "delete",
	[KMS_A_RESTORE] = "restore",
	[KMS_A_PURGE] = "purge",
	[KMS_A_REGISTER] = "register",
	[KMS_A_ALIAS] = "alias",
	[KMS_A_POLICY_SET] = "policy",
};

const char *kms_action_name(enum kms_action a)
{
	return a < KMS__A_MAX ? action_names[a] : "?";
}

int kms_effective_state(const struct kms_key *k, int64_t now_ms)
{
	if ((k->state == KMS_ACTIVE || k->state == KMS_SUSPENDED) && k->expiration_ms > 0 &&
	    k->expiration_ms <= now_ms)
		return KMS_DEACTIVATED;
	return k->state;
}

enum { OK, BAD, GONE, REG };

/*
 * Key Protect's allowed actions per state (reference §1.4): BAD is 409
 * KEY_ACTION_INVALID_STATE_ERR, GONE 410 KEY_DELETED_ERR, REG 422
 * KEY_INVALID_STATE_ERR (registrations need an Active key).
 */
/* clang-format off */
static const unsigned char state_table[4][KMS__A_MAX] = {
	/*           READ VERS  WRAP  UNWR  REWR  ROT   DIS   ENA   SETD  UNSD  DEL   REST PURG REG   ALIAS POL */
	/* 1 */     {OK,  OK,   OK,   OK,   OK,   OK,   OK,   BAD,  OK,   OK,   OK,   BAD, BAD, OK,   OK,   OK},
	/* 2 */     {OK,  OK,   BAD,  BAD,  BAD,  BAD,  BAD,  OK,   BAD,  BAD,  OK,   BAD, BAD, REG,  OK,   OK},
	/* 3 */     {OK,  OK,   BAD,  OK,   OK,   OK,   BAD,  BAD,  BAD,  BAD,  OK,   BAD, BAD, REG,  OK,   OK},
	/* 5 */     {OK,  GONE, GONE, GONE, GONE, GONE, GONE, GONE, GONE, GONE, GONE, OK,  OK,  GONE, GONE, GONE},
};
/* clang-format on */

static const char *state_name(int s)
{
	switch (s) {
	case KMS_PREACTIVE:
		return "Pre-activation";
	case KMS_ACTIVE:
		return "Active";
	case KMS_SUSPENDED:
		return "Suspended";
	case KMS_DEACTIVATED:
		return "Deactivated";
	case KMS_DESTROYED:
		return "Destroyed";
	default:
		return "unknown";
	}
}

static bool root_only(enum kms_action a)
{
	return a == KMS_A_WRAP || a == KMS_A_UNWRAP || a == KMS_A_REWRAP || a == KMS_A_ROTATE ||
	       a == KMS_A_DISABLE || a == KMS_A_ENABLE;
}

int kms_check_action(const struct kms_config *cfg, const struct kms_key *k, enum kms_action a,
		     int64_t now_ms, struct sealvm_err *err)
{
	int s = kms_effective_state(k, now_ms);
	const char *an = kms_action_name(a);

	if (a >= KMS__A_MAX)
		return sealvm_err_set(err, -EINVAL, "BAD_BODY_ERR", "unknown key action");
	if (k->extractable && root_only(a))
		return sealvm_err_set(err, -EINVAL, "KEY_ROOT_REQ_ERR",
				      "Requested action can only be completed with a root key: "
				      "key %s is a standard key, which cannot %s",
				      k->id, an);
	if (k->extractable && a == KMS_A_REGISTER)
		return sealvm_err_set(err, -EINVAL, "KEY_ROOT_REQ_REG_ERR",
				      "Requested action can only be completed with a root key: "
				      "only root keys protect registered resources");
	int row = s == KMS_ACTIVE || s == KMS_PREACTIVE ? 0
		  : s == KMS_SUSPENDED			? 1
		  : s == KMS_DEACTIVATED		? 2
							: 3;
	switch (state_table[row][a]) {
	case BAD:
		return sealvm_err_set(err, -EALREADY, "KEY_ACTION_INVALID_STATE_ERR",
				      "Key is not in a valid state: key %s is %s (%d), and %s is "
				      "not allowed in that state",
				      k->id, state_name(s), s, an);
	case GONE:
		return sealvm_err_set(err, -ESTALE, "KEY_DELETED_ERR",
				      "Key has already been deleted: key %s is Destroyed (5); "
				      "restore it first, or delete references to it",
				      k->id);
	case REG:
		return sealvm_err_set(err, -EALREADY, "KEY_INVALID_STATE_ERR",
				      "Key is not in a valid state: a registration needs an Active "
				      "key, and key %s is %s (%d)",
				      k->id, state_name(s), s);
	default:
		break;
	}

	/* The timing rules. */
	switch (a) {
	case KMS_A_ENABLE:
		if (now_ms - k->action_ms < cfg->enable_delay_s * 1000)
			return sealvm_err_set(
				err, -EAGAIN, "REQ_TOO_EARLY_ERR",
				"The key was updated recently: enable is allowed %lld "
				"s after the key's last action; wait and try again",
				(long long)cfg->enable_delay_s);
		break;
	case KMS_A_ROTATE:
		if (k->rotated_ms > 0 && now_ms - k->rotated_ms < cfg->rotate_interval_s * 1000)
			return sealvm_err_set(err, -EAGAIN, "KEY_ROTATION_NOT_PERMITTED",
					      "This root key has been rotated within the last %lld "
					      "s: only one 'rotate' action per %lld s is permitted",
					      (long long)cfg->rotate_interval_s,
					      (long long)cfg->rotate_interval_s);
		break;
	case KMS_A_RESTORE:
		if (now_ms - k->deleted_ms > cfg->restore_window_s * 1000)
			return sealvm_err_set(err, -EINVAL, "KEY_RESTORE_EXPIRED",
					      "Key restoration has expired: a key can be restored "
					      "within %lld s of its deletion",
					      (long long)cfg->restore_window_s);
		if (k->expiration_ms > 0 && k->expiration_ms <= now_ms)
			return sealvm_err_set(
				err, -EINVAL, "KEY_EXPIRED_ERR",
				"The action could not be performed on the key because "
				"the key is expired");
		break;
	case KMS_A_PURGE:
		if (now_ms - k->deleted_ms < cfg->purge_delay_s * 1000)
			return sealvm_err_set(
				err, -EAGAIN, "REQ_TOO_EARLY_ERR",
				"The key was deleted recently: it can be purged %lld s "
				"after its deletion; wait and try again",
				(long long)cfg->purge_delay_s);
		break;
	default:
		break;
	}
	return 0;
}

/* ---- configuration and the object ----------------------------------------------------------- */

void kms_config_defaults(struct kms_config *cfg)
{
	cfg->enable_delay_s = 30;
	cfg->rotate_interval_s = 3600;
	cfg->restore_window_s = 30 * 86400;
	cfg->dual_auth_window_s = 7 * 86400;
	cfg->purge_delay_s = 4 * 3600;
	cfg->import_token_min_s = 300;
}

int kms_config_check(const struct kms_config *cfg, struct sealvm_err *err)
{
	static const int64_t max = 10LL * 366 * 86400;
	const struct {
		const char *name;
		int64_t v;
	} f[] = {
		{"enable_delay_s", cfg->enable_delay_s},
		{"rotate_interval_s", cfg->rotate_interval_s},
		{"restore_window_s", cfg->restore_window_s},
		{"dual_auth_window_s", cfg->dual_auth_window_s},
		{"purge_delay_s", cfg->purge_delay_s},
		{"import_token_min_s", cfg->import_token_min_s},
	};
	for (size_t i = 0; i < ELEMENTSOF(f); i++)
		if (f[i].v < 0 || f[i].v > max)
			return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
					      "kms.%s must be 0 to %lld seconds", f[i].name,
					      (long long)max);
	if (cfg->import_token_min_s < 1 || cfg->import_token_min_s > 86400)
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "kms.import_token_min_s must be 1 to 86400 seconds");
	return 0;
}

int kms_new(const struct kms_deps *deps, const struct kms_config *cfg, struct kms **ret,
	    struct sealvm_err *err)
{
	if (!deps || !deps->db || !deps->ks || !deps->rc || !deps->iam || !deps->master ||
	    !deps->chain_key || !deps->region)
		return sealvm_err_set(
			err, -EINVAL, "INTERNAL",
			"the key service needs a database, keystore, resource "
			"controller, identity service, master key, audit key and region");
	struct kms_config c;
	if (cfg)
		c = *cfg;
	else
		kms_config_defaults(&c);
	int r = kms_config_check(&c, err);
	if (r < 0)
		return r;
	struct kms *kms = calloc(1, sizeof(*kms));
	if (!kms)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	kms->deps = *deps;
	kms->cfg = c;
	/* Without memory for them, every lookup reads the database (a NULL cache misses). */
	(void)sealvm_rowcache_new(1024, sizeof(struct kms_key), &kms->key_rows);
	(void)sealvm_rowcache_new(1024, sizeof(struct kms_version), &kms->version_rows);
	kms_http_init(kms);
	*ret = kms;
	return 0;
}

void kms_free(struct kms *kms)
{
	if (!kms)
		return;
	sealvm_rowcache_free(kms->key_rows);
	sealvm_rowcache_free(kms->version_rows);
	free(kms);
}

int kms_listener_add(struct kms *kms, const struct kms_listener *l)
{
	if (!l || !l->service_name || !l->notify)
		return -EINVAL;
	if (kms->n_listeners >= KMS_LISTENERS_MAX)
		return -E2BIG;
	kms->listeners[kms->n_listeners++] = *l;
	return 0;
}

/* ---- reason codes ------------------------------------------------------------------------------
 */

const char *kms_reason_code(const struct sealvm_err *err, char *buf, size_t size)
{
	const char *colon = strchr(err->reason, ':');
	if (!colon)
		return err->reason;
	snprintf(buf, size, "%.*s", (int)(colon - err->reason), err->reason);
	return buf;
}

/* ---- lookups -----------------------------------------------------------------------------------
 */

int kms_instance_get(struct kms *kms, const char *account_id, const char *instance,
		     struct rc_instance *ret, struct sealvm_err *err)
{
	struct sealvm_err e = SEALVM_ERR_INIT;
	if (!kms_uuid_valid(instance))
		return sealvm_err_set(err, -EINVAL, "INVALID_HEADER_ERR:bluemix-instance",
				      "the bluemix-instance header must be the GUID of a key "
				      "service instance (POST /v2/resource_instances makes one)");
	int r = rc_instance_get(kms->deps.rc, account_id, instance, ret, &e);
	if (r == -ENOENT || (r >= 0 && strcmp(ret->resource_id, "kms") != 0))
		return sealvm_err_set(err, -ENOENT, "INSTANCE_NOT_FOUND_ERR",
				      "no key service instance %s in this account", instance);
	if (r < 0) {
		if (err && !sealvm_err_isset(err))
			*err = e;
		return r;
	}
	return 0;
}

struct key_ref {
	struct kms *kms;
	const char *instance, *id_or_alias;
};

static int key_read(sqlite3 *conn, void *ctx, void *row, struct sealvm_err *err)
{
	const struct key_ref *ref = ctx;
	return kms_store_key_get(ref->kms, conn, ref->instance, ref->id_or_alias, row, err);
}

int kms_key_lookup(struct kms *kms, const char *instance, const char *id_or_alias,
		   struct kms_key *ret, struct sealvm_err *err)
{
	struct key_ref ref = {kms, instance, id_or_alias};
	char key[SEALVM_ROWCACHE_KEY_MAX + 1];
	/* "INSTANCE/ID-OR-ALIAS": the instance has no '/', so the split is unique. */
	bool keyed =
		instance && id_or_alias && !strchr(instance, '/') &&
		(size_t)snprintf(key, sizeof(key), "%s/%s", instance, id_or_alias) < sizeof(key);
	return sealvm_rowcache_read(kms->key_rows, kms->deps.db, keyed ? key : NULL, ret, key_read,
				    &ref, err);
}

void kms_target(const struct rc_instance *inst, const struct kms_key *key, struct http_target *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->account_id, sizeof(t->account_id), "%s", inst->account_id);
	snprintf(t->service_name, sizeof(t->service_name), "kms");
	snprintf(t->service_instance, sizeof(t->service_instance), "%s", inst->guid);
	if (key) {
		snprintf(t->resource_type, sizeof(t->resource_type), "key");
		snprintf(t->resource, sizeof(t->resource), "%s", key->id);
		snprintf(t->crn, sizeof(t->crn), "%s", key->crn);
		snprintf(t->name, sizeof(t->name), "%s", key->name);
	} else {
		snprintf(t->crn, sizeof(t->crn), "%s", inst->crn);
		snprintf(t->name, sizeof(t->name), "%s", inst->name);
	}
}

/* A key's CRN: the instance's, with resource type "key" and the key id. */
static void key_crn(const struct rc_instance *inst, const char *key_id, char *buf, size_t size)
{
	size_t n = strlen(inst->crn);
	/* An instance CRN ends in "::" (no resource type, no resource). */
	if (n >= 2 && strcmp(inst->crn + n - 2, "::") == 0)
		snprintf(buf, size, "%.*s:key:%s", (int)(n - 2), inst->crn, key_id);
	else
		snprintf(buf, size, "crn:v1:sealvm:local:kms:%s:a/%s:%s:key:%s", inst->region,
			 inst->account_id, inst->guid, key_id);
}

int kms_key_crn_parse(const char *crn, char *ret_instance, char *ret_key, struct sealvm_err *err)
{
	/* crn:v1:<cname>:<ctype>:kms:<location>:a/<account>:<instance>:key:<id> */
	char f[10][128];
	const char *p = crn;
	int n = 0;
	while (p && n < 10) {
		const char *c = strchr(p, ':');
		size_t len = c ? (size_t)(c - p) : strlen(p);
		if (len >= sizeof(f[0]))
			break;
		memcpy(f[n], p, len);
		f[n][len] = '\0';
		n++;
		p = c ? c + 1 : NULL;
	}
	if (!crn || p || n != 10 || strcmp(f[0], "crn") != 0 || strcmp(f[1], "v1") != 0 ||
	    strcmp(f[4], "kms") != 0 || strcmp(f[8], "key") != 0 || !kms_uuid_valid(f[7]) ||
	    !kms_uuid_valid(f[9]))
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:crn",
				      "not the CRN of a key of this service "
				      "(crn:v1:…:kms:REGION:a/ACCOUNT:INSTANCE:key:KEY)");
	memcpy(ret_instance, f[7], 37); /* both are UUIDs: 36 characters and the NUL */
	memcpy(ret_key, f[9], 37);
	return 0;
}

/* ---- calls and their audit events ---------------------------------------------------------- */

/* The status an answer gets for a reason: Key Protect's table (kms_http.c). */
static int call_status(int r, const struct sealvm_err *e, int ok_status)
{
	int fallback;
	if (r >= 0)
		return ok_status ? ok_status : 200;
	switch (-r) {
	case EINVAL:
	case EBADMSG:
		fallback = 400;
		break;
	case EPERM:
		fallback = 401;
		break;
	case EACCES:
		fallback = 403;
		break;
	case ENOENT:
		fallback = 404;
		break;
	case EEXIST:
	case EALREADY:
	case EAGAIN:
		fallback = 409;
		break;
	case ESTALE:
		fallback = 410;
		break;
	case ENOMEM:
	case EBUSY:
	case ENOSPC:
		fallback = 503;
		break;
	default:
		fallback = 500;
	}
	return kms_reason_status(e, fallback);
}

void kms_call_audit_data(struct kms_call *c, json_t *request_data, json_t *response_data)
{
	if (c->req) {
		http_request_set_audit_data(c->req, request_data, response_data);
		return;
	}
	json_decref(c->request_data);
	json_decref(c->response_data);
	c->request_data = request_data;
	c->response_data = response_data;
}

void kms_call_set_target(struct kms_call *c, const struct http_target *t)
{
	if (c->req)
		http_request_set_target(c->req, t);
	else
		c->target = *t;
}

static void call_event(struct kms_call *c, int status, const struct sealvm_err *failure,
		       struct audit_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->action = c->audit_action;
	ev->outcome = status < 400 ? AUDIT_SUCCESS : AUDIT_FAILURE;
	ev->status = status;
	ev->reason_type = status < 400 ? "OK" : "Failed";
	ev->failure =
		status >= 400 && failure && sealvm_err_isset(failure) ? failure->message : NULL;
	ev->initiator = c->p && c->p->kind != PRINCIPAL_NONE ? c->p : NULL;
	ev->host_address = "local";
	ev->user_agent = "sealvm in-process";
	ev->target_id = c->target.crn[0] ? c->target.crn : NULL;
	ev->target_name = c->target.name[0] ? c->target.name : NULL;
	ev->target_type = "kms/secrets";
	ev->account_id = c->target.account_id[0]       ? c->target.account_id
			 : c->p && c->p->account_id[0] ? c->p->account_id
						       : NULL;
	ev->correlation_id = c->correlation_id;
	ev->request_data = c->request_data;
	ev->response_data = c->response_data;
}

int kms_call_audit_in_job(struct kms_call *c, sqlite3 *conn, int status, struct sealvm_err *err)
{
	if (c->req)
		return http_request_audit_in_job(c->req, conn, status, err);
	struct audit_event ev;
	call_event(c, status, NULL, &ev);
	int r = audit_append(conn, &ev, c->kms->deps.chain_key, NULL, err);
	if (r >= 0)
		c->audited = true;
	return r;
}

struct finish_job {
	struct kms_call *c;
	struct audit_record *rec; /* built before queueing: the writer only chains and stores */
};

static int finish_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct finish_job *j = userdata;
	return audit_record_append(conn, j->rec, j->c->kms->deps.chain_key, NULL, err);
}

int kms_call_finish(struct kms_call *c, int r, const struct sealvm_err *failure,
		    struct sealvm_err *err)
{
	/* A job that failed rolled its event back with it: record the failure then. */
	if (c->req || (c->audited && r >= 0))
		return r;
	struct finish_job j = {.c = c};
	struct sealvm_err aerr = SEALVM_ERR_INIT;
	struct audit_event ev;
	call_event(c, call_status(r, failure, c->ok_status), failure, &ev);
	int a = audit_record_new(&ev, &j.rec, &aerr);
	if (a >= 0)
		a = db_write_flags(c->kms->deps.db, finish_run, &j, DB_JOB_APPEND_ONLY, &aerr);
	audit_record_free(j.rec);
	c->audited = true;
	if (a < 0) {
		log_error("kms: cannot record %s for %s (%s): refusing the call", c->audit_action,
			  c->p ? c->p->name : "?", aerr.message);
		sealvm_err_clear(err);
		return sealvm_err_set(err, -EIO, "AUDIT_UNAVAILABLE",
				      "the audit event for this call could not be written, so the "
				      "call was refused; retry later");
	}
	return r;
}

void kms_call_done(struct kms_call *c)
{
	json_decref(c->request_data);
	json_decref(c->response_data);
	c->request_data = c->response_data = NULL;
}

int kms_call_begin(struct kms_call *c, struct kms *kms, const struct sealvm_principal *p,
		   const char *instance, const char *key, const char *iam_action,
		   const char *audit_action, struct kms_key *ret_key, struct sealvm_err *err)
{
	memset(c, 0, sizeof(*c));
	c->kms = kms;
	c->p = p;
	c->audit_action = audit_action;
	if (kms_uuid_new(c->correlation_id) < 0)
		snprintf(c->correlation_id, sizeof(c->correlation_id), "in-process");
	if (!p || p->kind == PRINCIPAL_NONE || !p->account_id[0])
		return sealvm_err_set(err, -EPERM, "UNAUTHORIZED_ERR",
				      "the call has no authenticated principal");
	snprintf(c->target.account_id, sizeof(c->target.account_id), "%s", p->account_id);
	snprintf(c->target.service_name, sizeof(c->target.service_name), "kms");
	int r = kms_instance_get(kms, p->account_id, instance, &c->inst, err);
	if (r < 0)
		return r;
	kms_target(&c->inst, NULL, &c->target);
	if (key) {
		r = kms_key_lookup(kms, c->inst.guid, key, ret_key, err);
		if (r < 0)
			return r;
		kms_target(&c->inst, ret_key, &c->target);
	}
	return iam_authorize(kms->deps.iam, p, iam_action, &c->target, err);
}

int kms_call_end(struct kms_call *c, int r, struct sealvm_err *e, struct sealvm_err *err)
{
	r = kms_call_finish(c, r, e, e);
	kms_call_done(c);
	if (r < 0 && err && !sealvm_err_isset(err))
		*err = *e;
	return r;
}

/* ---- create / import --------------------------------------------------------------------------
 */

int kms_alias_check(const char *alias, struct sealvm_err *err)
{
	static const char *const reserved[] = {
		"allowed_ip",	"key",		 "keys",    "metadata", "policy", "policies",
		"registration", "registrations", "ring",    "rings",	"rotate", "wrap",
		"unwrap",	"rewrap",	 "version", "versions",
	};
	size_t n = alias ? strlen(alias) : 0;
	if (n < KMS_ALIAS_MIN || n > KMS_ALIAS_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:alias",
				      "an alias must have %d to %d characters", KMS_ALIAS_MIN,
				      KMS_ALIAS_MAX);
	for (size_t i = 0; i < n; i++) {
		char c = alias[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return sealvm_err_set(
				err, -EINVAL, "INVALID_FIELD_ERR:alias",
				"an alias may only have letters, digits, '-' and '_'");
	}
	if (kms_uuid_valid(alias))
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:alias",
				      "an alias cannot be a UUID (key ids are)");
	for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
		if (strcasecmp(alias, reserved[i]) == 0)
			return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:alias",
					      "'%s' is a reserved word and cannot be an alias",
					      reserved[i]);
	return 0;
}

struct create_job {
	struct kms_call *c;
	const struct kms_create_input *in;
	struct kms_key k;
	struct kms_version v;
	unsigned char *payload; /* sealed standard-key material */
	size_t payload_len;
	int64_t now;
};

static int create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct create_job *j = userdata;
	bool dual;
	int r, count;

	r = kms_store_policy_get(conn, j->k.instance, &dual, NULL, NULL, err);
	if (r < 0)
		return r;
	j->k.dual_auth = dual;
	r = kms_store_key_insert(conn, &j->k, j->payload, j->payload_len, err);
	if (r < 0)
		return r;
	r = kms_store_version_insert(conn, &j->v, err);
	if (r < 0)
		return r;
	if (j->in->n_aliases) {
		r = kms_store_alias_count(conn, j->k.instance, NULL, &count, err);
		if (r < 0)
			return r;
		if (count + (int)j->in->n_aliases > KMS_ALIASES_PER_INSTANCE)
			return sealvm_err_set(err, -EINVAL, "KEY_ALIAS_QUOTA_ERR",
					      "an instance has at most %d aliases",
					      KMS_ALIASES_PER_INSTANCE);
	}
	for (size_t i = 0; i < j->in->n_aliases; i++) {
		r = kms_store_alias_insert(conn, j->k.instance, j->in->aliases[i], j->k.id, j->now,
					   j->k.created_by, err);
		if (r < 0)
			return r;
	}
	struct http_target t;
	kms_target(&j->c->inst, &j->k, &t);
	kms_call_set_target(j->c, &t);
	kms_call_audit_data(j->c,
			    json_pack("{s:s, s:s, s:b, s:b}", "instanceID", j->k.instance,
				      "keyRingId", j->k.key_ring, "extractable", j->k.extractable,
				      "imported", j->k.imported),
			    json_pack("{s:s, s:i, s:s}", "keyId", j->k.id, "keyState", j->k.state,
				      "keyVersionId", j->v.id));
	return kms_call_audit_in_job(j->c, conn, j->c->ok_status ? j->c->ok_status : 201, err);
}

const char *kms_principal_id(const struct sealvm_principal *p)
{
	return p && p->iam_id[0] ? p->iam_id : (p && p->name[0] ? p->name : "unknown");
}

int kms_op_create(struct kms_call *c, const struct kms_create_input *in, struct kms_key *ret,
		  struct sealvm_err *err)
{
	struct kms *kms = c->kms;
	struct create_job j = {.c = c, .in = in, .now = kms_now_ms()};
	_cleanup_secret_ struct sealvm_secret *material = NULL;
	char name[KS_NAME_BUF];
	bool made = false;
	int r;

	if (!in->name || !in->name[0] || strlen(in->name) > KMS_NAME_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:name",
				      "The field 'name' must be: 1 to %d characters", KMS_NAME_MAX);
	for (const char *s = in->name; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:name",
					      "The field 'name' must be: printable text");
	if (in->description && strlen(in->description) > KMS_DESCRIPTION_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:description",
				      "The field 'description' must be: at most %d characters",
				      KMS_DESCRIPTION_MAX);
	if (in->n_aliases > KMS_ALIASES_PER_KEY)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:aliases",
				      "a key has at most %d aliases", KMS_ALIASES_PER_KEY);
	for (size_t i = 0; i < in->n_aliases; i++) {
		r = kms_alias_check(in->aliases[i], err);
		if (r < 0)
			return r;
		for (size_t k = 0; k < i; k++)
			if (strcmp(in->aliases[i], in->aliases[k]) == 0)
				return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:aliases",
						      "the alias '%s' is given twice",
						      in->aliases[i]);
	}
	if (in->key_ring && strcmp(in->key_ring, "default") != 0)
		return sealvm_err_set(err, -ENOENT, "KEY_RING_NOT_FOUND_ERR",
				      "key ring '%s' does not exist: this instance has the "
				      "'default' key ring",
				      in->key_ring);
	if (in->expiration_ms && in->expiration_ms <= j.now)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:expirationDate",
				      "The field 'expirationDate' must be: a time in the future");
	if (in->payload) {
		size_t n = in->payload->len;
		if (!in->extractable && n != 16 && n != 24 && n != 32)
			return sealvm_err_set(
				err, -EINVAL, "INVALID_FIELD_ERR:payload",
				"The field 'payload' must be: 16, 24 or 32 bytes of "
				"key material (AES-128, -192 or -256), base64 encoded");
		if (in->extractable && (n == 0 || n > KMS_STANDARD_KEY_MAX))
			return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:payload",
					      "The field 'payload' must be: 1 to %d bytes, base64 "
					      "encoded",
					      KMS_STANDARD_KEY_MAX);
	}

	struct kms_key *k = &j.k;
	if (kms_uuid_new(k->id) < 0 || kms_uuid_new(j.v.id) < 0)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "no random bytes");
	snprintf(k->account_id, sizeof(k->account_id), "%s", c->inst.account_id);
	snprintf(k->instance, sizeof(k->instance), "%s", c->inst.guid);
	key_crn(&c->inst, k->id, k->crn, sizeof(k->crn));
	snprintf(k->name, sizeof(k->name), "%s", in->name);
	snprintf(k->description, sizeof(k->description), "%s",
		 in->description ? in->description : "");
	snprintf(k->key_ring, sizeof(k->key_ring), "default");
	k->extractable = in->extractable;
	k->imported = in->payload != NULL;
	k->state = KMS_ACTIVE;
	k->created_ms = k->updated_ms = k->action_ms = j.now;
	snprintf(k->created_by, sizeof(k->created_by), "%s", kms_principal_id(c->p));
	snprintf(k->updated_by, sizeof(k->updated_by), "%s", k->created_by);
	k->expiration_ms = in->expiration_ms;
	k->version = 1;
	snprintf(k->version_id, sizeof(k->version_id), "%s", j.v.id);
	k->version_ms = j.now;
	snprintf(j.v.key_id, sizeof(j.v.key_id), "%s", k->id);
	j.v.version = 1;
	j.v.created_ms = j.now;

	if (!in->extractable) {
		size_t bytes = in->payload ? in->payload->len : 32;
		kms_version_name(k->instance, k->id, 1, name, sizeof(name));
		j.v.ref_len = sizeof(j.v.ref);
		r = keystore_key_create(kms->deps.ks, name, bytes, in->payload, j.v.ref,
					&j.v.ref_len, err);
		if (r < 0)
			return r;
		made = true;
		j.v.bytes = (int)bytes;
		k->bits = (int)bytes * 8;
	} else {
		char aad[160];
		if (in->payload) {
			r = sealvm_secret_from(in->payload->data, in->payload->len, &material);
		} else {
			r = sealvm_secret_random(32, &material);
		}
		if (r < 0)
			return sealvm_err_set(err, r, NULL, "no memory for the key material");
		snprintf(aad, sizeof(aad), "kms/standard-key/%s/%s", k->instance, k->id);
		r = seal_blob(kms->deps.master, aad, material, &j.payload, &j.payload_len, err);
		if (r < 0)
			return r;
		/* A standard key has one version and nothing in the keystore. */
		j.v.bytes = (int)material->len;
		j.v.ref[0] = '-';
		j.v.ref_len = 1;
		k->bits = (int)MIN(material->len * 8, (size_t)256);
	}

	r = db_write(kms->deps.db, create_run, &j, err);
	free(j.payload);
	if (r < 0) {
		if (made) {
			struct sealvm_err e = SEALVM_ERR_INIT;
			if (keystore_key_destroy(kms->deps.ks, name, j.v.ref, j.v.ref_len, &e) < 0)
				log_warning("kms: could not destroy keystore key %s after a failed "
					    "create: %s",
					    name, e.message);
		}
		return r;
	}
	*ret = j.k;
	return 0;
}

/* ---- wrap / unwrap ----------------------------------------------------------------------------
 */

/* Encrypts @raw under version @v of @k with @aad: a new base64 ciphertext. */
static int wrap_raw(struct kms *kms, const struct kms_key *k, const struct kms_version *v,
		    const struct sealvm_secret *raw, const char *const *aad, size_t n_aad,
		    char **ret, struct sealvm_err *err)
{
	unsigned char header[KMS_CTEXT_HEADER], iv[KEYSTORE_IV_BYTES], tag[KEYSTORE_TAG_BYTES];
	_cleanup_free_ unsigned char *a = NULL, *ct = NULL;
	size_t a_len;
	char name[KS_NAME_BUF];
	int r;

	if (kms_ctext_header(v->id, header) < 0)
		return sealvm_err_set(err, -EIO, "INCOMPLETE_METADATA_ERR",
				      "Key metadata became corrupted: version id %s", v->id);
	r = kms_ctext_aad(header, k->account_id, k->instance, k->id, v->version, aad, n_aad, &a,
			  &a_len);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot build the additional data");
	ct = malloc(raw->len);
	if (!ct)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	kms_version_name(k->instance, k->id, v->version, name, sizeof(name));
	r = keystore_encrypt(kms->deps.ks, name, v->ref, v->ref_len, a, a_len, raw, iv, ct, tag,
			     err);
	if (r < 0)
		return r;
	r = kms_ctext_encode(header, iv, ct, raw->len, tag, ret);
	return r < 0 ? sealvm_err_set(err, r, NULL, "out of memory") : 0;
}

struct version_ref {
	struct kms *kms;
	const char *key_id, *version_id;
	int number;
};

static int version_read(sqlite3 *conn, void *ctx, void *row, struct sealvm_err *err)
{
	const struct version_ref *ref = ctx;
	return kms_store_version_get(ref->kms, conn, ref->key_id, ref->version_id, ref->number, row,
				     err);
}

static int version_get(struct kms *kms, const char *key_id, const char *version_id, int number,
		       struct kms_version *ret, struct sealvm_err *err)
{
	struct version_ref ref = {kms, key_id, version_id, number};
	char key[SEALVM_ROWCACHE_KEY_MAX + 1];
	/* "KEY/VERSION-ID/NUMBER" ("-" for no version id): neither id has a '/'. */
	bool keyed = key_id && !strchr(key_id, '/') && (!version_id || !strchr(version_id, '/')) &&
		     (size_t)snprintf(key, sizeof(key), "%s/%s/%d", key_id,
				      version_id ? version_id : "-", number) < sizeof(key);
	return sealvm_rowcache_read(kms->version_rows, kms->deps.db, keyed ? key : NULL, ret,
				    version_read, &ref, err);
}

int kms_op_wrap(struct kms_call *c, const struct kms_key *k, const struct sealvm_secret *plain_text,
		const char *const *aad, size_t n_aad, struct kms_wrap_result *ret,
		struct sealvm_err *err)
{
	struct kms *kms = c->kms;
	_cleanup_secret_ struct sealvm_secret *raw = NULL, *text = NULL;
	struct kms_version v;
	int r;

	memset(ret, 0, sizeof(*ret));
	r = kms_check_action(&kms->cfg, k, KMS_A_WRAP, kms_now_ms(), err);
	if (r < 0)
		return r;
	r = kms_aad_check(aad, n_aad, err);
	if (r < 0)
		return r;
	if (plain_text) {
		r = kms_plaintext_decode((const char *)plain_text->data, plain_text->len, &raw,
					 err);
		if (r < 0)
			return r;
	} else {
		r = sealvm_secret_random(32, &raw);
		if (r >= 0)
			r = kms_plaintext_encode(raw, &text);
		if (r < 0)
			return sealvm_err_set(err, r, NULL, "cannot make a DEK");
	}
	r = version_get(kms, k->id, NULL, k->version, &v, err);
	if (r < 0)
		return r;
	r = wrap_raw(kms, k, &v, raw, aad, n_aad, &ret->ciphertext, err);
	explicit_bzero(&v, sizeof(v));
	if (r < 0)
		return r;
	snprintf(ret->key_version, sizeof(ret->key_version), "%s", k->version_id);
	ret->plaintext = TAKE_PTR(text);
	return 0;
}

static int unprocessable(struct sealvm_err *err)
{
	sealvm_err_clear(err);
	return sealvm_err_set(err, -EBADMSG, "UNPROCESSABLE_CIPHERTEXT_ERR",
			      "The provided ciphertext is invalid or corrupted: it does not open "
			      "under this key with this AAD");
}

int kms_op_unwrap(struct kms *kms, const struct kms_key *k, const char *ciphertext,
		  const char *const *aad, size_t n_aad, bool rewrap_always,
		  struct kms_unwrap_result *ret, struct sealvm_err *err)
{
	_cleanup_free_ unsigned char *blob = NULL, *a = NULL;
	_cleanup_secret_ struct sealvm_secret *raw = NULL;
	struct kms_ctext ct;
	struct kms_version v;
	size_t blob_len, a_len;
	char name[KS_NAME_BUF];
	int r;

	memset(ret, 0, sizeof(*ret));
	r = kms_check_action(&kms->cfg, k, rewrap_always ? KMS_A_REWRAP : KMS_A_UNWRAP,
			     kms_now_ms(), err);
	if (r < 0)
		return r;
	r = kms_aad_check(aad, n_aad, err);
	if (r < 0)
		return r;
	if (!ciphertext)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:ciphertext",
				      "The field 'ciphertext' is required");
	r = kms_ctext_decode(ciphertext, strlen(ciphertext), &blob, &blob_len, err);
	if (r < 0)
		return r;
	r = kms_ctext_parse(blob, blob_len, &ct, err);
	if (r < 0)
		return r;
	r = version_get(kms, k->id, ct.version_id, 0, &v, err);
	if (r == -ENOENT)
		return unprocessable(err);
	if (r < 0)
		return r;
	r = kms_ctext_aad(ct.header, k->account_id, k->instance, k->id, v.version, aad, n_aad, &a,
			  &a_len);
	if (r < 0) {
		explicit_bzero(&v, sizeof(v));
		return sealvm_err_set(err, r, NULL, "cannot build the additional data");
	}
	kms_version_name(k->instance, k->id, v.version, name, sizeof(name));
	r = keystore_decrypt(kms->deps.ks, name, v.ref, v.ref_len, a, a_len, ct.iv, ct.ct,
			     ct.ct_len, ct.tag, &raw, err);
	explicit_bzero(&v, sizeof(v));
	if (r == -EBADMSG)
		return unprocessable(err);
	if (r < 0)
		return r;
	r = kms_plaintext_encode(raw, &ret->plaintext);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "out of memory");
	snprintf(ret->key_version, sizeof(ret->key_version), "%s", ct.version_id);
	if (rewrap_always || strcmp(ct.version_id, k->version_id) != 0) {
		struct kms_version newest;
		r = version_get(kms, k->id, NULL, k->version, &newest, err);
		if (r >= 0)
			r = wrap_raw(kms, k, &newest, raw, aad, n_aad, &ret->rewrapped, err);
		explicit_bzero(&newest, sizeof(newest));
		if (r < 0) {
			kms_unwrap_result_done(ret);
			return r;
		}
		snprintf(ret->rewrapped_version, sizeof(ret->rewrapped_version), "%s",
			 k->version_id);
	}
	return 0;
}

void kms_wrap_result_done(struct kms_wrap_result *r)
{
	if (!r)
		return;
	free(r->ciphertext);
	sealvm_secret_free(r->plaintext);
	memset(r, 0, sizeof(*r));
}

void kms_unwrap_result_done(struct kms_unwrap_result *r)
{
	if (!r)
		return;
	sealvm_secret_free(r->plaintext);
	free(r->rewrapped);
	memset(r, 0, sizeof(*r));
}

/* ---- the in-process API -------------------------------------------------------------------------
 */

int kms_wrap(struct kms *kms, const struct sealvm_principal *p, const char *instance,
	     const char *key, const struct sealvm_secret *plaintext, const char *const *aad,
	     size_t n_aad, struct kms_wrap_result *ret, struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = kms_call_begin(&c, kms, p, instance, key, "kms.secrets.wrap", "kms.secrets.wrap",
			       &k, &e);
	memset(ret, 0, sizeof(*ret));
	if (r >= 0)
		r = kms_op_wrap(&c, &k, plaintext, aad, n_aad, ret, &e);
	if (r >= 0)
		kms_call_audit_data(
			&c, json_pack("{s:s, s:s}", "instanceID", c.inst.guid, "keyId", k.id),
			json_pack("{s:s}", "keyVersionId", ret->key_version));
	else
		kms_call_audit_data(&c, json_pack("{s:s}", "instanceID", instance ? instance : ""),
				    NULL);
	r = kms_call_end(&c, r, &e, err);
	if (r < 0)
		kms_wrap_result_done(ret);
	return r;
}

int kms_unwrap(struct kms *kms, const struct sealvm_principal *p, const char *instance,
	       const char *key, const char *ciphertext, const char *const *aad, size_t n_aad,
	       struct kms_unwrap_result *ret, struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = kms_call_begin(&c, kms, p, instance, key, "kms.secrets.unwrap",
			       "kms.secrets.unwrap", &k, &e);
	memset(ret, 0, sizeof(*ret));
	if (r >= 0)
		r = kms_op_unwrap(kms, &k, ciphertext, aad, n_aad, false, ret, &e);
	if (r >= 0) {
		json_t *resp = json_pack("{s:s}", "keyVersionId", ret->key_version);
		if (resp && ret->rewrapped)
			json_object_set_new(resp, "rewrappedKeyVersionId",
					    json_string(ret->rewrapped_version));
		kms_call_audit_data(
			&c, json_pack("{s:s, s:s}", "instanceID", c.inst.guid, "keyId", k.id),
			resp);
	} else {
		kms_call_audit_data(&c, json_pack("{s:s}", "instanceID", instance ? instance : ""),
				    NULL);
	}
	r = kms_call_end(&c, r, &e, err);
	if (r < 0)
		kms_unwrap_result_done(ret);
	return r;
}

int kms_unwrap_unaudited(struct kms *kms, const char *account_id, const char *instance,
			 const char *key, const char *ciphertext, const char *const *aad,
			 size_t n_aad, struct kms_unwrap_result *ret, struct sealvm_err *err)
{
	struct rc_instance inst;
	struct kms_key k;
	memset(ret, 0, sizeof(*ret));
	int r = kms_instance_get(kms, account_id, instance, &inst, err);
	if (r >= 0)
		r = kms_key_lookup(kms, inst.guid, key, &k, err);
	if (r >= 0)
		r = kms_op_unwrap(kms, &k, ciphertext, aad, n_aad, false, ret, err);
	return r;
}

/* ---- state changes
 * ------------------------------------------------------------------------------- */

struct change_job {
	struct kms_call *c;
	const char *key_id;
	enum kms_action action;
	int64_t now;
	bool force;
	bool dual_auth;
	struct kms_key k;     /* after the change */
	struct kms_version v; /* rotate: the new version */
	char old_version[KMS_ID_MAX];
	/* purge: what to destroy in the keystore once the rows are gone */
	struct kms_version *purged;
	size_t n_purged;
	size_t cap_purged;
};

static void change_audit_data(struct change_job *j)
{
	json_t *resp =
		json_pack("{s:s, s:i, s:s}", "keyId", j->k.id, "keyState",
			  kms_effective_state(&j->k, j->now), "keyVersionId", j->k.version_id);
	if (resp && j->action == KMS_A_SET_DELETION) {
		char t[32];
		json_object_set_new(
			resp, "newValue",
			json_pack("{s:s, s:s}", "authID", j->k.deletion_by, "authExpiration",
				  kms_time_text(j->k.deletion_expires_ms, t, sizeof(t))));
	}
	kms_call_audit_data(
		j->c,
		json_pack("{s:s, s:s}", "instanceID", j->k.instance, "keyRingId", j->k.key_ring),
		resp);
}

static int dual_auth_check(struct change_job *j, struct sealvm_err *err)
{
	const struct kms_key *k = &j->k;
	const char *me = kms_principal_id(j->c->p);
	if (!k->dual_auth)
		return 0;
	if (!k->deletion_by[0])
		return sealvm_err_set(err, -EALREADY, "AUTHORIZATIONS_NOT_MET",
				      "Number of authorizations required to delete is not met: 1 "
				      "prior authorization is required (this key has a dual "
				      "authorization policy: another user first calls "
				      "setKeyForDeletion)");
	if (k->deletion_expires_ms <= j->now)
		return sealvm_err_set(err, -EALREADY, "AUTHORIZATIONS_NOT_MET",
				      "Number of authorizations required to delete is not met: the "
				      "authorization to delete has expired; set the key for "
				      "deletion again");
	if (strcmp(k->deletion_by, me) == 0)
		return sealvm_err_set(err, -EALREADY, "AUTHORIZATIONS_NOT_MET",
				      "Number of authorizations required to delete is not met: the "
				      "user who set the key for deletion cannot also delete it; "
				      "another user with the Manager role must");
	return 0;
}

static int change_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct change_job *j = userdata;
	struct kms_key *k = &j->k;
	int r = kms_store_key_get_w(conn, j->c->inst.guid, j->key_id, k, err);
	if (r < 0)
		return r;
	r = kms_check_action(&j->c->kms->cfg, k, j->action, j->now, err);
	if (r < 0)
		return r;
	int status = j->c->ok_status ? j->c->ok_status : 204;
	switch (j->action) {
	case KMS_A_DISABLE:
		k->state = KMS_SUSPENDED;
		k->action_ms = j->now;
		break;
	case KMS_A_ENABLE:
		k->state = KMS_ACTIVE;
		k->action_ms = j->now;
		break;
	case KMS_A_SET_DELETION:
	case KMS_A_UNSET_DELETION:
		if (!k->dual_auth)
			return sealvm_err_set(
				err, -EALREADY, "NOT_DUAL_AUTH_ERR",
				"The key is not dual auth enabled and cannot be set "
				"for deletion (enable the dualAuthDelete policy first)");
		if (j->action == KMS_A_SET_DELETION) {
			snprintf(k->deletion_by, sizeof(k->deletion_by), "%s",
				 kms_principal_id(j->c->p));
			k->deletion_expires_ms = j->now + j->c->kms->cfg.dual_auth_window_s * 1000;
		} else {
			k->deletion_by[0] = '\0';
			k->deletion_expires_ms = 0;
		}
		break;
	case KMS_A_DELETE: {
		int all, prevent;
		r = dual_auth_check(j, err);
		if (r < 0)
			return r;
		r = kms_store_reg_count(conn, k->id, &all, &prevent, err);
		if (r < 0)
			return r;
		if (all > 0 && !j->force)
			return sealvm_err_set(
				err, -EALREADY, "PROTECTED_RESOURCE_ERR",
				"Key is protecting one or more cloud resources (%d "
				"registration%s): delete with force=true to delete it "
				"anyway",
				all, all == 1 ? "" : "s");
		if (prevent > 0)
			return sealvm_err_set(err, -EALREADY, "PREV_KEY_DEL_ERR",
					      "The key cannot be deleted because it's protecting a "
					      "cloud resource that has a retention policy (%d "
					      "registration%s with preventKeyDeletion)",
					      prevent, prevent == 1 ? "" : "s");
		k->state = KMS_DESTROYED;
		k->deleted_ms = j->now;
		snprintf(k->deleted_by, sizeof(k->deleted_by), "%s", kms_principal_id(j->c->p));
		k->deletion_by[0] = '\0';
		k->deletion_expires_ms = 0;
		k->action_ms = j->now;
		break;
	}
	case KMS_A_RESTORE:
		k->state = KMS_ACTIVE;
		k->deleted_ms = 0;
		k->deleted_by[0] = '\0';
		k->action_ms = j->now;
		status = j->c->ok_status ? j->c->ok_status : 201;
		break;
	case KMS_A_ROTATE:
		snprintf(j->old_version, sizeof(j->old_version), "%s", k->version_id);
		if (k->version + 1 != j->v.version)
			return sealvm_err_set(err, -EALREADY, "KEY_ACTION_INVALID_STATE_ERR",
					      "the key was rotated by another request at the same "
					      "time; try again");
		r = kms_store_version_insert(conn, &j->v, err);
		if (r < 0)
			return r;
		k->version = j->v.version;
		snprintf(k->version_id, sizeof(k->version_id), "%s", j->v.id);
		k->version_ms = j->v.created_ms;
		k->rotated_ms = j->now;
		k->action_ms = j->now;
		if (j->c->rotate_imported)
			k->imported = true;
		break;
	case KMS_A_POLICY_SET:
		k->dual_auth = j->dual_auth;
		if (!j->dual_auth) {
			k->deletion_by[0] = '\0';
			k->deletion_expires_ms = 0;
		}
		status = j->c->ok_status ? j->c->ok_status : 200;
		break;
	default:
		return sealvm_err_set(err, -EINVAL, "INTERNAL", "not a state change");
	}
	k->updated_ms = j->now;
	snprintf(k->updated_by, sizeof(k->updated_by), "%s", kms_principal_id(j->c->p));
	r = kms_store_key_update(conn, k, err);
	if (r < 0)
		return r;
	change_audit_data(j);
	return kms_call_audit_in_job(j->c, conn, status, err);
}

static int change(struct kms_call *c, struct change_job *j, struct sealvm_err *err)
{
	j->c = c;
	j->now = kms_now_ms();
	return db_write(c->kms->deps.db, change_run, j, err);
}

static enum kms_event_type event_of(enum kms_action a)
{
	switch (a) {
	case KMS_A_DISABLE:
		return KMS_EVENT_DISABLE;
	case KMS_A_ENABLE:
		return KMS_EVENT_ENABLE;
	case KMS_A_DELETE:
		return KMS_EVENT_DELETE;
	case KMS_A_RESTORE:
		return KMS_EVENT_RESTORE;
	default:
		return KMS_EVENT_ROTATE;
	}
}

int kms_op_set_state(struct kms_call *c, const char *key_id, enum kms_action a, struct kms_key *ret,
		     struct sealvm_err *err)
{
	struct change_job j = {.key_id = key_id, .action = a};
	int r = change(c, &j, err);
	if (r < 0)
		return r;
	if (a == KMS_A_DISABLE || a == KMS_A_ENABLE || a == KMS_A_RESTORE)
		kms_notify(c->kms, event_of(a), &j.k, NULL);
	if (ret)
		*ret = j.k;
	return 0;
}

int kms_op_delete(struct kms_call *c, const char *key_id, bool force, struct kms_key *ret,
		  struct sealvm_err *err)
{
	struct change_job j = {.key_id = key_id, .action = KMS_A_DELETE, .force = force};
	int r = change(c, &j, err);
	if (r < 0)
		return r;
	kms_notify(c->kms, KMS_EVENT_DELETE, &j.k, NULL);
	if (ret)
		*ret = j.k;
	return 0;
}

int kms_op_key_policy(struct kms_call *c, const char *key_id, bool dual_auth, struct kms_key *ret,
		      struct sealvm_err *err)
{
	struct change_job j = {
		.key_id = key_id, .action = KMS_A_POLICY_SET, .dual_auth = dual_auth};
	int r = change(c, &j, err);
	if (r >= 0 && ret)
		*ret = j.k;
	return r;
}

int kms_op_rotate(struct kms_call *c, const char *key_id, const struct sealvm_secret *payload,
		  struct sealvm_err *err)
{
	struct kms *kms = c->kms;
	struct change_job j = {.key_id = key_id, .action = KMS_A_ROTATE};
	struct kms_key k;
	char name[KS_NAME_BUF];
	int r;

	/* Checks that need no lock first, so no keystore object is made in vain. */
	r = kms_key_lookup(kms, c->inst.guid, key_id, &k, err);
	if (r < 0)
		return r;
	r = kms_check_action(&kms->cfg, &k, KMS_A_ROTATE, kms_now_ms(), err);
	if (r < 0)
		return r;
	if (k.imported && !payload)
		return sealvm_err_set(err, -EINVAL, "KEY_PAYLOAD_REQ_ERR:payload",
				      "This root key was created with user-supplied key material: "
				      "Key material is required to perform a 'rotate' action");
	if (payload && payload->len != 16 && payload->len != 24 && payload->len != 32)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:payload",
				      "The field 'payload' must be: 16, 24 or 32 bytes of key "
				      "material, base64 encoded");
	c->rotate_imported = payload != NULL;

	snprintf(j.v.key_id, sizeof(j.v.key_id), "%s", k.id);
	j.v.version = k.version + 1;
	j.v.created_ms = kms_now_ms();
	j.v.bytes = payload ? (int)payload->len : 32;
	if (kms_uuid_new(j.v.id) < 0)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "no random bytes");
	kms_version_name(k.instance, k.id, j.v.version, name, sizeof(name));
	j.v.ref_len = sizeof(j.v.ref);
	r = keystore_key_create(kms->deps.ks, name, (size_t)j.v.bytes, payload, j.v.ref,
				&j.v.ref_len, err);
	if (r < 0)
		return r;
	r = change(c, &j, err);
	if (r < 0) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		if (keystore_key_destroy(kms->deps.ks, name, j.v.ref, j.v.ref_len, &e) < 0)
			log_warning(
				"kms: could not destroy keystore key %s after a failed rotate: %s",
				name, e.message);
		explicit_bzero(&j.v, sizeof(j.v));
		return r;
	}
	explicit_bzero(&j.v, sizeof(j.v));
	kms_notify(kms, KMS_EVENT_ROTATE, &j.k, j.old_version);
	return 0;
}

/* ---- purge -------------------------------------------------------------------------------------
 */

static int purge_collect(const struct kms_version *v, void *arg)
{
	struct change_job *j = arg;
	struct kms_version *p = kms_grow(j->purged, j->n_purged, &j->cap_purged, sizeof(*p));
	if (!p)
		return -ENOMEM;
	j->purged = p;
	j->purged[j->n_purged++] = *v;
	return 0;
}

static int purge_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct change_job *j = userdata;
	int r = kms_store_key_get_w(conn, j->c->inst.guid, j->key_id, &j->k, err);
	if (r < 0)
		return r;
	r = kms_check_action(&j->c->kms->cfg, &j->k, KMS_A_PURGE, j->now, err);
	if (r < 0)
		return r;
	j->n_purged = 0;
	if (!j->k.extractable) {
		r = kms_store_version_list(conn, j->k.id, purge_collect, j, err);
		if (r < 0)
			return r == -ENOMEM ? sealvm_err_set(err, r, NULL, "out of memory") : r;
	}
	r = kms_store_key_delete_all(conn, j->k.id, err);
	if (r < 0)
		return r;
	kms_call_audit_data(j->c, json_pack("{s:s}", "instanceID", j->k.instance),
			    json_pack("{s:s, s:i}", "keyId", j->k.id, "keyState", KMS_DESTROYED));
	return kms_call_audit_in_job(j->c, conn, j->c->ok_status ? j->c->ok_status : 204, err);
}

int kms_op_purge(struct kms_call *c, const char *key_id, struct kms_key *ret,
		 struct sealvm_err *err)
{
	struct change_job j = {
		.c = c, .key_id = key_id, .action = KMS_A_PURGE, .now = kms_now_ms()};
	int r = db_write(c->kms->deps.db, purge_run, &j, err);
	if (r >= 0) {
		/* The rows are gone: now shred the material. A failure only leaves an orphan. */
		for (size_t i = 0; i < j.n_purged; i++) {
			char name[KS_NAME_BUF];
			struct sealvm_err e = SEALVM_ERR_INIT;
			kms_version_name(j.k.instance, j.k.id, j.purged[i].version, name,
					 sizeof(name));
			if (keystore_key_destroy(c->kms->deps.ks, name, j.purged[i].ref,
						 j.purged[i].ref_len, &e) < 0)
				log_warning(
					"kms: purge of %s: keystore object %s not destroyed: %s",
					j.k.id, name, e.message);
		}
		if (ret)
			*ret = j.k;
	}
	if (j.purged)
		explicit_bzero(j.purged, j.cap_purged * sizeof(*j.purged));
	free(j.purged);
	return r;
}

/* ---- instance policies --------------------------------------------------------------------------
 */

int kms_op_instance_policy_get(struct kms *kms, const char *instance, bool *ret_dual_auth,
			       int64_t *ret_updated_ms, char *ret_updated_by,
			       struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(kms->deps.db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	int r = kms_store_policy_get(conn, instance, ret_dual_auth, ret_updated_ms, ret_updated_by,
				     err);
	db_read_end(kms->deps.db, conn);
	return r;
}

struct policy_job {
	struct kms_call *c;
	bool dual;
	int64_t now;
};

static int policy_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct policy_job *j = userdata;
	int r = kms_store_policy_put(conn, j->c->inst.guid, j->dual, j->now,
				     kms_principal_id(j->c->p), err);
	if (r < 0)
		return r;
	kms_call_audit_data(j->c, json_pack("{s:s}", "instanceID", j->c->inst.guid),
			    json_pack("{s:{s:b}}", "dualAuthDelete", "enabled", j->dual));
	return kms_call_audit_in_job(j->c, conn, j->c->ok_status ? j->c->ok_status : 204, err);
}

int kms_op_instance_policy_set(struct kms_call *c, bool dual_auth, struct sealvm_err *err)
{
	struct policy_job j = {.c = c, .dual = dual_auth, .now = kms_now_ms()};
	return db_write(c->kms->deps.db, policy_run, &j, err);
}

/* ---- aliases ------------------------------------------------------------------------------------
 */

struct alias_job {
	struct kms_call *c;
	const char *key_id;
	const char *alias;
	bool create;
	int64_t now;
};

static int alias_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct alias_job *j = userdata;
	struct kms_key k;
	int r = kms_store_key_get_w(conn, j->c->inst.guid, j->key_id, &k, err);
	if (r < 0)
		return r;
	if (j->create) {
		int per_key, per_instance;
		r = kms_check_action(&j->c->kms->cfg, &k, KMS_A_ALIAS, j->now, err);
		if (r < 0)
			return r;
		r = kms_store_alias_count(conn, k.instance, k.id, &per_key, err);
		if (r >= 0)
			r = kms_store_alias_count(conn, k.instance, NULL, &per_instance, err);
		if (r < 0)
			return r;
		if (per_key >= KMS_ALIASES_PER_KEY)
			return sealvm_err_set(err, -EINVAL, "KEY_ALIAS_QUOTA_ERR",
					      "a key has at most %d aliases", KMS_ALIASES_PER_KEY);
		if (per_instance >= KMS_ALIASES_PER_INSTANCE)
			return sealvm_err_set(err, -EINVAL, "KEY_ALIAS_QUOTA_ERR",
					      "an instance has at most %d aliases",
					      KMS_ALIASES_PER_INSTANCE);
		r = kms_store_alias_insert(conn, k.instance, j->alias, k.id, j->now,
					   kms_principal_id(j->c->p), err);
	} else {
		r = kms_store_alias_delete(conn, k.instance, j->alias, k.id, err);
	}
	if (r < 0)
		return r;
	kms_call_audit_data(j->c,
			    json_pack("{s:s, s:s}", "instanceID", k.instance, "alias", j->alias),
			    json_pack("{s:s}", "keyId", k.id));
	return kms_call_audit_in_job(j->c, conn, j->create ? 201 : 204, err);
}

int kms_op_alias_create(struct kms_call *c, const char *key_id, const char *alias,
			int64_t *ret_created_ms, struct sealvm_err *err)
{
	struct alias_job j = {
		.c = c, .key_id = key_id, .alias = alias, .create = true, .now = kms_now_ms()};
	int r = kms_alias_check(alias, err);
	if (r >= 0)
		r = db_write(c->kms->deps.db, alias_run, &j, err);
	if (r >= 0 && ret_created_ms)
		*ret_created_ms = j.now;
	return r;
}

int kms_op_alias_delete(struct kms_call *c, const char *key_id, const char *alias,
			struct sealvm_err *err)
{
	struct alias_job j = {.c = c, .key_id = key_id, .alias = alias, .now = kms_now_ms()};
	return db_write(c->kms->deps.db, alias_run, &j, err);
}

/* ---- reads
 * ------------------------------------------------------------------------------------------ */

int kms_op_payload(struct kms *kms, const struct kms_key *k, struct sealvm_secret **ret,
		   struct sealvm_err *err)
{
	_cleanup_free_ unsigned char *blob = NULL;
	size_t len;
	char aad[160];

	if (!k->extractable)
		return sealvm_err_set(err, -EINVAL, "INTERNAL",
				      "a root key has no payload to show");
	sqlite3 *conn = db_read_begin(kms->deps.db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	int r = kms_store_key_payload(conn, k->id, &blob, &len, err);
	db_read_end(kms->deps.db, conn);
	if (r < 0)
		return r;
	snprintf(aad, sizeof(aad), "kms/standard-key/%s/%s", k->instance, k->id);
	r = seal_open(kms->deps.master, aad, blob, len, ret, err);
	if (r < 0)
		return sealvm_err_set(err, r, "INCOMPLETE_METADATA_ERR",
				      "Key metadata became corrupted: the material of key %s does "
				      "not open",
				      k->id);
	return 0;
}

struct key_list {
	struct kms_key *v;
	size_t n, cap;
};

static int key_collect(const struct kms_key *k, void *arg)
{
	struct key_list *l = arg;
	struct kms_key *p = kms_grow(l->v, l->n, &l->cap, sizeof(*p));
	if (!p)
		return -ENOMEM;
	l->v = p;
	l->v[l->n++] = *k;
	return 0;
}

int kms_op_list(struct kms *kms, const struct kms_list_query *q,
		int (*fn)(const struct kms_key *k, void *arg), void *arg, struct sealvm_err *err)
{
	struct key_list l = {0};
	sqlite3 *conn = db_read_begin(kms->deps.db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	int r = kms_store_key_list(conn, q, key_collect, &l, err);
	db_read_end(kms->deps.db, conn);
	/* @fn runs with no connection held: it may borrow one itself (aliases). */
	for (size_t i = 0; r >= 0 && i < l.n; i++)
		r = fn(&l.v[i], arg);
	free(l.v);
	return r == -ENOMEM ? sealvm_err_set(err, r, NULL, "out of memory") : r;
}

static int alias_add(const char *alias, int64_t created_ms, const char *by, void *arg)
{
	return json_array_append_new(arg, json_string(alias)) == 0 ? 0 : -ENOMEM;
}

int kms_op_aliases(struct kms *kms, const char *key_id, json_t **ret, struct sealvm_err *err)
{
	json_t *a = json_array();
	if (!a)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	sqlite3 *conn = db_read_begin(kms->deps.db);
	if (!conn) {
		json_decref(a);
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	}
	int r = kms_store_alias_list(conn, key_id, alias_add, a, err);
	db_read_end(kms->deps.db, conn);
	if (r < 0) {
		json_decref(a);
		return r == -ENOMEM ? sealvm_err_set(err, r, NULL, "out of memory") : r;
	}
	*ret = a;
	return 0;
}

int kms_op_versions(struct kms *kms, const char *key_id,
		    int (*fn)(const struct kms_version *v, void *arg), void *arg,
		    struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(kms->deps.db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	int r = kms_store_version_list(conn, key_id, fn, arg, err);
	db_read_end(kms->deps.db, conn);
	return r;
}
