/*
 * serve_load.c — a load generator for `cpeft serve`: C clients over plain sockets, each sending
 * completions one after another (HTTP/1.1, Connection: close), the request's model chosen round
 * robin from --models; measures throughput (completion tokens and requests per second over the
 * whole run) and the latency of each request (p50 / p99), and counts failed requests (any status
 * but 200, or no usage in the answer). One JSON line on stdout, then a summary line on stderr:
 *   serve_load: clients=16 requests=64 tokens=4096 tok/s=812.3 req/s=12.7 p50_ms=1204 p99_ms=1620 failed=0
 *
 *   serve_load --port N [--host 127.0.0.1] [--clients 4] [--requests 32] [--max-tokens 64]
 *              [--models a,b,...] [--prompt TEXT] [--seconds S (run for S seconds instead of --requests)]
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *host = "127.0.0.1", *prompt = "Once upon a time";
static int port, clients = 4, max_tokens = 64;
static long requests = 32;
static double seconds;
static char *models[64];
static int n_models;
static atomic_long next, failed, tokens;
static double *lat; /* [requests] ms, or a ring of the last ones with --seconds */
static atomic_long n_lat;
static long lat_cap;
static double t_start;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One request; the completion tokens, or -1 when it failed. */
static long one(long i) {
    char body[2048], req[4096];
    const char *model = n_models ? models[i % n_models] : NULL;
    int n = snprintf(body, sizeof body, "{%s%s%s\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}", model ? "\"model\":\"" : "",
                     model ? model : "", model ? "\"," : "", prompt, max_tokens);
    int k = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nConnection: close\r\n\r\n%s", host, port, n, body);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || write(fd, req, (size_t)k) != k) { close(fd); return -1; }
    static __thread char resp[1 << 16];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof resp - 1 && (r = read(fd, resp + got, sizeof resp - 1 - got)) > 0) got += (size_t)r;
    close(fd);
    resp[got] = 0;
    const char *u = strstr(resp, "\"completion_tokens\":");
    if (strncmp(resp, "HTTP/1.1 200", 12) || !u) return -1;
    return atol(u + 20);
}

static void *client(void *arg) {
    for (;;) {
        const long i = atomic_fetch_add(&next, 1);
        if (seconds > 0 ? now() - t_start >= seconds : i >= requests) break;
        const double t0 = now();
        const long t = one(i);
        const double ms = 1e3 * (now() - t0);
        if (t < 0) atomic_fetch_add(&failed, 1);
        else atomic_fetch_add(&tokens, t);
        const long s = atomic_fetch_add(&n_lat, 1);
        lat[s % lat_cap] = ms;
    }
    return arg;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--clients")) clients = atoi(v);
        else if (!strcmp(k, "--requests")) requests = atol(v);
        else if (!strcmp(k, "--max-tokens")) max_tokens = atoi(v);
        else if (!strcmp(k, "--prompt")) prompt = v;
        else if (!strcmp(k, "--seconds")) seconds = atof(v);
        else if (!strcmp(k, "--models")) {
            char *s = strdup(v), *save = NULL;
            for (char *m = strtok_r(s, ",", &save); m && n_models < 64; m = strtok_r(NULL, ",", &save)) models[n_models++] = m;
        } else {
            fprintf(stderr, "serve_load: unknown option %s\n", k);
            return 2;
        }
    }
    if (!port || clients < 1 || clients > 1024) {
        fprintf(stderr, "usage: serve_load --port N [--clients C] [--requests R | --seconds S] [--max-tokens K] [--models a,b]\n");
        return 2;
    }
    lat_cap = seconds > 0 ? 1 << 20 : requests > 0 ? requests : 1;
    lat = calloc((size_t)lat_cap, sizeof *lat);
    pthread_t th[1024];
    t_start = now();
    for (int c = 0; c < clients; c++) pthread_create(&th[c], NULL, client, NULL);
    for (int c = 0; c < clients; c++) pthread_join(th[c], NULL);
    const double wall = now() - t_start;
    long n = atomic_load(&n_lat);
    if (n > lat_cap) n = lat_cap;
    qsort(lat, (size_t)n, sizeof *lat, cmp);
    const double p50 = n ? lat[(n - 1) / 2] : 0, p99 = n ? lat[(long)((double)(n - 1) * 0.99)] : 0;
    printf("{\"bench\": \"serve\", \"clients\": %d, \"models\": %d, \"requests\": %ld, \"max_tokens\": %d, \"tokens\": %ld, "
           "\"seconds\": %.3f, \"tokens_per_s\": %.2f, \"requests_per_s\": %.3f, \"p50_ms\": %.1f, \"p99_ms\": %.1f, \"failed\": %ld}\n",
           clients, n_models ? n_models : 1, n, max_tokens, atomic_load(&tokens), wall, (double)atomic_load(&tokens) / wall,
           (double)n / wall, p50, p99, atomic_load(&failed));
    fprintf(stderr, "serve_load: clients=%d requests=%ld tokens=%ld tok/s=%.1f req/s=%.2f p50_ms=%.0f p99_ms=%.0f failed=%ld\n", clients, n,
            atomic_load(&tokens), (double)atomic_load(&tokens) / wall, (double)n / wall, p50, p99, atomic_load(&failed));
    free(lat);
    return atomic_load(&failed) ? 1 : 0;
}
