//! c10d through the bridge: two Gloo ranks as two threads of this process, on 127.0.0.1.

use std::thread;
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use umcl_torch_ext::dist::{GlooDevice, ProcessGroup, ReduceOp, Store};
use umcl_torch_ext::grad_sync::{GradSync, Overlap};

const TIMEOUT: Duration = Duration::from_secs(20);

fn loopback() -> GlooDevice {
    GlooDevice::Hostname("127.0.0.1".into())
}

/// Runs `body(group)` on `world` ranks, each in its own thread, and returns their results in
/// rank order. Rank 0 serves the store on a port the OS chooses.
fn run_ranks<T: Send + 'static>(
    world: usize,
    timeout: Duration,
    body: impl Fn(ProcessGroup) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let server = Store::serve("127.0.0.1", 0, world, timeout).unwrap();
    let port = server.port();
    let mut server = Some(server);
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let body = body.clone();
            let store = if rank == 0 { server.take() } else { None };
            thread::spawn(move || {
                let store = match store {
                    Some(s) => s,
                    None => Store::connect("127.0.0.1", port, false, world, timeout).unwrap(),
                };
                let group =
                    ProcessGroup::gloo(store, rank, world, &loopback(), 1, timeout).unwrap();
                body(group)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn collectives_on_two_ranks() {
    let out = run_ranks(2, TIMEOUT, |g| {
        let r = g.rank() as f32;
        // all_reduce: sum, max, min of [r, 10 r].
        let mut sum = Tensor::from_slice(&[r, 10.0 * r]);
        g.all_reduce(&mut sum, ReduceOp::Sum).unwrap();
        let mut max = Tensor::from_slice(&[r, -r]);
        g.all_reduce(&mut max, ReduceOp::Max).unwrap();
        let mut min = Tensor::from_slice(&[r, -r]);
        g.all_reduce(&mut min, ReduceOp::Min).unwrap();
        // all_gather: rank r contributes rows [[r, r], [r+0.5, r+0.5]].
        let local = Tensor::from_slice(&[r, r, r + 0.5, r + 0.5]).reshape([2, 2]);
        let gathered = g.all_gather(&local).unwrap();
        // broadcast from rank 1.
        let mut b = Tensor::from_slice(&[r + 7.0; 3]);
        g.broadcast(&mut b, 1).unwrap();
        g.barrier().unwrap();
        (
            Vec::<f32>::try_from(sum).unwrap(),
            Vec::<f32>::try_from(max).unwrap(),
            Vec::<f32>::try_from(min).unwrap(),
            Vec::<f32>::try_from(gathered.flatten(0, -1)).unwrap(),
            Vec::<f32>::try_from(b).unwrap(),
        )
    });
    for (rank, (sum, max, min, gathered, b)) in out.into_iter().enumerate() {
        assert_eq!(sum, vec![1.0, 10.0], "rank {rank}");
        assert_eq!(max, vec![1.0, 0.0], "rank {rank}");
        assert_eq!(min, vec![0.0, -1.0], "rank {rank}");
        assert_eq!(
            gathered,
            vec![0.0, 0.0, 0.5, 0.5, 1.0, 1.0, 1.5, 1.5],
            "rank {rank}"
        );
        assert_eq!(b, vec![8.0; 3], "rank {rank}");
    }
}

#[test]
fn gather_with_local_passes_gradients_to_own_rows_only() {
    let out = run_ranks(2, TIMEOUT, |g| {
        let r = g.rank() as f64;
        let local = Tensor::from_slice(&[r + 1.0, r + 2.0])
            .reshape([1, 2])
            .set_requires_grad(true);
        let all = g.all_gather_with_local(&local).unwrap();
        // A loss over all rows with row-dependent weights: d/d(row i) = (i + 1).
        let w = Tensor::from_slice(&[1.0f64, 1.0, 2.0, 2.0]).reshape([2, 2]);
        let loss = (&all * &w).sum(Kind::Double);
        loss.backward();
        (
            Vec::<f64>::try_from(all.detach().flatten(0, -1)).unwrap(),
            Vec::<f64>::try_from(local.grad().flatten(0, -1)).unwrap(),
        )
    });
    for (rank, (all, grad)) in out.into_iter().enumerate() {
        assert_eq!(all, vec![1.0, 2.0, 2.0, 3.0], "rank {rank}");
        let w = (rank + 1) as f64;
        assert_eq!(grad, vec![w, w], "rank {rank}");
    }
}

#[test]
fn a_departed_rank_is_an_error_within_the_timeout_not_a_hang() {
    let timeout = Duration::from_secs(5);
    let out = run_ranks(2, timeout, move |g| {
        let mut t = Tensor::from_slice(&[1.0f32]);
        g.all_reduce(&mut t, ReduceOp::Sum).unwrap();
        if g.rank() == 1 {
            drop(g); // rank 1 leaves: its connections close
            return None;
        }
        let started = Instant::now();
        let mut errors = Vec::new();
        // Rank 0 keeps communicating; it must fail (peer closed or timed out), not block.
        for _ in 0..3 {
            if let Err(e) = g.all_reduce(&mut t, ReduceOp::Sum) {
                errors.push(e.to_string());
                break;
            }
        }
        Some((errors, started.elapsed()))
    });
    let (errors, elapsed) = out[0].clone().unwrap();
    assert_eq!(errors.len(), 1, "rank 0 saw no error: {errors:?}");
    assert!(errors[0].starts_with("all_reduce:"), "{}", errors[0]);
    assert!(
        elapsed < timeout + Duration::from_secs(5),
        "rank 0 took {elapsed:?} to notice, over the {timeout:?} timeout"
    );
}

#[test]
fn a_silent_rank_is_an_error_after_the_timeout() {
    let timeout = Duration::from_secs(2);
    let out = run_ranks(2, timeout, move |g| {
        if g.rank() == 1 {
            // Alive but never joins the collective (a stuck rank).
            thread::sleep(timeout * 2);
            return None;
        }
        let started = Instant::now();
        let mut t = Tensor::from_slice(&[1.0f32]);
        let err = g.all_reduce(&mut t, ReduceOp::Sum).unwrap_err().to_string();
        Some((err, started.elapsed()))
    });
    let (err, elapsed) = out[0].clone().unwrap();
    assert!(err.starts_with("all_reduce: rank 0 of 2:"), "{err}");
    assert!(
        elapsed >= timeout - Duration::from_millis(200) && elapsed < timeout * 2,
        "rank 0 gave up after {elapsed:?}, the timeout is {timeout:?}"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let err = match Store::serve("127.0.0.1", port, 1, Duration::from_secs(2)) {
        Ok(_) => panic!("a second server on port {port} was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("TCPStore:"), "{err}");
    assert!(
        err.to_lowercase().contains("address already in use") || err.contains(&port.to_string()),
        "{err}"
    );
}

#[test]
fn gloo_rejects_cuda_free_misuse_without_aborting() {
    let out = run_ranks(1, TIMEOUT, |g| {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0])
            .reshape([2, 2])
            .tr();
        let mut t = t.shallow_clone();
        g.all_reduce(&mut t, ReduceOp::Sum).unwrap_err().to_string()
    });
    assert!(out[0].contains("contiguous"), "{}", out[0]);
}

/// Parameters of a small chain `y = w3 (w2 (w1 x))` plus one used on rank 0 only (`solo`) and
/// one used nowhere (`idle`), each its own bucket (limit 1 element per bucket is below every
/// size, so a tensor is alone in its bucket).
struct Chain {
    w: Vec<Tensor>,
    solo: Tensor,
    idle: Tensor,
}

impl Chain {
    fn new() -> Self {
        let p = |v: &[f64], rows: i64| {
            Tensor::from_slice(v)
                .reshape([rows, -1])
                .set_requires_grad(true)
        };
        Chain {
            w: vec![
                p(&[1.0, 0.5, -0.5, 2.0], 2),
                p(&[0.3, -1.0, 1.5, 0.7], 2),
                p(&[2.0, -0.2], 1),
            ],
            solo: p(&[0.25, -0.75], 1),
            idle: p(&[9.0], 1),
        }
    }

    fn params(&self) -> Vec<&Tensor> {
        let mut v: Vec<&Tensor> = self.w.iter().collect();
        v.push(&self.solo);
        v.push(&self.idle);
        v
    }

    /// The loss of rank `r` on input `x` (a column of 2).
    fn loss(&self, x: &Tensor, r: usize) -> Tensor {
        let h = self.w[1].matmul(&self.w[0].matmul(x)).tanh();
        let loss = self.w[2].matmul(&h).sum(Kind::Double);
        if r != 0 {
            return loss;
        }
        loss + self.solo.matmul(&h).pow_tensor_scalar(2).sum(Kind::Double)
    }

    fn grads(&self) -> Vec<Option<Vec<f64>>> {
        self.params()
            .iter()
            .map(|p| {
                let g = p.grad();
                g.defined()
                    .then(|| Vec::<f64>::try_from(g.flatten(0, -1)).unwrap())
            })
            .collect()
    }
}

fn input(step: usize, rank: usize, micro: usize) -> Tensor {
    let v = (step * 10 + rank * 3 + micro) as f64;
    Tensor::from_slice(&[0.1 * v - 0.4, 0.3 - 0.05 * v]).reshape([2, 1])
}

/// The gradients one process gets from the losses of both ranks (the sum the sync must give),
/// `micro` micro-batches per rank.
fn expected(step: usize, micro: usize) -> Vec<Option<Vec<f64>>> {
    let c = Chain::new();
    for r in 0..2 {
        for m in 0..micro {
            c.loss(&input(step, r, m), r).backward();
        }
    }
    c.grads()
}

fn assert_close(got: &[Option<Vec<f64>>], want: &[Option<Vec<f64>>], what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Some(g), Some(w)) => {
                for (a, b) in g.iter().zip(w) {
                    assert!(
                        (a - b).abs() < 1e-12,
                        "{what}: parameter {i}: {g:?} vs {w:?}"
                    );
                }
            }
            (None, None) => {}
            _ => panic!("{what}: parameter {i}: gradient {g:?}, expected {w:?}"),
        }
    }
}

