//! One writer per run directory: an exclusive operating-system lock on
//! `R/.lock`, and the whole-directory replacement `--overwrite` asks for.

use super::RunDir;
use crate::VisionError;

/// The file a run directory's writer locks.
const LOCK_FILE: &str = ".lock";

/// A run directory taken by this process ([`RunDir::lock`]).
pub struct RunLock {
    _file: std::fs::File,
}

impl RunDir {
    /// Takes the directory for this process alone: an exclusive lock on
    /// `R/.lock` (the operating system's, so a process that dies releases
    /// it and a stale file is simply taken over), held until the guard drops.
    pub fn lock(&self) -> Result<RunLock, VisionError> {
        let io = |source| VisionError::Io {
            path: self.path.join(LOCK_FILE),
            source,
        };
        std::fs::create_dir_all(&self.path).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(self.path.join(LOCK_FILE)).unwrap_or_default();
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                return Err(VisionError::Setup(format!(
                    "{} is in use by {holder} (another `nabla vision train` writing it); wait for it to finish or stop it",
                    self.path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        use std::io::{Seek, Write};
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io)?;
        Ok(RunLock { _file: file })
    }

    /// Takes the directory for a new run: refused when it already holds a
    /// run, unless `replace`, which replaces that run as a whole.
    pub(crate) fn take_for_new_run(&self, replace: bool) -> Result<RunLock, VisionError> {
        if replace && self.holds_run() {
            return self.replace();
        }
        let lock = self.lock()?;
        if !replace && self.holds_run() {
            return Err(VisionError::Setup(format!(
                "{} already holds a run; continue it with `--resume {}`, choose another --out, or pass --overwrite to replace it",
                self.path.display(),
                self.path.display()
            )));
        }
        Ok(lock)
    }

    /// Replaces the run this directory holds as a whole: the old one is
    /// renamed aside in one step (while locked), a fresh directory is locked
    /// in its place, and only then is the old one removed.
    fn replace(&self) -> Result<RunLock, VisionError> {
        let old = self.lock()?;
        let name = self
            .path
            .file_name()
            .map_or("run".into(), |n| n.to_string_lossy().into_owned());
        let aside = self
            .path
            .with_file_name(format!(".{name}.replaced-{}", std::process::id()));
        std::fs::rename(&self.path, &aside).map_err(|source| VisionError::Io {
            path: self.path.clone(),
            source,
        })?;
        let lock = self.lock()?;
        drop(old);
        std::fs::remove_dir_all(&aside).map_err(|source| VisionError::Io {
            path: aside,
            source,
        })?;
        Ok(lock)
    }
}
