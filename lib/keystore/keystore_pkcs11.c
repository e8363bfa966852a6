// SPDX-License-Identifier: Apache-2.0
/*
 * keystore_pkcs11.c — the PKCS#11 keystore: root keys are non-extractable,
 * sensitive, private AES token objects; AES-GCM runs inside the token.
 *
 * The module is dlopen'ed and reached through C_GetFunctionList, initialized
 * once per process however many keystores use it (a registry counts them:
 * PKCS#11 state — C_Initialize, login — is per process and per token, not
 * per keystore). A keystore finds its token by label, opens a fixed pool of
 * read-write sessions, logs the user in once and hands sessions to threads
 * one at a time (mutex + condition variable). A key's reference is its
 * random 16-byte CKA_ID; its CKA_LABEL is the key's @name, checked on every
 * use so that a reference copied to another key version does not open.
 *
 * The PIN is read from a file or an environment variable into secret memory
 * and kept there for the keystore's life, to log in again if the token
 * forgets the login (a network HSM that dropped its sessions); it never
 * enters a message. Import-token keys live in the token when it can decrypt
 * RSA-OAEP with SHA-256 (tried once, with a throwaway session key);
 * otherwise — SoftHSM2 2.6.1 does OAEP with SHA-1 only — keystore_rsa.c
 * makes them with OpenSSL and seals them under the master key. A 16-byte
 * reference is a token key, a sealed blob is the other kind, so references
 * stay valid if the token changes its mind.
 *
 * Messages name the PKCS#11 function and its CKR_ code, the module and the
 * token; never a PIN, key material or plaintext.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <p11-kit/pkcs11.h>

#include "keystore_internal.h"
#include "sealvm/log.h"

#ifndef CKR_AEAD_DECRYPT_FAILED
#define CKR_AEAD_DECRYPT_FAILED 0x00000035UL /* PKCS#11 3.0 */
#endif

#define P11_ID_BYTES 16
#define P11_PIN_MAX 255
#define P11_SESSIONS_MAX 256
#define P11_PROBE_BITS 2048

/* ---- the process-wide registry of loaded modules ---- */

struct p11_module {
	struct p11_module *next;
	void *dl;
	CK_FUNCTION_LIST_PTR f;
	unsigned refs;
	bool finalize; /* we called C_Initialize, so we call C_Finalize */
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *modules;

/*
 * Finding an object (C_FindObjects* and reading its CKA_LABEL) costs SoftHSM2
 * more than the decryption itself, so object handles are cached: a small
 * set-associative table (non-secret: ids, names, handles). See key_lookup
 * for when a cached handle is trusted and when it is checked.
 */
#define P11_CACHE_SETS 64
#define P11_CACHE_WAYS 4

struct p11_handle {
	bool used;
	CK_OBJECT_CLASS cls;
	unsigned char id[P11_ID_BYTES];
	char name[KS_NAME_MAX + 1];
	CK_OBJECT_HANDLE obj;
};

struct ks_p11 {
	struct keystore ks; /* first: the dispatcher's view */
	struct p11_module *mod;
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	char label[33];
	char module_path[256];
	char pin_source[300]; /* "file X" or "environment variable Y", for messages */
	struct sealvm_secret *pin;
	const struct sealvm_secret *master; /* borrowed; may be NULL */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	CK_SESSION_HANDLE *idle; /* a stack of idle sessions; CK_INVALID_HANDLE = to reopen */
	unsigned nidle, nsessions;

	pthread_mutex_t probe_lock;
	int oaep256; /* 0 not tried yet, 1 the token decrypts OAEP-SHA-256, -1 it does not */

	pthread_mutex_t hlock; /* the handle cache: (class, CKA_ID, name) -> object handle */
	struct p11_handle handles[P11_CACHE_SETS * P11_CACHE_WAYS];
	unsigned char hvictim[P11_CACHE_SETS];
};

static const char *ckr_name(CK_RV rv)
{
	switch (rv) {
#define C(x)                                                                                       \
	case x:                                                                                    \
		return #x
		C(CKR_OK);
		C(CKR_CANCEL);
		C(CKR_HOST_MEMORY);
		C(CKR_SLOT_ID_INVALID);
		C(CKR_GENERAL_ERROR);
		C(CKR_FUNCTION_FAILED);
		C(CKR_ARGUMENTS_BAD);
		C(CKR_CANT_LOCK);
		C(CKR_ATTRIBUTE_READ_ONLY);
		C(CKR_ATTRIBUTE_SENSITIVE);
		C(CKR_ATTRIBUTE_TYPE_INVALID);
		C(CKR_ATTRIBUTE_VALUE_INVALID);
		C(CKR_ACTION_PROHIBITED);
		C(CKR_DATA_INVALID);
		C(CKR_DATA_LEN_RANGE);
		C(CKR_DEVICE_ERROR);
		C(CKR_DEVICE_MEMORY);
		C(CKR_DEVICE_REMOVED);
		C(CKR_ENCRYPTED_DATA_INVALID);
		C(CKR_ENCRYPTED_DATA_LEN_RANGE);
		C(CKR_AEAD_DECRYPT_FAILED);
		C(CKR_FUNCTION_CANCELED);
		C(CKR_FUNCTION_NOT_SUPPORTED);
		C(CKR_KEY_HANDLE_INVALID);
		C(CKR_KEY_SIZE_RANGE);
		C(CKR_KEY_TYPE_INCONSISTENT);
		C(CKR_KEY_FUNCTION_NOT_PERMITTED);
		C(CKR_MECHANISM_INVALID);
		C(CKR_MECHANISM_PARAM_INVALID);
		C(CKR_OBJECT_HANDLE_INVALID);
		C(CKR_OPERATION_ACTIVE);
		C(CKR_OPERATION_NOT_INITIALIZED);
		C(CKR_PIN_INCORRECT);
		C(CKR_PIN_INVALID);
		C(CKR_PIN_LEN_RANGE);
		C(CKR_PIN_EXPIRED);
		C(CKR_PIN_LOCKED);
		C(CKR_SESSION_CLOSED);
		C(CKR_SESSION_COUNT);
		C(CKR_SESSION_HANDLE_INVALID);
		C(CKR_SESSION_READ_ONLY);
		C(CKR_TEMPLATE_INCOMPLETE);
		C(CKR_TEMPLATE_INCONSISTENT);
		C(CKR_TOKEN_NOT_PRESENT);
		C(CKR_TOKEN_NOT_RECOGNIZED);
		C(CKR_TOKEN_WRITE_PROTECTED);
		C(CKR_USER_ALREADY_LOGGED_IN);
		C(CKR_USER_NOT_LOGGED_IN);
		C(CKR_USER_PIN_NOT_INITIALIZED);
		C(CKR_USER_TYPE_INVALID);
		C(CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
		C(CKR_BUFFER_TOO_SMALL);
		C(CKR_CRYPTOKI_NOT_INITIALIZED);
		C(CKR_CRYPTOKI_ALREADY_INITIALIZED);
		C(CKR_FUNCTION_REJECTED);
#undef C
	default:
		return NULL;
	}
}

/* "CKR_NAME" or "CKR 0x…" into @buf. */
static const char *ckr_str(CK_RV rv, char *buf, size_t size)
{
	const char *n = ckr_name(rv);
	if (n)
		return n;
	snprintf(buf, size, "CKR 0x%08lx", (unsigned long)rv);
	return buf;
}

/*
 * The error for a failed PKCS#11 call @fn that returned @rv: -ENOMEM for
 * memory, -EPERM for PIN trouble, -EIO KEYSTORE_FAILED for the rest.
 */
static int p11_failed(struct ks_p11 *p, struct sealvm_err *err, const char *fn, CK_RV rv)
{
	char buf[32];
	const char *ckr = ckr_str(rv, buf, sizeof(buf));
	switch (rv) {
	case CKR_HOST_MEMORY:
	case CKR_DEVICE_MEMORY:
		return sealvm_err_set(err, -ENOMEM, "KEYSTORE_FAILED",
				      "keystore: token '%s': %s failed: %s (out of memory)",
				      p->label, fn, ckr);
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		return sealvm_err_set(
			err, -EPERM, "KEYSTORE_PIN_INCORRECT",
			"keystore: token '%s' refused the PIN from %s (%s from %s): put the token's user PIN there",
			p->label, p->pin_source, ckr, fn);
	case CKR_PIN_LOCKED:
	case CKR_PIN_EXPIRED:
		return sealvm_err_set(
			err, -EPERM, "KEYSTORE_PIN_LOCKED",
			"keystore: the user PIN of token '%s' is locked or expired (%s from %s): the token's security officer must reset it",
			p->label, ckr, fn);
	case CKR_USER_PIN_NOT_INITIALIZED:
		return sealvm_err_set(
			err, -EPERM, "KEYSTORE_PIN_INCORRECT",
			"keystore: token '%s' has no user PIN yet (%s from %s): initialize it first",
			p->label, ckr, fn);
	default:
		return sealvm_err_set(err, -EIO, "KEYSTORE_FAILED",
				      "keystore: token '%s': %s failed: %s", p->label, fn, ckr);
	}
}

/* Errors after which a session is worth reopening (and the user logging in again). */
static bool session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_REMOVED ||
	       rv == CKR_TOKEN_NOT_PRESENT;
}

/* ---- module registry ---- */

static void module_unref(struct p11_module *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&modules_lock);
	if (--m->refs == 0) {
		for (struct p11_module **pp = &modules; *pp; pp = &(*pp)->next)
			if (*pp == m) {
				*pp = m->next;
				break;
			}
		if (m->finalize)
			(void)m->f->C_Finalize(NULL);
		/* SoftHSM2 and others leave threads or atexit handlers: keep the code mapped. */
		free(m);
	}
	pthread_mutex_unlock(&modules_lock);
}

