// The reference-case format: parsing and validation errors, exact round trips through
// write_case, and run_case on the reference cases whose ops exist.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "deltagraph/deltagraph.h"

namespace {

namespace fs = std::filesystem;

const std::string kReference = std::string(DG_TEST_DATA) + "/reference";

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The smallest useful case: relu on a 2x3 input.
const std::string kTiny = R"({
 "name": "tiny",
 "source": "hand-written",
 "inputs": {
  "x": {"shape": [2, 3], "dtype": "float64", "data": [1.0, -2.0, 3.0, -4.0, 5.0, -6.0], "requires_grad": true}
 },
 "nodes": [
  {"op": "relu", "inputs": ["x"], "attrs": {}, "outputs": ["y"]}
 ],
 "cotangents": {"y": {"shape": [2, 3], "dtype": "float64", "data": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]}},
 "expected": {"y": {"shape": [2, 3], "dtype": "float64", "data": [1.0, 0.0, 3.0, 0.0, 5.0, 0.0]}},
 "grads": {"x": {"shape": [2, 3], "dtype": "float64", "data": [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]}},
 "tolerance": {"rtol": 1e-10, "atol": 1e-12}
})";

// kTiny with `from` (which must occur exactly once) replaced by `to`.
std::string tiny_with(const std::string& from, const std::string& to) {
  const size_t at = kTiny.find(from);
  EXPECT_NE(at, std::string::npos) << "the test's pattern is not in kTiny: " << from;
  EXPECT_EQ(kTiny.find(from, at + 1), std::string::npos) << "the pattern occurs twice: " << from;
  if (at == std::string::npos) return kTiny;
  return kTiny.substr(0, at) + to + kTiny.substr(at + from.size());
}

// The message of the dg::Error that parsing `text` throws ("" if it parses).
std::string parse_error(const std::string& text) {
  try {
    dg::parse_case(text, "tiny.json");
  } catch (const dg::Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_PARSE_ERROR(text, fragment)                                                       \
  do {                                                                                           \
    const std::string message_ = parse_error(text);                                              \
    EXPECT_NE(message_.find(fragment), std::string::npos)                                        \
        << "expected an error containing: " << (fragment) << "\n got: " << message_;             \
    EXPECT_EQ(message_.rfind("tiny.json: ", 0), 0u) << "not prefixed by the file: " << message_; \
  } while (0)

// ---- parsing ------------------------------------------------------------------------------

TEST(ParseCase, ReadsEveryField) {
  dg::Case c = dg::parse_case(kTiny, "tiny.json");
  EXPECT_EQ(c.name, "tiny");
  EXPECT_EQ(c.source, "hand-written");
  ASSERT_EQ(c.inputs.size(), 1u);
  EXPECT_EQ(c.inputs[0].name, "x");
  EXPECT_TRUE(c.inputs[0].requires_grad);
  EXPECT_EQ(c.inputs[0].value.dtype(), dg::DType::f64);
  EXPECT_TRUE((c.inputs[0].value.shape() == dg::Shape{2, 3}));
  EXPECT_EQ(c.inputs[0].value.to_vector(), (std::vector<double>{1, -2, 3, -4, 5, -6}));
  ASSERT_EQ(c.nodes.size(), 1u);
  EXPECT_EQ(c.nodes[0].op, "relu");
  EXPECT_EQ(c.nodes[0].inputs, std::vector<std::string>{"x"});
  EXPECT_EQ(c.nodes[0].outputs, std::vector<std::string>{"y"});
  EXPECT_TRUE(c.nodes[0].attrs.empty());
  ASSERT_EQ(c.cotangents.size(), 1u);
  ASSERT_EQ(c.expected.size(), 1u);
  ASSERT_EQ(c.grads.size(), 1u);
  EXPECT_EQ(c.rtol, 1e-10);
  EXPECT_EQ(c.atol, 1e-12);
}

TEST(ParseCase, KeepsTheFileOrderOfInputs) {
  // Keys are deliberately not in alphabetical order.
  std::string text = tiny_with(
      R"("inputs": {)",
      R"("inputs": {"zeta": {"shape": [], "dtype": "int64", "data": [7], "requires_grad": false},)");
  dg::Case c = dg::parse_case(text, "tiny.json");
  ASSERT_EQ(c.inputs.size(), 2u);
  EXPECT_EQ(c.inputs[0].name, "zeta");
  EXPECT_EQ(c.inputs[1].name, "x");
  EXPECT_EQ(c.inputs[0].value.dtype(), dg::DType::i64);
  EXPECT_EQ(c.inputs[0].value.dim(), 0);
  EXPECT_EQ(c.inputs[0].value.item(), 7);
}

TEST(ParseCase, MalformedJsonNamesTheFileAndThePosition) {
  EXPECT_PARSE_ERROR(kTiny.substr(0, 120), "tiny.json: malformed JSON: parse error at line");
  EXPECT_PARSE_ERROR("{\"name\": tru}", "column");
  EXPECT_PARSE_ERROR("", "malformed JSON");
  // A number beyond the double range is a JSON error too, not an infinity.
  EXPECT_PARSE_ERROR(tiny_with("-6.0]", "-6e999]"), "number overflow");
}

TEST(ParseCase, MissingKeys) {
  EXPECT_PARSE_ERROR(tiny_with(R"(,
 "tolerance": {"rtol": 1e-10, "atol": 1e-12})",
                               ""),
                     "tiny.json: the top level has no key \"tolerance\"");
  EXPECT_PARSE_ERROR(
      tiny_with(R"("dtype": "float64", "data": [1.0, -2.0)", R"("data": [1.0, -2.0)"),
      "tiny.json: inputs.x has no key \"dtype\"");
  EXPECT_PARSE_ERROR(tiny_with(R"("attrs": {}, )", ""), "nodes[0] has no key \"attrs\"");
  EXPECT_PARSE_ERROR(tiny_with(R"("rtol": 1e-10, )", ""), "tolerance has no key \"rtol\"");
}

TEST(ParseCase, UnknownKeysAreErrors) {
  EXPECT_PARSE_ERROR(
      tiny_with(R"("requires_grad": true)", R"("requires_grad": true, "requires_gard": 1)"),
      "inputs.x has an unknown key \"requires_gard\"");
  // Only inputs have requires_grad.
  EXPECT_PARSE_ERROR(tiny_with(R"([0.5, 0.5, 0.5, 0.5, 0.5, 0.5]})",
                               R"([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], "requires_grad": true})"),
                     "cotangents.y has an unknown key \"requires_grad\"");
}

TEST(ParseCase, WrongJsonTypes) {
  EXPECT_PARSE_ERROR("[1, 2]",
                     "tiny.json: the top level must be a JSON object, got an array of 2 elements");
  EXPECT_PARSE_ERROR(tiny_with(R"("name": "tiny")", R"("name": 3)"),
                     "name must be a string, got the integer 3");
  EXPECT_PARSE_ERROR(tiny_with(R"("requires_grad": true)", R"("requires_grad": 1)"),
                     "inputs.x.requires_grad must be true or false, got the integer 1");
  EXPECT_PARSE_ERROR(tiny_with(R"("inputs": ["x"])", R"("inputs": "x")"),
                     "nodes[0].inputs must be an array of value names, got the string \"x\"");
  EXPECT_PARSE_ERROR(tiny_with(R"("outputs": ["y"])", R"("outputs": [1])"),
                     "nodes[0].outputs[0] must be a string, got the integer 1");
  EXPECT_PARSE_ERROR(tiny_with(R"([
  {"op": "relu", "inputs": ["x"], "attrs": {}, "outputs": ["y"]}
 ])",
                               "5"),
                     "nodes must be an array of nodes, got the integer 5");
  EXPECT_PARSE_ERROR(tiny_with(R"("atol": 1e-12)", R"("atol": "small")"),
                     "tolerance.atol must be a number");
  EXPECT_PARSE_ERROR(tiny_with(R"("atol": 1e-12)", R"("atol": -1e-12)"),
                     "tolerance.atol must be a finite number >= 0");
}

