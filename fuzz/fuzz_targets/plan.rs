//! The plan reader: any text gives a plan or diagnostics that render, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    match lifeboat_plan::parse(&source, Path::new("/fuzz/lifeboat.toml")) {
        Ok(plan) => {
            let _ = lifeboat_plan::check_secrets(&plan);
            let _ = plan.restore_order();
            let _ = plan.report(plan.warnings().to_vec()).render_plain();
        }
        Err(errors) => {
            assert!(errors.has_errors());
            let _ = errors.render_plain();
            let _ = errors.to_json();
        }
    }
});