static int module_ref(struct ks_p11 *p, const char *path, struct sealvm_err *err)
{
	CK_C_GetFunctionList get;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	struct p11_module *m;
	struct stat st;
	void *dl;
	CK_RV rv;
	char buf[32];
	int r = 0;

	if (stat(path, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), "KEYSTORE_MODULE_INVALID",
					    "keystore: cannot use PKCS#11 module %s", path);
	/* RTLD_NODELETE: the module stays mapped after dlclose (see module_unref). */
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (!dl) {
		const char *e = dlerror();
		return sealvm_err_set(err, -EINVAL, "KEYSTORE_MODULE_INVALID",
				      "keystore: cannot load PKCS#11 module %s: %s", path,
				      e ? e : "dlopen failed");
	}
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	if (!get || get(&f) != CKR_OK || !f) {
		dlclose(dl);
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_MODULE_INVALID",
			"keystore: %s is not a PKCS#11 module (no usable C_GetFunctionList)", path);
	}

	pthread_mutex_lock(&modules_lock);
	for (m = modules; m; m = m->next)
		if (m->f == f)
			break;
	if (m) {
		m->refs++;
		dlclose(dl); /* the registry holds the module already */
		goto out;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		dlclose(dl);
		r = sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
		goto out;
	}
	rv = f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		free(m);
		m = NULL;
		dlclose(dl);
		r = sealvm_err_set(err, -EIO, "KEYSTORE_MODULE_INVALID",
				   "keystore: PKCS#11 module %s: C_Initialize failed: %s", path,
				   ckr_str(rv, buf, sizeof(buf)));
		goto out;
	}
	/* Another part of the process initialized it: it also finalizes it. */
	m->finalize = rv == CKR_OK;
	m->dl = dl;
	m->f = f;
	m->refs = 1;
	m->next = modules;
	modules = m;
out:
	pthread_mutex_unlock(&modules_lock);
	if (r < 0)
		return r;
	p->mod = m;
	p->f = f;
	return 0;
}

/* ---- opening: PIN, token, sessions, login ---- */

static int pin_read(struct ks_p11 *p, const struct keystore_config *cfg, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *pin = NULL;
	int r;

	if (cfg->pin_file && *cfg->pin_file && cfg->pin_env && *cfg->pin_env)
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_PIN_MISSING",
			"keystore: give the PIN of token '%s' in \"pin_file\" or in \"pin_env\", not both",
			p->label);
	if (cfg->pin_file && *cfg->pin_file) {
		struct sealvm_err ferr = SEALVM_ERR_INIT;
		snprintf(p->pin_source, sizeof(p->pin_source), "file %s", cfg->pin_file);
		r = sealvm_secret_read_file(cfg->pin_file, P11_PIN_MAX + 2, &pin, &ferr);
		if (r < 0)
			return sealvm_err_set(err, r, "KEYSTORE_PIN_MISSING",
					      "keystore: cannot read the PIN of token '%s': %s",
					      p->label, ferr.message);
		/* One trailing newline (and a CR before it) is how editors end a file. */
		if (pin->len > 0 && pin->data[pin->len - 1] == '\n')
			pin->data[--pin->len] = 0;
		if (pin->len > 0 && pin->data[pin->len - 1] == '\r')
			pin->data[--pin->len] = 0;
	} else if (cfg->pin_env && *cfg->pin_env) {
		const char *v = getenv(cfg->pin_env);
		snprintf(p->pin_source, sizeof(p->pin_source), "environment variable %s",
			 cfg->pin_env);
		if (!v)
			return sealvm_err_set(
				err, -EINVAL, "KEYSTORE_PIN_MISSING",
				"keystore: environment variable %s (the PIN of token '%s') is not set",
				cfg->pin_env, p->label);
		r = sealvm_secret_from(v, strnlen(v, P11_PIN_MAX + 1), &pin);
		if (r < 0)
			return sealvm_err_set(err, r, NULL,
					      "keystore: cannot allocate secure memory");
	} else
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_PIN_MISSING",
			"keystore: the PIN of token '%s' is needed: set \"pin_file\" (a file holding it) or \"pin_env\" (an environment variable); it is never read from the configuration",
			p->label);
	if (pin->len == 0 || pin->len > P11_PIN_MAX)
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_PIN_MISSING",
			"keystore: the PIN in %s is empty or longer than %d characters",
			p->pin_source, P11_PIN_MAX);
	p->pin = TAKE_PTR(pin);
	return 0;
}

