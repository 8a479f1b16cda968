//! `vb2-resv present`: a real compositor in the loop (issue 14). Decodes on the V4L2 stateless
//! decoder ([`crate::decode`]) and presents every frame, in display order, to a Wayland
//! compositor the way mpv's `--vo=dmabuf-wayland` does with ffmpeg's v4l2-request frames
//! ([`client`]); requeues CAPTURE buffers only after wl_buffer.release, LIFO ([`pool`]);
//! captures what the compositor shows after each frame's presentation feedback and classifies
//! it against the CPU view in RGB ([`capture`]).

pub mod capture;
pub mod client;
pub mod pool;

use crate::classify::{self, Class, Counts, Geometry, Verdict};
use crate::decode::{self, CaptureBuffer, DecodeOptions, DecoderArgs, FrameHook, Nv12Layout};
use crate::kmod::Mode;
use anyhow::{anyhow, bail, Context, Result};
use client::{Client, Feedback, Planes};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct PresentArgs {
    /// The H.264 Annex-B elementary stream.
    pub input: PathBuf,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// Set vb2_resv's mode first: off, dqbuf, queue or strict (the module must be loaded).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<Mode>,
    /// How the NV12 buffer is described: `two` planes from the one fd (ffmpeg's descriptor) or
    /// `one` plane.
    #[arg(long, value_enum, default_value = "two")]
    pub planes: Planes,
    /// Put plane 1 at this byte offset instead of the decoder's chroma offset (a deliberately
    /// wrong descriptor).
    #[arg(long)]
    pub chroma_offset: Option<u32>,
    /// Announce this modifier instead of the decoder's (LINEAR).
    #[arg(long, value_parser = parse_u64)]
    pub modifier: Option<u64>,
    /// Requeue CAPTURE buffers as soon as the decoder frees them, without waiting for
    /// wl_buffer.release (what a broken client does; the report counts it).
    #[arg(long)]
    pub ignore_release: bool,
    /// Weston's screenshot client (weston --debug must be running).
    #[arg(long, default_value = "weston-screenshooter")]
    pub screenshooter: PathBuf,
    /// Do not capture (present only).
    #[arg(long)]
    pub no_capture: bool,
    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the capture of the first frame that is not correct (or of frame 0) as a PNG
    /// triptych: CPU view | compositor | difference.
    #[arg(long)]
    pub png: Option<PathBuf>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("unknown mode '{s}' (off, dqbuf, queue, strict)"))
}

fn parse_u64(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("{s}: {e}"))
}

/// One presented frame.
#[derive(Clone, Debug, Serialize)]
pub struct PresentedFrame {
    pub display_position: usize,
    pub decode_index: usize,
    pub buffer: usize,
    /// wp_presentation_feedback: presented or discarded.
    pub feedback: &'static str,
    /// From the commit to the feedback, and the capture's duration.
    pub feedback_us: u64,
    pub capture_us: u64,
    /// The class of the capture (None with --no-capture).
    pub class: Option<Class>,
    /// Largest per-channel RGB difference from the CPU view's conversion.
    pub rgb_max_abs: Option<u8>,
    pub verdict: Option<Verdict>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PresentReport {
    pub schema: &'static str,
    pub compositor: String,
    pub input: String,
    pub mode: Option<String>,
    pub planes: Planes,
    pub layout: Option<Nv12Layout>,
    pub chroma_offset: Option<u32>,
    pub modifier: u64,
    pub rgb_tolerance: u8,
    pub frames: Vec<PresentedFrame>,
    pub classes: Counts,
    pub buffers: pool::PoolStats,
    pub wl_buffers_created: usize,
}

struct Dequeued {
    buffer: usize,
    cpu: Vec<u8>,
    sentinel: Option<Vec<u8>>,
}

struct Presenter<'a> {
    args: &'a PresentArgs,
    client: Client,
    pool: pool::Pool,
    layout: Option<Nv12Layout>,
    /// A dup of each CAPTURE buffer's dma-buf (presented later than its hook call).
    fds: HashMap<usize, File>,
    /// Display order (decode indices) and the next position to present.
    order: Vec<usize>,
    next: usize,
    ready: HashMap<usize, Dequeued>,
    pending_bufs: BTreeSet<usize>,
    sentinels: HashMap<usize, Vec<u8>>,
    queueings: u64,
    previous: VecDeque<(usize, Vec<u8>)>,
    frames: Vec<PresentedFrame>,
    capdir: PathBuf,
    png_done: bool,
    wl_created: BTreeSet<usize>,
}

