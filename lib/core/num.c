// SPDX-License-Identifier: Apache-2.0
/*
 * num.c — strict parsing of numbers typed by users and clients (see num.h).
 *
 * strtoull accepts signs, spaces and silently wraps "-1"; these helpers
 * accept plain decimal digits only and report overflow and range.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sealvm/macro.h"
#include "sealvm/num.h"

static int parse_digits(const char *s, size_t n, uint64_t *ret)
{
	uint64_t v = 0;

	if (n == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

int sealvm_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	uint64_t v;
	int r;

	if (!s)
		return -EINVAL;
	r = parse_digits(s, strlen(s), &v);
	if (r < 0)
		return r;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int sealvm_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret)
{
	uint64_t v;
	int r = sealvm_parse_u64(s, min, max, &v);
	if (r < 0)
		return r;
	*ret = (unsigned)v;
	return 0;
}

int sealvm_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {
		{"", 0},    {"B", 0},	 {"K", 10},   {"KiB", 10}, {"KB", 10},
		{"M", 20},  {"MiB", 20}, {"MB", 20},  {"G", 30},   {"GiB", 30},
		{"GB", 30}, {"T", 40},	 {"TiB", 40}, {"TB", 40},
	};
	size_t n, digits = 0;
	uint64_t v;
	int r;

	if (!s)
		return -EINVAL;
	n = strlen(s);
	while (digits < n && s[digits] >= '0' && s[digits] <= '9')
		digits++;
	r = parse_digits(s, digits, &v);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ELEMENTSOF(units); i++) {
		if (strcmp(s + digits, units[i].suffix) != 0)
			continue;
		if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
			return -ERANGE;
		v <<= units[i].shift;
		if (v < min || v > max)
			return -ERANGE;
		*ret = v;
		return 0;
	}
	return -EINVAL;
}

const char *sealvm_format_size(uint64_t bytes, char *buf, unsigned buflen)
{
	static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	unsigned i = 0;
	double v = (double)bytes;

	while (v >= 1024 && i + 1 < ELEMENTSOF(names)) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, buflen, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, buflen, "%.1f %s", v, names[i]);
	return buf;
}
