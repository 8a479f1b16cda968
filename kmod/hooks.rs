// SPDX-License-Identifier: GPL-2.0

//! The calls from the C glue: the hooked ioctls' pre and post, the buf_done probe, the request
//! hook, the readers' wait before a capture QBUF, the watchdog and the unregistration callback.
//! What each call does to the fences is decided here, from `policy` and `strict`.

use crate::ffi::{self, op, Call, DmaBuf, Vb2Queue};
use crate::node::Node;
use crate::params::Mode;
use crate::policy::{self, BufState, Owner, SnapBuf};
use crate::queue::{Outcome, Queue};
use crate::state::state;
use crate::{
    is_video_capture, strict, Bytes, V4L2_BUF_FLAG_ERROR, V4L2_MEMORY_DMABUF, V4L2_MEMORY_MMAP,
};
use core::ffi::{c_int, c_void};
use core::sync::atomic::Ordering;
use kernel::prelude::*;
use kernel::sync::Arc;

// ------------------------------------------------------------------------------------------
// Calls from the C glue.

/// `Call::rs_flags` bits: what pre did, for post.
mod flag {
    /// A fence was published for this QBUF.
    pub(super) const ARMED: u32 = 1;
    /// The caller owns the queue and pre marked it as cancelling.
    pub(super) const CANCELLING: u32 = 2;
    /// Counted in the node's `busy_calls`.
    pub(super) const BUSY: u32 = 4;
    /// A call on an m2m context's OUTPUT queue; the stashed queue is its CAPTURE queue.
    pub(super) const OUTPUT: u32 = 8;
}

