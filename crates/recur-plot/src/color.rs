//! Colors: the series palette (Okabe-Ito, safe for the common forms of color blindness) and the
//! viridis colormap for heat maps.

/// An sRGB color with 8 bits per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// `#rrggbb`, as used in SVG attributes.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }
}

/// Series colors in drawing order: the Okabe-Ito palette (Okabe and Ito, 2008), with its yellow
/// (too pale on white) moved last.
pub const PALETTE: [Rgb; 8] = [
    Rgb(0x00, 0x72, 0xB2), // blue
    Rgb(0xD5, 0x5E, 0x00), // vermillion
    Rgb(0x00, 0x9E, 0x73), // bluish green
    Rgb(0xCC, 0x79, 0xA7), // reddish purple
    Rgb(0xE6, 0x9F, 0x00), // orange
    Rgb(0x56, 0xB4, 0xE9), // sky blue
    Rgb(0x00, 0x00, 0x00), // black
    Rgb(0xF0, 0xE4, 0x42), // yellow
];

/// Color of series `i`; the palette repeats after 8 series (the chart then also varies the
/// dash pattern).
pub fn series_color(i: usize) -> Rgb {
    PALETTE[i % PALETTE.len()]
}

/// Gray used for NaN heat map cells.
pub const NAN_GRAY: Rgb = Rgb(0xB0, 0xB0, 0xB0);

/// Viridis (the matplotlib default colormap, perceptually uniform) at `t` in [0, 1] (clamped;
/// NaN gives [`NAN_GRAY`]). Evaluated with the degree-6 polynomial fit of the viridis table
/// published by Matt Zucker (CC0), which stays within about 1/100 of the table.
pub fn viridis(t: f64) -> Rgb {
    if t.is_nan() {
        return NAN_GRAY;
    }
    let t = t.clamp(0.0, 1.0);
    const C: [[f64; 3]; 7] = [
        [
            0.277_727_327_223_417_7,
            0.005_407_344_544_966_578,
            0.334_099_805_335_306_1,
        ],
        [
            0.105_093_043_108_577_4,
            1.404_613_529_898_575,
            1.384_590_162_594_685,
        ],
        [
            -0.330_861_828_725_556_3,
            0.214_847_559_468_213,
            0.095_095_163_028_236_59,
        ],
        [
            -4.634_230_498_983_486,
            -5.799_100_973_351_585,
            -19.332_440_956_279_87,
        ],
        [
            6.228_269_936_347_081,
            14.179_933_366_805_09,
            56.690_552_600_681_05,
        ],
        [
            4.776_384_997_670_288,
            -13.745_145_377_746_01,
            -65.353_032_633_372_34,
        ],
        [
            -5.435_455_855_934_631,
            4.645_852_612_178_535,
            26.312_435_249_583_2,
        ],
    ];
    let mut rgb = [0.0f64; 3];
    for (ch, out) in rgb.iter_mut().enumerate() {
        let mut acc = 0.0;
        for c in C.iter().rev() {
            acc = acc * t + c[ch];
        }
        *out = acc;
    }
    let q = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb(q(rgb[0]), q(rgb[1]), q(rgb[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published viridis stops (matplotlib's table at 0, 1/4, 1/2, 3/4, 1, as hex in its docs and
    /// in R's viridisLite): #440154 #3b528b #21918c #5ec962 #fde725.
    #[test]
    fn viridis_matches_published_stops() {
        let stops = [
            (0.0, Rgb(0x44, 0x01, 0x54)),
            (0.25, Rgb(0x3b, 0x52, 0x8b)),
            (0.5, Rgb(0x21, 0x91, 0x8c)),
            (0.75, Rgb(0x5e, 0xc9, 0x62)),
            (1.0, Rgb(0xfd, 0xe7, 0x25)),
        ];
        for (t, want) in stops {
            let got = viridis(t);
            for (g, w) in [(got.0, want.0), (got.1, want.1), (got.2, want.2)] {
                assert!(
                    (g as i32 - w as i32).abs() <= 5,
                    "viridis({t}) = {got:?}, want {want:?}"
                );
            }
        }
        assert_eq!(viridis(f64::NAN), NAN_GRAY);
    }

    #[test]
    fn viridis_gets_lighter() {
        let luma = |c: Rgb| 0.2126 * c.0 as f64 + 0.7152 * c.1 as f64 + 0.0722 * c.2 as f64;
        let mut prev = -1.0;
        for i in 0..=100 {
            let l = luma(viridis(i as f64 / 100.0));
            assert!(l > prev, "luminance not increasing at {i}");
            prev = l;
        }
    }
}
