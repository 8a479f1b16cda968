//! `vb2r-qtest bench`: what vb2_resv adds to the ioctls it wraps on a decode loop (not a check;
//! scripts/guest/bench.sh drives it, docs/performance.md reads it).
//!
//! - `bench run --dev vivid|vim2m`: streams CAPTURE buffers (vim2m: with its OUTPUT queue fed)
//!   and times every ioctl of the loop that goes through the module's wrappers: CAPTURE DQBUF
//!   and QBUF, and for vim2m OUTPUT DQBUF and QBUF. Each DQBUF is timed after poll() said a
//!   buffer is ready, so it measures the call, not the wait for the device. Appends one JSON
//!   record (raw samples, ns) to `--record`.
//! - `bench decode-record`: the same record from `vb2-resv decode --json` reports (visl: CAPTURE
//!   QBUF, MEDIA_REQUEST_IOC_QUEUE, CAPTURE DQBUF per frame).
//! - `bench table`: pools the records per (node, configuration) and prints one Markdown table
//!   with p50/p99 per ioctl, the per-frame sum, frames/s and the ratios to the module absent,
//!   then the issue-17 targets met or missed.

use crate::{feed, setup, Cli, Dev};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use v4l2r::memory::MemoryType;
use vb2r::sys;
use vb2r::v4l2::Queue;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Stream `frames` CAPTURE buffers on vivid or vim2m, time every wrapped ioctl of the loop,
    /// append one record to `record` and print a one-line summary.
    Run {
        #[arg(long, value_enum, default_value = "vim2m")]
        dev: Dev,
        #[arg(long, default_value_t = 300)]
        frames: u32,
        /// EXPBUFs kept per buffer (ffmpeg keeps one; each carries its own fence).
        #[arg(long, default_value_t = 1)]
        exports: u32,
        /// The configuration: `absent` (no module) or the module's mode.
        #[arg(long)]
        label: String,
        /// The JSON-lines file the record is appended to.
        #[arg(long)]
        record: PathBuf,
    },
    /// Turn `vb2-resv decode --json` reports into records (one per report).
    DecodeRecord {
        #[arg(long)]
        label: String,
        #[arg(long)]
        record: PathBuf,
        /// Frames at the start of each report left out of the ioctl figures (the first requests
        /// set up the decoder).
        #[arg(long, default_value_t = 3)]
        skip: usize,
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
    /// Print the Markdown table of every record in `record`, with the ratios to `absent`.
    Table {
        #[arg(long)]
        record: PathBuf,
    },
}

/// One measured run: the samples of every timed ioctl, in loop order, in nanoseconds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Record {
    /// The driver (vivid, vim2m, visl).
    node: String,
    /// `absent` or the module's mode.
    label: String,
    exports: u32,
    /// (ioctl name, one sample per frame), in the order the loop calls them.
    ioctls: Vec<(String, Vec<u64>)>,
    /// Frames the wall time covers.
    frames: u64,
    wall_ns: u64,
    /// Module absent only: the kernel's own cost of attaching one fence, per frame on the
    /// dequeued buffer's export ([`FLOOR_IMPORT`], [`FLOOR_REFUSED`]); not in the sums.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    floor: Vec<(String, Vec<u64>)>,
}

/// The configuration that measures the floor: the module absent, the loop of `absent` with the
/// two floor ioctls between DQBUF and QBUF (a run of its own, so that `absent` stays untouched).
const FLOOR_LABEL: &str = "floor";
/// DMA_BUF_IOCTL_IMPORT_SYNC_FILE of one fence as WRITE: one resv lock, reserve, add, unlock.
const FLOOR_IMPORT: &str = "IMPORT_SYNC_FILE";
/// A DMA_BUF_IOCTL_SYNC refused after its copy-in: the round trip without the work.
const FLOOR_REFUSED: &str = "refused dma-buf ioctl";

impl Record {
    /// Per frame: the sum of the timed ioctls.
    fn sums(&self) -> Vec<u64> {
        let n = self.ioctls.iter().map(|(_, v)| v.len()).min().unwrap_or(0);
        (0..n)
            .map(|i| self.ioctls.iter().map(|(_, v)| v[i]).sum())
            .collect()
    }