TEST(ParseCase, WrongDtype) {
  EXPECT_PARSE_ERROR(
      tiny_with(R"("dtype": "float64", "data": [1.0, -2.0)",
                R"("dtype": "float32", "data": [1.0, -2.0)"),
      "tiny.json: inputs.x.dtype must be \"float64\" or \"int64\", got the string \"float32\"");
  EXPECT_PARSE_ERROR(
      tiny_with(R"("dtype": "float64", "data": [1.0, -2.0)", R"("dtype": 64, "data": [1.0, -2.0)"),
      "inputs.x.dtype must be \"float64\" or \"int64\", got the integer 64");
  // int64 data must be integers; gradients and cotangents must be float64.
  EXPECT_PARSE_ERROR(tiny_with(R"("dtype": "float64", "data": [1.0, -2.0)",
                               R"("dtype": "int64", "data": [1.0, -2.0)"),
                     "inputs.x.data[0] must be an integer (the dtype is int64), got the float 1");
  EXPECT_PARSE_ERROR(
      tiny_with(
          R"("grads": {"x": {"shape": [2, 3], "dtype": "float64", "data": [0.5, 0.0, 0.5, 0.0, 0.5, 0.0])",
          R"("grads": {"x": {"shape": [2, 3], "dtype": "int64", "data": [0, 0, 0, 0, 0, 0])"),
      "grads.x.dtype must be \"float64\", got \"int64\"");
}

TEST(ParseCase, DataLengthMustMatchTheShape) {
  EXPECT_EQ(
      parse_error(tiny_with("[1.0, -2.0, 3.0, -4.0, 5.0, -6.0]", "[1.0, -2.0, 3.0, -4.0, 5.0]")),
      "tiny.json: inputs.x.data has 5 values but shape [2,3] needs 6");
  // A scalar has exactly one value.
  const std::string scalar =
      R"("zeta": {"shape": [], "dtype": "float64", "data": [], "requires_grad": false},)";
  EXPECT_EQ(parse_error(tiny_with(R"("inputs": {)", R"("inputs": {)" + scalar)),
            "tiny.json: inputs.zeta.data has 0 values but shape [] (a scalar) needs 1");
  EXPECT_PARSE_ERROR(tiny_with(R"("data": [1.0, -2.0)", R"("data": [1.0, "two")"),
                     "inputs.x.data[1] must be a number, got the string \"two\"");
}

