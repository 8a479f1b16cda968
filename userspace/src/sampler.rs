//! The per-frame GPU sampling and classification of `vb2-resv verify`: before CAPTURE QBUF the
//! buffer is filled through its CPU mapping with a sentinel unique to (buffer, queueing); the GPU
//! samples the buffer right after the request is queued (`--sample-at queued`, optionally after
//! a consumer's wait: [`crate::consumer_wait`]) or right after DQBUF; the readback is classified
//! ([`crate::classify`]) against the CPU view after DQBUF, the sentinel, zero, the last frames and
//! each buffer's own earlier contents; the CPU view is checked against the ground truth
//! ([`crate::truth`]); and every sample carries the buffer's V4L2 state around it (the busy proof).

use crate::classify::{self, Class, Geometry, Verdict};
use crate::consumer_wait::{self, ConsumerWait, WaitRecord};
use crate::decode::{CaptureBuffer, Nv12Layout};
use crate::gpu::{self, DmaBufNv12, Gpu, Images, ImportPath, RgbDiff};
use crate::truth::FrameMd5;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SampleAt {
    /// Right after DQBUF (the V4L2 contract; what mpv + KWin do), before the CPU copy.
    Dqbuf,
    /// Right after the request was handed to the queue thread, before DQBUF: the job may not be
    /// committed yet (the decoder may not even have it), or be running.
    Queued,
    /// Right after the driver took the request (QUERYBUF: the OUTPUT buffer QUEUED or DONE): the
    /// job is committed, whatever a module arms at commit exists; the decoder may be writing.
    Committed,
    /// After DQBUF and after the CPU copy of the buffer (the order before issue 12: the 3 MB
    /// copy delays the GPU read and can hide a race right after DQBUF).
    DqbufCpuFirst,
}

impl SampleAt {
    pub fn name(self) -> &'static str {
        match self {
            SampleAt::Dqbuf => "dqbuf",
            SampleAt::Queued => "queued",
            SampleAt::Committed => "committed",
            SampleAt::DqbufCpuFirst => "dqbuf-cpu-first",
        }
    }
}

/// What the CAPTURE buffer looked like around one GPU sample: the proof that the decoder was
/// (or was not) still working on it when the GPU read it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SampleProof {
    /// VIDIOC_QUERYBUF flags just before the latch and GPU read, and just after the read (None:
    /// not a V4L2 buffer).
    pub flags_before: Option<u32>,
    pub flags_after: Option<u32>,
    /// V4L2_BUF_FLAG_QUEUED without V4L2_BUF_FLAG_DONE before the read began: the driver still
    /// owned the buffer, i.e. the decode had provably not finished.
    pub busy_before: Option<bool>,
    /// The same, after the read ended: the decode had not finished even then.
    pub busy_after: Option<bool>,
    /// The dma-buf's write fences just before the read (EXPORT_SYNC_FILE(READ)): some pending,
    /// and the driver of the first pending one.
    pub fence_pending: bool,
    pub fence_driver: Option<String>,
    /// What the consumer's wait (`--consumer-wait`) did: how long it waited, whether the buffer
    /// was busy, whether it waited on a sync_file (None: no wait).
    pub wait: Option<WaitRecord>,
    /// How long the GPU sample (import when not cached, draw, readback) took: a GPU that waits
    /// for the fence blocks here.
    pub gpu_read_us: u64,
}

const FLAG_QUEUED: u32 = v4l2r::bindings::V4L2_BUF_FLAG_QUEUED;
const FLAG_DONE: u32 = v4l2r::bindings::V4L2_BUF_FLAG_DONE;

pub(crate) fn busy(flags: Option<u32>) -> Option<bool> {
    flags.map(|f| f & FLAG_QUEUED != 0 && f & FLAG_DONE == 0)
}

/// A CAPTURE-like NV12 dma-buf the sampler can fill and import.
pub trait NvBuffer {
    fn index(&self) -> u32;
    fn fd(&self) -> BorrowedFd<'_>;
    fn layout(&self) -> Nv12Layout;
    fn write(&self, f: &mut dyn FnMut(&mut [u8])) -> Result<()>;
    /// VIDIOC_QUERYBUF's flags, for a V4L2 buffer.
    fn v4l2_flags(&self) -> Option<u32> {
        None
    }
    /// The module's sync_file of this buffer (`--consumer-wait explicit`).
    fn module_sync_file(&self) -> Result<std::os::fd::OwnedFd> {
        bail!(
            "buffer {} is not a V4L2 buffer: no explicit sync_file",
            self.index()
        )
    }
}

