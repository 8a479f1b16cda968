//! Checks that attack the module where a fence could end while the hardware still owns its
//! buffer, or where unload could pull code from under a task: calls from a second opener, a
//! buffer dequeued and queued again before its buf_done event is handled, unload with clients
//! asleep inside V4L2, and the driver unbinding under a client.

use crate::{describe, feed, fences, ours, setup, status_of, Cli, Dev, ECANCELED};
use anyhow::{bail, ensure, Context, Result};
use nix::errno::Errno;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use v4l2r::ioctl::BufferFlags;
use v4l2r::memory::MemoryType;
use vb2r::kmod::Control;
use vb2r::v4l2::{self, Queue};

/// The fence of every buffer (a sync_file taken right after its QBUF), checked to be ours and
/// pending.
fn queue_all_fenced(cap: &Queue, exports: &[File], path: &str) -> Result<Vec<OwnedFd>> {
    let mut sfs = Vec::new();
    for (i, e) in exports.iter().enumerate() {
        cap.qbuf_mmap(i as u32, 0).context("QBUF")?;
        sfs.push(crate::expect_pending_ours(&format!("buffer {i}"), e, path)?);
    }
    Ok(sfs)
}

/// DQBUF (queueing each buffer again) until every one of the `n` buffers came back once;
/// `first` checks each buffer the first time it comes back.
fn each_back(
    cap: &Queue,
    n: u32,
    mut first: impl FnMut(u32, BufferFlags) -> Result<()>,
) -> Result<()> {
    let t0 = Instant::now();
    let mut back = vec![false; n as usize];
    while back.iter().any(|b| !b) {
        ensure!(
            t0.elapsed() < Duration::from_secs(20),
            "buffers did not come back"
        );
        let (i, flags) = cap.dqbuf().context("DQBUF")?;
        if !back[i as usize] {
            first(i, flags)?;
            back[i as usize] = true;
        }
        cap.qbuf_mmap(i, 0).context("re-QBUF")?;
    }
    Ok(())
}

