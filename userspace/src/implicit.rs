//! Does the GPU wait for a dma-buf's fences before it reads it? Measured, not looked up.
//!
//! A small NV12 dma-buf (system dma-heap) is imported into vgem (PRIME) and given a vgem WRITE
//! fence, which lands in the dma-buf's own reservation object: the one a GPU driver that does
//! kernel implicit sync waits on (panfrost does, for every BO of a job). Only this tool can
//! signal it. The GPU then samples the buffer through the same EGL import as the frames, while
//! a second thread signals the fence after `hold`; the time the sample took is the answer. A
//! control on the same buffer and a fresh fence, poll(POLLIN) on the dma-buf (what KWin does),
//! must block for about `hold`: it shows the probe fence is real.

use crate::gpu::{self, DmaBufNv12, Gpu, Images, ImportPath};
use crate::sys;
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// The measurement, as the reports carry it.
#[derive(Clone, Debug, Serialize)]
pub struct ImplicitSync {
    /// "measured", or "not measured" (then `note` says why).
    pub status: String,
    /// The GPU waited for the held fence (true), did not (false), or the result is in between
    /// (None: neither under half nor over 80 % of the hold).
    pub waits: Option<bool>,
    /// How long the fence was held (ms) and the fence the GPU saw pending when it began
    /// (driver name, from EXPORT_SYNC_FILE).
    pub held_ms: u64,
    pub fence_driver: Option<String>,
    /// The GPU sample with the fence held, and without any fence (ms).
    pub gpu_blocked_ms: f64,
    pub gpu_unfenced_ms: f64,
    /// The control: poll(POLLIN) on the dma-buf with a fresh fence held for `held_ms`.
    pub poll_blocked_ms: f64,
    pub note: String,
}

impl ImplicitSync {
    pub fn not_measured(note: impl Into<String>) -> ImplicitSync {
        ImplicitSync {
            status: "not measured".into(),
            waits: None,
            held_ms: 0,
            fence_driver: None,
            gpu_blocked_ms: 0.0,
            gpu_unfenced_ms: 0.0,
            poll_blocked_ms: 0.0,
            note: note.into(),
        }
    }

    /// One line for the table and the console.
    pub fn describe(&self) -> String {
        if self.status != "measured" {
            return format!("not measured ({})", self.note);
        }
        format!(
            "{}: with a {} WRITE fence held {} ms on the imported dma-buf the GPU read took {:.1} ms (without a fence {:.1} ms); poll(POLLIN) on the same buffer waited {:.1} ms",
            match self.waits {
                Some(true) => "yes (measured)",
                Some(false) => "no (measured)",
                None => "inconclusive (measured)",
            },
            self.fence_driver.as_deref().unwrap_or("?"),
            self.held_ms,
            self.gpu_blocked_ms,
            self.gpu_unfenced_ms,
            self.poll_blocked_ms
        )
    }
}

/// The verdict from the numbers: waited when the read took most of the hold, not when it took
/// less than half of it (and than half of the control's wait).
pub fn verdict(held_ms: u64, gpu_blocked_ms: f64) -> Option<bool> {
    let h = held_ms as f64;
    if gpu_blocked_ms >= 0.8 * h {
        Some(true)
    } else if gpu_blocked_ms < 0.5 * h {
        Some(false)
    } else {
        None
    }
}

const KEY: u32 = u32::MAX - 7;

