// GPU memory of NVIDIA cards through NVML (libnvidia-ml.so.1, shipped with the driver),
// loaded at run time: boxes without the driver have no such library, and aibox must not
// need it to start. The types below are NVML's public ABI (nvml.h), declared here so that
// the build needs no NVIDIA headers.
#define _GNU_SOURCE
#include "CAIBoxOS.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

typedef int nvml_return;  // nvmlReturn_t; 0 is NVML_SUCCESS
typedef void *nvml_device;
typedef struct {
    unsigned long long total, free, used;
} nvml_memory;  // nvmlMemory_t
typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvml_pci_info;  // nvmlPciInfo_t

int aibox_nvml_memory(struct aibox_gpu_memory *out, int capacity) {
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return -1;
    nvml_return (*init)(void) = (nvml_return(*)(void))dlsym(lib, "nvmlInit_v2");
    nvml_return (*shutdown)(void) = (nvml_return(*)(void))dlsym(lib, "nvmlShutdown");
    nvml_return (*count)(unsigned int *) = (nvml_return(*)(unsigned int *))dlsym(lib, "nvmlDeviceGetCount_v2");
    nvml_return (*handle)(unsigned int, nvml_device *) =
        (nvml_return(*)(unsigned int, nvml_device *))dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    nvml_return (*memory)(nvml_device, nvml_memory *) =
        (nvml_return(*)(nvml_device, nvml_memory *))dlsym(lib, "nvmlDeviceGetMemoryInfo");
    nvml_return (*pci)(nvml_device, nvml_pci_info *) =
        (nvml_return(*)(nvml_device, nvml_pci_info *))dlsym(lib, "nvmlDeviceGetPciInfo_v3");
    int found = -1;
    if (init && shutdown && count && handle && memory && pci && init() == 0) {
        unsigned int n = 0;
        found = 0;
        if (count(&n) == 0) {
            for (unsigned int i = 0; i < n && found < capacity; i++) {
                nvml_device d;
                nvml_memory m;
                nvml_pci_info p;
                memset(&p, 0, sizeof p);
                if (handle(i, &d) != 0 || memory(d, &m) != 0 || pci(d, &p) != 0) continue;
                snprintf(out[found].pci_address, sizeof out[found].pci_address, "%04x:%02x:%02x.0", p.domain, p.bus,
                         p.device);
                out[found].total_bytes = m.total;
                found++;
            }
        }
        shutdown();
    }
    dlclose(lib);
    return found;
}
