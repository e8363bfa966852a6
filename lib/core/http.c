// SPDX-License-Identifier: Apache-2.0
/*
 * http.c — the HTTP server: libmicrohttpd set up with every limit, feeding
 * each request through the ladder (http_ladder.c) and sending what it made.
 *
 * One daemon with a pool of worker threads, each running its own epoll loop;
 * handlers and hooks run on those threads, concurrently. A request costs one
 * allocation for its state (raw target + decoded-path room in the same
 * block), one for its body when it has one, and one for the serialised
 * response. The raw path is kept: a no-op unescape callback stops
 * libmicrohttpd from decoding it, and the raw target (query included) is
 * copied from the URI-log callback, before libmicrohttpd splits it.
 *
 * This file must never log a header (the Authorization header above all), a
 * body, a query string (presigned URLs carry signatures) or a token; the
 * access log names the path without its query.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sealvm/file.h"
#include "sealvm/log.h"
#include "http_internal.h"

#define HTTP_DEFAULT_MAX_CONNECTIONS 1024u
#define HTTP_DEFAULT_MAX_PER_IP 256u
#define HTTP_DEFAULT_TIMEOUT_S 30u
#define HTTP_DEFAULT_MAX_HEADER_BYTES ((size_t)16 * 1024)
#define HTTP_MIN_HEADER_BYTES ((size_t)4 * 1024)
#define HTTP_TLS_FILE_MAX ((size_t)1024 * 1024)
#define HTTP_TLS_KEY_MAX ((size_t)32 * 1024)
/* Body bytes we read and drop after a too-large chunked body, before closing instead. */
#define HTTP_DISCARD_MAX ((size_t)1024 * 1024)
/* TLS 1.2 and 1.3 only, GnuTLS's priority syntax. */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* What we send when even an error body cannot be built (no memory). */
static const char fallback_body[] =
	"{\"error\":{\"code\":503,\"reason\":\"NO_MEMORY\",\"message\":\"the server is out of memory; retry later\"}}";

/* ---- libmicrohttpd callbacks ---------------------------------------------- */

static _printf_(2, 0) void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	log_info("http: %s", buf);
}

/* Keep the path raw: SigV4 and {param} decoding need the bytes the client sent. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	return strlen(s);
}

/* Called with the whole request target before libmicrohttpd splits off the query. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct http_server *srv = cls;
	size_t n = strlen(uri);
	/* uri copy, then room for the decoded path parameters (each NUL-terminated). */
	struct http_request *req = calloc(1, sizeof(*req) + 2 * (n + 1) + HTTP_MAX_PARAMS);
	if (!req)
		return NULL;
	req->srv = srv;
	req->conn = conn;
	memcpy(req->uri, uri, n + 1);
	req->path = req->uri;
	char *q = memchr(req->uri, '?', n);
	if (q) {
		*q = 0;
		req->query = q + 1;
		req->path_len = (size_t)(q - req->uri);
	} else {
		req->query = req->uri + n;
		req->path_len = n;
	}
	req->decoded = req->uri + n + 1;
	clock_gettime(CLOCK_MONOTONIC, &req->t0);
	atomic_fetch_add(&srv->in_flight, 1);
	return req;
}

static void remote_init(struct http_request *req)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const char *r = NULL;
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			r = inet_ntop(AF_INET,
				      &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
				      req->remote, sizeof(req->remote));
		else if (sa->sa_family == AF_INET6)
			r = inet_ntop(AF_INET6,
				      &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
				      req->remote, sizeof(req->remote));
	}
	if (!r)
		snprintf(req->remote, sizeof(req->remote), "-");
}

struct dumpbuf {
	char *p;
	size_t len, cap;
};

