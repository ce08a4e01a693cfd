// The CPU allocator behind every Storage on the host: 64-byte aligned blocks, a cache of freed large
// blocks reused by size class, and transparent huge pages for blocks of 2 MiB and more.
//
// Why: a training step frees and re-allocates the same tensor sizes every step. Without a cache each
// large allocation is a fresh mmap whose pages the kernel faults in and zeroes on first touch; with
// it a step allocates nothing new after the first. Huge pages matter for kernels that walk (b, l, d)
// tensors along l (the scan, the conv): every step is d elements away, so 4 KiB pages cost a TLB
// miss per row; with 2 MiB pages the fused scan runs about 1.6x faster (docs/perf.md).
#pragma once
#include <cstddef>

namespace mg {

// At least nbytes, 64-byte aligned; throws mg::Error naming `op` when the system is out of memory.
void* cpu_alloc(size_t nbytes, const char* op);
// Returns a block from cpu_alloc (with the same nbytes) to the cache or the system.
void cpu_free(void* p, size_t nbytes) noexcept;

// Bytes held in the cache (freed by tensors, kept for reuse), and a way to give them back.
size_t cpu_cached_bytes();
void cpu_empty_cache();
// Blocks obtained from the system so far (a new one means a step did allocate something new).
size_t cpu_system_allocations();

// The size class a request of nbytes is served from (exposed for tests): 64-byte multiples below
// 64 KiB (not cached), then 1/8-octave steps up to 2 MiB, then whole 2 MiB pages.
size_t cpu_size_class(size_t nbytes);

}  // namespace mg
