// The CUDA emulator (see cuda_runtime.h here): fibers for the threads of a block, the runtime API over
// host memory, and cuBLAS's gemm in plain loops.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

// Under AddressSanitizer the emulator tells it when a kernel thread's fiber starts and stops running (so
// that ASan knows which stack is live), and poisons the bytes past each tensor in its memory block and
// whole blocks that are free in the cache: a kernel that reads or writes past its tensor, or into freed
// memory, is stopped at the access, as compute-sanitizer's memcheck would stop it on a GPU.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define MG_EMU_ASAN 1
#else
#define MG_EMU_ASAN 0
#endif

thread_local uint3 threadIdx{0, 0, 0};
thread_local uint3 blockIdx{0, 0, 0};
thread_local dim3 blockDim{1, 1, 1};
thread_local dim3 gridDim{1, 1, 1};

namespace mg_emu {
namespace {

// ------------------------------------------------------------------ errors

struct ErrorState {
  cudaError_t code = cudaSuccess;
  std::string detail;
};
thread_local ErrorState g_last;  // what cudaGetLastError returns (and clears)
thread_local std::string g_message;

cudaError_t set_error(cudaError_t e, std::string detail) {
  if (g_last.code == cudaSuccess) g_last = {e, std::move(detail)};
  return e;
}

// ------------------------------------------------------------------ memory

constexpr size_t kDeviceBytes = size_t(16) << 30;  // the emulated card's memory
constexpr size_t kPoisonLimit = size_t(64) << 20;  // fresh allocations up to this size are filled with NaN bytes

std::mutex g_mem_mu;
std::map<uintptr_t, size_t> g_device;  // base -> bytes, from cudaMalloc
std::map<uintptr_t, size_t> g_pinned;  // base -> bytes, from cudaMallocHost
size_t g_device_in_use = 0;

bool in_map(const std::map<uintptr_t, size_t>& m, const void* p, size_t n) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return false;
  --it;
  return a >= it->first && a + n <= it->first + it->second;
}

// ------------------------------------------------------------------ fibers

#if defined(__x86_64__)
// mg_emu_switch(from, to): saves the callee-saved registers on the current stack, stores the stack pointer
// in *from, and resumes the context whose stack pointer is `to`. (The floating-point control words are
// not switched: no kernel changes them.)
extern "C" void mg_emu_switch(void** from, void* to);
asm(R"(
.text
.p2align 4
.type mg_emu_switch,@function
mg_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size mg_emu_switch,.-mg_emu_switch
)");
#else
#error "the CUDA emulator's fibers are written for x86-64"
#endif

enum class State { ready, wait_block, wait_warp, done };

struct Fiber {
  void* sp = nullptr;         // null until the thread starts
  void* asan_fake = nullptr;  // ASan's fake stack of this fiber while it is switched out
  int stack = -1;             // index into Block::stacks while the thread runs
  State state = State::ready;
  uint3 tid{};
  bool odd_shuffle = false;  // which set of the block's exchange slots this thread's next shuffle uses
};

constexpr size_t kStackBytes = 320 << 10;  // a 4 KiB guard page, at most 64 KiB of offset (init_stack), the rest
                                           // for the thread: about 250 KiB (pages are mapped as touched)

// The race check's record of one element of a static shared array since the last __syncthreads (the
// elements of an array all have its one type, so an element is the unit two threads can share): the
// thread that last wrote it and the last two distinct threads that read it, each with its warp's
// barrier count at the access (a warp barrier orders the lanes of one warp). `barrier` stamps the
// block barrier the record belongs to: an older one is empty.
struct ElementAccess {
  unsigned barrier = ~0u;
  int writer = -1, readers[2] = {-1, -1};
  unsigned writer_epoch = 0, reader_epochs[2] = {0, 0};
};
struct SharedArray {
  const void* base;
  size_t bytes;
  std::vector<ElementAccess> elements;  // sized at the first access, which tells the element size
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;     // kept between launches
  std::vector<int> free_stacks;  // stacks of threads that finished: the next thread to start takes the
                                 // most recently freed one, still in cache, so a kernel without barriers
                                 // runs all its threads on one stack
  std::vector<uint64_t> xchg;    // two sets of one 8-byte slot per thread, for shuffles in turn (exchange())
  std::vector<unsigned char> dyn;
  int cur = -1;
  int nthreads = 0;
  bool reverse = false;         // this block runs its threads last to first (launch_impl reverses the blocks)
  bool from_scheduler = false;  // the running fiber was entered from the scheduler, not from another fiber
  void* sched_sp = nullptr;
  void* sched_asan_fake = nullptr;  // the same, for the scheduler's (the host thread's) stack
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
  const std::function<void()>* body = nullptr;
  std::string failure;                // first kernel-side misuse or exception of this launch
  std::vector<SharedArray> shared;    // the static shared arrays this block declared (race check)
  unsigned barriers = 0;              // __syncthreads released in this block
  std::vector<unsigned> warp_epochs;  // warp barriers released, per warp
};
thread_local Block g_block;

struct Stats {
  // turns: the times a kernel thread is made current (a switch into it, from the scheduler or from the
  // thread before it at a barrier); one per thread in a kernel without barriers.
  uint64_t launches = 0, blocks = 0, threads = 0, turns = 0, shared_accesses = 0;
  ~Stats() {
    if (std::getenv("MG_CUDA_EMU_STATS"))
      std::fprintf(
          stderr,
          "cuda emulator: %llu launches, %llu blocks, %llu threads, %llu thread turns, %llu checked shared-memory "
          "accesses\n",
          (unsigned long long)launches, (unsigned long long)blocks, (unsigned long long)threads,
          (unsigned long long)turns, (unsigned long long)shared_accesses);
  }
};
Stats g_stats;

// The sides of a switch, told to ASan (nothing without it): a fiber resuming, a fiber leaving for the
// scheduler, the scheduler leaving for a fiber (switch_to_fiber), and a fiber leaving for another (in
// yield). A fiber that is done passes no place for its fake stack, which ASan then frees.
void fiber_resumed(Block& b) {
#if MG_EMU_ASAN
  // The stack left behind is the scheduler's (kept for switching back to it) or another fiber's.
  __sanitizer_finish_switch_fiber(b.fibers[b.cur].asan_fake, b.from_scheduler ? &b.sched_bottom : nullptr,
                                  b.from_scheduler ? &b.sched_size : nullptr);
#else
  (void)b;
#endif
}
void switch_to_scheduler(Block& b, bool done) {
#if MG_EMU_ASAN
  __sanitizer_start_switch_fiber(done ? nullptr : &b.fibers[b.cur].asan_fake, b.sched_bottom, b.sched_size);
#else
  (void)b, (void)done;
#endif
}
void switch_to_fiber(Block& b, const char* stack);

[[noreturn]] void fiber_main() {
  Block& b = g_block;
  fiber_resumed(b);
  try {
    (*b.body)();
  } catch (const std::exception& e) {
    if (b.failure.empty()) b.failure = std::string("exception in a kernel thread: ") + e.what();
  } catch (...) {
    if (b.failure.empty()) b.failure = "exception in a kernel thread";
  }
  b.fibers[b.cur].state = State::done;
  void* dead = nullptr;
  switch_to_scheduler(b, true);
  mg_emu_switch(&dead, b.sched_sp);
  __builtin_unreachable();
}

char* new_stack() {
  void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  mprotect(p, 4096, PROT_NONE);  // a guard page: a kernel thread overflowing its stack faults at once
  return static_cast<char*>(p);
}

// Stack i starts i * (4 KiB + 272) bytes (mod 64 KiB) below its mapping's top. Tops at the same offset
// within a page would share the L1's cache sets. And the mappings lie kStackBytes apart: with every top
// in its mapping's last page (i * 272 mod 4 KiB, as before), the tops' page numbers agreed in their low
// bits, which pick the TLB's set. Spreading them over 16 pages made an emulated training step 1.2x
// faster (docs/perf.md), most likely through the TLB: the first load from the resumed stack after a
// switch had taken most of the switch's time.
void* init_stack(char* stack, int i) {
  auto top = (reinterpret_cast<uintptr_t>(stack + kStackBytes) - uintptr_t(i) * (4096 + 272) % 65536) & ~uintptr_t(15);
  auto* s = reinterpret_cast<uint64_t*>(top);
  s[-1] = 0;                                        // fiber_main's return address (it never returns)
  s[-2] = reinterpret_cast<uint64_t>(&fiber_main);  // where `ret` goes
  for (int r = 3; r <= 8; ++r) s[-r] = 0;           // rbp rbx r12 r13 r14 r15
  return &s[-8];
}

// A block's threads run in rounds: each ready thread in turn (first to last, or last to first), until it
// returns or waits at a barrier. A thread that waits hands over to the next ready thread of the round
// itself, one switch instead of two through the scheduler; the last one of the round, and a thread that
// returns (its stack is then free for the next thread to start), go back to the scheduler.
// Position k of n in run order: k, or n - 1 - k in reverse order. The map is its own inverse, so it takes
// a position to an index (of a thread, of a block) and an index back to its position.
template <class I>
I run_order(bool reverse, I n, I k) {
  return reverse ? n - 1 - k : k;
}
int fiber_at(const Block& b, int pos) { return run_order(b.reverse, b.nthreads, pos); }
int position_of(const Block& b, int i) { return run_order(b.reverse, b.nthreads, i); }

// The first ready thread at a position from `pos` on in this round's order, or -1.
int next_ready(const Block& b, int pos) {
  for (; pos < b.nthreads; ++pos) {
    const int i = fiber_at(b, pos);
    if (b.fibers[i].state == State::ready) return i;
  }
  return -1;
}

// Maps a new stack and returns its index.
[[gnu::noinline]] int add_stack(Block& b) {
  b.stacks.push_back(new_stack());
  return (int)b.stacks.size() - 1;
}
// Gives a thread that has not started a stack: the most recently freed one, or a new one. (Neither is
// inlined: their locals would give make_current, which runs at every switch, a frame ASan poisons and
// unpoisons.)
[[gnu::noinline]] void give_stack(Block& b, Fiber& f) {
  if (b.free_stacks.empty()) {
    f.stack = add_stack(b);
  } else {
    f.stack = b.free_stacks.back();
    b.free_stacks.pop_back();
  }
  f.sp = init_stack(b.stacks[f.stack], f.stack);
}

// Makes thread i the current one.
void make_current(Block& b, int i) {
  Fiber& f = b.fibers[i];
  if (!f.sp) give_stack(b, f);
  b.cur = i;
  threadIdx = f.tid;
  ++g_stats.turns;
}

void yield(State why) {
  Block& b = g_block;
  if (b.cur < 0) {
    fail("__syncthreads or a warp shuffle outside a kernel");
    return;
  }
  const int me = b.cur;
  b.fibers[me].state = why;
  const int next = next_ready(b, position_of(b, me) + 1);
  if (next < 0) {
    switch_to_scheduler(b, false);
    mg_emu_switch(&b.fibers[me].sp, b.sched_sp);
  } else {
    make_current(b, next);
#if MG_EMU_ASAN
    __sanitizer_start_switch_fiber(&b.fibers[me].asan_fake, b.stacks[b.fibers[next].stack] + 4096, kStackBytes - 4096);
#endif
    b.from_scheduler = false;
    mg_emu_switch(&b.fibers[me].sp, b.fibers[next].sp);
  }
  fiber_resumed(b);
}

void switch_to_fiber(Block& b, const char* stack) {
#if MG_EMU_ASAN
  __sanitizer_start_switch_fiber(&b.sched_asan_fake, stack + 4096, kStackBytes - 4096);  // less the guard page
#else
  (void)stack;
#endif
  b.from_scheduler = true;
  mg_emu_switch(&b.sched_sp, b.fibers[b.cur].sp);
#if MG_EMU_ASAN
  __sanitizer_finish_switch_fiber(b.sched_asan_fake, nullptr, nullptr);
#endif
}

bool reverse_order() {
  static const bool rev = [] {
    const char* e = std::getenv("MG_CUDA_EMU_ORDER");
    return e && std::string(e) == "reverse";
  }();
  return rev;
}

// Runs one block to completion. Returns false (with b.failure set) on a deadlock.
bool run_block(Block& b, int nthreads) {
  b.nthreads = nthreads;
  b.reverse = reverse_order();
  for (;;) {
    for (int i = next_ready(b, 0); i >= 0;) {
      make_current(b, i);
      switch_to_fiber(b, b.stacks[b.fibers[i].stack]);
      // Back from the thread that returned, or from the round's last one to wait (b.cur either way).
      const Fiber& f = b.fibers[b.cur];
      if (f.state == State::done) b.free_stacks.push_back(f.stack);
      i = next_ready(b, position_of(b, b.cur) + 1);
    }
    b.cur = -1;
    // Every thread is now done or waiting. Release the warps whose live lanes all wait at a warp barrier,
    // else the block if all its live threads wait at __syncthreads.
    bool released = false;
    int alive = 0, at_block = 0;
    for (int w = 0; w < nthreads; w += 32) {
      int live = 0, waiting = 0, done = 0;
      const int end = std::min(nthreads, w + 32);
      for (int i = w; i < end; ++i) {
        const State s = b.fibers[i].state;
        live += s != State::done;
        done += s == State::done;
        waiting += s == State::wait_warp;
        at_block += s == State::wait_block;
      }
      alive += live;
      if (waiting > 0 && waiting == live) {
        if (done > 0 && b.failure.empty())
          b.failure = "a warp shuffle or __syncwarp after some lanes of the warp have returned";
        for (int i = w; i < end; ++i)
          if (b.fibers[i].state == State::wait_warp) b.fibers[i].state = State::ready;
        ++b.warp_epochs[w / 32];
        released = true;
      }
    }
    if (alive == 0) return true;
    if (released) continue;
    if (at_block == alive) {
      ++b.barriers;
      for (int i = 0; i < nthreads; ++i)
        if (b.fibers[i].state == State::wait_block) b.fibers[i].state = State::ready;
      continue;
    }
    if (b.failure.empty())
      b.failure = "deadlock: some threads wait at __syncthreads while lanes of their warps wait at a shuffle";
    return false;
  }
}

}  // namespace

