// SPDX-License-Identifier: GPL-2.0

//! The fence state machine's decisions, as pure functions over plain values, so that KUnit can
//! test them in isolation: which nodes can be attached, whether a QBUF may arm a fence, which
//! state of a buffer ends its fence and with what, and what a call that can return buffers
//! (STREAMOFF, REQBUFS, REMOVE_BUFS, close) may end.
//!
//! The rule behind all of them: a fence of ours ends only when the hardware is done with its
//! buffer (the driver returned it, vb2 took it back from the driver, or it never reached the
//! driver and never will), never because a call was attempted.

use crate::ffi::{op, VdevInfo};
use kernel::prelude::*;

/// `enum vb2r_buf_state` (glue.h), i.e. `enum vb2_buffer_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufState {
    /// Under userspace control (also a prepared buffer).
    Dequeued,
    InRequest,
    Preparing,
    /// Queued in vb2, not yet handed to the driver.
    Queued,
    /// Owned by the driver: the hardware may be writing it.
    Active,
    /// Returned by the driver, not yet dequeued.
    Done,
    /// Returned by the driver with an error, not yet dequeued.
    Error,
    /// No such buffer.
    None,
}

impl BufState {
    pub(crate) fn from_raw(v: u32) -> BufState {
        match v {
            0 => BufState::Dequeued,
            1 => BufState::InRequest,
            2 => BufState::Preparing,
            3 => BufState::Queued,
            4 => BufState::Active,
            5 => BufState::Done,
            6 => BufState::Error,
            _ => BufState::None,
        }
    }
}

/// How a fence ended, for its error and the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Eio,
    Ecanceled,
    /// The watchdog ended it (`fence_timeout_ms`).
    Etimedout,
}

/// Who owns a vb2 queue, seen from the caller (`vb2r_queue_owner()`; an m2m context's queues
/// always belong to the caller's file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Caller,
    Nobody,
    /// Another file: vb2_queue_is_busy() is true and the vb2 ioctl helpers answer -EBUSY.
    Other,
}

impl Owner {
    pub(crate) fn from_raw(v: u32) -> Owner {
        match v {
            0 => Owner::Nobody,
            1 => Owner::Caller,
            _ => Owner::Other,
        }
    }

    /// The number [`Owner::from_raw`] reads back.
    pub(crate) fn raw(self) -> u32 {
        match self {
            Owner::Nobody => 0,
            Owner::Caller => 1,
            Owner::Other => 2,
        }
    }
}

/// What a vb2_buf_done event does to the buffer's pending fence, decided from the buffer's
/// state *now*: vb2 publishes the buffer on its done list before the tracepoint fires, so by
/// the time the event is handled the buffer may have been dequeued (its fence ended at DQBUF)
/// and queued again with a new fence, which this event must leave alone. Only a buffer that is
/// still DONE or ERROR ends its fence. A buffer handed back QUEUED (start_streaming failed) is
/// still queued and still goes to the hardware at the next STREAMON: its fence stays.
/// `cancelling`: the owner's STREAMOFF, REQBUFS or close is returning buffers, so an ERROR
/// buffer was cancelled, not failed.
pub(crate) fn done_outcome(now: BufState, cancelling: bool) -> Option<Outcome> {
    match now {
        BufState::Done => Some(Outcome::Ok),
        BufState::Error if cancelling => Some(Outcome::Ecanceled),
        BufState::Error => Some(Outcome::Eio),
        _ => None,
    }
}

/// What DQBUF's result says about the buffer it returned (`error`: V4L2_BUF_FLAG_ERROR).
pub(crate) fn dqbuf_outcome(error: bool) -> Outcome {
    if error {
        Outcome::Eio
    } else {
        Outcome::Ok
    }
}

/// Whether a CAPTURE QBUF will be taken by vb2, so that a fence may be published before it:
/// vb2 refuses a queue owned by another file (-EBUSY), a memory type other than the queue's,
/// an index without a buffer, and a buffer that is not dequeued (-EINVAL). Nothing is armed
/// for a QBUF vb2 will refuse.
pub(crate) fn qbuf_may_arm(owner: Owner, queue_memory: u32, memory: u32, state: BufState) -> bool {
    owner != Owner::Other
        && queue_memory != 0
        && queue_memory == memory
        && state == BufState::Dequeued
}

