//! The mutation engine: a deterministic PRNG and the byte- and token-level mutations.
//!
//! Written for this project's inputs rather than for speed on arbitrary ones: headers of binary
//! formats are mostly little-endian integers next to four-character tags (RIFF's `fmt `/`data`
//! sizes and rates, MP4's atom sizes), so besides blind bit flips the engine finds those tags
//! and overwrites the integers beside them with values known to break size arithmetic; text
//! inputs (JSON, MIME) get their numbers replaced and their tokens deleted, duplicated or
//! inserted, which random bytes would rarely spell.

/// xorshift64* seeded through splitmix64: tiny, fast, and the same sequence for the same seed
/// on every machine, which is what makes a run reproducible from its printed `--seed`.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// 64-bit FNV-1a: names findings and hashes outcomes (stable across runs and machines).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const INTERESTING_8: [u8; 10] = [0, 1, 2, 0x10, 0x40, 0x7f, 0x80, 0x81, 0xfe, 0xff];

const INTERESTING_16: [u16; 18] = [
    0, 1, 2, 3, 6, 8, 16, 24, 32, 64, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff,
];

/// Values that break size and rate arithmetic: zero and one, signed and unsigned edges, the
/// sample-rate limits (1999/2000, 768000/768001) and rates either side of them, and
/// 4294967291 (a prime just under 2^32, the forged rate that once sized a resampler).
const INTERESTING_32: [u32; 27] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x1_0000,
    0x100_0000,
    0x4000_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
    4_294_967_291,
    1_999,
    2_000,
    8_000,
    11_025,
    16_000,
    22_050,
    44_100,
    48_000,
    96_000,
    768_000,
    768_001,
];

/// Numbers a text format's parser and its size checks must survive.
const INTERESTING_NUMBERS: [&str; 34] = [
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "128",
    "255",
    "256",
    "257",
    "469",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "144115188075855872",
    "1e309",
    "-1e309",
    "1e-400",
    "0.0",
    "1.5",
    "0.5",
    "1e6",
    "9600000",
    "9600001",
    "60032",
    "99999999999999999999999999999",
    "16384",
];

/// What a mutation may draw on besides its input.
pub struct Env<'a> {
    /// Other corpus entries, for splicing.
    pub corpus: &'a [Vec<u8>],
    /// Structure words of the target's format.
    pub dictionary: &'a [&'a [u8]],
    /// Whether the token-level mutations apply.
    pub text: bool,
    /// Largest input to produce.
    pub max_len: usize,
}

/// Offsets where a little-endian integer field likely sits: beside four-character tags (after
/// them for RIFF-style chunk sizes, before them for MP4 atom sizes), the fields of a WAV
/// `fmt ` chunk, and the RIFF size. Only the first 4 KiB is scanned: headers live there, and
/// the scan must stay cheap next to a run.
fn field_offsets(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let scan = data.len().min(4096);
    let is_tag_byte = |b: u8| b.is_ascii_alphanumeric() || b == b' ';
    let mut i = 0;
    while i + 4 <= scan {
        if data[i..i + 4].iter().all(|&b| is_tag_byte(b)) {
            out.push(i + 4);
            if i >= 4 {
                out.push(i - 4);
            }
            if &data[i..i + 4] == b"fmt " {
                // format tag, channels, rate, byte rate, block align, bits, cbSize, valid bits,
                // channel mask.
                for k in [8, 10, 12, 16, 20, 22, 24, 26, 28] {
                    out.push(i + k);
                }
            }
            i += 4;
        } else {
            i += 1;
        }
    }
    out.retain(|&o| o < data.len());
    out
}

fn random_offset(data: &[u8], rng: &mut Rng, width: usize) -> Option<usize> {
    (data.len() >= width).then(|| rng.below(data.len() - width + 1))
}

