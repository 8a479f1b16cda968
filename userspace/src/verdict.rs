//! One verdict per arm: which hazard the arm shows, in words the cover letter can quote.
//!
//! Per frame, from the class of its content (on the first import path, the byte-exact one):
//! - forward: `sentinel`, or `torn` made of sentinel bytes: the GPU read before the decoder had
//!   written (what the decoder's fence fixes, for a consumer that waits for it);
//! - reverse: `later`, or `torn` made of a later frame's bytes: the decoder wrote while the GPU
//!   was still reading (what `wait_readers` fixes; no fence of the decoder's own can);
//! - layout: `zero`, `previous`, `stale`, `mismatch`: the wrong bytes, not the wrong time (a
//!   layout, import or cache problem: no fence changes it);
//! - decoder: `unwritten`, `partial`, or a buffer the driver flagged ERROR.
//!
//! The arm's verdict is every kind seen, or `none` when every frame is `correct`.

use crate::classify::{Class, Verdict};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hazard {
    Forward,
    Reverse,
    Layout,
    Decoder,
}

impl Hazard {
    pub fn name(self) -> &'static str {
        match self {
            Hazard::Forward => "forward",
            Hazard::Reverse => "reverse",
            Hazard::Layout => "layout",
            Hazard::Decoder => "decoder",
        }
    }

    /// The hazard one frame shows, if any.
    pub fn of(v: &Verdict) -> Option<Hazard> {
        if v.class == Class::Error {
            return Some(Hazard::Decoder);
        }
        Hazard::of_class(v.content, v.mix.later > v.mix.sentinel)
    }

    /// The hazard of a class; `torn_of_later`: a torn frame's other bytes are a later frame's.
    pub fn of_class(c: Class, torn_of_later: bool) -> Option<Hazard> {
        match c {
            Class::Correct => None,
            Class::Sentinel => Some(Hazard::Forward),
            Class::Torn if torn_of_later => Some(Hazard::Reverse),
            Class::Torn => Some(Hazard::Forward),
            Class::Later => Some(Hazard::Reverse),
            Class::Zero | Class::Previous | Class::Stale | Class::Mismatch => Some(Hazard::Layout),
            Class::Unwritten | Class::Partial | Class::Error => Some(Hazard::Decoder),
        }
    }
}

/// An arm's verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ArmVerdict {
    /// "none", or the hazards seen joined with "+" (forward+layout).
    pub verdict: String,
    pub frames: usize,
    pub forward: usize,
    pub reverse: usize,
    pub layout: usize,
    pub decoder: usize,
}

impl ArmVerdict {
    pub fn judge<'a>(frames: impl Iterator<Item = &'a Verdict>) -> ArmVerdict {
        ArmVerdict::of_hazards(frames.map(Hazard::of))
    }

    /// From class counts alone (torn counted as forward: no later frames were offered).
    pub fn from_counts(c: &crate::classify::Counts) -> ArmVerdict {
        ArmVerdict::of_hazards(
            Class::ALL
                .iter()
                .flat_map(|&k| std::iter::repeat_n(Hazard::of_class(k, false), c.get(k))),
        )
    }

    fn of_hazards(hazards: impl Iterator<Item = Option<Hazard>>) -> ArmVerdict {
        let mut a = ArmVerdict::default();
        for h in hazards {
            a.frames += 1;
            match h {
                Some(Hazard::Forward) => a.forward += 1,
                Some(Hazard::Reverse) => a.reverse += 1,
                Some(Hazard::Layout) => a.layout += 1,
                Some(Hazard::Decoder) => a.decoder += 1,
                None => {}
            }
        }
        let seen: Vec<&str> = [
            (Hazard::Forward, a.forward),
            (Hazard::Reverse, a.reverse),
            (Hazard::Layout, a.layout),
            (Hazard::Decoder, a.decoder),
        ]
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(h, _)| h.name())
        .collect();
        a.verdict = if seen.is_empty() {
            "none".into()
        } else {
            seen.join("+")
        };
        a
    }

    /// The line printed at the end of `verify` and put in the table.
    pub fn line(&self) -> String {
        if self.verdict == "none" {
            return format!("none: all {} frames correct", self.frames);
        }
        let mut parts = Vec::new();
        for (name, n, what) in [
            ("forward", self.forward, "GPU read before the decoder wrote"),
            ("reverse", self.reverse, "decoder wrote during the GPU read"),
            ("layout", self.layout, "wrong bytes, not a race"),
            ("decoder", self.decoder, "the decoder's own failure"),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n} of {} ({what})", self.frames));
            }
        }
        format!("{}: {}", self.verdict, parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Mix;

    fn v(content: Class, mix: Mix) -> Verdict {
        Verdict {
            class: content,
            content,
            bytes: 1,
            bytes_differing: 0,
            first_offsets: vec![],
            first_rows: vec![],
            rows_differing: 0,
            psnr_db: None,
            previous_frame: None,
            later_frame: None,
            cpu_unwritten: 0,
            mix,
        }
    }

    #[test]
    fn verdicts() {
        let fwd_torn = Mix {
            sentinel: 5,
            ..Default::default()
        };
        let rev_torn = Mix {
            later: 5,
            ..Default::default()
        };
        let all = [
            v(Class::Correct, Mix::default()),
            v(Class::Sentinel, Mix::default()),
            v(Class::Torn, fwd_torn),
            v(Class::Torn, rev_torn),
            v(Class::Later, Mix::default()),
            v(Class::Mismatch, Mix::default()),
        ];
        let a = ArmVerdict::judge(all.iter());
        assert_eq!((a.forward, a.reverse, a.layout, a.decoder), (2, 2, 1, 0));
        assert_eq!(a.verdict, "forward+reverse+layout");
        assert!(a
            .line()
            .starts_with("forward+reverse+layout: forward 2 of 6"));
        let ok = ArmVerdict::judge(all[..1].iter());
        assert_eq!(ok.verdict, "none");
        assert_eq!(ok.line(), "none: all 1 frames correct");
        let mut flagged = v(Class::Correct, Mix::default());
        flagged.class = Class::Error;
        assert_eq!(Hazard::of(&flagged), Some(Hazard::Decoder));
    }
}
