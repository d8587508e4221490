"""A client of a shmsem SharedCondvar, used with a SharedMutex<u64>, that knows only
docs/FORMAT.md (version 2: "Header", "Leases", "Creation", "Mutex (kind 1)", "Condvar
(kind 4)"): Python with sysv_ipc, and ctypes for the multi-operation semop/semtimedop
and the semctl calls sysv_ipc does not offer. No shmsem code.

MKEY is the mutex's key, CKEY the condvar's (decimal key_t); the u64 payload of the
mutex is the shared state.

    condvar_client.py take MKEY CKEY TIMEOUT
        Lock; wait while the value is 0 (at most TIMEOUT seconds in all, spurious
        wake-ups looped over); subtract 1; unlock. Before each sleep (after releasing the
        mutex) print "waiting SLOT" (the lease slot, i.e. WAKE semaphore, it sleeps on).
        At the end print "took WAKEUPS" (the number of waits that returned notified).
    condvar_client.py post MKEY CKEY N one|all
        Lock; add N; unlock; notify one / all. Print "notified K" (the number of waits
        the notification reached).
    condvar_client.py ring MKEY CKEY ME N TOTAL one|all TIMEOUT
        Participant ME of N taking turns: wait (each wait at most TIMEOUT seconds) while
        value % N != ME and value < TOTAL; if value < TOTAL add 1 and notify one / all;
        until the value reaches TOTAL. Print "done WAITS WAKEUPS" at the end.

Exit status: 0 done; 2 a wait timed out (the line "timeout" is printed); 3 the mutex
came back poisoned ("poisoned PID", PID "?" if the kernel cannot tell it any more);
4 the condvar was removed while waiting ("removed"; the mutex is not locked again).
Other errors are a message and another non-zero exit.
"""

import ctypes
import errno
import os
import struct
import sys
import time

import sysv_ipc

# The mutex side (lock, unlock, lease claim, poison) is the mutex client's, which
# follows FORMAT.md "Mutex (kind 1)".
from mutex_client import HEADER_SIZE, LEASE_HINT, MAGIC, MAX_GEN, VERSION, Mutex, NotManaged

KIND_CONDVAR = 4
OWN = 256  # WAKE(i) is semaphore i
SLOTS = 256  # lease slots: HELD(i) = OWN + 2i, GEN(i) = OWN + 2i + 1
NSEMS = OWN + 2 * SLOTS
PAYLOAD_SIZE = 1088
PAYLOAD_ALIGN = 8
CURSOR = 1024  # in the payload, after the 256 waiter words

IPC_NOWAIT, SEM_UNDO = 0o4000, 0x1000
GETVAL, GETALL = 12, 13


class sembuf(ctypes.Structure):
    _fields_ = [("num", ctypes.c_ushort), ("op", ctypes.c_short), ("flg", ctypes.c_short)]


class timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


# A libc handle of our own, with prototypes (semop's count is a size_t).
libc = ctypes.CDLL(None, use_errno=True)
libc.semop.argtypes = [ctypes.c_int, ctypes.POINTER(sembuf), ctypes.c_size_t]
libc.semtimedop.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(sembuf),
    ctypes.c_size_t,
    ctypes.POINTER(timespec),
]


class Removed(Exception):
    pass


class Poisoned(Exception):
    def __init__(self, pid):
        super().__init__(f"poisoned by {pid or '?'}")
        self.pid = pid


def ops(*triples):
    return (sembuf * len(triples))(*(sembuf(n, o, f) for (n, o, f) in triples))


def HELD(i):
    return OWN + 2 * i


def GEN(i):
    return OWN + 2 * i + 1


