//! The V4L2 stateless H.264 controls (include/uapi/linux/v4l2-controls.h,
//! Documentation/userspace-api/media/v4l/ext-ctrls-codec-stateless.rst).

use cros_codecs::codec::h264::parser as cp;
use v4l2r::bindings as b;

use super::{Picture, SliceType, Stream};

/// Every control of one picture's request.
#[derive(Clone)]
pub struct V4l2Controls {
    pub sps: b::v4l2_ctrl_h264_sps,
    pub pps: b::v4l2_ctrl_h264_pps,
    /// Always filled (flat 16 when the stream has no scaling matrix).
    pub scaling_matrix: b::v4l2_ctrl_h264_scaling_matrix,
    pub decode_params: b::v4l2_ctrl_h264_decode_params,
    /// One per slice (slice-based mode).
    pub slice_params: Vec<b::v4l2_ctrl_h264_slice_params>,
    /// One per slice: Some when the slice has a pred_weight_table (PPS weighted_pred_flag with
    /// a P slice, or weighted_bipred_idc 1 with a B slice).
    pub pred_weights: Vec<Option<b::v4l2_ctrl_h264_pred_weights>>,
}

fn zeroed<T: Copy>() -> T {
    // SAFETY: only instantiated with the bindgen-generated plain-old-data control structs
    // below (integers and arrays of integers), for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

pub(crate) fn sps(s: &cp::Sps) -> b::v4l2_ctrl_h264_sps {
    let mut v: b::v4l2_ctrl_h264_sps = zeroed();
    v.profile_idc = s.profile_idc;
    let cs = [
        s.constraint_set0_flag,
        s.constraint_set1_flag,
        s.constraint_set2_flag,
        s.constraint_set3_flag,
        s.constraint_set4_flag,
        s.constraint_set5_flag,
    ];
    // V4L2_H264_SPS_CONSTRAINT_SET<n>_FLAG = 1 << n.
    v.constraint_set_flags = cs
        .iter()
        .enumerate()
        .fold(0u8, |a, (i, &f)| a | (u8::from(f) << i));
    v.level_idc = s.level_idc as u8;
    v.seq_parameter_set_id = s.seq_parameter_set_id;
    v.chroma_format_idc = s.chroma_format_idc;
    v.bit_depth_luma_minus8 = s.bit_depth_luma_minus8;
    v.bit_depth_chroma_minus8 = s.bit_depth_chroma_minus8;
    v.log2_max_frame_num_minus4 = s.log2_max_frame_num_minus4;
    v.pic_order_cnt_type = s.pic_order_cnt_type;
    v.log2_max_pic_order_cnt_lsb_minus4 = s.log2_max_pic_order_cnt_lsb_minus4;
    v.max_num_ref_frames = s.max_num_ref_frames;
    v.num_ref_frames_in_pic_order_cnt_cycle = s.num_ref_frames_in_pic_order_cnt_cycle;
    v.offset_for_ref_frame = s.offset_for_ref_frame;
    v.offset_for_non_ref_pic = s.offset_for_non_ref_pic;
    v.offset_for_top_to_bottom_field = s.offset_for_top_to_bottom_field;
    v.pic_width_in_mbs_minus1 = s.pic_width_in_mbs_minus1;
    v.pic_height_in_map_units_minus1 = s.pic_height_in_map_units_minus1;
    let flags = [
        (
            s.separate_colour_plane_flag,
            b::V4L2_H264_SPS_FLAG_SEPARATE_COLOUR_PLANE,
        ),
        (
            s.qpprime_y_zero_transform_bypass_flag,
            b::V4L2_H264_SPS_FLAG_QPPRIME_Y_ZERO_TRANSFORM_BYPASS,
        ),
        (
            s.delta_pic_order_always_zero_flag,
            b::V4L2_H264_SPS_FLAG_DELTA_PIC_ORDER_ALWAYS_ZERO,
        ),
        (
            s.gaps_in_frame_num_value_allowed_flag,
            b::V4L2_H264_SPS_FLAG_GAPS_IN_FRAME_NUM_VALUE_ALLOWED,
        ),
        (s.frame_mbs_only_flag, b::V4L2_H264_SPS_FLAG_FRAME_MBS_ONLY),
        (
            s.mb_adaptive_frame_field_flag,
            b::V4L2_H264_SPS_FLAG_MB_ADAPTIVE_FRAME_FIELD,
        ),
        (
            s.direct_8x8_inference_flag,
            b::V4L2_H264_SPS_FLAG_DIRECT_8X8_INFERENCE,
        ),
    ];
    v.flags = flags
        .iter()
        .filter(|(f, _)| *f)
        .fold(0, |a, (_, bit)| a | bit);
    v
}

pub(crate) fn pps(p: &cp::Pps) -> b::v4l2_ctrl_h264_pps {
    let mut v: b::v4l2_ctrl_h264_pps = zeroed();
    v.pic_parameter_set_id = p.pic_parameter_set_id;
    v.seq_parameter_set_id = p.seq_parameter_set_id;
    v.num_slice_groups_minus1 = p.num_slice_groups_minus1 as u8;
    v.num_ref_idx_l0_default_active_minus1 = p.num_ref_idx_l0_default_active_minus1;
    v.num_ref_idx_l1_default_active_minus1 = p.num_ref_idx_l1_default_active_minus1;
    v.weighted_bipred_idc = p.weighted_bipred_idc;
    v.pic_init_qp_minus26 = p.pic_init_qp_minus26;
    v.pic_init_qs_minus26 = p.pic_init_qs_minus26;
    v.chroma_qp_index_offset = p.chroma_qp_index_offset;
    v.second_chroma_qp_index_offset = p.second_chroma_qp_index_offset;
    // As ffmpeg: the flag says a (possibly inherited) non-flat matrix applies.
    let scaling = p.pic_scaling_matrix_present_flag || p.sps.seq_scaling_matrix_present_flag;
    let flags = [
        (
            p.entropy_coding_mode_flag,
            b::V4L2_H264_PPS_FLAG_ENTROPY_CODING_MODE,
        ),
        (
            p.bottom_field_pic_order_in_frame_present_flag,
            b::V4L2_H264_PPS_FLAG_BOTTOM_FIELD_PIC_ORDER_IN_FRAME_PRESENT,
        ),
        (p.weighted_pred_flag, b::V4L2_H264_PPS_FLAG_WEIGHTED_PRED),
        (
            p.deblocking_filter_control_present_flag,
            b::V4L2_H264_PPS_FLAG_DEBLOCKING_FILTER_CONTROL_PRESENT,
        ),
        (
            p.constrained_intra_pred_flag,
            b::V4L2_H264_PPS_FLAG_CONSTRAINED_INTRA_PRED,
        ),
        (
            p.redundant_pic_cnt_present_flag,
            b::V4L2_H264_PPS_FLAG_REDUNDANT_PIC_CNT_PRESENT,
        ),
        (
            p.transform_8x8_mode_flag,
            b::V4L2_H264_PPS_FLAG_TRANSFORM_8X8_MODE,
        ),
        (scaling, b::V4L2_H264_PPS_FLAG_SCALING_MATRIX_PRESENT),
    ];
    v.flags = flags
        .iter()
        .filter(|(f, _)| *f)
        .fold(0u32, |a, (_, bit)| a | bit) as u16;
    v
}

/// Zig-zag scan position -> raster position (8.5.6, table 8-13, frame macroblocks).
pub const ZIGZAG_4X4: [usize; 16] = [0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15];
pub const ZIGZAG_8X8: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The scaling lists that apply with this PPS (the parser already applied the fall-back rules
/// of table 7-2), from parse (zig-zag) order to the raster order V4L2 wants.
pub(crate) fn scaling_matrix(p: &cp::Pps) -> b::v4l2_ctrl_h264_scaling_matrix {
    let mut v: b::v4l2_ctrl_h264_scaling_matrix = zeroed();
    for (i, list) in p.scaling_lists_4x4.iter().enumerate() {
        let flat = list.iter().all(|&x| x == 0);
        for (k, &pos) in ZIGZAG_4X4.iter().enumerate() {
            v.scaling_list_4x4[i][pos] = if flat { 16 } else { list[k] };
        }
    }
    for (i, list) in p.scaling_lists_8x8.iter().enumerate() {
        let flat = list.iter().all(|&x| x == 0);
        for (k, &pos) in ZIGZAG_8X8.iter().enumerate() {
            v.scaling_list_8x8[i][pos] = if flat { 16 } else { list[k] };
        }
    }
    v
}

fn pred_weights(h: &cp::SliceHeader) -> b::v4l2_ctrl_h264_pred_weights {
    let t = &h.pred_weight_table;
    let mut v: b::v4l2_ctrl_h264_pred_weights = zeroed();
    v.luma_log2_weight_denom = u16::from(t.luma_log2_weight_denom);
    v.chroma_log2_weight_denom = u16::from(t.chroma_log2_weight_denom);
    let n0 = usize::from(h.num_ref_idx_l0_active_minus1) + 1;
    let w0 = &mut v.weight_factors[0];
    for i in 0..n0.min(32) {
        w0.luma_weight[i] = t.luma_weight_l0[i];
        w0.luma_offset[i] = i16::from(t.luma_offset_l0[i]);
        for c in 0..2 {
            w0.chroma_weight[i][c] = t.chroma_weight_l0[i][c];
            w0.chroma_offset[i][c] = i16::from(t.chroma_offset_l0[i][c]);
        }
    }
    if h.slice_type.is_b() {
        let n1 = usize::from(h.num_ref_idx_l1_active_minus1) + 1;
        let w1 = &mut v.weight_factors[1];
        for i in 0..n1.min(32) {
            w1.luma_weight[i] = t.luma_weight_l1[i];
            w1.luma_offset[i] = t.luma_offset_l1[i];
            for c in 0..2 {
                w1.chroma_weight[i][c] = t.chroma_weight_l1[i][c];
                w1.chroma_offset[i][c] = i16::from(t.chroma_offset_l1[i][c]);
            }
        }
    }
    v
}

impl Picture {
    /// The controls of this picture's request. `timestamp_ns(decode_index)` gives the OUTPUT
    /// buffer timestamp (in ns, as `v4l2_timeval_to_ns()`) the decoder used for that picture:
    /// it becomes `dpb[].reference_ts`.
    pub fn v4l2_controls(
        &self,
        stream: &Stream,
        timestamp_ns: impl Fn(usize) -> u64,
    ) -> V4l2Controls {
        let pps_info = &stream.pps[self.pps_index];
        let sps_info = &stream.sps[self.sps_index];
        let mut dp: b::v4l2_ctrl_h264_decode_params = zeroed();
        for (e, r) in dp.dpb.iter_mut().zip(&self.dpb) {
            e.reference_ts = timestamp_ns(r.decode_index);
            e.pic_num = r.pic_num as u32;
            e.frame_num = r.frame_num as u16;
            e.fields = b::V4L2_H264_FRAME_REF as u8;
            e.top_field_order_cnt = r.top_poc;
            e.bottom_field_order_cnt = r.bottom_poc;
            e.flags = b::V4L2_H264_DPB_ENTRY_FLAG_VALID | b::V4L2_H264_DPB_ENTRY_FLAG_ACTIVE;
            if r.long_term {
                e.flags |= b::V4L2_H264_DPB_ENTRY_FLAG_LONG_TERM;
            }
        }
        let s0 = &self.slices[0];
        dp.nal_ref_idc = u16::from(self.nal_ref_idc);
        dp.frame_num = self.frame_num as u16;
        dp.top_field_order_cnt = self.top_poc;
        dp.bottom_field_order_cnt = self.bottom_poc;
        dp.idr_pic_id = self.idr_pic_id as u16;
        dp.pic_order_cnt_lsb = self.pic_order_cnt_lsb as u16;
        dp.delta_pic_order_cnt_bottom = self.delta_pic_order_cnt_bottom;
        dp.delta_pic_order_cnt0 = self.delta_pic_order_cnt[0];
        dp.delta_pic_order_cnt1 = self.delta_pic_order_cnt[1];
        dp.dec_ref_pic_marking_bit_size = s0.dec_ref_pic_marking_bit_size;
        dp.pic_order_cnt_bit_size = s0.pic_order_cnt_bit_size;
        dp.slice_group_change_cycle = 0;
        if self.idr {
            dp.flags |= b::V4L2_H264_DECODE_PARAM_FLAG_IDR_PIC;
        }
        if self.slice_types.contains(&SliceType::B) {
            dp.flags |= b::V4L2_H264_DECODE_PARAM_FLAG_BFRAME;
        } else if self
            .slice_types
            .iter()
            .any(|t| matches!(t, SliceType::P | SliceType::Sp))
        {
            dp.flags |= b::V4L2_H264_DECODE_PARAM_FLAG_PFRAME;
        }

        let mut slice_params = Vec::with_capacity(self.slices.len());
        let mut weights = Vec::with_capacity(self.slices.len());
        for s in &self.slices {
            let h = &s.hdr;
            let mut sp: b::v4l2_ctrl_h264_slice_params = zeroed();
            sp.header_bit_size = s.header_bit_size;
            sp.first_mb_in_slice = s.first_mb_in_slice;
            sp.slice_type = s.slice_type.v4l2();
            sp.colour_plane_id = h.colour_plane_id;
            sp.redundant_pic_cnt = h.redundant_pic_cnt;
            sp.cabac_init_idc = h.cabac_init_idc;
            sp.slice_qp_delta = h.slice_qp_delta;
            sp.slice_qs_delta = h.slice_qs_delta;
            sp.disable_deblocking_filter_idc = h.disable_deblocking_filter_idc;
            sp.slice_alpha_c0_offset_div2 = h.slice_alpha_c0_offset_div2;
            sp.slice_beta_offset_div2 = h.slice_beta_offset_div2;
            if s.slice_type != SliceType::I {
                sp.num_ref_idx_l0_active_minus1 = s.num_ref_idx_l0_active_minus1;
            }
            if s.slice_type == SliceType::B {
                sp.num_ref_idx_l1_active_minus1 = s.num_ref_idx_l1_active_minus1;
            }
            // Entries past the list's length name no picture: index 0xff (as GStreamer's
            // v4l2codecs does), never dpb[0], which is a real reference.
            for (k, e) in sp.ref_pic_list0.iter_mut().enumerate() {
                *e = ref_entry(s.ref_list0.get(k).copied());
            }
            for (k, e) in sp.ref_pic_list1.iter_mut().enumerate() {
                *e = ref_entry(s.ref_list1.get(k).copied());
            }
            if h.direct_spatial_mv_pred_flag {
                sp.flags |= b::V4L2_H264_SLICE_FLAG_DIRECT_SPATIAL_MV_PRED;
            }
            if h.sp_for_switch_flag {
                sp.flags |= b::V4L2_H264_SLICE_FLAG_SP_FOR_SWITCH;
            }
            slice_params.push(sp);
            let pps = &pps_info.v4l2;
            let weighted = (pps.flags as u32 & b::V4L2_H264_PPS_FLAG_WEIGHTED_PRED != 0
                && matches!(s.slice_type, SliceType::P | SliceType::Sp))
                || (pps.weighted_bipred_idc == 1 && s.slice_type == SliceType::B);
            weights.push(weighted.then(|| pred_weights(h)));
        }
        V4l2Controls {
            sps: sps_info.v4l2,
            pps: pps_info.v4l2,
            scaling_matrix: pps_info.scaling_matrix,
            decode_params: dp,
            slice_params,
            pred_weights: weights,
        }
    }
}

/// One RefPicList entry: a frame reference to dpb[i], or (None) the unused marker.
fn ref_entry(i: Option<usize>) -> b::v4l2_h264_reference {
    match i {
        Some(i) => b::v4l2_h264_reference {
            fields: b::V4L2_H264_FRAME_REF as u8,
            index: i as u8,
        },
        None => b::v4l2_h264_reference {
            fields: 0,
            index: 0xff,
        },
    }
}
