#include "nn/module.h"
#include "tests/testing/errors.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace qat::nn {
namespace {

using qat::testing::error_of;

// Stand-ins with the registration order of Conv2d and BatchNorm2d, so these tests need no ops.
class FakeConv : public Module {
 public:
  FakeConv(int64_t in, int64_t out, bool bias) {
    weight = register_parameter("weight", Tensor::zeros({out, in, 3, 3}));
    if (bias) this->bias = register_parameter("bias", Tensor::zeros({out}));
  }
  std::string type_name() const override { return "FakeConv"; }
  std::string extra_repr() const override { return "in=" + std::to_string(weight.size(1)); }
  Tensor weight, bias;

 protected:
  Tensor forward_impl(const Tensor& x) override { return x; }
};

class FakeNorm : public Module {
 public:
  explicit FakeNorm(int64_t c) {
    weight = register_parameter("weight", Tensor::ones({c}));
    bias = register_parameter("bias", Tensor::zeros({c}));
    running_mean = register_buffer("running_mean", Tensor::zeros({c}));
    running_var = register_buffer("running_var", Tensor::ones({c}));
    num_batches_tracked = register_buffer("num_batches_tracked", Tensor::scalar(0, DType::kInt64));
  }
  std::string type_name() const override { return "FakeNorm"; }
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
};

class Block : public Module {
 public:
  Block(int64_t in, int64_t out) {
    conv1 = register_module("conv1", std::make_shared<FakeConv>(in, out, false));
    bn1 = register_module("bn1", std::make_shared<FakeNorm>(out));
  }
  std::string type_name() const override { return "Block"; }
  std::shared_ptr<FakeConv> conv1;
  std::shared_ptr<FakeNorm> bn1;
};

// A parameter of its own, a child leaf, a nested child, and another leaf last.
class Net : public Module {
 public:
  Net(int64_t width = 2) {
    scale = register_parameter("scale", Tensor::ones({1}));
    stem = register_module("stem", std::make_shared<FakeConv>(3, 4, true));
    layer1 = register_module("layer1", std::make_shared<Block>(4, width));
    fc = register_module("fc", std::make_shared<FakeConv>(width, 5, true));
  }
  std::string type_name() const override { return "Net"; }
  Tensor scale;
  std::shared_ptr<FakeConv> stem;
  std::shared_ptr<Block> layer1;
  std::shared_ptr<FakeConv> fc;
};

std::vector<std::string> keys(const NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& entry : named) out.push_back(entry.first);
  return out;
}

// Fills every floating entry with start, start + 1, ... (in state_dict order).
void fill_counting(Module& m, double start) {
  for (auto& [name, t] : m.state_dict()) {
    if (!is_floating(t.dtype())) continue;
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(start++);
  }
}

TEST(Module, StateDictIsParamsThenBuffersThenChildrenInRegistrationOrder) {
  auto net = std::make_shared<Net>();
  const std::vector<std::string> expected = {
      "scale",
      "stem.weight",
      "stem.bias",
      "layer1.conv1.weight",
      "layer1.bn1.weight",
      "layer1.bn1.bias",
      "layer1.bn1.running_mean",
      "layer1.bn1.running_var",
      "layer1.bn1.num_batches_tracked",
      "fc.weight",
      "fc.bias",
  };
  EXPECT_EQ(keys(net->state_dict()), expected);
  const StateDict sd = net->state_dict();
  EXPECT_EQ(sd[8].second.dtype(), DType::kInt64);
  EXPECT_EQ(sd[8].second.dim(), 0);
  EXPECT_TRUE(sd[3].second.shares_storage(net->layer1->conv1->weight));  // aliases, no copy
}

TEST(Module, NamedParametersAndBuffers) {
  auto net = std::make_shared<Net>();
  EXPECT_EQ(
      keys(net->named_parameters()),
      (std::vector<std::string>{"scale", "stem.weight", "stem.bias", "layer1.conv1.weight",
                                "layer1.bn1.weight", "layer1.bn1.bias", "fc.weight", "fc.bias"}));
  EXPECT_EQ(keys(net->named_parameters(/*recurse=*/false)), (std::vector<std::string>{"scale"}));
  EXPECT_EQ(keys(net->named_buffers()),
            (std::vector<std::string>{"layer1.bn1.running_mean", "layer1.bn1.running_var",
                                      "layer1.bn1.num_batches_tracked"}));
  EXPECT_EQ(net->parameters().size(), 8u);
  for (const Tensor& p : net->parameters()) EXPECT_TRUE(p.requires_grad());
  for (const auto& [name, b] : net->named_buffers()) EXPECT_FALSE(b.requires_grad()) << name;
}