fn geometry(l: &Nv12Layout) -> Geometry {
    Geometry {
        width: l.visible_width,
        height: l.visible_height,
    }
}

impl Presenter<'_> {
    fn sync_releases(&mut self) {
        for b in std::mem::take(&mut self.client.state.releases) {
            self.pool.released(b);
        }
    }

    fn present_ready(&mut self) -> Result<()> {
        while let Some(&d) = self.order.get(self.next) {
            let Some(f) = self.ready.remove(&d) else {
                return Ok(());
            };
            let l = self.layout.ok_or_else(|| anyhow!("no CAPTURE layout"))?;
            let fd = self
                .fds
                .get(&f.buffer)
                .ok_or_else(|| anyhow!("CAPTURE buffer {} has no dma-buf", f.buffer))?;
            let uv = self.args.chroma_offset.unwrap_or(l.uv_offset);
            let modifier = self.args.modifier.unwrap_or(l.modifier);
            let wb = self.client.buffer(
                f.buffer,
                fd.as_fd(),
                l.visible_width,
                l.visible_height,
                l.stride,
                uv,
                modifier,
                self.args.planes,
            )?;
            self.wl_created.insert(f.buffer);
            let t0 = Instant::now();
            let fb = self
                .client
                .present(self.next, &wb, l.visible_width, l.visible_height)?;
            let feedback_us = t0.elapsed().as_micros() as u64;
            self.pool.attached(f.buffer);
            self.pending_bufs.remove(&f.buffer);
            self.sync_releases();
            let (mut class, mut max_abs, mut verdict, mut capture_us) = (None, None, None, 0);
            if !self.args.no_capture {
                let t1 = Instant::now();
                let (w, h, shot) = capture::shoot(&self.args.screenshooter, &self.capdir)?;
                capture_us = t1.elapsed().as_micros() as u64;
                if (w, h) != (l.visible_width, l.visible_height) {
                    bail!(
                        "the compositor's output is {w}x{h}, the picture {}x{}: start weston with --width={} --height={}",
                        l.visible_width,
                        l.visible_height,
                        l.visible_width,
                        l.visible_height
                    );
                }
                let prev: Vec<(usize, Vec<u8>)> = self.previous.iter().cloned().collect();
                let (v, m) = capture::classify_rgb(
                    &shot,
                    &capture::Candidates {
                        geometry: geometry(&l),
                        cpu: &f.cpu,
                        sentinel: f.sentinel.as_deref(),
                        previous: &prev,
                    },
                )?;
                if let Some(p) = &self.args.png {
                    if !self.png_done && (v.class != Class::Correct || self.next == 0) {
                        let cpu_rgb = crate::gpu::nv12_to_rgb(
                            &f.cpu,
                            geometry(&l),
                            crate::gpu::Matrix::Bt601,
                        );
                        triptych(p, l.visible_width, l.visible_height, &cpu_rgb, &shot)?;
                        self.png_done = v.class != Class::Correct;
                    }
                }
                class = Some(v.class);
                max_abs = Some(m);
                verdict = Some(v);
            }
            self.frames.push(PresentedFrame {
                display_position: self.next,
                decode_index: d,
                buffer: f.buffer,
                feedback: match fb {
                    Feedback::Presented => "presented",
                    Feedback::Discarded => "discarded",
                },
                feedback_us,
                capture_us,
                class,
                rgb_max_abs: max_abs,
                verdict,
            });
            self.previous.push_front((d, f.cpu));
            self.previous.truncate(8);
            self.next += 1;
        }
        Ok(())
    }
}

