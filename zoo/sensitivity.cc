#include "zoo/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <utility>

#include "core/check.h"
#include "graph/fuse.h"
#include "graph/prepare_qat.h"
#include "graph/trace.h"
#include "quant/fake_quantize.h"
#include "quant/qat_module.h"

namespace qat::zoo {
namespace {

// A quantizer of a prepared graph: its name (as quantizers() names it) and what reads it (the
// readers of a FakeQuantize node; "" for a QAT module's own), so that a new quantizer under the
// same name (a black-listed node's output quantized for its readers) is not mistaken for it.
std::string quantizer_key(const graph::Graph& graph, const std::string& name) {
  const int index = graph.find(name);
  std::string key = name + "|";
  if (index < 0 || !std::dynamic_pointer_cast<quant::FakeQuantize>(graph.nodes[index].module))
    return key;
  for (const int user : graph.users({index, 0})) key += graph.nodes[user].name + ",";
  return key;
}

std::set<std::string> quantizer_keys(const graph::Graph& graph) {
  std::set<std::string> keys;
  for (const graph::GraphNode& node : graph.nodes) {
    if (std::dynamic_pointer_cast<quant::FakeQuantize>(node.module)) {
      keys.insert(quantizer_key(graph, node.name));
    } else if (auto layer = std::dynamic_pointer_cast<quant::QatModule>(node.module)) {
      keys.insert(node.name + ".weight_fake_quant|");
      if (layer->activation_post_process()) keys.insert(node.name + ".activation_post_process|");
    }
  }
  return keys;
}

bool can_black_list(const graph::GraphNode& node) {
  return node.kind == graph::NodeKind::kModule || node.kind == graph::NodeKind::kFunction;
}

// The nodes prepare_qat left float: annotated "float: black_list" (prepare_qat.h).
std::vector<std::string> black_listed_nodes(const graph::Graph& prepared) {
  std::vector<std::string> out;
  for (const graph::GraphNode& node : prepared.nodes) {
    if (std::find(node.annotations.begin(), node.annotations.end(), "float: black_list") !=
        node.annotations.end())
      out.push_back(node.name);
  }
  return out;
}

// Prepares `fused` as the model was, with `extra` nodes black-listed too.
class Preparer {
 public:
  Preparer(const graph::QuantizableModel& model, std::vector<std::string> black_list)
      : qconfig_(*model.qconfig()), black_list_(std::move(black_list)) {
    const graph::Graph& prepared = model.graph();
    const Shape& input_shape = prepared.nodes.at(prepared.input_node()).output_shapes.at(0);
    // trace() restores the model's buffers and random state: the model is left unchanged.
    fused_ = graph::fuse(graph::trace(*model.model(), input_shape));
  }

  // quantizer_keys() of the model prepared with `extra` black-listed too.
  std::set<std::string> keys_with(const std::vector<std::string>& extra) const {
    std::vector<std::string> black_list = black_list_;
    black_list.insert(black_list.end(), extra.begin(), extra.end());
    return quantizer_keys(graph::prepare_qat(fused_, qconfig_, black_list));
  }

