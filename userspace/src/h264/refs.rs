//! The decoding processes a stateless decoder leaves to user space, for progressive frames:
//! picture order count (8.2.1), reference marking (8.2.5), reference lists (8.2.4), output
//! order, and the pictures' buffer lifetimes. Also the driver of [`super::parse`].

use std::borrow::Cow;
use std::collections::HashMap;

use cros_codecs::codec::h264::nalu::Header as _;
use cros_codecs::codec::h264::parser as cp;

use super::annexb::{nal_units, NalUnit};
use super::controls;
use super::{
    profile_name, DpbRef, H264Error, Mmco, Picture, PpsInfo, Slice, SliceType, SpsInfo, Stream,
};

/// What the decoding processes need of an SPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpsRules {
    pub log2_max_frame_num: u32,
    pub poc_type: u8,
    pub log2_max_poc_lsb: u32,
    pub offset_for_non_ref_pic: i32,
    pub offset_for_top_to_bottom_field: i32,
    pub offset_for_ref_frame: Vec<i32>,
    pub max_num_ref_frames: u32,
    pub gaps_allowed: bool,
    pub width_mbs: u32,
    pub height_mbs: u32,
    pub visible: (u32, u32),
    pub profile_idc: u8,
    pub level_idc: u8,
}

impl SpsRules {
    fn max_frame_num(&self) -> u32 {
        1 << self.log2_max_frame_num
    }
}

fn err_inv(m: impl Into<String>) -> H264Error {
    H264Error::Invalid(m.into())
}

/// Refuse what hantro (and this verifier) cannot decode, naming it.
fn check_supported(sps: &cp::Sps) -> Result<(), H264Error> {
    let p = sps.profile_idc;
    let what = |s: String| {
        Err(H264Error::Unsupported(format!(
            "{s} (profile {} / profile_idc {p}); only progressive 4:2:0 8-bit Baseline, Main and High are supported",
            profile_name(p)
        )))
    };
    if sps.chroma_format_idc != 1 {
        let c = match sps.chroma_format_idc {
            0 => "4:0:0 monochrome",
            2 => "4:2:2",
            _ => "4:4:4",
        };
        return what(format!(
            "{c} chroma (chroma_format_idc {})",
            sps.chroma_format_idc
        ));
    }
    if sps.bit_depth_luma_minus8 != 0 || sps.bit_depth_chroma_minus8 != 0 {
        return what(format!(
            "{}-bit luma / {}-bit chroma",
            sps.bit_depth_luma_minus8 + 8,
            sps.bit_depth_chroma_minus8 + 8
        ));
    }
    if !sps.frame_mbs_only_flag {
        let m = if sps.mb_adaptive_frame_field_flag {
            "interlaced coding (frame_mbs_only_flag 0, MBAFF)"
        } else {
            "interlaced coding (frame_mbs_only_flag 0, field pictures)"
        };
        return what(m.to_string());
    }
    if sps.qpprime_y_zero_transform_bypass_flag || sps.separate_colour_plane_flag {
        return what("lossless transform bypass / separate colour planes".to_string());
    }
    if !matches!(p, 66 | 77 | 100) {
        return what("profile".to_string());
    }
    Ok(())
}

fn rules_of(sps: &cp::Sps) -> SpsRules {
    let n = usize::from(sps.num_ref_frames_in_pic_order_cnt_cycle);
    let vis = sps.visible_rectangle();
    SpsRules {
        log2_max_frame_num: u32::from(sps.log2_max_frame_num_minus4) + 4,
        poc_type: sps.pic_order_cnt_type,
        log2_max_poc_lsb: u32::from(sps.log2_max_pic_order_cnt_lsb_minus4) + 4,
        offset_for_non_ref_pic: sps.offset_for_non_ref_pic,
        offset_for_top_to_bottom_field: sps.offset_for_top_to_bottom_field,
        offset_for_ref_frame: sps.offset_for_ref_frame[..n].to_vec(),
        max_num_ref_frames: u32::from(sps.max_num_ref_frames),
        gaps_allowed: sps.gaps_in_frame_num_value_allowed_flag,
        width_mbs: u32::from(sps.pic_width_in_mbs_minus1) + 1,
        height_mbs: u32::from(sps.pic_height_in_map_units_minus1) + 1,
        visible: (vis.max.x - vis.min.x, vis.max.y - vis.min.y),
        profile_idc: sps.profile_idc,
        level_idc: sps.level_idc as u8,
    }
}

/// A reference picture in the marking state. `pic == None`: a "non-existing" frame inferred
/// for a frame_num gap (8.2.5.2).
#[derive(Debug, Clone, Copy)]
struct RefPic {
    pic: Option<usize>,
    frame_num: u32,
    long_term: bool,
    lt_idx: u32,
    top_poc: i32,
    bottom_poc: i32,
}

