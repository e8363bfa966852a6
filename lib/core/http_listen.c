// SPDX-License-Identifier: Apache-2.0
/*
 * http_listen.c — the libmicrohttpd daemon both HTTP front ends run on
 * (see include/sealvm/http_listen.h): address parsing, the TLS and loopback
 * rules, every limit, the port bound, and the graceful stop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sealvm/bound.h"
#include "sealvm/file.h"
#include "sealvm/http_listen.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"
#include "sealvm/secret.h"

#define HTTP_DEFAULT_MAX_CONNECTIONS 1024u
#define HTTP_DEFAULT_MAX_PER_IP 256u
#define HTTP_DEFAULT_TIMEOUT_S 30u
#define HTTP_DEFAULT_UNAUTH_LOG_MAX 100u
#define HTTP_DEFAULT_UNAUTH_LOG_WINDOW_S 60u
#define HTTP_DEFAULT_MAX_HEADER_BYTES ((size_t)16 * 1024)
#define HTTP_MIN_HEADER_BYTES ((size_t)4 * 1024)
#define HTTP_TLS_FILE_MAX ((size_t)1024 * 1024)
#define HTTP_TLS_KEY_MAX ((size_t)32 * 1024)
/* TLS 1.2 and 1.3 only, GnuTLS's priority syntax. */
#define HTTP_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct http_listener {
	struct MHD_Daemon *daemon;
	char what[16];
	struct http_limits limits;
	uint16_t port;
	char *tls_cert;
	struct sealvm_secret *tls_key;
	/* the front end's callbacks, wrapped to count requests in flight */
	void *(*uri)(void *cls, const char *uri, struct MHD_Connection *conn);
	MHD_RequestCompletedCallback completed;
	void *cls;
	atomic_uint in_flight; /* requests begun and not yet completed */
	atomic_bool stopping;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	struct sealvm_bound *log_bound; /* access lines of unauthenticated failures */
};

void http_limits_defaults(struct http_limits *lim, unsigned threads)
{
	if (!lim->max_connections)
		lim->max_connections = HTTP_DEFAULT_MAX_CONNECTIONS;
	if (!lim->max_per_ip)
		lim->max_per_ip = HTTP_DEFAULT_MAX_PER_IP;
	if (!lim->connection_timeout_s)
		lim->connection_timeout_s = HTTP_DEFAULT_TIMEOUT_S;
	if (!lim->max_header_bytes)
		lim->max_header_bytes = HTTP_DEFAULT_MAX_HEADER_BYTES;
	lim->max_header_bytes = MAX(lim->max_header_bytes, HTTP_MIN_HEADER_BYTES);
	if (!lim->threads)
		lim->threads = threads;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (!lim->threads)
		lim->threads = cpus > 0 ? (unsigned)MIN(cpus, 256) : 1;
	if (!lim->workers)
		lim->workers = (unsigned)MAX(cpus > 0 ? MIN(cpus, 256) : 1, 2);
	lim->max_connections = MAX(lim->max_connections, lim->threads);
	if (!lim->unauth_max)
		lim->unauth_max = HTTP_DEFAULT_UNAUTH_LOG_MAX;
	if (!lim->unauth_window_s)
		lim->unauth_window_s = HTTP_DEFAULT_UNAUTH_LOG_WINDOW_S;
}

static void log_suppressed(const struct sealvm_bound_count *due, void *arg)
{
	const struct http_listener *l = arg;
	log_notice("%s access suppressed=%u remote=%s window_start=%lld window_s=%u (requests that "
		   "failed without credentials, beyond %u a window, counted instead of logged)",
		   l->what, due->suppressed, due->source, (long long)due->window_start,
		   due->window_s, l->limits.unauth_max);
}

void http_access_log(struct http_listener *l, const char *source, bool bounded, const char *fmt,
		     ...)
{
	if (bounded && l && l->log_bound) {
		struct sealvm_bound_count due;
		bool admit = sealvm_bound_admit(l->log_bound, source, &due);
		if (due.suppressed)
			log_suppressed(&due, l);
		if (!admit)
			return;
	}
	va_list ap;
	va_start(ap, fmt);
	sealvm_vlog(SEALVM_LOG_NOTICE, fmt, ap);
	va_end(ap);
}

static _printf_(2, 0) void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	const struct http_listener *l = cls;
	char buf[512];
	vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = 0;
	log_info("%s: %s", l->what, buf);
}

