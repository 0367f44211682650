#pragma once

// QAT_SIMD_CLONES marks a hot element loop to be compiled for AVX-512, AVX2 and the baseline
// x86-64 target, with the copy picked at load time by the CPU (GCC function multiversioning).
// The build targets baseline x86-64, whose 4-wide SSE leaves most of a modern core's vector
// width unused. Every clone runs the same IEEE operations per element, so results are
// bit-identical whichever runs. Only for functions without an OpenMP parallel region inside
// (the outlined region would not inherit the target). Elsewhere it is empty.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QAT_SIMD_CLONES [[gnu::target_clones("avx512f", "avx2", "default")]]
#else
#define QAT_SIMD_CLONES
#endif
