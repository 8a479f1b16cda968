//! Host side of the vb2-resv test harness.
//!
//! `vb2r-harness report` merges the host's results (cargo tests, builds) with the guest's TAP,
//! decides `dmesg-clean` from what the guest's kernel logged, prints the whole run as TAP with
//! the closing `N passed, N failed[, N skipped]` line and writes `build/results.json`.
//! `vb2r-harness dmesg-check FILE|-` applies the same kernel-log check to one file (the guest
//! tests use it, so that there is one list of what counts as a kernel complaint).

mod dmesg;
mod tap;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use tap::{Status, TestResult};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Merge host and guest results, print TAP and the summary, write results.json.
    Report(ReportArgs),
    /// Print the kernel-log lines that count as complaints; exit 1 if there are any.
    DmesgCheck {
        /// A kernel log, or - for standard input.
        file: String,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Host results, one TAP line each (`ok - name # detail`).
    #[arg(long)]
    host: PathBuf,
    /// A guest's output folder (tap.txt, dmesg.txt, kmemleak.txt, console.log); once per guest
    /// when the suite ran in several guests at once. None: no guest was planned (VB2R_TESTS named
    /// only host tests), and dmesg-clean is skipped.
    #[arg(long)]
    guest_dir: Vec<PathBuf>,
    /// scripts/qemu.sh's exit status (0: the guest ran to its end), one per --guest-dir.
    #[arg(long)]
    guest_status: Vec<i32>,
    #[arg(long)]
    kernel_ok: u8,
    #[arg(long)]
    kmod_ok: u8,
    #[arg(long)]
    userspace_ok: u8,
    /// Phase times: `name<TAB>seconds<TAB>status` lines.
    #[arg(long)]
    phases: PathBuf,
    /// Where to write the JSON results.
    #[arg(long)]
    json: PathBuf,
}

#[derive(Serialize)]
struct Phase {
    name: String,
    seconds: u64,
    status: i32,
}

#[derive(Serialize)]
struct Report<'a> {
    summary: Summary,
    tests: &'a [TestResult],
    phases: Vec<Phase>,
}

#[derive(Serialize, Default, PartialEq, Debug)]
struct Summary {
    passed: usize,
    failed: usize,
    skipped: usize,
}

fn summarize(tests: &[TestResult]) -> Summary {
    let mut s = Summary::default();
    for t in tests {
        match t.status {
            Status::Pass => s.passed += 1,
            Status::Fail => s.failed += 1,
            Status::Skip => s.skipped += 1,
        }
    }
    s
}

