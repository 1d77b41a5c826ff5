// libFuzzer target: the reference-case JSON reader and runner. Any input must either parse and
// run, or be rejected with dg::Error; never crash, leak or allocate without bound.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "deltagraph/deltagraph.h"
#include "deltagraph/diagnostics/cases.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const dg::Case c =
        dg::parse_case(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    // Keep each run small: the fuzzer looks for memory errors, not for slow convolutions.
    int64_t elements = 0;
    for (const auto& in : c.inputs) elements += in.value.numel();
    if (elements <= 4096) dg::run_case(c);  // run_case reports op errors, it does not throw
  } catch (const dg::Error&) {
  }
  return 0;
}
