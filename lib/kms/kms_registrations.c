// SPDX-License-Identifier: Apache-2.0
/*
 * kms_registrations.c — registrations (resource CRN ↔ root key) and the
 * lifecycle notifications they drive.
 *
 * A registration says "this resource is protected by this root key": an
 * image template, a boot volume, a bucket. While a key has registrations it
 * cannot be deleted without force, and not even with force when one of them
 * prevents deletion (a retention policy). The service that owns the
 * resource — the service-name field of its CRN — is told of disable,
 * enable, rotate, delete and restore through the listeners of kms.h, after
 * the change has committed, never from inside a database job.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/log.h"

#include "kms_internal.h"

bool kms_crn_service(const char *crn, char *buf, size_t size)
{
	/* crn:v1:<cname>:<ctype>:<service-name>:<location>:<scope>:<instance>:<type>:<resource> */
	const char *p = crn;
	buf[0] = '\0';
	if (!crn || strncmp(crn, "crn:v1:", 7) != 0)
		return false;
	int fields = 1;
	for (const char *c = crn; *c; c++)
		fields += *c == ':';
	if (fields < 10)
		return false;
	for (int i = 0; i < 4; i++)
		p = strchr(p, ':') + 1;
	size_t n = strcspn(p, ":");
	if (n == 0 || n >= size)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-' ||
		      p[i] == '.'))
			return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

/* The scope field ("a/<account>") of a CRN. */
static bool crn_in_account(const char *crn, const char *account_id)
{
	const char *p = crn;
	for (int i = 0; i < 6 && p; i++) {
		p = strchr(p, ':');
		if (p)
			p++;
	}
	if (!p || strncmp(p, "a/", 2) != 0)
		return false;
	size_t n = strcspn(p + 2, ":");
	return n == strlen(account_id) && strncmp(p + 2, account_id, n) == 0;
}

struct reg_job {
	struct kms_call *c;
	const char *key_id;
	struct kms_registration r;
	bool create;
	bool created;
	int64_t now;
};

static int reg_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct reg_job *j = userdata;
	struct kms_key k;
	int r = kms_store_key_get_w(conn, j->c->inst.guid, j->key_id, &k, err);
	if (r < 0)
		return r;
	if (j->create) {
		struct kms_registration old;
		struct sealvm_err e = SEALVM_ERR_INIT;
		r = kms_check_action(&j->c->kms->cfg, &k, KMS_A_REGISTER, j->now, err);
		if (r < 0)
			return r;
		r = kms_store_reg_get(conn, k.id, j->r.resource_crn, &old, &e);
		if (r < 0 && r != -ENOENT) {
			if (err && !sealvm_err_isset(err))
				*err = e;
			return r;
		}
		j->created = r == -ENOENT;
		if (!j->created) {
			j->r.created_ms = old.created_ms;
			snprintf(j->r.created_by, sizeof(j->r.created_by), "%s", old.created_by);
			snprintf(j->r.version_id, sizeof(j->r.version_id), "%s", old.version_id);
			j->r.version_ms = old.version_ms;
		} else {
			snprintf(j->r.version_id, sizeof(j->r.version_id), "%s", k.version_id);
			j->r.version_ms = k.version_ms;
		}
		snprintf(j->r.key_id, sizeof(j->r.key_id), "%s", k.id);
		r = kms_store_reg_put(conn, &j->r, err);
	} else {
		r = kms_store_reg_delete(conn, k.id, j->r.resource_crn, err);
	}
	if (r < 0)
		return r;
	kms_call_audit_data(
		j->c,
		json_pack("{s:s, s:s}", "instanceID", k.instance, "resourceCrn", j->r.resource_crn),
		json_pack("{s:s, s:b}", "keyId", k.id, "preventKeyDeletion",
			  j->r.prevent_deletion));
	return kms_call_audit_in_job(j->c, conn, j->create ? (j->created ? 201 : 200) : 204, err);
}

int kms_op_registration_put(struct kms_call *c, const char *key_id, const char *resource_crn,
			    const char *description, bool prevent, bool *ret_created,
			    struct kms_registration *ret, struct sealvm_err *err)
{
	struct reg_job j = {.c = c, .key_id = key_id, .create = true, .now = kms_now_ms()};
	char service[64];

