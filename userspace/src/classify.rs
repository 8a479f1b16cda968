//! The per-frame verdict: what the GPU sampled, compared with what the CPU saw.
//!
//! All buffers here are *packed* NV12 of the coded size: the Y plane (`width * height` bytes)
//! then the interleaved CbCr plane (`width * height / 2` bytes), stride padding removed
//! ([`pack_nv12`]). The GPU's readback of the raw planes and the CPU's view after DQBUF are
//! both brought to this form before they are compared.
//!
//! The sentinel (unique per buffer and queueing) overwrites the whole buffer through the CPU
//! mapping before every QBUF. So a GPU that reads too early can only see that sentinel or the
//! decoder's new bytes: zero bytes or an older frame's bytes cannot come from reading early.
//!
//! The classes, in the order they are decided:
//! - `error`: the driver flagged the buffer with V4L2_BUF_FLAG_ERROR and it was sampled anyway
//!   (the content class is still recorded in [`Verdict::content`]);
//! - `unwritten`: the CPU view after DQBUF is still the sentinel: the decoder wrote nothing.
//!   Not an ordering problem, whatever the GPU saw;
//! - `partial`: the CPU view after DQBUF still holds runs of the sentinel (at least
//!   [`SENTINEL_RUN`] bytes in a row): the decoder wrote part of the picture. Not an ordering
//!   problem either;
//! - `correct`: every byte equals the CPU view after DQBUF;
//! - `sentinel`: every byte equals the sentinel: the GPU read the buffer before the decoder
//!   wrote it (an ordering race: what a fence fixes);
//! - `zero`: every byte is 0 (all-zero YUV is the green frame: memory nobody wrote, or the wrong
//!   memory, layout or import);
//! - `previous`: every byte equals the CPU view of one older frame (this buffer's own earlier
//!   contents or a recent frame): a stale import or cache, or the wrong buffer;
//! - `later`: every byte equals the CPU view of a frame decoded *after* this one (into the same
//!   buffer): the decoder overwrote the buffer while the GPU was still reading it (the reverse
//!   hazard: what `wait_readers` fixes, and no fence of the decoder's own can);
//! - `torn`: every byte equals the CPU view, the sentinel or a later frame, and the CPU view and
//!   one of the others both occur: read while being written (an ordering race, forward when the
//!   other bytes are the sentinel, reverse when they are a later frame's; [`Mix`] says which);
//! - `stale`: every byte equals the CPU view, the sentinel, zero or an older frame, and some
//!   are zero or older: a stale cache, a stale import or the wrong buffer, not an early read;
//! - `mismatch`: some bytes equal none of them: a layout, stride, import or conversion problem
//!   (or a writer we do not know of).
//!
//! "Equal" is byte for byte; the PSNR and the differing-byte count say how far off a frame is.

use serde::Serialize;

/// A frame's class (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Correct,
    Sentinel,
    Torn,
    Zero,
    Previous,
    Later,
    Stale,
    Mismatch,
    Unwritten,
    Partial,
    Error,
}

impl Class {
    pub const ALL: [Class; 11] = [
        Class::Correct,
        Class::Sentinel,
        Class::Torn,
        Class::Later,
        Class::Zero,
        Class::Previous,
        Class::Stale,
        Class::Mismatch,
        Class::Unwritten,
        Class::Partial,
        Class::Error,
    ];

