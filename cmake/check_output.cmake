# cmake -DHOST=... -DSCRIPT=... -DEXPECTED=... -P check_output.cmake
# Runs SCRIPT under HOST and compares its stdout with EXPECTED; as sorted
# lines when a .sorted file stands beside EXPECTED. Its stderr must be empty,
# or, when a .stderr file stands beside EXPECTED, equal that file once the
# script's directory is taken out of it (tracebacks name the script by the
# path it was run with: the file holds them as run from its own directory).
# A .stderr_match file instead holds a regular expression stderr must match.
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
string(REGEX REPLACE "\\.expected$" ".stderr" stderr_file ${EXPECTED})
if(EXISTS ${stderr_file})
  file(READ ${stderr_file} want_err)
  string(REPLACE "${dir}/" "" err "${err}")
  if(NOT "${err}" STREQUAL "${want_err}")
    message(FATAL_ERROR "${SCRIPT}: stderr differs\n--- got:\n${err}\n--- want:\n${want_err}")
  endif()
elseif(EXISTS ${stderr_file}_match)
  # stderr with figures that vary (a duration): a regular expression
  file(READ ${stderr_file}_match want_err)
  string(STRIP "${want_err}" want_err)
  string(REPLACE "${dir}/" "" err "${err}")
  if(NOT "${err}" MATCHES "${want_err}")
    message(FATAL_ERROR "${SCRIPT}: stderr does not match\n--- got:\n${err}\n--- want (regex):\n${want_err}")
  endif()
elseif(NOT "${err}" STREQUAL "")
  message(FATAL_ERROR "${SCRIPT}: unexpected stderr:\n${err}")
endif()
