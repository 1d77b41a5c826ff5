// dg: the deltagraph command line.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "deltagraph/deltagraph.h"

namespace {

void print_help() {
  fmt::print(
      "dg — the deltagraph command line\n\n"
      "usage: dg <command> [arguments]\n\n"
      "commands:\n"
      "  ops [NAME...]        list the registered ops: inputs, outputs, attributes, VJP\n"
      "  ops --markdown       the same for every built-in op as Markdown (docs/ops.md)\n"
      "  cases PATH...        run reference-case files (a file, or every *.json in a folder)\n"
      "  gradcheck [--op NAME]... [--trials N] [--seed S] [--order 1|2] [--case-dir DIR]\n"
      "                       property-based gradient tests of the registered ops\n"
      "  dot CASE.json|MODEL.onnx [-o OUT.svg|OUT.png|OUT.dot] [--backward[=merged]] [--stats]\n"
      "                       draw the graph of a reference case or an ONNX model (DOT on\n"
      "                       stdout without -o)\n"
      "  export MODEL.onnx -o OUT.onnx [--weights CKPT] [--test-data DIR]\n"
      "                       import an ONNX model, load weights, export it again (and a test\n"
      "                       folder of deltagraph's outputs)\n"
      "  onnx-test [--families] DIR...\n"
      "                       run ONNX node-test folders (ONNX's conformance tests)\n"
      "  help                 this text\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_help();
    return args.empty() ? 2 : 0;
  }
  const std::string command = args[0];
  args.erase(args.begin());
  try {
    if (command == "ops") return dg::cli::ops_command(args);
    if (command == "cases") return dg::cli::cases_command(args);
    if (command == "gradcheck") return dg::cli::gradcheck_command(args);
    if (command == "dot") return dg::cli::dot_command(args);
    if (command == "onnx-test") return dg::cli::onnx_test_command(args);
    if (command == "export") return dg::cli::export_command(args);
  } catch (const dg::Error& e) {
    fmt::print(stderr, "dg {}: {}\n", command, e.what());
    return 2;
  }
  fmt::print(stderr, "dg: unknown command '{}' (try dg --help)\n", command);
  return 2;
}
