//! The conventions every option of every command follows (applied by `recur` and by
//! `recur-bench`). Imports no other file of the command line.

use clap::ArgAction;

/// The conventions every option of every command follows, applied once to the whole command
/// tree rather than spelled out on each option:
/// - every boolean option is `--name [true|false]`: `--name` alone turns it on, `--name=false`
///   (or `--name false`) turns it off, whatever its default;
/// - a value may start with a minus (`--lr -1` reaches recur's own check of the value, which
///   says what is allowed, instead of the parser's "unexpected argument").
pub fn apply(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        let a = a.allow_negative_numbers(true);
        match a.get_action() {
            ArgAction::SetTrue => a
                .action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(false)
                .value_name("BOOL")
                .default_value("false")
                .default_missing_value("true")
                .value_parser(clap::value_parser!(bool)),
            ArgAction::Set
                if a.get_value_parser().type_id()
                    == clap::builder::ValueParser::bool().type_id() =>
            {
                a.num_args(0..=1)
                    .value_name("BOOL")
                    .default_missing_value("true")
            }
            _ => a,
        }
    })
    .mut_subcommands(apply)
}
