// c10d (PyTorch's distributed engine, shipped inside libtorch_cpu) for umcl: a TCPStore for
// rendezvous, a Gloo process group, and the four collectives the trainer needs. Rust's side is
// src/dist.rs. The NCCL process group is made by the optional library of nccl/umcl_nccl.cpp
// and used through the same collectives here (c10d::Backend's virtual functions).
//
// Conventions (bridge.h): every function is extern "C", never throws, and returns NULL on
// success or an owned error message. Handles are heap-allocated holders of c10d's intrusive
// pointers, freed by the matching *_free function. Every collective takes a timeout in
// milliseconds: on Gloo it is both gloo's own per-operation timeout and the bound of the wait,
// so a dead or stuck peer turns into an error message instead of a hang (NCCL: see finish).
//
// The wheel has no gloo headers; csrc/gloo/ declares the few gloo names that
// ProcessGroupGloo.hpp mentions (see csrc/gloo/README.md).
#define USE_C10D_GLOO 1

#include "bridge.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "c10d_handles.h"

namespace {

using umcl_ext::GroupHandle;
using umcl_ext::StoreHandle;

std::chrono::milliseconds ms(int64_t timeout_ms) {
  return std::chrono::milliseconds(timeout_ms);
}

// Waits for `work`. Gloo: up to `timeout_ms`, c10d throws on failure or timeout. NCCL: the
// wait only orders the current CUDA stream after the collective (no host synchronisation);
// the collective's own timeout (set in its options) is enforced by NCCL's watchdog.
void finish(const GroupHandle& group, const c10::intrusive_ptr<c10d::Work>& work,
            int64_t timeout_ms, const char* what) {
  bool done = group.cuda ? work->wait() : work->wait(ms(timeout_ms));
  if (!done) {
    throw std::runtime_error(std::string(what) + " was aborted");
  }
}

// Gloo takes CPU tensors, NCCL CUDA tensors.
void check_device(const GroupHandle& group, const at::Tensor& t, const char* what) {
  if (!t.defined()) {
    throw std::invalid_argument(std::string(what) + ": undefined tensor");
  }
  if (group.cuda && !t.device().is_cuda()) {
    throw std::invalid_argument(std::string(what) +
                                ": the NCCL process group takes CUDA tensors, got " +
                                t.device().str());
  }
  if (!group.cuda && !t.device().is_cpu()) {
    throw std::invalid_argument(std::string(what) +
                                ": the Gloo process group takes CPU tensors, got " +
                                t.device().str());
  }
}

GroupHandle& handle(void* group) { return *static_cast<GroupHandle*>(group); }

}  // namespace

extern "C" {

// Connects to (or, with is_server, starts and connects to) the TCPStore at host:port.
// The server waits until `world_size` clients (itself included) are connected; a client retries
// connecting; both give up after timeout_ms. port 0 with is_server lets the OS choose the port
// (read it back with umcl_c10d_store_port). On success *out holds a handle for
// umcl_c10d_store_free.
char* umcl_c10d_store_new(const char* host, uint16_t port, bool is_server, int64_t world_size,
                          bool wait_workers, int64_t timeout_ms, void** out) {
  return umcl_ext::guarded([&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    opts.numWorkers = static_cast<std::size_t>(world_size);
    opts.waitWorkers = wait_workers;
    opts.timeout = ms(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    *out = new StoreHandle{std::move(store)};
  });
}

// The port the store listens on (the chosen one when it was created with port 0).
uint16_t umcl_c10d_store_port(void* store) {
  return static_cast<StoreHandle*>(store)->store->getPort();
}

// Releases a store handle. The server side stops once no process group holds it.
void umcl_c10d_store_free(void* store) { delete static_cast<StoreHandle*>(store); }

// Creates the Gloo process group of rank `rank` in a group of `size`, meeting the others through
// `store`. The transport device is chosen as torch does: the network interface `iface` when not
// NULL (GLOO_SOCKET_IFNAME), else the address `hostname` resolves to when not NULL, else the
// machine's hostname. timeout_ms bounds the connection of all peers and is the default timeout
// of every collective. On success *out holds a handle for umcl_c10d_group_free.
char* umcl_c10d_gloo_new(void* store, int rank, int size, int64_t timeout_ms, const char* iface,
                         const char* hostname, int threads, void** out) {
  return umcl_ext::guarded([&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(ms(timeout_ms));
    if (iface != nullptr) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
    } else if (hostname != nullptr) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(hostname));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    if (threads > 0) {
      opts->threads = threads;
    }
    c10::intrusive_ptr<c10d::Store> base = static_cast<StoreHandle*>(store)->store;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(base, rank, size, opts);
    *out = new GroupHandle{std::move(group), false};
  });
}