static int dump_cb(const char *buf, size_t size, void *data)
{
	struct dumpbuf *d = data;
	if (d->len + size + 1 > d->cap) {
		size_t cap = MAX(d->cap * 2, d->len + size + 1);
		cap = MAX(cap, (size_t)256);
		char *p = realloc(d->p, cap);
		if (!p)
			return -1;
		d->p = p;
		d->cap = cap;
	}
	memcpy(d->p + d->len, buf, size);
	d->len += size;
	return 0;
}

static bool has_header(const struct http_response *resp, const char *name)
{
	for (unsigned i = 0; i < resp->n_headers; i++)
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return true;
	return false;
}

/* Queues @resp (always consumed) for @req. */
static enum MHD_Result send_response(struct http_request *req, struct http_response *resp)
{
	struct MHD_Response *r = NULL;
	int status = resp->status ? resp->status : 500;
	const char *ctype = resp->content_type ? resp->content_type : "application/json";
	size_t len = 0;

	if (resp->body) {
		struct dumpbuf d = {0};
		if (json_dump_callback(resp->body, dump_cb, &d, JSON_COMPACT) == 0) {
			len = d.len;
			r = MHD_create_response_from_buffer(len, d.p, MHD_RESPMEM_MUST_FREE);
		}
		if (!r)
			free(d.p);
	} else if (resp->raw_body) {
		len = resp->raw_len;
		r = MHD_create_response_from_buffer(len, resp->raw_body, MHD_RESPMEM_MUST_FREE);
		if (r)
			resp->raw_body = NULL;
	} else if (status < 400) {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (!r) {
		/* No memory, or an error without a body: still JSON, never empty. */
		status = 503;
		ctype = "application/json";
		len = sizeof(fallback_body) - 1;
		r = MHD_create_response_from_buffer(len, (void *)fallback_body,
						    MHD_RESPMEM_PERSISTENT);
		if (!r) {
			http_response_done(resp);
			return MHD_NO;
		}
	}

	if (len > 0)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, "correlation-id", req->id);
	MHD_add_response_header(r, "x-request-id", req->id);
	for (unsigned i = 0; i < resp->n_headers; i++)
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	if (!has_header(resp, "Cache-Control"))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (atomic_load(&req->srv->stopping))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");

	enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)status, r);
	MHD_destroy_response(r);
	if (ret == MHD_YES) {
		req->responded = true;
		req->status = status;
		req->bytes_out = len;
	}
	http_response_done(resp);
	return ret;
}

/* Whether a body follows the headers (declared, or chunked). */
static bool request_has_body(const struct http_request *req)
{
	const char *cl = http_request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && strcmp(cl, "0") != 0)
		return true;
	return http_request_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct http_request *req = *con_cls;
	struct http_response resp = {0};

	if (!req)
		return MHD_NO; /* the URI callback found no memory: drop the connection */

	if (!req->started) {
		req->started = true;
		req->method = method;
		remote_init(req);
		if (http_ladder_begin(req, &resp) < 0) {
			if (request_has_body(req))
				return send_response(req, &resp); /* not a byte of it is read */
			req->early = resp;
			req->has_early = true;
		}
		return MHD_YES;
	}

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->responded || req->has_early)
			return MHD_YES;
		if (http_ladder_body(req, upload_data, n) < 0) {
			/*
			 * The answer (413) can only go out once the body is in;
			 * we drop what still arrives, up to a bound, and past it
			 * we close the connection (the request is still audited).
			 */
			req->discarded += n;
			if (req->discarded > HTTP_DISCARD_MAX) {
				http_ladder_finish(req, &resp);
				http_response_done(&resp);
				return MHD_NO;
			}
		}
		return MHD_YES;
	}

	if (req->responded)
		return MHD_YES;
	if (req->has_early) {
		req->has_early = false;
		resp = req->early;
		memset(&req->early, 0, sizeof(req->early));
		return send_response(req, &resp);
	}
	http_ladder_finish(req, &resp);
	return send_response(req, &resp);
}

