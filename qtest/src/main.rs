//! The guest-side checks of the QEMU suite (scripts/guest/tests/*.sh run them).
//!
//! Each subcommand drives a real V4L2 device (vivid, vim2m) and looks at the fences on its
//! dma-bufs the way a consumer would: DMA_BUF_IOCTL_EXPORT_SYNC_FILE + SYNC_IOC_FILE_INFO,
//! poll(POLLIN), and vgem's VGEM_FENCE_ATTACH. Exit 0 when the check holds, 1 with a reason when
//! it does not. Every check also fails when vb2_resv is absent or does nothing, except `absent`,
//! which fails when a fence *is* there.

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use v4l2r::ioctl::BufferFlags;
use v4l2r::memory::MemoryType;
use vb2r::kmod::{Control, Mode};
use vb2r::sys::{self, FenceInfo};
use vb2r::v4l2::{self, Queue};

mod bench;
mod races;
mod readers;
mod stress;
mod strict;

#[derive(Parser)]
#[command(about)]
struct Cli {
    /// Attach vb2_resv to the node through /dev/vb2_resv before the check (otherwise the module
    /// is expected to be attached already, e.g. by its attach= parameter, or absent).
    #[arg(long, global = true)]
    attach: bool,
    /// Set the module's mode through /dev/vb2_resv first.
    #[arg(long, global = true)]
    mode: Option<String>,
    #[command(subcommand)]
    check: Check,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Dev {
    Vivid,
    Vim2m,
    Visl,
}

#[derive(Subcommand)]
enum Check {
    /// Print the /dev/videoN node of `driver` whose name contains `name` (a helper for scripts).
    FindNode {
        #[arg(long)]
        driver: String,
        #[arg(long)]
        name: String,
    },
    /// No module: a queued buffer's dma-buf has no unsignaled fence and poll returns at once.
    Absent,
    /// After QBUF the dma-buf has an unsignaled vb2_resv WRITE fence; poll blocks until the
    /// device fills the buffer; the fence is signaled when DQBUF returns.
    Queued {
        #[arg(long, value_enum, default_value = "vivid")]
        dev: Dev,
    },
    /// Two EXPBUFs of the same plane (one before, one after QBUF) both carry the fence.
    MultiExport,
    /// A DMABUF CAPTURE queue (system dma-heap buffers): the fence is on the imported buffer.
    DmabufImport,
    /// The fence is in the dma-buf's shared resv, where another driver sees it: vgem (which
    /// honours implicit sync) refuses VGEM_FENCE_ATTACH with EBUSY while our fence is pending
    /// and accepts it once the buffer is done.
    VgemSeesResvFence,
    /// A buffer the driver returns with V4L2_BUF_FLAG_ERROR has a fence signaled with -EIO.
    Error,
    /// STREAMOFF, REQBUFS(0) and close with buffers queued: every fence signaled -ECANCELED.
    Cancel,
    /// Mode dqbuf: no fence at QBUF; a signaled vb2_resv fence after DQBUF.
    ModeDqbuf,
    /// Mode off: no vb2_resv fence, ever.
    ModeOff,
    /// The control device's errors: attach twice (EBUSY), detach what is not attached (ENOENT),
    /// a non-V4L2 fd (ENOTTY), a V4L2 node that is not a capture node (EINVAL), a bad fd (EBADF).
    AttachErrors,
    /// Stream vivid for a while, checking every buffer: no fence pending at DQBUF. Prints how
    /// many QBUFs were fenced and unfenced (the module may be unloaded meanwhile).
    Stream {
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
        /// Detach the module from the node through /dev/vb2_resv at the end.
        #[arg(long)]
        detach: bool,
        /// Fail unless at least one QBUF was fenced.
        #[arg(long)]
        expect_fenced: bool,
    },
    /// A second opener's STREAMOFF, REQBUFS(0), REMOVE_BUFS and close, before and while the
    /// owner streams: none may end a fence of the owner's buffers.
    Nonowner {
        #[arg(long, value_enum, default_value = "vivid")]
        dev: Dev,
    },
    /// vivid: a detach (from a second thread, with the module's test_kill_delay_ms) while the
    /// owner streams and stops: the fences of the buffers vivid returns end with them.
    DetachStreamoff,
    /// vim2m, non-blocking DQBUF + immediate QBUF for `cycles` cycles, sampled from two
    /// threads: never a queued buffer without a pending fence (run it with the module's
    /// test_buf_done_delay_us to widen the window a late buf_done event has).
    RequeueRace {
        #[arg(long, default_value_t = 2000)]
        cycles: u32,
        /// After each QBUF, check again this much later (set it above the module's
        /// test_buf_done_delay_us and below vim2m's transaction time).
        #[arg(long, default_value_t = 5)]
        settle_ms: u64,
    },
    /// vivid streaming with threads asleep in DQBUF and threads contending for the queue lock,
    /// for `seconds` or until `stop_file` exists (the shell unloads and reloads the module
    /// meanwhile): every thread returns.
    BlockedClients {
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Stop early once this file exists (the shell creates it after its last cycle).
        #[arg(long)]
        stop_file: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 3)]
        sleepers: u32,
        #[arg(long, default_value_t = 3)]
        hammers: u32,
    },
    /// Unbind the driver (sysfs) with fenced buffers queued, before or after STREAMON: every
    /// fence ends; the driver is bound again afterwards.
    Unbind {
        #[arg(long, value_enum, default_value = "vivid")]
        dev: Dev,
        #[arg(long)]
        streaming: bool,
    },
    /// vivid's injected STREAMON error hands the queued buffers back QUEUED: their fences stay
    /// pending and end normally after the next STREAMON.
    StreamonError,
    /// A seeded random walk of client and administrator operations on `dev` (two clients),
    /// with the fence invariants checked after every step (see stress.rs). The seed is
    /// printed; VB2R_SEED replays it.
    RandomOps {
        #[arg(long, value_enum, default_value = "vivid")]
        dev: Dev,
        #[arg(long, default_value_t = 400)]
        ops: u32,
    },
    /// The reverse hazard: a vgem fence (WRITE as panfrost's, then READ) on a CAPTURE dma-buf
    /// holds QBUF (and so the hardware) off the buffer until signaled; the timeout and signal
    /// paths; an O_NONBLOCK client keeps decoding. Sets wait_readers_timeout_ms.
    WaitsForReaders {
        #[arg(long, value_enum, default_value = "vivid")]
        dev: Dev,
    },
    /// Mode strict on vivid: no fence before STREAMON, armed at STREAMON and at QBUF while
    /// streaming.
    StrictCapture,
    /// Mode strict on vim2m: a CAPTURE buffer is fenced only once an OUTPUT buffer commits its
    /// job; OUTPUT STREAMOFF ends the fences of jobs that will not run.
    StrictM2m,
    /// Mode strict on visl through the request API: `slices` requests per picture (hold on all
    /// but the last); the fence covers every write of each job and ends with it.
    StrictVisl {
        #[arg(long, default_value_t = 1)]
        slices: u32,
        /// Also check the control device's sync_file against the fence, and its errors.
        #[arg(long)]
        sync_file: bool,
    },
    /// visl jobs longer than the module's fence_timeout_ms: -ETIMEDOUT, then the stream goes on.
    Watchdog,
    /// A benchmark, not a check: times the ioctls vb2_resv wraps on a decode loop and prints
    /// them against the module absent (bench.rs; scripts/guest/bench.sh runs it).
    Bench(bench::Args),
}

