//! Whether a record's TTL fits the recovery-time objective.
//!
//! A DNS switch takes effect at the authoritative server at once, but resolvers go on handing
//! out the old values until their cached copy expires, that is for up to the TTL the record
//! had *before* the switch. A TTL longer than the RTO budget means the failover cannot meet
//! its objective for some users however fast everything else is; the fix is to lower the TTL
//! ahead of time, not during the incident.

/// A warning when `current_ttl_seconds` (the TTL resolvers have cached the record with)
/// exceeds `rto_budget_seconds`, or `None` when it fits.
pub fn ttl_warning(current_ttl_seconds: u32, rto_budget_seconds: u64) -> Option<String> {
    let ttl = u64::from(current_ttl_seconds);
    (ttl > rto_budget_seconds).then(|| {
        format!(
            "the record's TTL is {ttl}s, longer than the RTO budget of {rto_budget_seconds}s: \
             resolvers may keep sending users to the old address for up to {ttl}s after the \
             switch; lower the TTL to at most {rto_budget_seconds}s well before a failover \
             (at least one old TTL ahead)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_within_the_budget_gives_no_warning() {
        assert_eq!(ttl_warning(60, 300), None);
        assert_eq!(ttl_warning(300, 300), None);
        assert_eq!(ttl_warning(0, 0), None);
    }

    #[test]
    fn a_ttl_over_the_budget_is_named_with_the_budget() {
        let warning = ttl_warning(3600, 300).expect("a warning");
        assert!(warning.contains("TTL is 3600s"), "{warning}");
        assert!(warning.contains("RTO budget of 300s"), "{warning}");
        assert!(ttl_warning(301, 300).is_some());
    }

    #[test]
    fn the_largest_ttl_is_compared_without_overflow() {
        assert!(ttl_warning(u32::MAX, u64::from(u32::MAX) - 1).is_some());
        assert_eq!(ttl_warning(u32::MAX, u64::MAX), None);
    }
}
