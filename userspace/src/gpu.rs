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

use crate::classify::Geometry;
use anyhow::{anyhow, bail, Context as _, Result};
use glow::HasContext;
use khronos_egl as egl;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

// EGL_EXT_platform / Mesa / KHR platform enums.
const EGL_PLATFORM_SURFACELESS_MESA: egl::Enum = 0x31DD;
const EGL_PLATFORM_GBM_KHR: egl::Enum = 0x31D7;
// EGL_EXT_image_dma_buf_import(_modifiers).
const EGL_LINUX_DMA_BUF_EXT: egl::Enum = 0x3270;
const EGL_LINUX_DRM_FOURCC_EXT: usize = 0x3271;
const EGL_DMA_BUF_PLANE0_FD_EXT: usize = 0x3272;
const EGL_DMA_BUF_PLANE0_OFFSET_EXT: usize = 0x3273;
const EGL_DMA_BUF_PLANE0_PITCH_EXT: usize = 0x3274;
const EGL_DMA_BUF_PLANE1_FD_EXT: usize = 0x3275;
const EGL_DMA_BUF_PLANE1_OFFSET_EXT: usize = 0x3276;
const EGL_DMA_BUF_PLANE1_PITCH_EXT: usize = 0x3277;
const EGL_YUV_COLOR_SPACE_HINT_EXT: usize = 0x327B;
const EGL_SAMPLE_RANGE_HINT_EXT: usize = 0x327C;
const EGL_ITU_REC601_EXT: usize = 0x327F;
const EGL_ITU_REC709_EXT: usize = 0x3280;
const EGL_YUV_NARROW_RANGE_EXT: usize = 0x3283;
const EGL_DMA_BUF_PLANE0_MODIFIER_LO_EXT: usize = 0x3443;
const EGL_DMA_BUF_PLANE0_MODIFIER_HI_EXT: usize = 0x3444;
const EGL_DMA_BUF_PLANE1_MODIFIER_LO_EXT: usize = 0x3445;
const EGL_DMA_BUF_PLANE1_MODIFIER_HI_EXT: usize = 0x3446;
const EGL_WIDTH: usize = 0x3057;
const EGL_HEIGHT: usize = 0x3056;
// EGL_EXT_device_query / EGL_EXT_device_drm(_render_node).
const EGL_DEVICE_EXT: egl::Int = 0x322C;
const EGL_DRM_DEVICE_FILE_EXT: egl::Int = 0x3233;
const EGL_DRM_RENDER_NODE_FILE_EXT: egl::Int = 0x3377;
// GL_OES_EGL_image_external.
const GL_TEXTURE_EXTERNAL_OES: u32 = 0x8D65;

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

type ImageTargetTexture2dFn = unsafe extern "system" fn(target: u32, image: *mut c_void);
type QueryDmaBufFormatsFn =
    unsafe extern "system" fn(dpy: *mut c_void, max: i32, formats: *mut i32, num: *mut i32) -> u32;
type QueryDmaBufModifiersFn = unsafe extern "system" fn(
    dpy: *mut c_void,
    format: i32,
    max: i32,
    modifiers: *mut u64,
    external_only: *mut u32,
    num: *mut i32,
) -> u32;
type QueryDisplayAttribFn =
    unsafe extern "system" fn(dpy: *mut c_void, attribute: i32, value: *mut isize) -> u32;
type QueryDeviceStringFn = unsafe extern "system" fn(dev: *mut c_void, name: i32) -> *const c_char;
type GbmCreateDeviceFn = unsafe extern "C" fn(fd: i32) -> *mut c_void;
type GbmDeviceDestroyFn = unsafe extern "C" fn(dev: *mut c_void);

/// Which EGL platform to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Platform {
    /// EGL_PLATFORM_SURFACELESS_MESA: no window system, Mesa picks the device.
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

/// A YCbCr -> RGB matrix (limited range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Matrix {
    Bt601,
    Bt709,
}

impl Matrix {
    pub fn name(self) -> &'static str {
        match self {
            Matrix::Bt601 => "bt601",
            Matrix::Bt709 => "bt709",
        }
    }

    fn kr_kb(self) -> (f64, f64) {
        match self {
            Matrix::Bt601 => (0.299, 0.114),
            Matrix::Bt709 => (0.2126, 0.0722),
        }
    }

    /// The forward matrix F (row-major): rgb = F * (Y - 16, Cb - 128, Cr - 128), rgb in 0..1.
    pub fn forward(self) -> [[f64; 3]; 3] {
        let (kr, kb) = self.kr_kb();
        let kg = 1.0 - kr - kb;
        let a = 1.0 / 219.0;
        let c = 1.0 / 224.0;
        [
            [a, 0.0, 2.0 * (1.0 - kr) * c],
            [
                a,
                -2.0 * kb * (1.0 - kb) / kg * c,
                -2.0 * kr * (1.0 - kr) / kg * c,
            ],
            [a, 2.0 * (1.0 - kb) * c, 0.0],
        ]
    }

    /// The inverse: (Y, Cb, Cr) = I * rgb + (16, 128, 128).
    pub fn inverse(self) -> [[f64; 3]; 3] {
        invert3(self.forward())
    }
}

fn invert3(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            // cofactor of m[j][i]
            let (a0, a1) = ((j + 1) % 3, (j + 2) % 3);
            let (b0, b1) = ((i + 1) % 3, (i + 2) % 3);
            *v = (m[a0][b0] * m[a1][b1] - m[a0][b1] * m[a1][b0]) / det;
        }
    }
    r
}

/// Column-major f32 for glUniformMatrix3fv.
fn gl_mat3(m: [[f64; 3]; 3]) -> [f32; 9] {
    let mut out = [0f32; 9];
    for c in 0..3 {
        for r in 0..3 {
            out[c * 3 + r] = m[r][c] as f32;
        }
    }
    out
}

