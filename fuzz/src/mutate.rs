//! The mutation engine: deterministic (SplitMix64), format-agnostic
//! mutations biased towards the fields that break parsers: lengths, counts,
//! dimensions, varints, checksummed boundaries.

/// SplitMix64: small, fast, and every (target, input index) pair has its own
/// stream, so any input can be regenerated on its own.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The generator of input `index` of the target named `name` in a run
    /// seeded with `seed`.
    pub fn for_input(seed: u64, name: &str, index: u64) -> Self {
        let mut h = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x1000_0000_01b3);
        }
        let mut r = Rng(h ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the tiny modulo bias is irrelevant here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Boundary values for counts, lengths, dimensions and sizes.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    15,
    16,
    17,
    31,
    32,
    63,
    64,
    100,
    127,
    128,
    255,
    256,
    511,
    512,
    1000,
    1023,
    1024,
    4095,
    4096,
    32767,
    32768,
    65535,
    65536,
    1 << 20,
    (1 << 24) + 1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 48,
    1 << 53,
    1 << 60,
    1 << 62,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 1,
    u64::MAX,
];

const INTERESTING_BYTES: &[u8] = &[
    0, 1, 2, 0x10, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff,
];

/// Decimal numbers for text formats (`.npy` headers, JSON).
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "65536",
    "2147483648",
    "4294967296",
    "1152921504606846976",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "1e308",
    "1e309",
    "-0",
    "0.5",
    "NaN",
];