TEST(ParseCase, AbsurdShapesAreRejectedBeforeAnythingIsAllocated) {
  auto with_shape = [](const std::string& shape) {
    return tiny_with(R"("x": {"shape": [2, 3], "dtype": "float64", "data": [1.0)",
                     R"("x": {"shape": )" + shape + R"(, "dtype": "float64", "data": [1.0)");
  };
  // 10^18 elements claimed, 6 given: rejected by counting, not by trying to allocate.
  EXPECT_PARSE_ERROR(
      with_shape("[1000000000, 1000000000]"),
      "inputs.x.data has 6 values but shape [1000000000,1000000000] needs 1000000000000000000");
  EXPECT_PARSE_ERROR(with_shape("[4294967296, 4294967296, 4294967296]"),
                     "multiply past the int64 range");
  // A zero-sized axis does not excuse absurd other axes.
  EXPECT_PARSE_ERROR(with_shape("[0, 4294967296, 4294967296]"), "multiply past the int64 range");
  EXPECT_PARSE_ERROR(with_shape("[18446744073709551615]"), "does not fit in int64");
  EXPECT_PARSE_ERROR(with_shape("[2, -3]"), "inputs.x.shape[1] is -3; sizes cannot be negative");
  EXPECT_PARSE_ERROR(with_shape("[2, 3.0]"),
                     "inputs.x.shape[1] must be an integer, got the float 3");
  EXPECT_PARSE_ERROR(with_shape("[1, 1, 1, 1, 1, 1, 1, 1, 1]"),
                     "has 9 axes; deltagraph tensors have at most 8");
}

TEST(ParseCase, NamesMustBeDefinedBeforeUse) {
  EXPECT_PARSE_ERROR(
      tiny_with(R"("inputs": ["x"])", R"("inputs": ["z"])"),
      "tiny.json: nodes[0].inputs[0] is \"z\", which is not defined before this node");
  // Defined, but only by a later node.
  const std::string two_nodes =
      R"({"op": "relu", "inputs": ["y2"], "attrs": {}, "outputs": ["y"]},
  {"op": "relu", "inputs": ["x"], "attrs": {}, "outputs": ["y2"]})";
  EXPECT_PARSE_ERROR(
      tiny_with(R"({"op": "relu", "inputs": ["x"], "attrs": {}, "outputs": ["y"]})", two_nodes),
      "nodes[0].inputs[0] is \"y2\", which is not defined before this node");
  EXPECT_PARSE_ERROR(tiny_with(R"("cotangents": {"y")", R"("cotangents": {"w")"),
                     "cotangents.w seeds \"w\", but no input or node output has that name");
}

TEST(ParseCase, NoNameIsDefinedTwice) {
  EXPECT_PARSE_ERROR(tiny_with(R"("outputs": ["y"])", R"("outputs": ["x"])"),
                     "tiny.json: nodes[0].outputs[0] defines \"x\" again; it is already an input");
  EXPECT_PARSE_ERROR(
      tiny_with(R"("outputs": ["y"])", R"("outputs": ["y", "y"])"),
      "nodes[0].outputs[1] defines \"y\" again; it is already an output of nodes[0] (relu)");
  // JSON objects with a repeated key, which a JSON library would silently collapse.
  EXPECT_PARSE_ERROR(
      tiny_with(
          R"("inputs": {)",
          R"("inputs": {"x": {"shape": [], "dtype": "float64", "data": [1.0], "requires_grad": false},)"),
      "tiny.json: inputs has the key \"x\" twice");
  EXPECT_PARSE_ERROR(tiny_with(R"("attrs": {})", R"("attrs": {"alpha": 1.0, "alpha": 2.0})"),
                     "tiny.json: nodes[0].attrs has the key \"alpha\" twice");
}

TEST(ParseCase, AttributesConvertByJsonType) {
  dg::Case c = dg::parse_case(
      tiny_with(
          R"("attrs": {})",
          R"("attrs": {"i": 3, "neg": -2, "f": 0.5, "one": 1.0, "b": false, "s": "mean", "l": [2, -1], "e": []})"),
      "tiny.json");
  const dg::AttrMap& attrs = c.nodes[0].attrs;
  ASSERT_EQ(attrs.size(), 8u);
  EXPECT_EQ(attrs[0].first, "i");
  EXPECT_TRUE(attrs[0].second.holds<int64_t>());
  EXPECT_EQ(attrs[0].second.as<int64_t>(), 3);
  EXPECT_EQ(attrs[1].second.as<int64_t>(), -2);
  EXPECT_TRUE(attrs[2].second.holds<double>());
  EXPECT_EQ(attrs[2].second.as<double>(), 0.5);
  EXPECT_TRUE(attrs[3].second.holds<double>()) << "1.0 is a float, not the integer 1";
  EXPECT_TRUE(attrs[4].second.holds<bool>());
  EXPECT_EQ(attrs[5].second.as<std::string>(), "mean");
  EXPECT_TRUE((attrs[6].second.as<dg::Ints>() == dg::Ints{2, -1}));
  EXPECT_TRUE(attrs[7].second.holds<dg::Ints>());
  EXPECT_TRUE(attrs[7].second.as<dg::Ints>().empty());
}

