// The handles that cross the C boundary for c10d objects. Shared by c10d.cpp (Gloo, built into
// libumcl_torch_ext) and nccl/umcl_nccl.cpp (NCCL, an optional shared library loaded at run
// time), so a group made by either is used and freed by the same functions.
#pragma once

#include <mutex>

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

// Starts a collective on a group (`cuda`: an NCCL one): `start()` calls the backend
// (allreduce, allgather, ...) and returns its work. On Gloo the call is made under one process-wide lock. Each call records the
// collective in c10d's process-wide flight recorder, and torch 2.11 inserts a new group's
// status into the recorder's std::map before taking the recorder's own mutex
// (FlightRecorder::recordWithResetEnabled), so two Gloo groups of one process (ranks as
// threads, as in the tests) starting collectives at once corrupt that map and crash. The lock
// covers only the enqueue, never the wait: a Gloo call returns as soon as its work is queued.
// NCCL calls are not serialised: their first call joins the communicator and blocks until
// every rank does.
template <class Start>
c10::intrusive_ptr<c10d::Work> start_collective(bool cuda, Start start) {
  if (cuda) {
    return start();
  }
  static std::mutex enqueue;
  std::lock_guard<std::mutex> lock(enqueue);
  return start();
}

}  // namespace umcl_ext
