// libFuzzer target: the front end (read, parse, lower) on arbitrary bytes.
// A ProgramError is the expected answer to bad input; anything else that
// escapes (another exception, a crash, a sanitizer report, a hang) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::compile(data, size);
  return 0;
}
