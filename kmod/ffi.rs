// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C glue in `glue.c` (contracts in `glue.h`) and the thin owning wrappers
//! around what it hands out: [`Fence`], [`DmaBuf`] and [`Vdev`]. Nothing here decides anything.

use crate::policy::SnapBuf;
use core::ffi::{c_int, c_void};
use core::ptr::NonNull;
use kernel::ffi::c_char;
use kernel::prelude::*;

/// Opaque C types (only ever handled by pointer).
#[repr(C)]
pub(crate) struct DmaFence {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct RawDmaBuf {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct VideoDevice {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct Vb2Queue {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct Vb2Buffer {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct Hooks {
    _p: [u8; 0],
}
#[repr(C)]
pub(crate) struct File {
    _p: [u8; 0],
}

/// Most planes a V4L2 buffer has (`VB2R_MAX_PLANES`).
pub(crate) const MAX_PLANES: usize = 8;

/// `enum vb2r_op`.
pub(crate) mod op {
    pub(crate) const REQBUFS: u32 = 1;
    pub(crate) const REMOVE_BUFS: u32 = 2;
    pub(crate) const QBUF: u32 = 3;
    pub(crate) const DQBUF: u32 = 4;
    pub(crate) const EXPBUF: u32 = 5;
    pub(crate) const STREAMON: u32 = 6;
    pub(crate) const STREAMOFF: u32 = 7;
    pub(crate) const RELEASE: u32 = 8;
}

/// `struct vb2r_call`: what a hooked call is about (see glue.h).
#[repr(C)]
pub(crate) struct Call {
    pub(crate) op: u32,
    pub(crate) type_: u32,
    pub(crate) index: u32,
    pub(crate) count: u32,
    pub(crate) memory: u32,
    pub(crate) plane: u32,
    pub(crate) flags: u32,
    pub(crate) nplanes: u32,
    pub(crate) fd: i32,
    pub(crate) fds: [i32; MAX_PLANES],
    pub(crate) ts: u64,
    pub(crate) file: *mut File,
    /// Set by pre: run the original inside a fence signalling section.
    pub(crate) signalling: u32,
    /// Scratch for Rust between pre and post (glue.c zeroes both).
    pub(crate) rs_flags: u32,
    pub(crate) rs_mask: u64,
    pub(crate) rs_queue: *const c_void,
    /// RELEASE: the node's own queue pre found, for post (after the original release the file
    /// no longer leads to it: its `v4l2_fh` is freed).
    pub(crate) rs_vq: *mut Vb2Queue,
    /// QBUF: the task's registration for a readers' wait (NULL: none).
    pub(crate) wait: *mut QbufWait,
}

/// Most buffers a snapshot lists per side (`VB2R_SNAP_MAX`).
pub(crate) const SNAP_MAX: usize = 32;

/// `struct vb2r_m2m_snap`.
#[repr(C)]
pub(crate) struct M2mSnap {
    pub(crate) out_streaming: u32,
    pub(crate) cap_streaming: u32,
    pub(crate) ignore_cap_streaming: u32,
    pub(crate) nsrc: u32,
    pub(crate) ndst: u32,
    pub(crate) nsrc_vb2: u32,
    pub(crate) ndst_vb2: u32,
    pub(crate) pad: u32,
    pub(crate) src: [SnapBuf; SNAP_MAX],
    pub(crate) dst: [SnapBuf; SNAP_MAX],
    pub(crate) src_vb2: [SnapBuf; SNAP_MAX],
    pub(crate) dst_vb2: [SnapBuf; SNAP_MAX],
}

/// `struct vb2r_req_buf`.
#[repr(C)]
pub(crate) struct ReqBuf {
    pub(crate) q: *mut Vb2Queue,
    pub(crate) index: u32,
    pub(crate) hold: u32,
    pub(crate) ts: u64,
}

/// Most dma-bufs a QBUF's readers' wait covers (`VB2R_WAIT_MAX`).
pub(crate) const WAIT_MAX: usize = 16;

/// `struct vb2r_qbuf_wait`: a QBUF's registration by the unlocked_ioctl wrapper (glue.h).
#[repr(C)]
pub(crate) struct QbufWait {
    pub(crate) retry: u32,
    pub(crate) nbufs: u32,
    pub(crate) index: u32,
    pub(crate) pad: u32,
    pub(crate) bufs: [*mut RawDmaBuf; WAIT_MAX],
    pub(crate) waited_ns: u64,
}

/// `struct vb2r_vdev_info`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct VdevInfo {
    pub(crate) vfl_type: u32,
    pub(crate) vfl_video: u32,
    pub(crate) device_caps: u32,
    pub(crate) has_qbuf: u32,
    pub(crate) uses_fh: u32,
    pub(crate) registered: u32,
}

extern "C" {
    fn vb2r_version() -> *const c_char;
    fn vb2r_param_mode() -> *const c_char;
    fn vb2r_param_attach() -> *const c_char;

    pub(crate) fn vb2r_glue_init();
    pub(crate) fn vb2r_glue_exit();
    pub(crate) fn vb2r_probe_register() -> c_int;
    pub(crate) fn vb2r_probe_unregister();
    pub(crate) fn vb2r_watch_class(vdev: *mut VideoDevice) -> c_int;

    fn vb2r_vdev_get_from_fd(fd: c_int, err: *mut c_int) -> *mut VideoDevice;
    fn vb2r_vdev_get_from_path(path: *const c_char, err: *mut c_int) -> *mut VideoDevice;
    fn vb2r_vdev_put(vdev: *mut VideoDevice);
    fn vb2r_vdev_info(vdev: *mut VideoDevice, info: *mut VdevInfo);
    fn vb2r_vdev_name(vdev: *mut VideoDevice, buf: *mut c_char, len: usize);
    fn vb2r_vdev_driver(vdev: *mut VideoDevice, buf: *mut c_char, len: usize);

    pub(crate) fn vb2r_hooks_get(vdev: *mut VideoDevice, rs_node: *mut c_void) -> *mut Hooks;
    pub(crate) fn vb2r_hooks_install(h: *mut Hooks);
    pub(crate) fn vb2r_hooks_remove(h: *mut Hooks);

    pub(crate) fn vb2r_file_queue(file: *mut File, type_: u32, m2m: *mut u32) -> *mut Vb2Queue;
    pub(crate) fn vb2r_file_release_queue(file: *mut File, m2m: *mut u32) -> *mut Vb2Queue;
    pub(crate) fn vb2r_queue_owner(q: *mut Vb2Queue, file: *mut File) -> u32;
    pub(crate) fn vb2r_queue_max_buffers(q: *mut Vb2Queue) -> u32;
    pub(crate) fn vb2r_vb_state(vb: *mut Vb2Buffer) -> u32;
    pub(crate) fn vb2r_buffer_state(q: *mut Vb2Queue, index: u32) -> u32;
    pub(crate) fn vb2r_buffer_state_memory(q: *mut Vb2Queue, index: u32, memory: *mut u32) -> u32;
    pub(crate) fn vb2r_buffer_planes(q: *mut Vb2Queue, index: u32) -> u32;
    pub(crate) fn vb2r_m2m_snapshot(cap_q: *mut Vb2Queue, s: *mut M2mSnap, vb2_held: bool);
    pub(crate) fn vb2r_m2m_src_ready(cap_q: *mut Vb2Queue) -> u32;
    pub(crate) fn vb2r_m2m_out_queue(cap_q: *mut Vb2Queue) -> *mut Vb2Queue;
    pub(crate) fn vb2r_queue_streaming(q: *mut Vb2Queue) -> u32;
    pub(crate) fn vb2r_queue_vb2_queued(q: *mut Vb2Queue, out: *mut SnapBuf, max: u32) -> u32;
    pub(crate) fn vb2r_vb_output_info(vb: *mut Vb2Buffer, hold: *mut u32, ts: *mut u64);
    pub(crate) fn vb2r_mdev_hooks_install(vdev: *mut VideoDevice, rs_node: *mut c_void) -> c_int;
    pub(crate) fn vb2r_mdev_hooks_remove(vdev: *mut VideoDevice);
    pub(crate) fn vb2r_param_fence_timeout_ms() -> u32;
    pub(crate) fn vb2r_watchdog_start();
    pub(crate) fn vb2r_watchdog_stop();
    pub(crate) fn vb2r_fd_queue(fd: c_int, type_: u32, err: *mut c_int) -> *mut Vb2Queue;
    pub(crate) fn vb2r_sync_file_fd(f: *mut DmaFence) -> c_int;
    fn vb2r_buffer_imported_dmabuf(q: *mut Vb2Queue, index: u32, plane: u32) -> *mut RawDmaBuf;

    fn vb2r_dmabuf_get(fd: c_int) -> *mut RawDmaBuf;
    fn vb2r_dmabuf_get_export(
        fd: c_int,
        q: *mut Vb2Queue,
        index: u32,
        plane: u32,
    ) -> *mut RawDmaBuf;
    fn vb2r_dmabuf_put(d: *mut RawDmaBuf);
    fn vb2r_dmabuf_ref(d: *mut RawDmaBuf) -> *mut RawDmaBuf;
    fn vb2r_dmabuf_wait_others(d: *mut RawDmaBuf, timeout_ms: u32, waited_ns: *mut u64) -> c_int;
    fn vb2r_dmabuf_others_busy(d: *mut RawDmaBuf) -> bool;
    pub(crate) fn vb2r_param_wait_readers() -> bool;
    pub(crate) fn vb2r_param_wait_readers_timeout_ms() -> u32;

    fn vb2r_fence_context() -> u64;
    fn vb2r_fence_pins_module() -> bool;
    fn vb2r_fence_create(context: u64, seqno: u64, timeline: *const c_char) -> *mut DmaFence;
    fn vb2r_fence_publish(bufs: *const *mut RawDmaBuf, n: u32, f: *mut DmaFence) -> c_int;
    fn vb2r_dmabuf_only_ours(d: *mut RawDmaBuf) -> bool;
    fn vb2r_fence_signal(f: *mut DmaFence, error: c_int);
    fn vb2r_fence_get(f: *mut DmaFence) -> *mut DmaFence;
    fn vb2r_fence_put(f: *mut DmaFence);
    fn vb2r_fence_signaled(f: *mut DmaFence) -> bool;
    pub(crate) fn vb2r_ktime_ns() -> u64;
    pub(crate) fn vb2r_sleep_ms(ms: u32);
    pub(crate) fn vb2r_param_test_kill_delay_ms() -> u32;
}

/// Borrows a NUL-terminated string that lives as long as the module.
///
/// # Safety
///
/// `p` must be non-NULL, NUL-terminated, and valid and unchanged for the module's lifetime.
unsafe fn static_bytes(p: *const c_char) -> &'static [u8] {
    // SAFETY: guaranteed by the caller.
    let s = unsafe { kernel::str::CStr::from_char_ptr(p) };
    // 7.x's kernel::str::CStr is core's (`to_bytes`); 6.12's is its own type (`as_bytes`).
    #[cfg(not(vb2r_k612))]
    return s.to_bytes();
    #[cfg(vb2r_k612)]
    return s.as_bytes();
}

/// The module version (`VB2R_VERSION` in glue.h).
pub(crate) fn version() -> &'static [u8] {
    // SAFETY: `vb2r_version` returns a string literal (glue.h contract).
    unsafe { static_bytes(vb2r_version()) }
}

/// The raw text of the `mode=` parameter.
pub(crate) fn param_mode() -> &'static [u8] {
    // SAFETY: glue.h: a NUL-terminated module-lifetime buffer, read-only after load (perm 0444).
    unsafe { static_bytes(vb2r_param_mode()) }
}

/// The raw text of the `attach=` parameter.
pub(crate) fn param_attach() -> &'static [u8] {
    // SAFETY: glue.h: a NUL-terminated module-lifetime buffer, read-only after load (perm 0444).
    unsafe { static_bytes(vb2r_param_attach()) }
}

