//! The arguments every subcommand shares: keys (hexadecimal or decimal), the end of the
//! argument list, `--help` after a subcommand, and the usage errors they raise.

use shmsem::Key;

use crate::Failure;

/// A usage error (exit status 2, with a pointer to `--help`).
pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        message: message.into(),
        usage: true,
    }
}

/// No arguments are left (the subcommand takes none, or no more).
pub(crate) fn no_more(rest: &[String]) -> Result<(), Failure> {
    match rest.first() {
        None => Ok(()),
        Some(arg) if is_help(arg) => Err(usage("see --help")),
        Some(arg) => Err(usage(format!("unexpected argument {arg:?}"))),
    }
}

pub(crate) fn is_help(arg: &str) -> bool {
    arg == "-h" || arg == "--help"
}

/// A key as `ipcs` prints it (`0x7d001234`), decimal, or `private`: [`Key`]'s parser.
pub(crate) fn parse_key(s: &str) -> Result<Key, Failure> {
    s.parse()
        .map_err(|e: shmsem::ParseKeyError| usage(e.to_string()))
}

/// A key that names one object: not 0 (IPC_PRIVATE).
pub(crate) fn parse_public_key(s: &str) -> Result<Key, Failure> {
    let key = parse_key(s)?;
    if key.is_private() {
        return Err(usage(
            "key 0 is IPC_PRIVATE and names no single object: use `show --id ID` \
             (and ipcrm -m ID / ipcrm -s ID to remove)",
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_in_hex_and_decimal() {
        assert_eq!(
            parse_key("0x7d000001").ok(),
            Some(Key::from_raw(0x7d00_0001))
        );
        assert_eq!(parse_key("0xffffffff").ok(), Some(Key::from_raw(-1)));
        assert_eq!(parse_key("1234").ok(), Some(Key::from_raw(1234)));
        assert_eq!(parse_key("-16").ok(), Some(Key::from_raw(-16)));
        assert_eq!(parse_key("4294967295").ok(), Some(Key::from_raw(-1)));
        for bad in ["", "0x", "0x1ffffffff", "4294967296", "12ab", "key"] {
            assert!(parse_key(bad).is_err(), "{bad:?}");
        }
    }
}
