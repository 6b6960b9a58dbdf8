# grpo::cuda: the CUDA half. It links LibTorch's full `torch` target (libtorch_cuda, the CUDA
# runtime, NCCL process groups) and compiles grpo's CUDA kernels into the consumer: the kernels
# are a .cu source carried as INTERFACE_SOURCES, which registers them with the header-only core at
# start-up (see include/grpo/cuda/kernels.hpp). A consumer of grpo::cuda enables CUDA itself:
# enable_language(CUDA).
include(grpoCudaDependencies)

add_library(grpo_cuda INTERFACE)
add_library(grpo::cuda ALIAS grpo_cuda)
set_property(TARGET grpo_cuda PROPERTY EXPORT_NAME cuda)
target_link_libraries(grpo_cuda INTERFACE grpo_grpo torch CUDA::cudart NCCL::NCCL)
target_compile_definitions(grpo_cuda INTERFACE GRPO_WITH_CUDA=1)
target_sources(
    grpo_cuda INTERFACE
    "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include/grpo/cuda/kernels.cu>"
    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/grpo/cuda/kernels.cu>"
)
