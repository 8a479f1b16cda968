//! The EGL display and its GLES 3 context: libEGL loaded at run time, the surfaceless or GBM
//! platform (surfaceless: Mesa's software device when vgem's are the only render nodes), the
//! extensions and entry points the import paths need, what the device is (render node,
//! software or not), and the teardown.

use super::cache::Imported;
use super::draw::Target;
use super::shaders::Programs;
use super::{fourcc_name, FormatInfo, GpuInfo, GpuOptions, ImportPath, Platform};
use super::{DRM_FORMAT_GR88, DRM_FORMAT_NV12, DRM_FORMAT_R8};
use anyhow::{anyhow, bail, Context as _, Result};
use glow::HasContext;
use khronos_egl as egl;
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

// EGL_EXT_platform / Mesa / KHR platform enums.
const EGL_PLATFORM_SURFACELESS_MESA: egl::Enum = 0x31DD;
const EGL_PLATFORM_GBM_KHR: egl::Enum = 0x31D7;
// EGL_EXT_device_query / EGL_EXT_device_drm(_render_node).
const EGL_DEVICE_EXT: egl::Int = 0x322C;
const EGL_DRM_DEVICE_FILE_EXT: egl::Int = 0x3233;
const EGL_DRM_RENDER_NODE_FILE_EXT: egl::Int = 0x3377;
// EGL_EXT_platform_device.
const EGL_PLATFORM_DEVICE_EXT: egl::Enum = 0x313F;

pub(super) type ImageTargetTexture2dFn = unsafe extern "system" fn(target: u32, image: *mut c_void);
pub(super) type QueryDmaBufFormatsFn =
    unsafe extern "system" fn(dpy: *mut c_void, max: i32, formats: *mut i32, num: *mut i32) -> u32;
pub(super) type QueryDmaBufModifiersFn = unsafe extern "system" fn(
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
type QueryDevicesFn =
    unsafe extern "system" fn(max: i32, devices: *mut *mut c_void, num: *mut i32) -> u32;
type GbmCreateDeviceFn = unsafe extern "C" fn(fd: i32) -> *mut c_void;
type GbmDeviceDestroyFn = unsafe extern "C" fn(dev: *mut c_void);

/// An EGL display with a current GLES 3 context and the dma-buf import entry points.
pub struct Gpu {
    pub(super) egl: egl::DynamicInstance<egl::EGL1_5>,
    pub(super) display: egl::Display,
    pub(super) context: egl::Context,
    pub(super) gl: glow::Context,
    pub(super) image_target: ImageTargetTexture2dFn,
    pub(super) query_formats: Option<QueryDmaBufFormatsFn>,
    pub(super) query_modifiers: Option<QueryDmaBufModifiersFn>,
    pub(super) programs: Programs,
    pub(super) vao: glow::VertexArray,
    pub(super) targets: HashMap<(u32, u32, u32), Target>,
    pub(super) cache: HashMap<(ImportPath, u32), Imported>,
    pub(super) opts: GpuOptions,
    pub(super) gbm: Option<(libloading::Library, *mut c_void, File)>,
    pub info: GpuInfo,
    /// EGLImages created and destroyed so far, per import path.
    pub created: HashMap<ImportPath, usize>,
    pub destroyed: HashMap<ImportPath, usize>,
}

/// The display of Mesa's software device (EGL_EXT_platform_device, EGL_MESA_device_software),
/// if EGL has one.
fn software_display(
    egl: &egl::DynamicInstance<egl::EGL1_5>,
    client_ext: &str,
) -> Option<egl::Display> {
    let has = |e: &str| client_ext.split(' ').any(|x| x == e);
    if !has("EGL_EXT_platform_device") || !has("EGL_EXT_device_enumeration") {
        return None;
    }
    let proc = |name: &str| egl.get_proc_address(name).map(|f| f as *const c_void);
    // SAFETY: the entry points of EGL_EXT_device_enumeration and EGL_EXT_device_query, with
    // their C signatures.
    let (query_devices, query_string) = unsafe {
        (
            std::mem::transmute::<*const c_void, QueryDevicesFn>(proc("eglQueryDevicesEXT")?),
            std::mem::transmute::<*const c_void, QueryDeviceStringFn>(proc(
                "eglQueryDeviceStringEXT",
            )?),
        )
    };
    let mut devices = [std::ptr::null_mut::<c_void>(); 16];
    let mut n = 0i32;
    // SAFETY: `devices` has room for the 16 entries asked for; `n` is a valid out-pointer.
    if unsafe { query_devices(devices.len() as i32, devices.as_mut_ptr(), &mut n) } != egl::TRUE {
        return None;
    }
    let software = devices.iter().take(n.clamp(0, 16) as usize).find(|&&dev| {
        // SAFETY: `dev` came from eglQueryDevicesEXT.
        unsafe { device_string(query_string, dev, egl::EXTENSIONS) }.is_some_and(|x| {
            x.split_whitespace()
                .any(|e| e == "EGL_MESA_device_software")
        })
    })?;
    // SAFETY: the device platform takes an EGLDeviceEXT of eglQueryDevicesEXT.
    unsafe { egl.get_platform_display(EGL_PLATFORM_DEVICE_EXT, *software, &[egl::ATTRIB_NONE]) }
        .ok()
}

/// String `name` of EGL device `dev` (eglQueryDeviceStringEXT), if it has one.
///
/// # Safety
///
/// `dev` is an EGLDeviceEXT of the EGL that `query` belongs to.
unsafe fn device_string(query: QueryDeviceStringFn, dev: *mut c_void, name: i32) -> Option<String> {
    // SAFETY: see the function's safety section.
    let p = unsafe { query(dev, name) };
    // SAFETY: a non-null result is a NUL-terminated string owned by EGL.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

pub(super) fn egl_err(e: egl::Error) -> String {
    format!("{e:?} (0x{:x})", e.native())
}

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
                // With no GPU, Mesa's surfaceless platform runs llvmpipe on the first render
                // node it can open (kms_swrast), and vgem (the CI's fence stand-in) is one. On
                // 6.12, llvmpipe reading a dma-buf imported that way faults inside its own
                // generated code (docs/ci.md, 6.12). With vgem's nodes only, take Mesa's
                // software device instead: the same llvmpipe, without a DRM device.
                let only_vgem = {
                    let nodes = crate::sys::render_nodes();
                    !nodes.is_empty() && nodes.iter().all(|(_, d)| d == "vgem")
                };
                match only_vgem
                    .then(|| software_display(&egl, &client_ext))
                    .flatten()
                {
                    Some(d) => (
                        "device (Mesa's software device; vgem's render node left alone)"
                            .to_string(),
                        d,
                    ),
                    None => {
                        // SAFETY: the surfaceless platform takes EGL_DEFAULT_DISPLAY (null).
                        let d = unsafe {
                            egl.get_platform_display(
                                EGL_PLATFORM_SURFACELESS_MESA,
                                egl::DEFAULT_DISPLAY,
                                &[egl::ATTRIB_NONE],
                            )
                        }
                        .map_err(|e| {
                            anyhow!("eglGetPlatformDisplay(surfaceless): {}", egl_err(e))
                        })?;
                        ("surfaceless".to_string(), d)
                    }
                }
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
                    // SAFETY: `dev` is the display's EGLDeviceEXT.
                    let s = |name| unsafe { device_string(qds, dev as *mut c_void, name) };
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

    pub(super) fn has_ext(&self, e: &str) -> bool {
        self.info.egl_extensions.iter().any(|x| x == e)
    }
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
