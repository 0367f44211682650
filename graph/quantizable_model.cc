#include "graph/quantizable_model.h"

#include <utility>

#include "core/check.h"
#include "graph/fuse.h"
#include "graph/prepare_qat.h"
#include "graph/trace.h"

namespace qat::graph {
namespace {

Graph checked_trace(const std::shared_ptr<nn::Module>& model, const Shape& input_shape) {
  QAT_CHECK(model != nullptr, "QuantizableModel: got a null model");
  return trace(*model, input_shape);
}

}  // namespace

QuantizableModel::QuantizableModel(std::shared_ptr<nn::Module> model, const Shape& input_shape)
    : GraphModule(model, checked_trace(model, input_shape)) {}

QuantizableModel::QuantizableModel(std::shared_ptr<nn::Module> model, Shape input_shape,
                                   quant::QConfig qconfig, std::vector<std::string> black_list)
    : QuantizableModel(std::move(model), input_shape) {
  fuse_model();
  set_qconfig(std::move(qconfig));
  prepare_qat(black_list);
}

std::shared_ptr<QuantizableModel> QuantizableModel::manual(std::shared_ptr<nn::Module> model,
                                                           Shape input_shape) {
  // The constructor is private, which std::make_shared cannot call.
  return std::shared_ptr<QuantizableModel>(new QuantizableModel(std::move(model), input_shape));
}

void QuantizableModel::fuse_model() {
  QAT_CHECK(!prepared_,
            "QuantizableModel::fuse_model: the model is already prepared "
            "(HINT: fuse_model() comes before prepare_qat())");
  QAT_CHECK(!fused_, "QuantizableModel::fuse_model: the model is already fused");
  set_graph(fuse(graph()));
  fused_ = true;
}

void QuantizableModel::set_qconfig(quant::QConfig qconfig) {
  QAT_CHECK(
      !prepared_, "QuantizableModel::set_qconfig: the model is already prepared with target '",
      quant::target_name(qconfig_->target), "' (HINT: set_qconfig() comes before prepare_qat())");
  qconfig.validate();
  qconfig_ = std::move(qconfig);
}

void QuantizableModel::prepare_qat(const std::vector<std::string>& black_list) {
  QAT_CHECK(!prepared_, "QuantizableModel::prepare_qat: the model is already prepared");
  QAT_CHECK(fused_,
            "QuantizableModel::prepare_qat: expected a fused model, got an unfused one "
            "(HINT: call fuse_model() first)");
  QAT_CHECK(qconfig_.has_value(),
            "QuantizableModel::prepare_qat: expected a qconfig, got none "
            "(HINT: call set_qconfig() first)");
  set_graph(graph::prepare_qat(graph(), *qconfig_, black_list));
  prepared_ = true;
}

}  // namespace qat::graph
