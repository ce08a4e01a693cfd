// The memory this process may use, and the one check that every allocation sized by a file or an
// option goes through first: a size read from config.json, a data file's length or a gzip stream's
// decoded length is compared with it before anything is allocated, so that an absurd size is an error
// naming the file and field (or the option), never an out-of-memory kill or a bare std::bad_alloc.
#pragma once
#include <cstdint>
#include <string>

namespace mg {

// The smallest of: the machine's physical memory (sysconf), the address-space limit (RLIMIT_AS) and
// the cgroup's memory.max, in bytes. MG_MEMORY_LIMIT (bytes) lowers it further (tests use it).
uint64_t memory_limit_bytes();

// "1.5 GiB", "512 MiB", "97.7 KiB", "100 bytes": a byte count for messages.
std::string format_bytes(double bytes);

// Throws mg::Error "[op] <what> needs <bytes>, more than this machine's memory (<limit>)<hint>" when
// `bytes` is over memory_limit_bytes(). `bytes` is a double so that estimates never overflow.
void check_fits_in_memory(double bytes, const std::string& op, const std::string& what, const std::string& hint = "");

}  // namespace mg
