#include "core/ops/shape_ops.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>

#include "core/autograd.h"
#include "core/ops/elementwise.h"
#include "tests/testing/errors.h"
#include "tests/testing/compare.h"
#include "tests/testing/gradcheck.h"

namespace qat::ops {
namespace {

using qat::testing::error_of;

using testing::all_close;
using testing::gradcheck;
using testing::random_leaf;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

Tensor iota(const Shape& shape) { return Tensor::arange(shape_numel(shape)).view(shape); }

TEST(ShapeOps, ReshapeAndFlattenAreViews) {
  const Tensor x = random_leaf({2, 3, 4}, 1);
  const Tensor r = reshape(x, {4, -1});
  EXPECT_EQ(r.shape(), (Shape{4, 6}));
  EXPECT_TRUE(r.shares_storage(x));
  EXPECT_EQ(flatten(x).shape(), (Shape{2, 12}));
  EXPECT_EQ(flatten(x, 0).shape(), (Shape{24}));
  EXPECT_EQ(flatten(x, 0, 1).shape(), (Shape{6, 4}));
  EXPECT_EQ(flatten(x, -2, -1).shape(), (Shape{2, 12}));
  EXPECT_EQ(flatten(Tensor::scalar(3.0)).shape(), (Shape{1}));  // as torch.flatten
  EXPECT_TRUE(flatten(x).shares_storage(x));
}

TEST(ShapeOps, ReshapeAndFlattenGradcheck) {
  const Tensor x = random_leaf({2, 3, 4, 5}, 2);
  // mul by a broadcast weight so the gradient is not uniform
  const Tensor w = random_leaf({3, 20}, 3).detach();
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return mul(reshape(in[0], {2, 3, 20}), w);
      },
      {x}));
  EXPECT_TRUE(
      gradcheck([&](const std::vector<Tensor>& in) { return mul(flatten(in[0], 2), w); }, {x}));
}

TEST(ShapeOps, TransposeAndPermuteValues) {
  // torch.arange(6).reshape(2, 3).t() = [[0, 3], [1, 4], [2, 5]]
  EXPECT_EQ(transpose(iota({2, 3}), 0, 1).to_vector<float>(),
            (std::vector<float>{0, 3, 1, 4, 2, 5}));
  // torch.arange(24).reshape(2, 3, 4).permute(2, 0, 1)[1] = [[1, 5, 9], [13, 17, 21]]
  const Tensor p = permute(iota({2, 3, 4}), {2, 0, 1});
  EXPECT_EQ(p.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(p.to_vector<float>()[6], 1.0f);
  EXPECT_EQ(p.to_vector<float>()[10], 17.0f);
  EXPECT_EQ(permute(iota({2, 3, 4}), {-1, 0, 1}).to_vector<float>(), p.to_vector<float>());
}

TEST(ShapeOps, TransposeAndPermuteGradcheck) {
  const Tensor x = random_leaf({2, 3, 4, 5}, 4);
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return transpose(in[0], 1, -1); }, {x}));
  for (const std::vector<int64_t>& dims :
       {std::vector<int64_t>{0, 2, 3, 1}, {3, 1, 0, 2}, {0, 1, 3, 2}}) {
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& in) { return permute(in[0], dims); }, {x}))
        << shape_str(dims);
  }
}

TEST(ShapeOps, CatOfThreeAlongDim1) {
  const Tensor a = iota({2, 1, 2}), b = add(iota({2, 2, 2}), 10.0), c = add(iota({2, 3, 2}), 20.0);
  const Tensor y = cat({a, b, c}, 1);
  EXPECT_EQ(y.shape(), (Shape{2, 6, 2}));
  // torch.cat([a, b, c], 1)[0] = [[0, 1], [10, 11], [12, 13], [20, 21], [22, 23], [24, 25]]
  const std::vector<float> v = y.to_vector<float>();
  EXPECT_EQ(std::vector<float>(v.begin(), v.begin() + 12),
            (std::vector<float>{0, 1, 10, 11, 12, 13, 20, 21, 22, 23, 24, 25}));
  EXPECT_EQ(v[12], 2.0f);  // second row of a
}

