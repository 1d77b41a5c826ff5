#include "kernels/dnnl_conv.h"
#include "kernels/dnnl.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "deltagraph/core/tensor.h"
#include "deltagraph/ops/kernels.h"

namespace dg::kernels {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto f32 = memory::data_type::f32;

enum class Pass { forward, backward_data, backward_weights };

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// One tensor argument of a primitive: the caller's plain buffer and, when the primitive chose
// another layout, the reorder between the two. The blocked buffer itself is taken per call
// from deltagraph's tensor buffers (and given back after), so plans kept for many shapes hold
// no activations.
struct Port {
  int arg = 0;
  memory user;
  memory::desc chosen;
  std::optional<dnnl::reorder> reorder;  // user -> chosen for inputs, chosen -> user for output

  Port(int arg_id, const memory::desc& chosen_desc, const memory::dims& dims, Tag plain, bool input)
      : arg(arg_id),
        user(memory::desc(dims, f32, plain), cpu_engine(), DNNL_MEMORY_NONE),
        chosen(chosen_desc) {
    if (chosen == user.get_desc()) return;
    const memory::desc& from = input ? user.get_desc() : chosen;
    const memory::desc& to = input ? chosen : user.get_desc();
    reorder = dnnl::reorder(dnnl::reorder::primitive_desc(cpu_engine(), from, cpu_engine(), to));
  }
};

// A buffer of `desc`'s size from the tensor buffer cache, kept alive by `keep`.
memory scratch_memory(const memory::desc& desc, std::vector<Tensor>& keep) {
  const auto floats = static_cast<int64_t>((desc.get_size() + sizeof(float) - 1) / sizeof(float));
  keep.emplace_back(Shape{std::max<int64_t>(floats, 1)}, DType::f32);
  return memory(desc, cpu_engine(), keep.back().raw());
}

// A primitive with its ports, built once per (pass, geometry) and thread. Its scratchpad is
// user-managed for the same reason as the blocked buffers.
struct Plan {
  dnnl::primitive primitive;
  memory::desc scratchpad;
  std::vector<Port> inputs;
  std::optional<Port> output;

  // `out` gives the caller's plain result buffer. When the result comes back through a reorder,
  // it is asked for only after the blocked inputs and the scratchpad were given back, so the
  // call's peak holds the blocked result with either of them, never all three.
  void run(std::initializer_list<const void*> in, const std::function<float*()>& out) {
    thread_local dnnl::stream stream(cpu_engine());
    std::vector<Tensor> buffers, result_buffer;
    buffers.reserve(inputs.size() + 1);
    std::unordered_map<int, memory> args;
    auto data = in.begin();
    for (Port& port : inputs) {
      port.user.set_data_handle(const_cast<void*>(*data++));
      if (!port.reorder) {
        args.emplace(port.arg, port.user);
        continue;
      }
      memory blocked = scratch_memory(port.chosen, buffers);
      port.reorder->execute(stream, port.user, blocked);
      args.emplace(port.arg, blocked);
    }
    if (!output->reorder) output->user.set_data_handle(out());
    memory result = output->reorder ? scratch_memory(output->chosen, result_buffer) : output->user;
    args.emplace(output->arg, result);
    if (scratchpad.get_size() > 0)
      args.emplace(DNNL_ARG_SCRATCHPAD, scratch_memory(scratchpad, buffers));
    primitive.execute(stream, args);
    stream.wait();
    if (output->reorder) {
      args.clear();
      buffers.clear();
      output->user.set_data_handle(out());
      output->reorder->execute(stream, result, output->user);
      stream.wait();
    }
  }
};

struct Geometry {
  memory::dims src, weights, dst, strides, dilates, padding_l, padding_r;
  Tag weights_tag;
};

Geometry geometry(const DnnlConvProblem& p) {
  Geometry g;
  g.src = {p.N, p.C, p.H, p.W};
  g.dst = {p.N, p.O, p.Ho, p.Wo};
  if (p.groups == 1) {
    g.weights = {p.O, p.C, p.kH, p.kW};
    g.weights_tag = Tag::oihw;
  } else {
    g.weights = {p.groups, p.O / p.groups, p.C / p.groups, p.kH, p.kW};
    g.weights_tag = Tag::goihw;
  }
  g.strides = {p.sh, p.sw};
  g.dilates = {p.dh - 1, p.dw - 1};  // oneDNN counts the gaps, not the step
  g.padding_l = {p.pt, p.pl};
  g.padding_r = {p.pb, p.pr};
  return g;
}

memory::desc any(const memory::dims& dims) { return memory::desc(dims, f32, Tag::any); }

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc forward_desc(const Geometry& g, dnnl::algorithm algorithm,
                                                       bool bias) {
  const memory::desc bias_md =
      bias ? memory::desc({g.dst[1]}, f32, Tag::x) : memory::desc();  // empty: no bias
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_training, algorithm, any(g.src),
                                    any(g.weights), bias_md, any(g.dst), g.strides, g.dilates,
                                    g.padding_l, g.padding_r);
  return {d, user_scratchpad(), cpu_engine()};
}

