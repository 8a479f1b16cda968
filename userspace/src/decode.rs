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

use crate::h264::{self, Picture, Stream};
use crate::kmod::{Mode, ModuleGuard};
pub use crate::layout::Nv12Layout;
use crate::probe;
use crate::report::{self, DecodeReport};
use crate::request_queue::{QueueAck, QueueThread};
use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use v4l2r::bindings;
use v4l2r::controls::codec::{
    H264DecodeParams, H264Pps, H264PredWeights, H264ScalingMatrix, H264SliceParams, H264Sps,
};
use v4l2r::controls::{AsV4l2ControlSlice, SafeExtControl};
use v4l2r::ioctl::{self, BufferFlags, CtrlWhich, ExpbufFlags, QBufPlane, QBuffer, Request};
use v4l2r::memory::{MemoryType, MmapHandle};
use v4l2r::{PixelFormat, QueueType};

/// One CAPTURE buffer, exported once with EXPBUF and kept for the whole run (as ffmpeg does).
pub struct CaptureBuffer {
    pub index: u32,
    pub layout: Nv12Layout,
    map: sys::DmaBufMap,
    /// A dup of the decoder's fd, for QUERYBUF.
    dev: File,
}

impl CaptureBuffer {
    fn new(index: u32, dmabuf: File, layout: Nv12Layout, dev: File) -> Result<CaptureBuffer> {
        let what = format!("CAPTURE buffer {index}'s dma-buf");
        let map = sys::DmaBufMap::new(dmabuf, layout.size as usize, &what)?;
        Ok(CaptureBuffer {
            index,
            layout,
            map,
            dev,
        })
    }

    /// VIDIOC_QUERYBUF's flags now: V4L2_BUF_FLAG_QUEUED without V4L2_BUF_FLAG_DONE means the
    /// driver still owns the buffer (the decode has not finished).
    pub fn v4l2_flags(&self) -> Result<u32> {
        let q: ioctl::QueryBuffer = ioctl::querybuf(&self.dev, CAP_Q, self.index as usize)
            .map_err(|e| anyhow!("QUERYBUF CAPTURE {}: {e}", self.index))?;
        Ok(q.flags.bits())
    }

    /// The exported dma-buf.
    pub fn dmabuf(&self) -> &File {
        self.map.file()
    }

    /// The CPU view: DMA_BUF_IOCTL_SYNC START|READ, a copy of `size` bytes, END|READ.
    pub fn read_cpu(&self) -> Result<Vec<u8>> {
        self.map.read()
    }

    /// Writes through the CPU view: DMA_BUF_IOCTL_SYNC START|WRITE, `f`, END|WRITE.
    pub fn write_cpu(&self, f: impl FnOnce(&mut [u8])) -> Result<()> {
        self.map.access(sys::DMA_BUF_SYNC_WRITE, f)
    }
}

/// What the GPU half (issue 5) does around each frame.
pub trait FrameHook {
    /// Just before the CAPTURE QBUF of the buffer that will receive decode-order frame `frame`.
    fn before_qbuf(&mut self, _frame: usize, _buf: &CaptureBuffer) -> Result<()> {
        Ok(())
    }
    /// Just after the request of `frame` was queued (the driver may still be writing `buf`).
    fn queued(&mut self, _frame: usize, _buf: &CaptureBuffer) -> Result<()> {
        Ok(())
    }
    /// Just after DQBUF of `frame`, before anything reads the buffer through the CPU (a
    /// compositor never does: a sampler that looks here sees the buffer as it would).
    fn dqbuf_done(&mut self, _frame: usize, _buf: &CaptureBuffer, _error: bool) -> Result<()> {
        Ok(())
    }
    /// After [`FrameHook::dqbuf_done`] and the CPU copy; `error` = V4L2_BUF_FLAG_ERROR; `cpu` =
    /// the CPU view read after DQBUF.
    fn dequeued(
        &mut self,
        _frame: usize,
        _buf: &CaptureBuffer,
        _error: bool,
        _cpu: &[u8],
    ) -> Result<()> {
        Ok(())
    }
    /// Picks the CAPTURE buffer (index) for picture `frame` among those the decoder may reuse
    /// (`free`: output and no longer referenced, ascending). Ok(None): none of them yet (a
    /// consumer still holds them); the decoder then completes a frame in flight and asks again.
    /// With nothing in flight (`idle`) the hook must wait until it can answer, or fail.
    fn choose_capture(
        &mut self,
        _frame: usize,
        free: &[usize],
        _idle: bool,
    ) -> Result<Option<usize>> {
        Ok(free.first().copied())
    }
}

