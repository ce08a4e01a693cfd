#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "core/checked.h"
#include "core/regular_file.h"
#include "ops/ops.h"
#include "io/atomic_file.h"

namespace mg {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// The reference implementation rejects headers over 100 MB; so do we.
constexpr uint64_t kMaxHeader = 100'000'000;
constexpr const char* kOp = "[load_safetensors]";

// The dtypes mambagrad reads and writes, in the order of the reference's Dtype enum (… F32 < F64 < I64),
// by which the layout sorts (descending).
constexpr std::pair<DType, std::string_view> kStDTypes[] = {
    {DType::f32, "F32"}, {DType::f64, "F64"}, {DType::i64, "I64"}};

std::string_view st_dtype(DType t) {
  for (const auto& [dt, name] : kStDTypes)
    if (dt == t) return name;
  return "?";
}

int st_rank(DType t) {
  for (size_t i = 0; i < std::size(kStDTypes); ++i)
    if (kStDTypes[i].first == t) return (int)i;
  return -1;
}

std::optional<DType> parse_st_dtype(const std::string& name) {
  for (const auto& [dt, st] : kStDTypes)
    if (st == name) return dt;
  return std::nullopt;
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Host-contiguous copies, checked names.
  struct Entry {
    std::string name;
    Tensor t;
  };
  std::vector<Entry> entries;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    MG_CHECK(!name.empty(), "[save_safetensors] '{}': a tensor has an empty name", path);
    MG_CHECK(name != "__metadata__", "[save_safetensors] '{}': '__metadata__' is reserved and cannot name a tensor",
             path);
    MG_CHECK(seen.insert(name).second, "[save_safetensors] '{}': the name '{}' appears twice", path, name);
    MG_CHECK(t.defined(), "[save_safetensors] '{}': tensor '{}' is undefined", path, name);
    Tensor c = contiguous(to_device(t.detach(), kCPU));
    entries.push_back({name, c});
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    int ra = st_rank(a.t.dtype()), rb = st_rank(b.t.dtype());
    if (ra != rb) return ra > rb;
    return a.name < b.name;  // char_traits<char> compares as unsigned bytes, like Rust's String
  });

  // ordered_json keeps insertion order: "__metadata__" first, then the tensors in data order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  for (const auto& e : entries) {
    uint64_t n = e.t.nbytes();
    nlohmann::ordered_json info = nlohmann::ordered_json::object();
    info["dtype"] = st_dtype(e.t.dtype());
    info["shape"] = std::vector<int64_t>(e.t.shape().begin(), e.t.shape().end());
    info["data_offsets"] = {offset, offset + n};
    header[e.name] = std::move(info);
    offset += n;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception& ex) {
    MG_THROW("[save_safetensors] '{}': cannot encode the header (names and metadata must be valid UTF-8): {}", path,
             ex.what());
  }
  json.append((8 - json.size() % 8) % 8, ' ');
  uint64_t n = json.size();
  char len[8];
  std::memcpy(len, &n, 8);

  write_file_atomic(path, [&](std::ostream& out) {
    out.write(len, 8);
    out.write(json.data(), (std::streamsize)json.size());
    for (const auto& e : entries)
      if (e.t.nbytes() > 0) out.write(static_cast<const char*>(e.t.raw_data()), (std::streamsize)e.t.nbytes());
  });
}

