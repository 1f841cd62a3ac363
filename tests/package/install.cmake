# SPDX-License-Identifier: Apache-2.0
# Installs the build tree BUILD_DIR into a fresh PREFIX (the fixture of the install consumers).
#   cmake -DBUILD_DIR=<main build> -DPREFIX=<dir> [-DCONFIG=<config>] -P install.cmake
foreach(var BUILD_DIR PREFIX)
  if(NOT ${var})
    message(FATAL_ERROR "install.cmake: ${var} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE "${PREFIX}")
set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args}
                COMMAND_ERROR_IS_FATAL ANY)
