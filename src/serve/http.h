/*
 * http.h — the HTTP side of `cpeft serve`: libmicrohttpd (Debian's libmicrohttpd-dev) with a thread
 * per connection, request bodies up to a limit (413 beyond it), the API of serve/api.h, server-sent
 * events for streams, and one log line per request on stderr:
 *   cpeft serve: POST /v1/completions 200 prompt=12 completion=64 ms=812.4
 * Built into the cpeft program only (the library does not link libmicrohttpd); without it at build
 * time, cp_serve_http_start says how to get it.
 */
#ifndef CP_SERVE_HTTP_H
#define CP_SERVE_HTTP_H

#include <stdint.h>

#include "core/error.h"
#include "serve/api.h"

typedef struct {
    const char *host;          /* an IPv4 address or a name (default 127.0.0.1) */
    int port;                  /* 0: any free port (cp_serve_http_port says which) */
    int64_t max_body_bytes;    /* larger request bodies are answered 413 */
    int max_connections;
} cp_serve_http_options;

typedef struct cp_serve_http cp_serve_http;

cp_status cp_serve_http_start(cp_serve_http **out, const cp_serve_http_options *o, const cp_serve_api *api);
int cp_serve_http_port(const cp_serve_http *h);
/* Stops accepting connections; those open go on. */
void cp_serve_http_quiesce(cp_serve_http *h);
/* Closes every connection (their threads joined) and frees h. */
void cp_serve_http_stop(cp_serve_http *h);

#endif
