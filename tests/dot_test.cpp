// DOT export and rendering: exact text for small graphs, escaping of hostile names, clusters
// and collapsed scopes, the backward graph, statistics and NaN marking, and real graphs that
// Graphviz itself must parse (agmemread) and render.
#include <graphviz/cgraph.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "deltagraph/core/graph.h"
#include "test_util.h"

namespace {

using dg::test::ThrowsError;

// ---- Graphviz helpers --------------------------------------------------------------------

struct GraphCloser {
  void operator()(Agraph_t* g) const { agclose(g); }
};
using ParsedGraph = std::unique_ptr<Agraph_t, GraphCloser>;

// Parses DOT text with Graphviz's own parser; null if it does not parse.
ParsedGraph parse(const std::string& dot) { return ParsedGraph(agmemread(dot.c_str())); }

std::string attr(void* object, const char* name) {
  const char* value = agget(object, const_cast<char*>(name));
  return value ? value : "";
}

// The node with this id, or null.
Agnode_t* node(Agraph_t* g, const char* id) { return agnode(g, const_cast<char*>(id), 0); }

// Every node whose label contains `text`.
std::vector<Agnode_t*> nodes_labelled(Agraph_t* g, const std::string& text) {
  std::vector<Agnode_t*> found;
  for (Agnode_t* n = agfstnode(g); n; n = agnxtnode(g, n))
    if (attr(n, "label").find(text) != std::string::npos) found.push_back(n);
  return found;
}

// The sub-graph (cluster) whose label is `label`, searched recursively; null if none.
Agraph_t* cluster_labelled(Agraph_t* g, const std::string& label) {
  for (Agraph_t* s = agfstsubg(g); s; s = agnxtsubg(s)) {
    if (attr(s, "label") == label) return s;
    if (Agraph_t* inner = cluster_labelled(s, label)) return inner;
  }
  return nullptr;
}

bool contains(Agraph_t* cluster, Agnode_t* n) { return agsubnode(cluster, n, 0) != nullptr; }

int edge_count(Agraph_t* g) { return agnedges(g); }

// The edges arriving at n.
std::vector<Agedge_t*> in_edges(Agraph_t* g, Agnode_t* n) {
  std::vector<Agedge_t*> edges;
  for (Agedge_t* e = agfstin(g, n); e; e = agnxtin(g, e)) edges.push_back(e);
  return edges;
}

// The demo's kind of model: every convolutional op, pooling with indices, a loss.
struct Model {
  dg::Param w1{dg::Tensor::randn({4, 1, 3, 3}, 1, dg::DType::f32, 0, 0.5), "enc.weight"};
  dg::Param b1{dg::Tensor::zeros({4}), "enc.bias"};
  dg::Param w2{dg::Tensor::randn({4, 3, 3, 3}, 2, dg::DType::f32, 0, 0.5), "dec.weight"};
  dg::Param w3{dg::Tensor::randn({2, 3, 1, 1}, 3, dg::DType::f32, 0, 0.5), "classify.weight"};
  dg::Var image = dg::input(dg::Tensor::randn({2, 1, 6, 6}, 4), "image");
  dg::Var labels = dg::input(dg::Tensor::from(std::vector<int64_t>(72, 1), {2, 6, 6}), "labels");
  dg::Var loss;

  // Records the model on the current tape, inside scopes when `scoped`.
  explicit Model(bool scoped = true) {
    dg::Var pooled, where, logits;
    {
      std::unique_ptr<dg::Scope> s = scoped ? std::make_unique<dg::Scope>("encoder") : nullptr;
      dg::Var h = dg::relu(dg::bias_add(dg::conv2d(image, w1, {.padding = 1}), b1));
      auto [p, i] = dg::max_pool2d(h, {.kernel_size = 2});
      pooled = p;
      where = i;
    }
    {
      std::unique_ptr<dg::Scope> s = scoped ? std::make_unique<dg::Scope>("decoder") : nullptr;
      dg::Var up = dg::max_unpool2d(pooled, where, {.kernel_size = 2, .output_size = {6, 6}});
      dg::Var decoded = dg::conv_transpose2d(up, w2, {.padding = 1});
      std::unique_ptr<dg::Scope> head = scoped ? std::make_unique<dg::Scope>("head") : nullptr;
      logits = dg::conv1x1(decoded, w3);
    }
    loss = dg::softmax_xent(logits, labels).named("loss");
  }
  std::vector<dg::Var> params() const { return {w1, b1, w2, w3}; }
};

// ---- exact text ---------------------------------------------------------------------------

TEST(Dot, GoldenTextOfASmallGraph) {
  dg::Param w(dg::Tensor::from(std::vector<double>{1, 2}, {2}), "w");
  dg::Tape tape;
  dg::Var x = dg::input(dg::Tensor::from(std::vector<double>{3, -4}, {2}), "x");
  dg::Var y = dg::relu(dg::mul_scalar(x * w, 2.0)).named("y");
  EXPECT_EQ(dg::to_dot({y}, {.title = "tiny"}),
            R"(digraph deltagraph {
  rankdir=TB;
  fontname="Helvetica";
  node [fontname="Helvetica", fontsize=11];
  edge [fontname="Helvetica", fontsize=9];
  label="tiny\n2 parameters";
  leaf0 [shape=box, style="filled", fillcolor="#dae8fc", label="x\ninput [2] f64"];
  leaf1 [shape=box, style="rounded,filled", fillcolor="#fff2cc", label="w\nparam [2] f64\n2 parameters"];
  op0 [label="mul"];
  op1 [label="mul_scalar c=2"];
  op2 [label="relu"];
  output0 [shape=box, style="filled,bold", fillcolor="#f8cecc", label="y\n[2] f64"];
  leaf0 -> op0 [label="[2] f64"];
  leaf1 -> op0 [label="[2] f64"];
  op0 -> op1 [label="[2] f64"];
  op1 -> op2 [label="[2] f64"];
  op2 -> output0 [style=bold];
}
)");
}