/// Whether a call marks its queue as cancelling while it runs (before the original): only the
/// owner's STREAMOFF, REQBUFS and close return buffers. REMOVE_BUFS only removes dequeued
/// buffers and cancels nothing.
pub(crate) fn marks_cancelling(opcode: u32, owner: Owner) -> bool {
    match opcode {
        op::STREAMOFF | op::REQBUFS => owner != Owner::Other,
        op::RELEASE => owner == Owner::Caller,
        _ => false,
    }
}

/// What to end after a call that can return buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterCall {
    /// Nothing was returned.
    Nothing,
    /// Every buffer is back with userspace: end every pending fence (-ECANCELED).
    All,
    /// The call failed, but vb2 may have freed the buffers before failing: end the fences of
    /// buffers that no longer exist.
    Gone,
    /// The queue is gone (REQBUFS(0) or the owner's close): end everything, forget the queue.
    Kill,
}

/// Decides [`AfterCall`] from the call, whether the original ran and what it returned, the
/// caller's ownership of the queue and (REQBUFS) the count asked for.
pub(crate) fn after_call(opcode: u32, ran: bool, ret: i32, owner: Owner, count: u32) -> AfterCall {
    if !ran || owner == Owner::Other {
        return AfterCall::Nothing;
    }
    match opcode {
        op::STREAMOFF if ret == 0 => AfterCall::All,
        op::REQBUFS if ret == 0 && count == 0 => AfterCall::Kill,
        op::REQBUFS if ret == 0 => AfterCall::All,
        // -EBUSY: vb2 changed nothing (buffers in use, or another owner).
        op::REQBUFS if ret == -(kernel::bindings::EBUSY as i32) => AfterCall::Nothing,
        op::REQBUFS => AfterCall::Gone,
        op::RELEASE if owner == Owner::Caller => AfterCall::Kill,
        _ => AfterCall::Nothing,
    }
}

/// One buffer of an m2m context's queue, as the pairing sees it (`struct vb2r_snap_buf`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapBuf {
    pub(crate) index: u32,
    /// OUTPUT: V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF; CAPTURE: held by the previous job.
    pub(crate) hold: u32,
    /// CAPTURE: a timestamp was copied into it from an OUTPUT buffer.
    pub(crate) ts_valid: u32,
    pub(crate) pad: u32,
    pub(crate) ts: u64,
}

/// The committed jobs: `job(src, dst)` for each, in order (OUTPUT and CAPTURE buffer indices).
/// The m2m core pairs the OUTPUT buffers `src` with the CAPTURE buffers `dst`, both in
/// ready-queue order, one job per OUTPUT buffer. A job returns its CAPTURE buffer unless its
/// OUTPUT buffer asks to hold it (V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF, slice-based decoding); a
/// held CAPTURE buffer is written by the next job only if that job's OUTPUT buffer has the same
/// timestamp (the same picture), and is returned otherwise. Only jobs with both buffers in the
/// driver's queues and both queues streaming are committed: nothing else runs without more from
/// userspace.
pub(crate) fn strict_pairs(
    src: &[SnapBuf],
    dst: &[SnapBuf],
    streaming: bool,
    mut job: impl FnMut(u32, u32),
) {
    if !streaming {
        return;
    }
    let mut k = 0usize;
    // A CAPTURE buffer held by an earlier job is written next only by the same picture.
    let mut held_ts = dst
        .first()
        .filter(|d| d.hold != 0 && d.ts_valid != 0)
        .map(|d| d.ts);
    for s in src {
        if let Some(ts) = held_ts {
            if ts != s.ts {
                // The m2m core returns the held buffer and takes the next one.
                k += 1;
            }
        }
        let Some(d) = dst.get(k) else { break };
        job(s.index, d.index);
        if s.hold != 0 {
            held_ts = Some(s.ts);
        } else {
            held_ts = None;
            k += 1;
        }
    }
}

/// `V4L2_CAP_*` (UAPI values).
const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x1;
const V4L2_CAP_VIDEO_CAPTURE_MPLANE: u32 = 0x1000;
const V4L2_CAP_VIDEO_M2M_MPLANE: u32 = 0x4000;
const V4L2_CAP_VIDEO_M2M: u32 = 0x8000;
const V4L2_CAP_STREAMING: u32 = 0x0400_0000;