    /// An ordering race: the GPU read before the decoder had written (what a fence fixes), or
    /// the decoder wrote while the GPU was still reading (what `wait_readers` fixes).
    pub fn is_race(self) -> bool {
        matches!(self, Class::Sentinel | Class::Torn | Class::Later)
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Correct => "correct",
            Class::Sentinel => "sentinel",
            Class::Torn => "torn",
            Class::Zero => "zero",
            Class::Previous => "previous",
            Class::Later => "later",
            Class::Stale => "stale",
            Class::Mismatch => "mismatch",
            Class::Unwritten => "unwritten",
            Class::Partial => "partial",
            Class::Error => "error",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The geometry of a packed NV12 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Geometry {
    pub width: u32,
    pub height: u32,
}

impl Geometry {
    pub fn y_len(&self) -> usize {
        self.width as usize * self.height as usize
    }
    pub fn len(&self) -> usize {
        self.y_len() + self.width as usize * (self.height as usize / 2)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The plane and row of a packed offset: ("y", row) or ("uv", row).
    pub fn row_of(&self, offset: usize) -> (&'static str, u32) {
        let w = self.width.max(1) as usize;
        if offset < self.y_len() {
            ("y", (offset / w) as u32)
        } else {
            ("uv", ((offset - self.y_len()) / w) as u32)
        }
    }
}

/// Copies the visible bytes of an NV12 buffer (`stride`, chroma at `uv_offset`) into packed form.
/// Returns None when the buffer is too short for the layout.
pub fn pack_nv12(raw: &[u8], g: Geometry, stride: u32, uv_offset: u32) -> Option<Vec<u8>> {
    let (w, h, s) = (g.width as usize, g.height as usize, stride as usize);
    if s < w {
        return None;
    }
    let mut out = Vec::with_capacity(g.len());
    for row in 0..h {
        out.extend_from_slice(raw.get(row * s..row * s + w)?);
    }
    let uv = uv_offset as usize;
    for row in 0..h / 2 {
        out.extend_from_slice(raw.get(uv + row * s..uv + row * s + w)?);
    }
    Some(out)
}

/// The sentinel for one queueing of one buffer: `len` pseudo-random bytes, none of them 0, from
/// a seed unique to (buffer index, how many times that buffer was queued). Unlike a constant
/// fill, no decoded frame and no other queueing of any buffer can equal it by accident.
pub fn sentinel(buffer: u32, queueing: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_sentinel(&mut out, buffer, queueing);
    out
}

/// Fills `out` with the sentinel of (buffer, queueing) (see [`sentinel`]).
pub fn fill_sentinel(out: &mut [u8], buffer: u32, queueing: u64) {
    let seed = 0x5642_3252_0000_0000u64 ^ (u64::from(buffer) << 40) ^ queueing;
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let v = splitmix64(seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        for (b, x) in chunk.iter_mut().zip(v.to_le_bytes()) {
            *b = if x == 0 { 0xa5 } else { x };
        }
    }
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shortest run of CPU-view bytes equal to the sentinel that counts as "not written" (two
/// independent bytes agree with probability 1/255, so 16 in a row do not happen by chance).
pub const SENTINEL_RUN: usize = 16;

/// What the bytes of a frame were made of: how many bytes equal the CPU view, the sentinel,
/// zero, a later frame, an older frame, or none of them (each byte counted once, in that order).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mix {
    pub cpu: usize,
    pub sentinel: usize,
    pub zero: usize,
    pub previous: usize,
    pub later: usize,
    pub unexplained: usize,
}

/// One frame's verdict.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The class shown in the summary (`error` when the driver flagged the buffer).
    pub class: Class,
    /// The class of the content alone (equal to `class` unless it is `error`).
    pub content: Class,
    /// The bytes compared (packed Y + CbCr).
    pub bytes: usize,
    /// How many of them differ from the CPU view.
    pub bytes_differing: usize,
    /// The first differing packed offsets (at most 8).
    pub first_offsets: Vec<usize>,
    /// The first differing rows, as "y:ROW" or "uv:ROW" (at most 8), and how many rows differ.
    pub first_rows: Vec<String>,
    pub rows_differing: usize,
    /// PSNR of the GPU view against the CPU view, in dB; None when they are identical.
    pub psnr_db: Option<f64>,
    /// For `previous`: the decode index of the older frame that was seen.
    pub previous_frame: Option<usize>,
    /// For `later`: the decode index of the later frame that was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub later_frame: Option<usize>,
    /// Bytes of the CPU view after DQBUF that are still the sentinel, in runs of at least
    /// [`SENTINEL_RUN`] (the decoder did not write them).
    pub cpu_unwritten: usize,
    pub mix: Mix,
}

impl Verdict {
    pub fn failed(&self) -> bool {
        self.class != Class::Correct
    }
}

/// The inputs of one classification.
pub struct Frame<'a> {
    pub geometry: Geometry,
    /// What the GPU sampled (packed).
    pub gpu: &'a [u8],
    /// The CPU view after DQBUF (packed).
    pub cpu: &'a [u8],
    /// The sentinel written before this frame's QBUF (packed), if one was.
    pub sentinel: Option<&'a [u8]>,
    /// Older frames' CPU views (packed) with their decode indices, the most recent first: the
    /// last frames in decode order and each buffer's own earlier contents.
    pub previous: &'a [(usize, &'a [u8])],
    /// Frames decoded after this one (CPU views, packed) with their decode indices, the next
    /// one first: what the decoder may have written into the buffer during the GPU read.
    pub later: &'a [(usize, &'a [u8])],
    /// V4L2_BUF_FLAG_ERROR on the dequeued buffer.
    pub error: bool,
}