impl NvBuffer for CaptureBuffer {
    fn index(&self) -> u32 {
        self.index
    }
    fn fd(&self) -> BorrowedFd<'_> {
        self.dmabuf().as_fd()
    }
    fn layout(&self) -> Nv12Layout {
        self.layout
    }
    fn write(&self, f: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        self.write_cpu(|b| f(b))
    }
    fn v4l2_flags(&self) -> Option<u32> {
        CaptureBuffer::v4l2_flags(self).ok()
    }
    fn module_sync_file(&self) -> Result<std::os::fd::OwnedFd> {
        CaptureBuffer::module_sync_file(self)
    }
}

/// What a compositor samples: the visible picture (mpv sizes its wl_buffer to it, and KWin
/// imports the planes at that size with the decoder's stride and chroma offset), rounded up to
/// even. The coded area's extra rows and columns are neither imported nor compared.
pub(crate) fn geometry(l: &Nv12Layout) -> Geometry {
    Geometry {
        width: l.visible_width.min(l.width).div_ceil(2) * 2,
        height: l.visible_height.min(l.height).div_ceil(2) * 2,
    }
}

fn pack(raw: &[u8], l: &Nv12Layout) -> Result<Vec<u8>> {
    classify::pack_nv12(raw, geometry(l), l.stride, l.uv_offset).ok_or_else(|| {
        anyhow!(
            "NV12 buffer of {} bytes is too short for {}x{} stride {} chroma at {}",
            raw.len(),
            l.width,
            l.height,
            l.stride,
            l.uv_offset
        )
    })
}

/// Fills `buf` through its CPU mapping with the sentinel of queueing `q` (unique per buffer and
/// queueing) and returns that sentinel packed, as the classifier compares it.
pub(crate) fn write_sentinel(buf: &dyn NvBuffer, q: u64) -> Result<Vec<u8>> {
    let l = buf.layout();
    let raw = classify::sentinel(buf.index(), q, l.size as usize);
    buf.write(&mut |b: &mut [u8]| {
        let n = b.len().min(raw.len());
        b[..n].copy_from_slice(&raw[..n]);
    })
    .with_context(|| format!("sentinel fill of CAPTURE buffer {}", buf.index()))?;
    pack(&raw, &l)
}

/// One import path's verdict on one frame.
#[derive(Clone, Debug, Serialize)]
pub struct PathVerdict {
    pub import: ImportPath,
    #[serde(flatten)]
    pub verdict: Verdict,
    pub rgb: Vec<RgbDiff>,
}

/// One frame as the GPU saw it.
#[derive(Clone, Debug, Serialize)]
pub struct FrameResult {
    pub frame: usize,
    /// Position in display order (the ground truth's line).
    pub display_index: usize,
    /// MD5 of the visible NV12 picture in the CPU view after DQBUF (ffmpeg's framemd5 way).
    pub md5: String,
    /// The CPU view equals ffmpeg's decode of this frame; None when there is no ground truth
    /// (see the arm's `ground_truth`).
    pub decode_ok: Option<bool>,
    pub buffer: u32,
    /// How many times this buffer had been queued before (the sentinel's seed).
    pub queueing: u64,
    pub error_flag: bool,
    /// The buffer's state around the GPU sample.
    pub sample: SampleProof,
    pub paths: Vec<PathVerdict>,
}

struct Pending {
    buffer: u32,
    queueing: u64,
    sentinel: Vec<u8>,
    samples: Vec<(ImportPath, gpu::Sample)>,
    proof: SampleProof,
}

pub struct Shot {
    pub(crate) frame: usize,
    pub(crate) class: Class,
    pub(crate) cpu: Vec<u8>,
    pub(crate) gpu: Vec<u8>,
    final_: bool,
}

impl Shot {
    /// A frame chosen for the triptych by a caller that chose it itself.
    pub(crate) fn new(frame: usize, class: Class, cpu: Vec<u8>, gpu: Vec<u8>) -> Shot {
        Shot {
            frame,
            class,
            cpu,
            gpu,
            final_: true,
        }
    }
}