static const char *termination_name(enum MHD_RequestTerminationCode toe)
{
	switch (toe) {
	case MHD_REQUEST_TERMINATED_COMPLETED_OK:
		return "completed";
	case MHD_REQUEST_TERMINATED_WITH_ERROR:
		return "error";
	case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
		return "timeout";
	case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
		return "shutdown";
	case MHD_REQUEST_TERMINATED_READ_ERROR:
		return "read-error";
	case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
		return "client-abort";
	default:
		return "unknown";
	}
}

static void access_log(const struct http_request *req, enum MHD_RequestTerminationCode toe)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long us = (long long)(t1.tv_sec - req->t0.tv_sec) * 1000000 +
		       (t1.tv_nsec - req->t0.tv_nsec) / 1000;
	char status[16];
	if (req->responded)
		snprintf(status, sizeof(status), "%d", req->status);
	else
		snprintf(status, sizeof(status), "-");

	/* The path only: a query may carry a presigned signature. */
	log_notice(
		"access id=%s remote=%s method=%s path=%.512s status=%s bytes=%zu ms=%lld.%03lld "
		"principal=%s%s%s",
		req->id[0] ? req->id : "-", req->remote[0] ? req->remote : "-",
		req->method ? req->method : "-", req->path, status, req->bytes_out, us / 1000,
		us % 1000, req->authenticated ? req->principal.iam_id : "-",
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " end=",
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : termination_name(toe));
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	struct http_request *req = *con_cls;

	if (!req)
		return;
	*con_cls = NULL;
	if (srv->cfg.access_log)
		access_log(req, toe);
	http_request_free(req);
	if (atomic_fetch_sub(&srv->in_flight, 1) == 1 && atomic_load(&srv->stopping)) {
		pthread_mutex_lock(&srv->lock);
		pthread_cond_broadcast(&srv->idle);
		pthread_mutex_unlock(&srv->lock);
	}
}

/* ---- set-up ------------------------------------------------------------------ */

/* "127.0.0.1:8720", "[::1]:0": numeric addresses only, no name resolution. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, bool *ret_loopback,
			struct sealvm_err *err)
{
	char host[64];
	const char *port_s;

	memset(ss, 0, sizeof(*ss));
	if (!s || !*s)
		return sealvm_err_set(err, -EINVAL, "LISTEN_INVALID", "no listen address given");
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host))
			goto bad;
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = 0;
		port_s = e + 2;
	} else {
		const char *c = strrchr(s, ':');
		if (!c || (size_t)(c - s) >= sizeof(host) || memchr(s, ':', (size_t)(c - s)))
			goto bad;
		memcpy(host, s, (size_t)(c - s));
		host[c - s] = 0;
		port_s = c + 1;
	}
	unsigned long port = 0;
	if (!*port_s || strlen(port_s) > 5)
		goto bad;
	for (const char *p = port_s; *p; p++) {
		if (*p < '0' || *p > '9')
			goto bad;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port > 65535)
		goto bad;

	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (s[0] != '[' && inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*ret_loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
		return 0;
	}
	if (s[0] == '[' && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		const uint8_t *a = in6->sin6_addr.s6_addr;
		*ret_loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
				(IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && a[12] == 127);
		return 0;
	}
bad:
	return sealvm_err_set(
		err, -EINVAL, "LISTEN_INVALID",
		"listen address '%.64s' is not IPv4:PORT or [IPv6]:PORT with a numeric "
		"address and a port of 0-65535 (e.g. 127.0.0.1:8720, [::1]:8720)",
		s);
}

/* Reads a certificate chain (public) into a NUL-terminated heap string. */
static int read_cert(const char *path, char **ret, struct sealvm_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat st;

	if (fd < 0)
		return sealvm_err_set_errno(err, negative_errno(), "TLS_CERT_UNREADABLE",
					    "cannot open the TLS certificate %s", path);
	if (fstat(fd, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), "TLS_CERT_UNREADABLE",
					    "cannot stat the TLS certificate %s", path);
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (size_t)st.st_size > HTTP_TLS_FILE_MAX)
		return sealvm_err_set(
			err, -EINVAL, "TLS_CERT_UNREADABLE",
			"the TLS certificate %s must be a regular PEM file of at most %zu bytes",
			path, HTTP_TLS_FILE_MAX);
	_cleanup_free_ char *buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory reading %s", path);
	ssize_t n = sealvm_pread_all(fd, buf, (size_t)st.st_size, 0);
	if (n < 0)
		return sealvm_err_set_errno(err, (int)n, "TLS_CERT_UNREADABLE",
					    "cannot read the TLS certificate %s", path);
	buf[n] = 0;
	*ret = TAKE_PTR(buf);
	return 0;
}

