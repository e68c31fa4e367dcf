#ifndef GANTRY_SYSTEM_TUNING_H
#define GANTRY_SYSTEM_TUNING_H

/// Makes every allocation of at least `bytes` its own mapping, returned to the system when freed
/// (glibc's M_MMAP_THRESHOLD, which also stops glibc from raising the threshold by itself).
/// Returns 1 on success, 0 where the C library has no such setting.
int gantry_set_mmap_threshold(int bytes);

#endif
