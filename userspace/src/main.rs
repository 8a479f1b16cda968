//! `vb2-resv`: the verifier's command line.

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use vb2r::decode::{self, DecodeMode, DecodeOptions, DecoderArgs, NoHook};
use vb2r::kmod::Mode;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The machine as the verifier sees it: media devices and topology, stateless decoders,
    /// the vb2_resv module, dma-coherent device-tree nodes.
    Probe {
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Decode an Annex-B H.264 stream on a V4L2 stateless decoder and report, per frame, the
    /// CAPTURE dma-buf's fences, timings and CPU-view checksums.
    Decode {
        /// The H.264 Annex-B elementary stream.
        input: PathBuf,
        #[command(flatten)]
        decoder: DecoderArgs,
        /// Write the report as JSON (docs/report-format.md).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Set vb2_resv's mode first: off, dqbuf or queue (the module must be loaded).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<Mode>,
        /// Force frame-based or slice-based decoding (default: frame-based when offered).
        #[arg(long, value_parser = parse_decode_mode)]
        decode_mode: Option<DecodeMode>,
        /// Do not print the per-frame table.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Decode, sample every frame's CAPTURE dma-buf through EGL (as KWin imports it) and
    /// classify what the GPU saw against the CPU view (userspace/src/verify.rs).
    Verify(Box<vb2r::verify::VerifyArgs>),
    /// Preflight before the evidence run: kernel config (CONFIG_RUST), build tree and rustc,
    /// decoders, panfrost, dma-coherent, Mesa, vb2_resv; each problem with its fix. Exits 0
    /// whenever it ran (docs/pinetab2.md).
    Doctor(vb2r::doctor::DoctorArgs),
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| format!("unknown mode '{s}' (off, dqbuf, queue, strict)"))
}

fn parse_decode_mode(s: &str) -> Result<DecodeMode, String> {
    DecodeMode::parse(s).ok_or_else(|| format!("unknown decode mode '{s}' (frame, slice)"))
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Verify(a) => vb2r::verify::run(&a),
        Cmd::Doctor(a) => vb2r::doctor::run(&a),
        Cmd::Probe { json } => {
            let p = vb2r::probe::probe();
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", p.render());
            }
            Ok(())
        }
        Cmd::Decode {
            input,
            decoder,
            json,
            mode,
            decode_mode,
            quiet,
        } => {
            let opts = DecodeOptions {
                mode,
                decode_mode,
                progress: std::io::stderr().is_terminal(),
                ..decoder.options()?
            };
            let report = decode::decode(&input, &opts, &mut NoHook)?;
            if let Some(j) = json {
                let s = serde_json::to_string_pretty(&report)?;
                std::fs::write(&j, s).with_context(|| format!("cannot write {}", j.display()))?;
            }
            let text = report.render();
            if quiet {
                // The header and the totals only.
                for l in text
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with(' '))
                {
                    println!("{l}");
                }
            } else {
                print!("{text}");
            }
            let s = &report.summary;
            if s.errors > 0 || !s.display_order_ok {
                return Err(anyhow!(
                    "{}: {} ERROR buffers, display order {}",
                    input.display(),
                    s.errors,
                    if s.display_order_ok { "ok" } else { "wrong" }
                ));
            }
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // One line: the context chain joined.
        eprintln!("vb2-resv: {e:#}");
        std::process::exit(1);
    }
}
