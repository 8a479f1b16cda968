//! Annex-B byte stream: start codes, NAL units, emulation prevention.

/// One NAL unit of an Annex-B stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NalUnit<'a> {
    /// Offset of the first byte after the start code.
    pub offset: usize,
    /// The NAL unit, header byte first, without start code and trailing zero bytes.
    pub data: &'a [u8],
}

impl NalUnit<'_> {
    pub fn nal_unit_type(&self) -> u8 {
        self.data.first().map_or(0, |b| b & 0x1f)
    }

    pub fn nal_ref_idc(&self) -> u8 {
        self.data.first().map_or(0, |b| (b >> 5) & 3)
    }

    pub fn forbidden_zero_bit(&self) -> bool {
        self.data.first().is_some_and(|b| b & 0x80 != 0)
    }
}

/// Split an Annex-B stream at its 3-byte start codes (a 4-byte one is a zero byte plus a
/// 3-byte one). Returns the NAL units and the number of bytes before the first start code.
pub fn nal_units(data: &[u8]) -> (Vec<NalUnit<'_>>, usize) {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else if data[i + 2] > 1 {
            i += 3;
        } else {
            i += 1;
        }
    }
    let leading = starts.first().map_or(data.len(), |&s| s - 3);
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        // trailing_zero_8bits (and the zero_byte of a following 4-byte start code)
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        nals.push(NalUnit {
            offset: s,
            data: &data[s..end],
        });
    }
    (nals, leading)
}

/// The RBSP of a NAL unit payload: emulation_prevention_three_byte removed. Returns the bytes
/// and, for each removed byte, its offset in `nal`.
pub fn unescape(nal: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::with_capacity(nal.len());
    let mut removed = Vec::new();
    let mut zeros = 0;
    for (i, &byte) in nal.iter().enumerate() {
        if zeros >= 2 && byte == 3 {
            removed.push(i);
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    (out, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 9, 0,
        ];
        let (nals, lead) = nal_units(&s);
        assert_eq!(lead, 1);
        let d: Vec<&[u8]> = nals.iter().map(|n| n.data).collect();
        assert_eq!(d, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 9][..]]);
        assert_eq!(nals[0].offset, 4);
        assert_eq!(nals[2].nal_unit_type(), 5);
        assert_eq!(nals[2].nal_ref_idc(), 3);
    }

    #[test]
    fn no_start_code() {
        let (nals, lead) = nal_units(b"hello world, no start code here");
        assert!(nals.is_empty());
        assert_eq!(lead, 31);
    }

    #[test]
    fn unescapes() {
        let (r, removed) = unescape(&[0x65, 0, 0, 3, 1, 0, 0, 3, 0, 0, 3]);
        assert_eq!(r, vec![0x65, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(removed, vec![3, 7, 10]);
    }
}
