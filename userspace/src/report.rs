//! The decode report: what `vb2-resv decode` measured, frame by frame. Serialized as JSON with
//! `--json FILE` (schema: docs/report-format.md, `schema` = [`SCHEMA`]) and printed as a
//! summary table.

use crate::layout::Nv12Layout;
use serde::Serialize;
use std::fmt::Write;

/// The `schema` field of the JSON report; bump it when a field changes meaning or goes away.
pub const SCHEMA: &str = "vb2-resv.decode/1";

#[derive(Clone, Debug, Serialize)]
pub struct StreamInfo {
    pub path: String,
    pub bytes: u64,
    pub profile_idc: u8,
    pub profile: String,
    pub level_idc: u8,
    pub coded_width: u32,
    pub coded_height: u32,
    pub visible_width: u32,
    pub visible_height: u32,
    /// Pictures in the stream (decode order), before `--frames`.
    pub pictures: usize,
    pub max_live: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    pub video: String,
    pub media: String,
    pub driver: String,
    pub card: String,
    pub bus_info: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FormatInfo {
    /// "frame" (V4L2_STATELESS_H264_DECODE_MODE_FRAME_BASED) or "slice".
    pub decode_mode: String,
    /// "annex-b" or "none".
    pub start_code: String,
    /// Whether OUTPUT buffers of a multi-slice picture carry V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF.
    pub hold_capture_buf: bool,
    /// The menus the driver offers, by name.
    pub decode_modes_offered: Vec<String>,
    pub start_codes_offered: Vec<String>,
    pub output_fourcc: String,
    pub output_sizeimage: u32,
    pub output_buffers: u32,
    pub capture_fourcc: String,
    pub capture: Nv12Layout,
    pub capture_buffers: u32,
    /// Most requests queued at once (the decoder keeps at least two in flight).
    pub requests_in_flight: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModuleInfo {
    /// /sys/module/vb2_resv exists.
    pub loaded: bool,
    /// "attached" (by this run, detached at the end), "already" (someone else had attached
    /// it: left attached), or "no" (module not loaded).
    pub attach: String,
    /// The module's mode during the run (VB2_RESV_IOC_GET_MODE), if loaded.
    pub mode: Option<String>,
    /// The mode before this run changed it (`--mode`): it is module-wide, and is set back when
    /// the run ends, failed or not. None when the run did not change it.
    pub mode_before: Option<String>,
}

/// One fence of the CAPTURE dma-buf's write fences (SYNC_IOC_FILE_INFO).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Fence {
    pub driver: String,
    pub timeline: String,
    /// 0 pending, 1 signaled, < 0 signaled with an error.
    pub status: i32,
}

/// The CAPTURE dma-buf's write fences just after QBUF (DMA_BUF_IOCTL_EXPORT_SYNC_FILE with
/// DMA_BUF_SYNC_READ + SYNC_IOC_FILE_INFO).
#[derive(Clone, Debug, Serialize)]
pub struct FenceAfterQbuf {
    /// Some fence other than the kernel's signaled stub was there.
    pub present: bool,
    /// Some fence was unsignaled.
    pub pending: bool,
    /// Driver and timeline names of the first unsignaled fence (else of the first fence).
    pub driver: Option<String>,
    pub timeline: Option<String>,
    pub fences: Vec<Fence>,
}

/// An entry of DECODE_PARAMS.dpb[] as sent.
#[derive(Clone, Debug, Serialize)]
pub struct DpbEntry {
    /// Index in dpb[] (what ref_pic_list entries point at).
    pub index: usize,
    /// The decode index of the referenced picture.
    pub decode_index: usize,
    pub reference_ts: u64,
    pub frame_num: u32,
    pub pic_num: i32,
    pub top_poc: i32,
    pub bottom_poc: i32,
    pub long_term: bool,
}

/// A reference list entry: an index into dpb[] and what it refers to.
#[derive(Clone, Debug, Serialize)]
pub struct RefEntry {
    pub dpb_index: usize,
    pub decode_index: usize,
    pub frame_num: u32,
    pub poc: i32,
}

#[derive(Clone, Debug, Serialize)]
pub struct SliceRefs {
    pub slice_type: String,
    pub first_mb_in_slice: u32,
    pub list0: Vec<RefEntry>,
    pub list1: Vec<RefEntry>,
}

/// FNV-1a 64 of each plane of the CPU view, over the visible area only (rows of
/// `visible_width` bytes for Y; `visible_height/2` rows of the even-rounded width for UV).
#[derive(Clone, Debug, Serialize)]
pub struct Checksums {
    pub y: String,
    pub uv: String,
    /// The first byte of each plane's visible area and whether the whole visible area is 0.
    pub y_first: u8,
    pub uv_first: u8,
    pub all_zero: bool,
    /// MD5 (32 hex digits) of the visible picture packed as ffmpeg's rawvideo NV12 (the Y rows,
    /// then the CbCr rows, no padding): what `ffmpeg -pix_fmt nv12 -f framemd5` prints for the
    /// frame. See crate::truth.
    pub md5: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FrameRecord {
    pub decode_index: usize,
    pub display_index: usize,
    /// Position among the frames this run output (0.. in display order).
    pub output_position: usize,
    /// The CAPTURE buffer index.
    pub buffer: u32,
    pub timestamp_ns: u64,
    /// The CAPTURE buffer's sequence number at DQBUF.
    pub sequence: u32,
    pub frame_num: u32,
    pub idr: bool,
    pub nal_ref_idc: u8,
    pub poc: i32,
    pub top_poc: i32,
    pub bottom_poc: i32,
    pub slice_types: Vec<String>,
    /// OUTPUT buffers (requests) this picture took: 1 frame-based, one per slice slice-based.
    pub requests: usize,
    pub bitstream_bytes: usize,
    /// Time spent inside MEDIA_REQUEST_IOC_QUEUE (all requests of the picture): a driver that
    /// runs the job synchronously (visl when idle) shows its whole decode time here.
    pub request_queue_us: u64,
    /// The same in ns, and the CAPTURE QBUF and DQBUF ioctls alone (DQBUF after poll said the
    /// buffer is ready): what `make bench` compares with the module absent.
    pub request_queue_ns: u64,
    pub capture_qbuf_ns: u64,
    pub capture_dqbuf_ns: u64,
    /// When CAPTURE DQBUF returned, in ns from the start of the decode loop: the frame period
    /// between consecutive frames is what `make bench` takes the loop's frames/s from.
    pub dqbuf_at_ns: u64,
    pub dpb: Vec<DpbEntry>,
    pub ref_lists: Vec<SliceRefs>,
    pub fence_after_qbuf: FenceAfterQbuf,
    /// CAPTURE QBUF to CAPTURE DQBUF.
    pub qbuf_to_dqbuf_us: u64,
    /// How long poll(POLLIN) on the CAPTURE dma-buf blocked before DQBUF.
    pub poll_block_us: u64,
    /// poll(POLLIN) returned ready (false: timed out).
    pub poll_ready: bool,
    /// A zero-timeout poll(POLLIN) on the dma-buf just after the picture's request(s) were
    /// queued said readable: a reader looking then would not have waited for the decode.
    pub readable_after_queue: bool,
    /// From poll(POLLIN)'s return to DQBUF's: a long wait here means the dma-buf looked
    /// readable while the decoder was still writing it (what a compositor's implicit sync sees).
    pub dqbuf_wait_us: u64,
    /// V4L2_BUF_FLAG_ERROR at DQBUF.
    pub error: bool,
    pub checksums: Checksums,
}

#[derive(Clone, Debug, Serialize, Default)]
pub struct Stats {
    pub min: u64,
    pub mean: u64,
    pub max: u64,
}

impl Stats {
    pub fn of(v: impl Iterator<Item = u64>) -> Stats {
        let v: Vec<u64> = v.collect();
        if v.is_empty() {
            return Stats::default();
        }
        Stats {
            min: *v.iter().min().unwrap_or(&0),
            mean: v.iter().sum::<u64>() / v.len() as u64,
            max: *v.iter().max().unwrap_or(&0),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub frames: usize,
    pub errors: usize,
    pub fences_present: usize,
    pub fences_pending: usize,
    /// Frames whose pending fence's driver is `vb2_resv`.
    pub fences_pending_vb2_resv: usize,
    /// Frames whose dma-buf was readable just after their request was queued.
    pub readable_after_queue: usize,
    pub qbuf_to_dqbuf_us: Stats,
    pub poll_block_us: Stats,
    pub request_queue_us: Stats,
    pub dqbuf_wait_us: Stats,
    /// Frames came out in display order, each once (`display_index` ascending).
    pub display_order_ok: bool,
    pub wall_ms: u64,
    pub fps: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecodeReport {
    pub schema: &'static str,
    pub stream: StreamInfo,
    pub device: DeviceInfo,
    pub format: FormatInfo,
    pub vb2_resv: ModuleInfo,
    /// Decode order.
    pub frames: Vec<FrameRecord>,
    /// Decode indices in the order the frames were output (display order).
    pub display_order: Vec<usize>,
    pub summary: Summary,
}

impl DecodeReport {
    /// The human-readable summary table.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let st = &self.stream;
        let f = &self.format;
        let _ = writeln!(
            s,
            "{}: H.264 {} level {}, {}x{} (coded {}x{}), {} pictures",
            st.path,
            st.profile,
            st.level_idc as f32 / 10.0,
            st.visible_width,
            st.visible_height,
            st.coded_width,
            st.coded_height,
            st.pictures
        );
        let _ = writeln!(
            s,
            "decoder {} ({} '{}'), media {}; {}-based, start code {}, {} requests in flight",
            self.device.video,
            self.device.driver,
            self.device.card,
            self.device.media,
            f.decode_mode,
            f.start_code,
            f.requests_in_flight
        );
        let c = &f.capture;
        let _ = writeln!(
            s,
            "CAPTURE {} {}x{} stride {} uv_offset {} size {}, {} buffers; OUTPUT {} x {} bytes",
            f.capture_fourcc,
            c.width,
            c.height,
            c.stride,
            c.uv_offset,
            c.size,
            f.capture_buffers,
            f.output_buffers,
            f.output_sizeimage
        );
        let m = &self.vb2_resv;
        let _ = writeln!(
            s,
            "vb2_resv: {}{}",
            if m.loaded {
                format!("loaded, attach {}", m.attach)
            } else {
                "not loaded".into()
            },
            m.mode
                .as_ref()
                .map(|x| format!(", mode {x}"))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "\n{:>5} {:>5} {:>3} {:>5} {:>6} {:>5} {:>9} {:>9} {:<28} {:>5} {:<16} {:<16}",
            "disp",
            "dec",
            "buf",
            "type",
            "fnum",
            "poc",
            "q->dq us",
            "poll us",
            "fence after QBUF",
            "err",
            "Y fnv1a",
            "UV fnv1a"
        );
        for &d in &self.display_order {
            let Some(r) = self.frames.iter().find(|r| r.decode_index == d) else {
                continue;
            };
            let fence = &r.fence_after_qbuf;
            let fdesc = if fence.pending {
                format!(
                    "PENDING {}:{}",
                    fence.driver.as_deref().unwrap_or("?"),
                    fence.timeline.as_deref().unwrap_or("?")
                )
            } else if fence.present {
                format!("signaled {}", fence.driver.as_deref().unwrap_or("?"))
            } else {
                "none".into()
            };
            let mut types: Vec<&str> = r.slice_types.iter().map(|t| t.as_str()).collect();
            types.dedup();
            let _ = writeln!(
                s,
                "{:>5} {:>5} {:>3} {:>5} {:>6} {:>5} {:>9} {:>9} {:<28} {:>5} {:<16} {:<16}",
                r.display_index,
                r.decode_index,
                r.buffer,
                format!("{}{}", if r.idr { "IDR-" } else { "" }, types.join("")),
                r.frame_num,
                r.poc,
                r.qbuf_to_dqbuf_us,
                r.poll_block_us,
                fdesc,
                if r.error { "ERROR" } else { "-" },
                &r.checksums.y,
                &r.checksums.uv
            );
        }
        let sm = &self.summary;
        let _ = writeln!(
            s,
            "\n{} frames in {} ms ({:.1} fps), {} ERROR buffers; display order {}",
            sm.frames,
            sm.wall_ms,
            sm.fps,
            sm.errors,
            if sm.display_order_ok { "ok" } else { "WRONG" }
        );
        let _ = writeln!(
            s,
            "fence after QBUF: {} present, {} pending ({} from vb2_resv); dma-buf readable just after queueing: {} of {}",
            sm.fences_present,
            sm.fences_pending,
            sm.fences_pending_vb2_resv,
            sm.readable_after_queue,
            sm.frames
        );
        let _ = writeln!(
            s,
            "QBUF->DQBUF us min/mean/max {}/{}/{}; poll(POLLIN) blocked us min/mean/max {}/{}/{}",
            sm.qbuf_to_dqbuf_us.min,
            sm.qbuf_to_dqbuf_us.mean,
            sm.qbuf_to_dqbuf_us.max,
            sm.poll_block_us.min,
            sm.poll_block_us.mean,
            sm.poll_block_us.max
        );
        let _ = writeln!(
            s,
            "MEDIA_REQUEST_IOC_QUEUE us min/mean/max {}/{}/{}; poll return -> DQBUF us min/mean/max {}/{}/{}",
            sm.request_queue_us.min,
            sm.request_queue_us.mean,
            sm.request_queue_us.max,
            sm.dqbuf_wait_us.min,
            sm.dqbuf_wait_us.mean,
            sm.dqbuf_wait_us.max
        );
        s
    }
}

/// FNV-1a 64 over several byte ranges, as a 16-digit hex string.
pub fn fnv1a<'a>(parts: impl Iterator<Item = &'a [u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The per-plane checksums of an NV12 CPU view under `l`.
pub fn checksums(cpu: &[u8], l: &Nv12Layout) -> Checksums {
    let stride = l.stride as usize;
    let vw = (l.visible_width as usize).min(stride);
    let vh = l.visible_height as usize;
    let uvw = vw.div_ceil(2) * 2;
    let uvh = vh.div_ceil(2);
    let row = |base: usize, r: usize, w: usize| -> &[u8] {
        let start = base + r * stride;
        let end = (start + w).min(cpu.len());
        cpu.get(start.min(end)..end).unwrap_or(&[])
    };
    let uv_base = l.uv_offset as usize;
    let y = fnv1a((0..vh).map(|r| row(0, r, vw)));
    let uv = fnv1a((0..uvh).map(|r| row(uv_base, r, uvw)));
    let all_zero = (0..vh).all(|r| row(0, r, vw).iter().all(|&b| b == 0))
        && (0..uvh).all(|r| row(uv_base, r, uvw).iter().all(|&b| b == 0));
    let md5 = {
        use md5::Digest;
        let mut h = md5::Md5::new();
        for r in 0..vh {
            h.update(row(0, r, vw));
        }
        for r in 0..uvh {
            h.update(row(uv_base, r, uvw));
        }
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    Checksums {
        md5,
        y,
        uv,
        y_first: cpu.first().copied().unwrap_or(0),
        uv_first: cpu.get(uv_base).copied().unwrap_or(0),
        all_zero,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(std::iter::once(&b""[..])), "cbf29ce484222325");
        assert_eq!(fnv1a(std::iter::once(&b"a"[..])), "af63dc4c8601ec8c");
        assert_eq!(
            fnv1a([&b"foo"[..], &b"bar"[..]].into_iter()),
            "85944171f73967e8"
        );
    }

    #[test]
    fn checksums_cover_visible_area_only() {
        let l = Nv12Layout {
            width: 4,
            height: 4,
            visible_width: 2,
            visible_height: 2,
            stride: 4,
            uv_offset: 16,
            size: 24,
            modifier: 0,
        };
        let mut a = vec![0u8; 24];
        a[0] = 1;
        a[16] = 2;
        let base = checksums(&a, &l);
        assert!(!base.all_zero);
        assert_eq!((base.y_first, base.uv_first), (1, 2));
        // Padding (columns 2-3, rows 2-3 of Y, column 2-3 of UV) does not count.
        let mut b = a.clone();
        b[3] = 9;
        b[12] = 9;
        b[19] = 9;
        let other = checksums(&b, &l);
        assert_eq!((base.y.clone(), base.uv.clone()), (other.y, other.uv));
        // A visible byte does.
        b[5] = 7;
        assert_ne!(checksums(&b, &l).y, base.y);
        assert!(checksums(&[0u8; 24], &l).all_zero);
    }
}
