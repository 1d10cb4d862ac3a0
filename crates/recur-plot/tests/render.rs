//! The PNG and SVG outputs, checked from the outside: the PNG is decoded with the `png` crate
//! (an independent decoder) and the plot area is found in the pixels (the long dark frame
//! lines), so these tests do not reuse the layout code they check.

use recur_plot::{viridis, Chart, Figure, HeatMap, LineChart, Rgb, Series, NAN_GRAY, PALETTE};

struct Image {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Image {
    fn at(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        Rgb(self.rgb[i], self.rgb[i + 1], self.rgb[i + 2])
    }
}

fn decode(bytes: &[u8]) -> Image {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf[..info.buffer_size()].to_vec(),
        png::ColorType::Rgba => buf[..info.buffer_size()]
            .chunks(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        other => panic!("unexpected color type {other:?}"),
    };
    Image {
        width: info.width as usize,
        height: info.height as usize,
        rgb,
    }
}

const FRAME: Rgb = Rgb(0x44, 0x44, 0x44);

/// Columns holding a vertical run of at least `min_len` frame-colored pixels, and rows holding
/// such a horizontal run.
fn frame_lines(img: &Image, min_len: usize) -> (Vec<usize>, Vec<usize>) {
    let mut cols = Vec::new();
    for x in 0..img.width {
        let (mut run, mut best) = (0, 0);
        for y in 0..img.height {
            run = if img.at(x, y) == FRAME { run + 1 } else { 0 };
            best = best.max(run);
        }
        if best >= min_len {
            cols.push(x);
        }
    }
    let mut rows = Vec::new();
    for y in 0..img.height {
        let (mut run, mut best) = (0, 0);
        for x in 0..img.width {
            run = if img.at(x, y) == FRAME { run + 1 } else { 0 };
            best = best.max(run);
        }
        if best >= min_len {
            rows.push(y);
        }
    }
    (cols, rows)
}

/// The plot interior of a single-panel line chart as continuous pixel coordinates
/// (x0, y0, x1, y1): inside the frame lines.
fn plot_area(img: &Image) -> (f64, f64, f64, f64) {
    let (cols, rows) = frame_lines(img, 200);
    assert_eq!(cols.len(), 2, "vertical frame lines at {cols:?}");
    assert_eq!(rows.len(), 2, "horizontal frame lines at {rows:?}");
    (
        (cols[0] + 1) as f64,
        (rows[0] + 1) as f64,
        cols[1] as f64,
        rows[1] as f64,
    )
}

/// Whether a pixel is mostly the first palette color (blue, 0x0072B2) blended over a neutral
/// background: only that color has blue well above red here.
fn is_blue(c: Rgb) -> bool {
    c.2 as i32 - c.0 as i32 > 60
}

fn line(series: Vec<Series>) -> Figure {
    Figure::single(Chart::Line(LineChart {
        title: "t".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        log_y: false,
        series,
    }))
}

fn dist_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / (dx * dx + dy * dy)).clamp(0.0, 1.0);
    ((p.0 - a.0 - t * dx).powi(2) + (p.1 - a.1 - t * dy).powi(2)).sqrt()
}

#[test]
fn png_decodes_with_the_panel_size() {
    let fig = line(vec![Series {
        name: "a".into(),
        points: vec![(0.0, 1.0), (2.0, 3.0)],
    }]);
    let img = decode(&fig.to_png());
    assert_eq!((img.width, img.height), (900, 560));
    assert_eq!(fig.size(), (900, 560));

    // Three panels two per row under a title: 2 x 900 wide, 2 x 560 plus the title band.
    let c = Chart::Line(LineChart::default());
    let fig = Figure {
        title: "T".into(),
        columns: 2,
        charts: vec![c.clone(), c.clone(), c],
    };
    let img = decode(&fig.to_png());
    assert_eq!(img.width, 1800);
    assert!(
        img.height > 1120 && img.height < 1200,
        "height {}",
        img.height
    );
    assert_eq!(fig.size(), (img.width as u32, img.height as u32));
}

