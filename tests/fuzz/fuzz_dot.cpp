// libFuzzer target: DOT export with hostile names (quotes, backslashes, braces, <, >, |,
// newlines, invalid UTF-8). The text must always be a well-formed DOT graph: every quoted ID
// closes, so the braces outside quotes balance.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "deltagraph/deltagraph.h"

namespace {
// Balance of { } outside double-quoted strings (with backslash escapes); -1 on a stray quote.
int unquoted_brace_balance(const std::string& dot) {
  int depth = 0;
  bool quoted = false;
  for (size_t i = 0; i < dot.size(); ++i) {
    const char c = dot[i];
    if (quoted) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}') {
      --depth;
    }
  }
  return quoted ? -1 : depth;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const size_t cut = text.size() / 2;
  dg::Param w(dg::Tensor::ones({2, 2}), text.substr(0, cut));
  dg::Tape tape;
  dg::Scope scope(text.substr(cut));
  dg::Var x = dg::input(dg::Tensor::ones({3, 2}), text);
  dg::Var y = dg::sum(dg::linear(x, w)).named(text.substr(cut / 2));
  const std::string dot = dg::to_dot({y});
  if (unquoted_brace_balance(dot) != 0) std::abort();
  return 0;
}