TEST(ParseCase, WrongAttributeJsonTypes) {
  auto with_attrs = [](const std::string& attrs) { return tiny_with(R"("attrs": {})", attrs); };
  EXPECT_PARSE_ERROR(
      with_attrs(R"("attrs": {"alpha": null})"),
      "tiny.json: nodes[0].attrs.alpha must be an integer, a float, a bool, a string or an "
      "array of integers, got null");
  EXPECT_PARSE_ERROR(with_attrs(R"("attrs": {"stride": {"h": 1}})"),
                     "nodes[0].attrs.stride must be an integer");
  EXPECT_PARSE_ERROR(with_attrs(R"("attrs": {"shape": [1, 2.5]})"),
                     "nodes[0].attrs.shape[1] must be an integer, got the float 2.5");
  EXPECT_PARSE_ERROR(with_attrs(R"("attrs": {"shape": ["a"]})"),
                     "nodes[0].attrs.shape[0] must be an integer");
  EXPECT_PARSE_ERROR(with_attrs(R"("attrs": [])"), "nodes[0].attrs must be a JSON object");
  EXPECT_PARSE_ERROR(with_attrs(R"("attrs": {"shape": [1, 1, 1, 1, 1, 1, 1, 1, 1]})"),
                     "nodes[0].attrs.shape has 9 entries");
}

TEST(ParseCase, GradientsAndExpectedValuesAreComplete) {
  EXPECT_PARSE_ERROR(
      tiny_with(
          R"("grads": {"x": {"shape": [2, 3], "dtype": "float64", "data": [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]}})",
          R"("grads": {})"),
      "grads has no entry for input \"x\", which has requires_grad true");
  EXPECT_PARSE_ERROR(tiny_with(R"("requires_grad": true)", R"("requires_grad": false)"),
                     "grads.x is given, but input \"x\" has requires_grad false");
  EXPECT_PARSE_ERROR(
      tiny_with(
          R"("grads": {"x": {"shape": [2, 3], "dtype": "float64", "data": [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]}})",
          R"("grads": {"x": {"shape": [3, 2], "dtype": "float64", "data": [0.5, 0.0, 0.5, 0.0, 0.5, 0.0]}})"),
      "grads.x.shape is [3,2] but the input has shape [2,3]");
  EXPECT_PARSE_ERROR(tiny_with(R"("expected": {"y")", R"("expected": {"x")"),
                     "expected.x names an input");
  const std::string more =
      R"("inputs": {"k": {"shape": [1], "dtype": "int64", "data": [1], "requires_grad": true},)";
  EXPECT_PARSE_ERROR(tiny_with(R"("inputs": {)", more),
                     "inputs.k.requires_grad is true for an int64 input");
  EXPECT_PARSE_ERROR(tiny_with(R"("outputs": ["y"])", R"("outputs": ["y", "extra"])"),
                     "expected has no entry for \"extra\", an output of nodes[0] (relu)");
}

// Every byte of a hostile file must end in a Case or a dg::Error, never a crash or another
// exception type.
void expect_parses_or_errors(const std::string& text) {
  try {
    dg::parse_case(text, "fuzz.json");
  } catch (const dg::Error&) {
  }
}

TEST(ParseCase, HostileInputsEndInErrors) {
  // Deep nesting: the JSON parser is iterative, and the structure is rejected at the top.
  EXPECT_PARSE_ERROR(std::string(200000, '[') + std::string(200000, ']'), "must be a JSON object");
  EXPECT_PARSE_ERROR("{\"name\": " + std::string(200000, '[') + std::string(200000, ']') + "}",
                     "tiny.json: the top level has no key");
  EXPECT_PARSE_ERROR(std::string("{\"na\0me\": 1}", 12), "malformed JSON");
  EXPECT_PARSE_ERROR("{\"name\": \"\xff\xfe\"}", "malformed JSON");

  const std::string reference = slurp(kReference + "/maxunpool_arbitrary_indices.json");
  ASSERT_FALSE(reference.empty());
  for (size_t cut = 0; cut < reference.size(); cut += 7)
    expect_parses_or_errors(reference.substr(0, cut));
  std::mt19937 random(12345);
  const std::string alphabet = "{}[],:\"-.e0123456789 truefalsnx";
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text = trial % 2 ? reference : kTiny;
    for (int flips = 1 + trial % 4; flips > 0; --flips)
      text[random() % text.size()] = alphabet[random() % alphabet.size()];
    expect_parses_or_errors(text);
  }
}

TEST(ParseCase, SubnormalsAreExact) {
  const std::string values =
      "[2.535e-321, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, -0.0]";
  dg::Case c = dg::parse_case(tiny_with("[1.0, -2.0, 3.0, -4.0, 5.0, -6.0]", values), "tiny.json");
  const double* v = c.inputs[0].value.data<double>();
  EXPECT_EQ(std::bit_cast<uint64_t>(v[0]), 513u);  // 2.535e-321 is 513 times the smallest subnormal
  EXPECT_EQ(std::bit_cast<uint64_t>(v[1]), 1u);
  EXPECT_EQ(std::bit_cast<uint64_t>(v[2]), 0x8000000000000001u);
  EXPECT_EQ(std::bit_cast<uint64_t>(v[3]), 4503599627370496u);  // the smallest normal
  EXPECT_EQ(std::bit_cast<uint64_t>(v[4]), 4503599627370495u);  // the largest subnormal
  EXPECT_EQ(std::bit_cast<uint64_t>(v[5]), 0x8000000000000000u);
  // And they are written back in the same shortest form.
  EXPECT_NE(dg::write_case(c).find(values), std::string::npos);
}

