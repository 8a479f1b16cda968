//! Mode `strict`: a fence only while a committed job writes the buffer, ended at job end.
//!
//! - `strict-capture` (vivid): queued before STREAMON, no fence; STREAMON arms them; QBUF
//!   while streaming arms at once.
//! - `strict-m2m` (vim2m): CAPTURE buffers without OUTPUT buffers carry no fence; each OUTPUT
//!   buffer commits one job and fences exactly one CAPTURE buffer; OUTPUT STREAMOFF ends them.
//! - `strict-visl` (visl, the request API, frame- or slice-based): no fence before the request;
//!   pending from the request's queueing through the job (checked against the buffer's bytes,
//!   which the job writes: the fence covers every write); ended at the job's end, also for a
//!   slice that holds the CAPTURE buffer for the next one, so no fence is ever pending while
//!   only userspace can make progress; the control device's sync_file is the same fence.
//! - `watchdog` (visl with a job longer than fence_timeout_ms): -ETIMEDOUT, and the stream
//!   goes on.

use crate::{describe, fences, ours, setup, status_of, Cli, Dev};
use anyhow::{bail, ensure, Context, Result};
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use v4l2r::ioctl::{BufferFlags, Request};
use v4l2r::memory::MemoryType;
use vb2r::kmod::Control;
use vb2r::sys::{self, DmaBufMap};
use vb2r::v4l2::Queue;

/// Whether `e` carries a pending vb2_resv fence.
fn pending(e: &File) -> Result<bool> {
    let (f, _) = fences(e)?;
    Ok(ours(&f).iter().any(|x| x.pending()))
}

fn expect_pending(what: &str, e: &File, want: bool) -> Result<()> {
    let (f, _) = fences(e)?;
    let got = ours(&f).iter().any(|x| x.pending());
    ensure!(
        got == want,
        "{what}: want {} pending fence, found {}",
        if want { "a" } else { "no" },
        describe(&f)
    );
    println!("{what}: {}", describe(&f));
    Ok(())
}

pub(crate) fn capture(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let ex: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
        expect_pending(
            &format!("buffer {i} queued before STREAMON"),
            &ex[i as usize],
            false,
        )?;
    }
    cap.streamon()?;
    let mut armed_at_streamon = 0;
    for (i, e) in ex.iter().enumerate() {
        // Some may be done already: pending, or signaled with its job.
        let (f, _) = fences(e)?;
        if let Some(x) = ours(&f).first() {
            armed_at_streamon += 1;
            println!("buffer {i} after STREAMON: {}", describe(&f));
            ensure!(x.status >= 0, "buffer {i}: fence ended with {}", x.status);
        }
    }
    ensure!(armed_at_streamon > 0, "STREAMON armed no fence");
    let (i, _) = cap.dqbuf().context("DQBUF")?;
    let (f, _) = fences(&ex[i as usize])?;
    ensure!(
        f.iter().all(|x| !x.pending()),
        "buffer {i} dequeued with {}",
        describe(&f)
    );
    cap.qbuf_mmap(i, 0).context("re-QBUF")?;
    // Armed in QBUF while streaming; vivid fills at 30 frames/s, so it is still pending.
    expect_pending(
        &format!("buffer {i} queued while streaming"),
        &ex[i as usize],
        true,
    )?;
    cap.streamoff()?;
    Ok(())
}

