#include "train/metrics.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "io/atomic_file.h"

namespace mg {

// ---------------------------------------------------------------- MetricsLog

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  file_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  MG_CHECK(file_ != nullptr, "[metrics] cannot open '{}' for writing: {}", path, std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::log(const nlohmann::json& record) {
  MG_CHECK(record.is_object(), "[metrics] a record must be a JSON object, got {}", record.type_name());
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line += '\n';
  bool ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size();
  ok = std::fflush(file_) == 0 && ok;
  MG_CHECK(ok, "[metrics] writing to '{}' failed: {}", path_, std::strerror(errno));
}

std::vector<nlohmann::json> read_jsonl(const std::string& path, int64_t* dropped) {
  std::vector<nlohmann::json> out;
  if (dropped) *dropped = 0;
  std::ifstream in(path);
  if (!in.is_open()) return out;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& ex) {
      if (dropped) {
        ++*dropped;
        continue;
      }
      MG_THROW("[metrics] '{}' line {}: malformed JSON: {}", path, lineno, ex.what());
    }
  }
  return out;
}

// ---------------------------------------------------------------- SVG curves

namespace {

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      case '\'':
        o += "&apos;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

struct Ticks {
  double lo, hi, step;
  std::vector<double> values;
};

// "Nice" ticks (1, 2 or 5 times a power of ten) covering [lo, hi], about `target` of them.
Ticks nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad, hi += pad;
  }
  double raw = (hi - lo) / target;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double norm = raw / mag;
  double step = (norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0) * mag;
  Ticks t;
  t.step = step;
  t.lo = std::floor(lo / step + 1e-9) * step;
  t.hi = std::ceil(hi / step - 1e-9) * step;
  for (int64_t i = 0;; ++i) {
    double v = t.lo + (double)i * step;
    if (v > t.hi + step * 1e-6) break;
    t.values.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return t;
}

std::string format_tick(double v, double step, bool integer_axis) {
  if (integer_axis && step >= 1000 && std::fmod(step, 1000.0) == 0) {
    if (step >= 1e6 && std::fmod(step, 1e6) == 0) return mg::format("{:g}M", v / 1e6);
    return mg::format("{:g}k", v / 1000);
  }
  int decimals = std::max(0, (int)-std::floor(std::log10(step) + 1e-9));
  return mg::format("{:.{}f}", v, decimals);
}

// Where the plot goes in the picture, and its axes.
struct PlotFrame {
  double W, H;    // the picture
  double ml, mt;  // left and top margins
  double pw, ph;  // the plot area
  Ticks xt, yt;   // the axes' ticks (lo and hi are the plot's edges)
  double X(double x) const { return ml + (x - xt.lo) / (xt.hi - xt.lo) * pw; }
  double Y(double y) const { return mt + (1.0 - (y - yt.lo) / (yt.hi - yt.lo)) * ph; }
};

// The axes over the series' finite points, from step 0, with the y limits of `opt`.
PlotFrame plot_frame(const std::vector<CurveSeries>& series, const CurvesOptions& opt) {
  double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
  for (const auto& s : series)
    for (const auto& p : s.points)
      if (std::isfinite(p.step) && std::isfinite(p.value)) {
        xmin = std::min(xmin, p.step), xmax = std::max(xmax, p.step);
        ymin = std::min(ymin, p.value), ymax = std::max(ymax, p.value);
      }
  if (!std::isfinite(xmin)) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  xmin = std::min(xmin, 0.0);
  if (opt.y_max) ymax = *opt.y_max;
  if (opt.y_min) ymin = *opt.y_min;
  MG_CHECK(ymax >= ymin, "[curves] y_min {} is above y_max {}", ymin, ymax);
  PlotFrame f;
  f.xt = nice_ticks(xmin, xmax, 8);
  f.yt = nice_ticks(ymin, ymax, 6);
  Ticks& yt = f.yt;
  if (opt.y_max) yt.hi = *opt.y_max;  // an explicit limit is the edge, not rounded up
  if (opt.y_min) yt.lo = *opt.y_min;
  std::erase_if(yt.values, [&](double v) { return v < yt.lo - 1e-9 * yt.step || v > yt.hi + 1e-9 * yt.step; });
  f.W = opt.width, f.H = opt.height;
  const double mr = 24, mb = 56;
  f.ml = 72, f.mt = opt.title.empty() ? 24 : 44;
  f.pw = f.W - f.ml - mr, f.ph = f.H - f.mt - mb;
  return f;
}

// The picture's opening: size, background, the plot area's clip path and the title.
std::string svg_head(const PlotFrame& f, const CurvesOptions& opt) {
  std::string s = mg::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
      opt.width, opt.height);
  s += mg::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n", opt.width, opt.height);
  s += mg::format(
      "<defs><clipPath id=\"plot-area\"><rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"/>"
      "</clipPath></defs>\n",
      f.ml, f.mt, f.pw, f.ph);
  if (!opt.title.empty())
    s += mg::format(
        "<text x=\"{:.1f}\" y=\"26\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        f.ml + f.pw / 2, xml_escape(opt.title));
  return s;
}

