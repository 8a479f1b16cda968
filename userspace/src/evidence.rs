//! The RFC evidence: the Markdown table for the cover letter, and the PNG triptych (CPU view,
//! GPU view, difference, with the class written on it in a small built-in bitmap font).
//! `docs/rfc-evidence.md` says how to regenerate it and what each column means.

use crate::classify::{Class, Counts, Geometry};
use crate::gpu::{nv12_to_rgb, Matrix};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// One row of the table: one arm (pipeline x module mode x wait_readers x sample point x
/// consumer wait x image lifetime) x import path.
#[derive(Clone, Debug)]
pub struct Row {
    /// "direct" or "mpv-kwin".
    pub pipeline: String,
    pub mode: String,
    /// The module's wait_readers: "on", "off" or "-" (left as it was).
    pub wait_readers: String,
    pub sample_at: String,
    /// What the consumer waited for before the GPU read: none, poll, sync-file, explicit.
    pub consumer_wait: String,
    /// The arm's verdict: none, forward, reverse, layout, decoder (joined with +).
    pub verdict: String,
    pub images: String,
    pub import: String,
    pub counts: Counts,
    /// EGLImages created in this arm, and the distinct buffers sampled.
    pub images_created: usize,
    pub buffers: usize,
    /// Frames whose RGB readback was off by more than the tolerance on some channel.
    pub rgb_off: usize,
    /// Frames whose CPU view differs from ffmpeg's decode (None: no ground truth, `n/a`).
    pub decoder_wrong: Option<usize>,
    /// Frames whose CAPTURE dma-buf carried an unsignaled `vb2_resv` WRITE fence just after
    /// QBUF (the decode report's `fences_pending_vb2_resv`); None for the synthetic decoder.
    pub fenced: Option<usize>,
    /// Samples that began while the decoder provably still owned the buffer, and of those the
    /// held ones (done by the end of the read, correct) and the raced ones (sentinel/torn); None
    /// for rows sampled after DQBUF.
    pub busy: Option<(usize, usize, usize)>,
}

/// The Markdown table: one row per arm, one column per class.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut s = String::new();
    s.push_str(
        "| pipeline | module mode | wait_readers | GPU samples at | consumer wait | EGLImages | import | verdict | frames | decoder wrong |",
    );
    for c in Class::ALL {
        let _ = write!(s, " {c} |");
    }
    s.push_str(
        " images created / buffers | RGB off | vb2_resv fence after QBUF | busy at read | busy, held | busy, raced |\n|---|---|---|---|---|---|---|---|---:|---:|",
    );
    for _ in Class::ALL {
        s.push_str("---:|");
    }
    s.push_str("---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.pipeline,
            r.mode,
            r.wait_readers,
            r.sample_at,
            r.consumer_wait,
            r.images,
            r.import,
            r.verdict,
            r.counts.total(),
            r.decoder_wrong
                .map_or_else(|| "n/a".to_string(), |n| n.to_string())
        );
        for c in Class::ALL {
            let _ = write!(s, " {} |", r.counts.get(c));
        }
        let fenced = r.fenced.map_or_else(|| "-".to_string(), |n| n.to_string());
        let busy = r.busy.map_or_else(
            || "- | - | -".to_string(),
            |(b, c, x)| format!("{b} | {c} | {x}"),
        );
        let _ = writeln!(
            s,
            " {} / {} | {} | {fenced} | {busy} |",
            r.images_created, r.buffers, r.rgb_off
        );
    }
    s
}

