//! `vb2-resv verify`: decode a stream and sample every frame's CAPTURE dma-buf through the GPU
//! (EGL dma-buf import, as KWin does), then classify what the GPU saw against the CPU view.
//!
//! Per frame: before CAPTURE QBUF the buffer is filled through its CPU mapping with a sentinel
//! unique to (buffer, queueing); the GPU samples the buffer right after the request is queued
//! (`--sample-at queued`) or right after DQBUF (`--sample-at dqbuf`); the readback is classified
//! ([`crate::classify`]) against the CPU view after DQBUF, the sentinel, zero and older frames.
//! Arms: module mode (`--modes`) x `wait_readers` (`--wait-readers`) x pipeline (`--pipeline`:
//! this direct loop, or mpv + KWin, [`crate::pipeline`]) x sample point x EGLImage lifetime x
//! consumer wait (`--consumer-wait`, [`crate::consumer_wait`]), each a full run of the stream
//! ([`crate::arm`]); each arm ends with its verdict line ([`crate::verdict`]); `--evidence DIR`
//! writes the table, the JSON reports and the PNG triptychs.
//!
//! `--synthetic N` replaces the decoder by a stand-in that writes made-up frames into dma-heap
//! buffers through the CPU, optionally misbehaving in a chosen way (`--fault`): it proves the GPU
//! path and the classifier end to end where no decoder is (or on a new GPU).

use crate::arm::{ArmReport, BusyCounts, SCHEMA};
use crate::classify::{Class, Counts};
pub use crate::consumer_wait::ConsumerWait;
use crate::decode::{self, CaptureBuffer, DecodeOptions, DecoderArgs, FrameHook, Nv12Layout};
use crate::evidence;
use crate::gpu::{self, Gpu, GpuOptions, Images, ImportPath, Matrix, Platform};
use crate::implicit::ImplicitSync;
use crate::kmod::{self, Mode, WaitReadersGuard};
pub use crate::pipeline::Pipeline;
use crate::pipeline::{self, MpvKwinArgs, PipelineStats};
pub use crate::sampler::SampleAt;
use crate::sampler::{geometry, FrameResult, Sampler, Shot};
use crate::synthetic::{run_synthetic, Fault};
use crate::truth::{FrameMd5, TruthInfo};
use crate::verdict::ArmVerdict;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

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
    /// What the consumer waits for before its GPU read: none (Weston, wlroots), poll (KWin,
    /// Mutter), sync-file, explicit (the module's sync_file); a comma list runs one arm each.
    #[arg(
        long,
        alias = "latch",
        value_enum,
        value_delimiter = ',',
        default_value = "none"
    )]
    pub consumer_wait: Vec<ConsumerWait>,
    /// How frames reach the GPU: direct (sampled once, at --sample-at) or mpv-kwin (ffmpeg's LIFO
    /// pool, KWin's wait, cached images, GPU read in flight, early release); a comma list runs one
    /// arm each.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "direct")]
    pub pipeline: Vec<Pipeline>,
    /// The module's wait_readers in each arm (on, off; a comma list runs one arm each).
    /// Absent: left as it is.
    #[arg(long, value_delimiter = ',', value_parser = parse_on_off)]
    pub wait_readers: Vec<bool>,
    /// How long the mpv-kwin compositor's GPU read stays in flight (ms).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=2000))]
    pub gpu_read_ms: u64,
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
    /// The stand-in decoder's buffer size (sizeimage), when a decoder appends data after the
    /// picture (hantro at 1920x1088: 3655712); default: the NV12 picture's size.
    #[arg(long)]
    pub sizeimage: Option<u32>,
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

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "1" | "yes" => Ok(true),
        "off" | "0" | "no" => Ok(false),
        _ => Err(format!("'{s}': want on or off")),
    }
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

/// One arm before it runs.
struct ArmSpec {
    mode: Option<Mode>,
    wait_readers: Option<bool>,
    pipeline: Pipeline,
    sample_at: SampleAt,
    images: Images,
    wait: ConsumerWait,
}

/// The arms, in the order they run: mode x wait_readers x pipeline x (direct: sample point) x
/// EGLImage lifetime x consumer wait. The mpv-kwin pipeline samples after DQBUF by design.
fn arm_specs(a: &VerifyArgs, modes: &[Option<Mode>], images_list: &[Images]) -> Vec<ArmSpec> {
    let wrs: Vec<Option<bool>> = if a.wait_readers.is_empty() {
        vec![None]
    } else {
        a.wait_readers.iter().map(|w| Some(*w)).collect()
    };
    let mut v = Vec::new();
    for &mode in modes {
        for &wait_readers in &wrs {
            for &pipeline in &a.pipeline {
                let points: &[SampleAt] = match pipeline {
                    Pipeline::Direct => &a.sample_at,
                    Pipeline::MpvKwin => &[SampleAt::Dqbuf],
                };
                for &sample_at in points {
                    for &images in images_list {
                        for &wait in &a.consumer_wait {
                            v.push(ArmSpec {
                                mode,
                                wait_readers,
                                pipeline,
                                sample_at,
                                images,
                                wait,
                            });
                        }
                    }
                }
            }
        }
    }
    v
}

