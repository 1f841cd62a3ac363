// SPDX-License-Identifier: Apache-2.0
/// @file
/// A CUDA program that uses the installed fusemix::nccl target (find_package(fusemix COMPONENTS
/// nccl)): built by the package tests, not run (there may be no GPU).
#include <fusemix/dist/nccl.hpp>

#include <cstdio>

static_assert(fusemix::dist::Communicator<fusemix::dist::nccl_communicator>);
static_assert(fusemix::dist::reaches_device_memory<fusemix::dist::nccl_communicator>);

int main(int argc, char** argv) {
  fusemix::dist::mpi_session mpi(&argc, &argv);
  fusemix::dist::mpi_communicator world;
  fusemix::dist::nccl_communicator::select_device(world);
  std::printf("nccl consumer: rank %d of %d\n", world.rank(), world.size());
  return 0;
}
