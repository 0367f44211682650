#include "graph/graph.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "nn/activation.h"

namespace qat::graph {
namespace {

GraphNode make_node(const std::string& name, NodeKind kind, const std::string& op,
                    std::vector<Value> inputs, std::vector<Shape> output_shapes) {
  GraphNode node;
  node.name = name;
  node.kind = kind;
  node.op = op;
  node.inputs = std::move(inputs);
  node.output_shapes = std::move(output_shapes);
  return node;
}

// input -> relu (module) -> chunk -> cat(chunk:1, chunk:0) -> output
Graph small_graph() {
  Graph g;
  g.add_node(make_node("input", NodeKind::kInput, "input", {}, {{2, 4}}));
  GraphNode relu = make_node("relu", NodeKind::kModule, "ReLU", {{0, 0}}, {{2, 4}});
  relu.module = std::make_shared<nn::ReLU>();
  g.add_node(relu);
  GraphNode chunk = make_node("chunk", NodeKind::kFunction, "chunk", {{1, 0}}, {{2, 2}, {2, 2}});
  chunk.attrs = {{"chunks", 2}, {"dim", 1}};
  g.add_node(chunk);
  GraphNode cat = make_node("cat", NodeKind::kFunction, "cat", {{2, 1}, {2, 0}}, {{2, 4}});
  cat.attrs = {{"dim", 1}};
  cat.annotations = {"act: int8", "shared scale"};
  g.add_node(cat);
  g.add_node(make_node("output", NodeKind::kOutput, "output", {{3, 0}}, {}));
  return g;
}

TEST(Graph, ToStringPrintsOneLinePerNode) {
  EXPECT_EQ(small_graph().to_string(),
            "input: input -> [2, 4]\n"
            "relu: ReLU(input) -> [2, 4]\n"
            "chunk: chunk(relu) -> [2, 2], [2, 2]  {chunks=2, dim=1}\n"
            "cat: cat(chunk:1, chunk:0) -> [2, 4]  {dim=1}  # act: int8; shared scale\n"
            "output: output(cat)\n");
}

TEST(Graph, FindsNodesAndUsers) {
  const Graph g = small_graph();
  EXPECT_EQ(g.find("cat"), 3);
  EXPECT_EQ(g.find("nope"), -1);
  EXPECT_EQ(g.node("chunk").op, "chunk");
  EXPECT_THROW(g.node("nope"), Error);
  EXPECT_EQ(g.input_node(), 0);
  EXPECT_EQ(g.output_node(), 4);
  EXPECT_EQ(g.users({2, 1}), std::vector<int>{3});
  EXPECT_EQ(g.use_count({1, 0}), 1);
  EXPECT_EQ(g.use_count({4, 0}), 0);
  EXPECT_EQ(g.value_name({2, 1}), "chunk:1");
  EXPECT_EQ(g.value_name({1, 0}), "relu");
  EXPECT_NO_THROW(g.validate());
}

// The message of the qat::Error that `fn` throws ("" if none).
template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Graph, AddNodeRejectsBrokenNodes) {
  Graph g = small_graph();
  EXPECT_NE(error_of([&] {
              g.add_node(make_node("cat", NodeKind::kFunction, "add", {}, {{1}}));
            }).find("node name 'cat' is used twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              g.add_node(make_node("late", NodeKind::kFunction, "relu", {{7, 0}}, {{1}}));
            }).find("not an earlier node"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              g.add_node(make_node("third", NodeKind::kFunction, "relu", {{2, 2}}, {{1}}));
            }).find("reads output 2 of 'chunk', which has 2 output(s)"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              g.add_node(make_node("m", NodeKind::kModule, "ReLU", {{1, 0}}, {{2, 4}}));
            }).find("module node 'm' has no module"),
            std::string::npos);
  EXPECT_EQ(g.nodes.size(), 5u);  // nothing was added
}

TEST(Graph, ValidateWantsOneInputAndOneOutput) {
  Graph g = small_graph();
  g.nodes.pop_back();
  EXPECT_NE(error_of([&] { g.validate(); }).find("one input and one output node, got 1 and 0"),
            std::string::npos);
  EXPECT_THROW(g.output_node(), Error);
}

}  // namespace
}  // namespace qat::graph
