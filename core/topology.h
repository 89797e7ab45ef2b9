/* topology.h: the machine as hwloc sees it, and binding ranks to cores. */
#ifndef DS_TOPOLOGY_H
#define DS_TOPOLOGY_H

#include "ds.h"

struct ds_topology {
    int packages, cores, pus, numa, n_l3;
    long long l1d, l2, l3; /* bytes of one cache of each level (0: none) */
    int gpus, nics;
    char cpu_model[128];
    char gpu_names[256], nic_names[256];
};

ds_status ds_topology_read(struct ds_topology *t, struct ds_err *err);
/* One line: model, packages, cores, threads, NUMA, caches, GPUs, NICs. */
void ds_topology_describe(const struct ds_topology *t, char *buf, size_t len);
/* Binds this process (every thread) to rank's share of the cores; *first
 * and *count receive which. */
ds_status ds_topology_bind_rank(int rank, int size, int *first, int *count, struct ds_err *err);

/* Binds this process (every thread) to the CPUs hwloc places nearest the
 * PCI device `busid` ("0000:65:00.0": a rank's GPU), so its host work and
 * copies stay on the GPU's socket; *where receives them in words. DS_OK
 * without binding, and *where saying so, when hwloc does not see the device
 * (a container hiding PCI, a build without hwloc's PCI support). */
ds_status ds_topology_bind_pci(const char *busid, char *where, size_t len, struct ds_err *err);

#endif