/// Bytes of `cpu` equal to `sentinel` in runs of at least [`SENTINEL_RUN`].
fn sentinel_runs(cpu: &[u8], sentinel: &[u8]) -> usize {
    let (mut total, mut run) = (0usize, 0usize);
    for (c, s) in cpu.iter().zip(sentinel) {
        if c == s {
            run += 1;
        } else {
            if run >= SENTINEL_RUN {
                total += run;
            }
            run = 0;
        }
    }
    if run >= SENTINEL_RUN {
        total += run;
    }
    total
}

/// Classifies one frame. Fails only when the buffers do not have the geometry's size.
pub fn classify(f: &Frame<'_>) -> Result<Verdict, String> {
    let n = f.geometry.len();
    let check = |what: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(format!(
                "classify: {what} has {len} bytes, a packed {}x{} NV12 frame has {n}",
                f.geometry.width, f.geometry.height
            ))
        }
    };
    check("the GPU view", f.gpu.len())?;
    check("the CPU view", f.cpu.len())?;
    if let Some(s) = f.sentinel {
        check("the sentinel", s.len())?;
    }
    for (i, p) in f.previous.iter().chain(f.later) {
        check(&format!("frame {i}"), p.len())?;
    }

    let w = f.geometry.width.max(1) as usize;
    let mut differing = 0usize;
    let mut first_offsets = Vec::new();
    let mut first_rows: Vec<String> = Vec::new();
    let mut rows_differing = 0usize;
    let mut last_row: Option<usize> = None;
    let mut sq_err = 0u64;
    let mut mix = Mix::default();
    let mut all_sentinel = f.sentinel.is_some();
    let mut all_zero = true;
    // For each older frame: does every byte equal it?
    let mut all_prev = vec![true; f.previous.len()];
    let mut all_later = vec![true; f.later.len()];

    for i in 0..n {
        let g = f.gpu[i];
        let c = f.cpu[i];
        if g != 0 {
            all_zero = false;
        }
        if let Some(s) = f.sentinel {
            if s[i] != g {
                all_sentinel = false;
            }
        }
        for (k, (_, p)) in f.previous.iter().enumerate() {
            if all_prev[k] && p[i] != g {
                all_prev[k] = false;
            }
        }
        for (k, (_, p)) in f.later.iter().enumerate() {
            if all_later[k] && p[i] != g {
                all_later[k] = false;
            }
        }
        if g == c {
            mix.cpu += 1;
            continue;
        }
        differing += 1;
        let d = i64::from(g) - i64::from(c);
        sq_err += (d * d) as u64;
        if first_offsets.len() < 8 {
            first_offsets.push(i);
        }
        // Rows are counted in packed order: the Y rows, then the CbCr rows.
        let row = i / w;
        if last_row != Some(row) {
            last_row = Some(row);
            rows_differing += 1;
            if first_rows.len() < 8 {
                let (plane, r) = f.geometry.row_of(i);
                first_rows.push(format!("{plane}:{r}"));
            }
        }
        if f.sentinel.is_some_and(|s| s[i] == g) {
            mix.sentinel += 1;
        } else if g == 0 {
            mix.zero += 1;
        } else if f.later.iter().any(|(_, p)| p[i] == g) {
            // Before the older frames: consecutive pictures share most bytes, and a byte of the
            // next picture that an older one happens to share is still the next picture's.
            mix.later += 1;
        } else if f.previous.iter().any(|(_, p)| p[i] == g) {
            mix.previous += 1;
        } else {
            mix.unexplained += 1;
        }
    }

    let cpu_unwritten = f.sentinel.map_or(0, |s| sentinel_runs(f.cpu, s));
    let psnr_db = (differing > 0).then(|| {
        let mse = sq_err as f64 / n as f64;
        10.0 * (255.0f64 * 255.0 / mse).log10()
    });
    let mut previous_frame = None;
    let mut later_frame = None;
    let content = if f.sentinel.is_some_and(|s| s == f.cpu) {
        Class::Unwritten
    } else if cpu_unwritten > 0 {
        Class::Partial
    } else if differing == 0 {
        Class::Correct
    } else if all_sentinel {
        Class::Sentinel
    } else if all_zero {
        Class::Zero
    } else if let Some(k) = all_prev.iter().position(|&b| b) {
        previous_frame = Some(f.previous[k].0);
        Class::Previous
    } else if let Some(k) = all_later.iter().position(|&b| b) {
        later_frame = Some(f.later[k].0);
        Class::Later
    } else if mix.unexplained > 0 {
        Class::Mismatch
    } else if mix.zero == 0 && mix.previous == 0 {
        Class::Torn
    } else {
        Class::Stale
    };
    Ok(Verdict {
        class: if f.error { Class::Error } else { content },
        content,
        bytes: n,
        bytes_differing: differing,
        first_offsets,
        first_rows,
        rows_differing,
        psnr_db,
        previous_frame,
        later_frame,
        cpu_unwritten,
        mix,
    })
}

