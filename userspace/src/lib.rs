//! vb2-resv userspace: the verifier and the guest test programs share these pieces.
//!
//! - [`sys`]: dma-buf, sync_file, vgem and dma-heap ioctls (no crate covers them).
//! - [`kmod`]: the `/dev/vb2_resv` control device of the kernel module.
//! - [`v4l2`]: a small CAPTURE/OUTPUT queue driver over v4l2r's ioctl layer.

pub mod kmod;
pub mod sys;
pub mod v4l2;
