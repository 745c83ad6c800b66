// Test double of NVIDIA's libnvidia-ml.so.1 (the part aibox uses): the same symbols and
// structure layouts as nvml.h, one GPU at PCI 0000:01:00.0 whose memory is taken from
// $FAKE_NVML_TOTAL_BYTES. Compiled by the test; loaded by aibox through LD_LIBRARY_PATH.
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

static int initialised;
static int gpu;

int nvmlInit_v2(void) { initialised = 1; return 0; }
int nvmlShutdown(void) { initialised = 0; return 0; }
int nvmlDeviceGetCount_v2(unsigned int *n) { if (!initialised) return 1; *n = 1; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **d) {
    if (!initialised || i != 0) return 2;
    *d = &gpu;
    return 0;
}
int nvmlDeviceGetMemoryInfo(void *d, nvmlMemory_t *m) {
    if (!initialised || d != &gpu) return 2;
    const char *total = getenv("FAKE_NVML_TOTAL_BYTES");
    m->total = total ? strtoull(total, NULL, 10) : 0;
    m->used = m->total / 10;
    m->free = m->total - m->used;
    return 0;
}
int nvmlDeviceGetPciInfo_v3(void *d, nvmlPciInfo_t *p) {
    if (!initialised || d != &gpu) return 2;
    memset(p, 0, sizeof *p);
    p->domain = 0; p->bus = 1; p->device = 0;
    p->pciDeviceId = 0x268410de;
    strcpy(p->busId, "00000000:01:00.0");
    strcpy(p->busIdLegacy, "0000:01:00.0");
    return 0;
}