/// Monotonic time in nanoseconds (any context).
pub(crate) fn now_ns() -> u64 {
    // SAFETY: ktime_get_ns() has no preconditions.
    unsafe { vb2r_ktime_ns() }
}

/// A new fence context (any context).
pub(crate) fn fence_context() -> u64 {
    // SAFETY: dma_fence_context_alloc() has no preconditions.
    unsafe { vb2r_fence_context() }
}

/// Whether each fence pins the module until freed (kernels before 7.2; glue.h).
pub(crate) fn fence_pins_module() -> bool {
    // SAFETY: a constant of the build, no preconditions.
    unsafe { vb2r_fence_pins_module() }
}

fn errno(e: c_int) -> Error {
    Error::from_errno(e)
}

/// A fixed-size NUL-terminated name copied from C.
#[derive(Clone, Copy)]
pub(crate) struct Name(pub(crate) [u8; 32]);

impl Name {
    pub(crate) fn bytes(&self) -> &[u8] {
        let len = self.0.iter().position(|&c| c == 0).unwrap_or(self.0.len());
        &self.0[..len]
    }
}

/// One reference to a `struct dma_fence` made by `vb2r_fence_create()`.
pub(crate) struct Fence(NonNull<DmaFence>);

// SAFETY: dma_fence is reference counted and its operations are thread-safe.
unsafe impl Send for Fence {}
// SAFETY: see above; `&Fence` only signals or queries, both thread-safe.
unsafe impl Sync for Fence {}

