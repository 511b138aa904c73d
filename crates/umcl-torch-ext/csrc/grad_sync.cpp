// Gradient all-reduce overlapped with the backward pass: what c10d's Reducer does for PyTorch's
// DistributedDataParallel, reduced to what umcl's trainer needs. Rust's side is
// src/grad_sync.rs.
//
// A hook after gradient accumulation (torch::autograd::PostAccumulateGradHook, the C++ form of
// `register_post_accumulate_grad_hook`) is set on every parameter. While the sync is armed (the
// last backward pass of an optimizer step), each hook marks its parameter ready; when every
// parameter of a bucket is ready the bucket's gradients are copied into one flat buffer and its
// all-reduce (sum) starts asynchronously on the process group, while the backward pass goes on.
// Buckets start strictly in index order, so every rank issues the same collectives in the same
// order whatever order its gradients arrive in. `finish` starts the buckets whose parameters
// got no gradient in this pass (a zero contribution), waits for all, and copies the sums back.
//
// Each bucket's buffer carries one flag per parameter after the gradients: 1 when this rank
// has a gradient for it. Summed over ranks, the flag tells whether any rank had one: such a
// parameter gets the (possibly zero) sum as its gradient, the others stay without gradient, as
// in a one-process run.
//
// While recording (set at creation), the hooks also note the order in which parameters become
// ready; the trainer rebuilds the buckets in that order after its first step (as DDP does), so
// the first buckets are the first ready.
#include "bridge.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include "c10d_handles.h"

namespace {

struct Bucket {
  std::vector<size_t> params;  // indices into GradSync::params, in buffer order
  int64_t numel = 0;           // gradient elements (the flags follow them)
  size_t pending = 0;          // parameters not yet ready in this pass
  at::Tensor flat;             // the buffer being reduced
  c10::intrusive_ptr<c10d::Work> work;
};

struct GradSync {
  c10::intrusive_ptr<c10d::Backend> backend;
  bool cuda = false;
  int64_t timeout_ms = 0;
  std::vector<at::Tensor> params;
  std::vector<Bucket> buckets;
  std::vector<size_t> bucket_of;  // parameter -> bucket
  std::vector<char> ready;        // parameter ready in this pass

  std::mutex mu;
  bool armed = false;
  size_t next = 0;  // the next bucket to start
  bool recording = true;
  std::vector<char> seen;
  std::vector<int64_t> order;  // first-ready order while recording
  std::string error;           // the first failure inside a hook, reported by finish
  size_t early = 0;            // buckets started by hooks in this pass
  size_t last_early = 0;       // ... in the last finished pass
  size_t last_buckets = 0;     // buckets of the last finished pass

  // Sets the buckets: `order` lists every parameter once, `sizes` how many of them each
  // bucket takes, in order.
  void set_buckets(const int64_t* order_in, const int64_t* sizes, size_t n_buckets) {
    std::vector<Bucket> out(n_buckets);
    std::vector<size_t> of(params.size(), SIZE_MAX);
    size_t at = 0;
    for (size_t b = 0; b < n_buckets; ++b) {
      TORCH_CHECK(sizes[b] > 0, "bucket ", b, " is empty");
      for (int64_t j = 0; j < sizes[b]; ++j, ++at) {
        TORCH_CHECK(at < params.size(), "the buckets hold more entries than parameters");
        int64_t p = order_in[at];
        TORCH_CHECK(p >= 0 && static_cast<size_t>(p) < params.size(), "parameter index ", p,
                    " out of range");
        TORCH_CHECK(of[p] == SIZE_MAX, "parameter ", p, " is in two buckets");
        of[p] = b;
        out[b].params.push_back(static_cast<size_t>(p));
        out[b].numel += params[p].numel();
      }
      const at::Tensor& first = params[out[b].params.front()];
      for (size_t p : out[b].params) {
        TORCH_CHECK(params[p].scalar_type() == first.scalar_type() &&
                        params[p].device() == first.device(),
                    "bucket ", b, " mixes dtypes or devices");
      }
    }
    TORCH_CHECK(at == params.size(), "the buckets hold ", at, " of ", params.size(),
                " parameters");
    buckets = std::move(out);
    bucket_of = std::move(of);
    reset();
  }

  void reset() {
    armed = false;
    next = 0;
    early = 0;
    ready.assign(params.size(), 0);
    for (Bucket& b : buckets) {
      b.pending = b.params.size();
      b.flat = at::Tensor();
      b.work.reset();
    }
  }

