//! The synthetic stand-in decoder of `vb2-resv verify --synthetic N`: it writes made-up pictures
//! (or real ones, `--yuv`) into dma-heap buffers through the CPU, with a decoder's layout, and
//! misbehaves in a chosen way (`--fault`). It proves the GPU path, the classifier and the ground
//! truth end to end where no decoder is (or on a new GPU).

use crate::gpu;
use crate::layout::Nv12Layout;
use crate::sampler::{NvBuffer, Sampler};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// What the synthetic stand-in decoder does wrong (`--fault`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Writes the whole frame before the request counts as queued.
    None,
    /// Writes the frame only after "queued": a GPU sampling at queued sees the sentinel.
    Late,
    /// Writes the first half before "queued", the rest after: torn.
    Half,
    /// Zero-fills the buffer before "queued", writes the frame after: zero.
    Zero,
    /// The buffer holds the previous frame at "queued" (a reference copy), the frame after.
    Previous,
    /// Never writes the buffer at all: the CPU view is the sentinel (unwritten).
    Skip,
    /// Writes only the top half of the picture, ever: the CPU view keeps sentinel runs (partial).
    Partial,
    /// The top half holds the previous frame at "queued", the bottom half the new one; the whole
    /// frame after (stale: older bytes, which no early read can show).
    Stale,
    /// Flags every frame with V4L2_BUF_FLAG_ERROR.
    Error,
    /// The GPU imports the chroma plane one row early (a layout bug): mismatch.
    UvOffset,
    /// Writes a wrong picture (one byte changed in the middle frame) the same way for the CPU
    /// and the GPU: `correct` to the sampler, caught only by the ground truth (`decode_ok`).
    Corrupt,
}

/// A dma-heap buffer mapped for the synthetic decoder.
struct HeapBuffer {
    index: u32,
    layout: Nv12Layout,
    map: crate::sys::DmaBufMap,
}

impl HeapBuffer {
    fn new(index: u32, layout: Nv12Layout) -> Result<HeapBuffer> {
        let file = crate::sys::heap_alloc(u64::from(layout.size))
            .with_context(|| format!("synthetic buffer {index} ({} bytes)", layout.size))?;
        let what = format!("synthetic buffer {index}");
        let map = crate::sys::DmaBufMap::new(file, layout.size as usize, &what)?;
        Ok(HeapBuffer { index, layout, map })
    }
}

impl NvBuffer for HeapBuffer {
    fn index(&self) -> u32 {
        self.index
    }
    fn fd(&self) -> BorrowedFd<'_> {
        self.map.file().as_fd()
    }
    fn layout(&self) -> Nv12Layout {
        self.layout
    }
    fn write(&self, f: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        self.map.access(crate::sys::DMA_BUF_SYNC_WRITE, f)
    }
}

/// The synthetic decoder's picture `n`: a gradient with a moving block, different every frame.
pub fn synthetic_frame(n: usize, l: &Nv12Layout) -> Vec<u8> {
    let mut raw = vec![0x10u8; l.size as usize];
    let (w, h, s) = (l.width as usize, l.height as usize, l.stride as usize);
    let bx = (n * 7) % w.max(1);
    for y in 0..h {
        for x in 0..w {
            let inblock = x >= bx && x < bx + 16 && (y / 16) % 4 == n % 4;
            raw[y * s + x] = if inblock {
                235
            } else {
                16 + ((x + 2 * y + 3 * n) % 220) as u8
            };
        }
    }
    let uv = l.uv_offset as usize;
    for y in 0..h / 2 {
        for x in 0..w / 2 {
            raw[uv + y * s + 2 * x] = 78 + ((x * 3 + n * 5) % 100) as u8;
            raw[uv + y * s + 2 * x + 1] = 78 + ((y * 3 + n * 7) % 100) as u8;
        }
    }
    raw
}

/// Reads `n` packed visible NV12 pictures of `vw`x`vh` from `path` and lays each out in `l`.
fn yuv_frames(path: &Path, n: usize, l: &Nv12Layout) -> Result<Vec<Vec<u8>>> {
    let (vw, vh) = (l.visible_width as usize, l.visible_height as usize);
    let one = crate::truth::visible_size(l.visible_width, l.visible_height);
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if data.len() % one != 0 || data.len() / one < n {
        bail!(
            "{}: {} bytes is not {n} or more NV12 pictures of {vw}x{vh} ({one} bytes each)",
            path.display(),
            data.len()
        );
    }
    let (s, uv, uvw) = (l.stride as usize, l.uv_offset as usize, vw.div_ceil(2) * 2);
    Ok(data
        .chunks_exact(one)
        .take(n)
        .enumerate()
        .map(|(k, pic)| {
            // The padding around the picture changes with the frame, as a decoder's would.
            let mut raw = vec![(k as u8).wrapping_mul(37) | 1; l.size as usize];
            for y in 0..vh {
                raw[y * s..y * s + vw].copy_from_slice(&pic[y * vw..(y + 1) * vw]);
            }
            let c = &pic[vw * vh..];
            for y in 0..vh.div_ceil(2) {
                raw[uv + y * s..uv + y * s + uvw].copy_from_slice(&c[y * uvw..(y + 1) * uvw]);
            }
            raw
        })
        .collect())
}