// The grid, the frame, the ticks with their labels and the axis titles.
std::string svg_axes(const PlotFrame& f, const CurvesOptions& opt) {
  const double ml = f.ml, mt = f.mt, pw = f.pw, ph = f.ph;
  std::string s = "<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n";
  for (double v : f.xt.values)
    s += mg::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\"/>\n", f.X(v), mt, mt + ph);
  for (double v : f.yt.values)
    s += mg::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\"/>\n", ml, f.Y(v), ml + pw);
  s += "</g>\n";
  s +=
      mg::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#444\"/>\n",
                 ml, mt, pw, ph);
  s += "<g fill=\"#333\">\n";
  for (double v : f.xt.values) {
    s += mg::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#444\"/>\n", f.X(v),
                    mt + ph, mt + ph + 5);
    s += mg::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", f.X(v), mt + ph + 19,
                    format_tick(v, f.xt.step, true));
  }
  for (double v : f.yt.values) {
    s += mg::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#444\"/>\n", ml - 5,
                    f.Y(v), ml);
    s += mg::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ml - 8, f.Y(v) + 4,
                    format_tick(v, f.yt.step, false));
  }
  s += "</g>\n";
  s += mg::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n", ml + pw / 2,
                  f.H - 14, xml_escape(opt.x_label));
  s += mg::format(
      "<text x=\"18\" y=\"{0:.1f}\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 18 "
      "{0:.1f})\">{1}</text>\n",
      mt + ph / 2, xml_escape(opt.y_label));
  return s;
}

// Series i's colour, escaped: its own, else the palette's.
std::string series_color(const CurveSeries& c, size_t i) {
  static const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"};
  return xml_escape(c.color.empty() ? kPalette[i % 6] : c.color);
}

// The curves, clipped to the plot area. Very long series are thinned to about 4 points per pixel.
std::string svg_curves(const PlotFrame& f, const std::vector<CurveSeries>& series) {
  std::string s = "<g clip-path=\"url(#plot-area)\" fill=\"none\" stroke-width=\"1.6\" stroke-linejoin=\"round\">\n";
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& c = series[i];
    const std::string color = series_color(c, i);
    std::vector<CurvePoint> pts;
    for (const auto& p : c.points)
      if (std::isfinite(p.step) && std::isfinite(p.value)) pts.push_back(p);
    if (pts.empty()) continue;
    size_t stride = std::max<size_t>(1, pts.size() / (size_t)(4 * f.pw));
    std::string poly;
    for (size_t k = 0; k < pts.size(); k += stride) {
      poly += mg::format("{:.2f},{:.2f} ", f.X(pts[k].step), f.Y(pts[k].value));
      if (k + stride >= pts.size() && k + 1 != pts.size())
        poly += mg::format("{:.2f},{:.2f} ", f.X(pts.back().step), f.Y(pts.back().value));
    }
    if (!poly.empty()) poly.pop_back();
    s += mg::format("<polyline stroke=\"{}\" points=\"{}\"/>\n", color, poly);
    if (c.markers || pts.size() == 1)
      for (const auto& p : pts)
        s += mg::format("<circle cx=\"{:.2f}\" cy=\"{:.2f}\" r=\"2.8\" fill=\"{}\" stroke=\"none\"/>\n", f.X(p.step),
                        f.Y(p.value), color);
  }
  return s + "</g>\n";
}

// The legend, top right inside the plot.
std::string svg_legend(const PlotFrame& f, const std::vector<CurveSeries>& series) {
  if (series.empty()) return "";
  size_t longest = 0;
  for (const auto& c : series) longest = std::max(longest, c.label.size());
  double lw = 46 + 7.0 * (double)longest, lh = 10 + 20.0 * (double)series.size();
  double lx = f.ml + f.pw - lw - 10, ly = f.mt + 10;
  std::string s = mg::format(
      "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"white\" fill-opacity=\"0.9\" "
      "stroke=\"#bbb\" rx=\"3\"/>\n",
      lx, ly, lw, lh);
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& c = series[i];
    const std::string color = series_color(c, i);
    double y = ly + 15 + 20.0 * (double)i;
    s +=
        mg::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                   lx + 8, y, lx + 32, y, color);
    if (c.markers) s += mg::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.8\" fill=\"{}\"/>\n", lx + 20, y, color);
    s += mg::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", lx + 38, y + 4, xml_escape(c.label));
  }
  return s;
}

}  // namespace

void write_curves_svg(const std::string& path, const std::vector<CurveSeries>& series, const CurvesOptions& opt) {
  MG_CHECK(opt.width >= 200 && opt.height >= 150, "[curves] the plot must be at least 200 x 150, got {} x {}",
           opt.width, opt.height);
  const PlotFrame f = plot_frame(series, opt);
  const std::string s =
      svg_head(f, opt) + svg_axes(f, opt) + svg_curves(f, series) + svg_legend(f, series) + "</svg>\n";
  write_file_atomic(path, std::string_view(s));
}

void write_curves_svg(const std::string& path, const std::vector<CurvePoint>& train_bpc,
                      const std::vector<CurvePoint>& val_bpc, const CurvesOptions& options) {
  write_curves_svg(
      path,
      {CurveSeries{"train bpc", train_bpc, "#1f77b4", false}, CurveSeries{"validation bpc", val_bpc, "#ff7f0e", true}},
      options);
}

}  // namespace mg
