//! `vb2-resv doctor`: a preflight of the machine (the PineTab2 first) before the evidence run.
//!
//! Each check says what it found and, for a problem, what to do about it: the running kernel
//! and its config (CONFIG_RUST and the options of `kconfig/pinetab2.config`, compiled in here
//! as the one list), the kernel build tree a module would be built against (its `rust/`
//! artefacts, from which rustc, for which machine), the stateless H.264 decoders and the one
//! `verify` would pick (probe.rs), the DRM render nodes (panfrost), `dma-coherent` in the device
//! tree, Mesa's EGL with its dma-buf import extensions (gpu/, the verifier's own EGL set-up),
//! and vb2_resv (loaded, mode, attached to the decoder).
//!
//! Exit status: 0 whenever the checks ran, whatever they found (the problems are the output:
//! `problems` in the JSON, the last line of the text); 1 only when doctor could not run at all
//! (bad arguments, the JSON file cannot be written). docs/pinetab2.md lists the checks.

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// `kconfig/pinetab2.config`: the options a kernel needs for vb2_resv.ko (the same file the
/// kernel recipe merges and CI checks).
const FRAGMENT: &str = include_str!("../../kconfig/pinetab2.config");
/// `kconfig/pinetab2-debug.config`: the optional debugging options.
const DEBUG_FRAGMENT: &str = include_str!("../../kconfig/pinetab2-debug.config");

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// JSON instead of text (schema vb2-resv.doctor/1).
    #[arg(long)]
    pub json: bool,
    /// The kernel build tree a module would be built against (default:
    /// /lib/modules/$(uname -r)/build).
    #[arg(long)]
    pub kdir: Option<PathBuf>,
    /// Do not open EGL (skips the Mesa check).
    #[arg(long)]
    pub no_gpu: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Info,
    Warn,
    Problem,
}

/// One check: what it found, and for a warning or a problem what to do.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub summary: String,
    pub details: Vec<String>,
    pub fix: Option<String>,
}

fn check(id: &'static str, status: Status, summary: impl Into<String>) -> Check {
    Check {
        id,
        status,
        summary: summary.into(),
        details: Vec::new(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, f: impl Into<String>) -> Check {
        self.fix = Some(f.into());
        self
    }
    fn details(mut self, d: Vec<String>) -> Check {
        self.details = d;
        self
    }
}

/// The stateless H.264 decoder `verify` would use.
#[derive(Clone, Debug, Serialize)]
pub struct DecoderFound {
    pub path: String,
    pub driver: String,
    pub media: String,
}

/// What `vb2-resv doctor` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub kernel: String,
    pub arch: &'static str,
    /// Where the running kernel's config was read from.
    pub config_source: Option<String>,
    pub build_tree: Option<String>,
    pub decoder: Option<DecoderFound>,
    pub vb2_resv_loaded: bool,
    pub vb2_resv_mode: Option<String>,
    pub checks: Vec<Check>,
    pub problems: usize,
    pub warnings: usize,
}

/// A kernel config: `CONFIG_X` -> value (`y`, `m`, a string or number); unset options absent.
pub type Config = HashMap<String, String>;