/// A triptych of one frame: CPU view | GPU view | difference, `visible` pixels of each (the
/// packed frames have the coded `g`), converted to RGB with BT.601 limited range, with one
/// label per panel. Returns (width, height, RGB8 pixels): 3 * visible width by visible height.
pub fn triptych(
    cpu: &[u8],
    gpu: &[u8],
    g: Geometry,
    visible: (u32, u32),
    labels: [&str; 3],
) -> (u32, u32, Vec<u8>) {
    let (vw, vh) = (
        visible.0.min(g.width).max(1) as usize,
        visible.1.min(g.height).max(1) as usize,
    );
    let cw = g.width as usize;
    let y_len = g.y_len();
    let byte = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(0);
    compose(
        &nv12_to_rgb(cpu, g, Matrix::Bt601),
        &nv12_to_rgb(gpu, g, Matrix::Bt601),
        cw,
        (vw, vh),
        // The largest byte difference of this pixel's Y and its CbCr pair, and the CPU luma.
        |x, y| {
            let yi = y * cw + x;
            let ci = y_len + (y / 2) * cw + (x / 2) * 2;
            let d = [yi, ci, ci + 1]
                .iter()
                .map(|&i| byte(cpu, i).abs_diff(byte(gpu, i)))
                .max()
                .unwrap_or(0);
            (d, byte(cpu, yi))
        },
        labels,
    )
}

/// The same triptych from two RGB8 pictures of `size` (a CPU view converted to RGB and what a
/// compositor showed): the difference is the largest per-channel difference, and differences
/// up to `tolerance` (the two YUV to RGB conversions' rounding) count as equal.
pub fn triptych_rgb(
    cpu: &[u8],
    shown: &[u8],
    size: (u32, u32),
    tolerance: u8,
    labels: [&str; 3],
) -> (u32, u32, Vec<u8>) {
    let (w, h) = (size.0.max(1) as usize, size.1.max(1) as usize);
    let byte = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(0);
    compose(
        cpu,
        shown,
        w,
        (w, h),
        |x, y| {
            let i = (y * w + x) * 3;
            let d = (i..i + 3)
                .map(|k| byte(cpu, k).abs_diff(byte(shown, k)))
                .max()
                .unwrap_or(0);
            let luma = (u32::from(byte(cpu, i)) * 77
                + u32::from(byte(cpu, i + 1)) * 150
                + u32::from(byte(cpu, i + 2)) * 29)
                >> 8;
            (if d <= tolerance { 0 } else { d }, luma as u8)
        },
        labels,
    )
}

/// Lays out the three panels: `a` and `b` (RGB8, rows of `stride` pixels), `visible` pixels of
/// each, and the difference panel from `diff(x, y)` = (difference, luma): equal pixels show the
/// luma dimmed, differing ones red (brighter = larger); then the labels.
fn compose(
    a: &[u8],
    b: &[u8],
    stride: usize,
    visible: (usize, usize),
    diff: impl Fn(usize, usize) -> (u8, u8),
    labels: [&str; 3],
) -> (u32, u32, Vec<u8>) {
    let (vw, vh) = visible;
    let w = vw * 3;
    let mut img = vec![0u8; w * vh * 3];
    let px = |v: &[u8], i: usize| -> [u8; 3] {
        v.get(i..i + 3)
            .map(|p| [p[0], p[1], p[2]])
            .unwrap_or([0; 3])
    };
    for y in 0..vh {
        for x in 0..vw {
            let src = (y * stride + x) * 3;
            let dst = (y * w + x) * 3;
            img[dst..dst + 3].copy_from_slice(&px(a, src));
            img[dst + vw * 3..dst + vw * 3 + 3].copy_from_slice(&px(b, src));
            let (d, luma) = diff(x, y);
            let p = if d == 0 {
                let l = luma / 4;
                [l, l, l]
            } else {
                [(96 + u32::from(d) * 2).min(255) as u8, 0, 0]
            };
            let o = dst + 2 * vw * 3;
            img[o..o + 3].copy_from_slice(&p);
        }
    }
    let scale = (vw / 320).clamp(1, 4);
    for (i, label) in labels.iter().enumerate() {
        let mut line_y = 2;
        for line in label.split('\n') {
            draw_text(&mut img, w, vh, i * vw + 2, line_y, line, scale, vw - 4);
            line_y += 9 * scale;
        }
    }
    (w as u32, vh as u32, img)
}

