#include "io/output_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/regular_file.h"
#include "io/run_layout.h"

namespace mg {

namespace fs = std::filesystem;

namespace {

// True when `a` and `b` (both stat'ed, following links) are the same file.
bool same_file(const struct stat& a, const std::string& b) {
  struct stat sb {};
  return ::stat(b.c_str(), &sb) == 0 && a.st_dev == sb.st_dev && a.st_ino == sb.st_ino;
}

// True when `path` would be one of the files of the run that `run_dir` is or is about to become.
bool in_run_dir(const std::string& path, const std::string& run_dir) {
  if (run_dir.empty()) return false;
  std::error_code ec;
  const fs::path p = fs::weakly_canonical(fs::absolute(path, ec), ec);
  const fs::path dir = fs::weakly_canonical(fs::absolute(run_dir, ec), ec);
  if (p.parent_path() != dir) return false;
  const std::string name = p.filename().string();
  return is_root_run_file(name) || name == kLockFile || name.rfind("checkpoint-", 0) == 0;
}

// The offset of the first byte of `s` that is not part of a valid UTF-8 sequence, or npos.
size_t invalid_utf8_at(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = (unsigned char)s[i];
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size() || (n == 2 && c < 0xC2)) return i;
    for (size_t k = 1; k < n; ++k)
      if (((unsigned char)s[i + k] >> 6) != 0x2) return i;
    const auto c1 = (unsigned char)(n > 1 ? s[i + 1] : 0);
    if ((n == 3 && ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0))) ||
        (n == 4 && ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90) || c > 0xF4)))
      return i;  // overlong forms, UTF-16 surrogates, beyond U+10FFFF
    i += n;
  }
  return std::string::npos;
}

const char* kind_name(OutputKind kind) {
  switch (kind) {
    case OutputKind::Dot:
      return "a DOT graph";
    case OutputKind::Svg:
      return "an SVG image";
    case OutputKind::Logits:
      return "a logits file (safetensors with tokens and logits)";
    case OutputKind::Trace:
      return "a Chrome trace";
  }
  return "";
}

// Whether the file at `path` starts as the command's own output of `kind` does (an earlier output, which
// may be replaced): by its first bytes, exactly as the commands write them, so that a user's own DOT graph,
// SVG, trace or safetensors file is not taken for one.
bool earlier_output(const std::string& path, OutputKind kind) {
  std::ifstream in(path, std::ios::binary);
  std::string head(4096, '\0');
  in.read(head.data(), (std::streamsize)head.size());
  head.resize((size_t)std::max<std::streamsize>(in.gcount(), 0));
  switch (kind) {
    case OutputKind::Dot:
      return head.starts_with("digraph autograd {");  // introspect/graph_dot.cpp
    case OutputKind::Svg:  // Graphviz's rendering of that graph names it in a comment before the <svg> element
      return head.find("<!-- Title: autograd ") != std::string::npos && head.find("<svg") != std::string::npos;
    case OutputKind::Trace:  // introspect/profiler.cpp
      return head.starts_with("{\"displayTimeUnit\": \"ms\", \"traceEvents\": [");
    case OutputKind::Logits: {  // safetensors (an 8-byte little-endian header length, then the JSON header)
      if (head.size() < 9 || head[8] != '{') return false;  // holding exactly tokens and logits
      uint64_t n = 0;
      for (int i = 7; i >= 0; --i) n = n << 8 | (unsigned char)head[i];
      if (n > head.size() - 8) return false;
      const nlohmann::json h = nlohmann::json::parse(head.substr(8, (size_t)n), nullptr, false);
      if (!h.is_object()) return false;
      size_t tensors = 0;
      for (const auto& item : h.items()) tensors += item.key() != "__metadata__";
      return tensors == 2 && h.contains("tokens") && h.contains("logits");
    }
  }
  return false;
}

}  // namespace

void check_utf8_path(const std::string& path, const std::string& command, const std::string& option) {
  const size_t at = invalid_utf8_at(path);
  MG_CHECK(at == std::string::npos,
           "[{}] {} is not valid UTF-8 text (byte 0x{:02x} at offset {}); the run records its paths in JSON, which "
           "holds UTF-8 only: {}",
           command, option, (unsigned)(unsigned char)path[at], at,
           option == "--resume" ? "rename the folder (mv) to a name in UTF-8, then resume it there"
                                : "choose a name in UTF-8");
}

std::string file_kind(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "missing";
  return file_kind_name(st.st_mode);
}

void check_output_path(const std::string& path, const OutputCheck& c) {
  MG_CHECK(!path.empty(), "[{}] {} is empty: name the file to write", c.command, c.option);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {  // a new file: its folder must exist and take it (before any work)
    const fs::path parent = fs::path(path).parent_path();
    struct stat pst {};
    if (!parent.empty()) {
      const bool exists = ::stat(parent.c_str(), &pst) == 0;
      MG_CHECK(exists, "[{}] {} {}: the folder {} does not exist; create it first, or write the output elsewhere",
               c.command, c.option, path, parent.string());
      MG_CHECK(S_ISDIR(pst.st_mode), "[{}] {} {}: {} is {}, not a folder", c.command, c.option, path, parent.string(),
               file_kind_name(pst.st_mode));
      MG_CHECK(::access(parent.c_str(), W_OK | X_OK) == 0, "[{}] {} {}: the folder {} is not writable ({})", c.command,
               c.option, path, parent.string(), std::strerror(errno));
    }
  } else {
    if (S_ISCHR(st.st_mode)) return;  // written into, never replaced (write_file_atomic)
    MG_CHECK(S_ISREG(st.st_mode),
             "[{}] {} {} is {}; only a regular file (replaced atomically) or a character device such as /dev/null "
             "(written into) can be an output",
             c.command, c.option, path, file_kind_name(st.st_mode));
    for (const auto& r : c.reads)
      MG_CHECK(r.empty() || !same_file(st, r),
               "[{}] {} {} is {}, which this command reads; write the output to another file", c.command, c.option,
               path, r == path ? "an input" : "the same file as " + r);
    MG_CHECK(c.run_data.empty() || !same_file(st, c.run_data),
             "[{}] {} {} is the training data of the run ({}); write the output to another file", c.command, c.option,
             path, c.run_data);
  }
  MG_CHECK(!is_run_file(path) && !in_run_dir(path, c.run_dir),
           "[{}] {} {} is one of a run's own files; write the output to another file", c.command, c.option, path);
  MG_CHECK(!S_ISREG(st.st_mode) || st.st_size == 0 || earlier_output(path, c.kind),
           "[{}] {} {} exists and is not {} that an earlier run of the command wrote: an output replaces only such a "
           "file or an empty one, never a file of yours. Write the output to another file, or remove {} first if "
           "it may go",
           c.command, c.option, path, kind_name(c.kind), path);
}

}  // namespace mg