pub fn parse_config(text: &str) -> Config {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.starts_with("CONFIG_")
                .then(|| (k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect()
}

/// A fragment's wanted options, each marked board-only when it sits in a `# --- board:` section
/// (hardware of the PineTab2: not wanted of a kernel that runs elsewhere).
pub fn fragment_options(text: &str) -> Vec<(String, String, bool)> {
    let mut board = false;
    let mut out = Vec::new();
    for l in text.lines() {
        if let Some(h) = l.strip_prefix("# ---") {
            board = h.trim_start().starts_with("board:");
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            if k.starts_with("CONFIG_") {
                out.push((k.to_string(), v.to_string(), board));
            }
        }
    }
    out
}

/// Whether `have` satisfies `want`: a wanted module may be built in.
fn satisfied(want: &str, have: Option<&String>) -> bool {
    match (want, have.map(String::as_str)) {
        ("m", Some("m" | "y")) => true,
        (w, Some(h)) => w == h,
        _ => false,
    }
}

fn read_gz(path: &Path) -> Result<String> {
    let f = std::fs::File::open(path)?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut s)?;
    Ok(s)
}

fn first_line(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
}

/// The running kernel's config and where it came from: /proc/config.gz, /boot/config-REL,
/// /usr/lib/modules/REL/config (Debian 7.x), or a build tree's .config whose kernel.release is
/// the running kernel's.
fn running_config(rel: &str, kdir: &Path) -> (Option<(String, Config)>, Vec<String>) {
    let mut tried = Vec::new();
    let p = Path::new("/proc/config.gz");
    match read_gz(p) {
        Ok(s) => return (Some((p.display().to_string(), parse_config(&s))), tried),
        Err(_) => tried.push(format!(
            "{} (absent: CONFIG_IKCONFIG_PROC off)",
            p.display()
        )),
    }
    for c in [
        format!("/boot/config-{rel}"),
        format!("/usr/lib/modules/{rel}/config"),
        format!("/lib/modules/{rel}/config"),
    ] {
        match std::fs::read_to_string(&c) {
            Ok(s) => return (Some((c, parse_config(&s))), tried),
            Err(_) => tried.push(format!("{c} (absent)")),
        }
    }
    let kcfg = kdir.join(".config");
    match first_line(&kdir.join("include/config/kernel.release")) {
        Some(r) if r == rel => {
            if let Ok(s) = std::fs::read_to_string(&kcfg) {
                return (
                    Some((
                        format!("{} (the build tree of the running kernel)", kcfg.display()),
                        parse_config(&s),
                    )),
                    tried,
                );
            }
            tried.push(format!("{} (absent)", kcfg.display()));
        }
        Some(r) => tried.push(format!("{} (a tree for {r}, not {rel})", kcfg.display())),
        None => tried.push(format!("{} (no build tree)", kcfg.display())),
    }
    (None, tried)
}

/// The ELF machine of a shared object, named as `std::env::consts::ARCH` names it.
fn elf_arch(path: &Path) -> Option<&'static str> {
    let b = std::fs::read(path).ok()?;
    if b.len() < 20 || &b[..4] != b"\x7fELF" {
        return None;
    }
    let m = if b[5] == 1 {
        u16::from_le_bytes([b[18], b[19]])
    } else {
        u16::from_be_bytes([b[18], b[19]])
    };
    Some(match m {
        62 => "x86_64",
        183 => "aarch64",
        40 => "arm",
        243 => "riscv64",
        3 => "x86",
        _ => "other",
    })
}

/// The `rustc X.Y.Z (hash date)` string rustc writes near the start of every .rmeta.
pub fn rmeta_rustc(path: &Path) -> Option<String> {
    let mut b = vec![0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut b).ok()?;
    let b = &b[..n];
    let i = b.windows(6).position(|w| w == b"rustc ")?;
    let end = b[i..].iter().position(|&c| c == b')')? + i + 1;
    Some(String::from_utf8_lossy(&b[i..end]).into_owned())
}

