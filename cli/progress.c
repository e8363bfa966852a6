// SPDX-License-Identifier: Apache-2.0
/*
 * progress.c — a one-line progress bar on stderr for long image operations.
 *
 * Redraws in place with '\r' at most a few times a second, shows bytes done,
 * throughput and time left, and ends with a newline. Enabled on a terminal
 * by default; --progress/--no-progress override.
 */
#include <stdlib.h>
#include <time.h>

#include "sealvm/num.h"

#include "cli.h"

struct cli_progress {
	const char *label;
	bool enabled;
	bool drawn;
	double start;
	double last;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct cli_progress *cli_progress_new(const char *label, bool enabled)
{
	struct cli_progress *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->label = label;
	p->enabled = enabled;
	p->start = now();
	return p;
}

void cli_progress_update(uint64_t done, uint64_t total, void *userdata)
{
	struct cli_progress *p = userdata;
	char a[32], b[32], bar[31];
	double t, el, rate;
	unsigned width = sizeof(bar) - 1, fill;

	if (!p || !p->enabled)
		return;
	t = now();
	if (done < total && p->drawn && t - p->last < 0.2)
		return;
	p->last = t;
	el = t - p->start;
	rate = el > 0 ? (double)done / el : 0;
	fill = total ? (unsigned)((double)done / (double)total * width) : width;
	for (unsigned i = 0; i < width; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[width] = 0;
	fprintf(stderr, "\r%s [%s] %3u%% %s / %s  %.0f MB/s", p->label, bar,
		total ? (unsigned)((double)done * 100 / (double)total) : 100,
		sealvm_format_size(done, a, sizeof(a)), sealvm_format_size(total, b, sizeof(b)),
		rate / 1e6);
	if (rate > 0 && done < total)
		fprintf(stderr, "  %.0f s left  ", (double)(total - done) / rate);
	else
		fprintf(stderr, "              ");
	fflush(stderr);
	p->drawn = true;
}

void cli_progress_finish(struct cli_progress *p)
{
	if (!p)
		return;
	if (p->enabled && p->drawn)
		fputc('\n', stderr);
	free(p);
}
