# A client of a shmsem SharedMutex<u64> that knows only docs/FORMAT.md (version 2):
# Perl with IPC::SysV, IPC::SharedMem and IPC::Semaphore, no shmsem code.
#
#     mutex_client.pl incr KEY K    lock, add 1 to the u64 payload, unlock; K times.
#                                   Exit 3 if the lock is found poisoned.
#     mutex_client.pl crash KEY     lock, print "locked PID", then block reading stdin
#                                   (the test kills the process while it holds the lock).
#
# The holder and poison words hold lease tokens, not pids; a token is turned into a pid
# (for the messages) as FORMAT.md "Which pid?" says.
#
# KEY is a decimal key_t. Errors are a message and a non-zero exit.
use strict;
use warnings;
use IPC::SysV qw(SEM_UNDO IPC_NOWAIT);
use IPC::SharedMem;
use IPC::Semaphore;
use Time::HiRes qw(sleep time);

my $MAGIC       = "shmsem\0\0";
my $VERSION     = 2;
my $HEADER_SIZE = 64;
my $HOLDER      = 44;
my $POISON      = 48;
my $PANICKED    = 1 << 31;   # poison word bit: the cause was a panic (a die here)
my $LEASE_HINT  = 52;
my $OWN_SEMS    = 1;       # a mutex's own semaphores; the lease slots follow
my $MAX_GEN     = 32767;   # GEN(i) goes round modulo 32768 (SEMVMX + 1)

sub open_mutex {
    my ($key) = @_;
    my $shm = IPC::SharedMem->new($key, 0, 0) or die "shmget: $!\n";
    my $sem = IPC::Semaphore->new($key, 0, 0) or die "semget: $!\n";
    # The creator's last step is the first semop on the set, which sets sem_otime.
    my $deadline = time + 1.0;
    while ($sem->stat->otime == 0) {
        die "not managed: sem_otime still 0 after 1 s\n" if time >= $deadline;
        sleep 0.001;
    }
    my $segsz = $shm->stat->segsz;
    die "not managed: segment of $segsz bytes\n" if $segsz < $HEADER_SIZE;
    $shm->attach or die "shmat: $!\n";
    # magic, version, kind, payload_offset, payload_size, payload_align, nsems (native).
    my ($magic, $version, $kind, $offset, $size, $align, $nsems) =
        unpack("a8 L L Q Q Q L", $shm->read(0, 44));
    die "not managed: magic\n"              if $magic ne $MAGIC;
    die "not managed: version $version (this client speaks version $VERSION)\n"
        if $version != $VERSION;
    die "not managed: kind $kind\n"         if $kind < 1 || $kind > 3;
    die "not managed: align $align\n"       if $align == 0 || ($align & ($align - 1)) || $align > 4096;
    die "not managed: offset $offset\n"     if $offset < $HEADER_SIZE || $offset % $align;
    die "not managed: payload past end\n"   if $offset + $size > $segsz;
    my $real_nsems = $sem->stat->nsems;
    die "not managed: set has $real_nsems semaphores, header says $nsems\n"
        if $real_nsems != $nsems;
    # A mutex's set is its lock and then the lease slots, two semaphores each: an odd
    # number, at least 3 (one slot), at most 65535 slots (a token's slot field).
    my $slots = int(($nsems - $OWN_SEMS) / 2);
    die "layout mismatch: kind $kind, size $size, align $align, nsems $nsems\n"
        if $kind != 1 || $size != 8 || $align != 8
        || $nsems % 2 != 1 || $slots < 1 || $slots > 0xFFFF;
    return { shm => $shm, sem => $sem, offset => $offset, nsems => $nsems,
             slots => $slots, token => 0 };
}

sub get_u32 { my ($m, $at) = @_; return unpack("L", $m->{shm}->read($at, 4)) }
sub put_u32 {
    my ($m, $at, $v) = @_;
    $m->{shm}->write(pack("L", $v), $at, 4) or die "write: $!\n";
}

# Lease slots (FORMAT.md "Leases").
sub held_sem { my ($slot) = @_; return $OWN_SEMS + 2 * $slot }
sub gen_sem  { my ($slot) = @_; return $OWN_SEMS + 2 * $slot + 1 }

sub getval {
    my ($m, $index) = @_;
    my $v = $m->{sem}->getval($index);
    die "semctl(GETVAL, $index): $!\n" unless defined $v;
    return $v;
}