/// Writes an RGB8 PNG.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc
        .write_header()
        .with_context(|| format!("PNG header of {}", path.display()))?;
    w.write_image_data(rgb)
        .with_context(|| format!("PNG data of {}", path.display()))?;
    w.finish()
        .with_context(|| format!("PNG end of {}", path.display()))?;
    Ok(())
}

/// Reads a PNG's size and colour type (for tests and `verify --check-png`).
pub fn png_info(path: &Path) -> Result<(u32, u32, png::ColorType)> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let dec = png::Decoder::new(std::io::BufReader::new(f));
    let mut r = dec
        .read_info()
        .with_context(|| format!("{} is not a PNG", path.display()))?;
    let mut buf = vec![0; r.output_buffer_size().unwrap_or(0)];
    let info = r
        .next_frame(&mut buf)
        .with_context(|| format!("{}: bad PNG data", path.display()))?;
    Ok((info.width, info.height, info.color_type))
}

/// Draws `text` (upper-cased; unknown characters as '?') at (x, y) in white on a black box,
/// clipped to `max_w` pixels.
#[allow(clippy::too_many_arguments)]
fn draw_text(
    img: &mut [u8],
    w: usize,
    h: usize,
    x: usize,
    y: usize,
    text: &str,
    scale: usize,
    max_w: usize,
) {
    let cell = 6 * scale;
    let n = text.chars().count().min(max_w / cell);
    let box_w = n * cell + scale;
    let box_h = 8 * scale + scale;
    for yy in y.saturating_sub(scale)..(y + box_h).min(h) {
        for xx in x.saturating_sub(scale)..(x + box_w).min(w) {
            let o = (yy * w + xx) * 3;
            img[o..o + 3].copy_from_slice(&[0, 0, 0]);
        }
    }
    for (i, ch) in text.chars().take(n).enumerate() {
        let rows = glyph(ch);
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5 {
                if bits & (0x10 >> c) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + i * cell + c * scale + dx;
                        let py = y + r * scale + dy;
                        if px < w && py < h {
                            let o = (py * w + px) * 3;
                            img[o..o + 3].copy_from_slice(&[255, 255, 255]);
                        }
                    }
                }
            }
        }
    }
}

