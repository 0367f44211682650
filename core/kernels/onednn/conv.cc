#include "core/kernels/conv.h"

#include <oneapi/dnnl/dnnl_debug.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/check.h"
#include "core/kernels/onednn/engine.h"

namespace qat::kernels {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

// One Conv2dShape in oneDNN terms: the user's plain layouts (NCHW activations, OIHW weights),
// the spatial parameters, and whether the primitives may pick blocked layouts.
struct ConvDims {
  memory::desc src_md, weights_md, bias_md, dst_md;
  memory::dims strides, dilates, padding_l, padding_r;
  bool blocked;
};

memory::desc plain_md(const memory::dims& dims, Tag tag) {
  return memory::desc(dims, memory::data_type::f32, tag);
}

// Whether to create the primitives with format_tag::any, i.e. oneDNN's channel-blocked layouts
// with reorders from and to NCHW around them. On AVX-512 the blocked direct kernels beat the
// NCHW (gemm) ones by 1.2-7x for 3x3 and depthwise convs even after the reorders, but a stride-1
// 1x1 conv is a plain GEMM on NCHW, and the two activation reorders double its time.
bool use_blocked_layouts(const Conv2dShape& s) {
  return !(s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && s.G == 1);
}

ConvDims conv_dims(const Conv2dShape& s) {
  ConvDims d;
  d.src_md = plain_md({s.N, s.C, s.H, s.W}, Tag::nchw);
  // Grouped weights [OC, C/G, KH, KW] are [G, OC/G, C/G, KH, KW] in memory, which is the explicit
  // group dim oneDNN wants (goihw).
  d.weights_md = s.G == 1 ? plain_md({s.OC, s.C, s.KH, s.KW}, Tag::oihw)
                          : plain_md({s.G, s.OC / s.G, s.C / s.G, s.KH, s.KW}, Tag::goihw);
  d.bias_md = plain_md({s.OC}, Tag::x);
  d.dst_md = plain_md({s.N, s.OC, s.OH, s.OW}, Tag::nchw);
  d.strides = {s.SH, s.SW};
  d.dilates = {s.DH - 1, s.DW - 1};  // oneDNN counts the gaps between taps: 0 = dense
  d.padding_l = {s.PH, s.PW};
  // oneDNN checks OH == (H + PL + PR - extent) / SH + 1 with the same floor as PyTorch, so the
  // symmetric padding is consistent even when the last rows are never reached.
  d.padding_r = {s.PH, s.PW};
  d.blocked = use_blocked_layouts(s);
  return d;
}

// Keyed by every size and the variant (prop kind, bias), as onednn::Cache asks.
std::string cache_key(const std::string& variant, const ConvDims& d) {
  return onednn::dims_key(variant, {d.src_md.dims(), d.weights_md.dims(), d.dst_md.dims(),
                                    d.strides, d.dilates, d.padding_l, d.padding_r});
}

// The layout a primitive is created with: the user's, or any (oneDNN picks).
memory::desc prim_md(const ConvDims& d, const memory::desc& user_md) {
  return d.blocked ? memory::desc(user_md.dims(), memory::data_type::f32, Tag::any) : user_md;
}

memory::desc optional_bias_md(const ConvDims& d, bool with_bias) {
  return with_bias ? d.bias_md : memory::desc();  // zero md = no bias
}

// One primitive argument: the user's plain layout, the layout the primitive chose, and the
// reorder between them (user -> primitive for inputs, primitive -> user for outputs), absent when
// the layouts already match.
struct Arg {
  memory::desc user_md;
  memory::desc prim_md;
  std::optional<dnnl::reorder> reorder;
};

Arg make_arg(const memory::desc& user_md, const memory::desc& prim_md, bool is_input) {
  Arg arg{user_md, prim_md, std::nullopt};
  if (user_md != prim_md) {
    const memory::desc& from_md = is_input ? user_md : prim_md;
    const memory::desc& to_md = is_input ? prim_md : user_md;
    arg.reorder.emplace(
        dnnl::reorder::primitive_desc(onednn::engine(), from_md, onednn::engine(), to_md));
  }
  return arg;
}

Arg input_arg(const memory::desc& user_md, const memory::desc& prim_md) {
  return make_arg(user_md, prim_md, true);
}

Arg output_arg(const memory::desc& user_md, const memory::desc& prim_md) {
  return make_arg(user_md, prim_md, false);
}

// The user's buffer, or a copy of it reordered into the primitive's layout. (oneDNN memory wraps
// non-const handles; inputs are only read, here and for the bias.)
memory bind_input(const Arg& arg, const float* data, onednn::ScratchBuffers& scratch) {
  memory user_mem(arg.user_md, onednn::engine(), const_cast<float*>(data));
  if (!arg.reorder) return user_mem;
  memory prim_mem = scratch.make_memory(arg.prim_md);
  onednn::execute(*arg.reorder, {{DNNL_ARG_FROM, user_mem}, {DNNL_ARG_TO, prim_mem}});
  return prim_mem;
}

// The user's buffer, or scratch in the primitive's layout for finish_output to reorder back.
memory bind_output(const Arg& arg, float* data, onednn::ScratchBuffers& scratch) {
  if (!arg.reorder) return memory(arg.user_md, onednn::engine(), data);
  return scratch.make_memory(arg.prim_md);
}

void finish_output(const Arg& arg, const memory& prim_mem, float* data) {
  if (!arg.reorder) return;
  memory user_mem(arg.user_md, onednn::engine(), data);
  onednn::execute(*arg.reorder, {{DNNL_ARG_FROM, prim_mem}, {DNNL_ARG_TO, user_mem}});
}

dnnl::convolution_forward::primitive_desc make_forward_pd(const ConvDims& d, dnnl::prop_kind prop,
                                                          bool with_bias) {
  dnnl::convolution_forward::desc conv_desc(prop, dnnl::algorithm::convolution_direct,
                                            prim_md(d, d.src_md), prim_md(d, d.weights_md),
                                            optional_bias_md(d, with_bias), prim_md(d, d.dst_md),
                                            d.strides, d.dilates, d.padding_l, d.padding_r);
  return dnnl::convolution_forward::primitive_desc(conv_desc, onednn::engine());
}

struct Forward {
  dnnl::convolution_forward::primitive_desc conv_pd;
  dnnl::convolution_forward conv;
  Arg src, weights, dst;
};

struct BackwardData {
  dnnl::convolution_backward_data::primitive_desc conv_pd;
  dnnl::convolution_backward_data conv;
  Arg diff_dst, weights, diff_src;
};

struct BackwardWeights {
  dnnl::convolution_backward_weights::primitive_desc conv_pd;
  dnnl::convolution_backward_weights conv;
  Arg src, diff_dst, diff_weights;
};

Forward make_forward(const ConvDims& d, dnnl::prop_kind prop, bool with_bias) {
  auto conv_pd = make_forward_pd(d, prop, with_bias);
  return {conv_pd, dnnl::convolution_forward(conv_pd), input_arg(d.src_md, conv_pd.src_desc()),
          input_arg(d.weights_md, conv_pd.weights_desc()),
          output_arg(d.dst_md, conv_pd.dst_desc())};
}

BackwardData make_backward_data(const ConvDims& d) {
  const auto fwd_pd = make_forward_pd(d, dnnl::prop_kind::forward_training, false);
  dnnl::convolution_backward_data::desc conv_desc(
      dnnl::algorithm::convolution_direct, prim_md(d, d.src_md), prim_md(d, d.weights_md),
      prim_md(d, d.dst_md), d.strides, d.dilates, d.padding_l, d.padding_r);
  dnnl::convolution_backward_data::primitive_desc conv_pd(conv_desc, onednn::engine(), fwd_pd);
  return {conv_pd, dnnl::convolution_backward_data(conv_pd),
          input_arg(d.dst_md, conv_pd.diff_dst_desc()),
          input_arg(d.weights_md, conv_pd.weights_desc()),
          output_arg(d.src_md, conv_pd.diff_src_desc())};
}

BackwardWeights make_backward_weights(const ConvDims& d, bool with_bias) {
  const auto fwd_pd = make_forward_pd(d, dnnl::prop_kind::forward_training, with_bias);
  dnnl::convolution_backward_weights::desc conv_desc(
      dnnl::algorithm::convolution_direct, prim_md(d, d.src_md), prim_md(d, d.weights_md),
      optional_bias_md(d, with_bias), prim_md(d, d.dst_md), d.strides, d.dilates, d.padding_l,
      d.padding_r);
  dnnl::convolution_backward_weights::primitive_desc conv_pd(conv_desc, onednn::engine(), fwd_pd);
  return {conv_pd, dnnl::convolution_backward_weights(conv_pd),
          input_arg(d.src_md, conv_pd.src_desc()), input_arg(d.dst_md, conv_pd.diff_dst_desc()),
          output_arg(d.weights_md, conv_pd.diff_weights_desc())};
}

[[noreturn]] void throw_onednn_error(const char* kernel, const dnnl::error& e) {
  throw Error(detail::str_cat(kernel, ": oneDNN error: ", e.what(), " (status ",
                              dnnl_status2str(e.status), ")"));
}

}  // namespace

