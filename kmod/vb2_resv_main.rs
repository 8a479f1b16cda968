// SPDX-License-Identifier: GPL-2.0

//! vb2_resv: implicit-sync WRITE fences on the dma-bufs of V4L2 CAPTURE buffers.
//!
//! While the hardware owns a CAPTURE buffer of an attached node, every dma-buf that backs it
//! (each VIDIOC_EXPBUF export, or the imported dma-buf of a DMABUF queue) carries a
//! `DMA_RESV_USAGE_WRITE` fence, armed in QBUF before the driver can see the buffer and signaled
//! when the driver returns it (`-EIO` for an ERROR buffer, `-ECANCELED` for cancelled ones).
//! See `docs/design.md` for the hook design, the contexts each part runs in and the lock order.

use core::sync::atomic::{AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::sync::new_mutex;

// The Rust-for-Linux API this is built against is chosen at compile time (Kbuild): 7.x's own
// abstractions, or on 6.12 LTS the same shapes from k612.rs (see there and docs/design.md).
// Before 7.3, SpinLockIrq is k612.rs's too (`vb2r_no_spinlock_irq`).
#[cfg(vb2r_no_spinlock_irq)]
use k612::new_spinlock_irq;
#[cfg(vb2r_k612)]
use k612::{debugfs, KVecExt};
#[cfg(not(vb2r_k612))]
use kernel::debugfs;
#[cfg(vb2r_k612)]
use kernel::fmt;
#[cfg(not(vb2r_no_spinlock_irq))]
use kernel::sync::new_spinlock_irq;

mod control;
mod ffi;
mod hooks;
#[cfg(vb2r_no_spinlock_irq)]
mod k612;
mod node;
mod params;
mod policy;
mod queue;
mod state;
mod strict;

use ffi::Vdev;
use params::{AttachError, Mode, Target};
use state::{State, STATE};

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
            "invalid value '{:?}' for parameter 'mode': expected strict, queue, dqbuf or off\n",
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
                    writeln!(f, "{}", state::state().mode().name())
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
        // 1. No new attach or mode change, no watchdog pass.
        self.control = None;
        // SAFETY: process context, not the watchdog itself.
        unsafe { ffi::vb2r_watchdog_stop() };
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
            if !x.output {
                leftovers += x.queue.kill();
            }
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
