//! The decoder's options: the command-line arguments `decode`, `verify` and `present` share, and
//! what the library callers set.

use crate::kmod::Mode;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Frame-based (one request per picture) or slice-based (one request per slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeMode {
    Frame,
    Slice,
}

impl DecodeMode {
    pub fn parse(s: &str) -> Option<DecodeMode> {
        match s {
            "frame" => Some(DecodeMode::Frame),
            "slice" => Some(DecodeMode::Slice),
            _ => None,
        }
    }
}

/// The decoder arguments that `decode` and `verify` share.
#[derive(clap::Args, Debug, Clone)]
pub struct DecoderArgs {
    /// The decoder's video node (found when absent).
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// The decoder's media device (found from the media graph when absent).
    #[arg(long)]
    pub media: Option<PathBuf>,
    /// Only the first N pictures (decode order).
    #[arg(long)]
    pub frames: Option<usize>,
    /// Requests kept in flight (at least 2).
    #[arg(long, default_value_t = 3)]
    pub in_flight: usize,
    /// Queue the requests from a second thread: visl runs an idle device's job inside
    /// MEDIA_REQUEST_IOC_QUEUE, so without this a fence or frame looked at right after queueing
    /// is already done; with it visl decodes while this thread goes on, as hardware would.
    #[arg(long)]
    pub async_queue: bool,
    /// With --async-queue: queue each request only after its frame's GPU sample (or after MS
    /// ms): the job waits for the hardware, as behind earlier jobs on a busy decoder (visl
    /// never makes a job wait: it runs it inside the call that queues it).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub queue_after_sample: Option<u64>,
}

impl DecoderArgs {
    /// Checks the arguments and turns them into decode options (the rest at their defaults).
    pub fn options(&self) -> Result<DecodeOptions> {
        if self.in_flight < 2 {
            bail!("--in-flight must be at least 2");
        }
        if self.frames == Some(0) {
            bail!("--frames must be at least 1");
        }
        if self.queue_after_sample.is_some() && !self.async_queue {
            bail!("--queue-after-sample needs --async-queue (the queue thread holds the request)");
        }
        Ok(DecodeOptions {
            device: self.device.clone(),
            media: self.media.clone(),
            frames: self.frames,
            in_flight: self.in_flight,
            async_queue: self.async_queue,
            queue_after_sample: self.queue_after_sample.map(Duration::from_millis),
            ..Default::default()
        })
    }
}

#[derive(Clone, Debug)]
pub struct DecodeOptions {
    /// The decoder's video node; found when None.
    pub device: Option<PathBuf>,
    /// Its media device; found through the media graph when None.
    pub media: Option<PathBuf>,
    /// Decode only the first N pictures (decode order).
    pub frames: Option<usize>,
    /// Set the module's mode first (the module must be loaded).
    pub mode: Option<Mode>,
    /// Force a decode mode; None: frame-based when offered, else slice-based.
    pub decode_mode: Option<DecodeMode>,
    /// Requests kept queued at once (at least 2).
    pub in_flight: usize,
    /// Queue requests from a second thread: a driver that runs the job inside
    /// MEDIA_REQUEST_IOC_QUEUE when idle (visl) then decodes while this thread goes on, as a
    /// hardware decoder would; [`FrameHook::queued`] is then called once the request is handed
    /// to that thread.
    pub async_queue: bool,
    /// With `async_queue`: call [`FrameHook::queued`](super::FrameHook::queued) only once the
    /// driver has taken the request (the job is committed), not as soon as it is handed to the
    /// queue thread.
    pub wait_committed: bool,
    /// With `async_queue`: the queue thread queues each request only once the picture's
    /// `queued` hook has returned (its GPU sample is done), or after this long: a decoder busy
    /// with earlier jobs, as hardware is and visl never is (it runs a job inside the call that
    /// queues it, and the media request lock serialises those calls).
    pub queue_after_sample: Option<Duration>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// How long to wait for one frame before giving up.
    pub frame_timeout: Duration,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            device: None,
            media: None,
            frames: None,
            mode: None,
            decode_mode: None,
            in_flight: 3,
            async_queue: false,
            wait_committed: false,
            queue_after_sample: None,
            progress: false,
            frame_timeout: Duration::from_secs(10),
        }
    }
}
