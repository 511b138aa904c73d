//! PNG plots of training curves and ROC curves, drawn with plotters into memory and encoded
//! with `image`; no system library (fontconfig, freetype) is needed: the text uses DejaVu Sans
//! (a Latin-1 subset, `data/fonts/`, Bitstream Vera licence) compiled into the binary.
//!
//! Files are written atomically: to a temporary file in the same directory, then renamed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use umcl_fs::write_atomic;

/// One curve of [`plot_roc`]: its name, its `(false positive rate, true positive rate)` points
/// and its AUC.
pub type RocCurve<'a> = (&'a str, Vec<(f64, f64)>, f64);

/// Width and height in pixels of the plots of [`plot_curves`] and [`plot_roc`].
pub const DEFAULT_SIZE: (u32, u32) = (960, 600);

/// The font every plot's text uses (`data/fonts/README.md` says where it comes from).
static FONT: &[u8] = include_bytes!("../data/fonts/DejaVuSans-subset.ttf");

/// Line colours, one per series in order (then repeated): the "tab10" palette.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Why a plot could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No series holds a finite point.
    #[error("nothing to plot for {0:?}: no series holds a finite point")]
    NoData(String),
    /// Width or height is zero or too large (over 8192).
    #[error("invalid plot size {width}x{height}")]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// The embedded font could not be loaded.
    #[error("the embedded plot font is not a valid TrueType font")]
    Font,
    /// plotters failed to draw.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Encode(String),
    /// The file could not be written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        message: String,
    },
}

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// Draws with `draw` on a white RGB canvas of `size` and returns the PNG bytes.
fn render<F>(size: (u32, u32), draw: F) -> Result<Vec<u8>, PlotError>
where
    F: FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), PlotError>,
{
    let (w, h) = size;
    if w == 0 || h == 0 || w > 8192 || h > 8192 {
        return Err(PlotError::InvalidSize {
            width: w,
            height: h,
        });
    }
    ensure_font()?;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| {
        PlotError::Encode("buffer size does not match the image size".to_string())
    })?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| PlotError::Encode(e.to_string()))?;
    Ok(png.into_inner())
}

impl From<umcl_fs::Error> for PlotError {
    fn from(e: umcl_fs::Error) -> Self {
        PlotError::Io {
            path: e.path,
            message: e.err.to_string(),
        }
    }
}

/// A tick label readable at any scale: plain decimals with as many places as the axis span
/// needs, scientific notation for very small or large values.
fn tick(v: f64, span: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let big = v.abs() >= 1e5;
    if span < 1e-3 || big {
        return format!("{v:.2e}");
    }
    let decimals = (-(span.log10()).floor() + 1.0).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

/// The range `[lo, hi]` of `values` widened by 5% on each side (by 0.5 when all are equal).
fn padded(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return None;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = (0.05 * lo.abs()).max(0.5);
        return Some((lo - pad, hi + pad));
    }
    let pad = 0.05 * (hi - lo);
    Some((lo - pad, hi + pad))
}

/// [`plot_curves_sized`] at [`DEFAULT_SIZE`].
pub fn plot_curves(
    path: &Path,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    x_label: &str,
    y_label: &str,
) -> Result<(), PlotError> {
    plot_curves_sized(path, title, series, x_label, y_label, DEFAULT_SIZE)
}

/// Line plot of one or more named `(x, y)` series (loss, learning rate or a metric against the
/// step) as a PNG of `size` pixels, with axis labels and a legend. Non-finite points are left
/// out; series of at most 30 points also get a marker per point, so a single evaluation shows.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("loss.png");
/// let loss: Vec<(f64, f64)> = (0..100).map(|s| (s as f64, 2.0 / (1.0 + s as f64 / 10.0))).collect();
/// umcl_train::plots::plot_curves(&path, "training loss", &[("loss", loss)], "step", "loss").unwrap();
/// assert!(std::fs::read(&path).unwrap().starts_with(b"\x89PNG"));
/// ```
pub fn plot_curves_sized(
    path: &Path,
    title: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    x_label: &str,
    y_label: &str,
    size: (u32, u32),
) -> Result<(), PlotError> {
    let clean: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            (
                *name,
                pts.iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite())
                    .collect(),
            )
        })
        .collect();
    let all = || clean.iter().flat_map(|(_, p)| p.iter().copied());
    let (Some(xr), Some(yr)) = (padded(all().map(|p| p.0)), padded(all().map(|p| p.1))) else {
        return Err(PlotError::NoData(title.to_string()));
    };
    let png = render(size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
            .map_err(draw_err)?;
        let (xs, ys) = (xr.1 - xr.0, yr.1 - yr.0);
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 14))
            .x_label_formatter(&|v| tick(*v, xs))
            .y_label_formatter(&|v| tick(*v, ys))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_err)?;
        for (k, (name, pts)) in clean.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let style = ShapeStyle::from(&color).stroke_width(2);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), style))
                .map_err(draw_err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            if pts.len() <= 30 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(draw_err)?;
            }
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_err)?;
        Ok(())
    })?;
    Ok(write_atomic(path, &png)?)
}

/// [`plot_roc_sized`] at [`DEFAULT_SIZE`].
pub fn plot_roc(path: &Path, curves: &[RocCurve<'_>]) -> Result<(), PlotError> {
    plot_roc_sized(path, curves, DEFAULT_SIZE)
}

/// ROC curves `(name, points (false positive rate, true positive rate), AUC)` on the unit
/// square with the chance diagonal, each labelled `name (AUC 0.873)` in the legend, as a PNG of
/// `size` pixels. Points come from [`crate::metrics::roc_curve`] or
/// [`crate::metrics::ClassAuc::roc`].
pub fn plot_roc_sized(
    path: &Path,
    curves: &[RocCurve<'_>],
    size: (u32, u32),
) -> Result<(), PlotError> {
    if !curves
        .iter()
        .any(|(_, p, _)| p.iter().any(|(x, y)| x.is_finite() && y.is_finite()))
    {
        return Err(PlotError::NoData("ROC".to_string()));
    }
    let png = render(size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption("ROC", ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 14))
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                RGBColor(170, 170, 170),
            ))
            .map_err(draw_err)?;
        for (k, (name, pts, auc)) in curves.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let style = ShapeStyle::from(&color).stroke_width(2);
            let pts = pts
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(draw_err)?
                .label(format!("{name} (AUC {auc:.3})"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(draw_err)?;
        Ok(())
    })?;
    Ok(write_atomic(path, &png)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fit_the_span() {
        assert_eq!(tick(0.0, 1.0), "0");
        assert_eq!(tick(0.5, 1.0), "0.5"); // span 1: -floor(log10 1) + 1 = 1 decimal
        assert_eq!(tick(1e-4, 2e-4), "1.00e-4");
        assert_eq!(tick(1500.0, 3000.0), "1500");
    }
}
