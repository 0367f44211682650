#include "quant/fake_quantize.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "core/autograd.h"
#include "core/ops/fake_quant.h"

namespace qat::quant {
namespace {

// PyTorch's repr of a small 1-d buffer, e.g. "tensor([1], dtype=torch.uint8)".
std::string repr(const Tensor& t) {
  std::ostringstream os;
  os << "tensor([";
  const std::vector<double> values = t.to_vector<double>();
  for (size_t i = 0; i < values.size(); ++i) {
    os << (i ? ", " : "");
    if (is_floating(t.dtype())) {
      os << nn::py_float(values[i]);
    } else {
      os << static_cast<int64_t>(values[i]);
    }
  }
  os << "]";
  if (t.dtype() == DType::kUInt8) os << ", dtype=torch.uint8";
  if (t.dtype() == DType::kInt32) os << ", dtype=torch.int32";
  os << ")";
  return os.str();
}

}  // namespace

FakeQuantize::FakeQuantize(std::shared_ptr<ObserverBase> observer,
                           const FakeQuantizeOptions& options)
    : options_(options), observer_(std::move(observer)) {
  QAT_CHECK(observer_ != nullptr, "FakeQuantize: got a null observer");
  if (options_.learnable_scale()) scale_ = register_resizable_parameter("scale", Tensor::ones({1}));
  fake_quant_enabled_ = register_buffer("fake_quant_enabled", Tensor::ones({1}, DType::kUInt8));
  observer_enabled_ = register_buffer("observer_enabled", Tensor::ones({1}, DType::kUInt8));
  if (!options_.learnable_scale()) scale_ = register_resizable_buffer("scale", Tensor::ones({1}));
  zero_point_ = register_resizable_buffer("zero_point", Tensor::zeros({1}, DType::kInt32));
  register_module("activation_post_process", observer_);
}

void FakeQuantize::enable_observer(bool enabled) { observer_enabled_.fill_(enabled ? 1 : 0); }

void FakeQuantize::enable_fake_quant(bool enabled) { fake_quant_enabled_.fill_(enabled ? 1 : 0); }

bool FakeQuantize::observer_enabled() const { return observer_enabled_.item() == 1; }

bool FakeQuantize::fake_quant_enabled() const { return fake_quant_enabled_.item() == 1; }

std::pair<Tensor, Tensor> FakeQuantize::calculate_qparams() const {
  return observer_->calculate_qparams();
}

void FakeQuantize::update_qparams() {
  const auto [scale, zero_point] = observer_->calculate_qparams();
  Tensor(scale_).resize_(scale.shape());
  Tensor(zero_point_).resize_(zero_point.shape());
  scale_.copy_(scale);
  zero_point_.copy_(zero_point);
}

QParams FakeQuantize::qparams() const {
  QParams qp = qparams_view();
  qp.scale = qp.scale.detach().clone();
  qp.zero_point = qp.zero_point.clone();
  return qp;
}

std::string FakeQuantize::extra_repr() const {
  std::ostringstream os;
  os << "fake_quant_enabled=" << repr(fake_quant_enabled_)
     << ", observer_enabled=" << repr(observer_enabled_) << ", quant_min=" << quant_min()
     << ", quant_max=" << quant_max() << ", dtype=" << qdtype_name(dtype())
     << ", qscheme=" << qscheme_name(qscheme()) << ", ch_axis=" << ch_axis()
     << ", scale=" << repr(scale_) << ", zero_point=" << repr(zero_point_)
     << ", rounding=" << rounding_mode_name(options_.rounding());
  if (options_.learnable_scale()) os << ", learnable_scale=True";
  return os.str();
}

Tensor FakeQuantize::forward_impl(const Tensor& input) {
  if (observer_enabled()) {
    observer_->forward(input.detach());
    update_qparams();
  } else if (options_.learnable_scale()) {
    // As _LearnableFakeQuantize: keep the trained scale positive.
    const float eps = static_cast<float>(observer_->rule().eps);
    float* s = scale_.data<float>();
    for (int64_t c = 0; c < scale_.numel(); ++c) s[c] = std::max(s[c], eps);
  }
  if (!fake_quant_enabled()) return input;
  if (!options_.learnable_scale()) return fake_quantize(input, qparams_view());
  // LSQ. Symmetric schemes pin the zero point at 0 (PyTorch zeroes it before every call).
  if (is_symmetric(qscheme())) zero_point_.zero_();
  const double grad_factor =
      options_.use_grad_scaling()
          ? 1.0 / std::sqrt(static_cast<double>(input.numel()) * static_cast<double>(quant_max()))
          : 1.0;
  if (is_per_channel()) {
    return ops::fake_quantize_lsq_per_channel(input, scale_, zero_point_, ch_axis(), quant_min(),
                                              quant_max(), grad_factor, options_.rounding());
  }
  return ops::fake_quantize_lsq_per_tensor(input, scale_, zero_point_, quant_min(), quant_max(),
                                           grad_factor, options_.rounding());
}

std::string FakeQuantize::scheme() const {
  const auto strip = [](const std::string& name) { return name.substr(name.find('.') + 1); };
  std::string out = strip(qdtype_name(dtype())) + " " + strip(qscheme_name(qscheme()));
  if (is_per_channel()) out += "(axis=" + std::to_string(ch_axis()) + ")";
  return out + " [" + std::to_string(quant_min()) + ", " + std::to_string(quant_max()) + "] " +
         rounding_mode_name(options_.rounding());
}

QParams FakeQuantize::qparams_view() const {
  QParams qp;
  qp.scale = scale_;
  qp.zero_point = zero_point_;
  if (is_per_channel()) qp.axis = ch_axis();
  qp.quant_min = quant_min();
  qp.quant_max = quant_max();
  qp.rounding = options_.rounding();
  return qp;
}

}  // namespace qat::quant
