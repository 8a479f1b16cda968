#!/bin/bash
# Make the H.264 test streams, and their expectation files, reproducibly from Debian's ffmpeg and
# x264 (single-threaded, fixed parameters, synthetic testsrc2 input: byte-identical run to run).
#
#   scripts/make-streams.sh [--small|--big] OUTDIR
#
# --small: the 320x240 streams and the bad inputs (committed in userspace/tests/streams/);
# --big: the 1920x1080 stream (generated into build/streams by `make test`); default: both.
# Existing outputs are kept (delete a file to remake it), so a second run is fast.
#
# For every good stream NAME.h264 it writes, from ffmpeg's own parsers and decoder:
#   NAME.slices.txt  one line per slice from `-bsf:v trace_headers`: syntax elements and the bit
#                    sizes V4L2 wants (header, pic_order_cnt, dec_ref_pic_marking), MMCOs
#   NAME.frames.txt  from `ffmpeg -debug pict+mmco`: the short/long-term reference lists before
#                    each slice, then the slice's type, frame_num, POC and ref counts
#   NAME.order.txt   from `ffprobe -show_frames`: decode index and picture type in display order
#   NAME.framemd5.txt  ffmpeg's decode, one MD5 of the visible NV12 picture per frame in display
#                    order (`-f framemd5`): the ground truth the verifier checks every CAPTURE
#                    buffer's CPU view against (userspace/src/truth.rs)
set -euo pipefail

want_small=1 want_big=1
case "${1:-}" in
--small) want_big=0; shift ;;
--big) want_small=0; shift ;;
esac
[ $# -eq 1 ] || { echo "usage: $0 [--small|--big] OUTDIR" >&2; exit 2; }
out=$1
mkdir -p "$out"
for t in ffmpeg ffprobe x264; do
	command -v $t >/dev/null || { echo "make-streams: $t is not installed (make toolchain)" >&2; exit 1; }
done

# raw W H FRAMES: deterministic yuv420p frames on stdout.
raw() {
	ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i "testsrc2=size=$1x$2:rate=30" \
		-frames:v "$3" -pix_fmt "${4:-yuv420p}" -f rawvideo -
}

# enc NAME W H FRAMES [x264 options...]
enc() {
	local name=$1 w=$2 h=$3 n=$4
	shift 4
	[ -s "$out/$name.h264" ] && return 0
	raw "$w" "$h" "$n" | x264 --quiet --threads 1 --no-progress --input-res "${w}x$h" --fps 30 \
		"$@" -o "$out/$name.h264.tmp" - 2>/dev/null
	mv "$out/$name.h264.tmp" "$out/$name.h264"
}

# The slice headers, one line each (bit positions are in the RBSP, NAL header byte included).
slices() {
	ffmpeg -nostdin -hide_banner -i "$1" -c copy -bsf:v trace_headers -f null - 2>&1 |
		sed 's/^\[trace_headers @ [0-9a-fx]*\] //' | awk '
		function flush() {
			if (!ins) return
			printf "nut=%d ref=%d mb=%d type=%d pps=%d fn=%d idr=%d lsb=%d dbot=%d d0=%d d1=%d ovr=%d l0=%d l1=%d hdr=%d pocbits=%d drpmbits=%d mmco=%s\n",
				v["nal_unit_type"], v["nal_ref_idc"], v["first_mb_in_slice"], v["slice_type"],
				v["pic_parameter_set_id"], v["frame_num"], v["idr_pic_id"], v["pic_order_cnt_lsb"],
				v["delta_pic_order_cnt_bottom"], v["delta_pic_order_cnt[0]"], v["delta_pic_order_cnt[1]"],
				v["num_ref_idx_active_override_flag"], v["num_ref_idx_l0_active_minus1"], v["num_ref_idx_l1_active_minus1"],
				hend, pend - pstart, dend - dstart, (mmco == "" ? "-" : mmco)
			ins = 0
		}
		/^Slice Header/ { flush(); ins = 1; delete v; hend = 0; pstart = pend = dstart = dend = 0;
			pin = 0; din = 0; mmco = ""; next }
		!/^[0-9]/ { flush(); next }
		ins {
			pos = $1; name = $2; bits = $3; val = $5; end = pos + length(bits)
			if (name == "cabac_alignment_one_bit") next
			v[name] = val
			if (end > hend) hend = end
			if (name ~ /^(pic_order_cnt_lsb|delta_pic_order_cnt)/) {
				if (!pin) { pstart = pos; pin = 1 }
				pend = end
			}
			if (name ~ /^(no_output_of_prior_pics_flag|adaptive_ref_pic_marking_mode_flag)$/) { dstart = pos; din = 1 }
			if (name ~ /^(cabac_init_idc|slice_qp_delta)$/) din = 0
			if (din) {
				dend = end
				if (name == "memory_management_control_operation" && val != 0) mmco = mmco (mmco == "" ? "" : ",") val
				else if (name != "memory_management_control_operation" && mmco != "" && name !~ /flag$/) mmco = mmco ":" val
			}
		}
		END { flush() }'
}

# The decoder's reference state and POC per slice.
frames() {
	ffmpeg -nostdin -hide_banner -threads 1 -debug pict+mmco -i "$1" -f null - 2>&1 |
		tr '\r' '\n' | grep -o '\[h264 @ [0-9a-fx]*\] .*' >"$out/.frames.log"
	# avformat_find_stream_info() decodes the first frames with a decoder of its own: keep the
	# lines of the decoder that printed the last slice.
	local dec
	dec=$(grep ' slice:' "$out/.frames.log" | tail -n 1 | cut -d' ' -f3)
	grep -F "[h264 @ $dec " "$out/.frames.log" | sed 's/^\[h264 @ [0-9a-fx]*\] //' | awk '
		/^short term list:/ { mode = "st"; st = ""; next }
		/^long term list:/ { mode = "lt"; lt = ""; next }
		/^[0-9]+ fn:/ {
			split($3, p, ":")
			e = $2 ":" p[2]
			if (mode == "st") st = st (st == "" ? "" : ",") e
			else if (mode == "lt") lt = lt (lt == "" ? "" : ",") $1 "=" e
			next
		}
		/^slice:/ {
			mode = ""
			split($3, mb, ":")
			idr = ($0 ~ / IDR /) ? 1 : 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^frame:/) { split($i, f, ":"); fn = f[2] }
				if ($i ~ /^poc:/) { split(substr($i, 5), pc, "/") }
				if ($i ~ /^ref:/) { split(substr($i, 5), rc, "/") }
			}
			printf "mb=%d type=%s idr=%d fn=%d top=%d bot=%d nref0=%d nref1=%d st=%s lt=%s\n",
				mb[2], $4, idr, fn, pc[1], pc[2], rc[1], rc[2], (st == "" ? "-" : st), (lt == "" ? "-" : lt)
			next
		}
		{ mode = "" }'
	rm -f "$out/.frames.log"
}