    fn append(&self, path: &Path) -> Result<()> {
        let mut f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(self)?)?;
        Ok(())
    }
}

pub(crate) fn run(cli: &Cli, a: &Args) -> Result<()> {
    match &a.cmd {
        Cmd::Run {
            dev,
            frames,
            exports,
            label,
            record,
        } => {
            let r = measure(cli, *dev, *frames, *exports, label)?;
            r.append(record)?;
            println!("{}", summary_line(&r));
            Ok(())
        }
        Cmd::DecodeRecord {
            label,
            record,
            skip,
            reports,
        } => {
            for p in reports {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                let r =
                    from_decode(&text, label, *skip).with_context(|| format!("{}", p.display()))?;
                r.append(record)?;
                println!("{}", summary_line(&r));
            }
            Ok(())
        }
        Cmd::Table { record } => {
            let f =
                File::open(record).with_context(|| format!("cannot open {}", record.display()))?;
            let mut recs = Vec::new();
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                recs.push(
                    serde_json::from_str::<Record>(&line)
                        .with_context(|| format!("{} line {}", record.display(), i + 1))?,
                );
            }
            print!("{}", table(&recs));
            Ok(())
        }
    }
}

fn summary_line(r: &Record) -> String {
    let parts: Vec<String> = r
        .ioctls
        .iter()
        .map(|(n, v)| format!("{n} p50 {:.1} us", p_us(&sorted(v), 0.5)))
        .collect();
    format!(
        "{} {}: {} frames, {}, sum p50 {:.1} us, {:.1} frames/s",
        r.node,
        r.label,
        r.frames,
        parts.join(", "),
        p_us(&sorted(&r.sums()), 0.5),
        fps(r.frames, r.wall_ns)
    )
}

/// poll() on the device for `events`; fails after `timeout`.
fn wait_dev(dev: &File, events: nix::poll::PollFlags, timeout: Duration, what: &str) -> Result<()> {
    let mut fds = [nix::poll::PollFd::new(dev.as_fd(), events)];
    let ms = nix::poll::PollTimeout::try_from(timeout.as_millis().min(i32::MAX as u128) as i32)
        .unwrap_or(nix::poll::PollTimeout::MAX);
    let n = nix::poll::poll(&mut fds, ms).context("poll")?;
    ensure!(n > 0, "{what}: nothing ready within {timeout:?}");
    Ok(())
}

/// Runs `f` and returns how long it took, in ns.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<u64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_nanos() as u64)
}