#[test]
fn diagonal_series_lands_on_the_diagonal_and_nowhere_else() {
    let fig = line(vec![Series {
        name: "diag".into(),
        points: vec![(0.0, 0.0), (1.0, 1.0)],
    }]);
    let img = decode(&fig.to_png());
    let (x0, y0, x1, y1) = plot_area(&img);
    // The axes are exactly [0, 1] (nice ticks 0, 0.2, ..., 1), so the line runs from the
    // bottom-left to the top-right corner of the plot.
    let (a, b) = ((x0, y1), (x1, y0));
    let mut blue_inside = 0;
    for y in 0..img.height {
        for x in 0..img.width {
            if !is_blue(img.at(x, y)) {
                continue;
            }
            let p = (x as f64 + 0.5, y as f64 + 0.5);
            if p.0 > x1 + 10.0 {
                continue; // the legend swatch, right of the plot
            }
            let d = dist_to_segment(p, a, b);
            assert!(d < 2.0, "blue pixel ({x}, {y}) is {d:.2} px from the line");
            blue_inside += 1;
        }
    }
    // Every pixel the line passes through is blue.
    for k in 2..=98 {
        let t = k as f64 / 100.0;
        let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        assert!(
            is_blue(img.at(x as usize, y as usize)),
            "no line at t = {t}"
        );
    }
    // A 2-pixel line: roughly 2 (to 3, with anti-aliasing) pixels per unit length.
    let len = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
    assert!(
        (blue_inside as f64) > 1.5 * len && (blue_inside as f64) < 3.5 * len,
        "{blue_inside} blue pixels for length {len:.0}"
    );
}

#[test]
fn nan_breaks_the_line_and_isolated_points_are_dots() {
    let nan = f64::NAN;
    let pts = vec![
        (0.0, 0.0),
        (0.4, 0.4),
        (0.5, nan),
        (0.6, 0.6),
        (1.0, 1.0),
        (f64::INFINITY, 2.0),
    ];
    let fig = line(vec![Series {
        name: "gap".into(),
        points: pts,
    }]);
    let img = decode(&fig.to_png());
    let (x0, y0, x1, y1) = plot_area(&img);
    let at = |t: f64| img.at((x0 + t * (x1 - x0)) as usize, (y1 - t * (y1 - y0)) as usize);
    for t in [0.1, 0.3, 0.38, 0.62, 0.7, 0.9] {
        assert!(is_blue(at(t)), "line missing at t = {t}");
    }
    for t in [0.45, 0.5, 0.55] {
        assert!(!is_blue(at(t)), "line drawn across the NaN at t = {t}");
    }

    // One finite point between NaNs is drawn as a dot, not lost.
    let fig = line(vec![
        Series {
            name: "line".into(),
            points: vec![(0.0, 0.0), (1.0, 0.0)],
        },
        Series {
            name: "dot".into(),
            points: vec![(nan, 1.0), (0.5, 1.0), (0.7, nan)],
        },
    ]);
    let img = decode(&fig.to_png());
    let (cols, rows) = frame_lines(&img, 200);
    let (x0, x1) = ((cols[0] + 1) as f64, cols[1] as f64);
    let (y0, y1) = ((rows[0] + 1) as f64, rows[1] as f64);
    // The y axis covers [0, 1] at least; find the dot's color (vermillion) near x = 0.5.
    let cx = (x0 + 0.5 * (x1 - x0)) as usize;
    let found = (y0 as usize..y1 as usize).any(|y| {
        let c = img.at(cx, y);
        c.0 as i32 - c.2 as i32 > 100
    });
    assert!(found, "isolated point not drawn");
}

#[test]
fn empty_and_degenerate_inputs_render() {
    let cases = vec![
        line(vec![]),
        line(vec![Series {
            name: "empty".into(),
            points: vec![],
        }]),
        line(vec![Series {
            name: "one".into(),
            points: vec![(3.0, 3.0)],
        }]),
        line(vec![Series {
            name: "nan".into(),
            points: vec![(f64::NAN, f64::NAN); 3],
        }]),
        line(vec![Series {
            name: "flat".into(),
            points: vec![(0.0, 5.0), (0.0, 5.0)],
        }]),
        line(vec![Series {
            name: "huge".into(),
            points: vec![(-1e300, 1e300), (1e300, -1e300)],
        }]),
        Figure::single(Chart::Line(LineChart {
            log_y: true,
            series: vec![Series {
                name: "nonpositive".into(),
                points: vec![(0.0, 0.0), (1.0, -1.0)],
            }],
            ..LineChart::default()
        })),
        Figure::single(Chart::Heat(HeatMap::default())),
        Figure::single(Chart::Heat(HeatMap {
            rows: 2,
            cols: 3,
            values: vec![1.0],
            ..HeatMap::default()
        })),
        Figure::single(Chart::Heat(HeatMap {
            rows: 1,
            cols: 2,
            values: vec![f64::NAN, f64::INFINITY],
            x_range: (f64::NAN, 1.0),
            ..HeatMap::default()
        })),
        Figure {
            title: String::new(),
            columns: 0,
            charts: vec![],
        },
    ];
    let mismatched = cases[8].to_svg();
    assert!(
        mismatched.contains(">values: expected 2 x 3 = 6, found 1<"),
        "no size message"
    );
    for fig in cases {
        let img = decode(&fig.to_png());
        assert!(img.width >= 900 && img.height >= 560);
        assert!(fig.to_svg().ends_with("</svg>\n"));
    }
}

