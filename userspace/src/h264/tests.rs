//! Unit tests on synthetic streams for what x264 never produces (POC type 1, long-term
//! references, MMCO 2-6, frame_num gaps and wrap, list modifications by long-term number),
//! written with cros-codecs' SPS/PPS synthesizer and NaluWriter. Expected values follow the
//! equations of the specification clause each test names. The ffmpeg-checked tests on real
//! streams are in tests/h264_streams.rs.

use std::rc::Rc;

use cros_codecs::codec::h264::nalu_writer::NaluWriter;
use cros_codecs::codec::h264::parser::{Level, Pps, PpsBuilder, Sps};
use cros_codecs::codec::h264::synthesizer::Synthesizer;
use v4l2r::bindings as b;

use super::*;

struct SpsCfg {
    poc_type: u8,
    max_refs: u8,
    gaps: bool,
    /// POC type 1: offset_for_non_ref_pic, offset_for_ref_frame[].
    non_ref: i32,
    cycle: Vec<i32>,
}

impl Default for SpsCfg {
    fn default() -> Self {
        SpsCfg {
            poc_type: 0,
            max_refs: 4,
            gaps: false,
            non_ref: 0,
            cycle: vec![],
        }
    }
}

fn param_sets(c: &SpsCfg) -> (Vec<u8>, Rc<Sps>, Rc<Pps>) {
    let mut sps = Sps {
        profile_idc: 77,
        level_idc: Level::L3,
        chroma_format_idc: 1,
        log2_max_frame_num_minus4: 0, // MaxFrameNum 16
        pic_order_cnt_type: c.poc_type,
        log2_max_pic_order_cnt_lsb_minus4: 2, // MaxPicOrderCntLsb 64
        max_num_ref_frames: c.max_refs,
        gaps_in_frame_num_value_allowed_flag: c.gaps,
        pic_width_in_mbs_minus1: 3,
        pic_height_in_map_units_minus1: 2,
        frame_mbs_only_flag: true,
        direct_8x8_inference_flag: true,
        offset_for_non_ref_pic: c.non_ref,
        num_ref_frames_in_pic_order_cnt_cycle: c.cycle.len() as u8,
        ..Default::default()
    };
    for (i, &o) in c.cycle.iter().enumerate() {
        sps.offset_for_ref_frame[i] = o;
    }
    let sps = Rc::new(sps);
    let pps = PpsBuilder::new(Rc::clone(&sps))
        .num_ref_idx_l0_default_active(1)
        .build();
    let mut out = Vec::new();
    Synthesizer::<Sps, _>::synthesize(3, &sps, &mut out, true).unwrap();
    Synthesizer::<Pps, _>::synthesize(3, &pps, &mut out, true).unwrap();
    (out, sps, pps)
}

#[derive(Clone, Default)]
struct S {
    idr: bool,
    ref_idc: u8,
    /// 0 P, 1 B, 2 I
    ty: u32,
    frame_num: u32,
    idr_pic_id: u32,
    lsb: u32,
    delta0: i32,
    /// num_ref_idx_active override (l0, l1).
    active: Option<(u32, u32)>,
    mods_l0: Vec<(u32, u32)>,
    mods_l1: Vec<(u32, u32)>,
    long_term_reference_flag: bool,
    /// (op, a, b): 1 diff / 2 ltpn / 3 diff,idx / 4 max+1 / 5 / 6 idx
    mmco: Vec<(u32, u32, u32)>,
    first_mb: u32,
}

fn p(fr: u32, lsb: u32) -> S {
    S {
        ref_idc: 2,
        ty: 0,
        frame_num: fr,
        lsb,
        ..Default::default()
    }
}

