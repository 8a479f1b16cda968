//! The bookkeeping of one decode, in decode order: which CAPTURE buffer holds which picture and
//! when it may be reused, the frames in flight, the fences seen after CAPTURE QBUF, the frame
//! records and their output positions (display order, as far as every earlier picture is
//! decoded). The device work is the session's (session.rs, requests.rs).

use super::session::Session;
use super::{timestamp_ns, DecodeOptions, FrameHook};
use crate::h264::{Picture, Stream};
use crate::report;
use crate::sys;
use anyhow::{anyhow, bail, Result};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A frame whose CAPTURE buffer is queued.
struct InFlight {
    frame: usize,
    buf: usize,
    qbuf_at: Instant,
    qbuf_ns: u64,
    fence: report::FenceAfterQbuf,
    requests: usize,
    bytes: usize,
    readable_after_queue: bool,
}

/// The report's view of a CAPTURE dma-buf's write fences, looked at right after QBUF.
fn fence_record(f: &[sys::FenceInfo]) -> report::FenceAfterQbuf {
    // With no fence at all the kernel hands out its signaled stub; and since 7.x a signaled
    // fence reports "detached-driver" instead of its names. Neither can be told apart from
    // the other, so a signaled fence counts as present only if it still has a driver name.
    let stubby =
        |x: &sys::FenceInfo| !x.pending() && (x.driver == "stub" || x.driver == "detached-driver");
    let real: Vec<&sys::FenceInfo> = f.iter().filter(|x| !stubby(x)).collect();
    let pending = real.iter().find(|x| x.pending());
    let first = pending.copied().or_else(|| real.first().copied());
    report::FenceAfterQbuf {
        present: !real.is_empty(),
        pending: pending.is_some(),
        driver: first.map(|x| x.driver.clone()),
        timeline: first.map(|x| x.timeline.clone()),
        fences: f
            .iter()
            .map(|x| report::Fence {
                driver: x.driver.clone(),
                timeline: x.timeline.clone(),
                status: x.status,
            })
            .collect(),
    }
}

/// The frames of one decode: which picture each CAPTURE buffer holds, the frames in flight
/// (oldest first), the records and how far they are output.
struct Frames {
    /// Pictures to decode (a prefix of the stream, decode order).
    n: usize,
    /// Output order restricted to the decoded prefix.
    order: Vec<usize>,
    /// Which picture each CAPTURE buffer holds, and when it can be reused.
    holder: Vec<Option<usize>>,
    inflight: VecDeque<InFlight>,
    records: Vec<Option<report::FrameRecord>>,
    /// The start of the decode loop (the records' `dqbuf_at_ns` count from it).
    t0: Instant,
    /// Pictures dequeued (decode order).
    done: usize,
    out_pos: usize,
    /// Index into the output order.
    next_out: usize,
}

impl Frames {
    fn new(stream: &Stream, n: usize, buffers: usize) -> Frames {
        Frames {
            n,
            order: stream.output_order_upto(Some(n)),
            holder: vec![None; buffers],
            inflight: VecDeque::new(),
            records: (0..n).map(|_| None).collect(),
            t0: Instant::now(),
            done: 0,
            out_pos: 0,
            next_out: 0,
        }
    }

    /// The CAPTURE buffers a picture may go into: unused, or holding a picture that is
    /// dequeued, output, and no later picture still references.
    fn free(&self, stream: &Stream) -> Vec<usize> {
        let release_at = |p: &Picture| p.last_use.max(p.output_after).max(p.decode_index);
        (0..self.holder.len())
            .filter(|&b| match self.holder[b] {
                None => true,
                Some(d) => {
                    let p = &stream.pictures[d];
                    self.done > release_at(p).min(self.n - 1)
                        && self.records[d]
                            .as_ref()
                            .is_some_and(|r| r.output_position != usize::MAX)
                }
            })
            .collect()
    }

