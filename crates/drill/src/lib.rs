//! Drills as pure logic, free of network, process and file I/O.
//!
//! A drill restores a restore point into an isolated **sandbox** (a declared drill site, or
//! one derived by the binary: temporary folders and database servers), verifies what came
//! back, measures the achieved RTO and RPO, and always tears down what it created.
//!
//! - [`steps`]: the ordered steps of a drill with stable ids, and which resources a failed
//!   restore leaves unrestorable;
//! - [`record`]: what a drill has created, written down *before* each thing is created, so a
//!   teardown (at the end, on a signal, or by `lifeboat drill --cleanup` after a kill) knows
//!   everything to undo, in reverse order;
//! - [`report`]: the measured drill — step timings, per-resource verification, the achieved
//!   RTO and RPO against the objectives — and the verdict;
//! - [`html`]: the self-contained HTML page of a report, with the timeline of its steps and
//!   the trend of past drills.
//!
//! The binary performs the steps (restores, servers, checks) and keeps the record, journal
//! and reports in the plan's state folder.

pub mod html;
pub mod record;
pub mod report;
pub mod steps;
