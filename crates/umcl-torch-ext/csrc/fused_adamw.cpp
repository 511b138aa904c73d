// Fused AdamW: one call of at::_fused_adamw_ over lists of tensors (one kernel family for all
// of them instead of several kernels per tensor). CPU and CUDA kernels ship with libtorch.
#include "bridge.h"

#include <ATen/ATen.h>
#include <ATen/ops/_fused_adamw.h>

#include <cstddef>
#include <stdexcept>
#include <vector>

namespace {

std::vector<at::Tensor> gather(at::Tensor* const* tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (tensors[i] == nullptr) {
      throw std::invalid_argument("null tensor pointer in a tensor list");
    }
    out.push_back(*tensors[i]);
  }
  return out;
}

}  // namespace

extern "C" {

// AdamW (decoupled weight decay, no amsgrad) over n parameters in place: params, exp_avgs and
// exp_avg_sqs are updated; state_steps hold the step number t (float32, >= 1) used for the bias
// corrections and are only read. Returns NULL or an owned error message.
char* umcl_ext_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads,
                           at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                           at::Tensor* const* state_steps, size_t n, double lr, double beta1,
                           double beta2, double weight_decay, double eps, bool maximize) {
  return umcl_ext::guarded([&] {
    std::vector<at::Tensor> p = gather(params, n);
    std::vector<at::Tensor> g = gather(grads, n);
    std::vector<at::Tensor> m = gather(exp_avgs, n);
    std::vector<at::Tensor> v = gather(exp_avg_sqs, n);
    std::vector<at::Tensor> s = gather(state_steps, n);
    // libtorch's CPU kernel trusts these; a mismatch would read or write out of bounds.
    for (size_t i = 0; i < n; ++i) {
      for (const at::Tensor* t : {&g[i], &m[i], &v[i]}) {
        TORCH_CHECK(t->sizes() == p[i].sizes(), "tensor ", i, ": parameter shape ",
                    p[i].sizes(), " but gradient/moment shape ", t->sizes());
        TORCH_CHECK(t->device() == p[i].device() && t->scalar_type() == p[i].scalar_type(),
                    "tensor ", i, ": gradient/moment device or dtype differs from the parameter");
      }
      TORCH_CHECK(s[i].numel() == 1 && s[i].scalar_type() == at::kFloat,
                  "tensor ", i, ": the step must be a float32 scalar");
    }
    std::vector<at::Tensor> no_max;
    at::_fused_adamw_(p, g, m, v, no_max, s, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, maximize);
  });
}

// Sets the gradients of n leaf tensors to undefined (torch's `zero_grad(set_to_none=True)`):
// no kernel runs, and the next backward pass writes fresh gradients instead of adding.
char* umcl_ext_clear_grads(at::Tensor* const* tensors, size_t n) {
  return umcl_ext::guarded([&] {
    for (at::Tensor& t : gather(tensors, n)) {
      t.mutable_grad().reset();
    }
  });
}

}  // extern "C"