const ECANCELED: i32 = 125;
const EIO: i32 = 5;

/// The vb2_resv fences among `f`.
fn ours(f: &[FenceInfo]) -> Vec<&FenceInfo> {
    f.iter().filter(|x| x.driver == "vb2_resv").collect()
}

fn describe(f: &[FenceInfo]) -> String {
    if f.is_empty() {
        return "no fence".into();
    }
    f.iter()
        .map(|x| format!("{}:{} status {}", x.driver, x.timeline, x.status))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fences on `dmabuf` and a sync_file holding them.
fn fences(dmabuf: &File) -> Result<(Vec<FenceInfo>, OwnedFd)> {
    sys::write_fences(dmabuf)
}

/// Expects exactly one pending vb2_resv fence whose timeline names `node`.
fn expect_pending_ours(what: &str, dmabuf: &File, node: &str) -> Result<OwnedFd> {
    let (f, sf) = fences(dmabuf)?;
    let o = ours(&f);
    ensure!(
        o.len() == 1 && o[0].pending(),
        "{what}: expected one pending vb2_resv fence, found {}",
        describe(&f)
    );
    let short = node.trim_start_matches("/dev/");
    ensure!(
        o[0].timeline.starts_with(short),
        "{what}: timeline '{}' does not name the node {short}",
        o[0].timeline
    );
    println!("{what}: {}", describe(&f));
    Ok(sf)
}

/// Status of the one fence in a sync_file taken earlier (by `expect_pending_ours`, so it is
/// ours). Once signaled, 7.x reports its names as "detached-driver"/"signaled-timeline": the
/// core detaches a signaled fence from its driver, so the names cannot be checked again here.
fn status_of(sf: &OwnedFd) -> Result<i32> {
    let f = sys::sync_file_info(sf)?;
    ensure!(
        f.len() == 1,
        "expected one fence in the sync_file, found {}",
        describe(&f)
    );
    Ok(f[0].status)
}

struct Setup {
    path: String,
    driver: &'static str,
    dev: File,
    /// For vim2m: the OUTPUT queue is set up by `feed`.
    m2m: bool,
}

fn setup(which: Dev, cli: &Cli) -> Result<Setup> {
    let (driver, name) = match which {
        Dev::Vivid => ("vivid", "vid-cap"),
        Dev::Vim2m => ("vim2m", "vim2m"),
        Dev::Visl => ("visl", "visl"),
    };
    let path = v4l2::find_node(driver, name)?;
    let dev = v4l2::open(&path)?;
    if cli.attach || cli.mode.is_some() {
        let ctl = Control::open()?;
        if let Some(m) = &cli.mode {
            let m = Mode::parse(m).with_context(|| format!("unknown mode {m}"))?;
            ctl.set_mode(m).context("VB2_RESV_IOC_SET_MODE")?;
        }
        if cli.attach {
            ctl.attach(dev.as_raw_fd())
                .with_context(|| format!("VB2_RESV_IOC_ATTACH {path}"))?;
        }
    }
    println!("device: {path} ({driver})");
    Ok(Setup {
        path,
        driver,
        dev,
        m2m: which != Dev::Vivid,
    })
}

/// For an m2m device: OUTPUT buffers queued (filled with a grey frame) and streaming, so that
/// the driver runs jobs for the CAPTURE buffers.
fn feed(s: &Setup, count: u32) -> Result<Option<Queue<'_>>> {
    if !s.m2m {
        return Ok(None);
    }
    let mut out = Queue::new(&s.dev, true)?;
    let n = out.reqbufs(MemoryType::Mmap, count)?;
    let size = out.plane_sizes.first().copied().unwrap_or(0);
    for i in 0..n {
        out.qbuf_mmap(i, size).context("OUTPUT QBUF")?;
    }
    out.streamon()?;
    Ok(Some(out))
}

