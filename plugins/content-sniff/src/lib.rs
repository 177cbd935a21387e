//! `content-sniff` (processor): checks an upload's magic bytes against its
//! declared content type.
//!
//! Reads only the first 8 KiB (one `content.read` call) and detects the real
//! type with the `infer` crate.
//!
//! - Accepts when the detected type agrees with the declared one, with
//!   metadata `detected-type` = the detected MIME type (left out when the
//!   bytes are not recognised).
//! - Rejects with `declared <type>, but the bytes are <mime> (<ext>)` when the
//!   magic bytes contradict the declared type (an ELF or a ZIP declared
//!   `image/png`, a JPEG declared `image/png`, …), and with `declared <type>,
//!   but the bytes are not a recognised image` for an `image/*` upload whose
//!   bytes are no known image format.
//! - Unrecognised bytes declared as anything other than `image/*` (e.g.
//!   `text/plain`, `application/octet-stream`) are accepted.
//!
//! Agreement is lenient where real files vary: aliases (`image/jpg`), generic
//! declarations (`application/octet-stream`), text declared as any text type,
//! ZIP-based documents (`.docx`, `.odt`, `.jar`, `*+zip`) seen as a ZIP, OLE
//! documents (`.doc`, `.xls`, `.msi`) seen as OLE storage, and audio/video
//! containers declared as any audio or video type.

use airlock_plugin_sdk::{Content, Guest, PluginError, Upload, Verdict};
use infer::MatcherType;

/// How many leading bytes are inspected.
const SNIFF_LEN: u32 = 8 * 1024;

struct ContentSniff;

impl Guest for ContentSniff {
    fn process(upload: Upload, content: &Content) -> Result<Verdict, PluginError> {
        let header = content.read(0, SNIFF_LEN);
        let declared = normalize(&upload.content_type);

        if declared == "image/svg+xml" {
            // SVG is XML text: infer has no matcher for it.
            let text = String::from_utf8_lossy(&header).to_ascii_lowercase();
            return Ok(if text.contains("<svg") {
                accept(Some("image/svg+xml"))
            } else {
                Verdict::Reject(format!(
                    "declared {declared}, but the bytes are not an SVG image"
                ))
            });
        }

        match infer::get(&header) {
            Some(kind) if compatible(&declared, &kind) => Ok(accept(Some(kind.mime_type()))),
            // `declared` is not empty here: no declaration is compatible.
            Some(kind) => Ok(Verdict::Reject(format!(
                "declared {declared}, but the bytes are {} ({})",
                kind.mime_type(),
                kind.extension()
            ))),
            None if declared.starts_with("image/") => Ok(Verdict::Reject(format!(
                "declared {declared}, but the bytes are not a recognised image"
            ))),
            None => Ok(accept(None)),
        }
    }
}

fn accept(detected: Option<&str>) -> Verdict {
    Verdict::Accept(
        detected
            .map(|mime| ("detected-type".to_string(), mime.to_string()))
            .into_iter()
            .collect(),
    )
}

/// Lowercases a content type and drops its parameters (`; charset=…`).
fn normalize(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    canonical(&essence.to_ascii_lowercase()).to_string()
}

/// Maps common aliases to the MIME types `infer` reports.
fn canonical(mime: &str) -> &str {
    match mime {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/x-png" => "image/png",
        "image/x-icon" | "image/ico" => "image/vnd.microsoft.icon",
        "image/x-ms-bmp" | "image/x-bmp" => "image/bmp",
        "image/heic" => "image/heif",
        "application/x-zip-compressed" | "application/x-zip" => "application/zip",
        "application/x-gzip" => "application/gzip",
        "application/x-rar-compressed" | "application/x-rar" => "application/vnd.rar",
        "application/xml" => "text/xml",
        "application/x-sh" => "text/x-shellscript",
        "application/x-msdownload" | "application/x-dosexec" => {
            "application/vnd.microsoft.portable-executable"
        }
        "application/x-elf" | "application/x-sharedlib" => "application/x-executable",
        "audio/mp3" => "audio/mpeg",
        "audio/wav" | "audio/wave" | "audio/vnd.wave" => "audio/x-wav",
        "audio/flac" => "audio/x-flac",
        "font/woff" => "application/font-woff",
        "font/ttf" | "font/otf" | "font/sfnt" => "application/font-sfnt",
        other => other,
    }
}

/// Whether bytes detected as `kind` may honestly be declared as `declared`.
fn compatible(declared: &str, kind: &infer::Type) -> bool {
    let detected = kind.mime_type();
    let text_declared = declared.starts_with("text/")
        || matches!(declared, "application/json" | "application/javascript");
    let zip_based = declared.ends_with("+zip")
        || declared.starts_with("application/vnd.openxmlformats-officedocument.")
        || declared.starts_with("application/vnd.oasis.opendocument.")
        || matches!(
            declared,
            "application/java-archive" | "application/vnd.android.package-archive"
        );
    let ole_based = matches!(
        declared,
        "application/msword"
            | "application/vnd.ms-excel"
            | "application/vnd.ms-powerpoint"
            | "application/vnd.ms-outlook"
            | "application/x-msi"
            | "application/x-ole-storage"
    );
    let media = |m: &str| m.starts_with("audio/") || m.starts_with("video/");

    declared == detected
        || matches!(
            declared,
            "" | "application/octet-stream" | "binary/octet-stream"
        )
        || (kind.matcher_type() == MatcherType::Text && text_declared)
        || (detected == "application/zip" && zip_based)
        || (detected == "application/x-ole-storage" && ole_based)
        || (media(detected) && media(declared))
}

airlock_plugin_sdk::export!(ContentSniff);