fn measure(cli: &Cli, which: Dev, frames: u32, exports: u32, label: &str) -> Result<Record> {
    const WARMUP: u32 = 10;
    const LIMIT: Duration = Duration::from_secs(10);
    use nix::poll::PollFlags;
    ensure!(
        which != Dev::Visl,
        "visl: use `vb2-resv decode` and `bench decode-record`"
    );
    ensure!(frames > WARMUP, "--frames must be more than {WARMUP}");
    ensure!(exports >= 1, "--exports must be at least 1");
    let s = setup(which, cli)?;
    let mut cap = Queue::new(&s.dev, false)?;
    let n = cap.reqbufs(MemoryType::Mmap, 4)?;
    let _exports: Vec<File> = (0..n)
        .flat_map(|i| (0..exports).map(move |_| i))
        .map(|i| cap.expbuf(i, 0))
        .collect::<Result<_>>()?;
    for i in 0..n {
        cap.qbuf_mmap(i, 0).context("CAPTURE QBUF")?;
    }
    let out = feed(&s, n)?;
    let out_size = out
        .as_ref()
        .and_then(|o| o.plane_sizes.first().copied())
        .unwrap_or(0);
    let names: Vec<&str> = if out.is_some() {
        vec![
            "CAPTURE DQBUF",
            "OUTPUT DQBUF",
            "OUTPUT QBUF",
            "CAPTURE QBUF",
        ]
    } else {
        vec!["CAPTURE DQBUF", "CAPTURE QBUF"]
    };
    let mut samples: Vec<Vec<u64>> = vec![Vec::with_capacity(frames as usize); names.len()];
    // The floor, with the module absent: what the kernel itself spends attaching one fence to
    // the buffer just dequeued (a signaled stub from EXPORT_SYNC_FILE, added as WRITE: its
    // fence replaces the previous one, as a fence of ours replaces the last one of its
    // timeline), and a refused ioctl on the same dma-buf, whose difference is that attach.
    let stub = if label == FLOOR_LABEL {
        Some(sys::export_write_fences(&_exports[0])?)
    } else {
        None
    };
    let mut floor: [Vec<u64>; 2] = Default::default();
    cap.streamon()?;
    let mut t0 = Instant::now();
    for f in 0..frames {
        if f == WARMUP {
            t0 = Instant::now();
        }
        let mut t = Vec::with_capacity(names.len());
        wait_dev(&s.dev, PollFlags::POLLIN, LIMIT, "CAPTURE")?;
        let mut i = 0;
        t.push(timed(|| {
            i = cap.dqbuf().context("CAPTURE DQBUF")?.0;
            Ok(())
        })?);
        if let Some(o) = &out {
            // vim2m: the OUTPUT buffer of that job is done too; give it back.
            wait_dev(&s.dev, PollFlags::POLLOUT, LIMIT, "OUTPUT")?;
            let mut oi = 0;
            t.push(timed(|| {
                oi = o.dqbuf().context("OUTPUT DQBUF")?.0;
                Ok(())
            })?);
            t.push(timed(|| {
                o.qbuf_mmap(oi, out_size).context("OUTPUT QBUF")?;
                Ok(())
            })?);
        }
        let mut fl = [0u64; 2];
        if let Some(stub) = &stub {
            let e = &_exports[(i * exports) as usize];
            fl[0] = timed(|| sys::import_sync_file(e, stub, sys::DMA_BUF_SYNC_WRITE))?;
            fl[1] = timed(|| sys::dmabuf_refused_ioctl(e))?;
        }
        t.push(timed(|| {
            cap.qbuf_mmap(i, 0).context("CAPTURE QBUF")?;
            Ok(())
        })?);
        if f >= WARMUP {
            for (k, x) in t.into_iter().enumerate() {
                samples[k].push(x);
            }
            if stub.is_some() {
                floor[0].push(fl[0]);
                floor[1].push(fl[1]);
            }
        }
    }
    let wall = t0.elapsed();
    cap.streamoff()?;
    if let Some(o) = &out {
        o.streamoff()?;
    }
    Ok(Record {
        node: s.driver.to_string(),
        label: label.to_string(),
        exports,
        ioctls: names.iter().map(|n| n.to_string()).zip(samples).collect(),
        frames: u64::from(frames - WARMUP),
        wall_ns: wall.as_nanos() as u64,
        floor: if stub.is_some() {
            [FLOOR_IMPORT, FLOOR_REFUSED]
                .iter()
                .map(|n| n.to_string())
                .zip(floor)
                .collect()
        } else {
            Vec::new()
        },
    })
}

/// A record from one `vb2-resv decode --json` report (docs/report-format.md: the frames'
/// `capture_qbuf_ns`, `request_queue_ns`, `capture_dqbuf_ns`; `summary.frames` and `fps`).
fn from_decode(text: &str, label: &str, skip: usize) -> Result<Record> {
    let v: serde_json::Value = serde_json::from_str(text).context("not JSON")?;
    let node = v["device"]["driver"].as_str().unwrap_or("?").to_string();
    let frames = v["frames"].as_array().context("no frames[]")?;
    ensure!(
        frames.len() > skip,
        "{} frames, fewer than the {skip} left out",
        frames.len()
    );
    let names = ["CAPTURE QBUF", "MEDIA_REQUEST_IOC_QUEUE", "CAPTURE DQBUF"];
    let keys = ["capture_qbuf_ns", "request_queue_ns", "capture_dqbuf_ns"];
    let mut ioctls = Vec::new();
    for (name, key) in names.iter().zip(keys) {
        let s: Vec<u64> = frames[skip..]
            .iter()
            .map(|f| f[key].as_u64())
            .collect::<Option<_>>()
            .with_context(|| format!("a frame has no {key} (a vb2-resv without it?)"))?;
        ioctls.push((name.to_string(), s));
    }
    let n = v["summary"]["frames"]
        .as_u64()
        .context("no summary.frames")?;
    let fps = v["summary"]["fps"].as_f64().context("no summary.fps")?;
    if fps <= 0.0 {
        bail!("summary.fps is {fps}");
    }
    Ok(Record {
        node,
        label: label.to_string(),
        exports: 1,
        ioctls,
        frames: n,
        wall_ns: (n as f64 / fps * 1e9) as u64,
        floor: Vec::new(),
    })
}

