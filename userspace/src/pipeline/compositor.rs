//! The compositor side of the mpv + KWin pipeline, on its own thread with its own EGL context:
//! what KWin does with a client's dma-buf frames (shared/research/consumers.md), with a GPU read
//! that takes time.
//!
//! For each frame handed over (mpv's commit after DQBUF):
//! 1. the GPU reads of the same buffer still in flight are finished first (a GPU orders its jobs
//!    on one buffer; on the real pipeline panfrost's implicit sync does it);
//! 2. the consumer waits as its policy says ([`crate::consumer_wait`]);
//! 3. the GPU read starts: the frame's EGLImage (cached per buffer, as KWin keeps them per
//!    wl_buffer) is sampled, and the read stays in flight for `gpu_read`: a vgem fence attached
//!    to the dma-buf as WRITE stands for it, as panfrost attaches its job fence to every BO of a
//!    job (llvmpipe has no fences of its own). The bytes are taken when the read ends: a real
//!    GPU reads the texture at some point in that window, and the end is its last chance;
//! 4. the buffer shown before is released at once (wl_buffer.release), without waiting for its
//!    read, as KWin does; mpv then hands it back to ffmpeg's pool, the decoder may take it.
//!
//! A read's end: the bytes are read back and classified later, then the vgem fence is signaled.

use crate::classify::Geometry;
use crate::consumer_wait::{self, ConsumerWait, WaitRecord};
use crate::decode::BufferHandle;
use crate::gpu::{DmaBufNv12, Gpu, GpuOptions, Images, ImportPath};
use crate::sampler::geometry;
use crate::sys::Vgem;
use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// VGEM_FENCE_WRITE (<drm/vgem_drm.h>).
const VGEM_FENCE_WRITE: u32 = 1;

/// From the decode side.
pub enum ToCompositor {
    /// A frame to show (decode index), in its buffer.
    Frame { frame: usize, buf: BufferHandle },
    /// The stream ended: finish the reads, release everything.
    End,
}

/// One frame's GPU read, as the compositor did it.
pub struct Read {
    pub frame: usize,
    pub buffer: u32,
    /// The packed NV12 bytes the GPU read.
    pub nv12: Vec<u8>,
    pub wait: WaitRecord,
    /// QUERYBUF flags at the latch and at the end of the read: QUEUED at the end means the
    /// decoder had the buffer back while the GPU was reading it.
    pub flags_latch: Option<u32>,
    pub flags_end: Option<u32>,
    /// How long the read was in flight (µs), and whether the buffer had been released before
    /// it ended.
    pub in_flight_us: u64,
    pub released_before_end: bool,
}

/// What the compositor thread reports when it ends.
pub struct Outcome {
    pub reads: Vec<Read>,
    pub images_created: usize,
    pub released: usize,
}

pub struct Options {
    pub gpu: GpuOptions,
    pub wait: ConsumerWait,
    pub images: Images,
    pub gpu_read: Duration,
}

struct InFlight {
    frame: usize,
    buf: BufferHandle,
    g: Geometry,
    fence: u32,
    started: Instant,
    deadline: Instant,
    wait: WaitRecord,
    flags_latch: Option<u32>,
    released: bool,
}

struct Compositor {
    gpu: Gpu,
    vgem: Vgem,
    opts: Options,
    /// vgem GEM handles of the imported dma-bufs, per buffer index.
    handles: HashMap<u32, u32>,
    in_flight: Vec<InFlight>,
    on_screen: Option<u32>,
    reads: Vec<Read>,
    released: usize,
    tx: Sender<u32>,
}

impl Compositor {
    fn finish(&mut self, k: usize) -> Result<()> {
        let r = self.in_flight.remove(k);
        let view = DmaBufNv12 {
            key: r.buf.index,
            fd: r.buf.dmabuf.as_fd(),
            width: r.g.width,
            height: r.g.height,
            stride: r.buf.layout.stride,
            uv_offset: r.buf.layout.uv_offset,
            modifier: r.buf.layout.modifier,
        };
        let flags_end = r.buf.v4l2_flags().ok();
        let s = self
            .gpu
            .sample(ImportPath::Kwin, self.opts.images, &view, false);
        // The fence ends whatever the read gave: a decoder waiting on it must not hang.
        let signal = self.vgem.fence_signal(r.fence);
        let s = s.with_context(|| format!("frame {}: the compositor's GPU read", r.frame))?;
        signal.map_err(|e| anyhow!("VGEM_FENCE_SIGNAL: {e}"))?;
        self.reads.push(Read {
            frame: r.frame,
            buffer: r.buf.index,
            nv12: s.nv12,
            wait: r.wait,
            flags_latch: r.flags_latch,
            flags_end,
            in_flight_us: r.started.elapsed().as_micros() as u64,
            released_before_end: r.released,
        });
        Ok(())
    }