TEST(Dot, GoldenTextOfPoolingPortsAndTheIndicesEdge) {
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::randn({1, 1, 4, 4}, 7), "x");
  auto [pooled, where] = dg::max_pool2d(x, {.kernel_size = 2});
  dg::Var up = dg::max_unpool2d(pooled, where, {.kernel_size = 2});
  EXPECT_EQ(dg::to_dot({up}),
            R"(digraph deltagraph {
  rankdir=TB;
  fontname="Helvetica";
  node [fontname="Helvetica", fontsize=11];
  edge [fontname="Helvetica", fontsize=9];
  label="0 parameters";
  leaf0 [shape=box, style="filled", fillcolor="#d5e8d4", label="x\nvariable [1,1,4,4] f32"];
  op0 [shape=plain, label=<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4"><TR><TD COLSPAN="2">max_pool2d k2</TD></TR><TR><TD PORT="o0">y</TD><TD PORT="o1">indices</TD></TR></TABLE>>];
  op1 [label="max_unpool2d k2"];
  output0 [shape=box, style="filled,bold", fillcolor="#f8cecc", label="output\n[1,1,4,4] f32"];
  leaf0 -> op0 [label="[1,1,4,4] f32"];
  op0:o0:s -> op1 [label="[1,1,2,2] f32"];
  op0:o1:s -> op1 [label="indices\n[1,1,2,2] i64", style="bold", color="#d79b00", fontcolor="#d79b00"];
  op1 -> output0 [style=bold];
}
)");
}

TEST(Dot, ConvLabelsShowKernelAndNonDefaultAttributes) {
  dg::Param w(dg::Tensor::randn({4, 2, 5, 5}, 1));
  dg::Tape tape;
  dg::Var x = dg::input(dg::Tensor::randn({1, 4, 12, 12}, 2));
  dg::Var y = dg::conv2d(x, w, {.stride = 2, .padding = 1, .groups = 2});
  EXPECT_NE(dg::to_dot({y}).find("op0 [label=\"conv2d k5 s2 p1 g2\"];"), std::string::npos);
  // Padding [h, w] shows as a pair; four different sides as top,bottom,left,right; a mode by name.
  const dg::OpDef& conv = dg::find_op("conv2d");
  const std::vector<dg::Shape> shapes{{1, 4, 12, 12}, {4, 4, 3, 3}};
  const auto label = [&](dg::AttrValue padding) {
    return dg::op_label(conv, dg::make_attrs(conv, {{"padding", padding}}), shapes);
  };
  EXPECT_EQ(label(dg::Ints{1, 2}), "conv2d k3 p1x2");
  EXPECT_EQ(label(dg::Ints{0, 1, 0, 1}), "conv2d k3 p0,1,0,1");
  EXPECT_EQ(label("same"), "conv2d k3 p=same");
  EXPECT_EQ(label("valid"), "conv2d k3");
}

TEST(Dot, PoolLabelsLeaveOutAStrideEqualToTheKernel) {
  const dg::OpDef& pool = dg::find_op("max_pool2d");
  const auto label = [&](dg::AttrMap attrs) {
    return dg::op_label(pool, dg::make_attrs(pool, attrs));
  };
  EXPECT_EQ(label({{"kernel_size", 2}}), "max_pool2d k2");
  EXPECT_EQ(label({{"kernel_size", 2}, {"stride", 2}}), "max_pool2d k2");
  EXPECT_EQ(label({{"kernel_size", 3}, {"stride", 2}, {"padding", 1}}), "max_pool2d k3 s2 p1");
  EXPECT_EQ(label({{"kernel_size", dg::Ints{3, 2}}, {"stride", dg::Ints{3, 2}}}),
            "max_pool2d k3x2");
  const dg::OpDef& avg = dg::find_op("avg_pool2d");
  EXPECT_EQ(dg::op_label(
                avg, dg::make_attrs(
                         avg, {{"kernel_size", 2}, {"stride", 1}, {"count_include_pad", false}})),
            "avg_pool2d k2 s1 no_count_include_pad");
}

TEST(Dot, SameGraphGivesSameTextWhateverWasRecordedBefore) {
  auto build = [] {
    dg::Param w(dg::Tensor::ones({3}), "w");
    dg::Tape tape;
    dg::Var x = dg::input(dg::Tensor::ones({3}), "x");
    return dg::to_dot({dg::sum(dg::exp(x * w))});
  };
  const std::string first = build();
  {
    // Unrelated recordings move the global sequence numbers on.
    dg::Param p(dg::Tensor::ones({2}));
    dg::Tape tape;
    for (int i = 0; i < 5; ++i) (void)dg::neg(p);
  }
  EXPECT_EQ(first, build());
  EXPECT_EQ(first.find("0x"), std::string::npos);  // no addresses
}

TEST(Dot, EveryValueUsedTwiceGetsTwoEdgesAndOneLeaf) {
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::ones({2}, dg::DType::f64), "x");
  const std::string dot = dg::to_dot({x * x});
  ParsedGraph g = parse(dot);
  ASSERT_TRUE(g);
  EXPECT_EQ(agnnodes(g.get()), 3);  // leaf, mul, output
  EXPECT_EQ(in_edges(g.get(), node(g.get(), "op0")).size(), 2u);
}

TEST(Dot, LeavesAreToldApart) {
  dg::Param w(dg::Tensor::ones({2, 3}), "weights");
  dg::Tape tape;
  dg::Var data = dg::input(dg::Tensor::ones({4, 3}), "data");
  dg::Var shift = dg::constant(dg::Tensor::ones({4, 2}), "shift");
  dg::Var probe = dg::variable(dg::Tensor::ones({4, 2}), "probe");
  dg::Var y = dg::linear(data, w) + shift + probe;
  ParsedGraph g = parse(dg::to_dot({y}));
  ASSERT_TRUE(g);
  ASSERT_EQ(nodes_labelled(g.get(), "weights").size(), 1u);
  Agnode_t* weights = nodes_labelled(g.get(), "weights")[0];
  EXPECT_EQ(attr(weights, "label"), "weights\\nparam [2,3]\\n6 parameters");
  EXPECT_EQ(attr(nodes_labelled(g.get(), "data")[0], "label"), "data\\ninput [4,3] f32");
  EXPECT_EQ(attr(nodes_labelled(g.get(), "shift")[0], "label"), "shift\\nconstant [4,2] f32");
  EXPECT_EQ(attr(nodes_labelled(g.get(), "probe")[0], "label"), "probe\\nvariable [4,2] f32");
  // Four kinds, four fills.
  std::set<std::string> fills;
  for (const char* name : {"weights", "data", "shift", "probe"})
    fills.insert(attr(nodes_labelled(g.get(), name)[0], "fillcolor"));
  EXPECT_EQ(fills.size(), 4u);
  EXPECT_EQ(attr(g.get(), "label"), "6 parameters");
}

