// SPDX-License-Identifier: GPL-2.0

//! vb2_resv: implicit-sync WRITE fences on the dma-bufs of V4L2 CAPTURE buffers.
//!
//! While the hardware owns a CAPTURE buffer of an attached node, every dma-buf that backs it
//! (each VIDIOC_EXPBUF export, or the imported dma-buf of a DMABUF queue) carries a
//! `DMA_RESV_USAGE_WRITE` fence, armed in QBUF before the driver can see the buffer and signaled
//! when the driver returns it (`-EIO` for an ERROR buffer, `-ECANCELED` for cancelled ones).
//! See `docs/design.md` for the hook design, the contexts each part runs in and the lock order.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::sync::{new_mutex, Arc, Mutex};

// The Rust-for-Linux API this is built against is chosen at compile time (Kbuild): 7.x's own
// abstractions, or on 6.12 LTS the same shapes from k612.rs (see there and docs/design.md).
// Before 7.3, SpinLockIrq is k612.rs's too (`vb2r_no_spinlock_irq`).
#[cfg(vb2r_k612)]
use k612::{debugfs, KVecExt};
#[cfg(vb2r_no_spinlock_irq)]
use k612::{new_spinlock_irq, SpinLockIrq};
#[cfg(not(vb2r_k612))]
use kernel::debugfs;
#[cfg(vb2r_k612)]
use kernel::fmt;
#[cfg(not(vb2r_no_spinlock_irq))]
use kernel::sync::{new_spinlock_irq, SpinLockIrq};

mod control;
mod ffi;
#[cfg(vb2r_no_spinlock_irq)]
mod k612;
mod node;
mod params;
mod policy;
mod queue;

use ffi::{op, Call, DmaBuf, Vb2Queue, Vdev};
use node::Node;
use params::{AttachError, Mode, Target};
use policy::{BufState, Owner};
use queue::{Outcome, Queue};

#[cfg(not(vb2r_k612))]
module! {
    type: Vb2Resv,
    name: "vb2_resv",
    authors: ["vb2-resv developers"],
    description: "dma_resv WRITE fences on V4L2 CAPTURE buffers while the hardware owns them",
    license: "GPL",
}

// 6.12's module! has `author` (one string) where 7.x has `authors`.
#[cfg(vb2r_k612)]
module! {
    type: Vb2Resv,
    name: "vb2_resv",
    author: "vb2-resv developers",
    description: "dma_resv WRITE fences on V4L2 CAPTURE buffers while the hardware owns them",
    license: "GPL",
}

/// Formats a byte string for a log line (lossy: non-printable bytes become `?`).
///
/// It implements `Debug`, used as `{:?}`, because that is the one formatting trait that both
/// 6.12 (`core::fmt`) and 7.x (`kernel::fmt`, which forwards `Debug` for foreign types) accept.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl core::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &c in self.0 {
            let c = if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            };
            core::fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

/// `V4L2_BUF_TYPE_VIDEO_CAPTURE` and `_MPLANE` (UAPI values).
const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
const V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE: u32 = 9;
/// `V4L2_MEMORY_MMAP`, `V4L2_MEMORY_DMABUF` (UAPI values).
const V4L2_MEMORY_MMAP: u32 = 1;
const V4L2_MEMORY_DMABUF: u32 = 4;
/// `V4L2_BUF_FLAG_ERROR` (UAPI value).
const V4L2_BUF_FLAG_ERROR: u32 = 0x40;

fn is_video_capture(type_: u32) -> bool {
    type_ == V4L2_BUF_TYPE_VIDEO_CAPTURE || type_ == V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE
}

/// A known node: the Rust state, the C hook tables made for it, and its pin while attached.
struct NodeEntry {
    node: Arc<Node>,
    hooks: *mut ffi::Hooks,
    pin: Option<Vdev>,
    debugfs: Option<Pin<KBox<debugfs::File<Arc<Node>>>>>,
}

// SAFETY: `hooks` is only handed back to the C glue under `State::nodes`; the tables it points
// at live until vb2r_glue_exit().
unsafe impl Send for NodeEntry {}

/// Everything the module knows. Lives from init to exit, pinned; the C glue, the probe and the
/// misc device reach it through [`STATE`].
#[pin_data]
pub(crate) struct State {
    mode: AtomicU32,
    next_queue_id: AtomicU32,
    /// Every node ever attached (until unload); attach/detach and debugfs take it.
    #[pin]
    nodes: Mutex<KVec<NodeEntry>>,
    /// Every live CAPTURE queue of an attached node, looked up by `vb2_queue` address from any
    /// context (the vb2_buf_done probe may run in hard IRQ).
    #[pin]
    queues: SpinLockIrq<KVec<Arc<Queue>>>,
    debugfs: debugfs::Dir,
}

