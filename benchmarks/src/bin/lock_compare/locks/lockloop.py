# lock_compare's sysv_ipc column: one worker process taking a System V semaphore (value 1,
# SEM_UNDO) with sysv_ipc around an increment of a counter in a System V segment, as a
# user of that module would write it.
#
#   python -c <this> LOCK_KEY READY_KEY GATE_KEY SEGMENT_KEY OPS CAP_NS TIMED
#
# Says it is ready (READY += 1), waits for GATE to be 0 (the parent sets it when every
# worker is ready), then does OPS lock, counter += 1, unlock (stopping early once CAP_NS
# have passed). The counter is the first u64 (little-endian) of the segment; the u64 at
# offset 64 is 0 until the first worker to finish writes its end time there. TIMED=1:
# every acquisition's wait (time.monotonic_ns(), CLOCK_MONOTONIC like the Rust workers,
# before acquire() to after it) is kept, and histogrammed at the end with the Rust side's
# buckets (waits.rs); every 16 operations, until the first worker finished, the word at
# 64 is looked at, to count this worker's operations until then. Prints, for the parent:
#   done <ops done> <start ns> <end ns> <ops done when the first finished> <worst wait ns>
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

u64 = struct.Struct("<Q")
pack, unpack = u64.pack, u64.unpack
read, write = mem.read, mem.write
acquire, release = lock.acquire, lock.release
clock = time.monotonic_ns
ZERO = bytes(8)
waits = []
wait = waits.append
at_first = -1
done = 0

ready.release()
gate.Z()
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
        if at_first < 0 and done & 15 == 0 and read(8, 64) != ZERO:
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
print("done", done, start, end, done if at_first < 0 else at_first, max(waits, default=0))
print("hist", " ".join(f"{b}:{n}" for b, n in sorted(counts.items())))