/* The 32-byte blank-padded label of a CK_TOKEN_INFO, trimmed, into @out (33 bytes). */
static void label_trim(const unsigned char in[32], char out[33])
{
	size_t n = 32;
	memcpy(out, in, 32);
	while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == 0))
		n--;
	out[n] = 0;
}

static int token_find(struct ks_p11 *p, struct sealvm_err *err)
{
	_cleanup_free_ CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0;
	char seen[200] = "", lab[33];
	size_t used = 0;
	CK_RV rv;

	for (int tries = 0;; tries++) {
		rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
		if (rv != CKR_OK)
			return p11_failed(p, err, "C_GetSlotList", rv);
		free(slots);
		slots = calloc(n ? n : 1, sizeof(*slots));
		if (!slots)
			return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
		rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
		if (rv == CKR_BUFFER_TOO_SMALL && tries < 3)
			continue; /* a token appeared between the two calls */
		if (rv != CKR_OK)
			return p11_failed(p, err, "C_GetSlotList", rv);
		break;
	}
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO info;
		if (p->f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
			continue;
		if (!(info.flags & CKF_TOKEN_INITIALIZED))
			continue;
		label_trim(info.label, lab);
		if (strcmp(lab, p->label) == 0) {
			p->slot = slots[i];
			if (info.ulMaxRwSessionCount != CK_EFFECTIVELY_INFINITE &&
			    info.ulMaxRwSessionCount != CK_UNAVAILABLE_INFORMATION &&
			    info.ulMaxRwSessionCount < p->nsessions) {
				log_notice(
					"keystore: token '%s' allows %lu read-write sessions; the pool has that many",
					p->label, (unsigned long)info.ulMaxRwSessionCount);
				p->nsessions = (unsigned)info.ulMaxRwSessionCount;
			}
			return 0;
		}
		if (used < sizeof(seen) - 40) {
			int k = snprintf(seen + used, sizeof(seen) - used, "%s'%s'",
					 used ? ", " : "", lab);
			if (k > 0)
				used += (size_t)k;
		}
	}
	return sealvm_err_set(err, -ENOENT, "KEYSTORE_TOKEN_MISSING",
			      "keystore: PKCS#11 module %s has no token labeled '%s' (tokens: %s)",
			      p->module_path, p->label, used ? seen : "none");
}

static CK_RV login(struct ks_p11 *p, CK_SESSION_HANDLE h)
{
	CK_RV rv = p->f->C_Login(h, CKU_USER, p->pin->data, p->pin->len);
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

static CK_RV session_open(struct ks_p11 *p, CK_SESSION_HANDLE *ret)
{
	return p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, ret);
}

/* Takes an idle session, waiting for one; reopens (and logs in) one that was lost. */
static int session_get(struct ks_p11 *p, CK_SESSION_HANDLE *ret, struct sealvm_err *err)
{
	CK_SESSION_HANDLE h;
	CK_RV rv;

	pthread_mutex_lock(&p->lock);
	while (p->nidle == 0)
		pthread_cond_wait(&p->cond, &p->lock);
	h = p->idle[--p->nidle];
	pthread_mutex_unlock(&p->lock);
	if (h != CK_INVALID_HANDLE) {
		*ret = h;
		return 0;
	}
	rv = session_open(p, &h);
	if (rv == CKR_OK) {
		rv = login(p, h);
		if (rv != CKR_OK) {
			(void)p->f->C_CloseSession(h);
			h = CK_INVALID_HANDLE;
		}
	}
	if (rv != CKR_OK) {
		pthread_mutex_lock(&p->lock);
		p->idle[p->nidle++] = CK_INVALID_HANDLE;
		pthread_cond_signal(&p->cond);
		pthread_mutex_unlock(&p->lock);
		return p11_failed(p, err, "C_OpenSession/C_Login", rv);
	}
	*ret = h;
	return 0;
}

/*
 * Gives a session back. A lost one is closed and reopened by its next taker;
 * and since a token that lost one session has usually lost them all (it was
 * reset, or the network HSM dropped the connection), every idle session is
 * marked for reopening too, rather than each failing once in turn.
 */
static void session_put(struct ks_p11 *p, CK_SESSION_HANDLE h, bool lost)
{
	_cleanup_free_ CK_SESSION_HANDLE *stale = NULL;
	unsigned nstale = 0;

	if (lost) {
		if (h != CK_INVALID_HANDLE)
			(void)p->f->C_CloseSession(h);
		h = CK_INVALID_HANDLE;
		stale = calloc(p->nsessions, sizeof(*stale));
	}
	pthread_mutex_lock(&p->lock);
	if (stale)
		for (unsigned i = 0; i < p->nidle; i++)
			if (p->idle[i] != CK_INVALID_HANDLE) {
				stale[nstale++] = p->idle[i];
				p->idle[i] = CK_INVALID_HANDLE;
			}
	p->idle[p->nidle++] = h;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < nstale; i++)
		(void)p->f->C_CloseSession(stale[i]);
}

/* ---- running one operation on a pooled session ---- */

/*
 * What an operation reports back: 0, a negative errno it decided itself
 * (-ENOENT no such object, -EBADMSG wrong label or tag), or -EIO with the
 * failing function and its CKR_ code.
 */
struct p11_res {
	const char *fn;
	CK_RV rv;
};

typedef int (*p11_op)(struct ks_p11 *p, CK_SESSION_HANDLE h, void *arg, struct p11_res *res);

static int p11_fail(struct p11_res *res, const char *fn, CK_RV rv)
{
	res->fn = fn;
	res->rv = rv;
	return -EIO;
}

/*
 * Runs @op on a pooled session. When the session was lost (closed by the
 * token, the login forgotten), it is reopened and @op runs once more: every
 * operation is either read-only or made before the one call that changes the
 * token, so running it again is safe.
 */
static int p11_run(struct ks_p11 *p, p11_op op, void *arg, struct sealvm_err *err)
{
	for (int attempt = 0;; attempt++) {
		struct p11_res res = {NULL, CKR_OK};
		CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
		int r = session_get(p, &h, err);
		if (r < 0)
			return r;
		r = op(p, h, arg, &res);
		bool lost = r == -EIO && session_lost(res.rv);
		session_put(p, h, lost);
		if (lost && attempt == 0) {
			log_info("keystore: token '%s': %s answered %s; reopening the session",
				 p->label, res.fn, ckr_name(res.rv));
			continue;
		}
		if (r == -EIO && res.fn)
			return p11_failed(p, err, res.fn, res.rv);
		return r;
	}
}