/// # Safety
///
/// Called by glue.c's wrappers only: `rs_node` is the pointer given to vb2r_hooks_get() (an
/// `Arc<Node>` kept until unload), `call` is valid, and the glue.h context rules hold.
#[no_mangle]
unsafe extern "C" fn vb2r_rs_pre(rs_node: *mut c_void, call: *mut Call) -> c_int {
    // SAFETY: see the function's safety section.
    let (node, call) = unsafe { (&*(rs_node as *const Node), &mut *call) };
    match pre(node, call) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// As for [`vb2r_rs_pre`]; called once after every pre with the same `call`.
#[no_mangle]
unsafe extern "C" fn vb2r_rs_post(rs_node: *mut c_void, call: *mut Call, ran: bool, ret: c_int) {
    // SAFETY: see the function's safety section.
    let (node, call) = unsafe { (&*(rs_node as *const Node), &mut *call) };
    // The queue pre looked up (one lookup per call), handed over as a raw Arc.
    let queue = if call.rs_queue.is_null() {
        None
    } else {
        // SAFETY: pre stored an `Arc::into_raw()` here, taken back exactly once, here.
        Some(unsafe { Arc::from_raw(call.rs_queue.cast::<Queue>()) })
    };
    call.rs_queue = core::ptr::null();
    post(node, call, queue, ran, ret);
    if call.rs_flags & flag::BUSY != 0 {
        node.busy_calls.fetch_sub(1, Ordering::Release);
    }
}

/// The vb2_buf_done event of buffer `index` of `q` (glue.h: in place with `vb`, or deferred
/// with `vb` NULL, `state` and `event_ns`). Any context.
#[no_mangle]
extern "C" fn vb2r_rs_buf_done(
    q: *mut Vb2Queue,
    vb: *mut ffi::Vb2Buffer,
    index: u32,
    state_: u32,
    event_ns: u64,
) {
    if crate::queue::PENDING.load(Ordering::Acquire) == 0 {
        // No fence of ours is pending anywhere: nothing to end (mode off's probe costs this).
        return;
    }
    let st = state();
    let Some(reg) = st.find_reg(q) else { return };
    if !reg.output {
        reg.queue
            .buf_done((!vb.is_null()).then_some(vb), index, state_, event_ns);
    } else if !vb.is_null() && st.mode() == Mode::Strict {
        // The end of a slice job that may hold its CAPTURE buffer for the next slice.
        strict::output_done(&reg.queue, vb, index, state_);
    }
}

/// # Safety
///
/// Called by glue.c's req_queue wrapper only (glue.h): `bufs` points at `n` entries, the
/// OUTPUT queue's lock is held.
#[no_mangle]
unsafe extern "C" fn vb2r_rs_req_queue(
    _rs_node: *mut c_void,
    bufs: *const ffi::ReqBuf,
    n: u32,
) -> c_int {
    let st = state();
    if st.mode() != Mode::Strict || n == 0 {
        return 0;
    }
    // SAFETY: see the function's safety section.
    let bufs = unsafe { core::slice::from_raw_parts(bufs, n as usize) };
    let mut published = 0;
    for b in bufs {
        let Some(queue) = st.find_by_output(b.q) else {
            continue;
        };
        if !queue.node.is_live() {
            continue;
        }
        let src = [SnapBuf {
            index: b.index,
            hold: b.hold,
            ts: b.ts,
            ..Default::default()
        }];
        let change = strict::Change {
            src: &src,
            ..Default::default()
        };
        // A request cannot fail once validated: a fence that cannot be published (no memory,
        // a signal while locking) leaves that job unfenced, as mode off would.
        let armed = strict::commit(&queue, &change, u64::MAX, None).unwrap_or(0);
        if armed != 0 {
            published = 1;
        }
    }
    published
}

/// # Safety
///
/// Called by glue.c's unlocked_ioctl wrapper only (glue.h): `rs_node` is the pointer given to
/// vb2r_hooks_get().
///
/// Whether a QBUF on this node needs the readers' check: not in mode off, nor once the node
/// is detached (any context).
#[no_mangle]
unsafe extern "C" fn vb2r_rs_qbuf_checks(rs_node: *mut c_void) -> bool {
    // SAFETY: see the function's safety section.
    let node = unsafe { &*(rs_node as *const Node) };
    state().mode() != Mode::Off && node.is_live()
}

/// The readers' check of a capture QBUF (pre, under the V4L2 lock, before anything is armed):
/// whether another device's fence is still unsignaled on the buffer's dma-bufs (the exports
/// `queue` knows and `imported`, the DMABUF fds of the QBUF). With `wait_readers` on, and the
/// task registered by the unlocked_ioctl wrapper (`c.wait`), it hands those dma-bufs over and
/// fails the QBUF with -EAGAIN, which the wrapper does not return: it waits outside the lock
/// ([`vb2r_rs_qbuf_wait`]) and runs the QBUF again, so that the hardware never writes a picture
/// a GPU is still sampling. With `wait_readers` off (or no registration: no free slot) the
/// buffer is counted as handed to the hardware with a reader busy ("readers busy at QBUF").
/// O_NONBLOCK files wait too: V4L2's O_NONBLOCK concerns DQBUF, and ffmpeg (which opens the
/// decoder O_NONBLOCK) does not expect -EAGAIN from QBUF; the wait is bounded.
fn readers_check(node: &Node, queue: &Queue, c: &Call, imported: &[DmaBuf]) -> Result {
    if !queue.exports_busy(c.index) && !imported.iter().any(|d| d.others_busy()) {
        return Ok(());
    }
    // SAFETY: reads a module parameter.
    let on = unsafe { ffi::vb2r_param_wait_readers() };
    // SAFETY: glue.h: `wait` is NULL or the registration of the task making this call, alive
    // for the call and written by no one else meanwhile.
    let w = match (on, unsafe { c.wait.as_mut() }) {
        (true, Some(w)) => w,
        _ => {
            node.counters.readers_busy.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    };
    let mut n = 0;
    let mut hand = |d: DmaBuf| {
        if n < ffi::WAIT_MAX {
            w.bufs[n] = d.into_raw();
            n += 1;
        }
    };
    for d in queue.exports_of(c.index) {
        hand(d);
    }
    for d in imported {
        hand(d.new_ref());
    }
    w.nbufs = n as u32;
    w.index = c.index;
    w.retry = 1;
    Err(EAGAIN)
}

/// # Safety
///
/// Called by glue.c's unlocked_ioctl wrapper only (glue.h): `rs_node` as for
/// [`vb2r_rs_pre`], `w` the registration a pre hook filled, process context with no lock held.
///
/// Waits for other devices' fences on the dma-bufs [`readers_check`] handed over
/// (interruptibly, bounded by `wait_readers_timeout_ms` over all of this QBUF's waits) and
/// drops them. A signal fails the QBUF with -ERESTARTSYS (restarted or -EINTR, as V4L2 users
/// expect of a blocking ioctl); the bound with -ETIMEDOUT and a log line; 0: run it again.
#[no_mangle]
unsafe extern "C" fn vb2r_rs_qbuf_wait(rs_node: *mut c_void, w: *mut ffi::QbufWait) -> c_int {
    // SAFETY: see the function's safety section.
    let (node, w) = unsafe { (&*(rs_node as *const Node), &mut *w) };
    let n = (w.nbufs as usize).min(ffi::WAIT_MAX);
    w.nbufs = 0;
    // Every reference is taken back first, and dropped whatever happens below.
    let mut bufs: [Option<DmaBuf>; ffi::WAIT_MAX] = Default::default();
    for (slot, p) in bufs.iter_mut().zip(w.bufs.iter_mut()).take(n) {
        let raw = *p;
        *p = core::ptr::null_mut();
        // SAFETY: readers_check() stored references given up with into_raw(); each is taken
        // back once (the entry was cleared above).
        *slot = unsafe { DmaBuf::from_raw(raw) };
    }
    // SAFETY: reads a module parameter.
    let timeout_ms = unsafe { ffi::vb2r_param_wait_readers_timeout_ms() };
    let mut waited = w.waited_ns;
    for d in bufs.iter().flatten() {
        let left = timeout_ms.saturating_sub((waited / 1_000_000) as u32);
        let (r, ns) = d.wait_others(left);
        waited += ns;
        if let Err(e) = r {
            w.waited_ns = waited;
            // By its number: 6.12's kernel::error::code has no ETIMEDOUT.
            if e.to_errno() == -(kernel::bindings::ETIMEDOUT as c_int) {
                node.counters
                    .readers_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                pr_warn!(
                    "{:?}: QBUF of buffer {}: other devices' fences still unsignaled after {} ms (wait_readers_timeout_ms): -ETIMEDOUT\n",
                    Bytes(node.name.bytes()),
                    w.index,
                    timeout_ms
                );
            }
            return e.to_errno();
        }
    }
    w.waited_ns = waited;
    node.counters.readers_waited.fetch_add(1, Ordering::Relaxed);
    node.counters
        .readers_longest_ns
        .fetch_max(waited, Ordering::Relaxed);
    0
}

/// The watchdog's pass (glue.h: every 100 ms from the system workqueue while a node is
/// attached): ends the fences pending for longer than `fence_timeout_ms` with -ETIMEDOUT.
#[no_mangle]
extern "C" fn vb2r_rs_watchdog() {
    // SAFETY: reads a module parameter.
    let ms = unsafe { ffi::vb2r_param_fence_timeout_ms() };
    if ms == 0 {
        return;
    }
    let now = ffi::now_ns();
    for q in state().all_queues().iter() {
        q.expire(now, u64::from(ms) * 1_000_000);
    }
}

/// # Safety
///
/// Called by glue.c's class interface only, in process context (glue.h).
#[no_mangle]
unsafe extern "C" fn vb2r_rs_vdev_removed(vdev: *mut ffi::VideoDevice) {
    state().vdev_removed(vdev as usize);
}

/// The queue a call addresses and whether it belongs to an m2m context (policy: the m2m
/// context's queue of that direction, else the node's own queue of that type).
fn call_queue(c: &Call) -> (*mut Vb2Queue, bool) {
    let mut m2m = 0;
    // SAFETY: in a call on `c.file` (glue.h).
    let q = unsafe {
        if c.op == op::RELEASE {
            ffi::vb2r_file_release_queue(c.file, &mut m2m)
        } else {
            ffi::vb2r_file_queue(c.file, c.type_, &mut m2m)
        }
    };
    (q, m2m != 0)
}

/// Whether the caller owns `q`: an m2m context's queues are its file's; a node's own queue
/// follows vb2's ownership (vb2_queue_is_busy()).
fn owner_of(q: *mut Vb2Queue, m2m: bool, c: &Call) -> Owner {
    if m2m {
        return Owner::Caller;
    }
    // SAFETY: in a call on `c.file` for `q`, with its lock held (RELEASE: before the original
    // release, which is what frees the queue).
    Owner::from_raw(unsafe { ffi::vb2r_queue_owner(q, c.file) })
}

/// The state of the queue a call addresses, made if the node is live (process context).
fn made_queue(node: &Node, c: &Call) -> Option<Arc<Queue>> {
    let (q, m2m) = call_queue(c);
    state().queue_for(node, q, c.type_, m2m).ok().flatten()
}

fn stash(c: &mut Call, q: Option<Arc<Queue>>) {
    if let Some(q) = q {
        c.rs_queue = Arc::into_raw(q).cast();
    }
}

fn pre(node: &Node, c: &mut Call) -> Result {
    if c.op != op::RELEASE && !is_video_capture(c.type_) {
        return pre_output(node, c);
    }
    let st = state();
    let mode = st.mode();
    if c.op == op::QBUF && mode == Mode::Off {
        // Nothing to check or arm, nothing to look up: the wrapper's whole cost.
        return Ok(());
    }
    if c.op == op::DQBUF && mode == Mode::Off && crate::queue::PENDING.load(Ordering::Acquire) == 0
    {
        // Mode off with no fence of ours pending anywhere: nothing to end, make or attach at
        // DQBUF (exports nobody holds any more are dropped at the next REQBUFS, close or
        // detach instead, docs/design.md).
        return Ok(());
    }
    let (q, m2m) = call_queue(c);
    if q.is_null() {
        return Ok(());
    }
    if c.op != op::DQBUF {
        node.busy_calls.fetch_add(1, Ordering::AcqRel);
        c.rs_flags |= flag::BUSY;
    }
    match c.op {
        op::QBUF => {
            if !node.is_live() {
                return Ok(());
            }
            let owner = owner_of(q, m2m, c);
            let mut memory = 0;
            // SAFETY: QBUF of `q`, its lock held (glue.h); the index is bounds-checked in C;
            // `memory` is a valid out-pointer.
            let bstate = BufState::from_raw(unsafe {
                ffi::vb2r_buffer_state_memory(q, c.index, &mut memory)
            });
            if !policy::qbuf_may_arm(owner, memory, c.memory, bstate) {
                return Ok(());
            }
            let mut imported = KVec::new();
            if c.memory == V4L2_MEMORY_DMABUF {
                for &fd in c.fds.iter().take(c.nplanes as usize) {
                    // An fd that is not a dma-buf makes vb2 fail this QBUF: nothing to fence.
                    let Some(d) = DmaBuf::from_fd(fd) else {
                        return Ok(());
                    };
                    imported.push(d, GFP_KERNEL)?;
                }
            } else if c.memory != V4L2_MEMORY_MMAP {
                return Ok(());
            }
            let Some(queue) = st.queue_for(node, q, c.type_, m2m)? else {
                return Ok(());
            };
            // Before anything is armed: a refusal here leaves nothing to undo.
            readers_check(node, &queue, c, &imported)?;
            let armed = match mode {
                Mode::Queue => queue.arm(c.index, &imported, None)?,
                Mode::Strict => strict_capture_qbuf(&queue, q, c.index, &imported)?,
                // dqbuf: the readers' check is all a QBUF does.
                _ => false,
            };
            if armed {
                c.rs_flags |= flag::ARMED;
                // From the publication to the end of the driver's QBUF (which may start the
                // hardware): lockdep checks that nothing there waits for a fence. Not for an
                // imported dma-buf: vb2 attaches and maps it inside QBUF (an allocation, its
                // resv lock), which lockdep reports against the published fence (design.md).
                c.signalling = u32::from(c.memory == V4L2_MEMORY_MMAP);
            }
            stash(c, Some(queue));
        }
        op::STREAMON => {
            if mode != Mode::Strict || !node.is_live() {
                return Ok(());
            }
            let Some(queue) = st.queue_for(node, q, c.type_, m2m)? else {
                return Ok(());
            };
            // Not run as a signalling section: start_streaming() allocates (vivid starts a
            // kthread) and lockdep reports that against the published fences (docs/design.md,
            // "Mode strict").
            c.rs_mask = if m2m {
                let change = strict::Change {
                    cap_on: true,
                    ..Default::default()
                };
                strict::commit(&queue, &change, u64::MAX, None)?
            } else {
                let mut mask = 0;
                for i in vb2_queued(q) {
                    if queue.arm(i, &queue.imported(i), None)? {
                        mask |= 1 << i;
                    }
                }
                mask
            };
            stash(c, Some(queue));
        }
        op::STREAMOFF | op::REQBUFS | op::RELEASE => {
            let owner = owner_of(q, m2m, c);
            if policy::marks_cancelling(c.op, owner) {
                if let Some(x) = st.find_queue(q) {
                    x.set_cancelling(true);
                    c.rs_flags |= flag::CANCELLING;
                    stash(c, Some(x));
                }
            }
            // Whether the caller owns the queue, for post (RELEASE: the original changes it).
            c.flags = owner.raw();
            if c.op == op::RELEASE && !m2m {
                // For post: the original release frees the file's v4l2_fh (and an m2m context
                // with its queues, whose state, if any, is stashed above: the owner's).
                c.rs_vq = q;
            }
        }
        _ => stash(c, st.find_queue(q)),
    }
    Ok(())
}

/// The buffers of a capture device's queue that vb2 holds (queued before STREAMON), below 64.
fn vb2_queued(q: *mut Vb2Queue) -> impl Iterator<Item = u32> {
    let mut bufs = [SnapBuf::default(); ffi::SNAP_MAX];
    // SAFETY: in a call on `q` with its lock held; `bufs` has room for SNAP_MAX entries.
    let n = unsafe { ffi::vb2r_queue_vb2_queued(q, bufs.as_mut_ptr(), ffi::SNAP_MAX as u32) };
    bufs.into_iter()
        .take((n as usize).min(ffi::SNAP_MAX))
        .map(|b| b.index)
        .filter(|&i| i < 64)
}

/// Mode strict, CAPTURE QBUF of buffer `index`: arm it if a committed job will write it (an
/// m2m context), or if its queue streams (a capture device). Process context, before the
/// original QBUF.
fn strict_capture_qbuf(
    queue: &Queue,
    q: *mut Vb2Queue,
    index: u32,
    imported: &[DmaBuf],
) -> Result<bool> {
    if !queue.m2m {
        // SAFETY: in the QBUF of `q`, its lock held.
        let streaming = unsafe { ffi::vb2r_queue_streaming(q) } != 0;
        return if streaming {
            queue.arm(index, imported, None)
        } else {
            Ok(false)
        };
    }
    let change = strict::Change {
        dst: Some(SnapBuf {
            index,
            ..Default::default()
        }),
        ..Default::default()
    };
    let only = if index < 64 { 1 << index } else { 0 };
    Ok(strict::commit(queue, &change, only, Some((index, imported)))? != 0)
}

/// A call on an m2m context's OUTPUT queue, mode strict: an OUTPUT QBUF (not into a request)
/// or STREAMON commits jobs for CAPTURE buffers already queued: arm those.
fn pre_output(node: &Node, c: &mut Call) -> Result {
    const V4L2_BUF_FLAG_REQUEST_FD: u32 = 0x0080_0000;
    const V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF: u32 = 0x0000_0200;
    if !matches!(c.op, op::QBUF | op::STREAMON | op::STREAMOFF) {
        return Ok(());
    }
    if c.op != op::STREAMOFF && state().mode() != Mode::Strict {
        // Only mode strict arms from the OUTPUT side: nothing to look up.
        return Ok(());
    }
    let (q, m2m) = call_queue(c);
    if q.is_null() || !m2m {
        return Ok(());
    }
    node.busy_calls.fetch_add(1, Ordering::AcqRel);
    c.rs_flags |= flag::BUSY;
    let st = state();
    let Some(queue) = st.find_by_output(q) else {
        return Ok(());
    };
    c.rs_flags |= flag::OUTPUT;
    if st.mode() != Mode::Strict || !node.is_live() || c.op == op::STREAMOFF {
        stash(c, Some(queue));
        return Ok(());
    }
    if c.op == op::QBUF && c.flags & V4L2_BUF_FLAG_REQUEST_FD != 0 {
        // Into a request: committed when the request is queued (vb2r_rs_req_queue()).
        return Ok(());
    }
    let src = [SnapBuf {
        index: c.index,
        hold: u32::from(c.flags & V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF != 0),
        ts: c.ts,
        ..Default::default()
    }];
    let change = if c.op == op::QBUF {
        strict::Change {
            src: &src,
            ..Default::default()
        }
    } else {
        strict::Change {
            out_on: true,
            ..Default::default()
        }
    };
    c.rs_mask = strict::commit(&queue, &change, u64::MAX, None)?;
    // An OUTPUT QBUF runs the driver's buf_queue and may start the job: a signalling section.
    // OUTPUT STREAMON is not one, like the CAPTURE side's (start_streaming() allocates).
    c.signalling = u32::from(c.rs_mask != 0 && c.op == op::QBUF);
    stash(c, Some(queue));
    Ok(())
}

fn post(node: &Node, c: &Call, queue: Option<Arc<Queue>>, ran: bool, ret: c_int) {
    let st = state();
    if c.rs_flags & flag::OUTPUT != 0 {
        // An m2m context's OUTPUT queue; `queue` is its CAPTURE queue.
        let Some(q) = queue else { return };
        if c.rs_mask != 0 && (!ran || ret != 0) {
            // The QBUF or STREAMON failed: the jobs it would have committed are not.
            strict::disarm_mask(&q, c.rs_mask);
        }
        if c.op == op::STREAMOFF && ran && ret == 0 && st.mode() == Mode::Strict {
            // No OUTPUT buffer left (v4l2_m2m_streamoff() waited for the running job): no
            // job is committed for any CAPTURE buffer of the context.
            q.cancel_all();
        }
        return;
    }
    match c.op {
        op::STREAMON => {
            if let (Some(q), true) = (&queue, c.rs_mask != 0 && (!ran || ret != 0)) {
                // start_streaming failed: the buffers stay with vb2 and no job is committed.
                strict::disarm_mask(q, c.rs_mask);
            }
        }
        op::QBUF => {
            if c.rs_flags & flag::ARMED != 0 && (!ran || ret != 0) {
                // The buffer never reached the driver.
                if let Some(q) = &queue {
                    q.finish(c.index, Outcome::Ecanceled);
                }
            }
        }
        op::DQBUF => {
            if !ran || ret != 0 {
                return;
            }
            let outcome = policy::dqbuf_outcome(c.flags & V4L2_BUF_FLAG_ERROR != 0);
            // The driver returned it, so buf_done ended its fence; should one still be
            // pending, nothing may race after DQBUF: end it now, in every mode.
            if let Some(q) = &queue {
                q.finish(c.index, outcome);
                if matches!(st.mode(), Mode::Queue | Mode::Strict) {
                    // The next QBUF of this buffer arms without allocating; a failure here
                    // only means that QBUF allocates.
                    let _ = q.refill(c.index);
                } else {
                    q.prune(c.index);
                }
            }
            if st.mode() != Mode::Dqbuf || !node.is_live() {
                return;
            }
            let Some(q) = queue.or_else(|| made_queue(node, c)) else {
                return;
            };
            let imported = if c.memory == V4L2_MEMORY_DMABUF {
                q.imported(c.index)
            } else {
                KVec::new()
            };
            if let Err(e) = q.dqbuf_fence(c.index, outcome, &imported) {
                pr_warn!("dqbuf fence for buffer {}: error {:?}\n", c.index, e);
            }
        }
        op::EXPBUF => {
            if !ran || ret != 0 || c.fd < 0 || !node.is_live() {
                return;
            }
            let Some(q) = queue.or_else(|| made_queue(node, c)) else {
                return;
            };
            let qp = q.raw();
            // SAFETY: in the EXPBUF ioctl of this queue, with its lock held (glue.h).
            if let Some(d) = unsafe { DmaBuf::export_of(c.fd, qp, c.index, c.plane) } {
                if let Err(e) = q.add_export(c.index, d) {
                    pr_warn!("export of buffer {}: error {:?}\n", c.index, e);
                }
            }
        }
        op::REMOVE_BUFS => {
            if let (Some(q), true, 0) = (&queue, ran, ret) {
                q.forget(c.index, c.count);
            }
        }
        op::STREAMOFF | op::REQBUFS | op::RELEASE => {
            let owner = Owner::from_raw(c.flags);
            let mut action = policy::after_call(c.op, ran, ret, owner, c.count);
            if c.op == op::RELEASE && node.unregistered.load(Ordering::Acquire) {
                // The device was unregistered (vb2 released a node's own queue then): nothing
                // can use this queue's state any more.
                action = policy::AfterCall::Kill;
            }
            let q = match queue {
                Some(q) => Some(q),
                // Not stashed (not the owner): only the unregistered close kills. Not
                // call_queue(c): the original release freed what leads from the file to it.
                None if action == policy::AfterCall::Kill => st.find_queue(c.rs_vq),
                None => None,
            };
            let Some(q) = q else { return };
            match action {
                policy::AfterCall::Nothing => {}
                policy::AfterCall::All => {
                    q.cancel_all();
                    if c.op == op::REQBUFS {
                        // vb2 freed every buffer (and made new ones): their exports belong to
                        // buffers that are gone.
                        q.forget(0, u32::MAX);
                    }
                }
                policy::AfterCall::Gone => {
                    q.cancel_gone();
                }
                policy::AfterCall::Kill => {
                    st.kill_state(&q);
                }
            }
            q.set_cancelling(false);
        }
        _ => {}
    }
}
