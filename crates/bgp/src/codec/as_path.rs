//! AS_PATH (RFC 4271 §4.3, §5.1.2) in its 2-octet and 4-octet encodings, and the reconstruction
//! of the real path from AS_PATH + AS4_PATH received from a 2-octet speaker (RFC 6793 §4.2.3).

use starling_model::AsNumber;

use super::reader::Reader;

/// Segment types (RFC 4271 §4.3, RFC 5065 §3 for the confederation types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SegmentKind {
    Set,
    Sequence,
    ConfederationSequence,
    ConfederationSet,
}

impl SegmentKind {
    fn code(self) -> u8 {
        match self {
            SegmentKind::Set => 1,
            SegmentKind::Sequence => 2,
            SegmentKind::ConfederationSequence => 3,
            SegmentKind::ConfederationSet => 4,
        }
    }

    fn from_code(code: u8) -> Option<SegmentKind> {
        match code {
            1 => Some(SegmentKind::Set),
            2 => Some(SegmentKind::Sequence),
            3 => Some(SegmentKind::ConfederationSequence),
            4 => Some(SegmentKind::ConfederationSet),
            _ => None,
        }
    }
}

/// One AS_PATH segment; never empty when decoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AsPathSegment {
    pub kind: SegmentKind,
    pub asns: Vec<AsNumber>,
}

/// An AS path: the ordered list of segments, always held with 4-octet AS numbers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AsPath {
    pub segments: Vec<AsPathSegment>,
}

impl AsPath {
    /// A path made of one AS_SEQUENCE (empty path when `asns` is empty).
    pub fn from_sequence(asns: impl IntoIterator<Item = AsNumber>) -> AsPath {
        let asns: Vec<AsNumber> = asns.into_iter().collect();
        if asns.is_empty() {
            return AsPath::default();
        }
        AsPath {
            segments: vec![AsPathSegment {
                kind: SegmentKind::Sequence,
                asns,
            }],
        }
    }

    /// Path length for the decision process (RFC 4271 §9.1.2.2 a): an AS_SET counts as one,
    /// confederation segments count zero (RFC 5065 §5.3).
    pub fn length(&self) -> usize {
        self.segments
            .iter()
            .map(|segment| match segment.kind {
                SegmentKind::Sequence => segment.asns.len(),
                SegmentKind::Set => 1,
                SegmentKind::ConfederationSequence | SegmentKind::ConfederationSet => 0,
            })
            .sum()
    }

    /// The first AS of the path (the neighbouring AS) when the path starts with a sequence.
    pub fn first_asn(&self) -> Option<AsNumber> {
        match self.segments.first() {
            Some(segment) if segment.kind == SegmentKind::Sequence => segment.asns.first().copied(),
            _ => None,
        }
    }

    /// Whether `asn` appears anywhere in the path (loop detection).
    pub fn contains(&self, asn: AsNumber) -> bool {
        self.segments
            .iter()
            .any(|segment| segment.asns.contains(&asn))
    }