/* Finds the object of class @cls with CKA_ID @id; -ENOENT when there is none. */
static int object_find(struct ks_p11 *p, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls,
		       const unsigned char *id, size_t id_len, CK_OBJECT_HANDLE *ret,
		       struct p11_res *res)
{
	CK_ATTRIBUTE tmpl[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_ID, (void *)id, id_len},
	};
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0;
	CK_RV rv;

	rv = p->f->C_FindObjectsInit(h, tmpl, ELEMENTSOF(tmpl));
	if (rv != CKR_OK)
		return p11_fail(res, "C_FindObjectsInit", rv);
	rv = p->f->C_FindObjects(h, found, ELEMENTSOF(found), &n);
	CK_RV rv2 = p->f->C_FindObjectsFinal(h);
	if (rv != CKR_OK)
		return p11_fail(res, "C_FindObjects", rv);
	if (rv2 != CKR_OK)
		return p11_fail(res, "C_FindObjectsFinal", rv2);
	if (n == 0)
		return -ENOENT;
	if (n > 1)
		return p11_fail(res, "C_FindObjects (two objects share one CKA_ID)",
				CKR_GENERAL_ERROR);
	*ret = found[0];
	return 0;
}

/* -EBADMSG unless the object's CKA_LABEL is exactly @name. */
static int label_check(struct ks_p11 *p, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, const char *name,
		       struct p11_res *res)
{
	char label[KS_NAME_MAX + 1];
	CK_ATTRIBUTE a = {CKA_LABEL, label, sizeof(label)};
	CK_RV rv = p->f->C_GetAttributeValue(h, o, &a, 1);
	if (rv == CKR_BUFFER_TOO_SMALL ||
	    (rv == CKR_OK && a.ulValueLen == CK_UNAVAILABLE_INFORMATION))
		return -EBADMSG; /* longer than any name */
	if (rv != CKR_OK)
		return p11_fail(res, "C_GetAttributeValue(CKA_LABEL)", rv);
	if (a.ulValueLen != strlen(name) || memcmp(label, name, a.ulValueLen) != 0)
		return -EBADMSG;
	return 0;
}

/* The key's object for @name, by CKA_ID @ref: -ENOENT none, -EBADMSG another key's. */
static int key_find(struct ks_p11 *p, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *name,
		    const unsigned char *ref, size_t ref_len, CK_OBJECT_HANDLE *ret,
		    struct p11_res *res)
{
	int r;
	if (ref_len != P11_ID_BYTES)
		return -ENOENT;
	r = object_find(p, h, cls, ref, ref_len, ret, res);
	if (r < 0)
		return r;
	return label_check(p, h, *ret, name, res);
}

static struct p11_handle *hcache_set(struct ks_p11 *p, const unsigned char id[P11_ID_BYTES])
{
	/* The id is random: two of its bytes pick the set. */
	unsigned set = ((unsigned)id[0] | (unsigned)id[1] << 8) % P11_CACHE_SETS;
	return &p->handles[set * P11_CACHE_WAYS];
}

static bool hcache_match(const struct p11_handle *e, CK_OBJECT_CLASS cls, const unsigned char *id,
			 const char *name)
{
	return e->used && e->cls == cls && memcmp(e->id, id, P11_ID_BYTES) == 0 &&
	       (!name || strcmp(e->name, name) == 0);
}

static CK_OBJECT_HANDLE hcache_get(struct ks_p11 *p, CK_OBJECT_CLASS cls, const char *name,
				   const unsigned char *id)
{
	CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
	struct p11_handle *set = hcache_set(p, id);
	pthread_mutex_lock(&p->hlock);
	for (unsigned w = 0; w < P11_CACHE_WAYS; w++)
		if (hcache_match(&set[w], cls, id, name))
			o = set[w].obj;
	pthread_mutex_unlock(&p->hlock);
	return o;
}

static void hcache_put(struct ks_p11 *p, CK_OBJECT_CLASS cls, const char *name,
		       const unsigned char *id, CK_OBJECT_HANDLE o)
{
	struct p11_handle *set = hcache_set(p, id), *e = NULL;
	unsigned setno = (unsigned)(set - p->handles) / P11_CACHE_WAYS;
	pthread_mutex_lock(&p->hlock);
	for (unsigned w = 0; w < P11_CACHE_WAYS && !e; w++)
		if (hcache_match(&set[w], cls, id, name))
			e = &set[w];
	if (!e)
		e = &set[p->hvictim[setno]++ % P11_CACHE_WAYS];
	e->used = true;
	e->cls = cls;
	memcpy(e->id, id, P11_ID_BYTES);
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->obj = o;
	pthread_mutex_unlock(&p->hlock);
}

/* Forgets every cached handle of the object with CKA_ID @id, whatever the name. */
static void hcache_drop(struct ks_p11 *p, CK_OBJECT_CLASS cls, const unsigned char *id)
{
	struct p11_handle *set = hcache_set(p, id);
	pthread_mutex_lock(&p->hlock);
	for (unsigned w = 0; w < P11_CACHE_WAYS; w++)
		if (hcache_match(&set[w], cls, id, NULL))
			memset(&set[w], 0, sizeof(set[w]));
	pthread_mutex_unlock(&p->hlock);
}

/* 0 when object @o still has CKA_ID @id and CKA_LABEL @name (one round trip). */
static int handle_check(struct ks_p11 *p, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, const char *name,
			const unsigned char *id)
{
	unsigned char oid[P11_ID_BYTES + 1];
	char label[KS_NAME_MAX + 1];
	CK_ATTRIBUTE a[] = {
		{CKA_ID, oid, sizeof(oid)},
		{CKA_LABEL, label, sizeof(label)},
	};
	if (p->f->C_GetAttributeValue(h, o, a, ELEMENTSOF(a)) != CKR_OK ||
	    a[0].ulValueLen != P11_ID_BYTES || memcmp(oid, id, P11_ID_BYTES) != 0 ||
	    a[1].ulValueLen != strlen(name) || memcmp(label, name, a[1].ulValueLen) != 0)
		return -ESTALE;
	return 0;
}

/*
 * key_find through the handle cache. With @trust, a cached handle is used
 * as it is: for decryption, where a handle that came to name another object
 * can only make the tag (or OAEP padding) fail, and the caller then looks
 * again with @trust false. Without @trust a cached handle is checked first
 * (CKA_ID and CKA_LABEL in one call): encryption under a wrong key would go
 * unnoticed. *@ret_cached tells whether the handle came from the cache.
 */
static int key_lookup(struct ks_p11 *p, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *name,
		      const unsigned char *ref, size_t ref_len, bool trust, CK_OBJECT_HANDLE *ret,
		      bool *ret_cached, struct p11_res *res)
{
	CK_OBJECT_HANDLE o;
	int r;

	*ret_cached = false;
	if (ref_len != P11_ID_BYTES)
		return -ENOENT;
	o = hcache_get(p, cls, name, ref);
	if (o != CK_INVALID_HANDLE) {
		if (trust || handle_check(p, h, o, name, ref) == 0) {
			*ret = o;
			*ret_cached = trust;
			return 0;
		}
		hcache_drop(p, cls, ref);
	}
	r = key_find(p, h, cls, name, ref, ref_len, &o, res);
	if (r < 0)
		return r;
	hcache_put(p, cls, name, ref, o);
	*ret = o;
	return 0;
}

