//! One CAPTURE buffer of the session, as the hooks and the samplers see it.

use super::session::CAP_Q;
use super::Nv12Layout;
use crate::sys;
use anyhow::{anyhow, Context, Result};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use v4l2r::ioctl;

/// VIDIOC_QUERYBUF's flags of CAPTURE buffer `index` on the decoder `dev`.
pub fn capture_flags(dev: &File, index: u32) -> Result<u32> {
    let q: ioctl::QueryBuffer = ioctl::querybuf(dev, CAP_Q, index as usize)
        .map_err(|e| anyhow!("QUERYBUF CAPTURE {index}: {e}"))?;
    Ok(q.flags.bits())
}

/// The module's sync_file of CAPTURE buffer `index` on the decoder `dev`
/// (VB2_RESV_IOC_SYNC_FILE on /dev/vb2_resv): its pending vb2_resv fence, or a signaled one.
pub fn capture_sync_file(dev: &File, index: u32) -> Result<OwnedFd> {
    let ctl = crate::kmod::Control::open()?;
    let (sf, _pending) = ctl
        .sync_file(dev.as_raw_fd(), CAP_Q as u32, index)
        .map_err(|e| anyhow!("VB2_RESV_IOC_SYNC_FILE CAPTURE {index}: {e}"))?;
    Ok(sf)
}

/// A CAPTURE buffer as another thread holds it (a compositor): its dma-buf and the decoder's
/// fd, both dups, for QUERYBUF and the module's sync_file.
pub struct BufferHandle {
    pub index: u32,
    pub layout: Nv12Layout,
    pub dmabuf: File,
    dev: File,
}

impl BufferHandle {
    pub fn v4l2_flags(&self) -> Result<u32> {
        capture_flags(&self.dev, self.index)
    }
    pub fn module_sync_file(&self) -> Result<OwnedFd> {
        capture_sync_file(&self.dev, self.index)
    }
}

/// One CAPTURE buffer, exported once with EXPBUF and kept for the whole run (as ffmpeg does).
pub struct CaptureBuffer {
    pub index: u32,
    pub layout: Nv12Layout,
    map: sys::DmaBufMap,
    /// A dup of the decoder's fd, for QUERYBUF.
    dev: File,
}

impl CaptureBuffer {
    pub(super) fn new(
        index: u32,
        dmabuf: File,
        layout: Nv12Layout,
        dev: File,
    ) -> Result<CaptureBuffer> {
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
        capture_flags(&self.dev, self.index)
    }

    /// The module's sync_file of this buffer ([`capture_sync_file`]).
    pub fn module_sync_file(&self) -> Result<OwnedFd> {
        capture_sync_file(&self.dev, self.index)
    }

    /// A handle on this buffer for another thread: dups of its dma-buf and of the decoder's fd.
    pub fn handle(&self) -> Result<BufferHandle> {
        Ok(BufferHandle {
            index: self.index,
            layout: self.layout,
            dmabuf: self
                .dmabuf()
                .try_clone()
                .context("dup of a CAPTURE dma-buf")?,
            dev: self.dev.try_clone().context("dup of the decoder's fd")?,
        })
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
