// The handles that cross the C boundary for c10d objects. Shared by c10d.cpp (Gloo, built into
// libumcl_torch_ext) and nccl/umcl_nccl.cpp (NCCL, an optional shared library loaded at run
// time), so a group made by either is used and freed by the same functions.
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

namespace umcl_ext {

// A rendezvous store (always a c10d::TCPStore).
struct StoreHandle {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

// A process group backend: c10d::ProcessGroupGloo (CPU tensors) or c10d::ProcessGroupNCCL
// (CUDA tensors, `cuda` set).
struct GroupHandle {
  c10::intrusive_ptr<c10d::Backend> backend;
  bool cuda;
};

}  // namespace umcl_ext
