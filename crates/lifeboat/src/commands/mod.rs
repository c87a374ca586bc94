//! One function per command.

mod audit;
mod backup;
mod demo;
mod drill;
mod maintain;
mod restore;
mod runbook;
mod watch;

use anyhow::Result;

use crate::cli::{Cli, Command, PlanCommand, RepoCommand};
use crate::context::{Context, PlanFailed};
use crate::output::{self, Exit};

pub fn run(cli: Cli) -> Result<Exit> {
    match cli.command {
        Command::Plan(PlanCommand::Example) => {
            print!("{}", lifeboat_plan::example());
            Ok(Exit::Success)
        }
        Command::Plan(PlanCommand::Check { resolve }) => plan_check(cli.global, resolve),
        Command::Demo(args) => demo::run(&cli.global, args),
        command => {
            let ctx = Context::new(cli.global)?;
            match command {
                Command::Repo(RepoCommand::Init) => repo_init(&ctx),
                Command::Backup(args) => backup::run(&ctx, args),
                Command::Points(args) => maintain::points(&ctx, args),
                Command::Restore(args) => restore::run(&ctx, args),
                Command::Verify(args) => restore::verify(&ctx, args),
                Command::Failover(args) => runbook::failover(&ctx, args),
                Command::Failback(args) => runbook::failback(&ctx, args),
                Command::Switchover(args) => runbook::switchover(&ctx, args),
                Command::Resume(args) => runbook::resume(&ctx, args),
                Command::Status => runbook::status(&ctx),
                Command::Watch => watch::watch(&ctx),
                Command::Approve => watch::approve(&ctx),
                Command::Drill(args) => drill::drill(&ctx, args),
                Command::Audit(args) => audit::audit(&ctx, args),
                Command::Check(args) => maintain::check(&ctx, args),
                Command::Forget(args) => maintain::forget(&ctx, args),
                Command::Prune(args) => maintain::prune(&ctx, args),
                Command::Plan(_) | Command::Demo(_) => unreachable!("handled above"),
            }
        }
    }
}

fn plan_check(global: crate::cli::Global, resolve: bool) -> Result<Exit> {
    let json = global.json;
    let ctx = match Context::new(global) {
        Ok(ctx) => ctx,
        Err(e) => match e.downcast::<PlanFailed>() {
            Ok(PlanFailed(errors)) => {
                output::print_plan_errors(&errors, json);
                return Ok(Exit::Invalid);
            }
            Err(e) => return Err(e),
        },
    };
    let plan = ctx.require_plan()?;
    let mut diagnostics: Vec<_> = plan.warnings().to_vec();
    diagnostics.extend(plan.notes().iter().cloned());
    if resolve {
        diagnostics.extend(lifeboat_plan::check_secrets(plan));
    }
    let report = plan.report(diagnostics);
    let failed = report.has_errors();
    if json {
        output::json(&serde_json::json!({
            "plan": plan.file(),
            "valid": !failed,
            "diagnostics": report.to_json(),
        }));
    } else {
        if !report.is_empty() {
            output::print_plan_errors(&report, false);
        }
        if !failed {
            println!(
                "{}: valid ({} sites, {} resources{})",
                plan.file().display(),
                plan.sites.len(),
                plan.resources.len(),
                if resolve {
                    ", every secret resolves"
                } else {
                    ""
                }
            );
        }
    }
    Ok(if failed { Exit::Invalid } else { Exit::Success })
}

fn repo_init(ctx: &Context) -> Result<Exit> {
    let (location, config) = ctx.init_repository()?;
    if ctx.global.json {
        output::json(
            &serde_json::json!({ "location": location, "id": config.id, "version": config.version }),
        );
    } else {
        println!("created repository {} at {location}", config.id.short());
    }
    Ok(Exit::Success)
}
