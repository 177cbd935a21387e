//! The upload a plugin sees, and a typed entry point per hook: a
//! processor's verdict, an extension's derived artifacts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::content::ContentSource;
use super::load::{HookKind, Plugin};
use super::outcome::{Derived, HookOutput, Invocation, InvokeError, Verdict};

/// An upload as the pipeline carries it and the plugins see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    /// Upload id.
    pub id: String,
    /// API client name.
    pub client: String,
    /// Client-given file name.
    pub filename: String,
    /// Declared content type.
    pub content_type: String,
    /// Metadata attached so far (by plugins, in hook order).
    pub metadata: BTreeMap<String, String>,
    /// Hex SHA-256 of the content the hook sees, when the host has it
    /// (computed as the bytes arrived); a record keeps its own `sha256`.
    #[serde(skip)]
    pub sha256: String,
}

impl Plugin {
    /// Runs a processor: its verdict on the upload.
    pub async fn process(
        &self,
        upload: &UploadInfo,
        content: Arc<dyn ContentSource>,
    ) -> Invocation<Verdict> {
        let Invocation { outcome, report } = self.invoke(upload, content).await;
        let outcome = outcome.and_then(|output| match output {
            HookOutput::Verdict(verdict) => Ok(verdict),
            HookOutput::Derived(_) => Err(self.wrong_hook(HookKind::Processor)),
        });
        Invocation { outcome, report }
    }

    /// Runs an extension: the artifacts it derived from a stored upload.
    pub async fn derive(
        &self,
        upload: &UploadInfo,
        content: Arc<dyn ContentSource>,
    ) -> Invocation<Vec<Derived>> {
        let Invocation { outcome, report } = self.invoke(upload, content).await;
        let outcome = outcome.and_then(|output| match output {
            HookOutput::Derived(derived) => Ok(derived),
            HookOutput::Verdict(_) => Err(self.wrong_hook(HookKind::Extension)),
        });
        Invocation { outcome, report }
    }

    /// The load-time check of its world makes this unreachable; called on
    /// the wrong hook anyway, the plugin's answer is not used.
    fn wrong_hook(&self, called_as: HookKind) -> InvokeError {
        InvokeError::Host {
            plugin: self.name.to_string(),
            reason: format!(
                "called as a {} but the component is a {}",
                called_as.world(),
                self.hook().world()
            ),
        }
    }
}
