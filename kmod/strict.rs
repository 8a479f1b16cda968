// SPDX-License-Identifier: GPL-2.0

//! Mode `strict`: a fence only while a job that writes the buffer is committed or running.
//!
//! A job is committed when it needs nothing more from userspace: for an m2m context, an
//! OUTPUT buffer (a stateless decoder's bitstream request) and the CAPTURE buffer the m2m core
//! will pair it with are both in the driver's ready queues and both queues stream
//! ([`policy::strict_pairs`]); for a capture device, the buffer is queued while it streams.
//! The arming points are the calls that commit a job: CAPTURE QBUF, an m2m context's OUTPUT
//! QBUF, a media request's queueing (`req_queue`, wrapped), and STREAMON of either side. Each
//! runs before the original call, which may start the hardware (visl runs a job inside it).
//! A job's fence ends at the job's end: the CAPTURE buffer's buf_done, or, for a slice whose
//! OUTPUT buffer holds the CAPTURE buffer for the next slice
//! (V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF), the OUTPUT buffer's buf_done, unless the next queued
//! slice is of the same picture (then the fence covers that job too: one fence per run of
//! committed jobs, never one that waits for a request not yet queued).

use crate::ffi::{self, DmaBuf, M2mSnap, Vb2Buffer, SNAP_MAX};
use crate::policy::{self, Outcome, SnapBuf};
use crate::queue::Queue;
use kernel::prelude::*;

#[cfg(vb2r_k612)]
use crate::k612::KVecExt;

/// The per-queue working memory of [`commit`]: the m2m snapshot and the job lists, allocated
/// once (the first commit of the queue) and reused, so that a commit allocates nothing.
pub(crate) struct Scratch {
    snap: KBox<M2mSnap>,
    src: KVec<SnapBuf>,
    dst: KVec<SnapBuf>,
    jobs: KVec<(u32, u32)>,
}

impl Scratch {
    /// Process context: allocates.
    pub(crate) fn new() -> Result<Self> {
        let mut snap = KBox::<M2mSnap>::new_uninit(GFP_KERNEL)?;
        // SAFETY: M2mSnap is plain integers (`repr(C)`, no references): all zeroes is a valid
        // value, written over the whole allocation before it is assumed initialised.
        let snap = unsafe {
            core::ptr::write_bytes(snap.as_mut_ptr(), 0, 1);
            snap.assume_init()
        };
        Ok(Scratch {
            snap,
            src: KVec::with_capacity(2 * SNAP_MAX + 4, GFP_KERNEL)?,
            dst: KVec::with_capacity(2 * SNAP_MAX + 1, GFP_KERNEL)?,
            jobs: KVec::with_capacity(2 * SNAP_MAX + 4, GFP_KERNEL)?,
        })
    }
}

fn list(bufs: &[SnapBuf], n: u32) -> &[SnapBuf] {
    &bufs[..(n as usize).min(SNAP_MAX)]
}

/// Where a call adds buffers to an m2m context's ready queues, and which side it starts.
#[derive(Default)]
pub(crate) struct Change<'a> {
    /// OUTPUT buffers about to enter the ready queue (OUTPUT QBUF, a request).
    pub(crate) src: &'a [SnapBuf],
    /// A CAPTURE buffer about to enter it (CAPTURE QBUF).
    pub(crate) dst: Option<SnapBuf>,
    /// STREAMON of the OUTPUT / CAPTURE queue: vb2 hands it the buffers it holds.
    pub(crate) out_on: bool,
    pub(crate) cap_on: bool,
}

/// The committed jobs (OUTPUT index, CAPTURE index) once `change` is done, into `x.jobs`, from
/// the snapshot in `x.snap` (no allocation while the lists fit the capacity [`Scratch::new`]
/// gave them, which a change of at most 4 OUTPUT buffers does).
fn jobs_after(x: &mut Scratch, change: &Change<'_>) -> Result {
    let s = &*x.snap;
    let out_on = s.out_streaming != 0 || change.out_on;
    let cap_on = s.cap_streaming != 0 || s.ignore_cap_streaming != 0 || change.cap_on;
    let (src, dst, jobs) = (&mut x.src, &mut x.dst, &mut x.jobs);
    src.clear();
    dst.clear();
    jobs.clear();
    src.extend_from_slice(list(&s.src, s.nsrc), GFP_KERNEL)?;
    dst.extend_from_slice(list(&s.dst, s.ndst), GFP_KERNEL)?;
    if change.out_on {
        src.extend_from_slice(list(&s.src_vb2, s.nsrc_vb2), GFP_KERNEL)?;
    }
    if change.cap_on {
        dst.extend_from_slice(list(&s.dst_vb2, s.ndst_vb2), GFP_KERNEL)?;
    }
    // Buffers queued on a side that is not streaming stay with vb2 until its STREAMON.
    if out_on {
        src.extend_from_slice(change.src, GFP_KERNEL)?;
    }
    if let (Some(d), true) = (change.dst, s.cap_streaming != 0 || change.cap_on) {
        dst.push(d, GFP_KERNEL)?;
    }
    jobs.reserve(src.len(), GFP_KERNEL)?;
    policy::strict_pairs(src, dst, out_on && cap_on, |s, d| {
        // Within capacity (one job per OUTPUT buffer at most): cannot allocate or fail.
        let _ = jobs.push_within_capacity((s, d));
    });
    Ok(())
}

