//! A 5x7 bitmap font (printable ASCII plus a few symbols) with two descender rows, drawn at
//! integer scales by the rasterizer.
//!
//! Why a font of its own rather than a font-rendering crate: the PNG plots must be the same
//! bytes on every machine (tests compare them, and a run's curves should not change with the
//! fonts a system has installed), they must be drawn without reading any system font file
//! (servers and containers often have none), and all they need is ASCII labels at a few
//! sizes. A TrueType rasterizer would bring a font file to ship, hinting and anti-aliasing
//! that vary between versions, and far more code than these glyph tables.

use std::collections::HashMap;
use std::sync::OnceLock;

/// Glyph width in font pixels.
pub const GLYPH_W: u32 = 5;
/// Horizontal advance per character in font pixels (glyph plus one column of space).
pub const ADVANCE: u32 = 6;
/// Cap height in font pixels (rows above the baseline).
pub const CAP_H: u32 = 7;
/// Total glyph rows including the two below the baseline.
pub const ROWS: usize = 9;

/// Each line: the character, then 7 or 9 rows of 5 columns (`#` set, `.` clear). Rows 0..7 are
/// above the baseline; rows 7 and 8 are descenders.
const GLYPHS: &str = "
  ..... ..... ..... ..... ..... ..... .....
! ..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..
\" .#.#. .#.#. ..... ..... ..... ..... .....
# .#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.
$ ..#.. .#### #.#.. .###. ..#.# ####. ..#..
% ##... ##..# ...#. ..#.. .#... #..## ...##
& .##.. #..#. #.#.. .#... #.#.# #..#. .##.#
' ..#.. ..#.. ..... ..... ..... ..... .....
( ...#. ..#.. .#... .#... .#... ..#.. ...#.
) .#... ..#.. ...#. ...#. ...#. ..#.. .#...
* ..... ..#.. #.#.# .###. #.#.# ..#.. .....
+ ..... ..#.. ..#.. ##### ..#.. ..#.. .....
, ..... ..... ..... ..... ..... .##.. .##.. ..#.. .#...
- ..... ..... ..... .###. ..... ..... .....
. ..... ..... ..... ..... ..... .##.. .##..
/ ..... ....# ...#. ..#.. .#... #.... .....
0 .###. #...# #...# #...# #...# #...# .###.
1 ..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.
2 .###. #...# ....# ...#. ..#.. .#... #####
3 ##### ...#. ..#.. ...#. ....# #...# .###.
4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
5 ##### #.... ####. ....# ....# #...# .###.
6 ..##. .#... #.... ####. #...# #...# .###.
7 ##### ....# ...#. ..#.. .#... .#... .#...
8 .###. #...# #...# .###. #...# #...# .###.
9 .###. #...# #...# .#### ....# ...#. .##..
: ..... .##.. .##.. ..... .##.. .##.. .....
; ..... .##.. .##.. ..... .##.. .##.. ..#.. .#... .....
< ...#. ..#.. .#... #.... .#... ..#.. ...#.
= ..... ..... ##### ..... ##### ..... .....
> .#... ..#.. ...#. ....# ...#. ..#.. .#...
? .###. #...# ....# ...#. ..#.. ..... ..#..
@ .###. #...# ....# .##.# #.#.# #.#.# .###.
A .###. #...# #...# ##### #...# #...# #...#
B ####. #...# #...# ####. #...# #...# ####.
C .###. #...# #.... #.... #.... #...# .###.
D ###.. #..#. #...# #...# #...# #..#. ###..
E ##### #.... #.... ####. #.... #.... #####
F ##### #.... #.... ####. #.... #.... #....
G .###. #...# #.... #.### #...# #...# .####
H #...# #...# #...# ##### #...# #...# #...#
I .###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
J ..### ...#. ...#. ...#. ...#. #..#. .##..
K #...# #..#. #.#.. ##... #.#.. #..#. #...#
L #.... #.... #.... #.... #.... #.... #####
M #...# ##.## #.#.# #.#.# #...# #...# #...#
N #...# #...# ##..# #.#.# #..## #...# #...#
O .###. #...# #...# #...# #...# #...# .###.
P ####. #...# #...# ####. #.... #.... #....
Q .###. #...# #...# #...# #.#.# #..#. .##.#
R ####. #...# #...# ####. #.#.. #..#. #...#
S .#### #.... #.... .###. ....# ....# ####.
T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
U #...# #...# #...# #...# #...# #...# .###.
V #...# #...# #...# #...# #...# .#.#. ..#..
W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
X #...# #...# .#.#. ..#.. .#.#. #...# #...#
Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
Z ##### ....# ...#. ..#.. .#... #.... #####
[ .###. .#... .#... .#... .#... .#... .###.
\\ ..... #.... .#... ..#.. ...#. ....# .....
] .###. ...#. ...#. ...#. ...#. ...#. .###.
^ ..#.. .#.#. #...# ..... ..... ..... .....
_ ..... ..... ..... ..... ..... ..... ..... ##### .....
` .#... ..#.. ..... ..... ..... ..... .....
a ..... ..... .###. ....# .#### #...# .####
b #.... #.... #.##. ##..# #...# #...# ####.
c ..... ..... .###. #.... #.... #...# .###.
d ....# ....# .##.# #..## #...# #...# .####
e ..... ..... .###. #...# ##### #.... .###.
f ..##. .#..# .#... ###.. .#... .#... .#...
g ..... ..... .#### #...# #...# #...# .#### ....# .###.
h #.... #.... #.##. ##..# #...# #...# #...#
i ..#.. ..... .##.. ..#.. ..#.. ..#.. .###.
j ...#. ..... ..##. ...#. ...#. ...#. ...#. #..#. .##..
k #.... #.... #..#. #.#.. ##... #.#.. #..#.
l .##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.
m ..... ..... ##.#. #.#.# #.#.# #.#.# #.#.#
n ..... ..... #.##. ##..# #...# #...# #...#
o ..... ..... .###. #...# #...# #...# .###.
p ..... ..... ####. #...# #...# #...# ####. #.... #....
q ..... ..... .#### #...# #...# #...# .#### ....# ....#
r ..... ..... #.##. ##..# #.... #.... #....
s ..... ..... .#### #.... .###. ....# ####.
t .#... .#... ###.. .#... .#... .#..# ..##.
u ..... ..... #...# #...# #...# #..## .##.#
v ..... ..... #...# #...# #...# .#.#. ..#..
w ..... ..... #...# #...# #.#.# #.#.# .#.#.
x ..... ..... #...# .#.#. ..#.. .#.#. #...#
y ..... ..... #...# #...# #...# #...# .#### ....# .###.
z ..... ..... ##### ...#. ..#.. .#... #####
{ ...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.
| ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
} .#... ..#.. ..#.. ...#. ..#.. ..#.. .#...
~ ..... ..... .#... #.#.# ...#. ..... .....
\u{2212} ..... ..... ..... ##### ..... ..... .....
\u{d7} ..... #...# .#.#. ..#.. .#.#. #...# .....
\u{b7} ..... ..... ..... ..#.. ..... ..... .....
\u{2026} ..... ..... ..... ..... ..... ..... #.#.#
\u{b0} .##.. #..#. #..#. .##.. ..... ..... .....
\u{b1} ..#.. ..#.. ##### ..#.. ..#.. ..... #####
\u{b5} ..... ..... #...# #...# #...# #..## ###.# #.... #....
\u{2013} ..... ..... ..... ##### ..... ..... .....
";

/// Drawn for characters the font does not have.
const MISSING: [u8; ROWS] = [
    0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111, 0, 0,
];

fn table() -> &'static HashMap<char, [u8; ROWS]> {
    static TABLE: OnceLock<HashMap<char, [u8; ROWS]>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::new();
        for line in GLYPHS.lines() {
            let mut chars = line.chars();
            let Some(c) = chars.next() else { continue };
            let mut rows = [0u8; ROWS];
            for (r, group) in chars.as_str().split_whitespace().enumerate().take(ROWS) {
                rows[r] = group
                    .bytes()
                    .fold(0u8, |acc, b| (acc << 1) | u8::from(b == b'#'));
            }
            map.insert(c, rows);
        }
        map
    })
}

/// The rows of `c` (bit 4 is the leftmost column); a box for unknown characters.
pub fn glyph(c: char) -> [u8; ROWS] {
    table().get(&c).copied().unwrap_or(MISSING)
}

/// Doubles a bitmap with the EPX / Scale2x rule, which fills the inner corners and trims the
/// outer corners of pixel staircases so diagonals and curves come out smoother.
fn scale2x(src: &[bool], w: usize, h: usize) -> Vec<bool> {
    let at = |x: isize, y: isize| -> bool {
        x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h && src[y as usize * w + x as usize]
    };
    let mut out = vec![false; 4 * w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            let p = at(x, y);
            let (a, b, c, d) = (at(x, y - 1), at(x + 1, y), at(x - 1, y), at(x, y + 1));
            let q = [
                if c == a && c != d && a != b { a } else { p },
                if a == b && a != c && b != d { b } else { p },
                if d == c && d != b && c != a { c } else { p },
                if b == d && b != a && d != c { d } else { p },
            ];
            let (ox, oy) = (2 * x as usize, 2 * y as usize);
            out[oy * 2 * w + ox] = q[0];
            out[oy * 2 * w + ox + 1] = q[1];
            out[(oy + 1) * 2 * w + ox] = q[2];
            out[(oy + 1) * 2 * w + ox + 1] = q[3];
        }
    }
    out
}

/// (width, height, coverage in 0..=1 row-major) of a rendered glyph.
pub type Coverage = (usize, usize, Vec<f32>);

/// An anti-aliased rendering of `c` at `scale` output pixels per font pixel: the glyph is
/// smoothed to 4x with two Scale2x passes (widened by one output pixel when `bold`), then
/// box-filtered down. Returns (width, height, coverage in 0..=1 row-major); the height covers
/// all [`ROWS`] rows, the width [`GLYPH_W`] columns plus one when `bold`.
pub fn coverage(c: char, scale: u32, bold: bool) -> Coverage {
    let g = glyph(c);
    let (w, h) = (GLYPH_W as usize, ROWS);
    let mut bits = vec![false; w * h];
    for (r, row) in g.iter().enumerate() {
        for col in 0..w {
            bits[r * w + col] = row & (1 << (w - 1 - col)) != 0;
        }
    }
    let up = scale2x(&scale2x(&bits, w, h), 2 * w, 2 * h);
    let (mut uw, uh) = (4 * w, 4 * h);
    let mut up = up;
    if bold {
        // Dilate to the right by one output pixel (4/scale mask pixels).
        let extra = (4.0 / scale as f64).round().max(1.0) as usize;
        let nw = uw + extra;
        let mut wide = vec![false; nw * uh];
        for y in 0..uh {
            for x in 0..uw {
                if up[y * uw + x] {
                    for k in 0..=extra {
                        wide[y * nw + x + k] = true;
                    }
                }
            }
        }
        up = wide;
        uw = nw;
    }
    // Box filter from the 4x mask to `scale` output pixels per font pixel.
    let f = 4.0 / scale as f64; // mask pixels per output pixel
    let ow = (uw as f64 / f).ceil() as usize;
    let oh = (uh as f64 / f).ceil() as usize;
    let mut out = vec![0.0f32; ow * oh];
    for oy in 0..oh {
        let (y0, y1) = (oy as f64 * f, ((oy + 1) as f64 * f).min(uh as f64));
        for ox in 0..ow {
            let (x0, x1) = (ox as f64 * f, ((ox + 1) as f64 * f).min(uw as f64));
            let mut acc = 0.0;
            let mut my = y0.floor() as usize;
            while (my as f64) < y1 {
                let cy = ((my + 1) as f64).min(y1) - (my as f64).max(y0);
                let mut mx = x0.floor() as usize;
                while (mx as f64) < x1 {
                    if up[my * uw + mx] {
                        acc += cy * (((mx + 1) as f64).min(x1) - (mx as f64).max(x0));
                    }
                    mx += 1;
                }
                my += 1;
            }
            out[oy * ow + ox] = (acc / (f * f)) as f32;
        }
    }
    (ow, oh, out)
}

/// Width in output pixels of `text` drawn at `scale` (advance per char, without the trailing
/// space column).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    if n == 0 {
        0
    } else {
        (n * ADVANCE - (ADVANCE - GLYPH_W)) * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glyph_line_is_well_formed() {
        let mut count = 0;
        for line in GLYPHS.lines().filter(|l| !l.is_empty()) {
            let rest: String = line.chars().skip(1).collect();
            let groups: Vec<&str> = rest.split_whitespace().collect();
            assert!(
                groups.len() == 7 || groups.len() == 9,
                "bad glyph line {line:?}"
            );
            for g in groups {
                assert_eq!(g.len(), 5, "bad row {g:?} in {line:?}");
                assert!(
                    g.bytes().all(|b| b == b'#' || b == b'.'),
                    "bad row in {line:?}"
                );
            }
            count += 1;
        }
        // All of printable ASCII plus the extra symbols.
        for c in ' '..='~' {
            assert!(table().contains_key(&c), "missing glyph {c:?}");
        }
        assert_eq!(table().len(), count);
        assert_eq!(glyph(' '), [0; ROWS]);
        assert_eq!(glyph('\u{1F600}'), MISSING);
    }
}
