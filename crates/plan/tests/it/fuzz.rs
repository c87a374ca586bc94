//! Whatever the input, the parser returns a plan or diagnostics, and never panics.

use std::path::Path;

use proptest::prelude::*;

fn parse_and_render(source: &str) {
    match lifeboat_plan::parse(source, Path::new("fuzz/lifeboat.toml")) {
        Ok(plan) => {
            let _ = lifeboat_plan::check_secrets(&plan);
            let _ = plan.restore_order();
        }
        Err(errors) => {
            assert!(errors.has_errors());
            let _ = errors.render_plain();
            let _ = errors.to_json();
            let mut rendered = String::new();
            let handler = miette::GraphicalReportHandler::new_themed(
                miette::GraphicalTheme::unicode_nocolor(),
            );
            handler
                .render_report(&mut rendered, &errors)
                .expect("renders");
        }
    }
}

const SEED: &str = include_str!("../fixtures/plan-format-full.toml");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_and_render(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn toml_like_garbage_never_panics(source in "([a-z_.]{1,8} = (\"[a-z0-9 ]{0,6}\"|[0-9]{1,3}|\\[\\]|\\{\\}|true)\n|\\[[a-z.]{1,12}\\]\n){0,12}") {
        parse_and_render(&source);
    }

    #[test]
    fn mutated_plans_never_panic(cut in 0..SEED.len(), length in 0usize..40, insert in "[a-z\"=\\[\\]{}., 0-9\n]{0,10}") {
        let mut source = SEED.to_string();
        let start = (0..=cut).rev().find(|i| source.is_char_boundary(*i)).unwrap_or(0);
        let end = (start + length).min(source.len());
        let end = (end..=source.len()).find(|i| source.is_char_boundary(*i)).unwrap_or(source.len());
        source.replace_range(start..end, &insert);
        parse_and_render(&source);
    }

    #[test]
    fn mutated_lines_never_panic(line in 0usize..200, replacement in "[a-z_]{1,10} = (\"[a-z0-9:/.]{0,10}\"|[0-9]{1,4}|\\[\\[\"x\"\\]\\]|\\{ env = \"X\" \\}|\\{\\})") {
        let mut lines: Vec<String> = SEED.lines().map(str::to_string).collect();
        let index = line % lines.len();
        lines[index] = replacement;
        parse_and_render(&lines.join("\n"));
    }
}