static void server_free(struct http_server *srv)
{
	if (!srv)
		return;
	free(srv->routes);
	free(srv->tls_cert);
	sealvm_secret_free(srv->tls_key);
	pthread_cond_destroy(&srv->idle);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
}

static void server_freep(struct http_server **srv)
{
	server_free(*srv);
}

int http_server_start(const struct http_server_config *cfg, struct http_server **ret,
		      struct sealvm_err *err)
{
	_cleanup_(server_freep) struct http_server *srv = NULL;
	struct sockaddr_storage ss;
	bool loopback = false;
	int r;

	if (!cfg || !ret)
		return sealvm_err_set(err, -EINVAL, NULL, "no server configuration");
	r = parse_listen(cfg->listen, &ss, &loopback, err);
	if (r < 0)
		return r;
	bool tls = cfg->tls_cert || cfg->tls_key;
	if (tls && !(cfg->tls_cert && cfg->tls_key))
		return sealvm_err_set(
			err, -EINVAL, "TLS_INCOMPLETE",
			"TLS needs both a certificate and a key file; only one was given");
	if (!tls && !loopback && !cfg->insecure_listen)
		return sealvm_err_set(
			err, -EINVAL, "NON_LOOPBACK_WITHOUT_TLS",
			"refusing to listen on %s without TLS: give a certificate and key, "
			"listen on a loopback address, or allow it explicitly (insecure)",
			cfg->listen);
	if (!cfg->hooks.audit)
		return sealvm_err_set(err, -EINVAL, "HOOKS_MISSING",
				      "the HTTP server needs an audit hook (audit is fail-closed)");
	for (size_t s = 0; s < cfg->n_services; s++)
		for (size_t i = 0; i < cfg->services[s].n_routes; i++)
			if (!(cfg->services[s].routes[i].flags & HTTP_ROUTE_PUBLIC) &&
			    (!cfg->hooks.authenticate || !cfg->hooks.authorize))
				return sealvm_err_set(
					err, -EINVAL, "HOOKS_MISSING",
					"routes that are not public need the authenticate and authorize hooks");

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&srv->lock, NULL);
	pthread_cond_init(&srv->idle, NULL);
	srv->cfg = *cfg;
	struct http_limits *lim = &srv->cfg.limits;
	if (!lim->max_connections)
		lim->max_connections = HTTP_DEFAULT_MAX_CONNECTIONS;
	if (!lim->max_per_ip)
		lim->max_per_ip = HTTP_DEFAULT_MAX_PER_IP;
	if (!lim->connection_timeout_s)
		lim->connection_timeout_s = HTTP_DEFAULT_TIMEOUT_S;
	if (!lim->max_header_bytes)
		lim->max_header_bytes = HTTP_DEFAULT_MAX_HEADER_BYTES;
	lim->max_header_bytes = MAX(lim->max_header_bytes, HTTP_MIN_HEADER_BYTES);
	if (!lim->threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		lim->threads = n > 0 ? (unsigned)MIN(n, 256) : 1;
	}
	lim->max_connections = MAX(lim->max_connections, lim->threads);

	r = http_routes_compile(srv, err);
	if (r < 0)
		return r;

	if (tls) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			return sealvm_err_set(err, -ENOTSUP, "TLS_UNAVAILABLE",
					      "this libmicrohttpd was built without TLS support");
		r = read_cert(cfg->tls_cert, &srv->tls_cert, err);
		if (r < 0)
			return r;
		r = sealvm_secret_read_file(cfg->tls_key, HTTP_TLS_KEY_MAX, &srv->tls_key, err);
		if (r < 0)
			return r;
	}

	unsigned flags =
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (tls)
		flags |= MHD_USE_TLS;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;

	/*
	 * libmicrohttpd reads the request line and headers into a buffer of
	 * about half its per-connection pool; the rest holds the response head.
	 */
	size_t pool = lim->max_header_bytes + 4096;

	struct MHD_OptionItem opts[24];
	size_t k = 0;