/// An offset for an integer of `width` bytes: a likely header field half the time.
fn field_or_random(data: &[u8], rng: &mut Rng, width: usize) -> Option<usize> {
    if rng.chance(1, 2) {
        let fields: Vec<usize> = field_offsets(data)
            .into_iter()
            .filter(|&o| o + width <= data.len())
            .collect();
        if !fields.is_empty() {
            return Some(*rng.pick(&fields));
        }
    }
    random_offset(data, rng, width)
}

fn write_int(data: &mut [u8], at: usize, value: u64, width: usize, big_endian: bool) {
    let le = value.to_le_bytes();
    for k in 0..width {
        data[at + k] = if big_endian { le[width - 1 - k] } else { le[k] };
    }
}

fn read_int(data: &[u8], at: usize, width: usize, big_endian: bool) -> u64 {
    let mut v = 0u64;
    for k in 0..width {
        let b = if big_endian {
            data[at + k]
        } else {
            data[at + width - 1 - k]
        };
        v = (v << 8) | u64::from(b);
    }
    v
}

/// A random range `(start, len)` of `data`, biased to short ones.
fn range(data: &[u8], rng: &mut Rng) -> (usize, usize) {
    let n = data.len();
    if n == 0 {
        return (0, 0);
    }
    let start = rng.below(n);
    let max = n - start;
    let len = if rng.chance(3, 4) {
        1 + rng.below(max.min(64))
    } else {
        1 + rng.below(max)
    };
    (start, len)
}

/// The span of the number (digits, sign, point, exponent) around a random digit, if any.
fn number_span(data: &[u8], rng: &mut Rng) -> Option<(usize, usize)> {
    let digits: Vec<usize> = data
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    if digits.is_empty() {
        return None;
    }
    let at = *rng.pick(&digits);
    let part = |b: u8| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E');
    let mut start = at;
    while start > 0 && part(data[start - 1]) {
        start -= 1;
    }
    let mut end = at;
    while end < data.len() && part(data[end]) {
        end += 1;
    }
    Some((start, end))
}

/// The span of a text token: from a random position to the next delimiter.
fn token_span(data: &[u8], rng: &mut Rng) -> Option<(usize, usize)> {
    if data.is_empty() {
        return None;
    }
    let delim = |b: u8| b",:[]{}\"\r\n;= ".contains(&b);
    let mut start = rng.below(data.len());
    while start > 0 && !delim(data[start - 1]) {
        start -= 1;
    }
    let mut end = start;
    while end < data.len() && !delim(data[end]) {
        end += 1;
    }
    // Take the delimiter too, so structure (not only words) gets deleted and duplicated.
    Some((start, (end + 1).min(data.len())))
}

