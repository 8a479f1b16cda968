//! What a caller (the samplers of `verify`, `present`) does around each frame.

use super::CaptureBuffer;
use anyhow::Result;

/// What the GPU half (issue 5) does around each frame.
pub trait FrameHook {
    /// Just before the CAPTURE QBUF of the buffer that will receive decode-order frame `frame`.
    fn before_qbuf(&mut self, _frame: usize, _buf: &CaptureBuffer) -> Result<()> {
        Ok(())
    }
    /// Just after the request of `frame` was queued (the driver may still be writing `buf`).
    fn queued(&mut self, _frame: usize, _buf: &CaptureBuffer) -> Result<()> {
        Ok(())
    }
    /// Just after DQBUF of `frame`, before anything reads the buffer through the CPU (a
    /// compositor never does: a sampler that looks here sees the buffer as it would).
    fn dqbuf_done(&mut self, _frame: usize, _buf: &CaptureBuffer, _error: bool) -> Result<()> {
        Ok(())
    }
    /// After [`FrameHook::dqbuf_done`] and the CPU copy; `error` = V4L2_BUF_FLAG_ERROR; `cpu` =
    /// the CPU view read after DQBUF.
    fn dequeued(
        &mut self,
        _frame: usize,
        _buf: &CaptureBuffer,
        _error: bool,
        _cpu: &[u8],
    ) -> Result<()> {
        Ok(())
    }
    /// Picks the CAPTURE buffer (index) for picture `frame` among those the decoder may reuse
    /// (`free`: output and no longer referenced, ascending). Ok(None): none of them yet (a
    /// consumer still holds them); the decoder then completes a frame in flight and asks again.
    /// With nothing in flight (`idle`) the hook must wait until it can answer, or fail.
    fn choose_capture(
        &mut self,
        _frame: usize,
        free: &[usize],
        _idle: bool,
    ) -> Result<Option<usize>> {
        Ok(free.first().copied())
    }
}

/// A hook that does nothing.
pub struct NoHook;
impl FrameHook for NoHook {}
