// SPDX-License-Identifier: Apache-2.0
/*
 * luks_image.c — whole-image encrypt and decrypt: header, payload, checksum.
 *
 * Encrypt: a fresh random volume key, an atomic output file sized up front,
 * a LUKS1 header written by libcryptsetup into it, a check that the header
 * opens with the passphrase and gives back our key, then the payload through
 * the pipeline while SHA-256 of the whole file (header region first) is
 * computed on the way out. Decrypt: the payload of an unlocked image through
 * the same pipeline into a raw file. Any failure aborts the atomic file, so
 * the output path is either the complete, fsynced result or untouched. This
 * file must never write the volume key or passphrase anywhere but
 * libcryptsetup and the pipeline's cipher contexts.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "sealvm/file.h"
#include "sealvm/log.h"

#include "luks_internal.h"

#define LUKS_PAYLOAD_OFFSET_BYTES ((uint64_t)LUKS_PAYLOAD_OFFSET_SECTORS * LUKS_SECTOR)

static void md_ctx_freep(EVP_MD_CTX **c)
{
	EVP_MD_CTX_free(*c);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * Gives the output its final size before anything is written. Allocating
 * the blocks up front reports a full disk now, not an hour in; where the
 * file system cannot, a sparse size is the fallback.
 */
static int size_output(int fd, uint64_t size, const char *path, struct sealvm_err *err)
{
	int r;

	if (size > (uint64_t)INT64_MAX)
		return sealvm_err_set(err, -EFBIG, "FILE_TOO_LARGE",
				      "%s would be too large (%" PRIu64 " bytes)", path, size);
	if (size == 0)
		return 0;
	if (fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	r = negative_errno();
	if (r != -EOPNOTSUPP && r != -ENOSYS)
		return luks_write_error(err, r, path);
	if (ftruncate(fd, (off_t)size) < 0)
		return luks_write_error(err, negative_errno(), path);
	return 0;
}

static EVP_MD_CTX *sha256_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		return NULL;
	}
	return c;
}

/* Feeds the first @len bytes of @fd (the header libcryptsetup wrote) to @sha. */
static int hash_prefix(int fd, uint64_t len, EVP_MD_CTX *sha, const char *path,
		       struct sealvm_err *err)
{
	_cleanup_free_ unsigned char *buf = malloc(65536);
	uint64_t off = 0;

	if (!buf)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	while (off < len) {
		size_t n = (size_t)MIN((uint64_t)65536, len - off);
		ssize_t got = sealvm_pread_all(fd, buf, n, off);
		if (got < 0)
			return sealvm_err_set_errno(err, (int)got, "IO_ERROR",
						    "cannot read back %s", path);
		if ((size_t)got != n)
			return sealvm_err_set(err, -EIO, "IO_ERROR",
					      "%s is shorter than its header", path);
		if (EVP_DigestUpdate(sha, buf, n) != 1)
			return sealvm_err_set(err, -EIO, NULL, "SHA-256 failed");
		off += n;
	}
	return 0;
}

struct src_reader {
	struct disk_source *src;
	uint64_t virtual_size;
};

/* The last chunk may pass the virtual size by less than a sector: zeros. */
static int src_read(void *userdata, uint64_t off, void *buf, size_t len, struct sealvm_err *err)
{
	struct src_reader *s = userdata;
	size_t n = off < s->virtual_size ? (size_t)MIN((uint64_t)len, s->virtual_size - off) : 0;
	int r;

	if (n > 0) {
		r = disk_source_read(s->src, off, buf, n, err);
		if (r < 0)
			return r;
	}
	if (n < len)
		memset((unsigned char *)buf + n, 0, len - n);
	return 0;
}

/* A volume key for AES-XTS: 64 random bytes whose halves differ (OpenSSL insists). */
static int new_volume_key(struct sealvm_secret **ret)
{
	_cleanup_secret_ struct sealvm_secret *k = NULL;
	int r = sealvm_secret_new(64, &k);

	if (r < 0)
		return r;
	do {
		if (RAND_priv_bytes(k->data, 64) != 1)
			return -EIO;
	} while (CRYPTO_memcmp(k->data, k->data + 32, 32) == 0);
	k->len = 64;
	*ret = TAKE_PTR(k);
	return 0;
}

/* Opens what we just wrote the way a reader would, and checks it gives our key back. */
static int check_header(const char *tmp_path, const char *what,
			const struct sealvm_secret *volume_key,
			const struct sealvm_secret *passphrase, uint32_t iterations,
			struct sealvm_err *err)
{
	_cleanup_luks_volume_ struct luks_volume *v = NULL;
	struct sealvm_err e = SEALVM_ERR_INIT;
	struct luks_limits lim;
	int r;

