/* SPDX-License-Identifier: Apache-2.0 */
/*
 * luks.h — LUKS images without root, dm-crypt or loop devices.
 *
 * Headers are read and written only through libcryptsetup (never a parser of
 * our own); the payload is encrypted and decrypted here with OpenSSL
 * AES-XTS, streaming, on several threads, in large aligned buffers.
 *
 * What we write: LUKS1, aes-xts-plain64, 512-bit volume key, sha256,
 * payload at sector 4096 (2 MiB), one keyslot whose passphrase is the DEK
 * text exactly as given, PBKDF2-SHA256 with a fixed iteration count.
 * What we read: LUKS1 and LUKS2 (512- or 4096-byte sectors; XTS IVs count
 * 512-byte units in both), aes-xts-plain64 or aes-xts-plain, any keyslot
 * whose PBKDF cost is within struct luks_limits.
 */
#ifndef SEALVM_LUKS_H
#define SEALVM_LUKS_H

#include <stdbool.h>
#include <stdint.h>

#include "sealvm/diskfmt.h"
#include "sealvm/err.h"
#include "sealvm/secret.h"

#define LUKS_PAYLOAD_OFFSET_SECTORS 4096u
#define LUKS_DEFAULT_PBKDF2_ITERATIONS 1000u
#define LUKS_MAX_KEYSLOTS 32

/*
 * The most a header may ask of us to try one keyslot. Headers come from
 * untrusted images; a keyslot beyond any limit is not tried, and if no
 * keyslot is within limits the unlock fails with PBKDF_COST_TOO_HIGH.
 */
struct luks_limits {
	uint64_t max_memory_kib; /* argon2 memory cost; default 1 GiB */
	uint32_t
		max_pbkdf2_iterations; /* keyslots and the key digest; default 20,000,000 (~10 s) */
	uint32_t max_argon2_iterations; /* argon2 time cost; default 32 */
	uint32_t max_parallel;		/* argon2 threads; default 8 */
};

void luks_limits_default(struct luks_limits *ret);

struct luks_keyslot_info {
	int slot;
	char pbkdf[16];	     /* "pbkdf2", "argon2i", "argon2id" */
	char hash[16];	     /* pbkdf2 hash; "" for argon2 */
	uint32_t iterations; /* pbkdf2 iterations or argon2 time cost */
	uint32_t memory_kib;
	uint32_t parallel;
};

struct luks_info {
	int version;	      /* 1 or 2 */
	char cipher[32];      /* "aes" */
	char cipher_mode[32]; /* "xts-plain64" */
	char hash[32];	      /* LUKS1: the header's hash spec (PBKDF2 and AF hash);
			       * LUKS2: the hash of the volume key digest */
	char uuid[40];
	uint32_t key_bits;	 /* volume key size in bits */
	uint32_t sector_size;	 /* 512 (LUKS1, ours) up to 4096 (LUKS2) */
	uint64_t payload_offset; /* bytes */
	uint64_t payload_size;	 /* bytes of payload present in the file */
	uint64_t file_size;
	int n_keyslots; /* active keyslots */
	struct luks_keyslot_info keyslots[LUKS_MAX_KEYSLOTS];
	uint64_t iv_offset;	    /* 512-byte units added to every sector's IV (0 for LUKS) */
	uint32_t digest_iterations; /* PBKDF2 iterations of the volume key digest (0 if unknown) */
};

/*
 * Reads the header of @path (a regular file) through libcryptsetup. Reads
 * only the header and never writes (libcryptsetup's automatic repair of a
 * damaged LUKS2 header copy is disabled). -EINVAL NOT_LUKS when there is no
 * LUKS header, -EINVAL NOT_A_FILE, -EBADMSG TRUNCATED when the file ends
 * inside the header or before the payload offset, or the payload is not whole
 * sectors; -EBADMSG LUKS_HEADER_DAMAGED when a LUKS header is there but
 * libcryptsetup refuses it; -ENOENT etc. from open(2).
 */
int luks_inspect(const char *path, struct luks_info *ret, struct sealvm_err *err);

/* An unlocked volume: the header's geometry and the volume key (in secret memory). */
struct luks_volume;