class Tied : public Module {
 public:
  Tied() {
    a = register_module("a", std::make_shared<FakeConv>(2, 2, false));
    b = register_module("b", a);  // the same module under two names
  }
  std::string type_name() const override { return "Tied"; }
  std::shared_ptr<FakeConv> a, b;
};

TEST(Module, SharedTensorsAreOneParameterButKeepBothStateDictKeys) {
  auto tied = std::make_shared<Tied>();
  EXPECT_EQ(keys(tied->named_parameters()), (std::vector<std::string>{"a.weight"}));
  EXPECT_EQ(keys(tied->state_dict()), (std::vector<std::string>{"a.weight", "b.weight"}));
  EXPECT_EQ(tied->named_modules().size(), 2u);  // "" and "a"
}

TEST(Module, NamedModulesIsPreOrderWithDottedNames) {
  auto net = std::make_shared<Net>();
  std::vector<std::string> names;
  for (const auto& [name, m] : net->named_modules()) names.push_back(name + ":" + m->type_name());
  EXPECT_EQ(names, (std::vector<std::string>{":Net", "stem:FakeConv", "layer1:Block",
                                             "layer1.conv1:FakeConv", "layer1.bn1:FakeNorm",
                                             "fc:FakeConv"}));
  ASSERT_EQ(net->children().size(), 3u);
  EXPECT_EQ(net->children()[1], net->layer1);
  EXPECT_EQ(net->named_children()[2].first, "fc");
}

TEST(Module, NamedModulesNeedsSharedOwnership) {
  Net on_stack;
  EXPECT_NE(error_of([&] { on_stack.named_modules(); }).find("std::make_shared"),
            std::string::npos);
}

class BadNames : public Module {
 public:
  std::string type_name() const override { return "BadNames"; }
  void add_param(const std::string& name) { register_parameter(name, Tensor::zeros({1})); }
  void add_child(const std::string& name) { register_module(name, std::make_shared<Block>(1, 1)); }
};

TEST(Module, RegistrationRejectsBadAndDuplicateNames) {
  BadNames m;
  m.add_param("w");
  EXPECT_NE(error_of([&] { m.add_param("w"); }).find("'w' is already registered"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.add_child("w"); }).find("'w' is already registered"),
            std::string::npos);
  EXPECT_NE(error_of([&] { m.add_param("a.b"); }).find("cannot contain '.'"), std::string::npos);
  EXPECT_THROW(m.add_param(""), Error);
}

TEST(Module, StateDictRoundTrip) {
  auto src = std::make_shared<Net>();
  auto dst = std::make_shared<Net>();
  fill_counting(*src, 1.0);
  src->layer1->bn1->num_batches_tracked.fill_(7);
  const LoadResult result = dst->load_state_dict(src->state_dict());
  EXPECT_TRUE(result.missing_keys.empty());
  EXPECT_TRUE(result.unexpected_keys.empty());
  const StateDict a = src->state_dict(), b = dst->state_dict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].second.to_vector<double>(), b[i].second.to_vector<double>()) << a[i].first;
    EXPECT_FALSE(a[i].second.shares_storage(b[i].second)) << a[i].first;
  }
  EXPECT_EQ(dst->layer1->bn1->num_batches_tracked.item(), 7);
}

TEST(Module, LoadWritesInPlaceSoHeldHandlesSeeTheNewValues) {
  auto net = std::make_shared<Net>();
  const Tensor held = net->fc->weight;  // as an optimizer or a graph would hold it
  const TensorImpl* impl = held.impl_ptr().get();
  auto src = std::make_shared<Net>();
  fill_counting(*src, 10.0);
  net->load_state_dict(src->state_dict());
  EXPECT_EQ(net->fc->weight.impl_ptr().get(), impl);
  EXPECT_EQ(held.to_vector<float>(), src->fc->weight.to_vector<float>());
  EXPECT_TRUE(held.requires_grad());
}

TEST(Module, StrictLoadNamesMissingAndUnexpectedKeys) {
  auto net = std::make_shared<Net>();
  StateDict sd = net->state_dict();
  sd.erase(sd.begin() + 4);  // layer1.bn1.weight
  sd.emplace_back("aux1.conv.weight", Tensor::zeros({1}));
  const std::string message = error_of([&] { net->load_state_dict(sd); });
  EXPECT_NE(message.find("missing key(s): \"layer1.bn1.weight\""), std::string::npos) << message;
  EXPECT_NE(message.find("unexpected key(s): \"aux1.conv.weight\""), std::string::npos) << message;
}

