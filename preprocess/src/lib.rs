//! The image front end shared by `quant`, `train` and `edge-bench`: strict decoding of JPEG,
//! PNG and PNM under a stated memory cap, and timm's evaluation transform.
//!
//! **Strict** means a file that does not hold a whole, well-formed image is an error, never a
//! partly grey picture: `image` 0.25 runs zune-jpeg with strict mode off, which decodes a JPEG
//! cut at 60 % of its bytes silently (Pillow raises "image file is truncated"), so JPEG goes
//! through zune-jpeg directly with strict mode on; PNG and PNM go through `image`'s decoders,
//! which report a premature end.
//!
//! **Memory cap**: [`MAX_DECODED_BYTES`] bounds what one decode allocates (the declared
//! width × height × bytes per pixel is checked before any pixel buffer is allocated), so a
//! decompression bomb — a few hundred bytes declaring 100 000 × 100 000 pixels — is a typed
//! error, not the OOM killer.

use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{ImageFormat, Limits, RgbImage};

/// Most bytes one decode may allocate for its pixels: 512 MiB, counting the decoder's output
/// and the 8-bit RGB copy (an 8-bit RGB image of 89 megapixels; `image`'s own default).
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// Largest width or height accepted (JPEG's own limit is 65 535).
pub const MAX_SIDE: u32 = 32_768;

/// Why an image cannot be used.
#[derive(Debug)]
pub enum ImageError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Neither JPEG, PNG nor PNM (by content, not by name).
    UnknownFormat,
    /// Truncated or corrupt: the decoder's own words.
    Corrupt {
        format: &'static str,
        message: String,
    },
    /// Declares more pixels than [`MAX_DECODED_BYTES`] / [`MAX_SIDE`] allow.
    TooLarge {
        width: u64,
        height: u64,
        limit_bytes: u64,
    },
    /// Zero width or height.
    Empty,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ImageError::UnknownFormat => {
                write!(f, "not a JPEG, PNG or PNM image (by its first bytes)")
            }
            ImageError::Corrupt { format, message } => write!(
                f,
                "{format} is truncated or corrupt ({message}); an interrupted download or copy? \
                 Fetch the file again"
            ),
            ImageError::TooLarge {
                width,
                height,
                limit_bytes,
            } => write!(
                f,
                "declares {width}×{height} pixels, beyond the decoding limit ({} MiB, sides ≤ \
                 {MAX_SIDE}): a decompression bomb, or an image to downscale first",
                limit_bytes >> 20
            ),
            ImageError::Empty => write!(f, "image has no pixels"),
        }
    }
}

impl std::error::Error for ImageError {}

/// An error about the file at `path`: `path: error`.
#[derive(Debug)]
pub struct FileError {
    pub path: PathBuf,
    pub error: ImageError,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            ImageError::Io { .. } => write!(f, "{}", self.error),
            e => write!(f, "{}: {e}", self.path.display()),
        }
    }
}

impl std::error::Error for FileError {}

fn check_size(width: u64, height: u64, bytes_per_pixel: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Empty);
    }
    if width > MAX_SIDE as u64
        || height > MAX_SIDE as u64
        || width * height * bytes_per_pixel > MAX_DECODED_BYTES
    {
        return Err(ImageError::TooLarge {
            width,
            height,
            limit_bytes: MAX_DECODED_BYTES,
        });
    }
    Ok(())
}

