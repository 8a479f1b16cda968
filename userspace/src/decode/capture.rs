//! One CAPTURE buffer of the session, as the hooks and the samplers see it.

use super::session::CAP_Q;
use super::Nv12Layout;
use crate::sys;
use anyhow::{anyhow, Result};
use std::fs::File;
use v4l2r::ioctl;

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
