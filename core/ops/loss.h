#pragma once

#include "core/random.h"
#include "core/tensor.h"

namespace qat::ops {

// Numerically stable log(softmax(x)) along dim.
Tensor log_softmax(const Tensor& x, int64_t dim);

// torch.nn.functional.cross_entropy with reduction='mean'.
// logits: [N, C] float, targets: [N] int64 class indices in [0, C).
// label_smoothing eps: target distribution (1 - eps) * one_hot + eps / C, i.e.
// loss = (1 - eps) * nll + eps * mean_c(-log_softmax). No ignore_index: every target is checked.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, double label_smoothing = 0.0);

// Inverted dropout as PyTorch: in training zeroes each element with probability p and scales the
// rest by 1 / (1 - p); returns x itself when !training or p == 0. p must be in [0, 1). The mask
// is drawn serially from `gen` and reused by backward.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

}  // namespace qat::ops