fn read_opt(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Every result: the host's, each guest's (with the tests it planned but never reported), and
/// dmesg-clean over all guests' kernel logs.
fn results(a: &ReportArgs) -> Result<Vec<TestResult>> {
    let host = std::fs::read_to_string(&a.host)
        .with_context(|| format!("reading host results {}", a.host.display()))?;
    let mut tests = tap::parse(&host);

    if a.guest_dir.len() != a.guest_status.len() {
        anyhow::bail!(
            "{} --guest-dir but {} --guest-status",
            a.guest_dir.len(),
            a.guest_status.len()
        );
    }
    let many = a.guest_dir.len() > 1;
    let mut complaints = Vec::new();
    let mut no_log = Vec::new();
    for (dir, &status) in a.guest_dir.iter().zip(&a.guest_status) {
        // "guest-1: " in front of what a guest reports when there are several.
        let who = if many {
            format!(
                "{}: ",
                dir.file_name()
                    .map_or("guest".into(), |n| n.to_string_lossy())
            )
        } else {
            String::new()
        };
        let guest_tap = read_opt(&dir.join("tap.txt")).unwrap_or_default();
        let console = read_opt(&dir.join("console.log")).unwrap_or_default();
        let guest = tap::parse(&guest_tap);
        let planned = tap::planned_names(&guest_tap);
        let guest_ran = status == 0;

        // Why guest tests may be missing: say it on each of them rather than dropping them.
        let why_missing = if a.kernel_ok == 0 {
            "not run: the kernel did not build (build/test/kernel.log)".to_string()
        } else if !guest_ran {
            let tail: Vec<&str> = console.lines().rev().take(5).collect();
            format!(
                "not run: {who}the guest stopped early (qemu.sh exit {status}); console ends: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            )
        } else {
            format!("not run: missing from {who}the guest's TAP")
        };
        for name in &planned {
            if !guest.iter().any(|t| &t.name == name) {
                tests.push(TestResult::fail(name, &why_missing));
            }
        }
        tests.extend(guest);
        if planned.is_empty() || !guest_ran {
            tests.push(TestResult::fail("guest.run", &why_missing));
        }

        // dmesg-clean: each guest's full kernel log, or its console when it died first.
        let log = read_opt(&dir.join("dmesg.txt")).unwrap_or(console);
        let kmemleak = read_opt(&dir.join("kmemleak.txt")).unwrap_or_default();
        if log.trim().is_empty() {
            no_log.push(format!("{who}no kernel log from the guest"));
        }
        let mut bad = dmesg::complaints(&log);
        bad.extend(dmesg::kmemleak_reports(&kmemleak));
        complaints.extend(bad.into_iter().map(|l| format!("{who}{l}")));
    }
    if a.kmod_ok == 0 {
        tests.push(TestResult::fail(
            "kmod.build",
            "vb2_resv.ko did not build (build/test/kmod.log)",
        ));
    }
    if a.userspace_ok == 0 {
        tests.push(TestResult::fail(
            "userspace.build",
            "cargo build failed (build/test/userspace.log)",
        ));
    }
    if a.kernel_ok == 0 {
        tests.push(TestResult::fail(
            "dmesg-clean",
            "not run: the kernel did not build (build/test/kernel.log)",
        ));
    } else if a.guest_dir.is_empty() {
        tests.push(TestResult::skip(
            "dmesg-clean",
            "no guest ran (only host tests were asked for)",
        ));
    } else if !no_log.is_empty() {
        tests.push(TestResult::fail("dmesg-clean", &no_log.join(" | ")));
    } else if complaints.is_empty() {
        tests.push(TestResult::pass("dmesg-clean", ""));
    } else {
        let shown: Vec<_> = complaints.iter().take(8).map(String::as_str).collect();
        tests.push(TestResult::fail("dmesg-clean", &shown.join(" | ")));
    }

    Ok(tests)
}

fn report(a: &ReportArgs) -> Result<bool> {
    let tests = results(a)?;
    println!("TAP version 13");
    println!("1..{}", tests.len());
    for (i, t) in tests.iter().enumerate() {
        println!("{}", t.tap_line(i + 1));
    }

    let phases: Vec<Phase> = std::fs::read_to_string(&a.phases)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Phase {
                name: f.next()?.to_string(),
                seconds: f.next()?.parse().ok()?,
                status: f.next()?.parse().ok()?,
            })
        })
        .collect();
    println!("# phase times:");
    for p in &phases {
        println!(
            "#   {:<12} {:>5} s{}",
            p.name,
            p.seconds,
            if p.status == 0 { "" } else { "  (failed)" }
        );
    }
    let total: u64 = phases.iter().map(|p| p.seconds).sum();
    println!("#   {:<12} {:>5} s", "total", total);

    let summary = summarize(&tests);
    let line = if summary.skipped > 0 {
        format!(
            "{} passed, {} failed, {} skipped",
            summary.passed, summary.failed, summary.skipped
        )
    } else {
        format!("{} passed, {} failed", summary.passed, summary.failed)
    };
    let ok = summary.failed == 0;
    let rep = Report {
        summary,
        tests: &tests,
        phases,
    };
    if let Some(dir) = a.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.json, serde_json::to_string_pretty(&rep)? + "\n")
        .with_context(|| format!("writing {}", a.json.display()))?;
    println!("{line}");
    Ok(ok)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Report(a) => {
            if !report(&a)? {
                std::process::exit(1);
            }
        }
        Cmd::DmesgCheck { file } => {
            let mut text = String::new();
            if file == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = read_opt(Path::new(&file))
                    .with_context(|| format!("cannot read kernel log {file}"))?;
            }
            let bad = dmesg::complaints(&text);
            for l in &bad {
                println!("{l}");
            }
            if !bad.is_empty() {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two guests: one ran its tests and is clean; the other died after its first test with a
    /// BUG in its log. The missing test, the dead guest and the BUG are all failures, named.
    #[test]
    fn several_guests() {
        let base = std::env::temp_dir().join(format!("vb2r-harness-{}", std::process::id()));
        let (g1, g2) = (base.join("guest-1"), base.join("guest-2"));
        for d in [&g1, &g2] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(base.join("host.tap"), "ok - cargo.test # 3\n").unwrap();
        std::fs::write(base.join("phases.tsv"), "").unwrap();
        std::fs::write(
            g1.join("tap.txt"),
            "# suite: a b\n1..2\nok 1 - a # time=1s\nok 2 - b # time=1s\n",
        )
        .unwrap();
        std::fs::write(g1.join("dmesg.txt"), "[    1.0] vb2_resv: loaded\n").unwrap();
        std::fs::write(
            g2.join("tap.txt"),
            "# suite: c d\n1..2\nok 1 - c # time=1s\n",
        )
        .unwrap();
        std::fs::write(
            g2.join("console.log"),
            "[    2.0] BUG: kernel NULL pointer dereference, address: 0000000000000000\n",
        )
        .unwrap();
        let a = ReportArgs {
            host: base.join("host.tap"),
            guest_dir: vec![g1, g2],
            guest_status: vec![0, 3],
            kernel_ok: 1,
            kmod_ok: 1,
            userspace_ok: 1,
            phases: base.join("phases.tsv"),
            json: base.join("results.json"),
        };
        let t = results(&a).unwrap();
        let _ = std::fs::remove_dir_all(&base);
        let get = |n: &str| t.iter().find(|r| r.name == n).unwrap();
        for n in ["cargo.test", "a", "b", "c"] {
            assert_eq!(get(n).status, Status::Pass, "{n}");
        }
        assert_eq!(get("d").status, Status::Fail);
        assert!(get("d")
            .detail
            .contains("guest-2: the guest stopped early (qemu.sh exit 3)"));
        assert_eq!(get("guest.run").status, Status::Fail);
        assert_eq!(get("dmesg-clean").status, Status::Fail);
        assert!(get("dmesg-clean").detail.starts_with("guest-2: "));
        assert!(get("dmesg-clean")
            .detail
            .contains("BUG: kernel NULL pointer"));
        assert_eq!(
            summarize(&t),
            Summary {
                passed: 4,
                failed: 3,
                skipped: 0
            }
        );
    }

    /// Only host tests asked for (VB2R_TESTS=setup.clone-anywhere): no guest, and dmesg-clean is
    /// a skip, not a failure for a missing log.
    #[test]
    fn host_tests_only() {
        let base = std::env::temp_dir().join(format!("vb2r-harness-host-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(
            base.join("host.tap"),
            "ok - cargo.test # 3\nok - setup.clone-anywhere # 2 clones\n",
        )
        .unwrap();
        let a = ReportArgs {
            host: base.join("host.tap"),
            guest_dir: vec![],
            guest_status: vec![],
            kernel_ok: 1,
            kmod_ok: 1,
            userspace_ok: 1,
            phases: base.join("phases.tsv"),
            json: base.join("results.json"),
        };
        let t = results(&a).unwrap();
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(t.len(), 3);
        assert_eq!(t[2].name, "dmesg-clean");
        assert_eq!(t[2].status, Status::Skip);
        assert_eq!(
            summarize(&t),
            Summary {
                passed: 2,
                failed: 0,
                skipped: 1
            }
        );
    }

    #[test]
    fn summary_counts_each_status() {
        let t = vec![
            TestResult::pass("a", ""),
            TestResult::fail("b", "x"),
            TestResult::skip("c", "why"),
            TestResult::pass("d", ""),
        ];
        assert_eq!(
            summarize(&t),
            Summary {
                passed: 2,
                failed: 1,
                skipped: 1
            }
        );
    }
}