// Winograd F(4x4, 3x3) where it was measured faster than the direct algorithm: 3x3 windows,
// stride 1, no dilation, one group, at least 16 channels in and out (oneDNN's vector width;
// below it the padded lanes make Winograd slower, e.g. N32 C3 32x32 forward 0.74 -> 2.9 ms).
// bench_ops and a sweep of shapes, 2 threads, forward+backward: N8 C64 56x56 O64 27.4 -> 12.3
// ms, N8 C128 28x28 O128 25.6 -> 11.8 ms, N64 C32 14x14 O64 6.8 -> 4.9 ms, N64 C64 7x7 O64
// 3.0 -> 2.3 ms, N8 C16 56x56 O16 2.2 -> 1.7 ms. oneDNN's own convolution_auto picks
// Winograd for the C3 case and not for the C64 one, so the choice is ours.
bool winograd_pays(const DnnlConvProblem& p) {
  return p.kH == 3 && p.kW == 3 && p.sh == 1 && p.sw == 1 && p.dh == 1 && p.dw == 1 &&
         p.groups == 1 && p.C >= 16 && p.O >= 16;
}

// A backward primitive's description (backward_data or backward_weights: both take the same
// descriptor arguments), with the forward one as the hint oneDNN requires.
template <class Primitive>
typename Primitive::primitive_desc backward_desc(
    const Geometry& g, dnnl::algorithm algorithm,
    const dnnl::convolution_forward::primitive_desc& forward) {
  typename Primitive::desc d(algorithm, any(g.src), any(g.weights), any(g.dst), g.strides,
                             g.dilates, g.padding_l, g.padding_r);
  return {d, user_scratchpad(), cpu_engine(), forward};
}

std::unique_ptr<Plan> make_plan(Pass pass, const DnnlConvProblem& p, bool bias,
                                dnnl::algorithm algorithm) {
  const Geometry g = geometry(p);
  auto plan = std::make_unique<Plan>();
  const auto forward = forward_desc(g, algorithm, bias && pass == Pass::forward);
  switch (pass) {
    case Pass::forward:
      plan->primitive = dnnl::convolution_forward(forward);
      plan->scratchpad = forward.scratchpad_desc();
      plan->inputs.emplace_back(DNNL_ARG_SRC, forward.src_desc(), g.src, Tag::nchw, true);
      plan->inputs.emplace_back(DNNL_ARG_WEIGHTS, forward.weights_desc(), g.weights, g.weights_tag,
                                true);
      if (bias)
        plan->inputs.emplace_back(DNNL_ARG_BIAS, forward.bias_desc(), memory::dims{p.O}, Tag::x,
                                  true);
      plan->output.emplace(DNNL_ARG_DST, forward.dst_desc(), g.dst, Tag::nchw, false);
      break;
    case Pass::backward_data: {
      const auto pd = backward_desc<dnnl::convolution_backward_data>(g, algorithm, forward);
      plan->primitive = dnnl::convolution_backward_data(pd);
      plan->scratchpad = pd.scratchpad_desc();
      plan->inputs.emplace_back(DNNL_ARG_DIFF_DST, pd.diff_dst_desc(), g.dst, Tag::nchw, true);
      plan->inputs.emplace_back(DNNL_ARG_WEIGHTS, pd.weights_desc(), g.weights, g.weights_tag,
                                true);
      plan->output.emplace(DNNL_ARG_DIFF_SRC, pd.diff_src_desc(), g.src, Tag::nchw, false);
      break;
    }
    case Pass::backward_weights: {
      const auto pd = backward_desc<dnnl::convolution_backward_weights>(g, algorithm, forward);
      plan->primitive = dnnl::convolution_backward_weights(pd);
      plan->scratchpad = pd.scratchpad_desc();
      plan->inputs.emplace_back(DNNL_ARG_SRC, pd.src_desc(), g.src, Tag::nchw, true);
      plan->inputs.emplace_back(DNNL_ARG_DIFF_DST, pd.diff_dst_desc(), g.dst, Tag::nchw, true);
      plan->output.emplace(DNNL_ARG_DIFF_WEIGHTS, pd.diff_weights_desc(), g.weights, g.weights_tag,
                           false);
      break;
    }
  }
  return plan;
}

using Key = std::tuple<int, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                       int64_t, int64_t, int64_t>;

struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 0;
    std::apply([&](const auto&... v) { ((h = h * 1000003u ^ std::hash<int64_t>{}(v)), ...); }, k);
    return h;
  }
};