    /// Prepends `asn` as the new leftmost AS, as a speaker does when sending to eBGP.
    pub fn prepend(&mut self, asn: AsNumber) {
        match self.segments.first_mut() {
            Some(segment) if segment.kind == SegmentKind::Sequence && segment.asns.len() < 255 => {
                segment.asns.insert(0, asn)
            }
            _ => self.segments.insert(
                0,
                AsPathSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// Whether any AS needs 4 octets (then a 2-octet peer also gets AS4_PATH).
    pub fn needs_four_octets(&self) -> bool {
        self.segments
            .iter()
            .any(|segment| segment.asns.iter().any(|asn| !asn.is_two_octet()))
    }

    /// Decodes segments with 2- or 4-octet AS numbers; `None` when malformed (RFC 7606 §7.2:
    /// unknown segment type, zero-length segment or a segment overrunning the attribute).
    pub(crate) fn decode(value: &[u8], four_octet: bool) -> Option<AsPath> {
        let mut reader = Reader::new(value);
        let mut segments = Vec::new();
        while !reader.is_empty() {
            let kind = SegmentKind::from_code(reader.u8()?)?;
            let count = reader.u8()?;
            if count == 0 {
                return None;
            }
            let mut asns = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                let asn = if four_octet {
                    reader.u32()?
                } else {
                    u32::from(reader.u16()?)
                };
                asns.push(AsNumber(asn));
            }
            segments.push(AsPathSegment { kind, asns });
        }
        Some(AsPath { segments })
    }

    /// Encodes with 4-octet AS numbers, or 2-octet ones with AS_TRANS substituted
    /// (RFC 6793 §4.2.2). Segments longer than 255 are split.
    pub(crate) fn encode(&self, four_octet: bool, out: &mut Vec<u8>) {
        for segment in &self.segments {
            for chunk in segment.asns.chunks(255) {
                out.push(segment.kind.code());
                out.push(chunk.len() as u8);
                for asn in chunk {
                    if four_octet {
                        out.extend_from_slice(&asn.0.to_be_bytes());
                    } else {
                        let two = u16::try_from(asn.0).unwrap_or(AsNumber::TRANS.0 as u16);
                        out.extend_from_slice(&two.to_be_bytes());
                    }
                }
            }
        }
    }

    /// The path without confederation segments, which AS4_PATH must not carry (RFC 6793 §4.2.2).
    pub(crate) fn without_confederation_segments(&self) -> AsPath {
        AsPath {
            segments: self
                .segments
                .iter()
                .filter(|segment| matches!(segment.kind, SegmentKind::Sequence | SegmentKind::Set))
                .cloned()
                .collect(),
        }
    }

    /// RFC 6793 §4.2.3: the real path from a 2-octet speaker's AS_PATH and AS4_PATH. When
    /// AS_PATH is shorter than AS4_PATH the AS4_PATH is ignored; otherwise the leading ASes of
    /// AS_PATH that AS4_PATH lacks are kept and AS4_PATH follows.
    pub(crate) fn merge_as4(as_path: &AsPath, as4_path: &AsPath) -> AsPath {
        let as_path_count = as_path.length();
        let as4_count = as4_path.length();
        if as_path_count < as4_count {
            return as_path.clone();
        }
        let mut keep = as_path_count - as4_count;
        let mut segments: Vec<AsPathSegment> = Vec::new();
        for segment in &as_path.segments {
            if keep == 0 {
                // Confederation segments ahead of the point where AS4_PATH starts stay.
                if !matches!(
                    segment.kind,
                    SegmentKind::ConfederationSequence | SegmentKind::ConfederationSet
                ) {
                    break;
                }
            }
            match segment.kind {
                SegmentKind::Sequence => {
                    let take = keep.min(segment.asns.len());
                    if take > 0 {
                        segments.push(AsPathSegment {
                            kind: SegmentKind::Sequence,
                            asns: segment.asns[..take].to_vec(),
                        });
                    }
                    keep -= take;
                }
                SegmentKind::Set => {
                    if keep > 0 {
                        segments.push(segment.clone());
                        keep -= 1;
                    }
                }
                SegmentKind::ConfederationSequence | SegmentKind::ConfederationSet => {
                    segments.push(segment.clone())
                }
            }
        }
        for segment in &as4_path.segments {
            match segments.last_mut() {
                Some(last)
                    if last.kind == SegmentKind::Sequence
                        && segment.kind == SegmentKind::Sequence =>
                {
                    last.asns.extend_from_slice(&segment.asns)
                }
                _ => segments.push(segment.clone()),
            }
        }
        AsPath { segments }
    }
}

impl std::fmt::Display for AsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for segment in &self.segments {
            let (open, close) = match segment.kind {
                SegmentKind::Sequence => ("", ""),
                SegmentKind::Set => ("{", "}"),
                SegmentKind::ConfederationSequence => ("(", ")"),
                SegmentKind::ConfederationSet => ("[", "]"),
            };
            if !first {
                write!(f, " ")?;
            }
            first = false;
            write!(f, "{open}")?;
            let names: Vec<String> = segment.asns.iter().map(|asn| asn.to_string()).collect();
            write!(f, "{}{close}", names.join(" "))?;
        }
        Ok(())
    }
}
