//! Commands with discovered items: any argv (NUL-separated) and item; the shell analysis
//! never panics, and an item keeps the argv's length (it never adds or removes arguments).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lifeboat_plan::Command;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (item, argv) = text.split_once('\n').unwrap_or(("x y", &text));
    let argv: Vec<String> = argv.split('\0').map(str::to_string).collect();
    let Some(command) = Command::try_new(argv) else {
        return;
    };
    if let Some(wrapping) = command.shell_wrapping() {
        assert!(
            wrapping
                .shell_text
                .iter()
                .all(|&i| i < command.argv().len())
        );
    }
    let with_item = command.with_item(item);
    assert_eq!(with_item.argv().len(), command.argv().len());
});
