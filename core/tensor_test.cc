#include "core/tensor.h"

#include <gtest/gtest.h>

namespace qat {
namespace {

TEST(Tensor, FactoriesShapeAndDtype) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.dtype(), DType::kFloat32);
  EXPECT_EQ(t.data<float>()[23], 0.0f);
  Tensor l = Tensor::full({3}, 7, DType::kInt64);
  EXPECT_EQ(l.data<int64_t>()[2], 7);
  EXPECT_EQ(Tensor::scalar(2.5).item(), 2.5);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
}

TEST(Tensor, EveryDtypeRoundTripsThroughConversion) {
  for (DType d : {DType::kFloat32, DType::kFloat64, DType::kInt8, DType::kUInt8, DType::kInt32,
                  DType::kInt64}) {
    Tensor t = Tensor::arange(5, d);
    EXPECT_EQ(t.to(DType::kFloat64).to_vector<double>(), (std::vector<double>{0, 1, 2, 3, 4}))
        << dtype_name(d);
  }
  // float -> int truncates toward zero like a C cast
  Tensor f = Tensor::from_vector<float>({-1.7f, 2.9f}, {2});
  EXPECT_EQ(f.to(DType::kInt32).to_vector<int32_t>(), (std::vector<int32_t>{-1, 2}));
}

TEST(Tensor, HugeShapesThrowInsteadOfOverflowing) {
  EXPECT_THROW(Tensor::ones({int64_t{1} << 62}), Error);
  EXPECT_THROW(Tensor::empty({int64_t{1} << 40, int64_t{1} << 40}), Error);
  EXPECT_THROW(Tensor::empty({int64_t{1} << 61}, DType::kFloat64), Error);
}

TEST(Tensor, WrongDtypeAccessThrows) {
  Tensor t = Tensor::zeros({2});
  EXPECT_THROW(t.data<double>(), Error);
  EXPECT_THROW(Tensor().shape(), Error);
}

TEST(Tensor, ViewsShareStorageAndCopiesDoNot) {
  Tensor t = Tensor::arange(12);
  Tensor v = t.view({3, -1});
  EXPECT_EQ(v.shape(), (Shape{3, 4}));
  EXPECT_TRUE(v.shares_storage(t));
  v.data<float>()[0] = 42;
  EXPECT_EQ(t.data<float>()[0], 42);
  Tensor c = t.clone();
  c.data<float>()[0] = 1;
  EXPECT_EQ(t.data<float>()[0], 42);
  EXPECT_THROW(t.view({5, -1}), Error);
  EXPECT_THROW(t.view({-1, -1}), Error);
  Tensor rows = v.slice0(1, 2);
  EXPECT_EQ(rows.shape(), (Shape{2, 4}));
  EXPECT_EQ(rows.data<float>()[0], 4);
  EXPECT_THROW(v.slice0(2, 2), Error);
}

TEST(Tensor, InPlaceMethods) {
  Tensor a = Tensor::ones({4});
  Tensor b = Tensor::full({4}, 2);
  a.add_(b, 0.5).mul_(3);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>(4, 6.0f)));
  EXPECT_THROW(a.add_(Tensor::ones({3})), Error);
  a.copy_(Tensor::arange(4, DType::kInt64));
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{0, 1, 2, 3}));
  EXPECT_THROW(a.copy_(Tensor::ones({5})), Error);
}

TEST(Tensor, ResizeIsSeenByEveryHandle) {
  Tensor buffer = Tensor::ones({1});
  const Tensor alias = buffer;
  buffer.resize_({3});
  EXPECT_EQ(alias.shape(), (Shape{3}));
  buffer.fill_(2.0);
  EXPECT_EQ(alias.to_vector<float>(), (std::vector<float>{2, 2, 2}));
}

TEST(Tensor, RequiresGradOnlyOnFloatingLeaves) {
  Tensor t = Tensor::zeros({2});
  t.requires_grad_();
  EXPECT_TRUE(t.requires_grad());
  EXPECT_TRUE(t.is_leaf());
  Tensor i = Tensor::zeros({2}, DType::kInt64);
  EXPECT_THROW(i.requires_grad_(), Error);
}

}  // namespace
}  // namespace qat