impl Fence {
    /// A new unsignaled fence (process context: allocates with GFP_KERNEL).
    pub(crate) fn new(context: u64, seqno: u64, timeline: &kernel::str::CStr) -> Result<Self> {
        // SAFETY: `timeline` is NUL-terminated; C copies it.
        let f = unsafe { vb2r_fence_create(context, seqno, timeline.as_char_ptr()) };
        NonNull::new(f).map(Fence).ok_or(ENOMEM)
    }

    /// Another reference to the same fence.
    pub(crate) fn new_ref(f: &Fence) -> Fence {
        // SAFETY: `f` holds a reference, so the fence is alive; dma_fence_get() takes another
        // and returns the same non-NULL pointer.
        Fence(unsafe { NonNull::new_unchecked(vb2r_fence_get(f.0.as_ptr())) })
    }

    /// Sets `error` (0 for none) and signals, in a lockdep signalling section (any context).
    pub(crate) fn signal(&self, error: c_int) {
        // SAFETY: we hold a reference, so the fence is alive.
        unsafe { vb2r_fence_signal(self.0.as_ptr(), error) }
    }

    /// The `struct dma_fence` pointer (the reference stays with `self`).
    pub(crate) fn as_ptr(&self) -> *mut DmaFence {
        self.0.as_ptr()
    }

