//! Draws a [`Scene`] into an RGB pixel buffer: area-coverage anti-aliased rectangles, lines and
//! discs, and the bitmap font at integer scales.

use crate::color::Rgb;
use crate::font;
use crate::scene::{Anchor, Clip, Scene, Shape};

/// An RGB canvas with channels in 0..=1 (sRGB, blended directly).
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    px: Vec<[f32; 3]>,
    /// Per-pixel coverage scratch for the shape being drawn (max over its parts).
    cov: Vec<f32>,
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Canvas {
        Canvas {
            width,
            height,
            px: vec![[1.0; 3]; width * height],
            cov: vec![0.0; width * height],
        }
    }

    /// Blends `color` over pixel (x, y) with opacity `a`.
    fn blend(&mut self, x: usize, y: usize, color: Rgb, a: f32) {
        if a <= 0.0 {
            return;
        }
        let a = a.min(1.0);
        let p = &mut self.px[y * self.width + x];
        let c = [color.0, color.1, color.2];
        for k in 0..3 {
            p[k] += (c[k] as f32 / 255.0 - p[k]) * a;
        }
    }

    /// 8-bit RGB bytes, rows top to bottom.
    pub fn to_rgb8(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.px.len() * 3);
        for p in &self.px {
            for &v in p {
                out.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        out
    }

    /// The pixel range [x0, x1) x [y0, y1) of a box, clipped to the canvas and `clip`.
    fn span(&self, bx: (f64, f64, f64, f64), clip: Clip) -> (usize, usize, usize, usize) {
        let x0 = bx.0.max(clip.0).floor().max(0.0);
        let y0 = bx.1.max(clip.1).floor().max(0.0);
        let x1 = bx.2.min(clip.2).ceil().min(self.width as f64);
        let y1 = bx.3.min(clip.3).ceil().min(self.height as f64);
        if !(x0 < x1 && y0 < y1) {
            return (0, 0, 0, 0);
        }
        (x0 as usize, y0 as usize, x1 as usize, y1 as usize)
    }

    /// Fills an axis-aligned rectangle with exact area coverage at its edges.
    pub fn fill_rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, color: Rgb) {
        let full = (0.0, 0.0, self.width as f64, self.height as f64);
        let (ax, ay, bx, by) = self.span((x0, y0, x1, y1), full);
        for y in ay..by {
            let cy = ((y as f64 + 1.0).min(y1) - (y as f64).max(y0)).clamp(0.0, 1.0);
            for x in ax..bx {
                let cx = ((x as f64 + 1.0).min(x1) - (x as f64).max(x0)).clamp(0.0, 1.0);
                self.blend(x, y, color, (cx * cy) as f32);
            }
        }
    }

    /// Draws a polyline of the given width (round joins and caps), optionally dashed, inside
    /// `clip`. Coverage is the distance-based estimate `width/2 + 1/2 - d` clamped to [0, 1],
    /// maximised over segments so joints are not drawn twice.
    pub fn polyline(
        &mut self,
        points: &[(f64, f64)],
        width: f64,
        color: Rgb,
        dash: Option<(f64, f64)>,
        clip: Clip,
    ) {
        let segments = match dash {
            None => points.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>(),
            Some((on, off)) => dashes(points, on, off),
        };
        let hw = width / 2.0;
        let mut touched = (usize::MAX, usize::MAX, 0usize, 0usize);
        for (a, b) in segments {
            let bx = (
                a.0.min(b.0) - hw - 1.0,
                a.1.min(b.1) - hw - 1.0,
                a.0.max(b.0) + hw + 1.0,
                a.1.max(b.1) + hw + 1.0,
            );
            let (x0, y0, x1, y1) = self.span(bx, clip);
            if x0 >= x1 {
                continue;
            }
            touched = (
                touched.0.min(x0),
                touched.1.min(y0),
                touched.2.max(x1),
                touched.3.max(y1),
            );
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let len2 = dx * dx + dy * dy;
            for y in y0..y1 {
                let py = y as f64 + 0.5;
                for x in x0..x1 {
                    let px = x as f64 + 0.5;
                    let t = if len2 > 0.0 {
                        (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    let (ex, ey) = (px - (a.0 + t * dx), py - (a.1 + t * dy));
                    let d = (ex * ex + ey * ey).sqrt();
                    let c = (hw + 0.5 - d).clamp(0.0, 1.0) as f32;
                    let slot = &mut self.cov[y * self.width + x];
                    if c > *slot {
                        *slot = c;
                    }
                }
            }
        }
        self.flush(touched, color);
    }

    /// Blends `color` with the coverage gathered in `cov` over `area`, then clears it.
    fn flush(&mut self, area: (usize, usize, usize, usize), color: Rgb) {
        let (x0, y0, x1, y1) = area;
        for y in y0..y1 {
            for x in x0..x1 {
                let i = y * self.width + x;
                let c = self.cov[i];
                if c > 0.0 {
                    self.cov[i] = 0.0;
                    self.blend(x, y, color, c);
                }
            }
        }
    }

    /// A filled disc.
    pub fn dot(&mut self, cx: f64, cy: f64, r: f64, color: Rgb) {
        let full = (0.0, 0.0, self.width as f64, self.height as f64);
        let (x0, y0, x1, y1) = self.span(
            (cx - r - 1.0, cy - r - 1.0, cx + r + 1.0, cy + r + 1.0),
            full,
        );
        for y in y0..y1 {
            for x in x0..x1 {
                let d = ((x as f64 + 0.5 - cx).powi(2) + (y as f64 + 0.5 - cy).powi(2)).sqrt();
                self.blend(x, y, color, (r + 0.5 - d).clamp(0.0, 1.0) as f32);
            }
        }
    }

    /// Nearest-cell sampling of a grid, 3x3 samples per pixel averaged (so grids finer than
    /// the pixels are shown as their average rather than aliased).
    #[allow(clippy::too_many_arguments)]
    pub fn cells(
        &mut self,
        x0: f64,
        y0: f64,
        x1: f64,
        y1: f64,
        rows: usize,
        cols: usize,
        colors: &[Rgb],
    ) {
        if rows == 0 || cols == 0 {
            return;
        }
        let full = (0.0, 0.0, self.width as f64, self.height as f64);
        let (ax, ay, bx, by) = self.span((x0, y0, x1, y1), full);
        let (w, h) = (x1 - x0, y1 - y0);
        const S: usize = 3;
        for y in ay..by {
            for x in ax..bx {
                let mut acc = [0.0f32; 3];
                let mut n = 0.0f32;
                for sy in 0..S {
                    let fy = y as f64 + (sy as f64 + 0.5) / S as f64;
                    if fy < y0 || fy >= y1 {
                        continue;
                    }
                    let r = (((fy - y0) / h * rows as f64) as usize).min(rows - 1);
                    for sx in 0..S {
                        let fx = x as f64 + (sx as f64 + 0.5) / S as f64;
                        if fx < x0 || fx >= x1 {
                            continue;
                        }
                        let c = (((fx - x0) / w * cols as f64) as usize).min(cols - 1);
                        let col = colors[r * cols + c];
                        acc[0] += col.0 as f32;
                        acc[1] += col.1 as f32;
                        acc[2] += col.2 as f32;
                        n += 1.0;
                    }
                }
                if n > 0.0 {
                    let mean = Rgb(
                        (acc[0] / n).round() as u8,
                        (acc[1] / n).round() as u8,
                        (acc[2] / n).round() as u8,
                    );
                    self.blend(x, y, mean, n / (S * S) as f32);
                }
            }
        }
    }

    /// Draws `text` with its cap height centred on `y` (or rotated a quarter turn
    /// counter-clockwise, centred on `x`, when `vertical`).
    #[allow(clippy::too_many_arguments)]
    pub fn text(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        scale: u32,
        color: Rgb,
        anchor: Anchor,
        vertical: bool,
        bold: bool,
    ) {
        let s = scale as i64;
        let w = font::text_width(text, scale) as i64 + i64::from(bold);
        let start = match anchor {
            Anchor::Start => 0,
            Anchor::Middle => -w / 2,
            Anchor::End => -w,
        };
        let half_cap = (font::CAP_H as i64 * s) / 2;
        // Pen origin in the text's own frame: u along the text, v down from the cap top.
        let (ox, oy) = (x.round() as i64, y.round() as i64);
        let mut cache: Vec<(char, font::Coverage)> = Vec::new();
        for (i, ch) in text.chars().enumerate() {
            if ch == ' ' {
                continue;
            }
            let idx = match cache.iter().position(|(c, _)| *c == ch) {
                Some(k) => k,
                None => {
                    cache.push((ch, font::coverage(ch, scale, bold)));
                    cache.len() - 1
                }
            };
            let (gw, gh, cov) = &cache[idx].1;
            let gx = start + i as i64 * font::ADVANCE as i64 * s;
            for gy in 0..*gh {
                for gxx in 0..*gw {
                    let a = cov[gy * gw + gxx];
                    if a <= 0.0 {
                        continue;
                    }
                    let u = gx + gxx as i64;
                    let v = gy as i64 - half_cap;
                    let (px, py) = if vertical {
                        (ox + v, oy - u)
                    } else {
                        (ox + u, oy + v)
                    };
                    if px >= 0
                        && py >= 0
                        && (px as usize) < self.width
                        && (py as usize) < self.height
                    {
                        self.blend(px as usize, py as usize, color, a);
                    }
                }
            }
        }
    }
}

/// Splits a polyline into dash segments of length `on` separated by gaps of length `off`.
fn dashes(points: &[(f64, f64)], on: f64, off: f64) -> Vec<((f64, f64), (f64, f64))> {
    let mut out = Vec::new();
    let period = on + off;
    if period <= 0.0 {
        return points.windows(2).map(|w| (w[0], w[1])).collect();
    }
    let mut phase = 0.0f64; // distance travelled modulo period
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if len == 0.0 {
            continue;
        }
        let mut t = 0.0;
        while t < len {
            let in_on = phase < on;
            let left = if in_on { on - phase } else { period - phase };
            let step = left.min(len - t);
            if in_on {
                let p = |s: f64| (a.0 + (b.0 - a.0) * s / len, a.1 + (b.1 - a.1) * s / len);
                out.push((p(t), p(t + step)));
            }
            t += step;
            phase = (phase + step) % period;
        }
    }
    out
}

