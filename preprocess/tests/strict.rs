//! Every format, whole and cut at several lengths: whole files decode to their pixels, cut ones
//! are errors (never a partly grey picture); headers declaring huge images are refused before
//! allocating.

use std::io::Cursor;

use image::{ImageFormat, RgbImage};
use preprocess::{decode_rgb8, ImageError};

/// A textured picture (gradients and a checker), so that every part of a file carries data.
fn picture(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let c = if (x / 7 + y / 5) % 2 == 0 { 40 } else { 0 };
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            (((x ^ y) & 0xff) as u8) / 2 + c,
        ])
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// 10 % … 99 % of the file, and one byte short.
fn cuts(len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [0.1, 0.3, 0.6, 0.9, 0.99]
        .iter()
        .map(|f| (len as f64 * f) as usize)
        .collect();
    v.push(len - 1);
    v
}

#[test]
fn whole_files_decode_to_their_pixels() {
    let img = picture(97, 61);
    for format in [ImageFormat::Png, ImageFormat::Pnm] {
        let got = decode_rgb8(&encode(&img, format)).unwrap();
        assert_eq!(got, img, "{format:?} is lossless");
    }
    // JPEG is lossy: the same pixels as `image`'s own (lenient) decoder, close to the source.
    let jpg = encode(&img, ImageFormat::Jpeg);
    let got = decode_rgb8(&jpg).unwrap();
    let lenient = image::load_from_memory(&jpg).unwrap().to_rgb8();
    assert_eq!(got, lenient);
    let mae: f64 = got
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / img.as_raw().len() as f64;
    assert!(mae < 8.0, "JPEG mean abs error {mae}");
    // Grayscale JPEG comes out as RGB with equal channels.
    let gray = image::DynamicImage::ImageRgb8(img.clone()).to_luma8();
    let mut out = Cursor::new(Vec::new());
    gray.write_to(&mut out, ImageFormat::Jpeg).unwrap();
    let g = decode_rgb8(out.get_ref()).unwrap();
    assert_eq!(g.dimensions(), (97, 61));
    assert!(g.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn every_format_cut_anywhere_is_an_error() {
    let img = picture(160, 120);
    for format in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Pnm] {
        let file = encode(&img, format);
        let whole = decode_rgb8(&file).unwrap();
        for cut in cuts(file.len()) {
            match decode_rgb8(&file[..cut]) {
                Err(ImageError::Corrupt { .. }) => {}
                // One byte short, a JPEG lacks only its end-of-image marker's last byte and a
                // PNG only its IEND trailer's checksum: every pixel is there, and the right
                // answer is the whole picture — never any other.
                Ok(p) if cut == file.len() - 1 && format != ImageFormat::Pnm => {
                    assert_eq!(p, whole, "{format:?} cut at {cut}")
                }
                // Cut inside the first bytes, the format is no longer recognisable.
                Err(ImageError::UnknownFormat) if cut < 16 => {}
                other => panic!(
                    "{format:?} cut at {cut} of {}: expected an error, got {:?}",
                    file.len(),
                    other.map(|i| i.dimensions())
                ),
            }
        }
    }
    // The message says what happened.
    let jpg = encode(&img, ImageFormat::Jpeg);
    let e = decode_rgb8(&jpg[..jpg.len() * 6 / 10])
        .unwrap_err()
        .to_string();
    assert!(e.contains("JPEG is truncated or corrupt"), "{e}");
    // The lenient decoder `image` uses would have accepted it (why this crate exists).
    assert!(image::load_from_memory(&jpg[..jpg.len() * 6 / 10]).is_ok());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn decompression_bombs_are_refused_before_allocating() {
    let too_large = |r: Result<RgbImage, ImageError>| {
        matches!(r, Err(ImageError::TooLarge { .. })) || panic!("{:?}", r.map(|i| i.dimensions()))
    };
    // PNG: a 1×1 file whose IHDR (re-checksummed) declares 100 000 × 100 000 pixels.
    let mut png = encode(&picture(1, 1), ImageFormat::Png);
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    assert!(png.len() < 100);
    assert!(too_large(decode_rgb8(&png)));
    let e = decode_rgb8(&png).unwrap_err().to_string();
    assert!(
        e.contains("beyond the decoding limit (512 MiB, sides ≤ 32768)"),
        "{e}"
    );
    // Within the side limit but beyond the byte cap: 30 000 × 30 000 RGB is 2.7 GB.
    png[16..20].copy_from_slice(&30_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&30_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    assert!(too_large(decode_rgb8(&png)));
    // PNM: the header alone declares the size.
    assert!(too_large(decode_rgb8(
        b"P6\n30000 30000\n255\n\x00\x00\x00"
    )));
    // JPEG: the frame header (SOF0) patched to 65 000 × 65 000.
    let mut jpg = encode(&picture(8, 8), ImageFormat::Jpeg);
    let sof = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpg[sof + 5..sof + 7].copy_from_slice(&65_000u16.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&65_000u16.to_be_bytes());
    assert!(too_large(decode_rgb8(&jpg)));
    let e = decode_rgb8(&jpg).unwrap_err().to_string();
    assert!(e.contains("65000×65000") && e.contains("512 MiB"), "{e}");
    // Not an image at all.
    assert!(matches!(
        decode_rgb8(b"GIF89a......"),
        Err(ImageError::UnknownFormat)
    ));
}

#[test]
fn an_elongated_image_is_refused_before_the_crop_resizes_it_to_gigabytes() {
    // 1 × 32768 decodes in 98 KB, but scaling its short side to 256 would need 256 × 8.4 M px.
    let thin = RgbImage::from_fn(1, 32_768, |_, y| image::Rgb([y as u8, 0, 0]));
    let img = decode_rgb8(&encode(&thin, ImageFormat::Png)).unwrap();
    assert!(matches!(
        preprocess::center_crop(&img, 224, 224, 0.875),
        Err(ImageError::TooLarge { .. })
    ));
    // Ordinary shapes crop to the requested size.
    let rgb = preprocess::center_crop(&picture(300, 200), 224, 224, 0.875).unwrap();
    assert_eq!(rgb.len(), 224 * 224 * 3);
}
