#include "kernels/dnnl.h"

#include <cstdlib>
#include <cstring>

namespace dg::kernels {

bool dnnl_enabled() {
  // Read once: the choice must not change between the plans cached for one geometry.
  static const bool enabled = [] {
    const char* setting = std::getenv("DG_DNNL");
    return setting == nullptr || std::strcmp(setting, "0") != 0;
  }();
  return enabled;
}

}  // namespace dg::kernels
