//! Command-line numbers for the benchmark binaries: the one helper their hand-rolled
//! option loops share.

use crate::Res;

/// The value after option `what` as a positive number (`--runs 5`), or an error that
/// names the option and shows `usage`.
pub fn positive<T: std::str::FromStr + PartialOrd + Default>(
    args: &mut impl Iterator<Item = String>,
    what: &str,
    usage: &str,
) -> Res<T> {
    let v = args
        .next()
        .ok_or(format!("{what} needs a number\n{usage}"))?;
    match v.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!("{what}: not a positive number: {v}\n{usage}").into()),
    }
}