fn rustc_version() -> Option<String> {
    let o = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

const FRAGMENT_FIX: &str = "rebuild the kernel with kconfig/pinetab2.config merged into its config (scripts/kconfig-pinetab2.sh apply; docs/pinetab2.md)";

fn kernel_checks(rel: &str, kdir: &Path, is_board: bool, r: &mut Report) {
    let version = first_line(Path::new("/proc/version")).unwrap_or_default();
    r.checks.push(
        check(
            "kernel",
            Status::Info,
            format!("Linux {rel} ({})", std::env::consts::ARCH),
        )
        .details(vec![version]),
    );
    let (cfg, tried) = running_config(rel, kdir);
    let Some((src, cfg)) = cfg else {
        r.checks.push(
            check("kernel.config", Status::Problem, "the running kernel's config is nowhere to be found: CONFIG_RUST and the options vb2_resv needs cannot be checked")
                .details(tried)
                .fix(format!("build the kernel with CONFIG_IKCONFIG_PROC=y (or modprobe configs), keep its config as /boot/config-{rel}, or pass --kdir with its build tree")),
        );
        return;
    };
    r.config_source = Some(src.clone());
    r.checks.push(check(
        "kernel.config",
        Status::Ok,
        format!("read from {src}"),
    ));
    match cfg.get("CONFIG_RUST").map(String::as_str) {
        Some("y") => r.checks.push(check(
            "kernel.rust",
            Status::Ok,
            format!(
                "CONFIG_RUST=y ({})",
                cfg.get("CONFIG_RUSTC_VERSION_TEXT")
                    .map(|s| format!("built with {s}"))
                    .unwrap_or_else(|| "rustc version not recorded".into())
            ),
        )),
        _ => r.checks.push(
            check("kernel.rust", Status::Problem, "CONFIG_RUST is off: this kernel cannot load a Rust module such as vb2_resv.ko (no PineTab2 distribution kernel enables it)")
                .fix(FRAGMENT_FIX),
        ),
    }
    let mut missing = Vec::new();
    let mut skipped = Vec::new();
    for (k, want, board) in fragment_options(FRAGMENT) {
        if k == "CONFIG_RUST" {
            continue; // kernel.rust
        }
        if board && !is_board {
            skipped.push(k);
            continue;
        }
        if !satisfied(&want, cfg.get(&k)) {
            missing.push(format!(
                "{k}={want} wanted, {}",
                cfg.get(&k)
                    .map(|v| format!("is {v}"))
                    .unwrap_or_else(|| "is not set".into())
            ));
        }
    }
    let mut c = if missing.is_empty() {
        check(
            "kernel.options",
            Status::Ok,
            "every option of kconfig/pinetab2.config that applies here is set",
        )
    } else {
        check(
            "kernel.options",
            Status::Problem,
            format!(
                "{} option(s) of kconfig/pinetab2.config missing: {}",
                missing.len(),
                missing.join("; ")
            ),
        )
        .fix(FRAGMENT_FIX)
    };
    if !skipped.is_empty() {
        c.details.push(format!(
            "not a PineTab2 (no Rockchip VPU/Mali node in the device tree): not checked: {}",
            skipped.join(", ")
        ));
    }
    r.checks.push(c);
    if cfg.get("CONFIG_MODULE_SIG_FORCE").map(String::as_str) == Some("y") {
        r.checks.push(check("kernel.module-sig", Status::Problem, "CONFIG_MODULE_SIG_FORCE=y: the kernel refuses the unsigned vb2_resv.ko (\"Key was rejected by service\")")
            .fix("sign vb2_resv.ko with the kernel's key (scripts/sign-file in the build tree), or build the kernel without MODULE_SIG_FORCE"));
    } else if cfg.get("CONFIG_MODULE_SIG").map(String::as_str) == Some("y") {
        r.checks.push(check("kernel.module-sig", Status::Info, "CONFIG_MODULE_SIG=y without MODULE_SIG_FORCE: an unsigned vb2_resv.ko loads and taints the kernel (E, \"module verification failed\"); harmless for the evidence"));
    }
    let debug_off: Vec<String> = fragment_options(DEBUG_FRAGMENT)
        .into_iter()
        .filter(|(k, w, _)| !satisfied(w, cfg.get(k)))
        .map(|(k, _, _)| k)
        .collect();
    if debug_off.is_empty() {
        r.checks.push(check(
            "kernel.debug",
            Status::Ok,
            "the options of kconfig/pinetab2-debug.config are on (lockdep, atomic-sleep checks, kmemleak, DMA API debug)",
        ));
    } else {
        r.checks.push(
            check(
                "kernel.debug",
                Status::Info,
                format!(
                    "optional debugging off: {} (the evidence run is then not checked by lockdep and friends)",
                    debug_off.join(", ")
                ),
            )
            .fix("for a checked run, merge kconfig/pinetab2-debug.config too (scripts/kconfig-pinetab2.sh apply CONFIG --debug)"),
        );
    }
}

fn build_tree_checks(rel: &str, kdir: &Path, r: &mut Report) {
    if !kdir.join("Makefile").exists() {
        r.checks.push(
            check(
                "build-tree",
                Status::Problem,
                format!("no kernel build tree at {}: vb2_resv.ko cannot be built here", kdir.display()),
            )
            .fix(format!("install the running kernel's headers package with its rust/ directory (docs/pinetab2.md), or build against the tree the kernel was built in: make kmod KDIR=/path/to/linux-build (doctor --kdir) [{rel}]")),
        );
        return;
    }
    r.build_tree = Some(kdir.display().to_string());
    let mut details = Vec::new();
    let trel = first_line(&kdir.join("include/config/kernel.release"));
    let tcfg = std::fs::read_to_string(kdir.join(".config"))
        .map(|s| parse_config(&s))
        .unwrap_or_default();
    let mut status = Status::Ok;
    let mut fixes = Vec::new();
    let mut summary = format!("{}", kdir.display());
    match &trel {
        Some(t) if t == rel => summary += &format!(" (for {t}, the running kernel)"),
        Some(t) => {
            status = Status::Problem;
            summary += &format!(" is for {t}, not the running {rel}: a module built there does not load here (\"disagrees about version of symbol\", vermagic)");
            fixes.push(format!("build against the running kernel's tree ({rel})"));
        }
        None => {
            status = Status::Problem;
            summary += " has no include/config/kernel.release: not a configured build tree";
            fixes.push("point --kdir at the kernel's build output (where make ran)".into());
        }
    }
    if tcfg.get("CONFIG_RUST").map(String::as_str) != Some("y") {
        status = Status::Problem;
        details.push("the tree's .config has no CONFIG_RUST=y".into());
        fixes.push(FRAGMENT_FIX.into());
    }
    let wanted = [
        "rust/libcore.rmeta",
        "rust/libkernel.rmeta",
        "rust/libmacros.so",
        "include/generated/rustc_cfg",
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|f| !kdir.join(f).exists())
        .collect();
    if !missing.is_empty() {
        status = Status::Problem;
        details.push(format!(
            "missing {}: the tree has no usable rust/ (Debian's and danctnix's headers packages ship none)",
            missing.join(", ")
        ));
        fixes.push("ship rust/*.rmeta rust/*.so and include/generated/rustc_cfg in the headers package (docs/pinetab2.md, 'headers'), or build in the kernel's own build directory".into());
    } else {
        details.push(format!("rust/ artefacts present: {}", wanted.join(", ")));
        match elf_arch(&kdir.join("rust/libmacros.so")) {
            Some(a) if a == std::env::consts::ARCH => details.push(format!(
                "rust/libmacros.so is a {a} proc-macro: usable here"
            )),
            Some(a) => {
                status = Status::Problem;
                details.push(format!("rust/libmacros.so is a {a} shared object, this machine is {}: rustc cannot load the kernel's proc-macros here", std::env::consts::ARCH));
                fixes.push(format!("build the module on the {a} machine that built the tree (cross: make kmod KDIR=... ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-), or rebuild the tree's rust/ on this machine"));
            }
            None => details.push("rust/libmacros.so: not an ELF file".into()),
        }
    }
    let tree_rustc = tcfg
        .get("CONFIG_RUSTC_VERSION_TEXT")
        .cloned()
        .or_else(|| rmeta_rustc(&kdir.join("rust/libcore.rmeta")));
    let rmeta = rmeta_rustc(&kdir.join("rust/libcore.rmeta"));
    if let Some(m) = &rmeta {
        details.push(format!("rust/libcore.rmeta was written by {m}"));
    }
    let mut c = check("build-tree", status, summary).details(details);
    if !fixes.is_empty() {
        c = c.fix(fixes.join("; "));
    }
    r.checks.push(c);

    let Some(want) = tree_rustc else {
        return;
    };
    match rustc_version() {
        None => r.checks.push(
            check(
                "rustc",
                Status::Warn,
                format!("no rustc in PATH: building vb2_resv.ko needs the one the tree was built with, {want}"),
            )
            .fix(format!("install {want} (rustup toolchain install {}, plus rust-src) or build on the machine that built the tree", want.split_whitespace().nth(1).unwrap_or("?"))),
        ),
        Some(have) => {
            let same = have == want && rmeta.as_deref().is_none_or(|m| m == have);
            if same {
                r.checks.push(check(
                    "rustc",
                    Status::Ok,
                    format!("{have}: the rustc the tree was built with"),
                ));
            } else {
                r.checks.push(
                    check(
                        "rustc",
                        Status::Problem,
                        format!("{have} in PATH, the tree was built with {want}{}: the module build fails with E0514 (\"found crate `core` compiled by an incompatible version of rustc\")", rmeta.as_ref().filter(|m| **m != want).map(|m| format!(" (rust/libcore.rmeta: {m})")).unwrap_or_default()),
                    )
                    .fix(format!("put {want} first in PATH (rustup override set {} in the module's directory), or rebuild the tree's rust/ with {have}", want.split_whitespace().nth(1).unwrap_or("?"))),
                );
            }
        }
    }
}

/// The known stateless H.264 decoders, by driver name.
fn decoder_name(driver: &str) -> &'static str {
    match driver {
        "hantro-vpu" => "hantro, VDPU2 on the RK3566",
        "rkvdec" => "Rockchip VDPU34x",
        "visl" => "virtual stateless decoder, tests only",
        _ => "stateless decoder",
    }
}