TEST(Dot, ParameterTotalIsGroupedAndCountsEachParameterOnce) {
  dg::Param big(dg::Tensor::zeros({1000, 1234}), "big");
  dg::Tape tape;
  dg::Var y = dg::sum(big * big);
  EXPECT_NE(dg::to_dot({y}).find("label=\"1,234,000 parameters\";"), std::string::npos);
}

TEST(Dot, NamedIntermediateValuesLabelTheirEdge) {
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::ones({2}), "x");
  dg::Var hidden = dg::exp(x).named("hidden");
  const std::string dot = dg::to_dot({dg::log(hidden)});
  EXPECT_NE(dot.find("op0 -> op1 [label=\"hidden\\n[2] f32\"];"), std::string::npos) << dot;
}

TEST(Dot, UndefinedOutputIsAnError) {
  EXPECT_TRUE(ThrowsError([] { dg::to_dot({dg::Var()}); }, {"to_dot", "output 0", "undefined"}));
}

TEST(Dot, LeftToRightLayoutTurnsPortsEast) {
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::randn({1, 1, 2, 2}, 1));
  auto [p, i] = dg::max_pool2d(x, {.kernel_size = 2});
  const std::string dot =
      dg::to_dot({dg::max_unpool2d(p, i, {.kernel_size = 2})}, {.left_to_right = true});
  EXPECT_NE(dot.find("rankdir=LR;"), std::string::npos);
  EXPECT_NE(dot.find("op0:o1:e -> op1"), std::string::npos);
}

// ---- escaping -----------------------------------------------------------------------------

const std::vector<std::string> kHostileNames = {
    "quote\"inside",
    "back\\slash",
    "trailing\\",
    "brace{x}|y",
    "<b>angle</b>",
    "line\nbreak",
    "\\N\\G\\l",
    "amp&amp;",
    "cr\r\nlf",
    "tab\there",
    "\"];\nevil [label=\"x",
    "-> op0",
    "}\ndigraph{",
    "</TD></TR>",
    "bad\xff\xfeutf8",
    "ctrl\x01\x1f",
    "truncated\xe2\x82",
};

TEST(Dot, HostileNamesParseAndCannotAddNodesOrEdges) {
  for (const std::string& name : kHostileNames) {
    SCOPED_TRACE(name);
    dg::Param w(dg::Tensor::ones({2}), name);
    dg::Tape tape;
    dg::Var x = dg::input(dg::Tensor::ones({2}), name);
    dg::Var y;
    {
      dg::Scope s(name);
      y = (x * w).named(name);
    }
    const std::string dot = dg::to_dot({y, dg::neg(y)});
    ParsedGraph g = parse(dot);
    ASSERT_TRUE(g) << dot;
    // leaf x, leaf w, mul, neg, two outputs; edges x->mul, w->mul, mul->neg, two to outputs.
    EXPECT_EQ(agnnodes(g.get()), 6) << dot;
    EXPECT_EQ(edge_count(g.get()), 5) << dot;
    EXPECT_NO_THROW(dg::render_dot(dot, "svg"));
  }
}

TEST(Dot, HostileNamesAreShownAsWritten) {
  dg::Param w(dg::Tensor::ones({2}), "a\"b\\c<d>{e}|f");
  dg::Tape tape;
  dg::Var y = dg::relu(w).named("two\nlines");
  const std::string svg = dg::render_dot(dg::to_dot({y}), "svg");
  EXPECT_NE(svg.find(">a&quot;b\\c&lt;d&gt;{e}|f</text>"), std::string::npos) << svg;
  EXPECT_NE(svg.find(">two</text>"), std::string::npos);
  EXPECT_NE(svg.find(">lines</text>"), std::string::npos);
}

