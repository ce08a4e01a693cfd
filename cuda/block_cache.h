// The caching allocator's policy, in plain C++ (no CUDA) so that it can be tested on any machine:
// size classes, free lists, counters, and "empty the cache and retry once" when the driver is out of
// memory. cuda/allocator.cu gives each device one BlockCache whose driver calls are cudaMalloc/cudaFree.
//
// Size classes: requests round up to 512 B, then to the next power of two below 1 MiB, and to a
// multiple of 1 MiB from there (at most 1 MiB, or under 50% for small blocks, is wasted per block). A
// freed block goes to the free list of its class and is handed out again, as is, to the next request
// of that class: after a warm-up step, a training step that asks for the same sizes makes no driver
// call. With one stream per device the reuse needs no synchronisation: the next user's work is queued
// after the previous user's on the same stream.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace mg::cuda {

constexpr size_t kMinBlock = 512;
constexpr size_t kLargeStep = size_t(1) << 20;  // 1 MiB

// The size class of a request of `nbytes` (0 bytes still gets the smallest block).
inline size_t round_block_size(size_t nbytes) {
  if (nbytes <= kMinBlock) return kMinBlock;
  if (nbytes >= kLargeStep) return (nbytes + kLargeStep - 1) / kLargeStep * kLargeStep;
  size_t s = kMinBlock;
  while (s < nbytes) s <<= 1;
  return s;
}

struct BlockCacheStats {
  size_t in_use = 0;            // bytes of blocks held by live allocations (their class sizes)
  size_t peak = 0;              // high-water mark of in_use since the last reset
  size_t cached = 0;            // bytes of freed blocks kept for reuse
  uint64_t driver_mallocs = 0;  // calls to the driver's malloc that succeeded
  uint64_t driver_frees = 0;
};

class BlockCache {
 public:
  // driver_malloc returns nullptr when the device is out of memory (and must leave no error behind);
  // sync waits for all queued work before cached blocks are handed back to the driver.
  BlockCache(std::function<void*(size_t)> driver_malloc, std::function<void(void*)> driver_free,
             std::function<void()> sync)
      : driver_malloc_(std::move(driver_malloc)), driver_free_(std::move(driver_free)), sync_(std::move(sync)) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // A block of at least nbytes, or nullptr when the driver has no memory even after the cache was
  // emptied (the caller throws, with stats() in the message).
  void* allocate(size_t nbytes) {
    const size_t size = round_block_size(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    void* p = nullptr;
    auto it = free_.find(size);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.cached -= size;
    } else {
      p = driver_malloc_(size);
      if (!p && stats_.cached > 0) {  // out of memory: give the cached blocks back and retry once
        release_cached_locked();
        p = driver_malloc_(size);
      }
      if (!p) return nullptr;
      ++stats_.driver_mallocs;
    }
    live_[p] = size;
    stats_.in_use += size;
    if (stats_.in_use > stats_.peak) stats_.peak = stats_.in_use;
    return p;
  }

  // Returns a block from allocate() to its free list; unknown pointers and nullptr are ignored.
  void release(void* p) noexcept {
    if (!p) return;
    try {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find(p);
      if (it == live_.end()) return;
      const size_t size = it->second;
      live_.erase(it);
      free_[size].push_back(p);
      stats_.in_use -= size;
      stats_.cached += size;
    } catch (...) {  // a failed push_back: the block leaks, nothing else goes wrong
    }
  }

  // Hands every cached block back to the driver (after waiting for queued work).
  void empty() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached_locked();
  }

  BlockCacheStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak = stats_.in_use;
  }

 private:
  void release_cached_locked() {
    if (stats_.cached == 0) return;
    sync_();
    for (auto& [size, blocks] : free_) {
      for (void* p : blocks) {
        driver_free_(p);
        ++stats_.driver_frees;
      }
      blocks.clear();
    }
    free_.clear();
    stats_.cached = 0;
  }

  std::function<void*(size_t)> driver_malloc_;
  std::function<void(void*)> driver_free_;
  std::function<void()> sync_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // class size -> cached blocks
  std::unordered_map<void*, size_t> live_;     // block -> class size
  BlockCacheStats stats_;
};

}  // namespace mg::cuda
