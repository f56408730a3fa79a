// Unit tests of the store's choice of data directory for a new segment (store/impl.h choose_dir):
// the filesystem with the most free space less its puts in flight, then on it the directory
// holding the fewest bytes.
#include <gtest/gtest.h>

#include <vector>

#include "store/impl.h"

namespace vodgrid::store {
namespace {

dir_load on(uint64_t device, uint64_t free_bytes, uint64_t used_bytes = 0,
            uint64_t reserved_bytes = 0) {
  return dir_load{device, free_bytes, used_bytes, reserved_bytes};
}

TEST(ChooseDir, OneDirectoryIsChosen) {
  EXPECT_EQ(choose_dir({on(1, 0)}), 0u);
}

TEST(ChooseDir, FilesystemWithMostFreeSpaceWins) {
  EXPECT_EQ(choose_dir({on(1, 100), on(2, 300), on(3, 200)}), 1u);
}

TEST(ChooseDir, PutsInFlightCountAgainstTheirFilesystem) {
  EXPECT_EQ(choose_dir({on(1, 100), on(2, 300, 0, 250)}), 0u);
}

TEST(ChooseDir, PutsInFlightOfEveryDirectoryOfAFilesystemAddUp) {
  // Filesystem 2 has 300 free less 120 + 120 in flight: 60, under filesystem 1's 100.
  EXPECT_EQ(choose_dir({on(1, 100), on(2, 300, 0, 120), on(2, 300, 0, 120)}), 0u);
}

TEST(ChooseDir, MoreReservedThanFreeCountsAsNoFreeSpace) {
  // Filesystem 2 is over-reserved: zero free, level with filesystem 1, so the first wins.
  EXPECT_EQ(choose_dir({on(1, 0), on(2, 10, 0, 50)}), 0u);
}

TEST(ChooseDir, OnOneFilesystemTheDirectoryHoldingFewestBytesWins) {
  EXPECT_EQ(choose_dir({on(1, 500, 50), on(1, 500, 20), on(1, 500, 30)}), 1u);
}

TEST(ChooseDir, ReservedBytesCountAsHeldWithinAFilesystem) {
  // 10 held + 30 reserved is more than 30 held.
  EXPECT_EQ(choose_dir({on(1, 500, 50), on(1, 500, 10, 30), on(1, 500, 30)}), 2u);
}

TEST(ChooseDir, FewestBytesIsSoughtOnlyOnTheWinningFilesystem) {
  // The emptiest directory is on the fuller filesystem.
  EXPECT_EQ(choose_dir({on(1, 100, 0), on(2, 400, 90), on(2, 400, 70)}), 2u);
}

TEST(ChooseDir, TiesGoToTheFirst) {
  EXPECT_EQ(choose_dir({on(1, 100, 10), on(2, 100, 10), on(1, 100, 10)}), 0u);
  EXPECT_EQ(choose_dir({on(1, 100, 10), on(2, 200, 10), on(2, 200, 10)}), 1u);
}

}  // namespace
}  // namespace vodgrid::store