	luks_limits_default(&lim);
	lim.max_pbkdf2_iterations = MAX(lim.max_pbkdf2_iterations, iterations);
	r = luks_unlock(tmp_path, passphrase, &lim, &v, &e);
	if (r < 0)
		return sealvm_err_set(err, r, "LUKS_FORMAT_FAILED",
				      "the LUKS header written for %s does not open: %s", what,
				      e.message);
	if (v->info.version != 1 || v->info.payload_offset != LUKS_PAYLOAD_OFFSET_BYTES ||
	    !sealvm_secret_equal(v->key, volume_key))
		return sealvm_err_set(
			err, -EIO, "LUKS_FORMAT_FAILED",
			"the LUKS header written for %s does not hold the expected volume key",
			what);
	return 0;
}

int luks_encrypt_image(struct disk_source *src, const char *out_path,
		       const struct sealvm_secret *passphrase, const struct luks_encrypt_opts *opts,
		       struct luks_result *ret, struct sealvm_err *err)
{
	static const struct luks_encrypt_opts no_opts;
	_cleanup_atomic_ struct sealvm_atomic_file *af = NULL;
	_cleanup_secret_ struct sealvm_secret *vk = NULL;
	_cleanup_(md_ctx_freep) EVP_MD_CTX *sha = NULL;
	const struct disk_info *di;
	struct luks_result res = {0};
	struct src_reader reader;
	struct timespec t0;
	uint64_t payload;
	uint32_t iterations;
	unsigned int md_len = 0;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!opts)
		opts = &no_opts;
	if (!src || !out_path || !passphrase)
		return sealvm_err_set(err, -EINVAL, NULL, "luks_encrypt_image: missing argument");
	if (passphrase->len == 0)
		return sealvm_err_set(err, -EINVAL, "DEK_EMPTY", "the DEK is empty");
	iterations =
		opts->pbkdf2_iterations ? opts->pbkdf2_iterations : LUKS_DEFAULT_PBKDF2_ITERATIONS;
	if (iterations < 1000)
		return sealvm_err_set(err, -EINVAL, NULL,
				      "%" PRIu32
				      " PBKDF2 iterations is below LUKS1's minimum of 1000",
				      iterations);

	di = disk_source_info(src);
	if (!di)
		return sealvm_err_set(err, -EINVAL, NULL, "luks_encrypt_image: no disk source");
	if (di->virtual_size > (uint64_t)INT64_MAX - LUKS_PAYLOAD_OFFSET_BYTES - LUKS_SECTOR)
		return sealvm_err_set(err, -EFBIG, "FILE_TOO_LARGE",
				      "%s would be too large: the disk is %" PRIu64 " bytes",
				      out_path, di->virtual_size);
	payload = ALIGN_UP(di->virtual_size, (uint64_t)LUKS_SECTOR);
	res.virtual_size = di->virtual_size;
	res.output_size = LUKS_PAYLOAD_OFFSET_BYTES + payload;

	r = new_volume_key(&vk);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot generate a volume key");

	r = sealvm_atomic_open(out_path, opts->replace ? SEALVM_ATOMIC_REPLACE : 0, 0666, &af, err);
	if (r < 0)
		return r;
	r = size_output(af->fd, res.output_size, out_path, err);
	if (r < 0)
		return r;
	r = luks_header_format(af->tmp_path, out_path, vk, passphrase, iterations, err);
	if (r < 0)
		return r;
	r = check_header(af->tmp_path, out_path, vk, passphrase, iterations, err);
	if (r < 0)
		return r;

	sha = sha256_new();
	if (!sha)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot set up SHA-256");
	r = hash_prefix(af->fd, LUKS_PAYLOAD_OFFSET_BYTES, sha, out_path, err);
	if (r < 0)
		return r;

	reader = (struct src_reader){.src = src, .virtual_size = di->virtual_size};
	r = luks_pipeline_run(
		&(struct luks_pipeline_params){
			.total = payload,
			.read = src_read,
			.read_userdata = &reader,
			.out_fd = af->fd,
			.out_offset = LUKS_PAYLOAD_OFFSET_BYTES,
			.out_name = out_path,
			.key = vk,
			.encrypt = true,
			.sector_size = LUKS_SECTOR,
			.iv_offset = 0,
			.plain64 = true,
			.threads = opts->threads,
			.sha = sha,
			.progress = opts->progress,
			.progress_userdata = opts->progress_userdata,
		},
		err);
	if (r < 0)
		return r;
	if (EVP_DigestFinal_ex(sha, res.sha256, &md_len) != 1 || md_len != sizeof(res.sha256))
		return sealvm_err_set(err, -EIO, NULL, "SHA-256 failed");

	r = sealvm_atomic_commit(TAKE_PTR(af), err);
	if (r < 0)
		return r;
	res.seconds = seconds_since(&t0);
	if (ret)
		*ret = res;
	return 0;
}

