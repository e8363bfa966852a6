// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_image.c — `sealvm image encrypt|decrypt|verify|inspect`.
 *
 * Argument handling and reporting only: the work is in lib/diskfmt and
 * lib/luks. The DEK is read from a file into locked memory and is never
 * printed, logged or passed on a command line.
 */
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "sealvm/dek.h"
#include "sealvm/diskfmt.h"
#include "sealvm/file.h"
#include "sealvm/luks.h"
#include "sealvm/num.h"

#include "cli.h"

enum {
	OPT_DEK_FILE = 0x100,
	OPT_IN_FORMAT,
	OPT_THREADS,
	OPT_PBKDF_ITER,
	OPT_PROGRESS,
	OPT_NO_PROGRESS,
	OPT_FORCE,
	OPT_JSON,
	OPT_MAX_MEM,
	OPT_MAX_ITER,
	OPT_MAX_TIME,
};

struct image_args {
	const char *dek_file;
	enum disk_format in_format;
	unsigned threads;
	unsigned pbkdf_iterations;
	int progress; /* -1: on a terminal */
	bool force;
	bool json;
	struct luks_limits limits;
};

static int image_opt(int c, const char *arg, void *userdata)
{
	struct image_args *a = userdata;
	uint64_t v;

	switch (c) {
	case OPT_DEK_FILE:
		a->dek_file = arg;
		return 0;
	case OPT_IN_FORMAT:
		if (disk_format_from_name(arg, &a->in_format) < 0)
			return cli_usage_error("--in-format '%s': use auto, raw, vhd or qcow2",
					       arg);
		return 0;
	case OPT_THREADS:
		if (sealvm_parse_uint(arg, 1, 256, &a->threads) < 0)
			return cli_usage_error("--threads '%s': give a number from 1 to 256", arg);
		return 0;
	case OPT_PBKDF_ITER:
		/* The top is the default unlock limit, so that what we make we can open again. */
		if (sealvm_parse_uint(arg, 1000, 20000000, &a->pbkdf_iterations) < 0)
			return cli_usage_error(
				"--pbkdf-iterations '%s': give a number from 1000 to 20000000",
				arg);
		return 0;
	case OPT_PROGRESS:
		a->progress = 1;
		return 0;
	case OPT_NO_PROGRESS:
		a->progress = 0;
		return 0;
	case OPT_FORCE:
		a->force = true;
		return 0;
	case OPT_JSON:
		a->json = true;
		return 0;
	case OPT_MAX_MEM:
		if (sealvm_parse_size(arg, 1024, (uint64_t)64 << 30, &v) < 0)
			return cli_usage_error(
				"--max-pbkdf-memory '%s': give a size such as 512M or 2G (at most 64G)",
				arg);
		a->limits.max_memory_kib = v / 1024;
		return 0;
	case OPT_MAX_ITER:
		if (sealvm_parse_u64(arg, 1, UINT32_MAX, &v) < 0)
			return cli_usage_error(
				"--max-pbkdf-iterations '%s': give a number from 1 to %u", arg,
				UINT32_MAX);
		a->limits.max_pbkdf2_iterations = (uint32_t)v;
		return 0;
	case OPT_MAX_TIME:
		if (sealvm_parse_u64(arg, 1, UINT32_MAX, &v) < 0)
			return cli_usage_error(
				"--max-pbkdf-time '%s': give an argon2 time cost from 1 to %u", arg,
				UINT32_MAX);
		a->limits.max_argon2_iterations = (uint32_t)v;
		return 0;
	}
	return -1;
}