TEST(ParseCase, ReadCaseNamesTheFile) {
  try {
    dg::read_case("/nonexistent/case.json");
    FAIL() << "no error";
  } catch (const dg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/case.json: cannot open"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(dg::read_case(kReference), dg::Error);  // a folder
}

// ---- writing ------------------------------------------------------------------------------

void expect_identical(const dg::Tensor& a, const dg::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  ASSERT_TRUE(a.shape() == b.shape())
      << what << ": " << dg::to_string(a.shape()) << " vs " << dg::to_string(b.shape());
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what << " differs bitwise";
}

void expect_identical(const std::vector<dg::NamedTensor>& a, const std::vector<dg::NamedTensor>& b,
                      const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].name, b[i].name) << what;
    expect_identical(a[i].value, b[i].value, what + "." + a[i].name);
  }
}

void expect_identical(const dg::Case& a, const dg::Case& b) {
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.source, b.source);
  ASSERT_EQ(a.inputs.size(), b.inputs.size());
  for (size_t i = 0; i < a.inputs.size(); ++i) {
    EXPECT_EQ(a.inputs[i].name, b.inputs[i].name);
    EXPECT_EQ(a.inputs[i].requires_grad, b.inputs[i].requires_grad);
    expect_identical(a.inputs[i].value, b.inputs[i].value, "inputs." + a.inputs[i].name);
  }
  ASSERT_EQ(a.nodes.size(), b.nodes.size());
  for (size_t i = 0; i < a.nodes.size(); ++i) {
    EXPECT_EQ(a.nodes[i].op, b.nodes[i].op);
    EXPECT_EQ(a.nodes[i].inputs, b.nodes[i].inputs);
    EXPECT_EQ(a.nodes[i].outputs, b.nodes[i].outputs);
    ASSERT_EQ(a.nodes[i].attrs.size(), b.nodes[i].attrs.size());
    for (size_t k = 0; k < a.nodes[i].attrs.size(); ++k) {
      const auto& [name_a, value_a] = a.nodes[i].attrs[k];
      const auto& [name_b, value_b] = b.nodes[i].attrs[k];
      EXPECT_EQ(name_a, name_b);
      EXPECT_EQ(value_a.storage().index(), value_b.storage().index()) << name_a;
      if (value_a.holds<double>() && value_b.holds<double>())
        EXPECT_EQ(std::bit_cast<uint64_t>(value_a.as<double>()),
                  std::bit_cast<uint64_t>(value_b.as<double>()));
      else
        EXPECT_TRUE(value_a == value_b) << name_a;
    }
  }
  expect_identical(a.cotangents, b.cotangents, "cotangents");
  expect_identical(a.expected, b.expected, "expected");
  expect_identical(a.grads, b.grads, "grads");
  EXPECT_EQ(std::bit_cast<uint64_t>(a.rtol), std::bit_cast<uint64_t>(b.rtol));
  EXPECT_EQ(std::bit_cast<uint64_t>(a.atol), std::bit_cast<uint64_t>(b.atol));
}

std::vector<std::string> reference_files() {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(kReference))
    if (entry.path().extension() == ".json") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(WriteCase, ReferenceFilesComeBackByteForByte) {
  const std::vector<std::string> files = reference_files();
  EXPECT_GE(files.size(), 95u);  // the specification's 95, then tools/reference/gen_cases.py's
  for (const std::string& file : files) {
    SCOPED_TRACE(file);
    const std::string text = slurp(file);
    const dg::Case c = dg::parse_case(text, file);
    const std::string written = dg::write_case(c);
    EXPECT_TRUE(written == text) << "write_case does not reproduce the file";
    expect_identical(dg::parse_case(written, "written"), c);
  }
}

dg::Case synthetic_case() {
  const double awkward[] = {0.1,
                            1.0 / 3.0,
                            -0.0,
                            1.0,
                            1e16,
                            1e15,
                            123456789012345678.0,
                            1e-5,
                            1e-7,
                            4.9e-324,
                            -2.535e-321,
                            1.7976931348623157e308,
                            -2.5,
                            100.0};
  const int64_t extremes[] = {INT64_MIN, INT64_MAX, 0, -1};
  dg::Case c;
  c.name = "synthetic \"quoted\" \\ name \xc3\xa9";
  c.source = "cases_test";
  c.inputs.push_back(
      {"x", dg::Tensor::from(std::vector<double>(std::begin(awkward), std::end(awkward)), {2, 7}),
       true});
  c.inputs.push_back(
      {"i", dg::Tensor::from(std::vector<int64_t>(std::begin(extremes), std::end(extremes)), {4}),
       false});
  c.inputs.push_back({"s", dg::Tensor::scalar(-0.0, dg::DType::f64), false});
  c.nodes.push_back({"some_op",
                     {"x", "i", "x"},
                     {{"int", int64_t{-7}},
                      {"float", 1.0},
                      {"tiny", 5e-324},
                      {"flag", true},
                      {"text", "mean\n\"x\""},
                      {"list", dg::Ints{2, -1, INT64_MAX}},
                      {"empty", dg::Ints{}}},
                     {"y", "idx"}});
  c.nodes.push_back({"no_attrs", {"y"}, {}, {"z"}});
  c.cotangents.push_back({"z", dg::Tensor::scalar(1.0, dg::DType::f64)});
  c.cotangents.push_back({"y", dg::Tensor::from(std::vector<double>{-0.0, 2.0}, {2})});
  c.expected.push_back({"y", dg::Tensor::from(std::vector<double>{0.5, 1e300}, {2})});
  c.expected.push_back({"idx", dg::Tensor::from(std::vector<int64_t>{3}, {1, 1})});
  c.expected.push_back({"z", dg::Tensor::zeros({0, 3}, dg::DType::f64)});
  c.grads.push_back({"x", dg::Tensor::full({2, 7}, 2.2250738585072014e-308, dg::DType::f64)});
  c.rtol = 1e-10;
  c.atol = 3e-12;
  return c;
}

