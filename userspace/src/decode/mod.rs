//! The stateless H.264 decoder loop over the media request API, as ffmpeg's v4l2-request hwaccel
//! drives hantro for mpv, with per-frame observations of the CAPTURE dma-buf's fences and its
//! CPU view.
//!
//! Only v4l2r's ioctl layer is used (its high-level decoder is stateful only): S_FMT, REQBUFS,
//! EXPBUF, QBUF with a request fd, request-scoped S_EXT_CTRLS with the typed stateless H.264
//! controls, MEDIA_IOC_REQUEST_ALLOC / MEDIA_REQUEST_IOC_QUEUE / _REINIT.
//!
//! Per picture, in decode order:
//! 1. a free CAPTURE buffer (its previous picture was output and is no reference any more);
//! 2. [`FrameHook::before_qbuf`], CAPTURE QBUF, then the dma-buf's write fences are looked at
//!    (before the request is queued: visl runs the first job synchronously inside the
//!    request-queue call);
//! 3. the bitstream into an OUTPUT buffer, the controls into its request, OUTPUT QBUF with the
//!    request fd, request queue ([`FrameHook::queued`]); slice-based: one request per slice, all
//!    but the last with V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF;
//! 4. up to `in_flight` requests stay queued; the oldest frame is completed by poll(POLLIN) on its
//!    dma-buf (timed), DQBUF, the CPU view read through the dma-buf's mmap with
//!    DMA_BUF_IOCTL_SYNC, [`FrameHook::dequeued`].
//!
//! The files: `session.rs` is the request-API session (the device and its media device, the
//! formats, the buffers, streaming, CAPTURE QBUF/DQBUF); `requests.rs` its OUTPUT buffers and
//! their requests (the bitstream, the controls, the queue thread); `frames.rs` the bookkeeping
//! of one decode (which CAPTURE buffer holds which picture, what is in flight, the fences seen
//! after QBUF, the frame records in output order); `capture.rs`, `hook.rs` and `options.rs` the
//! public types.

mod capture;
mod frames;
mod hook;
mod options;
mod requests;
mod session;

pub use crate::layout::Nv12Layout;
pub use capture::{capture_flags, capture_sync_file, BufferHandle, CaptureBuffer};
pub use hook::{FrameHook, NoHook};
pub use options::{DecodeMode, DecodeOptions, DecoderArgs};

use crate::h264::{self, Stream};
use crate::probe;
use crate::report::{self, DecodeReport};
use anyhow::{anyhow, bail, Context, Result};
use session::Session;
use std::path::Path;
use std::time::Instant;

/// The OUTPUT timestamp (ns) of decode-order picture `i`: DECODE_PARAMS.dpb[].reference_ts of
/// the pictures that reference it. Microsecond steps: V4L2 timestamps are timevals.
pub fn timestamp_ns(i: usize) -> u64 {
    (i as u64 + 1) * 1000
}

