#include "nn/init.h"

#include <cmath>
#include <vector>

namespace qat::nn::init {
namespace {

double kaiming_std(const Tensor& tensor, double a, FanMode mode, Nonlinearity nonlinearity) {
  const auto [fan_in, fan_out] = calculate_fan_in_and_fan_out(tensor);
  const int64_t fan = mode == FanMode::kFanIn ? fan_in : fan_out;
  return calculate_gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
}

}  // namespace

double calculate_gain(Nonlinearity nonlinearity, std::optional<double> param) {
  switch (nonlinearity) {
    case Nonlinearity::kLinear:
    case Nonlinearity::kConv2d:
    case Nonlinearity::kSigmoid:
      return 1.0;
    case Nonlinearity::kTanh:
      return 5.0 / 3.0;
    case Nonlinearity::kReLU:
      return std::sqrt(2.0);
    case Nonlinearity::kLeakyReLU: {
      const double slope = param.value_or(0.01);
      return std::sqrt(2.0 / (1.0 + slope * slope));
    }
    case Nonlinearity::kSELU:
      return 3.0 / 4.0;
  }
  QAT_CHECK(false, "calculate_gain: unknown nonlinearity");
  return 0.0;
}

std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor) {
  QAT_CHECK(tensor.dim() >= 2,
            "calculate_fan_in_and_fan_out: fan in and fan out need a tensor with at least 2 "
            "dimensions, got ",
            shape_str(tensor.shape()));
  int64_t receptive_field = 1;
  for (int64_t d = 2; d < tensor.dim(); ++d) receptive_field *= tensor.size(d);
  return {tensor.size(1) * receptive_field, tensor.size(0) * receptive_field};
}

Tensor& uniform_(Tensor& tensor, double a, double b, Generator& gen) {
  return qat::uniform_(tensor, a, b, gen);
}

Tensor& normal_(Tensor& tensor, double mean, double std, Generator& gen) {
  return qat::normal_(tensor, mean, std, gen);
}

Tensor& trunc_normal_(Tensor& tensor, double mean, double std, double a, double b, Generator& gen) {
  QAT_CHECK(is_floating(tensor.dtype()), "trunc_normal_: expected a floating tensor, got ",
            dtype_name(tensor.dtype()));
  QAT_CHECK(std > 0, "trunc_normal_: expected std > 0, got ", std);
  QAT_CHECK(a < b, "trunc_normal_: expected a < b, got a=", a, ", b=", b);
  const auto normal_cdf = [&](double x) {
    return 0.5 * std::erfc((mean - x) / (std * std::sqrt(2.0)));
  };
  const double mass = normal_cdf(b) - normal_cdf(a);
  QAT_CHECK(mass >= 1e-4, "trunc_normal_: [", a, ", ", b, "] holds only ", mass,
            " of the mass of N(", mean, ", ", std, "^2); rejection sampling would not finish");
  // Rejection keeps the exact truncated distribution (PyTorch inverts the CDF instead).
  std::vector<double> values(tensor.numel());
  for (double& v : values) {
    do {
      v = gen.normal(mean, std);
    } while (v < a || v > b);
  }
  return tensor.copy_(Tensor::from_vector(values, tensor.shape()));
}

Tensor& constant_(Tensor& tensor, double value) { return tensor.fill_(value); }
Tensor& zeros_(Tensor& tensor) { return tensor.fill_(0.0); }
Tensor& ones_(Tensor& tensor) { return tensor.fill_(1.0); }

Tensor& kaiming_uniform_(Tensor& tensor, double a, FanMode mode, Nonlinearity nonlinearity,
                         Generator& gen) {
  if (tensor.numel() == 0) return tensor;  // PyTorch: a no-op on zero-element tensors
  const double bound = std::sqrt(3.0) * kaiming_std(tensor, a, mode, nonlinearity);
  return qat::uniform_(tensor, -bound, bound, gen);
}

Tensor& kaiming_normal_(Tensor& tensor, double a, FanMode mode, Nonlinearity nonlinearity,
                        Generator& gen) {
  if (tensor.numel() == 0) return tensor;
  return qat::normal_(tensor, 0.0, kaiming_std(tensor, a, mode, nonlinearity), gen);
}

}  // namespace qat::nn::init