/// How many frames fell in each class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts(pub std::collections::BTreeMap<Class, usize>);

impl Counts {
    pub fn add(&mut self, c: Class) {
        *self.0.entry(c).or_default() += 1;
    }
    pub fn get(&self, c: Class) -> usize {
        self.0.get(&c).copied().unwrap_or(0)
    }
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry {
        width: 16,
        height: 8,
    };

    /// A made-up decoded frame: a gradient that depends on `n`, with no zero bytes.
    fn frame(n: u8) -> Vec<u8> {
        (0..G.len())
            .map(|i| 16 + ((i as u32 * 7 + u32::from(n) * 31) % 200) as u8)
            .collect()
    }

    fn run(gpu: &[u8], cpu: &[u8], sent: &[u8], prev: &[(usize, &[u8])], error: bool) -> Verdict {
        classify(&Frame {
            geometry: G,
            gpu,
            cpu,
            sentinel: Some(sent),
            previous: prev,
            later: &[],
            error,
        })
        .unwrap()
    }

    #[test]
    fn later_frames_are_the_reverse_hazard() {
        let cpu = frame(3);
        let next = frame(4);
        let old = frame(2);
        let prev: Vec<(usize, &[u8])> = vec![(2, &old)];
        let later: Vec<(usize, &[u8])> = vec![(4, &next)];
        let run_later = |gpu: &[u8], sentinel: Option<&[u8]>| {
            classify(&Frame {
                geometry: G,
                gpu,
                cpu: &cpu,
                sentinel,
                previous: &prev,
                later: &later,
                error: false,
            })
            .unwrap()
        };
        // The GPU read the next picture: the decoder overwrote the buffer during the read.
        let v = run_later(&next, None);
        assert_eq!((v.class, v.later_frame), (Class::Later, Some(4)));
        assert!(v.class.is_race());
        // Half this picture, half the next: torn, made of later bytes.
        let mut torn = cpu.clone();
        torn[G.len() / 2..].copy_from_slice(&next[G.len() / 2..]);
        let v = run_later(&torn, None);
        assert_eq!(v.class, Class::Torn);
        assert!(v.mix.later > 0 && v.mix.sentinel == 0 && v.mix.unexplained == 0);
        // Without the later frame among the candidates the same bytes are unexplained.
        let v = classify(&Frame {
            geometry: G,
            gpu: &next,
            cpu: &cpu,
            sentinel: None,
            previous: &prev,
            later: &[],
            error: false,
        })
        .unwrap();
        assert_eq!(v.class, Class::Mismatch);
        // The older picture stays `previous` with later frames offered.
        assert_eq!(run_later(&old, None).class, Class::Previous);
    }

