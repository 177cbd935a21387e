//! `thumbnail` (extension): stores a small PNG preview beside JPEG and PNG
//! uploads.
//!
//! For uploads declared `image/jpeg` or `image/png`, decodes the image with
//! the `image` crate, scales it down to fit in 256x256 keeping its aspect
//! ratio (smaller images keep their size), and returns one derived artifact
//! named `thumbnail.png` (content type `image/png`). Other content types get
//! an empty list. A decoding failure is a `plugin-error`
//! `cannot decode <type>: <reason>`.

use std::io::Cursor;

use airlock_plugin_sdk::{Content, Derived, Guest, PluginError, Upload, read_all};
use image::{DynamicImage, ImageFormat, ImageReader};

/// The thumbnail fits in a square of this many pixels.
const MAX_SIDE: u32 = 256;

struct Thumbnail;

impl Guest for Thumbnail {
    fn on_stored(upload: Upload, content: &Content) -> Result<Vec<Derived>, PluginError> {
        let declared = upload.content_type.split(';').next().unwrap_or_default();
        let format = match declared.trim().to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" | "image/pjpeg" => ImageFormat::Jpeg,
            "image/png" => ImageFormat::Png,
            _ => return Ok(Vec::new()),
        };
        let bytes = read_all(content);
        let decode_error = |e: image::ImageError| {
            PluginError::new(format!("cannot decode {}: {e}", format.to_mime_type()))
        };
        // Trust the bytes over the declaration (a PNG declared as JPEG still
        // gets a thumbnail); only JPEG and PNG decoders are compiled in.
        let image = ImageReader::with_format(Cursor::new(&bytes), format)
            .with_guessed_format()
            .map_err(PluginError::from)?
            .decode()
            .map_err(decode_error)?;

        let thumb = if image.width() > MAX_SIDE || image.height() > MAX_SIDE {
            image.thumbnail(MAX_SIDE, MAX_SIDE)
        } else {
            image
        };
        // 8 bits per channel keeps the PNG small; keep gray and alpha as is.
        let color = thumb.color();
        let thumb = match (color.has_color(), color.has_alpha()) {
            (true, true) => DynamicImage::ImageRgba8(thumb.to_rgba8()),
            (true, false) => DynamicImage::ImageRgb8(thumb.to_rgb8()),
            (false, true) => DynamicImage::ImageLumaA8(thumb.to_luma_alpha8()),
            (false, false) => DynamicImage::ImageLuma8(thumb.to_luma8()),
        };
        let mut png = Vec::new();
        thumb
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .map_err(|e| PluginError::new(format!("cannot encode thumbnail: {e}")))?;

        Ok(vec![Derived {
            name: "thumbnail.png".to_string(),
            content_type: "image/png".to_string(),
            bytes: png,
        }])
    }
}

airlock_plugin_sdk::export!(Thumbnail);
