// SPDX-License-Identifier: Apache-2.0
/*
 * luks_header.c — LUKS headers through libcryptsetup: format, inspect, unlock.
 *
 * Every header we read is untrusted. libcryptsetup parses it (we never do);
 * we then hold what it found to our rules before any expensive work: the
 * payload must be in the file and whole sectors, the cipher must be one our
 * payload code implements, and each keyslot's PBKDF cost (and the volume key
 * digest's) must be within struct luks_limits before a passphrase is tried.
 * The only bytes we look at ourselves are the magic, version and one size
 * field, and only to tell "not LUKS" from "truncated" after libcryptsetup has
 * refused a file. libcryptsetup's messages go to our log at debug level (it
 * must never print on its own); the last error it reported is kept to explain
 * a failure. This file must never log, print or copy a passphrase or key
 * outside struct sealvm_secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <openssl/crypto.h>

#include "sealvm/file.h"
#include "sealvm/log.h"

#include "luks_internal.h"

#define LUKS_DUMP_MAX ((size_t)1 << 20)

void luks_limits_default(struct luks_limits *ret)
{
	*ret = (struct luks_limits){
		.max_memory_kib = 1048576,
		.max_pbkdf2_iterations = 20000000,
		.max_argon2_iterations = 32,
		.max_parallel = 8,
	};
}

/*
 * Copies header text into a fixed field ("" for NULL). It is untrusted and
 * ends up in messages on a terminal: cut, terminated, printable ASCII only.
 */
static void copy_text(char *dst, size_t n, const char *src, size_t len)
{
	size_t i = 0;

	for (; src && i < len && i + 1 < n && src[i]; i++) {
		dst[i] = src[i];
		if (src[i] < 0x20 || src[i] >= 0x7f)
			dst[i] = '?';
	}
	dst[i] = 0;
}

static void copy_field(char *dst, size_t n, const char *src)
{
	copy_text(dst, n, src, SIZE_MAX);
}

/* What libcryptsetup said about one context. */
struct cs_log {
	char last_error[256];
	bool capture; /* collect CRYPT_LOG_NORMAL output (crypt_dump) instead of logging it */
	char *dump;
	size_t dump_len;
	size_t dump_cap;
	bool dump_overflow;
};

static void cs_log_done(struct cs_log *l)
{
	free(l->dump);
	l->dump = NULL;
	l->dump_len = l->dump_cap = 0;
}

static void cs_log_append(struct cs_log *l, const char *msg)
{
	size_t n = strlen(msg);

	if (l->dump_overflow)
		return;
	if (l->dump_len + n + 1 > l->dump_cap) {
		size_t cap = MAX(l->dump_cap * 2, (size_t)16384);
		while (cap < l->dump_len + n + 1)
			cap *= 2;
		char *p = cap <= LUKS_DUMP_MAX ? realloc(l->dump, cap) : NULL;
		if (!p) {
			l->dump_overflow = true;
			return;
		}
		l->dump = p;
		l->dump_cap = cap;
	}
	memcpy(l->dump + l->dump_len, msg, n + 1);
	l->dump_len += n;
}

static void cs_log_cb(int level, const char *msg, void *userdata)
{
	struct cs_log *l = userdata;
	size_t n;

	if (!msg)
		return;
	if (l && l->capture && level == CRYPT_LOG_NORMAL) {
		cs_log_append(l, msg);
		return;
	}
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		n--;
	/* It may quote header fields: keep it printable, it ends up in our messages. */
	if (l && level == CRYPT_LOG_ERROR)
		copy_text(l->last_error, sizeof(l->last_error), msg, n);
	/* libcryptsetup never puts key material in its messages; they are still debug only. */
	log_debug("libcryptsetup: %.*s", (int)n, msg);
}

static pthread_once_t cs_once = PTHREAD_ONCE_INIT;

