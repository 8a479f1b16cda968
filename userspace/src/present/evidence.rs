//! `present --evidence DIR`: the compositor's arm of the RFC evidence, in the form `verify
//! --evidence` writes (docs/rfc-evidence.md). Each run writes `present-<label>.json` (its
//! report, with the evidence row in `row`) and `present-<label>.png` (the triptych: CPU view |
//! what the compositor showed | difference, [`crate::evidence::triptych_rgb`]), then rewrites
//! `present.md` from every `present-*.json` in DIR: one table row per run
//! ([`crate::evidence::markdown_table`]), labelled with the compositor and its version as the
//! compositor itself reported it. Runs of one evidence directory (module off, strict, another
//! geometry) thus add up to one table.

use crate::classify::{Class, Counts};
use crate::evidence;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What one run contributes to the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvidenceRow {
    pub label: String,
    /// Module mode (None: left as found).
    pub mode: Option<String>,
    /// "weston 10.0.1" (the compositor's own `--version`).
    pub compositor: String,
    /// "1920x1080 in 1920x1088, 2 planes, chroma at 2088960".
    pub picture: String,
    pub decoder: String,
    /// The buffer hand-over as replayed from the events ([`super::order`]).
    pub hand_over: String,
    /// Class name -> frames.
    pub classes: BTreeMap<String, usize>,
    pub wl_buffers: usize,
    pub capture_buffers: usize,
    /// Frames whose capture differs from the CPU view by more than the tolerance somewhere.
    pub rgb_off: usize,
    /// Frames with a vb2_resv fence pending just after QBUF (the decode report's count).
    pub fenced: usize,
    pub triptych: Option<String>,
}

impl EvidenceRow {
    fn row(&self) -> evidence::Row {
        let mut counts = Counts::default();
        for c in Class::ALL {
            for _ in 0..self.classes.get(c.name()).copied().unwrap_or(0) {
                counts.add(c);
            }
        }
        let verdict = crate::verdict::ArmVerdict::from_counts(&counts).verdict;
        evidence::Row {
            pipeline: "present".into(),
            mode: self.mode.clone().unwrap_or_else(|| "unchanged".into()),
            wait_readers: "-".into(),
            sample_at: "presented".into(),
            consumer_wait: "compositor".into(),
            verdict,
            images: "per wl_buffer".into(),
            import: format!("{}: {}", self.compositor, self.picture),
            counts,
            images_created: self.wl_buffers,
            buffers: self.capture_buffers,
            rgb_off: self.rgb_off,
            decoder_wrong: None,
            fenced: Some(self.fenced),
            busy: None,
        }
    }
}

/// Writes this run's report and triptych (RGB8, `w` x `h`) into `dir` and rewrites
/// `present.md`.
pub fn write(
    dir: &Path,
    row: &EvidenceRow,
    report: &impl Serialize,
    triptych: Option<&(u32, u32, Vec<u8>)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let (Some((w, h, img)), Some(name)) = (triptych, &row.triptych) {
        evidence::write_png(&dir.join(name), *w, *h, img)?;
    }
    let json = dir.join(format!("present-{}.json", row.label));
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let mut rows: Vec<EvidenceRow> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("present-") && n.ends_with(".json"))
        })
        .collect();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).with_context(|| format!("{}", p.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}", p.display()))?;
        let r: EvidenceRow = serde_json::from_value(v["row"].clone())
            .with_context(|| format!("{}: no evidence row", p.display()))?;
        rows.push(r);
    }
    let mut md = String::from("# vb2_resv: what the compositor showed, per run\n\n");
    md.push_str(&format!(
        "`vb2-resv present` (docs/verifier.md): every frame decoded on the V4L2 decoder, presented \
         through zwp_linux_dmabuf_v1 as mpv's dmabuf-wayland output does, captured after its \
         wp_presentation feedback and classified against the CPU view in RGB (tolerance \
         {} code values per channel). Columns as in docs/rfc-evidence.md, with: `GPU samples at` = \
         `presented` (the compositor's capture after the frame's presentation feedback), \
         `pipeline` = `present`, `consumer wait` = `compositor` (whatever the compositor waits for), `EGLImages` = `per \
         wl_buffer` (the compositor imports each buffer once), `import` = the compositor as it \
         reports its version, and the picture and its descriptor; `images created / buffers` = \
         wl_buffers created / CAPTURE buffers used.\n\n",
        super::capture::TOLERANCE
    ));
    for r in &rows {
        md.push_str(&format!(
            "- `{}`: decoder {}; hand-over: {}\n",
            r.label, r.decoder, r.hand_over
        ));
    }
    md.push('\n');
    let table: Vec<evidence::Row> = rows.iter().map(EvidenceRow::row).collect();
    md.push_str(&evidence::markdown_table(&table));
    md.push_str("\nTriptychs (CPU view | compositor | difference): ");
    let pngs: Vec<String> = rows
        .iter()
        .filter_map(|r| r.triptych.as_ref().map(|t| format!("`{t}`")))
        .collect();
    md.push_str(&pngs.join(", "));
    md.push('\n');
    let out = dir.join("present.md");
    std::fs::write(&out, md).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, mode: &str, class: &str, n: usize) -> EvidenceRow {
        EvidenceRow {
            label: label.into(),
            mode: Some(mode.into()),
            compositor: "weston 10.0.1".into(),
            picture: "64x32 in 64x32, 2 planes, chroma at 2048".into(),
            decoder: "visl (visl)".into(),
            hand_over: "n commits".into(),
            classes: [(class.to_string(), n)].into_iter().collect(),
            wl_buffers: 3,
            capture_buffers: 3,
            rgb_off: 0,
            fenced: 0,
            triptych: Some(format!("present-{label}.png")),
        }
    }

    #[test]
    fn runs_add_up_to_one_table() {
        let dir = std::env::temp_dir().join(format!("vb2r-present-ev-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        let img = (6, 2, vec![9u8; 6 * 2 * 3]);
        for (l, m, c, n) in [
            ("off-64x32", "off", "correct", 4),
            ("strict-64x32", "strict", "mismatch", 2),
        ] {
            let r = row(l, m, c, n);
            write(&dir, &r, &serde_json::json!({ "row": r }), Some(&img)).unwrap();
        }
        let md = std::fs::read_to_string(dir.join("present.md")).unwrap();
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.contains("| weston 10.0.1: 64x32 in "))
            .collect();
        assert_eq!(rows.len(), 2, "{md}");
        assert!(
            rows[0].starts_with("| present | off | - | presented | compositor | per wl_buffer |")
        );
        // verdict none, frames 4, decoder wrong n/a, correct 4.
        assert!(
            rows[0].contains(" | none | 4 | n/a | 4 | 0 |"),
            "{}",
            rows[0]
        );
        assert!(rows[1].contains(" | layout | 2 | n/a | 0 |"), "{}", rows[1]);
        assert_eq!(
            crate::evidence::png_info(&dir.join("present-strict-64x32.png")).unwrap(),
            (6, 2, png::ColorType::Rgb)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
