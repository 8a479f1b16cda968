//! The OUTPUT side of the session: one buffer per request in flight, the bitstream of a picture
//! (or slice) in it, the stateless H.264 controls in its request, MEDIA_REQUEST_IOC_QUEUE (from
//! the queue thread with `--async-queue`) and the requests' reuse once done (REINIT).

use super::options::DecodeMode;
use super::session::{errno_last, wait_fd, Session, OUT_Q};
use super::timestamp_ns;
use crate::h264::{self, Picture, Stream};
use crate::request_queue::QueueAck;
use anyhow::{anyhow, bail, Result};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use v4l2r::bindings;
use v4l2r::controls::codec::{
    H264DecodeParams, H264Pps, H264PredWeights, H264ScalingMatrix, H264SliceParams, H264Sps,
};
use v4l2r::controls::{AsV4l2ControlSlice, SafeExtControl};
use v4l2r::ioctl::{self, BufferFlags, CtrlWhich, QBufPlane, QBuffer, Request};
use v4l2r::memory::MmapHandle;

/// ffmpeg's AV_INPUT_BUFFER_PADDING_SIZE.
const BITSTREAM_PADDING: usize = 64;

/// The controls of one request, laid out as an array of v4l2_ext_control.
#[repr(C)]
struct FrameCtrls {
    sps: SafeExtControl<H264Sps>,
    pps: SafeExtControl<H264Pps>,
    sm: SafeExtControl<H264ScalingMatrix>,
    dp: SafeExtControl<H264DecodeParams>,
}

impl AsV4l2ControlSlice for &mut FrameCtrls {
    fn as_v4l2_control_slice(&mut self) -> &mut [bindings::v4l2_ext_control] {
        let p = (*self) as *mut FrameCtrls as *mut bindings::v4l2_ext_control;
        // SAFETY: FrameCtrls is repr(C) with four SafeExtControl fields, each a
        // repr(transparent) v4l2_ext_control (plus a zero-sized marker): an array of four.
        unsafe { std::slice::from_raw_parts_mut(p, 4) }
    }
}

/// One OUTPUT buffer with its mapping and its request.
pub(super) struct OutputSlot {
    index: u32,
    map: ioctl::PlaneMapping,
    /// None while the queue thread has it.
    request: Option<Request>,
    busy: bool,
}

/// The `count` OUTPUT buffers REQBUFS granted, mapped, each with a request of `media`.
pub(super) fn output_slots(
    dev: &File,
    media: &File,
    media_path: &Path,
    video: &str,
    count: u32,
) -> Result<Vec<OutputSlot>> {
    let mut outputs = Vec::new();
    for i in 0..count {
        let qb: ioctl::QueryBuffer = ioctl::querybuf(dev, OUT_Q, i as usize)
            .map_err(|e| anyhow!("{video}: QUERYBUF OUTPUT {i}: {e}"))?;
        let pl = qb
            .planes
            .first()
            .ok_or_else(|| anyhow!("{video}: OUTPUT buffer {i} has no plane"))?;
        let map = ioctl::mmap(dev, pl.mem_offset, pl.length)
            .map_err(|e| anyhow!("{video}: mmap OUTPUT buffer {i}: {e}"))?;
        let request = Request::alloc(media)
            .map_err(|e| anyhow!("{}: MEDIA_IOC_REQUEST_ALLOC: {e}", media_path.display()))?;
        outputs.push(OutputSlot {
            index: i,
            map,
            request: Some(request),
            busy: false,
        });
    }
    Ok(outputs)
}

