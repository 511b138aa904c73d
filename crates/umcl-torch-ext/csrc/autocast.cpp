// ATen's autocast state, for umcl's autocast guard and the losses' full-precision guard.
// Compiled against the headers, so a signature change in a new libtorch fails the build
// instead of a symbol lookup at run time. Device and dtype cross as small integers: 0 = CPU,
// 1 = CUDA; 15 = bf16, 5 = fp16 (c10::ScalarType's values, checked below).
#include <ATen/autocast_mode.h>

static_assert(static_cast<int>(c10::ScalarType::BFloat16) == 15, "bf16 code");
static_assert(static_cast<int>(c10::ScalarType::Half) == 5, "fp16 code");

namespace {
c10::DeviceType device_type(int device) {
  return device == 1 ? c10::DeviceType::CUDA : c10::DeviceType::CPU;
}
}  // namespace

extern "C" {

bool umcl_autocast_is_enabled(int device) {
  return at::autocast::is_autocast_enabled(device_type(device));
}

void umcl_autocast_set_enabled(int device, bool enabled) {
  at::autocast::set_autocast_enabled(device_type(device), enabled);
}

int umcl_autocast_get_dtype(int device) {
  return static_cast<int>(at::autocast::get_autocast_dtype(device_type(device)));
}

void umcl_autocast_set_dtype(int device, int dtype) {
  at::autocast::set_autocast_dtype(device_type(device), static_cast<c10::ScalarType>(dtype));
}

int64_t umcl_autocast_increment_nesting() { return at::autocast::increment_nesting(); }

int64_t umcl_autocast_decrement_nesting() { return at::autocast::decrement_nesting(); }

void umcl_autocast_clear_cache() { at::autocast::clear_cache(); }

}  // extern "C"
