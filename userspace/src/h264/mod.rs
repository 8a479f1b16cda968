//! Annex-B H.264 for a V4L2 stateless decoder: the whole stream is parsed up front.
//!
//! [`parse`] splits the stream into NAL units ([`annexb`]), parses SPS/PPS/slice headers with
//! cros-codecs' `codec::h264::parser` (it records the bit sizes hantro needs), groups slices into
//! pictures, and runs the decoding processes a stateless decoder leaves to user space
//! ([`refs`]): picture order count (8.2.1, types 0/1/2), reference marking (8.2.5: sliding
//! window, MMCO 1-6, long-term references, frame_num gaps), reference picture lists (8.2.4,
//! with ref_pic_list_modification), output order and buffer lifetimes. [`Picture::v4l2_controls`]
//! fills the stateless H.264 controls from that ([`controls`]).
//!
//! Only what hantro decodes is accepted: progressive 4:2:0 8-bit Baseline/Main/High. Anything
//! else is refused with an error naming what is unsupported.

mod annexb;
mod controls;
mod refs;

use std::fmt;

use cros_codecs::codec::h264::parser as cp;
use v4l2r::bindings as b;

pub use annexb::{nal_units, unescape, NalUnit};
pub use controls::V4l2Controls;

/// Why a stream cannot be used. Its `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H264Error {
    /// Not an Annex-B H.264 elementary stream at all (or empty).
    NotH264(String),
    /// The stream ends in the middle of something.
    Truncated(String),
    /// Valid H.264, but a feature this verifier (and hantro) does not handle.
    Unsupported(String),
    /// H.264 that violates the specification.
    Invalid(String),
}

impl fmt::Display for H264Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            H264Error::NotH264(m) => write!(f, "not an H.264 Annex-B stream: {m}"),
            H264Error::Truncated(m) => write!(f, "truncated H.264 stream: {m}"),
            H264Error::Unsupported(m) => write!(f, "unsupported H.264 stream: {m}"),
            H264Error::Invalid(m) => write!(f, "invalid H.264 stream: {m}"),
        }
    }
}

impl std::error::Error for H264Error {}

/// Slice type (table 7-6, modulo 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SliceType {
    P,
    B,
    I,
    Sp,
    Si,
}

impl SliceType {
    fn from_cros(t: cp::SliceType) -> Self {
        match t {
            cp::SliceType::P => SliceType::P,
            cp::SliceType::B => SliceType::B,
            cp::SliceType::I => SliceType::I,
            cp::SliceType::Sp => SliceType::Sp,
            cp::SliceType::Si => SliceType::Si,
        }
    }

    /// The `V4L2_H264_SLICE_TYPE_*` value (the same numbering as the specification).
    pub fn v4l2(self) -> u8 {
        match self {
            SliceType::P => b::V4L2_H264_SLICE_TYPE_P as u8,
            SliceType::B => b::V4L2_H264_SLICE_TYPE_B as u8,
            SliceType::I => b::V4L2_H264_SLICE_TYPE_I as u8,
            SliceType::Sp => b::V4L2_H264_SLICE_TYPE_SP as u8,
            SliceType::Si => b::V4L2_H264_SLICE_TYPE_SI as u8,
        }
    }

    /// One letter, as ffprobe's `pict_type`.
    pub fn letter(self) -> char {
        match self {
            SliceType::P => 'P',
            SliceType::B => 'B',
            SliceType::I => 'I',
            SliceType::Sp => 'p',
            SliceType::Si => 'i',
        }
    }
}

impl fmt::Display for SliceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// One reference picture valid while a picture is decoded: an entry of DECODE_PARAMS.dpb[].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DpbRef {
    /// The referenced picture (index into [`Stream::pictures`]).
    pub decode_index: usize,
    pub long_term: bool,
    /// frame_num of a short-term reference (0 after it carried MMCO 5), LongTermFrameIdx of a
    /// long-term one: what `v4l2_h264_dpb_entry.frame_num` wants.
    pub frame_num: u32,
    /// FrameNumWrap (8-27) of a short-term reference, LongTermPicNum (8-28) of a long-term one,
    /// relative to the picture being decoded.
    pub pic_num: i32,
    pub top_poc: i32,
    pub bottom_poc: i32,
}

/// A memory_management_control_operation of a slice header (7.3.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Mmco {
    pub op: u8,
    pub difference_of_pic_nums_minus1: u32,
    pub long_term_pic_num: u32,
    pub long_term_frame_idx: u32,
    pub max_long_term_frame_idx_plus1: u32,
}

/// One slice NAL unit of a picture.
#[derive(Debug, Clone)]
pub struct Slice {
    nal: Vec<u8>,
    pub(crate) hdr: cp::SliceHeader,
    /// Byte offset of the NAL unit (after its start code) in the input.
    pub offset: usize,
    pub nal_unit_type: u8,
    pub nal_ref_idc: u8,
    pub slice_type: SliceType,
    pub first_mb_in_slice: u32,
    pub pps_id: u8,
    /// Bits from the start of the NAL unit (header byte included, emulation prevention bytes
    /// excluded) to slice_data(): SLICE_PARAMS.header_bit_size.
    pub header_bit_size: u32,
    /// DECODE_PARAMS.pic_order_cnt_bit_size of this slice.
    pub pic_order_cnt_bit_size: u32,
    /// DECODE_PARAMS.dec_ref_pic_marking_bit_size of this slice.
    pub dec_ref_pic_marking_bit_size: u32,
    pub num_ref_idx_l0_active_minus1: u8,
    pub num_ref_idx_l1_active_minus1: u8,
    /// RefPicList0 after modification: indices into [`Picture::dpb`].
    pub ref_list0: Vec<usize>,
    /// RefPicList1 after modification (B slices): indices into [`Picture::dpb`].
    pub ref_list1: Vec<usize>,
    /// The slice's memory management control operations (empty: sliding window or IDR).
    pub mmco: Vec<Mmco>,
}

