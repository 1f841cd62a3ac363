// SPDX-License-Identifier: Apache-2.0
/// @file
/// How `--device cuda` trains across the processes of an MPI job: hooks that nccl.cu sets. Kept
/// apart from training.hpp so that nccl.cu, compiled by nvcc, instantiates none of the CPU code.
#pragma once

#include <functional>

#include <fusemix/dist/communicator.hpp>

namespace fusemix_cli {

/// Set by the program when it is built with NCCL (`FUSEMIX_NCCL`, apps/fusemix/nccl.cu); empty
/// otherwise, and then `--device cuda` across ranks is refused. `select_device` picks this rank's
/// GPU and must run before any CUDA state exists; `communicator(stream)` returns the group over
/// device memory on the backend's stream (a `cudaStream_t`), made at the first call and kept
/// until the program ends.
struct device_group_hooks {
  std::function<void()> select_device;
  std::function<fusemix::dist::any_communicator(void* stream)> communicator;
};
inline device_group_hooks& device_group() noexcept {
  static device_group_hooks hooks;
  return hooks;
}

}  // namespace fusemix_cli