order() {
	ffprobe -hide_banner -loglevel error -threads 1 -show_entries frame=coded_picture_number,pict_type \
		-of csv=p=0 "$1" | awk -F, '$1 ~ /^[IPB]$/ { print $2, $1 }'
}

# Every frame ffmpeg decodes, none dropped or repeated, as NV12 (what V4L2 decoders write).
framemd5() {
	ffmpeg -nostdin -hide_banner -loglevel error -threads 1 -i "$1" -fps_mode passthrough \
		-pix_fmt nv12 -fflags +bitexact -flags:v +bitexact -f framemd5 -
}

expect() {
	local s=$out/$1.h264
	for kind in slices frames order framemd5; do
		[ -s "$out/$1.$kind.txt" ] && continue
		$kind "$s" >"$out/$1.$kind.txt.tmp"
		mv "$out/$1.$kind.txt.tmp" "$out/$1.$kind.txt"
	done
}

if [ $want_small = 1 ]; then
	# Baseline: no B, CAVLC, POC type 2 (x264 picks it without B-frames); two IDR periods.
	enc baseline-320x240 320 240 60 --profile baseline --preset medium --keyint 30 --min-keyint 30 \
		--no-scenecut --ref 3
	# High: B-frames with b-pyramid (reference Bs, MMCO 1 from x264), weighted P prediction
	# (duplicated references via ref_pic_list_modification), CABAC, 8x8 transform, POC type 0.
	enc high-bpyramid-320x240 320 240 90 --profile high --preset medium --bframes 3 --b-pyramid normal \
		--ref 4 --weightp 2 --keyint 45 --min-keyint 45 --no-scenecut
	# Main: four slices per frame, B-frames without pyramid, CABAC.
	enc main-slices-320x240 320 240 30 --profile main --preset fast --slices 4 --bframes 2 \
		--b-pyramid none --ref 2 --keyint 30 --no-scenecut
	# High with the JVT scaling matrices (SPS scaling lists) and 8x8 transform.
	enc high-cqm-320x240 320 240 30 --profile high --preset fast --cqm jvt --bframes 1 --keyint 30 \
		--no-scenecut
	for s in baseline-320x240 high-bpyramid-320x240 main-slices-320x240 high-cqm-320x240; do
		expect $s
	done

	# Bad inputs.
	[ -e "$out/bad-empty.h264" ] || : >"$out/bad-empty.h264"
	[ -s "$out/bad-not-h264.png" ] || ffmpeg -nostdin -hide_banner -loglevel error -f lavfi \
		-i testsrc2=size=64x48 -frames:v 1 -bitexact "$out/bad-not-h264.png"
	[ -s "$out/bad-mp4-container.mp4" ] || ffmpeg -nostdin -hide_banner -loglevel error \
		-i "$out/baseline-320x240.h264" -frames:v 5 -c copy -bitexact -f mp4 "$out/bad-mp4-container.mp4"
	if [ ! -s "$out/bad-truncated.h264" ]; then
		# Cut 3 bytes into the slice header of the 8th slice NAL unit.
		src=$out/high-bpyramid-320x240.h264
		off=$(grep -obUaP '\x00\x00\x01[\x01\x21\x41\x61\x05\x25\x45\x65]' "$src" | sed -n 8p | cut -d: -f1)
		head -c $((off + 3 + 3)) "$src" >"$out/bad-truncated.h264"
	fi
	[ -s "$out/bad-high422.h264" ] || {
		raw 320 240 5 yuv422p | x264 --quiet --threads 1 --no-progress --input-res 320x240 --fps 30 \
			--input-csp i422 --output-csp i422 --profile high422 -o "$out/bad-high422.h264" - 2>/dev/null
	}
	[ -s "$out/bad-high10.h264" ] || {
		raw 320 240 5 | x264 --quiet --threads 1 --no-progress --input-res 320x240 --fps 30 \
			--output-depth 10 --profile high10 -o "$out/bad-high10.h264" - 2>/dev/null
	}
	enc bad-interlaced 320 240 6 --tff --profile high
fi

if [ $want_big = 1 ]; then
	enc high-1920x1080 1920 1080 30 --profile high --preset veryfast --bframes 3 --b-pyramid normal \
		--ref 3 --keyint 30 --no-scenecut
	expect high-1920x1080
fi
