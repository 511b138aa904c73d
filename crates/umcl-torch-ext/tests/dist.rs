//! c10d through the bridge: two Gloo ranks as two threads of this process, on 127.0.0.1.

use std::thread;
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use umcl_torch_ext::dist::{GlooDevice, ProcessGroup, ReduceOp, Store};

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
