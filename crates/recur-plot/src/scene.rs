//! Layout: turns a [`Figure`] into a list of shapes in pixel coordinates, which the SVG writer
//! and the rasterizer then draw identically.

use crate::color::{series_color, viridis, Rgb, NAN_GRAY};
use crate::font;
use crate::ticks::{linear_ticks, linear_ticks_within, log_ticks, AxisTicks};
use crate::{Chart, Figure, HeatMap, LineChart};

/// Width of one panel in pixels.
pub const PANEL_W: f64 = 900.0;
/// Height of one panel in pixels.
pub const PANEL_H: f64 = 560.0;
/// Height of the figure title band (only when the figure has a title).
const FIG_TITLE_H: f64 = 44.0;

/// Text scale (font pixels to output pixels) for labels and tick labels.
pub const TEXT: u32 = 2;
/// Text scale for the figure title.
pub const BIG: u32 = 3;

pub const INK: Rgb = Rgb(0x22, 0x22, 0x22);
const SOFT_INK: Rgb = Rgb(0x55, 0x55, 0x55);
const FRAME: Rgb = Rgb(0x44, 0x44, 0x44);
const GRID: Rgb = Rgb(0xE4, 0xE4, 0xE4);
const GRID_MINOR: Rgb = Rgb(0xF2, 0xF2, 0xF2);
const LEGEND_BORDER: Rgb = Rgb(0xCC, 0xCC, 0xCC);
pub const WHITE: Rgb = Rgb(0xFF, 0xFF, 0xFF);

/// Width of series lines in pixels.
const LINE_W: f64 = 2.0;
/// Radius of the dot drawn for an isolated point.
const DOT_R: f64 = 4.0;
/// Longest legend entry, in characters, before it is shortened with an ellipsis.
const LEGEND_CHARS: usize = 22;

/// Horizontal placement of text relative to its anchor point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// An axis-aligned clip rectangle `(x0, y0, x1, y1)`.
pub type Clip = (f64, f64, f64, f64);

/// One drawing primitive, in pixels (y grows downwards).
#[derive(Clone, Debug)]
pub enum Shape {
    /// Filled rectangle from (x0, y0) to (x1, y1).
    Rect {
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        color: Rgb,
    },
    /// Open polyline with round joins and caps; `dash` is (on, off) lengths.
    Line {
        points: Vec<(f64, f64)>,
        width: f64,
        color: Rgb,
        dash: Option<(f64, f64)>,
        clip: Clip,
    },
    /// Filled disc.
    Dot {
        cx: f64,
        cy: f64,
        r: f64,
        color: Rgb,
    },
    /// Text whose cap height is vertically centred on `y` (or, when `vertical`, rotated a
    /// quarter turn counter-clockwise and centred on `x`). `full` is the untruncated text,
    /// kept by the SVG as a tooltip when it differs.
    Text {
        x: f64,
        y: f64,
        text: String,
        full: Option<String>,
        scale: u32,
        color: Rgb,
        anchor: Anchor,
        vertical: bool,
        bold: bool,
    },
    /// A grid of colored cells filling the rectangle; `colors` is rows x cols, row-major, row 0
    /// at the top.
    Cells {
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        rows: usize,
        cols: usize,
        colors: Vec<Rgb>,
    },
}

/// A whole picture.
pub struct Scene {
    pub width: u32,
    pub height: u32,
    pub shapes: Vec<Shape>,
}

impl Scene {
    fn text(&mut self, x: f64, y: f64, text: &str, scale: u32, color: Rgb, anchor: Anchor) {
        self.shapes.push(Shape::Text {
            x,
            y,
            text: text.to_string(),
            full: None,
            scale,
            color,
            anchor,
            vertical: false,
            bold: false,
        });
    }

    /// Text shortened with an ellipsis to at most `max_w` pixels.
    #[allow(clippy::too_many_arguments)]
    fn text_fit(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        max_w: f64,
        scale: u32,
        anchor: Anchor,
        vertical: bool,
        bold: bool,
    ) {
        let (shown, full) = fit(text, max_w, scale);
        self.shapes.push(Shape::Text {
            x,
            y,
            text: shown,
            full,
            scale,
            color: INK,
            anchor,
            vertical,
            bold,
        });
    }

    fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, color: Rgb) {
        self.shapes.push(Shape::Rect {
            x0,
            y0,
            x1,
            y1,
            color,
        });
    }

    /// A 1-pixel outline whose lines sit on whole pixels inside the rectangle.
    fn outline(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, color: Rgb) {
        self.rect(x0, y0, x1, y0 + 1.0, color);
        self.rect(x0, y1 - 1.0, x1, y1, color);
        self.rect(x0, y0, x0 + 1.0, y1, color);
        self.rect(x1 - 1.0, y0, x1, y1, color);
    }
}

/// `text` shortened with "…" to fit `max_w` pixels, and the original when it was shortened.
fn fit(text: &str, max_w: f64, scale: u32) -> (String, Option<String>) {
    let max_chars = (((max_w / scale as f64) + 1.0) / font::ADVANCE as f64)
        .floor()
        .max(1.0) as usize;
    let n = text.chars().count();
    if n <= max_chars {
        (text.to_string(), None)
    } else {
        let mut s: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        s.push('\u{2026}');
        (s, Some(text.to_string()))
    }
}

fn text_w(text: &str, scale: u32) -> f64 {
    font::text_width(text, scale) as f64
}

/// Lays out the whole figure.
pub fn layout(fig: &Figure) -> Scene {
    let n = fig.charts.len();
    let cols = fig.columns.clamp(1, n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let top = if fig.title.is_empty() {
        0.0
    } else {
        FIG_TITLE_H
    };
    let width = (cols as f64 * PANEL_W) as u32;
    let height = (rows as f64 * PANEL_H + top) as u32;
    let mut scene = Scene {
        width,
        height,
        shapes: Vec::new(),
    };
    scene.rect(0.0, 0.0, width as f64, height as f64, WHITE);
    if !fig.title.is_empty() {
        scene.text_fit(
            width as f64 / 2.0,
            top / 2.0 + 4.0,
            &fig.title,
            width as f64 - 40.0,
            BIG,
            Anchor::Middle,
            false,
            true,
        );
    }
    for (i, chart) in fig.charts.iter().enumerate() {
        let px = (i % cols) as f64 * PANEL_W;
        let py = top + (i / cols) as f64 * PANEL_H;
        match chart {
            Chart::Line(c) => line_panel(&mut scene, c, px, py),
            Chart::Heat(h) => heat_panel(&mut scene, h, px, py),
        }
    }
    scene
}

/// The plot rectangle and axes of one panel, before the data is drawn.
struct Frame {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    x: AxisTicks,
    y: AxisTicks,
    /// The x axis runs right to left (heat maps with x_range.0 > x_range.1).
    x_flip: bool,
    /// The y axis runs top to bottom (heat maps with y_range.0 < y_range.1).
    y_flip: bool,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        let f = self.x.fraction(x);
        let f = if self.x_flip { 1.0 - f } else { f };
        self.x0 + f * (self.x1 - self.x0)
    }
    fn py(&self, y: f64) -> f64 {
        let f = self.y.fraction(y);
        let f = if self.y_flip { 1.0 - f } else { f };
        self.y1 - f * (self.y1 - self.y0)
    }
    fn clip(&self) -> Clip {
        (self.x0, self.y0, self.x1, self.y1)
    }
}

/// Vertical space and margins shared by both chart kinds.
struct Margins {
    /// Top of the plot area.
    top: f64,
    /// Bottom of the plot area.
    bottom: f64,
}

fn margins(py: f64, title: &str, x_label: &str) -> Margins {
    let top = py + if title.is_empty() { 24.0 } else { 56.0 };
    let bottom = py + PANEL_H - if x_label.is_empty() { 40.0 } else { 70.0 };
    Margins { top, bottom }
}

/// Chooses y ticks (from the plot height), then the left margin from their labels, then x ticks
/// that fit the remaining width without overlapping labels.
#[allow(clippy::too_many_arguments)]
fn make_frame(
    px: f64,
    m: &Margins,
    right_reserved: f64,
    y_label: &str,
    ymake: &dyn Fn(usize) -> AxisTicks,
    xmake: &dyn Fn(usize) -> AxisTicks,
) -> Frame {
    let plot_h = m.bottom - m.top;
    let y = ymake(((plot_h / 55.0).floor() as usize).clamp(2, 11));
    let label_w = y
        .major
        .iter()
        .map(|t| text_w(&t.label, TEXT))
        .fold(0.0, f64::max);
    let x0 = px
        + 16.0
        + if y_label.is_empty() {
            0.0
        } else {
            7.0 * TEXT as f64 + 16.0
        }
        + label_w
        + 12.0;
    let x0 = x0.round();
    let x1 = (px + PANEL_W - right_reserved).round().max(x0 + 50.0);
    let plot_w = x1 - x0;
    let mut target = ((plot_w / 80.0).floor() as usize).clamp(2, 12);
    let x = loop {
        let x = xmake(target);
        let widest = x
            .major
            .iter()
            .map(|t| text_w(&t.label, TEXT))
            .fold(0.0, f64::max);
        let spacing = plot_w / (x.major.len().max(2) - 1) as f64;
        if widest + 14.0 <= spacing || target <= 2 {
            break x;
        }
        target -= 1;
    };
    Frame {
        x0,
        y0: m.top.round(),
        x1,
        y1: m.bottom.round(),
        x,
        y,
        x_flip: false,
        y_flip: false,
    }
}

