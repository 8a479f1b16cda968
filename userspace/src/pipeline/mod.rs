//! `--pipeline`: how decoded frames travel from the decoder to the GPU.
//!
//! - `direct`: the verifier's own loop ([`crate::sampler`]): each frame sampled once, right after
//!   queueing or right after DQBUF, and read back at once;
//! - `mpv-kwin`: the pipeline the PineTab2 user runs: ffmpeg's v4l2-request hwaccel with its LIFO
//!   CAPTURE pool and mpv's dmabuf-wayland output on one side ([`decode_side`]), KWin with its
//!   wait, its EGLImage cache, its GPU read in flight and its early release on the other
//!   ([`compositor`]). It measures both hazards: forward (the GPU reads before the decoder has
//!   written) and reverse (the decoder writes while the GPU still reads: class `later`).

pub mod compositor;
pub mod decode_side;
pub mod pool;

use crate::classify::{self, Class};
use crate::consumer_wait::ConsumerWait;
use crate::decode::{self, DecodeOptions};
use crate::gpu::{GpuOptions, Images, ImportPath};
use crate::report::DecodeReport;
use crate::sampler::{busy, FrameResult, PathVerdict, SampleProof, Shot};
use crate::truth::FrameMd5;
use anyhow::{anyhow, Result};
use pool::PoolStats;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    /// Sample each frame once, right after queueing or DQBUF, read back at once.
    Direct,
    /// mpv (ffmpeg v4l2-request, LIFO pool) + KWin (wait, cached EGLImages, GPU read in flight,
    /// release before the read ends).
    MpvKwin,
}

impl Pipeline {
    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Direct => "direct",
            Pipeline::MpvKwin => "mpv-kwin",
        }
    }
}

/// The mpv + KWin arm's own figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineStats {
    /// How long each compositor GPU read stays in flight (ms).
    pub gpu_read_ms: u64,
    /// The pool between mpv and the decoder: frames presented, released, recaptured (queued
    /// into the decoder again after a release), LIFO order.
    pub pool: PoolStats,
    /// GPU reads whose buffer the compositor released before the read ended.
    pub released_in_flight: usize,
    /// Frames whose GPU view holds a later frame's bytes (`later`, or `torn` of later bytes).
    pub reverse: usize,
}

pub struct Run {
    pub decoder: DecodeReport,
    pub frames: Vec<FrameResult>,
    pub shots: Vec<Shot>,
    pub layout: Option<decode::Nv12Layout>,
    pub buffers: usize,
    pub images_created: usize,
    pub stats: PipelineStats,
}

pub struct MpvKwinArgs<'a> {
    pub input: &'a Path,
    pub decode: DecodeOptions,
    pub gpu: GpuOptions,
    pub wait: ConsumerWait,
    pub images: Images,
    pub gpu_read: Duration,
    pub truth: Option<FrameMd5>,
    pub display_of: Vec<usize>,
    /// The frame the triptych shows (default: the first that is not correct).
    pub chosen: Option<usize>,
}

/// Older and later candidates kept per frame.
const NEIGHBOURS: usize = 8;

/// The CPU views of the frames `order` visits, at most [`NEIGHBOURS`]: the first one decoded
/// into `buffer` leads (what that buffer held before, or was overwritten with next), then the
/// others in `order`.
fn neighbours(
    decoded: &HashMap<usize, decode_side::Decoded>,
    order: impl Iterator<Item = usize> + Clone,
    buffer: u32,
) -> Vec<(usize, &[u8])> {
    let frames = order.filter_map(|i| decoded.get(&i).map(|o| (i, o)));
    let own = frames.clone().find(|(_, o)| o.buffer == buffer);
    own.into_iter()
        .chain(frames.filter(|(i, _)| own.is_none_or(|(j, _)| j != *i)))
        .take(NEIGHBOURS)
        .map(|(i, o)| (i, o.cpu.as_slice()))
        .collect()
}

