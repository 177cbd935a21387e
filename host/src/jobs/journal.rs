//! The job queue on local disk: one JSON file per job in a directory
//! (`<storage>/.jobs`), written through a synced temporary file and a
//! rename, removed once the job is done. Files are named by enqueue time,
//! so the directory's order is the queue's. Only this process uses the
//! directory: at open every file in it is a job to run (its worker died
//! with the previous process).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Claimed, DeadLetter, Job, JobError, JobQueue, QueueStats, now_ms};

/// Prefix of files being written (never a job).
const TEMP_PREFIX: &str = ".tmp-";

/// Jobs in a directory.
pub struct Journal {
    dir: PathBuf,
    dead_dir: PathBuf,
    state: Mutex<State>,
    pushed: Notify,
}

#[derive(Default)]
struct State {
    /// File name → job, in queue order.
    queued: BTreeMap<String, Job>,
    /// Files taken by a worker of this process.
    claimed: HashSet<String>,
    dead: u64,
    /// Makes names unique within one millisecond.
    sequence: u64,
}

fn failed(what: impl Into<String>) -> impl FnOnce(io::Error) -> JobError {
    let what = what.into();
    move |source| JobError::Journal { what, source }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, JobError> + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::Journal {
            what: "journal task failed".into(),
            source: io::Error::other(e),
        })?
}

/// Writes `bytes` to `dir/name` durably: a synced temporary file renamed
/// over it, then the directory synced.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), JobError> {
    let path = dir.join(name);
    let write = || -> io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(dir)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(failed(format!("writing {}", path.display())))
}

fn remove_durably(dir: &Path, name: &str) -> Result<(), JobError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(failed(format!("removing {}", path.display()))(e)),
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed(format!("syncing {}", dir.display())))
}

