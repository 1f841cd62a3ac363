# SPDX-License-Identifier: Apache-2.0
# The opt-in NCCL target fusemix::nccl (included by the top CMakeLists when FUSEMIX_NCCL is ON,
# which needs FUSEMIX_CUDA and FUSEMIX_MPI): <fusemix/dist/nccl.hpp>, the NCCL model of the
# Communicator concept, with fusemix::cuda, fusemix::mpi and libnccl.
#
# It lives in its own export set, fusemixNcclTargets, so that neither the core nor the CUDA or
# MPI targets gain a dependency; consumers ask for it with find_package(fusemix COMPONENTS nccl).
# NCCL ships no CMake package: the library is the imported target fusemix::nccl_library, made
# here and again by fusemixConfig.cmake where the package is found.

find_path(FUSEMIX_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include
          DOC "Directory of nccl.h (fusemix::nccl)")
find_library(FUSEMIX_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64
             DOC "libnccl (fusemix::nccl)")
if(NOT FUSEMIX_NCCL_INCLUDE_DIR OR NOT FUSEMIX_NCCL_LIBRARY)
  message(FATAL_ERROR "fusemix: FUSEMIX_NCCL needs nccl.h and libnccl (found: ${FUSEMIX_NCCL_INCLUDE_DIR}, "
                      "${FUSEMIX_NCCL_LIBRARY}); set FUSEMIX_NCCL_INCLUDE_DIR and FUSEMIX_NCCL_LIBRARY, or FUSEMIX_NCCL=OFF")
endif()

if(NOT TARGET fusemix::nccl_library)
  add_library(fusemix::nccl_library UNKNOWN IMPORTED)
  set_target_properties(fusemix::nccl_library PROPERTIES IMPORTED_LOCATION "${FUSEMIX_NCCL_LIBRARY}"
                        INTERFACE_INCLUDE_DIRECTORIES "${FUSEMIX_NCCL_INCLUDE_DIR}")
endif()

add_library(fusemix_nccl INTERFACE)
add_library(fusemix::nccl ALIAS fusemix_nccl)
set_target_properties(fusemix_nccl PROPERTIES EXPORT_NAME nccl
                      # The header holds a kernel: the C++ compiler cannot verify it on its own.
                      VERIFY_INTERFACE_HEADER_SETS OFF)
target_sources(fusemix_nccl INTERFACE FILE_SET HEADERS BASE_DIRS include FILES include/fusemix/dist/nccl.hpp)
target_link_libraries(fusemix_nccl INTERFACE fusemix::cuda fusemix::mpi fusemix::nccl_library)

if(FUSEMIX_INSTALL)
  include(GNUInstallDirs)
  install(TARGETS fusemix_nccl EXPORT fusemixNcclTargets FILE_SET HEADERS)
  install(EXPORT fusemixNcclTargets NAMESPACE fusemix:: DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/fusemix)
endif()
export(TARGETS fusemix_nccl NAMESPACE fusemix:: FILE fusemixNcclTargets.cmake)