static const struct option image_opts[] = {
	{"dek-file", required_argument, NULL, OPT_DEK_FILE},
	{"in-format", required_argument, NULL, OPT_IN_FORMAT},
	{"threads", required_argument, NULL, OPT_THREADS},
	{"pbkdf-iterations", required_argument, NULL, OPT_PBKDF_ITER},
	{"progress", no_argument, NULL, OPT_PROGRESS},
	{"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	{"force", no_argument, NULL, OPT_FORCE},
	{"json", no_argument, NULL, OPT_JSON},
	{"max-pbkdf-memory", required_argument, NULL, OPT_MAX_MEM},
	{"max-pbkdf-iterations", required_argument, NULL, OPT_MAX_ITER},
	{"max-pbkdf-time", required_argument, NULL, OPT_MAX_TIME},
	{0},
};

/* Options each command accepts; the table above is shared, these say who may use what. */
enum {
	ACCEPT_DEK = 1 << 0,
	ACCEPT_IN_FORMAT = 1 << 1,
	ACCEPT_THREADS = 1 << 2,
	ACCEPT_PBKDF = 1 << 3,
	ACCEPT_PROGRESS = 1 << 4,
	ACCEPT_FORCE = 1 << 5,
	ACCEPT_LIMITS = 1 << 6,
};

struct image_cmd {
	struct image_args a;
	unsigned accept;
};

static int image_cmd_opt(int c, const char *arg, void *userdata)
{
	struct image_cmd *cmd = userdata;
	unsigned need = 0;
	switch (c) {
	case OPT_DEK_FILE:
		need = ACCEPT_DEK;
		break;
	case OPT_IN_FORMAT:
		need = ACCEPT_IN_FORMAT;
		break;
	case OPT_THREADS:
		need = ACCEPT_THREADS;
		break;
	case OPT_PBKDF_ITER:
		need = ACCEPT_PBKDF;
		break;
	case OPT_PROGRESS:
	case OPT_NO_PROGRESS:
		need = ACCEPT_PROGRESS;
		break;
	case OPT_FORCE:
		need = ACCEPT_FORCE;
		break;
	case OPT_MAX_MEM:
	case OPT_MAX_ITER:
	case OPT_MAX_TIME:
		need = ACCEPT_LIMITS;
		break;
	}
	if (need && !(cmd->accept & need)) {
		for (const struct option *o = image_opts; o->name; o++)
			if (o->val == c)
				return cli_usage_error(
					"option '--%s' does not apply to this command", o->name);
	}
	return image_opt(c, arg, &cmd->a);
}

static int parse_image_args(int argc, char **argv, unsigned accept, int npos,
			    struct image_args *ret, int *ret_exit)
{
	struct image_cmd cmd = {.a = {.progress = -1}, .accept = accept};

	luks_limits_default(&cmd.a.limits);
	if (cli_parse(argc, argv, "", image_opts, image_cmd_opt, &cmd, ret_exit))
		return 1;
	if (argc - optind != npos) {
		*ret_exit = cli_usage_error("expected %d file argument%s, got %d", npos,
					    npos == 1 ? "" : "s", argc - optind);
		return 1;
	}
	if ((accept & ACCEPT_DEK) && !cmd.a.dek_file) {
		*ret_exit = cli_usage_error("--dek-file FILE is required");
		return 1;
	}
	*ret = cmd.a;
	return 0;
}

static bool progress_wanted(const struct image_args *a)
{
	return a->progress < 0 ? isatty(STDERR_FILENO) : a->progress == 1;
}

static json_t *result_json(const char *in, const char *out, const char *in_format,
			   const struct luks_result *res)
{
	char hex[65];
	cli_hex(res->sha256, sizeof(res->sha256), hex);
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:f, s:f}", "input", in, "output", out,
			 "input_format", in_format, "virtual_size", (json_int_t)res->virtual_size,
			 "output_size", (json_int_t)res->output_size, "sha256", hex, "seconds",
			 res->seconds, "mb_per_s",
			 res->seconds > 0 ? (double)res->virtual_size / res->seconds / 1e6 : 0.0);
}

static void print_result(const char *verb, const char *in, const char *out, const char *in_format,
			 const struct luks_result *res, bool json)
{
	char a[32], b[32], hex[65];

	if (json) {
		json_t *j = result_json(in, out, in_format, res);
		if (j)
			cli_print_json(j);
		json_decref(j);
		return;
	}
	cli_hex(res->sha256, sizeof(res->sha256), hex);
	printf("%s %s -> %s\n", verb, in, out);
	printf("  input format:  %s\n", in_format);
	printf("  virtual size:  %s (%llu bytes)\n",
	       sealvm_format_size(res->virtual_size, a, sizeof(a)),
	       (unsigned long long)res->virtual_size);
	printf("  output size:   %s (%llu bytes)\n",
	       sealvm_format_size(res->output_size, b, sizeof(b)),
	       (unsigned long long)res->output_size);
	printf("  sha256:        %s\n", hex);
	printf("  elapsed:       %.2f s (%.0f MB/s)\n", res->seconds,
	       res->seconds > 0 ? (double)res->virtual_size / res->seconds / 1e6 : 0.0);
}

