//! `exif-strip` (processor): removes EXIF metadata (camera data, GPS position,
//! embedded thumbnail) from JPEG uploads.
//!
//! JPEG is recognised by its bytes (`FF D8 FF`), whatever the declared type,
//! so a photo declared `application/octet-stream` is cleaned too. The file is
//! rewritten segment by segment, dropping only APP1 segments that start with
//! `Exif\0`; every other byte (other APPn segments such as JFIF, ICC and XMP,
//! tables, the entropy-coded scans, trailing data) is copied unchanged, so the
//! image decodes to exactly the same pixels. Nothing is re-encoded.
//!
//! - JPEG with EXIF → `replace` with the cleaned bytes (same content type as
//!   declared) and metadata `exif-stripped` = `true`.
//! - JPEG without EXIF, or not a JPEG → `accept` with no metadata. Only 3
//!   bytes of a non-JPEG upload are read.
//! - A JPEG whose segment structure is broken → `plugin-error`
//!   `malformed JPEG: <what> at byte <offset>` (a file cut off inside the
//!   image data is kept as it is, like decoders do).
//!
//! Note that the EXIF orientation tag goes too: viewers that relied on it
//! show such a photo unrotated.

use airlock_plugin_sdk::{Content, Guest, PluginError, Replacement, Upload, Verdict, read_all};

struct ExifStrip;

impl Guest for ExifStrip {
    fn process(upload: Upload, content: &Content) -> Result<Verdict, PluginError> {
        if content.read(0, 3) != [0xFF, 0xD8, 0xFF] {
            return Ok(Verdict::Accept(Vec::new()));
        }
        let jpeg = read_all(content);
        // An Exif segment holds these bytes: without them there is nothing
        // to strip, and the segment walk (which copies every byte) is
        // skipped. Most photos from the web have no EXIF.
        if !contains(&jpeg, EXIF_TAG) {
            return Ok(Verdict::Accept(Vec::new()));
        }
        match strip_exif(&jpeg).map_err(PluginError::new)? {
            None => Ok(Verdict::Accept(Vec::new())),
            Some(bytes) => Ok(Verdict::Replace(Replacement {
                bytes,
                content_type: upload.content_type,
                metadata: vec![("exif-stripped".to_string(), "true".to_string())],
            })),
        }
    }
}

/// What an APP1 Exif segment's payload starts with.
const EXIF_TAG: &[u8] = b"Exif\0";

/// Whether `needle` occurs in `data`. Looks at 32 bytes (four words) at a
/// time for the needle's first byte, and compares the rest only where it
/// is: fuel counts instructions, and metering costs a check per loop
/// iteration, so a wide, branch-free step is cheap on both counts.
fn contains(data: &[u8], needle: &[u8]) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(first);
    // Non-zero when some byte of `word` is `first`.
    let hit = |word: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ pattern;
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let matches_at = |i: usize| data[i..].starts_with(needle);
    let mut i = 0;
    while i + 32 <= data.len() {
        let block = &data[i..i + 32];
        let any = hit(&block[..8]) | hit(&block[8..16]) | hit(&block[16..24]) | hit(&block[24..]);
        if any != 0 && (i..i + 32).any(matches_at) {
            return true;
        }
        i += 32;
    }
    (i..data.len()).any(matches_at)
}