/// The module's state, set at init before anything can call in and cleared at exit after the
/// last caller is gone (glue.c's vb2r_glue_exit() waits for them).
static STATE: AtomicPtr<State> = AtomicPtr::new(core::ptr::null_mut());

/// The module's state, for code that runs while the module is loaded.
pub(crate) fn state() -> &'static State {
    // SAFETY: STATE is set before any hook, probe or misc device is registered and cleared only
    // after all of them are gone; while one of them runs the pinned State is alive.
    unsafe { &*STATE.load(Ordering::Acquire) }
}

impl State {
    pub(crate) fn mode(&self) -> Mode {
        Mode::from_index(self.mode.load(Ordering::Relaxed))
    }

    pub(crate) fn set_mode(&self, m: Mode) {
        self.mode.store(m.index(), Ordering::Relaxed);
        pr_info!("mode set to {}\n", m.name());
    }

    /// The state of queue `q` (any context): a binary search of the registry, which is kept
    /// sorted by queue address.
    fn find_queue(&self, q: *mut Vb2Queue) -> Option<Arc<Queue>> {
        let key = q as usize;
        let g = self.queues.lock();
        g.binary_search_by_key(&key, |x| x.q)
            .ok()
            .map(|i| g[i].clone())
    }

    /// The state of `q`, made if the node is live and there is none yet (process context).
    fn queue_for(
        &self,
        node: &Node,
        q: *mut Vb2Queue,
        type_: u32,
        m2m: bool,
    ) -> Result<Option<Arc<Queue>>> {
        if let Some(x) = self.find_queue(q) {
            return Ok(Some(x));
        }
        let Some(node) = node_arc(node) else {
            return Ok(None);
        };
        let id = self.next_queue_id.fetch_add(1, Ordering::Relaxed);
        let new = Queue::new(q, node.clone(), id, type_, m2m)?;
        // Room for one more, allocated outside the spinlock and swapped in under it.
        loop {
            let (len, cap) = {
                let g = self.queues.lock();
                (g.len(), g.capacity())
            };
            if len < cap {
                let mut g = self.queues.lock();
                // Checked again under the lock: a detach may have run, or another task raced us.
                if !node.is_live() {
                    return Ok(None);
                }
                let at = match g.binary_search_by_key(&new.q, |x| x.q) {
                    Ok(i) => return Ok(Some(g[i].clone())),
                    Err(at) => at,
                };
                if g.len() < g.capacity() {
                    // Within capacity: cannot allocate or fail.
                    let _ = g.insert_within_capacity(at, new.clone());
                    return Ok(Some(new));
                }
                continue;
            }
            let mut bigger = KVec::with_capacity(cap * 2 + 4, GFP_KERNEL)?;
            let old = {
                let mut g = self.queues.lock();
                if g.capacity() >= bigger.capacity() {
                    continue;
                }
                for x in g.drain_all() {
                    let _ = bigger.push_within_capacity(x);
                }
                core::mem::replace(&mut *g, bigger)
            };
            drop(old);
        }
    }

    /// Removes `q`'s state from the registry (it is killed by the caller).
    fn remove_queue(&self, key: usize) -> Option<Arc<Queue>> {
        let mut g = self.queues.lock();
        let i = g.binary_search_by_key(&key, |x| x.q).ok()?;
        let x = g.remove(i).ok();
        drop(g);
        x
    }

    /// The queues of `node` (process context).
    fn queues_of(&self, node: &Node) -> KVec<Arc<Queue>> {
        let mut out = KVec::new();
        let mut i = 0;
        loop {
            // One at a time: the result grows outside the spinlock.
            let next = {
                let g = self.queues.lock();
                g.iter().filter(|x| x.node.vdev == node.vdev).nth(i).cloned()
            };
            let Some(x) = next else { break };
            if out.push(x, GFP_KERNEL).is_err() {
                break;
            }
            i += 1;
        }
        out
    }

