// A training program for one zoo model (QAT_MODEL_NAME, set by its BUILD target):
//   bazel run //zoo:resnet18 -- --config zoo/configs/resnet18_fashion_mnist.json [--resume true]
// is `qat train` that also checks that the config is one of this model.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "zoo/qat_commands.h"

int main(int argc, char** argv) {
  try {
    qat::zoo::cli::enter_invocation_directory();
    return qat::zoo::cli::train_model_main(QAT_MODEL_NAME, argc, argv);
  } catch (const qat::zoo::cli::UsageError& e) {
    std::fprintf(stderr, "%s: error: %s\n", QAT_MODEL_NAME, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", QAT_MODEL_NAME, e.what());
    return 1;
  }
}
