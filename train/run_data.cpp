#include "train/run_data.h"

#include <sys/stat.h>

#include <cerrno>

#include "core/error.h"
#include "data/bytes.h"

namespace mg {

std::vector<uint8_t> read_run_data(const TrainOptions& opts, const std::string& given, const char* command) {
  if (!given.empty()) return read_byte_file(given, "--data");
  struct stat st {};
  MG_CHECK(::stat(opts.data.c_str(), &st) == 0 || errno != ENOENT,
           "[{}] the run's data file '{}' does not exist (moved or deleted?): pass --data <path to the moved file> "
           "(it is checked to be the run's data by its size and CRC-32)",
           command, opts.data);
  return read_byte_file(opts.data, "--data");
}

}  // namespace mg
