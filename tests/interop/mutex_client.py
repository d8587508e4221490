"""A client of a shmsem SharedMutex<u64> that knows only docs/FORMAT.md (version 2):
Python with sysv_ipc (and ctypes for the lease claim), no shmsem code.

    mutex_client.py incr KEY K    lock, add 1 to the u64 payload, unlock; K times.
                                  Exit 3 if the lock is found poisoned.
    mutex_client.py crash KEY     lock, print "locked PID", then block reading stdin
                                  (the test kills the process while it holds the lock).
    mutex_client.py check KEY     lock; print "poisoned_by PID value V" (PID 0: not
                                  poisoned; "?": poisoned by a process whose pid cannot
                                  be told); clear the poison; unlock.

The holder and poison words hold lease tokens, not pids; a token is turned into a pid
(for the messages) as FORMAT.md "Which pid?" says.

KEY is a decimal key_t. Errors are a message and a non-zero exit.
"""

import ctypes
import errno
import os
import struct
import sys
import time

import sysv_ipc

MAGIC = b"shmsem\0\0"
VERSION = 2
KIND_MUTEX = 1
HEADER_SIZE = 64
HOLDER = 44
PANICKED = 1 << 31  # poison word bit: the cause was a panic, not a death
POISON = 48
LEASE_HINT = 52
OWN_SEMS = 1  # a mutex's own semaphores; the lease slots follow
MAX_GEN = 32767  # GEN(i) goes round modulo 32768 (SEMVMX + 1)
# The payload this client expects: a u64.
PAYLOAD_SIZE = 8
PAYLOAD_ALIGN = 8

# The System V calls sysv_ipc does not offer: semop on several semaphores at once, and
# semctl on semaphores other than 0.
libc = ctypes.CDLL(None, use_errno=True)
IPC_NOWAIT, SEM_UNDO = 0o4000, 0x1000
GETPID, GETVAL, GETALL = 11, 12, 13


class sembuf(ctypes.Structure):
    _fields_ = [("num", ctypes.c_ushort), ("op", ctypes.c_short), ("flg", ctypes.c_short)]


class NotManaged(Exception):
    pass


def os_error(call):
    e = ctypes.get_errno()
    return OSError(e, f"{call}: {os.strerror(e)}")


