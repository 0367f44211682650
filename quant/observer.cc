#include "quant/observer.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <tuple>

#include "core/kernels/elementwise.h"

namespace qat::quant {
namespace {

Tensor vector_tensor(const std::vector<float>& values, bool zero_dim) {
  if (zero_dim) return Tensor::scalar(values[0]);
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
}

// PyTorch prints a 0-d buffer as a float and a 1-d one as tensor([...]).
std::string repr(const Tensor& t) {
  if (t.dim() == 0) return nn::py_float(t.item());
  std::ostringstream os;
  os << "tensor([";
  const std::vector<double> values = t.to_vector<double>();
  for (size_t i = 0; i < values.size(); ++i) os << (i ? ", " : "") << nn::py_float(values[i]);
  os << "])";
  return os.str();
}

}  // namespace

ObserverBase::ObserverBase(const std::string& name, const ObserverOptions& options,
                           bool per_channel)
    : ch_axis_(per_channel ? options.ch_axis() : -1),
      averaging_constant_(options.averaging_constant()) {
  QAT_CHECK(quant::is_per_channel(options.qscheme()) == per_channel, name, ": expected a ",
            per_channel ? "per-channel" : "per-tensor", " qscheme, got ",
            qscheme_name(options.qscheme()));
  QAT_CHECK(!(is_symmetric(options.qscheme()) && options.reduce_range() &&
              options.dtype() == QDType::kQUInt8),
            name, ": cannot reduce range for symmetric quantization for quint8");
  QAT_CHECK(
      options.symmetric_scale() == SymmetricScale::kHalfRange || is_symmetric(options.qscheme()),
      name, ": symmetric_scale kQuantMax needs a symmetric qscheme, got ",
      qscheme_name(options.qscheme()));
  QAT_CHECK(std::isfinite(options.eps()) && options.eps() > 0, name, ": expected eps > 0, got ",
            options.eps());
  QAT_CHECK(averaging_constant_ > 0 && averaging_constant_ <= 1, name,
            ": expected 0 < averaging_constant <= 1, got ", averaging_constant_);
  rule_.dtype = options.dtype();
  rule_.qscheme = options.qscheme();
  std::tie(rule_.quant_min, rule_.quant_max) = calculate_qmin_qmax(
      options.quant_min(), options.quant_max(), options.dtype(), options.reduce_range());
  rule_.has_customized_qrange = options.quant_min().has_value();
  rule_.eps = options.eps();
  rule_.symmetric_scale = options.symmetric_scale();
  eps_ = register_buffer("eps", Tensor::full({1}, options.eps()));
  min_val_ = register_resizable_buffer("min_val",
                                       per_channel ? Tensor::empty({0}) : Tensor::scalar(INFINITY));
  max_val_ = register_resizable_buffer(
      "max_val", per_channel ? Tensor::empty({0}) : Tensor::scalar(-INFINITY));
}

QParamsRule ObserverBase::rule() const {
  QParamsRule rule = rule_;
  rule.eps = eps_.item();
  return rule;
}

std::pair<Tensor, Tensor> ObserverBase::calculate_qparams() const {
  return quant::calculate_qparams(min_val_, max_val_, rule());
}

void ObserverBase::set_min_max(const Tensor& min_val, const Tensor& max_val) {
  QAT_CHECK(min_val.shape() == max_val.shape(), type_name(),
            ".set_min_max: expected min_val and max_val of one shape, got ",
            shape_str(min_val.shape()), " and ", shape_str(max_val.shape()));
  if (is_per_channel()) {
    QAT_CHECK(min_val.dim() == 1, type_name(), ".set_min_max: expected [C] per channel, got ",
              shape_str(min_val.shape()));
  } else {
    QAT_CHECK(min_val.numel() == 1, type_name(),
              ".set_min_max: expected one element per tensor, got ", shape_str(min_val.shape()));
  }
  const std::vector<float> mins = min_val.to_vector<float>();
  const std::vector<float> maxs = max_val.to_vector<float>();
  for (size_t c = 0; c < mins.size(); ++c) {
    QAT_CHECK(mins[c] <= maxs[c], type_name(), ".set_min_max: expected min <= max, got ", mins[c],
              " > ", maxs[c]);
  }
  store(mins, maxs);
}

void ObserverBase::reset_min_max_vals() {
  if (is_per_channel()) {
    store({}, {});
  } else {
    store({INFINITY}, {-INFINITY});
  }
}

std::string ObserverBase::extra_repr() const {
  return "min_val=" + repr(min_val_) + ", max_val=" + repr(max_val_);
}

Tensor ObserverBase::forward_impl(const Tensor& input) {
  if (input.numel() == 0) return input;
  QAT_CHECK(is_floating(input.dtype()), type_name(), ": expected a float32 or float64 input, got ",
            dtype_name(input.dtype()));
  observe(input.detach().to(DType::kFloat32));
  return input;
}

void ObserverBase::update_min_max(const Tensor& x) {
  auto [mins, maxs] = aminmax(x);
  if (observed()) {
    const std::vector<float> old_min = min_val_.to_vector<float>();
    const std::vector<float> old_max = max_val_.to_vector<float>();
    for (size_t c = 0; c < mins.size(); ++c) {
      mins[c] = std::min(mins[c], old_min[c]);
      maxs[c] = std::max(maxs[c], old_max[c]);
    }
  }
  store(mins, maxs);
}

void ObserverBase::update_moving_average(const Tensor& x) {
  auto [mins, maxs] = aminmax(x);
  if (observed()) {
    // PyTorch: min_val + c * (min_cur - min_val) on float32 tensors, c rounded to float32.
    // (Separate multiply and add: builds with FMA contraction would change the last bit.)
    const float c = static_cast<float>(averaging_constant_);
    const std::vector<float> old_min = min_val_.to_vector<float>();
    const std::vector<float> old_max = max_val_.to_vector<float>();
    for (size_t k = 0; k < mins.size(); ++k) {
      mins[k] = old_min[k] + c * (mins[k] - old_min[k]);
      maxs[k] = old_max[k] + c * (maxs[k] - old_max[k]);
    }
  }
  store(mins, maxs);
}

std::pair<std::vector<float>, std::vector<float>> ObserverBase::aminmax(const Tensor& x) const {
  const float* p = x.data<float>();
  if (!is_per_channel()) {
    std::vector<float> mins(1), maxs(1);
    kernels::min_max(p, 1, 1, x.numel(), mins.data(), maxs.data());
    return {mins, maxs};
  }
  const int64_t rank = x.dim();
  QAT_CHECK(-rank <= ch_axis_ && ch_axis_ < rank, type_name(), ": ch_axis ", ch_axis_,
            " out of range for an input of shape ", shape_str(x.shape()));
  const int64_t axis = normalize_dim(ch_axis_, rank);
  const int64_t channels = x.size(axis);
  QAT_CHECK(!observed() || min_val_.numel() == channels, type_name(), ": expected ",
            min_val_.numel(), " channels along dim ", ch_axis_, " as before, got input ",
            shape_str(x.shape()));
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.size(d);
  for (int64_t d = axis + 1; d < rank; ++d) inner *= x.size(d);
  std::vector<float> mins(channels), maxs(channels);
  kernels::min_max(p, outer, channels, inner, mins.data(), maxs.data());
  return {mins, maxs};
}

bool ObserverBase::observed() const {
  if (is_per_channel()) return min_val_.numel() > 0;
  return !(min_val_.item() == INFINITY && max_val_.item() == -INFINITY);
}

void ObserverBase::store(const std::vector<float>& min_val, const std::vector<float>& max_val) {
  const bool zero_dim = !is_per_channel();
  const Tensor mins = vector_tensor(min_val, zero_dim), maxs = vector_tensor(max_val, zero_dim);
  Tensor(min_val_).resize_(mins.shape());
  Tensor(max_val_).resize_(maxs.shape());
  min_val_.copy_(mins);
  max_val_.copy_(maxs);
}

MinMaxObserver::MinMaxObserver(const ObserverOptions& options)
    : MinMaxObserver("MinMaxObserver", options) {}

MinMaxObserver::MinMaxObserver(const std::string& name, const ObserverOptions& options)
    : ObserverBase(name, options, /*per_channel=*/false) {}

void MinMaxObserver::observe(const Tensor& x) { update_min_max(x); }

MovingAverageMinMaxObserver::MovingAverageMinMaxObserver(const ObserverOptions& options)
    : MinMaxObserver("MovingAverageMinMaxObserver", options) {}

void MovingAverageMinMaxObserver::observe(const Tensor& x) { update_moving_average(x); }

PerChannelMinMaxObserver::PerChannelMinMaxObserver(const ObserverOptions& options)
    : PerChannelMinMaxObserver("PerChannelMinMaxObserver", options) {}

PerChannelMinMaxObserver::PerChannelMinMaxObserver(const std::string& name,
                                                   const ObserverOptions& options)
    : ObserverBase(name, options, /*per_channel=*/true) {}

void PerChannelMinMaxObserver::observe(const Tensor& x) { update_min_max(x); }

MovingAveragePerChannelMinMaxObserver::MovingAveragePerChannelMinMaxObserver(
    const ObserverOptions& options)
    : PerChannelMinMaxObserver("MovingAveragePerChannelMinMaxObserver", options) {}

void MovingAveragePerChannelMinMaxObserver::observe(const Tensor& x) { update_moving_average(x); }

}  // namespace qat::quant