/// DQBUF until buffer `index` comes back; returns its flags.
fn dqbuf_until(q: &Queue, index: u32, limit: Duration) -> Result<BufferFlags> {
    let t0 = Instant::now();
    loop {
        ensure!(
            t0.elapsed() < limit,
            "buffer {index} did not come back in {limit:?}"
        );
        let (i, flags) = q.dqbuf().context("DQBUF")?;
        if i == index {
            return Ok(flags);
        }
        q.qbuf_mmap(i, 0).context("re-QBUF")?;
    }
}

fn check_absent(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
    }
    for (i, e) in exports.iter().enumerate() {
        let (f, _) = fences(e)?;
        println!("buffer {i} after QBUF: {}", describe(&f));
        ensure!(
            f.iter().all(|x| !x.pending()),
            "buffer {i}: an unsignaled fence is there without the module: {}",
            describe(&f)
        );
        let (blocked, ready) = sys::poll_in(e, Duration::from_millis(0))?;
        ensure!(ready, "buffer {i}: poll(POLLIN) would block ({blocked:?})");
    }
    cap.streamon()?;
    let (i, _) = cap.dqbuf().context("DQBUF")?;
    println!("dequeued buffer {i}: the stream runs");
    cap.streamoff()?;
    Ok(())
}

fn check_queued(cli: &Cli, which: Dev) -> Result<()> {
    let s = setup(which, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    // Exported once and kept, as ffmpeg's v4l2-request hwaccel does.
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
    }
    let mut sfs = Vec::new();
    for (i, e) in exports.iter().enumerate() {
        sfs.push(expect_pending_ours(
            &format!("buffer {i} after QBUF"),
            e,
            &s.path,
        )?);
        let (_, ready) = sys::poll_in(e, Duration::from_millis(0))?;
        ensure!(
            !ready,
            "buffer {i}: poll(POLLIN) ready before the device ran"
        );
    }
    let _out = feed(&s, n)?;
    cap.streamon()?;
    let (blocked, ready) = sys::poll_in(&exports[0], Duration::from_secs(5))?;
    ensure!(
        ready,
        "buffer 0: poll(POLLIN) still blocked after {blocked:?}"
    );
    println!(
        "buffer 0: poll(POLLIN) blocked {:.1} ms",
        blocked.as_secs_f64() * 1e3
    );
    let flags = dqbuf_until(&cap, 0, Duration::from_secs(10))?;
    let st = status_of(&sfs[0])?;
    ensure!(
        st == 1,
        "buffer 0: the fence taken at QBUF has status {st} after DQBUF, want 1 (signaled)"
    );
    let (after, _) = fences(&exports[0])?;
    ensure!(
        after.iter().all(|x| !x.pending()),
        "buffer 0 after DQBUF: {}",
        describe(&after)
    );
    println!("buffer 0 dequeued (flags {flags:?}): fence signaled, status {st}");
    Ok(())
}

