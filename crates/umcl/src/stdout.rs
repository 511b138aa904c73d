//! Standard output that survives its reader: `umcl info | head -1` or `umcl eval ... | true`
//! close the pipe early, and Rust's `println!` would then panic (exit 101) and stop the
//! command before it wrote its files. Here a closed pipe ends printing quietly and the
//! command goes on; any other write error (a full disk under `> file`) is reported once and
//! makes the exit status a failure.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: AtomicBool = AtomicBool::new(false);

/// Writes `args` to standard output, unless it has been closed or has failed.
pub(crate) fn write(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if err.kind() != ErrorKind::BrokenPipe {
            FAILED.store(true, Ordering::Relaxed);
            eprintln!("umcl: error: writing to standard output: {err}");
        }
    }
}

/// Whether a write to standard output failed for another reason than a closed pipe.
pub(crate) fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// `print!` through [`write()`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*)) };
}

/// `println!` through [`write()`].
macro_rules! outln {
    () => { $crate::stdout::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};
