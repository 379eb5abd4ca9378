// libFuzzer target: the finite-width executor at tiny widths (n <= 16) on every
// input the front end accepts (up to a small size). Run-time errors (a scalar
// that is not finite, a width that does not fit) are ProgramErrors; a NaN in a
// reported mean that was not reported as an error is a finding.
#include <cmath>
#include <cstdlib>

#include "fuzz_common.hpp"
#include "netsor/exec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto p = fuzz::compile(data, size);
  if (!p || !fuzz::small(*p)) return 0;
  netsor::exec::Options o;
  o.width = 2 + static_cast<std::int64_t>(size % 15);  // 2..16, varied by the input
  o.seeds = 2;
  o.threads = 1;
  o.memory_limit = std::size_t(64) << 20;
  try {
    netsor::exec::RunResult r;
    // As the command line does: deep expressions need the big stack.
    netsor::run_on_big_stack([&] { r = netsor::exec::run(*p, o); });
    for (const auto& q : r.quantities)
      if (!std::isfinite(q.mean)) std::abort();
  } catch (const netsor::ProgramError& e) {
    (void)netsor::format(e.diagnostic());
  }
  return 0;
}
