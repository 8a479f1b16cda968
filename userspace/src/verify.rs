//! `vb2-resv verify`: decode a stream and sample every frame's CAPTURE dma-buf through the GPU
//! (EGL dma-buf import, as KWin does), then classify what the GPU saw against the CPU view.
//!
//! Per frame: before CAPTURE QBUF the buffer is filled through its CPU mapping with a sentinel
//! unique to (buffer, queueing); the GPU samples the buffer right after the request is queued
//! (`--sample-at queued`) or right after DQBUF (`--sample-at dqbuf`); the readback is classified
//! ([`crate::classify`]) against the CPU view after DQBUF, the sentinel, zero and older frames.
//! Arms: module mode (`--modes`) x sample point x EGLImage lifetime, each a full run of the
//! stream; `--evidence DIR` writes the table, the JSON reports and the PNG triptychs.
//!
//! `--synthetic N` replaces the decoder by a stand-in that writes made-up frames into dma-heap
//! buffers through the CPU, optionally misbehaving in a chosen way (`--fault`): it proves the GPU
//! path and the classifier end to end where no decoder is (or on a new GPU).

use crate::classify::{Class, Counts};
use crate::decode::{self, CaptureBuffer, DecodeOptions, DecoderArgs, FrameHook, Nv12Layout};
use crate::evidence;
use crate::gpu::{
    self, Gpu, GpuInfo, GpuOptions, Images, ImportInfo, ImportPath, Matrix, Platform,
};
use crate::implicit::ImplicitSync;
use crate::kmod::{self, Mode};
use crate::sampler::{geometry, FrameResult, Sampler};
pub use crate::sampler::{Latch, SampleAt};
use crate::synthetic::{run_synthetic, Fault};
use crate::truth::{FrameMd5, TruthInfo};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The JSON schema name of one arm's report.
pub const SCHEMA: &str = "vb2-resv.verify/1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportArg {
    Kwin,
    External,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImagesArg {
    Cached,
    PerFrame,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlatformArg {
    Surfaceless,
    Gbm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MatrixArg {
    Bt601,
    Bt709,
}

/// `vb2-resv verify`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The H.264 Annex-B stream (not with --synthetic).
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// kwin: R8 + GR88 EGLImages; external: one NV12 EGLImage via samplerExternalOES; both.
    #[arg(long, value_enum, default_value = "kwin")]
    pub import: ImportArg,
    /// When the GPU samples (a comma list runs one arm each).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "dqbuf")]
    pub sample_at: Vec<SampleAt>,
    /// Before the GPU reads: nothing, or poll(POLLIN) on the dma-buf as KWin does; a comma list
    /// runs one arm each.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    pub latch: Vec<Latch>,
    /// EGLImage lifetime: cached per buffer (KWin) or per frame (Weston); a comma list runs one arm each.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cached")]
    pub images: Vec<ImagesArg>,
    /// vb2_resv modes to run the stream under, one arm each (off,dqbuf,queue,strict); the module is
    /// switched through /dev/vb2_resv. Absent: the mode is left as it is.
    #[arg(long, value_delimiter = ',', value_parser = parse_mode)]
    pub modes: Vec<Mode>,
    /// Write the evidence (table.md, JSON reports, PNG triptychs) into this directory.
    #[arg(long)]
    pub evidence: Option<PathBuf>,
    /// Write all arms' reports as one JSON array.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The triptych shows this decode-order frame (default: the first failing one, else frame 0).
    #[arg(long)]
    pub frame: Option<usize>,
    /// EGL platform: Mesa's surfaceless one, or GBM on a render node.
    #[arg(long, value_enum, default_value = "surfaceless")]
    pub platform: PlatformArg,
    /// The render node for --platform gbm (default: the first one).
    #[arg(long)]
    pub render_node: Option<PathBuf>,
    /// Import with this DRM modifier instead of the buffer's (hex), to check what the GPU refuses.
    #[arg(long, value_parser = parse_hex)]
    pub modifier: Option<u64>,
    /// The colour-space hint of the external path's NV12 EGLImage.
    #[arg(long, value_enum, default_value = "bt601")]
    pub matrix: MatrixArg,
    /// Skip the RGB readbacks (raw planes only).
    #[arg(long)]
    pub no_rgb: bool,
    /// Exit non-zero unless every frame of every arm is `correct`, every RGB readback within
    /// tolerance and every CPU view equal to the ground truth (where there is one).
    #[arg(long)]
    pub strict: bool,
    /// Use N frames of a CPU-written stand-in decoder on dma-heap buffers instead of a stream.
    #[arg(long)]
    pub synthetic: Option<usize>,
    /// The stand-in decoder's fault.
    #[arg(long, value_enum, default_value = "none")]
    pub fault: Fault,
    /// The stand-in decoder's frame size, WxH.
    #[arg(long, default_value = "320x240", value_parser = parse_size)]
    pub size: (u32, u32),
    /// The stand-in decoder writes these pictures (raw NV12 of --size, packed, as
    /// `ffmpeg -pix_fmt nv12 -f rawvideo` writes them) instead of made-up ones.
    #[arg(long)]
    pub yuv: Option<PathBuf>,
    /// The ground truth: ffmpeg's framemd5 of the stream (default: NAME.framemd5.txt beside
    /// NAME.h264). Every frame's CPU view after DQBUF is checked against it (`decode_ok`).
    #[arg(long)]
    pub framemd5: Option<PathBuf>,
    /// Measure whether the GPU waits for a dma-buf's fences first: a vgem fence held this long
    /// on a buffer it samples (needs vgem; 0: do not measure).
    #[arg(long, default_value_t = 300)]
    pub implicit_sync_hold_ms: u64,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("unknown mode '{s}' (off, dqbuf, queue, strict)"))
}

