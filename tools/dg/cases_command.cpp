// dg cases: runs reference-case files (placeholder until the case runner lands).
#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"

namespace dg::cli {

int cases_command(const std::vector<std::string>&) {
  fail("not implemented yet");
}

}  // namespace dg::cli
