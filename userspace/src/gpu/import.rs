//! A dma-buf into EGLImages and textures: the formats and modifiers EGL can import, the
//! EGL_EXT_image_dma_buf_import attribute lists, the KWin path (R8 + GR88, GL_TEXTURE_2D) and the
//! external path (one NV12 image, GL_TEXTURE_EXTERNAL_OES).

use super::cache::Imported;
use super::display::egl_err;
use super::{fourcc_name, DmaBufNv12, Gpu, Images, ImportInfo, ImportPath, Matrix};
use super::{
    DRM_FORMAT_GR88, DRM_FORMAT_MOD_INVALID, DRM_FORMAT_MOD_LINEAR, DRM_FORMAT_NV12, DRM_FORMAT_R8,
};
use anyhow::{anyhow, bail, Result};
use glow::HasContext;
use khronos_egl as egl;
use std::os::fd::{AsRawFd, BorrowedFd};

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
// GL_OES_EGL_image_external.
pub(super) const GL_TEXTURE_EXTERNAL_OES: u32 = 0x8D65;

impl Gpu {
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

    pub(super) fn import(&mut self, path: ImportPath, b: &DmaBufNv12<'_>) -> Result<Imported> {
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

pub(super) fn fd_ino(fd: BorrowedFd<'_>) -> u64 {
    nix::sys::stat::fstat(fd).map(|s| s.st_ino).unwrap_or(0)
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
}
