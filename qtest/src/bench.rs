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
//! - `bench table` (table.rs): pools the records per (node, configuration) and prints one
//!   Markdown table with p50/p99 per ioctl, the per-frame sum, frames/s and the ratios to the
//!   module absent, then the issue-17 targets met or missed.
//!
//! Frames/s is taken from the frame periods (from one CAPTURE DQBUF's return to the next's):
//! the inverse of their mean with the slowest and the fastest [`TRIM`] left out. Under TCG on a
//! shared machine a few frames take milliseconds longer whenever QEMU waits for a host core,
//! and in a plain frames-over-wall-time rate those few decide the ratio (it moved between 0.85x
//! and 1.31x for mode off, which does nothing on that path, in earlier runs). The trimmed mean
//! still counts any cost the module adds to most frames.

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

mod table;

/// The share of frame periods left out at each end for frames/s.
const TRIM: f64 = 0.1;

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
    /// The frame periods (ns, from one CAPTURE DQBUF's return to the next's); empty in records
    /// made before they were kept (frames/s then comes from `frames` and `wall_ns`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    periods: Vec<u64>,
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
            print!("{}", table::table(&recs));
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
        fps_of(&r.periods, r.frames, r.wall_ns)
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
    let mut periods = Vec::with_capacity(frames as usize);
    let mut last_dqbuf = Instant::now();
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
        let now = Instant::now();
        if f > WARMUP {
            periods.push(now.duration_since(last_dqbuf).as_nanos() as u64);
        }
        last_dqbuf = now;
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
        periods,
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
    // Reports made before `dqbuf_at_ns` existed give no periods.
    let at: Option<Vec<u64>> = frames[skip..]
        .iter()
        .map(|f| f["dqbuf_at_ns"].as_u64())
        .collect();
    let periods = at
        .map(|at| at.windows(2).map(|w| w[1].saturating_sub(w[0])).collect())
        .unwrap_or_default();
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
        periods,
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

/// Frames/s: from the frame periods when there are any (their mean without the [`TRIM`]
/// share at each end), else frames over wall time.
fn fps_of(periods: &[u64], frames: u64, wall_ns: u64) -> f64 {
    if periods.is_empty() {
        return frames as f64 / (wall_ns as f64 / 1e9).max(1e-9);
    }
    let mut v = periods.to_vec();
    v.sort_unstable();
    let cut = (v.len() as f64 * TRIM) as usize;
    let kept = &v[cut..v.len() - cut];
    let mean = kept.iter().sum::<u64>() as f64 / kept.len() as f64;
    1e9 / mean.max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn rec(node: &str, label: &str, q: u64, d: u64, n: usize, wall_ns: u64) -> Record {
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
            periods: vec![],
            floor: vec![],
        }
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
    fn frame_rate_from_trimmed_periods() {
        // 20 frames of 1 ms with two of 50 ms (QEMU waiting for a host core): the trimmed mean
        // leaves the two out, frames over wall time does not.
        let mut p = vec![1_000_000u64; 18];
        p.extend([50_000_000, 50_000_000]);
        assert!((fps_of(&p, 20, p.iter().sum()) - 1000.0).abs() < 1e-6);
        assert!(fps_of(&[], 20, p.iter().sum()) < 200.0);
        // A cost on most frames still counts: 2 ms on all but the fastest two.
        let mut q = vec![2_000_000u64; 18];
        q.extend([1_000_000, 1_000_000]);
        assert!((fps_of(&q, 20, 0) - 500.0).abs() < 1e-6);
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
        assert!(r.periods.is_empty(), "no dqbuf_at_ns: no periods");
        let j3 = r#"{"device":{"driver":"visl"},
            "frames":[{"capture_qbuf_ns":1,"request_queue_ns":2,"capture_dqbuf_ns":3,"dqbuf_at_ns":5},
                      {"capture_qbuf_ns":1,"request_queue_ns":2,"capture_dqbuf_ns":3,"dqbuf_at_ns":1000},
                      {"capture_qbuf_ns":1,"request_queue_ns":2,"capture_dqbuf_ns":3,"dqbuf_at_ns":3000}],
            "summary":{"frames":3,"fps":100.0}}"#;
        assert_eq!(from_decode(j3, "off", 1).unwrap().periods, vec![2000]);
        assert!(from_decode(j, "off", 2).is_err());
        let old = r#"{"device":{"driver":"visl"},"frames":[{"request_queue_us":2},{}],
            "summary":{"frames":2,"fps":1.0}}"#;
        assert!(from_decode(old, "off", 0).is_err());
    }
}