TEST(Dot, QuoteAndHtmlEscapeRules) {
  EXPECT_EQ(dg::dot_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
  EXPECT_EQ(dg::dot_quote("x\r\ny\rz\tw"), "\"x\\ny\\nz w\"");
  EXPECT_EQ(dg::dot_quote("\x01"), "\"\xEF\xBF\xBD\"");
  EXPECT_EQ(dg::dot_quote("caf\xc3\xa9 \xe2\x88\x82"),
            "\"caf\xc3\xa9 \xe2\x88\x82\"");             // UTF-8 kept
  EXPECT_EQ(dg::dot_quote("\xc3"), "\"\xEF\xBF\xBD\"");  // truncated
  EXPECT_EQ(dg::dot_quote("\xed\xa0\x80"),
            "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // surrogate
  EXPECT_EQ(dg::dot_html_escape("<a & \"b\">\nc"), "&lt;a &amp; &quot;b&quot;&gt;<BR/>c");
}

TEST(Dot, HostileOpAndOutputNamesInHtmlLabels) {
  // A user-registered op whose name and output names are hostile to HTML-like labels.
  static const dg::OpDef& op = dg::register_op({
      .name = "test_dot<split>&\"",  // "test_": the registry test skips test ops
      .summary = "two copies of x",
      .inputs = {{"x"}},
      .outputs = {{"<first>"}, {"second&\"</TD>"}},
      .shape =
          [](const dg::OpCall& c) {
            return std::vector<dg::TensorSpec>(2, {c.input(0).shape(), c.input(0).dtype()});
          },
      .forward =
          [](const dg::OpCall& c, std::span<const dg::TensorSpec>) {
            return std::vector<dg::Tensor>{c.input(0).clone(), c.input(0).clone()};
          },
      .vjp = [](const dg::VjpContext& c) -> std::vector<dg::Var> {
        return {c.grad_output(0) + c.grad_output(1)};
      },
      .vjp_formula = "dx = g0 + g1",
  });
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::ones({2}));
  std::vector<dg::Var> outs = dg::call(op, std::vector<dg::Var>{x}, dg::Attrs(&op, {}));
  const std::string dot = dg::to_dot({outs[0] + outs[1]});
  ParsedGraph g = parse(dot);
  ASSERT_TRUE(g) << dot;
  EXPECT_EQ(agnnodes(g.get()), 4);
  const std::string svg = dg::render_dot(dot, "svg");
  EXPECT_NE(svg.find("test_dot&lt;split&gt;&amp;&quot;"), std::string::npos) << svg;
  EXPECT_NE(svg.find("&lt;first&gt;"), std::string::npos);
}

// ---- clusters and collapse ----------------------------------------------------------------

TEST(Dot, ScopesBecomeNestedClusters) {
  dg::Tape tape;
  Model m;
  ParsedGraph g = parse(dg::to_dot({m.loss}));
  ASSERT_TRUE(g);
  Agraph_t* encoder = cluster_labelled(g.get(), "encoder");
  Agraph_t* decoder = cluster_labelled(g.get(), "decoder");
  Agraph_t* head = cluster_labelled(g.get(), "head");
  ASSERT_TRUE(encoder && decoder && head);
  EXPECT_EQ(std::string(agnameof(encoder)).rfind("cluster_", 0), 0u);
  EXPECT_EQ(agparent(head), decoder);  // nested scope, nested cluster
  Agnode_t* conv = nodes_labelled(g.get(), "conv2d k3 p1")[0];
  Agnode_t* conv1x1 = nodes_labelled(g.get(), "conv1x1")[0];
  Agnode_t* loss = nodes_labelled(g.get(), "softmax_xent")[0];
  EXPECT_TRUE(contains(encoder, conv));
  EXPECT_FALSE(contains(decoder, conv));
  EXPECT_TRUE(contains(head, conv1x1));
  EXPECT_TRUE(contains(decoder, conv1x1));
  EXPECT_FALSE(contains(encoder, loss) || contains(decoder, loss));
  // A parameter used only inside a scope is drawn inside it; the input stays outside.
  EXPECT_TRUE(contains(encoder, nodes_labelled(g.get(), "enc.weight")[0]));
  EXPECT_FALSE(contains(encoder, nodes_labelled(g.get(), "image")[0]));

  ParsedGraph flat = parse(dg::to_dot({m.loss}, {.scope_clusters = false}));
  EXPECT_EQ(cluster_labelled(flat.get(), "encoder"), nullptr);
}

TEST(Dot, CollapsedScopeIsOneNodeWithItsEdgesKept) {
  dg::Tape tape;
  Model m;
  ParsedGraph g = parse(dg::to_dot({m.loss}, {.collapse = {"encoder"}}));
  ASSERT_TRUE(g);
  EXPECT_EQ(cluster_labelled(g.get(), "encoder"), nullptr);
  EXPECT_TRUE(nodes_labelled(g.get(), "conv2d").empty());
  EXPECT_TRUE(nodes_labelled(g.get(), "max_pool2d").empty());
  EXPECT_TRUE(nodes_labelled(g.get(), "enc.weight").empty());  // folded in
  Agnode_t* encoder = node(g.get(), "scope0");
  ASSERT_TRUE(encoder);
  EXPECT_EQ(attr(encoder, "label"), "encoder\\n4 ops, 40 parameters");
  // In: the image. Out: values and indices into max_unpool2d, each labelled with its shape.
  std::vector<Agedge_t*> in = in_edges(g.get(), encoder);
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(attr(in[0], "label"), "[2,1,6,6] f32");
  Agnode_t* unpool = nodes_labelled(g.get(), "max_unpool2d")[0];
  std::vector<std::string> labels;
  for (Agedge_t* e : in_edges(g.get(), unpool)) {
    EXPECT_EQ(agtail(e), encoder);
    labels.push_back(attr(e, "label"));
  }
  std::sort(labels.begin(), labels.end());
  EXPECT_EQ(labels, (std::vector<std::string>{"[2,4,3,3] f32", "indices\\n[2,4,3,3] i64"}));
  // The parameter total still counts the folded parameters.
  EXPECT_EQ(attr(g.get(), "label"), "154 parameters");
}

TEST(Dot, CollapsingANestedScopeKeepsItInItsParentCluster) {
  dg::Tape tape;
  Model m;
  ParsedGraph g = parse(dg::to_dot({m.loss}, {.collapse = {"decoder/head"}}));
  ASSERT_TRUE(g);
  Agraph_t* decoder = cluster_labelled(g.get(), "decoder");
  ASSERT_TRUE(decoder);
  Agnode_t* head = node(g.get(), "scope0");
  ASSERT_TRUE(head);
  EXPECT_EQ(attr(head, "label"), "decoder/head\\n1 op, 6 parameters");
  EXPECT_TRUE(contains(decoder, head));
  EXPECT_EQ(cluster_labelled(g.get(), "head"), nullptr);
  // The outer scope wins when both are collapsed.
  ParsedGraph both = parse(dg::to_dot({m.loss}, {.collapse = {"decoder/head", "decoder"}}));
  EXPECT_EQ(attr(node(both.get(), "scope0"), "label"), "decoder\\n3 ops, 114 parameters");
  EXPECT_EQ(node(both.get(), "scope1"), nullptr);
}

TEST(Dot, CollapsingAnUnknownScopeNamesTheScopesThatExist) {
  dg::Tape tape;
  Model m;
  EXPECT_TRUE(ThrowsError([&] { dg::to_dot({m.loss}, {.collapse = {"encodr"}}); },
                          {"collapse", "\"encodr\"", "\"encoder\"", "\"decoder/head\""}));
  EXPECT_TRUE(ThrowsError([&] { dg::to_dot({m.loss}, {.collapse = {""}}); }, {"empty scope name"}));
}

// ---- the backward graph --------------------------------------------------------------------

TEST(Dot, EngineRecordsWhoseVjpMadeEachBackwardNode) {
  dg::Param w(dg::Tensor::randn({2, 1, 3, 3}, 1, dg::DType::f64));
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::randn({1, 1, 5, 5}, 2, dg::DType::f64), "x");
  dg::Var y = dg::conv2d(x, w);
  EXPECT_FALSE(y.producer()->backward.in_backward_pass);
  auto grads = dg::grad(dg::sum(y), {x}, {.create_graph = true});
  const dg::Node* dx = grads[0].producer();
  ASSERT_NE(dx, nullptr);
  EXPECT_EQ(dx->op->name, "conv_transpose2d");
  EXPECT_TRUE(dx->backward.in_backward_pass);
  EXPECT_EQ(dx->backward.vjp_op, &dg::find_op("conv2d"));
  EXPECT_EQ(dx->backward.vjp_of, y.producer()->sequence);
  // Gradients of gradients: the second pass marks its own nodes with the backward op's VJP.
  auto second = dg::grad(dg::sum(grads[0] * grads[0]), {w}, {.create_graph = true});
  ASSERT_NE(second[0].producer(), nullptr);
  EXPECT_TRUE(second[0].producer()->backward.in_backward_pass);
  // After the pass, ops are forward ops again.
  dg::Var z = dg::neg(x);
  EXPECT_FALSE(z.producer()->backward.in_backward_pass);
  EXPECT_EQ(z.producer()->backward.vjp_op, nullptr);
}

