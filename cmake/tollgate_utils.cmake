# Helpers shared by every target (the spdlog/simdjson way: one warnings function,
# one small test-target function).

function(tollgate_set_warnings target)
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unused-parameter -Wno-missing-field-initializers)
    if(TOLLGATE_WERROR)
        target_compile_options(${target} PRIVATE -Werror)
    endif()
endfunction()

# tollgate_add_test(NAME SOURCES... LIBS ...) : a Boost.Test executable run by ctest.
function(tollgate_add_test name)
    cmake_parse_arguments(T "" "" "SOURCES;LIBS;LABELS" ${ARGN})
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE ${T_LIBS} Boost::unit_test_framework)
    target_compile_definitions(${name} PRIVATE BOOST_TEST_DYN_LINK)
    tollgate_set_warnings(${name})
    add_test(NAME ${name} COMMAND ${name} --log_level=test_suite --report_level=short)
    set_tests_properties(${name} PROPERTIES TIMEOUT 300)
    if(T_LABELS)
        set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
    endif()
endfunction()
