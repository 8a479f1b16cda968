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

use crate::ffi::{self, DmaBuf, Fence, Vb2Queue};
use crate::node::Node;
use core::ffi::c_int;
use kernel::prelude::*;
use kernel::sync::{new_mutex, Arc, Mutex};

#[cfg(vb2r_k612)]
use crate::k612::{new_spinlock_irq, KVecExt, SpinLockIrq};
#[cfg(not(vb2r_k612))]
use kernel::sync::{new_spinlock_irq, SpinLockIrq};

/// How a fence ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Eio,
    Ecanceled,
}

impl Outcome {
    pub(crate) fn errno(self) -> c_int {
        match self {
            Outcome::Ok => 0,
            Outcome::Eio => -(kernel::bindings::EIO as c_int),
            Outcome::Ecanceled => -(kernel::bindings::ECANCELED as c_int),
        }
    }

    /// What a fence signals with when the driver returns its buffer in `state`
    /// (`ffi::buf_state`), or when the queue is being cancelled.
    pub(crate) fn for_done(state: u32, cancelling: bool) -> Outcome {
        if cancelling {
            // STREAMOFF, REQBUFS(0), close or detach: vb2 returns them as ERROR; they were
            // cancelled, not failed.
            return Outcome::Ecanceled;
        }
        match state {
            ffi::buf_state::DONE => Outcome::Ok,
            ffi::buf_state::ERROR => Outcome::Eio,
            // start_streaming() failed and handed the buffer back as queued: nothing was written.
            ffi::buf_state::QUEUED => Outcome::Ecanceled,
            _ => Outcome::Eio,
        }
    }
}

/// The fence side of one buffer (under `fences`).
#[derive(Default)]
struct FenceSlot {
    fence: Option<Fence>,
    armed_ns: u64,
    /// How the last fence of this buffer ended, for debugfs.
    last: Option<Outcome>,
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
    /// Every dma-buf VIDIOC_EXPBUF made of this buffer since the module saw it, referenced.
    exports: KVec<DmaBuf>,
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
    #[pin]
    bufs: Mutex<KVec<BufInfo>>,
    #[pin]
    fences: SpinLockIrq<Fences>,
}

