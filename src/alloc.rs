//! The process allocator: the system allocator, except that very large
//! allocations are made as lazily committed, unreserved mappings.
//!
//! Why: the Kafka message decoder sizes a vector from the element count it
//! reads off the wire before it reads the elements. A hostile count of two
//! billion would ask for hundreds of gigabytes and abort the process. Mapped
//! with `MAP_NORESERVE`, such a request only reserves address space; the
//! decoder then fails on the missing elements and the mapping is released.
//! Real memory use stays what is actually written. Nothing in Sluice itself
//! allocates anywhere near the threshold (frames are capped well below it).

use std::alloc::{GlobalAlloc, Layout, System};

/// Hand memory the C allocator holds free back to the operating system
/// (glibc's `malloc_trim`; a no-op elsewhere). sled's evicted pages are freed
/// into malloc's arenas, which otherwise keep them: reading a 1.2 GB log left
/// 920 MB resident; trimmed, 120 MB (see docs/BENCHMARKS.md).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of malloc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Allocations at least this large are mapped lazily.
const LAZY_THRESHOLD: usize = 1 << 30;

/// System allocator with lazily mapped huge allocations.
pub struct Allocator;

unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= 4096 {
            // SAFETY: an anonymous private mapping; null is returned on failure
            // as GlobalAlloc requires.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            return p as *mut u8;
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= 4096 {
            // SAFETY: `ptr` came from the mmap above with this size.
            unsafe {
                libc::munmap(ptr as *mut libc::c_void, layout.size());
            }
            return;
        }
        // SAFETY: `ptr` came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= LAZY_THRESHOLD && layout.align() <= 4096 {
            // Anonymous mappings are zero-filled.
            // SAFETY: as in `alloc`.
            return unsafe { self.alloc(layout) };
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let lazy_old = layout.size() >= LAZY_THRESHOLD && layout.align() <= 4096;
        let lazy_new = new_size >= LAZY_THRESHOLD && layout.align() <= 4096;
        if !lazy_old && !lazy_new {
            // SAFETY: both sides are System allocations.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the new layout has the same alignment and a valid size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: allocate, copy the smaller of the two sizes, free the old block.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