fn json_files(dir: &Path) -> Result<Vec<String>, JobError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(failed(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(failed(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            // A write cut short by a crash: it was never a job.
            let _ = fs::remove_file(entry.path());
        } else if name.ends_with(".json") {
            names.push(name);
        }
    }
    Ok(names)
}

impl Journal {
    /// Opens (creating) the journal in `dir`; every job in it is queued
    /// again. An unreadable file is moved to the dead letters.
    pub async fn open(dir: &Path) -> Result<Self, JobError> {
        let dir = dir.to_path_buf();
        let dead_dir = dir.join("dead");
        let (queued, dead) = {
            let (dir, dead_dir) = (dir.clone(), dead_dir.clone());
            blocking(move || {
                fs::create_dir_all(&dead_dir)
                    .map_err(failed(format!("creating {}", dead_dir.display())))?;
                let mut queued = BTreeMap::new();
                for name in json_files(&dir)? {
                    let path = dir.join(&name);
                    let bytes =
                        fs::read(&path).map_err(failed(format!("reading {}", path.display())))?;
                    match serde_json::from_slice::<Job>(&bytes) {
                        Ok(job) => {
                            queued.insert(name, job);
                        }
                        Err(source) => {
                            let err = JobError::Corrupt {
                                handle: path.display().to_string(),
                                source,
                            };
                            tracing::error!(error = %crate::text::chain(&err), "moving an unreadable job to the dead letters");
                            fs::rename(&path, dead_dir.join(&name))
                                .map_err(failed(format!("moving {}", path.display())))?;
                        }
                    }
                }
                let dead = json_files(&dead_dir)?.len() as u64;
                Ok((queued, dead))
            })
            .await?
        };
        if !queued.is_empty() {
            tracing::info!(jobs = queued.len(), dir = %dir.display(), "post-store jobs left by the previous run are queued again");
        }
        Ok(Self {
            dir,
            dead_dir,
            state: Mutex::new(State {
                queued,
                dead,
                ..State::default()
            }),
            pushed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first due job no worker has; else how long until one is due.
    fn take_due(&self) -> Result<Claimed, Option<Duration>> {
        let mut state = self.lock();
        let now = now_ms();
        let mut next_due: Option<u64> = None;
        let mut found = None;
        for (name, job) in &state.queued {
            if state.claimed.contains(name) {
                continue;
            }
            if job.not_before_ms <= now {
                found = Some((name.clone(), job.clone()));
                break;
            }
            next_due = Some(next_due.map_or(job.not_before_ms, |d| d.min(job.not_before_ms)));
        }
        match found {
            Some((name, job)) => {
                state.claimed.insert(name.clone());
                Ok(Claimed {
                    job,
                    handle: name,
                    from_fallback: false,
                })
            }
            None => Err(next_due.map(|at| Duration::from_millis(at.saturating_sub(now)))),
        }
    }
}

#[async_trait]
impl JobQueue for Journal {
    fn kind(&self) -> &'static str {
        "journal"
    }

    async fn push(&self, job: &Job) -> Result<(), JobError> {
        let name = {
            let mut state = self.lock();
            state.sequence += 1;
            format!(
                "{:020}-{:06}-{}.json",
                job.enqueued_at_ms,
                state.sequence % 1_000_000,
                job.upload
            )
        };
        let bytes = serde_json::to_vec(job)?;
        let dir = self.dir.clone();
        let file = name.clone();
        blocking(move || write_durably(&dir, &file, &bytes)).await?;
        self.lock().queued.insert(name, job.clone());
        self.pushed.notify_one();
        Ok(())
    }

    async fn claim(&self, wait: Duration) -> Result<Option<Claimed>, JobError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let until_due = match self.take_due() {
                Ok(claimed) => return Ok(Some(claimed)),
                Err(until_due) => until_due,
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let nap = until_due.map_or(left, |d| d.min(left));
            // A push wakes one waiting worker at once.
            let _ = tokio::time::timeout(nap, self.pushed.notified()).await;
        }
    }

    async fn ack(&self, claimed: Claimed) -> Result<(), JobError> {
        let dir = self.dir.clone();
        let name = claimed.handle.clone();
        blocking(move || remove_durably(&dir, &name)).await?;
        let mut state = self.lock();
        state.queued.remove(&claimed.handle);
        state.claimed.remove(&claimed.handle);
        Ok(())
    }

    async fn retry(&self, claimed: Claimed, next: Job) -> Result<(), JobError> {
        let bytes = serde_json::to_vec(&next)?;
        let dir = self.dir.clone();
        let name = claimed.handle.clone();
        let written = blocking(move || write_durably(&dir, &name, &bytes)).await;
        let mut state = self.lock();
        state.claimed.remove(&claimed.handle);
        if written.is_ok() {
            state.queued.insert(claimed.handle, next);
        }
        drop(state);
        self.pushed.notify_one();
        written
    }

    async fn bury(&self, claimed: Claimed, reason: &str) -> Result<(), JobError> {
        let letter = DeadLetter {
            job: claimed.job.clone(),
            reason: reason.to_string(),
            buried_at_ms: now_ms(),
        };
        let bytes = serde_json::to_vec(&letter)?;
        let (dir, dead_dir, name) = (
            self.dir.clone(),
            self.dead_dir.clone(),
            claimed.handle.clone(),
        );
        blocking(move || {
            write_durably(&dead_dir, &name, &bytes)?;
            remove_durably(&dir, &name)
        })
        .await?;
        let mut state = self.lock();
        state.queued.remove(&claimed.handle);
        state.claimed.remove(&claimed.handle);
        state.dead += 1;
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, JobError> {
        let state = self.lock();
        let now = now_ms();
        Ok(QueueStats {
            depth: state.queued.len() as u64,
            oldest_age_ms: state
                .queued
                .values()
                .map(|j| now.saturating_sub(j.enqueued_at_ms))
                .max()
                .unwrap_or(0),
            dead: state.dead,
        })
    }
}