/// CPU view | compositor | difference (x8), side by side.
fn triptych(path: &std::path::Path, w: u32, h: u32, cpu: &[u8], shot: &[u8]) -> Result<()> {
    let (wu, hu) = (w as usize, h as usize);
    let mut out = vec![0u8; wu * 3 * hu * 3];
    for y in 0..hu {
        for x in 0..wu {
            for k in 0..3 {
                let i = (y * wu + x) * 3 + k;
                let row = y * wu * 9;
                out[row + x * 3 + k] = cpu[i];
                out[row + (wu + x) * 3 + k] = shot[i];
                out[row + (2 * wu + x) * 3 + k] = cpu[i].abs_diff(shot[i]).saturating_mul(8);
            }
        }
    }
    crate::evidence::write_png(path, w * 3, h, &out)
}

impl FrameHook for Presenter<'_> {
    fn before_qbuf(&mut self, frame: usize, buf: &CaptureBuffer) -> Result<()> {
        let l = buf.layout;
        self.layout = Some(l);
        let i = buf.index as usize;
        if let std::collections::hash_map::Entry::Vacant(e) = self.fds.entry(i) {
            e.insert(
                buf.dmabuf()
                    .try_clone()
                    .context("dup of a CAPTURE dma-buf")?,
            );
        }
        // The sentinel over the whole buffer, unique per buffer and queueing.
        if self.pool.is_held(i) {
            // The broken variant writes into a buffer the compositor still shows: do not add
            // our own writes to what it may capture.
            self.sentinels.remove(&frame);
            return Ok(());
        }
        self.queueings += 1;
        let q = self.queueings;
        buf.write_cpu(|b| classify::fill_sentinel(b, buf.index, q))?;
        let raw = classify::sentinel(buf.index, q, l.size as usize);
        if let Some(p) = classify::pack_nv12(&raw, geometry(&l), l.stride, l.uv_offset) {
            self.sentinels.insert(frame, p);
        }
        Ok(())
    }

    fn dequeued(
        &mut self,
        frame: usize,
        buf: &CaptureBuffer,
        _error: bool,
        cpu: &[u8],
    ) -> Result<()> {
        let l = buf.layout;
        let packed = classify::pack_nv12(cpu, geometry(&l), l.stride, l.uv_offset)
            .ok_or_else(|| anyhow!("CAPTURE buffer {} is too short for its layout", buf.index))?;
        let b = buf.index as usize;
        self.pending_bufs.insert(b);
        self.pool.pending(b);
        self.ready.insert(
            frame,
            Dequeued {
                buffer: b,
                cpu: packed,
                sentinel: self.sentinels.remove(&frame),
            },
        );
        self.present_ready()
    }

    fn choose_capture(
        &mut self,
        _frame: usize,
        free: &[usize],
        idle: bool,
    ) -> Result<Option<usize>> {
        let t0 = Instant::now();
        loop {
            self.client.dispatch(Duration::ZERO)?;
            self.sync_releases();
            let pending = self.pending_bufs.clone();
            if let Some(b) = self.pool.choose(free, |b| !pending.contains(&b)) {
                return Ok(Some(b));
            }
            if !idle {
                return Ok(None);
            }
            if t0.elapsed() > Duration::from_secs(10) {
                bail!("the compositor released none of the CAPTURE buffers {free:?} within 10 s");
            }
            self.client.dispatch(Duration::from_millis(100))?;
        }
    }
}

