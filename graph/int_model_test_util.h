#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "graph/int_model.h"

// Hand-built integer-model nodes for the simulator tests (header-only, listed in their srcs).
namespace qat::graph::test_util {

// A node `name` of `op` reading `inputs`, with one output of `shape` and blob scale `scale`.
inline IntNode make_node(const std::string& name, const std::string& op,
                         std::vector<Value> inputs, const Shape& shape,
                         std::optional<float> scale) {
  IntNode node;
  node.name = name;
  node.op = op;
  node.inputs = std::move(inputs);
  node.output_shapes = {shape};
  node.output_scales = {scale};
  return node;
}

}  // namespace qat::graph::test_util
