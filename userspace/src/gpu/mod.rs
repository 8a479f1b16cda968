//! EGL/GLES sampling of decoded NV12 dma-bufs, the way a compositor imports them.
//!
//! libEGL is loaded at run time (khronos-egl, `dynamic`): `VB2R_LIBEGL` names another file to
//! load instead of `libEGL.so.1`. The display is either Mesa's surfaceless platform
//! (`EGL_PLATFORM_SURFACELESS_MESA`) or a GBM device on a DRM render node (`EGL_PLATFORM_GBM_KHR`,
//! libgbm also loaded at run time). GLES 3 through glow; the extension entry points
//! (glEGLImageTargetTexture2DOES, eglQueryDmaBufFormatsEXT/ModifiersEXT, eglQueryDisplayAttribEXT,
//! eglQueryDeviceStringEXT) come from eglGetProcAddress.
//!
//! Import paths:
//! - [`ImportPath::Kwin`]: plane 0 as DRM_FORMAT_R8 and plane 1 as DRM_FORMAT_GR88 at the plane
//!   offset, two EGLImages bound to GL_TEXTURE_2D. With [`Images::Cached`] they are created
//!   once per buffer and reused for every later frame in it (KWin's EGL backend keeps them per
//!   dma-buf); with [`Images::PerFrame`] they are created and destroyed for each frame (Weston).
//!   Raw planes: each plane is drawn with texelFetch into an R8 / RG8 target and read back;
//!   they must equal the CPU view byte for byte. RGB: a shader converts (BT.601 and BT.709,
//!   limited range) into RGBA8; it must be within 1 of the CPU's conversion on every channel.
//! - [`ImportPath::External`]: one NV12 EGLImage (with the colour-space and range hints) bound to
//!   GL_TEXTURE_EXTERNAL_OES and sampled through samplerExternalOES, which returns RGB converted
//!   by the driver. The raw planes cannot be read directly: the shader samples each texel
//!   (nearest, at texel centres) and applies the exact inverse of the hinted conversion in
//!   float; the result rounds back to the original bytes when the driver converts with the
//!   standard coefficients and does not clamp before the shader sees the value. So "equal" for
//!   this path means: the recovered Y and CbCr bytes equal the CPU view byte for byte (chroma at
//!   the even luma positions, nearest sampling), and the driver's RGB is within 1 of the CPU's
//!   conversion with the hinted matrix.
//!
//! The files: `display.rs` opens the EGL display (surfaceless or GBM) and its GLES 3 context;
//! `import.rs` turns a dma-buf into EGLImages and textures (formats, modifiers, attribute
//! lists); `cache.rs` keeps them per buffer or per frame; `draw.rs` draws and reads back with
//! the programs of `shaders.rs`; `color.rs` is the CPU's YCbCr -> RGB reference and comparison.

mod cache;
mod color;
mod display;
mod draw;
mod import;
mod shaders;

pub use color::{compare_rgb, nv12_to_rgb, Matrix, RgbDiff, RGB_TOLERANCE};
pub use display::Gpu;

use crate::classify::Geometry;
use serde::Serialize;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

/// DRM fourccs and modifiers.
pub const DRM_FORMAT_R8: u32 = fourcc(b"R8  ");
pub const DRM_FORMAT_GR88: u32 = fourcc(b"GR88");
pub const DRM_FORMAT_NV12: u32 = fourcc(b"NV12");
pub const DRM_FORMAT_MOD_LINEAR: u64 = 0;
pub const DRM_FORMAT_MOD_INVALID: u64 = 0x00ff_ffff_ffff_ffff;

const fn fourcc(c: &[u8; 4]) -> u32 {
    (c[0] as u32) | (c[1] as u32) << 8 | (c[2] as u32) << 16 | (c[3] as u32) << 24
}

pub fn fourcc_name(f: u32) -> String {
    f.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { ' ' })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Which EGL platform to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Platform {
    /// EGL_PLATFORM_SURFACELESS_MESA: no window system, Mesa picks the device; when every
    /// render node is vgem's (no GPU), Mesa's software device (EGL_EXT_platform_device)
    /// instead, so that llvmpipe does not run on vgem (display.rs).
    Surfaceless,
    /// A GBM device on a DRM render node (the given one, or the first under /dev/dri).
    Gbm(Option<PathBuf>),
}