impl Session {
    /// Queues picture `i` (decode order): one request, or one per slice in slice-based mode
    /// (all but the last holding the CAPTURE buffer). Returns the requests and bytes queued.
    pub(super) fn queue_picture(
        &mut self,
        stream: &Stream,
        pic: &Picture,
        i: usize,
        timeout: Duration,
    ) -> Result<(usize, usize)> {
        let ctrls = pic.v4l2_controls(stream, timestamp_ns);
        let ts = timestamp_ns(i);
        let mut bytes = 0;
        let requests = match self.mode {
            DecodeMode::Frame => {
                let nals: Vec<&[u8]> = pic.slices.iter().map(|s| s.nal()).collect();
                bytes += self.queue_request(&nals, &ctrls, None, ts, false, i, timeout)?;
                1
            }
            DecodeMode::Slice => {
                let k = pic.slices.len();
                for (j, s) in pic.slices.iter().enumerate() {
                    let hold = self.hold && j + 1 < k;
                    bytes +=
                        self.queue_request(&[s.nal()], &ctrls, Some(j), ts, hold, i, timeout)?;
                }
                k
            }
        };
        Ok((requests, bytes))
    }

    /// Waits until every OUTPUT buffer is back and its request reusable.
    pub(super) fn reclaim_all(&mut self, timeout: Duration) -> Result<()> {
        while self.outputs.iter().any(|s| s.busy) {
            self.reclaim_output(timeout)?;
        }
        Ok(())
    }

    /// How long MEDIA_REQUEST_IOC_QUEUE took for picture `frame` (all its requests), once the
    /// queue thread, in async mode, has answered for each of them.
    pub(super) fn queue_time(&mut self, frame: usize, timeout: Duration) -> Result<Duration> {
        while self
            .queue_thread
            .as_ref()
            .is_some_and(|q| q.outstanding.get(&frame).copied().unwrap_or(0) > 0)
        {
            self.take_ack(timeout)?;
        }
        Ok(self.queue_times.remove(&frame).unwrap_or_default())
    }

    /// Waits for a done OUTPUT buffer, dequeues it and makes its request reusable.
    fn reclaim_output(&mut self, timeout: Duration) -> Result<()> {
        if !wait_fd(self.dev.as_fd(), nix::poll::PollFlags::POLLOUT, timeout)? {
            bail!(
                "{}: no OUTPUT buffer came back within {:?}",
                self.video,
                timeout
            );
        }
        let b: ioctl::V4l2Buffer = ioctl::dqbuf(&self.dev, OUT_Q)
            .map_err(|e| anyhow!("{}: DQBUF OUTPUT: {e} ({})", self.video, errno_last()))?;
        let slot = self
            .outputs
            .iter_mut()
            .find(|s| s.index == b.index())
            .ok_or_else(|| {
                anyhow!(
                    "{}: DQBUF OUTPUT gave unknown buffer {}",
                    self.video,
                    b.index()
                )
            })?;
        let slot_i = slot.index as usize;
        while self.outputs[slot_i].request.is_none() {
            self.take_ack(timeout)?;
        }
        let slot = &mut self.outputs[slot_i];
        let request = slot
            .request
            .as_ref()
            .ok_or_else(|| anyhow!("request lost"))?;
        // The request completes once all its objects are done; wait for it before REINIT.
        // SAFETY: the request fd is open for as long as `request` lives (this call).
        let rfd = unsafe { BorrowedFd::borrow_raw(request.as_raw_fd()) };
        if !wait_fd(rfd, nix::poll::PollFlags::POLLPRI, timeout)? {
            bail!(
                "{}: request of OUTPUT buffer {} did not complete within {:?}",
                self.video,
                slot.index,
                timeout
            );
        }
        request
            .reinit()
            .map_err(|e| anyhow!("MEDIA_REQUEST_IOC_REINIT: {e}"))?;
        slot.busy = false;
        Ok(())
    }

    fn free_output(&mut self, timeout: Duration) -> Result<usize> {
        loop {
            if let Some(i) = self.outputs.iter().position(|s| !s.busy) {
                return Ok(i);
            }
            self.reclaim_output(timeout)?;
        }
    }

