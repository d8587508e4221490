//! The command line: subcommands, their arguments and their help (clap, derive). A
//! usage error ends the program with status 2 before any subcommand runs.

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use clap_complete::Shell;
use shmsem::Key;

const AFTER_HELP: &str = "\
KEY is hexadecimal with 0x (as ipcs prints it) or decimal. Segments this user may not
attach show as \"no permission\".

--json prints JSON Lines (one object per line) instead of text; the fields are
documented in docs/INSPECT.md of the shmsem sources, and are stable.

Exit status: 0 ok; 1 a problem: nothing has the key, permission denied, a refused
or failed removal; 2 usage error.";

/// System V shared memory and semaphore sets, and what shmsem sees in them
///
/// Lists, shows, watches, removes and garbage-collects System V shared memory segments
/// and semaphore sets, decoding the objects shmsem manages: kinds, holders, poisoning,
/// waiters, queue depths.
#[derive(Debug, Parser)]
#[command(name = "shmsem-inspect", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    /// Print JSON Lines instead of text (fields: docs/INSPECT.md)
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Every segment and semaphore set, decoding shmsem's objects
    ///
    /// Two tables, as ipcs -m -s prints them, each with a SHMSEM column that says what
    /// shmsem sees: the kind, lock state, holder, waiters, poisoning, queue depth, and
    /// whether the segment and its semaphore set pair up.
    #[command(visible_alias = "ls", after_help = AFTER_HELP)]
    List,

    /// One key (or IPC id) in detail
    ///
    /// The segment (owner, creator, last pid before this look, times), the shmsem object
    /// in it decoded (mutex: holder, waiters, poisoning and its cause; rwlock: readers
    /// and writer inside, writers queued; queue: state, capacity, messages and bytes
    /// waiting, lock words, sleepers on each side; condvar: waiters and wake-ups not yet
    /// taken), the open handles (lease slots), and every semaphore of the set with its
    /// value, the kernel's waiter counts (GETNCNT, GETZCNT) and last pid.
    #[command(after_help = AFTER_HELP)]
    Show(ShowArgs),

    /// Remove a shmsem pair: the segment and the semaphore set with KEY
    ///
    /// Anything that is not a complete shmsem pair is refused (exit status 1) unless
    /// --force. Processes still attached keep their mapping; their calls fail with
    /// Removed.
    #[command(visible_alias = "remove", after_help = AFTER_HELP)]
    Rm(RmArgs),

    /// Remove abandoned shmsem pairs: creator gone and nobody attached
    ///
    /// Only segments with a valid shmsem header are considered, never other programs'
    /// objects; each is checked again just before it is removed. A pair whose creator
    /// exits on purpose before its users come looks abandoned too: use --key then.
    #[command(after_help = AFTER_HELP)]
    Gc(GcArgs),

    /// A live view of the shmsem objects, refreshed until q is pressed
    ///
    /// One row per object: kind, state, holder, processes waiting, poisoning, queue
    /// depth, open handles, last pid. Keys: q (or Ctrl-C) quits, space refreshes.
    /// Works on a plain terminal (the alternate screen, no colours); with output that is
    /// not a terminal, or --json (one line per refresh), it prints each refresh in turn.
    #[command(visible_alias = "watch", after_help = AFTER_HELP)]
    Top(TopArgs),

    /// The system's System V limits (IPC_INFO), as ipcs -l shows them
    ///
    /// shmmax, shmall, shmmni; semmsl, semmns, semopm, semmni, semvmx, semaem: what
    /// shmsem's LimitReached errors name, with the sysctl that raises each.
    #[command(after_help = AFTER_HELP)]
    Limits,

    /// Print a shell completion script
    ///
    /// For example: shmsem-inspect completions bash > /etc/bash_completion.d/shmsem-inspect
    #[command(after_help = AFTER_HELP)]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["key", "id"])))]
pub(crate) struct ShowArgs {
    /// The key (not 0: private objects are shown by --id)
    #[arg(value_parser = public_key, allow_negative_numbers = true)]
    pub key: Option<Key>,

    /// An IPC id instead (a shmid or a semid, as ipcs lists them; one number can name
    /// one of each)
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i32).range(0..))]
    pub id: Option<i32>,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// The key of the pair (not 0: remove private objects with ipcrm -m ID / -s ID)
    #[arg(value_parser = public_key, allow_negative_numbers = true)]
    pub key: Key,

    /// Remove whatever segment and semaphore set carry KEY, shmsem objects or not
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Only report what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Only consider this key (repeat for more)
    #[arg(long = "key", value_name = "KEY", value_parser = public_key, allow_negative_numbers = true)]
    pub keys: Vec<Key>,

    /// Spare segments created less than SECONDS ago
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub min_age: u64,
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Seconds between refreshes (fractions allowed)
    #[arg(short, long, value_name = "SECONDS", default_value = "1", value_parser = interval)]
    pub interval: Duration,

    /// Stop after N refreshes (default: until q)
    #[arg(short = 'n', long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell
    pub shell: Shell,
}

/// A key as `ipcs` prints it (`0x7d001234`), decimal, or `private`, that names one
/// object: not 0 (IPC_PRIVATE).
fn public_key(s: &str) -> Result<Key, String> {
    let key: Key = s
        .parse()
        .map_err(|e: shmsem::ParseKeyError| e.to_string())?;
    if key.is_private() {
        return Err(
            "key 0 is IPC_PRIVATE and names no single object: use `show --id ID` \
                    (and ipcrm -m ID / ipcrm -s ID to remove)"
                .into(),
        );
    }
    Ok(key)
}

/// A refresh interval: 0.1 s to a day.
fn interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=86_400.0).contains(&secs) {
        return Err("the interval is 0.1 to 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn keys_parse_in_hex_and_decimal_and_zero_is_refused() {
        assert_eq!(public_key("0x7d000001"), Ok(Key::from_raw(0x7d00_0001)));
        assert_eq!(public_key("0xffffffff"), Ok(Key::from_raw(-1)));
        assert_eq!(public_key("1234"), Ok(Key::from_raw(1234)));
        assert_eq!(public_key("-16"), Ok(Key::from_raw(-16)));
        assert_eq!(public_key("4294967295"), Ok(Key::from_raw(-1)));
        for bad in [
            "",
            "0x",
            "0x1ffffffff",
            "4294967296",
            "12ab",
            "key",
            "0",
            "0x0",
        ] {
            assert!(public_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(interval("0").is_err());
        assert!(interval("soon").is_err());
    }
}
