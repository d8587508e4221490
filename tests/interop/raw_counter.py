"""Raw-layer interop client (Python, sysv_ipc): a native-endian u64 at offset 0 of an
8-byte System V segment, guarded by a set of one System V semaphore (1 = free) under the
same key. Lock is P with SEM_UNDO, unlock is V with SEM_UNDO. No shmsem header.

    raw_counter.py create KEY    create both objects exclusively (counter 0, semaphore 1)
    raw_counter.py incr KEY K    add 1 to the counter K times, under the semaphore

KEY is a decimal key_t. Exits 0 on success; any error is a traceback and a non-zero exit.
"""

import struct
import sys

import sysv_ipc

SIZE = 8


def create(key):
    shm = sysv_ipc.SharedMemory(key, sysv_ipc.IPC_CREX, 0o600, SIZE)
    # sysv_ipc fills a new segment with its init_character (a space by default), so the
    # counter is set explicitly.
    shm.write(struct.pack("=Q", 0), 0)
    shm.detach()
    # initial_value is set with semctl(SETVAL) right after semget.
    sysv_ipc.Semaphore(key, sysv_ipc.IPC_CREX, 0o600, 1)


def incr(key, k):
    shm = sysv_ipc.SharedMemory(key)
    if shm.size != SIZE:
        sys.exit(f"segment is {shm.size} bytes, expected {SIZE}")
    sem = sysv_ipc.Semaphore(key)
    sem.undo = True  # SEM_UNDO on acquire and release
    for _ in range(k):
        sem.acquire()
        (value,) = struct.unpack("=Q", shm.read(8, 0))
        shm.write(struct.pack("=Q", value + 1), 0)
        sem.release()
    shm.detach()


def main():
    mode, key = sys.argv[1], int(sys.argv[2])
    if mode == "create":
        create(key)
    elif mode == "incr":
        incr(key, int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
