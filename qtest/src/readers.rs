//! `waits-for-readers`: the reverse hazard. A fence another device left on a CAPTURE dma-buf
//! (a vgem fence, attached as panfrost attaches its job fence: WRITE; and as READ) must keep
//! the hardware off that buffer: QBUF waits until it is signaled (the buffer's bytes are still
//! the sentinel while it waits), fails with -ETIMEDOUT past wait_readers_timeout_ms and is
//! interrupted by a signal; an O_NONBLOCK client waits too and keeps decoding.

use crate::{setup, Cli, Dev};
use anyhow::{bail, ensure, Context, Result};
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use v4l2r::ioctl::Request;
use v4l2r::memory::MemoryType;
use vb2r::sys::{self, DmaBufMap, Vgem, VGEM_FENCE_WRITE};
use vb2r::v4l2::Queue;

const SENTINEL: u8 = 0x5a;
const HELD: Duration = Duration::from_millis(400);

fn set_param(name: &str, value: &str) -> Result<()> {
    let p = format!("/sys/module/vb2_resv/parameters/{name}");
    std::fs::write(&p, value).with_context(|| format!("write {value} to {p}"))
}

/// One CAPTURE buffer, dequeued, with a vgem fence (`flags`) on it, then queued again from a
/// second thread while this one checks that the QBUF waits. Returns how long it waited.
fn hold_off(
    cap: &Queue,
    vgem: &Vgem,
    handle: u32,
    map: &DmaBufMap,
    index: u32,
    flags: u32,
) -> Result<Duration> {
    map.access(sys::DMA_BUF_SYNC_WRITE, |b| b.fill(SENTINEL))?;
    let fence = vgem
        .fence_attach(handle, flags)
        .context("VGEM_FENCE_ATTACH")?;
    let t0 = Instant::now();
    std::thread::scope(|sc| -> Result<Duration> {
        let h = sc.spawn(|| {
            let r = cap.qbuf_mmap(index, 0);
            (r, t0.elapsed())
        });
        std::thread::sleep(HELD);
        let waiting = !h.is_finished();
        let untouched = map.peek(|b| b.iter().step_by(4096).all(|&x| x == SENTINEL));
        vgem.fence_signal(fence).context("VGEM_FENCE_SIGNAL")?;
        let (r, took) = h
            .join()
            .map_err(|_| anyhow::anyhow!("QBUF thread panicked"))?;
        r.context("QBUF")?;
        ensure!(
            waiting,
            "QBUF returned in {took:?} although another device's fence was on the buffer"
        );
        ensure!(
            untouched,
            "the buffer was written while the other device's fence was pending"
        );
        Ok(took)
    })
}

/// DQBUF until buffer `i` comes back, queueing the others again (vivid) and giving vim2m its
/// OUTPUT buffers back.
fn until_back(cap: &Queue, out: Option<&Queue>, dev: Dev, i: u32) -> Result<()> {
    let t0 = Instant::now();
    loop {
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "buffer {i} did not come back"
        );
        let j = match cap.dqbuf() {
            Ok((j, _)) => j,
            Err(Errno::EAGAIN) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(e) => bail!("DQBUF: {e}"),
        };
        if let (Dev::Vim2m, Some(o)) = (dev, out) {
            if let Ok((oi, _)) = o.dqbuf() {
                o.qbuf_mmap(oi, o.plane_sizes.first().copied().unwrap_or(0))?;
            }
        }
        if j == i {
            return Ok(());
        }
        cap.qbuf_mmap(j, 0).context("re-QBUF")?;
    }
}

/// Runs one job on `index` for drivers that need a request (visl); a no-op for the others.
fn kick(dev: Dev, media: Option<&File>, out: Option<&Queue>, k: u32) -> Result<()> {
    if let (Dev::Visl, Some(m), Some(o)) = (dev, media, out) {
        let req = Request::alloc(m).context("MEDIA_IOC_REQUEST_ALLOC")?;
        o.qbuf_mmap_request(k % 2, 64, req.as_raw_fd(), 1000 * u64::from(k + 1), false)?;
        req.queue()
            .map_err(|e| anyhow::anyhow!("MEDIA_REQUEST_IOC_QUEUE: {e}"))?;
        o.dqbuf().context("OUTPUT DQBUF")?;
    }
    Ok(())
}