impl Queue {
    pub(crate) fn new(q: *mut Vb2Queue, node: Arc<Node>, id: u32, type_: u32) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Queue {
                q: q as usize,
                node,
                id,
                type_,
                bufs <- new_mutex!(KVec::new()),
                fences <- new_spinlock_irq!(Fences { cancelling: false, dead: false, slots: KVec::new() }),
            }),
            GFP_KERNEL,
        )
    }

    fn raw(&self) -> *mut Vb2Queue {
        self.q as *mut Vb2Queue
    }

    /// Grows both tables to hold `n` buffers (process context, `bufs` held by the caller).
    /// Indices at or above the queue's `max_num_buffers` are refused with -EINVAL, as vb2
    /// refuses them, before anything is allocated for them.
    fn ensure(&self, bufs: &mut KVec<BufInfo>, n: usize) -> Result {
        // SAFETY: called from an ioctl of this queue (glue.h contract), so `q` is alive.
        if n > unsafe { ffi::vb2r_queue_max_buffers(self.raw()) } as usize {
            return Err(EINVAL);
        }
        while bufs.len() < n {
            bufs.push(BufInfo::default(), GFP_KERNEL)?;
        }
        // The fence table may only be allocated outside its spinlock: build a bigger one here
        // and swap it in under the lock.
        if self.fences.lock().slots.len() >= n {
            return Ok(());
        }
        let mut bigger = KVec::with_capacity(n, GFP_KERNEL)?;
        let old = {
            let mut g = self.fences.lock();
            for s in g.slots.drain_all() {
                // Within capacity: cannot allocate or fail.
                let _ = bigger.push_within_capacity(s);
            }
            while bigger.len() < n {
                let _ = bigger.push_within_capacity(FenceSlot::default());
            }
            core::mem::replace(&mut g.slots, bigger)
        };
        drop(old);
        Ok(())
    }

    /// Marks the queue as returning buffers because of a cancel (STREAMOFF, REQBUFS, close).
    pub(crate) fn set_cancelling(&self, on: bool) {
        self.fences.lock().cancelling = on;
    }

    /// Arms a WRITE fence for buffer `index` on every dma-buf that backs it: the exports this
    /// module saw, and `imported` (the DMABUF fds of this QBUF). Process context, in QBUF before
    /// the driver sees the buffer. Returns whether a fence was armed.
    pub(crate) fn arm(&self, index: u32, imported: &[DmaBuf]) -> Result<bool> {
        let i = index as usize;
        let mut bufs = self.bufs.lock();
        self.ensure(&mut bufs, i + 1)?;
        {
            let g = self.fences.lock();
            if g.dead {
                return Ok(false);
            }
            if let Some(f) = &g.slots[i].fence {
                if !f.is_signaled() {
                    // Still owned by the hardware: this QBUF will fail (-EINVAL from vb2).
                    return Ok(false);
                }
            }
        }
        let b = &mut bufs[i];
        if b.context == 0 {
            b.context = ffi::fence_context();
        }
        b.seqno += 1;
        let name = self.node.timeline_name(self.id, index)?;
        let fence = Fence::new(b.context, b.seqno, &name)?;
        let slot_ref = Fence::new_ref(&fence);
        {
            let mut g = self.fences.lock();
            if g.dead {
                drop(g);
                fence.signal(Outcome::Ecanceled.errno());
                return Ok(false);
            }
            let old = g.slots[i].fence.replace(slot_ref);
            g.slots[i].armed_ns = ffi::now_ns();
            drop(g);
            drop(old);
        }
        self.node.counters.armed();
        let mut result = Ok(true);
        for d in Iterator::chain(b.exports.iter(), imported.iter()) {
            if let Err(e) = d.add_write_fence(&fence) {
                result = Err(e);
                break;
            }
        }
        if result.is_err() {
            // The QBUF fails with this error: take the fence back and cancel it.
            self.finish(index, Outcome::Ecanceled);
        }
        result
    }

    /// Signals buffer `index`'s pending fence with `outcome`, if it has one. Any context.
    /// Returns whether there was one.
    pub(crate) fn finish(&self, index: u32, outcome: Outcome) -> bool {
        self.finish_armed_before(index, outcome, u64::MAX)
    }

    /// [`Self::finish`], but only for a fence armed before `event_ns` (`ffi::now_ns()` time):
    /// an event handled late (see `buf_done`) must not end a fence armed after it happened.
    fn finish_armed_before(&self, index: u32, outcome: Outcome, event_ns: u64) -> bool {
        let (fence, armed_ns) = {
            let mut g = self.fences.lock();
            match g.slots.get_mut(index as usize) {
                Some(s) if s.armed_ns > event_ns => (None, 0),
                Some(s) => {
                    if s.fence.as_ref().is_some_and(|f| !f.is_signaled()) {
                        s.last = Some(outcome);
                    }
                    (s.fence.take(), s.armed_ns)
                }
                None => (None, 0),
            }
        };
        let Some(fence) = fence else {
            return false;
        };
        if fence.is_signaled() {
            return false;
        }
        fence.signal(outcome.errno());
        self.node
            .counters
            .signaled(outcome, ffi::now_ns().saturating_sub(armed_ns));
        true
    }

    /// The vb2_buf_done probe for this queue (any context). `event_ns` is `u64::MAX` when the
    /// probe handles the event as it happens; when glue.c hands it to an irq_work
    /// (`test_hardirq_signal`) it is when the driver returned the buffer, which by then may have
    /// been dequeued and queued again with a new fence, which this event must leave alone.
    pub(crate) fn buf_done(&self, index: u32, state: u32, event_ns: u64) {
        let cancelling = self.fences.lock().cancelling;
        self.finish_armed_before(index, Outcome::for_done(state, cancelling), event_ns);
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
        self.ensure(&mut bufs, i + 1)?;
        let pending = {
            let g = self.fences.lock();
            g.slots[i]
                .fence
                .as_ref()
                .filter(|f| !f.is_signaled())
                .map(Fence::new_ref)
        };
        if let Some(f) = pending {
            d.add_write_fence(&f)?;
        }
        bufs[i].exports.push(d, GFP_KERNEL)?;
        Ok(())
    }

    /// Mode `dqbuf`: a fence attached at DQBUF, already signaled (process context, after the
    /// driver returned buffer `index` with `outcome`).
    pub(crate) fn dqbuf_fence(&self, index: u32, outcome: Outcome, imported: &[DmaBuf]) -> Result {
        let i = index as usize;
        let mut bufs = self.bufs.lock();
        self.ensure(&mut bufs, i + 1)?;
        let b = &mut bufs[i];
        if b.context == 0 {
            b.context = ffi::fence_context();
        }
        b.seqno += 1;
        let name = self.node.timeline_name(self.id, index)?;
        let fence = Fence::new(b.context, b.seqno, &name)?;
        self.node.counters.armed();
        fence.signal(outcome.errno());
        self.node.counters.signaled(outcome, 0);
        if let Some(s) = self.fences.lock().slots.get_mut(i) {
            s.last = Some(outcome);
        }
        for d in Iterator::chain(b.exports.iter(), imported.iter()) {
            d.add_write_fence(&fence)?;
        }
        Ok(())
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