TEST(WriteCase, RoundTripIsExact) {
  const dg::Case c = synthetic_case();
  const std::string text = dg::write_case(c);
  const dg::Case back = dg::parse_case(text, "synthetic.json");
  expect_identical(back, c);
  EXPECT_EQ(dg::write_case(back), text);
  // Floats that happen to be integers stay floats in the text.
  EXPECT_NE(text.find("\"float\": 1.0"), std::string::npos) << text.substr(0, 2000);
  EXPECT_NE(text.find("-0.0"), std::string::npos);
}

TEST(WriteCase, RefusesWhatJsonCannotHold) {
  dg::Case c = synthetic_case();
  c.expected[0].value.data<double>()[1] = std::numeric_limits<double>::quiet_NaN();
  try {
    dg::write_case(c);
    FAIL() << "no error";
  } catch (const dg::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected.y.data[1] is nan"), std::string::npos)
        << e.what();
  }
  c = synthetic_case();
  c.inputs[0].value = c.inputs[0].value.to(dg::DType::f32);
  EXPECT_THROW(dg::write_case(c), dg::Error);
  c = synthetic_case();
  c.nodes[1].inputs = {"later"};
  EXPECT_THROW(dg::write_case(c), dg::Error);
}

// ---- running ------------------------------------------------------------------------------

std::vector<std::string> reference_case_names() {
  std::vector<std::string> names;
  for (const std::string& file : reference_files()) names.push_back(fs::path(file).stem().string());
  return names;
}

class ReferenceCase : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceCase, Passes) {
  const dg::CaseResult r = dg::run_case(dg::read_case(kReference + "/" + GetParam() + ".json"));
  EXPECT_TRUE(r.passed) << r.message;
  EXPECT_EQ(r.name, GetParam());
  EXPECT_TRUE(r.message.empty()) << r.message;
  EXPECT_LE(r.worst_tolerance_fraction, 1.0);
  EXPECT_GT(r.compared_tensors, 0);
}