/// Holds a vgem fence on the buffer for `hold` from another thread while `f` runs; returns
/// how long `f` took and the pending fence's driver seen just before it.
fn with_held_fence<T>(
    vgem: &sys::Vgem,
    handle: u32,
    dmabuf: &std::fs::File,
    hold: Duration,
    f: impl FnOnce() -> Result<T>,
) -> Result<(f64, Option<String>, T)> {
    let fence = vgem
        .fence_attach(handle, sys::VGEM_FENCE_WRITE)
        .map_err(|e| anyhow!("VGEM_FENCE_ATTACH: {e}"))?;
    let (fences, _sf) = sys::write_fences(dmabuf)?;
    let driver = fences
        .iter()
        .find(|f| f.pending())
        .map(|f| f.driver.clone());
    std::thread::scope(|s| {
        let signaler = s.spawn(move || {
            std::thread::sleep(hold);
            vgem.fence_signal(fence)
        });
        let t = Instant::now();
        let r = f();
        let took = t.elapsed().as_secs_f64() * 1e3;
        let sig = signaler
            .join()
            .map_err(|_| anyhow!("the fence thread panicked"))?;
        sig.map_err(|e| anyhow!("VGEM_FENCE_SIGNAL: {e}"))?;
        Ok((took, driver.clone(), r?))
    })
}

/// Measures whether `gpu` waits for a fence held `hold` on a buffer it samples.
pub fn measure(gpu: &mut Gpu, hold: Duration) -> Result<ImplicitSync> {
    let vgem = match sys::Vgem::open() {
        Ok(v) => v,
        Err(e) => return Ok(ImplicitSync::not_measured(format!("{e:#}"))),
    };
    let (w, h, stride) = (64u32, 64u32, 64u32);
    let size = stride * h * 3 / 2;
    let file = sys::heap_alloc(u64::from(size)).context("implicit-sync probe buffer")?;
    let map = sys::DmaBufMap::new(file, size as usize, "implicit-sync probe buffer")?;
    map.access(sys::DMA_BUF_SYNC_WRITE, |b| b.fill(0x80))?;
    let handle = vgem.import(&map.file().as_fd())?;
    let view = DmaBufNv12 {
        key: KEY,
        fd: map.file().as_fd(),
        width: w,
        height: h,
        stride,
        uv_offset: stride * h,
        modifier: gpu::DRM_FORMAT_MOD_LINEAR,
    };
    // Without a fence first (this also compiles the shaders and warms the import path).
    gpu.sample(ImportPath::Kwin, Images::PerFrame, &view, false)?;
    let t = Instant::now();
    gpu.sample(ImportPath::Kwin, Images::PerFrame, &view, false)?;
    let unfenced = t.elapsed().as_secs_f64() * 1e3;
    let (gpu_ms, driver, _) = with_held_fence(&vgem, handle, map.file(), hold, || {
        gpu.sample(ImportPath::Kwin, Images::PerFrame, &view, false)
    })?;
    if driver.as_deref() != Some("vgem") {
        bail!(
            "implicit-sync probe: the held fence is not visible on the dma-buf (pending: {})",
            driver.as_deref().unwrap_or("none")
        );
    }
    let (poll_ms, _, ready) = with_held_fence(&vgem, handle, map.file(), hold, || {
        sys::poll_in(map.file(), hold * 10).map(|(_, r)| r)
    })?;
    if !ready {
        bail!("implicit-sync probe: poll(POLLIN) never saw the fence signaled");
    }
    let held_ms = hold.as_millis() as u64;
    Ok(ImplicitSync {
        status: "measured".into(),
        waits: verdict(held_ms, gpu_ms),
        held_ms,
        fence_driver: driver,
        gpu_blocked_ms: gpu_ms,
        gpu_unfenced_ms: unfenced,
        poll_blocked_ms: poll_ms,
        note: format!("vgem ({}), dma-heap buffer {w}x{h}", vgem.path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_thresholds() {
        assert_eq!(verdict(300, 1.2), Some(false));
        assert_eq!(verdict(300, 149.0), Some(false));
        assert_eq!(verdict(300, 200.0), None);
        assert_eq!(verdict(300, 240.0), Some(true));
        assert_eq!(verdict(300, 301.5), Some(true));
        let n = ImplicitSync::not_measured("no vgem render node under /dev/dri (is vgem loaded?)");
        assert_eq!(
            n.describe(),
            "not measured (no vgem render node under /dev/dri (is vgem loaded?))"
        );
    }
}
