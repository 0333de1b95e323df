//! A bump allocator over a static arena, for instances that live for one
//! request.
//!
//! Rust's standard allocator on `wasm32-unknown-unknown` grows linear memory
//! on the first allocation of every fresh instance; the edge then has to
//! shrink the memory slot again when it reuses it, which costs system calls
//! and TLB flushes on every request. This allocator serves allocations from
//! an arena that is part of the module's initial memory, so a typical request
//! never grows memory. Freeing the most recent allocation (and growing it in
//! place) gives memory back; other frees are reclaimed when the instance is
//! dropped at the end of the request. When the arena is full, allocations go
//! to the standard allocator.
//!
//! It is the global allocator of plugins built with the SDK's default
//! `arena-allocator` feature; turn the feature off to use your own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of the arena.
pub const ARENA_BYTES: usize = 512 * 1024;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: plugin instances are single-threaded; the arena is only reached
// through `ArenaAllocator`, which hands out disjoint ranges.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
/// Bytes of the arena in use, from its start.
static USED: AtomicUsize = AtomicUsize::new(0);

/// The arena allocator; see the module docs.
pub struct ArenaAllocator;

fn base() -> usize {
    ARENA.0.get() as usize
}

fn in_arena(ptr: *mut u8) -> bool {
    (base()..base() + ARENA_BYTES).contains(&(ptr as usize))
}

/// Moves the end of the used region to `end` (an address) if it fits.
fn bump_to(end: usize) -> bool {
    let fits = end <= base() + ARENA_BYTES;
    if fits {
        USED.store(end - base(), Ordering::Relaxed);
    }
    fits
}

// SAFETY: every block handed out is inside the arena (disjoint from all live
// blocks, since `USED` only moves back when the last block is freed) or comes
// from `System` and is returned to it.
unsafe impl GlobalAlloc for ArenaAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = (base() + USED.load(Ordering::Relaxed)).next_multiple_of(layout.align());
        if bump_to(start + layout.size()) {
            start as *mut u8
        } else {
            // SAFETY: forwarded with the caller's layout.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !in_arena(ptr) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        if ptr as usize + layout.size() == base() + USED.load(Ordering::Relaxed) {
            USED.store(ptr as usize - base(), Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(ptr) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let is_last = ptr as usize + layout.size() == base() + USED.load(Ordering::Relaxed);
        if (is_last && bump_to(ptr as usize + new_size)) || (!is_last && new_size <= layout.size())
        {
            return ptr;
        }
        // SAFETY: same alignment as the caller's layout, which was valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block of `new_size` bytes; the old block stays valid
        // until it is freed below, and the two do not overlap.
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

#[cfg(all(target_arch = "wasm32", feature = "arena-allocator"))]
#[global_allocator]
static GLOBAL: ArenaAllocator = ArenaAllocator;

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, as the arena is a process-wide static.
    #[test]
    fn bumps_reuses_the_last_block_and_overflows_to_the_system() {
        let a = ArenaAllocator;
        let small = Layout::from_size_align(10, 8).unwrap();
        // SAFETY: each block is used within its layout and freed once.
        unsafe {
            let p = a.alloc(small);
            assert!(in_arena(p));
            assert_eq!(p as usize % 8, 0);
            let q = a.alloc(small);
            assert!(q as usize >= p as usize + 10, "blocks do not overlap");
            q.write_bytes(7, 10);

            // The last block grows in place, keeping its bytes.
            let grown = a.realloc(q, small, 100);
            assert_eq!(grown, q);
            assert_eq!(*grown.add(9), 7);
            // An earlier block moves when it grows, keeping its bytes.
            p.write_bytes(3, 10);
            let moved = a.realloc(p, small, 50);
            assert_ne!(moved, p);
            assert_eq!(*moved.add(9), 3);

            // Freeing the last block gives its space back (alignment
            // padding before it stays used).
            let r = a.alloc(small);
            a.dealloc(r, small);
            assert_eq!(USED.load(Ordering::Relaxed), r as usize - base());
            assert_eq!(a.alloc(small), r);

            // Too big for what is left: served by the system allocator.
            let huge = Layout::from_size_align(ARENA_BYTES, 16).unwrap();
            let h = a.alloc(huge);
            assert!(!h.is_null() && !in_arena(h));
            h.write_bytes(1, ARENA_BYTES);
            a.dealloc(h, huge);
        }
    }
}
