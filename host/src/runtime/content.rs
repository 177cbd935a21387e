//! Where a plugin's `content` resource reads its bytes from.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

/// The bytes of an upload as the host holds them: a temp file being processed,
/// a stored file, or a replacement produced by an earlier plugin.
#[async_trait]
pub trait ContentSource: Send + Sync {
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Up to `len` bytes from `offset`; fewer only at the end.
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;
}

/// How many of `len` bytes from `offset` exist in content of `size` bytes.
pub fn readable(size: u64, offset: u64, len: usize) -> usize {
    usize::try_from(size.saturating_sub(offset))
        .unwrap_or(usize::MAX)
        .min(len)
}

/// Content in a local file, read with positioned reads so concurrent readers
/// never share a cursor.
pub struct FileContent {
    file: Arc<File>,
    size: u64,
}

impl FileContent {
    /// Opens `path` for reading.
    pub fn open(path: &std::path::Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            file: Arc::new(file),
            size,
        })
    }
}

#[async_trait]
impl ContentSource for FileContent {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = readable(self.size, offset, len);
        if len == 0 {
            return Ok(Bytes::new());
        }
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; len];
            let mut filled = 0;
            while filled < len {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(filled);
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }
}

#[async_trait]
impl ContentSource for Bytes {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.len());
        let end = start.saturating_add(len).min(self.len());
        Ok(self.slice(start..end))
    }
}