/* A request begins: the front end makes its state (NULL: out of memory, not counted). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct http_listener *l = cls;
	void *req = l->uri(l->cls, uri, conn);
	if (req)
		atomic_fetch_add(&l->in_flight, 1);
	return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_listener *l = cls;
	bool counted = *con_cls != NULL;
	l->completed(l->cls, conn, con_cls, toe);
	if (counted && atomic_fetch_sub(&l->in_flight, 1) == 1 && atomic_load(&l->stopping)) {
		pthread_mutex_lock(&l->lock);
		pthread_cond_broadcast(&l->idle);
		pthread_mutex_unlock(&l->lock);
	}
}

/* Keep the path raw: SigV4 and {param} decoding need the bytes the client sent. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	return strlen(s);
}

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

const char *http_termination_name(enum MHD_RequestTerminationCode toe)
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

void http_remote_address(struct MHD_Connection *conn, char *buf, size_t size)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const char *r = NULL;
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			r = inet_ntop(AF_INET,
				      &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
				      buf, (socklen_t)size);
		else if (sa->sa_family == AF_INET6)
			r = inet_ntop(AF_INET6,
				      &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
				      buf, (socklen_t)size);
	}
	if (!r)
		snprintf(buf, size, "-");
}

static void listener_free(struct http_listener *l)
{
	if (!l)
		return;
	free(l->tls_cert);
	sealvm_secret_free(l->tls_key);
	pthread_cond_destroy(&l->idle);
	pthread_mutex_destroy(&l->lock);
	sealvm_bound_free(l->log_bound);
	free(l);
}

static void listener_freep(struct http_listener **l)
{
	listener_free(*l);
}

int http_listener_start(const struct http_listener_config *cfg, struct http_listener **ret,
			struct sealvm_err *err)
{
	_cleanup_(listener_freep) struct http_listener *l = NULL;
	struct sockaddr_storage ss;
	bool loopback = false;
	int r;

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

	l = calloc(1, sizeof(*l));
	if (!l)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->idle, NULL);
	snprintf(l->what, sizeof(l->what), "%s", cfg->what ? cfg->what : "http");
	l->limits = cfg->limits;
	http_limits_defaults(&l->limits, 0);
	if (sealvm_bound_new(l->limits.unauth_max, l->limits.unauth_window_s, &l->log_bound) < 0)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	l->uri = cfg->uri;
	l->completed = cfg->completed;
	l->cls = cfg->cls;
	const struct http_limits *lim = &l->limits;

	if (tls) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			return sealvm_err_set(err, -ENOTSUP, "TLS_UNAVAILABLE",
					      "this libmicrohttpd was built without TLS support");
		r = read_cert(cfg->tls_cert, &l->tls_cert, err);
		if (r < 0)
			return r;
		r = sealvm_secret_read_file(cfg->tls_key, HTTP_TLS_KEY_MAX, &l->tls_key, err);
		if (r < 0)
			return r;
	}

	unsigned flags =
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (tls)
		flags |= MHD_USE_TLS;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (cfg->suspend)
		flags |= MHD_ALLOW_SUSPEND_RESUME;

	struct MHD_OptionItem opts[24];
	size_t k = 0;
#define OPT(o, v, p) opts[k++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (p)}
	/* First, so that libmicrohttpd logs nothing on its own. */
	OPT(MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, l);
	OPT(MHD_OPTION_SOCK_ADDR, 0, &ss);
	OPT(MHD_OPTION_CONNECTION_LIMIT, lim->max_connections, NULL);
	OPT(MHD_OPTION_PER_IP_CONNECTION_LIMIT, lim->max_per_ip, NULL);
	OPT(MHD_OPTION_CONNECTION_TIMEOUT, lim->connection_timeout_s, NULL);
	OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->memory_limit, NULL);
	if (cfg->memory_increment)
		OPT(MHD_OPTION_CONNECTION_MEMORY_INCREMENT, cfg->memory_increment, NULL);
	OPT(MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL);
	OPT(MHD_OPTION_URI_LOG_CALLBACK, on_uri, l);
	OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, l);
	OPT(MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, NULL);
	unsigned io = cfg->io_threads ? cfg->io_threads : lim->threads;
	if (io > 1)
		OPT(MHD_OPTION_THREAD_POOL_SIZE, io, NULL);
	if (tls) {
		OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, l->tls_cert);
		OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, l->tls_key->data);
		OPT(MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)HTTP_TLS_PRIORITIES);
	}
	OPT(MHD_OPTION_END, 0, NULL);
#undef OPT

	l->daemon = MHD_start_daemon(flags, 0, NULL, NULL, cfg->access, cfg->cls, MHD_OPTION_ARRAY,
				     opts, MHD_OPTION_END);
	if (!l->daemon)
		return sealvm_err_set(
			err, -EADDRNOTAVAIL, "LISTEN_FAILED",
			"cannot start the %s listener on %s (address in use, not local, "
			"or a bad TLS certificate/key; the log says which)",
			l->what, cfg->listen);

	const union MHD_DaemonInfo *di = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_BIND_PORT);
	l->port = di ? di->port : 0;
	if (l->port == 0) {
		/* Older builds do not report it: ask the socket. */
		di = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_LISTEN_FD);
		struct sockaddr_storage b;
		socklen_t bl = sizeof(b);
		if (di && getsockname(di->listen_fd, (struct sockaddr *)&b, &bl) == 0)
			l->port = ntohs(b.ss_family == AF_INET6
						? ((struct sockaddr_in6 *)&b)->sin6_port
						: ((struct sockaddr_in *)&b)->sin_port);
	}
	*ret = TAKE_PTR(l);
	return 0;
}

uint16_t http_listener_port(const struct http_listener *l)
{
	return l ? l->port : 0;
}

const struct http_limits *http_listener_limits(const struct http_listener *l)
{
	return &l->limits;
}

bool http_listener_stopping(const struct http_listener *l)
{
	return l && atomic_load(&((struct http_listener *)l)->stopping);
}

void http_listener_drain(struct http_listener *l)
{
	if (!l || atomic_exchange(&l->stopping, true))
		return;
	MHD_socket fd = MHD_quiesce_daemon(l->daemon);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	/*
	 * In-flight requests finish and their answers go out; a client that
	 * stalls is cut off by the connection timeout, and past it we stop
	 * regardless.
	 */
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)l->limits.connection_timeout_s;
	pthread_mutex_lock(&l->lock);
	while (atomic_load(&l->in_flight) > 0) {
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
		pthread_cond_timedwait(&l->idle, &l->lock, &slice);
	}
	pthread_mutex_unlock(&l->lock);
	if (atomic_load(&l->in_flight) > 0)
		log_warning("%s: stopping with %u request(s) still in flight", l->what,
			    atomic_load(&l->in_flight));
}

void http_listener_stop(struct http_listener *l)
{
	if (!l)
		return;
	http_listener_drain(l);
	MHD_stop_daemon(l->daemon);
	/* what the bound left out since the last line of each source */
	if (l->log_bound)
		sealvm_bound_drain(l->log_bound, log_suppressed, l);
	listener_free(l);
}