    /// Removes and kills every queue of `node` (process context). Returns the fences cancelled.
    fn kill_queues_of(&self, node: &Node) -> u32 {
        let mut n = 0;
        loop {
            let victim = {
                let g = self.queues.lock();
                g.iter().find(|x| x.node.vdev == node.vdev).map(|x| x.q)
            };
            let Some(key) = victim else { break };
            if let Some(x) = self.remove_queue(key) {
                n += x.kill();
            }
        }
        n
    }

    /// Attaches to the node `vdev` (process context).
    pub(crate) fn attach(&self, vdev: Vdev) -> Result {
        policy::attachable(&vdev.info())?;
        // Outside `nodes`: the class interface's callback takes it.
        // SAFETY: `vdev` is pinned.
        let r = unsafe { ffi::vb2r_watch_class(vdev.as_ptr()) };
        if r != 0 {
            pr_err!("cannot watch the video class for unregistration: error {}\n", r);
            return Err(Error::from_errno(r));
        }
        let mut nodes = self.nodes.lock();
        let key = vdev.as_ptr() as usize;
        let idx = match nodes.iter().position(|e| e.node.vdev == key) {
            Some(i) => {
                if nodes[i].node.is_attached() {
                    pr_err!(
                        "{:?} is already attached\n",
                        Bytes(nodes[i].node.name.bytes())
                    );
                    return Err(EBUSY);
                }
                i
            }
            None => {
                let node = Arc::new(
                    Node {
                        vdev: key,
                        name: vdev.name(),
                        driver: vdev.driver(),
                        attached: Default::default(),
                        unregistered: Default::default(),
                        busy_calls: Default::default(),
                        counters: Default::default(),
                    },
                    GFP_KERNEL,
                )?;
                let name =
                    kernel::str::CString::try_from_fmt(fmt!("{:?}", Bytes(node.name.bytes())))?;
                let file = KBox::pin_init(
                    self.debugfs
                        .read_callback_file(&name, node.clone(), &|n: &Arc<Node>, f| {
                            show_node(n, f)
                        }),
                    GFP_KERNEL,
                )
                .ok();
                nodes.push(
                    NodeEntry {
                        node,
                        hooks: core::ptr::null_mut(),
                        pin: None,
                        debugfs: file,
                    },
                    GFP_KERNEL,
                )?;
                nodes.len() - 1
            }
        };
        // The probe runs while at least one node is attached.
        // SAFETY: process context; STATE is set.
        let r = unsafe { ffi::vb2r_probe_register() };
        if r != 0 {
            pr_err!("cannot register the vb2_buf_done probe: error {}\n", r);
            return Err(Error::from_errno(r));
        }
        let e = &mut nodes[idx];
        let rs_node = core::ptr::from_ref::<Node>(&e.node)
            .cast_mut()
            .cast::<c_void>();
        // SAFETY: `vdev` is pinned; `rs_node` points into an Arc kept in `nodes` until unload,
        // which outlives every wrapper call (vb2r_glue_exit() waits for them).
        let hooks = unsafe { ffi::vb2r_hooks_get(vdev.as_ptr(), rs_node) };
        if hooks.is_null() {
            drop(nodes);
            self.probe_if_needed();
            return Err(ENOMEM);
        }
        e.hooks = hooks;
        e.node.unregistered.store(false, Ordering::Release);
        e.node.attached.store(true, Ordering::Release);
        // SAFETY: `hooks` was just made for this pinned vdev; `nodes` serializes installs.
        unsafe { ffi::vb2r_hooks_install(hooks) };
        pr_info!(
            "attached to {:?} ({:?}), mode {}\n",
            Bytes(e.node.name.bytes()),
            Bytes(e.node.driver.bytes()),
            self.mode().name()
        );
        e.pin = Some(vdev);
        Ok(())
    }

    /// Unregisters the probe when no node is attached any more (process context, `nodes` not
    /// held: unregistering waits for running probes).
    fn probe_if_needed(&self) {
        let any = self.nodes.lock().iter().any(|e| e.node.is_attached());
        if !any {
            // SAFETY: process context.
            unsafe { ffi::vb2r_probe_unregister() };
        }
    }

    /// Detaches from the node `vdev` identifies (process context).
    pub(crate) fn detach(&self, vdev: &Vdev) -> Result {
        let pin = {
            let mut nodes = self.nodes.lock();
            let key = vdev.as_ptr() as usize;
            let e = nodes
                .iter_mut()
                .find(|e| e.node.vdev == key && e.node.is_attached())
                .ok_or(ENOENT)?;
            self.detach_entry(e)
        };
        // Unpinned outside `nodes`: the last reference on an unregistered node releases it,
        // which takes the V4L2 core's videodev_lock (itself held around device_add(), whose
        // class mutex is held around vb2r_rs_vdev_removed(), which takes `nodes`).
        drop(pin);
        self.probe_if_needed();
        Ok(())
    }

