// SPDX-License-Identifier: GPL-2.0

//! Per-queue and per-buffer state: which dma-bufs back each CAPTURE buffer, and the fence that
//! buffer carries while the hardware owns it.
//!
//! Two locks, taken in this order:
//! - `bufs` (a mutex, process context only): the dma-bufs of each buffer and its fence timeline.
//! - `fences` (a spinlock that disables interrupts, any context): the pending fence of each
//!   buffer, which the vb2_buf_done probe takes out, possibly in hard IRQ.
//!
//! No fence is signaled and no dma-buf reference dropped with `fences` held: the fence is taken
//! out under the lock and signaled after it (fence callbacks run from the signal).

use crate::ffi::{self, DmaBuf, Fence, Vb2Buffer, Vb2Queue};
use crate::node::Node;
pub(crate) use crate::policy::Outcome;
use crate::policy::{self, BufState};
use core::ffi::c_int;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{new_mutex, Arc, Mutex};

#[cfg(vb2r_k612)]
use crate::k612::KVecExt;
#[cfg(vb2r_no_spinlock_irq)]
use crate::k612::{new_spinlock_irq, SpinLockIrq};
#[cfg(not(vb2r_no_spinlock_irq))]
use kernel::sync::{new_spinlock_irq, SpinLockIrq};

/// Fences stored in a slot (any queue) and not yet ended through [`Queue::end`]: while it is 0
/// the buf_done probe has nothing to end (mode off, or no frame in flight) and returns at once.
/// A fence that leaves its slot another way (the slot dropped with it) keeps it above 0, which
/// only costs the probe that shortcut.
pub(crate) static PENDING: AtomicUsize = AtomicUsize::new(0);

impl Outcome {
    /// The error a fence is signaled with (0 for none).
    pub(crate) fn errno(self) -> c_int {
        match self {
            Outcome::Ok => 0,
            Outcome::Eio => -(kernel::bindings::EIO as c_int),
            Outcome::Ecanceled => -(kernel::bindings::ECANCELED as c_int),
            Outcome::Etimedout => -(kernel::bindings::ETIMEDOUT as c_int),
        }
    }
}

/// The fence side of one buffer (under `fences`).
#[derive(Default)]
struct FenceSlot {
    fence: Option<Fence>,
    armed_ns: u64,
    /// Mode strict: the committed jobs (OUTPUT buffer indices, a bit each) the pending fence
    /// covers.
    jobs: u64,
    /// How the last fence of this buffer ended, for debugfs.
    last: Option<Outcome>,
}

impl FenceSlot {
    /// Whether the slot holds an unsignaled fence.
    fn pending(&self) -> bool {
        self.fence.as_ref().is_some_and(|f| !f.is_signaled())
    }

    /// Takes the pending fence out (under the fence lock) with its arming time, recording how
    /// it ends; `None` when there is none or it is already signaled.
    fn take(&mut self, outcome: Outcome) -> Option<(Fence, u64)> {
        let f = self.fence.take()?;
        self.jobs = 0;
        if f.is_signaled() {
            return None;
        }
        self.last = Some(outcome);
        Some((f, self.armed_ns))
    }
}

impl Drop for FenceSlot {
    fn drop(&mut self) {
        // Never leave a fence unsignaled: every path signals before it lets go, this is the
        // last line of defence should one be missed (any context: signalling is IRQ-safe).
        if let Some(f) = self.fence.take() {
            if !f.is_signaled() {
                f.signal(Outcome::Ecanceled.errno());
            }
        }
    }
}

struct Fences {
    /// STREAMOFF, REQBUFS, REMOVE_BUFS, close or detach is returning buffers: fences end with
    /// -ECANCELED rather than -EIO.
    cancelling: bool,
    /// Detached or closed: nothing may be armed any more.
    dead: bool,
    slots: KVec<FenceSlot>,
}

