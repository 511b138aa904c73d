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

#[cfg(test)]
mod tests {
    use super::*;

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
