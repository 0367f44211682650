#pragma once

#include <cstdint>

// 2-D convolution kernels on raw contiguous buffers (NCHW activations, OIHW weights), with the
// semantics of torch.nn.functional.conv2d: cross-correlation, zero padding on both sides, groups.
// The fast entry points run oneDNN (float only); the *_ref twins are plain loops for tests and
// for the float64 gradcheck path.
namespace qat::kernels {

// Every size of one convolution. Stride S >= 1, padding P >= 0 (both sides), dilation D >= 1
// (PyTorch's: 1 means a dense kernel), G groups dividing C and OC. OH/OW come from
// conv2d_output_size.
struct Conv2dShape {
  int64_t N, C, H, W;  // input [N, C, H, W]
  int64_t OC, KH, KW;  // weight [OC, C/G, KH, KW]
  int64_t SH, SW;
  int64_t PH, PW;
  int64_t DH, DW;
  int64_t G;
  int64_t OH = 0, OW = 0;  // output [N, OC, OH, OW]
};

// floor((in + 2*padding - dilation*(kernel-1) - 1) / stride) + 1; < 1 means the input is too
// small for the kernel (callers reject that before calling a kernel).
inline int64_t conv2d_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                                  int64_t dilation) {
  const int64_t span = in + 2 * padding - dilation * (kernel - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

// ---- oneDNN (float32)

// y = conv(x, w) + b. `b` may be null. `for_training` selects oneDNN's forward_training
// propagation (what the backward primitives are hinted with) instead of forward_inference.
void conv2d_forward(const Conv2dShape& s,
                    const float* x,  // [N, C, H, W]
                    const float* w,  // [OC, C/G, KH, KW]
                    const float* b,  // [OC] or null
                    float* y,        // [N, OC, OH, OW]
                    bool for_training);

// dx = dL/dx given dy = dL/dy (overwrites dx).
void conv2d_backward_data(const Conv2dShape& s,
                          const float* dy,  // [N, OC, OH, OW]
                          const float* w,   // [OC, C/G, KH, KW]
                          float* dx);       // [N, C, H, W]

// dw = dL/dw and, when `db` is not null, db = dL/db = dy summed over N, OH, OW (overwrites both).
void conv2d_backward_weight(const Conv2dShape& s,
                            const float* x,   // [N, C, H, W]
                            const float* dy,  // [N, OC, OH, OW]
                            float* dw,        // [OC, C/G, KH, KW]
                            float* db);       // [OC] or null

// ---- reference loops (explicitly instantiated for float and double)

template <class T>
void conv2d_forward_ref(const Conv2dShape& s,
                        const T* x,  // [N, C, H, W]
                        const T* w,  // [OC, C/G, KH, KW]
                        const T* b,  // [OC] or null
                        T* y);       // [N, OC, OH, OW]

template <class T>
void conv2d_backward_data_ref(const Conv2dShape& s,
                              const T* dy,  // [N, OC, OH, OW]
                              const T* w,   // [OC, C/G, KH, KW]
                              T* dx);       // [N, C, H, W]

template <class T>
void conv2d_backward_weight_ref(const Conv2dShape& s,
                                const T* x,   // [N, C, H, W]
                                const T* dy,  // [N, OC, OH, OW]
                                T* dw,        // [OC, C/G, KH, KW]
                                T* db);       // [OC] or null

}  // namespace qat::kernels