namespace {

// One tensor's entry in the header.
struct StEntry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

// The header's JSON text; `n` is its length.
std::string read_header_text(const RegularFile& in, const std::string& path, uint64_t& n) {
  const uint64_t file_size = in.size();
  MG_CHECK(file_size >= 8, "{} '{}' is {} bytes long, too short for the 8-byte header length: not a safetensors file",
           kOp, path, file_size);
  MG_CHECK(in.read_at(0, &n, 8), "{} '{}': cannot read the header length", kOp, path);
  MG_CHECK(n <= kMaxHeader, "{} '{}': bad header length {} (more than {} bytes; not a safetensors file?)", kOp, path, n,
           kMaxHeader);
  MG_CHECK(n <= file_size - 8,
           "{} '{}': bad header length {}: the file has only {} bytes after the length (truncated, or not a "
           "safetensors file)",
           kOp, path, n, file_size - 8);
  MG_CHECK(n >= 2, "{} '{}': bad header length {}: too short for a JSON object", kOp, path, n);
  std::string text(n, '\0');
  MG_CHECK(in.read_at(8, text.data(), n), "{} '{}': cannot read the {}-byte header", kOp, path, n);
  MG_CHECK(text[0] == '{', "{} '{}': the header does not start with '{{' (not a safetensors file?)", kOp, path);
  return text;
}

// A JSON object keeps the last of duplicate keys silently; a header that names a tensor twice is rejected
// instead.
nlohmann::json parse_header(const std::string& text, const std::string& path) {
  std::set<std::string> keys;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && !keys.insert(parsed.get<std::string>()).second)
      MG_THROW("{} '{}': the header names '{}' twice", kOp, path, parsed.get<std::string>());
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, on_event);
  } catch (const nlohmann::json::exception& ex) {
    MG_THROW("{} '{}': malformed JSON header: {}", kOp, path, ex.what());
  }
  MG_CHECK(header.is_object(), "{} '{}': the header is not a JSON object", kOp, path);
  return header;
}

std::map<std::string, std::string> read_metadata(const nlohmann::json& info, const std::string& path) {
  MG_CHECK(info.is_object(), "{} '{}': __metadata__ must be an object of strings", kOp, path);
  std::map<std::string, std::string> metadata;
  for (const auto& [k, v] : info.items()) {
    MG_CHECK(v.is_string(), "{} '{}': __metadata__ value of '{}' is not a string", kOp, path, k);
    metadata[k] = v.get<std::string>();
  }
  return metadata;
}

// The bytes of a tensor of `shape`, overflow-checked. The rule is every tensor's (core/shape.h): the
// non-zero sizes multiply to at most 2^63 - 1 elements, and a zero size makes the tensor empty.
int64_t tensor_bytes(const Shape& shape, DType dtype, const std::string& what) {
  int64_t numel = 1;
  bool zero = false;
  for (int64_t d : shape) {
    if (d == 0)
      zero = true;
    else
      numel = checked_mul(numel, d, "load_safetensors", what + " the product of its sizes");
  }
  if (zero) numel = 0;
  return checked_mul(numel, (int64_t)dtype_size(dtype), "load_safetensors", what + " its byte count");
}

StEntry parse_entry(const std::string& name, const nlohmann::json& info, uint64_t data_size, const std::string& path) {
  MG_CHECK(info.is_object(), "{} '{}': tensor '{}': its entry is not an object", kOp, path, name);
  auto field = [&](const char* key) -> const nlohmann::json& {
    auto it = info.find(key);
    MG_CHECK(it != info.end(), "{} '{}': tensor '{}': missing \"{}\"", kOp, path, name, key);
    return *it;
  };
  const auto& jd = field("dtype");
  MG_CHECK(jd.is_string(), "{} '{}': tensor '{}': dtype is not a string", kOp, path, name);
  const std::string ds = jd.get<std::string>();
  const std::optional<DType> dtype = parse_st_dtype(ds);
  MG_CHECK(dtype, "{} '{}': tensor '{}': unsupported dtype '{}' (mambagrad reads F32, F64 and I64)", kOp, path, name,
           ds);
  StEntry e{name, *dtype, {}, 0, 0};
  const auto& js = field("shape");
  MG_CHECK(js.is_array(), "{} '{}': tensor '{}': shape is not an array", kOp, path, name);
  for (const auto& d : js) {
    MG_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= (uint64_t)std::numeric_limits<int64_t>::max(),
             "{} '{}': tensor '{}': shape {} has an entry that is not a non-negative integer", kOp, path, name,
             js.dump());
    e.shape.push_back(d.get<int64_t>());
  }
  const int64_t nbytes =
      tensor_bytes(e.shape, e.dtype, mg::format("'{}': tensor '{}': shape {}:", path, name, js.dump()));
  const auto& jo = field("data_offsets");
  MG_CHECK(jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned(),
           "{} '{}': tensor '{}': data_offsets {} must be two non-negative integers [begin, end]", kOp, path, name,
           jo.dump());
  e.begin = jo[0].get<uint64_t>();
  e.end = jo[1].get<uint64_t>();
  MG_CHECK(e.begin <= e.end, "{} '{}': tensor '{}': data_offsets [{}, {}] end before they begin", kOp, path, name,
           e.begin, e.end);
  MG_CHECK(e.end <= data_size,
           "{} '{}': tensor '{}': data_offsets [{}, {}] are out of range: the data section has {} bytes "
           "(truncated file?)",
           kOp, path, name, e.begin, e.end, data_size);
  MG_CHECK((uint64_t)nbytes == e.end - e.begin,
           "{} '{}': tensor '{}': size mismatch: shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", kOp,
           path, name, js.dump(), ds, nbytes, e.begin, e.end, e.end - e.begin);
  return e;
}

