//! dma-buf, sync_file, vgem and dma-heap ioctls.
//!
//! Hand-written over nix's ioctl macros: no maintained crate covers these UAPIs (the `drm` crate
//! has no vgem and no dma-buf sync_file ioctls; `dma-heap` crates pin old nix versions).

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

// <linux/dma-buf.h>
#[repr(C)]
struct DmaBufExportSyncFile {
    flags: u32,
    fd: i32,
}
#[repr(C)]
struct DmaBufSync {
    flags: u64,
}
pub const DMA_BUF_SYNC_READ: u64 = 1;
pub const DMA_BUF_SYNC_WRITE: u64 = 2;
pub const DMA_BUF_SYNC_RW: u64 = 3;
pub const DMA_BUF_SYNC_START: u64 = 0;
pub const DMA_BUF_SYNC_END: u64 = 4;
nix::ioctl_readwrite!(dma_buf_export_sync_file, b'b', 2, DmaBufExportSyncFile);
nix::ioctl_write_ptr!(dma_buf_ioctl_sync, b'b', 0, DmaBufSync);
#[repr(C)]
struct DmaBufImportSyncFile {
    flags: u32,
    fd: i32,
}
nix::ioctl_write_ptr!(dma_buf_import_sync_file, b'b', 3, DmaBufImportSyncFile);

// <linux/sync_file.h>
#[repr(C)]
#[derive(Clone, Copy)]
struct SyncFenceInfo {
    obj_name: [u8; 32],
    driver_name: [u8; 32],
    status: i32,
    flags: u32,
    timestamp_ns: u64,
}
#[repr(C)]
struct SyncFileInfo {
    name: [u8; 32],
    status: i32,
    flags: u32,
    num_fences: u32,
    pad: u32,
    sync_fence_info: u64,
}
nix::ioctl_readwrite!(sync_ioc_file_info, b'>', 4, SyncFileInfo);

/// One fence of a sync_file, as SYNC_IOC_FILE_INFO reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceInfo {
    /// The timeline name.
    pub timeline: String,
    /// The driver name (`vb2_resv` for ours, `dma_fence_stub`-like names for the stub).
    pub driver: String,
    /// 0: pending, 1: signaled, < 0: signaled with that error.
    pub status: i32,
    /// When it was signaled (CLOCK_MONOTONIC ns), 0 while pending.
    pub timestamp_ns: u64,
}

impl FenceInfo {
    pub fn pending(&self) -> bool {
        self.status == 0
    }
}

fn cstr(b: &[u8]) -> String {
    CStr::from_bytes_until_nul(b)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
}

/// The fences a reader of `dmabuf` must wait for (its writers): DMA_BUF_IOCTL_EXPORT_SYNC_FILE
/// with DMA_BUF_SYNC_READ. When there are none the kernel returns a signaled stub fence.
pub fn export_write_fences(dmabuf: &impl AsRawFd) -> Result<OwnedFd> {
    let mut arg = DmaBufExportSyncFile {
        flags: DMA_BUF_SYNC_READ as u32,
        fd: -1,
    };
    // SAFETY: `arg` is the ioctl's argument struct.
    unsafe { dma_buf_export_sync_file(dmabuf.as_raw_fd(), &mut arg) }
        .context("DMA_BUF_IOCTL_EXPORT_SYNC_FILE")?;
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(arg.fd) })
}

