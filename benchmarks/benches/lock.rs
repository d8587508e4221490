//! Single-process cost of one lock + unlock, in nanoseconds:
//! `cargo bench -p shmsem-benchmarks --bench lock` (criterion).
//!
//! One group, `uncontended`, so criterion prints the subject and its baselines side by
//! side:
//!
//! - `shmsem lock+unlock`: [`SharedMutex::lock`], then dropping the guard;
//! - `shmsem try_lock+unlock`: [`SharedMutex::try_lock`] (`IPC_NOWAIT`), then the drop;
//! - `shmsem lock_timeout(1s)+unlock`: [`SharedMutex::lock_timeout`] (`semtimedop`);
//! - `raw libc semop P/V (SEM_UNDO)`: the baseline, two `libc::semop` calls on a
//!   one-semaphore set, exactly what a C program would do: what the kernel costs;
//! - `SemaphoreSet::op P/V (SEM_UNDO)`: the same two operations through shmsem's raw
//!   layer: what its checking and `EINTR` handling add.
//!
//! Nobody else touches the objects, so this measures the fast path only. The contended
//! picture, across processes and against other locks, is the `lock_compare` binary
//! (`src/bin/lock_compare/`).
//!
//! Every object is made with `Key::PRIVATE` and removed when the bench ends (also when it
//! panics), so `ipcs -m -s` shows nothing left.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shmsem::{Key, SemOp, SemaphoreSet, SharedMutex};

/// Removes the mutex (segment and semaphore set) when dropped.
struct TempMutex(SharedMutex<u64>);

impl Drop for TempMutex {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("lock bench: removing the mutex: {e}");
        }
    }
}

/// Removes the semaphore set when dropped.
struct TempSet(SemaphoreSet);

impl Drop for TempSet {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("lock bench: removing the semaphore set: {e}");
        }
    }
}

/// One raw `semop` on semaphore 0 of `id`, retried on `EINTR`; panics on any other error
/// (a benchmark has nothing better to do with it).
fn raw_semop(id: i32, delta: i16) {
    let mut op = libc::sembuf {
        sem_num: 0,
        sem_op: delta,
        sem_flg: libc::SEM_UNDO as i16,
    };
    loop {
        // SAFETY: `op` is one initialised sembuf that outlives the call; the kernel only
        // reads it. Semaphore 0 exists in a one-semaphore set.
        let rc = unsafe { libc::semop(id, &mut op, 1) };
        if rc == 0 {
            return;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            panic!("semop({id}, {delta:+}, SEM_UNDO): {err}");
        }
    }
}

fn uncontended(c: &mut Criterion) {
    let mutex = TempMutex(SharedMutex::create(Key::PRIVATE, 0u64).expect("create the mutex"));
    let set = TempSet(SemaphoreSet::create(Key::PRIVATE, 1, 0o600).expect("create the set"));
    set.0.set_value(0, 1).expect("set the semaphore to 1");
    let m = &mutex.0;
    let id = set.0.id();

    let mut group = c.benchmark_group("uncontended");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    group.bench_function("shmsem lock+unlock", |b| {
        b.iter(|| {
            let mut guard = m.lock().expect("lock");
            *guard += 1;
            black_box(&*guard);
        })
    });
    group.bench_function("shmsem try_lock+unlock", |b| {
        b.iter(|| {
            let mut guard = m.try_lock().expect("try_lock on a free mutex");
            *guard += 1;
            black_box(&*guard);
        })
    });
    group.bench_function("shmsem lock_timeout(1s)+unlock", |b| {
        b.iter(|| {
            let mut guard = m
                .lock_timeout(Duration::from_secs(1))
                .expect("lock_timeout");
            *guard += 1;
            black_box(&*guard);
        })
    });
    group.bench_function("raw libc semop P/V (SEM_UNDO)", |b| {
        b.iter(|| {
            raw_semop(black_box(id), -1);
            raw_semop(black_box(id), 1);
        })
    });
    let p = [SemOp::wait(0).undo()];
    let v = [SemOp::post(0).undo()];
    group.bench_function("SemaphoreSet::op P/V (SEM_UNDO)", |b| {
        b.iter(|| {
            set.0.op(black_box(&p)).expect("P");
            set.0.op(black_box(&v)).expect("V");
        })
    });
    group.finish();

    // Sanity: every pair gave the semaphore back, and the mutex is neither held nor
    // poisoned.
    assert_eq!(
        set.0.value(0).expect("GETVAL"),
        1,
        "raw semaphore not back at 1"
    );
    assert!(m.try_lock().is_ok(), "mutex left held or poisoned");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = uncontended
}
criterion_main!(benches);