void fail(const char* what) {
  if (g_block.failure.empty()) g_block.failure = what;
}
void block_barrier() { yield(State::wait_block); }
void warp_barrier() { yield(State::wait_warp); }
int lane_slot() { return (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)); }
// The lanes of a warp take the two sets of slots in turn, shuffle after shuffle, so a shuffle needs one
// warp barrier (between the writes and the reads): a lane writes a set again only two shuffles later,
// after the barrier of the shuffle between, which every lane reaches only after its read of that set.
uint64_t* exchange() {
  Block& b = g_block;
  Fiber& f = b.fibers[b.cur];
  f.odd_shuffle = !f.odd_shuffle;
  return b.xchg.data() + (f.odd_shuffle ? b.nthreads : 0);
}
void* dynamic_smem() { return g_block.dyn.data(); }

namespace {
// Thread u's access at its warp's barrier count `epoch` happens before the calling thread t's.
bool ordered(const Block& b, int u, unsigned epoch, int t) {
  return u == t || (u / 32 == t / 32 && b.warp_epochs[u / 32] != epoch);
}
std::string thread_name(const Block& b, int i) {
  const uint3 t = b.fibers[i].tid;
  char buf[40];  // (with +, GCC 12 warns of an overlapping copy inside std::string: a false -Wrestrict)
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", t.x, t.y, t.z);
  return buf;
}
// Not inlined, nor is anything else that builds a string or grows a vector: shared_access runs at every
// access, and under ASan locals like those give its frame redzones to poison and unpoison on each call.
[[gnu::noinline]] void report_race(Block& b, int other, bool other_wrote, int t, bool write, const char* name,
                                   size_t offset) {
  b.failure = "shared-memory race on " + std::string(name) + ", byte " + std::to_string(offset) + ": thread " +
              thread_name(b, t) + (write ? " writes it and thread " : " reads it and thread ") + thread_name(b, other) +
              (other_wrote ? " wrote it" : " read it") + " with no __syncthreads between";
}
[[gnu::noinline]] void size_elements(SharedArray& a, size_t element_bytes) {
  a.elements.resize(a.bytes / element_bytes);
}
}  // namespace

