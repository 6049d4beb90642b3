//! Exit codes of the contract for input the command line refuses: 1 (bad
//! input), never clap's default 2, which means "environment not ready".
use std::process::Command;

fn exit_code(args: &[&str]) -> Option<i32> {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .output()
        .expect("run tollgate")
        .status
        .code()
}

#[test]
fn usage_errors_are_bad_input() {
    for args in [
        &["verify", "--no-such-flag"][..],
        &["verify", "--from-pod", "x/a", "--to-ip", "192.0.2.1", "--to-port", "70000"],
        &["verify", "--from-pod", "x/a", "--to-ip", "192.0.2.1", "--to-port", "80", "-o", "yaml"],
        &["verify", "--from-pod", "x/a", "--to-port", "80", "--cluster-cidr", "not-a-cidr", "--to-ip", "192.0.2.1"],
        &["counters", "-o", "xml"],
        &["verify", "--batch", "-", "--to-port", "80"],
        &["verify", "--from-pod", "x/a", "--to-ip", "192.0.2.1", "--to-port", "80", "--cluster-cidr", "10.0.0.0/8"],
        &["no-such-command"],
    ] {
        assert_eq!(exit_code(args), Some(1), "tollgate {}", args.join(" "));
    }
}

#[test]
fn help_and_version_succeed() {
    assert_eq!(exit_code(&["--help"]), Some(0));
    assert_eq!(exit_code(&["--version"]), Some(0));
    assert_eq!(exit_code(&["verify", "--help"]), Some(0));
}