fn write_slice(out: &mut Vec<u8>, s: &S, cfg: &SpsCfg) {
    let mut w = NaluWriter::new(&mut *out, true);
    w.write_header(s.ref_idc, if s.idr { 5 } else { 1 })
        .unwrap();
    w.write_ue(s.first_mb).unwrap();
    w.write_ue(s.ty).unwrap();
    w.write_ue(0u32).unwrap(); // pps id
    w.write_u(4, s.frame_num).unwrap();
    if s.idr {
        w.write_ue(s.idr_pic_id).unwrap();
    }
    match cfg.poc_type {
        0 => {
            w.write_u(6, s.lsb).unwrap();
        }
        1 => w.write_se(s.delta0).unwrap(),
        _ => {}
    }
    if s.ty == 1 {
        w.write_u(1, 1u32).unwrap(); // direct_spatial_mv_pred_flag
    }
    if s.ty != 2 {
        match s.active {
            Some((l0, l1)) => {
                w.write_u(1, 1u32).unwrap();
                w.write_ue(l0 - 1).unwrap();
                if s.ty == 1 {
                    w.write_ue(l1 - 1).unwrap();
                }
            }
            None => {
                w.write_u(1, 0u32).unwrap();
            }
        }
        let lists = if s.ty == 1 {
            vec![&s.mods_l0, &s.mods_l1]
        } else {
            vec![&s.mods_l0]
        };
        for mods in lists {
            w.write_u(1, u32::from(!mods.is_empty())).unwrap();
            if !mods.is_empty() {
                for &(idc, v) in mods {
                    w.write_ue(idc).unwrap();
                    w.write_ue(v).unwrap();
                }
                w.write_ue(3u32).unwrap();
            }
        }
    }
    if s.ref_idc != 0 {
        if s.idr {
            w.write_u(1, 0u32).unwrap();
            w.write_u(1, u32::from(s.long_term_reference_flag)).unwrap();
        } else {
            w.write_u(1, u32::from(!s.mmco.is_empty())).unwrap();
            if !s.mmco.is_empty() {
                for &(op, a, bb) in &s.mmco {
                    w.write_ue(op).unwrap();
                    match op {
                        1 | 2 | 4 | 6 => w.write_ue(a).unwrap(),
                        3 => {
                            w.write_ue(a).unwrap();
                            w.write_ue(bb).unwrap();
                        }
                        _ => {}
                    }
                }
                w.write_ue(0u32).unwrap();
            }
        }
    }
    w.write_se(0i32).unwrap(); // slice_qp_delta
                               // Stand-in slice data, then rbsp_slice_trailing_bits.
    w.write_u(8, 0xa5u32).unwrap();
    w.write_u(1, 1u32).unwrap();
    while !w.aligned() {
        w.write_u(1, 0u32).unwrap();
    }
}

fn stream(cfg: &SpsCfg, slices: &[S]) -> Vec<u8> {
    let (mut out, _, _) = param_sets(cfg);
    for s in slices {
        write_slice(&mut out, s, cfg);
    }
    out
}

fn idr() -> S {
    S {
        idr: true,
        ref_idc: 3,
        ty: 2,
        ..Default::default()
    }
}

/// (frame_num, long_term, top_poc) of each dpb[] entry.
fn dpb(p: &Picture) -> Vec<(u32, bool, i32)> {
    p.dpb
        .iter()
        .map(|d| (d.frame_num, d.long_term, d.top_poc))
        .collect()
}

fn dpb_pics(p: &Picture) -> Vec<usize> {
    p.dpb.iter().map(|d| d.decode_index).collect()
}

fn list0(s: &Stream, pic: usize) -> Vec<usize> {
    let p = &s.pictures[pic];
    p.slices[0]
        .ref_list0
        .iter()
        .map(|&i| p.dpb[i].decode_index)
        .collect()
}

fn list1(s: &Stream, pic: usize) -> Vec<usize> {
    let p = &s.pictures[pic];
    p.slices[0]
        .ref_list1
        .iter()
        .map(|&i| p.dpb[i].decode_index)
        .collect()
}