	if (!resource_crn || strlen(resource_crn) >= sizeof(j.r.resource_crn) ||
	    !kms_crn_service(resource_crn, service, sizeof(service)))
		return sealvm_err_set(
			err, -EINVAL, "INVALID_FIELD_ERR:resourceCrn",
			"The field 'resourceCrn' must be: a CRN "
			"(crn:v1:CNAME:CTYPE:SERVICE:LOCATION:a/ACCOUNT:INSTANCE:TYPE:"
			"RESOURCE) of at most %zu characters",
			sizeof(j.r.resource_crn) - 1);
	if (!crn_in_account(resource_crn, c->inst.account_id))
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:resourceCrn",
				      "The field 'resourceCrn' must be: a resource of the key's "
				      "account (scope a/%s)",
				      c->inst.account_id);
	if (description && strlen(description) > KMS_DESCRIPTION_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:description",
				      "The field 'description' must be: at most %d characters",
				      KMS_DESCRIPTION_MAX);
	snprintf(j.r.resource_crn, sizeof(j.r.resource_crn), "%s", resource_crn);
	snprintf(j.r.instance, sizeof(j.r.instance), "%s", c->inst.guid);
	snprintf(j.r.service, sizeof(j.r.service), "%s", service);
	snprintf(j.r.description, sizeof(j.r.description), "%s", description ? description : "");
	j.r.prevent_deletion = prevent;
	j.r.created_ms = j.r.updated_ms = j.now;
	snprintf(j.r.created_by, sizeof(j.r.created_by), "%s", kms_principal_id(c->p));
	snprintf(j.r.updated_by, sizeof(j.r.updated_by), "%s", kms_principal_id(c->p));
	c->ok_status = 0;
	int r = db_write(c->kms->deps.db, reg_run, &j, err);
	if (r < 0)
		return r;
	if (ret_created)
		*ret_created = j.created;
	if (ret)
		*ret = j.r;
	return 0;
}

int kms_op_registration_delete(struct kms_call *c, const char *key_id, const char *resource_crn,
			       struct sealvm_err *err)
{
	struct reg_job j = {.c = c, .key_id = key_id, .now = kms_now_ms()};
	if (!resource_crn || strlen(resource_crn) >= sizeof(j.r.resource_crn))
		return sealvm_err_set(err, -ENOENT, "REGISTRATION_NOT_FOUND_ERR",
				      "the key has no registration for that resource");
	snprintf(j.r.resource_crn, sizeof(j.r.resource_crn), "%s", resource_crn);
	return db_write(c->kms->deps.db, reg_run, &j, err);
}

int kms_op_registrations(struct kms *kms, const char *instance, const char *key_id,
			 const char *crn_filter, unsigned limit, unsigned offset,
			 int (*fn)(const struct kms_registration *r, void *arg), void *arg,
			 struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(kms->deps.db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	int r = kms_store_reg_list(conn, instance, key_id, crn_filter, limit, offset, fn, arg, err);
	db_read_end(kms->deps.db, conn);
	return r;
}

/* ---- notifications ----------------------------------------------------------------------------
 */

struct reg_list {
	struct kms_registration *v;
	size_t n, cap;
};

static int collect(const struct kms_registration *r, void *arg)
{
	struct reg_list *l = arg;
	struct kms_registration *p = kms_grow(l->v, l->n, &l->cap, sizeof(*p));
	if (!p)
		return -ENOMEM;
	l->v = p;
	l->v[l->n++] = *r;
	return 0;
}

void kms_notify(struct kms *kms, enum kms_event_type type, const struct kms_key *k,
		const char *old_version)
{
	struct reg_list l = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;

	if (kms->n_listeners == 0)
		return;
	/* Gathered first, so no database connection is held while listeners run. */
	int r = kms_op_registrations(kms, k->instance, k->id, NULL, 1000000, 0, collect, &l, &err);
	if (r < 0)
		log_warning("kms: cannot list the registrations of key %s to notify them: %s",
			    k->id, err.message[0] ? err.message : "out of memory");
	for (size_t i = 0; i < l.n; i++) {
		struct kms_key_event ev = {
			.type = type,
			.account_id = k->account_id,
			.instance = k->instance,
			.key_id = k->id,
			.key_crn = k->crn,
			.resource_crn = l.v[i].resource_crn,
			.key_state = k->state,
			.key_version = k->version_id,
			.old_version = type == KMS_EVENT_ROTATE ? old_version : NULL,
		};
		for (unsigned n = 0; n < kms->n_listeners; n++)
			if (strcmp(kms->listeners[n].service_name, l.v[i].service) == 0)
				kms->listeners[n].notify(kms->listeners[n].ctx, &ev);
	}
	free(l.v);
}

/* ---- the in-process API ---------------------------------------------------------------------- */

static int reg_call(struct kms *kms, const struct sealvm_principal *p, const char *instance,
		    const char *key, const char *resource_crn, const char *description,
		    bool prevent, bool create, struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	struct sealvm_err e = SEALVM_ERR_INIT;
	const char *action = create ? "kms.registrations.create" : "kms.registrations.delete";
	int r = kms_call_begin(&c, kms, p, instance, key, action, action, &k, &e);
	if (r >= 0 && create)
		r = kms_op_registration_put(&c, k.id, resource_crn, description, prevent, NULL,
					    NULL, &e);
	else if (r >= 0)
		r = kms_op_registration_delete(&c, k.id, resource_crn, &e);
	return kms_call_end(&c, r, &e, err);
}

int kms_registration_create(struct kms *kms, const struct sealvm_principal *p, const char *instance,
			    const char *key, const char *resource_crn, const char *description,
			    bool prevent_key_deletion, struct sealvm_err *err)
{
	return reg_call(kms, p, instance, key, resource_crn, description, prevent_key_deletion,
			true, err);
}

int kms_registration_delete(struct kms *kms, const struct sealvm_principal *p, const char *instance,
			    const char *key, const char *resource_crn, struct sealvm_err *err)
{
	return reg_call(kms, p, instance, key, resource_crn, NULL, false, false, err);
}
