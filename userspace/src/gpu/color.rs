//! The CPU's YCbCr -> RGB conversion (BT.601 and BT.709, limited range), the reference the GPU's
//! RGB readbacks are compared with, and the comparison.

use crate::classify::Geometry;
use serde::Serialize;

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
pub(super) fn gl_mat3(m: [[f64; 3]; 3]) -> [f32; 9] {
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

#[cfg(test)]
mod tests {
    use super::*;

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
