//! PNG output through the `png` crate: 8-bit RGB, adaptive per-row filtering.

/// Encodes `rgb` (`width * height * 3` bytes, rows top to bottom) as a PNG file.
///
/// # Panics
/// If `rgb.len() != width * height * 3` (an internal invariant of the rasterizer); writing
/// into memory cannot fail otherwise.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    assert_eq!(
        rgb.len(),
        width as usize * 3 * height as usize,
        "RGB buffer size"
    );
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut w = enc.write_header().expect("a PNG header in memory");
    w.write_image_data(rgb).expect("PNG data of the right size");
    w.finish().expect("the end of a PNG in memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written decodes to the same pixels.
    #[test]
    fn round_trip_through_the_decoder() {
        let (w, h) = (5u32, 3u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let bytes = encode_rgb(w, h, &rgb);
        let mut dec = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; dec.output_buffer_size()];
        let info = dec.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (w, h));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
    }
}
