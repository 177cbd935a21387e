//! Upload ids and file names as clients may give them.

use crate::text::deceptive;

/// Upload ids are 32 lowercase hex characters.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A file name safe to store and echo back: the last path component, no
/// control, bidirectional or zero-width characters, at most 255 bytes.
pub fn sanitize_filename(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = last.chars().filter(|c| !deceptive(*c)).collect();
    while clean.len() > 255 {
        clean.pop();
    }
    let clean = clean.trim().to_string();
    if clean.is_empty() || clean == "." || clean == ".." {
        "upload".into()
    } else {
        clean
    }
}
