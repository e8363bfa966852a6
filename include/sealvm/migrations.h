/* SPDX-License-Identifier: Apache-2.0 */
/*
 * migrations.h — every service's schema migrations in one list: what sealvmd
 * opens its database with, and what tests that run services in-process use,
 * so that a new service's tables are added in one place.
 */
#ifndef SEALVM_MIGRATIONS_H
#define SEALVM_MIGRATIONS_H

#include <stddef.h>

#include "sealvm/db.h"

/*
 * A new array (free()) of the migrations of identity, access, audit, the
 * resource controller, the key service and object storage, for db_open.
 * NULL when out of memory.
 */
struct db_migration *sealvm_migrations(size_t *ret_n);

#endif
