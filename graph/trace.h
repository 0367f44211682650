#pragma once

#include "core/shape.h"
#include "graph/graph.h"
#include "nn/module.h"

namespace qat::graph {

// Runs model.forward() once on a random input of `input_shape`, without autograd, and records
// what it did as a Graph (torch.fx's symbolic_trace, but by running the model):
//   * a kModule node for every call of a leaf module (one with no registered children:
//     Conv2d, BatchNorm2d, ReLU, MaxPool2d, Linear, Dropout, ...), named by its module path,
//     with "_1", "_2", ... for repeated calls. Containers (Sequential, BasicBlock, the model)
//     are transparent; the model itself is always traced through.
//   * a kFunction node for every core/ops call made outside leaf modules (ops::add in a
//     residual block, ops::cat, ops::flatten, GoogLeNet's ops::relu), named
//     "<enclosing module path>.<op>" and carrying the op's attributes.
// Tensors are matched by identity, so every tensor a recorded call reads must come from the
// traced input or an earlier recorded call. Anything else -- a parameter or constant used by a
// functional op, or a tensor made by a Tensor method such as view() -- is an error naming the
// node: the graph would not own it, so passes could not quantize it and state_dict would not
// save it. Move such tensors into a leaf module, and use ops::reshape over Tensor::view.
// The model runs in its current train/eval mode; its buffers (BatchNorm statistics) and the
// default random generator are restored afterwards, so tracing leaves the model unchanged.
// Control flow is frozen at trace time, as in torch.fx: a branch on is_training() or on the
// input shape takes the path of the traced call. An op that returns its input unchanged
// (eval-mode dropout, Identity) still becomes a node, and later uses of that tensor read the
// node's output. The model must be held by a std::shared_ptr (for its module paths).
Graph trace(nn::Module& model, const Shape& input_shape);

}  // namespace qat::graph
