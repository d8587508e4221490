//! The physical reference, no second process: one thread copying the same bytes in
//! messages of the same size, from a source as large as the queue's ring into one reused
//! buffer. (A queue copies every byte twice, in and out, on two cores.)

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::queue::ring_for;

pub fn run(size: usize, count: u64) -> Duration {
    let src = vec![0x5a_u8; ring_for(size)];
    let mut dst = vec![0u8; size];
    let mut at = 0;
    let start = Instant::now();
    for _ in 0..count {
        if at + size > src.len() {
            at = 0;
        }
        dst.copy_from_slice(black_box(&src[at..at + size]));
        black_box(&mut dst);
        at += size;
    }
    start.elapsed()
}
