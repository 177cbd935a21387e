//! A PATCH body as staging reads it: within the request's time limits and
//! the upload's length, hashed as it passes. The first problem ends the
//! body and is kept in the [`Tally`], so the caller can decide what the
//! bytes before it are worth.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::TusError;
use super::checksum::Hasher;
use crate::storage::Body;
use crate::upload::{Admission, BoxError, UploadError};

/// What passed through a body.
#[derive(Default)]
pub struct Tally {
    /// Bytes passed.
    pub received: u64,
    /// The upload's running SHA-256, when known from its first byte.
    pub sha256: Option<Sha256>,
    /// The `Upload-Checksum` digest of this body.
    pub checksum: Option<Hasher>,
    /// Why the body ended early.
    pub stop: Option<Stop>,
}

/// Why a body ended early.
pub enum Stop {
    /// The client stopped sending (went away, stalled, ran out of time):
    /// what arrived is good.
    Client(TusError),
    /// It brought more than `room` bytes: none of it is wanted.
    TooMuch(TusError),
}

impl Tally {
    /// Ends the body for `stop`: the error item staging stops at.
    fn stop(&mut self, stop: Stop) -> std::io::Result<Bytes> {
        self.stop = Some(stop);
        Err(std::io::Error::other("the body ended early"))
    }
}

/// `body` as a staging [`Body`]: waits bounded by `admission` (if any),
/// at most `room` bytes (more is `too_much`), counted and hashed in `tally`.
pub fn feed<'a, S, E>(
    body: S,
    admission: Option<&'a Admission>,
    room: u64,
    too_much: impl Fn() -> TusError + Send + 'a,
    tally: &'a Mutex<Tally>,
) -> Body<'a>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'a,
    E: Into<BoxError>,
{
    let state = (body, too_much);
    Box::pin(futures::stream::unfold(
        Some(state),
        move |state| async move {
            let (mut body, too_much) = state?;
            let next = match admission {
                Some(admission) => admission.body_read(body.next()).await,
                None => Ok(body.next().await),
            };
            let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
            let chunk = match next {
                Ok(None) => return None,
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(e))) => {
                    let stop = Stop::Client(UploadError::Body(e.into()).into());
                    return Some((tally.stop(stop), None));
                }
                Err(timeout) => {
                    return Some((tally.stop(Stop::Client(timeout.into())), None));
                }
            };
            let len = chunk.len() as u64;
            if tally.received.saturating_add(len) > room {
                return Some((tally.stop(Stop::TooMuch(too_much())), None));
            }
            tally.received += len;
            if let Some(sha256) = &mut tally.sha256 {
                sha256.update(&chunk);
            }
            if let Some(checksum) = &mut tally.checksum {
                checksum.update(&chunk);
            }
            drop(tally);
            Some((Ok(chunk), Some((body, too_much))))
        },
    ))
}
