"""A client of a shmsem SharedMutex<u64> that knows only docs/FORMAT.md (version 1):
Python with sysv_ipc, no shmsem code.

    mutex_client.py incr KEY K    lock, add 1 to the u64 payload, unlock; K times.
                                  Exit 3 if the lock is found poisoned.
    mutex_client.py crash KEY     lock, print "locked PID", then block reading stdin
                                  (the test kills the process while it holds the lock).
    mutex_client.py check KEY     lock; print "poisoned_by PID value V" (PID 0: not
                                  poisoned); clear the poison; unlock.

KEY is a decimal key_t. Errors are a message and a non-zero exit.
"""

import os
import struct
import sys
import time

import sysv_ipc

MAGIC = b"shmsem\0\0"
VERSION = 1
KIND_MUTEX = 1
HEADER_SIZE = 64
HOLDER = 44
POISON = 48
# The payload this client expects: a u64.
PAYLOAD_SIZE = 8
PAYLOAD_ALIGN = 8


class NotManaged(Exception):
    pass


class Mutex:
    def __init__(self, key):
        self.shm = sysv_ipc.SharedMemory(key)  # shmget(key, 0, 0) + shmat
        self.sem = sysv_ipc.Semaphore(key)  # the set of a mutex has one semaphore
        self.sem.undo = True  # SEM_UNDO on acquire and release: mandatory
        # The creator's last step is the first semop on the set, which sets sem_otime.
        deadline = time.monotonic() + 1.0
        while self.sem.o_time == 0:
            if time.monotonic() >= deadline:
                raise NotManaged("sem_otime still 0 after 1 s: creator never finished")
            time.sleep(0.001)
        self.offset = self._validate()

    def _validate(self):
        segsz = self.shm.size
        if segsz < HEADER_SIZE:
            raise NotManaged(f"segment of {segsz} bytes is shorter than the header")
        (magic, version, kind, offset, size, align, nsems) = struct.unpack(
            "=8sIIQQQI", self.shm.read(44, 0)
        )
        if magic != MAGIC:
            raise NotManaged(f"magic {magic!r}")
        if version != VERSION:
            raise NotManaged(f"version {version}")
        if kind not in (1, 2, 3):
            raise NotManaged(f"unknown kind {kind}")
        if align == 0 or align & (align - 1) or align > 4096:
            raise NotManaged(f"payload_align {align}")
        if offset < HEADER_SIZE or offset % align:
            raise NotManaged(f"payload_offset {offset} (align {align})")
        if offset + size > segsz:
            raise NotManaged(f"payload {offset}+{size} past shm_segsz {segsz}")
        # sysv_ipc does not show the set's real number of semaphores (sem_nsems); opening
        # with semget(key, 1, 0) succeeded, so it has at least one.
        if (kind, size, align, nsems) != (KIND_MUTEX, PAYLOAD_SIZE, PAYLOAD_ALIGN, 1):
            raise NotManaged(
                f"layout mismatch: kind {kind}, payload {size} bytes aligned to {align}, "
                f"{nsems} semaphores; expected a mutex of a u64"
            )
        return offset

    def _get_i32(self, at):
        return struct.unpack("=i", self.shm.read(4, at))[0]

    def _put_i32(self, at, value):
        self.shm.write(struct.pack("=i", value), at)

    def lock(self):
        """Lock steps 1-4. Returns the poisoning pid (0 if not poisoned)."""
        self.sem.acquire()
        holder = self._get_i32(HOLDER)
        if holder != 0:
            self._put_i32(POISON, holder)  # a dead holder poisons
        self._put_i32(HOLDER, os.getpid())
        return self._get_i32(POISON)

    def clear_poison(self):
        self._put_i32(POISON, 0)

    def unlock(self, broke_off=False):
        if broke_off:
            self._put_i32(POISON, os.getpid())
        self._put_i32(HOLDER, 0)
        self.sem.release()

    def get(self):
        return struct.unpack("=Q", self.shm.read(8, self.offset))[0]

    def set(self, value):
        self.shm.write(struct.pack("=Q", value), self.offset)


def main():
    mode, key = sys.argv[1], int(sys.argv[2])
    m = Mutex(key)
    if mode == "incr":
        for _ in range(int(sys.argv[3])):
            poisoned_by = m.lock()
            if poisoned_by:
                m.unlock()
                print(f"poisoned by {poisoned_by}", file=sys.stderr)
                sys.exit(3)
            try:
                m.set(m.get() + 1)
            except BaseException:
                m.unlock(broke_off=True)
                raise
            m.unlock()
    elif mode == "crash":
        m.lock()
        print(f"locked {os.getpid()}", flush=True)
        sys.stdin.readline()
        # Only reached if the test went away without killing us: leave cleanly.
        m.unlock()
        sys.exit(2)
    elif mode == "check":
        poisoned_by = m.lock()
        print(f"poisoned_by {poisoned_by} value {m.get()}", flush=True)
        m.clear_poison()
        m.unlock()
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