fn parse_hex(s: &str) -> Result<u64, String> {
    let t = s.trim_start_matches("0x").trim_start_matches("0X");
    u64::from_str_radix(t, 16).map_err(|e| format!("modifier '{s}': {e}"))
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("size '{s}': want WxH"))?;
    let w: u32 = w.parse().map_err(|e| format!("size '{s}': {e}"))?;
    let h: u32 = h.parse().map_err(|e| format!("size '{s}': {e}"))?;
    if w < 2 || h < 2 || w % 2 == 1 || h % 2 == 1 || w > 8192 || h > 8192 {
        return Err(format!("size '{s}': want even sizes from 2 to 8192"));
    }
    Ok((w, h))
}

struct DecodeHook<'a, 'g>(&'a mut Sampler<'g>);

impl FrameHook for DecodeHook<'_, '_> {
    fn before_qbuf(&mut self, frame: usize, buf: &CaptureBuffer) -> Result<()> {
        self.0.before_qbuf(frame, buf)
    }
    fn queued(&mut self, frame: usize, buf: &CaptureBuffer) -> Result<()> {
        self.0.queued(frame, buf)
    }
    fn dqbuf_done(&mut self, frame: usize, buf: &CaptureBuffer, _error: bool) -> Result<()> {
        self.0.dqbuf_done(frame, buf)
    }
    fn dequeued(
        &mut self,
        frame: usize,
        buf: &CaptureBuffer,
        error: bool,
        cpu: &[u8],
    ) -> Result<()> {
        self.0.dequeued(frame, buf, error, cpu)
    }
}

/// The busy-proof counts of one arm (see [`ArmReport::busy`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct BusyCounts {
    pub busy: usize,
    /// Busy samples whose GPU view was correct (the decoder may simply have written the bytes
    /// before it signaled done: visl draws, then waits out its transaction time).
    pub busy_correct: usize,
    /// Busy samples that were still busy when the read began and done when it ended, and got
    /// the finished picture: the reader was held until the decode ended.
    pub busy_held: usize,
    pub busy_raced: usize,
}

impl BusyCounts {
    fn of(frames: &[FrameResult]) -> BusyCounts {
        let mut c = BusyCounts::default();
        for f in frames.iter().filter(|f| f.sample.busy_before == Some(true)) {
            c.busy += 1;
            if f.paths.iter().all(|p| p.verdict.content == Class::Correct) {
                c.busy_correct += 1;
                if f.sample.busy_after == Some(false) {
                    c.busy_held += 1;
                }
            }
            if f.paths.iter().any(|p| p.verdict.content.is_race()) {
                c.busy_raced += 1;
            }
        }
        c
    }
}