/// Commits the jobs `change` makes on the m2m context of `queue` (process context, its queue
/// lock held, before the call that makes the change): arms each job's CAPTURE buffer that has
/// no pending fence yet, and records the job (its OUTPUT buffer) on the fence that covers it;
/// `this` is the buffer of the current CAPTURE QBUF with the dma-bufs its fds name (its vb2
/// planes are not set yet). Other buffers are in the driver already: their imports come from
/// vb2. Only the jobs whose CAPTURE buffer is in `only` (a mask; all when `u64::MAX`) are looked
/// at. Returns the mask of buffers armed.
pub(crate) fn commit(
    queue: &Queue,
    change: &Change<'_>,
    only: u64,
    this: Option<(u32, &[DmaBuf])>,
) -> Result<u64> {
    // A change that adds no OUTPUT buffer makes a job only if one is ready already.
    let src_ready = if change.src.is_empty() && !change.out_on {
        // SAFETY: `queue` is the CAPTURE queue of an m2m context (the callers check
        // `queue.m2m`), alive with its lock held.
        unsafe { ffi::vb2r_m2m_src_ready(queue.raw()) }
    } else {
        1
    };
    if src_ready == 0 {
        // No OUTPUT buffer is or enters the ready queue: no job (a CAPTURE QBUF ahead of its
        // bitstream, a stateless decoder's usual order), told without the snapshot.
        return Ok(0);
    }
    let mut guard = queue.scratch.lock();
    let slot: &mut Option<Scratch> = &mut guard;
    if slot.is_none() {
        *slot = Some(Scratch::new()?);
    }
    let Some(x) = slot.as_mut() else {
        return Err(ENOMEM);
    };
    // The lists of buffers vb2 holds are read by a STREAMON's commit only.
    // SAFETY: `queue` is the CAPTURE queue of an m2m context (the callers check `queue.m2m`),
    // alive with its lock held; the snapshot is ours (the scratch lock) and C writes only
    // within it.
    unsafe { ffi::vb2r_m2m_snapshot(queue.raw(), &mut *x.snap, change.out_on || change.cap_on) };
    jobs_after(x, change)?;
    let mut armed = 0u64;
    for &(src, dst) in x.jobs.iter() {
        if dst >= 64 || only & (1 << dst) == 0 {
            continue;
        }
        // A job of a buffer whose fence is pending joins that fence (one fence per run of
        // committed jobs on one CAPTURE buffer).
        if queue.add_job(dst, src) {
            continue;
        }
        let published = match this {
            Some((idx, imported)) if idx == dst => queue.arm(dst, imported, Some(src))?,
            _ => queue.arm(dst, &queue.imported(dst), Some(src))?,
        };
        if published {
            armed |= 1 << dst;
        }
    }
    Ok(armed)
}

/// Ends the fences of `mask` that a failed call armed (its job is not committed after all).
pub(crate) fn disarm_mask(queue: &Queue, mask: u64) {
    for i in 0..64u32 {
        if mask & (1 << i) != 0 {
            queue.finish(i, Outcome::Ecanceled);
        }
    }
}

/// The buf_done of OUTPUT buffer `vb` (index `index`) of the context of `queue` (any context,
/// in place): the end of a slice job that may hold its CAPTURE buffer. The job leaves the
/// fence that covers it; the fence ends when no committed job is left on it (a following slice
/// of the same picture, queued meanwhile, keeps it). A late event cannot end a newer fence: a
/// fence only ends for a job recorded on it.
pub(crate) fn output_done(queue: &Queue, vb: *mut Vb2Buffer, index: u32, state: u32) {
    let (mut hold, mut _ts) = (0u32, 0u64);
    // SAFETY: the probe runs synchronously with vb2_buffer_done() for `vb` (glue.h).
    unsafe { ffi::vb2r_vb_output_info(vb, &mut hold, &mut _ts) };
    let outcome = match policy::BufState::from_raw(state) {
        policy::BufState::Error => Outcome::Eio,
        _ => Outcome::Ok,
    };
    queue.job_done(index, hold != 0, outcome);
}
