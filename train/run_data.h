// Reading a run's data file again (eval, resume): the path the run recorded, or the one given with --data.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/options.h"

namespace mg {

// The decoded bytes of `given` (a --data the user typed) or, when it is empty, of the file the run
// recorded (opts.data). A recorded file that is gone is an error naming it and asking for
// --data <path to the moved file>, not the download hint for a new run. `command` names the command.
std::vector<uint8_t> read_run_data(const TrainOptions& opts, const std::string& given, const char* command);

}  // namespace mg