static int refuse_same_file(const char *in, const char *out)
{
	if (sealvm_same_file(in, out)) {
		cli_error("%s and %s are the same file: write the output to a new file [SAME_FILE]",
			  in, out);
		return 1;
	}
	return 0;
}

int cmd_image_encrypt(int argc, char **argv)
{
	struct image_args a;
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *dek = NULL;
	_cleanup_disk_source_ struct disk_source *src = NULL;
	struct luks_result res = {0};
	char fmt[32];
	int ex, r;

	if (parse_image_args(argc, argv,
			     ACCEPT_DEK | ACCEPT_IN_FORMAT | ACCEPT_THREADS | ACCEPT_PBKDF |
				     ACCEPT_PROGRESS | ACCEPT_FORCE,
			     2, &a, &ex))
		return ex;
	const char *in = argv[optind], *out = argv[optind + 1];

	r = sealvm_dek_read_file(a.dek_file, &dek, &err);
	if (r < 0)
		return cli_fail(&err, r);
	if (refuse_same_file(in, out))
		return EXIT_FAIL;
	r = disk_source_open(in, a.in_format, &src, &err);
	if (r < 0)
		return cli_fail(&err, r);
	const struct disk_info *info = disk_source_info(src);
	if (info->format == DISK_FORMAT_VHD)
		snprintf(fmt, sizeof(fmt), "vhd-%s",
			 info->vhd_type == VHD_TYPE_FIXED ? "fixed" : "dynamic");
	else
		snprintf(fmt, sizeof(fmt), "%s", disk_format_name(info->format));

	struct cli_progress *p = cli_progress_new("encrypting", progress_wanted(&a));
	struct luks_encrypt_opts o = {
		.threads = a.threads,
		.pbkdf2_iterations = a.pbkdf_iterations,
		.replace = a.force,
		.progress = cli_progress_update,
		.progress_userdata = p,
	};
	r = luks_encrypt_image(src, out, dek, &o, &res, &err);
	cli_progress_finish(p);
	if (r < 0)
		return cli_fail(&err, r);
	print_result("encrypted", in, out, fmt, &res, a.json);
	return EXIT_OK;
}

int cmd_image_decrypt(int argc, char **argv)
{
	struct image_args a;
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *dek = NULL;
	_cleanup_luks_volume_ struct luks_volume *vol = NULL;
	struct luks_result res = {0};
	char fmt[16];
	int ex, r;

	if (parse_image_args(argc, argv,
			     ACCEPT_DEK | ACCEPT_THREADS | ACCEPT_PROGRESS | ACCEPT_FORCE |
				     ACCEPT_LIMITS,
			     2, &a, &ex))
		return ex;
	const char *in = argv[optind], *out = argv[optind + 1];

	r = sealvm_dek_read_file(a.dek_file, &dek, &err);
	if (r < 0)
		return cli_fail(&err, r);
	if (refuse_same_file(in, out))
		return EXIT_FAIL;
	r = luks_unlock(in, dek, &a.limits, &vol, &err);
	if (r < 0)
		return cli_fail(&err, r);
	snprintf(fmt, sizeof(fmt), "luks%d", luks_volume_info(vol)->version);

	struct cli_progress *p = cli_progress_new("decrypting", progress_wanted(&a));
	struct luks_decrypt_opts o = {
		.threads = a.threads,
		.replace = a.force,
		.progress = cli_progress_update,
		.progress_userdata = p,
	};
	r = luks_decrypt_image(vol, in, out, &o, &res, &err);
	cli_progress_finish(p);
	if (r < 0)
		return cli_fail(&err, r);
	print_result("decrypted", in, out, fmt, &res, a.json);
	return EXIT_OK;
}

