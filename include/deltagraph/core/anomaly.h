// deltagraph: NaN and Inf localisation.
//
//   { dg::DetectAnomaly detect;  ...forward...; dg::backward(loss); }
//
// While a DetectAnomaly scope is open on a thread, every op's outputs are checked in the forward
// pass and every VJP's results in the backward pass. At the first non-finite value, an
// AnomalyError names the op that *created* it (an op whose inputs were all finite), not one
// that merely passed it on: its label and attributes, its inputs' shapes and value ranges,
// whether it happened in the forward or the backward pass (and, in the backward pass, whose VJP
// it was), its position on the tape and the user's call site. Off by default; when off, the
// cost is one thread-local test per op.
#pragma once

#include "deltagraph/core/error.h"

namespace dg {

class AnomalyError : public Error {
 public:
  using Error::Error;
};

class DetectAnomaly {
 public:
  DetectAnomaly();
  ~DetectAnomaly();
  DetectAnomaly(const DetectAnomaly&) = delete;
  DetectAnomaly& operator=(const DetectAnomaly&) = delete;
  // True if a DetectAnomaly scope is open on this thread.
  static bool enabled();
};

}  // namespace dg
