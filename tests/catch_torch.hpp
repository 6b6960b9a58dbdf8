#pragma once
// Catch2 in a test that includes LibTorch's module/optimizer headers: c10/util/Logging.h defines
// a glog-style CHECK(condition) macro that replaces Catch's CHECK(expr). Include this header
// after the torch headers to restore Catch's definition.
#include <c10/util/Logging.h>
#include <catch2/catch.hpp>

#undef CHECK
#define CHECK(...) INTERNAL_CATCH_TEST("CHECK", Catch::ResultDisposition::ContinueOnFailure, __VA_ARGS__)