TEST(Dot, FanOutSumsInTheBackwardPassAreMarkedAsTheEnginesOwn) {
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::ones({2}, dg::DType::f64), "x");
  auto g = dg::grad(dg::sum(dg::exp(x) + dg::neg(x)), {x}, {.create_graph = true});
  ASSERT_NE(g[0].producer(), nullptr);
  EXPECT_EQ(g[0].producer()->op->name, "add");
  EXPECT_TRUE(g[0].producer()->backward.in_backward_pass);
  EXPECT_EQ(g[0].producer()->backward.vjp_op, nullptr);
  ParsedGraph graph = parse(dg::to_dot({g[0]}, {.backward = dg::BackwardGraph::merged}));
  ASSERT_TRUE(graph);
  EXPECT_EQ(nodes_labelled(graph.get(), "add\\ngradient sum").size(), 1u);
}

TEST(Dot, MergedBackwardShowsConvTransposeAsConv2dsVjp) {
  dg::Tape tape;
  Model m(false);
  std::vector<dg::Var> outputs{m.loss};
  for (const dg::Var& g : dg::grad(m.loss, m.params(), {.create_graph = true}))
    outputs.push_back(g);
  ParsedGraph g = parse(dg::to_dot(outputs, {.backward = dg::BackwardGraph::merged}));
  ASSERT_TRUE(g);
  // The decoder's conv_transpose2d is differentiated into a conv2d, and back.
  std::vector<Agnode_t*> vjp = nodes_labelled(g.get(), "conv2d k3 p1\\nVJP of conv_transpose2d");
  ASSERT_EQ(vjp.size(), 1u);
  EXPECT_EQ(attr(vjp[0], "fillcolor"), "#e1d5e7");
  EXPECT_EQ(nodes_labelled(g.get(), "gather_at\\nVJP of max_unpool2d").size(), 1u);
  EXPECT_EQ(nodes_labelled(g.get(), "scatter_add_at out6\\nVJP of max_pool2d").size(), 1u);
  // Edges into gradient nodes are dashed; the pooling indices still stand out.
  for (Agedge_t* e : in_edges(g.get(), vjp[0]))
    EXPECT_NE(attr(e, "style").find("dashed"), std::string::npos);
  Agnode_t* scatter = nodes_labelled(g.get(), "scatter_add_at")[0];
  bool saw_indices = false;
  for (Agedge_t* e : in_edges(g.get(), scatter))
    if (attr(e, "label").find("indices") != std::string::npos) {
      saw_indices = true;
      EXPECT_EQ(attr(e, "color"), "#d79b00");
    }
  EXPECT_TRUE(saw_indices);
  // Forward nodes are not coloured; four gradient outputs.
  EXPECT_EQ(attr(nodes_labelled(g.get(), "max_unpool2d k2 out6")[0], "fillcolor"), "");
  int gradient_outputs = 0;
  for (Agnode_t* n = agfstnode(g.get()); n; n = agnxtnode(g.get(), n))
    gradient_outputs += attr(n, "label").rfind("gradient\\n", 0) == 0;
  EXPECT_EQ(gradient_outputs, 4);
}

TEST(Dot, BesideBackwardGroupsEachVjpInItsOwnCluster) {
  dg::Tape tape;
  Model m;
  std::vector<dg::Var> outputs{m.loss};
  for (const dg::Var& g : dg::grad(m.loss, m.params(), {.create_graph = true}))
    outputs.push_back(g);
  const std::string dot = dg::to_dot(outputs, {.backward = dg::BackwardGraph::beside});
  ParsedGraph g = parse(dot);
  ASSERT_TRUE(g);
  Agraph_t* backward = cluster_labelled(g.get(), "backward pass");
  Agraph_t* conv_vjp = cluster_labelled(g.get(), "VJP of conv_transpose2d k3 p1");
  ASSERT_TRUE(backward && conv_vjp);
  EXPECT_EQ(agparent(conv_vjp), backward);
  std::vector<std::string> in_vjp;
  for (Agnode_t* n = agfstnode(conv_vjp); n; n = agnxtnode(conv_vjp, n))
    in_vjp.push_back(attr(n, "label"));
  std::sort(in_vjp.begin(), in_vjp.end());
  // dx = conv2d(g, w), dw = conv2d_weight_grad(g, x)
  EXPECT_EQ(in_vjp, (std::vector<std::string>{"conv2d k3 p1", "conv2d_weight_grad k3 p1"}));
  // Forward scopes keep only forward ops.
  Agraph_t* decoder = cluster_labelled(g.get(), "decoder");
  for (Agnode_t* n = agfstnode(decoder); n; n = agnxtnode(decoder, n))
    EXPECT_EQ(attr(n, "fillcolor").find("#e1d5e7"), std::string::npos) << attr(n, "label");
  // Saved forward values do not constrain the backward cluster's layout.
  int unconstrained = 0;
  for (Agnode_t* n = agfstnode(g.get()); n; n = agnxtnode(g.get(), n))
    for (Agedge_t* e = agfstout(g.get(), n); e; e = agnxtout(g.get(), e))
      unconstrained += attr(e, "constraint") == "false";
  EXPECT_GT(unconstrained, 0);
  EXPECT_NO_THROW(dg::render_dot(dot, "svg"));
}

