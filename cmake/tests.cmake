# Every test ctest runs. Specs run twice: under the conc host and under the
# stock lua5.4 with conc/core.so. Sanitizer builds run the same list.

set(BUSTED_PATH "/usr/share/lua/5.1/?.lua\\;/usr/share/lua/5.1/?/init.lua")
find_program(BUSTED_EXE busted PATHS /usr/bin REQUIRED)

set(SAN_ENV "")
if(CONC_SANITIZE STREQUAL "address")
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE ASAN_LIB OUTPUT_STRIP_TRAILING_WHITESPACE)
  # the stock interpreter is not instrumented: the runtime must come first.
  # Leak checking stays with the host runs: under the preloaded runtime,
  # LSan's exit-time tracer crashes when a worker thread is ending just
  # then ("Tracer caught signal 11"), which says nothing about leaks.
  set(PRELOAD_ENV "LD_PRELOAD=${ASAN_LIB}")
  set(SAN_ENV "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1"
              "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
              "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/.ci/lsan.supp:print_suppressions=0")
elseif(CONC_SANITIZE STREQUAL "thread")
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libtsan.so
                  OUTPUT_VARIABLE TSAN_LIB OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(PRELOAD_ENV "LD_PRELOAD=${TSAN_LIB}")
  set(SAN_ENV "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")
else()
  set(PRELOAD_ENV "")
endif()

# Each spec prints every case's name as it starts and its result as it ends
# (spec/case_output.lua), so a case that crashes the process is the last
# one named in ctest's output.
set(SPEC_OUTPUT ${CMAKE_SOURCE_DIR}/spec/case_output.lua)

file(GLOB SPEC_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(spec ${SPEC_FILES})
  get_filename_component(name ${spec} NAME_WE)
  string(REGEX REPLACE "_spec$" "" name ${name})
  set(common_env
    "CONC_HOST=$<TARGET_FILE:conc>"
    "CONC_LUA=${LUA_EXE}"
    "CONC_BUILD=${CMAKE_BINARY_DIR}"
    "CONC_SOURCE=${CMAKE_SOURCE_DIR}"
    "CONC_SANITIZE=${CONC_SANITIZE}"
    ${SAN_ENV})
  add_test(NAME spec.${name}.conc
    COMMAND $<TARGET_FILE:conc> ${BUSTED_EXE} -o ${SPEC_OUTPUT} ${spec}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(spec.${name}.conc PROPERTIES TIMEOUT 300
    ENVIRONMENT "LUA_PATH=${CMAKE_SOURCE_DIR}/spec/?.lua\;${BUSTED_PATH}\;\;;${common_env}")
  # The host spec drives the host binary from outside: once is enough, and
  # under the host no sanitizer runtime is preloaded into its children.
  if(name STREQUAL "host")
    continue()
  endif()
  add_test(NAME spec.${name}.lua5.4
    COMMAND ${LUA_EXE} ${BUSTED_EXE} -o ${SPEC_OUTPUT} ${spec}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set(lua_env ${common_env})
  if(CONC_SANITIZE STREQUAL "address")
    list(TRANSFORM lua_env REPLACE "detect_leaks=1" "detect_leaks=0")
  endif()
  set_tests_properties(spec.${name}.lua5.4 PROPERTIES TIMEOUT 300
    ENVIRONMENT "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/lua/?/init.lua\;${CMAKE_SOURCE_DIR}/spec/?.lua\;${BUSTED_PATH}\;\;;LUA_CPATH=${CMAKE_BINARY_DIR}/lib/?.so\;\;;${PRELOAD_ENV};${lua_env}")
endforeach()

# The handler itself, on fixtures that must fail: a case that kills the host
# with SIGSEGV must be the last one named, after the case before it passed;
# failures, errors and pending cases must each be named with their result.
foreach(meta crash_names_case:crash_fixture results_name_cases:results_fixture)
  string(REPLACE ":" ";" meta ${meta})
  list(GET meta 0 test)
  list(GET meta 1 fixture)
  add_test(NAME meta.${test}
    COMMAND ${CMAKE_COMMAND} -DRUNNER=$<TARGET_FILE:conc> -DBUSTED=${BUSTED_EXE}
            -DHANDLER=${SPEC_OUTPUT} -DFIXTURE=spec/fixtures/${fixture}.lua
            -DEXPECTED=${CMAKE_SOURCE_DIR}/spec/fixtures/${fixture}.expected
            -P ${CMAKE_SOURCE_DIR}/cmake/check_busted.cmake
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(meta.${test} PROPERTIES TIMEOUT 120
    ENVIRONMENT "LUA_PATH=${BUSTED_PATH}\;\;;${SAN_ENV}")
endforeach()

# Examples: each examples/<dir>/<name>.lua runs under the host and its output
# must match <name>.expected (compared as a sorted set of lines when
# <name>.sorted exists, where thread scheduling decides the order).
file(GLOB_RECURSE EXAMPLES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/examples/*.lua)
foreach(ex ${EXAMPLES})
  string(REGEX REPLACE "\\.lua$" "" stem ${ex})
  if(EXISTS ${stem}.expected)
    file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/examples ${stem})
    add_test(NAME example.${rel}
      COMMAND ${CMAKE_COMMAND} -DHOST=$<TARGET_FILE:conc> -DSCRIPT=${ex}
              -DEXPECTED=${stem}.expected -P ${CMAKE_SOURCE_DIR}/cmake/check_output.cmake)
    set_tests_properties(example.${rel} PROPERTIES TIMEOUT 120
      ENVIRONMENT "${SAN_ENV}")
  endif()
endforeach()

# The randomized decoder test: mutated messages must fail cleanly.
add_executable(fuzz_transfer csrc/test/fuzz_transfer.c)
target_include_directories(fuzz_transfer PRIVATE ${CMAKE_SOURCE_DIR}/csrc/lua
  ${CMAKE_SOURCE_DIR}/csrc/core ${CMAKE_SOURCE_DIR}/csrc/os)
target_link_libraries(fuzz_transfer PRIVATE libconc ${LUA_LINK_LIBRARIES} m)
set(FUZZ_ITERATIONS 200000 CACHE STRING "mutated inputs the decoder test feeds")
if(CONC_SANITIZE STREQUAL "thread")
  # single-threaded: TSan has nothing to find here, and its allocator grows
  # without bound over hundreds of thousands of longjmps
  set(FUZZ_ITERATIONS 2000)
endif()
add_test(NAME fuzz.transfer COMMAND fuzz_transfer ${FUZZ_ITERATIONS} 1)
set_tests_properties(fuzz.transfer PROPERTIES TIMEOUT 900 ENVIRONMENT "${SAN_ENV}")

# An application embedding conc through conc.h: its state-init hook must
# reach every thread state.
add_executable(embed_test csrc/test/embed_test.c)
target_link_libraries(embed_test PRIVATE libconc ${LUA_LINK_LIBRARIES} m)
add_test(NAME embed.state_init COMMAND embed_test)
set_tests_properties(embed.state_init PROPERTIES TIMEOUT 60 ENVIRONMENT "${SAN_ENV}")