# Claims a free lease slot (once); returns this handle's token.
sub claim {
    my ($m) = @_;
    return $m->{token} if $m->{token};
    my @values = $m->{sem}->getall;
    die "semctl(GETALL): $!\n" unless @values == $m->{nsems};
    # Start at the rotating hint, and move it on, so that a slot freed by a death is
    # reused last (its GETPID stays readable). The hint is advisory: a plain
    # read-and-write (shmwrite cannot add atomically) may lose a concurrent bump, which
    # is harmless.
    my $hint = get_u32($m, $LEASE_HINT);
    put_u32($m, $LEASE_HINT, ($hint + 1) & 0xFFFFFFFF);
    for my $k (0 .. $m->{slots} - 1) {
        my $slot = ($hint + $k) % $m->{slots};
        my ($held, $gen) = (held_sem($slot), gen_sem($slot));
        next if $values[$held] != 0;
        my $bump = $values[$gen] >= $MAX_GEN ? -$MAX_GEN : 1;
        # One semop, three operations: exclusive, undone at exit, a new generation.
        if ($m->{sem}->op($held, 0, IPC_NOWAIT,
                          $held, 1, SEM_UNDO | IPC_NOWAIT,
                          $gen, $bump, IPC_NOWAIT)) {
            # The slot is ours: GEN(slot) cannot change under us.
            $m->{token} = (getval($m, $gen) << 16) | ($slot + 1);
            return $m->{token};
        }
        die "semop (lease claim): $!\n" unless $!{EAGAIN} || $!{ERANGE};
    }
    die "all $m->{slots} lease slots are held by live handles\n";
}

# Gives the claim back (only with no lock held).
sub release_lease {
    my ($m) = @_;
    return unless $m->{token};
    my $slot = ($m->{token} & 0xFFFF) - 1;
    $m->{sem}->op(held_sem($slot), -1, SEM_UNDO | IPC_NOWAIT);
    $m->{token} = 0;
}

# FORMAT.md "Which pid?": the pid of the process behind a token, 0 if the kernel cannot
# tell any more (the slot was claimed again since, or the process is not visible here).
sub pid_of {
    my ($m, $token) = @_;
    my ($slot, $generation) = (($token & 0xFFFF) - 1, $token >> 16);
    return 0 if $slot < 0 || $slot >= $m->{slots} || $generation > $MAX_GEN;
    my $gen = gen_sem($slot);
    return 0 if getval($m, $gen) != $generation;
    my $pid = $m->{sem}->getpid($gen) // 0;
    return 0 if getval($m, $gen) != $generation;
    return $pid;
}

sub semop_retry {
    my ($m, $delta) = @_;
    until ($m->{sem}->op(0, $delta, SEM_UNDO)) {
        die "semop: $!\n" unless $!{EINTR};
    }
}

# Lock steps 1-4; returns the poison token and its pid ((0, 0) if not poisoned).
sub lock_mutex {
    my ($m) = @_;
    my $token = claim($m);
    semop_retry($m, -1);
    my $holder = get_u32($m, $HOLDER);
    # A dead holder poisons, unless an earlier cause is there (the first one stays).
    put_u32($m, $POISON, $holder) if $holder != 0 && get_u32($m, $POISON) == 0;
    put_u32($m, $HOLDER, $token);
    my $poisoned_by = get_u32($m, $POISON);
    # Its pid right away, before the slot can be claimed again (bit 31: a panic).
    return ($poisoned_by, $poisoned_by ? pid_of($m, $poisoned_by & ~$PANICKED) : 0);
}

sub unlock_mutex {
    my ($m, $broke_off) = @_;
    put_u32($m, $POISON, $m->{token} | $PANICKED) if $broke_off && get_u32($m, $POISON) == 0;
    put_u32($m, $HOLDER, 0);
    semop_retry($m, 1);
}

my ($mode, $key, $k) = @ARGV;
defined $key or die "usage: mutex_client.pl incr|crash KEY [K]\n";
my $m = open_mutex($key + 0);
if ($mode eq "incr") {
    for (1 .. $k) {
        my ($poisoned_by, $pid) = lock_mutex($m);
        if ($poisoned_by) {
            unlock_mutex($m, 0);
            printf STDERR "poisoned by %s (token %#x)\n", ($pid || "?"), $poisoned_by;
            exit 3;
        }
        my $ok = eval {
            my $v = unpack("Q", $m->{shm}->read($m->{offset}, 8));
            $m->{shm}->write(pack("Q", $v + 1), $m->{offset}, 8) or die "write: $!\n";
            1;
        };
        unless ($ok) {
            unlock_mutex($m, 1);
            die $@;
        }
        unlock_mutex($m, 0);
    }
    release_lease($m);
} elsif ($mode eq "crash") {
    lock_mutex($m);
    $| = 1;
    print "locked $$\n";
    <STDIN>;
    # Only reached if the test went away without killing us: leave cleanly.
    unlock_mutex($m, 0);
    release_lease($m);
    exit 2;
} else {
    die "unknown mode '$mode'\n";
}