static void cs_init_once(void)
{
	/* Messages from before a context has its own callback (crypt_init) land here. */
	crypt_set_log_callback(NULL, cs_log_cb, NULL);
	/* A header names its tokens: never let it pick plugins to load. */
	crypt_token_external_disable();
	/*
	 * With metadata locking on, crypt_load "repairs" a damaged LUKS2 header
	 * copy by writing into the file it was asked to read. We only read
	 * existing LUKS files (and write new ones under an O_EXCL name nobody
	 * else opens), so we need no locks and want no writes.
	 */
	crypt_metadata_locking(NULL, 0);
}

static void crypt_freep(struct crypt_device **cd)
{
	if (*cd)
		crypt_free(*cd);
}
#define _cleanup_crypt_ _cleanup_(crypt_freep)

static int cs_open(const char *path, struct crypt_device **ret, struct cs_log *l,
		   struct sealvm_err *err)
{
	struct crypt_device *cd = NULL;
	int r;

	pthread_once(&cs_once, cs_init_once);
	r = crypt_init(&cd, path);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot open %s with libcryptsetup (%s)", path,
				      strerror(-r));
	crypt_set_log_callback(cd, cs_log_cb, l);
	*ret = cd;
	return 0;
}

/* " (libcryptsetup: ...)" or "", for messages. */
static const char *cs_why(const struct cs_log *l, char *buf, size_t n)
{
	if (!l->last_error[0])
		return "";
	snprintf(buf, n, " (libcryptsetup: %s)", l->last_error);
	return buf;
}