/// Runs one step per entry of `micro` (its number of micro-batches, only the last armed) of
/// the chain on this rank with buckets of at most `limit` elements, rebuilding the buckets
/// after the first; returns each step's gradients and bucket overlap.
fn sync_steps(
    g: &ProcessGroup,
    limit: usize,
    micro: &[usize],
) -> Vec<(Vec<Option<Vec<f64>>>, Overlap)> {
    let r = g.rank();
    let chain = Chain::new();
    let mut sync = GradSync::new(g, &chain.params(), limit).unwrap();
    let mut steps = Vec::new();
    for (step, &micro) in micro.iter().enumerate() {
        for m in 0..micro {
            if m + 1 == micro {
                sync.arm().unwrap();
            }
            chain.loss(&input(step, r, m), r).backward();
        }
        sync.finish().unwrap();
        steps.push((chain.grads(), sync.overlap()));
        if step == 0 {
            sync.rebuild(g).unwrap();
        }
        // As the trainer does between steps (torch's `zero_grad(set_to_none=True)`).
        umcl_torch_ext::fused::clear_grads(&chain.params()).unwrap();
    }
    steps
}

#[test]
fn overlapped_gradient_sync_sums_over_ranks_during_backward() {
    let out = run_ranks(2, TIMEOUT, |g| {
        // Step 0 in the initial (reverse) bucket order, then rebuilt in rank 0's ready order;
        // step 2 with two micro-batches, armed for the second only.
        sync_steps(&g, 1, &[1, 1, 2])
    });
    for (rank, steps) in out.iter().enumerate() {
        for (step, (grads, overlap)) in steps.iter().enumerate() {
            let micro = if step == 2 { 2 } else { 1 };
            let want = expected(step, micro);
            assert_close(grads, &want, &format!("rank {rank}, step {step}"));
            assert_eq!(overlap.buckets, 5);
            if step == 0 {
                // Reverse order: `idle` (bucket 0) never becomes ready, so nothing can start
                // before finish.
                assert_eq!(overlap.early, 0, "rank {rank}, step {step}");
            } else {
                // Rebuilt: the three chain weights start inside the backward pass, then
                // `solo` (ready on rank 0 only, so placed after the weights), then `idle`
                // (never ready).
                let want_early = 3 + usize::from(rank == 0);
                assert_eq!(overlap.early, want_early, "rank {rank}, step {step}");
            }
        }
    }
    // The parameter used on no rank has no gradient after the first step on either rank,
    // the rank-0-only one has rank 0's gradient on rank 1 too.
    assert_eq!(out[0][0].0[4], None);
    assert_eq!(out[1][0].0[3], out[0][0].0[3]);
}

