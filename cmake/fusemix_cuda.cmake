# SPDX-License-Identifier: Apache-2.0
# The opt-in CUDA target fusemix::cuda (included by the top CMakeLists when FUSEMIX_CUDA is ON).
#
# It lives in its own export set, fusemixCudaTargets, so that CPU users never need the CUDA
# toolkit; consumers ask for it with find_package(fusemix COMPONENTS cuda).
#
# Programs that link fusemix::cuda should use the shared CUDA runtime
# (set_target_properties(<t> PROPERTIES CUDA_RUNTIME_LIBRARY Shared)): CUDA::cudart is the shared
# libcudart, and CMake links the static one into CUDA programs by default.

set(FUSEMIX_CUDA_ARCHITECTURES 90 CACHE STRING
    "CUDA architectures of this repo's CUDA programs when CMAKE_CUDA_ARCHITECTURES is not set (90 = H100/H200)")
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES ${FUSEMIX_CUDA_ARCHITECTURES})
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

file(GLOB fusemix_cuda_headers CONFIGURE_DEPENDS RELATIVE ${PROJECT_SOURCE_DIR}
     include/fusemix/backend/cuda.cuh include/fusemix/backend/cuda/*.cuh include/fusemix/backend/cuda/*.hpp
     include/fusemix/backend/cuda/kernels/*.hpp)

add_library(fusemix_cuda INTERFACE)
add_library(fusemix::cuda ALIAS fusemix_cuda)
# Consumers see it as fusemix::cuda, both from an install and from the build tree.
set_target_properties(fusemix_cuda PROPERTIES EXPORT_NAME cuda
                      # Header-set verification would compile the .cuh files with the C++ compiler.
                      VERIFY_INTERFACE_HEADER_SETS OFF)
target_sources(fusemix_cuda INTERFACE FILE_SET HEADERS BASE_DIRS include FILES ${fusemix_cuda_headers})
target_link_libraries(fusemix_cuda INTERFACE fusemix::fusemix CUDA::cublas CUDA::cudart)
# CMake 3.25 does not know that nvcc 13 supports C++20 and silently drops CUDA_STANDARD 20 (and
# cuda_std_20), so the flag is given by hand, for the CUDA sources of every consumer. The
# diagnostics silenced are Eigen's __host__ __device__ annotations on defaulted members, which
# nvcc 13 reports in every file that includes a CPU header.
target_compile_options(fusemix_cuda INTERFACE
  $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>
  $<$<COMPILE_LANGUAGE:CUDA>:-diag-suppress=20012,20013,20014,20015>)

# The backend on cuda::host_system, compiled by the C++ compiler (no GPU, no CUDA toolkit: plain
# loops, not Thrust): what CI executes of the device code. Internal to this build.
add_library(fusemix_cuda_host INTERFACE)
target_link_libraries(fusemix_cuda_host INTERFACE fusemix::fusemix)

if(FUSEMIX_INSTALL)
  include(GNUInstallDirs)
  # The same directory as fusemixTargets (fusemix_cmake_dir in the top CMakeLists).
  install(TARGETS fusemix_cuda EXPORT fusemixCudaTargets FILE_SET HEADERS)
  install(EXPORT fusemixCudaTargets NAMESPACE fusemix::
          DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/fusemix)
endif()
# The build tree is a package too, as for fusemixTargets.
export(TARGETS fusemix_cuda NAMESPACE fusemix:: FILE fusemixCudaTargets.cmake)
