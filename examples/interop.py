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

import ctypes
import errno
import os
import struct
import sys
import time

import sysv_ipc

# docs/FORMAT.md, "Header (offset 0, 64 bytes)"
MAGIC = b"shmsem\0\0"
VERSION = 2
KIND_MUTEX = 1
HEADER_SIZE = 64
HOLDER = 44  # live word: lease token of the handle inside the critical section, 0 if none
PANICKED = 1 << 31  # poison word bit: the cause was a panic (an exception here)
POISON = 48  # live word: lease token whose critical section broke off, 0 if none
LEASE_HINT = 52  # live word: where the next lease claim starts looking (advisory)
OWN_SEMS = 1  # a mutex's own semaphore (the lock); the lease slots follow, 2 each
MAX_GEN = 32767  # a slot's GEN semaphore goes round modulo 32768

# docs/FORMAT.md, "Leases": the lease claim is one semop on three semaphores, and a
# token's pid is semctl(GETPID) on another semaphore than 0; sysv_ipc offers neither.
libc = ctypes.CDLL(None, use_errno=True)
IPC_NOWAIT, SEM_UNDO = 0o4000, 0x1000
GETPID, GETVAL, GETALL = 11, 12, 13


class sembuf(ctypes.Structure):
    _fields_ = [("num", ctypes.c_ushort), ("op", ctypes.c_short), ("flg", ctypes.c_short)]