/// A hook that does nothing.
pub struct NoHook;
impl FrameHook for NoHook {}

/// Frame-based (one request per picture) or slice-based (one request per slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeMode {
    Frame,
    Slice,
}

impl DecodeMode {
    pub fn parse(s: &str) -> Option<DecodeMode> {
        match s {
            "frame" => Some(DecodeMode::Frame),
            "slice" => Some(DecodeMode::Slice),
            _ => None,
        }
    }
}

/// The decoder arguments that `decode` and `verify` share.
#[derive(clap::Args, Debug, Clone)]
pub struct DecoderArgs {
    /// The decoder's video node (found when absent).
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// The decoder's media device (found from the media graph when absent).
    #[arg(long)]
    pub media: Option<PathBuf>,
    /// Only the first N pictures (decode order).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Requests kept in flight (at least 2).
    #[arg(long, default_value_t = 3)]
    pub in_flight: usize,
    /// Queue the requests from a second thread: visl runs an idle device's job inside
    /// MEDIA_REQUEST_IOC_QUEUE, so without this a fence or frame looked at right after queueing
    /// is already done; with it visl decodes while this thread goes on, as hardware would.
    #[arg(long)]
    pub async_queue: bool,
}

impl DecoderArgs {
    /// Checks the arguments and turns them into decode options (the rest at their defaults).
    pub fn options(&self) -> Result<DecodeOptions> {
        if self.in_flight < 2 {
            bail!("--in-flight must be at least 2");
        }
        if self.frames == Some(0) {
            bail!("--frames must be at least 1");
        }
        Ok(DecodeOptions {
            device: self.device.clone(),
            media: self.media.clone(),
            frames: self.frames,
            in_flight: self.in_flight,
            async_queue: self.async_queue,
            ..Default::default()
        })
    }
}

#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// The decoder's video node; found when None.
    pub device: Option<PathBuf>,
    /// Its media device; found through the media graph when None.
    pub media: Option<PathBuf>,
    /// Decode only the first N pictures (decode order).
    pub frames: Option<usize>,
    /// Set the module's mode first (the module must be loaded).
    pub mode: Option<Mode>,
    /// Force a decode mode; None: frame-based when offered, else slice-based.
    pub decode_mode: Option<DecodeMode>,
    /// Requests kept queued at once (at least 2).
    pub in_flight: usize,
    /// Queue requests from a second thread: a driver that runs the job inside
    /// MEDIA_REQUEST_IOC_QUEUE when idle (visl) then decodes while this thread goes on, as a
    /// hardware decoder would; [`FrameHook::queued`] is then called once the request is handed
    /// to that thread.
    pub async_queue: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// How long to wait for one frame before giving up.
    pub frame_timeout: Duration,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            device: None,
            media: None,
            frames: None,
            mode: None,
            decode_mode: None,
            in_flight: 3,
            async_queue: false,
            progress: false,
            frame_timeout: Duration::from_secs(10),
        }
    }
}

/// The OUTPUT timestamp (ns) of decode-order picture `i`: DECODE_PARAMS.dpb[].reference_ts of
/// the pictures that reference it. Microsecond steps: V4L2 timestamps are timevals.
pub fn timestamp_ns(i: usize) -> u64 {
    (i as u64 + 1) * 1000
}

const FMT_H264_SLICE: PixelFormat = PixelFormat::from_fourcc(b"S264");
const FMT_NV12: PixelFormat = PixelFormat::from_fourcc(b"NV12");
const MODE_SLICE: u32 =
    bindings::v4l2_stateless_h264_decode_mode_V4L2_STATELESS_H264_DECODE_MODE_SLICE_BASED;
const MODE_FRAME: u32 =
    bindings::v4l2_stateless_h264_decode_mode_V4L2_STATELESS_H264_DECODE_MODE_FRAME_BASED;
const SC_NONE: u32 = bindings::v4l2_stateless_h264_start_code_V4L2_STATELESS_H264_START_CODE_NONE;
const SC_ANNEX_B: u32 =
    bindings::v4l2_stateless_h264_start_code_V4L2_STATELESS_H264_START_CODE_ANNEX_B;

