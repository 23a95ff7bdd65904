//! Stacked mutations of seed inputs: bit flips, interesting bytes and
//! integers (little- and big-endian), deletions, duplications, insertions,
//! splices with another seed, truncation, and for text targets tokens from
//! the target's dictionary.

/// A small, fast, seeded generator (xorshift64*): the fuzzer's only
/// randomness, so a run is repeated exactly from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Integers that break length and offset arithmetic.
const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    1 << 32,
    1 << 62,
    u64::MAX,
];

/// `input` changed by one to eight stacked mutations; `other` is another
/// seed to splice from, `tokens` the target's dictionary (may be empty).
pub fn mutate(input: &[u8], other: &[u8], tokens: &[&[u8]], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        mutate_once(&mut out, other, tokens, rng);
    }
    out
}

fn mutate_once(out: &mut Vec<u8>, other: &[u8], tokens: &[&[u8]], rng: &mut Rng) {
    let len = out.len();
    match rng.below(if tokens.is_empty() { 9 } else { 11 }) {
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] = INTERESTING[rng.below(5)] as u8;
        }
        2 if len > 0 => {
            let i = rng.below(len);
            out[i] = rng.next_u64() as u8;
        }
        3 => {
            // An interesting integer of 2, 4 or 8 bytes, either endianness.
            let width = [2, 4, 8][rng.below(3)];
            if len >= width {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let v = if rng.below(2) == 0 {
                    v
                } else {
                    v.wrapping_add(len as u64)
                };
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                let at = rng.below(len - width + 1);
                let src = if bytes[0] == 0 && rng.below(2) == 0 {
                    &bytes[8 - width..]
                } else {
                    &bytes[..width]
                };
                out[at..at + width].copy_from_slice(src);
            }
        }
        4 if len > 1 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            out.drain(at..at + n);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let copy = out[at..at + n].to_vec();
            let to = rng.below(out.len() + 1);
            out.splice(to..to, copy);
        }
        6 => {
            let to = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let fresh: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(to..to, fresh);
        }
        7 if !other.is_empty() => {
            // Our head, the other seed's tail.
            let cut = rng.below(len + 1);
            let from = rng.below(other.len());
            out.truncate(cut);
            out.extend_from_slice(&other[from..]);
        }
        8 if len > 0 => out.truncate(rng.below(len)),
        9 | 10 => {
            let token = tokens[rng.below(tokens.len())];
            let to = rng.below(len + 1);
            if rng.below(2) == 0 || len < token.len() {
                out.splice(to..to, token.iter().copied());
            } else {
                let at = rng.below(len - token.len() + 1);
                out[at..at + token.len()].copy_from_slice(token);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_they_differ() {
        let seed = b"x = 1\ny = sigmoid(x * 2)\n";
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let first: Vec<Vec<u8>> = (0..50)
            .map(|_| mutate(seed, b"z", &[b"("], &mut a))
            .collect();
        let again: Vec<Vec<u8>> = (0..50)
            .map(|_| mutate(seed, b"z", &[b"("], &mut b))
            .collect();
        assert_eq!(first, again);
        let changed = first.iter().filter(|m| m.as_slice() != seed).count();
        assert!(changed >= 45, "{changed} of 50 inputs changed");
        let mut lengths: Vec<usize> = first.iter().map(Vec::len).collect();
        lengths.dedup();
        assert!(lengths.len() > 5, "lengths {lengths:?}");
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [0usize; 7];
        for _ in 0..7000 {
            seen[rng.below(7)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
