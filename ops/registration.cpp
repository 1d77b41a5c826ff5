// Registers every built-in op family (listed in ops.def). Explicit calls, not static
// registrars: a static library's linker would drop self-registering objects nobody references.
namespace dg {

#define DG_OP_FAMILY(family) void register_##family##_ops();
#include "ops.def"
#undef DG_OP_FAMILY

void register_builtin_ops() {
#define DG_OP_FAMILY(family) register_##family##_ops();
#include "ops.def"
#undef DG_OP_FAMILY
}

}  // namespace dg
