// Reads the binary fixtures in tests/fixtures/, written from PyTorch by the scripts in
// tests/reference/ (the format is described in make_scan_fixture.py): an 8-byte magic, a version,
// then named float64 arrays.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>

#include "ops/ops.h"

namespace mg::test {

// `file` is relative to tests/fixtures/; `magic` is its 8-byte magic number.
inline std::map<std::string, Tensor> load_fixture(const std::string& file, const char (&magic_expected)[9]) {
  const std::string path = std::string(MG_SOURCE_DIR) + "/tests/fixtures/" + file;
  std::ifstream f(path, std::ios::binary);
  MG_CHECK(f.good(), "[fixture] cannot open {}", path);
  auto read = [&](void* p, size_t n) {
    f.read(static_cast<char*>(p), (std::streamsize)n);
    MG_CHECK(f.good(), "[fixture] {} is truncated", path);
  };
  char magic[8];
  read(magic, 8);
  MG_CHECK(std::memcmp(magic, magic_expected, 8) == 0, "[fixture] {} has a wrong magic number", path);
  uint32_t version = 0, count = 0;
  read(&version, 4);
  read(&count, 4);
  MG_CHECK(version == 1, "[fixture] {} has version {}, expected 1", path, version);
  std::map<std::string, Tensor> out;
  for (uint32_t a = 0; a < count; ++a) {
    uint32_t len = 0, ndim = 0;
    read(&len, 4);
    std::string name(len, '\0');
    read(name.data(), len);
    read(&ndim, 4);
    Shape shape(ndim);
    read(shape.data(), 8 * ndim);
    Tensor t = Tensor::empty(shape, DType::f64);
    read(t.data<double>(), 8 * (size_t)t.numel());
    out[name] = t;
  }
  return out;
}

// One case of a fixture: get(what) is the tensor "<name>.<what>", undefined when the fixture has none;
// leaf(what) is a copy of it that requires grad (undefined when absent), for the inputs.
struct FixtureCase {
  const std::map<std::string, Tensor>& fx;
  std::string name;
  Tensor get(const std::string& what) const {
    auto it = fx.find(name + "." + what);
    return it == fx.end() ? Tensor() : it->second;
  }
  Tensor leaf(const std::string& what) const {
    Tensor t = get(what);
    return t.defined() ? t.clone().requires_grad_() : Tensor();
  }
};

inline std::map<std::string, Tensor> load_scan_fixture() { return load_fixture("scan_fixture.bin", "MGSCANFX"); }
inline std::map<std::string, Tensor> load_mamba_fixture() { return load_fixture("mamba_fixture.bin", "MGMAMBFX"); }

}  // namespace mg::test