/* Errors that a stale cached handle explains: look the object up again. */
static bool stale(int r, const struct p11_res *res)
{
	return r == -EBADMSG || (r == -EIO && (res->rv == CKR_OBJECT_HANDLE_INVALID ||
					       res->rv == CKR_KEY_HANDLE_INVALID));
}

static int key_missing(struct sealvm_err *err, const char *name, const struct ks_p11 *p)
{
	return sealvm_err_set(err, -ENOENT, "KEYSTORE_KEY_MISSING",
			      "keystore: token '%s' holds no key for the reference of %s", p->label,
			      name);
}

/* ---- AES keys ---- */

struct create_arg {
	const char *name;
	CK_ULONG bytes;
	const struct sealvm_secret *material;
	unsigned char id[P11_ID_BYTES];
};

static int op_key_create(struct ks_p11 *p, CK_SESSION_HANDLE h, void *varg, struct p11_res *res)
{
	struct create_arg *a = varg;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE type = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_MECHANISM gen = {CKM_AES_KEY_GEN, NULL, 0};
	CK_OBJECT_HANDLE o;
	CK_ATTRIBUTE tmpl[] = {
		{CKA_CLASS, &cls, sizeof(cls)},
		{CKA_KEY_TYPE, &type, sizeof(type)},
		{CKA_TOKEN, &yes, sizeof(yes)},
		{CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_SENSITIVE, &yes, sizeof(yes)},
		{CKA_EXTRACTABLE, &no, sizeof(no)},
		{CKA_MODIFIABLE, &no, sizeof(no)},
		{CKA_ENCRYPT, &yes, sizeof(yes)},
		{CKA_DECRYPT, &yes, sizeof(yes)},
		{CKA_WRAP, &no, sizeof(no)},
		{CKA_UNWRAP, &no, sizeof(no)},
		{CKA_SIGN, &no, sizeof(no)},
		{CKA_VERIFY, &no, sizeof(no)},
		{CKA_DERIVE, &no, sizeof(no)},
		{CKA_ID, a->id, sizeof(a->id)},
		{CKA_LABEL, (void *)a->name, strlen(a->name)},
		/* last: CKA_VALUE_LEN to generate, CKA_VALUE to import */
		{CKA_VALUE_LEN, &a->bytes, sizeof(a->bytes)},
	};
	CK_RV rv;

	if (a->material) {
		tmpl[ELEMENTSOF(tmpl) - 1] =
			(CK_ATTRIBUTE){CKA_VALUE, a->material->data, a->material->len};
		rv = p->f->C_CreateObject(h, tmpl, ELEMENTSOF(tmpl), &o);
		return rv == CKR_OK ? 0 : p11_fail(res, "C_CreateObject", rv);
	}
	rv = p->f->C_GenerateKey(h, &gen, tmpl, ELEMENTSOF(tmpl), &o);
	return rv == CKR_OK ? 0 : p11_fail(res, "C_GenerateKey(CKM_AES_KEY_GEN)", rv);
}

static int random_id(unsigned char id[P11_ID_BYTES], struct sealvm_err *err)
{
	if (RAND_bytes(id, P11_ID_BYTES) != 1) {
		ERR_clear_error();
		return sealvm_err_set(
			err, -EIO, "KEYSTORE_FAILED",
			"keystore: cannot generate a key id (OpenSSL RAND_bytes failed)");
	}
	return 0;
}

static int p11_key_create(struct keystore *ks, const char *name, size_t bytes,
			  const struct sealvm_secret *material, unsigned char *ref, size_t *ref_len,
			  struct sealvm_err *err)
{
	struct ks_p11 *p = (struct ks_p11 *)ks;
	struct create_arg a = {.name = name, .bytes = bytes, .material = material};
	int r = random_id(a.id, err);
	if (r < 0)
		return r;
	r = p11_run(p, op_key_create, &a, err);
	if (r < 0)
		return r;
	memcpy(ref, a.id, P11_ID_BYTES);
	*ref_len = P11_ID_BYTES;
	return 0;
}

struct destroy_arg {
	CK_OBJECT_CLASS cls;
	const char *name;
	const unsigned char *ref;
	size_t ref_len;
};

static int op_destroy(struct ks_p11 *p, CK_SESSION_HANDLE h, void *varg, struct p11_res *res)
{
	struct destroy_arg *a = varg;
	CK_OBJECT_HANDLE o;
	CK_RV rv;
	int r = key_find(p, h, a->cls, a->name, a->ref, a->ref_len, &o, res);
	if (r == -ENOENT)
		return 0; /* already gone */
	if (r < 0)
		return r;
	hcache_drop(p, a->cls, a->ref);
	rv = p->f->C_DestroyObject(h, o);
	hcache_drop(p, a->cls, a->ref); /* again: a concurrent lookup may have cached it */
	if (rv == CKR_OBJECT_HANDLE_INVALID)
		return 0; /* destroyed meanwhile by another thread */
	return rv == CKR_OK ? 0 : p11_fail(res, "C_DestroyObject", rv);
}

static int destroy(struct ks_p11 *p, CK_OBJECT_CLASS cls, const char *name,
		   const unsigned char *ref, size_t ref_len, struct sealvm_err *err)
{
	struct destroy_arg a = {cls, name, ref, ref_len};
	int r = p11_run(p, op_destroy, &a, err);
	if (r == -EBADMSG)
		return sealvm_err_set(
			err, -EBADMSG, "KEYSTORE_DECRYPT_FAILED",
			"keystore: the reference given for %s names another key's object in token '%s': nothing was destroyed",
			name, p->label);
	return r;
}

static int p11_key_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			   size_t ref_len, struct sealvm_err *err)
{
	return destroy((struct ks_p11 *)ks, CKO_SECRET_KEY, name, ref, ref_len, err);
}

struct gcm_arg {
	const char *name;
	const unsigned char *ref;
	size_t ref_len;
	CK_GCM_PARAMS gcm;
	const unsigned char *in;
	CK_ULONG in_len;
	unsigned char *out;
	CK_ULONG out_len; /* in: room, out: bytes */
	bool encrypt;
};

static int gcm_once(struct ks_p11 *p, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o, struct gcm_arg *a,
		    struct p11_res *res)
{
	CK_MECHANISM mech = {CKM_AES_GCM, &a->gcm, sizeof(a->gcm)};
	CK_ULONG out_len = a->out_len;
	CK_RV rv;