    /// Whether the fence is signaled (any context).
    pub(crate) fn is_signaled(&self) -> bool {
        // SAFETY: we hold a reference, so the fence is alive.
        unsafe { vb2r_fence_signaled(self.0.as_ptr()) }
    }
}

impl Drop for Fence {
    fn drop(&mut self) {
        // SAFETY: we own one reference, given up here.
        unsafe { vb2r_fence_put(self.0.as_ptr()) }
    }
}

/// One reference to a `struct dma_buf`.
pub(crate) struct DmaBuf(NonNull<RawDmaBuf>);

// SAFETY: a dma_buf is reference counted (its file) and its resv has its own lock.
unsafe impl Send for DmaBuf {}
// SAFETY: see above.
unsafe impl Sync for DmaBuf {}

impl DmaBuf {
    /// The dma-buf behind `fd` (process context), if it is one.
    pub(crate) fn from_fd(fd: i32) -> Option<Self> {
        // SAFETY: dma_buf_get() validates `fd`.
        NonNull::new(unsafe { vb2r_dmabuf_get(fd) }).map(DmaBuf)
    }

    /// The dma-buf behind `fd`, if it is an export of `plane` of buffer `index` of `q`.
    ///
    /// # Safety
    ///
    /// `q` must be alive and its lock held (an ioctl of that queue).
    pub(crate) unsafe fn export_of(
        fd: i32,
        q: *mut Vb2Queue,
        index: u32,
        plane: u32,
    ) -> Option<Self> {
        // SAFETY: guaranteed by the caller.
        NonNull::new(unsafe { vb2r_dmabuf_get_export(fd, q, index, plane) }).map(DmaBuf)
    }

