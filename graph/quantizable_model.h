#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/shape.h"
#include "graph/executor.h"
#include "nn/module.h"
#include "quant/qconfig.h"

namespace qat::graph {

// A float model made trainable with quantization-aware training, through the original tool's
// two front doors (DESIGN.md, "The pipeline"):
//   // one call: trace, fuse, prepare_qat
//   auto qm = std::make_shared<QuantizableModel>(model, Shape{4, 3, 32, 32},
//                                                quant::QConfig::preset("tensorrt"),
//                                                /*black_list=*/{"fc"});
//   // manual: the same steps, one at a time
//   auto qm = QuantizableModel::manual(model, {4, 3, 32, 32});
//   qm->fuse_model();
//   qm->set_qconfig(quant::QConfig::preset("tensorrt"));
//   qm->prepare_qat(/*black_list=*/{"fc"});
// forward() runs the current graph (traced, then fused, then prepared). The model's parameters
// and modules are shared, never copied: state_dict() is the model's (torchvision keys, same
// tensors, same order), then, once prepared, the quant state under node names
// ("layer1.0.conv1.weight_fake_quant.scale"; see GraphModule). Model-wide switches
// (quant::freeze_bn_stats, quant::disable_observer, ...) reach the quant modules through
// named_modules(). Print the graph with graph().to_string().
class QuantizableModel : public GraphModule {
 public:
  // trace(*model, input_shape), fuse_model(), set_qconfig(qconfig), prepare_qat(black_list).
  QuantizableModel(std::shared_ptr<nn::Module> model, Shape input_shape, quant::QConfig qconfig,
                   std::vector<std::string> black_list = {});

  // Only traces; the manual steps follow.
  static std::shared_ptr<QuantizableModel> manual(std::shared_ptr<nn::Module> model,
                                                  Shape input_shape);

  // fuse() on the traced graph (PyTorch's fuse_modules, with the patterns found). Once, before
  // prepare_qat().
  void fuse_model();
  // Checks `qconfig` (QConfig::validate()); any time before prepare_qat().
  void set_qconfig(quant::QConfig qconfig);
  // graph::prepare_qat() on the fused graph with the qconfig set; once, after fuse_model() and
  // set_qconfig(). The quant state joins state_dict() here.
  void prepare_qat(const std::vector<std::string>& black_list = {});

  bool is_fused() const { return fused_; }
  bool is_prepared() const { return prepared_; }
  // The qconfig set by set_qconfig() (or the one-call constructor); nullopt before.
  const std::optional<quant::QConfig>& qconfig() const { return qconfig_; }

  std::string type_name() const override { return "QuantizableModel"; }

 private:
  QuantizableModel(std::shared_ptr<nn::Module> model, const Shape& input_shape);

  bool fused_ = false;
  bool prepared_ = false;
  std::optional<quant::QConfig> qconfig_;
};

}  // namespace qat::graph