/// Returns the JPEG without its APP1 `Exif` segments, or `None` if it has
/// none.
fn strip_exif(data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let malformed = |what: &str, at: usize| format!("malformed JPEG: {what} at byte {at}");
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..2]); // SOI
    let mut stripped = false;
    let mut i = 2;

    loop {
        // A marker: 0xFF, optional 0xFF fill bytes, then the marker code.
        if data.get(i) != Some(&0xFF) {
            return Err(malformed("expected a marker", i));
        }
        let start = i;
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = data.get(i) else {
            return Err(malformed("truncated marker", start));
        };
        i += 1;
        match marker {
            // EOI: copy it and anything after it unchanged.
            0xD9 => {
                out.extend_from_slice(&data[start..]);
                break;
            }
            // Standalone markers (TEM, RSTn) carry no length.
            0x01 | 0xD0..=0xD7 => out.extend_from_slice(&data[start..i]),
            0x00 | 0xD8 => return Err(malformed("unexpected marker", start)),
            _ => {
                let len = match data.get(i..i + 2) {
                    Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                    _ => return Err(malformed("truncated segment length", i)),
                };
                let end = i + len;
                if len < 2 || end > data.len() {
                    return Err(malformed("segment runs past the end", start));
                }
                if marker == 0xE1 && data[i + 2..end].starts_with(b"Exif\0") {
                    stripped = true;
                } else {
                    out.extend_from_slice(&data[start..end]);
                }
                i = end;
                if marker == 0xDA {
                    // SOS: entropy-coded data follows up to the next marker
                    // that is neither a stuffed 0xFF00 nor an RSTn.
                    let scan_start = i;
                    while i + 1 < data.len() {
                        match (data[i], data[i + 1]) {
                            (0xFF, 0x00 | 0xD0..=0xD7) => i += 2,
                            (0xFF, 0xFF) => i += 1,
                            (0xFF, _) => break,
                            _ => i += 1,
                        }
                    }
                    if i + 1 >= data.len() {
                        // Truncated file (no EOI): keep what there is.
                        out.extend_from_slice(&data[scan_start..]);
                        break;
                    }
                    out.extend_from_slice(&data[scan_start..i]);
                }
            }
        }
    }
    Ok(stripped.then_some(out))
}

airlock_plugin_sdk::export!(ExifStrip);

#[cfg(test)]
mod tests {
    use super::strip_exif;

    /// SOI, APP0 JFIF, APP1 Exif, APP1 XMP, SOS with stuffed bytes and RST0, EOI.
    const JPEG: &[u8] = &[
        0xFF, 0xD8, // SOI
        0xFF, 0xE0, 0x00, 0x07, b'J', b'F', b'I', b'F', 0x00, // APP0
        0xFF, 0xE1, 0x00, 0x08, b'E', b'x', b'i', b'f', 0x00, 0x00, // APP1 Exif
        0xFF, 0xE1, 0x00, 0x06, b'h', b't', b't', b'p', // APP1, not Exif
        0xFF, 0xDA, 0x00, 0x02, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, // SOS
        0xFF, 0xD9, 0xAA, // EOI + trailing byte
    ];

    #[test]
    fn removes_only_the_exif_segment() {
        let out = strip_exif(JPEG).unwrap().unwrap();
        let mut expected = JPEG[..11].to_vec();
        expected.extend_from_slice(&JPEG[21..]);
        assert_eq!(out, expected);
    }

    #[test]
    fn leaves_jpeg_without_exif_alone() {
        let mut no_exif = JPEG[..11].to_vec();
        no_exif.extend_from_slice(&JPEG[21..]);
        assert_eq!(strip_exif(&no_exif).unwrap(), None);
    }

    #[test]
    fn finds_the_exif_tag_anywhere_and_only_whole() {
        use super::{EXIF_TAG, contains};
        assert!(contains(JPEG, EXIF_TAG));
        assert!(!contains(b"EEEExif", EXIF_TAG));
        assert!(contains(b"xxEExif\0", EXIF_TAG));
        assert!(!contains(b"", EXIF_TAG));
        // Found wherever it starts in a longer buffer: inside a 32-byte
        // block, across two, in the tail.
        for at in [0, 5, 27, 30, 31, 32, 60, 95] {
            let mut data = vec![b'E'; 100];
            data[at..at + EXIF_TAG.len()].copy_from_slice(EXIF_TAG);
            assert!(contains(&data, EXIF_TAG), "at {at}");
            data[at + 4] = b'x';
            assert!(!contains(&data, EXIF_TAG), "broken at {at}");
        }
    }

    #[test]
    fn rejects_broken_segments() {
        let err = strip_exif(&JPEG[..13]).unwrap_err();
        assert!(err.starts_with("malformed JPEG"), "{err}");
    }
}