	if (a->encrypt) {
		rv = p->f->C_EncryptInit(h, &mech, o);
		if (rv != CKR_OK)
			return p11_fail(res, "C_EncryptInit(CKM_AES_GCM)", rv);
		rv = p->f->C_Encrypt(h, (CK_BYTE_PTR)a->in, a->in_len, a->out, &out_len);
		if (rv != CKR_OK)
			return p11_fail(res, "C_Encrypt(CKM_AES_GCM)", rv);
	} else {
		rv = p->f->C_DecryptInit(h, &mech, o);
		if (rv != CKR_OK)
			return p11_fail(res, "C_DecryptInit(CKM_AES_GCM)", rv);
		rv = p->f->C_Decrypt(h, (CK_BYTE_PTR)a->in, a->in_len, a->out, &out_len);
		/*
		 * A tag that does not verify: PKCS#11 3.0 says CKR_AEAD_DECRYPT_FAILED,
		 * 2.40 tokens CKR_ENCRYPTED_DATA_INVALID; SoftHSM2 2.6.1 answers
		 * CKR_GENERAL_ERROR from its final step (the key, IV and sizes were all
		 * accepted by then, so nothing else is left to fail).
		 */
		if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
		    rv == CKR_AEAD_DECRYPT_FAILED || rv == CKR_GENERAL_ERROR ||
		    rv == CKR_FUNCTION_FAILED) {
			log_debug("keystore: token '%s': C_Decrypt(CKM_AES_GCM) answered %s",
				  p->label, ckr_name(rv));
			return -EBADMSG;
		}
		if (rv != CKR_OK)
			return p11_fail(res, "C_Decrypt(CKM_AES_GCM)", rv);
	}
	a->out_len = out_len;
	return 0;
}

static int op_gcm(struct ks_p11 *p, CK_SESSION_HANDLE h, void *varg, struct p11_res *res)
{
	struct gcm_arg *a = varg;
	for (int pass = 0;; pass++) {
		CK_OBJECT_HANDLE o;
		bool cached;
		int r = key_lookup(p, h, CKO_SECRET_KEY, a->name, a->ref, a->ref_len,
				   !a->encrypt && pass == 0, &o, &cached, res);
		if (r < 0)
			return r;
		r = gcm_once(p, h, o, a, res);
		if (cached && stale(r, res)) {
			hcache_drop(p, CKO_SECRET_KEY, a->ref);
			continue;
		}
		return r;
	}
}

static int gcm_result(struct ks_p11 *p, int r, const char *name, struct sealvm_err *err)
{
	if (r == -ENOENT)
		return key_missing(err, name, p);
	if (r == -EBADMSG)
		return ks_decrypt_failed(err, name);
	return r;
}

static int p11_encrypt(struct keystore *ks, const char *name, const unsigned char *ref,
		       size_t ref_len, const unsigned char *aad, size_t aad_len,
		       const struct sealvm_secret *plain, unsigned char iv[KEYSTORE_IV_BYTES],
		       unsigned char *ct, unsigned char tag[KEYSTORE_TAG_BYTES],
		       struct sealvm_err *err)
{
	struct ks_p11 *p = (struct ks_p11 *)ks;
	/* Room for a token that rounds its output up to a block. */
	size_t room = plain->len + KEYSTORE_TAG_BYTES + 16;
	_cleanup_free_ unsigned char *out = malloc(room);
	struct gcm_arg a = {
		.name = name,
		.ref = ref,
		.ref_len = ref_len,
		.in = plain->data,
		.in_len = plain->len,
		.out_len = room,
		.encrypt = true,
	};
	int r;

	if (!out)
		return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
	/* Our IV, not the token's: the ciphertext carries it, and 2.40 tokens differ on
	 * who makes it. */
	if (RAND_bytes(iv, KEYSTORE_IV_BYTES) != 1) {
		ERR_clear_error();
		return sealvm_err_set(
			err, -EIO, "KEYSTORE_FAILED",
			"keystore: cannot generate an IV (OpenSSL RAND_bytes failed)");
	}
	a.out = out;
	a.gcm = (CK_GCM_PARAMS){
		.pIv = iv,
		.ulIvLen = KEYSTORE_IV_BYTES,
		.ulIvBits = KEYSTORE_IV_BYTES * 8,
		.pAAD = (CK_BYTE_PTR)aad,
		.ulAADLen = aad_len,
		.ulTagBits = KEYSTORE_TAG_BYTES * 8,
	};
	r = p11_run(p, op_gcm, &a, err);
	if (r < 0)
		return gcm_result(p, r, name, err);
	if (a.out_len != plain->len + KEYSTORE_TAG_BYTES)
		return sealvm_err_set(
			err, -EIO, "KEYSTORE_FAILED",
			"keystore: token '%s': C_Encrypt(CKM_AES_GCM) returned %lu bytes for %zu",
			p->label, (unsigned long)a.out_len, plain->len);
	memcpy(ct, out, plain->len);
	memcpy(tag, out + plain->len, KEYSTORE_TAG_BYTES);
	return 0;
}

static int p11_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
		       size_t ref_len, const unsigned char *aad, size_t aad_len,
		       const unsigned char iv[KEYSTORE_IV_BYTES], const unsigned char *ct,
		       size_t ct_len, const unsigned char tag[KEYSTORE_TAG_BYTES],
		       struct sealvm_secret **ret, struct sealvm_err *err)
{
	struct ks_p11 *p = (struct ks_p11 *)ks;
	_cleanup_free_ unsigned char *in = malloc(ct_len + KEYSTORE_TAG_BYTES);
	_cleanup_secret_ struct sealvm_secret *plain = NULL;
	unsigned char ivbuf[KEYSTORE_IV_BYTES];
	struct gcm_arg a = {
		.name = name,
		.ref = ref,
		.ref_len = ref_len,
		.in_len = ct_len + KEYSTORE_TAG_BYTES,
		.encrypt = false,
	};
	int r;

	if (!in)
		return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
	/* PKCS#11 takes the tag at the end of the ciphertext. */
	memcpy(in, ct, ct_len);
	memcpy(in + ct_len, tag, KEYSTORE_TAG_BYTES);
	memcpy(ivbuf, iv, sizeof(ivbuf));
	r = sealvm_secret_new(ct_len + KEYSTORE_TAG_BYTES + 16, &plain);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "keystore: cannot allocate secure memory");
	a.in = in;
	a.out = plain->data;
	a.out_len = plain->cap;
	a.gcm = (CK_GCM_PARAMS){
		.pIv = ivbuf,
		.ulIvLen = KEYSTORE_IV_BYTES,
		.ulIvBits = KEYSTORE_IV_BYTES * 8,
		.pAAD = (CK_BYTE_PTR)aad,
		.ulAADLen = aad_len,
		.ulTagBits = KEYSTORE_TAG_BYTES * 8,
	};
	r = p11_run(p, op_gcm, &a, err);
	if (r < 0)
		return gcm_result(p, r, name, err);
	if (a.out_len != ct_len)
		return sealvm_err_set(
			err, -EIO, "KEYSTORE_FAILED",
			"keystore: token '%s': C_Decrypt(CKM_AES_GCM) returned %lu bytes for %zu",
			p->label, (unsigned long)a.out_len, ct_len);
	plain->len = ct_len;
	plain->data[ct_len] = 0;
	*ret = TAKE_PTR(plain);
	return 0;
}

/* ---- RSA import-token keys ---- */

struct rsa_gen_arg {
	const char *name; /* NULL for the probe's session key */
	CK_ULONG bits;
	unsigned char id[P11_ID_BYTES];
	unsigned char *spki;
	size_t spki_len;
	CK_OBJECT_HANDLE priv;
	struct sealvm_err *err;
};