/// Grid lines, frame, ticks, tick labels, axis labels and title of one panel.
fn draw_axes(
    s: &mut Scene,
    f: &Frame,
    px: f64,
    py: f64,
    title: &str,
    x_label: &str,
    y_label: &str,
) {
    {
        for &v in &f.y.minor {
            let y = f.py(v).round();
            s.rect(f.x0, y - 0.5, f.x1, y + 0.5, GRID_MINOR);
        }
        for &v in &f.x.minor {
            let x = f.px(v).round();
            s.rect(x - 0.5, f.y0, x + 0.5, f.y1, GRID_MINOR);
        }
        for t in &f.y.major {
            let y = f.py(t.value).round();
            s.rect(f.x0, y - 0.5, f.x1, y + 0.5, GRID);
        }
        for t in &f.x.major {
            let x = f.px(t.value).round();
            s.rect(x - 0.5, f.y0, x + 0.5, f.y1, GRID);
        }
    }
    axes_labels(s, f, px, py, title, x_label, y_label);
}

fn axes_labels(
    s: &mut Scene,
    f: &Frame,
    px: f64,
    py: f64,
    title: &str,
    x_label: &str,
    y_label: &str,
) {
    // Ticks and labels.
    for t in &f.y.major {
        let y = f.py(t.value).round();
        s.rect(f.x0 - 6.0, y - 0.5, f.x0, y + 0.5, FRAME);
        s.text(f.x0 - 10.0, y, &t.label, TEXT, INK, Anchor::End);
    }
    for &v in &f.y.minor {
        let y = f.py(v).round();
        s.rect(f.x0 - 3.0, y - 0.5, f.x0, y + 0.5, FRAME);
    }
    for t in &f.x.major {
        let x = f.px(t.value).round();
        s.rect(x - 0.5, f.y1, x + 0.5, f.y1 + 6.0, FRAME);
        s.text(
            x,
            f.y1 + 8.0 + 3.5 * TEXT as f64,
            &t.label,
            TEXT,
            INK,
            Anchor::Middle,
        );
    }
    for &v in &f.x.minor {
        let x = f.px(v).round();
        s.rect(x - 0.5, f.y1, x + 0.5, f.y1 + 3.0, FRAME);
    }
    s.outline(f.x0 - 1.0, f.y0 - 1.0, f.x1 + 1.0, f.y1 + 1.0, FRAME);
    if !title.is_empty() {
        s.text_fit(
            px + PANEL_W / 2.0,
            py + 28.0,
            title,
            PANEL_W - 40.0,
            TEXT,
            Anchor::Middle,
            false,
            true,
        );
    }
    if !x_label.is_empty() {
        s.text_fit(
            (f.x0 + f.x1) / 2.0,
            f.y1 + 50.0,
            x_label,
            f.x1 - f.x0,
            TEXT,
            Anchor::Middle,
            false,
            false,
        );
    }
    if !y_label.is_empty() {
        s.text_fit(
            px + 16.0 + 3.5 * TEXT as f64,
            (f.y0 + f.y1) / 2.0,
            y_label,
            f.y1 - f.y0,
            TEXT,
            Anchor::Middle,
            true,
            false,
        );
    }
}

