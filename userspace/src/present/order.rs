//! The buffer hand-over as it really happened, and its check. `present` logs every commit of a
//! CAPTURE buffer to the surface, every wl_buffer.release as it arrives from the compositor and
//! every CAPTURE QBUF (with the buffers the decoder could have reused at that moment), in one
//! sequence. [`check`] replays that sequence on its own, without the [`crate::pipeline::pool::Pool`]'s
//! bookkeeping: a QBUF of a buffer attached and not released since is a requeue while held; a
//! QBUF that does not take the most recently released buffer among those the decoder could
//! reuse is a LIFO violation (as ffmpeg's av_buffer_pool, the buffer released last is reused
//! first). It also counts the moments that make those rules matter, so that a run where they
//! could not have been broken is told apart from a run where they held.

use serde::Serialize;
use std::collections::BTreeSet;

/// One event, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// attach + commit of `buffer` for display position `frame`.
    Attach { buffer: usize, frame: usize },
    /// wl_buffer.release of `buffer`, as received.
    Release { buffer: usize },
    /// CAPTURE QBUF of `buffer`; `free`: the buffers the decoder could reuse then (not a
    /// reference any more, and not waiting for their display turn).
    Qbuf { buffer: usize, free: Vec<usize> },
}

/// What the replay found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OrderCheck {
    pub presented: usize,
    pub released: usize,
    /// QBUFs of a buffer that had been presented and released since.
    pub recaptured: usize,
    pub qbufs: usize,
    /// QBUFs of a buffer the compositor had not released.
    pub requeued_while_held: usize,
    /// QBUFs that did not take the most recently released buffer the decoder could reuse.
    pub lifo_violations: usize,
    /// QBUFs at which the decoder could have reused a buffer the compositor held (a client
    /// that ignores wl_buffer.release would have taken it).
    pub held_reusable: usize,
    /// QBUFs with two or more released buffers to choose from (where FIFO and LIFO differ).
    pub lifo_choices: usize,
}

/// Replays `events`.
pub fn check(events: &[Event]) -> OrderCheck {
    let mut c = OrderCheck::default();
    let mut held = BTreeSet::new();
    let mut shown = BTreeSet::new();
    // Released and not queued again, the most recently released last.
    let mut released: Vec<usize> = Vec::new();
    for e in events {
        match e {
            Event::Attach { buffer, .. } => {
                c.presented += 1;
                held.insert(*buffer);
                shown.insert(*buffer);
                released.retain(|b| b != buffer);
            }
            Event::Release { buffer } => {
                c.released += 1;
                held.remove(buffer);
                released.retain(|b| b != buffer);
                released.push(*buffer);
            }
            Event::Qbuf { buffer, free } => {
                c.qbufs += 1;
                if free.iter().any(|b| held.contains(b)) {
                    c.held_reusable += 1;
                }
                let candidates: Vec<usize> = released
                    .iter()
                    .copied()
                    .filter(|b| free.contains(b))
                    .collect();
                if candidates.len() >= 2 {
                    c.lifo_choices += 1;
                }
                if held.contains(buffer) {
                    c.requeued_while_held += 1;
                } else if candidates.last().is_some_and(|l| l != buffer) {
                    c.lifo_violations += 1;
                }
                if shown.contains(buffer) && !held.contains(buffer) {
                    c.recaptured += 1;
                }
                released.retain(|b| b != buffer);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event::*;

    fn q(buffer: usize, free: &[usize]) -> Event {
        Qbuf {
            buffer,
            free: free.to_vec(),
        }
    }

    #[test]
    fn lifo_after_release_passes() {
        let ev = [
            q(0, &[0, 1, 2]),
            Attach {
                buffer: 0,
                frame: 0,
            },
            q(1, &[1, 2]),
            Attach {
                buffer: 1,
                frame: 1,
            },
            Release { buffer: 0 },
            // 0 is released but still a reference: the decoder offers 2 only.
            q(2, &[2]),
            Attach {
                buffer: 2,
                frame: 2,
            },
            Release { buffer: 1 },
            // 0 and 1 released, 1 last: LIFO takes 1.
            q(1, &[0, 1]),
        ];
        let c = check(&ev);
        assert_eq!(
            (c.presented, c.released, c.recaptured, c.qbufs),
            (3, 2, 1, 4)
        );
        assert_eq!((c.requeued_while_held, c.lifo_violations), (0, 0));
        assert_eq!((c.held_reusable, c.lifo_choices), (0, 1));
    }

    #[test]
    fn held_and_fifo_are_caught() {
        let ev = [
            q(0, &[0, 1, 2]),
            Attach {
                buffer: 0,
                frame: 0,
            },
            // 0 is reusable for the decoder but still shown: taking it is the bug.
            q(0, &[0, 1]),
        ];
        let c = check(&ev);
        assert_eq!((c.requeued_while_held, c.held_reusable), (1, 1));
        let ev = [
            Attach {
                buffer: 0,
                frame: 0,
            },
            Attach {
                buffer: 1,
                frame: 1,
            },
            Release { buffer: 0 },
            Release { buffer: 1 },
            q(0, &[0, 1]),
        ];
        let c = check(&ev);
        assert_eq!((c.lifo_violations, c.lifo_choices), (1, 1));
        // A fresh buffer while a released one could be reused is not LIFO either.
        let ev = [
            Attach {
                buffer: 0,
                frame: 0,
            },
            Release { buffer: 0 },
            q(3, &[0, 3]),
        ];
        assert_eq!(check(&ev).lifo_violations, 1);
    }
}