    /// The dma-buf imported into `plane` of buffer `index` of a DMABUF queue `q`.
    ///
    /// # Safety
    ///
    /// `q` must be alive and its lock held (an ioctl of that queue).
    pub(crate) unsafe fn imported(q: *mut Vb2Queue, index: u32, plane: u32) -> Option<Self> {
        // SAFETY: guaranteed by the caller.
        NonNull::new(unsafe { vb2r_buffer_imported_dmabuf(q, index, plane) }).map(DmaBuf)
    }

    /// Whether our reference is the last one: nobody can see a fence on this dma-buf any more.
    pub(crate) fn only_ours(&self) -> bool {
        // SAFETY: we hold a reference.
        unsafe { vb2r_dmabuf_only_ours(self.0.as_ptr()) }
    }

    /// Another reference to the same dma-buf.
    pub(crate) fn new_ref(&self) -> DmaBuf {
        // SAFETY: we hold a reference, so the dma-buf is alive; C takes another and returns
        // the same non-NULL pointer.
        DmaBuf(unsafe { NonNull::new_unchecked(vb2r_dmabuf_ref(self.0.as_ptr())) })
    }

    /// Waits (interruptibly, at most `timeout_ms`) for the unsignaled fences of other devices on
    /// this dma-buf; `Ok(ns waited)` or -ERESTARTSYS / -ETIMEDOUT (process context, no lock).
    pub(crate) fn wait_others(&self, timeout_ms: u32) -> (Result, u64) {
        let mut ns = 0;
        // SAFETY: we hold a reference; `ns` is a valid out-pointer.
        let r = unsafe { vb2r_dmabuf_wait_others(self.0.as_ptr(), timeout_ms, &mut ns) };
        (if r == 0 { Ok(()) } else { Err(errno(r)) }, ns)
    }

    /// Gives up ownership of the reference (for [`QbufWait`]).
    pub(crate) fn into_raw(self) -> *mut RawDmaBuf {
        let p = self.0.as_ptr();
        core::mem::forget(self);
        p
    }

    /// Takes back a reference [`Self::into_raw`] gave up.
    ///
    /// # Safety
    ///
    /// `p` must come from [`Self::into_raw`], and be taken back once.
    pub(crate) unsafe fn from_raw(p: *mut RawDmaBuf) -> Option<Self> {
        NonNull::new(p).map(DmaBuf)
    }

    /// Whether another device's fence on this dma-buf is unsignaled now (any context).
    pub(crate) fn others_busy(&self) -> bool {
        // SAFETY: we hold a reference.
        unsafe { vb2r_dmabuf_others_busy(self.0.as_ptr()) }
    }

    /// Whether `self` and `other` are the same dma-buf.
    pub(crate) fn same(&self, other: &DmaBuf) -> bool {
        self.0 == other.0
    }
}

/// Most dma-bufs one fence is published on (the C side takes 32).
pub(crate) const PUBLISH_MAX: usize = 16;

/// Up to [`PUBLISH_MAX`] dma-bufs, on the stack (the QBUF path allocates nothing for them).
pub(crate) struct DmaBufSet<'a> {
    bufs: [Option<&'a DmaBuf>; PUBLISH_MAX],
    len: usize,
}

impl<'a> DmaBufSet<'a> {
    pub(crate) fn new() -> Self {
        DmaBufSet {
            bufs: [None; PUBLISH_MAX],
            len: 0,
        }
    }