TEST(ShapeOps, CatGradcheck) {
  const Tensor a = random_leaf({2, 1, 3, 5}, 5), b = random_leaf({2, 4, 3, 5}, 6);
  const Tensor c = random_leaf({2, 2, 3, 5}, 7);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return cat(in, 1); }, {a, b, c}));
  const Tensor d = random_leaf({2, 4, 3, 2}, 8);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& in) { return cat(in, -1); }, {b, d}));
  // A constant input (no requires_grad) mixes in without a gradient.
  const Tensor constant = random_leaf({2, 3, 3, 5}, 9).detach();
  EXPECT_TRUE(gradcheck(
      [&](const std::vector<Tensor>& in) {
        return cat({in[0], constant, in[1]}, 1);
      },
      {a, c}));
}

TEST(ShapeOps, SplitValuesAndGradcheck) {
  const std::vector<Tensor> pieces = split(iota({2, 5}), {2, 0, 3}, 1);
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0].to_vector<float>(), (std::vector<float>{0, 1, 5, 6}));
  EXPECT_EQ(pieces[1].shape(), (Shape{2, 0}));
  EXPECT_EQ(pieces[2].to_vector<float>(), (std::vector<float>{2, 3, 4, 7, 8, 9}));

  const Tensor x = random_leaf({3, 7, 2}, 10);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = split(in[0], {3, 1, 3}, 1);
        return cat({mul(p[2], 2.0), p[0], p[1]}, 1);
      },
      {x}));
}

// torch.chunk: ceil(size / chunks) per piece; the last one is smaller, and there may be fewer
// pieces than asked for.
TEST(ShapeOps, ChunkPieceSizesFollowTorch) {
  auto sizes = [](int64_t n, int64_t chunks) {
    std::vector<int64_t> s;
    for (const Tensor& p : chunk(Tensor::zeros({2, n}), chunks, 1)) s.push_back(p.size(1));
    return s;
  };
  EXPECT_EQ(sizes(5, 3), (std::vector<int64_t>{2, 2, 1}));
  EXPECT_EQ(sizes(6, 4), (std::vector<int64_t>{2, 2, 2}));
  EXPECT_EQ(sizes(6, 2), (std::vector<int64_t>{3, 3}));
  EXPECT_EQ(sizes(2, 5), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(sizes(0, 3), (std::vector<int64_t>{0, 0, 0}));
}

TEST(ShapeOps, ChunkUsingOnlySomeOutputs) {
  // Only the middle piece of [2, 2, 1] is used: the rest of the gradient is zero.
  Tensor x = Tensor::ones({2, 5}, DType::kFloat64);
  x.requires_grad_();
  sum(mul(chunk(x, 3, 1)[1], 3.0)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0, 3, 3, 0, 0, 0, 3, 3, 0}));

  const Tensor y = random_leaf({2, 7, 3}, 11);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = chunk(in[0], 3, 1);  // sizes 3, 3, 1
        return mul(p[2], p[2]);
      },
      {y}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& in) {
        std::vector<Tensor> p = chunk(in[0], 2, -1);  // sizes 2, 1
        return sub(p[0], p[1]);
      },
      {y}));
}

TEST(ShapeOps, ChannelShuffleMatchesViewTransposeView) {
  // torch: x.view(2, 3, 2, 1, 2).transpose(1, 2).contiguous().view(2, 6, 1, 2)
  const Tensor y = channel_shuffle(iota({2, 6, 1, 2}), 3);
  EXPECT_EQ(y.to_vector<float>(),
            (std::vector<float>{0,  1,  4,  5,  8,  9,  2,  3,  6,  7,  10, 11,
                                12, 13, 16, 17, 20, 21, 14, 15, 18, 19, 22, 23}));
  const Tensor x = random_leaf({2, 6, 3, 5}, 12);
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return channel_shuffle(in[0], 2); }, {x}));
  EXPECT_TRUE(
      gradcheck([](const std::vector<Tensor>& in) { return channel_shuffle(in[0], 3); }, {x}));
}

