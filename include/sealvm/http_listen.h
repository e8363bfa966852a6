/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http_listen.h — the socket half that both of sealvmd's HTTP front ends share:
 * the JSON API server (http.c, the request ladder) and the S3 listener
 * (lib/cos). One libmicrohttpd daemon with every limit set, a pool of worker
 * threads each running its own epoll loop, TLS 1.2/1.3 from a certificate and
 * key file (the key read into locked memory), the rule that a non-loopback
 * address needs TLS, the raw request target kept (a no-op unescape callback),
 * libmicrohttpd's own messages routed to our log, and a graceful stop that lets
 * in-flight requests finish. What a request means is the front end's business:
 * it passes its access, URI-log and completion callbacks.
 */
#ifndef SEALVM_HTTP_LISTEN_H
#define SEALVM_HTTP_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "sealvm/err.h"
#include "sealvm/http.h"

struct http_listener;

struct http_listener_config {
	const char *what;     /* "http", "s3": prefixes log lines and error messages */
	const char *listen;   /* "127.0.0.1:8720", "[::1]:0": numeric, no name lookup */
	const char *tls_cert; /* PEM files; both or neither */
	const char *tls_key;
	bool insecure_listen;	   /* allow a non-loopback address without TLS */
	struct http_limits limits; /* as given; zeros are filled by http_limits_defaults */
	size_t memory_limit;	   /* per-connection pool (headers + buffers) */
	size_t memory_increment;   /* 0: libmicrohttpd's */
	/*
	 * The front end's callbacks, all with @cls. @uri sees the raw request
	 * target and makes the request's state (NULL: refused, out of memory);
	 * @completed frees it. The listener counts the requests between the two
	 * (a non-NULL state), which is what its stop waits for.
	 */
	MHD_AccessHandlerCallback access;
	MHD_RequestCompletedCallback completed;
	void *(*uri)(void *cls, const char *uri, struct MHD_Connection *conn);
	void *cls;
	/*
	 * libmicrohttpd's own threads; 0: limits.threads. A front end that
	 * runs its handlers elsewhere (suspending the connection meanwhile) needs
	 * only a few, and sets @suspend to allow MHD_suspend_connection.
	 */
	unsigned io_threads;
	bool suspend;
};

/*
 * Fills the zero fields of @lim: 1024 connections, 256 per address, 30 s
 * timeout, 16 KiB of headers (at least 4 KiB), and @threads workers (0: one
 * per online CPU), I/O workers one per online CPU (at least 2); never fewer
 * connections than workers.
 */
void http_limits_defaults(struct http_limits *lim, unsigned threads);

/*
 * Starts listening (after http_limits_defaults on cfg->limits). Errors:
 * -EINVAL LISTEN_INVALID (not IPv4:PORT or [IPv6]:PORT), TLS_INCOMPLETE,
 * NON_LOOPBACK_WITHOUT_TLS; -ENOTSUP TLS_UNAVAILABLE; a TLS file that cannot
 * be read; -EADDRNOTAVAIL LISTEN_FAILED.
 */
int http_listener_start(const struct http_listener_config *cfg, struct http_listener **ret,
			struct sealvm_err *err);
/*
 * Writes one access line (log level notice). A @bounded line — a request that
 * failed without credentials — is written only up to limits.unauth_max
 * times per source address and window of limits.unauth_window_s; the rest
 * are counted, and the count is written as one "access suppressed=N" line when
 * that source shows up in a later window, or when the listener stops. So a
 * flood of bad requests cannot fill the disk through the log.
 */
void http_access_log(struct http_listener *l, const char *source, bool bounded, const char *fmt,
		     ...) __attribute__((format(printf, 4, 5)));
/* The port bound (for port 0). */
uint16_t http_listener_port(const struct http_listener *l);
/* The limits in force (defaults filled). */
const struct http_limits *http_listener_limits(const struct http_listener *l);

/*
 * True once http_listener_stop has begun: answers should close their connection.
 * False for NULL (a request may arrive before the front end has its handle).
 */
bool http_listener_stopping(const struct http_listener *l);

/*
 * Stops accepting and lets requests in flight finish (their answers go out;
 * at most limits.connection_timeout_s is waited); the daemon keeps running for
 * what is left. Once is enough; http_listener_stop does it too.
 */
void http_listener_drain(struct http_listener *l);

/*
 * http_listener_drain, then stops the daemon and frees. NULL is fine. A
 * front end that suspends connections resumes every one before this.
 */
void http_listener_stop(struct http_listener *l);

/* The client's address as text ("127.0.0.1", "::1"; "-" when unknown) into @buf. */
void http_remote_address(struct MHD_Connection *conn, char *buf, size_t size);

/* A short name for why a request ended ("completed", "client-abort", …), for access logs. */
const char *http_termination_name(enum MHD_RequestTerminationCode toe);

#endif