  // Copies bucket k's gradients and flags into its buffer and starts its all-reduce.
  void start(size_t k) {
    Bucket& b = buckets[k];
    const at::Tensor& first = params[b.params.front()];
    auto opts = first.options().requires_grad(false);
    std::vector<at::Tensor> parts;
    parts.reserve(b.params.size() + 1);
    std::vector<float> flags;
    flags.reserve(b.params.size());
    for (size_t p : b.params) {
      const at::Tensor& g = params[p].grad();
      if (g.defined()) {
        parts.push_back(g.detach().reshape({-1}));
        flags.push_back(1.0f);
      } else {
        parts.push_back(at::zeros({params[p].numel()}, opts));
        flags.push_back(0.0f);
      }
    }
    parts.push_back(at::tensor(flags).to(opts.device(), opts.dtype()));
    b.flat = at::cat(parts, 0);
    c10d::AllreduceOptions ar;
    ar.reduceOp = c10d::ReduceOp::SUM;
    ar.timeout = std::chrono::milliseconds(timeout_ms);
    std::vector<at::Tensor> tensors{b.flat};
    b.work = umcl_ext::start_collective(cuda, [&] { return backend->allreduce(tensors, ar); });
  }

  // Starts every bucket from `next` on whose parameters are all ready.
  void start_ready() {
    while (next < buckets.size() && buckets[next].pending == 0) {
      start(next);
      ++next;
    }
  }

  // Called by the hook of parameter p after its gradient was accumulated.
  void on_ready(size_t p) {
    std::lock_guard<std::mutex> lock(mu);
    if (recording && !seen[p]) {
      seen[p] = 1;
      order.push_back(static_cast<int64_t>(p));
    }
    if (!armed || ready[p] || !error.empty()) {
      return;
    }
    ready[p] = 1;
    Bucket& b = buckets[bucket_of[p]];
    b.pending -= 1;
    try {
      size_t before = next;
      start_ready();
      early += next - before;
    } catch (const std::exception& e) {
      error = e.what();
    }
  }

  void finish() {
    std::lock_guard<std::mutex> lock(mu);
    TORCH_CHECK(armed, "finish without arm: no backward pass was armed for this step");
    struct Reset {
      GradSync* s;
      ~Reset() { s->reset(); }
    } reset_on_exit{this};
    if (!error.empty()) {
      throw std::runtime_error(error);
    }
    last_early = early;
    last_buckets = buckets.size();
    for (; next < buckets.size(); ++next) {
      start(next);
    }
    std::vector<at::Tensor> flags;
    for (Bucket& b : buckets) {
      bool done = cuda ? b.work->wait() : b.work->wait(std::chrono::milliseconds(timeout_ms));
      TORCH_CHECK(done, "all_reduce was aborted");
      flags.push_back(b.flat.narrow(0, b.numel, static_cast<int64_t>(b.params.size())));
    }
    // One read of every bucket's flags (one host synchronisation on CUDA).
    at::Tensor any = at::cat(flags, 0).to(at::kCPU, at::kFloat);
    const float* any_p = any.const_data_ptr<float>();
    size_t f = 0;
    for (Bucket& b : buckets) {
      int64_t offset = 0;
      for (size_t p : b.params) {
        at::Tensor& param = params[p];
        int64_t n = param.numel();
        if (any_p[f++] > 0.0f) {
          at::Tensor sum = b.flat.narrow(0, offset, n).view(param.sizes());
          at::Tensor& grad = param.mutable_grad();
          if (grad.defined()) {
            grad.copy_(sum);
          } else {
            grad = sum.clone();
          }
        }
        offset += n;
      }
    }
  }
};

struct ReadyHook : torch::autograd::PostAccumulateGradHook {
  std::shared_ptr<GradSync> sync;
  size_t index;
  ReadyHook(std::shared_ptr<GradSync> s, size_t i) : sync(std::move(s)), index(i) {}
  void operator()(const torch::autograd::Variable& /*tensor*/) override { sync->on_ready(index); }
};

struct GradSyncHandle {
  std::shared_ptr<GradSync> sync;
};

GradSync& get(void* handle) { return *static_cast<GradSyncHandle*>(handle)->sync; }

}  // namespace

