# SPDX-License-Identifier: Apache-2.0
# The opt-in MPI target fusemix::mpi (included by the top CMakeLists when FUSEMIX_MPI is ON):
# <fusemix/dist/mpi.hpp>, the Open MPI model of the Communicator concept, and MPI::MPI_CXX.
#
# It lives in its own export set, fusemixMpiTargets, so that the core target gains no dependency;
# consumers ask for it with find_package(fusemix COMPONENTS mpi).

find_package(MPI REQUIRED COMPONENTS CXX)

add_library(fusemix_mpi INTERFACE)
add_library(fusemix::mpi ALIAS fusemix_mpi)
set_target_properties(fusemix_mpi PROPERTIES EXPORT_NAME mpi)
target_sources(fusemix_mpi INTERFACE FILE_SET HEADERS BASE_DIRS include FILES include/fusemix/dist/mpi.hpp)
target_link_libraries(fusemix_mpi INTERFACE fusemix::fusemix MPI::MPI_CXX)

if(FUSEMIX_INSTALL)
  include(GNUInstallDirs)
  install(TARGETS fusemix_mpi EXPORT fusemixMpiTargets FILE_SET HEADERS)
  install(EXPORT fusemixMpiTargets NAMESPACE fusemix:: DESTINATION ${CMAKE_INSTALL_DATADIR}/cmake/fusemix)
endif()
export(TARGETS fusemix_mpi NAMESPACE fusemix:: FILE fusemixMpiTargets.cmake)
