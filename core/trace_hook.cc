#include "core/trace_hook.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace qat {
namespace detail {

thread_local OpTracer* current_op_tracer = nullptr;

}  // namespace detail

namespace {

const char* kind_str(AttrValue::Kind kind) {
  switch (kind) {
    case AttrValue::Kind::kInt:
      return "int";
    case AttrValue::Kind::kInts:
      return "int list";
    case AttrValue::Kind::kDouble:
      return "double";
    case AttrValue::Kind::kBool:
      return "bool";
  }
  return "?";
}

// The shortest %g form that reads back as the same double ("0.1", "1e-05", "6").
std::string shortest_double(double value) {
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  return buf;
}

}  // namespace

int64_t AttrValue::as_int() const {
  QAT_CHECK(kind() == Kind::kInt, "AttrValue: expected an int, got a ", kind_str(kind()));
  return std::get<0>(value_);
}

const std::vector<int64_t>& AttrValue::as_ints() const {
  QAT_CHECK(kind() == Kind::kInts, "AttrValue: expected an int list, got a ", kind_str(kind()));
  return std::get<1>(value_);
}

double AttrValue::as_double() const {
  QAT_CHECK(kind() == Kind::kDouble, "AttrValue: expected a double, got a ", kind_str(kind()));
  return std::get<2>(value_);
}

bool AttrValue::as_bool() const {
  QAT_CHECK(kind() == Kind::kBool, "AttrValue: expected a bool, got a ", kind_str(kind()));
  return std::get<3>(value_);
}

std::string AttrValue::to_string() const {
  switch (kind()) {
    case Kind::kInt:
      return std::to_string(as_int());
    case Kind::kInts:
      return shape_str(as_ints());
    case Kind::kDouble:
      return shortest_double(as_double());
    case Kind::kBool:
      return as_bool() ? "true" : "false";
  }
  return "?";
}

OpAttrs::OpAttrs(std::initializer_list<Entry> entries) {
  for (const Entry& entry : entries) set(entry.first, entry.second);
}

bool OpAttrs::has(const std::string& name) const {
  for (const Entry& entry : entries_)
    if (entry.first == name) return true;
  return false;
}

void OpAttrs::set(const std::string& name, AttrValue value) {
  for (Entry& entry : entries_) {
    if (entry.first == name) {
      entry.second = std::move(value);
      return;
    }
  }
  entries_.emplace_back(name, std::move(value));
}

const AttrValue& OpAttrs::at(const std::string& name) const {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&name](const Entry& entry) { return entry.first == name; });
  QAT_CHECK(it != entries_.end(), "OpAttrs: no attribute '", name, "' in {", to_string(), "}");
  return it->second;
}

std::string OpAttrs::to_string() const {
  std::string out;
  for (const Entry& entry : entries_) {
    out += (out.empty() ? "" : ", ") + entry.first + "=" + entry.second.to_string();
  }
  return out;
}

void trace_op(const char* op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
              const OpAttrs& attrs) {
  if (detail::current_op_tracer == nullptr) return;
  std::vector<Tensor> defined;
  for (const Tensor& t : inputs)
    if (t.defined()) defined.push_back(t);
  detail::current_op_tracer->on_op(op, defined, outputs, attrs);
}

OpTracerGuard::OpTracerGuard(OpTracer& tracer) : previous_(detail::current_op_tracer) {
  detail::current_op_tracer = &tracer;
}

OpTracerGuard::~OpTracerGuard() { detail::current_op_tracer = previous_; }

}  // namespace qat
