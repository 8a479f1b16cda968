# v4l2-compliance (Debian's v4l-utils) with streaming, without and with the module attached:
# the pass and fail counts must be the same.
# shellcheck shell=bash
TEST_TIMEOUT[compliance.vivid]=600
TEST_TIMEOUT[compliance.vim2m]=600

# compliance_counts NODE: "succeeded failed" from v4l2-compliance's Total line.
compliance_counts() {
	local out
	out=$(v4l2-compliance -d "$1" -s 10 2>&1)
	echo "$out" >>/tmp/compliance.log
	echo "$out" | sed -n 's/^Total for .*: \([0-9]*\), Succeeded: \([0-9]*\), Failed: \([0-9]*\), Warnings: \([0-9]*\).*/\2 \3/p' | tail -n 1
}

compliance_compare() { # DRIVER NAME-PART
	local node without with
	node=$("$QTEST" find-node --driver "$1" --name "$2") || fail "no $1 node"
	: >/tmp/compliance.log
	without=$(compliance_counts "$node")
	[ -n "$without" ] || { tail -n 30 /tmp/compliance.log; fail "v4l2-compliance printed no totals"; }
	insmod_vb2r attach="$node" || fail "insmod attach=$node"
	with=$(compliance_counts "$node")
	rmmod vb2_resv
	echo "$1 $node: without module (succeeded failed): $without; with module attached: $with"
	grep -E '^(Total|.*fail)' /tmp/compliance.log | sort | uniq -c | head -n 40
	[ "$without" = "$with" ] || fail "counts differ with the module attached"
}

t_compliance_vivid() {
	load_drivers vivid || fail "modprobe vivid"
	compliance_compare vivid vid-cap
}

t_compliance_vim2m() {
	modprobe vim2m || fail "modprobe vim2m"
	compliance_compare vim2m vim2m
}