/// The fences in a sync_file, with their names and status.
pub fn sync_file_info(sync_file: &impl AsRawFd) -> Result<Vec<FenceInfo>> {
    let mut info = SyncFileInfo {
        name: [0; 32],
        status: 0,
        flags: 0,
        num_fences: 0,
        pad: 0,
        sync_fence_info: 0,
    };
    // SAFETY: `info` is the ioctl's argument; num_fences = 0 asks for the count only.
    unsafe { sync_ioc_file_info(sync_file.as_raw_fd(), &mut info) }
        .context("SYNC_IOC_FILE_INFO")?;
    let n = info.num_fences as usize;
    let mut fences = vec![
        SyncFenceInfo {
            obj_name: [0; 32],
            driver_name: [0; 32],
            status: 0,
            flags: 0,
            timestamp_ns: 0
        };
        n
    ];
    info.sync_fence_info = fences.as_mut_ptr() as u64;
    // SAFETY: the array has room for `num_fences` entries.
    unsafe { sync_ioc_file_info(sync_file.as_raw_fd(), &mut info) }
        .context("SYNC_IOC_FILE_INFO")?;
    Ok(fences
        .iter()
        .take(info.num_fences as usize)
        .map(|f| FenceInfo {
            timeline: cstr(&f.obj_name),
            driver: cstr(&f.driver_name),
            status: f.status,
            timestamp_ns: f.timestamp_ns,
        })
        .collect())
}

/// The write fences on `dmabuf` right now (EXPORT_SYNC_FILE + SYNC_IOC_FILE_INFO), and the
/// sync_file that holds them (it keeps them: its fences can be checked again later).
pub fn write_fences(dmabuf: &impl AsRawFd) -> Result<(Vec<FenceInfo>, OwnedFd)> {
    let sf = export_write_fences(dmabuf)?;
    Ok((sync_file_info(&sf)?, sf))
}

/// poll(POLLIN) on a dma-buf or sync_file: waits for the write fences. Returns how long it
/// blocked and whether it became ready within `timeout`.
pub fn poll_in(fd: &impl AsFd, timeout: Duration) -> Result<(Duration, bool)> {
    let t0 = Instant::now();
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(PollTimeout::MAX);
    let n = poll(&mut fds, ms).context("poll(POLLIN)")?;
    Ok((t0.elapsed(), n > 0))
}

/// DMA_BUF_IOCTL_SYNC with `flags` (START/END | READ/WRITE).
pub fn dmabuf_sync(dmabuf: &impl AsRawFd, flags: u64) -> Result<()> {
    let arg = DmaBufSync { flags };
    // SAFETY: `arg` is the ioctl's argument struct.
    unsafe { dma_buf_ioctl_sync(dmabuf.as_raw_fd(), &arg) }.context("DMA_BUF_IOCTL_SYNC")?;
    Ok(())
}

/// DMA_BUF_IOCTL_IMPORT_SYNC_FILE: adds the fences of `sync_file` to `dmabuf`'s reservation
/// object, as WRITE fences when `flags` has DMA_BUF_SYNC_WRITE, else as READ fences (one resv
/// lock, reserve and add per fence: what attaching a fence costs the kernel itself).
pub fn import_sync_file(dmabuf: &impl AsRawFd, sync_file: &impl AsRawFd, flags: u64) -> Result<()> {
    let arg = DmaBufImportSyncFile {
        flags: flags as u32,
        fd: sync_file.as_raw_fd(),
    };
    // SAFETY: `arg` is the ioctl's argument struct.
    unsafe { dma_buf_import_sync_file(dmabuf.as_raw_fd(), &arg) }
        .context("DMA_BUF_IOCTL_IMPORT_SYNC_FILE")?;
    Ok(())
}

/// A DMA_BUF_IOCTL_SYNC the kernel refuses after copying its argument (an undefined flag):
/// the cost of a round trip into the dma-buf's ioctl with no work, -EINVAL expected.
pub fn dmabuf_refused_ioctl(dmabuf: &impl AsRawFd) -> Result<()> {
    let arg = DmaBufSync { flags: 1 << 40 };
    // SAFETY: `arg` is the ioctl's argument struct.
    match unsafe { dma_buf_ioctl_sync(dmabuf.as_raw_fd(), &arg) } {
        Err(nix::errno::Errno::EINVAL) => Ok(()),
        other => bail!("DMA_BUF_IOCTL_SYNC with an undefined flag: {other:?}, not EINVAL"),
    }
}