#define OPT(o, v, p) opts[k++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (p)}
	/* First, so that libmicrohttpd logs nothing on its own. */
	OPT(MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv);
	OPT(MHD_OPTION_SOCK_ADDR, 0, &ss);
	OPT(MHD_OPTION_CONNECTION_LIMIT, lim->max_connections, NULL);
	OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, lim->max_per_ip, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, lim->connection_timeout_s, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool, NULL);
	OPT(MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL);
	OPT(MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv);
	OPT(MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, srv);
	if (lim->threads > 1)
		OPT(MHD_OPTION_THREAD_POOL_SIZE, lim->threads, NULL);
	if (tls) {
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key->data);
		OPT(MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)HTTP_TLS_PRIORITIES);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT

	srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_ARRAY, opts,
				       MHD_OPTION_END);
	if (!srv->daemon)
		return sealvm_err_set(
			err, -EADDRNOTAVAIL, "LISTEN_FAILED",
			"cannot start the HTTP server on %s (address in use, not local, "
			"or a bad TLS certificate/key; the log says which)",
			cfg->listen);

	const union MHD_DaemonInfo *di =
		MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = di ? di->port : 0;
	if (srv->port == 0) {
		/* Older builds do not report it: ask the socket. */
		di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_LISTEN_FD);
		struct sockaddr_storage b;
		socklen_t bl = sizeof(b);
		if (di && getsockname(di->listen_fd, (struct sockaddr *)&b, &bl) == 0)
			srv->port = ntohs(b.ss_family == AF_INET6
						  ? ((struct sockaddr_in6 *)&b)->sin6_port
						  : ((struct sockaddr_in *)&b)->sin_port);
	}
	*ret = TAKE_PTR(srv);
	return 0;
}

uint16_t http_server_port(const struct http_server *srv)
{
	return srv ? srv->port : 0;
}

void http_server_stop(struct http_server *srv)
{
	if (!srv)
		return;
	if (srv->daemon) {
		atomic_store(&srv->stopping, true);
		MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
		/*
		 * In-flight requests finish and their answers go out; a client
		 * that stalls is cut off by the connection timeout, and past it
		 * we stop regardless.
		 */
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += (time_t)srv->cfg.limits.connection_timeout_s;
		pthread_mutex_lock(&srv->lock);
		while (atomic_load(&srv->in_flight) > 0) {
			struct timespec now, slice;
			clock_gettime(CLOCK_REALTIME, &now);
			if (now.tv_sec > deadline.tv_sec ||
			    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
				break;
			slice = now;
			slice.tv_nsec += 50 * 1000 * 1000;
			if (slice.tv_nsec >= 1000000000) {
				slice.tv_sec++;
				slice.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&srv->idle, &srv->lock, &slice);
		}
		pthread_mutex_unlock(&srv->lock);
		if (atomic_load(&srv->in_flight) > 0)
			log_warning("http: stopping with %u request(s) still in flight",
				    atomic_load(&srv->in_flight));
		MHD_stop_daemon(srv->daemon);
	}
	server_free(srv);
}
