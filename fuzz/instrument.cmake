# Included from the top-level CMakeLists.txt when TOLLGATE_FUZZ is on, before any library
# is defined: every target of a fuzz build (a build directory of its own, build-fuzz) is
# compiled with libFuzzer's coverage instrumentation and ASan + UBSan, so the fuzzers see
# coverage in, and catch memory errors in, the libraries they link, not only in their own
# file. The fuzz targets themselves add -fsanitize=fuzzer (fuzz/CMakeLists.txt).
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TOLLGATE_FUZZ needs clang (libFuzzer); configure with "
                        "CC=clang CXX=clang++ in a build directory of its own (build-fuzz)")
endif()
if(TOLLGATE_SANITIZE)
    message(FATAL_ERROR "TOLLGATE_FUZZ already turns on ASan + UBSan; leave TOLLGATE_SANITIZE off")
endif()
# UBSan findings abort (-fno-sanitize-recover) so that libFuzzer records them as crashes.
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer
                    # GCC-only names used in source properties (-Wno-maybe-uninitialized).
                    -Wno-unknown-warning-option)
# Executables that are not fuzzers (tollgate, bench tools) still link in this mode.
add_link_options(-fsanitize=address,undefined)
