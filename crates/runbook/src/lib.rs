//! Failover, failback and switchover as pure logic, free of network and process I/O:
//!
//! - [`order`]: resources in waves by `depends_on` (a wave's members may run in parallel);
//! - [`state`]: which site is active, under which **epoch**, and whether a run is under way;
//!   every role change raises the epoch, and anything done under an older one is refused;
//! - [`steps`]: the ordered steps of each kind of run, with stable ids;
//! - [`journal`]: the record of a run, from which a killed run resumes without redoing a
//!   finished step;
//! - [`standing`]: which site serves and which a run fenced or quiesced, from the state and
//!   the journal; the achieved RPO of a planned move.
//!
//! The binary executes the steps (commands, restores, checks, the traffic switch) and
//! persists the state and journal; this crate decides what comes next.

pub mod journal;
pub mod order;
pub mod standing;
pub mod state;
pub mod steps;
