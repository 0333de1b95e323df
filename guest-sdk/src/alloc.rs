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
//! `arena-allocator` feature; turn the feature off to use your own. (Off
//! wasm32 this module is compiled for its tests only.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of the arena.
const ARENA_BYTES: usize = 512 * 1024;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: the arena is only reached through `ArenaAllocator`, which hands out
// disjoint ranges, claimed with compare-and-swap on `USED`.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));
/// Bytes of the arena in use, from its start.
static USED: AtomicUsize = AtomicUsize::new(0);

/// The arena allocator; see the module docs.
pub(crate) struct ArenaAllocator;

/// The arena's first byte.
fn base() -> *mut u8 {
    ARENA.0.get().cast::<u8>()
}

/// The offset of `ptr` in the arena, if it points into it.
fn offset_of(ptr: *mut u8) -> Option<usize> {
    let offset = (ptr as usize).checked_sub(base() as usize)?;
    (offset < ARENA_BYTES).then_some(offset)
}

/// Moves `USED` from `from` to `to` if nobody moved it meanwhile.
fn claim(from: usize, to: usize) -> bool {
    USED.compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

/// Reserves `layout` in the arena; `None` when it does not fit.
fn bump(layout: Layout) -> Option<*mut u8> {
    loop {
        let used = USED.load(Ordering::Acquire);
        // Alignments are powers of two: round the address up with a mask.
        let mask = layout.align() - 1;
        let address = (base() as usize).checked_add(used)?.checked_add(mask)? & !mask;
        let start = address - base() as usize;
        let end = start
            .checked_add(layout.size())
            .filter(|end| *end <= ARENA_BYTES)?;
        if claim(used, end) {
            return Some(base().wrapping_add(start));
        }
    }
}

// SAFETY: every block handed out is inside the arena and disjoint from all
// live blocks (`USED` only moves back over the most recent block when it is
// freed), or comes from `System` and is returned to it.
unsafe impl GlobalAlloc for ArenaAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: forwarded with the caller's layout.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match offset_of(ptr) {
            // The most recent block gives its space back; others wait for
            // the instance to be dropped.
            Some(offset) => {
                claim(offset + layout.size(), offset);
            }
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(offset) = offset_of(ptr) else {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        };
        let end = offset + layout.size();
        let new_end = offset.checked_add(new_size).filter(|e| *e <= ARENA_BYTES);
        // The most recent block grows or shrinks in place.
        if new_end.is_some_and(|new_end| claim(end, new_end)) {
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: same alignment as the caller's valid layout, and a size
        // the caller promises does not overflow `isize` when rounded.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block of `new_size` bytes; the old block stays valid
        // until it is freed below, and the two do not overlap.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(target_arch = "wasm32")]
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
            assert!(offset_of(p).is_some());
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
            assert_eq!(USED.load(Ordering::Relaxed), r as usize - base() as usize);
            assert_eq!(a.alloc(small), r);

            // Too big for what is left: served by the system allocator.
            let huge = Layout::from_size_align(ARENA_BYTES, 16).unwrap();
            let h = a.alloc(huge);
            assert!(!h.is_null() && offset_of(h).is_none());
            h.write_bytes(1, ARENA_BYTES);
            a.dealloc(h, huge);
        }
    }
}
