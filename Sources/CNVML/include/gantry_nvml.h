#ifndef GANTRY_NVML_H
#define GANTRY_NVML_H

/* A tiny bridge to NVIDIA's NVML, loaded at run time with dlopen so that Gantry builds and runs
 * where no NVIDIA driver exists. Only the handful of calls Gantry needs are resolved. */

typedef struct {
    unsigned int index;
    char uuid[96];
    char name[96];
    unsigned long long memory_total_bytes;
    unsigned long long memory_used_bytes;
    int has_utilization;
    unsigned int utilization_percent;
    int has_temperature;
    unsigned int temperature_celsius;
    int has_power;
    unsigned int power_milliwatts;
} gantry_nvml_gpu;

/* Whether libnvidia-ml.so.1 can be loaded on this machine. */
int gantry_nvml_available(void);

/* Fills up to `capacity` GPUs and returns how many there are (>= 0), or a negative code with a
 * message in `error`: -1 library not loadable, -2 a symbol is missing, -3 an NVML call failed. */
int gantry_nvml_query(gantry_nvml_gpu *gpus, int capacity, char *error, int error_length);

#endif
