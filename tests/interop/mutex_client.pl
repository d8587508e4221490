# A client of a shmsem SharedMutex<u64> that knows only docs/FORMAT.md (version 1):
# Perl with IPC::SysV, IPC::SharedMem and IPC::Semaphore, no shmsem code.
#
#     mutex_client.pl incr KEY K    lock, add 1 to the u64 payload, unlock; K times.
#                                   Exit 3 if the lock is found poisoned.
#     mutex_client.pl crash KEY     lock, print "locked PID", then block reading stdin
#                                   (the test kills the process while it holds the lock).
#
# KEY is a decimal key_t. Errors are a message and a non-zero exit.
use strict;
use warnings;
use IPC::SysV qw(SEM_UNDO);
use IPC::SharedMem;
use IPC::Semaphore;
use Time::HiRes qw(sleep time);

my $MAGIC       = "shmsem\0\0";
my $HEADER_SIZE = 64;
my $HOLDER      = 44;
my $POISON      = 48;

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
    die "not managed: version $version\n"   if $version != 1;
    die "not managed: kind $kind\n"         if $kind < 1 || $kind > 3;
    die "not managed: align $align\n"       if $align == 0 || ($align & ($align - 1)) || $align > 4096;
    die "not managed: offset $offset\n"     if $offset < $HEADER_SIZE || $offset % $align;
    die "not managed: payload past end\n"   if $offset + $size > $segsz;
    my $real_nsems = $sem->stat->nsems;
    die "not managed: set has $real_nsems semaphores, header says $nsems\n"
        if $real_nsems != $nsems;
    die "layout mismatch: kind $kind, size $size, align $align, nsems $nsems\n"
        if $kind != 1 || $size != 8 || $align != 8 || $nsems != 1;
    return { shm => $shm, sem => $sem, offset => $offset };
}

sub get_i32 { my ($m, $at) = @_; return unpack("l", $m->{shm}->read($at, 4)) }
sub put_i32 { my ($m, $at, $v) = @_; $m->{shm}->write(pack("l", $v), $at, 4) or die "write: $!\n" }

sub semop_retry {
    my ($m, $delta) = @_;
    until ($m->{sem}->op(0, $delta, SEM_UNDO)) {
        die "semop: $!\n" unless $!{EINTR};
    }
}

# Lock steps 1-4; returns the poisoning pid (0 if not poisoned).
sub lock_mutex {
    my ($m) = @_;
    semop_retry($m, -1);
    my $holder = get_i32($m, $HOLDER);
    put_i32($m, $POISON, $holder) if $holder != 0;
    put_i32($m, $HOLDER, $$);
    return get_i32($m, $POISON);
}

sub unlock_mutex {
    my ($m, $broke_off) = @_;
    put_i32($m, $POISON, $$) if $broke_off;
    put_i32($m, $HOLDER, 0);
    semop_retry($m, 1);
}

my ($mode, $key, $k) = @ARGV;
defined $key or die "usage: mutex_client.pl incr|crash KEY [K]\n";
my $m = open_mutex($key + 0);
if ($mode eq "incr") {
    for (1 .. $k) {
        my $poisoned_by = lock_mutex($m);
        if ($poisoned_by) {
            unlock_mutex($m, 0);
            print STDERR "poisoned by $poisoned_by\n";
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
} elsif ($mode eq "crash") {
    lock_mutex($m);
    $| = 1;
    print "locked $$\n";
    <STDIN>;
    # Only reached if the test went away without killing us: leave cleanly.
    unlock_mutex($m, 0);
    exit 2;
} else {
    die "unknown mode '$mode'\n";
}