void shared_declare(void* p, size_t n) {
  Block& b = g_block;
  if (b.cur < 0) return;
  for (const SharedArray& a : b.shared)
    if (a.base == p) return;
  b.shared.push_back({p, n, {}});
  std::memset(p, 0xff, n);
}
uint64_t shared_accesses_checked() { return g_stats.shared_accesses; }

void shared_access(const void* base, const char* name, const void* p, size_t n, bool write, bool same_value) {
  Block& b = g_block;
  if (b.cur < 0) return;
  ++g_stats.shared_accesses;
  if ((write && same_value) || !b.failure.empty()) return;
  SharedArray* arr = nullptr;
  for (SharedArray& a : b.shared)
    if (a.base == base) {
      arr = &a;
      break;
    }
  if (!arr) return;  // declared outside a kernel
  if (arr->elements.empty()) size_elements(*arr, n);
  const size_t offset = static_cast<const char*>(p) - static_cast<const char*>(base);
  ElementAccess& c = arr->elements[offset / n];
  if (c.barrier != b.barriers) c = ElementAccess{b.barriers};
  const int t = b.cur;
  const unsigned epoch = b.warp_epochs[t / 32];
  if (c.writer >= 0 && !ordered(b, c.writer, c.writer_epoch, t))
    return report_race(b, c.writer, true, t, write, name, offset);
  if (write) {
    for (int k = 0; k < 2; ++k)
      if (c.readers[k] >= 0 && !ordered(b, c.readers[k], c.reader_epochs[k], t))
        return report_race(b, c.readers[k], false, t, true, name, offset);
    c.writer = t, c.writer_epoch = epoch;
  } else if (c.readers[0] == t) {
    c.reader_epochs[0] = epoch;
  } else {
    c.readers[1] = c.readers[0], c.reader_epochs[1] = c.reader_epochs[0];
    c.readers[0] = t, c.reader_epochs[0] = epoch;
  }
}