    #[test]
    fn each_class() {
        let cpu = frame(3);
        let old = frame(2);
        let older = frame(1);
        let sent = sentinel(0, 5, G.len());
        let prev: Vec<(usize, &[u8])> = vec![(2, &old), (1, &older)];

        let v = run(&cpu, &cpu, &sent, &prev, false);
        assert_eq!(
            (v.class, v.bytes_differing, v.psnr_db),
            (Class::Correct, 0, None)
        );

        let v = run(&sent, &cpu, &sent, &prev, false);
        assert_eq!(v.class, Class::Sentinel);
        assert_eq!(v.mix.sentinel, v.bytes_differing);

        let zero = vec![0u8; G.len()];
        let v = run(&zero, &cpu, &sent, &prev, false);
        assert_eq!(v.class, Class::Zero);
        assert_eq!(v.bytes_differing, G.len());

        let v = run(&older, &cpu, &sent, &prev, false);
        assert_eq!((v.class, v.previous_frame), (Class::Previous, Some(1)));

        // Half written: the first rows are the decoded frame, the rest still the sentinel.
        let mut torn = cpu.clone();
        torn[G.len() / 2..].copy_from_slice(&sent[G.len() / 2..]);
        let v = run(&torn, &cpu, &sent, &prev, false);
        assert_eq!(v.class, Class::Torn);
        assert!(v.mix.cpu >= G.len() / 2 && v.mix.sentinel > 0 && v.mix.unexplained == 0);
        assert_eq!(v.first_rows[0], "y:6");

        // The new frame over an older one's bytes, or over zeros: no early read can give this
        // (the sentinel covered the whole buffer), so it is stale, not torn.
        let mut stale = cpu.clone();
        stale[..G.len() / 2].copy_from_slice(&older[..G.len() / 2]);
        let v = run(&stale, &cpu, &sent, &prev, false);
        assert_eq!(v.class, Class::Stale);
        assert!(v.mix.previous > 0 && v.mix.unexplained == 0);
        let mut stale0 = cpu.clone();
        stale0[..G.width as usize * 2].fill(0);
        assert_eq!(run(&stale0, &cpu, &sent, &prev, false).class, Class::Stale);

        // The decoder wrote nothing: the CPU view is the sentinel. Whatever the GPU saw
        // (here the same sentinel), that is no ordering problem.
        let v = run(&sent, &sent, &sent, &prev, false);
        assert_eq!(v.class, Class::Unwritten);
        assert_eq!(
            run(&cpu, &sent, &sent, &prev, false).class,
            Class::Unwritten
        );

        // The decoder wrote the top half only: partial, even where the GPU agrees with the CPU.
        let mut part = cpu.clone();
        part[G.len() / 2..].copy_from_slice(&sent[G.len() / 2..]);
        let v = run(&part, &part, &sent, &prev, false);
        assert_eq!(v.class, Class::Partial);
        assert_eq!(v.cpu_unwritten, G.len() - G.len() / 2);
        assert_eq!(v.bytes_differing, 0);

        // The wrong stride: plausible pixels that match nothing known.
        let mut shifted = cpu.clone();
        shifted.rotate_left(3);
        let v = run(&shifted, &cpu, &sent, &prev, false);
        assert_eq!(v.class, Class::Mismatch);
        assert!(v.mix.unexplained > 0);

        // Flagged ERROR by the driver and sampled anyway: error, whatever the content.
        let v = run(&cpu, &cpu, &sent, &prev, true);
        assert_eq!((v.class, v.content), (Class::Error, Class::Correct));
        let v = run(&zero, &cpu, &sent, &prev, true);
        assert_eq!((v.class, v.content), (Class::Error, Class::Zero));
    }