impl RefPic {
    fn poc(&self) -> i32 {
        self.top_poc.min(self.bottom_poc)
    }
}

/// POC and marking state carried from picture to picture.
#[derive(Debug, Default)]
struct State {
    refs: Vec<RefPic>,
    /// MaxLongTermFrameIdx; None = "no long-term frame indices".
    max_lt_idx: Option<u32>,
    prev_poc_msb: i32,
    prev_poc_lsb: i32,
    prev_frame_num_offset: i64,
    prev_frame_num: u32,
    prev_ref_frame_num: u32,
    prev_mmco5: bool,
}

impl State {
    fn frame_num_wrap(&self, r: &RefPic, cur_frame_num: u32, max_frame_num: u32) -> i32 {
        if r.frame_num > cur_frame_num {
            r.frame_num as i32 - max_frame_num as i32
        } else {
            r.frame_num as i32
        }
    }

    /// 8.2.5.3 sliding window, for a picture about to be stored as short-term.
    fn sliding_window(&mut self, rules: &SpsRules, cur_frame_num: u32) -> Result<(), H264Error> {
        let max = rules.max_num_ref_frames.max(1) as usize;
        let max_fn = rules.max_frame_num();
        while self.refs.len() >= max {
            let victim = self
                .refs
                .iter()
                .enumerate()
                .filter(|(_, r)| !r.long_term)
                .min_by_key(|(_, r)| self.frame_num_wrap(r, cur_frame_num, max_fn))
                .map(|(i, _)| i);
            match victim {
                Some(i) => {
                    self.refs.remove(i);
                }
                None => {
                    return Err(err_inv(format!(
                        "{} long-term references fill max_num_ref_frames {} (sliding window has nothing to remove)",
                        self.refs.len(),
                        rules.max_num_ref_frames
                    )))
                }
            }
        }
        Ok(())
    }
}

/// One picture being assembled from its slices.
struct PicBuild {
    slices: Vec<Slice>,
    idr: bool,
    nal_ref_idc: u8,
    sps_index: usize,
    pps_index: usize,
}

/// The fields that start a new primary coded picture when they change (7.4.1.2.4).
fn same_picture(a: &Slice, b: &Slice, poc_type: u8) -> bool {
    let (ha, hb) = (&a.hdr, &b.hdr);
    let idr_a = a.nal_unit_type == 5;
    let idr_b = b.nal_unit_type == 5;
    b.first_mb_in_slice != 0
        && ha.frame_num == hb.frame_num
        && ha.pic_parameter_set_id == hb.pic_parameter_set_id
        && (a.nal_ref_idc == 0) == (b.nal_ref_idc == 0)
        && idr_a == idr_b
        && (!idr_a || ha.idr_pic_id == hb.idr_pic_id)
        && match poc_type {
            0 => {
                ha.pic_order_cnt_lsb == hb.pic_order_cnt_lsb
                    && ha.delta_pic_order_cnt_bottom == hb.delta_pic_order_cnt_bottom
            }
            1 => ha.delta_pic_order_cnt == hb.delta_pic_order_cnt,
            _ => true,
        }
}

fn cros_nalu<'a>(nal: &NalUnit<'a>) -> Result<cp::Nalu<'a>, String> {
    let mut cur = std::io::Cursor::new(nal.data);
    let header = cp::NaluHeader::parse(&mut cur)?;
    Ok(cp::Nalu {
        header,
        data: Cow::Borrowed(nal.data),
        size: nal.data.len(),
        offset: 0,
    })
}

