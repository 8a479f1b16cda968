//! The EGLImage cache: with [`Images::Cached`] the images of a buffer are created once and kept
//! (KWin keeps them per dma-buf), with [`Images::PerFrame`] created and destroyed for each frame
//! (Weston). A cached import of another dma-buf under the same key is dropped.

use super::import::fd_ino;
use super::{DmaBufNv12, Gpu, Images, ImportPath, Sample};
use anyhow::{bail, Result};
use glow::HasContext;
use khronos_egl as egl;

/// The EGLImages and textures of one import.
pub(super) struct Imported {
    pub(super) images: Vec<egl::Image>,
    pub(super) textures: Vec<glow::Texture>,
    pub(super) ino: u64,
}

impl Gpu {
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

    pub(super) fn destroy_images(&mut self, path: ImportPath, images: Vec<egl::Image>) {
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
}