impl Slice {
    /// The NAL unit without its start code (header byte first, emulation prevention kept).
    pub fn nal(&self) -> &[u8] {
        &self.nal
    }

    /// The slice header as cros-codecs parsed it.
    pub fn header(&self) -> &cp::SliceHeader {
        &self.hdr
    }
}

/// One coded frame, in decode order.
#[derive(Debug, Clone)]
pub struct Picture {
    pub decode_index: usize,
    /// Position in output (display) order over the whole stream, 0-based.
    pub display_index: usize,
    /// The last decode index that needs this picture as a reference (it is in that picture's
    /// DECODE_PARAMS.dpb[]), or its own decode index when nothing references it.
    pub last_use: usize,
    /// The earliest decode index after which this picture may be output: every picture
    /// before it in display order has then been decoded.
    pub output_after: usize,
    pub frame_num: u32,
    pub idr: bool,
    pub idr_pic_id: u32,
    pub nal_ref_idc: u8,
    /// TopFieldOrderCnt / BottomFieldOrderCnt / PicOrderCnt as decoded (before any MMCO 5
    /// reset): what DECODE_PARAMS carries.
    pub top_poc: i32,
    pub bottom_poc: i32,
    pub poc: i32,
    pub pic_order_cnt_lsb: u32,
    pub delta_pic_order_cnt_bottom: i32,
    pub delta_pic_order_cnt: [i32; 2],
    /// The picture carried memory_management_control_operation 5.
    pub mmco5: bool,
    /// Marked as long-term reference after decoding (IDR long_term_reference_flag or MMCO 6).
    pub long_term: bool,
    pub slice_types: Vec<SliceType>,
    pub slices: Vec<Slice>,
    /// References valid while decoding this picture, in DECODE_PARAMS.dpb[] order:
    /// short-term ones by descending FrameNumWrap, then long-term ones by LongTermFrameIdx.
    pub dpb: Vec<DpbRef>,
    /// Index into [`Stream::sps`] / [`Stream::pps`] of the parameter sets this picture uses.
    pub sps_index: usize,
    pub pps_index: usize,
}

/// A parameter set as the picture saw it, already in V4L2 form.
#[derive(Clone)]
pub struct SpsInfo {
    pub id: u8,
    pub v4l2: b::v4l2_ctrl_h264_sps,
    pub(crate) rules: refs::SpsRules,
}

impl fmt::Debug for SpsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpsInfo")
            .field("id", &self.id)
            .field("rules", &self.rules)
            .finish()
    }
}

#[derive(Clone)]
pub struct PpsInfo {
    pub id: u8,
    pub sps_index: usize,
    pub v4l2: b::v4l2_ctrl_h264_pps,
    /// Scaling lists in raster order (flat 16 when neither SPS nor PPS has any).
    pub scaling_matrix: b::v4l2_ctrl_h264_scaling_matrix,
}

impl fmt::Debug for PpsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PpsInfo")
            .field("id", &self.id)
            .field("sps_index", &self.sps_index)
            .finish()
    }
}

/// A parsed stream.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Decode order.
    pub pictures: Vec<Picture>,
    /// Decode indices in output (display) order.
    pub output_order: Vec<usize>,
    /// MB-aligned size (1920x1088 for 1080p).
    pub coded_width: u32,
    pub coded_height: u32,
    /// Size after the SPS cropping.
    pub visible_width: u32,
    pub visible_height: u32,
    pub profile_idc: u8,
    pub level_idc: u8,
    /// max_num_ref_frames of the SPS.
    pub max_num_ref_frames: u32,
    /// Most pictures alive at once (referenced, or decoded but not output yet under
    /// [`Picture::output_after`], the current one included): the CAPTURE buffers needed.
    pub max_live: usize,
    /// Every SPS / PPS version the pictures use.
    pub sps: Vec<SpsInfo>,
    pub pps: Vec<PpsInfo>,
}

impl Stream {
    /// The decode indices of the first `frames` pictures (decode order; all when None), in
    /// output order.
    pub fn output_order_upto(&self, frames: Option<usize>) -> Vec<usize> {
        let n = frames.unwrap_or(usize::MAX).min(self.pictures.len());
        self.output_order
            .iter()
            .copied()
            .filter(|&d| d < n)
            .collect()
    }

    /// Profile name, as in Annex A.
    pub fn profile_name(&self) -> &'static str {
        profile_name(self.profile_idc)
    }
}

pub(crate) fn profile_name(idc: u8) -> &'static str {
    match idc {
        66 => "Baseline",
        77 => "Main",
        88 => "Extended",
        100 => "High",
        110 => "High 10",
        122 => "High 4:2:2",
        244 => "High 4:4:4 Predictive",
        44 => "CAVLC 4:4:4 Intra",
        83 | 86 => "Scalable (SVC)",
        118 | 128 => "Multiview/Stereo High (MVC)",
        134 | 135 | 138 | 139 => "MVC extension",
        _ => "unknown",
    }
}

/// Parse a whole Annex-B stream.
pub fn parse(data: &[u8]) -> Result<Stream, H264Error> {
    refs::build(data)
}

#[cfg(test)]
mod tests;
