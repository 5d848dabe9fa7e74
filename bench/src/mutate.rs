//! Mutations of valid DER messages: what the parser fuzz tests (`protocols/tests/fuzz.rs`) and
//! the daemon fuzzer (`src/bin/fuzz.rs`) feed to pkid.
//!
//! ```text
//!  seed (valid DER) ──parse TLV tree──▶ tree edits (wrap, unwrap, drop, duplicate, retag,
//!                                        content bit flips) ──re-encode, lengths fixed──▶
//!                   ──▶ byte edits (length-field rewrites, bit flips, truncation, inserts) ──▶ input
//! ```
//!
//! Random bytes almost never get past a DER parser's first tag, so every input here starts from
//! a valid message. Tree edits re-encode with correct lengths, so a change deep inside (a
//! CertID's serial, a nonce's OCTET STRING) reaches the deep parsers; byte edits then break the
//! framing itself (non-minimal, indefinite, overlong and off-by-one lengths).
//!
//! The choices are drawn through [`arbitrary::Unstructured`] from bytes of a seeded
//! [`SplitMix64`], so a run is reproducible from its seed, and the same [`Mutation`]s can be
//! driven by a coverage-guided engine's bytes later. This file uses only `std` and `arbitrary`:
//! the protocols crate's tests include it by path, so it must not reach into the bench crate.

use arbitrary::{Arbitrary, Unstructured};

/// Most mutations stacked on one seed: more than a few and nearly every input fails at the
/// outermost tag, which the first mutations already cover.
pub const MAX_STACKED: u8 = 4;

/// Random bytes drawn per input to choose its mutations; 256 is ample for [`MAX_STACKED`]
/// mutations with their inserted bytes (an exhausted [`Unstructured`] yields zeros, not errors).
const CHOICE_BYTES: usize = 256;

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, well-known generator whose output for a
/// seed never changes, which keeps a failing fuzz iteration reproducible from its seed.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0); the slight modulo bias does not matter here.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// One edit. Node indexes count TLVs in pre-order and wrap around, and byte offsets wrap around
/// the input, so every value names something that exists.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Wrap a TLV in a SEQUENCE (one nesting level more).
    Wrap {
        /// Which TLV.
        node: usize,
    },
    /// Replace a constructed TLV by its children (one nesting level less).
    Unwrap {
        /// Which TLV.
        node: usize,
    },
    /// Remove a TLV.
    Drop {
        /// Which TLV.
        node: usize,
    },
    /// Repeat a TLV right after itself.
    Duplicate {
        /// Which TLV.
        node: usize,
    },
    /// Give a TLV another one-byte identifier (class, constructed bit and number all change).
    Retag {
        /// Which TLV.
        node: usize,
        /// The new identifier octet.
        tag: u8,
    },
    /// Flip one bit of a primitive TLV's contents.
    FlipContentBit {
        /// Which TLV.
        node: usize,
        /// Which bit of its contents.
        bit: usize,
    },
    /// Replace a primitive TLV's contents by an edge value.
    EdgeContent {
        /// Which TLV.
        node: usize,
        /// Which edge value.
        edge: EdgeValue,
    },
    /// Rewrite a TLV's length field in the encoded bytes (the contents stay).
    Length {
        /// Which TLV.
        node: usize,
        /// How.
        change: LengthChange,
    },
    /// Flip one bit anywhere.
    FlipBit {
        /// Bit offset in the input.
        bit: usize,
    },
    /// Set one byte anywhere.
    SetByte {
        /// Byte offset.
        at: usize,
        /// Its new value.
        value: u8,
    },
    /// Cut the input short.
    Truncate {
        /// New length.
        at: usize,
    },
    /// Insert a few bytes.
    Insert {
        /// Byte offset.
        at: usize,
        /// The bytes (at most 16 are used).
        bytes: Vec<u8>,
    },
    /// Remove a few bytes.
    Delete {
        /// Byte offset.
        at: usize,
        /// How many (at most 16).
        len: u8,
    },
}

/// Contents that parsers tend to get wrong.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeValue {
    /// No contents at all.
    Empty,
    /// A single zero octet (INTEGER 0, BOOLEAN FALSE).
    Zero,
    /// A non-minimal INTEGER (leading zero before a positive octet).
    LeadingZero,
    /// A negative INTEGER.
    Negative,
    /// 64 octets of 0xFF (oversized INTEGER, serial or nonce).
    Long,
    /// A BIT STRING / TIME-like value with a bad first octet.
    BadFirstOctet,
}