/// The per-frame GPU sampling and classification (the FrameHook of `verify`).
pub struct Sampler<'g> {
    gpu: &'g mut Gpu,
    paths: Vec<ImportPath>,
    images: Images,
    sample_at: SampleAt,
    wait: ConsumerWait,
    rgb: bool,
    chosen: Option<usize>,
    /// Synthetic fault that changes the import (uv-offset).
    pub(crate) uv_shift: bool,
    queueings: HashMap<u32, u64>,
    pending: HashMap<usize, Pending>,
    previous: VecDeque<(usize, Vec<u8>)>,
    /// Each buffer's last CPU view (decode index, packed bytes): the pool's reuse distance can
    /// be longer than PREVIOUS_KEPT frames.
    history: HashMap<u32, (usize, Vec<u8>)>,
    pub(crate) buffers: BTreeSet<u32>,
    pub(crate) layout: Option<Nv12Layout>,
    pub(crate) frames: Vec<FrameResult>,
    pub(crate) shots: HashMap<ImportPath, Shot>,
    /// The reference MD5s, and each decode-order frame's display index.
    pub(crate) truth: Option<FrameMd5>,
    pub(crate) display_of: Vec<usize>,
}

const PREVIOUS_KEPT: usize = 8;

impl<'g> Sampler<'g> {
    pub(crate) fn new(
        gpu: &'g mut Gpu,
        paths: Vec<ImportPath>,
        images: Images,
        sample_at: SampleAt,
        wait: ConsumerWait,
        rgb: bool,
        chosen: Option<usize>,
    ) -> Self {
        Sampler {
            gpu,
            paths,
            images,
            sample_at,
            wait,
            rgb,
            chosen,
            uv_shift: false,
            queueings: HashMap::new(),
            pending: HashMap::new(),
            previous: VecDeque::new(),
            history: HashMap::new(),
            buffers: BTreeSet::new(),
            layout: None,
            frames: Vec::new(),
            shots: HashMap::new(),
            truth: None,
            display_of: Vec::new(),
        }
    }

    /// Fills the buffer with its sentinel for this queueing.
    pub fn before_qbuf(&mut self, frame: usize, buf: &dyn NvBuffer) -> Result<()> {
        let q = self.queueings.entry(buf.index()).or_insert(0);
        let queueing = *q;
        *q += 1;
        let sentinel = write_sentinel(buf, queueing)?;
        self.pending.insert(
            frame,
            Pending {
                buffer: buf.index(),
                queueing,
                sentinel,
                samples: Vec::new(),
                proof: SampleProof::default(),
            },
        );
        Ok(())
    }

    fn sample_now(&mut self, frame: usize, buf: &dyn NvBuffer) -> Result<()> {
        let l = buf.layout();
        self.layout = Some(l);
        self.buffers.insert(buf.index());
        let g = geometry(&l);
        let view = DmaBufNv12 {
            key: buf.index(),
            fd: buf.fd(),
            width: g.width,
            height: g.height,
            stride: l.stride,
            uv_offset: if self.uv_shift {
                l.uv_offset.saturating_sub(l.stride)
            } else {
                l.uv_offset
            },
            modifier: l.modifier,
        };
        let mut proof = SampleProof {
            flags_before: buf.v4l2_flags(),
            ..Default::default()
        };
        proof.busy_before = busy(proof.flags_before);
        let (fences, _sf) = crate::sys::write_fences(&buf.fd())?;
        if let Some(f) = fences.iter().find(|f| f.pending()) {
            proof.fence_pending = true;
            proof.fence_driver = Some(f.driver.clone());
        }
        if self.wait != ConsumerWait::None {
            let w = consumer_wait::wait(self.wait, buf.fd(), || buf.module_sync_file())
                .with_context(|| format!("frame {frame}: --consumer-wait {}", self.wait.name()))?;
            proof.wait = Some(w);
        }
        let t = Instant::now();
        let mut samples = Vec::new();
        for &p in &self.paths {
            let s = self
                .gpu
                .sample(p, self.images, &view, self.rgb)
                .with_context(|| format!("frame {frame}, {} import", p.name()))?;
            samples.push((p, s));
        }
        proof.gpu_read_us = t.elapsed().as_micros() as u64;
        proof.flags_after = buf.v4l2_flags();
        proof.busy_after = busy(proof.flags_after);
        let pend = self
            .pending
            .get_mut(&frame)
            .ok_or_else(|| anyhow!("frame {frame} sampled before it was queued"))?;
        if pend.samples.is_empty() {
            pend.samples = samples;
            pend.proof = proof;
        }
        Ok(())
    }