struct fd_reader {
	int fd;
	uint64_t base;
	const char *path;
};

static int fd_read(void *userdata, uint64_t off, void *buf, size_t len, struct sealvm_err *err)
{
	struct fd_reader *f = userdata;
	ssize_t n = sealvm_pread_all(f->fd, buf, len, f->base + off);

	if (n < 0)
		return sealvm_err_set_errno(err, (int)n, "IO_ERROR", "cannot read %s", f->path);
	if ((size_t)n != len)
		return sealvm_err_set(err, -EBADMSG, "TRUNCATED",
				      "%s is truncated: it shrank to %" PRIu64
				      " bytes while being read",
				      f->path, f->base + off + (uint64_t)n);
	return 0;
}

int luks_decrypt_image(const struct luks_volume *vol, const char *in_path, const char *out_path,
		       const struct luks_decrypt_opts *opts, struct luks_result *ret,
		       struct sealvm_err *err)
{
	static const struct luks_decrypt_opts no_opts;
	_cleanup_atomic_ struct sealvm_atomic_file *af = NULL;
	_cleanup_(md_ctx_freep) EVP_MD_CTX *sha = NULL;
	_cleanup_close_ int fd = -1;
	const struct luks_info *info;
	struct luks_result res = {0};
	struct fd_reader reader;
	struct timespec t0;
	struct stat st;
	uint64_t payload;
	unsigned int md_len = 0;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!opts)
		opts = &no_opts;
	if (!vol || !vol->key || !in_path || !out_path)
		return sealvm_err_set(err, -EINVAL, NULL, "luks_decrypt_image: missing argument");
	info = &vol->info;

	fd = open(in_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return sealvm_err_set_errno(err, negative_errno(), NULL, "cannot open %s", in_path);
	if (fstat(fd, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), NULL, "cannot stat %s", in_path);
	if (st.st_dev != vol->dev || st.st_ino != vol->ino)
		return sealvm_err_set(err, -EINVAL, "NOT_SAME_IMAGE",
				      "%s is not the image that was unlocked", in_path);
	if ((uint64_t)st.st_size < info->payload_offset)
		return sealvm_err_set(err, -EBADMSG, "TRUNCATED",
				      "%s is truncated: header says payload starts at byte %" PRIu64
				      ", file ends at %" PRIu64,
				      in_path, info->payload_offset, (uint64_t)st.st_size);
	payload = (uint64_t)st.st_size - info->payload_offset;
	if (payload % info->sector_size)
		return sealvm_err_set(err, -EBADMSG, "TRUNCATED",
				      "%s is truncated: its payload of %" PRIu64
				      " bytes is not a whole number of %u-byte sectors",
				      in_path, payload, info->sector_size);
	(void)posix_fadvise(fd, (off_t)info->payload_offset, (off_t)payload, POSIX_FADV_SEQUENTIAL);
	res.virtual_size = payload;
	res.output_size = payload;

	/* Plaintext: readable by the owner only, whatever the umask. */
	r = sealvm_atomic_open(out_path, opts->replace ? SEALVM_ATOMIC_REPLACE : 0, 0600, &af, err);
	if (r < 0)
		return r;
	r = size_output(af->fd, payload, out_path, err);
	if (r < 0)
		return r;
	sha = sha256_new();
	if (!sha)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot set up SHA-256");

	reader = (struct fd_reader){.fd = fd, .base = info->payload_offset, .path = in_path};
	r = luks_pipeline_run(
		&(struct luks_pipeline_params){
			.total = payload,
			.read = fd_read,
			.read_userdata = &reader,
			.out_fd = af->fd,
			.out_offset = 0,
			.out_name = out_path,
			.key = vol->key,
			.encrypt = false,
			.sector_size = info->sector_size,
			.iv_offset = info->iv_offset,
			.plain64 = vol->iv_plain64,
			.threads = opts->threads,
			.sha = sha,
			.progress = opts->progress,
			.progress_userdata = opts->progress_userdata,
		},
		err);
	if (r < 0)
		return r;
	if (EVP_DigestFinal_ex(sha, res.sha256, &md_len) != 1 || md_len != sizeof(res.sha256))
		return sealvm_err_set(err, -EIO, NULL, "SHA-256 failed");

	r = sealvm_atomic_commit(TAKE_PTR(af), err);
	if (r < 0)
		return r;
	res.seconds = seconds_since(&t0);
	if (ret)
		*ret = res;
	return 0;
}
