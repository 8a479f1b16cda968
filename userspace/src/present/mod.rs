//! `vb2-resv present`: a real compositor in the loop (issue 14). Decodes on the V4L2 stateless
//! decoder ([`crate::decode`]) and presents every frame, in display order, to a Wayland
//! compositor the way mpv's `--vo=dmabuf-wayland` does with ffmpeg's v4l2-request frames
//! ([`client`]); requeues CAPTURE buffers only after wl_buffer.release, LIFO ([`pool`]);
//! captures what the compositor shows after each frame's presentation feedback and classifies
//! it against the CPU view in RGB ([`capture`]); checks the buffer hand-over from the events
//! as they happened ([`order`]); names the compositor ([`compositor`]) and writes the evidence
//! ([`evidence`]).

pub mod capture;
pub mod client;
pub mod compositor;
pub mod evidence;
pub mod order;
use crate::pipeline::pool;

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
    /// Requeue the least recently released buffer first (FIFO instead of ffmpeg's LIFO: a
    /// broken variant; the report counts it).
    #[arg(long)]
    pub fifo: bool,
    /// Keep N decoded frames queued ahead of the display, as a player's frame queue does (mpv
    /// keeps a few): a frame is presented once N more have been dequeued, sooner when the
    /// decoder runs out of buffers or the stream ends. The compositor then holds buffers the
    /// decoder no longer references: the case where waiting for wl_buffer.release matters.
    #[arg(long, default_value_t = 0)]
    pub queue_ahead: usize,
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
    /// Write the evidence into this directory: present-LABEL.json (the report), the triptych
    /// present-LABEL.png, and present.md, the table of every present run in the directory
    /// (docs/rfc-evidence.md).
    #[arg(long)]
    pub evidence: Option<PathBuf>,
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
    /// The Wayland socket.
    pub compositor: String,
    /// The process behind it and its version.
    pub compositor_process: compositor::Compositor,
    pub decoder: String,
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
    pub queue_ahead: usize,
    /// Commits, releases and QBUFs in the order they happened, and their replay.
    pub events: Vec<order::Event>,
    pub order: order::OrderCheck,
    /// The evidence table's row for this run.
    pub row: evidence::EvidenceRow,
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
    /// The last frames presented (decode index, RGB of the CPU view), the most recent first.
    previous: VecDeque<(usize, Vec<u8>)>,
    /// An all-zero picture's RGB (what a green frame is).
    zero_rgb: Vec<u8>,
    frames: Vec<PresentedFrame>,
    capdir: PathBuf,
    /// The triptych (RGB8 width, height, pixels) of the first frame that is not correct, else
    /// of frame 0; final once a frame that is not correct has been drawn.
    triptych: Option<(u32, u32, Vec<u8>)>,
    triptych_final: bool,
    wl_created: BTreeSet<usize>,
    events: Vec<order::Event>,
    compositor: compositor::Compositor,
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
            self.events.push(order::Event::Release { buffer: b });
        }
    }

    /// Presents the frames whose display turn has come, keeping `--queue-ahead` decoded frames
    /// queued unless `drain`.
    fn present_ready(&mut self, drain: bool) -> Result<()> {
        while drain || self.ready.len() > self.args.queue_ahead {
            if !self.present_next()? {
                break;
            }
        }
        Ok(())
    }

    /// Presents the next frame in display order if it has been decoded; false if not.
    fn present_next(&mut self) -> Result<bool> {
        {
            let Some(&d) = self.order.get(self.next) else {
                return Ok(false);
            };
            let Some(f) = self.ready.remove(&d) else {
                return Ok(false);
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
            self.sync_releases();
            let t0 = Instant::now();
            let fb = self
                .client
                .present(self.next, &wb, l.visible_width, l.visible_height)?;
            let feedback_us = t0.elapsed().as_micros() as u64;
            self.pool.attached(f.buffer);
            self.events.push(order::Event::Attach {
                buffer: f.buffer,
                frame: self.next,
            });
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
                // Each picture is converted to RGB once (the previous ones are kept in RGB).
                let g = geometry(&l);
                let to_rgb = |p: &[u8]| crate::gpu::nv12_to_rgb(p, g, crate::gpu::Matrix::Bt601);
                let cpu_rgb = to_rgb(&f.cpu);
                let sentinel_rgb = f.sentinel.as_deref().map(to_rgb);
                if self.zero_rgb.len() != cpu_rgb.len() {
                    self.zero_rgb = to_rgb(&vec![0u8; g.len()]);
                }
                let (v, m) = capture::classify_rgb(
                    &shot,
                    &capture::Candidates {
                        geometry: g,
                        cpu: &cpu_rgb,
                        sentinel: sentinel_rgb.as_deref(),
                        zero: &self.zero_rgb,
                        previous: self
                            .previous
                            .iter()
                            .map(|(d, p)| (*d, p.as_slice()))
                            .collect(),
                    },
                )?;
                if !self.triptych_final && (v.class != Class::Correct || self.next == 0) {
                    self.triptych = Some(crate::evidence::triptych_rgb(
                        &cpu_rgb,
                        &shot,
                        (l.visible_width, l.visible_height),
                        capture::TOLERANCE,
                        [
                            &format!("CPU VIEW FRAME {}", self.next),
                            &format!("{}: {}", self.compositor.version, v.class),
                            &format!("DIFF, TOLERANCE {}", capture::TOLERANCE),
                        ],
                    ));
                    self.triptych_final = v.class != Class::Correct;
                }
                class = Some(v.class);
                max_abs = Some(m);
                verdict = Some(v);
                self.previous.push_front((d, cpu_rgb));
                self.previous.truncate(8);
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
            self.next += 1;
        }
        Ok(true)
    }
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
        let sentinel = crate::sampler::write_sentinel(buf, self.queueings)?;
        self.sentinels.insert(frame, sentinel);
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
        self.present_ready(false)
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
                self.events.push(order::Event::Qbuf {
                    buffer: b,
                    free: free
                        .iter()
                        .copied()
                        .filter(|b| !pending.contains(b))
                        .collect(),
                });
                return Ok(Some(b));
            }
            if !idle {
                return Ok(None);
            }
            // The decoder has nothing in flight and no buffer: the frame queue gives up its
            // next frame (a player shows it rather than stall its decoder).
            if self.present_next()? {
                continue;
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
    let compositor = client.compositor();
    let data =
        std::fs::read(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let stream = crate::h264::parse(&data).map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
    let order = stream.output_order_upto(a.decoder.frames);
    let capdir = std::env::temp_dir().join(format!("vb2r-present-{}", std::process::id()));
    std::fs::create_dir_all(&capdir).with_context(|| format!("{}", capdir.display()))?;
    let mut p = Presenter {
        args: a,
        client,
        pool: if a.fifo {
            pool::Pool::new(a.ignore_release).fifo()
        } else {
            pool::Pool::new(a.ignore_release)
        },
        layout: None,
        fds: HashMap::new(),
        order,
        next: 0,
        ready: HashMap::new(),
        pending_bufs: BTreeSet::new(),
        sentinels: HashMap::new(),
        queueings: 0,
        previous: VecDeque::new(),
        zero_rgb: Vec::new(),
        frames: Vec::new(),
        capdir: capdir.clone(),
        triptych: None,
        triptych_final: false,
        wl_created: BTreeSet::new(),
        events: Vec::new(),
        compositor,
    };
    let opts = DecodeOptions {
        mode: a.mode,
        ..a.decoder.options()?
    };
    // The frames still queued for display when the stream ends are shown too.
    let r = decode::decode(&a.input, &opts, &mut p).and_then(|d| p.present_ready(true).map(|_| d));
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
    let checked = order::check(&p.events);
    let mode_name = a.mode.map(|m| format!("{m:?}").to_lowercase());
    let row = evidence_row(a, &p, &checked, mode_name.clone(), &dec);
    let report = PresentReport {
        schema: "vb2-resv.present/1",
        compositor: p.client.display.clone(),
        compositor_process: p.compositor.clone(),
        decoder: dec.device.driver.clone(),
        input: a.input.display().to_string(),
        mode: mode_name,
        planes: a.planes,
        layout: p.layout,
        chroma_offset: a.chroma_offset,
        modifier,
        rgb_tolerance: capture::TOLERANCE,
        frames: p.frames.clone(),
        classes,
        buffers: p.pool.stats.clone(),
        wl_buffers_created: p.wl_created.len(),
        queue_ahead: a.queue_ahead,
        events: p.events.clone(),
        order: checked.clone(),
        row,
    };
    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
    }
    if let (Some(png), Some((w, h, img))) = (&a.png, &p.triptych) {
        crate::evidence::write_png(png, *w, *h, img)?;
    }
    let l = report.layout;
    println!(
        "present: {} frames of {} ({} decoded) to {} at {} (zwp_linux_dmabuf_v1, NV12 {}, {} plane{} from one fd, stride {}, chroma at {}, modifier {:#x})",
        report.frames.len(),
        report.input,
        dec.summary.frames,
        report.compositor_process.version,
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
    let o = &report.order;
    println!(
        "order: {} commits, {} releases, {} QBUFs replayed as they happened{}: recaptured {}, requeued while held {}, LIFO violations {}; QBUFs where the decoder could reuse a buffer the compositor held {}, with 2+ released buffers to choose from {}",
        o.presented,
        o.released,
        o.qbufs,
        if a.queue_ahead > 0 {
            format!(" ({} frames queued ahead)", a.queue_ahead)
        } else {
            String::new()
        },
        o.recaptured,
        o.requeued_while_held,
        o.lifo_violations,
        o.held_reusable,
        o.lifo_choices
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
    if let Some(dir) = &a.evidence {
        evidence::write(dir, &report.row, &report, p.triptych.as_ref())?;
        println!(
            "evidence: {} and {}",
            dir.join(format!("present-{}.json", report.row.label))
                .display(),
            dir.join("present.md").display()
        );
    }
    if (o.presented, o.released, o.recaptured) != (s.presented, s.released, s.recaptured) {
        bail!(
            "the pool counted presented {}, released {}, recaptured {}; the events say {}, {}, {}",
            s.presented,
            s.released,
            s.recaptured,
            o.presented,
            o.released,
            o.recaptured
        );
    }
    let bad = report.classes.total() - report.classes.get(Class::Correct);
    let held = s.requeued_while_held.max(o.requeued_while_held);
    let lifo = s.lifo_violations.max(o.lifo_violations);
    if bad > 0 || held > 0 || lifo > 0 {
        bail!(
            "{bad} of {} captured frames not correct, {held} requeued while held, {lifo} LIFO violations",
            report.frames.len(),
        );
    }
    Ok(())
}

/// The evidence table's row of this run (and the label its files are named by).
fn evidence_row(
    a: &PresentArgs,
    p: &Presenter<'_>,
    checked: &order::OrderCheck,
    mode: Option<String>,
    dec: &crate::report::DecodeReport,
) -> evidence::EvidenceRow {
    let l = p.layout;
    let uv = a.chroma_offset.or(l.map(|l| l.uv_offset)).unwrap_or(0);
    let size = l
        .map(|l| format!("{}x{}", l.visible_width, l.visible_height))
        .unwrap_or_else(|| "0x0".into());
    let mut label = format!("{}-{size}", mode.as_deref().unwrap_or("unchanged"));
    if a.planes == Planes::One {
        label.push_str("-one-plane");
    }
    if let Some(c) = a.chroma_offset {
        label.push_str(&format!("-chroma-{c}"));
    }
    if a.ignore_release {
        label.push_str("-ignore-release");
    }
    if a.fifo {
        label.push_str("-fifo");
    }
    let mut classes = std::collections::BTreeMap::new();
    let mut rgb_off = 0;
    for f in &p.frames {
        if let Some(c) = f.class {
            *classes.entry(c.name().to_string()).or_insert(0) += 1;
        }
        rgb_off += usize::from(f.rgb_max_abs.is_some_and(|m| m > capture::TOLERANCE));
    }
    evidence::EvidenceRow {
        picture: format!(
            "{} in {}, {} plane{}, chroma at {uv}{}",
            size,
            l.map(|l| format!("{}x{}", l.width, l.height))
                .unwrap_or_default(),
            if a.planes == Planes::Two { 2 } else { 1 },
            if a.planes == Planes::Two { "s" } else { "" },
            if a.chroma_offset.is_some() {
                " (deliberately wrong)"
            } else {
                ""
            },
        ),
        triptych: p.triptych.as_ref().map(|_| format!("present-{label}.png")),
        label,
        mode,
        compositor: p.compositor.version.clone(),
        decoder: format!("{} ({})", dec.device.driver, dec.device.card),
        hand_over: format!(
            "{} commits, {} releases, {} QBUFs, {} requeued while held, {} LIFO violations",
            checked.presented,
            checked.released,
            checked.qbufs,
            checked.requeued_while_held,
            checked.lifo_violations
        ),
        classes,
        wl_buffers: p.wl_created.len(),
        capture_buffers: p.fds.len(),
        rgb_off,
        fenced: dec.summary.fences_pending_vb2_resv,
    }
}