fn decoder_checks(dt: &crate::probe::DeviceTree, r: &mut Report) {
    let (nodes, errs) = crate::probe::video_nodes();
    let h264: Vec<&crate::probe::VideoNode> = nodes
        .iter()
        .filter(|n| n.stateless.iter().any(|c| c.fourcc.starts_with("S264")))
        .collect();
    let mut details: Vec<String> = h264
        .iter()
        .map(|n| {
            format!(
                "{}: {}: {}, requests {}, media {}",
                n.path,
                n.driver,
                decoder_name(&n.driver),
                if n.requests { "yes" } else { "NO" },
                n.media.as_deref().unwrap_or("none")
            )
        })
        .collect();
    details.extend(errs);
    let dt_vpu: Vec<&crate::probe::DtNode> = dt
        .nodes
        .iter()
        .filter(|d| d.role == "vpu" && d.status.as_deref().is_none_or(|s| s == "okay"))
        .collect();
    let hantro_dt = dt_vpu.iter().any(|d| {
        d.compatible
            .iter()
            .any(|c| c.ends_with("-vpu") || c.contains("vdpu") || c.contains("hantro"))
    });
    match crate::probe::find_h264_decoder() {
        Ok((n, media)) => {
            r.decoder = Some(DecoderFound {
                path: n.path.clone(),
                driver: n.driver.clone(),
                media: media.display().to_string(),
            });
            let mut c = check(
                "decoder",
                Status::Ok,
                format!(
                    "{} ({}: {}): the stateless H.264 decoder verify uses",
                    n.path,
                    n.driver,
                    decoder_name(&n.driver)
                ),
            )
            .details(details);
            if !n.requests {
                c.status = Status::Problem;
                c.summary += ", but its OUTPUT queue does not support requests";
                c.fix =
                    Some("a kernel with the media request API (CONFIG_MEDIA_CONTROLLER)".into());
            } else if hantro_dt && !h264.iter().any(|x| x.driver == "hantro-vpu") {
                c.status = Status::Problem;
                c.summary += "; the device tree has a hantro VPU but no hantro-vpu node exists";
                c.fix = Some("modprobe hantro_vpu (CONFIG_VIDEO_HANTRO=m, CONFIG_VIDEO_HANTRO_ROCKCHIP=y), then look at dmesg for its probe".into());
            }
            r.checks.push(c);
        }
        Err(e) => {
            let fix = if hantro_dt {
                "modprobe hantro_vpu (CONFIG_VIDEO_HANTRO=m, CONFIG_VIDEO_HANTRO_ROCKCHIP=y: kconfig/pinetab2.config), then look at dmesg for its probe".to_string()
            } else {
                "load the decoder's driver: hantro_vpu or rockchip_vdec on a Rockchip board; on a machine without one, modprobe visl (CONFIG_VIDEO_VISL, the virtual decoder the tests use)".to_string()
            };
            r.checks.push(
                check(
                    "decoder",
                    Status::Problem,
                    format!("no stateless H.264 decoder (hantro-vpu, rkvdec or visl): {e:#}"),
                )
                .details(details)
                .fix(fix),
            );
        }
    }
}