TEST(Module, SizeMismatchNamesTheKeyAndBothShapes) {
  auto narrow = std::make_shared<Net>(2);
  auto wide = std::make_shared<Net>(3);
  const std::string message = error_of([&] { narrow->load_state_dict(wide->state_dict()); });
  EXPECT_NE(message.find("load_state_dict: size mismatch for layer1.conv1.weight: checkpoint "
                         "[3, 4, 3, 3], model [2, 4, 3, 3]"),
            std::string::npos)
      << message;
  // Also with strict=false: a wrong shape is never silently skipped.
  EXPECT_THROW(narrow->load_state_dict(wide->state_dict(), /*strict=*/false), Error);
}

// Holds a data-dependent buffer, like a per-channel observer's min_val.
class GrowingState : public Module {
 public:
  GrowingState() {
    fixed = register_buffer("fixed", Tensor::zeros({2}));
    seen = register_resizable_buffer("seen", Tensor::empty({0}));
  }
  std::string type_name() const override { return "GrowingState"; }
  Tensor fixed, seen;
};

class HoldsGrowingState : public Module {
 public:
  HoldsGrowingState() { register_module("0", std::make_shared<GrowingState>()); }
  std::string type_name() const override { return "HoldsGrowingState"; }
};

TEST(Module, ResizableBuffersTakeTheCheckpointShape) {
  auto fresh = std::make_shared<HoldsGrowingState>();
  auto trained = std::make_shared<HoldsGrowingState>();
  Tensor handle = fresh->state_dict()[1].second;
  trained->state_dict()[1].second.resize_({3}).fill_(7.0);
  fresh->load_state_dict(trained->state_dict());
  EXPECT_EQ(handle.shape(), (Shape{3}));  // resized in place: held handles see it
  EXPECT_EQ(handle.to_vector<float>(), (std::vector<float>{7, 7, 7}));
  // Only the resizable buffer may change shape.
  trained->state_dict()[0].second.resize_({5});
  EXPECT_NE(error_of([&] { fresh->load_state_dict(trained->state_dict()); })
                .find("size mismatch for 0.fixed"),
            std::string::npos);
}

TEST(Module, FailedLoadWritesNothing) {
  auto net = std::make_shared<Net>();
  auto src = std::make_shared<Net>();
  fill_counting(*src, 1.0);
  StateDict sd = src->state_dict();
  sd.pop_back();  // fc.bias missing
  EXPECT_THROW(net->load_state_dict(sd), Error);
  EXPECT_EQ(net->stem->weight.to_vector<float>(), std::vector<float>(4 * 3 * 9, 0.0f));
}

TEST(Module, NonStrictLoadReportsAndLoadsTheRest) {
  auto net = std::make_shared<Net>();
  auto src = std::make_shared<Net>();
  fill_counting(*src, 1.0);
  StateDict sd = src->state_dict();
  sd.erase(sd.begin() + 1);  // stem.weight
  sd.emplace_back("aux1.fc.bias", Tensor::zeros({2}));
  const LoadResult result = net->load_state_dict(sd, /*strict=*/false);
  EXPECT_EQ(result.missing_keys, (std::vector<std::string>{"stem.weight"}));
  EXPECT_EQ(result.unexpected_keys, (std::vector<std::string>{"aux1.fc.bias"}));
  EXPECT_EQ(net->fc->bias.to_vector<float>(), src->fc->bias.to_vector<float>());
  EXPECT_EQ(net->stem->weight.to_vector<float>()[0], 0.0f);  // untouched
}

TEST(Module, DuplicateCheckpointKeyThrows) {
  auto net = std::make_shared<Net>();
  StateDict sd = net->state_dict();
  sd.push_back(sd.front());
  EXPECT_NE(error_of([&] { net->load_state_dict(sd); }).find("the key scale twice"),
            std::string::npos);
}

TEST(Module, TrainAndEvalReachEveryDescendant) {
  auto net = std::make_shared<Net>();
  for (const auto& [name, m] : net->named_modules()) EXPECT_TRUE(m->is_training()) << name;
  net->eval();
  for (const auto& [name, m] : net->named_modules()) EXPECT_FALSE(m->is_training()) << name;
  net->train();
  EXPECT_TRUE(net->layer1->bn1->is_training());
  net->layer1->train(false);  // a subtree only
  EXPECT_TRUE(net->is_training());
  EXPECT_FALSE(net->layer1->conv1->is_training());
}

