// SPDX-License-Identifier: GPL-2.0

//! The module's state: the node and queue registries, attach and detach, the unregistration of
//! an attached node, and the explicit sync_file lookup.

use crate::ffi::{self, Vb2Queue, Vdev};
use crate::node::Node;
use crate::params::Mode;
use crate::queue::Queue;
use crate::{is_video_capture, policy, Bytes};
use core::ffi::c_void;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

#[cfg(vb2r_no_spinlock_irq)]
use crate::k612::SpinLockIrq;
#[cfg(vb2r_k612)]
use crate::k612::{debugfs, KVecExt};
#[cfg(not(vb2r_k612))]
use kernel::debugfs;
#[cfg(vb2r_k612)]
use kernel::fmt;
#[cfg(not(vb2r_no_spinlock_irq))]
use kernel::sync::SpinLockIrq;

/// A known node: the Rust state, the C hook tables made for it, and its pin while attached.
pub(crate) struct NodeEntry {
    pub(crate) node: Arc<Node>,
    pub(crate) hooks: *mut ffi::Hooks,
    pub(crate) pin: Option<Vdev>,
    pub(crate) debugfs: Option<Pin<KBox<debugfs::File<Arc<Node>>>>>,
}

// SAFETY: `hooks` is only handed back to the C glue under `State::nodes`; the tables it points
// at live until vb2r_glue_exit().
unsafe impl Send for NodeEntry {}

/// A registry entry: a `struct vb2_queue` address and the CAPTURE queue state it leads to
/// (`output`: the address is the m2m context's OUTPUT queue, whose buf_done events and requests
/// concern that CAPTURE queue's jobs).
#[derive(Clone)]
pub(crate) struct Reg {
    pub(crate) key: usize,
    pub(crate) queue: Arc<Queue>,
    pub(crate) output: bool,
}

/// Everything the module knows. Lives from init to exit, pinned; the C glue, the probe and the
/// misc device reach it through [`STATE`].
#[pin_data]
pub(crate) struct State {
    pub(crate) mode: AtomicU32,
    pub(crate) next_queue_id: AtomicU32,
    /// Every node ever attached (until unload); attach/detach and debugfs take it.
    #[pin]
    pub(crate) nodes: Mutex<KVec<NodeEntry>>,
    /// Every live CAPTURE queue of an attached node, looked up by `vb2_queue` address from any
    /// context (the vb2_buf_done probe may run in hard IRQ).
    #[pin]
    pub(crate) queues: SpinLockIrq<KVec<Reg>>,
    pub(crate) debugfs: debugfs::Dir,
}

