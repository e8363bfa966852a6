// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_vhd.c — the VHD reader of lib/diskfmt (fixed, dynamic) on arbitrary files; the small
 * pieces check the per-sector bitmap handling.
 */
#include "fuzz_disk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_disk_input(data, size, DISK_FORMAT_VHD, "fuzz_vhd");
}