    /// Queues one request: `nals` into an OUTPUT buffer, the controls into its request.
    /// Returns the bytes queued and how long MEDIA_REQUEST_IOC_QUEUE took (visl runs the job
    /// inside that call when the device is idle).
    #[allow(clippy::too_many_arguments)]
    fn queue_request(
        &mut self,
        nals: &[&[u8]],
        ctrls: &h264::V4l2Controls,
        slice: Option<usize>,
        ts: u64,
        hold: bool,
        frame: usize,
        timeout: Duration,
    ) -> Result<usize> {
        let slot_i = self.free_output(timeout)?;
        let annex_b = self.annex_b;
        let out_size = self.out_size;
        let video = self.video.clone();
        let slot = &mut self.outputs[slot_i];
        let mut n = 0usize;
        for nal in nals {
            let sc: &[u8] = if annex_b { &[0, 0, 1] } else { &[] };
            let end = n + sc.len() + nal.len();
            if end > slot.map.data.len().min(out_size) {
                bail!(
                    "{video}: bitstream of {end} bytes does not fit an OUTPUT buffer of {out_size}"
                );
            }
            slot.map.data[n..n + sc.len()].copy_from_slice(sc);
            slot.map.data[n + sc.len()..end].copy_from_slice(nal);
            n = end;
        }
        // Zeroes after the bitstream, as ffmpeg pads its packets (AV_INPUT_BUFFER_PADDING_SIZE):
        // a decoder that reads ahead finds no stale bytes of an earlier, longer picture.
        let pad_end = (n + BITSTREAM_PADDING).min(slot.map.data.len());
        slot.map.data[n..pad_end].fill(0);
        let rfd = slot
            .request
            .as_ref()
            .ok_or_else(|| anyhow!("OUTPUT slot {slot_i} has no request"))?
            .as_raw_fd();
        let mut fc = FrameCtrls {
            sps: SafeExtControl::from(ctrls.sps),
            pps: SafeExtControl::from(ctrls.pps),
            sm: SafeExtControl::from(ctrls.scaling_matrix),
            dp: SafeExtControl::from(ctrls.decode_params),
        };
        ioctl::s_ext_ctrls(&self.dev, CtrlWhich::Request(rfd), &mut fc).map_err(|e| {
            anyhow!("{video}: S_EXT_CTRLS (request) SPS/PPS/SCALING_MATRIX/DECODE_PARAMS: {e:?}")
        })?;
        if let Some(k) = slice {
            let sp = ctrls
                .slice_params
                .get(k)
                .copied()
                .ok_or_else(|| anyhow!("no SLICE_PARAMS for slice {k}"))?;
            let mut c = SafeExtControl::<H264SliceParams>::from(sp);
            ioctl::s_ext_ctrls(&self.dev, CtrlWhich::Request(rfd), &mut c)
                .map_err(|e| anyhow!("{video}: S_EXT_CTRLS (request) SLICE_PARAMS: {e:?}"))?;
            if let Some(Some(pw)) = ctrls.pred_weights.get(k) {
                let mut c = SafeExtControl::<H264PredWeights>::from(*pw);
                ioctl::s_ext_ctrls(&self.dev, CtrlWhich::Request(rfd), &mut c)
                    .map_err(|e| anyhow!("{video}: S_EXT_CTRLS (request) PRED_WEIGHTS: {e:?}"))?;
            }
        }
        let mut q = QBuffer::<MmapHandle>::new(OUT_Q, slot.index)
            .set_timestamp((ts / 1_000_000_000) as _, ((ts / 1000) % 1_000_000) as _)
            .set_request(rfd);
        if hold {
            q.flags |= BufferFlags::from_bits_retain(bindings::V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF);
        }
        q.planes.push(QBufPlane::new_from_handle(&MmapHandle, n));
        ioctl::qbuf::<_, ()>(&self.dev, q)
            .map_err(|e| anyhow!("{video}: QBUF OUTPUT {} (request): {e}", slot.index))?;
        slot.busy = true;
        let busy = self.outputs.iter().filter(|s| s.busy).count();
        self.max_in_flight = self.max_in_flight.max(busy);
        let slot = &mut self.outputs[slot_i];
        if let Some(qt) = self.queue_thread.as_mut() {
            let gate = self.queue_after_sample.map(|limit| {
                let (go, wait) = std::sync::mpsc::channel();
                self.gates.push(go);
                (wait, limit)
            });
            let req = slot
                .request
                .take()
                .ok_or_else(|| anyhow!("OUTPUT slot {slot_i} has no request"))?;
            qt.tx
                .as_ref()
                .ok_or_else(|| anyhow!("request-queue thread gone"))?
                .send((slot_i, frame, req, gate))
                .map_err(|_| anyhow!("request-queue thread gone"))?;
            *qt.outstanding.entry(frame).or_default() += 1;
            if self.wait_committed {
                let index = slot.index;
                self.wait_request_taken(index, timeout)?;
            }
            return Ok(n);
        }
        let t = Instant::now();
        slot.request
            .as_ref()
            .ok_or_else(|| anyhow!("OUTPUT slot {slot_i} has no request"))?
            .queue()
            .map_err(|e| anyhow!("{video}: MEDIA_REQUEST_IOC_QUEUE: {e}"))?;
        *self.queue_times.entry(frame).or_default() += t.elapsed();
        Ok(n)
    }