TEST(Dot, HiddenBackwardLeavesGradientsOutAndSaysSo) {
  dg::Tape tape;
  Model m(false);
  std::vector<dg::Var> outputs{m.loss};
  for (const dg::Var& g : dg::grad(m.loss, m.params(), {.create_graph = true}))
    outputs.push_back(g);
  const std::string hidden = dg::to_dot(outputs);
  dg::Tape other;
  Model plain(false);
  // Exactly the forward graph, plus a note.
  std::string forward = dg::to_dot({plain.loss});
  const std::string note =
      "154 parameters\\n4 gradient outputs not drawn (DotOptions::backward is hidden)";
  forward.replace(forward.find("154 parameters"), std::string("154 parameters").size(), note);
  EXPECT_EQ(hidden, forward);
}

TEST(Dot, HiddenBackwardDrawsAGradientUsedByForwardOpsAsALeaf) {
  // A gradient penalty: the loss uses a gradient, so the backward pass feeds the forward graph.
  dg::Param w(dg::Tensor::ones({3}, dg::DType::f64), "w");
  dg::Tape tape;
  dg::Var loss = dg::sum(dg::exp(w));
  dg::Var gw = dg::grad(loss, {w}, {.create_graph = true})[0];
  dg::Var total = loss + dg::sum(gw * gw);
  ParsedGraph g = parse(dg::to_dot({total}));
  ASSERT_TRUE(g);
  EXPECT_EQ(nodes_labelled(g.get(), "gradient [3] f64\\n(backward pass hidden)").size(), 1u);
  ParsedGraph merged = parse(dg::to_dot({total}, {.backward = dg::BackwardGraph::merged}));
  EXPECT_TRUE(nodes_labelled(merged.get(), "(backward pass hidden)").empty());
  EXPECT_FALSE(nodes_labelled(merged.get(), "VJP of exp").empty());
}

// ---- statistics and non-finite values ------------------------------------------------------

TEST(Dot, StatsOnEdgesLeavesAndScalarOutputs) {
  dg::Tape tape;
  dg::Var x = dg::input(dg::Tensor::from(std::vector<double>{-1, 2, 5}, {3}), "x");
  dg::Var w = dg::variable(dg::Tensor::from(std::vector<double>{1, 1, 1}, {3}), "w");
  dg::Var y = dg::sum(x * w).named("s");
  const std::string dot = dg::to_dot({y}, {.stats = true});
  EXPECT_NE(dot.find("label=\"x\\ninput [3] f64\\nmin -1 max 5 mean 2\""), std::string::npos)
      << dot;
  EXPECT_NE(dot.find("op0 -> op1 [label=\"[3] f64\\nmin -1 max 5 mean 2\"];"), std::string::npos)
      << dot;
  EXPECT_NE(dot.find("label=\"s\\n[] f64\\nvalue 6\""), std::string::npos) << dot;
  EXPECT_EQ(dg::to_dot({y}).find("mean"), std::string::npos);  // off by default
}

TEST(Dot, ParameterGradientNormAfterBackward) {
  dg::Param w(dg::Tensor::from(std::vector<double>{3, 4}, {2}), "w");
  dg::Tape tape;
  dg::Var loss = dg::sum(w * w) * 0.5;  // dL/dw = w, norm 5
  dg::backward(loss, {}, {.retain_graph = true});
  const std::string dot = dg::to_dot({loss}, {.stats = true});
  EXPECT_NE(dot.find("w\\nparam [2] f64\\n2 parameters\\nmin 3 max 4 mean 3.5\\ngrad norm 5\""),
            std::string::npos)
      << dot;
}

TEST(Dot, NanAndInfAreMarkedRed) {
  dg::Tape tape;
  dg::Var x = dg::variable(dg::Tensor::from(std::vector<double>{-1, 0, 4}, {3}), "x");
  dg::Var l = dg::log(x);  // NaN, -Inf, finite
  dg::Var y = dg::sum(l);
  ParsedGraph g = parse(dg::to_dot({y}));
  ASSERT_TRUE(g);
  Agnode_t* log_node = node(g.get(), "op0");
  EXPECT_EQ(attr(log_node, "color"), "red");
  std::vector<Agedge_t*> into_sum = in_edges(g.get(), node(g.get(), "op1"));
  ASSERT_EQ(into_sum.size(), 1u);
  EXPECT_EQ(attr(into_sum[0], "color"), "red");
  EXPECT_EQ(attr(into_sum[0], "label"), "[3] f64\\nholds 1 NaN and 1 Inf");
  // The input is finite and stays black; the NaN sum is red too.
  EXPECT_EQ(attr(in_edges(g.get(), log_node)[0], "color"), "");
  EXPECT_EQ(attr(node(g.get(), "output0"), "color"), "red");
  // Marking can be turned off.
  EXPECT_EQ(dg::to_dot({y}, {.mark_non_finite = false}).find("red"), std::string::npos);
}

TEST(Dot, NonFiniteLeafAndGradientAreMarked) {
  dg::Param w(dg::Tensor::from(std::vector<double>{std::nan(""), 1}, {2}), "w");
  dg::Tape tape;
  dg::Var loss = dg::sum(w);
  const std::string dot = dg::to_dot({loss});
  EXPECT_NE(dot.find("color=red, fontcolor=red, penwidth=2, label=\"w\\nparam [2] f64\\n2 "
                     "parameters\\nholds 1 NaN\""),
            std::string::npos)
      << dot;
  dg::Param v(dg::Tensor::from(std::vector<double>{1, 2}, {2}), "v");
  v.mutable_grad() = dg::Tensor::from(std::vector<double>{INFINITY, 0}, {2});
  EXPECT_NE(dg::to_dot({dg::sum(v)}).find("grad holds 1 Inf"), std::string::npos);
}

