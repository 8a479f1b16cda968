//! `random-ops`: a seeded random walk over what clients and the administrator can do to an
//! attached node (two clients per node), with the module's invariants checked after every step:
//!
//! - a buffer QUERYBUF reports as queued (vb2 or the driver owns it) whose QBUF was fenced, and
//!   whose node was not detached since, carries a pending fence;
//! - a buffer that is dequeued (neither queued nor done) carries no pending fence of ours;
//! - once every client is closed, the node's counters add up and nothing is pending.
//!
//! The seed is printed; `VB2R_SEED` replays a run.

use crate::{fences, ours, status_of, Dev};
use anyhow::{bail, ensure, Context, Result};
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;
use v4l2r::ioctl::BufferFlags;
use v4l2r::memory::MemoryType;
use vb2r::kmod::{Control, Mode};
use vb2r::sys;
use vb2r::v4l2::{self, Queue};

/// xorshift64*: small, seedable, and good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n.max(1))) as u32
    }
}

/// A fence taken right after a QBUF that carried one, and the node's attach epoch then.
struct Fenced {
    sync_file: OwnedFd,
    epoch: u32,
}

#[derive(Default)]
struct Client {
    file: Option<File>,
    nbufs: u32,
    exports: Vec<Vec<File>>,
    queued: Vec<bool>,
    fenced: Vec<Option<Fenced>>,
    streaming: bool,
    /// m2m: the OUTPUT queue's buffers (allocated at the first STREAMON) and which are queued.
    out_bufs: u32,
    out_queued: Vec<bool>,
}

struct Node {
    path: String,
    /// Whether OUTPUT buffers can be fed without requests (vim2m yes, visl no).
    feed: bool,
    attached: bool,
    epoch: u32,
}

fn open_nonblock(path: &str) -> Result<File> {
    let f = v4l2::open(path)?;
    let fl = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        &f,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(fl) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    Ok(f)
}

fn cap_queue(f: &File, n: u32) -> Result<Queue<'_>> {
    let mut q = Queue::new(f, false)?;
    q.memory = MemoryType::Mmap;
    q.count = n;
    Ok(q)
}

impl Client {
    fn reset_buffers(&mut self, n: u32) {
        self.nbufs = n;
        self.exports = (0..n).map(|_| Vec::new()).collect();
        self.queued = vec![false; n as usize];
        self.fenced = (0..n).map(|_| None).collect();
    }

    /// m2m: give back every OUTPUT buffer whose job is done.
    fn feed(&mut self, node: &Node) -> Result<()> {
        let (Some(f), true, true) = (&self.file, node.feed, self.streaming) else {
            return Ok(());
        };
        let out = Queue::new(f, true)?;
        let size = out.plane_sizes.first().copied().unwrap_or(0);
        loop {
            match out.dqbuf() {
                Ok((i, _)) => self.out_queued[i as usize] = false,
                Err(Errno::EAGAIN) | Err(Errno::EINVAL) | Err(Errno::EPIPE) => break,
                Err(e) => bail!("OUTPUT DQBUF: {e}"),
            }
        }
        for i in 0..self.out_bufs {
            if !self.out_queued[i as usize] && out.qbuf_mmap(i, size).is_ok() {
                self.out_queued[i as usize] = true;
            }
        }
        Ok(())
    }
}

/// Checks the per-buffer invariants of `c`; `what` names the step for the message.
fn check(c: &Client, node: &Node, what: &str) -> Result<()> {
    let Some(f) = &c.file else { return Ok(()) };
    let q = cap_queue(f, c.nbufs)?;
    for i in 0..c.nbufs {
        let Some(fz) = &c.fenced[i as usize] else {
            continue;
        };
        // The fence first, then QUERYBUF: nothing but this (single-threaded) client dequeues
        // or queues its buffers, so the buffer was in the state QUERYBUF reports when the
        // fence was read.
        let st = status_of(&fz.sync_file)?;
        let flags = match q.querybuf(i) {
            Ok(fl) => fl,
            Err(Errno::EINVAL) => continue, // freed (a REQBUFS by this client failed midway)
            Err(e) => bail!("QUERYBUF {i}: {e}"),
        };
        let queued = flags.contains(BufferFlags::QUEUED) && !flags.contains(BufferFlags::DONE);
        let dequeued = !flags.contains(BufferFlags::QUEUED) && !flags.contains(BufferFlags::DONE);
        if queued && st != 0 && fz.epoch == node.epoch {
            bail!("after {what}: buffer {i} of {} is queued ({flags:?}) but its fence ended (status {st})", node.path);
        }
        if dequeued && st == 0 {
            bail!(
                "after {what}: buffer {i} of {} is dequeued ({flags:?}) but its fence is pending",
                node.path
            );
        }
    }
    Ok(())
}