/// The controls of one request, laid out as an array of v4l2_ext_control.
#[repr(C)]
struct FrameCtrls {
    sps: SafeExtControl<H264Sps>,
    pps: SafeExtControl<H264Pps>,
    sm: SafeExtControl<H264ScalingMatrix>,
    dp: SafeExtControl<H264DecodeParams>,
}

impl AsV4l2ControlSlice for &mut FrameCtrls {
    fn as_v4l2_control_slice(&mut self) -> &mut [bindings::v4l2_ext_control] {
        let p = (*self) as *mut FrameCtrls as *mut bindings::v4l2_ext_control;
        // SAFETY: FrameCtrls is repr(C) with four SafeExtControl fields, each a
        // repr(transparent) v4l2_ext_control (plus a zero-sized marker): an array of four.
        unsafe { std::slice::from_raw_parts_mut(p, 4) }
    }
}

/// One OUTPUT buffer with its mapping and its request.
struct OutputSlot {
    index: u32,
    map: ioctl::PlaneMapping,
    /// None while the queue thread has it.
    request: Option<Request>,
    busy: bool,
}

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

fn errno_last() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

/// poll() on `fd` for `events`; Ok(false) on timeout.
fn wait_fd(fd: BorrowedFd<'_>, events: nix::poll::PollFlags, timeout: Duration) -> Result<bool> {
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
    let mut dec = Decoder::open(&node, &media, &stream, opts)?;
    let t0 = Instant::now();
    let frames = dec.run(&stream, opts, hook);
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

struct Decoder {
    dev: File,
    media: File,
    video: String,
    mode: DecodeMode,
    annex_b: bool,
    hold: bool,
    outputs: Vec<OutputSlot>,
    out_size: usize,
    captures: Vec<CaptureBuffer>,
    format: report::FormatInfo,
    queue_thread: Option<QueueThread>,
    /// Time spent in MEDIA_REQUEST_IOC_QUEUE per picture (filled by acks in async mode).
    queue_times: std::collections::HashMap<usize, Duration>,
    /// Most OUTPUT buffers (requests) queued and not yet dequeued at once, as measured.
    max_in_flight: usize,
    /// Declared last: detaches after the buffers are gone.
    module: ModuleGuard,
    streaming: bool,
}

const OUT_Q: QueueType = QueueType::VideoOutputMplane;
/// ffmpeg's AV_INPUT_BUFFER_PADDING_SIZE.
const BITSTREAM_PADDING: usize = 64;
const CAP_Q: QueueType = QueueType::VideoCaptureMplane;

impl Decoder {
    fn open(
        node: &probe::VideoNode,
        media_path: &Path,
        stream: &Stream,
        opts: &DecodeOptions,
    ) -> Result<Decoder> {
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
        let mut outputs = Vec::new();
        for i in 0..rb.count {
            let qb: ioctl::QueryBuffer = ioctl::querybuf(&dev, OUT_Q, i as usize)
                .map_err(|e| anyhow!("{video}: QUERYBUF OUTPUT {i}: {e}"))?;
            let pl = qb
                .planes
                .first()
                .ok_or_else(|| anyhow!("{video}: OUTPUT buffer {i} has no plane"))?;
            let map = ioctl::mmap(&dev, pl.mem_offset, pl.length)
                .map_err(|e| anyhow!("{video}: mmap OUTPUT buffer {i}: {e}"))?;
            let request = Request::alloc(&media)
                .map_err(|e| anyhow!("{}: MEDIA_IOC_REQUEST_ALLOC: {e}", media_path.display()))?;
            outputs.push(OutputSlot {
                index: i,
                map,
                request: Some(request),
                busy: false,
            });
        }
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
        Ok(Decoder {
            dev,
            media,
            video,
            mode,
            annex_b,
            hold,
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

    fn stop(&mut self) -> Result<()> {
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

    /// Waits for a done OUTPUT buffer, dequeues it and makes its request reusable.
    fn reclaim_output(&mut self, timeout: Duration) -> Result<()> {
        if !wait_fd(self.dev.as_fd(), nix::poll::PollFlags::POLLOUT, timeout)? {
            bail!(
                "{}: no OUTPUT buffer came back within {:?}",
                self.video,
                timeout
            );
        }
        let b: ioctl::V4l2Buffer = ioctl::dqbuf(&self.dev, OUT_Q)
            .map_err(|e| anyhow!("{}: DQBUF OUTPUT: {e} ({})", self.video, errno_last()))?;
        let slot = self
            .outputs
            .iter_mut()
            .find(|s| s.index == b.index())
            .ok_or_else(|| {
                anyhow!(
                    "{}: DQBUF OUTPUT gave unknown buffer {}",
                    self.video,
                    b.index()
                )
            })?;
        let slot_i = slot.index as usize;
        while self.outputs[slot_i].request.is_none() {
            self.take_ack(timeout)?;
        }
        let slot = &mut self.outputs[slot_i];
        let request = slot
            .request
            .as_ref()
            .ok_or_else(|| anyhow!("request lost"))?;
        // The request completes once all its objects are done; wait for it before REINIT.
        // SAFETY: the request fd is open for as long as `request` lives (this call).
        let rfd = unsafe { BorrowedFd::borrow_raw(request.as_raw_fd()) };
        if !wait_fd(rfd, nix::poll::PollFlags::POLLPRI, timeout)? {
            bail!(
                "{}: request of OUTPUT buffer {} did not complete within {:?}",
                self.video,
                slot.index,
                timeout
            );
        }
        request
            .reinit()
            .map_err(|e| anyhow!("MEDIA_REQUEST_IOC_REINIT: {e}"))?;
        slot.busy = false;
        Ok(())
    }

    fn free_output(&mut self, timeout: Duration) -> Result<usize> {
        loop {
            if let Some(i) = self.outputs.iter().position(|s| !s.busy) {
                return Ok(i);
            }
            self.reclaim_output(timeout)?;
        }
    }

    /// Queues one request: `nals` into an OUTPUT buffer, the controls into its request.
    /// Returns the bytes queued and how long MEDIA_REQUEST_IOC_QUEUE took (visl runs the job
    /// inside that call when the device is idle).
    #[allow(clippy::too_many_arguments)]
    fn queue_request(
        &mut self,
        nals: &[&[u8]],
        ctrls: &h264::V4l2Controls,
        slice: Option<usize>,
        ts: u64,
        hold: bool,
        frame: usize,
        timeout: Duration,
    ) -> Result<usize> {
        let slot_i = self.free_output(timeout)?;
        let annex_b = self.annex_b;
        let out_size = self.out_size;
        let video = self.video.clone();
        let slot = &mut self.outputs[slot_i];
        let mut n = 0usize;
        for nal in nals {
            let sc: &[u8] = if annex_b { &[0, 0, 1] } else { &[] };
            let end = n + sc.len() + nal.len();
            if end > slot.map.data.len().min(out_size) {
                bail!(
                    "{video}: bitstream of {end} bytes does not fit an OUTPUT buffer of {out_size}"
                );
            }
            slot.map.data[n..n + sc.len()].copy_from_slice(sc);
            slot.map.data[n + sc.len()..end].copy_from_slice(nal);
            n = end;
        }
        // Zeroes after the bitstream, as ffmpeg pads its packets (AV_INPUT_BUFFER_PADDING_SIZE):
        // a decoder that reads ahead finds no stale bytes of an earlier, longer picture.
        let pad_end = (n + BITSTREAM_PADDING).min(slot.map.data.len());
        slot.map.data[n..pad_end].fill(0);
        let rfd = slot
            .request
            .as_ref()
            .ok_or_else(|| anyhow!("OUTPUT slot {slot_i} has no request"))?
            .as_raw_fd();
        let mut fc = FrameCtrls {
            sps: SafeExtControl::from(ctrls.sps),
            pps: SafeExtControl::from(ctrls.pps),
            sm: SafeExtControl::from(ctrls.scaling_matrix),
            dp: SafeExtControl::from(ctrls.decode_params),
        };
        ioctl::s_ext_ctrls(&self.dev, CtrlWhich::Request(rfd), &mut fc).map_err(|e| {
            anyhow!("{video}: S_EXT_CTRLS (request) SPS/PPS/SCALING_MATRIX/DECODE_PARAMS: {e:?}")
        })?;
        if let Some(k) = slice {
            let sp = ctrls
                .slice_params
                .get(k)
                .copied()
                .ok_or_else(|| anyhow!("no SLICE_PARAMS for slice {k}"))?;
            let mut c = SafeExtControl::<H264SliceParams>::from(sp);
            ioctl::s_ext_ctrls(&self.dev, CtrlWhich::Request(rfd), &mut c)
                .map_err(|e| anyhow!("{video}: S_EXT_CTRLS (request) SLICE_PARAMS: {e:?}"))?;
            if let Some(Some(pw)) = ctrls.pred_weights.get(k) {
                let mut c = SafeExtControl::<H264PredWeights>::from(*pw);
                ioctl::s_ext_ctrls(&self.dev, CtrlWhich::Request(rfd), &mut c)
                    .map_err(|e| anyhow!("{video}: S_EXT_CTRLS (request) PRED_WEIGHTS: {e:?}"))?;
            }
        }
        let mut q = QBuffer::<MmapHandle>::new(OUT_Q, slot.index)
            .set_timestamp((ts / 1_000_000_000) as _, ((ts / 1000) % 1_000_000) as _)
            .set_request(rfd);
        if hold {
            q.flags |= BufferFlags::from_bits_retain(bindings::V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF);
        }
        q.planes.push(QBufPlane::new_from_handle(&MmapHandle, n));
        ioctl::qbuf::<_, ()>(&self.dev, q)
            .map_err(|e| anyhow!("{video}: QBUF OUTPUT {} (request): {e}", slot.index))?;
        slot.busy = true;
        let busy = self.outputs.iter().filter(|s| s.busy).count();
        self.max_in_flight = self.max_in_flight.max(busy);
        let slot = &mut self.outputs[slot_i];
        if let Some(qt) = self.queue_thread.as_mut() {
            let req = slot
                .request
                .take()
                .ok_or_else(|| anyhow!("OUTPUT slot {slot_i} has no request"))?;
            qt.tx
                .as_ref()
                .ok_or_else(|| anyhow!("request-queue thread gone"))?
                .send((slot_i, frame, req))
                .map_err(|_| anyhow!("request-queue thread gone"))?;
            *qt.outstanding.entry(frame).or_default() += 1;
            return Ok(n);
        }
        let t = Instant::now();
        slot.request
            .as_ref()
            .ok_or_else(|| anyhow!("OUTPUT slot {slot_i} has no request"))?
            .queue()
            .map_err(|e| anyhow!("{video}: MEDIA_REQUEST_IOC_QUEUE: {e}"))?;
        *self.queue_times.entry(frame).or_default() += t.elapsed();
        Ok(n)
    }

    /// One answer of the queue thread: the request goes back to its slot.
    fn take_ack(&mut self, timeout: Duration) -> Result<()> {
        let qt = self
            .queue_thread
            .as_mut()
            .ok_or_else(|| anyhow!("a request is missing and there is no queue thread"))?;
        let ack = qt
            .rx
            .recv_timeout(timeout)
            .map_err(|e| anyhow!("{}: request-queue thread: {e}", self.video))?;
        self.handle_ack(ack)
    }

    /// The answers the queue thread has already sent, without waiting: a failed
    /// MEDIA_REQUEST_IOC_QUEUE is reported at once, not as a frame that never came.
    fn drain_acks(&mut self) -> Result<()> {
        loop {
            let Some(qt) = self.queue_thread.as_mut() else {
                return Ok(());
            };
            match qt.rx.try_recv() {
                Ok(ack) => self.handle_ack(ack)?,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(e) => bail!("{}: request-queue thread: {e}", self.video),
            }
        }
    }

    fn handle_ack(&mut self, ack: QueueAck) -> Result<()> {
        let (slot, frame, req, r, dt) = ack;
        let qt = self
            .queue_thread
            .as_mut()
            .ok_or_else(|| anyhow!("a request is missing and there is no queue thread"))?;
        if let Some(n) = qt.outstanding.get_mut(&frame) {
            *n = n.saturating_sub(1);
        }
        self.outputs[slot].request = Some(req);
        *self.queue_times.entry(frame).or_default() += dt;
        r.map_err(|e| {
            anyhow!(
                "{}: MEDIA_REQUEST_IOC_QUEUE (picture {frame}): {e}",
                self.video
            )
        })
    }

    fn run(
        &mut self,
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
            b.set_message(self.video.clone());
            Some(b)
        } else {
            None
        };
        // Which picture each CAPTURE buffer holds, and when it can be reused.
        let mut holder: Vec<Option<usize>> = vec![None; self.captures.len()];
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut records: Vec<Option<report::FrameRecord>> = (0..n).map(|_| None).collect();
        let mut done = 0usize; // pictures dequeued (decode order)
        let mut out_pos = 0usize;
        let mut next_out = 0usize; // index into the output order
                                   // Output order restricted to the decoded prefix.
        let order: Vec<usize> = stream
            .output_order
            .iter()
            .copied()
            .filter(|&d| d < n)
            .collect();
        let release_at = |p: &Picture| p.last_use.max(p.output_after).max(p.decode_index);

        for i in 0..n {
            let pic = &stream.pictures[i];
            // 1. A free CAPTURE buffer.
            let buf = loop {
                let free: Vec<usize> = (0..holder.len())
                    .filter(|&b| match holder[b] {
                        None => true,
                        Some(d) => {
                            let p = &stream.pictures[d];
                            // Dequeued, output, and no later picture still references it.
                            done > release_at(p).min(n - 1)
                                && records[d]
                                    .as_ref()
                                    .is_some_and(|r| r.output_position != usize::MAX)
                        }
                    })
                    .collect();
                if let Some(b) = hook.choose_capture(i, &free, inflight.is_empty())? {
                    if !free.contains(&b) {
                        bail!("picture {i}: CAPTURE buffer {b} is not free (free: {free:?})");
                    }
                    break b;
                }
                if inflight.is_empty() {
                    bail!(
                        "no free CAPTURE buffer for picture {i} with nothing in flight ({} buffers, stream max_live {})",
                        self.captures.len(),
                        stream.max_live
                    );
                }
                self.complete(
                    stream,
                    &mut inflight,
                    &mut records,
                    &mut done,
                    timeout,
                    hook,
                )?;
                Self::emit(&order, &mut next_out, &mut out_pos, done, &mut records);
            };
            holder[buf] = Some(i);
            // Completing frames while waiting for OUTPUT slots keeps two or more in flight.
            while inflight.len() >= self.outputs.len() {
                self.complete(
                    stream,
                    &mut inflight,
                    &mut records,
                    &mut done,
                    timeout,
                    hook,
                )?;
                Self::emit(&order, &mut next_out, &mut out_pos, done, &mut records);
            }

            // 2. CAPTURE QBUF, then the fences, before the request is queued.
            let cb = &self.captures[buf];
            hook.before_qbuf(i, cb)?;
            let mut q = QBuffer::<MmapHandle>::new(CAP_Q, cb.index);
            q.planes.push(QBufPlane::new_from_handle(&MmapHandle, 0));
            let qbuf_at = Instant::now();
            ioctl::qbuf::<_, ()>(&self.dev, q)
                .map_err(|e| anyhow!("{}: QBUF CAPTURE {}: {e}", self.video, cb.index))?;
            let qbuf_ns = qbuf_at.elapsed().as_nanos() as u64;
            let (fences, _sf) = sys::write_fences(cb.dmabuf())?;
            let fence = fence_record(&fences);

            // 3. The request(s).
            let ctrls = pic.v4l2_controls(stream, timestamp_ns);
            let ts = timestamp_ns(i);
            let mut bytes = 0;
            let requests = match self.mode {
                DecodeMode::Frame => {
                    let nals: Vec<&[u8]> = pic.slices.iter().map(|s| s.nal()).collect();
                    bytes += self.queue_request(&nals, &ctrls, None, ts, false, i, timeout)?;
                    1
                }
                DecodeMode::Slice => {
                    let k = pic.slices.len();
                    for (j, s) in pic.slices.iter().enumerate() {
                        let hold = self.hold && j + 1 < k;
                        bytes +=
                            self.queue_request(&[s.nal()], &ctrls, Some(j), ts, hold, i, timeout)?;
                    }
                    k
                }
            };
            // Would a reader that looks now (a compositor handed the buffer at this point)
            // find the dma-buf readable? A zero-timeout poll(POLLIN).
            let (_, readable_after_queue) =
                sys::poll_in(self.captures[buf].dmabuf(), Duration::ZERO)?;
            hook.queued(i, &self.captures[buf])?;
            inflight.push_back(InFlight {
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
                b.set_position(done as u64);
            }
        }
        while !inflight.is_empty() {
            self.complete(
                stream,
                &mut inflight,
                &mut records,
                &mut done,
                timeout,
                hook,
            )?;
            Self::emit(&order, &mut next_out, &mut out_pos, done, &mut records);
            if let Some(b) = &bar {
                b.set_position(done as u64);
            }
        }
        while self.outputs.iter().any(|s| s.busy) {
            self.reclaim_output(timeout)?;
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let recs: Vec<report::FrameRecord> = records.into_iter().flatten().collect();
        if recs.len() != n {
            bail!("{} of {n} frames were decoded", recs.len());
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
    fn complete(
        &mut self,
        stream: &Stream,
        inflight: &mut VecDeque<InFlight>,
        records: &mut [Option<report::FrameRecord>],
        done: &mut usize,
        timeout: Duration,
        hook: &mut dyn FrameHook,
    ) -> Result<()> {
        let f = inflight
            .pop_front()
            .ok_or_else(|| anyhow!("nothing in flight"))?;
        // poll(POLLIN) on the dma-buf, in short steps when a queue thread may report a failed
        // request meanwhile.
        let t0 = Instant::now();
        let step = if self.queue_thread.is_some() {
            Duration::from_millis(20)
        } else {
            timeout
        };
        let (blocked, ready) = loop {
            self.drain_acks()?;
            let left = timeout.saturating_sub(t0.elapsed());
            let (_, r) = sys::poll_in(self.captures[f.buf].dmabuf(), step.min(left))?;
            if r || t0.elapsed() >= timeout {
                break (t0.elapsed(), r);
            }
        };
        let cb = &self.captures[f.buf];
        let polled_at = Instant::now();
        if !wait_fd(self.dev.as_fd(), nix::poll::PollFlags::POLLIN, timeout)? {
            bail!(
                "{}: picture {} was not decoded within {:?}",
                self.video,
                f.frame,
                timeout
            );
        }
        let dqbuf_at = Instant::now();
        let b: ioctl::V4l2Buffer = ioctl::dqbuf(&self.dev, CAP_Q)
            .map_err(|e| anyhow!("{}: DQBUF CAPTURE: {e} ({})", self.video, errno_last()))?;
        let dqbuf_ns = dqbuf_at.elapsed().as_nanos() as u64;
        let elapsed = f.qbuf_at.elapsed();
        let dqbuf_wait = polled_at.elapsed();
        if b.index() != cb.index {
            bail!(
                "{}: DQBUF CAPTURE gave buffer {}, expected {} (picture {})",
                self.video,
                b.index(),
                cb.index,
                f.frame
            );
        }
        let tv = b.timestamp();
        let ts = tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
        if ts != timestamp_ns(f.frame) {
            bail!(
                "{}: CAPTURE buffer {} came back with timestamp {ts} ns, picture {} has {}",
                self.video,
                cb.index,
                f.frame,
                timestamp_ns(f.frame)
            );
        }
        let error = b.has_error();
        hook.dqbuf_done(f.frame, &self.captures[f.buf], error)?;
        // In async mode, the queue thread's answers for this picture (its request-queue time).
        while self
            .queue_thread
            .as_ref()
            .is_some_and(|q| q.outstanding.get(&f.frame).copied().unwrap_or(0) > 0)
        {
            self.take_ack(timeout)?;
        }
        let queue_time = self.queue_times.remove(&f.frame).unwrap_or_default();
        let cb = &self.captures[f.buf];
        let sequence = b.sequence();
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
            timestamp_ns: ts,
            sequence,
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
            capture_dqbuf_ns: dqbuf_ns,
            dpb,
            ref_lists,
            fence_after_qbuf: f.fence,
            qbuf_to_dqbuf_us: elapsed.as_micros() as u64,
            poll_block_us: blocked.as_micros() as u64,
            poll_ready: ready,
            readable_after_queue: f.readable_after_queue,
            dqbuf_wait_us: dqbuf_wait.as_micros() as u64,
            error,
            checksums,
        });
        *done += 1;
        Ok(())
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = &self.media;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn emit_outputs_in_display_order_once_all_earlier_are_decoded() {
        // I0 P1 B2 B3 in decode order, displayed I0 B2 B3 P1.
        let order = [0, 2, 3, 1];
        let mut records: Vec<Option<report::FrameRecord>> = vec![None; 4];
        let (mut next, mut pos) = (0, 0);
        let mut done = 0;
        let mut step = |done: usize, records: &mut Vec<Option<report::FrameRecord>>| {
            records[done - 1] = Some(rec(done - 1));
            Decoder::emit(&order, &mut next, &mut pos, done, records);
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
