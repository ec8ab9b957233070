# The C tests of the Lua-free core: core_test links conc_nolua alone (no
# libconc, no Lua), which proves the core needs neither. Each row of the
# table `tests[]` in csrc/test/core_test.c, {"name", test_name}, becomes
# one ctest entry, core.name, run in its own process; the names are read
# here at configure time, and editing core_test.c reruns the configure.
# Included after tests.cmake, whose SAN_ENV (the sanitizers' options) the
# entries run with.

set(CORE_TEST_SOURCE ${CMAKE_SOURCE_DIR}/csrc/test/core_test.c)

add_executable(core_test ${CORE_TEST_SOURCE}
  ${CMAKE_SOURCE_DIR}/csrc/test/ring_test.c
  ${CMAKE_SOURCE_DIR}/csrc/test/sync_test.c
  ${CMAKE_SOURCE_DIR}/csrc/test/shared_test.c
  ${CMAKE_SOURCE_DIR}/csrc/test/loop_test.c)
target_include_directories(core_test PRIVATE ${CMAKE_SOURCE_DIR}/csrc/core
                           ${CMAKE_SOURCE_DIR}/csrc/os)
target_link_libraries(core_test PRIVATE conc_nolua)

set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${CORE_TEST_SOURCE})
file(STRINGS ${CORE_TEST_SOURCE} CORE_TEST_ROWS
     REGEX "^[ \t]*{\"[A-Za-z0-9_]+\", *test_[A-Za-z0-9_]+},?[ \t]*$")
set(CORE_TESTS "")
foreach(row ${CORE_TEST_ROWS})
  string(REGEX REPLACE "^[ \t]*{\"([A-Za-z0-9_]+)\".*$" "\\1" name "${row}")
  list(APPEND CORE_TESTS ${name})
endforeach()
if(NOT CORE_TESTS)
  message(FATAL_ERROR "ctests.cmake: no {\"name\", test_name} rows in "
                      "${CORE_TEST_SOURCE}")
endif()

foreach(name ${CORE_TESTS})
  add_test(NAME core.${name} COMMAND core_test ${name})
  # 77: a test that cannot run in this build says so (ctest: "Skipped")
  set_tests_properties(core.${name} PROPERTIES TIMEOUT 60
                       ENVIRONMENT "${SAN_ENV}" SKIP_RETURN_CODE 77)
endforeach()

# A row written in another form would be silently left out above: this
# entry fails unless the names found here are exactly the table's.
add_test(NAME core.table COMMAND core_test --expect ${CORE_TESTS})
set_tests_properties(core.table PROPERTIES TIMEOUT 60 ENVIRONMENT "${SAN_ENV}")
