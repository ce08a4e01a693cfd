#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "train/distributed.h"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int status = context.run();
  // A run under mpirun (CMakeLists.txt: distributed.mpirun.*) initialised MPI; end it (nothing otherwise).
  mg::World::finalize();
  return status;
}