fn check_multi_export(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let before = cap.expbuf(0, 0)?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
    }
    let after = cap.expbuf(0, 0)?;
    let sf1 = expect_pending_ours("export made before QBUF", &before, &s.path)?;
    let sf2 = expect_pending_ours("export made after QBUF", &after, &s.path)?;
    cap.streamon()?;
    dqbuf_until(&cap, 0, Duration::from_secs(10))?;
    let (a, b) = (status_of(&sf1)?, status_of(&sf2)?);
    ensure!(
        a == 1 && b == 1,
        "after DQBUF the fences have status {a} and {b}, want 1 and 1"
    );
    println!("both exports' fences signaled at DQBUF");
    Ok(())
}

fn check_dmabuf_import(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let size = *cap.plane_sizes.first().context("format has no plane")?;
    let n = cap.reqbufs(MemoryType::DmaBuf, 4)?;
    let bufs: Vec<File> = (0..n)
        .map(|_| sys::heap_alloc(size as u64))
        .collect::<Result<_>>()?;
    println!(
        "{n} system-heap dma-bufs of {} bytes (sizeimage {size})",
        bufs[0].metadata().map(|m| m.len()).unwrap_or(0)
    );
    for (i, b) in bufs.iter().enumerate() {
        cap.qbuf_dmabuf(i as u32, std::slice::from_ref(b))
            .context("QBUF(DMABUF)")?;
    }
    let sf = expect_pending_ours("heap buffer 0 after QBUF", &bufs[0], &s.path)?;
    cap.streamon()?;
    let t0 = Instant::now();
    loop {
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "buffer 0 did not come back"
        );
        let (i, _) = cap.dqbuf().context("DQBUF")?;
        if i == 0 {
            break;
        }
        cap.qbuf_dmabuf(i, std::slice::from_ref(&bufs[i as usize]))
            .context("re-QBUF")?;
    }
    let st = status_of(&sf)?;
    ensure!(
        st == 1,
        "imported buffer's fence has status {st} after DQBUF, want 1"
    );
    println!("imported buffer's fence signaled at DQBUF");
    Ok(())
}

