// How each built-in op is called through its typed function (dg::conv2d, dg::max_pool2d, ...),
// given its inputs and attributes: tests/typed_ops_test.cpp compares every one with the call by
// name. Each family's test file lists its own ops, so adding an op touches its family's test and
// nothing here:
//
//   const bool listed = dg::test::list_typed_calls({
//       {"relu", [](const Vars& in, const Attrs&) { return Vars{relu(in[0])}; }},
//   });
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "deltagraph/deltagraph.h"

namespace dg::test {

using TypedCall = std::function<std::vector<Var>(const std::vector<Var>& in, const Attrs& attrs)>;

// Every listed op's typed call, by op name.
inline std::map<std::string, TypedCall>& typed_calls() {
  static std::map<std::string, TypedCall> calls;
  return calls;
}

// Adds a family's entries (at static initialisation); an op listed twice is a mistake.
inline bool list_typed_calls(std::initializer_list<std::pair<std::string, TypedCall>> calls) {
  for (const auto& [name, call] : calls)
    if (!typed_calls().emplace(name, call).second)
      throw Error("list_typed_calls: '" + name + "' is listed twice");
  return true;
}

// The typed overloads with and without an optional third input (a bias): f(x, w, &b or nullptr).
template <class F>
std::vector<Var> with_optional_bias(const std::vector<Var>& in, F&& f) {
  return {in.size() > 2 ? f(in[0], in[1], &in[2]) : f(in[0], in[1], nullptr)};
}

}  // namespace dg::test
