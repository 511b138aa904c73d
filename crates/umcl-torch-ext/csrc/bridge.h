// Shared conventions of the umcl C++ bridge.
//
// Every exported function is `extern "C"`, never throws, and returns either nothing or a
// heap-allocated error message (NULL on success) that Rust frees with umcl_ext_free_error.
// Tensors cross the boundary as `at::Tensor*`, which is what tch's `Tensor::as_ptr` holds.
#pragma once

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace umcl_ext {

inline char* copy_message(const std::string& message) {
  char* out = static_cast<char*>(std::malloc(message.size() + 1));
  if (out != nullptr) {
    std::memcpy(out, message.c_str(), message.size() + 1);
  }
  return out;
}

// Runs `body`; turns any C++ exception into an owned message.
template <typename F>
char* guarded(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception");
  }
}

}  // namespace umcl_ext
