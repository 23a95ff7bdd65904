//! Which instruction set the kernels use, chosen once at run time.
//!
//! The development and CI machines change between an AMD EPYC with AVX2 only
//! and an Intel Xeon with AVX-512, so one binary must pick its kernels from
//! what the CPU it runs on reports. `NABLA_ISA=avx512|avx2|portable` forces a
//! narrower path for a process (never a wider one than the CPU has), and
//! [`set_override`] does so inside one, so the tests check every path on a
//! machine that has all of them.

use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction set the kernels are written for, widest last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isa {
    /// Plain Rust that the compiler vectorises as it can.
    Portable,
    /// 256-bit AVX2 with fused multiply-add.
    Avx2,
    /// 512-bit AVX-512 (F, with FMA).
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The widest instruction set this CPU has.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every instruction set this CPU can run, narrowest first.
    pub fn available() -> Vec<Isa> {
        let widest = Isa::detected();
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&isa| isa <= widest)
            .collect()
    }
}

impl std::str::FromStr for Isa {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "portable" => Ok(Isa::Portable),
            "avx2" => Ok(Isa::Avx2),
            "avx512" => Ok(Isa::Avx512),
            _ => Err(format!(
                "unknown instruction set `{s}`; expected avx512, avx2 or portable"
            )),
        }
    }
}

/// 0: not yet chosen; else 1 + the `Isa` discriminant.
static DEFAULT: AtomicU8 = AtomicU8::new(0);
/// 0: none; else 1 + the `Isa` discriminant.
static OVERRIDE: AtomicU8 = AtomicU8::new(0);

fn encode(isa: Isa) -> u8 {
    isa as u8 + 1
}

fn decode(code: u8) -> Option<Isa> {
    match code {
        1 => Some(Isa::Portable),
        2 => Some(Isa::Avx2),
        3 => Some(Isa::Avx512),
        _ => None,
    }
}

/// `f(isa)` with every kernel of the process on `isa`, for each instruction
/// set this CPU can run (narrowest first), then back to the default: how a
/// test runs every path on one machine, so the narrower ones do not rot.
pub fn on_each_available(mut f: impl FnMut(Isa)) {
    for isa in Isa::available() {
        set_override(Some(isa));
        f(isa);
    }
    set_override(None);
}

/// Makes every kernel of the process use `isa` (`None`: back to the
/// default), so a test can run each path on one machine. Panics if the CPU
/// does not have `isa`.
pub fn set_override(isa: Option<Isa>) {
    if let Some(isa) = isa {
        assert!(isa <= Isa::detected(), "this CPU has no {}", isa.name());
    }
    OVERRIDE.store(isa.map_or(0, encode), Ordering::SeqCst);
}

/// The instruction set in use: the widest the CPU has, or `NABLA_ISA` when it
/// names one the CPU can run. A `NABLA_ISA` the CPU cannot run, or that is not
/// a name, is ignored with a warning on stderr rather than crashing later
/// with an illegal instruction. Two relaxed loads once chosen: the dense
/// kernels ask once per layer call, thousands of times a second.
#[inline]
pub fn active() -> Isa {
    if let Some(isa) = decode(OVERRIDE.load(Ordering::Relaxed)) {
        return isa;
    }
    decode(DEFAULT.load(Ordering::Relaxed)).unwrap_or_else(choose)
}

/// The first call's choice, kept in `DEFAULT` (a race chooses the same).
#[cold]
fn choose() -> Isa {
    let widest = Isa::detected();
    let isa = match std::env::var("NABLA_ISA") {
        Ok(wanted) => match wanted.parse::<Isa>() {
            Ok(isa) if isa <= widest => isa,
            Ok(isa) => {
                eprintln!(
                    "warning: NABLA_ISA={} but this CPU has only {}; using {}",
                    isa.name(),
                    widest.name(),
                    widest.name()
                );
                widest
            }
            Err(e) => {
                eprintln!("warning: NABLA_ISA: {e}; using {}", widest.name());
                widest
            }
        },
        Err(_) => widest,
    };
    DEFAULT.store(encode(isa), Ordering::Relaxed);
    isa
}
