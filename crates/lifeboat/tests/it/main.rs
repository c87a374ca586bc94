//! The `lifeboat` command end to end, as a user runs it: real repositories in temporary
//! directories, real files, real processes.

mod audit;
mod choice;
mod corruption;
mod db_accounts;
mod documents;
mod drill;
mod failover;
mod files;
mod hostile;
mod hostile_repo;
mod interrupt;
mod mariadb;
mod mirror;
mod output;
mod peer;
mod plan;
mod postgres;
mod prune;
mod prune_races;
mod races;
mod servers;
mod services;
mod sqlite_dr;
mod support;
mod switchover;
mod watch;
mod wire;