#[test]
fn synthetic_stream_round_trips_through_the_parser() {
    let cfg = SpsCfg::default();
    let s = parse(&stream(&cfg, &[idr(), p(1, 4)])).unwrap();
    assert_eq!(s.pictures.len(), 2);
    assert_eq!((s.coded_width, s.coded_height), (64, 48));
    assert_eq!(s.pictures[1].pic_order_cnt_lsb, 4);
    assert_eq!(s.pictures[1].poc, 4);
    assert_eq!(list0(&s, 1), vec![0]);
}

/// 8.2.1.2 (POC type 1), with FrameNumOffset across a frame_num wrap (MaxFrameNum 16).
#[test]
fn poc_type_1() {
    let cycle = vec![4, 2];
    let cfg = SpsCfg {
        poc_type: 1,
        non_ref: -3,
        cycle: cycle.clone(),
        ..Default::default()
    };
    let mut v = vec![idr()];
    // 20 reference P frames, a non-reference one after every 5th.
    let mut kinds = Vec::new();
    let mut abs = 0u32;
    for k in 1..=24u32 {
        let nonref = k % 6 == 0;
        // A non-reference picture has the next frame_num too (PrevRefFrameNum + 1).
        let fnum = abs + 1;
        if !nonref {
            abs += 1;
        }
        let mut s = p(fnum % 16, 0);
        if nonref {
            s.ref_idc = 0;
        }
        s.delta0 = if k == 7 { 5 } else { 0 };
        kinds.push((fnum, nonref, s.delta0));
        v.push(s);
    }
    let st = parse(&stream(&cfg, &v)).unwrap();
    assert_eq!(st.pictures.len(), 25);
    assert_eq!(st.pictures[0].poc, 0);
    let delta: i64 = cycle.iter().map(|&x| i64::from(x)).sum();
    for (k, &(fnum, nonref, d0)) in kinds.iter().enumerate() {
        // absFrameNum = FrameNumOffset + frame_num (the offset absorbs the wraps), minus 1
        // for a non-reference picture.
        let mut a = i64::from(fnum);
        if nonref {
            a -= 1;
        }
        let mut exp = if a > 0 {
            let c = (a - 1) / cycle.len() as i64;
            let i = ((a - 1) % cycle.len() as i64) as usize;
            c * delta + cycle[..=i].iter().map(|&x| i64::from(x)).sum::<i64>()
        } else {
            0
        };
        if nonref {
            exp += i64::from(cfg.non_ref);
        }
        exp += i64::from(d0);
        let pic = &st.pictures[k + 1];
        assert_eq!(i64::from(pic.top_poc), exp, "picture {}", k + 1);
        assert_eq!(pic.bottom_poc, pic.top_poc);
    }
}

/// 8.2.1.3 (POC type 2): 2*(FrameNumOffset+frame_num), -1 for non-reference pictures.
#[test]
fn poc_type_2_and_frame_num_wrap() {
    let cfg = SpsCfg {
        poc_type: 2,
        max_refs: 2,
        ..Default::default()
    };
    let mut v = vec![idr()];
    for k in 1..=20u32 {
        v.push(p(k % 16, 0));
    }
    let st = parse(&stream(&cfg, &v)).unwrap();
    for (k, pic) in st.pictures.iter().enumerate() {
        assert_eq!(pic.poc, 2 * k as i32);
    }
    // Sliding window (max_num_ref_frames 2) across the wrap: picture 17 (frame_num 1) sees
    // frame_num 0 (picture 16) and 15 (picture 15, FrameNumWrap -1).
    let p17 = &st.pictures[17];
    assert_eq!(dpb_pics(p17), vec![16, 15]);
    assert_eq!(
        p17.dpb.iter().map(|d| d.pic_num).collect::<Vec<_>>(),
        vec![0, -1]
    );
    assert_eq!(st.output_order, (0..21).collect::<Vec<_>>());
    assert_eq!(st.max_live, 3);
}

