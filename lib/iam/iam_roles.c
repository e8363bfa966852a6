// SPDX-License-Identifier: Apache-2.0
/*
 * iam_roles.c — the services IAM knows, their roles, and each role's actions, as data.
 *
 * A service is a name ("kms"), the prefix of its actions ("kms" for
 * "kms.secrets.wrap") and a table of roles; a role is a name, whether it is a
 * platform role (crn:v1:bluemix:public:iam::::role:<Name>) or a service role
 * (…::serviceRole:<Name>), the role it extends, and its own actions. Adding a
 * service or an action is adding rows here (and to docs/internals/iam-access.md,
 * which repeats these tables); no code changes.
 *
 * An action ending in ".*" in a table stands for every action with that
 * prefix ("cloud-object-storage.multipart.*"). Actions asked about are always
 * concrete. This file must never grant by string prefix across services: an
 * action belongs to exactly one service, found by its first dot-component.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "sealvm/macro.h"

#include "iam_internal.h"

#define A(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const[]){NULL})

/*
 * Key Protect (reference §2.5). Platform roles are accepted on kms, as IBM
 * accepts them, and give no key actions: instances are managed through the
 * resource-controller service. KeyPurge is deliberately not part of Manager.
 */
static const struct iam_role kms_roles[] = {
	{"Viewer", true, NULL, NONE},
	{"Operator", true, NULL, NONE},
	{"Editor", true, NULL, NONE},
	{"Administrator", true, NULL, NONE},
	{"Reader", false, NULL,
	 A("kms.secrets.list", "kms.secrets.head", "kms.secrets-metadata.read",
	   "kms.secrets-key-versions.list", "kms.secrets.wrap", "kms.secrets.unwrap",
	   "kms.secrets.rewrap", "kms.key-rings.list", "kms.registrations.list",
	   "kms.registrations.read", "kms.registrations.create", "kms.registrations.update",
	   "kms.registrations.delete")},
	{"ReaderPlus", false, "Reader", A("kms.secrets.read")},
	{"Writer", false, "Reader",
	 A("kms.secrets.create", "kms.secrets.import", "kms.secrets.read", "kms.secrets.rotate",
	   "kms.secrets.setkeyfordeletion", "kms.secrets.unsetkeyfordeletion", "kms.secrets.sync",
	   "kms.secrets-alias.create", "kms.secrets-alias.delete", "kms.key-rings.create",
	   "kms.import-token.create", "kms.import-token.read")},
	{"Manager", false, "Writer",
	 A("kms.secrets.disable", "kms.secrets.enable", "kms.secrets.delete", "kms.secrets.restore",
	   "kms.secrets.patch", "kms.key-rings.delete", "kms.policies.read", "kms.policies.write",
	   "kms.instance-policies.read", "kms.instance-policies.write")},
	{"KeyPurge", false, NULL, A("kms.secrets.purge")},
};

static const struct iam_role cos_roles[] = {
	{"Viewer", true, NULL, NONE},
	{"Operator", true, NULL, NONE},
	{"Editor", true, NULL, NONE},
	{"Administrator", true, NULL, NONE},
	{"ContentReader", false, NULL, A("cloud-object-storage.object.read")},
	{"ObjectReader", false, NULL,
	 A("cloud-object-storage.object.read", "cloud-object-storage.object.head")},
	/* uploading includes multipart uploads of one's own, not listing or reading others' */
	{"ObjectWriter", false, NULL,
	 A("cloud-object-storage.object.write", "cloud-object-storage.multipart.create",
	   "cloud-object-storage.multipart.upload", "cloud-object-storage.multipart.complete",
	   "cloud-object-storage.multipart.abort")},
	{"Reader", false, NULL,
	 A("cloud-object-storage.bucket.list", "cloud-object-storage.bucket.head",
	   "cloud-object-storage.object.list", "cloud-object-storage.object.read",
	   "cloud-object-storage.object.head")},
	{"Writer", false, "Reader",
	 A("cloud-object-storage.object.write", "cloud-object-storage.object.delete",
	   "cloud-object-storage.bucket.create", "cloud-object-storage.multipart.*")},
	{"Manager", false, "Writer",
	 A("cloud-object-storage.bucket.delete", "cloud-object-storage.bucket.config")},
};

static const struct iam_role identity_roles[] = {
	{"Viewer", true, NULL,
	 A("iam-identity.serviceid.read", "iam-identity.serviceid.list", "iam-identity.apikey.read",
	   "iam-identity.apikey.list", "iam-identity.user.read", "iam-identity.user.list")},
	{"Operator", true, "Viewer", NONE},
	{"Editor", true, "Viewer",
	 A("iam-identity.serviceid.create", "iam-identity.serviceid.update",
	   "iam-identity.serviceid.delete", "iam-identity.serviceid.lock",
	   "iam-identity.serviceid.unlock", "iam-identity.apikey.create",
	   "iam-identity.apikey.update", "iam-identity.apikey.delete", "iam-identity.apikey.lock",
	   "iam-identity.apikey.unlock")},
	{"Administrator", true, "Editor",
	 A("iam-identity.user.create", "iam-identity.user.delete")},
};

static const struct iam_role access_roles[] = {
	{"Viewer", true, NULL, A("iam.policy.read", "iam.policy.list")},
	{"Administrator", true, "Viewer",
	 A("iam.policy.create", "iam.policy.update", "iam.policy.delete")},
};

