//! Image decoding, resizing, normalisation and augmentation on small hand-made images whose
//! expected outputs are derived in the comments.

use image::{ImageBuffer, Luma, Rgb};
use umcl_data::augment::{self, Augment, AugmentParams};
use umcl_data::images::{self, Fit, GrayImage, ImageError, Preprocess};

fn pre(size: usize, fit: Fit) -> Preprocess {
    Preprocess {
        size,
        fit,
        mean: [0.0; 3],
        std: [1.0; 3],
        channels: 1,
    }
}

#[test]
fn decodes_png_8_and_16_bit_rgb_and_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    // 8-bit gray 51 is 51 / 255 = 0.2.
    let p8 = dir.path().join("g8.png");
    ImageBuffer::<Luma<u8>, _>::from_pixel(3, 2, Luma([51u8]))
        .save(&p8)
        .unwrap();
    let img = images::load(&p8).unwrap();
    assert_eq!((img.width(), img.height()), (3, 2));
    assert!(img.pixels().iter().all(|&v| (v - 0.2).abs() < 1e-6));
    // 16-bit gray 13107 is 13107 / 65535 = 0.2 exactly.
    let p16 = dir.path().join("g16.png");
    ImageBuffer::<Luma<u16>, _>::from_pixel(2, 2, Luma([13107u16]))
        .save(&p16)
        .unwrap();
    let img = images::load(&p16).unwrap();
    assert!(img.pixels().iter().all(|&v| (v - 0.2).abs() < 1e-6));
    // Pure red through ITU-R 601 luma: 0.299.
    let prgb = dir.path().join("rgb.png");
    ImageBuffer::<Rgb<u8>, _>::from_pixel(2, 2, Rgb([255u8, 0, 0]))
        .save(&prgb)
        .unwrap();
    let img = images::load(&prgb).unwrap();
    assert!(img.pixels().iter().all(|&v| (v - 0.299).abs() < 1e-6));
    // A flat JPEG decodes to (almost) its value: 128 / 255 within 2 levels.
    let pj = dir.path().join("flat.jpg");
    ImageBuffer::<Luma<u8>, _>::from_pixel(16, 16, Luma([128u8]))
        .save(&pj)
        .unwrap();
    let img = images::load(&pj).unwrap();
    assert!(img
        .pixels()
        .iter()
        .all(|&v| (v - 128.0 / 255.0).abs() <= 2.0 / 255.0));
    // Preprocess::load gives what load + resize give (up to float rounding: it scales 8-bit
    // values after filtering, not before).
    let p = pre(2, Fit::Stretch);
    let a = p.load(&p8).unwrap();
    let b = p.resize(&images::load(&p8).unwrap());
    assert!(a
        .pixels()
        .iter()
        .zip(b.pixels())
        .all(|(x, y)| (x - y).abs() < 1e-6));
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    let err = images::load(&missing).unwrap_err();
    assert!(matches!(err, ImageError::Read { .. }));
    assert!(err.to_string().contains("missing.png"), "{err}");
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap();
    let err = pre(8, Fit::PadToSquare).load(&corrupt).unwrap_err();
    assert!(matches!(err, ImageError::Decode { .. }));
    assert!(err.to_string().contains("corrupt.jpg"), "{err}");
}

#[test]
fn pad_to_square_adds_black_bars_and_center_crop_keeps_the_middle() {
    // A 4x2 white image padded to 4x4: one black row above and below (the resize is 1:1,
    // so each output row is exactly one source row or padding).
    let white = GrayImage::new(4, 2, vec![1.0; 8]).unwrap();
    let out = pre(4, Fit::PadToSquare).resize(&white);
    let rows: Vec<f32> = out.pixels().chunks(4).map(|r| r.iter().sum()).collect();
    assert_eq!(rows, [0.0, 4.0, 4.0, 0.0]);
    // Columns 0 1 1 0: the centred 2x2 square is columns 1 and 2, all 1.
    let img = GrayImage::new(4, 2, vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]).unwrap();
    let out = pre(2, Fit::CenterCrop).resize(&img);
    assert_eq!(out.pixels(), [1.0; 4]);
}