    /// Detaches `e`; returns its pin, for the caller to drop once `nodes` is unlocked.
    #[must_use]
    fn detach_entry(&self, e: &mut NodeEntry) -> Option<Vdev> {
        // SAFETY: installed by attach() for this pinned vdev; `nodes` serializes us.
        unsafe { ffi::vb2r_hooks_remove(e.hooks) };
        e.node.attached.store(false, Ordering::Release);
        let n = self.kill_queues_of(&e.node);
        pr_info!(
            "detached from {:?} ({} pending fence(s) cancelled)\n",
            Bytes(e.node.name.bytes()),
            n
        );
        e.pin.take()
    }

    /// The node `vdev` is being unregistered (its driver unbinds): nothing is armed on it any
    /// more, and the fences of buffers the driver does not hold end now, since no ioctl can hand
    /// them to it any more. Buffers the driver holds end when it returns them: for a node's own
    /// queue vb2 takes them back right after this (vb2_video_unregister_device()), marked as
    /// cancelled; an m2m context keeps running jobs until its file is closed, and its close
    /// ends the rest. The node stays hooked (its close must still be seen) until it is detached
    /// or the module unloads. Process context, the class's mutex held.
    fn vdev_removed(&self, vdev: usize) {
        let node = {
            let nodes = self.nodes.lock();
            let Some(e) = nodes
                .iter()
                .find(|e| e.node.vdev == vdev && e.node.is_attached())
            else {
                return;
            };
            e.node.unregistered.store(true, Ordering::Release);
            e.node.clone()
        };
        // A QBUF, STREAMON, REQBUFS or close that passed the V4L2 core's registration check
        // before the unregistration may still hand a buffer over or free buffers: wait for it.
        let mut waited = 0u32;
        while node.busy_calls.load(Ordering::Acquire) != 0 {
            // SAFETY: process context.
            unsafe { ffi::vb2r_sleep_ms(1) };
            waited += 1;
            if waited % 5000 == 0 {
                pr_info!(
                    "{:?} unregistering: waits for {} call(s) ({} s)\n",
                    Bytes(node.name.bytes()),
                    node.busy_calls.load(Ordering::Relaxed),
                    waited / 1000
                );
            }
        }
        let mut n = 0;
        for q in self.queues_of(&node).iter().filter(|q| !q.m2m) {
            q.set_cancelling(true);
            n += q.cancel_not_active();
        }
        pr_info!(
            "{:?} ({:?}) unregistered: {} fence(s) of buffers its driver did not hold cancelled\n",
            Bytes(node.name.bytes()),
            Bytes(node.driver.bytes()),
            n
        );
    }
}

fn show_node(n: &Arc<Node>, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    n.show_counters(f)?;
    let st = state();
    let mut i = 0;
    loop {
        // Walk the registry one entry at a time: `show` takes a mutex, which must not nest in
        // the registry's spinlock.
        let q = {
            let g = st.queues.lock();
            g.iter().filter(|x| x.node.vdev == n.vdev).nth(i).cloned()
        };
        let Some(q) = q else { break };
        q.show(f)?;
        i += 1;
    }
    Ok(())
}

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
    if let Some(queue) = state().find_queue(q) {
        queue.buf_done((!vb.is_null()).then_some(vb), index, state_, event_ns);
    }
}

/// # Safety
///
/// Called by glue.c's class interface only, in process context (glue.h).
#[no_mangle]
unsafe extern "C" fn vb2r_rs_vdev_removed(vdev: *mut ffi::VideoDevice) {
    state().vdev_removed(vdev as usize);
}

