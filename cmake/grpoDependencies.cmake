# Finds what the public headers of grpo need. Shared by the build tree and by the installed
# grpoConfig.cmake, so a consumer's find_package(grpo) finds exactly what we built against.
#
#   Torch        tensors, autograd, modules, optimisers, c10d process groups (the torch==2.11.0 wheel)
#   range-v3     the generic advantage path over contiguous ranges
#   nlohmann_json  config.json, tokenizer.json, safetensors headers, JSONL, metrics
#   PCRE2        the tokenizer's pre-tokenizer split pattern (\p{L}, \p{N}, look-ahead; JIT)
#   utf8proc     the tokenizer's NFC normalizer
#   Threads      the reward model scores on its own thread
#   Gloo headers  declarations that LibTorch's ProcessGroupGloo.hpp includes (the torch wheel ships
#                 Gloo's code but not its headers; Debian: libgloo-dev), for grpo/distributed/
#   CUDAToolkit, NCCL  only for grpo::cuda (GRPO_ENABLE_CUDA)

include(CMakeFindDependencyMacro)

macro(_grpo_find name)
  if(GRPO_FINDING_FROM_CONFIG)
    find_dependency(${name} ${ARGN})
  else()
    find_package(${name} ${ARGN} REQUIRED)
  endif()
endmacro()

# TorchConfig.cmake insists on TORCH_CUDA_ARCH_LIST and warns about CMAKE_CUDA_ARCHITECTURES;
# Hopper (the GPU machine) is what we build CUDA code for unless told otherwise.
if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT TORCH_CUDA_ARCH_LIST)
  set(TORCH_CUDA_ARCH_LIST "9.0")
endif()
_grpo_find(Torch)
_grpo_find(range-v3)
_grpo_find(nlohmann_json 3.10)
_grpo_find(PCRE2)
_grpo_find(utf8proc)
_grpo_find(Threads)
find_path(GRPO_GLOO_INCLUDE_DIR gloo/rendezvous/store.h DOC "folder holding gloo/ (Debian: libgloo-dev)")
if(NOT GRPO_GLOO_INCLUDE_DIR)
  set(_grpo_gloo_message "grpo: Gloo's headers (gloo/rendezvous/store.h) were not found; \
grpo/distributed/process_group.hpp needs them for LibTorch's ProcessGroupGloo.hpp. \
Install them (Debian: apt install libgloo-dev) or set GRPO_GLOO_INCLUDE_DIR.")
  if(GRPO_FINDING_FROM_CONFIG)  # a consumer that never includes process_group.hpp does not need them
    message(STATUS "${_grpo_gloo_message}")
  else()
    message(FATAL_ERROR "${_grpo_gloo_message}")
  endif()
endif()

# Links the dependencies of the CPU-capable core (grpo::grpo). LibTorch's `torch` target also
# forces libtorch_cuda and the CUDA runtime into every binary (0.9 s start-up instead of 0.35 s
# here); the core needs only torch_cpu, so grpo::cuda adds the CUDA half.
function(grpo_link_dependencies target)
  target_link_libraries(
      ${target} INTERFACE
      torch_cpu_library c10 range-v3::range-v3 nlohmann_json::nlohmann_json
      PCRE2::PCRE2 utf8proc::utf8proc Threads::Threads
  )
  # torch_cpu lacks the C++ frontend folder (torch/csrc/api/include) that `torch` carries.
  target_include_directories(${target} SYSTEM INTERFACE $<TARGET_PROPERTY:torch,INTERFACE_INCLUDE_DIRECTORIES>)
  # fmt: we use the copy LibTorch ships in its include folder, header-only, because the
  # Debian libfmt (v9) would be shadowed by it and fail to link.
  target_compile_definitions(${target} INTERFACE FMT_HEADER_ONLY=1)
  # /usr/include is searched anyway (and -isystem on it breaks libstdc++'s #include_next).
  if(GRPO_GLOO_INCLUDE_DIR AND NOT GRPO_GLOO_INCLUDE_DIR STREQUAL "/usr/include")
    target_include_directories(${target} SYSTEM INTERFACE "${GRPO_GLOO_INCLUDE_DIR}")
  endif()
endfunction()
