// Bridge plumbing shared by every module: error messages and the version check.
#include "bridge.h"

#include <torch/headeronly/version.h>

extern "C" {

// Frees a message returned by any bridge function.
void umcl_ext_free_error(char* message) { std::free(message); }

// The libtorch version the bridge was compiled against, e.g. "2.11.0". Static storage.
const char* umcl_ext_torch_version() { return TORCH_VERSION; }

}  // extern "C"
