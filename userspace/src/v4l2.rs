//! A small V4L2 queue driver over v4l2r's ioctl layer: find a node, allocate, export, queue and
//! dequeue buffers. v4l2r's high-level API is stateful-decoder only; this keeps to its ioctls.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use v4l2r::ioctl::{self, ExpbufFlags, MemoryConsistency, QBufPlane, QBuffer, V4l2Buffer};
use v4l2r::memory::{DmaBufHandle, MemoryType, MmapHandle};
use v4l2r::QueueType;

/// The `/dev/videoN` node whose device is bound to `driver` and whose name contains `name`.
pub fn find_node(driver: &str, name: &str) -> Result<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/sys/class/video4linux").context("/sys/class/video4linux")? {
        let e = e?;
        let node = e.file_name().to_string_lossy().into_owned();
        if !node.starts_with("video") {
            continue;
        }
        let drv = std::fs::read_link(e.path().join("device/driver")).unwrap_or_default();
        let n = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if drv.file_name().is_some_and(|d| d == driver) && n.contains(name) {
            found.push(node);
        }
    }
    // videoN in numeric order, so that the first instance wins.
    found.sort_by_key(|n| {
        n.trim_start_matches("video")
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    found.first().map(|n| format!("/dev/{n}")).ok_or_else(|| {
        anyhow!("no video node of driver {driver} named *{name}* (is {driver} loaded?)")
    })
}

/// Opens a V4L2 node read-write.
pub fn open(path: impl AsRef<Path>) -> Result<File> {
    let path = path.as_ref();
    File::options()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Whether the node uses the multi-planar API (from its device caps).
pub fn is_mplane(dev: &File) -> Result<bool> {
    let cap: ioctl::Capability = ioctl::querycap(dev).context("VIDIOC_QUERYCAP")?;
    let caps = cap.device_caps.unwrap_or(cap.capabilities);
    Ok(caps.intersects(
        ioctl::Capabilities::VIDEO_CAPTURE_MPLANE
            | ioctl::Capabilities::VIDEO_OUTPUT_MPLANE
            | ioctl::Capabilities::VIDEO_M2M_MPLANE,
    ))
}

/// The errno of a failed v4l2r ioctl. v4l2r reports it as nix 0.28's Errno, a different type
/// from our nix's; the ioctl was the last system call, so errno still holds it.
fn ioctl_errno<E: std::fmt::Debug, C: std::fmt::Debug>(
    e: ioctl::IoctlConvertError<E, C>,
) -> nix::errno::Errno {
    match e {
        ioctl::IoctlConvertError::IoctlError(_) => nix::errno::Errno::last(),
        ioctl::IoctlConvertError::ConversionError(_) => nix::errno::Errno::EINVAL,
    }
}

/// One queue of a node.
pub struct Queue<'a> {
    pub dev: &'a File,
    pub qt: QueueType,
    pub memory: MemoryType,
    pub count: u32,
    /// sizeimage of each plane of the current format.
    pub plane_sizes: Vec<u32>,
}

impl<'a> Queue<'a> {
    /// The CAPTURE (or OUTPUT) queue of `dev`, in its node's API flavour.
    pub fn new(dev: &'a File, output: bool) -> Result<Queue<'a>> {
        let mplane = is_mplane(dev)?;
        let qt = match (output, mplane) {
            (false, false) => QueueType::VideoCapture,
            (false, true) => QueueType::VideoCaptureMplane,
            (true, false) => QueueType::VideoOutput,
            (true, true) => QueueType::VideoOutputMplane,
        };
        let fmt: v4l2r::Format = ioctl::g_fmt(dev, qt).context("VIDIOC_G_FMT")?;
        Ok(Queue {
            dev,
            qt,
            memory: MemoryType::Mmap,
            count: 0,
            plane_sizes: fmt.plane_fmt.iter().map(|p| p.sizeimage).collect(),
        })
    }

    /// VIDIOC_REQBUFS; returns the count the driver granted.
    pub fn reqbufs(&mut self, memory: MemoryType, count: u32) -> Result<u32> {
        let rb: v4l2r::bindings::v4l2_requestbuffers =
            ioctl::reqbufs(self.dev, self.qt, memory, count, MemoryConsistency::empty())
                .with_context(|| format!("VIDIOC_REQBUFS({count})"))?;
        self.memory = memory;
        self.count = rb.count;
        Ok(rb.count)
    }

    /// VIDIOC_EXPBUF of `plane` of buffer `index`.
    pub fn expbuf(&self, index: u32, plane: u32) -> Result<File> {
        ioctl::expbuf(
            self.dev,
            self.qt,
            index as usize,
            plane as usize,
            ExpbufFlags::RDWR | ExpbufFlags::CLOEXEC,
        )
        .with_context(|| format!("VIDIOC_EXPBUF({index}, {plane})"))
    }

    /// VIDIOC_QBUF of an MMAP buffer, with `bytesused` on each plane (0 for CAPTURE).
    pub fn qbuf_mmap(&self, index: u32, bytesused: u32) -> nix::Result<()> {
        let mut q = QBuffer::<MmapHandle>::new(self.qt, index);
        for _ in 0..self.plane_sizes.len().max(1) {
            q.planes
                .push(QBufPlane::new_from_handle(&MmapHandle, bytesused as usize));
        }
        ioctl::qbuf::<_, ()>(self.dev, q).map_err(ioctl_errno)
    }

    /// VIDIOC_QBUF of an MMAP OUTPUT buffer into the media request `request_fd`, with a
    /// timestamp (in microseconds) and V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF when `hold`.
    pub fn qbuf_mmap_request(
        &self,
        index: u32,
        bytesused: u32,
        request_fd: i32,
        ts_us: u64,
        hold: bool,
    ) -> nix::Result<()> {
        let mut q = QBuffer::<MmapHandle>::new(self.qt, index)
            .set_request(request_fd)
            .set_timestamp((ts_us / 1_000_000) as _, (ts_us % 1_000_000) as _);
        if hold {
            // V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF: v4l2r has no name for it.
            q.flags |= ioctl::BufferFlags::from_bits_retain(0x0000_0200);
        }
        for _ in 0..self.plane_sizes.len().max(1) {
            q.planes
                .push(QBufPlane::new_from_handle(&MmapHandle, bytesused as usize));
        }
        ioctl::qbuf::<_, ()>(self.dev, q).map_err(ioctl_errno)
    }

    /// VIDIOC_QBUF of a DMABUF buffer, one dma-buf per plane.
    pub fn qbuf_dmabuf(&self, index: u32, planes: &[File]) -> nix::Result<()> {
        let mut q = QBuffer::<DmaBufHandle<File>>::new(self.qt, index);
        // The handles own dup'ed fds: keep them open until the QBUF is done.
        let handles = planes
            .iter()
            .map(|p| p.try_clone().map(DmaBufHandle))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|_| nix::errno::Errno::EBADF)?;
        for h in &handles {
            q.planes.push(QBufPlane::new_from_handle(h, 0));
        }
        ioctl::qbuf::<_, ()>(self.dev, q).map_err(ioctl_errno)
    }

    /// VIDIOC_DQBUF (blocking unless the node was opened O_NONBLOCK): the index and flags.
    pub fn dqbuf(&self) -> nix::Result<(u32, ioctl::BufferFlags)> {
        let b: V4l2Buffer = ioctl::dqbuf(self.dev, self.qt).map_err(ioctl_errno)?;
        Ok((b.index(), b.flags()))
    }

    /// VIDIOC_QUERYBUF of buffer `index`: its flags (QUEUED while vb2 or the driver owns it,
    /// DONE once the driver returned it).
    pub fn querybuf(&self, index: u32) -> nix::Result<ioctl::BufferFlags> {
        let b: V4l2Buffer =
            ioctl::querybuf(self.dev, self.qt, index as usize).map_err(ioctl_errno)?;
        Ok(b.flags())
    }

    /// VIDIOC_STREAMOFF, with the errno on failure (for checks that expect one).
    pub fn streamoff_errno(&self) -> nix::Result<()> {
        ioctl::streamoff(self.dev, self.qt).map_err(|_| nix::errno::Errno::last())
    }

    /// VIDIOC_REQBUFS of `count` buffers of the queue's memory type, with the errno on failure;
    /// the queue's own bookkeeping is left alone (a check of what vb2 refuses).
    pub fn reqbufs_errno(&self, count: u32) -> nix::Result<u32> {
        ioctl::reqbufs::<v4l2r::bindings::v4l2_requestbuffers>(
            self.dev,
            self.qt,
            self.memory,
            count,
            MemoryConsistency::empty(),
        )
        .map(|rb| rb.count)
        .map_err(|_| nix::errno::Errno::last())
    }

    /// VIDIOC_REMOVE_BUFS of `count` buffers from `index` (v4l2r has no wrapper for it).
    pub fn remove_bufs(&self, index: u32, count: u32) -> nix::Result<()> {
        let mut rb = RemoveBuffers {
            index,
            count,
            type_: self.qt as u32,
            reserved: [0; 13],
        };
        // SAFETY: `rb` is VIDIOC_REMOVE_BUFS's argument struct, valid for the call.
        unsafe { vidioc_remove_bufs(self.dev.as_raw_fd(), &mut rb) }.map(|_| ())
    }

    pub fn streamon(&self) -> Result<()> {
        ioctl::streamon(self.dev, self.qt).context("VIDIOC_STREAMON")
    }

    pub fn streamoff(&self) -> Result<()> {
        ioctl::streamoff(self.dev, self.qt).context("VIDIOC_STREAMOFF")
    }
}

/// Sets the control whose name is `name` (as VIDIOC_QUERY_EXT_CTRL reports it) to `value`.
pub fn set_ctrl_by_name(dev: &File, name: &str, value: i32) -> Result<()> {
    use v4l2r::bindings;
    let mut id = bindings::V4L2_CTRL_FLAG_NEXT_CTRL | bindings::V4L2_CTRL_FLAG_NEXT_COMPOUND;
    loop {
        let mut q = bindings::v4l2_query_ext_ctrl {
            id,
            ..Default::default()
        };
        // SAFETY: `q` is the ioctl's argument struct.
        let r = unsafe {
            nix::libc::ioctl(
                dev.as_raw_fd(),
                nix::request_code_readwrite!(
                    b'V',
                    103,
                    std::mem::size_of::<bindings::v4l2_query_ext_ctrl>()
                ) as _,
                &mut q,
            )
        };
        if r != 0 {
            bail!("no control named '{name}'");
        }
        let n = q
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect::<String>();
        if n == name {
            let mut c = bindings::v4l2_control { id: q.id, value };
            // SAFETY: `c` is VIDIOC_S_CTRL's argument struct.
            let r = unsafe {
                nix::libc::ioctl(
                    dev.as_raw_fd(),
                    nix::request_code_readwrite!(
                        b'V',
                        28,
                        std::mem::size_of::<bindings::v4l2_control>()
                    ) as _,
                    &mut c,
                )
            };
            if r != 0 {
                bail!("VIDIOC_S_CTRL({name}): {}", std::io::Error::last_os_error());
            }
            return Ok(());
        }
        id = q.id | bindings::V4L2_CTRL_FLAG_NEXT_CTRL | bindings::V4L2_CTRL_FLAG_NEXT_COMPOUND;
    }
}

/// `struct v4l2_remove_buffers` (<linux/videodev2.h>, Linux 6.10+).
#[repr(C)]
struct RemoveBuffers {
    index: u32,
    count: u32,
    type_: u32,
    reserved: [u32; 13],
}
nix::ioctl_readwrite!(vidioc_remove_bufs, b'V', 104, RemoveBuffers);
