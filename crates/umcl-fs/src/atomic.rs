//! Atomic file writes.
//!
//! The bytes go to a temporary file beside the target, `.NAME.tmp-PID`, which is synced and
//! then renamed over the target, so a reader sees the old file or the whole new one, never a
//! part. A writer dropped without [`AtomicFile::commit`] removes its temporary file.
//!
//! ```
//! use std::io::Write;
//! use umcl_fs::{write_atomic, AtomicFile};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("labels.csv");
//! write_atomic(&path, b"id,Edema\n").unwrap();
//!
//! let mut file = AtomicFile::create(&path).unwrap();
//! writeln!(file, "id,Edema").unwrap();
//! writeln!(file, "a,1").unwrap();
//! // Until the commit, readers still see the first version.
//! assert_eq!(std::fs::read_to_string(&path).unwrap(), "id,Edema\n");
//! file.commit().unwrap();
//! assert_eq!(std::fs::read_to_string(&path).unwrap(), "id,Edema\na,1\n");
//! ```

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A file written under a temporary name beside its target and renamed over the target by
/// [`commit`](Self::commit). Dropped uncommitted, the temporary file is removed.
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Creates the temporary file for `target`. Errors name the file.
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let temp = temp_path(target)?;
        let file = File::create(&temp).map_err(|err| Error::new(&temp, err))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            temp,
            writer: Some(BufWriter::new(file)),
        })
    }

    /// The path the file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        if let Some(writer) = self.writer.take() {
            let file = writer
                .into_inner()
                .map_err(|err| Error::new(&self.temp, err.into_error()))?;
            file.sync_all().map_err(|err| Error::new(&self.temp, err))?;
        }
        std::fs::rename(&self.temp, &self.target).map_err(|err| {
            let _ = std::fs::remove_file(&self.temp);
            Error::new(&self.target, err)
        })
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the file is already committed"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` atomically. Errors name the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)
        .map_err(|err| Error::new(&file.temp, err))?;
    file.commit()
}

/// Writes `bytes` to `path` atomically, or with `None` removes `path` if it exists: for a file
/// that lists what one run did (skipped rows, skipped files) and must not outlive a later run
/// that had nothing to list. Errors name the file.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let list = dir.path().join("skipped.txt");
/// umcl_fs::write_or_remove(&list, Some(b"a.png: truncated\n")).unwrap();
/// assert!(list.exists());
/// umcl_fs::write_or_remove(&list, None).unwrap();
/// assert!(!list.exists());
/// umcl_fs::write_or_remove(&list, None).unwrap(); // nothing to remove is fine
/// ```
pub fn write_or_remove(path: &Path, bytes: Option<&[u8]>) -> Result<()> {
    match bytes {
        Some(bytes) => write_atomic(path, bytes),
        None => match std::fs::remove_file(path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(Error::new(path, err)),
            _ => Ok(()),
        },
    }
}

/// Writes `target` atomically through a writer that wants a path, such as libtorch's
/// safetensors saver: `write` fills the temporary file [`temp_path`] names, which is then
/// synced and renamed over `target`. On any failure the temporary file is removed.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let target = dir.path().join("weights.bin");
/// umcl_fs::write_atomic_with(&target, |temp| std::fs::write(temp, b"\x00\x01")).unwrap();
/// assert_eq!(std::fs::read(&target).unwrap(), b"\x00\x01");
/// ```
pub fn write_atomic_with(target: &Path, write: impl FnOnce(&Path) -> io::Result<()>) -> Result<()> {
    let temp = temp_path(target)?;
    let done = write(&temp)
        .and_then(|()| File::open(&temp)?.sync_all())
        .map_err(|err| Error::new(&temp, err))
        .and_then(|()| std::fs::rename(&temp, target).map_err(|err| Error::new(target, err)));
    if done.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    done
}

/// The temporary name an atomic write of `target` uses: `.NAME.tmp-PID` in the same folder
/// (the same file system, so the rename is atomic). For writers that must hand a path to
/// another library, such as libtorch's savers, and rename it themselves.
pub fn temp_path(target: &Path) -> Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| Error::new(target, io::Error::other("not a file path")))?;
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    Ok(dir.join(temp_name))
}

/// The process id in the name of a temporary file or directory that an umcl writer left:
/// `.NAME.tmp-PID` (atomic files), `.tmp-WHAT-PID` and `.old-WHAT-PID` (directories written
/// or replaced by rename, such as checkpoints). `None` for any other name.
pub fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (stem, pid) = rest.rsplit_once('-')?;
    let ours = stem.starts_with("tmp-") || stem.starts_with("old-") || stem.ends_with(".tmp");
    if !ours || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes from `dir` (not its subdirectories) the temporary files and directories of
/// writers whose process has ended ([`temp_owner`]), as a process killed in the middle of a
/// write leaves them; returns what it removed. Those of live processes stay. A missing `dir`
/// has nothing to remove.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::new(dir, err)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::new(dir, err))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else {
            continue;
        };
        if crate::lock::process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let gone = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed.push(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::new(&path, err)),
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_and_their_owners() {
        assert_eq!(temp_owner(".labels.csv.tmp-4242"), Some(4242));
        assert_eq!(temp_owner(".tmp-step-00000007-31"), Some(31));
        assert_eq!(temp_owner(".old-best-9"), Some(9));
        for other in [
            "labels.csv",
            ".lock",
            ".tmp-step-x",
            ".hidden-12",
            "step-00000001",
        ] {
            assert_eq!(temp_owner(other), None, "{other}");
        }
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        let dead_file = dir.path().join(format!(".out.jsonl.tmp-{dead}"));
        let dead_dir = dir.path().join(format!(".tmp-step-00000003-{dead}"));
        let live_file = dir.path().join(format!(".out.jsonl.tmp-{live}"));
        let keep = dir.path().join("out.jsonl");
        std::fs::write(&dead_file, b"half").unwrap();
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("model.safetensors"), b"half").unwrap();
        std::fs::write(&live_file, b"being written").unwrap();
        std::fs::write(&keep, b"whole").unwrap();
        let removed = remove_stale_temps(dir.path()).unwrap();
        let mut expected = vec![dead_file.clone(), dead_dir.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!dead_file.exists() && !dead_dir.exists());
        assert!(live_file.exists() && keep.exists());
        assert!(remove_stale_temps(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_failing_path_writer_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |temp| {
            std::fs::write(temp, b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        {
            let mut file = AtomicFile::create(&path).unwrap();
            file.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_rename_names_the_target_and_removes_the_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: the rename of a file over it fails.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), b"x").unwrap();
        let err = write_atomic(&path, b"bytes").unwrap_err().to_string();
        assert!(err.contains("taken"), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the directory remains");
    }
}
