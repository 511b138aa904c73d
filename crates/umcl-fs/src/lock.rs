//! Exclusive use of a directory by one process: a run directory has one writer.
//!
//! [`DirLock::acquire`] takes an advisory lock (`flock(2)`) on `DIR/.lock` and writes its
//! process id there. The kernel drops the lock when the process ends, however it ends, so a
//! crashed run never leaves a directory locked. A second process is refused with the
//! holder's id.
//!
//! ```
//! use umcl_fs::lock::{DirLock, LockError};
//! let dir = tempfile::tempdir().unwrap();
//! let held = DirLock::acquire(dir.path()).unwrap();
//! match DirLock::acquire(dir.path()) {
//!     Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
//!     other => panic!("expected the lock to be held: {other:?}"),
//! }
//! drop(held);
//! assert!(DirLock::acquire(dir.path()).is_ok());
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::Error;

/// The name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{} is in use by {}: wait for it to end, or choose another directory",
        dir.display(),
        pid.map_or("another process".to_string(), |p| format!("process {p}"))
    )]
    Held {
        /// The locked directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it (`None` if it has not yet).
        pid: Option<u32>,
    },
    /// The lock file could not be created, read or written.
    #[error(transparent)]
    Io(#[from] Error),
}

/// A held lock on a directory; released when dropped or when the process ends.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Locks `dir` (created if missing) for this process, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|e| Error::new(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::new(&path, e))?;
        // SAFETY: flock(2) on a descriptor this function owns; no memory is shared.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            return Err(Error::new(&path, err).into());
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| Error::new(&path, e))?;
        Ok(DirLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether a process with id `pid` exists (it may belong to another user).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_names_its_holder_and_ends_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = DirLock::acquire(&run).unwrap();
        assert_eq!(first.dir(), run);
        let err = DirLock::acquire(&run).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("run"), "{text}");
        drop(first);
        DirLock::acquire(&run).unwrap();
    }

    #[test]
    fn liveness_of_this_process_and_of_a_finished_child() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
        assert!(!process_alive(0));
    }
}