fn gpu_checks(dt: &crate::probe::DeviceTree, no_gpu: bool, r: &mut Report) {
    let nodes = crate::sys::render_nodes();
    let mali_dt = dt
        .nodes
        .iter()
        .any(|d| d.role == "gpu" && d.status.as_deref().is_none_or(|s| s == "okay"));
    let list: Vec<String> = nodes.iter().map(|(p, d)| format!("{p}: {d}")).collect();
    let panfrost = nodes.iter().any(|(_, d)| d == "panfrost");
    if panfrost {
        r.checks.push(check(
            "gpu.render-node",
            Status::Ok,
            format!("panfrost's render node: {}", list.join(", ")),
        ));
    } else if mali_dt {
        r.checks.push(
            check(
                "gpu.render-node",
                Status::Problem,
                format!(
                    "the device tree has a Mali GPU but no panfrost render node ({})",
                    if list.is_empty() {
                        "no /dev/dri/renderD*".into()
                    } else {
                        list.join(", ")
                    }
                ),
            )
            .fix("modprobe panfrost (CONFIG_DRM_PANFROST=m), then look at dmesg for its probe"),
        );
    } else if list.is_empty() {
        r.checks.push(check(
            "gpu.render-node",
            Status::Warn,
            "no DRM render node (/dev/dri/renderD*) and no Mali GPU in the device tree: EGL can only use Mesa's software renderer, which waits for no fence",
        ).fix("on the PineTab2: modprobe panfrost; elsewhere the evidence shows the pixels, not the fence's effect on a GPU"));
    } else {
        r.checks.push(check(
            "gpu.render-node",
            Status::Info,
            format!(
                "render nodes: {} (no panfrost: not a Mali machine)",
                list.join(", ")
            ),
        ));
    }
    let mut dtc = Vec::new();
    for d in &dt.nodes {
        dtc.push(format!(
            "{} {} [{}]: {}{}",
            d.role,
            d.path,
            d.compatible.join(", "),
            if d.dma_coherent {
                "dma-coherent"
            } else {
                "not dma-coherent"
            },
            d.status
                .as_ref()
                .map(|s| format!(", status {s}"))
                .unwrap_or_default()
        ));
    }
    let summary = if !dt.present {
        dt.note.clone().unwrap_or_else(|| "no device tree".into())
    } else if dt.nodes.is_empty() {
        dt.note.clone().unwrap_or_default()
    } else {
        let nc = dt.nodes.iter().filter(|d| !d.dma_coherent).count();
        format!(
            "{} VPU/GPU node(s), {nc} not dma-coherent (the RK3566's are not: CPU access goes through uncached or synced mappings)",
            dt.nodes.len()
        )
    };
    r.checks
        .push(check("device-tree", Status::Info, summary).details(dtc));

    if no_gpu {
        r.checks
            .push(check("mesa", Status::Info, "not checked (--no-gpu)"));
        return;
    }
    match crate::gpu::Gpu::open(&crate::gpu::GpuOptions::default()) {
        Err(e) => r.checks.push(
            check("mesa", Status::Problem, format!("EGL cannot sample dma-bufs here: {e:#}"))
                .fix("install Mesa >= 24.1 with EGL and GLES (Arch: mesa; Debian bookworm: libegl1 libgles2 libegl-mesa0 from bookworm-backports); VB2R_LIBEGL names another libEGL"),
        ),
        Ok(g) => {
            let i = &g.info;
            let mesa = i
                .gl_version
                .split_once("Mesa ")
                .map(|(_, v)| v.split_whitespace().next().unwrap_or("").to_string());
            let imports: Vec<String> = [
                "EGL_EXT_image_dma_buf_import",
                "EGL_EXT_image_dma_buf_import_modifiers",
            ]
            .iter()
            .map(|e| {
                format!(
                    "{e} {}",
                    if i.egl_extensions.iter().any(|x| x == e) { "yes" } else { "NO" }
                )
            })
            .collect();
            let mut details = vec![
                format!("EGL {} {} ({}, {})", i.egl_vendor, i.egl_version, i.platform, i.libegl),
                format!("GL {} / {} / {}", i.gl_vendor, i.gl_renderer, i.gl_version),
                format!(
                    "render node {}, DRM driver {}",
                    i.render_node.as_deref().unwrap_or("none"),
                    i.drm_driver.as_deref().unwrap_or("none")
                ),
                format!("dma-buf import: {}", imports.join(", ")),
            ];
            for f in &i.formats {
                details.push(format!(
                    "{}: {}advertised, modifiers [{}]",
                    f.fourcc,
                    if f.advertised { "" } else { "NOT " },
                    f.modifiers.join(", ")
                ));
            }
            details.push(format!(
                "implicit sync: {} ({})",
                match i.implicit_sync {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "unknown",
                },
                i.implicit_sync_reason
            ));
            let old = mesa.as_deref().and_then(|v| {
                let mut p = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
                let (a, b) = (p.next()?, p.next().unwrap_or(0));
                ((a, b) < (24, 1)).then_some(v.to_string())
            });
            let version = mesa.clone().unwrap_or_else(|| "(not Mesa)".into());
            let mut c = check(
                "mesa",
                Status::Ok,
                format!(
                    "Mesa {version}, {} on {}, dma-buf import through EGL works",
                    i.gl_renderer,
                    i.drm_driver.as_deref().unwrap_or("no DRM device")
                ),
            )
            .details(details);
            if let Some(v) = old {
                c.status = Status::Problem;
                c.summary = format!("Mesa {v} is older than 24.1 (llvmpipe cannot import dma-bufs, panfrost's NV12 import differs)");
                c.fix = Some("install Mesa >= 24.1".into());
            } else if panfrost && i.drm_driver.as_deref() != Some("panfrost") {
                c.status = Status::Warn;
                c.summary += "; but not on panfrost although its render node exists";
                c.fix = Some("install Mesa's panfrost driver (Arch: mesa; Debian: mesa-dri-drivers / libgl1-mesa-dri), or run verify with --platform gbm --render-node on panfrost's node".into());
            } else if i.software {
                c.details.push("a software renderer: the pixels and the classification are real, the fence's effect on a GPU is not shown (docs/rfc-evidence.md)".into());
            }
            r.checks.push(c);
        }
    }
}

