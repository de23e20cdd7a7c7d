/* A stand-in for NVIDIA's management library (libnvidia-ml.so.1) for envctl's tests: the GPUs,
 * their memory, utilization and processes come from the text file named by ENVCTL_TEST_NVML,
 * read again at every count of the devices so that a test can change them while envctl waits.
 *
 *   driver 550.54.14
 *   cuda 12040
 *   gpu GPU-... 8.0 40960 35 NVIDIA A100-SXM4-40GB   (uuid, compute capability, MiB, util %, name)
 *   proc 0 1234 512 0                                (GPU index, pid, MiB, SM util %)
 *
 * The signatures are NVML's (nvml.h); only what envctl calls is here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GPUS 16
#define MAX_PROCS 64

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId; } nvmlProcessInfo_t;
typedef struct { unsigned int pid; unsigned long long timeStamp; unsigned int smUtil, memUtil, encUtil, decUtil; } nvmlProcessUtilizationSample_t;

struct gpu { char uuid[96]; char name[96]; int major, minor; unsigned long long total_mib; unsigned util; };
struct proc { int gpu; unsigned pid; unsigned long long mib; unsigned sm; };

static char driver[64] = "550.54.14";
static int cuda = 12040;
static struct gpu gpus[MAX_GPUS];
static int ngpus;
static struct proc procs[MAX_PROCS];
static int nprocs;

static int load(void) {
    const char *path = getenv("ENVCTL_TEST_NVML");
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return 999; /* NVML_ERROR_UNKNOWN */
    char line[512];
    ngpus = 0;
    nprocs = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "driver ", 7)) {
            snprintf(driver, sizeof driver, "%s", line + 7);
        } else if (!strncmp(line, "cuda ", 5)) {
            cuda = atoi(line + 5);
        } else if (!strncmp(line, "gpu ", 4) && ngpus < MAX_GPUS) {
            struct gpu *g = &gpus[ngpus];
            int used = 0;
            if (sscanf(line + 4, "%95s %d.%d %llu %u %n", g->uuid, &g->major, &g->minor, &g->total_mib, &g->util, &used) >= 5) {
                snprintf(g->name, sizeof g->name, "%s", line + 4 + used);
                ngpus++;
            }
        } else if (!strncmp(line, "proc ", 5) && nprocs < MAX_PROCS) {
            struct proc *p = &procs[nprocs];
            if (sscanf(line + 5, "%d %u %llu %u", &p->gpu, &p->pid, &p->mib, &p->sm) == 4) nprocs++;
        }
    }
    fclose(f);
    return 0;
}

static int index_of(void *device) { return (int)(long)device - 1; }

int nvmlInit_v2(void) { return load(); }
int nvmlShutdown(void) { return 0; }

int nvmlSystemGetDriverVersion(char *out, unsigned int len) {
    snprintf(out, len, "%s", driver);
    return 0;
}

int nvmlSystemGetCudaDriverVersion_v2(int *v) {
    *v = cuda;
    return 0;
}

int nvmlDeviceGetCount_v2(unsigned int *n) {
    int rc = load();
    if (rc) return rc;
    *n = (unsigned)ngpus;
    return 0;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **device) {
    if ((int)i >= ngpus) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *device = (void *)(long)(i + 1);
    return 0;
}

int nvmlDeviceGetUUID(void *device, char *out, unsigned int len) {
    snprintf(out, len, "%s", gpus[index_of(device)].uuid);
    return 0;
}

int nvmlDeviceGetName(void *device, char *out, unsigned int len) {
    snprintf(out, len, "%s", gpus[index_of(device)].name);
    return 0;
}

static unsigned long long used_mib(int g) {
    unsigned long long used = 0;
    for (int i = 0; i < nprocs; i++)
        if (procs[i].gpu == g) used += procs[i].mib;
    return used;
}

int nvmlDeviceGetMemoryInfo(void *device, nvmlMemory_t *m) {
    int g = index_of(device);
    m->total = gpus[g].total_mib << 20;
    m->used = used_mib(g) << 20;
    m->free = m->total > m->used ? m->total - m->used : 0;
    return 0;
}

int nvmlDeviceGetUtilizationRates(void *device, nvmlUtilization_t *u) {
    u->gpu = gpus[index_of(device)].util;
    u->memory = 0;
    return 0;
}

int nvmlDeviceGetCudaComputeCapability(void *device, int *major, int *minor) {
    *major = gpus[index_of(device)].major;
    *minor = gpus[index_of(device)].minor;
    return 0;
}

int nvmlDeviceGetComputeRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos) {
    int g = index_of(device);
    unsigned n = 0;
    for (int i = 0; i < nprocs; i++)
        if (procs[i].gpu == g) n++;
    if (n > *count) {
        *count = n;
        return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
    }
    n = 0;
    for (int i = 0; i < nprocs; i++)
        if (procs[i].gpu == g) {
            infos[n].pid = procs[i].pid;
            infos[n].usedGpuMemory = procs[i].mib << 20;
            infos[n].gpuInstanceId = 0xFFFFFFFF;
            infos[n].computeInstanceId = 0xFFFFFFFF;
            n++;
        }
    *count = n;
    return 0;
}

int nvmlDeviceGetProcessUtilization(void *device, nvmlProcessUtilizationSample_t *samples, unsigned int *count,
                                    unsigned long long last_seen) {
    (void)last_seen;
    int g = index_of(device);
    unsigned n = 0;
    for (int i = 0; i < nprocs && n < *count; i++)
        if (procs[i].gpu == g) {
            memset(&samples[n], 0, sizeof samples[n]);
            samples[n].pid = procs[i].pid;
            samples[n].timeStamp = 1;
            samples[n].smUtil = procs[i].sm;
            n++;
        }
    *count = n;
    return n ? 0 : 6; /* NVML_ERROR_NOT_FOUND: no samples */
}
