/* SPDX-License-Identifier: Apache-2.0 */
/*
 * luks_internal.h — what the files of lib/luks share and nobody else sees.
 *
 * luks_header.c talks to libcryptsetup (format, load, keyslots); luks_xts.c
 * turns sectors into ciphertext and back with OpenSSL; luks_pipeline.c moves
 * a stream of chunks from a reader through worker threads to an in-order
 * writer and hasher; luks_image.c ties them into encrypt and decrypt.
 */
#ifndef SEALVM_LUKS_INTERNAL_H
#define SEALVM_LUKS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "sealvm/luks.h"

#define LUKS_SECTOR 512u
/* The unit of the pipeline: big enough to amortise a syscall and a lock, small enough to keep
 * memory bounded. */
#define LUKS_CHUNK_SIZE ((size_t)4 << 20)
/* Workers beyond this add nothing at I/O speed and would only grow the ring. */
#define LUKS_MAX_THREADS 16u
/* Ring slots of LUKS_CHUNK_SIZE: at most 64 MiB of buffers, whatever the CPU count. */
#define LUKS_MAX_SLOTS 16u

struct luks_volume {
	struct luks_info info;
	struct sealvm_secret *key; /* the volume key, info.key_bits / 8 bytes */
	bool iv_plain64;	   /* false: "plain", 32-bit sector numbers */
	dev_t dev;		   /* the file that was unlocked, to recognise it again */
	ino_t ino;
};

/*
 * Writes a LUKS1 header (aes-xts-plain64, sha256, payload at
 * LUKS_PAYLOAD_OFFSET_SECTORS) with @volume_key into the file @path, which
 * must already be at least as long as the payload offset, and adds keyslot 0
 * opened by @passphrase with PBKDF2-SHA256 at @iterations. @what names the
 * output for messages.
 */
int luks_header_format(const char *path, const char *what, const struct sealvm_secret *volume_key,
		       const struct sealvm_secret *passphrase, uint32_t iterations,
		       struct sealvm_err *err);

/*
 * One thread's AES-XTS state. XTS is computed here from two AES-ECB contexts
 * (data key K1, tweak key K2) over whole batches of sectors, rather than one
 * EVP XTS call per sector: re-initialising an EVP context for every 512-byte
 * sector costs more than encrypting it. Tweaks are derived by multiplication
 * by alpha in GF(2^128) as IEEE 1619 defines, and kept in @tweaks, which is
 * wiped when done.
 */
#define LUKS_XTS_BATCH (64 * 1024)
struct luks_xts {
	EVP_CIPHER_CTX *data_ctx;  /* AES-ECB with K1, encrypting or decrypting */
	EVP_CIPHER_CTX *tweak_ctx; /* AES-ECB with K2, always encrypting */
	unsigned char *tweaks;	   /* LUKS_XTS_BATCH bytes of tweak values */
	uint32_t sector_size;
	uint64_t iv_offset;
	bool plain64;
};

/*
 * Keys @x for @encrypt with a 32- or 64-byte XTS key. -EINVAL on a key of
 * another size, or with two equal halves for encryption (IEEE 1619 forbids
 * them; OpenSSL refuses them too), -ENOMEM.
 */
int luks_xts_init(struct luks_xts *x, const unsigned char *key, size_t key_len, bool encrypt,
		  uint32_t sector_size, uint64_t iv_offset, bool plain64);
/*
 * Encrypts or decrypts @len bytes at @buf in place; @byte_off is where @buf
 * starts within the payload (a multiple of the sector size, as is @len).
 */
int luks_xts_run(struct luks_xts *x, uint64_t byte_off, unsigned char *buf, size_t len);
void luks_xts_done(struct luks_xts *x);

/* Fills @buf with stream bytes [@off, @off + @len); 0 or a negative errno with @err set. */
typedef int (*luks_read_fn)(void *userdata, uint64_t off, void *buf, size_t len,
			    struct sealvm_err *err);

struct luks_pipeline_params {
	uint64_t total; /* bytes of the stream: a multiple of sector_size */
	luks_read_fn read;
	void *read_userdata;

	int out_fd;
	uint64_t out_offset;  /* where the stream starts in the output file */
	const char *out_name; /* for messages */

	const struct sealvm_secret *key;
	bool encrypt;
	uint32_t sector_size;
	uint64_t iv_offset;
	bool plain64;

	unsigned threads; /* 0 = online CPUs */
	EVP_MD_CTX *sha;  /* fed the output stream in order (already holds what precedes it) */

	luks_progress_fn progress;
	void *progress_userdata;
};

/* Runs the stream through. The first error stops every thread and is the one returned. */
int luks_pipeline_run(const struct luks_pipeline_params *p, struct sealvm_err *err);

/* Turns a failed write/ftruncate/fallocate on @path into NO_SPACE, FILE_TOO_LARGE or IO_ERROR. */
int luks_write_error(struct sealvm_err *err, int r, const char *path);

#endif
