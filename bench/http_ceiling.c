// SPDX-License-Identifier: Apache-2.0
/*
 * http_ceiling — how fast can the HTTP front answer when every answer waits
 * for a durable event, if the event itself cost nothing?
 *
 * The daemon's request ladder (lib/core/http.c, libmicrohttpd underneath)
 * serves one route, GET /v1/ceiling, a fixed small JSON, on the daemon's
 * threads (`--workers`, the I/O threads; default as the daemon's). Identity is
 * a fixed principal and every decision says yes: what is measured is the
 * ladder and the way an answer waits, in three modes:
 *
 *   none     the audit hook returns at once: no event, nothing waits (the
 *            ceiling of the ladder itself).
 *   suspend  the answer waits for its event the daemon's way: the connection
 *            is suspended (http_request_audit_wait) and one completer thread,
 *            standing for the database writer, takes the queued requests a
 *            batch at a time and resumes them (http_request_audit_done) without
 *            any I/O — an event store that costs nothing.
 *   append   as suspend, and the completer first appends the batch's events
 *            (1.3 KiB of text each, the size of a real one) to a file with one
 *            write and one fdatasync per batch — the append-only event log of
 *            decision 0020, without its chaining.
 *   log      as append, into a segment written with zeros beforehand (and
 *            overwritten as a ring): the file's size and blocks never change,
 *            so fdatasync has no file-system journal to commit, only the data
 *            (decision 0024: about half the flush time on ext4 here).
 *
 * bench/api_ceiling runs it beside nginx and sealvmd. Not a test: nothing is
 * asserted. SIGINT/SIGTERM stop it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sealvm/err.h"
#include "sealvm/http.h"
#include "sealvm/principal.h"

enum mode { MODE_NONE, MODE_SUSPEND, MODE_APPEND, MODE_LOG };

/* The log mode's segment: written with zeros and synced first, then overwritten in a ring. */
#define SEGMENT_BYTES (64u << 20)

static enum mode mode;
static int log_fd = -1;
static size_t log_off;
static char event_text[1300];

/* The queue between the I/O threads and the completer. */
struct waiting {
	struct http_request *req;
	struct waiting *next;
};
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static struct waiting *head, **tail = &head;
static bool stopping;

static void *completer_main(void *arg)
{
	(void)arg;
	struct iovec *iov = NULL;
	size_t iov_cap = 0;
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!head && !stopping)
			pthread_cond_wait(&work, &lock);
		if (!head)
			break;
		struct waiting *batch = head;
		head = NULL;
		tail = &head;
		pthread_mutex_unlock(&lock);

		int result = 0;
		struct sealvm_err err = SEALVM_ERR_INIT;
		if (mode == MODE_APPEND || mode == MODE_LOG) {
			size_t n = 0;
			for (struct waiting *w = batch; w; w = w->next)
				n++;
			if (n > iov_cap) {
				free(iov);
				iov_cap = n * 2;
				iov = calloc(iov_cap, sizeof(*iov));
				if (!iov) {
					fprintf(stderr, "http_ceiling: out of memory\n");
					exit(1);
				}
			}
			for (size_t i = 0; i < n; i++)
				iov[i] = (struct iovec){event_text, sizeof(event_text)};
			/* At most IOV_MAX entries at a time. */
			for (size_t i = 0; i < n && result == 0; i += 1024) {
				size_t k = n - i < 1024 ? n - i : 1024;
				ssize_t w;
				if (mode == MODE_APPEND) {
					w = writev(log_fd, iov + i, (int)k);
				} else {
					if (log_off + k * sizeof(event_text) > SEGMENT_BYTES)
						log_off = 0;
					w = pwritev(log_fd, iov + i, (int)k, (off_t)log_off);
					log_off += k * sizeof(event_text);
				}
				if (w < 0)
					result = -errno;
			}
			if (result == 0 && fdatasync(log_fd) < 0)
				result = -errno;
			if (result < 0)
				sealvm_err_set(&err, result, "LOG_WRITE", "the event log: %s",
					       strerror(-result));
		}
		while (batch) {
			struct waiting *w = batch;
			batch = w->next;
			http_request_audit_done(w->req, result, &err);
			free(w);
		}
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	free(iov);
	return NULL;
}

static int authenticate(struct http_request *req, struct sealvm_principal *p, void *ctx,
			struct sealvm_err *err)
{
	(void)req, (void)ctx, (void)err;
	memset(p, 0, sizeof(*p));
	p->kind = PRINCIPAL_USER;
	snprintf(p->iam_id, sizeof(p->iam_id), "IBMid-ceiling");
	snprintf(p->account_id, sizeof(p->account_id), "ceiling");
	return 0;
}