fn sorted(v: &[u64]) -> Vec<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// The `q`-quantile of sorted `v` (nearest rank), in microseconds.
fn p_us(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)] as f64 / 1e3
}

fn fps(frames: u64, wall_ns: u64) -> f64 {
    frames as f64 / (wall_ns as f64 / 1e9).max(1e-9)
}

/// The issue-17 targets: each wrapped ioctl's p50 and the per-frame sum's p50 at most this many
/// times the module-absent p50 ...
const P50_MAX_RATIO: f64 = 1.5;
/// ... and on a CPU-bound loop (vim2m, visl) at least this share of the absent frame rate.
const FPS_MIN_RATIO: f64 = 0.99;

/// The configurations in table order; others follow in the order they were recorded.
const ORDER: [&str; 5] = ["absent", "off", "dqbuf", "strict", "queue"];

/// Records pooled per (node, label, exports): samples concatenated, frames and wall added.
struct Pooled {
    node: String,
    label: String,
    exports: u32,
    runs: usize,
    ioctls: Vec<(String, Vec<u64>)>,
    sums: Vec<u64>,
    frames: u64,
    wall_ns: u64,
    floor: Vec<(String, Vec<u64>)>,
}

/// Appends each named sample list of `from` to the list of that name in `into`.
fn merge(into: &mut Vec<(String, Vec<u64>)>, from: &[(String, Vec<u64>)]) {
    for (name, v) in from {
        match into.iter_mut().find(|(n, _)| n == name) {
            Some((_, pv)) => pv.extend_from_slice(v),
            None => into.push((name.clone(), v.clone())),
        }
    }
}

/// The p50 (us) of the samples named `name` in `lists`, if there are any.
fn p50_of(lists: &[(String, Vec<u64>)], name: &str) -> Option<f64> {
    lists
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| p_us(v, 0.5))
}

/// The single-export `absent` row of `node`: what every ratio of that node is taken against.
fn absent_of<'a>(pooled: &'a [Pooled], node: &str) -> Option<&'a Pooled> {
    pooled
        .iter()
        .find(|b| b.node == node && b.label == "absent" && b.exports == 1)
}

fn pool(recs: &[Record]) -> Vec<Pooled> {
    let mut out: Vec<Pooled> = Vec::new();
    for r in recs {
        let p = match out
            .iter_mut()
            .position(|p| p.node == r.node && p.label == r.label && p.exports == r.exports)
        {
            Some(i) => &mut out[i],
            None => {
                out.push(Pooled {
                    node: r.node.clone(),
                    label: r.label.clone(),
                    exports: r.exports,
                    runs: 0,
                    ioctls: r.ioctls.iter().map(|(n, _)| (n.clone(), vec![])).collect(),
                    sums: vec![],
                    frames: 0,
                    wall_ns: 0,
                    floor: vec![],
                });
                out.last_mut().expect("just pushed")
            }
        };
        p.runs += 1;
        merge(&mut p.ioctls, &r.ioctls);
        merge(&mut p.floor, &r.floor);
        p.sums.extend(r.sums());
        p.frames += r.frames;
        p.wall_ns += r.wall_ns;
    }
    for p in &mut out {
        for (_, v) in p.ioctls.iter_mut().chain(p.floor.iter_mut()) {
            v.sort_unstable();
        }
        p.sums.sort_unstable();
    }
    let nodes: Vec<String> = out.iter().fold(vec![], |mut a, p| {
        if !a.contains(&p.node) {
            a.push(p.node.clone());
        }
        a
    });
    let rank = |p: &Pooled| {
        (
            nodes.iter().position(|n| *n == p.node).unwrap_or(0),
            p.exports,
            ORDER
                .iter()
                .position(|l| *l == p.label)
                .unwrap_or(ORDER.len()),
        )
    };
    out.sort_by_key(rank);
    out
}

