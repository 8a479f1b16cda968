//! Drawing and readback: a render target per (format, size), one triangle with a program, the
//! pixels read back; the raw (or recovered) NV12 planes and the RGB conversions of one import.

use super::cache::Imported;
use super::color::gl_mat3;
use super::import::GL_TEXTURE_EXTERNAL_OES;
use super::{DmaBufNv12, Gpu, ImportPath, Matrix, Sample};
use anyhow::{anyhow, bail, Result};
use glow::HasContext;

/// A render target: its texture and framebuffer.
pub(super) struct Target {
    pub(super) tex: glow::Texture,
    pub(super) fbo: glow::Framebuffer,
}

impl Gpu {
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

    pub(super) fn draw(
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
