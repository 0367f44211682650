#include "quant/qat_module.h"

#include "core/ops/elementwise.h"

namespace qat::quant {
namespace {

// Calls fn(fq) for every FakeQuantize under root (root included).
template <class Fn>
void for_each_fake_quantize(nn::Module& root, Fn&& fn) {
  for (const auto& entry : root.named_modules()) {
    if (auto* fq = dynamic_cast<FakeQuantize*>(entry.second.get())) fn(*fq);
  }
}

}  // namespace

QatModule::QatModule(const QConfig& qconfig, const QatModuleOptions& options)
    : qconfig_(qconfig), options_(options) {
  qconfig_.validate();
  weight_fake_quant_ = register_module("weight_fake_quant", qconfig_.weight.make_fake_quantize());
  if (options_.quantize_output()) {
    activation_post_process_ =
        register_module("activation_post_process", qconfig_.activation.make_fake_quantize());
  }
}

Tensor QatModule::finish_output(const Tensor& y) {
  Tensor out = y;
  switch (options_.activation()) {
    case FusedActivation::kNone:
      break;
    case FusedActivation::kReLU:
      out = ops::relu(out);
      break;
    case FusedActivation::kReLU6:
      out = ops::relu6(out);
      break;
  }
  return activation_post_process_ ? activation_post_process_->forward(out) : out;
}

std::string QatModule::fused_type_name(const std::string& base, const std::string& suffix) const {
  switch (options_.activation()) {
    case FusedActivation::kReLU:
      return base + "ReLU" + suffix;
    case FusedActivation::kReLU6:
      return base + "ReLU6";
    case FusedActivation::kNone:
      break;
  }
  return base + suffix;
}

void enable_observer(nn::Module& root, bool enabled) {
  for_each_fake_quantize(root, [enabled](FakeQuantize& fq) { fq.enable_observer(enabled); });
}

void disable_observer(nn::Module& root) { enable_observer(root, false); }

void enable_fake_quant(nn::Module& root, bool enabled) {
  for_each_fake_quantize(root, [enabled](FakeQuantize& fq) { fq.enable_fake_quant(enabled); });
}

void disable_fake_quant(nn::Module& root) { enable_fake_quant(root, false); }

}  // namespace qat::quant