/// 8.2.5.4: long-term references through IDR long_term_reference_flag and MMCO 2, 3, 4, 6;
/// 8.2.4.2.1 and 8.2.4.3.2: long-term entries in the P list and modification by
/// long_term_pic_num; the V4L2 dpb[] entries of long-term references.
#[test]
fn long_term_references_and_mmco() {
    let cfg = SpsCfg {
        poc_type: 2,
        max_refs: 4,
        ..Default::default()
    };
    let mut v = vec![S {
        long_term_reference_flag: true,
        ..idr()
    }];
    v.push(S {
        mmco: vec![(4, 3, 0)],
        ..p(1, 0)
    }); // MaxLongTermFrameIdx 2
    v.push(S {
        mmco: vec![(3, 0, 1)],
        ..p(2, 0)
    }); // frame_num 1 -> LongTermFrameIdx 1
    v.push(S {
        mmco: vec![(6, 2, 0)],
        mods_l0: vec![(2, 1)],
        active: Some((3, 1)),
        ..p(3, 0)
    });
    v.push(S {
        mmco: vec![(2, 0, 0), (1, 1, 0)],
        ..p(4, 0)
    }); // drop lt 0 (IDR) and frame_num 2
    v.push(p(5, 0));
    v.push(S {
        mmco: vec![(4, 2, 0)],
        ..p(6, 0)
    }); // MaxLongTermFrameIdx 1: drops lt 2
    v.push(p(7, 0));
    let st = parse(&stream(&cfg, &v)).unwrap();
    let pics = &st.pictures;
    assert!(pics[0].long_term);
    assert_eq!(dpb(&pics[1]), vec![(0, true, 0)]);
    assert_eq!(list0(&st, 1), vec![0]);
    assert_eq!(dpb(&pics[2]), vec![(1, false, 2), (0, true, 0)]);
    // Picture 3: short-term frame_num 2, then long-term idx 0 (IDR) and 1 (picture 1); the
    // modification puts LongTermPicNum 1 first.
    assert_eq!(dpb_pics(&pics[3]), vec![2, 0, 1]);
    assert_eq!(list0(&st, 3), vec![1, 2, 0]);
    assert!(pics[3].long_term);
    assert_eq!(dpb_pics(&pics[4]), vec![2, 0, 1, 3]);
    assert_eq!(dpb_pics(&pics[5]), vec![4, 1, 3]);
    assert_eq!(
        dpb(&pics[5]),
        vec![(4, false, 8), (1, true, 2), (2, true, 6)]
    );
    assert_eq!(dpb_pics(&pics[6]), vec![5, 4, 1, 3]);
    assert_eq!(dpb_pics(&pics[7]), vec![6, 5, 4, 1]);
    // Lifetimes follow the dpb[] membership.
    assert_eq!(pics[0].last_use, 4);
    assert_eq!(pics[2].last_use, 4);
    assert_eq!(pics[3].last_use, 6);
    assert_eq!(pics[1].last_use, 7);

    // The V4L2 entries: LONG_TERM flag, frame_num = LongTermFrameIdx, pic_num = LongTermPicNum.
    let c = pics[5].v4l2_controls(&st, |i| 1000 + i as u64);
    let e = &c.decode_params.dpb;
    assert_eq!(e[0].reference_ts, 1004);
    assert_eq!(
        e[0].flags,
        b::V4L2_H264_DPB_ENTRY_FLAG_VALID | b::V4L2_H264_DPB_ENTRY_FLAG_ACTIVE
    );
    assert_eq!((e[0].frame_num, e[0].pic_num), (4, 4));
    assert_eq!(e[1].reference_ts, 1001);
    assert_ne!(e[1].flags & b::V4L2_H264_DPB_ENTRY_FLAG_LONG_TERM, 0);
    assert_eq!((e[1].frame_num, e[1].pic_num), (1, 1));
    assert_eq!(
        (e[2].frame_num, e[2].pic_num, e[2].reference_ts),
        (2, 2, 1003)
    );
    assert_eq!(e[3].flags, 0, "unused entries stay zero");
    assert_eq!(e[0].fields, b::V4L2_H264_FRAME_REF as u8);
}