/// Runs the synthetic stand-in decoder: 4 buffers in turn, `n` frames, made up or from `yuv`.
/// Its buffers have a decoder's layout: the coded size in macroblocks, 64-byte row alignment.
pub fn run_synthetic(
    s: &mut Sampler<'_>,
    n: usize,
    size: (u32, u32),
    sizeimage: Option<u32>,
    fault: Fault,
    yuv: Option<&Path>,
) -> Result<serde_json::Value> {
    let (w, h) = size;
    let (cw, ch) = (w.div_ceil(16) * 16, h.div_ceil(16) * 16);
    let stride = cw.div_ceil(64) * 64;
    let picture = stride * ch * 3 / 2;
    // A decoder may append its own data after the picture (hantro: the H.264 motion vectors,
    // 64 bytes per macroblock + 32: 3655712 bytes at 1920x1088); the buffer is that big.
    let size = match sizeimage {
        None => picture,
        Some(n) if n >= picture => n,
        Some(n) => bail!(
            "--sizeimage {n}: smaller than the NV12 picture of {cw}x{ch} stride {stride} ({picture} bytes)"
        ),
    };
    let layout = Nv12Layout {
        width: cw,
        height: ch,
        visible_width: w,
        visible_height: h,
        stride,
        uv_offset: stride * ch,
        size,
        modifier: gpu::DRM_FORMAT_MOD_LINEAR,
    };
    let pictures = match yuv {
        Some(p) => Some(yuv_frames(p, n, &layout)?),
        None => None,
    };
    let bufs: Vec<HeapBuffer> = (0..4)
        .map(|i| HeapBuffer::new(i, layout))
        .collect::<Result<_>>()?;
    s.uv_shift = fault == Fault::UvOffset;
    let mut last: Option<Vec<u8>> = None;
    for f in 0..n {
        let b = &bufs[f % bufs.len()];
        let mut content = match &pictures {
            Some(p) => p[f].clone(),
            None => synthetic_frame(f, &layout),
        };
        if fault == Fault::Corrupt && f == n / 2 {
            let mid = (layout.visible_height as usize / 2) * layout.stride as usize
                + layout.visible_width as usize / 2;
            content[mid] ^= 0x20;
        }
        s.before_qbuf(f, b)?;
        let half = (layout.uv_offset as usize) / 2;
        match fault {
            Fault::None | Fault::Error | Fault::UvOffset | Fault::Corrupt => {
                b.write(&mut |m| m.copy_from_slice(&content))?
            }
            Fault::Half => b.write(&mut |m| m[..half].copy_from_slice(&content[..half]))?,
            Fault::Zero => b.write(&mut |m| m.fill(0))?,
            Fault::Previous => {
                if let Some(p) = &last {
                    b.write(&mut |m| m.copy_from_slice(p))?
                }
            }
            Fault::Stale => b.write(&mut |m| {
                m.copy_from_slice(&content);
                if let Some(p) = &last {
                    m[..half].copy_from_slice(&p[..half]);
                }
            })?,
            Fault::Late | Fault::Skip | Fault::Partial => {}
        }
        s.queued(f, b)?;
        match fault {
            Fault::Skip => {}
            Fault::Partial => b.write(&mut |m| m[..half].copy_from_slice(&content[..half]))?,
            _ => b.write(&mut |m| m.copy_from_slice(&content))?,
        }
        s.dqbuf_done(f, b)?;
        let cpu = b.map.read()?;
        s.dequeued(f, b, fault == Fault::Error, &cpu)?;
        last = Some(content);
    }
    Ok(serde_json::json!({
        "driver": "synthetic",
        "card": "CPU-written stand-in decoder on /dev/dma_heap/system",
        "fault": fault,
        "frames": n,
        "pictures": yuv.map_or_else(|| "made up".to_string(), |p| p.display().to_string()),
        "capture": layout,
    }))
}
