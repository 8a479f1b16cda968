//! Ground truth: what the decoder should have written, per frame.
//!
//! H.264 decoding is bit-exact, so ffmpeg's decode of the stream is the reference.
//! `scripts/make-streams.sh` writes `NAME.framemd5.txt` beside every good stream NAME.h264:
//! `ffmpeg -threads 1 -i NAME.h264 -fps_mode passthrough -pix_fmt nv12 -f framemd5`, one MD5 of
//! the visible NV12 picture per frame, in display order. The verifier hashes the CPU view of
//! every CAPTURE buffer after DQBUF the same way (the visible Y rows, then the visible CbCr
//! rows, no padding: `report::Checksums::md5`) and compares it with the line of the frame's
//! display index. A decoder that writes a wrong (or green) picture is then caught even when the
//! GPU and the CPU agree on it.
//!
//! visl does not decode: it draws a test pattern (its frame counter, timestamps, references), so
//! there is nothing to compare, and the verifier says `n/a` for it instead of "wrong".

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The reference MD5s of one stream, in display order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameMd5 {
    pub path: PathBuf,
    /// (frame size in bytes, MD5 hex) per frame, in display order.
    pub frames: Vec<(usize, String)>,
}

/// Parses ffmpeg's framemd5 output (`#` header lines, then
/// `stream, dts, pts, duration, size, hash` per frame).
pub fn parse(text: &str) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 6 {
            bail!(
                "line {}: want 6 comma-separated fields, got {}",
                n + 1,
                f.len()
            );
        }
        if f[0] != "0" {
            bail!(
                "line {}: stream {} (only one video stream is expected)",
                n + 1,
                f[0]
            );
        }
        let size: usize = f[4]
            .parse()
            .map_err(|e| anyhow!("line {}: size '{}': {e}", n + 1, f[4]))?;
        let hash = f[5].to_ascii_lowercase();
        if hash.len() != 32 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("line {}: '{}' is not an MD5", n + 1, f[5]);
        }
        out.push((size, hash));
    }
    if out.is_empty() {
        bail!("no frame lines");
    }
    Ok(out)
}

impl FrameMd5 {
    pub fn load(path: &Path) -> Result<FrameMd5> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let frames = parse(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(FrameMd5 {
            path: path.to_path_buf(),
            frames,
        })
    }

    /// `NAME.framemd5.txt` beside `NAME.h264`, if it exists.
    pub fn beside(stream: &Path) -> Option<PathBuf> {
        let stem = stream.file_stem()?.to_str()?;
        let p = stream.with_file_name(format!("{stem}.framemd5.txt"));
        p.is_file().then_some(p)
    }

    /// Whether the picture at `display_index` with visible-NV12 `md5` of `size` bytes is right;
    /// None when the reference has no such frame.
    pub fn check(&self, display_index: usize, size: usize, md5: &str) -> Option<bool> {
        self.frames
            .get(display_index)
            .map(|(s, h)| *s == size && h == md5)
    }
}

/// What the ground truth of an arm was.
#[derive(Clone, Debug, Serialize)]
pub struct TruthInfo {
    /// "compared": every frame's CPU view was checked against `source`; "n/a": not checked, for
    /// `reason`.
    pub status: String,
    pub source: Option<String>,
    pub reason: Option<String>,
}

/// The visible NV12 size ffmpeg's rawvideo packs: Y plus CbCr (width rounded up to even, half
/// the height rounded up).
pub fn visible_size(w: u32, h: u32) -> usize {
    let (w, h) = (w as usize, h as usize);
    w * h + w.div_ceil(2) * 2 * h.div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ffmpeg_framemd5() {
        let t = "#format: frame checksums\n#version: 2\n#hash: MD5\n#tb 0: 1/30\n\
                 #stream#, dts,        pts, duration,     size, hash\n\
                 0,          0,          0,        1,   115200, dd3bc5b9a03b84505cea611f3dcb90f9\n\
                 0,          1,          1,        1,   115200, 23DDEF42258778E5C5B4120910B2CA83\n";
        let f = parse(t).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1], (115200, "23ddef42258778e5c5b4120910b2ca83".into()));
        assert!(parse("#only a header\n").is_err());
        assert!(parse("0, 0, 0, 1, 115200, nothex\n").is_err());
        assert!(parse("1, 0, 0, 1, 115200, dd3bc5b9a03b84505cea611f3dcb90f9\n").is_err());
        let m = FrameMd5 {
            path: "x".into(),
            frames: f,
        };
        assert_eq!(
            m.check(0, 115200, "dd3bc5b9a03b84505cea611f3dcb90f9"),
            Some(true)
        );
        assert_eq!(
            m.check(0, 115200, "23ddef42258778e5c5b4120910b2ca83"),
            Some(false)
        );
        assert_eq!(
            m.check(0, 1, "dd3bc5b9a03b84505cea611f3dcb90f9"),
            Some(false)
        );
        assert_eq!(m.check(2, 115200, "dd3bc5b9a03b84505cea611f3dcb90f9"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(visible_size(320, 240), 115200);
        assert_eq!(visible_size(1920, 1080), 3110400);
        assert_eq!(visible_size(3, 3), 9 + 4 * 2);
    }
}
