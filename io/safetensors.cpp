#include "io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "core/checked.h"
#include "ops/ops.h"
#include "io/atomic_file.h"

namespace mg {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// The reference implementation rejects headers over 100 MB; so do we.
constexpr uint64_t kMaxHeader = 100'000'000;

std::string_view st_dtype(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i64:
      return "I64";
  }
  return "?";
}

// Position in the reference's Dtype enum (… F32 < F64 < I64); the layout sorts by it, descending.
int st_rank(DType t) {
  switch (t) {
    case DType::f32:
      return 0;
    case DType::f64:
      return 1;
    case DType::i64:
      return 2;
  }
  return -1;
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

SafetensorsFile read_safetensors(const std::string& path) {
  const char* op = "[load_safetensors]";
  std::error_code ec;
  uint64_t file_size = std::filesystem::file_size(path, ec);
  MG_CHECK(!ec, "{} cannot read '{}': {}", op, path, ec.message());
  std::ifstream in(path, std::ios::binary);
  MG_CHECK(in.is_open(), "{} cannot open '{}'", op, path);
  MG_CHECK(file_size >= 8, "{} '{}' is {} bytes long, too short for the 8-byte header length: not a safetensors file",
           op, path, file_size);

  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  MG_CHECK(in.good(), "{} '{}': cannot read the header length", op, path);
  MG_CHECK(n <= kMaxHeader, "{} '{}': bad header length {} (more than {} bytes; not a safetensors file?)", op, path, n,
           kMaxHeader);
  MG_CHECK(n <= file_size - 8,
           "{} '{}': bad header length {}: the file has only {} bytes after the length (truncated, or not a "
           "safetensors file)",
           op, path, n, file_size - 8);
  MG_CHECK(n >= 2, "{} '{}': bad header length {}: too short for a JSON object", op, path, n);
  std::string text(n, '\0');
  in.read(text.data(), (std::streamsize)n);
  MG_CHECK(in.good(), "{} '{}': cannot read the {}-byte header", op, path, n);
  MG_CHECK(text[0] == '{', "{} '{}': the header does not start with '{{' (not a safetensors file?)", op, path);

  // A JSON object keeps the last of duplicate keys silently; a header that names a tensor twice is
  // rejected instead.
  std::set<std::string> keys;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && !keys.insert(parsed.get<std::string>()).second)
      MG_THROW("{} '{}': the header names '{}' twice", op, path, parsed.get<std::string>());
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, on_event);
  } catch (const nlohmann::json::exception& ex) {
    MG_THROW("{} '{}': malformed JSON header: {}", op, path, ex.what());
  }
  MG_CHECK(header.is_object(), "{} '{}': the header is not a JSON object", op, path);

  const uint64_t data_size = file_size - 8 - n;
  SafetensorsFile result;
  struct Entry {
    std::string name;
    DType dtype;
    Shape shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      MG_CHECK(info.is_object(), "{} '{}': __metadata__ must be an object of strings", op, path);
      for (const auto& [k, v] : info.items()) {
        MG_CHECK(v.is_string(), "{} '{}': __metadata__ value of '{}' is not a string", op, path, k);
        result.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    MG_CHECK(info.is_object(), "{} '{}': tensor '{}': its entry is not an object", op, path, name);
    auto field = [&](const char* key) -> const nlohmann::json& {
      auto it = info.find(key);
      MG_CHECK(it != info.end(), "{} '{}': tensor '{}': missing \"{}\"", op, path, name, key);
      return *it;
    };
    const auto& jd = field("dtype");
    MG_CHECK(jd.is_string(), "{} '{}': tensor '{}': dtype is not a string", op, path, name);
    std::string ds = jd.get<std::string>();
    Entry e;
    e.name = name;
    if (ds == "F32")
      e.dtype = DType::f32;
    else if (ds == "F64")
      e.dtype = DType::f64;
    else if (ds == "I64")
      e.dtype = DType::i64;
    else
      MG_THROW("{} '{}': tensor '{}': unsupported dtype '{}' (mambagrad reads F32, F64 and I64)", op, path, name, ds);

    const auto& js = field("shape");
    MG_CHECK(js.is_array(), "{} '{}': tensor '{}': shape is not an array", op, path, name);
    for (const auto& d : js) {
      MG_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= (uint64_t)std::numeric_limits<int64_t>::max(),
               "{} '{}': tensor '{}': shape {} has an entry that is not a non-negative integer", op, path, name,
               js.dump());
      e.shape.push_back(d.get<int64_t>());
    }
    // numel and bytes, overflow-checked. The rule is every tensor's (core/shape.h): the non-zero sizes
    // multiply to at most 2^63 - 1 elements, and a zero size makes the tensor empty.
    const std::string what = mg::format("'{}': tensor '{}': shape {}:", path, name, js.dump());
    int64_t numel = 1;
    bool zero = false;
    for (int64_t d : e.shape) {
      if (d == 0)
        zero = true;
      else
        numel = checked_mul(numel, d, "load_safetensors", what + " the product of its sizes");
    }
    if (zero) numel = 0;
    const int64_t nbytes =
        checked_mul(numel, (int64_t)dtype_size(e.dtype), "load_safetensors", what + " its byte count");

    const auto& jo = field("data_offsets");
    MG_CHECK(jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned(),
             "{} '{}': tensor '{}': data_offsets {} must be two non-negative integers [begin, end]", op, path, name,
             jo.dump());
    e.begin = jo[0].get<uint64_t>();
    e.end = jo[1].get<uint64_t>();
    MG_CHECK(e.begin <= e.end, "{} '{}': tensor '{}': data_offsets [{}, {}] end before they begin", op, path, name,
             e.begin, e.end);
    MG_CHECK(e.end <= data_size,
             "{} '{}': tensor '{}': data_offsets [{}, {}] are out of range: the data section has {} bytes "
             "(truncated file?)",
             op, path, name, e.begin, e.end, data_size);
    MG_CHECK((uint64_t)nbytes == e.end - e.begin,
             "{} '{}': tensor '{}': size mismatch: shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", op,
             path, name, js.dump(), ds, nbytes, e.begin, e.end, e.end - e.begin);
    entries.push_back(std::move(e));
  }

  // The data must be tiled exactly: sorted by begin, each tensor starts where the previous ended.
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.begin < pos)
      MG_THROW("{} '{}': tensor '{}': data_offsets [{}, {}] overlap tensor '{}' (which ends at {})", op, path, e.name,
               e.begin, e.end, entries[i - 1].name, pos);
    if (e.begin > pos)
      MG_THROW("{} '{}': tensor '{}': data_offsets [{}, {}] leave bytes [{}, {}) that no tensor covers", op, path,
               e.name, e.begin, e.end, pos, e.begin);
    pos = e.end;
  }
  MG_CHECK(pos == data_size,
           "{} '{}': the tensors cover {} bytes of data but the file holds {} after the header (offsets do not "
           "cover the data)",
           op, path, pos, data_size);

  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) {
      in.seekg((std::streamoff)(8 + n + e.begin));
      in.read(static_cast<char*>(t.raw_data()), (std::streamsize)(e.end - e.begin));
      MG_CHECK(in.good(), "{} '{}': tensor '{}': reading bytes [{}, {}) failed (file truncated while reading?)", op,
               path, e.name, e.begin, e.end);
    }
    result.tensors.emplace_back(e.name, std::move(t));
  }
  return result;
}

NamedTensors load_safetensors(const std::string& path) { return read_safetensors(path).tensors; }

std::map<std::string, Tensor> load_safetensors_map(const std::string& path) {
  std::map<std::string, Tensor> m;
  for (auto& [name, t] : read_safetensors(path).tensors) m.emplace(name, std::move(t));
  return m;
}

}  // namespace mg
