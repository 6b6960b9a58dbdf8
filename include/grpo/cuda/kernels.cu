// grpo's CUDA kernels, compiled into each target that links grpo::cuda (INTERFACE_SOURCES) and
// registered with the header-only core at start-up (see kernels.hpp).
#include "grpo/cuda/kernels.hpp"