// Releases a process group handle (closes its connections; peers see them close).
void umcl_c10d_group_free(void* group) { delete static_cast<GroupHandle*>(group); }

// In-place all-reduce of `tensor` (contiguous; CPU for Gloo, CUDA for NCCL) over the group. op: 0 sum,
// 1 max, 2 min.
char* umcl_c10d_all_reduce(void* group, at::Tensor* tensor, int op, int64_t timeout_ms) {
  return umcl_ext::guarded([&] {
    GroupHandle& g = handle(group);
    check_device(g, *tensor, "all_reduce");
    if (!tensor->is_contiguous()) {
      throw std::invalid_argument("all_reduce: the tensor must be contiguous");
    }
    c10d::AllreduceOptions opts;
    switch (op) {
      case 0: opts.reduceOp = c10d::ReduceOp::SUM; break;
      case 1: opts.reduceOp = c10d::ReduceOp::MAX; break;
      case 2: opts.reduceOp = c10d::ReduceOp::MIN; break;
      default: throw std::invalid_argument("all_reduce: unknown reduce op");
    }
    opts.timeout = ms(timeout_ms);
    std::vector<at::Tensor> tensors{*tensor};
    auto work =
        umcl_ext::start_collective(g.cuda, [&] { return g.backend->allreduce(tensors, opts); });
    finish(g, work, timeout_ms, "all_reduce");
  });
}

// Gathers `input` (the same shape on every rank) from all ranks and concatenates the pieces
// along dimension 0 in rank order into a new tensor, *out (owned by the caller, as tch's
// C_tensor). Gradients do not flow through it.
char* umcl_c10d_all_gather(void* group, at::Tensor* input, int64_t timeout_ms, at::Tensor** out) {
  return umcl_ext::guarded([&] {
    GroupHandle& g = handle(group);
    check_device(g, *input, "all_gather");
    auto* backend = g.backend.get();
    at::Tensor local = input->detach().contiguous();
    std::vector<at::Tensor> inputs{local};
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < backend->getSize(); ++r) {
      outputs[0].push_back(at::empty_like(local));
    }
    c10d::AllgatherOptions opts;
    opts.timeout = ms(timeout_ms);
    auto work = umcl_ext::start_collective(
        g.cuda, [&] { return backend->allgather(outputs, inputs, opts); });
    finish(g, work, timeout_ms, "all_gather");
    *out = new at::Tensor(local.dim() == 0 ? at::stack(outputs[0], 0) : at::cat(outputs[0], 0));
  });
}

// In-place broadcast of `tensor` (contiguous) from rank `root` to all ranks.
char* umcl_c10d_broadcast(void* group, at::Tensor* tensor, int root, int64_t timeout_ms) {
  return umcl_ext::guarded([&] {
    GroupHandle& g = handle(group);
    check_device(g, *tensor, "broadcast");
    if (!tensor->is_contiguous()) {
      throw std::invalid_argument("broadcast: the tensor must be contiguous");
    }
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = ms(timeout_ms);
    std::vector<at::Tensor> tensors{*tensor};
    auto work =
        umcl_ext::start_collective(g.cuda, [&] { return g.backend->broadcast(tensors, opts); });
    finish(g, work, timeout_ms, "broadcast");
  });
}

// Returns once every rank has entered the barrier, or fails after timeout_ms (Gloo; NCCL's
// barrier is a small all-reduce ordered on the current stream).
char* umcl_c10d_barrier(void* group, int64_t timeout_ms) {
  return umcl_ext::guarded([&] {
    GroupHandle& g = handle(group);
    c10d::BarrierOptions opts;
    opts.timeout = ms(timeout_ms);
    auto work =
        umcl_ext::start_collective(g.cuda, [&] { return g.backend->barrier(opts); });
    finish(g, work, timeout_ms, "barrier");
  });
}

}  // extern "C"
