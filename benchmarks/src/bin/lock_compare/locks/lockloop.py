# lock_compare's sysv_ipc column: one worker process taking a System V semaphore (value 1,
# SEM_UNDO) with sysv_ipc around an increment of a counter in a System V segment, as a
# user of that module would write it.
#
#   python -c <this> LOCK_KEY READY_KEY GATE_KEY SEGMENT_KEY OPS CAP_NS TIMED WORKERS
#
# Says it is ready (READY += 1), waits for GATE to be 0 (the parent sets it when every
# worker is ready), then does OPS lock, counter += 1, unlock (stopping early once CAP_NS
# have passed). The segment holds little-endian u64s: the counter at 0; at 64 the first
# finisher's end time (0 until a worker has finished), at 72 how many workers started.
# TIMED=1: every acquisition's wait (time.monotonic_ns(), CLOCK_MONOTONIC like the Rust
# workers, before acquire() to after it) is kept, and histogrammed at the end with the
# Rust side's buckets (waits.rs); the worker counts itself in at 72 (under the lock), and
# every 16 operations, until it has seen the first worker finish, looks at 64 and 72, to
# count its operations while all WORKERS competed (the Rust workers look after every
# operation; Python's look costs a read of the segment). Prints, for the parent:
#   done <ops> <start ns> <end ns> <ops when all had started (2^64-1: not seen)>
#        <ops when the first had finished> <worst wait ns> <sum of waits ns>
#   hist <bucket>:<count> ...
import struct
import sys
import time

import sysv_ipc

lock = sysv_ipc.Semaphore(int(sys.argv[1]))
lock.undo = True
ready = sysv_ipc.Semaphore(int(sys.argv[2]))
gate = sysv_ipc.Semaphore(int(sys.argv[3]))
mem = sysv_ipc.SharedMemory(int(sys.argv[4]))
ops = int(sys.argv[5])
cap_ns = int(sys.argv[6])
timed = sys.argv[7] == "1"
workers = int(sys.argv[8])

u64 = struct.Struct("<Q")
pack, unpack = u64.pack, u64.unpack
read, write = mem.read, mem.write
acquire, release = lock.acquire, lock.release
clock = time.monotonic_ns
ZERO = bytes(8)
waits = []
wait = waits.append
at_all = at_first = -1
done = 0

ready.release()
gate.Z()
if timed:
    acquire()
    write(pack(unpack(read(8, 72))[0] + 1), 72)
    release()
start = clock()
stop = start + cap_ns
if timed:
    while done < ops:
        asked = clock()
        acquire()
        got = clock()
        write(pack(unpack(read(8, 0))[0] + 1), 0)
        release()
        wait(got - asked)
        done += 1
        if got > stop:
            break
        if at_first < 0 and done & 15 == 0:
            window = read(16, 64)
            if at_all < 0 and unpack(window[8:])[0] == workers:
                at_all = done
            if window[:8] != ZERO:
                at_first = done
else:
    while done < ops:
        acquire()
        write(pack(unpack(read(8, 0))[0] + 1), 0)
        release()
        done += 1
        if done & 1023 == 0 and clock() > stop:
            break
end = clock()
if timed:
    acquire()
    if read(8, 64) == ZERO:
        write(pack(end), 64)
    release()


def bucket(ns):
    # waits.rs's bucket(): ns below 16, else 16 per power of two, capped at 2^40.
    if ns < 16:
        return ns
    e = ns.bit_length() - 1
    if e > 39:
        return 591
    return (e - 3) * 16 + ((ns >> (e - 4)) & 15)


counts = {}
for w in waits:
    b = bucket(w)
    counts[b] = counts.get(b, 0) + 1
print(
    "done",
    done,
    start,
    end,
    at_all if at_all >= 0 else 2**64 - 1,
    done if at_first < 0 else at_first,
    max(waits, default=0),
    sum(waits),
)
print("hist", " ".join(f"{b}:{n}" for b, n in sorted(counts.items())))