/// How the NV12 buffer is imported (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportPath {
    Kwin,
    External,
}

impl ImportPath {
    pub fn name(self) -> &'static str {
        match self {
            ImportPath::Kwin => "kwin",
            ImportPath::External => "external",
        }
    }
}

/// EGLImage lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Images {
    /// Created once per buffer and reused (KWin).
    Cached,
    /// Created and destroyed for every frame (Weston).
    PerFrame,
}

impl Images {
    pub fn name(self) -> &'static str {
        match self {
            Images::Cached => "cached",
            Images::PerFrame => "per-frame",
        }
    }
}

/// One NV12 dma-buf to sample.
#[derive(Clone, Copy, Debug)]
pub struct DmaBufNv12<'a> {
    /// A stable key for the EGLImage cache (the CAPTURE buffer index).
    pub key: u32,
    pub fd: BorrowedFd<'a>,
    /// Coded size, stride, chroma offset, as the decoder reports them.
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub uv_offset: u32,
    pub modifier: u64,
}

impl DmaBufNv12<'_> {
    pub fn geometry(&self) -> Geometry {
        Geometry {
            width: self.width,
            height: self.height,
        }
    }
}

/// What the GPU returned for one frame.
pub struct Sample {
    /// The raw planes (kwin) or the recovered ones (external), packed NV12.
    pub nv12: Vec<u8>,
    /// RGB readbacks (3 bytes per pixel) with their matrices.
    pub rgb: Vec<(Matrix, Vec<u8>)>,
}

/// The DRM modifiers EGL reports for one format.
#[derive(Clone, Debug, Serialize)]
pub struct FormatInfo {
    pub fourcc: String,
    pub advertised: bool,
    /// "0x..." with "(external only)" where EGL says so.
    pub modifiers: Vec<String>,
}

/// What was measured: the GPU path, named for the report.
#[derive(Clone, Debug, Serialize)]
pub struct GpuInfo {
    pub platform: String,
    pub libegl: String,
    pub render_node: Option<String>,
    pub drm_driver: Option<String>,
    pub egl_vendor: String,
    pub egl_version: String,
    pub egl_extensions: Vec<String>,
    pub device_extensions: Vec<String>,
    pub gl_vendor: String,
    pub gl_renderer: String,
    pub gl_version: String,
    pub software: bool,
    /// Whether the GPU waits for a dma-buf's dma_resv fences before it reads it, as measured
    /// by crate::implicit (None: not measured, or inconclusive), and the measurement in words.
    pub implicit_sync: Option<bool>,
    pub implicit_sync_reason: String,
    pub formats: Vec<FormatInfo>,
}

/// How one import path was set up (the modifier passed, or none: an implicit-modifier import).
#[derive(Clone, Debug, Serialize)]
pub struct ImportInfo {
    pub path: ImportPath,
    pub images: Images,
    pub formats: Vec<String>,
    pub modifier: Option<String>,
    pub matrix_hint: Option<Matrix>,
}

/// Options of [`Gpu::open`].
#[derive(Clone, Debug)]
pub struct GpuOptions {
    pub platform: Platform,
    /// Force this modifier instead of the buffer's (to check what the GPU refuses).
    pub modifier: Option<u64>,
    /// The colour-space hint of the external path's NV12 image.
    pub external_matrix: Matrix,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            platform: Platform::Surfaceless,
            modifier: None,
            external_matrix: Matrix::Bt601,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourccs() {
        assert_eq!(DRM_FORMAT_R8, 0x2020_3852);
        assert_eq!(DRM_FORMAT_GR88, 0x3838_5247);
        assert_eq!(DRM_FORMAT_NV12, 0x3231_564e);
        assert_eq!(fourcc_name(DRM_FORMAT_R8), "R8");
        assert_eq!(fourcc_name(DRM_FORMAT_NV12), "NV12");
    }
}
