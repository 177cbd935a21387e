//! Admission of upload requests: a per-client cap on requests open at once,
//! and the time limits a request body must keep to, so that slow clients
//! cannot hold the service's capacity.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::UploadError;
use crate::auth::Client;

/// Time limits on receiving a request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Longest wait for the next piece of the body.
    pub read: Duration,
    /// The whole body must have arrived this long after admission.
    pub deadline: Duration,
}

/// Upload requests open per client.
#[derive(Default)]
pub(super) struct OpenUploads(Arc<Mutex<HashMap<String, usize>>>);

impl OpenUploads {
    /// Counts one more request for `client`, or refuses it at its cap.
    pub(super) fn admit(
        &self,
        client: &Client,
        timeouts: BodyTimeouts,
    ) -> Result<Admission, UploadError> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client.name.clone()).or_default();
        if *count >= client.max_concurrent_uploads {
            return Err(UploadError::TooManyUploads {
                limit: client.max_concurrent_uploads,
            });
        }
        *count += 1;
        Ok(Admission {
            open: Arc::clone(&self.0),
            client: client.name.clone(),
            timeouts,
            deadline: Instant::now() + timeouts.deadline,
        })
    }
}

/// One admitted upload request: holds its place under the client's cap
/// until dropped, and bounds every wait for its body.
pub struct Admission {
    open: Arc<Mutex<HashMap<String, usize>>>,
    client: String,
    timeouts: BodyTimeouts,
    deadline: Instant,
}

impl Admission {
    /// Waits for `read` (the next piece of the body), within the read
    /// timeout and the request's deadline.
    pub async fn body_read<F: Future>(&self, read: F) -> Result<F::Output, UploadError> {
        let per_read = Instant::now() + self.timeouts.read;
        let until = per_read.min(self.deadline);
        match tokio::time::timeout_at(until, read).await {
            Ok(output) => Ok(output),
            Err(_) if until == self.deadline => Err(UploadError::UploadDeadline {
                seconds: self.timeouts.deadline.as_secs(),
            }),
            Err(_) => Err(UploadError::SlowBody {
                seconds: self.timeouts.read.as_secs_f64(),
            }),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}