/// One arm's report (`vb2-resv.verify/1`).
#[derive(Serialize)]
pub struct ArmReport {
    pub schema: &'static str,
    pub input: String,
    /// The module mode set for this arm (None: left as it was).
    pub mode: Option<String>,
    pub sample_at: SampleAt,
    pub latch: Latch,
    pub images: Images,
    /// The decoder: its DecodeReport (device, format, per-frame fences), or the synthetic one.
    pub decoder: serde_json::Value,
    pub decoder_driver: String,
    pub gpu: GpuInfo,
    /// Whether this GPU waits for a dma-buf's fences, measured (crate::implicit).
    pub implicit_sync: ImplicitSync,
    pub imports: Vec<ImportInfo>,
    pub layout: Option<Nv12Layout>,
    pub buffers: usize,
    /// EGLImages created in this arm, per import path.
    pub images_created: BTreeMap<String, usize>,
    /// Frame counts per class, per import path.
    pub summary: BTreeMap<String, Counts>,
    /// Frames whose RGB readback was off by more than gpu::RGB_TOLERANCE, per import path.
    pub rgb_off: BTreeMap<String, usize>,
    /// Samples that began while the decoder provably still owned the buffer (QUERYBUF: QUEUED,
    /// not DONE), and of those, how many the GPU read correctly (it got the finished picture:
    /// something made it wait) and how many raced (sentinel or torn), over every import path.
    pub busy: BusyCounts,
    /// The ground truth this arm's frames were checked against (`decode_ok`), or why not.
    pub ground_truth: TruthInfo,
    /// Frames whose CPU view differs from the ground truth (None: no ground truth).
    pub decoder_wrong: Option<usize>,
    pub frames: Vec<FrameResult>,
    /// The triptych files written for this arm.
    pub pngs: Vec<String>,
}

impl ArmReport {
    fn label(&self) -> String {
        format!(
            "{}-{}-{}{}",
            self.mode.as_deref().unwrap_or("unchanged"),
            self.sample_at.name(),
            self.images.name(),
            if self.latch == Latch::Poll {
                "-poll"
            } else {
                ""
            }
        )
    }
}