/// One mutation, chosen at random; returns without change when it does not apply.
fn mutate_once(data: &mut Vec<u8>, rng: &mut Rng, env: &Env) {
    let ops = if env.text { 17 } else { 14 };
    match rng.below(ops) {
        0 => {
            // Flip one to four bits.
            for _ in 0..=rng.below(4) {
                if let Some(at) = random_offset(data, rng, 1) {
                    data[at] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            if let Some(at) = random_offset(data, rng, 1) {
                data[at] = *rng.pick(&INTERESTING_8);
            }
        }
        2 => {
            if let Some(at) = field_or_random(data, rng, 2) {
                let v = u64::from(*rng.pick(&INTERESTING_16));
                let be = rng.chance(1, 4);
                write_int(data, at, v, 2, be);
            }
        }
        3 | 4 => {
            // Integer field overwrite: the mutation that forges rates, channel counts and sizes.
            if let Some(at) = field_or_random(data, rng, 4) {
                let v = u64::from(*rng.pick(&INTERESTING_32));
                let be = rng.chance(1, 4);
                write_int(data, at, v, 4, be);
            }
        }
        5 => {
            // A size field set to the input's length give or take a little: sizes that almost
            // fit are where off-by-one bugs live.
            if let Some(at) = field_or_random(data, rng, 4) {
                let delta = rng.below(17) as i64 - 8;
                let v = (data.len() as i64 - at as i64 + delta).max(0) as u64;
                write_int(data, at, v & 0xffff_ffff, 4, false);
            }
        }
        6 => {
            // Small arithmetic on an integer of 1, 2 or 4 bytes.
            let width = *rng.pick(&[1usize, 2, 4]);
            if let Some(at) = field_or_random(data, rng, width) {
                let be = rng.chance(1, 4);
                let v = read_int(data, at, width, be);
                let d = 1 + rng.below(35) as u64;
                let v = if rng.chance(1, 2) {
                    v.wrapping_add(d)
                } else {
                    v.wrapping_sub(d)
                };
                write_int(data, at, v, width, be);
            }
        }
        7 => {
            if let Some(at) = random_offset(data, rng, 1) {
                data[at] = rng.next_u64() as u8;
            }
        }
        8 => {
            // Delete a chunk.
            let (start, len) = range(data, rng);
            data.drain(start..start + len);
        }
        9 => {
            // Duplicate a chunk somewhere.
            let (start, len) = range(data, rng);
            let chunk = data[start..start + len].to_vec();
            let at = rng.below(data.len() + 1);
            data.splice(at..at, chunk);
        }
        10 => {
            // Splice with another corpus entry: our head, its tail.
            if let Some(other) = (!env.corpus.is_empty()).then(|| rng.pick(env.corpus)) {
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
        11 => {
            // Insert a chunk of another entry.
            if let Some(other) = (!env.corpus.is_empty()).then(|| rng.pick(env.corpus)) {
                let (start, len) = range(other, rng);
                let at = rng.below(data.len() + 1);
                data.splice(at..at, other[start..start + len].iter().copied());
            }
        }
        12 => {
            // Truncate (a cut-off upload).
            let keep = rng.below(data.len() + 1);
            data.truncate(keep);
        }
        13 => {
            // Append: random bytes, a token, or a chunk of ourselves.
            match rng.below(3) {
                0 => {
                    for _ in 0..=rng.below(32) {
                        data.push(rng.next_u64() as u8);
                    }
                }
                1 if !env.dictionary.is_empty() => {
                    let word = *rng.pick(env.dictionary);
                    data.extend_from_slice(word);
                }
                _ => {
                    let (start, len) = range(data, rng);
                    let chunk = data[start..start + len].to_vec();
                    data.extend_from_slice(&chunk);
                }
            }
        }
        // Text-only from here (also the dictionary, which binary targets reach via 13).
        14 => {
            if let Some((start, end)) = number_span(data, rng) {
                let n = rng.pick(&INTERESTING_NUMBERS).as_bytes();
                data.splice(start..end, n.iter().copied());
            }
        }
        15 => {
            if !env.dictionary.is_empty() {
                let word = rng.pick(env.dictionary);
                let at = rng.below(data.len() + 1);
                if rng.chance(1, 2) || at + word.len() > data.len() {
                    data.splice(at..at, word.iter().copied());
                } else {
                    data[at..at + word.len()].copy_from_slice(word);
                }
            }
        }
        _ => {
            // Delete or duplicate a token.
            if let Some((start, end)) = token_span(data, rng) {
                if rng.chance(1, 2) {
                    data.drain(start..end);
                } else {
                    let token = data[start..end].to_vec();
                    let at = if rng.chance(1, 2) {
                        end
                    } else {
                        rng.below(data.len() + 1)
                    };
                    data.splice(at..at, token);
                }
            }
        }
    }
}

/// A mutant of `parent`: a stack of 1, 2, 4, 8 or 16 mutations (deep stacks reach states no
/// single change does; shallow ones keep most inputs parseable), capped at `env.max_len`.
pub fn mutate(parent: &[u8], rng: &mut Rng, env: &Env) -> Vec<u8> {
    let mut data = parent.to_vec();
    let stack = 1usize << rng.below(5);
    for _ in 0..stack {
        mutate_once(&mut data, rng, env);
        data.truncate(env.max_len);
    }
    data
}
