//! Zync patch: software prefetch, the one place this crate uses `unsafe`.

/// Asks the CPU to start loading every cache line of `value` into its
/// caches, without waiting: a hint that neither reads the value (as far as
/// the program is concerned) nor can fault. A no-op off x86-64.
#[inline]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let start = value as *const T as *const i8;
        let mut offset = 0;
        while offset < std::mem::size_of::<T>() {
            // SAFETY: a prefetch is only a hint: it never faults and the
            // address is inside `value` anyway; SSE is part of x86-64.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset));
            }
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
