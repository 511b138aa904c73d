//! `CpuHeap::Keep` changes where glibc puts large blocks and whether it returns them. Its own
//! test binary without the test harness: the policy is process-wide and one-way, and the
//! blocks must be allocated on the main thread, whose arena is the heap (glibc's per-thread
//! arenas map blocks over 64 MiB whatever the policy).

use umcl_torch_ext::runtime::{apply_cpu_heap, CpuHeap};

const BLOCK: usize = 256 << 20;

/// The program break before and after allocating `BLOCK` bytes, and after freeing them, with
/// where the block was. Every page of the block is written and read back through
/// `black_box`, so an optimising build cannot elide the allocation (LLVM removes unused
/// malloc/free pairs).
fn breaks_around_a_block() -> (usize, usize, usize, usize) {
    const PAGE: usize = 4096;
    // SAFETY: malloc/free of a block we own, written and read only within its bounds;
    // sbrk(0) only reads the break.
    unsafe {
        let before = libc::sbrk(0) as usize;
        let p = std::hint::black_box(libc::malloc(BLOCK)) as *mut u8;
        assert!(!p.is_null(), "malloc of {BLOCK} bytes failed");
        for offset in (0..BLOCK).step_by(PAGE) {
            p.add(offset).write_volatile((offset / PAGE) as u8);
        }
        let during = libc::sbrk(0) as usize;
        let sum: usize = (0..BLOCK)
            .step_by(PAGE)
            .map(|offset| p.add(offset).read_volatile() as usize)
            .sum();
        let pages = BLOCK / PAGE;
        let expected: usize = (0..pages).map(|i| i % 256).sum();
        assert_eq!(
            std::hint::black_box(sum),
            expected,
            "the block lost its writes"
        );
        let at = p as usize;
        libc::free(std::hint::black_box(p) as *mut libc::c_void);
        let after = libc::sbrk(0) as usize;
        (before, during, after, at)
    }
}

/// The positional arguments of `cargo test` (name filters): this binary runs its test only
/// when there are none or one of them is part of the test's name, like the libtest harness.
fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

fn main() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const NAME: &str = "kept_memory_comes_from_the_heap_and_is_not_given_back";
        if std::env::args().any(|a| a == "--list") {
            println!("{NAME}: test");
            return;
        }
        if !selected(NAME) {
            println!("test result: ok. 0 passed; 0 failed; 1 filtered out");
            return;
        }
        kept_memory_comes_from_the_heap_and_is_not_given_back();
        println!("test {NAME} ... ok");
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn kept_memory_comes_from_the_heap_and_is_not_given_back() {
    // glibc's defaults: a 256 MiB block is a memory map of its own; the heap does not move.
    assert!(!apply_cpu_heap(CpuHeap::System));
    let (before, during, _, at) = breaks_around_a_block();
    assert_eq!(
        before, during,
        "default malloc grew the heap for a large block"
    );
    assert!(
        at + BLOCK <= before || at >= during,
        "default malloc put a large block inside the heap"
    );

    assert!(apply_cpu_heap(CpuHeap::Keep));
    // Kept: the block comes from the heap, which grows by at least its size...
    let (before, during, after, at) = breaks_around_a_block();
    assert!(
        during >= before + BLOCK,
        "heap grew by {} bytes for a {BLOCK}-byte block",
        during - before
    );
    // The block ends in the grown part (it may start in free space already at the top).
    let in_heap = |at: usize| at + BLOCK <= during && at + BLOCK > before;
    assert!(
        in_heap(at),
        "the block [{at:#x}, +{BLOCK:#x}) does not end in the grown heap [{before:#x}, {during:#x})"
    );
    // ...and stays grown when it is freed (no trim), so the next step reuses mapped pages.
    assert_eq!(after, during, "freed memory was returned to the OS");
    let (before2, during2, _, at2) = breaks_around_a_block();
    assert_eq!(before2, during2, "the freed block was not reused");
    assert!(in_heap(at2), "the block moved out of the heap");
    // One-way: asking for the defaults again keeps the policy.
    assert!(apply_cpu_heap(CpuHeap::System));
}