/// An `Arc<Node>` for a `&Node` that lives in the registry.
fn node_arc(node: &Node) -> Option<Arc<Node>> {
    let nodes = state().nodes.lock();
    nodes
        .iter()
        .find(|e| e.node.vdev == node.vdev)
        .map(|e| e.node.clone())
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

fn stash(c: &mut Call, q: Option<Arc<Queue>>) {
    if let Some(q) = q {
        c.rs_queue = Arc::into_raw(q).cast();
    }
}

fn pre(node: &Node, c: &mut Call) -> Result {
    if c.op != op::RELEASE && !is_video_capture(c.type_) {
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
    let st = state();
    match c.op {
        op::QBUF => {
            if !node.is_live() || st.mode() != Mode::Queue {
                return Ok(());
            }
            let owner = owner_of(q, m2m, c);
            // SAFETY: QBUF of `q`, its lock held (glue.h); the index is bounds-checked in C.
            let (memory, bstate) = unsafe {
                (
                    ffi::vb2r_queue_memory(q),
                    BufState::from_raw(ffi::vb2r_buffer_state(q, c.index)),
                )
            };
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
            if queue.arm(c.index, &imported)? {
                c.rs_flags |= flag::ARMED;
                // From the publication to the end of the driver's QBUF (which may start the
                // hardware): lockdep checks that nothing there waits for a fence.
                c.signalling = 1;
            }
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
        }
        _ => stash(c, st.find_queue(q)),
    }
    Ok(())
}

fn post(node: &Node, c: &Call, queue: Option<Arc<Queue>>, ran: bool, ret: c_int) {
    let st = state();
    match c.op {
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
                q.prune(c.index);
            }
            if st.mode() != Mode::Dqbuf || !node.is_live() {
                return;
            }
            let (qp, m2m) = call_queue(c);
            let q = match queue {
                Some(q) => q,
                None => match st.queue_for(node, qp, c.type_, m2m) {
                    Ok(Some(q)) => q,
                    _ => return,
                },
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
            let (qp, m2m) = call_queue(c);
            let q = match queue {
                Some(q) => q,
                None => match st.queue_for(node, qp, c.type_, m2m) {
                    Ok(Some(q)) => q,
                    _ => return,
                },
            };
            // SAFETY: in the EXPBUF ioctl of this queue, with its lock held (glue.h).
            if let Some(d) = unsafe { DmaBuf::export_of(c.fd, qp, c.index, c.plane) } {
                if let Err(e) = q.add_export(c.index, d) {
                    pr_warn!("export of buffer {}: error {:?}\n", c.index, e);
                }
            }
        }
        // Counted in `busy_calls` only (unregistration waits for it): vb2 may hand queued
        // buffers to the driver in it.
        op::STREAMON => {}
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
                // Not stashed (not the owner): only the unregistered close kills.
                None if action == policy::AfterCall::Kill => st.find_queue(call_queue(c).0),
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
                    if let Some(x) = st.remove_queue(q.q) {
                        x.kill();
                    }
                }
            }
            q.set_cancelling(false);
        }
        _ => {}
    }
}

// ------------------------------------------------------------------------------------------
// Module init and exit.

struct Vb2Resv {
    state: Pin<KBox<State>>,
    /// debugfs `vb2_resv/mode`.
    mode_file: Option<Pin<KBox<debugfs::File<()>>>>,
    control: Option<Pin<KBox<control::Registration>>>,
}

fn parse_params() -> Result<(Mode, KVec<Target<'static>>)> {
    let mode_text = ffi::param_mode();
    let Some(mode) = Mode::parse(mode_text) else {
        pr_err!(
            "invalid value '{:?}' for parameter 'mode': expected off, dqbuf or queue\n",
            Bytes(mode_text)
        );
        return Err(EINVAL);
    };
    let attach_text = ffi::param_attach();
    match params::parse_attach(attach_text) {
        Ok(t) => Ok((mode, t)),
        Err(e) => {
            match e {
                AttachError::Empty => pr_err!(
                    "invalid value '{:?}' for parameter 'attach': empty entry\n",
                    Bytes(attach_text)
                ),
                AttachError::BadDriverName(n) => pr_err!(
                    "invalid value '{:?}' for parameter 'attach': '{:?}' is neither an absolute path nor a V4L2 driver name\n",
                    Bytes(attach_text),
                    Bytes(n)
                ),
                AttachError::TooMany => pr_err!(
                    "invalid value '{:?}' for parameter 'attach': more than {} entries\n",
                    Bytes(attach_text),
                    params::MAX_TARGETS
                ),
            }
            Err(EINVAL)
        }
    }
}