/// Decodes a JPEG, PNG or PNM image (format from the content) to 8-bit RGB `[h][w][3]`.
///
/// Errors: [`ImageError::Corrupt`] for a truncated or malformed file (every format),
/// [`ImageError::TooLarge`] before allocating when the header declares more than the cap,
/// [`ImageError::UnknownFormat`], [`ImageError::Empty`].
pub fn decode_rgb8(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => decode_jpeg(bytes),
        Ok(format @ (ImageFormat::Png | ImageFormat::Pnm)) => decode_with_image(bytes, format),
        _ => Err(ImageError::UnknownFormat),
    }
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| ImageError::Corrupt {
        format: "JPEG",
        message: e.to_string(),
    };
    // zune's own side limit is lifted to JPEG's (65535) so that the header always yields its
    // size and `check_size` is the one check, before any pixel buffer exists.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(u16::MAX as usize)
        .set_max_height(u16::MAX as usize)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(Cursor::new(bytes), options);
    dec.decode_headers().map_err(corrupt)?;
    let (w, h) = dec.dimensions().ok_or(ImageError::Empty)?;
    // Output RGB plus zune's working buffers: a progressive decode keeps i16 coefficients of
    // every component for the whole image.
    let components = dec.info().map_or(4, |i| i.components as u64);
    check_size(w as u64, h as u64, 3 + 2 * components.max(3))?;
    let px = dec.decode().map_err(corrupt)?;
    let cs = dec.output_colorspace().unwrap_or(ColorSpace::RGB);
    let rgb = match cs.num_components() {
        3 => px,
        1 => px.iter().flat_map(|&g| [g, g, g]).collect(),
        n => {
            return Err(ImageError::Corrupt {
                format: "JPEG",
                message: format!("decoded to {n} components ({cs:?}), expected RGB"),
            })
        }
    };
    RgbImage::from_raw(w as u32, h as u32, rgb).ok_or(ImageError::Corrupt {
        format: "JPEG",
        message: "fewer pixels than the header declares".into(),
    })
}

fn decode_with_image(bytes: &[u8], format: ImageFormat) -> Result<RgbImage, ImageError> {
    let name = if format == ImageFormat::Png {
        "PNG"
    } else {
        "PNM"
    };
    let corrupt = |e: image::ImageError| ImageError::Corrupt {
        format: name,
        message: e.to_string(),
    };
    let too_large = |width: u64, height: u64| ImageError::TooLarge {
        width,
        height,
        limit_bytes: MAX_DECODED_BYTES,
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    // Sides are left to `check_size` (so that its error gives the declared size); the
    // allocation cap stays with the decoder too, for its working buffers.
    let mut limits = Limits::no_limits();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    // The header's size is checked before any pixel buffer exists.
    let dec = reader.into_decoder().map_err(corrupt)?;
    let (w, h) = image::ImageDecoder::dimensions(&dec);
    let bpp = image::ImageDecoder::color_type(&dec).bytes_per_pixel() as u64;
    check_size(w as u64, h as u64, bpp + 3)?;
    let img = image::DynamicImage::from_decoder(dec).map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(w as u64, h as u64),
        e => corrupt(e),
    })?;
    Ok(img.to_rgb8())
}

/// Reads and decodes the image at `path` ([`decode_rgb8`]); errors name the file.
pub fn open_rgb8(path: &Path) -> Result<RgbImage, FileError> {
    let err = |error| FileError {
        path: path.into(),
        error,
    };
    let bytes = std::fs::read(path).map_err(|source| {
        err(ImageError::Io {
            path: path.into(),
            source,
        })
    })?;
    decode_rgb8(&bytes).map_err(err)
}

/// Refuses a resize to `width × height` whose buffers (8-bit RGB output and the resampler's f32
/// intermediate: ~15 bytes a pixel) would exceed [`MAX_DECODED_BYTES`]: a small but extremely
/// elongated image (1 × 32768) scaled so that its short side is 256 would need gigabytes.
pub fn check_resized(width: u64, height: u64) -> Result<(), ImageError> {
    if width.saturating_mul(height).saturating_mul(15) > MAX_DECODED_BYTES {
        return Err(ImageError::TooLarge {
            width,
            height,
            limit_bytes: MAX_DECODED_BYTES,
        });
    }
    Ok(())
}