/// A dma-buf with a read-write shared mapping of its first `len` bytes, accessed only between
/// DMA_BUF_IOCTL_SYNC START and END (the CPU view of a CAPTURE buffer, or of a dma-heap buffer).
pub struct DmaBufMap {
    file: File,
    ptr: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

impl DmaBufMap {
    /// Maps `len` bytes of `file`; `what` names the buffer in the error.
    pub fn new(file: File, len: usize, what: &str) -> Result<DmaBufMap> {
        let n = std::num::NonZeroUsize::new(len)
            .ok_or_else(|| anyhow::anyhow!("{what}: cannot map 0 bytes"))?;
        // SAFETY: a new shared mapping of a dma-buf we own; this process touches it only
        // through `access`, and it is unmapped in Drop.
        let ptr = unsafe {
            nix::sys::mman::mmap(
                None,
                n,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
                &file,
                0,
            )
        }
        .with_context(|| format!("mmap of {what}"))?;
        Ok(DmaBufMap { file, ptr, len })
    }

    /// The dma-buf itself.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` on the mapped bytes between DMA_BUF_IOCTL_SYNC START|`flags` and END|`flags`
    /// (`flags`: DMA_BUF_SYNC_READ and/or DMA_BUF_SYNC_WRITE).
    pub fn access<T>(&self, flags: u64, f: impl FnOnce(&mut [u8]) -> T) -> Result<T> {
        dmabuf_sync(&self.file, DMA_BUF_SYNC_START | flags)?;
        // SAFETY: the mapping is `len` bytes and lives as long as `self`. The slice is handed
        // out only for the duration of `f`, and DmaBufMap is not Sync (NonNull), so no other
        // thread of ours holds a view of it. A device may write the memory concurrently only
        // while the buffer is queued, which makes the bytes stale, not the access unsound
        // (they are plain bytes).
        let s = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr() as *mut u8, self.len) };
        let r = f(s);
        dmabuf_sync(&self.file, DMA_BUF_SYNC_END | flags)?;
        Ok(r)
    }

    /// Runs `f` on the mapped bytes *without* DMA_BUF_IOCTL_SYNC, which waits for the
    /// buffer's fences: for a test that looks at a buffer while a device may be writing it (a
    /// coherent mapping, as vmalloc'd vb2 buffers are; the bytes may be stale or torn).
    pub fn peek<T>(&self, f: impl FnOnce(&[u8]) -> T) -> T {
        // SAFETY: as in `access`; read-only, and plain bytes may change under us.
        let s = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr() as *const u8, self.len) };
        f(s)
    }

    /// A copy of the mapped bytes (START|READ, copy, END|READ).
    pub fn read(&self) -> Result<Vec<u8>> {
        self.access(DMA_BUF_SYNC_READ, |b| b.to_vec())
    }
}

impl Drop for DmaBufMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, not used after this.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, self.len) };
    }
}

// <drm/vgem_drm.h>: the drm crate covers the core DRM ioctls, not vgem's own two.
#[repr(C)]
struct VgemFenceAttach {
    handle: u32,
    flags: u32,
    out_fence: u32,
    pad: u32,
}
#[repr(C)]
struct VgemFenceSignal {
    fence: u32,
    flags: u32,
}
pub const VGEM_FENCE_WRITE: u32 = 1;
nix::ioctl_readwrite!(vgem_fence_attach, b'd', 0x41, VgemFenceAttach);
nix::ioctl_write_ptr!(vgem_fence_signal, b'd', 0x42, VgemFenceSignal);

/// A DRM render node, for the `drm` crate's ioctls.
pub struct DrmNode(pub File);

impl AsFd for DrmNode {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}
impl drm::Device for DrmNode {}
// For PRIME import (the crate keeps it with the KMS ioctls; a render node answers it too).
impl drm::control::Device for DrmNode {}

