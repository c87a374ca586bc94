//! Which arguments of an argv a shell will parse as command text.
//!
//! lifeboat runs commands as argv, never through a shell of its own. A plan may still
//! wrap one in a shell (`["sh", "-c", "..."]`, `["ssh", "host", ...]`, `su -c`,
//! `docker exec ... sh -c`): those arguments are shell text, so a discovered `{item}`
//! substituted into them is quoted for the shell (see [`crate::Command::with_item`]),
//! and `plan check` warns about it.

/// A shell that parses some arguments of a command as command text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellWrapping {
    /// The program whose shell parses the text (`sh`, `ssh`, `su`...).
    pub program: String,
    /// Why those arguments are shell text, for a diagnostic.
    pub reason: &'static str,
    /// Positions in the argv of the arguments a shell parses.
    pub shell_text: Vec<usize>,
}

/// The shell wrapping of `argv`, if any of its arguments is parsed by a shell.
pub fn shell_wrapping(argv: &[String]) -> Option<ShellWrapping> {
    scan(argv, 0, 0)
}

/// Wrappers nest (`sudo docker exec db sh -c ...`); stop well before a pathological argv.
const MAX_DEPTH: usize = 8;

fn scan(argv: &[String], start: usize, depth: usize) -> Option<ShellWrapping> {
    if depth > MAX_DEPTH {
        return None;
    }
    let program = argv.get(start)?;
    let name = program.rsplit('/').next().unwrap_or(program);
    let wrapping = |reason: &'static str, shell_text: Vec<usize>| {
        (!shell_text.is_empty()).then(|| ShellWrapping {
            program: name.to_string(),
            reason,
            shell_text,
        })
    };
    match name {
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "yash" | "fish" => {
            let script = shell_script(argv, start + 1)?;
            wrapping("its `-c` argument is a shell script", vec![script])
        }
        "busybox" if argv.get(start + 1).is_some_and(|a| a == "sh" || a == "ash") => {
            scan(argv, start + 1, depth + 1)
        }
        "ssh" => {
            let destination = after_options(argv, start + 1, SSH_OPTIONS_WITH_VALUE)?;
            wrapping(
                "ssh joins the remote command into one line that the remote shell parses",
                (destination + 1..argv.len()).collect(),
            )
        }
        "su" | "runuser" => wrapping(
            "its `-c` argument is run by the user's shell",
            su_command(argv, start + 1).into_iter().collect(),
        ),
        "sudo" | "doas" => {
            let command = after_options(argv, start + 1, SUDO_OPTIONS_WITH_VALUE)?;
            scan(argv, command, depth + 1)
        }
        "env" => {
            let mut next = start + 1;
            while let Some(arg) = argv.get(next) {
                if arg == "-u" || arg == "-C" || arg == "--unset" || arg == "--chdir" {
                    next += 2;
                } else if arg.starts_with('-') || arg.contains('=') {
                    next += 1;
                } else {
                    break;
                }
            }
            scan(argv, next, depth + 1)
        }
        "nice" | "ionice" => {
            let command = after_options(argv, start + 1, &['n', 'c'])?;
            scan(argv, command, depth + 1)
        }
        "nohup" | "setsid" | "stdbuf" => {
            let command = after_options(argv, start + 1, &[])?;
            scan(argv, command, depth + 1)
        }
        "timeout" | "chroot" => {
            // The duration or the new root comes first, then the command.
            let first = after_options(argv, start + 1, &['s', 'k'])?;
            scan(argv, first + 1, depth + 1)
        }
        "docker" | "podman" => {
            let mut sub = start + 1;
            if argv
                .get(sub)
                .is_some_and(|a| a == "compose" || a == "container")
            {
                sub += 1;
            }
            match argv.get(sub).map(String::as_str) {
                Some("exec" | "run") => {
                    let target = after_long_options(argv, sub + 1, DOCKER_OPTIONS_WITH_VALUE)?;
                    scan(argv, target + 1, depth + 1)
                }
                _ => None,
            }
        }
        "kubectl" | "oc" => {
            let dashes = argv[start..].iter().position(|a| a == "--")? + start;
            if !argv[start + 1..dashes].iter().any(|a| a == "exec") {
                return None;
            }
            scan(argv, dashes + 1, depth + 1)
        }
        _ => None,
    }
}

/// The arguments of the command `argv` finally runs, past its wrappers (`sudo`, `env`,
/// `nice`, `timeout`, `ssh` and its destination, `docker exec` and its container, `kubectl
/// exec ... --`) and inside a `sh -c` script (split into words): what the command names,
/// without the program or the hosts and containers it runs through.
pub fn command_operands(argv: &[String]) -> Vec<String> {
    let program = innermost(argv, 0, 0);
    let Some(name) = argv.get(program).map(|p| p.rsplit('/').next().unwrap_or(p)) else {
        return vec![];
    };
    let is_shell = matches!(
        name,
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "yash" | "fish"
    );
    if is_shell && let Some(script) = shell_script(argv, program + 1) {
        let words =
            shell_words::split(&argv[script]).unwrap_or_else(|_| vec![argv[script].clone()]);
        return command_operands(&words);
    }
    argv[program + 1..].to_vec()
}

