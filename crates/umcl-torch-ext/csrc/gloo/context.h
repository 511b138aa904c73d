// Stand-in for gloo/context.h; see README.md in this directory.
#pragma once

#include <chrono>

namespace gloo {

// ProcessGroupGloo.hpp's inline setTimeout calls Context::setTimeout; declared, never called
// by umcl (the wheel's definition is the one linked).
class Context {
 public:
  void setTimeout(std::chrono::milliseconds timeout);
};

}  // namespace gloo