class Condvar:
    def __init__(self, key):
        self.shm = sysv_ipc.SharedMemory(key)  # shmget(key, 0, 0) + shmat
        self.sem = sysv_ipc.Semaphore(key)  # only for the set's id and sem_otime
        self.id = self.sem.id
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
            raise NotManaged(f"version {version} (this client speaks version {VERSION})")
        if kind not in (1, 2, 3, 4):
            raise NotManaged(f"unknown kind {kind}")
        if align == 0 or align & (align - 1) or align > 4096:
            raise NotManaged(f"payload_align {align}")
        if offset < HEADER_SIZE or offset % align:
            raise NotManaged(f"payload_offset {offset} (align {align})")
        if offset + size > segsz:
            raise NotManaged(f"payload {offset}+{size} past shm_segsz {segsz}")
        if (kind, size, align, nsems) != (KIND_CONDVAR, PAYLOAD_SIZE, PAYLOAD_ALIGN, NSEMS):
            raise NotManaged(
                f"layout mismatch: kind {kind}, payload {size} bytes aligned to {align}, "
                f"{nsems} semaphores; expected a condvar ({PAYLOAD_SIZE} bytes aligned "
                f"to {PAYLOAD_ALIGN}, {NSEMS} semaphores)"
            )
        # The set's real size: semctl(GETVAL) answers EINVAL exactly past its end.
        if libc.semctl(self.id, NSEMS - 1, GETVAL) < 0:
            raise NotManaged(f"header says {NSEMS} semaphores, the set has fewer")
        if libc.semctl(self.id, NSEMS, GETVAL) >= 0:
            raise NotManaged(f"header says {NSEMS} semaphores, the set has more")
        return offset

    def _get_u32(self, at):
        return struct.unpack("=I", self.shm.read(4, at))[0]

    def _put_u32(self, at, value):
        self.shm.write(struct.pack("=I", value), at)

    def _word_at(self, i):
        return self.offset + 4 * i

    @staticmethod
    def _fail(call):
        e = ctypes.get_errno()
        if e in (errno.EIDRM, errno.EINVAL):
            raise Removed()
        raise OSError(e, f"{call}: {os.strerror(e)}")

    def _values(self):
        values = (ctypes.c_ushort * NSEMS)()
        if libc.semctl(self.id, 0, GETALL, values) < 0:
            self._fail("semctl(GETALL)")
        return values

    # W1: a lease slot of our own, with WAKE(i) 0, for this one wait.
    def _claim(self):
        for attempt in range(2):
            values = self._values()
            hint = self._get_u32(LEASE_HINT)  # advisory: a lost concurrent bump is harmless
            self._put_u32(LEASE_HINT, (hint + 1) & 0xFFFFFFFF)
            for k in range(SLOTS):
                i = (hint + k) % SLOTS
                if values[i] != 0 or values[HELD(i)] != 0:
                    continue
                d = -MAX_GEN if values[GEN(i)] >= MAX_GEN else 1
                claim = ops(
                    (i, 0, IPC_NOWAIT),
                    (HELD(i), 0, IPC_NOWAIT),
                    (HELD(i), 1, SEM_UNDO | IPC_NOWAIT),
                    (GEN(i), d, IPC_NOWAIT),
                )
                if libc.semop(self.id, claim, 4) == 0:
                    gen = libc.semctl(self.id, GEN(i), GETVAL)  # ours: cannot change
                    if gen < 0:
                        self._fail("semctl(GETVAL)")
                    return i, gen << 16 | (i + 1)
                if ctypes.get_errno() not in (errno.EAGAIN, errno.ERANGE):
                    self._fail("semop (W1 claim)")
            # No free slot. Slots left with WAKE(i) 1 and HELD(i) 0 (a waiter killed
            # between the two operations of W5) are reset, as shmsem does, and the
            # search made once more.
            for i in range(SLOTS):
                if values[i] != 0 and values[HELD(i)] == 0:
                    libc.semop(self.id, ops((HELD(i), 0, IPC_NOWAIT), (i, -1, IPC_NOWAIT)), 2)
        raise RuntimeError(f"all {SLOTS} slots are held by live waits")

    def wait(self, mutex, timeout, announce=False):
        """One wait (W1-W6) with `mutex` (a mutex_client.Mutex) held, at most `timeout`
        seconds. Returns True if notified (possibly spuriously), False if timed out; the
        mutex is held again either way. Raises Poisoned (mutex held, poisoned) or Removed
        (mutex not held)."""
        deadline = time.monotonic() + timeout
        try:
            slot, token = self._claim()  # W1: registered
        except Removed:
            mutex.unlock()  # Removed means: the mutex is not held
            raise
        self._put_u32(self._word_at(slot), token)  # W2
        mutex.unlock()  # W3
        if announce:
            print(f"waiting {slot}", flush=True)
        # W4: the notification and the slot's release in one operation.
        sleep = ops((slot, -1, 0), (HELD(slot), -1, SEM_UNDO))
        notified = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ts = timespec(int(left), int((left - int(left)) * 1e9))
            if libc.semtimedop(self.id, sleep, 2, ctypes.byref(ts)) == 0:
                notified = True
                break
            e = ctypes.get_errno()
            if e == errno.EINTR:
                continue
            if e == errno.EAGAIN:  # the time ran out
                break
            self._fail("semtimedop (W4)")
        if not notified:
            # W5: give the slot back unless a notification came in meanwhile.
            give_back = ops((HELD(slot), -1, SEM_UNDO | IPC_NOWAIT), (slot, 0, IPC_NOWAIT))
            if libc.semop(self.id, give_back, 2) != 0:
                if ctypes.get_errno() != errno.EAGAIN:
                    self._fail("semop (W5)")
                take = ops((slot, -1, IPC_NOWAIT), (HELD(slot), -1, SEM_UNDO | IPC_NOWAIT))
                if libc.semop(self.id, take, 2) != 0:
                    self._fail("semop (W5, taking the notification)")
                notified = True
        # W6: word(slot) is left as it is: sysv_ipc has no compare-and-swap, and a plain
        # store could erase the token of a new wait in the slot (notifiers clear it).
        lock_checked(mutex)
        return notified

    def wait_while(self, mutex, condition, timeout, announce=False):
        """Waits while condition() holds (checked with the mutex held), at most `timeout`
        seconds in all. Returns (notified wake-ups, timed_out)."""
        deadline = time.monotonic() + timeout
        wakeups = 0
        while condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return wakeups, True
            wakeups += self.wait(mutex, left, announce)
        return wakeups, False

    def notify(self, everyone):
        """N1-N3; returns the number of waits woken (at most 1 for notify-one)."""
        words = struct.unpack("=256I", self.shm.read(4 * SLOTS, self.offset))  # N1
        start = 0 if everyone else self._get_u32(self.offset + CURSOR) % SLOTS
        woken = 0
        for k in range(SLOTS):
            i = (start + k) % SLOTS
            if words[i] == 0:
                continue
            wake = ops(
                (HELD(i), -1, IPC_NOWAIT),
                (HELD(i), 1, 0),
                (i, 0, IPC_NOWAIT),
                (i, 1, 0),
            )
            if libc.semop(self.id, wake, 4) == 0:  # N2
                woken += 1
                if not everyone:
                    self._put_u32(self.offset + CURSOR, (i + 1) % SLOTS)
                    return woken
            elif ctypes.get_errno() != errno.EAGAIN:
                self._fail("semop (N2)")
            # N3 (clearing a gone waiter's word) needs compare-and-swap: a plain store
            # could erase a new wait's token. Left to notifiers that have one.
        return woken