/// A second opener of the owner's node calls STREAMOFF, REQBUFS(0), REMOVE_BUFS and close.
/// vb2 refuses them (-EBUSY: the node's queue is the owner's) or they address the second
/// opener's own m2m context; either way none may end a fence of the owner's buffers.
pub(crate) fn nonowner(cli: &Cli, which: Dev) -> Result<()> {
    let s = setup(which, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let sfs = queue_all_fenced(&cap, &exports, &s.path)?;

    let intruder = |phase: &str| -> Result<()> {
        let other = v4l2::open(&s.path)?;
        let mut q2 = Queue::new(&other, false)?;
        q2.memory = MemoryType::Mmap;
        let so = q2.streamoff_errno();
        let rb = q2.reqbufs_errno(0);
        let rm = q2.remove_bufs(0, 1);
        println!("{phase}: second opener: STREAMOFF {so:?}, REQBUFS(0) {rb:?}, REMOVE_BUFS {rm:?}");
        if !s.m2m {
            // The node's own queue belongs to the owner: vb2 says so.
            ensure!(
                so == Err(Errno::EBUSY),
                "{phase}: STREAMOFF from a non-owner: {so:?}, want EBUSY"
            );
            ensure!(
                rb == Err(Errno::EBUSY),
                "{phase}: REQBUFS from a non-owner: {rb:?}, want EBUSY"
            );
        }
        drop(other);
        println!("{phase}: second opener closed");
        Ok(())
    };
    intruder("before STREAMON")?;
    for (i, sf) in sfs.iter().enumerate() {
        let st = status_of(sf)?;
        ensure!(
            st == 0,
            "buffer {i}: its fence ended (status {st}) after the second opener's calls, but the \
             buffer is still queued"
        );
    }
    println!("every fence still pending after the second opener's calls");

    let _out = feed(&s, n)?;
    cap.streamon()?;
    // While streaming: the same calls again. A fence may end only by its buffer coming back.
    intruder("streaming")?;
    each_back(&cap, n, |i, flags| {
        let st = status_of(&sfs[i as usize])?;
        ensure!(
            st == 1 || (st == -5 && flags.contains(BufferFlags::ERROR)),
            "buffer {i} came back ({flags:?}) with fence status {st}, want 1 (signaled by \
             the driver, not cancelled: -{ECANCELED} is what a non-owner's call did before)"
        );
        Ok(())
    })?;
    println!("every buffer came back with its fence signaled normally");
    cap.streamoff()?;
    Ok(())
}

/// Many cycles of a non-blocking DQBUF and an immediate QBUF on vim2m, checked from two
/// threads: no fence of ours may ever be found signaled while QUERYBUF says the buffer is still
/// queued (vb2 or the driver owns it) and no DQBUF/QBUF cycle happened in between.
pub(crate) fn requeue_race(cli: &Cli, cycles: u32, settle_ms: u64) -> Result<()> {
    let s = setup(Dev::Vim2m, cli)?;
    ensure!(s.m2m, "requeue-race needs vim2m");
    // Non-blocking DQBUF: a buffer is on the done list (and can be taken) before its buf_done
    // event has run; a blocking DQBUF is woken only after the event.
    let fl = nix::fcntl::fcntl(&s.dev, nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        &s.dev,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(fl) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
    }
    let out = feed(&s, n)?.context("vim2m OUTPUT queue")?;
    let out_size = out.plane_sizes.first().copied().unwrap_or(0);
    cap.streamon()?;
    // gen[i]: bumped by the cycler between its DQBUF and QBUF of buffer i.
    let gens: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let stop = AtomicBool::new(false);
    let samples = AtomicU32::new(0);
    let violation = std::sync::Mutex::new(None::<String>);
    let check = |who: &str, i: u32, g0: u64| -> Result<()> {
        let before = cap.querybuf(i).context("QUERYBUF")?;
        let (f, _) = fences(&exports[i as usize])?;
        let after = cap.querybuf(i).context("QUERYBUF")?;
        let g1 = gens[i as usize].load(Ordering::SeqCst);
        let queued =
            |fl: BufferFlags| fl.contains(BufferFlags::QUEUED) && !fl.contains(BufferFlags::DONE);
        if g0 == g1 && queued(before) && queued(after) {
            samples.fetch_add(1, Ordering::Relaxed);
            if !ours(&f).iter().any(|x| x.pending()) {
                bail!(
                    "{who}: buffer {i} is queued (QUERYBUF {before:?} / {after:?}, cycle {g0}) but \
                     carries no pending vb2_resv fence: {}",
                    describe(&f)
                );
            }
        }
        Ok(())
    };
    let t0 = Instant::now();
    let mut done = 0u32;
    std::thread::scope(|sc| -> Result<()> {
        sc.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for i in 0..n {
                    let g0 = gens[i as usize].load(Ordering::SeqCst);
                    if let Err(e) = check("sampler", i, g0) {
                        *violation.lock().unwrap() = Some(format!("{e:#}"));
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
        let r = (|| -> Result<()> {
            while done < cycles && !stop.load(Ordering::Relaxed) {
                ensure!(
                    t0.elapsed() < Duration::from_secs(120),
                    "only {done} cycles in 120 s"
                );
                // OUTPUT buffers back as soon as their job is done.
                match out.dqbuf() {
                    Ok((oi, _)) => out.qbuf_mmap(oi, out_size).context("OUTPUT QBUF")?,
                    Err(Errno::EAGAIN) => {}
                    Err(e) => bail!("OUTPUT DQBUF: {e}"),
                }
                let i = match cap.dqbuf() {
                    Ok((i, _)) => i,
                    Err(Errno::EAGAIN) => continue,
                    Err(e) => bail!("CAPTURE DQBUF: {e}"),
                };
                let g = gens[i as usize].fetch_add(1, Ordering::SeqCst) + 1;
                cap.qbuf_mmap(i, 0).context("CAPTURE QBUF")?;
                check("cycler", i, g)?;
                // Again once a late event of the previous cycle has surely been handled (the
                // module's test delay is at most a few ms; the job takes longer).
                std::thread::sleep(Duration::from_millis(settle_ms));
                check("cycler, later", i, g)?;
                done += 1;
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        r
    })?;
    if let Some(v) = violation.into_inner().unwrap() {
        bail!("{v}");
    }
    let _ = cap.streamoff();
    let _ = out.streamoff();
    ensure!(done >= cycles, "only {done} of {cycles} cycles");
    println!(
        "{done} DQBUF+QBUF cycles in {:.1} s, {} samples of a queued buffer: every one carried a pending fence",
        t0.elapsed().as_secs_f64(),
        samples.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Streams vivid with `sleepers` threads asleep in blocking DQBUFs on one fd and `hammers`
/// threads contending for its queue lock (QUERYBUF), for `seconds` or until `stop_file` exists,
/// while the shell unloads and reloads the module. Every thread must return.
pub(crate) fn blocked_clients(
    cli: &Cli,
    seconds: f64,
    stop_file: Option<&std::path::Path>,
    sleepers: u32,
    hammers: u32,
) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 6)?;
    let _exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
    }
    cap.streamon()?;
    let stop = AtomicBool::new(false);
    let (frames, queries) = (AtomicU32::new(0), AtomicU32::new(0));
    let t0 = Instant::now();
    let finished = AtomicU32::new(0);
    std::thread::scope(|sc| -> Result<()> {
        let mut handles = Vec::new();
        for _ in 0..sleepers {
            handles.push(sc.spawn(|| -> Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    // vb2 lets one task wait in DQBUF per queue; the others get EBUSY and go
                    // round again through the queue lock.
                    let i = match cap.dqbuf() {
                        Ok((i, _)) => i,
                        Err(Errno::EBUSY) => {
                            std::thread::yield_now();
                            continue;
                        }
                        Err(e) => bail!("DQBUF: {e}"),
                    };
                    frames.fetch_add(1, Ordering::Relaxed);
                    cap.qbuf_mmap(i, 0).context("QBUF")?;
                }
                finished.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }));
        }
        for _ in 0..hammers {
            handles.push(sc.spawn(|| -> Result<()> {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    cap.querybuf(i % n).context("QUERYBUF")?;
                    queries.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
                finished.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }));
        }
        while t0.elapsed().as_secs_f64() < seconds && !stop_file.is_some_and(|f| f.exists()) {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })?;
    let total = sleepers + hammers;
    ensure!(
        finished.load(Ordering::Relaxed) == total,
        "only {} of {total} threads returned",
        finished.load(Ordering::Relaxed)
    );
    cap.streamoff()?;
    println!(
        "{total} threads ({sleepers} in DQBUF, {hammers} on the queue lock) all returned after {:.1} s: {} frames, {} QUERYBUFs",
        t0.elapsed().as_secs_f64(),
        frames.load(Ordering::Relaxed),
        queries.load(Ordering::Relaxed)
    );
    Ok(())
}

/// The platform device of `driver` bound now (`/sys/bus/platform/drivers/<driver>/<dev>`).
fn bound_device(driver: &str) -> Result<String> {
    let dir = format!("/sys/bus/platform/drivers/{driver}");
    for e in std::fs::read_dir(&dir).with_context(|| format!("{dir}: no such driver"))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if name.starts_with(driver) {
            return Ok(name);
        }
    }
    bail!("{dir}: no device bound")
}

/// Queues every buffer (fenced), optionally streams, then unbinds the driver through sysfs:
/// every fence must end, with -ECANCELED for the buffers the hardware never got, the node's
/// queue for vivid at once, an m2m context's when its file is closed. Rebinds the driver.
pub(crate) fn unbind(cli: &Cli, which: Dev, streaming: bool) -> Result<()> {
    let s = setup(which, cli)?;
    let driver = s.driver;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let sfs = queue_all_fenced(&cap, &exports, &s.path)?;
    let out = if streaming { feed(&s, 1)? } else { None };
    if streaming {
        cap.streamon()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let dev = bound_device(driver)?;
    std::fs::write(format!("/sys/bus/platform/drivers/{driver}/unbind"), &dev)
        .with_context(|| format!("unbind {dev}"))?;
    println!(
        "{driver}: {dev} unbound ({})",
        if streaming {
            "streaming"
        } else {
            "before STREAMON"
        }
    );
    let statuses = |when: &str| -> Result<Vec<i32>> {
        let st = sfs.iter().map(status_of).collect::<Result<Vec<_>>>()?;
        println!("fence status {when}: {st:?}");
        Ok(st)
    };
    let st = statuses("after unbind")?;
    if !s.m2m {
        ensure!(
            st.iter().all(|&x| x != 0),
            "a fence is still pending after the unbind, though vb2 took every buffer back: {st:?}"
        );
    }
    drop(out);
    drop(cap);
    drop(s);
    let st = statuses("after close")?;
    ensure!(
        st.iter().all(|&x| x != 0),
        "a fence is still pending after unbind and close: {st:?}"
    );
    ensure!(
        st.contains(&-ECANCELED),
        "no fence ended with -ECANCELED, yet buffers were queued that the hardware never got: {st:?}"
    );
    for (i, e) in exports.iter().enumerate() {
        let (f, _) = fences(e)?;
        ensure!(
            f.iter().all(|x| !x.pending()),
            "buffer {i}: {}",
            describe(&f)
        );
    }
    std::fs::write(format!("/sys/bus/platform/drivers/{driver}/bind"), &dev)
        .with_context(|| format!("bind {dev}"))?;
    println!("{driver}: {dev} bound again");
    Ok(())
}

/// vivid's "Inject VIDIOC_STREAMON Error": start_streaming fails and hands every buffer back
/// QUEUED. They are still queued and go to the hardware at the next STREAMON, so their fences
/// must stay pending through the failed STREAMON and end normally once the buffers come back.
pub(crate) fn streamon_error(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let sfs = queue_all_fenced(&cap, &exports, &s.path)?;
    v4l2::set_ctrl_by_name(&s.dev, "Inject VIDIOC_STREAMON Error", 1)?;
    ensure!(
        cap.streamon().is_err(),
        "STREAMON succeeded despite the injected error"
    );
    println!("STREAMON failed as injected");
    for (i, sf) in sfs.iter().enumerate() {
        let flags = cap.querybuf(i as u32)?;
        let st = status_of(sf)?;
        println!("buffer {i}: {flags:?}, fence status {st}");
        ensure!(
            flags.contains(BufferFlags::QUEUED),
            "buffer {i} is no longer queued"
        );
        ensure!(
            st == 0,
            "buffer {i} is still queued (it goes to the hardware at the next STREAMON) but its \
             fence ended with status {st}"
        );
    }
    cap.streamon()?;
    each_back(&cap, n, |i, _| {
        let st = status_of(&sfs[i as usize])?;
        ensure!(st == 1, "buffer {i} came back, fence status {st}, want 1");
        Ok(())
    })?;
    cap.streamoff()?;
    println!("after the second STREAMON every fence ended with its buffer, status 1");
    Ok(())
}

/// A detach (VB2_RESV_IOC_DETACH, from a second thread) that is slow to kill the queue's state
/// (run it with the module's test_kill_delay_ms) while the owner goes on streaming, then stops:
/// once the node's hooks are gone its calls go straight to vivid, which still returns buffers
/// (DQBUF, then STREAMOFF). Every fence of ours must end when vivid returns its buffer, not
/// stay pending until the detach gets round to cancelling it.
pub(crate) fn detach_streamoff(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    // The sync_file of each buffer's pending fence of ours, taken right after its QBUF.
    let mut sfs: Vec<Option<OwnedFd>> = queue_all_fenced(&cap, &exports, &s.path)?
        .into_iter()
        .map(Some)
        .collect();
    let queue = |i: u32, sfs: &mut Vec<Option<OwnedFd>>| -> Result<bool> {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
        let (f, sf) = fences(&exports[i as usize])?;
        let armed = ours(&f).iter().any(|x| x.pending());
        sfs[i as usize] = armed.then_some(sf);
        Ok(armed)
    };
    cap.streamon()?;
    let fd = s.dev.as_raw_fd();
    let detach = std::thread::spawn(move || -> Result<()> {
        Control::open()?.detach(fd)?;
        Ok(())
    });
    // Stream until a QBUF arms nothing: the detach has removed the hooks and now waits in the
    // kill (test_kill_delay_ms).
    let t0 = Instant::now();
    let mut frames = 0;
    loop {
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "every QBUF for 10 s was still fenced: the detach did not start"
        );
        let (i, _) = cap.dqbuf().context("DQBUF")?;
        frames += 1;
        if let Some(sf) = &sfs[i as usize] {
            let st = status_of(sf)?;
            ensure!(
                st != 0,
                "buffer {i}: its fence is still pending at DQBUF ({}; after {frames} frames)",
                describe(&vb2r::sys::sync_file_info(sf)?)
            );
        }
        if !queue(i, &mut sfs)? {
            println!("after {frames} frames a QBUF armed nothing: the hooks are gone");
            break;
        }
    }
    let pending: Vec<usize> = (0..sfs.len())
        .filter(|&i| {
            sfs[i]
                .as_ref()
                .is_some_and(|sf| status_of(sf).is_ok_and(|st| st == 0))
        })
        .collect();
    cap.streamoff()?;
    let mut bad = Vec::new();
    for &i in &pending {
        let sf = sfs[i]
            .as_ref()
            .context("a pending fence without its sync_file")?;
        let st = status_of(sf)?;
        println!("buffer {i}: fence pending before STREAMOFF, status {st} after it");
        if st == 0 {
            bad.push(format!(
                "buffer {i}: {}",
                describe(&vb2r::sys::sync_file_info(sf)?)
            ));
        }
    }
    let joined = detach.join();
    ensure!(
        bad.is_empty(),
        "fences still pending after STREAMOFF returned their buffers: {}",
        bad.join("; ")
    );
    match joined {
        Ok(r) => r.context("VB2_RESV_IOC_DETACH")?,
        Err(_) => bail!("the detach thread panicked"),
    }
    ensure!(
        !pending.is_empty(),
        "no fence was pending when STREAMOFF ran: nothing was checked"
    );
    println!(
        "{} fence(s) pending before STREAMOFF, all ended by it (the detach's kill waited)",
        pending.len()
    );
    Ok(())
}