class Mutex:
    def __init__(self, key):
        self.shm = sysv_ipc.SharedMemory(key)  # shmget(key, 0, 0) + shmat
        self.sem = sysv_ipc.Semaphore(key)  # operates on semaphore 0: the lock
        self.sem.undo = True  # SEM_UNDO on acquire and release: mandatory
        # The creator's last step is the first semop on the set, which sets sem_otime.
        deadline = time.monotonic() + 1.0
        while self.sem.o_time == 0:
            if time.monotonic() >= deadline:
                raise NotManaged("sem_otime still 0 after 1 s: creator never finished")
            time.sleep(0.001)
        self.offset, self.nsems = self._validate()
        self.slots = (self.nsems - OWN_SEMS) // 2
        self.token = 0  # claimed before the first lock

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
            raise NotManaged(f"version {version} (this client speaks version {VERSION})")
        if kind not in (1, 2, 3):
            raise NotManaged(f"unknown kind {kind}")
        if align == 0 or align & (align - 1) or align > 4096:
            raise NotManaged(f"payload_align {align}")
        if offset < HEADER_SIZE or offset % align:
            raise NotManaged(f"payload_offset {offset} (align {align})")
        if offset + size > segsz:
            raise NotManaged(f"payload {offset}+{size} past shm_segsz {segsz}")
        # A mutex's set is its lock and then the lease slots, two semaphores each: an odd
        # number, at least 3 (one slot), at most 65535 slots (a token's slot field).
        slots = (nsems - OWN_SEMS) // 2
        if (kind, size, align) != (KIND_MUTEX, PAYLOAD_SIZE, PAYLOAD_ALIGN) or not (
            nsems % 2 == 1 and 1 <= slots <= 0xFFFF
        ):
            raise NotManaged(
                f"layout mismatch: kind {kind}, payload {size} bytes aligned to {align}, "
                f"{nsems} semaphores; expected a mutex of a u64 (1 + 2 x slots semaphores)"
            )
        # sysv_ipc does not show the set's real number of semaphores (sem_nsems), but
        # semctl(GETVAL) answers EINVAL exactly for the indices past it.
        if libc.semctl(self.sem.id, nsems - 1, GETVAL) < 0:
            raise NotManaged(f"header says {nsems} semaphores, the set has fewer")
        if libc.semctl(self.sem.id, nsems, GETVAL) >= 0:
            raise NotManaged(f"header says {nsems} semaphores, the set has more")
        return offset, nsems

    # Lease slots (FORMAT.md "Leases").
    def _held(self, slot):
        return OWN_SEMS + 2 * slot

    def _gen(self, slot):
        return OWN_SEMS + 2 * slot + 1

    def _getval(self, index):
        v = libc.semctl(self.sem.id, index, GETVAL)
        if v < 0:
            raise os_error("semctl(GETVAL)")
        return v

    def claim(self):
        """Claims a free lease slot (once): sets self.token."""
        if self.token:
            return self.token
        values = (ctypes.c_ushort * self.nsems)()
        if libc.semctl(self.sem.id, 0, GETALL, values) < 0:
            raise os_error("semctl(GETALL)")
        # Start at the rotating hint, and move it on, so that a slot freed by a death is
        # reused last (its GETPID stays readable). The hint is advisory: a plain
        # read-and-write (sysv_ipc cannot add atomically) may lose a concurrent bump,
        # which is harmless.
        hint = self._get_u32(LEASE_HINT)
        self._put_u32(LEASE_HINT, (hint + 1) & 0xFFFFFFFF)
        for k in range(self.slots):
            slot = (hint + k) % self.slots
            held, gen = self._held(slot), self._gen(slot)
            if values[held] != 0:
                continue
            bump = -MAX_GEN if values[gen] >= MAX_GEN else 1
            ops = (sembuf * 3)(
                sembuf(held, 0, IPC_NOWAIT),
                sembuf(held, 1, SEM_UNDO | IPC_NOWAIT),
                sembuf(gen, bump, IPC_NOWAIT),
            )
            if libc.semop(self.sem.id, ops, 3) == 0:
                # The slot is ours: GEN(slot) cannot change under us.
                self.token = self._getval(gen) << 16 | (slot + 1)
                return self.token
            if ctypes.get_errno() not in (errno.EAGAIN, errno.ERANGE):
                raise os_error("semop (lease claim)")
        raise RuntimeError(f"all {self.slots} lease slots are held by live handles")

    def release_lease(self):
        """Gives the claim back (only with no lock held)."""
        if self.token:
            slot = (self.token & 0xFFFF) - 1
            op = (sembuf * 1)(sembuf(self._held(slot), -1, SEM_UNDO | IPC_NOWAIT))
            libc.semop(self.sem.id, op, 1)
            self.token = 0

    def pid_of(self, token):
        """FORMAT.md "Which pid?": the pid of the process behind token, 0 if the kernel
        cannot tell any more (slot claimed again since, or not visible here)."""
        slot, generation = (token & 0xFFFF) - 1, token >> 16
        if not (0 <= slot < self.slots and generation <= MAX_GEN):
            return 0  # no token: a corrupt word
        gen = self._gen(slot)
        if self._getval(gen) != generation:
            return 0
        pid = libc.semctl(self.sem.id, gen, GETPID)
        if pid <= 0 or self._getval(gen) != generation:
            return 0
        return pid

    def _get_u32(self, at):
        return struct.unpack("=I", self.shm.read(4, at))[0]

    def _put_u32(self, at, value):
        self.shm.write(struct.pack("=I", value), at)

    def lock(self):
        """Lock steps 1-4. Returns (poison token, its pid): (0, 0) if not poisoned."""
        token = self.claim()
        self.sem.acquire()
        holder = self._get_u32(HOLDER)
        if holder != 0 and self._get_u32(POISON) == 0:
            self._put_u32(POISON, holder)  # a dead holder poisons (the first cause stays)
        self._put_u32(HOLDER, token)
        poisoned_by = self._get_u32(POISON)
        # Its pid right away, before the slot can be claimed again (bit 31: a panic).
        return poisoned_by, (self.pid_of(poisoned_by & ~PANICKED) if poisoned_by else 0)

    def clear_poison(self):
        self._put_u32(POISON, 0)

    def unlock(self, broke_off=False):
        if broke_off and self._get_u32(POISON) == 0:
            self._put_u32(POISON, self.token | PANICKED)  # an exception broke it off
        self._put_u32(HOLDER, 0)
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
            poisoned_by, pid = m.lock()
            if poisoned_by:
                m.unlock()
                print(f"poisoned by {pid or '?'} (token {poisoned_by:#x})", file=sys.stderr)
                sys.exit(3)
            try:
                m.set(m.get() + 1)
            except BaseException:
                m.unlock(broke_off=True)
                raise
            m.unlock()
        m.release_lease()
    elif mode == "crash":
        m.lock()
        print(f"locked {os.getpid()}", flush=True)
        sys.stdin.readline()
        # Only reached if the test went away without killing us: leave cleanly.
        m.unlock()
        m.release_lease()
        sys.exit(2)
    elif mode == "check":
        poisoned_by, pid = m.lock()
        shown = 0 if not poisoned_by else (pid or "?")
        print(f"poisoned_by {shown} value {m.get()}", flush=True)
        m.clear_poison()
        m.unlock()
        m.release_lease()
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