/// The render nodes of the machine with their DRM driver names (DRM_IOCTL_VERSION).
pub fn render_nodes() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/dev/dri") else {
        return out;
    };
    for e in dir.flatten() {
        let path = e.path().to_string_lossy().into_owned();
        if !path.contains("renderD") {
            continue;
        }
        let Ok(f) = File::options().read(true).write(true).open(&path) else {
            continue;
        };
        let node = DrmNode(f);
        if let Ok(d) = drm::Device::get_driver(&node) {
            out.push((path, d.name().to_string_lossy().into_owned()));
        }
    }
    out.sort();
    out
}

/// A vgem device: a DRM driver that honours implicit sync for imported dma-bufs.
pub struct Vgem {
    node: DrmNode,
    pub path: String,
}

impl Vgem {
    /// Opens the vgem render node (the one whose DRM driver is `vgem`).
    pub fn open() -> Result<Vgem> {
        let Some((path, _)) = render_nodes().into_iter().find(|(_, d)| d == "vgem") else {
            bail!("no vgem render node under /dev/dri (is vgem loaded?)")
        };
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {path}"))?;
        Ok(Vgem {
            node: DrmNode(file),
            path,
        })
    }

    /// Imports a dma-buf: PRIME_FD_TO_HANDLE. Returns the GEM handle.
    pub fn import(&self, dmabuf: &impl AsFd) -> Result<u32> {
        let h = drm::control::Device::prime_fd_to_buffer(&self.node, dmabuf.as_fd())
            .context("DRM_IOCTL_PRIME_FD_TO_HANDLE")?;
        Ok(h.into())
    }

    /// VGEM_FENCE_ATTACH: adds a vgem fence to the buffer, failing with EBUSY while a
    /// conflicting fence (for a WRITE fence: any fence) is unsignaled. Returns the fence id.
    pub fn fence_attach(&self, handle: u32, flags: u32) -> nix::Result<u32> {
        let mut arg = VgemFenceAttach {
            handle,
            flags,
            out_fence: 0,
            pad: 0,
        };
        // SAFETY: `arg` is the ioctl's argument struct.
        unsafe { vgem_fence_attach(self.node.0.as_raw_fd(), &mut arg) }?;
        Ok(arg.out_fence)
    }

    /// VGEM_FENCE_SIGNAL.
    pub fn fence_signal(&self, fence: u32) -> nix::Result<()> {
        let arg = VgemFenceSignal { fence, flags: 0 };
        // SAFETY: `arg` is the ioctl's argument struct.
        unsafe { vgem_fence_signal(self.node.0.as_raw_fd(), &arg) }.map(drop)
    }
}

// <linux/dma-heap.h>
#[repr(C)]
struct DmaHeapAllocationData {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
}
nix::ioctl_readwrite!(dma_heap_alloc, b'H', 0, DmaHeapAllocationData);

/// Allocates a `len`-byte dma-buf from the system dma-heap.
pub fn heap_alloc(len: u64) -> Result<File> {
    let heap = File::options()
        .read(true)
        .write(true)
        .open("/dev/dma_heap/system")
        .context("cannot open /dev/dma_heap/system")?;
    let mut arg = DmaHeapAllocationData {
        len,
        fd: 0,
        fd_flags: (libc_o_rdwr() | libc_o_cloexec()) as u32,
        heap_flags: 0,
    };
    // SAFETY: `arg` is the ioctl's argument struct.
    unsafe { dma_heap_alloc(heap.as_raw_fd(), &mut arg) }.context("DMA_HEAP_IOCTL_ALLOC")?;
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { File::from_raw_fd(arg.fd as i32) })
}

fn libc_o_rdwr() -> i32 {
    nix::fcntl::OFlag::O_RDWR.bits()
}

fn libc_o_cloexec() -> i32 {
    nix::fcntl::OFlag::O_CLOEXEC.bits()
}