    pub fn queued(&mut self, frame: usize, buf: &dyn NvBuffer) -> Result<()> {
        let done = self
            .pending
            .get(&frame)
            .is_some_and(|p| !p.samples.is_empty());
        if matches!(self.sample_at, SampleAt::Queued | SampleAt::Committed) && !done {
            self.sample_now(frame, buf)?;
        }
        Ok(())
    }

    /// Right after DQBUF, before anything reads the buffer through the CPU.
    pub fn dqbuf_done(&mut self, frame: usize, buf: &dyn NvBuffer) -> Result<()> {
        if self.sample_at == SampleAt::Dqbuf {
            self.sample_now(frame, buf)?;
        }
        Ok(())
    }

    pub fn dequeued(
        &mut self,
        frame: usize,
        buf: &dyn NvBuffer,
        error: bool,
        cpu_raw: &[u8],
    ) -> Result<()> {
        if self.sample_at == SampleAt::DqbufCpuFirst {
            self.sample_now(frame, buf)?;
        }
        let l = buf.layout();
        let g = geometry(&l);
        let cpu = pack(cpu_raw, &l)?;
        let pend = self
            .pending
            .remove(&frame)
            .ok_or_else(|| anyhow!("frame {frame} dequeued but never queued"))?;
        if pend.samples.is_empty() {
            bail!("frame {frame} was never sampled (the decoder did not call the queued hook)");
        }
        let mut prev: Vec<(usize, &[u8])> = self
            .previous
            .iter()
            .map(|(i, v)| (*i, v.as_slice()))
            .collect();
        let mut own: Vec<&(usize, Vec<u8>)> = self
            .history
            .values()
            .filter(|(i, _)| !self.previous.iter().any(|(j, _)| j == i))
            .collect();
        // This buffer's own earlier contents first, then the other buffers', newest first.
        own.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        if let Some(k) = own
            .iter()
            .position(|(i, _)| self.history.get(&pend.buffer).is_some_and(|(j, _)| j == i))
        {
            let mine = own.remove(k);
            own.insert(0, mine);
        }
        prev.extend(own.iter().map(|(i, v)| (*i, v.as_slice())));
        let mut paths = Vec::new();
        for (p, s) in &pend.samples {
            let verdict = classify::classify(&classify::Frame {
                geometry: g,
                gpu: &s.nv12,
                cpu: &cpu,
                sentinel: Some(&pend.sentinel),
                previous: &prev,
                later: &[],
                error,
            })
            .map_err(|e| anyhow!("frame {frame}: {e}"))?;
            let rgb = s
                .rgb
                .iter()
                .map(|(m, v)| gpu::compare_rgb(v, &gpu::nv12_to_rgb(&cpu, g, *m), *m))
                .collect();
            let take = match self.shots.get(p) {
                _ if self.chosen == Some(frame) => true,
                None => true,
                Some(s) => !s.final_ && self.chosen.is_none() && verdict.failed(),
            };
            if take {
                self.shots.insert(
                    *p,
                    Shot {
                        frame,
                        class: verdict.class,
                        cpu: cpu.clone(),
                        gpu: s.nv12.clone(),
                        final_: self.chosen == Some(frame)
                            || (self.chosen.is_none() && verdict.failed()),
                    },
                );
            }
            paths.push(PathVerdict {
                import: *p,
                verdict,
                rgb,
            });
        }
        let display_index = self.display_of.get(frame).copied().unwrap_or(frame);
        let md5 = crate::report::checksums(cpu_raw, &l).md5;
        let decode_ok = self.truth.as_ref().and_then(|t| {
            let size = crate::truth::visible_size(l.visible_width, l.visible_height);
            t.check(display_index, size, &md5)
        });
        self.frames.push(FrameResult {
            frame,
            display_index,
            md5,
            decode_ok,
            buffer: pend.buffer,
            queueing: pend.queueing,
            error_flag: error,
            sample: pend.proof,
            paths,
        });
        self.history.insert(pend.buffer, (frame, cpu.clone()));
        self.previous.push_front((frame, cpu));
        self.previous.truncate(PREVIOUS_KEPT);
        Ok(())
    }
}