    /// Waits until the queue thread's MEDIA_REQUEST_IOC_QUEUE has taken the request: the OUTPUT
    /// buffer leaves its request (QUERYBUF shows it QUEUED, or DONE already).
    fn wait_request_taken(&mut self, index: u32, timeout: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            let q: ioctl::QueryBuffer = ioctl::querybuf(&self.dev, OUT_Q, index as usize)
                .map_err(|e| anyhow!("{}: QUERYBUF OUTPUT {index}: {e}", self.video))?;
            // v4l2r 0.0.8's BufferFlags drops V4L2_BUF_FLAG_IN_REQUEST (from_bits_truncate): a
            // buffer in a request not queued yet has neither QUEUED nor DONE, one in the driver's
            // hands (or finished) has one of them.
            if q.flags.contains(BufferFlags::QUEUED) || q.flags.contains(BufferFlags::DONE) {
                return Ok(());
            }
            // A failed MEDIA_REQUEST_IOC_QUEUE leaves the buffer in its request: report it.
            self.drain_acks()?;
            if t0.elapsed() > timeout {
                bail!(
                    "{}: the request of OUTPUT buffer {index} was not queued within {} s",
                    self.video,
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// One answer of the queue thread: the request goes back to its slot.
    fn take_ack(&mut self, timeout: Duration) -> Result<()> {
        let qt = self
            .queue_thread
            .as_mut()
            .ok_or_else(|| anyhow!("a request is missing and there is no queue thread"))?;
        let ack = qt
            .rx
            .recv_timeout(timeout)
            .map_err(|e| anyhow!("{}: request-queue thread: {e}", self.video))?;
        self.handle_ack(ack)
    }

    /// The answers the queue thread has already sent, without waiting: a failed
    /// MEDIA_REQUEST_IOC_QUEUE is reported at once, not as a frame that never came.
    pub(super) fn drain_acks(&mut self) -> Result<()> {
        loop {
            let Some(qt) = self.queue_thread.as_mut() else {
                return Ok(());
            };
            match qt.rx.try_recv() {
                Ok(ack) => self.handle_ack(ack)?,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(e) => bail!("{}: request-queue thread: {e}", self.video),
            }
        }
    }

    fn handle_ack(&mut self, ack: QueueAck) -> Result<()> {
        let (slot, frame, req, r, dt) = ack;
        let qt = self
            .queue_thread
            .as_mut()
            .ok_or_else(|| anyhow!("a request is missing and there is no queue thread"))?;
        if let Some(n) = qt.outstanding.get_mut(&frame) {
            *n = n.saturating_sub(1);
        }
        self.outputs[slot].request = Some(req);
        *self.queue_times.entry(frame).or_default() += dt;
        r.map_err(|e| {
            anyhow!(
                "{}: MEDIA_REQUEST_IOC_QUEUE (picture {frame}): {e}",
                self.video
            )
        })
    }
}