def lock_checked(mutex):
    """Lock; raise Poisoned (holding the lock) if it is poisoned."""
    poisoned_by, pid = mutex.lock()
    if poisoned_by:
        raise Poisoned(pid)


def main():
    mode, mkey, ckey = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    m = Mutex(mkey)
    cv = Condvar(ckey)
    try:
        if mode == "take":
            timeout = float(sys.argv[4])
            lock_checked(m)
            wakeups, timed_out = cv.wait_while(m, lambda: m.get() == 0, timeout, True)
            if timed_out:
                m.unlock()
                print("timeout", flush=True)
                sys.exit(2)
            m.set(m.get() - 1)
            m.unlock()
            print(f"took {wakeups}", flush=True)
        elif mode == "post":
            n, how = int(sys.argv[4]), sys.argv[5]
            lock_checked(m)
            m.set(m.get() + n)
            m.unlock()
            print(f"notified {cv.notify(how == 'all')}", flush=True)
        elif mode == "ring":
            me, n, total = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
            everyone, timeout = sys.argv[7] == "all", float(sys.argv[8])
            waits = wakeups = 0
            while True:
                lock_checked(m)
                w, timed_out = cv.wait_while(
                    m, lambda: m.get() % n != me and m.get() < total, timeout
                )
                wakeups += w
                waits += 1
                if timed_out:
                    m.unlock()
                    print(f"timeout at {m.get()}", flush=True)
                    sys.exit(2)
                value = m.get()
                if value >= total:
                    m.unlock()
                    break
                m.set(value + 1)
                m.unlock()
                cv.notify(everyone)
            print(f"done {waits} {wakeups}", flush=True)
        else:
            sys.exit(f"unknown mode {mode!r}")
    except Poisoned as p:
        # Held, poisoned: report, and leave the poison for the test to see.
        print(f"poisoned {p.pid or '?'}", flush=True)
        m.unlock()
        sys.exit(3)
    except Removed:
        print("removed", flush=True)
        sys.exit(4)
    m.release_lease()


if __name__ == "__main__":
    main()
