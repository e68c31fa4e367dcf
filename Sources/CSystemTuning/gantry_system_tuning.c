#include "gantry_system_tuning.h"

// Any libc header defines __GLIBC__ on glibc; test it only after one is included.
#include <stdlib.h>

#if defined(__GLIBC__)
#include <malloc.h>

int gantry_set_mmap_threshold(int bytes) {
    return mallopt(M_MMAP_THRESHOLD, bytes);
}
#else
int gantry_set_mmap_threshold(int bytes) {
    (void)bytes;
    return 0;
}
#endif