/// The position of the program a chain of wrappers finally runs.
fn innermost(argv: &[String], start: usize, depth: usize) -> usize {
    if depth > MAX_DEPTH {
        return start;
    }
    let Some(program) = argv.get(start) else {
        return start;
    };
    let name = program.rsplit('/').next().unwrap_or(program);
    let next = match name {
        "busybox" => Some(start + 1),
        "ssh" => after_options(argv, start + 1, SSH_OPTIONS_WITH_VALUE).map(|d| d + 1),
        "sudo" | "doas" => after_options(argv, start + 1, SUDO_OPTIONS_WITH_VALUE),
        "env" => {
            let mut next = start + 1;
            while let Some(arg) = argv.get(next) {
                if arg == "-u" || arg == "-C" || arg == "--unset" || arg == "--chdir" {
                    next += 2;
                } else if arg.starts_with('-') || arg.contains('=') {
                    next += 1;
                } else {
                    break;
                }
            }
            Some(next)
        }
        "nice" | "ionice" => after_options(argv, start + 1, &['n', 'c']),
        "nohup" | "setsid" | "stdbuf" => after_options(argv, start + 1, &[]),
        "timeout" | "chroot" => after_options(argv, start + 1, &['s', 'k']).map(|f| f + 1),
        "docker" | "podman" => {
            let mut sub = start + 1;
            if argv
                .get(sub)
                .is_some_and(|a| a == "compose" || a == "container")
            {
                sub += 1;
            }
            match argv.get(sub).map(String::as_str) {
                Some("exec" | "run") => {
                    after_long_options(argv, sub + 1, DOCKER_OPTIONS_WITH_VALUE).map(|t| t + 1)
                }
                _ => None,
            }
        }
        "kubectl" | "oc" => argv[start..]
            .iter()
            .position(|a| a == "--")
            .filter(|_| argv[start + 1..].iter().any(|a| a == "exec"))
            .map(|d| start + d + 1),
        _ => None,
    };
    match next {
        Some(next) if next < argv.len() => innermost(argv, next, depth + 1),
        // A wrapper with no command after it runs nothing of its own.
        Some(_) => argv.len(),
        None => start,
    }
}

/// ssh's options that take a value (from its manual's synopsis).
const SSH_OPTIONS_WITH_VALUE: &[char] = &[
    'B', 'b', 'c', 'D', 'E', 'e', 'F', 'I', 'i', 'J', 'L', 'l', 'm', 'O', 'o', 'P', 'p', 'Q', 'R',
    'S', 'W', 'w',
];

/// sudo's short options that take a value.
const SUDO_OPTIONS_WITH_VALUE: &[char] = &['C', 'D', 'g', 'h', 'p', 'R', 'r', 'T', 't', 'U', 'u'];

/// `docker exec`/`run` options that take a value.
const DOCKER_OPTIONS_WITH_VALUE: &[&str] = &[
    "-e",
    "--env",
    "--env-file",
    "-u",
    "--user",
    "-w",
    "--workdir",
    "--detach-keys",
    "-v",
    "--volume",
    "--name",
    "--network",
    "--entrypoint",
    "-p",
    "--publish",
    "--mount",
    "-l",
    "--label",
    "--platform",
];

/// The position of the first operand after getopt-style short options starting at
/// `start` (`-o Value`, `-oValue`, clusters such as `-tt`); `--` ends the options.
fn after_options(argv: &[String], start: usize, with_value: &[char]) -> Option<usize> {
    let mut next = start;
    while let Some(arg) = argv.get(next) {
        if arg == "--" {
            next += 1;
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            break;
        };
        next += 1;
        if cluster.starts_with('-') {
            continue; // a long option: none of these wrappers' long options matter here
        }
        for (position, letter) in cluster.char_indices() {
            if with_value.contains(&letter) {
                if position + letter.len_utf8() == cluster.len() {
                    next += 1; // the value is the next argument
                }
                break;
            }
        }
    }
    (next < argv.len()).then_some(next)
}

/// Like [`after_options`] for programs with long options that take a value.
fn after_long_options(argv: &[String], start: usize, with_value: &[&str]) -> Option<usize> {
    let mut next = start;
    while let Some(arg) = argv.get(next) {
        if arg == "--" {
            next += 1;
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            break;
        }
        next += if with_value.contains(&arg.as_str()) {
            2
        } else {
            1
        };
    }
    (next < argv.len()).then_some(next)
}

/// The position of the script of `sh -c SCRIPT [NAME [ARGS...]]`, when `-c` is given.
fn shell_script(argv: &[String], start: usize) -> Option<usize> {
    let mut next = start;
    let mut command_mode = false;
    while let Some(arg) = argv.get(next) {
        if arg == "--" || arg == "-" {
            next += 1;
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            next += if matches!(long, "rcfile" | "init-file") {
                2
            } else {
                1
            };
            continue;
        }
        let Some(cluster) = arg.strip_prefix(['-', '+']).filter(|c| !c.is_empty()) else {
            break;
        };
        next += 1;
        if cluster.contains('c') {
            command_mode = true;
        }
        // `-o pipefail`, `-O extglob`: the option's name is the next argument.
        if cluster.ends_with(['o', 'O']) {
            next += 1;
        }
    }
    (command_mode && next < argv.len()).then_some(next)
}