/*
 * Unlocks @path with @passphrase (used byte for byte). Reads only the header.
 * Keyslots whose PBKDF cost is beyond @limits (NULL: luks_limits_default) are
 * not tried; the volume key digest's PBKDF2 iterations are held to
 * max_pbkdf2_iterations too. On success *@ret is a new volume (free with
 * luks_volume_free) that holds the volume key in secret memory.
 * Errors, each with its reason: the luks_inspect ones, -EINVAL
 * UNSUPPORTED_CIPHER (anything but aes xts-plain64/xts-plain with a 256- or
 * 512-bit key, or with integrity), -EINVAL LUKS_REENCRYPTION (a LUKS2
 * reencryption in progress), -E2BIG PBKDF_COST_TOO_HIGH (no keyslot within
 * the limits, or a digest beyond them), -EKEYREJECTED NO_KEYSLOT (no active
 * keyslot), -EKEYREJECTED WRONG_KEY, -EIO KEYSLOT_ERROR, -ENOMEM.
 */
int luks_unlock(const char *path, const struct sealvm_secret *passphrase,
		const struct luks_limits *limits, struct luks_volume **ret, struct sealvm_err *err);

const struct luks_info *luks_volume_info(const struct luks_volume *v);
void luks_volume_free(struct luks_volume *v);
static inline void luks_volume_freep(struct luks_volume **v)
{
	luks_volume_free(*v);
}
#define _cleanup_luks_volume_ _cleanup_(luks_volume_freep)

/* Progress: called from the writing thread, at most a few times a second, and once at the end. */
typedef void (*luks_progress_fn)(uint64_t done, uint64_t total, void *userdata);

struct luks_encrypt_opts {
	unsigned threads;	    /* AES workers; 0 = online CPUs less one (at least 1); max 16 */
	uint32_t pbkdf2_iterations; /* 0 = LUKS_DEFAULT_PBKDF2_ITERATIONS */
	bool replace;		    /* --force: may replace an existing output */
	luks_progress_fn progress;
	void *progress_userdata;
};

struct luks_result {
	uint64_t virtual_size;	  /* bytes of plain disk */
	uint64_t output_size;	  /* bytes of the output file */
	unsigned char sha256[32]; /* of the whole output file */
	double seconds;
};

/*
 * Encrypts the virtual disk of @src into a new LUKS1 image at @out_path whose
 * keyslot 0 opens with @passphrase. A virtual size that is no multiple of 512
 * is padded with zeros to the next sector. Atomic (OUT.partial, fsync,
 * rename): on failure @out_path is untouched and no partial file remains.
 * @opts may be NULL (defaults). The output is created with mode 0666 minus
 * the umask: it holds only ciphertext. Errors: -EINVAL for a passphrase that
 * is empty or fewer than 1000 PBKDF2 iterations; the atomic-file ones
 * (OUTPUT_EXISTS, PARTIAL_EXISTS, OUTPUT_NOT_WRITABLE), -ENOSPC NO_SPACE,
 * -EFBIG FILE_TOO_LARGE, -EIO (LUKS_FORMAT_FAILED, IO_ERROR), read errors of
 * @src as disk_source_read reports them.
 */
int luks_encrypt_image(struct disk_source *src, const char *out_path,
		       const struct sealvm_secret *passphrase, const struct luks_encrypt_opts *opts,
		       struct luks_result *ret, struct sealvm_err *err);

struct luks_decrypt_opts {
	unsigned threads; /* as in luks_encrypt_opts */
	bool replace;
	luks_progress_fn progress;
	void *progress_userdata;
};

/*
 * Decrypts the payload of the unlocked image @in_path (opened as @vol) into a
 * raw image at @out_path, same atomic and streaming rules. The output is the
 * whole payload (file size minus payload offset), created with mode 0600
 * since it is plaintext. ->sha256 is of the output (the plain raw image).
 * Errors: -EINVAL NOT_SAME_IMAGE when @in_path is not the file @vol was
 * unlocked from, -EBADMSG TRUNCATED, and those of luks_encrypt_image.
 */
int luks_decrypt_image(const struct luks_volume *vol, const char *in_path, const char *out_path,
		       const struct luks_decrypt_opts *opts, struct luks_result *ret,
		       struct sealvm_err *err);

#endif
