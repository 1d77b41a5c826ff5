// Reference cases: reading and validating the JSON format (FORMAT.md), writing it back, and
// running a case against the registered ops and the autodiff engine. Nothing here names an op.
#include "deltagraph/diagnostics/cases.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "deltagraph/core/autodiff.h"
#include "deltagraph/core/tape.h"
#include "deltagraph/core/var.h"
#include "deltagraph/diagnostics/check.h"

namespace dg {

namespace {

// ordered_json keeps an object's keys in file order, so inputs, cotangents, expected values and
// attributes come out of a Case in the order the file lists them.
using Json = nlohmann::ordered_json;

// ---- error wording --------------------------------------------------------------------------

// A key as part of a path: `x` reads as `inputs.x`; anything unusual is quoted, `inputs["a b"]`.
bool plain_key(std::string_view key) {
  if (key.empty() || key.size() > 64) return false;
  for (char ch : key)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-')) return false;
  return true;
}

std::string quote_text(std::string_view text, size_t limit = 60) {
  std::string s;
  for (char ch : text.substr(0, limit)) {
    if (ch == '"' || ch == '\\') s += '\\';
    if (static_cast<unsigned char>(ch) < 0x20)
      s += fmt::format("\\x{:02x}", ch);
    else
      s += ch;
  }
  return "\"" + s + (text.size() > limit ? "...\"" : "\"");
}

std::string member(const std::string& path, std::string_view key) {
  if (plain_key(key)) return path.empty() ? std::string(key) : path + "." + std::string(key);
  return (path.empty() ? "" : path) + "[" + quote_text(key) + "]";
}

std::string element(const std::string& path, size_t index) {
  return fmt::format("{}[{}]", path, index);
}

// What a JSON value is, for "must be X, got Y" messages; never prints more than a short excerpt.
std::string describe(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return j.get<bool>() ? "true" : "false";
    case Json::value_t::number_integer:
      return fmt::format("the integer {}", j.get<int64_t>());
    case Json::value_t::number_unsigned:
      return fmt::format("the integer {}", j.get<uint64_t>());
    case Json::value_t::number_float:
      return fmt::format("the float {}", j.get<double>());
    case Json::value_t::string:
      return "the string " + quote_text(j.get_ref<const std::string&>());
    case Json::value_t::array:
      return fmt::format("an array of {} elements", j.size());
    case Json::value_t::object:
      return fmt::format("an object with {} keys", j.size());
    default:
      return "a value that is not JSON";
  }
}

std::string shape_text(const Shape& shape) {
  return shape.empty() ? "[] (a scalar)" : to_string(shape);
}

// ---- JSON text ------------------------------------------------------------------------------

// nlohmann keeps only one of two equal keys in an object, silently. A case that defines "x"
// twice must be an error, so the parse callback watches the keys of every object and remembers
// where the first repeated key was.
class DuplicateKeyWatcher {
 public:
  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        begin_element();
        frames_.push_back({true});
        break;
      case Json::parse_event_t::array_start:
        begin_element();
        frames_.push_back({false});
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!frames_.empty() && parsed.is_string()) {
          Frame& frame = frames_.back();
          frame.key = parsed.get<std::string>();
          if (!frame.keys.insert(frame.key).second && !duplicate_)
            duplicate_ =
                fmt::format("{} has the key {} twice", enclosing_path(), quote_text(frame.key));
        }
        break;
      case Json::parse_event_t::value:
        begin_element();
        break;
    }
    return true;  // keep everything; the watcher only observes
  }

  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool is_object;
    std::set<std::string> keys = {};
    std::string key = {};  // the member being read (objects)
    size_t elements = 0;   // elements begun so far (arrays)
  };

  void begin_element() {
    if (!frames_.empty() && !frames_.back().is_object) ++frames_.back().elements;
  }

  // The path of the innermost object (whose key repeats).
  std::string enclosing_path() const {
    std::string path;
    for (size_t i = 0; i + 1 < frames_.size(); ++i)
      path = frames_[i].is_object ? member(path, frames_[i].key)
                                  : element(path, frames_[i].elements - 1);
    return path.empty() ? "the top level" : path;
  }

  std::vector<Frame> frames_;
  std::optional<std::string> duplicate_;
};