 private:
  quant::QConfig qconfig_;
  std::vector<std::string> black_list_;
  graph::Graph fused_;
};

// The owners of the activation quantizer `q` (a FakeQuantize node of `prepared`): the first of
// {its producer}, {its readers}, {producer and readers} whose black-listing removes it (tensorrt's
// cat output quantizer needs both: the cat and the convs reading it quantized).
std::vector<std::string> activation_owners(const graph::Graph& prepared, const Quantizer& q,
                                           const Preparer& preparer,
                                           const std::set<std::string>& black_list) {
  const int index = prepared.find(q.name);
  const std::string key = quantizer_key(prepared, q.name);
  const graph::GraphNode& producer = prepared.nodes.at(prepared.nodes.at(index).inputs.at(0).node);
  std::vector<std::vector<std::string>> candidates;
  const bool producer_ok = can_black_list(producer) && black_list.count(producer.name) == 0;
  if (producer_ok) candidates.push_back({producer.name});
  std::vector<std::string> readers;
  for (const int user : prepared.users({index, 0})) {
    const graph::GraphNode& reader = prepared.nodes.at(user);
    if (!can_black_list(reader)) return {};  // the graph output reads it
    if (std::find(readers.begin(), readers.end(), reader.name) == readers.end())
      readers.push_back(reader.name);
  }
  if (!readers.empty()) candidates.push_back(readers);
  if (producer_ok && !readers.empty()) {
    readers.insert(readers.begin(), producer.name);
    candidates.push_back(readers);
  }
  for (const std::vector<std::string>& owners : candidates) {
    if (preparer.keys_with(owners).count(key) == 0) return owners;
  }
  return {};
}

double sqnr_db(double signal, double noise) {
  if (noise == 0) return std::numeric_limits<double>::infinity();
  if (signal == 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

// Runs the model as it is switched on the first `batches` batches; the first call records the
// reference logits the later ones are compared with.
class Measurer {
 public:
  Measurer(graph::QuantizableModel& model, nn::data::DataLoader& loader, int64_t batches)
      : model_(model), loader_(loader), batches_(batches) {}

  Measurement operator()() {
    const bool record = reference_.empty();
    size_t batch = 0;
    double signal = 0, noise = 0;
    const LogitsFunction logits = [&](const Tensor& images) {
      Tensor y = model_.forward(images);
      if (record) {
        reference_.push_back(y);
        return y;
      }
      QAT_CHECK(batch < reference_.size(), "analyze_sensitivity: the loader gave more batches");
      const Tensor& ref = reference_[batch++];
      const float* a = y.data<float>();
      const float* r = ref.data<float>();
      for (int64_t i = 0; i < y.numel(); ++i) {
        signal += double(r[i]) * r[i];
        noise += (double(a[i]) - r[i]) * (double(a[i]) - r[i]);
      }
      return y;
    };
    Measurement m;
    m.eval = evaluate(logits, loader_, batches_);
    m.sqnr_db = record ? std::numeric_limits<double>::infinity() : sqnr_db(signal, noise);
    return m;
  }

 private:
  graph::QuantizableModel& model_;
  nn::data::DataLoader& loader_;
  int64_t batches_;
  std::vector<Tensor> reference_;  // float logits per batch
};

std::set<std::string> all_but(const SensitivityPlan& plan, const std::string& name) {
  std::set<std::string> out;
  for (const SensitivityNode& node : plan.nodes)
    if (node.name != name) out.insert(node.name);
  return out;
}

// Greedy black_list: see analyze_sensitivity().
void suggest(const SensitivityPlan& plan, Measurer& measure, const SensitivityOptions& options,
             SensitivityReport& report) {
  std::vector<const SensitivityRow*> by_gain;
  for (const SensitivityRow& row : report.rows) by_gain.push_back(&row);
  std::stable_sort(by_gain.begin(), by_gain.end(), [](const auto* a, const auto* b) {
    if (a->gain != b->gain) return a->gain > b->gain;
    return a->only_float.sqnr_db > b->only_float.sqnr_db;
  });
  const auto within = [&](const Measurement& m) {
    return report.float_model.eval.top1 - m.eval.top1 <= options.budget;
  };
  report.with_suggested = report.quantized;
  std::set<std::string> float_nodes;
  int64_t tried = 0;
  for (const SensitivityRow* row : by_gain) {
    if (within(report.with_suggested)) break;
    float_nodes.insert(row->node.name);
    leave_float(plan, float_nodes);
    const Measurement trial = measure();
    if (options.progress) options.progress("black_list", ++tried, by_gain.size());
    if (trial.eval.top1 > report.with_suggested.eval.top1) {
      report.suggested.push_back(row->node.name);
      report.with_suggested = trial;
    } else {
      float_nodes.erase(row->node.name);  // it did not help together with the others
    }
  }
  report.within_budget = within(report.with_suggested);
  report.black_list = plan.black_list;
  report.black_list.insert(report.black_list.end(), report.suggested.begin(),
                           report.suggested.end());
}

}  // namespace

SensitivityPlan plan_sensitivity(const graph::QuantizableModel& model) {
  QAT_CHECK(model.qconfig().has_value() && model.is_prepared(),
            "plan_sensitivity: the model is not prepared for QAT");
  const graph::Graph& prepared = model.graph();
  SensitivityPlan plan;
  plan.black_list = black_listed_nodes(prepared);
  const Preparer preparer(model, plan.black_list);
  const std::vector<Quantizer> all = quantizers(model);
  QAT_CHECK(preparer.keys_with({}) == quantizer_keys(prepared),
            "plan_sensitivity: preparing the model's graph again gives other quantizers");

  const std::set<std::string> black_list(plan.black_list.begin(), plan.black_list.end());
  std::map<std::string, size_t> row_of;
  for (const Quantizer& q : all) {
    OwnedQuantizer owned{q, {}};
    owned.owners = q.role == "activation" ? activation_owners(prepared, q, preparer, black_list)
                                          : std::vector<std::string>{q.node};
    for (const std::string& owner : owned.owners) {
      if (row_of.count(owner) == 0) {
        row_of[owner] = plan.nodes.size();
        plan.nodes.push_back({owner, prepared.node(owner).op, {}});
      }
      plan.nodes[row_of[owner]].quantizers.push_back(q.name);
    }
    plan.quantizers.push_back(std::move(owned));
  }
  // Rows in graph order (a reader can own a quantizer met before its own weight).
  std::stable_sort(plan.nodes.begin(), plan.nodes.end(),
                   [&](const SensitivityNode& a, const SensitivityNode& b) {
                     return prepared.find(a.name) < prepared.find(b.name);
                   });
  return plan;
}

void leave_float(const SensitivityPlan& plan, const std::set<std::string>& float_nodes) {
  for (const OwnedQuantizer& q : plan.quantizers) {
    const bool all_float =
        !q.owners.empty() && std::all_of(q.owners.begin(), q.owners.end(),
                                         [&](const auto& o) { return float_nodes.count(o) > 0; });
    q.quantizer.fake_quant->enable_fake_quant(!all_float);
  }
}

SensitivityReport analyze_sensitivity(graph::QuantizableModel& model, nn::data::DataLoader& loader,
                                      const SensitivityOptions& options) {
  QAT_CHECK(options.batches >= 1, "analyze_sensitivity: batches must be at least 1, got ",
            options.batches);
  QAT_CHECK(options.budget >= 0, "analyze_sensitivity: budget must be >= 0, got ", options.budget);
  const SensitivityPlan plan = plan_sensitivity(model);
  for (const OwnedQuantizer& q : plan.quantizers) {
    QAT_CHECK(!q.quantizer.fake_quant->observer_enabled(), "analyze_sensitivity: observer of ",
              q.quantizer.name, " is on; measurements would move the scales");
  }
  model.eval();
  Measurer measure(model, loader, options.batches);
  SensitivityReport report;
  const std::set<std::string> none;
  quant::disable_fake_quant(model);
  report.float_model = measure();  // first: the reference logits
  leave_float(plan, none);
  report.quantized = measure();

  const int64_t total = static_cast<int64_t>(plan.nodes.size());
  for (int64_t i = 0; i < total; ++i) {
    SensitivityRow row;
    row.node = plan.nodes[i];
    leave_float(plan, all_but(plan, row.node.name));
    row.only_quantized = measure();
    leave_float(plan, {row.node.name});
    row.only_float = measure();
    row.drop = report.float_model.eval.top1 - row.only_quantized.eval.top1;
    row.gain = row.only_float.eval.top1 - report.quantized.eval.top1;
    report.rows.push_back(std::move(row));
    if (options.progress) options.progress("nodes", i + 1, total);
  }
  std::stable_sort(report.rows.begin(), report.rows.end(),
                   [](const SensitivityRow& a, const SensitivityRow& b) {
                     if (a.drop != b.drop) return a.drop > b.drop;
                     return a.only_quantized.sqnr_db < b.only_quantized.sqnr_db;
                   });
  suggest(plan, measure, options, report);
  leave_float(plan, none);
  return report;
}

}  // namespace qat::zoo