fn check_vgem_sees_resv_fence(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let vgem = sys::Vgem::open()?;
    println!("vgem: {}", vgem.path);
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let e0 = cap.expbuf(0, 0)?;
    let handle = vgem.import(&e0)?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
    }
    match vgem.fence_attach(handle, sys::VGEM_FENCE_WRITE) {
        Err(nix::errno::Errno::EBUSY) => {
            println!("vgem: VGEM_FENCE_ATTACH -> EBUSY while the decoder owns the buffer")
        }
        Ok(f) => {
            let _ = vgem.fence_signal(f);
            bail!("vgem attached a WRITE fence to a buffer the device still owns: no implicit-sync fence")
        }
        Err(e) => bail!("VGEM_FENCE_ATTACH: {e}"),
    }
    cap.streamon()?;
    dqbuf_until(&cap, 0, Duration::from_secs(10))?;
    let f = vgem
        .fence_attach(handle, sys::VGEM_FENCE_WRITE)
        .context("VGEM_FENCE_ATTACH after DQBUF")?;
    vgem.fence_signal(f).context("VGEM_FENCE_SIGNAL")?;
    println!("vgem: VGEM_FENCE_ATTACH succeeds after DQBUF");
    Ok(())
}

fn check_error(cli: &Cli) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let mut sfs = Vec::new();
    for (i, e) in exports.iter().enumerate() {
        cap.qbuf_mmap(i as u32, 0).context("QBUF")?;
        sfs.push(expect_pending_ours(&format!("buffer {i}"), e, &s.path)?);
    }
    // vivid's "Inject V4L2_BUF_FLAG_ERROR": the next buffer it fills is returned with ERROR.
    v4l2::set_ctrl_by_name(&s.dev, "Inject V4L2_BUF_FLAG_ERROR", 1)?;
    cap.streamon()?;
    let t0 = Instant::now();
    loop {
        ensure!(
            t0.elapsed() < Duration::from_secs(10),
            "no ERROR buffer within 10 s"
        );
        let (i, flags) = cap.dqbuf().context("DQBUF")?;
        let st = status_of(&sfs[i as usize])?;
        if flags.contains(BufferFlags::ERROR) {
            ensure!(
                st == -EIO,
                "buffer {i} came back with ERROR but its fence has status {st}, want {}",
                -EIO
            );
            println!("buffer {i}: V4L2_BUF_FLAG_ERROR, fence status {st} (-EIO)");
            return Ok(());
        }
        ensure!(
            st == 1,
            "buffer {i} came back fine but its fence has status {st}"
        );
        cap.qbuf_mmap(i, 0).context("re-QBUF")?;
        sfs[i as usize] =
            expect_pending_ours(&format!("buffer {i}"), &exports[i as usize], &s.path)?;
    }
}

/// Queues every buffer, then ends them with `how`; every fence must end signaled, the ones the
/// device did not fill with -ECANCELED.
fn cancel_case(cli: &Cli, how: &str, stream: bool) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let mut sfs = Vec::new();
    for (i, e) in exports.iter().enumerate() {
        cap.qbuf_mmap(i as u32, 0).context("QBUF")?;
        sfs.push(expect_pending_ours(&format!("buffer {i}"), e, &s.path)?);
    }
    if stream {
        cap.streamon()?;
    }
    match how {
        "streamoff" => cap.streamoff()?,
        "reqbufs0" => {
            cap.reqbufs(MemoryType::Mmap, 0)?;
        }
        "close" => drop(s),
        _ => unreachable!(),
    }
    let mut cancelled = 0;
    for (i, sf) in sfs.iter().enumerate() {
        let st = status_of(sf)?;
        ensure!(st != 0, "{how}: buffer {i}'s fence is still pending");
        ensure!(
            st == 1 || st == -ECANCELED,
            "{how}: buffer {i}'s fence has status {st}"
        );
        cancelled += (st == -ECANCELED) as u32;
    }
    ensure!(
        cancelled > 0,
        "{how}: no fence was signaled with -ECANCELED"
    );
    println!(
        "{how}{}: {cancelled} of {} fences -ECANCELED, none pending",
        if stream { " while streaming" } else { "" },
        sfs.len()
    );
    Ok(())
}

fn check_cancel(cli: &Cli) -> Result<()> {
    cancel_case(cli, "streamoff", true)?;
    let cli2 = Cli {
        attach: cli.attach,
        mode: None,
        check: Check::Cancel,
    };
    cancel_case(&cli2, "streamoff", false)?;
    cancel_case(&cli2, "reqbufs0", false)?;
    cancel_case(&cli2, "close", true)?;
    Ok(())
}

