/*
 * safetensors.h: checkpoints in the safetensors format (8-byte little-endian
 * header length, a JSON header naming each tensor's dtype, shape and byte
 * range, then the raw data), float32 only, so torch / safetensors.torch
 * load_file reads them and a model can start from a PyTorch-trained state.
 */
#ifndef DS_SAFETENSORS_H
#define DS_SAFETENSORS_H

#include "ds.h"
#include "params.h"

/* Writes host_params (layout->total floats) under the layout's names.
 * `producer` goes into __metadata__. Atomic (temporary file + rename). */
ds_status ds_safetensors_save(const char *path, const struct ds_param_layout *layout,
                              const float *host_params, const char *producer, struct ds_err *err);

/* Reads every tensor of the layout from path into host_params. The file must
 * hold exactly the layout's tensors, as F32 with the same shapes: anything
 * else is DS_ERR_INPUT with a message naming the file and the tensor. */
ds_status ds_safetensors_load(const char *path, const struct ds_param_layout *layout,
                              float *host_params, struct ds_err *err);

#endif