// Net plus state attached under dotted paths: a GrowingState at "layer1.conv1" (the path of a
// registered module) and a FakeNorm at "fc.observer".
class WithAttachments : public Net {
 public:
  WithAttachments() {
    attach_module("layer1.conv1", growing);
    attach_module("fc.observer", norm);
  }
  using Module::attach_module;
  std::shared_ptr<GrowingState> growing = std::make_shared<GrowingState>();
  std::shared_ptr<FakeNorm> norm = std::make_shared<FakeNorm>(2);
};

TEST(Module, AttachedModulesReportAfterTheRegisteredTree) {
  auto net = std::make_shared<WithAttachments>();
  const std::vector<std::string> state = keys(net->state_dict());
  const std::vector<std::string> tail = {
      "layer1.conv1.fixed",
      "layer1.conv1.seen",
      "fc.observer.weight",
      "fc.observer.bias",
      "fc.observer.running_mean",
      "fc.observer.running_var",
      "fc.observer.num_batches_tracked",
  };
  ASSERT_EQ(state.size(), 11 + tail.size());
  EXPECT_EQ(std::vector<std::string>(state.begin(), state.begin() + 11),
            keys(std::make_shared<Net>()->state_dict()));
  EXPECT_EQ(std::vector<std::string>(state.begin() + 11, state.end()), tail);
  EXPECT_EQ(keys(net->named_parameters()).back(), "fc.observer.bias");
  EXPECT_EQ(keys(net->named_buffers()).back(), "fc.observer.num_batches_tracked");
  std::vector<std::string> modules;
  for (const auto& entry : net->named_modules()) modules.push_back(entry.first);
  EXPECT_EQ(modules, (std::vector<std::string>{"", "stem", "layer1", "layer1.conv1", "layer1.bn1",
                                               "fc", "layer1.conv1", "fc.observer"}));
  EXPECT_EQ(net->named_children().size(), 3u);
  EXPECT_EQ(net->to_string(), std::make_shared<Net>()->to_string());
}

TEST(Module, AttachedModulesLoadTrainAndResize) {
  auto net = std::make_shared<WithAttachments>();
  auto trained = std::make_shared<WithAttachments>();
  fill_counting(*trained, 1.0);
  trained->growing->seen.resize_({3}).fill_(7.0);
  net->load_state_dict(trained->state_dict());
  EXPECT_EQ(net->norm->running_var.to_vector<float>(),
            trained->norm->running_var.to_vector<float>());
  EXPECT_EQ(net->growing->seen.to_vector<float>(), (std::vector<float>{7, 7, 7}));
  net->eval();
  EXPECT_FALSE(net->growing->is_training());
  EXPECT_FALSE(net->norm->is_training());
}

TEST(Module, AttachRejectsBadPathsAndKeyClashes) {
  auto net = std::make_shared<WithAttachments>();
  EXPECT_NE(error_of([&] { net->attach_module("layer1..conv1", std::make_shared<Net>()); })
                .find("attach_module expects a dotted path such as 'layer1.0.conv1', got "
                      "'layer1..conv1'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              net->attach_module("fc.observer", std::make_shared<GrowingState>());
            }).find("the path 'fc.observer' is already attached"),
            std::string::npos);
  // A FakeNorm at "layer1.bn1" would add "layer1.bn1.weight", which the registered one has.
  EXPECT_NE(error_of([&] { net->attach_module("layer1.bn1", std::make_shared<FakeNorm>(2)); })
                .find("attach_module('layer1.bn1') would add the key layer1.bn1.weight, which "
                      "state_dict() already has"),
            std::string::npos);
  EXPECT_NE(error_of([&] { net->attach_module("x", nullptr); }).find("got a null module"),
            std::string::npos);
}

