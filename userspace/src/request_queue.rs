//! The request-queue thread of the decode loop: MEDIA_REQUEST_IOC_QUEUE from a second thread,
//! so that a driver which runs an idle device's job inside that call (visl) decodes while the
//! decoder thread goes on, as hardware would (`--async-queue`).

use anyhow::{Context, Result};
use std::time::{Duration, Instant};
use v4l2r::ioctl::Request;

/// What the queue thread sends back: the OUTPUT slot, the picture, the request, the result of
/// MEDIA_REQUEST_IOC_QUEUE and how long the call took.
pub(crate) type QueueAck = (
    usize,
    usize,
    Request,
    std::result::Result<(), String>,
    Duration,
);

/// Holds a request back until the decoder thread says go (or the time is up).
pub(crate) type Gate = (std::sync::mpsc::Receiver<()>, Duration);

/// What the decoder thread hands over: the OUTPUT slot, the picture, the request, its gate.
pub(crate) type QueueJob = (usize, usize, Request, Option<Gate>);

/// A thread that does MEDIA_REQUEST_IOC_QUEUE, so that a driver which runs the job inside that
/// call (visl, when idle) runs it while the decoder thread goes on, as hardware would.
pub(crate) struct QueueThread {
    pub(crate) tx: Option<std::sync::mpsc::Sender<QueueJob>>,
    pub(crate) rx: std::sync::mpsc::Receiver<QueueAck>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// Requests handed over and not acknowledged yet, per picture.
    pub(crate) outstanding: std::collections::HashMap<usize, usize>,
}

impl QueueThread {
    pub(crate) fn spawn() -> Result<QueueThread> {
        let (tx, thread_rx) = std::sync::mpsc::channel::<QueueJob>();
        let (thread_tx, rx) = std::sync::mpsc::channel::<QueueAck>();
        let handle = std::thread::Builder::new()
            .name("request-queue".into())
            .spawn(move || {
                for (slot, frame, req, gate) in thread_rx {
                    if let Some((go, limit)) = gate {
                        // Go, timeout or a decoder gone: the request is queued all the same.
                        let _ = go.recv_timeout(limit);
                    }
                    let t = Instant::now();
                    let r = req.queue().map_err(|e| e.to_string());
                    if thread_tx.send((slot, frame, req, r, t.elapsed())).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start the request-queue thread")?;
        Ok(QueueThread {
            tx: Some(tx),
            rx,
            handle: Some(handle),
            outstanding: Default::default(),
        })
    }
}

impl Drop for QueueThread {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