/// Whether a node can be attached: a registered video node with a capture or mem2mem queue,
/// driven by videobuf2's streaming ioctls. -EINVAL for a node of another kind, -ENODEV for one
/// that is going away.
pub(crate) fn attachable(i: &VdevInfo) -> Result {
    if i.registered == 0 {
        return Err(ENODEV);
    }
    let capture = V4L2_CAP_VIDEO_CAPTURE
        | V4L2_CAP_VIDEO_CAPTURE_MPLANE
        | V4L2_CAP_VIDEO_M2M
        | V4L2_CAP_VIDEO_M2M_MPLANE;
    if i.vfl_type != i.vfl_video
        || i.device_caps & capture == 0
        || i.device_caps & V4L2_CAP_STREAMING == 0
        || i.has_qbuf == 0
    {
        return Err(EINVAL);
    }
    Ok(())
}

// 7.x only: 6.12 has no #[kunit_tests] (6.15+).
#[cfg(not(vb2r_k612))]
#[kunit_tests(vb2_resv_policy)]
mod tests {
    use super::*;

    const ALL: [BufState; 8] = [
        BufState::Dequeued,
        BufState::InRequest,
        BufState::Preparing,
        BufState::Queued,
        BufState::Active,
        BufState::Done,
        BufState::Error,
        BufState::None,
    ];

    #[test]
    fn only_done_and_error_end_a_fence() {
        for s in ALL {
            for cancelling in [false, true] {
                let o = done_outcome(s, cancelling);
                match s {
                    BufState::Done => assert_eq!(o, Some(Outcome::Ok)),
                    BufState::Error if cancelling => assert_eq!(o, Some(Outcome::Ecanceled)),
                    BufState::Error => assert_eq!(o, Some(Outcome::Eio)),
                    // A late event for a buffer already dequeued or queued again, or one handed
                    // back QUEUED by a failed start_streaming: its fence is not this event's.
                    _ => assert_eq!(o, None),
                }
            }
        }
    }