Json parse_json(std::string_view text, const std::string& origin) {
  DuplicateKeyWatcher watcher;
  Json root;
  try {
    // The callback is copied into a std::function: pass a reference so the copy reports here.
    root = Json::parse(text.data(), text.data() + text.size(),
                       [&watcher](int depth, Json::parse_event_t event, Json& parsed) {
                         return watcher(depth, event, parsed);
                       });
  } catch (const Json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 3, column 7: ..." without the tag;
    // the excerpt of the offending token can be long in a hostile file, so it is cut.
    std::string what = e.what();
    if (size_t close = what.find("] ");
        what.rfind("[json.exception.", 0) == 0 && close != what.npos)
      what.erase(0, close + 2);
    if (what.size() > 300) what = what.substr(0, 300) + "...";
    throw Error(fmt::format("{}: malformed JSON: {}", origin, what));
  }
  if (watcher.duplicate()) throw Error(origin + ": " + *watcher.duplicate());
  return root;
}

// ---- from JSON to a Case -----------------------------------------------------------------

class CaseReader {
 public:
  explicit CaseReader(const std::string& origin) : origin_(origin) {}

  Case read(const Json& root) {
    expect_object(root, "");
    expect_keys(
        root, "",
        {"name", "source", "inputs", "nodes", "cotangents", "expected", "grads", "tolerance"}, {});
    Case c;
    c.name = string_at(root.at("name"), "name");
    c.source = string_at(root.at("source"), "source");

    const Json& inputs = root.at("inputs");
    expect_object(inputs, "inputs");
    for (const auto& [name, value] : inputs.items()) {
      const std::string path = member("inputs", name);
      CaseInput input{name, tensor_at(value, path, /*is_input=*/true)};
      input.requires_grad = bool_at(value.at("requires_grad"), member(path, "requires_grad"));
      c.inputs.push_back(std::move(input));
    }

    const Json& nodes = root.at("nodes");
    if (!nodes.is_array()) fail_at("nodes", "must be an array of nodes, got {}", describe(nodes));
    for (size_t i = 0; i < nodes.size(); ++i)
      c.nodes.push_back(node_at(nodes[i], element("nodes", i)));

    c.cotangents = tensors_at(root.at("cotangents"), "cotangents");
    c.expected = tensors_at(root.at("expected"), "expected");
    c.grads = tensors_at(root.at("grads"), "grads");

    const Json& tolerance = root.at("tolerance");
    expect_object(tolerance, "tolerance");
    expect_keys(tolerance, "tolerance", {"rtol", "atol"}, {});
    c.rtol = number_at(tolerance.at("rtol"), "tolerance.rtol");
    c.atol = number_at(tolerance.at("atol"), "tolerance.atol");
    return c;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail_at(const std::string& path, fmt::format_string<Args...> format,
                            Args&&... args) const {
    throw Error(fmt::format("{}: {} {}", origin_, path.empty() ? "the top level" : path,
                            fmt::format(format, std::forward<Args>(args)...)));
  }

  void expect_object(const Json& j, const std::string& path) const {
    if (!j.is_object()) fail_at(path, "must be a JSON object, got {}", describe(j));
  }

  // The object must have every required key, may have the optional ones, and nothing else (a
  // misspelt key is an error, not something silently ignored).
  void expect_keys(const Json& object, const std::string& path,
                   std::initializer_list<const char*> required,
                   std::initializer_list<const char*> optional) const {
    auto listing = [&] {
      std::string s;
      for (const char* k : required) s += (s.empty() ? "" : ", ") + std::string(k);
      for (const char* k : optional) s += (s.empty() ? "" : ", ") + std::string(k);
      return s;
    };
    for (const char* key : required)
      if (!object.contains(key)) fail_at(path, "has no key \"{}\" (it needs: {})", key, listing());
    for (const auto& [key, value] : object.items()) {
      bool known = false;
      for (const char* k : required) known |= key == k;
      for (const char* k : optional) known |= key == k;
      if (!known)
        fail_at(path, "has an unknown key {} (the keys are: {})", quote_text(key), listing());
    }
  }

  std::string string_at(const Json& j, const std::string& path) const {
    if (!j.is_string()) fail_at(path, "must be a string, got {}", describe(j));
    return j.get<std::string>();
  }

  bool bool_at(const Json& j, const std::string& path) const {
    if (!j.is_boolean()) fail_at(path, "must be true or false, got {}", describe(j));
    return j.get<bool>();
  }

  double number_at(const Json& j, const std::string& path) const {
    if (!j.is_number()) fail_at(path, "must be a number, got {}", describe(j));
    return j.get<double>();
  }

  int64_t integer_at(const Json& j, const std::string& path) const {
    if (j.is_number_unsigned()) {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail_at(path, "is {}, which does not fit in int64", u);
      return static_cast<int64_t>(u);
    }
    if (j.is_number_integer()) return j.get<int64_t>();
    fail_at(path, "must be an integer, got {}", describe(j));
  }

  std::vector<std::string> names_at(const Json& j, const std::string& path) const {
    if (!j.is_array()) fail_at(path, "must be an array of value names, got {}", describe(j));
    std::vector<std::string> names;
    names.reserve(j.size());
    for (size_t i = 0; i < j.size(); ++i) names.push_back(string_at(j[i], element(path, i)));
    return names;
  }

  Shape shape_at(const Json& j, const std::string& path) const {
    if (!j.is_array())
      fail_at(path, "must be an array of non-negative integers, got {}", describe(j));
    if (j.size() > static_cast<size_t>(Shape::kMaxDims))
      fail_at(path, "has {} axes; deltagraph tensors have at most {}", j.size(), Shape::kMaxDims);
    Shape shape;
    for (size_t i = 0; i < j.size(); ++i) {
      const int64_t size = integer_at(j[i], element(path, i));
      if (size < 0) fail_at(element(path, i), "is {}; sizes cannot be negative", size);
      shape.push_back(size);
    }
    // Kernels multiply any subset of a shape's sizes, so even a tensor with a zero-sized axis
    // must not carry sizes whose product overflows.
    int64_t product = 1;
    for (int64_t size : shape)
      if (__builtin_mul_overflow(product, std::max<int64_t>(size, 1), &product))
        fail_at(path, "is {}: its sizes multiply past the int64 range", to_string(shape));
    return shape;
  }

  DType dtype_at(const Json& j, const std::string& path) const {
    if (j.is_string()) {
      const std::string& name = j.get_ref<const std::string&>();
      if (name == "float64") return DType::f64;
      if (name == "int64") return DType::i64;
    }
    fail_at(path, "must be \"float64\" or \"int64\", got {}", describe(j));
  }

  Tensor tensor_at(const Json& j, const std::string& path, bool is_input) const {
    expect_object(j, path);
    if (is_input)
      expect_keys(j, path, {"shape", "dtype", "data", "requires_grad"}, {});
    else
      expect_keys(j, path, {"shape", "dtype", "data"}, {});
    const Shape shape = shape_at(j.at("shape"), member(path, "shape"));
    const DType dtype = dtype_at(j.at("dtype"), member(path, "dtype"));
    const Json& data = j.at("data");
    const std::string data_path = member(path, "data");
    if (!data.is_array()) fail_at(data_path, "must be an array of numbers, got {}", describe(data));
    // Checked before anything is allocated: the size comes from the file, not from the shape.
    const int64_t needed = shape.product();
    if (data.size() != static_cast<uint64_t>(needed))
      fail_at(data_path, "has {} values but shape {} needs {}", data.size(), shape_text(shape),
              needed);
    Tensor t(shape, dtype);
    if (dtype == DType::f64) {
      double* out = t.data<double>();
      for (size_t i = 0; i < data.size(); ++i) {
        const Json& v = data[i];
        // JSON has one number type; an integer written for a float64 is that float (nlohmann
        // reads floats with strtod, which is exact, subnormals included).
        if (!v.is_number()) fail_at(element(data_path, i), "must be a number, got {}", describe(v));
        out[i] = v.get<double>();
      }
    } else {
      int64_t* out = t.data<int64_t>();
      for (size_t i = 0; i < data.size(); ++i) {
        const Json& v = data[i];
        if (!v.is_number_integer())
          fail_at(element(data_path, i), "must be an integer (the dtype is int64), got {}",
                  describe(v));
        out[i] = integer_at(v, element(data_path, i));
      }
    }
    return t;
  }

  std::vector<NamedTensor> tensors_at(const Json& j, const std::string& path) const {
    expect_object(j, path);
    std::vector<NamedTensor> tensors;
    for (const auto& [name, value] : j.items())
      tensors.push_back({name, tensor_at(value, member(path, name), /*is_input=*/false)});
    return tensors;
  }

  // JSON integer -> int64, float -> double, bool, string, array of integers -> Ints.
  AttrValue attr_at(const Json& j, const std::string& path) const {
    switch (j.type()) {
      case Json::value_t::boolean:
        return AttrValue(j.get<bool>());
      case Json::value_t::number_integer:
      case Json::value_t::number_unsigned:
        return AttrValue(integer_at(j, path));
      case Json::value_t::number_float:
        return AttrValue(j.get<double>());
      case Json::value_t::string:
        return AttrValue(j.get<std::string>());
      case Json::value_t::array: {
        if (j.size() > static_cast<size_t>(Shape::kMaxDims))
          fail_at(path, "has {} entries; a list attribute holds at most {}", j.size(),
                  Shape::kMaxDims);
        Ints values;
        for (size_t i = 0; i < j.size(); ++i) values.push_back(integer_at(j[i], element(path, i)));
        return AttrValue(values);
      }
      default:
        fail_at(path,
                "must be an integer, a float, a bool, a string or an array of integers, got {}",
                describe(j));
    }
  }

  CaseNode node_at(const Json& j, const std::string& path) const {
    expect_object(j, path);
    expect_keys(j, path, {"op", "inputs", "attrs", "outputs"}, {});
    CaseNode node;
    node.op = string_at(j.at("op"), member(path, "op"));
    node.inputs = names_at(j.at("inputs"), member(path, "inputs"));
    const Json& attrs = j.at("attrs");
    expect_object(attrs, member(path, "attrs"));
    for (const auto& [name, value] : attrs.items())
      node.attrs.emplace_back(name, attr_at(value, member(member(path, "attrs"), name)));
    node.outputs = names_at(j.at("outputs"), member(path, "outputs"));
    return node;
  }

  const std::string& origin_;
};

}  // namespace

