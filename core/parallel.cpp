#include "core/parallel.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace mg {

namespace {
int initial_threads() {
  if (const char* s = std::getenv("MG_NUM_THREADS")) {
    try {
      int n = std::stoi(s);
      if (n >= 1) return n;
    } catch (...) {
    }
    MG_THROW("[threads] MG_NUM_THREADS='{}' is not a positive integer", s);
  }
  return omp_get_max_threads();
}
int& thread_count() {
  static int n = initial_threads();
  return n;
}
}  // namespace

int num_threads() { return thread_count(); }

void set_num_threads(int n) {
  MG_CHECK(n >= 1, "[threads] thread count must be at least 1, got {}", n);
  thread_count() = n;
  omp_set_num_threads(n);
}

}  // namespace mg