/// 8.2.1 / 8.2.5.4.1 (MMCO 5): POC and frame_num reset, a new output period.
#[test]
fn mmco5_resets_poc_and_output_period() {
    let cfg = SpsCfg::default();
    let v = vec![
        idr(),
        p(1, 4),
        S {
            mmco: vec![(5, 0, 0)],
            ..p(2, 8)
        },
        p(1, 4),
        S {
            ty: 1,
            ref_idc: 0,
            frame_num: 2,
            lsb: 2,
            ..Default::default()
        },
    ];
    let st = parse(&stream(&cfg, &v)).unwrap();
    let pics = &st.pictures;
    assert!(pics[2].mmco5);
    assert_eq!(
        pics[2].top_poc, 8,
        "DECODE_PARAMS carries the POC before the reset"
    );
    assert_eq!(
        dpb(&pics[3]),
        vec![(0, false, 0)],
        "after MMCO 5: frame_num 0, POC 0"
    );
    assert_eq!(pics[3].poc, 4);
    assert_eq!(pics[4].poc, 2);
    assert_eq!(list0(&st, 4), vec![2]);
    assert_eq!(list1(&st, 4), vec![3]);
    assert_eq!(st.output_order, vec![0, 1, 2, 4, 3]);
    assert_eq!(pics[3].output_after, 4);
}

/// 8.2.4.2.3: B lists by POC, and the swap when RefPicList1 equals RefPicList0.
#[test]
fn b_lists_and_swap() {
    let cfg = SpsCfg::default();
    let b = |fr, lsb, active| S {
        ty: 1,
        ref_idc: 0,
        frame_num: fr,
        lsb,
        active,
        ..Default::default()
    };
    let v = vec![
        idr(),
        p(1, 8),
        p(2, 16),
        b(3, 4, Some((3, 3))),
        b(3, 20, Some((3, 3))),
    ];
    let st = parse(&stream(&cfg, &v)).unwrap();
    // POC 4: before = [0], after = [8, 16].
    assert_eq!(list0(&st, 3), vec![0, 1, 2]);
    assert_eq!(list1(&st, 3), vec![1, 2, 0]);
    // POC 20: everything before: list1 == list0 -> first two swapped.
    assert_eq!(list0(&st, 4), vec![2, 1, 0]);
    assert_eq!(list1(&st, 4), vec![1, 2, 0]);
    assert_eq!(st.output_order, vec![0, 3, 1, 2, 4]);
    let c = st.pictures[3].v4l2_controls(&st, |i| i as u64);
    assert_ne!(
        c.decode_params.flags & b::V4L2_H264_DECODE_PARAM_FLAG_BFRAME,
        0
    );
    let sp = &c.slice_params[0];
    assert_eq!(
        (
            sp.num_ref_idx_l0_active_minus1,
            sp.num_ref_idx_l1_active_minus1
        ),
        (2, 2)
    );
    let dpb_of =
        |r: &b::v4l2_h264_reference| c.decode_params.dpb[usize::from(r.index)].reference_ts;
    assert_eq!(
        sp.ref_pic_list1[..3].iter().map(dpb_of).collect::<Vec<_>>(),
        vec![1, 2, 0]
    );
    // The unused entries point at no dpb[] entry (dpb[0] is a real reference).
    for l in [&sp.ref_pic_list0, &sp.ref_pic_list1] {
        assert!(l[3..].iter().all(|r| r.index == 0xff && r.fields == 0));
    }
}