static const struct iam_role rc_roles[] = {
	{"Viewer", true, NULL,
	 A("resource-controller.instance.read", "resource-controller.instance.list",
	   "resource-controller.key.read", "resource-controller.key.list")},
	{"Operator", true, "Viewer", NONE},
	{"Editor", true, "Viewer",
	 A("resource-controller.instance.create", "resource-controller.instance.update",
	   "resource-controller.instance.delete", "resource-controller.key.create",
	   "resource-controller.key.delete")},
	{"Administrator", true, "Editor", NONE},
};

static const struct iam_role audit_roles[] = {
	{"Viewer", true, NULL, A("audit.events.read")},
	{"Reader", false, NULL, A("audit.events.read")},
	{"Manager", false, "Reader", A("audit.events.verify", "audit.events.checkpoint")},
};

#define SERVICE(n, prefix, mgmt, roles)                                                            \
	{                                                                                          \
		n, prefix, mgmt, roles, ELEMENTSOF(roles)                                          \
	}
#define SOURCE_ONLY(n, prefix)                                                                     \
	{                                                                                          \
		n, prefix, false, NULL, 0                                                          \
	}

/*
 * images, block-storage and compute have no roles yet: they are here so that
 * authorizations can name them as sources, and so that their actions are
 * known (the account owner may use them). Their roles are rows to add.
 */
static const struct iam_service services[] = {
	SERVICE("kms", "kms", false, kms_roles),
	SERVICE("cloud-object-storage", "cloud-object-storage", false, cos_roles),
	SERVICE("iam-identity", "iam-identity", true, identity_roles),
	SERVICE("iam-access", "iam", true, access_roles),
	SERVICE("resource-controller", "resource-controller", false, rc_roles),
	SERVICE("audit", "audit", false, audit_roles),
	SOURCE_ONLY("images", "images"),
	SOURCE_ONLY("block-storage", "block-storage"),
	SOURCE_ONLY("compute", "compute"),
};

size_t iam_roles_services(const struct iam_service **ret)
{
	*ret = services;
	return ELEMENTSOF(services);
}

const struct iam_service *iam_roles_service(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(services); i++)
		if (strcmp(services[i].name, name) == 0)
			return &services[i];
	return NULL;
}

const struct iam_service *iam_roles_service_of_action(const char *action)
{
	const char *dot = action ? strchr(action, '.') : NULL;
	if (!dot || dot == action || !dot[1])
		return NULL;
	size_t n = (size_t)(dot - action);
	for (size_t i = 0; i < ELEMENTSOF(services); i++)
		if (strlen(services[i].action_prefix) == n &&
		    memcmp(services[i].action_prefix, action, n) == 0)
			return &services[i];
	return NULL;
}

int iam_roles_parse_crn(const char *crn, bool *ret_platform, const char **ret_name)
{
	bool platform;
	const char *name;

	if (!crn)
		return -EINVAL;
	if (strncmp(crn, IAM_ROLE_CRN_PLATFORM, strlen(IAM_ROLE_CRN_PLATFORM)) == 0) {
		platform = true;
		name = crn + strlen(IAM_ROLE_CRN_PLATFORM);
	} else if (strncmp(crn, IAM_ROLE_CRN_SERVICE, strlen(IAM_ROLE_CRN_SERVICE)) == 0) {
		platform = false;
		name = crn + strlen(IAM_ROLE_CRN_SERVICE);
	} else {
		return -EINVAL;
	}
	size_t n = strlen(name);
	if (n == 0 || n > 64)
		return -EINVAL;
	for (const char *c = name; *c; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= '0' && *c <= '9')))
			return -EINVAL;
	*ret_platform = platform;
	*ret_name = name;
	return 0;
}

static const struct iam_role *role_by_name(const struct iam_service *svc, const char *name,
					   bool platform)
{
	for (size_t i = 0; i < svc->n_roles; i++)
		if (svc->roles[i].platform == platform && strcmp(svc->roles[i].name, name) == 0)
			return &svc->roles[i];
	return NULL;
}

const struct iam_role *iam_roles_find(const struct iam_service *svc, const char *crn)
{
	bool platform;
	const char *name;

	if (!svc || iam_roles_parse_crn(crn, &platform, &name) < 0)
		return NULL;
	return role_by_name(svc, name, platform);
}

static bool action_matches(const char *pattern, const char *action)
{
	size_t n = strlen(pattern);
	if (n >= 2 && pattern[n - 1] == '*' && pattern[n - 2] == '.')
		return strncmp(pattern, action, n - 1) == 0 && action[n - 1] != '\0';
	return strcmp(pattern, action) == 0;
}

bool iam_role_allows(const struct iam_service *svc, const struct iam_role *role, const char *action)
{
	/* Inheritance stays within one service and is at most a few levels deep; 8 bounds a typo'd
	 * cycle. */
	for (unsigned depth = 0; role && depth < 8; depth++) {
		for (const char *const *a = role->actions; *a; a++)
			if (action_matches(*a, action))
				return true;
		role = role->inherits ? role_by_name(svc, role->inherits, role->platform) : NULL;
	}
	return false;
}

bool iam_roles_generic_name(const char *crn)
{
	bool platform;
	const char *name;

	if (iam_roles_parse_crn(crn, &platform, &name) < 0 || !platform)
		return false;
	return strcmp(name, "Viewer") == 0 || strcmp(name, "Operator") == 0 ||
	       strcmp(name, "Editor") == 0 || strcmp(name, "Administrator") == 0;
}

const struct iam_role *iam_roles_first_allowing(const struct iam_service *svc, const char *action)
{
	for (size_t i = 0; svc && i < svc->n_roles; i++)
		if (iam_role_allows(svc, &svc->roles[i], action))
			return &svc->roles[i];
	return NULL;
}