bool is_device_pointer(const void* p) {
  std::lock_guard<std::mutex> lock(g_mem_mu);
  return in_map(g_device, p, 0) || in_map(g_pinned, p, 0);
}

namespace {
constexpr unsigned char kGuardByte = 0xa5;
std::mutex g_guard_mu;
struct Guard {
  size_t requested, capacity;
};
std::map<uintptr_t, Guard> g_guards;  // block base -> sizes

// The guard bytes of the block containing p are intact; else the sticky error names `who`.
void check_guard_locked(std::map<uintptr_t, Guard>::const_iterator it, const char* who) {
  const auto* base = reinterpret_cast<const unsigned char*>(it->first);
  for (size_t i = it->second.requested; i < it->second.capacity; ++i)
    if (base[i] != kGuardByte) {
      set_error(cudaErrorIllegalAddress, std::string(who) + " wrote past the end of a tensor: byte " +
                                             std::to_string(i) + " of a block whose tensor has " +
                                             std::to_string(it->second.requested) + " bytes");
      return;
    }
}
}  // namespace

// Without ASan, the bytes past the tensor are guard bytes, checked after each launch and when the block is
// freed; with it, they are poisoned, and so is a whole block while it is free.
void guard_block(void* p, size_t requested, size_t capacity) {
#if MG_EMU_ASAN
  ASAN_UNPOISON_MEMORY_REGION(p, requested);
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + requested, capacity - requested);
#else
  std::memset(static_cast<char*>(p) + requested, kGuardByte, capacity - requested);
