// SPDX-License-Identifier: GPL-2.0

//! vb2_resv: implicit-sync WRITE fences on the dma-bufs of V4L2 CAPTURE buffers.
//!
//! See `docs/design.md` for the hook design, the contexts each part runs in and the lock order.

use kernel::prelude::*;

mod ffi;
mod params;

use params::{AttachError, Mode, Target};

module! {
    type: Vb2Resv,
    name: "vb2_resv",
    authors: ["vb2-resv developers"],
    description: "dma_resv WRITE fences on V4L2 CAPTURE buffers while the hardware owns them",
    license: "GPL",
}

struct Vb2Resv {
    mode: Mode,
}

/// Formats a byte string for a log line (lossy: non-UTF-8 bytes become `?`).
struct Bytes<'a>(&'a [u8]);

impl core::fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for &c in self.0 {
            let c = if c.is_ascii_graphic() || c == b' ' { c as char } else { '?' };
            core::fmt::Write::write_char(f, c)?;
        }
        Ok(())
    }
}

impl kernel::Module for Vb2Resv {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let mode_text = ffi::param_mode();
        let Some(mode) = Mode::parse(mode_text) else {
            pr_err!(
                "invalid value '{}' for parameter 'mode': expected off, dqbuf or queue\n",
                Bytes(mode_text)
            );
            return Err(EINVAL);
        };
        let attach_text = ffi::param_attach();
        let targets = match params::parse_attach(attach_text) {
            Ok(t) => t,
            Err(e) => {
                match e {
                    AttachError::Empty => pr_err!(
                        "invalid value '{}' for parameter 'attach': empty entry\n",
                        Bytes(attach_text)
                    ),
                    AttachError::BadDriverName(n) => pr_err!(
                        "invalid value '{}' for parameter 'attach': '{}' is neither an absolute path nor a V4L2 driver name\n",
                        Bytes(attach_text),
                        Bytes(n)
                    ),
                    AttachError::TooMany => pr_err!(
                        "invalid value '{}' for parameter 'attach': more than {} entries\n",
                        Bytes(attach_text),
                        params::MAX_TARGETS
                    ),
                }
                return Err(EINVAL);
            }
        };
        pr_info!(
            "vb2_resv {} loaded: mode={} attach='{}' ({} target(s))\n",
            Bytes(ffi::version()),
            mode.name(),
            Bytes(attach_text),
            targets.len()
        );
        for t in targets.iter() {
            match t {
                Target::Path(p) => pr_info!("attach target: node {}\n", Bytes(p)),
                Target::Driver(d) => pr_info!("attach target: driver {}\n", Bytes(d)),
            }
        }
        Ok(Vb2Resv { mode })
    }
}

impl Drop for Vb2Resv {
    fn drop(&mut self) {
        pr_info!("vb2_resv unloaded (mode was {})\n", self.mode.name());
    }
}