TEST(ShapeOps, ErrorsNameTheOpAndValues) {
  const Tensor x = Tensor::zeros({2, 3, 4});
  EXPECT_TRUE(contains(error_of([&] { reshape(x, {5, -1}); }), "is invalid for input"));
  EXPECT_TRUE(contains(error_of([&] { flatten(x, 2, 1); }), "flatten: start_dim 2 comes after"));
  EXPECT_TRUE(contains(error_of([&] { transpose(x, 0, 3); }),
                       "transpose: dim 3 out of range for a tensor of rank 3"));
  EXPECT_TRUE(contains(error_of([&] { permute(x, {0, 1}); }), "permute: expected 3 dims"));
  EXPECT_TRUE(contains(error_of([&] { permute(x, {0, 1, -2}); }), "permute: dim -2 repeats"));
  EXPECT_TRUE(contains(error_of([&] {
                         cat({x, Tensor::zeros({2, 3, 5})}, 1);
                       }),
                       "cat: tensor 1 has shape [2, 3, 5] but tensor 0 has [2, 3, 4]"));
  EXPECT_TRUE(contains(error_of([&] {
                         cat({x, Tensor::zeros({2, 3})}, 0);
                       }),
                       "cat: tensor 1 has shape [2, 3]"));
  EXPECT_TRUE(contains(error_of([&] {
                         cat({x, Tensor::zeros({2, 3, 4}, DType::kFloat64)}, 0);
                       }),
                       "cat: tensor 1 is float64 but tensor 0 is float32"));
  EXPECT_TRUE(contains(error_of([] { cat({}, 0); }), "cat: expected at least one tensor"));
  EXPECT_TRUE(contains(error_of([&] {
                         split(x, {1, 1}, 1);
                       }),
                       "split: sizes [1, 1] sum to 2 but dim 1 of [2, 3, 4] has size 3"));
  EXPECT_TRUE(contains(error_of([&] { split(x, {4, -1}, 1); }), "split: negative size"));
  EXPECT_TRUE(contains(error_of([&] { chunk(x, 0, 1); }), "chunk: chunks must be positive"));
  EXPECT_TRUE(contains(error_of([&] {
                         channel_shuffle(Tensor::zeros({1, 6, 2, 2}), 4);
                       }),
                       "channel_shuffle: channels 6 are not divisible by groups 4"));
  EXPECT_TRUE(contains(error_of([&] { channel_shuffle(x, 3); }),
                       "channel_shuffle: expected [N, C, H, W], got [2, 3, 4]"));
  EXPECT_TRUE(contains(error_of([&] {
                         channel_shuffle(Tensor::zeros({1, 6, 2, 2}), 0);
                       }),
                       "channel_shuffle: groups must be positive"));
}

TEST(ShapeOps, OutputsAreFreedWhenDropped) {
  const Tensor x = random_leaf({2, 4, 3, 2}, 13);
  const std::vector<std::function<Tensor()>> ops = {
      [&] { return reshape(x, {-1}); },   [&] { return flatten(x); },
      [&] { return transpose(x, 0, 1); }, [&] { return permute(x, {3, 2, 1, 0}); },
      [&] { return cat({x, x}, 2); },     [&] { return split(x, {1, 3}, 1)[1]; },
      [&] { return chunk(x, 2, 1)[0]; },  [&] { return channel_shuffle(x, 2); },
  };
  for (size_t i = 0; i < ops.size(); ++i) {
    std::weak_ptr<TensorImpl> watch;
    {
      const Tensor out = ops[i]();
      ASSERT_TRUE(out.requires_grad());
      watch = out.impl_ptr();
    }
    EXPECT_TRUE(watch.expired()) << "op " << i;
  }
}

}  // namespace
}  // namespace qat::ops
