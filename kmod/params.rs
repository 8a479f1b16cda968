// SPDX-License-Identifier: GPL-2.0

//! Module parameters: parsing and validation of the raw text that `glue.c` stores.
//!
//! Pure functions over byte slices, so that they can be tested by KUnit in isolation.

use kernel::prelude::*;

/// What the module does to the CAPTURE buffers of an attached node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Attached, but adds no fence (the A arm of an A/B run without rmmod).
    Off,
    /// A fence attached at DQBUF, already signaled: what a DQBUF-time fence can and cannot do.
    Dqbuf,
    /// A WRITE fence from QBUF, before the buffer can reach the hardware, until the driver
    /// returns it (the upstream RFC's first version, armed from buf_queue). Its fence can
    /// depend on userspace (a stateless decoder's bitstream request may never come).
    Queue,
    /// The default: a WRITE fence only while a job that writes the buffer is committed (needs
    /// no further userspace action) or running, ended at job end (docs/design.md, "Mode strict").
    Strict,
}

impl Mode {
    /// Every mode with its parameter spelling, in the order `mode=` documents them.
    pub(crate) const ALL: [(Mode, &'static str); 4] = [
        (Mode::Off, "off"),
        (Mode::Dqbuf, "dqbuf"),
        (Mode::Queue, "queue"),
        (Mode::Strict, "strict"),
    ];

    /// The parameter spelling of this mode.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Dqbuf => "dqbuf",
            Mode::Queue => "queue",
            Mode::Strict => "strict",
        }
    }

    /// A stable number for this mode (the misc device's VB2_RESV_IOC_{GET,SET}_MODE values).
    pub(crate) fn index(self) -> u32 {
        match self {
            Mode::Off => 0,
            Mode::Dqbuf => 1,
            Mode::Queue => 2,
            Mode::Strict => 3,
        }
    }

    /// The mode numbered `i` by [`Mode::index`] (an unknown number reads as `Off`).
    pub(crate) fn from_index(i: u32) -> Mode {
        Self::try_from_index(i).unwrap_or(Mode::Off)
    }

    /// The mode numbered `i`, if there is one.
    pub(crate) fn try_from_index(i: u32) -> Option<Mode> {
        Self::ALL.iter().map(|(m, _)| *m).find(|m| m.index() == i)
    }

    /// Parses `off`, `dqbuf`, `queue` or `strict` (surrounding white space ignored).
    pub(crate) fn parse(text: &[u8]) -> Option<Mode> {
        let text = trim(text);
        Self::ALL
            .iter()
            .find(|(_, n)| n.as_bytes() == text)
            .map(|(m, _)| *m)
    }
}

/// One entry of the `attach=` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// An absolute path to a device node, e.g. `/dev/video0`.
    Path(&'a [u8]),
    /// A V4L2 driver name as VIDIOC_QUERYCAP reports it, e.g. `visl`.
    Driver(&'a [u8]),
}

/// Why an `attach=` list was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttachError<'a> {
    /// An entry is empty (`a,,b` or a trailing comma).
    Empty,
    /// A driver name with a character outside `[A-Za-z0-9_.-]`, or longer than V4L2 allows.
    BadDriverName(&'a [u8]),
    /// More entries than [`MAX_TARGETS`].
    TooMany,
}

/// How many `/dev/videoN` nodes a driver-name entry of `attach=` looks through.
pub(crate) const MAX_VIDEO_NODES: u32 = 64;

/// Why a node could not be attached, for the log line (`errno` negative).
pub(crate) fn why(errno: i32) -> &'static str {
    match -errno {
        2 => "no such file",
        19 => "the driver is going away",
        22 => "a V4L2 node, but not a video capture or mem2mem node driven by videobuf2",
        25 => "not a V4L2 video node",
        9 => "not an open file",
        16 => "already attached",
        _ => "cannot open it",
    }
}

/// The most entries `attach=` takes.
pub(crate) const MAX_TARGETS: usize = 16;
/// `struct v4l2_capability.driver` is 16 bytes with its NUL.
const MAX_DRIVER_NAME: usize = 15;

/// Splits and checks an `attach=` list; an empty or all-blank list gives no entries.
pub(crate) fn parse_attach(text: &[u8]) -> core::result::Result<KVec<Target<'_>>, AttachError<'_>> {
    let mut out = KVec::new();
    let text = trim(text);
    if text.is_empty() {
        return Ok(out);
    }
    for entry in text.split(|&c| c == b',') {
        let entry = trim(entry);
        if entry.is_empty() {
            return Err(AttachError::Empty);
        }
        if out.len() == MAX_TARGETS {
            return Err(AttachError::TooMany);
        }
        let target = if entry[0] == b'/' {
            Target::Path(entry)
        } else if entry.len() <= MAX_DRIVER_NAME
            && entry
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        {
            Target::Driver(entry)
        } else {
            return Err(AttachError::BadDriverName(entry));
        };
        // A failed push means no memory; report it as too many rather than panicking.
        out.push(target, GFP_KERNEL)
            .map_err(|_| AttachError::TooMany)?;
    }
    Ok(out)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !first.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !last.is_ascii_whitespace() {
            break;
        }
        s = rest;
    }
    s
}

// 7.x only: 6.12 has no #[kunit_tests] (6.15+), and kmod.kunit skips there with that reason.
#[cfg(not(vb2r_k612))]
#[kunit_tests(vb2_resv_params)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_every_documented_name() {
        for (mode, name) in Mode::ALL {
            assert_eq!(Mode::parse(name.as_bytes()), Some(mode));
            assert_eq!(mode.name(), name);
        }
        assert_eq!(Mode::parse(b" queue\n"), Some(Mode::Queue));
    }

    #[test]
    fn mode_refuses_unknown_names() {
        assert_eq!(Mode::parse(b""), None);
        assert_eq!(Mode::parse(b"Queue"), None);
        assert_eq!(Mode::parse(b"queued"), None);
        assert_eq!(Mode::parse(b"1"), None);
    }

    #[test]
    fn mode_numbers_round_trip() {
        for (mode, _) in Mode::ALL {
            assert_eq!(Mode::try_from_index(mode.index()), Some(mode));
        }
        assert_eq!(Mode::try_from_index(4), None);
    }

    #[test]
    fn attach_splits_paths_and_drivers() {
        let t = parse_attach(b"/dev/video0, visl ,vim2m\n").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0], Target::Path(b"/dev/video0"));
        assert_eq!(t[1], Target::Driver(b"visl"));
        assert_eq!(t[2], Target::Driver(b"vim2m"));
        assert_eq!(parse_attach(b"").unwrap().len(), 0);
        assert_eq!(parse_attach(b"  \n").unwrap().len(), 0);
    }

    #[test]
    fn attach_refuses_bad_lists() {
        assert_eq!(parse_attach(b"visl,,vivid"), Err(AttachError::Empty));
        assert_eq!(parse_attach(b"visl,"), Err(AttachError::Empty));
        assert_eq!(
            parse_attach(b"vi sl"),
            Err(AttachError::BadDriverName(b"vi sl"))
        );
        assert_eq!(
            parse_attach(b"a-driver-name-too-long"),
            Err(AttachError::BadDriverName(b"a-driver-name-too-long"))
        );
        assert_eq!(
            parse_attach(b"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q"),
            Err(AttachError::TooMany)
        );
    }
}
