// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/diskfmt: raw, VHD (fixed, dynamic) and qcow2 (v2, v3,
 * compressed) readers against images made by qemu-img at run time, and the
 * refusals, each checked by return code and reason.
 *
 * Fixtures live in a mkdtemp directory: one raw disk (boot signature, random
 * data, zero runs of several sizes, compressible text, a size that ends in a
 * partial VHD block and a partial qcow2 cluster), converted by qemu-img to
 * each format; damaged variants are patched copies (checksums fixed where the
 * test means another check to fire). Without qemu-img the tests that need it
 * skip and say so, and the binary exits 77 (skipped), never a silent pass.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sealvm/diskfmt.h"
#include "sealvm/file.h"

extern char **environ;

#define RAW_SIZE ((5u << 20) + 3 * 512) /* partial 2 MiB VHD block, partial 64 KiB cluster */
#define MIB (1u << 20)

static char dir[64];
static bool have_qemu_img, have_qemu_io;
static unsigned char *raw_data; /* content of "src.raw" */

/* ---- helpers ---------------------------------------------------------------------------- */

static char *p(const char *name)
{
	static char buf[8][128];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

/* Runs argv (NULL-terminated, argv[0] looked up on PATH) with stdout silenced; exit status. */
static int run(const char *const *argv, bool quiet_stderr)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int status, r;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (quiet_stderr)
		posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		return -1;
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define RUN(...)                                                                                   \
	do {                                                                                       \
		const char *const argv_[] = {__VA_ARGS__, NULL};                                   \
		assert_int_equal(run(argv_, false), 0);                                            \
	} while (0)

#define REQUIRE_QEMU_IMG()                                                                         \
	do {                                                                                       \
		if (!have_qemu_img) {                                                              \
			print_message("skipped: qemu-img not found (install qemu-utils)\n");       \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(sealvm_write_all(fd, data, len), 0);
	assert_int_equal(close(fd), 0);
}

static unsigned char *read_file(const char *path, size_t *ret_len)
{
	struct stat st;
	unsigned char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(sealvm_pread_all(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*ret_len = (size_t)st.st_size;
	return buf;
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	unsigned char *buf = read_file(from, &len);

	write_file(to, buf, len);
	free(buf);
}

static void patch(const char *path, uint64_t off, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(sealvm_pwrite_all(fd, data, len, off), 0);
	close(fd);
}

static void peek(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(sealvm_pread_all(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static uint32_t be32(const unsigned char *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static uint64_t be64(const unsigned char *b)
{
	return (uint64_t)be32(b) << 32 | be32(b + 4);
}

static void put_be32(unsigned char *b, uint32_t v)
{
	b[0] = (unsigned char)(v >> 24);
	b[1] = (unsigned char)(v >> 16);
	b[2] = (unsigned char)(v >> 8);
	b[3] = (unsigned char)v;
}

static void put_be64(unsigned char *b, uint64_t v)
{
	put_be32(b, (uint32_t)(v >> 32));
	put_be32(b + 4, (uint32_t)v);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Opens @path as @want, expecting success. */
static struct disk_source *open_ok(const char *path, enum disk_format want)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src = NULL;
	int r = disk_source_open(path, want, &src, &err);

	if (r < 0)
		print_error("open %s: %d %s: %s\n", path, r, err.reason, err.message);
	assert_int_equal(r, 0);
	assert_non_null(src);
	return src;
}

/* Expects opening @path as @want to fail with @code and @reason; returns the message. */
static const char *open_fails(const char *path, enum disk_format want, int code, const char *reason)
{
	static struct sealvm_err err;
	struct disk_source *src = NULL;

	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(disk_source_open(path, want, &src, &err), code);
	assert_null(src);
	assert_int_equal(err.code, code);
	assert_string_equal(err.reason, reason);
	assert_non_null(strstr(err.message, path));
	return err.message;
}

static void probe_ok(const char *path, struct disk_info *info)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = disk_probe(path, info, &err);

	if (r < 0)
		print_error("probe %s: %d %s: %s\n", path, r, err.reason, err.message);
	assert_int_equal(r, 0);
}

static void probe_fails(const char *path, int code, const char *reason)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_info info;

	assert_int_equal(disk_probe(path, &info, &err), code);
	assert_string_equal(err.reason, reason);
}

/*
 * Reads the whole virtual disk of @path at several chunk sizes and at random
 * unaligned ranges, comparing with @expect (@size bytes).
 */
static void assert_reads_n(const char *path, enum disk_format want, const unsigned char *expect,
			   uint64_t size)
{
	static const size_t chunks[] = {512, 4096, 65536 + 512, 77777, MIB, 8 * MIB};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src = open_ok(path, want);
	unsigned char *buf = malloc(8 * MIB);

	assert_non_null(buf);
	assert_int_equal(disk_source_info(src)->virtual_size, size);

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		for (uint64_t off = 0; off < size;) {
			size_t n = (size_t)(size - off < chunks[c] ? size - off : chunks[c]);
			int r = disk_source_read(src, off, buf, n, &err);

			if (r < 0)
				print_error("%s: %s: %s\n", path, err.reason, err.message);
			assert_int_equal(r, 0);
			if (memcmp(buf, expect + off, n) != 0) {
				print_error("%s: chunk %zu at %" PRIu64 " differs\n", path,
					    chunks[c], off);
				fail();
			}
			off += n;
		}
	}
	for (int i = 0; i < 200; i++) {
		size_t n = (size_t)(rng() % (size < 3 * MIB ? size : 3 * MIB)) + 1;
		uint64_t off = rng() % (size - n + 1);

		assert_int_equal(disk_source_read(src, off, buf, n, &err), 0);
		if (memcmp(buf, expect + off, n) != 0) {
			print_error("%s: %zu bytes at %" PRIu64 " differ\n", path, n, off);
			fail();
		}
	}
	free(buf);
	disk_source_free(src);
}

static void assert_reads(const char *path, enum disk_format want, const unsigned char *expect)
{
	assert_reads_n(path, want, expect, RAW_SIZE);
}

/* VHD checksum: one's complement of the byte sum, the checksum field zeroed. */
static void vhd_fix_checksum(unsigned char *b, size_t len, size_t at)
{
	uint32_t sum = 0;

	memset(b + at, 0, 4);
	for (size_t i = 0; i < len; i++)
		sum += b[i];
	put_be32(b + at, ~sum);
}

/* Rewrites the VHD footer of @path (both copies for a dynamic disk) through @edit. */
static void vhd_edit_footer(const char *path, void (*edit)(unsigned char *f))
{
	unsigned char f[512];
	uint64_t size = file_size(path);

	peek(path, size - 512, f, sizeof(f));
	edit(f);
	vhd_fix_checksum(f, sizeof(f), 64);
	patch(path, size - 512, f, sizeof(f));
	if (be32(f + 60) != 2)
		patch(path, 0, f, sizeof(f));
}

/* ---- fixtures ------------------------------------------------------------------------- */

static void fill_random(unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(rng() >> 32);
}

static void make_raw(void)
{
	static const char text[] = "sealvm diskfmt test pattern: compressible text, repeated. ";
	unsigned char *b = calloc(1, RAW_SIZE);

	assert_non_null(b);
	fill_random(b, MIB);
	b[510] = 0x55;
	b[511] = 0xaa;
	for (size_t i = MIB; i < MIB + MIB / 2; i++) /* compressible */
		b[i] = (unsigned char)text[i % (sizeof(text) - 1)];
	fill_random(b + MIB + MIB / 2 + 4096, MIB / 2 - 4096); /* 4 KiB hole before it */
	/* [2 MiB, 4 MiB) stays zero: a whole VHD block and whole qcow2 clusters. */
	fill_random(b + 4 * MIB, RAW_SIZE - 4 * MIB);
	for (size_t s = 4 * MIB / 512; s < RAW_SIZE / 512; s += 37) /* lone zero sectors */
		memset(b + s * 512, 0, 512);
	for (size_t i = 4 * MIB + MIB / 2; i < 4 * MIB + MIB / 2 + 200000; i++)
		b[i] = (unsigned char)text[i % (sizeof(text) - 1)];
	raw_data = b;
	write_file(p("src.raw"), b, RAW_SIZE);
}

static int setup(void **state)
{
	const char *const version[] = {"qemu-img", "--version", NULL};
	const char *const io_version[] = {"qemu-io", "--version", NULL};

	strcpy(dir, "/tmp/sealvm-diskfmt-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	make_raw();
	have_qemu_img = run(version, true) == 0;
	have_qemu_io = run(io_version, true) == 0;
	if (!have_qemu_img) {
		print_message("qemu-img not found: tests that need images made by it will skip\n");
		return 0;
	}

	const char *const convs[][8] = {
		{"-O", "vpc", "-o", "subformat=fixed,force_size=on", "fixed.vhd"},
		{"-O", "vpc", "-o", "subformat=dynamic,force_size=on", "dynamic.vhd"},
		{"-O", "qcow2", "-o", "compat=0.10", "v2.qcow2"},
		{"-O", "qcow2", "v3.qcow2"},
		{"-O", "qcow2", "-c", "compressed.qcow2"},
		{"-O", "qcow2", "-c", "-o", "cluster_size=4096", "compressed4k.qcow2"},
		{"-O", "qcow2", "-o", "cluster_size=512", "small.qcow2"},
		{"-O", "qcow2", "-o", "cluster_size=2M", "big.qcow2"},
	};
	for (size_t i = 0; i < sizeof(convs) / sizeof(convs[0]); i++) {
		const char *argv[16] = {"qemu-img", "convert", "-f", "raw"};
		size_t n = 4, j;

		for (j = 0; convs[i][j + 1]; j++)
			argv[n++] = convs[i][j];
		argv[n++] = p("src.raw");
		argv[n++] = p(convs[i][j]);
		if (run(argv, false) != 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	free(raw_data);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* ---- names, detection, raw ---------------------------------------------------------- */

static void test_format_names(void **state)
{
	enum disk_format f;

	assert_int_equal(disk_format_from_name("auto", &f), 0);
	assert_int_equal(f, DISK_FORMAT_AUTO);
	assert_int_equal(disk_format_from_name("raw", &f), 0);
	assert_int_equal(f, DISK_FORMAT_RAW);
	assert_int_equal(disk_format_from_name("vhd", &f), 0);
	assert_int_equal(f, DISK_FORMAT_VHD);
	assert_int_equal(disk_format_from_name("qcow2", &f), 0);
	assert_int_equal(f, DISK_FORMAT_QCOW2);
	assert_int_equal(disk_format_from_name("luks", &f), -EINVAL);
	assert_int_equal(disk_format_from_name("vpc", &f), -EINVAL);
	assert_int_equal(disk_format_from_name("", &f), -EINVAL);
	assert_string_equal(disk_format_name(DISK_FORMAT_LUKS), "luks");
	assert_string_equal(disk_format_name(DISK_FORMAT_QCOW2), "qcow2");
}

static void test_raw(void **state)
{
	struct disk_info info;

	probe_ok(p("src.raw"), &info);
	assert_int_equal(info.format, DISK_FORMAT_RAW);
	assert_int_equal(info.virtual_size, RAW_SIZE);
	assert_int_equal(info.file_size, RAW_SIZE);
	assert_reads(p("src.raw"), DISK_FORMAT_AUTO, raw_data);
	assert_reads(p("src.raw"), DISK_FORMAT_RAW, raw_data);
}

static void test_raw_without_signature(void **state)
{
	static const unsigned char zero[2];
	struct disk_info info;
	const char *msg;

	copy_file(p("src.raw"), p("nosig.raw"));
	patch(p("nosig.raw"), 510, zero, 2);
	probe_ok(p("nosig.raw"), &info);
	assert_int_equal(info.format, DISK_FORMAT_RAW);
	msg = open_fails(p("nosig.raw"), DISK_FORMAT_AUTO, -EINVAL, "NOT_A_DISK_IMAGE");
	assert_non_null(strstr(msg, "--in-format raw"));
	disk_source_free(open_ok(p("nosig.raw"), DISK_FORMAT_RAW));
}

static void test_empty_file(void **state)
{
	write_file(p("empty.img"), "", 0);
	probe_fails(p("empty.img"), -EINVAL, "NOT_A_DISK_IMAGE");
	open_fails(p("empty.img"), DISK_FORMAT_AUTO, -EINVAL, "NOT_A_DISK_IMAGE");
	open_fails(p("empty.img"), DISK_FORMAT_RAW, -EINVAL, "NOT_A_DISK_IMAGE");
}

static void test_text_file(void **state)
{
	static const char text[] = "this is not a disk image\n";
	const char *msg;

	write_file(p("notes.txt"), text, sizeof(text) - 1);
	probe_fails(p("notes.txt"), -EINVAL, "NOT_A_DISK_IMAGE");
	msg = open_fails(p("notes.txt"), DISK_FORMAT_RAW, -EINVAL, "NOT_A_DISK_IMAGE");
	assert_non_null(strstr(msg, "size 25 is not a multiple of 512 bytes"));
	open_fails(p("notes.txt"), DISK_FORMAT_AUTO, -EINVAL, "NOT_A_DISK_IMAGE");
}

static void test_not_a_file(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_info info;

	open_fails(dir, DISK_FORMAT_AUTO, -EINVAL, "NOT_A_DISK_IMAGE");
	assert_int_equal(disk_probe(p("does-not-exist"), &info, &err), -ENOENT);
}

static void test_luks_detected(void **state)
{
	unsigned char b[4096] = {'L', 'U', 'K', 'S', 0xba, 0xbe, 0, 1};
	struct disk_info info;

	write_file(p("fake.luks"), b, sizeof(b));
	probe_ok(p("fake.luks"), &info);
	assert_int_equal(info.format, DISK_FORMAT_LUKS);
	assert_int_equal(info.file_size, sizeof(b));
	open_fails(p("fake.luks"), DISK_FORMAT_AUTO, -EINVAL, "ALREADY_LUKS");
	open_fails(p("fake.luks"), DISK_FORMAT_RAW, -EINVAL, "ALREADY_LUKS");
}

static void test_format_mismatch(void **state)
{
	const char *msg;

	REQUIRE_QEMU_IMG();
	msg = open_fails(p("v3.qcow2"), DISK_FORMAT_VHD, -EINVAL, "FORMAT_MISMATCH");
	assert_non_null(strstr(msg, "qcow2"));
	assert_non_null(strstr(msg, "--in-format vhd"));
	msg = open_fails(p("src.raw"), DISK_FORMAT_QCOW2, -EINVAL, "FORMAT_MISMATCH");
	assert_non_null(strstr(msg, "raw"));
	assert_non_null(strstr(msg, "--in-format qcow2"));
	open_fails(p("dynamic.vhd"), DISK_FORMAT_RAW, -EINVAL, "FORMAT_MISMATCH");
	open_fails(p("fixed.vhd"), DISK_FORMAT_QCOW2, -EINVAL, "FORMAT_MISMATCH");
}

static void test_read_bounds(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src = open_ok(p("src.raw"), DISK_FORMAT_RAW);
	unsigned char b[1024];

	assert_int_equal(disk_source_read(src, RAW_SIZE - 512, b, 512, &err), 0);
	assert_int_equal(disk_source_read(src, RAW_SIZE, b, 0, &err), 0);
	assert_int_equal(disk_source_read(src, RAW_SIZE - 512, b, 513, &err), -EINVAL);
	assert_string_equal(err.reason, "READ_OUT_OF_RANGE");
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(disk_source_read(src, UINT64_MAX - 10, b, 100, &err), -EINVAL);
	disk_source_free(src);
}

static void test_raw_shrinks_after_open(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src;
	unsigned char b[512];

	copy_file(p("src.raw"), p("shrink.raw"));
	src = open_ok(p("shrink.raw"), DISK_FORMAT_AUTO);
	assert_int_equal(truncate(p("shrink.raw"), MIB), 0);
	assert_int_equal(disk_source_read(src, 2 * MIB, b, sizeof(b), &err), -EIO);
	assert_string_equal(err.reason, "SHORT_READ");
	disk_source_free(src);
}

/* ---- VHD ------------------------------------------------------------------------------ */

static void test_vhd_fixed(void **state)
{
	struct disk_info info;

	REQUIRE_QEMU_IMG();
	probe_ok(p("fixed.vhd"), &info);
	assert_int_equal(info.format, DISK_FORMAT_VHD);
	assert_int_equal(info.vhd_type, VHD_TYPE_FIXED);
	assert_true(info.vhd_footer_checksum_ok);
	assert_int_equal(info.virtual_size, RAW_SIZE);
	assert_string_equal(info.vhd_creator_app, "qem2");
	assert_reads(p("fixed.vhd"), DISK_FORMAT_AUTO, raw_data);
	assert_reads(p("fixed.vhd"), DISK_FORMAT_VHD, raw_data);
}

/* Virtual PC before 2004 wrote 511-byte footers: the last (reserved, zero) byte is missing. */
static void test_vhd_fixed_511_byte_footer(void **state)
{
	REQUIRE_QEMU_IMG();
	copy_file(p("fixed.vhd"), p("fixed511.vhd"));
	assert_int_equal(truncate(p("fixed511.vhd"), RAW_SIZE + 511), 0);
	assert_reads(p("fixed511.vhd"), DISK_FORMAT_AUTO, raw_data);
}

static void test_vhd_fixed_truncated(void **state)
{
	unsigned char f[512];

	REQUIRE_QEMU_IMG();
	/* Drop the last data sector but keep the footer: it now claims more than there is. */
	copy_file(p("fixed.vhd"), p("fixedshort.vhd"));
	peek(p("fixedshort.vhd"), RAW_SIZE, f, sizeof(f));
	patch(p("fixedshort.vhd"), RAW_SIZE - 512, f, sizeof(f));
	assert_int_equal(truncate(p("fixedshort.vhd"), RAW_SIZE), 0);
	open_fails(p("fixedshort.vhd"), DISK_FORMAT_AUTO, -EBADMSG, "VHD_TRUNCATED");
}

static void test_vhd_dynamic(void **state)
{
	struct disk_info info;

	REQUIRE_QEMU_IMG();
	probe_ok(p("dynamic.vhd"), &info);
	assert_int_equal(info.format, DISK_FORMAT_VHD);
	assert_int_equal(info.vhd_type, VHD_TYPE_DYNAMIC);
	assert_true(info.vhd_footer_checksum_ok);
	assert_true(info.vhd_header_checksum_ok);
	assert_int_equal(info.vhd_block_size, 2 * MIB);
	assert_true(info.vhd_max_table_entries >= 3);
	assert_int_equal(info.virtual_size, RAW_SIZE);
	/* The all-zero block [2 MiB, 4 MiB) is left unallocated by the converter. */
	assert_true(file_size(p("dynamic.vhd")) < RAW_SIZE);
	assert_reads(p("dynamic.vhd"), DISK_FORMAT_AUTO, raw_data);
	assert_reads(p("dynamic.vhd"), DISK_FORMAT_VHD, raw_data);
}

/* Locates the dynamic header and the BAT of @path: returns the BAT offset. */
static uint64_t vhd_bat_offset(const char *path, uint64_t *ret_header_off)
{
	unsigned char f[512], h[1024];

	peek(path, file_size(path) - 512, f, sizeof(f));
	*ret_header_off = be64(f + 16);
	peek(path, *ret_header_off, h, sizeof(h));
	assert_memory_equal(h, "cxsparse", 8);
	return be64(h + 16);
}

static void test_vhd_dynamic_sector_bitmap(void **state)
{
	unsigned char e[4], bm;
	uint64_t hoff, bat;
	unsigned char *expect;

	REQUIRE_QEMU_IMG();
	copy_file(p("dynamic.vhd"), p("bitmap.vhd"));
	bat = vhd_bat_offset(p("bitmap.vhd"), &hoff);
	peek(p("bitmap.vhd"), bat, e, 4);
	assert_int_not_equal(be32(e), 0xffffffffu);
	/* Clear the bits of sectors 5 and 8 of block 0: they must read as zeros. */
	peek(p("bitmap.vhd"), (uint64_t)be32(e) * 512, &bm, 1);
	bm &= (unsigned char)~(0x80u >> 5);
	patch(p("bitmap.vhd"), (uint64_t)be32(e) * 512, &bm, 1);
	peek(p("bitmap.vhd"), (uint64_t)be32(e) * 512 + 1, &bm, 1);
	bm &= 0x7f;
	patch(p("bitmap.vhd"), (uint64_t)be32(e) * 512 + 1, &bm, 1);

	expect = malloc(RAW_SIZE);
	assert_non_null(expect);
	memcpy(expect, raw_data, RAW_SIZE);
	memset(expect + 5 * 512, 0, 512);
	memset(expect + 8 * 512, 0, 512);
	assert_reads(p("bitmap.vhd"), DISK_FORMAT_AUTO, expect);
	free(expect);
}

static void test_vhd_dynamic_truncated(void **state)
{
	REQUIRE_QEMU_IMG();
	copy_file(p("dynamic.vhd"), p("cut.vhd"));
	assert_int_equal(truncate(p("cut.vhd"), file_size(p("cut.vhd")) / 2), 0);
	probe_fails(p("cut.vhd"), -EBADMSG, "VHD_TRUNCATED");
	open_fails(p("cut.vhd"), DISK_FORMAT_AUTO, -EBADMSG, "VHD_TRUNCATED");
	open_fails(p("cut.vhd"), DISK_FORMAT_VHD, -EBADMSG, "VHD_TRUNCATED");
}

static void test_vhd_footer_checksum(void **state)
{
	struct disk_info info;
	unsigned char b;
	uint64_t at;

	REQUIRE_QEMU_IMG();
	/* Flip a byte of the unique id in the footer at the end; the copy at 0 stays good. */
	copy_file(p("dynamic.vhd"), p("badsum.vhd"));
	at = file_size(p("badsum.vhd")) - 512 + 70;
	peek(p("badsum.vhd"), at, &b, 1);
	b ^= 0x01;
	patch(p("badsum.vhd"), at, &b, 1);
	probe_ok(p("badsum.vhd"), &info);
	assert_int_equal(info.format, DISK_FORMAT_VHD);
	assert_false(info.vhd_footer_checksum_ok);
	open_fails(p("badsum.vhd"), DISK_FORMAT_AUTO, -EBADMSG, "VHD_FOOTER_CHECKSUM");

	copy_file(p("fixed.vhd"), p("badsumfixed.vhd"));
	peek(p("badsumfixed.vhd"), RAW_SIZE + 70, &b, 1);
	b ^= 0x80;
	patch(p("badsumfixed.vhd"), RAW_SIZE + 70, &b, 1);
	open_fails(p("badsumfixed.vhd"), DISK_FORMAT_VHD, -EBADMSG, "VHD_FOOTER_CHECKSUM");
}

static void test_vhd_header_checksum(void **state)
{
	struct disk_info info;
	uint64_t hoff;
	unsigned char b = 0x42;

	REQUIRE_QEMU_IMG();
	copy_file(p("dynamic.vhd"), p("badhdr.vhd"));
	(void)vhd_bat_offset(p("badhdr.vhd"), &hoff);
	patch(p("badhdr.vhd"), hoff + 800, &b, 1); /* reserved area */
	probe_ok(p("badhdr.vhd"), &info);
	assert_true(info.vhd_footer_checksum_ok);
	assert_false(info.vhd_header_checksum_ok);
	open_fails(p("badhdr.vhd"), DISK_FORMAT_AUTO, -EBADMSG, "VHD_HEADER_CHECKSUM");
}

static void test_vhd_bad_block_size(void **state)
{
	unsigned char h[1024];
	uint64_t hoff;

	REQUIRE_QEMU_IMG();
	copy_file(p("dynamic.vhd"), p("badbs.vhd"));
	(void)vhd_bat_offset(p("badbs.vhd"), &hoff);
	peek(p("badbs.vhd"), hoff, h, sizeof(h));
	put_be32(h + 32, 3000);
	vhd_fix_checksum(h, sizeof(h), 36);
	patch(p("badbs.vhd"), hoff, h, sizeof(h));
	open_fails(p("badbs.vhd"), DISK_FORMAT_AUTO, -EBADMSG, "VHD_BAD_HEADER");
}

/*
 * The BAT is covered by neither checksum, so patching an entry needs no
 * checksum fix: the footer and header stay valid and the BAT check fires.
 */
static void test_vhd_bat_out_of_range(void **state)
{
	unsigned char e[4];
	uint64_t hoff, bat;
	const char *msg;

	REQUIRE_QEMU_IMG();
	copy_file(p("dynamic.vhd"), p("badbat.vhd"));
	bat = vhd_bat_offset(p("badbat.vhd"), &hoff);
	put_be32(e, (uint32_t)(file_size(p("badbat.vhd")) / 512) - 2);
	patch(p("badbat.vhd"), bat + 4 * 2, e, 4); /* block 2: the last, partial one */
	msg = open_fails(p("badbat.vhd"), DISK_FORMAT_AUTO, -EBADMSG, "VHD_BAT_OUT_OF_RANGE");
	assert_non_null(strstr(msg, "block 2 of"));
	assert_non_null(strstr(msg, "points past the end of the file"));
}

static void make_differencing(unsigned char *f)
{
	put_be32(f + 60, 4);
}

static void test_vhd_differencing(void **state)
{
	struct disk_info info;
	const char *msg;

	REQUIRE_QEMU_IMG();
	copy_file(p("dynamic.vhd"), p("diff.vhd"));
	vhd_edit_footer(p("diff.vhd"), make_differencing);
	probe_ok(p("diff.vhd"), &info);
	assert_int_equal(info.vhd_type, VHD_TYPE_DIFFERENCING);
	assert_true(info.vhd_footer_checksum_ok);
	msg = open_fails(p("diff.vhd"), DISK_FORMAT_AUTO, -ENOTSUP, "VHD_DIFFERENCING");
	assert_non_null(strstr(msg, "qemu-img convert -O raw"));
}

static void make_unaligned_size(unsigned char *f)
{
	put_be64(f + 48, RAW_SIZE - 100);
}

static void test_vhd_unaligned_size(void **state)
{
	REQUIRE_QEMU_IMG();
	copy_file(p("fixed.vhd"), p("odd.vhd"));
	vhd_edit_footer(p("odd.vhd"), make_unaligned_size);
	open_fails(p("odd.vhd"), DISK_FORMAT_AUTO, -EINVAL, "VIRTUAL_SIZE_UNSUPPORTED");
}

/* ---- qcow2 ---------------------------------------------------------------------------- */

static void test_qcow2_v2(void **state)
{
	struct disk_info info;

	REQUIRE_QEMU_IMG();
	probe_ok(p("v2.qcow2"), &info);
	assert_int_equal(info.format, DISK_FORMAT_QCOW2);
	assert_int_equal(info.qcow2_version, 2);
	assert_int_equal(info.qcow2_cluster_size, 65536);
	assert_int_equal(info.virtual_size, RAW_SIZE);
	assert_false(info.qcow2_has_compressed);
	assert_string_equal(info.qcow2_backing_file, "");
	assert_reads(p("v2.qcow2"), DISK_FORMAT_AUTO, raw_data);
}

static void test_qcow2_v3(void **state)
{
	struct disk_info info;

	REQUIRE_QEMU_IMG();
	probe_ok(p("v3.qcow2"), &info);
	assert_int_equal(info.qcow2_version, 3);
	assert_false(info.qcow2_has_compressed);
	assert_false(info.qcow2_encrypted);
	assert_string_equal(info.qcow2_compression, "zlib");
	assert_reads(p("v3.qcow2"), DISK_FORMAT_AUTO, raw_data);
	assert_reads(p("v3.qcow2"), DISK_FORMAT_QCOW2, raw_data);
}

static void test_qcow2_cluster_sizes(void **state)
{
	struct disk_info info;

	REQUIRE_QEMU_IMG();
	probe_ok(p("small.qcow2"), &info);
	assert_int_equal(info.qcow2_cluster_size, 512);
	assert_reads(p("small.qcow2"), DISK_FORMAT_AUTO, raw_data);
	probe_ok(p("big.qcow2"), &info);
	assert_int_equal(info.qcow2_cluster_size, 2 * MIB);
	assert_reads(p("big.qcow2"), DISK_FORMAT_AUTO, raw_data);
}

static void test_qcow2_compressed(void **state)
{
	struct disk_info info;

	REQUIRE_QEMU_IMG();
	probe_ok(p("compressed.qcow2"), &info);
	assert_true(info.qcow2_has_compressed);
	assert_reads(p("compressed.qcow2"), DISK_FORMAT_AUTO, raw_data);
	probe_ok(p("compressed4k.qcow2"), &info);
	assert_true(info.qcow2_has_compressed);
	assert_int_equal(info.qcow2_cluster_size, 4096);
	assert_reads(p("compressed4k.qcow2"), DISK_FORMAT_QCOW2, raw_data);
}

/* v3 zero clusters (L2 flag bit 0) over allocated data, written by qemu-io. */
static void test_qcow2_zero_clusters(void **state)
{
	unsigned char *expect;

	REQUIRE_QEMU_IMG();
	if (!have_qemu_io) {
		print_message("skipped: qemu-io not found (install qemu-utils)\n");
		skip();
	}
	copy_file(p("v3.qcow2"), p("zeroes.qcow2"));
	RUN("qemu-io", "-f", "qcow2", "-c", "write -z 65536 131072", "-c", "write -z 4194304 65536",
	    p("zeroes.qcow2"));
	expect = malloc(RAW_SIZE);
	assert_non_null(expect);
	memcpy(expect, raw_data, RAW_SIZE);
	memset(expect + 65536, 0, 131072);
	memset(expect + 4 * MIB, 0, 65536);
	assert_reads(p("zeroes.qcow2"), DISK_FORMAT_AUTO, expect);
	free(expect);
}

/* Virtually adjacent clusters that are not adjacent in the file must not be read as one run. */
static void test_qcow2_scattered_clusters(void **state)
{
	unsigned char *expect;

	REQUIRE_QEMU_IMG();
	if (!have_qemu_io) {
		print_message("skipped: qemu-io not found (install qemu-utils)\n");
		skip();
	}
	RUN("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
	    p("scatter.qcow2"), "1M");
	RUN("qemu-io", "-f", "qcow2", "-c", "write -P 0x11 786432 262144", "-c",
	    "write -P 0x33 131072 65536", "-c", "write -P 0x22 0 131072", p("scatter.qcow2"));
	expect = calloc(1, MIB);
	assert_non_null(expect);
	memset(expect, 0x22, 131072);
	memset(expect + 131072, 0x33, 65536);
	memset(expect + 786432, 0x11, 262144);
	assert_reads_n(p("scatter.qcow2"), DISK_FORMAT_QCOW2, expect, MIB);
	free(expect);
}

static void test_qcow2_backing_file(void **state)
{
	struct disk_info info;
	const char *msg;

	REQUIRE_QEMU_IMG();
	RUN("qemu-img", "create", "-q", "-f", "qcow2", "-b", p("v3.qcow2"), "-F", "qcow2",
	    p("over.qcow2"));
	probe_ok(p("over.qcow2"), &info);
	assert_int_equal(info.format, DISK_FORMAT_QCOW2);
	assert_string_equal(info.qcow2_backing_file, p("v3.qcow2"));
	msg = open_fails(p("over.qcow2"), DISK_FORMAT_AUTO, -ENOTSUP, "QCOW2_BACKING_FILE");
	assert_non_null(strstr(msg, "v3.qcow2"));
	assert_non_null(strstr(msg, "qemu-img convert -O qcow2"));
}

static void set_incompatible(const char *path, uint64_t bits)
{
	unsigned char b[8];

	peek(path, 72, b, 8);
	put_be64(b, be64(b) | bits);
	patch(path, 72, b, 8);
}

static void test_qcow2_feature_bits(void **state)
{
	struct disk_info info;

	REQUIRE_QEMU_IMG();
	copy_file(p("v3.qcow2"), p("dirty.qcow2"));
	set_incompatible(p("dirty.qcow2"), 1u << 0);
	assert_reads(p("dirty.qcow2"), DISK_FORMAT_AUTO, raw_data);

	copy_file(p("v3.qcow2"), p("corrupt.qcow2"));
	set_incompatible(p("corrupt.qcow2"), 1u << 1);
	probe_ok(p("corrupt.qcow2"), &info);
	assert_int_equal(info.qcow2_incompatible_features, 2);
	open_fails(p("corrupt.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_CORRUPT");

	copy_file(p("v3.qcow2"), p("datafile.qcow2"));
	set_incompatible(p("datafile.qcow2"), 1u << 2);
	open_fails(p("datafile.qcow2"), DISK_FORMAT_AUTO, -ENOTSUP, "QCOW2_UNSUPPORTED_FEATURE");

	copy_file(p("v3.qcow2"), p("extl2.qcow2"));
	set_incompatible(p("extl2.qcow2"), 1u << 4);
	open_fails(p("extl2.qcow2"), DISK_FORMAT_AUTO, -ENOTSUP, "QCOW2_UNSUPPORTED_FEATURE");

	copy_file(p("v3.qcow2"), p("unknown.qcow2"));
	set_incompatible(p("unknown.qcow2"), UINT64_C(1) << 20);
	open_fails(p("unknown.qcow2"), DISK_FORMAT_AUTO, -ENOTSUP, "QCOW2_UNSUPPORTED_FEATURE");
}

static void test_qcow2_zstd(void **state)
{
	struct disk_info info;
	unsigned char one = 1;
	const char *msg;

	REQUIRE_QEMU_IMG();
	copy_file(p("v3.qcow2"), p("zstd.qcow2"));
	set_incompatible(p("zstd.qcow2"), 1u << 3);
	patch(p("zstd.qcow2"), 104, &one, 1);
	probe_ok(p("zstd.qcow2"), &info);
	assert_string_equal(info.qcow2_compression, "zstd");
	msg = open_fails(p("zstd.qcow2"), DISK_FORMAT_AUTO, -ENOTSUP, "QCOW2_ZSTD");
	assert_non_null(strstr(msg, "qemu-img convert -O qcow2"));
}

static void test_qcow2_encrypted(void **state)
{
	struct disk_info info;
	unsigned char b[4];

	REQUIRE_QEMU_IMG();
	copy_file(p("v3.qcow2"), p("crypt.qcow2"));
	put_be32(b, 1); /* AES-CBC, qcow's old encryption */
	patch(p("crypt.qcow2"), 32, b, 4);
	probe_ok(p("crypt.qcow2"), &info);
	assert_true(info.qcow2_encrypted);
	open_fails(p("crypt.qcow2"), DISK_FORMAT_AUTO, -ENOTSUP, "QCOW2_ENCRYPTED");
}

static void test_qcow2_bad_header(void **state)
{
	struct disk_info info;
	unsigned char b[8];

	REQUIRE_QEMU_IMG();
	copy_file(p("v3.qcow2"), p("v1.qcow2"));
	put_be32(b, 1);
	patch(p("v1.qcow2"), 4, b, 4);
	probe_ok(p("v1.qcow2"), &info);
	assert_int_equal(info.qcow2_version, 1);
	open_fails(p("v1.qcow2"), DISK_FORMAT_AUTO, -ENOTSUP, "QCOW2_UNSUPPORTED_VERSION");

	copy_file(p("v3.qcow2"), p("cbits.qcow2"));
	put_be32(b, 30);
	patch(p("cbits.qcow2"), 20, b, 4);
	probe_fails(p("cbits.qcow2"), -EBADMSG, "QCOW2_BAD_HEADER");
	open_fails(p("cbits.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_BAD_HEADER");

	/* A virtual size the L1 table cannot cover. */
	copy_file(p("v3.qcow2"), p("huge.qcow2"));
	put_be64(b, UINT64_C(1) << 50);
	patch(p("huge.qcow2"), 24, b, 8);
	open_fails(p("huge.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_BAD_HEADER");

	copy_file(p("v3.qcow2"), p("l1past.qcow2"));
	put_be64(b, file_size(p("l1past.qcow2")) + 65536 * 4);
	patch(p("l1past.qcow2"), 40, b, 8);
	open_fails(p("l1past.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_BAD_HEADER");

	copy_file(p("v3.qcow2"), p("odd.qcow2"));
	put_be64(b, RAW_SIZE - 100);
	patch(p("odd.qcow2"), 24, b, 8);
	open_fails(p("odd.qcow2"), DISK_FORMAT_AUTO, -EINVAL, "VIRTUAL_SIZE_UNSUPPORTED");

	write_file(p("tiny.qcow2"), "QFI\xfb\0\0\0\3", 8);
	probe_fails(p("tiny.qcow2"), -EBADMSG, "QCOW2_BAD_HEADER");
	open_fails(p("tiny.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_BAD_HEADER");
}

/* Host offset of the L2 table of L1 entry 0 of @path. */
static uint64_t qcow2_l2_table(const char *path)
{
	unsigned char h[48], e[8];

	peek(path, 0, h, sizeof(h));
	peek(path, be64(h + 40), e, 8);
	return be64(e) & UINT64_C(0x00fffffffffffe00);
}

static void test_qcow2_l2_entry_past_eof(void **state)
{
	unsigned char e[8];
	uint64_t l2, size;
	const char *msg;

	REQUIRE_QEMU_IMG();
	copy_file(p("v3.qcow2"), p("l2past.qcow2"));
	size = file_size(p("l2past.qcow2"));
	l2 = qcow2_l2_table(p("l2past.qcow2"));
	assert_int_not_equal(l2, 0);
	peek(p("l2past.qcow2"), l2, e, 8); /* cluster 0 holds data */
	assert_int_not_equal(be64(e) & UINT64_C(0x00fffffffffffe00), 0);
	put_be64(e, (be64(e) & ~UINT64_C(0x00fffffffffffe00)) |
			    ((size + 65536 * 16) & ~UINT64_C(0xffff)));
	patch(p("l2past.qcow2"), l2, e, 8);
	msg = open_fails(p("l2past.qcow2"), DISK_FORMAT_AUTO, -EBADMSG,
			 "QCOW2_CLUSTER_OUT_OF_RANGE");
	assert_non_null(strstr(msg, "points past the end of the file"));

	/* An unaligned host offset. */
	copy_file(p("v3.qcow2"), p("l2unaligned.qcow2"));
	peek(p("l2unaligned.qcow2"), l2, e, 8);
	put_be64(e, be64(e) + 512);
	patch(p("l2unaligned.qcow2"), l2, e, 8);
	open_fails(p("l2unaligned.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_BAD_L2_ENTRY");

	/* The zero flag is a v3 feature. */
	copy_file(p("v2.qcow2"), p("v2zero.qcow2"));
	l2 = qcow2_l2_table(p("v2zero.qcow2"));
	peek(p("v2zero.qcow2"), l2, e, 8);
	e[7] |= 1;
	patch(p("v2zero.qcow2"), l2, e, 8);
	open_fails(p("v2zero.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_BAD_L2_ENTRY");
}

static void test_qcow2_l1_entry_past_eof(void **state)
{
	unsigned char h[48], e[8];

	REQUIRE_QEMU_IMG();
	copy_file(p("v3.qcow2"), p("l1bad.qcow2"));
	peek(p("l1bad.qcow2"), 0, h, sizeof(h));
	put_be64(e,
		 (UINT64_C(1) << 63) | ((file_size(p("l1bad.qcow2")) + MIB) & ~UINT64_C(0xffff)));
	patch(p("l1bad.qcow2"), be64(h + 40), e, 8);
	open_fails(p("l1bad.qcow2"), DISK_FORMAT_AUTO, -EBADMSG, "QCOW2_L2_OUT_OF_RANGE");
}

static void test_qcow2_bad_compressed_data(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src;
	unsigned char e[8], junk[64], *buf;
	uint64_t l2, vc, coff;
	int r;

	REQUIRE_QEMU_IMG();
	copy_file(p("compressed.qcow2"), p("badz.qcow2"));
	l2 = qcow2_l2_table(p("badz.qcow2"));
	/* Find a compressed cluster among the first ones (the text at 1 MiB compresses). */
	for (vc = 0; vc < 80; vc++) {
		peek(p("badz.qcow2"), l2 + 8 * vc, e, 8);
		if (be64(e) & (UINT64_C(1) << 62))
			break;
	}
	assert_true(vc < 80);
	coff = be64(e) & ((UINT64_C(1) << 54) - 1); /* 64 KiB clusters: x = 62 - 8 */
	memset(junk, 0xff, sizeof(junk));	    /* BTYPE 11: an invalid deflate block */
	patch(p("badz.qcow2"), coff, junk, sizeof(junk));

	src = open_ok(p("badz.qcow2"), DISK_FORMAT_AUTO); /* ranges are fine: found on read */
	buf = malloc(65536);
	assert_non_null(buf);
	r = disk_source_read(src, vc * 65536 + 100, buf, 1000, &err);
	assert_int_equal(r, -EBADMSG);
	assert_string_equal(err.reason, "QCOW2_BAD_COMPRESSED");
	free(buf);
	disk_source_free(src);
}

static void test_qcow2_shrinks_after_open(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src;
	unsigned char *buf;

	REQUIRE_QEMU_IMG();
	copy_file(p("v3.qcow2"), p("shrinkq.qcow2"));
	src = open_ok(p("shrinkq.qcow2"), DISK_FORMAT_QCOW2);
	assert_int_equal(truncate(p("shrinkq.qcow2"), 2 * MIB), 0);
	buf = malloc(RAW_SIZE);
	assert_non_null(buf);
	assert_int_equal(disk_source_read(src, 0, buf, RAW_SIZE, &err), -EIO);
	assert_string_equal(err.reason, "SHORT_READ");
	free(buf);
	disk_source_free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_names),
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_raw_without_signature),
		cmocka_unit_test(test_empty_file),
		cmocka_unit_test(test_text_file),
		cmocka_unit_test(test_not_a_file),
		cmocka_unit_test(test_luks_detected),
		cmocka_unit_test(test_format_mismatch),
		cmocka_unit_test(test_read_bounds),
		cmocka_unit_test(test_raw_shrinks_after_open),
		cmocka_unit_test(test_vhd_fixed),
		cmocka_unit_test(test_vhd_fixed_511_byte_footer),
		cmocka_unit_test(test_vhd_fixed_truncated),
		cmocka_unit_test(test_vhd_dynamic),
		cmocka_unit_test(test_vhd_dynamic_sector_bitmap),
		cmocka_unit_test(test_vhd_dynamic_truncated),
		cmocka_unit_test(test_vhd_footer_checksum),
		cmocka_unit_test(test_vhd_header_checksum),
		cmocka_unit_test(test_vhd_bad_block_size),
		cmocka_unit_test(test_vhd_bat_out_of_range),
		cmocka_unit_test(test_vhd_differencing),
		cmocka_unit_test(test_vhd_unaligned_size),
		cmocka_unit_test(test_qcow2_v2),
		cmocka_unit_test(test_qcow2_v3),
		cmocka_unit_test(test_qcow2_cluster_sizes),
		cmocka_unit_test(test_qcow2_compressed),
		cmocka_unit_test(test_qcow2_zero_clusters),
		cmocka_unit_test(test_qcow2_scattered_clusters),
		cmocka_unit_test(test_qcow2_backing_file),
		cmocka_unit_test(test_qcow2_feature_bits),
		cmocka_unit_test(test_qcow2_zstd),
		cmocka_unit_test(test_qcow2_encrypted),
		cmocka_unit_test(test_qcow2_bad_header),
		cmocka_unit_test(test_qcow2_l2_entry_past_eof),
		cmocka_unit_test(test_qcow2_l1_entry_past_eof),
		cmocka_unit_test(test_qcow2_bad_compressed_data),
		cmocka_unit_test(test_qcow2_shrinks_after_open),
	};
	int failed = cmocka_run_group_tests(tests, setup, teardown);

	/* Images made by qemu-img are the point of most tests: without it, say "skipped". */
	if (failed == 0 && !have_qemu_img)
		return 77;
	return failed;
}
