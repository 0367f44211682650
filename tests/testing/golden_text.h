#pragma once

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace qat::testing {

// Compares `text` with the committed file `path` (workspace-relative; a test `data` dependency)
// and reports the first differing line. With QAT_UPDATE_GOLDEN=1 under `bazel run <target>`,
// writes the file into the workspace instead, for review and commit.
inline void expect_golden_text(const std::string& text, const std::string& path,
                               const std::string& target) {
  const std::string regenerate =
      "If the change is intended, review it and regenerate with\n  QAT_UPDATE_GOLDEN=1 bazel run " +
      target;
  const char* update = std::getenv("QAT_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
    ASSERT_NE(workspace, nullptr) << "QAT_UPDATE_GOLDEN=1 writes into the workspace: run it with "
                                  << "`bazel run " << target << "`, not `bazel test`";
    std::ofstream out(std::string(workspace) + "/" + path);
    out << text;
    ASSERT_TRUE(out.good()) << "cannot write " << workspace << "/" << path;
    return;
  }
  std::ifstream in(path);
  ASSERT_TRUE(in) << "cannot open " << path << ".\n" << regenerate;
  std::stringstream golden;
  golden << in.rdbuf();
  if (golden.str() == text) return;
  std::istringstream want(golden.str()), got(text);
  std::string want_line, got_line;
  for (int line = 1;; ++line) {
    const bool more_want = static_cast<bool>(std::getline(want, want_line));
    const bool more_got = static_cast<bool>(std::getline(got, got_line));
    if (!more_want) want_line = "<end of file>";
    if (!more_got) got_line = "<end of text>";
    if (want_line != got_line || !more_want || !more_got) {
      ADD_FAILURE() << path << " differs at line " << line << ":\n  golden: " << want_line
                    << "\n  actual: " << got_line << "\n"
                    << regenerate;
      return;
    }
  }
}

}  // namespace qat::testing
