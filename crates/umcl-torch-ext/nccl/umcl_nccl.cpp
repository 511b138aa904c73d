// The NCCL process group for umcl, as an optional shared library (libumcl_nccl.so) that the
// Rust side (src/dist.rs, ProcessGroup::nccl) loads with dlopen only for CUDA runs.
//
// Why a separate library: c10d::ProcessGroupNCCL lives in libtorch_cuda.so, which umcl binaries
// do not link (CUDA is loaded at run time, see umcl_models::backend), and its headers need
// nccl.h plus the CUDA toolkit headers, which a CPU build machine does not have by default.
// This file is built by `cargo xtask nccl` (and `cargo xtask gpu-bundle`) with those headers
// from the reference venv; its undefined symbols resolve against the libtorch_cuda.so that the
// process has already loaded with RTLD_GLOBAL.
//
// It exports one function, in the bridge's conventions (csrc/bridge.h): extern "C", never
// throws, NULL on success or an owned error message. The group it returns is the same
// GroupHandle as the Gloo one (csrc/c10d_handles.h), so every collective, and
// umcl_c10d_group_free, are the ones of libumcl_torch_ext.
#define USE_C10D_NCCL 1

#include <chrono>
#include <cstdint>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include "bridge.h"
#include "c10d_handles.h"

extern "C" {

// Creates the NCCL process group of rank `rank` in a group of `size`, meeting the others
// through `store` (a StoreHandle from umcl_c10d_store_new). `device_index` is this process's
// CUDA device (torchrun's LOCAL_RANK): the group is bound to it, so collectives without a
// tensor (barrier) use it too. timeout_ms is the timeout of every collective, enforced by
// NCCL's watchdog thread. NCCL communicators are created lazily, at the first collective. On
// success *out holds a handle for umcl_c10d_group_free.
char* umcl_c10d_nccl_new(void* store, int rank, int size, int64_t timeout_ms, int device_index,
                         void** out) {
  return umcl_ext::guarded([&] {
    if (!at::cuda::is_available()) {
      throw std::runtime_error("the NCCL process group needs a CUDA device; none is visible");
    }
    if (device_index < 0 || device_index >= at::cuda::device_count()) {
      throw std::invalid_argument("CUDA device " + std::to_string(device_index) +
                                  " does not exist (" +
                                  std::to_string(at::cuda::device_count()) + " visible)");
    }
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Store> base = static_cast<umcl_ext::StoreHandle*>(store)->store;
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(base, rank, size, opts);
    group->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index)));
    *out = new umcl_ext::GroupHandle{std::move(group), true};
  });
}

}  // extern "C"