#[test]
fn heat_map_cells_use_viridis_with_row_zero_on_top_and_gray_nan() {
    // [[0, 1], [NaN, 0.5]]: the color scale runs from 0 to 1.
    let fig = Figure::single(Chart::Heat(HeatMap {
        title: "h".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        value_label: "v".into(),
        rows: 2,
        cols: 2,
        values: vec![0.0, 1.0, f64::NAN, 0.5],
        x_range: (0.0, 2.0),
        y_range: (0.0, 2.0),
    }));
    let img = decode(&fig.to_png());
    // Frames: the cell area first, then the color bar.
    let (cols, rows) = frame_lines(&img, 200);
    assert!(cols.len() >= 4, "vertical frame lines at {cols:?}");
    let (x0, x1) = ((cols[0] + 1) as f64, cols[1] as f64);
    let (y0, y1) = ((rows[0] + 1) as f64, rows[rows.len() - 1] as f64);
    let cell = |r: usize, c: usize| {
        img.at(
            (x0 + (c as f64 + 0.5) * (x1 - x0) / 2.0) as usize,
            (y0 + (r as f64 + 0.5) * (y1 - y0) / 2.0) as usize,
        )
    };
    assert_eq!(cell(0, 0), viridis(0.0));
    assert_eq!(cell(0, 1), viridis(1.0));
    assert_eq!(cell(1, 0), NAN_GRAY);
    assert_eq!(cell(1, 1), viridis(0.5));
    // The color bar (between the next two frame lines) runs from viridis(1) at the top down to
    // viridis(0).
    let (bx0, bx1) = (cols[2] + 1, cols[3]);
    let bx = (bx0 + bx1) / 2;
    let top = img.at(bx, y0 as usize + 2);
    let near = |a: Rgb, b: Rgb| {
        (a.0 as i32 - b.0 as i32).abs()
            + (a.1 as i32 - b.1 as i32).abs()
            + (a.2 as i32 - b.2 as i32).abs()
            < 20
    };
    assert!(near(top, viridis(1.0)), "color bar top {top:?}");
}

/// Checks that every tag is closed in order, attributes are quoted, and `&`/`<` only start
/// markup or entities: enough to catch unescaped text and broken nesting.
fn assert_well_formed(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").expect("end of XML declaration") + 2..];
    }
    while let Some(lt) = rest.find('<') {
        check_text(&rest[..lt]);
        let end = rest[lt..].find('>').expect("unterminated tag") + lt;
        let tag = &rest[lt + 1..end];
        assert!(!tag.contains('<'), "'<' inside tag {tag:?}");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("closing </{name}> with nothing open"));
            assert_eq!(open, name.trim(), "mismatched close tag");
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-'),
                "bad tag name in {tag:?}"
            );
            let attrs = &body[name.len()..];
            assert_eq!(
                attrs.matches('"').count() % 2,
                0,
                "unbalanced quotes in {tag:?}"
            );
            check_text(&attrs.replace('"', ""));
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed tags {stack:?}");
}

fn check_text(text: &str) {
    for (i, _) in text.match_indices('&') {
        let ent = &text[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| ent.starts_with(e)),
            "raw '&' in {text:?}"
        );
    }
}

#[test]
fn svg_is_well_formed_and_has_every_label_escaped() {
    // The last name is too long for the legend: shortened there, kept whole in a <title>.
    let names = [
        "train <ema>",
        "val & test",
        "quote \"q\" 'a'",
        "plain",
        "a very long series name with <tags> & more",
    ];
    let series = names
        .iter()
        .enumerate()
        .map(|(i, n)| Series {
            name: n.to_string(),
            points: (0..50).map(|k| (k as f64, (k * (i + 1)) as f64)).collect(),
        })
        .collect();
    let chart = LineChart {
        title: "Loss <per char> & more".into(),
        x_label: "step (x < y)".into(),
        y_label: "nats & bits".into(),
        log_y: true,
        series,
    };
    let heat = HeatMap {
        title: "gates \"i\" & \"f\"".into(),
        x_label: "t>0".into(),
        y_label: "unit".into(),
        value_label: "σ(x)".into(),
        rows: 3,
        cols: 4,
        values: (0..12).map(|v| v as f64).collect(),
        x_range: (0.0, 4.0),
        y_range: (0.0, 3.0),
    };
    let fig = Figure {
        title: "A & B".into(),
        columns: 2,
        charts: vec![Chart::Line(chart), Chart::Heat(heat)],
    };
    let svg = fig.to_svg();
    assert_well_formed(&svg);
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&apos;")
    };
    for text in names.iter().chain(&[
        "Loss <per char> & more",
        "step (x < y)",
        "nats & bits",
        "gates \"i\" & \"f\"",
        "t>0",
        "unit",
        "σ(x)",
        "A & B",
    ]) {
        assert!(
            svg.contains(&format!(">{}<", esc(text))),
            "missing text {text:?}"
        );
    }
    // One polyline per series, each in its palette color.
    for (i, _) in names.iter().enumerate() {
        assert!(svg.contains(&format!("stroke=\"{}\"", PALETTE[i].hex())));
    }
    let (w, h) = fig.size();
    assert!(svg.contains(&format!("width=\"{w}\" height=\"{h}\"")));
}

