// SPDX-License-Identifier: GPL-2.0

//! An attached (or once attached) V4L2 video node: its names, whether it is attached, and its
//! counters.

use crate::ffi::Name;
use crate::queue::Outcome;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
#[cfg(vb2r_k612)]
use kernel::fmt;
use kernel::prelude::*;
use kernel::str::CString;

// Counters use core atomics: they are plain statistics (Relaxed), updated from any context, and
// `core::sync::atomic` is available on every kernel we build for (6.12 has no kernel::sync::atomic).

/// The counters debugfs shows for a node.
#[derive(Default)]
pub(crate) struct Counters {
    /// Fences attached to this node's buffers (every mode that attaches one).
    pub(crate) attached: AtomicU64,
    pub(crate) ok: AtomicU64,
    pub(crate) eio: AtomicU64,
    pub(crate) ecanceled: AtomicU64,
    pub(crate) etimedout: AtomicU64,
    /// QBUFs that handed the hardware a CAPTURE buffer with other devices' fences still
    /// unsignaled on one of its dma-bufs (counted whether `wait_readers` is on or not).
    pub(crate) readers_busy: AtomicU64,
    /// Waits for those readers (`wait_readers`), their longest in ns, and how many timed out.
    pub(crate) readers_waited: AtomicU64,
    pub(crate) readers_longest_ns: AtomicU64,
    pub(crate) readers_timeouts: AtomicU64,
    /// Attached and not yet signaled.
    pub(crate) pending: AtomicU64,
    /// The longest time a fence stayed pending, in ns.
    pub(crate) longest_ns: AtomicU64,
}

impl Counters {
    pub(crate) fn armed(&self) {
        self.attached.fetch_add(1, Relaxed);
        self.pending.fetch_add(1, Relaxed);
    }

    pub(crate) fn signaled(&self, outcome: Outcome, pending_ns: u64) {
        match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Eio => &self.eio,
            Outcome::Ecanceled => &self.ecanceled,
            Outcome::Etimedout => &self.etimedout,
        }
        .fetch_add(1, Relaxed);
        self.pending.fetch_sub(1, Relaxed);
        self.longest_ns.fetch_max(pending_ns, Relaxed);
    }
}

/// A video node the module attached to. It stays known (detached) until the module unloads, so
/// that a hooked ioctl still running after a detach always finds its node.
pub(crate) struct Node {
    /// The `struct video_device` address (identity only; never dereferenced from Rust).
    pub(crate) vdev: usize,
    pub(crate) name: Name,
    pub(crate) driver: Name,
    pub(crate) attached: AtomicBool,
    /// The node was unregistered (its driver unbound): nothing is armed on it any more.
    pub(crate) unregistered: AtomicBool,
    /// Hooked calls running on the node that can hand buffers to the driver or allocate and
    /// free them (every hooked call but DQBUF, which may sleep as long as the stream lasts):
    /// unregistration waits for them.
    pub(crate) busy_calls: AtomicU32,
    pub(crate) counters: Counters,
}

impl Node {
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.load(core::sync::atomic::Ordering::Acquire)
    }

    /// Attached, and its device still registered: new fences may be armed.
    pub(crate) fn is_live(&self) -> bool {
        self.is_attached()
            && !self
                .unregistered
                .load(core::sync::atomic::Ordering::Acquire)
    }

    /// The timeline name of buffer `index` of queue `queue`: the node, the queue and the buffer,
    /// e.g. `video3:q1:cap2`, so that SYNC_IOC_FILE_INFO and traces say where a wait comes from.
    pub(crate) fn timeline_name(&self, queue: u32, index: u32) -> Result<CString> {
        CString::try_from_fmt(fmt!(
            "{:?}:q{}:cap{}",
            crate::Bytes(self.name.bytes()),
            queue,
            index
        ))
    }

    /// The counters part of this node's debugfs file.
    pub(crate) fn show_counters(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let c = &self.counters;
        writeln!(
            f,
            "node {:?} driver {:?} {}",
            crate::Bytes(self.name.bytes()),
            crate::Bytes(self.driver.bytes()),
            match (self.is_attached(), self.unregistered.load(Relaxed)) {
                (true, false) => "attached",
                (true, true) => "attached (device unregistered)",
                (false, _) => "detached",
            }
        )?;
        writeln!(f, "fences attached: {}", c.attached.load(Relaxed))?;
        writeln!(f, "signaled ok: {}", c.ok.load(Relaxed))?;
        writeln!(f, "signaled -EIO: {}", c.eio.load(Relaxed))?;
        writeln!(f, "signaled -ECANCELED: {}", c.ecanceled.load(Relaxed))?;
        writeln!(f, "signaled -ETIMEDOUT: {}", c.etimedout.load(Relaxed))?;
        writeln!(f, "pending now: {}", c.pending.load(Relaxed))?;
        writeln!(
            f,
            "longest pending: {} us",
            c.longest_ns.load(Relaxed) / 1000
        )?;
        writeln!(f, "readers busy at QBUF: {}", c.readers_busy.load(Relaxed))?;
        writeln!(
            f,
            "readers waited for: {}, longest {} us, timed out {}",
            c.readers_waited.load(Relaxed),
            c.readers_longest_ns.load(Relaxed) / 1000,
            c.readers_timeouts.load(Relaxed)
        )
    }
}