    #[test]
    fn edge_cases() {
        let cpu = frame(3);
        let sent = sentinel(0, 5, G.len());
        // One byte off: not correct, with the exact offset, row and a finite PSNR.
        let mut one = cpu.clone();
        one[G.y_len() + 17] ^= 0x40;
        let v = run(&one, &cpu, &sent, &[], false);
        assert_eq!(v.class, Class::Mismatch);
        assert_eq!(v.bytes_differing, 1);
        assert_eq!(v.first_offsets, vec![G.y_len() + 17]);
        assert_eq!(v.first_rows, vec!["uv:1".to_string()]);
        let psnr = v.psnr_db.unwrap();
        // MSE = 64^2 / 192 bytes: 34.8 dB.
        assert!((psnr - 34.84).abs() < 0.01, "{psnr}");
        // The decoder never wrote the buffer: both views are the sentinel, which is no picture.
        assert_eq!(run(&sent, &sent, &sent, &[], false).class, Class::Unwritten);
        // A few CPU bytes that happen to equal the sentinel (shorter than a run) are no
        // unwritten area.
        let mut few = cpu.clone();
        few[40..40 + SENTINEL_RUN - 1].copy_from_slice(&sent[40..40 + SENTINEL_RUN - 1]);
        assert_eq!(run(&few, &few, &sent, &[], false).class, Class::Correct);
        // A decoded frame that really is all zero is correct, not zero.
        let zero = vec![0u8; G.len()];
        assert_eq!(run(&zero, &zero, &sent, &[], false).class, Class::Correct);
        // Identical consecutive frames: equal to the CPU view wins over "previous".
        assert_eq!(
            run(&cpu, &cpu, &sent, &[(2, &cpu)], false).class,
            Class::Correct
        );
        // Sentinel with some zero bytes (a partly zeroed buffer): the zeros cannot come from an
        // early read, so stale, not torn, sentinel or zero.
        let mut part = sent.clone();
        part[..G.width as usize].fill(0);
        assert_eq!(run(&part, &cpu, &sent, &[], false).class, Class::Stale);
        // No sentinel known (first frame of a synthetic run): a random frame is a mismatch.
        let v = classify(&Frame {
            geometry: G,
            gpu: &sent,
            cpu: &cpu,
            sentinel: None,
            previous: &[],
            later: &[],
            error: false,
        })
        .unwrap();
        assert_eq!(v.class, Class::Mismatch);
        // Wrong sizes are an error, not a panic.
        let short = vec![0u8; 3];
        assert!(classify(&Frame {
            geometry: G,
            gpu: &short,
            cpu: &cpu,
            sentinel: None,
            previous: &[],
            later: &[],
            error: false
        })
        .is_err());
    }

    #[test]
    fn sentinels_are_unique_and_never_zero() {
        let a = sentinel(0, 0, 4096);
        let b = sentinel(0, 1, 4096);
        let c = sentinel(1, 0, 4096);
        assert!(a.iter().all(|&x| x != 0));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        // Byte-level collisions between two sentinels are about 1/255, not systematic.
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same < 64, "{same}");
    }

    #[test]
    fn pack_removes_stride_padding() {
        let g = Geometry {
            width: 4,
            height: 2,
        };
        // stride 6, chroma at 16.
        let raw: Vec<u8> = (0..22).collect();
        let p = pack_nv12(&raw, g, 6, 16).unwrap();
        assert_eq!(p, vec![0, 1, 2, 3, 6, 7, 8, 9, 16, 17, 18, 19]);
        assert!(pack_nv12(&raw[..18], g, 6, 16).is_none());
        assert!(pack_nv12(&raw, g, 3, 16).is_none());
    }

    #[test]
    fn counts() {
        let mut c = Counts::default();
        c.add(Class::Torn);
        c.add(Class::Torn);
        c.add(Class::Correct);
        assert_eq!(
            (c.get(Class::Torn), c.get(Class::Zero), c.total()),
            (2, 0, 3)
        );
    }
}