/// Decodes `input` on a stateless H.264 decoder, calling `hook` around every frame.
pub fn decode(
    input: &Path,
    opts: &DecodeOptions,
    hook: &mut dyn FrameHook,
) -> Result<DecodeReport> {
    // The input first: bad input must fail before any device is touched.
    let meta =
        std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", input.display());
    }
    let data = std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
    let stream = h264::parse(&data).map_err(|e| anyhow!("{}: {e}", input.display()))?;
    if stream.pictures.is_empty() {
        bail!("{}: no pictures in the stream", input.display());
    }

    let (node, media) = match (&opts.device, &opts.media) {
        (Some(d), m) => {
            let n = probe::check_h264_decoder(d)?;
            let m = match m {
                Some(m) => m.clone(),
                None => probe::media_for_video(d).ok_or_else(|| {
                    anyhow!(
                        "{}: no media device has it in its graph (pass --media /dev/mediaN)",
                        d.display()
                    )
                })?,
            };
            (n, m)
        }
        (None, Some(_)) => bail!("--media needs --device"),
        (None, None) => probe::find_h264_decoder()?,
    };
    let mut dec = Session::open(&node, &media, &stream, opts)?;
    let t0 = Instant::now();
    let frames = frames::run(&mut dec, &stream, opts, hook);
    let wall = t0.elapsed();
    let stop = dec.stop();
    let frames = frames?;
    stop?;
    let mut display_order: Vec<usize> = Vec::new();
    let mut by_out: Vec<&report::FrameRecord> = frames.iter().collect();
    by_out.sort_by_key(|r| r.output_position);
    display_order.extend(by_out.iter().map(|r| r.decode_index));
    let display_order_ok = display_order_ok(&stream, &frames);
    let summary = report::Summary {
        frames: frames.len(),
        errors: frames.iter().filter(|r| r.error).count(),
        fences_present: frames.iter().filter(|r| r.fence_after_qbuf.present).count(),
        fences_pending: frames.iter().filter(|r| r.fence_after_qbuf.pending).count(),
        fences_pending_vb2_resv: frames
            .iter()
            .filter(|r| {
                r.fence_after_qbuf.pending
                    && r.fence_after_qbuf.driver.as_deref() == Some("vb2_resv")
            })
            .count(),
        readable_after_queue: frames.iter().filter(|r| r.readable_after_queue).count(),
        qbuf_to_dqbuf_us: report::Stats::of(frames.iter().map(|r| r.qbuf_to_dqbuf_us)),
        poll_block_us: report::Stats::of(frames.iter().map(|r| r.poll_block_us)),
        request_queue_us: report::Stats::of(frames.iter().map(|r| r.request_queue_us)),
        dqbuf_wait_us: report::Stats::of(frames.iter().map(|r| r.dqbuf_wait_us)),
        display_order_ok,
        wall_ms: wall.as_millis() as u64,
        fps: frames.len() as f64 / wall.as_secs_f64().max(1e-9),
    };
    Ok(DecodeReport {
        schema: report::SCHEMA,
        stream: report::StreamInfo {
            path: input.display().to_string(),
            bytes: data.len() as u64,
            profile_idc: stream.profile_idc,
            profile: stream.profile_name().to_string(),
            level_idc: stream.level_idc,
            coded_width: stream.coded_width,
            coded_height: stream.coded_height,
            visible_width: stream.visible_width,
            visible_height: stream.visible_height,
            pictures: stream.pictures.len(),
            max_live: stream.max_live,
        },
        device: report::DeviceInfo {
            video: node.path.clone(),
            media: media.display().to_string(),
            driver: node.driver.clone(),
            card: node.card.clone(),
            bus_info: node.bus_info.clone(),
        },
        format: report::FormatInfo {
            requests_in_flight: dec.max_in_flight,
            ..dec.format.clone()
        },
        vb2_resv: dec.module.info.clone(),
        frames,
        display_order,
        summary,
    })
}

/// The output order checked against the picture order counts, independently of the DPB output
/// process (h264/refs.rs) that produced it: every frame output exactly once, and in increasing
/// (period, POC), where a period starts at each IDR or MMCO 5 picture (all earlier pictures are
/// output before it; its own POC counts as the lowest of its period).
fn display_order_ok(stream: &Stream, frames: &[report::FrameRecord]) -> bool {
    let mut period = 0u32;
    let mut keys: Vec<(u32, i64)> = Vec::with_capacity(frames.len());
    for (i, p) in stream.pictures.iter().take(frames.len()).enumerate() {
        if i > 0 && (p.idr || p.mmco5) {
            period += 1;
        }
        keys.push((period, if p.mmco5 { i64::MIN } else { i64::from(p.poc) }));
    }
    let outs: Vec<(usize, (u32, i64))> = frames
        .iter()
        .map(|r| {
            (
                r.output_position,
                keys.get(r.decode_index).copied().unwrap_or_default(),
            )
        })
        .collect();
    order_ok(&outs)
}

/// (output position, sort key) per frame: the positions are 0..n, each once, and the keys
/// increase with them.
fn order_ok(outs: &[(usize, (u32, i64))]) -> bool {
    let mut by_pos: Vec<Option<(u32, i64)>> = vec![None; outs.len()];
    for &(pos, key) in outs {
        match by_pos.get_mut(pos) {
            Some(slot @ None) => *slot = Some(key),
            _ => return false,
        }
    }
    by_pos.windows(2).all(|w| w[0] < w[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_checked_against_the_pocs() {
        // I0 P1(poc 6) B2(poc 2) B3(poc 4), then an IDR: output I0 B2 B3 P1 IDR4.
        let key = |period, poc| (period, i64::from(poc));
        let good = [
            (0, key(0, 0)),
            (3, key(0, 6)),
            (1, key(0, 2)),
            (2, key(0, 4)),
            (4, key(1, 0)),
        ];
        assert!(order_ok(&good));
        // P1 output before B2: POCs out of order.
        let mut bad = good;
        bad[1].0 = 1;
        bad[2].0 = 3;
        assert!(!order_ok(&bad));
        // A frame output twice, or never (usize::MAX), or a position past the end.
        let mut twice = good;
        twice[4].0 = 3;
        assert!(!order_ok(&twice));
        let mut never = good;
        never[4].0 = usize::MAX;
        assert!(!order_ok(&never));
        // The IDR's POC 0 is after the earlier period's POC 6.
        assert!(order_ok(&[(0, key(0, 6)), (1, key(1, 0))]));
        assert!(!order_ok(&[(1, key(0, 6)), (0, key(1, 0))]));
    }
}