pub(crate) fn m2m(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vim2m, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let ex: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let mut out = Queue::new(&s.dev, true)?;
    let no = out.reqbufs(MemoryType::Mmap, 4)?;
    let size = out.plane_sizes.first().copied().unwrap_or(0);
    cap.streamon()?;
    out.streamon()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("CAPTURE QBUF")?;
    }
    for (i, e) in ex.iter().enumerate() {
        expect_pending(&format!("CAPTURE {i}, no OUTPUT buffer"), e, false)?;
    }
    // One OUTPUT buffer: one committed job, on the first CAPTURE buffer only.
    out.qbuf_mmap(0, size).context("OUTPUT QBUF")?;
    expect_pending("CAPTURE 0 after one OUTPUT buffer", &ex[0], true)?;
    for (i, e) in ex.iter().enumerate().skip(1) {
        expect_pending(&format!("CAPTURE {i} after one OUTPUT buffer"), e, false)?;
    }
    let (i, _) = cap.dqbuf().context("DQBUF")?;
    ensure!(i == 0, "dequeued CAPTURE {i}, want 0");
    ensure!(!pending(&ex[0])?, "CAPTURE 0 dequeued with a pending fence");
    out.dqbuf().context("OUTPUT DQBUF")?;
    // Two more jobs: CAPTURE 1 and 2; 3 has none.
    out.qbuf_mmap(1, size).context("OUTPUT QBUF")?;
    out.qbuf_mmap(2, size.min(no * size))
        .context("OUTPUT QBUF")?;
    expect_pending("CAPTURE 1 after two more OUTPUT buffers", &ex[1], true)?;
    expect_pending("CAPTURE 2 after two more OUTPUT buffers", &ex[2], true)?;
    expect_pending("CAPTURE 3 after two more OUTPUT buffers", &ex[3], false)?;
    // No OUTPUT buffer any more: no job for any CAPTURE buffer.
    out.streamoff()?;
    for (i, e) in ex.iter().enumerate() {
        expect_pending(&format!("CAPTURE {i} after OUTPUT STREAMOFF"), e, false)?;
    }
    cap.streamoff()?;
    Ok(())
}

/// The visl node and its media device.
struct Visl {
    dev: File,
    media: File,
}

fn visl(cli: &Cli) -> Result<Visl> {
    let s = setup(Dev::Visl, cli)?;
    let media = vb2r::probe::media_for_video(std::path::Path::new(&s.path))
        .with_context(|| format!("no media device for {}", s.path))?;
    let media = vb2r::v4l2::open(&media)?;
    Ok(Visl { dev: s.dev, media })
}

/// One sample of a CAPTURE buffer while a job may run: its bytes written (not the sentinel)
/// first, then its fence, then whether it is still queued.
fn sample(
    cap: &Queue,
    map: &DmaBufMap,
    e: &File,
    index: u32,
    sentinel: u8,
) -> Result<(bool, i32, bool)> {
    // Not through DMA_BUF_IOCTL_SYNC: it would wait for the very fence under test.
    let written = map.peek(|b| b.iter().step_by(4096).any(|&x| x != sentinel));
    let (f, _) = fences(e)?;
    let st = ours(&f).first().map(|x| x.status).unwrap_or(1);
    let fl = cap.querybuf(index)?;
    let queued = fl.contains(BufferFlags::QUEUED) && !fl.contains(BufferFlags::DONE);
    Ok((written, st, queued))
}

