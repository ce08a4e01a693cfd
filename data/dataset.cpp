#include "data/dataset.h"

#include <algorithm>

#include "core/checked.h"
#include "core/error.h"
#include "data/bytes.h"
#include "ops/ops.h"

namespace mg {

namespace {

// A batch of `rows` windows of `len` + 1 bytes of `src`, row r's starting at byte start(r): the inputs are
// each window's first `len` bytes and the targets its last `len`, as int64 (rows, len), on `device`.
template <class Start>
Batch window_batch(const uint8_t* src, int64_t rows, int64_t len, Device device, Start start) {
  Tensor inputs = Tensor::empty(Shape{rows, len}, DType::i64);
  Tensor targets = Tensor::empty(Shape{rows, len}, DType::i64);
  int64_t* in = inputs.data<int64_t>();
  int64_t* tg = targets.data<int64_t>();
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* w = src + start(r);
    for (int64_t t = 0; t < len; ++t) {
      in[r * len + t] = w[t];
      tg[r * len + t] = w[t + 1];
    }
  }
  if (device != kCPU) inputs = to_device(inputs, device), targets = to_device(targets, device);
  return {inputs, targets};
}

}  // namespace

namespace {

// floor(0.9 n) and floor(0.95 n), the ends of train and validation, in integers (no rounding of 0.9 in
// floating point); 128-bit so that any size works.
uint64_t train_end(uint64_t n) { return (uint64_t)((unsigned __int128)n * 9 / 10); }
uint64_t validation_end(uint64_t n) { return (uint64_t)((unsigned __int128)n * 19 / 20); }

}  // namespace

uint64_t split_size(uint64_t n, const std::string& name) {
  if (name == "train") return train_end(n);
  if (name == "validation") return validation_end(n) - train_end(n);
  MG_CHECK(name == "test", "[data] unknown split '{}' (valid: train, validation, test)", name);
  return n - validation_end(n);
}

ByteSplits split_bytes(std::vector<uint8_t> all) {
  const size_t a = (size_t)train_end(all.size()), b = (size_t)validation_end(all.size());
  ByteSplits s;
  s.val.assign(all.begin() + a, all.begin() + b);
  s.test.assign(all.begin() + b, all.end());
  all.resize(a);
  s.train = std::move(all);
  return s;
}

ByteDataset::ByteDataset(std::vector<uint8_t> bytes, std::string name)
    : bytes_(std::make_shared<const std::vector<uint8_t>>(std::move(bytes))), name_(std::move(name)) {}

const std::vector<uint8_t>& ByteDataset::bytes() const {
  static const std::vector<uint8_t> kEmpty;
  return bytes_ ? *bytes_ : kEmpty;
}

void ByteDataset::check_window(int64_t seq_len, int64_t available, bool capped) const {
  MG_CHECK(seq_len >= 1, "[data] seq_len must be at least 1, got {}", seq_len);
  // A window is seq_len + 1 bytes: compared as seq_len < available and printed in uint64, so that no
  // seq_len (up to INT64_MAX) overflows here.
  MG_CHECK(
      seq_len < available,
      "[data] the {} split{} has {} bytes, shorter than one window: seq_len (--seq) {} needs seq_len + 1 = {} bytes; "
      "use a shorter seq_len or a larger {}",
      name_, capped ? mg::format(" (its first {} bytes, as many as asked for)", available) : std::string(), available,
      seq_len, (uint64_t)seq_len + 1, capped ? "number of bytes" : "data file");
}

Batch ByteDataset::sample(int64_t batch, int64_t seq_len, Generator& gen, Device device) const {
  MG_CHECK(batch >= 1, "[data] sample: batch must be at least 1, got {}", batch);
  check_window(seq_len, size(), false);
  checked_mul(batch, seq_len, "data", "sample: batch * seq_len (the tokens of one batch)");
  const uint8_t* src = bytes_->data();
  const uint64_t starts = (uint64_t)(size() - seq_len);  // valid window starts: 0 .. size - seq_len - 1
  const uint64_t base = gen.advance((uint64_t)batch);
  return window_batch(src, batch, seq_len, device, [&](int64_t r) {
    return (uint64_t)(((unsigned __int128)gen.bits(base + (uint64_t)r) * starts) >> 64);
  });
}

int64_t ByteDataset::eval_span(int64_t seq_len, int64_t max_bytes) const {
  if (max_bytes < 0) {
    check_window(seq_len, size(), false);
    return size();
  }
  const int64_t span = std::min(size(), max_bytes);
  check_window(seq_len, span, size() > max_bytes);
  return span;
}