fn module_checks(r: &mut Report) {
    let m = crate::probe::module_state();
    r.vb2_resv_loaded = m.loaded;
    r.vb2_resv_mode = m.mode.clone();
    let attach = r
        .decoder
        .as_ref()
        .map(|d| d.driver.clone())
        .unwrap_or_else(|| "DRIVER".into());
    if !m.loaded {
        r.checks.push(
            check("vb2_resv", Status::Problem, "vb2_resv is not loaded (/sys/module/vb2_resv absent)")
                .fix(format!("build it against this kernel's tree (make kmod KDIR=/lib/modules/$(uname -r)/build) and load it: insmod vb2_resv.ko attach={attach} (scripts/board-evidence.sh does both)")),
        );
        return;
    }
    let mut details: Vec<String> = m.nodes.iter().map(|(n, s)| format!("{n}: {s}")).collect();
    if let Some(t) = first_line(Path::new("/sys/module/vb2_resv/taint")).filter(|t| !t.is_empty()) {
        details.push(format!(
            "module taint flags: {t}{}",
            if t.contains('E') {
                " (E: unsigned module, expected)"
            } else {
                ""
            }
        ));
    }
    let Some(mode) = m.mode.clone() else {
        r.checks.push(
            check(
                "vb2_resv",
                Status::Warn,
                format!(
                    "vb2_resv is loaded, its mode unknown: {}",
                    m.note.unwrap_or_default()
                ),
            )
            .details(details)
            .fix("run as root with debugfs mounted: mount -t debugfs none /sys/kernel/debug"),
        );
        return;
    };
    let mut c = check(
        "vb2_resv",
        Status::Ok,
        format!("vb2_resv is loaded, mode {mode}"),
    )
    .details(details);
    if let Some(d) = &r.decoder {
        match m.nodes.iter().find(|(n, _)| *n == d.path) {
            Some((_, s)) if s == "attached" => {
                c.summary += &format!(", attached to {} ({})", d.path, d.driver)
            }
            other => {
                c.status = Status::Problem;
                c.summary += &format!(
                    ", but not attached to the decoder {} ({}){}",
                    d.path,
                    d.driver,
                    other.map(|(_, s)| format!(": {s}")).unwrap_or_default()
                );
                c.fix = Some(format!(
                    "rmmod vb2_resv; insmod vb2_resv.ko attach={}",
                    d.driver
                ));
            }
        }
    }
    r.checks.push(c);
}