/// One random operation on client `ci` of `node`. Returns its name.
fn step(
    rng: &mut Rng,
    node: &mut Node,
    clients: &mut [Client],
    ci: usize,
    ctl: &Control,
) -> Result<String> {
    // Weighted: mostly QBUF/DQBUF/EXPBUF/STREAMON, now and then a REQBUFS, STREAMOFF, close,
    // detach/attach or mode switch, and some idle time for the hardware to finish jobs.
    let mut op = match rng.below(100) {
        0..=1 => 0,    // close
        2..=9 => 1,    // REQBUFS
        10..=19 => 2,  // EXPBUF
        20..=21 => 3,  // close an export
        22..=49 => 4,  // QBUF
        50..=60 => 7,  // DQBUF
        61..=71 => 8,  // DQBUF after poll
        72..=79 => 9,  // STREAMON
        80..=84 => 10, // STREAMOFF
        85..=87 => 11, // detach / attach
        88..=91 => 12, // mode
        _ => 13,       // idle
    };
    let c = &mut clients[ci];
    if c.nbufs == 0 && (2..=4).contains(&op) {
        op = if rng.below(3) == 0 { 1 } else { 13 };
    }
    let Some(f) = &c.file else {
        c.file = Some(open_nonblock(&node.path)?);
        *c = Client {
            file: c.file.take(),
            ..Default::default()
        };
        return Ok(format!("c{ci} open"));
    };
    let name = match op {
        0 => {
            let fenced: Vec<Fenced> = c.fenced.drain(..).flatten().collect();
            *c = Client::default();
            // An m2m context dies with its file; a node's own queue with its owner's file (a
            // non-owner never had a fenced QBUF). Either way nothing of this file is pending.
            for (k, fz) in fenced.iter().enumerate() {
                let st = status_of(&fz.sync_file)?;
                ensure!(
                    st != 0,
                    "c{ci} closed, but fence {k} it took at QBUF is still pending"
                );
            }
            format!("c{ci} close ({} fenced buffer(s) ended)", fenced.len())
        }
        1 => {
            let n = [0u32, 3, 4, 4, 4][rng.below(5) as usize];
            let q = cap_queue(f, c.nbufs)?;
            let r = q.reqbufs_errno(n);
            if let Ok(got) = r {
                // Most clients export every buffer once, right away (ffmpeg does).
                let mut all = Vec::new();
                if rng.below(2) == 0 {
                    let q = cap_queue(f, got)?;
                    for i in 0..got {
                        all.push(vec![q.expbuf(i, 0)?]);
                    }
                }
                c.reset_buffers(got);
                c.streaming = c.streaming && got > 0;
                if !all.is_empty() {
                    c.exports = all;
                }
            } else if r == Err(Errno::EBUSY) {
                // What an application does when vb2 says the buffers are busy: let go of its
                // exports (vb2 frees no buffer that is still exported), or, without buffers of
                // its own (another client owns the queue), give up the node now and then.
                if c.exports.iter().any(|e| !e.is_empty()) {
                    c.exports.iter_mut().for_each(Vec::clear);
                } else if c.nbufs == 0 && rng.below(2) == 0 {
                    let fenced: Vec<Fenced> = c.fenced.drain(..).flatten().collect();
                    *c = Client::default();
                    drop(fenced);
                    return Ok(format!("c{ci} REQBUFS({n}) {r:?}, closed"));
                }
            }
            format!("c{ci} REQBUFS({n}) {r:?}")
        }
        2 => {
            // Mostly a buffer without an export yet, as a client exports each buffer once.
            let i = (0..c.nbufs)
                .find(|&i| c.exports[i as usize].is_empty() && rng.below(4) != 0)
                .unwrap_or_else(|| rng.below(c.nbufs));
            let r = cap_queue(f, c.nbufs)?.expbuf(i, 0);
            let ok = r.is_ok();
            if let Ok(e) = r {
                c.exports[i as usize].push(e);
            }
            format!("c{ci} EXPBUF({i}) ok={ok}")
        }
        3 => {
            let i = rng.below(c.nbufs) as usize;
            let n = c.exports[i].len();
            if n > 0 {
                c.exports[i].remove(rng.below(n as u32) as usize);
            }
            format!("c{ci} close an export of {i} (had {n})")
        }
        4 => {
            // Mostly a buffer that is not queued (vb2 refuses the others).
            let i = (0..c.nbufs)
                .find(|&i| !c.queued[i as usize] && rng.below(3) != 0)
                .unwrap_or_else(|| rng.below(c.nbufs));
            let r = cap_queue(f, c.nbufs)?.qbuf_mmap(i, 0);
            if r.is_ok() {
                c.queued[i as usize] = true;
                c.fenced[i as usize] = None;
                if let Some(e) = c.exports[i as usize].first() {
                    let (fs, sf) = fences(e)?;
                    if ours(&fs).iter().any(|x| x.pending()) {
                        c.fenced[i as usize] = Some(Fenced {
                            sync_file: sf,
                            epoch: node.epoch,
                        });
                    }
                }
            }
            let fenced = if r.is_ok() && c.fenced[i as usize].is_some() {
                " fenced"
            } else {
                ""
            };
            format!("c{ci} QBUF({i}) {r:?}{fenced}")
        }
        7 | 8 => {
            // Non-blocking, or "blocking" (poll up to 100 ms first).
            if op == 8 {
                let _ = sys::poll_in(f, Duration::from_millis(100));
            }
            let r = cap_queue(f, c.nbufs)?.dqbuf();
            if let Ok((i, _)) = r {
                if let Some(q) = c.queued.get_mut(i as usize) {
                    *q = false;
                }
            }
            format!("c{ci} DQBUF{} {r:?}", if op == 8 { " (poll)" } else { "" })
        }
        9 => {
            if node.feed && c.out_bufs == 0 {
                let mut out = Queue::new(f, true)?;
                if let Ok(n) = out.reqbufs(MemoryType::Mmap, 2) {
                    c.out_bufs = n;
                    c.out_queued = vec![false; n as usize];
                }
            }
            let r = cap_queue(f, c.nbufs)?
                .streamon()
                .map_err(|e| format!("{e:#}"));
            if r.is_ok() {
                c.streaming = true;
                if node.feed && c.out_bufs > 0 {
                    let _ = Queue::new(f, true)?.streamon();
                }
            }
            format!(
                "c{ci} STREAMON {}",
                r.map(|_| "ok".to_string()).unwrap_or_else(|e| e)
            )
        }
        10 => {
            let r = cap_queue(f, c.nbufs)?.streamoff_errno();
            if r.is_ok() {
                c.streaming = false;
                c.queued.iter_mut().for_each(|q| *q = false);
                if node.feed && c.out_bufs > 0 {
                    let _ = Queue::new(f, true)?.streamoff_errno();
                    c.out_queued.iter_mut().for_each(|q| *q = false);
                }
            }
            format!("c{ci} STREAMOFF {r:?}")
        }
        11 => {
            // Attached most of the time: a detach now and then, re-attached at the next turn.
            if node.attached && rng.below(3) != 0 {
                return Ok(format!("c{ci} idle"));
            }
            let r = if node.attached {
                ctl.detach(f.as_raw_fd())
            } else {
                ctl.attach(f.as_raw_fd())
            };
            if r.is_ok() {
                node.attached = !node.attached;
                if !node.attached {
                    // Detaching ends every fence of the node, the hardware's buffers included.
                    node.epoch += 1;
                }
            }
            format!("{} {r:?}", if node.attached { "attach" } else { "detach" })
        }
        12 => {
            let m = [
                Mode::Off,
                Mode::Dqbuf,
                Mode::Queue,
                Mode::Queue,
                Mode::Queue,
            ][rng.below(5) as usize];
            ctl.set_mode(m).context("VB2_RESV_IOC_SET_MODE")?;
            format!("mode {}", m.name())
        }
        _ => {
            std::thread::sleep(Duration::from_millis(5));
            format!("c{ci} idle")
        }
    };
    Ok(name)
}

