//! [`HugeArray`]: a fixed-length array that the kernel may back with 2 MB transparent huge
//! pages.
//!
//! The connection table is one flat array of tens of megabytes that every packet reads at a
//! random place. With 4 KB pages each of those reads also misses the TLB; with 2 MB pages one
//! TLB entry covers 512 times more of the table. An array of at least [`HUGE_PAGE`] bytes is
//! therefore allocated 2 MB aligned, its length rounded up to whole huge pages, and marked with
//! `madvise(MADV_HUGEPAGE)` before it is first written, so the first write faults in huge pages
//! when `/sys/kernel/mm/transparent_hugepage/enabled` is `madvise` or `always`. Where the
//! kernel says no (THP `never`, no free huge page) the array works the same on small pages.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Size of an x86-64 / arm64 transparent huge page.
pub const HUGE_PAGE: usize = 2 << 20;

/// `len` values of type `T` in one allocation, 2 MB aligned and advised for huge pages when it
/// is at least [`HUGE_PAGE`] bytes long. Dereferences to `[T]`.
pub struct HugeArray<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// The allocation's layout; size 0 means nothing was allocated (`len == 0` or a zero-sized
    /// `T`) and `ptr` is dangling.
    layout: Layout,
    /// Whether the kernel accepted `MADV_HUGEPAGE` for the allocation.
    advised: bool,
}

// SAFETY: a HugeArray owns its elements exactly as a `Box<[T]>` does; the raw pointer is never
// shared outside `&self` / `&mut self` borrows.
unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
// SAFETY: as above, shared access only hands out `&[T]`.
unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

impl<T: Copy> HugeArray<T> {
    /// `len` copies of `fill`. Panics (like `vec!`) only if the size overflows `isize`, and
    /// aborts if the memory cannot be had.
    pub fn new(len: usize, fill: T) -> HugeArray<T> {
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .expect("HugeArray size overflows usize");
        if bytes == 0 {
            return HugeArray {
                ptr: NonNull::dangling(),
                len,
                layout: Layout::new::<()>(),
                advised: false,
            };
        }
        let huge = bytes >= HUGE_PAGE;
        let layout = if huge {
            Layout::from_size_align(bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE, HUGE_PAGE)
        } else {
            Layout::from_size_align(bytes, std::mem::align_of::<T>())
        }
        .expect("HugeArray size overflows isize");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw.cast::<T>()) else {
            alloc::handle_alloc_error(layout)
        };
        let advised = huge && {
            // SAFETY: `raw` starts a live allocation of `layout.size()` bytes that nothing
            // else uses; MADV_HUGEPAGE only changes how the kernel backs those pages, never
            // their contents, and the range is 2 MB aligned as madvise wants page alignment.
            unsafe { libc::madvise(raw.cast(), layout.size(), libc::MADV_HUGEPAGE) == 0 }
        };
        for i in 0..len {
            // SAFETY: `i < len` and the allocation holds `len` values of T, suitably aligned;
            // the slot is uninitialised, so `write` (no drop of an old value) is right.
            unsafe { ptr.as_ptr().add(i).write(fill) };
        }
        HugeArray {
            ptr,
            len,
            layout,
            advised,
        }
    }

    /// Bytes allocated (the length rounded up to whole huge pages for a huge array).
    pub fn allocated_bytes(&self) -> usize {
        self.layout.size()
    }

    /// Whether the kernel accepted `madvise(MADV_HUGEPAGE)` for this array (it then backs it
    /// with huge pages as far as it can find them).
    pub fn is_advised_huge(&self) -> bool {
        self.advised
    }
}

impl<T: Copy> Deref for HugeArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points at `len` initialised values (or is dangling with nothing to
        // read when nothing was allocated), borrowed for `&self`'s lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeArray<T> {
    fn drop(&mut self) {
        if self.layout.size() > 0 {
            // SAFETY: allocated in `new` with exactly this layout and not freed since; `T:
            // Copy` has no destructor to run.
            unsafe { alloc::dealloc(self.ptr.as_ptr().cast(), self.layout) };
        }
    }
}

impl<T: Copy> fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeArray")
            .field("len", &self.len)
            .field("allocated_bytes", &self.allocated_bytes())
            .field("advised_huge", &self.advised)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_arrays_are_filled_and_writable() {
        let mut a = HugeArray::new(10, 7u32);
        assert_eq!(a.len(), 10);
        assert!(a.iter().all(|&v| v == 7));
        a[3] = 9;
        assert_eq!(a[3], 9);
        assert_eq!(a.allocated_bytes(), 40);
        assert!(!a.is_advised_huge());
    }

    #[test]
    fn large_arrays_are_huge_page_aligned_and_rounded_up() {
        let a = HugeArray::new(HUGE_PAGE / 4 + 1, 1u32);
        assert_eq!(a.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(a.allocated_bytes(), 2 * HUGE_PAGE);
        assert_eq!(a.len(), HUGE_PAGE / 4 + 1);
        assert!(a.iter().all(|&v| v == 1));
    }

    #[test]
    fn empty_and_zero_sized_arrays_allocate_nothing() {
        let a: HugeArray<u64> = HugeArray::new(0, 0);
        assert!(a.is_empty());
        assert_eq!(a.allocated_bytes(), 0);
        let z = HugeArray::new(5, ());
        assert_eq!(z.len(), 5);
        assert_eq!(z.allocated_bytes(), 0);
    }
}