/// Runs the stream through the mpv + KWin pipeline and classifies every compositor read.
pub fn run_mpv_kwin(a: MpvKwinArgs<'_>) -> Result<Run> {
    let data =
        std::fs::read(a.input).map_err(|e| anyhow!("cannot read {}: {e}", a.input.display()))?;
    let stream = crate::h264::parse(&data).map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
    let order = stream.output_order_upto(a.decode.frames);
    let (rel_tx, rel_rx) = std::sync::mpsc::channel();
    let (to_comp, comp) = compositor::spawn(
        compositor::Options {
            gpu: a.gpu.clone(),
            wait: a.wait,
            images: a.images,
            gpu_read: a.gpu_read,
        },
        rel_tx,
    )?;
    let mut side = decode_side::DecodeSide::new(to_comp, rel_rx, order, a.truth, a.display_of);
    let decoded = decode::decode(a.input, &a.decode, &mut side);
    side.end();
    let outcome = comp
        .join()
        .map_err(|_| anyhow!("the compositor thread panicked"))?;
    // The compositor's failure first: a decoder that waited for a release it never got failed
    // because of it.
    let outcome = match (outcome, &decoded) {
        (Err(e), Err(d)) => return Err(e.context(format!("(the decoder then failed: {d:#})"))),
        (o, _) => o?,
    };
    let decoder = decoded?;

    let mut frames = Vec::new();
    let mut shots: Vec<Shot> = Vec::new();
    let mut stats = PipelineStats {
        gpu_read_ms: a.gpu_read.as_millis() as u64,
        pool: side.pool.stats.clone(),
        ..Default::default()
    };
    let Some(layout) = side.layout else {
        return Err(anyhow!("{}: no frame was decoded", a.input.display()));
    };
    let g = crate::sampler::geometry(&layout);
    let mut reads = outcome.reads;
    reads.sort_by_key(|r| r.frame);
    let last = side.decoded.keys().copied().max().unwrap_or(0);
    for r in &reads {
        let d = side
            .decoded
            .get(&r.frame)
            .ok_or_else(|| anyhow!("frame {} was read but never decoded", r.frame))?;
        // Older frames: this buffer's own last contents first, then the last frames; later
        // frames: what was decoded into this buffer next first, then the next frames.
        let previous = neighbours(&side.decoded, (0..r.frame).rev(), d.buffer);
        let later = neighbours(&side.decoded, r.frame + 1..=last, d.buffer);
        let verdict = classify::classify(&classify::Frame {
            geometry: g,
            gpu: &r.nv12,
            cpu: &d.cpu,
            sentinel: d.sentinel.as_deref(),
            previous: &previous,
            later: &later,
            error: d.error,
        })
        .map_err(|e| anyhow!("frame {}: {e}", r.frame))?;
        stats.released_in_flight += usize::from(r.released_before_end);
        if verdict.content == Class::Later
            || (verdict.content == Class::Torn && verdict.mix.later > 0)
        {
            stats.reverse += 1;
        }
        let take = match (a.chosen, shots.first()) {
            (Some(c), _) => c == r.frame,
            (None, None) => true,
            (None, Some(s)) => s.class == Class::Correct && verdict.failed(),
        };
        if take {
            shots.clear();
            shots.push(Shot::new(
                r.frame,
                verdict.class,
                d.cpu.clone(),
                r.nv12.clone(),
            ));
        }
        frames.push(FrameResult {
            frame: r.frame,
            display_index: side.display_index(r.frame),
            md5: d.md5.clone(),
            decode_ok: d.decode_ok,
            buffer: r.buffer,
            queueing: d.queueing,
            error_flag: d.error,
            sample: SampleProof {
                flags_before: r.flags_latch,
                flags_after: r.flags_end,
                busy_before: busy(r.flags_latch),
                busy_after: busy(r.flags_end),
                fence_pending: r.wait.busy,
                fence_driver: None,
                wait: Some(r.wait.clone()),
                gpu_read_us: r.in_flight_us,
            },
            paths: vec![PathVerdict {
                import: ImportPath::Kwin,
                verdict,
                rgb: Vec::new(),
            }],
        });
    }
    if frames.len() != side.decoded.len() {
        return Err(anyhow!(
            "the compositor read {} of {} decoded frames",
            frames.len(),
            side.decoded.len()
        ));
    }
    Ok(Run {
        decoder,
        frames,
        shots,
        layout: Some(layout),
        buffers: side.buffers.len(),
        images_created: outcome.images_created,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_put_the_buffers_own_frame_first() {
        let frame = |buffer: u32, n: u8| decode_side::Decoded {
            buffer,
            queueing: 0,
            error: false,
            cpu: vec![n],
            sentinel: None,
            md5: String::new(),
            decode_ok: None,
        };
        // Frames 0..12 in buffers 0, 1, 2, 0, 1, 2, ...
        let decoded: HashMap<usize, decode_side::Decoded> =
            (0..12).map(|i| (i, frame(i as u32 % 3, i as u8))).collect();
        let idx = |v: Vec<(usize, &[u8])>| v.into_iter().map(|(i, _)| i).collect::<Vec<_>>();
        // Before frame 7 (buffer 1): frame 4 (buffer 1) first, then 6, 5, 3, ... at most 8.
        assert_eq!(
            idx(neighbours(&decoded, (0..7).rev(), 1)),
            vec![4, 6, 5, 3, 2, 1, 0]
        );
        // After frame 3 (buffer 0): frame 6 (buffer 0) first, then 4, 5, 7, ..., 8 in all.
        assert_eq!(
            idx(neighbours(&decoded, 4..=11, 0)),
            vec![6, 4, 5, 7, 8, 9, 10, 11]
        );
        // No frame of that buffer: the order alone.
        assert_eq!(idx(neighbours(&decoded, 0..3, 7)), vec![0, 1, 2]);
        assert_eq!(neighbours(&decoded, 0..0, 0).len(), 0);
    }
}
