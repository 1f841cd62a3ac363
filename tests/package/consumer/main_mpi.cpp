// SPDX-License-Identifier: Apache-2.0
/// @file
/// A program that uses the installed fusemix::mpi target (find_package(fusemix COMPONENTS mpi)):
/// an MPI session, the world as a Communicator, and a rank-order sum through the trainer's
/// type-erased reference. Run alone (a one-process MPI job) by the package test.
#include <fusemix/dist/mpi.hpp>

#include <cstdio>
#include <span>

static_assert(fusemix::dist::Communicator<fusemix::dist::mpi_communicator>);

int main(int argc, char** argv) {
  fusemix::dist::mpi_session mpi(&argc, &argv);
  fusemix::dist::mpi_communicator world;
  const fusemix::dist::any_communicator group(world);
  double v[2] = {1.5, static_cast<double>(group.rank())};
  group.all_reduce_sum(std::span<double>(v));
  const bool ok = v[0] == 1.5 * group.size() && !group.device_memory();
  std::printf("mpi consumer %s: rank %d of %d, sum %g\n", ok ? "ok" : "FAILED", group.rank(), group.size(), v[0]);
  return ok ? 0 : 1;
}