#[test]
fn downscaling_is_antialiased() {
    // Columns alternate 0, 1 over 8 px; shrink to 2 px wide (1 px tall, stretch). Output 0
    // has centre 2 and a triangle of half-width 4 (the scale), clipped to the image: pixels
    // 0..=5 weigh 1 - |j + 0.5 - 2| / 4 = 0.625, 0.875, 0.875, 0.625, 0.375, 0.125 (sum 3.5);
    // the odd (white) ones give 0.875 + 0.625 + 0.125 = 1.625, so 1.625 / 3.5 = 13/28.
    // Point sampling would give 0 or 1.
    let img = GrayImage::new(8, 1, (0..8).map(|i| (i % 2) as f32).collect()).unwrap();
    let p = Preprocess {
        size: 2,
        ..pre(2, Fit::Stretch)
    };
    let out = p.resize(&img);
    assert!(
        (out.get(0, 0) - 13.0 / 28.0).abs() < 1e-5,
        "{}",
        out.get(0, 0)
    );
    // A flat image stays flat at any scale and fit.
    let flat = GrayImage::new(37, 23, vec![0.25; 37 * 23]).unwrap();
    for fit in [Fit::Stretch, Fit::CenterCrop] {
        let out = pre(11, fit).resize(&flat);
        assert!(out.pixels().iter().all(|&v| (v - 0.25).abs() < 1e-5));
    }
}

#[test]
fn invalid_options_are_errors() {
    let mut p = Preprocess::default();
    p.mean[1] = f32::NAN;
    assert!(p.validate().unwrap_err().to_string().contains("mean[1]"));
    let mut p = Preprocess::default();
    p.std[0] = 0.0;
    assert!(p.validate().unwrap_err().to_string().contains("std[0]"));
    let p = Preprocess {
        channels: 2,
        ..Preprocess::default()
    };
    assert!(p.validate().is_err());
    let img = GrayImage::new(2, 2, vec![0.0; 4]).unwrap();
    let mut short = vec![0.0; 3];
    assert!(pre(2, Fit::Stretch).process(&img, &mut short).is_err());
    let aug = Augment {
        scale: (0.5, f32::NAN),
        ..Augment::default()
    };
    assert!(aug.validate().is_err());
    assert!(Augment::default().validate().is_ok());
    assert!("sideways".parse::<Fit>().is_err());
}

/// A 4x4 image with pixel value `x + 4 y` / 16.
fn ramp() -> GrayImage {
    GrayImage::new(4, 4, (0..16).map(|i| i as f32 / 16.0).collect()).unwrap()
}

#[test]
fn identity_augmentation_is_plain_normalisation() {
    let p = Preprocess {
        mean: [0.5; 3],
        std: [0.25; 3],
        channels: 3,
        ..pre(4, Fit::Stretch)
    };
    let img = ramp();
    let mut plain = vec![0.0; p.output_len()];
    p.process(&img, &mut plain).unwrap();
    let mut aug = vec![0.0; p.output_len()];
    augment::apply(&img, &AugmentParams::identity(4), &p, &mut aug).unwrap();
    for (a, b) in plain.iter().zip(&aug) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // (0 - 0.5) / 0.25 = -2 at the first pixel of every channel.
    assert_eq!([aug[0], aug[16], aug[32]], [-2.0; 3]);
}

#[test]
fn flip_mirrors_and_rotation_turns_counter_clockwise() {
    let p = pre(4, Fit::Stretch);
    let img = ramp();
    let mut out = vec![0.0; 16];
    let flip = AugmentParams {
        flip: true,
        ..AugmentParams::identity(4)
    };
    augment::apply(&img, &flip, &p, &mut out).unwrap();
    for y in 0..4 {
        for x in 0..4 {
            assert!((out[y * 4 + x] - img.get(3 - x, y)).abs() < 1e-5);
        }
    }
    // 90 degrees about the centre (2, 2): output (u, v) takes input (x = 3 - v, y = u), so the
    // input's right edge becomes the output's top row: counter-clockwise on screen.
    let rot = AugmentParams {
        angle_deg: 90.0,
        ..AugmentParams::identity(4)
    };
    augment::apply(&img, &rot, &p, &mut out).unwrap();
    for v in 0..4 {
        for u in 0..4 {
            let want = img.get(3 - v, u);
            assert!((out[v * 4 + u] - want).abs() < 1e-4, "({u},{v})");
        }
    }
}

#[test]
fn brightness_then_contrast_around_the_mean() {
    // Half the pixels 0.2, half 0.6. Brightness 1.5: 0.3 and 0.9 (mean 0.6). Contrast 0.5
    // blends halfway to the mean: 0.45 and 0.75.
    let img = GrayImage::new(2, 2, vec![0.2, 0.6, 0.2, 0.6]).unwrap();
    let params = AugmentParams {
        brightness: 1.5,
        contrast: 0.5,
        ..AugmentParams::identity(2)
    };
    let mut out = vec![0.0; 4];
    augment::apply(&img, &params, &pre(2, Fit::Stretch), &mut out).unwrap();
    for (o, want) in out.iter().zip([0.45, 0.75, 0.45, 0.75]) {
        assert!((o - want).abs() < 1e-5, "{out:?}");
    }
}

