#pragma once

namespace qat {

// One thread count for everything: our OpenMP loops and oneDNN (Debian's oneDNN runs on the
// same libgomp pool). Default: all cores (OpenMP's default, or OMP_NUM_THREADS).
void set_num_threads(int num_threads);
int get_num_threads();

}  // namespace qat