pub(crate) fn build(data: &[u8]) -> Result<Stream, H264Error> {
    if data.is_empty() {
        return Err(H264Error::NotH264("the input is empty".into()));
    }
    let (nals, leading) = nal_units(data);
    if nals.is_empty() {
        return Err(H264Error::NotH264(format!(
            "no start code (00 00 01) in {} bytes",
            data.len()
        )));
    }
    // An Annex-B stream starts with its first start code (leading zero bytes allowed).
    if data.len() >= 8 && &data[4..8] == b"ftyp" {
        return Err(H264Error::NotH264(
            "this is an MP4/ISO-BMFF file; extract the elementary stream first \
             (ffmpeg -i IN -c copy -bsf:v h264_mp4toannexb -f h264 OUT.h264)"
                .into(),
        ));
    }
    if data[..leading].iter().any(|&b| b != 0) {
        return Err(H264Error::NotH264(format!(
            "{leading} bytes of other data before the first start code"
        )));
    }

    let mut parser = cp::Parser::default();
    let mut sps_list: Vec<SpsInfo> = Vec::new();
    let mut pps_list: Vec<PpsInfo> = Vec::new();
    let mut sps_by_id: HashMap<u8, usize> = HashMap::new();
    let mut pps_by_id: HashMap<u8, usize> = HashMap::new();
    let mut builds: Vec<PicBuild> = Vec::new();
    let mut au_break = true;
    let last = nals.len() - 1;

    for (k, nal) in nals.iter().enumerate() {
        let at = nal.offset;
        let is_last = k == last;
        if nal.data.is_empty() {
            if is_last {
                return Err(H264Error::Truncated(format!(
                    "stream ends right after a start code at byte {at}"
                )));
            }
            continue;
        }
        let seen_sps = !sps_list.is_empty();
        if nal.forbidden_zero_bit() {
            return Err(if seen_sps {
                err_inv(format!("NAL unit at byte {at} has forbidden_zero_bit set"))
            } else {
                H264Error::NotH264(format!("NAL unit at byte {at} has forbidden_zero_bit set"))
            });
        }
        let t = nal.nal_unit_type();
        let fail = |what: &str, m: String| -> H264Error {
            if !seen_sps && t != 7 {
                H264Error::NotH264(format!(
                    "no sequence parameter set before {what} at byte {at}"
                ))
            } else if is_last {
                H264Error::Truncated(format!("stream ends inside the {what} at byte {at} ({m})"))
            } else {
                err_inv(format!("{what} at byte {at}: {m}"))
            }
        };
        match t {
            7 => {
                au_break = true;
                let n = cros_nalu(nal).map_err(|m| fail("SPS", m))?;
                let sps = parser.parse_sps(&n).map_err(|m| {
                    if seen_sps || is_last {
                        fail("SPS", m)
                    } else {
                        H264Error::NotH264(format!("the first NAL unit that looks like an SPS (byte {at}) does not parse: {m}"))
                    }
                })?;
                check_supported(sps)?;
                let rules = rules_of(sps);
                if let Some(first) = sps_list.first() {
                    let f = &first.rules;
                    if (f.width_mbs, f.height_mbs, f.visible)
                        != (rules.width_mbs, rules.height_mbs, rules.visible)
                    {
                        return Err(H264Error::Unsupported(format!(
                            "resolution change at byte {at} ({}x{} MBs -> {}x{} MBs)",
                            f.width_mbs, f.height_mbs, rules.width_mbs, rules.height_mbs
                        )));
                    }
                }
                sps_by_id.insert(sps.seq_parameter_set_id, sps_list.len());
                sps_list.push(SpsInfo {
                    id: sps.seq_parameter_set_id,
                    v4l2: controls::sps(sps),
                    rules,
                });
            }
            8 => {
                au_break = true;
                if !seen_sps {
                    return Err(H264Error::NotH264(format!(
                        "picture parameter set at byte {at} before any sequence parameter set"
                    )));
                }
                let n = cros_nalu(nal).map_err(|m| fail("PPS", m))?;
                let pps = parser.parse_pps(&n).map_err(|m| {
                    if m.contains("unsupported") {
                        H264Error::Unsupported(format!(
                            "PPS at byte {at}: slice groups (FMO, num_slice_groups_minus1 > 0)"
                        ))
                    } else {
                        fail("PPS", m)
                    }
                })?;
                let sps_index = *sps_by_id
                    .get(&pps.seq_parameter_set_id)
                    .ok_or_else(|| err_inv(format!("PPS at byte {at} names unknown SPS")))?;
                pps_by_id.insert(pps.pic_parameter_set_id, pps_list.len());
                pps_list.push(PpsInfo {
                    id: pps.pic_parameter_set_id,
                    sps_index,
                    v4l2: controls::pps(pps),
                    scaling_matrix: controls::scaling_matrix(pps),
                });
            }
            1 | 5 => {
                if !seen_sps {
                    return Err(H264Error::NotH264(format!(
                        "slice at byte {at} before any sequence parameter set"
                    )));
                }
                let n = cros_nalu(nal).map_err(|m| fail("slice header", m))?;
                let s = parser
                    .parse_slice_header(n)
                    .map_err(|m| fail("slice header", m))?;
                let h = s.header;
                let pps_index = *pps_by_id.get(&h.pic_parameter_set_id).ok_or_else(|| {
                    err_inv(format!(
                        "slice at byte {at} names unknown PPS {}",
                        h.pic_parameter_set_id
                    ))
                })?;
                let sps_index = pps_list[pps_index].sps_index;
                let slice_type = SliceType::from_cros(h.slice_type);
                if matches!(slice_type, SliceType::Sp | SliceType::Si) {
                    return Err(H264Error::Unsupported(format!(
                        "SP/SI slice at byte {at} (Extended profile)"
                    )));
                }
                if h.redundant_pic_cnt > 0 {
                    // Redundant coded pictures may be ignored by decoders (7.4.3).
                    continue;
                }
                let mmco = h
                    .dec_ref_pic_marking
                    .inner
                    .iter()
                    .map(|m| Mmco {
                        op: m.memory_management_control_operation,
                        difference_of_pic_nums_minus1: m.difference_of_pic_nums_minus1,
                        long_term_pic_num: m.long_term_pic_num,
                        long_term_frame_idx: m.long_term_frame_idx,
                        max_long_term_frame_idx_plus1: m.max_long_term_frame_idx.to_value_plus1(),
                    })
                    .collect();
                let slice = Slice {
                    nal: nal.data.to_vec(),
                    offset: at,
                    nal_unit_type: t,
                    nal_ref_idc: nal.nal_ref_idc(),
                    slice_type,
                    first_mb_in_slice: h.first_mb_in_slice,
                    pps_id: h.pic_parameter_set_id,
                    header_bit_size: h.header_bit_size as u32,
                    pic_order_cnt_bit_size: h.pic_order_cnt_bit_size as u32,
                    dec_ref_pic_marking_bit_size: h.dec_ref_pic_marking_bit_size as u32,
                    num_ref_idx_l0_active_minus1: h.num_ref_idx_l0_active_minus1,
                    num_ref_idx_l1_active_minus1: h.num_ref_idx_l1_active_minus1,
                    ref_list0: Vec::new(),
                    ref_list1: Vec::new(),
                    mmco,
                    hdr: h,
                };
                let poc_type = sps_list[sps_index].rules.poc_type;
                let new_pic = au_break
                    || builds
                        .last()
                        .and_then(|b| b.slices.first())
                        .is_none_or(|first| !same_picture(first, &slice, poc_type));
                au_break = false;
                if new_pic {
                    builds.push(PicBuild {
                        slices: vec![slice],
                        idr: t == 5,
                        nal_ref_idc: nal.nal_ref_idc(),
                        sps_index,
                        pps_index,
                    });
                } else if let Some(b) = builds.last_mut() {
                    b.slices.push(slice);
                }
            }
            2..=4 => {
                return Err(H264Error::Unsupported(format!(
                    "data-partitioned slice (NAL unit type {t}, Extended profile) at byte {at}"
                )))
            }
            14 | 15 | 20 => {
                return Err(H264Error::Unsupported(format!(
                    "SVC/MVC NAL unit type {t} at byte {at} (scalable or multiview extension)"
                )))
            }
            6 | 9 | 10 | 11 | 13 | 16..=18 => au_break = true,
            _ => {}
        }
    }

    if builds.is_empty() {
        return Err(if sps_list.is_empty() {
            H264Error::NotH264("no sequence parameter set and no slice found".into())
        } else {
            H264Error::Truncated("stream ends before its first coded picture".into())
        });
    }

    decode_all(builds, sps_list, pps_list)
}

