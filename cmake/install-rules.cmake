# Installs the headers, the exported targets (grpo::grpo and, when built, grpo::cuda) and a
# relocatable package config with a version file: find_package(grpo 0.1 CONFIG REQUIRED).
include(CMakePackageConfigHelpers)

set(GRPO_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/grpo"
    CACHE PATH "Where grpoConfig.cmake is installed, relative to the prefix")
mark_as_advanced(GRPO_INSTALL_CMAKEDIR)

install(DIRECTORY include/ DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}" COMPONENT grpo_Development)
install(FILES "${PROJECT_BINARY_DIR}/generated/include/grpo/version.hpp"  # made from project(VERSION)
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/grpo" COMPONENT grpo_Development)

set(_grpo_targets grpo_grpo)
if(GRPO_ENABLE_CUDA)
  list(APPEND _grpo_targets grpo_cuda)
endif()
install(TARGETS ${_grpo_targets} EXPORT grpoTargets INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT grpoTargets NAMESPACE grpo:: DESTINATION "${GRPO_INSTALL_CMAKEDIR}"
        COMPONENT grpo_Development)

configure_package_config_file(
    cmake/grpoConfig.cmake.in "${PROJECT_BINARY_DIR}/grpoConfig.cmake"
    INSTALL_DESTINATION "${GRPO_INSTALL_CMAKEDIR}"
)
write_basic_package_version_file(
    "${PROJECT_BINARY_DIR}/grpoConfigVersion.cmake"
    COMPATIBILITY SameMinorVersion
    ARCH_INDEPENDENT
)
install(
    FILES
    "${PROJECT_BINARY_DIR}/grpoConfig.cmake"
    "${PROJECT_BINARY_DIR}/grpoConfigVersion.cmake"
    cmake/grpoDependencies.cmake
    cmake/grpoCudaDependencies.cmake
    cmake/FindPCRE2.cmake
    cmake/Findutf8proc.cmake
    cmake/FindNCCL.cmake
    DESTINATION "${GRPO_INSTALL_CMAKEDIR}"
    COMPONENT grpo_Development
)
