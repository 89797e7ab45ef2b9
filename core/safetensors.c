/* safetensors.c: read and write float32 safetensors files (format in the header). */
#include "safetensors.h"
#include "fileio.h"

#include <cjson/cJSON.h>
#include <string.h>

#define DS_ST_MAX_HEADER (100u << 20) /* the format's own limit on header size */

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

ds_status ds_safetensors_save(const char *path, const struct ds_param_layout *layout,
                              const float *host_params, const char *producer, struct ds_err *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddStringToObject(meta, "producer", producer ? producer : "descent");
    for (int i = 0; i < layout->n; i++) {
        const struct ds_param_tensor *t = &layout->tensors[i];
        cJSON *e = cJSON_AddObjectToObject(root, t->name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(t->offset * 4)));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)((t->offset + t->numel) * 4)));
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory building the header", path);
    size_t hlen = strlen(json);
    size_t padded = (hlen + 7) / 8 * 8; /* data starts 8-aligned; pad with spaces */
    size_t data_bytes = layout->total * sizeof(float);
    size_t total = 8 + padded + data_bytes;
    unsigned char *buf = malloc(total);
    if (!buf) {
        free(json);
        return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, total);
    }
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, json, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    memcpy(buf + 8 + padded, host_params, data_bytes); /* x86 and CUDA hosts are little-endian */
    free(json);
    ds_status st = ds_file_write_atomic(path, buf, total, err);
    free(buf);
    return st;
}

ds_status ds_safetensors_load(const char *path, const struct ds_param_layout *layout,
                              float *host_params, struct ds_err *err)
{
    char *data;
    size_t len;
    ds_status st = ds_file_read_all(path, &data, &len, err);
    if (st != DS_OK) return st == DS_ERR_IO ? DS_ERR_INPUT : st;
    const unsigned char *u = (const unsigned char *)data;
    cJSON *root = NULL;
    if (len < 8) {
        st = ds_err_set(err, DS_ERR_INPUT, "%s: not a safetensors file (%zu bytes, shorter than its 8-byte header length)", path, len);
        goto done;
    }
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)u[b] << (8 * b);
    if (hlen > DS_ST_MAX_HEADER || hlen > len - 8) {
        st = ds_err_set(err, DS_ERR_INPUT, "%s: not a safetensors file (header length %llu, file %zu bytes)", path, (unsigned long long)hlen, len);
        goto done;
    }
    root = cJSON_ParseWithLength(data + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        st = ds_err_set(err, DS_ERR_INPUT, "%s: the safetensors header is not a JSON object", path);
        goto done;
    }
    size_t data_len = len - 8 - (size_t)hlen;
    const unsigned char *payload = u + 8 + hlen;
    for (int i = 0; i < layout->n; i++) {
        const struct ds_param_tensor *t = &layout->tensors[i];
        char want[96], got[96];
        shape_str(t->shape, t->ndim, want, sizeof want);
        cJSON *e = cJSON_GetObjectItemCaseSensitive(root, t->name);
        if (!cJSON_IsObject(e)) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: has no tensor '%s' (the model needs %s %s)", path, t->name, t->name, want);
            goto done;
        }
        cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
        if (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, "F32") != 0) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: tensor '%s' has dtype %s; only F32 is read", path, t->name, cJSON_IsString(dtype) ? dtype->valuestring : "(missing)");
            goto done;
        }
        cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
        int64_t s[DS_PARAM_MAX_DIMS + 1];
        int nd = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : -1;
        int ok = nd >= 0 && nd <= DS_PARAM_MAX_DIMS;
        for (int d = 0; ok && d < nd; d++) {
            cJSON *x = cJSON_GetArrayItem(shape, d);
            ok = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < 9e15;
            if (ok) s[d] = (int64_t)x->valuedouble;
        }
        if (!ok) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: tensor '%s' has a malformed shape", path, t->name);
            goto done;
        }
        shape_str(s, nd, got, sizeof got);
        int same = nd == t->ndim;
        for (int d = 0; same && d < nd; d++) same = s[d] == t->shape[d];
        if (!same) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: tensor '%s' has shape %s, the model needs %s", path, t->name, got, want);
            goto done;
        }
        cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        cJSON *o0 = cJSON_GetArrayItem(off, 0), *o1 = cJSON_GetArrayItem(off, 1);
        if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !cJSON_IsNumber(o0) || !cJSON_IsNumber(o1) ||
            o0->valuedouble < 0 || o1->valuedouble < o0->valuedouble || o1->valuedouble > (double)data_len ||
            (size_t)(o1->valuedouble - o0->valuedouble) != t->numel * sizeof(float)) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: tensor '%s' has data offsets outside the file or of the wrong size (file truncated?)", path, t->name);
            goto done;
        }
        memcpy(host_params + t->offset, payload + (size_t)o0->valuedouble, t->numel * sizeof(float));
    }
    /* Strict, like load_state_dict(strict=True): no tensors the model lacks. */
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        if (ds_params_find(layout, e->string) < 0) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: has tensor '%s', which this model does not have (it has %d tensors, first '%s')", path, e->string, layout->n, layout->n ? layout->tensors[0].name : "");
            goto done;
        }
    }
    st = DS_OK;
done:
    cJSON_Delete(root);
    free(data);
    return st;
}
