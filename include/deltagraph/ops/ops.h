// deltagraph: the typed op functions. Each one is a thin front for the registered op of the
// same name (core/op.h): same validation, same kernel, same VJP as dg::call("name", ...). The
// comments here say what each op computes; its VJP formula is written once, in its registration
// (ops/<family>.cpp), and printed by `dg ops NAME` and docs/ops.md.
//
// Layout is NCHW; every 2-D attribute is a pair [h, w]; weights are laid out as in PyTorch.
// Every function takes the caller's source location (defaulted) so errors and graphs can
// point at the line that built the op.
#pragma once

#include <string>
#include "deltagraph/core/source_location.h"

#include "deltagraph/core/op.h"
#include "deltagraph/core/var.h"

namespace dg {

namespace detail {
// Hands the registry the library's op families (ops/registration.cpp). Called by every
// translation unit that includes this header, before its own static initialisers: that call is
// also what makes the linker keep the families in a program built from the static libraries.
int link_builtin_ops();
[[maybe_unused]] static const int builtin_ops_linked = link_builtin_ops();
}  // namespace detail

using Loc = SourceLocation;

// ---- elementwise (numpy-style broadcasting for the binary ops) ------------------------------
Var add(const Var& a, const Var& b, Loc loc = Loc::current());
Var sub(const Var& a, const Var& b, Loc loc = Loc::current());
Var mul(const Var& a, const Var& b, Loc loc = Loc::current());
Var div(const Var& a, const Var& b, Loc loc = Loc::current());
Var neg(const Var& x, Loc loc = Loc::current());
// y = x + c
Var add_scalar(const Var& x, double c, Loc loc = Loc::current());
// y = x * c
Var mul_scalar(const Var& x, double c, Loc loc = Loc::current());
Var exp(const Var& x, Loc loc = Loc::current());
Var log(const Var& x, Loc loc = Loc::current());
// Broadcasts x to `shape` (numpy rules).
Var broadcast_to(const Var& x, const Shape& shape, Loc loc = Loc::current());
// Sums x down to `shape` (the adjoint of broadcasting).
Var sum_to(const Var& x, const Shape& shape, Loc loc = Loc::current());

Var operator+(const Var& a, const Var& b);
Var operator-(const Var& a, const Var& b);
Var operator*(const Var& a, const Var& b);
Var operator/(const Var& a, const Var& b);
Var operator-(const Var& x);
Var operator+(const Var& a, double c);
Var operator+(double c, const Var& a);
Var operator-(const Var& a, double c);
Var operator-(double c, const Var& a);
Var operator*(const Var& a, double c);
Var operator*(double c, const Var& a);
Var operator/(const Var& a, double c);

// ---- activations ------------------------------------------------------------------------
Var relu(const Var& x, Loc loc = Loc::current());
// g * (x > 0): relu's VJP as an op, so that it can be differentiated again.
Var relu_backward(const Var& g, const Var& x, Loc loc = Loc::current());
// y = x if x > 0 else negative_slope * x (PyTorch's F.leaky_relu).
Var leaky_relu(const Var& x, double negative_slope = 0.01, Loc loc = Loc::current());
Var elu(const Var& x, double alpha = 1.0, Loc loc = Loc::current());
// d elu/dx = 1 if x > 0 else alpha*exp(x) (alpha at x == 0).
Var elu_grad(const Var& x, double alpha = 1.0, Loc loc = Loc::current());
Var sigmoid(const Var& x, Loc loc = Loc::current());
Var tanh(const Var& x, Loc loc = Loc::current());

// ---- linear algebra ---------------------------------------------------------------------
struct MatmulOptions {
  bool transpose_a = false;
  bool transpose_b = false;
};
// y = op(a) @ op(b) for 2-D a, b (op = transpose if asked).
Var matmul(const Var& a, const Var& b, MatmulOptions options = {}, Loc loc = Loc::current());
// y = x @ w^T + b, x [N,in], w [out,in], b [out].
Var linear(const Var& x, const Var& w, Loc loc = Loc::current());
Var linear(const Var& x, const Var& w, const Var& b, Loc loc = Loc::current());

// ---- shapes -----------------------------------------------------------------------------
// Joins tensors along `axis` (torch.cat); every other axis must agree, and so must the dtypes
// (float32, float64 or int64). Its VJP narrows g back into one piece per input.
Var cat(std::span<const Var> xs, int64_t axis = 1, Loc loc = Loc::current());
Var cat(std::initializer_list<Var> xs, int64_t axis = 1, Loc loc = Loc::current());
// Same data, new shape (one entry may be -1).
Var reshape(const Var& x, const Shape& shape, Loc loc = Loc::current());
// [N, d1, d2, ...] -> [N, d1*d2*...].
Var flatten(const Var& x, Loc loc = Loc::current());
// Reorders axes: y.shape[i] = x.shape[dims[i]].
Var permute(const Var& x, const Ints& dims, Loc loc = Loc::current());
// Elements [start, start+length) along `axis`.
Var narrow(const Var& x, int64_t axis, int64_t start, int64_t length, Loc loc = Loc::current());
// Zero-pads g back to `size` along `axis` (narrow's VJP). Its VJP is narrow.
Var narrow_backward(const Var& g, int64_t axis, int64_t start, int64_t size,
                    Loc loc = Loc::current());

// ---- normalisation and dropout (ops/norm.cpp, ops/dropout.cpp) -------------------------------
struct BatchNorm2dOptions {
  bool training = true;   // batch statistics and a running-buffer update; false: the buffers
  double momentum = 0.1;  // running = (1 - momentum) running + momentum batch
  double eps = 1e-5;
};
// F.batch_norm on x [N,C,H,W] with weight, bias, running_mean and running_var [C]. In training
// it normalises with the batch's mean and biased variance and updates running_mean and
// running_var in place (the unbiased variance goes into the buffer); otherwise it uses them.
// Gradients flow to x, weight and bias, never to the buffers.
Var batch_norm2d(const Var& x, const Var& weight, const Var& bias, const Var& running_mean,
                 const Var& running_var, BatchNorm2dOptions options = {}, Loc loc = Loc::current());
// Training-mode batch_norm2d's gradients {dx, dweight, dbias} for upstream g, in one pass.
std::vector<Var> batch_norm2d_backward(const Var& g, const Var& x, const Var& weight,
                                       double eps = 1e-5, Loc loc = Loc::current());
struct DropoutOptions {
  double p = 0.5;        // probability of zeroing a value
  bool training = true;  // false: the identity
  int64_t seed = 0;      // decides the mask (a pure function of seed and position)
};
// Inverted dropout: kept values are scaled by 1/(1-p).
Var dropout(const Var& x, DropoutOptions options = {}, Loc loc = Loc::current());

// ---- upsampling (ops/upsample.cpp) ----------------------------------------------------------
// F.interpolate of [N,C,H,W] planes to output_size [h, w], mode "nearest" (PyTorch's rule:
// source floor(i * H/h)). Its VJP is upsample_nearest2d_backward, and that one's is this op.
Var upsample_nearest2d(const Var& x, Pair output_size, Loc loc = Loc::current());
Var upsample_nearest2d_backward(const Var& g, Pair input_size, Loc loc = Loc::current());
struct UpsampleBilinearOptions {
  bool align_corners = false;  // as F.interpolate: corner pixel centres map onto each other
};
// F.interpolate, mode "bilinear". Its VJP is upsample_bilinear2d_backward, and the reverse.
Var upsample_bilinear2d(const Var& x, Pair output_size, UpsampleBilinearOptions options = {},
                        Loc loc = Loc::current());
Var upsample_bilinear2d_backward(const Var& g, Pair input_size, bool align_corners = false,
                                 Loc loc = Loc::current());

// ---- padding (ops/pad.cpp) ------------------------------------------------------------------
struct Pad2dOptions {
  Ints pads = {};                 // [left, right, top, bottom], as F.pad (required)
  std::string mode = "constant";  // "constant", "reflect" or "replicate"
  double value = 0.0;             // the constant mode's fill
};
// Pads the last two axes (F.pad): with `value`, with the reflection of the plane (not repeating
// the edge; each pad smaller than its axis), or with the edge value.
Var pad2d(const Var& x, Pad2dOptions options, Loc loc = Loc::current());
// Adds each padded cell of g to the input cell it was copied from: pad2d's adjoint.
Var pad2d_backward(const Var& g, const Ints& pads, const std::string& mode, Pair input_size,
                   Loc loc = Loc::current());

// ---- reductions -------------------------------------------------------------------------
struct ReduceOptions {
  Ints axes = {};  // empty: all axes
  bool keepdims = false;
};
// Sum over `axes` (all when empty).
Var sum(const Var& x, ReduceOptions options = {}, Loc loc = Loc::current());
// Mean over `axes` (all when empty).
Var mean(const Var& x, ReduceOptions options = {}, Loc loc = Loc::current());

struct ArgmaxOptions {
  int64_t axis = 1;  // negative counts from the end
  bool keepdims = false;
};
// The int64 index of the largest value along `axis` (torch.argmax): the first maximum wins a
// tie, and NaN counts as the largest. Not differentiable.
Var argmax(const Var& x, ArgmaxOptions options = {}, Loc loc = Loc::current());

// ---- convolution (ops/conv.cpp) ---------------------------------------------------------
struct Conv2dOptions {
  Pair stride = 1;
  // 1, {h, w}, {top, bottom, left, right}, "same" (stride 1: Ho = H, the odd extra row at the
  // bottom) or "valid" (0).
  Padding padding = 0;
  Pair dilation = 1;
  int64_t groups = 1;
};
// Cross-correlation. x [N,C,H,W], w [O,C/groups,kH,kW], b [O] -> [N,O,Ho,Wo] with
// Ho = (H + top + bottom - dh(kH-1) - 1)/sh + 1.
Var conv2d(const Var& x, const Var& w, Conv2dOptions options = {}, Loc loc = Loc::current());
Var conv2d(const Var& x, const Var& w, const Var& b, Conv2dOptions options = {},
           Loc loc = Loc::current());
// dL/dw of conv2d: gw[o,c,p,q] = sum_{n,i,j} g[n,o,i,j] * xz[n, G*Cg+c, i*sh+p*dh, j*sw+q*dw].
// Bilinear in x and g.
Var conv2d_weight_grad(const Var& x, const Var& g, Pair kernel_size, Conv2dOptions options = {},
                       Loc loc = Loc::current());

struct ConvTranspose2dOptions {
  Pair stride = 1;
  Padding padding = 0;  // 1, {h, w} or {top, bottom, left, right}: rows/columns cropped
  Pair output_padding = 0;
  Pair dilation = 1;
  int64_t groups = 1;
};
// The adjoint of conv2d in its input. x [N,C,H,W], w [C,O/groups,kH,kW], b [O] -> [N,O,Ho,Wo]
// with Ho = (H-1)sh - top - bottom + dh(kH-1) + oph + 1.
Var conv_transpose2d(const Var& x, const Var& w, ConvTranspose2dOptions options = {},
                     Loc loc = Loc::current());
Var conv_transpose2d(const Var& x, const Var& w, const Var& b, ConvTranspose2dOptions options = {},
                     Loc loc = Loc::current());

// Per-pixel fully connected layer: y[n,o,h,w] = b[o] + sum_c w[o,c,0,0] x[n,c,h,w]; a GEMM per
// image.
Var conv1x1(const Var& x, const Var& w, Loc loc = Loc::current());
Var conv1x1(const Var& x, const Var& w, const Var& b, Loc loc = Loc::current());

// y = x + b over axis 1, x [N,C,H,W] or [N,C], b [C].
Var bias_add(const Var& x, const Var& b, Loc loc = Loc::current());

// ---- pooling (ops/pool.cpp) -------------------------------------------------------------
struct MaxPool2dOptions {
  Pair kernel_size = 0;  // required
  Pair stride = 0;       // 0: same as kernel_size
  Padding padding = 0;   // 1, {h, w} or {top, bottom, left, right}; each at most half the kernel
  Pair dilation = 1;
  bool ceil_mode = false;
};
struct PoolResult {
  Var values;   // [N,C,Ho,Wo], the window maxima
  Var indices;  // int64 [N,C,Ho,Wo], flat h*W+w of each maximum in its input plane
};
// Max over each window; ties go to the first maximum in row-major window order.
PoolResult max_pool2d(const Var& x, MaxPool2dOptions options, Loc loc = Loc::current());

struct MaxUnpool2dOptions {
  Pair kernel_size = 0;  // required
  Pair stride = 0;       // 0: same as kernel_size
  Padding padding = 0;   // the pool's
  // 0: the pool's input size when `indices` come from max_pool2d (they carry it; see
  // Tensor::index_plane), otherwise (h-1)*sh - top - bottom + kH as PyTorch's default.
  Pair output_size = 0;
};
// Places x at `indices` in a zero [N,C,Ho,Wo] tensor.
Var max_unpool2d(const Var& x, const Var& indices, MaxUnpool2dOptions options,
                 Loc loc = Loc::current());
// y[n,c,i,j] = x[n,c].flat[indices[n,c,i,j]].
Var gather_at(const Var& x, const Var& indices, Loc loc = Loc::current());
// y = zeros [N,C,H,W]; y[n,c].flat[indices[n,c,i,j]] += x[n,c,i,j].
Var scatter_add_at(const Var& x, const Var& indices, Pair output_size, Loc loc = Loc::current());

struct AvgPool2dOptions {
  Pair kernel_size = 0;  // required
  Pair stride = 0;       // 0: same as kernel_size
  Padding padding = 0;   // 1, {h, w} or {top, bottom, left, right}; each at most half the kernel
  bool ceil_mode = false;
  bool count_include_pad = true;
};
// Window means (PyTorch's divisor rules).
Var avg_pool2d(const Var& x, AvgPool2dOptions options, Loc loc = Loc::current());
// Spreads g[n,c,i,j]/divisor over each window (the adjoint of avg_pool2d); its VJP is avg_pool2d.
Var avg_pool2d_backward(const Var& g, Pair input_size, AvgPool2dOptions options,
                        Loc loc = Loc::current());

// Means over an output_size grid of cells covering each plane (F.adaptive_avg_pool2d): cell i of
// an axis of size `in` averages rows [floor(i*in/out), ceil((i+1)*in/out)). Global average
// pooling is output_size {1, 1}.
Var adaptive_avg_pool2d(const Var& x, Pair output_size, Loc loc = Loc::current());
// Spreads g[n,c,i,j] / (window size) over each cell's window: adaptive_avg_pool2d's adjoint.
Var adaptive_avg_pool2d_backward(const Var& g, Pair input_size, Loc loc = Loc::current());

// ---- softmax and loss (ops/softmax.cpp) -------------------------------------------------
// Softmax over `axis` (the classes of [N, C, ...] by default; negative counts from the end).
Var softmax(const Var& x, int64_t axis = 1, Loc loc = Loc::current());
// log-softmax over `axis`.
Var log_softmax(const Var& x, int64_t axis = 1, Loc loc = Loc::current());
// int64 labels [N] or [N,H,W] -> [N,C] or [N,C,H,W] with ones at the labels (axis 1); labels
// outside [0, C) give an all-zero column (used for ignore_index). Not differentiable.
Var one_hot(const Var& labels, int64_t num_classes, bool float64 = false, Loc loc = Loc::current());

struct SoftmaxXentOptions {
  std::string reduction = "mean";  // "mean", "sum" or "none"
  int64_t ignore_index = -100;     // class labels equal to this are skipped (and not counted)
  double label_smoothing = 0.0;    // targets (1-e) t + e/C, as F.cross_entropy
  Var weight = {};  // optional per-class weights [C]; the mean divides by the counted weights
};
// Fused, stable softmax + cross-entropy over axis 1, as F.cross_entropy. logits [N,C,d1,...]
// (any rank >= 2); labels int64 [N,d1,...], or probabilities shaped like the logits.
Var softmax_xent(const Var& logits, const Var& labels, SoftmaxXentOptions options = {},
                 Loc loc = Loc::current());
// softmax_xent's gradient for class labels in one pass: seed [N, d...] * (softmax(z) -
// onehot(labels)), 0 where labels == ignore_index. Differentiable (its VJP is made of ops).
Var softmax_xent_backward(const Var& logits, const Var& labels, const Var& seed,
                          int64_t ignore_index = -100, Loc loc = Loc::current());

}  // namespace dg
