#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "core/tensor.h"

// The hook through which the differentiable ops in core/ops report themselves to a graph tracer
// (graph/trace.h). core knows nothing about graphs: an op only says "I am `cat`, these were my
// inputs and outputs, and these are my arguments". With no tracer installed a report costs one
// thread_local load, because call sites test op_tracing() before building any argument:
//   if (op_tracing()) trace_op("cat", xs, {y}, {{"dim", d}});
// Every public op in core/ops reports itself, except cross_entropy (a loss, not part of a model).
namespace qat {

// One op argument: an int, an int list, a double or a bool.
class AttrValue {
 public:
  enum class Kind { kInt, kInts, kDouble, kBool };

  AttrValue(int value) : value_(std::in_place_index<0>, value) {}      // NOLINT: implicit
  AttrValue(int64_t value) : value_(std::in_place_index<0>, value) {}  // NOLINT: implicit
  AttrValue(std::vector<int64_t> value)                                // NOLINT: implicit
      : value_(std::in_place_index<1>, std::move(value)) {}
  AttrValue(const std::array<int64_t, 2>& value)  // NOLINT: implicit
      : value_(std::in_place_index<1>, std::vector<int64_t>(value.begin(), value.end())) {}
  AttrValue(double value) : value_(std::in_place_index<2>, value) {}  // NOLINT: implicit
  AttrValue(bool value) : value_(std::in_place_index<3>, value) {}    // NOLINT: implicit

  Kind kind() const { return static_cast<Kind>(value_.index()); }
  // Typed reads; the wrong kind throws qat::Error.
  int64_t as_int() const;
  const std::vector<int64_t>& as_ints() const;
  double as_double() const;
  bool as_bool() const;
  // "1", "[3, 3]", "0.1" (shortest round-trip form), "true".
  std::string to_string() const;

  bool operator==(const AttrValue& other) const { return value_ == other.value_; }
  bool operator!=(const AttrValue& other) const { return !(*this == other); }

 private:
  std::variant<int64_t, std::vector<int64_t>, double, bool> value_;
};

// An op's named arguments in the order the op lists them (the order to_string() prints).
class OpAttrs {
 public:
  using Entry = std::pair<std::string, AttrValue>;

  OpAttrs() = default;
  OpAttrs(std::initializer_list<Entry> entries);  // NOLINT: implicit, for {{"dim", 1}}

  bool empty() const { return entries_.empty(); }
  bool has(const std::string& name) const;
  // Replaces an existing entry in place, else appends.
  void set(const std::string& name, AttrValue value);
  // The entry called `name`; a missing name throws qat::Error naming it.
  const AttrValue& at(const std::string& name) const;
  int64_t get_int(const std::string& name) const { return at(name).as_int(); }
  const std::vector<int64_t>& get_ints(const std::string& name) const { return at(name).as_ints(); }
  double get_double(const std::string& name) const { return at(name).as_double(); }
  bool get_bool(const std::string& name) const { return at(name).as_bool(); }
  // "dim=1, kernel=[3, 3]"
  std::string to_string() const;

  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }
  bool operator==(const OpAttrs& other) const { return entries_ == other.entries_; }
  bool operator!=(const OpAttrs& other) const { return !(*this == other); }

 private:
  std::vector<Entry> entries_;
};

// Receives the op reports of the current thread while an OpTracerGuard installs it.
class OpTracer {
 public:
  virtual ~OpTracer() = default;
  // Called by op `op` after it computed `outputs` from `inputs` (undefined inputs, such as an
  // absent bias, are left out). Each op reports once per call and reports no op it calls
  // internally, so a tracer sees exactly the calls the model code made.
  virtual void on_op(const char* op, const std::vector<Tensor>& inputs,
                     const std::vector<Tensor>& outputs, const OpAttrs& attrs) = 0;
};

namespace detail {
extern thread_local OpTracer* current_op_tracer;
}  // namespace detail

// True while an OpTracer is installed on this thread.
inline bool op_tracing() { return detail::current_op_tracer != nullptr; }

// Reports an op call to the installed tracer (call only when op_tracing()).
void trace_op(const char* op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
              const OpAttrs& attrs = {});

// Installs `tracer` on this thread for the guard's lifetime, restoring the previous one after.
class OpTracerGuard {
 public:
  explicit OpTracerGuard(OpTracer& tracer);
  ~OpTracerGuard();
  OpTracerGuard(const OpTracerGuard&) = delete;
  OpTracerGuard& operator=(const OpTracerGuard&) = delete;

 private:
  OpTracer* previous_;
};

}  // namespace qat
