/*
 * version.c — the library's version and ABI version as it was built (include/cpeft.h), so that a
 * program can compare them with the header it was compiled against.
 */
#include "cpeft.h"

int cp_abi_version(void) { return CPEFT_ABI_VERSION; }

const char *cp_version(void) { return CPEFT_VERSION; }