// ---- validation of the graph -----------------------------------------------------------------

void validate_case(const Case& c, const std::string& origin) {
  auto fail_at = [&](const std::string& path, const std::string& message) {
    throw Error(fmt::format("{}: {} {}", origin, path, message));
  };
  if (c.name.empty()) fail_at("name", "must not be empty");
  for (auto [value, key] : {std::pair{c.rtol, "rtol"}, std::pair{c.atol, "atol"}})
    if (!std::isfinite(value) || value < 0)
      fail_at(member("tolerance", key), fmt::format("must be a finite number >= 0, got {}", value));

  auto check_tensor = [&](const Tensor& t, const std::string& path, bool float_only) {
    if (!t.defined()) fail_at(path, "holds no tensor");
    if (t.dtype() == DType::f32)
      fail_at(path, "is float32; case files hold float64 and int64 tensors only");
    if (float_only && t.dtype() != DType::f64)
      fail_at(member(path, "dtype"), fmt::format("must be \"float64\", got \"{}\"", t.dtype()));
    if (t.dtype() == DType::f64) {
      const double* values = t.data<double>();
      for (int64_t i = 0; i < t.numel(); ++i)
        if (!std::isfinite(values[i]))
          fail_at(element(member(path, "data"), i),
                  fmt::format("is {}; case files hold finite numbers only (JSON has no NaN or "
                              "infinity)",
                              values[i]));
    }
  };

  // Where each name is defined: the input index, or the node index.
  struct Definition {
    bool is_input;
    size_t index;
  };
  std::unordered_map<std::string, Definition> defined;
  auto definition_text = [&](const Definition& d) {
    return d.is_input ? fmt::format("an input")
                      : fmt::format("an output of nodes[{}] ({})", d.index, c.nodes[d.index].op);
  };

  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const CaseInput& in = c.inputs[i];
    const std::string path = member("inputs", in.name);
    if (in.name.empty()) fail_at("inputs", "has an input with an empty name");
    if (!defined.emplace(in.name, Definition{true, i}).second)
      fail_at("inputs", fmt::format("defines {} twice", quote_text(in.name)));
    check_tensor(in.value, path, false);
    if (in.requires_grad && in.value.dtype() == DType::i64)
      fail_at(member(path, "requires_grad"),
              "is true for an int64 input; int64 values never get a gradient");
  }

  for (size_t i = 0; i < c.nodes.size(); ++i) {
    const CaseNode& node = c.nodes[i];
    const std::string path = element("nodes", i);
    if (node.op.empty()) fail_at(member(path, "op"), "must name an op, got an empty string");
    for (size_t k = 0; k < node.inputs.size(); ++k)
      if (!defined.count(node.inputs[k]))
        fail_at(element(member(path, "inputs"), k),
                fmt::format("is {}, which is not defined before this node (values are the "
                            "inputs and the outputs of earlier nodes)",
                            quote_text(node.inputs[k])));
    std::set<std::string_view> attr_names;  // a set: a hostile node may carry many attributes
    for (const auto& [name, value] : node.attrs) {
      if (name.empty()) fail_at(member(path, "attrs"), "has an attribute with an empty name");
      if (!attr_names.insert(name).second)
        fail_at(member(path, "attrs"), fmt::format("gives {} twice", quote_text(name)));
    }
    if (node.outputs.empty()) fail_at(member(path, "outputs"), "must name at least one value");
    for (size_t k = 0; k < node.outputs.size(); ++k) {
      const std::string& name = node.outputs[k];
      const std::string out_path = element(member(path, "outputs"), k);
      if (name.empty()) fail_at(out_path, "is an empty name");
      auto [it, fresh] = defined.emplace(name, Definition{false, i});
      if (!fresh)
        fail_at(out_path, fmt::format("defines {} again; it is already {} (no name is defined "
                                      "twice)",
                                      quote_text(name), definition_text(it->second)));
    }
  }

  auto check_unique = [&](const std::vector<NamedTensor>& list, const char* section) {
    std::set<std::string_view> seen;
    for (const NamedTensor& t : list)
      if (!seen.insert(t.name).second)
        fail_at(section, fmt::format("lists {} twice", quote_text(t.name)));
  };

  check_unique(c.cotangents, "cotangents");
  for (const NamedTensor& cot : c.cotangents) {
    const std::string path = member("cotangents", cot.name);
    auto it = defined.find(cot.name);
    if (it == defined.end())
      fail_at(path, fmt::format("seeds {}, but no input or node output has that name",
                                quote_text(cot.name)));
    check_tensor(cot.value, path, true);
    if (it->second.is_input) {
      const Tensor& value = c.inputs[it->second.index].value;
      if (value.dtype() != DType::f64)
        fail_at(path, "seeds an int64 input; int64 values never get a cotangent");
      if (!(value.shape() == cot.value.shape()))
        fail_at(path, fmt::format("has shape {} but the input has shape {}",
                                  to_string(cot.value.shape()), to_string(value.shape())));
    }
  }

  check_unique(c.expected, "expected");
  std::set<std::string_view> listed;
  for (const NamedTensor& e : c.expected) {
    const std::string path = member("expected", e.name);
    auto it = defined.find(e.name);
    if (it == defined.end())
      fail_at(path, fmt::format("is not produced by any node (no value is called {})",
                                quote_text(e.name)));
    if (it->second.is_input)
      fail_at(path, "names an input; expected lists the values that nodes produce");
    check_tensor(e.value, path, false);
    listed.insert(e.name);
  }
  for (size_t i = 0; i < c.nodes.size(); ++i)
    for (const std::string& out : c.nodes[i].outputs)
      if (!listed.count(out))
        fail_at("expected", fmt::format("has no entry for {}, an output of nodes[{}] ({}); it must "
                                        "list every value a node produces",
                                        quote_text(out), i, c.nodes[i].op));

  check_unique(c.grads, "grads");
  std::set<std::string_view> graded;
  for (const NamedTensor& g : c.grads) {
    const std::string path = member("grads", g.name);
    auto it = defined.find(g.name);
    if (it == defined.end() || !it->second.is_input)
      fail_at(path, fmt::format("names {}, which is not an input; grads holds dL/d input",
                                quote_text(g.name)));
    const CaseInput& in = c.inputs[it->second.index];
    if (!in.requires_grad)
      fail_at(path,
              fmt::format("is given, but input {} has requires_grad false", quote_text(g.name)));
    check_tensor(g.value, path, true);
    if (!(g.value.shape() == in.value.shape()))
      fail_at(member(path, "shape"),
              fmt::format("is {} but the input has shape {}", to_string(g.value.shape()),
                          to_string(in.value.shape())));
    graded.insert(g.name);
  }
  for (const CaseInput& in : c.inputs)
    if (in.requires_grad && !graded.count(in.name))
      fail_at("grads", fmt::format("has no entry for input {}, which has requires_grad true",
                                   quote_text(in.name)));
}

