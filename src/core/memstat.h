/*
 * memstat.h — how much memory the process holds, as the operating system counts it: the resident
 * set now (split into anonymous memory and pages of mapped files) and its peak so far. The memory
 * plan of `cpeft train` measures what it cannot count from sizes with these, and the run ends by
 * printing the peak next to the plan. Linux reads /proc/self/statm; elsewhere the current figures
 * are unavailable (cp_mem_now returns 0) and the peak comes from getrusage.
 */
#ifndef CP_CORE_MEMSTAT_H
#define CP_CORE_MEMSTAT_H

#include <stddef.h>

typedef struct {
    size_t resident;   /* bytes resident now */
    size_t file;       /* of which pages of mapped files (code, libraries, memory-mapped checkpoints) */
    size_t anon;       /* of which anonymous memory (heap, stacks, buffers) */
} cp_mem_usage;

/* The process's resident memory now; 1 when measured, 0 (all fields 0) where the system does not say. */
int cp_mem_now(cp_mem_usage *u);
/* The process's peak resident memory so far in bytes (VmHWM, getrusage's ru_maxrss); 0 if unknown. */
size_t cp_mem_peak(void);

#endif
