# What grpo::cuda needs beyond the core: the CUDA language, the toolkit and NCCL.
include(CMakeFindDependencyMacro)
if(NOT CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)  # Hopper: the H100/H200 of the GPU machine
endif()
if(GRPO_FINDING_FROM_CONFIG)
  find_dependency(CUDAToolkit)
  find_dependency(NCCL)
else()
  enable_language(CUDA)
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)  # CMake < 3.26 has no C++20 flags for nvcc
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  find_package(NCCL REQUIRED)
endif()