    /// Ends every read whose time is up (or all of them).
    fn finish_due(&mut self, all: bool) -> Result<()> {
        let now = Instant::now();
        while let Some(k) = self.in_flight.iter().position(|r| all || r.deadline <= now) {
            self.finish(k)?;
        }
        Ok(())
    }

    fn release(&mut self, b: u32) {
        for r in self.in_flight.iter_mut().filter(|r| r.buf.index == b) {
            r.released = true;
        }
        self.released += 1;
        // The decode side may have ended (an error there): nothing to tell it then.
        let _ = self.tx.send(b);
    }

    fn latch(&mut self, frame: usize, buf: BufferHandle) -> Result<()> {
        // 1. Reads of this buffer still in flight end first.
        while let Some(k) = self.in_flight.iter().position(|r| r.buf.index == buf.index) {
            self.finish(k)?;
        }
        // 2. The consumer's wait.
        let flags_latch = buf.v4l2_flags().ok();
        let wait = consumer_wait::wait(self.opts.wait, buf.dmabuf.as_fd(), || {
            buf.module_sync_file()
        })
        .with_context(|| {
            format!(
                "frame {frame}: the compositor's wait ({})",
                self.opts.wait.name()
            )
        })?;
        // 3. The GPU read starts: its fence on the dma-buf.
        let handle = match self.handles.get(&buf.index) {
            Some(h) => *h,
            None => {
                let h = self.vgem.import(&buf.dmabuf)?;
                self.handles.insert(buf.index, h);
                h
            }
        };
        let fence = self
            .vgem
            .fence_attach(handle, VGEM_FENCE_WRITE)
            .map_err(|e| {
                anyhow!(
                    "frame {frame}: VGEM_FENCE_ATTACH(WRITE) on CAPTURE buffer {}: {e}",
                    buf.index
                )
            })?;
        let now = Instant::now();
        let index = buf.index;
        self.in_flight.push(InFlight {
            frame,
            g: geometry(&buf.layout),
            buf,
            fence,
            started: now,
            deadline: now + self.opts.gpu_read,
            wait,
            flags_latch,
            released: false,
        });
        // 4. The buffer shown before goes back to the client, its read maybe still running.
        if let Some(prev) = self.on_screen.replace(index) {
            if prev != index {
                self.release(prev);
            }
        }
        Ok(())
    }

    fn run(&mut self, rx: Receiver<ToCompositor>) -> Result<()> {
        loop {
            let timeout = self
                .in_flight
                .iter()
                .map(|r| r.deadline.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::from_secs(1));
            match rx.recv_timeout(timeout) {
                Ok(ToCompositor::Frame { frame, buf }) => {
                    self.finish_due(false)?;
                    self.latch(frame, buf)?;
                }
                Ok(ToCompositor::End) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.finish_due(false)?,
            }
        }
        self.finish_due(true)?;
        if let Some(b) = self.on_screen.take() {
            self.release(b);
        }
        Ok(())
    }
}

impl Drop for Compositor {
    fn drop(&mut self) {
        // An error mid-run: no fence of ours may stay unsignaled (a decoder would wait on it).
        for r in self.in_flight.drain(..) {
            let _ = self.vgem.fence_signal(r.fence);
        }
    }
}

/// Starts the compositor thread: frames come in on the returned sender, released buffer
/// indices go out on `released`; joining gives the reads.
pub fn spawn(
    opts: Options,
    released: Sender<u32>,
) -> Result<(
    Sender<ToCompositor>,
    std::thread::JoinHandle<Result<Outcome>>,
)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let h = std::thread::Builder::new()
        .name("compositor".into())
        .spawn(move || -> Result<Outcome> {
            let setup = (|| -> Result<(Gpu, Vgem)> {
                let gpu = Gpu::open(&opts.gpu).context("the compositor's EGL context")?;
                let vgem = Vgem::open().context(
                    "the compositor's GPU-read fences need vgem (modprobe vgem): it stands for panfrost's job fence",
                )?;
                Ok((gpu, vgem))
            })();
            let (gpu, vgem) = match setup {
                Ok(x) => {
                    let _ = ready_tx.send(Ok(()));
                    x
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    let _ = ready_tx.send(Err(e));
                    return Err(anyhow!(msg));
                }
            };
            let mut c = Compositor {
                gpu,
                vgem,
                opts,
                handles: HashMap::new(),
                in_flight: Vec::new(),
                on_screen: None,
                reads: Vec::new(),
                released: 0,
                tx: released,
            };
            c.run(rx)?;
            Ok(Outcome {
                reads: std::mem::take(&mut c.reads),
                images_created: c.gpu.images_created(ImportPath::Kwin),
                released: c.released,
            })
        })
        .context("cannot start the compositor thread")?;
    ready_rx
        .recv()
        .map_err(|_| anyhow!("the compositor thread ended before it was ready"))??;
    Ok((tx, h))
}