pub(crate) fn waits_for_readers(cli: &Cli, dev: Dev) -> Result<()> {
    set_param("wait_readers_timeout_ms", "3000")?;
    let s = setup(dev, cli)?;
    let vgem = Vgem::open()?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let size = *cap.plane_sizes.first().context("no CAPTURE plane")? as usize;
    let ex: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let media = if dev == Dev::Visl {
        let p = vb2r::probe::media_for_video(std::path::Path::new(&s.path))
            .context("visl's media device")?;
        Some(vb2r::v4l2::open(p)?)
    } else {
        None
    };
    let mut out = None;
    if s.m2m {
        let mut o = Queue::new(&s.dev, true)?;
        o.reqbufs(MemoryType::Mmap, 2)?;
        out = Some(o);
    }
    // One buffer cycles through the checks; the others stay with the application.
    let i = 0u32;
    let map = DmaBufMap::new(cap.expbuf(i, 0)?, size, "CAPTURE 0")?;
    let handle = vgem.import(&ex[i as usize])?;
    if dev == Dev::Vivid {
        // vivid starts only with buffers queued; they keep it streaming around buffer 0.
        for k in 1..n {
            cap.qbuf_mmap(k, 0).context("QBUF")?;
        }
    }
    cap.streamon()?;
    if let Some(o) = &out {
        o.streamon()?;
        if dev == Dev::Vim2m {
            let osz = o.plane_sizes.first().copied().unwrap_or(0);
            for k in 0..2 {
                o.qbuf_mmap(k, osz).context("OUTPUT QBUF")?;
            }
        }
    }
    for (k, (flags, what)) in [(VGEM_FENCE_WRITE, "WRITE (as panfrost)"), (0, "READ")]
        .into_iter()
        .enumerate()
    {
        let took = hold_off(&cap, &vgem, handle, &map, i, flags)?;
        println!("{what} fence: QBUF waited {took:?}, the buffer untouched until it signaled");
        kick(dev, media.as_ref(), out.as_ref(), k as u32)?;
        until_back(&cap, out.as_ref(), dev, i)?;
        let written = map.access(sys::DMA_BUF_SYNC_READ, |b| {
            b.iter().step_by(4096).any(|&x| x != SENTINEL)
        })?;
        ensure!(
            written,
            "the job did not write the buffer after the fence signaled"
        );
    }
    // The bound: -ETIMEDOUT, and nothing queued.
    set_param("wait_readers_timeout_ms", "200")?;
    let fence = vgem.fence_attach(handle, VGEM_FENCE_WRITE)?;
    let t0 = Instant::now();
    let r = cap.qbuf_mmap(i, 0);
    println!("timeout path: QBUF -> {r:?} after {:?}", t0.elapsed());
    ensure!(
        r == Err(Errno::ETIMEDOUT),
        "QBUF past the bound: {r:?}, want ETIMEDOUT"
    );
    // A signal: -ERESTARTSYS, seen as EINTR by a handler without SA_RESTART.
    set_param("wait_readers_timeout_ms", "3000")?;
    extern "C" fn on_usr1(_: i32) {}
    let act = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_usr1),
        nix::sys::signal::SaFlags::empty(),
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler does nothing.
    unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGUSR1, &act) }?;
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let _ = tx.send(nix::sys::pthread::pthread_self());
            cap.qbuf_mmap(i, 0)
        });
        let tid = rx.recv().map_err(|_| anyhow::anyhow!("QBUF thread gone"))?;
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::pthread::pthread_kill(tid, nix::sys::signal::Signal::SIGUSR1)?;
        h.join()
            .map_err(|_| anyhow::anyhow!("QBUF thread panicked"))
    })?;
    println!("signal path: QBUF -> {r:?}");
    ensure!(
        r == Err(Errno::EINTR),
        "QBUF interrupted by a signal: {r:?}, want EINTR"
    );
    vgem.fence_signal(fence)?;
    // An O_NONBLOCK client (as ffmpeg opens the decoder) waits as well and goes on decoding.
    let fl = nix::fcntl::fcntl(&s.dev, nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        &s.dev,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(fl) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    let took = hold_off(&cap, &vgem, handle, &map, i, VGEM_FENCE_WRITE)?;
    kick(dev, media.as_ref(), out.as_ref(), 2)?;
    until_back(&cap, out.as_ref(), dev, i)?;
    println!("O_NONBLOCK client: QBUF waited {took:?}, then the buffer was decoded and dequeued");
    Ok(())
}
