#pragma once

#include <cstdint>
#include <vector>

// 2-D pooling on NCHW buffers, forward and backward, with PyTorch 1.13 semantics. The float32
// entry points are the fast paths (core/kernels/onednn/pool.cc); the *_ref templates are plain
// loops (pool_ref.cc), instantiated for float and double. Backward kernels overwrite dx.
namespace qat::kernels {

// One pooling call: x [N, C, H, W] -> y [N, C, OH, OW]. Output row oh reads input rows
// oh * SH - PH + kh * DH for kh < KH (columns alike); rows outside [0, H) are padding.
// ceil_mode needs no field of its own: it only makes OH / OW larger.
struct Pool2dDims {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t OH = 0, OW = 0;
  int64_t KH = 1, KW = 1;
  int64_t SH = 1, SW = 1;
  int64_t PH = 0, PW = 0;
  int64_t DH = 1, DW = 1;  // dilation; avg pooling has none
};

// PyTorch's pooling_output_shape: floor((in + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1,
// rounded up instead in ceil_mode, where a last window starting past the input and the left
// padding is dropped. May be < 1; callers check.
int64_t pool2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad,
                           int64_t dilation, bool ceil_mode);

// ---- max_pool2d, as torch.nn.functional.max_pool2d. Each output is the max over the input taps
// of its dilated window; ties go to the first max in (kh, kw) scan order and NaN wins, as in
// PyTorch's `val > max || isnan(val)`. A window whose taps all fall in padding (possible only with
// dilation) gives -inf and passes no gradient.

// What a training max_pool2d_forward keeps for max_pool2d_backward. Opaque to callers: either
// oneDNN's workspace (in oneDNN's own layout) or, when the OpenMP kernel ran, the argmax.
struct MaxPool2dWorkspace {
  bool from_onednn = false;
  std::vector<uint8_t> onednn_bytes;
  std::vector<int64_t> argmax;  // [N, C, OH, OW]: ih * W + iw, or -1 for a window without input
};

// `ws` null means inference: no workspace is produced and no backward can follow.
void max_pool2d_forward(const float* x,  // [N, C, H, W]
                        float* y,        // [N, C, OH, OW]
                        const Pool2dDims& d, MaxPool2dWorkspace* ws);
// dx = dy scattered (summed) onto each window's argmax.
void max_pool2d_backward(const float* dy,  // [N, C, OH, OW]
                         float* dx,        // [N, C, H, W]
                         const Pool2dDims& d, const MaxPool2dWorkspace& ws);

// ---- avg_pool2d, as torch.nn.functional.avg_pool2d (no divisor_override). The divisor is the
// window clipped to the padded input [-PH, H + PH) with count_include_pad, else clipped to the
// input [0, H); so positions that ceil_mode adds past the padded input never count.
void avg_pool2d_forward(const float* x,  // [N, C, H, W]
                        float* y,        // [N, C, OH, OW]
                        const Pool2dDims& d, bool count_include_pad);
void avg_pool2d_backward(const float* dy,  // [N, C, OH, OW]
                         float* dx,        // [N, C, H, W]
                         const Pool2dDims& d, bool count_include_pad);

// ---- adaptive_avg_pool2d, as torch.nn.functional.adaptive_avg_pool2d: output row oh averages
// input rows [floor(oh * H / OH), ceil((oh + 1) * H / OH)) (columns alike). Bins may overlap.
void adaptive_avg_pool2d_forward(const float* x,  // [N, C, H, W]
                                 float* y,        // [N, C, OH, OW]
                                 int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                                 int64_t OW);
void adaptive_avg_pool2d_backward(const float* dy,  // [N, C, OH, OW]
                                  float* dx,        // [N, C, H, W]
                                  int64_t N, int64_t C, int64_t H, int64_t W, int64_t OH,
                                  int64_t OW);

// ---- reference twins: serial plain loops, same buffers and shapes as above.

template <class T>
void max_pool2d_forward_ref(const T* x, T* y, const Pool2dDims& d);
// Recomputes each window's argmax from x.
template <class T>
void max_pool2d_backward_ref(const T* x, const T* dy, T* dx, const Pool2dDims& d);

template <class T>
void avg_pool2d_forward_ref(const T* x, T* y, const Pool2dDims& d, bool count_include_pad);
template <class T>
void avg_pool2d_backward_ref(const T* dy, T* dx, const Pool2dDims& d, bool count_include_pad);

template <class T>
void adaptive_avg_pool2d_forward_ref(const T* x, T* y, int64_t N, int64_t C, int64_t H, int64_t W,
                                     int64_t OH, int64_t OW);
template <class T>
void adaptive_avg_pool2d_backward_ref(const T* dy, T* dx, int64_t N, int64_t C, int64_t H,
                                      int64_t W, int64_t OH, int64_t OW);

}  // namespace qat::kernels
