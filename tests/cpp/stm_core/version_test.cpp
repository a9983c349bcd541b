#include "stm/version.hpp"

#include <gtest/gtest.h>

#include <string_view>

TEST(Version, IsSemantic) {
  std::string_view v = tmr::stm::version();
  EXPECT_EQ(2, std::count(v.begin(), v.end(), '.'));
}