int cmd_image_verify(int argc, char **argv)
{
	struct image_args a;
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *dek = NULL;
	_cleanup_luks_volume_ struct luks_volume *vol = NULL;
	int ex, r;

	if (parse_image_args(argc, argv, ACCEPT_DEK | ACCEPT_LIMITS, 1, &a, &ex))
		return ex;
	const char *img = argv[optind];

	r = sealvm_dek_read_file(a.dek_file, &dek, &err);
	if (r >= 0)
		r = luks_unlock(img, dek, &a.limits, &vol, &err);
	if (a.json) {
		json_t *j;
		if (r < 0)
			j = json_pack("{s:s, s:b, s:s, s:s}", "image", img, "opens", 0, "reason",
				      err.reason, "message", err.message);
		else
			j = json_pack("{s:s, s:b, s:i}", "image", img, "opens", 1, "luks_version",
				      luks_volume_info(vol)->version);
		if (j)
			cli_print_json(j);
		json_decref(j);
	}
	if (r < 0)
		return cli_fail(&err, r);
	if (!a.json)
		printf("%s: the DEK opens this LUKS%d image\n", img,
		       luks_volume_info(vol)->version);
	return EXIT_OK;
}

static json_t *luks_json(const struct luks_info *li)
{
	json_t *slots = json_array();
	for (int i = 0; i < li->n_keyslots; i++) {
		const struct luks_keyslot_info *k = &li->keyslots[i];
		json_t *s = json_pack("{s:i, s:s, s:I}", "slot", k->slot, "pbkdf", k->pbkdf,
				      "iterations", (json_int_t)k->iterations);
		if (!s)
			continue;
		if (k->hash[0])
			json_object_set_new(s, "hash", json_string(k->hash));
		if (k->memory_kib)
			json_object_set_new(s, "memory_kib", json_integer(k->memory_kib));
		if (k->parallel)
			json_object_set_new(s, "parallel", json_integer(k->parallel));
		json_array_append_new(slots, s);
	}
	return json_pack("{s:i, s:s, s:s, s:s, s:I, s:i, s:i, s:s, s:o}", "version", li->version,
			 "cipher", li->cipher, "cipher_mode", li->cipher_mode, "hash", li->hash,
			 "payload_offset", (json_int_t)li->payload_offset, "key_bits",
			 (int)li->key_bits, "sector_size", (int)li->sector_size, "uuid", li->uuid,
			 "keyslots", slots);
}

