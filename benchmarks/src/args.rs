//! Command-line values for the benchmark binaries (a positive number, a list of names):
//! the helpers their hand-rolled option loops share.

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

/// The value after option `what` as comma-separated names, each one of `known`
/// (`--only shmsem,ideal`), or an error that names the option, the stranger and the
/// names there are.
pub fn names(
    args: &mut impl Iterator<Item = String>,
    what: &str,
    known: &[&str],
    usage: &str,
) -> Res<Vec<String>> {
    let v = args
        .next()
        .ok_or(format!("{what} needs NAME,NAME..\n{usage}"))?;
    let names: Vec<String> = v.split(',').map(str::to_string).collect();
    match names.iter().find(|n| !known.contains(&n.as_str())) {
        Some(bad) => Err(format!(
            "{what}: no {bad} here (there are: {})\n{usage}",
            known.join(", ")
        )
        .into()),
        None => Ok(names),
    }
}
