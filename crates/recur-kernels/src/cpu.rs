//! CPU features, detected once at run time.
//!
//! `RECUR_KERNELS=naive` in the environment turns every fast path off (the plain scalar
//! kernels run instead), for comparing paths on the same machine.

use std::sync::OnceLock;

/// What the fast kernels may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// AVX2 and FMA (x86-64).
    pub avx2_fma: bool,
    /// F16C (x86-64): widening of IEEE half floats, for [`crate::half`].
    pub f16c: bool,
}

/// The features of this CPU (detected on first call).
pub fn features() -> Features {
    static F: OnceLock<Features> = OnceLock::new();
    *F.get_or_init(|| {
        if std::env::var("RECUR_KERNELS").is_ok_and(|v| v == "naive") {
            return Features {
                avx2_fma: false,
                f16c: false,
            };
        }
        #[cfg(target_arch = "x86_64")]
        {
            Features {
                avx2_fma: is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
                f16c: is_x86_feature_detected!("f16c"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Features {
                avx2_fma: false,
                f16c: false,
            }
        }
    })
}

/// A short description of the kernels in use, e.g. `avx2+fma` or `scalar`.
pub fn describe() -> &'static str {
    if features().avx2_fma {
        "avx2+fma"
    } else {
        "scalar"
    }
}