/// The geometry of timm's evaluation transform (`timm.data.transforms_factory.
/// transforms_imagenet_eval`) for an `iw × ih` image and an `h × w` crop: `scale = ⌊size /
/// crop_pct⌋` per side; a square crop resizes the short side to `scale` and the long side to
/// `int(scale · long / short)` (torchvision `Resize(int)`), a non-square one resizes to exactly
/// `(⌊h / crop_pct⌋, ⌊w / crop_pct⌋)`; then torchvision's `CenterCrop` offsets
/// `round((resized − crop) / 2)` (ties to even, as Python's `round`). Returns
/// `(resized_w, resized_h, x0, y0)`.
pub fn eval_geometry(iw: u32, ih: u32, h: usize, w: usize, crop_pct: f64) -> (u32, u32, u32, u32) {
    let scale = |side: usize| ((side as f64 / crop_pct).floor() as u32).max(side as u32);
    let (rw, rh) = if h == w {
        let short = scale(h) as u64;
        let (iw64, ih64) = (iw.max(1) as u64, ih.max(1) as u64);
        if iw64 <= ih64 {
            (short, (short * ih64 / iw64).max(short))
        } else {
            ((short * iw64 / ih64).max(short), short)
        }
    } else {
        (scale(w) as u64, scale(h) as u64)
    };
    let (rw, rh) = (
        rw.min(u32::MAX as u64) as u32,
        rh.min(u32::MAX as u64) as u32,
    );
    let offset = |r: u32, c: usize| ((r as f64 - c as f64) / 2.0).round_ties_even() as u32;
    (rw, rh, offset(rw, w), offset(rh, h))
}

/// timm's evaluation transform ([`eval_geometry`]: resize, Catmull-Rom as the bicubic filter,
/// then centre crop `h × w`). RGB u8 `[h][w][3]`. `crop_pct` in (0, 1].
///
/// Errors: [`ImageError::TooLarge`] when the resized image would exceed the cap
/// ([`check_resized`]; extreme aspect ratios).
pub fn center_crop(
    img: &RgbImage,
    h: usize,
    w: usize,
    crop_pct: f64,
) -> Result<Vec<u8>, ImageError> {
    let (rw, rh, x0, y0) = eval_geometry(img.width(), img.height(), h, w, crop_pct);
    check_resized(rw as u64, rh as u64)?;
    let resized = image::imageops::resize(img, rw, rh, FilterType::CatmullRom);
    Ok(
        image::imageops::crop_imm(&resized, x0, y0, w as u32, h as u32)
            .to_image()
            .into_raw(),
    )
}

/// [`open_rgb8`] then [`center_crop`].
pub fn load_center_crop(
    path: &Path,
    h: usize,
    w: usize,
    crop_pct: f64,
) -> Result<Vec<u8>, FileError> {
    center_crop(&open_rgb8(path)?, h, w, crop_pct).map_err(|error| FileError {
        path: path.into(),
        error,
    })
}

/// File extensions of the formats [`decode_rgb8`] reads (lower case).
pub const EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "ppm", "pgm", "pbm", "pnm"];

/// Whether `path`'s extension is one of [`EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

#[cfg(test)]
mod tests {
    use super::eval_geometry;

    /// Sizes torchvision computes for timm's eval transform at 224, crop_pct 0.875 (scale 256):
    /// `Resize(256)` then `CenterCrop(224)`.
    #[test]
    fn eval_geometry_is_timms() {
        // 500×375: long side int(256·500/375) = 341; offsets round(58.5) = 58 (ties to even), 16.
        assert_eq!(eval_geometry(500, 375, 224, 224, 0.875), (341, 256, 58, 16));
        assert_eq!(eval_geometry(640, 480, 224, 224, 0.875), (341, 256, 58, 16));
        assert_eq!(eval_geometry(375, 500, 224, 224, 0.875), (256, 341, 16, 58));
        assert_eq!(eval_geometry(224, 224, 224, 224, 1.0), (224, 224, 0, 0));
        // 1024×768 → 341×256 as well; 300×200 → 384×256, offsets 80, 16.
        assert_eq!(eval_geometry(300, 200, 224, 224, 0.875), (384, 256, 80, 16));
        // Non-square crops resize to exactly (⌊h/crop⌋, ⌊w/crop⌋): 96×128 → 109×146.
        assert_eq!(eval_geometry(640, 480, 96, 128, 0.875), (146, 109, 9, 6));
    }
}
