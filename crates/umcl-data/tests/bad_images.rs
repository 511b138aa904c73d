//! Damaged and hostile image files are errors naming the file, on every decoder: a JPEG cut
//! short (a partial download) and a small file whose header claims a huge image (a
//! decompression bomb), grayscale and colour, JPEG and PNG.

use image::{codecs::jpeg::JpegEncoder, ExtendedColorType, ImageEncoder};
use umcl_data::images::{decode_with, load, JpegDecoder, Preprocess};

/// A `w` x `h` JPEG with some structure (so its scan is not trivially short).
fn jpeg(w: u32, h: u32, colour: bool) -> Vec<u8> {
    let channels = if colour { 3 } else { 1 };
    let pixels: Vec<u8> = (0..w * h * channels)
        .map(|i| ((i * 7919) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    let kind = if colour {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&pixels, w, h, kind)
        .unwrap();
    out
}

/// Every decoder this build has for grayscale JPEGs.
fn decoders() -> Vec<JpegDecoder> {
    let mut all = vec![JpegDecoder::ZuneJpeg];
    if JpegDecoder::DEFAULT != JpegDecoder::ZuneJpeg {
        all.push(JpegDecoder::DEFAULT);
    }
    all
}

fn decode_error(bytes: &[u8], decoder: JpegDecoder) -> String {
    match decode_with(bytes, "x-ray.jpg", decoder) {
        Ok(img) => panic!(
            "{decoder:?} accepted a bad file ({} x {})",
            img.width(),
            img.height()
        ),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_truncated_jpeg_is_an_error_on_every_decoder() {
    for colour in [false, true] {
        let whole = jpeg(256, 256, colour);
        for decoder in decoders() {
            decode_with(&whole, "x-ray.jpg", decoder).unwrap();
            for cut in [whole.len() / 2, 400, whole.len() - 2] {
                let err = decode_error(&whole[..cut], decoder);
                assert!(
                    err.contains("x-ray.jpg") && err.contains("truncated"),
                    "colour {colour}, {decoder:?}, cut at {cut}: {err}"
                );
            }
        }
    }
}

#[test]
fn a_truncated_jpeg_file_is_an_error_through_load_and_preprocess() {
    let dir = tempfile::tempdir().unwrap();
    let whole = jpeg(300, 200, false);
    let path = dir.path().join("half.jpg");
    std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains("half.jpg") && err.contains("truncated"),
        "{err}"
    );
    let err = Preprocess::default().load(&path).unwrap_err().to_string();
    assert!(
        err.contains("half.jpg") && err.contains("truncated"),
        "{err}"
    );
}

/// `bytes` with the frame header's height and width set to `h` and `w`.
fn claim_jpeg_size(bytes: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let sof = out
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("a baseline frame header");
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}

#[test]
fn a_jpeg_claiming_a_huge_size_is_refused_before_decoding() {
    for colour in [false, true] {
        let bomb = claim_jpeg_size(&jpeg(64, 64, colour), 65000, 65000);
        for decoder in decoders() {
            let err = decode_error(&bomb, decoder);
            assert!(
                err.contains("65000 x 65000") && err.contains("limit"),
                "colour {colour}, {decoder:?}: {err}"
            );
        }
    }
    // 30000 x 30000 (900 M pixels), which training used to accept, is over the limit too.
    let err = decode_error(
        &claim_jpeg_size(&jpeg(64, 64, false), 30000, 30000),
        JpegDecoder::DEFAULT,
    );
    assert!(err.contains("limit"), "{err}");
}

/// A PNG whose header claims `w` x `h` 8-bit grayscale pixels, with one tiny data chunk.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grayscale, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn a_png_claiming_a_huge_size_is_refused_before_decoding() {
    let err = decode_error(&png_claiming(20000, 20000), JpegDecoder::DEFAULT);
    assert!(
        err.contains("20000 x 20000") && err.contains("limit"),
        "{err}"
    );
    // The same header at a size within the limit gets as far as the (missing) pixel data.
    let err = decode_error(&png_claiming(64, 64), JpegDecoder::DEFAULT);
    assert!(!err.contains("limit"), "{err}");
}
