//! What a consumer waits for before its GPU reads a client's dma-buf (`--consumer-wait`), as the
//! compositors do it (shared/research/consumers.md):
//! - `none`: nothing; the GPU driver's implicit sync is all there is (Weston, wlroots). On a
//!   GPU that waits for no fence (llvmpipe) nothing orders the read after the decoder;
//! - `poll`: poll(POLLIN) on the dma-buf without blocking; when it is busy,
//!   DMA_BUF_IOCTL_EXPORT_SYNC_FILE(DMA_BUF_SYNC_READ) and a wait on that sync_file (KWin's
//!   TransactionDmaBufLocker, Mutter's `meta_wayland_dma_buf_create_source()`);
//! - `sync-file`: always export the sync_file and wait on it (a consumer that does not poll first);
//! - `explicit`: the module's own sync_file for the buffer (VB2_RESV_IOC_SYNC_FILE on
//!   /dev/vb2_resv), the explicit-sync answer the RFC's review asked for.
//!
//! Every wait is bounded ([`WAIT_LIMIT`]): a fence that never ends is reported, not waited out.

use crate::sys;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// The longest a consumer waits for one buffer (the module's watchdog ends a fence after 3 s).
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumerWait {
    /// Nothing: rely on the GPU driver's implicit sync (Weston, wlroots).
    None,
    /// poll(POLLIN) on the dma-buf, then EXPORT_SYNC_FILE(READ) and wait if busy (KWin, Mutter).
    Poll,
    /// Always EXPORT_SYNC_FILE(READ) and wait on it.
    SyncFile,
    /// The module's sync_file of the buffer (VB2_RESV_IOC_SYNC_FILE) and wait on it.
    Explicit,
}

impl ConsumerWait {
    pub fn name(self) -> &'static str {
        match self {
            ConsumerWait::None => "none",
            ConsumerWait::Poll => "poll",
            ConsumerWait::SyncFile => "sync-file",
            ConsumerWait::Explicit => "explicit",
        }
    }

    /// Who waits this way.
    pub fn who(self) -> &'static str {
        match self {
            ConsumerWait::None => "Weston, wlroots: the GPU driver's implicit sync only",
            ConsumerWait::Poll => "KWin, Mutter: poll the dma-buf, sync_file if busy",
            ConsumerWait::SyncFile => "export the dma-buf's sync_file, always wait",
            ConsumerWait::Explicit => "the module's explicit sync_file (VB2_RESV_IOC_SYNC_FILE)",
        }
    }
}

/// What one wait did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WaitRecord {
    /// How long the consumer waited, in µs.
    pub waited_us: u64,
    /// The dma-buf was busy when the consumer looked (poll(POLLIN) not ready, or a pending fence
    /// in the exported or explicit sync_file).
    pub busy: bool,
    /// A sync_file was exported (or asked of the module) and waited on.
    pub sync_file: bool,
}

/// Waits on a sync_file until its fences have signaled.
fn wait_sync_file(sf: &OwnedFd, what: &str) -> Result<Duration> {
    let (waited, ready) = sys::poll_in(sf, WAIT_LIMIT)?;
    if !ready {
        bail!("{what} did not signal within {} s", WAIT_LIMIT.as_secs());
    }
    Ok(waited)
}

fn pending(sf: &OwnedFd) -> Result<bool> {
    Ok(sys::sync_file_info(sf)?.iter().any(|f| f.pending()))
}

/// Waits as `policy` says before a GPU read of `dmabuf`; `explicit` hands out the module's
/// sync_file of the buffer (only called for [`ConsumerWait::Explicit`]).
pub fn wait(
    policy: ConsumerWait,
    dmabuf: BorrowedFd<'_>,
    explicit: impl FnOnce() -> Result<OwnedFd>,
) -> Result<WaitRecord> {
    let t0 = Instant::now();
    let mut r = WaitRecord::default();
    match policy {
        ConsumerWait::None => return Ok(r),
        ConsumerWait::Poll => {
            let (_, ready) = sys::poll_in(&dmabuf.as_fd(), Duration::ZERO)?;
            if !ready {
                r.busy = true;
                r.sync_file = true;
                let sf = sys::export_write_fences(&dmabuf)?;
                wait_sync_file(&sf, "the dma-buf's exported sync_file")?;
            }
        }
        ConsumerWait::SyncFile => {
            let sf = sys::export_write_fences(&dmabuf)?;
            r.sync_file = true;
            r.busy = pending(&sf)?;
            wait_sync_file(&sf, "the dma-buf's exported sync_file")?;
        }
        ConsumerWait::Explicit => {
            let sf = explicit().context("the module's sync_file (VB2_RESV_IOC_SYNC_FILE)")?;
            r.sync_file = true;
            r.busy = pending(&sf)?;
            wait_sync_file(&sf, "the module's sync_file")?;
        }
    }
    r.waited_us = t0.elapsed().as_micros() as u64;
    Ok(r)
}
