// SPDX-License-Identifier: Apache-2.0
// `mpirun -np K fusemix train --device cuda`: the group over device memory each rank trains over
// (fusemix::dist::nccl_communicator on the CUDA backend's stream), bootstrapped over the
// program's MPI world. Built into the program only (not the Python module) when FUSEMIX_NCCL is
// ON; main.cpp calls start_nccl under mpirun.
#include <memory>
#include <optional>

#include <fusemix/dist/nccl.hpp>

#include "device_group.hpp"

namespace fusemix_cli {

namespace {
std::optional<fusemix::dist::nccl_communicator>& nccl_group() {
  static std::optional<fusemix::dist::nccl_communicator> group;
  return group;
}
}  // namespace

// Installs device_group()'s hooks over `world`; the communicator is made at the first training
// run and lives until the returned token is destroyed (before MPI is finalised).
std::shared_ptr<void> start_nccl(fusemix::dist::mpi_communicator& world, double timeout_seconds) {
  device_group().select_device = [&world] { fusemix::dist::nccl_communicator::select_device(world); };
  device_group().communicator = [&world, timeout_seconds](void* stream) -> fusemix::dist::any_communicator {
    if (!nccl_group())
      nccl_group().emplace(world, static_cast<cudaStream_t>(stream), fusemix::dist::nccl_options{timeout_seconds});
    return *nccl_group();
  };
  return std::shared_ptr<void>(nullptr, [](void*) {
    nccl_group().reset();
    device_group() = {};
  });
}

}  // namespace fusemix_cli