    #[test]
    fn buf_state_numbers_round_trip() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(BufState::from_raw(i as u32), *s);
        }
        assert_eq!(BufState::from_raw(99), BufState::None);
    }

    #[test]
    fn qbuf_arms_only_what_vb2_will_take() {
        const MMAP: u32 = 1;
        const DMABUF: u32 = 4;
        assert!(qbuf_may_arm(Owner::Caller, MMAP, MMAP, BufState::Dequeued));
        assert!(qbuf_may_arm(Owner::Nobody, MMAP, MMAP, BufState::Dequeued));
        assert!(!qbuf_may_arm(Owner::Other, MMAP, MMAP, BufState::Dequeued));
        assert!(!qbuf_may_arm(
            Owner::Caller,
            MMAP,
            DMABUF,
            BufState::Dequeued
        ));
        assert!(!qbuf_may_arm(Owner::Caller, 0, 0, BufState::Dequeued));
        for s in ALL {
            assert_eq!(
                qbuf_may_arm(Owner::Caller, DMABUF, DMABUF, s),
                s == BufState::Dequeued
            );
        }
    }

    #[test]
    fn a_non_owner_cancels_nothing() {
        for opc in [op::STREAMOFF, op::REQBUFS, op::REMOVE_BUFS, op::RELEASE] {
            assert!(!marks_cancelling(opc, Owner::Other));
            for ret in [0, -16, -22] {
                assert_eq!(
                    after_call(opc, true, ret, Owner::Other, 0),
                    AfterCall::Nothing
                );
            }
        }
        // A close of a file that does not own the queue releases nothing (vb2_fop_release()).
        assert!(!marks_cancelling(op::RELEASE, Owner::Nobody));
        assert_eq!(
            after_call(op::RELEASE, true, 0, Owner::Nobody, 0),
            AfterCall::Nothing
        );
    }

    #[test]
    fn only_a_call_that_succeeded_cancels() {
        assert_eq!(
            after_call(op::STREAMOFF, true, 0, Owner::Caller, 0),
            AfterCall::All
        );
        assert_eq!(
            after_call(op::STREAMOFF, true, -22, Owner::Caller, 0),
            AfterCall::Nothing
        );
        assert_eq!(
            after_call(op::STREAMOFF, false, -4, Owner::Caller, 0),
            AfterCall::Nothing
        );
        assert_eq!(
            after_call(op::REQBUFS, true, 0, Owner::Caller, 4),
            AfterCall::All
        );
        assert_eq!(
            after_call(op::REQBUFS, true, 0, Owner::Caller, 0),
            AfterCall::Kill
        );
        assert_eq!(
            after_call(op::REQBUFS, true, -16, Owner::Caller, 0),
            AfterCall::Nothing
        );
        assert_eq!(
            after_call(op::REQBUFS, true, -12, Owner::Caller, 4),
            AfterCall::Gone
        );
        assert_eq!(
            after_call(op::RELEASE, true, 0, Owner::Caller, 0),
            AfterCall::Kill
        );
    }

    #[test]
    fn remove_bufs_cancels_nothing() {
        assert!(!marks_cancelling(op::REMOVE_BUFS, Owner::Caller));
        assert_eq!(
            after_call(op::REMOVE_BUFS, true, 0, Owner::Caller, 1),
            AfterCall::Nothing
        );
    }

    /// The CAPTURE buffers the committed jobs write, as a bit mask.
    fn strict_paired(src: &[SnapBuf], dst: &[SnapBuf], streaming: bool) -> u64 {
        let mut mask = 0u64;
        strict_pairs(src, dst, streaming, |_, d| mask |= 1 << d);
        mask
    }

    fn sb(index: u32, hold: u32, ts: u64) -> SnapBuf {
        SnapBuf {
            index,
            hold,
            ts_valid: 0,
            pad: 0,
            ts,
        }
    }

    #[test]
    fn strict_pairs_one_job_per_output_buffer() {
        let d = [sb(0, 0, 0), sb(1, 0, 0), sb(2, 0, 0)];
        // No bitstream yet: no CAPTURE buffer has a committed job.
        assert_eq!(strict_paired(&[], &d, true), 0);
        // Two frames queued: the first two CAPTURE buffers, in order.
        assert_eq!(strict_paired(&[sb(5, 0, 1), sb(6, 0, 2)], &d, true), 0b011);
        // More frames than CAPTURE buffers: every CAPTURE buffer.
        let s = [sb(5, 0, 1), sb(6, 0, 2), sb(7, 0, 3), sb(8, 0, 4)];
        assert_eq!(strict_paired(&s, &d, true), 0b111);
        // Not streaming on both sides: nothing is committed.
        assert_eq!(strict_paired(&s, &d, false), 0);
        // No CAPTURE buffer: nothing to fence.
        assert_eq!(strict_paired(&s, &[], true), 0);
    }

    #[test]
    fn strict_slices_share_their_capture_buffer() {
        let d = [sb(3, 0, 0), sb(4, 0, 0)];
        // Three slices of picture 1 (held, held, last), then picture 2.
        let s = [sb(0, 1, 1), sb(1, 1, 1), sb(2, 0, 1), sb(3, 0, 2)];
        assert_eq!(strict_paired(&s, &d, true), (1 << 3) | (1 << 4));
        // Only the first slice queued: only its CAPTURE buffer, and only that one.
        assert_eq!(strict_paired(&s[..1], &d, true), 1 << 3);
        // Every slice held (userspace does not know which is last) and the next picture comes:
        // the m2m core returns the held buffer and the next picture writes the next one.
        let s = [sb(0, 1, 1), sb(1, 1, 2)];
        assert_eq!(strict_paired(&s, &d, true), (1 << 3) | (1 << 4));
        // A buffer held by an earlier slice job: a slice of the same picture writes it...
        let held = [
            SnapBuf {
                hold: 1,
                ts_valid: 1,
                ..sb(3, 0, 7)
            },
            sb(4, 0, 0),
        ];
        assert_eq!(strict_paired(&[sb(9, 0, 7)], &held, true), 1 << 3);
        // ... a slice of the next picture does not.
        assert_eq!(strict_paired(&[sb(9, 0, 8)], &held, true), 1 << 4);
    }

    #[test]
    fn attachable_nodes() {
        let good = VdevInfo {
            vfl_type: 0,
            vfl_video: 0,
            device_caps: V4L2_CAP_VIDEO_M2M_MPLANE | V4L2_CAP_STREAMING,
            has_qbuf: 1,
            uses_fh: 1,
            registered: 1,
        };
        assert!(attachable(&good).is_ok());
        let out = VdevInfo {
            device_caps: 0x2 | V4L2_CAP_STREAMING,
            ..good
        };
        assert_eq!(attachable(&out), Err(EINVAL));
        let radio = VdevInfo {
            vfl_type: 2,
            ..good
        };
        assert_eq!(attachable(&radio), Err(EINVAL));
        let gone = VdevInfo {
            registered: 0,
            ..good
        };
        assert_eq!(attachable(&gone), Err(ENODEV));
    }
}