/// 8.2.4.3.1: modification by picture number, with and without frame_num wrap.
#[test]
fn short_term_list_modification() {
    let cfg = SpsCfg {
        poc_type: 2,
        ..Default::default()
    };
    let v = vec![
        idr(),
        p(1, 0),
        p(2, 0),
        // picNumNoWrap = 3 - 2 = 1, then 1 + 1 = 2: [1, 2, 0].
        S {
            mods_l0: vec![(0, 1), (1, 0)],
            active: Some((3, 1)),
            ..p(3, 0)
        },
    ];
    let st = parse(&stream(&cfg, &v)).unwrap();
    assert_eq!(list0(&st, 3), vec![1, 2, 0]);

    let cfg = SpsCfg {
        poc_type: 2,
        max_refs: 2,
        ..Default::default()
    };
    let mut v = vec![idr()];
    for k in 1..=16u32 {
        v.push(p(k % 16, 0));
    }
    // Current frame_num 1; refs frame_num 0 (PicNum 0) and 15 (PicNum -1). 1 - 2 = -1 wraps
    // to 15 (> CurrPicNum), PicNum -1: frame_num 15 first.
    v.push(S {
        mods_l0: vec![(0, 1)],
        active: Some((2, 1)),
        ..p(1, 0)
    });
    let st = parse(&stream(&cfg, &v)).unwrap();
    assert_eq!(list0(&st, 17), vec![15, 16]);
    // A modification naming a picture that is no reference is an error, not a panic.
    let mut bad = v.clone();
    bad[17].mods_l0 = vec![(0, 5)];
    let e = parse(&stream(&cfg, &bad)).unwrap_err();
    assert!(matches!(e, H264Error::Invalid(_)), "{e}");
}

