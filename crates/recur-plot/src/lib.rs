//! # recur-plot
//!
//! Small, dependency-light charts for training runs: line charts (linear or log10 y axis) and
//! heat maps, laid out in a grid of panels and written as SVG (vector, `<text>` labels) and PNG
//! (rasterized here, anti-aliased, with a built-in bitmap font).
//!
//! ```
//! use recur_plot::{Chart, Figure, LineChart, Series};
//! let loss = Series { name: "train".into(), points: (1..=100).map(|i| (i as f64, 3.0 / i as f64)).collect() };
//! let chart = LineChart {
//!     title: "Loss".into(),
//!     x_label: "step".into(),
//!     y_label: "cross-entropy".into(),
//!     log_y: true,
//!     series: vec![loss],
//! };
//! let fig = Figure::single(Chart::Line(chart));
//! let svg = fig.to_svg();
//! assert!(svg.contains("cross-entropy"));
//! let png = fig.to_png();
//! assert_eq!(&png[1..4], b"PNG");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod color;
mod font;
mod png;
mod raster;
mod scene;
mod svg;
pub mod ticks;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use color::{series_color, viridis, Rgb, NAN_GRAY, PALETTE};

/// One named line of a [`LineChart`]. Points are joined in order; a point with a NaN or
/// infinite coordinate (or y <= 0 on a log axis) breaks the line, and a point with no drawable
/// neighbour is drawn as a dot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Legend entry (empty: the series is left out of the legend).
    pub name: String,
    /// (x, y) pairs in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// Lines over a shared pair of axes, with a legend. Both axes cover all drawable points,
/// widened to nice tick values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineChart {
    /// Panel title (empty: none).
    pub title: String,
    /// Label under the x axis (empty: none).
    pub x_label: String,
    /// Label left of the y axis (empty: none).
    pub y_label: String,
    /// Log10 y axis (decade ticks); non-positive y values are skipped.
    pub log_y: bool,
    /// The lines, drawn in order with the colors of [`PALETTE`].
    pub series: Vec<Series>,
}

/// A grid of values drawn as colored cells (viridis; NaN and infinite cells gray) with a color
/// bar. The grid spans `x_range` horizontally and `y_range` vertically.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeatMap {
    /// Panel title (empty: none).
    pub title: String,
    /// Label under the x axis (empty: none).
    pub x_label: String,
    /// Label left of the y axis (empty: none).
    pub y_label: String,
    /// Label of the color bar (empty: none).
    pub value_label: String,
    /// Number of rows of `values`.
    pub rows: usize,
    /// Number of columns of `values`.
    pub cols: usize,
    /// `rows x cols` values, row-major; row 0 is drawn at the top. If the length is not
    /// `rows * cols` no cells are drawn and the panel says what it expected and found.
    pub values: Vec<f64>,
    /// x values of the left edge of column 0 and of the right edge of the last column.
    pub x_range: (f64, f64),
    /// y values of the top edge of row 0 and of the bottom edge of the last row: `(0.0, n)`
    /// numbers rows downwards like a matrix, `(n, 0.0)` makes y grow upwards.
    pub y_range: (f64, f64),
}

/// One panel of a [`Figure`].
#[derive(Clone, Debug, PartialEq)]
pub enum Chart {
    /// A line chart.
    Line(LineChart),
    /// A heat map.
    Heat(HeatMap),
}

/// Panels laid out in a grid, `columns` wide (row by row), each about 900 x 560 pixels, under
/// an optional title.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Figure title above all panels (empty: none).
    pub title: String,
    /// Panels per row (0 is treated as 1).
    pub columns: usize,
    /// The panels.
    pub charts: Vec<Chart>,
}

impl Figure {
    /// A figure with one panel and no figure title.
    pub fn single(chart: Chart) -> Figure {
        Figure {
            title: String::new(),
            columns: 1,
            charts: vec![chart],
        }
    }

    /// Size of the picture in pixels (width, height), the same for SVG and PNG.
    pub fn size(&self) -> (u32, u32) {
        let s = scene::layout(self);
        (s.width, s.height)
    }

    /// The figure as an SVG document.
    pub fn to_svg(&self) -> String {
        svg::render(&scene::layout(self))
    }

    /// The figure as an 8-bit RGB PNG file.
    pub fn to_png(&self) -> Vec<u8> {
        let scene = scene::layout(self);
        let canvas = raster::render(&scene);
        png::encode_rgb(scene.width, scene.height, &canvas.to_rgb8())
    }

    /// Writes `<stem>.svg` and `<stem>.png` atomically (temp file + rename). The directory must
    /// exist; errors name the file.
    pub fn save(&self, stem: &Path) -> std::io::Result<()> {
        let scene = scene::layout(self);
        write_atomic(&with_suffix(stem, ".svg"), svg::render(&scene).as_bytes())?;
        let canvas = raster::render(&scene);
        write_atomic(
            &with_suffix(stem, ".png"),
            &png::encode_rgb(scene.width, scene.height, &canvas.to_rgb8()),
        )
    }
}

/// `stem` with `suffix` appended (not replacing an existing extension: "run.v2" -> "run.v2.svg").
fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes `bytes` to a temporary file next to `path`, syncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let tmp = with_suffix(path, &format!(".tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(named)
}
