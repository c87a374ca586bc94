//! The `lifeboat` command end to end, as a user runs it: real repositories in temporary
//! directories, real files, real processes.

mod audit;
mod corruption;
mod drill;
mod failover;
mod files;
mod hostile;
mod hostile_repo;
mod interrupt;
mod mariadb;
mod peer;
mod plan;
mod postgres;
mod prune;
mod prune_races;
mod races;
mod servers;
mod services;
mod support;
mod watch;
mod wire;