fn check_mode(cli: &Cli, dqbuf: bool) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let e0 = cap.expbuf(0, 0)?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
    }
    let (f, _) = fences(&e0)?;
    ensure!(
        ours(&f).is_empty(),
        "a vb2_resv fence at QBUF: {}",
        describe(&f)
    );
    cap.streamon()?;
    dqbuf_until(&cap, 0, Duration::from_secs(10))?;
    let (f, _) = fences(&e0)?;
    ensure!(
        f.iter().all(|x| !x.pending()),
        "after DQBUF a fence is pending: {}",
        describe(&f)
    );
    // A fence attached at DQBUF is signaled before anyone sees it: EXPORT_SYNC_FILE leaves
    // signaled fences out (the stub it returns instead looks the same with or without one). The
    // dma-buf's resv still holds it: debugfs's bufinfo lists every fence of every dma-buf,
    // signaled ones included, by the dma-buf's inode.
    let held = resv_fences(&e0)?;
    let fresh = !held.is_empty();
    println!(
        "after DQBUF (mode {}): export sync_file {}; in the resv (dma_buf/bufinfo): {held:?}",
        if dqbuf { "dqbuf" } else { "off" },
        describe(&f)
    );
    ensure!(
        fresh == dqbuf,
        "{}",
        if dqbuf {
            "no fence signaled at DQBUF: mode dqbuf attached nothing"
        } else {
            "a fence signaled at DQBUF: mode off attached one"
        }
    );
    Ok(())
}

/// The fence lines of `dmabuf`'s resv in /sys/kernel/debug/dma_buf/bufinfo (signaled ones
/// too), found by the dma-buf's inode number.
fn resv_fences(dmabuf: &File) -> Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    let ino = dmabuf.metadata()?.ino();
    let text = std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo")
        .context("/sys/kernel/debug/dma_buf/bufinfo")?;
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            // A dma-buf's first line: size flags mode count exp_name ino name (ino as %08lu).
            inside = line
                .split_whitespace()
                .nth(5)
                .and_then(|x| x.parse::<u64>().ok())
                == Some(ino);
        } else if inside && line.contains("fence:") {
            out.push(line.trim().to_string());
        }
    }
    Ok(out)
}

fn check_attach_errors() -> Result<()> {
    use nix::errno::Errno;
    let ctl = Control::open()?;
    let cap = v4l2::open(v4l2::find_node("vivid", "vid-cap")?)?;
    let out = v4l2::open(v4l2::find_node("vivid", "vid-out")?)?;
    let null = File::open("/dev/null")?;
    let want = |what: &str, got: nix::Result<()>, errno: Option<Errno>| -> Result<()> {
        let ok = match errno {
            None => got.is_ok(),
            Some(e) => got == Err(e),
        };
        ensure!(ok, "{what}: got {got:?}, want {errno:?}");
        println!("{what}: {got:?}");
        Ok(())
    };
    want("attach vid-cap", ctl.attach(cap.as_raw_fd()), None)?;
    want(
        "attach vid-cap again",
        ctl.attach(cap.as_raw_fd()),
        Some(Errno::EBUSY),
    )?;
    want("detach vid-cap", ctl.detach(cap.as_raw_fd()), None)?;
    want(
        "detach vid-cap again",
        ctl.detach(cap.as_raw_fd()),
        Some(Errno::ENOENT),
    )?;
    want(
        "attach /dev/null",
        ctl.attach(null.as_raw_fd()),
        Some(Errno::ENOTTY),
    )?;
    want(
        "attach vid-out",
        ctl.attach(out.as_raw_fd()),
        Some(Errno::EINVAL),
    )?;
    want("attach fd 999", ctl.attach(999), Some(Errno::EBADF))?;
    want("set mode 7", ctl.set_mode_raw(7), Some(Errno::EINVAL))?;
    want("re-attach vid-cap", ctl.attach(cap.as_raw_fd()), None)?;
    Ok(())
}

