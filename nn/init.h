#pragma once

#include <cstdint>
#include <optional>
#include <utility>

#include "core/random.h"
#include "core/tensor.h"

// In-place initializers with the formulas of torch.nn.init (see its docs). They fill float32 or
// float64 tensors without recording autograd history. The random streams differ from PyTorch's;
// the distributions match. Call uniform_/normal_ qualified (init::uniform_): argument-dependent
// lookup also finds qat::uniform_ from core/random.h.
namespace qat::nn::init {

enum class Nonlinearity { kLinear, kConv2d, kSigmoid, kTanh, kReLU, kLeakyReLU, kSELU };
enum class FanMode { kFanIn, kFanOut };

// torch.nn.init.calculate_gain. `param` is leaky_relu's negative slope (default 0.01).
double calculate_gain(Nonlinearity nonlinearity, std::optional<double> param = std::nullopt);

// {fan_in, fan_out} of a weight [out, in, *kernel]: in * prod(kernel), out * prod(kernel).
std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& tensor);

Tensor& uniform_(Tensor& tensor, double a = 0.0, double b = 1.0,
                 Generator& gen = default_generator());
Tensor& normal_(Tensor& tensor, double mean = 0.0, double std = 1.0,
                Generator& gen = default_generator());
// N(mean, std) restricted to [a, b]; a and b are absolute bounds, not multiples of std.
// Draws by rejection, so [a, b] must hold at least 1e-4 of the normal's probability mass.
// torchvision GoogLeNet initializes conv and linear weights with trunc_normal_(w, 0, 0.01, -2, 2).
Tensor& trunc_normal_(Tensor& tensor, double mean = 0.0, double std = 1.0, double a = -2.0,
                      double b = 2.0, Generator& gen = default_generator());
Tensor& constant_(Tensor& tensor, double value);
Tensor& zeros_(Tensor& tensor);
Tensor& ones_(Tensor& tensor);

// He et al. 2015: std = gain(nonlinearity, a) / sqrt(fan). Uniform uses bound = sqrt(3) * std.
// Conv2d/Linear default init is kaiming_uniform_(w, a = sqrt(5)), i.e. U(+-1/sqrt(fan_in)).
Tensor& kaiming_uniform_(Tensor& tensor, double a = 0.0, FanMode mode = FanMode::kFanIn,
                         Nonlinearity nonlinearity = Nonlinearity::kLeakyReLU,
                         Generator& gen = default_generator());
Tensor& kaiming_normal_(Tensor& tensor, double a = 0.0, FanMode mode = FanMode::kFanIn,
                        Nonlinearity nonlinearity = Nonlinearity::kLeakyReLU,
                        Generator& gen = default_generator());

}  // namespace qat::nn::init
