// softmax, log_softmax, one_hot and the fused softmax_xent.
#include <cmath>

#include "test_util.h"
#include "typed_calls.h"

namespace dg {
namespace {

using test::expect_gradients_ok;
using test::f64;
using test::ThrowsError;
using test::ValuesNear;

Tensor labels(std::vector<int64_t> v, Shape shape) { return Tensor::from(v, shape); }

TEST(SoftmaxXent, ClassLabelsByHand) {
  // Two samples, three classes: loss = logsumexp(z) - z[label].
  Tensor z = f64({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor t = labels({2, 0}, {2});
  double l0 = std::log(std::exp(1) + std::exp(2) + std::exp(3)) - 3, l1 = std::log(3.0);
  EXPECT_NEAR(softmax_xent(z, t).item(), (l0 + l1) / 2, 1e-12);
  EXPECT_NEAR(softmax_xent(z, t, {.reduction = "sum"}).item(), l0 + l1, 1e-12);
  const Var none = softmax_xent(z, t, {.reduction = "none"});
  EXPECT_TRUE(ValuesNear(none, none.shape(), {l0, l1}));
}

TEST(SoftmaxXent, HugeLogitsStayFinite) {
  Tensor z = f64({1000, -1000, 0, -1000, 1000, 0}, {2, 3});
  Tape tape;
  Var zv = variable(z);
  Var loss = softmax_xent(zv, labels({1, 1}, {2}));
  EXPECT_NEAR(loss.item(), 1000.0,
              1e-9);  // sample 0 misses by 2000, sample 1 is right: (2000 + 0) / 2
  auto g = grad(loss, {zv});
  for (double v : g[0].value().to_vector()) EXPECT_TRUE(std::isfinite(v));
  EXPECT_TRUE(ValuesNear(g[0], g[0].shape(), {0.5, -0.5, 0, 0, 0, 0}, 1e-12));
}

TEST(SoftmaxXent, IgnoreIndexSkipsPixelsAndTheMeanCountsOnlyTheRest) {
  Tensor z = Tensor::randn({2, 4, 3, 3}, 1, DType::f64);
  std::vector<int64_t> l(18);
  for (int i = 0; i < 18; ++i) l[i] = i % 5 == 0 ? -1 : i % 4;
  Tensor t = labels(l, {2, 3, 3});
  Var none = softmax_xent(z, t, {.reduction = "none", .ignore_index = -1});
  double total = 0;
  int counted = 0;
  for (int i = 0; i < 18; ++i) {
    if (l[i] == -1) {
      EXPECT_EQ(none.value().at(i), 0.0);
    } else {
      total += none.value().at(i);
      ++counted;
    }
  }
  EXPECT_NEAR(softmax_xent(z, t, {.ignore_index = -1}).item(), total / counted, 1e-12);
  for (const char* reduction : {"mean", "sum", "none"})
    expect_gradients_ok(
        [&](const std::vector<Var>& v) {
          return std::vector<Var>{
              softmax_xent(v[0], t, {.reduction = reduction, .ignore_index = -1})};
        },
        {z});
}

TEST(SoftmaxXent, ProbabilityLabelsGetGradientsToo) {
  Tensor z = Tensor::randn({3, 5}, 2, DType::f64);
  Tensor p = softmax(Tensor::randn({3, 5}, 3, DType::f64)).value();
  for (const char* reduction : {"mean", "sum", "none"})
    expect_gradients_ok(
        [&](const std::vector<Var>& v) {
          return std::vector<Var>{softmax_xent(v[0], v[1], {.reduction = reduction})};
        },
        {z, p});
  Tensor z4 = Tensor::randn({2, 3, 2, 2}, 4, DType::f64),
         p4 = softmax(Tensor::randn({2, 3, 2, 2}, 5, DType::f64)).value();
  expect_gradients_ok(
      [](const std::vector<Var>& v) { return std::vector<Var>{softmax_xent(v[0], v[1])}; },
      {z4, p4});
}

TEST(SoftmaxXent, InvariantToAShiftOfTheLogitsAndClassGradientsSumToZero) {
  Tensor z = Tensor::randn({4, 6}, 6, DType::f64);
  Tensor t = labels({0, 5, 2, 3}, {4});
  Var shifted = add_scalar(z, 123.0);
  EXPECT_NEAR(softmax_xent(z, t).item(), softmax_xent(shifted, t).item(), 1e-10);
  Tape tape;
  Var zv = variable(z);
  auto g = grad(softmax_xent(zv, t), {zv});
  Var per_sample = sum(g[0], {.axes = {1}});
  for (double v : per_sample.value().to_vector()) EXPECT_NEAR(v, 0.0, 1e-15);
}

TEST(Softmax, GradientsAndOneHot) {
  Tensor x = Tensor::randn({2, 3, 2, 2}, 7, DType::f64);
  expect_gradients_ok([](const std::vector<Var>& v) { return std::vector<Var>{softmax(v[0])}; },
                      {x});
  expect_gradients_ok([](const std::vector<Var>& v) { return std::vector<Var>{log_softmax(v[0])}; },
                      {x});
  Var oh = one_hot(labels({2, -1, 0}, {3}), 3);
  EXPECT_TRUE(ValuesNear(oh, oh.shape(), {0, 0, 1, 0, 0, 0, 1, 0, 0}));
  EXPECT_EQ(oh.dtype(), DType::f32);
}

// Over any axis, as torch.softmax(x, dim): the same as moving that axis to position 1,
// normalising there and moving it back; negative axes count from the end.
TEST(Softmax, AnyAxisIsTheClassAxisMovedIntoPlace) {
  Tensor x = Tensor::randn({2, 3, 4, 5}, 11, DType::f64);
  for (int64_t axis : {0, 2, 3, -1, -4}) {
    SCOPED_TRACE(axis);
    const int64_t d = axis < 0 ? axis + 4 : axis;
    Ints to_front{0, 1, 2, 3};
    std::swap(to_front[1], to_front[static_cast<int>(d)]);  // a swap is its own inverse
    Var direct = softmax(x, axis), log_direct = log_softmax(x, axis);
    Var moved = permute(softmax(permute(x, to_front)), to_front);
    EXPECT_TRUE(allclose(direct.value(), moved.value(), 1e-14, 1e-15));
    EXPECT_TRUE(allclose(log_direct.value(), log(moved).value(), 1e-12, 1e-13));
    // Each slice along the axis sums to 1.
    Var sums = sum(direct, {.axes = {axis}});
    for (double v : sums.value().to_vector()) EXPECT_NEAR(v, 1.0, 1e-14);
  }
  expect_gradients_ok([](const std::vector<Var>& v) { return std::vector<Var>{softmax(v[0], -1)}; },
                      {x});
  expect_gradients_ok(
      [](const std::vector<Var>& v) { return std::vector<Var>{log_softmax(v[0], 0)}; }, {x});
  // A 1-D vector over its only axis.
  Var v = softmax(Tensor::from(std::vector<double>{0, std::log(3.0)}, {2}), 0);
  EXPECT_TRUE(ValuesNear(v, {2}, {0.25, 0.75}));
  EXPECT_TRUE(
      ThrowsError([&] { (void)softmax(x, 4); },
                  {"softmax at ", "axis 4 is out of range for x of shape [2,3,4,5] (rank 4)"}));
}

// Class weights and label smoothing, each reduction: the losses and gradients of
// F.cross_entropy (PyTorch 1.13, float64), with one ignored label. The mean divides by the
// weights of the counted labels (by their number without weights), the smoothing term too.
TEST(SoftmaxXent, ClassWeightsAndLabelSmoothingFollowPyTorch) {
  const Tensor z = f64({1.0, 2.0, 0.5, 0.0, -1.0, 3.0, 2.0, 2.0, 2.0, 0.3, 0.1, -0.4}, {4, 3});
  const Tensor y = labels({1, 2, -100, 0}, {4});
  const Var w = input(f64({0.5, 2.0, 1.5}, {3}));
  struct Row {
    SoftmaxXentOptions options;
    std::vector<double> loss, grad;
  };
  const std::vector<Row> rows = {
      {{.weight = w},
       {0.361834131446},
       {0.115611948811, -0.185734140394, 0.070122191583, 0.017479733467, 0.00643043458,
        -0.023910168046, 0, 0, 0, -0.071011690443, 0.044201889341, 0.026809801102}},
      {{.reduction = "none", .weight = w},
       {0.928737568216, 0.098825855636, 0.0, 0.419773101932},
       {0.462447795244, -0.742936561576, 0.280488766332, 0.069918933867, 0.025721738318,
        -0.095640672185, 0, 0, 0, -0.284046761773, 0.176807557363, 0.10723920441}},
      {{.label_smoothing = 0.1},
       {0.572155186132},
       {0.06596352143, -0.101600538041, 0.035637016611, 0.004426429748, -0.005395169263,
        0.000968739514, 0, 0, 0, -0.167142285626, 0.106760593798, 0.060381691829}},
      {{.reduction = "sum", .label_smoothing = 0.1},
       {1.716465558397},
       {0.197890564289, -0.304801614122, 0.106911049833, 0.013279289245, -0.016185507788,
        0.002906218543, 0, 0, 0, -0.501426856879, 0.320281781393, 0.181145075486}},
      {{.label_smoothing = 0.1, .weight = w},
       {0.485477348026},
       {0.107591550517, -0.162876335714, 0.055284785197, 0.013118847539, -0.01030768136,
        -0.002811166179, 0, 0, 0, -0.053680305517, 0.034902204231, 0.018778101286}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(fmt::format("reduction {} smoothing {} weight {}", row.options.reduction,
                             row.options.label_smoothing, row.options.weight.defined()));
    Tape tape;
    Var logits = variable(z);
    Var loss = softmax_xent(logits, y, row.options);
    EXPECT_TRUE(ValuesNear(loss.value().reshape({loss.numel()}), {loss.numel()}, row.loss, 1e-10));
    EXPECT_TRUE(ValuesNear(grad(sum(loss), {logits})[0], {4, 3}, row.grad, 1e-10));
  }
  // Probability labels with both, and second derivatives of every form.
  const Tensor weights = f64({0.5, 2.0, 1.5}, {3});
  expect_gradients_ok(
      [&](const std::vector<Var>& v) {
        return std::vector<Var>{softmax_xent(v[0], v[1], {.label_smoothing = 0.3, .weight = v[2]})};
      },
      {Tensor::randn({3, 3, 2}, 1, DType::f64), test::rand64({3, 3, 2}, 2, 0.1, 1.0), weights},
      true, {.wrt = {true, true, false}});
  expect_gradients_ok(
      [&](const std::vector<Var>& v) {
        return std::vector<Var>{softmax_xent(v[0], y, {.label_smoothing = 0.2, .weight = v[1]})};
      },
      {Tensor::randn({4, 3}, 3, DType::f64), weights}, true, {.wrt = {true, false}});
}

// Logits of any rank >= 2: [N, C, d1, ..., dk] with labels [N, d1, ..., dk].
TEST(SoftmaxXent, AnyRankAsPyTorch) {
  Tensor z({2, 3, 4}, DType::f64);
  for (int64_t i = 0; i < 24; ++i) z.data<double>()[i] = std::sin(static_cast<double>(i));
  EXPECT_NEAR(softmax_xent(z, labels({0, 1, 2, 1, 2, 2, 0, 1}, {2, 4})).item(), 1.1070728779410623,
              1e-12);
}

TEST(SoftmaxXentErrors, NameTheOpTheArgumentTheShapesAndTheRule) {
  Tensor z = Tensor::zeros({2, 3});
  EXPECT_TRUE(ThrowsError(
      [&] {
        softmax_xent(z, labels({0, 3}, {2}));
      },
      {"softmax_xent at ", ": labels[1] = 3 is not a class in [0, 3) nor ignore_index (-100)"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        softmax_xent(z, labels({0, 1, 2}, {3}));
      },
      {"softmax_xent at ", ": class labels are [3] but logits [2,3] need labels [2]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        softmax_xent(z, labels({0, 1}, {2}), {.reduction = "avg"});
      },
      {"softmax_xent at ", ": reduction must be \"mean\", \"sum\" or \"none\", got \"avg\""}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        softmax_xent(z, Tensor::zeros({2, 4}));
      },
      {"softmax_xent at ",
       ": probability labels are [2,4] but logits are [2,3]; they must match"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        softmax_xent(z, labels({0, 1}, {2}), {.weight = Tensor::ones({2})});
      },
      {"softmax_xent at ",
       ": weight must be [C] = [3] (one weight per class of logits [2,3]), got [2]"}));
  EXPECT_TRUE(ThrowsError(
      [&] {
        softmax_xent(z, labels({0, 1}, {2}), {.label_smoothing = -0.5});
      },
      {"softmax_xent at ", ": label_smoothing must be in [0, 1], got -0.5"}));
}

}  // namespace
}  // namespace dg

// ---- how each op of this family is called through its typed function ---------------------
// (tests/typed_ops_test.cpp compares each with the call by name; an op missing here fails there)

namespace typed_calls_softmax {
using namespace dg;
using Vars = std::vector<dg::Var>;

const bool listed = dg::test::list_typed_calls({
    {"softmax",
     [](const Vars& in, const Attrs& a) { return Vars{softmax(in[0], a.integer("axis"))}; }},
    {"log_softmax",
     [](const Vars& in, const Attrs& a) { return Vars{log_softmax(in[0], a.integer("axis"))}; }},
    {"one_hot",
     [](const Vars& in, const Attrs& a) {
       return Vars{one_hot(in[0], a.integer("num_classes"), a.boolean("float64"))};
     }},
    {"softmax_xent",
     [](const Vars& in, const Attrs& a) {
       return Vars{softmax_xent(in[0], in[1],
                                {.reduction = a.string("reduction"),
                                 .ignore_index = a.integer("ignore_index"),
                                 .label_smoothing = a.real("label_smoothing"),
                                 .weight = in.size() > 2 ? in[2] : Var()})};
     }},
    {"softmax_xent_backward",
     [](const Vars& in, const Attrs& a) {
       return Vars{softmax_xent_backward(in[0], in[1], in[2], a.integer("ignore_index"))};
     }},
});
}  // namespace typed_calls_softmax