/// 8.2.1: TopFieldOrderCnt / BottomFieldOrderCnt of a frame. Updates the "previous picture"
/// state for POC types 1 and 2 (type 0 uses the previous reference picture: see mark()).
fn picture_order_count(
    st: &mut State,
    r: &SpsRules,
    h: &cp::SliceHeader,
    idr: bool,
    nal_ref_idc: u8,
) -> (i32, i32, i64) {
    let max_fn = i64::from(r.max_frame_num());
    let frame_num = u32::from(h.frame_num);
    let frame_num_offset = if idr {
        0
    } else {
        let prev_off = if st.prev_mmco5 {
            0
        } else {
            st.prev_frame_num_offset
        };
        if st.prev_frame_num > frame_num {
            prev_off + max_fn
        } else {
            prev_off
        }
    };
    match r.poc_type {
        0 => {
            let (prev_msb, prev_lsb) = if idr {
                (0, 0)
            } else {
                (st.prev_poc_msb, st.prev_poc_lsb)
            };
            let max_lsb = 1i32 << r.log2_max_poc_lsb;
            let lsb = i32::from(h.pic_order_cnt_lsb);
            let msb = if lsb < prev_lsb && prev_lsb - lsb >= max_lsb / 2 {
                prev_msb + max_lsb
            } else if lsb > prev_lsb && lsb - prev_lsb > max_lsb / 2 {
                prev_msb - max_lsb
            } else {
                prev_msb
            };
            let top = msb + lsb;
            (top, top + h.delta_pic_order_cnt_bottom, frame_num_offset)
        }
        1 => {
            let n = r.offset_for_ref_frame.len() as i64;
            let mut abs = if n != 0 {
                frame_num_offset + i64::from(frame_num)
            } else {
                0
            };
            if nal_ref_idc == 0 && abs > 0 {
                abs -= 1;
            }
            let mut expected: i64 = 0;
            if abs > 0 {
                let cycle = (abs - 1) / n;
                let in_cycle = ((abs - 1) % n) as usize;
                let delta: i64 = r.offset_for_ref_frame.iter().map(|&o| i64::from(o)).sum();
                expected = cycle * delta;
                for &o in &r.offset_for_ref_frame[..=in_cycle] {
                    expected += i64::from(o);
                }
            }
            if nal_ref_idc == 0 {
                expected += i64::from(r.offset_for_non_ref_pic);
            }
            let top = expected + i64::from(h.delta_pic_order_cnt[0]);
            let bottom = top
                + i64::from(r.offset_for_top_to_bottom_field)
                + i64::from(h.delta_pic_order_cnt[1]);
            (top as i32, bottom as i32, frame_num_offset)
        }
        _ => {
            let t = if idr {
                0
            } else if nal_ref_idc == 0 {
                2 * (frame_num_offset + i64::from(frame_num)) - 1
            } else {
                2 * (frame_num_offset + i64::from(frame_num))
            };
            (t as i32, t as i32, frame_num_offset)
        }
    }
}