/// `vb2-resv verify`.
pub fn run(a: &VerifyArgs) -> Result<()> {
    let input_name = match (&a.input, a.synthetic) {
        (Some(_), Some(_)) => bail!("give either INPUT or --synthetic N, not both"),
        (None, None) => bail!("verify needs an H.264 stream (INPUT) or --synthetic N"),
        (Some(p), None) => {
            if !p.is_file() {
                bail!("{}: no such file", p.display());
            }
            p.display().to_string()
        }
        (None, Some(n)) => format!("synthetic:{n}:{:?}", a.fault).to_lowercase(),
    };
    // Checked with or without a stream, so that a bad value fails before any arm runs.
    let decoder_opts = a.decoder.options()?;
    if a.synthetic.is_some() && !a.modes.is_empty() {
        bail!("--modes needs a decoder: the synthetic one is not a V4L2 device");
    }
    if !a.modes.is_empty() {
        kmod::Control::open()?;
    }
    let paths = match a.import {
        ImportArg::Kwin => vec![ImportPath::Kwin],
        ImportArg::External => vec![ImportPath::External],
        ImportArg::Both => vec![ImportPath::Kwin, ImportPath::External],
    };
    let mut gpu = Gpu::open(&GpuOptions {
        platform: match a.platform {
            PlatformArg::Surfaceless => Platform::Surfaceless,
            PlatformArg::Gbm => Platform::Gbm(a.render_node.clone()),
        },
        modifier: a.modifier,
        external_matrix: match a.matrix {
            MatrixArg::Bt601 => Matrix::Bt601,
            MatrixArg::Bt709 => Matrix::Bt709,
        },
    })?;
    let implicit = if a.implicit_sync_hold_ms == 0 {
        ImplicitSync::not_measured("--implicit-sync-hold-ms 0")
    } else {
        crate::implicit::measure(&mut gpu, Duration::from_millis(a.implicit_sync_hold_ms))?
    };
    gpu.info.implicit_sync = implicit.waits;
    gpu.info.implicit_sync_reason = implicit.describe();
    println!(
        "GPU: {} on {} (EGL {} {}; {}), implicit sync: {}",
        gpu.info.gl_renderer,
        gpu.info.platform,
        gpu.info.egl_vendor,
        gpu.info.egl_version,
        gpu.info.gl_version,
        implicit.describe()
    );
    let modes: Vec<Option<Mode>> = if a.modes.is_empty() {
        vec![None]
    } else {
        a.modes.iter().map(|m| Some(*m)).collect()
    };
    let images_list: Vec<Images> = a
        .images
        .iter()
        .map(|i| match i {
            ImagesArg::Cached => Images::Cached,
            ImagesArg::PerFrame => Images::PerFrame,
        })
        .collect();

    if let Some(d) = &a.evidence {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    // The ground truth: ffmpeg's framemd5 (given, or beside the stream), and the display index
    // of every decode-order picture (its line in the framemd5).
    let truth_path = a
        .framemd5
        .clone()
        .or_else(|| a.input.as_deref().and_then(FrameMd5::beside));
    let truth = truth_path.as_deref().map(FrameMd5::load).transpose()?;
    let display_of: Vec<usize> = match &a.input {
        // A stream that does not parse fails in decode, with decode's message.
        Some(p) => std::fs::read(p)
            .ok()
            .and_then(|d| crate::h264::parse(&d).ok())
            .map(|st| st.pictures.iter().map(|p| p.display_index).collect())
            .unwrap_or_default(),
        None => (0..a.synthetic.unwrap_or(0)).collect(),
    };
    // visl runs an idle device's job inside MEDIA_REQUEST_IOC_QUEUE: without --async-queue a
    // sample "right after queueing" is taken after the decode, and would prove nothing.
    if a.input.is_some() && a.sample_at.contains(&SampleAt::Queued) && !a.decoder.async_queue {
        let driver = match &a.decoder.device {
            Some(d) => crate::probe::check_h264_decoder(d).map(|n| n.driver).ok(),
            None => crate::probe::find_h264_decoder()
                .map(|(n, _)| n.driver)
                .ok(),
        };
        if driver.as_deref() == Some("visl") {
            bail!("--sample-at queued on visl needs --async-queue: visl runs the job inside MEDIA_REQUEST_IOC_QUEUE, so without it every queued sample is taken after the decode");
        }
    }
    let mut reports = Vec::new();
    for &mode in &modes {
        for &sample_at in &a.sample_at {
            for &images in &images_list {
                for &latch in &a.latch {
                    gpu.forget_all();
                    let imports = paths
                        .iter()
                        .map(|&p| gpu.check_import(p, images, gpu::DRM_FORMAT_MOD_LINEAR))
                        .collect::<Result<Vec<_>>>()?;
                    let before: HashMap<ImportPath, usize> =
                        paths.iter().map(|&p| (p, gpu.images_created(p))).collect();
                    let mut s = Sampler::new(
                        &mut gpu,
                        paths.clone(),
                        images,
                        sample_at,
                        latch,
                        !a.no_rgb,
                        a.frame,
                    );
                    s.truth = truth.clone();
                    s.display_of = display_of.clone();
                    let (decoder, driver) = match (&a.input, a.synthetic) {
                        (Some(input), _) => {
                            let opts = DecodeOptions {
                                mode,
                                ..decoder_opts.clone()
                            };
                            let r = decode::decode(input, &opts, &mut DecodeHook(&mut s))?;
                            let driver = format!("{} ({})", r.device.driver, r.device.card);
                            (serde_json::to_value(&r)?, driver)
                        }
                        (None, Some(n)) => (
                            run_synthetic(&mut s, n, a.size, a.fault, a.yuv.as_deref())?,
                            "synthetic".to_string(),
                        ),
                        (None, None) => unreachable!("checked above"),
                    };
                    let mut summary = BTreeMap::new();
                    let mut rgb_off = BTreeMap::new();
                    for f in &s.frames {
                        for pv in &f.paths {
                            summary
                                .entry(pv.import.name().to_string())
                                .or_insert_with(Counts::default)
                                .add(pv.verdict.class);
                            let off = pv.rgb.iter().any(|r| r.over_tolerance > 0);
                            *rgb_off.entry(pv.import.name().to_string()).or_insert(0) +=
                                usize::from(off);
                        }
                    }
                    let mut frames = std::mem::take(&mut s.frames);
                    let ground_truth = if driver.starts_with("visl ") {
                        for f in &mut frames {
                            f.decode_ok = None;
                        }
                        TruthInfo {
                            status: "n/a".into(),
                            source: None,
                            reason: Some(
                                "visl draws a test pattern instead of decoding: nothing to compare"
                                    .into(),
                            ),
                        }
                    } else if let Some(t) = &truth {
                        TruthInfo {
                            status: "compared".into(),
                            source: Some(t.path.display().to_string()),
                            reason: None,
                        }
                    } else {
                        TruthInfo {
                            status: "n/a".into(),
                            source: None,
                            reason: Some(if a.input.is_some() {
                                "no framemd5 beside the stream (scripts/make-streams.sh) and no --framemd5".into()
                            } else {
                                "made-up pictures: no --framemd5".into()
                            }),
                        }
                    };
                    let decoder_wrong = (ground_truth.status == "compared")
                        .then(|| frames.iter().filter(|f| f.decode_ok != Some(true)).count());
                    let shots = std::mem::take(&mut s.shots);
                    let layout = s.layout;
                    let buffers = s.buffers.len();
                    drop(s);
                    let mut report = ArmReport {
                        schema: SCHEMA,
                        input: input_name.clone(),
                        mode: mode.map(|m| m.name().to_string()),
                        sample_at,
                        latch,
                        images,
                        decoder,
                        decoder_driver: driver,
                        gpu: gpu.info.clone(),
                        implicit_sync: implicit.clone(),
                        imports,
                        layout,
                        buffers,
                        images_created: paths
                            .iter()
                            .map(|&p| (p.name().to_string(), gpu.images_created(p) - before[&p]))
                            .collect(),
                        summary,
                        rgb_off,
                        busy: BusyCounts::of(&frames),
                        ground_truth,
                        decoder_wrong,
                        frames,
                        pngs: Vec::new(),
                    };
                    if let (Some(dir), Some(l)) = (&a.evidence, layout) {
                        for (p, shot) in &shots {
                            let file = format!("frame-{}-{}.png", report.label(), p.name());
                            let (w, h, img) = evidence::triptych(
                                &shot.cpu,
                                &shot.gpu,
                                geometry(&l),
                                (l.visible_width, l.visible_height),
                                [
                                    &format!("CPU VIEW FRAME {}", shot.frame),
                                    &format!("GPU {}: {}", p.name(), shot.class),
                                    &format!("DIFF\n{}", report.label()),
                                ],
                            );
                            evidence::write_png(&dir.join(&file), w, h, &img)?;
                            report.pngs.push(file);
                        }
                        report.pngs.sort();
                    }
                    if let Some(w) = report.decoder_wrong {
                        println!(
                            "arm {}: {w} of {} frames differ from the ground truth ({})",
                            report.label(),
                            report.frames.len(),
                            report.ground_truth.source.as_deref().unwrap_or("-")
                        );
                    }
                    for (p, c) in &report.summary {
                        println!(
                        "arm {} {p}: {} frames: {}; EGLImages created {} for {} buffers; RGB off in {}",
                        report.label(),
                        c.total(),
                        Class::ALL
                            .iter()
                            .map(|k| format!("{k} {}", c.get(*k)))
                            .collect::<Vec<_>>()
                            .join(", "),
                        report.images_created.get(p).copied().unwrap_or(0),
                        report.buffers,
                        report.rgb_off.get(p).copied().unwrap_or(0),
                    );
                    }
                    reports.push(report);
                }
            }
        }
    }
    gpu.forget_all();

    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
    }
    if let Some(dir) = &a.evidence {
        write_evidence(dir, &reports)?;
        println!("evidence written to {}", dir.display());
    }
    if a.strict {
        let bad: usize = reports
            .iter()
            .flat_map(|r| r.summary.values())
            .map(|c| c.total() - c.get(Class::Correct))
            .sum();
        let rgb: usize = reports.iter().flat_map(|r| r.rgb_off.values()).sum();
        let wrong: usize = reports.iter().filter_map(|r| r.decoder_wrong).sum();
        if bad > 0 || rgb > 0 || wrong > 0 {
            bail!("--strict: {bad} sampled frames not correct, {rgb} RGB readbacks off by more than {}, {wrong} frames differ from the ground truth", gpu::RGB_TOLERANCE);
        }
    }
    Ok(())
}

