# Configures, builds and runs the consumer project against the installed grpo package.
# Called by ctest (tests/CMakeLists.txt, package/consumer) in script mode.
foreach(step configure build run)
  if(step STREQUAL "configure")
    set(cmd "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}"
            "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DTorch_DIR=${TORCH_PREFIX}"
            "-DCMAKE_CXX_COMPILER_LAUNCHER=${LAUNCHER}" -DCMAKE_BUILD_TYPE=Release)
  elseif(step STREQUAL "build")
    set(cmd "${CMAKE_COMMAND}" --build "${BINARY_DIR}")
  else()
    set(cmd "${BINARY_DIR}/consumer")
  endif()
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer ${step} failed (exit ${rc}): ${cmd}")
  endif()
endforeach()
