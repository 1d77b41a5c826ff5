// Internal: seed mixing shared by the parameter registry and the data shuffler.
#pragma once

#include <cstdint>
#include <string_view>

namespace dg::detail {

// splitmix64's finaliser: spreads nearby inputs (seed 1, 2, 3; epoch 0, 1, 2) over the whole
// 64-bit range, so related seeds give unrelated random streams.
inline uint64_t mix_seed(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// FNV-1a: a fixed, platform-independent hash of a name (std::hash may differ between standard
// libraries, which would change initial values from one machine to the next).
inline uint64_t hash_name(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace dg::detail