    /// Completes the oldest frame in flight and outputs what that allows.
    fn complete_oldest(
        &mut self,
        s: &mut Session,
        stream: &Stream,
        timeout: Duration,
        hook: &mut dyn FrameHook,
    ) -> Result<()> {
        complete(
            s,
            stream,
            self.t0,
            &mut self.inflight,
            &mut self.records,
            &mut self.done,
            timeout,
            hook,
        )?;
        emit(
            &self.order,
            &mut self.next_out,
            &mut self.out_pos,
            self.done,
            &mut self.records,
        );
        Ok(())
    }

    /// The records in decode order, once every picture is decoded and output.
    fn finish(self) -> Result<Vec<report::FrameRecord>> {
        let recs: Vec<report::FrameRecord> = self.records.into_iter().flatten().collect();
        if recs.len() != self.n {
            bail!("{} of {} frames were decoded", recs.len(), self.n);
        }
        if let Some(r) = recs.iter().find(|r| r.output_position == usize::MAX) {
            bail!(
                "picture {} (display {}) was decoded but never output",
                r.decode_index,
                r.display_index
            );
        }
        Ok(recs)
    }
}

/// Decodes the first `opts.frames` pictures of `stream`, calling `hook` around each frame: the
/// records in decode order.
pub(super) fn run(
    s: &mut Session,
    stream: &Stream,
    opts: &DecodeOptions,
    hook: &mut dyn FrameHook,
) -> Result<Vec<report::FrameRecord>> {
    let n = opts.frames.unwrap_or(usize::MAX).min(stream.pictures.len());
    let timeout = opts.frame_timeout;
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(n as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} frames {per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(s.video.clone());
        Some(b)
    } else {
        None
    };
    let mut f = Frames::new(stream, n, s.captures.len());
    for i in 0..n {
        let pic = &stream.pictures[i];
        // 1. A free CAPTURE buffer.
        let buf = loop {
            let free = f.free(stream);
            if let Some(b) = hook.choose_capture(i, &free, f.inflight.is_empty())? {
                if !free.contains(&b) {
                    bail!("picture {i}: CAPTURE buffer {b} is not free (free: {free:?})");
                }
                break b;
            }
            if f.inflight.is_empty() {
                bail!(
                    "no free CAPTURE buffer for picture {i} with nothing in flight ({} buffers, stream max_live {})",
                    s.captures.len(),
                    stream.max_live
                );
            }
            f.complete_oldest(s, stream, timeout, hook)?;
        };
        f.holder[buf] = Some(i);
        // Completing frames while waiting for OUTPUT slots keeps two or more in flight.
        while f.inflight.len() >= s.outputs.len() {
            f.complete_oldest(s, stream, timeout, hook)?;
        }

        // 2. CAPTURE QBUF, then the fences, before the request is queued.
        hook.before_qbuf(i, &s.captures[buf])?;
        let (qbuf_at, qbuf_ns) = s.qbuf_capture(buf)?;
        let (fences, _sf) = sys::write_fences(s.captures[buf].dmabuf())?;
        let fence = fence_record(&fences);

        // 3. The request(s).
        let (requests, bytes) = s.queue_picture(stream, pic, i, timeout)?;
        // Would a reader that looks now (a compositor handed the buffer at this point)
        // find the dma-buf readable? A zero-timeout poll(POLLIN).
        let (_, readable_after_queue) = sys::poll_in(s.captures[buf].dmabuf(), Duration::ZERO)?;
        let sampled = hook.queued(i, &s.captures[buf]);
        s.open_gates();
        sampled?;
        f.inflight.push_back(InFlight {
            frame: i,
            buf,
            qbuf_at,
            qbuf_ns,
            fence,
            requests,
            bytes,
            readable_after_queue,
        });
        if let Some(b) = &bar {
            b.set_position(f.done as u64);
        }
    }
    while !f.inflight.is_empty() {
        f.complete_oldest(s, stream, timeout, hook)?;
        if let Some(b) = &bar {
            b.set_position(f.done as u64);
        }
    }
    s.reclaim_all(timeout)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    f.finish()
}

