# condvar_compare's Python row: one side of a ping-pong through two System V
# semaphores with sysv_ipc, as a user of that module would write it.
#
#   python -c <this> ROLE MY_KEY PEER_KEY WARM ROUNDS
#
# ROLE is "ping" (hands over first) or "pong". Each side acquires its own semaphore to
# take its turn and releases the peer's to hand over. Every timed handoff is stamped with
# time.monotonic_ns() (CLOCK_MONOTONIC, the clock the Rust side reads) by its sender just
# before release() and by its receiver just after acquire(). Prints, for the parent:
#   done <round trips> <ping's timed window start> <end>
#   sent <stamp> ...
#   got <stamp> ...
import sys
import time

import sysv_ipc

role = sys.argv[1]
mine = sysv_ipc.Semaphore(int(sys.argv[2]))
peer = sysv_ipc.Semaphore(int(sys.argv[3]))
warm = int(sys.argv[4])
rounds = int(sys.argv[5])
clock = time.monotonic_ns
sent = [0] * rounds
got = [0] * rounds
start = end = 0
done = 0

if role == "ping":
    for _ in range(warm):
        peer.release()
        mine.acquire()
        done += 1
    start = clock()
    for i in range(rounds):
        sent[i] = clock()
        peer.release()
        mine.acquire()
        got[i] = clock()
        done += 1
    end = clock()
else:
    for _ in range(warm):
        mine.acquire()
        peer.release()
        done += 1
    for i in range(rounds):
        mine.acquire()
        got[i] = clock()
        sent[i] = clock()
        peer.release()
        done += 1

print("done", done, start, end)
print("sent", *sent)
print("got", *got)
