//! The example plugins give correct results on real files.

use airlock::runtime::{HookOutput, Verdict};
use sha2::{Digest, Sha256};

use crate::common::*;

#[tokio::test]
async fn content_sniff_rejects_an_executable_declared_as_png() {
    let sniff = load("content-sniff", roomy());
    match verdict(invoke(&sniff, "image/png", fixture_bytes("fake-png.png")).await) {
        Verdict::Reject { reason } => assert!(reason.contains("image/png"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn content_sniff_accepts_real_images_and_reads_only_the_head() {
    let sniff = load("content-sniff", roomy());
    for (file, ty) in [
        ("picture.png", "image/png"),
        ("photo-with-gps.jpg", "image/jpeg"),
    ] {
        let invocation = invoke(&sniff, ty, fixture_bytes(file)).await;
        assert!(invocation.report.usage.read_bytes <= 8 << 10);
        let v = verdict(invocation);
        assert_eq!(meta(&v, "detected-type"), Some(ty), "{file}: {v:?}");
    }
}

#[tokio::test]
async fn sha256_matches_the_host_digest() {
    let bytes = fixture_bytes("photo-with-gps.jpg");
    let v = verdict(invoke(&load("sha256", roomy()), "image/jpeg", bytes.clone()).await);
    assert_eq!(
        meta(&v, "sha256"),
        Some(hex::encode(Sha256::digest(&bytes)).as_str())
    );
}

/// EXIF (APP1 "Exif") segments of a JPEG.
fn exif_segments(jpeg: &[u8]) -> usize {
    jpeg.windows(6).filter(|w| w == b"Exif\0\0").count()
}

#[tokio::test]
async fn exif_strip_removes_gps_and_keeps_the_pixels() {
    let original = fixture_bytes("photo-with-gps.jpg");
    assert!(exif_segments(&original) > 0, "fixture has EXIF");
    let v = verdict(invoke(&load("exif-strip", roomy()), "image/jpeg", original.clone()).await);
    let Verdict::Replace {
        bytes,
        content_type,
        ..
    } = &v
    else {
        panic!("{v:?}")
    };
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(meta(&v, "exif-stripped"), Some("true"));
    assert_eq!(exif_segments(bytes), 0);
    let before = image::load_from_memory(&original).unwrap().to_rgb8();
    let after = image::load_from_memory(bytes).unwrap().to_rgb8();
    assert_eq!(before.dimensions(), after.dimensions());
    assert!(before.as_raw() == after.as_raw(), "same decoded pixels");
}

#[tokio::test]
async fn exif_strip_leaves_other_files_alone() {
    let v = verdict(
        invoke(
            &load("exif-strip", roomy()),
            "image/png",
            fixture_bytes("picture.png"),
        )
        .await,
    );
    assert_eq!(
        v,
        Verdict::Accept {
            metadata: Default::default()
        }
    );
}

#[tokio::test]
async fn thumbnail_fits_256_and_keeps_aspect() {
    let thumb = load("thumbnail", roomy());
    for (file, ty, expect) in [
        ("photo-with-gps.jpg", "image/jpeg", (256, 192)),
        ("photo-2048x1536.jpg", "image/jpeg", (256, 192)),
        ("picture.png", "image/png", (256, 171)),
    ] {
        let invocation = invoke(&thumb, ty, fixture_bytes(file)).await;
        let Ok(HookOutput::Derived(items)) = invocation.outcome else {
            panic!("{:?}", invocation.outcome)
        };
        assert_eq!(items.len(), 1);
        assert_eq!(
            (items[0].name.as_str(), items[0].content_type.as_str()),
            ("thumbnail.png", "image/png")
        );
        let img = image::load_from_memory(&items[0].bytes).unwrap();
        assert_eq!((img.width(), img.height()), expect, "{file}");
    }
}

/// Fuel of the thumbnail of a 2048x1536, 187 KB photo when it was decoded
/// at full size and then scaled (the example plugin before DCT scaling).
const FULL_DECODE_FUEL: u64 = 859_482_571;

/// Decoding the JPEG at 1/8 scale in the inverse DCT, rather than at full
/// size, costs at least 5x less fuel (fuel counts instructions: the figure
/// is the same on every machine).
#[tokio::test]
async fn thumbnail_of_a_large_photo_decodes_at_reduced_scale() {
    let thumb = load("thumbnail", roomy());
    let invocation = invoke(&thumb, "image/jpeg", fixture_bytes("photo-2048x1536.jpg")).await;
    let fuel = invocation.report.fuel_used.unwrap();
    assert!(invocation.outcome.is_ok(), "{:?}", invocation.outcome);
    assert!(
        fuel * 5 <= FULL_DECODE_FUEL,
        "{fuel} fuel: only {:.2}x less than a full decode",
        FULL_DECODE_FUEL as f64 / fuel as f64
    );
}

#[tokio::test]
async fn thumbnail_skips_what_is_not_an_image() {
    let invocation = invoke(&load("thumbnail", roomy()), "text/plain", "hello".into()).await;
    assert_eq!(invocation.outcome.unwrap(), HookOutput::Derived(Vec::new()));
}
