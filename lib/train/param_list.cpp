// ParamList: a model's named parameters.
#include <algorithm>

#include "deltagraph/train/nn.h"
#include "seed.h"

namespace dg {

Param ParamList::add(const std::string& name, Tensor value) {
  if (!value.defined()) fail("ParamList::add: the tensor for '{}' is undefined", name);
  return add(name, Param(std::move(value), name));
}

Param ParamList::add(const std::string& name, Param param) {
  if (name.empty()) fail("ParamList::add: a parameter needs a non-empty name");
  if (!param.defined()) fail("ParamList::add: the Param for '{}' is undefined", name);
  if (contains(name))
    fail(
        "ParamList::add: a parameter or buffer named '{}' is already registered (names must be "
        "unique; give each layer its own name)",
        name);
  param.named(name);
  entries_.push_back({name, param});
  return param;
}

Tensor ParamList::add_buffer(const std::string& name, Tensor value) {
  if (name.empty()) fail("ParamList::add_buffer: a buffer needs a non-empty name");
  if (!value.defined()) fail("ParamList::add_buffer: the tensor for '{}' is undefined", name);
  if (contains(name))
    fail(
        "ParamList::add_buffer: a parameter or buffer named '{}' is already registered (names "
        "must be unique; give each layer its own name)",
        name);
  buffers_.push_back({name, value});
  return value;
}

Tensor ParamList::buffer(std::string_view name) const {
  for (const NamedBuffer& b : buffers_)
    if (b.name == name) return b.value;
  std::string known;
  for (const NamedBuffer& b : buffers_) known += (known.empty() ? "" : ", ") + b.name;
  fail("ParamList: no buffer named '{}' (known: {})", name, known.empty() ? "none" : known);
}

bool ParamList::contains(std::string_view name) const {
  return index_of(name) >= 0 || std::any_of(buffers_.begin(), buffers_.end(),
                                            [&](const NamedBuffer& b) { return b.name == name; });
}

uint64_t ParamList::seed_for(std::string_view name) const {
  return detail::mix_seed(seed_ ^ detail::mix_seed(detail::hash_name(name)));
}

int64_t ParamList::index_of(std::string_view name) const {
  for (size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].name == name) return static_cast<int64_t>(i);
  return -1;
}

Param ParamList::at(std::string_view name) const {
  const int64_t i = index_of(name);
  if (i >= 0) return entries_[i].param;
  std::string known;
  for (const NamedParam& e : entries_) known += (known.empty() ? "" : ", ") + e.name;
  fail("ParamList: no parameter named '{}' (known: {})", name, known.empty() ? "none" : known);
}

int64_t ParamList::count() const {
  int64_t total = 0;
  for (const NamedParam& e : entries_) total += e.param.numel();
  return total;
}

std::vector<Param> ParamList::params() const {
  std::vector<Param> out;
  out.reserve(entries_.size());
  for (const NamedParam& e : entries_) out.push_back(e.param);
  return out;
}

void ParamList::zero_grad() {
  for (NamedParam& e : entries_) e.param.zero_grad();
}

std::string ParamList::summary() const {
  size_t width = 4;
  for (const NamedParam& e : entries_) width = std::max(width, e.name.size());
  std::string out =
      fmt::format("{:<{}}  {:<16} {:<8} {:>10}\n", "name", width, "shape", "dtype", "count");
  for (const NamedParam& e : entries_)
    out += fmt::format("{:<{}}  {:<16} {:<8} {:>10}\n", e.name, width, to_string(e.param.shape()),
                       dtype_name(e.param.dtype()), e.param.numel());
  out += fmt::format("{} parameters, {} scalars\n", entries_.size(), count());
  for (const NamedBuffer& b : buffers_)
    out += fmt::format("{:<{}}  {:<16} {:<8} {:>10}\n", b.name, width, to_string(b.value.shape()),
                       dtype_name(b.value.dtype()), "buffer");
  return out;
}

}  // namespace dg