class SharedMutexU64:
    """A client of a shmsem SharedMutex<u64>: the lock protocol of docs/FORMAT.md."""

    def __init__(self, key):
        self.shm = sysv_ipc.SharedMemory(key)  # opens (shmget(key, 0, 0)) and attaches
        self.sem = sysv_ipc.Semaphore(key)  # operates on semaphore 0: the lock
        self.sem.undo = True  # SEM_UNDO on acquire and release: mandatory
        # The creator's last step is the first semop on the set, which sets sem_otime:
        # until then the object is still being made (bounded wait, as shmsem's own).
        deadline = time.monotonic() + 1.0
        while self.sem.o_time == 0:
            if time.monotonic() >= deadline:
                sys.exit("not a finished shmsem object: sem_otime is still 0 after 1 s")
            time.sleep(0.001)
        self.offset, self.nsems = self._validate()
        self.slots = (self.nsems - OWN_SEMS) // 2
        self.token = self._claim()  # this process's lease token

    def _validate(self):
        segsz = self.shm.size
        if segsz < HEADER_SIZE:
            sys.exit(f"not a shmsem object: {segsz} bytes, shorter than the header")
        magic, version, kind, offset, size, align, nsems = struct.unpack(
            "=8sIIQQQI", self.shm.read(44, 0)
        )
        if magic != MAGIC or version != VERSION:
            sys.exit(f"not a shmsem object (magic {magic!r}, version {version})")
        # The lock, then the lease slots (two semaphores each): odd, at least 3.
        slots = (nsems - OWN_SEMS) // 2
        odd = nsems % 2 == 1
        if (kind, size, align) != (KIND_MUTEX, 8, 8) or not odd or not 1 <= slots <= 0xFFFF:
            sys.exit(
                f"not a SharedMutex<u64>: kind {kind}, payload {size} bytes aligned to "
                f"{align}, {nsems} semaphores"
            )
        if offset < HEADER_SIZE or offset % align or offset + size > segsz:
            sys.exit(f"corrupt header: payload at {offset} in a {segsz}-byte segment")
        # sysv_ipc does not show the set's real size; GETVAL fails exactly past its end.
        sem_id = self.sem.id
        if libc.semctl(sem_id, nsems - 1, GETVAL) < 0 or libc.semctl(sem_id, nsems, GETVAL) >= 0:
            sys.exit(f"corrupt header: the semaphore set does not have {nsems} semaphores")
        return offset, nsems

    def _claim(self):
        """FORMAT.md "Leases", Claim: take a free slot for this process; its token."""
        values = (ctypes.c_ushort * self.nsems)()
        if libc.semctl(self.sem.id, 0, GETALL, values) < 0:
            sys.exit(f"semctl(GETALL): {os.strerror(ctypes.get_errno())}")
        # Start at the hint and move it on (advisory: a lost concurrent bump is harmless),
        # so that a slot freed by a death is reused last and its pid stays readable.
        hint = self._get_u32(LEASE_HINT)
        self._put_u32(LEASE_HINT, (hint + 1) & 0xFFFFFFFF)
        for k in range(self.slots):
            slot = (hint + k) % self.slots
            held, gen = OWN_SEMS + 2 * slot, OWN_SEMS + 2 * slot + 1
            if values[held] != 0:
                continue
            bump = -MAX_GEN if values[gen] >= MAX_GEN else 1
            ops = (sembuf * 3)(sembuf(held, 0, IPC_NOWAIT),  # exclusive
                               sembuf(held, 1, SEM_UNDO | IPC_NOWAIT),  # undone at exit
                               sembuf(gen, bump, IPC_NOWAIT))  # a new generation
            if libc.semop(self.sem.id, ops, 3) == 0:
                return libc.semctl(self.sem.id, gen, GETVAL) << 16 | (slot + 1)
            if ctypes.get_errno() not in (errno.EAGAIN, errno.ERANGE):
                sys.exit(f"semop (lease claim): {os.strerror(ctypes.get_errno())}")
        sys.exit(f"all {self.slots} lease slots of the mutex are held by live handles")

    def pid_of(self, token):
        """FORMAT.md "Which pid?": the pid behind a token, 0 if the kernel cannot tell."""
        slot, generation = (token & 0xFFFF) - 1, token >> 16
        if not (0 <= slot < self.slots and generation <= MAX_GEN):
            return 0  # not a token: a corrupt word
        gen = OWN_SEMS + 2 * slot + 1
        if libc.semctl(self.sem.id, gen, GETVAL) != generation:
            return 0  # the slot was claimed again since
        pid = libc.semctl(self.sem.id, gen, GETPID)
        return pid if pid > 0 and libc.semctl(self.sem.id, gen, GETVAL) == generation else 0

    def _get_u32(self, at):
        return struct.unpack("=I", self.shm.read(4, at))[0]

    def _put_u32(self, at, value):
        self.shm.write(struct.pack("=I", value), at)

    def lock(self):
        """FORMAT.md "Lock", steps 1-4. Returns the token that poisoned the lock and its
        pid (0 if the kernel cannot tell), or (0, 0)."""
        self.sem.acquire()  # semop(-1, SEM_UNDO)
        holder = self._get_u32(HOLDER)
        # A holder recorded is one that died inside; it poisons unless an earlier cause
        # is there already (the first cause stays until cleared).
        if holder != 0 and self._get_u32(POISON) == 0:
            self._put_u32(POISON, holder)
        self._put_u32(HOLDER, self.token)
        poisoned_by = self._get_u32(POISON)  # bit 31 set: the cause was a panic
        return poisoned_by, (self.pid_of(poisoned_by & ~PANICKED) if poisoned_by else 0)

    def unlock(self, broke_off=False):
        """FORMAT.md "Unlock", steps 1-3."""
        if broke_off and self._get_u32(POISON) == 0:
            self._put_u32(POISON, self.token | PANICKED)
        self._put_u32(HOLDER, 0)
        self.sem.release()  # semop(+1, SEM_UNDO)

    def clear_poison(self):
        self._put_u32(POISON, 0)

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
        poisoned_by, pid = m.lock()
        if poisoned_by:
            # A process died inside. A counter needs no repair beyond noting it.
            who = f"pid {pid}" if pid else f"token {poisoned_by:#x} (pid unknown here)"
            print(f"python: the lock was poisoned by {who}; clearing", flush=True)
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
