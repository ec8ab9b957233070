# cmake -DRUNNER=... -DBUSTED=... -DHANDLER=... -DFIXTURE=... -DEXPECTED=...
#       -P check_busted.cmake
# Runs busted on FIXTURE under RUNNER with the output handler HANDLER. The
# fixture is one that must fail, so the run must exit non-zero (a failure,
# an error or a signal), and its stdout, with durations written as "N s",
# must equal EXPECTED.
execute_process(COMMAND ${RUNNER} ${BUSTED} -o ${HANDLER} ${FIXTURE}
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
  TIMEOUT 60)
if(rc EQUAL 0)
  message(FATAL_ERROR "${FIXTURE}: busted exited 0, but the fixture must fail\n"
                      "stdout:\n${out}\nstderr:\n${err}")
endif()
string(REGEX REPLACE "[0-9]+\\.[0-9]+ s" "N s" out "${out}")
file(READ ${EXPECTED} want)
if(NOT "${out}" STREQUAL "${want}")
  message(FATAL_ERROR "${FIXTURE}: output differs (exit: ${rc})\n"
                      "--- got:\n${out}\n--- want:\n${want}\nstderr:\n${err}")
endif()
