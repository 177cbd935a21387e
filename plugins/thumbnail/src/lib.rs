//! `thumbnail` (extension): stores a small PNG preview beside JPEG and PNG
//! uploads.
//!
//! For uploads declared `image/jpeg` or `image/png`, decodes the image,
//! scales it down to fit in 256x256 keeping its aspect ratio (smaller
//! images keep their size), and returns one derived artifact named
//! `thumbnail.png` (content type `image/png`). Other content types get an
//! empty list. A decoding failure is a `plugin-error`
//! `cannot decode <type>: <reason>`.
//!
//! A JPEG is decoded at reduced scale: the inverse DCT makes 1/2, 1/4 or
//! 1/8 of each 8x8 block directly, so a 2048x1536 photo is decoded straight
//! to 256x192 instead of to 3 million pixels that are then thrown away
//! (fuel counts every wasm instruction: about 8x less for such a photo).

use std::io::Cursor;

use airlock_plugin_sdk::{Content, Derived, Guest, PluginError, Upload, read_all};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, GrayImage, ImageFormat, ImageReader, RgbImage};
use jpeg_decoder::{Decoder, PixelFormat};

/// The thumbnail fits in a square of this many pixels.
const MAX_SIDE: u32 = 256;

struct Thumbnail;

/// Decodes a JPEG at the smallest scale that still covers `MAX_SIDE` on
/// its longer side; `None` for a pixel format left to the `image` crate
/// (CMYK, 16-bit).
fn decode_jpeg_scaled(bytes: &[u8]) -> Result<Option<DynamicImage>, PluginError> {
    let mut decoder = Decoder::new(Cursor::new(bytes));
    let error = |e: jpeg_decoder::Error| PluginError::new(format!("cannot decode image/jpeg: {e}"));
    decoder.read_info().map_err(error)?;
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    // The requested size keeps the aspect ratio, so that the decoder's scale
    // (chosen to cover it on both sides) never drops below MAX_SIDE on the
    // longer side.
    let longer = width.max(height).max(1);
    let want = |side: u32| {
        let scaled = u64::from(side) * u64::from(MAX_SIDE) / u64::from(longer);
        u16::try_from(scaled.max(1)).unwrap_or(u16::MAX)
    };
    if longer > MAX_SIDE {
        decoder.scale(want(width), want(height)).map_err(error)?;
    }
    let pixels = decoder.decode().map_err(error)?;
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let image = match info.pixel_format {
        PixelFormat::RGB24 => RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        PixelFormat::L8 => GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        PixelFormat::L16 | PixelFormat::CMYK32 => None,
    };
    Ok(image)
}

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
        let reader = ImageReader::with_format(Cursor::new(&bytes), format)
            .with_guessed_format()
            .map_err(PluginError::from)?;
        let scaled = match reader.format() {
            Some(ImageFormat::Jpeg) => decode_jpeg_scaled(&bytes)?,
            _ => None,
        };
        let image = match scaled {
            Some(image) => image,
            None => reader.decode().map_err(decode_error)?,
        };

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
        // Fast deflate: a thumbnail is small either way, and the default
        // level costs more fuel than the decoding.
        let mut png = Vec::new();
        let encoder =
            PngEncoder::new_with_quality(&mut png, CompressionType::Fast, FilterType::Sub);
        thumb
            .write_with_encoder(encoder)
            .map_err(|e| PluginError::new(format!("cannot encode thumbnail: {e}")))?;

        Ok(vec![Derived {
            name: "thumbnail.png".to_string(),
            content_type: "image/png".to_string(),
            bytes: png,
        }])
    }
}

airlock_plugin_sdk::export!(Thumbnail);