/// Marks decoded pictures as output, in display order, as far as they are all decoded.
fn emit(
    order: &[usize],
    next_out: &mut usize,
    out_pos: &mut usize,
    done: usize,
    records: &mut [Option<report::FrameRecord>],
) {
    while let Some(&d) = order.get(*next_out) {
        if d >= done {
            break;
        }
        if let Some(r) = records[d].as_mut() {
            r.output_position = *out_pos;
            *out_pos += 1;
        }
        *next_out += 1;
    }
}

/// Completes the oldest frame in flight: poll(POLLIN) on its dma-buf (timed), DQBUF, its
/// OUTPUT buffers back, the CPU view.
#[allow(clippy::too_many_arguments)]
fn complete(
    s: &mut Session,
    stream: &Stream,
    t0: Instant,
    inflight: &mut VecDeque<InFlight>,
    records: &mut [Option<report::FrameRecord>],
    done: &mut usize,
    timeout: Duration,
    hook: &mut dyn FrameHook,
) -> Result<()> {
    let f = inflight
        .pop_front()
        .ok_or_else(|| anyhow!("nothing in flight"))?;
    let (blocked, ready) = s.wait_readable(f.buf, timeout)?;
    let d = s.dqbuf_capture(f.buf, f.frame, timeout)?;
    let elapsed = d.at.duration_since(f.qbuf_at);
    let error = d.error;
    hook.dqbuf_done(f.frame, &s.captures[f.buf], error)?;
    // In async mode, the queue thread's answers for this picture (its request-queue time).
    let queue_time = s.queue_time(f.frame, timeout)?;
    let cb = &s.captures[f.buf];
    let cpu = cb.read_cpu()?;
    let checksums = report::checksums(&cpu, &cb.layout);
    hook.dequeued(f.frame, cb, error, &cpu)?;
    let pic = &stream.pictures[f.frame];
    let dpb: Vec<report::DpbEntry> = pic
        .dpb
        .iter()
        .enumerate()
        .map(|(k, r)| report::DpbEntry {
            index: k,
            decode_index: r.decode_index,
            reference_ts: timestamp_ns(r.decode_index),
            frame_num: r.frame_num,
            pic_num: r.pic_num,
            top_poc: r.top_poc,
            bottom_poc: r.bottom_poc,
            long_term: r.long_term,
        })
        .collect();
    let refs = |l: &[usize]| -> Vec<report::RefEntry> {
        l.iter()
            .map(|&k| {
                let r = pic.dpb.get(k);
                report::RefEntry {
                    dpb_index: k,
                    decode_index: r.map(|r| r.decode_index).unwrap_or(usize::MAX),
                    frame_num: r.map(|r| r.frame_num).unwrap_or(0),
                    poc: r.map(|r| r.top_poc.min(r.bottom_poc)).unwrap_or(0),
                }
            })
            .collect()
    };
    let ref_lists = pic
        .slices
        .iter()
        .map(|s| report::SliceRefs {
            slice_type: s.slice_type.to_string(),
            first_mb_in_slice: s.first_mb_in_slice,
            list0: refs(&s.ref_list0),
            list1: refs(&s.ref_list1),
        })
        .collect();
    records[f.frame] = Some(report::FrameRecord {
        decode_index: f.frame,
        display_index: pic.display_index,
        output_position: usize::MAX,
        buffer: cb.index,
        timestamp_ns: d.timestamp_ns,
        sequence: d.sequence,
        frame_num: pic.frame_num,
        idr: pic.idr,
        nal_ref_idc: pic.nal_ref_idc,
        poc: pic.poc,
        top_poc: pic.top_poc,
        bottom_poc: pic.bottom_poc,
        slice_types: pic.slice_types.iter().map(|t| t.to_string()).collect(),
        requests: f.requests,
        bitstream_bytes: f.bytes,
        request_queue_us: queue_time.as_micros() as u64,
        request_queue_ns: queue_time.as_nanos() as u64,
        capture_qbuf_ns: f.qbuf_ns,
        capture_dqbuf_ns: d.dqbuf_ns,
        dqbuf_at_ns: d.at.saturating_duration_since(t0).as_nanos() as u64,
        dpb,
        ref_lists,
        fence_after_qbuf: f.fence,
        qbuf_to_dqbuf_us: elapsed.as_micros() as u64,
        poll_block_us: blocked.as_micros() as u64,
        poll_ready: ready,
        readable_after_queue: f.readable_after_queue,
        dqbuf_wait_us: d.wait.as_micros() as u64,
        error,
        checksums,
    });
    *done += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Nv12Layout;

    fn fence(driver: &str, status: i32) -> sys::FenceInfo {
        sys::FenceInfo {
            timeline: format!("{driver}-tl"),
            driver: driver.into(),
            status,
            timestamp_ns: 0,
        }
    }

    #[test]
    fn fence_record_ignores_the_signaled_stub() {
        // No fence at all: the kernel's signaled stub, named "stub" or, since 7.x, like any
        // signaled fence, "detached-driver".
        for d in ["stub", "detached-driver"] {
            let r = fence_record(&[fence(d, 1)]);
            assert!(!r.present && !r.pending && r.driver.is_none(), "{d}");
            assert_eq!(r.fences.len(), 1);
        }
        let r = fence_record(&[fence("stub", 1), fence("vb2_resv", 0)]);
        assert!(r.present && r.pending);
        assert_eq!(r.driver.as_deref(), Some("vb2_resv"));
        assert_eq!(r.timeline.as_deref(), Some("vb2_resv-tl"));
        // Signaled but still named: present, not pending.
        let r = fence_record(&[fence("vgem", 1)]);
        assert!(r.present && !r.pending);
        // An error-signaled fence is not pending either.
        let r = fence_record(&[fence("vb2_resv", -5)]);
        assert!(r.present && !r.pending);
    }

    fn rec(d: usize) -> report::FrameRecord {
        report::FrameRecord {
            decode_index: d,
            display_index: 0,
            output_position: usize::MAX,
            buffer: 0,
            timestamp_ns: timestamp_ns(d),
            sequence: 0,
            frame_num: 0,
            idr: false,
            nal_ref_idc: 0,
            poc: 0,
            top_poc: 0,
            bottom_poc: 0,
            slice_types: vec![],
            requests: 1,
            bitstream_bytes: 0,
            request_queue_us: 0,
            request_queue_ns: 0,
            capture_qbuf_ns: 0,
            capture_dqbuf_ns: 0,
            dqbuf_at_ns: 0,
            dpb: vec![],
            ref_lists: vec![],
            fence_after_qbuf: fence_record(&[]),
            qbuf_to_dqbuf_us: 0,
            poll_block_us: 0,
            poll_ready: true,
            readable_after_queue: false,
            dqbuf_wait_us: 0,
            error: false,
            checksums: report::checksums(
                &[0; 6],
                &Nv12Layout {
                    width: 2,
                    height: 2,
                    visible_width: 2,
                    visible_height: 2,
                    stride: 2,
                    uv_offset: 4,
                    size: 6,
                    modifier: 0,
                },
            ),
        }
    }

    #[test]
    fn emit_outputs_in_display_order_once_all_earlier_are_decoded() {
        // I0 P1 B2 B3 in decode order, displayed I0 B2 B3 P1.
        let order = [0, 2, 3, 1];
        let mut records: Vec<Option<report::FrameRecord>> = vec![None; 4];
        let (mut next, mut pos) = (0, 0);
        let mut done = 0;
        let mut step = |done: usize, records: &mut Vec<Option<report::FrameRecord>>| {
            records[done - 1] = Some(rec(done - 1));
            emit(&order, &mut next, &mut pos, done, records);
        };
        done += 1;
        step(done, &mut records); // I0 decoded: output
        assert_eq!(records[0].as_ref().map(|r| r.output_position), Some(0));
        done += 1;
        step(done, &mut records); // P1 decoded: waits for B2, B3
        assert_eq!(
            records[1].as_ref().map(|r| r.output_position),
            Some(usize::MAX)
        );
        done += 1;
        step(done, &mut records); // B2: output
        done += 1;
        step(done, &mut records); // B3: output, then P1
        let pos: Vec<usize> = records
            .iter()
            .map(|r| r.as_ref().unwrap().output_position)
            .collect();
        assert_eq!(pos, vec![0, 3, 1, 2]);
    }
}
