//! vb2-resv userspace: the verifier and the guest test programs share these pieces.
//!
//! - [`sys`]: dma-buf, sync_file, vgem and dma-heap ioctls (no crate covers them).
//! - [`kmod`]: the `/dev/vb2_resv` control device of the kernel module.
//! - [`v4l2`]: a small CAPTURE/OUTPUT queue driver over v4l2r's ioctl layer.
//! - [`layout`]: the NV12 layout of a CAPTURE buffer (decoder, report and samplers share it).
//! - [`h264`]: Annex-B H.264 parsing, POC, DPB and reference lists, and the V4L2 stateless
//!   H.264 controls built from them.
//! - [`decode`]: the stateless decoder loop over the media request API, with per-frame fence
//!   and CPU-view observations.
//! - [`probe`]: what the verifier sees of the machine (`vb2-resv probe`).
//! - [`report`]: the decode report (summary table, JSON; `docs/report-format.md`).
//! - [`gpu`]: EGL/GLES sampling of decoded NV12 dma-bufs, the way KWin imports them.
//! - [`classify`]: the per-frame verdict (correct, sentinel, zero, previous, torn, error).
//! - [`evidence`]: the RFC evidence (Markdown table, JSON, PNG triptych).
//! - [`consumer_wait`]: what a consumer waits for before its GPU reads (`--consumer-wait`).
//! - [`pipeline`]: the mpv + KWin pipeline (`--pipeline mpv-kwin`): LIFO pool, compositor thread.
//! - [`verify`]: `vb2-resv verify`: decode, sample every frame through EGL, classify.

pub mod arm;
pub mod classify;
pub mod consumer_wait;
pub mod decode;
pub mod doctor;
pub mod evidence;
pub mod gpu;
pub mod h264;
pub mod implicit;
pub mod kmod;
pub mod layout;
pub mod pipeline;
pub mod present;
pub mod probe;
pub mod report;
pub mod request_queue;
pub mod sampler;
pub mod synthetic;
pub mod sys;
pub mod truth;
pub mod v4l2;
pub mod verdict;
pub mod verify;
