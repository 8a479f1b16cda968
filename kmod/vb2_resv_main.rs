// SPDX-License-Identifier: GPL-2.0

//! vb2_resv: implicit-sync WRITE fences on the dma-bufs of V4L2 CAPTURE buffers.
//!
//! While the hardware owns a CAPTURE buffer of an attached node, every dma-buf that backs it
//! (each VIDIOC_EXPBUF export, or the imported dma-buf of a DMABUF queue) carries a
//! `DMA_RESV_USAGE_WRITE` fence, armed in QBUF before the driver can see the buffer and signaled
//! when the driver returns it (`-EIO` for an ERROR buffer, `-ECANCELED` for cancelled ones).
//! See `docs/design.md` for the hook design, the contexts each part runs in and the lock order.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use kernel::prelude::*;
use kernel::sync::{new_mutex, Arc, Mutex};

// The Rust-for-Linux API this is built against is chosen at compile time (Kbuild): 7.x's own
// abstractions, or on 6.12 LTS the same shapes from k612.rs (see there and docs/design.md).
#[cfg(vb2r_k612)]
use k612::{debugfs, new_spinlock_irq, KVecExt, SpinLockIrq};
#[cfg(not(vb2r_k612))]
use kernel::debugfs;
#[cfg(vb2r_k612)]
use kernel::fmt;
#[cfg(not(vb2r_k612))]
use kernel::sync::{new_spinlock_irq, SpinLockIrq};

mod control;
mod ffi;
#[cfg(vb2r_k612)]
mod k612;
mod node;
mod params;
mod queue;

use ffi::{op, Call, DmaBuf, Vb2Queue, Vdev};
use node::Node;
use params::{AttachError, Mode, Target};
use queue::{Outcome, Queue};

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

/// A known node: the Rust state, the C hook tables made for it, and its pin while attached.
struct NodeEntry {
    node: Arc<Node>,
    hooks: *mut ffi::Hooks,
    pin: Option<Vdev>,
    debugfs: Option<Pin<KBox<debugfs::File<Arc<Node>>>>>,
}

// SAFETY: `hooks` is only handed back to the C glue under `State::nodes`; the tables it points
// at live until vb2r_glue_exit().
unsafe impl Send for NodeEntry {}

/// Everything the module knows. Lives from init to exit, pinned; the C glue, the probe and the
/// misc device reach it through [`STATE`].
#[pin_data]
pub(crate) struct State {
    mode: AtomicU32,
    next_queue_id: AtomicU32,
    /// Every node ever attached (until unload); attach/detach and debugfs take it.
    #[pin]
    nodes: Mutex<KVec<NodeEntry>>,
    /// Every live CAPTURE queue of an attached node, looked up by `vb2_queue` address from any
    /// context (the vb2_buf_done probe may run in hard IRQ).
    #[pin]
    queues: SpinLockIrq<KVec<Arc<Queue>>>,
    debugfs: debugfs::Dir,
}