int64_t ByteDataset::num_eval_windows(int64_t seq_len, int64_t max_bytes) const {
  return (eval_span(seq_len, max_bytes) - 1) / seq_len;
}

int64_t ByteDataset::num_eval_batches(int64_t batch, int64_t seq_len, int64_t max_bytes) const {
  MG_CHECK(batch >= 1, "[data] eval: batch must be at least 1, got {}", batch);
  const int64_t w = num_eval_windows(seq_len, max_bytes);
  checked_mul(batch, seq_len, "data", "eval: batch * seq_len (the tokens of one batch)");
  return w / batch + (w % batch != 0);  // ceil(w / batch); w + batch - 1 could overflow
}

int64_t ByteDataset::num_eval_targets(int64_t seq_len, int64_t max_bytes) const {
  return checked_mul(num_eval_windows(seq_len, max_bytes), seq_len, "data", "eval: windows * seq_len");
}

Batch ByteDataset::eval_batch(int64_t i, int64_t batch, int64_t seq_len, int64_t max_bytes, Device device) const {
  const int64_t nb = num_eval_batches(batch, seq_len, max_bytes);
  MG_CHECK(i >= 0 && i < nb,
           "[data] eval batch {} of the {} split is out of range: there are {} (batch {}, seq_len {})", i, name_, nb,
           batch, seq_len);
  const int64_t windows = num_eval_windows(seq_len, max_bytes);
  const int64_t first = i * batch, rows = std::min(batch, windows - first);
  const uint8_t* src = bytes_->data();
  return window_batch(src, rows, seq_len, device, [&](int64_t r) { return (first + r) * seq_len; });
}

int64_t ByteDataset::stream_length(int64_t streams, int64_t max_bytes) const {
  MG_CHECK(streams >= 1, "[data] streams: the batch must be at least 1, got {}", streams);
  const int64_t span = max_bytes < 0 ? size() : std::min(size(), max_bytes);
  MG_CHECK(span - 1 >= streams,
           "[data] the {} split{} has {} bytes: too few for {} stream{} (--batch) of at least one target each (it "
           "needs {} bytes); use a smaller --batch{}",
           name_,
           max_bytes >= 0 && size() > max_bytes ? mg::format(" (its first {} bytes, as many as asked for)", span) : "",
           span, streams, streams == 1 ? "" : "s", streams + 1,
           max_bytes >= 0 && size() > max_bytes ? " or a larger number of bytes" : "");
  return (span - 1) / streams;
}

int64_t ByteDataset::num_stream_windows(int64_t streams, int64_t seq_len, int64_t max_bytes) const {
  MG_CHECK(seq_len >= 1, "[data] seq_len must be at least 1, got {}", seq_len);
  const int64_t S = stream_length(streams, max_bytes);
  checked_mul(streams, seq_len, "data", "streams: batch * seq_len (the tokens of one batch)");
  return S / seq_len + (S % seq_len != 0);
}

Batch ByteDataset::stream_window(int64_t w, int64_t streams, int64_t seq_len, int64_t max_bytes, Device device) const {
  const int64_t nw = num_stream_windows(streams, seq_len, max_bytes), S = stream_length(streams, max_bytes);
  MG_CHECK(w >= 0 && w < nw,
           "[data] stream window {} of the {} split is out of range: there are {} ({} streams of {} "
           "targets, seq_len {})",
           w, name_, nw, streams, S, seq_len);
  const int64_t first = w * seq_len, l = std::min(seq_len, S - first);
  const uint8_t* src = bytes_->data();
  // Row r starts at the input byte of stream r's target `first`.
  return window_batch(src, streams, l, device, [&](int64_t r) { return r * S + first; });
}

Batch ByteDataset::stream_tail(int64_t streams, int64_t max_bytes, Device device) const {
  const int64_t S = stream_length(streams, max_bytes);
  const int64_t span = max_bytes < 0 ? size() : std::min(size(), max_bytes), left = (span - 1) - streams * S;
  if (left == 0) return {};
  std::vector<int64_t> in(left), tg(left);
  for (int64_t t = 0; t < left; ++t) in[t] = bytes_->at(streams * S + t), tg[t] = bytes_->at(streams * S + t + 1);
  return {from_vector<int64_t>(in, {1, left}, device), from_vector<int64_t>(tg, {1, left}, device)};
}

ByteDatasets load_byte_datasets(const std::string& path) {
  ByteSplits s = split_bytes(read_byte_file(path));
  return {ByteDataset(std::move(s.train), "train"), ByteDataset(std::move(s.val), "validation"),
          ByteDataset(std::move(s.test), "test")};
}

}  // namespace mg