#endif
  std::lock_guard<std::mutex> lock(g_guard_mu);
  g_guards[reinterpret_cast<uintptr_t>(p)] = {requested, capacity};
}
void unguard_block(void* p) {
  std::lock_guard<std::mutex> lock(g_guard_mu);
  auto it = g_guards.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_guards.end()) return;
#if MG_EMU_ASAN
  ASAN_POISON_MEMORY_REGION(p, it->second.capacity);
#else
  check_guard_locked(it, "a kernel (found when its block was freed)");
#endif
  g_guards.erase(it);
}
void check_guard(const void* p, const char* who) {
  if (MG_EMU_ASAN) return;
  std::lock_guard<std::mutex> lock(g_guard_mu);
  auto it = g_guards.upper_bound(reinterpret_cast<uintptr_t>(p));
  if (it == g_guards.begin()) return;
  --it;
  if (reinterpret_cast<uintptr_t>(p) < it->first + it->second.capacity)
    check_guard_locked(it, (std::string("kernel ") + who).c_str());
}

namespace {
std::mutex g_attr_mu;
std::map<const void*, int> g_max_dyn_smem;  // cudaFuncAttributeMaxDynamicSharedMemorySize per kernel
constexpr int kSmemDefault = 48 << 10, kSmemOptin = 227 << 10;
}  // namespace

void launch_error(const char* name, cudaError_t e, const char* why) {
  set_error(e, std::string("kernel ") + name + ": " + why);
}

void launch_impl(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
                 const std::function<void()>& body) {
  const uint64_t nthreads = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || nthreads == 0 || nthreads > 1024 || block.z > 64 || grid.y > 65535 ||
      grid.z > 65535 || grid.x > 0x7fffffffu) {
    launch_error(name, cudaErrorInvalidConfiguration,
                 ("grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " + std::to_string(grid.z) +
                  ") x block (" + std::to_string(block.x) + ", " + std::to_string(block.y) + ", " +
                  std::to_string(block.z) + ")")
                     .c_str());
    return;
  }
  int limit = kSmemDefault;
  {
    std::lock_guard<std::mutex> lock(g_attr_mu);
    auto it = g_max_dyn_smem.find(kernel);
    if (it != g_max_dyn_smem.end()) limit = it->second;
  }
  if (smem > (size_t)limit) {
    launch_error(name, cudaErrorInvalidValue,
                 ("asks for " + std::to_string(smem) + " bytes of dynamic shared memory, over its limit of " +
                  std::to_string(limit) + " (cudaFuncSetAttribute raises it)")
                     .c_str());
    return;
  }
  Block& b = g_block;
  if (b.body) {
    launch_error(name, cudaErrorLaunchFailure, "launched from inside a kernel");
    return;
  }
  const int n = (int)nthreads;
  ++g_stats.launches;
  b.fibers.assign(n, Fiber{});
  b.free_stacks.clear();
  for (int i = (int)b.stacks.size() - 1; i >= 0; --i) b.free_stacks.push_back(i);
  b.xchg.assign(2 * (size_t)n, 0);
  b.dyn.assign(smem, 0xff);  // NaN bytes: a read of shared memory nobody wrote shows up
  b.failure.clear();
  b.body = &body;
  blockDim = block;
  gridDim = grid;
  const bool rev = reverse_order();
  const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
  bool ok = true;
  for (uint64_t k = 0; k < nblocks && ok; ++k) {
    const uint64_t lin = run_order(rev, nblocks, k);
    blockIdx = {unsigned(lin % grid.x), unsigned(lin / grid.x % grid.y), unsigned(lin / (uint64_t(grid.x) * grid.y))};
    if (smem) std::fill(b.dyn.begin(), b.dyn.end(), 0xff);
    b.shared.clear();
    b.barriers = 0;
    b.warp_epochs.assign((n + 31) / 32, 0);
    for (int i = 0; i < n; ++i) {
      Fiber& f = b.fibers[i];
      f.state = State::ready;
      f.tid = {unsigned(i % block.x), unsigned(i / block.x % block.y), unsigned(i / (block.x * block.y))};
      f.sp = nullptr;
      f.asan_fake = nullptr;  // a thread of the last block that finished had its fake stack freed by ASan
      f.odd_shuffle = false;
    }
    ok = run_block(b, n);
    ++g_stats.blocks;
    g_stats.threads += n;
    if (!b.failure.empty()) ok = false;
  }
  b.body = nullptr;
  threadIdx = {0, 0, 0};
  if (!ok) launch_error(name, cudaErrorLaunchFailure, b.failure.c_str());
}

}  // namespace mg_emu

