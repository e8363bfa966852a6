// SPDX-License-Identifier: Apache-2.0
/*
 * migrations.c — every service's schema migrations in one list (migrations.h).
 * Owners interleave freely: db_open applies each owner's in version order.
 */
#include <stdlib.h>
#include <string.h>

#include "sealvm/audit.h"
#include "sealvm/cos.h"
#include "sealvm/iam.h"
#include "sealvm/kms.h"
#include "sealvm/macro.h"
#include "sealvm/migrations.h"
#include "sealvm/rc.h"

struct db_migration *sealvm_migrations(size_t *ret_n)
{
	const struct {
		const struct db_migration *m;
		size_t n;
	} owners[] = {
		{iam_identity_migrations, iam_identity_n_migrations},
		{iam_access_migrations, iam_access_n_migrations},
		{audit_migrations, audit_n_migrations},
		{rc_migrations, rc_n_migrations},
		{kms_migrations, kms_n_migrations},
		{cos_migrations, cos_n_migrations},
	};
	size_t n = 0, k = 0;
	for (size_t i = 0; i < ELEMENTSOF(owners); i++)
		n += owners[i].n;
	struct db_migration *m = calloc(n, sizeof(*m));
	if (!m)
		return NULL;
	for (size_t i = 0; i < ELEMENTSOF(owners); i++) {
		memcpy(m + k, owners[i].m, owners[i].n * sizeof(*m));
		k += owners[i].n;
	}
	*ret_n = n;
	return m;
}
