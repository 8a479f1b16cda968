//! What the compositor shows: Weston's screenshooter (the `weston_screenshooter` protocol,
//! offered only with `weston --debug`). Debian's weston 10 installs neither that protocol's
//! XML nor a library for it, only its own client `weston-screenshooter`, which captures every
//! output into `wayland-screenshot-<time>.png` in its working directory; so that client is run
//! once per presented frame (after the frame's wp_presentation feedback) in a directory of our
//! own, and its PNG is read back.
//!
//! The capture is classified in RGB against the CPU view with the classes of
//! [`crate::classify`]: each captured pixel is snapped to the first candidate it matches within
//! [`TOLERANCE`] (the CPU view's RGB, the sentinel's, all-zero YUV's, an older frame's), and
//! [`classify::classify`] decides on those RGB bytes (3 bytes a pixel, which it sees as a packed
//! frame of twice the height: the byte-level rules are the same).

use crate::classify::{self, Geometry, Verdict};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Largest per-channel difference between Weston's YUV->RGB and ours that still counts as equal.
/// Weston 10's GL shader (Y_UV variant, used when EGL cannot import NV12 as one image, as on
/// llvmpipe) converts limited-range BT.601 with Y - 0.0625 and Cb/Cr - 0.5 on values normalised
/// by 255, i.e. it centres chroma at 127.5 where the reference (gpu::nv12_to_rgb) centres it at
/// 128 and luma at 15.94 instead of 16: a true difference of at most 2.017 * 0.5 + 0.073 = 1.08
/// code values (blue), 0.80 (red), 0.62 (green); each side then rounds to 8 bits, so rounded
/// values differ by at most 2. A wrong plane offset, stride or stale picture moves pixels by
/// tens of code values.
pub const TOLERANCE: u8 = 2;

/// Runs the screenshooter in `dir` and returns the captured RGB (3 bytes a pixel) and its size.
pub fn shoot(program: &Path, dir: &Path) -> Result<(u32, u32, Vec<u8>)> {
    for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "png") {
            std::fs::remove_file(&p).ok();
        }
    }
    let mut child = Command::new(program)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            child.kill().ok();
            child.wait().ok();
            bail!("{} took more than 30 s", program.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            e.read_to_string(&mut err).ok();
        }
        bail!(
            "{} failed ({status}): {} (Weston must run with --debug)",
            program.display(),
            err.trim().lines().last().unwrap_or("no message")
        );
    }
    let png: PathBuf = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "png"))
        .ok_or_else(|| anyhow!("{} wrote no PNG in {}", program.display(), dir.display()))?;
    let r = read_png(&png);
    std::fs::remove_file(&png).ok();
    r
}

fn read_png(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut d = png::Decoder::new(std::io::BufReader::new(f));
    d.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut r = d
        .read_info()
        .with_context(|| format!("{}", path.display()))?;
    let mut buf = vec![0u8; r.output_buffer_size().unwrap_or(0)];
    let info = r
        .next_frame(&mut buf)
        .with_context(|| format!("{}", path.display()))?;
    let (w, h) = (info.width, info.height);
    let ch = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        t => bail!("{}: unexpected PNG colour type {t:?}", path.display()),
    };
    let mut rgb = Vec::with_capacity(w as usize * h as usize * 3);
    for row in buf.chunks(info.line_size).take(h as usize) {
        for px in row.chunks(ch).take(w as usize) {
            rgb.extend_from_slice(&px[..3]);
        }
    }
    Ok((w, h, rgb))
}

/// The inputs of one capture's classification, all RGB8 of the visible size (converted from
/// packed NV12 by [`crate::gpu::nv12_to_rgb`], BT.601 limited range).
pub struct Candidates<'a> {
    pub geometry: Geometry,
    pub cpu: &'a [u8],
    pub sentinel: Option<&'a [u8]>,
    /// An all-zero picture (green).
    pub zero: &'a [u8],
    /// Older frames (decode index, RGB), the most recent first.
    pub previous: Vec<(usize, &'a [u8])>,
}

/// The verdict and the largest per-channel difference from the CPU view's RGB.
pub fn classify_rgb(shot: &[u8], c: &Candidates<'_>) -> Result<(Verdict, u8)> {
    let g = c.geometry;
    let cpu = c.cpu;
    if shot.len() != cpu.len() {
        bail!(
            "capture has {} bytes, {}x{} RGB has {}",
            shot.len(),
            g.width,
            g.height,
            cpu.len()
        );
    }
    let (sentinel, zero, prev) = (c.sentinel, c.zero, &c.previous);
    let near = |a: &[u8], b: &[u8]| a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= TOLERANCE);
    let mut snapped = shot.to_vec();
    let mut max_abs = 0u8;
    for i in (0..shot.len()).step_by(3) {
        let px = &shot[i..i + 3];
        for k in 0..3 {
            max_abs = max_abs.max(px[k].abs_diff(cpu[i + k]));
        }
        let to: Option<&[u8]> = if near(px, &cpu[i..i + 3]) {
            Some(&cpu[i..i + 3])
        } else if let Some(s) = sentinel.filter(|s| near(px, &s[i..i + 3])) {
            Some(&s[i..i + 3])
        } else if near(px, &zero[i..i + 3]) {
            Some(&[0, 0, 0])
        } else {
            prev.iter()
                .find(|(_, p)| near(px, &p[i..i + 3]))
                .map(|(_, p)| &p[i..i + 3])
        };
        if let Some(t) = to {
            snapped[i..i + 3].copy_from_slice(t);
        }
    }
    // RGB viewed as a packed "NV12" frame of twice the height: 3 bytes a pixel.
    let rg = Geometry {
        width: g.width,
        height: g.height * 2,
    };
    let v = classify::classify(&classify::Frame {
        geometry: rg,
        gpu: &snapped,
        cpu,
        sentinel,
        previous: prev,
        later: &[],
        error: false,
    })
    .map_err(|e| anyhow!("{e}"))?;
    Ok((v, max_abs))
}