#[test]
fn augmentation_is_seeded_per_sample_and_stays_in_range() {
    let aug = Augment {
        hflip: true,
        ..Augment::default()
    };
    assert_eq!(aug.sample(224, 1, 2, 3), aug.sample(224, 1, 2, 3));
    assert_ne!(aug.sample(224, 1, 2, 3), aug.sample(224, 1, 2, 4));
    assert_ne!(aug.sample(224, 1, 2, 3), aug.sample(224, 2, 2, 3));
    let mut flips = 0;
    for i in 0..2000 {
        let a = aug.sample(224, 0, 0, i);
        let [x0, y0, w, h] = a.crop;
        assert!(x0 >= 0.0 && y0 >= 0.0 && x0 + w <= 224.01 && y0 + h <= 224.01);
        let area = w * h / (224.0 * 224.0);
        assert!((0.7 - 1e-4..=1.0 + 1e-4).contains(&area), "area {area}");
        assert!((3.0 / 4.0 - 1e-3..=4.0 / 3.0 + 1e-3).contains(&(w / h)) || area > 0.999);
        assert!(a.angle_deg.abs() <= 7.0);
        assert!(a.shift.iter().all(|s| s.abs() <= 0.05 * 224.0));
        assert!((0.8..=1.2).contains(&a.brightness) && (0.8..=1.2).contains(&a.contrast));
        flips += a.flip as usize;
    }
    // Flip with probability 1/2: 1000 expected, sd about 22.
    assert!((900..1100).contains(&flips), "{flips}");
    // Off by default.
    assert!((0..200).all(|i| !Augment::default().sample(224, 0, 0, i).flip));
}

/// A seeded smooth-ish grayscale pattern, `w` x `h`.
fn pattern(w: u32, h: u32) -> ImageBuffer<Luma<u8>, Vec<u8>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        Luma([((x * 7 + y * 3) % 256) as u8 ^ ((x * y) % 61) as u8])
    })
}

#[test]
fn load_into_gives_load_then_augment_or_process() {
    let dir = tempfile::tempdir().unwrap();
    let gray = pattern(57, 41);
    let png = dir.path().join("g.png");
    gray.save(&png).unwrap();
    let jpg = dir.path().join("g.jpg");
    gray.save(&jpg).unwrap();
    let rgb = dir.path().join("rgb.jpg");
    image::DynamicImage::ImageLuma8(gray.clone())
        .to_rgb8()
        .save(&rgb)
        .unwrap();
    let aug = Augment::default();
    for path in [&png, &jpg, &rgb] {
        for fit in [Fit::PadToSquare, Fit::CenterCrop, Fit::Stretch] {
            for size in [24, 13] {
                let p = pre(size, fit);
                let resized = p.load(path).unwrap();
                let mut want = vec![0.0; p.output_len()];
                let mut got = vec![1.0; p.output_len()];
                p.process(&resized, &mut want).unwrap();
                p.load_into(path, None, &mut got).unwrap();
                assert_eq!(
                    got,
                    want,
                    "{} {fit:?} {size}, no augmentation",
                    path.display()
                );
                for index in 0..4 {
                    let params = aug.sample(size, 5, 0, index);
                    augment::apply(&resized, &params, &p, &mut want).unwrap();
                    p.load_into(path, Some(&params), &mut got).unwrap();
                    assert_eq!(
                        got,
                        want,
                        "{} {fit:?} {size}, sample {index}",
                        path.display()
                    );
                }
            }
        }
    }
    let mut short = vec![0.0; 5];
    assert!(pre(4, Fit::Stretch)
        .load_into(&png, None, &mut short)
        .is_err());
    let err = pre(4, Fit::Stretch)
        .load_into(dir.path().join("missing.jpg"), None, &mut [0.0; 16])
        .unwrap_err();
    assert!(err.to_string().contains("missing.jpg"), "{err}");
}

/// Grayscale JPEGs decode with libjpeg-turbo when the crate is built with the feature
/// `libjpeg`, else with zune-jpeg: within a level of the `image` crate's decoding, and a truncated file is no
/// crash.
#[test]
fn grayscale_jpeg_decodes_like_the_image_crate() {
    let dir = tempfile::tempdir().unwrap();
    let jpg = dir.path().join("g.jpg");
    pattern(70, 45).save(&jpg).unwrap();
    let ours = images::load(&jpg).unwrap();
    let theirs = image::open(&jpg).unwrap().to_luma8();
    assert_eq!((ours.width(), ours.height()), (70, 45));
    for (a, &b) in ours.pixels().iter().zip(theirs.as_raw()) {
        assert!((a * 255.0 - b as f32).abs() <= 1.01, "{a} vs {b}");
    }
    let bytes = std::fs::read(&jpg).unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let mut out = vec![0.0; 16 * 16];
    // Either an error naming the file or an image (decoders fill a truncated scan).
    if let Err(e) = pre(16, Fit::Stretch).load_into(&cut, None, &mut out) {
        assert!(e.to_string().contains("cut.jpg"), "{e}");
    }
}
