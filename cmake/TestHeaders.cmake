# grpo_add_header_tests(<target> <include-dir>): one generated translation unit per public header,
# each including only that header, so a header that leans on an include it does not make fails
# to compile. Headers under detail/ are internals (reached through public headers); CUDA sources
# (kernels.cu) are left to the CUDA preset.
function(grpo_add_header_tests target include_dir)
  file(GLOB_RECURSE headers CONFIGURE_DEPENDS RELATIVE "${include_dir}" "${include_dir}/grpo/*.hpp")
  list(FILTER headers EXCLUDE REGEX "/detail/")  # internals are checked through the public headers
  set(sources)
  foreach(header IN LISTS headers)
    string(MAKE_C_IDENTIFIER "${header}" id)
    set(tu "${CMAKE_CURRENT_BINARY_DIR}/header_tests/${id}.cpp")
    set(content "#include <${header}>\n#include <${header}>  // and the include guard works\n")
    if(EXISTS "${tu}")
      file(READ "${tu}" old)
    else()
      set(old "")
    endif()
    if(NOT old STREQUAL content)
      file(WRITE "${tu}" "${content}")
    endif()
    list(APPEND sources "${tu}")
  endforeach()
  add_library(${target} OBJECT ${sources})
  target_link_libraries(${target} PRIVATE grpo::grpo)
endfunction()
