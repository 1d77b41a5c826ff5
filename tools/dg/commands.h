// The subcommands of the dg tool, one file each.
#pragma once

#include <string>
#include <vector>

namespace dg::cli {

int ops_command(const std::vector<std::string>& args);
// docs/ops.md: every built-in op, from the registry.
std::string ops_markdown();
int cases_command(const std::vector<std::string>& args);
int gradcheck_command(const std::vector<std::string>& args);
int dot_command(const std::vector<std::string>& args);
int onnx_test_command(const std::vector<std::string>& args);
int export_command(const std::vector<std::string>& args);

}  // namespace dg::cli
