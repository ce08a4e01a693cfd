// Tests for train/metrics.h: the metrics.jsonl log and the SVG curves.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <stdexcept>

#include "core/error.h"
#include "tests/check.h"
#include "tests/temp_dir.h"
#include "train/metrics.h"

using namespace mg;
namespace fs = std::filesystem;
using mg::test::TempDir;

namespace {

std::vector<std::string> temp_files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

}  // namespace

TEST_CASE("metrics: metrics.jsonl has one parseable JSON object per line") {
  TempDir dir;
  std::string path = dir.file("metrics.jsonl");
  {
    MetricsLog log(path);
    log.log({{"step", 0}, {"train_bpc", 7.95}, {"lr", 1e-4}});
    log.log({{"step", 100}, {"train_bpc", 3.5}, {"val_bpc", 3.61}, {"note", "quote \" and\nnewline"}});
    // Flushed per line: visible before the log is closed.
    CHECK(read_jsonl(path).size() == 2);
    log.log({{"step", 200}, {"train_bpc", std::nan("")}});
    check_error([&] { log.log(nlohmann::json::array({1, 2})); }, {"must be a JSON object"});
  }
  { MetricsLog(path).log({{"step", 300}}); }  // appends
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));  // throws if not JSON
  REQUIRE(rows.size() == 4);
  CHECK(rows[0]["step"] == 0);
  CHECK(rows[1]["val_bpc"].get<double>() == 3.61);
  CHECK(rows[1]["note"] == "quote \" and\nnewline");
  CHECK(rows[2]["train_bpc"].is_null());  // NaN has no JSON spelling
  CHECK(rows[3]["step"] == 300);
  CHECK(read_jsonl(path).size() == 4);
  { MetricsLog(path, /*append=*/false).log({{"step", 0}}); }
  CHECK(read_jsonl(path).size() == 1);

  write_bytes(path, "{\"a\": 1}\n{broken\n");
  check_error([&] { read_jsonl(path); }, {"line 2", "malformed JSON"});
  check_error([&] { MetricsLog(dir.file("no/dir/metrics.jsonl")); }, {"cannot open"});
}

namespace {
// Every tag is closed in order (a small well-formedness check: no DTD, no CDATA, no comments).
bool tags_balanced(const std::string& s, std::string& why) {
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = s.find('<', i)) != std::string::npos) {
    size_t j = s.find('>', i);
    if (j == std::string::npos) return why = "unterminated tag", false;
    std::string tag = s.substr(i + 1, j - i - 1);
    i = j + 1;
    if (tag.empty()) return why = "empty tag", false;
    if (tag[0] == '/') {
      std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return why = "unexpected </" + name + ">", false;
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
    }
    // Attribute quotes must pair up.
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0) return why = "odd quotes in <" + tag + ">", false;
  }
  if (!stack.empty()) return why = "unclosed <" + stack.back() + ">", false;
  return true;
}
}  // namespace

TEST_CASE("metrics: the curves SVG is well formed with two polylines, axes titles and a legend") {
  TempDir dir;
  std::string path = dir.file("curves.svg");
  std::vector<CurvePoint> train, val;
  for (int s = 0; s <= 5000; s += 10)
    train.push_back({(double)s, 1.2 + 6.8 * std::exp(-s / 400.0) + 0.05 * std::sin(s)});
  for (int s = 500; s <= 5000; s += 500) val.push_back({(double)s, 1.35 + 6.6 * std::exp(-s / 400.0)});
  train[3].value = NAN;  // skipped
  CurvesOptions opt;
  opt.title = "enwik8 <tiny> & co";
  write_curves_svg(path, train, val, opt);
  std::string svg = read_bytes(path);
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  CHECK(svg.ends_with("</svg>\n"));
  size_t polylines = 0;
  for (size_t i = 0; (i = svg.find("<polyline", i)) != std::string::npos; ++i) ++polylines;
  CHECK(polylines == 2);
  CHECK(svg.find(">step</text>") != std::string::npos);
  CHECK(svg.find(">bits per character</text>") != std::string::npos);
  CHECK(svg.find(">train bpc</text>") != std::string::npos);
  CHECK(svg.find(">validation bpc</text>") != std::string::npos);
  CHECK(svg.find("enwik8 &lt;tiny&gt; &amp; co") != std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find(">2500</text>") != std::string::npos);  // x tick labels
  std::string why;
  CHECK_MESSAGE(tags_balanced(svg, why), why);
  CHECK(temp_files_in(dir.path).empty());

  // Degenerate inputs still give a valid plot.
  write_curves_svg(path, std::vector<CurvePoint>{}, std::vector<CurvePoint>{});
  svg = read_bytes(path);
  CHECK(tags_balanced(svg, why));
  CurvesOptions clipped;
  clipped.y_max = 4.0;
  write_curves_svg(path, std::vector<CurvePoint>{{0, 2.0}}, std::vector<CurvePoint>{{0, 2.0}}, clipped);
  svg = read_bytes(path);
  CHECK(tags_balanced(svg, why));
}
