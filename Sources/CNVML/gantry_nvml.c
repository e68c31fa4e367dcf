#include "gantry_nvml.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* The NVML declarations Gantry uses, as documented in NVIDIA's nvml.h (ABI-stable). */
typedef int nvml_return;
typedef void *nvml_device;
typedef struct { unsigned long long total, free, used; } nvml_memory;
/* Version 2 reports memory the driver reserves apart from "used", as nvidia-smi does. */
typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvml_memory_v2;
#define NVML_MEMORY_V2_VERSION ((unsigned int)(sizeof(nvml_memory_v2) | (2u << 24)))
typedef struct { unsigned int gpu, memory; } nvml_utilization;
enum { NVML_SUCCESS = 0, NVML_TEMPERATURE_GPU = 0 };

typedef nvml_return (*init_fn)(void);
typedef nvml_return (*shutdown_fn)(void);
typedef nvml_return (*count_fn)(unsigned int *);
typedef nvml_return (*handle_fn)(unsigned int, nvml_device *);
typedef nvml_return (*string_fn)(nvml_device, char *, unsigned int);
typedef nvml_return (*memory_fn)(nvml_device, nvml_memory *);
typedef nvml_return (*memory_v2_fn)(nvml_device, nvml_memory_v2 *);
typedef nvml_return (*utilization_fn)(nvml_device, nvml_utilization *);
typedef nvml_return (*temperature_fn)(nvml_device, int, unsigned int *);
typedef nvml_return (*power_fn)(nvml_device, unsigned int *);

static void *open_library(void) {
    void *library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!library) library = dlopen("libnvidia-ml.so", RTLD_NOW | RTLD_LOCAL);
    return library;
}

int gantry_nvml_available(void) {
    void *library = open_library();
    if (!library) return 0;
    dlclose(library);
    return 1;
}

int gantry_nvml_query(gantry_nvml_gpu *gpus, int capacity, char *error, int error_length) {
    void *library = open_library();
    if (!library) {
        snprintf(error, error_length, "libnvidia-ml.so.1 cannot be loaded (no NVIDIA driver here)");
        return -1;
    }
    init_fn init = (init_fn)dlsym(library, "nvmlInit_v2");
    shutdown_fn shutdown = (shutdown_fn)dlsym(library, "nvmlShutdown");
    count_fn count = (count_fn)dlsym(library, "nvmlDeviceGetCount_v2");
    handle_fn handle = (handle_fn)dlsym(library, "nvmlDeviceGetHandleByIndex_v2");
    string_fn get_name = (string_fn)dlsym(library, "nvmlDeviceGetName");
    string_fn get_uuid = (string_fn)dlsym(library, "nvmlDeviceGetUUID");
    memory_fn get_memory = (memory_fn)dlsym(library, "nvmlDeviceGetMemoryInfo");
    memory_v2_fn get_memory_v2 = (memory_v2_fn)dlsym(library, "nvmlDeviceGetMemoryInfo_v2");
    utilization_fn get_utilization = (utilization_fn)dlsym(library, "nvmlDeviceGetUtilizationRates");
    temperature_fn get_temperature = (temperature_fn)dlsym(library, "nvmlDeviceGetTemperature");
    power_fn get_power = (power_fn)dlsym(library, "nvmlDeviceGetPowerUsage");
    if (!init || !shutdown || !count || !handle || !get_name || !get_uuid || !get_memory) {
        snprintf(error, error_length, "libnvidia-ml lacks a required NVML function");
        dlclose(library);
        return -2;
    }
    nvml_return status = init();
    if (status != NVML_SUCCESS) {
        snprintf(error, error_length, "nvmlInit_v2 failed with NVML error %d", status);
        dlclose(library);
        return -3;
    }
    unsigned int devices = 0;
    status = count(&devices);
    if (status != NVML_SUCCESS) {
        snprintf(error, error_length, "nvmlDeviceGetCount_v2 failed with NVML error %d", status);
        shutdown();
        dlclose(library);
        return -3;
    }
    for (unsigned int i = 0; i < devices && (int)i < capacity; i++) {
        gantry_nvml_gpu *gpu = &gpus[i];
        memset(gpu, 0, sizeof(*gpu));
        gpu->index = i;
        nvml_device device;
        if (handle(i, &device) != NVML_SUCCESS) continue;
        get_name(device, gpu->name, sizeof(gpu->name));
        get_uuid(device, gpu->uuid, sizeof(gpu->uuid));
        nvml_memory_v2 memory_v2;
        memset(&memory_v2, 0, sizeof(memory_v2));
        memory_v2.version = NVML_MEMORY_V2_VERSION;
        nvml_memory memory;
        if (get_memory_v2 && get_memory_v2(device, &memory_v2) == NVML_SUCCESS) {
            gpu->memory_total_bytes = memory_v2.total;
            gpu->memory_used_bytes = memory_v2.used;
        } else if (get_memory(device, &memory) == NVML_SUCCESS) {
            gpu->memory_total_bytes = memory.total;
            gpu->memory_used_bytes = memory.used;
        }
        nvml_utilization utilization;
        if (get_utilization && get_utilization(device, &utilization) == NVML_SUCCESS) {
            gpu->has_utilization = 1;
            gpu->utilization_percent = utilization.gpu;
        }
        if (get_temperature && get_temperature(device, NVML_TEMPERATURE_GPU, &gpu->temperature_celsius) == NVML_SUCCESS) {
            gpu->has_temperature = 1;
        }
        if (get_power && get_power(device, &gpu->power_milliwatts) == NVML_SUCCESS) {
            gpu->has_power = 1;
        }
    }
    shutdown();
    dlclose(library);
    return (int)devices;
}
