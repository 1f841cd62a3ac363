# SPDX-License-Identifier: Apache-2.0
# What makes fusemix fast on the machine that builds it, for an INTERFACE (or IMPORTED INTERFACE)
# target: -march=native (MARCH), OpenMP threads for the GEMMs, and the GEMMs on OpenBLAS (BLAS)
# where libopenblas-dev is installed. Used for this repo's programs (fusemix_program_flags) and
# for fusemix::native, which consumers link to opt in; fusemix::fusemix itself stays free of
# machine flags. Sets FUSEMIX_GEMM (eigen, openblas or openblas-openmp) in the caller's scope.
function(fusemix_speed_flags target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "MARCH;BLAS" "" "")
  if(arg_MARCH)
    target_compile_options(${target} INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  endif()
  # Threads for Eigen's GEMM, top_k's selection, the k-DPP's catch-ups and the backend's row and
  # elementwise passes: each output is owned by one thread, so results are bitwise reproducible
  # for a given count. Without OpenMP the library runs its own loops on one thread.
  find_package(OpenMP COMPONENTS CXX QUIET)
  if(OpenMP_CXX_FOUND)
    target_link_libraries(${target} INTERFACE OpenMP::OpenMP_CXX)
  endif()
  set(gemm eigen)
  if(arg_BLAS)
    # With OpenMP, OpenBLAS's OpenMP build (Debian's libopenblas-openmp-dev) where installed: the
    # GEMMs and the backend's own passes then share one pool of threads. Beside the pthreads build
    # each pool's idle threads spin while the other works, on the same cores (docs/design.md,
    # "Threads"). Linked by its path, which CMake puts in the RUNPATH: the loader would otherwise
    # take the system's default libopenblas.so.0.
    set(openmp_lib "")
    if(OpenMP_CXX_FOUND)
      find_library(FUSEMIX_OPENBLAS_OPENMP_LIBRARY openblas NO_DEFAULT_PATH
                   PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
      find_path(FUSEMIX_OPENBLAS_OPENMP_INCLUDE_DIR cblas.h NO_DEFAULT_PATH
                PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp)
      if(FUSEMIX_OPENBLAS_OPENMP_LIBRARY AND FUSEMIX_OPENBLAS_OPENMP_INCLUDE_DIR)
        set(openmp_lib ${FUSEMIX_OPENBLAS_OPENMP_LIBRARY})
      endif()
    endif()
    if(openmp_lib)
      target_link_libraries(${target} INTERFACE ${openmp_lib})
      target_include_directories(${target} INTERFACE ${FUSEMIX_OPENBLAS_OPENMP_INCLUDE_DIR})
      target_compile_definitions(${target} INTERFACE FUSEMIX_USE_OPENBLAS)
      set(gemm openblas-openmp)
    else()
      set(BLA_VENDOR OpenBLAS)
      find_package(BLAS QUIET)
      find_path(FUSEMIX_OPENBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas-pthread openblas
                PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE})
      if(BLAS_FOUND AND FUSEMIX_OPENBLAS_INCLUDE_DIR)
        target_link_libraries(${target} INTERFACE BLAS::BLAS)
        target_include_directories(${target} INTERFACE ${FUSEMIX_OPENBLAS_INCLUDE_DIR})
        target_compile_definitions(${target} INTERFACE FUSEMIX_USE_OPENBLAS)
        set(gemm openblas)
      endif()
    endif()
  endif()
  set(FUSEMIX_GEMM ${gemm} PARENT_SCOPE)
endfunction()