/* Generates a pair, keeps the private half, returns the public half as an SPKI. */
static int rsa_generate(struct ks_p11 *p, CK_SESSION_HANDLE h, struct rsa_gen_arg *a,
			struct p11_res *res)
{
	CK_MECHANISM gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, token = a->name ? CK_TRUE : CK_FALSE;
	CK_BYTE exp[] = {1, 0, 1};
	const char *label = a->name ? a->name : "sealvm-probe";
	CK_ATTRIBUTE pub_tmpl[] = {
		{CKA_TOKEN, &no, sizeof(no)},
		{CKA_ENCRYPT, &yes, sizeof(yes)},
		{CKA_VERIFY, &no, sizeof(no)},
		{CKA_WRAP, &no, sizeof(no)},
		{CKA_MODULUS_BITS, &a->bits, sizeof(a->bits)},
		{CKA_PUBLIC_EXPONENT, exp, sizeof(exp)},
	};
	CK_ATTRIBUTE priv_tmpl[] = {
		{CKA_TOKEN, &token, sizeof(token)},
		{CKA_PRIVATE, &yes, sizeof(yes)},
		{CKA_SENSITIVE, &yes, sizeof(yes)},
		{CKA_EXTRACTABLE, &no, sizeof(no)},
		{CKA_MODIFIABLE, &no, sizeof(no)},
		{CKA_DECRYPT, &yes, sizeof(yes)},
		{CKA_SIGN, &no, sizeof(no)},
		{CKA_UNWRAP, &no, sizeof(no)},
		{CKA_DERIVE, &no, sizeof(no)},
		{CKA_ID, a->id, sizeof(a->id)},
		{CKA_LABEL, (void *)label, strlen(label)},
	};
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
	unsigned char n[KS_RSA_BYTES + 8], e[16];
	CK_ATTRIBUTE get[] = {
		{CKA_MODULUS, n, sizeof(n)},
		{CKA_PUBLIC_EXPONENT, e, sizeof(e)},
	};
	CK_RV rv;
	int r;

	rv = p->f->C_GenerateKeyPair(h, &gen, pub_tmpl, ELEMENTSOF(pub_tmpl), priv_tmpl,
				     ELEMENTSOF(priv_tmpl), &pub, &priv);
	if (rv != CKR_OK)
		return p11_fail(res, "C_GenerateKeyPair(CKM_RSA_PKCS_KEY_PAIR_GEN)", rv);
	rv = p->f->C_GetAttributeValue(h, pub, get, ELEMENTSOF(get));
	(void)p->f->C_DestroyObject(h, pub);
	if (rv != CKR_OK) {
		(void)p->f->C_DestroyObject(h, priv);
		return p11_fail(res, "C_GetAttributeValue(CKA_MODULUS)", rv);
	}
	r = ks_rsa_spki_from(n, get[0].ulValueLen, e, get[1].ulValueLen, &a->spki, &a->spki_len,
			     a->err);
	if (r < 0) {
		(void)p->f->C_DestroyObject(h, priv);
		return r;
	}
	a->priv = priv;
	return 0;
}

struct oaep_arg {
	CK_OBJECT_HANDLE priv; /* or, when CK_INVALID_HANDLE, found by name and ref */
	const char *name;
	const unsigned char *ref;
	size_t ref_len;
	const unsigned char *ct;
	size_t ct_len;
	unsigned char *out;
	CK_ULONG out_len;
};

static int oaep_decrypt(struct ks_p11 *p, CK_SESSION_HANDLE h, struct oaep_arg *a,
			struct p11_res *res)
{
	CK_RSA_PKCS_OAEP_PARAMS params = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_MECHANISM mech = {CKM_RSA_PKCS_OAEP, &params, sizeof(params)};
	CK_ULONG out_len = a->out_len;
	CK_RV rv;

	rv = p->f->C_DecryptInit(h, &mech, a->priv);
	if (rv != CKR_OK)
		return p11_fail(res, "C_DecryptInit(CKM_RSA_PKCS_OAEP, SHA-256)", rv);
	rv = p->f->C_Decrypt(h, (CK_BYTE_PTR)a->ct, a->ct_len, a->out, &out_len);
	if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE)
		return -EBADMSG;
	if (rv != CKR_OK)
		return p11_fail(res, "C_Decrypt(CKM_RSA_PKCS_OAEP)", rv);
	a->out_len = out_len;
	return 0;
}

/*
 * Can the token decrypt RSAES-OAEP-SHA-256? Mechanism flags cannot tell
 * (they do not cover the hash), so try it: a session key pair, a message
 * encrypted by OpenSSL, decrypted by the token. Any failure means "no".
 */
static int op_probe(struct ks_p11 *p, CK_SESSION_HANDLE h, void *varg, struct p11_res *res)
{
	int *ok = varg;
	struct sealvm_err perr = SEALVM_ERR_INIT;
	struct rsa_gen_arg g = {.name = NULL, .bits = P11_PROBE_BITS, .err = &perr};
	unsigned char msg[16], ct[P11_PROBE_BITS / 8], out[P11_PROBE_BITS / 8];
	size_t ct_len = sizeof(ct);
	CK_MECHANISM_INFO info;
	struct oaep_arg o = {.ct = ct, .out = out, .out_len = sizeof(out)};
	int r;

	*ok = 0;
	if (p->f->C_GetMechanismInfo(p->slot, CKM_RSA_PKCS_OAEP, &info) != CKR_OK ||
	    !(info.flags & CKF_DECRYPT) ||
	    p->f->C_GetMechanismInfo(p->slot, CKM_RSA_PKCS_KEY_PAIR_GEN, &info) != CKR_OK ||
	    info.ulMaxKeySize < KS_RSA_BITS)
		return 0;
	if (RAND_bytes(msg, sizeof(msg)) != 1 || RAND_bytes(g.id, sizeof(g.id)) != 1) {
		ERR_clear_error();
		return 0;
	}
	r = rsa_generate(p, h, &g, res);
	if (r < 0) {
		/* A lost session is worth a retry; anything else just means "no". */
		return r == -EIO && session_lost(res->rv) ? r : 0;
	}
	if (ks_rsa_oaep_encrypt(g.spki, g.spki_len, msg, sizeof(msg), ct, &ct_len) == 0) {
		o.priv = g.priv;
		o.ct_len = ct_len;
		r = oaep_decrypt(p, h, &o, res);
		*ok = r == 0 && o.out_len == sizeof(msg) && memcmp(out, msg, sizeof(msg)) == 0;
	}
	(void)p->f->C_DestroyObject(h, g.priv);
	free(g.spki);
	OPENSSL_cleanse(out, sizeof(out));
	res->fn = NULL;
	return 0;
}

static bool oaep256(struct ks_p11 *p)
{
	int ok = 0;
	pthread_mutex_lock(&p->probe_lock);
	if (p->oaep256 == 0) {
		if (p11_run(p, op_probe, &ok, NULL) < 0)
			ok = 0;
		p->oaep256 = ok ? 1 : -1;
		log_info("keystore: token '%s' %s RSA-OAEP with SHA-256: import-token keys %s",
			 p->label, ok ? "decrypts" : "cannot decrypt",
			 ok ? "stay in the token" : "are sealed under the master key");
	}
	ok = p->oaep256 > 0;
	pthread_mutex_unlock(&p->probe_lock);
	return ok;
}