void conv2d_forward(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
                    bool for_training) {
  try {
    const ConvDims d = conv_dims(s);
    const bool with_bias = b != nullptr;
    const auto prop =
        for_training ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
    const std::string variant =
        std::string(for_training ? "fwd_training" : "fwd_inference") + (with_bias ? "_bias" : "");
    static onednn::Cache<Forward> cache;
    const Forward& f = cache.get_or_create(cache_key(variant, d),
                                           [&] { return make_forward(d, prop, with_bias); });

    onednn::ScratchBuffers scratch;
    memory dst_mem = bind_output(f.dst, y, scratch);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, bind_input(f.src, x, scratch)},
                                         {DNNL_ARG_WEIGHTS, bind_input(f.weights, w, scratch)},
                                         {DNNL_ARG_DST, dst_mem}};
    if (with_bias) args[DNNL_ARG_BIAS] = memory(d.bias_md, onednn::engine(), const_cast<float*>(b));
    onednn::execute(f.conv, args);
    finish_output(f.dst, dst_mem, y);
  } catch (const dnnl::error& e) {
    throw_onednn_error("conv2d_forward", e);
  }
}

void conv2d_backward_data(const Conv2dShape& s, const float* dy, const float* w, float* dx) {
  try {
    const ConvDims d = conv_dims(s);
    static onednn::Cache<BackwardData> cache;
    const BackwardData& bd =
        cache.get_or_create(cache_key("bwd_data", d), [&] { return make_backward_data(d); });

    onednn::ScratchBuffers scratch;
    memory diff_src_mem = bind_output(bd.diff_src, dx, scratch);
    onednn::execute(bd.conv, {{DNNL_ARG_DIFF_DST, bind_input(bd.diff_dst, dy, scratch)},
                              {DNNL_ARG_WEIGHTS, bind_input(bd.weights, w, scratch)},
                              {DNNL_ARG_DIFF_SRC, diff_src_mem}});
    finish_output(bd.diff_src, diff_src_mem, dx);
  } catch (const dnnl::error& e) {
    throw_onednn_error("conv2d_backward_data", e);
  }
}

void conv2d_backward_weight(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                            float* db) {
  try {
    const ConvDims d = conv_dims(s);
    const bool with_bias = db != nullptr;
    static onednn::Cache<BackwardWeights> cache;
    const BackwardWeights& bw =
        cache.get_or_create(cache_key(with_bias ? "bwd_weights_bias" : "bwd_weights", d),
                            [&] { return make_backward_weights(d, with_bias); });

    onednn::ScratchBuffers scratch;
    memory diff_weights_mem = bind_output(bw.diff_weights, dw, scratch);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, bind_input(bw.src, x, scratch)},
                                         {DNNL_ARG_DIFF_DST, bind_input(bw.diff_dst, dy, scratch)},
                                         {DNNL_ARG_DIFF_WEIGHTS, diff_weights_mem}};
    if (with_bias) args[DNNL_ARG_DIFF_BIAS] = memory(d.bias_md, onednn::engine(), db);
    onednn::execute(bw.conv, args);
    finish_output(bw.diff_weights, diff_weights_mem, dw);
  } catch (const dnnl::error& e) {
    throw_onednn_error("conv2d_backward_weight", e);
  }
}

}  // namespace qat::kernels