TEST(Module, ZeroGradMakesGradsUndefined) {
  auto net = std::make_shared<Net>();
  for (Tensor p : net->parameters()) p.set_grad(Tensor::ones(p.shape()));
  net->zero_grad();
  for (const Tensor& p : net->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(Module, ForwardGoesThroughForwardImpl) {
  auto conv = std::make_shared<FakeConv>(1, 1, false);
  const Tensor x = Tensor::ones({2});
  EXPECT_TRUE(conv->forward(x).shares_storage(x));
  auto block = std::make_shared<Block>(1, 1);
  EXPECT_NE(error_of([&] { block->forward(x); }).find("Block: this module has no single-tensor"),
            std::string::npos);
}

// Calls its child twice, as torchvision's BasicBlock calls its one ReLU.
class TwoCalls : public Module {
 public:
  TwoCalls() { conv = register_module("conv", std::make_shared<FakeConv>(1, 1, false)); }
  std::string type_name() const override { return "TwoCalls"; }
  std::shared_ptr<FakeConv> conv;

 protected:
  Tensor forward_impl(const Tensor& x) override { return conv->forward(conv->forward(x)); }
};

// Logs "<event> <qualified name>" for the modules of `root`.
class RecordingHook : public ForwardHook {
 public:
  explicit RecordingHook(Module& root) {
    for (const auto& [name, m] : root.named_modules()) names_[m.get()] = name;
  }
  void before_forward(Module& module, const Tensor&) override {
    events.push_back("before " + names_.at(&module));
  }
  void after_forward(Module& module, const Tensor& input, const Tensor& output) override {
    EXPECT_TRUE(output.shares_storage(input));  // FakeConv returns its input
    events.push_back("after " + names_.at(&module));
  }
  std::vector<std::string> events;

 private:
  std::map<const Module*, std::string> names_;
};

TEST(Module, ForwardHookSeesEveryCallInOrder) {
  auto model = std::make_shared<TwoCalls>();
  RecordingHook hook(*model);
  {
    ForwardHookGuard guard(hook);
    model->forward(Tensor::ones({2}));
  }
  EXPECT_EQ(hook.events, (std::vector<std::string>{"before ", "before conv", "after conv",
                                                   "before conv", "after conv", "after "}));
  model->forward(Tensor::ones({2}));  // the guard is gone: nothing more is recorded
  EXPECT_EQ(hook.events.size(), 6u);
}

TEST(Module, NestedForwardHooksAreAllNotified) {
  auto conv = std::make_shared<FakeConv>(1, 1, false);
  RecordingHook outer(*conv), inner(*conv);
  ForwardHookGuard outer_guard(outer);
  {
    ForwardHookGuard inner_guard(inner);
    conv->forward(Tensor::ones({1}));
  }
  conv->forward(Tensor::ones({1}));
  EXPECT_EQ(outer.events, (std::vector<std::string>{"before ", "after ", "before ", "after "}));
  EXPECT_EQ(inner.events, (std::vector<std::string>{"before ", "after "}));
}

TEST(Module, ForwardHookSkipsAfterWhenForwardThrows) {
  auto block = std::make_shared<Block>(1, 1);  // forward_impl throws
  RecordingHook hook(*block);
  {
    ForwardHookGuard guard(hook);
    EXPECT_THROW(block->forward(Tensor::ones({1})), Error);
  }
  EXPECT_EQ(hook.events, (std::vector<std::string>{"before "}));
}

TEST(Module, ToStringPrintsTheTreeLikePyTorch) {
  auto net = std::make_shared<Net>();
  EXPECT_EQ(net->stem->to_string(), "FakeConv(in=3)");
  EXPECT_EQ(net->to_string(),
            "Net(\n"
            "  (stem): FakeConv(in=3)\n"
            "  (layer1): Block(\n"
            "    (conv1): FakeConv(in=4)\n"
            "    (bn1): FakeNorm()\n"
            "  )\n"
            "  (fc): FakeConv(in=2)\n"
            ")");
}

TEST(Module, PyFloatMatchesPythonRepr) {
  EXPECT_EQ(py_float(0.1), "0.1");
  EXPECT_EQ(py_float(1e-5), "1e-05");
  EXPECT_EQ(py_float(0.001), "0.001");
  EXPECT_EQ(py_float(0.0001), "0.0001");
  EXPECT_EQ(py_float(1.0), "1.0");
  EXPECT_EQ(py_float(100.0), "100.0");
  EXPECT_EQ(py_float(1234.5), "1234.5");
  EXPECT_EQ(py_float(-2.5), "-2.5");
  EXPECT_EQ(py_float(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(py_float(1e15), "1000000000000000.0");
  EXPECT_EQ(py_float(1e16), "1e+16");
  EXPECT_EQ(py_float(9.313225746154785e-10), "9.313225746154785e-10");
  EXPECT_EQ(py_float(0.0), "0.0");
  EXPECT_EQ(py_bool(false), "False");
}

}  // namespace
}  // namespace qat::nn