/// A 5x7 glyph: seven rows, bit 4 is the leftmost pixel.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1e, 0x01, 0x01, 0x0e, 0x01, 0x01, 0x1e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        'A' => [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'B' => [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
        'C' => [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e],
        'D' => [0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c],
        'E' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f],
        'F' => [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
        'G' => [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f],
        'H' => [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
        'I' => [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
        'M' => [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'P' => [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
        'Q' => [0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d],
        'R' => [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
        'S' => [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e],
        'T' => [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a],
        'X' => [0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f],
        ':' => [0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00],
        '=' => [0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00],
        '-' => [0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00],
        '/' => [0x01, 0x02, 0x02, 0x04, 0x08, 0x08, 0x10],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '+' => [0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00],
        '#' => [0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a],
        _ => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_arm_and_a_column_per_class() {
        let mut c = Counts::default();
        c.add(Class::Correct);
        c.add(Class::Sentinel);
        let rows = vec![
            Row {
                pipeline: "direct".into(),
                mode: "off".into(),
                wait_readers: "-".into(),
                sample_at: "queued".into(),
                consumer_wait: "none".into(),
                verdict: "forward".into(),
                images: "cached".into(),
                import: "kwin".into(),
                counts: c.clone(),
                images_created: 8,
                buffers: 4,
                rgb_off: 0,
                decoder_wrong: Some(0),
                fenced: Some(0),
                busy: Some((2, 1, 1)),
            },
            Row {
                pipeline: "mpv-kwin".into(),
                mode: "queue".into(),
                wait_readers: "on".into(),
                sample_at: "dqbuf".into(),
                consumer_wait: "poll".into(),
                verdict: "none".into(),
                images: "per-frame".into(),
                import: "external".into(),
                counts: c,
                images_created: 2,
                buffers: 2,
                rgb_off: 1,
                decoder_wrong: None,
                fenced: None,
                busy: None,
            },
        ];
        let t = markdown_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains(
            "| verdict | frames | decoder wrong | correct | sentinel | torn | later | zero | previous | stale | mismatch | unwritten | partial | error |"
        ));
        assert_eq!(
            lines[2],
            "| direct | off | - | queued | none | cached | kwin | forward | 2 | 0 | 1 | 1 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 0 | 8 / 4 | 0 | 0 | 2 | 1 | 1 |"
        );
        assert!(lines[3].starts_with(
            "| mpv-kwin | queue | on | dqbuf | poll | per-frame | external | none | 2 | n/a |"
        ));
        assert!(lines[3].ends_with("| 2 / 2 | 1 | - | - | - | - |"));
        // Every line has the same number of cells.
        let cells = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cells(l) == cells(lines[0])));
    }

    #[test]
    fn triptych_size_text_and_difference() {
        let g = Geometry {
            width: 64,
            height: 32,
        };
        let cpu: Vec<u8> = (0..g.len()).map(|i| 16 + (i % 200) as u8).collect();
        let mut gpu = cpu.clone();
        gpu[31 * 64 + 40] = 0; // one Y byte, bottom row
        let (w, h, img) = triptych(&cpu, &gpu, g, (60, 30), ["CPU", "GPU TORN", "DIFF"]);
        assert_eq!((w, h, img.len()), (180, 30, 180 * 30 * 3));
        // The label is drawn: white pixels in the top-left corner of the first panel.
        assert!((0..10).any(|y| (0..20).any(|x| img[(y * 180 + x) * 3..][..3] == [255, 255, 255])));
        // Row 31 is outside the visible 30 rows: no red anywhere in the difference panel.
        let red = |img: &[u8]| {
            (12..30).any(|y| {
                (120..180).any(|x| {
                    let p = &img[(y * 180 + x) * 3..][..3];
                    p[0] >= 96 && p[1] == 0 && p[2] == 0
                })
            })
        };
        assert!(!red(&img));
        gpu[20 * 64 + 40] = 0; // visible this time
        let (_, _, img) = triptych(&cpu, &gpu, g, (60, 30), ["", "", ""]);
        assert!(red(&img));
    }

    #[test]
    fn rgb_triptych_tolerance() {
        let cpu = vec![100u8; 8 * 4 * 3];
        let mut shown = cpu.clone();
        shown[(2 * 8 + 5) * 3] = 102; // within the tolerance
        let (w, h, img) = triptych_rgb(&cpu, &shown, (8, 4), 2, ["", "", ""]);
        assert_eq!((w, h), (24, 4));
        let red = |img: &[u8]| {
            (0..4).any(|y| {
                (16..24).any(|x| img[(y * 24 + x) * 3 + 1] == 0 && img[(y * 24 + x) * 3] >= 96)
            })
        };
        assert!(!red(&img));
        shown[(3 * 8 + 6) * 3 + 2] = 140;
        let (_, _, img) = triptych_rgb(&cpu, &shown, (8, 4), 2, ["", "", ""]);
        assert!(red(&img));
        // The middle panel is what was shown.
        assert_eq!(img[(3 * 24 + 8 + 6) * 3 + 2], 140);
    }

    #[test]
    fn png_round_trip() {
        let dir = std::env::temp_dir().join(format!("vb2r-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.png");
        write_png(&p, 7, 5, &[200u8; 7 * 5 * 3]).unwrap();
        assert_eq!(png_info(&p).unwrap(), (7, 5, png::ColorType::Rgb));
        std::fs::write(&p, b"nope").unwrap();
        assert!(png_info(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
