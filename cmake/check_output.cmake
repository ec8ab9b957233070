# cmake -DHOST=... -DSCRIPT=... -DEXPECTED=... -P check_output.cmake
# Runs SCRIPT under HOST and compares its stdout with EXPECTED; as sorted
# lines when a .sorted file stands beside EXPECTED.
get_filename_component(dir ${SCRIPT} DIRECTORY)
execute_process(COMMAND ${HOST} ${SCRIPT}
  WORKING_DIRECTORY ${dir}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
  TIMEOUT 100)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${SCRIPT} exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
file(READ ${EXPECTED} want)
string(REGEX REPLACE "\\.expected$" ".sorted" sorted_marker ${EXPECTED})
if(EXISTS ${sorted_marker})
  string(REGEX REPLACE "\n$" "" out "${out}")
  string(REGEX REPLACE "\n$" "" want "${want}")
  string(REPLACE "\n" ";" out "${out}")
  string(REPLACE "\n" ";" want "${want}")
  list(SORT out)
  list(SORT want)
endif()
if(NOT "${out}" STREQUAL "${want}")
  message(FATAL_ERROR "${SCRIPT}: output differs\n--- got:\n${out}\n--- want:\n${want}\nstderr:\n${err}")
endif()
if(NOT "${err}" STREQUAL "")
  message(FATAL_ERROR "${SCRIPT}: unexpected stderr:\n${err}")
endif()
