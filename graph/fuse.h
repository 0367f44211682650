#pragma once

#include "graph/graph.h"

namespace qat::graph {

// Fuses, wherever the graph has them (PyTorch's fuse_modules, with the patterns found instead
// of listed by the user):
//   Conv2d -> BatchNorm2d [-> activation]      FusedConv2d "ConvBn2d", "ConvBnReLU2d", ...
//   Conv2d -> activation                       FusedConv2d "ConvReLU2d", "ConvReLU6"
//   Linear -> activation                       FusedLinear "LinearReLU", "LinearReLU6"
// where the activation is a ReLU / ReLU6 module call or a functional relu, relu6 or
// clamp(0, 6) (GoogLeNet's BasicConv2d), and the BatchNorm2d is affine, tracks running stats
// and has the conv's output channels. A node is absorbed only when it is the one consumer of
// the value before it (a BN output that also feeds a residual add keeps its own ReLU node).
// Only the nn layers themselves match (not subclasses, whose forward may differ).
//
// The fused node keeps the conv's (linear's) name and inputs and takes the last absorbed
// node's output, so later nodes read it; the absorbed nodes disappear. Its module holds the
// original modules (graph/fused_modules.h) and computes exactly what they did; its op is the
// module's type_name() and an annotation lists what it absorbed:
//   "layer1.0.conv1: ConvBnReLU2d(maxpool) -> [1, 64, 8, 8]  # fused layer1.0.bn1, layer1.0.relu"
// Pure: `graph` is not modified, and the two graphs share the original modules.
Graph fuse(const Graph& graph);

}  // namespace qat::graph