/// `ops` random operations on `dev` with two clients; returns how many ran.
pub(crate) fn random_ops(dev: Dev, ops: u32, seed: u64) -> Result<u32> {
    let (driver, name, m2m, feed) = match dev {
        Dev::Vivid => ("vivid", "vid-cap", false, false),
        Dev::Vim2m => ("vim2m", "vim2m", true, true),
        Dev::Visl => ("visl", "visl", true, false),
    };
    let path = v4l2::find_node(driver, name)?;
    let ctl = Control::open()?;
    ctl.set_mode(Mode::Queue).context("VB2_RESV_IOC_SET_MODE")?;
    let mut node = Node {
        path: path.clone(),
        feed,
        attached: false,
        epoch: 0,
    };
    {
        let f = v4l2::open(&path)?;
        match ctl.attach(f.as_raw_fd()) {
            Ok(()) | Err(Errno::EBUSY) => node.attached = true,
            Err(e) => bail!("attach {path}: {e}"),
        }
    }
    println!(
        "random-ops on {path} ({driver}{}), seed {seed:#x}, {ops} operations",
        if m2m { ", m2m" } else { "" }
    );
    let mut rng = Rng(seed | 1);
    let mut clients = [Client::default(), Client::default()];
    let mut last = Vec::new();
    let mut tally: std::collections::BTreeMap<String, u32> = Default::default();
    for n in 0..ops {
        let ci = rng.below(2) as usize;
        let what = step(&mut rng, &mut node, &mut clients, ci, &ctl)
            .with_context(|| format!("operation {n} (seed {seed:#x})"))?;
        for c in clients.iter_mut() {
            c.feed(&node)?;
        }
        // "c1 QBUF(2) Ok(()) fenced" -> "QBUF ok fenced": what ran and how it ended.
        let verb = what
            .split_whitespace()
            .find(|w| !(w.starts_with('c') && w.len() <= 2))
            .map(|w| w.split('(').next().unwrap_or(w))
            .unwrap_or("?");
        let failed = ["Err(", "error", "not supported"]
            .iter()
            .any(|e| what.contains(e));
        let key = format!(
            "{verb} {}{}",
            if failed { "failed" } else { "ok" },
            if what.ends_with(" fenced") {
                " fenced"
            } else {
                ""
            }
        );
        *tally.entry(key).or_default() += 1;
        last.push(what.clone());
        if last.len() > 12 {
            last.remove(0);
        }
        for c in &clients {
            if let Err(e) = check(c, &node, &what) {
                bail!(
                    "{e:#}\nseed {seed:#x}, operation {n}; the last operations:\n  {}",
                    last.join("\n  ")
                );
            }
        }
    }
    println!(
        "operations: {}",
        tally
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let fenced_qbufs = tally.get("QBUF ok fenced").copied().unwrap_or(0);
    // Quiescent: every client closed. Nothing of ours may be pending, and the counters add up.
    let all_fenced: Vec<OwnedFd> = clients
        .iter_mut()
        .flat_map(|c| {
            c.fenced
                .drain(..)
                .flatten()
                .map(|f| f.sync_file)
                .collect::<Vec<_>>()
        })
        .collect();
    drop(clients);
    for sf in &all_fenced {
        let st = status_of(sf)?;
        ensure!(
            st != 0,
            "a fence is pending after every client closed (seed {seed:#x})"
        );
    }
    if !node.attached {
        let f = v4l2::open(&path)?;
        ctl.attach(f.as_raw_fd())?;
    }
    let short = path.trim_start_matches("/dev/");
    let text = std::fs::read_to_string(format!("/sys/kernel/debug/vb2_resv/{short}"))
        .with_context(|| format!("debugfs file of {short}"))?;
    let counter = |k: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no '{k}' in debugfs"))
    };
    let (att, ok, eio, ecan, pend) = (
        counter("fences attached")?,
        counter("signaled ok")?,
        counter("signaled -EIO")?,
        counter("signaled -ECANCELED")?,
        counter("pending now")?,
    );
    println!(
        "counters: attached {att} = ok {ok} + -EIO {eio} + -ECANCELED {ecan} + pending {pend}"
    );
    ensure!(
        pend == 0,
        "{pend} fence(s) pending with every client closed"
    );
    ensure!(att == ok + eio + ecan + pend, "the counters do not add up");
    ensure!(
        fenced_qbufs > 0,
        "no QBUF was fenced: the walk checked nothing"
    );
    Ok(ops)
}