/// 8.2.5.2: gaps in frame_num.
#[test]
fn frame_num_gaps() {
    let v = vec![
        idr(),
        S {
            mods_l0: vec![(0, 2)],
            ..p(3, 0)
        },
        p(4, 0),
    ];
    let e = parse(&stream(
        &SpsCfg {
            poc_type: 2,
            ..Default::default()
        },
        &v,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("frame_num jumps"), "{e}");
    // Allowed: frames 1 and 2 are inferred; picture 1 refers to the IDR (PicNum 0) only.
    let cfg = SpsCfg {
        poc_type: 2,
        gaps: true,
        ..Default::default()
    };
    let st = parse(&stream(&cfg, &v)).unwrap();
    assert_eq!(list0(&st, 1), vec![0]);
    assert_eq!(
        dpb_pics(&st.pictures[1]),
        vec![0],
        "inferred frames have no buffer: not in dpb[]"
    );
    assert_eq!(st.pictures[1].poc, 6);
    // Picture 2's default list starts with the real picture 1 (frame_num 3).
    assert_eq!(list0(&st, 2), vec![1]);
    // Using an inferred frame is refused.
    let v2 = vec![
        idr(),
        p(3, 0),
        S {
            mods_l0: vec![(0, 1)],
            ..p(4, 0)
        },
    ];
    let e = parse(&stream(&cfg, &v2)).unwrap_err();
    assert!(e.to_string().contains("frame_num gap"), "{e}");
}

#[test]
fn multi_slice_pictures_and_v4l2_slice_params() {
    let cfg = SpsCfg::default();
    let v = vec![
        idr(),
        S {
            first_mb: 6,
            ..idr()
        },
        p(1, 4),
        S {
            first_mb: 6,
            ..p(1, 4)
        },
        S {
            first_mb: 0,
            ..p(2, 8)
        },
    ];
    let st = parse(&stream(&cfg, &v)).unwrap();
    assert_eq!(st.pictures.len(), 3);
    assert_eq!(st.pictures[1].slices.len(), 2);
    let c = st.pictures[1].v4l2_controls(&st, |i| i as u64 * 10);
    assert_eq!(c.slice_params.len(), 2);
    assert_eq!(c.slice_params[1].first_mb_in_slice, 6);
    assert!(c.pred_weights.len() == 2 && c.pred_weights.iter().all(Option::is_none));
    assert_eq!(c.decode_params.flags, b::V4L2_H264_DECODE_PARAM_FLAG_PFRAME);
    assert_eq!(c.decode_params.pic_order_cnt_lsb, 4);
    assert_eq!(c.decode_params.pic_order_cnt_bit_size, 6);
    let i = st.pictures[0].v4l2_controls(&st, |i| i as u64);
    assert_eq!(
        i.decode_params.flags,
        b::V4L2_H264_DECODE_PARAM_FLAG_IDR_PIC
    );
    assert_eq!(i.decode_params.dec_ref_pic_marking_bit_size, 2);
    assert!(i
        .scaling_matrix
        .scaling_list_4x4
        .iter()
        .flatten()
        .all(|&x| x == 16));
    assert_eq!(
        i.sps.flags & b::V4L2_H264_SPS_FLAG_FRAME_MBS_ONLY,
        b::V4L2_H264_SPS_FLAG_FRAME_MBS_ONLY
    );
    // Each slice NAL unit starts with its header byte.
    assert_eq!(st.pictures[1].slices[1].nal()[0] & 0x1f, 1);
}

#[test]
fn refuses_interlaced_and_non_420() {
    let (mut out, _, _) = param_sets(&SpsCfg::default());
    out.clear();
    let mut sps = Sps {
        profile_idc: 100,
        level_idc: Level::L3,
        chroma_format_idc: 1,
        max_num_ref_frames: 1,
        pic_width_in_mbs_minus1: 3,
        pic_height_in_map_units_minus1: 1,
        frame_mbs_only_flag: false,
        mb_adaptive_frame_field_flag: true,
        ..Default::default()
    };
    Synthesizer::<Sps, _>::synthesize(3, &sps, &mut out, true).unwrap();
    let e = parse(&out).unwrap_err();
    assert!(
        matches!(e, H264Error::Unsupported(_)) && e.to_string().contains("interlaced"),
        "{e}"
    );
    sps.frame_mbs_only_flag = true;
    sps.mb_adaptive_frame_field_flag = false;
    sps.chroma_format_idc = 3;
    sps.profile_idc = 244;
    out.clear();
    Synthesizer::<Sps, _>::synthesize(3, &sps, &mut out, true).unwrap();
    let e = parse(&out).unwrap_err();
    assert!(e.to_string().contains("4:4:4"), "{e}");
}

/// Garbage, truncations and bit flips never panic and always give one line.
#[test]
fn fuzzish_inputs_never_panic() {
    let cfg = SpsCfg {
        poc_type: 0,
        ..Default::default()
    };
    let b = |fr, lsb| S {
        ty: 1,
        ref_idc: 0,
        frame_num: fr,
        lsb,
        ..Default::default()
    };
    let good = stream(
        &cfg,
        &[
            idr(),
            p(1, 8),
            b(2, 4),
            p(2, 16),
            S {
                mmco: vec![(1, 0, 0)],
                ..p(3, 24)
            },
        ],
    );
    assert!(parse(&good).is_ok());
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let check = |d: &[u8]| {
        if let Err(e) = parse(d) {
            let m = e.to_string();
            assert!(!m.contains('\n') && !m.is_empty(), "{m:?}");
        }
    };
    for cut in 0..good.len() {
        check(&good[..cut]);
    }
    for _ in 0..3000 {
        let mut d = good.clone();
        for _ in 0..(rnd() % 4 + 1) {
            let i = (rnd() as usize) % d.len();
            d[i] ^= 1 << (rnd() % 8);
        }
        check(&d);
    }
    for n in [1usize, 3, 4, 100, 5000] {
        let g: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
        check(&g);
        let mut with_sc = vec![0, 0, 0, 1];
        with_sc.extend(&g);
        check(&with_sc);
    }
    assert!(matches!(parse(&[]), Err(H264Error::NotH264(_))));
    assert!(matches!(
        parse(b"\x00\x00\x01"),
        Err(H264Error::Truncated(_)) | Err(H264Error::NotH264(_))
    ));
}
