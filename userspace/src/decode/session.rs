//! The request-API session with a stateless H.264 decoder: the video node and its media
//! device, the decode mode and start code the driver offers, the OUTPUT (H264_SLICE) and CAPTURE
//! (NV12) formats, the buffers (CAPTURE exported once with EXPBUF), streaming, and CAPTURE
//! QBUF/DQBUF. The OUTPUT side (bitstream, controls, requests) is in requests.rs.

use super::options::{DecodeMode, DecodeOptions};
use super::requests::{self, OutputSlot};
use super::{timestamp_ns, CaptureBuffer, Nv12Layout};
use crate::h264::Stream;
use crate::kmod::ModuleGuard;
use crate::probe;
use crate::report;
use crate::request_queue::QueueThread;
use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use v4l2r::bindings;
use v4l2r::controls::codec::H264Sps;
use v4l2r::controls::SafeExtControl;
use v4l2r::ioctl::{self, CtrlWhich, ExpbufFlags, QBufPlane, QBuffer};
use v4l2r::memory::{MemoryType, MmapHandle};
use v4l2r::{PixelFormat, QueueType};

pub(super) const OUT_Q: QueueType = QueueType::VideoOutputMplane;
pub(super) const CAP_Q: QueueType = QueueType::VideoCaptureMplane;
const FMT_H264_SLICE: PixelFormat = PixelFormat::from_fourcc(b"S264");
const FMT_NV12: PixelFormat = PixelFormat::from_fourcc(b"NV12");
const MODE_SLICE: u32 =
    bindings::v4l2_stateless_h264_decode_mode_V4L2_STATELESS_H264_DECODE_MODE_SLICE_BASED;
const MODE_FRAME: u32 =
    bindings::v4l2_stateless_h264_decode_mode_V4L2_STATELESS_H264_DECODE_MODE_FRAME_BASED;
const SC_NONE: u32 = bindings::v4l2_stateless_h264_start_code_V4L2_STATELESS_H264_START_CODE_NONE;
const SC_ANNEX_B: u32 =
    bindings::v4l2_stateless_h264_start_code_V4L2_STATELESS_H264_START_CODE_ANNEX_B;

/// One decoder opened for one stream: formats set, buffers allocated and exported, streaming.
/// Dropping it stops streaming, frees the buffers and detaches the module (if it attached it).
pub(super) struct Session {
    pub(super) dev: File,
    media: File,
    pub(super) video: String,
    pub(super) mode: DecodeMode,
    pub(super) annex_b: bool,
    pub(super) hold: bool,
    /// [`DecodeOptions::wait_committed`].
    pub(super) wait_committed: bool,
    /// [`DecodeOptions::queue_after_sample`], and the gates of the requests handed over for
    /// the current picture (opened after its `queued` hook).
    pub(super) queue_after_sample: Option<Duration>,
    pub(super) gates: Vec<std::sync::mpsc::Sender<()>>,
    pub(super) outputs: Vec<OutputSlot>,
    pub(super) out_size: usize,
    pub(super) captures: Vec<CaptureBuffer>,
    pub(super) format: report::FormatInfo,
    pub(super) queue_thread: Option<QueueThread>,
    /// Time spent in MEDIA_REQUEST_IOC_QUEUE per picture (filled by acks in async mode).
    pub(super) queue_times: std::collections::HashMap<usize, Duration>,
    /// Most OUTPUT buffers (requests) queued and not yet dequeued at once, as measured.
    pub(super) max_in_flight: usize,
    /// Declared last: detaches after the buffers are gone.
    pub(super) module: ModuleGuard,
    streaming: bool,
}

/// What DQBUF CAPTURE returned for one picture, and how long it took.
pub(super) struct Dequeued {
    pub(super) sequence: u32,
    pub(super) timestamp_ns: u64,
    /// V4L2_BUF_FLAG_ERROR.
    pub(super) error: bool,
    /// Just after DQBUF returned.
    pub(super) at: Instant,
    /// The DQBUF ioctl alone.
    pub(super) dqbuf_ns: u64,
    /// From the dma-buf's poll(POLLIN) being done to DQBUF returning.
    pub(super) wait: Duration,
}