/// visl, `slices` requests per picture (the last without V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF),
/// with the job's bytes and the fence sampled from a second thread while each request runs
/// (visl runs the job inside MEDIA_REQUEST_IOC_QUEUE, for visl_transtime_ms).
pub(crate) fn visl_jobs(cli: &Cli, slices: u32, check_sync_file: bool) -> Result<()> {
    let v = visl(cli)?;
    let mut cap = Queue::new(&v.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 2)?;
    let ex: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let size = *cap.plane_sizes.first().context("no CAPTURE plane")? as usize;
    let map = DmaBufMap::new(cap.expbuf(0, 0)?, size, "CAPTURE 0")?;
    const SENTINEL: u8 = 0xa5;
    let mut out = Queue::new(&v.dev, true)?;
    out.reqbufs(MemoryType::Mmap, slices.max(2))?;
    cap.streamon()?;
    out.streamon()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("CAPTURE QBUF")?;
    }
    for (i, e) in ex.iter().enumerate() {
        expect_pending(&format!("CAPTURE {i}, no request yet"), e, false)?;
    }
    let ctl = if check_sync_file {
        Some(Control::open()?)
    } else {
        None
    };
    for k in 0..slices {
        let hold = k + 1 < slices;
        // The sentinel again (a held buffer keeps the previous slice's bytes): a written sample
        // is then this job's write.
        map.access(sys::DMA_BUF_SYNC_WRITE, |b| b.fill(SENTINEL))?;
        let req = Request::alloc(&v.media).context("MEDIA_IOC_REQUEST_ALLOC")?;
        out.qbuf_mmap_request(k, 64, req.as_raw_fd(), 1000, hold)
            .context("OUTPUT QBUF into the request")?;
        // The request is queued from a second thread (the ioctl runs visl's job); this one
        // samples CAPTURE 0 until the job's OUTPUT buffer is done.
        let mut during = 0u32;
        let mut violation = None::<String>;
        let mut kept = None::<OwnedFd>;
        std::thread::scope(|sc| -> Result<()> {
            let h = sc.spawn(|| {
                req.queue()
                    .map_err(|e| anyhow::anyhow!("MEDIA_REQUEST_IOC_QUEUE: {e}"))
            });
            let t0 = Instant::now();
            loop {
                let (written, st, queued) = sample(&cap, &map, &ex[0], 0, SENTINEL)?;
                // Last: whether the job is still running. Its OUTPUT buffer completes before
                // the fence of a slice that holds CAPTURE 0 ends, so a fence seen ended while
                // the OUTPUT buffer is not done yet ended too early.
                let running = !out
                    .querybuf(k)
                    .map(|f| f.contains(BufferFlags::DONE))
                    .unwrap_or(true);
                if queued && written && running {
                    during += 1;
                    if st != 0 && violation.is_none() {
                        violation = Some(format!(
                            "slice {k}: CAPTURE 0 is written and still queued, but its fence is {st}"
                        ));
                    }
                    if let (Some(c), 0, None) = (&ctl, st, &kept) {
                        if let Ok((fd, true)) = c.sync_file(v.dev.as_raw_fd(), cap.qt as u32, 0) {
                            kept = Some(fd);
                        }
                    }
                }
                let done = out
                    .querybuf(k)
                    .map(|f| f.contains(BufferFlags::DONE))
                    .unwrap_or(true);
                if (h.is_finished() && done) || t0.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            h.join()
                .map_err(|_| anyhow::anyhow!("the request thread panicked"))?
        })?;
        if let Some(v) = violation {
            bail!("{v}");
        }
        ensure!(during > 0, "slice {k}: never sampled CAPTURE 0 while its job wrote it (visl_transtime_ms too short?)");
        println!(
            "slice {k}{}: {} samples during the job, fence pending in each",
            if hold { " (hold)" } else { "" },
            during
        );
        if let Some(sf) = kept {
            // The control device's sync_file: the same fence, signaled with the job.
            let info = sys::sync_file_info(&sf)?;
            ensure!(
                info.len() == 1 && info[0].status == 1,
                "slice {k}: the sync_file taken during the job: {}",
                describe(&info)
            );
            println!("slice {k}: the control device's sync_file was pending during the job and is signaled now");
        } else if check_sync_file {
            bail!("slice {k}: no pending sync_file from the control device during the job");
        }
        // The job is over: nothing of ours may be pending, held or not (only userspace can
        // queue the next slice).
        let fl = cap.querybuf(0)?;
        println!("after slice {k}: CAPTURE 0 {fl:?}");
        expect_pending(&format!("CAPTURE 0 after slice {k}"), &ex[0], false)?;
        expect_pending(&format!("CAPTURE 1 after slice {k}"), &ex[1], false)?;
        if hold {
            ensure!(
                fl.contains(BufferFlags::QUEUED) && !fl.contains(BufferFlags::DONE),
                "slice {k} held CAPTURE 0, but it is {fl:?}"
            );
        }
        let (oi, _) = out.dqbuf().context("OUTPUT DQBUF")?;
        ensure!(oi == k, "OUTPUT DQBUF {oi}, want {k}");
    }
    let (i, _) = cap.dqbuf().context("CAPTURE DQBUF")?;
    ensure!(i == 0, "CAPTURE DQBUF gave {i}, want 0");
    let (f, _) = fences(&ex[0])?;
    ensure!(
        f.iter().all(|x| !x.pending()),
        "CAPTURE 0 dequeued with {}",
        describe(&f)
    );
    if let Some(c) = &ctl {
        let (fd, pend) = c
            .sync_file(v.dev.as_raw_fd(), cap.qt as u32, 0)
            .context("sync_file of an idle buffer")?;
        let info = sys::sync_file_info(&fd)?;
        ensure!(
            !pend && info.iter().all(|x| !x.pending()),
            "an idle buffer's sync_file: {}",
            describe(&info)
        );
        let null = File::open("/dev/null")?;
        let want = |what: &str, r: nix::Result<(OwnedFd, bool)>, e: Errno| -> Result<()> {
            ensure!(
                matches!(r, Err(x) if x == e),
                "{what}: got {:?}, want {e}",
                r.map(|x| x.1)
            );
            println!("{what}: {e}");
            Ok(())
        };
        want(
            "sync_file of fd 999",
            c.sync_file(999, cap.qt as u32, 0),
            Errno::EBADF,
        )?;
        want(
            "sync_file of /dev/null",
            c.sync_file(null.as_raw_fd(), cap.qt as u32, 0),
            Errno::ENOTTY,
        )?;
        want(
            "sync_file of index 1000",
            c.sync_file(v.dev.as_raw_fd(), cap.qt as u32, 1000),
            Errno::EINVAL,
        )?;
        want(
            "sync_file of buffer type 99",
            c.sync_file(v.dev.as_raw_fd(), 99, 0),
            Errno::EINVAL,
        )?;
    }
    Ok(())
}