/// A reference list entry while it is built: an index into `State::refs`, or "no reference
/// picture".
type ListEntry = Option<usize>;

/// 8.2.4.2: the initial reference list(s) of a frame slice.
fn initial_lists(
    st: &State,
    cur_frame_num: u32,
    cur_poc: i32,
    max_fn: u32,
    b_slice: bool,
) -> (Vec<usize>, Vec<usize>) {
    let short: Vec<usize> = (0..st.refs.len())
        .filter(|&i| !st.refs[i].long_term)
        .collect();
    let mut long: Vec<usize> = (0..st.refs.len())
        .filter(|&i| st.refs[i].long_term)
        .collect();
    long.sort_by_key(|&i| st.refs[i].lt_idx);
    if !b_slice {
        let mut l0 = short;
        l0.sort_by_key(|&i| {
            std::cmp::Reverse(st.frame_num_wrap(&st.refs[i], cur_frame_num, max_fn))
        });
        l0.extend(long);
        return (l0, Vec::new());
    }
    let mut before: Vec<usize> = short
        .iter()
        .copied()
        .filter(|&i| st.refs[i].poc() < cur_poc)
        .collect();
    let mut after: Vec<usize> = short
        .iter()
        .copied()
        .filter(|&i| st.refs[i].poc() > cur_poc)
        .collect();
    before.sort_by_key(|&i| std::cmp::Reverse(st.refs[i].poc()));
    after.sort_by_key(|&i| st.refs[i].poc());
    let mut l0 = before.clone();
    l0.extend(&after);
    l0.extend(&long);
    let mut l1 = after;
    l1.extend(before);
    l1.extend(long);
    if l1.len() > 1 && l0 == l1 {
        l1.swap(0, 1);
    }
    (l0, l1)
}

/// 8.2.4.3: apply ref_pic_list_modification to an initial list.
fn modify_list(
    st: &State,
    initial: &[usize],
    num_active: usize,
    mods: &[cp::RefPicListModification],
    cur_frame_num: u32,
    max_fn: u32,
) -> Result<Vec<ListEntry>, String> {
    let mut list: Vec<ListEntry> = initial.iter().copied().map(Some).take(num_active).collect();
    list.resize(num_active, None);
    let curr = i64::from(cur_frame_num);
    let max_pic_num = i64::from(max_fn);
    let mut pred = curr;
    for (ref_idx, m) in mods.iter().enumerate() {
        let (target, is_long, key) = match m.modification_of_pic_nums_idc {
            0 | 1 => {
                let abs = i64::from(m.abs_diff_pic_num_minus1) + 1;
                let mut no_wrap = if m.modification_of_pic_nums_idc == 0 {
                    pred - abs
                } else {
                    pred + abs
                };
                if no_wrap < 0 {
                    no_wrap += max_pic_num;
                } else if no_wrap >= max_pic_num {
                    no_wrap -= max_pic_num;
                }
                pred = no_wrap;
                let pic_num = if no_wrap > curr {
                    no_wrap - max_pic_num
                } else {
                    no_wrap
                };
                let found = (0..st.refs.len()).find(|&i| {
                    !st.refs[i].long_term
                        && i64::from(st.frame_num_wrap(&st.refs[i], cur_frame_num, max_fn))
                            == pic_num
                });
                (found, false, pic_num)
            }
            2 => {
                let n = i64::from(m.long_term_pic_num);
                let found = (0..st.refs.len())
                    .find(|&i| st.refs[i].long_term && i64::from(st.refs[i].lt_idx) == n);
                (found, true, n)
            }
            _ => break,
        };
        let Some(target) = target else {
            return Err(format!(
                "ref_pic_list_modification names {} picture number {key}, which is not a reference",
                if is_long { "long-term" } else { "short-term" }
            ));
        };
        if ref_idx >= num_active {
            return Err("more ref_pic_list_modification operations than active references".into());
        }
        list.insert(ref_idx, Some(target));
        // Remove the later duplicate of the inserted picture.
        let mut n = ref_idx + 1;
        for c in ref_idx + 1..list.len() {
            if list[c] != Some(target) {
                list[n] = list[c];
                n += 1;
            }
        }
        list.truncate(n.max(num_active));
        list.truncate(num_active);
        list.resize(num_active, None);
    }
    Ok(list)
}

