//! The decode side of the mpv + KWin pipeline: what ffmpeg's v4l2-request hwaccel and mpv do
//! with the CAPTURE buffers (shared/research/consumers.md). Frames reach mpv after DQBUF, in
//! display order; mpv commits each to the compositor and drops it on wl_buffer.release; the
//! buffer then goes back to ffmpeg's pool, which is last-in-first-out, so the buffer just
//! released is the next one decoded into ([`Pool`]). Nothing is written into a buffer by the CPU
//! except once, before its first use (the sentinel that shows a read of a never-decoded buffer):
//! a CPU write would wait for the GPU's fences and hide the very hazard this measures.

use super::compositor::ToCompositor;
use super::pool::Pool;
use crate::classify::{self};
use crate::decode::{CaptureBuffer, FrameHook, Nv12Layout};
use crate::sampler::{geometry, write_sentinel};
use crate::truth::FrameMd5;
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How long the decoder waits for the compositor to release a buffer when it has nothing else.
const RELEASE_WAIT: Duration = Duration::from_secs(30);

/// One decoded frame as the CPU saw it after DQBUF.
pub struct Decoded {
    pub buffer: u32,
    pub queueing: u64,
    pub error: bool,
    /// Packed NV12 (the compared area).
    pub cpu: Vec<u8>,
    /// The sentinel written before this queueing (first use of the buffer only), packed.
    pub sentinel: Option<Vec<u8>>,
    pub md5: String,
    pub decode_ok: Option<bool>,
}

pub struct DecodeSide {
    to_compositor: Sender<ToCompositor>,
    released: Receiver<u32>,
    pub pool: Pool,
    /// Decode indices in display order, and the next position to show.
    order: Vec<usize>,
    next: usize,
    /// Dequeued and not shown yet (waiting for their display turn), by decode index.
    waiting: HashMap<usize, u32>,
    handles: HashMap<usize, crate::decode::BufferHandle>,
    queueings: HashMap<u32, u64>,
    sentinels: HashMap<usize, Vec<u8>>,
    pub decoded: HashMap<usize, Decoded>,
    pub layout: Option<Nv12Layout>,
    pub buffers: BTreeSet<u32>,
    truth: Option<FrameMd5>,
    display_of: Vec<usize>,
}

impl DecodeSide {
    pub fn new(
        to_compositor: Sender<ToCompositor>,
        released: Receiver<u32>,
        order: Vec<usize>,
        truth: Option<FrameMd5>,
        display_of: Vec<usize>,
    ) -> DecodeSide {
        DecodeSide {
            to_compositor,
            released,
            pool: Pool::new(false),
            order,
            next: 0,
            waiting: HashMap::new(),
            handles: HashMap::new(),
            queueings: HashMap::new(),
            sentinels: HashMap::new(),
            decoded: HashMap::new(),
            layout: None,
            buffers: BTreeSet::new(),
            truth,
            display_of,
        }
    }

    pub fn display_index(&self, frame: usize) -> usize {
        self.display_of.get(frame).copied().unwrap_or(frame)
    }

    /// Ends the compositor's input: it finishes its reads and releases what it holds.
    pub fn end(&self) {
        let _ = self.to_compositor.send(ToCompositor::End);
    }

    fn take_releases(&mut self) {
        while let Ok(b) = self.released.try_recv() {
            self.pool.released(b as usize);
        }
    }

    /// Hands the frames whose display turn has come to the compositor (mpv's commit).
    fn show_ready(&mut self) -> Result<()> {
        while let Some(&frame) = self.order.get(self.next) {
            let Some(buf) = self.waiting.remove(&frame) else {
                break;
            };
            let h = self
                .handles
                .remove(&frame)
                .ok_or_else(|| anyhow!("frame {frame}: no buffer handle"))?;
            self.pool.attached(buf as usize);
            self.to_compositor
                .send(ToCompositor::Frame { frame, buf: h })
                .map_err(|_| anyhow!("the compositor thread ended early"))?;
            self.next += 1;
        }
        Ok(())
    }
}

impl FrameHook for DecodeSide {
    fn before_qbuf(&mut self, frame: usize, buf: &CaptureBuffer) -> Result<()> {
        let q = self.queueings.entry(buf.index).or_insert(0);
        let queueing = *q;
        *q += 1;
        if queueing == 0 {
            self.sentinels.insert(frame, write_sentinel(buf, 0)?);
        }
        Ok(())
    }

    fn dequeued(
        &mut self,
        frame: usize,
        buf: &CaptureBuffer,
        error: bool,
        cpu: &[u8],
    ) -> Result<()> {
        let l = buf.layout;
        self.layout = Some(l);
        self.buffers.insert(buf.index);
        let packed = classify::pack_nv12(cpu, geometry(&l), l.stride, l.uv_offset)
            .ok_or_else(|| anyhow!("CAPTURE buffer {} is too short for its layout", buf.index))?;
        let md5 = crate::report::checksums(cpu, &l).md5;
        let display_index = self.display_of.get(frame).copied().unwrap_or(frame);
        let decode_ok = self.truth.as_ref().and_then(|t| {
            let size = crate::truth::visible_size(l.visible_width, l.visible_height);
            t.check(display_index, size, &md5)
        });
        self.decoded.insert(
            frame,
            Decoded {
                buffer: buf.index,
                queueing: self.queueings.get(&buf.index).copied().unwrap_or(1) - 1,
                error,
                cpu: packed,
                sentinel: self.sentinels.remove(&frame),
                md5,
                decode_ok,
            },
        );
        self.pool.pending(buf.index as usize);
        self.waiting.insert(frame, buf.index);
        self.handles.insert(frame, buf.handle()?);
        self.show_ready()
    }

    fn choose_capture(
        &mut self,
        _frame: usize,
        free: &[usize],
        idle: bool,
    ) -> Result<Option<usize>> {
        let t0 = Instant::now();
        loop {
            self.take_releases();
            let waiting: BTreeSet<usize> = self.waiting.values().map(|&b| b as usize).collect();
            if let Some(b) = self.pool.choose(free, |b| !waiting.contains(&b)) {
                return Ok(Some(b));
            }
            if !idle {
                return Ok(None);
            }
            let left = RELEASE_WAIT.saturating_sub(t0.elapsed());
            match self.released.recv_timeout(left) {
                Ok(b) => self.pool.released(b as usize),
                Err(RecvTimeoutError::Timeout) => bail!(
                    "the compositor released none of the CAPTURE buffers {free:?} within {} s",
                    RELEASE_WAIT.as_secs()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("the compositor thread ended early")
                }
            }
        }
    }
}