// Every reference case, one test each (named after the case).
INSTANTIATE_TEST_SUITE_P(Reference, ReferenceCase, ::testing::ValuesIn(reference_case_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

TEST(RunCase, PerturbedForwardValueFailsWithItsIndex) {
  dg::Case c = dg::read_case(kReference + "/relu_4d.json");
  double* y = c.expected[0].value.data<double>();
  const int64_t flat = 1 * 60 + 2 * 20 + 3 * 5 + 4;  // [1,2,3,4] in [2,3,4,5]
  y[flat] += 1e-6;
  const dg::CaseResult r = dg::run_case(c);
  EXPECT_FALSE(r.passed);
  EXPECT_TRUE(r.forward_mismatch);
  EXPECT_FALSE(r.gradient_mismatch);
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.worst_tensor, "expected.y");
  EXPECT_GT(r.worst_tolerance_fraction, 1.0);
  EXPECT_NEAR(r.worst_abs_error, 1e-6, 1e-12);
  EXPECT_EQ(r.message.rfind("forward mismatch: y[1,2,3,4] is ", 0), 0u) << r.message;
  EXPECT_NE(r.message.find("but the case expects"), std::string::npos) << r.message;
}

TEST(RunCase, PerturbedGradientFails) {
  dg::Case c = dg::read_case(kReference + "/linear_bias.json");
  c.grads[1].value.data<double>()[0] *= 1 + 1e-8;  // dL/dw[0,0]
  const dg::CaseResult r = dg::run_case(c);
  EXPECT_FALSE(r.passed);
  EXPECT_FALSE(r.forward_mismatch);
  EXPECT_TRUE(r.gradient_mismatch);
  EXPECT_EQ(r.worst_tensor, "grads.w");
  EXPECT_EQ(r.message.rfind("gradient mismatch: dL/dw[0,0] is ", 0), 0u) << r.message;
}

TEST(RunCase, WrongShapeFails) {
  dg::Case c = dg::read_case(kReference + "/flatten_4d.json");
  c.expected[0].value = c.expected[0].value.reshape({2, 4, 6});
  const dg::CaseResult r = dg::run_case(c);
  EXPECT_TRUE(r.forward_mismatch);
  EXPECT_NE(r.message.find("y has shape [2,24] but the case expects [2,4,6]"), std::string::npos)
      << r.message;
}

TEST(RunCase, AnOpErrorIsReportedNotThrown) {
  dg::Case c = dg::parse_case(tiny_with(R"("op": "relu")", R"("op": "no_such_op")"), "tiny.json");
  dg::CaseResult r;
  ASSERT_NO_THROW(r = dg::run_case(c));
  EXPECT_FALSE(r.passed);
  EXPECT_TRUE(r.error);
  EXPECT_EQ(r.message.rfind("nodes[0] (no_such_op) threw: unknown op 'no_such_op'", 0), 0u)
      << r.message;
  // A shape error inside a registered op, too.
  c = dg::parse_case(tiny_with(R"("attrs": {})", R"("attrs": {"shape": [7, -1]})"), "tiny.json");
  c.nodes[0].op = "reshape";
  r = dg::run_case(c);
  EXPECT_TRUE(r.error);
  EXPECT_NE(r.message.find("nodes[0] (reshape) threw:"), std::string::npos) << r.message;
}

// A hostile target shape whose sizes multiply past int64: 8 * (2^61 + 3) wraps around to 24,
// which once let a 24-element tensor take that shape.
TEST(RunCase, AReshapeTargetThatOverflowsIsAnError) {
  dg::Case c = dg::parse_case(
      tiny_with(R"("attrs": {})", R"("attrs": {"shape": [8, 2305843009213693955]})"), "tiny.json");
  c.nodes[0].op = "reshape";
  const dg::CaseResult r = dg::run_case(c);
  EXPECT_TRUE(r.error);
  EXPECT_NE(r.message.find("has more elements than int64 can count"), std::string::npos)
      << r.message;
}

TEST(RunCase, AnInvalidCaseBuiltInCodeIsReportedNotThrown) {
  dg::Case c = dg::parse_case(kTiny, "tiny.json");
  c.nodes[0].inputs = {"nowhere"};
  const dg::CaseResult r = dg::run_case(c);
  EXPECT_TRUE(r.error);
  EXPECT_NE(r.message.find("invalid case: nodes[0].inputs[0]"), std::string::npos) << r.message;
}

// Seeds on an intermediate value and on a final one, a value read twice by one node and by two
// nodes: q = x*x, y = q + x; L = <cq, q> + <cy, y>, so dL/dx = 2x*cq + cy*(2x + 1).
TEST(RunCase, CotangentsOnIntermediatesAddUp) {
  const std::vector<double> x = {0.5, -1.5, 2.0}, cq = {1.0, -2.0, 0.25}, cy = {3.0, 0.5, -1.0};
  std::vector<double> q(3), y(3), dx(3);
  for (int i = 0; i < 3; ++i) {
    q[i] = x[i] * x[i];
    y[i] = q[i] + x[i];
    dx[i] = 2 * x[i] * cq[i] + cy[i] * (2 * x[i] + 1);
  }
  dg::Case c;
  c.name = "fanout";
  c.source = "cases_test";
  c.inputs.push_back({"x", dg::Tensor::from(x, {3}), true});
  c.nodes.push_back({"mul", {"x", "x"}, {}, {"q"}});
  c.nodes.push_back({"add", {"q", "x"}, {}, {"y"}});
  c.cotangents.push_back({"q", dg::Tensor::from(cq, {3})});
  c.cotangents.push_back({"y", dg::Tensor::from(cy, {3})});
  c.expected.push_back({"q", dg::Tensor::from(q, {3})});
  c.expected.push_back({"y", dg::Tensor::from(y, {3})});
  c.grads.push_back({"x", dg::Tensor::from(dx, {3})});
  dg::CaseResult r = dg::run_case(c);
  EXPECT_TRUE(r.passed) << r.message;

  // Without the seed on q, the same expected gradient must fail.
  c.cotangents.erase(c.cotangents.begin());
  r = dg::run_case(c);
  EXPECT_TRUE(r.gradient_mismatch) << r.message;
}

TEST(RunCase, InputsWithoutGradientAndUnreachedInputs) {
  // b has requires_grad false (no entry in grads); w requires a gradient but nothing depends on
  // it, so its gradient is zero.
  dg::Case c;
  c.name = "frozen";
  c.source = "cases_test";
  c.inputs.push_back({"a", dg::Tensor::from(std::vector<double>{1, 2}, {2}), true});
  c.inputs.push_back({"b", dg::Tensor::from(std::vector<double>{3, 4}, {2}), false});
  c.inputs.push_back({"w", dg::Tensor::from(std::vector<double>{5}, {1}), true});
  c.nodes.push_back({"mul", {"a", "b"}, {}, {"y"}});
  c.nodes.push_back({"sum", {"y"}, {}, {"s"}});
  c.cotangents.push_back({"s", dg::Tensor::scalar(1.0, dg::DType::f64)});
  c.expected.push_back({"y", dg::Tensor::from(std::vector<double>{3, 8}, {2})});
  c.expected.push_back({"s", dg::Tensor::scalar(11.0, dg::DType::f64)});
  c.grads.push_back({"a", dg::Tensor::from(std::vector<double>{3, 4}, {2})});
  c.grads.push_back({"w", dg::Tensor::zeros({1}, dg::DType::f64)});
  const dg::CaseResult r = dg::run_case(c);
  EXPECT_TRUE(r.passed) << r.message;
}

// An op with an int64 output, registered by the test: the runner knows no op, so index
// comparison is checked with one of our own.
void register_floor_to_int64() {
  static const bool registered = [] {
    dg::register_op({
        .name = "test_cases_floor_to_int64",
        .summary = "y = floor(x) as int64 (test only)",
        .inputs = {{"x"}},
        .outputs = {{"y", false}},
        .shape =
            [](const dg::OpCall& c) {
              return std::vector<dg::TensorSpec>{{c.input(0).shape(), dg::DType::i64}};
            },
        .forward =
            [](const dg::OpCall& c, std::span<const dg::TensorSpec> specs) {
              dg::Tensor y(specs[0].shape, dg::DType::i64);
              for (int64_t i = 0; i < y.numel(); ++i)
                y.data<int64_t>()[i] = static_cast<int64_t>(std::floor(c.input(0).at(i)));
              return std::vector<dg::Tensor>{y};
            },
    });
    return true;
  }();
  (void)registered;
}

TEST(RunCase, IndexMismatchIsReportedSeparately) {
  register_floor_to_int64();
  dg::Case c;
  c.name = "indices";
  c.source = "cases_test";
  c.inputs.push_back(
      {"x", dg::Tensor::from(std::vector<double>{0.5, 2.5, -1.5, 7.0}, {2, 2}), false});
  c.nodes.push_back({"test_cases_floor_to_int64", {"x"}, {}, {"i"}});
  c.expected.push_back({"i", dg::Tensor::from(std::vector<int64_t>{0, 2, -2, 7}, {2, 2})});
  EXPECT_TRUE(dg::run_case(c).passed) << dg::run_case(c).message;

  c.expected[0].value.data<int64_t>()[2] = -1;
  const dg::CaseResult r = dg::run_case(c);
  EXPECT_TRUE(r.index_mismatch);
  EXPECT_FALSE(r.forward_mismatch);
  EXPECT_EQ(r.message, "index mismatch: i[1,0] is -2 but the case expects -1");
}

// ---- the dg tool --------------------------------------------------------------------------

struct ToolRun {
  int status;
  std::string output;
};

ToolRun run_tool(const std::string& arguments) {
  const std::string command = std::string(DG_TOOL) + " cases " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, ""};
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

class CasesCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = fs::temp_directory_path() /
              ("dg_cases_test_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(folder_);
    fs::create_directories(folder_);
  }
  void TearDown() override { fs::remove_all(folder_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(folder_ / name, std::ios::binary) << text;
  }
  fs::path folder_;
};

TEST_F(CasesCommand, OneLinePerCaseAndMalformedFilesDoNotStopTheRun) {
  write("b_relu.json", slurp(kReference + "/relu_2d.json"));
  write("a_broken.json", kTiny.substr(0, 200));
  write("c_tiny.json", kTiny);
  write("notes.txt", "not a case");
  const ToolRun run = run_tool(folder_.string());
  EXPECT_EQ(run.status, 1) << run.output;
  std::vector<std::string> lines;
  std::istringstream stream(run.output);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u) << run.output;
  // Sorted by file name; the broken file is named, and the run goes on.
  EXPECT_EQ(lines[0].rfind("a_broken.json", 0), 0u) << lines[0];
  EXPECT_NE(lines[0].find(" FAIL "), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("a_broken.json: malformed JSON"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[1].rfind("relu_2d ", 0), 0u) << lines[1];
  EXPECT_NE(lines[1].find(" PASS "), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("max abs"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[2].rfind("tiny ", 0), 0u) << lines[2];
  EXPECT_NE(lines[2].find(" PASS "), std::string::npos) << lines[2];
  EXPECT_EQ(lines[3], "2 passed, 1 failed");
}

TEST_F(CasesCommand, ExitsZeroWhenEverythingPasses) {
  write("tiny.json", kTiny);
  const ToolRun folder_run = run_tool(folder_.string());
  EXPECT_EQ(folder_run.status, 0) << folder_run.output;
  const ToolRun file_run =
      run_tool((folder_ / "tiny.json").string() + " " + kReference + "/relu_4d.json");
  EXPECT_EQ(file_run.status, 0) << file_run.output;
  EXPECT_NE(file_run.output.find("\n2 passed, 0 failed\n"), std::string::npos) << file_run.output;
}

TEST_F(CasesCommand, AFailingCaseShowsWhy) {
  write("wrong.json",
        tiny_with("[1.0, 0.0, 3.0, 0.0, 5.0, 0.0]", "[1.0, 0.0, 3.5, 0.0, 5.0, 0.0]"));
  const ToolRun run = run_tool(folder_.string());
  EXPECT_EQ(run.status, 1);
  EXPECT_NE(run.output.find("tiny"), std::string::npos);
  EXPECT_NE(run.output.find(" FAIL "), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("forward mismatch: y[0,2] is 3 but the case expects 3.5"),
            std::string::npos)
      << run.output;
  EXPECT_NE(run.output.find("\n0 passed, 1 failed\n"), std::string::npos) << run.output;
}

TEST_F(CasesCommand, MissingPathsAndEmptyFoldersFail) {
  const ToolRun run = run_tool((folder_ / "absent.json").string() + " " + folder_.string());
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_NE(run.output.find("absent.json: cannot open"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("the folder holds no *.json files"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("\n0 passed, 2 failed\n"), std::string::npos) << run.output;
}

}  // namespace
