/*
 * memstat.c — the process's resident memory; see memstat.h.
 */
#include "core/memstat.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int cp_mem_now(cp_mem_usage *u) {
    memset(u, 0, sizeof *u);
#ifdef __linux__
    /* statm: size resident shared text lib data dt, in pages; "shared" counts resident file-backed
     * (and shmem) pages, so resident - shared is the anonymous memory */
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size, resident, shared;
    int n = fscanf(f, "%llu %llu %llu", &size, &resident, &shared);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    if (n != 3 || page <= 0 || shared > resident) return 0;
    u->resident = (size_t)resident * (size_t)page;
    u->file = (size_t)shared * (size_t)page;
    u->anon = u->resident - u->file;
    return 1;
#else
    return 0;
#endif
}

size_t cp_mem_peak(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss <= 0) return 0;
#ifdef __APPLE__
    return (size_t)ru.ru_maxrss; /* bytes on macOS */
#else
    return (size_t)ru.ru_maxrss * 1024; /* KiB on Linux and the BSDs */
#endif
}
