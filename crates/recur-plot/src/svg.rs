//! Writes a [`Scene`] as an SVG document.

use std::fmt::Write;

use crate::png;
use crate::scene::{Anchor, Scene, Shape};

/// Grids with more cells than this are embedded as one PNG image instead of `<rect>`s.
const MAX_RECT_CELLS: usize = 20_000;

/// Escapes text for SVG character data and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Number with at most two decimals and no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{:.2}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

pub fn render(scene: &Scene) -> String {
    let mut o = String::new();
    let (w, h) = (scene.width, scene.height);
    let _ = writeln!(
        o,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let mut clips: Vec<(f64, f64, f64, f64)> = Vec::new();
    for shape in &scene.shapes {
        if let Shape::Line { clip, .. } = shape {
            if !clips.contains(clip) {
                clips.push(*clip);
            }
        }
    }
    if !clips.is_empty() {
        o.push_str("<defs>\n");
        for (i, c) in clips.iter().enumerate() {
            let _ = writeln!(
                o,
                r#"<clipPath id="clip{i}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath>"#,
                num(c.0),
                num(c.1),
                num(c.2 - c.0),
                num(c.3 - c.1)
            );
        }
        o.push_str("</defs>\n");
    }
    for shape in &scene.shapes {
        match shape {
            Shape::Rect {
                x0,
                y0,
                x1,
                y1,
                color,
            } => {
                let _ = writeln!(
                    o,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}" shape-rendering="crispEdges"/>"#,
                    num(*x0),
                    num(*y0),
                    num(x1 - x0),
                    num(y1 - y0),
                    color.hex()
                );
            }
            Shape::Line {
                points,
                width,
                color,
                dash,
                clip,
            } => {
                let id = clips.iter().position(|c| c == clip).unwrap_or(0);
                let mut pts = String::with_capacity(points.len() * 14);
                for (i, p) in points.iter().enumerate() {
                    if i > 0 {
                        pts.push(' ');
                    }
                    let _ = write!(pts, "{},{}", num(p.0), num(p.1));
                }
                let dash = match dash {
                    Some((on, off)) => format!(r#" stroke-dasharray="{},{}""#, num(*on), num(*off)),
                    None => String::new(),
                };
                let _ = writeln!(
                    o,
                    r#"<polyline points="{pts}" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round" stroke-linecap="round"{dash} clip-path="url(#clip{id})"/>"#,
                    color.hex(),
                    num(*width)
                );
            }
            Shape::Dot { cx, cy, r, color } => {
                let _ = writeln!(
                    o,
                    r#"<circle cx="{}" cy="{}" r="{}" fill="{}"/>"#,
                    num(*cx),
                    num(*cy),
                    num(*r),
                    color.hex()
                );
            }
            Shape::Text {
                x,
                y,
                text,
                full,
                scale,
                color,
                anchor,
                vertical,
                bold,
            } => {
                let size = 10.0 * *scale as f64;
                // The bitmap font's cap height is 7 font pixels; put the baseline half of it
                // below the centre line, as the rasterizer does.
                let shift = 3.5 * *scale as f64;
                let anchor = match anchor {
                    Anchor::Start => "start",
                    Anchor::Middle => "middle",
                    Anchor::End => "end",
                };
                let weight = if *bold { r#" font-weight="bold""# } else { "" };
                let tip = match full {
                    Some(f) => format!("<title>{}</title>", escape(f)),
                    None => String::new(),
                };
                if *vertical {
                    let _ = writeln!(
                        o,
                        r#"<text x="{}" y="{}" transform="rotate(-90 {} {})" font-size="{}" text-anchor="{anchor}" fill="{}"{weight}>{tip}{}</text>"#,
                        num(x + shift),
                        num(*y),
                        num(x + shift),
                        num(*y),
                        num(size),
                        color.hex(),
                        escape(text)
                    );
                } else {
                    let _ = writeln!(
                        o,
                        r#"<text x="{}" y="{}" font-size="{}" text-anchor="{anchor}" fill="{}"{weight}>{tip}{}</text>"#,
                        num(*x),
                        num(y + shift),
                        num(size),
                        color.hex(),
                        escape(text)
                    );
                }
            }
            Shape::Cells {
                x0,
                y0,
                x1,
                y1,
                rows,
                cols,
                colors,
            } => {
                let (rows, cols) = (*rows, *cols);
                if rows == 0 || cols == 0 {
                    continue;
                }
                let cw = (x1 - x0) / cols as f64;
                let ch = (y1 - y0) / rows as f64;
                if rows * cols <= MAX_RECT_CELLS {
                    o.push_str("<g shape-rendering=\"crispEdges\">\n");
                    for r in 0..rows {
                        // Merge runs of equal color in a row into one rectangle.
                        let mut c = 0;
                        while c < cols {
                            let color = colors[r * cols + c];
                            let mut e = c + 1;
                            while e < cols && colors[r * cols + e] == color {
                                e += 1;
                            }
                            let _ = writeln!(
                                o,
                                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>"#,
                                num(x0 + c as f64 * cw),
                                num(y0 + r as f64 * ch),
                                num((e - c) as f64 * cw),
                                num(ch),
                                color.hex()
                            );
                            c = e;
                        }
                    }
                    o.push_str("</g>\n");
                } else {
                    let mut rgb = Vec::with_capacity(rows * cols * 3);
                    for c in colors {
                        rgb.extend_from_slice(&[c.0, c.1, c.2]);
                    }
                    let data = png::encode_rgb(cols as u32, rows as u32, &rgb);
                    let _ = writeln!(
                        o,
                        r#"<image x="{}" y="{}" width="{}" height="{}" preserveAspectRatio="none" style="image-rendering:pixelated" href="data:image/png;base64,{}"/>"#,
                        num(*x0),
                        num(*y0),
                        num(x1 - x0),
                        num(y1 - y0),
                        base64(&data)
                    );
                }
            }
        }
    }
    o.push_str("</svg>\n");
    o
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_vectors() {
        // RFC 4648 section 10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"a<b & "c" 'd'>"#),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
    }
}