/// The module's state, set at init before anything can call in and cleared at exit after the
/// last caller is gone (glue.c's vb2r_glue_exit() waits for them).
pub(crate) static STATE: AtomicPtr<State> = AtomicPtr::new(core::ptr::null_mut());

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

    /// The entry of queue address `q` (any context): a binary search of the registry, which is
    /// kept sorted by address.
    pub(crate) fn find_reg(&self, q: *mut Vb2Queue) -> Option<Reg> {
        let key = q as usize;
        let g = self.queues.lock();
        g.binary_search_by_key(&key, |x| x.key)
            .ok()
            .map(|i| g[i].clone())
    }

    /// The state of CAPTURE queue `q` (any context).
    pub(crate) fn find_queue(&self, q: *mut Vb2Queue) -> Option<Arc<Queue>> {
        self.find_reg(q).filter(|r| !r.output).map(|r| r.queue)
    }

    /// The CAPTURE queue state whose m2m context's OUTPUT queue is `q` (any context).
    pub(crate) fn find_by_output(&self, q: *mut Vb2Queue) -> Option<Arc<Queue>> {
        self.find_reg(q).filter(|r| r.output).map(|r| r.queue)
    }

    /// The state of `q`, made if the node is live and there is none yet (process context).
    pub(crate) fn queue_for(
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
        let want = if new.out_q != 0 { 2 } else { 1 };
        // Room for the new entries, allocated outside the spinlock and swapped in under it.
        loop {
            let (len, cap) = {
                let g = self.queues.lock();
                (g.len(), g.capacity())
            };
            if len + want <= cap {
                let mut g = self.queues.lock();
                // Checked again under the lock: a detach may have run, or another task raced us.
                if !node.is_live() {
                    return Ok(None);
                }
                if let Ok(i) = g.binary_search_by_key(&new.q, |x| x.key) {
                    if !g[i].output {
                        return Ok(Some(g[i].queue.clone()));
                    }
                }
                if g.len() + want > g.capacity() {
                    continue;
                }
                for (key, output) in [(new.q, false), (new.out_q, true)].into_iter().take(want) {
                    // A stale entry for a reused address (its context is gone) is replaced.
                    let reg = Reg {
                        key,
                        queue: new.clone(),
                        output,
                    };
                    match g.binary_search_by_key(&key, |x| x.key) {
                        Ok(i) => g[i] = reg,
                        // Within capacity: cannot allocate or fail.
                        Err(at) => {
                            let _ = g.insert_within_capacity(at, reg);
                        }
                    }
                }
                return Ok(Some(new));
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

    /// Kills the queue state `x` and then removes its entries (both, if it has an OUTPUT queue)
    /// from the registry; returns how many pending fences the kill cancelled. Process context.
    ///
    /// Killed while still registered: a buf_done event meanwhile (the driver returning
    /// buffers to a STREAMOFF that no longer goes through our hooks, during a detach) still
    /// finds the queue and ends the buffer's fence, or finds it cancelled already. Removed
    /// first, such an event would find nothing, and the fence would stay pending after the
    /// driver returned its buffer, until the kill.
    pub(crate) fn kill_state(&self, x: &Arc<Queue>) -> u32 {
        // SAFETY: reads a module parameter.
        let delay = unsafe { ffi::vb2r_param_test_kill_delay_ms() };
        if delay != 0 {
            // SAFETY: process context (the callers').
            unsafe { ffi::vb2r_sleep_ms(delay) };
        }
        let n = x.kill();
        let mut g = self.queues.lock();
        for k in [x.q, x.out_q] {
            if k == 0 {
                continue;
            }
            if let Ok(i) = g.binary_search_by_key(&k, |r| r.key) {
                // Only this state's entries: a reused address may have a newer one.
                if Arc::ptr_eq(&g[i].queue, x) {
                    let _ = g.remove(i);
                }
            }
        }
        n
    }

    /// The queues of `node` (process context).
    pub(crate) fn queues_of(&self, node: &Node) -> KVec<Arc<Queue>> {
        let mut out = KVec::new();
        let mut i = 0;
        loop {
            // One at a time: the result grows outside the spinlock.
            let next = {
                let g = self.queues.lock();
                g.iter()
                    .filter(|x| !x.output && x.queue.node.vdev == node.vdev)
                    .nth(i)
                    .map(|x| x.queue.clone())
            };
            let Some(x) = next else { break };
            if out.push(x, GFP_KERNEL).is_err() {
                break;
            }
            i += 1;
        }
        out
    }

    /// Every queue (process context).
    pub(crate) fn all_queues(&self) -> KVec<Arc<Queue>> {
        let mut out = KVec::new();
        let mut i = 0;
        loop {
            let next = {
                let g = self.queues.lock();
                g.iter()
                    .filter(|x| !x.output)
                    .nth(i)
                    .map(|x| x.queue.clone())
            };
            let Some(x) = next else { break };
            if out.push(x, GFP_KERNEL).is_err() {
                break;
            }
            i += 1;
        }
        out
    }

    /// Kills and removes every queue of `node` (process context). Returns the fences cancelled.
    pub(crate) fn kill_queues_of(&self, node: &Node) -> u32 {
        let mut n = 0;
        loop {
            let victim = {
                let g = self.queues.lock();
                g.iter()
                    .find(|x| !x.output && x.queue.node.vdev == node.vdev)
                    .map(|x| x.queue.clone())
            };
            let Some(x) = victim else { break };
            // Removes x's entries: the next look finds the next queue.
            n += self.kill_state(&x);
        }
        n
    }

    /// A sync_file fd for buffer `index` of the `type_` queue of V4L2 fd `v4l2_fd`: its pending
    /// fence, or a signaled one; and whether it was pending (process context).
    pub(crate) fn sync_file(&self, v4l2_fd: i32, type_: u32, index: u32) -> Result<(i32, bool)> {
        if !is_video_capture(type_) {
            return Err(EINVAL);
        }
        let mut err = 0;
        // SAFETY: `err` is a valid out-pointer; the queue is used as a lookup key only.
        let q = unsafe { ffi::vb2r_fd_queue(v4l2_fd, type_, &mut err) };
        if q.is_null() {
            return Err(Error::from_errno(err));
        }
        let queue = self.find_queue(q).ok_or(ENOENT)?;
        if !queue.has_slot(index) {
            return Err(EINVAL);
        }
        let fence = queue.pending_fence(index);
        let raw = fence.as_ref().map_or(core::ptr::null_mut(), |f| f.as_ptr());
        // SAFETY: `raw` is NULL or a fence kept alive by `fence` for the call.
        let fd = unsafe { ffi::vb2r_sync_file_fd(raw) };
        if fd < 0 {
            return Err(Error::from_errno(fd));
        }
        Ok((fd, fence.is_some()))
    }

    /// Attaches to the node `vdev` (process context).
    pub(crate) fn attach(&self, vdev: Vdev) -> Result {
        policy::attachable(&vdev.info())?;
        // Outside `nodes`: the class interface's callback takes it.
        // SAFETY: `vdev` is pinned.
        let r = unsafe { ffi::vb2r_watch_class(vdev.as_ptr()) };
        if r != 0 {
            pr_err!(
                "cannot watch the video class for unregistration: error {}\n",
                r
            );
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
        // The media device's request queue op, for mode strict (stateless decoders).
        // SAFETY: `vdev` is pinned; `nodes` serializes installs.
        let r = unsafe { ffi::vb2r_mdev_hooks_install(vdev.as_ptr(), core::ptr::null_mut()) };
        if r < 0 {
            drop(nodes);
            self.probe_if_needed();
            return Err(Error::from_errno(r));
        }
        // SAFETY: process context.
        unsafe { ffi::vb2r_watchdog_start() };
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
    pub(crate) fn probe_if_needed(&self) {
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
    pub(crate) fn detach_entry(&self, e: &mut NodeEntry) -> Option<Vdev> {
        // SAFETY: installed by attach() for this pinned vdev; `nodes` serializes us.
        unsafe {
            ffi::vb2r_hooks_remove(e.hooks);
            if let Some(v) = &e.pin {
                ffi::vb2r_mdev_hooks_remove(v.as_ptr());
            }
        }
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
    pub(crate) fn vdev_removed(&self, vdev: usize) {
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

pub(crate) fn show_node(n: &Arc<Node>, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    n.show_counters(f)?;
    let st = state();
    let mut i = 0;
    loop {
        // Walk the registry one entry at a time: `show` takes a mutex, which must not nest in
        // the registry's spinlock.
        let q = {
            let g = st.queues.lock();
            g.iter()
                .filter(|x| !x.output && x.queue.node.vdev == n.vdev)
                .nth(i)
                .map(|x| x.queue.clone())
        };
        let Some(q) = q else { break };
        q.show(f)?;
        i += 1;
    }
    Ok(())
}

/// An `Arc<Node>` for a `&Node` that lives in the registry.
pub(crate) fn node_arc(node: &Node) -> Option<Arc<Node>> {
    let nodes = state().nodes.lock();
    nodes
        .iter()
        .find(|e| e.node.vdev == node.vdev)
        .map(|e| e.node.clone())
}
