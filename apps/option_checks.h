// Validators for numeric options. They check the text a user typed before CLI11 converts it, so that a
// value out of range is an error naming the option and what is valid, never clamped, wrapped or
// replaced by a default: `--steps 99999999999999999999`, `--seed -1` and `--d-model 0` are refused.
#pragma once
#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>

namespace mg::app {

// An integer of type T (int64_t or uint64_t) for which `ok(v)` holds; `valid` says which values are
// (e.g. "a positive integer"), and is the error's text.
template <typename T>
CLI::Validator integer(std::function<bool(T)> ok, std::string valid) {
  return CLI::Validator(
      [ok, valid](std::string& text) -> std::string {
        T v{};
        const char* b = text.data();
        const char* e = text.data() + text.size();
        auto [end, ec] = std::from_chars(b, e, v);
        if (ec == std::errc::result_out_of_range && end == e)
          return "must be " + valid + ", got '" + text + "', which is out of the 64-bit range";
        if (text.empty() || ec != std::errc() || end != e || !ok(v)) return "must be " + valid + ", got '" + text + "'";
        return "";
      },
      valid);
}

inline CLI::Validator at_least(int64_t lo) {
  return integer<int64_t>([lo](int64_t v) { return v >= lo; }, lo == 1   ? std::string("a positive integer")
                                                               : lo == 0 ? std::string("a non-negative integer")
                                                                         : "an integer >= " + std::to_string(lo));
}

// An integer from lo to hi.
inline CLI::Validator int_range(int64_t lo, int64_t hi) {
  return integer<int64_t>([lo, hi](int64_t v) { return v >= lo && v <= hi; },
                          "an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
}

// -1 (which means `minus_one`) or a positive integer.
inline CLI::Validator minus_one_or_positive(const std::string& minus_one) {
  return integer<int64_t>([](int64_t v) { return v == -1 || v >= 1; }, "-1 (" + minus_one + ") or a positive integer");
}

inline CLI::Validator unsigned_integer() {
  return integer<uint64_t>([](uint64_t) { return true; }, "an integer from 0 to 18446744073709551615");
}

// A text that is not empty (`--op ""` would otherwise mean "every op" without a word); `what` says what it
// names.
inline CLI::Validator non_empty(const std::string& what) {
  return CLI::Validator(
      [what](std::string& text) -> std::string { return text.empty() ? "must name " + what + ", got ''" : ""; }, what);
}

// A finite real number for which `ok(v)` holds.
inline CLI::Validator real(std::function<bool(double)> ok, std::string valid) {
  return CLI::Validator(
      [ok, valid](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v) || !ok(v))
          return "must be " + valid + ", got '" + text + "'";
        return "";
      },
      valid);
}

// An option shown with its default in --help and checked by `check` before it is converted.
template <typename T>
CLI::Option* add_checked(CLI::App* cmd, const std::string& name, T& value, const std::string& help,
                         const CLI::Validator& check) {
  return cmd->add_option(name, value, help)->capture_default_str()->check(check);
}

}  // namespace mg::app
