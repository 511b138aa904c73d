// Stand-in for gloo/rendezvous/store.h; see README.md in this directory.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace gloo {
namespace rendezvous {

// The base of ProcessGroupGloo::GlooStore, which umcl never constructs. Only the members that
// GlooStore overrides are declared (GLOO_STORE_HAS_STORE_V2 stays undefined).
class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::vector<char>& data) = 0;
  virtual std::vector<char> get(const std::string& key) = 0;
  virtual void wait(const std::vector<std::string>& keys) = 0;
  virtual void wait(const std::vector<std::string>& keys,
                    const std::chrono::milliseconds& timeout) = 0;
};

}  // namespace rendezvous
}  // namespace gloo