/// The CPU's RGB conversion of a packed NV12 frame (the reference for the GPU's RGB): 3 bytes
/// per pixel, rounded to nearest after clamping to 0..1.
pub fn nv12_to_rgb(packed: &[u8], g: Geometry, m: Matrix) -> Vec<u8> {
    let f = m.forward();
    let (w, h) = (g.width as usize, g.height as usize);
    let mut out = vec![0u8; w * h * 3];
    if packed.len() < g.len() {
        return out;
    }
    let uv = &packed[g.y_len()..];
    for y in 0..h {
        for x in 0..w {
            let yy = f64::from(packed[y * w + x]) - 16.0;
            let ci = (y / 2) * w + (x / 2) * 2;
            let cb = f64::from(uv.get(ci).copied().unwrap_or(128)) - 128.0;
            let cr = f64::from(uv.get(ci + 1).copied().unwrap_or(128)) - 128.0;
            for (k, row) in f.iter().enumerate() {
                let v = row[0] * yy + row[1] * cb + row[2] * cr;
                out[(y * w + x) * 3 + k] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    out
}

/// How an RGB readback compares with the CPU's conversion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RgbDiff {
    pub matrix: Matrix,
    /// The largest per-channel difference.
    pub max_abs: u8,
    /// Channels more than `RGB_TOLERANCE` away.
    pub over_tolerance: usize,
}

/// RGB "equal" means every channel within this of the CPU's conversion (float rounding).
pub const RGB_TOLERANCE: u8 = 1;

pub fn compare_rgb(gpu: &[u8], cpu: &[u8], matrix: Matrix) -> RgbDiff {
    let mut max_abs = 0u8;
    let mut over = 0usize;
    for (a, b) in gpu.iter().zip(cpu) {
        let d = a.abs_diff(*b);
        max_abs = max_abs.max(d);
        if d > RGB_TOLERANCE {
            over += 1;
        }
    }
    over += gpu.len().abs_diff(cpu.len());
    RgbDiff {
        matrix,
        max_abs,
        over_tolerance: over,
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

struct Imported {
    images: Vec<egl::Image>,
    textures: Vec<glow::Texture>,
    ino: u64,
}

struct Target {
    tex: glow::Texture,
    fbo: glow::Framebuffer,
}

struct Programs {
    copy: glow::Program,
    rgb: glow::Program,
    ext_yuv: Option<glow::Program>,
    ext_rgb: Option<glow::Program>,
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

/// An EGL display with a current GLES 3 context and the dma-buf import entry points.
pub struct Gpu {
    egl: egl::DynamicInstance<egl::EGL1_5>,
    display: egl::Display,
    context: egl::Context,
    gl: glow::Context,
    image_target: ImageTargetTexture2dFn,
    query_formats: Option<QueryDmaBufFormatsFn>,
    query_modifiers: Option<QueryDmaBufModifiersFn>,
    programs: Programs,
    vao: glow::VertexArray,
    targets: HashMap<(u32, u32, u32), Target>,
    cache: HashMap<(ImportPath, u32), Imported>,
    opts: GpuOptions,
    gbm: Option<(libloading::Library, *mut c_void, File)>,
    pub info: GpuInfo,
    /// EGLImages created and destroyed so far, per import path.
    pub created: HashMap<ImportPath, usize>,
    pub destroyed: HashMap<ImportPath, usize>,
}

fn egl_err(e: egl::Error) -> String {
    format!("{e:?} (0x{:x})", e.native())
}

const VERTEX: &str = "#version 300 es
void main() {
    // One triangle that covers the viewport.
    vec2 p = vec2(float((gl_VertexID & 1) << 2) - 1.0, float((gl_VertexID & 2) << 1) - 1.0);
    gl_Position = vec4(p, 0.0, 1.0);
}";

const COPY: &str = "#version 300 es
precision highp float;
uniform highp sampler2D tex;
out vec4 o;
void main() { o = texelFetch(tex, ivec2(gl_FragCoord.xy), 0); }";

const RGB: &str = "#version 300 es
precision highp float;
uniform highp sampler2D y_tex;
uniform highp sampler2D uv_tex;
uniform mat3 m;
out vec4 o;
void main() {
    ivec2 p = ivec2(gl_FragCoord.xy);
    vec3 yuv = vec3(texelFetch(y_tex, p, 0).r, texelFetch(uv_tex, p / 2, 0).rg);
    o = vec4(clamp(m * (yuv * 255.0 - vec3(16.0, 128.0, 128.0)), 0.0, 1.0), 1.0);
}";

const EXT_YUV: &str = "#version 300 es
#extension GL_OES_EGL_image_external_essl3 : require
precision highp float;
uniform highp samplerExternalOES tex;
uniform vec2 size;
uniform int chroma;
uniform mat3 inv;
out vec4 o;
void main() {
    // Luma: this texel's centre. Chroma (half-size target): the even luma texel's centre.
    vec2 pos = chroma == 1 ? floor(gl_FragCoord.xy) * 2.0 + 0.5 : gl_FragCoord.xy;
    vec3 rgb = texture(tex, pos / size).rgb;
    vec3 yuv = (inv * rgb + vec3(16.0, 128.0, 128.0)) / 255.0;
    o = chroma == 1 ? vec4(yuv.yz, 0.0, 1.0) : vec4(yuv.x, 0.0, 0.0, 1.0);
}";

const EXT_RGB: &str = "#version 300 es
#extension GL_OES_EGL_image_external_essl3 : require
precision highp float;
uniform highp samplerExternalOES tex;
uniform vec2 size;
out vec4 o;
void main() { o = vec4(texture(tex, gl_FragCoord.xy / size).rgb, 1.0); }";

impl Gpu {
    /// Loads libEGL, opens the display, creates a GLES 3 context and checks the extensions the
    /// import paths need. Every failure is one line naming what is missing.
    pub fn open(opts: &GpuOptions) -> Result<Gpu> {
        let libegl = std::env::var("VB2R_LIBEGL").unwrap_or_else(|_| "libEGL.so.1".into());
        // SAFETY: loading libEGL runs its initialisers; it is the system's EGL (or the file the
        // user named), which implements the EGL ABI khronos-egl binds to.
        let egl =
            unsafe { egl::DynamicInstance::<egl::EGL1_5>::load_required_from_filename(&libegl) }
                .map_err(|e| anyhow!("no EGL: cannot load {libegl} with EGL 1.5: {e}"))?;

        let client_ext = egl
            .query_string(None, egl::EXTENSIONS)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();

        let mut gbm = None;
        let mut render_node = None;
        let (platform_name, display) = match &opts.platform {
            Platform::Surfaceless => {
                if !client_ext
                    .split(' ')
                    .any(|e| e == "EGL_MESA_platform_surfaceless")
                {
                    bail!("EGL ({libegl}) lacks EGL_MESA_platform_surfaceless (client extensions: {client_ext})");
                }
                // SAFETY: the surfaceless platform takes EGL_DEFAULT_DISPLAY (null).
                let d = unsafe {
                    egl.get_platform_display(
                        EGL_PLATFORM_SURFACELESS_MESA,
                        egl::DEFAULT_DISPLAY,
                        &[egl::ATTRIB_NONE],
                    )
                }
                .map_err(|e| anyhow!("eglGetPlatformDisplay(surfaceless): {}", egl_err(e)))?;
                ("surfaceless".to_string(), d)
            }
            Platform::Gbm(node) => {
                if !client_ext
                    .split(' ')
                    .any(|e| e == "EGL_KHR_platform_gbm" || e == "EGL_MESA_platform_gbm")
                {
                    bail!("EGL ({libegl}) lacks EGL_KHR_platform_gbm (client extensions: {client_ext})");
                }
                let node = match node {
                    Some(n) => n.clone(),
                    None => {
                        let nodes = crate::sys::render_nodes();
                        match nodes.first() {
                            Some((p, _)) => PathBuf::from(p),
                            None => bail!("no DRM render node under /dev/dri for --platform gbm"),
                        }
                    }
                };
                let file = File::options()
                    .read(true)
                    .write(true)
                    .open(&node)
                    .with_context(|| format!("no render node: cannot open {}", node.display()))?;
                // SAFETY: libgbm's initialisers are plain C library setup.
                let lib = unsafe { libloading::Library::new("libgbm.so.1") }
                    .map_err(|e| anyhow!("no GBM: cannot load libgbm.so.1: {e}"))?;
                // SAFETY: the symbols have these C signatures in <gbm.h>.
                let create: libloading::Symbol<'_, GbmCreateDeviceFn> =
                    unsafe { lib.get(b"gbm_create_device\0") }
                        .map_err(|e| anyhow!("libgbm.so.1: {e}"))?;
                // SAFETY: the fd is an open DRM node that outlives the device (kept in `gbm`).
                let dev = unsafe { create(file.as_raw_fd()) };
                if dev.is_null() {
                    bail!("gbm_create_device({}) failed", node.display());
                }
                // SAFETY: the native display of the GBM platform is a gbm_device*.
                let d = unsafe {
                    egl.get_platform_display(EGL_PLATFORM_GBM_KHR, dev, &[egl::ATTRIB_NONE])
                };
                render_node = Some(node.display().to_string());
                gbm = Some((lib, dev, file));
                let d = match d {
                    Ok(d) => d,
                    Err(e) => {
                        drop_gbm(&mut gbm);
                        bail!(
                            "eglGetPlatformDisplay(gbm, {}): {}",
                            render_node.unwrap_or_default(),
                            egl_err(e)
                        )
                    }
                };
                (format!("gbm ({})", node.display()), d)
            }
        };
        if let Err(e) = egl.initialize(display) {
            drop_gbm(&mut gbm);
            bail!("eglInitialize({platform_name}): {}", egl_err(e));
        }
        let qs = |n| {
            egl.query_string(Some(display), n)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let egl_vendor = qs(egl::VENDOR);
        let egl_version = qs(egl::VERSION);
        let exts: Vec<String> = qs(egl::EXTENSIONS)
            .split_whitespace()
            .map(String::from)
            .collect();
        let has = |e: &str| exts.iter().any(|x| x == e);
        let mut missing: Vec<&str> = [
            "EGL_EXT_image_dma_buf_import",
            "EGL_KHR_surfaceless_context",
            "EGL_KHR_no_config_context",
        ]
        .into_iter()
        .filter(|e| !has(e))
        .collect();
        if egl
            .get_proc_address("glEGLImageTargetTexture2DOES")
            .is_none()
        {
            missing.push("glEGLImageTargetTexture2DOES");
        }
        if !missing.is_empty() {
            let _ = egl.terminate(display);
            drop_gbm(&mut gbm);
            bail!(
                "EGL {egl_vendor} {egl_version} on {platform_name} lacks {} (Mesa >= 24.1 imports dma-bufs in llvmpipe)",
                missing.join(", ")
            );
        }

        // From here on a failure releases what was set up (context, display, GBM device).
        if let Err(e) = egl.bind_api(egl::OPENGL_ES_API) {
            release_egl(&egl, display, None, &mut gbm);
            bail!("eglBindAPI(GLES): {}", egl_err(e));
        }
        // SAFETY: EGL_NO_CONFIG_KHR (null) is valid with EGL_KHR_no_config_context, checked above.
        let no_config = unsafe { egl::Config::from_ptr(std::ptr::null_mut()) };
        let context = match egl.create_context(
            display,
            no_config,
            None,
            &[egl::CONTEXT_MAJOR_VERSION, 3, egl::NONE],
        ) {
            Ok(c) => c,
            Err(e) => {
                release_egl(&egl, display, None, &mut gbm);
                bail!("eglCreateContext(GLES 3): {}", egl_err(e));
            }
        };
        if let Err(e) = egl.make_current(display, None, None, Some(context)) {
            release_egl(&egl, display, Some(context), &mut gbm);
            bail!("eglMakeCurrent(surfaceless): {}", egl_err(e));
        }

        // SAFETY: the context is current on this thread; the loader returns GL entry points of
        // that context (or null, which glow tolerates for functions never called).
        let gl = unsafe {
            glow::Context::from_loader_function(|s| {
                egl.get_proc_address(s)
                    .map_or(std::ptr::null(), |f| f as *const c_void)
            })
        };
        let proc = |name: &str| egl.get_proc_address(name).map(|f| f as *const c_void);
        // SAFETY: each pointer is the named entry point, whose C signature the type spells out.
        let image_target: ImageTargetTexture2dFn = unsafe {
            std::mem::transmute::<*const c_void, ImageTargetTexture2dFn>(
                proc("glEGLImageTargetTexture2DOES").unwrap_or(std::ptr::null()),
            )
        };
        // SAFETY: as above; None when EGL does not have them.
        let query_formats = proc("eglQueryDmaBufFormatsEXT")
            .map(|p| unsafe { std::mem::transmute::<*const c_void, QueryDmaBufFormatsFn>(p) });
        // SAFETY: as above.
        let query_modifiers = proc("eglQueryDmaBufModifiersEXT")
            .map(|p| unsafe { std::mem::transmute::<*const c_void, QueryDmaBufModifiersFn>(p) });

        // The device behind the display (EGL_EXT_device_query): render node, software or not.
        let mut device_extensions = Vec::new();
        if has("EGL_EXT_device_query") || client_ext.contains("EGL_EXT_device_query") {
            if let (Some(qda), Some(qds)) = (
                proc("eglQueryDisplayAttribEXT"),
                proc("eglQueryDeviceStringEXT"),
            ) {
                // SAFETY: the entry points of EGL_EXT_device_query with their C signatures.
                let (qda, qds) = unsafe {
                    (
                        std::mem::transmute::<*const c_void, QueryDisplayAttribFn>(qda),
                        std::mem::transmute::<*const c_void, QueryDeviceStringFn>(qds),
                    )
                };
                let mut dev: isize = 0;
                // SAFETY: `dev` is a valid out-parameter; the display is initialised.
                if unsafe { qda(display.as_ptr(), EGL_DEVICE_EXT, &mut dev) } == egl::TRUE {
                    let s = |name| {
                        // SAFETY: `dev` is the display's EGLDeviceEXT; the string is static.
                        let p = unsafe { qds(dev as *mut c_void, name) };
                        // SAFETY: a non-null result is a NUL-terminated string owned by EGL.
                        (!p.is_null())
                            .then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
                    };
                    device_extensions = s(egl::EXTENSIONS)
                        .unwrap_or_default()
                        .split_whitespace()
                        .map(String::from)
                        .collect();
                    if render_node.is_none() {
                        render_node =
                            s(EGL_DRM_RENDER_NODE_FILE_EXT).or_else(|| s(EGL_DRM_DEVICE_FILE_EXT));
                    }
                }
            }
        }
        let drm_driver = render_node.as_ref().and_then(|n| {
            crate::sys::render_nodes()
                .into_iter()
                .find(|(p, _)| p == n)
                .map(|(_, d)| d)
        });

        // SAFETY: the context is current; these only query strings.
        let (gl_vendor, gl_renderer, gl_version) = unsafe {
            (
                gl.get_parameter_string(glow::VENDOR),
                gl.get_parameter_string(glow::RENDERER),
                gl.get_parameter_string(glow::VERSION),
            )
        };
        let software = device_extensions
            .iter()
            .any(|e| e == "EGL_MESA_device_software")
            || ["llvmpipe", "softpipe", "swrast"]
                .iter()
                .any(|s| gl_renderer.to_lowercase().contains(s));

        let programs = match Programs::new(&gl) {
            Ok(p) => p,
            Err(e) => {
                release_egl(&egl, display, Some(context), &mut gbm);
                return Err(e);
            }
        };
        // SAFETY: the context is current.
        let vao = match unsafe { gl.create_vertex_array() } {
            Ok(v) => v,
            Err(e) => {
                release_egl(&egl, display, Some(context), &mut gbm);
                bail!("glGenVertexArrays: {e}");
            }
        };

        let mut gpu = Gpu {
            egl,
            display,
            context,
            gl,
            image_target,
            query_formats,
            query_modifiers,
            programs,
            vao,
            targets: HashMap::new(),
            cache: HashMap::new(),
            opts: opts.clone(),
            gbm,
            info: GpuInfo {
                platform: platform_name,
                libegl,
                render_node,
                drm_driver,
                egl_vendor,
                egl_version,
                egl_extensions: exts,
                device_extensions,
                gl_vendor,
                gl_renderer,
                gl_version,
                software,
                implicit_sync: None,
                implicit_sync_reason: "not measured".into(),
                formats: Vec::new(),
            },
            created: HashMap::new(),
            destroyed: HashMap::new(),
        };
        let advertised = gpu.dmabuf_formats();
        for f in [DRM_FORMAT_R8, DRM_FORMAT_GR88, DRM_FORMAT_NV12] {
            let mods = gpu
                .dmabuf_modifiers(f)
                .into_iter()
                .map(|(m, ext)| {
                    if ext {
                        format!("0x{m:x} (external only)")
                    } else {
                        format!("0x{m:x}")
                    }
                })
                .collect();
            gpu.info.formats.push(FormatInfo {
                fourcc: fourcc_name(f),
                advertised: advertised.as_ref().is_none_or(|a| a.contains(&f)),
                modifiers: mods,
            });
        }
        Ok(gpu)
    }

    fn has_ext(&self, e: &str) -> bool {
        self.info.egl_extensions.iter().any(|x| x == e)
    }

    /// eglQueryDmaBufFormatsEXT (None: the query is not there).
    pub fn dmabuf_formats(&self) -> Option<Vec<u32>> {
        let q = self.query_formats?;
        let mut n = 0i32;
        // SAFETY: max = 0 asks for the count only.
        if unsafe { q(self.display.as_ptr(), 0, std::ptr::null_mut(), &mut n) } != egl::TRUE {
            return None;
        }
        let mut v = vec![0i32; n.max(0) as usize];
        // SAFETY: the array has room for `n` formats.
        if unsafe { q(self.display.as_ptr(), n, v.as_mut_ptr(), &mut n) } != egl::TRUE {
            return None;
        }
        v.truncate(n.max(0) as usize);
        Some(v.into_iter().map(|f| f as u32).collect())
    }

    /// eglQueryDmaBufModifiersEXT: (modifier, external_only) pairs.
    pub fn dmabuf_modifiers(&self, format: u32) -> Vec<(u64, bool)> {
        let Some(q) = self.query_modifiers else {
            return Vec::new();
        };
        let d = self.display.as_ptr();
        let mut n = 0i32;
        // SAFETY: max = 0 asks for the count only.
        let ok = unsafe {
            q(
                d,
                format as i32,
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut n,
            )
        };
        if ok != egl::TRUE || n <= 0 {
            return Vec::new();
        }
        let mut mods = vec![0u64; n as usize];
        let mut ext = vec![0u32; n as usize];
        // SAFETY: both arrays have room for `n` entries.
        let ok = unsafe {
            q(
                d,
                format as i32,
                n,
                mods.as_mut_ptr(),
                ext.as_mut_ptr(),
                &mut n,
            )
        };
        if ok != egl::TRUE {
            return Vec::new();
        }
        mods.into_iter()
            .zip(ext)
            .take(n.max(0) as usize)
            .map(|(m, e)| (m, e != 0))
            .collect()
    }

    /// The modifier attributes to pass for `format`, or an error naming what the GPU refuses.
    /// None: import without modifier attributes (the implicit, linear layout).
    fn pick_modifier(&self, format: u32, wanted: u64, texture_2d: bool) -> Result<Option<u64>> {
        let name = fourcc_name(format);
        if let Some(fmts) = self.dmabuf_formats() {
            if !fmts.is_empty() && !fmts.contains(&format) {
                bail!(
                    "EGL cannot import DRM format {name}: eglQueryDmaBufFormatsEXT lists {}",
                    fmts.iter()
                        .map(|&f| fourcc_name(f))
                        .collect::<Vec<_>>()
                        .join(",")
                );
            }
        }
        let have_mods_ext = self.has_ext("EGL_EXT_image_dma_buf_import_modifiers");
        let mods = self.dmabuf_modifiers(format);
        if !have_mods_ext || mods.is_empty() {
            if wanted == DRM_FORMAT_MOD_LINEAR || wanted == DRM_FORMAT_MOD_INVALID {
                return Ok(None);
            }
            bail!(
                "cannot import {name} with modifier 0x{wanted:x}: {}",
                if have_mods_ext {
                    "EGL reports no modifiers for it"
                } else {
                    "EGL lacks EGL_EXT_image_dma_buf_import_modifiers"
                }
            );
        }
        match mods.iter().find(|(m, _)| *m == wanted) {
            Some((_, true)) if texture_2d => bail!(
                "{name} with modifier 0x{wanted:x} is external-only on this GPU: it cannot be bound to GL_TEXTURE_2D (use --import external)"
            ),
            Some(_) => Ok(Some(wanted)),
            None => bail!(
                "the GPU cannot import {name} with modifier 0x{wanted:x}: EGL reports {}",
                mods.iter()
                    .map(|(m, e)| format!("0x{m:x}{}", if *e { " (external only)" } else { "" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Checks up front that `path` can import buffers with `modifier` (the formats, modifiers
    /// and shader extensions it needs), and describes how it will.
    pub fn check_import(
        &self,
        path: ImportPath,
        images: Images,
        modifier: u64,
    ) -> Result<ImportInfo> {
        let modifier = self.opts.modifier.unwrap_or(modifier);
        let (formats, m, hint) = match path {
            ImportPath::Kwin => {
                let a = self.pick_modifier(DRM_FORMAT_R8, modifier, true)?;
                self.pick_modifier(DRM_FORMAT_GR88, modifier, true)?;
                (vec!["R8".to_string(), "GR88".to_string()], a, None)
            }
            ImportPath::External => {
                if self.programs.ext_yuv.is_none() {
                    bail!("GLES lacks GL_OES_EGL_image_external_essl3 (samplerExternalOES in GLSL ES 3.00): the external import path cannot sample NV12");
                }
                let a = self.pick_modifier(DRM_FORMAT_NV12, modifier, false)?;
                (vec!["NV12".to_string()], a, Some(self.opts.external_matrix))
            }
        };
        Ok(ImportInfo {
            path,
            images,
            formats,
            modifier: m.map(|m| format!("0x{m:x}")),
            matrix_hint: hint,
        })
    }

    fn create_image(&mut self, path: ImportPath, attribs: &[usize]) -> Result<egl::Image> {
        // SAFETY: EGL_NO_CONTEXT and a null client buffer are what EGL_LINUX_DMA_BUF_EXT takes.
        let (ctx, buf) = unsafe {
            (
                egl::Context::from_ptr(egl::NO_CONTEXT),
                egl::ClientBuffer::from_ptr(std::ptr::null_mut()),
            )
        };
        let img = self
            .egl
            .create_image(self.display, ctx, EGL_LINUX_DMA_BUF_EXT, buf, attribs)
            .map_err(|e| anyhow!(egl_err(e)))?;
        *self.created.entry(path).or_default() += 1;
        Ok(img)
    }

    fn import(&mut self, path: ImportPath, b: &DmaBufNv12<'_>) -> Result<Imported> {
        let wanted = self.opts.modifier.unwrap_or(b.modifier);
        let fd = b.fd.as_raw_fd() as usize;
        let ino = fd_ino(b.fd);
        match path {
            ImportPath::Kwin => {
                let m = self.pick_modifier(DRM_FORMAT_R8, wanted, true)?;
                let y = dmabuf_attribs(
                    DRM_FORMAT_R8,
                    (b.width, b.height),
                    &[(fd, 0, b.stride)],
                    m,
                    &[],
                );
                let uv = dmabuf_attribs(
                    DRM_FORMAT_GR88,
                    (b.width / 2, b.height / 2),
                    &[(fd, b.uv_offset, b.stride)],
                    m,
                    &[],
                );
                let yi = self.create_image(path, &y).map_err(|e| {
                    anyhow!(
                        "eglCreateImage(R8 {}x{} pitch {} of buffer {}): {e}",
                        b.width,
                        b.height,
                        b.stride,
                        b.key
                    )
                })?;
                let uvi = match self.create_image(path, &uv) {
                    Ok(i) => i,
                    Err(e) => {
                        self.destroy_images(path, vec![yi]);
                        bail!(
                            "eglCreateImage(GR88 {}x{} at offset {} pitch {} of buffer {}): {e}",
                            b.width / 2,
                            b.height / 2,
                            b.uv_offset,
                            b.stride,
                            b.key
                        );
                    }
                };
                let textures = match self.bind_images(glow::TEXTURE_2D, &[yi, uvi]) {
                    Ok(t) => t,
                    Err(e) => {
                        self.destroy_images(path, vec![yi, uvi]);
                        return Err(e);
                    }
                };
                Ok(Imported {
                    images: vec![yi, uvi],
                    textures,
                    ino,
                })
            }
            ImportPath::External => {
                let m = self.pick_modifier(DRM_FORMAT_NV12, wanted, false)?;
                let hint = match self.opts.external_matrix {
                    Matrix::Bt601 => EGL_ITU_REC601_EXT,
                    Matrix::Bt709 => EGL_ITU_REC709_EXT,
                };
                let a = dmabuf_attribs(
                    DRM_FORMAT_NV12,
                    (b.width, b.height),
                    &[(fd, 0, b.stride), (fd, b.uv_offset, b.stride)],
                    m,
                    &[
                        EGL_YUV_COLOR_SPACE_HINT_EXT,
                        hint,
                        EGL_SAMPLE_RANGE_HINT_EXT,
                        EGL_YUV_NARROW_RANGE_EXT,
                    ],
                );
                let img = self.create_image(path, &a).map_err(|e| {
                    anyhow!(
                        "eglCreateImage(NV12 {}x{} pitch {} chroma at {} of buffer {}): {e}",
                        b.width,
                        b.height,
                        b.stride,
                        b.uv_offset,
                        b.key
                    )
                })?;
                let textures = match self.bind_images(GL_TEXTURE_EXTERNAL_OES, &[img]) {
                    Ok(t) => t,
                    Err(e) => {
                        self.destroy_images(path, vec![img]);
                        return Err(e);
                    }
                };
                Ok(Imported {
                    images: vec![img],
                    textures,
                    ino,
                })
            }
        }
    }

    fn bind_images(&mut self, target: u32, images: &[egl::Image]) -> Result<Vec<glow::Texture>> {
        let mut out = Vec::new();
        for img in images {
            // SAFETY: the context is current; `img` is a live EGLImage of this display and
            // `image_target` is glEGLImageTargetTexture2DOES (checked non-null at open).
            unsafe {
                let t = match self.gl.create_texture() {
                    Ok(t) => t,
                    Err(e) => {
                        for t in out {
                            self.gl.delete_texture(t);
                        }
                        bail!("glGenTextures: {e}");
                    }
                };
                self.gl.bind_texture(target, Some(t));
                (self.image_target)(target, img.as_ptr());
                let err = self.gl.get_error();
                // Nearest everywhere: texelFetch needs a complete texture (no mipmaps), and the
                // external path samples at texel centres.
                for p in [glow::TEXTURE_MIN_FILTER, glow::TEXTURE_MAG_FILTER] {
                    self.gl.tex_parameter_i32(target, p, glow::NEAREST as i32);
                }
                for p in [glow::TEXTURE_WRAP_S, glow::TEXTURE_WRAP_T] {
                    self.gl
                        .tex_parameter_i32(target, p, glow::CLAMP_TO_EDGE as i32);
                }
                self.gl.bind_texture(target, None);
                out.push(t);
                if err != glow::NO_ERROR {
                    for t in out {
                        self.gl.delete_texture(t);
                    }
                    bail!("glEGLImageTargetTexture2DOES(0x{target:x}) failed: GL error 0x{err:x}");
                }
            }
        }
        Ok(out)
    }

    fn destroy_images(&mut self, path: ImportPath, images: Vec<egl::Image>) {
        for i in images {
            if self.egl.destroy_image(self.display, i).is_ok() {
                *self.destroyed.entry(path).or_default() += 1;
            }
        }
    }

    fn release(&mut self, path: ImportPath, imp: Imported) {
        // SAFETY: the context is current; the textures are ours.
        unsafe {
            for t in imp.textures {
                self.gl.delete_texture(t);
            }
        }
        self.destroy_images(path, imp.images);
    }

    /// Destroys the cached EGLImages (of every buffer).
    pub fn forget_all(&mut self) {
        let all: Vec<_> = self.cache.drain().collect();
        for ((path, _), imp) in all {
            self.release(path, imp);
        }
    }

    /// EGLImages created so far for `path`.
    pub fn images_created(&self, path: ImportPath) -> usize {
        self.created.get(&path).copied().unwrap_or(0)
    }

    fn target(&mut self, internal: u32, w: u32, h: u32) -> Result<(glow::Framebuffer, u32, u32)> {
        if let Some(t) = self.targets.get(&(internal, w, h)) {
            return Ok((t.fbo, w, h));
        }
        let (format, ty) = match internal {
            glow::R8 => (glow::RED, glow::UNSIGNED_BYTE),
            glow::RG8 => (glow::RG, glow::UNSIGNED_BYTE),
            _ => (glow::RGBA, glow::UNSIGNED_BYTE),
        };
        // SAFETY: the context is current; the objects are created and owned here.
        let t = unsafe {
            let tex = self
                .gl
                .create_texture()
                .map_err(|e| anyhow!("glGenTextures: {e}"))?;
            self.gl.bind_texture(glow::TEXTURE_2D, Some(tex));
            self.gl.tex_image_2d(
                glow::TEXTURE_2D,
                0,
                internal as i32,
                w as i32,
                h as i32,
                0,
                format,
                ty,
                glow::PixelUnpackData::Slice(None),
            );
            self.gl.bind_texture(glow::TEXTURE_2D, None);
            let fbo = self
                .gl
                .create_framebuffer()
                .map_err(|e| anyhow!("glGenFramebuffers: {e}"))?;
            self.gl.bind_framebuffer(glow::FRAMEBUFFER, Some(fbo));
            self.gl.framebuffer_texture_2d(
                glow::FRAMEBUFFER,
                glow::COLOR_ATTACHMENT0,
                glow::TEXTURE_2D,
                Some(tex),
                0,
            );
            let st = self.gl.check_framebuffer_status(glow::FRAMEBUFFER);
            if st != glow::FRAMEBUFFER_COMPLETE {
                bail!("render target 0x{internal:x} {w}x{h} incomplete: 0x{st:x}");
            }
            Target { tex, fbo }
        };
        let fbo = t.fbo;
        self.targets.insert((internal, w, h), t);
        Ok((fbo, w, h))
    }

    /// Draws with `program` into a new-or-cached target and reads back `channels` per pixel.
    fn render(
        &mut self,
        program: glow::Program,
        internal: u32,
        w: u32,
        h: u32,
        channels: usize,
        setup: impl FnOnce(&glow::Context),
    ) -> Result<Vec<u8>> {
        let (fbo, w, h) = self.target(internal, w, h)?;
        let mut rgba = vec![0u8; w as usize * h as usize * 4];
        // SAFETY: the context is current; the program, VAO and framebuffer are ours, and the
        // readback slice holds w*h RGBA bytes at pack alignment 1.
        let err = unsafe {
            let gl = &self.gl;
            gl.bind_framebuffer(glow::FRAMEBUFFER, Some(fbo));
            gl.viewport(0, 0, w as i32, h as i32);
            gl.use_program(Some(program));
            setup(gl);
            gl.bind_vertex_array(Some(self.vao));
            gl.draw_arrays(glow::TRIANGLES, 0, 3);
            gl.pixel_store_i32(glow::PACK_ALIGNMENT, 1);
            gl.read_pixels(
                0,
                0,
                w as i32,
                h as i32,
                glow::RGBA,
                glow::UNSIGNED_BYTE,
                glow::PixelPackData::Slice(Some(&mut rgba)),
            );
            gl.get_error()
        };
        if err != glow::NO_ERROR {
            bail!("GL error 0x{err:x} drawing/reading a {w}x{h} target");
        }
        if channels == 4 {
            return Ok(rgba);
        }
        Ok(rgba
            .chunks_exact(4)
            .flat_map(|p| p[..channels].to_vec())
            .collect())
    }

    /// Samples one NV12 dma-buf through `path`: raw (or recovered) planes, and RGB when `rgb`.
    pub fn sample(
        &mut self,
        path: ImportPath,
        images: Images,
        b: &DmaBufNv12<'_>,
        rgb: bool,
    ) -> Result<Sample> {
        if b.width == 0 || b.height == 0 || b.width % 2 == 1 || b.height % 2 == 1 {
            bail!(
                "NV12 buffer {} has an odd or empty size {}x{}",
                b.key,
                b.width,
                b.height
            );
        }
        let key = (path, b.key);
        let ino = fd_ino(b.fd);
        // A cached import of another dma-buf under the same key is stale: drop it.
        if let Some(old) = self.cache.remove(&key) {
            if old.ino == ino && images == Images::Cached {
                self.cache.insert(key, old);
            } else {
                self.release(path, old);
            }
        }
        let imp = match self.cache.remove(&key) {
            Some(i) => i,
            None => self.import(path, b)?,
        };
        let result = self.draw(path, &imp, b, rgb);
        match images {
            Images::Cached => {
                self.cache.insert(key, imp);
            }
            Images::PerFrame => self.release(path, imp),
        }
        result
    }

    fn draw(
        &mut self,
        path: ImportPath,
        imp: &Imported,
        b: &DmaBufNv12<'_>,
        rgb: bool,
    ) -> Result<Sample> {
        let (w, h) = (b.width, b.height);
        let mut nv12 = Vec::with_capacity(b.geometry().len());
        let mut rgbs = Vec::new();
        match path {
            ImportPath::Kwin => {
                let (yt, uvt) = (imp.textures[0], imp.textures[1]);
                let copy = self.programs.copy;
                let bind = move |gl: &glow::Context, t: glow::Texture| {
                    // SAFETY: called inside `render` with the context current.
                    unsafe {
                        gl.active_texture(glow::TEXTURE0);
                        gl.bind_texture(glow::TEXTURE_2D, Some(t));
                        let loc = gl.get_uniform_location(copy, "tex");
                        gl.uniform_1_i32(loc.as_ref(), 0);
                    }
                };
                nv12.extend(self.render(copy, glow::R8, w, h, 1, |gl| bind(gl, yt))?);
                nv12.extend(self.render(copy, glow::RG8, w / 2, h / 2, 2, |gl| bind(gl, uvt))?);
                if rgb {
                    let p = self.programs.rgb;
                    for m in [Matrix::Bt601, Matrix::Bt709] {
                        let mat = gl_mat3(m.forward());
                        let out = self.render(p, glow::RGBA8, w, h, 3, |gl| {
                            // SAFETY: called inside `render` with the context current.
                            unsafe {
                                gl.active_texture(glow::TEXTURE0);
                                gl.bind_texture(glow::TEXTURE_2D, Some(yt));
                                gl.active_texture(glow::TEXTURE1);
                                gl.bind_texture(glow::TEXTURE_2D, Some(uvt));
                                gl.uniform_1_i32(gl.get_uniform_location(p, "y_tex").as_ref(), 0);
                                gl.uniform_1_i32(gl.get_uniform_location(p, "uv_tex").as_ref(), 1);
                                gl.uniform_matrix_3_f32_slice(
                                    gl.get_uniform_location(p, "m").as_ref(),
                                    false,
                                    &mat,
                                );
                                gl.active_texture(glow::TEXTURE0);
                            }
                        })?;
                        rgbs.push((m, out));
                    }
                }
            }
            ImportPath::External => {
                let t = imp.textures[0];
                let (Some(yuv), Some(ext_rgb)) = (self.programs.ext_yuv, self.programs.ext_rgb)
                else {
                    bail!("GLES lacks GL_OES_EGL_image_external_essl3");
                };
                let inv = gl_mat3(self.opts.external_matrix.inverse());
                let size = (w as f32, h as f32);
                let setup = move |gl: &glow::Context, p: glow::Program, chroma: i32| {
                    // SAFETY: called inside `render` with the context current.
                    unsafe {
                        gl.active_texture(glow::TEXTURE0);
                        gl.bind_texture(GL_TEXTURE_EXTERNAL_OES, Some(t));
                        gl.uniform_1_i32(gl.get_uniform_location(p, "tex").as_ref(), 0);
                        gl.uniform_2_f32(
                            gl.get_uniform_location(p, "size").as_ref(),
                            size.0,
                            size.1,
                        );
                        if let Some(l) = gl.get_uniform_location(p, "chroma") {
                            gl.uniform_1_i32(Some(&l), chroma);
                        }
                        if let Some(l) = gl.get_uniform_location(p, "inv") {
                            gl.uniform_matrix_3_f32_slice(Some(&l), false, &inv);
                        }
                    }
                };
                nv12.extend(self.render(yuv, glow::R8, w, h, 1, |gl| setup(gl, yuv, 0))?);
                nv12.extend(self.render(yuv, glow::RG8, w / 2, h / 2, 2, |gl| setup(gl, yuv, 1))?);
                if rgb {
                    let out =
                        self.render(ext_rgb, glow::RGBA8, w, h, 3, |gl| setup(gl, ext_rgb, 0))?;
                    rgbs.push((self.opts.external_matrix, out));
                }
            }
        }
        Ok(Sample { nv12, rgb: rgbs })
    }
}

/// The EGL_EXT_image_dma_buf_import attribute list of one EGLImage: `fourcc` at `size`,
/// `planes` as (fd, offset, pitch), every plane with `modifier` when given
/// (EGL_EXT_image_dma_buf_import_modifiers), then `extra` pairs, then EGL_NONE.
fn dmabuf_attribs(
    fourcc: u32,
    size: (u32, u32),
    planes: &[(usize, u32, u32)],
    modifier: Option<u64>,
    extra: &[usize],
) -> Vec<usize> {
    const PLANE: [[usize; 5]; 2] = [
        [
            EGL_DMA_BUF_PLANE0_FD_EXT,
            EGL_DMA_BUF_PLANE0_OFFSET_EXT,
            EGL_DMA_BUF_PLANE0_PITCH_EXT,
            EGL_DMA_BUF_PLANE0_MODIFIER_LO_EXT,
            EGL_DMA_BUF_PLANE0_MODIFIER_HI_EXT,
        ],
        [
            EGL_DMA_BUF_PLANE1_FD_EXT,
            EGL_DMA_BUF_PLANE1_OFFSET_EXT,
            EGL_DMA_BUF_PLANE1_PITCH_EXT,
            EGL_DMA_BUF_PLANE1_MODIFIER_LO_EXT,
            EGL_DMA_BUF_PLANE1_MODIFIER_HI_EXT,
        ],
    ];
    let mut a = vec![
        EGL_LINUX_DRM_FOURCC_EXT,
        fourcc as usize,
        EGL_WIDTH,
        size.0 as usize,
        EGL_HEIGHT,
        size.1 as usize,
    ];
    for (&(fd, offset, pitch), names) in planes.iter().zip(PLANE.iter()) {
        a.extend([
            names[0],
            fd,
            names[1],
            offset as usize,
            names[2],
            pitch as usize,
        ]);
        if let Some(m) = modifier {
            a.extend([
                names[3],
                (m & 0xffff_ffff) as usize,
                names[4],
                (m >> 32) as usize,
            ]);
        }
    }
    a.extend_from_slice(extra);
    a.push(egl::ATTRIB_NONE);
    a
}

fn fd_ino(fd: BorrowedFd<'_>) -> u64 {
    nix::sys::stat::fstat(fd).map(|s| s.st_ino).unwrap_or(0)
}

/// Undoes a half-done [`Gpu::open`]: releases and destroys the context (if any), terminates the
/// display and destroys the GBM device.
fn release_egl(
    egl: &egl::DynamicInstance<egl::EGL1_5>,
    display: egl::Display,
    context: Option<egl::Context>,
    gbm: &mut Option<(libloading::Library, *mut c_void, File)>,
) {
    if let Some(c) = context {
        let _ = egl.make_current(display, None, None, None);
        let _ = egl.destroy_context(display, c);
    }
    let _ = egl.terminate(display);
    drop_gbm(gbm);
}

fn drop_gbm(gbm: &mut Option<(libloading::Library, *mut c_void, File)>) {
    if let Some((lib, dev, _file)) = gbm.take() {
        // SAFETY: gbm_device_destroy has this C signature; `dev` came from gbm_create_device
        // and nothing uses it any more.
        if let Ok(destroy) = unsafe { lib.get::<GbmDeviceDestroyFn>(b"gbm_device_destroy\0") } {
            // SAFETY: see above.
            unsafe { destroy(dev) };
        }
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.forget_all();
        let targets: Vec<_> = self.targets.drain().map(|(_, t)| t).collect();
        // SAFETY: the context is still current; the objects are ours.
        unsafe {
            for t in targets {
                self.gl.delete_framebuffer(t.fbo);
                self.gl.delete_texture(t.tex);
            }
            self.gl.delete_vertex_array(self.vao);
            for p in [
                Some(self.programs.copy),
                Some(self.programs.rgb),
                self.programs.ext_yuv,
                self.programs.ext_rgb,
            ]
            .into_iter()
            .flatten()
            {
                self.gl.delete_program(p);
            }
        }
        let _ = self.egl.make_current(self.display, None, None, None);
        let _ = self.egl.destroy_context(self.display, self.context);
        let _ = self.egl.terminate(self.display);
        drop_gbm(&mut self.gbm);
    }
}

impl Programs {
    fn new(gl: &glow::Context) -> Result<Programs> {
        let external = gl
            .supported_extensions()
            .contains("GL_OES_EGL_image_external_essl3");
        Ok(Programs {
            copy: program(gl, COPY)?,
            rgb: program(gl, RGB)?,
            ext_yuv: if external {
                Some(program(gl, EXT_YUV)?)
            } else {
                None
            },
            ext_rgb: if external {
                Some(program(gl, EXT_RGB)?)
            } else {
                None
            },
        })
    }
}

fn program(gl: &glow::Context, frag: &str) -> Result<glow::Program> {
    // SAFETY: the context is current; the shader and program objects are ours.
    unsafe {
        let p = gl
            .create_program()
            .map_err(|e| anyhow!("glCreateProgram: {e}"))?;
        let mut shaders = Vec::new();
        for (kind, src) in [(glow::VERTEX_SHADER, VERTEX), (glow::FRAGMENT_SHADER, frag)] {
            let s = gl
                .create_shader(kind)
                .map_err(|e| anyhow!("glCreateShader: {e}"))?;
            gl.shader_source(s, src);
            gl.compile_shader(s);
            if !gl.get_shader_compile_status(s) {
                bail!(
                    "GLSL compile failed: {}",
                    gl.get_shader_info_log(s).trim().replace('\n', "; ")
                );
            }
            gl.attach_shader(p, s);
            shaders.push(s);
        }
        gl.link_program(p);
        for s in shaders {
            gl.detach_shader(p, s);
            gl.delete_shader(s);
        }
        if !gl.get_program_link_status(p) {
            bail!(
                "GLSL link failed: {}",
                gl.get_program_info_log(p).trim().replace('\n', "; ")
            );
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmabuf_attrib_lists() {
        // KWin's chroma plane: GR88 at half size, at the plane offset, linear modifier.
        let uv = dmabuf_attribs(
            DRM_FORMAT_GR88,
            (960, 544),
            &[(7, 2088960, 1920)],
            Some(0),
            &[],
        );
        assert_eq!(
            uv,
            [
                EGL_LINUX_DRM_FOURCC_EXT,
                DRM_FORMAT_GR88 as usize,
                EGL_WIDTH,
                960,
                EGL_HEIGHT,
                544,
                EGL_DMA_BUF_PLANE0_FD_EXT,
                7,
                EGL_DMA_BUF_PLANE0_OFFSET_EXT,
                2088960,
                EGL_DMA_BUF_PLANE0_PITCH_EXT,
                1920,
                EGL_DMA_BUF_PLANE0_MODIFIER_LO_EXT,
                0,
                EGL_DMA_BUF_PLANE0_MODIFIER_HI_EXT,
                0,
                egl::ATTRIB_NONE,
            ]
        );
        // NV12: two planes, each with the modifier split in halves, the hints last.
        let m = 0x0100_0000_0000_0001u64;
        let nv12 = dmabuf_attribs(
            DRM_FORMAT_NV12,
            (320, 240),
            &[(3, 0, 320), (3, 76800, 320)],
            Some(m),
            &[EGL_SAMPLE_RANGE_HINT_EXT, EGL_YUV_NARROW_RANGE_EXT],
        );
        assert_eq!(nv12.len(), 6 + 2 * 10 + 2 + 1);
        let at = |k: usize| nv12[nv12.iter().position(|&x| x == k).unwrap() + 1];
        assert_eq!(at(EGL_DMA_BUF_PLANE1_OFFSET_EXT), 76800);
        assert_eq!(at(EGL_DMA_BUF_PLANE1_MODIFIER_LO_EXT), 1);
        assert_eq!(at(EGL_DMA_BUF_PLANE1_MODIFIER_HI_EXT), 0x0100_0000);
        assert_eq!(
            nv12[nv12.len() - 3..],
            [
                EGL_SAMPLE_RANGE_HINT_EXT,
                EGL_YUV_NARROW_RANGE_EXT,
                egl::ATTRIB_NONE
            ]
        );
        // No modifier: no modifier attributes at all (the driver's implicit layout).
        assert_eq!(
            dmabuf_attribs(DRM_FORMAT_R8, (2, 2), &[(1, 0, 64)], None, &[]).len(),
            13
        );
    }

    #[test]
    fn fourccs() {
        assert_eq!(DRM_FORMAT_R8, 0x2020_3852);
        assert_eq!(DRM_FORMAT_GR88, 0x3838_5247);
        assert_eq!(DRM_FORMAT_NV12, 0x3231_564e);
        assert_eq!(fourcc_name(DRM_FORMAT_R8), "R8");
        assert_eq!(fourcc_name(DRM_FORMAT_NV12), "NV12");
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn matrices_invert_and_convert() {
        for m in [Matrix::Bt601, Matrix::Bt709] {
            let f = m.forward();
            let i = m.inverse();
            for r in 0..3 {
                for c in 0..3 {
                    let v: f64 = (0..3).map(|k| i[r][k] * f[k][c]).sum();
                    assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-9);
                }
            }
        }
        // Limited-range black, white and BT.601 red.
        let g = Geometry {
            width: 2,
            height: 2,
        };
        let px = |y: u8, cb: u8, cr: u8| {
            let mut p = vec![y; 4];
            p.extend([cb, cr, cb, cr]);
            nv12_to_rgb(&p, g, Matrix::Bt601)[..3].to_vec()
        };
        assert_eq!(px(16, 128, 128), vec![0, 0, 0]);
        assert_eq!(px(235, 128, 128), vec![255, 255, 255]);
        // The 8-bit code of BT.601 red is itself rounded: R = 0.9978.
        assert_eq!(px(81, 90, 240), vec![254, 0, 0]);
        let d = compare_rgb(&[10, 11, 12], &[10, 12, 15], Matrix::Bt709);
        assert_eq!((d.max_abs, d.over_tolerance), (3, 1));
    }
}