pub fn run(a: &PresentArgs) -> Result<()> {
    // The compositor first: no compositor, no dma-buf protocol or no NV12 is one line, before
    // any device is touched.
    let modifier = a.modifier.unwrap_or(0);
    let client = Client::connect(modifier)?;
    let data =
        std::fs::read(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let stream = crate::h264::parse(&data).map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
    let n = a
        .decoder
        .frames
        .unwrap_or(usize::MAX)
        .min(stream.pictures.len());
    let order: Vec<usize> = stream
        .output_order
        .iter()
        .copied()
        .filter(|&d| d < n)
        .collect();
    let capdir = std::env::temp_dir().join(format!("vb2r-present-{}", std::process::id()));
    std::fs::create_dir_all(&capdir).with_context(|| format!("{}", capdir.display()))?;
    let mut p = Presenter {
        args: a,
        client,
        pool: pool::Pool::new(a.ignore_release),
        layout: None,
        fds: HashMap::new(),
        order,
        next: 0,
        ready: HashMap::new(),
        pending_bufs: BTreeSet::new(),
        sentinels: HashMap::new(),
        queueings: 0,
        previous: VecDeque::new(),
        frames: Vec::new(),
        capdir: capdir.clone(),
        png_done: false,
        wl_created: BTreeSet::new(),
    };
    let opts = DecodeOptions {
        mode: a.mode,
        ..a.decoder.options()?
    };
    let r = decode::decode(&a.input, &opts, &mut p);
    let fin = p.client.finish();
    p.sync_releases();
    std::fs::remove_dir_all(&capdir).ok();
    let dec = r?;
    fin?;
    let mut classes = Counts::default();
    for f in &p.frames {
        if let Some(c) = f.class {
            classes.add(c);
        }
    }
    let report = PresentReport {
        schema: "vb2-resv.present/1",
        compositor: p.client.display.clone(),
        input: a.input.display().to_string(),
        mode: a.mode.map(|m| format!("{m:?}").to_lowercase()),
        planes: a.planes,
        layout: p.layout,
        chroma_offset: a.chroma_offset,
        modifier,
        rgb_tolerance: capture::TOLERANCE,
        frames: p.frames.clone(),
        classes,
        buffers: p.pool.stats.clone(),
        wl_buffers_created: p.wl_created.len(),
    };
    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
    }
    let l = report.layout;
    println!(
        "present: {} frames of {} ({} decoded) to {} (zwp_linux_dmabuf_v1, NV12 {}, {} plane{} from one fd, stride {}, chroma at {}, modifier {:#x})",
        report.frames.len(),
        report.input,
        dec.summary.frames,
        report.compositor,
        l.map(|l| format!("{}x{} in {}x{}", l.visible_width, l.visible_height, l.width, l.height))
            .unwrap_or_default(),
        if a.planes == Planes::Two { 2 } else { 1 },
        if a.planes == Planes::Two { "s" } else { "" },
        l.map(|l| l.stride).unwrap_or(0),
        a.chroma_offset.or(l.map(|l| l.uv_offset)).unwrap_or(0),
        modifier
    );
    let fb_presented = report
        .frames
        .iter()
        .filter(|f| f.feedback == "presented")
        .count();
    println!(
        "feedback: {fb_presented} presented, {} discarded",
        report.frames.len() - fb_presented
    );
    let s = &report.buffers;
    println!(
        "buffers: {} wl_buffers for {} CAPTURE buffers used; presented {}, released {}, recaptured {}, requeued while held {}, LIFO violations {}",
        report.wl_buffers_created,
        p.fds.len(),
        s.presented,
        s.released,
        s.recaptured,
        s.requeued_while_held,
        s.lifo_violations
    );
    let max_abs = report.frames.iter().filter_map(|f| f.rgb_max_abs).max();
    if !a.no_capture {
        let cls: Vec<String> = Class::ALL
            .iter()
            .filter(|c| report.classes.get(**c) > 0)
            .map(|c| format!("{} {}", c.name(), report.classes.get(*c)))
            .collect();
        println!(
            "captured: {} frames; {}; RGB max |diff| from the CPU view {} (tolerance {})",
            report.frames.len(),
            cls.join(", "),
            max_abs.unwrap_or(0),
            capture::TOLERANCE
        );
        for f in report
            .frames
            .iter()
            .filter(|f| f.class != Some(Class::Correct))
            .take(5)
        {
            println!(
                "  frame {} (decode {}, buffer {}): {} (RGB max |diff| {}{})",
                f.display_position,
                f.decode_index,
                f.buffer,
                f.class.map(|c| c.name()).unwrap_or("-"),
                f.rgb_max_abs.unwrap_or(0),
                f.verdict
                    .as_ref()
                    .map(|v| format!(", first rows {}", v.first_rows.join(" ")))
                    .unwrap_or_default()
            );
        }
    }
    let bad = report.classes.total() - report.classes.get(Class::Correct);
    if bad > 0 || s.requeued_while_held > 0 || s.lifo_violations > 0 {
        bail!(
            "{bad} of {} captured frames not correct, {} requeued while held, {} LIFO violations",
            report.frames.len(),
            s.requeued_while_held,
            s.lifo_violations
        );
    }
    Ok(())
}
