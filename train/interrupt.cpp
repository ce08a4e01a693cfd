#include "train/interrupt.h"

#include "core/format.h"

namespace mg {

namespace {
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_stop_signal(int signo) { g_signal = signo; }
}  // namespace

InterruptGuard::InterruptGuard() {
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C ends the process the default way
  sigaction(SIGINT, &sa, &old_int_);
  sigaction(SIGTERM, &sa, &old_term_);
  // A closed terminal or ssh session stops as SIGTERM does, unless it was ignored (nohup): then it stays so.
  sigaction(SIGHUP, nullptr, &old_hup_);
  if (old_hup_.sa_handler != SIG_IGN) sigaction(SIGHUP, &sa, nullptr);
}

InterruptGuard::~InterruptGuard() {
  g_signal = 0;
  sigaction(SIGINT, &old_int_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGHUP, &old_hup_, nullptr);
}

int interrupt_signal() { return g_signal; }

Interrupted::Interrupted(int s, const std::string& where)
    : Error(mg::format("[{}] interrupted by {}", where,
                       s == SIGTERM  ? "SIGTERM"
                       : s == SIGHUP ? "SIGHUP (the terminal was closed)"
                                     : "Ctrl-C (SIGINT)")),
      signo(s) {}

void throw_if_interrupted(const char* where) {
  if (const int s = g_signal) throw Interrupted(s, where);
}

}  // namespace mg
