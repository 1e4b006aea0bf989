//! Profile pictures: whatever is uploaded is checked by its bytes (never by its name or
//! declared type), limited in size and in pixels before it is decoded, and re-encoded as a JPEG
//! of a fixed size, so that no uploaded file is ever served as it came (no SVG script, no
//! polyglot, no metadata). Decoding runs on a blocking thread.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{ImageFormat, ImageReader, Limits};

/// Largest upload accepted.
pub const MAX_BYTES: usize = 10 << 20;
/// Largest picture decoded (a 50-megapixel "bomb" is refused before decoding).
const MAX_PIXELS: u64 = 40_000_000;
const MAX_SIDE: u32 = 12_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    Avatar,
    Banner,
}

impl Picture {
    /// Output size: the picture is scaled to cover it and cropped to the middle.
    fn size(self) -> (u32, u32) {
        match self {
            Picture::Avatar => (256, 256),
            Picture::Banner => (1500, 500),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Picture::Avatar => "avatar",
            Picture::Banner => "banner",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the upload is empty")]
    Empty,
    #[error("pictures are at most {} MiB", MAX_BYTES >> 20)]
    TooLarge,
    #[error("that is not a picture: send a PNG, JPEG, GIF or WebP")]
    NotAPicture,
    #[error("{0} pictures are not accepted: send a PNG, JPEG, GIF or WebP")]
    Unsupported(String),
    #[error("the picture is too large: at most 40 megapixels and 12000 pixels a side")]
    TooManyPixels,
    #[error("the picture cannot be read: {0}")]
    Broken(String),
}

impl From<ImageError> for crate::error::ApiError {
    fn from(error: ImageError) -> Self {
        use crate::error::ApiError;
        match error {
            ImageError::TooLarge => {
                ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "too_large", error.to_string())
            }
            ImageError::NotAPicture | ImageError::Unsupported(_) => {
                ApiError::new(axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_image", error.to_string())
            }
            ImageError::Empty | ImageError::TooManyPixels | ImageError::Broken(_) => {
                ApiError::invalid("invalid_image", error.to_string())
            }
        }
    }
}

/// The uploaded bytes as this picture's JPEG.
pub fn reencode(bytes: &[u8], picture: Picture) -> Result<Vec<u8>, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(ImageError::TooLarge);
    }
    let format = image::guess_format(bytes).map_err(|_| ImageError::NotAPicture)?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) {
        return Err(ImageError::Unsupported(format!("{format:?}")));
    }
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| ImageError::Broken(e.to_string()))?;
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooManyPixels);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 << 20);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| ImageError::Broken(e.to_string()))?;
    let (w, h) = picture.size();
    let scaled = decoded.resize_to_fill(w, h, FilterType::CatmullRom).to_rgb8();
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    encoder.encode_image(&scaled).map_err(|e| ImageError::Broken(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture =
            image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn a_picture_comes_out_as_a_jpeg_of_the_fixed_size() {
        let jpeg = reencode(&png(640, 480), Picture::Avatar).unwrap();
        assert_eq!(image::guess_format(&jpeg).unwrap(), ImageFormat::Jpeg);
        assert_eq!(image::load_from_memory(&jpeg).unwrap().width(), 256);
        let banner = image::load_from_memory(&reencode(&png(300, 300), Picture::Banner).unwrap()).unwrap();
        assert_eq!((banner.width(), banner.height()), (1500, 500));
    }

    #[test]
    fn what_is_not_an_accepted_picture_is_refused_by_its_bytes() {
        assert_eq!(reencode(b"", Picture::Avatar), Err(ImageError::Empty));
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
        assert_eq!(reencode(svg, Picture::Avatar), Err(ImageError::NotAPicture));
        let elf = [&b"\x7fELF\x02\x01\x01\0"[..], &[0u8; 64]].concat();
        assert_eq!(reencode(&elf, Picture::Avatar), Err(ImageError::NotAPicture));
        let bmp = [&b"BM"[..], &[0u8; 64]].concat();
        assert!(matches!(reencode(&bmp, Picture::Avatar), Err(ImageError::Unsupported(_) | ImageError::NotAPicture)));
        let mut truncated = png(64, 64);
        truncated.truncate(60);
        assert!(matches!(reencode(&truncated, Picture::Avatar), Err(ImageError::Broken(_))));
        assert_eq!(reencode(&vec![0u8; MAX_BYTES + 1], Picture::Avatar), Err(ImageError::TooLarge));
    }
}
