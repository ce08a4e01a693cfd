// Stopping long work cleanly on Ctrl-C (SIGINT), SIGTERM or SIGHUP (a closed terminal or ssh session).
//
// While an InterruptGuard lives, the first SIGINT, SIGTERM or SIGHUP only sets a flag that the trainer and
// evaluate() poll between steps and batches; the handler is installed with SA_RESETHAND, so a second
// signal gets the default action and ends the process at once (a checkpoint is atomic, so even that
// loses nothing saved). The guard restores the previous handlers when it goes out of scope.
#pragma once
#include <csignal>

#include "core/error.h"

namespace mg {

class InterruptGuard {
 public:
  InterruptGuard();  // clears the flag and installs the handlers
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  struct sigaction old_int_ {
  }, old_term_{}, old_hup_{};
};

// The signal that asked to stop (SIGINT, SIGTERM or SIGHUP) since the innermost guard was made, else 0.
int interrupt_signal();

// Thrown by work that polls the flag (evaluate()) when it stops early.
class Interrupted : public Error {
 public:
  Interrupted(int signo, const std::string& where);
  int signo;
};

// Throws Interrupted naming `where` if a stop was asked for.
void throw_if_interrupted(const char* where);

// The exit status of a command stopped by `signo`, as a shell reports it: 128 + signo (130 for Ctrl-C).
inline int interrupted_exit_status(int signo) { return 128 + signo; }

}  // namespace mg
