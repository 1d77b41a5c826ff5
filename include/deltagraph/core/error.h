// deltagraph: the one exception type every public entry point throws.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace dg {

// Thrown for every bad input: a message a person can act on, naming the op (or function), the
// argument, the shapes involved and the rule that was broken.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A shape or attribute rule of an op was broken.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// Formats the message with fmt and throws dg::Error (or the subclass E).
template <class E = Error, class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw E(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace dg