/// `x (r)` with r the ratio of `x` to `base` (none without a base).
fn with_ratio(x: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => format!("{x:.1} ({:.2}x)", x / b),
        _ => format!("{x:.1}"),
    }
}

fn table(recs: &[Record]) -> String {
    let (floors, pooled): (Vec<Pooled>, Vec<Pooled>) =
        pool(recs).into_iter().partition(|p| p.label == FLOOR_LABEL);
    // Every ioctl name, in first-seen loop order.
    let mut cols: Vec<String> = Vec::new();
    for p in &pooled {
        for (n, _) in &p.ioctls {
            if !cols.contains(n) {
                cols.push(n.clone());
            }
        }
    }
    let mut s = String::new();
    s.push_str("| node | vb2_resv | exports | frames (runs) |");
    for c in &cols {
        s.push_str(&format!(" {c} p50 (us) | p99 |"));
    }
    s.push_str(" per-frame sum p50 (us) | p99 | frames/s |\n|---|---|---:|---:|");
    for _ in &cols {
        s.push_str("---:|---:|");
    }
    s.push_str("---:|---:|---:|\n");
    let mut verdicts = Vec::new();
    for p in &pooled {
        let base = absent_of(&pooled, &p.node).filter(|b| !std::ptr::eq(*b, p));
        s.push_str(&format!(
            "| {} | {} | {} | {} ({}) |",
            p.node, p.label, p.exports, p.frames, p.runs
        ));
        for c in &cols {
            match p.ioctls.iter().find(|(n, _)| n == c) {
                Some((_, v)) => {
                    let b50 = base.and_then(|b| p50_of(&b.ioctls, c));
                    let (p50, p99) = (p_us(v, 0.5), p_us(v, 0.99));
                    s.push_str(&format!(" {} | {p99:.1} |", with_ratio(p50, b50)));
                    if let Some(b) = b50 {
                        verdicts.push(verdict(p, c, "p50", p50, b, true));
                    }
                }
                None => s.push_str(" - | - |"),
            }
        }
        let (s50, s99) = (p_us(&p.sums, 0.5), p_us(&p.sums, 0.99));
        let bs50 = base.map(|b| p_us(&b.sums, 0.5));
        let f = fps(p.frames, p.wall_ns);
        let bf = base.map(|b| fps(b.frames, b.wall_ns));
        s.push_str(&format!(
            " {} | {s99:.1} | {} |\n",
            with_ratio(s50, bs50),
            with_ratio(f, bf)
        ));
        if let Some(b) = bs50 {
            verdicts.push(verdict(p, "per-frame sum", "p50", s50, b, true));
        }
        if let Some(b) = bf {
            // vivid paces itself (its frame timer and the test pattern it draws): its frame
            // rate is not a CPU-bound loop's, so no target.
            if p.node != "vivid" {
                verdicts.push(verdict(p, "decode loop", "frames/s", f, b, false));
            }
        }
    }
    s.push_str(&format!(
        "\nTargets (issue 17, ratios to `absent` of the same node): each wrapped ioctl's p50 and the per-frame sum's p50 at most {P50_MAX_RATIO}x, frames/s at least {FPS_MIN_RATIO}x on the CPU-bound loops (vim2m, visl).\n\n"
    ));
    for v in verdicts {
        s.push_str(&format!("- {v}\n"));
    }
    s.push_str(&floor_section(&floors, &pooled));
    s
}

