//! The GLSL ES 3.00 programs: a full-viewport triangle, a texel copy, the KWin-style RGB
//! conversion and the external path's sampling (samplerExternalOES, when GLES has it).

use anyhow::{anyhow, bail, Result};
use glow::HasContext;

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

/// The compiled programs (the external ones only with GL_OES_EGL_image_external_essl3).
pub(super) struct Programs {
    pub(super) copy: glow::Program,
    pub(super) rgb: glow::Program,
    pub(super) ext_yuv: Option<glow::Program>,
    pub(super) ext_rgb: Option<glow::Program>,
}

impl Programs {
    pub(super) fn new(gl: &glow::Context) -> Result<Programs> {
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
