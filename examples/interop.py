"""Python taking part in a shmsem SharedMutex<u64> made by Rust: open it following
docs/FORMAT.md (no shmsem code on this side), and increment the counter under the lock.

Needs Python 3 with sysv_ipc (https://pypi.org/project/sysv-ipc/):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install sysv_ipc

Together with its Rust companion, examples/interop_host.rs, which creates the mutex,
starts this script, increments the same counter from Rust at the same time, checks the
total and removes the objects:

    SHMSEM_PYTHON=/tmp/venv/bin/python cargo run --example interop_host

Or by hand, in two terminals:

    terminal 1$ cargo run --example interop_host -- --serve     # creates, prints KEY, waits
    terminal 2$ /tmp/venv/bin/python examples/interop.py KEY 1000
    terminal 1   (press Enter: prints the counter, removes the mutex)

usage: interop.py KEY [INCREMENTS (default 1000)]    KEY: 0x-prefixed hex or decimal
"""

import os
import struct
import sys
import time

import sysv_ipc

# docs/FORMAT.md, "Header (offset 0, 64 bytes)"
MAGIC = b"shmsem\0\0"
VERSION = 1
KIND_MUTEX = 1
HEADER_SIZE = 64
HOLDER = 44  # live word: pid inside the critical section, 0 if none
POISON = 48  # live word: pid whose critical section broke off, 0 if none


class SharedMutexU64:
    """A client of a shmsem SharedMutex<u64>: the lock protocol of docs/FORMAT.md."""

    def __init__(self, key):
        self.shm = sysv_ipc.SharedMemory(key)  # opens (shmget(key, 0, 0)) and attaches
        self.sem = sysv_ipc.Semaphore(key)  # a mutex's set has exactly one semaphore
        self.sem.undo = True  # SEM_UNDO on acquire and release: mandatory
        # The creator's last step is the first semop on the set, which sets sem_otime:
        # until then the object is still being made (bounded wait, as shmsem's own).
        deadline = time.monotonic() + 1.0
        while self.sem.o_time == 0:
            if time.monotonic() >= deadline:
                sys.exit("not a finished shmsem object: sem_otime is still 0 after 1 s")
            time.sleep(0.001)
        self.offset = self._validate()

    def _validate(self):
        segsz = self.shm.size
        if segsz < HEADER_SIZE:
            sys.exit(f"not a shmsem object: {segsz} bytes, shorter than the header")
        magic, version, kind, offset, size, align, nsems = struct.unpack(
            "=8sIIQQQI", self.shm.read(44, 0)
        )
        if magic != MAGIC or version != VERSION:
            sys.exit(f"not a shmsem object (magic {magic!r}, version {version})")
        if (kind, size, align, nsems) != (KIND_MUTEX, 8, 8, 1):
            sys.exit(
                f"not a SharedMutex<u64>: kind {kind}, payload {size} bytes aligned to "
                f"{align}, {nsems} semaphores"
            )
        if offset < HEADER_SIZE or offset % align or offset + size > segsz:
            sys.exit(f"corrupt header: payload at {offset} in a {segsz}-byte segment")
        return offset

    def _get_i32(self, at):
        return struct.unpack("=i", self.shm.read(4, at))[0]

    def _put_i32(self, at, value):
        self.shm.write(struct.pack("=i", value), at)

    def lock(self):
        """FORMAT.md "Lock", steps 1-4. Returns the pid that poisoned the lock, or 0."""
        self.sem.acquire()  # semop(-1, SEM_UNDO)
        holder = self._get_i32(HOLDER)
        if holder != 0:  # a holder recorded is one that died inside
            self._put_i32(POISON, holder)
        self._put_i32(HOLDER, os.getpid())
        return self._get_i32(POISON)

    def unlock(self, broke_off=False):
        """FORMAT.md "Unlock", steps 1-3."""
        if broke_off:
            self._put_i32(POISON, os.getpid())
        self._put_i32(HOLDER, 0)
        self.sem.release()  # semop(+1, SEM_UNDO)

    def clear_poison(self):
        self._put_i32(POISON, 0)

    def get(self):
        return struct.unpack("=Q", self.shm.read(8, self.offset))[0]

    def set(self, value):
        self.shm.write(struct.pack("=Q", value), self.offset)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__.strip().splitlines()[-1])
    key = int(sys.argv[1], 0)
    if key > 0x7FFFFFFF:  # key_t is a signed 32-bit int: 0xffffffff is -1
        key -= 1 << 32
    increments = int(sys.argv[2]) if len(sys.argv) == 3 else 1000

    try:
        m = SharedMutexU64(key)
    except sysv_ipc.ExistentialError as e:
        sys.exit(f"{e}: start the Rust side first (cargo run --example interop_host -- --serve)")
    print(f"python {os.getpid()}: opened the SharedMutex<u64> {key & 0xFFFFFFFF:#010x}", flush=True)
    for _ in range(increments):
        poisoned_by = m.lock()
        if poisoned_by:
            # A process died inside. A counter needs no repair beyond noting it.
            print(f"python: the lock was poisoned by pid {poisoned_by}; clearing", flush=True)
            m.clear_poison()
        try:
            m.set(m.get() + 1)
        except BaseException:
            m.unlock(broke_off=True)
            raise
        m.unlock()
    m.lock()
    value = m.get()
    m.unlock()
    print(f"python {os.getpid()}: added {increments}; the counter is now {value}", flush=True)


if __name__ == "__main__":
    main()