static int op_rsa_create(struct ks_p11 *p, CK_SESSION_HANDLE h, void *varg, struct p11_res *res)
{
	return rsa_generate(p, h, varg, res);
}

static int p11_rsa_create(struct keystore *ks, const char *name, unsigned char **ret_pub,
			  size_t *ret_pub_len, unsigned char **ret_ref, size_t *ret_ref_len,
			  struct sealvm_err *err)
{
	struct ks_p11 *p = (struct ks_p11 *)ks;
	struct rsa_gen_arg g = {.name = name, .bits = KS_RSA_BITS, .err = err};
	unsigned char *ref;
	int r;

	if (!oaep256(p)) {
		if (!p->master)
			return sealvm_err_set(
				err, -EINVAL, "KEYSTORE_INVALID",
				"keystore: token '%s' cannot decrypt RSA-OAEP with SHA-256, so import-token keys are sealed under the master key, and the keystore was opened without it",
				p->label);
		return ks_rsa_sealed_create(p->master, name, ret_pub, ret_pub_len, ret_ref,
					    ret_ref_len, err);
	}
	r = random_id(g.id, err);
	if (r < 0)
		return r;
	r = p11_run(p, op_rsa_create, &g, err);
	if (r < 0)
		return r;
	ref = malloc(P11_ID_BYTES);
	if (!ref) {
		free(g.spki);
		(void)destroy(p, CKO_PRIVATE_KEY, name, g.id, sizeof(g.id), NULL);
		return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
	}
	memcpy(ref, g.id, P11_ID_BYTES);
	*ret_pub = g.spki;
	*ret_pub_len = g.spki_len;
	*ret_ref = ref;
	*ret_ref_len = P11_ID_BYTES;
	return 0;
}

static int op_rsa_decrypt(struct ks_p11 *p, CK_SESSION_HANDLE h, void *varg, struct p11_res *res)
{
	struct oaep_arg *a = varg;
	for (int pass = 0;; pass++) {
		bool cached;
		int r = key_lookup(p, h, CKO_PRIVATE_KEY, a->name, a->ref, a->ref_len, pass == 0,
				   &a->priv, &cached, res);
		if (r < 0)
			return r;
		r = oaep_decrypt(p, h, a, res);
		if (cached && stale(r, res)) {
			hcache_drop(p, CKO_PRIVATE_KEY, a->ref);
			continue;
		}
		return r;
	}
}

static int p11_rsa_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
			   size_t ref_len, const unsigned char *ct, size_t ct_len,
			   struct sealvm_secret **ret, struct sealvm_err *err)
{
	struct ks_p11 *p = (struct ks_p11 *)ks;
	_cleanup_secret_ struct sealvm_secret *out = NULL;
	struct oaep_arg a = {
		.name = name, .ref = ref, .ref_len = ref_len, .ct = ct, .ct_len = ct_len};
	int r;

	if (ref_len != P11_ID_BYTES) /* a sealed key from OpenSSL, or nothing of ours */
		return ks_rsa_sealed_decrypt(p->master, name, ref, ref_len, ct, ct_len, ret, err);
	r = sealvm_secret_new(KS_RSA_BYTES, &out);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "keystore: cannot allocate secure memory");
	a.out = out->data;
	a.out_len = out->cap;
	r = p11_run(p, op_rsa_decrypt, &a, err);
	if (r < 0)
		return gcm_result(p, r, name, err);
	out->len = a.out_len;
	out->data[out->len] = 0;
	*ret = TAKE_PTR(out);
	return 0;
}

static int p11_rsa_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			   size_t ref_len, struct sealvm_err *err)
{
	if (ref_len != P11_ID_BYTES)
		return 0; /* sealed: the reference is the key */
	return destroy((struct ks_p11 *)ks, CKO_PRIVATE_KEY, name, ref, ref_len, err);
}

/* ---- open / close ---- */

static void p11_close(struct keystore *ks)
{
	struct ks_p11 *p = (struct ks_p11 *)ks;
	if (!p)
		return;
	if (p->idle) {
		/* Closing our sessions ends our login when no other keystore shares the token. */
		for (unsigned i = 0; i < p->nidle; i++)
			if (p->idle[i] != CK_INVALID_HANDLE)
				(void)p->f->C_CloseSession(p->idle[i]);
		free(p->idle);
	}
	module_unref(p->mod);
	sealvm_secret_free(p->pin);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->probe_lock);
	pthread_mutex_destroy(&p->hlock);
	free(p);
}

static const struct keystore_ops p11_ops = {
	.name = "pkcs11",
	.close = p11_close,
	.key_create = p11_key_create,
	.key_destroy = p11_key_destroy,
	.encrypt = p11_encrypt,
	.decrypt = p11_decrypt,
	.rsa_create = p11_rsa_create,
	.rsa_decrypt = p11_rsa_decrypt,
	.rsa_destroy = p11_rsa_destroy,
};

static inline void p11_closep(struct ks_p11 **p)
{
	if (*p)
		p11_close(&(*p)->ks);
}

int ks_pkcs11_open(const struct keystore_config *cfg, struct keystore **ret, struct sealvm_err *err)
{
	_cleanup_(p11_closep) struct ks_p11 *p = NULL;
	CK_SESSION_HANDLE h;
	CK_RV rv;
	long cpus;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
	p->ks.ops = &p11_ops;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_mutex_init(&p->probe_lock, NULL);
	pthread_mutex_init(&p->hlock, NULL);
	p->master = cfg->master;
	snprintf(p->label, sizeof(p->label), "%s", cfg->token_label);
	snprintf(p->module_path, sizeof(p->module_path), "%s", cfg->module);
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	p->nsessions = cfg->sessions ? cfg->sessions : (unsigned)(2 * (cpus > 0 ? cpus : 1));
	if (p->nsessions > P11_SESSIONS_MAX)
		return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID",
				      "keystore: a pool of %u sessions is too large (at most %d)",
				      p->nsessions, P11_SESSIONS_MAX);

	/* The PIN first: a configuration without one fails before the module loads. */
	r = pin_read(p, cfg, err);
	if (r < 0)
		return r;
	r = module_ref(p, cfg->module, err);
	if (r < 0)
		return r;
	r = token_find(p, err);
	if (r < 0)
		return r;
	p->idle = calloc(p->nsessions, sizeof(*p->idle));
	if (!p->idle)
		return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
	for (unsigned i = 0; i < p->nsessions; i++) {
		rv = session_open(p, &h);
		if (rv != CKR_OK)
			return p11_failed(p, err, "C_OpenSession", rv);
		p->idle[p->nidle++] = h;
		/* The login is the token's, shared by all our sessions: once is enough. */
		if (i == 0) {
			rv = login(p, h);
			if (rv != CKR_OK)
				return p11_failed(p, err, "C_Login", rv);
		}
	}
	*ret = &TAKE_PTR(p)->ks;
	return 0;
}