/// What one arm produced, whichever pipeline ran it.
struct ArmRun {
    decoder: serde_json::Value,
    driver: String,
    frames: Vec<FrameResult>,
    shots: Vec<(ImportPath, Shot)>,
    layout: Option<Nv12Layout>,
    buffers: usize,
    images_created: BTreeMap<String, usize>,
    stats: Option<PipelineStats>,
}

fn gpu_options(a: &VerifyArgs) -> GpuOptions {
    GpuOptions {
        platform: match a.platform {
            PlatformArg::Surfaceless => Platform::Surfaceless,
            PlatformArg::Gbm => Platform::Gbm(a.render_node.clone()),
        },
        modifier: a.modifier,
        external_matrix: match a.matrix {
            MatrixArg::Bt601 => Matrix::Bt601,
            MatrixArg::Bt709 => Matrix::Bt709,
        },
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
    if !a.wait_readers.is_empty() {
        if a.synthetic.is_some() {
            bail!("--wait-readers needs a decoder: the synthetic one is not a V4L2 device");
        }
        kmod::wait_readers()?.ok_or_else(|| {
            anyhow::anyhow!("--wait-readers needs the vb2_resv module, which is not loaded")
        })?;
    }
    if a.synthetic.is_some() && a.pipeline.contains(&Pipeline::MpvKwin) {
        bail!("--pipeline mpv-kwin needs a stream and a decoder, not --synthetic");
    }
    if a.consumer_wait.contains(&ConsumerWait::Explicit) && a.synthetic.is_some() {
        bail!(
            "--consumer-wait explicit needs a decoder the module is attached to, not --synthetic"
        );
    }
    if a.consumer_wait.contains(&ConsumerWait::Explicit) {
        kmod::Control::open()
            .context("--consumer-wait explicit asks the module for its sync_file")?;
    }
    let paths = match a.import {
        ImportArg::Kwin => vec![ImportPath::Kwin],
        ImportArg::External => vec![ImportPath::External],
        ImportArg::Both => vec![ImportPath::Kwin, ImportPath::External],
    };
    let gpu_opts = gpu_options(a);
    let mut gpu = Gpu::open(&gpu_opts)?;
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
    let early =
        a.sample_at.contains(&SampleAt::Queued) || a.sample_at.contains(&SampleAt::Committed);
    if a.sample_at.contains(&SampleAt::Committed) && a.decoder.queue_after_sample.is_some() {
        bail!("--sample-at committed waits for the driver to take the request; --queue-after-sample holds it back until the sample: use one of them");
    }
    if a.input.is_some() && a.sample_at.contains(&SampleAt::Committed) && !a.decoder.async_queue {
        bail!("--sample-at committed needs --async-queue (it waits for the queue thread's MEDIA_REQUEST_IOC_QUEUE)");
    }
    if a.input.is_some() && early && !a.decoder.async_queue {
        let driver = match &a.decoder.device {
            Some(d) => crate::probe::check_h264_decoder(d).map(|n| n.driver).ok(),
            None => crate::probe::find_h264_decoder()
                .map(|(n, _)| n.driver)
                .ok(),
        };
        if driver.as_deref() == Some("visl") {
            bail!("--sample-at queued/committed on visl needs --async-queue: visl runs the job inside MEDIA_REQUEST_IOC_QUEUE, so without it every queued sample is taken after the decode");
        }
    }
    let mut reports = Vec::new();
    for spec in arm_specs(a, &modes, &images_list) {
        // Module-wide, for this arm only: set back when the guard drops.
        let _wr = WaitReadersGuard::set(spec.wait_readers)?;
        gpu.forget_all();
        let imports = paths
            .iter()
            .map(|&p| gpu.check_import(p, spec.images, gpu::DRM_FORMAT_MOD_LINEAR))
            .collect::<Result<Vec<_>>>()?;
        let before: HashMap<ImportPath, usize> =
            paths.iter().map(|&p| (p, gpu.images_created(p))).collect();
        let mut arm = match (spec.pipeline, &a.input, a.synthetic) {
            (Pipeline::MpvKwin, Some(input), _) => {
                let run = pipeline::run_mpv_kwin(MpvKwinArgs {
                    input,
                    decode: DecodeOptions {
                        mode: spec.mode,
                        ..decoder_opts.clone()
                    },
                    gpu: gpu_opts.clone(),
                    wait: spec.wait,
                    images: spec.images,
                    gpu_read: Duration::from_millis(a.gpu_read_ms),
                    truth: truth.clone(),
                    display_of: display_of.clone(),
                    chosen: a.frame,
                })?;
                let driver = format!(
                    "{} ({})",
                    run.decoder.device.driver, run.decoder.device.card
                );
                ArmRun {
                    decoder: serde_json::to_value(&run.decoder)?,
                    driver,
                    frames: run.frames,
                    shots: run
                        .shots
                        .into_iter()
                        .map(|s| (ImportPath::Kwin, s))
                        .collect(),
                    layout: run.layout,
                    buffers: run.buffers,
                    images_created: BTreeMap::from([(
                        ImportPath::Kwin.name().to_string(),
                        run.images_created,
                    )]),
                    stats: Some(run.stats),
                }
            }
            (Pipeline::MpvKwin, None, _) => {
                bail!("--pipeline mpv-kwin needs a stream and a decoder, not --synthetic")
            }
            (Pipeline::Direct, _, _) => {
                let mut s = Sampler::new(
                    &mut gpu,
                    paths.clone(),
                    spec.images,
                    spec.sample_at,
                    spec.wait,
                    !a.no_rgb,
                    a.frame,
                );
                s.truth = truth.clone();
                s.display_of = display_of.clone();
                let (decoder, driver) = match (&a.input, a.synthetic) {
                    (Some(input), _) => {
                        let opts = DecodeOptions {
                            mode: spec.mode,
                            wait_committed: spec.sample_at == SampleAt::Committed,
                            ..decoder_opts.clone()
                        };
                        let r = decode::decode(input, &opts, &mut DecodeHook(&mut s))?;
                        let driver = format!("{} ({})", r.device.driver, r.device.card);
                        (serde_json::to_value(&r)?, driver)
                    }
                    (None, Some(n)) => (
                        run_synthetic(&mut s, n, a.size, a.sizeimage, a.fault, a.yuv.as_deref())?,
                        "synthetic".to_string(),
                    ),
                    (None, None) => unreachable!("checked above"),
                };
                let frames = std::mem::take(&mut s.frames);
                let shots = std::mem::take(&mut s.shots).into_iter().collect();
                let layout = s.layout;
                let buffers = s.buffers.len();
                drop(s);
                ArmRun {
                    decoder,
                    driver,
                    frames,
                    shots,
                    layout,
                    buffers,
                    images_created: paths
                        .iter()
                        .map(|&p| (p.name().to_string(), gpu.images_created(p) - before[&p]))
                        .collect(),
                    stats: None,
                }
            }
        };
        let mut summary = BTreeMap::new();
        let mut rgb_off = BTreeMap::new();
        for f in &arm.frames {
            for pv in &f.paths {
                summary
                    .entry(pv.import.name().to_string())
                    .or_insert_with(Counts::default)
                    .add(pv.verdict.class);
                let off = pv.rgb.iter().any(|r| r.over_tolerance > 0);
                *rgb_off.entry(pv.import.name().to_string()).or_insert(0) += usize::from(off);
            }
        }
        let ground_truth = if arm.driver.starts_with("visl ") {
            for f in &mut arm.frames {
                f.decode_ok = None;
            }
            TruthInfo {
                status: "n/a".into(),
                source: None,
                reason: Some(
                    "visl draws a test pattern instead of decoding: nothing to compare".into(),
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
                    "no framemd5 beside the stream (scripts/make-streams.sh) and no --framemd5"
                        .into()
                } else {
                    "made-up pictures: no --framemd5".into()
                }),
            }
        };
        let decoder_wrong = (ground_truth.status == "compared").then(|| {
            arm.frames
                .iter()
                .filter(|f| f.decode_ok != Some(true))
                .count()
        });
        let verdict = ArmVerdict::judge(
            arm.frames
                .iter()
                .filter_map(|f| f.paths.first())
                .map(|p| &p.verdict),
        );
        let mut report = ArmReport {
            schema: SCHEMA,
            input: input_name.clone(),
            mode: spec.mode.map(|m| m.name().to_string()),
            pipeline: spec.pipeline,
            sample_at: spec.sample_at,
            consumer_wait: spec.wait,
            wait_readers: spec.wait_readers,
            images: spec.images,
            decoder: arm.decoder,
            decoder_driver: arm.driver,
            gpu: gpu.info.clone(),
            implicit_sync: implicit.clone(),
            imports,
            layout: arm.layout,
            buffers: arm.buffers,
            images_created: arm.images_created,
            summary,
            rgb_off,
            busy: BusyCounts::of(&arm.frames),
            ground_truth,
            decoder_wrong,
            frames: arm.frames,
            pngs: Vec::new(),
            pipeline_stats: arm.stats,
            verdict,
        };
        if let (Some(dir), Some(l)) = (&a.evidence, arm.layout) {
            for (p, shot) in &arm.shots {
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
        report.print();
        reports.push(report);
    }
    gpu.forget_all();
    // The verdicts again, together: what the cover letter quotes.
    println!("verdicts ({} arms):", reports.len());
    for r in &reports {
        println!("  {}: {}", r.label(), r.verdict.line());
    }

    if let Some(j) = &a.json {
        std::fs::write(j, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("cannot write {}", j.display()))?;
    }
    if let Some(dir) = &a.evidence {
        crate::arm::write_evidence(dir, &reports)?;
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
