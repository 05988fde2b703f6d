/*
 * http.c — libmicrohttpd under `cpeft serve`; see http.h. Each connection has its own thread
 * (MHD_USE_THREAD_PER_CONNECTION), so a handler may block: a whole completion waits for its job in
 * the access handler, and a stream's content reader waits for the job's next tokens. A client that
 * goes away mid-stream ends its response; freeing the response closes the stream, which cancels
 * the job (it leaves the batch at the next step).
 *
 * libmicrohttpd is opened with dlopen when `cpeft serve` starts, not linked: it pulls in GnuTLS and
 * its libraries (several MB resident), which no other command should carry.
 */
#include "serve/http.h"
#include "core/alloc.h"
#include "core/strbuf.h"
#include "serve/response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CP_WITH_MHD

cp_status cp_serve_http_start(cp_serve_http **out, const cp_serve_http_options *o, const cp_serve_api *api) {
    *out = NULL;
    return cp_error("this cpeft was built without libmicrohttpd, which `cpeft serve` needs: install it "
                    "(sudo apt-get install libmicrohttpd-dev, or scripts/install-deps.sh as root) and rebuild (make)");
}
int cp_serve_http_port(const cp_serve_http *h) { return 0; }
void cp_serve_http_quiesce(cp_serve_http *h) {}
void cp_serve_http_stop(cp_serve_http *h) {}

#else

#include <arpa/inet.h>
#include <dlfcn.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The libmicrohttpd functions used, from the shared library (mhd_open). */
static struct {
    struct MHD_Daemon *(*start_daemon)(unsigned int, uint16_t, MHD_AcceptPolicyCallback, void *, MHD_AccessHandlerCallback, void *, ...);
    void (*stop_daemon)(struct MHD_Daemon *);
    MHD_socket (*quiesce_daemon)(struct MHD_Daemon *);
    const union MHD_DaemonInfo *(*get_daemon_info)(struct MHD_Daemon *, enum MHD_DaemonInfoType, ...);
    struct MHD_Response *(*create_response_from_buffer)(size_t, void *, enum MHD_ResponseMemoryMode);
    struct MHD_Response *(*create_response_from_callback)(uint64_t, size_t, MHD_ContentReaderCallback, void *,
                                                          MHD_ContentReaderFreeCallback);
    enum MHD_Result (*add_response_header)(struct MHD_Response *, const char *, const char *);
    enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int, struct MHD_Response *);
    void (*destroy_response)(struct MHD_Response *);
    const char *(*lookup_connection_value)(struct MHD_Connection *, enum MHD_ValueKind, const char *);
} mhd;

static cp_status mhd_open(void) {
    if (mhd.start_daemon) return CP_OK;
    void *h = dlopen("libmicrohttpd.so.12", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libmicrohttpd.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) return cp_error("cannot load libmicrohttpd (%s): install it (sudo apt-get install libmicrohttpd12, or "
                            "libmicrohttpd-dev)", dlerror());
    void *f[10];
    const char *names[10] = {"MHD_start_daemon", "MHD_stop_daemon", "MHD_quiesce_daemon", "MHD_get_daemon_info",
                             "MHD_create_response_from_buffer", "MHD_create_response_from_callback", "MHD_add_response_header",
                             "MHD_queue_response", "MHD_destroy_response", "MHD_lookup_connection_value"};
    for (int i = 0; i < 10; i++)
        if (!(f[i] = dlsym(h, names[i]))) return cp_error("libmicrohttpd: no %s (a version older than 0.9.71?)", names[i]);
    /* object pointers to function pointers: POSIX guarantees dlsym's result converts */
    memcpy(&mhd.stop_daemon, &f[1], sizeof f[1]);
    memcpy(&mhd.quiesce_daemon, &f[2], sizeof f[2]);
    memcpy(&mhd.get_daemon_info, &f[3], sizeof f[3]);
    memcpy(&mhd.create_response_from_buffer, &f[4], sizeof f[4]);
    memcpy(&mhd.create_response_from_callback, &f[5], sizeof f[5]);
    memcpy(&mhd.add_response_header, &f[6], sizeof f[6]);
    memcpy(&mhd.queue_response, &f[7], sizeof f[7]);
    memcpy(&mhd.destroy_response, &f[8], sizeof f[8]);
    memcpy(&mhd.lookup_connection_value, &f[9], sizeof f[9]);
    memcpy(&mhd.start_daemon, &f[0], sizeof f[0]);
    return CP_OK;
}

struct cp_serve_http {
    struct MHD_Daemon *d;
    const cp_serve_api *api;
    cp_serve_http_options o;
    int port;
    MHD_socket quiesced;
};

/* One request's state (the connection's thread alone). */
typedef struct stream_ctx stream_ctx;
typedef struct {
    cp_strbuf body;
    int too_large;
    double t0;
    char method[16], path[256];
    int status;
    int64_t prompt_tokens, completion_tokens;
    stream_ctx *stream;
} request;

struct stream_ctx {
    cp_serve_stream *s;
    request *r; /* NULL once the request is logged and freed */
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *c = cls;
    const size_t n = cp_serve_stream_read(c->s, buf, max);
    if (c->r) c->r->completion_tokens = cp_serve_stream_tokens(c->s);
    return n ? (ssize_t)n : MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls) {
    stream_ctx *c = cls;
    if (c->r) c->r->stream = NULL;
    cp_serve_stream_close(c->s);
    cp_free(c);
}