#[test]
fn gradient_sync_refuses_a_second_hook_and_unhookable_tensors() {
    let out = run_ranks(1, TIMEOUT, |g| {
        let w = Tensor::ones([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let first = GradSync::new(&g, &[&w], 16).unwrap();
        let twice = GradSync::new(&g, &[&w], 16).err().map(|e| e.to_string());
        let frozen = Tensor::ones([2], (Kind::Float, tch::Device::Cpu));
        let no_grad = GradSync::new(&g, &[&frozen], 16)
            .err()
            .map(|e| e.to_string());
        let none = GradSync::new(&g, &[], 16).err().map(|e| e.to_string());
        let unarmed = first.finish().err().map(|e| e.to_string());
        drop(first);
        // Dropping the sync removes its hooks: the tensor can be hooked again.
        let again = GradSync::new(&g, &[&w], 16).is_ok();
        (twice, no_grad, none, unarmed, again)
    });
    let (twice, no_grad, none, unarmed, again) = out[0].clone();
    assert!(twice
        .unwrap()
        .contains("parameter 0 already has a post-accumulate-grad hook"));
    assert!(no_grad
        .unwrap()
        .contains("parameter 0 is not a leaf tensor that requires gradients"));
    assert!(none.unwrap().contains("no parameters"));
    assert!(unarmed.unwrap().contains("finish without arm"));
    assert!(again);
}

#[test]
fn gradient_sync_reports_a_departed_rank() {
    let timeout = Duration::from_secs(5);
    let out = run_ranks(2, timeout, move |g| {
        let w = Tensor::ones([4], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let sync = GradSync::new(&g, &[&w], 2).unwrap();
        if g.rank() == 1 {
            drop(sync);
            drop(g);
            return None;
        }
        let started = Instant::now();
        sync.arm().unwrap();
        (&w * 3.0).sum(Kind::Float).backward();
        let err = sync.finish().unwrap_err().to_string();
        Some((err, started.elapsed()))
    });
    let (err, elapsed) = out[0].clone().unwrap();
    assert!(
        err.starts_with("all_reduce (gradients): rank 0 of 2:"),
        "{err}"
    );
    assert!(elapsed < timeout + Duration::from_secs(5), "{elapsed:?}");
}

#[test]
fn parameters_missing_on_a_rank_get_buckets_of_their_own_after_the_rebuild() {
    // All five parameters fit one bucket. Before the rebuild that bucket waits for `solo`
    // (never ready on rank 1) and `idle` (never ready anywhere); after it, the three chain
    // weights form a bucket of their own that starts inside the backward pass on both ranks.
    let out = run_ranks(2, TIMEOUT, |g| sync_steps(&g, 1 << 20, &[1, 1]));
    for (rank, steps) in out.iter().enumerate() {
        assert_close(&steps[1].0, &expected(1, 1), &format!("rank {rank}"));
        assert_eq!(
            steps[0].1,
            Overlap {
                buckets: 1,
                early: 0
            },
            "rank {rank}"
        );
        // Then `solo` (ready on rank 0 only) and `idle` (ready nowhere) in a bucket each: rank
        // 0 starts two buckets early, rank 1 one.
        let early = if rank == 0 { 2 } else { 1 };
        assert_eq!(steps[1].1, Overlap { buckets: 3, early }, "rank {rank}");
    }
}