/// Rasterizes a scene.
pub fn render(scene: &Scene) -> Canvas {
    let mut cv = Canvas::new(scene.width as usize, scene.height as usize);
    for shape in &scene.shapes {
        match shape {
            Shape::Rect {
                x0,
                y0,
                x1,
                y1,
                color,
            } => cv.fill_rect(*x0, *y0, *x1, *y1, *color),
            Shape::Line {
                points,
                width,
                color,
                dash,
                clip,
            } => cv.polyline(points, *width, *color, *dash, *clip),
            Shape::Dot { cx, cy, r, color } => cv.dot(*cx, *cy, *r, *color),
            Shape::Text {
                x,
                y,
                text,
                scale,
                color,
                anchor,
                vertical,
                bold,
                ..
            } => cv.text(*x, *y, text, *scale, *color, *anchor, *vertical, *bold),
            Shape::Cells {
                x0,
                y0,
                x1,
                y1,
                rows,
                cols,
                colors,
            } => cv.cells(*x0, *y0, *x1, *y1, *rows, *cols, colors),
        }
    }
    cv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_cover_the_on_fraction_across_vertices() {
        // An L-shaped path of length 100 + 60 = 160 = 10 periods of (10 on, 6 off).
        let path = [(0.0, 0.0), (100.0, 0.0), (100.0, 60.0)];
        let segs = dashes(&path, 10.0, 6.0);
        let len: f64 = segs
            .iter()
            .map(|(a, b)| ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt())
            .sum();
        assert!((len - 100.0).abs() < 1e-9, "dashed length {len}");
        // The dash over 96..106 turns the corner: 4 units before it and 6 after.
        let near =
            |p: (f64, f64), q: (f64, f64)| (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9;
        assert!(
            segs.iter()
                .any(|&(a, b)| near(a, (96.0, 0.0)) && near(b, (100.0, 0.0))),
            "{segs:?}"
        );
        assert!(
            segs.iter()
                .any(|&(a, b)| near(a, (100.0, 0.0)) && near(b, (100.0, 6.0))),
            "{segs:?}"
        );
    }

    #[test]
    fn rect_coverage_is_exact_at_fractional_edges() {
        let mut cv = Canvas::new(4, 1);
        cv.fill_rect(0.5, 0.0, 2.0, 1.0, Rgb(0, 0, 0));
        let px = cv.to_rgb8();
        // Pixel 0 half covered (gray 128), pixel 1 fully (black), pixels 2 and 3 untouched.
        assert_eq!(&px[0..3], &[128, 128, 128]);
        assert_eq!(&px[3..6], &[0, 0, 0]);
        assert_eq!(&px[6..12], &[255; 6]);
    }
}