/// Ways to break a length field.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthChange {
    /// One more than the contents.
    PlusOne,
    /// One less than the contents.
    MinusOne,
    /// Zero.
    Zero,
    /// BER indefinite length (0x80), forbidden in DER.
    Indefinite,
    /// The right length in non-minimal long form (0x82 0x00 0xNN).
    NonMinimal,
    /// 0x84 0xFF 0xFF 0xFF 0xFF: about 4 GiB.
    Huge,
    /// 0x89 followed by nine length octets: more than any parser's integer.
    TooManyOctets,
}

impl EdgeValue {
    fn bytes(self) -> Vec<u8> {
        match self {
            Self::Empty => Vec::new(),
            Self::Zero => vec![0],
            Self::LeadingZero => vec![0, 1],
            Self::Negative => vec![0x80, 1],
            Self::Long => vec![0xFF; 64],
            Self::BadFirstOctet => vec![0x08, 0xFF],
        }
    }
}

/// A TLV as parsed from the seed.
#[derive(Clone, Debug)]
struct Tlv {
    /// Identifier octets (one, or more for high tag numbers).
    ident: Vec<u8>,
    body: Body,
}

#[derive(Clone, Debug)]
enum Body {
    Primitive(Vec<u8>),
    Constructed(Vec<Tlv>),
}

/// Nesting depth beyond which constructed contents are kept as opaque bytes (seeds are
/// shallow; this only bounds recursion on already-mutated input).
const MAX_DEPTH: usize = 32;

fn parse_header(input: &[u8]) -> Option<(Vec<u8>, usize, usize)> {
    let first = *input.first()?;
    let mut pos = 1;
    if first & 0x1F == 0x1F {
        loop {
            let b = *input.get(pos)?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
            if pos > 6 {
                return None;
            }
        }
    }
    let ident = input[..pos].to_vec();
    let (len, octets) = parse_length(input.get(pos..)?)?;
    pos += octets;
    Some((ident, pos, len))
}

/// A definite DER/BER length at the start of `input`: the length and how many octets encode it.
fn parse_length(input: &[u8]) -> Option<(usize, usize)> {
    let l = *input.first()?;
    if l < 0x80 {
        return Some((usize::from(l), 1));
    }
    let n = usize::from(l & 0x7F);
    if n == 0 || n > 4 {
        return None;
    }
    let len = input
        .get(1..=n)?
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((len, 1 + n))
}

fn parse_list(mut input: &[u8], depth: usize) -> Option<Vec<Tlv>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (ident, header, len) = parse_header(input)?;
        let contents = input.get(header..header.checked_add(len)?)?;
        let body = if ident[0] & 0x20 != 0 && depth < MAX_DEPTH {
            Body::Constructed(parse_list(contents, depth + 1)?)
        } else {
            Body::Primitive(contents.to_vec())
        };
        out.push(Tlv { ident, body });
        input = &input[header + len..];
    }
    Some(out)
}

fn encode_length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let octets = len.to_be_bytes();
        let skip = octets.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (octets.len() - skip) as u8);
        out.extend_from_slice(&octets[skip..]);
    }
}

/// Encodes `list`; `headers` receives, per TLV in pre-order, the offset of its length field.
fn encode_list(list: &[Tlv], out: &mut Vec<u8>, headers: &mut Vec<usize>) {
    for tlv in list {
        out.extend_from_slice(&tlv.ident);
        headers.push(out.len());
        let contents = match &tlv.body {
            Body::Primitive(bytes) => bytes.clone(),
            Body::Constructed(children) => {
                let mut inner = Vec::new();
                let mut inner_headers = Vec::new();
                encode_list(children, &mut inner, &mut inner_headers);
                let base = out.len() + length_octets(inner.len());
                headers.extend(inner_headers.into_iter().map(|h| h + base));
                inner
            }
        };
        encode_length(contents.len(), out);
        out.extend_from_slice(&contents);
    }
}

fn length_octets(len: usize) -> usize {
    let mut v = Vec::new();
    encode_length(len, &mut v);
    v.len()
}

fn count(list: &[Tlv]) -> usize {
    list.iter()
        .map(|t| {
            1 + match &t.body {
                Body::Constructed(c) => count(c),
                Body::Primitive(_) => 0,
            }
        })
        .sum()
}

