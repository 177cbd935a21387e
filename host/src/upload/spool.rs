//! A request body on its way in: kept in memory while it is small, spooled
//! to a temp file once it is not. Chunks are written in batches, by one
//! trip to the blocking pool each, vectored and without a copy: tokio's
//! `File` copies every chunk into its own buffer and makes a trip per
//! chunk, a dozen thread hand-offs for a photo, which cost the upload path
//! more CPU than the writes themselves. A body that ends within the first
//! batch never touches the temp directory: the store writes it once.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use tempfile::TempPath;

use crate::storage::write_chunks;

/// Bytes gathered before a write: small enough that the file grows while a
/// slow body arrives, and bounds what one upload holds in memory.
const BATCH_BYTES: usize = 256 << 10;
/// Chunks gathered before a write, whatever their size: a body of tiny
/// chunks makes one write per this many, never a long list or a copy.
const BATCH_CHUNKS: usize = 64;

/// Where a received body is.
pub(super) enum Spooled {
    /// All of it, in memory (it fit in one batch), as it arrived.
    Memory(Vec<Bytes>),
    /// In this temp file, removed when the path drops.
    File(TempPath),
}

/// The body of one upload, as it arrives.
pub(super) struct Spool {
    path: PathBuf,
    /// The temp file, from the first write on; removed if the spool drops
    /// unfinished.
    file: Option<(File, TempPath)>,
    pending: Vec<Bytes>,
    pending_bytes: usize,
}

impl Spool {
    /// A spool that creates its temp file at `path` when the body outgrows
    /// memory.
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Takes `chunk`; writes the batch once it is full.
    pub(super) async fn push(&mut self, chunk: Bytes) -> io::Result<()> {
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if self.pending_bytes >= BATCH_BYTES || self.pending.len() >= BATCH_CHUNKS {
            self.write().await?;
        }
        Ok(())
    }

    /// The whole body: in memory if it never outgrew a batch, else in the
    /// temp file with every byte written.
    pub(super) async fn finish(mut self) -> io::Result<Spooled> {
        if self.file.is_none() {
            return Ok(Spooled::Memory(self.pending));
        }
        self.write().await?;
        match self.file.take() {
            Some((_file, path)) => Ok(Spooled::File(path)),
            None => Err(io::Error::other("the temp file went missing")),
        }
    }

    async fn write(&mut self) -> io::Result<()> {
        let chunks = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let file = self.file.take();
        let path = self.path.clone();
        let file = tokio::task::spawn_blocking(move || {
            let (mut file, path) = match file {
                Some(open) => open,
                None => {
                    let file = File::create(&path)?;
                    (file, TempPath::try_from_path(path)?)
                }
            };
            write_chunks(&mut file, &chunks)?;
            Ok::<_, io::Error>((file, path))
        })
        .await
        .map_err(io::Error::other)??;
        self.file = Some(file);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_body_is_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.part");
        let mut spool = Spool::new(path.clone());
        let mut expected = Vec::new();
        // Tiny chunks (written by count), then big ones (by bytes), then
        // tiny ones again.
        for i in 0..100u8 {
            expected.push(i);
            spool.push(Bytes::from(vec![i])).await.unwrap();
        }
        for i in 0..5u8 {
            let chunk = Bytes::from(vec![i; 100_000]);
            expected.extend_from_slice(&chunk);
            spool.push(chunk).await.unwrap();
        }
        for i in 0..200u8 {
            expected.push(i);
            spool.push(Bytes::from(vec![i])).await.unwrap();
        }
        let Spooled::File(temp) = spool.finish().await.unwrap() else {
            panic!("500 KB stayed in memory");
        };
        assert_eq!(std::fs::read(&temp).ok(), Some(expected));
        drop(temp);
        assert!(!path.exists(), "the temp file outlived its path");
    }

    #[tokio::test]
    async fn a_small_body_stays_in_memory_and_makes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.part");
        let mut spool = Spool::new(path.clone());
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let chunk = Bytes::from(vec![i; 3000]);
            expected.extend_from_slice(&chunk);
            spool.push(chunk).await.unwrap();
        }
        let Spooled::Memory(bytes) = spool.finish().await.unwrap() else {
            panic!("150 KB in 50 chunks went to a file");
        };
        assert_eq!(bytes.concat(), expected);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_unfinished_spool_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.part");
        let mut spool = Spool::new(path.clone());
        spool.push(Bytes::from(vec![7; 300_000])).await.unwrap();
        assert!(path.exists());
        drop(spool);
        assert!(!path.exists());
    }
}
