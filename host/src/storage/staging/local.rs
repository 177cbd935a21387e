//! Staging on local disk: per upload, in a dot-named directory under the
//! store's root (so on its filesystem, and never a key), `ID.bin` holds the
//! bytes and `ID.json` the caller's descriptor and where the bytes go. The
//! staged length is the length of `ID.bin`; an upload with a target is
//! completed by renaming `ID.bin` into the store (after which it is found
//! no more: the caller owns the object), one without stays, marked
//! complete.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use super::{Appended, Body, Staged, Staging, check_id};
use crate::storage::{BlobStore, ByteStream, ListPages, Listed, LocalStore, StorageError};

/// Write buffer of an append: few, large writes.
const WRITE_BUFFER: usize = 1 << 20;

/// Bytes of an append after which their writeback to disk is started.
const WRITEBACK_EVERY: u64 = 4 << 20;

/// Read buffer of [`Staging::read`].
const READ_CHUNK: usize = 64 * 1024;

/// An upload's `ID.json`: one small file, written whole.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The caller's descriptor (its JSON, as text).
    info: String,
    target: Option<String>,
    /// Set only for uploads without a target (one with a target is gone
    /// from here once complete).
    completed: bool,
}

/// Resumable uploads staged on the local disk of a [`LocalStore`].
#[derive(Debug, Clone)]
pub struct LocalStaging {
    dir: PathBuf,
    store: LocalStore,
}

impl LocalStaging {
    /// Stages in `.tus` under the root of `store`, which takes the bytes of
    /// completed uploads.
    pub async fn open(store: LocalStore) -> Result<Self, StorageError> {
        let dir = store.root().join(".tus");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("creating", &dir, e))?;
        Ok(Self { dir, store })
    }

    fn path(&self, id: &str, ext: &str) -> Result<PathBuf, StorageError> {
        check_id(id)?;
        Ok(self.dir.join(format!("{id}.{ext}")))
    }

    async fn state(&self, id: &str) -> Result<State, StorageError> {
        let path = self.path(id, "json")?;
        let bytes = read(&path, id).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StorageError::unavailable(format!("reading {}", path.display()), e))
    }

    async fn write_state(&self, id: &str, state: &State) -> Result<(), StorageError> {
        let path = self.path(id, "json")?;
        let json = serde_json::to_vec(state)
            .map_err(|e| StorageError::unavailable("serializing a staging state", e))?;
        write_atomic(&self.dir, &path, json.into()).await
    }
}

#[async_trait]
impl Staging for LocalStaging {
    async fn create(
        &self,
        id: &str,
        info: Bytes,
        target: Option<&str>,
    ) -> Result<(), StorageError> {
        let bin = self.path(id, "bin")?;
        if let Some(target) = target {
            // Refused now rather than when the upload completes.
            self.store.path_of(target)?;
        }
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&bin)
            .await
            .map_err(|e| io_error("creating", &bin, e))?;
        let state = State {
            info: info_text(info)?,
            target: target.map(str::to_string),
            completed: false,
        };
        self.write_state(id, &state).await
    }

    async fn load(&self, id: &str) -> Result<Staged, StorageError> {
        let state = self.state(id).await?;
        let bin = self.path(id, "bin")?;
        let meta = match tokio::fs::metadata(&bin).await {
            Ok(meta) => meta,
            // Completed into its target: the caller's now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(id.to_string()));
            }
            Err(e) => return Err(io_error("reading metadata of", &bin, e)),
        };
        Ok(Staged {
            info: Bytes::from(state.info),
            offset: meta.len(),
            completed: state.completed,
            modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
        })
    }

    async fn set_info(&self, id: &str, info: Bytes) -> Result<(), StorageError> {
        let mut state = self.state(id).await?;
        state.info = info_text(info)?;
        self.write_state(id, &state).await
    }

    async fn append(
        &self,
        id: &str,
        offset: u64,
        mut body: Body<'_>,
    ) -> Result<Box<dyn Appended>, StorageError> {
        let path = self.path(id, "bin")?;
        let mut file = match tokio::fs::OpenOptions::new().write(true).open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(id.to_string()));
            }
            Err(e) => return Err(io_error("opening", &path, e)),
        };
        let staged = file
            .metadata()
            .await
            .map_err(|e| io_error("reading metadata of", &path, e))?
            .len();
        if staged != offset {
            return Err(StorageError::Conflict(format!(
                "{id} has {staged} bytes staged, not {offset}"
            )));
        }
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| io_error("seeking in", &path, e))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut len = 0u64;
        let mut unsynced = 0u64;
        let mut writeback: Option<Writeback> = None;
        let written: io::Result<()> = async {
            while let Some(Ok(chunk)) = body.next().await {
                out.write_all(&chunk).await?;
                len += chunk.len() as u64;
                unsynced += chunk.len() as u64;
                // The disk writes what came while the next bytes arrive, so
                // that the sync before the answer has little left to do.
                if unsynced >= WRITEBACK_EVERY && writeback.as_ref().is_none_or(|w| w.is_finished())
                {
                    if let Some(done) = writeback.take() {
                        done.await.map_err(io::Error::other)??;
                    }
                    out.flush().await?;
                    let file = out.get_ref().try_clone().await?;
                    writeback = Some(tokio::spawn(async move { file.sync_data().await }));
                    unsynced = 0;
                }
            }
            out.flush().await
        }
        .await;
        let file = out.into_inner();
        if let Err(e) = written {
            // What was written is not all that arrived: drop it all.
            if let Err(undo) = file.set_len(offset).await {
                tracing::error!(path = %path.display(), error = %undo, "cannot truncate a failed append");
            }
            return Err(io_error("writing", &path, e));
        }
        Ok(Box::new(LocalAppended {
            file,
            path,
            start: offset,
            len,
            writeback,
        }))
    }

    async fn complete(&self, id: &str) -> Result<(), StorageError> {
        let mut state = self.state(id).await?;
        let bin = self.path(id, "bin")?;
        match &state.target {
            // A rename into the store, fsynced; `ID.json` goes with the
            // upload's removal.
            Some(target) => match tokio::fs::try_exists(&bin).await {
                Ok(true) => {
                    self.store
                        .put_file(target, &bin, "application/octet-stream")
                        .await
                }
                // Moved already: by the attempt that failed after it.
                Ok(false) => Ok(()),
                Err(e) => Err(io_error("checking", &bin, e)),
            },
            None if state.completed => Ok(()),
            None => {
                state.completed = true;
                self.write_state(id, &state).await
            }
        }
    }

    async fn read(&self, id: &str) -> Result<ByteStream, StorageError> {
        let state = self.state(id).await?;
        if !state.completed || state.target.is_some() {
            return Err(StorageError::Conflict(format!(
                "{id} is not a completed staged upload"
            )));
        }
        let path = self.path(id, "bin")?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error("opening", &path, e))?;
        Ok(Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)))
    }

    async fn remove(&self, id: &str) -> Result<(), StorageError> {
        // The bytes first (gone already if they moved into the store), the
        // descriptor last: while it is there the upload can be found (and
        // removed again).
        for path in [self.path(id, "bin")?, self.path(id, "json")?] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing", &path, e)),
            }
        }
        Ok(())
    }

    fn list(&self) -> ListPages<'_> {
        let dir = self.dir.clone();
        Box::pin(futures::stream::once(async move {
            tokio::task::spawn_blocking(move || list_dir(&dir))
                .await
                .map_err(|e| StorageError::unavailable("local staging task failed", e))?
        }))
    }
}

