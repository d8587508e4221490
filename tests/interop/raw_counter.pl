# Raw-layer interop client (Perl, IPC::SysV): a native-endian u64 at offset 0 of an
# 8-byte System V segment, guarded by a set of one System V semaphore (1 = free) under the
# same key. Lock is P with SEM_UNDO, unlock is V with SEM_UNDO. No shmsem header.
#
#     raw_counter.pl create KEY    create both objects exclusively (counter 0, semaphore 1)
#     raw_counter.pl incr KEY K    add 1 to the counter K times, under the semaphore
#
# KEY is a decimal key_t. Exits 0 on success; any error is a message and a non-zero exit.
use strict;
use warnings;
use IPC::SysV qw(IPC_CREAT IPC_EXCL SETVAL SEM_UNDO shmat shmdt memread memwrite);
use IPC::SharedMem;

my $SIZE = 8;

# semop, retried on EINTR.
sub semop_retry {
    my ($semid, $ops) = @_;
    until (semop($semid, $ops)) {
        die "semop: $!\n" unless $!{EINTR};
    }
}

sub create {
    my ($key) = @_;
    my $shmid = shmget($key, $SIZE, IPC_CREAT | IPC_EXCL | 0600);
    defined $shmid or die "shmget(create): $!\n";
    # The kernel zero-fills a new segment; the counter is written anyway, to be explicit.
    shmwrite($shmid, pack("Q", 0), 0, $SIZE) or die "shmwrite: $!\n";
    my $semid = semget($key, 1, IPC_CREAT | IPC_EXCL | 0600);
    defined $semid or die "semget(create): $!\n";
    semctl($semid, 0, SETVAL, 1) or die "semctl(SETVAL): $!\n";
}

sub incr {
    my ($key, $k) = @_;
    my $shm = IPC::SharedMem->new($key, 0, 0) or die "shmget: $!\n";
    my $segsz = $shm->stat->segsz;
    $segsz == $SIZE or die "segment is $segsz bytes, expected $SIZE\n";
    my $semid = semget($key, 0, 0);
    defined $semid or die "semget: $!\n";
    my $addr = shmat($shm->id, undef, 0);
    defined $addr or die "shmat: $!\n";
    my $lock   = pack("s!3", 0, -1, SEM_UNDO);
    my $unlock = pack("s!3", 0, 1,  SEM_UNDO);
    for (1 .. $k) {
        semop_retry($semid, $lock);
        memread($addr, my $bytes, 0, 8) or die "memread: $!\n";
        memwrite($addr, pack("Q", unpack("Q", $bytes) + 1), 0, 8) or die "memwrite: $!\n";
        semop_retry($semid, $unlock);
    }
    defined shmdt($addr) or die "shmdt: $!\n";    # 0 on success
}

my ($mode, $key, $k) = @ARGV;
defined $key or die "usage: raw_counter.pl create|incr KEY [K]\n";
$key += 0;
if ($mode eq "create") {
    create($key);
} elsif ($mode eq "incr") {
    incr($key, $k);
} else {
    die "unknown mode '$mode'\n";
}