static enum MHD_Result send_body(struct MHD_Connection *con, request *r, int status, char *body) {
    const char *text = body ? body : "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n";
    if (!body) status = 500;
    struct MHD_Response *resp = mhd.create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    cp_free(body);
    if (!resp) return MHD_NO;
    mhd.add_response_header(resp, "Content-Type", "application/json");
    r->status = status;
    const enum MHD_Result ok = mhd.queue_response(con, (unsigned)status, resp);
    mhd.destroy_response(resp);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
    cp_serve_http *h = cls;
    request *r = *state;
    if (!r) { /* the headers: refuse an announced body over the limit before reading it */
        if (!(r = cp_calloc(1, sizeof *r, "a request"))) return MHD_NO;
        cp_sb_init(&r->body);
        r->t0 = now_ms();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *state = r;
        const char *cl = mhd.lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoll(cl, NULL, 10) > h->o.max_body_bytes) r->too_large = 1;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!r->too_large && r->body.len + *upload_size > (size_t)h->o.max_body_bytes) r->too_large = 1;
        if (!r->too_large) cp_sb_append_n(&r->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_large) {
        char msg[160];
        snprintf(msg, sizeof msg, "The request body is larger than the server's limit of %lld bytes.", (long long)h->o.max_body_bytes);
        return send_body(con, r, 413, cp_serve_error_body(msg, "invalid_request_error", NULL, "request_too_large"));
    }
    if (r->body.failed) return send_body(con, r, 500, NULL);
    cp_serve_reply reply;
    cp_serve_api_handle(h->api, method, url, r->body.data ? r->body.data : "", r->body.len, &reply);
    r->prompt_tokens = reply.prompt_tokens;
    r->completion_tokens = reply.completion_tokens;
    if (!reply.stream) return send_body(con, r, reply.status, reply.body);
    stream_ctx *c = cp_calloc(1, sizeof *c, "a stream");
    if (!c) { cp_serve_stream_close(reply.stream); return send_body(con, r, 500, NULL); }
    c->s = reply.stream;
    c->r = r;
    r->stream = c;
    struct MHD_Response *resp = mhd.create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, c, stream_free);
    if (!resp) { stream_free(c); return MHD_NO; }
    mhd.add_response_header(resp, "Content-Type", "text/event-stream");
    mhd.add_response_header(resp, "Cache-Control", "no-cache");
    r->status = 200;
    const enum MHD_Result ok = mhd.queue_response(con, 200, resp);
    mhd.destroy_response(resp);
    return ok;
}

/* The log line, and the request's state freed. */
static void on_completed(void *cls, struct MHD_Connection *con, void **state, enum MHD_RequestTerminationCode why) {
    request *r = *state;
    if (!r) return;
    if (r->stream) {
        r->completion_tokens = cp_serve_stream_tokens(r->stream->s);
        r->stream->r = NULL;
    }
    fprintf(stderr, "cpeft serve: %s %s %d prompt=%lld completion=%lld ms=%.1f%s\n", r->method, r->path, r->status,
            (long long)r->prompt_tokens, (long long)r->completion_tokens, now_ms() - r->t0,
            why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed early)");
    cp_sb_free(&r->body);
    cp_free(r);
    *state = NULL;
}

cp_status cp_serve_http_start(cp_serve_http **out, const cp_serve_http_options *o, const cp_serve_api *api) {
    *out = NULL;
    if (mhd_open() != CP_OK) return CP_ERR;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    const int gai = getaddrinfo(o->host, NULL, &hints, &ai);
    if (gai != 0 || !ai) return cp_error("--host %s: %s", o->host, gai ? gai_strerror(gai) : "no IPv4 address");
    struct sockaddr_in addr;
    memcpy(&addr, ai->ai_addr, sizeof addr);
    freeaddrinfo(ai);
    addr.sin_port = htons((uint16_t)o->port);
    cp_serve_http *h = cp_calloc(1, sizeof *h, "the HTTP server");
    if (!h) return CP_ERR;
    h->api = api;
    h->o = *o;
    h->quiesced = MHD_INVALID_SOCKET;
    h->d = mhd.start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, (uint16_t)o->port,
                            NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, 300u, MHD_OPTION_END);
    if (!h->d) {
        cp_free(h);
        return cp_error("cannot listen on %s:%d (in use, or not an address of this machine?)", o->host, o->port);
    }
    const union MHD_DaemonInfo *info = mhd.get_daemon_info(h->d, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    h->port = o->port;
    if (info && getsockname(info->listen_fd, (struct sockaddr *)&bound, &len) == 0) h->port = ntohs(bound.sin_port);
    *out = h;
    return CP_OK;
}

int cp_serve_http_port(const cp_serve_http *h) { return h->port; }

void cp_serve_http_quiesce(cp_serve_http *h) {
    if (h && h->quiesced == MHD_INVALID_SOCKET) h->quiesced = mhd.quiesce_daemon(h->d);
}

void cp_serve_http_stop(cp_serve_http *h) {
    if (!h) return;
    mhd.stop_daemon(h->d);
    if (h->quiesced != MHD_INVALID_SOCKET) close(h->quiesced);
    cp_free(h);
}

#endif