/// The module's state, set at init before anything can call in and cleared at exit after the
/// last caller is gone (glue.c's vb2r_glue_exit() waits for them).
static STATE: AtomicPtr<State> = AtomicPtr::new(core::ptr::null_mut());

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

    fn find_queue(&self, q: *mut Vb2Queue) -> Option<Arc<Queue>> {
        let key = q as usize;
        self.queues.lock().iter().find(|x| x.q == key).cloned()
    }

    /// The state of `q`, made if the node is attached and there is none yet (process context).
    fn queue_for(&self, node: &Node, q: *mut Vb2Queue, type_: u32) -> Result<Option<Arc<Queue>>> {
        if let Some(x) = self.find_queue(q) {
            return Ok(Some(x));
        }
        let Some(node) = node_arc(node) else {
            return Ok(None);
        };
        let id = self.next_queue_id.fetch_add(1, Ordering::Relaxed);
        let new = Queue::new(q, node.clone(), id, type_)?;
        // Room for one more, allocated outside the spinlock and swapped in under it.
        loop {
            let (len, cap) = {
                let g = self.queues.lock();
                (g.len(), g.capacity())
            };
            if len < cap {
                let mut g = self.queues.lock();
                // Checked again under the lock: a detach may have run, or another task raced us.
                if !node.is_attached() {
                    return Ok(None);
                }
                if let Some(x) = g.iter().find(|x| x.q == q as usize) {
                    return Ok(Some(x.clone()));
                }
                if g.len() < g.capacity() {
                    let _ = g.push_within_capacity(new.clone());
                    return Ok(Some(new));
                }
                continue;
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

    /// Removes `q`'s state from the registry (it is killed by the caller).
    fn remove_queue(&self, key: usize) -> Option<Arc<Queue>> {
        let mut g = self.queues.lock();
        let i = g.iter().position(|x| x.q == key)?;
        let x = g.remove(i).ok();
        drop(g);
        x
    }

    /// Removes and kills every queue of `node` (process context). Returns the fences cancelled.
    fn kill_queues_of(&self, node: &Node) -> u32 {
        let mut n = 0;
        loop {
            let victim = {
                let g = self.queues.lock();
                g.iter().find(|x| x.node.vdev == node.vdev).map(|x| x.q)
            };
            let Some(key) = victim else { break };
            if let Some(x) = self.remove_queue(key) {
                n += x.kill();
            }
        }
        n
    }

    /// Attaches to the node `vdev` (process context).
    pub(crate) fn attach(&self, vdev: Vdev) -> Result {
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
        let e = &mut nodes[idx];
        let rs_node = core::ptr::from_ref::<Node>(&e.node)
            .cast_mut()
            .cast::<c_void>();
        // SAFETY: `vdev` is pinned; `rs_node` points into an Arc kept in `nodes` until unload,
        // which outlives the tables (glue.h: tables live until vb2r_glue_exit()).
        let hooks = unsafe { ffi::vb2r_hooks_get(vdev.as_ptr(), rs_node) };
        if hooks.is_null() {
            return Err(ENOMEM);
        }
        e.hooks = hooks;
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

    /// Detaches from the node `vdev` identifies (process context).
    pub(crate) fn detach(&self, vdev: &Vdev) -> Result {
        let mut nodes = self.nodes.lock();
        let key = vdev.as_ptr() as usize;
        let e = nodes
            .iter_mut()
            .find(|e| e.node.vdev == key && e.node.is_attached())
            .ok_or(ENOENT)?;
        self.detach_entry(e);
        Ok(())
    }

    fn detach_entry(&self, e: &mut NodeEntry) {
        // SAFETY: installed by attach() for this pinned vdev; `nodes` serializes us.
        unsafe { ffi::vb2r_hooks_remove(e.hooks) };
        e.node.attached.store(false, Ordering::Release);
        let n = self.kill_queues_of(&e.node);
        pr_info!(
            "detached from {:?} ({} pending fence(s) cancelled)\n",
            Bytes(e.node.name.bytes()),
            n
        );
        e.pin = None;
    }
}

fn show_node(n: &Arc<Node>, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    n.show_counters(f)?;
    let st = state();
    let mut i = 0;
    loop {
        // Walk the registry one entry at a time: `show` takes a mutex, which must not nest in
        // the registry's spinlock.
        let q = {
            let g = st.queues.lock();
            g.iter().filter(|x| x.node.vdev == n.vdev).nth(i).cloned()
        };
        let Some(q) = q else { break };
        q.show(f)?;
        i += 1;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Calls from the C glue.

/// # Safety
///
/// Called by glue.c's wrappers only: `rs_node` is the pointer given to vb2r_hooks_get() (an
/// `Arc<Node>` kept until unload), `call` is valid, and the glue.h context rules hold.
#[no_mangle]
unsafe extern "C" fn vb2r_rs_pre(rs_node: *mut c_void, call: *mut Call) -> c_int {
    // SAFETY: see the function's safety section.
    let (node, call) = unsafe { (&*(rs_node as *const Node), &mut *call) };
    match pre(node, call) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// As for [`vb2r_rs_pre`].
#[no_mangle]
unsafe extern "C" fn vb2r_rs_post(rs_node: *mut c_void, call: *mut Call, ret: c_int) {
    // SAFETY: see the function's safety section.
    let (node, call) = unsafe { (&*(rs_node as *const Node), &mut *call) };
    post(node, call, ret);
}

/// The vb2_buf_done event of buffer `index` of `q` (glue.h: `q` is a key only, never
/// dereferenced; `state` an `enum vb2r_buf_state`; `event_ns` when it happened). Any context.
#[no_mangle]
extern "C" fn vb2r_rs_buf_done(
    _ctx: *mut c_void,
    q: *mut Vb2Queue,
    index: u32,
    state_: u32,
    event_ns: u64,
) {
    if let Some(queue) = state().find_queue(q) {
        queue.buf_done(index, state_, event_ns);
    }
}

/// An `Arc<Node>` for a `&Node` that lives in the registry.
fn node_arc(node: &Node) -> Option<Arc<Node>> {
    let nodes = state().nodes.lock();
    nodes
        .iter()
        .find(|e| e.node.vdev == node.vdev)
        .map(|e| e.node.clone())
}

fn pre(node: &Node, c: &mut Call) -> Result {
    if !node.is_attached() || c.q.is_null() || !is_video_capture(c.type_) {
        return Ok(());
    }
    let st = state();
    match c.op {
        op::QBUF => {
            if st.mode() != Mode::Queue {
                return Ok(());
            }
            let Some(queue) = st.queue_for(node, c.q, c.type_)? else {
                return Ok(());
            };
            let mut imported = KVec::new();
            if c.memory == V4L2_MEMORY_DMABUF {
                for &fd in c.fds.iter().take(c.nplanes as usize) {
                    // An fd that is not a dma-buf makes vb2 fail this QBUF; nothing to fence.
                    if let Some(d) = DmaBuf::from_fd(fd) {
                        imported.push(d, GFP_KERNEL)?;
                    }
                }
            } else if c.memory != V4L2_MEMORY_MMAP {
                return Ok(());
            }
            if queue.arm(c.index, &imported)? {
                c.rs_armed = 1;
            }
        }
        op::STREAMOFF | op::REQBUFS | op::REMOVE_BUFS => {
            if let Some(q) = st.find_queue(c.q) {
                q.set_cancelling(true);
            }
        }
        op::RELEASE => {
            if c.owner != 0 {
                if let Some(q) = st.find_queue(c.q) {
                    q.set_cancelling(true);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn post(node: &Node, c: &mut Call, ret: c_int) {
    if c.q.is_null() || !is_video_capture(c.type_) {
        return;
    }
    let st = state();
    let queue = st.find_queue(c.q);
    match c.op {
        op::QBUF => {
            if ret != 0 && c.rs_armed != 0 {
                // The buffer never reached the driver.
                if let Some(q) = &queue {
                    q.finish(c.index, Outcome::Ecanceled);
                }
            }
        }
        op::DQBUF => {
            let Some(q) = queue else { return };
            if ret != 0 {
                return;
            }
            let outcome = if c.flags & V4L2_BUF_FLAG_ERROR != 0 {
                Outcome::Eio
            } else {
                Outcome::Ok
            };
            match st.mode() {
                Mode::Dqbuf if node.is_attached() => {
                    let imported = if c.memory == V4L2_MEMORY_DMABUF {
                        q.imported(c.index)
                    } else {
                        KVec::new()
                    };
                    if let Err(e) = q.dqbuf_fence(c.index, outcome, &imported) {
                        pr_warn!("dqbuf fence for buffer {}: error {:?}\n", c.index, e);
                    }
                }
                // The driver returned it, so buf_done signaled it; should a fence still be
                // pending, nothing may race after DQBUF: end it now.
                _ => {
                    q.finish(c.index, outcome);
                }
            }
        }
        op::EXPBUF => {
            if ret != 0 || c.fd < 0 || !node.is_attached() {
                return;
            }
            let Ok(Some(q)) = st.queue_for(node, c.q, c.type_) else {
                return;
            };
            // SAFETY: in the EXPBUF ioctl of this queue, with its lock held (glue.h).
            if let Some(d) = unsafe { DmaBuf::export_of(c.fd, c.q, c.index, c.plane) } {
                if let Err(e) = q.add_export(c.index, d) {
                    pr_warn!("export of buffer {}: error {:?}\n", c.index, e);
                }
            }
        }
        op::CREATE_BUFS => {}
        op::STREAMOFF => {
            if let Some(q) = queue {
                q.cancel_all();
                q.set_cancelling(false);
            }
        }
        op::REQBUFS => {
            if let Some(q) = queue {
                if ret == 0 {
                    // vb2 freed every buffer (and made `count` new ones): their exports and
                    // fences belong to buffers that are gone.
                    q.cancel_all();
                    q.forget(0, u32::MAX);
                    if c.count == 0 {
                        if let Some(x) = st.remove_queue(c.q as usize) {
                            x.kill();
                        }
                    }
                } else {
                    // vb2 may have freed the buffers before the allocation failed: their
                    // fences would never be signaled otherwise.
                    q.cancel_gone();
                }
                q.set_cancelling(false);
            }
        }
        op::REMOVE_BUFS => {
            if let Some(q) = queue {
                if ret == 0 {
                    q.forget(c.index, c.count);
                }
                q.set_cancelling(false);
            }
        }
        op::RELEASE => {
            if c.owner != 0 {
                if let Some(x) = st.remove_queue(c.q as usize) {
                    x.kill();
                }
            }
        }
        _ => {}
    }
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
            "invalid value '{:?}' for parameter 'mode': expected off, dqbuf or queue\n",
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
                    if vdev.driver().bytes() != d {
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
        // SAFETY: the probe's data is unused by C beyond passing it back; STATE is set.
        let r = unsafe { ffi::vb2r_glue_init(core::ptr::null_mut()) };
        if r != 0 {
            STATE.store(core::ptr::null_mut(), Ordering::Release);
            pr_err!("cannot register the vb2_buf_done probe: error {}\n", r);
            return Err(Error::from_errno(r));
        }
        let mode_file = KBox::pin_init(
            state
                .debugfs
                .read_callback_file(c"mode", (), &|(): &(), f| {
                    writeln!(f, "{}", crate::state().mode().name())
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
            // Drop detaches what was attached and unregisters the probe.
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
        // 1. No new attach or mode change.
        self.control = None;
        // 2. Every node back to the driver's own tables; pending fences cancelled.
        {
            let mut nodes = self.state.nodes.lock();
            for e in nodes.iter_mut().filter(|e| e.node.is_attached()) {
                self.state.detach_entry(e);
            }
        }
        // 3. No probe call and no hooked ioctl left running (glue.h: vb2r_glue_exit()).
        // SAFETY: all hooks were removed above; called once.
        unsafe { ffi::vb2r_glue_exit() };
        // 4. A wrapper that was running during step 2 may have made a queue: end those too.
        let mut leftovers = 0;
        loop {
            let x = self.state.queues.lock().pop();
            let Some(x) = x else { break };
            leftovers += x.kill();
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
