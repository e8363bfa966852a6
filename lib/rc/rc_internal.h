/* SPDX-License-Identifier: Apache-2.0 */
/* rc_internal.h — what the resource controller's files share. Not a public interface. */
#ifndef SEALVM_RC_INTERNAL_H
#define SEALVM_RC_INTERNAL_H

#include <sqlite3.h>

#include "sealvm/rc.h"

struct rc {
	struct sealvm_db *db;
	const char *region;
	struct http_service http;
};

void rc_row(sqlite3_stmt *st, struct rc_instance *i);
int rc_store_insert(sqlite3 *conn, const struct rc_instance *i, struct sealvm_err *err);
int rc_store_get(sqlite3 *conn, const char *account_id, const char *guid, struct rc_instance *ret,
		 struct sealvm_err *err);
int rc_store_list(sqlite3 *conn, const char *account_id, const char *resource_id,
		  int (*fn)(const struct rc_instance *i, void *arg), void *arg,
		  struct sealvm_err *err);
int rc_store_delete(sqlite3 *conn, const char *account_id, const char *guid,
		    struct sealvm_err *err);

#endif