// The data must be tiled exactly: sorted by begin, each tensor starts where the previous ended.
void check_tiling(std::vector<StEntry>& entries, uint64_t data_size, const std::string& path) {
  std::stable_sort(entries.begin(), entries.end(), [](const StEntry& a, const StEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const StEntry& e = entries[i];
    if (e.begin < pos)
      MG_THROW("{} '{}': tensor '{}': data_offsets [{}, {}] overlap tensor '{}' (which ends at {})", kOp, path, e.name,
               e.begin, e.end, entries[i - 1].name, pos);
    if (e.begin > pos)
      MG_THROW("{} '{}': tensor '{}': data_offsets [{}, {}] leave bytes [{}, {}) that no tensor covers", kOp, path,
               e.name, e.begin, e.end, pos, e.begin);
    pos = e.end;
  }
  MG_CHECK(pos == data_size,
           "{} '{}': the tensors cover {} bytes of data but the file holds {} after the header (offsets do not "
           "cover the data)",
           kOp, path, pos, data_size);
}

}  // namespace

namespace {

// The validated header of an open file: its tensors' entries in data order, and its metadata.
struct StHeader {
  uint64_t header_bytes = 0;
  std::vector<StEntry> entries;
  std::map<std::string, std::string> metadata;
};

StHeader read_header(const RegularFile& in, const std::string& path) {
  StHeader h;
  const nlohmann::json header = parse_header(read_header_text(in, path, h.header_bytes), path);
  const uint64_t data_size = in.size() - 8 - h.header_bytes;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__")
      h.metadata = read_metadata(info, path);
    else
      h.entries.push_back(parse_entry(name, info, data_size, path));
  }
  check_tiling(h.entries, data_size, path);
  return h;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  const RegularFile in(path, kOp);  // a FIFO or a device is refused, not waited on
  StHeader h = read_header(in, path);
  SafetensorsFile result;
  result.metadata = std::move(h.metadata);
  for (const StEntry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    MG_CHECK(in.read_at(8 + h.header_bytes + e.begin, t.raw_data(), e.end - e.begin),
             "{} '{}': tensor '{}': reading bytes [{}, {}) failed (file truncated while reading?)", kOp, path, e.name,
             e.begin, e.end);
    result.tensors.emplace_back(e.name, std::move(t));
  }
  return result;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  const RegularFile in(path, kOp);
  return read_header(in, path).metadata;
}

NamedTensors load_safetensors(const std::string& path) { return read_safetensors(path).tensors; }

std::map<std::string, Tensor> load_safetensors_map(const std::string& path) {
  std::map<std::string, Tensor> m;
  for (auto& [name, t] : read_safetensors(path).tensors) m.emplace(name, std::move(t));
  return m;
}

}  // namespace mg