/// Applies `edit` to the `index`-th TLV in pre-order, giving it the list that holds the TLV
/// and the TLV's position in it. Returns false when the index was not reached.
fn with_node(
    list: &mut Vec<Tlv>,
    index: &mut usize,
    edit: &mut dyn FnMut(&mut Vec<Tlv>, usize),
) -> bool {
    for i in 0..list.len() {
        if *index == 0 {
            edit(list, i);
            return true;
        }
        *index -= 1;
        if let Body::Constructed(children) = &mut list[i].body {
            if with_node(children, index, edit) {
                return true;
            }
        }
    }
    false
}

fn edit_tree(tree: &mut Vec<Tlv>, m: &Mutation) {
    let nodes = count(tree);
    if nodes == 0 {
        return;
    }
    let node = match m {
        Mutation::Wrap { node }
        | Mutation::Unwrap { node }
        | Mutation::Drop { node }
        | Mutation::Duplicate { node }
        | Mutation::Retag { node, .. }
        | Mutation::FlipContentBit { node, .. }
        | Mutation::EdgeContent { node, .. } => node % nodes,
        _ => return,
    };
    let mut index = node;
    with_node(tree, &mut index, &mut |list, i| match m {
        Mutation::Wrap { .. } => {
            let inner = list[i].clone();
            list[i] = Tlv {
                ident: vec![0x30],
                body: Body::Constructed(vec![inner]),
            };
        }
        Mutation::Unwrap { .. } => {
            if let Body::Constructed(children) = list[i].body.clone() {
                list.splice(i..=i, children);
            }
        }
        Mutation::Drop { .. } => {
            list.remove(i);
        }
        Mutation::Duplicate { .. } => {
            let copy = list[i].clone();
            list.insert(i, copy);
        }
        Mutation::Retag { tag, .. } => {
            // A high-tag-number form (0x1F) needs continuation octets; keep it one octet.
            list[i].ident = vec![if tag & 0x1F == 0x1F { tag & !1 } else { *tag }];
        }
        Mutation::FlipContentBit { bit, .. } => {
            if let Body::Primitive(bytes) = &mut list[i].body {
                if !bytes.is_empty() {
                    let bit = bit % (bytes.len() * 8);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
            }
        }
        Mutation::EdgeContent { edge, .. } => {
            if let Body::Primitive(bytes) = &mut list[i].body {
                *bytes = edge.bytes();
            }
        }
        _ => {}
    });
}

fn edit_bytes(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit { bit } if len > 0 => {
            let bit = bit % (len * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        Mutation::SetByte { at, value } if len > 0 => bytes[at % len] = *value,
        Mutation::Truncate { at } => bytes.truncate(at % (len + 1)),
        Mutation::Insert { at, bytes: extra } => {
            let at = at % (len + 1);
            let extra = &extra[..extra.len().min(16)];
            bytes.splice(at..at, extra.iter().copied());
        }
        Mutation::Delete { at, len: n } if len > 0 => {
            let at = at % len;
            let end = (at + usize::from(*n % 17)).min(len);
            bytes.drain(at..end);
        }
        _ => {}
    }
}

/// Rewrites the length field of the `node`-th TLV of `bytes` (re-parsed, so earlier edits
/// count). Nothing happens when `bytes` no longer parses as DER.
fn edit_length(bytes: &mut Vec<u8>, node: usize, change: LengthChange) {
    let Some(tree) = parse_list(bytes, 0) else {
        return;
    };
    let mut encoded = Vec::new();
    let mut headers = Vec::new();
    encode_list(&tree, &mut encoded, &mut headers);
    if encoded != *bytes || headers.is_empty() {
        return;
    }
    let at = headers[node % headers.len()];
    let Some((old, old_field)) = parse_length(&bytes[at..]) else {
        return;
    };
    let new_field = match change {
        LengthChange::PlusOne => field(old + 1),
        LengthChange::MinusOne => field(old.saturating_sub(1)),
        LengthChange::Zero => vec![0],
        LengthChange::Indefinite => vec![0x80],
        LengthChange::NonMinimal => vec![0x82, (old >> 8) as u8, old as u8],
        LengthChange::Huge => vec![0x84, 0xFF, 0xFF, 0xFF, 0xFF],
        LengthChange::TooManyOctets => {
            let mut v = vec![0x89];
            v.extend_from_slice(&[0; 8]);
            v.push(old as u8);
            v
        }
    };
    bytes.splice(at..at + old_field, new_field);
}

fn field(len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    encode_length(len, &mut v);
    v
}

/// Applies `mutations` to `seed` in order. Tree edits are skipped when the input no longer
/// parses as DER (an earlier byte edit broke it); byte edits always apply.
pub fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for m in mutations {
        match m {
            Mutation::Length { node, change } => edit_length(&mut bytes, *node, *change),
            Mutation::FlipBit { .. }
            | Mutation::SetByte { .. }
            | Mutation::Truncate { .. }
            | Mutation::Insert { .. }
            | Mutation::Delete { .. } => edit_bytes(&mut bytes, m),
            Mutation::Wrap { .. }
            | Mutation::Unwrap { .. }
            | Mutation::Drop { .. }
            | Mutation::Duplicate { .. }
            | Mutation::Retag { .. }
            | Mutation::FlipContentBit { .. }
            | Mutation::EdgeContent { .. } => {
                if let Some(mut tree) = parse_list(&bytes, 0) {
                    edit_tree(&mut tree, m);
                    bytes.clear();
                    encode_list(&tree, &mut bytes, &mut Vec::new());
                }
            }
        }
    }
    bytes
}

/// Draws 1 to [`MAX_STACKED`] mutations from `u`.
pub fn draw(u: &mut Unstructured<'_>) -> Vec<Mutation> {
    let n = 1 + u.int_in_range(0..=MAX_STACKED - 1).unwrap_or(0);
    (0..n).filter_map(|_| Mutation::arbitrary(u).ok()).collect()
}

/// One fuzz input: a seed chosen from `corpus` by `rng`, and the mutations applied to it.
#[derive(Clone, Debug)]
pub struct Case {
    /// Index of the seed in the corpus.
    pub seed: usize,
    /// The edits, in order.
    pub mutations: Vec<Mutation>,
    /// The resulting bytes.
    pub input: Vec<u8>,
}

/// The next fuzz input from `corpus` (which must not be empty).
pub fn next_case(corpus: &[Vec<u8>], rng: &mut SplitMix64) -> Case {
    let seed = rng.below(corpus.len());
    let choices = rng.bytes(CHOICE_BYTES);
    let mutations = draw(&mut Unstructured::new(&choices));
    let input = apply(&corpus[seed], &mutations);
    Case {
        seed,
        mutations,
        input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SEQUENCE { INTEGER 1, SEQUENCE { OCTET STRING 'ab' } }
    const SAMPLE: &[u8] = &[
        0x30, 0x09, 0x02, 0x01, 0x01, 0x30, 0x04, 0x04, 0x02, b'a', b'b',
    ];

    #[test]
    fn the_tree_re_encodes_to_the_seed() {
        assert_eq!(apply(SAMPLE, &[]), SAMPLE);
        let tree = parse_list(SAMPLE, 0).expect("parses");
        assert_eq!(count(&tree), 4);
    }

    #[test]
    fn wrapping_fixes_the_outer_lengths() {
        let out = apply(SAMPLE, &[Mutation::Wrap { node: 3 }]);
        assert_eq!(
            out,
            [0x30, 0x0B, 0x02, 0x01, 0x01, 0x30, 0x06, 0x30, 0x04, 0x04, 0x02, b'a', b'b']
        );
        let back = apply(&out, &[Mutation::Unwrap { node: 3 }]);
        assert_eq!(back, SAMPLE);
    }

    #[test]
    fn length_changes_touch_only_the_chosen_field() {
        let out = apply(
            SAMPLE,
            &[Mutation::Length {
                node: 2,
                change: LengthChange::NonMinimal,
            }],
        );
        assert_eq!(
            out,
            [0x30, 0x09, 0x02, 0x01, 0x01, 0x30, 0x82, 0x00, 0x04, 0x04, 0x02, b'a', b'b']
        );
        let out = apply(
            SAMPLE,
            &[Mutation::Length {
                node: 0,
                change: LengthChange::Indefinite,
            }],
        );
        assert_eq!(out[1], 0x80);
        assert_eq!(out.len(), SAMPLE.len());
    }

    #[test]
    fn a_seed_gives_the_same_cases_every_time() {
        let corpus = vec![SAMPLE.to_vec()];
        let a: Vec<_> = {
            let mut rng = SplitMix64::new(7);
            (0..50)
                .map(|_| next_case(&corpus, &mut rng).input)
                .collect()
        };
        let mut rng = SplitMix64::new(7);
        let b: Vec<_> = (0..50)
            .map(|_| next_case(&corpus, &mut rng).input)
            .collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|i| i != SAMPLE), "mutations change the seed");
    }
}