namespace mg_emu {
const char* error_text(const char* base, const std::string& detail) {
  thread_local std::string s;
  s = std::string(base) + (detail.empty() ? "" : " (emulator: " + detail + ")");
  return s.c_str();
}
}  // namespace mg_emu

using namespace mg_emu;

// ------------------------------------------------------------------ runtime API

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : set_error(cudaErrorInvalidDevice, "the emulator has one device, 0");
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last.code;
  g_message = g_last.detail;
  g_last = {};
  return e;
}
// The runtime's description of each error code the emulator returns.
struct CudaErrorText {
  cudaError_t code;
  const char* text;
};
constexpr CudaErrorText kCudaErrors[] = {
    {cudaSuccess, "no error"},
    {cudaErrorInvalidValue, "invalid argument"},
    {cudaErrorMemoryAllocation, "out of memory"},
    {cudaErrorInvalidConfiguration, "invalid configuration argument"},
    {cudaErrorInvalidDevice, "invalid device ordinal"},
    {cudaErrorNoDevice, "no CUDA-capable device is detected"},
    {cudaErrorIllegalAddress, "an illegal memory access was encountered"},
    {cudaErrorLaunchFailure, "unspecified launch failure"},
};
const char* cudaGetErrorString(cudaError_t e) {
  const char* text = "unknown error";
  for (const CudaErrorText& k : kCudaErrors)
    if (k.code == e) text = k.text;
  return mg_emu::error_text(text, g_message);
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice, "the emulator has one device, 0");
  switch (attr) {
    case cudaDevAttrMultiProcessorCount:
      *value = 132;
      return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = kSmemOptin;
      return cudaSuccess;
  }
  return set_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not emulated");
}
cudaError_t cudaFuncSetAttributeRaw(const void* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > kSmemOptin)
    return set_error(cudaErrorInvalidValue, "cudaFuncSetAttribute: value over the device's opt-in limit");
  std::lock_guard<std::mutex> lock(g_attr_mu);
  g_max_dyn_smem[kernel] = value;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  static int token;
  *s = reinterpret_cast<cudaStream_t>(&token);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaMalloc(void** p, size_t n) {
  *p = nullptr;
  const size_t bytes = (std::max<size_t>(n, 1) + 255) / 256 * 256;
  std::lock_guard<std::mutex> lock(g_mem_mu);
  if (bytes > kDeviceBytes - g_device_in_use) return set_error(cudaErrorMemoryAllocation, "cudaMalloc: out of memory");
  void* q = std::aligned_alloc(256, bytes);
  if (!q) return set_error(cudaErrorMemoryAllocation, "cudaMalloc: the host is out of memory");
  if (bytes <= kPoisonLimit) std::memset(q, 0xff, bytes);  // NaN bytes, as a stand-in for garbage
  g_device[reinterpret_cast<uintptr_t>(q)] = n;
  g_device_in_use += bytes;
  *p = q;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mem_mu);
  auto it = g_device.find(reinterpret_cast<uintptr_t>(p));
  if (it == g_device.end()) return set_error(cudaErrorInvalidValue, "cudaFree: not a pointer from cudaMalloc");
  g_device_in_use -= (std::max<size_t>(it->second, 1) + 255) / 256 * 256;
  g_device.erase(it);
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t n) {
  *p = std::malloc(std::max<size_t>(n, 1));
  if (!*p) return set_error(cudaErrorMemoryAllocation, "cudaMallocHost: out of memory");
  std::lock_guard<std::mutex> lock(g_mem_mu);
  g_pinned[reinterpret_cast<uintptr_t>(*p)] = n;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mem_mu);
  if (!g_pinned.erase(reinterpret_cast<uintptr_t>(p)))
    return set_error(cudaErrorInvalidValue, "cudaFreeHost: not a pointer from cudaMallocHost");
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) {
  std::lock_guard<std::mutex> lock(g_mem_mu);
  *total_b = kDeviceBytes;
  *free_b = kDeviceBytes - g_device_in_use;
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t) {
  if (n == 0) return cudaSuccess;
  bool dst_dev, src_dev;
  {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    dst_dev = in_map(g_device, dst, n);
    src_dev = in_map(g_device, src, n);
  }
  const bool want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyDefault && (dst_dev != want_dst || src_dev != want_src))
    return set_error(cudaErrorInvalidValue,
                     "cudaMemcpyAsync: the pointers do not match the copy's direction (or a device range is "
                     "overrun)");
  std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t n, cudaStream_t s) {
  if (dst_device != 0 || src_device != 0) return set_error(cudaErrorInvalidDevice, "the emulator has one device, 0");
  return cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s);
}

