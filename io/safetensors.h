// safetensors files (https://github.com/huggingface/safetensors), the checkpoint format
// (docs/design.md#checkpoints-and-the-run-folder):
//   8 bytes   little-endian u64 N, the header length
//   N bytes   JSON {"__metadata__": {str: str}, name: {"dtype": "F32"|"F64"|"I64", "shape": [...],
//             "data_offsets": [begin, end]}, ...}, padded with spaces so that 8 + N is a multiple of 8
//   the data  each tensor's bytes, row-major little-endian, offsets relative to the end of the header,
//             contiguous from 0 to the end of the file
// The writer lays tensors out as the reference implementation does (dtype I64, then F64, then F32;
// by name within a dtype, so every tensor stays aligned to its element size) and writes the same
// compact JSON, so its files are byte-identical to Python's safetensors.numpy.save with the same
// metadata. Files are written atomically (io/atomic_file.h).
// The reader validates everything and throws mg::Error naming the file (and the tensor): bad header
// length, malformed JSON, unknown dtype, shape/offset size mismatch, offsets that are out of range,
// overlap or leave gaps, and truncated files.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mg {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (any device, dtype and strides; copied to contiguous host memory as needed).
// Names must be unique, non-empty and not "__metadata__". An empty metadata map writes no
// "__metadata__" entry.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

struct SafetensorsFile {
  NamedTensors tensors;  // in file (data offset) order; fresh contiguous CPU tensors
  std::map<std::string, std::string> metadata;
};

// Reads and validates a whole file.
SafetensorsFile read_safetensors(const std::string& path);
// The metadata alone, from a header validated as read_safetensors validates it (the tensors' bytes are
// not read: a trainer state's options without its optimizer moments).
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);
// The tensors only, in file order.
NamedTensors load_safetensors(const std::string& path);
// The tensors by name.
std::map<std::string, Tensor> load_safetensors_map(const std::string& path);

}  // namespace mg