static uint64_t be_read(const unsigned char *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/*
 * libcryptsetup refused a file that starts with a LUKS header: is it merely
 * cut short? Its header (the first @len bytes) is copied into a sparse
 * in-memory file as long as any disk, which libcryptsetup loads in its place:
 * if that works, the header is sound and its payload offset says where the
 * file should have gone on. Returns the offset in bytes, or a negative errno
 * when even the copy does not load (the header itself is damaged).
 */
static int64_t payload_offset_if_complete(int fd, size_t len)
{
	_cleanup_crypt_ struct crypt_device *cd = NULL;
	_cleanup_close_ int mfd = -1;
	_cleanup_free_ unsigned char *buf = NULL;
	struct cs_log l = {0};
	char path[64];
	ssize_t n;
	int r;

	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	n = sealvm_pread_all(fd, buf, len, 0);
	if (n < 0)
		return n;
	mfd = memfd_create("luks-header", MFD_CLOEXEC);
	if (mfd < 0)
		return negative_errno();
	r = sealvm_write_all(mfd, buf, (size_t)n);
	if (r < 0)
		return r;
	if (ftruncate(mfd, (off_t)1 << 42) < 0)
		return negative_errno();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	r = crypt_init(&cd, path);
	if (r < 0)
		return r;
	crypt_set_log_callback(cd, cs_log_cb, &l);
	r = crypt_load(cd, CRYPT_LUKS, NULL);
	cs_log_done(&l);
	if (r < 0)
		return r;
	uint64_t off = crypt_get_data_offset(cd);
	if (off > (uint64_t)INT64_MAX / LUKS_SECTOR)
		return -EINVAL;
	return (int64_t)(off * LUKS_SECTOR);
}

/*
 * libcryptsetup refused @path: say whether it is no LUKS at all, a truncated
 * one, or a damaged one. We read only the magic, the version and (LUKS2) the
 * header size; libcryptsetup reads the rest.
 */
static int classify_load_failure(int fd, uint64_t file_size, const char *path, int r,
				 const struct cs_log *l, struct sealvm_err *err)
{
	static const unsigned char magic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
	unsigned char h[16] = {0};
	uint64_t copy = 4096;
	int64_t payload;
	char why[320];
	ssize_t n;

	if (r == -ENOMEM)
		return sealvm_err_set(err, r, NULL, "out of memory reading the LUKS header of %s",
				      path);
	n = sealvm_pread_all(fd, h, sizeof(h), 0);
	if (n < 0)
		return sealvm_err_set_errno(err, (int)n, "IO_ERROR", "cannot read %s", path);
	if (n < (ssize_t)sizeof(magic) || memcmp(h, magic, sizeof(magic)) != 0)
		return sealvm_err_set(err, -EINVAL, "NOT_LUKS",
				      "%s is not a LUKS image: it has no LUKS header", path);
	if (n < (ssize_t)sizeof(h))
		return sealvm_err_set(err, -EBADMSG, "TRUNCATED",
				      "%s is truncated: the file ends at byte %" PRIu64
				      ", inside its LUKS header",
				      path, file_size);

	unsigned version = (unsigned)be_read(h + 6, 2);
	if (version != 1 && version != 2)
		return sealvm_err_set(
			err, -EINVAL, "NOT_LUKS",
			"%s has a LUKS magic but version %u, which is not LUKS1 or LUKS2", path,
			version);
	if (version == 2) {
		/* Two copies of binary header + JSON area come before anything else. */
		uint64_t hdr_size = be_read(h + 8, 8);
		if (hdr_size >= 16384 && hdr_size <= (4u << 20))
			copy = 2 * hdr_size;
	}
	payload = payload_offset_if_complete(fd, (size_t)MIN(copy, file_size));
	if (payload >= 0 && file_size < (uint64_t)payload)
		return sealvm_err_set(err, -EBADMSG, "TRUNCATED",
				      "%s is truncated: header says payload starts at byte %" PRId64
				      ", file ends at %" PRIu64,
				      path, payload, file_size);
	if (file_size < copy)
		return sealvm_err_set(err, -EBADMSG, "TRUNCATED",
				      "%s is truncated: the file ends at byte %" PRIu64
				      ", inside its LUKS%u header area",
				      path, file_size, version);
	return sealvm_err_set(err, -EBADMSG, "LUKS_HEADER_DAMAGED",
			      "%s has a LUKS%u header that cannot be read; it is damaged%s", path,
			      version, cs_why(l, why, sizeof(why)));
}

/* The value after "@label" on the first line of @text (up to @end) that starts with it. */
static const char *dump_value(const char *text, const char *end, const char *label)
{
	size_t ll = strlen(label);

	for (const char *line = text; line && line < end;) {
		const char *p = line;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if ((size_t)(end - p) >= ll && strncmp(p, label, ll) == 0) {
			p += ll;
			while (p < end && (*p == ' ' || *p == '\t'))
				p++;
			return p;
		}
		line = memchr(line, '\n', (size_t)(end - line));
		if (line)
			line++;
	}
	return NULL;
}

static bool parse_u32(const char *p, uint32_t *ret)
{
	char *e;
	unsigned long long v;

	if (!p || *p < '0' || *p > '9')
		return false;
	errno = 0;
	v = strtoull(p, &e, 10);
	if (errno || v > UINT32_MAX || (*e && *e != '\n' && *e != ' ' && *e != '\t'))
		return false;
	*ret = (uint32_t)v;
	return true;
}

static void copy_word(char *dst, size_t n, const char *p)
{
	size_t len = 0;
	if (!p) {
		copy_field(dst, n, NULL);
		return;
	}
	while (p[len] && p[len] != '\n' && p[len] != ' ' && p[len] != '\t')
		len++;
	copy_text(dst, n, p, len);
}

/*
 * The header hash and the volume key digest's iterations are in no getter of
 * libcryptsetup 2.6; crypt_dump shows them. The digest costs one PBKDF2 run
 * per correct passphrase, so a hostile header could ask for billions of
 * iterations there: we need the number. @ret_iterations is 0 if not found.
 */
static int read_dump(struct crypt_device *cd, struct cs_log *l, int version, char *hash,
		     size_t hash_len, uint32_t *ret_iterations)
{
	const char *start, *end, *v;
	uint32_t max = 0;
	int r;

	l->capture = true;
	r = crypt_dump(cd);
	l->capture = false;
	*ret_iterations = 0;
	if (r < 0 || !l->dump || l->dump_overflow) {
		cs_log_done(l);
		return r < 0 ? r : -EIO;
	}
	start = l->dump;
	end = l->dump + l->dump_len;
	if (version == 1) {
		copy_word(hash, hash_len, dump_value(start, end, "Hash spec:"));
		if (parse_u32(dump_value(start, end, "MK iterations:"), &max))
			*ret_iterations = max;
	} else {
		/* Digests come last; keyslots above have such lines too. */
		start = strstr(start, "\nDigests:\n");
		if (start) {
			copy_word(hash, hash_len, dump_value(start, end, "Hash:"));
			for (const char *p = start; (v = dump_value(p, end, "Iterations:"));) {
				uint32_t it;
				if (!parse_u32(v, &it)) {
					max = 0;
					break;
				}
				max = MAX(max, it);
				p = strchr(v, '\n');
				if (!p)
					break;
			}
			*ret_iterations = max;
		}
	}
	cs_log_done(l);
	return 0;
}

/*
 * Opens and loads @path, checks that the payload is in the file, and fills
 * @info. On success *@ret_cd is loaded (free with crypt_free).
 */
static int luks_load(const char *path, struct crypt_device **ret_cd, struct cs_log *l,
		     struct luks_info *info, struct stat *ret_st, struct sealvm_err *err)
{
	_cleanup_crypt_ struct crypt_device *cd = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st, st2;
	const char *type;
	uint64_t payload_offset;
	int r, sector_size, max_slots;
	char why[320];

	memset(info, 0, sizeof(*info));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = negative_errno();
		if (r == -ENOENT)
			return sealvm_err_set(err, r, "NOT_FOUND", "%s does not exist", path);
		return sealvm_err_set_errno(err, r, NULL, "cannot open %s", path);
	}
	if (fstat(fd, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), NULL, "cannot stat %s", path);
	if (!S_ISREG(st.st_mode))
		return sealvm_err_set(
			err, -EINVAL, "NOT_A_FILE",
			"%s is not a regular file: give the path of a LUKS image file", path);
	info->file_size = (uint64_t)st.st_size;

	r = cs_open(path, &cd, l, err);
	if (r < 0)
		return r;
	r = crypt_load(cd, CRYPT_LUKS, NULL);
	if (r < 0)
		return classify_load_failure(fd, info->file_size, path, r, l, err);
	/* libcryptsetup opened the path itself: it must still be the file we stat'ed. */
	if (stat(path, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)
		return sealvm_err_set(err, -EBUSY, "FILE_CHANGED",
				      "%s was replaced while its header was being read", path);

	type = crypt_get_type(cd);
	if (type && strcmp(type, CRYPT_LUKS1) == 0)
		info->version = 1;
	else if (type && strcmp(type, CRYPT_LUKS2) == 0)
		info->version = 2;
	else
		return sealvm_err_set(err, -EINVAL, "NOT_LUKS", "%s is not a LUKS1 or LUKS2 image",
				      path);

	copy_field(info->cipher, sizeof(info->cipher), crypt_get_cipher(cd));
	copy_field(info->cipher_mode, sizeof(info->cipher_mode), crypt_get_cipher_mode(cd));
	copy_field(info->uuid, sizeof(info->uuid), crypt_get_uuid(cd));
	r = crypt_get_volume_key_size(cd);
	info->key_bits = r > 0 ? (uint32_t)r * 8 : 0;
	sector_size = crypt_get_sector_size(cd);
	if (sector_size < (int)LUKS_SECTOR || sector_size > 4096 ||
	    (sector_size & (sector_size - 1)))
		return sealvm_err_set(err, -EBADMSG, "LUKS_HEADER_DAMAGED",
				      "%s: its LUKS header has an invalid sector size (%d)", path,
				      sector_size);
	info->sector_size = (uint32_t)sector_size;
	info->iv_offset = crypt_get_iv_offset(cd);

	payload_offset = crypt_get_data_offset(cd);
	if (payload_offset > UINT64_MAX / LUKS_SECTOR)
		return sealvm_err_set(err, -EBADMSG, "LUKS_HEADER_DAMAGED",
				      "%s: its LUKS header has an impossible payload offset", path);
	info->payload_offset = payload_offset * LUKS_SECTOR;
	if (info->file_size < info->payload_offset)
		return sealvm_err_set(err, -EBADMSG, "TRUNCATED",
				      "%s is truncated: header says payload starts at byte %" PRIu64
				      ", file ends at %" PRIu64,
				      path, info->payload_offset, info->file_size);
	info->payload_size = info->file_size - info->payload_offset;
	if (info->payload_size % info->sector_size)
		return sealvm_err_set(
			err, -EBADMSG, "TRUNCATED",
			"%s is truncated: its payload of %" PRIu64 " bytes (from byte %" PRIu64
			" to the end) is not a whole number of %u-byte sectors",
			path, info->payload_size, info->payload_offset, info->sector_size);

	max_slots = crypt_keyslot_max(type);
	for (int slot = 0; slot < max_slots && slot < LUKS_MAX_KEYSLOTS; slot++) {
		crypt_keyslot_info ks = crypt_keyslot_status(cd, slot);
		struct crypt_pbkdf_type pbkdf;
		struct luks_keyslot_info *k;

		/* Unbound LUKS2 keyslots do not hold the volume key. */
		if (ks != CRYPT_SLOT_ACTIVE && ks != CRYPT_SLOT_ACTIVE_LAST)
			continue;
		k = &info->keyslots[info->n_keyslots++];
		k->slot = slot;
		memset(&pbkdf, 0, sizeof(pbkdf));
		if (crypt_keyslot_get_pbkdf(cd, slot, &pbkdf) < 0) {
			copy_field(k->pbkdf, sizeof(k->pbkdf), "unknown");
			continue;
		}
		copy_field(k->pbkdf, sizeof(k->pbkdf), pbkdf.type);
		copy_field(k->hash, sizeof(k->hash), pbkdf.hash);
		k->iterations = pbkdf.iterations;
		k->memory_kib = pbkdf.max_memory_kb;
		k->parallel = pbkdf.parallel_threads;
	}

	r = read_dump(cd, l, info->version, info->hash, sizeof(info->hash),
		      &info->digest_iterations);
	if (r < 0)
		log_debug("%s: crypt_dump failed%s", path, cs_why(l, why, sizeof(why)));
	if (!info->hash[0] && info->n_keyslots > 0)
		copy_field(info->hash, sizeof(info->hash), info->keyslots[0].hash);

	if (ret_st)
		*ret_st = st;
	*ret_cd = TAKE_PTR(cd);
	return 0;
}

int luks_inspect(const char *path, struct luks_info *ret, struct sealvm_err *err)
{
	_cleanup_crypt_ struct crypt_device *cd = NULL;
	struct cs_log l = {0};
	struct luks_info info;
	int r;

	if (!path || !ret)
		return sealvm_err_set(err, -EINVAL, NULL, "luks_inspect: no path");
	r = luks_load(path, &cd, &l, &info, NULL, err);
	cs_log_done(&l);
	if (r < 0)
		return r;
	*ret = info;
	return 0;
}

/* Why keyslot @k is beyond @lim, or NULL when it is within. */
static const char *keyslot_over_limit(const struct luks_keyslot_info *k,
				      const struct luks_limits *lim, char *buf, size_t n)
{
	if (strcmp(k->pbkdf, CRYPT_KDF_PBKDF2) == 0) {
		if (k->iterations <= lim->max_pbkdf2_iterations)
			return NULL;
		snprintf(buf, n,
			 "keyslot %d asks for %" PRIu32
			 " PBKDF2 iterations, more than the limit of %" PRIu32
			 "; if you trust this image, raise the limit (--max-pbkdf-iterations)",
			 k->slot, k->iterations, lim->max_pbkdf2_iterations);
		return buf;
	}
	if (strcmp(k->pbkdf, CRYPT_KDF_ARGON2I) == 0 || strcmp(k->pbkdf, CRYPT_KDF_ARGON2ID) == 0) {
		if (k->memory_kib > lim->max_memory_kib)
			snprintf(
				buf, n,
				"keyslot %d asks for %s with %" PRIu32
				" KiB of memory, more than the limit of %" PRIu64
				" KiB; if you trust this image, raise the limit (--max-pbkdf-memory)",
				k->slot, k->pbkdf, k->memory_kib, lim->max_memory_kib);
		else if (k->iterations > lim->max_argon2_iterations)
			snprintf(buf, n,
				 "keyslot %d asks for %s with a time cost of %" PRIu32
				 ", more than the limit of %" PRIu32
				 "; if you trust this image, raise the limit (--max-pbkdf-time)",
				 k->slot, k->pbkdf, k->iterations, lim->max_argon2_iterations);
		else if (k->parallel > lim->max_parallel)
			snprintf(buf, n,
				 "keyslot %d asks for %s with %" PRIu32
				 " threads, more than the limit of %" PRIu32,
				 k->slot, k->pbkdf, k->parallel, lim->max_parallel);
		else
			return NULL;
		return buf;
	}
	snprintf(buf, n, "keyslot %d uses an unknown PBKDF (%s)", k->slot, k->pbkdf);
	return buf;
}

static bool cipher_supported(const struct luks_info *info, bool *ret_plain64)
{
	if (strcmp(info->cipher, "aes") != 0)
		return false;
	if (strcmp(info->cipher_mode, "xts-plain64") == 0)
		*ret_plain64 = true;
	else if (strcmp(info->cipher_mode, "xts-plain") == 0)
		*ret_plain64 = false;
	else
		return false;
	return info->key_bits == 256 || info->key_bits == 512;
}

int luks_unlock(const char *path, const struct sealvm_secret *passphrase,
		const struct luks_limits *limits, struct luks_volume **ret, struct sealvm_err *err)
{
	_cleanup_crypt_ struct crypt_device *cd = NULL;
	_cleanup_secret_ struct sealvm_secret *key = NULL;
	struct cs_log l = {0};
	struct luks_limits defaults;
	struct luks_volume *v;
	struct luks_info info;
	struct crypt_params_integrity ip;
	struct stat st;
	char why[400], csw[320];
	const char *over = NULL;
	int r, allowed = 0, other_error = 0, other_slot = -1;
	bool plain64 = true;

	if (!path || !passphrase || !ret)
		return sealvm_err_set(err, -EINVAL, NULL, "luks_unlock: missing argument");
	if (!limits) {
		luks_limits_default(&defaults);
		limits = &defaults;
	}

	r = luks_load(path, &cd, &l, &info, &st, err);
	if (r < 0)
		goto out;

	if (!cipher_supported(&info, &plain64)) {
		r = sealvm_err_set(
			err, -EINVAL, "UNSUPPORTED_CIPHER",
			"%s uses %s-%s with a %" PRIu32
			"-bit key: only aes-xts-plain64 and aes-xts-plain with 256- or 512-bit keys are supported",
			path, info.cipher, info.cipher_mode, info.key_bits);
		goto out;
	}
	memset(&ip, 0, sizeof(ip));
	if (info.version == 2 && crypt_get_integrity_info(cd, &ip) == 0 && ip.integrity) {
		r = sealvm_err_set(
			err, -EINVAL, "UNSUPPORTED_CIPHER",
			"%s uses authenticated encryption (integrity %s), which is not supported",
			path, ip.integrity);
		goto out;
	}
	if (info.version == 2 && crypt_reencrypt_status(cd, NULL) != CRYPT_REENCRYPT_NONE) {
		r = sealvm_err_set(
			err, -EINVAL, "LUKS_REENCRYPTION",
			"%s is in the middle of a LUKS2 reencryption; finish it with cryptsetup first",
			path);
		goto out;
	}
	if (info.n_keyslots == 0) {
		r = sealvm_err_set(err, -EKEYREJECTED, "NO_KEYSLOT", "%s has no active keyslot",
				   path);
		goto out;
	}
	/* Every correct passphrase costs one run of the digest's PBKDF2: hold it to the limit too.
	 */
	if (info.digest_iterations == 0) {
		r = sealvm_err_set(err, -EIO, "LUKS_HEADER_UNREADABLE",
				   "cannot read the volume key digest parameters of %s", path);
		goto out;
	}
	if (info.digest_iterations > limits->max_pbkdf2_iterations) {
		r = sealvm_err_set(
			err, -E2BIG, "PBKDF_COST_TOO_HIGH",
			"the volume key digest of %s asks for %" PRIu32
			" PBKDF2 iterations, more than the limit of %" PRIu32
			"; if you trust this image, raise the limit (--max-pbkdf-iterations)",
			path, info.digest_iterations, limits->max_pbkdf2_iterations);
		goto out;
	}
	for (int i = 0; i < info.n_keyslots; i++) {
		const char *o = keyslot_over_limit(&info.keyslots[i], limits, why, sizeof(why));
		if (!o)
			allowed++;
		else if (!over)
			over = o; /* the first refusal is the one we explain */
		if (o)
			log_debug("%s: not trying keyslot %d: over the PBKDF limits", path,
				  info.keyslots[i].slot);
	}
	if (allowed == 0) {
		r = sealvm_err_set(err, -E2BIG, "PBKDF_COST_TOO_HIGH",
				   "no keyslot of %s is within the PBKDF limits: %s", path, over);
		goto out;
	}

	r = sealvm_secret_new(info.key_bits / 8, &key);
	if (r < 0) {
		r = sealvm_err_set(err, r, NULL,
				   "cannot allocate secure memory for the volume key of %s", path);
		goto out;
	}
	r = -EPERM;
	for (int i = 0; i < info.n_keyslots; i++) {
		const struct luks_keyslot_info *k = &info.keyslots[i];
		size_t len = key->cap;

		if (keyslot_over_limit(k, limits, why, sizeof(why)))
			continue;
		l.last_error[0] = 0;
		r = crypt_volume_key_get(cd, k->slot, (char *)key->data, &len,
					 (const char *)passphrase->data, passphrase->len);
		if (r >= 0) {
			if (len != key->cap) {
				r = sealvm_err_set(
					err, -EBADMSG, "LUKS_HEADER_DAMAGED",
					"%s: keyslot %d gave a volume key of %zu bytes, the header says %zu",
					path, k->slot, len, key->cap);
				goto out;
			}
			key->len = len;
			log_debug("%s: keyslot %d opened", path, k->slot);
			break;
		}
		OPENSSL_cleanse(key->data, key->cap);
		if (r != -EPERM && !other_error) {
			other_error = r;
			other_slot = k->slot;
			cs_why(&l, csw, sizeof(csw));
		}
	}
	if (r < 0) {
		if (other_error == -ENOMEM)
			r = sealvm_err_set(err, -ENOMEM, NULL,
					   "not enough memory to try keyslot %d of %s", other_slot,
					   path);
		else if (other_error)
			r = sealvm_err_set(err, -EIO, "KEYSLOT_ERROR",
					   "keyslot %d of %s could not be read (%s)%s", other_slot,
					   path, strerror(-other_error),
					   l.last_error[0] ? csw : "");
		else
			r = sealvm_err_set(err, -EKEYREJECTED, "WRONG_KEY",
					   "the DEK does not open any keyslot of %s", path);
		goto out;
	}

	v = calloc(1, sizeof(*v));
	if (!v) {
		r = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
		goto out;
	}
	v->info = info;
	v->key = TAKE_PTR(key);
	v->iv_plain64 = plain64;
	v->dev = st.st_dev;
	v->ino = st.st_ino;
	*ret = v;
	r = 0;
out:
	cs_log_done(&l);
	return r;
}

const struct luks_info *luks_volume_info(const struct luks_volume *v)
{
	return v ? &v->info : NULL;
}

void luks_volume_free(struct luks_volume *v)
{
	if (!v)
		return;
	sealvm_secret_free(v->key);
	OPENSSL_cleanse(v, sizeof(*v));
	free(v);
}

int luks_header_format(const char *path, const char *what, const struct sealvm_secret *volume_key,
		       const struct sealvm_secret *passphrase, uint32_t iterations,
		       struct sealvm_err *err)
{
	_cleanup_crypt_ struct crypt_device *cd = NULL;
	struct cs_log l = {0};
	char csw[320];
	/*
	 * The passphrase is a random DEK, not something a person chose: key
	 * stretching buys nothing, so a fixed, small PBKDF2 cost and no
	 * benchmark (which would also make the output depend on the machine).
	 * With time_ms 0 and NO_BENCHMARK the volume key digest gets LUKS1's
	 * minimum of 1000 iterations.
	 */
	struct crypt_pbkdf_type pbkdf = {
		.type = CRYPT_KDF_PBKDF2,
		.hash = "sha256",
		.iterations = iterations,
		.flags = CRYPT_PBKDF_NO_BENCHMARK,
	};
	struct crypt_params_luks1 params = {
		.hash = "sha256",
		.data_alignment = LUKS_PAYLOAD_OFFSET_SECTORS,
	};
	int r;

	r = cs_open(path, &cd, &l, err);
	if (r < 0)
		return r;
	r = crypt_set_pbkdf_type(cd, &pbkdf);
	if (r < 0) {
		r = sealvm_err_set(err, -EINVAL, NULL,
				   "PBKDF2 with %" PRIu32
				   " iterations is refused by libcryptsetup%s",
				   iterations, cs_why(&l, csw, sizeof(csw)));
		goto out;
	}
	r = crypt_format(cd, CRYPT_LUKS1, "aes", "xts-plain64", NULL,
			 (const char *)volume_key->data, volume_key->len, &params);
	if (r < 0) {
		r = sealvm_err_set(err, r == -ENOSPC ? -ENOSPC : -EIO, "LUKS_FORMAT_FAILED",
				   "cannot write the LUKS header of %s%s", what,
				   cs_why(&l, csw, sizeof(csw)));
		goto out;
	}
	r = crypt_keyslot_add_by_volume_key(cd, 0, (const char *)volume_key->data, volume_key->len,
					    (const char *)passphrase->data, passphrase->len);
	if (r < 0) {
		r = sealvm_err_set(err, r == -ENOSPC ? -ENOSPC : -EIO, "LUKS_FORMAT_FAILED",
				   "cannot write the keyslot of %s%s", what,
				   cs_why(&l, csw, sizeof(csw)));
		goto out;
	}
	if (crypt_get_data_offset(cd) != LUKS_PAYLOAD_OFFSET_SECTORS) {
		r = sealvm_err_set(err, -EIO, "LUKS_FORMAT_FAILED",
				   "%s: libcryptsetup put the payload at sector %" PRIu64
				   ", not %u",
				   what, crypt_get_data_offset(cd), LUKS_PAYLOAD_OFFSET_SECTORS);
		goto out;
	}
	r = 0;
out:
	cs_log_done(&l);
	return r;
}