struct CUevent_st {
  std::chrono::steady_clock::time_point t;
  bool recorded = false;
};
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->t = std::chrono::steady_clock::now();
  e->recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a->recorded || !b->recorded) return set_error(cudaErrorInvalidValue, "cudaEventElapsedTime: event not recorded");
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
// Work runs when it is queued, so every stream is always caught up: waiting on an event is a no-op.
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned) {
  return e ? cudaSuccess : set_error(cudaErrorInvalidValue, "cudaStreamWaitEvent: null event");
}

// ------------------------------------------------------------------ cuBLAS

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
};

cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}
// cuBLAS's name and description of each status code the emulator returns.
struct CublasStatusText {
  cublasStatus_t status;
  const char *name, *text;
};
constexpr CublasStatusText kCublasStatuses[] = {
    {CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "success"},
    {CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED", "the library was not initialized"},
    {CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "the resource allocation failed"},
    {CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE", "an invalid numeric value was used as an argument"},
    {CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED",
     "the GPU program failed to execute (emulator: operand not device memory)"},
};
const CublasStatusText* cublas_status(cublasStatus_t s) {
  for (const CublasStatusText& e : kCublasStatuses)
    if (e.status == s) return &e;
  return nullptr;
}
const char* cublasGetStatusName(cublasStatus_t s) {
  const CublasStatusText* e = cublas_status(s);
  return e ? e->name : "CUBLAS_STATUS_UNKNOWN";
}
const char* cublasGetStatusString(cublasStatus_t s) {
  const CublasStatusText* e = cublas_status(s);
  return e ? e->text : "unknown";
}

namespace {

// sum over p of x[p] y[p], in order of p, each product rounded before it is added: neither vectorized
// nor contracted into FMAs, whatever the optimization level or the -mtune (GCC splits FMA chains on
// some cores and not on others). Products of two floats are exact in double, so for float and bf16
// inputs only the order of the additions matters.
[[gnu::noinline, gnu::optimize("no-tree-vectorize", "fp-contract=off")]] double dot_in_order(const double* x,
                                                                                             const double* y, int k) {
  double acc = 0;
  for (int p = 0; p < k; ++p) acc += x[p] * y[p];
  return acc;
}

// Eight such sums side by side: rows x and x + k against columns y, y + k, y + 2k, y + 3k. Each is summed
// in order of p exactly as dot_in_order sums it (the same bits); eight independent chains keep the adder
// busy where one chain waits for each addition.
[[gnu::noinline, gnu::optimize("no-tree-vectorize", "fp-contract=off")]] void dots_2x4_in_order(const double* x,
                                                                                                const double* y, int k,
                                                                                                double (&acc)[2][4]) {
  const double *x0 = x, *x1 = x + k, *y0 = y, *y1 = y + k, *y2 = y + 2 * k, *y3 = y + 3 * k;
  double a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
  for (int p = 0; p < k; ++p) {
    const double u = x0[p], v = x1[p], b0 = y0[p], b1 = y1[p], b2 = y2[p], b3 = y3[p];
    a00 += u * b0, a01 += u * b1, a02 += u * b2, a03 += u * b3;
    a10 += v * b0, a11 += v * b1, a12 += v * b2, a13 += v * b3;
  }
  acc[0][0] = a00, acc[0][1] = a01, acc[0][2] = a02, acc[0][3] = a03;
  acc[1][0] = a10, acc[1][1] = a11, acc[1][2] = a12, acc[1][3] = a13;
}

// C = alpha op(A) op(B) + beta C, all column-major, `batch` times with the given strides. TIn is the
// element type of A and B: T itself, or uint16_t for bf16 bits (with a float C).
template <class T, class TIn = T>
cublasStatus_t gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const T* alpha,
                    const TIn* A, int lda, long long sa, const TIn* B, int ldb, long long sb, const T* beta, T* C,
                    int ldc, long long sc, int batch) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, rows_a) || ldb < std::max(1, rows_b) ||
      ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  // Every element each operand spans must be device memory.
  const auto span = [](long long ld, long long cols, long long rows, long long stride, int nb, size_t size) {
    return (size_t)((nb - 1) * stride + (cols - 1) * ld + rows) * size;
  };
  const int cols_a = ta == CUBLAS_OP_N ? k : m, cols_b = tb == CUBLAS_OP_N ? n : k;
  {
    std::lock_guard<std::mutex> lock(g_mem_mu);
    if ((k > 0 && (!in_map(g_device, A, span(lda, cols_a, rows_a, sa, batch, sizeof(TIn))) ||
                   !in_map(g_device, B, span(ldb, cols_b, rows_b, sb, batch, sizeof(TIn))))) ||
        !in_map(g_device, C, span(ldc, n, m, sc, batch, sizeof(T))))
      return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  // CUBLAS_TF32_TENSOR_OP_MATH: float32 inputs are rounded to TF32 (10 mantissa bits) before multiplying.
  const bool tf32 = std::is_same_v<T, float> && h->math == CUBLAS_TF32_TENSOR_OP_MATH;
  const auto in = [tf32](TIn v) -> double {
    if constexpr (std::is_same_v<TIn, uint16_t>) {
      const uint32_t u = uint32_t(v) << 16;  // bf16 bits: the top half of a float
      float f;
      std::memcpy(&f, &u, 4);
      return (double)f;
    } else {
      if constexpr (std::is_same_v<T, float>) {
        if (tf32 && std::isfinite(v)) {
          uint32_t u;
          std::memcpy(&u, &v, 4);
          u = (u + 0xfffu + ((u >> 13) & 1u)) & ~0x1fffu;  // round to nearest even at bit 13
          std::memcpy(&v, &u, 4);
        }
      }
      return (double)v;
    }
  };
  // op(A)[i, p] = a[i * a_i + p * a_p], op(B)[p, j] = b[p * b_p + j * b_j]. Per tile of 64 x 64 of C,
  // op(A)'s rows and op(B)'s columns are read once into doubles, so that each sum runs along contiguous
  // memory, eight elements of C at a time; every element is still the sum over p in order of the same
  // products (dot_in_order).
  const long long a_i = ta == CUBLAS_OP_N ? 1 : lda, a_p = ta == CUBLAS_OP_N ? lda : 1;
  const long long b_p = tb == CUBLAS_OP_N ? 1 : ldb, b_j = tb == CUBLAS_OP_N ? ldb : 1;
  constexpr int kTile = 64;
  std::vector<double> ar((size_t)kTile * k), bc((size_t)kTile * k);
  for (int q = 0; q < batch; ++q) {
    const TIn* a = A + q * sa;
    const TIn* b = B + q * sb;
    T* c = C + q * sc;
    for (int j0 = 0; j0 < n; j0 += kTile) {
      const int nj = std::min(kTile, n - j0);
      for (int j = 0; j < nj; ++j)
        for (int p = 0; p < k; ++p) bc[(size_t)j * k + p] = in(b[p * b_p + (j0 + j) * b_j]);
      for (int i0 = 0; i0 < m; i0 += kTile) {
        const int mi = std::min(kTile, m - i0);
        for (int i = 0; i < mi; ++i)
          for (int p = 0; p < k; ++p) ar[(size_t)i * k + p] = in(a[(i0 + i) * a_i + p * a_p]);
        const auto put = [&](int i, int j, double acc) {
          T& out = c[(i0 + i) + (long long)(j0 + j) * ldc];
          // beta == 0: C is not read, so garbage (even NaN) in it does not matter, as in cuBLAS.
          out = *beta == T(0) ? T(*alpha * (T)acc) : T(*alpha * (T)acc + *beta * out);
        };
        for (int j = 0; j < nj; j += 4)
          for (int i = 0; i < mi; i += 2) {
            if (j + 4 <= nj && i + 2 <= mi) {
              double acc[2][4];
              dots_2x4_in_order(ar.data() + (size_t)i * k, bc.data() + (size_t)j * k, k, acc);
              for (int r = 0; r < 2; ++r)
                for (int e = 0; e < 4; ++e) put(i + r, j + e, acc[r][e]);
              continue;
            }
            for (int jj = j; jj < std::min(j + 4, nj); ++jj)  // the edges of the tile, one sum at a time
              for (int ii = i; ii < std::min(i + 2, mi); ++ii)
                put(ii, jj, dot_in_order(ar.data() + (size_t)ii * k, bc.data() + (size_t)jj * k, k));
          }
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  return gemm(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const double* alpha, const double* A, int lda, const double* B, int ldb, const double* beta,
                           double* C, int ldc) {
  return gemm(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long stride_a,
                                         const float* B, int ldb, long long stride_b, const float* beta, float* C,
                                         int ldc, long long stride_c, int batch) {
  return gemm(h, ta, tb, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
}
cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double* alpha, const double* A, int lda, long long stride_a,
                                         const double* B, int ldb, long long stride_b, const double* beta, double* C,
                                         int ldc, long long stride_c, int batch) {
  return gemm(h, ta, tb, m, n, k, alpha, A, lda, stride_a, B, ldb, stride_b, beta, C, ldc, stride_c, batch);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType a_type, int lda,
                                          long long stride_a, const void* B, cudaDataType b_type, int ldb,
                                          long long stride_b, const void* beta, void* C, cudaDataType c_type, int ldc,
                                          long long stride_c, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t algo) {
  // Only the combination cuda/blas.cu uses; anything else is what cuBLAS calls not supported.
  if (a_type != CUDA_R_16BF || b_type != CUDA_R_16BF || c_type != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F)
    return CUBLAS_STATUS_INVALID_VALUE;
  (void)algo;
  return gemm<float, uint16_t>(h, ta, tb, m, n, k, static_cast<const float*>(alpha), static_cast<const uint16_t*>(A),
                               lda, stride_a, static_cast<const uint16_t*>(B), ldb, stride_b,
                               static_cast<const float*>(beta), static_cast<float*>(C), ldc, stride_c, batch);
}
