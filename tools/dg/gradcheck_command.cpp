// dg gradcheck: the property-based gradient tests of the test suite, outside it.
//
//   dg gradcheck [--op NAME]... [--trials N] [--seed S] [--order 1|2] [--case-dir DIR]
//
// One line per op and property, then `N passed, M failed`. Exit status 1 if any failed.
#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"
#include "deltagraph/testing/properties.h"

namespace dg::cli {

namespace {

int64_t parse_number(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  fail("{} needs a non-negative whole number, got '{}'", flag, text);
}

}  // namespace

int gradcheck_command(const std::vector<std::string>& args) {
  PropertyOptions options;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) fail("{} needs a value", args[i]);
      return args[++i];
    };
    const std::string& a = args[i];
    if (a == "--op")
      names.push_back(value());
    else if (a == "--trials")
      options.trials = static_cast<int>(std::max<int64_t>(1, parse_number(a, value())));
    else if (a == "--seed")
      options.seed = static_cast<uint64_t>(parse_number(a, value()));
    else if (a == "--order") {
      options.order = static_cast<int>(parse_number(a, value()));
      if (options.order != 1 && options.order != 2)
        fail("--order is 1 or 2, got {}", options.order);
    } else if (a == "--case-dir")
      options.case_dir = value();
    else
      fail(
          "unknown argument '{}' (usage: dg gradcheck [--op NAME]... [--trials N] [--seed S] "
          "[--order 1|2] [--case-dir DIR])",
          a);
  }
  std::vector<const OpDef*> selected;
  if (names.empty()) {
    for (const OpDef* op : ops())
      if (op->builtin) selected.push_back(op);
  }
  for (const std::string& name : names) selected.push_back(&find_op(name));

  int passed = 0, failed = 0;
  for (const OpDef* op : selected) {
    for (const PropertyResult& r : check_op_properties(*op, options)) {
      if (r.skipped) {
        fmt::print("{:<22} {:<11} skipped (does not apply)\n", r.op, r.property);
        continue;
      }
      fmt::print("{:<22} {:<11} {}\n", r.op, r.property, r.ok ? "PASS" : "FAIL");
      if (!r.ok) fmt::print("{}\n", r.report);
      (r.ok ? passed : failed) += 1;
    }
    std::fflush(stdout);
  }
  fmt::print("{} passed, {} failed\n", passed, failed);
  return failed ? 1 : 0;
}

}  // namespace dg::cli