/// visl with a job longer than the module's fence_timeout_ms: the fence ends with -ETIMEDOUT
/// while the job runs; the job then completes, and the next one decodes normally.
pub(crate) fn watchdog(cli: &Cli) -> Result<()> {
    let v = visl(cli)?;
    let mut cap = Queue::new(&v.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 2)?;
    let ex: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let mut out = Queue::new(&v.dev, true)?;
    out.reqbufs(MemoryType::Mmap, 2)?;
    cap.streamon()?;
    out.streamon()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("CAPTURE QBUF")?;
    }
    for k in 0..2u32 {
        let req = Request::alloc(&v.media).context("MEDIA_IOC_REQUEST_ALLOC")?;
        out.qbuf_mmap_request(k, 64, req.as_raw_fd(), 1000 * (u64::from(k) + 1), false)?;
        let sf = std::sync::Mutex::new(None::<OwnedFd>);
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(3) && sf.lock().unwrap().is_none() {
                    if let Ok((f, s)) = fences(&ex[k as usize]) {
                        if ours(&f).iter().any(|x| x.pending()) {
                            *sf.lock().unwrap() = Some(s);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            req.queue()
                .map_err(|e| anyhow::anyhow!("MEDIA_REQUEST_IOC_QUEUE: {e}"))
        })?;
        let (i, flags) = cap.dqbuf().context("CAPTURE DQBUF")?;
        out.dqbuf().context("OUTPUT DQBUF")?;
        let sf = sf
            .into_inner()
            .unwrap()
            .with_context(|| format!("job {k}: its fence was never seen pending"))?;
        let st = status_of(&sf)?;
        println!("job {k}: CAPTURE {i} ({flags:?}), its fence ended with {st}");
        ensure!(
            st == -110,
            "job {k}: fence status {st}, want -ETIMEDOUT (-110)"
        );
    }
    println!("both jobs completed after their fences timed out: the stream went on");
    Ok(())
}