// The plan for this thread, or null when oneDNN refuses the problem (remembered, so a refused
// geometry costs one attempt). Plans hold no buffers, only JIT code; the cache is bounded all
// the same, so that a program cycling through many shapes (the property tests) does not keep
// them all.
Plan* plan_for(Pass pass, const DnnlConvProblem& p, bool bias) {
  if (!dnnl_enabled() || p.N == 0 || p.C == 0 || p.O == 0 || p.Ho == 0 || p.Wo == 0 || p.H == 0 ||
      p.W == 0)
    return nullptr;
  // oneDNN 2.6's backward-data kernels vectorise over the input channels of a group: with
  // very few, most lanes idle and the col2im path is 3-6x faster (measured with bench_ops, 2
  // threads: N8 C1 28x28 k5 1.03 ms vs 0.25 ms; N32 C3 32x32 k3 5.7 ms vs 1.6 ms). From 8
  // channels on oneDNN wins (the tiny training step's conv 8->16: 0.33 vs 0.40 ms per step).
  if (pass == Pass::backward_data && p.C / p.groups < 8) return nullptr;
  // A pointwise convolution on NCHW is a plain GEMM per image: no layout to gain, while the
  // reorders into and out of the blocked layout cost more than the product (N8 C256 28x28:
  // 0.44 ms per 6 MB reorder, three per step).
  if (p.kH == 1 && p.kW == 1 && p.sh == 1 && p.sw == 1 && p.pt == 0 && p.pb == 0 && p.pl == 0 &&
      p.pr == 0)
    return nullptr;
  thread_local std::unordered_map<Key, std::unique_ptr<Plan>, KeyHash> plans;
  const bool winograd = winograd_enabled() && winograd_pays(p);
  const Key key{static_cast<int>(pass) + (winograd ? 8 : 0),
                bias,
                p.N,
                p.C,
                p.H,
                p.W,
                p.O,
                p.kH,
                p.kW,
                p.Ho,
                p.Wo,
                p.sh,
                p.sw,
                p.pt,
                p.pb,
                p.pl,
                p.pr,
                p.dh,
                p.dw,
                p.groups};
  if (auto found = plans.find(key); found != plans.end()) return found->second.get();
  constexpr size_t max_plans = 32;
  if (plans.size() >= max_plans) plans.clear();
  std::unique_ptr<Plan> plan;
  for (const auto algorithm :
       {dnnl::algorithm::convolution_winograd, dnnl::algorithm::convolution_direct}) {
    if (algorithm == dnnl::algorithm::convolution_winograd && !winograd) continue;
    try {
      plan = make_plan(pass, p, bias, algorithm);
      break;
    } catch (const dnnl::error&) {
      // Winograd refused (a CPU without it, or padding it does not take): try direct; direct
      // refused: the portable kernel takes the problem.
    }
  }
  return plans.emplace(key, std::move(plan)).first->second.get();
}

// Runs the plan; false when oneDNN fails at run time (the caller's kernel rewrites the output).
bool run(Plan& plan, std::initializer_list<const void*> in, const std::function<float*()>& out) {
  try {
    plan.run(in, out);
    return true;
  } catch (const dnnl::error&) {
    return false;
  }
}

}  // namespace

}  // namespace dg::kernels

namespace dg {

namespace {
// -1 until set_winograd is called; until then DG_WINOGRAD decides (on unless it is "0").
std::atomic<int> winograd_setting{-1};
}  // namespace

void set_winograd(bool enabled) { winograd_setting.store(enabled ? 1 : 0); }

bool winograd_enabled() {
  static const bool by_environment = [] {
    const char* env = std::getenv("DG_WINOGRAD");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  const int setting = winograd_setting.load(std::memory_order_relaxed);
  return setting < 0 ? by_environment : setting == 1;
}

bool winograd_supported() {
  static const bool supported = [] {
    if (!kernels::dnnl_enabled()) return false;
    // The smallest convolution the rule would hand to Winograd: 3x3, stride 1, 16 channels.
    const kernels::DnnlConvProblem p{.N = 1,
                                     .C = 16,
                                     .H = 8,
                                     .W = 8,
                                     .O = 16,
                                     .kH = 3,
                                     .kW = 3,
                                     .Ho = 8,
                                     .Wo = 8,
                                     .sh = 1,
                                     .sw = 1,
                                     .pt = 1,
                                     .pb = 1,
                                     .pl = 1,
                                     .pr = 1,
                                     .dh = 1,
                                     .dw = 1,
                                     .groups = 1};
    try {
      kernels::make_plan(kernels::Pass::forward, p, false, dnnl::algorithm::convolution_winograd);
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return supported;
}

}  // namespace dg

namespace dg::kernels {

bool dnnl_conv_forward(const DnnlConvProblem& p, const float* src, const float* weights,
                       const float* bias, const std::function<float*()>& dst) {
  Plan* plan = plan_for(Pass::forward, p, bias != nullptr);
  if (!plan) return false;
  return run(*plan,
             bias ? std::initializer_list<const void*>{src, weights, bias}
                  : std::initializer_list<const void*>{src, weights},
             dst);
}

bool dnnl_conv_backward_data(const DnnlConvProblem& p, const float* diff_dst, const float* weights,
                             const std::function<float*()>& diff_src) {
  Plan* plan = plan_for(Pass::backward_data, p, false);
  return plan && run(*plan, {diff_dst, weights}, diff_src);
}

bool dnnl_conv_backward_weights(const DnnlConvProblem& p, const float* src, const float* diff_dst,
                                const std::function<float*()>& diff_weights) {
  Plan* plan = plan_for(Pass::backward_weights, p, false);
  return plan && run(*plan, {src, diff_dst}, diff_weights);
}

}  // namespace dg::kernels
