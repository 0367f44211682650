#include "zoo/flags.h"

#include <gtest/gtest.h>

#include "core/check.h"

namespace qat::zoo {
namespace {

Flags parse(std::vector<const char*> args) {
  args.insert(args.begin(), "prog");
  return Flags({{"epochs", {"1", "epochs"}}, {"lr", {"0.1", "lr"}}, {"name", {"", "a name"}}},
               static_cast<int>(args.size()), args.data());
}

TEST(Flags, DefaultsAndBothSyntaxes) {
  Flags f = parse({"--epochs", "3", "--lr=0.5"});
  EXPECT_EQ(f.get_int("epochs"), 3);
  EXPECT_DOUBLE_EQ(f.get_double("lr"), 0.5);
  EXPECT_EQ(f.get_string("name"), "");
  EXPECT_FALSE(f.help_requested());
  EXPECT_TRUE(parse({"--help"}).help_requested());
}

TEST(Flags, ErrorsNameTheFlag) {
  try {
    parse({"--epoch", "3"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown flag --epoch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse({"--epochs"}), Error);
  EXPECT_THROW(parse({"--epochs", "three"}).get_int("epochs"), Error);
  EXPECT_THROW(parse({"--lr", "1x"}).get_double("lr"), Error);
  EXPECT_THROW(parse({"positional"}), Error);
}

}  // namespace
}  // namespace qat::zoo
