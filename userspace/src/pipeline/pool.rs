//! The CAPTURE buffers between the decoder and the compositor, as ffmpeg's buffer pool and mpv
//! keep them: a buffer attached to the surface is the compositor's until its wl_buffer.release;
//! released buffers go back on a stack and the next picture gets the most recently released
//! one the decoder can reuse (LIFO, as av_buffer_pool does).

use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolStats {
    /// Commits of a buffer to the surface.
    pub presented: usize,
    /// wl_buffer.release events received.
    pub released: usize,
    /// CAPTURE QBUFs of a buffer that had been presented and then released.
    pub recaptured: usize,
    /// CAPTURE QBUFs of a buffer the compositor had not released (must be 0).
    pub requeued_while_held: usize,
    /// QBUFs that did not take the most recently released buffer the decoder could reuse.
    pub lifo_violations: usize,
    /// The buffers in the order they were released, and in the order they were queued again.
    pub release_order: Vec<usize>,
    pub requeue_order: Vec<usize>,
}

pub struct Pool {
    /// Attached and not released yet.
    held: BTreeSet<usize>,
    /// Presented at least once.
    shown: BTreeSet<usize>,
    /// Free buffers, the most recently released last.
    stack: Vec<usize>,
    /// Buffers in the order they were last attached.
    attach_order: Vec<usize>,
    /// Ignore releases (the test's broken variant: requeue whatever the decoder frees).
    ignore_release: bool,
    /// Take the least recently released buffer first (the test's other broken variant: FIFO).
    fifo: bool,
    pub stats: PoolStats,
}

impl Pool {
    pub fn new(ignore_release: bool) -> Pool {
        Pool {
            held: BTreeSet::new(),
            shown: BTreeSet::new(),
            stack: Vec::new(),
            attach_order: Vec::new(),
            ignore_release,
            fifo: false,
            stats: PoolStats::default(),
        }
    }

    /// The same pool handing out the least recently released buffer first (FIFO: a broken
    /// variant, counted in `lifo_violations`).
    pub fn fifo(mut self) -> Pool {
        self.fifo = true;
        self
    }

    pub fn is_held(&self, b: usize) -> bool {
        self.held.contains(&b)
    }

    pub fn attached(&mut self, b: usize) {
        self.held.insert(b);
        self.shown.insert(b);
        self.attach_order.retain(|&x| x != b);
        self.attach_order.push(b);
        self.stack.retain(|&x| x != b);
        self.stats.presented += 1;
    }

    pub fn released(&mut self, b: usize) {
        self.stats.released += 1;
        self.stats.release_order.push(b);
        self.held.remove(&b);
        self.stack.retain(|&x| x != b);
        self.stack.push(b);
    }

    /// Dequeued by the decoder but not yet presented (waiting for its display turn).
    pub fn pending(&mut self, b: usize) {
        self.stack.retain(|&x| x != b);
    }

    /// The buffer for the next QBUF among those the decoder can reuse, or None.
    pub fn choose(&mut self, free: &[usize], not_pending: impl Fn(usize) -> bool) -> Option<usize> {
        let usable = |b: &usize| free.contains(b) && not_pending(*b);
        let fresh = || {
            // An empty stack: a buffer never shown yet (the pool grows, lowest index first).
            free.iter()
                .copied()
                .find(|b| !self.shown.contains(b) && !self.held.contains(b) && not_pending(*b))
        };
        let lifo = self.stack.iter().rev().copied().find(usable).or_else(fresh);
        let pick = if self.ignore_release {
            // Whatever the decoder freed, held by the compositor or not: the buffer shown last
            // first (it is the one the compositor still holds), else the lowest index.
            self.attach_order
                .iter()
                .rev()
                .copied()
                .find(|b| free.contains(b) && not_pending(*b))
                .or_else(|| free.iter().copied().find(|&b| not_pending(b)))
        } else if self.fifo {
            self.stack.iter().copied().find(usable).or_else(fresh)
        } else {
            lifo
        }?;
        if self.held.contains(&pick) {
            self.stats.requeued_while_held += 1;
        } else if lifo != Some(pick) {
            self.stats.lifo_violations += 1;
        }
        if self.shown.contains(&pick) && !self.held.contains(&pick) {
            self.stats.recaptured += 1;
        }
        self.stack.retain(|&x| x != pick);
        self.stats.requeue_order.push(pick);
        Some(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_and_held() {
        let mut p = Pool::new(false);
        assert_eq!(p.choose(&[0, 1, 2, 3], |_| true), Some(0));
        p.attached(0);
        assert_eq!(p.choose(&[0, 1, 2, 3], |_| true), Some(1));
        p.attached(1);
        // 0 is held: not handed out even though the decoder frees it.
        assert_eq!(p.choose(&[0], |_| true), None);
        p.released(0);
        p.released(1);
        // The most recently released first.
        assert_eq!(p.choose(&[0, 1], |_| true), Some(1));
        assert_eq!(p.stats.recaptured, 1);
        assert_eq!(p.stats.requeued_while_held, 0);
        let mut q = Pool::new(true);
        q.choose(&[0, 1], |_| true);
        q.attached(0);
        q.choose(&[0, 1], |_| true);
        assert_eq!(q.stats.requeued_while_held, 1);
        let mut f = Pool::new(false).fifo();
        for b in [0, 1] {
            f.choose(&[0, 1], |_| true);
            f.attached(b);
        }
        f.released(0);
        f.released(1);
        assert_eq!(f.choose(&[0, 1], |_| true), Some(0));
        assert_eq!(f.stats.lifo_violations, 1);
    }
}