/// 8.2.5: mark the decoded picture `cur` (decode index) and update the state.
fn mark(
    st: &mut State,
    r: &SpsRules,
    pic: &mut Picture,
    h: &cp::SliceHeader,
) -> Result<(), H264Error> {
    let max_fn = r.max_frame_num();
    let frame_num = pic.frame_num;
    let mut cur = RefPic {
        pic: Some(pic.decode_index),
        frame_num,
        long_term: false,
        lt_idx: 0,
        top_poc: pic.top_poc,
        bottom_poc: pic.bottom_poc,
    };
    let rpm = &h.dec_ref_pic_marking;
    let mut mmco5 = false;
    if pic.idr {
        st.refs.clear();
        if rpm.long_term_reference_flag {
            cur.long_term = true;
            cur.lt_idx = 0;
            st.max_lt_idx = Some(0);
        } else {
            st.max_lt_idx = None;
        }
    } else if rpm.adaptive_ref_pic_marking_mode_flag {
        for m in &rpm.inner {
            let di = pic.decode_index;
            let bad = |what: String| {
                err_inv(format!(
                    "picture {di}: MMCO {}: {what}",
                    m.memory_management_control_operation
                ))
            };
            let short_by_pic_num = |st: &State, diff: u32| -> Result<usize, H264Error> {
                let pic_num_x = frame_num as i64 - (i64::from(diff) + 1);
                (0..st.refs.len())
                    .find(|&i| {
                        !st.refs[i].long_term
                            && i64::from(st.frame_num_wrap(&st.refs[i], frame_num, max_fn))
                                == pic_num_x
                    })
                    .ok_or_else(|| bad(format!("no short-term reference with picNumX {pic_num_x}")))
            };
            match m.memory_management_control_operation {
                1 => {
                    let i = short_by_pic_num(st, m.difference_of_pic_nums_minus1)?;
                    st.refs.remove(i);
                }
                2 => {
                    let i = (0..st.refs.len())
                        .find(|&i| st.refs[i].long_term && st.refs[i].lt_idx == m.long_term_pic_num)
                        .ok_or_else(|| {
                            bad(format!(
                                "no long-term reference with LongTermPicNum {}",
                                m.long_term_pic_num
                            ))
                        })?;
                    st.refs.remove(i);
                }
                3 => {
                    let i = short_by_pic_num(st, m.difference_of_pic_nums_minus1)?;
                    let target = st.refs[i].pic;
                    st.refs.retain(|x| {
                        !(x.long_term && x.lt_idx == m.long_term_frame_idx && x.pic != target)
                    });
                    let i = st
                        .refs
                        .iter()
                        .position(|x| !x.long_term && x.pic == target)
                        .unwrap_or(0);
                    if st.max_lt_idx.is_none_or(|mx| m.long_term_frame_idx > mx) {
                        return Err(bad(format!(
                            "LongTermFrameIdx {} above MaxLongTermFrameIdx",
                            m.long_term_frame_idx
                        )));
                    }
                    st.refs[i].long_term = true;
                    st.refs[i].lt_idx = m.long_term_frame_idx;
                }
                4 => {
                    let plus1 = m.max_long_term_frame_idx.to_value_plus1();
                    st.max_lt_idx = plus1.checked_sub(1);
                    st.refs
                        .retain(|x| !(x.long_term && st.max_lt_idx.is_none_or(|mx| x.lt_idx > mx)));
                }
                5 => {
                    st.refs.clear();
                    st.max_lt_idx = None;
                    mmco5 = true;
                }
                6 => {
                    if st.max_lt_idx.is_none_or(|mx| m.long_term_frame_idx > mx) {
                        return Err(bad(format!(
                            "LongTermFrameIdx {} above MaxLongTermFrameIdx",
                            m.long_term_frame_idx
                        )));
                    }
                    st.refs
                        .retain(|x| !(x.long_term && x.lt_idx == m.long_term_frame_idx));
                    cur.long_term = true;
                    cur.lt_idx = m.long_term_frame_idx;
                }
                op => return Err(bad(format!("unknown operation {op}"))),
            }
        }
    } else {
        st.sliding_window(r, frame_num)?;
    }
    if mmco5 {
        // 8.2.1: after MMCO 5 the picture counts as frame_num 0 with POC relative to itself.
        let temp = cur.top_poc.min(cur.bottom_poc);
        cur.top_poc -= temp;
        cur.bottom_poc -= temp;
        cur.frame_num = 0;
    }
    if st.refs.len() >= r.max_num_ref_frames.max(1) as usize {
        return Err(err_inv(format!(
            "picture {}: {} references after marking exceed max_num_ref_frames {}",
            pic.decode_index,
            st.refs.len() + 1,
            r.max_num_ref_frames
        )));
    }
    pic.long_term = cur.long_term;
    pic.mmco5 = mmco5;
    st.refs.push(cur);
    st.prev_ref_frame_num = cur.frame_num;
    st.prev_poc_msb = if mmco5 {
        0
    } else {
        pic.top_poc - i32::from(h.pic_order_cnt_lsb)
    };
    st.prev_poc_lsb = if mmco5 {
        cur.top_poc
    } else {
        i32::from(h.pic_order_cnt_lsb)
    };
    Ok(())
}