/// A run of consecutive drawable points of one series, in pixels.
fn runs(points: &[(f64, f64)], f: &Frame, log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for &(x, y) in points {
        let ok = x.is_finite() && y.is_finite() && (!log_y || y > 0.0);
        if ok {
            cur.push((f.px(x), f.py(y)));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Thins a polyline without visible change: within each pixel column crossed by consecutive
/// points, keeps the first, lowest, highest and last point (in their original order).
fn decimate(pts: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    if pts.len() < 64 {
        return pts;
    }
    let mut out = Vec::with_capacity(pts.len().min(4096));
    let mut i = 0;
    while i < pts.len() {
        let col = pts[i].0.floor();
        let mut j = i + 1;
        while j < pts.len() && pts[j].0.floor() == col {
            j += 1;
        }
        let group = &pts[i..j];
        if group.len() <= 4 {
            out.extend_from_slice(group);
        } else {
            let (mut lo, mut hi) = (0, 0);
            for (k, p) in group.iter().enumerate() {
                if p.1 < group[lo].1 {
                    lo = k;
                }
                if p.1 > group[hi].1 {
                    hi = k;
                }
            }
            let mut keep = [0, lo, hi, group.len() - 1];
            keep.sort_unstable();
            let mut last = usize::MAX;
            for k in keep {
                if k != last {
                    out.push(group[k]);
                    last = k;
                }
            }
        }
        i = j;
    }
    out
}

/// Dash pattern of series `i`: solid for the first palette cycle, then dashed, dotted, ...
fn dash_for(i: usize) -> Option<(f64, f64)> {
    match (i / crate::color::PALETTE.len()) % 3 {
        0 => None,
        1 => Some((10.0, 6.0)),
        _ => Some((2.0, 5.0)),
    }
}

fn line_panel(s: &mut Scene, c: &LineChart, px: f64, py: f64) {
    // Data extent over drawable points.
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for p in c.series.iter().flat_map(|s| s.points.iter()) {
        if p.0.is_finite() && p.1.is_finite() && (!c.log_y || p.1 > 0.0) {
            xmin = xmin.min(p.0);
            xmax = xmax.max(p.0);
            ymin = ymin.min(p.1);
            ymax = ymax.max(p.1);
        }
    }
    let has_data = xmin <= xmax;
    if !has_data {
        (xmin, xmax) = (0.0, 1.0);
        (ymin, ymax) = if c.log_y { (1.0, 10.0) } else { (0.0, 1.0) };
    }

    // Legend size.
    // Legend entries: the series with a name (no legend when none has one).
    let named: Vec<usize> = (0..c.series.len())
        .filter(|&i| !c.series[i].name.is_empty())
        .collect();
    let legend_rows = named.len();
    let name_w = c
        .series
        .iter()
        .map(|s| text_w(&fit(&s.name, (LEGEND_CHARS * 12) as f64, TEXT).0, TEXT))
        .fold(0.0, f64::max);
    let legend_w = if legend_rows > 0 {
        12.0 + 28.0 + 8.0 + name_w + 12.0
    } else {
        0.0
    };
    let right = if legend_rows > 0 {
        legend_w + 32.0
    } else {
        28.0
    };

    let m = margins(py, &c.title, &c.x_label);
    let log_y = c.log_y;
    let f = make_frame(
        px,
        &m,
        right,
        &c.y_label,
        &|n| {
            if log_y {
                log_ticks(ymin, ymax, n)
            } else {
                linear_ticks(ymin, ymax, n)
            }
        },
        &|n| linear_ticks(xmin, xmax, n),
    );
    s.rect(f.x0, f.y0, f.x1, f.y1, WHITE);
    draw_axes(s, &f, px, py, &c.title, &c.x_label, &c.y_label);

    // Series, in order (later series on top).
    for (i, series) in c.series.iter().enumerate() {
        let color = series_color(i);
        for run in runs(&series.points, &f, log_y) {
            if run.len() == 1 {
                s.shapes.push(Shape::Dot {
                    cx: run[0].0,
                    cy: run[0].1,
                    r: DOT_R,
                    color,
                });
            } else {
                s.shapes.push(Shape::Line {
                    points: decimate(run),
                    width: LINE_W,
                    color,
                    dash: dash_for(i),
                    clip: f.clip(),
                });
            }
        }
    }
    // Redraw the frame over line ends that touch it.
    s.outline(f.x0 - 1.0, f.y0 - 1.0, f.x1 + 1.0, f.y1 + 1.0, FRAME);

    if !has_data {
        s.text(
            (f.x0 + f.x1) / 2.0,
            (f.y0 + f.y1) / 2.0,
            "no data",
            TEXT,
            SOFT_INK,
            Anchor::Middle,
        );
    }

    // Legend: to the right of the plot, top aligned; rows that do not fit become "+N more".
    if legend_rows > 0 {
        let lx0 = f.x1 + 20.0;
        let row_h = 26.0;
        let max_rows = (((f.y1 - f.y0) - 16.0) / row_h).floor().max(1.0) as usize;
        let (shown, more) = if legend_rows > max_rows {
            (max_rows - 1, legend_rows - (max_rows - 1))
        } else {
            (legend_rows, 0)
        };
        let rows_drawn = shown + usize::from(more > 0);
        let ly0 = f.y0;
        let ly1 = ly0 + 8.0 + rows_drawn as f64 * row_h + 8.0 - 6.0;
        s.rect(lx0, ly0, lx0 + legend_w, ly1, WHITE);
        s.outline(lx0, ly0, lx0 + legend_w, ly1, LEGEND_BORDER);
        for (row, &i) in named.iter().take(shown).enumerate() {
            let cy = (ly0 + 8.0 + row_h * row as f64 + 10.0).round();
            let color = series_color(i);
            let sx0 = lx0 + 12.0;
            let drawn_as_dot = c.series[i]
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .count()
                == 1;
            if drawn_as_dot {
                s.shapes.push(Shape::Dot {
                    cx: sx0 + 14.0,
                    cy,
                    r: DOT_R,
                    color,
                });
            } else {
                s.shapes.push(Shape::Line {
                    points: vec![(sx0, cy), (sx0 + 28.0, cy)],
                    width: LINE_W + 1.0,
                    color,
                    dash: dash_for(i),
                    clip: (lx0, ly0, lx0 + legend_w, ly1),
                });
            }
            s.text_fit(
                sx0 + 36.0,
                cy,
                &c.series[i].name,
                (LEGEND_CHARS * 12) as f64,
                TEXT,
                Anchor::Start,
                false,
                false,
            );
        }
        if more > 0 {
            let cy = (ly0 + 8.0 + row_h * shown as f64 + 10.0).round();
            s.text(
                lx0 + 12.0,
                cy,
                &format!("+{more} more"),
                TEXT,
                SOFT_INK,
                Anchor::Start,
            );
        }
    }
}

fn heat_panel(s: &mut Scene, h: &HeatMap, px: f64, py: f64) {
    let n = h.rows.saturating_mul(h.cols);
    let size_ok = h.values.len() == n;
    let value =
        |r: usize, c: usize| -> f64 { h.values.get(r * h.cols + c).copied().unwrap_or(f64::NAN) };
    let (mut vmin, mut vmax) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut any_nan = false;
    for &v in &h.values {
        if v.is_finite() {
            vmin = vmin.min(v);
            vmax = vmax.max(v);
        } else {
            any_nan = true;
        }
    }
    let has_data = vmin <= vmax;
    if !has_data {
        (vmin, vmax) = (0.0, 1.0);
    }
    let bar = linear_ticks_within(vmin, vmax, 8);
    let (vlo, vhi) = (bar.lo, bar.hi);

    let ok_range = |r: (f64, f64), n: usize| -> (f64, f64) {
        if r.0.is_finite() && r.1.is_finite() && r.0 != r.1 {
            r
        } else {
            (0.0, n.max(1) as f64)
        }
    };
    let xr = ok_range(h.x_range, h.cols);
    // y_range.0 is the value at the top edge (row 0), y_range.1 at the bottom edge.
    let yr = ok_range(h.y_range, h.rows);

    let bar_label_w = bar
        .major
        .iter()
        .map(|t| text_w(&t.label, TEXT))
        .fold(0.0, f64::max);
    let right = 24.0
        + 22.0
        + 10.0
        + bar_label_w
        + if h.value_label.is_empty() {
            16.0
        } else {
            16.0 + 14.0 + 18.0
        };
    let m = margins(py, &h.title, &h.x_label);
    let mut f = make_frame(
        px,
        &m,
        right,
        &h.y_label,
        &|k| linear_ticks_within(yr.0, yr.1, k),
        &|k| linear_ticks_within(xr.0, xr.1, k),
    );
    f.x_flip = xr.0 > xr.1;
    f.y_flip = yr.0 < yr.1;

    if n > 0 && size_ok {
        let colors: Vec<Rgb> = (0..h.rows)
            .flat_map(|r| (0..h.cols).map(move |c| (r, c)))
            .map(|(r, c)| {
                let v = value(r, c);
                if v.is_finite() {
                    viridis((v - vlo) / (vhi - vlo))
                } else {
                    NAN_GRAY
                }
            })
            .collect();
        s.shapes.push(Shape::Cells {
            x0: f.x0,
            y0: f.y0,
            x1: f.x1,
            y1: f.y1,
            rows: h.rows,
            cols: h.cols,
            colors,
        });
    } else {
        s.rect(f.x0, f.y0, f.x1, f.y1, WHITE);
    }
    axes_labels(s, &f, px, py, &h.title, &h.x_label, &h.y_label);
    if n == 0 {
        s.text(
            (f.x0 + f.x1) / 2.0,
            (f.y0 + f.y1) / 2.0,
            "no data",
            TEXT,
            SOFT_INK,
            Anchor::Middle,
        );
    } else if !size_ok {
        let msg = format!(
            "values: expected {} x {} = {}, found {}",
            h.rows,
            h.cols,
            n,
            h.values.len()
        );
        s.text_fit(
            (f.x0 + f.x1) / 2.0,
            (f.y0 + f.y1) / 2.0,
            &msg,
            f.x1 - f.x0 - 8.0,
            TEXT,
            Anchor::Middle,
            false,
            false,
        );
    }

    // Color bar, with a NaN swatch under it when some cells are not finite.
    let bx0 = f.x1 + 24.0;
    let bx1 = bx0 + 22.0;
    let by0 = f.y0;
    let by1 = if any_nan { f.y1 - 40.0 } else { f.y1 };
    let steps = 256;
    let bar_colors: Vec<Rgb> = (0..steps)
        .map(|i| viridis(1.0 - (i as f64 + 0.5) / steps as f64))
        .collect();
    s.shapes.push(Shape::Cells {
        x0: bx0,
        y0: by0,
        x1: bx1,
        y1: by1,
        rows: steps,
        cols: 1,
        colors: bar_colors,
    });
    s.outline(bx0 - 1.0, by0 - 1.0, bx1 + 1.0, by1 + 1.0, FRAME);
    for t in &bar.major {
        let frac = (t.value - vlo) / (vhi - vlo);
        let y = (by1 - frac * (by1 - by0)).round();
        s.rect(bx1, y - 0.5, bx1 + 5.0, y + 0.5, FRAME);
        s.text(bx1 + 9.0, y, &t.label, TEXT, INK, Anchor::Start);
    }
    if any_nan {
        s.rect(bx0, f.y1 - 22.0, bx1, f.y1, NAN_GRAY);
        s.outline(bx0 - 1.0, f.y1 - 23.0, bx1 + 1.0, f.y1 + 1.0, FRAME);
        s.text(bx1 + 9.0, f.y1 - 11.0, "NaN", TEXT, INK, Anchor::Start);
    }
    if !h.value_label.is_empty() {
        s.text_fit(
            px + PANEL_W - 16.0 - 3.5 * TEXT as f64,
            (by0 + by1) / 2.0,
            &h.value_label,
            by1 - by0,
            TEXT,
            Anchor::Middle,
            true,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_each_pixel_columns_extremes_in_order() {
        let mut s = 7u64;
        let pts: Vec<(f64, f64)> = (0..20_000)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (
                    10.0 + i as f64 * 0.037,
                    (s >> 11) as f64 / (1u64 << 53) as f64 * 400.0,
                )
            })
            .collect();
        let out = decimate(pts.clone());
        assert!(out.len() < pts.len() / 4, "{} points kept", out.len());
        assert_eq!(out.first(), pts.first());
        assert_eq!(out.last(), pts.last());
        // A subsequence of the input.
        let mut it = pts.iter();
        for p in &out {
            assert!(it.any(|q| q == p), "point {p:?} not in input order");
        }
        // Same min and max y in every pixel column.
        let extremes = |v: &[(f64, f64)]| {
            let mut m = std::collections::BTreeMap::new();
            for p in v {
                let e = m
                    .entry(p.0.floor() as i64)
                    .or_insert((f64::INFINITY, f64::NEG_INFINITY));
                e.0 = e.0.min(p.1);
                e.1 = e.1.max(p.1);
            }
            m
        };
        assert_eq!(extremes(&out), extremes(&pts));
    }

    #[test]
    fn long_text_is_shortened_with_an_ellipsis() {
        assert_eq!(fit("short", 200.0, 2), ("short".to_string(), None));
        // 60 px at scale 2: 5 characters of 12 px (the last one without its spacing column).
        let (shown, full) = fit("a long legend name", 58.0, 2);
        assert_eq!(shown, "a lo\u{2026}");
        assert_eq!(full.as_deref(), Some("a long legend name"));
        assert_eq!(font::text_width(&shown, 2), 58);
    }
}
