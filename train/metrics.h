// Training metrics: a JSON-lines log (one object per line, flushed line by line so that a crash
// loses nothing already logged, and `tail -f` or pandas.read_json(lines=True) can follow it), and a
// plain-SVG plot of the bits-per-character curves.
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mg {

class MetricsLog {
 public:
  // Opens `path` (usually "<run dir>/metrics.jsonl") for appending, creating it if needed; with
  // append = false an existing file is truncated.
  explicit MetricsLog(const std::string& path, bool append = true);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends record.dump() and a newline, then flushes. `record` must be a JSON object; non-finite
  // numbers are written as null (JSON has no NaN).
  void log(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Every line of a JSON-lines file, parsed (blank lines skipped); a missing file gives an empty list.
// With `dropped` null, a malformed line throws mg::Error naming the file and line. With `dropped`
// given, malformed lines (such as the last line a crash or a full disk cut short) are skipped and
// counted there: the trainer reads metrics that way on resume.
std::vector<nlohmann::json> read_jsonl(const std::string& path, int64_t* dropped = nullptr);

struct CurvePoint {
  double step;
  double value;
};

struct CurveSeries {
  std::string label;
  std::vector<CurvePoint> points;  // non-finite values are skipped
  std::string color;               // any SVG colour, e.g. "#1f77b4"
  bool markers = false;            // a dot on every point (for sparse series such as validation)
};

struct CurvesOptions {
  std::string title;
  std::string x_label = "step";
  std::string y_label = "bits per character";
  std::optional<double> y_max;  // clip the y axis (early training bpc is ~8, which hides the rest)
  std::optional<double> y_min;
  int width = 800, height = 500;
};

// Draws the series as polylines with axes, tick labels, axis titles and a legend; written
// atomically. Series with no finite points appear only in the legend.
void write_curves_svg(const std::string& path, const std::vector<CurveSeries>& series,
                      const CurvesOptions& options = {});

// The two curves of a training run: train bpc (blue line) and validation bpc (orange, with dots).
void write_curves_svg(const std::string& path, const std::vector<CurvePoint>& train_bpc,
                      const std::vector<CurvePoint>& val_bpc, const CurvesOptions& options = {});

}  // namespace mg