fn check_stream(cli: &Cli, seconds: f64, detach: bool, expect_fenced: bool) -> Result<()> {
    let s = setup(Dev::Vivid, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let exports: Vec<File> = (0..n).map(|i| cap.expbuf(i, 0)).collect::<Result<_>>()?;
    let mut sfs: Vec<Option<OwnedFd>> = Vec::new();
    let (mut fenced, mut unfenced, mut frames) = (0u32, 0u32, 0u32);
    let mut queue = |i: u32, sfs: &mut Vec<Option<OwnedFd>>| -> Result<()> {
        cap.qbuf_mmap(i, 0).context("QBUF")?;
        let (f, sf) = fences(&exports[i as usize])?;
        let pending = ours(&f).iter().any(|x| x.pending());
        if pending {
            fenced += 1
        } else {
            unfenced += 1
        }
        if sfs.len() <= i as usize {
            sfs.resize_with(i as usize + 1, || None);
        }
        sfs[i as usize] = pending.then_some(sf);
        Ok(())
    };
    for i in 0..n {
        queue(i, &mut sfs)?;
    }
    cap.streamon()?;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < seconds {
        let (i, _) = cap.dqbuf().context("DQBUF")?;
        frames += 1;
        if let Some(sf) = &sfs[i as usize] {
            let st = status_of(sf)?;
            ensure!(st != 0, "buffer {i}: its fence is still pending at DQBUF");
        }
        queue(i, &mut sfs)?;
    }
    cap.streamoff()?;
    for (i, sf) in sfs.iter().enumerate() {
        if let Some(sf) = sf {
            if status_of(sf)? == 0 {
                // Which fence, of which queue and queueing, and what the buffers show now.
                let now: Vec<String> = exports
                    .iter()
                    .map(|e| fences(e).map(|(f, _)| describe(&f)).unwrap_or_default())
                    .collect();
                bail!(
                    "buffer {i}: fence pending after STREAMOFF: {} (after {frames} frames; the buffers now: {})",
                    describe(&sys::sync_file_info(sf)?),
                    now.join(" / ")
                );
            }
        }
    }
    if detach {
        Control::open()?
            .detach(s.dev.as_raw_fd())
            .context("VB2_RESV_IOC_DETACH")?;
    }
    println!("frames {frames} fenced {fenced} unfenced {unfenced}");
    ensure!(!expect_fenced || fenced > 0, "no QBUF was fenced");
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let r = match &cli.check {
        Check::FindNode { driver, name } => v4l2::find_node(driver, name).map(|p| println!("{p}")),
        Check::Absent => check_absent(&cli),
        Check::Queued { dev } => check_queued(&cli, *dev),
        Check::MultiExport => check_multi_export(&cli),
        Check::DmabufImport => check_dmabuf_import(&cli),
        Check::VgemSeesResvFence => check_vgem_sees_resv_fence(&cli),
        Check::Error => check_error(&cli),
        Check::AttachErrors => check_attach_errors(),
        Check::Cancel => check_cancel(&cli),
        Check::ModeDqbuf => check_mode(&cli, true),
        Check::ModeOff => check_mode(&cli, false),
        Check::Stream {
            seconds,
            detach,
            expect_fenced,
        } => check_stream(&cli, *seconds, *detach, *expect_fenced),
        Check::Nonowner { dev } => races::nonowner(&cli, *dev),
        Check::DetachStreamoff => races::detach_streamoff(&cli),
        Check::RequeueRace { cycles, settle_ms } => races::requeue_race(&cli, *cycles, *settle_ms),
        Check::BlockedClients {
            seconds,
            stop_file,
            sleepers,
            hammers,
        } => races::blocked_clients(&cli, *seconds, stop_file.as_deref(), *sleepers, *hammers),
        Check::Unbind { dev, streaming } => races::unbind(&cli, *dev, *streaming),
        Check::StreamonError => races::streamon_error(&cli),
        Check::StrictCapture => strict::capture(&cli),
        Check::WaitsForReaders { dev } => readers::waits_for_readers(&cli, *dev),
        Check::StrictM2m => strict::m2m(&cli),
        Check::StrictVisl { slices, sync_file } => strict::visl_jobs(&cli, *slices, *sync_file),
        Check::Watchdog => strict::watchdog(&cli),
        Check::RandomOps { dev, ops } => {
            let seed = std::env::var("VB2R_SEED")
                .ok()
                .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                .unwrap_or_else(|| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(1)
                });
            stress::random_ops(*dev, *ops, seed)
                .map(|n| println!("{n} operations, invariants held (seed {seed:#x})"))
        }
        Check::Bench(a) => bench::run(&cli, a),
    };
    if let Err(e) = r {
        println!("FAIL: {e:#}");
        std::process::exit(1);
    }
}