/// Runs every check.
pub fn doctor(a: &DoctorArgs) -> Report {
    let rel = first_line(Path::new("/proc/sys/kernel/osrelease")).unwrap_or_default();
    let kdir = a
        .kdir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/lib/modules/{rel}/build")));
    let dt = crate::probe::device_tree();
    let is_board = dt.nodes.iter().any(|d| {
        d.compatible
            .iter()
            .any(|c| c.starts_with("rockchip,") || c.starts_with("arm,mali"))
    });
    let mut r = Report {
        schema: "vb2-resv.doctor/1",
        kernel: rel.clone(),
        arch: std::env::consts::ARCH,
        config_source: None,
        build_tree: None,
        decoder: None,
        vb2_resv_loaded: false,
        vb2_resv_mode: None,
        checks: Vec::new(),
        problems: 0,
        warnings: 0,
    };
    kernel_checks(&rel, &kdir, is_board, &mut r);
    build_tree_checks(&rel, &kdir, &mut r);
    decoder_checks(&dt, &mut r);
    gpu_checks(&dt, a.no_gpu, &mut r);
    module_checks(&mut r);
    r.problems = r
        .checks
        .iter()
        .filter(|c| c.status == Status::Problem)
        .count();
    r.warnings = r.checks.iter().filter(|c| c.status == Status::Warn).count();
    r
}

