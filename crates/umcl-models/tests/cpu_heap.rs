//! `CpuHeap::Keep` changes where glibc puts large blocks and whether it returns them. Its own
//! test binary without the test harness: the policy is process-wide and one-way, and the
//! blocks must be allocated on the main thread, whose arena is the heap (glibc's per-thread
//! arenas map blocks over 64 MiB whatever the policy).

use umcl_models::backend::{apply_cpu_heap, CpuHeap};

const BLOCK: usize = 256 << 20;

/// The program break before and after allocating `BLOCK` bytes, and after freeing them.
fn breaks_around_a_block() -> (usize, usize, usize) {
    // SAFETY: plain malloc/free of a block we do not touch; sbrk(0) only reads the break.
    unsafe {
        let before = libc::sbrk(0) as usize;
        let p = libc::malloc(BLOCK);
        assert!(!p.is_null(), "malloc of {BLOCK} bytes failed");
        let during = libc::sbrk(0) as usize;
        libc::free(p);
        let after = libc::sbrk(0) as usize;
        (before, during, after)
    }
}

fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        kept_memory_comes_from_the_heap_and_is_not_given_back();
        println!("test kept_memory_comes_from_the_heap_and_is_not_given_back ... ok");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn kept_memory_comes_from_the_heap_and_is_not_given_back() {
    // glibc's defaults: a 256 MiB block is a memory map of its own; the heap does not move.
    assert!(!apply_cpu_heap(CpuHeap::System));
    let (before, during, _) = breaks_around_a_block();
    assert_eq!(
        before, during,
        "default malloc grew the heap for a large block"
    );

    assert!(apply_cpu_heap(CpuHeap::Keep));
    // Kept: the block comes from the heap, which grows by at least its size...
    let (before, during, after) = breaks_around_a_block();
    assert!(
        during >= before + BLOCK,
        "heap grew by {} bytes for a {BLOCK}-byte block",
        during - before
    );
    // ...and stays grown when it is freed (no trim), so the next step reuses mapped pages.
    assert_eq!(after, during, "freed memory was returned to the OS");
    let (before2, during2, _) = breaks_around_a_block();
    assert_eq!(before2, during2, "the freed block was not reused");
    // One-way: asking for the defaults again keeps the policy.
    assert!(apply_cpu_heap(CpuHeap::System));
}