/// Attaches the `attach=` targets; the first failure fails the load, naming the target.
fn attach_targets(st: &State, targets: &[Target<'_>]) -> Result {
    for t in targets {
        match *t {
            Target::Path(p) => {
                let path = kernel::str::CString::try_from_fmt(fmt!("{:?}", Bytes(p)))?;
                let vdev = Vdev::from_path(&path).inspect_err(|e| {
                    pr_err!(
                        "parameter 'attach': {:?}: {}\n",
                        Bytes(p),
                        params::why(e.to_errno())
                    )
                })?;
                st.attach(vdev).inspect_err(|_| {
                    pr_err!("parameter 'attach': {:?}: cannot attach\n", Bytes(p))
                })?;
            }
            Target::Driver(d) => {
                let mut found = 0;
                for minor in 0..params::MAX_VIDEO_NODES {
                    let path = kernel::str::CString::try_from_fmt(fmt!("/dev/video{}", minor))?;
                    let Ok(vdev) = Vdev::from_path(&path) else {
                        continue;
                    };
                    if vdev.driver().bytes() != d || policy::attachable(&vdev.info()).is_err() {
                        continue;
                    }
                    st.attach(vdev)?;
                    found += 1;
                }
                if found == 0 {
                    pr_err!(
                        "parameter 'attach': no V4L2 video capture node of driver '{:?}' (is the driver loaded?)\n",
                        Bytes(d)
                    );
                    return Err(ENODEV);
                }
            }
        }
    }
    Ok(())
}

impl kernel::Module for Vb2Resv {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let (mode, targets) = parse_params()?;
        let state = KBox::pin_init(
            pin_init!(State {
                mode: AtomicU32::new(mode.index()),
                next_queue_id: AtomicU32::new(0),
                nodes <- new_mutex!(KVec::new()),
                queues <- new_spinlock_irq!(KVec::new()),
                debugfs: debugfs::Dir::new(c"vb2_resv"),
            }),
            GFP_KERNEL,
        )?;
        STATE.store(core::ptr::from_ref(&*state).cast_mut(), Ordering::Release);
        // SAFETY: called once, before anything can queue an irq_work (the probe is registered
        // at the first attach).
        unsafe { ffi::vb2r_glue_init() };
        let mode_file = KBox::pin_init(
            state
                .debugfs
                .read_callback_file(c"mode", (), &|(): &(), f| {
                    writeln!(f, "{}", crate::state().mode().name())
                }),
            GFP_KERNEL,
        )
        .ok();
        let mut this = Vb2Resv {
            state,
            mode_file,
            control: None,
        };
        if let Err(e) = attach_targets(&this.state, &targets) {
            // Drop detaches what was attached and unregisters the probe and class interface.
            drop(this);
            return Err(e);
        }
        this.control = Some(KBox::pin_init(control::register(), GFP_KERNEL)?);
        pr_info!(
            "vb2_resv {:?} loaded: mode={} attach='{:?}' ({} target(s))\n",
            Bytes(ffi::version()),
            mode.name(),
            Bytes(ffi::param_attach()),
            targets.len()
        );
        Ok(this)
    }
}

impl Drop for Vb2Resv {
    fn drop(&mut self) {
        // 1. No new attach or mode change.
        self.control = None;
        // 2. Every node back to the driver's own tables; pending fences cancelled.
        // Room for every pin first: they are dropped once `nodes` is unlocked (see detach()).
        // No node can be added now (the control device is gone), so the count holds.
        let mut pins = KVec::new();
        let count = self.state.nodes.lock().len();
        let _ = pins.reserve(count, GFP_KERNEL);
        {
            let mut nodes = self.state.nodes.lock();
            for e in nodes.iter_mut().filter(|e| e.node.is_attached()) {
                if let Some(p) = self.state.detach_entry(e) {
                    // Only without the room reserved above (-ENOMEM) is a pin dropped here.
                    let _ = pins.push_within_capacity(p);
                }
            }
        }
        drop(pins);
        // 3. No probe call and no hooked ioctl left running (glue.h: vb2r_glue_exit()).
        // SAFETY: all hooks were removed above; called once.
        unsafe { ffi::vb2r_glue_exit() };
        // 4. A wrapper that was running during step 2 may have made a queue: end those too.
        let mut leftovers = 0;
        loop {
            let x = self.state.queues.lock().pop();
            let Some(x) = x else { break };
            leftovers += x.kill();
        }
        // 5. debugfs readers use STATE: remove the files (which waits for readers) first.
        self.mode_file = None;
        for e in self.state.nodes.lock().iter_mut() {
            e.debugfs = None;
        }
        STATE.store(core::ptr::null_mut(), Ordering::Release);
        let mode = self.state.mode();
        pr_info!(
            "vb2_resv unloaded (mode was {}, {} late fence(s) cancelled)\n",
            mode.name(),
            leftovers
        );
    }
}