int cmd_image_inspect(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{0},
	};
	struct image_cmd cmd = {.a = {.progress = -1}, .accept = 0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_info di;
	struct luks_info li;
	char a1[32];
	int ex, r;

	if (cli_parse(argc, argv, "", opts, image_cmd_opt, &cmd, &ex))
		return ex;
	if (argc - optind != 1)
		return cli_usage_error("expected 1 file argument, got %d", argc - optind);
	const char *img = argv[optind];

	r = disk_probe(img, &di, &err);
	if (r < 0)
		return cli_fail(&err, r);
	if (di.format == DISK_FORMAT_LUKS) {
		r = luks_inspect(img, &li, &err);
		if (r < 0)
			return cli_fail(&err, r);
		di.virtual_size = li.payload_size;
	}

	json_t *j = json_pack("{s:s, s:s, s:I, s:I}", "image", img, "format",
			      disk_format_name(di.format), "virtual_size",
			      (json_int_t)di.virtual_size, "file_size", (json_int_t)di.file_size);
	if (!j)
		return cli_fail(NULL, -ENOMEM);
	switch (di.format) {
	case DISK_FORMAT_LUKS:
		json_object_set_new(j, "luks", luks_json(&li));
		break;
	case DISK_FORMAT_VHD:
		json_object_set_new(
			j, "vhd",
			json_pack("{s:s, s:s, s:s, s:s}", "type",
				  di.vhd_type == VHD_TYPE_FIXED		 ? "fixed"
				  : di.vhd_type == VHD_TYPE_DYNAMIC	 ? "dynamic"
				  : di.vhd_type == VHD_TYPE_DIFFERENCING ? "differencing"
									 : "unknown",
				  "footer_checksum", di.vhd_footer_checksum_ok ? "ok" : "mismatch",
				  "header_checksum",
				  di.vhd_type == VHD_TYPE_FIXED ? "n/a"
				  : di.vhd_header_checksum_ok	? "ok"
								: "mismatch",
				  "creator_app", di.vhd_creator_app));
		if (di.vhd_type == VHD_TYPE_DYNAMIC)
			json_object_set_new(json_object_get(j, "vhd"), "block_size",
					    json_integer(di.vhd_block_size));
		break;
	case DISK_FORMAT_QCOW2:
		json_object_set_new(
			j, "qcow2",
			json_pack(
				"{s:i, s:i, s:s?, s:b, s:s, s:b}", "version", (int)di.qcow2_version,
				"cluster_size", (int)di.qcow2_cluster_size, "backing_file",
				di.qcow2_backing_file[0] ? di.qcow2_backing_file : NULL,
				"compressed_clusters", di.qcow2_has_compressed, "compression_type",
				di.qcow2_compression[0] ? di.qcow2_compression : "zlib",
				"encrypted", di.qcow2_encrypted));
		break;
	default:
		break;
	}

	if (cmd.a.json) {
		cli_print_json(j);
		json_decref(j);
		return EXIT_OK;
	}
	printf("image:         %s\n", img);
	printf("format:        %s\n", disk_format_name(di.format));
	printf("virtual size:  %s (%llu bytes)\n",
	       sealvm_format_size(di.virtual_size, a1, sizeof(a1)),
	       (unsigned long long)di.virtual_size);
	printf("file size:     %llu bytes\n", (unsigned long long)di.file_size);
	if (di.format == DISK_FORMAT_LUKS) {
		printf("luks version:  %d\n", li.version);
		printf("cipher:        %s\n", li.cipher);
		printf("mode:          %s\n", li.cipher_mode);
		printf("hash:          %s\n", li.hash);
		printf("payload at:    %llu bytes (sector %llu)\n",
		       (unsigned long long)li.payload_offset,
		       (unsigned long long)(li.payload_offset / 512));
		printf("key size:      %u bits\n", li.key_bits);
		printf("sector size:   %u\n", li.sector_size);
		printf("uuid:          %s\n", li.uuid);
		printf("keyslots:     ");
		for (int i = 0; i < li.n_keyslots; i++) {
			const struct luks_keyslot_info *k = &li.keyslots[i];
			printf(" %d (%s", k->slot, k->pbkdf);
			if (k->memory_kib)
				printf(", %u iterations, %u KiB, %u threads)", k->iterations,
				       k->memory_kib, k->parallel);
			else
				printf(" %s, %u iterations)", k->hash, k->iterations);
		}
		printf("%s\n", li.n_keyslots ? "" : " none");
	} else if (di.format == DISK_FORMAT_VHD) {
		json_t *v = json_object_get(j, "vhd");
		printf("vhd type:      %s\n", json_string_value(json_object_get(v, "type")));
		printf("footer checksum: %s\n",
		       json_string_value(json_object_get(v, "footer_checksum")));
		if (di.vhd_type != VHD_TYPE_FIXED)
			printf("header checksum: %s\n",
			       json_string_value(json_object_get(v, "header_checksum")));
		printf("creator:       %s\n", di.vhd_creator_app);
	} else if (di.format == DISK_FORMAT_QCOW2) {
		printf("qcow2 version: %u\n", di.qcow2_version);
		printf("cluster size:  %u\n", di.qcow2_cluster_size);
		printf("backing file:  %s\n",
		       di.qcow2_backing_file[0] ? di.qcow2_backing_file : "none");
		printf("compression:   %s\n",
		       di.qcow2_has_compressed
			       ? (di.qcow2_compression[0] ? di.qcow2_compression : "zlib")
			       : "none");
		printf("encrypted:     %s\n", di.qcow2_encrypted ? "yes" : "no");
	}
	json_decref(j);
	return EXIT_OK;
}
