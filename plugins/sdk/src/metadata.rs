//! Building the metadata a hook attaches to an upload.

/// Metadata entries (key, value), in the order they were added.
///
/// ```no_run
/// # #[cfg(feature = "processor")] fn f() -> airlock_plugin_sdk::Verdict {
/// use airlock_plugin_sdk::Metadata;
/// let width = 2048;
/// Metadata::new()
///     .with("width", width)
///     .with("color", "rgb")
///     .accept()
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, String)>,
}

impl Metadata {
    /// No entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// These entries plus `key` = `value` (any `Display` value).
    pub fn with(mut self, key: impl Into<String>, value: impl std::fmt::Display) -> Self {
        self.push(key, value);
        self
    }

    /// Adds `key` = `value`.
    pub fn push(&mut self, key: impl Into<String>, value: impl std::fmt::Display) -> &mut Self {
        self.entries.push((key.into(), value.to_string()));
        self
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, as the WIT's `list<tuple<string, string>>`.
    pub fn into_entries(self) -> Vec<(String, String)> {
        self.entries
    }

    /// Accepts the upload with these entries.
    #[cfg(feature = "processor")]
    pub fn accept(self) -> crate::Verdict {
        crate::Verdict::Accept(self.entries)
    }
}

impl From<Metadata> for Vec<(String, String)> {
    fn from(metadata: Metadata) -> Self {
        metadata.entries
    }
}

impl<K: Into<String>, V: std::fmt::Display> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut metadata = Metadata::new();
        for (key, value) in iter {
            metadata.push(key, value);
        }
        metadata
    }
}