/// The floor runs: what attaching one fence costs the kernel itself, and what that leaves of
/// the CAPTURE QBUF target for a mode that arms in QBUF.
fn floor_section(floors: &[Pooled], pooled: &[Pooled]) -> String {
    let mut s = String::new();
    for f in floors {
        let (Some(import), Some(refused)) = (
            p50_of(&f.floor, FLOOR_IMPORT),
            p50_of(&f.floor, FLOOR_REFUSED),
        ) else {
            continue;
        };
        if s.is_empty() {
            s.push_str("\nThe floor (module absent, the same loop, between DQBUF and QBUF of each buffer): DMA_BUF_IOCTL_IMPORT_SYNC_FILE of one signaled fence as WRITE into the dequeued buffer's export (one resv lock, reserve, add, unlock: the kernel's own fence attach, without even the allocation and dma_fence_init a new fence needs), minus a DMA_BUF_IOCTL_SYNC the kernel refuses after its copy-in (the round trip). A mode that publishes a fence in CAPTURE QBUF pays at least that much in it.\n\n");
        }
        let attach = (import - refused).max(0.0);
        let qbuf = |p: &Pooled| p50_of(&p.ioctls, "CAPTURE QBUF");
        let base = absent_of(pooled, &f.node).and_then(qbuf);
        s.push_str(&format!(
            "- {}: {FLOOR_IMPORT} p50 {import:.1} us, {FLOOR_REFUSED} p50 {refused:.1} us: one fence attach {attach:.1} us",
            f.node
        ));
        if let Some(b) = base.filter(|b| *b > 0.0) {
            s.push_str(&format!(
                "; CAPTURE QBUF absent {b:.1} us, so an arming QBUF is at least {:.1} us ({:.2}x)",
                b + attach,
                (b + attach) / b
            ));
            for p in pooled
                .iter()
                .filter(|p| p.node == f.node && matches!(p.label.as_str(), "strict" | "queue"))
            {
                if let Some(q) = qbuf(p) {
                    let ex = if p.exports == 1 {
                        String::new()
                    } else {
                        format!(" ({} exports)", p.exports)
                    };
                    s.push_str(&format!(
                        "; {}{ex} {q:.1} us, {:.1} us above that",
                        p.label,
                        q - b - attach
                    ));
                }
            }
        }
        s.push('\n');
    }
    s
}

