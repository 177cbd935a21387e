//! The global allocator of a plugin: dlmalloc (as std uses on wasm32),
//! fed first with the free part of the initial linear memory.
//!
//! std's allocator on `wasm32-unknown-unknown` gets every byte with
//! `memory.grow`, even while the initial memory has free pages past the
//! data: every invocation of a plugin that allocates at all grows its
//! memory, which costs the host two `mprotect`s (grow now, shrink back when
//! the pooled slot is reused): a quarter of a small plugin's invocation.
//! Handing dlmalloc `[__heap_base, initial end)` first makes a call that
//! fits in the initial memory grow nothing. Plugins built by
//! `airlock plugin build` and `scripts/build-plugins.sh` get a 2 MiB
//! initial memory for that (`.cargo/config.toml`); the budget's
//! `memory_bytes` counts it as before.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

const PAGE: usize = 64 * 1024;

unsafe extern "C" {
    /// The end of the data segments and the start of the heap (wasm-ld).
    static __heap_base: u8;
}

/// dlmalloc's source of memory: the initial memory's free part once, then
/// `memory.grow` as std's.
struct InitialThenGrow {
    claimed: AtomicBool,
}

unsafe impl dlmalloc::Allocator for InitialThenGrow {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if !self.claimed.swap(true, Ordering::Relaxed) {
            let base = (ptr::addr_of!(__heap_base) as usize + 15) & !15;
            let end = wasm32::memory_size(0) * PAGE;
            if end > base && end - base >= size {
                return (base as *mut u8, end - base, 0);
            }
        }
        let pages = size.div_ceil(PAGE);
        let prev = wasm32::memory_grow(0, pages);
        if prev == usize::MAX {
            return (ptr::null_mut(), 0, 0);
        }
        ((prev * PAGE) as *mut u8, pages * PAGE, 0)
    }

    fn remap(&self, _ptr: *mut u8, _old: usize, _new: usize, _can_move: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _ptr: *mut u8, _old: usize, _new: usize) -> bool {
        false
    }

    fn free(&self, _ptr: *mut u8, _size: usize) -> bool {
        false
    }

    fn can_release_part(&self, _flags: u32) -> bool {
        false
    }

    // A fresh instance's memory past the data is zero, and so is what
    // `memory.grow` adds.
    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

/// dlmalloc behind `GlobalAlloc`. A component instance runs one thread.
struct Global(UnsafeCell<dlmalloc::Dlmalloc<InitialThenGrow>>);

// SAFETY: wasm32 without the atomics feature has one thread.
unsafe impl Sync for Global {}

unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one thread, and dlmalloc's contract is `GlobalAlloc`'s.
        unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

#[global_allocator]
static GLOBAL: Global = Global(UnsafeCell::new(dlmalloc::Dlmalloc::new_with_allocator(
    InitialThenGrow {
        claimed: AtomicBool::new(false),
    },
)));
