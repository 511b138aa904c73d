//! The two grayscale JPEG decoders, libjpeg-turbo (cargo feature `libjpeg`) and zune-jpeg,
//! on the same files, pixel by pixel. They do not agree exactly (two implementations that round
//! differently); the bound measured here is written down in `docs/architecture.md` (umcl-data)
//! and asserted, so a change of either decoder that moves pixels further apart fails.
//!
//! Only built with the feature: without it a build has one decoder.
#![cfg(feature = "libjpeg")]

use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use umcl_data::images::{decode_with, JpegDecoder, JPEG_DECODER};

/// Largest difference of one pixel between the decoders, in 8-bit levels (measured: 1).
const MAX_LEVELS: u8 = 1;
/// Largest share of pixels that may differ, over all the generated grayscale JPEGs (measured:
/// 0.81%, 11 050 of 1 363 396 pixels, libjpeg-turbo 2.1.5 and zune-jpeg 0.5).
const MAX_DIFFERING: f64 = 0.01;
/// The same over the 648 real radiographs of `covid-cxr-512` (measured: 0.46%).
const MAX_DIFFERING_REAL: f64 = 0.005;

/// A deterministic test picture: a smooth radial gradient, hard-edged bars and hash noise, so
/// flat areas, edges and texture all reach the inverse DCT.
fn picture(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f64 / w as f64 - 0.5, y as f64 / h as f64 - 0.5);
            let radial = 200.0 * (1.0 - 1.6 * (u * u + v * v).sqrt()).max(0.0);
            let bars = if (x / 9 + y / 13) % 3 == 0 { 40.0 } else { 0.0 };
            let mut z = (x as u64) << 32 ^ y as u64 ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let noise = ((z >> 56) as f64 - 128.0) * 0.15;
            out.push((radial + bars + noise).clamp(0.0, 255.0) as u8);
        }
    }
    out
}

/// `pixels` (one channel, or three when `rgb`) as a baseline JPEG at `quality`.
fn jpeg(pixels: &[u8], w: usize, h: usize, rgb: bool, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    let color = if rgb {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode(pixels, w as u32, h as u32, color)
        .expect("the test picture encodes");
    bytes
}

/// Pixels in 8-bit levels, as both decoders produced them (`v / 255` exactly).
fn levels(px: &[f32]) -> Vec<u8> {
    px.iter().map(|&v| (v * 255.0).round() as u8).collect()
}

/// Differing pixels, all pixels and the largest difference between the two decoders'
/// results, in 8-bit levels; and whether they are the same `f32` values.
fn compare(bytes: &[u8], name: &str) -> (usize, usize, u8, bool) {
    let zune = decode_with(bytes, name, JpegDecoder::ZuneJpeg).expect("zune-jpeg decodes");
    let turbo = decode_with(bytes, name, JpegDecoder::LibjpegTurbo).expect("libjpeg decodes");
    assert_eq!(
        (zune.width(), zune.height()),
        (turbo.width(), turbo.height()),
        "{name}: sizes"
    );
    let (a, b) = (levels(zune.pixels()), levels(turbo.pixels()));
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    let max = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max();
    let exact = zune.pixels() == turbo.pixels();
    (differing, a.len(), max.unwrap_or(0), exact)
}

#[test]
fn this_build_decodes_with_libjpeg() {
    assert_eq!(JpegDecoder::DEFAULT, JpegDecoder::LibjpegTurbo);
    assert_eq!(JPEG_DECODER, "libjpeg-turbo (feature libjpeg)");
}

/// Grayscale JPEGs of several sizes (whole 8 x 8 blocks and partial ones) and qualities: the
/// decoders differ by at most [`MAX_LEVELS`] on at most [`MAX_DIFFERING`] of the pixels.
/// Colour JPEGs go through the `image` crate whichever decoder is chosen, so they agree
/// exactly.
#[test]
fn the_decoders_agree_within_the_measured_bound() {
    let sizes = [(1, 1), (7, 5), (16, 16), (64, 48), (333, 257), (512, 492)];
    let qualities = [30, 75, 90, 100];
    let (mut differing, mut total, mut max) = (0, 0, 0);
    for (k, &(w, h)) in sizes.iter().enumerate() {
        let gray = picture(w, h, k as u64);
        for &q in &qualities {
            let name = format!("gray-{w}x{h}-q{q}.jpg");
            let (d, n, m, _) = compare(&jpeg(&gray, w, h, false, q), &name);
            println!("{name}: {d} of {n} pixels differ, by at most {m}");
            differing += d;
            total += n;
            max = max.max(m);

            let rgb: Vec<u8> = gray
                .iter()
                .enumerate()
                .flat_map(|(i, &g)| [g, g.wrapping_add(i as u8 % 32), 255 - g])
                .collect();
            let name = format!("rgb-{w}x{h}-q{q}.jpg");
            let (_, _, _, exact) = compare(&jpeg(&rgb, w, h, true, q), &name);
            assert!(exact, "{name}: colour JPEGs decode the same way");
        }
    }
    let share = differing as f64 / total as f64;
    println!(
        "all grayscale: {differing} of {total} pixels differ ({:.3}%), by at most {max}",
        100.0 * share
    );
    assert!(max <= MAX_LEVELS, "pixels differ by up to {max} levels");
    assert!(
        share <= MAX_DIFFERING,
        "{:.3}% of the pixels differ",
        100.0 * share
    );
}

/// The same comparison on the real grayscale JPEGs of `../shared/data/covid-cxr-512`, when
/// present (a fresh clone has none: the test then says so and passes).
#[test]
fn the_decoders_agree_on_real_radiographs() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/covid-cxr-512/images");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        println!("skipped: {} is absent", dir.display());
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    paths.sort();
    let (mut differing, mut total, mut max, mut files) = (0, 0, 0, 0);
    for path in &paths {
        let bytes = std::fs::read(path).expect("a listed file reads");
        let (d, n, m, _) = compare(&bytes, &path.display().to_string());
        differing += d;
        total += n;
        max = max.max(m);
        files += 1;
    }
    let share = differing as f64 / total.max(1) as f64;
    println!(
        "{files} files: {differing} of {total} pixels differ ({:.3}%), by at most {max}",
        100.0 * share
    );
    assert!(max <= MAX_LEVELS, "pixels differ by up to {max} levels");
    assert!(
        share <= MAX_DIFFERING_REAL,
        "{:.3}% of the pixels differ",
        100.0 * share
    );
}
