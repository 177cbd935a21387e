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

/// Content held in memory as the pieces it arrived in (a small upload's
/// body), read without joining them unless a read spans two.
pub struct ChunkedContent {
    chunks: Vec<Bytes>,
    size: u64,
}

impl ChunkedContent {
    /// The concatenation of `chunks`.
    pub fn new(chunks: Vec<Bytes>) -> Self {
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        Self { chunks, size }
    }
}

#[async_trait]
impl ContentSource for ChunkedContent {
    fn size(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let len = readable(self.size, offset, len);
        let mut skip = offset;
        let mut parts = Vec::new();
        let mut want = len;
        for chunk in &self.chunks {
            if want == 0 {
                break;
            }
            let chunk_len = chunk.len() as u64;
            if skip >= chunk_len {
                skip -= chunk_len;
                continue;
            }
            // `skip` < the chunk's length, so it fits in usize.
            let start = usize::try_from(skip).unwrap_or(usize::MAX);
            let take = (chunk.len() - start).min(want);
            parts.push(chunk.slice(start..start + take));
            want -= take;
            skip = 0;
        }
        Ok(match parts.as_slice() {
            [one] => one.clone(),
            _ => Bytes::from(parts.concat()),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunked_content_reads_like_the_joined_bytes() {
        let whole: Vec<u8> = (0..=255).collect();
        let chunks = vec![
            Bytes::copy_from_slice(&whole[..10]),
            Bytes::new(),
            Bytes::copy_from_slice(&whole[10..100]),
            Bytes::copy_from_slice(&whole[100..]),
        ];
        let content = ChunkedContent::new(chunks);
        assert_eq!(content.size(), 256);
        for (offset, len) in [
            (0, 5),
            (5, 10),
            (8, 200),
            (99, 2),
            (250, 100),
            (256, 1),
            (300, 4),
        ] {
            let got = content.read_at(offset, len).await.unwrap();
            let start = (offset as usize).min(256);
            let end = (start + len).min(256);
            assert_eq!(got, &whole[start..end], "read_at({offset}, {len})");
        }
    }
}