/// The dma-buf side of one buffer (under `bufs`).
#[derive(Default)]
struct BufInfo {
    /// One fence context per buffer: buffers complete out of order, and fences on one context
    /// must signal in seqno order (drm_sched keeps only the latest per context).
    context: u64,
    seqno: u64,
    /// The fences' timeline name, formatted once (`video3:q0:cap2`).
    timeline: Option<CString>,
    /// The dma-bufs VIDIOC_EXPBUF made of this buffer that someone besides us still holds.
    exports: KVec<DmaBuf>,
    /// The next fence of this timeline (seqno `seqno + 1`), made ahead at DQBUF so that the
    /// arming in QBUF allocates nothing ([`Queue::refill`]); never published, never seen.
    spare: Option<Fence>,
}

impl Drop for BufInfo {
    fn drop(&mut self) {
        // An unused spare ends signaled like every fence of ours (7.2+ detaches our ops from a
        // signaled fence, so none outlives the module with them).
        if let Some(f) = self.spare.take() {
            f.signal(Outcome::Ecanceled.errno());
        }
    }
}

impl BufInfo {
    /// The next fence of this buffer's timeline (process context: allocates).
    fn next_fence(&mut self, node: &Node, queue: u32, index: u32) -> Result<Fence> {
        if self.context == 0 {
            self.context = ffi::fence_context();
        }
        if self.timeline.is_none() {
            self.timeline = Some(node.timeline_name(queue, index)?);
        }
        let fence = match self.spare.take() {
            // Made for seqno `self.seqno + 1` on this context: every fence of the timeline is
            // taken here, so the spare's number is still the next one.
            Some(f) => f,
            None => {
                let name = self.timeline.as_deref().ok_or(EINVAL)?;
                Fence::new(self.context, self.seqno + 1, name)?
            }
        };
        self.seqno += 1;
        Ok(fence)
    }

    /// Drops the exports nobody but us holds any more (their fd closed, no mmap, no importer):
    /// a fence on them would be seen by no one, and keeping them would keep the memory.
    fn prune_exports(&mut self) {
        self.exports.retain(|d| !d.only_ours());
    }
}

/// The dma-bufs of `exports` and `imported`, each once (planes of one imported buffer may
/// share a dma-buf: one resv, one add). On the stack: a buffer has one export per client that
/// exported it and at most 8 planes; more than `ffi::PUBLISH_MAX` is refused (-E2BIG).
fn distinct<'a>(exports: &'a [DmaBuf], imported: &'a [DmaBuf]) -> Result<ffi::DmaBufSet<'a>> {
    let mut out = ffi::DmaBufSet::new();
    for d in Iterator::chain(exports.iter(), imported.iter()) {
        if !out.iter().any(|t| t.same(d)) {
            out.push(d)?;
        }
    }
    Ok(out)
}

/// One CAPTURE `vb2_queue` of an attached node.
#[pin_data]
pub(crate) struct Queue {
    /// The `struct vb2_queue` address: the key the probe looks queues up by.
    pub(crate) q: usize,
    pub(crate) node: Arc<Node>,
    /// A small number for debugfs (kernel addresses are not shown).
    pub(crate) id: u32,
    pub(crate) type_: u32,
    /// The queue of an m2m context (its life is the file's), not the node's own.
    pub(crate) m2m: bool,
    /// The `struct vb2_queue` address of the m2m context's OUTPUT queue (0 if not m2m): a
    /// second registry key, so that the probe and the request hook find this queue from it.
    pub(crate) out_q: usize,
    /// The queue's `max_num_buffers` (set by vb2_queue_init() and fixed from then on): the
    /// bound on buffer indices, read once instead of at every arming.
    max_buffers: u32,
    /// The watchdog logged a timeout on this queue already (once per queue).
    timeout_logged: core::sync::atomic::AtomicBool,
    #[pin]
    bufs: Mutex<KVec<BufInfo>>,
    #[pin]
    fences: SpinLockIrq<Fences>,
    /// Mode strict, m2m: the working memory of [`crate::strict::commit`] (taken with the V4L2
    /// queue lock held, before `bufs`; made at the first commit).
    #[pin]
    pub(crate) scratch: Mutex<Option<crate::strict::Scratch>>,
}