impl Report {
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "vb2-resv doctor: Linux {} ({})", self.kernel, self.arch);
        for c in &self.checks {
            let tag = match c.status {
                Status::Ok => "ok",
                Status::Info => "info",
                Status::Warn => "WARN",
                Status::Problem => "PROBLEM",
            };
            let _ = writeln!(s, "[{tag:<7}] {}: {}", c.id, c.summary);
            for d in &c.details {
                let _ = writeln!(s, "          {d}");
            }
            if let Some(f) = &c.fix {
                let _ = writeln!(s, "          fix: {f}");
            }
        }
        let _ = writeln!(
            s,
            "doctor: {} problem(s), {} warning(s)",
            self.problems, self.warnings
        );
        s
    }
}

/// `vb2-resv doctor`: prints the report; errors only when it could not run.
pub fn run(a: &DoctorArgs) -> Result<()> {
    let r = doctor(a);
    if a.json {
        let j = serde_json::to_string_pretty(&r).context("doctor report as JSON")?;
        println!("{j}");
    } else {
        print!("{}", r.render());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_sections() {
        let o = fragment_options(FRAGMENT);
        assert!(o
            .iter()
            .any(|(k, v, b)| k == "CONFIG_RUST" && v == "y" && !b));
        assert!(o.iter().any(|(k, _, b)| k == "CONFIG_VIDEO_HANTRO" && *b));
        assert!(o.iter().any(|(k, _, b)| k == "CONFIG_DRM_PANFROST" && *b));
        assert!(o.iter().any(|(k, _, b)| k == "CONFIG_SYNC_FILE" && !b));
    }

    #[test]
    fn module_may_be_builtin() {
        let c = parse_config("CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_S=\"x y\"\n");
        assert!(satisfied("m", c.get("CONFIG_A")));
        assert!(satisfied("m", c.get("CONFIG_B")));
        assert!(!satisfied("y", c.get("CONFIG_B")));
        assert!(!satisfied("y", c.get("CONFIG_C")));
        assert_eq!(c.get("CONFIG_S").map(String::as_str), Some("x y"));
    }

    #[test]
    fn rmeta_version_string() {
        let d = std::env::temp_dir().join(format!("vb2r-rmeta-{}", std::process::id()));
        std::fs::write(
            &d,
            b"rust\0\0\0\x08\0\0#rustc 1.95.0 (59807616e 2026-04-14)\x05core",
        )
        .unwrap();
        assert_eq!(
            rmeta_rustc(&d).as_deref(),
            Some("rustc 1.95.0 (59807616e 2026-04-14)")
        );
        std::fs::remove_file(&d).unwrap();
    }
}
