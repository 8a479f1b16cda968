//! One arm of `vb2-resv verify` (module mode x wait_readers x pipeline x sample point x EGLImage
//! lifetime x consumer wait): its report (`vb2-resv.verify/1`), its console lines and the
//! evidence table over all arms.

use crate::classify::{Class, Counts};
use crate::consumer_wait::ConsumerWait;
use crate::decode::Nv12Layout;
use crate::evidence;
use crate::gpu::{GpuInfo, Images, ImportInfo};
use crate::implicit::ImplicitSync;
use crate::pipeline::{Pipeline, PipelineStats};
use crate::sampler::{FrameResult, SampleAt};
use crate::truth::TruthInfo;
use crate::verdict::ArmVerdict;
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The JSON schema name of one arm's report.
pub const SCHEMA: &str = "vb2-resv.verify/1";

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
    pub fn of(frames: &[FrameResult]) -> BusyCounts {
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
    /// How frames travel to the GPU (`direct`, `mpv-kwin`).
    pub pipeline: Pipeline,
    pub sample_at: SampleAt,
    /// What the consumer waited for before its GPU read.
    pub consumer_wait: ConsumerWait,
    /// The module's `wait_readers` in this arm (None: left as it was, or no module).
    pub wait_readers: Option<bool>,
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
    /// The mpv + KWin pipeline's own figures (None for `direct`).
    pub pipeline_stats: Option<PipelineStats>,
    /// Which hazard this arm shows (on the first import path).
    pub verdict: ArmVerdict,
}

impl ArmReport {
    pub fn label(&self) -> String {
        let mut l = format!(
            "{}-{}-{}",
            self.mode.as_deref().unwrap_or("unchanged"),
            if self.pipeline == Pipeline::Direct {
                self.sample_at.name()
            } else {
                self.pipeline.name()
            },
            self.images.name(),
        );
        if self.consumer_wait != ConsumerWait::None {
            l.push('-');
            l.push_str(self.consumer_wait.name());
        }
        if let Some(w) = self.wait_readers {
            l.push_str(if w { "-wr" } else { "-nowr" });
        }
        l
    }

    /// The one-line console summary of each import path, and the verdict.
    pub fn print(&self) {
        if let Some(w) = self.decoder_wrong {
            println!(
                "arm {}: {w} of {} frames differ from the ground truth ({})",
                self.label(),
                self.frames.len(),
                self.ground_truth.source.as_deref().unwrap_or("-")
            );
        }
        for (p, c) in &self.summary {
            println!(
                "arm {} {p}: {} frames: {}; EGLImages created {} for {} buffers; RGB off in {}",
                self.label(),
                c.total(),
                Class::ALL
                    .iter()
                    .map(|k| format!("{k} {}", c.get(*k)))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.images_created.get(p).copied().unwrap_or(0),
                self.buffers,
                self.rgb_off.get(p).copied().unwrap_or(0),
            );
        }
        if let Some(s) = &self.pipeline_stats {
            println!(
                "arm {}: mpv+KWin: {} presented, {} released, {} recaptured (LIFO violations {}), GPU reads of {} ms: {} released while in flight, {} read a later frame's bytes",
                self.label(),
                s.pool.presented,
                s.pool.released,
                s.pool.recaptured,
                s.pool.lifo_violations,
                s.gpu_read_ms,
                s.released_in_flight,
                s.reverse
            );
        }
        println!("verdict {}: {}", self.label(), self.verdict.line());
    }
}

pub fn write_evidence(dir: &Path, reports: &[ArmReport]) -> Result<()> {
    let mut rows = Vec::new();
    for r in reports {
        let name = format!("arm-{}.json", r.label());
        std::fs::write(dir.join(&name), serde_json::to_string_pretty(r)?)
            .with_context(|| format!("cannot write {}", dir.join(&name).display()))?;
        for (p, c) in &r.summary {
            rows.push(evidence::Row {
                pipeline: r.pipeline.name().into(),
                mode: r.mode.clone().unwrap_or_else(|| "unchanged".into()),
                wait_readers: r
                    .wait_readers
                    .map_or("-", |w| if w { "on" } else { "off" })
                    .into(),
                sample_at: if r.pipeline == Pipeline::Direct {
                    r.sample_at.name()
                } else {
                    "dqbuf, read in flight"
                }
                .into(),
                consumer_wait: r.consumer_wait.name().into(),
                verdict: r.verdict.verdict.clone(),
                busy: matches!(r.sample_at, SampleAt::Queued | SampleAt::Committed).then_some((
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
    md.push_str("- consumer wait: none (Weston, wlroots: the GPU driver's implicit sync only), poll (KWin, Mutter: poll(POLLIN) on the dma-buf, EXPORT_SYNC_FILE(READ) and a wait if busy), sync-file (always export and wait), explicit (the module's sync_file, VB2_RESV_IOC_SYNC_FILE). On llvmpipe, which waits for no fence, `none` races whatever the module does\n");
    md.push_str("- pipeline: direct (each frame sampled once and read back at once) or mpv-kwin (ffmpeg's LIFO CAPTURE pool, frames after DQBUF, KWin's cached EGLImages, a GPU read kept in flight by a vgem WRITE fence as panfrost's job fence is, the buffer released before the read ends); `later` = the GPU read bytes of a frame decoded after the one it was sampling (the reverse hazard); wait_readers = the module makes the decoder wait for other devices' fences before the hardware writes the buffer again\n");
    md.push_str("- verdict: none (every frame correct), forward (sentinel/torn: read before the decoder wrote), reverse (later/torn of later bytes: the decoder wrote during the read), layout (zero/previous/stale/mismatch: wrong bytes, no fence helps), decoder (unwritten/partial/error)\n");
    md.push_str("- busy at read: samples taken after queueing that began while QUERYBUF showed the buffer QUEUED and not DONE (the decoder provably still owned it); busy, held: of those, the buffer was DONE when the read ended and the GPU got the finished picture (the reader was held until the decode ended); busy, raced: it read `sentinel` or `torn`. A fence works only where busy > 0, busy, held = busy and busy, raced = 0\n");
    md.push('\n');
    md.push_str(&evidence::markdown_table(&rows));
    md.push_str("\nColumns: docs/rfc-evidence.md. Per-frame detail: the arm-*.json files; triptychs: frame-*.png.\n");
    std::fs::write(dir.join("table.md"), md)
        .with_context(|| format!("cannot write {}", dir.join("table.md").display()))?;
    Ok(())
}
