//! Commands and discovered items: an item is one word, whatever shell a plan wraps it in.

use std::process::Command as Process;

use lifeboat_plan::Command;

use crate::{MINIMAL, parse_ok};

/// An item that would run `touch` if a shell saw it unquoted.
const HOSTILE: &str = "a b; touch pwned $(touch pwned2) `x` 'q\" \\ * ~";

fn argv(args: &[&str]) -> Command {
    Command::try_new(args.iter().map(|a| a.to_string()).collect()).expect("not empty")
}

/// Runs `command` in `dir` and returns its stdout.
fn run(command: &Command, dir: &std::path::Path) -> String {
    let output = Process::new(command.program())
        .args(command.args())
        .current_dir(dir)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

#[test]
fn an_item_reaches_a_shell_script_as_one_quoted_word() {
    let dir = tempfile::tempdir().expect("temp dir");
    for script in [
        vec!["sh", "-c", "printf '%s|' {item}"],
        vec!["sh", "-e", "-c", "printf '%s|' {item}", "ignored"],
        vec![
            "env",
            "LC_ALL=C",
            "bash",
            "-c",
            "printf '%s|' prefix-{item}",
        ],
    ] {
        let command = argv(&script).with_item(HOSTILE);
        let printed = run(&command, dir.path());
        let expected = if script.contains(&"printf '%s|' prefix-{item}") {
            format!("prefix-{HOSTILE}|")
        } else {
            format!("{HOSTILE}|")
        };
        assert_eq!(printed, expected, "{script:?} became {:?}", command.argv());
    }
    assert!(
        !dir.path().join("pwned").exists() && !dir.path().join("pwned2").exists(),
        "the item ran as shell text"
    );
}

#[test]
fn an_item_outside_shell_text_stays_one_argument_unquoted() {
    let command = argv(&["printf", "%s|", "flows/{item}", "{item}"]).with_item(HOSTILE);
    assert_eq!(
        command.argv(),
        ["printf", "%s|", &format!("flows/{HOSTILE}"), HOSTILE]
    );
    // A positional argument after `sh -c SCRIPT` is not shell text: the script reads it
    // as `$1`, so it is passed as it is.
    let positional = argv(&["sh", "-c", "printf '%s|' \"$1\"", "sh", "{item}"]).with_item(HOSTILE);
    assert_eq!(positional.argv()[4], HOSTILE);
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(run(&positional, dir.path()), format!("{HOSTILE}|"));
}

#[test]
fn an_item_behind_ssh_is_quoted_for_the_remote_shell() {
    let command =
        argv(&["ssh", "-p", "2222", "dr-host", "cat", "/etc/app/{item}"]).with_item("a b;c");
    assert_eq!(
        command.argv(),
        ["ssh", "-p", "2222", "dr-host", "cat", "/etc/app/'a b;c'"]
    );
}

fn warnings_of(source: &str) -> Vec<String> {
    parse_ok(source)
        .warnings()
        .iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect()
}

#[test]
fn an_item_in_shell_text_is_a_warning_naming_the_command() {
    let source = format!(
        "{MINIMAL}\n[resources.flows]\nkind = \"command\"\ndiscover = [\"ls\", \"flows\"]\n\
         at.primary = {{ shell = [\"ssh\", \"app-host\"], capture = [\"cat\", \"flows/{{item}}\"] }}\n\
         at.dr = {{ apply = [\"sh\", \"-c\", \"cat > dr/{{item}}\"] }}\n\
         [resources.safe]\nkind = \"command\"\ndiscover = [\"ls\", \"flows\"]\n\
         at.primary = {{ capture = [\"cat\", \"flows/{{item}}\"] }}\n\
         at.dr = {{ apply = [\"sh\", \"-c\", \"cat > \\\"dr/$1\\\"\", \"sh\", \"{{item}}\"] }}\n"
    );
    let warnings = warnings_of(&source);
    expect_test::expect![[r#"
        [
            "resources.flows.at.primary.capture: `capture` of `flows` at `primary` puts `{item}` into shell text: `ssh` runs `ssh`, and ssh joins the remote command into one line that the remote shell parses; each discovered item is quoted for that shell",
            "resources.flows.at.dr.apply: `apply` of `flows` at `dr` puts `{item}` into shell text: `sh` runs `sh`, and its `-c` argument is a shell script; each discovered item is quoted for that shell",
        ]
    "#]]
    .assert_debug_eq(&warnings);
}

#[test]
fn smtp_credentials_without_starttls_are_a_warning() {
    let notify = |smtp: &str| {
        format!(
            "{MINIMAL}\n[[notify]]\nsmtp = {{ server = \"mail:25\", from = \"a@x\", to = \"b@x\"{smtp} }}\n"
        )
    };
    let warnings = warnings_of(&notify(
        ", starttls = false, username = \"lifeboat\", password = { env = \"SMTP_PASSWORD\" }",
    ));
    assert_eq!(
        warnings,
        [
            "notify[0].smtp.starttls: `starttls = false` while credentials are set: the password would cross the network unencrypted"
        ]
    );
    // STARTTLS with credentials, or no credentials on a plain relay: nothing to say.
    assert!(
        warnings_of(&notify(
            ", username = \"lifeboat\", password = { env = \"P\" }"
        ))
        .is_empty()
    );
    assert!(warnings_of(&notify(", starttls = false")).is_empty());
}

#[test]
fn an_item_inside_quotes_the_plan_wrote_stays_one_literal_word() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (script, expected) in [
        ("printf '%s|' \"/data/{item}\"", format!("/data/{HOSTILE}|")),
        ("printf '%s|' '/data/{item}'", format!("/data/{HOSTILE}|")),
        (
            "printf '%s|' \"{item}\" '{item}' {item}",
            format!("{HOSTILE}|{HOSTILE}|{HOSTILE}|"),
        ),
        (
            "printf '%s|' \"it's \\\"{item}\\\"\"",
            format!("it's \"{HOSTILE}\"|"),
        ),
    ] {
        let command = argv(&["sh", "-c", script]).with_item(HOSTILE);
        let printed = run(&command, dir.path());
        assert_eq!(printed, expected, "{script:?} became {:?}", command.argv());
    }
    assert!(
        !dir.path().join("pwned").exists() && !dir.path().join("pwned2").exists(),
        "the item ran as shell text"
    );
}