Case parse_case(std::string_view json_text, const std::string& origin) {
  const Json root = parse_json(json_text, origin);
  Case c = CaseReader(origin).read(root);
  validate_case(c, origin);
  return c;
}

Case read_case(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("{}: is a folder, not a case file", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the file ({})", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail("{}: cannot read the file ({})", path, std::strerror(errno));
  return parse_case(text.str(), path);
}

// ---- writing ----------------------------------------------------------------------------

namespace {

// The shortest decimal text that reads back as the same double, as Python's repr writes it (and
// so the reference files). fmt writes 1.0 as "1", which JSON would read back as an integer; the
// ".0" keeps it a float.
std::string float_text(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

std::string json_string(const std::string& s, const std::string& what) {
  try {
    return Json(s).dump();
  } catch (const Json::exception&) {
    fail("write_case: {} {} is not valid UTF-8", what, quote_text(s));
  }
}

class CaseWriter {
 public:
  std::string write(const Case& c) {
    out_ += "{\n";
    out_ += fmt::format(" \"name\": {},\n", json_string(c.name, "the name"));
    out_ += fmt::format(" \"source\": {},\n", json_string(c.source, "the source"));
    out_ += " \"inputs\": {";
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      out_ += i ? ",\n" : "\n";
      tensor(c.inputs[i].name, c.inputs[i].value, &c.inputs[i].requires_grad);
    }
    out_ += c.inputs.empty() ? "},\n" : "\n },\n";
    out_ += " \"nodes\": [";
    for (size_t i = 0; i < c.nodes.size(); ++i) {
      out_ += i ? ",\n" : "\n";
      node(c.nodes[i]);
    }
    out_ += c.nodes.empty() ? "],\n" : "\n ],\n";
    tensors("cotangents", c.cotangents);
    tensors("expected", c.expected);
    tensors("grads", c.grads);
    out_ += fmt::format(" \"tolerance\": {{\"rtol\": {}, \"atol\": {}}}\n", float_text(c.rtol),
                        float_text(c.atol));
    out_ += "}\n";
    return std::move(out_);
  }

 private:
  void names(const std::vector<std::string>& list) {
    out_ += "[";
    for (size_t i = 0; i < list.size(); ++i)
      out_ += (i ? ", " : "") + json_string(list[i], "the value name");
    out_ += "]";
  }

  void attr(const AttrValue& value) {
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, bool>)
            out_ += v ? "true" : "false";
          else if constexpr (std::is_same_v<T, int64_t>)
            out_ += std::to_string(v);
          else if constexpr (std::is_same_v<T, double>)
            out_ += float_text(v);
          else if constexpr (std::is_same_v<T, std::string>)
            out_ += json_string(v, "the attribute");
          else {
            out_ += "[";
            for (int i = 0; i < v.size(); ++i) out_ += (i ? ", " : "") + std::to_string(v[i]);
            out_ += "]";
          }
        },
        value.storage());
  }

  void node(const CaseNode& n) {
    out_ += fmt::format("  {{\n   \"op\": {},\n   \"inputs\": ", json_string(n.op, "the op"));
    names(n.inputs);
    out_ += ",\n   \"attrs\": {";
    for (size_t i = 0; i < n.attrs.size(); ++i) {
      out_ += (i ? ", " : "") + json_string(n.attrs[i].first, "the attribute name") + ": ";
      attr(n.attrs[i].second);
    }
    out_ += "},\n   \"outputs\": ";
    names(n.outputs);
    out_ += "\n  }";
  }

  void tensor(const std::string& name, const Tensor& t, const bool* requires_grad) {
    out_ += fmt::format("  {}: {{\n   \"shape\": [", json_string(name, "the tensor name"));
    for (int d = 0; d < t.dim(); ++d) out_ += (d ? ", " : "") + std::to_string(t.shape()[d]);
    out_ += fmt::format("],\n   \"dtype\": \"{}\",\n   \"data\": [", dtype_name(t.dtype()));
    const int64_t n = t.numel();
    if (t.dtype() == DType::f64) {
      const double* v = t.data<double>();
      for (int64_t i = 0; i < n; ++i) {
        if (i) out_ += ", ";
        out_ += float_text(v[i]);
      }
    } else {
      const int64_t* v = t.data<int64_t>();
      for (int64_t i = 0; i < n; ++i) {
        if (i) out_ += ", ";
        out_ += std::to_string(v[i]);
      }
    }
    out_ += "]";
    if (requires_grad) out_ += fmt::format(",\n   \"requires_grad\": {}", *requires_grad);
    out_ += "\n  }";
  }

  void tensors(const char* section, const std::vector<NamedTensor>& list) {
    out_ += fmt::format(" \"{}\": {{", section);
    for (size_t i = 0; i < list.size(); ++i) {
      out_ += i ? ",\n" : "\n";
      tensor(list[i].name, list[i].value, nullptr);
    }
    out_ += list.empty() ? "},\n" : "\n },\n";
  }

  std::string out_;
};

}  // namespace

