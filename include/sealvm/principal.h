/* SPDX-License-Identifier: Apache-2.0 */
/*
 * principal.h — who is making a request, as every service sees it.
 *
 * Authentication (bearer token, SoftLayer API key, S3 HMAC signature) turns a
 * request into a principal; authorization and audit take it from there. An
 * internal service acting for a customer (block storage unwrapping a DEK,
 * object storage asking the key service to wrap) is a principal of its own
 * kind, with the customer's account as the account it acts in; whether it
 * may is decided by the customer's authorization policies, never by
 * borrowing the customer's identity. A principal holds no secret.
 */
#ifndef SEALVM_PRINCIPAL_H
#define SEALVM_PRINCIPAL_H

#include <stdint.h>

enum principal_kind {
	PRINCIPAL_NONE = 0,   /* not authenticated */
	PRINCIPAL_USER,	      /* a user of an account (the owner is one) */
	PRINCIPAL_SERVICE_ID, /* a service ID of an account */
	PRINCIPAL_SERVICE,    /* one of sealvm's own services, acting in @account_id */
};

struct sealvm_principal {
	enum principal_kind kind;
	char iam_id[96];	  /* "IBMid-…", "iam-ServiceId-<uuid>", "crn:v1:…::<service>" */
	char account_id[40];	  /* the account it belongs to (or acts in, for a service) */
	char name[128];		  /* for audit: user name, service ID name, service name */
	char service_name[64];	  /* PRINCIPAL_SERVICE: "block-storage", "images", … */
	char credential_type[24]; /* CADF credential.type: "token", "apikey", "hmac",
				     "s2s-authorization" */
	int64_t expires;	  /* token expiry (epoch seconds), 0 when not from a token */
};

#endif