    /// Adds `d`; -E2BIG when full.
    pub(crate) fn push(&mut self, d: &'a DmaBuf) -> Result {
        let slot = self.bufs.get_mut(self.len).ok_or(E2BIG)?;
        *slot = Some(d);
        self.len += 1;
        Ok(())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a DmaBuf> + '_ {
        self.bufs[..self.len].iter().flatten().copied()
    }
}

/// Adds `fence` as a WRITE fence to the resv of every dma-buf in `bufs` (distinct), all or
/// none: every resv is locked and has a slot reserved before the fence is added to any
/// (process context, may sleep, interruptible).
pub(crate) fn publish<'a>(bufs: impl Iterator<Item = &'a DmaBuf>, fence: &Fence) -> Result {
    let mut raw = [core::ptr::null_mut::<RawDmaBuf>(); PUBLISH_MAX];
    let mut n = 0usize;
    for d in bufs {
        *raw.get_mut(n).ok_or(E2BIG)? = d.0.as_ptr();
        n += 1;
    }
    if n == 0 {
        return Ok(());
    }
    // SAFETY: `raw` holds `n` dma-buf pointers, each kept alive by a `DmaBuf` the caller holds;
    // the fence is kept alive by `fence`.
    let r = unsafe { vb2r_fence_publish(raw.as_ptr(), n as u32, fence.0.as_ptr()) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno(r))
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: we own one reference, given up here.
        unsafe { vb2r_dmabuf_put(self.0.as_ptr()) }
    }
}

/// A pinned `struct video_device`: its driver module cannot go and the struct stays allocated
/// until this is dropped.
pub(crate) struct Vdev(NonNull<VideoDevice>);

// SAFETY: the pin is a module reference and a device reference, both thread-safe.
unsafe impl Send for Vdev {}
// SAFETY: see above.
unsafe impl Sync for Vdev {}

impl Vdev {
    /// The node behind a V4L2 fd of the calling process.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        let mut err = 0;
        // SAFETY: `err` is a valid out-pointer.
        let v = unsafe { vb2r_vdev_get_from_fd(fd, &mut err) };
        NonNull::new(v).map(Vdev).ok_or_else(|| errno(err))
    }

    /// The node at a device path (checked to be a V4L2 node before it is opened).
    pub(crate) fn from_path(path: &kernel::str::CStr) -> Result<Self> {
        let mut err = 0;
        // SAFETY: `path` is NUL-terminated; `err` is a valid out-pointer.
        let v = unsafe { vb2r_vdev_get_from_path(path.as_char_ptr(), &mut err) };
        NonNull::new(v).map(Vdev).ok_or_else(|| errno(err))
    }

    pub(crate) fn as_ptr(&self) -> *mut VideoDevice {
        self.0.as_ptr()
    }

    /// The facts that decide whether the node can be attached.
    pub(crate) fn info(&self) -> VdevInfo {
        let mut i = VdevInfo::default();
        // SAFETY: the device is pinned; `i` is a valid out-pointer.
        unsafe { vb2r_vdev_info(self.as_ptr(), &mut i) };
        i
    }

    /// The node's name, e.g. `video3`.
    pub(crate) fn name(&self) -> Name {
        let mut n = Name([0; 32]);
        // SAFETY: the device is pinned; the buffer is valid for its length.
        unsafe { vb2r_vdev_name(self.as_ptr(), n.0.as_mut_ptr().cast(), n.0.len()) };
        n
    }

    /// The name of the node's driver, e.g. `visl`.
    pub(crate) fn driver(&self) -> Name {
        let mut n = Name([0; 32]);
        // SAFETY: the device is pinned; the buffer is valid for its length.
        unsafe { vb2r_vdev_driver(self.as_ptr(), n.0.as_mut_ptr().cast(), n.0.len()) };
        n
    }
}

impl Drop for Vdev {
    fn drop(&mut self) {
        // SAFETY: we own the pin taken by vb2r_vdev_get_from_*().
        unsafe { vb2r_vdev_put(self.0.as_ptr()) }
    }
}