std::string write_case(const Case& c) {
  validate_case(c, c.name.empty() ? "write_case" : "write_case: " + c.name);
  return CaseWriter().write(c);
}

// ---- running ----------------------------------------------------------------------------

namespace {

// Mismatches of one kind (forward, index or gradient): the first one in full, then a count.
struct MismatchLog {
  std::string first;
  int64_t elements = 0;
  int tensors = 0;

  bool any() const { return tensors > 0; }
  std::string summary(const char* kind) const {
    std::string s = fmt::format("{} mismatch: {}", kind, first);
    if (tensors > 1 || elements > 1)
      s +=
          fmt::format(" ({} element{} differ{} in {} tensor{})", elements, elements == 1 ? "" : "s",
                      elements == 1 ? "s" : "", tensors, tensors == 1 ? "" : "s");
    return s;
  }
};

// Compares actual tensors with the case's, keeping the statistics of CaseResult up to date.
class Comparer {
 public:
  Comparer(double rtol, double atol, CaseResult& result)
      : rtol_(rtol), atol_(atol), result_(result) {}

  // `shown` names the value in messages ("y", "dL/dw"); `label` is its place in the case
  // ("expected.y", "grads.w").
  void compare(const std::string& shown, const std::string& label, const Tensor& actual,
               const Tensor& expected, MismatchLog& log) {
    ++result_.compared_tensors;
    if (!(actual.shape() == expected.shape())) {
      record(log,
             fmt::format("{} has shape {} but the case expects {}", shown,
                         shape_text(actual.shape()), shape_text(expected.shape())),
             1);
      return;
    }
    if (actual.dtype() != expected.dtype()) {
      record(
          log,
          fmt::format("{} is {} but the case expects {}", shown, actual.dtype(), expected.dtype()),
          1);
      return;
    }
    const int64_t n = expected.numel();
    auto at = [&](int64_t i) {
      return expected.dim() == 0 ? shown : shown + multi_index(expected.shape(), i);
    };
    if (expected.dtype() == DType::i64) {
      const int64_t *a = actual.data<int64_t>(), *e = expected.data<int64_t>();
      int64_t wrong = 0, first = -1;
      for (int64_t i = 0; i < n; ++i)
        if (a[i] != e[i] && wrong++ == 0) first = i;
      if (wrong)
        record(log, fmt::format("{} is {} but the case expects {}", at(first), a[first], e[first]),
               wrong);
      return;
    }
    const double *a = actual.data<double>(), *e = expected.data<double>();
    int64_t wrong = 0, first = -1;
    double first_error = 0, first_allowed = 0;
    for (int64_t i = 0; i < n; ++i) {
      double error = std::fabs(a[i] - e[i]);
      if (std::isnan(error)) error = std::numeric_limits<double>::infinity();
      const double allowed = atol_ + rtol_ * std::fabs(e[i]);
      const double fraction = error == 0    ? 0
                              : allowed > 0 ? error / allowed
                                            : std::numeric_limits<double>::infinity();
      result_.worst_abs_error = std::max(result_.worst_abs_error, error);
      if (e[i] != 0)
        result_.worst_rel_error = std::max(result_.worst_rel_error, error / std::fabs(e[i]));
      if (result_.worst_tensor.empty() || fraction > result_.worst_tolerance_fraction) {
        result_.worst_tolerance_fraction = fraction;
        result_.worst_tensor = label;
      }
      if (!(error <= allowed) && wrong++ == 0) {
        first = i;
        first_error = error;
        first_allowed = allowed;
      }
    }
    if (wrong)
      record(log,
             fmt::format("{} is {} but the case expects {} (error {:.3g} > allowed {:.3g} = "
                         "atol {:g} + rtol {:g} * |expected|)",
                         at(first), a[first], e[first], first_error, first_allowed, atol_, rtol_),
             wrong);
  }

