//! Turning an uploaded image into a 256×256 JPEG avatar, safely.
//!
//! The format is sniffed from the bytes (the client's Content-Type is not
//! trusted), and decoding runs under explicit limits on dimensions and
//! allocation, so a small file that claims to be enormous (a decompression
//! bomb) is refused before any large buffer is allocated.

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageError, ImageFormat, ImageReader, Limits, Rgb, RgbImage};
use std::io::Cursor;

/// Side of the stored square avatar, in pixels.
pub const AVATAR_SIZE: u32 = 256;
/// Largest width or height accepted.
pub const MAX_DIMENSION: u32 = 8192;
/// Most memory the decoder may allocate.
pub const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;
/// JPEG quality of the stored avatar.
const JPEG_QUALITY: u8 = 85;
/// Transparent pixels are flattened onto the app's dark background.
const BACKGROUND: [u8; 3] = [0x1f, 0x23, 0x2b];

/// Why an upload was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AvatarError {
    /// Not PNG, JPEG, WebP or GIF.
    #[error("not a PNG, JPEG, WebP or GIF image")]
    NotAnImage,
    /// Dimensions or decoded size beyond the limits.
    #[error("image is too large: at most {MAX_DIMENSION}×{MAX_DIMENSION} pixels")]
    TooLarge,
    /// Looks like an image but does not decode.
    #[error("the image is corrupt or truncated")]
    Corrupt,
    /// Encoding the result failed (our side).
    #[error("could not encode the avatar: {0}")]
    Encode(String),
}

/// Decodes `bytes`, center-crops and resizes to [`AVATAR_SIZE`] square, and
/// re-encodes as JPEG. Returns the JPEG bytes.
pub fn make_avatar(bytes: &[u8]) -> Result<Vec<u8>, AvatarError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| AvatarError::NotAnImage)?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif) => {}
        _ => return Err(AvatarError::NotAnImage),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        ImageError::Limits(_) => AvatarError::TooLarge,
        ImageError::Unsupported(_) => AvatarError::NotAnImage,
        _ => AvatarError::Corrupt,
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err(AvatarError::Corrupt);
    }
    let square = image.resize_to_fill(AVATAR_SIZE, AVATAR_SIZE, FilterType::CatmullRom);
    let rgb = flatten(square);
    let mut out = Vec::with_capacity(32 * 1024);
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|e| AvatarError::Encode(e.to_string()))?;
    Ok(out)
}

/// Composites any alpha onto [`BACKGROUND`]; JPEG has no transparency.
fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u16::from(p[3]);
        let mix = |c: u8, bg: u8| ((u16::from(c) * a + u16::from(bg) * (255 - a)) / 255) as u8;
        Rgb([
            mix(p[0], BACKGROUND[0]),
            mix(p[1], BACKGROUND[1]),
            mix(p[2], BACKGROUND[2]),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode test image");
        out.into_inner()
    }

    #[test]
    fn resizes_png_to_square_jpeg() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            640,
            300,
            image::Rgba([200, 10, 10, 128]),
        ));
        let out = make_avatar(&encode(&img, ImageFormat::Png)).expect("avatar");
        let back = image::load_from_memory(&out).expect("decodes");
        assert_eq!((back.width(), back.height()), (AVATAR_SIZE, AVATAR_SIZE));
        assert_eq!(image::guess_format(&out).ok(), Some(ImageFormat::Jpeg));
    }

    #[test]
    fn refuses_text_and_truncated_images() {
        assert_eq!(
            make_avatar(b"hello, I am not an image"),
            Err(AvatarError::NotAnImage)
        );
        let img = DynamicImage::ImageRgb8(RgbImage::new(50, 50));
        let png = encode(&img, ImageFormat::Png);
        assert_eq!(
            make_avatar(&png[..png.len() / 2]),
            Err(AvatarError::Corrupt)
        );
    }
}
