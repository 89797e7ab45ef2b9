/*
 * topology.c: what the machine is (hwloc): packages, cores, hardware
 * threads, caches, NUMA nodes, GPUs and network devices; and binding a rank
 * to its share of the cores. hwloc reads the machine the same way on a
 * laptop, a cluster node or inside a container's cgroup limits, which
 * sysconf cannot.
 */
#include "topology.h"

#include <hwloc.h>
#include <stdio.h>
#include <string.h>

static long long cache_size(hwloc_topology_t topo, hwloc_obj_type_t type)
{
    hwloc_obj_t o = hwloc_get_next_obj_by_type(topo, type, NULL);
    return o && o->attr ? (long long)o->attr->cache.size : 0;
}

static void add_name(char *list, size_t len, const char *name)
{
    size_t at = strlen(list);
    if (at + strlen(name) + 3 >= len) return;
    snprintf(list + at, len - at, "%s%s", at ? ", " : "", name);
}

/* The process's one topology, loaded on first use and kept: the machine does
 * not change during a run, and keeping it keeps hwloc's plugins loaded
 * (unloading them at destroy leaves their allocations to LeakSanitizer as
 * leaks of an unknown module, failing the sanitizer pass). */
static hwloc_topology_t the_topology(struct ds_err *err)
{
    static hwloc_topology_t topo;
    static int loaded;
    if (loaded) return topo;
    if (hwloc_topology_init(&topo) != 0) {
        ds_err_set(err, DS_ERR_FAILED, "hwloc_topology_init failed at %s:%d", __FILE__, __LINE__);
        return NULL;
    }
    /* GPUs and NICs are I/O objects: kept only when asked for */
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        ds_err_set(err, DS_ERR_FAILED, "hwloc_topology_load failed at %s:%d", __FILE__, __LINE__);
        return NULL;
    }
    loaded = 1;
    return topo;
}

ds_status ds_topology_read(struct ds_topology *t, struct ds_err *err)
{
    memset(t, 0, sizeof *t);
    hwloc_topology_t topo = the_topology(err);
    if (!topo) return DS_ERR_FAILED;
    t->packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
    t->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    t->pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    t->numa = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    t->l1d = cache_size(topo, HWLOC_OBJ_L1CACHE);
    t->l2 = cache_size(topo, HWLOC_OBJ_L2CACHE);
    t->l3 = cache_size(topo, HWLOC_OBJ_L3CACHE);
    t->n_l3 = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_L3CACHE);
    hwloc_obj_t root = hwloc_get_root_obj(topo);
    const char *model = hwloc_obj_get_info_by_name(root, "CPUModel");
    if (!model) {
        hwloc_obj_t pkg = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PACKAGE, NULL);
        model = pkg ? hwloc_obj_get_info_by_name(pkg, "CPUModel") : NULL;
    }
    snprintf(t->cpu_model, sizeof t->cpu_model, "%s", model ? model : "unknown");
    for (hwloc_obj_t o = NULL; (o = hwloc_get_next_osdev(topo, o)) != NULL;) {
        switch (o->attr->osdev.type) {
        case HWLOC_OBJ_OSDEV_GPU:
        case HWLOC_OBJ_OSDEV_COPROC:
            t->gpus++;
            add_name(t->gpu_names, sizeof t->gpu_names, o->name ? o->name : "?");
            break;
        case HWLOC_OBJ_OSDEV_NETWORK:
        case HWLOC_OBJ_OSDEV_OPENFABRICS:
            t->nics++;
            add_name(t->nic_names, sizeof t->nic_names, o->name ? o->name : "?");
            break;
        default: break;
        }
    }
    if (t->cores <= 0) t->cores = t->pus > 0 ? t->pus : 1;
    return DS_OK;
}

void ds_topology_describe(const struct ds_topology *t, char *buf, size_t len)
{
    snprintf(buf, len,
             "%s: %d package%s, %d core%s, %d hardware thread%s, %d NUMA node%s; L1d %lld KiB, L2 "
             "%lld KiB, L3 %lld MiB x %d; GPUs: %s; network: %s",
             t->cpu_model, t->packages, t->packages == 1 ? "" : "s", t->cores,
             t->cores == 1 ? "" : "s", t->pus, t->pus == 1 ? "" : "s", t->numa,
             t->numa == 1 ? "" : "s", t->l1d >> 10, t->l2 >> 10, t->l3 >> 20, t->n_l3,
             t->gpus ? t->gpu_names : "none", t->nics ? t->nic_names : "none");
}

ds_status ds_topology_bind_rank(int rank, int size, int *first, int *count, struct ds_err *err)
{
    hwloc_topology_t topo = the_topology(err);
    if (!topo) return DS_ERR_FAILED;
    int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    if (cores <= 0) cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    /* rank r of n takes cores [r*C/n, (r+1)*C/n); with more ranks than
     * cores (oversubscribed), ranks share: r*C/n lands them round robin */
    int lo = (int)((long)rank * cores / size), hi = (int)((long)(rank + 1) * cores / size);
    if (hi <= lo) hi = lo + 1;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    for (int c = lo; c < hi; c++) {
        hwloc_obj_t core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, (unsigned)(c % cores));
        if (!core) core = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PU, (unsigned)(c % cores));
        if (core) hwloc_bitmap_or(set, set, core->cpuset);
    }
    int rc = hwloc_set_cpubind(topo, set, HWLOC_CPUBIND_PROCESS);
    hwloc_bitmap_free(set);
    if (rc != 0)
        return ds_err_set(err, DS_ERR_FAILED, "--bind core: hwloc_set_cpubind failed at %s:%d", __FILE__, __LINE__);
    *first = lo % cores;
    *count = hi - lo;
    return DS_OK;
}

ds_status ds_topology_bind_pci(const char *busid, char *where, size_t len, struct ds_err *err)
{
    hwloc_topology_t topo = the_topology(err);
    if (!topo) return DS_ERR_FAILED;
    hwloc_obj_t dev = hwloc_get_pcidev_by_busidstring(topo, busid);
    hwloc_obj_t near = dev ? hwloc_get_non_io_ancestor_obj(topo, dev) : NULL;
    if (!near || !near->cpuset || hwloc_bitmap_iszero(near->cpuset)) {
        snprintf(where, len, "not bound: hwloc does not see PCI device %s", busid);
        return DS_OK;
    }
    if (near == hwloc_get_root_obj(topo)) { /* hwloc knows no nearer place than the machine */
        snprintf(where, len, "not bound: hwloc places PCI device %s near no socket or NUMA node", busid);
        return DS_OK;
    }
    if (hwloc_set_cpubind(topo, near->cpuset, HWLOC_CPUBIND_PROCESS) != 0)
        return ds_err_set(err, DS_ERR_FAILED, "--bind core: hwloc_set_cpubind near %s failed at %s:%d",
                          busid, __FILE__, __LINE__);
    char cpus[128];
    hwloc_bitmap_list_snprintf(cpus, sizeof cpus, near->cpuset);
    snprintf(where, len, "bound to CPUs %s (%s %u, nearest PCI device %s)", cpus,
             hwloc_obj_type_string(near->type), near->logical_index, busid);
    return DS_OK;
}