/// The staged ids in `dir`, with when their bytes were last written.
fn list_dir(dir: &Path) -> Result<Vec<Listed>, StorageError> {
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error("listing", dir, e))? {
        let entry = entry.map_err(|e| io_error("listing", dir, e))?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let bin = dir.join(format!("{id}.bin"));
        let modified = std::fs::metadata(&bin)
            .or_else(|_| entry.metadata())
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| SystemTime::now());
        listed.push(Listed {
            key: id.to_string(),
            modified,
        });
    }
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(listed)
}

/// Bytes appended to `ID.bin`, not yet synced.
struct LocalAppended {
    file: tokio::fs::File,
    path: PathBuf,
    start: u64,
    len: u64,
    /// A sync started while the bytes arrived: its error counts too (after
    /// a failed fsync the kernel may report the next one clean).
    writeback: Option<Writeback>,
}

impl LocalAppended {
    /// Waits for the background sync (its error counts), then syncs the
    /// rest if `sync`; the new length.
    async fn settle(self: Box<Self>, sync: bool) -> Result<u64, StorageError> {
        if let Some(done) = self.writeback {
            done.await
                .map_err(io::Error::other)
                .and_then(|synced| synced)
                .map_err(|e| io_error("syncing", &self.path, e))?;
        }
        if sync {
            self.file
                .sync_data()
                .await
                .map_err(|e| io_error("syncing", &self.path, e))?;
        }
        Ok(self.start + self.len)
    }
}

/// A background `fdatasync` of an append's file.
type Writeback = tokio::task::JoinHandle<io::Result<()>>;

#[async_trait]
impl Appended for LocalAppended {
    fn len(&self) -> u64 {
        self.len
    }

    async fn keep(self: Box<Self>) -> Result<u64, StorageError> {
        self.settle(true).await
    }

    async fn keep_to_complete(self: Box<Self>) -> Result<u64, StorageError> {
        // Completing renames the file into the store after syncing it.
        self.settle(false).await
    }

    async fn discard(self: Box<Self>) {
        if let Err(e) = self.file.set_len(self.start).await {
            tracing::error!(path = %self.path.display(), error = %e, "cannot drop discarded bytes");
        }
    }
}

/// A descriptor as the text `ID.json` holds.
fn info_text(info: Bytes) -> Result<String, StorageError> {
    String::from_utf8(info.to_vec())
        .map_err(|e| StorageError::unavailable("a staging descriptor that is not UTF-8", e))
}

async fn read(path: &Path, id: &str) -> Result<Bytes, StorageError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(bytes.into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(StorageError::NotFound(id.to_string()))
        }
        Err(e) => Err(io_error("reading", path, e)),
    }
}

/// Writes `bytes` to `path` through a synced temporary file in `dir`.
async fn write_atomic(dir: &Path, path: &Path, bytes: Bytes) -> Result<(), StorageError> {
    let (dir, path) = (dir.to_path_buf(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let write = || -> io::Result<()> {
            let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
            io::Write::write_all(&mut tmp, &bytes)?;
            tmp.as_file().sync_all()?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| io_error("writing", &path, e))
    })
    .await
    .map_err(|e| StorageError::unavailable("local staging task failed", e))?
}

fn io_error(action: &str, path: &Path, e: io::Error) -> StorageError {
    StorageError::unavailable(format!("{action} {}", path.display()), e)
}