fn write_evidence(dir: &Path, reports: &[ArmReport]) -> Result<()> {
    let mut rows = Vec::new();
    for r in reports {
        let name = format!("arm-{}.json", r.label());
        std::fs::write(dir.join(&name), serde_json::to_string_pretty(r)?)
            .with_context(|| format!("cannot write {}", dir.join(&name).display()))?;
        for (p, c) in &r.summary {
            rows.push(evidence::Row {
                mode: r.mode.clone().unwrap_or_else(|| "unchanged".into()),
                sample_at: r.sample_at.name().into(),
                latch: if r.latch == Latch::Poll {
                    "poll"
                } else {
                    "none"
                }
                .into(),
                busy: (r.sample_at == SampleAt::Queued).then_some((
                    r.busy.busy,
                    r.busy.busy_held,
                    r.busy.busy_raced,
                )),
                images: r.images.name().into(),
                import: p.clone(),
                counts: c.clone(),
                images_created: r.images_created.get(p).copied().unwrap_or(0),
                buffers: r.buffers,
                rgb_off: r.rgb_off.get(p).copied().unwrap_or(0),
                decoder_wrong: r.decoder_wrong,
                fenced: r.decoder["summary"]["fences_pending_vb2_resv"]
                    .as_u64()
                    .map(|n| n as usize),
            });
        }
    }
    let mut md = String::from("# vb2_resv: what the GPU sampled, per arm\n\n");
    if let Some(r) = reports.first() {
        let g = &r.gpu;
        md.push_str(&format!(
            "- input: `{}`\n- decoder: {}\n- GPU: {} (DRM driver: {}; render node: {}), {} via {}, EGL {} {}\n- GPU waits for dma-buf fences (implicit sync): {}\n- ground truth: {}\n- EGL imports: {}\n",
            r.input,
            r.decoder_driver,
            g.gl_renderer,
            g.drm_driver.as_deref().unwrap_or("none"),
            g.render_node.as_deref().unwrap_or("none"),
            g.gl_version,
            g.platform,
            g.egl_vendor,
            g.egl_version,
            g.implicit_sync_reason,
            match (&r.ground_truth.source, &r.ground_truth.reason) {
                (Some(src), _) => format!("ffmpeg's framemd5 `{src}` (decoder wrong: frames whose CPU view differs)"),
                (None, Some(why)) => format!("n/a: {why}"),
                (None, None) => "n/a".into(),
            },
            r.imports
                .iter()
                .map(|i| format!(
                    "{} = {} (modifier {})",
                    i.path.name(),
                    i.formats.join(" + "),
                    i.modifier.as_deref().unwrap_or("none: implicit linear")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
        if let Some(l) = &r.layout {
            md.push_str(&format!(
                "- CAPTURE: NV12 {}x{} (visible {}x{}), stride {}, chroma at {}, {} bytes\n",
                l.width, l.height, l.visible_width, l.visible_height, l.stride, l.uv_offset, l.size
            ));
        }
    }
    md.push_str("- races (`sentinel`, `torn`) are classified on the `kwin` path (raw R8 + GR88 planes, byte for byte) only: the `external` path goes through the driver's YUV to RGB conversion and back, and the random sentinel is outside the YUV gamut, so a clamping sampler turns an early read into `mismatch`\n");
    md.push_str("- busy at read: samples taken after queueing that began while QUERYBUF showed the buffer QUEUED and not DONE (the decoder provably still owned it); busy, held: of those, the buffer was DONE when the read ended and the GPU got the finished picture (the reader was held until the decode ended); busy, raced: it read `sentinel` or `torn`. A fence works only where busy > 0, busy, held = busy and busy, raced = 0\n");
    md.push('\n');
    md.push_str(&evidence::markdown_table(&rows));
    md.push_str("\nColumns: docs/rfc-evidence.md. Per-frame detail: the arm-*.json files; triptychs: frame-*.png.\n");
    std::fs::write(dir.join("table.md"), md)
        .with_context(|| format!("cannot write {}", dir.join("table.md").display()))?;
    Ok(())
}