static int authorize(const struct sealvm_principal *p, const char *action,
		     const struct http_target *target, void *ctx, struct sealvm_err *err)
{
	(void)p, (void)action, (void)target, (void)ctx, (void)err;
	return 0;
}

static int audit(struct http_request *req, int status, const struct sealvm_err *failure, void *ctx,
		 struct sealvm_err *err)
{
	(void)req, (void)status, (void)failure, (void)ctx, (void)err;
	return 0;
}

static int audit_in_job(struct http_request *req, struct sqlite3 *conn, int status, void *ctx,
			struct sealvm_err *err)
{
	(void)req, (void)conn, (void)status, (void)ctx, (void)err;
	return 0;
}

static int audit_async(struct http_request *req, int status, const struct sealvm_err *failure,
		       void *ctx, struct sealvm_err *err)
{
	(void)status, (void)failure, (void)ctx;
	struct waiting *w = malloc(sizeof(*w));
	if (!w)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	w->req = req;
	w->next = NULL;
	http_request_audit_wait(req);
	pthread_mutex_lock(&lock);
	*tail = w;
	tail = &w->next;
	pthread_cond_signal(&work);
	pthread_mutex_unlock(&lock);
	return 1;
}

static int get_ceiling(struct http_request *req, struct http_response *resp, void *ctx,
		       struct sealvm_err *err)
{
	(void)req, (void)ctx, (void)err;
	static const char body[] = "{\"id\":\"ServiceId-ceiling\",\"name\":\"ceiling\"}";
	resp->status = 200;
	resp->raw_body = strdup(body);
	if (!resp->raw_body)
		return -ENOMEM;
	resp->raw_len = sizeof(body) - 1;
	resp->content_type = "application/json";
	return 0;
}

static const struct http_route routes[] = {
	{"GET", "/v1/ceiling", get_ceiling, NULL, "ceiling.thing.read", "ceiling.thing.read", 0,
	 HTTP_ROUTE_NONBLOCKING},
};

static const struct http_service service = {"ceiling", routes, 1, NULL, NULL};

/* Writes the segment's zeros and syncs them, as a log that recycles its segments would. */
static int zero_fill(int fd)
{
	static char zeros[1 << 20];
	for (size_t off = 0; off < SEGMENT_BYTES; off += sizeof(zeros))
		if (pwrite(fd, zeros, sizeof(zeros), (off_t)off) != (ssize_t)sizeof(zeros))
			return -1;
	return fsync(fd);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: http_ceiling none|suspend|append|log PORT [--workers N] [--log FILE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	if (strcmp(argv[1], "none") == 0)
		mode = MODE_NONE;
	else if (strcmp(argv[1], "suspend") == 0)
		mode = MODE_SUSPEND;
	else if (strcmp(argv[1], "append") == 0)
		mode = MODE_APPEND;
	else if (strcmp(argv[1], "log") == 0)
		mode = MODE_LOG;
	else
		usage();
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%s", argv[2]);
	unsigned workers = 0;
	const char *log_path = NULL;
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
			workers = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc)
			log_path = argv[++i];
		else
			usage();
	}
	if (mode == MODE_APPEND || mode == MODE_LOG) {
		if (!log_path)
			usage();
		int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
		log_fd = open(log_path, flags | (mode == MODE_APPEND ? O_APPEND : 0), 0600);
		if (log_fd < 0 || (mode == MODE_LOG && zero_fill(log_fd) < 0)) {
			fprintf(stderr, "http_ceiling: %s: %s\n", log_path, strerror(errno));
			return 1;
		}
	}
	memset(event_text, 'e', sizeof(event_text));
	event_text[sizeof(event_text) - 1] = '\n';

	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL); /* every thread inherits it */

	pthread_t completer;
	if (pthread_create(&completer, NULL, completer_main, NULL) != 0) {
		fprintf(stderr, "http_ceiling: cannot start the completer\n");
		return 1;
	}
	struct http_server_config cfg = {
		.listen = listen,
		.services = &service,
		.n_services = 1,
		.hooks = {authenticate, authorize, audit, audit_in_job, NULL,
			  mode == MODE_NONE ? NULL : audit_async},
	};
	if (workers)
		cfg.limits.workers = workers;
	struct http_server *srv = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	if (http_server_start(&cfg, &srv, &err) < 0) {
		fprintf(stderr, "http_ceiling: %s\n", err.message);
		return 1;
	}
	printf("ready %u\n", http_server_port(srv));
	fflush(stdout);
	int sig;
	sigwait(&stop, &sig);
	http_server_stop(srv);
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&work);
	pthread_mutex_unlock(&lock);
	pthread_join(completer, NULL);
	if (log_fd >= 0)
		close(log_fd);
	return 0;
}
