//! Local-disk store: one file per key under a root directory.
//!
//! Writes are atomic and durable: content goes to a file in the destination
//! directory first (its name starts with `.`, so it can never be a key), is
//! fsynced, renamed over the destination and the directory is fsynced. A
//! reader that opened the old file keeps reading the old content; a reader
//! that opens after the rename reads the new one.

use std::fs::{self, File};
use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{BlobStore, ByteStream, ListPages, Object, StorageError, check_key};

/// Read buffer of a streamed object.
const READ_CHUNK: usize = 64 * 1024;

/// Prefix of the temporary files written beside their destination.
const TEMP_PREFIX: &str = ".tmp-";

/// How many times a write is retried when a concurrent `delete` removed the
/// (then empty) destination directory under it.
const DIR_RACE_ATTEMPTS: usize = 8;

/// Objects as files under a root directory: key `a/b/c` is `<root>/a/b/c`.
///
/// A key cannot be both an object and the directory of other objects (`a`
/// and `a/b`); the host never builds such keys.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens the store at `root`, creating the directory if needed.
    pub async fn open(root: &Path) -> Result<Self, StorageError> {
        let root = root.to_path_buf();
        blocking(move || {
            fs::create_dir_all(&root).map_err(|e| io_error("creating", &root, e))?;
            // Absolute, so that a later change of the working directory
            // cannot move the store.
            let root = fs::canonicalize(&root).map_err(|e| io_error("resolving", &root, e))?;
            Ok(Self { root })
        })
        .await
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key` (whether or not it exists).
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let dest = self.path_of(key)?;
        let root = self.root.clone();
        let src = path.to_path_buf();
        blocking(move || move_into_place(&root, &src, &dest)).await
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.put_chunks(key, vec![bytes], content_type).await
    }

    async fn put_chunks(
        &self,
        key: &str,
        chunks: Vec<Bytes>,
        _content_type: &str,
    ) -> Result<(), StorageError> {
        let dest = self.path_of(key)?;
        let root = self.root.clone();
        blocking(move || {
            with_dir_retry(&root, &dest, |dir| {
                let mut tmp = tempfile::Builder::new()
                    .prefix(TEMP_PREFIX)
                    .tempfile_in(dir)?;
                super::write_chunks(tmp.as_file_mut(), &chunks)?;
                tmp.as_file().sync_all()?;
                // On failure the temporary file is removed when `tmp` drops.
                tmp.persist(&dest).map_err(|e| e.error)?;
                Ok(())
            })
        })
        .await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, StorageError> {
        let path = self.path_of(key)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if is_missing(&e) => return Err(StorageError::NotFound(key.to_string())),
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        let meta = file
            .metadata()
            .await
            .map_err(|e| io_error("reading metadata of", &path, e))?;
        if !meta.is_file() {
            return Err(StorageError::NotFound(key.to_string()));
        }
        let size = meta.len();
        let (start, len) = match range {
            None => (0, size),
            Some(range) => {
                if range.start >= size && size > 0 {
                    return Err(StorageError::RangeNotSatisfiable { size });
                }
                let end = range.end.min(size);
                (range.start.min(size), end.saturating_sub(range.start))
            }
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| io_error("seeking in", &path, e))?;
        }
        let body: ByteStream = Box::pin(ReaderStream::with_capacity(file.take(len), READ_CHUNK));
        Ok(Object {
            body,
            len,
            total_size: size,
        })
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(bytes.into()),
            // A directory (the prefix of other keys) is not an object.
            Err(e) if is_missing(&e) || e.kind() == io::ErrorKind::IsADirectory => {
                Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => Err(io_error("reading", &path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        blocking(move || {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if is_missing(&e) || path.is_dir() => return Ok(()),
                Err(e) => return Err(io_error("removing", &path, e)),
            }
            if let Some(dir) = path.parent()
                && let Err(e) = sync_dir(dir)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "fsync after delete failed");
            }
            remove_empty_parents(&root, &path);
            Ok(())
        })
        .await
    }

    async fn sweep_temp(&self, cutoff: std::time::SystemTime) -> Result<u64, StorageError> {
        let root = self.root.clone();
        blocking(move || Ok(sweep_temp_files(&root, cutoff))).await
    }

    fn list<'a>(&'a self, prefix: &'a str) -> ListPages<'a> {
        super::walk::list(&self.root, prefix)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let root = self.root.clone();
        blocking(move || {
            let meta = fs::metadata(&root).map_err(|e| io_error("checking", &root, e))?;
            if !meta.is_dir() {
                return Err(StorageError::unavailable_bare(format!(
                    "{} is not a directory",
                    root.display()
                )));
            }
            // Writable: a dot-named file can never clash with a key.
            let probe = tempfile::Builder::new()
                .prefix(".ping-")
                .tempfile_in(&root)
                .map_err(|e| io_error("writing to", &root, e))?;
            probe.close().map_err(|e| io_error("writing to", &root, e))
        })
        .await
    }
}

/// Moves `src` to `dest`: a rename on the same filesystem, else a copy into a
/// temporary file beside `dest` that is renamed into place (then `src` is
/// removed, as a move would).
fn move_into_place(root: &Path, src: &Path, dest: &Path) -> Result<(), StorageError> {
    let meta = fs::metadata(src).map_err(|e| io_error("reading", src, e))?;
    if !meta.is_file() {
        return Err(StorageError::unavailable_bare(format!(
            "{} is not a regular file",
            src.display()
        )));
    }
    // The data must be on disk before the rename that publishes it is.
    File::open(src)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("syncing", src, e))?;
    let mut copied = false;
    with_dir_retry(root, dest, |dir| match fs::rename(src, dest) {
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            copy_into_place(src, dir, dest)?;
            copied = true;
            Ok(())
        }
        other => other,
    })?;
    if copied && let Err(e) = fs::remove_file(src) {
        tracing::debug!(path = %src.display(), error = %e, "removing the source of a copy failed");
    }
    Ok(())
}

/// Copies `src` to a temporary file in `dir`, fsyncs it and renames it to
/// `dest`.
fn copy_into_place(src: &Path, dir: &Path, dest: &Path) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    let mut input = File::open(src)?;
    io::copy(&mut input, tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Runs `write` (which creates `dest` in its parent directory), creating
/// the directory when it is missing, then fsyncs the directory. Most writes
/// go to a directory that exists (a record beside its content), so the
/// write is tried first: no `stat` before it. A concurrent `delete` may
/// remove an empty directory between creating it and writing into it; the
/// write is then retried with the directory recreated.
fn with_dir_retry(
    root: &Path,
    dest: &Path,
    mut write: impl FnMut(&Path) -> io::Result<()>,
) -> Result<(), StorageError> {
    let dir = dest.parent().unwrap_or(root);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match write(dir) {
            Ok(()) => break,
            // No directory (new, or just removed by a delete: it may be
            // back already, made by another writer). (A missing source is
            // refused before this.)
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < DIR_RACE_ATTEMPTS => {}
            Err(e) => return Err(io_error("writing", dest, e)),
        }
        // Creating the directory races with deletes too: a parent created
        // (or found) a moment ago may be gone before its child is made.
        match ensure_dir(root, dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < DIR_RACE_ATTEMPTS => {}
            Err(e) => return Err(io_error("creating", dir, e)),
        }
    }
    sync_dir(dir).map_err(|e| io_error("syncing", dir, e))
}

/// Creates `dir` (inside `root`) and its missing parents, fsyncing the parent
/// of each directory created so that the new entries are durable too. Each
/// level is created first and looked at only when that fails: no `stat`s.
fn ensure_dir(root: &Path, dir: &Path) -> io::Result<()> {
    let create = |dir: &Path| match fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    };
    // `root` itself is never made here: the store made it when it opened,
    // and a root that went (an unmounted volume) must fail the write, not
    // be made again on whatever filesystem is below it.
    if dir == root {
        return Ok(());
    }
    let created = match create(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(parent) = dir.parent() else {
                return Err(e);
            };
            ensure_dir(root, parent)?;
            create(dir)?
        }
        other => other?,
    };
    if created && let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes `TEMP_PREFIX` files older than `cutoff` anywhere under `root`
/// (writes cut short by a crash: never an object); how many. A directory
/// that cannot be read is skipped, and a file that cannot be removed left
/// for the next sweep, with a warning.
fn sweep_temp_files(root: &Path, cutoff: std::time::SystemTime) -> u64 {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < cutoff);
            if !kind.is_file()
                || !stale
                || !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
            {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if is_missing(&e) => {}
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a stale temporary file");
                }
            }
        }
    }
    removed
}

/// Removes the now empty directories between `path` and `root` (exclusive),
/// deepest first, stopping at the first that is not empty.
fn remove_empty_parents(root: &Path, path: &Path) {
    let mut current = path.parent();
    while let Some(dir) = current {
        if dir == root || !dir.starts_with(root) || fs::remove_dir(dir).is_err() {
            break;
        }
        current = dir.parent();
    }
}

/// Fsyncs a directory, making renames and new entries in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::unavailable("local storage task failed", e))?
}

/// Whether an error means "there is nothing there".
fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// An I/O error as a storage error naming the action and the path.
fn io_error(action: &str, path: &Path, e: io::Error) -> StorageError {
    StorageError::unavailable(format!("{action} {}", path.display()), e)
}
