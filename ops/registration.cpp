// Registers every built-in op family (listed in ops.def) with the registry in core. Explicit
// calls, not static registrars: a static library's linker would drop self-registering objects
// nobody references. ops.h makes every program that includes it reference link_builtin_ops().
#include "deltagraph/ops/ops.h"

namespace dg {

#define DG_OP_FAMILY(family) void register_##family##_ops();
#include "ops.def"
#undef DG_OP_FAMILY

namespace {
void register_builtin_ops() {
#define DG_OP_FAMILY(family) register_##family##_ops();
#include "ops.def"
#undef DG_OP_FAMILY
}
}  // namespace

namespace detail {
int link_builtin_ops() {
  install_builtin_ops(&register_builtin_ops);
  return 0;
}
}  // namespace detail

}  // namespace dg