/// The position of `su`'s command (`-c CMD`, `--command CMD`, `--command=CMD`, `-lc CMD`).
fn su_command(argv: &[String], start: usize) -> Option<usize> {
    let mut next = start;
    while let Some(arg) = argv.get(next) {
        if arg == "--command" {
            return (next + 1 < argv.len()).then_some(next + 1);
        }
        if arg.starts_with("--command=") {
            return Some(next);
        }
        if let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.starts_with('-'))
            && let Some(at) = cluster.find('c')
        {
            // `-cCMD` carries the command in the same argument.
            return if at + 1 < cluster.len() {
                Some(next)
            } else {
                (next + 1 < argv.len()).then_some(next + 1)
            };
        }
        next += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell_text(argv: &[&str]) -> Option<(String, Vec<usize>)> {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        shell_wrapping(&argv).map(|w| (w.program, w.shell_text))
    }

    #[test]
    fn a_plain_command_has_no_shell_text() {
        assert_eq!(shell_text(&["cat", "flows/{item}"]), None);
        assert_eq!(shell_text(&["pg_dump", "-c", "x"]), None);
        assert_eq!(shell_text(&[]), None);
    }

    #[test]
    fn only_the_script_of_sh_c_is_shell_text() {
        assert_eq!(
            shell_text(&["sh", "-c", "cat \"$0\"", "{item}"]),
            Some(("sh".into(), vec![2]))
        );
        assert_eq!(
            shell_text(&["/bin/bash", "-euo", "pipefail", "-c", "x"]),
            Some(("bash".into(), vec![4]))
        );
        assert_eq!(
            shell_text(&["bash", "-lc", "x", "a"]),
            Some(("bash".into(), vec![2]))
        );
        // A script file, not command text.
        assert_eq!(shell_text(&["sh", "script.sh", "{item}"]), None);
        assert_eq!(shell_text(&["sh", "-c"]), None);
    }

    #[test]
    fn everything_after_the_ssh_destination_is_shell_text() {
        assert_eq!(
            shell_text(&[
                "ssh",
                "-p",
                "2222",
                "-tt",
                "-oBatchMode=yes",
                "dr-host",
                "cat",
                "/etc/{item}"
            ]),
            Some(("ssh".into(), vec![6, 7]))
        );
        assert_eq!(
            shell_text(&["ssh", "-i", "key", "-l", "me", "host", "x"]),
            Some(("ssh".into(), vec![6]))
        );
        assert_eq!(shell_text(&["ssh", "host"]), None);
    }

    #[test]
    fn su_docker_sudo_env_and_kubectl_are_seen_through() {
        assert_eq!(
            shell_text(&["su", "-", "postgres", "-c", "pg_dump {item}"]),
            Some(("su".into(), vec![4]))
        );
        assert_eq!(
            shell_text(&["su", "--command=pg_dump {item}", "postgres"]),
            Some(("su".into(), vec![1]))
        );
        assert_eq!(
            shell_text(&[
                "docker", "exec", "-i", "-u", "root", "db", "sh", "-c", "x {item}"
            ]),
            Some(("sh".into(), vec![8]))
        );
        assert_eq!(shell_text(&["docker", "exec", "db", "cat", "{item}"]), None);
        assert_eq!(
            shell_text(&["sudo", "-u", "postgres", "env", "A=1", "bash", "-c", "x"]),
            Some(("bash".into(), vec![7]))
        );
        assert_eq!(
            shell_text(&["kubectl", "exec", "-n", "db", "pod", "--", "sh", "-c", "x"]),
            Some(("sh".into(), vec![8]))
        );
        assert_eq!(
            shell_text(&["timeout", "30", "ssh", "h", "ls"]),
            Some(("ssh".into(), vec![4]))
        );
    }

    #[test]
    fn operands_are_those_of_the_command_finally_run() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_operands(&v(&["cat", "/etc/x"])), v(&["/etc/x"]));
        assert_eq!(
            command_operands(&v(&["ssh", "-p", "22", "web1", "cat", "/etc/x"])),
            v(&["/etc/x"])
        );
        assert_eq!(
            command_operands(&v(&[
                "sudo", "-u", "pg", "docker", "exec", "-e", "A=1", "web", "cat", "/a"
            ])),
            v(&["/a"])
        );
        assert_eq!(
            command_operands(&v(&["sh", "-c", "cat '/etc/my file'"])),
            v(&["/etc/my file"])
        );
        assert_eq!(
            command_operands(&v(&["kubectl", "exec", "pod", "--", "cat", "/b"])),
            v(&["/b"])
        );
        assert!(command_operands(&v(&["ssh", "web1"])).is_empty());
        assert!(command_operands(&[]).is_empty());
    }
}