fn decode_all(
    builds: Vec<PicBuild>,
    sps_list: Vec<SpsInfo>,
    pps_list: Vec<PpsInfo>,
) -> Result<Stream, H264Error> {
    let mut st = State::default();
    let mut pictures: Vec<Picture> = Vec::with_capacity(builds.len());
    // (period, poc) for output order: a period starts at an IDR or MMCO 5 picture.
    let mut order_key: Vec<(usize, i32)> = Vec::with_capacity(builds.len());
    let mut period = 0usize;

    for (di, pb) in builds.into_iter().enumerate() {
        let r = &sps_list[pb.sps_index].rules;
        let max_fn = r.max_frame_num();
        let h0 = pb.slices[0].hdr.clone();
        let frame_num = u32::from(h0.frame_num);
        if di == 0 && !pb.idr {
            // Decoding may start at a recovery point; references before it do not exist.
            st.prev_ref_frame_num = (frame_num + max_fn - 1) % max_fn;
            st.prev_frame_num = frame_num;
        }

        // 8.2.5.2: gaps in frame_num.
        if !pb.idr
            && frame_num != st.prev_ref_frame_num
            && frame_num != (st.prev_ref_frame_num + 1) % max_fn
        {
            if !r.gaps_allowed {
                return Err(err_inv(format!(
                    "picture {di}: frame_num jumps from {} to {frame_num} (missing pictures)",
                    st.prev_ref_frame_num
                )));
            }
            let mut unused = (st.prev_ref_frame_num + 1) % max_fn;
            while unused != frame_num {
                st.sliding_window(r, unused)?;
                let off = if st.prev_frame_num > unused {
                    st.prev_frame_num_offset + i64::from(max_fn)
                } else {
                    st.prev_frame_num_offset
                };
                let t = (2 * (off + i64::from(unused))) as i32;
                st.refs.push(RefPic {
                    pic: None,
                    frame_num: unused,
                    long_term: false,
                    lt_idx: 0,
                    top_poc: t,
                    bottom_poc: t,
                });
                st.prev_frame_num_offset = off;
                st.prev_frame_num = unused;
                st.prev_ref_frame_num = unused;
                st.prev_mmco5 = false;
                unused = (unused + 1) % max_fn;
            }
        }

        let (top, bottom, frame_num_offset) =
            picture_order_count(&mut st, r, &h0, pb.idr, pb.nal_ref_idc);
        let poc = top.min(bottom);

        // DECODE_PARAMS.dpb[]: the references valid now (IDR: none), short-term first.
        let mut dpb_keys: Vec<usize> = if pb.idr {
            Vec::new()
        } else {
            (0..st.refs.len())
                .filter(|&i| st.refs[i].pic.is_some())
                .collect()
        };
        dpb_keys.sort_by_key(|&i| {
            let x = &st.refs[i];
            if x.long_term {
                (1, i64::from(x.lt_idx))
            } else {
                (0, -i64::from(st.frame_num_wrap(x, frame_num, max_fn)))
            }
        });
        let dpb: Vec<DpbRef> = dpb_keys
            .iter()
            .map(|&i| {
                let x = &st.refs[i];
                DpbRef {
                    decode_index: x.pic.unwrap_or(usize::MAX),
                    long_term: x.long_term,
                    frame_num: if x.long_term { x.lt_idx } else { x.frame_num },
                    pic_num: if x.long_term {
                        x.lt_idx as i32
                    } else {
                        st.frame_num_wrap(x, frame_num, max_fn)
                    },
                    top_poc: x.top_poc,
                    bottom_poc: x.bottom_poc,
                }
            })
            .collect();

        let mut slices = pb.slices;
        for (si, s) in slices.iter_mut().enumerate() {
            if s.slice_type == SliceType::I || pb.idr {
                continue;
            }
            let b_slice = s.slice_type == SliceType::B;
            let (i0, i1) = initial_lists(&st, frame_num, poc, max_fn, b_slice);
            let to_dpb = |l: Vec<ListEntry>, which: u8| -> Result<Vec<usize>, H264Error> {
                let mut out = Vec::with_capacity(l.len());
                let mut hole = false;
                for e in l {
                    match e {
                        None => hole = true,
                        Some(k) => {
                            let Some(pos) = dpb_keys.iter().position(|&d| d == k) else {
                                return Err(H264Error::Unsupported(format!(
                                    "picture {di} slice {si}: RefPicList{which} uses a frame inferred for a frame_num gap"
                                )));
                            };
                            if hole {
                                return Err(err_inv(format!("picture {di} slice {si}: RefPicList{which} has an empty entry before a reference")));
                            }
                            out.push(pos);
                        }
                    }
                }
                Ok(out)
            };
            let n0 = usize::from(s.num_ref_idx_l0_active_minus1) + 1;
            let l0 = modify_list(
                &st,
                &i0,
                n0,
                &s.hdr.ref_pic_list_modification_l0,
                frame_num,
                max_fn,
            )
            .map_err(|m| err_inv(format!("picture {di} slice {si}: RefPicList0: {m}")))?;
            s.ref_list0 = to_dpb(l0, 0)?;
            if s.ref_list0.is_empty() {
                return Err(err_inv(format!(
                    "picture {di} slice {si}: {} slice without any reference picture",
                    s.slice_type
                )));
            }
            if b_slice {
                let n1 = usize::from(s.num_ref_idx_l1_active_minus1) + 1;
                let l1 = modify_list(
                    &st,
                    &i1,
                    n1,
                    &s.hdr.ref_pic_list_modification_l1,
                    frame_num,
                    max_fn,
                )
                .map_err(|m| err_inv(format!("picture {di} slice {si}: RefPicList1: {m}")))?;
                s.ref_list1 = to_dpb(l1, 1)?;
            }
        }

        let mut pic = Picture {
            decode_index: di,
            display_index: 0,
            last_use: di,
            output_after: di,
            frame_num,
            idr: pb.idr,
            idr_pic_id: u32::from(h0.idr_pic_id),
            nal_ref_idc: pb.nal_ref_idc,
            top_poc: top,
            bottom_poc: bottom,
            poc,
            pic_order_cnt_lsb: u32::from(h0.pic_order_cnt_lsb),
            delta_pic_order_cnt_bottom: h0.delta_pic_order_cnt_bottom,
            delta_pic_order_cnt: h0.delta_pic_order_cnt,
            mmco5: false,
            long_term: false,
            slice_types: slices.iter().map(|s| s.slice_type).collect(),
            slices,
            dpb,
            sps_index: pb.sps_index,
            pps_index: pb.pps_index,
        };

        if pb.idr {
            period += 1;
            // POC type 0 of an IDR: prevPicOrderCntMsb = prevPicOrderCntLsb = 0 (done above).
        }
        if pic.nal_ref_idc != 0 {
            mark(&mut st, r, &mut pic, &h0)?;
        }
        if pic.mmco5 {
            period += 1;
            order_key.push((period, 0));
        } else {
            order_key.push((period, poc));
        }
        st.prev_mmco5 = pic.mmco5;
        st.prev_frame_num = if pic.mmco5 { 0 } else { frame_num };
        st.prev_frame_num_offset = if pic.mmco5 { 0 } else { frame_num_offset };
        pictures.push(pic);
    }

    // Output order and lifetimes.
    let mut output_order: Vec<usize> = (0..pictures.len()).collect();
    output_order.sort_by_key(|&i| (order_key[i], i));
    let mut latest = 0;
    for (k, &i) in output_order.iter().enumerate() {
        latest = latest.max(i);
        pictures[i].display_index = k;
        pictures[i].output_after = latest;
    }
    for i in 0..pictures.len() {
        let users: Vec<usize> = pictures[i].dpb.iter().map(|d| d.decode_index).collect();
        for u in users {
            if let Some(p) = pictures.get_mut(u) {
                p.last_use = p.last_use.max(i);
            }
        }
    }
    let mut max_live = 0;
    for d in 0..pictures.len() {
        let live = pictures[..=d]
            .iter()
            .filter(|p| p.last_use.max(p.output_after) >= d)
            .count();
        max_live = max_live.max(live);
    }

    let r0 = &sps_list[pictures[0].sps_index].rules;
    Ok(Stream {
        coded_width: r0.width_mbs * 16,
        coded_height: r0.height_mbs * 16,
        visible_width: r0.visible.0,
        visible_height: r0.visible.1,
        profile_idc: r0.profile_idc,
        level_idc: r0.level_idc,
        max_num_ref_frames: r0.max_num_ref_frames,
        max_live,
        output_order,
        pictures,
        sps: sps_list,
        pps: pps_list,
    })
}