extern "C" {

// Sets a ready hook on each of the n leaf tensors `params` (which must require gradients and
// have no post-accumulate hook yet) and buckets them by `order`/`sizes` (see set_buckets) for
// all-reduce on `group`; timeout_ms bounds each bucket's wait on Gloo. Records the order in
// which gradients become ready until umcl_grad_sync_set_buckets. *out: a handle for
// umcl_grad_sync_free.
char* umcl_grad_sync_new(void* group, at::Tensor* const* params, size_t n, const int64_t* order,
                         const int64_t* sizes, size_t n_buckets, int64_t timeout_ms,
                         void** out) {
  return umcl_ext::guarded([&] {
    auto& g = *static_cast<umcl_ext::GroupHandle*>(group);
    auto sync = std::make_shared<GradSync>();
    sync->backend = g.backend;
    sync->cuda = g.cuda;
    sync->timeout_ms = timeout_ms;
    for (size_t i = 0; i < n; ++i) {
      const at::Tensor& p = *params[i];
      TORCH_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "parameter ", i,
                  " is not a leaf tensor that requires gradients");
      TORCH_CHECK(torch::autograd::impl::post_acc_grad_hooks(p) == nullptr, "parameter ", i,
                  " already has a post-accumulate-grad hook");
      if (g.cuda) {
        TORCH_CHECK(p.is_cuda(), "parameter ", i, ": the NCCL process group takes CUDA tensors");
      } else {
        TORCH_CHECK(p.is_cpu(), "parameter ", i, ": the Gloo process group takes CPU tensors");
      }
      sync->params.push_back(p);
    }
    sync->seen.assign(n, 0);
    sync->set_buckets(order, sizes, n_buckets);
    for (size_t i = 0; i < n; ++i) {
      torch::autograd::impl::set_post_acc_grad_hooks(sync->params[i],
                                                     std::make_unique<ReadyHook>(sync, i));
    }
    *out = new GradSyncHandle{std::move(sync)};
  });
}

// Arms the sync for the next backward pass: buckets start as their gradients become ready.
// Arming again before finish discards the pending state (after a failed step).
char* umcl_grad_sync_arm(void* handle) {
  return umcl_ext::guarded([&] {
    GradSync& s = get(handle);
    std::lock_guard<std::mutex> lock(s.mu);
    s.reset();
    s.armed = true;
  });
}

// After the armed backward pass: starts the remaining buckets, waits for all, and leaves the
// sum over ranks in every parameter's gradient. Disarms, also on failure.
char* umcl_grad_sync_finish(void* handle) {
  return umcl_ext::guarded([&] { get(handle).finish(); });
}

// The parameters in the order their gradients first became ready while recording (those never
// ready are absent): writes up to `cap` indices to `out` and their count to *n.
char* umcl_grad_sync_order(void* handle, int64_t* out, size_t cap, size_t* n) {
  return umcl_ext::guarded([&] {
    GradSync& s = get(handle);
    std::lock_guard<std::mutex> lock(s.mu);
    *n = std::min(cap, s.order.size());
    std::copy_n(s.order.begin(), *n, out);
  });
}

// Replaces the buckets (see set_buckets) and stops recording. Not while armed.
char* umcl_grad_sync_set_buckets(void* handle, const int64_t* order, const int64_t* sizes,
                                 size_t n_buckets) {
  return umcl_ext::guarded([&] {
    GradSync& s = get(handle);
    std::lock_guard<std::mutex> lock(s.mu);
    TORCH_CHECK(!s.armed, "set_buckets while armed");
    s.set_buckets(order, sizes, n_buckets);
    s.recording = false;
  });
}

// How many buckets the last finished pass had, and how many of them started inside the
// backward pass (the rest started in finish).
void umcl_grad_sync_stats(void* handle, size_t* buckets, size_t* early) {
  GradSync& s = get(handle);
  std::lock_guard<std::mutex> lock(s.mu);
  *buckets = s.last_buckets;
  *early = s.last_early;
}

// Removes the hooks and releases the sync.
void umcl_grad_sync_free(void* handle) {
  auto* h = static_cast<GradSyncHandle*>(handle);
  for (const at::Tensor& p : h->sync->params) {
    auto& hook = torch::autograd::impl::post_acc_grad_hooks(p);
    if (dynamic_cast<ReadyHook*>(hook.get()) != nullptr) {
      hook.reset();
    }
  }
  delete h;
}

}  // extern "C"
