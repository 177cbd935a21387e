//! The local store's listing: a walk of its directory tree in byte order
//! of the keys, a batch at a time, skipping dot-named temporary files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use futures::stream;

use super::{ListPages, Listed, StorageError, check_prefix};

/// Objects per page.
const PAGE: usize = 1000;

/// Pages of the objects under `prefix` in the store at `root`.
pub(super) fn list(root: &Path, prefix: &str) -> ListPages<'static> {
    if let Err(err) = check_prefix(prefix) {
        return Box::pin(stream::once(async move { Err(err) }));
    }
    let walk = Walk {
        root: root.to_path_buf(),
        pending: vec![vec![Entry {
            key: prefix.trim_end_matches('/').to_string(),
            dir: true,
            modified: SystemTime::now(),
        }]],
    };
    Box::pin(stream::unfold(Some(walk), |walk| async move {
        let mut walk = walk?;
        let page = tokio::task::spawn_blocking(move || {
            let page = walk.next_page();
            (walk, page)
        })
        .await;
        match page {
            Ok((_, Ok(page))) if page.is_empty() => None,
            Ok((walk, Ok(page))) => Some((Ok(page), Some(walk))),
            Ok((_, Err(err))) => Some((Err(err), None)),
            Err(err) => Some((
                Err(StorageError::unavailable(
                    "local storage listing task failed",
                    err,
                )),
                None,
            )),
        }
    }))
}

struct Walk {
    root: PathBuf,
    /// Per directory being walked, its entries not yet visited, last first.
    pending: Vec<Vec<Entry>>,
}

struct Entry {
    /// Key of the file, or key prefix (without `/`) of the directory.
    key: String,
    dir: bool,
    modified: SystemTime,
}

impl Walk {
    fn next_page(&mut self) -> Result<Vec<Listed>, StorageError> {
        let mut page = Vec::new();
        while page.len() < PAGE {
            let Some(entries) = self.pending.last_mut() else {
                break;
            };
            let Some(entry) = entries.pop() else {
                self.pending.pop();
                continue;
            };
            if entry.dir {
                let entries = self.read_dir(&entry.key)?;
                self.pending.push(entries);
            } else {
                page.push(Listed {
                    key: entry.key,
                    modified: entry.modified,
                });
            }
        }
        Ok(page)
    }

    /// The entries of the directory of `prefix`, sorted so that popping
    /// them gives keys in byte order.
    fn read_dir(&self, prefix: &str) -> Result<Vec<Entry>, StorageError> {
        let dir = self.root.join(prefix);
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => listing,
            // Removed meanwhile (a delete prunes empty directories).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(listing_error(&dir, e)),
        };
        let mut entries = Vec::new();
        for item in listing {
            let item = item.map_err(|e| listing_error(&dir, e))?;
            // Dot-named files are temporaries, never keys.
            let Some(name) = item.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let meta = match item.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(listing_error(&item.path(), e)),
            };
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            entries.push(Entry {
                key,
                dir: meta.is_dir(),
                modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
            });
        }
        // A directory sorts as its name plus `/`, as its keys do.
        entries.sort_by(|a, b| sort_key(b).cmp(sort_key(a)));
        Ok(entries)
    }
}

fn sort_key(entry: &Entry) -> impl Iterator<Item = u8> + '_ {
    let slash: &[u8] = if entry.dir { b"/" } else { b"" };
    entry.key.bytes().chain(slash.iter().copied())
}

fn listing_error(path: &Path, e: io::Error) -> StorageError {
    StorageError::unavailable(format!("listing {}", path.display()), e)
}
