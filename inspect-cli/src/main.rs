//! `shmsem-inspect`: lists, shows, watches, removes and garbage-collects System V shared
//! memory segments and semaphore sets, decoding the ones shmsem manages. A thin front
//! end of [`shmsem::inspect`]; run `shmsem-inspect --help`, and see docs/INSPECT.md.
//!
//! This file: dispatch to a subcommand, and how the program ends (exit status 0 ok, 1 a
//! problem, 2 usage: clap's). `cli` is the command line; `model` the records `--json`
//! prints and the text is rendered from; one module per subcommand (`list`, `show`,
//! `rm`, `gc`, `top`); `describe`, `table`, `names` and `time` format; `term` is the
//! terminal under `top`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;
mod describe;
mod gc;
mod limits;
mod list;
mod model;
mod names;
mod rm;
mod show;
mod table;
mod term;
mod time;
mod top;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use shmsem::Key;

use crate::cli::{Cli, Command};
use crate::model::{CompletionsJson, ErrorBody, ErrorJson};

/// Exit status for a problem (usage errors are clap's 2).
const PROBLEM: u8 = 1;

/// A problem: the message, its kind for `--json`, and whether the JSON answer was
/// printed already (`gc` prints its report, then fails).
pub(crate) struct Failure {
    pub message: String,
    /// shmsem's `ErrorKind` in snake case, or `failed`.
    pub kind: String,
    pub json_printed: bool,
}

impl From<shmsem::Error> for Failure {
    fn from(e: shmsem::Error) -> Self {
        // Errors about no object in particular carry key 0 (IPC_PRIVATE): leave it out.
        let mut message = e.to_string();
        let keyless = format!("{} (key {}): ", e.call(), Key::PRIVATE);
        if e.key().is_private() && message.starts_with(&keyless) {
            message = format!("{}: {}", e.call(), &message[keyless.len()..]);
        }
        Failure {
            message,
            kind: snake_case(&format!("{:?}", e.kind())),
            json_printed: false,
        }
    }
}

/// `NotFound` -> `not_found`.
fn snake_case(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                s.push('_');
            }
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
    }
    s
}

/// Appends `value` as one line of JSON.
pub(crate) fn json_line(out: &mut String, value: &impl serde::Serialize) {
    // Serializing these records cannot fail: plain structs, string keys.
    out.push_str(&serde_json::to_string(value).expect("records serialize"));
    out.push('\n');
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let mut out = String::new();
    let result = run(&cli, &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).ok();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json && !f.json_printed {
                let mut line = String::new();
                json_line(
                    &mut line,
                    &ErrorJson {
                        error: ErrorBody {
                            kind: f.kind.clone(),
                            message: f.message.clone(),
                        },
                    },
                );
                stdout.write_all(line.as_bytes()).ok();
            }
            stdout.flush().ok();
            eprintln!("shmsem-inspect: {}", f.message);
            ExitCode::from(PROBLEM)
        }
    }
}

fn run(cli: &Cli, out: &mut String) -> Result<(), Failure> {
    let json = cli.json;
    match &cli.command {
        Command::List => list::list(json, out),
        Command::Show(args) => show::show(args, json, out),
        Command::Rm(args) => rm::rm(args, json, out),
        Command::Gc(args) => gc::gc(args, json, out),
        Command::Top(args) => top::top(args, json),
        Command::Limits => limits::limits(json, out),
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "shmsem-inspect",
                &mut script,
            );
            let script = String::from_utf8_lossy(&script).into_owned();
            if json {
                json_line(
                    out,
                    &CompletionsJson {
                        shell: args.shell.to_string(),
                        script,
                    },
                );
            } else {
                out.push_str(&script);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_in_snake_case() {
        assert_eq!(snake_case("NotFound"), "not_found");
        assert_eq!(snake_case("PermissionDenied"), "permission_denied");
        assert_eq!(snake_case("Other"), "other");
    }
}