/// Whether `x` against the module-absent `base` meets its target, and by how much it misses.
fn verdict(p: &Pooled, what: &str, stat: &str, x: f64, base: f64, at_most: bool) -> String {
    let ex = if p.exports == 1 {
        String::new()
    } else {
        format!(", {} exports", p.exports)
    };
    if !(base > 0.0 && x.is_finite()) {
        return format!(
            "{} {}{ex}: {what} {stat}: no ratio (absent {base:.1}, here {x:.1}): the clock cannot tell",
            p.node, p.label
        );
    }
    let ratio = x / base;
    let (ok, target) = if at_most {
        (ratio <= P50_MAX_RATIO, format!("<= {P50_MAX_RATIO}x"))
    } else {
        (ratio >= FPS_MIN_RATIO, format!(">= {FPS_MIN_RATIO}x"))
    };
    if ok {
        format!(
            "{} {}{ex}: {what} {stat} {ratio:.2}x: met ({target})",
            p.node, p.label
        )
    } else {
        let by = if at_most {
            format!("{:.0}% over", (ratio / P50_MAX_RATIO - 1.0) * 100.0)
        } else {
            format!("{:.1}% under", (1.0 - ratio / FPS_MIN_RATIO) * 100.0)
        };
        format!(
            "{} {}{ex}: {what} {stat} {ratio:.2}x: MISSED ({target}; {by})",
            p.node, p.label
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(node: &str, label: &str, q: u64, d: u64, n: usize, wall_ns: u64) -> Record {
        Record {
            node: node.into(),
            label: label.into(),
            exports: 1,
            ioctls: vec![
                ("CAPTURE DQBUF".into(), vec![d; n]),
                ("CAPTURE QBUF".into(), vec![q; n]),
            ],
            frames: n as u64,
            wall_ns,
            floor: vec![],
        }
    }

    #[test]
    fn floor_runs_leave_the_table_and_bound_the_arming_qbuf() {
        let mut f = rec("vim2m", "floor", 10_000, 5_000, 4, 1);
        f.floor = vec![
            (FLOOR_IMPORT.into(), vec![9_000; 4]),
            (FLOOR_REFUSED.into(), vec![2_000; 4]),
        ];
        let recs = vec![
            rec("vim2m", "absent", 10_000, 5_000, 4, 1),
            f.clone(),
            rec("vim2m", "strict", 20_000, 5_000, 4, 1),
        ];
        let t = table(&recs);
        assert!(!t.contains("| floor |"), "{t}");
        assert!(
            t.contains("one fence attach 7.0 us; CAPTURE QBUF absent 10.0 us, so an arming QBUF is at least 17.0 us (1.70x); strict 20.0 us, 3.0 us above that"),
            "{t}"
        );
        let back: Record = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(p_us(&v, 0.5), 51.0);
        assert_eq!(p_us(&v, 0.99), 99.0);
        assert_eq!(p_us(&[7000], 0.99), 7.0);
        assert!(p_us(&[], 0.5).is_nan());
    }

    #[test]
    fn sums_add_the_ioctls_of_each_frame() {
        let mut r = rec("vim2m", "off", 10_000, 5_000, 3, 1);
        r.ioctls[0].1 = vec![1, 2, 3];
        assert_eq!(r.sums(), vec![10_001, 10_002, 10_003]);
    }

    #[test]
    fn record_round_trips_through_json() {
        let r = rec("vim2m", "queue", 20_000, 5_000, 4, 40_000_000);
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&s).unwrap(), r);
    }

    #[test]
    fn table_pools_runs_orders_rows_and_judges_targets() {
        let recs = vec![
            rec("vim2m", "queue", 30_000, 5_000, 10, 100_000_000),
            rec("vim2m", "absent", 10_000, 5_000, 10, 100_000_000),
            rec("vim2m", "off", 12_000, 5_000, 10, 100_000_000),
            rec("vim2m", "absent", 10_000, 5_000, 10, 100_000_000),
            rec("vivid", "absent", 10_000, 5_000, 10, 1_000_000_000),
            rec("vivid", "off", 10_000, 5_000, 10, 2_000_000_000),
        ];
        let t = table(&recs);
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| vim2m")).collect();
        assert_eq!(rows.len(), 3, "{t}");
        assert!(rows[0].contains("| absent | 1 | 20 (2) |"), "{t}");
        assert!(rows[1].contains("| off |"), "{t}");
        assert!(
            rows[2].contains("| queue |") && rows[2].contains("30.0 (3.00x)"),
            "{t}"
        );
        // QBUF 3x and the sum (35 vs 15 us) 2.33x miss; DQBUF and frames/s are met.
        assert!(
            t.contains("vim2m queue: CAPTURE QBUF p50 3.00x: MISSED (<= 1.5x; 100% over)"),
            "{t}"
        );
        assert!(
            t.contains("vim2m queue: per-frame sum p50 2.33x: MISSED"),
            "{t}"
        );
        assert!(
            t.contains("vim2m queue: CAPTURE DQBUF p50 1.00x: met"),
            "{t}"
        );
        assert!(
            t.contains("vim2m queue: decode loop frames/s 1.00x: met"),
            "{t}"
        );
        assert!(t.contains("vim2m off: CAPTURE QBUF p50 1.20x: met"), "{t}");
        // vivid paces itself: no frame-rate verdict even at half the rate.
        assert!(!t.contains("vivid off: decode loop"), "{t}");
        // A clock too coarse to see the ioctls (a guest on jiffies): no ratio, no verdict.
        let t = table(&[
            rec("visl", "absent", 0, 0, 10, 1),
            rec("visl", "off", 0, 4_000_000, 10, 1),
        ]);
        assert!(t.contains("visl off: CAPTURE QBUF p50: no ratio"), "{t}");
        assert!(!t.contains("NaN"), "{t}");
    }

    #[test]
    fn decode_reports_become_records() {
        let j = r#"{"device":{"driver":"visl"},
            "frames":[{"capture_qbuf_ns":1,"request_queue_ns":2,"capture_dqbuf_ns":3},
                      {"capture_qbuf_ns":1000,"request_queue_ns":2000,"capture_dqbuf_ns":3000}],
            "summary":{"frames":2,"fps":100.0}}"#;
        let r = from_decode(j, "off", 1).unwrap();
        assert_eq!(r.node, "visl");
        assert_eq!(r.sums(), vec![6000]);
        assert_eq!(r.wall_ns, 20_000_000);
        assert_eq!(r.ioctls[1].0, "MEDIA_REQUEST_IOC_QUEUE");
        assert!(from_decode(j, "off", 2).is_err());
        let old = r#"{"device":{"driver":"visl"},"frames":[{"request_queue_us":2},{}],
            "summary":{"frames":2,"fps":1.0}}"#;
        assert!(from_decode(old, "off", 0).is_err());
    }
}
