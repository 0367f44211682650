#include "core/threads.h"

#include <omp.h>

#include "core/check.h"

namespace qat {

void set_num_threads(int num_threads) {
  QAT_CHECK(num_threads >= 1, "set_num_threads: need at least 1 thread, got ", num_threads);
  omp_set_num_threads(num_threads);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace qat