 private:
  static void record(MismatchLog& log, std::string message, int64_t elements) {
    if (log.first.empty()) log.first = std::move(message);
    log.elements += elements;
    ++log.tensors;
  }

  double rtol_, atol_;
  CaseResult& result_;
};

}  // namespace

CaseResult run_case(const Case& c) {
  CaseResult result;
  result.name = c.name;
  std::vector<std::string> errors;
  MismatchLog forward, indices, gradients;

  auto finish = [&]() {
    result.error = !errors.empty();
    result.forward_mismatch = forward.any();
    result.index_mismatch = indices.any();
    result.gradient_mismatch = gradients.any();
    result.passed = !(result.error || result.forward_mismatch || result.index_mismatch ||
                      result.gradient_mismatch);
    std::vector<std::string> parts = errors;
    if (forward.any()) parts.push_back(forward.summary("forward"));
    if (indices.any()) parts.push_back(indices.summary("index"));
    if (gradients.any()) parts.push_back(gradients.summary("gradient"));
    for (size_t i = 0; i < parts.size(); ++i) result.message += (i ? "; " : "") + parts[i];
    return result;
  };

  // A Case built in code has not been through parse_case; without these guarantees the lookups
  // below could fail.
  try {
    validate_case(c, "invalid case");
  } catch (const std::exception& e) {
    errors.push_back(e.what());
    return finish();
  }

  try {
    Tape tape;
    Comparer comparer(c.rtol, c.atol, result);
    std::unordered_map<std::string, Var> values;
    std::vector<Var> differentiated;
    for (const CaseInput& in : c.inputs) {
      // A copy: a kernel that wrongly writes into its input must not corrupt the case.
      Tensor own = in.value.clone();
      Var v = in.requires_grad ? variable(own, in.name) : constant(own, in.name);
      values.emplace(in.name, v);
      if (in.requires_grad) differentiated.push_back(v);
    }
    std::unordered_map<std::string_view, const Tensor*> expected;
    for (const NamedTensor& e : c.expected) expected.emplace(e.name, &e.value);

    // Forward, comparing each value as soon as it is produced, so the first mismatch reported
    // is the first in evaluation order.
    bool forward_complete = true;
    for (size_t i = 0; i < c.nodes.size() && forward_complete; ++i) {
      const CaseNode& node = c.nodes[i];
      std::vector<Var> args;
      for (const std::string& name : node.inputs) args.push_back(values.at(name));
      std::vector<Var> outs;
      try {
        outs = call(node.op, std::move(args), node.attrs);
      } catch (const std::exception& e) {
        errors.push_back(fmt::format("nodes[{}] ({}) threw: {}", i, node.op, e.what()));
        forward_complete = false;
        break;
      }
      if (outs.size() != node.outputs.size()) {
        errors.push_back(fmt::format("nodes[{}] ({}) produced {} outputs but the case names {}", i,
                                     node.op, outs.size(), node.outputs.size()));
        forward_complete = false;
        break;
      }
      for (size_t k = 0; k < outs.size(); ++k) {
        const std::string& name = node.outputs[k];
        values.emplace(name, outs[k]);
        const Tensor& want = *expected.at(name);
        comparer.compare(name, member("expected", name), outs[k].value(), want,
                         want.dtype() == DType::i64 ? indices : forward);
      }
    }

    if (forward_complete && !differentiated.empty()) {
      try {
        std::vector<Var> outputs, seeds;
        for (const NamedTensor& cot : c.cotangents) {
          const Var& value = values.at(cot.name);
          if (value.dtype() != DType::f64)
            fail("cotangents.{} seeds a {} value; only float64 values take a cotangent", cot.name,
                 value.dtype());
          if (!(value.shape() == cot.value.shape()))
            fail("cotangents.{} has shape {} but the value has shape {}", cot.name,
                 shape_text(cot.value.shape()), shape_text(value.shape()));
          // A value that no differentiated input reaches adds nothing to the gradients.
          if (!value.requires_grad()) continue;
          outputs.push_back(value);
          seeds.push_back(constant(cot.value.clone()));
        }
        std::vector<Var> grads;
        if (outputs.empty()) {
          for (const Var& v : differentiated)
            grads.emplace_back(Tensor::zeros(v.shape(), v.dtype()));
        } else {
          grads = grad(outputs, differentiated, seeds);
        }
        std::unordered_map<std::string_view, const Tensor*> actual;
        size_t k = 0;
        for (const CaseInput& in : c.inputs)
          if (in.requires_grad) actual.emplace(in.name, &grads[k++].value());
        for (const NamedTensor& g : c.grads)
          comparer.compare("dL/d" + g.name, member("grads", g.name), *actual.at(g.name), g.value,
                           gradients);
      } catch (const std::exception& e) {
        errors.push_back(fmt::format("backward pass: {}", e.what()));
      }
    }
  } catch (const std::exception& e) {
    // Anything else (out of memory in a kernel, say) still ends as a reported failure.
    errors.push_back(fmt::format("the run threw: {}", e.what()));
  }
  return finish();
}

}  // namespace dg
