// Byte-level data for language modelling: splits, random training batches and in-order evaluation
// batches. Tokens are bytes (vocabulary 256), handed out as int64 tensors for embedding() and
// cross_entropy().
//
// The enwik8 protocol (docs/design.md#enwik8): train = the first 90% of the bytes, validation = the next
// 5%, test = the last 5%; for enwik8's 100,000,000 bytes exactly 90M / 5M / 5M.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace mg {

struct ByteSplits {
  std::vector<uint8_t> train, val, test;
};

// Splits at floor(0.9 n) and floor(0.95 n), computed exactly in integers: [0, 0.9n) is train,
// [0.9n, 0.95n) validation and [0.95n, n) test. Takes `all` by value and reuses its buffer for train.
ByteSplits split_bytes(std::vector<uint8_t> all);
// The size of split `name` ("train", "validation" or "test") of n bytes, as split_bytes cuts them.
uint64_t split_size(uint64_t n, const std::string& name);

// inputs and targets: int64 (batch, seq_len); targets[b][t] is the byte after inputs[b][t].
struct Batch {
  Tensor inputs;
  Tensor targets;
};

// One split. Copies share the bytes (they are immutable).
class ByteDataset {
 public:
  ByteDataset() = default;
  // `name` ("train", "validation", "test") appears in error messages.
  explicit ByteDataset(std::vector<uint8_t> bytes, std::string name = "data");

  const std::string& name() const { return name_; }
  int64_t size() const { return bytes_ ? (int64_t)bytes_->size() : 0; }
  const std::vector<uint8_t>& bytes() const;

  // `batch` random windows of seq_len + 1 consecutive bytes: inputs are the first seq_len, targets
  // the last seq_len. Each window's start is uniform over all size() - seq_len valid starts (by a
  // 64x64->128-bit multiply of 64 random bits, whose bias is below starts / 2^64). Row r uses
  // counter base + r of `gen`, where base = gen.advance(batch): the same generator state gives
  // the same batch, and the generator always moves on by exactly `batch`. Throws mg::Error when a
  // window does not fit in the split or batch * seq_len overflows int64.
  Batch sample(int64_t batch, int64_t seq_len, Generator& gen, Device device = kCPU) const;

  // Evaluation walks the split (or its first max_bytes bytes when max_bytes >= 0) in order, in
  // windows w = 0, 1, ... of seq_len + 1 bytes starting at byte w * seq_len: each window predicts
  // seq_len targets, and consecutive windows share one byte (the last target of one window is the
  // first input of the next), so every byte but the first is predicted exactly once and with no
  // context from before its window. The last partial window, the (n - 1) % seq_len trailing bytes
  // that do not fill one, is dropped. Batch i holds windows i * batch ... i * batch + batch - 1;
  // the last batch may have fewer rows. batch * seq_len must fit in int64, as for sample().
  int64_t num_eval_windows(int64_t seq_len, int64_t max_bytes = -1) const;
  int64_t num_eval_batches(int64_t batch, int64_t seq_len, int64_t max_bytes = -1) const;
  // The number of predicted bytes over all eval batches (windows * seq_len), for bpc.
  int64_t num_eval_targets(int64_t seq_len, int64_t max_bytes = -1) const;
  Batch eval_batch(int64_t i, int64_t batch, int64_t seq_len, int64_t max_bytes = -1, Device device = kCPU) const;

  // Streams (training and evaluating with state carried across windows, docs/design.md#carried-state):
  // the split (or its first max_bytes bytes) holds span - 1 targets, bytes 1 .. span - 1, each predicted
  // from the byte before it. They are cut into `streams` contiguous streams of S = (span - 1) / streams
  // targets: stream r predicts bytes r S + 1 ... (r + 1) S. Window w of the streams is a batch of
  // `streams` rows, row r the targets w seq ... min((w + 1) seq, S) - 1 of stream r (the last window
  // may be shorter). The (span - 1) % streams targets left over continue the last stream
  // (stream_tail). Every byte but the first is a target exactly once.
  int64_t stream_length(int64_t streams, int64_t max_bytes = -1) const;                        // S, at least 1
  int64_t num_stream_windows(int64_t streams, int64_t seq_len, int64_t max_bytes = -1) const;  // ceil(S / seq_len)
  Batch stream_window(int64_t w, int64_t streams, int64_t seq_len, int64_t max_bytes = -1, Device device = kCPU) const;
  // The leftover targets as one row (1, (span - 1) % streams), or undefined tensors when there are none.
  Batch stream_tail(int64_t streams, int64_t max_bytes = -1, Device device = kCPU) const;

 private:
  // The bytes that evaluation sees, after checking the arguments and that one window fits.
  int64_t eval_span(int64_t seq_len, int64_t max_bytes) const;
  void check_window(int64_t seq_len, int64_t available, bool capped) const;

  std::shared_ptr<const std::vector<uint8_t>> bytes_;
  std::string name_ = "data";
};

struct ByteDatasets {
  ByteDataset train, val, test;
};

// read_byte_file(path), split_bytes, and datasets named "train", "validation" and "test".
ByteDatasets load_byte_datasets(const std::string& path);

}  // namespace mg
