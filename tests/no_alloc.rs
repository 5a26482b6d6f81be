//! `edge` allocates nothing while running: a counting global allocator sees zero allocations
//! (and zero reallocations) across `Model::parse` and `Model::run`.

mod common;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::SeqCst) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::SeqCst) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn parse_and_run_allocate_nothing() {
    let file = common::atto();
    let x = common::read_f32("atto/inputs/astronaut.bin");
    let mut arena = vec![0u8; 4 << 20];
    let mut logits = vec![0f32; 1000];
    COUNTING.store(true, Ordering::SeqCst);
    let model = edge::Model::parse(file.as_slice()).unwrap();
    model
        .run(edge::Input::NchwF32(&x), &mut arena, &mut logits)
        .unwrap();
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0);
    // And it computed something real.
    assert!(common::max_abs(&logits, &common::read_f32("atto/logits/astronaut.bin")) <= 1e-4);
}
