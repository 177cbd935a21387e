//! Reading the upload's bytes from the host, chunk by chunk.

use std::io::{self, Read, Seek, SeekFrom};

use crate::Content;

/// The largest read [`ContentReader`] asks the host for in one call (64 KiB).
pub const CHUNK_SIZE: usize = 64 * 1024;

/// `std::io::Read + Seek` over an upload's [`Content`].
///
/// Each `read` is one host call for at most [`CHUNK_SIZE`] bytes, and every
/// byte returned counts against the invocation's `read-bytes` budget. Wrap it
/// in a `std::io::BufReader` for decoders that make many small reads.
///
/// ```no_run
/// # #[cfg(feature = "processor")] fn f(content: &airlock_plugin_sdk::Content) -> std::io::Result<()> {
/// use std::io::Read;
/// let mut head = [0u8; 16];
/// let n = airlock_plugin_sdk::ContentReader::new(content).read(&mut head)?;
/// # Ok(()) }
/// ```
pub struct ContentReader<'a> {
    content: &'a Content,
    size: u64,
    pos: u64,
}

impl<'a> ContentReader<'a> {
    /// A reader positioned at the start of `content`.
    pub fn new(content: &'a Content) -> Self {
        ContentReader {
            size: content.size(),
            content,
            pos: 0,
        }
    }

    /// Total size of the content in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.size.saturating_sub(self.pos);
        let want = buf
            .len()
            .min(CHUNK_SIZE)
            .min(remaining.try_into().unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        // `want` <= 64 KiB, so it fits in a u32.
        let bytes = self.content.read(self.pos, want as u32);
        let n = bytes.len().min(want);
        buf[..n].copy_from_slice(&bytes[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ContentReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the content",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

/// Reads the whole content into memory, in chunks of [`CHUNK_SIZE`].
///
/// ```no_run
/// # #[cfg(feature = "processor")] fn f(content: &airlock_plugin_sdk::Content) {
/// let bytes = airlock_plugin_sdk::read_all(content);
/// assert_eq!(bytes.len() as u64, content.size());
/// # }
/// ```
pub fn read_all(content: &Content) -> Vec<u8> {
    let size = content.size();
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while (out.len() as u64) < size {
        let want = (size - out.len() as u64).min(CHUNK_SIZE as u64) as u32;
        let bytes = content.read(out.len() as u64, want);
        if bytes.is_empty() {
            break;
        }
        out.extend_from_slice(&bytes);
    }
    out
}