// A backward pass frees the values it saved but keeps the structure, so a training loop can
// draw its model after a step: the same ops, edges, shapes, names and scopes as before it.
TEST(Dot, TheGraphSurvivesItsBackwardPass) {
  dg::Param w(dg::Tensor::randn({4, 2, 3, 3}, 1, dg::DType::f64), "conv.weight");
  dg::Param b(dg::Tensor::zeros({4}, dg::DType::f64), "conv.bias");
  dg::Tape tape;
  dg::Var x = dg::input(dg::Tensor::randn({2, 2, 6, 6}, 2, dg::DType::f64), "images");
  dg::Var loss;
  {
    dg::Scope scope("block");
    dg::Var h = dg::relu(dg::conv2d(x, w, b, {.padding = 1}));
    loss = dg::sum(dg::max_pool2d(h, {.kernel_size = 2}).values);
  }
  // Node ids come from the drawing order, not addresses, so the two texts are comparable.
  const std::string before = dg::to_dot({loss});
  dg::backward(loss);
  const std::string after = dg::to_dot({loss});
  auto count = [](const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count(after, "->"), count(before, "->")) << after;
  for (const char* part : {"conv2d", "relu", "max_pool2d", "sum", "conv.weight", "conv.bias",
                           "images", "cluster", "block", "[2,4,6,6]"})
    EXPECT_EQ(count(after, part), count(before, part)) << part << "\n" << after;
  // The op nodes whose values were freed say so (the output, which the caller holds, is kept).
  EXPECT_EQ(count(after, "values freed by backward"), 3u) << after;  // conv2d, relu, max_pool2d
  EXPECT_EQ(count(before, "values freed by backward"), 0u);
  EXPECT_TRUE(loss.value().defined());  // the output the caller holds keeps its value
  // Stats ask for values that are gone: the drawing says so instead of failing.
  dg::DotOptions stats;
  stats.stats = true;
  EXPECT_NE(dg::to_dot({loss}, stats).find("values freed by backward"), std::string::npos);
  // A second pass through the freed graph is still refused.
  EXPECT_THROW(dg::backward(loss), dg::Error);
}

// What the user holds keeps its value through a backward pass; what only the graph held is
// freed (the memory a backward pass exists to give back).
TEST(Dot, BackwardFreesOnlyWhatNothingElseHolds) {
  dg::Param w(dg::Tensor::ones({3}, dg::DType::f64), "w");
  dg::Tape tape;
  dg::Var kept = dg::exp(w);
  dg::Var loss = dg::sum(dg::mul(dg::tanh(kept), kept));
  const dg::Node* tanh_node = loss.producer()->inputs[0].producer()->inputs[0].producer();
  ASSERT_EQ(tanh_node->op->name, "tanh");
  dg::backward(loss);
  EXPECT_TRUE(kept.value().defined());                             // held by the caller
  EXPECT_TRUE(tanh_node->values_freed());                          // held by the graph only
  EXPECT_EQ(tanh_node->outputs[0].value.shape(), (dg::Shape{3}));  // the shape stays
  EXPECT_TRUE(ThrowsError([&] { (void)tanh_node->outputs[0].value.item(); }, {"item"}));
}

// ---- rendering -----------------------------------------------------------------------------

TEST(Render, RealGraphsParseAndRenderToSvgInMemory) {
  dg::Tape tape;
  Model m;
  std::vector<dg::Var> outputs{m.loss};
  for (const dg::Var& g : dg::grad(m.loss, m.params(), {.create_graph = true}))
    outputs.push_back(g);
  const std::vector<dg::DotOptions> variants = {
      {},
      {.stats = true},
      {.collapse = {"encoder", "decoder/head"}},
      {.backward = dg::BackwardGraph::merged},
      {.backward = dg::BackwardGraph::beside, .stats = true},
      {.scope_clusters = false, .left_to_right = true}};
  for (size_t i = 0; i < variants.size(); ++i) {
    SCOPED_TRACE(i);
    const std::string dot = dg::to_dot(outputs, variants[i]);
    ParsedGraph g = parse(dot);
    ASSERT_TRUE(g);
    EXPECT_GT(agnnodes(g.get()), 5);
    const std::string svg = dg::render_dot(dot, "svg");
    EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
    EXPECT_NE(svg.find("</svg>"), std::string::npos);
    EXPECT_NE(svg.find("softmax_xent"), std::string::npos);
  }
  const std::string png = dg::render_dot(dg::to_dot({m.loss}), "png");
  EXPECT_EQ(png.substr(0, 8), "\x89PNG\r\n\x1a\n");
}

TEST(Render, SameTextGivesTheSamePictureEveryTime) {
  // Graphviz orders clusters by object ID; render_dot's IDs follow the text, not addresses.
  dg::Tape tape;
  Model m;
  std::vector<dg::Var> outputs{m.loss};
  for (const dg::Var& g : dg::grad(m.loss, m.params(), {.create_graph = true}))
    outputs.push_back(g);
  const std::string dot = dg::to_dot(outputs, {.backward = dg::BackwardGraph::beside});
  const std::string first = dg::render_dot(dot, "svg");
  for (int i = 0; i < 3; ++i) {
    dg::render_dot(dg::to_dot({m.loss}, {.collapse = {"decoder"}}), "svg");  // churns the heap
    EXPECT_EQ(dg::render_dot(dot, "svg"), first) << "render " << i;
  }
}

class RenderFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("dg_dot_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  static std::string read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  std::filesystem::path dir_;
};

TEST_F(RenderFiles, FormatByExtension) {
  dg::Tape tape;
  Model m;
  dg::render({m.loss}, path("g.svg"));
  dg::render({m.loss}, path("g.PNG"));
  dg::render({m.loss}, path("g.dot"));
  dg::write_dot({m.loss}, path("w.dot"));
  EXPECT_NE(read(path("g.svg")).find("</svg>"), std::string::npos);
  EXPECT_EQ(read(path("g.PNG")).substr(0, 4), "\x89PNG");
  EXPECT_EQ(read(path("g.dot")), dg::to_dot({m.loss}));
  EXPECT_EQ(read(path("w.dot")), dg::to_dot({m.loss}));
}