fn interesting(rng: &mut Rng, data_len: usize, pos: usize) -> u64 {
    match rng.below(8) {
        0 => data_len as u64,
        1 => data_len.saturating_sub(pos) as u64,
        2 => INTERESTING[rng.below(INTERESTING.len())].wrapping_add(rng.below(3) as u64),
        3 => INTERESTING[rng.below(INTERESTING.len())].wrapping_sub(1),
        _ => INTERESTING[rng.below(INTERESTING.len())],
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn chunk(rng: &mut Rng, len: usize) -> (usize, usize) {
    let start = rng.below(len);
    let max = (len - start).min(if rng.one_in(4) { len / 4 + 1 } else { 64 });
    (start, 1 + rng.below(max.max(1)))
}

/// Mutates `data` in place with 1–8 stacked mutations; `corpus` supplies
/// splice partners, `dictionary` tokens; the result is at most `max_len`
/// bytes.
pub fn mutate(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    corpus: &[Vec<u8>],
    dictionary: &[&[u8]],
    max_len: usize,
) {
    let ops = if rng.one_in(6) {
        2 + rng.below(7)
    } else {
        1 + rng.below(2)
    };
    for _ in 0..ops {
        mutate_once(rng, data, corpus, dictionary);
        if data.len() > max_len {
            data.truncate(max_len);
        }
    }
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]]) {
    if data.is_empty() {
        data.extend((0..1 + rng.below(16)).map(|_| rng.next_u64() as u8));
        return;
    }
    let len = data.len();
    match rng.below(14) {
        // Bit flips.
        0 | 1 => {
            for _ in 0..1 + rng.below(4) {
                let p = rng.below(len);
                data[p] ^= 1 << rng.below(8);
            }
        }
        // A random or boundary byte.
        2 => {
            let p = rng.below(len);
            data[p] = if rng.one_in(2) {
                rng.next_u64() as u8
            } else {
                INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())]
            };
        }
        // A boundary word, 2, 4 or 8 bytes, either endianness.
        3 | 4 => {
            let width = [2, 4, 8][rng.below(3)];
            if len >= width {
                let p = rng.below(len - width + 1);
                let v = interesting(rng, len, p);
                let (le, be) = (v.to_le_bytes(), v.to_be_bytes());
                let bytes = if rng.one_in(2) {
                    &le[..width]
                } else {
                    &be[8 - width..]
                };
                data[p..p + width].copy_from_slice(bytes);
            }
        }
        // A LEB128 varint replacing the one at a position (postcard and
        // protobuf lengths and counts).
        5 | 6 => {
            let p = rng.below(len);
            let mut end = p;
            while end < len && data[end] & 0x80 != 0 && end - p < 10 {
                end += 1;
            }
            let end = (end + 1).min(len);
            let v = interesting(rng, len, p);
            data.splice(p..end, varint(v));
        }
        // A word that looks like a length (≤ the file size) made to lie.
        7 => {
            let width = if rng.one_in(2) { 4 } else { 8 };
            if len >= width {
                let start = rng.below(len - width + 1);
                let found = (start..=len - width).chain(0..start).find(|&p| {
                    let mut w = [0u8; 8];
                    w[..width].copy_from_slice(&data[p..p + width]);
                    let v = u64::from_le_bytes(w);
                    v > 0 && v <= len as u64
                });
                if let Some(p) = found {
                    let mut w = [0u8; 8];
                    w[..width].copy_from_slice(&data[p..p + width]);
                    let v = u64::from_le_bytes(w);
                    let lie = match rng.below(5) {
                        0 => v + 1,
                        1 => v - 1,
                        2 => v.wrapping_mul(2),
                        3 => v | 1 << (8 * width as u64 - 2),
                        _ => interesting(rng, len, p),
                    };
                    data[p..p + width].copy_from_slice(&lie.to_le_bytes()[..width]);
                }
            }
        }
        // Truncation.
        8 => data.truncate(rng.below(len)),
        // Deletion of a chunk.
        9 => {
            let (s, n) = chunk(rng, len);
            data.drain(s..s + n);
        }
        // Duplication of a chunk elsewhere.
        10 => {
            let (s, n) = chunk(rng, len);
            let copy = data[s..s + n].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, copy);
        }
        // Splice: a prefix of this file and a suffix of another seed.
        11 => {
            if let Some(other) = corpus.get(rng.below(corpus.len().max(1))) {
                if !other.is_empty() {
                    let a = rng.below(len + 1);
                    let b = rng.below(other.len());
                    data.truncate(a);
                    data.extend_from_slice(&other[b..]);
                }
            }
        }
        // A dictionary token (inserted or overwriting), or random bytes.
        12 => {
            let token: Vec<u8> = if dictionary.is_empty() || rng.one_in(4) {
                (0..1 + rng.below(16))
                    .map(|_| rng.next_u64() as u8)
                    .collect()
            } else {
                dictionary[rng.below(dictionary.len())].to_vec()
            };
            let p = rng.below(len + 1);
            if rng.one_in(2) || p + token.len() > len {
                data.splice(p..p, token);
            } else {
                data[p..p + token.len()].copy_from_slice(&token);
            }
        }
        // A decimal number rewritten (the next digit run after a position).
        _ => {
            let p = rng.below(len);
            if let Some(s) = (p..len).chain(0..p).find(|&i| data[i].is_ascii_digit()) {
                let mut e = s;
                while e < len && (data[e].is_ascii_digit() || data[e] == b'.') {
                    e += 1;
                }
                let n = NUMBERS[rng.below(NUMBERS.len())];
                data.splice(s..e, n.bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_reproducible_per_input() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::for_input(1, "npy", 7).next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_input(1, "npy", 7).next_u64(),
            Rng::for_input(1, "npy", 8).next_u64()
        );
        assert_ne!(
            Rng::for_input(1, "npy", 7).next_u64(),
            Rng::for_input(1, "idx", 7).next_u64()
        );
    }

    #[test]
    fn mutations_change_inputs_and_respect_the_length_cap() {
        let seed: Vec<u8> = (0..200u8).collect();
        let corpus = vec![seed.clone()];
        let mut changed = 0;
        for i in 0..2000 {
            let mut rng = Rng::for_input(3, "t", i);
            let mut d = seed.clone();
            mutate(&mut rng, &mut d, &corpus, &[b"token"], 300);
            assert!(d.len() <= 300);
            changed += usize::from(d != seed);
        }
        // A few mutations are no-ops (a bit flipped twice, a splice at the
        // same offset); nearly all change the input.
        assert!(changed > 1900, "{changed} of 2000 changed");
    }

    #[test]
    fn varints_are_leb128() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX).len(), 10);
    }
}
