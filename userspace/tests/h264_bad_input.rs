//! Bad inputs (issue 4): each one gives one clear error line naming the problem, never a panic.

use std::path::{Path, PathBuf};

use vb2r::h264::{self, H264Error};

fn stream(name: &str) -> Vec<u8> {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/streams")
        .join(name);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/make-streams.sh)", p.display()))
}

fn err(name: &str) -> H264Error {
    let e = h264::parse(&stream(name)).expect_err(name);
    let m = e.to_string();
    assert!(!m.is_empty() && !m.contains('\n'), "{name}: {m:?}");
    e
}

#[test]
fn not_h264() {
    for name in [
        "bad-empty.h264",
        "bad-not-h264.png",
        "bad-mp4-container.mp4",
    ] {
        let e = err(name);
        assert!(matches!(e, H264Error::NotH264(_)), "{name}: {e}");
        assert!(
            e.to_string().starts_with("not an H.264 Annex-B stream"),
            "{name}: {e}"
        );
    }
}

#[test]
fn truncated() {
    let e = err("bad-truncated.h264");
    assert!(matches!(e, H264Error::Truncated(_)), "{e}");
    assert!(e.to_string().contains("slice header"), "{e}");
}

#[test]
fn unsupported_formats_are_named() {
    for (name, what) in [
        ("bad-high422.h264", "4:2:2"),
        ("bad-high10.h264", "10-bit"),
        ("bad-interlaced.h264", "interlaced"),
    ] {
        let e = err(name);
        assert!(matches!(e, H264Error::Unsupported(_)), "{name}: {e}");
        assert!(e.to_string().contains(what), "{name}: {e}");
    }
}

/// Every cut of a real stream either parses (a cut between pictures, or inside slice data,
/// which header parsing cannot see) or gives a one-line error; never a panic.
#[test]
fn real_stream_cuts_and_flips_never_panic() {
    for name in [
        "high-bpyramid-320x240.h264",
        "main-slices-320x240.h264",
        "baseline-320x240.h264",
    ] {
        let data = stream(name);
        let full = h264::parse(&data).unwrap();
        let mut errors = 0;
        for cut in (0..data.len()).step_by(97) {
            match h264::parse(&data[..cut]) {
                Ok(s) => assert!(s.pictures.len() <= full.pictures.len()),
                Err(e) => {
                    assert!(!e.to_string().contains('\n'));
                    errors += 1;
                }
            }
        }
        assert!(errors > 0, "{name}: no cut was noticed");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut d = data.clone();
            // Flip bits in the first 2 KB (parameter sets and the first slice headers).
            let i = (x as usize >> 8) % d.len().min(2048);
            d[i] ^= 1 << (x % 8);
            if let Err(e) = h264::parse(&d) {
                assert!(!e.to_string().contains('\n'));
            }
        }
    }
}