TEST_F(RenderFiles, ErrorsSayWhatToDo) {
  dg::Tape tape;
  dg::Var y = dg::neg(dg::variable(dg::Tensor::ones({1})));
  EXPECT_TRUE(ThrowsError([&] { dg::render({y}, path("g.jpg")); },
                          {"render", "'.jpg'", "use .svg or .png"}));
  EXPECT_TRUE(
      ThrowsError([&] { dg::render({y}, path("noextension")); }, {"render", "use .svg or .png"}));
  EXPECT_TRUE(ThrowsError([&] { dg::render({y}, path("missing/dir/g.svg")); },
                          {"render", "cannot open", "missing/dir/g.svg", "writable"}));
  EXPECT_TRUE(ThrowsError([&] { dg::write_dot({y}, path("missing/g.dot")); },
                          {"write_dot", "cannot open"}));
  EXPECT_TRUE(ThrowsError([] { dg::render_dot("digraph { a -> }", "svg"); },
                          {"render_dot", "could not parse", "Graphviz:", "syntax error"}));
  EXPECT_TRUE(
      ThrowsError([] { dg::render_dot("digraph { a }", "gif"); }, {"unsupported format 'gif'"}));
  // Graphviz still works after an error.
  EXPECT_NE(dg::render_dot("digraph { a -> b }", "svg").find("</svg>"), std::string::npos);
}

// ---- dg dot -------------------------------------------------------------------------------

struct ToolRun {
  int status;
  std::string output;  // stdout and stderr
};

ToolRun run_dot_tool(const std::string& arguments) {
  const std::string command = std::string(DG_TOOL) + " dot " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {-1, ""};
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

const std::string kReference = std::string(DG_TEST_DATA) + "/reference";

using DotCommand = RenderFiles;

TEST_F(DotCommand, EveryReferenceCaseDrawsParsesAndRenders) {
  std::vector<std::filesystem::path> cases;
  for (const auto& entry : std::filesystem::directory_iterator(kReference))
    if (entry.path().extension() == ".json") cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());
  ASSERT_GE(cases.size(), 90u);
  for (const std::filesystem::path& c : cases) {
    // A case of ops that are not differentiable (argmax alone) records no op: only its inputs
    // and outputs are drawn, and it has no backward pass.
    const dg::Case parsed = dg::read_case(c.string());
    const bool differentiable = std::any_of(parsed.inputs.begin(), parsed.inputs.end(),
                                            [](const auto& in) { return in.requires_grad; });
    for (const std::string options : {"", "--backward --stats"}) {
      SCOPED_TRACE(c.filename().string() + " " + options);
      const std::string out =
          path(c.stem().string() + (options.empty() ? "" : "_backward") + ".dot");
      const ToolRun run = run_dot_tool(c.string() + " " + options + " -o " + out);
      ASSERT_EQ(run.status, 0) << run.output;
      const std::string dot = read(out);
      ParsedGraph g = parse(dot);
      ASSERT_TRUE(g) << dot;
      EXPECT_EQ(attr(g.get(), "label").rfind(c.stem().string(), 0), 0u);  // titled with the case
      EXPECT_GE(agnnodes(g.get()), differentiable ? 3 : 2);
      const std::string svg = dg::render_dot(dot, "svg");
      EXPECT_NE(svg.find("</svg>"), std::string::npos);
      if (!options.empty() && differentiable) {
        EXPECT_NE(dot.find("grad of "), std::string::npos);
      }
    }
  }
}

TEST_F(DotCommand, BackwardOfACaseShowsWhoseVjpEachOpIs) {
  const ToolRun run =
      run_dot_tool(kReference + "/net_segnet_encoder_decoder.json --backward=merged");
  ASSERT_EQ(run.status, 0) << run.output;
  ParsedGraph g = parse(run.output);
  ASSERT_TRUE(g) << run.output;
  // conv2d's input gradient is a conv_transpose2d; the file's names label the edges.
  EXPECT_EQ(nodes_labelled(g.get(), "conv_transpose2d k3 p1\\nVJP of conv2d").size(), 1u);
  EXPECT_EQ(nodes_labelled(g.get(), "grad of w1").size(), 1u);
  EXPECT_NE(run.output.find("label=\"r1\\n[2,4,7,6] f64\"]"), std::string::npos) << run.output;
}

TEST_F(DotCommand, OutputFormatsAndStandardOutput) {
  const std::string relu = kReference + "/relu_2d.json";
  const ToolRun text = run_dot_tool(relu);
  ASSERT_EQ(text.status, 0) << text.output;
  EXPECT_EQ(text.output.rfind("digraph deltagraph {", 0), 0u);
  ASSERT_EQ(run_dot_tool(relu + " -o " + path("relu.dot")).status, 0);
  EXPECT_EQ(read(path("relu.dot")), text.output);
  ASSERT_EQ(run_dot_tool(relu + " -o " + path("relu.svg")).status, 0);
  EXPECT_NE(read(path("relu.svg")).find("</svg>"), std::string::npos);
  ASSERT_EQ(run_dot_tool(relu + " --stats -o " + path("relu.png")).status, 0);
  EXPECT_EQ(read(path("relu.png")).substr(0, 4), "\x89PNG");
}

TEST_F(DotCommand, MistakesAreReportedWithUsage) {
  ToolRun run = run_dot_tool("");
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.output.find("no case or model file given"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("usage: dg dot"), std::string::npos);
  run = run_dot_tool(kReference + "/relu_2d.json --colour");
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.output.find("unknown option '--colour'"), std::string::npos) << run.output;
  run = run_dot_tool(path("missing.json"));
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.output.find("missing.json"), std::string::npos) << run.output;
  run = run_dot_tool(kReference + "/relu_2d.json -o " + path("relu.gif"));
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.output.find("use .svg or .png"), std::string::npos) << run.output;
  run = run_dot_tool(kReference + "/relu_2d.json -o");
  EXPECT_EQ(run.status, 2);
  EXPECT_NE(run.output.find("-o needs a value"), std::string::npos) << run.output;
  run = run_dot_tool("--help");
  EXPECT_EQ(run.status, 0);
  EXPECT_NE(run.output.find("usage: dg dot"), std::string::npos) << run.output;
}

}  // namespace