#[test]
fn save_writes_both_files_atomically() {
    let dir = std::env::temp_dir().join(format!("recur-plot-save-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fig = line(vec![Series {
        name: "a".into(),
        points: vec![(0.0, 1.0), (1.0, 2.0)],
    }]);
    let stem = dir.join("run.v2");
    fig.save(&stem).unwrap();
    let svg = std::fs::read_to_string(dir.join("run.v2.svg")).unwrap();
    assert_eq!(svg, fig.to_svg());
    let png = std::fs::read(dir.join("run.v2.png")).unwrap();
    assert_eq!(png, fig.to_png());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["run.v2.png", "run.v2.svg"],
        "temporary files left behind"
    );
    // A missing directory is an error that names the file.
    let err = fig.save(&dir.join("missing").join("x")).unwrap_err();
    assert!(err.to_string().contains("x.svg"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// (text, x, y) of every horizontal `<text>` element of an SVG.
fn svg_texts(svg: &str) -> Vec<(String, f64, f64)> {
    let attr = |tag: &str, name: &str| -> Option<f64> {
        let i = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        tag[i..].split('"').next()?.parse().ok()
    };
    svg.lines()
        .filter(|l| l.starts_with("<text ") && !l.contains("rotate("))
        .map(|l| {
            let open_end = l.find('>').unwrap();
            let text = &l[open_end + 1..l.rfind("</text>").unwrap()];
            (
                text.to_string(),
                attr(&l[..open_end], "x").unwrap(),
                attr(&l[..open_end], "y").unwrap(),
            )
        })
        .collect()
}

/// (value, screen position) of tick labels.
type Labels = Vec<(f64, f64)>;

/// The y axis tick labels (value, y) and the x axis tick labels (value, x) of a one-panel
/// SVG: numeric labels sharing the leftmost x, and numeric labels sharing the lowest y.
fn axis_labels(svg: &str) -> (Labels, Labels) {
    let nums: Vec<(f64, f64, f64)> = svg_texts(svg)
        .into_iter()
        .filter_map(|(t, x, y)| {
            t.replace('\u{2212}', "-")
                .parse::<f64>()
                .ok()
                .map(|v| (v, x, y))
        })
        .collect();
    let min_x = nums.iter().map(|n| n.1).fold(f64::INFINITY, f64::min);
    let max_y = nums.iter().map(|n| n.2).fold(f64::NEG_INFINITY, f64::max);
    let ys = nums
        .iter()
        .filter(|n| n.1 == min_x)
        .map(|n| (n.0, n.2))
        .collect();
    let xs = nums
        .iter()
        .filter(|n| n.2 == max_y)
        .map(|n| (n.0, n.1))
        .collect();
    (ys, xs)
}

/// Whether screen positions increase with the values (true) or decrease (false); panics if
/// neither.
fn increasing(pairs: &[(f64, f64)]) -> bool {
    let mut p = pairs.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(p.len() >= 2, "too few labels {p:?}");
    let up = p.windows(2).all(|w| w[1].1 > w[0].1);
    let down = p.windows(2).all(|w| w[1].1 < w[0].1);
    assert!(up || down, "labels out of order {p:?}");
    up
}

#[test]
fn heat_map_axes_follow_the_given_ranges() {
    let heat = |x_range, y_range| {
        let fig = Figure::single(Chart::Heat(HeatMap {
            rows: 4,
            cols: 4,
            values: (0..16).map(|v| v as f64).collect(),
            x_range,
            y_range,
            ..HeatMap::default()
        }));
        axis_labels(&fig.to_svg())
    };
    // y_range (0, 4): row 0 (y = 0) on top, values grow downwards (screen y increases).
    let (ys, xs) = heat((10.0, 20.0), (0.0, 4.0));
    assert!(increasing(&ys), "{ys:?}");
    assert!(increasing(&xs), "{xs:?}");
    assert_eq!(ys.iter().map(|p| p.0).fold(f64::INFINITY, f64::min), 0.0);
    assert_eq!(
        xs.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max),
        20.0
    );
    // Reversed ranges: y grows upwards, x grows to the left.
    let (ys, xs) = heat((20.0, 10.0), (4.0, 0.0));
    assert!(!increasing(&ys), "{ys:?}");
    assert!(!increasing(&xs), "{xs:?}");
}
