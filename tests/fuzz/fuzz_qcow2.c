// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_qcow2.c — the qcow2 reader of lib/diskfmt on arbitrary files; the small pieces
 * check the coalescing of contiguous clusters.
 */
#include "fuzz_disk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return fuzz_disk_input(data, size, DISK_FORMAT_QCOW2, "fuzz_qcow2");
}