impl Queue {
    pub(crate) fn new(
        q: *mut Vb2Queue,
        node: Arc<Node>,
        id: u32,
        type_: u32,
        m2m: bool,
    ) -> Result<Arc<Self>> {
        let out_q = if m2m {
            // SAFETY: `q` is the CAPTURE queue of an m2m context (the caller's `m2m`), alive in
            // this call.
            unsafe { ffi::vb2r_m2m_out_queue(q) as usize }
        } else {
            0
        };
        // SAFETY: as above, `q` is alive in this call (an ioctl of the queue).
        let max_buffers = unsafe { ffi::vb2r_queue_max_buffers(q) };
        Arc::pin_init(
            pin_init!(Queue {
                q: q as usize,
                node,
                id,
                type_,
                m2m,
                out_q,
                max_buffers,
                timeout_logged: core::sync::atomic::AtomicBool::new(false),
                bufs <- new_mutex!(KVec::new()),
                fences <- new_spinlock_irq!(Fences { cancelling: false, dead: false, slots: KVec::new() }),
                scratch <- new_mutex!(None),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn raw(&self) -> *mut Vb2Queue {
        self.q as *mut Vb2Queue
    }

    /// Grows both tables to hold buffer `index` (process context, `bufs` held by the caller).
    /// Indices at or above the queue's `max_num_buffers` are refused with -EINVAL, as vb2
    /// refuses them, before anything is allocated for them. Returns, from the same fence-lock
    /// section that checks the table's size, whether buffer `index` may get a new fence: the
    /// queue is not dead and the buffer has no pending fence.
    fn ensure(&self, bufs: &mut KVec<BufInfo>, index: u32) -> Result<bool> {
        if index >= self.max_buffers {
            return Err(EINVAL);
        }
        // Below max_num_buffers (at most 32768 in vb2), so `+ 1` cannot overflow.
        let n = index as usize + 1;
        while bufs.len() < n {
            bufs.push(BufInfo::default(), GFP_KERNEL)?;
        }
        let free = |g: &Fences| !g.dead && !g.slots[n - 1].pending();
        {
            let g = self.fences.lock();
            if g.slots.len() >= n {
                return Ok(free(&g));
            }
        }
        // The fence table may only be allocated outside its spinlock: build a bigger one here
        // and swap it in under the lock.
        let mut bigger = KVec::with_capacity(n, GFP_KERNEL)?;
        let (old, ok) = {
            let mut g = self.fences.lock();
            if g.slots.len() >= n {
                (None, free(&g))
            } else {
                for s in g.slots.drain_all() {
                    // Within capacity: cannot allocate or fail.
                    let _ = bigger.push_within_capacity(s);
                }
                while bigger.len() < n {
                    let _ = bigger.push_within_capacity(FenceSlot::default());
                }
                let old = core::mem::replace(&mut g.slots, bigger);
                (Some(old), free(&g))
            }
        };
        drop(old);
        Ok(ok)
    }

    /// Marks the queue as returning buffers because of a cancel (STREAMOFF, REQBUFS, close).
    pub(crate) fn set_cancelling(&self, on: bool) {
        self.fences.lock().cancelling = on;
    }

    /// Arms a WRITE fence for buffer `index` on every dma-buf that backs it: the exports this
    /// module saw that someone still holds, and `imported` (the DMABUF fds of this QBUF).
    /// Process context, in QBUF before the driver sees the buffer, after the caller checked
    /// that vb2 will take the buffer. Everything that can fail or allocate happens before the
    /// fence is published (`ffi::publish()`). Mode strict: `job` is the committed job (its
    /// OUTPUT buffer) the fence covers, recorded in the section that stores the fence. Two
    /// fence-lock sections: the check (with [`Self::ensure`]) and the store. Returns whether a
    /// fence was published.
    pub(crate) fn arm(&self, index: u32, imported: &[DmaBuf], job: Option<u32>) -> Result<bool> {
        let i = index as usize;
        let mut bufs = self.bufs.lock();
        // A pending fence cannot happen for a dequeued buffer (its fence ended at DQBUF at the
        // latest); a dead queue arms nothing.
        if !self.ensure(&mut bufs, index)? {
            return Ok(false);
        }
        let b = &mut bufs[i];
        b.prune_exports();
        if b.exports.is_empty() && imported.is_empty() {
            return Ok(false);
        }
        let fence = b.next_fence(&self.node, self.id, index)?;
        let targets = distinct(&b.exports, imported)?;
        let slot_ref = Fence::new_ref(&fence);
        ffi::publish(targets.iter(), &fence)?;
        // Published: from here on nothing may fail. The buffer is not queued yet, so no
        // buf_done can look for this fence before it is in its slot.
        let now = ffi::now_ns();
        let stored = {
            let mut g = self.fences.lock();
            if g.dead {
                None
            } else {
                let s = &mut g.slots[i];
                s.armed_ns = now;
                s.jobs = match job {
                    Some(src) if src < 64 => 1 << src,
                    _ => 0,
                };
                let old = s.fence.replace(slot_ref);
                // Before the buffer reaches the driver, so before any buf_done that ends it.
                PENDING.fetch_add(1, Ordering::Release);
                Some(old)
            }
        };
        self.node.counters.armed();
        let Some(old) = stored else {
            // Detached meanwhile: nothing will signal it, so end it now (no hardware saw it).
            fence.signal(Outcome::Ecanceled.errno());
            self.node.counters.signaled(Outcome::Ecanceled, 0);
            return Ok(false);
        };
        drop(old);
        Ok(true)
    }

    /// Signals buffer `index`'s pending fence with `outcome`, if it has one. Any context.
    /// Returns whether there was one.
    pub(crate) fn finish(&self, index: u32, outcome: Outcome) -> bool {
        let taken = {
            let mut g = self.fences.lock();
            g.slots
                .get_mut(index as usize)
                .and_then(|s| s.take(outcome))
        };
        self.end(taken, outcome)
    }

    /// Signals a fence [`FenceSlot::take`] took out (outside the fence lock: fence callbacks run
    /// from the signal) and counts it.
    fn end(&self, taken: Option<(Fence, u64)>, outcome: Outcome) -> bool {
        let Some((fence, armed_ns)) = taken else {
            return false;
        };
        PENDING.fetch_sub(1, Ordering::Relaxed);
        fence.signal(outcome.errno());
        self.node
            .counters
            .signaled(outcome, ffi::now_ns().saturating_sub(armed_ns));
        true
    }

    /// The vb2_buf_done event of buffer `index` (any context).
    ///
    /// In place (`vb` is the buffer, alive for the probe): the buffer's *current* state decides,
    /// read under the fence lock, which every arming also takes: vb2 publishes the buffer on
    /// its done list before the tracepoint fires, so it may already have been dequeued (its
    /// fence ended at DQBUF) and queued again with a new fence, and then it is no longer DONE
    /// or ERROR and the event ends nothing ([`policy::done_outcome`]).
    ///
    /// Deferred (`vb` is `None`: glue.c handed the event to an irq_work, `test_hardirq_signal`):
    /// the buffer may be gone, so the state at the event (`state`) decides, and a fence armed
    /// after the event (`event_ns`) is left alone.
    pub(crate) fn buf_done(
        &self,
        vb: Option<*mut Vb2Buffer>,
        index: u32,
        state: u32,
        event_ns: u64,
    ) {
        let (taken, outcome) = {
            let mut g = self.fences.lock();
            let now = match vb {
                // SAFETY: the probe runs synchronously with vb2_buffer_done(), so the buffer is
                // alive (glue.h contract of vb2r_rs_buf_done()).
                Some(vb) => BufState::from_raw(unsafe { ffi::vb2r_vb_state(vb) }),
                None => BufState::from_raw(state),
            };
            let Some(outcome) = policy::done_outcome(now, g.cancelling) else {
                return;
            };
            let taken = match g.slots.get_mut(index as usize) {
                Some(s) if vb.is_some() || s.armed_ns <= event_ns => s.take(outcome),
                _ => None,
            };
            (taken, outcome)
        };
        self.end(taken, outcome);
    }

    /// Signals with -ECANCELED the pending fences of buffers the driver does not hold: the
    /// node is being unregistered, so no ioctl can hand them to it any more (process context,
    /// with no call that allocates or frees buffers running on the queue). Returns how many.
    pub(crate) fn cancel_not_active(&self) -> u32 {
        let n = self.fences.lock().slots.len();
        let mut count = 0;
        for i in 0..n as u32 {
            // SAFETY: the queue is alive (its node is pinned) and, by the caller's contract, no
            // call that allocates or frees its buffers is running.
            let st = BufState::from_raw(unsafe { ffi::vb2r_buffer_state(self.raw(), i) });
            if st != BufState::Active && self.finish(i, Outcome::Ecanceled) {
                count += 1;
            }
        }
        count
    }

    /// Mode strict: records the job of OUTPUT buffer `src` on CAPTURE buffer `dst`'s pending
    /// fence; false when it has none (any context).
    pub(crate) fn add_job(&self, dst: u32, src: u32) -> bool {
        let mut g = self.fences.lock();
        match g.slots.get_mut(dst as usize) {
            Some(s) if s.fence.as_ref().is_some_and(|f| !f.is_signaled()) => {
                if src < 64 {
                    s.jobs |= 1 << src;
                }
                true
            }
            _ => false,
        }
    }

    /// Mode strict: the job of OUTPUT buffer `src` ended (its buf_done, any context). It
    /// leaves the fence that covers it; a fence whose CAPTURE buffer the job held (`hold`: a
    /// slice, the buffer stays with the driver for the next one) ends when no job is left on
    /// it. A fence whose buffer the job returns ends at that buffer's own buf_done.
    pub(crate) fn job_done(&self, src: u32, hold: bool, outcome: Outcome) {
        if src >= 64 {
            return;
        }
        let taken = {
            let mut g = self.fences.lock();
            let Some(s) = g.slots.iter_mut().find(|s| s.jobs & (1 << src) != 0) else {
                return;
            };
            s.jobs &= !(1 << src);
            if hold && s.jobs == 0 {
                s.take(outcome)
            } else {
                None
            }
        };
        self.end(taken, outcome);
    }

    /// Whether the module has state for buffer `index` (any context).
    pub(crate) fn has_slot(&self, index: u32) -> bool {
        (index as usize) < self.fences.lock().slots.len()
    }

    /// A new reference to buffer `index`'s pending fence, if it has one (any context).
    pub(crate) fn pending_fence(&self, index: u32) -> Option<Fence> {
        let g = self.fences.lock();
        g.slots
            .get(index as usize)
            .and_then(|s| s.fence.as_ref())
            .filter(|f| !f.is_signaled())
            .map(Fence::new_ref)
    }

    /// The watchdog: ends with -ETIMEDOUT every fence pending for longer than `timeout_ns`
    /// (process context, a workqueue). Returns how many; the first time on this queue it logs.
    pub(crate) fn expire(&self, now: u64, timeout_ns: u64) -> u32 {
        let n = self.fences.lock().slots.len();
        let mut count = 0;
        for i in 0..n {
            let taken = {
                let mut g = self.fences.lock();
                match g.slots.get_mut(i) {
                    Some(s) if s.fence.is_some() && now.saturating_sub(s.armed_ns) > timeout_ns => {
                        s.take(Outcome::Etimedout)
                    }
                    _ => None,
                }
            };
            if self.end(taken, Outcome::Etimedout) {
                count += 1;
            }
        }
        if count > 0
            && !self
                .timeout_logged
                .swap(true, core::sync::atomic::Ordering::Relaxed)
        {
            pr_warn!(
                "{:?}:q{}: {} fence(s) pending for more than {} ms ended with -ETIMEDOUT (the driver did not finish the job; logged once per queue)\n",
                crate::Bytes(self.node.name.bytes()),
                self.id,
                count,
                timeout_ns / 1_000_000
            );
        }
        count
    }

    /// Signals every pending fence with -ECANCELED (process context). Returns how many.
    pub(crate) fn cancel_all(&self) -> u32 {
        let n = self.fences.lock().slots.len();
        let mut count = 0;
        for i in 0..n {
            if self.finish(i as u32, Outcome::Ecanceled) {
                count += 1;
            }
        }
        count
    }

    /// Signals with -ECANCELED the pending fences of buffers that no longer exist: a REQBUFS
    /// that failed after freeing the buffers (process context, queue lock held).
    pub(crate) fn cancel_gone(&self) -> u32 {
        let n = self.fences.lock().slots.len();
        let mut count = 0;
        for i in 0..n as u32 {
            // SAFETY: in an ioctl of this queue, with its lock held (glue.h contract).
            let gone = unsafe { ffi::vb2r_buffer_planes(self.raw(), i) } == 0;
            if gone && self.finish(i, Outcome::Ecanceled) {
                count += 1;
            }
        }
        count
    }

    /// Drops the exports of buffers `[first, first + count)` (process context): the buffers were
    /// freed or reallocated, so their exports no longer back a buffer of this queue.
    pub(crate) fn forget(&self, first: u32, count: u32) {
        let mut bufs = self.bufs.lock();
        let end = (first as usize)
            .saturating_add(count as usize)
            .min(bufs.len());
        for b in bufs.iter_mut().take(end).skip(first as usize) {
            b.exports.clear();
        }
    }

    /// Ends the queue: nothing is armed any more, every pending fence is signaled with
    /// -ECANCELED and every export reference dropped (process context).
    pub(crate) fn kill(&self) -> u32 {
        self.fences.lock().dead = true;
        let n = self.cancel_all();
        self.forget(0, u32::MAX);
        n
    }

    /// Records an export of buffer `index` made by VIDIOC_EXPBUF. If the buffer is owned by the
    /// hardware right now, the new dma-buf gets its fence too (process context).
    pub(crate) fn add_export(&self, index: u32, d: DmaBuf) -> Result {
        let i = index as usize;
        let mut bufs = self.bufs.lock();
        self.ensure(&mut bufs, index)?;
        let pending = {
            let g = self.fences.lock();
            g.slots[i]
                .fence
                .as_ref()
                .filter(|f| !f.is_signaled())
                .map(Fence::new_ref)
        };
        bufs[i].prune_exports();
        bufs[i].exports.reserve(1, GFP_KERNEL)?;
        if let Some(f) = pending {
            ffi::publish(core::iter::once(&d), &f)?;
        }
        // Reserved above: cannot fail.
        let _ = bufs[i].exports.push_within_capacity(d);
        Ok(())
    }

    /// Makes buffer `index`'s next fence ahead of its QBUF (process context: allocates), after
    /// DQBUF: the buffer is the client's until its next QBUF, and arming there then takes the
    /// spare instead of allocating. Only for a buffer that had a fence (it has a timeline), and
    /// not where a fence pins the module (an unused spare would keep it from unloading).
    /// In the same `bufs` section, what [`Self::prune`] does: one section per DQBUF.
    pub(crate) fn refill(&self, index: u32) -> Result {
        let mut bufs = self.bufs.lock();
        let Some(b) = bufs.get_mut(index as usize) else {
            return Ok(());
        };
        b.prune_exports();
        if ffi::fence_pins_module() || b.spare.is_some() || b.context == 0 {
            return Ok(());
        }
        let name = b.timeline.as_deref().ok_or(EINVAL)?;
        b.spare = Some(Fence::new(b.context, b.seqno + 1, name)?);
        Ok(())
    }

    /// Drops the exports of buffer `index` that nobody but us holds any more (process context):
    /// after DQBUF, so that an export whose fd the client closed is released, as it would be
    /// without the module (mode off with no fence pending skips DQBUF's look: there the next
    /// REQBUFS, close or detach drops them).
    pub(crate) fn prune(&self, index: u32) {
        if let Some(b) = self.bufs.lock().get_mut(index as usize) {
            b.prune_exports();
        }
    }

    /// Whether another device's fence is unsignaled on an export of buffer `index` (process
    /// context; no allocation).
    pub(crate) fn exports_busy(&self, index: u32) -> bool {
        self.bufs
            .lock()
            .get(index as usize)
            .is_some_and(|b| b.exports.iter().any(|d| d.others_busy()))
    }

    /// New references to the exports of buffer `index` (process context).
    pub(crate) fn exports_of(&self, index: u32) -> KVec<DmaBuf> {
        let mut out = KVec::new();
        if let Some(b) = self.bufs.lock().get(index as usize) {
            for d in b.exports.iter() {
                if out.push(d.new_ref(), GFP_KERNEL).is_err() {
                    break;
                }
            }
        }
        out
    }

    /// Mode `dqbuf`: a fence attached at DQBUF, already signaled (process context, after the
    /// driver returned buffer `index` with `outcome`).
    pub(crate) fn dqbuf_fence(&self, index: u32, outcome: Outcome, imported: &[DmaBuf]) -> Result {
        let i = index as usize;
        let mut bufs = self.bufs.lock();
        self.ensure(&mut bufs, index)?;
        let b = &mut bufs[i];
        b.prune_exports();
        let fence = b.next_fence(&self.node, self.id, index)?;
        let targets = distinct(&b.exports, imported)?;
        self.node.counters.armed();
        fence.signal(outcome.errno());
        self.node.counters.signaled(outcome, 0);
        if let Some(s) = self.fences.lock().slots.get_mut(i) {
            s.last = Some(outcome);
        }
        ffi::publish(targets.iter(), &fence)
    }

    /// The dma-bufs imported into buffer `index` of a DMABUF queue (process context, queue lock
    /// held by the ioctl that calls this).
    pub(crate) fn imported(&self, index: u32) -> KVec<DmaBuf> {
        let mut out = KVec::new();
        // SAFETY: called from an ioctl of this queue, with its lock held (glue.h contract of
        // vb2r_rs_pre/post); the queue is alive for the ioctl.
        let planes = unsafe { ffi::vb2r_buffer_planes(self.raw(), index) };
        for p in 0..planes {
            // SAFETY: as above.
            if let Some(d) = unsafe { DmaBuf::imported(self.raw(), index, p) } {
                if out.push(d, GFP_KERNEL).is_err() {
                    break;
                }
            }
        }
        out
    }

    /// Writes this queue's per-buffer state for debugfs (process context).
    pub(crate) fn show(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let now = ffi::now_ns();
        let bufs = self.bufs.lock();
        writeln!(
            f,
            "  queue {} (type {}): {} buffer(s) seen",
            self.id,
            self.type_,
            bufs.len()
        )?;
        for (i, b) in bufs.iter().enumerate() {
            let (pending, armed_ns, last) = {
                let g = self.fences.lock();
                match g.slots.get(i) {
                    Some(s) => (
                        s.fence.as_ref().is_some_and(|f| !f.is_signaled()),
                        s.armed_ns,
                        s.last,
                    ),
                    None => (false, 0, None),
                }
            };
            let state = if pending {
                "hardware (fence pending)"
            } else {
                match last {
                    None => "idle",
                    Some(Outcome::Ok) => "done",
                    Some(Outcome::Eio) => "error (-EIO)",
                    Some(Outcome::Ecanceled) => "cancelled (-ECANCELED)",
                    Some(Outcome::Etimedout) => "timed out (-ETIMEDOUT)",
                }
            };
            write!(
                f,
                "    buf {i}: {state}, exports {}, fences {}",
                b.exports.len(),
                b.seqno
            )?;
            if pending {
                write!(f, ", pending {} us", now.saturating_sub(armed_ns) / 1000)?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
