//! The layout of a decoded NV12 picture in its CAPTURE buffer: what the decoder negotiates, the
//! report records and the samplers import (no dependency on any of them).

use serde::Serialize;

/// The layout of an NV12 CAPTURE buffer: one plane, Y then interleaved CbCr at `uv_offset`.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Nv12Layout {
    /// Coded (driver-aligned) size.
    pub width: u32,
    pub height: u32,
    pub visible_width: u32,
    pub visible_height: u32,
    /// bytesperline of the Y and CbCr planes.
    pub stride: u32,
    /// stride * height.
    pub uv_offset: u32,
    /// sizeimage (hantro appends its motion-vector area after the picture).
    pub size: u32,
    /// DRM_FORMAT_MOD_LINEAR: V4L2 has no modifiers.
    pub modifier: u64,
}