impl Session {
    /// Lets the queue thread queue the requests held for the picture just sampled.
    pub(super) fn open_gates(&mut self) {
        for g in self.gates.drain(..) {
            let _ = g.send(());
        }
    }

    pub(super) fn open(
        node: &probe::VideoNode,
        media_path: &Path,
        stream: &Stream,
        opts: &DecodeOptions,
    ) -> Result<Session> {
        let video = node.path.clone();
        let mut dev = crate::v4l2::open(&video)?;
        let media = File::options()
            .read(true)
            .write(true)
            .open(media_path)
            .with_context(|| format!("cannot open {}", media_path.display()))?;
        // Attach before any buffer exists (and so before the EXPBUFs).
        let module = ModuleGuard::setup(&dev, opts.mode)?;

        // Decode mode and start code: what the driver offers.
        let (modes, mode_names) = menu_names(&dev, probe::CID_H264_DECODE_MODE);
        let (codes, code_names) = menu_names(&dev, probe::CID_H264_START_CODE);
        let offers = |v: &[(u32, String)], x: u32| v.iter().any(|(i, _)| *i == x);
        let mode = match opts.decode_mode {
            Some(DecodeMode::Frame) if !offers(&modes, MODE_FRAME) => bail!(
                "{video} ({}) does not offer frame-based decoding (offers: {})",
                node.driver,
                mode_names.join(", ")
            ),
            Some(DecodeMode::Slice) if !offers(&modes, MODE_SLICE) => bail!(
                "{video} ({}) does not offer slice-based decoding (offers: {})",
                node.driver,
                mode_names.join(", ")
            ),
            Some(m) => m,
            None if offers(&modes, MODE_FRAME) => DecodeMode::Frame,
            None if offers(&modes, MODE_SLICE) => DecodeMode::Slice,
            None if modes.is_empty() => bail!(
                "{video} ({}) has no V4L2_CID_STATELESS_H264_DECODE_MODE control",
                node.driver
            ),
            None => bail!(
                "{video} ({}) offers no known H.264 decode mode ({})",
                node.driver,
                mode_names.join(", ")
            ),
        };
        let annex_b = if offers(&codes, SC_ANNEX_B) {
            true
        } else if offers(&codes, SC_NONE) {
            false
        } else {
            bail!(
                "{video} ({}) offers no known H.264 start code mode ({})",
                node.driver,
                code_names.join(", ")
            )
        };
        let multi_slice = stream.pictures.iter().any(|p| p.slices.len() > 1);
        if mode == DecodeMode::Frame && !annex_b && multi_slice {
            bail!(
                "{video} ({}) offers frame-based decoding without start codes only, which cannot delimit the slices of a multi-slice picture",
                node.driver
            );
        }
        let hold = mode == DecodeMode::Slice && multi_slice;
        if hold && !node.hold_capture_buf {
            bail!(
                "{video} ({}): slice-based decoding of multi-slice pictures needs V4L2_BUF_CAP_SUPPORTS_M2M_HOLD_CAPTURE_BUF, which its OUTPUT queue lacks",
                node.driver
            );
        }
        if !node.requests {
            bail!(
                "{video} ({}): its OUTPUT queue does not support requests",
                node.driver
            );
        }
        ioctl::s_ctrl(
            &dev,
            probe::CID_H264_DECODE_MODE,
            if mode == DecodeMode::Frame {
                MODE_FRAME
            } else {
                MODE_SLICE
            } as i32,
        )
        .map_err(|e| anyhow!("{video}: set H264_DECODE_MODE: {e}"))?;
        ioctl::s_ctrl(
            &dev,
            probe::CID_H264_START_CODE,
            if annex_b { SC_ANNEX_B } else { SC_NONE } as i32,
        )
        .map_err(|e| anyhow!("{video}: set H264_START_CODE: {e}"))?;

        // OUTPUT: H264_SLICE at the coded size, big enough for the largest picture (or slice).
        let sc = if annex_b { 3 } else { 0 };
        let need = stream
            .pictures
            .iter()
            .map(|p| {
                let sizes = p.slices.iter().map(|s| s.nal().len() + sc);
                if mode == DecodeMode::Frame {
                    sizes.sum::<usize>()
                } else {
                    sizes.max().unwrap_or(0)
                }
            })
            .max()
            .unwrap_or(0);
        let want = (need + 4096).max(1 << 20) as u32;
        let out_fmt = v4l2r::Format {
            width: stream.coded_width,
            height: stream.coded_height,
            pixelformat: FMT_H264_SLICE,
            plane_fmt: vec![v4l2r::PlaneLayout {
                sizeimage: want,
                bytesperline: 0,
            }],
        };
        let got: v4l2r::Format = ioctl::s_fmt(&mut dev, (OUT_Q, &out_fmt)).map_err(|e| {
            anyhow!(
                "{video}: S_FMT OUTPUT H264_SLICE {}x{}: {e}",
                stream.coded_width,
                stream.coded_height
            )
        })?;
        if got.pixelformat != FMT_H264_SLICE {
            bail!(
                "{video} ({}) refused OUTPUT format H264_SLICE (gave {})",
                node.driver,
                fourcc(got.pixelformat)
            );
        }
        if got.width != stream.coded_width || got.height != stream.coded_height {
            bail!(
                "{video} ({}) cannot decode {}x{} (OUTPUT format became {}x{})",
                node.driver,
                stream.coded_width,
                stream.coded_height,
                got.width,
                got.height
            );
        }
        let out_size = got.plane_fmt.first().map(|p| p.sizeimage).unwrap_or(0) as usize;
        if out_size < need {
            bail!("{video}: OUTPUT buffers of {out_size} bytes cannot hold the largest {} ({need} bytes)", if mode == DecodeMode::Frame { "picture" } else { "slice" });
        }

        // The SPS first: drivers derive the CAPTURE formats from it (bit depth, size).
        let first = &stream.pictures[0];
        let c0 = first.v4l2_controls(stream, timestamp_ns);
        let mut sps = SafeExtControl::<H264Sps>::from(c0.sps);
        ioctl::s_ext_ctrls(&dev, CtrlWhich::Current, &mut sps)
            .map_err(|e| anyhow!("{video}: S_EXT_CTRLS SPS: {e:?}"))?;

        // CAPTURE: single-planar NV12 at the driver's alignment.
        let cap_fmts: Vec<PixelFormat> = ioctl::FormatIterator::new(&dev, CAP_Q)
            .map(|f| f.pixelformat)
            .collect();
        if !cap_fmts.contains(&FMT_NV12) {
            bail!(
                "{video} ({}) does not offer NV12 on CAPTURE for this stream (offers: {})",
                node.driver,
                cap_fmts
                    .iter()
                    .map(|f| fourcc(*f))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let cur: v4l2r::Format =
            ioctl::g_fmt(&dev, CAP_Q).map_err(|e| anyhow!("{video}: G_FMT CAPTURE: {e}"))?;
        let want_cap = v4l2r::Format {
            width: cur.width.max(stream.coded_width),
            height: cur.height.max(stream.coded_height),
            pixelformat: FMT_NV12,
            plane_fmt: vec![],
        };
        let cap: v4l2r::Format = ioctl::s_fmt(&mut dev, (CAP_Q, &want_cap))
            .map_err(|e| anyhow!("{video}: S_FMT CAPTURE NV12: {e}"))?;
        if cap.pixelformat != FMT_NV12 || cap.plane_fmt.len() != 1 {
            bail!(
                "{video} ({}): CAPTURE format is {} with {} planes; only single-planar NV12 is supported",
                node.driver,
                fourcc(cap.pixelformat),
                cap.plane_fmt.len()
            );
        }
        let p = cap.plane_fmt[0].clone();
        if cap.width < stream.coded_width || cap.height < stream.coded_height {
            bail!(
                "{video}: CAPTURE {}x{} is smaller than the stream's {}x{}",
                cap.width,
                cap.height,
                stream.coded_width,
                stream.coded_height
            );
        }
        let stride = p.bytesperline;
        let uv_offset = stride * cap.height;
        if stride < cap.width || (p.sizeimage as u64) < uv_offset as u64 * 3 / 2 {
            bail!("{video}: CAPTURE NV12 layout is inconsistent: {}x{}, bytesperline {stride}, sizeimage {}", cap.width, cap.height, p.sizeimage);
        }
        let layout = Nv12Layout {
            width: cap.width,
            height: cap.height,
            visible_width: stream.visible_width,
            visible_height: stream.visible_height,
            stride,
            uv_offset,
            size: p.sizeimage,
            modifier: 0,
        };

        // Buffers. OUTPUT: one per request in flight. CAPTURE: the stream's live pictures plus
        // the frames in flight.
        let in_flight = opts.in_flight.max(2);
        let rb: bindings::v4l2_requestbuffers = ioctl::reqbufs(
            &dev,
            OUT_Q,
            MemoryType::Mmap,
            in_flight as u32,
            ioctl::MemoryConsistency::empty(),
        )
        .map_err(|e| anyhow!("{video}: REQBUFS OUTPUT({in_flight}): {e}"))?;
        if (rb.count as usize) < 2 {
            bail!(
                "{video}: only {} OUTPUT buffers granted; two requests in flight need 2",
                rb.count
            );
        }
        let outputs = requests::output_slots(&dev, &media, media_path, &video, rb.count)?;
        let want_caps = (stream.max_live + in_flight + 1) as u32;
        let rb: bindings::v4l2_requestbuffers = ioctl::reqbufs(
            &dev,
            CAP_Q,
            MemoryType::Mmap,
            want_caps,
            ioctl::MemoryConsistency::empty(),
        )
        .map_err(|e| anyhow!("{video}: REQBUFS CAPTURE({want_caps}): {e}"))?;
        if (rb.count as usize) < stream.max_live + 1 {
            bail!(
                "{video}: {} CAPTURE buffers granted, the stream needs {}",
                rb.count,
                stream.max_live + 1
            );
        }
        let mut captures = Vec::new();
        for i in 0..rb.count {
            // Exported once and kept, as ffmpeg's v4l2-request hwaccel does.
            let fd = ioctl::expbuf::<File>(
                &dev,
                CAP_Q,
                i as usize,
                0,
                ExpbufFlags::RDWR | ExpbufFlags::CLOEXEC,
            )
            .map_err(|e| anyhow!("{video}: EXPBUF CAPTURE {i}: {e}"))?;
            let dup = dev.try_clone().context("dup of the decoder fd")?;
            captures.push(CaptureBuffer::new(i, fd, layout, dup)?);
        }
        let format = report::FormatInfo {
            decode_mode: if mode == DecodeMode::Frame {
                "frame"
            } else {
                "slice"
            }
            .into(),
            start_code: if annex_b { "annex-b" } else { "none" }.into(),
            hold_capture_buf: hold,
            decode_modes_offered: mode_names,
            start_codes_offered: code_names,
            output_fourcc: fourcc(FMT_H264_SLICE),
            output_sizeimage: out_size as u32,
            output_buffers: outputs.len() as u32,
            capture_fourcc: fourcc(FMT_NV12),
            capture: layout,
            capture_buffers: captures.len() as u32,
            requests_in_flight: outputs.len(),
        };
        ioctl::streamon(&dev, OUT_Q).map_err(|e| anyhow!("{video}: STREAMON OUTPUT: {e}"))?;
        ioctl::streamon(&dev, CAP_Q).map_err(|e| anyhow!("{video}: STREAMON CAPTURE: {e}"))?;
        Ok(Session {
            dev,
            media,
            video,
            mode,
            annex_b,
            hold,
            wait_committed: opts.wait_committed,
            queue_after_sample: opts.queue_after_sample,
            gates: Vec::new(),
            outputs,
            out_size,
            captures,
            format,
            queue_thread: if opts.async_queue {
                Some(QueueThread::spawn()?)
            } else {
                None
            },
            queue_times: Default::default(),
            max_in_flight: 0,
            module,
            streaming: true,
        })
    }

    pub(super) fn stop(&mut self) -> Result<()> {
        if !self.streaming {
            return Ok(());
        }
        self.streaming = false;
        let a = ioctl::streamoff(&self.dev, OUT_Q)
            .map_err(|e| anyhow!("{}: STREAMOFF OUTPUT: {e}", self.video));
        let b = ioctl::streamoff(&self.dev, CAP_Q)
            .map_err(|e| anyhow!("{}: STREAMOFF CAPTURE: {e}", self.video));
        a.and(b)
    }

    /// CAPTURE QBUF of buffer `buf`: when it was queued and how long the ioctl took.
    pub(super) fn qbuf_capture(&self, buf: usize) -> Result<(Instant, u64)> {
        let cb = &self.captures[buf];
        let mut q = QBuffer::<MmapHandle>::new(CAP_Q, cb.index);
        q.planes.push(QBufPlane::new_from_handle(&MmapHandle, 0));
        let qbuf_at = Instant::now();
        ioctl::qbuf::<_, ()>(&self.dev, q)
            .map_err(|e| anyhow!("{}: QBUF CAPTURE {}: {e}", self.video, cb.index))?;
        Ok((qbuf_at, qbuf_at.elapsed().as_nanos() as u64))
    }

    /// poll(POLLIN) on buffer `buf`'s dma-buf until it is readable or `timeout` passed, in short
    /// steps when a queue thread may report a failed request meanwhile: how long it blocked,
    /// and whether it became readable.
    pub(super) fn wait_readable(
        &mut self,
        buf: usize,
        timeout: Duration,
    ) -> Result<(Duration, bool)> {
        let t0 = Instant::now();
        let step = if self.queue_thread.is_some() {
            Duration::from_millis(20)
        } else {
            timeout
        };
        loop {
            self.drain_acks()?;
            let left = timeout.saturating_sub(t0.elapsed());
            let (_, r) = sys::poll_in(self.captures[buf].dmabuf(), step.min(left))?;
            if r || t0.elapsed() >= timeout {
                return Ok((t0.elapsed(), r));
            }
        }
    }

    /// Waits (poll POLLIN on the device) for picture `frame`, which is in CAPTURE buffer `buf`,
    /// and dequeues it: it must be that buffer, with that picture's timestamp.
    pub(super) fn dqbuf_capture(
        &self,
        buf: usize,
        frame: usize,
        timeout: Duration,
    ) -> Result<Dequeued> {
        let cb = &self.captures[buf];
        let polled_at = Instant::now();
        if !wait_fd(self.dev.as_fd(), nix::poll::PollFlags::POLLIN, timeout)? {
            bail!(
                "{}: picture {} was not decoded within {:?}",
                self.video,
                frame,
                timeout
            );
        }
        let dqbuf_at = Instant::now();
        let b: ioctl::V4l2Buffer = ioctl::dqbuf(&self.dev, CAP_Q)
            .map_err(|e| anyhow!("{}: DQBUF CAPTURE: {e} ({})", self.video, errno_last()))?;
        let dqbuf_ns = dqbuf_at.elapsed().as_nanos() as u64;
        let at = Instant::now();
        let wait = at.duration_since(polled_at);
        if b.index() != cb.index {
            bail!(
                "{}: DQBUF CAPTURE gave buffer {}, expected {} (picture {})",
                self.video,
                b.index(),
                cb.index,
                frame
            );
        }
        let tv = b.timestamp();
        let ts = tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
        if ts != timestamp_ns(frame) {
            bail!(
                "{}: CAPTURE buffer {} came back with timestamp {ts} ns, picture {} has {}",
                self.video,
                cb.index,
                frame,
                timestamp_ns(frame)
            );
        }
        Ok(Dequeued {
            sequence: b.sequence(),
            timestamp_ns: ts,
            error: b.has_error(),
            at,
            dqbuf_ns,
            wait,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = &self.media;
    }
}

pub(super) fn errno_last() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

/// poll() on `fd` for `events`; Ok(false) on timeout.
pub(super) fn wait_fd(
    fd: BorrowedFd<'_>,
    events: nix::poll::PollFlags,
    timeout: Duration,
) -> Result<bool> {
    let mut fds = [nix::poll::PollFd::new(fd, events)];
    let ms = nix::poll::PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(nix::poll::PollTimeout::MAX);
    let n = nix::poll::poll(&mut fds, ms).context("poll")?;
    Ok(n > 0)
}

fn fourcc(p: PixelFormat) -> String {
    p.to_string().trim().to_string()
}

fn menu_names(dev: &File, id: u32) -> (Vec<(u32, String)>, Vec<String>) {
    match probe::menu(dev, id) {
        Some((items, _)) => {
            let names = items.iter().map(|(_, n)| n.clone()).collect();
            (items, names)
        }
        None => (vec![], vec![]),
    }
}
